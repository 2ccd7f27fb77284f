//! One test run end to end, for `kiln test` and for each CI scenario: mirror, seed, boot, wait for
//! cloud-init, check from inside and from outside, reboot, check again. Returns a `Verdict` (checks that
//! pass or fail) or an error when the harness itself could not do its job.
//!
//! What a CI scenario adds to a run (a WireGuard peer on a second NIC, test servers and containers in
//! the guest, deliberate breakage, a golden image baked first and what it promises) is not here: it
//! lives in the `vm-tests` crate and comes in through `Extension`, at named points of `run`. `kiln test`
//! runs with `NoExtension`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use sha2::{Digest, Sha256};

use super::boot::{
    CloudInitOutcome, GuestHung, boot_to_cloud_init, cloud_init_outcome, console_check, reported_public_key,
    wait_for_cloud_init,
};
use super::progress::Progress;
use super::qemu::{Accel, ExtraNic, HostForward, Instance, QemuConfig};
use super::qga::Agent;
use super::wait;
use crate::effects::fs::write_atomic;
use crate::effects::image;
use crate::effects::mirror::{self, Mirror, MirrorRequest};
use crate::encoding::sha256_hex;
use crate::expect::{self, ExpectedState, Listener};
use crate::failure::Failure;
use crate::lower::Stage;
use crate::model::{Model, Repository, RepositoryKey, SecretRef, SecuritySource};
use crate::pipeline;
use crate::secrets::{self, SecretSource, Secrets};
use crate::verify::report::Verdict;
use crate::verify::{self, Check, SecretDigests, check_names, observe, secret_scan};

/// What a run boots and how it is meant to end.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub profile: PathBuf,
    /// The disk the run starts from; `boot` says what kind of image it is.
    pub image: PathBuf,
    pub boot: Boot,
    pub outcome: Outcome,
    /// `target/vm-tests/<name>/`: console log, seed, overlay, qemu command line.
    pub run_dir: PathBuf,
    pub reboot: bool,
    pub boot_timeout: Duration,
}

/// What the scenario's image is, and so which user-data the guest gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boot {
    /// A base image (with `IMAGE.dpkg-status` beside it), provisioned at first boot with the full
    /// user-data from kiln's test mirror.
    Provision,
    /// A golden image already baked from this profile: booted with the boot stage, no mirror.
    Golden,
}

impl Boot {
    /// The stage of user-data a guest booted from such an image gets.
    fn stage(self) -> Stage {
        match self {
            Boot::Provision => Stage::Full,
            Boot::Golden => Stage::Boot,
        }
    }
}

/// How the run is meant to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every check passes.
    Healthy,
    /// Provisioning fails at this step (`kiln step failed: STEP`), and that is reported, not hidden.
    ProvisioningFails { step: String },
}

impl Outcome {
    /// The provisioning step that must fail, for a run meant to fail.
    pub fn failing_step(&self) -> Option<&str> {
        match self {
            Outcome::Healthy => None,
            Outcome::ProvisioningFails { step } => Some(step),
        }
    }
}

/// What a CI scenario adds to a test run, called at named points of `run`; `kiln test` runs with
/// `NoExtension`. Every method defaults to adding nothing, so an extension implements only the points
/// it uses. In the order `run` calls them:
///
/// 1. `prepare`: the model before the expected state is derived from it;
/// 2. `mirror_data`: files for the package mirror (when the run serves one);
/// 3. `image`: which disk to boot, or the end of the run before any boot;
/// 4. `network`, `outside_probes`: a second NIC and more probes from outside, fixed for the run;
/// 5. each round of checks (first boot, after reboot): `guest_secrets` before the inside checks,
///    `set_up_guest` after them (the outside probes wait for it when `sets_up_guest`), `round` after the
///    outside probes;
/// 6. `after_rounds`: on the same guest, with a way to run the product's checks again.
pub trait Extension {
    /// Changes the model before the expected state is derived from it, so the expected state follows
    /// (the CI's WireGuard peer takes the place of the profile's first peer).
    fn prepare(&mut self, _run_dir: &Path, _model: &mut Model) -> Result<()> {
        Ok(())
    }

    /// Packages the mirror carries besides the profile's: installed by the extension's own tests, never by
    /// the profile (an auditor).
    fn mirror_packages(&self) -> Vec<String> {
        Vec::new()
    }

