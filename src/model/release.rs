//! The releases kiln targets, and each one's facts stated once: archive layout, vendor repository paths,
//! the cloud-init and OpenSSH versions it ships, how sshd is started, and what apt needs to stay unattended.
//!
//! Everything release-specific in the lowering, the lints, the expected state and the output validation reads
//! this table; nothing else names a codename.

pub use crate::profile::v1::Release;

/// The distribution a release belongs to: it decides the archive layout and the vendor repository paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Debian,
    Ubuntu,
}

/// What a release is and ships. Sources are named beside each field's values in [`FACTS`].
#[derive(Debug, PartialEq, Eq)]
pub struct ReleaseFacts {
    pub release: Release,
    /// `host.os` spelling, also the `kiln image build` recipe name where kiln has one.
    pub name: &'static str,
    /// For messages: "Debian 13 (trixie)".
    pub title: &'static str,
    pub family: Family,
    pub codename: &'static str,
    /// The distribution's archive: the default for the `apt.debian` override's security source on Debian, and
    /// for messages.
    pub archive: &'static str,
    /// Where security updates come from by default: Debian serves `<codename>-security` from a separate archive;
    /// Ubuntu serves it from the main archive, so the override's own URL carries it.
    pub security_archive: Option<&'static str>,
    /// Components the archive override asks for by default. Ubuntu's `docker.io` is in `universe`.
    pub components: &'static [&'static str],
    /// The archive keyring the base system ships (apt's `Signed-By` for the archive override).
    pub keyring: &'static str,
    /// Docker CE's repository for this release (`https://download.docker.com/linux/<distro>`, suite = codename).
    pub docker_ce: &'static str,
    /// Tailscale's repository (`https://pkgs.tailscale.com/stable/<distro>`, suite = codename).
    pub tailscale: &'static str,
    /// The cloud-init version the release's cloud images run: its schema validates the rendered user-data.
    pub cloud_init: &'static str,
    /// What `docker.source: distro` installs: Debian 13 split the client out of docker.io into docker-cli,
    /// which docker.io only recommends (and kiln's first boot installs no recommends): without it the deploy
    /// user, and Kamal, have no `docker` command (found by the `wireguard` VM scenario's `ssh … docker ps`).
    /// Ubuntu's docker.io still carries the client (its own packaging; not observed here: no Ubuntu archive).
    pub docker_io: &'static [&'static str],
    /// Debian numbers its `base-files` package after the release (`13.8+deb13u8`), which tells an image's
    /// release from its dpkg status; `None` for Ubuntu, whose base-files borrows Debian's numbers (`13ubuntu10`).
    pub base_files_major: Option<u32>,
    /// The OpenSSH version the release ships (`sshd -V`).
    pub openssh: &'static str,
    /// sshd starts from `ssh.socket` (Ubuntu ≥ 22.10): the socket owns port 22, `ssh.service` starts on the
    /// first connection, and `Port`/`ListenAddress` are turned into socket settings by a generator.
    pub sshd_socket_activated: bool,
    /// The cloud image has needrestart installed and it asks (interactively) which services to restart
    /// after an upgrade (Ubuntu ≥ 22.04); kiln's configuration makes it restart them without asking.
    pub needrestart_prompts: bool,
    /// How `/tmp` becomes a `nosuid,nodev` tmpfs (systemd's `tmp.mount`).
    pub tmp_mount: TmpMount,
}

/// Where a release's systemd keeps `tmp.mount` (a tmpfs on `/tmp` with `nosuid,nodev`, in every systemd
/// since 2011), and whether it is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TmpMount {
    /// In use by default: the unit is static, pulled in by `local-fs.target.wants/`.
    Default,
    /// Shipped at this path but not installed: kiln copies it to `/etc/systemd/system/` and enables it.
    Shipped(&'static str),
}

