//! Ports, the UFW firewall and Docker's published-port policy.

use crate::profile::v1::DockerSource;
use std::net::IpAddr;

use super::{AllowRule, Cidr, Docker, Firewall, Proto, ReleaseFacts, error};
use crate::catalog::Code;
use crate::consumers::ufw;
use crate::diag::{Diagnostic, Report};
use crate::profile::v1::{self, PortSpec};

/// An inclusive port range; a single port has `start == end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    pub fn overlaps(&self, other: &PortRange) -> bool {
        self.start <= other.end && other.start <= self.end
    }

    pub fn contains(&self, port: u16) -> bool {
        (self.start..=self.end).contains(&port)
    }
}

/// `22` or `8000:8010`, the spelling ufw and iptables take.
pub fn render_port_range(range: &PortRange) -> String {
    if range.start == range.end { range.start.to_string() } else { format!("{}:{}", range.start, range.end) }
}

fn port_range(spec: &PortSpec, path: &str, report: &mut Report) -> Option<PortRange> {
    let (start, end) = match spec {
        PortSpec::Single(n) => (*n, *n),
        PortSpec::Range(text) => {
            let parsed = text
                .split_once(['-', ':'])
                .and_then(|(a, b)| Some((a.trim().parse::<i64>().ok()?, b.trim().parse::<i64>().ok()?)));
            match parsed {
                Some(bounds) => bounds,
                None => {
                    error(report, Code::BadValue, path, format!("`{text}` is not a port or a range like `8000-8010`"));
                    return None;
                }
            }
        }
    };
    let in_range = |p: i64| (1..=65535).contains(&p);
    if !in_range(start) || !in_range(end) {
        error(
            report,
            Code::PortOutOfRange,
            path,
            format!("ports are 1 to 65535; found {}", if in_range(start) { end } else { start }),
        );
        return None;
    }
    if start > end {
        error(report, Code::PortOutOfRange, path, format!("the range {start}-{end} is reversed; write {end}-{start}"));
        return None;
    }
    Some(PortRange { start: start as u16, end: end as u16 })
}

pub(super) fn firewall(raw: &v1::Firewall, report: &mut Report) -> Firewall {
    let mut allow: Vec<AllowRule> = Vec::new();
    let mut origin: Vec<usize> = Vec::new();
    for (i, rule) in raw.allow.iter().enumerate() {
        let path = format!("$.firewall.allow[{i}]");
        let Some(ports) = port_range(&rule.port, &format!("{path}.port"), report) else { continue };
        let from = match rule.from.as_deref().map(|text| (text, Cidr::parse_address_or_network(text))) {
            None => None,
            Some((text, None)) => {
                error(
                    report,
                    Code::BadValue,
                    format!("{path}.from"),
                    format!("`{text}` is not an IP address or CIDR network"),
                );
                continue;
            }
            // ufw would silently widen `203.0.113.7/24` to the whole network (util.py
            // `normalize_address`): say so rather than open more than the profile seems to.
            Some((text, Some(cidr))) if cidr.has_host_bits() => {
                report.push(
                    Diagnostic::error(
                        Code::BadValue,
                        format!("{path}.from"),
                        format!("`{text}` has host bits set: ufw would open the whole network `{}`", cidr.network()),
                    )
                    .with_help(format!(
                        "write `{}`, or the single address `{}`",
                        cidr.network(),
                        cidr.address
                    )),
                );
                continue;
            }
            Some((_, Some(cidr))) => Some(cidr),
        };
        let comment = match rule.comment.as_deref().map(ufw::comment) {
            None => None,
            Some(Ok(text)) if text.chars().any(char::is_control) || text.chars().count() > 200 => {
                error(
                    report,
                    Code::BadValue,
                    format!("{path}.comment"),
                    "comments are one line of at most 200 characters",
                );
                None
            }
            Some(Ok(text)) => Some(text),
            Some(Err(why)) => {
                error(report, Code::BadValue, format!("{path}.comment"), why);
                None
            }
        };
        let candidate = AllowRule { ports, proto: rule.proto, from, comment };
        let earlier = allow
            .iter()
            .position(|r| r.proto == candidate.proto && r.from == candidate.from && r.ports.overlaps(&ports));
        match earlier {
            Some(j) if allow[j].ports == ports => {
                report.push(Diagnostic::warning(
                    Code::DuplicateRule,
                    &path,
                    format!("the same rule as firewall.allow[{}]", origin[j]),
                ));
            }
            Some(j) => report.push(Diagnostic::warning(
                Code::DuplicateRule,
                &path,
                format!("overlaps firewall.allow[{}]; merge them into one range", origin[j]),
            )),
            None => {
                allow.push(candidate);
                origin.push(i);
            }
        }
    }
    if raw.incoming == v1::Policy::Allow && !raw.allow.is_empty() {
        report.push(
            Diagnostic::warning(
                Code::ContradictoryRule,
                "$.firewall.incoming",
                "incoming traffic is allowed by default, so the allow rules do nothing",
            )
            .with_help("set `incoming: deny` to make the rules mean something"),
        );
    }
    let mut interfaces: Vec<String> = Vec::new();
    for (i, name) in raw.allow_in_on.iter().enumerate() {
        let path = format!("$.firewall.allow_in_on[{i}]");
        if let Err(why) = ufw::interface(name) {
            error(report, Code::BadValue, &path, format!("`{name}` is not an interface name ufw takes: {why}"));
        } else if interfaces.contains(name) {
            report.push(Diagnostic::warning(Code::DuplicateRule, path, format!("`{name}` is listed twice")));
        } else {
            interfaces.push(name.clone());
        }
    }
    Firewall { incoming: raw.incoming, outgoing: raw.outgoing, allow, allow_in_on: interfaces }
}

