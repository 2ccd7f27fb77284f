//! What a booted guest shows: the state probe the harness runs in it, and a parser per section.
//!
//! Pure: the script is built from the expected state (which user, units, files to look at) and each
//! section parsed from text, so both are unit-tested without a VM. The wire format (markers, the status
//! trailer) is `protocol`'s; each section's command is here, next to the parser of what it prints.
//! Parsers refuse text that is not what their command prints: a harness error, not a failed check.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use serde_json::Value;

use super::protocol::{Probe, Script, SectionName, probe_sections};
use crate::expect::{ExpectedState, KERNEL_SOCKET, Listener, UfwRule};
use crate::templates::shell_quote;

/// How long the state probe may take in the guest (it reads, it changes nothing; a few seconds under
/// KVM, tens under emulation).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(120);

probe_sections! {
    /// The sections of the state probe: one per fact the checks compare.
    pub enum Section("the state probe") {
        Hostname = "hostname",
        Passwd = "passwd",
        Groups = "groups",
        Keys = "keys",
        PasswdStatus = "passwd-status",
        Sudo = "sudo",
        Sshd = "sshd",
        SshdRoot = "sshd-root",
        Packages = "packages",
        Units = "units",
        UfwStatus = "ufw-status",
        UfwRules4 = "ufw-rules4",
        UfwRules6 = "ufw-rules6",
        Iptables4 = "iptables4",
        Iptables6 = "iptables6",
        DockerUser = "docker-user",
        DockerLiveRestore = "docker-live-restore",
        UpdateOrigins = "update-origins",
        AptPeriodic = "apt-periodic",
        Listeners = "listeners",
        SecretFiles = "secret-files",
        Timezone = "timezone",
        Locale = "locale",
        LocaleCharmap = "locale-charmap",
        Files = "files",
        StandinCloudflared = "standin-cloudflared",
        StandinTailscale = "standin-tailscale",
        FailedUnits = "failed-units",
        WgAddress = "wg-address",
        WgPort = "wg-port",
        WgPeers = "wg-peers",
        WgPublicKey = "wg-public-key",
        WgPublicKeyFile = "wg-public-key-file",
        Sysctl = "sysctl",
        JournalUsage = "journal-usage",
        TmpMount = "tmp-mount",
    }
}

/// The state probe's output, parsed.
pub type StateProbe = Probe<Section>;

/// Shell helpers the state probe's sections share.
const HELPERS: &str = r#"# The passwd entry of user $1; nothing when there is no such user (getent exits 2): the user checks
# then report the missing user. Any other getent failure fails the section.
kiln_passwd() { getent passwd "$1" || { local rc=$?; [ "$rc" -eq 2 ] || return "$rc"; }; }
# File $1, or nothing when it does not exist: an absent file is an answer the checks judge. A file that
# exists but cannot be read fails the section.
kiln_cat_if_present() { if [ -e "$1" ]; then cat -- "$1"; fi; }
"#;

/// `ufw status verbose`: the first line is `Status: active|inactive`, then the default policies.
const UFW_STATUS: &str = "ufw status verbose";
/// `-H`: no header; `-ltnup`: listening TCP and UDP sockets, numeric, with their processes. The columns
/// are then Netid, State, Recv-Q, Send-Q, local address:port, peer address:port, process.
const LISTENERS: &str = "ss -H -ltnup";
/// What the running dockerd reports (`true`/`false`, Go's template of `docker info`'s field): the setting it
/// runs with, whatever file set it.
const DOCKER_LIVE_RESTORE: &str = "docker info --format '{{json .LiveRestoreEnabled}}'";

/// apt's configuration as apt itself merges it (every file of apt.conf.d): the origin patterns, one a line.
const UPDATE_ORIGINS: &str = "apt-config dump --format '%v%n' Unattended-Upgrade::Origins-Pattern";
/// apt's periodic settings, `NAME VALUE` a line (`APT::Periodic::Unattended-Upgrade 1`).
const APT_PERIODIC: &str = "apt-config dump --format '%f %v%n' APT::Periodic";

/// `apt-config dump --format '%f %v%n'` → name → value, for the entries with a value.
pub fn parse_apt_config(text: &str) -> BTreeMap<&str, &str> {
    text.lines().filter_map(|l| l.split_once(' ')).filter(|(_, v)| !v.is_empty()).collect()
}

/// `docker info`'s `LiveRestoreEnabled`, as [`DOCKER_LIVE_RESTORE`] prints it.
pub fn parse_live_restore(text: &str) -> Result<bool> {
    serde_json::from_str(text.trim())
        .map_err(|_| malformed(Section::DockerLiveRestore, text.trim(), "`true` or `false` from docker info"))
}

/// The whole filter table as rules (`-P`, `-N`, `-A` lines); the reader takes the chain it needs, so a
/// chain that does not exist (ufw's, with ufw off) reads as no rule, not as an error. `-w`: wait for the
/// xtables lock rather than fail while Docker or ufw holds it.
const IPTABLES4: &str = "iptables -w -S";
const IPTABLES6: &str = "ip6tables -w -S";
/// journald's "Disk space used by the journal" message (sd-messages.h `SD_MESSAGE_JOURNAL_USAGE`; the
/// catalog entry in /usr/lib/systemd/catalog/systemd.catalog), logged each time journald starts and when it
/// flushes to /var: its fields name the journal in use (`JOURNAL_PATH`) and its cap (`MAX_USE`, bytes).
pub const JOURNAL_USAGE_MESSAGE_ID: &str = "ec387f577b844b8fa948f33cad9a75e6";

