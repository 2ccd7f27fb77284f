//! Lowering: `Model` + resolved secrets → `CloudConfig`. One file per component; each contributes
//! files, provisioning steps and the paths it claims, and `script` joins the steps into the one runcmd
//! entry. Each also declares the facts the booted host must show (`facts`: packages, units, firewall
//! rules, secret files…), which the cloud-config and the script are made from and `kiln expect` reads.
//!
//! Order matters and follows docs/design.md §4.1: files first (write_files runs in cloud-init's init stage),
//! then packages (final stage, after `apt-get update`), then the provisioning script, whose last step
//! enables UFW so that a failure earlier leaves the host reachable and cloud-init in error.
//!
//! Every file and step is tagged with the stage it belongs to (`When`): what can be baked into a golden
//! image (no secret, nothing per instance) or what must wait for the instance's own boot. A `Stage`
//! selects: `full` is everything in one first boot, `bake` and `boot` are the two halves.

mod apt;
pub mod cloudflared;
pub mod docker;
pub mod facts;
mod firewall;
mod hardening;
mod host;
mod script;
mod ssh;
mod tailscale;
pub mod updates;
mod users;
pub mod wireguard;

use crate::cloud_config::{AptConfig, CloudConfig, Swap, WriteFile};
use crate::model::Model;
use crate::secrets::{Secret, Secrets};
pub use apt::stanza as deb822_stanza;
pub use cloudflared::{args as cloudflared_args, token_path as cloudflared_token_path};
use facts::{Facts, FirewallRule, Listener, Package, SecretFile, SecretLifetime, StartedBy, Unit};
pub use firewall::ufw_command;
pub use hardening::{JOURNALD_DROP_IN, SYSCTL_FILE, UFW_IPT_SYSCTL};
use script::cmd;
pub use script::{PROVISION_PATH, Step, provision_path};
pub use ssh::{EFFECTIVE_CHECK as SSHD_EFFECTIVE_CHECK, SSH_PORT, SSHD_DROP_IN};
pub use tailscale::PORT as TAILSCALE_PORT;
pub use tailscale::{auth_key_path as tailscale_auth_key_path, up_command as tailscale_up_command};
pub use users::entry as user_entry;

/// Where kiln keeps secrets on the host: root-only directory, 0600 files.
pub const SECRETS_DIR: &str = "/etc/kiln/secrets";

/// Which user-data to render: everything for one first boot, or one half of a golden-image workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Single-shot user-data: the base image becomes the host on its first boot.
    #[default]
    Full,
    /// What `kiln bake` applies to the golden image: packages, repositories, units, daemon
    /// configuration, firewall, users, sshd. Never a secret, never anything per instance.
    Bake,
    /// What an instance of a golden image applies at its first boot: host name, secrets, swap, joining
    /// the tailnet, starting what needs a secret.
    Boot,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Full => "full",
            Stage::Bake => "bake",
            Stage::Boot => "boot",
        }
    }

    fn includes(self, when: When) -> bool {
        match self {
            Stage::Full => true,
            Stage::Bake => when == When::Bake,
            Stage::Boot => when == When::Boot,
        }
    }
}

/// Where a file or step belongs when the profile is split into bake and boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    /// Identical on every instance and free of secrets: can live in an image.
    Bake,
    /// Per instance or secret: applied at the instance's first boot.
    Boot,
}

/// A path kiln writes or manages, and the profile section that decides its content: a profile file
/// there would be written twice, or change what that section declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// An exact path, or a prefix when `prefix` is set (a directory ends with `/`).
    pub path: String,
    pub prefix: bool,
    /// Who decides it: a profile section (`` `docker` ``) or kiln itself.
    pub by: &'static str,
}

impl Claim {
    pub fn covers(&self, path: &str) -> bool {
        if self.prefix { path.starts_with(&self.path) } else { path == self.path }
    }
}