    /// Adds files to the package mirror's root before it is served (the test container's image). Not
    /// called when the run serves no mirror (a golden image boots without one).
    fn mirror_data(&self, _mirror_root: &Path) -> Result<()> {
        Ok(())
    }

    /// The disk to boot: the scenario's by default; another one (a golden image baked first), or none
    /// when the run ends before any boot (a bake meant to fail), its checks in the verdict.
    fn image(&mut self, _before: BeforeBoot<'_>) -> Result<Image> {
        Ok(Image::Scenario)
    }

    /// A second NIC for the guest, and the seed's network-config that addresses it.
    fn network(&self) -> Option<Network> {
        None
    }

    /// Guest ports to probe from outside besides the expected state's (each gets a forwarded host port).
    fn outside_probes(&self) -> Vec<PortProbe> {
        Vec::new()
    }

    /// Secret values besides the profile's that the round's secret scan looks for, read from the guest.
    fn guest_secrets(&mut self, _agent: &mut Agent) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// Whether `set_up_guest` starts what the outside probes talk to, so they must wait for it; without
    /// it they run while the inside checks do.
    fn sets_up_guest(&self) -> bool {
        false
    }

    /// After the inside checks of each round (so it never shows up in them), before the outside probes:
    /// starts things in the guest. Returns checks made from inside on what it started.
    fn set_up_guest(&mut self, _agent: &mut Agent) -> Result<Vec<Check>> {
        Ok(Vec::new())
    }

    /// After the outside probes of each round (`label`: "first boot", "after reboot"): more checks
    /// from outside.
    fn round(&mut self, _agent: &mut Agent, _instance: &Instance, _label: &str) -> Result<Vec<Check>> {
        Ok(Vec::new())
    }

    /// After the last round, on the same guest: adds phases, timings and notes to the verdict.
    fn after_rounds(&mut self, _finished: Finished<'_>, _verdict: &mut Verdict) -> Result<()> {
        Ok(())
    }
}

/// `kiln test`: the profile's own checks, nothing added.
pub struct NoExtension;

impl Extension for NoExtension {}

/// What `Extension::image` sees: the run so far, before anything boots.
pub struct BeforeBoot<'a> {
    pub scenario: &'a Scenario,
    /// With the mirror's repositories, as the guest will get it.
    pub model: &'a Model,
    pub accel: Accel,
    /// The package mirror's host port, when the run serves one.
    pub mirror_port: Option<u16>,
    pub progress: &'a Progress,
    pub verdict: &'a mut Verdict,
}

/// The disk a run boots.
pub enum Image {
    /// The scenario's own image, with the stage its `boot` says.
    Scenario,
    /// Another disk, with this stage's user-data (a golden image baked from the scenario's base image).
    Other { path: PathBuf, stage: Stage },
    /// None: the run ends before any boot, its checks already in the verdict.
    Ended,
}

/// A second NIC for the guest and the seed's network-config (v2) that addresses it.
pub struct Network {
    pub config: String,
    pub nic: Arc<dyn ExtraNic>,
}

/// A guest TCP port probed from outside through a forwarded host port: does anything answer?
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortProbe {
    /// The check's name.
    pub name: String,
    pub guest_port: u16,
    /// Send an HTTP request first (a web server says nothing until asked; sshd speaks first).
    pub http: bool,
    /// Whether something must answer, or the port must stay silent.
    pub should_answer: bool,
}

/// What `Extension::after_rounds` gets: the guest after its last round, still running.
pub struct Finished<'a> {
    pub agent: Agent,
    pub instance: &'a mut Instance,
    /// How the guest was started (a second instance of the same image starts the same way).
    pub config: &'a QemuConfig,
    pub scenario: &'a Scenario,
    /// The profile's test secret values (not the extension's own `guest_secrets`).
    pub secret_values: &'a [String],
    pub progress: &'a Progress,
    /// The product's checks, to run again on the guest (`Rounds::recheck`).
    pub rounds: &'a Rounds<'a>,
    /// The package mirror the guest uses, still served: updates can be published into it.
    pub mirror: Option<&'a Mirror>,
}

