//! A hermetic, signed package mirror for VM tests, and the small HTTP server that hands it to the guest.
//!
//! The test VM has no internet. Its apt sources point at `http://10.0.2.100/NAME/` (a flat repository each:
//! `Suites: ./`, no components), which QEMU forwards to [`serve`] on the host's loopback. [`build_mirror`] lays
//! out one repository per name in [`REPOSITORIES`]:
//!
//! - `debian/`: exactly the Debian packages the base image lacks for the request, resolved by the host's apt
//!   against the image's dpkg status (recommends included, as the guest's apt would install them) from the
//!   guest's release (the host's lists when it is the host's release, else a private apt state per release),
//!   downloaded once per distinct request into a cache and linked in;
//! - `cloudflared/`, `tailscale/`: stand-in packages built from `assets/standins/` — TEST DOUBLES, not the
//!   vendors' software, which is not in Debian and not reachable from here;
//! - `docker/`: empty, so a profile that points at Docker's repository still gets a valid one;
//! - `debian-security/`: empty until a test publishes an update into it ([`Mirror::publish`]). Its `Release`
//!   carries the Debian security archive's `Origin`, `Label` and `Codename` (`Debian`, `Debian-Security`,
//!   `CODENAME-security`): a STAND-IN for security.debian.org, so the guest's unattended-upgrades judges it by
//!   the same origin pattern as the real archive.
//!
//! Each repository has its own guest address ([`guest_url`]), as each vendor has its own host: unattended-
//! upgrades allows a vendor's packages by `site=` (the host name), which one shared address would blur.
//!
//! Each repository has `Packages`, `Packages.gz`, `Release`, `InRelease` and `Release.gpg`, signed with a key
//! generated for this one mirror in a throwaway GnuPG home (never the user's `~/.gnupg`).

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, BufRead, BufReader, Read as _, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use sha2::{Digest as _, Sha256};

use super::apt_state::AptState;
use super::process::run;

/// The repositories every mirror has, one directory each under [`Mirror::root`].
pub const REPOSITORIES: [&str; 5] = ["debian", "debian-security", "tailscale", "cloudflared", "docker"];

/// The guest address each repository is served on (QEMU forwards each to the one server, which serves by
/// path): one per repository, as each has its own host in production.
const GUEST_ADDRESSES: [(&str, &str); 5] = [
    ("debian", "10.0.2.100"),
    ("debian-security", "10.0.2.101"),
    ("tailscale", "10.0.2.102"),
    ("cloudflared", "10.0.2.103"),
    ("docker", "10.0.2.104"),
];

/// Every guest address the mirror is served on.
pub fn guest_addresses() -> impl Iterator<Item = &'static str> {
    GUEST_ADDRESSES.iter().map(|(_, address)| *address)
}

/// The URL the guest's apt uses for the mirror's repository `name` (one of [`REPOSITORIES`]).
pub fn guest_url(name: &str) -> anyhow::Result<String> {
    let (_, address) = GUEST_ADDRESSES
        .iter()
        .find(|(repo, _)| *repo == name)
        .with_context(|| format!("the mirror has no repository named {name:?}"))?;
    Ok(format!("http://{address}/{name}/"))
}

/// Packages that come from `assets/standins/` instead of Debian (neither is in Debian).
pub const STANDINS: [&str; 2] = ["cloudflared", "tailscale"];

/// The stand-ins' version: below any real release, so a real repository would always win over them.
pub const STANDIN_VERSION: &str = "0.0.0~kiln.test";

/// The signing key's user id, labelled so nobody mistakes it for a vendor's key.
pub const KEY_USER_ID: &str = "kiln test mirror (TEST ONLY) <kiln-test-mirror@invalid>";

/// File times inside the stand-in .debs (`dpkg-deb` clamps to it), so the same tree gives the same package.
const SOURCE_DATE_EPOCH: &str = "1747699200";

/// [`SOURCE_DATE_EPOCH`] as a Release file's `Date` field.
const RELEASE_DATE: &str = "Date: Tue, 20 May 2025 00:00:00 +0000";

/// Bump when the cache layout or the way packages are resolved changes, so old cache entries are not reused.
const CACHE_VERSION: &str = "kiln-mirror-debian-v1";

/// Written last into a cache entry: a directory without it is an interrupted download, not a cache hit.
const CACHE_COMPLETE: &str = "complete";

/// What the mirror must hold.
pub struct MirrorRequest<'a> {
    /// Package names as the profile's packages module will ask for them (`name`, `name=version`).
    pub packages: &'a [String],
    /// The base image's `/var/lib/dpkg/status`: what the guest already has.
    pub dpkg_status: &'a Path,
    /// The guest's Debian release (`bookworm`, `trixie`): the suites its packages are resolved from. The host's
    /// own release uses the host's apt lists; another gets a private apt state (`effects::apt_state`).
    pub codename: &'a str,
}