/// What the components contribute, in the order they are collected. Packages are always baked.
#[derive(Default)]
struct Parts {
    files: Vec<(When, WriteFile)>,
    steps: Vec<(When, Step)>,
    claims: Vec<Claim>,
    /// What the host must show for it (packages among them): the helpers below declare a fact and
    /// hand back the command that makes it true, so the script and `kiln expect` cannot drift apart.
    facts: Facts,
    /// The section being lowered: what it writes is claimed in its name.
    component: &'static str,
}

impl Parts {
    fn claim(&mut self, path: &str) {
        self.claims.push(Claim { path: path.to_string(), prefix: false, by: self.component });
    }

    /// Claims every path starting with `prefix` (a directory when it ends with `/`).
    fn claim_prefix(&mut self, prefix: &str) {
        self.claims.push(Claim { path: prefix.to_string(), prefix: true, by: self.component });
    }

    /// Claims a systemd unit: its unit file wherever systemd looks, and its drop-in directories, which
    /// could change how the unit runs.
    fn claim_unit(&mut self, unit: &str) {
        for dir in ["/etc/systemd/system/", "/lib/systemd/system/", "/usr/lib/systemd/system/"] {
            self.claim(&format!("{dir}{unit}"));
            self.claim_prefix(&format!("{dir}{unit}.d/"));
            // A template instance (`wg-quick@wg0.service`) is also changed by the template's drop-ins.
            if let Some((template, rest)) = unit.split_once('@') {
                let suffix = rest.rsplit_once('.').map_or("", |(_, s)| s);
                self.claim_prefix(&format!("{dir}{template}@.{suffix}.d/"));
            }
        }
    }

    /// A package cloud-init installs (`name`, or `name=version` as a profile pins it).
    fn package(&mut self, spec: &str) {
        self.facts.packages.push(Package::listed(spec));
    }

    /// A package the host gets because `of`, which kiln installs, depends on it.
    fn package_as_dependency(&mut self, name: &str, of: &str) {
        self.facts.packages.push(Package {
            name: name.to_string(),
            version: None,
            install: facts::Install::DependencyOf(of.to_string()),
        });
    }

    /// Declares a unit the provisioning script starts, and returns the script's command for it.
    fn ensure_running(&mut self, unit: &str, listeners: Vec<Listener>) -> Vec<String> {
        self.facts.units.push(Unit { name: unit.to_string(), started_by: StartedBy::Script, listeners });
        cmd(&["ensure_running", unit])
    }

    /// Declares a unit that must run although the script does not start it (the image's, a dependency's).
    fn running_without_script(&mut self, unit: &str, started_by: StartedBy, listeners: Vec<Listener>) {
        self.facts.units.push(Unit { name: unit.to_string(), started_by, listeners });
    }

    /// Declares a UFW rule, and returns the `ufw` command that adds it.
    fn firewall_rule(&mut self, rule: FirewallRule) -> Vec<String> {
        let command = ufw_command(&rule);
        self.facts.firewall_rules.push(rule);
        command
    }

    /// Declares that the deploy user is in `group`, and returns the command that adds it there.
    fn add_deploy_user_to_group(&mut self, user: &str, group: &str) -> Vec<String> {
        self.facts.deploy_user_groups.push(group.to_string());
        cmd(&["usermod", "-aG", group, user])
    }

    /// A secret file that stays: written at the instance's boot from `secret` (0600, root's), or, with
    /// no value, made on the host by the component's own step (a generated WireGuard key).
    fn kept_secret_file(&mut self, path: &str, secret: Option<&Secret>) {
        if let Some(secret) = secret {
            self.boot_file(WriteFile::new(path, 0o600, format!("{}\n", secret.expose())));
        }
        self.facts.secret_files.push(SecretFile { path: path.to_string(), lifetime: SecretLifetime::Kept });
    }

