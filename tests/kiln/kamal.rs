//! `kiln kamal`'s YAML against Kamal's own documentation of its configuration: every key it prints is one
//! Kamal documents (Kamal validates deploy.yml against the same files, `tests/data/kamal-docs/`), for every
//! golden case that has the output; and the command's exit codes.

use std::collections::BTreeSet;

use serde_saphyr::DuplicateKeyPolicy;

use crate::support::{data_dir, golden_cases};

/// Every key path the vendored documentation shows (`proxy.run.bind_ips`), a role's name written `<role>`.
fn documented() -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    for file in ["proxy.yml", "role.yml", "ssh.yml"] {
        let text = std::fs::read_to_string(data_dir().join("kamal-docs").join(file)).unwrap();
        // As Ruby's YAML loader reads them (Kamal's validator): a repeated key's last value wins.
        let options = serde_saphyr::options! { duplicate_keys: DuplicateKeyPolicy::LastWins };
        let value: serde_json::Value = serde_saphyr::from_str_with_options(&text, options).unwrap();
        paths.extend(kiln::kamal::value_key_paths(&value));
    }
    paths
}

#[test]
fn every_printed_key_is_one_kamal_documents() {
    let documented = documented();
    // The documentation itself has what kiln relies on (a stale copy would fail here first).
    for path in ["servers.<role>.hosts", "ssh.user", "proxy.hosts", "proxy.ssl", "proxy.run.bind_ips"] {
        assert!(documented.contains(path), "{path} is not in the vendored documentation: {documented:?}");
    }
    let mut seen = 0;
    for case in golden_cases() {
        let Ok(yaml) = std::fs::read_to_string(case.join("expected.kamal.yml")) else { continue };
        seen += 1;
        for path in kiln::kamal::key_paths(&yaml).unwrap() {
            assert!(documented.contains(&path), "{}: `{path}` is not a key Kamal documents", case.display());
        }
    }
    assert!(seen >= 3, "only {seen} golden cases have kiln kamal's output");
    // And a key Kamal does not have would be caught.
    assert!(!documented.contains("proxy.bind_ips") && !documented.contains("ssh.username"));
}
