//! sshd hardening as a drop-in that sorts before the others (sshd keeps the first value it reads), checked
//! against `sshd -T` before sshd reloads, so a file that sorts earlier still cannot weaken it unnoticed.

use super::Parts;
use super::facts::{AcceptedAuditWarning, ListenPort, ListenScope, Listener, SocketOwner, SshdSetting, StartedBy};
use super::script::{Step, cmd};
use crate::cloud_config::WriteFile;
use crate::consumers::sshd;
use crate::model::{Model, Proto};

/// `00-` sorts before the drop-ins images and packages ship (Ubuntu's cloud images carry a
/// `50-cloud-init.conf` with `PasswordAuthentication yes`). No name sorts before every possible one, which
/// is why provisioning also checks the effective values ([`EFFECTIVE_CHECK`]).
pub const SSHD_DROP_IN: &str = "/etc/ssh/sshd_config.d/00-kiln.conf";

/// Fails, naming the keyword, when sshd's configuration (`sshd -T`) and sshd's reading of kiln's drop-in alone
/// (`sshd -T -f` it: the same printing, defaults for the rest) differ on a keyword given as an argument: another
/// file in sshd_config.d set it first. `$0` is kiln's drop-in. sshd prints both, so no value is restated here
/// and the script stays short (the seed host's user-data must fit AWS's 16 KB). One line, so the provisioning
/// script keeps one command per line.
pub const EFFECTIVE_CHECK: &str = r#"mine=$(sshd -T -f "$0") && effective=$(sshd -T) || exit 1; for k in "$@"; do [ "$(printf '%s\n' "$mine" | grep "^$k ")" = "$(printf '%s\n' "$effective" | grep "^$k ")" ] || { echo "sshd would not run with $k as $0 sets it: another file in /etc/ssh/sshd_config.d sets it first, or adds to it" >&2; exit 1; }; done"#;

pub use crate::model::SSH_PORT;

/// Ed25519 only. ssh-audit fails ECDSA host keys (NIST curves) and asks for ≥ 3072-bit RSA, which was also the
/// slowest step of an instance's first boot under emulation (13 s); DSA is gone from OpenSSH 10. Every
/// client kiln's users have speaks Ed25519: OpenSSH since 6.5 (2014), and net-ssh, which Kamal uses, with the
/// `ed25519` gem Kamal's gemspec requires.
pub const HOST_KEY_TYPES: &[&str] = &["ed25519"];

/// sshd's baseline besides the login policy: values from the CIS Debian Linux benchmark's SSH section (level
/// 1: MaxAuthTries ≤ 4, LoginGraceTime ≤ 60 s, client keep-alives, no X11 or agent forwarding, VERBOSE
/// logging so each login names its key) and from OpenSSH's defaults where CIS asks for them explicitly.
/// `MaxAuthTries 4` counts every key a client offers: a deployer whose agent holds more keys than that sets
/// `keys_only: true` (Kamal's `ssh` options) or `IdentitiesOnly`.
const BASELINE: &[(&str, &str)] = &[
    ("PermitEmptyPasswords", "no"),
    ("MaxAuthTries", "4"),
    ("LoginGraceTime", "30"),
    ("ClientAliveInterval", "15"),
    ("ClientAliveCountMax", "3"),
    ("X11Forwarding", "no"),
    ("AllowAgentForwarding", "no"),
    ("AllowTcpForwarding", "no"),
    ("LogLevel", "VERBOSE"),
    ("Ciphers", sshd::CIPHERS),
    ("MACs", sshd::MACS),
];

/// Kamal 2 reaches a registry on the deploying machine (`localhost:5555`, its default `registry.server` for a
/// local registry) through `ssh -R`: remote forwarding, and nothing wider, for the deploy user alone.
const DEPLOY_USER_FORWARDING: &str = "remote";

