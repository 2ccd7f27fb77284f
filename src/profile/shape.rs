//! Structural check: walks the profile's JSON Schema over the spanned YAML tree, reporting every shape
//! problem (unknown keys with "did you mean", missing keys, wrong types) and producing typed JSON.
//!
//! Walking the schema generated from `v1.rs` (rather than hand-written rules) keeps the editor schema, the
//! checker and deserialization in agreement by construction.

use serde_json::{Map, Value};

use super::source_map::{SourceMap, child_path, index_path};
use super::yaml::{Node, NodeKind};
use crate::catalog::Code;
use crate::diag::{Diagnostic, Report};

/// The schema title that marks a secret reference: a scalar there is a literal secret, never echoed.
const SECRET_TITLE_PREFIX: &str = "a secret reference";

pub struct Checker<'a> {
    root: &'a Value,
    pub report: Report,
    pub sources: SourceMap,
}

impl<'a> Checker<'a> {
    pub fn new(root: &'a Value) -> Self {
        Checker { root, report: Report::default(), sources: SourceMap::default() }
    }

    /// Checks `node` against `schema`; returns the typed value when the node fits.
    pub fn check(&mut self, node: &Node, schema: &'a Value, path: &str) -> Option<Value> {
        self.sources.record_value(path, node.span);
        if let Some(start) = node.text_start {
            self.sources.record_text(path, start);
        }
        let schema = self.resolve(schema);
        if let Some(branches) = schema.get("anyOf").or_else(|| schema.get("oneOf")).and_then(Value::as_array) {
            return self.check_alternatives(node, schema, branches, path);
        }
        let types = type_names(schema);
        if node.is_null() && types.contains(&"null") {
            return Some(Value::Null);
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
            return self.check_enum(node, allowed, path);
        }
        match (&node.kind, types.first().copied()) {
            (NodeKind::Map(entries), Some("object")) => self.check_object(node, entries, schema, path),
            (NodeKind::Seq(items), Some("array")) => {
                let item_schema = schema.get("items").unwrap_or(&Value::Bool(true));
                let mut values = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    values.push(self.check(item, item_schema, &index_path(path, i)));
                }
                values.into_iter().collect::<Option<Vec<_>>>().map(Value::Array)
            }
            (NodeKind::Scalar { text, plain }, Some(kind)) if !node.is_null() => {
                self.check_scalar(node, text, *plain, kind, schema, path)
            }
            _ => {
                self.wrong_type(node, describe(schema), path);
                None
            }
        }
    }

    fn resolve(&self, schema: &'a Value) -> &'a Value {
        let mut current = schema;
        // References chain at most a few levels; the bound guards against a cyclic schema.
        for _ in 0..8 {
            // Draft-07 ignores siblings of `$ref`, so a described reference comes as `allOf: [{$ref}]`.
            if let Some([only]) = current.get("allOf").and_then(Value::as_array).map(Vec::as_slice) {
                current = only;
                continue;
            }
            let Some(reference) = current.get("$ref").and_then(Value::as_str) else { break };
            let pointer = reference.trim_start_matches('#');
            match self.root.pointer(pointer) {
                Some(target) => current = target,
                None => break,
            }
        }
        current
    }

    fn check_alternatives(
        &mut self,
        node: &Node,
        schema: &'a Value,
        branches: &'a [Value],
        path: &str,
    ) -> Option<Value> {
        let title = schema.get("title").and_then(Value::as_str).unwrap_or("");
        if title.starts_with(SECRET_TITLE_PREFIX) && matches!(node.kind, NodeKind::Scalar { .. }) && !node.is_null() {
            self.report.push(
                Diagnostic::error(Code::LiteralSecret, path, "a secret is written in plain text in the profile")
                    .with_span(Some(node.span))
                    .with_help("write `{env: NAME}` or `{file: PATH}` and keep the value out of the profile")
                    .sensitive(),
            );
            return None;
        }
        let fitting: Vec<&'a Value> =
            branches.iter().filter(|b| kind_fits(node, type_names(self.resolve(b)).as_slice())).collect();
        match fitting.as_slice() {
            [] => {
                self.wrong_type(node, describe(schema), path);
                None
            }
            [only] => self.check(node, only, path),
            several => {
                // Scalars may fit several branches (a port number or a range string): take the first
                // that checks cleanly, and report the last attempt's problems if none does.
                let mut last = Report::default();
                for branch in several {
                    let mut trial = Checker::new(self.root);
                    if let Some(value) = trial.check(node, branch, path)
                        && !trial.report.has_errors()
                    {
                        self.sources.extend(trial.sources);
                        return Some(value);
                    }
                    last = trial.report;
                }
                self.report.extend(last);
                None
            }
        }
    }

    fn check_enum(&mut self, node: &Node, allowed: &[Value], path: &str) -> Option<Value> {
        let names: Vec<&str> = allowed.iter().filter_map(Value::as_str).collect();
        if let NodeKind::Scalar { text, .. } = &node.kind
            && names.contains(&text.as_str())
        {
            return Some(Value::String(text.clone()));
        }
        let shown = match &node.kind {
            NodeKind::Scalar { text, .. } if !node.is_null() => format!("`{text}`"),
            _ => node.kind_name().to_string(),
        };
        let mut diagnostic = Diagnostic::error(
            Code::BadValue,
            path,
            format!("{shown} is not one of {}", names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")),
        )
        .with_span(Some(node.span));
        if let NodeKind::Scalar { text, .. } = &node.kind
            && let Some(suggestion) = did_you_mean(text, names.iter().copied())
        {
            diagnostic = diagnostic.with_help(format!("did you mean `{suggestion}`?"));
        }
        self.report.push(diagnostic);
        None
    }

    fn check_object(
        &mut self,
        node: &Node,
        entries: &[(super::yaml::Key, Node)],
        schema: &'a Value,
        path: &str,
    ) -> Option<Value> {
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        let properties =
            schema.get("properties").and_then(Value::as_object).unwrap_or_else(|| EMPTY.get_or_init(Map::new));
        let additional = schema.get("additionalProperties");
        let mut out = Map::new();
        let mut complete = true;
        for (key, value) in entries {
            let key_path = child_path(path, &key.text);
            self.sources.record_key(&key_path, key.span);
            let value_schema = match (properties.get(&key.text), additional) {
                (Some(s), _) => s,
                (None, Some(extra)) if extra.is_object() => extra,
                _ => {
                    let mut diagnostic = Diagnostic::error(
                        Code::UnknownKey,
                        &key_path,
                        format!("unknown key `{}` in {}", key.text, container_name(path)),
                    )
                    .with_span(Some(key.span));
                    if let Some(suggestion) = did_you_mean(&key.text, properties.keys().map(String::as_str)) {
                        diagnostic = diagnostic.with_help(format!("did you mean `{suggestion}`?"));
                    } else {
                        let known: Vec<String> = properties.keys().map(|k| format!("`{k}`")).collect();
                        diagnostic = diagnostic.with_help(format!("known keys: {}", known.join(", ")));
                    }
                    self.report.push(diagnostic);
                    complete = false;
                    continue;
                }
            };
            match self.check(value, value_schema, &key_path) {
                Some(v) => {
                    out.insert(key.text.clone(), v);
                }
                None => complete = false,
            }
        }
        for required in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
            let Some(name) = required.as_str() else { continue };
            if !entries.iter().any(|(k, _)| k.text == name) {
                let what = properties.get(name).map(|s| describe(self.resolve(s))).unwrap_or_default();
                let at = self.sources.key(path).unwrap_or(node.span);
                self.report.push(
                    Diagnostic::error(
                        Code::MissingKey,
                        child_path(path, name),
                        format!("missing key `{name}` in {}", container_name(path)),
                    )
                    .with_span(Some(at))
                    .with_help(format!("add `{name}:` ({what})")),
                );
                complete = false;
            }
        }
        complete.then_some(Value::Object(out))
    }

    fn check_scalar(
        &mut self,
        node: &Node,
        text: &str,
        plain: bool,
        kind: &str,
        schema: &Value,
        path: &str,
    ) -> Option<Value> {
        match kind {
            "string" => Some(Value::String(text.to_string())),
            "integer" if plain => match text.parse::<i64>() {
                Ok(n) => self.check_bounds(node, n, schema, path).then(|| Value::from(n)),
                Err(_) => {
                    self.wrong_type(node, "an integer", path);
                    None
                }
            },
            "boolean" if plain => match text {
                "true" | "True" | "TRUE" => Some(Value::Bool(true)),
                "false" | "False" | "FALSE" => Some(Value::Bool(false)),
                "yes" | "no" | "on" | "off" | "y" | "n" | "Yes" | "No" | "On" | "Off" | "YES" | "NO" | "ON" | "OFF" => {
                    self.report.push(
                        Diagnostic::error(Code::WrongType, path, format!("`{text}` is not a boolean here"))
                            .with_span(Some(node.span))
                            .with_help("YAML 1.1 reads it as a boolean, YAML 1.2 as a string: write `true` or `false`"),
                    );
                    None
                }
                _ => {
                    self.wrong_type(node, "`true` or `false`", path);
                    None
                }
            },
            _ => {
                self.wrong_type(node, describe(schema), path);
                None
            }
        }
    }

    fn check_bounds(&mut self, node: &Node, n: i64, schema: &Value, path: &str) -> bool {
        let below = schema.get("minimum").and_then(Value::as_i64).filter(|min| n < *min);
        let above = schema.get("maximum").and_then(Value::as_i64).filter(|max| n > *max);
        let problem = match (below, above) {
            (Some(min), _) => format!("{n} is less than the minimum {min}"),
            (_, Some(max)) => format!("{n} is more than the maximum {max}"),
            _ => return true,
        };
        self.report.push(Diagnostic::error(Code::BadValue, path, problem).with_span(Some(node.span)));
        false
    }

    fn wrong_type(&mut self, node: &Node, expected: impl AsRef<str>, path: &str) {
        let found = match &node.kind {
            NodeKind::Scalar { text, plain: true } if !node.is_null() => format!("`{}`", truncate(text)),
            NodeKind::Scalar { plain: false, .. } => "a quoted string".to_string(),
            _ => node.kind_name().to_string(),
        };
        self.report.push(
            Diagnostic::error(Code::WrongType, path, format!("expected {}, found {found}", expected.as_ref()))
                .with_span(Some(node.span)),
        );
    }
}

