//! cloudflared: package, token file (0600), our own systemd unit (the .deb ships none) and, optionally,
//! a locally managed ingress configuration.

use serde::Serialize;

use super::script::{Step, cmd};
use super::{Parts, SECRETS_DIR};
use crate::cloud_config::WriteFile;
use crate::model::{Cloudflared, IngressRule};
use crate::secrets::Secret;
use crate::templates;

pub const UNIT_PATH: &str = "/etc/systemd/system/cloudflared.service";
pub const CONFIG_PATH: &str = "/etc/cloudflared/config.yml";
/// Watches cloudflared's binary: an upgrade (unattended or not) restarts the tunnel on the new version.
/// The vendor's package restarts nothing (its postinst only links the binary), and needrestart, where
/// present, restarts a service only when it runs an executable that was replaced — kiln's unit does not
/// depend on either.
pub const RESTART_PATH_UNIT: &str = "kiln-cloudflared-upgrade.path";
const RESTART_SERVICE_UNIT: &str = "kiln-cloudflared-upgrade.service";
const BINARY: &str = "/usr/bin/cloudflared";

pub fn token_path() -> String {
    format!("{SECRETS_DIR}/cloudflared-token")
}

/// cloudflared's arguments: the token comes from a file, so it never appears in `ps`.
pub fn args(local_config: bool) -> Vec<String> {
    let mut args: Vec<String> = vec!["--no-autoupdate".into(), "tunnel".into()];
    if local_config {
        args.extend(["--config".into(), CONFIG_PATH.into()]);
    }
    args.extend(["run".into(), "--token-file".into(), token_path()]);
    args
}

#[derive(Serialize)]
struct Config<'a> {
    ingress: Vec<Rule<'a>>,
}

#[derive(Serialize)]
struct Rule<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    hostname: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<&'a str>,
    service: &'a str,
    #[serde(rename = "originRequest", skip_serializing_if = "Option::is_none")]
    origin_request: Option<OriginRequest<'a>>,
}

#[derive(Serialize)]
struct OriginRequest<'a> {
    #[serde(rename = "originServerName")]
    origin_server_name: &'a str,
}

pub(super) fn lower(cloudflared: &Cloudflared, token: &Secret, parts: &mut Parts) {
    parts.package("cloudflared");
    parts.claim_prefix("/etc/cloudflared/");
    parts.claim_unit("cloudflared.service");
    parts.claim_unit(RESTART_PATH_UNIT);
    parts.claim_unit(RESTART_SERVICE_UNIT);
    parts.kept_secret_file(&token_path(), Some(token));
    if let Some(rules) = &cloudflared.ingress {
        parts.bake_file(WriteFile::new(CONFIG_PATH, 0o644, ingress_config(rules)));
    }
    let args = args(cloudflared.ingress.is_some());
    let unit = templates::render(
        templates::CLOUDFLARED_UNIT,
        minijinja::context! { binary => BINARY, args => args.join(" ") },
    );
    parts.facts.cloudflared_args = Some(args);
    // The unit is baked but only enabled at boot, once the token it reads is there.
    parts.bake_file(WriteFile::new(UNIT_PATH, 0o644, unit));
    // systemd must learn about the unit written in this boot; an instance of a golden image loads the
    // baked unit when it boots, so its own boot skips the reload (seconds, under emulation).
    parts.bake_step(Step::new("cloudflared: install the unit", vec![cmd(&["systemctl", "daemon-reload"])]));
    parts.bake_file(WriteFile::new(format!("/etc/systemd/system/{RESTART_PATH_UNIT}"), 0o644, restart_path_unit()));
    parts.bake_file(WriteFile::new(
        format!("/etc/systemd/system/{RESTART_SERVICE_UNIT}"),
        0o644,
        restart_service_unit(),
    ));
    let start = parts.ensure_running("cloudflared.service", Vec::new());
    let watch = parts.ensure_running(RESTART_PATH_UNIT, Vec::new());
    parts.boot_step(Step::new("cloudflared: start the tunnel", vec![start, watch]));
}

/// `PathChanged=` fires when dpkg renames the new binary into place (systemd watches the directory for it).
fn restart_path_unit() -> String {
    format!(
        "# Managed by kiln: restart cloudflared when an upgrade replaces its binary.\n\
         [Unit]\nDescription=Restart cloudflared after its package is upgraded\n\n\
         [Path]\nPathChanged={BINARY}\nUnit={RESTART_SERVICE_UNIT}\n\n\
         [Install]\nWantedBy=multi-user.target\n"
    )
}

/// `try-restart`: a tunnel that is stopped on purpose stays stopped.
fn restart_service_unit() -> String {
    "# Managed by kiln: started by kiln-cloudflared-upgrade.path.\n\
     [Unit]\nDescription=Restart cloudflared on its upgraded binary\n\n\
     [Service]\nType=oneshot\nExecStart=/usr/bin/systemctl try-restart cloudflared.service\n"
        .to_string()
}

fn ingress_config(rules: &[IngressRule]) -> String {
    let config = Config {
        ingress: rules
            .iter()
            .map(|r| Rule {
                hostname: r.hostname.as_deref(),
                path: r.path.as_deref(),
                service: &r.service,
                origin_request: r.origin_server_name.as_deref().map(|name| OriginRequest { origin_server_name: name }),
            })
            .collect(),
    };
    let body = serde_saphyr::to_string(&config).expect("ingress config serializes");
    format!("# Managed by kiln: cloudflared ingress rules, first match wins.\n{body}")
}
