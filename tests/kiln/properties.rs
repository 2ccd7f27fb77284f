//! Property tests: no profile value can escape its quoting, in the YAML (read back by serde-saphyr and
//! by PyYAML, the YAML 1.1 reader cloud-init uses) or in the provisioning script (parsed by bash itself).
//!
//! Cases come from proptest's deterministic runner, so a failure reproduces; strings mix arbitrary
//! Unicode with the fragments that break naive quoting (quotes, `$(…)`, YAML indicators, line breaks).

use std::collections::BTreeMap;
use std::process::Command;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::Value;

use kiln::lower::Stage;
use kiln::model::{self, ProfileFiles};
use kiln::pipeline::user_data;
use kiln::profile::v1::*;
use kiln::secrets;

use crate::oracle::{pyyaml_load, write_texts};
use crate::support::{TestSecrets, require_tool};

const CASES: usize = 160;

struct NoFiles;

impl ProfileFiles for NoFiles {
    fn read(&self, relative: &str) -> Result<Vec<u8>, model::FileError> {
        Err(model::FileError::Unreadable(format!("no file {relative} in this test")))
    }
}

fn nasty() -> impl Strategy<Value = String> {
    let fragment = prop_oneof![
        Just("'".to_string()),
        Just("\"".to_string()),
        Just("\\".to_string()),
        Just("\n".to_string()),
        Just("\r\n".to_string()),
        Just("\t".to_string()),
        Just("$(reboot)".to_string()),
        Just("`id`".to_string()),
        Just(": ".to_string()),
        Just("- ".to_string()),
        Just(" #".to_string()),
        Just("&a *a".to_string()),
        Just("!!python/object:os.system".to_string()),
        Just("{{ }}".to_string()),
        Just("yes".to_string()),
        Just("0644".to_string()),
        Just("~".to_string()),
        Just("---\n".to_string()),
        Just("\u{85}\u{2028}\u{feff}".to_string()),
        Just("\u{1}\u{7f}".to_string()),
        Just("  ".to_string()),
        "[a-z]{1,6}",
        any::<String>(),
    ];
    proptest::collection::vec(fragment, 0..8).prop_map(|parts| parts.concat())
}

fn base_profile() -> RawProfile {
    let key = include_str!("../../profiles/keys/deploy.pub").trim().to_string();
    RawProfile {
        version: 1,
        host: Host {
            os: Some(kiln::profile::v1::Release::Debian12),
            hostname: Some("prop".into()),
            timezone: "Etc/UTC".into(),
            locale: "C.UTF-8".into(),
            swap: None,
        },
        user: User {
            name: "deploy".into(),
            ssh_keys: vec![SshKeySource::Inline(key)],
            sudo: true,
            shell: "/bin/bash".into(),
        },
        ssh: Ssh::default(),
        docker: None,
        cloudflared: None,
        tailscale: None,
        wireguard: None,
        firewall: Some(Firewall {
            incoming: Policy::Deny,
            outgoing: Policy::Allow,
            allow: vec![],
            allow_in_on: vec![],
        }),
        packages: vec![],
        files: vec![],
        vars: BTreeMap::new(),
        apt: Apt::default(),
        hardening: Hardening::default(),
        hosts: Vec::new(),
    }
}

struct Case {
    comment: String,
    content: String,
    var: String,
    hostname: String,
}

fn generate() -> Vec<Case> {
    let mut runner = TestRunner::deterministic();
    // Mostly plausible host names (so most cases render), sometimes garbage (which must be refused).
    let hostnames = prop_oneof![3 => "[a-z]([a-z0-9-]{0,9}[a-z0-9])?(\\.[a-z]{2,5})?", 1 => nasty()];
    // Control characters are refused in comments by design; everything else must survive.
    let comments = nasty().prop_map(|s| s.chars().filter(|c| !c.is_control()).take(200).collect::<String>());
    let strategy = (comments, nasty(), nasty(), hostnames);
    (0..CASES)
        .map(|_| {
            let (comment, content, var, hostname) = strategy.new_tree(&mut runner).unwrap().current();
            Case { comment, content, var, hostname }
        })
        .collect()
}

