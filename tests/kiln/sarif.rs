//! `kiln check --format sarif` and `--format github`: the machine reports say what the JSON report says,
//! one result or annotation per diagnostic, and the SARIF log is valid SARIF 2.1.0 by the OASIS schema
//! (vendored in `tests/reference/sarif/`, shown refusing a broken log).

use std::path::PathBuf;
use std::process::Output;

use crate::support::{data_dir, kiln_with_secrets, reference_dir, repo_root};

/// Profiles with errors and warnings, one without any, and one that does not exist.
fn profiles() -> Vec<String> {
    let mut paths: Vec<PathBuf> = ["unknown-keys", "docker-bypass", "ssh-key-twice", "fleet-bad"]
        .iter()
        .map(|case| data_dir().join(case).join("profile.yaml"))
        .collect();
    paths.push(repo_root().join("profiles/app.yaml"));
    paths.push(data_dir().join("no-such-case/profile.yaml"));
    paths.iter().map(|p| p.display().to_string()).collect()
}

fn check(format: &str) -> Output {
    let profiles = profiles();
    let mut args = vec!["check", "--format", format];
    args.extend(profiles.iter().map(String::as_str));
    kiln_with_secrets(&args)
}

/// Each profile's diagnostics as the JSON report gives them: (file, code, line).
fn json_diagnostics() -> Vec<(String, String, Option<u64>)> {
    let out = check("json");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let mut found = Vec::new();
    for file in report["files"].as_array().unwrap() {
        for d in file["diagnostics"].as_array().unwrap() {
            found.push((d["file"].as_str().unwrap().into(), d["code"].as_str().unwrap().into(), d["line"].as_u64()));
        }
    }
    found
}

fn schema() -> jsonschema::Validator {
    let text = std::fs::read_to_string(reference_dir().join("sarif/sarif-schema-2.1.0.json")).unwrap();
    jsonschema::draft4::new(&serde_json::from_str(&text).unwrap()).expect("the SARIF schema compiles")
}

#[test]
fn the_sarif_log_is_valid_sarif_2_1_0_with_one_result_per_diagnostic() {
    let out = check("sarif");
    // The same exit status as every other format: profiles fail, one is unreadable.
    assert_eq!(out.status.code(), check("json").status.code());
    let log: serde_json::Value = serde_json::from_slice(&out.stdout).expect("SARIF (JSON) on stdout");
    let validator = schema();
    let errors: Vec<String> = validator.iter_errors(&log).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "kiln's SARIF breaks the schema: {errors:#?}");
    // The control: the schema refuses a log that is not 2.1.0 and a result without a message.
    let mut broken = log.clone();
    broken["version"] = "2.0.0".into();
    assert!(!validator.is_valid(&broken), "the schema accepts version 2.0.0");
    let mut broken = log.clone();
    broken["runs"][0]["results"][0].as_object_mut().unwrap().remove("message");
    assert!(!validator.is_valid(&broken), "the schema accepts a result without a message");

    let results = log["runs"][0]["results"].as_array().unwrap();
    let mut wanted: Vec<(String, String, Option<u64>)> = json_diagnostics();
    // The missing profile is a result too, at the file.
    wanted.push((profiles().last().unwrap().clone(), "file-unreadable".into(), None));
    let rules = log["runs"][0]["tool"]["driver"]["rules"].as_array().unwrap();
    let mut got: Vec<(String, String, Option<u64>)> = results
        .iter()
        .map(|r| {
            let location = &r["locations"][0]["physicalLocation"];
            // The rule the index points at is the result's own.
            assert_eq!(rules[r["ruleIndex"].as_u64().unwrap() as usize]["id"], r["ruleId"]);
            (
                location["artifactLocation"]["uri"].as_str().unwrap().to_string(),
                r["ruleId"].as_str().unwrap().to_string(),
                location["region"]["startLine"].as_u64(),
            )
        })
        .collect();
    wanted.sort();
    got.sort();
    assert_eq!(got, wanted);
    assert!(results.iter().any(|r| r["level"] == "warning") && results.iter().any(|r| r["level"] == "error"));
}

#[test]
fn github_annotations_are_one_workflow_command_per_diagnostic() {
    let out = check("github");
    assert_eq!(out.status.code(), check("json").status.code());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    let mut wanted = json_diagnostics();
    wanted.push((profiles().last().unwrap().clone(), "unreadable".into(), None));
    assert_eq!(lines.len(), wanted.len(), "{stdout}");
    for (file, code, line) in &wanted {
        let found = lines.iter().any(|l| {
            (l.starts_with("::error ") || l.starts_with("::warning "))
                && l.contains(&format!("file={file},"))
                && l.contains(&format!("title={code}::"))
                && line.is_none_or(|n| l.contains(&format!(",line={n},")))
        });
        assert!(found, "no annotation for {file} {code} line {line:?}: {stdout}");
    }
    // A workflow command is one line: every newline in a message is escaped.
    assert!(lines.iter().all(|l| l.starts_with("::")));
}
