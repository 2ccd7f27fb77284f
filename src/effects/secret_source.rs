//! Looks up secret values: environment variables, and files under the profile's directory.

use super::profile_dir::ProfileDir;
use crate::model::{ProfileFiles, SecretRef};
use crate::secrets::SecretSource;

pub struct EnvAndFiles<'a> {
    pub dir: &'a ProfileDir,
}

impl SecretSource for EnvAndFiles<'_> {
    fn lookup(&self, reference: &SecretRef) -> Result<String, String> {
        match reference {
            SecretRef::Env(name) => match std::env::var(name) {
                Ok(value) => Ok(value),
                Err(std::env::VarError::NotPresent) => Err("it is not set".into()),
                Err(std::env::VarError::NotUnicode(_)) => Err("its value is not UTF-8".into()),
            },
            SecretRef::File(path) => {
                let bytes = self.dir.read(path).map_err(|e| e.to_string())?;
                String::from_utf8(bytes).map_err(|_| "the file is not UTF-8 text".to_string())
            }
        }
    }
}
