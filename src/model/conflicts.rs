//! Settings that silently defeat another setting: each is reported at one of the two, naming both.

use super::{Cidr, Model, Policy, TAILSCALE_INTERFACE};
use crate::catalog::Code;
use crate::consumers::ufw;
use crate::diag::{Diagnostic, Report};

/// Tailscale's CGNAT range: tailscaled's netfilter rules drop packets from it arriving on any other
/// interface (`ts-input`: `! -i tailscale0 -s 100.64.0.0/10 -j DROP`).
const TAILSCALE_CGNAT: &str = "100.64.0.0/10";
/// Docker's default bridge (`docker0`), which dockerd takes at its first start.
const DOCKER_BRIDGE: &str = "172.17.0.0/16";
/// Docker's default address pools for networks such as Kamal's (`default-address-pools`: 172.17-31 as
/// /16s, 192.168.0.0/16 as /20s).
const DOCKER_POOLS: &[&str] = &["172.16.0.0/12", "192.168.0.0/16"];
/// Interfaces Docker creates: a WireGuard interface by one of these names would fight them (as it
/// would `TAILSCALE_INTERFACE`).
const DOCKER_INTERFACES: &[&str] = &["docker0", "br-+", "veth+"];

pub(super) fn check(model: &Model, report: &mut Report) {
    tunnel_only_ssh_vs_trusted_interfaces(model, report);
    published_ports_vs_source_rules(model, report);
    outgoing_policy(model, report);
    wireguard_networks(model, report);
    wireguard_interface_name(model, report);
    packages_vs_docker(model, report);
}

/// A listed package that the `docker` section's packages conflict with (or, for Debian's docker.io,
/// one only Docker's repository has): apt would refuse the whole install.
fn packages_vs_docker(model: &Model, report: &mut Report) {
    let Some(docker) = &model.docker else { return };
    let conflicts = super::network::docker_conflicting_packages(docker.source);
    for (i, package) in model.packages.iter().enumerate() {
        let name = package.split('=').next().unwrap_or(package);
        if conflicts.contains(&name) {
            let source = match docker.source {
                super::DockerSource::Distro => "distro",
                super::DockerSource::DockerCe => "docker-ce",
            };
            report.push(
                Diagnostic::error(
                    Code::ContradictoryRule,
                    format!("$.packages[{i}]"),
                    format!(
                        "`{name}` cannot be installed with `docker.source: {source}` ({})",
                        super::network::docker_packages(docker.source, model.host.release.facts()).join(", ")
                    ),
                )
                .with_help("remove it: the `docker` section installs Docker; pick the source there"),
            );
        }
    }
}

/// `allow_in_on` lets everything in on an interface, SSH included.
fn tunnel_only_ssh_vs_trusted_interfaces(model: &Model, report: &mut Report) {
    let (Some(wireguard), Some(firewall)) = (&model.wireguard, &model.firewall) else { return };
    if !wireguard.ssh_only_through_tunnel {
        return;
    }
    for (i, pattern) in firewall.allow_in_on.iter().enumerate() {
        if *pattern == wireguard.interface {
            continue;
        }
        report.push(
            Diagnostic::error(
                Code::ContradictoryRule,
                format!("$.firewall.allow_in_on[{i}]"),
                format!(
                    "`firewall.allow_in_on: {pattern}` lets SSH in on {pattern}, but `wireguard.ssh_only_through_tunnel` says SSH comes only through {}",
                    wireguard.interface
                ),
            )
            .with_help("remove the interface, or turn `ssh_only_through_tunnel` off and say where SSH may come from"),
        );
    }
}

/// A published port listed in `docker.published_ports.open` is let through DOCKER-USER from every
/// source, so a UFW rule restricting the same port to a network does not restrict it.
fn published_ports_vs_source_rules(model: &Model, report: &mut Report) {
    let (Some(docker), Some(firewall)) = (&model.docker, &model.firewall) else { return };
    if !docker.block_from_outside {
        return;
    }
    for (i, (ports, proto)) in docker.open.iter().enumerate() {
        for (j, rule) in firewall.allow.iter().enumerate() {
            let Some(from) = rule.from else { continue };
            if rule.proto == *proto && rule.ports.overlaps(ports) {
                report.push(
                    Diagnostic::error(
                        Code::ContradictoryRule,
                        format!("$.docker.published_ports.open[{i}]"),
                        format!(
                            "`docker.published_ports.open` lets {}/{} in from everywhere, but `firewall.allow[{j}]` allows it only from {from}",
                            super::render_port_range(ports),
                            proto.name()
                        ),
                    )
                    .with_help("remove the port from `published_ports.open` and publish the container on loopback, or drop `from` if everyone may connect"),
                );
            }
        }
    }
}

