//! The programs kiln's tests, benchmark and VM scenarios run, and where `scripts/test-all` gets each: a
//! missing one is a failure that names it and says how to install it, never a bare "No such file or
//! directory" and never a skip (docs/design.md §2, principle 21). Standard library only, so the
//! benchmark and `vm-tests` include this file as it is.

use std::ffi::OsStr;
use std::path::PathBuf;

/// Where a program comes from.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    /// A Debian package `scripts/test-all` installs when the program is missing.
    Apt(&'static str),
    /// An npm package `scripts/test-all` installs globally.
    Npm(&'static str),
    /// A PyPI package `scripts/test-all` installs with pip, pinned (`name==version`).
    Pip(&'static str),
    /// Part of every Debian system (an essential or required package): `scripts/test-all` expects Debian 12.
    Base(&'static str),
}

/// Every program spawned by the tests (`tests/kiln/`), the benchmark (`benches/`), the VM scenarios
/// (`vm-tests/`) and the library code they drive (mirror, image recipe, QEMU, WireGuard peer).
pub const TOOLS: &[(&str, Source)] = &[
    ("action-validator", Source::Npm("@action-validator/cli")),
    ("apt-config", Source::Base("apt")),
    ("apt-ftparchive", Source::Apt("apt-utils")),
    ("apt-get", Source::Base("apt")),
    ("bash", Source::Apt("bash")),
    ("chroot", Source::Apt("coreutils")),
    ("cloud-init", Source::Apt("cloud-init")),
    ("debugfs", Source::Apt("e2fsprogs")),
    ("dpkg-deb", Source::Base("dpkg")),
    ("go", Source::Apt("golang-go")),
    ("gpg", Source::Apt("gnupg")),
    ("gpgconf", Source::Apt("gnupg")),
    ("groff", Source::Apt("groff-base")),
    ("hostname", Source::Apt("hostname")),
    ("id", Source::Apt("coreutils")),
    ("ip", Source::Apt("iproute2")),
    ("docker-registry", Source::Apt("docker-registry")),
    ("kill", Source::Apt("procps")),
    ("mcopy", Source::Apt("mtools")),
    ("mkfifo", Source::Apt("coreutils")),
    ("mkfs.ext4", Source::Apt("e2fsprogs")),
    ("mkfs.vfat", Source::Apt("dosfstools")),
    ("mmd", Source::Apt("mtools")),
    ("mmdebstrap", Source::Apt("mmdebstrap")),
    ("mount", Source::Apt("mount")),
    ("nc", Source::Apt("netcat-openbsd")),
    ("perl", Source::Apt("perl-base")),
    ("python3", Source::Apt("python3")),
    ("qemu-img", Source::Apt("qemu-utils")),
    ("qemu-system-x86_64", Source::Apt("qemu-system-x86")),
    ("script", Source::Base("bsdutils")),
    ("sfdisk", Source::Apt("fdisk")),
    ("skopeo", Source::Apt("skopeo")),
    ("sh", Source::Base("dash")),
    ("ssh", Source::Apt("openssh-client")),
    ("ssh-audit", Source::Pip("ssh-audit==3.9.0")),
    ("ssh-keygen", Source::Apt("openssh-client")),
    ("tar", Source::Base("tar")),
    ("timeout", Source::Apt("coreutils")),
    ("umount", Source::Apt("mount")),
    ("unshare", Source::Apt("util-linux")),
    ("wg", Source::Apt("wireguard-tools")),
    ("wireguard-go", Source::Apt("wireguard-go")),
];

/// The program's path on `PATH`; panics, naming the program and how `scripts/test-all` installs it,
/// when it is not there.
pub fn require_tool(tool: &str) -> PathBuf {
    locate(tool).unwrap_or_else(|message| panic!("{message}"))
}

/// The program's path on `PATH`, or the message `require_tool` panics with.
pub fn locate(tool: &str) -> Result<PathBuf, String> {
    locate_in(tool, std::env::var_os("PATH").as_deref().unwrap_or_default())
}

/// `locate` with an explicit search path (`PATH`'s syntax).
pub fn locate_in(tool: &str, path: &OsStr) -> Result<PathBuf, String> {
    let Some(source) = TOOLS.iter().find(|(name, _)| *name == tool).map(|(_, source)| *source) else {
        panic!("`{tool}` is not in tests/kiln/tools.rs: add it there, and to scripts/test-all's installs");
    };
    std::env::split_paths(path).map(|dir| dir.join(tool)).find(|p| is_executable(p)).ok_or_else(|| match source {
        Source::Apt(package) => {
            format!("{tool} is not installed: `scripts/test-all` installs it (apt package {package})")
        }
        Source::Npm(package) => {
            format!("{tool} is not installed: `scripts/test-all` installs it (npm package {package})")
        }
        Source::Pip(package) => {
            format!("{tool} is not installed: `scripts/test-all` installs it (`python3 -m pip install {package}`)")
        }
        Source::Base(package) => format!(
            "{tool} is not installed: it is part of every Debian 12 system (package {package}), which \
             `scripts/test-all` expects"
        ),
    })
}

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