/// Renders a case, or `None` when kiln refuses the values (which is also safe).
fn render(case: &Case) -> Option<(String, RawProfile)> {
    let mut raw = base_profile();
    raw.host.hostname = Some(case.hostname.clone());
    raw.firewall.as_mut().unwrap().allow.push(AllowRule {
        port: PortSpec::Single(22),
        proto: Proto::Tcp,
        from: None,
        // An empty comment is refused (ufw stores none): leave it out instead.
        comment: Some(case.comment.clone()).filter(|c| !c.is_empty()),
    });
    raw.vars.insert("v".into(), VarValue::Text(case.var.clone()));
    raw.files.push(File {
        path: "/etc/prop/plain".into(),
        content: Some(case.content.clone()),
        source: None,
        template: false,
        mode: "0644".into(),
        owner: "root:root".into(),
        allow_setuid: false,
    });
    raw.files.push(File {
        path: "/etc/prop/templated".into(),
        content: Some("[{{ vars.v }}]\n".into()),
        source: None,
        template: true,
        mode: "0600".into(),
        owner: "root:root".into(),
        allow_setuid: false,
    });
    let (model, report) = kiln::pipeline::validate(&raw, &NoFiles);
    let model = model.filter(|_| !report.has_errors())?;
    let secrets = secrets::resolve(&model, Some(&TestSecrets)).unwrap();
    Some((user_data(&model, &secrets, Stage::Full).expect("renders"), raw))
}

fn file_content<'a>(config: &'a Value, path: &str) -> &'a str {
    config["write_files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == path)
        .and_then(|f| f["content"].as_str())
        .unwrap_or_else(|| panic!("{path} missing"))
}

#[test]
fn values_cannot_escape_their_quoting() {
    let cases = generate();
    let rendered: Vec<(&Case, String)> = cases.iter().filter_map(|c| render(c).map(|(text, _)| (c, text))).collect();
    eprintln!("{} of {CASES} generated cases rendered; the rest were refused by validation", rendered.len());
    assert!(rendered.len() >= CASES / 2, "too few accepted cases ({}) to mean anything", rendered.len());
    let accepted_comments = rendered.iter().filter(|(c, _)| !c.comment.is_empty()).count();
    assert!(accepted_comments >= 10, "the generator must produce accepted non-empty comments");

    // YAML: serde-saphyr and PyYAML both read back exactly the values that went in.
    let (_dir, paths) = write_texts(rendered.iter().map(|(_, t)| t.as_str()));
    let python = pyyaml_load(&paths);
    for ((case, text), from_python) in rendered.iter().zip(&python) {
        let ours: Value = serde_saphyr::from_str(text).unwrap();
        assert_eq!(&ours, from_python, "YAML 1.1 and 1.2 readers disagree on:\n{text}");
        assert_eq!(file_content(&ours, "/etc/prop/plain"), case.content);
        assert_eq!(file_content(&ours, "/etc/prop/templated"), format!("[{}]\n", case.var));
        assert!(text.starts_with("#cloud-config\n"));
        assert_eq!(ours["hostname"].as_str().unwrap(), case.hostname.split('.').next().unwrap());
    }

    // Shell: bash parses every script, and the ufw comment arrives as exactly one argument.
    let mut probe = String::from(
        "ufw() { printf '%s\\n' \"$#\"; for a in \"$@\"; do printf '%s' \"$a\" | base64 -w0; echo; done; }\n",
    );
    for (_, text) in &rendered {
        let config: Value = serde_saphyr::from_str(text).unwrap();
        let script = file_content(&config, kiln::lower::PROVISION_PATH);
        let line = script.lines().find(|l| l.starts_with("ufw allow proto tcp")).expect("the rule's line");
        probe.push_str(line);
        probe.push('\n');
        let syntax = Command::new(require_tool("bash")).arg("-n").arg("-c").arg(script).output().expect("bash");
        assert!(
            syntax.status.success(),
            "bash -n rejects the script:\n{script}\n{}",
            String::from_utf8_lossy(&syntax.stderr)
        );
    }
    let out = Command::new(require_tool("bash")).arg("-c").arg(&probe).output().expect("bash");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut lines = stdout.lines();
    for (case, _) in &rendered {
        let count: usize = lines.next().unwrap().parse().unwrap();
        let words: Vec<String> = (0..count).map(|_| decode(lines.next().unwrap())).collect();
        assert_eq!(words[..9], ["allow", "proto", "tcp", "from", "any", "to", "any", "port", "22"]);
        if case.comment.is_empty() {
            assert_eq!(words.len(), 9, "{words:?}");
            continue;
        }
        assert_eq!(words.len(), 11, "{words:?}");
        assert_eq!(words[9], "comment");
        // What ufw is given: the comment, with `'` written as `’` (ufw refuses `'`).
        let given = kiln::consumers::ufw::comment(&case.comment).expect("an accepted comment");
        assert_eq!(words[10], given, "the comment changed on its way through the shell");
    }
}

fn decode(b64: &str) -> String {
    use base64::Engine as _;
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap()
}
