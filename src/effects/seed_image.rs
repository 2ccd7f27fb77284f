//! The NoCloud seed as a vfat disk image labelled `CIDATA`, built in memory and byte-for-byte reproducible.
//!
//! cloud-init finds the seed by filesystem label (`cidata`, case-insensitively) and reads `user-data`,
//! `meta-data` and `network-config` from its root. The image is FAT12 (FAT16 from 4 MiB up), formatted by the
//! `fatfs` crate with a fixed volume id and a fixed clock, so the same files always give the same bytes and a
//! seed's hash identifies its contents.

use std::io::{Cursor, Write as _};

use anyhow::{Context as _, bail};
use fatfs::{Date, DateTime, FileSystem, FormatVolumeOptions, FsOptions, Time, TimeProvider};

/// The image grows in steps of this size: small enough to keep seeds at 1 MiB, whole MiB so any tool that
/// rounds disk sizes (QEMU, cloud uploaders) sees exactly the size we wrote.
const STEP: usize = 1 << 20;

/// Far more than user-data can be on any provider (the largest limit is 256 KiB); a bound so a mistaken caller
/// gets an error instead of an image of arbitrary size. Also keeps the volume below FAT32's range.
const MAX_IMAGE: usize = 64 * STEP;

/// The label cloud-init looks for, space-padded to the 11 bytes FAT stores. Upper case, like `mkfs.vfat -n`:
/// DOS tools and Windows expect upper-case labels, and cloud-init's match ignores case.
const LABEL: [u8; 11] = *b"CIDATA     ";

/// `fatfs`'s default is a constant too (0x12345678), but reproducibility should not rest on a library default
/// that `mkfs.vfat` would fill from the clock.
const VOLUME_ID: u32 = 0x6b69_6c6e; // "kiln"

/// Every timestamp `fatfs` writes (created, modified, accessed) comes from here instead of the wall clock.
/// 1980-01-01 00:00 is the FAT epoch, so it reads as "no meaningful date" rather than a fake one.
#[derive(Debug)]
struct FixedTime;

const EPOCH: DateTime =
    DateTime { date: Date { year: 1980, month: 1, day: 1 }, time: Time { hour: 0, min: 0, sec: 0, millis: 0 } };

impl TimeProvider for FixedTime {
    fn get_current_date(&self) -> Date {
        EPOCH.date
    }

    fn get_current_date_time(&self) -> DateTime {
        EPOCH
    }
}

static FIXED_TIME: FixedTime = FixedTime;

/// Builds a `CIDATA` vfat image holding `files` (name, contents) in its root directory, in the given order.
///
/// Names are limited to ASCII letters, digits, `-`, `_` and `.` (not leading), up to 64 characters, and must be
/// distinct ignoring case (FAT is case-insensitive). Longer-than-8.3 names such as `network-config` are stored
/// as long file names with a generated 8.3 alias (`NETWOR~1`), as Linux's vfat driver expects.
pub fn cidata_image(files: &[(&str, &[u8])]) -> anyhow::Result<Vec<u8>> {
    check_names(files)?;
    // Saturating: the same large slice passed many times must give an error, not an overflow panic.
    let payload = files.iter().fold(0usize, |sum, (_, data)| sum.saturating_add(data.len()));
    if payload > MAX_IMAGE {
        bail!("seed files total {payload} bytes; a cidata image is limited to {} MiB", MAX_IMAGE / STEP);
    }
    // The image must hold at least the payload, so start at the first step that does; FAT overhead and cluster
    // slack then cost at most a step or two more.
    let mut size = payload.div_ceil(STEP).max(1) * STEP;
    while size <= MAX_IMAGE {
        if let Some(image) = try_build(files, size)? {
            return Ok(image);
        }
        size += STEP;
    }
    bail!("seed files ({payload} bytes) do not fit a {} MiB cidata image", MAX_IMAGE / STEP)
}

