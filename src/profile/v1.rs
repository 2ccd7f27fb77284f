//! The profile format, version 1: the raw, unvalidated shape of `profile.yaml`. Frozen once released.
//!
//! These types are the single source of truth for three things: the JSON Schema (`kiln schema`), the
//! structural check with spans (`shape` walks that schema over the YAML tree) and deserialization.
//! Doc comments become the schema's descriptions, which editors show on hover.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A kiln host profile: one VM that runs a Kamal-deployed app behind a tunnel and a VPN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "kiln host profile (version 1)")]
pub struct RawProfile {
    /// Profile format version. Always `1` for this format.
    pub version: i64,
    pub host: Host,
    pub user: User,
    #[serde(default)]
    pub ssh: Ssh,
    /// Install Docker. Omit the section for a host without containers.
    #[serde(default)]
    pub docker: Option<Docker>,
    /// Run a Cloudflare tunnel (cloudflared) so HTTP reaches the host without open ports.
    #[serde(default)]
    pub cloudflared: Option<Cloudflared>,
    /// Join a tailnet so SSH reaches the host without open ports.
    #[serde(default)]
    pub tailscale: Option<Tailscale>,
    /// A WireGuard interface, instead of or beside `tailscale`: a VPN kiln configures end to end, through
    /// which SSH can be made the only way in.
    #[serde(default)]
    pub wireguard: Option<Wireguard>,
    /// The UFW host firewall. Omitting it leaves every listening port reachable (a warning).
    #[serde(default)]
    pub firewall: Option<Firewall>,
    /// Extra Debian packages to install (`name` or `name=version`).
    #[serde(default)]
    pub packages: Vec<String>,
    /// Extra files to write. Bodies may be minijinja templates.
    #[serde(default)]
    pub files: Vec<File>,
    /// Variables available to file templates as `vars.NAME`: text, a number, or `true`/`false` (which
    /// templates test as booleans).
    #[serde(default)]
    pub vars: BTreeMap<String, VarValue>,
    /// Package mirror overrides (a private mirror, or a test harness's local one).
    #[serde(default)]
    pub apt: Apt,
    /// The system hardening kiln applies to every host, one switch per item, all on by default. Turning
    /// one off is a warning (`hardening-off`), so `kiln check --strict` refuses it.
    #[serde(default)]
    pub hardening: Hardening,
    /// The hosts of this role, when the profile describes several (a fleet). Each gets everything above
    /// with its own values from its entry; `host.hostname`, `wireguard.address` and `tailscale.hostname`
    /// are then given here, per host, and not above. `kiln render --host NAME` renders one host, `--all`
    /// every one; a golden image (`kiln bake`) stays one per role.
    #[serde(default)]
    pub hosts: Vec<FleetHost>,
}

/// One host of a fleet: what differs from the role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FleetHost {
    /// Host name (RFC 1123 label or dotted name), unique in the fleet.
    pub hostname: String,
    /// This host's address in the role's WireGuard tunnel.
    #[serde(default)]
    pub wireguard: Option<FleetWireguard>,
    /// This host's name in the tailnet.
    #[serde(default)]
    pub tailscale: Option<FleetTailscale>,
    /// Template variables for this host, added to the role's `vars` (a name given in both takes this value).
    #[serde(default)]
    pub vars: BTreeMap<String, VarValue>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FleetWireguard {
    /// This host's address in the tunnel with the tunnel's prefix length, e.g. `10.77.0.2/24`: every host's
    /// must be in the same network, and no two the same.
    pub address: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FleetTailscale {
    /// This host's name in the tailnet (one DNS label).
    pub hostname: String,
}

/// A template variable's value. Booleans and integers keep their type, so `{% if vars.debug %}` is false
/// for `debug: false` (a string "false" would be true).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(title = "text, a number, or true/false")]
pub enum VarValue {
    Bool(bool),
    Integer(i64),
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// Host name (RFC 1123 label or dotted name, at most 63 characters per label). Required, unless the
    /// profile lists its `hosts` (each names itself there).
    #[serde(default)]
    pub hostname: Option<String>,
    /// The release the host runs: `debian-13`, `debian-12`, `ubuntu-24.04` or `ubuntu-22.04`. It decides the
    /// package sources, the cloud-init schema the user-data must pass and how sshd is started. When omitted,
    /// Debian 13 (and `kiln check` says so).
    #[serde(default)]
    pub os: Option<Release>,
    /// IANA time zone, e.g. `Etc/UTC` or `Europe/Berlin`.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// System locale, e.g. `C.UTF-8` or `en_US.UTF-8`.
    #[serde(default = "default_locale")]
    pub locale: String,
    /// Size of a swap file, e.g. `2G` or `512M`. No swap when omitted.
    #[serde(default)]
    pub swap: Option<String>,
}

/// A release kiln renders for. The spellings are `host.os` values; `model::release::FACTS` holds each one's facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Release {
    #[serde(rename = "debian-13")]
    Debian13,
    #[serde(rename = "debian-12")]
    Debian12,
    #[serde(rename = "ubuntu-24.04")]
    Ubuntu2404,
    #[serde(rename = "ubuntu-22.04")]
    Ubuntu2204,
}