/// Runs one scenario with the profile's validated model (`pipeline::load`, then `validated`), and what
/// `extension` adds to it (`NoExtension` for `kiln test`).
pub fn run(scenario: &Scenario, mut model: Model, accel: Accel, extension: &mut dyn Extension) -> Result<Verdict> {
    let progress = Progress::start(&scenario.name);
    std::fs::create_dir_all(&scenario.run_dir).with_context(|| format!("creating {}", scenario.run_dir.display()))?;
    let mut verdict = Verdict { scenario: scenario.name.clone(), accel: accel.name().into(), ..Verdict::default() };
    extension.prepare(&scenario.run_dir, &mut model)?;
    let secrets = test_secrets(&model)?;
    let served = serve_mirror(scenario, &mut model, &secrets, extension, &progress)?;
    // Expected from the model the guest gets: with the mirror, its repositories' hosts are the mirror's
    // (unattended-upgrades' `site=` patterns name them).
    let expected = expect::expect(&model);
    let mirror_port = served.as_ref().map(|(_, server)| server.port());
    let before = BeforeBoot { scenario, model: &model, accel, mirror_port, progress: &progress, verdict: &mut verdict };
    let (image, stage) = match extension.image(before)? {
        Image::Scenario => (scenario.image.clone(), scenario.boot.stage()),
        Image::Other { path, stage } => (path, stage),
        Image::Ended => return Ok(verdict),
    };
    let network = extension.network();
    let seed = write_seed(scenario, &model, &secrets, stage, network.as_ref().map(|n| n.config.as_str()))?;
    let extra_probes = extension.outside_probes();
    let forwards = forwards(&expected, &extra_probes)?;
    let config = QemuConfig {
        base_image: image,
        run_dir: scenario.run_dir.clone(),
        seed: Some(seed),
        memory_mib: 2048,
        cpus: 2,
        accel,
        mirror_port,
        forwards: forwards.clone(),
        internet: false,
        extra_nic: network.map(|n| n.nic),
        multi_threaded_tcg: false,
    };
    let (instance, mut agent) = first_boot(&config, scenario, &model, &progress, &mut verdict)?;
    let evidence = SecretEvidence::of(&secrets, &scenario.run_dir)?;
    let mut checks = cloud_init_checks(&mut agent, &scenario.outcome)?;
    if scenario.outcome != Outcome::Healthy {
        checks.push(console_check(&instance));
        verdict.phases.push(("first boot".into(), checks));
        verdict.timings.push(("QEMU start to verdict".into(), instance.started.elapsed().as_secs_f64()));
        return Ok(verdict);
    }
    let rounds = Rounds {
        expected: &expected,
        digests: &evidence.digests,
        secret_values: &evidence.values,
        run_dir: &scenario.run_dir,
        forwards: &forwards,
        extra_probes,
    };
    let mirror = served.as_ref().map(|(mirror, _)| mirror);
    let booted = Booted { scenario, config: &config, instance, agent, first_checks: checks, mirror };
    check_rounds(booted, &rounds, extension, &progress, &mut verdict)?;
    progress.say("done");
    drop(served);
    Ok(verdict)
}

/// A guest that finished its first boot, with cloud-init's checks on it.
struct Booted<'a> {
    scenario: &'a Scenario,
    config: &'a QemuConfig,
    instance: Instance,
    agent: Agent,
    first_checks: Vec<Check>,
    mirror: Option<&'a Mirror>,
}

/// The rounds of checks on a healthy guest: after the first boot, after a reboot, then what the
/// extension does after them.
fn check_rounds(
    booted: Booted,
    rounds: &Rounds,
    extension: &mut dyn Extension,
    progress: &Progress,
    verdict: &mut Verdict,
) -> Result<()> {
    let Booted { scenario, config, mut instance, mut agent, first_checks, mirror } = booted;
    let boot_started = instance.started;
    verdict.phases.extend(rounds.run(&mut agent, &instance, "first boot", first_checks, extension)?);
    verdict.timings.push(("QEMU start to first verdict".into(), boot_started.elapsed().as_secs_f64()));
    save_boot_analysis(&mut agent, &scenario.run_dir)?;
    if scenario.reboot {
        progress.say("rebooting");
        agent = reboot(agent, &mut instance, scenario.boot_timeout, progress, verdict)?;
        verdict.phases.extend(rounds.run(&mut agent, &instance, "after reboot", Vec::new(), extension)?);
    }
    verdict.timings.push(("QEMU start to verdict".into(), boot_started.elapsed().as_secs_f64()));
    let finished = Finished {
        agent,
        instance: &mut instance,
        config,
        scenario,
        secret_values: rounds.secret_values,
        progress,
        rounds,
        mirror,
    };
    extension.after_rounds(finished, verdict)
}

/// Test secrets: a labelled value per reference, random per run so a file left by another run can never
/// match, and never a real credential.
struct TestSecrets {
    nonce: String,
    /// The reference of the WireGuard private key: answered with a valid (random) key.
    wireguard_key: Option<SecretRef>,
}

