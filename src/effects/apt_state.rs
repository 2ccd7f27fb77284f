//! Which apt state resolves a guest's packages: the host's own when the guest runs the host's Debian release,
//! else a private one for the guest's release (its own sources and lists under kiln's cache directory), so a
//! Debian 12 host resolves a Debian 13 guest's packages from trixie, not from its own bookworm lists.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail, ensure};

use super::process::run;
use crate::lower::deb822_stanza;
use crate::model::{Family, ReleaseFacts, release};

/// Where the host says which release it is (os-release(5)): the first of these that exists.
const OS_RELEASE: [&str; 2] = ["/etc/os-release", "/usr/lib/os-release"];

/// Written after a private `apt-get update` succeeded, holding the sources it was made from: present and equal
/// to the sources, the lists are reused as they are.
const UPDATED: &str = "updated-from";

/// The apt state a download resolves with.
#[derive(Debug)]
pub enum AptState {
    /// The host's apt configuration and lists, as they are.
    Host,
    /// A release's own sources and lists in `dir` (the host's apt.conf still applies: a proxy, say).
    Private { dir: PathBuf },
}

impl AptState {
    /// The apt state for `codename` (`bookworm`, `trixie`): the host's own when the host is that release, else
    /// the private one under `cache/apt/CODENAME/`, made and `apt-get update`d the first time it is needed.
    pub fn for_release(codename: &str, cache: &Path) -> anyhow::Result<AptState> {
        // The archive, its layout and its keyring are the release table's (`model::release`).
        let facts = release::FACTS
            .iter()
            .find(|f| f.family == Family::Debian && f.codename == codename)
            .with_context(|| format!("{codename:?} is not a Debian release codename kiln knows"))?;
        if host_codename()?.as_deref() == Some(codename) {
            return Ok(AptState::Host);
        }
        let state = AptState::Private { dir: cache.join("apt").join(codename) };
        state.update_once(facts)?;
        Ok(state)
    }

    /// apt's lists directory for this state: what a download's cache key records.
    pub fn lists_dir(&self) -> anyhow::Result<PathBuf> {
        match self {
            AptState::Host => host_lists_dir(),
            AptState::Private { dir } => Ok(dir.join("lists")),
        }
    }

    /// The `-o` options that point apt-get at this state (none for the host's).
    pub fn options(&self) -> Vec<OsString> {
        let AptState::Private { dir } = self else {
            return Vec::new();
        };
        let option = |name: &str, path: PathBuf| {
            let mut o = OsString::from(format!("{name}="));
            o.push(path.as_os_str());
            [OsString::from("-o"), o]
        };
        [
            // The main sources.list is never created: only the release's .sources file is read.
            option("Dir::Etc::sourcelist", dir.join("sources.list")),
            option("Dir::Etc::sourceparts", dir.join("sources.list.d")),
            // The host's pins are about the host's release, not the guest's.
            option("Dir::Etc::preferences", dir.join("preferences")),
            option("Dir::Etc::preferencesparts", dir.join("preferences.d")),
            option("Dir::State::lists", dir.join("lists")),
        ]
        .into_iter()
        .flatten()
        .chain(["-o", "Acquire::Languages=none"].map(OsString::from))
        .collect()
    }

    /// Writes the release's sources and runs `apt-get update` with them, unless a previous update from the same
    /// sources finished. apt's own lock on the lists directory keeps two kiln runs from updating at once.
    fn update_once(&self, facts: &ReleaseFacts) -> anyhow::Result<()> {
        let AptState::Private { dir } = self else {
            return Ok(());
        };
        let codename = facts.codename;
        let sources = sources(facts);
        let marker = dir.join(UPDATED);
        if fs::read_to_string(&marker).is_ok_and(|done| done == sources) {
            return Ok(());
        }
        // The host's debian-archive-keyring (a Debian 12 host's copy already holds the trixie keys).
        ensure!(
            Path::new(facts.keyring).is_file(),
            "{} is missing: install debian-archive-keyring to resolve {codename} packages",
            facts.keyring
        );
        for sub in ["sources.list.d", "preferences.d", "lists/partial"] {
            let path = dir.join(sub);
            fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        }
        let file = dir.join("sources.list.d/debian.sources");
        fs::write(&file, &sources).with_context(|| format!("writing {}", file.display()))?;
        eprintln!("kiln: fetching the {codename} package lists into {} (once)", dir.display());
        run(
            Command::new("apt-get")
                .args(["-q", "update"])
                .args(self.options())
                // The cache directory is private to root (0700); the _apt sandbox user could not write into it.
                .args(["-o", "APT::Sandbox::User=root"])
                // The binary caches would be built from these lists and written over the host's.
                .args(["-o", "Dir::Cache::pkgcache=", "-o", "Dir::Cache::srcpkgcache="])
                .env("LC_ALL", "C.UTF-8"),
            &format!("running apt-get update for {codename}"),
        )?;
        fs::write(&marker, &sources).with_context(|| format!("writing {}", marker.display()))
    }
}

