//! Which accelerator QEMU runs guests with, decided once per machine boot: KVM only where a guest was seen
//! to boot with it (a bounded probe; on some machines /dev/kvm exists but KVM guests hang at kernel
//! entry), else TCG. The verdict is kept in kiln's cache keyed by the boot, the kernel and QEMU's version,
//! so only the first command after a boot pays for the probe; `--accel` or `KILN_ACCEL` decide without one.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use super::qemu::{Accel, Instance, QemuConfig};
use crate::effects::fs::write_atomic;

/// A KVM guest prints the kernel banner within seconds; one that has not in this long hangs (as KVM
/// guests do on this kind of machine) and kiln falls back to TCG.
const KVM_PROBE: Duration = Duration::from_secs(20);
/// The variable that decides like `--accel` (for CI, where every command would need the flag).
pub const ENV: &str = "KILN_ACCEL";

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Choice {
    /// KVM if a guest boots with it here (probed once per machine boot), else TCG.
    Auto,
    Kvm,
    Tcg,
}

/// The accelerator, and how it was decided (said on stderr, kept in the bake manifest's timings).
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub accel: Accel,
    pub how: String,
    /// Time spent deciding: the probe's boot, when there was one.
    pub seconds: f64,
}

/// What the cached verdict holds: the machine state it was probed on, and the verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Verdict {
    boot_id: String,
    kernel: String,
    qemu: String,
    kvm: bool,
}

/// Decides the accelerator: `choice` if not `Auto`, else `KILN_ACCEL`, else TCG without /dev/kvm, else the
/// verdict probed earlier in this machine boot, else a probe booting `base_image` (work files in `scratch`).
/// An unknown `KILN_ACCEL` value is an error naming it.
pub fn decide(choice: Choice, base_image: &Path, scratch: &Path) -> Result<Decision, String> {
    let started = Instant::now();
    let decided = |accel, how: &str| Decision { accel, how: how.to_string(), seconds: started.elapsed().as_secs_f64() };
    match choice {
        Choice::Kvm => return Ok(decided(Accel::Kvm, "--accel kvm")),
        Choice::Tcg => return Ok(decided(Accel::Tcg, "--accel tcg")),
        Choice::Auto => {}
    }
    match env_choice()? {
        Some(Choice::Kvm) => Ok(decided(Accel::Kvm, &format!("{ENV}=kvm"))),
        Some(Choice::Tcg) => Ok(decided(Accel::Tcg, &format!("{ENV}=tcg"))),
        Some(Choice::Auto) | None => decide_auto(base_image, scratch, started),
    }
}

/// `KILN_ACCEL`'s choice, if set (empty counts as unset); an unknown value is an error naming it, for the
/// commands to refuse before anything starts.
pub fn env_choice() -> Result<Option<Choice>, String> {
    let Some(value) = std::env::var_os(ENV).filter(|v| !v.is_empty()) else { return Ok(None) };
    let text = value.to_string_lossy();
    Choice::from_str(&text, true)
        .map(Some)
        .map_err(|_| format!("{ENV}={text} is not an accelerator: use kvm, tcg or auto"))
}

impl From<Accel> for Choice {
    fn from(accel: Accel) -> Choice {
        match accel {
            Accel::Kvm => Choice::Kvm,
            Accel::Tcg => Choice::Tcg,
        }
    }
}

