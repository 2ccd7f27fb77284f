//! Extra packages and files, file-body templates, apt repositories, and reading files under the
//! profile's directory.

use std::collections::BTreeMap;

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

use super::{
    Apt, Family, FileError, Host, ProfileFiles, ReleaseFacts, Repository, RepositoryKey, SecuritySource, User, error,
};
use crate::catalog::Code;
use crate::consumers::useradd::check_user_name;
use crate::consumers::{debian, openpgp, sshd};
use crate::diag::{Diagnostic, Report};
use crate::profile::v1::{self, RawProfile};
use crate::secret_scan;

const DOCKER_KEY: &[u8] = include_bytes!("../../assets/keys/docker.asc");
const TAILSCALE_KEY: &[u8] = include_bytes!("../../assets/keys/tailscale.asc");
const CLOUDFLARE_KEY: &[u8] = include_bytes!("../../assets/keys/cloudflare.asc");

/// A file the host must have, with its body already rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedFile {
    /// Its index in the profile's `files`, for diagnostics.
    pub origin: usize,
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
pub fn template_context(host: &Host, user: &User, vars: &BTreeMap<String, v1::VarValue>) -> minijinja::Value {
    minijinja::context! {
        host => minijinja::Value::from_serialize(TemplateHost { hostname: &host.hostname, timezone: &host.timezone, locale: &host.locale }),
        user => minijinja::Value::from_serialize(TemplateUser { name: &user.name }),
        vars => minijinja::Value::from_serialize(vars),
    }
}

pub(super) fn files(
    raw: &[v1::File],
    context: &minijinja::Value,
    deploy_user: &str,
    profile: &RawProfile,
    files: &dyn ProfileFiles,
    report: &mut Report,
) -> Vec<ManagedFile> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    let mut out: Vec<ManagedFile> = Vec::new();
    for (i, file) in raw.iter().enumerate() {
        let path = format!("$.files[{i}]");
        match check_target_path(&file.path) {
            Err(why) => error(report, Code::BadValue, format!("{path}.path"), why),
            Ok(Some(warning)) => report.push(Diagnostic::warning(Code::BadValue, format!("{path}.path"), warning)),
            Ok(None) => {}
        }
        if let Some(first) = raw[..i].iter().position(|f| f.path == file.path) {
            error(
                report,
                Code::ContradictoryRule,
                format!("{path}.path"),
                format!("`{}` is already written by files[{first}]", file.path),
            );
        }
        let mode = check_mode(file, &path, report);
        let owner = check_owner(&file.owner, deploy_user, profile, &format!("{path}.owner"), report);
        let body = match (&file.content, &file.source) {
            (Some(content), None) => Some((content.clone(), format!("{path}.content"), None)),
            (None, Some(source)) => read_profile_file(source, &format!("{path}.source"), files, report)
                .map(|t| (t, format!("{path}.source"), Some(source.as_str()))),
            _ => {
                error(report, Code::ContradictoryRule, &path, "give exactly one of `content` and `source`");
                None
            }
        };
        let Some((body, body_path, source)) = body else { continue };
        let content = if file.template {
            match env.render_str(&body, context) {
                Ok(rendered) => rendered,
                Err(e) => {
                    report.push(template_error(&e, &body, &body_path, source));
                    continue;
                }
            }
        } else {
            body
        };
        // What is scanned is what would be written: a key that arrives through a template variable
        // or sits inside JSON is found too.
        if let Some(found) = secret_scan::find(&content) {
            report.push(secret_in_file(&found, file.template, &body_path, source));
            continue;
        }
        if file.path.starts_with(SSHD_DROP_IN_DIR) {
            check_sshd_drop_in(&content, &body_path, source, report);
        }
        if let (Some(mode), Some((user, group))) = (mode, owner) {
            out.push(ManagedFile { origin: i, path: file.path.clone(), content, mode, owner: user, group });
        }
    }
    out
}

/// Where sshd reads drop-ins from (Debian's sshd_config includes `sshd_config.d/*.conf` first).
const SSHD_DROP_IN_DIR: &str = "/etc/ssh/sshd_config.d/";

