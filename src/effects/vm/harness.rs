//! One VM scenario end to end: mirror, seed, boot, wait for cloud-init, check from inside and from
//! outside, reboot, check again. Returns a `Verdict` (checks that pass or fail) or an error when the
//! harness itself could not do its job.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use sha2::{Digest, Sha256};

use super::boot::{
    CloudInitOutcome, GuestHung, boot_to_cloud_init, cloud_init_outcome, console_check, reported_public_key,
    wait_for_cloud_init,
};
use super::golden;
use super::peer::{self, TunnelPeer};
use super::progress::Progress;
use super::qemu::{Accel, HostForward, Instance, QemuConfig};
use super::qga::Agent;
use super::wait;
use crate::effects::fs::write_atomic;
use crate::effects::mirror::{self, MirrorRequest};
use crate::expect::{self, ExpectedState, Listener};
use crate::failure::Failure;
use crate::lower::Stage;
use crate::model::{Model, Repository, RepositoryKey, SecretRef};
use crate::pipeline;
use crate::secrets::{self, SecretSource, Secrets};
use crate::verify::report::Verdict;
use crate::verify::{self, Check, SecretDigests, observe, secret_scan};

/// What a scenario boots and what it does besides the profile's own checks.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub profile: PathBuf,
    /// The disk the scenario starts from; `boot` says what kind of image it is.
    pub image: PathBuf,
    pub boot: Boot,
    pub outcome: Outcome,
    /// `target/vm-tests/<name>/`: console log, seed, overlay, qemu command line.
    pub run_dir: PathBuf,
    pub reboot: bool,
    /// Containers to run (host port published → reachable from outside or not, per the profile).
    pub containers: Vec<Container>,
    /// Guest ports where the harness starts a small HTTP server, so "open" ports have someone to answer.
    pub listen: Vec<u16>,
    /// Changes made to the guest at the end, each of which a named check must then report as failed:
    /// the harness's checks shown failing on a real VM whose state is wrong.
    pub tamper: Vec<Tamper>,
    pub boot_timeout: Duration,
    /// The harness joins the profile's WireGuard tunnel as its first peer, from a network namespace on
    /// a second guest NIC (`peer.rs`), and checks SSH through the tunnel and silence outside it.
    pub wireguard_peer: bool,
}

/// What the scenario's image is, and so which user-data the guest gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boot {
    /// A base image (with `IMAGE.dpkg-status` beside it), provisioned at first boot with the full
    /// user-data from kiln's test mirror.
    Provision,
    /// A golden image already baked from this profile: booted with the boot stage, no mirror.
    Golden,
    /// A base image from which a golden image is baked first (with the mirror); an instance of it is
    /// then booted with the boot stage, and what golden images promise is proven.
    BakeThenBoot,
}

/// How the scenario is meant to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every check passes.
    Healthy,
    /// Provisioning fails at this step (`kiln step failed: STEP`), and that is reported, not hidden.
    ProvisioningFails { step: String },
}

