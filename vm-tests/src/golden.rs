//! Proofs about golden images, for the scenarios that bake first (`golden`, `golden-broken`): the bake
//! itself (manifest, no partial left, or a failure that names its step), no secret anywhere on the
//! image's disk (with a control: the same scan finds them on an instance's disk), and two instances of
//! one image that do not share a machine-id or SSH host keys.
//!
//! `bake_first` is the scenario's `Extension::image` (bake, then boot an instance of the image with the
//! boot stage); `instance_proofs` runs after the instance's rounds of checks.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use kiln::effects::vm::bake::{self, BakeError, BakeRequest, BaseImage, ImageFormat, manifest_path};
use kiln::effects::vm::boot::{boot_to_cloud_init, cloud_init_outcome};
use kiln::effects::vm::harness::{BeforeBoot, Image};
use kiln::effects::vm::qemu::{Accel, Instance, QemuConfig};
use kiln::effects::vm::qga::Agent;
use kiln::effects::vm::wait;
use kiln::lower::Stage;
use kiln::model::Model;
use kiln::verify::Check;

/// What baking gave the scenario.
pub enum Baked {
    /// The golden image, checks on it, and seconds per bake phase.
    Image { path: PathBuf, checks: Vec<Check>, timings: Vec<(String, f64)>, note: String },
    /// The bake failed as the scenario intended; checks on how it failed, and kiln's message.
    Failed { checks: Vec<Check>, message: String },
}

/// What a scenario bakes, and whether the bake is meant to fail.
pub struct GoldenBake<'a> {
    pub model: &'a Model,
    pub profile: &'a Path,
    pub base_image: &'a Path,
    /// Where `golden.qcow2` and the build VM's work directory go.
    pub run_dir: &'a Path,
    pub accel: Accel,
    pub mirror_port: u16,
    pub timeout: Duration,
    /// The provisioning step that must fail, for a bake meant to fail.
    pub failing_step: Option<&'a str>,
}

/// Bakes the golden image, then has the run boot an instance of it with the boot stage; or ends the run
/// when the bake fails (as it must, for a scenario meant to fail). Returns the image to boot, if any.
pub fn bake_first(before: BeforeBoot) -> Result<(Image, Option<PathBuf>)> {
    let BeforeBoot { scenario, model, accel, mirror_port, progress, verdict } = before;
    progress.say("baking the golden image (bake stage)");
    let bake = GoldenBake {
        model,
        profile: &scenario.profile,
        base_image: &scenario.image,
        run_dir: &scenario.run_dir,
        accel,
        mirror_port: mirror_port.context("baking needs the mirror")?,
        timeout: scenario.boot_timeout,
        failing_step: scenario.outcome.failing_step(),
    };
    match bake_golden(&bake)? {
        Baked::Image { path, checks, timings, note } => {
            progress.say(&note);
            verdict.timings.extend(timings);
            verdict.notes.push(note);
            verdict.phases.push(("golden image".into(), checks));
            progress.say("baked; booting an instance of it (boot stage)");
            Ok((Image::Other { path: path.clone(), stage: Stage::Boot }, Some(path)))
        }
        Baked::Failed { checks, message } => {
            progress.say(&message);
            verdict.timings.push(("bake start to failure reported".into(), progress.elapsed()));
            verdict.notes.push(message);
            verdict.phases.push(("bake whose provisioning fails".into(), checks));
            Ok((Image::Ended, None))
        }
    }
}

