//! Data-driven golden cases: `tests/data/<case>/profile.yaml` and its expected cloud-config and/or
//! diagnostics. Regenerate with `KILN_BLESS=1 cargo test --test kiln golden` and review the diff.

use std::path::Path;

use kiln::diag::render_human;

use crate::support::{golden_cases, render};

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
        ];
        failures.extend(outcomes.into_iter().filter_map(Result::err));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn rendering_is_deterministic() {
    for case in golden_cases() {
        let first = render(&case.join("profile.yaml")).1.map(|r| r.0);
        let second = render(&case.join("profile.yaml")).1.map(|r| r.0);
        assert_eq!(first, second, "{}", case.display());
    }
}
