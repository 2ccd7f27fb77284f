//! `kiln init`: a commented starter profile, made from a few choices. Pure: the choices in, the profile's
//! text out (the command finds the SSH key and writes the file). Every profile it makes passes
//! `kiln check --strict` as written when it has a key (`tests/kiln/init.rs` checks each combination), names
//! secrets by reference only, and says in a comment per section what it does and what to set.

use std::fmt::Write as _;

/// The VPN SSH comes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Vpn {
    /// Tailscale: the host joins your tailnet with an auth key; SSH only on `tailscale0`.
    Tailscale,
    /// WireGuard: the host is a peer at 10.77.0.1; SSH only through the tunnel (needs `--wireguard-peer`).
    Wireguard,
    /// None: SSH open to the internet on port 22, keys only.
    None,
}

/// How HTTP reaches the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Tunnel {
    /// A Cloudflare tunnel (cloudflared) to the app on localhost:80; no port open for HTTP.
    Cloudflared,
    /// None: nothing for HTTP is set up.
    None,
}

/// What the starter profile is made from.
#[derive(Debug, Clone)]
pub struct Choices {
    pub os: String,
    pub hostname: String,
    pub vpn: Vpn,
    pub tunnel: Tunnel,
    /// Public key lines, each with where it came from (a comment).
    pub ssh_keys: Vec<(String, String)>,
    /// WireGuard public keys of the machines that deploy.
    pub wireguard_peers: Vec<String>,
}

/// The WireGuard network the starter profile uses: the host first, its peers after it.
const WIREGUARD_HOST: &str = "10.77.0.1/24";

/// The profile's text.
pub fn profile(choices: &Choices) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        r#"# yaml-language-server: $schema=profile-v1.schema.json
# (for completion and checks in your editor: kiln schema > profile-v1.schema.json)
#
# A kiln host profile, started by `kiln init`. Check it with `kiln check --strict profile.yaml`, render it
# with `kiln render profile.yaml` (secrets come from the environment at that moment, never from this file).
version: 1

# The machine: its release (`kiln image build --list` names those kiln builds), its name, time zone and locale.
host:
  os: {os}
  hostname: {hostname}
  timezone: Etc/UTC
  locale: C.UTF-8

# The deploy user: Kamal logs in as this user, which is in the `docker` group (no sudo needed to deploy).
user:
  name: deploy
  ssh_keys:
"#,
        os = choices.os,
        hostname = choices.hostname,
    );
    if choices.ssh_keys.is_empty() {
        out.push_str("    # None found: add your public key here (`ssh-keygen -t ed25519`, then the .pub file's line).\n    []\n");
    }
    for (line, source) in &choices.ssh_keys {
        let _ = writeln!(out, "    # {source}\n    - {}", yaml_string(line));
    }
    out.push_str(
        r#"
# SSH: keys only, no root login (kiln's baseline adds the rest: ciphers, limits, forwarding only for Kamal).
ssh:
  password_authentication: false
  permit_root_login: false

# Docker, from Debian. Ports containers publish stay on loopback and are dropped from outside
# (Docker would otherwise publish past the firewall); list in `open` any you do want public.
docker:
  source: distro
  published_ports:
    default_bind: 127.0.0.1
    block_from_outside: true
"#,
    );
    if choices.tunnel == Tunnel::Cloudflared {
        out.push_str(
            r#"
# HTTP through a Cloudflare tunnel: cloudflared connects out, so no port is open for HTTP. The token is read
# from $CLOUDFLARED_TOKEN when you render. Set your host name; the last rule answers everything else with 404.
cloudflared:
  token: {env: CLOUDFLARED_TOKEN}
  ingress:
    - hostname: app.example.com
      service: http://localhost:80
    - service: http_status:404
"#,
        );
    }
    match choices.vpn {
        Vpn::Tailscale => out.push_str(
            r#"
# SSH through Tailscale: the host joins your tailnet with a one-off auth key read from $TAILSCALE_AUTH_KEY
# when you render (a one-off key is spent at first boot, so the copy left in user-data is worthless).
tailscale:
  auth_key: {env: TAILSCALE_AUTH_KEY}
  one_off_key: true
"#,
        ),
        Vpn::Wireguard => {
            let _ = write!(
                out,
                r#"
# SSH through WireGuard: the host generates its key at first boot and prints its public key on the console;
# each peer below (the machines that deploy: laptop, CI runner) gets the next address of the tunnel.
wireguard:
  address: {WIREGUARD_HOST}
  listen_port: 51820
  ssh_only_through_tunnel: true
  peers:
"#
            );
            for (i, key) in choices.wireguard_peers.iter().enumerate() {
                let _ =
                    writeln!(out, "    - public_key: {}\n      allowed_ips: [10.77.0.{}/32]", yaml_string(key), i + 2);
            }
        }
        Vpn::None => {}
    }
    out.push_str(
        r#"
# The firewall: nothing comes in but what is listed.
firewall:
  incoming: deny
  outgoing: allow
"#,
    );
    match choices.vpn {
        Vpn::Tailscale => out.push_str(
            "  allow:\n    - port: 41641\n      proto: udp\n      comment: tailscale direct connections\n  allow_in_on: [tailscale0]\n",
        ),
        // The WireGuard section opens its own port and lets SSH in on the tunnel only.
        Vpn::Wireguard => {}
        Vpn::None => out.push_str("  allow:\n    - port: 22\n      comment: SSH from anywhere (keys only)\n"),
    }
    out
}

/// A YAML double-quoted string (the key lines and WireGuard keys hold `+`, `/`, `=` and spaces).
fn yaml_string(text: &str) -> String {
    serde_json::to_string(text).expect("a string serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_line_is_quoted_and_no_secret_is_ever_a_value() {
        let choices = Choices {
            os: "debian-13".into(),
            hostname: "app-1".into(),
            vpn: Vpn::Tailscale,
            tunnel: Tunnel::Cloudflared,
            ssh_keys: vec![("ssh-ed25519 AAAA deploy@laptop".into(), "from ~/.ssh/id_ed25519.pub".into())],
            wireguard_peers: Vec::new(),
        };
        let text = profile(&choices);
        assert!(text.contains("    - \"ssh-ed25519 AAAA deploy@laptop\""), "{text}");
        assert!(
            text.contains("token: {env: CLOUDFLARED_TOKEN}") && text.contains("auth_key: {env: TAILSCALE_AUTH_KEY}")
        );
        assert!(text.starts_with("# yaml-language-server: $schema="));
    }
}