fn secret_in_file(found: &secret_scan::Found, template: bool, body_path: &str, source: Option<&str>) -> Diagnostic {
    let message = format!(
        "this file would hold a {}: profile files are baked into golden images and sent in user-data",
        found.kind
    );
    // A rendered template's lines are not the profile's: name the line of the result instead.
    let diagnostic = if template {
        Diagnostic::error(Code::SecretInImage, body_path, format!("{message} (line {} once rendered)", found.line))
    } else {
        Diagnostic::error(Code::SecretInImage, body_path, message).within(found.line, found.column, source)
    };
    diagnostic.with_help(
        "keep secrets out of `files`: reference them (`{env: NAME}` or `{file: PATH}`) where the profile takes secrets",
    )
}

/// A drop-in the profile ships into sshd_config.d: every keyword must be one sshd knows, and none may
/// be one kiln decides (`consumers::sshd`).
fn check_sshd_drop_in(content: &str, body_path: &str, source: Option<&str>, report: &mut Report) {
    for unknown in sshd::unknown_keywords(content) {
        report.push(match unknown {
            sshd::Unknown::Refused { line, column, keyword, suggestion } => {
                let diagnostic = Diagnostic::error(
                    Code::BadValue,
                    body_path,
                    format!(
                        "sshd does not know `{keyword}`: it would refuse its whole configuration (\"Bad configuration option\")"
                    ),
                )
                .within(line, column, source);
                match suggestion {
                    Some(near) => diagnostic.with_help(format!("did you mean `{near}`? (sshd ignores case)")),
                    None => diagnostic,
                }
            }
            sshd::Unknown::Ignored { line, column, keyword } => Diagnostic::warning(
                Code::BadValue,
                body_path,
                format!("sshd ignores `{keyword}` (deprecated or unsupported in OpenSSH 9.2)"),
            )
            .within(line, column, source),
        });
    }
    for misplaced in sshd::not_allowed_in_match(content) {
        report.push(
            Diagnostic::error(
                Code::BadValue,
                body_path,
                format!(
                    "sshd does not take `{0}` inside a Match block: it would refuse to start (\"Directive '{0}' is not allowed within a Match block\")",
                    misplaced.keyword
                ),
            )
            .within(misplaced.line, misplaced.column, source)
            .with_help("move it above the file's first `Match` line (a Match block runs to the end of its file)"),
        );
    }
    for o in sshd::overrides(content) {
        report.push(
            Diagnostic::error(
                Code::ContradictoryRule,
                body_path,
                format!("this sshd drop-in sets `{}`, which the profile's sections decide: {}", o.keyword, o.why),
            )
            .within(o.line, o.column, source)
            .with_help("leave that setting to the profile (`ssh`, `user`, `firewall`, `wireguard`)"),
        );
    }
}

/// A template that does not render, pointed at the template's own line and column, naming the
/// expression minijinja could not evaluate (an undefined variable, say).
fn template_error(e: &minijinja::Error, body: &str, body_path: &str, source: Option<&str>) -> Diagnostic {
    // The error's byte range in the template, when minijinja knows it (and it falls on characters).
    let located = e.range().and_then(|range| Some((body.get(..range.start)?, body.get(range)?)));
    let (line, column, expression) = match located {
        Some((before, expression)) => {
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            (line, column, Some(expression.trim()))
        }
        None => (e.line().unwrap_or(1), 1, None),
    };
    let what = match (e.kind(), expression) {
        (minijinja::ErrorKind::UndefinedError, Some(expr)) => format!("`{expr}` is undefined"),
        (_, Some(expr)) => {
            format!("`{expr}`: {}", e.detail().map(str::to_string).unwrap_or_else(|| e.kind().to_string()))
        }
        (_, None) => e.detail().map(str::to_string).unwrap_or_else(|| e.kind().to_string()),
    };
    let mut diagnostic = Diagnostic::error(Code::Template, body_path, format!("the template does not render: {what}"))
        .within(line, column, source);
    if e.kind() == minijinja::ErrorKind::UndefinedError {
        diagnostic = diagnostic
            .with_help("templates see `host.hostname`, `host.timezone`, `host.locale`, `user.name` and `vars.NAME`");
    }
    diagnostic
}

