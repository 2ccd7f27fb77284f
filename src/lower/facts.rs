//! What the components decide that a booted host must show: packages, units and their sockets, the
//! firewall, secret files, the deploy user's groups, how the daemons were started.
//!
//! Each component declares these while it lowers, through the `Parts` helpers that also hand it the
//! commands to run (`ensure_running` gives the unit's start command, `firewall_rule` the rule's `ufw`
//! command), so the user-data is made from the same facts `kiln expect` reads (`crate::expect`): a
//! component cannot install, start or open something that the booted host is not checked for.

use std::net::IpAddr;

use crate::model::{Cidr, Policy, PortRange, Proto, render_port_range};

/// Everything the components declared, in the order they declared it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// Every package the host must have, repeats included (a profile may list one a section installs).
    pub packages: Vec<Package>,
    /// Units that must be active and enabled once provisioning is done.
    pub units: Vec<Unit>,
    /// UFW's default policies, when the profile has a firewall.
    pub firewall: Option<FirewallPolicy>,
    /// Every rule the provisioning script gives UFW, in the order it gives them.
    pub firewall_rules: Vec<FirewallRule>,
    /// Published container ports that stay reachable from outside, when kiln filters `DOCKER-USER`.
    pub docker_user_open: Option<Vec<(PortRange, Proto)>>,
    /// dockerd's `live-restore`, when the host runs Docker.
    pub docker_live_restore: Option<bool>,
    pub secret_files: Vec<SecretFile>,
    /// Supplementary groups the provisioning script adds the deploy user to.
    pub deploy_user_groups: Vec<String>,
    /// cloudflared's command line after the program name (its unit's `ExecStart`).
    pub cloudflared_args: Option<Vec<String>>,
    /// The `tailscale up` command the provisioning script runs.
    pub tailscale_up: Option<Vec<String>>,
    /// What kiln's sshd drop-in sets (and, sorting first, decides).
    pub sshd: Vec<SshdSetting>,
    /// What its `Match User <deploy user>` block sets for the deploy user's connections.
    pub sshd_deploy_user: Vec<SshdSetting>,
    /// Warnings ssh-audit gives about the host's sshd that kiln accepts, each for a stated reason.
    pub ssh_audit_accepted: Vec<AcceptedAuditWarning>,
    /// Kernel settings kiln's sysctl file sets, in the order it sets them.
    pub sysctls: Vec<Sysctl>,
    /// journald's on-disk journal, when kiln makes it persistent.
    pub journal: Option<Journal>,
    /// Options `/tmp` must be mounted with (none: kiln leaves `/tmp` as the image has it).
    pub tmp_options: Vec<&'static str>,
    /// unattended-upgrades' origin patterns kiln adds (`hardening.automatic_updates`).
    pub update_origins: Vec<String>,
}

impl Facts {
    /// The cloud-config `packages:` list: what cloud-init asks apt for, each once, first mention first.
    pub fn listed_packages(&self) -> Vec<String> {
        let mut listed: Vec<String> = Vec::new();
        for package in self.packages.iter().filter(|p| p.install == Install::Listed) {
            let argument = package.apt_argument();
            if !listed.contains(&argument) {
                listed.push(argument);
            }
        }
        listed
    }

    /// The value kiln's drop-in gives an sshd keyword, as written there.
    pub fn sshd_setting(&self, keyword: &str) -> Option<&str> {
        self.sshd.iter().find(|s| s.keyword == keyword).map(|s| s.value.as_str())
    }

    /// Whether a container port published at `port`/`proto` stays reachable from every interface: it is
    /// declared open in `DOCKER-USER` (UFW does not see published ports), or nothing filters them.
    pub fn published_port_open(&self, proto: Proto, port: u16) -> bool {
        match &self.docker_user_open {
            None => true,
            Some(open) => open.iter().any(|(ports, p)| *p == proto && ports.contains(port)),
        }
    }

