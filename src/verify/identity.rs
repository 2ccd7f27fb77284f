//! What makes an instance itself (its machine-id and SSH host keys): the probe golden-image scenarios run
//! in two instances of one image, to show that they share neither.

use std::time::Duration;

use anyhow::{Result, anyhow};

use super::protocol::{Probe, Script, probe_sections};

probe_sections! {
    /// The identity probe's sections.
    pub enum IdentitySection("the identity probe") {
        MachineId = "machine-id",
        /// `ssh-keygen -l` of each host public key.
        HostKeys = "host-keys",
    }
}

pub type IdentityProbe = Probe<IdentitySection>;

pub const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

pub fn script() -> Script<IdentitySection> {
    let mut s = Script::new("");
    s.section(IdentitySection::MachineId, "cat /etc/machine-id");
    s.section(
        IdentitySection::HostKeys,
        "# No host key at all is an answer (the identity check fails on it), not a glob left unexpanded.\nshopt -s nullglob\nfor k in /etc/ssh/ssh_host_*_key.pub; do ssh-keygen -l -f \"$k\"; done",
    );
    s
}

/// `ssh-keygen -l` lines (`256 SHA256:… comment (ED25519)`) → the fingerprints.
pub fn parse_fingerprints(text: &str) -> Result<Vec<String>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            [bits, fingerprint, ..] if bits.parse::<u32>().is_ok() && fingerprint.starts_with("SHA256:") => {
                Ok(fingerprint.to_string())
            }
            _ => Err(anyhow!("section host-keys: `{line}` is not a line of `ssh-keygen -l` (BITS SHA256:… …)")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::protocol::testing::{assert_bash_syntax, check_names, run_bash, stubs};
    use super::*;

    #[test]
    fn the_probe_reads_a_machine_id_and_fingerprints() {
        check_names::<IdentitySection>();
        assert_bash_syntax(&script().text());
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("ssh")).unwrap();
        std::fs::write(root.path().join("machine-id"), "0123456789abcdef0123456789abcdef\n").unwrap();
        let text = script()
            .text()
            .replace("/etc/machine-id", &root.path().join("machine-id").display().to_string())
            .replace("/etc/ssh", &root.path().join("ssh").display().to_string());
        let keygen = stubs(&[(
            "ssh-keygen",
            "echo \"256 SHA256:$(basename \"$3\" | md5sum | cut -c1-32) root@golden (ED25519)\"",
        )]);
        // No host key yet: an empty section, not an error.
        let (exit, stdout, stderr) = run_bash(&text, Some(keygen.path()), b"");
        let probe = IdentityProbe::parse(&stdout, exit, &stderr).unwrap();
        assert_eq!(probe.get(IdentitySection::MachineId).unwrap(), "0123456789abcdef0123456789abcdef");
        assert_eq!(parse_fingerprints(probe.get(IdentitySection::HostKeys).unwrap()).unwrap(), Vec::<String>::new());
        for key in ["ssh_host_ed25519_key.pub", "ssh_host_rsa_key.pub"] {
            std::fs::write(root.path().join("ssh").join(key), "ssh-ed25519 AAAA x\n").unwrap();
        }
        let (exit, stdout, stderr) = run_bash(&text, Some(keygen.path()), b"");
        let probe = IdentityProbe::parse(&stdout, exit, &stderr).unwrap();
        assert_eq!(parse_fingerprints(probe.get(IdentitySection::HostKeys).unwrap()).unwrap().len(), 2);
        // ssh-keygen refusing a key file: the harness error carries its message.
        let refusing = stubs(&[("ssh-keygen", "echo \"$3 is not a public key file.\" >&2; exit 255")]);
        let (exit, stdout, stderr) = run_bash(&text, Some(refusing.path()), b"");
        let error = format!("{:#}", IdentityProbe::parse(&stdout, exit, &stderr).unwrap_err());
        assert!(
            error.contains("section host-keys failed (exit 255)") && error.contains("is not a public key file"),
            "{error}"
        );
        assert!(parse_fingerprints("SHA256:abc").is_err());
    }
}
