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

/// Renders an embedded template. The templates are part of kiln, so a failure is a kiln bug.
pub fn render(name: &str, context: Value) -> String {
    let template = environment().get_template(name).expect("embedded template exists");
    template.render(context).unwrap_or_else(|e| panic!("embedded template {name} failed to render: {e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("ufw"), "ufw");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$(reboot)"), "'$(reboot)'");
    }
}
