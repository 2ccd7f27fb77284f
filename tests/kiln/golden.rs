//! Data-driven golden cases: `tests/data/<case>/profile.yaml` and its expected cloud-config and/or
//! diagnostics. Regenerate with `KILN_BLESS=1 cargo test --test kiln golden` and review the diff.

use std::path::Path;

use kiln::diag::render_human;
use kiln::lower::Stage;

use crate::support::{TEST_TAILSCALE_KEY, TEST_TUNNEL_TOKEN, example_profiles, golden_cases, render, render_stage};

fn check(expected_path: &Path, actual: Option<&str>) -> Result<(), String> {
    let bless = std::env::var_os("KILN_BLESS").is_some();
    let expected = std::fs::read_to_string(expected_path).ok();
    if bless {
        match actual {
            Some(text) => std::fs::write(expected_path, text).map_err(|e| e.to_string())?,
            None if expected.is_some() => std::fs::remove_file(expected_path).map_err(|e| e.to_string())?,
            None => {}
        }
        return Ok(());
    }
    match (expected.as_deref(), actual) {
        (Some(e), Some(a)) if e == a => Ok(()),
        (None, None) => Ok(()),
        (e, a) => Err(format!(
            "{} differs (KILN_BLESS=1 regenerates it)\n--- expected\n{}\n--- actual\n{}",
            expected_path.display(),
            e.unwrap_or("<no file>"),
            a.unwrap_or("<nothing>")
        )),
    }
}