/// One bash script printing every section the checks of `expected` read, and only those.
pub fn probe_script(expected: &ExpectedState) -> Script<Section> {
    let user = shell_quote(&expected.user.name);
    let words = |items: Vec<String>| items.join(" ");
    let units = words(expected.units.iter().map(|u| shell_quote(&u.name)).collect());
    let secret_files = words(expected.secret_files.iter().map(|f| shell_quote(&f.path)).collect());
    let files = words(expected.files.iter().map(|f| shell_quote(&f.path)).collect());
    let mut s = Script::new(HELPERS);
    s.section(Section::Hostname, "hostname");
    s.section(Section::Passwd, &format!("kiln_passwd {user}"));
    s.section(
        Section::Groups,
        &format!(
            "entry=$(kiln_passwd {user})\n# No such user, no groups (the user checks report the missing user).\nif [ -n \"$entry\" ]; then id -nG {user}; fi"
        ),
    );
    s.section(
        Section::Keys,
        &format!(
            r#"entry=$(kiln_passwd {user})
# No such user, no keys.
[ -n "$entry" ] || return 0
IFS=: read -r _ _ _ _ _ home _ <<<"$entry"
# A user without the file has no keys: the key check then fails on the empty set.
kiln_cat_if_present "$home/.ssh/authorized_keys""#
        ),
    );
    s.section(
        Section::PasswdStatus,
        &format!("entry=$(kiln_passwd {user})\nif [ -n \"$entry\" ]; then passwd -S {user}; fi"),
    );
    s.section(
        Section::Sudo,
        &format!(
            r#"entry=$(kiln_passwd {user})
[ -n "$entry" ] || return 0
rc=0; out=$(sudo -n -l -U {user} 2>&1) || rc=$?
# sudo exits 1 after saying that the user may not run sudo at all (on stdout or stderr, by version):
# that is an answer, not a failure. Any other failure shows its message.
if [ "$rc" -eq 1 ] && [[ $out == *" is not allowed to run sudo "* ]]; then rc=0; fi
if [ "$rc" -eq 0 ]; then printf '%s\n' "$out"; else printf '%s\n' "$out" >&2; fi
return "$rc""#
        ),
    );
    // sshd's decision for a connection of the deploy user, and of root: `-C` evaluates the Match blocks
    // (kiln's gives the deploy user remote forwarding). The address is any client's; no Match kiln writes
    // depends on it.
    for (section, who) in [(Section::Sshd, user.as_str()), (Section::SshdRoot, "root")] {
        s.section(section, &format!("sshd -T -C user={who},host=kiln-probe,addr=192.0.2.1,laddr=192.0.2.2,lport=22"));
    }
    s.section(Section::Packages, "dpkg-query -W -f='${Package}\\t${db:Status-Abbrev}\\n'");
    s.section(
        Section::Units,
        &format!(
            r#"for u in {units}; do
  # `loaded`, or `not-found` for a unit with no unit file; `systemctl show` itself fails only when it
  # cannot ask systemd.
  load=$(systemctl show --property=LoadState --value -- "$u")
  # `is-active` prints the unit's state and exits 3 when that state is not "active": the printed state
  # is the answer.
  rc=0; active=$(systemctl is-active -- "$u") || rc=$?
  [ "$rc" -eq 0 ] || [ "$rc" -eq 3 ] || return "$rc"
  if [ "$load" = not-found ]; then
    # No unit file: `is-enabled` fails, having no state to print.
    enabled=not-found
  else
    # `is-enabled` prints the state and exits 1 when it is not an enabled one (disabled, masked…).
    rc=0; enabled=$(systemctl is-enabled -- "$u") || rc=$?
    [ "$rc" -eq 0 ] || {{ [ "$rc" -eq 1 ] && [ -n "$enabled" ]; }} || return "$rc"
  fi
  printf '%s\t%s\t%s\n' "$u" "$active" "$enabled"
done"#
        ),
    );
    if let Some(firewall) = &expected.firewall {
        s.section(Section::UfwStatus, UFW_STATUS);
        s.section(Section::UfwRules4, "kiln_grep '^### tuple ###' /etc/ufw/user.rules");
        s.section(Section::UfwRules6, "kiln_grep '^### tuple ###' /etc/ufw/user6.rules");
        s.section(Section::Iptables4, IPTABLES4);
        s.section(Section::Iptables6, IPTABLES6);
        if firewall.docker_user.is_some() {
            s.section(Section::DockerUser, IPTABLES4);
        }
    }
    if expected.docker_live_restore.is_some() {
        s.section(Section::DockerLiveRestore, DOCKER_LIVE_RESTORE);
    }
    if !expected.update_origins.is_empty() {
        s.section(Section::UpdateOrigins, UPDATE_ORIGINS);
        s.section(Section::AptPeriodic, APT_PERIODIC);
    }
    s.section(Section::Listeners, LISTENERS);
    s.section(
        Section::SecretFiles,
        &format!(
            r#"for f in {secret_files}; do
  # A missing file is an answer: the check says whether it should exist.
  if [ -e "$f" ] || [ -L "$f" ]; then stat --printf '%n\t%a\t%U\n' -- "$f"; else printf '%s\tmissing\t-\n' "$f"; fi
done"#
        ),
    );
    s.section(Section::Timezone, "cat /etc/timezone");
    s.section(Section::Locale, "cat /etc/default/locale");
    // `locale` says why it cannot use a locale ("Cannot set LC_CTYPE…") on stderr, and still exits 0
    // with the C charset: that message is what the check reads, so it belongs in the section.
    s.section(Section::LocaleCharmap, &format!("env -i LANG={} locale charmap 2>&1", shell_quote(&expected.locale)));
    s.section(
        Section::Files,
        &format!(
            r#"for f in {files}; do
  if [ -f "$f" ]; then
    meta=$(stat --printf '%n\t%a\t%U\t%G' -- "$f")
    sum=$(sha256sum < "$f")
    printf '%s\t%s\n' "$meta" "${{sum%% *}}"
  else
    # Missing (or not a regular file): an answer the check reports.
    printf '%s\tmissing\n' "$f"
  fi
done"#
        ),
    );
    // The stand-ins write their record when the service runs them: no record is an answer.
    if expected.cloudflared_args.is_some() {
        s.section(Section::StandinCloudflared, "kiln_cat_if_present /var/lib/kiln-standin/cloudflared.json");
    }
    if expected.tailscale_up_args.is_some() {
        s.section(Section::StandinTailscale, "kiln_cat_if_present /var/lib/kiln-standin/tailscale-up.json");
    }
    if !expected.sysctls.is_empty() {
        // `sysctl KEY…` prints `KEY = VALUE` per key; a key the kernel does not have fails the section.
        let keys = words(expected.sysctls.iter().map(|k| shell_quote(&k.key)).collect());
        s.section(Section::Sysctl, &format!("sysctl {keys}"));
    }
    if expected.journal.is_some() {
        // One JSON object per line; `-b`: this boot's messages only; `-q`: no notes about journals the
        // caller cannot read (root reads all).
        s.section(
            Section::JournalUsage,
            &format!(
                "journalctl -q -b -o json --output-fields=JOURNAL_NAME,JOURNAL_PATH,MAX_USE MESSAGE_ID={JOURNAL_USAGE_MESSAGE_ID}"
            ),
        );
    }
    if !expected.tmp_mount_options.is_empty() {
        s.section(
            Section::TmpMount,
            r#"# findmnt exits 1, printing nothing, when /tmp is no mount point: an answer the check reports.
rc=0; out=$(findmnt -J --mountpoint /tmp) || rc=$?
if [ "$rc" -eq 1 ] && [ -z "$out" ]; then rc=0; fi
[ "$rc" -eq 0 ] || return "$rc"
printf '%s\n' "$out""#,
        );
    }
    s.section(Section::FailedUnits, "systemctl --failed --plain --no-legend");
    if let Some(wireguard) = &expected.wireguard {
        // Never `wg show … dump` or `private-key`: those print the private key. No interface at all is an
        // answer (every WireGuard check then fails, saying so), hence the guard.
        let interface = shell_quote(&wireguard.interface);
        let when_up = |command: &str| format!("if [ -e /sys/class/net/{interface} ]; then {command}; fi");
        s.section(Section::WgAddress, &when_up(&format!("ip -o addr show dev {interface}")));
        s.section(Section::WgPort, &when_up(&format!("wg show {interface} listen-port")));
        s.section(Section::WgPeers, &when_up(&format!("wg show {interface} peers")));
        s.section(Section::WgPublicKey, &when_up(&format!("wg show {interface} public-key")));
        s.section(
            Section::WgPublicKeyFile,
            &format!("kiln_cat_if_present {}", shell_quote(&wireguard.public_key_file)),
        );
    }
    s
}