/// The four releases, newest first per family.
pub const FACTS: &[ReleaseFacts] = &[
    // Debian 13: https://www.debian.org/releases/trixie/ (stable since 2025-08-09); cloud-init 25.1.4-1+deb13u1,
    // openssh 1:10.0p1-7, from packages.debian.org/trixie; deb822 `debian.sources` is the installer's and the
    // cloud images' default (release notes §5.1.x "apt sources in deb822 format").
    ReleaseFacts {
        release: Release::Debian13,
        name: "debian-13",
        title: "Debian 13 (trixie)",
        family: Family::Debian,
        codename: "trixie",
        archive: "http://deb.debian.org/debian",
        security_archive: Some("http://deb.debian.org/debian-security"),
        components: &["main"],
        keyring: "/usr/share/keyrings/debian-archive-keyring.gpg",
        docker_ce: "https://download.docker.com/linux/debian",
        tailscale: "https://pkgs.tailscale.com/stable/debian",
        cloud_init: "25.1.4",
        docker_io: &["docker.io", "docker-cli"],
        base_files_major: Some(13),
        openssh: "10.0",
        sshd_socket_activated: false,
        needrestart_prompts: false,
        // systemd 256~rc3-3's NEWS.Debian: "/tmp/ is now by default a tmpfs, via the tmp.mount unit provided
        // upstream" (/usr/lib/systemd/system/local-fs.target.wants/tmp.mount in 257.13-1~deb13u1).
        tmp_mount: TmpMount::Default,
    },
    // Debian 12: cloud-init 22.4.2-1+deb12u4, openssh 1:9.2p1-2+deb12u7 (packages.debian.org/bookworm); the
    // cloud images keep a one-line-style /etc/apt/sources.list.
    ReleaseFacts {
        release: Release::Debian12,
        name: "debian-12",
        title: "Debian 12 (bookworm)",
        family: Family::Debian,
        codename: "bookworm",
        archive: "http://deb.debian.org/debian",
        security_archive: Some("http://deb.debian.org/debian-security"),
        components: &["main"],
        keyring: "/usr/share/keyrings/debian-archive-keyring.gpg",
        docker_ce: "https://download.docker.com/linux/debian",
        tailscale: "https://pkgs.tailscale.com/stable/debian",
        cloud_init: "22.4.2",
        docker_io: &["docker.io"],
        base_files_major: Some(12),
        openssh: "9.2",
        sshd_socket_activated: false,
        needrestart_prompts: false,
        // systemd 252.39-1~deb12u2 ships it as /usr/share/systemd/tmp.mount; /tmp stays on the root file system.
        tmp_mount: TmpMount::Shipped("/usr/share/systemd/tmp.mount"),
    },
    // Ubuntu 24.04 LTS "noble": cloud-init 25.1.4-0ubuntu0~24.04.1 in noble-updates (Ubuntu backports each
    // cloud-init release to every LTS; launchpad.net/ubuntu/+source/cloud-init), openssh 1:9.6p1-3ubuntu13;
    // ssh.socket activation since 22.10 (https://discourse.ubuntu.com/t/sshd-now-uses-socket-based-activation-ubuntu-22-10-and-later/30189);
    // needrestart prompts by default since 22.04 (its `$nrconf{restart} = 'i'`); deb822 `ubuntu.sources`.
    ReleaseFacts {
        release: Release::Ubuntu2404,
        name: "ubuntu-24.04",
        title: "Ubuntu 24.04 LTS (noble)",
        family: Family::Ubuntu,
        codename: "noble",
        archive: "http://archive.ubuntu.com/ubuntu",
        security_archive: None,
        components: &["main", "universe"],
        keyring: "/usr/share/keyrings/ubuntu-archive-keyring.gpg",
        docker_ce: "https://download.docker.com/linux/ubuntu",
        tailscale: "https://pkgs.tailscale.com/stable/ubuntu",
        cloud_init: "25.1.4",
        docker_io: &["docker.io"],
        base_files_major: None,
        openssh: "9.6",
        sshd_socket_activated: true,
        needrestart_prompts: true,
        // systemd 255 as Debian packaged it before 256~rc3-3 (not observed here: no Ubuntu archive).
        tmp_mount: TmpMount::Shipped("/usr/share/systemd/tmp.mount"),
    },
    // Ubuntu 22.04 LTS "jammy": cloud-init 25.1.4-0ubuntu0~22.04.1 in jammy-updates, openssh 1:8.9p1-3ubuntu0;
    // sshd is still a plain service (socket activation came in 22.10); needrestart prompts (22.04 introduced
    // it in the server seed); one-line sources in /etc/apt/sources.list.
    ReleaseFacts {
        release: Release::Ubuntu2204,
        name: "ubuntu-22.04",
        title: "Ubuntu 22.04 LTS (jammy)",
        family: Family::Ubuntu,
        codename: "jammy",
        archive: "http://archive.ubuntu.com/ubuntu",
        security_archive: None,
        components: &["main", "universe"],
        keyring: "/usr/share/keyrings/ubuntu-archive-keyring.gpg",
        docker_ce: "https://download.docker.com/linux/ubuntu",
        tailscale: "https://pkgs.tailscale.com/stable/ubuntu",
        cloud_init: "25.1.4",
        docker_io: &["docker.io"],
        base_files_major: None,
        openssh: "8.9",
        sshd_socket_activated: false,
        needrestart_prompts: true,
        // systemd 249, the same packaging (not observed here).
        tmp_mount: TmpMount::Shipped("/usr/share/systemd/tmp.mount"),
    },
];