#[test]
fn golden_cases_match() {
    let cases = golden_cases();
    assert!(cases.len() >= 15, "expected the golden cases under tests/data, found {}", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let (loaded, rendered) = render(&case.join("profile.yaml"));
        let diagnostics = (!loaded.report.diagnostics.is_empty())
            .then(|| render_human(&loaded.report, "profile.yaml", &loaded.source));
        let outcomes = [
            check(&case.join("expected.diagnostics"), diagnostics.as_deref()),
            check(&case.join("expected.cloud-config"), rendered.as_ref().map(|(text, _)| text.as_str())),
            check(&case.join("expected.kamal.yml"), kamal(&case.join("profile.yaml")).as_deref()),
        ];
        failures.extend(outcomes.into_iter().filter_map(Result::err));
        // A fleet: one golden per host, as `kiln render --host NAME` prints it.
        for (host, text) in crate::support::render_fleet(&loaded) {
            failures.extend(check(&case.join(format!("expected.{host}.cloud-config")), Some(&text)).err());
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// `kiln kamal`'s YAML for a valid profile it applies to (one with Docker and a VPN), validated as the
/// command validates it.
fn kamal(profile: &Path) -> Option<String> {
    let members = kiln::pipeline::load(profile).ok()?.validated_all(false).ok()?;
    let models: Vec<&kiln::model::Model> = members.iter().map(|m| &m.model).collect();
    let config = kiln::kamal::fleet_config(&models).ok()?;
    let yaml = kiln::kamal::render(&config, "profile.yaml");
    kiln::kamal::validate(&yaml, &config).expect("kiln kamal's output reads back as meant");
    Some(yaml)
}

#[test]
fn rendering_is_deterministic() {
    for case in golden_cases() {
        let first = render(&case.join("profile.yaml")).1.map(|r| r.0);
        let second = render(&case.join("profile.yaml")).1.map(|r| r.0);
        assert_eq!(first, second, "{}", case.display());
    }
}

/// The cases whose bake and boot stages are kept as goldens too (`expected.<stage>.cloud-config`).
const STAGED_CASES: &[&str] =
    &["docker-ce-mirrors", "files-and-templates", "minimal", "seed-host", "wireguard-secret-key"];

#[test]
fn stage_goldens_match() {
    let mut failures = Vec::new();
    for case in STAGED_CASES {
        let dir = crate::support::data_dir().join(case);
        for stage in [Stage::Bake, Stage::Boot] {
            let (_, rendered) = render_stage(&dir.join("profile.yaml"), stage);
            assert!(rendered.is_some(), "{case} renders");
            let expected = dir.join(format!("expected.{}.cloud-config", stage.name()));
            if let Err(e) = check(&expected, rendered.as_ref().map(|(text, _)| text.as_str())) {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Parses the rendered YAML (the golden tests already prove it is what cloud-init reads).
fn yaml(text: &str) -> serde_json::Value {
    serde_saphyr::from_str(text).expect("rendered user-data parses")
}

fn file_paths(config: &serde_json::Value) -> Vec<String> {
    config["write_files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap().to_string()).collect()
}

fn step_names(config: &serde_json::Value) -> Vec<String> {
    let files = config["write_files"].as_array().unwrap();
    let script = files.iter().find(|f| f["path"].as_str().unwrap().starts_with(kiln::lower::PROVISION_PATH)).unwrap();
    script["content"].as_str().unwrap().lines().filter_map(|l| l.strip_prefix("step ")).map(str::to_string).collect()
}

/// Splitting loses nothing and duplicates nothing: every file and step of the single-shot user-data is
/// in exactly one of bake and boot (the provisioning script aside: each stage has its own), and the
/// secrets are in the boot stage only.
#[test]
fn bake_and_boot_partition_the_full_user_data() {
    let mut checked = 0;
    let profiles = golden_cases().into_iter().map(|c| c.join("profile.yaml")).chain(example_profiles());
    for case in profiles {
        let path = case.clone();
        let (_, Some((full, _))) = render_stage(&path, Stage::Full) else { continue };
        let (bake, boot) =
            (render_stage(&path, Stage::Bake).1.unwrap().0, render_stage(&path, Stage::Boot).1.unwrap().0);
        let (f, b, o) = (yaml(&full), yaml(&bake), yaml(&boot));
        let script = |p: &String| p.starts_with(kiln::lower::PROVISION_PATH);
        for path in file_paths(&f).iter().filter(|p| !script(p)) {
            let places = [&b, &o].iter().filter(|c| file_paths(c).contains(path)).count();
            assert_eq!(places, 1, "{}: {path} is in {places} stages", case.display());
        }
        let full_steps = step_names(&f);
        let split: Vec<String> = step_names(&b).into_iter().chain(step_names(&o)).filter(|s| s != "prepare").collect();
        for step in full_steps.iter().filter(|s| *s != "prepare") {
            assert_eq!(split.iter().filter(|s| *s == step).count(), 1, "{}: step {step}", case.display());
        }
        for secret in [TEST_TUNNEL_TOKEN, TEST_TAILSCALE_KEY] {
            assert!(!bake.contains(secret), "{}: the bake stage holds a secret", case.display());
            assert_eq!(full.contains(secret), boot.contains(secret), "{}: boot stage secrets", case.display());
        }
        assert!(o.get("packages").is_none() && o["package_update"] == false, "{}", case.display());
        checked += 1;
    }
    assert!(checked >= 7, "only {checked} renderable profiles");
}

/// The bake stage does not depend on secrets at all: rendered with placeholders (as `kiln bake` and
/// `kiln render --stage bake` do, needing no credentials) it is byte-identical to a real rendering.
#[test]
fn the_bake_stage_is_the_same_without_secrets() {
    for case in golden_cases() {
        let loaded = kiln::pipeline::load(&case.join("profile.yaml")).unwrap();
        let Some(model) = loaded.model.filter(|_| !loaded.report.has_errors()) else { continue };
        let real = kiln::secrets::resolve(&model, Some(&crate::support::TestSecrets)).unwrap();
        let redacted = kiln::secrets::resolve(&model, None).unwrap();
        assert_eq!(
            kiln::pipeline::user_data(&model, &real, Stage::Bake).unwrap(),
            kiln::pipeline::user_data(&model, &redacted, Stage::Bake).unwrap(),
            "{}",
            case.display()
        );
    }
}

/// Hosts that differ only in name share one golden image: the bake stage names no host.
#[test]
fn the_bake_stage_is_the_same_for_every_host_name() {
    let case = crate::support::data_dir().join("seed-host");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    std::fs::copy(case.join("keys/deploy.pub"), dir.path().join("keys/deploy.pub")).unwrap();
    let text = std::fs::read_to_string(case.join("profile.yaml")).unwrap();
    assert!(text.contains("hostname: app-1"));
    let renamed = dir.path().join("profile.yaml");
    std::fs::write(&renamed, text.replace("hostname: app-1", "hostname: app-2")).unwrap();
    let stage = |path: &Path, stage| render_stage(path, stage).1.unwrap().0;
    let original = case.join("profile.yaml");
    assert_eq!(stage(&original, Stage::Bake), stage(&renamed, Stage::Bake));
    // The control: the boot stage does carry the name.
    assert_ne!(stage(&original, Stage::Boot), stage(&renamed, Stage::Boot));
    assert!(!stage(&original, Stage::Bake).contains("app-1"));
}