impl TestSecrets {
    fn new() -> TestSecrets {
        let seed = format!("{:?}{:?}{}", std::time::SystemTime::now(), Instant::now(), std::process::id());
        TestSecrets { nonce: sha256_hex(&seed)[..20].to_string(), wireguard_key: None }
    }
}

impl SecretSource for TestSecrets {
    fn lookup(&self, reference: &SecretRef) -> Result<String, String> {
        let name = match reference {
            SecretRef::Env(name) | SecretRef::File(name) => name,
        };
        if self.wireguard_key.as_ref() == Some(reference) {
            use base64::Engine as _;
            let bytes = Sha256::digest(format!("{name}{}", self.nonce).as_bytes());
            return Ok(base64::engine::general_purpose::STANDARD.encode(bytes));
        }
        Ok(format!("kiln-test-secret-{}-{}", &sha256_hex(name)[..8], self.nonce))
    }
}

/// The listeners every host from the base image has, whatever the profile says.
pub fn image_listeners() -> Vec<Listener> {
    let l = |proto: &str, port: u16, scope: &str, process: &str| Listener {
        proto: proto.into(),
        port,
        scope: scope.into(),
        process: process.into(),
    };
    vec![
        l("tcp", 53, "loopback", "systemd-resolve"),
        l("udp", 53, "loopback", "systemd-resolve"),
        l("tcp", 5355, "any", "systemd-resolve"),
        l("udp", 5355, "any", "systemd-resolve"),
        l("udp", 68, "specific", "systemd-network"),
    ]
}

/// Points every repository the model uses at the harness's mirror, signed with its test key: the
/// same code path (key file + deb822 source + packages module) that production mirrors take.
/// Debian's security updates come from the mirror's security stand-in, as a Debian host's come from
/// security.debian.org.
pub fn use_mirror(model: &mut Model, key: &[u8]) -> Result<()> {
    let repo = |name: &'static str| -> Result<Repository> {
        Ok(Repository {
            name,
            url: mirror::guest_url(name)?,
            suites: vec!["./".into()],
            components: Vec::new(),
            key: RepositoryKey::Embedded { bytes: key.to_vec(), armored: true },
            security: None,
        })
    };
    let security = SecuritySource { url: mirror::guest_url("debian-security")?, suite: "./".into() };
    model.apt.debian = Some(Repository { security: Some(security), ..repo("debian")? });
    if model.apt.tailscale.is_some() {
        model.apt.tailscale = Some(repo("tailscale")?);
    }
    if model.apt.cloudflared.is_some() {
        model.apt.cloudflared = Some(repo("cloudflared")?);
    }
    model.apt.docker = None;
    Ok(())
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The profile's secrets, answered with labelled random test values (a valid key for WireGuard).
fn test_secrets(model: &Model) -> Result<Secrets> {
    let mut source = TestSecrets::new();
    source.wireguard_key = model.wireguard.as_ref().and_then(|w| w.private_key.clone());
    secrets::resolve(model, Some(&source)).map_err(|errors| anyhow!("{}", Failure::Secrets(errors)))
}

/// Builds and serves the signed package mirror a base image is provisioned from, and points the
/// model's repositories at it. A golden image installs nothing at boot: it needs none. The mirror is
/// kept with its server: an extension may publish updates into it.
fn serve_mirror(
    scenario: &Scenario,
    model: &mut Model,
    secrets: &Secrets,
    extension: &dyn Extension,
    progress: &Progress,
) -> Result<Option<(Mirror, mirror::MirrorServer)>> {
    if scenario.boot == Boot::Golden {
        return Ok(None);
    }
    progress.say("building the package mirror");
    let mirror = mirror_for(model, secrets, &scenario.image, &scenario.run_dir, extension.mirror_packages())?;
    extension.mirror_data(&mirror.root)?;
    use_mirror(model, &mirror.public_key)?;
    let server = mirror::serve(&mirror.root)?;
    Ok(Some((mirror, server)))
}