/// A built mirror.
pub struct Mirror {
    /// Contains one directory per name in [`REPOSITORIES`]; serve it with [`serve`].
    pub root: PathBuf,
    /// The armored public key every repository is signed with (for `/etc/apt/keyrings/NAME.asc`).
    pub public_key: Vec<u8>,
    /// How many Debian packages the `debian` repository holds.
    pub debian_packages: usize,
    /// The size of everything under `root`, in bytes.
    pub bytes: u64,
    /// The guest's release, which the security stand-in's `Release` names.
    codename: String,
    /// The signing key, kept so [`Mirror::publish`] can sign updated indices.
    gpg: Gpg,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror")
            .field("root", &self.root)
            .field("public_key", &format_args!("<{} bytes, armored>", self.public_key.len()))
            .field("debian_packages", &self.debian_packages)
            .field("bytes", &self.bytes)
            .finish()
    }
}

/// Builds the mirror under `workdir/mirror` (replacing a previous one there), caching Debian downloads in
/// [`default_cache_dir`].
pub fn build_mirror(workdir: &Path, request: &MirrorRequest) -> anyhow::Result<Mirror> {
    build_mirror_with_cache(workdir, request, &default_cache_dir())
}

/// [`build_mirror`] with an explicit download cache: `cache/mirror/debian-KEY/` per distinct request.
pub fn build_mirror_with_cache(workdir: &Path, request: &MirrorRequest, cache: &Path) -> anyhow::Result<Mirror> {
    let debian = debian_request(request.packages)?;
    let root = workdir.join("mirror");
    if root.exists() {
        fs::remove_dir_all(&root).with_context(|| format!("removing the previous mirror {}", root.display()))?;
    }
    for repo in REPOSITORIES {
        let pool = root.join(repo).join("pool");
        fs::create_dir_all(&pool).with_context(|| format!("creating {}", pool.display()))?;
    }

    let debs = debian_debs(&debian, request.dpkg_status, request.codename, cache)?;
    for deb in &debs {
        let name = deb.file_name().map(pool_name).context("a cached package has no file name")?;
        link_or_copy(deb, &root.join("debian/pool").join(name))?;
    }
    let standins = workdir.join("standins");
    fs::create_dir_all(&standins).with_context(|| format!("creating {}", standins.display()))?;
    // Both stand-ins, whatever the request: they cost milliseconds, and a repository that exists but lacks its
    // package gives a clearer apt error than one that is missing.
    for name in STANDINS {
        let deb = build(name, &standins)?;
        let file = deb.file_name().context("a stand-in package has no file name")?;
        link_or_copy(&deb, &root.join(name).join("pool").join(file))?;
    }

    let gpg = Gpg::new(workdir)?;
    for repo in REPOSITORIES {
        index_and_sign(&root.join(repo), request.codename, &gpg)?;
    }
    let public_key = gpg.export()?;
    let bytes = tree_size(&root)?;
    Ok(Mirror { root, public_key, debian_packages: debs.len(), bytes, codename: request.codename.into(), gpg })
}

impl Mirror {
    /// Adds `debs` to the repository `repo` and signs its new indices: an update, as a vendor or Debian's
    /// security team publishes one. The guest sees it at its next `apt update`.
    pub fn publish(&self, repo: &str, debs: &[PathBuf]) -> anyhow::Result<()> {
        ensure!(REPOSITORIES.contains(&repo), "the mirror has no repository named {repo:?}");
        let dir = self.root.join(repo);
        for deb in debs {
            let name = deb.file_name().map(pool_name).context("a published package has no file name")?;
            link_or_copy(deb, &dir.join("pool").join(name))?;
        }
        index_and_sign(&dir, &self.codename, &self.gpg)
    }
}

/// `deb` with its version changed to `version`, written into `out_dir`: a Debian package re-issued, as a
/// security update re-issues one. Only the control file changes; dpkg sees a newer package of the same name.
pub fn reversion(deb: &Path, version: &str, out_dir: &Path) -> anyhow::Result<PathBuf> {
    let stage = tempfile::Builder::new()
        .prefix(".reversion-")
        .tempdir_in(out_dir)
        .with_context(|| format!("creating a staging directory in {}", out_dir.display()))?;
    let tree = stage.path().join("tree");
    run(Command::new("dpkg-deb").arg("--raw-extract").arg(deb).arg(&tree), "running dpkg-deb --raw-extract")?;
    let control_path = tree.join("DEBIAN/control");
    // dpkg reads the fields; only the single-line `Version:` field is rewritten in the control file.
    let field = |name: &str| -> anyhow::Result<String> {
        let out = run(Command::new("dpkg-deb").arg("--field").arg(deb).arg(name), "running dpkg-deb --field")?;
        let value = String::from_utf8_lossy(&out.stdout).trim().to_string();
        ensure!(!value.is_empty(), "{} has no {name} field", deb.display());
        Ok(value)
    };
    let (name, arch) = (field("Package")?, field("Architecture")?);
    field("Version")?;
    let control = fs::read_to_string(&control_path).with_context(|| format!("reading {}", control_path.display()))?;
    let lines: Vec<String> = control
        .lines()
        .map(|line| if line.starts_with("Version:") { format!("Version: {version}") } else { line.to_string() })
        .collect();
    write(&control_path, (lines.join("\n") + "\n").as_bytes())?;
    // The file name apt-ftparchive and dpkg expect: an epoch's colon is left out of it.
    let file_version = version.split_once(':').map_or(version, |(_, v)| v);
    let out = out_dir.join(format!("{name}_{file_version}_{arch}.deb"));
    run(
        Command::new("dpkg-deb").args(["--build", "--root-owner-group", "-Zgzip"]).arg(&tree).arg(&out),
        &format!("running dpkg-deb --build for {name} {version}"),
    )?;
    Ok(out)
}

