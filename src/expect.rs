//! Model → the state a booted host must show. `kiln expect` prints it; `kiln test` checks exactly it.
//!
//! Derived from the same `Model` that produces the cloud-config, so nobody hand-writes what a test
//! expects. Contains no secret values: checks about secrets compare digests the harness computes.

use serde::Serialize;

use crate::consumers::ufw;
use crate::encoding::sha256_hex;
use crate::lower::facts::{
    self, AddressFamily, Facts, FirewallRule, ListenPort, ListenScope, SecretLifetime, SocketOwner, StartedBy,
};
use crate::lower::{self, SSH_PORT};
use crate::model::{Model, Proto, render_port_range};

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
    /// dockerd's live-restore, as `docker info` reports it (`LiveRestoreEnabled`), when the host runs Docker.
    pub docker_live_restore: Option<bool>,
    /// unattended-upgrades' origin patterns kiln adds, each of which apt's configuration must hold, and apt's
    /// daily run of unattended-upgrade (`hardening.automatic_updates`); empty when off.
    pub update_origins: Vec<String>,
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
    /// Kernel settings as `sysctl` must print them after every boot (`hardening.kernel_network`).
    pub sysctls: Vec<ExpectedSysctl>,
    /// The journal journald writes (`hardening.persistent_journal`).
    pub journal: Option<ExpectedJournal>,
    /// Options `/tmp` must be mounted with, as `findmnt` lists them (`hardening.tmp_nosuid_nodev`).
    pub tmp_mount_options: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExpectedSysctl {
    /// Dotted, as `sysctl` prints it (`net.ipv4.tcp_syncookies`).
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExpectedJournal {
    /// journald's system journal is under this directory (on disk), not under /run/log/journal.
    pub directory: String,
    /// Its cap in bytes, as journald reports it (`MAX_USE` of its "Disk space used" message).
    pub max_use_bytes: u64,
}

/// Where journald keeps a persistent journal (journald.conf(5), `Storage=persistent`).
pub const PERSISTENT_JOURNAL_DIR: &str = "/var/log/journal/";

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
    /// What sshd must decide for the deploy user's connections (`sshd -T -C user=<deploy user>,…`): each
    /// keyword kiln sets, with the values sshd prints for it (one per line for AllowUsers).
    pub for_deploy_user: Vec<SshdValues>,
    /// What sshd must decide for root's: where the deploy user's `Match` block differs, root gets the global
    /// value.
    pub for_root: Vec<SshdValues>,
    /// Warnings ssh-audit may give about the host's sshd, each with kiln's reason; any other warning, and any
    /// failure, fails the audit.
    pub audit_accepted_warnings: Vec<AuditWarning>,
}

impl ExpectedSsh {
    /// The value sshd must print for `keyword` (lower case) for the deploy user, when kiln sets one.
    pub fn deploy_user_value(&self, keyword: &str) -> Option<String> {
        self.for_deploy_user.iter().find(|v| v.keyword == keyword).map(|v| v.values.join(" "))
    }
}

/// One keyword as `sshd -T` prints it: lower case, then each value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SshdValues {
    pub keyword: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditWarning {
    pub algorithm: String,
    pub why: String,
}

