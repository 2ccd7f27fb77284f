//! OpenSSH 9.2 (Debian 12's sshd): how it reads configuration drop-ins (`servconf.c`) and the options
//! of an authorized_keys line (`auth-options.c`, `sshauthopt_parse`).
//!
//! sshd keeps the first value it reads for a keyword, reads `/etc/ssh/sshd_config.d/*.conf` in name
//! order from the top of Debian's sshd_config, and lets a satisfied `Match` block override global
//! values for that connection. So a file the profile ships into sshd_config.d can undo kiln's
//! hardening by sorting first, or from a `Match` block wherever it sorts.

/// Keywords whose value kiln declares, and why: a profile file setting one (globally or in a `Match`
/// block) would silently change what the profile's `ssh` and `user` sections, kiln's firewall rules
/// and `kiln test`'s expected state say. Lowercase, as sshd compares them (`strcasecmp`).
pub const KILN_KEYWORDS: &[(&str, &str)] = &[
    ("passwordauthentication", "`ssh.password_authentication` decides it"),
    ("kbdinteractiveauthentication", "kiln turns keyboard-interactive (password) logins off"),
    ("challengeresponseauthentication", "the old name of KbdInteractiveAuthentication"),
    ("permitrootlogin", "`ssh.permit_root_login` decides it"),
    ("permitemptypasswords", "kiln turns it off"),
    ("hostkey", "kiln names the host keys cloud-init generates"),
    ("port", "the firewall, the VPN rules and the checks are for port 22"),
    ("listenaddress", "the firewall decides where SSH is reachable, not sshd"),
    ("addressfamily", "the firewall rules cover both address families"),
    ("pubkeyauthentication", "the deploy user logs in with the profile's keys"),
    ("authorizedkeysfile", "cloud-init writes the profile's keys to ~/.ssh/authorized_keys"),
    ("authorizedkeyscommand", "it would add keys the profile does not list"),
    ("authorizedkeyscommanduser", "it belongs to AuthorizedKeysCommand"),
    ("authenticationmethods", "the deploy user logs in with a key alone"),
    ("allowusers", "it decides whether the deploy user may log in"),
    ("denyusers", "it decides whether the deploy user may log in"),
    ("allowgroups", "it decides whether the deploy user may log in"),
    ("denygroups", "it decides whether the deploy user may log in"),
    ("usepam", "without PAM, sshd refuses the deploy user, whose password is locked"),
    ("forcecommand", "Kamal runs its own commands over SSH"),
    ("chrootdirectory", "Kamal needs the deploy user's whole system (docker)"),
    ("kexalgorithms", "kiln offers only key exchanges ssh-audit passes (and the one Kamal's net-ssh needs)"),
    ("ciphers", "kiln offers only ciphers ssh-audit passes"),
    ("macs", "kiln offers only MACs ssh-audit passes"),
    ("hostkeyalgorithms", "kiln's host key is Ed25519"),
    ("allowtcpforwarding", "Kamal's registry tunnel needs `ssh -R` for the deploy user, and nothing else"),
    ("allowagentforwarding", "kiln turns agent forwarding off"),
    ("x11forwarding", "kiln turns X11 forwarding off"),
    ("maxauthtries", "part of kiln's SSH baseline (CIS)"),
    ("logingracetime", "part of kiln's SSH baseline (CIS)"),
    ("clientaliveinterval", "part of kiln's SSH baseline (CIS)"),
    ("clientalivecountmax", "part of kiln's SSH baseline (CIS)"),
    ("loglevel", "VERBOSE logs the key each login used"),
];

