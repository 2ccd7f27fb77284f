//! UFW: defaults, allow rules and interfaces, the Docker rules hook, and enabling the firewall last.

use super::Parts;
use super::docker::{DOCKER_USER_MARKER, DOCKER_USER_RULES};
use super::script::{Step, cmd};
use crate::consumers::ufw;
use crate::model::{AllowRule, Firewall, Model, render_port_range};

/// The `ufw` command for one allow rule; ufw stores the comment and shows it in `ufw status`.
pub fn allow_command(rule: &AllowRule) -> Vec<String> {
    let mut args: Vec<String> = ["ufw", "allow", "proto", rule.proto.name(), "from"].map(String::from).to_vec();
    args.push(rule.from.as_ref().map_or_else(|| "any".to_string(), ufw::source_text));
    args.extend(["to", "any", "port"].map(String::from));
    args.push(render_port_range(&rule.ports));
    if let Some(comment) = &rule.comment {
        args.push("comment".into());
        args.push(comment.clone());
    }
    args
}

pub(super) fn lower(firewall: &Firewall, model: &Model, parts: &mut Parts) {
    parts.package("ufw");
    // ufw's rules, its settings (IPV6=, default policies) and its unit are what `firewall` declares.
    parts.claim_prefix("/etc/ufw/");
    parts.claim("/etc/default/ufw");
    parts.claim_unit("ufw.service");
    let mut commands = vec![
        cmd(&["ufw", "default", firewall.incoming.name(), "incoming"]),
        cmd(&["ufw", "default", firewall.outgoing.name(), "outgoing"]),
    ];
    commands.extend(firewall.allow.iter().map(allow_command));
    for interface in &firewall.allow_in_on {
        commands.push(cmd(&["ufw", "allow", "in", "on", interface]));
    }
    if model.docker.as_ref().is_some_and(|d| d.block_from_outside) {
        commands.push(cmd(&["append_once", "/etc/ufw/after.rules", DOCKER_USER_RULES, DOCKER_USER_MARKER]));
    }
    parts.bake_step(Step::new("firewall: rules", commands));
    parts.bake_step(Step::new(
        "firewall: enable",
        vec![cmd(&["ufw", "--force", "enable"]), cmd(&["ensure_running", "ufw.service"])],
    ));
}
