//! `kiln bake` stopped half-way, as CI runners and impatient users stop it: SIGTERM (Ctrl-C's cousin)
//! must leave no image, no partial file, no work directory and no QEMU; SIGKILL, which nothing can
//! catch, must still leave no image and no QEMU (the kernel kills QEMU with kiln, PR_SET_PDEATHSIG).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kiln::verify::Check;
use kiln::verify::report::Verdict;

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

fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    done()
}

/// Starts `kiln bake`, waits until its build VM has run for a while, sends `signal`, and checks.
fn interrupt_once(kiln: &Path, profile: &Path, base: &Path, out_dir: &Path, signal: &str) -> Result<Vec<Check>> {
    let _ = std::fs::remove_dir_all(out_dir);
    std::fs::create_dir_all(out_dir)?;
    let output = out_dir.join("app.qcow2");
    let mut child = Command::new(kiln)
        .args(["bake"])
        .arg(profile)
        .arg("--base")
        .arg(base)
        .arg("-o")
        .arg(&output)
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
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut booting = false;
    while !booting && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_secs(1)) {
            booting = line.contains("booting the build VM");
        }
    }
    if !booting {
        let _ = child.kill();
        bail!("kiln bake never reached the boot of its build VM");
    }
    // Half-way: the build VM is booting and cloud-init is about to provision.
    std::thread::sleep(Duration::from_secs(20));
    let work = work_dirs(out_dir);
    let qemu_before = work.iter().map(|w| qemu_processes_under(w)).sum::<usize>();
    let status = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status()?;
    if !status.success() {
        bail!("kill -{signal} failed");
    }
    let exited = wait_until(Duration::from_secs(30), || matches!(child.try_wait(), Ok(Some(_))));
    let code = child.try_wait().ok().flatten().map(|s| {
        use std::os::unix::process::ExitStatusExt;
        s.code().map_or_else(|| format!("killed by signal {}", s.signal().unwrap_or(0)), |c| format!("exit {c}"))
    });
    let qemu_gone = wait_until(Duration::from_secs(10), || work.iter().all(|w| qemu_processes_under(w) == 0));
    let leftovers: Vec<String> = std::fs::read_dir(out_dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let mut checks = vec![
        Check::new(
            format!("control: the build VM was running when SIG{signal} came"),
            "1 QEMU process",
            format!("{qemu_before} QEMU process(es)"),
            qemu_before == 1,
        ),
        Check::new(
            format!("SIG{signal}: kiln bake exits"),
            if signal == "TERM" { "exit 143" } else { "killed by signal 9" },
            code.clone().unwrap_or_else(|| "still running".into()),
            exited && code.as_deref() == Some(if signal == "TERM" { "exit 143" } else { "killed by signal 9" }),
        ),
        Check::new(
            format!("SIG{signal}: no QEMU process left"),
            "0 processes",
            if qemu_gone { "0 processes" } else { "QEMU still running" },
            qemu_gone,
        ),
        Check::new(
            format!("SIG{signal}: no image and no partial file"),
            "neither",
            leftovers.join(", "),
            !output.exists() && !out_dir.join("app.qcow2.partial").exists(),
        ),
    ];
    if signal == "TERM" {
        checks.push(Check::new(
            "SIGTERM: the work directory (overlay, seed, console) is removed",
            "no .app.qcow2.bake-* directory",
            leftovers.join(", "),
            work_dirs(out_dir).is_empty(),
        ));
    }
    let _ = child.kill();
    let _ = child.wait();
    Ok(checks)
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
