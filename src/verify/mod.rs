//! Expected state vs observed state: one named check per fact, each pass or fail with both sides shown.
//!
//! A failing check means the host is not as declared; a harness that cannot observe returns an error
//! instead (DESIGN.md principle 8: "the check failed" and "the harness broke" are different types).

pub mod cloud_init;
pub mod identity;
pub mod observe;
pub mod protocol;
pub mod reach;
pub mod report;
pub mod secret_scan;
mod wireguard;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use crate::expect::{ANY_PORT, ExpectedState, Listener, UfwRule};
use observe::{parse_groups, parse_ss_line, parse_ufw_tuple};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub expected: String,
    pub observed: String,
}

impl Check {
    pub fn new(
        name: impl Into<String>,
        expected: impl Into<String>,
        observed: impl Into<String>,
        passed: bool,
    ) -> Check {
        Check { name: name.into(), passed, expected: expected.into(), observed: observed.into() }
    }

    fn equal(name: impl Into<String>, expected: impl Into<String>, observed: impl Into<String>) -> Check {
        let (expected, observed) = (expected.into(), observed.into());
        let passed = expected == observed;
        Check { name: name.into(), passed, expected, observed }
    }
}

/// Digests of the secrets used, so the stand-ins' records can be checked without the values.
#[derive(Debug, Clone, Default)]
pub struct SecretDigests {
    pub cloudflared_token: Option<String>,
    pub tailscale_auth_key: Option<String>,
}

/// Compares the probe script's sections with the expected state.
pub fn verify(
    expected: &ExpectedState,
    sections: &BTreeMap<String, String>,
    image_listeners: &[Listener],
    digests: &SecretDigests,
) -> Vec<Check> {
    let get = |name: &str| sections.get(name).map(String::as_str).unwrap_or("");
    let mut checks = vec![Check::equal("hostname", &expected.hostname, get("hostname"))];
    checks.extend(user_checks(expected, &get));
    for (option, value) in [
        ("passwordauthentication", &expected.ssh.password_authentication),
        ("permitrootlogin", &expected.ssh.permit_root_login),
        ("kbdinteractiveauthentication", &expected.ssh.kbd_interactive_authentication),
    ] {
        let observed = get("sshd")
            .lines()
            .find_map(|l| l.strip_prefix(option).map(|v| v.trim().to_string()))
            .unwrap_or_else(|| "(not reported by sshd -T)".into());
        checks.push(Check::equal(format!("sshd {option}"), value.as_str(), observed));
    }
    let installed: BTreeSet<&str> = get("packages")
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(_, status)| status.trim() == "ii")
        .map(|(name, _)| name)
        .collect();
    for package in &expected.packages {
        let ok = installed.contains(package.as_str());
        checks.push(Check::new(
            format!("package {package}"),
            "installed",
            if ok { "installed" } else { "not installed" },
            ok,
        ));
    }
    let units: BTreeMap<&str, (&str, &str)> = get("units")
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some((f.next()?, (f.next().unwrap_or(""), f.next().unwrap_or(""))))
        })
        .collect();
    for unit in &expected.units {
        let (active, enabled) = units.get(unit.name.as_str()).copied().unwrap_or(("unknown", "unknown"));
        checks.push(Check::equal(
            format!("unit {} active", unit.name),
            if unit.active { "active" } else { "inactive" },
            active,
        ));
        checks.push(Check::equal(
            format!("unit {} enabled", unit.name),
            if unit.enabled { "enabled" } else { "disabled" },
            enabled,
        ));
    }
    checks.extend(firewall_checks(expected, &get));
    checks.push(listener_check(expected, image_listeners, get("listeners")));
    for file in &expected.secret_files {
        let line = get("secret-files").lines().find(|l| l.starts_with(&format!("{}\t", file.path))).unwrap_or("");
        let fields: Vec<&str> = line.split('\t').collect();
        let observed = match fields.as_slice() {
            [_, "missing", _] | [] | [_] => "absent".to_string(),
            [_, mode, owner, ..] => format!("mode {mode} owner {owner}"),
            _ => line.to_string(),
        };
        let expected_text = if file.present { "mode 600 owner root" } else { "absent" };
        checks.push(Check::equal(format!("secret file {}", file.path), expected_text, observed));
    }
    checks.extend(system_checks(expected, &get));
    checks.extend(standin_checks(expected, &get, digests));
    checks.extend(wireguard::checks(expected, &get));
    let failed = get("failed-units");
    checks.push(Check::new(
        "no failed units",
        "none",
        if failed.is_empty() { "none" } else { failed },
        failed.is_empty(),
    ));
    checks
}