/// The deb822 sources of a release's main archive, its updates and its security updates, in the layout kiln
/// writes for a host's archive override (`lower::apt`), with the release's default components.
fn sources(facts: &ReleaseFacts) -> String {
    let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let components = words(facts.components);
    let mut text = deb822_stanza(facts.archive, &facts.archive_suites(), &components, facts.keyring);
    if let Some(security) = facts.security_archive {
        text.push('\n');
        text.push_str(&deb822_stanza(security, &[facts.security_suite()], &components, facts.keyring));
    }
    text
}

/// The host's Debian release codename (os-release's `VERSION_CODENAME`), if it says one.
fn host_codename() -> anyhow::Result<Option<String>> {
    let Some(path) = OS_RELEASE.iter().map(Path::new).find(|p| p.is_file()) else {
        return Ok(None);
    };
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(os_release_value(&text, "VERSION_CODENAME"))
}

/// A variable of os-release(5): `KEY=value` lines, the value optionally in single or double quotes (inside
/// double quotes, `\` escapes the next character), `#` lines are comments.
fn os_release_value(text: &str, key: &str) -> Option<String> {
    text.lines().filter(|l| !l.trim_start().starts_with('#')).find_map(|line| {
        let (name, raw) = line.split_once('=')?;
        if name.trim() != key {
            return None;
        }
        let raw = raw.trim();
        let value = if let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
            let mut out = String::new();
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                out.extend(if c == '\\' { chars.next() } else { Some(c) });
            }
            out
        } else if let Some(inner) = raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
            inner.to_string()
        } else {
            raw.to_string()
        };
        Some(value)
    })
}

/// The host's apt lists directory, as apt itself resolves it.
fn host_lists_dir() -> anyhow::Result<PathBuf> {
    let out = run(Command::new("apt-config").args(["shell", "LISTS", "Dir::State::lists/d"]), "running apt-config")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let value = text.trim().strip_prefix("LISTS='").and_then(|v| v.strip_suffix('\''));
    match value {
        Some(dir) if !dir.is_empty() && !dir.contains('\'') => Ok(PathBuf::from(dir)),
        _ => bail!("apt-config gave no usable Dir::State::lists: {:?}", text.trim()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_values_are_read_as_the_format_says() {
        // Debian 12's /etc/os-release, as shipped by base-files 12.4+deb12u11.
        let debian_12 = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
                         VERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n";
        assert_eq!(os_release_value(debian_12, "VERSION_CODENAME").as_deref(), Some("bookworm"));
        assert_eq!(os_release_value(debian_12, "VERSION_ID").as_deref(), Some("12"));
        assert_eq!(os_release_value(debian_12, "PRETTY_NAME").as_deref(), Some("Debian GNU/Linux 12 (bookworm)"));
        assert_eq!(os_release_value("# VERSION_CODENAME=sid\nA='x y'\nB=\"a\\\"b\"\n", "VERSION_CODENAME"), None);
        assert_eq!(os_release_value("A='x y'\n", "A").as_deref(), Some("x y"));
        assert_eq!(os_release_value("B=\"a\\\"b\"\n", "B").as_deref(), Some("a\"b"));
    }

    #[test]
    fn private_state_points_apt_at_its_own_sources_and_lists() {
        let state = AptState::Private { dir: PathBuf::from("/c/apt/trixie") };
        let options: Vec<String> = state.options().iter().map(|o| o.to_string_lossy().into_owned()).collect();
        assert!(options.contains(&"Dir::State::lists=/c/apt/trixie/lists".to_string()));
        assert!(options.contains(&"Dir::Etc::sourceparts=/c/apt/trixie/sources.list.d".to_string()));
        assert!(options.chunks(2).all(|pair| pair[0] == "-o"));
        assert!(AptState::Host.options().is_empty());
        let trixie = crate::model::Release::Debian13.facts();
        let text = sources(trixie);
        assert!(text.contains("Suites: trixie trixie-updates\n") && text.contains("Suites: trixie-security\n"));
        assert_eq!(text.matches(&format!("Signed-By: {}", trixie.keyring)).count(), 2);
    }

    #[test]
    fn a_codename_that_is_not_one_is_refused_before_any_path_is_made() {
        let err = AptState::for_release("../etc", Path::new("/nonexistent")).unwrap_err();
        assert!(err.to_string().contains("not a Debian release codename"), "{err}");
    }
}
