//! `kiln init`: every starter profile it writes passes `kiln check --strict` as written; without a key it
//! still writes the profile but exits 1 naming the lockout; it never writes over a file without `--force`,
//! and a refused command line writes nothing.

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
