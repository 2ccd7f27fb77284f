//! SARIF 2.1.0 (OASIS) for GitHub code scanning and other SARIF readers: one run of the tool `kiln`, every
//! diagnostic code a rule (its one-line summary, and its long explanation from `kiln explain`), every
//! diagnostic a result at its file, line and column. `tests/kiln/sarif.rs` validates the output against the
//! SARIF 2.1.0 JSON Schema vendored in `tests/reference/sarif/`.

use serde_json::{Value, json};

use crate::catalog::Code;
use crate::diag::{Report, Severity};

/// Where the SARIF 2.1.0 schema is published (the `$schema` a SARIF file names).
pub const SCHEMA_URI: &str =
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json";

/// One file's diagnostics, or the file's failure to load at all.
pub enum FileReport<'a> {
    Checked { file: &'a str, report: &'a Report },
    Unreadable { file: &'a str, message: String },
}

/// The SARIF log of one `kiln check` over `files`.
pub fn log(files: &[FileReport]) -> Value {
    let rules: Vec<Value> = Code::ALL.iter().map(|code| rule(*code)).collect();
    let mut results = Vec::new();
    for file in files {
        match file {
            FileReport::Checked { file, report } => results.extend(report.sorted().into_iter().map(|d| {
                let mut region = json!({});
                if let Some(span) = d.span {
                    region = json!({
                        "startLine": span.line,
                        "startColumn": span.column,
                        "endLine": span.end_line,
                        "endColumn": span.end_column,
                    });
                }
                let mut text = format!("{} (at {})", d.message, d.path);
                if let Some(help) = &d.help {
                    text.push_str(&format!("; help: {help}"));
                }
                result(d.code, level(d.severity), text, file, region)
            })),
            FileReport::Unreadable { file, message } => {
                results.push(result(Code::FileUnreadable, "error", message.clone(), file, json!({})))
            }
        }
    }
    json!({
        "$schema": SCHEMA_URI,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "kiln",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    })
}

fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

fn rule(code: Code) -> Value {
    let explanation = crate::explain::explanation(code);
    json!({
        "id": code.name(),
        "shortDescription": {"text": code.summary()},
        "fullDescription": {"text": explanation.meaning},
        "help": {"text": format!("{}\n\nRun `kiln explain {}` for a profile that raises it and its fix.", explanation.why, code.name())},
    })
}

fn result(code: Code, level: &str, text: String, file: &str, region: Value) -> Value {
    let mut location = json!({"physicalLocation": {"artifactLocation": {"uri": uri(file)}}});
    if region.as_object().is_some_and(|r| !r.is_empty()) {
        location["physicalLocation"]["region"] = region;
    }
    let index = Code::ALL.iter().position(|c| *c == code).expect("every code is in the catalog");
    json!({
        "ruleId": code.name(),
        "ruleIndex": index,
        "level": level,
        "message": {"text": text},
        "locations": [location],
    })
}

/// A relative reference for a path as the user gave it (RFC 3986: `%`, spaces and other characters outside
/// a path segment's set percent-encoded; `/` kept).
fn uri(path: &str) -> String {
    let mut out = String::new();
    for byte in path.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_relative_references() {
        assert_eq!(uri("profiles/app.yaml"), "profiles/app.yaml");
        assert_eq!(uri("my profiles/100%.yaml"), "my%20profiles/100%25.yaml");
    }
}