/// Formats an image of `size` bytes and writes the files. `Ok(None)` when the files do not fit, so the caller
/// can try a bigger size; errors are reserved for real failures.
fn try_build(files: &[(&str, &[u8])], size: usize) -> anyhow::Result<Option<Vec<u8>>> {
    let mut disk = Cursor::new(vec![0u8; size]);
    let format = FormatVolumeOptions::new().volume_label(LABEL).volume_id(VOLUME_ID);
    fatfs::format_volume(&mut disk, format).context("formatting the cidata image")?;
    disk.set_position(0);
    {
        let fs = FileSystem::new(&mut disk, FsOptions::new().time_provider(&FIXED_TIME))
            .context("opening the freshly formatted cidata image")?;
        // Decide "does it fit" from the free cluster count before writing, rather than by recognising fatfs's
        // out-of-space error text. Every file needs whole clusters; names live in the fixed FAT12/16 root
        // directory region, which needs no clusters.
        let stats = fs.stats().context("reading the cidata image's free space")?;
        let cluster = u64::from(stats.cluster_size());
        let needed: u64 = files.iter().map(|(_, data)| (data.len() as u64).div_ceil(cluster)).sum();
        if needed > u64::from(stats.free_clusters()) {
            return Ok(None);
        }
        for (name, data) in files {
            let mut file =
                fs.root_dir().create_file(name).with_context(|| format!("creating {name} in the cidata image"))?;
            file.write_all(data).with_context(|| format!("writing {name} into the cidata image"))?;
            // Flushing writes the file's size into its directory entry; dropping would too, but silently.
            file.flush().with_context(|| format!("writing {name} into the cidata image"))?;
        }
        // Unmount explicitly: dropping would also clear the dirty flag, but would swallow any error.
        fs.unmount().context("finishing the cidata image")?;
    }
    Ok(Some(disk.into_inner()))
}

