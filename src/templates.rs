//! Embedded templates for free-text file bodies (systemd units, the provisioning script).
//!
//! Shell templates (`*.sh`) escape every interpolated value for the shell by default: a string becomes
//! one quoted word and a list becomes quoted words, so no profile value can break out of its quoting.

use std::sync::OnceLock;

use minijinja::value::ValueKind;
use minijinja::{AutoEscape, Environment, Output, State, UndefinedBehavior, Value};

pub const PROVISION_SCRIPT: &str = "provision.sh";
pub const CLOUDFLARED_UNIT: &str = "cloudflared.service";

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".sh") { AutoEscape::Custom("shell") } else { AutoEscape::None }
        });
        env.set_formatter(format_value);
        // The lines the harness parses (`provision_log`), written from their one definition.
        env.add_function("step_failed_line", |step: String, exit: String| {
            Value::from_safe_string(provision_log::StepFailed::shell_line(&step, &exit))
        });
        env.add_global("provisioning_complete", Value::from_safe_string(provision_log::COMPLETE.to_string()));
        env.add_template(PROVISION_SCRIPT, include_str!("../templates/provision.sh.j2"))
            .expect("provision template parses");
        env.add_template(CLOUDFLARED_UNIT, include_str!("../templates/cloudflared.service.j2"))
            .expect("unit template parses");
        env
    })
}

fn format_value(out: &mut Output, state: &State, value: &Value) -> Result<(), minijinja::Error> {
    if state.auto_escape() != AutoEscape::Custom("shell") || value.is_safe() {
        return minijinja::escape_formatter(out, state, value);
    }
    let text = if value.kind() == ValueKind::Seq {
        value.try_iter()?.map(|word| shell_quote(&word.to_string())).collect::<Vec<_>>().join(" ")
    } else {
        shell_quote(&value.to_string())
    };
    out.write_str(&text).map_err(|e| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, e.to_string()))
}

/// POSIX shell quoting: words of safe characters stay bare, everything else is single-quoted.
pub fn shell_quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(b, b'_' | b'-' | b'.' | b'/' | b':' | b'=' | b',' | b'+' | b'@' | b'%')
        });
    if safe { word.to_string() } else { format!("'{}'", word.replace('\'', r"'\''")) }
}

/// The lines the provisioning script prints for the harness to read in cloud-init-output.log: one
/// definition, used by the template (the `step_failed_line` function, the `provisioning_complete`
/// global) and by the harness's parser.
pub mod provision_log {
    use anyhow::{Result, anyhow};

    /// The script's last line, printed when every step succeeded.
    pub const COMPLETE: &str = "kiln: provisioning complete";
    const FAILED_PREFIX: &str = "kiln: provisioning FAILED in step: ";
    const EXIT_OPEN: &str = " (exit ";
    const EXIT_CLOSE: &str = ")";

    /// `kiln: provisioning FAILED in step: STEP (exit N)`, which the script's ERR trap prints.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct StepFailed {
        pub step: String,
        pub exit: i32,
    }

    impl StepFailed {
        /// The line with `step` and `exit` as they are given: shell expressions in the template's trap.
        pub fn shell_line(step: &str, exit: &str) -> String {
            format!("{FAILED_PREFIX}{step}{EXIT_OPEN}{exit}{EXIT_CLOSE}")
        }

        pub fn line(&self) -> String {
            Self::shell_line(&self.step, &self.exit.to_string())
        }

        /// Reads a log line: `Ok(None)` for any other line, an error for one that starts like this line
        /// but is cut short or garbled. Output of the failing command that did not end its line can
        /// precede the prefix (stdout and stderr share the log): the line is read from the prefix on.
        pub fn parse(line: &str) -> Result<Option<StepFailed>> {
            let Some(at) = line.find(FAILED_PREFIX) else { return Ok(None) };
            let bad =
                || anyhow!("a garbled provisioning failure line (want `{}`): `{line}`", Self::shell_line("STEP", "N"));
            let rest = line[at + FAILED_PREFIX.len()..].trim_end().strip_suffix(EXIT_CLOSE).ok_or_else(bad)?;
            let (step, exit) = rest.rsplit_once(EXIT_OPEN).ok_or_else(bad)?;
            let exit = exit.parse().map_err(|_| bad())?;
            if step.is_empty() {
                return Err(bad());
            }
            Ok(Some(StepFailed { step: step.to_string(), exit }))
        }
    }
}

/// Renders an embedded template. The templates are part of kiln, so a failure is a kiln bug.
pub fn render(name: &str, context: Value) -> String {
    let template = environment().get_template(name).expect("embedded template exists");
    template.render(context).unwrap_or_else(|e| panic!("embedded template {name} failed to render: {e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real failure line: the provisioning template rendered with a failing step and run by bash.
    #[test]
    fn the_failure_line_the_script_prints_parses() {
        use provision_log::{COMPLETE, StepFailed};
        let step = |name: &str, command: &str| minijinja::context! { name => name, commands => vec![vec![command]] };
        let script = |steps: Vec<Value>| {
            render(
                PROVISION_SCRIPT,
                minijinja::context! {
                    version => "test",
                    purpose => Value::from_safe_string("a test".into()),
                    failure_note => Value::from_safe_string("none.".into()),
                    steps => steps,
                },
            )
        };
        let run = |text: String| std::process::Command::new("bash").arg("-c").arg(text).output().unwrap();
        let failing = run(script(vec![step("prepare", "true"), step("tailscale: join the tailnet", "false")]));
        assert!(!failing.status.success());
        let stderr = String::from_utf8(failing.stderr).unwrap();
        let line = stderr.lines().find(|l| l.contains("FAILED")).expect("the trap's line");
        assert_eq!(line, "kiln: provisioning FAILED in step: tailscale: join the tailnet (exit 1)");
        let parsed = StepFailed::parse(line).unwrap().unwrap();
        assert_eq!(parsed, StepFailed { step: "tailscale: join the tailnet".into(), exit: 1 });
        assert_eq!(parsed.line(), line);
        assert!(!String::from_utf8(failing.stdout).unwrap().contains(COMPLETE));
        // Unterminated output of the failing command before it.
        assert_eq!(StepFailed::parse(&format!("Reading package lists...{line}")).unwrap(), Some(parsed));
        let passing = run(script(vec![step("prepare", "true")]));
        assert!(passing.status.success());
        assert_eq!(String::from_utf8(passing.stdout).unwrap().lines().last(), Some(COMPLETE));
        assert_eq!(StepFailed::parse("kiln: step: prepare").unwrap(), None);
        for garbled in [
            "kiln: provisioning FAILED in step: x",
            "kiln: provisioning FAILED in step: x (exit )",
            "kiln: provisioning FAILED in step:  (exit 1)",
            "kiln: provisioning FAILED in step: x (exit 1",
        ] {
            assert!(StepFailed::parse(garbled).is_err(), "{garbled}");
        }
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("ufw"), "ufw");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$(reboot)"), "'$(reboot)'");
    }
}
