//! YAML text → a spanned node tree, with resource budgets, duplicate-key detection and no type guessing.
//!
//! Scalars stay text here: whether `0644` is a string or a number is decided later by the field that
//! receives it (see `shape`), which is what makes `mode: 0644` safe and `enabled: yes` a clear error.

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Marker, Parser, ScalarStyle, Span as YamlSpan};

use crate::catalog::Code;
use crate::diag::{Diagnostic, Report, Span};

/// Aliases may not expand the document past this many nodes (billion-laughs protection).
pub const MAX_NODES: usize = 20_000;
/// No profile nests anywhere near this deep; deeper input is hostile or broken.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub span: Span,
    /// For scalars: where their text begins, so a position inside the text maps back to the source.
    pub text_start: Option<TextStart>,
}

/// Where a scalar's text begins in the source: a literal block's (`|`) first content line and the
/// column of its indentation, or a one-line scalar's first character. Other forms (folded, multi-line
/// quoted) do not map line for line and have none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextStart {
    Block { line: usize, column: usize },
    Inline { line: usize, column: usize },
}

impl TextStart {
    /// The source position of 1-based `line` and `column` of the scalar's text.
    pub fn locate(self, line: usize, column: usize) -> Span {
        match self {
            TextStart::Block { line: first, column: indent } => Span::point(first + line - 1, indent + column - 1),
            TextStart::Inline { line: at, column: start } if line == 1 => Span::point(at, start + column - 1),
            TextStart::Inline { line: at, column: start } => Span::point(at, start),
        }
    }
}

/// Finds where a scalar's text begins (see `TextStart`) from its style and span.
fn text_start(style: ScalarStyle, span: Span, text: &str) -> Option<TextStart> {
    match style {
        // The parser's span of a literal block starts at its first non-blank content line, after the
        // indentation; leading blank lines of the text come before it.
        ScalarStyle::Literal => {
            let blank_lines = text.len() - text.trim_start_matches('\n').len();
            Some(TextStart::Block { line: span.line.checked_sub(blank_lines)?, column: span.column })
        }
        ScalarStyle::Plain if span.end_line == span.line => {
            Some(TextStart::Inline { line: span.line, column: span.column })
        }
        ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted if span.end_line == span.line => {
            Some(TextStart::Inline { line: span.line, column: span.column + 1 })
        }
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Scalar { text: String, plain: bool },
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub text: String,
    pub span: Span,
}

impl Node {
    /// Counts this node and everything below it, for the alias budget.
    fn size(&self) -> usize {
        1 + match &self.kind {
            NodeKind::Scalar { .. } => 0,
            NodeKind::Seq(items) => items.iter().map(Node::size).sum(),
            NodeKind::Map(entries) => entries.iter().map(|(_, v)| 1 + v.size()).sum(),
        }
    }

    /// True for `~`, `null`, `Null`, `NULL` and an empty plain scalar (YAML's null spellings).
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar { text, plain: true }
            if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            _ if self.is_null() => "null",
            NodeKind::Scalar { .. } => "a scalar",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }
}

fn to_span(span: &YamlSpan) -> Span {
    let start = marker_position(&span.start);
    let end = marker_position(&span.end);
    Span { line: start.0, column: start.1, end_line: end.0, end_column: end.1.max(start.1 + 1) }
}

fn marker_position(marker: &Marker) -> (usize, usize) {
    (marker.line().max(1), marker.col() + 1)
}

/// Parses one YAML document. Returns `None` (with diagnostics) when the text is not usable YAML.
pub fn parse(source: &str) -> (Option<Node>, Report) {
    let mut builder = Builder::default();
    match builder.run(source) {
        Ok(node) => (Some(node), builder.report),
        Err(diagnostic) => {
            builder.report.push(*diagnostic);
            (None, builder.report)
        }
    }
}

enum Frame {
    Seq { items: Vec<Node>, span: Span, anchor: usize },
    Map { entries: Vec<(Key, Node)>, pending_key: Option<Key>, span: Span, anchor: usize, seen: HashMap<String, usize> },
}

#[derive(Default)]
struct Builder {
    report: Report,
    anchors: HashMap<usize, Node>,
    nodes: usize,
}

type Fatal = Box<Diagnostic>;