/// A probe of the firewall's status alone (`Section::UfwStatus`).
pub fn ufw_status_script() -> Script<Section> {
    let mut s = Script::new("");
    s.section(Section::UfwStatus, UFW_STATUS);
    s
}

/// A probe of the listening sockets alone (`Section::Listeners`).
pub fn listeners_script() -> Script<Section> {
    let mut s = Script::new("");
    s.section(Section::Listeners, LISTENERS);
    s
}

/// Text that is not what the section's command prints.
fn malformed(section: Section, line: &str, want: &str) -> anyhow::Error {
    anyhow!("section {}: `{line}` is not {want}", section.name())
}

/// `getent passwd` → the login shell; `None` when there is no such user.
pub fn parse_passwd_shell(text: &str) -> Result<Option<&str>> {
    if text.is_empty() {
        return Ok(None);
    }
    match text.split(':').collect::<Vec<_>>().as_slice() {
        [_, _, _, _, _, _, shell] => Ok(Some(shell)),
        _ => Err(malformed(Section::Passwd, text, "a passwd entry (7 fields)")),
    }
}

/// `deploy : deploy sudo docker` or `deploy sudo docker` (from `id -nG`) → group names.
pub fn parse_groups(text: &str) -> Vec<String> {
    text.split_whitespace().filter(|w| *w != ":").map(str::to_string).collect()
}

/// authorized_keys → its key lines (comments and blank lines dropped).
pub fn parse_authorized_keys(text: &str) -> BTreeSet<&str> {
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect()
}

/// `passwd -S` (`deploy L 2026-11-30 0 99999 7 -1`) → the password status (`L`, `NP` or `P`); `None`
/// when there is no such user.
pub fn parse_passwd_status(text: &str) -> Result<Option<&str>> {
    if text.is_empty() {
        return Ok(None);
    }
    match text.split_whitespace().nth(1) {
        Some(status @ ("L" | "NP" | "P")) => Ok(Some(status)),
        _ => Err(malformed(Section::PasswdStatus, text, "`passwd -S` output (user, L|NP|P, …)")),
    }
}

/// `sudo -l -U` → whether the user may run everything without a password.
pub fn parse_sudo_nopasswd_all(text: &str) -> bool {
    text.contains("NOPASSWD: ALL")
}

/// `sshd -T` (`keyword value` per line, keywords in lower case; a keyword with several values, such as
/// AllowUsers, on several lines) → keyword → its values, in order.
pub fn parse_sshd_options(text: &str) -> BTreeMap<&str, Vec<&str>> {
    let mut options: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let (keyword, value) = line.split_once(' ').unwrap_or((line, ""));
        options.entry(keyword).or_default().push(value.trim());
    }
    options
}

/// `dpkg-query -W -f='${Package}\t${db:Status-Abbrev}\n'` → the packages installed (`ii`).
pub fn parse_installed_packages(text: &str) -> Result<BTreeSet<&str>> {
    let mut installed = BTreeSet::new();
    for line in text.lines() {
        let (name, status) = line
            .split_once('\t')
            .ok_or_else(|| malformed(Section::Packages, line, "`PACKAGE<TAB>STATUS` from dpkg-query"))?;
        if status.trim() == "ii" {
            installed.insert(name);
        }
    }
    Ok(installed)
}

/// The units section (`UNIT<TAB>ACTIVE<TAB>ENABLED`) → unit → (active state, enabled state).
pub fn parse_units(text: &str) -> Result<BTreeMap<&str, (&str, &str)>> {
    text.lines()
        .map(|line| match line.split('\t').collect::<Vec<_>>().as_slice() {
            [unit, active, enabled] => Ok((*unit, (*active, *enabled))),
            _ => Err(malformed(Section::Units, line, "`UNIT<TAB>ACTIVE<TAB>ENABLED`")),
        })
        .collect()
}

/// What `ufw status verbose` says first: `Status: …` and the `Default: …` policies line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UfwStatus<'a> {
    /// `Status: active` or `Status: inactive`.
    pub status: &'a str,
    /// `Default: deny (incoming), allow (outgoing), deny (routed)`, or "" (an inactive ufw prints none).
    pub defaults: &'a str,
}

pub fn parse_ufw_status(text: &str) -> Result<UfwStatus<'_>> {
    let status = text.lines().next().unwrap_or("");
    if !status.starts_with("Status: ") {
        return Err(malformed(Section::UfwStatus, status, "`ufw status`'s first line (`Status: …`)"));
    }
    let defaults = text.lines().find(|l| l.starts_with("Default:")).unwrap_or("");
    Ok(UfwStatus { status, defaults })
}