fn default_timezone() -> String {
    "Etc/UTC".into()
}

fn default_locale() -> String {
    "C.UTF-8".into()
}

/// The deploy user that Kamal and CI log in as.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// User name (POSIX portable: lowercase letter or `_` first, then `a-z0-9_-`, at most 32).
    pub name: String,
    /// SSH public keys: inline (`ssh-ed25519 AAAA… comment`, optionally after authorized_keys options such
    /// as `from="10.0.0.0/8",no-pty`) or `{file: keys/ci.pub}` under the profile's directory.
    pub ssh_keys: Vec<SshKeySource>,
    /// Passwordless sudo for this user.
    #[serde(default = "yes")]
    pub sudo: bool,
    /// Login shell.
    #[serde(default = "default_shell")]
    pub shell: String,
}

fn default_shell() -> String {
    "/bin/bash".into()
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(title = "an SSH public key or {file: PATH}")]
pub enum SshKeySource {
    Inline(String),
    File(FileRef),
}

/// A file under the profile's directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileRef {
    /// Path relative to the profile's directory; it may not leave that directory.
    pub file: String,
}

/// A secret: `{env: NAME}` or `{file: PATH}`. Resolved only by `kiln render`; never written in the profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
#[schemars(title = "a secret reference ({env: NAME} or {file: PATH})")]
pub enum SecretRef {
    /// Read from this environment variable.
    Env(String),
    /// Read from this file (relative to the profile's directory).
    File(String),
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ssh {
    /// Allow password logins. Off by default: keys only.
    #[serde(default)]
    pub password_authentication: bool,
    /// Allow root to log in over SSH. Off by default.
    #[serde(default)]
    pub permit_root_login: bool,
    /// Offer only post-quantum hybrid key exchanges, so ssh-audit has no warning at all. Off by default:
    /// Kamal's SSH library (net-ssh) has no post-quantum key exchange, and `kamal deploy` could not connect.
    #[serde(default)]
    pub post_quantum_only: bool,
}

/// System hardening on by default. Each switch turns one item off, for a host that needs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Hardening {
    /// Kernel network settings from the CIS Debian Level 1 benchmark (no ICMP redirects, no source routing,
    /// reverse-path filtering, martians logged, SYN cookies, ICMP broadcasts and bogus errors ignored, IPv6
    /// router advertisements ignored by the kernel), in /etc/sysctl.d and in the file UFW applies.
    #[serde(default = "yes")]
    pub kernel_network: bool,
    /// Time synchronisation with systemd-timesyncd (installed, enabled, running).
    #[serde(default = "yes")]
    pub time_sync: bool,
    /// A journal kept on disk across reboots, its size capped.
    #[serde(default = "yes")]
    pub persistent_journal: bool,
    /// `/tmp` mounted `nosuid,nodev` (systemd's tmpfs `tmp.mount`).
    #[serde(default = "yes")]
    pub tmp_nosuid_nodev: bool,
    /// unattended-upgrades on apt's daily timers, installing the release's security updates and updates from
    /// every vendor repository kiln adds (Docker's, Tailscale's, Cloudflare's).
    #[serde(default = "yes")]
    pub automatic_updates: bool,
}

