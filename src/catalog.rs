//! The catalog of diagnostic codes: one stable name per kind of problem, referenced by tests and CI.
//!
//! Names are part of kiln's interface (`--format json` prints them), so they never change meaning.

macro_rules! catalog {
    ($($variant:ident => $name:literal : $summary:literal,)*) => {
        /// A kind of problem kiln reports. `name()` is the stable identifier printed as `error[name]`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code { $($variant,)* }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            pub fn name(self) -> &'static str {
                match self { $(Code::$variant => $name,)* }
            }

            /// One line saying what the problem is, for `kiln explain` style listings and the README.
            pub fn summary(self) -> &'static str {
                match self { $(Code::$variant => $summary,)* }
            }
        }
    };
}

catalog! {
    // Input and YAML.
    InputTooLarge => "input-too-large": "the profile is larger than 1 MiB",
    InputNotText => "input-not-text": "the profile is not UTF-8 text (binary data or another encoding)",
    YamlSyntax => "yaml-syntax": "the YAML is malformed",
    YamlDuplicateKey => "duplicate-key": "a mapping has the same key twice",
    YamlAliasBudget => "alias-budget": "anchors and aliases expand to too many nodes (a YAML bomb)",
    YamlDepth => "nesting-too-deep": "the YAML nests deeper than any profile needs",
    YamlUnsupported => "yaml-unsupported": "a YAML feature profiles do not use (tags, several documents, complex keys)",
    // Shape of the profile.
    UnknownKey => "unknown-key": "a key that the profile format does not have",
    MissingKey => "missing-key": "a required key is absent",
    WrongType => "wrong-type": "a value of the wrong type",
    BadValue => "invalid-value": "a value outside what the field accepts",
    Version => "unsupported-version": "the profile's `version` is not one kiln reads",
    // Semantics.
    ReleaseAssumed => "release-assumed": "no `host.os`: kiln renders for its default release",
    ReleaseMismatch => "release-mismatch": "a setting that the target release lacks or handles differently",
    NoSecurityUpdates => "no-security-updates": "package sources without the release's security updates",
    InvalidHostname => "invalid-hostname": "not an RFC 1123 host name",
    HostOnlyAtRole => "host-only-at-role": "a host's own value (name, tunnel address, tailnet name) given for the whole role of a profile that lists its hosts",
    DuplicateHost => "duplicate-host": "two hosts of a fleet with the same name, tunnel address or Tailscale host name",
    InvalidUserName => "invalid-user-name": "not a POSIX portable user name",
    InvalidSshKey => "invalid-ssh-key": "an SSH public key that does not parse",
    WeakSshKey => "weak-ssh-key": "an SSH key type or size that is refused (DSA, RSA under 2048 bits)",
    DuplicateSshKey => "duplicate-ssh-key": "the same SSH key listed twice (an error if the two lines' options differ)",
    FileOutsideProfileDir => "path-escapes-profile-dir": "a file reference that leaves the profile's directory",
    FileUnreadable => "file-unreadable": "a file the profile references cannot be read",
    LiteralSecret => "literal-secret": "a secret written in plain text instead of as a reference",
    SecretInImage => "secret-in-image": "a file the profile ships holds a secret (it would be baked into golden images)",
    PortOutOfRange => "port-out-of-range": "a port outside 1-65535 or a reversed range",
    DuplicateRule => "duplicate-rule": "the same firewall rule, package, interface, open port or WireGuard peer listed twice",
    PortClash => "port-clash": "two services want the same port",
    ContradictoryRule => "contradictory-rule": "rules or settings that contradict each other",
    NoFirewall => "no-firewall": "no firewall section: every listening port is reachable",
    WeakSsh => "weak-ssh": "SSH settings that weaken the host (passwords, root login)",
    HardeningOff => "hardening-off": "a system hardening item kiln applies by default is turned off",
    Lockout => "lockout": "no way left to log in over SSH: the firewall closes it, the user has no key, or its shell refuses logins",
    DockerBypassesFirewall => "docker-bypasses-firewall": "Docker-published ports would be reachable despite the firewall",
    IngressOrder => "ingress-order": "cloudflared ingress rules that are unreachable or lack a catch-all",
    Template => "template-error": "a file body template that does not render",
    ReusableAuthKey => "reusable-secret-in-user-data": "secrets in user-data are readable through the metadata service",
    UserDataTooLarge => "user-data-too-large": "the rendered user-data exceeds the target's size limit",
    EncodingUnsupported => "encoding-unsupported": "the target's API does not accept this encoding",
    Internal => "internal": "a bug in kiln (please report it)",
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_and_kebab_case() {
        let mut seen = HashSet::new();
        for code in Code::ALL {
            assert!(seen.insert(code.name()), "duplicate code name {}", code.name());
            assert!(code.name().chars().all(|c| c.is_ascii_lowercase() || c == '-' || c.is_ascii_digit()));
            assert!(!code.summary().is_empty());
        }
    }
}