fn user_checks<'a>(expected: &ExpectedState, get: &dyn Fn(&str) -> &'a str) -> Vec<Check> {
    let user = &expected.user;
    let passwd = get("passwd");
    let shell = passwd.split(':').nth(6).unwrap_or("(no such user)");
    let mut checks = vec![Check::equal(format!("user {} shell", user.name), &user.shell, shell)];
    let groups = parse_groups(get("groups"));
    for group in &user.groups {
        let ok = groups.contains(group);
        checks.push(Check::new(format!("user {} in group {group}", user.name), "member", groups.join(" "), ok));
    }
    let keys: BTreeSet<&str> =
        get("keys").lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    let wanted: BTreeSet<&str> = user.authorized_keys.iter().map(String::as_str).collect();
    checks.push(Check::new(
        format!("user {} authorized keys", user.name),
        format!("{} key(s): {}", wanted.len(), fingerprints(&wanted)),
        format!("{} key(s): {}", keys.len(), fingerprints(&keys)),
        keys == wanted,
    ));
    let status = get("passwd-status").split_whitespace().nth(1).unwrap_or("?").to_string();
    checks.push(Check::equal(
        format!("user {} password locked", user.name),
        if user.password_locked { "L" } else { "P" },
        status,
    ));
    let sudo = get("sudo");
    let nopasswd = sudo.contains("NOPASSWD: ALL");
    checks.push(Check::new(
        format!("user {} passwordless sudo", user.name),
        if user.passwordless_sudo { "NOPASSWD: ALL" } else { "no NOPASSWD rule" },
        if nopasswd { "NOPASSWD: ALL" } else { "no NOPASSWD rule" },
        nopasswd == user.passwordless_sudo,
    ));
    checks
}

