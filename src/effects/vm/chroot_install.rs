//! Installs the bake stage's packages into a copy of the base image at native speed, in a chroot, before
//! the build VM boots: what mkosi and Debian's own image builders do. Under emulation the same installs
//! take most of a bake (each maintainer script's `systemctl daemon-reload` and service start is seconds of
//! TCG); in a chroot, with no systemd running, those scripts only enable their units.
//!
//! The build VM then runs the bake-stage user-data unchanged: cloud-init's `apt-get install` finds the
//! packages installed and the provisioning script starts what the bake starts, so everything the
//! image holds is still applied and checked by cloud-init in the real guest.
//!
//! Everything mounted lives in a private mount namespace (`unshare --mount`) that dies with the child, and
//! every process in a PID namespace killed with kiln: no mount and no dpkg outlives kiln, however it ends,
//! and removing the work directory on Ctrl-C can never reach through a mount into the host's /dev or
//! into the image.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};

use crate::cloud_config::CloudConfig;
use crate::effects::partitions;
use crate::effects::process::{die_with_parent, root_and_programs, run, tail};
use crate::effects::vm::wait::wait_until;
use crate::templates::shell_quote;

/// The raw copy of the base the packages are installed into, in the work directory: the build VM's
/// overlay sits on it.
pub const NATIVE_DISK: &str = "native.raw";

/// The programs the install runs on the host, each with the Debian package that has it.
const PROGRAMS: [(&str, &str); 5] = [
    ("qemu-img", "qemu-utils"),
    ("sfdisk", "fdisk"),
    ("unshare", "util-linux"),
    ("mount", "mount"),
    ("chroot", "coreutils"),
];

/// Where the image's files that apt and dpkg read live, and needrestart's, which apt runs after every
/// install (unasked, on Ubuntu, it would ask which services to restart): the only files written before the
/// build VM boots (cloud-init writes them again, the same, at boot).
const APT_TREES: [&str; 3] = ["/etc/apt/", "/etc/dpkg/", "/etc/needrestart/"];

/// What keeps this process from installing natively, if anything: mounting an image and chrooting
/// need root, and every program in `PROGRAMS` must be on PATH.
pub fn unavailable() -> Option<String> {
    root_and_programs("to mount the image and chroot into it", &PROGRAMS)
}

/// apt-get's exit status when an operation fails (a package not found, a maintainer script failing):
/// the script exits with it only then, so the profile is blamed only for what apt says.
const APT_FAILED: i32 = 100;

/// Why the install failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// apt or dpkg refused: the profile's packages or repositories (what apt said last).
    #[error("apt-get in a chroot of the base image failed:\n{0}")]
    Packages(String),
    /// The base image has no root file system to install into (its partitions).
    #[error("{0}")]
    Base(String),
    /// Anything else: converting, mounting, this machine.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// What the chroot is given: the packages, the apt and dpkg files of the bake stage, and the mirror.
pub struct Install<'a> {
    pub config: &'a CloudConfig,
    /// The loopback package mirror (tests, benchmark): apt in the chroot reaches it as a proxy, which
    /// serves every repository URL the guest uses by its path.
    pub mirror_port: Option<u16>,
    /// How long the whole install may take (the bake's `--timeout`, which bounds provisioning).
    pub timeout: Duration,
}

/// How often the running install is looked at.
const WAIT_POLL: Duration = Duration::from_millis(200);

