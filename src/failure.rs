//! What can stop a kiln command, and the exit code each failure means (the table in the README).
//!
//! Commands return `Result<(), Failure>`; `main` prints the failure once (`error: ` before each of its
//! lines) and exits with `exit_code()`. Diagnostics and reports are printed by the command as it goes;
//! a failure says what stopped it, never with a `Debug` form.

use crate::consumers::cloud_init_schema::Rejected;
use crate::secrets::SecretError;
use crate::target::TargetError;

/// Exit codes, documented in the README.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// The profile has errors (or warnings, with `--strict`).
    pub const PROFILE: u8 = 1;
    /// The command line is wrong (clap's own code).
    pub const USAGE: u8 = 2;
    /// A file could not be read or written.
    pub const IO: u8 = 3;
    /// A secret could not be resolved.
    pub const SECRET: u8 = 4;
    /// The user-data does not fit the target (size limit or encoding).
    pub const TARGET: u8 = 5;
    /// `kiln test`: the VM is not in the declared state; `kiln bake`: provisioning failed.
    pub const CHECKS_FAILED: u8 = 6;
    /// `kiln test` / `kiln bake` / `kiln image`: the harness could not do its job.
    pub const HARNESS: u8 = 7;
    /// kiln's own bug: it rendered user-data the release's cloud-init refuses from a valid profile.
    pub const INTERNAL: u8 = 8;
}

#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// One profile has problems (its diagnostics were printed); nothing was written.
    #[error("{path} has problems; nothing was written")]
    Profile { path: String },
    /// `kiln check`: some of the profiles have problems or could not be read, or kiln rendered user-data
    /// the release's cloud-init refuses for some (each was reported).
    #[error("{}", checked_message(*.failing, *.unreadable, *.invalid_output, *.total))]
    Checked { failing: usize, unreadable: usize, invalid_output: usize, total: usize },
    /// The command line asks for something kiln will not do.
    #[error("{0}")]
    Usage(String),
    /// `kiln init` wrote a profile that is not done: what is missing (exit 1, as a profile with errors).
    #[error("{0}")]
    Incomplete(String),
    /// A file could not be read or written.
    #[error("{0:#}")]
    Io(anyhow::Error),
    /// Secrets could not be resolved: each names its variable or file, never a value.
    #[error("{}", secrets_message(.0))]
    Secrets(Vec<SecretError>),
    /// The user-data does not fit the target.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// `kiln test`: the VM is not in the declared state.
    #[error("{failed} of {total} checks failed")]
    ChecksFailed { failed: usize, total: usize },
    /// `kiln bake`: provisioning failed in the build VM; nothing was written.
    #[error("{0}")]
    Provisioning(String),
    /// The harness (QEMU, image, mirror, a boot that never finished) could not do its job.
    #[error("{0:#}")]
    Harness(anyhow::Error),
    /// kiln rendered user-data that the release's cloud-init schema refuses: kiln's bug, not the profile's.
    #[error(transparent)]
    InvalidOutput(#[from] Rejected),
    /// kiln produced output that its own check of that output refuses: kiln's bug.
    #[error("{0} (a bug in kiln: please report it)")]
    Bug(String),
}

fn checked_message(failing: usize, unreadable: usize, invalid_output: usize, total: usize) -> String {
    let mut parts = Vec::new();
    if failing + unreadable > 0 {
        let what = if unreadable > 0 { "could not be read or have problems" } else { "have problems" };
        parts.push(format!("{} of {total} profile(s) {what}", failing + unreadable));
    }
    if invalid_output > 0 {
        parts.push(format!(
            "kiln rendered user-data its release's cloud-init refuses for {invalid_output} of {total} profile(s) (a bug in kiln)"
        ));
    }
    parts.join("; ")
}

fn secrets_message(errors: &[SecretError]) -> String {
    let mut lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    lines
        .push(format!("{} secret(s) missing; nothing was written (use --redact to render placeholders)", errors.len()));
    lines.join("\n")
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Profile { .. } | Failure::Incomplete(_) => exit::PROFILE,
            Failure::Checked { unreadable, invalid_output, .. } => {
                // kiln's own bug outranks the profiles' problems: it is what must be reported.
                if *invalid_output > 0 {
                    exit::INTERNAL
                } else if *unreadable > 0 {
                    exit::IO
                } else {
                    exit::PROFILE
                }
            }
            Failure::Usage(_) => exit::USAGE,
            Failure::Io(_) => exit::IO,
            Failure::Secrets(_) => exit::SECRET,
            Failure::Target(_) => exit::TARGET,
            Failure::ChecksFailed { .. } | Failure::Provisioning(_) => exit::CHECKS_FAILED,
            Failure::Harness(_) => exit::HARNESS,
            Failure::InvalidOutput(_) | Failure::Bug(_) => exit::INTERNAL,
        }
    }

    /// A file could not be read or written.
    pub fn io(error: impl Into<anyhow::Error>) -> Failure {
        Failure::Io(error.into())
    }

    /// The harness could not do its job.
    pub fn harness(error: impl Into<anyhow::Error>) -> Failure {
        Failure::Harness(error.into())
    }

    /// The lines `main` prints, each after `error: `.
    pub fn lines(&self) -> Vec<String> {
        self.to_string().lines().map(str::to_string).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_has_its_documented_code_and_no_debug_form() {
        let secret = SecretError {
            what: "Tailscale auth key",
            reference: "environment variable `TS`".into(),
            why: "not set".into(),
        };
        let cases = [
            (Failure::Profile { path: "p.yaml".into() }, 1, "p.yaml has problems"),
            (
                Failure::Checked { failing: 1, unreadable: 0, invalid_output: 0, total: 2 },
                1,
                "1 of 2 profile(s) have problems",
            ),
            (Failure::Checked { failing: 0, unreadable: 1, invalid_output: 0, total: 2 }, 3, "could not be read"),
            (Failure::Checked { failing: 1, unreadable: 0, invalid_output: 1, total: 3 }, 8, "a bug in kiln"),
            (Failure::Usage("no".into()), 2, "no"),
            (Failure::io(anyhow::anyhow!("gone")), 3, "gone"),
            (Failure::Secrets(vec![secret]), 4, "1 secret(s) missing"),
            (Failure::ChecksFailed { failed: 2, total: 9 }, 6, "2 of 9 checks failed"),
            (Failure::Provisioning("step".into()), 6, "step"),
            (Failure::harness(anyhow::anyhow!("qemu")), 7, "qemu"),
            (
                Failure::InvalidOutput(Rejected {
                    release: crate::model::Release::Debian13,
                    stage: "full",
                    problems: vec![crate::consumers::cloud_init_schema::Problem {
                        path: "$.apt_update".into(),
                        message: "deprecated in cloud-init 22.2".into(),
                    }],
                }),
                8,
                "$.apt_update: deprecated in cloud-init 22.2",
            ),
        ];
        for (failure, code, says) in cases {
            assert_eq!(failure.exit_code(), code, "{failure}");
            let text = failure.lines().join("\n");
            assert!(text.contains(says), "{text}");
            assert!(!text.contains("SecretError {") && !text.contains("Profile {"), "{text}");
        }
    }

    #[test]
    fn each_missing_secret_is_its_own_line() {
        let error = |name: &str| SecretError {
            what: "token",
            reference: format!("environment variable `{name}`"),
            why: "not set".into(),
        };
        let lines = Failure::Secrets(vec![error("A"), error("B")]).lines();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[0].contains("`A`") && lines[1].contains("`B`"));
    }
}
