//! cloud-init: each release's own validator on the whole user-data, as `cloud-init schema --config-file`
//! checks it; all inputs of a root in one Python process (tests/oracles/cloud-init-schema.py). debian-12
//! outputs go to Debian 12's cloud-init 22.4.2, debian-13 outputs to Debian 13's 25.1.4 (strict: a
//! deprecated key is an error), and Ubuntu outputs to that same 25.1.4 code with Ubuntu's own 25.1.4
//! schema (assets/cloud-init/), which only Ubuntu's packaging patches set apart from Debian's.

use kiln::model::Release;

use super::sandbox::{self, Mode, Root};
use super::{Prepared, Verdicts, distinct, per_case};
use crate::support::repo_root;

pub fn check(cases: &[Prepared]) -> Verdicts {
    let (inputs, of_case) = distinct(cases.iter().map(|c| Some((c.release.name(), c.data.text.clone()))).collect());
    let inputs: Vec<(Release, String)> = inputs
        .into_iter()
        .map(|(name, text)| (Release::from_name(name).expect("a release's own name"), text))
        .collect();
    let verdicts: Vec<Vec<String>> = validate(&inputs)
        .into_iter()
        .map(|verdict| verdict.err().map(|e| format!("cloud-init schema rejects it: {e}")).into_iter().collect())
        .collect();
    per_case(&of_case, &verdicts)
}

/// The root whose cloud-init judges a release's output, and the schema file it must use instead of its
/// own (Ubuntu's, from assets/cloud-init/), if any.
fn judge_of(release: Release) -> (Root, Option<&'static str>) {
    match release {
        Release::Debian12 => (Root::Debian12, None),
        Release::Debian13 => (Root::Debian13, None),
        Release::Ubuntu2404 | Release::Ubuntu2204 => {
            (Root::Debian13, Some(kiln::consumers::cloud_init_schema::schema(release).file))
        }
    }
}

/// Each text through its release's validator: `Err(what it said)` when it refuses it.
pub fn validate(inputs: &[(Release, String)]) -> Vec<Result<(), String>> {
    sandbox::preflight();
    let mut verdicts: Vec<Option<Result<(), String>>> = vec![None; inputs.len()];
    for root in [Root::Debian12, Root::Debian13] {
        let mine: Vec<usize> = (0..inputs.len()).filter(|&i| judge_of(inputs[i].0).0 == root).collect();
        let outputs = sandbox::run_in(root, "cloud-init-schema.py", Mode::Once, &mine, |input, &i| {
            let (release, text) = &inputs[i];
            input.write("user-data", text);
            if let (_, Some(file)) = judge_of(*release) {
                let schema = std::fs::read(repo_root().join("assets/cloud-init").join(file)).expect("vendored schema");
                input.write("schema.json", schema);
            }
        });
        for (&i, out) in mine.iter().zip(&outputs) {
            let verdict = out.json("schema.json");
            verdicts[i] = Some(match verdict["ok"].as_bool() {
                Some(true) => Ok(()),
                _ => Err(verdict["errors"].as_str().unwrap_or("(no message)").to_string()),
            });
        }
    }
    verdicts.into_iter().map(|v| v.expect("every input went to a root")).collect()
}
