//! UFW: defaults, allow rules and interfaces, the Docker rules hook, and enabling the firewall last.

use super::Parts;
use super::docker::{DOCKER_USER_MARKER, DOCKER_USER_RULES};
use super::facts::{FirewallPolicy, FirewallRule};
use super::script::{Step, cmd};
use crate::consumers::ufw;
use crate::model::{AllowRule, Firewall};

/// The `ufw` command that adds a rule (the only place kiln spells one): ufw's extended syntax,
/// `ufw allow [in on IFACE] [proto P] from SRC to any [port PORTS] [comment TEXT]`, or just
/// `ufw allow in on IFACE` for everything arriving on an interface.
pub fn ufw_command(rule: &FirewallRule) -> Vec<String> {
    let mut args: Vec<String> = vec!["ufw".into(), rule.action.name().into()];
    if let Some(interface) = &rule.interface {
        args.extend(["in".into(), "on".into(), interface.clone()]);
    }
    if rule.proto.is_some() || rule.ports.is_some() || rule.from.is_some() {
        if let Some(proto) = rule.proto {
            args.extend(["proto".into(), proto.name().into()]);
        }
        args.push("from".into());
        args.push(rule.from.as_ref().map_or_else(|| "any".to_string(), ufw::source_text));
        args.extend(["to".into(), "any".into()]);
        if rule.ports.is_some() {
            args.extend(["port".into(), rule.port_text()]);
        }
    }
    if let Some(comment) = &rule.comment {
        args.extend(["comment".into(), comment.clone()]);
    }
    args
}

/// A profile's `firewall.allow` entry as a rule.
fn allow_rule(rule: &AllowRule) -> FirewallRule {
    FirewallRule::allow(rule.proto, rule.ports).from(rule.from).comment(rule.comment.clone())
}

pub(super) fn lower(firewall: &Firewall, parts: &mut Parts) {
    parts.package("ufw");
    // ufw's rules, its settings (IPV6=, default policies) and its unit are what `firewall` declares.
    parts.claim_prefix("/etc/ufw/");
    parts.claim("/etc/default/ufw");
    parts.claim_unit("ufw.service");
    let policy = FirewallPolicy { incoming: firewall.incoming, outgoing: firewall.outgoing };
    parts.facts.firewall = Some(policy);
    let mut commands = vec![
        cmd(&["ufw", "default", policy.incoming.name(), "incoming"]),
        cmd(&["ufw", "default", policy.outgoing.name(), "outgoing"]),
    ];
    for rule in &firewall.allow {
        commands.push(parts.firewall_rule(allow_rule(rule)));
    }
    for interface in &firewall.allow_in_on {
        commands.push(parts.firewall_rule(FirewallRule::allow_in_on(interface)));
    }
    // The docker component wrote its DOCKER-USER rules for UFW to load (only with a firewall).
    if parts.facts.docker_user_open.is_some() {
        commands.push(cmd(&["append_once", "/etc/ufw/after.rules", DOCKER_USER_RULES, DOCKER_USER_MARKER]));
    }
    parts.bake_step(Step::new("firewall: rules", commands));
    let start = parts.ensure_running("ufw.service", Vec::new());
    parts.bake_step(Step::new("firewall: enable", vec![cmd(&["ufw", "--force", "enable"]), start]));
}
