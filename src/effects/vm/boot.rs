//! Booting a guest up to the end of cloud-init, and what cloud-init says about it: the primitives
//! `kiln bake` and `kiln test` share (a hang in early boot is retried once on a fresh overlay).

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::qemu::{Instance, QemuConfig};
use super::qga::Agent;
use crate::lower::wireguard::PUBLIC_KEY_LINE;
use crate::verify::{Check, cloud_init};

const FINISHED: &str = "Cloud-init v. ";
const FATAL_PATTERNS: &[&str] =
    &["Kernel panic", "Oops:", "BUG: ", "emergency mode", "Give root password for maintenance", "end Kernel panic"];

fn finished_count(console: &str) -> usize {
    console.lines().filter(|l| l.contains(FINISHED) && l.contains(" finished at ")).count()
}

/// The guest stopped making progress: emulated timers stalled (seen here, rarely, in early boot under
/// TCG with two vCPUs: an RCU stall report, then silence with QEMU idle). The harness retries such a
/// boot once, and says so.
#[derive(Debug, thiserror::Error)]
#[error("the guest hung (RCU stall, then no console output for {silent_secs} s); console tail:\n{tail}")]
pub struct GuestHung {
    pub silent_secs: u64,
    pub tail: String,
}

const HANG_SILENCE: Duration = Duration::from_secs(90);

/// A guest booted on a fresh overlay up to the end of cloud-init.
pub struct Booted {
    pub instance: Instance,
    /// cloud-init's "finished" console line.
    pub finished: String,
    /// Why the first attempt was abandoned, when the guest hung and was booted again.
    pub retried: Option<String>,
}

/// The guest's kernel or init reported a fatal error on the console (a panic, an oops, an emergency shell).
#[derive(Debug, thiserror::Error)]
#[error("the guest hit `{pattern}` during boot; console tail:\n{tail}")]
pub struct GuestFatal {
    pub pattern: &'static str,
    pub tail: String,
}

/// Starts QEMU and waits for cloud-init to finish; a guest that hangs in early boot (`GuestHung`) is
/// started once more on a fresh overlay, and so is one that hit a fatal error (`GuestFatal`) under
/// multi-threaded TCG, then with one host thread (`qemu::TCG` says why: a vCPU running code patched
/// away under it). `watch` sees the console as it grows.
pub fn boot_to_cloud_init(config: &QemuConfig, timeout: Duration, watch: &mut dyn FnMut(&str)) -> Result<Booted> {
    let mut instance = Instance::start(config)?;
    let first = wait_for_cloud_init_watching(&mut instance, 0, timeout, &mut *watch);
    let retry = first.as_ref().err().and_then(|e| retry_with(e, config));
    match (first, retry) {
        (Ok(finished), _) => Ok(Booted { instance, finished, retried: None }),
        (Err(e), Some(config)) => {
            instance.kill();
            let mut instance = Instance::start(&config)?;
            let finished = wait_for_cloud_init_watching(&mut instance, 0, timeout, watch)?;
            Ok(Booted { instance, finished, retried: Some(e.to_string()) })
        }
        (Err(e), None) => Err(e),
    }
}

/// How a boot that failed with `error` is tried once more, if it is: the same way after a hang, with one
/// host thread after a fatal error under multi-threaded TCG; anything else is the guest's own failure.
fn retry_with(error: &anyhow::Error, config: &QemuConfig) -> Option<QemuConfig> {
    if error.downcast_ref::<GuestHung>().is_some() {
        Some(config.clone())
    } else if error.downcast_ref::<GuestFatal>().is_some() && config.multi_threaded_tcg {
        Some(QemuConfig { multi_threaded_tcg: false, ..config.clone() })
    } else {
        None
    }
}

/// The first fatal pattern on the console, if any.
pub fn fatal_pattern(console: &str) -> Option<&'static str> {
    FATAL_PATTERNS.iter().copied().find(|p| console.contains(p))
}

pub fn wait_for_cloud_init(instance: &mut Instance, already: usize, timeout: Duration) -> Result<String> {
    wait_for_cloud_init_watching(instance, already, timeout, |_| {})
}

/// `wait_for_cloud_init`, handing `watch` the console text as it grows (for `kiln bake -v`).
pub fn wait_for_cloud_init_watching(
    instance: &mut Instance,
    already: usize,
    timeout: Duration,
    mut watch: impl FnMut(&str),
) -> Result<String> {
    let mut last_len = 0;
    let mut last_growth = Instant::now();
    let mut hung = false;
    let ok = instance.wait_console(timeout, |console| {
        if console.len() != last_len {
            last_len = console.len();
            last_growth = Instant::now();
            watch(console);
        }
        hung = console.contains("detected stalls on CPUs") && last_growth.elapsed() > HANG_SILENCE;
        hung || finished_count(console) > already || fatal_pattern(console).is_some()
    })?;
    if hung {
        return Err(GuestHung { silent_secs: HANG_SILENCE.as_secs(), tail: instance.console_tail(15) }.into());
    }
    let console = instance.console_text();
    if let Some(pattern) = fatal_pattern(&console) {
        return Err(GuestFatal { pattern, tail: instance.console_tail(30) }.into());
    }
    if !ok {
        bail!("cloud-init did not finish within {} s; console tail:\n{}", timeout.as_secs(), instance.console_tail(30));
    }
    Ok(console.lines().rfind(|l| l.contains(" finished at ")).unwrap_or("").trim().to_string())
}