impl Outcome {
    fn failing_step(&self) -> Option<&str> {
        match self {
            Outcome::Healthy => None,
            Outcome::ProvisioningFails { step } => Some(step),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Tamper {
    /// A shell command run as root in the guest.
    pub command: String,
    /// The check that must then fail.
    pub detected_by: String,
}

#[derive(Debug, Clone)]
pub struct Container {
    pub name: String,
    /// `-p` argument, e.g. `0.0.0.0:8080:8080`.
    pub publish: String,
    pub host_port: u16,
    pub reachable_from_outside: bool,
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

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
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
fn use_mirror(model: &mut Model, key: &[u8]) {
    let repo = |name: &'static str| Repository {
        name,
        url: format!("http://10.0.2.100/{name}/"),
        suites: vec!["./".into()],
        components: Vec::new(),
        key: RepositoryKey::Embedded { bytes: key.to_vec(), armored: true },
    };
    model.apt.debian = Some(repo("debian"));
    if model.apt.tailscale.is_some() {
        model.apt.tailscale = Some(repo("tailscale"));
    }
    if model.apt.cloudflared.is_some() {
        model.apt.cloudflared = Some(repo("cloudflared"));
    }
    model.apt.docker = None;
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Runs one scenario with the profile's validated model (`pipeline::load`, then `validated`).
pub fn run(scenario: &Scenario, mut model: Model, accel: Accel) -> Result<Verdict> {
    let progress = Progress::start(&scenario.name);
    std::fs::create_dir_all(&scenario.run_dir).with_context(|| format!("creating {}", scenario.run_dir.display()))?;
    let mut verdict = Verdict { scenario: scenario.name.clone(), accel: accel.name().into(), ..Verdict::default() };
    let peer = if scenario.wireguard_peer { Some(TunnelPeer::create(&scenario.run_dir, &mut model)?) } else { None };
    let expected = expect::expect(&model);
    let secrets = test_secrets(&model)?;
    let server = serve_mirror(scenario, &mut model, &secrets, &progress)?;
    let mirror_port = server.as_ref().map(|s| s.port());
    let Some((image, stage)) = image_to_boot(scenario, &model, accel, mirror_port, &progress, &mut verdict)? else {
        return Ok(verdict);
    };
    let seed = write_seed(scenario, &model, &secrets, stage, peer.as_ref())?;
    let forwards = forwards(&expected, scenario)?;
    let config = QemuConfig {
        base_image: image.clone(),
        run_dir: scenario.run_dir.clone(),
        seed: Some(seed),
        memory_mib: 2048,
        cpus: 2,
        accel,
        mirror_port,
        forwards: forwards.clone(),
        internet: false,
        extra_nic: peer.as_ref().map(|p| std::sync::Arc::new(p.nic()) as std::sync::Arc<dyn super::qemu::ExtraNic>),
    };
    let (mut instance, mut agent) = first_boot(&config, scenario, &model, &progress, &mut verdict)?;
    let evidence = SecretEvidence::of(&secrets, &scenario.run_dir)?;
    let boot_started = instance.started;
    let mut checks = cloud_init_checks(&mut agent, &scenario.outcome)?;
    if scenario.outcome != Outcome::Healthy {
        checks.push(console_check(&instance));
        verdict.phases.push(("first boot".into(), checks));
        verdict.timings.push(("QEMU start to verdict".into(), boot_started.elapsed().as_secs_f64()));
        return Ok(verdict);
    }
    let phase = Phase {
        expected: &expected,
        digests: &evidence.digests,
        secret_values: &evidence.values,
        scenario,
        forwards: &forwards,
        peer: peer.as_ref(),
    };
    verdict.phases.extend(phase.run(&mut agent, &instance, "first boot", checks)?);
    verdict.timings.push(("QEMU start to first verdict".into(), boot_started.elapsed().as_secs_f64()));
    save_boot_analysis(&mut agent, &scenario.run_dir)?;
    if scenario.reboot {
        progress.say("rebooting");
        agent = reboot(agent, &mut instance, scenario.boot_timeout, &progress, &mut verdict)?;
        verdict.phases.extend(phase.run(&mut agent, &instance, "after reboot", Vec::new())?);
    }
    verdict.timings.push(("QEMU start to verdict".into(), boot_started.elapsed().as_secs_f64()));
    if !scenario.tamper.is_empty() {
        progress.say("breaking the guest on purpose");
        let detected = phase.tampered(&mut agent)?;
        verdict.phases.push(("deliberately broken guest (each change must be detected)".into(), detected));
    }
    verdict.timings.extend(peer.iter().flat_map(TunnelPeer::timings));
    if scenario.boot == Boot::BakeThenBoot {
        progress.say("scanning disks for secrets; booting a second instance of the golden image");
        let (values, timeout) = (&evidence.values, scenario.boot_timeout);
        let proofs =
            golden::instance_proofs(agent, &mut instance, &config, &image, values, timeout, &mut verdict.timings)?;
        verdict.phases.push(("golden image: secrets and per-instance identity".into(), proofs));
    }
    progress.say("done");
    drop(server);
    Ok(verdict)
}

/// The profile's secrets, answered with labelled random test values (a valid key for WireGuard).
fn test_secrets(model: &Model) -> Result<Secrets> {
    let mut source = TestSecrets::new();
    source.wireguard_key = model.wireguard.as_ref().and_then(|w| w.private_key.clone());
    secrets::resolve(model, Some(&source)).map_err(|errors| anyhow!("{}", Failure::Secrets(errors)))
}

/// Builds and serves the signed package mirror a base image is provisioned from, and points the
/// model's repositories at it. A golden image installs nothing at boot: it needs none.
fn serve_mirror(
    scenario: &Scenario,
    model: &mut Model,
    secrets: &Secrets,
    progress: &Progress,
) -> Result<Option<mirror::MirrorServer>> {
    if scenario.boot == Boot::Golden {
        if !scenario.containers.is_empty() || !scenario.listen.is_empty() {
            bail!("test containers and listeners need the mirror, which golden-image boots do not start");
        }
        return Ok(None);
    }
    progress.say("building the package mirror");
    let packages = crate::lower::lower(model, secrets).packages;
    let status = dpkg_status_of(&scenario.image)?;
    let request = MirrorRequest { packages: &packages, dpkg_status: &status };
    let mirror = mirror::build_mirror_with_cache(&scenario.run_dir, &request, &mirror::default_cache_dir())?;
    add_test_data(&mirror.root)?;
    use_mirror(model, &mirror.public_key);
    Ok(Some(mirror::serve(&mirror.root)?))
}

/// The disk to boot and the stage of user-data it gets; `None` when the scenario ended in its bake
/// (a bake meant to fail, whose checks are in the verdict).
fn image_to_boot(
    scenario: &Scenario,
    model: &Model,
    accel: Accel,
    mirror_port: Option<u16>,
    progress: &Progress,
    verdict: &mut Verdict,
) -> Result<Option<(PathBuf, Stage)>> {
    match scenario.boot {
        Boot::Provision => return Ok(Some((scenario.image.clone(), Stage::Full))),
        Boot::Golden => return Ok(Some((scenario.image.clone(), Stage::Boot))),
        Boot::BakeThenBoot => {}
    }
    progress.say("baking the golden image (bake stage)");
    let bake = golden::GoldenBake {
        model,
        profile: &scenario.profile,
        base_image: &scenario.image,
        run_dir: &scenario.run_dir,
        accel,
        mirror_port: mirror_port.context("baking needs the mirror")?,
        timeout: scenario.boot_timeout,
        failing_step: scenario.outcome.failing_step(),
    };
    match golden::bake_golden(&bake)? {
        golden::Baked::Image { path, checks, timings, note } => {
            progress.say(&note);
            verdict.timings.extend(timings);
            verdict.notes.push(note);
            verdict.phases.push(("golden image".into(), checks));
            progress.say("baked; booting an instance of it (boot stage)");
            Ok(Some((path, Stage::Boot)))
        }
        golden::Baked::Failed { checks, message } => {
            progress.say(&message);
            verdict.timings.push(("bake start to failure reported".into(), progress.elapsed()));
            verdict.notes.push(message);
            verdict.phases.push(("bake whose provisioning fails".into(), checks));
            Ok(None)
        }
    }
}

/// Renders the stage's user-data (kept in the run directory, 0600) and packs the seed image.
fn write_seed(
    scenario: &Scenario,
    model: &Model,
    secrets: &Secrets,
    stage: Stage,
    peer: Option<&TunnelPeer>,
) -> Result<PathBuf> {
    let user_data = pipeline::user_data(model, secrets, stage)?;
    write_atomic(&scenario.run_dir.join("user-data"), user_data.as_bytes(), 0o600)?;
    let network_config = peer.is_some().then(peer::network_config);
    let seed = pipeline::seed(&user_data, &model.host.hostname, network_config.as_deref())?;
    let seed_path = scenario.run_dir.join("seed.img");
    write_atomic(&seed_path, &seed.image, 0o600)?;
    Ok(seed_path)
}

/// A host port for every guest port probed from outside: the expected probes and the containers.
fn forwards(expected: &ExpectedState, scenario: &Scenario) -> Result<Vec<HostForward>> {
    let guest_ports = expected.outside.iter().map(|p| p.port).chain(scenario.containers.iter().map(|c| c.host_port));
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
    let booted = boot_to_cloud_init(config, scenario.boot_timeout, &mut |_| {})?;
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

/// A tiny container image for the Docker checks: Debian's static busybox and a page to serve.
fn add_test_data(root: &Path) -> Result<()> {
    let dir = root.join("testdata");
    let tar = dir.join("busybox.tar");
    if tar.is_file() {
        return Ok(());
    }
    let tree = tempfile::tempdir()?;
    std::fs::create_dir_all(tree.path().join("bin"))?;
    std::fs::create_dir_all(tree.path().join("www"))?;
    std::fs::copy("/bin/busybox", tree.path().join("bin/busybox"))
        .context("copying /bin/busybox (install Debian's busybox-static on the host)")?;
    std::fs::write(tree.path().join("www/index.html"), "kiln test container\n")?;
    std::fs::create_dir_all(&dir)?;
    let status = std::process::Command::new("tar")
        .args(["--owner=0", "--group=0", "--numeric-owner", "-C"])
        .arg(tree.path())
        .args(["-cf"])
        .arg(&tar)
        .arg(".")
        .status()
        .context("running tar")?;
    if !status.success() {
        bail!("tar failed building the test container image");
    }
    Ok(())
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

/// What every round of checks (first boot, after reboot) needs.
struct Phase<'a> {
    expected: &'a ExpectedState,
    digests: &'a SecretDigests,
    secret_values: &'a [String],
    scenario: &'a Scenario,
    forwards: &'a [HostForward],
    peer: Option<&'a TunnelPeer>,
}

impl Phase<'_> {
    /// Inside checks (state, secrets, console), then the scaffolding, then the checks from outside.
    fn run(
        &self,
        agent: &mut Agent,
        instance: &Instance,
        label: &str,
        mut checks: Vec<Check>,
    ) -> Result<Vec<(String, Vec<Check>)>> {
        let probe_log = self.scenario.run_dir.join(format!("probe-{}.txt", label.replace(' ', "-")));
        let scaffolded = !self.scenario.listen.is_empty() || !self.scenario.containers.is_empty();
        std::thread::scope(|scope| {
            // With nothing to start in the guest first, the probes from outside (mostly waiting out the
            // silence of closed ports) run while the inside checks do.
            let early =
                (!scaffolded).then(|| scope.spawn(|| outside_checks(self.expected, self.scenario, self.forwards)));
            let mut secret_values = self.secret_values.to_vec();
            if let Some(peer) = self.peer {
                secret_values.extend(peer.guest_secrets(agent)?);
            }
            // The scan (mostly reading files) runs in the guest while the probe does.
            let scan = start_secret_scan(agent, &secret_values)?;
            checks.extend(inside_checks(agent, self.expected, self.digests, &probe_log)?);
            checks.extend(finish_secret_scan(agent, scan)?);
            checks.push(console_check(instance));
            let mut outside = vec![ssh_answers_inside(agent)?];
            outside.extend(start_scaffolding(agent, self.scenario)?);
            match early {
                Some(probes) => {
                    outside.extend(probes.join().map_err(|_| anyhow::anyhow!("an outside probe panicked"))?)
                }
                None => outside.extend(outside_checks(self.expected, self.scenario, self.forwards)),
            }
            if let Some(peer) = self.peer {
                outside.extend(peer.checks(agent, Some(&instance.console_text()), label, true)?);
            }
            Ok(vec![(format!("{label}, inside"), checks), (format!("{label}, from outside"), outside)])
        })
    }
}

impl Phase<'_> {
    /// Applies every tampering, checks again from inside and outside, and reports whether each change
    /// made its check fail.
    fn tampered(&self, agent: &mut Agent) -> Result<Vec<Check>> {
        for tamper in &self.scenario.tamper {
            let out = agent.shell(&tamper.command, Duration::from_secs(60))?;
            if !out.ok() {
                bail!("tampering with `{}` failed: {}{}", tamper.command, out.stdout, out.stderr);
            }
        }
        let log = self.scenario.run_dir.join("probe-tampered.txt");
        let scan = start_secret_scan(agent, self.secret_values)?;
        let mut after = inside_checks(agent, self.expected, self.digests, &log)?;
        after.extend(finish_secret_scan(agent, scan)?);
        after.extend(outside_checks(self.expected, self.scenario, self.forwards));
        if let Some(peer) = self.peer {
            after.extend(peer.checks(agent, None, "tampered", false)?);
        }
        Ok(self
            .scenario
            .tamper
            .iter()
            .map(|t| {
                let failed = after.iter().any(|c| c.name == t.detected_by && !c.passed);
                Check::new(
                    format!("`{}` is detected by `{}`", t.command, t.detected_by),
                    "that check fails",
                    if failed { "it fails" } else { "it still passes" },
                    failed,
                )
            })
            .collect())
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

/// How many times (a second apart) the harness tries a test server or container it started before
/// giving up.
const LISTENER_START_TRIES: usize = 30;

/// Test scaffolding, started after the inside checks so it never shows up in them: a static busybox
/// from the mirror, HTTP servers on the scenario's ports, and the test containers (not restarted by
/// Docker, so the harness starts them again after a reboot). Returns checks made from inside the guest:
/// each container answers on the guest's own loopback, whatever the outside sees.
fn start_scaffolding(agent: &mut Agent, scenario: &Scenario) -> Result<Vec<Check>> {
    if scenario.listen.is_empty() && scenario.containers.is_empty() {
        return Ok(Vec::new());
    }
    let mut script = String::from(
        "set -e\nif [ ! -x /opt/kiln-test/bin/busybox ]; then\n  /usr/lib/apt/apt-helper download-file http://10.0.2.100/testdata/busybox.tar /opt/kiln-test.tar >/dev/null\n  mkdir -p /opt/kiln-test && tar -xf /opt/kiln-test.tar -C /opt/kiln-test\nfi\n",
    );
    for port in &scenario.listen {
        script.push_str(&format!(
            "setsid /opt/kiln-test/bin/busybox httpd -p {port} -h /opt/kiln-test/www </dev/null >/dev/null 2>&1 &\n"
        ));
    }
    if !scenario.containers.is_empty() {
        script.push_str("docker image inspect kiln/busybox >/dev/null 2>&1 || docker import /opt/kiln-test.tar kiln/busybox >/dev/null\n");
    }
    for c in &scenario.containers {
        let name = crate::templates::shell_quote(&c.name);
        script.push_str(&format!(
            "docker start {name} >/dev/null 2>&1 || docker run -d --name {name} -p {} kiln/busybox /bin/busybox httpd -f -p 8080 -h /www >/dev/null\n",
            crate::templates::shell_quote(&c.publish)
        ));
    }
    let out = agent.shell(&script, Duration::from_secs(300))?;
    if !out.ok() {
        bail!("starting the test scaffolding failed: {}{}", out.stdout, out.stderr);
    }
    let mut checks = Vec::new();
    // The servers start in the background: wait until each takes connections before anything probes it
    // from outside (without this, a probe could race the server's start and see "no answer").
    for port in &scenario.listen {
        let connect = format!("exec 3<>/dev/tcp/127.0.0.1/{port}");
        let mut answered = false;
        for _ in 0..LISTENER_START_TRIES {
            let probe =
                agent.exec("/usr/bin/timeout", &["5", "/bin/bash", "-c", &connect], None, Duration::from_secs(10))?;
            if probe.ok() {
                answered = true;
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        checks.push(Check::new(
            format!("inside, test server on {port}/tcp answers on the guest's loopback"),
            "answers",
            if answered { "answers" } else { "no answer" },
            answered,
        ));
    }
    for c in &scenario.containers {
        // bash's /dev/tcp, not busybox wget: Debian's static busybox segfaults resolving names.
        let fetch = format!(
            "exec 3<>/dev/tcp/127.0.0.1/{}; printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3; timeout 5 cat <&3",
            c.host_port
        );
        let mut answered = false;
        for _ in 0..LISTENER_START_TRIES {
            let probe =
                agent.exec("/usr/bin/timeout", &["10", "/bin/bash", "-c", &fetch], None, Duration::from_secs(20))?;
            if probe.stdout.contains("kiln test container") {
                answered = true;
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        checks.push(Check::new(
            format!("inside, container {} answers on the guest's loopback", c.name),
            "answers",
            if answered { "answers" } else { "no answer" },
            answered,
        ));
    }
    Ok(checks)
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

fn outside_checks(expected: &ExpectedState, scenario: &Scenario, forwards: &[HostForward]) -> Vec<Check> {
    // A service under emulation answers within a second or two; five seconds of silence means closed.
    let window = Duration::from_secs(5);
    let mut by_guest: BTreeMap<u16, u16> = BTreeMap::new();
    for f in forwards {
        by_guest.entry(f.guest_port).or_insert(f.host_port);
    }
    // (name, host port, speak HTTP first, should answer)
    let mut probes: Vec<(String, u16, bool, bool)> = Vec::new();
    for probe in &expected.outside {
        if let Some(host_port) = by_guest.get(&probe.port) {
            probes.push((
                verify::check_names::from_outside(probe.port, &probe.proto, probe.reachable),
                *host_port,
                probe.port != 22,
                probe.reachable,
            ));
        }
    }
    for c in &scenario.containers {
        if let Some(host_port) = by_guest.get(&c.host_port) {
            probes.push((
                format!("from outside, container {} (-p {})", c.name, c.publish),
                *host_port,
                true,
                c.reachable_from_outside,
            ));
        }
    }
    // Probes run in parallel: each "closed" one waits out its whole window.
    let answers: Vec<bool> = std::thread::scope(|scope| {
        let handles: Vec<_> =
            probes.iter().map(|(_, port, http, _)| scope.spawn(move || speaks(*port, *http, window))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or(false)).collect()
    });
    let text = |answered: bool| if answered { "answers" } else { "no answer" };
    probes
        .into_iter()
        .zip(answers)
        .map(|((name, _, _, should), answered)| Check::new(name, text(should), text(answered), answered == should))
        .collect()
}
