//! One set of facts per component: whatever a component declares in `lower::facts` (packages, units
//! and their sockets, firewall rules, secret files, the deploy user's groups) is in the rendered
//! user-data and in `kiln expect` alike, and neither side has one the facts lack.

use std::path::PathBuf;

use kiln::expect::{self, ANY_PORT, KERNEL_SOCKET, UfwRule};
use kiln::lower::facts::{Install, ListenPort, ListenScope, SecretLifetime, SocketOwner, StartedBy};
use kiln::templates::shell_quote;
use serde_json::Value;

use crate::support::{example_profiles, golden_cases, render, vm_profiles};

/// A command as the provisioning script spells it on its own line.
fn script_line(argv: &[String]) -> String {
    argv.iter().map(|w| shell_quote(w)).collect::<Vec<_>>().join(" ")
}

fn words(argv: &[&str]) -> Vec<String> {
    argv.iter().map(|w| w.to_string()).collect()
}

fn profiles() -> Vec<PathBuf> {
    let mut profiles = example_profiles();
    profiles.extend(vm_profiles());
    profiles.extend(golden_cases().into_iter().map(|case| case.join("profile.yaml")));
    profiles
}

#[test]
fn every_fact_is_in_the_user_data_and_in_kiln_expect() {
    let mut checked = 0;
    let mut sections = std::collections::BTreeSet::new();
    for path in profiles() {
        let (loaded, Some((user_data, _))) = render(&path) else { continue };
        let model = loaded.model.as_ref().expect("rendered, so valid");
        let at = path.display();
        let facts = kiln::lower::facts(model);
        let expected = expect::expect(model);
        let config: Value = serde_saphyr::from_str(&user_data).expect("rendered user-data parses");
        let listed: Vec<&str> = config["packages"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let files = config["write_files"].as_array().expect("write_files");
        let script = files
            .iter()
            .find(|f| f["path"] == kiln::lower::PROVISION_PATH)
            .and_then(|f| f["content"].as_str())
            .expect("the provisioning script");
        let lines: Vec<&str> = script.lines().map(str::trim).collect();
        let runs = |argv: &[String]| lines.contains(&script_line(argv).as_str());

        // Packages: every one is expected; the listed ones, and only they, are in `packages:`.
        assert_eq!(expected.packages, facts.packages.iter().map(|p| p.name.clone()).collect::<Vec<_>>(), "{at}");
        for package in &facts.packages {
            match &package.install {
                Install::Listed => assert!(listed.contains(&package.apt_argument().as_str()), "{at}: {package:?}"),
                Install::DependencyOf(_) => assert!(!listed.contains(&package.name.as_str()), "{at}: {package:?}"),
            }
        }
        assert_eq!(listed, facts.listed_packages(), "{at}");

        // Units: each is expected running; the script starts exactly those it is said to start.
        assert_eq!(expected.units.len(), facts.units.len(), "{at}");
        for unit in &facts.units {
            assert!(expected.units.iter().any(|u| u.name == unit.name && u.active && u.enabled), "{at}: {}", unit.name);
            let started = runs(&words(&["ensure_running", &unit.name]));
            assert_eq!(started, unit.started_by == StartedBy::Script, "{at}: who starts {}", unit.name);
        }
        let started_in_script = lines.iter().filter(|l| l.starts_with("ensure_running ")).count();
        assert_eq!(started_in_script, facts.units.iter().filter(|u| u.started_by == StartedBy::Script).count(), "{at}");

        // Their sockets.
        let sockets: Vec<_> = facts.units.iter().flat_map(|u| &u.listeners).collect();
        assert_eq!(expected.listeners.len(), sockets.len(), "{at}");
        for socket in sockets {
            let port = match socket.port {
                ListenPort::Fixed(port) => port,
                ListenPort::Picked => ANY_PORT,
            };
            let scope = if socket.scope == ListenScope::Loopback { "loopback" } else { "any" };
            let process = match &socket.owner {
                SocketOwner::Program(name) => name.as_str(),
                SocketOwner::Kernel => KERNEL_SOCKET,
            };
            assert!(
                expected.listeners.iter().any(|l| l.proto == socket.proto.name()
                    && l.port == port
                    && l.scope == scope
                    && l.process == process),
                "{at}: {socket:?}"
            );
        }

        // Firewall rules: each `ufw` command is in the script, and what ufw stores for it is expected;
        // the script adds no other rule and nothing else is expected.
        let mut stored: Vec<UfwRule> = Vec::new();
        for rule in &facts.firewall_rules {
            assert!(runs(&kiln::lower::ufw_command(rule)), "{at}: {rule:?} is not in the script");
            stored.extend(expect::ufw_stored(rule));
        }
        assert_eq!(lines.iter().filter(|l| l.starts_with("ufw allow ")).count(), facts.firewall_rules.len(), "{at}");
        stored.sort();
        assert_eq!(stored, expected.firewall.as_ref().map(|f| f.rules.clone()).unwrap_or_default(), "{at}");
        assert_eq!(facts.firewall.is_some(), expected.firewall.is_some(), "{at}");

        // Secret files: expected present unless used once, and then the script removes it.
        assert_eq!(expected.secret_files.len(), facts.secret_files.len(), "{at}");
        for secret in &facts.secret_files {
            let kept = secret.lifetime == SecretLifetime::Kept;
            assert!(expected.secret_files.iter().any(|f| f.path == secret.path && f.present == kept), "{at}");
            assert_eq!(runs(&words(&["rm", "-f", &secret.path])), !kept, "{at}: {}", secret.path);
        }

        // sshd: each setting is a line of kiln's drop-in, and `sshd -T` must show it.
        let drop_in = files
            .iter()
            .find(|f| f["path"] == kiln::lower::SSHD_DROP_IN)
            .and_then(|f| f["content"].as_str())
            .expect("the sshd drop-in");
        for setting in &facts.sshd {
            let line = format!("{} {}", setting.keyword, setting.value);
            assert!(drop_in.lines().any(|l| l == line), "{at}: {line}");
        }
        // …and provisioning checks `sshd -T` for each keyword, as sshd prints it, before reloading.
        let mut check = words(&["sh", "-c", kiln::lower::SSHD_EFFECTIVE_CHECK, kiln::lower::SSHD_DROP_IN]);
        check.extend(facts.sshd.iter().map(|s| s.printed_keyword()));
        assert!(runs(&check), "{at}: {check:?}");
        let sshd =
            |keyword: &str| facts.sshd_setting(keyword).map(|v| v.replace("prohibit-password", "without-password"));
        for keyword in ["PasswordAuthentication", "PermitRootLogin", "KbdInteractiveAuthentication"] {
            let printed = expected.ssh.deploy_user_value(&keyword.to_ascii_lowercase());
            assert_eq!(sshd(keyword), printed, "{at}: {keyword}");
        }

        // The deploy user's groups.
        assert_eq!(expected.user.groups, facts.deploy_user_groups, "{at}");
        for group in &facts.deploy_user_groups {
            assert!(runs(&words(&["usermod", "-aG", group, &model.user.name])), "{at}: {group}");
        }

        for (section, present) in [
            ("docker", model.docker.is_some()),
            ("cloudflared", model.cloudflared.is_some()),
            ("tailscale", model.tailscale.is_some()),
            ("wireguard", model.wireguard.is_some()),
            ("firewall", model.firewall.is_some()),
        ] {
            if present {
                sections.insert(section);
            }
        }
        checked += 1;
    }
    assert!(checked >= 12, "only {checked} renderable profiles");
    assert_eq!(sections.len(), 5, "the profiles cover every section that declares facts: {sections:?}");
}

/// "Open to everyone" is one question, asked of the same rules the script gives UFW: the probes from
/// outside follow it.
#[test]
fn outside_probes_follow_what_the_rules_open_to_everyone() {
    for path in profiles() {
        let (loaded, Some(_)) = render(&path) else { continue };
        let model = loaded.model.as_ref().unwrap();
        let facts = kiln::lower::facts(model);
        for probe in expect::expect(model).outside {
            assert_eq!(probe.proto, "tcp");
            let proto = kiln::model::Proto::Tcp;
            assert_eq!(probe.reachable, facts.open_to_everyone(proto, probe.port), "{}: {probe:?}", path.display());
        }
    }
}
