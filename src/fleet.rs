//! Fleets: one role profile, several hosts (`hosts:`). Each host is the role with its entry's values put in
//! place (host name, WireGuard tunnel address, Tailscale name, extra `vars`) and is validated exactly as a
//! profile of one host; a diagnostic about a value the entry gave points at the entry. What only a fleet can
//! get wrong (a per-host value at role level, two hosts with one name or one tunnel address, addresses in
//! different tunnel networks, an unknown `--host`) is checked here.

use std::collections::BTreeMap;

use crate::catalog::Code;
use crate::diag::{Diagnostic, Report, Severity};
use crate::model::Model;
use crate::model::cidr::Cidr;
use crate::profile::v1::{FleetHost, RawProfile};

/// One host of a fleet, validated.
#[derive(Debug, Clone)]
pub struct Member {
    pub hostname: String,
    pub model: Model,
}

/// The values a host's entry gives, and where its diagnostics go: `(path in the role, path in the entry)`.
fn entry_paths(index: usize, host: &FleetHost) -> Vec<(String, String)> {
    let at = format!("$.hosts[{index}]");
    let mut paths = vec![("$.host.hostname".to_string(), format!("{at}.hostname"))];
    if host.wireguard.is_some() {
        paths.push(("$.wireguard.address".into(), format!("{at}.wireguard.address")));
    }
    if host.tailscale.is_some() {
        paths.push(("$.tailscale.hostname".into(), format!("{at}.tailscale.hostname")));
    }
    for name in host.vars.keys() {
        paths.push((format!("$.vars.{name}"), format!("{at}.vars.{name}")));
    }
    paths
}

/// The role with host `index`'s values in place: a profile of one host.
pub fn specialize(raw: &RawProfile, index: usize) -> RawProfile {
    let host = &raw.hosts[index];
    let mut one = raw.clone();
    one.hosts = Vec::new();
    one.host.hostname = Some(host.hostname.clone());
    if let (Some(wireguard), Some(entry)) = (one.wireguard.as_mut(), &host.wireguard) {
        wireguard.address = Some(entry.address.clone());
    }
    if let (Some(tailscale), Some(entry)) = (one.tailscale.as_mut(), &host.tailscale) {
        tailscale.hostname = Some(entry.hostname.clone());
    }
    one.vars.extend(host.vars.clone());
    one
}

/// A diagnostic of host `index`'s profile, pointed at the entry when it is about a value the entry gave.
fn remap(mut diagnostic: Diagnostic, paths: &[(String, String)]) -> Diagnostic {
    for (role, entry) in paths {
        if diagnostic.path == *role || diagnostic.path.starts_with(&format!("{role}.")) {
            diagnostic.path = format!("{entry}{}", &diagnostic.path[role.len()..]);
            break;
        }
    }
    diagnostic
}

/// Validates every host of the fleet with `one` (the validation of a profile of one host). The members
/// come back only when no host has an error; a problem of the role is reported once, not once per host.
pub fn validate(
    raw: &RawProfile,
    one: &dyn Fn(&RawProfile) -> (Option<Model>, Report),
) -> (Option<Vec<Member>>, Report) {
    let mut report = Report::default();
    role_checks(raw, &mut report);
    if report.has_errors() {
        return (None, report);
    }
    let mut members = Vec::new();
    let mut found: Vec<(usize, Diagnostic)> = Vec::new();
    for (index, host) in raw.hosts.iter().enumerate() {
        let (model, host_report) = one(&specialize(raw, index));
        let paths = entry_paths(index, host);
        found.extend(host_report.diagnostics.into_iter().map(|d| (index, remap(d, &paths))));
        if let Some(model) = model {
            members.push(Member { hostname: host.hostname.clone(), model });
        }
    }
    // A problem at a role path is the role's, said once, unless a host without it got through validation
    // error-free: then it comes from some hosts' own values and is said for each of them, naming the host.
    // (A host that has another error may have stopped before the check: its silence proves nothing.)
    let key = |d: &Diagnostic| (d.code, d.path.clone(), d.message.clone());
    let has = |index: usize, wanted: &Diagnostic| found.iter().any(|(i, d)| *i == index && key(d) == key(wanted));
    let has_other_error = |index: usize, other_than: &Diagnostic| {
        found.iter().any(|(i, d)| *i == index && d.severity == Severity::Error && key(d) != key(other_than))
    };
    let mut seen: Vec<(Code, String, String)> = Vec::new();
    for (index, diagnostic) in &found {
        let in_entry = diagnostic.path.starts_with("$.hosts[");
        let some_hosts_only = (0..raw.hosts.len()).any(|i| !has(i, diagnostic) && !has_other_error(i, diagnostic));
        if in_entry || !some_hosts_only {
            if !seen.contains(&key(diagnostic)) {
                seen.push(key(diagnostic));
                report.push(diagnostic.clone());
            }
        } else {
            let mut named = diagnostic.clone();
            named.message = format!("host `{}`: {}", raw.hosts[*index].hostname, named.message);
            report.push(named);
        }
    }
    let all = members.len() == raw.hosts.len() && !report.has_errors();
    (all.then_some(members), report)
}