    /// Whether a client anywhere reaches `port`/`proto` on the host's public interface, as far as the
    /// firewall decides: it lets everything in by default, or a rule lets that port in from everywhere
    /// on every interface. Without a firewall nothing is filtered.
    pub fn open_to_everyone(&self, proto: Proto, port: u16) -> bool {
        match &self.firewall {
            None => true,
            Some(policy) => {
                policy.incoming == Policy::Allow
                    || self.firewall_rules.iter().any(|r| r.lets_in_from_everywhere(proto, port))
            }
        }
    }
}

/// A Debian package the host must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    /// The version the profile pins (`htop=3.2.2-2`), if any.
    pub version: Option<String>,
    pub install: Install,
}

impl Package {
    /// A package kiln asks for, as a profile's `packages` entry spells it (`name` or `name=version`).
    pub fn listed(spec: &str) -> Self {
        let (name, version) = match spec.split_once('=') {
            Some((name, version)) => (name, Some(version.to_string())),
            None => (spec, None),
        };
        Package { name: name.to_string(), version, install: Install::Listed }
    }

    /// What apt is asked to install: the name, with its version pin if any.
    pub fn apt_argument(&self) -> String {
        match &self.version {
            Some(version) => format!("{}={version}", self.name),
            None => self.name.clone(),
        }
    }
}

/// How a package gets onto the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Install {
    /// In the cloud-config `packages:` list: cloud-init asks apt for it.
    Listed,
    /// Pulled in by a listed package that depends on it (Debian's docker.io on containerd): not listed,
    /// but the host must have it all the same.
    DependencyOf(String),
}

/// A systemd unit that must be active and enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub name: String,
    pub started_by: StartedBy,
    /// The sockets its processes listen on.
    pub listeners: Vec<Listener>,
}

/// Who brings a unit up: kiln's script, or something kiln relies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartedBy {
    /// The image: it runs before kiln does (sshd).
    Image,
    /// The provisioning script's `ensure_running` (enables, then starts).
    Script,
    /// A unit the script starts requires it (containerd, for docker.service).
    Dependency,
}

/// A socket a unit's process (or the kernel, for it) listens on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub proto: Proto,
    pub port: ListenPort,
    pub scope: ListenScope,
    pub owner: SocketOwner,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenPort {
    Fixed(u16),
    /// Whatever port the program picks when it starts (containerd's CRI stream server).
    Picked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenScope {
    /// Every address of the host.
    Any,
    Loopback,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketOwner {
    /// The program, as `ss -p` names it.
    Program(String),
    /// The kernel holds the socket itself (WireGuard's), so `ss -p` names no process.
    Kernel,
}

/// UFW's default policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirewallPolicy {
    pub incoming: Policy,
    pub outgoing: Policy,
}

/// One rule kiln gives UFW. `lower::ufw_command` renders it for the provisioning script and
/// `expect::ufw_stored` as UFW then stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallRule {
    pub action: RuleAction,
    /// `in on IFACE`: only traffic arriving on this interface (a ufw pattern such as `wg+`).
    pub interface: Option<String>,
    /// `None` for every protocol.
    pub proto: Option<Proto>,
    /// `None` for every port.
    pub ports: Option<PortRange>,
    /// The source network, host bits clear; `None` for anywhere.
    pub from: Option<Cidr>,
    /// What ufw stores with the rule and shows in `ufw status`.
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAction {
    Allow,
}

impl RuleAction {
    pub fn name(self) -> &'static str {
        match self {
            RuleAction::Allow => "allow",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressFamily {
    Ipv4,
    Ipv6,
}

impl AddressFamily {
    /// Every address of the family, as ufw writes a source of `any`.
    pub fn anywhere(self) -> &'static str {
        match self {
            AddressFamily::Ipv4 => "0.0.0.0/0",
            AddressFamily::Ipv6 => "::/0",
        }
    }
}

impl FirewallRule {
    /// Lets in `ports`/`proto` on every interface.
    pub fn allow(proto: Proto, ports: PortRange) -> Self {
        FirewallRule {
            action: RuleAction::Allow,
            interface: None,
            proto: Some(proto),
            ports: Some(ports),
            from: None,
            comment: None,
        }
    }

    /// Lets everything in on `interface`.
    pub fn allow_in_on(interface: &str) -> Self {
        FirewallRule {
            action: RuleAction::Allow,
            interface: Some(interface.to_string()),
            proto: None,
            ports: None,
            from: None,
            comment: None,
        }
    }

    pub fn on(mut self, interface: &str) -> Self {
        self.interface = Some(interface.to_string());
        self
    }

    pub fn from(mut self, network: Option<Cidr>) -> Self {
        self.from = network;
        self
    }

    pub fn comment(mut self, comment: Option<String>) -> Self {
        self.comment = comment;
        self
    }

    /// The address families ufw adds the rule to: both (IPv6 is on in Debian's ufw), unless the
    /// source is an IPv4 or an IPv6 network, which only its own family can match.
    pub fn families(&self) -> &'static [AddressFamily] {
        match self.from.map(|f| f.address) {
            Some(IpAddr::V4(_)) => &[AddressFamily::Ipv4],
            Some(IpAddr::V6(_)) => &[AddressFamily::Ipv6],
            None => &[AddressFamily::Ipv4, AddressFamily::Ipv6],
        }
    }

    /// Whether the rule alone lets in `port`/`proto` from any address, whatever interface it arrives on.
    pub fn lets_in_from_everywhere(&self, proto: Proto, port: u16) -> bool {
        self.action == RuleAction::Allow
            && self.interface.is_none()
            && self.from.is_none()
            && self.proto.is_none_or(|p| p == proto)
            && self.ports.is_none_or(|r| r.contains(port))
    }

    /// `22`, `8000:8010` or `any`, as ufw takes and stores a port.
    pub fn port_text(&self) -> String {
        self.ports.as_ref().map_or_else(|| "any".to_string(), render_port_range)
    }
}

/// One line of kiln's sshd drop-in: `Keyword value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshdSetting {
    pub keyword: &'static str,
    pub value: String,
}

