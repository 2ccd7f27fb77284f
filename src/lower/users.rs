//! The deploy user: created by cloud-init's users module with its keys and sudo rule.

use super::Parts;
use crate::cloud_config::UserEntry;
use crate::model::Model;

pub fn entry(model: &Model) -> UserEntry {
    UserEntry {
        name: model.user.name.clone(),
        shell: model.user.shell.clone(),
        lock_passwd: true,
        sudo: model.user.sudo.then(|| "ALL=(ALL) NOPASSWD:ALL".to_string()),
        ssh_authorized_keys: model.user.ssh_keys.clone(),
    }
}

pub(super) fn lower(model: &Model, parts: &mut Parts) {
    // What cloud-init's users module writes for the `user` section (and `ssh.permit_root_login`:
    // with root logins off it writes root's authorized_keys with a refusal).
    for path in ["/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow", "/etc/sudoers"] {
        parts.claim(path);
    }
    parts.claim_prefix("/etc/sudoers.d/");
    parts.claim_prefix(&format!("/home/{}/.ssh/", model.user.name));
    parts.claim_prefix("/root/.ssh/");
    if model.user.sudo {
        // cloud-init writes the sudoers rule; the sudo package must be there to honour it.
        parts.package("sudo");
    }
}