pub(super) fn docker(raw: &v1::Docker, report: &mut Report) -> Docker {
    let size_ok = raw.log.max_size.len() > 1
        && raw.log.max_size[..raw.log.max_size.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && raw.log.max_size.ends_with(['k', 'm', 'g']);
    if !size_ok {
        error(
            report,
            Code::BadValue,
            "$.docker.log.max_size",
            format!("`{}` is not a size like `10m` (k, m or g)", raw.log.max_size),
        );
    }
    if !(1..=100).contains(&raw.log.max_files) {
        error(report, Code::BadValue, "$.docker.log.max_files", "keep between 1 and 100 log files");
    }
    let default_bind = raw.published_ports.default_bind.parse::<IpAddr>().unwrap_or_else(|_| {
        error(
            report,
            Code::BadValue,
            "$.docker.published_ports.default_bind",
            format!(
                "`{}` is not an IP address (use `127.0.0.1`, or `0.0.0.0` for Docker's default)",
                raw.published_ports.default_bind
            ),
        );
        IpAddr::from([127, 0, 0, 1])
    });
    let mut open: Vec<(PortRange, Proto)> = Vec::new();
    for (i, rule) in raw.published_ports.open.iter().enumerate() {
        let path = format!("$.docker.published_ports.open[{i}]");
        if let Some(range) = port_range(&rule.port, &format!("{path}.port"), report) {
            if open.iter().any(|(r, p)| *p == rule.proto && r.overlaps(&range)) {
                report.push(Diagnostic::warning(Code::DuplicateRule, path, "this port is already open"));
            } else {
                open.push((range, rule.proto));
            }
        }
    }
    if !raw.published_ports.block_from_outside && !open.is_empty() {
        report.push(Diagnostic::warning(
            Code::ContradictoryRule,
            "$.docker.published_ports.open",
            "`open` lists exceptions to `block_from_outside`, which is off: every published port is open anyway",
        ));
    }
    Docker {
        source: raw.source,
        log_max_size: raw.log.max_size.clone(),
        log_max_files: raw.log.max_files.clamp(1, 100) as u32,
        default_bind,
        block_from_outside: raw.published_ports.block_from_outside,
        open,
    }
}

/// The packages each Docker source installs on a release: stated here once (the distribution's split from
/// the release table), installed by the lowering and checked against the profile's own packages.
pub fn docker_packages(source: DockerSource, release: &ReleaseFacts) -> &'static [&'static str] {
    match source {
        DockerSource::Distro => release.docker_io,
        DockerSource::DockerCe => &["docker-ce", "docker-ce-cli", "containerd.io"],
    }
}

/// Packages that cannot be installed beside a source's: Docker's install guide for Debian
/// ("Uninstall old versions": docker.io, docker-doc, docker-compose, podman-docker, containerd, runc
/// conflict with Docker CE), and the other way round Docker's own packages, which Debian's archive
/// does not have.
pub fn docker_conflicting_packages(source: DockerSource) -> &'static [&'static str] {
    match source {
        DockerSource::Distro => {
            &["docker-ce", "docker-ce-cli", "containerd.io", "docker-buildx-plugin", "docker-compose-plugin"]
        }
        // docker-cli (Debian 13's split-out client) ships /usr/bin/docker, as docker-ce-cli does.
        DockerSource::DockerCe => {
            &["docker.io", "docker-cli", "docker-doc", "docker-compose", "podman-docker", "containerd", "runc"]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_ranges() {
        let mut report = Report::default();
        assert_eq!(port_range(&PortSpec::Single(22), "$", &mut report), Some(PortRange { start: 22, end: 22 }));
        assert_eq!(
            port_range(&PortSpec::Range("8000-8010".into()), "$", &mut report),
            Some(PortRange { start: 8000, end: 8010 })
        );
        assert!(report.diagnostics.is_empty());
        assert_eq!(port_range(&PortSpec::Single(70000), "$", &mut report), None);
        assert_eq!(port_range(&PortSpec::Single(0), "$", &mut report), None);
        assert_eq!(port_range(&PortSpec::Range("9-3".into()), "$", &mut report), None);
        assert_eq!(port_range(&PortSpec::Range("http".into()), "$", &mut report), None);
        let codes: Vec<&str> = report.diagnostics.iter().map(|d| d.code.name()).collect();
        assert_eq!(codes, ["port-out-of-range", "port-out-of-range", "port-out-of-range", "invalid-value"]);
    }
}
