//! Tailscale: package, auth key file (0600, removed once used) and a bounded `tailscale up`.

use super::facts::{ListenPort, ListenScope, Listener, SocketOwner};
use super::script::Step;
use super::{Parts, SECRETS_DIR};
use crate::model::{Proto, Tailscale};
use crate::secrets::Secret;

pub use crate::model::TAILSCALE_PORT as PORT;

pub fn auth_key_path() -> String {
    format!("{SECRETS_DIR}/tailscale-auth-key")
}

/// The `tailscale up` command line. The key is read from a file, so it never appears in `ps`.
pub fn up_command(tailscale: &Tailscale) -> Vec<String> {
    let mut args = vec![
        "tailscale".to_string(),
        "up".into(),
        format!("--auth-key=file:{}", auth_key_path()),
        format!("--hostname={}", tailscale.hostname),
        format!("--accept-dns={}", tailscale.accept_dns),
        format!("--timeout={}s", tailscale.timeout_seconds),
    ];
    if tailscale.ssh {
        args.push("--ssh".into());
    }
    if !tailscale.tags.is_empty() {
        args.push(format!("--advertise-tags={}", tailscale.tags.join(",")));
    }
    if let Some(server) = &tailscale.login_server {
        args.push(format!("--login-server={server}"));
    }
    args
}

pub(super) fn lower(tailscale: &Tailscale, key: &Secret, parts: &mut Parts) {
    parts.package("tailscale");
    // tailscaled's state (the node key) and its flags (`PORT=`, which the firewall rule assumes).
    parts.claim_prefix("/var/lib/tailscale/");
    parts.claim("/etc/default/tailscaled");
    parts.claim_unit("tailscaled.service");
    let remove_key = parts.used_once_secret_file(&auth_key_path(), key);
    let start = parts.ensure_running(
        "tailscaled.service",
        vec![Listener {
            proto: Proto::Udp,
            port: ListenPort::Fixed(PORT),
            scope: ListenScope::Any,
            owner: SocketOwner::Program("tailscaled".into()),
        }],
    );
    let up = up_command(tailscale);
    parts.facts.tailscale_up = Some(up.clone());
    // The node is registered once `up` returns; the key has done its job and should not linger on disk.
    parts.boot_step(Step::new("tailscale: join the tailnet", vec![start, up, remove_key]));
}
