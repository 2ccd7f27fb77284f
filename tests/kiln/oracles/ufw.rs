//! ufw: every `ufw` command of the provisioning script, in order, run for real by the release's ufw
//! (0.36.2) against a fresh copy of its configuration (tests/oracles/ufw-commands.py; `--force enable` is left
//! to the docker-user oracle's ufw-init). Each must succeed without a warning (ufw refuses comments with
//! `'` and comments that are a keyword, and warns when it changes a rule, e.g. widening a source with
//! host bits), and the rules ufw then stores in user.rules and user6.rules (its `### tuple ###` lines)
//! must be exactly the expected ones, with the expected default policies.

use kiln::expect::UfwRule;
use kiln::templates::shell_quote;
use kiln::verify::observe::parse_ufw_tuple;
use serde_json::Value;

use super::sandbox::{self, Mode};
use super::userdata::File;
use super::{Prepared, Verdicts, distinct};

/// Files that change what ufw stores: its own configuration and defaults.
const UFW_FILES: &[&str] = &["/etc/ufw/", "/etc/default/ufw"];

pub fn check(cases: &[Prepared]) -> Verdicts {
    let inputs = cases
        .iter()
        .map(|c| {
            let files: Vec<File> = c.data.files_under(UFW_FILES).filter(|f| !f.defer).cloned().collect();
            Some((c.data.script_lines("ufw"), files))
        })
        .collect();
    let (keys, of_case) = distinct(inputs);
    let outputs = sandbox::run("ufw-commands.py", Mode::Once, &keys, |input, (lines, files)| {
        input.lines("lines", lines);
        input.files(files);
    });
    let results: Vec<Value> = outputs.iter().map(|out| out.json("ufw.json")).collect();
    cases
        .iter()
        .zip(of_case)
        .map(|(case, k)| {
            let k = k.expect("every case has an input");
            judge(case, &keys[k].0, &results[k])
        })
        .collect()
}

fn judge(case: &Prepared, lines: &[String], result: &Value) -> Vec<String> {
    let mut failures = Vec::new();
    let Some(firewall) = &case.expected.firewall else {
        if !lines.is_empty() {
            failures.push(format!("the profile has no firewall, yet the script runs ufw: {}", lines.join("; ")));
        }
        return failures;
    };
    if let Some(error) = result["words_error"].as_str().filter(|e| !e.is_empty()) {
        failures.push(format!("bash cannot read the script's ufw lines: {error}"));
        return failures;
    }
    let commands = result["commands"].as_array().cloned().unwrap_or_default();
    for command in &commands {
        let argv: Vec<String> =
            command["argv"].as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect();
        let shown = std::iter::once("ufw".to_string()).chain(argv.iter().map(|w| shell_quote(w))).collect::<Vec<_>>();
        // A refused command also prints the whole usage text: its first lines say why.
        let stderr = command["stderr"].as_str().unwrap_or_default();
        let stderr = stderr.split("\nUsage: ufw COMMAND").next().unwrap_or_default();
        let stderr = stderr.lines().filter(|l| !matches!(l.trim(), "" | "ERROR:")).collect::<Vec<_>>().join(" / ");
        match command["status"].as_str() {
            Some("skipped") => {}
            Some("ok") if stderr.is_empty() => {}
            Some("ok") => failures.push(format!("`{}` warns: {stderr}", shown.join(" "))),
            _ => failures.push(format!("`{}` fails: {stderr}", shown.join(" "))),
        }
    }
    let enabled = commands.iter().position(|c| c["status"] == "skipped");
    if enabled != Some(commands.len().wrapping_sub(1)) {
        failures.push("`ufw --force enable` is not the script's last ufw command".into());
    }
    let mut stored: Vec<UfwRule> = Vec::new();
    for (family, ipv6) in [("rules4", false), ("rules6", true)] {
        for line in result[family].as_array().into_iter().flatten().filter_map(Value::as_str) {
            match parse_ufw_tuple(line, ipv6) {
                Some(rule) => stored.push(rule),
                None => failures.push(format!("ufw stored a rule kiln cannot read: {line}")),
            }
        }
    }
    stored.sort();
    let mut expected = firewall.rules.clone();
    expected.sort();
    if stored != expected {
        let missing: Vec<String> = expected.iter().filter(|r| !stored.contains(r)).map(show).collect();
        let extra: Vec<String> = stored.iter().filter(|r| !expected.contains(r)).map(show).collect();
        failures.push(format!(
            "the rules ufw stores differ from the expected ones\n  expected, not stored: {}\n  stored, not expected: {}",
            if missing.is_empty() { "-".into() } else { missing.join("; ") },
            if extra.is_empty() { "-".into() } else { extra.join("; ") }
        ));
    }
    for (direction, key, want) in
        [("incoming", "incoming", &firewall.incoming), ("outgoing", "outgoing", &firewall.outgoing)]
    {
        let got = result[key].as_str().unwrap_or_default();
        if got != want {
            failures.push(format!("default {direction} policy is {got}, expected {want}"));
        }
    }
    failures
}

fn show(rule: &UfwRule) -> String {
    format!(
        "{} {} {} from {}{}{}{}",
        rule.action,
        rule.proto,
        rule.port,
        rule.from,
        rule.interface.as_deref().map(|i| format!(" in on {i}")).unwrap_or_default(),
        if rule.ipv6 { " (v6)" } else { "" },
        rule.comment.as_deref().map(|c| format!(" comment {c:?}")).unwrap_or_default()
    )
}