/// The key exchanges an OpenSSH server of `version` (`major.minor`, as the release table states it) offers
/// under kiln: the post-quantum hybrids it has, strongest first, then `curve25519-sha256` when a client
/// without any (Kamal's net-ssh) must still get in. ssh-audit 3.9 passes the hybrids and warns about
/// curve25519 ("does not provide protection against post-quantum attacks"); it fails the NIST curves and
/// SHA-1 and asks for ≥ 3072-bit moduli for group exchange, so none of those is offered.
///
/// Sources: OpenSSH 8.5 added `sntrup761x25519-sha512@openssh.com`, 9.9 added `mlkem768x25519-sha256` and
/// the `sntrup761x25519-sha512` name (release notes, openssh.com/releasenotes.html). net-ssh (7.0 to 8.0,
/// `lib/net/ssh/transport/algorithms.rb`) offers curve25519-sha256 as its best key exchange when the
/// `x25519` gem is loaded, which Kamal's gemspec requires; it has no post-quantum one.
pub fn key_exchanges(version: &str, for_clients_without_post_quantum: bool) -> Vec<&'static str> {
    let at_least = |want: (u32, u32)| parse_version(version).is_some_and(|have| have >= want);
    let mut kex = Vec::new();
    if at_least((9, 9)) {
        kex.extend(["mlkem768x25519-sha256", "sntrup761x25519-sha512"]);
    }
    if at_least((8, 5)) {
        kex.push("sntrup761x25519-sha512@openssh.com");
    }
    if for_clients_without_post_quantum || kex.is_empty() {
        kex.extend(CLASSIC_KEX);
    }
    kex
}

/// The one key exchange without post-quantum protection kiln offers, under both its names: the RFC 8731
/// name Kamal's net-ssh prefers, and libssh's older one, the only one paramiko (Ansible's and Fabric's SSH
/// library; Debian 12's 2.12 here) knows: with the RFC name alone it finds no common key exchange (found by
/// the sshd-trap scenario, whose outside check uses paramiko).
pub const CLASSIC_KEX: [&str; 2] = ["curve25519-sha256", "curve25519-sha256@libssh.org"];

/// AEAD ciphers first, then CTR (net-ssh 7.0-7.2 offers only `aes*-ctr`); no CBC. Every one passes
/// ssh-audit 3.9 with OpenSSH's strict key exchange (kex-strict, the Terrapin counter-measure Debian 12's
/// 9.2p1-2+deb12u2 and every later release carry).
pub const CIPHERS: &str =
    "chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-gcm@openssh.com,aes256-ctr,aes192-ctr,aes128-ctr";

/// Encrypt-then-MAC only: ssh-audit warns about every MAC that authenticates the plaintext (and fails
/// SHA-1 and 64-bit tags). net-ssh offers both `hmac-sha2-*-etm@openssh.com` since 7.0.
pub const MACS: &str = "hmac-sha2-512-etm@openssh.com,hmac-sha2-256-etm@openssh.com,umac-128-etm@openssh.com";

/// `9.2` → (9, 2).
fn parse_version(version: &str) -> Option<(u32, u32)> {
    let (major, minor) = version.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// A line of a drop-in that kiln refuses, with the 1-based line and column of its keyword.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub line: usize,
    pub column: usize,
    pub keyword: String,
    pub why: String,
}

/// The keyword of a configuration line as sshd splits it (`strdelim`: white space or one `=`), with its
/// 1-based column; `None` for blank lines and comments.
fn keyword(line: &str) -> Option<(&str, usize)> {
    let start = line.len() - line.trim_start().len();
    let rest = &line[start..];
    if rest.is_empty() || rest.starts_with('#') {
        return None;
    }
    let end = rest.find(|c: char| c.is_whitespace() || c == '=').unwrap_or(rest.len());
    Some((&rest[..end], line[..start].chars().count() + 1))
}

/// Every line of a drop-in that sets a keyword kiln declares (in a `Match` block too) or includes
/// other files (which could set anything).
pub fn overrides(text: &str) -> Vec<Override> {
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some((word, column)) = keyword(line) else { continue };
        let lower = word.to_ascii_lowercase();
        let why = if lower == "include" {
            Some("an included file could set anything; ship its lines in this file instead".to_string())
        } else {
            KILN_KEYWORDS.iter().find(|(k, _)| *k == lower).map(|(_, why)| format!("kiln sets it: {why}"))
        };
        if let Some(why) = why {
            found.push(Override { line: i + 1, column, keyword: word.to_string(), why });
        }
    }
    found
}