/// `### tuple ### allow udp 41641 0.0.0.0/0 any 0.0.0.0/0 in comment=6869` → a rule.
/// Fields: action, proto, dport, dst, sport, src, direction[_iface], then optional `comment=HEX`.
pub fn parse_ufw_tuple(line: &str, ipv6: bool) -> Option<UfwRule> {
    let fields: Vec<&str> = line.strip_prefix("### tuple ###")?.split_whitespace().collect();
    if fields.len() < 7 {
        return None;
    }
    let direction = fields[6];
    let interface = direction.split_once('_').map(|(_, iface)| iface.to_string());
    let comment = fields.get(7).and_then(|c| c.strip_prefix("comment=")).and_then(decode_hex);
    Some(UfwRule {
        ipv6,
        action: fields[0].to_string(),
        proto: fields[1].to_string(),
        port: fields[2].to_string(),
        from: fields[5].to_string(),
        interface,
        comment,
    })
}

/// A ufw-rules section (only `### tuple ###` lines) → the rules; any other line is refused.
pub fn parse_ufw_rules(text: &str, ipv6: bool) -> Result<Vec<UfwRule>> {
    let section = if ipv6 { Section::UfwRules6 } else { Section::UfwRules4 };
    text.lines()
        .map(|line| parse_ufw_tuple(line, ipv6).ok_or_else(|| malformed(section, line, "a ufw `### tuple ###` line")))
        .collect()
}

fn decode_hex(hex: &str) -> Option<String> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> =
        (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok()).collect();
    String::from_utf8(bytes?).ok()
}

/// `iptables -S` output → the rules of `chain` (`-A CHAIN …` lines). Every line must be a rule
/// specification (`-P`, `-N` or `-A`).
pub fn chain_rules<'a>(section: Section, text: &'a str, chain: &str) -> Result<Vec<&'a str>> {
    let append = format!("-A {chain} ");
    let mut rules = Vec::new();
    for line in text.lines() {
        if !["-P ", "-N ", "-A "].iter().any(|p| line.starts_with(p)) {
            return Err(malformed(section, line, "an `iptables -S` rule (-P, -N or -A)"));
        }
        if line.starts_with(&append) {
            rules.push(line);
        }
    }
    Ok(rules)
}

/// One line of `ss -H -ltnup` → a listener; addresses are reduced to `any`, `loopback` or `specific`.
///
/// The columns are Netid, State, Recv-Q, Send-Q, local address:port, peer address:port and (with `-p`,
/// for sockets a process holds) `users:(("NAME",pid=…,fd=…),…)`. A header line, a line with too few
/// columns or with values that are not these columns' is refused.
pub fn parse_ss_line(line: &str) -> Result<Listener> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let bad = |why: &str| anyhow!("not a line of `ss -H -ltnup` ({why}): `{line}`");
    let [netid, state, recv_q, send_q, local, peer, process @ ..] = fields.as_slice() else {
        return Err(bad("fewer than 6 columns"));
    };
    if matches!(*netid, "Netid" | "State") {
        return Err(bad("a header line; `-H` must leave it out"));
    }
    match (*netid, *state) {
        ("tcp", "LISTEN") | ("udp", "UNCONN") => {}
        _ => return Err(bad("Netid and State must be tcp LISTEN or udp UNCONN")),
    }
    if recv_q.parse::<u64>().is_err() || send_q.parse::<u64>().is_err() {
        return Err(bad("Recv-Q and Send-Q must be numbers"));
    }
    if !peer.contains(':') {
        return Err(bad("the peer column must be ADDRESS:PORT"));
    }
    let (address, port) = local.rsplit_once(':').ok_or_else(|| bad("the local column must be ADDRESS:PORT"))?;
    let port: u16 = port.parse().map_err(|_| bad("the local port must be a number"))?;
    // `127.0.0.53%lo`, `[::]`, `[fe80::1]%ens3`: the interface and the brackets go.
    let address = address.split('%').next().unwrap_or(address);
    let address = address.trim_start_matches('[').trim_end_matches(']');
    let scope = match address {
        "*" | "0.0.0.0" | "::" => "any",
        a if a.starts_with("127.") || a == "::1" => "loopback",
        _ => "specific",
    };
    // No process column at all: the kernel holds the socket (WireGuard's does).
    let process = if process.is_empty() {
        KERNEL_SOCKET.to_string()
    } else {
        let users = process.join(" ");
        users
            .strip_prefix("users:((\"")
            .and_then(|rest| rest.split_once('"'))
            .map(|(name, _)| name.to_string())
            .ok_or_else(|| bad("the process column must be users:((\"NAME\",…))"))?
    };
    Ok(Listener { proto: netid.to_string(), port, scope: scope.into(), process })
}

/// The listeners section → every listener, or the first line that is not `ss`'s.
pub fn parse_listeners(text: &str) -> Result<Vec<Listener>> {
    text.lines().filter(|l| !l.trim().is_empty()).map(parse_ss_line).collect()
}

/// The secret-files section (`PATH<TAB>MODE<TAB>OWNER`, or `PATH<TAB>missing<TAB>-`) → path → (mode,
/// owner), `None` for a missing file.
pub fn parse_secret_files(text: &str) -> Result<BTreeMap<&str, Option<(&str, &str)>>> {
    text.lines()
        .map(|line| match line.split('\t').collect::<Vec<_>>().as_slice() {
            [path, "missing", "-"] => Ok((*path, None)),
            [path, mode, owner] if is_mode(mode) => Ok((*path, Some((*mode, *owner)))),
            _ => Err(malformed(Section::SecretFiles, line, "`PATH<TAB>MODE<TAB>OWNER` or `PATH<TAB>missing<TAB>-`")),
        })
        .collect()
}

/// A file as the files section shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFacts<'a> {
    pub mode: &'a str,
    pub owner: &'a str,
    pub group: &'a str,
    pub sha256: &'a str,
}

/// The files section (`PATH<TAB>MODE<TAB>OWNER<TAB>GROUP<TAB>SHA256`, or `PATH<TAB>missing`) → path →
/// facts, `None` for a missing file.
pub fn parse_files(text: &str) -> Result<BTreeMap<&str, Option<FileFacts<'_>>>> {
    text.lines()
        .map(|line| match line.split('\t').collect::<Vec<_>>().as_slice() {
            [path, "missing"] => Ok((*path, None)),
            [path, mode, owner, group, sha256]
                if is_mode(mode) && sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                Ok((*path, Some(FileFacts { mode, owner, group, sha256 })))
            }
            _ => Err(malformed(
                Section::Files,
                line,
                "`PATH<TAB>MODE<TAB>OWNER<TAB>GROUP<TAB>SHA256` or `PATH<TAB>missing`",
            )),
        })
        .collect()
}