pub fn bake_golden(golden: &GoldenBake) -> Result<Baked> {
    let output = golden.run_dir.join("golden.qcow2");
    let base = BaseImage::check(golden.base_image)?;
    let model = golden.model;
    let request = BakeRequest {
        model,
        profile_path: golden.profile,
        base_image: &base,
        output: &output,
        format: ImageFormat::Qcow2,
        work_dir: &golden.run_dir.join("bake"),
        accel: golden.accel.into(),
        started: std::time::Instant::now(),
        mirror_port: Some(golden.mirror_port),
        // The bake that fails installs its packages in the build VM, as `kiln bake` does without root: CI's
        // run of that path. The golden bake takes the chroot, as it does as root.
        packages_in_vm: golden.failing_step.is_some(),
        // A test bakes every time: the cache would skip exactly what is under test.
        force: true,
        verbose: false,
        timeout: golden.timeout,
    };
    let _ = fs::remove_file(&output);
    let result = bake::bake(&request);
    let partial_left = output.with_file_name("golden.qcow2.partial").exists();
    match (result, golden.failing_step) {
        (Ok((_, manifest)), None) => Ok(image_checks(&request, &manifest, partial_left)),
        (Err(BakeError::Provisioning { detail, .. }), Some(step)) => {
            Ok(failure_checks(&output, &detail, step, partial_left))
        }
        (Ok(_), Some(step)) => Ok(Baked::Failed {
            message: "the bake succeeded".into(),
            checks: vec![Check::new(
                "bake: provisioning fails",
                format!("fails in {step}"),
                "the bake succeeded",
                false,
            )],
        }),
        (Err(e), _) => Err(anyhow::Error::new(e).context("baking the golden image")),
    }
}

/// A bake that succeeded: its manifest is true to the image and the profile, it left no partial file,
/// and baking again with the same inputs reuses the image.
fn image_checks(request: &BakeRequest, manifest: &bake::Manifest, partial_left: bool) -> Baked {
    let output = request.output;
    let mut checks = Vec::new();
    let on_disk = kiln::effects::fs::sha256_file(output).unwrap_or_default();
    checks.push(Check::new(
        "golden image: the manifest's sha256 is the image's",
        manifest.output.sha256.as_str(),
        on_disk.as_str(),
        on_disk == manifest.output.sha256,
    ));
    let installed: Vec<&str> = manifest.packages.iter().map(|p| p.name.as_str()).collect();
    let secrets = kiln::secrets::placeholders(request.model);
    let wanted = kiln::lower::lower_stage(request.model, &secrets, Stage::Bake).packages;
    let missing: Vec<&String> = wanted.iter().filter(|p| !installed.contains(&p.as_str())).collect();
    checks.push(Check::new(
        "golden image: the manifest lists every package of the profile, with versions",
        wanted.join(", "),
        if missing.is_empty() {
            format!("{} packages listed", installed.len())
        } else {
            format!("missing: {missing:?}")
        },
        missing.is_empty() && manifest.packages.iter().all(|p| !p.version.is_empty()),
    ));
    checks.push(no_partial_check(partial_left));
    // Baking again with the same inputs must keep the image: no boot, same bytes.
    let again = bake::bake(&BakeRequest { force: false, ..*request });
    let reused = matches!(&again, Ok((bake::Outcome::UpToDate, m)) if m.output.sha256 == manifest.output.sha256);
    checks.push(Check::new(
        "golden image: baking again with the same inputs reuses it",
        "up to date, same sha256",
        match &again {
            Ok((outcome, _)) => format!("{outcome:?}"),
            Err(e) => format!("error: {e}"),
        },
        reused,
    ));
    let timings = manifest.timings.iter().map(|(phase, s)| (format!("bake: {phase}"), *s)).collect();
    let note = format!(
        "golden image: {:.0} MB compressed qcow2 ({} packages), virtual size {} GiB",
        manifest.output.bytes as f64 / 1e6,
        manifest.packages.len(),
        manifest.output.virtual_size >> 30
    );
    Baked::Image { path: output.to_path_buf(), checks, timings, note }
}

/// cloud-init's module for `packages`. Its errors name a module as the release's `cloud.cfg` lists it:
/// `package-update-upgrade-install` in Debian 12's (seen in this scenario's bake), `_` in others.
const PACKAGE_MODULE: &str = "package_update_upgrade_install";

