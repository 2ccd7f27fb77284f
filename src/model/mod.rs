//! The validated host model: what the host must become, with every invariant checked once.
//!
//! `validate` turns a `RawProfile` into a `Model`, reporting problems by YAML path (the caller's
//! `SourceMap` turns paths into file:line:col). Local files the profile names are read through the
//! `ProfileFiles` trait, so this module stays pure and is tested with in-memory files.

pub mod cidr;
mod conflicts;
mod files;
mod host;
mod lints;
mod network;
pub mod release;
pub use network::{docker_conflicting_packages, docker_packages};
mod services;
mod user;
mod wireguard;

use crate::diag::{Diagnostic, Report};
use crate::profile::v1::RawProfile;

pub use crate::profile::v1::{DockerSource, Hardening, Policy, Proto, SecretRef};
pub use cidr::Cidr;
pub use files::{ManagedFile, template_context};
pub use host::check_hostname;
pub use network::{PortRange, render_port_range};
pub use release::{Family, Release, ReleaseFacts, TmpMount};
pub use wireguard::{Wireguard, WireguardPeer, is_key as is_wireguard_key};

/// Reads files named by the profile, relative to its directory. Implementations must refuse paths that
/// leave that directory (the effects layer resolves symlinks too).
pub trait ProfileFiles {
    fn read(&self, relative: &str) -> Result<Vec<u8>, FileError>;
}

