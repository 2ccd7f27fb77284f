//! kiln's VM scenarios: boots real Debian 12 guests under QEMU and checks them from inside and outside.
//!
//! Run by `scripts/test-all` (and so by CI) after the unit tests: builds (or takes from the cache) the
//! base image, probes the accelerator once, runs each scenario in turn (two TCG guests at once on two
//! cores would only slow both), prints a table per scenario, writes `target/vm-tests/junit.xml`, and
//! ends with `N passed, N failed`. Exit status 0 only when every check of every scenario passed.

mod interrupted;
mod preflight;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use kiln::effects::vm::harness::{self, Boot, Container, Outcome, Scenario, Tamper};
use kiln::effects::vm::{peer, qemu};
use kiln::verify::check_names;
use kiln::verify::report::{self, Verdict};

fn scenarios(root: &Path, out: &Path, image: &Path) -> Vec<Scenario> {
    let scenario = |name: &str, profile: PathBuf| Scenario {
        name: name.into(),
        profile,
        image: image.to_path_buf(),
        boot: Boot::Provision,
        outcome: Outcome::Healthy,
        run_dir: out.join(name),
        reboot: true,
        containers: Vec::new(),
        listen: Vec::new(),
        tamper: Vec::new(),
        boot_timeout: Duration::from_secs(900),
        wireguard_peer: false,
    };
    let tamper = |command: &str, detected_by: &str| Tamper { command: command.into(), detected_by: detected_by.into() };
    let container = |name: &str, publish: &str, host_port: u16, reachable: bool| Container {
        name: name.into(),
        publish: publish.into(),
        host_port,
        reachable_from_outside: reachable,
    };
    vec![
        // No reboot here: the same profile reboots in `golden`, and the full first-boot path reboots in
        // `ports` and `wireguard`; CI time goes to what only this scenario shows.
        Scenario { reboot: false, ..scenario("seed-host", root.join("profiles/app.yaml")) },
        Scenario {
            listen: vec![8000],
            containers: vec![
                container("declared-open", "0.0.0.0:8080:8080", 8080, true),
                container("undeclared", "0.0.0.0:8081:8080", 8081, false),
                container("default-bind", "8082:8080", 8082, false),
            ],
            tamper: vec![
                tamper("ufw delete allow 8000/tcp", check_names::UFW_RULE_SET),
                tamper("iptables -D DOCKER-USER -m conntrack --ctstate NEW -j DROP", check_names::DOCKER_USER_FILTER),
                tamper("true", "from outside, container undeclared (-p 0.0.0.0:8081:8080)"),
                tamper("systemctl stop tailscaled.service", &check_names::unit_active("tailscaled.service")),
                tamper("gpasswd -d deploy docker", &check_names::user_in_group("deploy", "docker")),
                // A process whose argv carries the secret (taken from cloud-init's copy of the user-data).
                tamper(
                    "setsid bash -c 'exec -a \"$(grep -ao \"kiln-test-secret-[0-9a-f]*-[0-9a-f]*\" /var/lib/cloud/instance/user-data.txt | head -n 1)\" sleep 600' </dev/null >/dev/null 2>&1 &",
                    check_names::NO_SECRET_IN_ARGV,
                ),
                tamper(
                    "chmod 0644 /etc/ssh/sshd_config.d/10-kiln.conf && printf 'PasswordAuthentication yes\\n' > /etc/ssh/sshd_config.d/05-tamper.conf",
                    &check_names::sshd_option("passwordauthentication"),
                ),
            ],
            ..scenario("ports", root.join("vm-tests/profiles/ports.yaml"))
        },
        Scenario {
            wireguard_peer: true,
            tamper: vec![
                tamper("ufw allow 22/tcp", peer::CHECK_PUBLIC_SSH),
                tamper("true", peer::CHECK_PUBLIC_PORTS),
                tamper("true", &check_names::from_outside(22, "tcp", false)),
                // The harness's peer removed from the guest's interface: the tunnel must stop carrying SSH.
                tamper("wg set wg0 peer \"$(wg show wg0 peers | head -n 1)\" remove", peer::CHECK_SSH_TUNNEL),
                tamper("true", &check_names::wireguard_peers("wg0")),
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
            ],
            ..scenario("awkward", root.join("vm-tests/profiles/awkward.yaml"))
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

fn main() -> ExitCode {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = root.join("target/vm-tests");
    let only: Vec<String> = std::env::args().skip(1).collect();
    let missing = preflight::missing();
    if !missing.is_empty() {
        eprintln!("error: the VM scenarios cannot run here:\n  {}", missing.join("\n  "));
        return ExitCode::from(7);
    }
    if let Err(e) = std::fs::create_dir_all(&out) {
        eprintln!("error: creating {}: {e}", out.display());
        return ExitCode::from(kiln::failure::exit::HARNESS);
    }
    let image = out.join("debian-12.qcow2");
    let started = std::time::Instant::now();
    match kiln::effects::image::build("debian-12", &image, false) {
        Ok(hit) => eprintln!(
            "base image: {} ({}, {:.1} s)",
            image.display(),
            if hit { "cache" } else { "built" },
            started.elapsed().as_secs_f64()
        ),
        Err(e) => {
            eprintln!("error: building the base image: {e:#}");
            return ExitCode::from(kiln::failure::exit::HARNESS);
        }
    }
    let accel = qemu::probe_accel(&image, &out);
    eprintln!(
        "accelerator: {} {}",
        accel.name(),
        if accel == qemu::Accel::Tcg { "(KVM unusable here: guests run emulated)" } else { "" }
    );

    let mut verdicts: Vec<Verdict> = Vec::new();
    let mut broken_harness = Vec::new();
    for scenario in scenarios(&root, &out, &image) {
        if !only.is_empty() && !only.contains(&scenario.name) {
            continue;
        }
        eprintln!("\n== scenario {} ({})", scenario.name, scenario.profile.display());
        let model = kiln::pipeline::load(&scenario.profile).and_then(|loaded| loaded.validated(false));
        match model
            .map_err(|failure| anyhow::anyhow!("{failure}"))
            .and_then(|model| harness::run(&scenario, model, accel))
        {
            Ok(verdict) => {
                eprint!("{}", report::table(&verdict));
                verdicts.push(verdict);
            }
            Err(e) => {
                eprintln!("error: scenario {}: the harness failed: {e:#}", scenario.name);
                broken_harness.push(scenario.name.clone());
            }
        }
    }
    // Not a boot scenario: the real `kiln bake` binary, stopped half-way by signals.
    if only.is_empty() || only.iter().any(|o| o == "bake-interrupted") {
        eprintln!("\n== scenario bake-interrupted (kiln bake stopped by SIGTERM, then SIGKILL)");
        let kiln = root.join("target/release/kiln");
        match interrupted::run(&kiln, &root.join("profiles/app.yaml"), &image, &out.join("bake-interrupted")) {
            Ok(verdict) => {
                eprint!("{}", report::table(&verdict));
                verdicts.push(verdict);
            }
            Err(e) => {
                eprintln!("error: scenario bake-interrupted: the harness failed: {e:#}");
                broken_harness.push("bake-interrupted".into());
            }
        }
    }
    let junit = out.join("junit.xml");
    if let Err(e) = std::fs::write(&junit, report::junit(&verdicts)) {
        eprintln!("error: writing {}: {e}", junit.display());
    }
    eprintln!("\nscenario timings ({}):", accel.name());
    for verdict in &verdicts {
        let timings: Vec<String> = verdict.timings.iter().map(|(what, s)| format!("{what} {s:.0} s")).collect();
        eprintln!("  {}: {}", verdict.scenario, timings.join(", "));
    }
    let (passed, failed) = verdicts.iter().map(Verdict::counts).fold((0, 0), |(p, f), (a, b)| (p + a, f + b));
    let failed = failed + broken_harness.len();
    println!("{passed} passed, {failed} failed");
    if failed == 0 && !verdicts.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
