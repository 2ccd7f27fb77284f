//! Reading a disk image offline with Debian's own tools, no loop device or mount: the image converted to
//! raw, the partitions' offsets from `sfdisk --json` (`kiln::effects::partitions`), the ext4 root file
//! system read with `debugfs` there and the EFI system partition with mtools.

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, Result, bail};
use kiln::effects::partitions;
use kiln::effects::process::run;

/// `debugfs`'s device argument for the root file system of the raw disk `raw`.
pub fn root_device(raw: &Path) -> Result<String> {
    Ok(format!("{}?offset={}", raw.display(), partitions::read(raw)?.root()?.offset))
}

/// systemd-boot's random seed on the EFI system partition, which systemd-boot-random-seed.service writes
/// at every boot.
pub const ESP_RANDOM_SEED: &str = "/loader/random-seed";

/// Every file and directory on the EFI system partition of the raw disk `raw`, as paths from its root
/// (`/loader/random-seed`; directories end in `/`), listed by mtools' `mdir -/ -b` (bare, recursive).
pub fn esp_paths(raw: &Path) -> Result<Vec<String>> {
    let esp = partitions::read(raw)?.esp()?;
    let image = format!("{}@@{}", raw.display(), esp.offset);
    let out = run(Command::new("mdir").args(["-/", "-b", "-i", &image, "::/"]), "mdir -/ -b (the ESP)")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            line.strip_prefix("::")
                .map(str::to_string)
                .with_context(|| format!("mdir -b printed `{line}`, not ::/PATH"))
        })
        .collect()
}

/// Converts `image` (and its backing chain) into the raw disk `raw`, which the functions below read.
pub fn to_raw(image: &Path, raw: &Path) -> Result<()> {
    run(Command::new("qemu-img").args(["convert", "-q", "-O", "raw"]).arg(image).arg(raw), "qemu-img convert -O raw")?;
    Ok(())
}

/// Whether `path` is in the file system `device` (`debugfs stat` names its inode, or says it is not found).
pub fn exists(device: &str, path: &str) -> Result<bool> {
    let out = run(Command::new("debugfs").arg("-R").arg(format!("stat {path}")).arg(device), "debugfs stat")?;
    Ok(String::from_utf8_lossy(&out.stdout).contains("Inode:"))
}

/// One entry of a directory: its name and size in bytes (none for a directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub size: Option<u64>,
}

/// The entries of `dir` in the file system `device` (`root_device`'s; `debugfs -R "ls -p DIR"`: one
/// `/INODE/MODE/UID/GID/NAME/SIZE/` a line, a format made for machines).
pub fn list(device: &str, dir: &str) -> Result<Vec<Entry>> {
    let out = run(Command::new("debugfs").arg("-R").arg(format!("ls -p {dir}")).arg(device), "debugfs ls -p")?;
    // debugfs exits 0 even when the directory is missing; it then prints nothing on stdout.
    let stdout = String::from_utf8_lossy(&out.stdout);
    if stdout.trim().is_empty() {
        bail!("debugfs listed nothing in {dir}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    parse_listing(&stdout)
}

fn parse_listing(text: &str) -> Result<Vec<Entry>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.trim().split('/').collect();
            // "", inode, mode, uid, gid, name, size, "" (a name cannot hold a slash).
            let [_, _, _, _, _, name, size, _] = fields[..] else {
                bail!("`debugfs ls -p` printed `{line}`, not /INODE/MODE/UID/GID/NAME/SIZE/");
            };
            let size = match size {
                "" => None,
                text => Some(text.parse().with_context(|| format!("the size in `{line}`"))?),
            };
            Ok(Entry { name: name.to_string(), size })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_gives_names_and_sizes() {
        // `debugfs -R "ls -p /etc"` on kiln's Debian 13 base image (debugfs 1.47.0), four lines of it.
        let text = "/34/040755/0/0/.//\n/2/040755/0/0/..//\n/36/100755/0/0/.resolv.conf.systemd-resolved.bak/25/\n/462/100644/0/0/hostname/0/\n";
        let entries = parse_listing(text).unwrap();
        assert_eq!(entries[0], Entry { name: ".".into(), size: None });
        assert_eq!(entries[2], Entry { name: ".resolv.conf.systemd-resolved.bak".into(), size: Some(25) });
        assert_eq!(entries[3], Entry { name: "hostname".into(), size: Some(0) });
        assert!(parse_listing("hostname 0\n").unwrap_err().to_string().contains("not /INODE"));
    }
}
