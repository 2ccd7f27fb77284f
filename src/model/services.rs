//! The two daemons that replace open ports: cloudflared (HTTP in) and Tailscale (SSH in), and the
//! references to their secrets.

use super::files::check_relative_path;
use super::host::check_hostname;
use super::{Cloudflared, IngressRule, SecretRef, Tailscale, error};
use crate::catalog::Code;
use crate::diag::Report;
use crate::profile::v1::{self, RawProfile};

pub(super) fn cloudflared(raw: &v1::Cloudflared, report: &mut Report) -> Cloudflared {
    let ingress = raw.ingress.as_ref().map(|rules| {
        crate::consumers::cloudflared::check_ingress(rules, report);
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
}