/// Short, comparable key names for messages: the last 12 characters of the base64 body.
fn fingerprints(keys: &BTreeSet<&str>) -> String {
    keys.iter()
        .map(|k| {
            k.split_whitespace()
                .find(|t| t.starts_with("AAAA"))
                .map(|b| &b[b.len().saturating_sub(12)..])
                .unwrap_or("?")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn firewall_checks<'a>(expected: &ExpectedState, get: &dyn Fn(&str) -> &'a str) -> Vec<Check> {
    let Some(firewall) = &expected.firewall else { return Vec::new() };
    let status = get("ufw-status");
    let mut checks = vec![Check::new(
        "ufw active",
        "Status: active",
        status.lines().next().unwrap_or(""),
        status.contains("Status: active"),
    )];
    let defaults = status.lines().find(|l| l.starts_with("Default:")).unwrap_or("").to_string();
    let wanted = format!("{} (incoming), {} (outgoing)", firewall.incoming, firewall.outgoing);
    checks.push(Check::new("ufw default policies", &wanted, &defaults, defaults.contains(&wanted)));
    let mut observed: Vec<UfwRule> = get("ufw-rules4").lines().filter_map(|l| parse_ufw_tuple(l, false)).collect();
    observed.extend(get("ufw-rules6").lines().filter_map(|l| parse_ufw_tuple(l, true)));
    observed.sort();
    let describe = |rules: &[UfwRule]| rules.iter().map(describe_rule).collect::<Vec<_>>().join("; ");
    checks.push(Check::new(
        "ufw rule set (exact)",
        describe(&firewall.rules),
        describe(&observed),
        observed == firewall.rules,
    ));
    // The kernel's tables must carry what UFW says it has: each rule appears in ufw(6)-user-input.
    let mut missing = Vec::new();
    for rule in &firewall.rules {
        let table = get(if rule.ipv6 { "iptables6" } else { "iptables4" });
        let needle = match (&rule.interface, rule.port.as_str()) {
            (Some(iface), _) => format!("-i {iface} "),
            // ufw loads a range with the multiport match (`-m multiport --dports 8000:8010`).
            (None, port) if port.contains(':') => format!("--dports {port}"),
            (None, port) => format!("--dport {port}"),
        };
        if !table.lines().any(|l| l.contains(&needle) && l.contains("-j ACCEPT")) {
            missing.push(describe_rule(rule));
        }
    }
    checks.push(Check::new(
        "iptables agree with ufw",
        "every rule loaded",
        if missing.is_empty() { "every rule loaded".to_string() } else { format!("missing: {}", missing.join("; ")) },
        missing.is_empty(),
    ));
    if let Some(open) = &firewall.docker_user {
        let chain = get("docker-user");
        let drops = chain.lines().any(|l| l.contains("--ctstate NEW") && l.ends_with("-j DROP"));
        let mut problems: Vec<String> = Vec::new();
        if !drops {
            problems.push("no DROP of new connections".into());
        }
        for port in open {
            let (ports, proto) = port.split_once('/').unwrap_or((port, "tcp"));
            if !chain
                .lines()
                .any(|l| l.contains(&format!("-p {proto}")) && l.contains(&format!("--ctorigdstport {ports}")))
            {
                problems.push(format!("no exception for {port}"));
            }
        }
        checks.push(Check::new(
            "DOCKER-USER filters published ports",
            format!("DROP new connections except {}", if open.is_empty() { "none".into() } else { open.join(", ") }),
            if problems.is_empty() { "as expected".to_string() } else { problems.join("; ") },
            problems.is_empty(),
        ));
    }
    checks
}

fn describe_rule(rule: &UfwRule) -> String {
    let family = if rule.ipv6 { "v6" } else { "v4" };
    let target = match &rule.interface {
        Some(iface) => format!("in on {iface}"),
        None => format!("{}/{} from {}", rule.port, rule.proto, rule.from),
    };
    format!("{family} {} {target}", rule.action)
}

fn listener_check(expected: &ExpectedState, image: &[Listener], ss: &str) -> Check {
    let wanted: BTreeSet<Listener> = expected.listeners.iter().chain(image).cloned().collect();
    let picks_its_port = |l: &Listener| {
        wanted.iter().any(|w| w.port == ANY_PORT && w.proto == l.proto && w.scope == l.scope && w.process == l.process)
    };
    let observed: BTreeSet<Listener> = ss
        .lines()
        .filter_map(parse_ss_line)
        .map(|l| if picks_its_port(&l) { Listener { port: ANY_PORT, ..l } } else { l })
        .collect();
    let show = |set: &BTreeSet<Listener>| {
        set.iter().map(|l| format!("{}/{} {} ({})", l.port, l.proto, l.scope, l.process)).collect::<Vec<_>>().join(", ")
    };
    Check::new("listening sockets (exact)", show(&wanted), show(&observed), wanted == observed)
}

/// Time zone, locale and the profile's own files.
fn system_checks<'a>(expected: &ExpectedState, get: &dyn Fn(&str) -> &'a str) -> Vec<Check> {
    let lang = get("locale").lines().find_map(|l| l.strip_prefix("LANG=")).unwrap_or("(no LANG)").trim_matches('"');
    let charmap = get("locale-charmap").trim();
    let mut checks = vec![
        Check::equal("timezone", &expected.timezone, get("timezone").trim()),
        Check::equal("locale LANG", &expected.locale, lang),
        Check::new(
            format!("locale {} usable", expected.locale),
            "a charset (locale charmap)",
            charmap,
            !charmap.is_empty() && !charmap.contains("Cannot"),
        ),
    ];
    for file in &expected.files {
        let line = get("files").lines().find(|l| l.starts_with(&format!("{}\t", file.path))).unwrap_or("");
        let observed = match line.split('\t').collect::<Vec<_>>().as_slice() {
            [_, mode, owner, group, sha256] => format!("mode {mode} owner {owner}:{group} sha256 {sha256}"),
            _ => "missing".to_string(),
        };
        let wanted = format!("mode {} owner {}:{} sha256 {}", file.mode, file.owner, file.group, file.sha256);
        checks.push(Check::equal(format!("file {}", file.path), wanted, observed));
    }
    checks
}

fn standin_checks<'a>(expected: &ExpectedState, get: &dyn Fn(&str) -> &'a str, digests: &SecretDigests) -> Vec<Check> {
    let mut checks = Vec::new();
    let records = [
        (
            "cloudflared",
            &expected.cloudflared_args,
            "standin-cloudflared",
            "token_sha256",
            &digests.cloudflared_token,
            "token_file_mode",
        ),
        (
            "tailscale up",
            &expected.tailscale_up_args,
            "standin-tailscale",
            "auth_key_sha256",
            &digests.tailscale_auth_key,
            "auth_key_file_mode",
        ),
    ];
    for (what, args, section, digest_key, digest, mode_key) in records {
        let Some(args) = args else { continue };
        let record: Value = serde_json::from_str(get(section)).unwrap_or(Value::Null);
        let argv: Vec<String> = record["argv"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
            .unwrap_or_default();
        checks.push(Check::equal(
            format!("{what} invoked as declared (stand-in record)"),
            args.join(" "),
            argv.join(" "),
        ));
        if let Some(digest) = digest {
            let seen = record[digest_key].as_str().unwrap_or("(none recorded)");
            checks.push(Check::new(
                format!("{what} read the secret from its file"),
                "sha256 of the rendered secret",
                if seen == digest { "sha256 matches" } else { "sha256 differs or missing" },
                seen == digest,
            ));
        }
        let mode = record[mode_key].as_str().unwrap_or("(none recorded)");
        checks.push(Check::equal(format!("{what} secret file was 0600 when read"), "600", mode));
    }
    checks
}

#[cfg(test)]
mod tests;
