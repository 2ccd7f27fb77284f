//! Host identity: hostname (RFC 1123), time zone, locale and swap size.

use super::{Host, error};
use crate::catalog::Code;
use crate::diag::Report;
use crate::profile::v1;

/// Top-level areas of IANA zone names; a zone outside them is almost certainly a typo.
const TZ_AREAS: &[&str] = &[
    "Africa",
    "America",
    "Antarctica",
    "Arctic",
    "Asia",
    "Atlantic",
    "Australia",
    "Europe",
    "Indian",
    "Pacific",
    "Etc",
];

pub(super) fn validate(raw: &v1::Host, report: &mut Report) -> Option<Host> {
    let before = report.count(crate::diag::Severity::Error);
    if let Err(why) = check_hostname(&raw.hostname) {
        error(
            report,
            Code::InvalidHostname,
            "$.host.hostname",
            format!("`{}` is not a valid host name: {why}", raw.hostname),
        );
    }
    if !valid_timezone(&raw.timezone) {
        error(
            report,
            Code::BadValue,
            "$.host.timezone",
            format!("`{}` is not an IANA time zone name like `Etc/UTC` or `Europe/Berlin`", raw.timezone),
        );
    }
    if !valid_locale(&raw.locale) {
        error(
            report,
            Code::BadValue,
            "$.host.locale",
            format!("`{}` is not a locale like `C.UTF-8` or `en_US.UTF-8`", raw.locale),
        );
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
    (report.count(crate::diag::Severity::Error) == before).then(|| Host {
        hostname: raw.hostname.clone(),
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
    Ok(())
}

fn valid_timezone(tz: &str) -> bool {
    if tz == "UTC" {
        return true;
    }
    let mut parts = tz.split('/');
    let area_ok = parts.next().is_some_and(|area| TZ_AREAS.contains(&area));
    let rest: Vec<&str> = parts.collect();
    area_ok
        && !rest.is_empty()
        && rest
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'+')))
}

fn valid_locale(locale: &str) -> bool {
    if matches!(locale, "C" | "POSIX" | "C.UTF-8" | "C.utf8") {
        return true;
    }
    let (base, codeset) = locale.split_once('.').unwrap_or((locale, ""));
    let (language, territory) = base.split_once('_').unwrap_or((base, ""));
    let language_ok = (2..=3).contains(&language.len()) && language.bytes().all(|b| b.is_ascii_lowercase());
    let territory_ok =
        territory.is_empty() || (territory.len() == 2 && territory.bytes().all(|b| b.is_ascii_uppercase()));
    let codeset_ok = codeset.is_empty() || matches!(codeset, "UTF-8" | "utf8" | "ISO-8859-1" | "ISO-8859-15");
    language_ok && territory_ok && codeset_ok
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
        for bad in ["", "-app", "app-", "app_1", "a..b", "app.123", &"a".repeat(64), "ap p", "app;reboot"] {
            assert!(check_hostname(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn time_zones_and_locales() {
        assert!(valid_timezone("Europe/Berlin") && valid_timezone("America/Argentina/Buenos_Aires"));
        assert!(valid_timezone("UTC") && valid_timezone("Etc/GMT+5"));
        assert!(!valid_timezone("Mars/Olympus") && !valid_timezone("Europe/") && !valid_timezone("3"));
        assert!(valid_locale("en_US.UTF-8") && valid_locale("C.UTF-8") && valid_locale("de_DE"));
        assert!(!valid_locale("english") && !valid_locale("en_US.UTF-8; rm"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("2X"), None);
        assert_eq!(parse_size("99999999999999999999T"), None);
    }
}
