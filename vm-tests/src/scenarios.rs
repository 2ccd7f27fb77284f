//! The scenarios CI runs, as data: which profile, how the guest starts, how it must end, and what each
//! adds to the product's test run (`extension.rs`). `Scenario::run` runs one through the same harness
//! `kiln test` uses.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use kiln::effects::vm::harness::{self, Outcome};
use kiln::effects::vm::qemu::Accel;
use kiln::model::Model;
use kiln::verify::check_names;
use kiln::verify::report::Verdict;

use crate::extension::ScenarioExtension;
use crate::scaffolding::{Container, Scaffolding};
use crate::tamper::Tamper;
use crate::trap;
use crate::updates::UpdateProof;
use kiln::effects::vm::tunnel::peer;

/// What a scenario boots and what it does besides the profile's own checks.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    /// The profile; its `host.os` decides the base image the scenario starts from (`main.rs`).
    pub profile: PathBuf,
    pub boot: Boot,
    pub outcome: Outcome,
    /// `target/vm-tests/<name>/`: console log, seed, overlay, qemu command line.
    pub run_dir: PathBuf,
    pub reboot: bool,
    /// Containers to run (host port published → reachable from outside or not, per the profile).
    pub containers: Vec<Container>,
    /// Guest ports where the harness starts a small HTTP server, so "open" ports have someone to answer.
    pub listen: Vec<u16>,
    /// Changes made to the guest at the end, each of which a named check must then report as failed:
    /// the harness's checks shown failing on a real VM whose state is wrong.
    pub tamper: Vec<Tamper>,
    pub boot_timeout: Duration,
    /// The harness joins the profile's WireGuard tunnel as its first peer, from a network namespace on
    /// a second guest NIC (`kiln::effects::vm::tunnel`), and checks SSH through the tunnel and silence
    /// outside it.
    pub wireguard_peer: bool,
    /// After the rounds, a Kamal 2-shaped deploy through the tunnel (`deploy.rs`; needs `wireguard_peer`).
    pub deploy: bool,
    /// The base image gets Ubuntu's `50-cloud-init.conf` (passwords and root login on) first (`trap.rs`).
    pub sshd_trap: bool,
    /// After the rounds, newer packages are published and the guest must install them itself (`updates.rs`).
    pub updates: Option<UpdateProof>,
    /// At the end, lynis audits the guest (`lynis.rs`): a figure for the README, not a gate.
    pub lynis: bool,
}

/// How the guest starts from the base image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boot {
    /// Provisioned at first boot with the full user-data from kiln's test mirror.
    Provision,
    /// A golden image is baked first (with the mirror); an instance of it is then booted with the boot
    /// stage, and what golden images promise is proven (`golden.rs`).
    BakeThenBoot,
}

impl Scenario {
    /// Runs the scenario with the profile's validated model: the product's harness, extended.
    pub fn run(&self, model: Model, image: &Path, accel: Accel) -> Result<Verdict> {
        let run = harness::Scenario {
            name: self.name.clone(),
            profile: self.profile.clone(),
            image: image.to_path_buf(),
            // A bake starts from the base image and needs the mirror, as a provisioning boot does.
            boot: harness::Boot::Provision,
            outcome: self.outcome.clone(),
            run_dir: self.run_dir.clone(),
            reboot: self.reboot,
            boot_timeout: self.boot_timeout,
        };
        let scaffolding = Scaffolding { listen: self.listen.clone(), containers: self.containers.clone() };
        let bake_first = self.boot == Boot::BakeThenBoot;
        let mut extension =
            ScenarioExtension::new(self.wireguard_peer, scaffolding, self.tamper.clone(), bake_first, self.sshd_trap);
        extension.updates = self.updates.clone();
        extension.lynis = self.lynis;
        extension.deploy = self.deploy;
        harness::run(&run, model, accel, &mut extension)
    }
}