/// Splits `options key…` where sshd does (`sshkey_advance_past_options`): at the first white space
/// outside double quotes. `None` when there is no such space.
pub fn split_key_options(line: &str) -> Option<(&str, &str)> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => return Some((&line[..i], line[i..].trim_start())),
            _ => {}
        }
    }
    None
}

/// Every keyword OpenSSH 9.2's sshd reads (`servconf.c`, `keywords[]`, tag V_9_2_P1), plus those
/// Debian's patches add (`DebianBanner`, GSSAPI key exchange). Any other keyword is "Bad configuration
/// option" and sshd refuses to start.
const KEYWORDS: &[&str] = &[
    "acceptenv",
    "addressfamily",
    "allowagentforwarding",
    "allowgroups",
    "allowstreamlocalforwarding",
    "allowtcpforwarding",
    "allowusers",
    "authenticationmethods",
    "authorizedkeyscommand",
    "authorizedkeyscommanduser",
    "authorizedkeysfile",
    "authorizedprincipalscommand",
    "authorizedprincipalscommanduser",
    "authorizedprincipalsfile",
    "banner",
    "casignaturealgorithms",
    "challengeresponseauthentication",
    "channeltimeout",
    "chrootdirectory",
    "ciphers",
    "clientalivecountmax",
    "clientaliveinterval",
    "compression",
    "debianbanner",
    "denygroups",
    "denyusers",
    "disableforwarding",
    "dsaauthentication",
    "exposeauthinfo",
    "fingerprinthash",
    "forcecommand",
    "gatewayports",
    "gssapiauthentication",
    "gssapicleanupcredentials",
    "gssapikexalgorithms",
    "gssapikeyexchange",
    "gssapistorecredentialsonrekey",
    "gssapistrictacceptorcheck",
    "hostbasedacceptedalgorithms",
    "hostbasedacceptedkeytypes",
    "hostbasedauthentication",
    "hostbasedusesnamefrompacketonly",
    "hostcertificate",
    "hostdsakey",
    "hostkey",
    "hostkeyagent",
    "hostkeyalgorithms",
    "ignorerhosts",
    "ignoreuserknownhosts",
    "include",
    "ipqos",
    "kbdinteractiveauthentication",
    "keepalive",
    "kerberosauthentication",
    "kerberosgetafstoken",
    "kerberosorlocalpasswd",
    "kerberosticketcleanup",
    "kexalgorithms",
    "listenaddress",
    "logingracetime",
    "loglevel",
    "logverbose",
    "macs",
    "match",
    "maxauthtries",
    "maxsessions",
    "maxstartups",
    "modulifile",
    "passwordauthentication",
    "permitemptypasswords",
    "permitlisten",
    "permitopen",
    "permitrootlogin",
    "permittty",
    "permittunnel",
    "permituserenvironment",
    "permituserrc",
    "persourcemaxstartups",
    "persourcenetblocksize",
    "pidfile",
    "port",
    "printlastlog",
    "printmotd",
    "protocol",
    "pubkeyacceptedalgorithms",
    "pubkeyacceptedkeytypes",
    "pubkeyauthentication",
    "pubkeyauthoptions",
    "rdomain",
    "rekeylimit",
    "requiredrsasize",
    "revokedkeys",
    "securitykeyprovider",
    "setenv",
    "skeyauthentication",
    "streamlocalbindmask",
    "streamlocalbindunlink",
    "strictmodes",
    "subsystem",
    "syslogfacility",
    "tcpkeepalive",
    "trustedusercakeys",
    "unusedconnectiontimeout",
    "usedns",
    "usepam",
    "versionaddendum",
    "x11displayoffset",
    "x11forwarding",
    "x11uselocalhost",
    "xauthlocation",
];