/// Whether kiln's bake error has cloud-init's package module failing, whichever separator names it.
fn package_module_failed(detail: &str) -> bool {
    detail.replace('-', "_").contains(PACKAGE_MODULE)
}

/// A bake meant to fail: the error names the failing step, the packages (installed in the build VM) were
/// not what failed, and nothing is written.
fn failure_checks(output: &Path, detail: &str, step: &str, partial_left: bool) -> Baked {
    let named = detail.contains(&format!("kiln step failed: {step}"));
    // The packages were installed in the build VM, by cloud-init's package module.
    let packages_failed = package_module_failed(detail);
    let exists = |path: &Path| if path.exists() { "exists" } else { "absent" };
    Baked::Failed {
        message: format!("kiln bake said: provisioning failed in the build VM: {detail}"),
        checks: vec![
            Check::new("bake: the error names the failing step", step, detail, named),
            Check::new(
                "bake (packages installed in the build VM): cloud-init's package module had no error",
                format!("no {PACKAGE_MODULE} error"),
                if packages_failed { format!("{PACKAGE_MODULE} failed") } else { "none".to_string() },
                !packages_failed,
            ),
            Check::new(
                "bake: no image and no manifest are written",
                "neither exists",
                format!("image {}, manifest {}", exists(output), exists(&manifest_path(output))),
                !output.exists() && !manifest_path(output).exists(),
            ),
            no_partial_check(partial_left),
        ],
    }
}

/// What golden images promise about a running instance: no test secret anywhere on the image's disk
/// (with the control that the same scan finds them on this instance's disk), and a second instance of
/// the image that shares neither machine-id nor SSH host keys with this one. Stops the instance.
pub fn instance_proofs(
    mut agent: Agent,
    instance: &mut Instance,
    config: &QemuConfig,
    golden_image: &Path,
    secret_values: &[String],
    timeout: Duration,
    timings: &mut Vec<(String, f64)>,
) -> Result<Vec<Check>> {
    let first = identity(&mut agent)?;
    agent.shell("sync", wait::GUEST_COMMAND)?;
    drop(agent);
    instance.kill();
    let run_dir = &config.run_dir;
    let mut checks = Vec::new();
    // The control first: the scan must find the values where they are (the instance's disk), and the
    // instance's own random seed and host name.
    let on_instance = scan_disk(&run_dir.join(kiln::effects::vm::qemu::OVERLAY), secret_values, run_dir)?;
    checks.push(Check::new(
        "control: the disk scan finds the test secrets on an instance's disk",
        "at least one found",
        format!("{} of {} found", on_instance.secrets, secret_values.len()),
        on_instance.secrets > 0,
    ));
    checks.push(Check::new(
        "control: an instance's disk has its random seeds, a non-empty /etc/hostname and a journal",
        "random seed present, boot loader random seed present, /etc/hostname non-empty, a journal",
        on_instance.describe(),
        on_instance.random_seed
            && on_instance.boot_loader_seed
            && on_instance.hostname_bytes.is_some_and(|n| n > 0)
            && !on_instance.journals.is_empty(),
    ));
    let on_golden = scan_disk(golden_image, secret_values, run_dir)?;
    checks.push(Check::new(
        "no test secret value anywhere on the golden image's disk",
        "0 found",
        format!("{} of {} found", on_golden.secrets, secret_values.len()),
        on_golden.secrets == 0 && !secret_values.is_empty(),
    ));
    // systemd saves a seed at power-off: one left in the image would start every instance with the same
    // 32 bytes of entropy.
    checks.push(Check::new(
        CHECK_NO_RANDOM_SEED,
        "absent",
        if on_golden.random_seed { "present" } else { "absent" },
        !on_golden.random_seed,
    ));
    // systemd-boot-random-seed.service writes the boot loader's seed to the ESP at every boot, the build
    // VM's included; systemd-boot hands it to the kernel of the next boot: one left in the image would be
    // every instance's first seed.
    checks.push(Check::new(
        CHECK_NO_BOOT_LOADER_SEED,
        "absent",
        if on_golden.boot_loader_seed { "present" } else { "absent" },
        !on_golden.boot_loader_seed,
    ));
    checks.push(Check::new(
        CHECK_EMPTY_HOSTNAME,
        "empty or absent (cloud-init names each instance)",
        match on_golden.hostname_bytes {
            None => "absent".to_string(),
            Some(n) => format!("{n} bytes"),
        },
        on_golden.hostname_bytes.is_none_or(|n| n == 0),
    ));
    // The build VM's journal (its machine-id, its boot, its power-off) is not the instances' history.
    checks.push(Check::new(
        CHECK_NO_JOURNAL,
        "/var/log/journal empty",
        on_golden.journal_description(),
        on_golden.journals.is_empty(),
    ));
    let second_config = QemuConfig { run_dir: run_dir.join("second-instance"), ..config.clone() };
    let (second, errors, seconds) = second_instance(&second_config, timeout)?;
    timings.push(("second instance: QEMU start to cloud-init finished".into(), seconds));
    checks.push(Check::new(
        "second instance: cloud-init finished without errors",
        "no errors",
        if errors.is_empty() { "no errors".to_string() } else { errors.join("; ") },
        errors.is_empty(),
    ));
    checks.extend(identity_checks(&first, &second));
    Ok(checks)
}

