//! What cloud-init and the provisioning script say about a finished boot: the probe the harness runs
//! once cloud-init is done, and its parsers.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::protocol::{Probe, Script, SectionName, probe_sections};
use crate::templates::provision_log::{COMPLETE, StepFailed};

probe_sections! {
    /// The cloud-init probe's sections.
    pub enum CloudInitSection("the cloud-init probe") {
        /// /run/cloud-init/result.json: cloud-init's last write, with every error of the boot.
        Result = "result",
        /// /run/cloud-init/status.json: each stage and its errors.
        Status = "status",
        /// `UNIT<TAB>ACTIVE STATE` for each cloud-init unit.
        Units = "units",
        /// The lines of cloud-init.log saying that a module failed.
        Modules = "modules",
        /// The provisioning script's `kiln: …` lines in cloud-init-output.log.
        ProvisionLog = "kiln",
    }
}

pub type CloudInitProbe = Probe<CloudInitSection>;

/// How long the probe waits for result.json (cloud-init writes it last, when its final stage ends).
pub const RESULT_WAIT: Duration = Duration::from_secs(120);
const RESULT_POLL: Duration = Duration::from_millis(200);
/// How long the whole probe may take in the guest: the wait, then a few reads.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(RESULT_WAIT.as_secs() + 60);

const UNITS: [&str; 4] = ["cloud-init-local", "cloud-init", "cloud-config", "cloud-final"];

/// The probe. cloud-init 22.4 exits 0/1 and ≥ 23.4 exits 0/1/2 (2 = recoverable errors): its files are
/// read, not its exit code. Waiting for result.json in bash spares a Python start (seconds, under
/// emulation) that `cloud-init status --wait` would cost; if it never comes, the `result` section fails.
pub fn script() -> Script<CloudInitSection> {
    let polls = RESULT_WAIT.as_millis() / RESULT_POLL.as_millis();
    let poll = RESULT_POLL.as_secs_f64();
    let mut s = Script::new(&format!(
        "for _ in $(seq {polls}); do [ -e /run/cloud-init/result.json ] && break; sleep {poll}; done\n"
    ));
    s.section(CloudInitSection::Result, "cat /run/cloud-init/result.json");
    s.section(CloudInitSection::Status, "cat /run/cloud-init/status.json");
    s.section(
        CloudInitSection::Units,
        &format!(
            "for u in {}; do\n  state=$(systemctl show --property=ActiveState --value -- \"$u.service\")\n  printf '%s\\t%s\\n' \"$u\" \"$state\"\ndone",
            UNITS.join(" ")
        ),
    );
    s.section(CloudInitSection::Modules, "kiln_grep -a 'WARNING\\]: Running module .* failed' /var/log/cloud-init.log");
    s.section(CloudInitSection::ProvisionLog, "kiln_grep -a 'kiln: ' /var/log/cloud-init-output.log");
    s
}

fn json(probe: &CloudInitProbe, section: CloudInitSection) -> Result<Value> {
    serde_json::from_str(probe.get(section)?).with_context(|| format!("section {} is not JSON", section.name()))
}

/// Every way cloud-init can say something went wrong: errors in `result.json` and in each stage of
/// `status.json`, recoverable errors (≥ 23.4: deprecations and warnings, which make `cloud-init status`
/// say "degraded done"), a failed cloud-init unit, or a module logged as failed (22.4 records some module
/// failures only in its log and its unit's exit status).
pub fn errors(probe: &CloudInitProbe) -> Result<Vec<String>> {
    let mut errors = Vec::new();
    let result = json(probe, CloudInitSection::Result)?;
    errors.extend(result["v1"]["errors"].as_array().into_iter().flatten().map(|e| format!("result.json: {e}")));
    errors.extend(recoverable("result.json", &result["v1"]));
    let status = json(probe, CloudInitSection::Status)?;
    if let Some(stages) = status["v1"].as_object() {
        for (stage, body) in stages {
            for e in body["errors"].as_array().into_iter().flatten() {
                errors.push(format!("{stage}: {e}"));
            }
            errors.extend(recoverable(stage, body));
        }
    }
    for line in probe.get(CloudInitSection::Units)?.lines() {
        match line.split('\t').collect::<Vec<_>>().as_slice() {
            [unit, "failed"] => errors.push(format!("unit {unit} failed")),
            [_, _] => {}
            _ => bail!("section units: `{line}` is not `UNIT<TAB>ACTIVE STATE`"),
        }
    }
    for line in probe.get(CloudInitSection::Modules)?.lines() {
        if let Some(rest) = line.split("Running module ").nth(1) {
            errors.push(format!("module {} failed", rest.split_whitespace().next().unwrap_or("?")));
        }
    }
    errors.sort();
    errors.dedup();
    Ok(errors)
}