/// What cloud-init and the provisioning script say about a finished boot.
pub struct CloudInitOutcome {
    /// Every error cloud-init recorded, in any of the places it records them.
    pub errors: Vec<String>,
    /// The provisioning step that failed, as the script's trap printed it.
    pub failed_step: Option<String>,
    /// The script printed `kiln: provisioning complete`.
    pub complete: bool,
}

impl CloudInitOutcome {
    /// One line for an error message: the errors and the failing step.
    pub fn describe(&self) -> String {
        let step = self.failed_step.as_ref().map(|s| format!("; kiln step failed: {s}")).unwrap_or_default();
        if self.errors.is_empty() {
            format!("no cloud-init error, but the provisioning script did not complete{step}")
        } else {
            format!("{} error(s): {}{step}", self.errors.len(), self.errors.join("; "))
        }
    }
}

pub fn cloud_init_outcome(agent: &mut Agent) -> Result<CloudInitOutcome> {
    let out = agent.shell(&cloud_init::script().text(), cloud_init::PROBE_TIMEOUT)?;
    let probe = cloud_init::CloudInitProbe::parse(&out.stdout, out.code, &out.stderr)?;
    let errors = cloud_init::errors(&probe)?;
    let provisioning = cloud_init::provisioning(&probe)?;
    Ok(CloudInitOutcome { errors, failed_step: provisioning.failed.map(|f| f.step), complete: provisioning.complete })
}

/// The public key the guest printed on its console (`kiln: wireguard public key (IFACE): KEY`), if it
/// did: the key its peers need, generated on the host at first boot.
pub fn reported_public_key(console: &str, interface: &str) -> Option<String> {
    let marker = format!("{PUBLIC_KEY_LINE} ({interface}): ");
    console
        .lines()
        .filter_map(|l| l.split(&marker).nth(1))
        .map(str::trim)
        .rfind(|k| crate::model::is_wireguard_key(k))
        .map(str::to_string)
}

/// The console shows no panic, oops, emergency shell or failed unit.
pub fn console_check(instance: &Instance) -> Check {
    let console = instance.console_text();
    let bad: Vec<&str> =
        console.lines().filter(|l| FATAL_PATTERNS.iter().any(|p| l.contains(p)) || l.contains("[FAILED]")).collect();
    Check::new(
        "console: no panic, oops, emergency shell or failed unit",
        "clean",
        if bad.is_empty() { "clean".into() } else { bad.join(" | ") },
        bad.is_empty(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hang_is_retried_as_it_was_and_an_oops_only_under_multi_threaded_tcg_with_one_thread() {
        let config = |multi_threaded_tcg| QemuConfig {
            base_image: "base.qcow2".into(),
            run_dir: "run".into(),
            seed: None,
            memory_mib: 2048,
            cpus: 2,
            accel: super::super::qemu::Accel::Tcg,
            mirror_port: None,
            forwards: Vec::new(),
            internet: false,
            extra_nic: None,
            multi_threaded_tcg,
        };
        let hung = anyhow::Error::new(GuestHung { silent_secs: 90, tail: String::new() });
        let oops = anyhow::Error::new(GuestFatal { pattern: "Oops:", tail: String::new() });
        let other = anyhow::anyhow!("cloud-init did not finish within 600 s");
        assert!(retry_with(&hung, &config(true)).is_some_and(|c| c.multi_threaded_tcg));
        assert!(retry_with(&hung, &config(false)).is_some_and(|c| !c.multi_threaded_tcg));
        assert!(retry_with(&oops, &config(true)).is_some_and(|c| !c.multi_threaded_tcg));
        assert!(retry_with(&oops, &config(false)).is_none(), "one thread already: the guest's own failure");
        assert!(retry_with(&other, &config(true)).is_none());
        let console = "[    2.1] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI\n";
        assert_eq!(fatal_pattern(console), Some("Oops:"));
        assert_eq!(fatal_pattern("[  98.5] cloud-init[372]: Setting up docker.io\n"), None);
    }

    #[test]
    fn the_reported_key_is_read_from_the_console() {
        let console = "[  198.1] cloud-init[410]: kiln: step: wireguard: bring up wg0\n[  198.5] cloud-init[410]: kiln: wireguard public key (wg0): TG+auU5uUQmkpMcrQbM5iWv2ayKYq1Y/0AnHjYggqmo=\n";
        assert_eq!(
            reported_public_key(console, "wg0").as_deref(),
            Some("TG+auU5uUQmkpMcrQbM5iWv2ayKYq1Y/0AnHjYggqmo=")
        );
        assert_eq!(reported_public_key(console, "wg1"), None);
        assert_eq!(reported_public_key("kiln: wireguard public key (wg0): garbage\n", "wg0"), None);
    }
}
