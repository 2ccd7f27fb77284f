//! WireGuard: wireguard-tools, the interface's wg-quick configuration (no key in it), the private key in
//! a 0600 file (written from a secret, or generated on the host), `wg-quick@IFACE` enabled, and the UFW
//! rules: the listen port, and SSH in on the tunnel when SSH goes only through it.

use super::facts::{FirewallRule, ListenPort, ListenScope, Listener, SocketOwner};
use super::script::{Step, cmd};
use super::ssh::SSH_PORT;
use super::{Parts, SECRETS_DIR};
use crate::cloud_config::WriteFile;
use crate::model::{Model, PortRange, Proto, Wireguard};
use crate::secrets::Secret;

/// The helper that generates (or checks) the key and prints the public key.
pub const KEY_HELPER_PATH: &str = "/usr/local/lib/kiln/wireguard-key";
/// What the helper prints before the public key, on the console and in cloud-init-output.log.
pub const PUBLIC_KEY_LINE: &str = "kiln: wireguard public key";

pub fn key_path(interface: &str) -> String {
    format!("{SECRETS_DIR}/wireguard-{interface}.key")
}

pub fn public_key_path(interface: &str) -> String {
    format!("/etc/wireguard/{interface}.pub")
}

pub fn config_path(interface: &str) -> String {
    format!("/etc/wireguard/{interface}.conf")
}

pub fn unit(interface: &str) -> String {
    format!("wg-quick@{interface}.service")
}

/// The UFW rules WireGuard adds: its UDP port, and SSH in on the tunnel interface only.
pub fn firewall_rules(wireguard: &Wireguard) -> Vec<FirewallRule> {
    let interface = &wireguard.interface;
    let port = wireguard.listen_port;
    let mut rules = vec![
        FirewallRule::allow(Proto::Udp, PortRange { start: port, end: port })
            .comment(Some(format!("WireGuard {interface}"))),
    ];
    if wireguard.ssh_only_through_tunnel {
        rules.push(
            FirewallRule::allow(Proto::Tcp, PortRange { start: SSH_PORT, end: SSH_PORT })
                .on(interface)
                .comment(Some(format!("SSH through WireGuard {interface}"))),
        );
    }
    rules
}

/// The wg-quick configuration. The private key is loaded by PostUp from its 0600 file (the form
/// wg-quick(8) documents), so this file holds no secret and the key is never in a command line.
fn config(wireguard: &Wireguard, model: &Model) -> String {
    let mut lines = vec![
        format!("# Managed by kiln: WireGuard interface {} of {}.", wireguard.interface, model.host.hostname),
        format!("# The private key is in {} (0600), loaded by PostUp.", key_path(&wireguard.interface)),
        "[Interface]".to_string(),
        format!("Address = {}", wireguard.address),
        format!("ListenPort = {}", wireguard.listen_port),
        format!("PostUp = wg set %i private-key {}", key_path(&wireguard.interface)),
    ];
    for peer in &wireguard.peers {
        lines.push(String::new());
        lines.push("[Peer]".into());
        lines.push(format!("PublicKey = {}", peer.public_key));
        let allowed: Vec<String> = peer.allowed_ips.iter().map(ToString::to_string).collect();
        lines.push(format!("AllowedIPs = {}", allowed.join(", ")));
        if let Some(endpoint) = &peer.endpoint {
            lines.push(format!("Endpoint = {endpoint}"));
        }
        if let Some(seconds) = peer.persistent_keepalive {
            lines.push(format!("PersistentKeepalive = {seconds}"));
        }
    }
    lines.join("\n") + "\n"
}

pub(super) fn lower(wireguard: &Wireguard, key: Option<&Secret>, model: &Model, parts: &mut Parts) {
    let interface = &wireguard.interface;
    parts.package("wireguard-tools");
    parts.claim_prefix("/etc/wireguard/");
    parts.claim_unit(&unit(interface));
    // Baked: the package, the key helper and the firewall rules. Per instance: the key (a secret, or
    // generated on the instance: a key in an image would be shared by every host booted from it), the
    // configuration (the tunnel address is the host's own) and bringing the interface up.
    parts.kept_secret_file(&key_path(interface), key);
    parts.bake_file(WriteFile::new(KEY_HELPER_PATH, 0o700, include_str!("../../templates/wireguard-key.sh")));
    parts.boot_file(WriteFile::new(config_path(interface), 0o600, config(wireguard, model)));
    // The kernel's socket: `ss -p` names no process for it.
    let socket = Listener {
        proto: Proto::Udp,
        port: ListenPort::Fixed(wireguard.listen_port),
        scope: ListenScope::Any,
        owner: SocketOwner::Kernel,
    };
    let start = parts.ensure_running(&unit(interface), vec![socket]);
    parts.boot_step(Step::new(
        &format!("wireguard: bring up {interface}"),
        vec![
            // write_files created the directory (0755) before the package did: make it root's only.
            cmd(&["install", "-d", "-m", "0700", "-o", "root", "-g", "root", "/etc/wireguard"]),
            cmd(&[KEY_HELPER_PATH, interface, &key_path(interface), &public_key_path(interface)]),
            start,
        ],
    ));
    if model.firewall.is_some() {
        let commands = firewall_rules(wireguard).into_iter().map(|rule| parts.firewall_rule(rule)).collect();
        parts.bake_step(Step::new(&format!("wireguard: firewall rules for {interface}"), commands));
    }
}
