//! Atomic file writes with an explicit mode: temp file in the same directory, chmod, fsync, rename.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result};

/// Removes the file at `path` if there is one; any failure but its absence is an error.
pub fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Writes `bytes` to `path` so that readers see either the old file or the complete new one, never a
/// partial write, and the file never exists with looser permissions than `mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let (temp, dir) = staged(path, bytes, mode)?;
    temp.persist(path).with_context(|| format!("renaming the temporary file to {}", path.display()))?;
    sync_dir(dir);
    Ok(())
}

/// `write_atomic` for a file that must not exist yet: the complete file is linked into place, which
/// fails (leaving whatever is there untouched) if `path` exists, even if it appeared a moment ago.
pub fn write_new_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let (temp, dir) = staged(path, bytes, mode)?;
    temp.persist_noclobber(path).with_context(|| format!("writing {} (it exists?)", path.display()))?;
    sync_dir(dir);
    Ok(())
}

/// The complete file in a temporary file beside `path`, with exactly `mode`, synced; and its directory.
fn staged<'a>(path: &'a Path, bytes: &[u8], mode: u32) -> Result<(tempfile::NamedTempFile, &'a Path)> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().with_context(|| format!("{} is not a file path", path.display()))?;
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".partial")
        .permissions(fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    // The umask may have narrowed the mode on creation; set it exactly.
    temp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    temp.write_all(bytes).with_context(|| format!("writing {}", path.display()))?;
    temp.as_file().sync_all().with_context(|| format!("syncing {}", path.display()))?;
    Ok((temp, dir))
}

/// Makes a rename in `dir` durable (best effort: some file systems refuse to sync a directory).
fn sync_dir(dir: &Path) {
    if let Ok(dir_handle) = File::open(dir) {
        let _ = dir_handle.sync_all();
    }
}

/// Reads at most `limit` bytes of a regular file; `Ok(None)` when the file is larger (the caller
/// reports it). Anything else is refused before it is opened: opening a FIFO blocks until a writer
/// comes, and a device can be endless.
pub fn read_limited(path: &Path, limit: usize) -> std::io::Result<Option<Vec<u8>>> {
    let kind = std::fs::metadata(path)?.file_type();
    if !kind.is_file() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, not_regular(kind)));
    }
    let file = File::open(path)?;
    let mut bytes = Vec::new();
    file.take(limit as u64 + 1).read_to_end(&mut bytes)?;
    Ok((bytes.len() <= limit).then_some(bytes))
}

fn not_regular(kind: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_dir() {
        "it is a directory"
    } else if kind.is_fifo() {
        "it is a FIFO, not a regular file"
    } else if kind.is_char_device() || kind.is_block_device() {
        "it is a device, not a regular file"
    } else {
        "it is not a regular file"
    }
}

/// Refuses to write `output` when it is one of `inputs` (the same file, through any name: a symlink
/// or hard link too), so no command overwrites the profile or a file it reads.
pub fn refuse_input_as_output(output: &Path, inputs: &[std::path::PathBuf]) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let Ok(out) = std::fs::metadata(output) else { return Ok(()) };
    for input in inputs {
        if let Ok(meta) = std::fs::metadata(input)
            && meta.dev() == out.dev()
            && meta.ino() == out.ino()
        {
            return Err(format!(
                "{} is the same file as {}, which this command reads: it would be overwritten",
                output.display(),
                input.display()
            ));
        }
    }
    Ok(())
}

/// SHA-256 of a file's contents, in lowercase hex, read in 1 MiB pieces (images are gigabytes).
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read as _;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(crate::encoding::hex(&hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_if_present_ignores_only_absence() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("overlay.qcow2");
        fs::write(&file, b"x").unwrap();
        remove_if_present(&file).unwrap();
        assert!(!file.exists());
        remove_if_present(&file).unwrap();
        // Not a file kiln may remove this way: an error, not a silent success.
        let err = remove_if_present(dir.path()).unwrap_err();
        assert!(format!("{err:#}").contains("removing"), "{err:#}");
        assert!(dir.path().exists());
    }

    #[test]
    fn writes_with_exact_mode_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("user-data");
        write_atomic(&path, b"first", 0o600).unwrap();
        write_atomic(&path, b"second", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file is left behind");
    }

    #[test]
    fn limited_reads_report_oversize() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        fs::write(&path, vec![b'a'; 11]).unwrap();
        assert!(read_limited(&path, 10).unwrap().is_none());
        assert_eq!(read_limited(&path, 11).unwrap().unwrap().len(), 11);
    }

    #[test]
    fn only_regular_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        // Would block forever if it were opened.
        assert!(read_limited(&fifo, 10).unwrap_err().to_string().contains("FIFO"));
        assert!(read_limited(dir.path(), 10).unwrap_err().to_string().contains("directory"));
        assert!(read_limited(Path::new("/dev/zero"), 10).unwrap_err().to_string().contains("device"));
    }

    #[test]
    fn an_input_is_never_an_output() {
        let dir = tempfile::tempdir().unwrap();
        let profile = dir.path().join("p.yaml");
        fs::write(&profile, "x").unwrap();
        let link = dir.path().join("link.yaml");
        std::os::unix::fs::symlink(&profile, &link).unwrap();
        let inputs = vec![profile.clone()];
        assert!(refuse_input_as_output(&profile, &inputs).is_err());
        assert!(refuse_input_as_output(&link, &inputs).is_err());
        assert!(refuse_input_as_output(&dir.path().join("new"), &inputs).is_ok());
    }
}
