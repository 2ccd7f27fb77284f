//! Before anything boots: every program and file the scenarios need is there, or the run stops at once
//! naming what is missing and how `scripts/test-all` installs it (docs/design.md §2, principle 21).

use std::path::Path;

#[path = "../../tests/kiln/tools.rs"]
#[allow(dead_code)]
mod tools;

/// Programs the scenarios run: the image recipe, QEMU, the mirror, the WireGuard peer, the deploy's
/// registry, the signals.
const PROGRAMS: &[&str] = &[
    "bash",
    "mmdebstrap",
    "mkfs.ext4",
    "mkfs.vfat",
    "mcopy",
    "mmd",
    "sfdisk",
    "debugfs",
    "python3",
    "qemu-img",
    "qemu-system-x86_64",
    "nc",
    "apt-config",
    "apt-get",
    "apt-ftparchive",
    "dpkg-deb",
    "gpg",
    "gpgconf",
    "tar",
    "wireguard-go",
    "wg",
    "ssh",
    "ssh-keygen",
    "ssh-audit",
    "ip",
    "docker-registry",
    "skopeo",
    "chroot",
    "kill",
];

/// Files the scenarios read, with the Debian package `scripts/test-all` installs for each.
const FILES: &[(&str, &str)] = &[
    ("/usr/share/ovmf/OVMF.fd", "ovmf"),
    ("/bin/busybox", "busybox-static"),
    // The sshd-trap scenario asks sshd for its login methods with Debian's paramiko (`trap.rs`).
    ("/usr/lib/python3/dist-packages/paramiko/__init__.py", "python3-paramiko"),
];

/// Every missing program or file, one message each.
pub fn missing() -> Vec<String> {
    let programs = PROGRAMS.iter().filter_map(|tool| tools::locate(tool).err());
    let files = FILES
        .iter()
        .filter(|(path, _)| !Path::new(path).is_file())
        .map(|(path, package)| format!("{path} is missing: `scripts/test-all` installs it (apt package {package})"));
    programs.chain(files).collect()
}