fn fatal(code: Code, span: Span, message: impl Into<String>) -> Fatal {
    Box::new(Diagnostic::error(code, "$", message).with_span(Some(span)))
}

impl Builder {
    fn run(&mut self, source: &str) -> Result<Node, Fatal> {
        let mut stack: Vec<Frame> = Vec::new();
        let mut root: Option<Node> = None;
        let mut documents = 0;
        for item in Parser::new_from_str(source) {
            let (event, yaml_span) = item.map_err(|e| {
                let (line, column) = marker_position(e.marker());
                fatal(Code::YamlSyntax, Span::point(line, column), format!("malformed YAML: {}", e.info()))
            })?;
            let span = to_span(&yaml_span);
            let node = match event {
                Event::DocumentStart(..) => {
                    documents += 1;
                    if documents > 1 {
                        return Err(fatal(
                            Code::YamlUnsupported,
                            span,
                            "a profile is one YAML document; found a second one",
                        ));
                    }
                    continue;
                }
                Event::Scalar(text, style, anchor, tag) => {
                    if tag.is_some() {
                        return Err(fatal(
                            Code::YamlUnsupported,
                            span,
                            "YAML tags (`!tag`, `!!str`) are not used in profiles",
                        ));
                    }
                    let text_start = text_start(style, span, &text);
                    let node = Node {
                        kind: NodeKind::Scalar { text: text.into_owned(), plain: style == ScalarStyle::Plain },
                        span,
                        text_start,
                    };
                    self.count(1, span)?;
                    self.remember(anchor, &node);
                    node
                }
                Event::Alias(id) => {
                    let node = self.anchors.get(&id).cloned().ok_or_else(|| {
                        fatal(Code::YamlSyntax, span, "alias to an anchor that is not defined before it")
                    })?;
                    self.count(node.size(), span)?;
                    // Positions inside an alias's text are those of the anchored original.
                    Node { span, ..node }
                }
                Event::SequenceStart(_, anchor, tag) | Event::MappingStart(_, anchor, tag) if tag.is_some() => {
                    let _ = anchor;
                    return Err(fatal(
                        Code::YamlUnsupported,
                        span,
                        "YAML tags (`!tag`, `!!map`) are not used in profiles",
                    ));
                }
                Event::SequenceStart(_, anchor, _) => {
                    self.open(&mut stack, Frame::Seq { items: Vec::new(), span, anchor }, span)?;
                    continue;
                }
                Event::MappingStart(_, anchor, _) => {
                    let frame =
                        Frame::Map { entries: Vec::new(), pending_key: None, span, anchor, seen: HashMap::new() };
                    self.open(&mut stack, frame, span)?;
                    continue;
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    let (node, anchor) = match stack.pop() {
                        Some(Frame::Seq { items, span: start, anchor }) => {
                            (Node { kind: NodeKind::Seq(items), span: start, text_start: None }, anchor)
                        }
                        Some(Frame::Map { entries, span: start, anchor, .. }) => {
                            (Node { kind: NodeKind::Map(entries), span: start, text_start: None }, anchor)
                        }
                        None => return Err(fatal(Code::Internal, span, "unbalanced YAML events")),
                    };
                    self.remember(anchor, &node);
                    node
                }
                _ => continue,
            };
            self.attach(&mut stack, &mut root, node)?;
        }
        Ok(root.unwrap_or(Node {
            kind: NodeKind::Scalar { text: String::new(), plain: true },
            span: Span::point(1, 1),
            text_start: None,
        }))
    }

    fn open(&mut self, stack: &mut Vec<Frame>, frame: Frame, span: Span) -> Result<(), Fatal> {
        if stack.len() >= MAX_DEPTH {
            return Err(fatal(Code::YamlDepth, span, format!("the YAML nests deeper than {MAX_DEPTH} levels")));
        }
        if let Some(Frame::Map { pending_key: None, .. }) = stack.last() {
            return Err(fatal(Code::YamlUnsupported, span, "mapping keys must be plain text, not lists or mappings"));
        }
        self.count(1, span)?;
        stack.push(frame);
        Ok(())
    }

    fn count(&mut self, added: usize, span: Span) -> Result<(), Fatal> {
        self.nodes += added;
        if self.nodes > MAX_NODES {
            return Err(fatal(
                Code::YamlAliasBudget,
                span,
                format!(
                    "the document expands to more than {MAX_NODES} nodes; anchors and aliases this large are refused"
                ),
            ));
        }
        Ok(())
    }

