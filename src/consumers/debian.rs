//! Each release's own lists, taken from the release's files by `scripts/release-facts` (each file names the
//! package versions and digests it came from): time zones (tzdata), locales (locales' SUPPORTED), the
//! accounts the base system and kiln's packages create, and the login shells. Debian 12 and 13 have their
//! own; Ubuntu's archive is not reachable from here, so Debian 13's lists stand in for Ubuntu's, and messages
//! say so.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use crate::model::Release;

/// One release's lists, parsed on first use.
pub struct BaseSystem {
    /// Whose lists these are, for messages: "Debian 12's".
    pub whose: &'static str,
    timezones_text: &'static str,
    locales_text: &'static str,
    accounts_text: &'static str,
    shells_text: &'static str,
    timezones: OnceLock<BTreeSet<&'static str>>,
    locales: OnceLock<BTreeMap<&'static str, &'static str>>,
    accounts: OnceLock<BTreeSet<(&'static str, &'static str)>>,
    shells: OnceLock<BTreeSet<&'static str>>,
}

macro_rules! base_system {
    ($whose:literal, $dir:literal) => {
        BaseSystem {
            whose: $whose,
            timezones_text: include_str!(concat!("../../assets/releases/", $dir, "/timezones.txt")),
            locales_text: include_str!(concat!("../../assets/releases/", $dir, "/locales.txt")),
            accounts_text: include_str!(concat!("../../assets/releases/", $dir, "/accounts.txt")),
            shells_text: include_str!(concat!("../../assets/releases/", $dir, "/shells.txt")),
            timezones: OnceLock::new(),
            locales: OnceLock::new(),
            accounts: OnceLock::new(),
            shells: OnceLock::new(),
        }
    };
}

static DEBIAN_12: BaseSystem = base_system!("Debian 12's", "debian-12");
static DEBIAN_13: BaseSystem = base_system!("Debian 13's", "debian-13");
static UBUNTU: BaseSystem = base_system!("Debian 13's (standing in for Ubuntu's)", "debian-13");

/// The lists of the release a profile targets.
pub fn base_system(release: Release) -> &'static BaseSystem {
    match release {
        Release::Debian12 => &DEBIAN_12,
        Release::Debian13 => &DEBIAN_13,
        Release::Ubuntu2404 | Release::Ubuntu2204 => &UBUNTU,
    }
}

fn lines(text: &'static str) -> impl Iterator<Item = &'static str> {
    text.lines().filter(|l| !l.is_empty() && !l.starts_with('#'))
}

impl BaseSystem {
    /// Every zone and link name whose file tzdata installs: cloud-init sets a time zone only when
    /// `/usr/share/zoneinfo/NAME` is a file (cloudinit/distros `_find_tz_file`).
    pub fn timezones(&'static self) -> &'static BTreeSet<&'static str> {
        self.timezones.get_or_init(|| lines(self.timezones_text).collect())
    }

    /// Locale name → the charset locale-gen needs beside it (`de_DE.UTF-8` → `UTF-8`).
    fn locales(&'static self) -> &'static BTreeMap<&'static str, &'static str> {
        self.locales.get_or_init(|| lines(self.locales_text).filter_map(|l| l.split_once(' ')).collect())
    }

    /// The charset locale-gen needs beside a locale name, for the locales the release can generate;
    /// `None` for a name it cannot.
    pub fn locale_charset(&'static self, name: &str) -> Option<&'static str> {
        self.locales().get(name).copied()
    }

    /// Locale names, for "did you mean".
    pub fn locale_names(&'static self) -> impl Iterator<Item = &'static str> {
        self.locales().keys().copied()
    }

    /// The release's accounts: (`user` or `group`, name).
    fn accounts(&'static self) -> &'static BTreeSet<(&'static str, &'static str)> {
        self.accounts.get_or_init(|| lines(self.accounts_text).filter_map(|l| l.split_once(' ')).collect())
    }

    /// Is this name already a user or a group on the release (or created by a package kiln installs)?
    /// `useradd NAME` then fails: an existing user, or a group of that name (`USERGROUPS_ENAB`).
    pub fn account_exists(&'static self, name: &str) -> bool {
        self.user_exists(name) || self.group_exists(name)
    }

    /// Is this a user on the release (for file owners)?
    pub fn user_exists(&'static self, name: &str) -> bool {
        self.accounts().contains(&("user", name))
    }

    /// Is this a group on the release (for file owners)?
    pub fn group_exists(&'static self, name: &str) -> bool {
        self.accounts().contains(&("group", name))
    }

    /// The login shells the base system has.
    pub fn shells(&'static self) -> &'static BTreeSet<&'static str> {
        self.shells.get_or_init(|| lines(self.shells_text).collect())
    }
}

/// The locales glibc has built in: cloud-init skips generation for them (`regenerate_locale`).
pub fn is_builtin_locale(name: &str) -> bool {
    matches!(name, "C" | "C.UTF-8" | "POSIX")
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
        for release in [Release::Debian12, Release::Debian13, Release::Ubuntu2404] {
            let base = base_system(release);
            let zones = base.timezones();
            assert!(zones.contains("Europe/Berlin") && zones.contains("America/New_York"), "{}", base.whose);
            assert!(zones.contains("GMT") && zones.contains("UTC"), "{}", base.whose);
            assert!(!zones.contains("Europe/Berlim") && !zones.contains("posixrules"), "{}", base.whose);
            assert_eq!(base.locale_charset("de_DE.UTF-8"), Some("UTF-8"));
            assert_eq!(base.locale_charset("de_DE"), Some("ISO-8859-1"));
            assert_eq!(base.locale_charset("klingon"), None);
            for taken in ["staff", "users", "adm", "_apt", "docker", "messagebus", "root"] {
                assert!(base.account_exists(taken), "{}: {taken}", base.whose);
            }
            assert!(!base.account_exists("deploy"));
            assert!(base.user_exists("www-data") && base.group_exists("docker") && !base.user_exists("docker"));
            assert!(base.shells().contains("/bin/bash") && !base.shells().contains("/bin/zsh"));
        }
        // Debian 13 moved the legacy zone names to tzdata-legacy, which its base system lacks.
        assert!(base_system(Release::Debian12).timezones().contains("US/Eastern"));
        assert!(!base_system(Release::Debian13).timezones().contains("US/Eastern"));
    }
}
