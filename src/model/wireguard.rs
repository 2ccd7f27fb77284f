//! WireGuard: the interface, its key, its peers, and the switch that leaves the tunnel as the only way
//! to SSH. Keys, networks and endpoints are checked here so that `wg-quick` never sees a bad value.

use std::net::IpAddr;

use base64::Engine as _;

use super::{Cidr, SecretRef, error};
use super::{SSH_PORT, TAILSCALE_PORT};
use crate::catalog::Code;
use crate::diag::{Diagnostic, Report};
use crate::profile::v1::{self, Proto, RawProfile};

#[derive(Debug, Clone, PartialEq)]
pub struct Wireguard {
    pub interface: String,
    /// This host's tunnel address with its prefix, normalized (`10.77.0.1/24`).
    pub address: Cidr,
    pub listen_port: u16,
    /// `None`: the host generates its key at first boot.
    pub private_key: Option<SecretRef>,
    pub peers: Vec<WireguardPeer>,
    pub ssh_only_through_tunnel: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WireguardPeer {
    pub public_key: String,
    pub allowed_ips: Vec<Cidr>,
    pub endpoint: Option<String>,
    pub persistent_keepalive: Option<u16>,
}

/// A WireGuard key as `wg genkey` / `wg pubkey` print it: standard base64 of exactly 32 bytes.
pub fn is_key(text: &str) -> bool {
    text.len() == 44
        && text.ends_with('=')
        && base64::engine::general_purpose::STANDARD.decode(text).is_ok_and(|bytes| bytes.len() == 32)
}

/// The names `wg-quick` accepts for an interface (its own check: `[a-zA-Z0-9_=+.-]{1,15}`).
fn valid_interface(name: &str) -> bool {
    (1..=15).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_=+.-".contains(&b))
}

/// `203.0.113.7:51820`, `[2001:db8::7]:51820` or `vpn.example.com:51820`.
fn valid_endpoint(text: &str) -> bool {
    let Some((host, port)) = text.rsplit_once(':') else { return false };
    let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0) && port.bytes().all(|b| b.is_ascii_digit());
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            host.parse::<std::net::Ipv4Addr>().is_ok()
                || (super::host::check_hostname(host).is_ok() && host.contains('.'))
        }
    };
    port_ok && host_ok
}

