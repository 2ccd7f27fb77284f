//! ufw 0.36.2 (Debian 12's `ufw` package): what its command-line parser accepts, from
//! `/usr/sbin/ufw`, `ufw/parser.py` (`UFWCommandRule.parse`) and `ufw/common.py` (`set_interface`).

use crate::model::Cidr;

/// Words ufw's rule parser looks for anywhere in the argument list *before* it removes the comment
/// (`argv.count('in')`, `'log' in argv`, parser.py): a comment that is exactly one of them is taken
/// for the keyword and the command fails.
const COMMENT_WORDS: &[&str] = &["in", "out", "log", "log-all"];

/// The same for an interface name, which also comes before the comment: `comment` there is taken for
/// the option (`argv.index("comment")` finds the first one).
const INTERFACE_WORDS: &[&str] = &["in", "out", "log", "log-all", "comment"];

/// Prefixes `/usr/sbin/ufw` takes out of *any* argument before parsing (`--rootdir=`, `--datadir=`):
/// an argument starting with one is silently used as ufw's root directory.
const HIJACKED_PREFIXES: &[&str] = &["--rootdir=", "--datadir="];

/// ufw refuses `'` in a comment ("Comment may not contain \"'\"", parser.py: its status output
/// quotes comments with `'`). kiln writes the typographic apostrophe instead, which ufw stores (hex
/// encoded, UTF-8) and shows as written.
pub const APOSTROPHE_SUBSTITUTE: char = '\u{2019}';

/// The comment as kiln hands it to ufw, or why ufw would refuse it.
pub fn comment(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("an empty comment is no comment: omit `comment`".into());
    }
    if let Some(word) = COMMENT_WORDS.iter().find(|w| **w == text) {
        return Err(format!("ufw takes a comment that is exactly `{word}` for its own keyword and refuses the rule"));
    }
    if let Some(prefix) = HIJACKED_PREFIXES.iter().find(|p| text.starts_with(**p)) {
        return Err(format!("ufw reads an argument starting with `{prefix}` as its own option"));
    }
    Ok(text.replace('\'', &APOSTROPHE_SUBSTITUTE.to_string()))
}

/// An interface name as `ufw allow in on NAME` takes it: common.py `set_interface` (1-15 characters of
/// `a-z A-Z 0-9 _ - . + , = % @`, not `.` or `..`, no `!` or `:`), minus the parser's own words. A
/// trailing `+` is iptables' wildcard (`wg+`).
pub fn interface(name: &str) -> Result<(), String> {
    if !(1..=15).contains(&name.len()) {
        return Err("an interface name is 1 to 15 characters".into());
    }
    if name == "." || name == ".." {
        return Err("`.` and `..` are not interface names".into());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'+' | b',' | b'=' | b'%' | b'@'))
    {
        return Err("only letters, digits and `_ - . + , = % @` are allowed".into());
    }
    if INTERFACE_WORDS.contains(&name) {
        return Err(format!("ufw takes `{name}` for its own keyword"));
    }
    Ok(())
}

/// A source network as ufw stores it (and as kiln passes it): util.py `normalize_address` drops a
/// host's `/32` or `/128` and prints IPv6 in its compressed form (`inet_ntop`, which Rust's `Display`
/// matches: RFC 5952).
pub fn source_text(network: &Cidr) -> String {
    if network.is_host() { network.address.to_string() } else { network.to_string() }
}

/// Whether a ufw interface pattern matches a concrete interface name: iptables' `-i NAME+` matches
/// every name starting with NAME (xtables `xtables_parse_interface`), otherwise names must be equal.
pub fn interface_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('+') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_ufw_takes() {
        assert_eq!(comment("Let's Encrypt").unwrap(), "Let\u{2019}s Encrypt");
        assert_eq!(comment("$(reboot) `id` \"q\"").unwrap(), "$(reboot) `id` \"q\"");
        assert_eq!(comment("IN").unwrap(), "IN", "ufw's keyword checks are case-sensitive");
        assert_eq!(comment("comment").unwrap(), "comment", "the first `comment` is the option");
        for bad in ["", "in", "out", "log", "log-all", "--rootdir=/tmp", "--datadir=x"] {
            assert!(comment(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn interfaces_ufw_takes() {
        for good in ["wg0", "tailscale0", "ens3", "eth+", "br-1.2", "on", "wg=1"] {
            assert!(interface(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "in", "log", "comment", "eth0:1", "a!", "a b", "a/b", "averyveryverylongname"] {
            assert!(interface(bad).is_err(), "{bad}");
        }
        assert!(
            interface_matches("wg+", "wg0") && !interface_matches("wg0", "wg01") && interface_matches("ens3", "ens3")
        );
    }
}