/// Rejects names that are not plain files in the root, that FAT would treat as the same file, or that need
/// anything beyond ASCII (whose FAT encoding depends on code pages).
fn check_names(files: &[(&str, &[u8])]) -> anyhow::Result<()> {
    let mut seen: Vec<String> = Vec::with_capacity(files.len());
    for (name, _) in files {
        let valid_chars = name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if name.is_empty() || name.len() > 64 || name.starts_with('.') || !valid_chars {
            bail!(
                "{name:?} is not a valid seed file name (1 to 64 ASCII letters, digits, '-', '_' or '.', not \
                 starting with '.')"
            );
        }
        let folded = name.to_ascii_lowercase();
        if seen.contains(&folded) {
            bail!("{name:?} appears twice in the seed (FAT file names ignore case)");
        }
        seen.push(folded);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    const USER_DATA: &[u8] = b"#cloud-config\nhostname: web-1\n";
    const META_DATA: &[u8] = b"instance-id: \"kiln-0123456789abcdef\"\nlocal-hostname: \"web-1\"\n";
    const NETWORK: &[u8] = b"version: 2\nethernets:\n  primary:\n    match:\n      name: \"en*\"\n    dhcp4: true\n";

    fn seed_files() -> Vec<(&'static str, &'static [u8])> {
        vec![("user-data", USER_DATA), ("meta-data", META_DATA), ("network-config", NETWORK)]
    }

    struct Entry {
        long: String,
        short: String,
        data: Vec<u8>,
    }

    /// Reads the root directory back with fatfs: (volume label from the root directory entry, boot sector
    /// label, entries).
    fn read_back(image: &[u8]) -> (Option<String>, String, Vec<Entry>) {
        let mut cursor = Cursor::new(image.to_vec());
        let fs = FileSystem::new(&mut cursor, FsOptions::new()).expect("image mounts");
        let dir_label = fs.read_volume_label_from_root_dir().expect("root dir readable");
        let bpb_label = fs.volume_label();
        let mut entries = Vec::new();
        for entry in fs.root_dir().iter() {
            let entry = entry.expect("directory entry");
            let mut data = Vec::new();
            entry.to_file().read_to_end(&mut data).expect("file readable");
            entries.push(Entry { long: entry.file_name(), short: entry.short_file_name(), data });
        }
        (dir_label, bpb_label, entries)
    }

    #[test]
    fn same_files_give_the_same_bytes() {
        let a = cidata_image(&seed_files()).expect("builds");
        let b = cidata_image(&seed_files()).expect("builds");
        assert_eq!(a, b);
        assert_eq!(a.len(), STEP, "a small seed is 1 MiB");
    }

    #[test]
    fn different_files_give_different_bytes() {
        let a = cidata_image(&seed_files()).expect("builds");
        let mut other = seed_files();
        other[0].1 = b"#cloud-config\nhostname: web-2\n";
        assert_ne!(a, cidata_image(&other).expect("builds"));
    }

    #[test]
    fn files_read_back_with_long_names_and_the_cidata_label() {
        let image = cidata_image(&seed_files()).expect("builds");
        let (dir_label, bpb_label, entries) = read_back(&image);
        // blkid reads the root-directory label first and the boot sector's as a fallback: both must say CIDATA.
        assert_eq!(dir_label.as_deref(), Some("CIDATA"));
        assert_eq!(bpb_label, "CIDATA");
        let names: Vec<&str> = entries.iter().map(|e| e.long.as_str()).collect();
        assert_eq!(names, ["user-data", "meta-data", "network-config"]);
        for (entry, (name, data)) in entries.iter().zip(seed_files()) {
            assert_eq!(entry.data, data, "{name}");
            // An 8.3 alias that differs from the long name proves a long-file-name entry is what carries it.
            assert_ne!(entry.short, entry.long, "{name} has an LFN entry");
            assert!(entry.short.contains('~'), "{name}: generated alias {}", entry.short);
        }
    }

    /// Long file name slots are directory entries with attribute byte 0x0F; counted in the raw root directory so
    /// the test does not rely on fatfs reading back what fatfs wrote.
    #[test]
    fn raw_root_directory_has_lfn_slots_and_fixed_metadata() {
        let image = cidata_image(&seed_files()).expect("builds");
        let u16_at = |offset: usize| u16::from_le_bytes([image[offset], image[offset + 1]]) as usize;
        let bytes_per_sector = u16_at(11);
        let reserved = u16_at(14);
        let fats = image[16] as usize;
        let root_entries = u16_at(17);
        let sectors_per_fat = u16_at(22);
        assert_eq!(&image[43..54], b"CIDATA     ", "boot sector label");
        assert_eq!(&image[39..43], &VOLUME_ID.to_le_bytes(), "volume id");
        assert_eq!(&image[54..62], b"FAT12   ");
        let root = (reserved + fats * sectors_per_fat) * bytes_per_sector;
        let slots: Vec<&[u8]> = image[root..root + root_entries * 32].chunks(32).take_while(|e| e[0] != 0).collect();
        let lfn = slots.iter().filter(|e| e[11] == 0x0f).count();
        // user-data and meta-data need 1 slot each (up to 13 UTF-16 units), network-config 2 (14 characters).
        assert_eq!(lfn, 4);
        let files: Vec<&&[u8]> = slots.iter().filter(|e| e[11] != 0x0f && e[11] & 0x08 == 0).collect();
        assert_eq!(files.len(), 3);
        for entry in files {
            // Creation time/date, access date, modification time/date: all the FAT epoch, 1980-01-01 00:00.
            assert_eq!(&entry[13..20], &[0, 0, 0, 0x21, 0, 0x21, 0], "created/accessed");
            assert_eq!(&entry[22..26], &[0, 0, 0x21, 0], "modified");
        }
    }

    #[test]
    fn grows_in_whole_mebibytes_when_the_files_need_it() {
        let big = vec![b'x'; 3 * STEP / 2];
        let image = cidata_image(&[("user-data", &big), ("meta-data", META_DATA)]).expect("builds");
        assert_eq!(image.len(), 2 * STEP);
        let exact = vec![b'y'; STEP];
        let image = cidata_image(&[("user-data", &exact)]).expect("builds");
        assert_eq!(image.len(), 2 * STEP, "1 MiB of data plus FAT overhead needs the next step");
        let (_, _, entries) = read_back(&image);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].data, exact);
    }

    #[test]
    fn empty_files_and_no_files_work() {
        let image = cidata_image(&[("meta-data", b""), ("user-data", b"")]).expect("builds");
        let (_, _, entries) = read_back(&image);
        assert!(entries.iter().all(|e| e.data.is_empty()));
        assert_eq!(read_back(&cidata_image(&[]).expect("builds")).2.len(), 0);
    }

    #[test]
    fn bad_names_are_errors_not_panics() {
        for name in ["", "a/b", "../x", ".hidden", "sp ace", "tab\t", "ü", "x:y", &"n".repeat(65)] {
            let err = cidata_image(&[(name, b"x")]).expect_err(name);
            assert!(err.to_string().contains("not a valid seed file name"), "{err}");
        }
        let err = cidata_image(&[("user-data", b"a"), ("USER-DATA", b"b")]).expect_err("duplicate");
        assert!(err.to_string().contains("appears twice"), "{err}");
    }

    #[test]
    fn oversized_payload_is_an_error() {
        let huge = vec![0u8; MAX_IMAGE + 1];
        assert!(cidata_image(&[("user-data", &huge)]).is_err());
    }
}
