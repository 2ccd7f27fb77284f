//! WireGuard: wireguard-tools, the interface's wg-quick configuration (no key in it), the private key in
//! a 0600 file (written from a secret, or generated on the host), `wg-quick@IFACE` enabled, and the UFW
//! rules: the listen port, and SSH in on the tunnel when SSH goes only through it.

use super::script::{Step, cmd};
use super::{Parts, SECRETS_DIR};
use crate::cloud_config::WriteFile;
use crate::model::{Model, Wireguard};
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

/// The UFW commands WireGuard adds: its UDP port, and SSH in on the tunnel interface only.
pub fn ufw_commands(wireguard: &Wireguard) -> Vec<Vec<String>> {
    let interface = &wireguard.interface;
    let mut commands = vec![cmd(&[
        "ufw",
        "allow",
        "proto",
        "udp",
        "from",
        "any",
        "to",
        "any",
        "port",
        &wireguard.listen_port.to_string(),
        "comment",
        &format!("WireGuard {interface}"),
    ])];
    if wireguard.ssh_only_through_tunnel {
        commands.push(cmd(&[
            "ufw",
            "allow",
            "in",
            "on",
            interface,
            "proto",
            "tcp",
            "from",
            "any",
            "to",
            "any",
            "port",
            "22",
            "comment",
            &format!("SSH through WireGuard {interface}"),
        ]));
    }
    commands
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
    if let Some(key) = key {
        parts.boot_file(WriteFile::new(key_path(interface), 0o600, format!("{}\n", key.expose())));
    }
    parts.bake_file(WriteFile::new(KEY_HELPER_PATH, 0o700, include_str!("../../templates/wireguard-key.sh")));
    parts.boot_file(WriteFile::new(config_path(interface), 0o600, config(wireguard, model)));
    parts.boot_step(Step::new(
        &format!("wireguard: bring up {interface}"),
        vec![
            // write_files created the directory (0755) before the package did: make it root's only.
            cmd(&["install", "-d", "-m", "0700", "-o", "root", "-g", "root", "/etc/wireguard"]),
            cmd(&[KEY_HELPER_PATH, interface, &key_path(interface), &public_key_path(interface)]),
            cmd(&["ensure_running", &unit(interface)]),
        ],
    ));
    if model.firewall.is_some() {
        parts.bake_step(Step::new(&format!("wireguard: firewall rules for {interface}"), ufw_commands(wireguard)));
    }
}
