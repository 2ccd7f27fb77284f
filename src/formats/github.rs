//! GitHub Actions workflow commands (`::error file=…,line=…,col=…,title=CODE::message`), one per
//! diagnostic: the runner turns each into an annotation on the pull request's diff.
//!
//! Escaping follows the runner's own (`actions/toolkit`, `packages/core/src/command.ts`): in the message,
//! `%`, CR and LF; in a property, also `:` and `,`.

use crate::diag::{Diagnostic, Report, Severity};

/// One line per diagnostic of `report` about `file`, in the report's order.
pub fn annotations(report: &Report, file: &str) -> String {
    report.sorted().into_iter().map(|d| annotation(d, file) + "\n").collect()
}

/// A file kiln could not read or parse at all: one error on the file.
pub fn file_error(file: &str, title: &str, message: &str) -> String {
    format!("::error file={},title={}::{}\n", property(file), property(title), data(message))
}

fn annotation(d: &Diagnostic, file: &str) -> String {
    let command = match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let mut properties = vec![format!("file={}", property(file))];
    if let Some(span) = d.span {
        properties.push(format!("line={}", span.line));
        properties.push(format!("col={}", span.column));
        properties.push(format!("endLine={}", span.end_line));
        if span.end_line == span.line {
            properties.push(format!("endColumn={}", span.end_column));
        }
    }
    properties.push(format!("title={}", property(d.code.name())));
    let mut message = format!("{} (at {})", d.message, d.path);
    if let Some(help) = &d.help {
        message.push_str(&format!("\nhelp: {help}"));
    }
    message.push_str(&format!("\nrun `kiln explain {}`", d.code.name()));
    format!("::{command} {}::{}", properties.join(","), data(&message))
}

/// Escapes a message (`escapeData`).
fn data(text: &str) -> String {
    text.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// Escapes a property value (`escapeProperty`).
fn property(text: &str) -> String {
    data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Code;
    use crate::diag::Span;

    #[test]
    fn a_diagnostic_becomes_one_escaped_workflow_command() {
        let mut report = Report::default();
        report.push(
            Diagnostic::error(Code::UnknownKey, "$.host.hostnme", "unknown key `hostnme` in `host`: 100%")
                .with_span(Some(Span { line: 2, column: 3, end_line: 2, end_column: 10 }))
                .with_help("did you mean `hostname`?"),
        );
        report.push(Diagnostic::warning(Code::ReleaseAssumed, "$.host", "no `host.os`"));
        let text = annotations(&report, "profiles/a,b.yaml");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "::error file=profiles/a%2Cb.yaml,line=2,col=3,endLine=2,endColumn=10,title=unknown-key::unknown key `hostnme` in `host`: 100%25 (at $.host.hostnme)%0Ahelp: did you mean `hostname`?%0Arun `kiln explain unknown-key`"
        );
        assert_eq!(
            lines[1],
            "::warning file=profiles/a%2Cb.yaml,title=release-assumed::no `host.os` (at $.host)%0Arun `kiln explain release-assumed`"
        );
        assert_eq!(file_error("x:y.yaml", "unreadable", "a\nb"), "::error file=x%3Ay.yaml,title=unreadable::a%0Ab\n");
    }
}
