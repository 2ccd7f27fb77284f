//! Diagnostics: what went wrong, where in the profile, and how to print it (rustc-style or JSON).
//!
//! Every stage (YAML parse, shape check, semantic validation, lowering) appends to one `Report`, so the
//! user sees every problem at once. A diagnostic carries its YAML path (`$.firewall.allow[2].port`) and,
//! when known, the source span it was traced back to.

use serde::Serialize;
use std::fmt::Write as _;

use crate::catalog::Code;

/// A position range in the profile source. Lines and columns are 1-based, columns count characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Span {
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
}

impl Span {
    pub fn point(line: usize, column: usize) -> Span {
        Span { line, column, end_line: line, end_column: column + 1 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

impl Severity {
    pub fn label(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub code: Code,
    pub message: String,
    /// YAML path of the offending node, `$` for the document root.
    pub path: String,
    pub span: Option<Span>,
    /// A short hint shown under the caret (e.g. "did you mean `hostname`?").
    pub help: Option<String>,
    /// The source text under the span may be a secret: never echo it.
    pub sensitive: bool,
    /// A 1-based line and column inside the text of the value at `path` (a file body, a template):
    /// the source map turns it into a position in the profile.
    pub within: Option<(usize, usize)>,
}

impl Diagnostic {
    pub fn error(code: Code, path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, code, path, message)
    }

    pub fn warning(code: Code, path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, code, path, message)
    }

    fn new(severity: Severity, code: Code, path: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity,
            code,
            message: message.into(),
            path: path.into(),
            span: None,
            help: None,
            sensitive: false,
            within: None,
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn with_span(mut self, span: Option<Span>) -> Self {
        self.span = span;
        self
    }

    pub fn sensitive(mut self) -> Self {
        self.sensitive = true;
        self
    }

    /// Points at line and column of the value's own text. A text read from `source_file` (not the
    /// profile) is named in the message instead, `(at FILE:LINE:COL)`.
    pub fn within(mut self, line: usize, column: usize, source_file: Option<&str>) -> Self {
        match source_file {
            Some(file) => self.message = format!("{} (at {file}:{line}:{column})", self.message),
            None => self.within = Some((line, column)),
        }
        self
    }
}

/// Everything found wrong with one profile, in the order found; sorted by position for display.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub diagnostics: Vec<Diagnostic>,
}

impl Report {
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    pub fn extend(&mut self, other: Report) {
        self.diagnostics.extend(other.diagnostics);
    }

    pub fn has_errors(&self) -> bool {
        self.count(Severity::Error) > 0
    }

    pub fn count(&self, severity: Severity) -> usize {
        self.diagnostics.iter().filter(|d| d.severity == severity).count()
    }

    /// Fails with `--strict` on any warning, otherwise only on errors.
    pub fn fails(&self, strict: bool) -> bool {
        self.has_errors() || (strict && !self.diagnostics.is_empty())
    }

    /// Source order, errors before warnings on the same spot; stable for equal keys.
    pub fn sorted(&self) -> Vec<&Diagnostic> {
        let mut sorted: Vec<&Diagnostic> = self.diagnostics.iter().collect();
        sorted.sort_by_key(|d| {
            let position = d.span.map_or((usize::MAX, usize::MAX), |s| (s.line, s.column));
            (position, std::cmp::Reverse(d.severity))
        });
        sorted
    }
}

/// Renders diagnostics as rustc does: header, `--> file:line:col`, the source line and a caret.
pub fn render_human(report: &Report, file: &str, source: &str) -> String {
    let lines: Vec<&str> = source.lines().collect();
    let mut out = String::new();
    // The first diagnostic of each code says where its long explanation is; the rest would repeat it.
    let mut explained = std::collections::HashSet::new();
    for d in report.sorted() {
        let explain = explained.insert(d.code).then(|| format!("= help: run `kiln explain {}`", d.code.name()));
        let _ = writeln!(out, "{}[{}]: {}", d.severity.label(), d.code.name(), d.message);
        match d.span {
            Some(span) => {
                let gutter = " ".repeat(span.line.to_string().len());
                let _ = writeln!(out, "{gutter}--> {file}:{}:{}", span.line, span.column);
                let _ = writeln!(out, "{gutter} |");
                if let Some(text) = lines.get(span.line - 1) {
                    let shown = if d.sensitive { mask(text, span) } else { (*text).to_string() };
                    let _ = writeln!(out, "{} | {}", span.line, shown);
                    let width = caret_width(text, span);
                    let _ =
                        write!(out, "{gutter} | {}{}", " ".repeat(span.column.saturating_sub(1)), "^".repeat(width));
                    match &d.help {
                        Some(help) => {
                            let _ = writeln!(out, " {help}");
                        }
                        None => out.push('\n'),
                    }
                }
                let _ = writeln!(out, "{gutter} = at {}", d.path);
                if let Some(explain) = &explain {
                    let _ = writeln!(out, "{gutter} {explain}");
                }
            }
            None => {
                let _ = writeln!(out, "  --> {file} (at {})", d.path);
                if let Some(help) = &d.help {
                    let _ = writeln!(out, "   = help: {help}");
                }
                if let Some(explain) = &explain {
                    let _ = writeln!(out, "   {explain}");
                }
            }
        }
        out.push('\n');
    }
    let errors = report.count(Severity::Error);
    let warnings = report.count(Severity::Warning);
    if errors + warnings > 0 {
        let _ = writeln!(out, "{file}: {errors} error(s), {warnings} warning(s)");
    }
    out
}

/// Width of the caret: the span on its first line, at least one character.
fn caret_width(text: &str, span: Span) -> usize {
    let line_chars = text.chars().count();
    let end = if span.end_line == span.line { span.end_column } else { line_chars + 1 };
    end.saturating_sub(span.column).clamp(1, line_chars.saturating_sub(span.column - 1).max(1))
}

/// Replaces the characters under the span with `*` so a literal secret is pointed at, not printed.
fn mask(text: &str, span: Span) -> String {
    let start = span.column - 1;
    let end = if span.end_line == span.line { span.end_column - 1 } else { usize::MAX };
    text.chars().enumerate().map(|(i, c)| if i >= start && i < end { '*' } else { c }).collect()
}

#[derive(Serialize)]
struct JsonDiagnostic<'a> {
    severity: Severity,
    code: &'static str,
    message: &'a str,
    file: &'a str,
    path: &'a str,
    line: Option<usize>,
    column: Option<usize>,
    end_line: Option<usize>,
    end_column: Option<usize>,
    help: Option<&'a str>,
}

#[derive(Serialize)]
pub struct JsonFileReport<'a> {
    file: &'a str,
    errors: usize,
    warnings: usize,
    diagnostics: Vec<serde_json::Value>,
}