impl SshdSetting {
    /// The value as `sshd -T` prints it: prohibit-password by its older name (`without-password` comes
    /// first in OpenSSH's table of PermitRootLogin values).
    pub fn printed_value(&self) -> &str {
        match self.value.as_str() {
            "prohibit-password" => "without-password",
            value => value,
        }
    }

    /// The keyword as `sshd -T` prints it: lower case.
    pub fn printed_keyword(&self) -> String {
        self.keyword.to_ascii_lowercase()
    }

    /// The values `sshd -T` prints after [`Self::printed_keyword`], one per line: [`Self::printed_value`], or for
    /// a keyword that takes a list of names (AllowUsers) one line per name.
    pub fn printed_values(&self) -> Vec<String> {
        if LISTED_PER_LINE.contains(&self.printed_keyword().as_str()) {
            self.value.split_whitespace().map(str::to_string).collect()
        } else {
            vec![self.printed_value().to_string()]
        }
    }
}

/// Keywords whose values `sshd -T` prints one per line (servconf.c `dump_cfg_strarray`).
const LISTED_PER_LINE: &[&str] = &["allowusers", "denyusers", "allowgroups", "denygroups"];

/// A warning of ssh-audit's that kiln accepts on its hosts, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedAuditWarning {
    /// The algorithm ssh-audit names.
    pub algorithm: String,
    pub why: String,
}

/// A secret kiln puts in a root-only 0600 file under `SECRETS_DIR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretFile {
    pub path: String,
    pub lifetime: SecretLifetime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretLifetime {
    /// The daemon reads it at every start: it stays.
    Kept,
    /// Used once by the provisioning script, which then removes it.
    RemovedOnceUsed,
}

/// One kernel setting: `key = value` in sysctl.d syntax, as `sysctl` prints it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysctl {
    pub key: &'static str,
    pub value: &'static str,
}

/// journald's persistent storage and its cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Journal {
    /// `SystemMaxUse=` as written (`500M`).
    pub system_max_use: &'static str,
    /// The same in bytes, as journald reports it (`MAX_USE=` of its usage message).
    pub system_max_use_bytes: u64,
}
