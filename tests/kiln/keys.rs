//! The vendor signing keys kiln embeds are the vendors' keys: GnuPG reads each one and its primary
//! fingerprint is the one the vendor publishes (docs/design.md §4.2).

use std::process::Command;

use crate::support::{repo_root, require_tool};

#[test]
fn embedded_keys_have_the_published_fingerprints() {
    let expected = [
        ("docker.asc", "9DC858229FC7DD38854AE2D88D81803C0EBFCD88"),
        ("tailscale.asc", "2596A99EAAB33821893C0A79458CA832957F5868"),
        ("cloudflare.asc", "CC94B39C77AE7342A68B89628A682D308D4E5E73"),
    ];
    for (file, fingerprint) in expected {
        let path = repo_root().join("assets/keys").join(file);
        let out = Command::new(require_tool("gpg"))
            .args(["--batch", "--with-colons", "--show-keys"])
            .arg(&path)
            .env("GNUPGHOME", tempfile::tempdir().unwrap().path())
            .output()
            .expect("gpg runs");
        let listing = String::from_utf8_lossy(&out.stdout);
        let primary = listing.lines().find(|l| l.starts_with("fpr:")).and_then(|l| l.split(':').nth(9));
        assert_eq!(primary, Some(fingerprint), "{file}: {listing}");
    }
}
