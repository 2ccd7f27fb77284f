//! The shipped CI workflow (docs/ci/github-actions-bake.yml): valid for GitHub Actions according to
//! `action-validator` (npm's @action-validator/cli, installed by scripts/test-all), and every kiln
//! command it runs is one kiln's own command line accepts.

use std::path::PathBuf;
use std::process::Command;

use clap::Parser;
use kiln::cli::Cli;

use crate::support::{repo_root, require_tool};

fn workflow() -> PathBuf {
    repo_root().join("docs/ci/github-actions-bake.yml")
}

fn validate(path: &std::path::Path) -> std::process::Output {
    Command::new(require_tool("action-validator")).arg(path).output().expect("action-validator runs")
}

#[test]
fn the_workflow_is_valid_and_a_broken_one_is_not() {
    let ok = validate(&workflow());
    assert!(ok.status.success(), "{}{}", String::from_utf8_lossy(&ok.stdout), String::from_utf8_lossy(&ok.stderr));
    // The control: the same file with a misspelled key must be refused.
    let text = std::fs::read_to_string(workflow()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yml");
    std::fs::write(&broken, text.replacen("runs-on:", "runs_on:", 1)).unwrap();
    assert_eq!(validate(&broken).status.code(), Some(1));
}

/// The `kiln …` lines of the workflow's `run:` steps, with backslash continuations joined.
fn kiln_commands(text: &str) -> Vec<Vec<String>> {
    let joined = text.replace("\\\n", " ");
    joined
        .lines()
        .map(str::trim)
        .map(|l| l.strip_prefix("run: ").unwrap_or(l))
        .filter(|l| l.starts_with("kiln "))
        .map(|l| {
            // Matrix values become a profile name and a release kiln can build; quotes are the shell's.
            let l = l.replace("${{ matrix.profile }}", "app").replace("${{ matrix.os }}", "debian-13").replace('"', "");
            l.split_whitespace().map(str::to_string).collect()
        })
        .collect()
}

#[test]
fn every_kiln_command_in_the_workflow_parses() {
    let text = std::fs::read_to_string(workflow()).unwrap();
    let commands = kiln_commands(&text);
    let names: Vec<&str> = commands.iter().map(|c| c[1].as_str()).collect();
    for wanted in ["image", "check", "bake", "test"] {
        assert!(names.contains(&wanted), "the workflow runs no `kiln {wanted}`: {names:?}");
    }
    for command in &commands {
        if let Err(e) = Cli::try_parse_from(command) {
            panic!("`{}` does not parse: {e}", command.join(" "));
        }
    }
    // The control: a misspelled flag is refused the same way.
    assert!(Cli::try_parse_from(["kiln", "bake", "p.yaml", "--bse", "b.qcow2", "-o", "o.qcow2"]).is_err());
}