pub(super) fn wireguard(raw: &v1::Wireguard, profile: &RawProfile, report: &mut Report) -> Wireguard {
    const AT: &str = "$.wireguard";
    if !valid_interface(&raw.interface) {
        error(
            report,
            Code::BadValue,
            format!("{AT}.interface"),
            format!("`{}` is not an interface name wg-quick accepts (1-15 of a-z A-Z 0-9 _ = + . -)", raw.interface),
        );
    } else if let Some(why) =
        profile.firewall.as_ref().and_then(|_| crate::consumers::ufw::interface(&raw.interface).err())
    {
        // The firewall names the interface in `ufw allow in on NAME`.
        error(
            report,
            Code::BadValue,
            format!("{AT}.interface"),
            format!("`{}` is not an interface name ufw takes: {why}", raw.interface),
        );
    }
    let raw_address = raw.address.as_deref().unwrap_or_default();
    let address = match Cidr::parse(raw_address) {
        // A fleet's hosts give theirs (`fleet.rs` puts each in place before this runs).
        _ if raw.address.is_none() => {
            report.push(
                Diagnostic::error(
                    Code::MissingKey,
                    AT,
                    "`wireguard` needs `address`, this host's address in the tunnel",
                )
                .with_help("e.g. `address: 10.77.0.1/24`; a profile listing `hosts` gives one per host there"),
            );
            Cidr { address: IpAddr::from([0, 0, 0, 0]), prefix: 32 }
        }
        Some(cidr) if cidr.address.is_unspecified() || cidr.address.is_multicast() || cidr.prefix == 0 => {
            error(
                report,
                Code::BadValue,
                format!("{AT}.address"),
                format!("`{raw_address}` cannot be a host's address"),
            );
            cidr
        }
        Some(cidr) => cidr,
        None => {
            report.push(
                Diagnostic::error(
                    Code::BadValue,
                    format!("{AT}.address"),
                    format!("`{raw_address}` is not an address with a prefix length"),
                )
                .with_help("write the host's tunnel address and the tunnel's size, e.g. `10.77.0.1/24`"),
            );
            Cidr { address: IpAddr::from([0, 0, 0, 0]), prefix: 32 }
        }
    };
    let listen_port = match u16::try_from(raw.listen_port) {
        Ok(port) if port > 0 => port,
        _ => {
            error(
                report,
                Code::PortOutOfRange,
                format!("{AT}.listen_port"),
                format!("ports are 1 to 65535; found {}", raw.listen_port),
            );
            51820
        }
    };
    let mut peers: Vec<WireguardPeer> = Vec::new();
    // Every allowed network so far, with the peer that declared it.
    let mut routed: Vec<(Cidr, usize)> = Vec::new();
    for (i, peer) in raw.peers.iter().enumerate() {
        let path = format!("{AT}.peers[{i}]");
        if !is_key(&peer.public_key) {
            report.push(
                Diagnostic::error(
                    Code::BadValue,
                    format!("{path}.public_key"),
                    "not a WireGuard public key: 44 characters of base64 encoding 32 bytes",
                )
                .with_help("use the output of `wg pubkey` on the peer"),
            );
        } else if let Some(j) = raw.peers[..i].iter().position(|p| p.public_key == peer.public_key) {
            error(
                report,
                Code::DuplicateRule,
                format!("{path}.public_key"),
                format!("the same key as wireguard.peers[{j}]: WireGuard knows a peer by its key, once"),
            );
        }
        if peer.allowed_ips.is_empty() {
            error(
                report,
                Code::BadValue,
                format!("{path}.allowed_ips"),
                "a peer needs at least one allowed network (its tunnel address, e.g. `10.77.0.2/32`)",
            );
        }
        let mut allowed = Vec::new();
        for (k, text) in peer.allowed_ips.iter().enumerate() {
            let at = format!("{path}.allowed_ips[{k}]");
            let Some(cidr) = Cidr::parse(text) else {
                error(report, Code::BadValue, &at, format!("`{text}` is not a CIDR network like `10.77.0.2/32`"));
                continue;
            };
            if cidr.network() != cidr {
                report.push(
                    Diagnostic::error(Code::BadValue, &at, format!("`{text}` has host bits set"))
                        .with_help(format!("write the network, `{}`", cidr.network())),
                );
                continue;
            }
            if let Some((_, j)) = routed.iter().find(|(other, _)| other.overlaps(&cidr)) {
                let whose =
                    if *j == i { "another entry of this peer".to_string() } else { format!("wireguard.peers[{j}]") };
                error(
                    report,
                    Code::ContradictoryRule,
                    &at,
                    format!(
                        "`{text}` overlaps an allowed network of {whose}: WireGuard routes an address to one peer only"
                    ),
                );
                continue;
            }
            routed.push((cidr, i));
            allowed.push(cidr);
        }
        if let Some(endpoint) = &peer.endpoint
            && !valid_endpoint(endpoint)
        {
            error(
                report,
                Code::BadValue,
                format!("{path}.endpoint"),
                format!(
                    "`{endpoint}` is not `host:port` (`203.0.113.7:51820`, `[2001:db8::7]:51820`, `vpn.example.com:51820`)"
                ),
            );
        }
        let keepalive = peer.persistent_keepalive.and_then(|k| {
            let value = u16::try_from(k).ok().filter(|k| *k > 0);
            if value.is_none() {
                error(
                    report,
                    Code::BadValue,
                    format!("{path}.persistent_keepalive"),
                    format!("a keepalive interval is 1 to 65535 seconds; found {k} (omit it to send none)"),
                );
            }
            value
        });
        peers.push(WireguardPeer {
            public_key: peer.public_key.clone(),
            allowed_ips: allowed,
            endpoint: peer.endpoint.clone(),
            persistent_keepalive: keepalive,
        });
    }
    check_ports_and_firewall(raw, listen_port, profile, report);
    Wireguard {
        interface: raw.interface.clone(),
        address,
        listen_port,
        private_key: raw.private_key.clone(),
        peers,
        ssh_only_through_tunnel: raw.ssh_only_through_tunnel,
    }
}