/// Keywords sshd still reads but ignores, with a log line (`sDeprecated`, `sUnsupported`).
const IGNORED_KEYWORDS: &[&str] = &[
    "authorizedkeysfile2",
    "checkmail",
    "keyregenerationinterval",
    "pamauthenticationviakbdint",
    "reversemappingcheck",
    "rhostsauthentication",
    "rhostsrsaauthentication",
    "rsaauthentication",
    "serverkeybits",
    "uselogin",
    "useprivilegeseparation",
    "verifyreversemapping",
    "afstokenpassing",
    "kerberostgtpassing",
];

/// Keywords sshd takes inside a `Match` block: OpenSSH 9.2's `servconf.c` `keywords[]` entries flagged
/// `SSHCFG_MATCH` or `SSHCFG_ALL` (tag V_9_2_P1; 10.0 adds PAMServiceName, RefuseConnection and Subsystem).
/// Any other keyword after a `Match` line of the same file makes sshd stop: "Directive '…' is not allowed
/// within a Match block" (a Match block ends with the file that holds it).
const MATCH_KEYWORDS: &[&str] = &[
    "acceptenv",
    "allowagentforwarding",
    "allowgroups",
    "allowstreamlocalforwarding",
    "allowtcpforwarding",
    "allowusers",
    "authenticationmethods",
    "authorizedkeyscommand",
    "authorizedkeyscommanduser",
    "authorizedkeysfile",
    "authorizedkeysfile2",
    "authorizedprincipalscommand",
    "authorizedprincipalscommanduser",
    "authorizedprincipalsfile",
    "banner",
    "casignaturealgorithms",
    "challengeresponseauthentication",
    "channeltimeout",
    "chrootdirectory",
    "clientalivecountmax",
    "clientaliveinterval",
    "denygroups",
    "denyusers",
    "disableforwarding",
    "exposeauthinfo",
    "forcecommand",
    "gatewayports",
    "gssapiauthentication",
    "hostbasedacceptedalgorithms",
    "hostbasedacceptedkeytypes",
    "hostbasedauthentication",
    "hostbasedusesnamefrompacketonly",
    "ignorerhosts",
    "include",
    "ipqos",
    "kbdinteractiveauthentication",
    "kerberosauthentication",
    "loglevel",
    "logverbose",
    "match",
    "maxauthtries",
    "maxsessions",
    "passwordauthentication",
    "permitemptypasswords",
    "permitlisten",
    "permitopen",
    "permitrootlogin",
    "permittty",
    "permittunnel",
    "permituserrc",
    "pubkeyacceptedalgorithms",
    "pubkeyacceptedkeytypes",
    "pubkeyauthentication",
    "pubkeyauthoptions",
    "rdomain",
    "rekeylimit",
    "requiredrsasize",
    "revokedkeys",
    "rhostsrsaauthentication",
    "rsaauthentication",
    "setenv",
    "skeyauthentication",
    "streamlocalbindmask",
    "streamlocalbindunlink",
    "trustedusercakeys",
    "unusedconnectiontimeout",
    "x11displayoffset",
    "x11forwarding",
    "x11uselocalhost",
];

/// A line after a `Match` line of the same drop-in whose keyword sshd does not take there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotInMatch {
    pub line: usize,
    pub column: usize,
    pub keyword: String,
}

/// Every line of a drop-in, after its first `Match` line, with a keyword sshd knows but refuses inside a
/// Match block (unknown keywords are `unknown_keywords`' to report).
pub fn not_allowed_in_match(text: &str) -> Vec<NotInMatch> {
    let mut in_match = false;
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some((word, column)) = keyword(line) else { continue };
        let lower = word.to_ascii_lowercase();
        if lower == "match" {
            in_match = true;
        } else if in_match && KEYWORDS.contains(&lower.as_str()) && !MATCH_KEYWORDS.contains(&lower.as_str()) {
            found.push(NotInMatch { line: i + 1, column, keyword: word.to_string() });
        }
    }
    found
}