fn no_partial_check(partial_left: bool) -> Check {
    Check::new(
        "bake: no partial output left",
        "no golden.qcow2.partial",
        if partial_left { "partial file left" } else { "none" },
        !partial_left,
    )
}

/// What must differ between two instances of one golden image.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub machine_id: String,
    /// `ssh-keygen -l` fingerprints of the host keys.
    pub host_keys: Vec<String>,
}

pub fn identity(agent: &mut Agent) -> Result<Identity> {
    use kiln::verify::identity::{self, IdentityProbe, IdentitySection};
    let out = agent.shell(&identity::script().text(), identity::PROBE_TIMEOUT)?;
    let probe = IdentityProbe::parse(&out.stdout, out.code, &out.stderr)?;
    Ok(Identity {
        machine_id: probe.get(IdentitySection::MachineId)?.to_string(),
        host_keys: identity::parse_fingerprints(probe.get(IdentitySection::HostKeys)?)?,
    })
}

pub const CHECK_NO_RANDOM_SEED: &str = "golden image: no systemd random seed (/var/lib/systemd/random-seed)";
pub const CHECK_NO_BOOT_LOADER_SEED: &str = "golden image: no boot loader random seed (ESP /loader/random-seed)";
pub const CHECK_EMPTY_HOSTNAME: &str = "golden image: /etc/hostname names no host (not the build VM's)";
pub const CHECK_NO_JOURNAL: &str = "golden image: no journal (/var/log/journal empty, not the build VM's)";

/// What one disk holds that must not be shared between instances of an image.
pub struct DiskScan {
    /// How many of the secret values appear anywhere on the disk.
    pub secrets: usize,
    /// Whether `/var/lib/systemd/random-seed` exists.
    pub random_seed: bool,
    /// Whether the EFI system partition has systemd-boot's `/loader/random-seed`.
    pub boot_loader_seed: bool,
    /// `/etc/hostname`'s size, if it exists.
    pub hostname_bytes: Option<u64>,
    /// What `/var/log/journal` holds (a directory per machine-id whose journal was kept).
    pub journals: Vec<String>,
}

impl DiskScan {
    fn describe(&self) -> String {
        let seed = if self.random_seed { "random seed present" } else { "no random seed" };
        let boot_seed =
            if self.boot_loader_seed { "boot loader random seed present" } else { "no boot loader random seed" };
        let hostname = match self.hostname_bytes {
            Some(n) => format!("/etc/hostname {n} bytes"),
            None => "no /etc/hostname".to_string(),
        };
        format!("{seed}, {boot_seed}, {hostname}, {}", self.journal_description())
    }