/// The listen port against the other UDP users, and the SSH switch against the firewall it relies on.
fn check_ports_and_firewall(raw: &v1::Wireguard, port: u16, profile: &RawProfile, report: &mut Report) {
    if profile.tailscale.is_some() && port == TAILSCALE_PORT {
        report.push(
            Diagnostic::error(
                Code::PortClash,
                "$.wireguard.listen_port",
                format!("tailscaled already listens on {TAILSCALE_PORT}/udp"),
            )
            .with_help("pick another port, e.g. the default 51820"),
        );
    }
    let firewall = profile.firewall.as_ref();
    for (i, rule) in firewall.map(|f| f.allow.as_slice()).unwrap_or_default().iter().enumerate() {
        let covers = |p: u16| match &rule.port {
            v1::PortSpec::Single(n) => *n == i64::from(p),
            v1::PortSpec::Range(text) => text
                .split_once(['-', ':'])
                .and_then(|(a, b)| Some((a.trim().parse::<i64>().ok()?, b.trim().parse::<i64>().ok()?)))
                .is_some_and(|(a, b)| (a..=b).contains(&i64::from(p))),
        };
        if rule.proto == Proto::Udp && covers(port) {
            report.push(Diagnostic::warning(
                Code::DuplicateRule,
                format!("$.firewall.allow[{i}]"),
                format!("kiln already opens {port}/udp for WireGuard; this rule is not needed"),
            ));
        }
        if raw.ssh_only_through_tunnel && rule.proto == Proto::Tcp && covers(SSH_PORT) {
            report.push(
                Diagnostic::error(
                    Code::ContradictoryRule,
                    format!("$.firewall.allow[{i}]"),
                    "this rule opens SSH outside the tunnel, but `wireguard.ssh_only_through_tunnel` is on",
                )
                .with_help("remove the rule, or turn the switch off"),
            );
        }
    }
    if !raw.ssh_only_through_tunnel {
        return;
    }
    match firewall {
        None => report.push(
            Diagnostic::error(
                Code::ContradictoryRule,
                "$.wireguard.ssh_only_through_tunnel",
                "SSH only through the tunnel needs the firewall: without UFW, sshd answers on every interface",
            )
            .with_help("add `firewall: {incoming: deny}`"),
        ),
        Some(f) if f.incoming == v1::Policy::Allow => report.push(
            Diagnostic::error(
                Code::ContradictoryRule,
                "$.firewall.incoming",
                "incoming traffic is allowed by default, so SSH is reachable outside the tunnel",
            )
            .with_help("set `incoming: deny`"),
        ),
        Some(_) => {}
    }
}

/// The WireGuard private key, if it is a reference (it is checked for secret-reference shape with the rest).
pub(super) fn secret_ref(raw: &RawProfile) -> Option<(&SecretRef, &'static str)> {
    raw.wireguard.as_ref().and_then(|w| w.private_key.as_ref()).map(|k| (k, "$.wireguard.private_key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(is_key("YBMXxrW4nXpy6jzZkJQ9yrGvMLyOlnEU+b3P1QihXWg="));
        assert!(!is_key("YBMXxrW4nXpy6jzZkJQ9yrGvMLyOlnEU+b3P1QihXW="));
        assert!(!is_key("YBMXxrW4nXpy6jzZkJQ9yrGvMLyOlnEU+b3P1QihXWgA"));
        assert!(!is_key("not a key"));
        assert!(!is_key("YBMXxrW4nXpy6jzZkJQ9yrGvMLyOlnEU-b3P1QihXWg="));
    }

    #[test]
    fn endpoints() {
        for good in ["203.0.113.7:51820", "[2001:db8::7]:51820", "vpn.example.com:1"] {
            assert!(valid_endpoint(good), "{good}");
        }
        for bad in ["203.0.113.7", "vpn:51820", "203.0.113.7:0", "203.0.113.7:70000", "2001:db8::7:51820", "a b.c:1"] {
            assert!(!valid_endpoint(bad), "{bad}");
        }
    }

    #[test]
    fn interface_names() {
        assert!(valid_interface("wg0") && valid_interface("wg-ci.1"));
        assert!(!valid_interface("") && !valid_interface("wg 0") && !valid_interface("averyveryverylongname"));
    }
}
