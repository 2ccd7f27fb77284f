//! `kiln completions` and `kiln man`: every shell's script knows every command (and bash's parses), and every
//! man page is written 0644 where it belongs and renders with groff without a warning.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};

use clap::CommandFactory as _;
use kiln::cli::Cli;

use crate::support::require_tool;

fn kiln_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln")).args(args).current_dir(cwd).output().expect("kiln runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every command's words (`check`, `image`, `build`, …) and the man page each gets (`kiln-image-build.1`).
fn commands() -> Vec<(String, String)> {
    fn walk(command: &clap::Command, page: &str, out: &mut Vec<(String, String)>) {
        for sub in command.get_subcommands() {
            let page = format!("{page}-{}", sub.get_name());
            out.push((sub.get_name().to_string(), format!("{page}.1")));
            walk(sub, &page, out);
        }
    }
    let mut out = Vec::new();
    walk(&Cli::command(), "kiln", &mut out);
    assert!(out.len() >= 13, "{out:?}");
    out
}

#[test]
fn every_shell_gets_a_script_that_knows_every_command() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = kiln_in(dir.path(), &["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", text(&out.stderr));
        assert!(out.stderr.is_empty(), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        for (word, _) in commands() {
            assert!(script.contains(&word), "{shell}: the script does not mention `{word}`");
        }
        if shell == "bash" {
            let path = dir.path().join("kiln.bash");
            std::fs::write(&path, &out.stdout).unwrap();
            let parsed = Command::new(require_tool("bash")).arg("-n").arg(&path).output().unwrap();
            assert!(parsed.status.success(), "bash -n: {}", text(&parsed.stderr));
        }
    }
    let out = kiln_in(dir.path(), &["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2), "an unknown shell is a wrong command line");
}

#[test]
fn man_writes_a_page_per_command_that_groff_renders_without_a_warning() {
    let groff = require_tool("groff");
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("man1");
    let out = kiln_in(dir.path(), &["man", out_dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    let mut expected: Vec<String> = commands().into_iter().map(|(_, page)| page).collect();
    expected.push("kiln.1".into());
    expected.sort();
    let mut written: Vec<String> =
        std::fs::read_dir(&out_dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    written.sort();
    assert_eq!(written, expected, "one page per command, and nothing else (no temporary file)");
    for page in &written {
        let path = out_dir.join(page);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644, "{page}");
        let rendered = Command::new(&groff).args(["-man", "-Tutf8", "-ww", "-z"]).arg(&path).output().unwrap();
        assert!(rendered.status.success() && rendered.stderr.is_empty(), "{page}: {}", text(&rendered.stderr));
    }
    // The top page refers to each command's page; the default directory is the current one.
    let top = std::fs::read_to_string(out_dir.join("kiln.1")).unwrap();
    for (word, _) in commands().iter().filter(|(word, _)| word != "build") {
        assert!(top.contains(&format!("kiln\\-{word}(1)")), "kiln.1 does not refer to kiln-{word}(1)");
    }
    let here = kiln_in(dir.path(), &["man"]);
    assert_eq!(here.status.code(), Some(0), "{}", text(&here.stderr));
    assert!(dir.path().join("kiln.1").is_file() && dir.path().join("kiln-image-build.1").is_file());
}
