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
        bail!("{what}: {}: {}", out.status, tail(&out.stderr));
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

/// The last lines of a tool's stderr, where tools say what went wrong.
pub fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let last: Vec<&str> = text.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
    last.join("\n")
}

/// What keeps this process from running `programs` (each with the Debian package that has it) with root's
/// rights, if anything: not being root (`root_for` says what needs it), programs missing from PATH, or both.
pub fn root_and_programs(root_for: &str, programs: &[(&str, &str)]) -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    what_is_missing(root, root_for, &missing_programs(programs))
}

/// [`root_and_programs`]'s sentence, from whether this is root and the programs missing.
fn what_is_missing(root: bool, root_for: &str, missing: &[String]) -> Option<String> {
    let programs = (!missing.is_empty()).then(|| format!("programs missing from PATH: {}", missing.join(", ")));
    match (root, programs) {
        (true, None) => None,
        (true, Some(programs)) => Some(programs),
        (false, None) => Some(format!("it needs root ({root_for})")),
        (false, Some(programs)) => Some(format!("it needs root ({root_for}) and {programs}")),
    }
}

/// The programs of `programs` (each with the Debian package that has it) missing from PATH, as
/// `program (package)`, each named once.
pub fn missing_programs(programs: &[(&str, &str)]) -> Vec<String> {
    let mut missing: Vec<String> = Vec::new();
    for (program, package) in programs.iter().filter(|(program, _)| !on_path(program)) {
        let named = format!("{program} ({package})");
        if !missing.contains(&named) {
            missing.push(named);
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_is_found_only_where_path_points() {
        // `sh` is on every PATH this runs under; a program name nobody has is not.
        assert!(on_path("sh"));
        assert!(!on_path("kiln-no-such-program"));
        // Named once, even where a list names it twice apart.
        let programs = [
            ("kiln-no-such-program", "nothing"),
            ("sh", "dash"),
            ("kiln-no-such-other", "nothing"),
            ("kiln-no-such-program", "nothing"),
        ];
        assert_eq!(missing_programs(&programs), ["kiln-no-such-program (nothing)", "kiln-no-such-other (nothing)"]);
    }

    #[test]
    fn what_is_missing_names_root_and_the_programs() {
        let missing = ["mount (mount)".to_string()];
        assert_eq!(what_is_missing(true, "a tap device", &[]), None);
        assert_eq!(
            what_is_missing(true, "a tap device", &missing).unwrap(),
            "programs missing from PATH: mount (mount)"
        );
        assert_eq!(what_is_missing(false, "a tap device", &[]).unwrap(), "it needs root (a tap device)");
        assert_eq!(
            what_is_missing(false, "a tap device", &missing).unwrap(),
            "it needs root (a tap device) and programs missing from PATH: mount (mount)"
        );
    }

    #[test]
    fn the_tail_is_the_last_twenty_lines() {
        let text: String = (1..=25).map(|n| format!("line {n}\n")).collect();
        let tail = tail(text.as_bytes());
        assert!(tail.starts_with("line 6\n") && tail.ends_with("line 25"), "{tail}");
        assert_eq!(tail.lines().count(), 20);
    }
}