/// Where Debian downloads are kept between runs: kiln's cache directory.
pub fn default_cache_dir() -> PathBuf {
    super::cache::dir()
}

/// The requested packages that come from Debian: sorted, without duplicates and without the stand-ins.
fn debian_request(packages: &[String]) -> anyhow::Result<Vec<String>> {
    let mut debian = BTreeSet::new();
    for package in packages {
        check_package_spec(package)?;
        let name = package.split([':', '=']).next().unwrap_or(package);
        if !STANDINS.contains(&name) {
            debian.insert(package.clone());
        }
    }
    Ok(debian.into_iter().collect())
}

/// `name[:arch][=version]` with Debian's character sets. Anything else could be read by apt-get as an option
/// (a leading `-`) or a pattern, so it is refused before apt sees it.
fn check_package_spec(spec: &str) -> anyhow::Result<()> {
    let (rest, version) = match spec.split_once('=') {
        Some((rest, version)) => (rest, Some(version)),
        None => (spec, None),
    };
    let (name, arch) = match rest.split_once(':') {
        Some((name, arch)) => (name, Some(arch)),
        None => (rest, None),
    };
    let name_ok = name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
    let arch_ok = arch
        .is_none_or(|a| !a.is_empty() && a.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
    let version_ok = version.is_none_or(|v| {
        v.starts_with(|c: char| c.is_ascii_digit())
            && v.chars().all(|c| c.is_ascii_alphanumeric() || ".+~:-".contains(c))
    });
    ensure!(name_ok && arch_ok && version_ok, "{spec:?} is not a Debian package name (name[:arch][=version])");
    Ok(())
}

/// The .debs for `packages` that the image lacks, from the cache or downloaded into it.
fn debian_debs(packages: &[String], dpkg_status: &Path, codename: &str, cache: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if packages.is_empty() {
        return Ok(Vec::new());
    }
    let status = fs::read(dpkg_status)
        .with_context(|| format!("reading the base image's dpkg status {}", dpkg_status.display()))?;
    let apt = AptState::for_release(codename, cache)?;
    let key = cache_key(packages, &status, codename, &apt.lists_dir()?)?;
    let parent = cache.join("mirror");
    let entry = parent.join(format!("debian-{key}"));
    if !entry.join(CACHE_COMPLETE).is_file() {
        fs::create_dir_all(&parent).with_context(|| format!("creating the download cache {}", parent.display()))?;
        // Download next to the entry and rename it into place, so an interrupted run or a concurrent one never
        // leaves a half-filled entry that looks complete.
        let staging = tempfile::Builder::new()
            .prefix(".download-")
            .tempdir_in(&parent)
            .with_context(|| format!("creating a download directory in {}", parent.display()))?;
        download(packages, dpkg_status, &apt, staging.path())?;
        fs::write(staging.path().join(CACHE_COMPLETE), packages.join("\n") + "\n")
            .context("marking the download complete")?;
        if let Err(err) = fs::rename(staging.path(), &entry) {
            // Another build of the same request may have won the race; its entry is as good as ours.
            if !entry.join(CACHE_COMPLETE).is_file() {
                return Err(err).with_context(|| format!("moving the download into {}", entry.display()));
            }
        }
    }
    let mut debs = Vec::new();
    for item in fs::read_dir(&entry).with_context(|| format!("listing {}", entry.display()))? {
        let path = item.with_context(|| format!("listing {}", entry.display()))?.path();
        if path.extension() == Some(OsStr::new("deb")) && path.is_file() {
            debs.push(path);
        }
    }
    debs.sort();
    Ok(debs)
}

/// Identifies a download: the package list, the image's installed set, the release and the state of the apt
/// lists it was resolved with (an `apt-get update` may bring new versions, and then the old set is no longer what
/// apt would pick).
fn cache_key(packages: &[String], status: &[u8], codename: &str, lists: &Path) -> anyhow::Result<String> {
    let mut hash = Sha256::new();
    hash.update(CACHE_VERSION);
    hash.update(format!("\nrelease {codename}"));
    for package in packages {
        hash.update(format!("\npackage {package}"));
    }
    hash.update(format!("\nstatus {:x}", Sha256::digest(status)));
    let mut files = Vec::new();
    for item in fs::read_dir(lists).with_context(|| format!("listing apt's lists {}", lists.display()))? {
        let item = item.with_context(|| format!("listing apt's lists {}", lists.display()))?;
        let meta = item.metadata().with_context(|| format!("reading {}", item.path().display()))?;
        let name = item.file_name().to_string_lossy().into_owned();
        // Indices only: `lock` and friends change on every `apt-get update`, even one that changes nothing.
        if meta.is_file() && (name.contains("Packages") || name.ends_with("Release")) {
            let mtime = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
            files.push(format!("{name} {} {mtime:?}", meta.len()));
        }
    }
    files.sort();
    ensure!(
        files.iter().any(|f| f.contains("Packages")),
        "apt has no package lists in {}; run `apt-get update` first",
        lists.display()
    );
    for file in files {
        hash.update(format!("\nlist {file}"));
    }
    let digest = format!("{:x}", hash.finalize());
    Ok(digest[..24].to_string())
}

/// The host's apt, resolving against the image's dpkg status with the release's lists, downloads what the guest
/// would install.
fn download(packages: &[String], dpkg_status: &Path, apt: &AptState, archives: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(archives.join("partial")).context("creating apt's partial directory")?;
    let opt = |name: &str, value: &OsStr| {
        let mut o = std::ffi::OsString::from(format!("{name}="));
        o.push(value);
        o
    };
    let mut cmd = Command::new("apt-get");
    cmd.args(["-q", "-y", "--download-only"])
        .args(apt.options())
        .arg("-o")
        .arg(opt("Dir::State::status", dpkg_status.as_os_str()))
        .arg("-o")
        .arg(opt("Dir::Cache::archives", archives.as_os_str()))
        // The host's auto-installed marks say nothing about the image.
        .arg("-o")
        .arg(opt("Dir::State::extended_states", archives.join("extended_states").as_os_str()))
        .args([
            // Nothing here writes the host's dpkg or apt state, so there is nothing to lock, and the host's
            // own apt (or another build) may run at the same time.
            "-o",
            "Debug::NoLocking=1",
            // The binary caches would be rebuilt from the image's status and written over the host's.
            "-o",
            "Dir::Cache::pkgcache=",
            "-o",
            "Dir::Cache::srcpkgcache=",
            // cloud-init's packages module runs a plain `apt-get install`: recommends in, suggests out. Say so
            // explicitly, whatever the host's apt.conf.d prefers.
            "-o",
            "APT::Install-Recommends=true",
            "-o",
            "APT::Install-Suggests=false",
            // The staging directory is private to root (0700); the _apt sandbox user could not write into it.
            "-o",
            "APT::Sandbox::User=root",
            "install",
        ])
        .args(packages)
        .env("LC_ALL", "C.UTF-8")
        .env("DEBIAN_FRONTEND", "noninteractive");
    run(&mut cmd, "running apt-get --download-only for the mirror")?;
    Ok(())
}

/// A pool file name as Debian's archive spells it: apt's cache names carry the epoch (`git_1%3a2.39…`), which
/// a URL would have to escape; the archive leaves it out (`git_2.39…`).
fn pool_name(file: &OsStr) -> std::ffi::OsString {
    let bytes = file.as_bytes();
    if let Some(underscore) = bytes.iter().position(|b| *b == b'_') {
        let rest = &bytes[underscore + 1..];
        if let Some(mark) = rest.windows(3).position(|w| w.eq_ignore_ascii_case(b"%3a"))
            && mark > 0
            && rest[..mark].iter().all(u8::is_ascii_digit)
        {
            let mut name = bytes[..=underscore].to_vec();
            name.extend_from_slice(&rest[mark + 3..]);
            return OsStr::from_bytes(&name).to_os_string();
        }
    }
    file.to_os_string()
}

/// A hard link where possible (the cache and the work directory usually share a file system), else a copy.
fn link_or_copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    if fs::hard_link(from, to).is_err() {
        fs::copy(from, to).with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    }
    Ok(())
}