    /// A secret file the script uses once: written at the instance's boot (0600, root's); returns the
    /// command that removes it, to run right after the one that uses it.
    fn used_once_secret_file(&mut self, path: &str, secret: &Secret) -> Vec<String> {
        self.boot_file(WriteFile::new(path, 0o600, format!("{}\n", secret.expose())));
        self.facts.secret_files.push(SecretFile { path: path.to_string(), lifetime: SecretLifetime::RemovedOnceUsed });
        cmd(&["rm", "-f", path])
    }

    fn bake_file(&mut self, file: WriteFile) {
        self.claim(&file.path);
        self.files.push((When::Bake, file));
    }

    fn boot_file(&mut self, file: WriteFile) {
        self.claim(&file.path);
        self.files.push((When::Boot, file));
    }

    fn bake_step(&mut self, step: Step) {
        self.steps.push((When::Bake, step));
    }

    fn boot_step(&mut self, step: Step) {
        self.steps.push((When::Boot, step));
    }
}

/// Builds the single-shot cloud-config (`Stage::Full`).
pub fn lower(model: &Model, secrets: &Secrets) -> CloudConfig {
    lower_stage(model, secrets, Stage::Full)
}

/// Builds the cloud-config for one stage. Pure and deterministic: same model, secrets and stage, same
/// value. The bake stage reads no secret, so it renders the same with or without them.
pub fn lower_stage(model: &Model, secrets: &Secrets, stage: Stage) -> CloudConfig {
    assemble(model, components(model, secrets), stage)
}

/// Joins what the components contributed, and the profile's own files, into one stage's cloud-config.
fn assemble(model: &Model, mut parts: Parts, stage: Stage) -> CloudConfig {
    for file in &model.files {
        let mut entry = WriteFile::new(&file.path, file.mode, file.content.clone());
        entry.owner = format!("{}:{}", file.owner, file.group);
        // Files owned by someone other than root need that user to exist first.
        entry.defer = file.owner != "root" || file.group != "root";
        // Profile files never see secrets (templates get host, user and vars), so they can be baked.
        parts.files.push((When::Bake, entry));
    }
    let steps: Vec<Step> =
        parts.steps.iter().filter(|(when, _)| stage.includes(*when)).map(|(_, s)| s.clone()).collect();
    let mut write_files: Vec<WriteFile> =
        parts.files.into_iter().filter(|(when, _)| stage.includes(*when)).map(|(_, f)| f).collect();
    write_files.push(script::provision_file(model, &steps, stage));
    let baking_or_full = stage != Stage::Boot;

    let (hostname, fqdn) = match model.host.hostname.split_once('.') {
        _ if stage == Stage::Bake => (None, None),
        Some((short, _)) => (Some(short.to_string()), Some(model.host.hostname.clone())),
        None => (Some(model.host.hostname.clone()), None),
    };
    CloudConfig {
        hostname,
        fqdn,
        manage_etc_hosts: true,
        // System settings live in the image; an instance's boot leaves them as baked.
        timezone: baking_or_full.then(|| model.host.timezone.clone()),
        locale: baking_or_full.then(|| model.host.locale.clone()),
        // A swap file is sized for the instance's disk and would only bloat the image: boot, not bake.
        swap: model.host.swap.as_ref().filter(|_| stage != Stage::Bake).map(|(bytes, _)| Swap {
            filename: "/swap.img".into(),
            size: *bytes,
            maxsize: *bytes,
        }),
        ssh_pwauth: model.ssh.password_authentication,
        ssh_genkeytypes: ssh::HOST_KEY_TYPES.iter().map(|t| t.to_string()).collect(),
        disable_root: !model.ssh.permit_root_login,
        users: vec![users::entry(model)],
        // Also at boot: apt-configure runs once per instance and would otherwise rewrite sources.list.
        apt: model.apt.debian.as_ref().map(|_| AptConfig { preserve_sources_list: true }),
        write_files,
        // An instance of a golden image installs nothing: no index download, no package.
        package_update: baking_or_full,
        package_upgrade: false,
        package_reboot_if_required: false,
        packages: if baking_or_full { parts.facts.listed_packages() } else { Vec::new() },
        runcmd: vec![vec![provision_path(stage)]],
    }
}

