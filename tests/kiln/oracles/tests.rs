//! The oracles over every rendered output, and one negative control per oracle: a correct user-data
//! with one fact made wrong, which that oracle must reject (so a silent oracle cannot pass for a
//! satisfied one).

use std::path::Path;
use std::time::Instant;

use serde_json::{Value, json};

use kiln::lower::Stage;

use super::{Case, judge, report};
use crate::support::{example_profiles, golden_cases, render_stage, vm_profiles};

/// A throwaway OpenPGP secret key made for these tests (`gpg --quick-gen-key`); it guards nothing.
const TEST_SECRET_KEY: &str = include_str!("../../oracles/fixtures/test-secret-key.asc");

/// The full-stage user-data of a profile and what its host must show, or `None` if kiln refuses it.
fn case(path: &Path) -> Option<Case> {
    let (loaded, rendered) = render_stage(path, Stage::Full);
    let (user_data, _) = rendered?;
    let model = loaded.model.as_ref()?;
    Some(Case {
        name: path.display().to_string(),
        user_data,
        expected: kiln::expect::expect(model),
        release: model.host.release,
    })
}

/// Every golden case that renders, every example profile and every VM scenario profile.
fn rendered_cases() -> Vec<Case> {
    let profiles =
        golden_cases().into_iter().map(|c| c.join("profile.yaml")).chain(example_profiles()).chain(vm_profiles());
    profiles.filter_map(|p| case(&p)).collect()
}

#[test]
fn every_rendered_output_passes_every_oracle() {
    let cases = rendered_cases();
    assert!(cases.len() >= 7, "too few renderable profiles: {}", cases.len());
    let started = Instant::now();
    let failures = judge(&cases);
    eprintln!("oracles judged {} rendered profiles in {:.1} s", cases.len(), started.elapsed().as_secs_f64());
    assert!(
        failures.is_empty(),
        "{} of {} rendered profiles fail the real programs' checks:\n{}",
        failures.len(),
        cases.len(),
        report(&failures)
    );
}

/// The control profile: Docker, WireGuard, a firewall, sudo: something for every oracle.
fn base() -> Case {
    case(&crate::support::data_dir().join("wireguard/profile.yaml")).expect("the wireguard golden renders")
}

/// The user-data as YAML, changed by `edit`, written back as cloud-config.
fn edited(case: &Case, name: &str, edit: impl FnOnce(&mut Value, &mut kiln::expect::ExpectedState)) -> Case {
    let mut config: Value = serde_saphyr::from_str(&case.user_data).expect("user-data parses");
    let mut expected = case.expected.clone();
    edit(&mut config, &mut expected);
    let user_data = format!("#cloud-config\n{}", serde_saphyr::to_string(&config).expect("serializes"));
    Case { name: name.to_string(), user_data, expected, release: case.release }
}

fn files(config: &mut Value) -> &mut Vec<Value> {
    config["write_files"].as_array_mut().expect("write_files")
}

fn file<'a>(config: &'a mut Value, path: &str) -> &'a mut Value {
    files(config).iter_mut().find(|f| f["path"] == path).unwrap_or_else(|| panic!("{path} in write_files"))
}

/// Replaces text in a file's body; the text must be there.
fn replace_in(config: &mut Value, path: &str, from: &str, to: &str) {
    let entry = file(config, path);
    let body = entry["content"].as_str().expect("a text body").to_string();
    assert!(body.contains(from), "{path} holds {from:?}");
    entry["content"] = Value::from(body.replacen(from, to, 1));
}

fn add_file(config: &mut Value, path: &str, owner: &str, content: &str) {
    files(config).push(json!({"path": path, "owner": owner, "permissions": "0644", "content": content}));
}

const SCRIPT: &str = kiln::lower::PROVISION_PATH;
const WG_CONF: &str = "/etc/wireguard/wg0.conf";
const DOCKER_USER: &str = "/etc/kiln/ufw-docker-user.rules";
const DROP: &str = "-A DOCKER-USER -m conntrack --ctstate NEW -j DROP";
const SSH_RULE: &str = "ufw allow proto udp from any to any port 51820 comment 'WireGuard wg0'";