/// One file of a stand-in package: its path in the package tree, its mode and its contents.
struct StandinFile {
    path: &'static str,
    mode: u32,
    contents: &'static str,
}

macro_rules! standin_file {
    ($package:literal, $path:literal, $mode:literal) => {
        StandinFile {
            path: $path,
            mode: $mode,
            contents: include_str!(concat!("../../assets/standins/", $package, "/", $path)),
        }
    };
}

/// The stand-ins' trees, embedded so a kiln binary builds them anywhere. Modes are stated here rather than
/// taken from the checkout, whose modes depend on git and the umask.
const CLOUDFLARED_FILES: &[StandinFile] = &[
    standin_file!("cloudflared", "DEBIAN/control", 0o644),
    standin_file!("cloudflared", "usr/bin/cloudflared", 0o755),
];

const TAILSCALE_FILES: &[StandinFile] = &[
    standin_file!("tailscale", "DEBIAN/control", 0o644),
    standin_file!("tailscale", "DEBIAN/postinst", 0o755),
    standin_file!("tailscale", "DEBIAN/prerm", 0o755),
    standin_file!("tailscale", "DEBIAN/postrm", 0o755),
    standin_file!("tailscale", "lib/systemd/system/tailscaled.service", 0o644),
    standin_file!("tailscale", "usr/bin/tailscale", 0o755),
    standin_file!("tailscale", "usr/sbin/tailscaled", 0o755),
];

fn standin_files(name: &str) -> Option<&'static [StandinFile]> {
    match name {
        "cloudflared" => Some(CLOUDFLARED_FILES),
        "tailscale" => Some(TAILSCALE_FILES),
        _ => None,
    }
}

/// Builds the stand-in package `name` (one of [`STANDINS`]) into `out_dir` and returns the .deb's path,
/// `NAME_0.0.0~kiln.test_all.deb`. These are TEST DOUBLES, not Cloudflare's or Tailscale's software.
pub fn build(name: &str, out_dir: &Path) -> anyhow::Result<PathBuf> {
    build_version(name, STANDIN_VERSION, out_dir)
}

