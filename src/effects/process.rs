//! Child processes bound to kiln: each one kiln starts (QEMU, qemu-img, wireguard-go) dies with it; and
//! running a short-lived tool with its output captured.

use std::os::unix::process::CommandExt as _;
use std::process::{Command, Output, Stdio};

use anyhow::{Context as _, bail};

/// The child gets SIGKILL when kiln dies, however it dies (Ctrl-C, `kill -9`, a panic), so no QEMU
/// or daemon outlives the run that started it.
pub fn die_with_parent(command: &mut Command) -> &mut Command {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
}

/// Runs `cmd` to completion with no stdin, capturing its output; a failure carries `what` and the tail of
/// stderr (the tools run this way, apt and gpg among them, say what went wrong last).
pub fn run(cmd: &mut Command, what: &str) -> anyhow::Result<Output> {
    let out = cmd.stdin(Stdio::null()).output().with_context(|| what.to_string())?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
        bail!("{what}: {}: {}", out.status, tail.join("\n"));
    }
    Ok(out)
}

/// Whether `program` is an executable file in one of PATH's directories.
pub fn on_path(program: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else { return false };
    std::env::split_paths(&path).any(|dir| {
        let candidate = dir.join(program);
        candidate
            .metadata()
            .is_ok_and(|m| m.is_file() && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0)
    })
}
