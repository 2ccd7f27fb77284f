//! Docker: package, daemon.json (log rotation, default bind address) and the `DOCKER-USER` rules that
//! stop published ports from bypassing UFW, loaded by UFW itself so they survive reboots and restarts.

use serde::Serialize;

use super::Parts;
use super::facts::{ListenPort, ListenScope, Listener, SocketOwner, StartedBy};
use super::script::Step;
use crate::cloud_config::WriteFile;
use crate::model::{Docker, DockerSource, Model, PortRange, Proto, render_port_range};

pub const DAEMON_JSON: &str = "/etc/docker/daemon.json";
pub const DOCKER_USER_RULES: &str = "/etc/kiln/ufw-docker-user.rules";
pub const DOCKER_USER_MARKER: &str = "# BEGIN kiln DOCKER-USER";

#[derive(Serialize)]
struct DaemonJson<'a> {
    ip: String,
    #[serde(rename = "log-driver")]
    log_driver: &'a str,
    #[serde(rename = "log-opts")]
    log_opts: LogOpts<'a>,
    /// Containers keep running while dockerd restarts or is upgraded (an unattended upgrade of docker.io
    /// restarts it): the app stays up. Incompatible only with swarm mode, which Kamal does not use.
    #[serde(rename = "live-restore")]
    live_restore: bool,
}

#[derive(Serialize)]
struct LogOpts<'a> {
    #[serde(rename = "max-size")]
    max_size: &'a str,
    #[serde(rename = "max-file")]
    max_file: String,
}

pub(super) fn lower(docker: &Docker, model: &Model, parts: &mut Parts) {
    for package in crate::model::docker_packages(docker.source, model.host.release.facts()) {
        parts.package(package);
    }
    if docker.source == DockerSource::Distro {
        // docker.io depends on Debian's containerd, which the host must then have too.
        parts.package_as_dependency("containerd", "docker.io");
    }
    let daemon = DaemonJson {
        ip: docker.default_bind.to_string(),
        log_driver: "json-file",
        log_opts: LogOpts { max_size: &docker.log_max_size, max_file: docker.log_max_files.to_string() },
        live_restore: true,
    };
    parts.facts.docker_live_restore = Some(daemon.live_restore);
    let json = serde_json::to_string_pretty(&daemon).expect("daemon.json serializes") + "\n";
    parts.bake_file(WriteFile::new(DAEMON_JSON, 0o644, json));
    // A unit drop-in or /etc/default/docker could add `-H tcp://0.0.0.0:2375` or `--iptables=false`.
    parts.claim("/etc/default/docker");
    for unit in ["docker.service", "docker.socket", "containerd.service"] {
        parts.claim_unit(unit);
    }
    if docker.block_from_outside && model.firewall.is_some() {
        parts.bake_file(WriteFile::new(DOCKER_USER_RULES, 0o644, docker_user_rules(&docker.open, model)));
        // The firewall component loads these rules into UFW (it lowers after this one).
        parts.facts.docker_user_open = Some(docker.open.clone());
    }
    let start = parts.ensure_running("docker.service", Vec::new());
    let join_group = parts.add_deploy_user_to_group(&model.user.name, "docker");
    parts.bake_step(Step::new("docker: start and let the deploy user use it", vec![start, join_group]));
    // docker.service requires containerd.service (both packages' units say so), which then runs too.
    parts.running_without_script(
        "containerd.service",
        StartedBy::Dependency,
        // containerd's CRI stream server listens on loopback, on a port it picks at each start.
        vec![Listener {
            proto: Proto::Tcp,
            port: ListenPort::Picked,
            scope: ListenScope::Loopback,
            owner: SocketOwner::Program("containerd".into()),
        }],
    );
}

/// iptables-restore input appended to UFW's after.rules. Published ports are DNATed, so the filter sees
/// the container's port: `--ctorigdstport` matches the port the client actually connected to. An exception
/// also requires `--ctstate DNAT`: a neighbour on the provider's layer-2 network can route to the Docker
/// bridge and connect to a container's own address (Docker before 28 accepts that for every published port,
/// even one published on 127.0.0.1: docs.docker.com, "Packet filtering and firewalls"); such a connection was
/// never DNATed, its original destination port is the container's, and without the state it would pass
/// whenever that port equals a declared host port (the `wireguard` scenario routes to the bridge to prove it
/// dropped).
fn docker_user_rules(open: &[(PortRange, Proto)], model: &Model) -> String {
    let mut rules = vec![
        DOCKER_USER_MARKER.to_string(),
        "# Managed by kiln: new connections from outside may not reach published container ports.".into(),
        "*filter".into(),
        ":DOCKER-USER - [0:0]".into(),
        "-A DOCKER-USER -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN".into(),
        "-A DOCKER-USER -i docker0 -j RETURN".into(),
        "-A DOCKER-USER -i br-+ -j RETURN".into(),
        "-A DOCKER-USER -i lo -j RETURN".into(),
    ];
    let trusted = model.firewall.iter().flat_map(|f| f.allow_in_on.iter());
    for interface in trusted {
        rules.push(format!("-A DOCKER-USER -i {interface} -j RETURN"));
    }
    for (ports, proto) in open {
        rules.push(format!(
            "-A DOCKER-USER -p {} -m conntrack --ctstate DNAT --ctorigdstport {} -j RETURN",
            proto.name(),
            render_port_range(ports)
        ));
    }
    rules.push("-A DOCKER-USER -m conntrack --ctstate NEW -j DROP".into());
    rules.push("-A DOCKER-USER -j RETURN".into());
    rules.push("COMMIT".into());
    rules.push("# END kiln DOCKER-USER".into());
    rules.join("\n") + "\n"
}