/// An octal mode as `stat %a` prints it.
fn is_mode(text: &str) -> bool {
    (1..=4).contains(&text.len()) && text.bytes().all(|b| (b'0'..=b'7').contains(&b))
}

/// /etc/default/locale → the value of `LANG` (unquoted), if set.
pub fn parse_lang(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix("LANG=")).map(|v| v.trim_matches('"'))
}

/// A stand-in's JSON record; `Value::Null` when there is none (the stand-in never ran). A record that
/// is not JSON is refused: the stand-ins are the harness's own.
pub fn parse_standin_record(section: Section, text: &str) -> Result<Value> {
    if text.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(text).with_context(|| format!("section {}: the stand-in's record is not JSON", section.name()))
}

/// `ip -o addr show dev IFACE` → the addresses (`10.77.0.1/24`), link-local ones left out.
///
/// `5: wg0    inet 10.77.0.1/24 scope global wg0\       valid_lft forever preferred_lft forever`
pub fn parse_interface_addresses(text: &str) -> Result<Vec<&str>> {
    let mut addresses = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace().skip_while(|w| *w != "inet" && *w != "inet6");
        let (Some(_), Some(address)) = (words.next(), words.next()) else {
            return Err(malformed(Section::WgAddress, line, "a line of `ip -o addr show` (… inet ADDRESS …)"));
        };
        if !address.starts_with("fe80:") {
            addresses.push(address);
        }
    }
    Ok(addresses)
}

/// `sysctl KEY…` (`net.ipv4.tcp_syncookies = 1` per line) → key → value.
pub fn parse_sysctl(text: &str) -> Result<BTreeMap<&str, &str>> {
    text.lines()
        .map(|line| line.split_once(" = ").ok_or_else(|| malformed(Section::Sysctl, line, "`KEY = VALUE` from sysctl")))
        .collect()
}

/// One "Disk space used by the journal" message: which journal journald writes, and its cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalUsage {
    /// `System Journal` (on disk) or `Runtime Journal` (in /run).
    pub name: String,
    pub path: String,
    /// `MAX_USE`, in bytes.
    pub max_use: u64,
}

/// `journalctl -o json` of journald's usage messages (one object per line, field values as strings) →
/// the messages, oldest first.
pub fn parse_journal_usage(text: &str) -> Result<Vec<JournalUsage>> {
    let section = Section::JournalUsage;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let entry: Value = serde_json::from_str(line)
                .with_context(|| format!("section {}: `{line}` is not a journal entry in JSON", section.name()))?;
            let field = |name: &str| {
                entry[name].as_str().ok_or_else(|| malformed(section, line, &format!("an entry with a `{name}` text")))
            };
            let max_use = field("MAX_USE")?;
            Ok(JournalUsage {
                name: field("JOURNAL_NAME")?.to_string(),
                path: field("JOURNAL_PATH")?.to_string(),
                max_use: max_use.parse().map_err(|_| malformed(section, line, "a MAX_USE in bytes"))?,
            })
        })
        .collect()
}

/// `findmnt -J --mountpoint /tmp` → the options of what is mounted there (`None`: /tmp is no mount point).
pub fn parse_tmp_mount(text: &str) -> Result<Option<Vec<String>>> {
    if text.is_empty() {
        return Ok(None);
    }
    let section = Section::TmpMount;
    let listing: Value = serde_json::from_str(text)
        .with_context(|| format!("section {}: not what `findmnt -J` prints", section.name()))?;
    // The last file system mounted on /tmp is the one in use (findmnt lists each one stacked there).
    let options = listing["filesystems"]
        .as_array()
        .and_then(|all| all.last())
        .and_then(|fs| fs["options"].as_str())
        .ok_or_else(|| malformed(section, text, "`{\"filesystems\": [{…, \"options\": \"…\"}]}`"))?;
    Ok(Some(options.split(',').map(str::to_string).collect()))
}

/// `wg show IFACE listen-port` → the port (`None`: no interface, so nothing printed).
pub fn parse_listen_port(text: &str) -> Result<Option<u16>> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| malformed(Section::WgPort, text, "a port number"))
}

/// `wg show IFACE peers` → the peers' public keys, sorted.
pub fn parse_wireguard_peers(text: &str) -> Result<Vec<&str>> {
    let mut peers: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if let Some(bad) = peers.iter().find(|p| !crate::model::is_wireguard_key(p)) {
        return Err(malformed(Section::WgPeers, bad, "a WireGuard public key"));
    }
    peers.sort_unstable();
    Ok(peers)
}

#[cfg(test)]
mod tests {
    //! Each section parser on the sections captured from real guests (`fixtures/*-probe.txt`), and on
    //! text its command never prints.

    use super::super::protocol::testing::{assert_bash_syntax, check_names, run_bash, stubs};
    use super::*;

    const SEED: &str = include_str!("fixtures/seed-host-probe.txt");
    const AWKWARD: &str = include_str!("fixtures/awkward-probe.txt");
    const WIREGUARD: &str = include_str!("fixtures/wireguard-probe.txt");

    fn captured(capture: &str) -> StateProbe {
        StateProbe::parse(capture, 0, "").expect("a whole probe output")
    }

    #[test]
    fn wire_names() {
        check_names::<Section>();
    }

    #[test]
    fn user_sections() {
        let seed = captured(SEED);
        assert_eq!(parse_passwd_shell(seed.get(Section::Passwd).unwrap()).unwrap(), Some("/bin/bash"));
        assert_eq!(parse_passwd_shell("").unwrap(), None);
        assert!(parse_passwd_shell("deploy:x:1000").is_err());
        assert_eq!(parse_groups(seed.get(Section::Groups).unwrap()), ["deploy", "docker"]);
        let keys = parse_authorized_keys(seed.get(Section::Keys).unwrap());
        assert_eq!(keys.len(), 2);
        assert!(keys.iter().all(|k| k.starts_with("ssh-ed25519 AAAA")));
        assert_eq!(parse_passwd_status(seed.get(Section::PasswdStatus).unwrap()).unwrap(), Some("L"));
        assert_eq!(parse_passwd_status("").unwrap(), None);
        assert!(parse_passwd_status("passwd: user 'x' does not exist").is_err());
        assert!(parse_sudo_nopasswd_all(seed.get(Section::Sudo).unwrap()));
        assert!(!parse_sudo_nopasswd_all("User deploy is not allowed to run sudo on app-1."));
        let sshd = parse_sshd_options(seed.get(Section::Sshd).unwrap());
        assert_eq!(sshd["permitrootlogin"], ["no"]);
        assert_eq!(sshd["passwordauthentication"], ["no"]);
        assert_eq!(sshd["kbdinteractiveauthentication"], ["no"]);
        // A keyword sshd prints once per value keeps each.
        let listed = parse_sshd_options("allowusers deploy\nallowusers root\nport 22\n");
        assert_eq!(listed["allowusers"], ["deploy", "root"]);
    }