/// Builds (under `run_dir`) the signed mirror a guest booted from `image` installs the model's packages
/// from, and `extra` ones: resolved against what the image already has, from the image's own release.
pub fn mirror_for(
    model: &Model,
    secrets: &Secrets,
    image: &Path,
    run_dir: &Path,
    extra: Vec<String>,
) -> Result<Mirror> {
    let mut packages = crate::lower::lower(model, secrets).packages;
    packages.extend(extra);
    let status = dpkg_status_of(image)?;
    // The image says which release it is; its packages come from that release's suites.
    let release = image::release_of_file(&status)?;
    let request = MirrorRequest { packages: &packages, dpkg_status: &status, codename: release.facts().codename };
    mirror::build_mirror_with_cache(run_dir, &request, &mirror::default_cache_dir())
}

/// Renders the stage's user-data (kept in the run directory, 0600) and packs the seed image.
fn write_seed(
    scenario: &Scenario,
    model: &Model,
    secrets: &Secrets,
    stage: Stage,
    network_config: Option<&str>,
) -> Result<PathBuf> {
    let user_data = pipeline::user_data(model, secrets, stage)?;
    write_atomic(&scenario.run_dir.join("user-data"), user_data.as_bytes(), 0o600)?;
    let seed = pipeline::seed(&user_data, &model.host.hostname, network_config)?;
    let seed_path = scenario.run_dir.join("seed.img");
    write_atomic(&seed_path, &seed.image, 0o600)?;
    Ok(seed_path)
}

/// A host port for every guest port probed from outside: the expected state's and the extension's.
fn forwards(expected: &ExpectedState, extra: &[PortProbe]) -> Result<Vec<HostForward>> {
    let guest_ports = expected.outside.iter().map(|p| p.port).chain(extra.iter().map(|p| p.guest_port));
    guest_ports.map(|guest_port| Ok(HostForward { host_port: free_port()?, guest_port })).collect()
}

/// Boots to the end of cloud-init (a hang retried once) and connects to the guest agent.
fn first_boot(
    config: &QemuConfig,
    scenario: &Scenario,
    model: &Model,
    progress: &Progress,
    verdict: &mut Verdict,
) -> Result<(Instance, Agent)> {
    progress.say(&format!("starting QEMU ({})", config.accel.name()));
    let booted = boot_to_cloud_init(config, scenario.boot_timeout, &mut |console| progress.detail(console))?;
    if let Some(hang) = &booted.retried {
        progress.say("the guest hung (emulated timers stalled); it was retried once on a fresh overlay");
        verdict.notes.push(format!("first boot retried: {hang}"));
    }
    let instance = booted.instance;
    verdict.timings.push(("QEMU start to cloud-init finished".into(), instance.started.elapsed().as_secs_f64()));
    progress.say(&format!("cloud-init finished ({})", booted.finished));
    if let Some(key) =
        model.wireguard.as_ref().and_then(|w| reported_public_key(&instance.console_text(), &w.interface))
    {
        verdict.notes.push(format!("the guest's WireGuard public key: {key}"));
    }
    let agent = instance.agent(wait::AGENT_CONNECT)?;
    Ok((instance, agent))
}

/// What the checks about secrets need: the values to look for, and digests to compare files with.
struct SecretEvidence {
    digests: SecretDigests,
    values: Vec<String>,
}

impl SecretEvidence {
    /// Also writes the digests to the run directory: not secret (sha256 of random test values), and
    /// what the comparison's unit-test fixtures need.
    fn of(secrets: &Secrets, run_dir: &Path) -> Result<SecretEvidence> {
        let digests = SecretDigests {
            cloudflared_token: secrets.cloudflared_token.as_ref().map(|s| sha256_hex(s.expose())),
            tailscale_auth_key: secrets.tailscale_auth_key.as_ref().map(|s| sha256_hex(s.expose())),
        };
        let lines: Vec<String> = [&digests.cloudflared_token, &digests.tailscale_auth_key]
            .into_iter()
            .map(|d| d.clone().unwrap_or_default())
            .collect();
        std::fs::write(run_dir.join("secret-digests.txt"), lines.join("\n") + "\n")?;
        let values = [&secrets.cloudflared_token, &secrets.tailscale_auth_key, &secrets.wireguard_private_key]
            .into_iter()
            .flatten()
            .map(|s| s.expose().to_string())
            .collect();
        Ok(SecretEvidence { digests, values })
    }
}

/// Where first boot's time went, for whoever makes it faster (not a check).
fn save_boot_analysis(agent: &mut Agent, run_dir: &Path) -> Result<()> {
    let analysis = agent.shell(
        "systemd-analyze 2>&1; systemd-analyze blame 2>&1 | head -n 15; cloud-init analyze blame 2>&1 | head -n 30",
        wait::GUEST_PROBE,
    )?;
    std::fs::write(run_dir.join("boot-analysis.txt"), analysis.stdout).context("writing boot-analysis.txt")
}

