//! sysctl: kiln's kernel settings are what the kernel holds after a boot's two writers ran in their order,
//! systemd-sysctl (every sysctl.d file) and then UFW's `ufw-init start` (the file IPT_SYSCTL names:
//! Debian's /etc/ufw/sysctl.conf sets `log_martians=0` among others, kiln points it at its own): every key
//! `kiln expect` names reads back with its value (tests/oracles/sysctl.sh, in a network namespace of the
//! input's own).

use super::sandbox::{self, Mode};
use super::userdata::File;
use super::{Prepared, Verdicts, distinct};

/// Where kiln's sysctl file, its own files (IPT_SYSCTL's line, the DOCKER-USER rules) and UFW's are
/// written; never its secrets.
const SYSCTL_FILES: &str = "/etc/sysctl.d/";
const KILN_FILES: &str = "/etc/kiln/";
const KILN_SECRETS: &str = "/etc/kiln/secrets/";
const UFW_FILES: &str = "/etc/ufw/";

pub fn check(cases: &[Prepared]) -> Verdicts {
    let inputs = cases
        .iter()
        .map(|c| {
            let keys: Vec<String> = c.expected.sysctls.iter().map(|s| s.key.clone()).collect();
            let files: Vec<File> = c
                .data
                .files_under(&[SYSCTL_FILES, KILN_FILES, UFW_FILES])
                // kiln's own sysctl file only: a profile's file there is the profile's, and its syntax is
                // not what this oracle judges (kiln does not yet judge profile files in /etc/sysctl.d).
                .filter(|f| !f.path.starts_with(SYSCTL_FILES) || f.path == kiln::lower::SYSCTL_FILE)
                .filter(|f| !f.defer && !f.path.starts_with(KILN_SECRETS))
                .cloned()
                .collect();
            let append = c.data.script_lines("append_once");
            (!keys.is_empty()).then_some((keys, files, append, c.expected.firewall.is_some()))
        })
        .collect();
    let (keys, of_case) = distinct(inputs);
    let outputs = sandbox::run("sysctl.sh", Mode::Once, &keys, |input, (keys, files, append, ufw)| {
        input.lines("keys", keys);
        input.lines("append", append);
        input.files(files);
        if *ufw {
            input.write("ufw", "");
        }
    });
    let printed: Vec<Result<String, String>> = outputs
        .iter()
        .map(|out| {
            let values = out.record("values");
            if values.clean() {
                Ok(values.out)
            } else {
                Err(format!("systemd-sysctl, then ufw-init start, then sysctl: {}", values.said()))
            }
        })
        .collect();
    cases
        .iter()
        .zip(of_case)
        .map(|(case, k)| match k.map(|k| &printed[k]) {
            None => Vec::new(),
            Some(Err(failure)) => vec![failure.clone()],
            Some(Ok(text)) => judge(text, case),
        })
        .collect()
}

/// `sysctl KEY…` prints `KEY = VALUE` per key: each must be the expected value.
fn judge(text: &str, case: &Prepared) -> Vec<String> {
    let mut failures = Vec::new();
    for setting in &case.expected.sysctls {
        let line = text.lines().find_map(|l| l.strip_prefix(&format!("{} = ", setting.key)));
        match line {
            Some(value) if value == setting.value => {}
            Some(value) => failures.push(format!(
                "after systemd-sysctl and ufw-init, {} is {value}, expected {}",
                setting.key, setting.value
            )),
            None => failures.push(format!("sysctl printed no {}:\n{text}", setting.key)),
        }
    }
    failures
}
