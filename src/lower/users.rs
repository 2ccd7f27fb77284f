//! The deploy user: created by cloud-init's users module with its keys and sudo rule.

use super::Parts;
use crate::cloud_config::UserEntry;
use crate::model::Model;

pub(super) fn entry(model: &Model) -> UserEntry {
    UserEntry {
        name: model.user.name.clone(),
        shell: model.user.shell.clone(),
        lock_passwd: true,
        sudo: model.user.sudo.then(|| "ALL=(ALL) NOPASSWD:ALL".to_string()),
        ssh_authorized_keys: model.user.ssh_keys.clone(),
    }
}

pub(super) fn lower(model: &Model, parts: &mut Parts) {
    if model.user.sudo {
        // cloud-init writes the sudoers rule; the sudo package must be there to honour it.
        parts.package("sudo");
    }
}