/// What only a fleet can get wrong.
fn role_checks(raw: &RawProfile, report: &mut Report) {
    let host_only = |path: &str, what: &str, entry: &str| {
        Diagnostic::error(
            Code::HostOnlyAtRole,
            path,
            format!("{what} is one host's, and this profile lists its `hosts`: give it in each host's entry"),
        )
        .with_help(format!("move it to `hosts[N].{entry}`"))
    };
    if raw.host.hostname.is_some() {
        report.push(host_only("$.host.hostname", "`host.hostname`", "hostname"));
    }
    if raw.wireguard.as_ref().is_some_and(|w| w.address.is_some()) {
        report.push(host_only("$.wireguard.address", "`wireguard.address`", "wireguard.address"));
    }
    if raw.tailscale.as_ref().is_some_and(|t| t.hostname.is_some()) {
        report.push(host_only("$.tailscale.hostname", "`tailscale.hostname`", "tailscale.hostname"));
    }
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    let mut addresses: BTreeMap<String, usize> = BTreeMap::new();
    let mut tailnet_names: BTreeMap<String, usize> = BTreeMap::new();
    let mut network: Option<(usize, Cidr)> = None;
    for (index, host) in raw.hosts.iter().enumerate() {
        let at = format!("$.hosts[{index}]");
        // Host names are case-insensitive (RFC 4343).
        if let Some(first) = names.insert(host.hostname.to_ascii_lowercase(), index) {
            report.push(Diagnostic::error(
                Code::DuplicateHost,
                format!("{at}.hostname"),
                format!("host `{}` is listed twice (also `hosts[{first}]`)", host.hostname),
            ));
        }
        match (&raw.wireguard, &host.wireguard) {
            (Some(_), None) => report.push(
                Diagnostic::error(
                    Code::MissingKey,
                    at.clone(),
                    "this host needs `wireguard.address`, its address in the role's tunnel",
                )
                .with_help("e.g. `wireguard: {address: 10.77.0.2/24}`"),
            ),
            (None, Some(_)) => report.push(Diagnostic::error(
                Code::BadValue,
                format!("{at}.wireguard"),
                "the role has no `wireguard` section for this address to belong to",
            )),
            (Some(_), Some(entry)) => {
                let path = format!("{at}.wireguard.address");
                // An address that does not parse is reported by the host's own validation.
                if let Some(cidr) = Cidr::parse(&entry.address) {
                    if let Some(first) = addresses.insert(cidr.address.to_string(), index) {
                        report.push(Diagnostic::error(
                            Code::DuplicateHost,
                            path.clone(),
                            format!("tunnel address {} is also `hosts[{first}]`'s", cidr.address),
                        ));
                    }
                    match &network {
                        None => network = Some((index, cidr)),
                        Some((first, net)) if !same_network(net, &cidr) => report.push(
                            Diagnostic::error(
                                Code::BadValue,
                                path,
                                format!(
                                    "`{}` is not in the tunnel network of `hosts[{first}]` ({})",
                                    entry.address,
                                    net.network()
                                ),
                            )
                            .with_help("every host of the role shares one tunnel: same network, same prefix length"),
                        ),
                        Some(_) => {}
                    }
                }
            }
            (None, None) => {}
        }
        // Two nodes asking for one name: the tailnet gives the second `NAME-1`, and Kamal's `servers` (which
        // `kiln kamal` prints from these names) would reach the first twice.
        if let Some(entry) = &host.tailscale
            && let Some(first) = tailnet_names.insert(entry.hostname.to_ascii_lowercase(), index)
        {
            report.push(Diagnostic::error(
                Code::DuplicateHost,
                format!("{at}.tailscale.hostname"),
                format!("Tailscale host name `{}` is also `hosts[{first}]`'s", entry.hostname),
            ));
        }
        if raw.tailscale.is_none() && host.tailscale.is_some() {
            report.push(Diagnostic::error(
                Code::BadValue,
                format!("{at}.tailscale"),
                "the role has no `tailscale` section for this name to belong to",
            ));
        }
    }
}

/// Both addresses with the same prefix length and the same network bits.
fn same_network(a: &Cidr, b: &Cidr) -> bool {
    a.network() == b.network()
}

/// The member named `name`, or a message naming the hosts (with a did-you-mean).
pub fn select<'a>(members: &'a [Member], name: &str) -> Result<&'a Member, String> {
    if let Some(member) = members.iter().find(|m| m.hostname.eq_ignore_ascii_case(name)) {
        return Ok(member);
    }
    let names: Vec<&str> = members.iter().map(|m| m.hostname.as_str()).collect();
    let near = crate::profile::shape::did_you_mean(name, names.iter().copied());
    let hint = near.map(|n| format!("; did you mean `{n}`?")).unwrap_or_default();
    Err(format!("the profile has no host `{name}` (its hosts: {}){hint}", names.join(", ")))
}