    fn remember(&mut self, anchor: usize, node: &Node) {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
    }

    fn attach(&mut self, stack: &mut [Frame], root: &mut Option<Node>, node: Node) -> Result<(), Fatal> {
        match stack.last_mut() {
            None => *root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, pending_key, seen, .. }) => match pending_key.take() {
                None => {
                    let NodeKind::Scalar { text, .. } = node.kind else {
                        return Err(fatal(Code::YamlUnsupported, node.span, "mapping keys must be plain text"));
                    };
                    if let Some(first_line) = seen.get(&text) {
                        self.report.push(
                            Diagnostic::error(Code::YamlDuplicateKey, "$", format!("duplicate key `{text}`"))
                                .with_span(Some(node.span))
                                .with_help(format!("first defined on line {first_line}")),
                        );
                    } else {
                        seen.insert(text.clone(), node.span.line);
                    }
                    *pending_key = Some(Key { text, span: node.span });
                }
                Some(key) => {
                    // A duplicate key keeps its first value: the error above already fails the run.
                    if !entries.iter().any(|(k, _)| k.text == key.text) {
                        entries.push((key, node));
                    }
                }
            },
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(node: &Node) -> &str {
        match &node.kind {
            NodeKind::Scalar { text, .. } => text,
            _ => panic!("not a scalar: {node:?}"),
        }
    }

    #[test]
    fn keeps_scalars_as_text_with_spans() {
        let (node, report) = parse("a: 0644\nb: 'x'\n");
        assert!(report.diagnostics.is_empty());
        let NodeKind::Map(entries) = node.unwrap().kind else { panic!() };
        assert_eq!(entries[0].0.text, "a");
        assert_eq!(scalar(&entries[0].1), "0644");
        assert_eq!(entries[1].1.span.line, 2);
        assert_eq!(entries[1].1.span.column, 4);
    }

    #[test]
    fn positions_inside_scalar_text_map_back_to_the_source() {
        let source = "a: |\n  first\n    {{ x }}\nb: 'quoted'\nc: plain\n";
        let (node, _) = parse(source);
        let NodeKind::Map(entries) = node.unwrap().kind else { panic!() };
        let at = |i: usize, line, column| {
            let span = entries[i].1.text_start.unwrap().locate(line, column);
            (span.line, span.column)
        };
        assert_eq!(at(0, 1, 1), (2, 3), "first content line, after the indentation");
        assert_eq!(at(0, 2, 3), (3, 5));
        assert_eq!(at(1, 1, 1), (4, 5), "inside the quotes");
        assert_eq!(at(2, 1, 3), (5, 6));
    }

    #[test]
    fn duplicate_keys_are_reported_at_the_second() {
        let (_, report) = parse("a: 1\nb: 2\na: 3\n");
        let d = &report.diagnostics[0];
        assert_eq!(d.code, Code::YamlDuplicateKey);
        assert_eq!(d.span.unwrap().line, 3);
    }

    #[test]
    fn billion_laughs_is_refused() {
        let mut doc = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..9 {
            let prev = if i == 0 { "a".to_string() } else { format!("l{}", i - 1) };
            doc.push_str(&format!("l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        let (node, report) = parse(&doc);
        assert!(node.is_none());
        assert_eq!(report.diagnostics[0].code, Code::YamlAliasBudget);
    }

    #[test]
    fn malformed_yaml_has_a_position() {
        let (node, report) = parse("a: [1, 2\nb: 3\n");
        assert!(node.is_none());
        assert_eq!(report.diagnostics[0].code, Code::YamlSyntax);
        assert!(report.diagnostics[0].span.is_some());
    }

    #[test]
    fn deep_nesting_is_refused() {
        let doc = "[".repeat(200) + &"]".repeat(200);
        let (node, report) = parse(&doc);
        assert!(node.is_none());
        assert_eq!(report.diagnostics[0].code, Code::YamlDepth);
    }

    #[test]
    fn tags_and_second_documents_are_refused() {
        assert_eq!(parse("a: !!str 1\n").1.diagnostics[0].code, Code::YamlUnsupported);
        assert_eq!(parse("a: 1\n---\nb: 2\n").1.diagnostics[0].code, Code::YamlUnsupported);
    }
}