/// How long a guest that was killed after hanging takes to go down before it is started again.
const KILLED_GUEST_DOWN: Duration = Duration::from_secs(10);

/// Reboots the guest (QEMU exits and is started again on the same disk), waits for cloud-init, and
/// connects to the agent again; a hang after the reboot is retried once.
fn reboot(
    mut agent: Agent,
    instance: &mut Instance,
    timeout: Duration,
    progress: &Progress,
    verdict: &mut Verdict,
) -> Result<Agent> {
    agent.shutdown("reboot")?;
    drop(agent);
    let reboot_started = Instant::now();
    instance.restart_after_reboot(wait::SHUTDOWN)?;
    if let Err(e) = wait_for_cloud_init(instance, 0, timeout) {
        if e.downcast_ref::<GuestHung>().is_none() {
            return Err(e);
        }
        progress.say("the guest hung after the reboot; booting it again once");
        verdict.notes.push(format!("boot after reboot retried: {e}"));
        instance.kill();
        instance.restart_after_reboot(KILLED_GUEST_DOWN)?;
        wait_for_cloud_init(instance, 0, timeout)?;
    }
    verdict.timings.push(("reboot to cloud-init finished".into(), reboot_started.elapsed().as_secs_f64()));
    instance.agent(wait::AGENT_CONNECT)
}

/// The base image's dpkg status file, written beside it by `kiln image build`.
pub fn dpkg_status_of(image: &Path) -> Result<PathBuf> {
    let status = image.with_extension("dpkg-status");
    if !status.is_file() {
        bail!(
            "{} is missing: it lists what the base image has installed (written by `kiln image build`)",
            status.display()
        );
    }
    Ok(status)
}

/// cloud-init's own verdict; "finished with errors" is a failed check, never a pass.
fn cloud_init_checks(agent: &mut Agent, expected: &Outcome) -> Result<Vec<Check>> {
    let outcome = cloud_init_outcome(agent)?;
    let CloudInitOutcome { errors, failed_step, complete } = &outcome;
    let mut checks = Vec::new();
    match expected.failing_step() {
        None => {
            let observed = if errors.is_empty() { "no errors".to_string() } else { outcome.describe() };
            checks.push(Check::new("cloud-init finished without errors", "no errors", observed, errors.is_empty()));
            let complete = *complete;
            let observed = if complete { "complete" } else { "not complete" };
            checks.push(Check::new("provisioning script completed", "kiln: provisioning complete", observed, complete));
        }
        Some(step) => {
            let observed = if errors.is_empty() { "no errors".to_string() } else { errors.join("; ") };
            checks.push(Check::new("cloud-init reports the failure", "an error", observed, !errors.is_empty()));
            let observed = failed_step.clone().unwrap_or_else(|| "(no failed step in cloud-init-output.log)".into());
            checks.push(Check::new(
                "the failing provisioning step is named",
                step,
                observed.as_str(),
                observed == step,
            ));
            const UFW_STATUS_TIMEOUT: Duration = Duration::from_secs(60);
            let out = agent.shell(&observe::ufw_status_script().text(), UFW_STATUS_TIMEOUT)?;
            let probe = observe::StateProbe::parse(&out.stdout, out.code, &out.stderr)?;
            let ufw = observe::parse_ufw_status(probe.get(observe::Section::UfwStatus)?)?;
            checks.push(Check::new(
                "the firewall stayed off (it is enabled only after every other step)",
                "Status: inactive",
                ufw.status,
                ufw.status == "Status: inactive",
            ));
        }
    }
    Ok(checks)
}

/// The product's checks of a running guest, and what every round of them needs.
pub struct Rounds<'a> {
    expected: &'a ExpectedState,
    digests: &'a SecretDigests,
    secret_values: &'a [String],
    run_dir: &'a Path,
    forwards: &'a [HostForward],
    /// The extension's probes from outside, probed with the expected state's.
    extra_probes: Vec<PortProbe>,
}

