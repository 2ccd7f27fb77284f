//! Outside oracles for the rendered cloud-config: its release's cloud-init JSON schema (the file kiln
//! embeds, from assets/cloud-init/) and upstream's current one (jsonschema crate), the real `cloud-init
//! schema` validator of its release (Debian 12's 22.4.2 or Debian 13's 25.1.4, in the oracle roots, see
//! oracles/; Ubuntu's schema under 25.1.4's code), and PyYAML (YAML 1.1, what cloud-init reads with)
//! reading back exactly the values kiln meant. These run on every stage of every golden output and
//! example profile.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use kiln::consumers::cloud_init_schema;
use kiln::lower::Stage;
use kiln::model::Release;

use crate::support::{example_profiles, golden_cases, reference_dir, render_stage, repo_root, require_tool};

/// One rendered output: its name (profile and stage), its release, its user-data text, and the JSON
/// value of the typed config it was emitted from (what kiln's own output validation judges).
struct Output {
    name: String,
    release: Release,
    text: String,
    typed: Value,
}

/// Every rendered output, in each stage.
fn outputs() -> Vec<Output> {
    let mut out = Vec::new();
    let profiles = golden_cases().into_iter().map(|c| c.join("profile.yaml")).chain(example_profiles());
    for path in profiles {
        for stage in [Stage::Full, Stage::Bake, Stage::Boot] {
            if let (loaded, Some((text, secrets))) = render_stage(&path, stage) {
                let model = loaded.model.as_ref().expect("a rendered profile has a model");
                let typed = serde_json::to_value(kiln::lower::lower_stage(model, &secrets, stage)).unwrap();
                let name = format!("{} ({})", path.display(), stage.name());
                out.push(Output { name, release: model.host.release, text, typed });
            }
        }
    }
    assert!(out.len() >= 5, "too few renderable profiles: {}", out.len());
    for release in [Release::Debian12, Release::Debian13, Release::Ubuntu2404, Release::Ubuntu2204] {
        assert!(out.iter().any(|o| o.release == release), "no rendered output for {}", release.name());
    }
    out
}

fn read_schema(path: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("schema readable")).expect("schema is JSON")
}

/// Upstream's current schema (tests/reference/): stricter than the releases' (misspelled top-level keys).
const UPSTREAM: &str = "schema-cloud-config-v1-upstream-26.2.json";

fn upstream_schema() -> Value {
    read_schema(&reference_dir().join("cloud-init").join(UPSTREAM))
}

/// The schema kiln embeds for a release, read from the file as committed.
fn release_schema(release: Release) -> Value {
    read_schema(&repo_root().join("assets/cloud-init").join(cloud_init_schema::schema(release).file))
}

#[test]
fn outputs_validate_against_their_releases_schema_and_upstreams() {
    let upstream = jsonschema::draft4::new(&upstream_schema()).expect("schema compiles");
    let mut own = std::collections::BTreeMap::new();
    for output in outputs() {
        let value: Value = serde_saphyr::from_str(&output.text).expect("output parses as YAML");
        let release = output.release;
        let own = own
            .entry(release.name())
            .or_insert_with(|| jsonschema::draft4::new(&release_schema(release)).expect("schema compiles"));
        for (schema_name, validator) in [(cloud_init_schema::schema(release).file, &*own), (UPSTREAM, &upstream)] {
            let errors: Vec<String> =
                validator.iter_errors(&value).map(|e| format!("{} at {}", e, e.instance_path())).collect();
            assert!(errors.is_empty(), "{} against {schema_name}:\n{}", output.name, errors.join("\n"));
        }
    }
}

/// kiln validates the typed config's JSON value, not the text read back (that would cost a YAML parse per
/// render): they must be the same value. (PyYAML reads the text back as this too: the test below.)
#[test]
fn what_kiln_validates_is_what_the_text_reads_back_as() {
    for output in outputs() {
        let read: Value = serde_saphyr::from_str(&output.text).expect("output parses as YAML");
        assert_eq!(output.typed, read, "{}: the emitted text reads back as something else", output.name);
    }
}

#[test]
fn schemas_catch_a_broken_config() {
    // The oracle itself must be able to fail: an unquoted mode and a misspelled key are caught.
    let validator = jsonschema::draft4::new(&upstream_schema()).unwrap();
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

/// Every stage of every output through its release's own validator (cloud-init 22.4.2 or 25.1.4 in the
/// oracle roots, batched: see oracles/cloud_init.rs).
#[test]
fn outputs_pass_the_real_cloud_init_validator() {
    let outputs = outputs();
    let inputs: Vec<(Release, String)> = outputs.iter().map(|o| (o.release, o.text.clone())).collect();
    let started = std::time::Instant::now();
    let verdicts = crate::oracles::cloud_init_schema(&inputs);
    eprintln!("cloud-init's validators judged {} outputs in {:.1} s", inputs.len(), started.elapsed().as_secs_f64());
    let rejected: Vec<String> = outputs
        .iter()
        .zip(verdicts)
        .filter_map(|(o, verdict)| {
            verdict.err().map(|e| format!("{}'s cloud-init schema rejected {}: {e}", o.release.name(), o.name))
        })
        .collect();
    assert!(rejected.is_empty(), "{}", rejected.join("\n"));
}

#[test]
fn each_real_validator_rejects_a_broken_config_and_a_deprecated_key() {
    let broken = "#cloud-config\nwrite_files: [{permissions: 420}]\n";
    // `apt_update` is deprecated since 22.2 (use `package_update`): `cloud-init schema` only prints that
    // and exits 0, the boot logs it; the oracle counts it as a failure.
    let deprecated = "#cloud-config\napt_update: true\n";
    let mut inputs = Vec::new();
    for release in [Release::Debian12, Release::Debian13, Release::Ubuntu2404, Release::Ubuntu2204] {
        inputs.push((release, broken.to_string()));
        inputs.push((release, deprecated.to_string()));
    }
    for ((release, text), verdict) in inputs.iter().zip(crate::oracles::cloud_init_schema(&inputs)) {
        let said = verdict.expect_err(&format!("{}'s cloud-init accepted {text:?}", release.name()));
        if text.contains("apt_update") {
            assert!(said.contains("deprecations: apt_update: "), "{}: {said}", release.name());
        }
    }
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
    let (_dir, paths) = write_texts(outputs.iter().map(|o| o.text.as_str()));
    let read_back = pyyaml_load(&paths);
    for (Output { name, text, .. }, python) in outputs.iter().zip(read_back) {
        let ours: Value = serde_saphyr::from_str(text).unwrap();
        assert_eq!(python, ours, "{name}: PyYAML reads something else than serde-saphyr");
        // Modes must come back as octal strings, never as YAML 1.1 integers.
        for file in python["write_files"].as_array().unwrap() {
            let mode = file["permissions"].as_str().unwrap_or_else(|| panic!("{name}: mode not a string: {file}"));
            assert!(mode.len() == 4 && mode.starts_with('0'), "{name}: {mode}");
        }
    }
}