    fn journal_description(&self) -> String {
        if self.journals.is_empty() {
            "/var/log/journal empty".to_string()
        } else {
            format!("/var/log/journal holds {}", self.journals.join(", "))
        }
    }
}

/// Converts `image` (and its backing chain) to raw in `scratch`, counts the secret values found anywhere on
/// the disk (files, deleted blocks, journals: the whole virtual disk is read), and looks for the files that
/// make an instance itself (the random seed, the host name) in its root file system.
pub fn scan_disk(image: &Path, secrets: &[String], scratch: &Path) -> Result<DiskScan> {
    let raw = scratch.join("scan.raw");
    crate::disk::to_raw(image, &raw).with_context(|| format!("converting {} for the scan", image.display()))?;
    let scanned = (|| -> Result<DiskScan> {
        let secrets = scan_file(&raw, secrets)?;
        // The partition table read once for both listings.
        let root = crate::disk::root_device(&raw)?;
        let random_seed = crate::disk::list(&root, "/var/lib/systemd")?.iter().any(|e| e.name == "random-seed");
        let hostname_bytes =
            crate::disk::list(&root, "/etc")?.into_iter().find(|e| e.name == "hostname").and_then(|e| e.size);
        let journals = crate::disk::list(&root, "/var/log/journal")?
            .into_iter()
            .map(|e| e.name)
            .filter(|name| name != "." && name != "..")
            .collect();
        let boot_loader_seed = crate::disk::esp_paths(&raw)?.iter().any(|p| p == crate::disk::ESP_RANDOM_SEED);
        Ok(DiskScan { secrets, random_seed, boot_loader_seed, hostname_bytes, journals })
    })();
    fs::remove_file(&raw).with_context(|| format!("removing {}", raw.display()))?;
    scanned
}

fn scan_file(path: &Path, secrets: &[String]) -> Result<usize> {
    let finders: Vec<memchr::memmem::Finder> =
        secrets.iter().map(|s| memchr::memmem::Finder::new(s.as_bytes())).collect();
    let overlap = secrets.iter().map(String::len).max().unwrap_or(0);
    let mut found = vec![false; secrets.len()];
    let mut file = fs::File::open(path)?;
    let mut buffer = vec![0u8; 16 << 20];
    let mut kept = 0;
    loop {
        let n = file.read(&mut buffer[kept..])?;
        if n == 0 {
            break;
        }
        let filled = kept + n;
        for (i, finder) in finders.iter().enumerate() {
            found[i] |= finder.find(&buffer[..filled]).is_some();
        }
        // Keep the tail so a value split across two reads is still seen whole.
        kept = overlap.min(filled);
        buffer.copy_within(filled - kept..filled, 0);
    }
    Ok(found.iter().filter(|f| **f).count())
}

/// Boots a second instance of the golden image with the same boot-stage seed and returns its identity.
pub fn second_instance(config: &QemuConfig, timeout: Duration) -> Result<(Identity, Vec<String>, f64)> {
    let started = Instant::now();
    let instance = boot_to_cloud_init(config, timeout, &mut |_| {})?.instance;
    let mut agent = instance.agent(wait::AGENT_CONNECT)?;
    let outcome = cloud_init_outcome(&mut agent)?;
    let identity = identity(&mut agent)?;
    Ok((identity, outcome.errors, started.elapsed().as_secs_f64()))
}

