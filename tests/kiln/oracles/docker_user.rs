//! docker-user: kiln's DOCKER-USER rules load with UFW. The provisioning script's `append_once` lines
//! run (with kiln's definition) in a throwaway root, then UFW starts as the script's `ufw --force
//! enable` starts it (ENABLED=yes, `ufw-init start`: the release's iptables-restore loads UFW's chains,
//! before.rules, the extended after.rules and the user rules) in a network namespace of its own
//! (tests/oracles/docker-user.sh). The chain the kernel then holds (`iptables -S DOCKER-USER`) must
//! drop new connections and let through exactly the published ports the profile declares open.

use std::collections::BTreeSet;

use super::sandbox::{self, Mode};
use super::userdata::File;
use super::{Prepared, Verdicts, distinct};

/// kiln's own files (the rules appended), never its secrets.
const KILN_FILES: &str = "/etc/kiln/";
const KILN_SECRETS: &str = "/etc/kiln/secrets/";
const UFW_FILES: &str = "/etc/ufw/";
const AFTER_RULES: &str = "/etc/ufw/after.rules";
const DROP_NEW: &str = "-A DOCKER-USER -m conntrack --ctstate NEW -j DROP";

pub fn check(cases: &[Prepared]) -> Verdicts {
    let inputs = cases
        .iter()
        .map(|c| {
            // Only the lines appending to UFW's after.rules (the hardening's appends to /etc/default/ufw).
            let lines: Vec<String> = c
                .data
                .script_lines("append_once")
                .into_iter()
                .filter(|l| l.split_whitespace().nth(1) == Some(AFTER_RULES))
                .collect();
            let files: Vec<File> = c
                .data
                .files_under(&[KILN_FILES, UFW_FILES])
                .filter(|f| !f.defer && !f.path.starts_with(KILN_SECRETS))
                .cloned()
                .collect();
            (!lines.is_empty()).then_some((lines, files))
        })
        .collect();
    let (keys, of_case) = distinct(inputs);
    let outputs = sandbox::run("docker-user.sh", Mode::Once, &keys, |input, (lines, files)| {
        input.lines("append", lines);
        input.files(files);
    });
    let loaded: Vec<Result<Vec<String>, String>> = outputs
        .iter()
        .map(|out| {
            let start = out.record("start");
            // ufw-init prints nothing when all goes well.
            if start.rc == 0 && start.out.trim().is_empty() && start.err.trim().is_empty() {
                Ok(out.record("chain").out.lines().map(str::to_string).collect())
            } else {
                Err(format!(
                    "ufw-init start (as `ufw --force enable` runs it), then iptables -S DOCKER-USER: {}",
                    start.said()
                ))
            }
        })
        .collect();
    cases
        .iter()
        .zip(of_case)
        .map(|(case, k)| {
            let open = case.expected.firewall.as_ref().and_then(|f| f.docker_user.as_ref());
            match (k, open) {
                (None, None) => Vec::new(),
                (None, Some(_)) => vec!["DOCKER-USER rules are expected, but the script appends none to UFW".into()],
                (Some(_), None) => {
                    vec!["the script appends rules to UFW that no DOCKER-USER expectation asks for".into()]
                }
                (Some(k), Some(open)) => match &loaded[k] {
                    Err(failure) => vec![failure.clone()],
                    Ok(chain) => judge_chain(chain, open),
                },
            }
        })
        .collect()
}

/// The chain as `iptables -S` prints it: new connections dropped, the declared ports (`8080/tcp`,
/// `8000:8010/udp`) returned to Docker's own chains before that, and no other port.
fn judge_chain(chain: &[String], open: &[String]) -> Vec<String> {
    let mut failures = Vec::new();
    let Some(drop_at) = chain.iter().position(|l| l == DROP_NEW) else {
        return vec![format!("the loaded DOCKER-USER chain does not drop new connections:\n{}", chain.join("\n"))];
    };
    let opened: BTreeSet<String> = chain[..drop_at]
        .iter()
        .filter_map(|line| {
            let rest = line.strip_prefix("-A DOCKER-USER -p ")?;
            let (proto, rest) = rest.split_once(" -m conntrack --ctstate DNAT --ctorigdstport ")?;
            let port = rest.strip_suffix(" -j RETURN")?;
            Some(format!("{port}/{proto}"))
        })
        .collect();
    let expected: BTreeSet<String> = open.iter().cloned().collect();
    if opened != expected {
        failures.push(format!("the loaded DOCKER-USER chain opens {opened:?}, expected {expected:?}"));
    }
    failures
}