/// Lowers every section but the profile's own `files`, which need no lowering.
fn components(model: &Model, secrets: &Secrets) -> Parts {
    let mut parts = Parts { component: "kiln", ..Parts::default() };
    // kiln's own trees, and cloud-init's: a profile file there changes how the user-data is applied.
    for tree in ["/etc/kiln/", "/usr/local/lib/kiln/", "/etc/cloud/", "/var/lib/cloud/"] {
        parts.claim_prefix(tree);
    }
    parts.component = "`apt`";
    apt::lower(model, &mut parts);
    parts.component = "`host`";
    host::lower(model, &mut parts);
    parts.component = "`hardening`";
    hardening::lower(model, &mut parts);
    updates::lower(model, &mut parts);
    parts.component = "`user`";
    users::lower(model, &mut parts);
    if let Some(docker) = &model.docker {
        parts.component = "`docker`";
        docker::lower(docker, model, &mut parts);
    }
    if let (Some(cloudflared), Some(token)) = (&model.cloudflared, &secrets.cloudflared_token) {
        parts.component = "`cloudflared`";
        cloudflared::lower(cloudflared, token, &mut parts);
    }
    if let (Some(tailscale), Some(key)) = (&model.tailscale, &secrets.tailscale_auth_key) {
        parts.component = "`tailscale`";
        tailscale::lower(tailscale, key, &mut parts);
    }
    if let Some(wireguard) = &model.wireguard {
        parts.component = "`wireguard`";
        wireguard::lower(wireguard, secrets.wireguard_private_key.as_ref(), model, &mut parts);
    }
    parts.component = "`ssh`";
    ssh::lower(model, &mut parts);
    if let Some(firewall) = &model.firewall {
        parts.component = "`firewall`";
        firewall::lower(firewall, &mut parts);
    }
    parts.component = "`packages`";
    for package in &model.packages {
        parts.package(package);
    }
    parts
}

/// What the host booted from this model must show, as the components declare it (placeholder secrets
/// suffice, as for `claims`: cloudflared and tailscale lower only when their secret is there, and
/// what they declare never depends on its value).
pub fn facts(model: &Model) -> Facts {
    let placeholders = crate::secrets::placeholders(model);
    components(model, &placeholders).facts
}

/// Every path kiln writes or manages for this model, and the section that decides it (placeholder
/// secrets suffice: what is claimed never depends on a secret's value).
pub fn claims(model: &Model) -> Vec<Claim> {
    let placeholders = crate::secrets::placeholders(model);
    components(model, &placeholders).claims
}

/// Header lines for the user-data: provenance, the stage, and a warning when it carries secrets.
pub fn header(model: &Model, secrets: &Secrets, stage: Stage) -> Vec<String> {
    let version = env!("CARGO_PKG_VERSION");
    if stage == Stage::Bake {
        // Names no host: the bake stage, and so the golden image and its cache key, is the same for
        // every host that shares the rest of the profile.
        return vec![
            format!("Generated by kiln {version}. Edit the profile and re-render; do not edit this file."),
            "Stage: bake (golden image content; no secrets, nothing per instance).".into(),
        ];
    }
    let mut lines = vec![format!(
        "Generated by kiln {version} for host {}. Edit the profile and re-render; do not edit this file.",
        model.host.hostname
    )];
    match stage {
        Stage::Full | Stage::Bake => {}
        Stage::Boot => lines.push("Stage: boot (per instance, for a golden image baked from this profile).".into()),
    }
    let names = secrets.names();
    if secrets.any_real() {
        lines.push(format!("CONTAINS SECRETS ({}): treat this file as a credential.", names.join(", ")));
    } else if !names.is_empty() {
        lines.push(format!("Secrets redacted ({}): render without --redact to deploy.", names.join(", ")));
    }
    lines
}

#[cfg(test)]
pub(crate) mod tests;
