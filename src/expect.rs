//! Model → the state a booted host must show. `kiln expect` prints it; `kiln test` checks exactly it.
//!
//! Derived from the same `Model` that produces the cloud-config, so nobody hand-writes what a test
//! expects. Contains no secret values: checks about secrets compare digests the harness computes.

use std::net::IpAddr;

use serde::Serialize;

use crate::consumers::ufw;
use crate::lower;
use crate::model::{AllowRule, Model, Policy, Proto, render_port_range};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExpectedState {
    pub hostname: String,
    pub user: ExpectedUser,
    pub ssh: ExpectedSsh,
    /// Debian packages that must be installed.
    pub packages: Vec<String>,
    pub units: Vec<ExpectedUnit>,
    pub firewall: Option<ExpectedFirewall>,
    /// Sockets the profile's services listen on (the image's own, such as DHCP, come from the image).
    pub listeners: Vec<Listener>,
    pub secret_files: Vec<SecretFile>,
    /// How cloudflared must have been started (argv after the program name).
    pub cloudflared_args: Option<Vec<String>>,
    /// How `tailscale up` must have been called (argv after `tailscale`).
    pub tailscale_up_args: Option<Vec<String>>,
    /// Connections from outside the host to its public interface.
    pub outside: Vec<OutsideProbe>,
    /// The WireGuard interface as `ip` and `wg` must show it.
    pub wireguard: Option<ExpectedWireguard>,
    /// The time zone, as cloud-init writes it to /etc/timezone.
    pub timezone: String,
    /// The locale, as /etc/default/locale sets `LANG` (and it must be usable).
    pub locale: String,
    /// The profile's own files, exactly as rendered.
    pub files: Vec<ExpectedFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExpectedFile {
    pub path: String,
    /// Octal permission bits as `stat -c %a` prints them (`644`, `4755`).
    pub mode: String,
    pub owner: String,
    pub group: String,
    /// sha256 of the rendered body.
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExpectedWireguard {
    pub interface: String,
    /// The interface's address with its prefix, as `ip -o addr` prints it.
    pub address: String,
    pub listen_port: u16,
    /// Public keys of the peers, sorted.
    pub peers: Vec<String>,
    /// Where the host's public key is written (it must be the key the interface uses).
    pub public_key_file: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExpectedUser {
    pub name: String,
    pub shell: String,
    /// Supplementary groups the user must be in.
    pub groups: Vec<String>,
    pub authorized_keys: Vec<String>,
    pub passwordless_sudo: bool,
    pub password_locked: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExpectedSsh {
    /// Values `sshd -T` must print, lowercase as sshd prints them.
    pub password_authentication: String,
    pub permit_root_login: String,
    pub kbd_interactive_authentication: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExpectedUnit {
    pub name: String,
    pub active: bool,
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExpectedFirewall {
    pub incoming: String,
    pub outgoing: String,
    /// The exact rule set, as UFW stores it in `user.rules` and `user6.rules` (no more, no less).
    pub rules: Vec<UfwRule>,
    /// Published container ports are filtered in `DOCKER-USER`; these original ports stay open.
    pub docker_user: Option<Vec<String>>,
}

/// One UFW rule in the normalized form of a `### tuple ###` line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct UfwRule {
    pub ipv6: bool,
    pub action: String,
    /// `tcp`, `udp` or `any`.
    pub proto: String,
    /// `22`, `8000:8010` or `any`.
    pub port: String,
    /// Source network, `0.0.0.0/0` or `::/0` for anywhere.
    pub from: String,
    /// Interface for `allow in on IFACE`, if any.
    pub interface: Option<String>,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Listener {
    pub proto: String,
    pub port: u16,
    /// `any` (all addresses) or `loopback`.
    pub scope: String,
    /// The program that must own the socket, as `ss -p` names it.
    pub process: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretFile {
    pub path: String,
    /// Present with mode 0600 and owner root, or (consumed secrets) absent.
    pub present: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutsideProbe {
    pub port: u16,
    pub proto: String,
    pub reachable: bool,
    pub why: String,
}

const SSH_PORT: u16 = 22;

/// In an expected listener, port 0 stands for "whatever port the program picks".
pub const ANY_PORT: u16 = 0;

/// The process of a socket the kernel holds itself (WireGuard's): `ss -p` names no user for it.
pub const KERNEL_SOCKET: &str = "(kernel)";

pub fn expect(model: &Model) -> ExpectedState {
    let mut packages: Vec<String> = Vec::new();
    let mut units = vec![unit("ssh.service")];
    let mut listeners = vec![listener("tcp", SSH_PORT, "any", "sshd")];
    let mut groups = Vec::new();
    let mut secret_files = Vec::new();
    if model.user.sudo {
        packages.push("sudo".into());
    }
    if let Some(docker) = &model.docker {
        packages.extend(lower::docker::packages(docker.source).iter().map(|s| s.to_string()));
        // docker.io depends on Debian's containerd, which the host must then have too.
        if docker.source == crate::model::DockerSource::Distro {
            packages.push("containerd".into());
        }
        units.push(unit("docker.service"));
        units.push(unit("containerd.service"));
        // containerd's CRI stream server listens on loopback, on a port it picks at each start.
        listeners.push(listener("tcp", ANY_PORT, "loopback", "containerd"));
        groups.push("docker".to_string());
    }
    let cloudflared_args = model.cloudflared.as_ref().map(|c| {
        packages.push("cloudflared".into());
        units.push(unit("cloudflared.service"));
        secret_files.push(SecretFile { path: lower::cloudflared_token_path(), present: true });
        lower::cloudflared_args(c.ingress.is_some())
    });
    let tailscale_up_args = model.tailscale.as_ref().map(|t| {
        packages.push("tailscale".into());
        units.push(unit("tailscaled.service"));
        listeners.push(listener("udp", 41641, "any", "tailscaled"));
        secret_files.push(SecretFile { path: lower::tailscale_auth_key_path(), present: false });
        lower::tailscale_up_command(t)[1..].to_vec()
    });
    let wireguard = model.wireguard.as_ref().map(|w| {
        packages.push("wireguard-tools".into());
        units.push(unit(&lower::wireguard::unit(&w.interface)));
        listeners.push(listener("udp", w.listen_port, "any", KERNEL_SOCKET));
        secret_files.push(SecretFile { path: lower::wireguard::key_path(&w.interface), present: true });
        let mut peers: Vec<String> = w.peers.iter().map(|p| p.public_key.clone()).collect();
        peers.sort();
        ExpectedWireguard {
            interface: w.interface.clone(),
            address: w.address.to_string(),
            listen_port: w.listen_port,
            peers,
            public_key_file: lower::wireguard::public_key_path(&w.interface),
        }
    });
    let firewall = model.firewall.as_ref().map(|f| {
        packages.push("ufw".into());
        units.push(unit("ufw.service"));
        let mut rules = ufw_rules(&f.allow, &f.allow_in_on);
        if let Some(w) = &model.wireguard {
            rules.extend(wireguard_rules(w));
            rules.sort();
        }
        ExpectedFirewall {
            incoming: f.incoming.name().into(),
            outgoing: f.outgoing.name().into(),
            rules,
            docker_user: model.docker.as_ref().filter(|d| d.block_from_outside).map(|d| {
                d.open.iter().map(|(ports, proto)| format!("{}/{}", render_port_range(ports), proto.name())).collect()
            }),
        }
    });
    packages.extend(model.packages.iter().map(|p| p.split('=').next().unwrap_or(p).to_string()));
    ExpectedState {
        hostname: model.host.hostname.split('.').next().unwrap_or(&model.host.hostname).to_string(),
        user: ExpectedUser {
            name: model.user.name.clone(),
            shell: model.user.shell.clone(),
            groups,
            authorized_keys: model.user.ssh_keys.clone(),
            passwordless_sudo: model.user.sudo,
            password_locked: true,
        },
        ssh: ExpectedSsh {
            password_authentication: yes_no(model.ssh.password_authentication).into(),
            permit_root_login: if model.ssh.permit_root_login { "without-password" } else { "no" }.into(),
            kbd_interactive_authentication: "no".into(),
        },
        packages,
        units,
        firewall,
        listeners,
        secret_files,
        cloudflared_args,
        tailscale_up_args,
        outside: outside_probes(model),
        wireguard,
        timezone: model.host.timezone.clone(),
        locale: model.host.locale.clone(),
        files: model
            .files
            .iter()
            .map(|f| ExpectedFile {
                path: f.path.clone(),
                mode: format!("{:o}", f.mode),
                owner: f.owner.clone(),
                group: f.group.clone(),
                sha256: sha256_hex(f.content.as_bytes()),
            })
            .collect(),
    }
}

/// The rules `lower::wireguard::ufw_commands` adds, as UFW stores them (both address families).
fn wireguard_rules(wireguard: &crate::model::Wireguard) -> Vec<UfwRule> {
    let interface = &wireguard.interface;
    let mut rules = Vec::new();
    for ipv6 in [false, true] {
        let anywhere = if ipv6 { "::/0" } else { "0.0.0.0/0" };
        rules.push(UfwRule {
            ipv6,
            action: "allow".into(),
            proto: "udp".into(),
            port: wireguard.listen_port.to_string(),
            from: anywhere.into(),
            interface: None,
            comment: Some(format!("WireGuard {interface}")),
        });
        if wireguard.ssh_only_through_tunnel {
            rules.push(UfwRule {
                ipv6,
                action: "allow".into(),
                proto: "tcp".into(),
                port: SSH_PORT.to_string(),
                from: anywhere.into(),
                interface: Some(interface.clone()),
                comment: Some(format!("SSH through WireGuard {interface}")),
            });
        }
    }
    rules
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn unit(name: &str) -> ExpectedUnit {
    ExpectedUnit { name: name.into(), active: true, enabled: true }
}

fn listener(proto: &str, port: u16, scope: &str, process: &str) -> Listener {
    Listener { proto: proto.into(), port, scope: scope.into(), process: process.into() }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// The rules UFW stores for the profile: one per address family, as `ufw` adds them (IPv6 is on by
/// default in Debian's ufw; a rule with an IPv4 source exists only for IPv4, and vice versa).
fn ufw_rules(allow: &[AllowRule], interfaces: &[String]) -> Vec<UfwRule> {
    let mut rules = Vec::new();
    for rule in allow {
        let families: Vec<bool> = match rule.from.map(|f| f.address) {
            Some(IpAddr::V4(_)) => vec![false],
            Some(IpAddr::V6(_)) => vec![true],
            None => vec![false, true],
        };
        for ipv6 in families {
            let anywhere = if ipv6 { "::/0" } else { "0.0.0.0/0" };
            rules.push(UfwRule {
                ipv6,
                action: "allow".into(),
                proto: rule.proto.name().into(),
                port: render_port_range(&rule.ports),
                from: rule.from.as_ref().map_or_else(|| anywhere.into(), ufw::source_text),
                interface: None,
                comment: rule.comment.clone(),
            });
        }
    }
    for interface in interfaces {
        for ipv6 in [false, true] {
            rules.push(UfwRule {
                ipv6,
                action: "allow".into(),
                proto: "any".into(),
                port: "any".into(),
                from: if ipv6 { "::/0" } else { "0.0.0.0/0" }.into(),
                interface: Some(interface.clone()),
                comment: None,
            });
        }
    }
    rules.sort();
    rules
}

/// What a client on the public network must see: SSH closed unless a rule opens it to everyone, each
/// allowed TCP port open, container ports blocked unless declared open.
fn outside_probes(model: &Model) -> Vec<OutsideProbe> {
    let Some(firewall) = &model.firewall else { return Vec::new() };
    let open_to_all = |port: u16| {
        firewall.incoming == Policy::Allow
            || firewall.allow.iter().any(|r| r.proto == Proto::Tcp && r.from.is_none() && r.ports.contains(port))
    };
    let mut probes = vec![OutsideProbe {
        port: SSH_PORT,
        proto: "tcp".into(),
        reachable: open_to_all(SSH_PORT),
        why: if open_to_all(SSH_PORT) { "a firewall rule opens SSH to everyone" } else { "SSH only through the VPN" }
            .into(),
    }];
    for rule in firewall.allow.iter().filter(|r| r.proto == Proto::Tcp && r.from.is_none()) {
        if !rule.ports.contains(SSH_PORT) {
            probes.push(OutsideProbe {
                port: rule.ports.start,
                proto: "tcp".into(),
                reachable: true,
                why: "opened by a firewall rule".into(),
            });
        }
    }
    probes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Cidr, PortRange};

    #[test]
    fn ufw_rules_cover_both_families_unless_the_source_picks_one() {
        let allow = vec![
            AllowRule {
                ports: PortRange { start: 41641, end: 41641 },
                proto: Proto::Udp,
                from: None,
                comment: Some("ts".into()),
            },
            AllowRule {
                ports: PortRange { start: 22, end: 22 },
                proto: Proto::Tcp,
                from: Cidr::parse("10.0.0.0/8"),
                comment: None,
            },
            AllowRule {
                ports: PortRange { start: 80, end: 81 },
                proto: Proto::Tcp,
                from: Cidr::parse("192.0.2.7/32"),
                comment: None,
            },
        ];
        let rules = ufw_rules(&allow, &["tailscale0".into()]);
        assert_eq!(rules.len(), 2 + 1 + 1 + 2);
        assert!(rules.iter().any(|r| r.port == "80:81" && r.from == "192.0.2.7" && !r.ipv6));
        assert!(rules.iter().any(|r| r.interface.as_deref() == Some("tailscale0") && r.ipv6));
    }
}
