//! ssh-audit's verdict on a host's sshd, read from its JSON report (`ssh-audit -j`, 3.9): every failure and
//! warning it gives, and the check that none is left once the warnings kiln accepts (each for a stated
//! reason, `ExpectedSsh::audit_accepted_warnings`) are set aside.

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::Check;
use crate::expect::AuditWarning;

/// The check's name.
pub const CHECK: &str = "ssh-audit: no failure, no warning kiln does not accept";

/// The algorithm sections of the report, as ssh-audit names them: key exchange, host keys, ciphers, MACs.
const SECTIONS: &[&str] = &["kex", "key", "enc", "mac"];

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Fail,
    Warn,
}

/// One thing ssh-audit holds against the server.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    pub severity: Severity,
    /// The algorithm (`curve25519-sha256`) or CVE it is about.
    pub subject: String,
    /// ssh-audit's words, with the section (`kex: does not provide …`).
    pub note: String,
}

/// Every failure and warning in a report: the algorithms' `fail`/`warn` notes, the CVEs ssh-audit matched
/// to the server's version (each a failure), and its `critical`/`warning` recommendations (to remove or
/// change an algorithm). A report that is not ssh-audit's (no banner, no algorithm section) is an error.
pub fn findings(report: &str) -> Result<Vec<Finding>> {
    let report: Value = serde_json::from_str(report).context("ssh-audit's report is not JSON")?;
    let software = report.pointer("/banner/software").and_then(Value::as_str);
    if software.is_none() {
        bail!("ssh-audit's report has no server banner: it did not reach sshd ({})", brief(&report));
    }
    let mut found = Vec::new();
    for section in SECTIONS {
        let entries = report
            .get(*section)
            .and_then(Value::as_array)
            .with_context(|| format!("ssh-audit's report has no `{section}` list"))?;
        for entry in entries {
            let algorithm = entry.get("algorithm").and_then(Value::as_str).unwrap_or("(unnamed)");
            for (key, severity) in [("fail", Severity::Fail), ("warn", Severity::Warn)] {
                for note in entry.pointer(&format!("/notes/{key}")).and_then(Value::as_array).into_iter().flatten() {
                    found.push(Finding {
                        severity: severity.clone(),
                        subject: algorithm.to_string(),
                        note: format!("{section}: {}", note.as_str().unwrap_or_default()),
                    });
                }
            }
        }
    }
    for cve in report.get("cves").and_then(Value::as_array).into_iter().flatten() {
        let name = cve.get("name").and_then(Value::as_str).unwrap_or("(unnamed CVE)");
        let description = cve.get("description").and_then(Value::as_str).unwrap_or_default();
        found.push(Finding { severity: Severity::Fail, subject: name.to_string(), note: description.to_string() });
    }
    for (level, severity) in [("critical", Severity::Fail), ("warning", Severity::Warn)] {
        // {"warning": {"del": {"kex": [{"name": "curve25519-sha256", …}]}}}: an action, a section, names.
        let Some(actions) = report.pointer(&format!("/recommendations/{level}")).and_then(Value::as_object) else {
            continue;
        };
        for (action, sections) in actions {
            for (section, names) in sections.as_object().into_iter().flatten() {
                for name in names.as_array().into_iter().flatten() {
                    let name = name.get("name").and_then(Value::as_str).unwrap_or("(unnamed)");
                    found.push(Finding {
                        severity: severity.clone(),
                        subject: name.to_string(),
                        note: format!("recommendation: {action} {section} {name}"),
                    });
                }
            }
        }
    }
    found.sort();
    found.dedup();
    Ok(found)
}