/// `recoverable_errors` (cloud-init ≥ 23.4): level (`DEPRECATED`, `WARNING`) → messages.
fn recoverable(place: &str, body: &Value) -> Vec<String> {
    let levels = body["recoverable_errors"].as_object().into_iter().flatten();
    levels
        .flat_map(|(level, messages)| {
            messages.as_array().into_iter().flatten().map(move |m| format!("{place}: {level}: {m}"))
        })
        .collect()
}

/// What the provisioning script printed: the step that failed (its trap's line; the first, if a
/// subshell's trap printed one too) and whether it printed its last line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provisioning {
    pub failed: Option<StepFailed>,
    pub complete: bool,
}

pub fn provisioning(probe: &CloudInitProbe) -> Result<Provisioning> {
    let log = probe.get(CloudInitSection::ProvisionLog)?;
    let mut failed = None;
    for line in log.lines() {
        if let Some(step) = StepFailed::parse(line)? {
            failed.get_or_insert(step);
        }
    }
    Ok(Provisioning { failed, complete: log.lines().any(|l| l.trim_end() == COMPLETE) })
}

#[cfg(test)]
mod tests {
    use super::super::protocol::marker;
    use super::super::protocol::testing::{assert_bash_syntax, check_names, run_bash, stubs};
    use super::*;

    #[test]
    fn wire_names_and_syntax() {
        check_names::<CloudInitSection>();
        assert_bash_syntax(&script().text());
    }