/// Every scenario, in the order they run.
pub fn scenarios(root: &Path, out: &Path) -> Vec<Scenario> {
    let scenario = |name: &str, profile: PathBuf| Scenario {
        name: name.into(),
        profile,
        boot: Boot::Provision,
        outcome: Outcome::Healthy,
        run_dir: out.join(name),
        reboot: true,
        containers: Vec::new(),
        listen: Vec::new(),
        tamper: Vec::new(),
        boot_timeout: Duration::from_secs(900),
        wireguard_peer: false,
        deploy: false,
        sshd_trap: false,
        updates: None,
        lynis: false,
    };
    let tamper = Tamper::new;
    let container = |name: &str, publish: &str, host_port: u16, reachable: bool| Container {
        name: name.into(),
        publish: publish.into(),
        host_port,
        reachable_from_outside: reachable,
    };
    let undeclared = container("undeclared", "0.0.0.0:8081:8080", 8081, false);
    vec![
        // No reboot here: the same profile reboots in `golden`, and the full first-boot path reboots in
        // `ports` and `wireguard`; CI time goes to what only this scenario shows.
        // The seed host also proves automatic updates: the only test profile with cloudflared, Docker and a
        // package of its own (htop) from the mirror.
        Scenario {
            reboot: false,
            containers: vec![container("sentinel", "127.0.0.1:8090:8080", 8090, false)],
            updates: Some(UpdateProof { debian_package: "htop".into(), container: "sentinel".into() }),
            // lynis takes about 19 minutes under TCG: a figure measured on request (`lynis::wanted`), not in CI.
            lynis: crate::lynis::wanted(),
            // After the update proof and lynis: the new checks of automatic updates shown failing.
            tamper: vec![
                tamper(
                    "systemctl stop kiln-cloudflared-upgrade.path",
                    &check_names::unit_active(kiln::lower::cloudflared::RESTART_PATH_UNIT),
                ),
                // A later apt file emptying the list (the profile's release is Debian 13).
                tamper(
                    "printf '#clear Unattended-Upgrade::Origins-Pattern;\\n' > /etc/apt/apt.conf.d/99zz-tamper",
                    &check_names::update_origin("origin=Debian,codename=trixie-security,label=Debian-Security"),
                ),
                tamper(
                    "sed -i 's/Unattended-Upgrade \"1\"/Unattended-Upgrade \"0\"/' /etc/apt/apt.conf.d/20auto-upgrades",
                    check_names::APT_DAILY_UPGRADE,
                ),
            ],
            ..scenario("seed-host", root.join("profiles/app.yaml"))
        },
        Scenario {
            listen: vec![8000],
            containers: vec![
                container("declared-open", "0.0.0.0:8080:8080", 8080, true),
                undeclared.clone(),
                container("default-bind", "8082:8080", 8082, false),
            ],
            tamper: vec![
                tamper("ufw delete allow 8000/tcp", check_names::UFW_RULE_SET),
                tamper("iptables -D DOCKER-USER -m conntrack --ctstate NEW -j DROP", check_names::DOCKER_USER_FILTER),
                tamper("true", &undeclared.probe_name()),
                tamper("systemctl stop tailscaled.service", &check_names::unit_active("tailscaled.service")),
                tamper("gpasswd -d deploy docker", &check_names::user_in_group("deploy", "docker")),
                // A process whose argv carries the secret (taken from cloud-init's copy of the user-data).
                tamper(
                    "setsid bash -c 'exec -a \"$(grep -ao \"kiln-test-secret-[0-9a-f]*-[0-9a-f]*\" /var/lib/cloud/instance/user-data.txt | head -n 1)\" sleep 600' </dev/null >/dev/null 2>&1 &",
                    check_names::NO_SECRET_IN_ARGV,
                ),
                // A drop-in that sorts before kiln's (sshd keeps the first value it reads).
                tamper(
                    &format!(
                        "chmod 0644 {} && printf 'PasswordAuthentication yes\\n' > /etc/ssh/sshd_config.d/0-tamper.conf",
                        kiln::lower::SSHD_DROP_IN
                    ),
                    &check_names::sshd_option("passwordauthentication"),
                ),
            ],
            ..scenario("ports", root.join("vm-tests/profiles/ports.yaml"))
        },
        // On Debian 13 (iptables-nft, docker.io 26): besides the tunnel, a container published on all addresses
        // but not declared must stay unreachable from outside, as `ports` shows on Debian 12.
        // Besides, the profile declares container port 8080 open: it answers at the host's address (publicly and
        // through the tunnel), and no container answers a layer-2 neighbour at its own address.
        Scenario {
            wireguard_peer: true,
            deploy: true,
            containers: vec![
                container("declared-open", "0.0.0.0:8080:8080", 8080, true),
                undeclared.clone(),
                container("loopback", "127.0.0.1:8083:8080", 8083, false),
            ],
            tamper: vec![
                tamper("iptables -D DOCKER-USER -m conntrack --ctstate NEW -j DROP", check_names::DOCKER_USER_FILTER),
                tamper("true", &undeclared.probe_name()),
                tamper("true", &peer::neighbour_check_name("undeclared")),
                tamper("true", &peer::neighbour_check_name("loopback")),
                tamper("true", &peer::neighbour_check_name("declared-open")),
                // dockerd reloads live-restore on SIGHUP (docker.service's ExecReload).
                tamper(
                    "sed -i 's/\"live-restore\": true/\"live-restore\": false/' /etc/docker/daemon.json && systemctl reload docker.service",
                    check_names::DOCKER_LIVE_RESTORE,
                ),
                tamper("ufw allow 22/tcp", peer::CHECK_PUBLIC_SSH),
                tamper("true", peer::CHECK_PUBLIC_PORTS),
                tamper("true", &check_names::from_outside(22, "tcp", false)),
                // Kamal's registry tunnel refused to the deploy user (as for everyone else): `ssh -R` must fail
                // on the forward itself, not on the connection.
                tamper(
                    &format!(
                        "sed -i 's/AllowTcpForwarding remote/AllowTcpForwarding no/' {} && systemctl restart ssh.service",
                        kiln::lower::SSHD_DROP_IN
                    ),
                    peer::CHECK_KAMAL_FORWARD,
                )
                .because("remote port forwarding failed"),
                // The harness's peer removed from the guest's interface: the tunnel must stop carrying SSH. In
                // a second round, so the forward above fails while the tunnel still carries SSH.
                tamper("wg set wg0 peer \"$(wg show wg0 peers | head -n 1)\" remove", peer::CHECK_SSH_TUNNEL)
                    .in_second_round(),
                tamper("true", &check_names::wireguard_peers("wg0")).in_second_round(),
            ],
            ..scenario("wireguard", root.join("vm-tests/profiles/wireguard.yaml"))
        },
        // Awkward but valid values must arrive exactly as written; no reboot (what survives one is
        // proven by `ports` and `wireguard`), the tamperings show the new checks failing.
        Scenario {
            reboot: false,
            listen: vec![8000],
            tamper: vec![
                tamper("printf 'x' >> /etc/awkward/motd.txt", &check_names::file("/etc/awkward/motd.txt")),
                tamper("echo Etc/UTC > /etc/timezone", check_names::TIMEZONE),
                tamper("sed -i 's/^LANG=.*/LANG=C.UTF-8/' /etc/default/locale", check_names::LOCALE_LANG),
                tamper("rm /usr/lib/locale/locale-archive", &check_names::locale_usable("de_DE.UTF-8")),
                tamper("ufw delete allow proto udp from 2001:db8::/32 to any port 9000", check_names::UFW_RULE_SET),
                // The hardening baseline (Debian 12): a kernel setting undone, /tmp remounted with setuid
                // programs allowed, the clock daemon stopped. (`journalctl --relinquish-var` is not caught: the
                // journal check reads journald's usage report of the boot, which a later switch leaves as it was.)
                tamper(
                    "sysctl -q -w net.ipv4.conf.all.log_martians=0",
                    &check_names::sysctl("net.ipv4.conf.all.log_martians"),
                ),
                tamper("mount -o remount,suid /tmp", check_names::TMP_MOUNT),
                tamper(
                    "systemctl stop systemd-timesyncd.service",
                    &check_names::unit_active("systemd-timesyncd.service"),
                ),
            ],
            ..scenario("awkward", root.join("vm-tests/profiles/awkward.yaml"))
        },
        // The base image carries the drop-in Ubuntu's cloud images ship (passwords and root login on): kiln's
        // settings must still be the ones sshd uses, seen in `sshd -T` and from outside. No reboot: nothing
        // here changes with one.
        Scenario {
            reboot: false,
            sshd_trap: true,
            tamper: vec![
                // A weak MAC back in kiln's list: ssh-audit, from outside, must name it.
                tamper(
                    &format!(
                        "sed -i 's/^MACs /MACs hmac-sha1,/' {} && systemctl restart ssh.service",
                        kiln::lower::SSHD_DROP_IN
                    ),
                    kiln::verify::ssh_audit::CHECK,
                )
                .because("hmac-sha1"),
                // A drop-in sorting before kiln's that turns passwords back on. (Moving kiln's file after the
                // trap's is not enough: its `AuthenticationMethods publickey` still kept passwords out, seen on
                // this scenario's guest on 2026-12-01.)
                tamper(
                    "printf 'PasswordAuthentication yes\\nAuthenticationMethods any\\n' > /etc/ssh/sshd_config.d/0-tamper.conf && systemctl restart ssh.service",
                    &trap::check_name("deploy"),
                ),
            ],
            ..scenario("sshd-trap", root.join("vm-tests/profiles/sshd-trap.yaml"))
        },
        Scenario {
            reboot: false,
            outcome: Outcome::ProvisioningFails { step: "tailscale: join the tailnet".into() },
            ..scenario("broken", root.join("vm-tests/profiles/broken.yaml"))
        },
        // The seed host again, as a golden image: bake, boot an instance with the boot stage (every
        // check of `seed-host` must pass), reboot it, scan disks for secrets, boot a second instance.
        Scenario { boot: Boot::BakeThenBoot, ..scenario("golden", root.join("profiles/app.yaml")) },
        Scenario {
            boot: Boot::BakeThenBoot,
            reboot: false,
            outcome: Outcome::ProvisioningFails { step: "ssh: apply hardening".into() },
            ..scenario("golden-broken", root.join("vm-tests/profiles/broken-bake.yaml"))
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Scenario> {
        scenarios(Path::new("/repo"), Path::new("/out"))
    }

    #[test]
    fn the_scenarios_run_in_their_order_each_in_its_own_directory() {
        let names: Vec<String> = all().iter().map(|s| s.name.clone()).collect();
        assert_eq!(
            names,
            ["seed-host", "ports", "wireguard", "awkward", "sshd-trap", "broken", "golden", "golden-broken"]
        );
        for scenario in all() {
            assert_eq!(scenario.run_dir, Path::new("/out").join(&scenario.name));
            assert!(scenario.profile.starts_with("/repo"), "{}", scenario.profile.display());
        }
    }

    #[test]
    fn tamperings_name_checks_by_their_definitions() {
        let ports = all().into_iter().find(|s| s.name == "ports").unwrap();
        let named: Vec<&str> = ports.tamper.iter().map(|t| t.detected_by.as_str()).collect();
        assert!(named.contains(&"from outside, container undeclared (-p 0.0.0.0:8081:8080)"), "{named:?}");
        assert!(named.contains(&"unit tailscaled.service active"), "{named:?}");
        let probes: Vec<String> = Scaffolding { listen: ports.listen, containers: ports.containers }
            .probes()
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert!(probes.iter().any(|p| named.contains(&p.as_str())), "a container probe is tampered with");
        let wireguard = all().into_iter().find(|s| s.name == "wireguard").unwrap();
        assert!(wireguard.wireguard_peer && wireguard.tamper.iter().any(|t| t.detected_by == peer::CHECK_PUBLIC_SSH));
        for scenario in all() {
            assert!(scenario.tamper.iter().all(|t| !t.detected_by.is_empty() && !t.command.is_empty()));
        }
    }

    #[test]
    fn only_the_golden_scenarios_bake_first() {
        let baking: Vec<String> = all().into_iter().filter(|s| s.boot == Boot::BakeThenBoot).map(|s| s.name).collect();
        assert_eq!(baking, ["golden", "golden-broken"]);
    }
}