/// A keyword sshd does not know (it refuses the whole configuration), or one it ignores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unknown {
    /// sshd stops: "Bad configuration option". With the closest keyword it knows, if any.
    Refused { line: usize, column: usize, keyword: String, suggestion: Option<&'static str> },
    /// sshd logs "Deprecated option" or "Unsupported option" and goes on.
    Ignored { line: usize, column: usize, keyword: String },
}

/// The keywords of a drop-in that sshd does not use.
pub fn unknown_keywords(text: &str) -> Vec<Unknown> {
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some((word, column)) = keyword(line) else { continue };
        let lower = word.to_ascii_lowercase();
        if KEYWORDS.contains(&lower.as_str()) {
            continue;
        }
        let keyword = word.to_string();
        found.push(if IGNORED_KEYWORDS.contains(&lower.as_str()) {
            Unknown::Ignored { line: i + 1, column, keyword }
        } else {
            let suggestion = crate::profile::shape::did_you_mean(&lower, KEYWORDS.iter().copied());
            Unknown::Refused { line: i + 1, column, keyword, suggestion }
        });
    }
    found
}

/// Options sshd takes as a bare flag; those marked `true` also as `no-OPTION` (`opt_flag`).
const FLAG_OPTIONS: &[(&str, bool)] = &[
    ("restrict", false),
    ("cert-authority", false),
    ("port-forwarding", true),
    ("agent-forwarding", true),
    ("x11-forwarding", true),
    ("touch-required", true),
    ("verify-required", true),
    ("pty", true),
    ("user-rc", true),
];

/// Options sshd takes with a double-quoted value (`opt_match` + `opt_dequote`).
const VALUE_OPTIONS: &[&str] =
    &["command", "principals", "from", "expiry-time", "environment", "permitopen", "permitlisten", "tunnel"];

