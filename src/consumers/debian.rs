//! Debian 12's own lists, taken from the release's files by `scripts/release-facts` (each file names the
//! package versions and digests it came from): time zones (tzdata), locales (locales' SUPPORTED), the
//! accounts the base system and kiln's packages create, and the login shells.

use std::collections::BTreeSet;
use std::sync::OnceLock;

const TIMEZONES: &str = include_str!("../../assets/releases/debian-12/timezones.txt");
const LOCALES: &str = include_str!("../../assets/releases/debian-12/locales.txt");
const ACCOUNTS: &str = include_str!("../../assets/releases/debian-12/accounts.txt");
const SHELLS: &str = include_str!("../../assets/releases/debian-12/shells.txt");

fn lines(text: &'static str) -> impl Iterator<Item = &'static str> {
    text.lines().filter(|l| !l.is_empty() && !l.starts_with('#'))
}

fn set(cell: &'static OnceLock<BTreeSet<&'static str>>, text: &'static str) -> &'static BTreeSet<&'static str> {
    cell.get_or_init(|| lines(text).collect())
}

/// Every zone and link name in tzdata: cloud-init sets a time zone only when
/// `/usr/share/zoneinfo/NAME` is a file (cloudinit/distros `_find_tz_file`), and these are those files.
pub fn timezones() -> &'static BTreeSet<&'static str> {
    static CELL: OnceLock<BTreeSet<&'static str>> = OnceLock::new();
    set(&CELL, TIMEZONES)
}

/// The charset locale-gen needs beside a locale name (`de_DE.UTF-8` → `UTF-8`), for the locales the
/// release can generate; `None` for a name it cannot.
pub fn locale_charset(name: &str) -> Option<&'static str> {
    lines(LOCALES).find_map(|l| l.split_once(' ').filter(|(n, _)| *n == name).map(|(_, charset)| charset))
}

/// Locale names, for "did you mean".
pub fn locale_names() -> impl Iterator<Item = &'static str> {
    lines(LOCALES).filter_map(|l| l.split_once(' ').map(|(n, _)| n))
}

/// The locales glibc has built in: cloud-init skips generation for them (`regenerate_locale`).
pub fn is_builtin_locale(name: &str) -> bool {
    matches!(name, "C" | "C.UTF-8" | "POSIX")
}

/// Is this name already a user or a group on the release (or created by a package kiln installs)?
/// `useradd NAME` then fails: an existing user, or a group of that name (`USERGROUPS_ENAB`).
pub fn account_exists(name: &str) -> bool {
    static CELL: OnceLock<BTreeSet<&'static str>> = OnceLock::new();
    set(&CELL, ACCOUNTS).iter().any(|l| l.split_once(' ').is_some_and(|(_, n)| n == name))
}

/// Is this a user on the release (for file owners)?
pub fn user_exists(name: &str) -> bool {
    lines(ACCOUNTS).any(|l| l.strip_prefix("user ") == Some(name))
}

/// Is this a group on the release (for file owners)?
pub fn group_exists(name: &str) -> bool {
    lines(ACCOUNTS).any(|l| l.strip_prefix("group ") == Some(name))
}

/// The login shells the base system has.
pub fn shells() -> &'static BTreeSet<&'static str> {
    static CELL: OnceLock<BTreeSet<&'static str>> = OnceLock::new();
    set(&CELL, SHELLS)
}

/// Login shells Debian packages install, by package (each package's /etc/shells entries, added by its
/// postinst with `add-shell`): a profile that lists the package may use them.
pub const PACKAGED_SHELLS: &[(&str, &[&str])] = &[
    ("zsh", &["/bin/zsh", "/usr/bin/zsh"]),
    ("fish", &["/usr/bin/fish"]),
    ("ksh", &["/bin/ksh93", "/usr/bin/ksh93"]),
    ("mksh", &["/bin/mksh", "/usr/bin/mksh"]),
    ("tcsh", &["/bin/tcsh", "/usr/bin/tcsh"]),
];

/// Shells that refuse logins: a deploy user with one cannot run what Kamal runs over SSH.
pub const NO_LOGIN_SHELLS: &[&str] = &["/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_release_lists_are_there() {
        assert!(timezones().contains("Europe/Berlin") && timezones().contains("US/Eastern"));
        assert!(timezones().contains("EST5EDT") && timezones().contains("GMT") && timezones().contains("UTC"));
        assert!(!timezones().contains("Europe/Berlim") && !timezones().contains("posixrules"));
        assert_eq!(locale_charset("de_DE.UTF-8"), Some("UTF-8"));
        assert_eq!(locale_charset("de_DE"), Some("ISO-8859-1"));
        assert_eq!(locale_charset("klingon"), None);
        for taken in ["staff", "users", "adm", "operator", "_apt", "sshd", "docker", "messagebus", "root"] {
            assert!(account_exists(taken), "{taken}");
        }
        assert!(!account_exists("deploy"));
        assert!(user_exists("www-data") && group_exists("docker") && !user_exists("docker"));
        assert!(shells().contains("/bin/bash") && !shells().contains("/bin/zsh"));
    }
}
