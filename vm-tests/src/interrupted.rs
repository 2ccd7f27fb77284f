//! `kiln bake` stopped half-way, as CI runners and impatient users stop it: SIGTERM (Ctrl-C's cousin)
//! must leave no image, no partial file, no work directory and no QEMU; SIGKILL, which nothing can
//! catch, must still leave no image and no QEMU (the kernel kills QEMU with kiln, PR_SET_PDEATHSIG).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use kiln::effects::vm::wait::wait_until;
use kiln::verify::Check;
use kiln::verify::report::Verdict;

/// How long `kiln bake` may take to reach the boot of its build VM (base image checks, seed, overlay).
const BUILD_VM_START: Duration = Duration::from_secs(120);
/// How long the build VM runs before the signal: booting, cloud-init about to provision.
const HALF_WAY: Duration = Duration::from_secs(20);
/// How long kiln has to exit after the signal.
const EXIT: Duration = Duration::from_secs(30);
/// How long QEMU has to go after kiln did.
const QEMU_GONE: Duration = Duration::from_secs(10);
/// How often the process table is looked at while waiting.
const POLL: Duration = Duration::from_millis(200);

/// QEMU processes whose command line mentions `dir`.
fn qemu_processes_under(dir: &Path) -> usize {
    let needle = dir.display().to_string();
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                .filter(|c| c.starts_with("qemu-system") && c.contains(&needle))
                .count()
        })
        .unwrap_or(0)
}

/// The bake's work directory (`.NAME.bake-XXXXXX` beside the output), if one exists.
fn work_dirs(out_dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(out_dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().contains(".bake-")))
                .collect()
        })
        .unwrap_or_default()
}

/// Starts `kiln bake`, waits until its build VM has run for a while, sends `signal`, and checks.
fn interrupt_once(kiln: &Path, profile: &Path, base: &Path, out_dir: &Path, signal: &str) -> Result<Vec<Check>> {
    let _ = std::fs::remove_dir_all(out_dir);
    std::fs::create_dir_all(out_dir)?;
    let output = out_dir.join("app.qcow2");
    let (mut child, stderr_lines) = start_bake(kiln, profile, base, &output)?;
    let reached = reached_build_vm(&stderr_lines);
    if !matches!(reached, Ok(true)) {
        let _ = child.kill();
        let _ = child.wait();
        reached?;
        bail!("kiln bake never reached the boot of its build VM");
    }
    // Half-way: the build VM is booting and cloud-init is about to provision.
    std::thread::sleep(HALF_WAY);
    let work = work_dirs(out_dir);
    let qemu_before = work.iter().map(|w| qemu_processes_under(w)).sum::<usize>();
    let status = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status()?;
    if !status.success() {
        bail!("kill -{signal} failed");
    }
    let after = Aftermath::of(&mut child, &work, out_dir)?;
    let _ = child.kill();
    let _ = child.wait();
    Ok(checks(signal, qemu_before, &after))
}

/// `kiln bake PROFILE --base BASE -o OUTPUT` under TCG, its stderr lines sent on the channel as they come.
fn start_bake(kiln: &Path, profile: &Path, base: &Path, output: &Path) -> Result<(Child, Receiver<String>)> {
    let mut child = Command::new(kiln)
        .args(["bake"])
        .arg(profile)
        .arg("--base")
        .arg(base)
        .arg("-o")
        .arg(output)
        // The command line has no mirror for a chroot's apt, and this machine no internet: the packages go to
        // the build VM, which the signal stops before it installs any.
        .arg("--packages-in-vm")
        .env("KILN_ACCEL", "tcg")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", kiln.display()))?;
    let stderr = child.stderr.take().context("kiln's stderr")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    Ok((child, rx))
}

/// Whether kiln said it is booting its build VM within `BUILD_VM_START`.
fn reached_build_vm(stderr_lines: &Receiver<String>) -> Result<bool> {
    // Each attempt waits for a line itself (up to a second): no pause between attempts. What kiln said is
    // kept for the error if it exits first.
    let mut said = Vec::new();
    let booting =
        wait_until(BUILD_VM_START, Duration::ZERO, || match stderr_lines.recv_timeout(Duration::from_secs(1)) {
            Ok(line) => {
                let booting = line.contains("booting the build VM");
                said.push(line);
                Ok(booting.then_some(()))
            }
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => {
                bail!("kiln bake never reached the boot of its build VM (it exited):\n{}", said.join("\n"))
            }
        })?;
    Ok(booting.is_some())
}

/// What is left once the signal was sent: kiln's exit, QEMU, files in the output directory.
struct Aftermath {
    /// kiln exited within `EXIT`.
    exited: bool,
    /// `exit N` or `killed by signal N`, once kiln exited.
    code: Option<String>,
    /// No QEMU of the bake's work directory runs any more, within `QEMU_GONE`.
    qemu_gone: bool,
    /// Every name in the output directory.
    leftovers: Vec<String>,
    /// The output image or its partial file exists.
    image_left: bool,
    /// A `.app.qcow2.bake-*` work directory exists.
    work_dir_left: bool,
}

