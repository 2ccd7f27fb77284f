//! cloud-init: the release's own validator (cloud-init 22.4.2, Debian 12) on the whole user-data, as
//! `cloud-init schema --config-file` checks it; all inputs in one Python process
//! (tests/oracles/cloud-init-schema.py).

use super::sandbox::{self, Mode};
use super::{Prepared, Verdicts, distinct, per_case};

pub fn check(cases: &[Prepared]) -> Verdicts {
    let (texts, of_case) = distinct(cases.iter().map(|c| Some(c.data.text.clone())).collect());
    let verdicts: Vec<Vec<String>> = validate(&texts)
        .into_iter()
        .map(|verdict| verdict.err().map(|e| format!("cloud-init schema rejects it: {e}")).into_iter().collect())
        .collect();
    per_case(&of_case, &verdicts)
}

/// Each text through the release's validator: `Err(what it said)` when it refuses it.
pub fn validate(texts: &[String]) -> Vec<Result<(), String>> {
    sandbox::preflight();
    let outputs = sandbox::run("cloud-init-schema.py", Mode::Once, texts, |input, text| input.write("user-data", text));
    outputs
        .iter()
        .map(|out| {
            let verdict = out.json("schema.json");
            match verdict["ok"].as_bool() {
                Some(true) => Ok(()),
                _ => Err(verdict["errors"].as_str().unwrap_or("(no message)").to_string()),
            }
        })
        .collect()
}