/// The identity checks between two instances.
pub fn identity_checks(first: &Identity, second: &Identity) -> Vec<Check> {
    let valid = |id: &Identity| id.machine_id.len() == 32 && id.machine_id.chars().all(|c| c.is_ascii_hexdigit());
    let shared: Vec<&String> = first.host_keys.iter().filter(|k| second.host_keys.contains(k)).collect();
    vec![
        Check::new(
            "two instances of the golden image have different machine-ids",
            "two different valid ids",
            format!("{} / {}", first.machine_id, second.machine_id),
            valid(first) && valid(second) && first.machine_id != second.machine_id,
        ),
        Check::new(
            "two instances of the golden image have different SSH host keys",
            "no fingerprint in common",
            format!("{} and {} keys, {} in common", first.host_keys.len(), second.host_keys.len(), shared.len()),
            !first.host_keys.is_empty() && !second.host_keys.is_empty() && shared.is_empty(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scan_finds_values_anywhere_including_across_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.raw");
        let mut disk = vec![0u8; (16 << 20) + 100];
        let secret = "kiln-test-secret-0123456789abcdef";
        // Straddles the boundary between the first and second 16 MiB read.
        let at = (16 << 20) - 10;
        disk[at..at + secret.len()].copy_from_slice(secret.as_bytes());
        fs::write(&path, &disk).unwrap();
        let secrets = vec![secret.to_string(), "kiln-test-secret-absent".to_string()];
        assert_eq!(scan_file(&path, &secrets).unwrap(), 1);
        fs::write(&path, vec![0u8; 1 << 20]).unwrap();
        assert_eq!(scan_file(&path, &secrets).unwrap(), 0);
    }

    /// kiln bake's errors from this scenario's real bakes (Debian 12, cloud-init 22.4.2), shortened: the usual one,
    /// where only the provisioning step fails, and one where an apt option in the profile (`DPkg::Pre-Install-Pkgs
    /// {"/bin/false";}`) made the package module fail too. The check first matched only `_`, and passed on the second.
    #[test]
    fn a_failed_package_module_is_seen_under_either_name() {
        let usual = "4 error(s): module scripts-user failed; modules-final: \"('scripts-user', RuntimeError('Runparts: \
            1 failures (runcmd) in 1 attempted commands'))\"; unit cloud-final failed; kiln step failed: ssh: apply hardening";
        let packages = "7 error(s): module package-update-upgrade-install failed; module scripts-user failed; \
            modules-final: \"('package-update-upgrade-install', ProcessExecutionError(\\\"Unexpected error while running \
            command.\\nCommand: ['apt-get', '--option=Dpkg::Options::=--force-confold', 'install', 'ufw']\\nExit code: \
            100\\\"))\"; unit cloud-final failed; kiln step failed: ssh: apply hardening";
        assert!(!package_module_failed(usual));
        assert!(package_module_failed(packages));
        assert!(package_module_failed(&packages.replace("package-update-upgrade-install", PACKAGE_MODULE)));
        let checks = |detail| match failure_checks(
            Path::new("/nonexistent/golden.qcow2"),
            detail,
            "ssh: apply hardening",
            false,
        ) {
            Baked::Failed { checks, .. } => checks,
            Baked::Image { .. } => unreachable!("a failure is reported as one"),
        };
        assert!(checks(usual).iter().all(|c| c.passed), "{:?}", checks(usual));
        let failing: Vec<String> = checks(packages).into_iter().filter(|c| !c.passed).map(|c| c.name).collect();
        assert_eq!(failing, ["bake (packages installed in the build VM): cloud-init's package module had no error"]);
    }

    #[test]
    fn identical_or_empty_identities_fail() {
        let a = Identity { machine_id: "a".repeat(32), host_keys: vec!["SHA256:x".into()] };
        let b = Identity { machine_id: "b".repeat(32), host_keys: vec!["SHA256:y".into()] };
        assert!(identity_checks(&a, &b).iter().all(|c| c.passed));
        assert!(identity_checks(&a, &a).iter().all(|c| !c.passed));
        let empty = Identity { machine_id: String::new(), host_keys: Vec::new() };
        assert!(identity_checks(&a, &empty).iter().all(|c| !c.passed));
    }
}
