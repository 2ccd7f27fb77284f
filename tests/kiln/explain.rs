//! `kiln explain`: every diagnostic code has an explanation, and every example profile does what the explanation
//! says when the binary checks it: the wrong one reports its code and no other, the fixed one passes `--strict`
//! without a word.

use std::process::Command;

use kiln::catalog::Code;
use kiln::explain::{Case, Example, explanation};

use crate::support::{kiln_with_secrets, require_tool};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `kiln check --format json` on the case's profile, alone in a fresh directory: its exit code and the codes
/// it reported.
fn check(case: &Case, strict: bool) -> (Option<i32>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("profile.yaml");
    std::fs::write(&path, case.profile).unwrap();
    let mut args = vec!["check", "--format", "json"];
    if strict {
        args.push("--strict");
    }
    args.extend(case.args);
    args.push(path.to_str().unwrap());
    let out = kiln_with_secrets(&args);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: no JSON on stdout ({e}): {}", text(&out.stderr)));
    let codes = report["files"][0]["diagnostics"]
        .as_array()
        .expect("a report per file")
        .iter()
        .map(|d| d["code"].as_str().expect("a code").to_string())
        .collect();
    (out.status.code(), codes)
}

#[test]
fn every_example_profile_raises_its_code_and_its_fix_passes() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for code in Code::ALL {
        let Example::Profiles { wrong, fixed } = explanation(*code).example else { continue };
        // With --strict, so that a warning fails as an error does: the status says the code was reported.
        let (status, codes) = check(&wrong, true);
        if status != Some(1) || codes.is_empty() || codes.iter().any(|c| c != code.name()) {
            failures.push(format!("{}: the wrong profile exits {status:?} reporting {codes:?}", code.name()));
        }
        let (status, codes) = check(&fixed, true);
        if status != Some(0) || !codes.is_empty() {
            failures
                .push(format!("{}: the fixed profile exits {status:?} with --strict reporting {codes:?}", code.name()));
        }
        checked += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= Code::ALL.len() - 3, "only {checked} codes have example profiles");
}

/// A code no profile text shows gives a shell command that shows it, where one can: run as written, with this
/// kiln first on `PATH`, it reports the code.
#[test]
fn every_trigger_command_raises_its_code() {
    let sh = require_tool("sh");
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_kiln")).parent().unwrap().to_path_buf();
    let path =
        std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())))
            .unwrap();
    let mut run = 0;
    for code in Code::ALL {
        let Example::NotAProfile { trigger: Some(command), .. } = explanation(*code).example else { continue };
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(&sh).arg("-c").arg(command).current_dir(dir.path()).env("PATH", &path).output().unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {command}: {stderr}", code.name());
        assert!(stderr.starts_with(&format!("error[{}]", code.name())), "{}: {command}: {stderr}", code.name());
        run += 1;
    }
    assert_eq!(run, 2, "input-too-large and input-not-text have a command");
}

#[test]
fn explain_prints_every_code_and_lists_them_all() {
    for code in Code::ALL {
        let out = kiln_with_secrets(&["explain", code.name()]);
        assert_eq!(out.status.code(), Some(0), "{}: {}", code.name(), text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(stdout.starts_with(&format!("{}: {}\n", code.name(), code.summary())), "{stdout}");
        assert!(stdout.contains("Why it matters") && out.stderr.is_empty(), "{stdout}");
    }
    let out = kiln_with_secrets(&["explain"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let list = text(&out.stdout);
    assert_eq!(list.lines().count(), Code::ALL.len(), "{list}");
    for code in Code::ALL {
        let line = list.lines().find(|l| l.split_whitespace().next() == Some(code.name()));
        assert!(line.is_some_and(|l| l.ends_with(code.summary())), "{}: {list}", code.name());
    }
}

#[test]
fn an_unknown_code_is_a_usage_error_with_the_nearest_code() {
    let out = kiln_with_secrets(&["explain", "docker-bypasses-firewal"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(text(&out.stderr).contains("did you mean `docker-bypasses-firewall`?"), "{}", text(&out.stderr));
}

/// What `kiln check` prints for a human points at the explanation, once per code.
#[test]
fn human_diagnostics_point_at_kiln_explain_once_per_code() {
    let ports = crate::support::data_dir().join("ports/profile.yaml");
    let out = kiln_with_secrets(&["check", ports.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    for (code, times) in [("port-out-of-range", 3), ("duplicate-rule", 2), ("invalid-value", 2)] {
        assert_eq!(
            stderr.matches(&format!("error[{code}]")).count() + stderr.matches(&format!("warning[{code}]")).count(),
            times,
            "{stderr}"
        );
        assert_eq!(stderr.matches(&format!("= help: run `kiln explain {code}`")).count(), 1, "{code}: {stderr}");
    }
}