impl Rounds<'_> {
    /// One round: inside checks (state, secrets, console), then the extension's set-up, then the checks
    /// from outside, then the extension's own.
    fn run(
        &self,
        agent: &mut Agent,
        instance: &Instance,
        label: &str,
        mut checks: Vec<Check>,
        extension: &mut dyn Extension,
    ) -> Result<Vec<(String, Vec<Check>)>> {
        let probe_log = self.run_dir.join(format!("probe-{}.txt", label.replace(' ', "-")));
        let probes_wait = extension.sets_up_guest();
        std::thread::scope(|scope| {
            // With nothing to start in the guest first, the probes from outside (mostly waiting out the
            // silence of closed ports) run while the inside checks do.
            let early = (!probes_wait).then(|| scope.spawn(|| self.outside()));
            let mut secret_values = self.secret_values.to_vec();
            secret_values.extend(extension.guest_secrets(agent)?);
            // The scan (mostly reading files) runs in the guest while the probe does.
            let scan = start_secret_scan(agent, &secret_values)?;
            checks.extend(inside_checks(agent, self.expected, self.digests, &probe_log)?);
            checks.extend(finish_secret_scan(agent, scan)?);
            checks.push(console_check(instance));
            let mut outside = vec![ssh_answers_inside(agent)?];
            outside.extend(extension.set_up_guest(agent)?);
            match early {
                Some(probes) => outside.extend(probes.join().map_err(|_| anyhow!("an outside probe panicked"))?),
                None => outside.extend(self.outside()),
            }
            outside.extend(extension.round(agent, instance, label)?);
            Ok(vec![(format!("{label}, inside"), checks), (format!("{label}, from outside"), outside)])
        })
    }

    /// The product's checks again, on the same guest (after deliberate changes to it, say): the state
    /// probe (its output kept as `probe-LABEL.txt`) and the secret scan from inside, the probes from
    /// outside. Neither the console nor the extension's own checks.
    pub fn recheck(&self, agent: &mut Agent, label: &str) -> Result<Vec<Check>> {
        let log = self.run_dir.join(format!("probe-{label}.txt"));
        let scan = start_secret_scan(agent, self.secret_values)?;
        let mut checks = inside_checks(agent, self.expected, self.digests, &log)?;
        checks.extend(finish_secret_scan(agent, scan)?);
        checks.extend(self.outside());
        Ok(checks)
    }

    /// Every probe from outside, the expected state's then the extension's, all at once.
    fn outside(&self) -> Vec<Check> {
        let mut probes = expected_probes(self.expected);
        probes.extend(self.extra_probes.iter().cloned());
        outside_checks(&probes, self.forwards)
    }
}

fn inside_checks(
    agent: &mut Agent,
    expected: &ExpectedState,
    digests: &SecretDigests,
    log: &Path,
) -> Result<Vec<Check>> {
    let script = observe::probe_script(expected).text();
    let output = agent.shell(&script, observe::PROBE_TIMEOUT)?;
    // Kept for people debugging a failed check, and as fixtures for the comparison's unit tests.
    std::fs::write(log, &output.stdout).with_context(|| format!("writing {}", log.display()))?;
    let probe = observe::StateProbe::parse(&output.stdout, output.code, &output.stderr)
        .with_context(|| format!("the probe's output is in {}", log.display()))?;
    verify::verify(expected, &probe, &image_listeners(), digests)
        .with_context(|| format!("the probe's output is in {}", log.display()))
}

/// No secret value in any process argument, unit file or log, and every file holding one is 0600
/// root. The values travel to the guest on the agent's stdin, never as an argument.
fn start_secret_scan(agent: &mut Agent, secrets: &[String]) -> Result<Option<i64>> {
    if secrets.is_empty() {
        return Ok(None);
    }
    let script = secret_scan::script(secret_scan::SCANNED).text();
    let input = secrets.join("\n") + "\n";
    agent.start("/bin/bash", &["-c", &script], Some(input.as_bytes())).map(Some)
}

fn finish_secret_scan(agent: &mut Agent, scan: Option<i64>) -> Result<Vec<Check>> {
    let Some(pid) = scan else { return Ok(Vec::new()) };
    let out = agent.finish(pid, "the secret scan", secret_scan::SCAN_TIMEOUT)?;
    Ok(secret_scan::checks(&secret_scan::parse(&out.stdout, out.code, &out.stderr)?))
}

/// The control for "SSH is closed from outside": sshd answers on the guest's own loopback, so silence
/// from outside is the firewall's doing, not a dead sshd.
fn ssh_answers_inside(agent: &mut Agent) -> Result<Check> {
    let out = agent.exec(
        "/usr/bin/timeout",
        &["10", "/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/22; head -c 4 <&3"],
        None,
        Duration::from_secs(20),
    )?;
    let banner = out.stdout.starts_with("SSH-");
    Ok(Check::new(
        "inside, sshd answers on the guest's loopback",
        "SSH banner",
        if banner { "SSH banner" } else { "no banner" },
        banner,
    ))
}