fn decide_auto(base_image: &Path, scratch: &Path, started: Instant) -> Result<Decision, String> {
    let decided = |accel, how: String| Decision { accel, how, seconds: started.elapsed().as_secs_f64() };
    if !Path::new("/dev/kvm").exists() {
        return Ok(decided(Accel::Tcg, "no /dev/kvm".into()));
    }
    let cache = crate::effects::cache::dir().join("accel.json");
    let machine = this_machine();
    if let Some(machine) = &machine
        && let Some(kvm) = cached(&cache, machine)
    {
        return Ok(decided(
            if kvm { Accel::Kvm } else { Accel::Tcg },
            format!("probed earlier in this boot ({})", cache.display()),
        ));
    }
    let accel = probe(base_image, scratch);
    // Without the machine's identity there is nothing to key a verdict by: probe every time.
    if let Some(mut machine) = machine {
        machine.kvm = accel == Accel::Kvm;
        if let Err(e) = store(&cache, &machine) {
            eprintln!("kiln: could not keep the accelerator verdict in {}: {e:#}", cache.display());
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(decided(accel, format!("probed in {seconds:.1} s, kept for this boot")))
}

/// The boot, kernel and QEMU this verdict would be for (`kvm` not yet known), if all can be read.
fn this_machine() -> Option<Verdict> {
    let read = |path: &str| std::fs::read_to_string(path).ok().map(|t| t.trim().to_string());
    let qemu = Command::new("qemu-system-x86_64").arg("--version").output().ok()?;
    let qemu = String::from_utf8_lossy(&qemu.stdout).lines().next()?.trim().to_string();
    Some(Verdict {
        boot_id: read("/proc/sys/kernel/random/boot_id")?,
        kernel: read("/proc/sys/kernel/osrelease")?,
        qemu,
        kvm: false,
    })
}

/// The cached verdict, if it was probed on `machine` (same boot, kernel and QEMU).
fn cached(path: &Path, machine: &Verdict) -> Option<bool> {
    let text = std::fs::read_to_string(path).ok()?;
    let verdict: Verdict = serde_json::from_str(&text).ok()?;
    let same = verdict.boot_id == machine.boot_id && verdict.kernel == machine.kernel && verdict.qemu == machine.qemu;
    same.then_some(verdict.kvm)
}

fn store(path: &Path, verdict: &Verdict) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    write_atomic(path, (serde_json::to_string_pretty(verdict)? + "\n").as_bytes(), 0o644)
}

/// Uses KVM only if a guest actually boots with it here: a bounded boot must print the kernel banner.
fn probe(base_image: &Path, scratch: &Path) -> Accel {
    let config = QemuConfig {
        base_image: base_image.to_path_buf(),
        run_dir: scratch.join("kvm-probe"),
        seed: None,
        memory_mib: 1024,
        cpus: 1,
        accel: Accel::Kvm,
        mirror_port: None,
        forwards: Vec::new(),
        internet: false,
        extra_nic: None,
        multi_threaded_tcg: false,
    };
    let Ok(mut instance) = Instance::start(&config) else { return Accel::Tcg };
    let booted = instance.wait_console(KVM_PROBE, |c| c.contains("Linux version")).unwrap_or(false);
    if booted { Accel::Kvm } else { Accel::Tcg }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(boot_id: &str) -> Verdict {
        Verdict {
            boot_id: boot_id.into(),
            kernel: "6.1.0-41-amd64".into(),
            qemu: "QEMU emulator version 7.2.22".into(),
            kvm: false,
        }
    }

    #[test]
    fn a_verdict_holds_only_for_the_boot_kernel_and_qemu_it_was_probed_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache/accel.json");
        assert_eq!(cached(&path, &machine("a")), None, "nothing cached yet");
        store(&path, &Verdict { kvm: true, ..machine("a") }).unwrap();
        assert_eq!(cached(&path, &machine("a")), Some(true));
        assert_eq!(cached(&path, &machine("b")), None, "another boot probes again");
        assert_eq!(cached(&path, &Verdict { kernel: "6.12.0".into(), ..machine("a") }), None);
        assert_eq!(cached(&path, &Verdict { qemu: "QEMU emulator version 10.0.0".into(), ..machine("a") }), None);
        std::fs::write(&path, "not json").unwrap();
        assert_eq!(cached(&path, &machine("a")), None, "a damaged cache is a probe, not an error");
    }

    #[test]
    fn the_flag_decides_without_a_probe() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-image.qcow2");
        assert_eq!(decide(Choice::Tcg, &missing, dir.path()).unwrap().accel, Accel::Tcg);
        let kvm = decide(Choice::Kvm, &missing, dir.path()).unwrap();
        assert_eq!((kvm.accel, kvm.how.as_str()), (Accel::Kvm, "--accel kvm"));
        assert!(!dir.path().join("kvm-probe").exists(), "no probe ran");
    }
}