/// Why a file named by the profile could not be read. Escaping the directory is its own case, since
/// it gets its own diagnostic code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("it leaves the profile's directory (through a symlink or `..`)")]
    Escapes,
    #[error("{0}")]
    Unreadable(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub host: Host,
    pub user: User,
    pub ssh: Ssh,
    pub docker: Option<Docker>,
    pub cloudflared: Option<Cloudflared>,
    pub tailscale: Option<Tailscale>,
    pub wireguard: Option<Wireguard>,
    pub firewall: Option<Firewall>,
    /// Extra packages, in profile order, without duplicates.
    pub packages: Vec<String>,
    pub files: Vec<ManagedFile>,
    pub apt: Apt,
    /// The system hardening items that are on (`hardening`; each off is a `hardening-off` warning).
    pub hardening: Hardening,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    /// The release the host runs (`host.os`, or [`release::DEFAULT`]).
    pub release: Release,
    pub hostname: String,
    pub timezone: String,
    pub locale: String,
    /// Swap file size as cloud-init takes it (bytes), and as written.
    pub swap: Option<(u64, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub name: String,
    /// Authorized keys in OpenSSH format (`type base64 comment`), normalized by the ssh-key crate.
    pub ssh_keys: Vec<String>,
    pub sudo: bool,
    pub shell: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Ssh {
    pub password_authentication: bool,
    pub permit_root_login: bool,
    /// No key exchange without post-quantum protection (net-ssh, Kamal's, then cannot connect).
    pub post_quantum_only: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Docker {
    pub source: DockerSource,
    pub log_max_size: String,
    pub log_max_files: u32,
    pub default_bind: std::net::IpAddr,
    pub block_from_outside: bool,
    /// Published ports reachable from outside despite `block_from_outside`.
    pub open: Vec<(PortRange, Proto)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cloudflared {
    pub token: SecretRef,
    pub ingress: Option<Vec<IngressRule>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IngressRule {
    pub hostname: Option<String>,
    pub path: Option<String>,
    pub service: String,
    pub origin_server_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tailscale {
    pub auth_key: SecretRef,
    pub ssh: bool,
    pub tags: Vec<String>,
    pub hostname: String,
    pub accept_dns: bool,
    pub login_server: Option<String>,
    pub timeout_seconds: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Firewall {
    pub incoming: Policy,
    pub outgoing: Policy,
    pub allow: Vec<AllowRule>,
    pub allow_in_on: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AllowRule {
    pub ports: PortRange,
    pub proto: Proto,
    /// The source network, host bits clear; `None` for anywhere.
    pub from: Option<Cidr>,
    /// The comment as ufw is given it (see `consumers::ufw::comment`).
    pub comment: Option<String>,
}

/// Where packages come from. `None` keeps the image's own sources.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Apt {
    pub debian: Option<Repository>,
    pub docker: Option<Repository>,
    pub tailscale: Option<Repository>,
    pub cloudflared: Option<Repository>,
    pub install_recommends: bool,
}

/// A deb822 source with its signing key (bytes as given: armored keys end in `.asc`, binary in `.gpg`).
#[derive(Debug, Clone, PartialEq)]
pub struct Repository {
    pub name: &'static str,
    pub url: String,
    pub suites: Vec<String>,
    pub components: Vec<String>,
    pub key: RepositoryKey,
    /// A second stanza for the release's security updates, where they come from another archive (Debian).
    pub security: Option<SecuritySource>,
}

impl Repository {
    /// The host the repository is served from (`download.docker.com`), as apt names a package file's site:
    /// the URL's authority without a port. `None` for a URL without one (the model refuses those).
    pub fn site(&self) -> Option<&str> {
        let (_, rest) = self.url.split_once("://")?;
        let authority = rest.split('/').next()?;
        // An IPv6 literal is bracketed (`[2001:db8::1]:8080`); otherwise a port follows the last colon.
        let host = match authority.strip_prefix('[') {
            Some(bracketed) => bracketed.split(']').next()?,
            None => authority.rsplit_once(':').map_or(authority, |(host, _)| host),
        };
        (!host.is_empty()).then_some(host)
    }
}

/// Where a Debian archive override's security updates come from: same components and key, another URL.
#[derive(Debug, Clone, PartialEq)]
pub struct SecuritySource {
    pub url: String,
    pub suite: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RepositoryKey {
    /// A key file already on the host (Debian's own archive keyring).
    System(&'static str),
    /// Key bytes written to `/etc/apt/keyrings/<name>.<asc|gpg>`.
    Embedded { bytes: Vec<u8>, armored: bool },
}

/// sshd's port: kiln leaves Debian's default.
pub const SSH_PORT: u16 = 22;
/// The UDP port tailscaled listens on (its default; `/etc/default/tailscaled` could change it, and is
/// claimed by the tailscale component for that reason).
pub const TAILSCALE_PORT: u16 = 41641;
/// The interface tailscaled creates (its default name; `--tun` could change it, and kiln leaves it).
pub const TAILSCALE_INTERFACE: &str = "tailscale0";

/// Validates a raw profile. Returns the model only when there are no errors (warnings are fine).
/// `pipeline::validate` adds what needs the lowering (files on paths kiln writes).
pub fn validate(raw: &RawProfile, files: &dyn ProfileFiles) -> (Option<Model>, Report) {
    let mut report = Report::default();
    let host = host::validate(&raw.host, &mut report);
    let release = release::of(&raw.host).facts();
    let user = user::validate(&raw.user, release.release, &raw.packages, files, &mut report);
    let ssh = Ssh {
        password_authentication: raw.ssh.password_authentication,
        permit_root_login: raw.ssh.permit_root_login,
        post_quantum_only: raw.ssh.post_quantum_only,
    };
    let docker = raw.docker.as_ref().map(|d| network::docker(d, &mut report));
    let firewall = raw.firewall.as_ref().map(|f| network::firewall(f, &mut report));
    let cloudflared = raw.cloudflared.as_ref().map(|c| services::cloudflared(c, &mut report));
    let tailscale = raw.tailscale.as_ref().map(|t| {
        services::tailscale(t, raw.host.hostname.as_deref().unwrap_or_default(), raw.docker.is_some(), &mut report)
    });
    let wireguard = raw.wireguard.as_ref().map(|w| wireguard::wireguard(w, raw, &mut report));
    let packages = files::packages(&raw.packages, &mut report);
    let apt = files::apt(raw, release, files, &mut report);
    services::check_secret_refs(raw, &mut report);

    let (Some(host), Some(user)) = (host, user) else {
        return (None, report);
    };
    let context = template_context(&host, &user, &raw.vars);
    let managed = files::files(&raw.files, &context, &user.name, raw, files, &mut report);
    if report.has_errors() {
        return (None, report);
    }
    let model = Model {
        host,
        user,
        ssh,
        docker,
        cloudflared,
        tailscale,
        wireguard,
        firewall,
        packages,
        files: managed,
        apt,
        hardening: raw.hardening.clone(),
    };
    lints::check(&model, raw.tailscale.as_ref().is_some_and(|t| t.one_off_key), &mut report);
    conflicts::check(&model, &mut report);
    let model = (!report.has_errors()).then_some(model);
    (model, report)
}

/// Pushes an error at `path`.
fn error(report: &mut Report, code: crate::catalog::Code, path: impl Into<String>, message: impl Into<String>) {
    report.push(Diagnostic::error(code, path, message));
}
