//! cloud-init: the release's own validator (cloud-init 22.4.2, Debian 12) on the whole user-data, as
//! `cloud-init schema --config-file` checks it; all inputs in one Python process (tests/oracles/schema.py).

use super::sandbox::{self, Mode};
use super::{Prepared, Verdicts, distinct, per_case};

pub fn check(cases: &[Prepared]) -> Verdicts {
    let (texts, of_case) = distinct(cases.iter().map(|c| Some(c.data.text.clone())).collect());
    let outputs = sandbox::run("schema.py", Mode::Once, &texts, |input, text| input.write("user-data", text));
    let verdicts: Vec<Vec<String>> = outputs
        .iter()
        .map(|out| {
            let verdict = out.json("schema.json");
            match verdict["ok"].as_bool() {
                Some(true) => Vec::new(),
                _ => vec![format!("cloud-init schema rejects it: {}", verdict["errors"].as_str().unwrap_or_default())],
            }
        })
        .collect();
    per_case(&of_case, &verdicts)
}