/// Setuid and setgid bits need the profile to say so (`allow_setuid: true`); a world-writable file is
/// a warning.
fn check_mode(file: &v1::File, path: &str, report: &mut Report) -> Option<u32> {
    let at = format!("{path}.mode");
    let Some(mode) = parse_mode(&file.mode) else {
        error(report, Code::BadValue, at, format!("`{}` is not an octal mode like \"0644\"", file.mode));
        return None;
    };
    let privileged = mode & 0o6000 != 0;
    if privileged && !file.allow_setuid {
        report.push(
            Diagnostic::error(
                Code::BadValue,
                &at,
                format!("`{}` sets the setuid or setgid bit: the file would run with its owner's rights", file.mode),
            )
            .with_help("say `allow_setuid: true` if that is meant"),
        );
    } else if !privileged && file.allow_setuid {
        report.push(Diagnostic::warning(
            Code::ContradictoryRule,
            format!("{path}.allow_setuid"),
            "`allow_setuid` is set but the mode has no setuid or setgid bit",
        ));
    }
    if mode & 0o002 != 0 {
        report.push(Diagnostic::warning(Code::BadValue, at, "this file is world-writable"));
    }
    Some(mode)
}

/// `user:group` must name accounts that exist when cloud-init writes the file (its deferred
/// write_files run after packages are installed): root, the deploy user and its group, the release's
/// accounts, or, with packages kiln does not know, a warning.
fn check_owner(
    text: &str,
    deploy_user: &str,
    profile: &RawProfile,
    at: &str,
    report: &mut Report,
) -> Option<(String, String)> {
    let packages = &profile.packages;
    let Some((user, group)) =
        text.split_once(':').filter(|(u, g)| check_user_name(u).is_ok() && check_user_name(g).is_ok())
    else {
        error(report, Code::BadValue, at, format!("`{text}` is not `user:group`"));
        return None;
    };
    // The release's accounts include the `docker` group, which Docker's package creates: only a
    // profile with a `docker` section has it.
    let docker_group_missing = group == "docker" && profile.docker.is_none();
    let base = debian::base_system(super::release::of(&profile.host));
    let missing: Vec<String> =
        [(user, base.user_exists(user), "user"), (group, base.group_exists(group) && !docker_group_missing, "group")]
            .into_iter()
            .filter(|(name, exists, _)| !exists && *name != deploy_user)
            .map(|(name, _, kind)| format!("{kind} `{name}`"))
            .collect();
    if !missing.is_empty() {
        let what = missing.join(" and ");
        if packages.is_empty() {
            report.push(
                Diagnostic::error(
                    Code::BadValue,
                    at,
                    format!(
                        "nothing creates the {what}: not {} base system, not the deploy user, no listed package",
                        base.whose
                    ),
                )
                .with_help(format!("use `root:root`, or the deploy user `{deploy_user}:{deploy_user}`")),
            );
            return None;
        }
        report.push(Diagnostic::warning(
            Code::BadValue,
            at,
            format!(
                "the {what} must come from one of `packages`: otherwise cloud-init cannot give this file its owner"
            ),
        ));
    }
    Some((user.to_string(), group.to_string()))
}

/// Kernel file systems: a write there is a kernel setting or a device, not a file.
const KERNEL_TREES: &[&str] = &["/proc/", "/sys/", "/dev/"];
/// Emptied at every boot (/run is a tmpfs; Debian's tmpfiles.d cleans /tmp).
const VOLATILE_TREES: &[&str] = &["/run/", "/tmp/", "/var/run/"];

