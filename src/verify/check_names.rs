//! The names of checks that something outside this module refers to by name: the CI scenarios
//! (`vm-tests`) name the check each deliberate breakage must make fail. Each name is defined once, here,
//! and both the check and whoever names it use the definition, so renaming a check cannot leave a
//! tampering pointing at a name no check has any more (it would then "pass" undetected).

/// UFW's loaded rules are exactly the expected ones.
pub const UFW_RULE_SET: &str = "ufw rule set (exact)";
/// The `DOCKER-USER` chain drops new connections to published ports but the declared ones.
pub const DOCKER_USER_FILTER: &str = "DOCKER-USER filters published ports";
pub const DOCKER_LIVE_RESTORE: &str = "docker live-restore";
pub const APT_DAILY_UPGRADE: &str = "apt refreshes and runs unattended-upgrade daily";

/// An origin pattern unattended-upgrade must be allowed to install from.
pub fn update_origin(pattern: &str) -> String {
    format!("unattended-upgrades allows {pattern}")
}
/// The secret scan: no process carries a secret value in its arguments.
pub const NO_SECRET_IN_ARGV: &str = "no secret in any process argument";
/// `/etc/timezone`.
pub const TIMEZONE: &str = "timezone";
/// `LANG` in `/etc/default/locale`.
pub const LOCALE_LANG: &str = "locale LANG";

/// journald writes its system journal on disk (`/var/log/journal/…`), not only in /run.
pub const JOURNAL_PERSISTENT: &str = "journal kept on disk";
/// journald's cap on the on-disk journal.
pub const JOURNAL_CAP: &str = "journal size cap";
/// `/tmp` is mounted with the options the hardening asks for.
pub const TMP_MOUNT: &str = "/tmp mounted nosuid,nodev";

/// A kernel setting as `sysctl` prints it (`net.ipv4.tcp_syncookies`).
pub fn sysctl(key: &str) -> String {
    format!("sysctl {key}")
}

/// A unit that must be active (or inactive) right now.
pub fn unit_active(unit: &str) -> String {
    format!("unit {unit} active")
}

/// A unit that must be enabled (or disabled) at boot.
pub fn unit_enabled(unit: &str) -> String {
    format!("unit {unit} enabled")
}

/// The deploy user's membership of a supplementary group.
pub fn user_in_group(user: &str, group: &str) -> String {
    format!("user {user} in group {group}")
}

/// A value `sshd -T` prints for the deploy user's connections, by its lowercase keyword
/// (`passwordauthentication`).
pub fn sshd_option(keyword: &str) -> String {
    format!("sshd {keyword}")
}

/// The same for root's connections.
pub fn sshd_option_for_root(keyword: &str) -> String {
    format!("sshd {keyword} for root")
}

/// A file the profile ships: mode, owner and content.
pub fn file(path: &str) -> String {
    format!("file {path}")
}

/// The locale's charset is usable (`locale charmap`).
pub fn locale_usable(locale: &str) -> String {
    format!("locale {locale} usable")
}

/// A WireGuard interface's peers are exactly the declared ones.
pub fn wireguard_peers(interface: &str) -> String {
    format!("wireguard {interface} peers (exact)")
}

/// A probe from outside the guest (through a forwarded host port) of a port the expected state says
/// answers or is closed.
pub fn from_outside(port: u16, proto: &str, reachable: bool) -> String {
    let verb = if reachable { "answers" } else { "is closed" };
    format!("from outside, {port}/{proto} {verb}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameterised_names_read_as_before() {
        assert_eq!(unit_active("tailscaled.service"), "unit tailscaled.service active");
        assert_eq!(user_in_group("deploy", "docker"), "user deploy in group docker");
        assert_eq!(sshd_option("passwordauthentication"), "sshd passwordauthentication");
        assert_eq!(file("/etc/awkward/motd.txt"), "file /etc/awkward/motd.txt");
        assert_eq!(locale_usable("de_DE.UTF-8"), "locale de_DE.UTF-8 usable");
        assert_eq!(sysctl("net.ipv4.tcp_syncookies"), "sysctl net.ipv4.tcp_syncookies");
        assert_eq!(wireguard_peers("wg0"), "wireguard wg0 peers (exact)");
        assert_eq!(from_outside(22, "tcp", false), "from outside, 22/tcp is closed");
        assert_eq!(from_outside(8000, "tcp", true), "from outside, 8000/tcp answers");
    }
}
