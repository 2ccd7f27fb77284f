//! Extra packages and files, file-body templates, apt repositories, and reading files under the
//! profile's directory.

use std::collections::BTreeMap;

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

use super::{Apt, FileError, Host, ProfileFiles, Repository, RepositoryKey, User, error};
use crate::catalog::Code;
use crate::diag::{Diagnostic, Report};
use crate::profile::v1::{self, RawProfile};

/// Paths kiln writes itself; a profile file there would fight with it.
pub const RESERVED_PREFIXES: &[&str] =
    &["/etc/kiln/", "/usr/local/lib/kiln/", "/etc/apt/keyrings/", "/etc/apt/sources.list.d/"];
pub const RESERVED_FILES: &[&str] = &[
    "/etc/docker/daemon.json",
    "/etc/cloudflared/config.yml",
    "/etc/cloudflared/token",
    "/etc/systemd/system/cloudflared.service",
    "/etc/ssh/sshd_config.d/10-kiln.conf",
    "/etc/apt/sources.list",
];

const DOCKER_KEY: &[u8] = include_bytes!("../../assets/keys/docker.asc");
const TAILSCALE_KEY: &[u8] = include_bytes!("../../assets/keys/tailscale.asc");
const CLOUDFLARE_KEY: &[u8] = include_bytes!("../../assets/keys/cloudflare.asc");
pub const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// A file the host must have, with its body already rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedFile {
    pub path: String,
    pub content: String,
    pub mode: u32,
    pub owner: String,
    pub group: String,
}

/// A relative path that stays inside the profile's directory (checked lexically; the loader also
/// refuses symlinks that lead out).
pub fn check_relative_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("the path is empty".into());
    }
    if path.starts_with('/') || path.starts_with('~') || path.contains('\\') || path.contains('\0') {
        return Err(format!("`{path}` must be relative to the profile's directory"));
    }
    let mut depth: i32 = 0;
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => depth -= 1,
            _ => depth += 1,
        }
        if depth < 0 {
            return Err(format!("`{path}` leaves the profile's directory"));
        }
    }
    Ok(())
}

/// Reads a UTF-8 file named by the profile; reports (at `path`) why it cannot.
pub(super) fn read_profile_file(
    relative: &str,
    path: &str,
    files: &dyn ProfileFiles,
    report: &mut Report,
) -> Option<String> {
    read_profile_bytes(relative, path, files, report).and_then(|bytes| match String::from_utf8(bytes) {
        Ok(text) => Some(text),
        Err(_) => {
            error(report, Code::InputNotText, path, format!("`{relative}` is not UTF-8 text"));
            None
        }
    })
}

/// Reads a file named by the profile: refused lexically first (no I/O for `../x` or `/etc/x`), then by
/// the `ProfileFiles` implementation (symlinks).
fn read_profile_bytes(relative: &str, path: &str, files: &dyn ProfileFiles, report: &mut Report) -> Option<Vec<u8>> {
    if let Err(why) = check_relative_path(relative) {
        error(report, Code::FileOutsideProfileDir, path, why);
        return None;
    }
    match files.read(relative) {
        Ok(bytes) => Some(bytes),
        Err(why) => {
            let code = match why {
                FileError::Escapes => Code::FileOutsideProfileDir,
                FileError::Unreadable(_) => Code::FileUnreadable,
            };
            error(report, code, path, format!("cannot read `{relative}`: {why}"));
            None
        }
    }
}

pub(super) fn packages(raw: &[String], report: &mut Report) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, name) in raw.iter().enumerate() {
        let path = format!("$.packages[{i}]");
        let (package, version) = name.split_once('=').unwrap_or((name, ""));
        let package_ok = package.len() >= 2
            && package.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && package.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.'));
        let version_ok = !name.contains('=')
            || (!version.is_empty()
                && version.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'~' | b':' | b'-')));
        if !package_ok || !version_ok {
            error(
                report,
                Code::BadValue,
                path,
                format!("`{name}` is not a Debian package name (optionally `name=version`)"),
            );
        } else if out.contains(name) {
            report.push(Diagnostic::warning(Code::DuplicateRule, path, format!("`{name}` is listed twice")));
        } else {
            out.push(name.clone());
        }
    }
    out
}

#[derive(Serialize)]
struct TemplateHost<'a> {
    hostname: &'a str,
    timezone: &'a str,
    locale: &'a str,
}

#[derive(Serialize)]
struct TemplateUser<'a> {
    name: &'a str,
}

/// What file templates see: `host`, `user` and `vars`. Secrets are deliberately absent.
pub fn template_context(host: &Host, user: &User, vars: &BTreeMap<String, String>) -> minijinja::Value {
    minijinja::context! {
        host => minijinja::Value::from_serialize(TemplateHost { hostname: &host.hostname, timezone: &host.timezone, locale: &host.locale }),
        user => minijinja::Value::from_serialize(TemplateUser { name: &user.name }),
        vars => minijinja::Value::from_serialize(vars),
    }
}

