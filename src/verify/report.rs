//! Printing verdicts: a table for people (stderr), JUnit XML for CI, and JSON for other tools.

use std::fmt::Write as _;

use super::Check;

/// A scenario's results, grouped by phase ("first boot", "after reboot", "from outside").
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    pub scenario: String,
    pub phases: Vec<(String, Vec<Check>)>,
    /// Timings, e.g. ("boot to cloud-init done", seconds).
    pub timings: Vec<(String, f64)>,
    pub accel: String,
    /// Things the harness did that a reader should know (a boot retried after a TCG hang).
    pub notes: Vec<String>,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.phases.iter().all(|(_, checks)| checks.iter().all(|c| c.passed))
    }

    pub fn counts(&self) -> (usize, usize) {
        let all = self.phases.iter().flat_map(|(_, c)| c.iter());
        let (pass, fail): (Vec<&Check>, Vec<&Check>) = all.partition(|c| c.passed);
        (pass.len(), fail.len())
    }
}

pub fn table(verdict: &Verdict) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "scenario {} ({})", verdict.scenario, verdict.accel);
    for (phase, checks) in &verdict.phases {
        let _ = writeln!(out, "  {phase}");
        for check in checks {
            let mark = if check.passed { "ok  " } else { "FAIL" };
            let _ = writeln!(out, "    {mark} {}", check.name);
            if !check.passed {
                let _ = writeln!(out, "         expected: {}", check.expected);
                let _ = writeln!(out, "         observed: {}", check.observed);
            }
        }
    }
    for note in &verdict.notes {
        let _ = writeln!(out, "  note: {note}");
    }
    for (what, seconds) in &verdict.timings {
        let _ = writeln!(out, "  {what}: {seconds:.1} s");
    }
    let (pass, fail) = verdict.counts();
    let _ = writeln!(out, "{pass} passed, {fail} failed");
    out
}

fn xml_escape(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&apos;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// The verdict as one JSON document (`kiln test --format json`): every check with what was expected and
/// observed, grouped by phase, the counts, the timings in seconds and the harness's notes.
pub fn json(verdict: &Verdict) -> serde_json::Value {
    let (passed, failed) = verdict.counts();
    let phases: Vec<serde_json::Value> = verdict
        .phases
        .iter()
        .map(|(phase, checks)| {
            let checks: Vec<serde_json::Value> = checks
                .iter()
                .map(|c| {
                    serde_json::json!({"name": c.name, "passed": c.passed, "expected": c.expected, "observed": c.observed})
                })
                .collect();
            serde_json::json!({"phase": phase, "checks": checks})
        })
        .collect();
    let timings: serde_json::Map<String, serde_json::Value> =
        verdict.timings.iter().map(|(name, seconds)| (name.clone(), serde_json::json!(seconds))).collect();
    serde_json::json!({
        "scenario": verdict.scenario,
        "accelerator": verdict.accel,
        "passed": passed,
        "failed": failed,
        "phases": phases,
        "timings_seconds": timings,
        "notes": verdict.notes,
    })
}

pub fn junit(verdicts: &[Verdict]) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n");
    for verdict in verdicts {
        let (pass, fail) = verdict.counts();
        let total_time: f64 = verdict.timings.iter().map(|(_, s)| s).fold(0.0, |a, b| a.max(*b));
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{fail}\" time=\"{total_time:.1}\">",
            xml_escape(&verdict.scenario),
            pass + fail
        );
        for (phase, checks) in &verdict.phases {
            for check in checks {
                let _ = write!(
                    out,
                    "    <testcase classname=\"{}.{}\" name=\"{}\"",
                    xml_escape(&verdict.scenario),
                    xml_escape(phase),
                    xml_escape(&check.name)
                );
                if check.passed {
                    out.push_str("/>\n");
                } else {
                    let _ = writeln!(
                        out,
                        ">\n      <failure message=\"expected {}, observed {}\"/>\n    </testcase>",
                        xml_escape(&check.expected),
                        xml_escape(&check.observed)
                    );
                }
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_every_check_with_expected_and_observed() {
        let verdict = Verdict {
            scenario: "app".into(),
            phases: vec![(
                "first boot, inside".into(),
                vec![Check::new("a", "x", "x", true), Check::new("b <&>", "on", "off", false)],
            )],
            timings: vec![("boot".into(), 12.5)],
            accel: "TCG".into(),
            notes: vec!["retried".into()],
        };
        let value = json(&verdict);
        assert_eq!((value["passed"].as_u64(), value["failed"].as_u64()), (Some(1), Some(1)));
        let check = &value["phases"][0]["checks"][1];
        assert_eq!(check["name"], "b <&>");
        assert_eq!(
            (check["passed"].as_bool(), check["expected"].as_str(), check["observed"].as_str()),
            (Some(false), Some("on"), Some("off"))
        );
        assert_eq!(value["timings_seconds"]["boot"], 12.5);
        assert_eq!(value["notes"][0], "retried");
    }

    #[test]
    fn junit_counts_and_escapes() {
        let verdict = Verdict {
            scenario: "seed".into(),
            phases: vec![(
                "first boot".into(),
                vec![Check::new("a", "x", "x", true), Check::new("b <&>", "1", "2\u{1}", false)],
            )],
            timings: vec![("verdict".into(), 12.0)],
            accel: "TCG".into(),
            notes: Vec::new(),
        };
        let xml = junit(std::slice::from_ref(&verdict));
        assert!(xml.contains("tests=\"2\" failures=\"1\""));
        assert!(xml.contains("name=\"b &lt;&amp;&gt;\""));
        assert!(!xml.contains('\u{1}'));
        assert!(!verdict.passed());
        assert!(table(&verdict).contains("1 passed, 1 failed"));
    }
}