impl Aftermath {
    fn of(child: &mut Child, work: &[PathBuf], out_dir: &Path) -> Result<Aftermath> {
        let exited = wait_until(EXIT, POLL, || Ok(matches!(child.try_wait(), Ok(Some(_))).then_some(())))?.is_some();
        let code = child.try_wait().ok().flatten().map(|s| {
            use std::os::unix::process::ExitStatusExt;
            s.code().map_or_else(|| format!("killed by signal {}", s.signal().unwrap_or(0)), |c| format!("exit {c}"))
        });
        let qemu_gone =
            wait_until(QEMU_GONE, POLL, || Ok(work.iter().all(|w| qemu_processes_under(w) == 0).then_some(())))?
                .is_some();
        let leftovers = std::fs::read_dir(out_dir)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let image_left = out_dir.join("app.qcow2").exists() || out_dir.join("app.qcow2.partial").exists();
        Ok(Aftermath { exited, code, qemu_gone, leftovers, image_left, work_dir_left: !work_dirs(out_dir).is_empty() })
    }
}

/// The checks on what SIG`signal` left (`qemu_before`: QEMU processes when it was sent). SIGTERM must
/// also remove the work directory; SIGKILL cannot be caught, so only the kernel's cleanup is checked.
fn checks(signal: &str, qemu_before: usize, after: &Aftermath) -> Vec<Check> {
    let exit = if signal == "TERM" { "exit 143" } else { "killed by signal 9" };
    let mut checks = vec![
        Check::new(
            format!("control: the build VM was running when SIG{signal} came"),
            "1 QEMU process",
            format!("{qemu_before} QEMU process(es)"),
            qemu_before == 1,
        ),
        Check::new(
            format!("SIG{signal}: kiln bake exits"),
            exit,
            after.code.clone().unwrap_or_else(|| "still running".into()),
            after.exited && after.code.as_deref() == Some(exit),
        ),
        Check::new(
            format!("SIG{signal}: no QEMU process left"),
            "0 processes",
            if after.qemu_gone { "0 processes" } else { "QEMU still running" },
            after.qemu_gone,
        ),
        Check::new(
            format!("SIG{signal}: no image and no partial file"),
            "neither",
            after.leftovers.join(", "),
            !after.image_left,
        ),
    ];
    if signal == "TERM" {
        checks.push(Check::new(
            "SIGTERM: the work directory (overlay, seed, console) is removed",
            "no .app.qcow2.bake-* directory",
            after.leftovers.join(", "),
            !after.work_dir_left,
        ));
    }
    checks
}

pub fn run(kiln: &Path, profile: &Path, base: &Path, out: &Path) -> Result<Verdict> {
    if !kiln.is_file() {
        bail!("{} is missing: build it first (`cargo build --release --bin kiln`)", kiln.display());
    }
    let mut verdict = Verdict { scenario: "bake-interrupted".into(), accel: "TCG".into(), ..Verdict::default() };
    for signal in ["TERM", "KILL"] {
        eprintln!("bake-interrupted: kiln bake, then SIG{signal} while its build VM boots");
        let checks = interrupt_once(kiln, profile, base, &out.join(format!("sig{}", signal.to_lowercase())), signal)?;
        verdict.phases.push((format!("kiln bake interrupted by SIG{signal}"), checks));
    }
    Ok(verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(code: &str) -> Aftermath {
        Aftermath {
            exited: true,
            code: Some(code.into()),
            qemu_gone: true,
            leftovers: Vec::new(),
            image_left: false,
            work_dir_left: false,
        }
    }

    #[test]
    fn each_signal_expects_its_own_exit() {
        assert!(checks("TERM", 1, &clean("exit 143")).iter().all(|c| c.passed));
        assert!(checks("KILL", 1, &clean("killed by signal 9")).iter().all(|c| c.passed));
        let wrong = checks("TERM", 1, &clean("killed by signal 9"));
        assert_eq!(
            wrong.iter().filter(|c| !c.passed).map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["SIGTERM: kiln bake exits"]
        );
    }

    #[test]
    fn only_sigterm_must_remove_the_work_directory() {
        let left = Aftermath { work_dir_left: true, ..clean("exit 143") };
        assert_eq!(checks("TERM", 1, &left).iter().filter(|c| !c.passed).count(), 1);
        let left = Aftermath { work_dir_left: true, ..clean("killed by signal 9") };
        let kill = checks("KILL", 1, &left);
        assert_eq!(kill.len(), 4);
        assert!(kill.iter().all(|c| c.passed));
    }

    #[test]
    fn leftovers_and_a_missing_control_fail() {
        let after = Aftermath { image_left: true, qemu_gone: false, exited: false, code: None, ..clean("") };
        let failed: Vec<String> = checks("KILL", 0, &after).into_iter().filter(|c| !c.passed).map(|c| c.name).collect();
        assert_eq!(failed.len(), 4, "{failed:?}");
    }
}