/// (oracle, what its message must contain, the wrong case).
fn controls(base: &Case) -> Vec<(&'static str, &'static str, Case)> {
    vec![
        (
            "cloud-init",
            "package_update",
            edited(base, "package_update is text", |c, _| c["package_update"] = json!("yes")),
        ),
        (
            "ufw",
            "Comment may not contain",
            edited(base, "ufw comment with an apostrophe", |c, _| {
                replace_in(c, SCRIPT, "comment 'WireGuard wg0'", r#"comment "it's wg0""#)
            }),
        ),
        (
            "ufw",
            "stored, not expected",
            edited(base, "ufw source with host bits", |c, e| {
                replace_in(c, SCRIPT, SSH_RULE, &SSH_RULE.replace("from any", "from 203.0.113.7/24"));
                let rules = &mut e.firewall.as_mut().expect("a firewall").rules;
                rules.retain(|r| !(r.port == "51820" && r.ipv6));
                rules.iter_mut().filter(|r| r.port == "51820").for_each(|r| r.from = "203.0.113.7/24".into());
            }),
        ),
        (
            "docker-user",
            "iptables-restore",
            edited(base, "DOCKER-USER jumps nowhere", |c, _| {
                replace_in(c, DOCKER_USER, "--ctstate NEW -j DROP", "--ctstate NEW -j NO-SUCH-CHAIN")
            }),
        ),
        (
            "docker-user",
            "opens",
            edited(base, "a published port expected open", |_, e| {
                e.firewall.as_mut().expect("a firewall").docker_user = Some(vec!["8080/tcp".into()])
            }),
        ),
        (
            "sysctl",
            "log_martians is 0, expected 1",
            edited(base, "UFW left applying the package's sysctl.conf", |c, _| {
                replace_in(
                    c,
                    kiln::lower::UFW_IPT_SYSCTL,
                    "IPT_SYSCTL=/etc/sysctl.d/60-kiln-hardening.conf",
                    "IPT_SYSCTL=/etc/ufw/sysctl.conf",
                )
            }),
        ),
        (
            "sysctl",
            "rp_filter is 1, expected 2",
            edited(base, "a value kiln does not write", |_, e| {
                e.sysctls.iter_mut().find(|s| s.key == "net.ipv4.conf.all.rp_filter").expect("rp_filter").value =
                    "2".into()
            }),
        ),
        (
            "sshd",
            "passwordauthentication is yes",
            edited(base, "a drop-in re-enables passwords for the deploy user", |c, _| {
                add_file(
                    c,
                    "/etc/ssh/sshd_config.d/05-app.conf",
                    "root:root",
                    "Match User deploy\n  PasswordAuthentication yes\n",
                )
            }),
        ),
        (
            "sshd",
            "permitrootlogin is yes",
            edited(base, "kiln's drop-in sorting after the image's 50-cloud-init.conf", |c, _| {
                let files = c["write_files"].as_array_mut().expect("write_files");
                let drop_in =
                    files.iter_mut().find(|f| f["path"] == kiln::lower::SSHD_DROP_IN).expect("kiln's drop-in");
                drop_in["path"] = json!("/etc/ssh/sshd_config.d/60-kiln.conf");
            }),
        ),
        (
            "sshd",
            "allowusers is deploy | admin, expected deploy",
            edited(base, "a drop-in lets another user in (AllowUsers lines add up)", |c, _| {
                add_file(c, "/etc/ssh/sshd_config.d/05-app.conf", "root:root", "AllowUsers admin\n")
            }),
        ),
        (
            "sshd",
            "effective check: exit 1: sshd would not run with permitrootlogin",
            edited(base, "a drop-in sorting before kiln's lets root in", |c, _| {
                add_file(c, "/etc/ssh/sshd_config.d/00-early.conf", "root:root", "PermitRootLogin yes\n")
            }),
        ),
        (
            "sshd",
            "DenyUsers deploy names deploy",
            edited(base, "DenyUsers shuts the deploy user out", |c, _| {
                add_file(c, "/etc/ssh/sshd_config.d/05-app.conf", "root:root", "DenyUsers deploy\n")
            }),
        ),
        (
            "ssh-audit",
            "Fail hmac-sha1: mac: using broken SHA-1",
            edited(base, "a weak MAC offered", |c, _| {
                let files = c["write_files"].as_array_mut().expect("write_files");
                let drop_in =
                    files.iter_mut().find(|f| f["path"] == kiln::lower::SSHD_DROP_IN).expect("kiln's drop-in");
                let text = drop_in["content"].as_str().expect("text").replace("\nMACs ", "\nMACs hmac-sha1,");
                drop_in["content"] = json!(text);
            }),
        ),
        (
            "accounts",
            "exit 9",
            edited(base, "a user named staff", |c, e| {
                c["users"][0]["name"] = json!("staff");
                c["users"][0]["sudo"] = json!("ALL=(ALL) NOPASSWD:ALL");
                e.user.name = "staff".into();
            }),
        ),
        (
            "accounts",
            "missing or non-executable shell",
            edited(base, "a shell that is not installed", |c, e| {
                c["users"][0]["shell"] = json!("/bin/zsh");
                e.user.shell = "/bin/zsh".into();
            }),
        ),
        (
            "accounts",
            "does not exist",
            edited(base, "a file owned by nobody that exists", |c, _| add_file(c, "/etc/app.conf", "app:app", "x\n")),
        ),
        ("timezone", "Europe/Berlim", edited(base, "a misspelt zone", |c, _| c["timezone"] = json!("Europe/Berlim"))),
        ("locale", "en_US.UTF-8", edited(base, "a locale never generated", |c, _| c["locale"] = json!("en_US.UTF-8"))),
        (
            "apt",
            "lacks the origin pattern",
            edited(base, "an origin pattern apt does not hold", |_, e| {
                e.update_origins.push("site=updates.example.com".into());
            }),
        ),
        (
            "apt",
            "secret OpenPGP key",
            edited(base, "a private key as an apt key", |c, _| {
                add_file(c, "/etc/apt/keyrings/vendor.asc", "root:root", TEST_SECRET_KEY)
            }),
        ),
        (
            "apt",
            "Malformed entry",
            edited(base, "a malformed .sources", |c, _| {
                add_file(
                    c,
                    "/etc/apt/sources.list.d/vendor.sources",
                    "root:root",
                    "Types: deb\nURIs http://deb.example/\nSuites: stable\n",
                )
            }),
        ),
        (
            "wireguard",
            "wg-quick up wg0",
            edited(base, "a peer key that is not a key", |c, _| {
                replace_in(
                    c,
                    WG_CONF,
                    "PublicKey = TG+auU5uUQmkpMcrQbM5iWv2ayKYq1Y/0AnHjYggqmo=",
                    "PublicKey = not-a-key",
                )
            }),
        ),
        (
            "wireguard",
            "peers",
            edited(base, "expected peers that differ", |_, e| {
                e.wireguard.as_mut().expect("wireguard").peers.pop();
            }),
        ),
        (
            "shell",
            "bash -n",
            edited(base, "a script bash cannot parse", |c, _| {
                replace_in(c, SCRIPT, "step finish\n", "step finish\nfi\n")
            }),
        ),
    ]
}

#[test]
fn every_oracle_rejects_its_negative_control() {
    let base = base();
    let controls = controls(&base);
    let mut cases = vec![Case {
        name: "base".into(),
        user_data: base.user_data.clone(),
        expected: base.expected.clone(),
        release: base.release,
    }];
    cases.extend(controls.iter().map(|(_, _, c)| Case {
        name: c.name.clone(),
        user_data: c.user_data.clone(),
        expected: c.expected.clone(),
        release: c.release,
    }));
    let failures = judge(&cases);
    eprintln!("what the oracles say about the controls:\n{}", report(&failures));
    let said = |name: &str| failures.iter().find(|(n, _)| n == name).map(|(_, m)| m.clone()).unwrap_or_default();
    let base_said = said("base");
    let mut missed = Vec::new();
    for (oracle, needle, case) in &controls {
        let prefix = format!("{oracle}: ");
        let caught = said(&case.name).iter().any(|m| m.starts_with(&prefix) && m.contains(needle));
        let already = base_said.iter().any(|m| m.starts_with(&prefix) && m.contains(needle));
        if !caught || already {
            missed.push(format!(
                "{oracle} did not reject \"{}\" with a message containing {needle:?} (or the base case already fails so)",
                case.name
            ));
        }
    }
    assert!(missed.is_empty(), "{}\n\nwhat the oracles said:\n{}", missed.join("\n"), report(&failures));
}

/// How long the oracles take for many cases (`KILN_ORACLE_COPIES`, default 600): copies of every
/// rendered output, each with its own host name, firewall comments and deploy user, so the per-input
/// oracles cannot share their runs. Run with `cargo test -- --ignored oracle_throughput --nocapture`.
#[test]
#[ignore = "a measurement: minutes of CPU"]
fn oracle_throughput() {
    let copies: usize = std::env::var("KILN_ORACLE_COPIES").ok().and_then(|n| n.parse().ok()).unwrap_or(600);
    let originals = rendered_cases();
    let cases: Vec<Case> = (0..copies)
        .map(|i| {
            let original = &originals[i % originals.len()];
            let user = format!("dep{i}");
            let mut case = edited(original, &format!("{} #{i}", original.name), |c, e| {
                c["hostname"] = json!(format!("copy-{i}"));
                let name = c["users"][0]["name"].as_str().expect("a user").to_string();
                c["users"][0]["name"] = json!(user);
                let script = file(c, SCRIPT);
                let body = script["content"].as_str().expect("script").to_string();
                let body = body
                    .replace(&format!(" {name}\n"), &format!(" {user}\n"))
                    .replace("comment '", &format!("comment 'copy {i} "));
                script["content"] = json!(body);
                for f in files(c).iter_mut() {
                    let owner = f["owner"]
                        .as_str()
                        .unwrap_or_default()
                        .replace(&format!("{name}:{name}"), &format!("{user}:{user}"));
                    f["owner"] = json!(owner);
                }
                e.user.name = user.clone();
                if let Some(f) = e.firewall.as_mut() {
                    f.rules.iter_mut().filter_map(|r| r.comment.as_mut()).for_each(|c| *c = format!("copy {i} {c}"));
                }
                // A published port of its own, and a tunnel of its own.
                let port = 10000 + i;
                if let Some(open) = e.firewall.as_mut().and_then(|f| f.docker_user.as_mut()) {
                    let rule = format!(
                        "-A DOCKER-USER -p tcp -m conntrack --ctstate DNAT --ctorigdstport {port} -j RETURN\n{DROP}"
                    );
                    replace_in(c, DOCKER_USER, DROP, &rule);
                    open.push(format!("{port}/tcp"));
                }
                if e.wireguard.is_some() {
                    let conf = files(c).iter().find_map(|f| {
                        f["path"].as_str().filter(|p| p.starts_with("/etc/wireguard/")).map(str::to_string)
                    });
                    if let Some(conf) = conf {
                        replace_in(c, &conf, "[Peer]", &format!("MTU = {}\n\n[Peer]", 1280 + i % 140));
                    }
                }
            });
            case.name = format!("{} #{i}", original.name);
            case
        })
        .collect();
    let started = Instant::now();
    let failures = judge(&cases);
    eprintln!("oracles judged {copies} cases in {:.1} s ({} failing)", started.elapsed().as_secs_f64(), failures.len());
}