pub(super) fn files(
    raw: &[v1::File],
    context: &minijinja::Value,
    files: &dyn ProfileFiles,
    report: &mut Report,
) -> Vec<ManagedFile> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    let mut out: Vec<ManagedFile> = Vec::new();
    for (i, file) in raw.iter().enumerate() {
        let path = format!("$.files[{i}]");
        if let Err(why) = check_target_path(&file.path) {
            error(report, Code::BadValue, format!("{path}.path"), why);
        } else if out.iter().any(|f| f.path == file.path) {
            error(report, Code::ContradictoryRule, format!("{path}.path"), format!("`{}` is written twice", file.path));
        }
        let mode = parse_mode(&file.mode);
        match mode {
            None => error(
                report,
                Code::BadValue,
                format!("{path}.mode"),
                format!("`{}` is not an octal mode like \"0644\"", file.mode),
            ),
            Some(m) if m & 0o002 != 0 => {
                report.push(Diagnostic::warning(Code::BadValue, format!("{path}.mode"), "this file is world-writable"))
            }
            _ => {}
        }
        let owner = file.owner.split_once(':').filter(|(u, g)| valid_owner_part(u) && valid_owner_part(g));
        if owner.is_none() {
            error(report, Code::BadValue, format!("{path}.owner"), format!("`{}` is not `user:group`", file.owner));
        }
        let body = match (&file.content, &file.source) {
            (Some(content), None) => Some((content.clone(), format!("{path}.content"))),
            (None, Some(source)) => read_profile_file(source, &format!("{path}.source"), files, report)
                .map(|t| (t, format!("{path}.source"))),
            _ => {
                error(report, Code::ContradictoryRule, &path, "give exactly one of `content` and `source`");
                None
            }
        };
        let Some((body, body_path)) = body else { continue };
        if let Some(kind) = secret_in_file(&body, file.source.is_some()) {
            report.push(
                Diagnostic::error(
                    Code::SecretInImage,
                    &body_path,
                    format!("this file holds what looks like a {kind}: profile files are baked into golden images and sent in user-data"),
                )
                .with_help("keep secrets out of `files`: reference them (`{env: NAME}` or `{file: PATH}`) where the profile takes secrets"),
            );
            continue;
        }
        let content = if file.template {
            match env.render_str(&body, context) {
                Ok(rendered) => rendered,
                Err(e) => {
                    let line = e.line().map(|l| format!(" (template line {l})")).unwrap_or_default();
                    error(
                        report,
                        Code::Template,
                        body_path,
                        format!("the template does not render{line}: {}", e.detail().unwrap_or(&e.kind().to_string())),
                    );
                    continue;
                }
            }
        } else {
            body
        };
        if let (Some(mode), Some((user, group))) = (mode, owner) {
            out.push(ManagedFile {
                path: file.path.clone(),
                content,
                mode,
                owner: user.to_string(),
                group: group.to_string(),
            });
        }
    }
    out
}

/// A secret in a file body. Inline bodies are already scanned for tokens with the rest of the profile
/// (`literal-secret`), so only private keys are looked for there; files read from disk get both scans.
fn secret_in_file(body: &str, from_disk: bool) -> Option<&'static str> {
    let private_key = body.lines().any(|l| l.starts_with("-----BEGIN ") && l.trim_end().ends_with("PRIVATE KEY-----"));
    if private_key {
        return Some("private key");
    }
    if from_disk { crate::profile::literal_secrets::looks_like_secret(body) } else { None }
}

fn check_target_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') || path.ends_with('/') || path.contains("//") || path.chars().any(|c| c.is_control()) {
        return Err(format!("`{path}` is not an absolute file path"));
    }
    if path.split('/').any(|p| p == ".." || p == ".") {
        return Err(format!("`{path}` contains `.` or `..`"));
    }
    if RESERVED_FILES.contains(&path) || RESERVED_PREFIXES.iter().any(|p| path.starts_with(p)) {
        return Err(format!("kiln writes `{path}` itself; configure it through the profile instead"));
    }
    Ok(())
}

fn valid_owner_part(name: &str) -> bool {
    super::user::check_user_name(name).is_ok()
        || matches!(name, "root" | "www-data" | "docker" | "daemon" | "nogroup" | "adm" | "sudo")
}

/// `"0644"`, `"644"`, `"1777"` → bits.
fn parse_mode(text: &str) -> Option<u32> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    ((3..=4).contains(&digits.len()) && digits.bytes().all(|b| (b'0'..=b'7').contains(&b)))
        .then(|| u32::from_str_radix(digits, 8).ok())
        .flatten()
}