/// The machine-readable form for `--format json`: one object per file. Never contains source text.
pub fn to_json<'a>(report: &Report, file: &'a str) -> JsonFileReport<'a> {
    let diagnostics = report
        .sorted()
        .into_iter()
        .map(|d| {
            serde_json::to_value(JsonDiagnostic {
                severity: d.severity,
                code: d.code.name(),
                message: &d.message,
                file,
                path: &d.path,
                line: d.span.map(|s| s.line),
                column: d.span.map(|s| s.column),
                end_line: d.span.map(|s| s.end_line),
                end_column: d.span.map(|s| s.end_column),
                help: d.help.as_deref(),
            })
            .expect("diagnostics serialize to JSON")
        })
        .collect();
    JsonFileReport {
        file,
        errors: report.count(Severity::Error),
        warnings: report.count(Severity::Warning),
        diagnostics,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_rendering_points_at_the_span() {
        let mut report = Report::default();
        report.push(
            Diagnostic::error(Code::UnknownKey, "$.host.hostnme", "unknown key `hostnme` in `host`")
                .with_span(Some(Span { line: 2, column: 3, end_line: 2, end_column: 10 }))
                .with_help("did you mean `hostname`?"),
        );
        let text = render_human(&report, "app.yaml", "host:\n  hostnme: a\n");
        assert!(text.contains("error[unknown-key]: unknown key `hostnme` in `host`"), "{text}");
        assert!(text.contains("--> app.yaml:2:3"), "{text}");
        assert!(text.contains("2 |   hostnme: a"), "{text}");
        assert!(text.contains("  |   ^^^^^^^ did you mean `hostname`?"), "{text}");
        assert!(text.contains("  = at $.host.hostnme\n  = help: run `kiln explain unknown-key`\n"), "{text}");
    }

    #[test]
    fn sensitive_spans_are_masked() {
        let mut report = Report::default();
        report.push(
            Diagnostic::error(Code::LiteralSecret, "$.tailscale.auth_key", "literal secret")
                .with_span(Some(Span { line: 1, column: 11, end_line: 1, end_column: 22 }))
                .sensitive(),
        );
        let text = render_human(&report, "p.yaml", "auth_key: tskey-abcde\n");
        assert!(!text.contains("tskey-abcde"), "{text}");
        assert!(text.contains("auth_key: ***********"), "{text}");
    }

    #[test]
    fn strict_fails_on_warnings_only_when_asked() {
        let mut report = Report::default();
        report.push(Diagnostic::warning(Code::DockerBypassesFirewall, "$.docker", "w"));
        assert!(!report.fails(false));
        assert!(report.fails(true));
    }
}
