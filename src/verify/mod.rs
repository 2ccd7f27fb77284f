//! Expected state vs observed state: one named check per fact, each pass or fail with both sides shown.
//!
//! A failing check means the host is not as declared; a harness that cannot observe returns an error
//! instead (docs/design.md §2, principle 8: "the check failed" and "the harness broke" are different types).

pub mod check_names;
pub mod cloud_init;
pub mod identity;
pub mod observe;
pub mod protocol;
pub mod reach;
pub mod report;
pub mod secret_scan;
pub mod ssh_audit;
mod wireguard;

use std::collections::BTreeSet;

use anyhow::Result;
use serde::Serialize;
use serde_json::Value;

use crate::expect::{ANY_PORT, ExpectedState, Listener, UfwRule};
use observe::{Section, StateProbe};

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

/// Compares the state probe's sections with the expected state. An error means a section is missing or
/// is not what its command prints: the harness could not observe, which is not a failed check.
pub fn verify(
    expected: &ExpectedState,
    probe: &StateProbe,
    image_listeners: &[Listener],
    digests: &SecretDigests,
) -> Result<Vec<Check>> {
    let mut checks = vec![Check::equal("hostname", &expected.hostname, probe.get(Section::Hostname)?)];
    checks.extend(user_checks(expected, probe)?);
    checks.extend(sshd_checks(expected, probe)?);
    let installed = observe::parse_installed_packages(probe.get(Section::Packages)?)?;
    for package in &expected.packages {
        let ok = installed.contains(package.as_str());
        checks.push(Check::new(
            format!("package {package}"),
            "installed",
            if ok { "installed" } else { "not installed" },
            ok,
        ));
    }
    let units = observe::parse_units(probe.get(Section::Units)?)?;
    for unit in &expected.units {
        let (active, enabled) = units.get(unit.name.as_str()).copied().unwrap_or(("unknown", "unknown"));
        checks.push(Check::equal(
            check_names::unit_active(&unit.name),
            if unit.active { "active" } else { "inactive" },
            active,
        ));
        checks.push(Check::equal(
            check_names::unit_enabled(&unit.name),
            if unit.enabled { "enabled" } else { "disabled" },
            enabled,
        ));
    }
    checks.extend(firewall_checks(expected, probe)?);
    checks.push(listener_check(expected, image_listeners, probe.get(Section::Listeners)?)?);
    let secret_files = observe::parse_secret_files(probe.get(Section::SecretFiles)?)?;
    for file in &expected.secret_files {
        let observed = match secret_files.get(file.path.as_str()) {
            Some(Some((mode, owner))) => format!("mode {mode} owner {owner}"),
            Some(None) | None => "absent".to_string(),
        };
        let expected_text = if file.present { "mode 600 owner root" } else { "absent" };
        checks.push(Check::equal(format!("secret file {}", file.path), expected_text, observed));
    }
    if let Some(live_restore) = expected.docker_live_restore {
        let observed = observe::parse_live_restore(probe.get(Section::DockerLiveRestore)?)?;
        checks.push(Check::equal(check_names::DOCKER_LIVE_RESTORE, live_restore.to_string(), observed.to_string()));
    }
    if !expected.update_origins.is_empty() {
        let configured: Vec<&str> = probe.get(Section::UpdateOrigins)?.lines().collect();
        for pattern in &expected.update_origins {
            let ok = configured.contains(&pattern.as_str());
            checks.push(Check::new(
                check_names::update_origin(pattern),
                "in apt's configuration",
                if ok {
                    "in apt's configuration".to_string()
                } else {
                    format!("absent (apt has: {})", configured.join("; "))
                },
                ok,
            ));
        }
        let periodic = observe::parse_apt_config(probe.get(Section::AptPeriodic)?);
        let daily = |name: &str| periodic.get(name).copied().unwrap_or("(unset)");
        let observed = format!(
            "Update-Package-Lists {}, Unattended-Upgrade {}",
            daily("APT::Periodic::Update-Package-Lists"),
            daily("APT::Periodic::Unattended-Upgrade")
        );
        checks.push(Check::equal(
            check_names::APT_DAILY_UPGRADE,
            "Update-Package-Lists 1, Unattended-Upgrade 1",
            observed,
        ));
    }
    checks.extend(system_checks(expected, probe)?);
    checks.extend(hardening_checks(expected, probe)?);
    checks.extend(standin_checks(expected, probe, digests)?);
    checks.extend(wireguard::checks(expected, probe)?);
    let failed = probe.get(Section::FailedUnits)?;
    checks.push(Check::new(
        "no failed units",
        "none",
        if failed.is_empty() { "none" } else { failed },
        failed.is_empty(),
    ));
    Ok(checks)
}