impl From<&facts::AcceptedAuditWarning> for AuditWarning {
    fn from(accepted: &facts::AcceptedAuditWarning) -> Self {
        AuditWarning { algorithm: accepted.algorithm.clone(), why: accepted.why.clone() }
    }
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

/// In an expected listener, port 0 stands for "whatever port the program picks".
pub const ANY_PORT: u16 = 0;

/// The process of a socket the kernel holds itself (WireGuard's): `ss -p` names no user for it.
pub const KERNEL_SOCKET: &str = "(kernel)";

pub fn expect(model: &Model) -> ExpectedState {
    from_facts(model, &lower::facts(model))
}

/// The state a host must show, from what the components declared for `model` (`lower::facts`).
pub fn from_facts(model: &Model, facts: &Facts) -> ExpectedState {
    // The image's units first (sshd runs before kiln does), then the components' in the order they
    // come up; each unit's sockets with it.
    let mut units: Vec<&facts::Unit> = facts.units.iter().collect();
    units.sort_by_key(|u| u.started_by != StartedBy::Image);
    let firewall = facts.firewall.map(|policy| {
        let mut rules: Vec<UfwRule> = facts.firewall_rules.iter().flat_map(ufw_stored).collect();
        rules.sort();
        ExpectedFirewall {
            incoming: policy.incoming.name().into(),
            outgoing: policy.outgoing.name().into(),
            rules,
            docker_user: facts.docker_user_open.as_ref().map(|open| {
                open.iter().map(|(ports, proto)| format!("{}/{}", render_port_range(ports), proto.name())).collect()
            }),
        }
    });
    let wireguard = model.wireguard.as_ref().map(|w| {
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
    let user = lower::user_entry(model);
    ExpectedState {
        hostname: model.host.hostname.split('.').next().unwrap_or(&model.host.hostname).to_string(),
        user: ExpectedUser {
            name: user.name,
            shell: user.shell,
            groups: facts.deploy_user_groups.clone(),
            authorized_keys: user.ssh_authorized_keys,
            passwordless_sudo: user.sudo.is_some(),
            password_locked: user.lock_passwd,
        },
        ssh: ExpectedSsh {
            for_deploy_user: sshd_values(&facts.sshd, &facts.sshd_deploy_user),
            for_root: sshd_values(&facts.sshd, &[]),
            audit_accepted_warnings: facts.ssh_audit_accepted.iter().map(AuditWarning::from).collect(),
        },
        packages: facts.packages.iter().map(|p| p.name.clone()).collect(),
        units: units.iter().map(|u| ExpectedUnit { name: u.name.clone(), active: true, enabled: true }).collect(),
        firewall,
        listeners: units.iter().flat_map(|u| &u.listeners).map(expected_listener).collect(),
        secret_files: facts
            .secret_files
            .iter()
            .map(|f| SecretFile { path: f.path.clone(), present: f.lifetime == SecretLifetime::Kept })
            .collect(),
        docker_live_restore: facts.docker_live_restore,
        update_origins: facts.update_origins.clone(),
        cloudflared_args: facts.cloudflared_args.clone(),
        tailscale_up_args: facts.tailscale_up.as_ref().map(|command| command[1..].to_vec()),
        outside: outside_probes(facts),
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
        sysctls: facts
            .sysctls
            .iter()
            .map(|s| ExpectedSysctl { key: s.key.to_string(), value: s.value.to_string() })
            .collect(),
        journal: facts.journal.as_ref().map(|j| ExpectedJournal {
            directory: PERSISTENT_JOURNAL_DIR.to_string(),
            max_use_bytes: j.system_max_use_bytes,
        }),
        tmp_mount_options: facts.tmp_options.iter().map(|o| o.to_string()).collect(),
    }
}

/// The global settings with a `Match` block's applied over them, as `sshd -T -C` prints them for a
/// connection the block matches.
fn sshd_values(global: &[facts::SshdSetting], matched: &[facts::SshdSetting]) -> Vec<SshdValues> {
    global
        .iter()
        .map(|setting| matched.iter().find(|m| m.keyword == setting.keyword).unwrap_or(setting))
        .map(|setting| SshdValues { keyword: setting.printed_keyword(), values: setting.printed_values() })
        .collect()
}

/// A rule as UFW stores it after `lower::ufw_command` added it: one `### tuple ###` per address family.
pub fn ufw_stored(rule: &FirewallRule) -> Vec<UfwRule> {
    rule.families()
        .iter()
        .map(|family| UfwRule {
            ipv6: *family == AddressFamily::Ipv6,
            action: rule.action.name().into(),
            proto: rule.proto.map_or("any", |p| p.name()).into(),
            port: rule.port_text(),
            from: rule.from.as_ref().map_or_else(|| family.anywhere().into(), ufw::source_text),
            interface: rule.interface.clone(),
            comment: rule.comment.clone(),
        })
        .collect()
}

fn expected_listener(listener: &facts::Listener) -> Listener {
    Listener {
        proto: listener.proto.name().into(),
        port: match listener.port {
            ListenPort::Fixed(port) => port,
            ListenPort::Picked => ANY_PORT,
        },
        scope: match listener.scope {
            ListenScope::Any => "any",
            ListenScope::Loopback => "loopback",
        }
        .into(),
        process: match &listener.owner {
            SocketOwner::Program(name) => name.clone(),
            SocketOwner::Kernel => KERNEL_SOCKET.into(),
        },
    }
}

/// What a client on the public network must see: SSH closed unless open to everyone, and one probe
/// (its first port) for each other TCP port range a rule opens to everyone. Container ports are the
/// harness's own probes.
fn outside_probes(facts: &Facts) -> Vec<OutsideProbe> {
    if facts.firewall.is_none() {
        return Vec::new();
    }
    let ssh_open = facts.open_to_everyone(Proto::Tcp, SSH_PORT);
    let mut probes = vec![OutsideProbe {
        port: SSH_PORT,
        proto: "tcp".into(),
        reachable: ssh_open,
        why: if ssh_open { "a firewall rule opens SSH to everyone" } else { "SSH only through the VPN" }.into(),
    }];
    for rule in &facts.firewall_rules {
        let Some(ports) = rule.ports else { continue };
        if rule.lets_in_from_everywhere(Proto::Tcp, ports.start) && !ports.contains(SSH_PORT) {
            probes.push(OutsideProbe {
                port: ports.start,
                proto: "tcp".into(),
                reachable: facts.open_to_everyone(Proto::Tcp, ports.start),
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
    fn ufw_stores_a_rule_for_both_families_unless_the_source_picks_one() {
        let rules = [
            FirewallRule::allow(Proto::Udp, PortRange { start: 41641, end: 41641 }).comment(Some("ts".into())),
            FirewallRule::allow(Proto::Tcp, PortRange { start: 22, end: 22 }).from(Cidr::parse("10.0.0.0/8")),
            FirewallRule::allow(Proto::Tcp, PortRange { start: 80, end: 81 }).from(Cidr::parse("192.0.2.7/32")),
            FirewallRule::allow_in_on("tailscale0"),
        ];
        let stored: Vec<UfwRule> = rules.iter().flat_map(ufw_stored).collect();
        assert_eq!(stored.len(), 2 + 1 + 1 + 2);
        assert!(stored.iter().any(|r| r.port == "80:81" && r.from == "192.0.2.7" && !r.ipv6));
        assert!(stored.iter().any(|r| r.interface.as_deref() == Some("tailscale0") && r.ipv6 && r.port == "any"));
    }
}
