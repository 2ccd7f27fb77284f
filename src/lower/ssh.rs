//! sshd hardening as a drop-in that sorts before any other (sshd keeps the first value it reads).

use super::Parts;
use super::facts::{ListenPort, ListenScope, Listener, SocketOwner, SshdSetting, StartedBy};
use super::script::{Step, cmd};
use crate::cloud_config::WriteFile;
use crate::model::{Model, Proto};

pub const SSHD_DROP_IN: &str = "/etc/ssh/sshd_config.d/10-kiln.conf";

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
    parts.facts.sshd.extend(settings);
    // cloud-init edits sshd_config for `ssh_pwauth` and generates the host keys; other drop-ins are
    // judged by what they set (`consumers::sshd::overrides`).
    parts.claim("/etc/ssh/sshd_config");
    parts.claim_prefix("/etc/ssh/ssh_host_");
    parts.claim_unit("ssh.service");
    parts.claim_unit("ssh.socket");
    // The image runs sshd (cloud images are reached over SSH); kiln only reloads it.
    let sshd = Listener {
        proto: Proto::Tcp,
        port: ListenPort::Fixed(SSH_PORT),
        scope: ListenScope::Any,
        owner: SocketOwner::Program("sshd".into()),
    };
    parts.running_without_script("ssh.service", StartedBy::Image, vec![sshd]);
    parts
        .bake_step(Step::new("ssh: apply hardening", vec![cmd(&["sshd", "-t"]), cmd(&["systemctl", "reload", "ssh"])]));
}