/// The audit check: it passes when ssh-audit gives no failure and warns only about what kiln accepts.
pub fn check(report: &str, accepted: &[AuditWarning]) -> Result<Check> {
    let findings = findings(report)?;
    let is_accepted = |f: &Finding| f.severity == Severity::Warn && accepted.iter().any(|a| a.algorithm == f.subject);
    let refused: Vec<String> = findings
        .iter()
        .filter(|f| !is_accepted(f))
        .map(|f| format!("{:?} {}: {}", f.severity, f.subject, f.note))
        .collect();
    let expected = if accepted.is_empty() {
        "no failure, no warning".to_string()
    } else {
        let names: Vec<String> = accepted.iter().map(|a| format!("{} ({})", a.algorithm, a.why)).collect();
        format!("no failure; warnings only about {}", names.join(", "))
    };
    let observed = if refused.is_empty() {
        // A subject ssh-audit names twice (a note and a recommendation) is said once.
        let mut warned: Vec<&str> = findings.iter().map(|f| f.subject.as_str()).collect();
        warned.dedup();
        if warned.is_empty() {
            "no failure, no warning".to_string()
        } else {
            format!("warnings about {}", warned.join(", "))
        }
    } else {
        refused.join("; ")
    };
    Ok(Check::new(CHECK, expected, observed, refused.is_empty()))
}

/// The start of a report, for an error message.
fn brief(report: &Value) -> String {
    let text = report.to_string();
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ssh-audit 3.9's reports on Debian 12's and Debian 13's own sshd (9.2p1-2+deb12u10, 10.0p2-7+deb13u4)
    /// running kiln's drop-in, captured from the oracle roots with `ssh-audit -j` (2026-12-01).
    const DEBIAN_12: &str = include_str!("fixtures/ssh-audit-debian-12.json");
    const DEBIAN_13: &str = include_str!("fixtures/ssh-audit-debian-13.json");

    fn accepted() -> Vec<AuditWarning> {
        crate::consumers::sshd::CLASSIC_KEX
            .iter()
            .map(|a| AuditWarning { algorithm: (*a).into(), why: "Kamal's net-ssh".into() })
            .collect()
    }

    #[test]
    fn kilns_sshd_draws_only_the_accepted_warning_on_both_releases() {
        for report in [DEBIAN_12, DEBIAN_13] {
            let found = findings(report).unwrap();
            let curve25519 = |f: &Finding| crate::consumers::sshd::CLASSIC_KEX.contains(&f.subject.as_str());
            assert!(!found.is_empty() && found.iter().all(curve25519), "{found:#?}");
            assert!(found.iter().all(|f| f.severity == Severity::Warn));
            let verdict = check(report, &accepted()).unwrap();
            assert!(verdict.passed, "{verdict:?}");
        }
    }

    #[test]
    fn the_warning_fails_the_check_unless_kiln_accepts_it() {
        let verdict = check(DEBIAN_13, &[]).unwrap();
        assert!(!verdict.passed);
        assert!(verdict.observed.contains("Warn curve25519-sha256: kex: does not provide protection"), "{verdict:?}");
    }

    /// A weak MAC put back (the VM tier's tamper does the same to the guest's sshd): ssh-audit's report on
    /// Debian 12's sshd with `hmac-sha1` appended to kiln's MACs.
    #[test]
    fn a_weak_mac_or_a_cve_fails_the_check() {
        let weak = include_str!("fixtures/ssh-audit-debian-12-hmac-sha1.json");
        let verdict = check(weak, &accepted()).unwrap();
        assert!(!verdict.passed);
        assert!(verdict.observed.contains("Fail hmac-sha1: mac: using broken SHA-1"), "{verdict:?}");
        assert!(verdict.observed.contains("Fail hmac-sha1: recommendation: del mac hmac-sha1"), "{verdict:?}");

        let mut report: Value = serde_json::from_str(DEBIAN_13).unwrap();
        report["cves"] = serde_json::json!([{"name": "CVE-2024-6387", "cvssv2": 8.1, "description": "regreSSHion"}]);
        let verdict = check(&report.to_string(), &accepted()).unwrap();
        assert!(!verdict.passed && verdict.observed.contains("CVE-2024-6387: regreSSHion"), "{verdict:?}");
    }

    #[test]
    fn a_report_without_a_server_is_an_error_not_a_verdict() {
        // What ssh-audit 3.9 writes when sshd drops the connection (OpenSSH 10's PerSourcePenalties did).
        let refused = r#"{"additional_notes": [], "banner": {"comments": null, "protocol": null, "raw": "", "software": null}, "cves": [], "recommendations": {}, "target": "127.0.0.1:2213"}"#;
        assert!(findings(refused).unwrap_err().to_string().contains("no server banner"));
        assert!(findings("[exception] did not receive banner").is_err());
    }
}
