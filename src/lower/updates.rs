//! Automatic security updates (`hardening.automatic_updates`): unattended-upgrades, run by apt's daily timers,
//! allowed to install the release's security updates and every vendor repository kiln adds. Debian's default
//! configuration allows only Debian's own archive; Ubuntu's only Ubuntu's: without kiln's patterns, Docker,
//! Tailscale and cloudflared would never be updated.

use super::Parts;
use super::script::Step;
use crate::cloud_config::WriteFile;
use crate::model::{Family, Model, Repository};

/// apt's periodic settings (`/usr/lib/apt/apt.systemd.daily` reads them): refresh the lists and run
/// unattended-upgrade every day. Debian's package writes this file from debconf; kiln writes it outright.
pub const AUTO_UPGRADES: &str = "/etc/apt/apt.conf.d/20auto-upgrades";
/// After the package's `50unattended-upgrades`, whose list it extends (apt configuration lists add up).
pub const ORIGINS_FILE: &str = "/etc/apt/apt.conf.d/52kiln-unattended-upgrades";

pub(super) fn lower(model: &Model, parts: &mut Parts) {
    if !model.hardening.automatic_updates {
        return;
    }
    parts.package("unattended-upgrades");
    parts.bake_file(WriteFile::new(
        AUTO_UPGRADES,
        0o644,
        "APT::Periodic::Update-Package-Lists \"1\";\nAPT::Periodic::Unattended-Upgrade \"1\";\n",
    ));
    let patterns = origin_patterns(model);
    parts.bake_file(WriteFile::new(ORIGINS_FILE, 0o644, origins_file(&patterns)));
    parts.facts.update_origins = patterns;
    // apt's timers run apt.systemd.daily: the list refresh, then the upgrade.
    let timers: Vec<Vec<String>> =
        ["apt-daily.timer", "apt-daily-upgrade.timer"].iter().map(|t| parts.ensure_running(t, Vec::new())).collect();
    parts.bake_step(Step::new("hardening: automatic updates", timers));
}

/// apt configuration adding `patterns` to unattended-upgrade's list (`#clear` first: replacing it, for a test).
pub fn origins_config(patterns: &[String], replace: bool) -> String {
    let body: String = patterns.iter().map(|p| format!("  \"{p}\";\n")).collect();
    let clear = if replace { "#clear Unattended-Upgrade::Origins-Pattern;\n" } else { "" };
    format!("{clear}Unattended-Upgrade::Origins-Pattern {{\n{body}}};\n")
}

fn origins_file(patterns: &[String]) -> String {
    format!("// Managed by kiln: what unattended-upgrade may install.\n{}", origins_config(patterns, false))
}

/// The release's security archive, as its `Release` file names it.
pub fn security_pattern(model: &Model) -> String {
    let release = model.host.release.facts();
    match release.family {
        Family::Debian => format!("origin=Debian,codename={}-security,label=Debian-Security", release.codename),
        Family::Ubuntu => format!("origin=Ubuntu,archive={}-security", release.codename),
    }
}

/// The pattern that allows the vendor repository `repo`, if its URL names a host.
pub fn vendor_pattern(repo: &Repository) -> Option<String> {
    repo.site().map(|site| format!("site={site}"))
}

/// The release's security updates, and each vendor repository by its host (`site=`, matched against the
/// repository's host name: unattended-upgrade's `match_whitelist_string`, python-apt's `PackageFile.site`),
/// which kiln knows for certain, where the `Origin:` of a vendor's Release file it could only guess.
fn origin_patterns(model: &Model) -> Vec<String> {
    let mut patterns = vec![security_pattern(model)];
    let vendors: [&Option<Repository>; 3] = [&model.apt.docker, &model.apt.cloudflared, &model.apt.tailscale];
    for repo in vendors.into_iter().flatten() {
        if let Some(pattern) = vendor_pattern(repo)
            && !patterns.contains(&pattern)
        {
            patterns.push(pattern);
        }
    }
    patterns
}