/// An absolute path to a file outside the kernel's trees; `Ok(Some(warning))` for one that does not
/// survive a reboot. Paths that kiln itself writes or owns are refused later, against what the
/// lowering claims (`lower::claims`, checked by `pipeline::validate`).
fn check_target_path(path: &str) -> Result<Option<String>, String> {
    if !path.starts_with('/') || path.ends_with('/') || path.contains("//") || path.chars().any(|c| c.is_control()) {
        return Err(format!("`{path}` is not an absolute file path"));
    }
    if path.split('/').any(|p| p == ".." || p == ".") {
        return Err(format!("`{path}` contains `.` or `..`"));
    }
    if let Some(tree) = KERNEL_TREES.iter().find(|t| path.starts_with(**t)) {
        return Err(format!("`{path}` is in {tree}, a kernel file system: use a sysctl.d or udev file instead"));
    }
    Ok(VOLATILE_TREES.iter().find(|t| path.starts_with(**t)).map(|tree| {
        format!("`{path}` is in {tree}, which is emptied at every boot: the file will be gone after a reboot")
    }))
}

/// `"0644"`, `"644"`, `"1777"` → bits.
fn parse_mode(text: &str) -> Option<u32> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    ((3..=4).contains(&digits.len()) && digits.bytes().all(|b| (b'0'..=b'7').contains(&b)))
        .then(|| u32::from_str_radix(digits, 8).ok())
        .flatten()
}

pub(super) fn apt(raw: &RawProfile, release: &ReleaseFacts, files: &dyn ProfileFiles, report: &mut Report) -> Apt {
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
        let authority = source.url.split_once("://").map(|(_, rest)| rest.split('/').next().unwrap_or(rest));
        if !(source.url.starts_with("http://") || source.url.starts_with("https://"))
            || source.url.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            error(report, Code::BadValue, format!("{path}.url"), "this is not an http(s) URL");
        } else if authority.is_some_and(|a| a.contains('@')) {
            // The sources file is 0644 and goes into golden images; apt reads credentials from
            // auth.conf (apt_auth.conf(5)), which kiln does not write.
            report.push(
                Diagnostic::error(
                    Code::LiteralSecret,
                    format!("{path}.url"),
                    "credentials in a repository URL would be written into a world-readable sources file",
                )
                .with_help("serve the mirror without credentials in the URL (apt reads them from /etc/apt/auth.conf.d, see apt_auth.conf(5))")
                .sensitive(),
            );
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
            Some(file) => {
                let at = format!("{path}.key.file");
                match read_profile_bytes(&file.file, &at, files, report).map(|b| (openpgp::classify(&b), b)) {
                    Some((Ok(openpgp::KeyFile::Public { armored }), bytes)) => {
                        RepositoryKey::Embedded { bytes, armored }
                    }
                    Some((Ok(openpgp::KeyFile::Private), _)) => {
                        report.push(
                            Diagnostic::error(
                                Code::SecretInImage,
                                at,
                                format!("`{}` holds a private OpenPGP key: apt needs the public key, and this file is written world-readable", file.file),
                            )
                            .with_help("export the public key (`gpg --export --armor KEYID`)"),
                        );
                        default.key
                    }
                    Some((Err(why), _)) => {
                        error(
                            report,
                            Code::BadValue,
                            at,
                            format!("`{}` is not an OpenPGP public key apt can use: {why}", file.file),
                        );
                        default.key
                    }
                    None => default.key,
                }
            }
        };
        Repository { name, url: source.url.clone(), suites, components, key, security: None }
    };
    let embedded = |bytes: &[u8]| RepositoryKey::Embedded { bytes: bytes.to_vec(), armored: true };
    let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let codename = || vec![release.codename.to_string()];
    let defaults = [
        (
            release.archive_name(),
            release.archive,
            release.archive_suites(),
            words(release.components),
            RepositoryKey::System(release.keyring),
        ),
        ("docker", release.docker_ce, codename(), words(&["stable"]), embedded(DOCKER_KEY)),
        ("tailscale", release.tailscale, codename(), words(&["main"]), embedded(TAILSCALE_KEY)),
        // Cloudflare publishes one suite for every release.
        (
            "cloudflared",
            "https://pkg.cloudflare.com/cloudflared",
            words(&["any"]),
            words(&["main"]),
            embedded(CLOUDFLARE_KEY),
        ),
    ];
    let overrides = [&raw.apt.debian, &raw.apt.docker, &raw.apt.tailscale, &raw.apt.cloudflared];
    let used = [raw.apt.debian.is_some(), docker_ce, raw.tailscale.is_some(), raw.cloudflared.is_some()];
    // Every override is validated, used or not, so a typo in an unused one is still reported.
    let mut resolved =
        defaults.into_iter().zip(overrides).zip(used).map(|(((name, url, suites, components, key), source), used)| {
            let default = Repository { name, url: url.into(), suites, components, key, security: None };
            let repo = if used || source.is_some() { Some(repository(name, default, source)) } else { None };
            repo.filter(|_| used)
        });
    let mut next = || resolved.next().flatten();
    let mut apt = Apt {
        debian: next(),
        docker: next(),
        tailscale: next(),
        cloudflared: next(),
        install_recommends: raw.apt.install_recommends,
    };
    if let (Some(archive), Some(source)) = (&mut apt.debian, &raw.apt.debian) {
        archive_layout(archive, source, release, raw, report);
    }
    apt
}

