//! Host identity: release, hostname (RFC 1123), time zone, locale and swap size.

use super::{Host, error};
use crate::catalog::Code;
use crate::consumers::debian;
use crate::diag::{Diagnostic, Report};
use crate::profile::shape::did_you_mean;
use crate::profile::v1;

pub(super) fn validate(raw: &v1::Host, report: &mut Report) -> Option<Host> {
    let before = report.count(crate::diag::Severity::Error);
    let hostname = raw.hostname.clone().unwrap_or_default();
    // A profile without one fails to parse (`profile::check_hostname_given`); a fleet's hosts put theirs in.
    if let Some(name) = &raw.hostname
        && let Err(why) = check_hostname(name)
    {
        error(report, Code::InvalidHostname, "$.host.hostname", format!("`{name}` is not a valid host name: {why}"));
    }
    let base = debian::base_system(super::release::of(raw));
    if !base.timezones().contains(raw.timezone.as_str()) {
        let mut diagnostic = Diagnostic::error(
            Code::BadValue,
            "$.host.timezone",
            format!("`{}` is not a time zone in {} tzdata", raw.timezone, base.whose),
        );
        let legacy = debian::base_system(super::Release::Debian12).timezones().contains(raw.timezone.as_str());
        if legacy {
            // Debian 13 moved the backward-compatible names to tzdata-legacy, which cloud images lack.
            diagnostic = diagnostic.with_help(
                "this is a legacy name (Debian 13 moved those to the tzdata-legacy package): use the zone it links to, e.g. `America/New_York` for `US/Eastern`",
            );
        } else if let Some(near) = did_you_mean(&raw.timezone, base.timezones().iter().copied()) {
            diagnostic = diagnostic.with_help(format!("did you mean `{near}`?"));
        }
        report.push(diagnostic);
    }
    if !debian::is_builtin_locale(&raw.locale) && base.locale_charset(&raw.locale).is_none() {
        let mut diagnostic = Diagnostic::error(
            Code::BadValue,
            "$.host.locale",
            format!("`{}` is not a locale in {} /usr/share/i18n/SUPPORTED", raw.locale, base.whose),
        );
        if let Some(near) = did_you_mean(&raw.locale, base.locale_names()) {
            diagnostic = diagnostic.with_help(format!("did you mean `{near}`?"));
        }
        report.push(diagnostic);
    }
    let swap = raw.swap.as_ref().and_then(|text| match parse_size(text) {
        Some(bytes) if bytes >= 16 * 1024 * 1024 => Some((bytes, text.clone())),
        _ => {
            error(
                report,
                Code::BadValue,
                "$.host.swap",
                format!("`{text}` is not a swap size of at least 16M, like `512M` or `2G`"),
            );
            None
        }
    });
    let release = raw.os.unwrap_or_else(|| {
        let assumed = super::release::DEFAULT.facts();
        report.push(
            Diagnostic::warning(
                Code::ReleaseAssumed,
                "$.host.os",
                format!("no `host.os`: rendering for {} ({})", assumed.title, assumed.name),
            )
            .with_help(format!(
                "say which release the host runs, e.g. `os: {}`; the package sources and the cloud-init schema depend on it",
                assumed.name
            )),
        );
        super::release::DEFAULT
    });
    (report.count(crate::diag::Severity::Error) == before).then(|| Host {
        release,
        hostname,
        timezone: raw.timezone.clone(),
        locale: raw.locale.clone(),
        swap,
    })
}

/// RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens, 1-63 each, 253 total.
pub fn check_hostname(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 253 {
        return Err("it must be 1 to 253 characters long");
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("each dot-separated part must be 1 to 63 characters long");
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err("only letters, digits, `-` and `.` are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a part may not start or end with `-`");
        }
    }
    if name.rsplit('.').next().is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit())) {
        return Err("the last part may not be all digits");
    }
    // RFC 6761 reserves `localhost` and everything under it for the loopback interface.
    let lower = name.to_ascii_lowercase();
    if lower == "localhost" || lower.ends_with(".localhost") || lower == "localhost.localdomain" {
        return Err("`localhost` names the loopback interface, not a host (RFC 6761)");
    }
    Ok(())
}

/// `512M`, `2G`, `1024K` or plain bytes → bytes. Binary units, as `fallocate` and cloud-init use.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, ""),
    };
    let number: u64 = digits.parse().ok()?;
    let multiplier: u64 = match unit {
        "" | "B" => 1,
        "K" | "k" | "KiB" => 1 << 10,
        "M" | "m" | "MiB" => 1 << 20,
        "G" | "g" | "GiB" => 1 << 30,
        "T" | "t" | "TiB" => 1 << 40,
        _ => return None,
    };
    number.checked_mul(multiplier)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_follow_rfc_1123() {
        for good in ["app-1", "a", "web.example.com", "1app"] {
            assert!(check_hostname(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-app",
            "app-",
            "app_1",
            "a..b",
            "app.123",
            &"a".repeat(64),
            "ap p",
            "app;reboot",
            "localhost",
            "LocalHost",
            "a.localhost",
        ] {
            assert!(check_hostname(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("2X"), None);
        assert_eq!(parse_size("99999999999999999999T"), None);
    }
}