fn truncate(text: &str) -> String {
    if text.chars().count() > 40 {
        format!("{}…", text.chars().take(40).collect::<String>())
    } else {
        text.to_string()
    }
}

fn type_names(schema: &Value) -> Vec<&str> {
    match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ if schema.get("enum").is_some() => vec!["string"],
        _ => Vec::new(),
    }
}

fn kind_fits(node: &Node, types: &[&str]) -> bool {
    if types.is_empty() {
        return true;
    }
    types.iter().any(|t| match (*t, &node.kind) {
        ("null", _) => node.is_null(),
        ("object", NodeKind::Map(_)) | ("array", NodeKind::Seq(_)) => true,
        ("string", NodeKind::Scalar { .. }) => !node.is_null(),
        ("integer", NodeKind::Scalar { text, plain: true }) => text.parse::<i64>().is_ok(),
        ("boolean", NodeKind::Scalar { plain: true, .. }) => !node.is_null(),
        _ => false,
    })
}

/// Names what a schema expects, for "expected …" messages.
fn describe(schema: &Value) -> String {
    if let Some(title) = schema.get("title").and_then(Value::as_str) {
        return title.to_string();
    }
    let names: Vec<&str> = type_names(schema)
        .into_iter()
        .filter(|t| *t != "null")
        .map(|t| match t {
            "object" => "a mapping",
            "array" => "a list",
            "string" => "a string",
            "integer" => "an integer",
            "boolean" => "`true` or `false`",
            _ => "a value",
        })
        .collect();
    if names.is_empty() { "a value".into() } else { names.join(" or ") }
}

fn container_name(path: &str) -> String {
    if path == "$" { "the profile".into() } else { format!("`{}`", path.trim_start_matches("$.")) }
}

/// The closest candidate within a small edit distance, if any: typos, not guesses.
pub fn did_you_mean<'c>(word: &str, candidates: impl Iterator<Item = &'c str>) -> Option<&'c str> {
    candidates
        .map(|c| (strsim::damerau_levenshtein(&word.to_lowercase(), c), c))
        .filter(|(distance, c)| *distance <= (c.len() / 3).clamp(1, 3))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_you_mean_finds_typos_only() {
        let keys = ["hostname", "timezone", "locale", "swap"];
        assert_eq!(did_you_mean("hostnme", keys.iter().copied()), Some("hostname"));
        assert_eq!(did_you_mean("timzone", keys.iter().copied()), Some("timezone"));
        assert_eq!(did_you_mean("banana", keys.iter().copied()), None);
    }
}
