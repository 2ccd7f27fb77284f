//! The release lists kiln validates against (`assets/releases/debian-12/`, `debian-13/`) are each release's
//! own: made again from that release's oracle root by `scripts/release-facts`, they list the same names. (The header lines,
//! which name package versions and digests, may move with a Debian point release; the lists must not
//! without a reviewed update.)

use std::process::Command;

use crate::support::{repo_root, require_tool};

#[test]
fn the_release_lists_are_the_releases_own() {
    for release in ["debian-12", "debian-13"] {
        same_lists(release);
    }
}

fn same_lists(release: &str) {
    let root = repo_root().join("target/oracle-root").join(release);
    assert!(
        root.join("etc/os-release").is_file(),
        "the oracle root {} is missing: scripts/test-all builds it (or run scripts/oracle-root as root)",
        root.display()
    );
    require_tool("chroot"); // scripts/release-facts asks the root's dpkg for package versions
    let out = tempfile::tempdir().unwrap();
    let made = Command::new(repo_root().join("scripts/release-facts"))
        .arg(&root)
        .arg(out.path())
        .output()
        .expect("scripts/release-facts runs");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    for name in ["timezones.txt", "locales.txt", "accounts.txt", "shells.txt"] {
        let entries =
            |text: String| text.lines().filter(|l| !l.starts_with('#')).map(str::to_string).collect::<Vec<_>>();
        let committed =
            entries(std::fs::read_to_string(repo_root().join("assets/releases").join(release).join(name)).unwrap());
        let fresh = entries(std::fs::read_to_string(out.path().join(name)).unwrap());
        assert!(
            committed == fresh,
            "assets/releases/{release}/{name} differs from the release: run scripts/release-facts and review the diff"
        );
    }
}