    #[test]
    fn packages_and_units() {
        let seed = captured(SEED);
        let installed = parse_installed_packages(seed.get(Section::Packages).unwrap()).unwrap();
        assert!(installed.contains("docker.io") && installed.contains("cloudflared"), "{installed:?}");
        assert!(installed.len() > 200);
        assert!(parse_installed_packages("dpkg-query: no packages found").is_err());
        let units = parse_units(seed.get(Section::Units).unwrap()).unwrap();
        assert_eq!(units.get("tailscaled.service"), Some(&("active", "enabled")));
        assert_eq!(units.get("systemd-timesyncd.service"), Some(&("active", "enabled")));
        assert_eq!(units.get("kiln-cloudflared-upgrade.path"), Some(&("active", "enabled")));
        assert_eq!(units.get("apt-daily-upgrade.timer"), Some(&("active", "enabled")));
        assert_eq!(units.len(), 10);
        let wg = captured(WIREGUARD);
        let wireguard = parse_units(wg.get(Section::Units).unwrap()).unwrap();
        assert_eq!(wireguard.get("wg-quick@wg0.service"), Some(&("active", "enabled")));
        assert!(parse_units("ssh.service active").is_err());
    }

    #[test]
    fn firewall_sections() {
        let seed = captured(SEED);
        let status = parse_ufw_status(seed.get(Section::UfwStatus).unwrap()).unwrap();
        assert_eq!(status.status, "Status: active");
        assert_eq!(status.defaults, "Default: deny (incoming), allow (outgoing), deny (routed)");
        assert!(parse_ufw_status("ERROR: You need to be root to run this script").is_err());
        let v4 = parse_ufw_rules(seed.get(Section::UfwRules4).unwrap(), false).unwrap();
        let v6 = parse_ufw_rules(seed.get(Section::UfwRules6).unwrap(), true).unwrap();
        assert_eq!((v4.len(), v6.len()), (2, 2));
        assert_eq!(v4[0].comment.as_deref(), Some("tailscale direct connections"));
        assert_eq!(v6[1].interface.as_deref(), Some("tailscale0"));
        assert!(parse_ufw_rules("### tuple ### allow", false).is_err());
        let awkward = parse_ufw_rules(captured(AWKWARD).get(Section::UfwRules6).unwrap(), true).unwrap();
        assert!(awkward.iter().any(|r| r.from.starts_with("2001:db8:")), "{awkward:?}");
        let input = chain_rules(Section::Iptables4, seed.get(Section::Iptables4).unwrap(), "ufw-user-input").unwrap();
        assert_eq!(
            input,
            ["-A ufw-user-input -p udp -m udp --dport 41641 -j ACCEPT", "-A ufw-user-input -i tailscale0 -j ACCEPT"]
        );
        let docker = chain_rules(Section::DockerUser, seed.get(Section::DockerUser).unwrap(), "DOCKER-USER").unwrap();
        assert_eq!(docker.len(), 7);
        // The whole table, as the probe now reads it: other chains are left out.
        let table = "-P INPUT DROP\n-N DOCKER-USER\n-N ufw-user-input\n-A INPUT -j ufw-user-input\n-A ufw-user-input -p tcp -m tcp --dport 22 -j ACCEPT\n-A DOCKER-USER -j RETURN";
        assert_eq!(chain_rules(Section::Iptables4, table, "ufw-user-input").unwrap().len(), 1);
        assert!(chain_rules(Section::Iptables4, "iptables: No chain/target/match by that name.", "x").is_err());
    }

    #[test]
    fn ss_lines() {
        let l = parse_ss_line(
            "tcp   LISTEN 0      128          0.0.0.0:22        0.0.0.0:*    users:((\"sshd\",pid=612,fd=3))",
        )
        .unwrap();
        assert_eq!((l.proto.as_str(), l.port, l.scope.as_str(), l.process.as_str()), ("tcp", 22, "any", "sshd"));
        let l = parse_ss_line(
            "udp   UNCONN 0      0       127.0.0.53%lo:53        0.0.0.0:*    users:((\"systemd-resolve\",pid=1,fd=3))",
        )
        .unwrap();
        assert_eq!((l.scope.as_str(), l.process.as_str()), ("loopback", "systemd-resolve"));
        let l = parse_ss_line(
            "tcp   LISTEN 0      128             [::]:22           [::]:*    users:((\"sshd\",pid=612,fd=4))",
        )
        .unwrap();
        assert_eq!(l.scope, "any");
        let l =
            parse_ss_line("udp UNCONN 0 0 [fe80::5054:ff:fe12:3456]%ens3:546 [::]:* users:((\"dhclient\",pid=1,fd=6))")
                .unwrap();
        assert_eq!((l.port, l.scope.as_str()), (546, "specific"));
        // Two processes share the socket: the first is named. A name with a space survives.
        let l = parse_ss_line("tcp LISTEN 0 4096 *:80 *:* users:((\"my app\",pid=7,fd=3),(\"my app\",pid=8,fd=3))")
            .unwrap();
        assert_eq!((l.scope.as_str(), l.process.as_str()), ("any", "my app"));
    }

    #[test]
    fn ss_output_that_is_not_ss_h_is_refused() {
        for (line, why) in [
            ("Netid State  Recv-Q Send-Q Local Address:Port Peer Address:PortProcess", "header"),
            ("State  Recv-Q Send-Q Local Address:Port  Peer Address:Port Process", "header"),
            ("tcp LISTEN 0 128 0.0.0.0:22", "fewer than 6 columns"),
            ("LISTEN 0 128 0.0.0.0:22 0.0.0.0:* users:((\"sshd\",pid=1,fd=3))", "tcp LISTEN or udp UNCONN"),
            ("tcp ESTAB 0 0 10.0.2.15:22 10.0.2.2:5555", "tcp LISTEN or udp UNCONN"),
            ("tcp LISTEN x 128 0.0.0.0:22 0.0.0.0:*", "numbers"),
            ("tcp LISTEN 0 128 0.0.0.0 0.0.0.0:*", "ADDRESS:PORT"),
            ("tcp LISTEN 0 128 0.0.0.0:ssh 0.0.0.0:*", "port must be a number"),
            ("tcp LISTEN 0 128 0.0.0.0:22 0.0.0.0:* sshd", "users:"),
        ] {
            let error = parse_ss_line(line).unwrap_err().to_string();
            assert!(error.contains(why), "{line}: {error}");
        }
        assert!(parse_listeners("Netid State Recv-Q Send-Q Local Address:Port Peer Address:Port Process\n").is_err());
    }

