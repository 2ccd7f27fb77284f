//! Whole-host checks that need the validated model: lockout, Docker bypassing the firewall, weak SSH
//! settings and secrets that outlive first boot.

use std::net::IpAddr;

use super::SSH_PORT;
use super::{Model, Policy, Proto};
use crate::catalog::Code;
use crate::diag::{Diagnostic, Report};

use super::TAILSCALE_INTERFACE;

pub(super) fn check(model: &Model, one_off_key: bool, report: &mut Report) {
    lockout(model, report);
    docker_bypass(model, report);
    if model.firewall.is_none() {
        report.push(
            Diagnostic::warning(
                Code::NoFirewall,
                "$",
                "no `firewall` section: every port a service listens on is reachable",
            )
            .with_help("add `firewall: {incoming: deny}` and allow only what must be reachable"),
        );
    }
    if model.ssh.password_authentication {
        report.push(Diagnostic::warning(
            Code::WeakSsh,
            "$.ssh.password_authentication",
            "password logins invite brute-force attacks",
        ));
    }
    if model.ssh.permit_root_login {
        report.push(Diagnostic::warning(Code::WeakSsh, "$.ssh.permit_root_login", "root can log in over SSH"));
    }
    hardening_off(model, report);
    if model.tailscale.is_some() && !one_off_key {
        report.push(
            Diagnostic::warning(
                Code::ReusableAuthKey,
                "$.tailscale.auth_key",
                "the auth key stays readable in user-data through the metadata service for the instance's whole life",
            )
            .with_help("use a one-off (single-use) auth key and say so with `one_off_key: true`"),
        );
    }
}

/// Once UFW is enabled, is there still a way to reach SSH, and a way to log in?
fn lockout(model: &Model, report: &mut Report) {
    let tailscale_ssh = model.tailscale.as_ref().is_some_and(|t| t.ssh);
    if model.user.ssh_keys.is_empty() && !tailscale_ssh {
        report.push(
            Diagnostic::error(
                Code::Lockout,
                "$.user.ssh_keys",
                "the deploy user has no SSH key and Tailscale SSH is off: nobody can log in",
            )
            .with_help("add a key to `user.ssh_keys` or set `tailscale.ssh: true`"),
        );
    }
    let Some(firewall) = &model.firewall else { return };
    if firewall.incoming == Policy::Allow || tailscale_ssh {
        return;
    }
    let rule_ssh = firewall.allow.iter().any(|r| r.proto == Proto::Tcp && r.ports.contains(SSH_PORT));
    let tailnet_ssh = model.tailscale.is_some() && firewall.allow_in_on.iter().any(|i| i == TAILSCALE_INTERFACE);
    let tunnel_ssh = model.wireguard.as_ref().is_some_and(|w| {
        !w.peers.is_empty() && (w.ssh_only_through_tunnel || firewall.allow_in_on.contains(&w.interface))
    });
    // Everything is allowed in on a trusted interface (a provider's private network, say), SSH too.
    // Loopback is no way in, and neither is Tailscale's interface without Tailscale, or WireGuard's
    // (counted above, with its peers).
    let trusted_interface_ssh = firewall.allow_in_on.iter().any(|i| {
        i != "lo"
            && i != TAILSCALE_INTERFACE
            && model.wireguard.as_ref().is_none_or(|w| !crate::consumers::ufw::interface_matches(i, &w.interface))
    });
    if rule_ssh || tailnet_ssh || tunnel_ssh || trusted_interface_ssh {
        return;
    }
    if let Some(wireguard) = &model.wireguard {
        let diagnostic = if wireguard.peers.is_empty() {
            Diagnostic::error(
                Code::Lockout,
                "$.wireguard.peers",
                "SSH is reachable only through WireGuard, and WireGuard has no peer: nobody can reach SSH",
            )
            .with_help("add the machine that deploys (CI runner, laptop) to `wireguard.peers`")
        } else {
            Diagnostic::error(
                Code::Lockout,
                "$.wireguard",
                format!(
                    "after the firewall comes up nothing reaches SSH: port 22 is closed, also on {}",
                    wireguard.interface
                ),
            )
            .with_help("set `wireguard.ssh_only_through_tunnel: true`")
        };
        report.push(diagnostic);
        return;
    }
    if model.tailscale.is_some() {
        report.push(
            Diagnostic::warning(
                Code::Lockout,
                "$.firewall.allow_in_on",
                "SSH over the tailnet then depends on Tailscale's own netfilter rules letting it past UFW",
            )
            .with_help("add `allow_in_on: [tailscale0]`, or `tailscale.ssh: true`"),
        );
        return;
    }
    report.push(
        Diagnostic::error(
            Code::Lockout,
            "$.firewall.incoming",
            "after the firewall comes up nothing reaches SSH: port 22 is closed and there is no VPN",
        )
        .with_help("enable `tailscale` (with `ssh: true` or `firewall.allow_in_on: [tailscale0]`), allow 22/tcp from a trusted network, or list a private interface in `allow_in_on`"),
    );
}

/// Docker DNATs published ports before UFW's INPUT rules see them.
fn docker_bypass(model: &Model, report: &mut Report) {
    let (Some(docker), Some(firewall)) = (&model.docker, &model.firewall) else { return };
    if firewall.incoming == Policy::Allow || docker.block_from_outside {
        return;
    }
    let public_bind = match docker.default_bind {
        IpAddr::V4(a) => !a.is_loopback(),
        IpAddr::V6(a) => !a.is_loopback(),
    };
    if public_bind {
        report.push(
            Diagnostic::warning(
                Code::DockerBypassesFirewall,
                "$.docker.published_ports",
                "ports that containers publish (`-p 80:80`) will be reachable from outside although UFW denies them",
            )
            .with_help("keep `default_bind: 127.0.0.1` or `block_from_outside: true`"),
        );
    }
}

/// Each hardening item turned off: allowed (a host may need it), never silent, refused by `--strict`.
fn hardening_off(model: &Model, report: &mut Report) {
    let h = &model.hardening;
    let items = [
        (
            h.kernel_network,
            "kernel_network",
            "the kernel's network hardening (redirects, source routing, reverse-path filter, martians, SYN cookies) is not applied",
        ),
        (
            h.time_sync,
            "time_sync",
            "systemd-timesyncd is not installed or started: nothing kiln checks keeps the clock right",
        ),
        (
            h.persistent_journal,
            "persistent_journal",
            "the journal is not made persistent and capped: logs may be lost at reboot, or grow unbounded",
        ),
        (
            h.tmp_nosuid_nodev,
            "tmp_nosuid_nodev",
            "`/tmp` is not mounted nosuid,nodev: setuid programs and device files there keep working",
        ),
        (
            h.automatic_updates,
            "automatic_updates",
            "security updates are not installed automatically: nothing patches the host after its first boot",
        ),
    ];
    for (on, name, what) in items {
        if !on {
            report.push(
                Diagnostic::warning(Code::HardeningOff, format!("$.hardening.{name}"), what)
                    .with_help(format!("remove `{name}: false` unless this host needs it")),
            );
        }
    }
}