/// The archive override's release-specific rules. With default suites, Debian's security updates come from
/// their own archive, so a second stanza carries them; explicit suites are taken as given, but a list
/// without `<codename>-security` leaves the host without security updates. On Ubuntu `docker.io` is in
/// `universe`.
fn archive_layout(
    archive: &mut Repository,
    source: &v1::AptSource,
    release: &ReleaseFacts,
    raw: &RawProfile,
    report: &mut Report,
) {
    let flat = archive.suites.iter().any(|s| s.ends_with('/'));
    if source.suites.is_none() {
        archive.security = release
            .security_archive
            .map(|url| SecuritySource { url: url.to_string(), suite: release.security_suite() });
    } else if !flat && !archive.suites.iter().any(|s| s.ends_with("-security")) {
        report.push(
            Diagnostic::warning(
                Code::NoSecurityUpdates,
                "$.apt.debian.suites",
                format!("no `{}` suite: the host would get no security updates", release.security_suite()),
            )
            .with_help(format!(
                "leave `suites` out to get {}'s layout, or add the security suite your mirror carries",
                release.title
            )),
        );
    }
    let distro_docker = raw.docker.as_ref().is_some_and(|d| d.source == v1::DockerSource::Distro);
    if release.family == Family::Ubuntu && distro_docker && !flat && !archive.components.iter().any(|c| c == "universe")
    {
        report.push(
            Diagnostic::error(
                Code::ReleaseMismatch,
                "$.apt.debian.components",
                format!("`docker.source: distro` installs docker.io, which {} has in `universe`, and these components leave it out", release.title),
            )
            .with_help("add `universe` to `components` (or use `docker.source: docker-ce`)"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A changed vendor key must be a deliberate, reviewed change: the bytes are pinned here and the
    /// fingerprints are checked with GnuPG in the integration tests.
    #[test]
    fn embedded_vendor_keys_are_pinned() {
        let pins = [
            (DOCKER_KEY, "1500c1f56fa9e26b9b8f42452a553675796ade0807cdce11975eb98170b3a570"),
            (TAILSCALE_KEY, "53c6f7dfbd774839d9f37e6c5022ba952108aba9a0e556a56f292a9eb605d7cf"),
            (CLOUDFLARE_KEY, "13cd7aecdf37b445eb5135e967c7913c7fd66f3bd7408a97630e2db257b86281"),
        ];
        for (bytes, pin) in pins {
            let digest = crate::encoding::sha256_hex(bytes);
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
        assert_eq!(check_target_path("/etc/app/config.yml"), Ok(None));
        assert!(check_target_path("/run/app/x").unwrap().is_some());
        for bad in ["etc/x", "/etc/../x", "/etc/x/", "/proc/sys/net/ipv4/ip_forward", "/sys/x", "/dev/sda"] {
            assert!(check_target_path(bad).is_err(), "{bad}");
        }
    }
}