/// [`build`] at another version (a vendor's newer release, for update tests): [`STANDIN_VERSION`] is replaced
/// wherever the stand-in's files state it (its control file, its `--version`, its start record).
pub fn build_version(name: &str, version: &str, out_dir: &Path) -> anyhow::Result<PathBuf> {
    let Some(files) = standin_files(name) else {
        bail!("no stand-in package named {name:?} (there are: {})", STANDINS.join(", "));
    };
    let stage = tempfile::Builder::new()
        .prefix(&format!(".{name}-tree-"))
        .tempdir_in(out_dir)
        .with_context(|| format!("creating a staging directory in {}", out_dir.display()))?;
    let tree = stage.path();
    // The tree's root becomes the package's `/`: 0755 like every directory dpkg unpacks.
    fs::set_permissions(tree, fs::Permissions::from_mode(0o755)).context("setting the stand-in tree's mode")?;
    for file in files {
        let path = tree.join(file.path);
        let mut dir = path.parent();
        let mut created = Vec::new();
        while let Some(d) = dir.filter(|d| *d != tree && !d.exists()) {
            created.push(d.to_path_buf());
            dir = d.parent();
        }
        for d in created.iter().rev() {
            fs::create_dir(d).with_context(|| format!("creating {}", d.display()))?;
            fs::set_permissions(d, fs::Permissions::from_mode(0o755))
                .with_context(|| format!("setting the mode of {}", d.display()))?;
        }
        fs::write(&path, file.contents.replace(STANDIN_VERSION, version))
            .with_context(|| format!("writing {}", path.display()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(file.mode))
            .with_context(|| format!("setting the mode of {}", path.display()))?;
    }
    let deb = out_dir.join(format!("{name}_{version}_all.deb"));
    run(
        Command::new("dpkg-deb")
            .args(["--build", "--root-owner-group", "-Zgzip"])
            .arg(tree)
            .arg(&deb)
            .env("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH),
        &format!("running dpkg-deb --build for the {name} stand-in"),
    )?;
    Ok(deb)
}

/// apt checks SHA256 (MD5 and SHA1 are too weak for it to trust); skipping the others halves the time spent
/// hashing a pool of ~90 MB.
const FTPARCHIVE_HASHES: [&str; 6] =
    ["-o", "APT::FTPArchive::MD5=false", "-o", "APT::FTPArchive::SHA1=false", "-o", "APT::FTPArchive::SHA512=false"];

/// `Origin`, `Label` and, for the security stand-in, `Codename` and `Suite` of a repository's `Release`: what
/// unattended-upgrades' origin patterns match (python-apt reads them from the Release file).
fn release_fields(name: &str, codename: &str) -> Vec<String> {
    let field = |key: &str, value: &str| format!("APT::FTPArchive::Release::{key}={value}");
    if name == "debian-security" {
        // security.debian.org's own values (its InRelease for bookworm-security and trixie-security).
        let suite = format!("{codename}-security");
        vec![
            field("Origin", "Debian"),
            field("Label", "Debian-Security"),
            field("Codename", &suite),
            field("Suite", &suite),
        ]
    } else {
        vec![field("Origin", "kiln test mirror"), field("Label", "kiln test mirror (TEST ONLY)")]
    }
}

/// Writes `Packages`, `Packages.gz`, `Release`, `InRelease` and `Release.gpg` for the flat repository `repo`.
fn index_and_sign(repo: &Path, codename: &str, gpg: &Gpg) -> anyhow::Result<()> {
    let name = repo.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let packages = run(
        Command::new("apt-ftparchive").args(FTPARCHIVE_HASHES).args(["packages", "pool"]).current_dir(repo),
        "running apt-ftparchive packages",
    )?
    .stdout;
    write(&repo.join("Packages"), &packages)?;
    write(&repo.join("Packages.gz"), &crate::encoding::gzip(&packages))?;
    let mut command = Command::new("apt-ftparchive");
    command.args(FTPARCHIVE_HASHES);
    for field in release_fields(&name, codename) {
        command.arg("-o").arg(field);
    }
    let release = run(
        command
            .arg("-o")
            .arg(format!(
                "APT::FTPArchive::Release::Description=kiln VM test mirror: {name} (TEST ONLY, throwaway key)"
            ))
            .args(["release", "."])
            .current_dir(repo),
        "running apt-ftparchive release",
    )?
    .stdout;
    write(&repo.join("Release"), &fixed_date(&release)?)?;
    gpg.sign(&repo.join("Release"))
}

/// `Release` with its `Date` set to [`SOURCE_DATE_EPOCH`] instead of now. apt refuses a Release dated in its
/// future ("not valid yet"), and a guest's clock may lag the host's; with no `Valid-Until`, a past date never
/// expires. It also makes the same indices give the same Release.
fn fixed_date(release: &[u8]) -> anyhow::Result<Vec<u8>> {
    let text = std::str::from_utf8(release).context("apt-ftparchive wrote a Release that is not UTF-8")?;
    ensure!(text.lines().any(|l| l.starts_with("Date: ")), "apt-ftparchive wrote a Release without a Date");
    let lines: Vec<&str> = text.lines().map(|l| if l.starts_with("Date: ") { RELEASE_DATE } else { l }).collect();
    Ok((lines.join("\n") + "\n").into_bytes())
}

fn write(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    fs::write(path, data).with_context(|| format!("writing {}", path.display()))
}

fn tree_size(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for item in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let item = item.with_context(|| format!("listing {}", dir.display()))?;
        let meta = item.metadata().with_context(|| format!("reading {}", item.path().display()))?;
        total += if meta.is_dir() { tree_size(&item.path())? } else { meta.len() };
    }
    Ok(total)
}

/// A GnuPG home made for one mirror, holding one throwaway signing key; removed (agent first) on drop.
struct Gpg {
    home: tempfile::TempDir,
}

impl Gpg {
    fn new(workdir: &Path) -> anyhow::Result<Self> {
        // gpg-agent's sockets live in the home when /run/user/UID does not exist, and a Unix socket path has
        // 108 bytes at most: a deep work directory falls back to the system's temporary directory.
        let base = if workdir.as_os_str().len() <= 64 { workdir.to_path_buf() } else { std::env::temp_dir() };
        let home = tempfile::Builder::new()
            .prefix("gnupg-")
            .tempdir_in(&base)
            .with_context(|| format!("creating a throwaway GnuPG home in {}", base.display()))?;
        let gpg = Gpg { home };
        run(
            gpg.command().args(["--quick-gen-key", KEY_USER_ID, "ed25519", "sign", "never"]),
            "generating the mirror's signing key",
        )?;
        Ok(gpg)
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("gpg");
        cmd.env("GNUPGHOME", self.home.path()).args([
            "--batch",
            "--no-tty",
            "--quiet",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ]);
        cmd
    }

    fn export(&self) -> anyhow::Result<Vec<u8>> {
        let key = run(self.command().args(["--armor", "--export"]), "exporting the mirror's public key")?.stdout;
        ensure!(key.starts_with(b"-----BEGIN PGP PUBLIC KEY BLOCK-----"), "gpg exported no armored public key");
        Ok(key)
    }

    fn sign(&self, release: &Path) -> anyhow::Result<()> {
        let dir = release.parent().context("the Release file has no directory")?;
        run(
            self.command()
                .args(["--yes", "--digest-algo", "SHA512", "--clearsign", "--output"])
                .arg(dir.join("InRelease"))
                .arg(release),
            "signing InRelease",
        )?;
        run(
            self.command()
                .args(["--yes", "--digest-algo", "SHA512", "--armor", "--detach-sign", "--output"])
                .arg(dir.join("Release.gpg"))
                .arg(release),
            "signing Release.gpg",
        )?;
        Ok(())
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        // gpg started an agent for this home; stop it so it neither outlives the build nor holds the directory.
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "all"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// How often the accept loop looks at the stop flag: bounds how long dropping the server takes.
const POLL: Duration = Duration::from_millis(20);
/// A connection idle this long between requests is closed (apt keeps connections open between files).
const IDLE: Duration = Duration::from_secs(15);
/// A client that stops reading for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// Request line plus headers; apt sends a few hundred bytes.
const MAX_HEAD: usize = 16 * 1024;

/// An HTTP server for a mirror on `127.0.0.1`, on an ephemeral port, in background threads. Stops accepting
/// when dropped (within [`POLL`]); a connection in progress finishes its current response.
pub struct MirrorServer {
    port: u16,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl MirrorServer {
    /// The port on 127.0.0.1 (what the guest's `guestfwd` connects to through `nc`).
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for MirrorServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Serves the files under `root` over HTTP/1.0 and 1.1 (GET and HEAD, keep-alive, one thread per
/// connection) on `127.0.0.1:0`.
pub fn serve(root: &Path) -> anyhow::Result<MirrorServer> {
    let root = root.canonicalize().with_context(|| format!("resolving the mirror root {}", root.display()))?;
    ensure!(root.is_dir(), "the mirror root {} is not a directory", root.display());
    let listener = TcpListener::bind(("127.0.0.1", 0)).context("binding the mirror's http port on 127.0.0.1")?;
    // Non-blocking, so the accept loop can notice the stop flag without a wake-up connection.
    listener.set_nonblocking(true).context("making the mirror's listener non-blocking")?;
    let port = listener.local_addr().context("reading the mirror's port")?.port();
    let stop = Arc::new(AtomicBool::new(false));
    let root: Arc<Path> = Arc::from(root);
    let acceptor = thread::Builder::new()
        .name("kiln-mirror-http".into())
        .spawn({
            let stop = Arc::clone(&stop);
            move || accept_loop(&listener, &root, &stop)
        })
        .context("starting the mirror's http thread")?;
    Ok(MirrorServer { port, stop, acceptor: Some(acceptor) })
}

fn accept_loop(listener: &TcpListener, root: &Arc<Path>, stop: &Arc<AtomicBool>) {
    while !stop.load(Ordering::Acquire) {
        match listener.accept() {
            Ok((stream, _)) => {
                let (root, stop) = (Arc::clone(root), Arc::clone(stop));
                // If no thread can be started the connection is dropped; the client sees it closed and retries.
                let _ = thread::Builder::new()
                    .name("kiln-mirror-conn".into())
                    .spawn(move || serve_connection(stream, &root, &stop));
            }
            // Nothing waiting, or a transient failure such as running out of file descriptors: wait a little.
            Err(_) => thread::sleep(POLL),
        }
    }
}

struct Request {
    method: String,
    target: String,
    keep_alive: bool,
    version: &'static str,
}

fn serve_connection(stream: TcpStream, root: &Path, stop: &AtomicBool) {
    let setup = stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_read_timeout(Some(IDLE)))
        .and_then(|()| stream.set_write_timeout(Some(WRITE_TIMEOUT)))
        .and_then(|()| stream.try_clone());
    let Ok(read_half) = setup else { return };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    loop {
        let request = match read_request(&mut reader) {
            Ok(Some(request)) => request,
            // Closed, idle too long, or a broken connection: nothing to answer.
            Ok(None) => return,
            Err(status) => {
                let _ = respond_status(&mut writer, "HTTP/1.1", status, false, false);
                return;
            }
        };
        let keep_alive = request.keep_alive && !stop.load(Ordering::Acquire);
        let head_only = request.method == "HEAD";
        let found = match request.method.as_str() {
            "GET" | "HEAD" => resolve(root, &request.target),
            _ => Err(405),
        };
        let sent = match found {
            Ok(file) => respond_file(&mut writer, request.version, head_only, &file, keep_alive),
            Err(status) => respond_status(&mut writer, request.version, status, head_only, keep_alive),
        };
        if sent.is_err() || !keep_alive {
            return;
        }
    }
}

/// Reads one request head. `Ok(None)` when the connection ended before a request; `Err(status)` for a request
/// this server will not answer normally.
fn read_request(reader: &mut impl BufRead) -> Result<Option<Request>, u16> {
    let mut budget = MAX_HEAD;
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        let read = match (&mut *reader).take(budget as u64).read_until(b'\n', &mut line) {
            Ok(n) => n,
            Err(_) => return Ok(None),
        };
        if read == 0 {
            return if lines.is_empty() { Ok(None) } else { Err(400) };
        }
        if !line.ends_with(b"\n") {
            return if read >= budget { Err(431) } else { Ok(None) };
        }
        budget -= read;
        let text = String::from_utf8(line).map_err(|_| 400u16)?;
        let text = text.trim_end_matches(['\r', '\n']).to_string();
        if text.is_empty() {
            // Tolerate blank lines before a request line (RFC 9112 §2.2).
            if lines.is_empty() {
                continue;
            }
            break;
        }
        lines.push(text);
    }
    let mut parts = lines[0].split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(400);
    };
    let version = match version {
        "HTTP/1.1" => "HTTP/1.1",
        "HTTP/1.0" => "HTTP/1.0",
        _ => return Err(505),
    };
    let mut keep_alive = version == "HTTP/1.1";
    for header in &lines[1..] {
        let Some((name, value)) = header.split_once(':') else { return Err(400) };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "connection" => {
                let tokens: Vec<String> = value.split(',').map(|t| t.trim().to_ascii_lowercase()).collect();
                if tokens.iter().any(|t| t == "close") {
                    keep_alive = false;
                } else if tokens.iter().any(|t| t == "keep-alive") {
                    keep_alive = true;
                }
            }
            // A GET or HEAD with a body is not something apt sends; refusing it keeps the framing simple.
            "content-length" if value != "0" => return Err(400),
            "transfer-encoding" => return Err(400),
            _ => {}
        }
    }
    Ok(Some(Request { method: method.to_string(), target: target.to_string(), keep_alive, version }))
}

/// Maps a request target to a regular file under `root` (canonical). Dot segments are dropped, `..` is refused
/// (even percent-encoded), and a symlink that leads outside `root` is not followed.
fn resolve(root: &Path, target: &str) -> Result<PathBuf, u16> {
    let mut path = target.split(['?', '#']).next().unwrap_or_default();
    if let Some(rest) = path.strip_prefix("http://") {
        // Absolute form, as sent to a proxy: the host is ours whatever it says.
        path = rest.find('/').map_or("/", |i| &rest[i..]);
    }
    if !path.starts_with('/') {
        return Err(400);
    }
    let decoded = percent_decode(path.as_bytes()).ok_or(400u16)?;
    let mut file = root.to_path_buf();
    for segment in decoded.split(|b| *b == b'/') {
        match segment {
            b"" | b"." => {}
            b".." => return Err(400),
            _ if segment.contains(&0) => return Err(400),
            _ => file.push(OsStr::from_bytes(segment)),
        }
    }
    let real = file.canonicalize().map_err(|_| 404u16)?;
    if !real.starts_with(root) || !real.is_file() {
        return Err(404);
    }
    Ok(real)
}

fn percent_decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    let mut bytes = input.iter();
    while let Some(&b) = bytes.next() {
        if b == b'%' {
            let hi = (*bytes.next()? as char).to_digit(16)?;
            let lo = (*bytes.next()? as char).to_digit(16)?;
            out.push(u8::try_from(hi * 16 + lo).ok()?);
        } else {
            out.push(b);
        }
    }
    Some(out)
}

fn respond_file(out: &mut TcpStream, version: &str, head_only: bool, file: &Path, keep_alive: bool) -> io::Result<()> {
    let mut data = match fs::File::open(file) {
        Ok(data) => data,
        Err(_) => return respond_status(out, version, 404, head_only, keep_alive),
    };
    let len = data.metadata()?.len();
    let head = format!(
        "{version} 200 OK\r\nContent-Length: {len}\r\nContent-Type: application/octet-stream\r\nConnection: {}\r\n\r\n",
        connection(keep_alive)
    );
    out.write_all(head.as_bytes())?;
    if !head_only {
        // Exactly the advertised length, even if the file grew meanwhile; a short file is a broken response
        // that the client detects from Content-Length.
        let sent = io::copy(&mut (&mut data).take(len), out)?;
        if sent != len {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while being sent"));
        }
    }
    out.flush()
}

fn respond_status(
    out: &mut TcpStream,
    version: &str,
    status: u16,
    head_only: bool,
    keep_alive: bool,
) -> io::Result<()> {
    let reason = match status {
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    };
    let body = format!("{status} {reason}\n");
    let allow = if status == 405 { "Allow: GET, HEAD\r\n" } else { "" };
    let head = format!(
        "{version} {status} {reason}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n{allow}Connection: {}\r\n\r\n",
        body.len(),
        connection(keep_alive)
    );
    out.write_all(head.as_bytes())?;
    if !head_only {
        out.write_all(body.as_bytes())?;
    }
    out.flush()
}

fn connection(keep_alive: bool) -> &'static str {
    if keep_alive { "keep-alive" } else { "close" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_names_drop_the_epoch_like_debians_archive() {
        let name = |s: &str| pool_name(OsStr::new(s)).to_string_lossy().into_owned();
        assert_eq!(name("git_1%3a2.39.5-0+deb12u3_amd64.deb"), "git_2.39.5-0+deb12u3_amd64.deb");
        assert_eq!(name("htop_3.2.2-2_amd64.deb"), "htop_3.2.2-2_amd64.deb");
        assert_eq!(name("odd_x%3a1_all.deb"), "odd_x%3a1_all.deb");
        assert_eq!(name("noversion.deb"), "noversion.deb");
    }

    #[test]
    fn package_specs_are_checked_before_apt_sees_them() {
        for good in ["ufw", "docker.io", "g++", "libc6:amd64", "sudo=1.9.13p3-1+deb12u1", "git=1:2.39.5-0+deb12u3"] {
            assert!(check_package_spec(good).is_ok(), "{good}");
        }
        for bad in ["", "a", "-oDebug::X=1", "--reinstall", "Ufw", "ufw*", "ufw/bookworm", "x y", "ufw=", "ufw:"] {
            assert!(check_package_spec(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn standins_are_split_from_the_debian_request() {
        let packages: Vec<String> =
            ["ufw", "tailscale", "cloudflared", "htop", "ufw", "sudo"].iter().map(|s| s.to_string()).collect();
        assert_eq!(debian_request(&packages).unwrap(), ["htop", "sudo", "ufw"]);
    }

    #[test]
    fn targets_resolve_inside_the_root_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        fs::create_dir_all(root.join("debian/pool")).unwrap();
        fs::write(root.join("debian/InRelease"), "x").unwrap();
        fs::write(root.join("debian/pool/a_1~x+y_all.deb"), "x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("debian/escape")).unwrap();
        assert_eq!(resolve(&root, "/debian/./InRelease"), Ok(root.join("debian/InRelease")));
        assert_eq!(resolve(&root, "/debian//InRelease?x=1"), Ok(root.join("debian/InRelease")));
        assert_eq!(resolve(&root, "/debian/pool/a_1%7ex%2By_all.deb"), Ok(root.join("debian/pool/a_1~x+y_all.deb")));
        assert_eq!(resolve(&root, "http://10.0.2.100/debian/InRelease"), Ok(root.join("debian/InRelease")));
        assert_eq!(resolve(&root, "/debian/../../etc/passwd"), Err(400));
        assert_eq!(resolve(&root, "/debian/%2e%2e/%2e%2e/etc/passwd"), Err(400));
        assert_eq!(resolve(&root, "/debian/%2"), Err(400));
        assert_eq!(resolve(&root, "/debian/escape"), Err(404));
        assert_eq!(resolve(&root, "/debian"), Err(404));
        assert_eq!(resolve(&root, "/debian/missing"), Err(404));
        assert_eq!(resolve(&root, "debian/InRelease"), Err(400));
    }

    #[test]
    fn embedded_standin_files_match_the_assets_tree() {
        let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/standins");
        for name in STANDINS {
            let mut on_disk = Vec::new();
            let mut pending = vec![assets.join(name)];
            while let Some(dir) = pending.pop() {
                for item in fs::read_dir(&dir).unwrap() {
                    let path = item.unwrap().path();
                    if path.is_dir() {
                        pending.push(path);
                    } else {
                        on_disk.push(path.strip_prefix(assets.join(name)).unwrap().to_string_lossy().into_owned());
                    }
                }
            }
            on_disk.sort();
            let mut embedded: Vec<String> = standin_files(name).unwrap().iter().map(|f| f.path.to_string()).collect();
            embedded.sort();
            assert_eq!(on_disk, embedded, "assets/standins/{name} and the embedded list differ");
            let control = fs::read_to_string(assets.join(name).join("DEBIAN/control")).unwrap();
            assert!(
                control.contains(&format!("\nVersion: {STANDIN_VERSION}\n")),
                "{name}'s control file has another version"
            );
        }
    }
}