/// Converts `base` to a raw disk in `work_dir`, installs the packages into it and returns its path: the
/// disk the build VM then boots (through an overlay, like any base).
pub fn install(base: &Path, install: &Install, work_dir: &Path) -> Result<PathBuf, InstallError> {
    fs::create_dir_all(work_dir).with_context(|| format!("creating {}", work_dir.display()))?;
    let disk = work_dir.join(NATIVE_DISK);
    let mut convert = Command::new("qemu-img");
    convert.args(["convert", "-O", "raw"]).arg(base).arg(&disk);
    run(die_with_parent(&mut convert), "qemu-img convert (the base image to a raw disk for the chroot)")?;
    let root_fs =
        partitions::read(&disk).and_then(|table| table.root()).map_err(|e| InstallError::Base(format!("{e:#}")))?;
    let staged = work_dir.join("native-files");
    let root = work_dir.join("native-root");
    for dir in [&staged, &root] {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let script = script(install.config, &staged, install.mirror_port)?;
    let mut child = Command::new("unshare");
    child
        // A mount namespace for the mounts, and a PID namespace whose first process unshare kills when it
        // dies (and unshare dies with kiln): apt and dpkg, the script's children, cannot outlive kiln either.
        .args(["--mount", "--propagation", "private", "--pid", "--fork", "--kill-child", "--"])
        .args(["bash", "-c", &script, "kiln-chroot-install"])
        .arg(&disk)
        .arg(root_fs.offset.to_string())
        .arg(root_fs.size.to_string())
        .arg(&root)
        // Nothing of kiln's environment reaches the image's maintainer scripts.
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LANG", "C.UTF-8");
    let mut running = die_with_parent(&mut child)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running unshare")?;
    // Read as it comes, so a chatty apt never blocks on a full pipe while the wait below polls.
    let mut stderr_pipe = running.stderr.take().context("unshare's stderr")?;
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut stderr_pipe, &mut text).map(|_| text)
    });
    let status = wait_until(install.timeout, WAIT_POLL, || Ok(running.try_wait()?))?;
    let Some(status) = status else {
        // unshare's death kills everything in its PID namespace (`--kill-child`), apt and dpkg included.
        running.kill().context("stopping the chroot install")?;
        running.wait().context("reaping the chroot install")?;
        return Err(InstallError::Other(anyhow!(
            "installing the packages in a chroot took longer than {} s (--timeout)",
            install.timeout.as_secs()
        )));
    };
    let stderr = reader
        .join()
        .map_err(|_| anyhow!("reading the chroot's stderr panicked"))?
        .context("reading the chroot's stderr")?;
    if !status.success() {
        let tail = tail(&stderr);
        return Err(if status.code() == Some(APT_FAILED) {
            InstallError::Packages(tail)
        } else {
            InstallError::Other(anyhow!("installing the packages in a chroot of the base image: {status}: {tail}"))
        });
    }
    fs::remove_dir_all(&staged).with_context(|| format!("removing {}", staged.display()))?;
    fs::remove_dir(&root).with_context(|| format!("{} is not empty after the chroot ended", root.display()))?;
    Ok(disk)
}

/// The bash script run in the private mount namespace: its arguments are the raw disk, the root
/// filesystem's offset and size, and the mount point. The files apt reads are staged in `staged`.
fn script(config: &CloudConfig, staged: &Path, mirror_port: Option<u16>) -> Result<String> {
    let mut s = SCRIPT_HEAD.replace("{APT_FAILED}", &APT_FAILED.to_string());
    for (n, file) in config.write_files.iter().filter(|f| APT_TREES.iter().any(|t| f.path.starts_with(t))).enumerate() {
        if file.owner != "root:root" {
            bail!("{} is owned by {}, and the chroot writes only root's files", file.path, file.owner);
        }
        let bytes = file.bytes()?;
        let source = staged.join(n.to_string());
        fs::write(&source, bytes)?;
        // Written by the image's own `install`, inside the chroot: a symlink in the image resolves there.
        s.push_str(&format!(
            "chroot \"$root\" install -D -o root -g root -m {} /dev/stdin {} < {}\n",
            file.permissions,
            shell_quote(&file.path),
            shell_quote(&source.to_string_lossy())
        ));
    }
    let proxy = match mirror_port {
        Some(port) => format!(" -o Acquire::http::Proxy=http://127.0.0.1:{port}"),
        None => String::new(),
    };
    let packages: Vec<String> = config.packages.iter().map(|p| shell_quote(p)).collect();
    s.push_str(&format!("apt_get{proxy} update\n"));
    if !packages.is_empty() {
        // cloud-init's own options for `packages` (cc_package_update_upgrade_install through its apt
        // distro class): old conffiles kept, no questions.
        s.push_str(&format!(
            "apt_get{proxy} --assume-yes -o Dpkg::Options::=--force-confold install {}\n",
            packages.join(" ")
        ));
    }
    s.push_str(SCRIPT_TAIL);
    Ok(s)
}