impl Default for Hardening {
    fn default() -> Self {
        Hardening {
            kernel_network: true,
            time_sync: true,
            persistent_journal: true,
            tmp_nosuid_nodev: true,
            automatic_updates: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Docker {
    /// `distro` installs Debian's docker.io; `docker-ce` uses Docker's apt repository (pinned key).
    #[serde(default)]
    pub source: DockerSource,
    #[serde(default)]
    pub log: DockerLog,
    #[serde(default)]
    pub published_ports: PublishedPorts,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DockerSource {
    #[default]
    Distro,
    DockerCe,
}

/// Rotation of container logs (json-file driver).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DockerLog {
    /// Largest size of one log file, e.g. `10m`.
    #[serde(default = "default_log_size")]
    pub max_size: String,
    /// How many log files to keep per container.
    #[serde(default = "default_log_files")]
    pub max_files: i64,
}

impl Default for DockerLog {
    fn default() -> Self {
        DockerLog { max_size: default_log_size(), max_files: default_log_files() }
    }
}

fn default_log_size() -> String {
    "10m".into()
}

fn default_log_files() -> i64 {
    3
}

/// Docker publishes ports by DNAT before UFW sees the packets: this policy keeps them off the internet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishedPorts {
    /// Address that `-p PORT:PORT` binds to when no address is given. `127.0.0.1` keeps published ports on
    /// loopback (cloudflared on the host still reaches them); `0.0.0.0` is Docker's own default.
    #[serde(default = "loopback")]
    pub default_bind: String,
    /// Drop new connections from outside to any published port in the `DOCKER-USER` chain (loaded with
    /// UFW, so it survives reboots and Docker restarts), except the ports listed in `open`.
    #[serde(default = "yes")]
    pub block_from_outside: bool,
    /// Published ports that are meant to be reachable from outside.
    #[serde(default)]
    pub open: Vec<PortRule>,
}

impl Default for PublishedPorts {
    fn default() -> Self {
        PublishedPorts { default_bind: loopback(), block_from_outside: true, open: Vec::new() }
    }
}

fn loopback() -> String {
    "127.0.0.1".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PortRule {
    pub port: PortSpec,
    #[serde(default)]
    pub proto: Proto,
}

/// A port (`443`) or an inclusive range (`"8000-8010"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(title = "a port number or a range like \"8000-8010\"")]
pub enum PortSpec {
    Single(i64),
    Range(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    #[default]
    Tcp,
    Udp,
}

impl Proto {
    /// The spelling the profile, ufw and iptables all use.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Cloudflared {
    /// The tunnel token (`cloudflared tunnel run --token-file`).
    pub token: SecretRef,
    /// A locally managed ingress configuration. The last rule must be a catch-all (no hostname, no path),
    /// usually `service: http_status:404`.
    #[serde(default)]
    pub ingress: Option<Vec<IngressRule>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IngressRule {
    /// Public host name this rule matches (`app.example.com`, or `*.example.com`).
    #[serde(default)]
    pub hostname: Option<String>,
    /// Regular expression on the request path, e.g. `^/\.well-known/acme-challenge/`.
    #[serde(default)]
    pub path: Option<String>,
    /// Where matching requests go: `http://localhost:80`, `https://localhost:443`, `http_status:404`, …
    pub service: String,
    /// TLS server name expected from an `https://` origin (the certificate kamal-proxy presents).
    #[serde(default)]
    pub origin_server_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tailscale {
    /// The auth key (`tailscale up --auth-key=file:…`). Prefer a one-off, pre-authorized key.
    pub auth_key: SecretRef,
    /// Say that the auth key is one-off (single use). User-data stays readable through the cloud's metadata
    /// service for the life of the instance, so a reusable key there is a standing credential (a warning).
    #[serde(default)]
    pub one_off_key: bool,
    /// Run Tailscale SSH (`--ssh`): the tailnet's ACLs decide who logs in.
    #[serde(default)]
    pub ssh: bool,
    /// ACL tags to advertise, e.g. `tag:server`.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Name in the tailnet; the host name when omitted.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Use the tailnet's DNS settings. Off by default on Docker hosts (it breaks container DNS), on otherwise.
    #[serde(default)]
    pub accept_dns: Option<bool>,
    /// Control server URL, for self-hosted control planes (Headscale).
    #[serde(default)]
    pub login_server: Option<String>,
    /// How long `tailscale up` may take before provisioning fails, e.g. `120s` or `2m` (10 s to 15 min).
    #[serde(default = "default_tailscale_timeout")]
    pub timeout: String,
}

fn default_tailscale_timeout() -> String {
    "120s".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Wireguard {
    /// Interface name (`wg-quick@NAME`): 1-15 of `a-z A-Z 0-9 _ = + . -`.
    #[serde(default = "default_wireguard_interface")]
    pub interface: String,
    /// This host's address in the tunnel with the tunnel's prefix length, e.g. `10.77.0.1/24`. Required,
    /// unless the profile lists its `hosts` (each gives its own there).
    #[serde(default)]
    pub address: Option<String>,
    /// UDP port WireGuard listens on. With a `firewall`, UFW opens exactly this UDP port for it.
    #[serde(default = "default_wireguard_port")]
    pub listen_port: i64,
    /// The private key as a secret reference (`wg genkey` output). Omit it to have the host generate its
    /// key at first boot: the key then never leaves the host, and its public key is printed on the console
    /// (`kiln: wireguard public key (IFACE): …`) and written to `/etc/wireguard/IFACE.pub`.
    #[serde(default)]
    pub private_key: Option<SecretRef>,
    /// The peers that may connect (the machines that deploy: CI runners, laptops).
    #[serde(default)]
    pub peers: Vec<WireguardPeer>,
    /// Make SSH reachable only through the tunnel: UFW allows 22/tcp in on this interface and nowhere
    /// else. Needs a `firewall` section, and a firewall rule opening 22/tcp is then an error.
    #[serde(default)]
    pub ssh_only_through_tunnel: bool,
}

fn default_wireguard_interface() -> String {
    "wg0".into()
}

fn default_wireguard_port() -> i64 {
    51820
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WireguardPeer {
    /// The peer's public key (`wg pubkey`): 44 characters of base64 (32 bytes).
    pub public_key: String,
    /// Tunnel addresses routed to this peer, as CIDR networks, e.g. `[10.77.0.2/32]`.
    pub allowed_ips: Vec<String>,
    /// Where the peer can be reached, `host:port` or `[v6]:port`. Omit it for peers that connect in (a CI
    /// runner, a laptop): the host answers them where they come from.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Send a keepalive every this many seconds (1-65535), for a peer behind NAT.
    #[serde(default)]
    pub persistent_keepalive: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Firewall {
    /// Policy for incoming connections that no rule allows.
    #[serde(default = "deny")]
    pub incoming: Policy,
    /// Policy for outgoing connections.
    #[serde(default = "allow")]
    pub outgoing: Policy,
    /// Incoming connections to allow.
    #[serde(default)]
    pub allow: Vec<AllowRule>,
    /// Interfaces on which all incoming traffic is allowed, e.g. `tailscale0`.
    #[serde(default)]
    pub allow_in_on: Vec<String>,
}

fn deny() -> Policy {
    Policy::Deny
}

fn allow() -> Policy {
    Policy::Allow
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    Deny,
    Reject,
    Allow,
}

impl Policy {
    /// The spelling the profile and `ufw default` use.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Deny => "deny",
            Policy::Reject => "reject",
            Policy::Allow => "allow",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AllowRule {
    pub port: PortSpec,
    #[serde(default)]
    pub proto: Proto,
    /// Only from this address or network (CIDR), e.g. `203.0.113.0/24`.
    #[serde(default)]
    pub from: Option<String>,
    /// Shown by `ufw status`.
    #[serde(default)]
    pub comment: Option<String>,
}

/// A file written on the host. Give exactly one of `content` and `source`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// Absolute path on the host.
    pub path: String,
    /// The file's body.
    #[serde(default)]
    pub content: Option<String>,
    /// Take the body from this file under the profile's directory.
    #[serde(default)]
    pub source: Option<String>,
    /// Render the body as a minijinja template (strict: an undefined variable is an error). Context:
    /// `host`, `user`, `vars`.
    #[serde(default)]
    pub template: bool,
    /// Octal permission bits, quoted: `"0644"`.
    pub mode: String,
    /// `user:group`, e.g. `root:root`: root, the deploy user, an account of the base system, or one a
    /// package in `packages` creates.
    pub owner: String,
    /// Say that a setuid or setgid `mode` is meant (a program that runs with its owner's rights).
    #[serde(default)]
    pub allow_setuid: bool,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Apt {
    /// Replace Debian's own package sources.
    #[serde(default)]
    pub debian: Option<AptSource>,
    /// Replace Docker's repository (with `docker.source: docker-ce`).
    #[serde(default)]
    pub docker: Option<AptSource>,
    /// Replace Tailscale's repository.
    #[serde(default)]
    pub tailscale: Option<AptSource>,
    /// Replace Cloudflare's cloudflared repository.
    #[serde(default)]
    pub cloudflared: Option<AptSource>,
    /// Install recommended packages during first boot. Off by default: a server needs none of them
    /// (docker.io would pull git, needrestart and binutils) and first boot is much faster without.
    #[serde(default)]
    pub install_recommends: bool,
}

/// A deb822 source. Omitted fields keep the repository's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AptSource {
    /// Repository URL (`http://` or `https://`).
    pub url: String,
    /// Suites, e.g. `[bookworm]`; `["./"]` for a flat repository.
    #[serde(default)]
    pub suites: Option<Vec<String>>,
    /// Components, e.g. `[main]`; `[]` for a flat repository.
    #[serde(default)]
    pub components: Option<Vec<String>>,
    /// The repository's signing key (armored or binary OpenPGP) under the profile's directory.
    #[serde(default)]
    pub key: Option<FileRef>,
}
