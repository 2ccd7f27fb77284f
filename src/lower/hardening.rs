//! System hardening on by default (`hardening`): the kernel's network settings, time sync, a persistent
//! capped journal and `/tmp` mounted `nosuid,nodev`. Each item can be turned off in the profile (a
//! `hardening-off` warning); what is on is declared as facts the booted host is checked for.

use super::Parts;
use super::facts::{Journal, Listener, Sysctl};
use super::script::{Step, cmd};
use crate::cloud_config::WriteFile;
use crate::model::{Model, TmpMount};

/// kiln's kernel settings. `60-`: sysctl.d(5) recommends 60-90 for files in /etc, so these sort after
/// the distribution's and packages' (`/usr/lib/sysctl.d/50-*.conf`, Ubuntu's `10-network-security.conf`)
/// and before the administrator's `99-sysctl.conf` (`/etc/sysctl.conf`).
pub const SYSCTL_FILE: &str = "/etc/sysctl.d/60-kiln-hardening.conf";

/// UFW applies the file `IPT_SYSCTL` names (/etc/default/ufw; Debian's is /etc/ufw/sysctl.conf, which sets
/// `log_martians=0`) with `sysctl -p` each time it starts (ufw-init-functions `ufw_start`), at boot after
/// systemd-sysctl and at every `ufw enable`: the last writer. kiln points it at its own file, so both
/// writers apply the same settings. The assignment is appended to /etc/default/ufw: ufw-init sources that
/// file, so the last assignment wins (ufw's Python reads no `IPT_SYSCTL`), and `ufw default` rewrites only
/// its policy lines.
pub const UFW_IPT_SYSCTL: &str = "/etc/kiln/ufw-ipt-sysctl.default";
const UFW_DEFAULTS: &str = "/etc/default/ufw";
const UFW_IPT_SYSCTL_MARKER: &str = "# BEGIN kiln IPT_SYSCTL";

/// kiln's journald drop-in (journald.conf(5): drop-ins in journald.conf.d override journald.conf).
pub const JOURNALD_DROP_IN: &str = "/etc/systemd/journald.conf.d/60-kiln.conf";

/// Where `tmp.mount` goes when kiln installs it: the administrator's unit directory.
const TMP_MOUNT_UNIT: &str = "/etc/systemd/system/tmp.mount";

/// journald's default cap is 10% of the file system, at most 4 GiB: 2-4 GB of a 20-40 GB cloud disk that
/// Docker images also need. 500 MB holds weeks of a quiet host's logs (containers log to Docker's
/// json-file, rotated by the `docker` section) and fits the smallest cloud disks (10 GB).
const JOURNAL_CAP: Journal = Journal { system_max_use: "500M", system_max_use_bytes: 500 * 1024 * 1024 };

/// The CIS Debian Linux 12 Benchmark's Level 1 network parameters that fit a Docker host,
/// each with why it is set so (here and in the README only: AWS's 16 KB of user-data has no room for
/// comments). IP forwarding is among them only without Docker (below).
const NETWORK: &[(&str, &str)] = &[
    // No ICMP redirects sent (a host is no router).
    ("net.ipv4.conf.all.send_redirects", "0"),
    ("net.ipv4.conf.default.send_redirects", "0"),
    // No ICMP redirects accepted (they rewrite routes).
    ("net.ipv4.conf.all.accept_redirects", "0"),
    ("net.ipv4.conf.default.accept_redirects", "0"),
    ("net.ipv6.conf.all.accept_redirects", "0"),
    ("net.ipv6.conf.default.accept_redirects", "0"),
    // Not even from listed gateways.
    ("net.ipv4.conf.all.secure_redirects", "0"),
    ("net.ipv4.conf.default.secure_redirects", "0"),
    // No source-routed packets.
    ("net.ipv4.conf.all.accept_source_route", "0"),
    ("net.ipv4.conf.default.accept_source_route", "0"),
    ("net.ipv6.conf.all.accept_source_route", "0"),
    ("net.ipv6.conf.default.accept_source_route", "0"),
    // Strict: a packet is dropped unless the route back to its source leaves by the interface it came in
    // on. Docker bridges (their networks are routed on the bridge), WireGuard (the tunnel's network is
    // routed on wg0) and tailscale0 (tailscaled routes the tailnet there, table 52) all pass; loose (2) is
    // needed for asymmetric routing only: a Tailscale exit node or subnet router, several uplinks.
    // Debian ships no per-interface default (no systemd 50-default.conf), so `all` decides (the kernel
    // takes the larger of `all` and the interface's value).
    ("net.ipv4.conf.all.rp_filter", "1"),
    ("net.ipv4.conf.default.rp_filter", "1"),
    // Log packets with impossible source addresses.
    ("net.ipv4.conf.all.log_martians", "1"),
    ("net.ipv4.conf.default.log_martians", "1"),
    // SYN cookies, ICMP broadcasts and bogus ICMP errors ignored.
    ("net.ipv4.tcp_syncookies", "1"),
    ("net.ipv4.icmp_echo_ignore_broadcasts", "1"),
    ("net.ipv4.icmp_ignore_bogus_error_responses", "1"),
    // The kernel's own router advertisement handling is off. Cloud images configure the public interface
    // with systemd-networkd (netplan), which handles advertisements itself and sets the interface's
    // accept_ra to 0 anyway (systemd.network(5), IPv6AcceptRA=); ifupdown sets each interface's accept_ra
    // from its own configuration. Clouds that give IPv6 by advertisement (AWS, GCP, Azure) keep working.
    ("net.ipv6.conf.all.accept_ra", "0"),
    ("net.ipv6.conf.default.accept_ra", "0"),
];