/// Every keyword kiln sets, as sshd decides it for the deploy user's connections; for root's, the keywords
/// where the deploy user's Match block makes them differ.
fn sshd_checks(expected: &ExpectedState, probe: &StateProbe) -> Result<Vec<Check>> {
    let mut checks = Vec::new();
    let deploy = observe::parse_sshd_options(probe.get(Section::Sshd)?);
    let root = observe::parse_sshd_options(probe.get(Section::SshdRoot)?);
    let observed = |options: &std::collections::BTreeMap<&str, Vec<&str>>, keyword: &str| {
        options.get(keyword).map_or_else(|| "(not reported by sshd -T)".to_string(), |values| values.join(" "))
    };
    for want in &expected.ssh.for_deploy_user {
        let name = check_names::sshd_option(&want.keyword);
        checks.push(Check::equal(name, want.values.join(" "), observed(&deploy, &want.keyword)));
    }
    for want in expected.ssh.for_root.iter().filter(|w| !expected.ssh.for_deploy_user.contains(w)) {
        let name = check_names::sshd_option_for_root(&want.keyword);
        checks.push(Check::equal(name, want.values.join(" "), observed(&root, &want.keyword)));
    }
    Ok(checks)
}

fn user_checks(expected: &ExpectedState, probe: &StateProbe) -> Result<Vec<Check>> {
    let user = &expected.user;
    let shell = observe::parse_passwd_shell(probe.get(Section::Passwd)?)?.unwrap_or("(no such user)");
    let mut checks = vec![Check::equal(format!("user {} shell", user.name), &user.shell, shell)];
    let groups = observe::parse_groups(probe.get(Section::Groups)?);
    for group in &user.groups {
        let ok = groups.contains(group);
        checks.push(Check::new(check_names::user_in_group(&user.name, group), "member", groups.join(" "), ok));
    }
    let keys = observe::parse_authorized_keys(probe.get(Section::Keys)?);
    let wanted: BTreeSet<&str> = user.authorized_keys.iter().map(String::as_str).collect();
    checks.push(Check::new(
        format!("user {} authorized keys", user.name),
        format!("{} key(s): {}", wanted.len(), fingerprints(&wanted)),
        format!("{} key(s): {}", keys.len(), fingerprints(&keys)),
        keys == wanted,
    ));
    let status = observe::parse_passwd_status(probe.get(Section::PasswdStatus)?)?.unwrap_or("?");
    checks.push(Check::equal(
        format!("user {} password locked", user.name),
        if user.password_locked { "L" } else { "P" },
        status,
    ));
    let nopasswd = observe::parse_sudo_nopasswd_all(probe.get(Section::Sudo)?);
    checks.push(Check::new(
        format!("user {} passwordless sudo", user.name),
        if user.passwordless_sudo { "NOPASSWD: ALL" } else { "no NOPASSWD rule" },
        if nopasswd { "NOPASSWD: ALL" } else { "no NOPASSWD rule" },
        nopasswd == user.passwordless_sudo,
    ));
    Ok(checks)
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

fn firewall_checks(expected: &ExpectedState, probe: &StateProbe) -> Result<Vec<Check>> {
    let Some(firewall) = &expected.firewall else { return Ok(Vec::new()) };
    let status = observe::parse_ufw_status(probe.get(Section::UfwStatus)?)?;
    let mut checks = vec![Check::new("ufw active", "Status: active", status.status, status.status == "Status: active")];
    let wanted = format!("{} (incoming), {} (outgoing)", firewall.incoming, firewall.outgoing);
    checks.push(Check::new("ufw default policies", &wanted, status.defaults, status.defaults.contains(&wanted)));
    let mut observed = observe::parse_ufw_rules(probe.get(Section::UfwRules4)?, false)?;
    observed.extend(observe::parse_ufw_rules(probe.get(Section::UfwRules6)?, true)?);
    observed.sort();
    let describe = |rules: &[UfwRule]| rules.iter().map(describe_rule).collect::<Vec<_>>().join("; ");
    checks.push(Check::new(
        check_names::UFW_RULE_SET,
        describe(&firewall.rules),
        describe(&observed),
        observed == firewall.rules,
    ));
    // The kernel's tables must carry what UFW says it has: each rule appears in ufw(6)-user-input.
    let v4 = observe::chain_rules(Section::Iptables4, probe.get(Section::Iptables4)?, "ufw-user-input")?;
    let v6 = observe::chain_rules(Section::Iptables6, probe.get(Section::Iptables6)?, "ufw6-user-input")?;
    let mut missing = Vec::new();
    for rule in &firewall.rules {
        let table = if rule.ipv6 { &v6 } else { &v4 };
        let needle = match (&rule.interface, rule.port.as_str()) {
            (Some(iface), _) => format!("-i {iface} "),
            // ufw loads a range with the multiport match (`-m multiport --dports 8000:8010`).
            (None, port) if port.contains(':') => format!("--dports {port}"),
            (None, port) => format!("--dport {port}"),
        };
        if !table.iter().any(|l| l.contains(&needle) && l.contains("-j ACCEPT")) {
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
        let chain = observe::chain_rules(Section::DockerUser, probe.get(Section::DockerUser)?, "DOCKER-USER")?;
        let drops = chain.iter().any(|l| l.contains("--ctstate NEW") && l.ends_with("-j DROP"));
        let mut problems: Vec<String> = Vec::new();
        if !drops {
            problems.push("no DROP of new connections".into());
        }
        for port in open {
            let (ports, proto) = port.split_once('/').unwrap_or((port, "tcp"));
            if !chain.iter().any(|l| {
                l.contains(&format!("-p {proto} -m conntrack --ctstate DNAT --ctorigdstport {ports} -j RETURN"))
            }) {
                problems.push(format!("no exception for {port}"));
            }
        }
        checks.push(Check::new(
            check_names::DOCKER_USER_FILTER,
            format!("DROP new connections except {}", if open.is_empty() { "none".into() } else { open.join(", ") }),
            if problems.is_empty() { "as expected".to_string() } else { problems.join("; ") },
            problems.is_empty(),
        ));
    }
    Ok(checks)
}

fn describe_rule(rule: &UfwRule) -> String {
    let family = if rule.ipv6 { "v6" } else { "v4" };
    let target = match &rule.interface {
        Some(iface) => format!("in on {iface}"),
        None => format!("{}/{} from {}", rule.port, rule.proto, rule.from),
    };
    format!("{family} {} {target}", rule.action)
}

fn listener_check(expected: &ExpectedState, image: &[Listener], ss: &str) -> Result<Check> {
    let wanted: BTreeSet<Listener> = expected.listeners.iter().chain(image).cloned().collect();
    let picks_its_port = |l: &Listener| {
        wanted.iter().any(|w| w.port == ANY_PORT && w.proto == l.proto && w.scope == l.scope && w.process == l.process)
    };
    let observed: BTreeSet<Listener> = observe::parse_listeners(ss)?
        .into_iter()
        .map(|l| if picks_its_port(&l) { Listener { port: ANY_PORT, ..l } } else { l })
        .collect();
    let show = |set: &BTreeSet<Listener>| {
        set.iter().map(|l| format!("{}/{} {} ({})", l.port, l.proto, l.scope, l.process)).collect::<Vec<_>>().join(", ")
    };
    Ok(Check::new("listening sockets (exact)", show(&wanted), show(&observed), wanted == observed))
}

/// Time zone, locale and the profile's own files.
fn system_checks(expected: &ExpectedState, probe: &StateProbe) -> Result<Vec<Check>> {
    let lang = observe::parse_lang(probe.get(Section::Locale)?).unwrap_or("(no LANG)");
    let charmap = probe.get(Section::LocaleCharmap)?.trim();
    let mut checks = vec![
        Check::equal(check_names::TIMEZONE, &expected.timezone, probe.get(Section::Timezone)?.trim()),
        Check::equal(check_names::LOCALE_LANG, &expected.locale, lang),
        Check::new(
            check_names::locale_usable(&expected.locale),
            "a charset (locale charmap)",
            charmap,
            !charmap.is_empty() && !charmap.contains("Cannot"),
        ),
    ];
    let files = observe::parse_files(probe.get(Section::Files)?)?;
    for file in &expected.files {
        let observed = match files.get(file.path.as_str()) {
            Some(Some(f)) => format!("mode {} owner {}:{} sha256 {}", f.mode, f.owner, f.group, f.sha256),
            Some(None) | None => "missing".to_string(),
        };
        let wanted = format!("mode {} owner {}:{} sha256 {}", file.mode, file.owner, file.group, file.sha256);
        checks.push(Check::equal(check_names::file(&file.path), wanted, observed));
    }
    Ok(checks)
}

/// The kernel's settings, the journal on disk and capped, /tmp's mount options.
fn hardening_checks(expected: &ExpectedState, probe: &StateProbe) -> Result<Vec<Check>> {
    let mut checks = Vec::new();
    if !expected.sysctls.is_empty() {
        let observed = observe::parse_sysctl(probe.get(Section::Sysctl)?)?;
        for setting in &expected.sysctls {
            let value = observed.get(setting.key.as_str()).copied().unwrap_or("(not printed by sysctl)");
            checks.push(Check::equal(check_names::sysctl(&setting.key), setting.value.as_str(), value));
        }
    }
    if let Some(journal) = &expected.journal {
        let usage = observe::parse_journal_usage(probe.get(Section::JournalUsage)?)?;
        // The last report of this boot says which journal journald writes now.
        let last = usage.last();
        let on_disk = last.filter(|u| u.path.starts_with(&journal.directory));
        checks.push(Check::new(
            check_names::JOURNAL_PERSISTENT,
            format!("System Journal under {}", journal.directory),
            last.map_or("no usage report this boot".to_string(), |u| format!("{} at {}", u.name, u.path)),
            on_disk.is_some(),
        ));
        let cap = format!("MAX_USE {}", journal.max_use_bytes);
        checks.push(Check::equal(
            check_names::JOURNAL_CAP,
            cap,
            on_disk.map_or("no journal on disk this boot".to_string(), |u| format!("MAX_USE {}", u.max_use)),
        ));
    }
    if !expected.tmp_mount_options.is_empty() {
        let options = observe::parse_tmp_mount(probe.get(Section::TmpMount)?)?;
        let wanted = expected.tmp_mount_options.join(",");
        let (observed, passed) = match &options {
            None => ("not a mount point".to_string(), false),
            Some(options) => (options.join(","), expected.tmp_mount_options.iter().all(|o| options.contains(o))),
        };
        checks.push(Check::new(check_names::TMP_MOUNT, format!("options include {wanted}"), observed, passed));
    }
    Ok(checks)
}

fn standin_checks(expected: &ExpectedState, probe: &StateProbe, digests: &SecretDigests) -> Result<Vec<Check>> {
    let mut checks = Vec::new();
    let records = [
        (
            "cloudflared",
            &expected.cloudflared_args,
            Section::StandinCloudflared,
            "token_sha256",
            &digests.cloudflared_token,
            "token_file_mode",
        ),
        (
            "tailscale up",
            &expected.tailscale_up_args,
            Section::StandinTailscale,
            "auth_key_sha256",
            &digests.tailscale_auth_key,
            "auth_key_file_mode",
        ),
    ];
    for (what, args, section, digest_key, digest, mode_key) in records {
        let Some(args) = args else { continue };
        let record: Value = observe::parse_standin_record(section, probe.get(section)?)?;
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
    Ok(checks)
}

#[cfg(test)]
mod tests;
