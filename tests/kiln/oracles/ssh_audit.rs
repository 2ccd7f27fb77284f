//! ssh-audit: the release's own sshd, running every file the user-data writes under /etc/ssh/ with host
//! keys of the types cloud-init generates, is audited by ssh-audit 3.9 (tests/oracles/ssh-audit.sh) and
//! judged by the VM tier's own reading of the report (`kiln::verify::ssh_audit`): no failure, and no
//! warning but those `kiln expect` accepts with a reason. Debian 13's OpenSSH 10.0 judges debian-13 cases,
//! Debian 12's 9.2 the others (`Root::for_openssh`).

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use kiln::expect::AuditWarning;

use super::sandbox::{self, Mode, Root};
use super::userdata::File;
use super::{Prepared, Verdicts, distinct};

/// The ssh-audit release whose verdicts the checks were written against (`scripts/test-all` installs it).
const SSH_AUDIT_VERSION: &str = "v3.9.0";

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Input {
    root: Root,
    files: Vec<File>,
    key_types: Vec<String>,
}

pub fn check(cases: &[Prepared]) -> Verdicts {
    let inputs = cases
        .iter()
        .map(|c| {
            let key_types = c.data.ssh_key_types();
            let files = c.data.files_under(&["/etc/ssh/"]).cloned().collect();
            Some(Input { root: Root::for_openssh(c.release), files, key_types })
        })
        .collect();
    let (keys, of_case) = distinct(inputs);
    let package = package();
    let outputs = sandbox::run_per_root(
        "ssh-audit.sh",
        Mode::Each,
        &keys,
        |key| key.root,
        |input, key| {
            input.files(&key.files);
            input.lines("keytypes", &key.key_types);
            input.copy_dir(package, "ssh_audit");
        },
    );
    // A distinct input's report is judged against each of its cases' accepted warnings (from the model).
    cases
        .iter()
        .zip(&of_case)
        .map(|(case, k)| {
            let out = &outputs[k.expect("every case has an input")];
            judge(out, &case.expected.ssh.audit_accepted_warnings)
        })
        .collect()
}

fn judge(out: &sandbox::Outputs, accepted: &[AuditWarning]) -> Vec<String> {
    let test = out.record("test");
    if !test.clean() {
        return vec![format!("sshd -t: {}", test.said())];
    }
    let audit = out.record("audit");
    match kiln::verify::ssh_audit::check(&audit.out, accepted) {
        Ok(check) if check.passed => Vec::new(),
        Ok(check) => vec![format!("expected {}; ssh-audit says {}", check.expected, check.observed)],
        Err(e) => vec![format!("{e:#}: {}; sshd said: {}", audit.said(), out.text("sshd.log").unwrap_or_default())],
    }
}

/// The harness's ssh-audit package directory (pip's `ssh-audit`), checked once to be the version the
/// verdicts were written against.
fn package() -> &'static PathBuf {
    static PACKAGE: OnceLock<PathBuf> = OnceLock::new();
    PACKAGE.get_or_init(|| {
        let output = Command::new("python3")
            .args(["-c", "import os, ssh_audit, ssh_audit.globals as g; print(g.VERSION); print(os.path.dirname(ssh_audit.__file__))"])
            .output()
            .expect("python3 runs");
        let text = String::from_utf8_lossy(&output.stdout);
        let mut lines = text.lines();
        let (version, dir) = (lines.next().unwrap_or_default(), lines.next().unwrap_or_default());
        assert!(
            output.status.success() && version == SSH_AUDIT_VERSION,
            "the ssh-audit oracle needs ssh-audit {SSH_AUDIT_VERSION} for python3 (`python3 -m pip install \
             ssh-audit==3.9.0`; scripts/test-all installs it); found {version:?}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        PathBuf::from(dir)
    })
}