/// Without Docker the host forwards nothing (CIS: IP forwarding is disabled). With Docker, kiln leaves
/// forwarding to Docker: dockerd turns IPv4 forwarding on and, because it had to, sets iptables' FORWARD
/// policy to DROP (Docker's packet-filtering documentation); were forwarding on already, it would leave the
/// policy alone, and a host without a `firewall` section would route for anyone.
const NO_FORWARDING: &[(&str, &str)] = &[("net.ipv4.ip_forward", "0"), ("net.ipv6.conf.all.forwarding", "0")];

pub(super) fn lower(model: &Model, parts: &mut Parts) {
    let hardening = &model.hardening;
    // Reading order: /tmp first, before the script starts services that keep files there.
    if hardening.tmp_nosuid_nodev {
        tmp(model, parts);
    }
    if hardening.kernel_network {
        kernel_network(model, parts);
    }
    if hardening.time_sync {
        // Debian's package enables and starts it (and, Conflicts: time-daemon, replaces chrony or ntpsec).
        parts.package("systemd-timesyncd");
        let start = parts.ensure_running("systemd-timesyncd.service", Vec::<Listener>::new());
        parts.bake_step(Step::new("hardening: time sync", vec![start]));
    }
    if hardening.persistent_journal {
        let cap = JOURNAL_CAP;
        parts.bake_file(WriteFile::new(
            JOURNALD_DROP_IN,
            0o644,
            format!(
                "# kiln: hardening.persistent_journal\n[Journal]\nStorage=persistent\nSystemMaxUse={}\n",
                cap.system_max_use
            ),
        ));
        parts.facts.journal = Some(cap);
        // journald reads its configuration when it starts: restarted, it moves to /var/log/journal now.
        parts.bake_step(Step::new("hardening: journal", vec![cmd(&["systemctl", "restart", "systemd-journald"])]));
    }
}

fn kernel_network(model: &Model, parts: &mut Parts) {
    let forwarding = if model.docker.is_some() { &[][..] } else { NO_FORWARDING };
    let mut body = String::from("# kiln: hardening.kernel_network\n");
    for (key, value) in NETWORK.iter().chain(forwarding) {
        body.push_str(&format!("{key} = {value}\n"));
        parts.facts.sysctls.push(Sysctl { key, value });
    }
    parts.bake_file(WriteFile::new(SYSCTL_FILE, 0o644, body));
    // systemd-sysctl applies every sysctl.d file in order, as at boot.
    let mut commands = vec![cmd(&["systemctl", "restart", "systemd-sysctl"])];
    if model.firewall.is_some() {
        // UFW's own file would undo some of them (log_martians=0) at every start; the firewall step's
        // `ufw --force enable` applies kiln's instead.
        parts.bake_file(WriteFile::new(
            UFW_IPT_SYSCTL,
            0o644,
            format!("{UFW_IPT_SYSCTL_MARKER}\nIPT_SYSCTL={SYSCTL_FILE}\n"),
        ));
        commands.push(cmd(&["append_once", UFW_DEFAULTS, UFW_IPT_SYSCTL, UFW_IPT_SYSCTL_MARKER]));
    }
    parts.bake_step(Step::new("hardening: sysctl", commands));
}

fn tmp(model: &Model, parts: &mut Parts) {
    parts.facts.tmp_options = vec!["nosuid", "nodev"];
    parts.claim_unit("tmp.mount");
    match model.host.release.facts().tmp_mount {
        // systemd mounts it at every boot; the mount itself is checked.
        TmpMount::Default => {}
        TmpMount::Shipped(path) => {
            // Copied, not linked: a unit file in /etc survives the package moving its copy. Started now
            // (over what /tmp holds: nothing kiln's provisioning needs), and enabled for every boot.
            let install = cmd(&["install", "-m", "0644", "-o", "root", "-g", "root", path, TMP_MOUNT_UNIT]);
            let start = parts.ensure_running("tmp.mount", Vec::new());
            parts.bake_step(Step::new("hardening: /tmp nosuid,nodev", vec![install, start]));
        }
    }
}
