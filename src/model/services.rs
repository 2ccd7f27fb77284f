//! The two daemons that replace open ports: cloudflared (HTTP in) and Tailscale (SSH in), and the
//! references to their secrets.

use super::files::check_relative_path;
use super::host::check_hostname;
use super::{Cloudflared, IngressRule, SecretRef, Tailscale, error};
use crate::catalog::Code;
use crate::diag::{Diagnostic, Report};
use crate::profile::v1::{self, RawProfile};

pub(super) fn cloudflared(raw: &v1::Cloudflared, report: &mut Report) -> Cloudflared {
    let ingress = raw.ingress.as_ref().map(|rules| {
        check_ingress(rules, report);
        rules
            .iter()
            .map(|r| IngressRule {
                hostname: r.hostname.clone(),
                path: r.path.clone(),
                service: r.service.clone(),
                origin_server_name: r.origin_server_name.clone(),
            })
            .collect()
    });
    Cloudflared { token: raw.token.clone(), ingress }
}

fn check_ingress(rules: &[v1::IngressRule], report: &mut Report) {
    if rules.is_empty() {
        error(
            report,
            Code::IngressOrder,
            "$.cloudflared.ingress",
            "ingress needs at least a catch-all rule such as `service: http_status:404`",
        );
        return;
    }
    let last = rules.len() - 1;
    for (i, rule) in rules.iter().enumerate() {
        let path = format!("$.cloudflared.ingress[{i}]");
        let catch_all = rule.hostname.is_none() && rule.path.is_none();
        if catch_all && i < last {
            error(
                report,
                Code::IngressOrder,
                &path,
                format!("this rule matches every request, so the {} rule(s) after it are never used", last - i),
            );
        }
        if i == last && !catch_all {
            report.push(
                Diagnostic::error(
                    Code::IngressOrder,
                    &path,
                    "the last ingress rule must be a catch-all (no hostname, no path)",
                )
                .with_help("add `- service: http_status:404` at the end"),
            );
        }
        if let Some(host) = &rule.hostname {
            let bare = host.strip_prefix("*.").unwrap_or(host);
            if check_hostname(bare).is_err() || !bare.contains('.') {
                error(
                    report,
                    Code::InvalidHostname,
                    format!("{path}.hostname"),
                    format!("`{host}` is not a public host name"),
                );
            }
        }
        if let Some(regex) = &rule.path
            && (regex.is_empty() || regex.chars().any(char::is_whitespace))
        {
            error(report, Code::BadValue, format!("{path}.path"), "a path rule is a regular expression without spaces");
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
        // A path-less rule for a host name hides later rules for the same host name.
        if let (Some(host), Some(_)) = (&rule.hostname, &rule.path)
            && let Some(j) = rules[..i].iter().position(|r| r.hostname.as_ref() == Some(host) && r.path.is_none())
        {
            error(
                report,
                Code::IngressOrder,
                &path,
                format!(
                    "ingress[{j}] already matches every path of `{host}`, so this rule is never used; move it above"
                ),
            );
        }
    }
}

fn check_service(service: &str, path: &str, report: &mut Report) {
    let valid = if let Some(code) = service.strip_prefix("http_status:") {
        code.parse::<u16>().is_ok_and(|c| (100..=599).contains(&c))
    } else if let Some((scheme, rest)) = service.split_once("://") {
        matches!(scheme, "http" | "https" | "tcp" | "ssh" | "rdp" | "smb")
            && !rest.is_empty()
            && !rest.trim_end_matches('/').contains('/')
            && !rest.chars().any(char::is_whitespace)
    } else {
        matches!(service, "hello_world" | "bastion") || service.starts_with("unix:") || service.starts_with("unix+tls:")
    };
    if !valid {
        report.push(
            Diagnostic::error(Code::BadValue, path, format!("`{service}` is not a cloudflared service"))
                .with_help("use `http://localhost:80`, `https://localhost:443`, `http_status:404`, `unix:/path`, …"),
        );
    }
}

pub(super) fn tailscale(raw: &v1::Tailscale, host_name: &str, docker: bool, report: &mut Report) -> Tailscale {
    let mut tags: Vec<String> = Vec::new();
    for (i, tag) in raw.tags.iter().enumerate() {
        let name = tag.strip_prefix("tag:").unwrap_or("");
        let valid = name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !valid {
            error(
                report,
                Code::BadValue,
                format!("$.tailscale.tags[{i}]"),
                format!("`{tag}` is not a tag like `tag:server`"),
            );
        } else if !tags.contains(tag) {
            tags.push(tag.clone());
        }
    }
    let hostname = raw.hostname.clone().unwrap_or_else(|| host_name.split('.').next().unwrap_or(host_name).to_string());
    if raw.hostname.is_some() && (check_hostname(&hostname).is_err() || hostname.contains('.')) {
        error(
            report,
            Code::InvalidHostname,
            "$.tailscale.hostname",
            format!("`{hostname}` is not a single host name label"),
        );
    }
    if let Some(url) = &raw.login_server
        && !(url.starts_with("https://") || url.starts_with("http://"))
            | url.chars().any(|c| c.is_whitespace() || c == '\'')
    {
        error(report, Code::BadValue, "$.tailscale.login_server", format!("`{url}` is not an http(s) URL"));
    }
    let timeout_seconds = match parse_duration(&raw.timeout) {
        Some(s) if (10..=900).contains(&s) => s,
        _ => {
            error(
                report,
                Code::BadValue,
                "$.tailscale.timeout",
                format!("`{}` is not a duration from 10s to 15m, like `120s` or `2m`", raw.timeout),
            );
            120
        }
    };
    Tailscale {
        auth_key: raw.auth_key.clone(),
        ssh: raw.ssh,
        tags,
        hostname,
        accept_dns: raw.accept_dns.unwrap_or(!docker),
        login_server: raw.login_server.clone(),
        timeout_seconds,
    }
}

/// `90s`, `2m`, `120` (seconds) → seconds.
fn parse_duration(text: &str) -> Option<u32> {
    let (number, unit) = match text.strip_suffix('s') {
        Some(n) => (n, 1),
        None => match text.strip_suffix('m') {
            Some(n) => (n, 60),
            None => (text, 1),
        },
    };
    number.parse::<u32>().ok()?.checked_mul(unit)
}

/// Secret references must name a plausible variable or a file under the profile's directory.
pub(super) fn check_secret_refs(raw: &RawProfile, report: &mut Report) {
    let refs = [
        raw.cloudflared.as_ref().map(|c| (&c.token, "$.cloudflared.token")),
        raw.tailscale.as_ref().map(|t| (&t.auth_key, "$.tailscale.auth_key")),
        super::wireguard::secret_ref(raw),
    ];
    for (secret, path) in refs.into_iter().flatten() {
        match secret {
            SecretRef::Env(name) => {
                let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if !valid {
                    error(
                        report,
                        Code::BadValue,
                        format!("{path}.env"),
                        format!("`{name}` is not an environment variable name"),
                    );
                }
            }
            SecretRef::File(file) => {
                if let Err(why) = check_relative_path(file) {
                    error(report, Code::FileOutsideProfileDir, format!("{path}.file"), why);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("120s"), Some(120));
        assert_eq!(parse_duration("2m"), Some(120));
        assert_eq!(parse_duration("45"), Some(45));
        assert_eq!(parse_duration("soon"), None);
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
        ] {
            check_service(good, "$", &mut report);
        }
        assert!(report.diagnostics.is_empty(), "{report:?}");
        for bad in ["localhost:80", "http_status:999", "ftp://x", "http://localhost/path", "http://"] {
            check_service(bad, "$", &mut report);
        }
        assert_eq!(report.diagnostics.len(), 5);
    }
}
