//! Deliberate breakage: after its rounds of checks, a scenario changes the guest on purpose and runs the
//! checks again; each change must make the check it names fail. The harness's checks are thus shown
//! failing on a real VM whose state is wrong, not only passing on one that is right.
//!
//! A tampering names its check by the check's own definition (`kiln::verify::check_names`, the peer's
//! `CHECK_*`, `Container::probe_name`), so a renamed check cannot leave a tampering that nothing detects.

use std::time::Duration;

use anyhow::{Result, bail};
use kiln::effects::vm::qga::Agent;
use kiln::verify::Check;

/// The phase its verdicts are reported under.
pub const PHASE: &str = "deliberately broken guest (each change must be detected)";
/// One tampering command in the guest.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct Tamper {
    /// A shell command run as root in the guest.
    pub command: String,
    /// The check that must then fail.
    pub detected_by: String,
    /// Words the failed check must observe, when another tampering of the same round could fail that check
    /// too (the weak MAC and the moved drop-in both fail ssh-audit's check; only the MAC names hmac-sha1).
    pub because: Option<String>,
    /// Applied in a second round, after the first round's checks: for a tampering that would hide what
    /// another one must show (the tunnel's peer removed hides a refused port forward).
    pub second_round: bool,
}

impl Tamper {
    pub fn new(command: &str, detected_by: &str) -> Self {
        Tamper { command: command.into(), detected_by: detected_by.into(), because: None, second_round: false }
    }

    /// The same, applied in the second round.
    pub fn in_second_round(mut self) -> Self {
        self.second_round = true;
        self
    }

    /// The same, detected only when the failed check observed `words`.
    pub fn because(mut self, words: &str) -> Self {
        self.because = Some(words.into());
        self
    }
}

/// Runs every tampering in the guest, in order; one that fails to run is a harness error.
pub fn apply(agent: &mut Agent, tampers: &[Tamper]) -> Result<()> {
    for tamper in tampers {
        let out = agent.shell(&tamper.command, COMMAND_TIMEOUT)?;
        if !out.ok() {
            bail!("tampering with `{}` failed: {}{}", tamper.command, out.stdout, out.stderr);
        }
    }
    Ok(())
}

/// One check per tampering: the check it names is among those made after it, and failed. A name no
/// check has is reported as "it still passes", never as detected.
pub fn verdicts(tampers: &[Tamper], after: &[Check]) -> Vec<Check> {
    tampers
        .iter()
        .map(|t| {
            let failed = after.iter().any(|c| {
                c.name == t.detected_by
                    && !c.passed
                    && t.because.as_ref().is_none_or(|w| c.observed.contains(w.as_str()))
            });
            let because = t.because.as_ref().map(|w| format!(" (observing {w:?})")).unwrap_or_default();
            Check::new(
                format!("`{}` is detected by `{}`{because}", t.command, t.detected_by),
                "that check fails",
                if failed { "it fails" } else { "it still passes" },
                failed,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tamper(detected_by: &str) -> Tamper {
        Tamper::new("true", detected_by)
    }

    #[test]
    fn a_tampering_with_a_reason_needs_the_check_to_observe_it() {
        let after = vec![Check::new("ssh-audit", "no failure", "Fail hmac-sha1: mac: using broken SHA-1", false)];
        assert!(verdicts(&[tamper("ssh-audit").because("hmac-sha1")], &after)[0].passed);
        let verdict = &verdicts(&[tamper("ssh-audit").because("umac-64")], &after)[0];
        assert!(!verdict.passed);
        assert_eq!(verdict.name, "`true` is detected by `ssh-audit` (observing \"umac-64\")");
    }

    #[test]
    fn a_tampering_is_detected_only_when_its_named_check_fails() {
        let after = vec![
            Check::new("timezone", "Europe/Berlin", "Etc/UTC", false),
            Check::new("locale LANG", "de_DE.UTF-8", "de_DE.UTF-8", true),
        ];
        let verdicts = verdicts(&[tamper("timezone"), tamper("locale LANG"), tamper("no such check")], &after);
        let passed: Vec<bool> = verdicts.iter().map(|c| c.passed).collect();
        assert_eq!(passed, [true, false, false]);
        assert_eq!(verdicts[0].name, "`true` is detected by `timezone`");
        assert_eq!((verdicts[0].expected.as_str(), verdicts[0].observed.as_str()), ("that check fails", "it fails"));
        assert_eq!(verdicts[2].observed, "it still passes");
    }

    #[test]
    fn any_failing_check_of_that_name_counts() {
        // The same name twice (a round's check repeated): one failure is enough.
        let after = vec![
            Check::new("ufw rule set (exact)", "a", "a", true),
            Check::new("ufw rule set (exact)", "a", "b", false),
        ];
        assert!(verdicts(&[tamper("ufw rule set (exact)")], &after)[0].passed);
    }
}
