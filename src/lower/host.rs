//! The host's identity and system settings as cloud-init applies them (hostname, time zone, locale,
//! swap), the files those modules write, and the locale Debian's locale-gen must generate.

use super::Parts;
use crate::cloud_config::WriteFile;
use crate::consumers::debian;
use crate::model::Model;

/// What Debian's locale-gen reads: it generates the locales listed here and ignores its arguments,
/// so cloud-init's `locale-gen NAME` followed by `update-locale LANG=NAME` (cloudinit/distros/debian.py
/// `apply_locale`) fails for any locale not listed ("invalid locale settings").
pub const LOCALE_GEN: &str = "/etc/locale.gen";

pub(super) fn lower(model: &Model, parts: &mut Parts) {
    // Written by cloud-init's modules for the `host` section: hostname and /etc/hosts
    // (`manage_etc_hosts`), the time zone, the locale, the swap file and its fstab line.
    for path in ["/etc/hostname", "/etc/hosts", "/etc/timezone", "/etc/localtime", "/etc/default/locale"] {
        parts.claim(path);
    }
    if let Some(charset) = debian::base_system(model.host.release)
        .locale_charset(&model.host.locale)
        .filter(|_| !debian::is_builtin_locale(&model.host.locale))
    {
        // write_files runs in cloud-init's init stage, before the locale module (config stage).
        parts.bake_file(WriteFile::new(
            LOCALE_GEN,
            0o644,
            format!("# Managed by kiln: the locale the host's `host.locale` names.\n{} {charset}\n", model.host.locale),
        ));
    } else {
        parts.claim(LOCALE_GEN);
    }
    if model.host.swap.is_some() {
        parts.claim("/swap.img");
        parts.claim("/etc/fstab");
    }
}