    /// The probe run against a stand-in /run and /var/log written as cloud-init 22.4 writes them after
    /// the `broken` scenario's boot (its provisioning fails in `tailscale: join the tailnet`).
    #[test]
    fn a_failed_boot_is_read_from_cloud_inits_files() {
        let root = tempfile::tempdir().unwrap();
        let dir = |p: &str| {
            let path = root.path().join(p);
            std::fs::create_dir_all(&path).unwrap();
            path
        };
        let run = dir("run/cloud-init");
        let log = dir("var/log");
        std::fs::write(
            run.join("result.json"),
            r#"{"v1": {"datasource": "DataSourceNoCloud [seed=/dev/vdb][dsmode=net]", "errors": ["('scripts_user', RuntimeError('Runparts: 1 failures (runcmd) in 1 attempted commands'))"]}}"#,
        )
        .unwrap();
        std::fs::write(
            run.join("status.json"),
            r#"{"v1": {"datasource": "nocloud", "init": {"errors": [], "finished": 12.5, "start": 10.1}, "modules-final": {"errors": ["('scripts_user', RuntimeError('Runparts: 1 failures (runcmd) in 1 attempted commands'))"], "finished": 40.0, "start": 13.0}, "stage": null}}"#,
        )
        .unwrap();
        std::fs::write(
            log.join("cloud-init.log"),
            "2024-11-30 16:01:02,003 - util.py[WARNING]: Running module scripts_user (<module 'cloudinit.config.cc_scripts_user'>) failed\n",
        )
        .unwrap();
        std::fs::write(
            log.join("cloud-init-output.log"),
            "kiln: step: prepare\nkiln: step: tailscale: join the tailnet\nbackend error: no such host\nkiln: provisioning FAILED in step: tailscale: join the tailnet (exit 1)\n",
        )
        .unwrap();
        let guest =
            stubs(&[("systemctl", "case \"$5\" in cloud-final.service) echo failed ;; *) echo active ;; esac")]);
        let text = script()
            .text()
            .replace("/run/cloud-init", &run.display().to_string())
            .replace("/var/log", &log.display().to_string());
        let (exit, stdout, stderr) = run_bash(&text, Some(guest.path()), b"");
        let probe = CloudInitProbe::parse(&stdout, exit, &stderr).unwrap_or_else(|e| panic!("{e:#}"));
        let found = errors(&probe).unwrap();
        assert!(found.contains(&"unit cloud-final failed".to_string()), "{found:?}");
        assert!(found.contains(&"module scripts_user failed".to_string()), "{found:?}");
        assert!(found.iter().any(|e| e.starts_with("result.json: ")), "{found:?}");
        assert!(found.iter().any(|e| e.starts_with("modules-final: ")), "{found:?}");
        let said = provisioning(&probe).unwrap();
        assert_eq!(said.failed.map(|f| f.step), Some("tailscale: join the tailnet".to_string()));
        assert!(!said.complete);

        // A clean boot: no module line, a complete script (grep finding no line is no error).
        std::fs::write(log.join("cloud-init.log"), "2024-11-30 16:01:02,003 - util.py[DEBUG]: all fine\n").unwrap();
        std::fs::write(log.join("cloud-init-output.log"), "kiln: step: prepare\nkiln: provisioning complete\n")
            .unwrap();
        std::fs::write(run.join("result.json"), r#"{"v1": {"errors": [], "recoverable_errors": {}}}"#).unwrap();
        std::fs::write(run.join("status.json"), r#"{"v1": {"init": {"errors": [], "recoverable_errors": {}}}}"#)
            .unwrap();
        let ok = stubs(&[("systemctl", "echo inactive")]);
        let (exit, stdout, stderr) = run_bash(&text, Some(ok.path()), b"");
        let probe = CloudInitProbe::parse(&stdout, exit, &stderr).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(errors(&probe).unwrap(), Vec::<String>::new());

        // cloud-init ≥ 23.4: a deprecation is a recoverable error ("degraded done"), and kiln counts it.
        std::fs::write(
            run.join("status.json"),
            r#"{"v1": {"init": {"errors": [], "recoverable_errors": {"DEPRECATED": ["Key 'x' is deprecated"]}}}}"#,
        )
        .unwrap();
        let (exit, stdout, stderr) = run_bash(&text, Some(ok.path()), b"");
        let probe = CloudInitProbe::parse(&stdout, exit, &stderr).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(errors(&probe).unwrap(), ["init: DEPRECATED: \"Key 'x' is deprecated\""]);
        std::fs::write(run.join("status.json"), r#"{"v1": {"init": {"errors": []}}}"#).unwrap();
        assert_eq!(provisioning(&probe).unwrap(), Provisioning { failed: None, complete: true });

        // No cloud-init-output.log at all: a harness error naming the section and grep's message.
        std::fs::remove_file(log.join("cloud-init-output.log")).unwrap();
        let (exit, stdout, stderr) = run_bash(&text, Some(ok.path()), b"");
        let error = format!("{:#}", CloudInitProbe::parse(&stdout, exit, &stderr).unwrap_err());
        assert!(error.contains("probe command for section kiln failed (exit 2): grep:"), "{error}");
        assert!(error.contains("cloud-init-output.log: No such file or directory"), "{error}");
    }

    #[test]
    fn garbled_json_or_units_are_harness_errors() {
        let capture: String = [
            (CloudInitSection::Result, "{\"v1\": {\"errors\": []}}"),
            (CloudInitSection::Status, "{}"),
            (CloudInitSection::Units, "cloud-init\tactive"),
            (CloudInitSection::Modules, ""),
            (CloudInitSection::ProvisionLog, ""),
        ]
        .iter()
        .map(|(section, text)| format!("{}\n{text}\n", marker(section.name())))
        .collect();
        let mut probe = CloudInitProbe::from_capture_without_status(&capture).unwrap();
        assert_eq!(errors(&probe).unwrap(), Vec::<String>::new());
        probe.set(CloudInitSection::Units, "cloud-init failed");
        assert!(errors(&probe).is_err());
        probe.set(CloudInitSection::Units, "");
        probe.set(CloudInitSection::Result, "");
        assert!(format!("{:#}", errors(&probe).unwrap_err()).contains("section result is not JSON"));
        probe.set(CloudInitSection::ProvisionLog, "kiln: provisioning FAILED in step: x (exit");
        assert!(provisioning(&probe).is_err());
    }
}
