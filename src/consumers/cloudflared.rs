//! cloudflared's ingress rules, ported from its source (`ingress/ingress.go`: `validateIngress`,
//! `validateHostname`, `matchHost`; cloudflared 2026.8). cloudflared is not packaged by Debian, so no
//! real program judges these in the test suite: this module is the judge, and says where it differs.
//!
//! - A rule with no hostname (or `*`) and no path is a catch-all; the last rule must be one and no
//!   other may be (cloudflared refuses the whole configuration otherwise).
//! - A hostname may carry one `*`, only as the first character (`*.example.com`), and no port. A
//!   wildcard rule matches every name that ends with the part after `*` (`matchHost`).
//! - A path is a Go regular expression (`regexp.Compile`, RE2 syntax). kiln compiles it with Rust's
//!   regex-syntax and refuses what Go's parser refuses or reads differently: flags other than
//!   `i m s U`, repetition counts over 1000, class set operations (`&&`, `--`, `~~`), word-boundary
//!   forms Go lacks (`\<`, `\b{start}`), `(?<name>…)` (Go before 1.22), a repetition of a repetition
//!   (`a**`), `\u`/`\U` escapes, and Unicode classes other than general categories. The test suite compiles every path regex kiln accepts with Go's own
//!   `regexp` (`tests/kiln/cloudflared_regexp.rs`).
//! - A service is `http_status:CODE` (100-999), `hello_world`, `bastion`, `socks-proxy`,
//!   `unix:PATH`, `unix+tls:PATH`, or a URL with a scheme and a host and no path (not even `/`).

use regex_syntax::ast::{self, Ast, Visitor};

use crate::catalog::Code;
use crate::diag::{Diagnostic, Report};
use crate::model::check_hostname;
use crate::profile::v1;

/// Go's `regexp/syntax` limit on `{n,m}` (`maxRepeat`).
const GO_MAX_REPEAT: u32 = 1000;

/// The Unicode general categories Go's `\p{…}` knows (`unicode.Categories`), plus `Any`.
const GO_CATEGORIES: &[&str] = &[
    "Any", "C", "Cc", "Cf", "Co", "Cs", "L", "Ll", "Lm", "Lo", "Lt", "Lu", "M", "Mc", "Me", "Mn", "N", "Nd", "Nl",
    "No", "P", "Pc", "Pd", "Pe", "Pf", "Pi", "Po", "Ps", "S", "Sc", "Sk", "Sm", "So", "Z", "Zl", "Zp", "Zs",
];

/// URL schemes cloudflared proxies: HTTP(S) and WebSocket as HTTP, the rest as TCP over WebSocket
/// (`isHTTPService`; `tcp`, `ssh`, `rdp`, `smb` are the ones its documentation names).
const URL_SCHEMES: &[&str] = &["http", "https", "ws", "wss", "tcp", "ssh", "rdp", "smb"];

fn is_catch_all(rule: &v1::IngressRule) -> bool {
    matches!(rule.hostname.as_deref(), None | Some("*")) && rule.path.is_none()
}

/// `matchHost`: does rule host `pattern` match request host `name`?
pub fn host_matches(pattern: &str, name: &str) -> bool {
    pattern == name || pattern.strip_prefix('*').is_some_and(|suffix| suffix.starts_with('.') && name.ends_with(suffix))
}

