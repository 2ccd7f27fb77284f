//! Outside oracles for the rendered cloud-config: both cloud-init JSON schemas (jsonschema crate), the
//! real `cloud-init schema` validator of Debian 12's package (in the oracle root, see oracles/), and
//! PyYAML (YAML 1.1, what cloud-init reads with) reading back exactly the values kiln meant. These run on
//! every stage of every golden output and example profile.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use kiln::lower::Stage;

use crate::support::{example_profiles, golden_cases, reference_dir, render_stage, require_tool};

/// Every rendered output, in each stage: (name, user-data text).
fn outputs() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let profiles = golden_cases().into_iter().map(|c| c.join("profile.yaml")).chain(example_profiles());
    for path in profiles {
        for stage in [Stage::Full, Stage::Bake, Stage::Boot] {
            if let (_, Some((text, _))) = render_stage(&path, stage) {
                out.push((format!("{} ({})", path.display(), stage.name()), text));
            }
        }
    }
    assert!(out.len() >= 5, "too few renderable profiles: {}", out.len());
    out
}

fn schema(name: &str) -> Value {
    let path = reference_dir().join("cloud-init").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).expect("schema readable")).expect("schema is JSON")
}

#[test]
fn outputs_validate_against_both_cloud_init_schemas() {
    for schema_name in ["schema-cloud-config-v1-22.4.2-debian12.json", "schema-cloud-config-v1-upstream-26.2.json"] {
        let validator = jsonschema::draft4::new(&schema(schema_name)).expect("schema compiles");
        for (name, text) in outputs() {
            let value: Value = serde_saphyr::from_str(&text).expect("output parses as YAML");
            let errors: Vec<String> =
                validator.iter_errors(&value).map(|e| format!("{} at {}", e, e.instance_path())).collect();
            assert!(errors.is_empty(), "{name} against {schema_name}:\n{}", errors.join("\n"));
        }
    }
}

#[test]
fn schemas_catch_a_broken_config() {
    // The oracle itself must be able to fail: an unquoted mode and a misspelled key are caught.
    let validator = jsonschema::draft4::new(&schema("schema-cloud-config-v1-upstream-26.2.json")).unwrap();
    let bad: Value = serde_json::json!({"write_files": [{"path": "/x", "permissions": 420}], "packagez": []});
    assert!(validator.iter_errors(&bad).count() >= 2);
}

/// Writes each text to its own file in a temporary directory, for the outside validators.
pub fn write_texts<'a>(texts: impl Iterator<Item = &'a str>) -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let paths = texts
        .enumerate()
        .map(|(i, text)| {
            let path = dir.path().join(format!("{i}.yaml"));
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect();
    (dir, paths)
}

/// Every stage of every output through the release's own validator (cloud-init 22.4.2 in the oracle
/// root, batched: see oracles/cloud_init.rs).
#[test]
fn outputs_pass_the_real_cloud_init_validator() {
    let outputs = outputs();
    let texts: Vec<String> = outputs.iter().map(|(_, text)| text.clone()).collect();
    let rejected: Vec<String> = outputs
        .iter()
        .zip(crate::oracles::cloud_init_schema(&texts))
        .filter_map(|((name, _), verdict)| verdict.err().map(|e| format!("cloud-init schema rejected {name}: {e}")))
        .collect();
    assert!(rejected.is_empty(), "{}", rejected.join("\n"));
}

#[test]
fn the_real_validator_rejects_a_broken_config() {
    let verdicts = crate::oracles::cloud_init_schema(&["#cloud-config\nwrite_files: [{permissions: 420}]\n".into()]);
    assert!(verdicts[0].is_err(), "cloud-init accepted a config without a path and with an integer mode");
}

/// Reads YAML files with PyYAML's safe loader (YAML 1.1) and prints them as one JSON list.
pub fn pyyaml_load(paths: &[PathBuf]) -> Vec<Value> {
    let script =
        "import json, sys, yaml\nprint(json.dumps([yaml.safe_load(open(p, encoding='utf-8')) for p in sys.argv[1:]]))";
    let result =
        Command::new(require_tool("python3")).arg("-c").arg(script).args(paths).output().expect("python3 runs");
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        !stderr.contains("No module named 'yaml'"),
        "PyYAML is not installed for {}: `scripts/test-all` installs it (pip package pyyaml)",
        require_tool("python3").display()
    );
    assert!(result.status.success(), "PyYAML failed: {stderr}");
    serde_json::from_slice(&result.stdout).expect("JSON from python")
}

#[test]
fn pyyaml_reads_back_exactly_the_intended_values() {
    let outputs = outputs();
    let (_dir, paths) = write_texts(outputs.iter().map(|(_, t)| t.as_str()));
    let read_back = pyyaml_load(&paths);
    for ((name, text), python) in outputs.iter().zip(read_back) {
        let ours: Value = serde_saphyr::from_str(text).unwrap();
        assert_eq!(python, ours, "{name}: PyYAML reads something else than serde-saphyr");
        // Modes must come back as octal strings, never as YAML 1.1 integers.
        for file in python["write_files"].as_array().unwrap() {
            let mode = file["permissions"].as_str().unwrap_or_else(|| panic!("{name}: mode not a string: {file}"));
            assert!(mode.len() == 4 && mode.starts_with('0'), "{name}: {mode}");
        }
    }
}
