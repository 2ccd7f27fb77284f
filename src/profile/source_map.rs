//! Maps YAML paths (`$.firewall.allow[2].port`) to where they stand in the profile source.
//!
//! Later stages only know paths; this map is how their diagnostics get a file:line:col (butane's
//! TranslationSet idea, in its simplest form).

use std::collections::HashMap;

use super::yaml::TextStart;
use crate::diag::{Diagnostic, Span};

#[derive(Debug, Default, Clone)]
pub struct SourceMap {
    values: HashMap<String, Span>,
    keys: HashMap<String, Span>,
    texts: HashMap<String, TextStart>,
}

impl SourceMap {
    pub fn record_value(&mut self, path: &str, span: Span) {
        self.values.entry(path.to_string()).or_insert(span);
    }

    /// Where the text of the scalar at `path` begins (for diagnostics inside file bodies).
    pub fn record_text(&mut self, path: &str, start: TextStart) {
        self.texts.entry(path.to_string()).or_insert(start);
    }

    pub fn record_key(&mut self, path: &str, span: Span) {
        self.keys.entry(path.to_string()).or_insert(span);
    }

    pub fn extend(&mut self, other: SourceMap) {
        for (k, v) in other.values {
            self.values.entry(k).or_insert(v);
        }
        for (k, v) in other.keys {
            self.keys.entry(k).or_insert(v);
        }
        for (k, v) in other.texts {
            self.texts.entry(k).or_insert(v);
        }
    }

    /// The span of a value, or of the nearest enclosing node that the source has (a defaulted field
    /// points at its parent section).
    pub fn value(&self, path: &str) -> Option<Span> {
        let mut current = path;
        loop {
            if let Some(span) = self.values.get(current) {
                return Some(*span);
            }
            current = parent(current)?;
        }
    }

    /// The span of a key, falling back to the value's span.
    pub fn key(&self, path: &str) -> Option<Span> {
        self.keys.get(path).copied().or_else(|| self.value(path))
    }

    /// Attaches the span for the diagnostic's path, unless it already has one: the position inside
    /// the value's text when the diagnostic names one and the text maps line for line, else the value.
    pub fn locate(&self, diagnostic: Diagnostic) -> Diagnostic {
        if diagnostic.span.is_some() {
            return diagnostic;
        }
        let inside = diagnostic
            .within
            .and_then(|(line, column)| self.texts.get(&diagnostic.path).map(|start| start.locate(line, column)));
        let span = inside.or_else(|| self.value(&diagnostic.path));
        diagnostic.with_span(span)
    }
}

fn parent(path: &str) -> Option<&str> {
    if path == "$" {
        return None;
    }
    let cut = path.rfind(['.', '['])?;
    Some(&path[..cut.max(1)])
}

/// `$.a` + `b` → `$.a.b`; keys that are not simple identifiers are quoted: `$.vars["my key"]`.
pub fn child_path(parent: &str, key: &str) -> String {
    let simple = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if simple { format!("{parent}.{key}") } else { format!("{parent}[{}]", serde_json::Value::String(key.to_string())) }
}

pub fn index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn falls_back_to_the_nearest_parent() {
        let mut map = SourceMap::default();
        map.record_value("$.firewall", Span::point(4, 1));
        map.record_value("$.firewall.allow[0]", Span::point(6, 5));
        assert_eq!(map.value("$.firewall.allow[0].proto").unwrap().line, 6);
        assert_eq!(map.value("$.firewall.incoming").unwrap().line, 4);
        assert_eq!(map.value("$.docker"), None);
    }

    #[test]
    fn paths_quote_odd_keys() {
        assert_eq!(child_path("$", "host"), "$.host");
        assert_eq!(child_path("$.vars", "a b"), "$.vars[\"a b\"]");
        assert_eq!(index_path("$.files", 2), "$.files[2]");
    }
}