/// Checks the ingress list as cloudflared would, and for rules that can never match.
pub fn check_ingress(rules: &[v1::IngressRule], report: &mut Report) {
    if rules.is_empty() {
        report.push(Diagnostic::error(
            Code::IngressOrder,
            "$.cloudflared.ingress",
            "ingress needs at least a catch-all rule such as `service: http_status:404`",
        ));
        return;
    }
    let last = rules.len() - 1;
    for (i, rule) in rules.iter().enumerate() {
        let path = format!("$.cloudflared.ingress[{i}]");
        if is_catch_all(rule) && i < last {
            report.push(Diagnostic::error(
                Code::IngressOrder,
                &path,
                format!("this rule matches every request, so the {} rule(s) after it are never used", last - i),
            ));
        }
        if i == last && !is_catch_all(rule) {
            report.push(
                Diagnostic::error(
                    Code::IngressOrder,
                    &path,
                    "the last ingress rule must be a catch-all (no hostname, no path)",
                )
                .with_help("add `- service: http_status:404` at the end"),
            );
        }
        let host_ok = match rule.hostname.as_deref().filter(|h| *h != "*") {
            Some(host) => check_rule_host(host, &format!("{path}.hostname"), report),
            None => true,
        };
        if let Some(regex) = &rule.path
            && let Err(why) = check_path_regex(regex)
        {
            report.push(Diagnostic::error(
                Code::BadValue,
                format!("{path}.path"),
                format!("cloudflared would refuse this path: {why}"),
            ));
        }
        check_service(&rule.service, &format!("{path}.service"), report);
        if rule.origin_server_name.is_some() && !rule.service.starts_with("https://") {
            report.push(Diagnostic::warning(
                Code::ContradictoryRule,
                format!("{path}.origin_server_name"),
                "origin_server_name only matters for an `https://` service",
            ));
        }
        if rule.service.starts_with("https://") && rule.origin_server_name.is_none() {
            report.push(
                Diagnostic::warning(
                    Code::BadValue,
                    format!("{path}.service"),
                    "an https origin without `origin_server_name` will fail certificate checks",
                )
                .with_help("set `origin_server_name` to the name on the origin's certificate (the app's host name)"),
            );
        }
        // First match wins: an earlier rule without a path whose host pattern matches this rule's
        // host takes every request this rule could get.
        if let Some(host) = rule.hostname.as_deref().filter(|_| i < last && host_ok)
            && let Some(j) = rules[..i].iter().position(|r| {
                r.path.is_none() && r.hostname.as_deref().is_some_and(|pattern| host_matches(pattern, host))
            })
        {
            report.push(Diagnostic::error(
                Code::IngressOrder,
                &path,
                format!(
                    "ingress[{j}] (`{}`) already takes every request for `{host}`, so this rule is never used; move it above",
                    rules[j].hostname.as_deref().unwrap_or_default()
                ),
            ));
        }
    }
}

/// Reports a hostname cloudflared refuses; true when it is usable.
fn check_rule_host(host: &str, path: &str, report: &mut Report) -> bool {
    let why = if host.rfind('*').is_some_and(|i| i > 0) || host.starts_with('*') && !host.starts_with("*.") {
        Some("a hostname may have one `*`, only as `*.` at its start (`*.example.com`)".to_string())
    } else if host.contains(':') {
        Some("a hostname cannot contain a port".to_string())
    } else {
        let bare = host.strip_prefix("*.").unwrap_or(host);
        match check_hostname(bare) {
            Err(why) => Some(why.to_string()),
            Ok(()) if !bare.contains('.') => Some("a public host name has a domain (`app.example.com`)".to_string()),
            Ok(()) => None,
        }
    };
    match why {
        Some(why) => {
            report.push(Diagnostic::error(
                Code::InvalidHostname,
                path,
                format!("`{host}` is not an ingress hostname: {why}"),
            ));
            false
        }
        None => true,
    }
}

fn check_service(service: &str, path: &str, report: &mut Report) {
    let valid = if let Some(code) = service.strip_prefix("http_status:") {
        // Go's strconv.Atoi takes a sign; kiln wants plain digits.
        code.bytes().all(|b| b.is_ascii_digit()) && code.parse::<u16>().is_ok_and(|c| (100..=999).contains(&c))
    } else if let Some(socket) = service.strip_prefix("unix:").or_else(|| service.strip_prefix("unix+tls:")) {
        socket.starts_with('/') && !socket.chars().any(|c| c.is_whitespace() || c.is_control())
    } else if let Some((scheme, rest)) = service.split_once("://") {
        // url.Parse: a host is required and the path must be empty (`http://localhost:80/` is refused).
        let authority_ok = !rest.is_empty()
            && !rest.starts_with(':')
            && !rest.contains(['/', '?', '#', '@'])
            && !rest.chars().any(|c| c.is_whitespace() || c.is_control());
        URL_SCHEMES.contains(&scheme) && authority_ok
    } else {
        matches!(service, "hello_world" | "hello-world" | "bastion" | "socks-proxy")
    };
    if !valid {
        report.push(
            Diagnostic::error(Code::BadValue, path, format!("`{service}` is not a service cloudflared accepts"))
                .with_help(
                    "use `http://localhost:80`, `https://localhost:443` (no path), `http_status:404`, `unix:/path`, …",
                ),
        );
    }
}