/// UFW's `outgoing: deny` also stops what the host itself starts: the tunnel and the VPN connect out.
fn outgoing_policy(model: &Model, report: &mut Report) {
    let Some(firewall) = &model.firewall else { return };
    if firewall.outgoing == Policy::Allow {
        return;
    }
    let policy = firewall.outgoing.name();
    let mut needs = Vec::new();
    if model.cloudflared.is_some() {
        needs.push(("cloudflared", "cloudflared connects out to Cloudflare's edge (7844)"));
    }
    if model.tailscale.is_some() {
        needs.push(("tailscale", "tailscaled connects out to its control plane and DERP relays"));
    }
    if model.wireguard.as_ref().is_some_and(|w| w.peers.iter().any(|p| p.endpoint.is_some())) {
        needs.push(("wireguard.peers", "WireGuard sends handshakes out to the peers' endpoints"));
    }
    for (section, why) in needs {
        report.push(
            Diagnostic::error(
                Code::ContradictoryRule,
                "$.firewall.outgoing",
                format!("`firewall.outgoing: {policy}` blocks `{section}`: {why}"),
            )
            .with_help("keep `outgoing: allow`"),
        );
    }
    if model.docker.is_some() {
        report.push(Diagnostic::warning(
            Code::ContradictoryRule,
            "$.firewall.outgoing",
            format!("`firewall.outgoing: {policy}` stops dockerd pulling images from any registry but a local one"),
        ));
    }
}

fn wireguard_networks(model: &Model, report: &mut Report) {
    let Some(wireguard) = &model.wireguard else { return };
    let own = wireguard.address;
    let mut networks: Vec<(String, Cidr)> = vec![("wireguard.address".into(), own.network())];
    for (i, peer) in wireguard.peers.iter().enumerate() {
        for (k, allowed) in peer.allowed_ips.iter().enumerate() {
            let at = format!("$.wireguard.peers[{i}].allowed_ips[{k}]");
            if allowed.prefix == 0 {
                report.push(
                    Diagnostic::error(
                        Code::ContradictoryRule,
                        &at,
                        format!("`{allowed}` routes all of this host's traffic into the tunnel (wg-quick adds a default route), cutting it off from everything else"),
                    )
                    .with_help("list the peer's own tunnel address, e.g. `10.77.0.2/32`"),
                );
                continue;
            }
            // A peer whose one address is this host's own: the kernel delivers it locally, so nothing
            // ever reaches the peer (a fleet's hosts are each checked with their own address).
            if allowed.is_host() && allowed.address == own.address {
                report.push(
                    Diagnostic::error(
                        Code::ContradictoryRule,
                        &at,
                        format!("`{allowed}` is this host's own tunnel address (`wireguard.address`): packets for the peer would never leave the host"),
                    )
                    .with_help("give the peer its own address in the tunnel, e.g. the next free one"),
                );
                continue;
            }
            networks.push((format!("wireguard.peers[{i}].allowed_ips[{k}]"), *allowed));
        }
    }
    let at = |name: &str| format!("$.{name}");
    for (name, network) in &networks {
        if model.tailscale.is_some() && overlaps(network, TAILSCALE_CGNAT) {
            report.push(Diagnostic::error(
                Code::ContradictoryRule,
                at(name),
                format!("`{name}: {network}` is inside {TAILSCALE_CGNAT}, which `tailscale` owns: tailscaled drops such packets on every other interface"),
            ).with_help("pick a private network such as 10.77.0.0/24"));
        }
        if model.docker.is_some() {
            if overlaps(network, DOCKER_BRIDGE) {
                report.push(
                    Diagnostic::error(
                        Code::ContradictoryRule,
                        at(name),
                        format!(
                            "`{name}: {network}` overlaps {DOCKER_BRIDGE}, Docker's bridge (`docker`): the routes clash"
                        ),
                    )
                    .with_help("pick a private network such as 10.77.0.0/24"),
                );
            } else if DOCKER_POOLS.iter().any(|pool| overlaps(network, pool)) {
                report.push(Diagnostic::warning(
                    Code::ContradictoryRule,
                    at(name),
                    format!("`{name}: {network}` overlaps Docker's default address pools ({}), from which `docker` takes networks such as Kamal's", DOCKER_POOLS.join(", ")),
                ).with_help("pick a network in 10.0.0.0/8"));
            }
        }
    }
}

fn overlaps(network: &Cidr, other: &str) -> bool {
    Cidr::parse(other).is_some_and(|o| o.overlaps(network))
}

fn wireguard_interface_name(model: &Model, report: &mut Report) {
    let Some(wireguard) = &model.wireguard else { return };
    let name = &wireguard.interface;
    let owner = if model.tailscale.is_some() && name == TAILSCALE_INTERFACE {
        Some("tailscale")
    } else if model.docker.is_some() && DOCKER_INTERFACES.iter().any(|p| ufw::interface_matches(p, name)) {
        Some("docker")
    } else if name == "lo" {
        Some("the loopback interface")
    } else {
        None
    };
    if let Some(owner) = owner {
        report.push(
            Diagnostic::error(
                Code::ContradictoryRule,
                "$.wireguard.interface",
                format!("`wireguard.interface: {name}` is the name of an interface `{owner}` creates"),
            )
            .with_help("keep the default `wg0`"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert!(overlaps(&Cidr::parse("100.100.0.0/24").unwrap(), TAILSCALE_CGNAT));
        assert!(overlaps(&Cidr::parse("172.17.5.0/24").unwrap(), DOCKER_BRIDGE));
        assert!(!overlaps(&Cidr::parse("10.77.0.0/24").unwrap(), DOCKER_BRIDGE));
    }
}