/// The release a profile without `host.os` targets: Debian's current stable.
pub const DEFAULT: Release = Release::Debian13;

/// The release a profile targets: its `host.os`, or [`DEFAULT`] (`host::validate` warns about the latter).
pub fn of(host: &crate::profile::v1::Host) -> Release {
    host.os.unwrap_or(DEFAULT)
}

impl Release {
    /// This release's row of [`FACTS`].
    pub fn facts(self) -> &'static ReleaseFacts {
        FACTS.iter().find(|f| f.release == self).expect("every release has a row in FACTS")
    }

    /// The `host.os` spelling.
    pub fn name(self) -> &'static str {
        self.facts().name
    }

    /// The release whose `host.os` spelling is `name`.
    pub fn from_name(name: &str) -> Option<Release> {
        FACTS.iter().find(|f| f.name == name).map(|f| f.release)
    }
}

impl ReleaseFacts {
    /// The name the distribution's archive goes by in kiln's files (`/etc/apt/sources.list.d/<name>.sources`).
    pub fn archive_name(&self) -> &'static str {
        match self.family {
            Family::Debian => "debian",
            Family::Ubuntu => "ubuntu",
        }
    }

    /// The archive suites a default override asks for: the release and its updates, plus security where the
    /// archive itself carries it (Ubuntu).
    pub fn archive_suites(&self) -> Vec<String> {
        let mut suites = vec![self.codename.to_string(), format!("{}-updates", self.codename)];
        if self.security_archive.is_none() {
            suites.push(self.security_suite());
        }
        suites
    }

    /// `<codename>-security`.
    pub fn security_suite(&self) -> String {
        format!("{}-security", self.codename)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_release_has_exactly_one_row_and_its_name_round_trips() {
        for facts in FACTS {
            assert_eq!(FACTS.iter().filter(|f| f.release == facts.release).count(), 1);
            assert_eq!(Release::from_name(facts.name), Some(facts.release));
            assert_eq!(facts.release.facts(), facts);
        }
    }

    /// The profile's `host.os` values are the table's names, so the schema, did-you-mean and the table agree.
    #[test]
    fn profile_spellings_are_the_table_names() {
        let schema = serde_json::to_value(schemars::SchemaGenerator::default().into_root_schema_for::<Release>())
            .expect("schema serializes");
        let spelled: Vec<String> = serde_json::from_value(schema["enum"].clone()).expect("an enum of strings");
        let names: Vec<&str> = FACTS.iter().map(|f| f.name).collect();
        assert_eq!(spelled, names);
        for facts in FACTS {
            let parsed: Release = serde_json::from_value(serde_json::json!(facts.name)).expect("parses");
            assert_eq!(parsed, facts.release);
        }
    }

    #[test]
    fn archive_layouts_follow_each_distribution() {
        let debian = Release::Debian13.facts();
        assert_eq!(debian.archive_suites(), ["trixie", "trixie-updates"]);
        assert_eq!(debian.security_suite(), "trixie-security");
        let ubuntu = Release::Ubuntu2404.facts();
        assert_eq!(ubuntu.archive_suites(), ["noble", "noble-updates", "noble-security"]);
        assert_eq!(ubuntu.components, ["main", "universe"]);
        assert_eq!(ubuntu.archive_name(), "ubuntu");
    }
}
