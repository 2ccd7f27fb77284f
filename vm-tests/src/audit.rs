//! ssh-audit (3.9, from PyPI) run from outside the guest against its real sshd, judged by
//! `kiln::verify::ssh_audit`: from the WireGuard peer's namespace through the tunnel, and through the
//! forwarded port in the sshd-trap scenario.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use kiln::expect::AuditWarning;
use kiln::verify::{Check, ssh_audit};

/// One audit: a handful of connections, each a key exchange (seconds under emulation). Longer is a hang.
const AUDIT_TIMEOUT: Duration = Duration::from_secs(180);

/// Audits `target:port` with `ssh-audit -j` run by `runner` (a program prefix such as `ip netns exec NS`,
/// or none), keeps the report as `report` and judges it. A server ssh-audit could not reach is a failed
/// check, with what ssh-audit said: the tampering that cuts the tunnel makes it so.
///
/// `--skip-rate-test`: the DHEat rate test opens dozens of unauthenticated connections, which OpenSSH 10
/// punishes (PerSourcePenalties) by refusing that source for a while: the deploying peer would lock itself
/// out. Its verdict is a note in ssh-audit's report, never a failure or a warning.
pub fn check(runner: &[&str], target: &str, port: u16, accepted: &[AuditWarning], report: &Path) -> Result<Check> {
    let (program, prefix) = runner.split_first().map_or(("timeout", &[][..]), |(p, rest)| (*p, rest));
    let mut command = Command::new(program);
    if !runner.is_empty() {
        command.args(prefix).arg("timeout");
    }
    command.arg(AUDIT_TIMEOUT.as_secs().to_string()).args([
        "ssh-audit",
        "-j",
        "--skip-rate-test",
        "-p",
        &port.to_string(),
        target,
    ]);
    let out = command.output().context("running ssh-audit (scripts/test-all installs it from PyPI)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    std::fs::write(report, out.stdout.as_slice()).with_context(|| format!("writing {}", report.display()))?;
    // ssh-audit's exit status says the worst it found (0 good, 2 warning, 3 failure); the report says what.
    Ok(ssh_audit::check(&stdout, accepted).unwrap_or_else(|e| {
        Check::new(
            ssh_audit::CHECK,
            "a report on the guest's sshd",
            format!("{e:#} ({}; {})", out.status, String::from_utf8_lossy(&out.stderr).trim()),
            false,
        )
    }))
}