/// Mounts the root filesystem and what maintainer scripts expect (/proc, /sys, /dev; /run empty, so
/// `/run/systemd/system` is absent and no script starts a service), gives the chroot the host's DNS
/// where the image points /etc/resolv.conf into /run, and keeps services from starting
/// (`policy-rc.d`, for the scripts that ask invoke-rc.d).
const SCRIPT_HEAD: &str = r#"set -Eeuo pipefail
disk=$1 offset=$2 size=$3 root=$4
mount -o loop,offset="$offset",sizelimit="$size" "$disk" "$root"
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount --rbind /dev "$root/dev"
mount -t tmpfs -o mode=0755 tmpfs "$root/run"
if [ -L "$root/etc/resolv.conf" ]; then
  # Where the link leads, resolved inside the image (systemd-resolved's stub, resolvconf's file, ...).
  target=$(chroot "$root" readlink -m /etc/resolv.conf)
  case "$target" in
    /run/*)
      mkdir -p "$root$(dirname "$target")"
      cp /etc/resolv.conf "$root$target"
      ;;
  esac
elif [ -f "$root/etc/resolv.conf" ]; then
  mount --bind /etc/resolv.conf "$root/etc/resolv.conf"
fi
policy=
if [ ! -e "$root/usr/sbin/policy-rc.d" ] && [ ! -L "$root/usr/sbin/policy-rc.d" ]; then
  printf '#!/bin/sh\n# kiln: no service starts in the chroot\nexit 101\n' | chroot "$root" install -m 0755 /dev/stdin /usr/sbin/policy-rc.d
  policy=yes
fi
apt_get() {
  chroot "$root" env DEBIAN_FRONTEND=noninteractive HOME=/root apt-get --quiet "$@" || exit {APT_FAILED}
}
"#;

/// Downloaded packages are not kept (the build VM's generalisation would remove them, but their blocks
/// would still be in the disk it boots); the policy goes; the namespace's end unmounts everything.
const SCRIPT_TAIL: &str = r#"apt_get clean
if [ -n "$policy" ]; then
  chroot "$root" rm /usr/sbin/policy-rc.d
fi
"#;

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for the image's apt-get: it logs its arguments and refuses to run unless services cannot
    /// start (policy-rc.d there, no `/run/systemd/system`), and fails as apt does for a missing package.
    const FAKE_APT_GET: &str = r#"#!/bin/sh
echo "$*" >> /var/log/fake-apt-get.log
[ -x /usr/sbin/policy-rc.d ] || { echo "E: policy-rc.d is missing" >&2; exit 1; }
[ ! -e /run/systemd/system ] || { echo "E: systemd looks alive" >&2; exit 1; }
case "$*" in *missing-package*) echo "E: Unable to locate package missing-package" >&2; exit 100;; esac
case "$*" in *hanging-package*) sleep 3141;; esac
exit 0
"#;

    /// A stand-in for coreutils' `install` (Debian's static busybox has none): the one form the script
    /// uses, `install [-D] [-o U -g G] -m MODE SOURCE DEST`, and nothing else.
    const FAKE_INSTALL: &str = r#"#!/bin/sh
parents= owner= group= mode=
while [ $# -gt 2 ]; do
  case "$1" in
    -D) parents=yes; shift ;;
    -o) owner=$2; shift 2 ;;
    -g) group=$2; shift 2 ;;
    -m) mode=$2; shift 2 ;;
    *) echo "install stand-in: unexpected $1" >&2; exit 2 ;;
  esac
done
[ -n "$mode" ] || { echo "install stand-in: no -m" >&2; exit 2; }
[ -z "$parents" ] || mkdir -p "$(dirname "$2")"
cat "$1" > "$2"
chmod "$mode" "$2"
[ -z "$owner" ] || chown "$owner:$group" "$2"
"#;

    /// A tiny GPT disk (qcow2) whose root filesystem is a static busybox and the stand-in apt-get, made as
    /// kiln's recipe makes its images (sfdisk on the file, `mkfs.ext4 -d -E offset=`).
    fn tiny_base(dir: &Path) -> PathBuf {
        let tree = dir.join("tree");
        for d in ["bin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "run", "tmp", "var/log"] {
            fs::create_dir_all(tree.join(d)).unwrap();
        }
        fs::copy("/bin/busybox", tree.join("bin/busybox")).unwrap();
        for applet in ["sh", "env", "rm", "cat", "mkdir", "chmod", "chown", "dirname", "sleep"] {
            std::os::unix::fs::symlink("busybox", tree.join("bin").join(applet)).unwrap();
        }
        fs::write(tree.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        fs::write(tree.join("etc/group"), "root:x:0:\n").unwrap();
        for (path, text) in [("usr/bin/apt-get", FAKE_APT_GET), ("usr/bin/install", FAKE_INSTALL)] {
            fs::write(tree.join(path), text).unwrap();
            fs::set_permissions(tree.join(path), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        }
        let raw = dir.join("tiny.raw");
        fs::File::create(&raw).unwrap().set_len(48 << 20).unwrap();
        let mut sfdisk = Command::new("sfdisk");
        sfdisk.args(["--quiet", "--no-reread", "--no-tell-kernel"]).arg(&raw).stdin(Stdio::piped());
        let mut child = sfdisk.spawn().unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"label: gpt\nstart=2048, size=90112, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709\n")
            .unwrap();
        assert!(child.wait().unwrap().success());
        let mut mkfs = Command::new("mkfs.ext4");
        mkfs.args(["-q", "-F", "-E", "offset=1048576", "-d"]).arg(&tree).arg(&raw).arg("44M");
        run(&mut mkfs, "mkfs.ext4").unwrap();
        let base = dir.join("tiny.qcow2");
        run(Command::new("qemu-img").args(["convert", "-O", "qcow2"]).arg(&raw).arg(&base), "qemu-img").unwrap();
        base
    }

    /// A file of the installed disk's root filesystem, read offline with debugfs.
    fn read_back(disk: &Path, path: &str) -> String {
        let device = format!("{}?offset=1048576", disk.display());
        let out = run(Command::new("debugfs").args(["-R", &format!("cat {path}"), &device]), "debugfs").unwrap();
        String::from_utf8(out.stdout).unwrap()
    }

    /// The mode debugfs reports for a path (`stat`'s "Mode:" field), or None when the file is absent.
    fn mode_of(disk: &Path, path: &str) -> Option<String> {
        let device = format!("{}?offset=1048576", disk.display());
        let out = run(Command::new("debugfs").args(["-R", &format!("stat {path}"), &device]), "debugfs").unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace().skip_while(|w| *w != "Mode:").nth(1).map(str::to_string)
    }

    /// The tiny base in a fresh directory and the example profile's bake stage; None (the test is skipped,
    /// and says so) where this process cannot install natively.
    fn fixture() -> Option<(tempfile::TempDir, PathBuf, CloudConfig)> {
        if let Some(why) = unavailable() {
            eprintln!("skipped: {why} (CI runs this as root)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let base = tiny_base(dir.path());
        let model = crate::lower::tests::example_model();
        let config =
            crate::lower::lower_stage(&model, &crate::secrets::placeholders(&model), crate::lower::Stage::Bake);
        Some((dir, base, config))
    }

    #[test]
    fn the_chroot_gets_the_apt_files_and_packages_and_no_service_can_start_in_it() {
        let Some((dir, base, config)) = fixture() else { return };
        let work = dir.path().join("work");
        let disk = install(
            &base,
            &Install { config: &config, mirror_port: Some(8123), timeout: Duration::from_secs(60) },
            &work,
        )
        .unwrap();

        let log = read_back(&disk, "/var/log/fake-apt-get.log");
        let proxy = "-o Acquire::http::Proxy=http://127.0.0.1:8123";
        let expected = format!(
            "--quiet {proxy} update\n--quiet {proxy} --assume-yes -o Dpkg::Options::=--force-confold install {}\n--quiet clean\n",
            config.packages.join(" ")
        );
        assert_eq!(log, expected);
        let apt_files: Vec<_> =
            config.write_files.iter().filter(|f| APT_TREES.iter().any(|t| f.path.starts_with(t))).collect();
        assert!(apt_files.len() >= 5, "the example's apt and dpkg files: {}", apt_files.len());
        for file in apt_files {
            assert_eq!(read_back(&disk, &file.path).into_bytes(), file.bytes().unwrap(), "{}", file.path);
            assert_eq!(mode_of(&disk, &file.path).as_deref(), Some(&file.permissions[..]), "{}", file.path);
        }
        assert_eq!(mode_of(&disk, "/usr/sbin/policy-rc.d"), None, "the policy is gone once the install ends");
        // Everything was mounted in the namespace that ended with the script: the mount point is empty
        // and gone, and no loop device is left on the disk.
        assert!(!work.join("native-root").exists());
        let loops =
            run(Command::new("losetup").args(["--list", "--noheadings", "--output", "BACK-FILE"]), "losetup").unwrap();
        assert!(!String::from_utf8_lossy(&loops.stdout).contains(&*disk.to_string_lossy()));
    }

    #[test]
    fn a_package_apt_cannot_find_is_the_profiles_fault_with_apts_words() {
        let Some((dir, base, mut config)) = fixture() else { return };
        config.packages.push("missing-package".into());
        let err = install(
            &base,
            &Install { config: &config, mirror_port: None, timeout: Duration::from_secs(60) },
            &dir.path().join("work"),
        )
        .unwrap_err();
        let InstallError::Packages(said) = err else { panic!("not apt's failure: {err}") };
        assert!(said.contains("E: Unable to locate package missing-package"), "{said}");
    }

    #[test]
    fn a_hung_install_is_stopped_at_the_timeout_and_leaves_no_process_behind() {
        let Some((dir, base, mut config)) = fixture() else { return };
        config.packages.push("hanging-package".into());
        let timeout = Duration::from_secs(3);
        let started = std::time::Instant::now();
        let err = install(&base, &Install { config: &config, mirror_port: None, timeout }, &dir.path().join("work"))
            .unwrap_err();
        assert!(err.to_string().contains("took longer than 3 s"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(30), "stopped at the timeout: {:?}", started.elapsed());
        // The stand-in's `sleep 3141` ran in the PID namespace that dies with unshare: the kernel kills its
        // processes as soon as the namespace's first process (killed with unshare) is gone, moments later.
        let left = || {
            fs::read_dir("/proc")
                .unwrap()
                .filter_map(|e| fs::read(e.ok()?.path().join("cmdline")).ok())
                .filter(|c| c.starts_with(b"sleep\x003141"))
                .count()
        };
        let gone = wait_until(Duration::from_secs(10), Duration::from_millis(100), || Ok((left() == 0).then_some(())));
        assert!(gone.unwrap().is_some(), "a process of the install outlived it by 10 s: {} left", left());
    }
}
