//! The profile's directory on disk: reads the profile and the files it names, refusing any path that
//! leads outside the directory (after resolving `..` and symlinks).

use std::path::{Path, PathBuf};

use super::fs::read_limited;
use crate::model::{FileError, ProfileFiles};
use crate::profile::MAX_PROFILE_BYTES;

pub struct ProfileDir {
    root: PathBuf,
    /// Every file read through this directory, so commands can refuse to write over one.
    read: std::cell::RefCell<Vec<PathBuf>>,
}

impl ProfileDir {
    /// The directory containing `profile_path`.
    pub fn of(profile_path: &Path) -> std::io::Result<ProfileDir> {
        let parent = match profile_path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        Ok(ProfileDir { root: parent.canonicalize()?, read: std::cell::RefCell::new(Vec::new()) })
    }

    /// The files read so far (resolved paths).
    pub fn files_read(&self) -> Vec<PathBuf> {
        self.read.borrow().clone()
    }

    /// Resolves a relative path and checks that it stays inside the directory.
    pub fn resolve(&self, relative: &str) -> Result<PathBuf, FileError> {
        let joined = self.root.join(relative);
        let resolved = joined.canonicalize().map_err(|e| FileError::Unreadable(describe_io(&e)))?;
        if !resolved.starts_with(&self.root) {
            return Err(FileError::Escapes);
        }
        Ok(resolved)
    }
}

impl ProfileFiles for ProfileDir {
    fn read(&self, relative: &str) -> Result<Vec<u8>, FileError> {
        let path = self.resolve(relative)?;
        self.read.borrow_mut().push(path.clone());
        match read_limited(&path, MAX_PROFILE_BYTES) {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => Err(FileError::Unreadable(format!("it is larger than {MAX_PROFILE_BYTES} bytes"))),
            Err(e) => Err(FileError::Unreadable(describe_io(&e))),
        }
    }
}

/// An I/O error in words, without the OS error number noise.
pub fn describe_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        std::io::ErrorKind::IsADirectory => "it is a directory".into(),
        // read_limited's refusals of what is not a regular file say why in their own words.
        std::io::ErrorKind::InvalidInput => e.to_string(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_symlinks_out_of_the_directory() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "x").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("profile.yaml"), "").unwrap();
        std::fs::write(dir.path().join("key.pub"), "k").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("link")).unwrap();
        let profile_dir = ProfileDir::of(&dir.path().join("profile.yaml")).unwrap();
        assert_eq!(profile_dir.read("key.pub").unwrap(), b"k");
        assert_eq!(profile_dir.read("link").unwrap_err(), FileError::Escapes);
        assert_eq!(profile_dir.read("missing").unwrap_err(), FileError::Unreadable("no such file".into()));
    }
}
