//! sshd hardening as a drop-in that sorts before any other (sshd keeps the first value it reads).

use super::Parts;
use super::script::{Step, cmd};
use crate::cloud_config::WriteFile;
use crate::model::Model;

pub const SSHD_DROP_IN: &str = "/etc/ssh/sshd_config.d/10-kiln.conf";

pub(super) fn lower(model: &Model, parts: &mut Parts) {
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let body = format!(
        "# Managed by kiln: SSH hardening.\nPasswordAuthentication {pw}\nKbdInteractiveAuthentication no\nPermitRootLogin {root}\nPermitEmptyPasswords no\n",
        pw = yes_no(model.ssh.password_authentication),
        root = if model.ssh.permit_root_login { "prohibit-password" } else { "no" },
    );
    parts.bake_file(WriteFile::new(SSHD_DROP_IN, 0o644, body));
    parts
        .bake_step(Step::new("ssh: apply hardening", vec![cmd(&["sshd", "-t"]), cmd(&["systemctl", "reload", "ssh"])]));
}