    #[test]
    fn listeners_from_real_guests() {
        let seed = parse_listeners(captured(SEED).get(Section::Listeners).unwrap()).unwrap();
        assert_eq!(seed.len(), 13);
        assert!(seed.iter().any(|l| l.process == "tailscaled" && l.port == 41641 && l.scope == "any"));
        assert!(seed.iter().any(|l| l.process == "systemd-network" && l.port == 68 && l.scope == "specific"));
        let wireguard = parse_listeners(captured(WIREGUARD).get(Section::Listeners).unwrap()).unwrap();
        let kernel: Vec<_> = wireguard.iter().filter(|l| l.process == KERNEL_SOCKET).collect();
        assert_eq!(kernel.len(), 2, "{wireguard:?}");
        assert!(kernel.iter().all(|l| l.port == 51820 && l.proto == "udp"));
    }

    #[test]
    fn file_sections() {
        let seed = captured(SEED);
        let secrets = parse_secret_files(seed.get(Section::SecretFiles).unwrap()).unwrap();
        assert_eq!(secrets["/etc/kiln/secrets/cloudflared-token"], Some(("600", "root")));
        assert_eq!(secrets["/etc/kiln/secrets/tailscale-auth-key"], None);
        assert!(parse_secret_files("stat: cannot statx '/x': Permission denied").is_err());
        let awkward = captured(AWKWARD);
        let files = parse_files(awkward.get(Section::Files).unwrap()).unwrap();
        let env = files["/etc/awkward/app.env"].as_ref().unwrap();
        assert_eq!((env.mode, env.owner, env.group), ("640", "root", "deploy"));
        assert_eq!(env.sha256, "753a7bbbb1e21d15b011334cf43b012fb88711feb9f6e04603e7bb1f931b4852");
        assert_eq!(parse_files("/etc/x\tmissing").unwrap()["/etc/x"], None);
        assert!(parse_files("/etc/x\t644\troot\troot\tnot-a-digest").is_err());
        assert!(parse_files(seed.get(Section::Files).unwrap()).unwrap().is_empty());
    }

    #[test]
    fn system_sections() {
        let awkward = captured(AWKWARD);
        assert_eq!(awkward.get(Section::Timezone).unwrap(), "US/Eastern");
        assert_eq!(parse_lang(awkward.get(Section::Locale).unwrap()), Some("de_DE.UTF-8"));
        assert_eq!(parse_lang("LANG=\"C.UTF-8\"\n"), Some("C.UTF-8"));
        assert_eq!(awkward.get(Section::LocaleCharmap).unwrap(), "UTF-8");
        let seed = captured(SEED);
        let record =
            parse_standin_record(Section::StandinCloudflared, seed.get(Section::StandinCloudflared).unwrap()).unwrap();
        assert_eq!(record["token_file_mode"], "600");
        assert_eq!(parse_standin_record(Section::StandinTailscale, "").unwrap(), Value::Null);
        assert!(parse_standin_record(Section::StandinTailscale, "{\"argv\": [").is_err());
        assert_eq!(seed.get(Section::FailedUnits).unwrap(), "");
    }

    #[test]
    fn wireguard_sections() {
        let wg = captured(WIREGUARD);
        assert_eq!(parse_interface_addresses(wg.get(Section::WgAddress).unwrap()).unwrap(), ["10.77.0.1/24"]);
        assert_eq!(parse_interface_addresses("").unwrap(), Vec::<&str>::new());
        assert!(parse_interface_addresses("Device \"wg0\" does not exist.").is_err());
        assert_eq!(parse_listen_port(wg.get(Section::WgPort).unwrap()).unwrap(), Some(51820));
        assert_eq!(parse_listen_port("").unwrap(), None);
        assert!(parse_listen_port("Unable to access interface: No such device").is_err());
        assert_eq!(parse_wireguard_peers(wg.get(Section::WgPeers).unwrap()).unwrap().len(), 1);
        assert!(parse_wireguard_peers("Unable to access interface: No such device").is_err());
        assert!(crate::model::is_wireguard_key(wg.get(Section::WgPublicKey).unwrap()));
    }