/// Connects through a forwarded port and reports whether anything answered within the window. With
/// user-mode networking the host side always accepts, so "reachable" means the service spoke.
pub fn speaks(host_port: u16, http: bool, window: Duration) -> bool {
    let address = SocketAddr::from(([127, 0, 0, 1], host_port));
    let Ok(mut stream) = TcpStream::connect_timeout(&address, window) else { return false };
    let _ = stream.set_read_timeout(Some(window));
    if http {
        let _ = stream.write_all(b"GET / HTTP/1.0\r\n\r\n");
    }
    let mut buffer = [0u8; 64];
    matches!(stream.read(&mut buffer), Ok(n) if n > 0)
}

/// The expected state's probes from outside: a port that must answer or stay silent. SSH speaks first;
/// anything else is asked over HTTP.
fn expected_probes(expected: &ExpectedState) -> Vec<PortProbe> {
    expected
        .outside
        .iter()
        .map(|probe| PortProbe {
            name: check_names::from_outside(probe.port, &probe.proto, probe.reachable),
            guest_port: probe.port,
            http: probe.port != 22,
            should_answer: probe.reachable,
        })
        .collect()
}

/// Probes each guest port through its forwarded host port (a port with none is not probed).
fn outside_checks(probes: &[PortProbe], forwards: &[HostForward]) -> Vec<Check> {
    // A service under emulation answers within a second or two; five seconds of silence means closed.
    let window = Duration::from_secs(5);
    let mut by_guest: BTreeMap<u16, u16> = BTreeMap::new();
    for f in forwards {
        by_guest.entry(f.guest_port).or_insert(f.host_port);
    }
    let forwarded: Vec<(&PortProbe, u16)> =
        probes.iter().filter_map(|p| by_guest.get(&p.guest_port).map(|host_port| (p, *host_port))).collect();
    // Probes run in parallel: each "closed" one waits out its whole window.
    let answers: Vec<bool> = std::thread::scope(|scope| {
        let handles: Vec<_> = forwarded
            .iter()
            .map(|(probe, host_port)| scope.spawn(move || speaks(*host_port, probe.http, window)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(false)).collect()
    });
    forwarded.iter().zip(answers).map(|((probe, _), answered)| probe_check(probe, answered)).collect()
}

/// The check a probe makes of what it heard.
fn probe_check(probe: &PortProbe, answered: bool) -> Check {
    let text = |answered: bool| if answered { "answers" } else { "no answer" };
    Check::new(probe.name.clone(), text(probe.should_answer), text(answered), answered == probe.should_answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected_of(profile: &str) -> ExpectedState {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(profile);
        let model = pipeline::load(&path).and_then(|loaded| loaded.validated(false)).expect("the profile validates");
        expect::expect(&model)
    }

    #[test]
    fn expected_probes_are_named_as_check_names_says_and_only_ssh_speaks_first() {
        let probes = expected_probes(&expected_of("vm-tests/profiles/ports.yaml"));
        let ssh = probes.iter().find(|p| p.guest_port == 22).expect("SSH is probed");
        assert_eq!(ssh.name, check_names::from_outside(22, "tcp", ssh.should_answer));
        assert!(!ssh.http);
        let open = probes.iter().find(|p| p.guest_port == 8000).expect("the declared port is probed");
        assert_eq!(open.name, "from outside, 8000/tcp answers");
        assert!(open.http && open.should_answer);
    }

    #[test]
    fn a_probe_passes_when_what_it_heard_is_what_it_should() {
        let probe = |should_answer| PortProbe { name: "p".into(), guest_port: 1, http: true, should_answer };
        for (should, answered, passed, expected, observed) in [
            (true, true, true, "answers", "answers"),
            (true, false, false, "answers", "no answer"),
            (false, false, true, "no answer", "no answer"),
            (false, true, false, "no answer", "answers"),
        ] {
            let check = probe_check(&probe(should), answered);
            assert_eq!((check.passed, check.expected.as_str(), check.observed.as_str()), (passed, expected, observed));
        }
    }

    #[test]
    fn a_port_without_a_forward_is_not_probed() {
        let probe = PortProbe { name: "p".into(), guest_port: 8080, http: true, should_answer: false };
        assert!(outside_checks(&[probe], &[]).is_empty());
    }
}