/// Checks the options in front of an authorized_keys key the way `sshauthopt_parse` reads them:
/// comma-separated, names case-insensitive, values in double quotes with `\"` escapes.
pub fn check_key_options(options: &str) -> Result<(), String> {
    let mut rest = options;
    while !rest.is_empty() {
        let name_end = rest.find([',', '=']).unwrap_or(rest.len());
        let name = rest[..name_end].to_ascii_lowercase();
        rest = &rest[name_end..];
        if let Some(value) = rest.strip_prefix('=') {
            if !VALUE_OPTIONS.contains(&name.as_str()) {
                return Err(format!("sshd does not take a value for the option `{name}`"));
            }
            let Some(quoted) = value.strip_prefix('"') else {
                return Err(format!("the value of `{name}` must be in double quotes"));
            };
            let mut end = None;
            let mut escaped = false;
            for (i, c) in quoted.char_indices() {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let Some(end) = end else { return Err(format!("the value of `{name}` has no closing quote")) };
            rest = &quoted[end + 1..];
        } else {
            let negated = name.strip_prefix("no-");
            let known =
                FLAG_OPTIONS.iter().any(|(flag, negatable)| *flag == name || (*negatable && negated == Some(flag)));
            if !known {
                return Err(format!("sshd does not know the key option `{name}`"));
            }
            if name == "cert-authority" {
                return Err("`cert-authority` makes the key a certificate authority, not a login key".into());
            }
        }
        match rest.strip_prefix(',') {
            Some(next) if !next.is_empty() => rest = next,
            Some(_) => return Err("the options end with a comma".into()),
            None if rest.is_empty() => {}
            None => return Err("options are separated by commas, without spaces".into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod match_tests {
    use super::*;

    #[test]
    fn keywords_sshd_refuses_inside_a_match_block() {
        let text = "UseDNS no\nMatch Address 10.0.0.0/8\n  Banner none\n  TCPKeepAlive yes\n  PrintLastLog no\n";
        let found = not_allowed_in_match(text);
        let at: Vec<(usize, usize, &str)> = found.iter().map(|f| (f.line, f.column, f.keyword.as_str())).collect();
        assert_eq!(at, [(4, 3, "TCPKeepAlive"), (5, 3, "PrintLastLog")]);
        // Before any Match, and every keyword the block may hold, pass.
        assert!(
            not_allowed_in_match("TCPKeepAlive yes\nMatch User x\n  MaxSessions 2\n  X11Forwarding no\n").is_empty()
        );
        // Every Match keyword is one sshd knows or ignores (the table was copied right).
        let known = |k: &&str| KEYWORDS.contains(k) || IGNORED_KEYWORDS.contains(k);
        assert!(MATCH_KEYWORDS.iter().all(known), "a Match keyword sshd does not know");
    }
}

#[cfg(test)]
mod algorithm_tests {
    use super::*;

    #[test]
    fn each_openssh_offers_the_hybrids_it_has_and_curve25519_for_net_ssh() {
        assert_eq!(
            key_exchanges("10.0", true),
            [
                "mlkem768x25519-sha256",
                "sntrup761x25519-sha512",
                "sntrup761x25519-sha512@openssh.com",
                CLASSIC_KEX[0],
                CLASSIC_KEX[1]
            ]
        );
        assert_eq!(key_exchanges("9.2", true), ["sntrup761x25519-sha512@openssh.com", CLASSIC_KEX[0], CLASSIC_KEX[1]]);
        assert_eq!(key_exchanges("9.2", false), ["sntrup761x25519-sha512@openssh.com"]);
        // Before 8.5 there is no hybrid: curve25519 is offered rather than nothing.
        assert_eq!(key_exchanges("8.4", false), CLASSIC_KEX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_ins_that_undo_kiln() {
        let text =
            "# comment\nMaxSessions 20\n\nMatch User deploy\n  PasswordAuthentication yes\nPort=2222\ninclude /tmp/x\n";
        let found = overrides(text);
        let lines: Vec<(usize, usize, &str)> = found.iter().map(|o| (o.line, o.column, o.keyword.as_str())).collect();
        assert_eq!(lines, [(5, 3, "PasswordAuthentication"), (6, 1, "Port"), (7, 1, "include")]);
        assert!(overrides("MaxSessions 20\nMatch Address 10.0.0.0/8\n  Banner /etc/issue.net\n").is_empty());
        // The baseline too: forwarding for everyone, or a weak MAC, would undo it.
        let baseline = overrides("Match Address 10.0.0.0/8\n  AllowTcpForwarding yes\nMACs +hmac-sha1\n");
        assert_eq!(baseline.iter().map(|o| o.keyword.as_str()).collect::<Vec<_>>(), ["AllowTcpForwarding", "MACs"]);
    }

    #[test]
    fn keywords_sshd_knows() {
        let found =
            unknown_keywords("ClientAliveInterval 60\nPasswordAuthenticaton no\n  UseLogin no\nDebianBanner no\n");
        assert_eq!(
            found,
            [
                Unknown::Refused {
                    line: 2,
                    column: 1,
                    keyword: "PasswordAuthenticaton".into(),
                    suggestion: Some("passwordauthentication")
                },
                Unknown::Ignored { line: 3, column: 3, keyword: "UseLogin".into() },
            ]
        );
    }

    #[test]
    fn key_options_as_sshd_reads_them() {
        for good in [
            "no-agent-forwarding",
            r#"from="10.0.0.0/8,192.0.2.7",no-pty"#,
            "restrict,pty",
            r#"command="echo \"hi\"""#,
            "NO-X11-FORWARDING",
        ] {
            assert!(check_key_options(good).is_ok(), "{good}");
        }
        assert_eq!(
            split_key_options(r#"command="a b",no-pty ssh-ed25519 AAAA c"#),
            Some((r#"command="a b",no-pty"#, "ssh-ed25519 AAAA c"))
        );
        for bad in [
            "bogus",
            "from=10.0.0.0/8",
            r#"from="10.0.0.0/8"#,
            "no-restrict",
            "restrict,",
            "restrict, pty",
            "cert-authority",
            "pty=\"x\"",
        ] {
            assert!(check_key_options(bad).is_err(), "{bad}");
        }
    }
}
