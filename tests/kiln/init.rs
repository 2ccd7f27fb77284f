//! `kiln init`: every starter profile it writes passes `kiln check --strict` as written; without a key it
//! still writes the profile but exits 1 naming the lockout; it never writes over a file without `--force`,
//! and a refused command line writes nothing; it asks a person at a terminal what the flags left open, and
//! never asks a pipe.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};

use crate::support::repo_root;

/// kiln with `HOME` set to `home` (where `kiln init` looks for ~/.ssh keys), in `cwd`.
fn kiln(cwd: &Path, home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln")).args(args).current_dir(cwd).env("HOME", home).output().expect("kiln runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A home directory with `~/.ssh/NAME` holding a real public key.
fn home_with_key(dir: &Path, name: &str) -> std::path::PathBuf {
    let home = dir.join("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::copy(repo_root().join("profiles/keys/deploy.pub"), home.join(".ssh").join(name)).unwrap();
    home
}

#[test]
fn every_starter_profile_passes_check_strict() {
    let dir = tempfile::tempdir().unwrap();
    let home = home_with_key(dir.path(), "id_ecdsa.pub");
    let peer = ["--wireguard-peer", "TG+auU5uUQmkpMcrQbM5iWv2ayKYq1Y/0AnHjYggqmo="];
    let mut cases: Vec<Vec<&str>> = Vec::new();
    for vpn in ["tailscale", "wireguard", "none"] {
        for tunnel in ["cloudflared", "none"] {
            let mut args = vec!["--vpn", vpn, "--tunnel", tunnel];
            if vpn == "wireguard" {
                args.extend(peer);
            }
            cases.push(args);
        }
    }
    cases.push(vec!["--os", "debian-12", "--hostname", "web-7"]);
    for (i, case) in cases.iter().enumerate() {
        let name = format!("p{i}.yaml");
        let mut args = vec!["init", name.as_str()];
        args.extend(case);
        let out = kiln(dir.path(), &home, &args);
        assert_eq!(out.status.code(), Some(0), "{case:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("id_ecdsa.pub"), "says which key it used: {}", text(&out.stderr));
        let path = dir.path().join(&name);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644);
        let written = std::fs::read_to_string(&path).unwrap();
        assert!(written.starts_with("# yaml-language-server: $schema="), "{written}");
        let check = kiln(dir.path(), &home, &["check", "--strict", &name]);
        assert_eq!(check.status.code(), Some(0), "{case:?}: {}\n{written}", text(&check.stderr));
    }
}

#[test]
fn without_a_key_the_profile_is_written_and_the_lockout_named() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("empty-home");
    std::fs::create_dir_all(&home).unwrap();
    let out = kiln(dir.path(), &home, &["init"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("lockout"), "{}", text(&out.stderr));
    let check = kiln(dir.path(), &home, &["check", "--strict", "profile.yaml"]);
    assert_eq!(check.status.code(), Some(1));
    assert!(text(&check.stderr).contains("error[lockout]"), "{}", text(&check.stderr));
}

#[test]
fn init_never_writes_over_a_file_without_force_and_a_refused_line_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let home = home_with_key(dir.path(), "id_ed25519.pub");
    let path = dir.path().join("profile.yaml");
    std::fs::write(&path, "mine\n").unwrap();
    let out = kiln(dir.path(), &home, &["init"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "mine\n", "the file is untouched");
    let out = kiln(dir.path(), &home, &["init", "--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(std::fs::read_to_string(&path).unwrap().contains("version: 1"));
    // WireGuard without a peer, a peer without WireGuard, a private key: exit 2, nothing written.
    let private = dir.path().join("id_ed25519");
    std::fs::write(
        &private,
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
    )
    .unwrap();
    let private = private.display().to_string();
    for args in [
        vec!["init", "new.yaml", "--vpn", "wireguard"],
        vec!["init", "new.yaml", "--wireguard-peer", "TG+auU5uUQmkpMcrQbM5iWv2ayKYq1Y/0AnHjYggqmo="],
        vec!["init", "new.yaml", "--ssh-key", &private],
    ] {
        let out = kiln(dir.path(), &home, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out.stderr));
        assert!(!dir.path().join("new.yaml").exists(), "{args:?} wrote a file");
        assert!(!text(&out.stderr).contains("b3BlbnNzaC1rZXktdjEAAAAA"), "the private key is never printed");
    }
    // No temporary file is left behind.
    let names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| !n.ends_with(".partial")), "{names:?}");
}

/// On a pseudo-terminal (`script`), `kiln init` asks what the flags left open and builds the profile from the
/// answers (which `kiln check --strict` accepts); with stdin piped, as in CI, it asks nothing and takes the
/// defaults.
#[test]
fn a_person_at_a_terminal_is_asked_and_a_pipe_never_is() {
    let dir = tempfile::tempdir().unwrap();
    let home = home_with_key(dir.path(), "id_ed25519.pub");
    let kiln_bin = env!("CARGO_BIN_EXE_kiln");
    let command = format!("{kiln_bin} init asked.yaml --tunnel none");
    let mut tty = Command::new(crate::support::require_tool("script"))
        .args(["-qefc", &command, "/dev/null"])
        .current_dir(dir.path())
        .env("HOME", &home)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("script runs");
    // Release, host name, VPN; the tunnel was given, so it is not asked.
    std::io::Write::write_all(tty.stdin.as_mut().unwrap(), b"debian-12\nweb-3\nnone\n").unwrap();
    let tty = tty.wait_with_output().unwrap();
    let screen = text(&tty.stdout);
    assert_eq!(tty.status.code(), Some(0), "{screen}");
    assert!(screen.contains("Release (host.os) [debian-13]:") && screen.contains("Host name [app-1]:"), "{screen}");
    assert!(!screen.contains("Tunnel for HTTP"), "a flag's choice is not asked: {screen}");
    let written = std::fs::read_to_string(dir.path().join("asked.yaml")).unwrap();
    assert!(written.contains("os: debian-12") && written.contains("hostname: web-3"), "{written}");
    assert!(!written.contains("tailscale") && !written.contains("cloudflared:"), "{written}");
    let check = kiln(dir.path(), &home, &["check", "--strict", "asked.yaml"]);
    assert_eq!(check.status.code(), Some(0), "{}\n{written}", text(&check.stderr));
    // Piped (`Command::output` gives no terminal): no question, the defaults.
    let piped = kiln(dir.path(), &home, &["init", "piped.yaml"]);
    assert_eq!(piped.status.code(), Some(0), "{}", text(&piped.stderr));
    assert!(!text(&piped.stderr).contains("[debian-13]:"), "{}", text(&piped.stderr));
    let written = std::fs::read_to_string(dir.path().join("piped.yaml")).unwrap();
    assert!(written.contains("os: debian-13") && written.contains("hostname: app-1"), "{written}");
}
