//! Debian 12's own lists, taken from the release's files by `scripts/release-facts` (each file names the
//! package versions and digests it came from): time zones (tzdata), locales (locales' SUPPORTED), the
//! accounts the base system and kiln's packages create, and the login shells.

use std::collections::{BTreeMap, BTreeSet};
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

/// Locale name → the charset locale-gen needs beside it (`de_DE.UTF-8` → `UTF-8`).
fn locales() -> &'static BTreeMap<&'static str, &'static str> {
    static CELL: OnceLock<BTreeMap<&'static str, &'static str>> = OnceLock::new();
    CELL.get_or_init(|| lines(LOCALES).filter_map(|l| l.split_once(' ')).collect())
}

/// The charset locale-gen needs beside a locale name, for the locales the release can generate;
/// `None` for a name it cannot.
pub fn locale_charset(name: &str) -> Option<&'static str> {
    locales().get(name).copied()
}

/// Locale names, for "did you mean".
pub fn locale_names() -> impl Iterator<Item = &'static str> {
    locales().keys().copied()
}

/// The locales glibc has built in: cloud-init skips generation for them (`regenerate_locale`).
pub fn is_builtin_locale(name: &str) -> bool {
    matches!(name, "C" | "C.UTF-8" | "POSIX")
}

/// The release's accounts: (`user` or `group`, name).
fn accounts() -> &'static BTreeSet<(&'static str, &'static str)> {
    static CELL: OnceLock<BTreeSet<(&'static str, &'static str)>> = OnceLock::new();
    CELL.get_or_init(|| lines(ACCOUNTS).filter_map(|l| l.split_once(' ')).collect())
}

/// Is this name already a user or a group on the release (or created by a package kiln installs)?
/// `useradd NAME` then fails: an existing user, or a group of that name (`USERGROUPS_ENAB`).
pub fn account_exists(name: &str) -> bool {
    user_exists(name) || group_exists(name)
}

/// Is this a user on the release (for file owners)?
pub fn user_exists(name: &str) -> bool {
    accounts().contains(&("user", name))
}

/// Is this a group on the release (for file owners)?
pub fn group_exists(name: &str) -> bool {
    accounts().contains(&("group", name))
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