pub(super) fn lower(model: &Model, parts: &mut Parts) {
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let release = model.host.release.facts();
    // Naming the host keys stops sshd from looking for (and logging the absence of) the default RSA one.
    let host_keys: String = HOST_KEY_TYPES.iter().map(|t| format!("HostKey /etc/ssh/ssh_host_{t}_key\n")).collect();
    let mut allowed_users = model.user.name.clone();
    if model.ssh.permit_root_login {
        allowed_users.push_str(" root");
    }
    let classic_kex = !model.ssh.post_quantum_only;
    let kex = sshd::key_exchanges(release.openssh, classic_kex).join(",");
    let login = [
        ("PasswordAuthentication", yes_no(model.ssh.password_authentication)),
        ("KbdInteractiveAuthentication", "no"),
        ("PermitRootLogin", if model.ssh.permit_root_login { "prohibit-password" } else { "no" }),
        // A key alone, unless the profile turned passwords on (a warning): then either, as sshd's default.
        ("AuthenticationMethods", if model.ssh.password_authentication { "any" } else { "publickey" }),
        ("AllowUsers", allowed_users.as_str()),
        ("KexAlgorithms", kex.as_str()),
    ];
    let settings: Vec<SshdSetting> = login
        .iter()
        .chain(BASELINE)
        .map(|(keyword, value)| SshdSetting { keyword, value: value.to_string() })
        .collect();
    let deploy_user = vec![SshdSetting { keyword: "AllowTcpForwarding", value: DEPLOY_USER_FORWARDING.into() }];
    let lines: String = settings.iter().map(|s| format!("{} {}\n", s.keyword, s.value)).collect();
    // A Match block in an included file ends with that file (servconf.c), so it cannot capture the global
    // lines of Debian's sshd_config that follow the Include.
    let matched: String = deploy_user.iter().map(|s| format!("  {} {}\n", s.keyword, s.value)).collect();
    parts.bake_file(WriteFile::new(
        SSHD_DROP_IN,
        0o644,
        format!(
            "# Managed by kiln: SSH hardening.\n{host_keys}{lines}# Kamal's registry tunnel (ssh -R) for the deploy user only.\nMatch User {}\n{matched}",
            model.user.name
        ),
    ));
    // ssh-audit's one warning on a kiln host (for each name of curve25519), unless the profile gave up
    // Kamal's client for it.
    if classic_kex {
        for algorithm in sshd::CLASSIC_KEX {
            parts.facts.ssh_audit_accepted.push(AcceptedAuditWarning {
                algorithm: algorithm.into(),
                why: "Kamal's net-ssh (and paramiko) have no post-quantum key exchange; OpenSSH clients negotiate a hybrid offered first"
                    .into(),
            });
        }
    }
    // cloud-init edits sshd_config for `ssh_pwauth` and generates the host keys; other drop-ins are
    // judged by what they set (`consumers::sshd::overrides`).
    parts.claim("/etc/ssh/sshd_config");
    parts.claim_prefix("/etc/ssh/ssh_host_");
    parts.claim_unit("ssh.service");
    parts.claim_unit("ssh.socket");
    // The image runs sshd (cloud images are reached over SSH); kiln only reloads it. Where ssh.socket owns
    // port 22 (Ubuntu ≥ 22.10), ssh.service starts on the first connection, so it may not be running yet:
    // try-reload-or-restart reloads it if it is, and the next connection reads the new file otherwise.
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
    check.extend(settings.iter().map(SshdSetting::printed_keyword));
    parts.facts.sshd.extend(settings);
    parts.facts.sshd_deploy_user.extend(deploy_user);
    parts.bake_step(Step::new("ssh: apply hardening", vec![cmd(&["sshd", "-t"]), check, reload]));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::protocol::testing::{run_bash, stubs};

    /// The provisioning step's check, run by sh against a stand-in sshd: it passes when sshd would run with
    /// kiln's values, fails naming the keyword when an earlier file won (a list keyword too), and fails when
    /// `sshd -T` fails.
    #[test]
    fn the_effective_check_fails_when_another_file_wins() {
        let check = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(check.path(), EFFECTIVE_CHECK).unwrap();
        let script = format!(
            "sh -c \"$(cat {})\" {SSHD_DROP_IN} passwordauthentication permitrootlogin allowusers",
            check.path().display()
        );
        let kilns = "passwordauthentication no\\npermitrootlogin no\\nallowusers deploy\\n";
        let run = |effective: &str| {
            // `sshd -T -f FILE` prints kiln's file alone; `sshd -T` the whole configuration.
            let sshd = format!("if [ \"$2\" = -f ]; then printf 'port 22\\n{kilns}'; else {effective}; fi");
            let bin = stubs(&[("sshd", &sshd)]);
            run_bash(&script, Some(bin.path()), b"")
        };
        assert_eq!(run(&format!("printf 'port 22\\n{kilns}'")).0, 0);
        let (exit, _, stderr) = run("printf 'passwordauthentication yes\\npermitrootlogin no\\nallowusers deploy\\n'");
        assert_eq!(exit, 1);
        assert!(stderr.contains("with passwordauthentication as") && stderr.contains(SSHD_DROP_IN), "{stderr}");
        let (exit, _, stderr) =
            run("printf 'passwordauthentication no\\npermitrootlogin no\\nallowusers deploy\\nallowusers admin\\n'");
        assert_eq!(exit, 1);
        assert!(stderr.contains("with allowusers as"), "{stderr}");
        assert_ne!(run("echo broken >&2; exit 255").0, 0);
    }
}