/// Parses a path regex and refuses what Go's `regexp.Compile` refuses or reads differently.
pub fn check_path_regex(regex: &str) -> Result<(), String> {
    if regex.is_empty() {
        return Err("an empty path matches everything: omit `path`".into());
    }
    let ast = ast::parse::Parser::new().parse(regex).map_err(|e| e.kind().to_string())?;
    regex_syntax::hir::translate::Translator::new().translate(regex, &ast).map_err(|e| e.kind().to_string())?;
    ast::visit(&ast, GoCompatible)
}

/// Walks a parsed regex for the constructs that Rust's syntax has and Go's does not.
struct GoCompatible;

impl Visitor for GoCompatible {
    type Output = ();
    type Err = String;

    fn finish(self) -> Result<(), String> {
        Ok(())
    }

    fn visit_pre(&mut self, ast: &Ast) -> Result<(), String> {
        let flags = match ast {
            Ast::Flags(set) => Some(&set.flags),
            Ast::Group(group) => match &group.kind {
                ast::GroupKind::NonCapturing(flags) => Some(flags),
                _ => None,
            },
            _ => None,
        };
        for item in flags.map(|f| f.items.as_slice()).unwrap_or_default() {
            if let ast::FlagsItemKind::Flag(flag) = &item.kind
                && matches!(flag, ast::Flag::Unicode | ast::Flag::CRLF | ast::Flag::IgnoreWhitespace)
            {
                return Err("Go's regular expressions know only the flags i, m, s and U".into());
            }
        }
        match ast {
            // Go refuses a repetition of a repetition (`a**`, `a{2}{3}`): "invalid nested repetition
            // operator". A group in between (`(a*)*`) is fine, and a lazy `a*?` is one operator.
            Ast::Repetition(rep) if matches!(*rep.ast, Ast::Repetition(_)) => {
                Err("Go refuses a repetition of a repetition (`a**`); put the inner one in a group".into())
            }
            Ast::Literal(literal) => literal_ok(literal),
            Ast::Repetition(rep) => {
                if let ast::RepetitionKind::Range(range) = &rep.op.kind {
                    let (ast::RepetitionRange::Exactly(n) | ast::RepetitionRange::AtLeast(n)) = range else {
                        let ast::RepetitionRange::Bounded(a, b) = range else { unreachable!() };
                        return repeat_ok(*a.max(b));
                    };
                    return repeat_ok(*n);
                }
                Ok(())
            }
            Ast::Assertion(assertion) => match assertion.kind {
                ast::AssertionKind::StartLine
                | ast::AssertionKind::EndLine
                | ast::AssertionKind::StartText
                | ast::AssertionKind::EndText
                | ast::AssertionKind::WordBoundary
                | ast::AssertionKind::NotWordBoundary => Ok(()),
                _ => Err("Go reads `\\<`, `\\>` and `\\b{…}` differently (not as word boundaries)".into()),
            },
            Ast::ClassUnicode(class) => unicode_class_ok(class),
            // Go reads `(?<name>…)` only since 1.22; `(?P<name>…)` in every version.
            Ast::Group(group) if matches!(group.kind, ast::GroupKind::CaptureName { starts_with_p: false, .. }) => {
                Err("write a named group as `(?P<name>…)`: Go before 1.22 refuses `(?<name>…)`".into())
            }
            _ => Ok(()),
        }
    }