pub(super) fn apt(raw: &RawProfile, files: &dyn ProfileFiles, report: &mut Report) -> Apt {
    let docker_ce = raw.docker.as_ref().is_some_and(|d| d.source == v1::DockerSource::DockerCe);
    let wanted = [
        ("docker", docker_ce, &raw.apt.docker),
        ("tailscale", raw.tailscale.is_some(), &raw.apt.tailscale),
        ("cloudflared", raw.cloudflared.is_some(), &raw.apt.cloudflared),
    ];
    for (name, used, source) in wanted {
        if source.is_some() && !used {
            report.push(Diagnostic::warning(
                Code::ContradictoryRule,
                format!("$.apt.{name}"),
                format!("a {name} repository is configured but nothing installs from it"),
            ));
        }
    }
    let mut repository = |name: &'static str, default: Repository, source: &Option<v1::AptSource>| -> Repository {
        let Some(source) = source else { return default };
        let path = format!("$.apt.{name}");
        if !(source.url.starts_with("http://") || source.url.starts_with("https://"))
            || source.url.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            error(report, Code::BadValue, format!("{path}.url"), format!("`{}` is not an http(s) URL", source.url));
        }
        let words_ok = |words: &[String]| {
            words.iter().all(|w| !w.is_empty() && !w.chars().any(|c| c.is_whitespace() || c.is_control()))
        };
        let suites = source.suites.clone().unwrap_or(default.suites);
        let components = source.components.clone().unwrap_or(default.components);
        if suites.is_empty() || !words_ok(&suites) || !words_ok(&components) {
            error(
                report,
                Code::BadValue,
                &path,
                "suites must be non-empty words and components words (`[]` for a flat repository)",
            );
        }
        let flat = suites.iter().any(|s| s.ends_with('/'));
        if flat && !components.is_empty() {
            error(
                report,
                Code::ContradictoryRule,
                format!("{path}.components"),
                "a flat repository (suite ending in `/`) takes no components",
            );
        }
        let key = match &source.key {
            None => default.key,
            Some(file) => match read_profile_bytes(&file.file, &format!("{path}.key.file"), files, report) {
                Some(bytes) => {
                    let armored = bytes.starts_with(b"-----BEGIN PGP PUBLIC KEY BLOCK-----");
                    RepositoryKey::Embedded { bytes, armored }
                }
                None => default.key,
            },
        };
        Repository { name, url: source.url.clone(), suites, components, key }
    };
    let embedded = |bytes: &[u8]| RepositoryKey::Embedded { bytes: bytes.to_vec(), armored: true };
    let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let defaults = [
        ("debian", "", vec!["bookworm", "bookworm-updates"], "main", RepositoryKey::System(DEBIAN_KEYRING)),
        ("docker", "https://download.docker.com/linux/debian", vec!["bookworm"], "stable", embedded(DOCKER_KEY)),
        ("tailscale", "https://pkgs.tailscale.com/stable/debian", vec!["bookworm"], "main", embedded(TAILSCALE_KEY)),
        ("cloudflared", "https://pkg.cloudflare.com/cloudflared", vec!["any"], "main", embedded(CLOUDFLARE_KEY)),
    ];
    let overrides = [&raw.apt.debian, &raw.apt.docker, &raw.apt.tailscale, &raw.apt.cloudflared];
    let used = [raw.apt.debian.is_some(), docker_ce, raw.tailscale.is_some(), raw.cloudflared.is_some()];
    // Every override is validated, used or not, so a typo in an unused one is still reported.
    let mut resolved =
        defaults.into_iter().zip(overrides).zip(used).map(|(((name, url, suites, component, key), source), used)| {
            let default =
                Repository { name, url: url.into(), suites: words(&suites), components: words(&[component]), key };
            let repo = if used || source.is_some() { Some(repository(name, default, source)) } else { None };
            repo.filter(|_| used)
        });
    let mut next = || resolved.next().flatten();
    Apt {
        debian: next(),
        docker: next(),
        tailscale: next(),
        cloudflared: next(),
        install_recommends: raw.apt.install_recommends,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A changed vendor key must be a deliberate, reviewed change: the bytes are pinned here and the
    /// fingerprints are checked with GnuPG in the integration tests.
    #[test]
    fn embedded_vendor_keys_are_pinned() {
        use sha2::{Digest, Sha256};
        let pins = [
            (DOCKER_KEY, "1500c1f56fa9e26b9b8f42452a553675796ade0807cdce11975eb98170b3a570"),
            (TAILSCALE_KEY, "53c6f7dfbd774839d9f37e6c5022ba952108aba9a0e556a56f292a9eb605d7cf"),
            (CLOUDFLARE_KEY, "13cd7aecdf37b445eb5135e967c7913c7fd66f3bd7408a97630e2db257b86281"),
        ];
        for (bytes, pin) in pins {
            let digest: String = Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(digest, pin);
        }
    }

    #[test]
    fn relative_paths_stay_inside() {
        assert!(check_relative_path("keys/ci.pub").is_ok() && check_relative_path("./a/../b").is_ok());
        for bad in ["/etc/passwd", "../secret", "a/../../b", "~/x", ""] {
            assert!(check_relative_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn modes() {
        assert_eq!(parse_mode("0644"), Some(0o644));
        assert_eq!(parse_mode("600"), Some(0o600));
        assert_eq!(parse_mode("0988"), None);
        assert_eq!(parse_mode("rw-r--r--"), None);
    }

    #[test]
    fn target_paths() {
        assert!(check_target_path("/etc/app/config.yml").is_ok());
        for bad in ["etc/x", "/etc/../x", "/etc/x/", "/etc/kiln/x", "/etc/docker/daemon.json"] {
            assert!(check_target_path(bad).is_err(), "{bad}");
        }
    }
}
