//! apt: the release's apt parses the sources the user-data writes, beside the root's own
//! (`apt-get --print-uris update`: no E:, W: or N: line), and every key file (under the keyring
//! directories, or named by a Signed-By) is what apt can use: gpg --show-keys finds public keys only
//! (a secret key, or nothing, fails), the _apt user can read it, and its form matches its name as
//! apt-key's is_supported_keyring requires (`.asc` armored, `.gpg` a binary keyring). Ubuntu's own archive
//! keyring is not in the Debian root and is not judged (`KEYRING_NOT_IN_ROOT`).

use super::sandbox::{self, Mode, Outputs};
use super::userdata::{File, UserData};
use super::{Prepared, Verdicts, distinct, per_case};

const APT_FILES: &[&str] = &["/etc/apt/", "/usr/share/keyrings/"];
const KEY_DIRS: &[&str] = &["/etc/apt/keyrings/", "/usr/share/keyrings/", "/etc/apt/trusted.gpg.d/"];
const ARMOR: &[u8] = b"-----BEGIN PGP PUBLIC KEY BLOCK-----";
/// Ubuntu's archive keyring, which Ubuntu's base system ships and Debian 12's archive does not carry: a
/// Signed-By naming it is parsed with its source, but the key file itself cannot be judged in this root.
const KEYRING_NOT_IN_ROOT: &str = "/usr/share/keyrings/ubuntu-archive-keyring.gpg";
/// First bytes of a binary OpenPGP public key packet, as is_supported_keyring tests them.
const BINARY_KEY_TAGS: &[u8] = &[0x99, 0x98, 0xc6];

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Input {
    files: Vec<File>,
    keys: Vec<String>,
    /// unattended-upgrades' origin patterns `kiln expect` says apt's configuration holds.
    origins: Vec<String>,
}

pub fn check(cases: &[Prepared]) -> Verdicts {
    let inputs = cases
        .iter()
        .map(|c| {
            let files: Vec<File> = c.data.files_under(APT_FILES).filter(|f| !f.defer).cloned().collect();
            Some(Input { keys: key_paths(&c.data), files, origins: c.expected.update_origins.clone() })
        })
        .collect();
    let (keys, of_case) = distinct(inputs);
    let outputs = sandbox::run("apt.sh", Mode::Each, &keys, |dir, input| {
        dir.files(&input.files);
        dir.lines("keys", &input.keys);
    });
    let verdicts: Vec<Vec<String>> = keys.iter().zip(&outputs).map(|(input, out)| judge(input, out)).collect();
    per_case(&of_case, &verdicts)
}

/// Every key file: the user-data's files in the keyring directories, and every Signed-By path.
fn key_paths(data: &UserData) -> Vec<String> {
    let mut paths: Vec<String> = data.files_under(KEY_DIRS).map(|f| f.path.clone()).collect();
    for file in data.files_under(&["/etc/apt/"]) {
        let text = String::from_utf8_lossy(&file.content);
        let named: Vec<String> = if file.path.ends_with(".sources") {
            // deb822: `Signed-By:` holds paths and fingerprints (or an inline key on the lines after).
            text.lines()
                .filter_map(|l| l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case("signed-by")))
                .flat_map(|(_, v)| v.split([' ', ',']).map(str::to_string).collect::<Vec<_>>())
                .collect()
        } else if file.path.ends_with(".list") {
            // one-line style: `deb [signed-by=PATH,…] URI …`
            text.split("signed-by=")
                .skip(1)
                .filter_map(|rest| rest.split([' ', ']']).next())
                .map(str::to_string)
                .collect()
        } else {
            Vec::new()
        };
        paths.extend(named.into_iter().flat_map(|v| v.split(',').map(str::to_string).collect::<Vec<_>>()));
    }
    paths.retain(|p| p.starts_with('/') && p != KEYRING_NOT_IN_ROOT);
    paths.sort();
    paths.dedup();
    paths
}

fn judge(input: &Input, out: &Outputs) -> Vec<String> {
    let mut failures = Vec::new();
    let update = out.record("update");
    let notes: Vec<&str> = update
        .out
        .lines()
        .chain(update.err.lines())
        .filter(|l| l.starts_with("E:") || l.starts_with("W:") || l.starts_with("N:"))
        .collect();
    if update.rc != 0 || !notes.is_empty() {
        failures.push(format!("apt-get --print-uris update: exit {}: {}", update.rc, notes.join(" / ")));
    }
    failures.extend(judge_updates(input, out));
    for (i, path) in input.keys.iter().enumerate() {
        let shown = out.record(&format!("key-{i}"));
        let records: Vec<&str> = shown.out.lines().filter_map(|l| l.split(':').next()).collect();
        if shown.rc != 0 {
            failures.push(format!("gpg --show-keys {path}: {}", shown.said()));
        } else if records.iter().any(|r| *r == "sec" || *r == "ssb") {
            failures.push(format!("{path} holds a secret OpenPGP key (gpg --show-keys lists sec/ssb)"));
        } else if !records.contains(&"pub") {
            failures.push(format!("{path} holds no OpenPGP public key (gpg --show-keys lists no pub)"));
        }
        let read = out.record(&format!("read-{i}"));
        if read.rc != 0 {
            failures.push(format!("{path} is not readable by the _apt user: {}", read.said()));
        }
        if let Some(file) = input.files.iter().rev().find(|f| &f.path == path)
            && let Some(problem) = form_problem(path, &file.content)
        {
            failures.push(format!("{path}: {problem}"));
        }
    }
    failures
}

/// apt's merge of apt.conf.d holds every origin pattern `kiln expect` names, and apt.systemd.daily's two
/// settings are on, when kiln turned automatic updates on.
fn judge_updates(input: &Input, out: &Outputs) -> Vec<String> {
    if input.origins.is_empty() {
        return Vec::new();
    }
    let mut failures = Vec::new();
    let origins = out.record("origins");
    if !origins.clean() {
        return vec![format!("apt-config dump Unattended-Upgrade::Origins-Pattern: {}", origins.said())];
    }
    let configured: Vec<&str> = origins.out.lines().collect();
    for pattern in input.origins.iter().filter(|p| !configured.contains(&p.as_str())) {
        failures.push(format!("apt's configuration lacks the origin pattern {pattern:?} (it has {configured:?})"));
    }
    let periodic = out.record("periodic");
    for name in ["APT::Periodic::Update-Package-Lists", "APT::Periodic::Unattended-Upgrade"] {
        if !periodic.out.lines().any(|l| l == format!("{name} 1")) {
            failures.push(format!("apt-config dump APT::Periodic: {name} is not 1: {}", periodic.said()));
        }
    }
    failures
}

/// apt-key's is_supported_keyring (apt 2.6): `.gpg` must start with a key packet, `.asc` is dearmored,
/// any other name is ignored.
fn form_problem(path: &str, content: &[u8]) -> Option<String> {
    if path.ends_with(".asc") {
        let armored = String::from_utf8_lossy(content).lines().any(|l| l.trim_end().as_bytes() == ARMOR);
        (!armored).then(|| "named .asc but not an ASCII-armored public key block".into())
    } else if path.ends_with(".gpg") {
        let binary = content.first().is_some_and(|b| BINARY_KEY_TAGS.contains(b));
        (!binary).then(|| "named .gpg but not a binary OpenPGP keyring (apt ignores it)".into())
    } else {
        Some("apt reads key files named .asc or .gpg only (any other name is ignored)".into())
    }
}
