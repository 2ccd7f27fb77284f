//! sshd hardening as a drop-in that sorts before the others (sshd keeps the first value it reads), checked
//! against `sshd -T` before sshd reloads, so a file that sorts earlier still cannot weaken it unnoticed.

use super::Parts;
use super::facts::{ListenPort, ListenScope, Listener, SocketOwner, SshdSetting, StartedBy};
use super::script::{Step, cmd};
use crate::cloud_config::WriteFile;
use crate::model::{Model, Proto};

/// `00-` sorts before the drop-ins images and packages ship (Ubuntu's cloud images carry a
/// `50-cloud-init.conf` with `PasswordAuthentication yes`). No name sorts before every possible one, which
/// is why provisioning also checks the effective values ([`EFFECTIVE_CHECK`]).
pub const SSHD_DROP_IN: &str = "/etc/ssh/sshd_config.d/00-kiln.conf";

/// Fails, naming the value, when `sshd -T` (the configuration sshd will run with) differs from a
/// `keyword value` pair given as an argument: another file in sshd_config.d set it first. `$0` is kiln's
/// drop-in, for the message. One line, so the provisioning script keeps one command per line.
pub const EFFECTIVE_CHECK: &str = r#"effective=$(sshd -T) || exit 1; for want in "$@"; do printf '%s\n' "$effective" | grep -qxF -- "$want" || { echo "sshd would not run with '$want' from $0: a file in /etc/ssh/sshd_config.d that sorts before it sets this keyword" >&2; exit 1; }; done"#;

pub use crate::model::SSH_PORT;

/// Modern host keys only. DSA is refused by OpenSSH since 7.0 and RSA is only needed by clients older
/// than OpenSSH 5.7 (2011); net-ssh, which Kamal uses, speaks ECDSA without extra gems. Generating a
/// 3072-bit RSA key was also the slowest step of an instance's first boot under emulation (13 s).
pub const HOST_KEY_TYPES: &[&str] = &["ed25519", "ecdsa"];

pub(super) fn lower(model: &Model, parts: &mut Parts) {
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    // Naming the host keys stops sshd from looking for (and logging the absence of) the default RSA one.
    let host_keys: String = HOST_KEY_TYPES.iter().map(|t| format!("HostKey /etc/ssh/ssh_host_{t}_key\n")).collect();
    let settings = [
        ("PasswordAuthentication", yes_no(model.ssh.password_authentication)),
        ("KbdInteractiveAuthentication", "no"),
        ("PermitRootLogin", if model.ssh.permit_root_login { "prohibit-password" } else { "no" }),
        ("PermitEmptyPasswords", "no"),
    ]
    .map(|(keyword, value)| SshdSetting { keyword, value: value.to_string() });
    let lines: String = settings.iter().map(|s| format!("{} {}\n", s.keyword, s.value)).collect();
    parts.bake_file(WriteFile::new(
        SSHD_DROP_IN,
        0o644,
        format!("# Managed by kiln: SSH hardening.\n{host_keys}{lines}"),
    ));
    // cloud-init edits sshd_config for `ssh_pwauth` and generates the host keys; other drop-ins are
    // judged by what they set (`consumers::sshd::overrides`).
    parts.claim("/etc/ssh/sshd_config");
    parts.claim_prefix("/etc/ssh/ssh_host_");
    parts.claim_unit("ssh.service");
    parts.claim_unit("ssh.socket");
    // The image runs sshd (cloud images are reached over SSH); kiln only reloads it. Where ssh.socket owns
    // port 22 (Ubuntu ≥ 22.10), ssh.service starts on the first connection, so it may not be running yet:
    // try-reload-or-restart reloads it if it is, and the next connection reads the new file otherwise.
    let release = model.host.release.facts();
    let (unit, owner, reload) = if release.sshd_socket_activated {
        ("ssh.socket", "systemd", cmd(&["systemctl", "try-reload-or-restart", "ssh.service"]))
    } else {
        ("ssh.service", "sshd", cmd(&["systemctl", "reload", "ssh.service"]))
    };
    let listener = Listener {
        proto: Proto::Tcp,
        port: ListenPort::Fixed(SSH_PORT),
        scope: ListenScope::Any,
        owner: SocketOwner::Program(owner.into()),
    };
    parts.running_without_script(unit, StartedBy::Image, vec![listener]);
    let mut check = cmd(&["sh", "-c", EFFECTIVE_CHECK, SSHD_DROP_IN]);
    check.extend(settings.iter().map(SshdSetting::printed_line));
    parts.facts.sshd.extend(settings);
    parts.bake_step(Step::new("ssh: apply hardening", vec![cmd(&["sshd", "-t"]), check, reload]));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::protocol::testing::{run_bash, stubs};

    /// The provisioning step's check, run by sh against a stand-in `sshd -T`: it passes when sshd would run
    /// with kiln's values, and fails naming the value when an earlier file won, or when `sshd -T` fails.
    #[test]
    fn the_effective_check_fails_when_another_file_wins() {
        let check = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(check.path(), EFFECTIVE_CHECK).unwrap();
        let script = format!(
            "sh -c \"$(cat {})\" {SSHD_DROP_IN} 'passwordauthentication no' 'permitrootlogin no'",
            check.path().display()
        );
        let run = |sshd: &str| {
            let bin = stubs(&[("sshd", sshd)]);
            run_bash(&script, Some(bin.path()), b"")
        };
        let kilns = "printf 'port 22\\npasswordauthentication no\\npermitrootlogin no\\n'";
        assert_eq!(run(kilns).0, 0);
        let (exit, _, stderr) = run("printf 'passwordauthentication yes\\npermitrootlogin no\\n'");
        assert_eq!(exit, 1);
        assert!(stderr.contains("'passwordauthentication no'") && stderr.contains(SSHD_DROP_IN), "{stderr}");
        assert_ne!(run("echo broken >&2; exit 255").0, 0);
    }
}