    fn visit_class_set_item_pre(&mut self, item: &ast::ClassSetItem) -> Result<(), String> {
        match item {
            ast::ClassSetItem::Unicode(class) => unicode_class_ok(class),
            ast::ClassSetItem::Literal(literal) => literal_ok(literal),
            ast::ClassSetItem::Range(range) => literal_ok(&range.start).and_then(|()| literal_ok(&range.end)),
            _ => Ok(()),
        }
    }

    fn visit_class_set_binary_op_pre(&mut self, _: &ast::ClassSetBinaryOp) -> Result<(), String> {
        Err("Go reads `&&`, `--` and `~~` in a class as plain characters".into())
    }
}

/// Go writes a character by code only as `\x41` or `\x{…}`; Rust's `\u0041` and `\U…` are "invalid
/// escape sequence" there.
fn literal_ok(literal: &ast::Literal) -> Result<(), String> {
    match &literal.kind {
        ast::LiteralKind::HexFixed(kind) | ast::LiteralKind::HexBrace(kind) if *kind != ast::HexLiteralKind::X => {
            Err("Go writes a character by its code only as `\\x41` or `\\x{41}` (no `\\u`, `\\U`)".into())
        }
        _ => Ok(()),
    }
}

fn repeat_ok(n: u32) -> Result<(), String> {
    if n > GO_MAX_REPEAT {
        return Err(format!("Go allows repetition counts up to {GO_MAX_REPEAT}, found {n}"));
    }
    Ok(())
}

fn unicode_class_ok(class: &ast::ClassUnicode) -> Result<(), String> {
    let name = match &class.kind {
        ast::ClassUnicodeKind::OneLetter(c) => c.to_string(),
        ast::ClassUnicodeKind::Named(name) => name.clone(),
        ast::ClassUnicodeKind::NamedValue { .. } => {
            return Err("Go has no `\\p{name=value}` classes".into());
        }
    };
    if GO_CATEGORIES.contains(&name.as_str()) {
        Ok(())
    } else {
        Err(format!("kiln accepts only Unicode general categories in `\\p{{…}}` (Go has no `{name}`)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_regexes_go_compiles() {
        for good in [
            "^/\\.well-known/acme-challenge/",
            "^/api/(v1|v2)/",
            "(?i)^/admin",
            "\\p{L}+",
            "[[:alpha:]]{2,1000}",
            "a*?",
        ] {
            assert_eq!(check_path_regex(good), Ok(()), "{good}");
        }
        for bad in [
            "(",
            "[a-",
            "a{1001}",
            "(?x)a b",
            "[a-z&&[^c]]",
            "\\<word\\>",
            "\\p{Greek}",
            "\\p{Letter}",
            "",
            "a{2,1}",
            "(?<n>x)",
            "a**",
            "a{2}{3}",
            "\\u0041",
            "[\\u0041-\\u0042]",
        ] {
            assert!(check_path_regex(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_matching_follows_match_host() {
        assert!(host_matches("*.example.com", "app.example.com"));
        assert!(host_matches("*.example.com", "a.b.example.com"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(
            host_matches("app.example.com", "app.example.com") && !host_matches("app.example.com", "x.example.com")
        );
    }

    #[test]
    fn services() {
        let mut report = Report::default();
        for good in [
            "http://localhost:80",
            "https://localhost:443",
            "http_status:404",
            "unix:/run/app.sock",
            "tcp://127.0.0.1:5432",
            "hello_world",
            "ws://[::1]:8080",
        ] {
            check_service(good, "$", &mut report);
        }
        assert!(report.diagnostics.is_empty(), "{report:?}");
        for bad in [
            "localhost:80",
            "http_status:1000",
            "http_status:+404",
            "ftp://x",
            "http://localhost/path",
            "http://localhost:80/",
            "http://",
            "unix:relative",
        ] {
            check_service(bad, "$", &mut report);
        }
        assert_eq!(report.diagnostics.len(), 8);
    }
}