    #[test]
    fn hardening_sections() {
        let seed = captured(SEED);
        let sysctl = parse_sysctl(seed.get(Section::Sysctl).unwrap()).unwrap();
        assert_eq!(sysctl.get("net.ipv4.conf.all.log_martians"), Some(&"1"));
        assert_eq!(sysctl.len(), 21);
        assert!(
            parse_sysctl("sysctl: cannot stat /proc/sys/net/ipv6/conf/all/accept_ra: No such file or directory")
                .is_err()
        );
        let usage = parse_journal_usage(seed.get(Section::JournalUsage).unwrap()).unwrap();
        assert_eq!(usage.len(), 3);
        assert_eq!(usage[0].name, "Runtime Journal");
        assert!(usage[2].path.starts_with("/var/log/journal/"));
        assert_eq!(usage[2].max_use, 524_288_000);
        assert_eq!(parse_journal_usage("").unwrap(), []);
        assert!(parse_journal_usage("-- No entries --").is_err());
        assert!(
            parse_journal_usage(r#"{"JOURNAL_NAME":"System Journal","JOURNAL_PATH":"/var/log/journal/x"}"#).is_err()
        );
        let tmp = parse_tmp_mount(seed.get(Section::TmpMount).unwrap()).unwrap().unwrap();
        assert!(tmp.iter().any(|o| o == "nosuid") && tmp.iter().any(|o| o == "nodev"), "{tmp:?}");
        assert_eq!(parse_tmp_mount("").unwrap(), None);
        assert!(parse_tmp_mount("findmnt: /tmp: not found").is_err());
        assert!(parse_tmp_mount("{\"filesystems\": []}").is_err());
    }

    /// The scripts for the fixtures' expected states and for one that has every section.
    fn scripts() -> Vec<Script<Section>> {
        let mut all = super::super::tests::seed_expected();
        all.wireguard = super::super::wireguard::tests::expected().wireguard;
        all.files = super::super::tests::awkward_expected().files;
        all.firewall.as_mut().unwrap().docker_user = Some(vec!["8080/tcp".into()]);
        vec![
            probe_script(&super::super::tests::seed_expected()),
            probe_script(&super::super::tests::awkward_expected()),
            probe_script(&super::super::wireguard::tests::expected()),
            probe_script(&all),
            ufw_status_script(),
            listeners_script(),
        ]
    }

    #[test]
    fn every_script_is_valid_bash() {
        for script in scripts() {
            assert_bash_syntax(&script.text());
        }
        let all = &scripts()[3];
        assert_eq!(all.sections().len(), Section::ALL.len(), "one expected state must produce every section");
    }

    /// The state probe run on this machine, with stubs for the guest's commands this machine may lack
    /// (each says what a Debian 12 guest says): every section comes back, and a failing one is named.
    #[test]
    fn the_state_probe_runs_and_reports_each_failure() {
        let guest = stubs(&[
            (
                "systemctl",
                r#"case "$1 $2" in
  "show --property=LoadState") case "$5" in missing.service) echo not-found ;; *) echo loaded ;; esac ;;
  "is-active --") case "$3" in ssh.service) echo active ;; *) echo inactive; exit 3 ;; esac ;;
  "is-enabled --") case "$3" in ssh.service) echo enabled ;; missing.service) echo "Failed to get unit file state for $3: No such file or directory" >&2; exit 1 ;; *) echo disabled; exit 1 ;; esac ;;
  "--failed --plain") ;;
  *) echo "unexpected systemctl $*" >&2; exit 99 ;;
esac"#,
            ),
            ("sshd", "printf 'port 22\\npermitrootlogin no\\n'"),
            ("sudo", "echo \"User $4 is not allowed to run sudo on $(hostname).\"; exit 1"),
            ("passwd", "echo \"$2 P 2024-01-01 0 99999 7 -1\""),
            ("ss", "echo 'tcp LISTEN 0 128 0.0.0.0:22 0.0.0.0:* users:((\"sshd\",pid=1,fd=3))'"),
            ("ufw", "printf 'Status: inactive\\n'"),
            ("iptables", "printf -- '-P INPUT ACCEPT\\n'"),
            ("ip6tables", "printf -- '-P INPUT ACCEPT\\n'"),
            // No journal on this machine's disk to read; the section is then empty.
            ("journalctl", "exit 0"),
            ("docker", "echo true"),
        ]);
        let mut expected = super::super::tests::seed_expected();
        // A user this machine has, so the user sections have an entry to read.
        expected.user.name = "root".into();
        expected.units = ["ssh.service", "docker.service", "missing.service"]
            .iter()
            .map(|u| crate::expect::ExpectedUnit { name: (*u).into(), active: true, enabled: true })
            .collect();
        expected.secret_files[0].path = "/etc/hostname".into();
        expected.files = super::super::tests::awkward_expected().files;
        expected.files[0].path = "/etc/hostname".into();
        expected.locale = "C.UTF-8".into();
        let script = probe_script(&expected).text();
        // /etc/timezone and /etc/default/locale may not exist on this machine: read from a stand-in.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("timezone"), "Etc/UTC\n").unwrap();
        std::fs::write(dir.path().join("locale"), "LANG=C.UTF-8\n").unwrap();
        let script = script
            .replace("cat /etc/timezone", &format!("cat {}/timezone", dir.path().display()))
            .replace("cat /etc/default/locale", &format!("cat {}/locale", dir.path().display()))
            .replace("/etc/ufw/user.rules", "/dev/null")
            .replace("/etc/ufw/user6.rules", "/dev/null");
        let (exit, stdout, stderr) = run_bash(&script, Some(guest.path()), b"");
        let probe = StateProbe::parse(&stdout, exit, &stderr).unwrap_or_else(|e| panic!("{e:#}\n{stdout}"));
        let units = parse_units(probe.get(Section::Units).unwrap()).unwrap();
        assert_eq!(units["ssh.service"], ("active", "enabled"));
        assert_eq!(units["docker.service"], ("inactive", "disabled"));
        assert_eq!(units["missing.service"], ("inactive", "not-found"));
        assert_eq!(parse_passwd_shell(probe.get(Section::Passwd).unwrap()).unwrap().map(|s| !s.is_empty()), Some(true));
        assert!(probe.get(Section::Sudo).unwrap().contains("is not allowed to run sudo"));
        assert_eq!(parse_sshd_options(probe.get(Section::Sshd).unwrap())["permitrootlogin"], ["no"]);
        let secrets = parse_secret_files(probe.get(Section::SecretFiles).unwrap()).unwrap();
        assert!(secrets["/etc/hostname"].is_some());
        assert_eq!(secrets["/etc/kiln/secrets/tailscale-auth-key"], None);
        let files = parse_files(probe.get(Section::Files).unwrap()).unwrap();
        assert_eq!(files["/etc/hostname"].as_ref().unwrap().sha256.len(), 64);
        assert_eq!(files["/etc/awkward/app.env"], None);
        assert_eq!(parse_listeners(probe.get(Section::Listeners).unwrap()).unwrap().len(), 1);
        assert_eq!(probe.get(Section::StandinCloudflared).unwrap(), "");
        assert_eq!(probe.get(Section::UfwRules4).unwrap(), "");

        // The same probe where a command fails for real: the harness error names it, with its stderr.
        let broken = stubs(&[
            ("sshd", "echo 'sshd: no hostkeys available -- exiting.' >&2; exit 255"),
            ("systemctl", "echo 'Failed to connect to bus: No such file or directory' >&2; exit 1"),
        ]);
        let path = format!("{}:{}", broken.path().display(), guest.path().display());
        let (exit, stdout, stderr) = run_bash(&script, Some(std::path::Path::new(&path)), b"");
        let error = format!("{:#}", StateProbe::parse(&stdout, exit, &stderr).unwrap_err());
        assert!(
            error.contains("probe command for section sshd failed (exit 255): sshd: no hostkeys available"),
            "{error}"
        );
        assert!(error.contains("probe command for section units failed (exit 1): Failed to connect to bus"), "{error}");
        assert!(error.contains("section failed-units failed (exit 1)"), "{error}");
    }
}
