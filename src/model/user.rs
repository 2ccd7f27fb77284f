//! The deploy user: a POSIX portable name and SSH public keys parsed (and judged) by the ssh-key crate.

use ssh_key::public::KeyData;

use super::Release;
use super::files::read_profile_file;
use super::{ProfileFiles, User, error};
use crate::catalog::Code;
use crate::consumers::debian;
use crate::consumers::sshd::{check_key_options, split_key_options};
use crate::consumers::useradd::check_user_name;
use crate::diag::{Diagnostic, Report};
use crate::profile::v1::{self, SshKeySource};

const MIN_RSA_BITS: usize = 2048;

/// `packages` is the profile's extra package list: a shell may come from one of them.
pub(super) fn validate(
    raw: &v1::User,
    release: Release,
    packages: &[String],
    files: &dyn ProfileFiles,
    report: &mut Report,
) -> Option<User> {
    let before = report.count(crate::diag::Severity::Error);
    let base = debian::base_system(release);
    if let Err(why) = check_user_name(&raw.name) {
        error(report, Code::InvalidUserName, "$.user.name", format!("`{}` is not a usable user name: {why}", raw.name));
    } else if base.account_exists(&raw.name) {
        report.push(
            Diagnostic::error(
                Code::InvalidUserName,
                "$.user.name",
                format!(
                    "{} base system already has a user or group `{}`: useradd refuses to create it (cloud-init then creates no deploy user)",
                    base.whose, raw.name
                ),
            )
            .with_help("pick a name of your own, e.g. `deploy`"),
        );
    }
    check_shell(&raw.shell, base, packages, report);
    let mut keys: Vec<String> = Vec::new();
    // Each key kept, with its authorized_keys options (empty for none) and where it was listed.
    let mut seen: Vec<(KeyData, String, String)> = Vec::new();
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
                // The same key is the same key data, whatever its comment and options say.
                Ok(parsed) => match seen.iter().position(|(k, _, _)| *k == parsed.key) {
                    None => {
                        seen.push((parsed.key, parsed.options, at));
                        keys.push(parsed.line);
                    }
                    // sshd tries every line that holds the key: a second line with other options (or none)
                    // lets in what the first line's `from=` or `restrict` was meant to keep out.
                    Some(j) if seen[j].1 != parsed.options => error(
                        report,
                        Code::DuplicateSshKey,
                        at,
                        format!(
                            "this SSH key is already listed ({}) with other authorized_keys options: sshd would accept the key under either line's options, so neither restriction holds",
                            seen[j].2
                        ),
                    ),
                    Some(j) => report.push(Diagnostic::warning(
                        Code::DuplicateSshKey,
                        at,
                        format!("this SSH key is already listed ({}); the duplicate is ignored", seen[j].2),
                    )),
                },
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

/// The login shell must be installed when the deploy user logs in: the base system's, or one that a
/// listed package installs. kiln cannot know every package's files: with packages it does not know,
/// an unknown shell is a warning.
fn check_shell(shell: &str, base: &'static debian::BaseSystem, packages: &[String], report: &mut Report) {
    const AT: &str = "$.user.shell";
    if debian::NO_LOGIN_SHELLS.contains(&shell) {
        report.push(
            Diagnostic::error(
                Code::Lockout,
                AT,
                format!("`{shell}` refuses logins: Kamal could not run anything as this user"),
            )
            .with_help("use `/bin/bash`"),
        );
        return;
    }
    if !shell.starts_with('/') || shell.contains(char::is_whitespace) || shell.contains(':') {
        error(report, Code::BadValue, AT, format!("`{shell}` is not an absolute path to a shell"));
        return;
    }
    let names: Vec<&str> = packages.iter().map(|p| p.split('=').next().unwrap_or(p)).collect();
    let packaged =
        debian::PACKAGED_SHELLS.iter().any(|(package, shells)| names.contains(package) && shells.contains(&shell));
    if base.shells().contains(shell) || packaged {
        return;
    }
    let unknown: Vec<&str> =
        names.iter().copied().filter(|n| !debian::PACKAGED_SHELLS.iter().any(|(p, _)| p == n)).collect();
    let known: Vec<String> = base.shells().iter().map(|s| format!("`{s}`")).collect();
    if unknown.is_empty() {
        report.push(
            Diagnostic::error(
                Code::BadValue,
                AT,
                format!(
                    "`{shell}` is not installed: {} base system has {}, and no listed package brings it",
                    base.whose,
                    known.join(", ")
                ),
            )
            .with_help("add the package that installs it to `packages` (e.g. `zsh`), or use `/bin/bash`"),
        );
    } else {
        report.push(Diagnostic::warning(
            Code::BadValue,
            AT,
            format!(
                "`{shell}` is not in {} base system; kiln cannot tell whether {} installs it (the deploy user cannot log in without it)",
                base.whose,
                unknown.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
            ),
        ));
    }
}

/// Parses one authorized_keys line as sshd does (`auth_check_authkey_line`): a key, or options and a
/// key. Refuses DSA and short RSA keys, and options sshd would not take.
/// A key line as kiln writes it to authorized_keys, and what it is made of.
#[derive(Debug, PartialEq)]
struct ParsedKey {
    /// Normalized as OpenSSH writes it: options, then `TYPE BASE64 COMMENT`.
    line: String,
    key: KeyData,
    /// The authorized_keys options in front of the key, empty for none.
    options: String,
}

fn parse_key(line: &str) -> Result<ParsedKey, (Code, String)> {
    let not_a_key = |e: ssh_key::Error| {
        (Code::InvalidSshKey, format!("not an OpenSSH public key ({e}); expected `ssh-ed25519 AAAA… comment`"))
    };
    let (options, key) = match ssh_key::PublicKey::from_openssh(line) {
        Ok(key) => (None, key),
        Err(e) => {
            let Some((options, rest)) = split_key_options(line) else { return Err(not_a_key(e)) };
            // Only a line whose second part is a key has options in front: otherwise report the key.
            let key = ssh_key::PublicKey::from_openssh(rest).map_err(|_| not_a_key(e))?;
            check_key_options(options)
                .map_err(|why| (Code::InvalidSshKey, format!("authorized_keys options: {why}")))?;
            (Some(options), key)
        }
    };
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
    let normalized = key.to_openssh().map_err(|e| (Code::InvalidSshKey, format!("the key does not re-encode: {e}")))?;
    let line = match options {
        Some(options) => format!("{options} {normalized}"),
        None => normalized,
    };
    Ok(ParsedKey { line, key: key.key_data().clone(), options: options.unwrap_or_default().to_string() })
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
        for bad in ["", "Deploy", "1deploy", "de ploy", "a;b", &"a".repeat(33)] {
            assert!(check_user_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_parse_and_normalize() {
        assert_eq!(parse_key(ED25519).unwrap().line, ED25519);
        assert_eq!(parse_key(ED25519).unwrap().options, "");
        assert_eq!(parse_key("ssh-ed25519 AAAAnotbase64").unwrap_err().0, Code::InvalidSshKey);
        assert_eq!(parse_key("hello").unwrap_err().0, Code::InvalidSshKey);
        let with_options = format!("from=\"10.0.0.0/8\",no-pty {ED25519}");
        assert_eq!(parse_key(&with_options).unwrap().line, with_options);
        let bad_option = format!("no-such-option {ED25519}");
        assert!(parse_key(&bad_option).unwrap_err().1.contains("does not know the key option"));
    }

    #[test]
    fn rsa_bit_count() {
        assert_eq!(rsa_bits(&[0x00, 0x80, 0, 0]), 24);
        assert_eq!(rsa_bits(&[0x01]), 1);
        assert_eq!(rsa_bits(&[]), 0);
    }
}
