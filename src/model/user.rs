//! The deploy user: a POSIX portable name and SSH public keys parsed (and judged) by the ssh-key crate.

use ssh_key::public::KeyData;

use super::files::read_profile_file;
use super::{ProfileFiles, User, error};
use crate::catalog::Code;
use crate::diag::{Diagnostic, Report};
use crate::profile::v1::{self, SshKeySource};

/// Names that belong to the system or to packages kiln installs; reusing them breaks the host.
const RESERVED: &[&str] = &[
    "root",
    "daemon",
    "bin",
    "sys",
    "sync",
    "games",
    "man",
    "lp",
    "mail",
    "news",
    "uucp",
    "proxy",
    "www-data",
    "backup",
    "list",
    "irc",
    "nobody",
    "systemd-network",
    "systemd-resolve",
    "messagebus",
    "sshd",
    "docker",
    "_apt",
    "tss",
];

const MIN_RSA_BITS: usize = 2048;

pub(super) fn validate(raw: &v1::User, files: &dyn ProfileFiles, report: &mut Report) -> Option<User> {
    let before = report.count(crate::diag::Severity::Error);
    if let Err(why) = check_user_name(&raw.name) {
        error(report, Code::InvalidUserName, "$.user.name", format!("`{}` is not a usable user name: {why}", raw.name));
    }
    if !raw.shell.starts_with('/') || raw.shell.contains(char::is_whitespace) {
        error(report, Code::BadValue, "$.user.shell", format!("`{}` is not an absolute path to a shell", raw.shell));
    }
    let mut keys: Vec<String> = Vec::new();
    for (i, source) in raw.ssh_keys.iter().enumerate() {
        let path = format!("$.user.ssh_keys[{i}]");
        let lines: Vec<(String, String)> = match source {
            SshKeySource::Inline(line) => vec![(line.clone(), path.clone())],
            SshKeySource::File(file) => {
                let file_path = format!("{path}.file");
                let Some(text) = read_profile_file(&file.file, &file_path, files, report) else { continue };
                let found: Vec<(String, String)> = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(|l| (l.to_string(), file_path.clone()))
                    .collect();
                if found.is_empty() {
                    error(
                        report,
                        Code::InvalidSshKey,
                        &file_path,
                        format!("`{}` contains no SSH public key", file.file),
                    );
                }
                found
            }
        };
        for (line, at) in lines {
            match parse_key(&line) {
                Ok(normalized) if keys.contains(&normalized) => report.push(Diagnostic::warning(
                    Code::DuplicateSshKey,
                    at,
                    "this SSH key is already listed; the duplicate is ignored",
                )),
                Ok(normalized) => keys.push(normalized),
                Err((code, why)) => error(report, code, at, why),
            }
        }
    }
    (report.count(crate::diag::Severity::Error) == before).then(|| User {
        name: raw.name.clone(),
        ssh_keys: keys,
        sudo: raw.sudo,
        shell: raw.shell.clone(),
    })
}

/// POSIX portable user name, as `useradd` on Debian accepts without `--badname`.
pub fn check_user_name(name: &str) -> Result<(), &'static str> {
    let mut chars = name.chars();
    let Some(first) = chars.next() else { return Err("it is empty") };
    if name.len() > 32 {
        return Err("it is longer than 32 characters");
    }
    if !(first.is_ascii_lowercase() || first == '_') {
        return Err("it must start with a lowercase letter or `_`");
    }
    if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-') {
        return Err("only lowercase letters, digits, `_` and `-` are allowed");
    }
    if RESERVED.contains(&name) {
        return Err("it is reserved for the system");
    }
    Ok(())
}

/// Parses one OpenSSH public key line; refuses DSA and short RSA keys.
fn parse_key(line: &str) -> Result<String, (Code, String)> {
    let key = ssh_key::PublicKey::from_openssh(line).map_err(|e| {
        (Code::InvalidSshKey, format!("not an OpenSSH public key ({e}); expected `ssh-ed25519 AAAA… comment`"))
    })?;
    match key.key_data() {
        KeyData::Dsa(_) => return Err((Code::WeakSshKey, "DSA keys are refused by OpenSSH 9 and by kiln".into())),
        KeyData::Rsa(rsa) => {
            let bits = rsa_bits(rsa.n.as_positive_bytes().unwrap_or_default());
            if bits < MIN_RSA_BITS {
                return Err((
                    Code::WeakSshKey,
                    format!("this RSA key has {bits} bits; at least {MIN_RSA_BITS} are required"),
                ));
            }
        }
        KeyData::Other(_) => return Err((Code::InvalidSshKey, format!("unsupported key type `{}`", key.algorithm()))),
        _ => {}
    }
    key.to_openssh().map_err(|e| (Code::InvalidSshKey, format!("the key does not re-encode: {e}")))
}

fn rsa_bits(modulus: &[u8]) -> usize {
    let trimmed: &[u8] = match modulus.iter().position(|b| *b != 0) {
        Some(i) => &modulus[i..],
        None => return 0,
    };
    (trimmed.len() - 1) * 8 + (8 - trimmed[0].leading_zeros() as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBjmQyHz2Gp99snHAPrr7nKKxWIDmbVqA5bweinOyGWt deploy@example";

    #[test]
    fn user_names() {
        assert!(check_user_name("deploy").is_ok() && check_user_name("_ci-bot2").is_ok());
        for bad in ["", "Deploy", "1deploy", "de ploy", "root", "docker", "a;b", &"a".repeat(33)] {
            assert!(check_user_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_parse_and_normalize() {
        assert_eq!(parse_key(ED25519).unwrap(), ED25519);
        assert_eq!(parse_key("ssh-ed25519 AAAAnotbase64").unwrap_err().0, Code::InvalidSshKey);
        assert_eq!(parse_key("hello").unwrap_err().0, Code::InvalidSshKey);
    }

    #[test]
    fn rsa_bit_count() {
        assert_eq!(rsa_bits(&[0x00, 0x80, 0, 0]), 24);
        assert_eq!(rsa_bits(&[0x01]), 1);
        assert_eq!(rsa_bits(&[]), 0);
    }
}
