//! What a booted guest shows: the probe script the harness runs in it, and parsers for its output.
//!
//! Pure: the script is built from the expected state (which user, units, files to look at) and its
//! output parsed from text, so both are unit-tested without a VM.

use std::collections::BTreeMap;

use crate::expect::{ExpectedState, KERNEL_SOCKET, Listener, UfwRule};
use crate::templates::shell_quote;

const MARK: &str = "@@kiln:";

/// One bash script printing every section the checks need, each after a `@@kiln:NAME@@` line.
pub fn probe_script(expected: &ExpectedState) -> String {
    let user = shell_quote(&expected.user.name);
    let units: Vec<String> = expected.units.iter().map(|u| shell_quote(&u.name)).collect();
    let files: Vec<String> = expected.secret_files.iter().map(|f| shell_quote(&f.path)).collect();
    let profile_files: Vec<String> = expected.files.iter().map(|f| shell_quote(&f.path)).collect();
    let mut s = String::from("set -u\nexport LC_ALL=C\nsection() { echo; echo \"@@kiln:$1@@\"; }\n");
    let mut add = |name: &str, body: &str| {
        s.push_str(&format!("section {name}\n{body}\n"));
    };
    add("hostname", "hostname");
    add("passwd", &format!("getent passwd {user} || true"));
    add("groups", &format!("id -nG {user} 2>/dev/null || true"));
    add(
        "keys",
        &format!(
            "home=$(getent passwd {user} | cut -d: -f6); [ -n \"$home\" ] && cat \"$home/.ssh/authorized_keys\" 2>/dev/null || true"
        ),
    );
    add("passwd-status", &format!("passwd -S {user} 2>/dev/null || true"));
    add("sudo", &format!("sudo -n -l -U {user} 2>&1 || true"));
    add(
        "sshd",
        "sshd -T 2>/dev/null | grep -Ei '^(passwordauthentication|permitrootlogin|kbdinteractiveauthentication) ' || true",
    );
    add("packages", "dpkg-query -W -f='${Package}\\t${db:Status-Abbrev}\\n'");
    add(
        "units",
        &format!(
            "for u in {}; do printf '%s\\t%s\\t%s\\n' \"$u\" \"$(systemctl is-active \"$u\" 2>/dev/null)\" \"$(systemctl is-enabled \"$u\" 2>/dev/null)\"; done",
            units.join(" ")
        ),
    );
    add("ufw-status", "ufw status verbose 2>&1 || true");
    add("ufw-rules4", "grep '^### tuple ###' /etc/ufw/user.rules 2>/dev/null || true");
    add("ufw-rules6", "grep '^### tuple ###' /etc/ufw/user6.rules 2>/dev/null || true");
    add("iptables4", "iptables -S ufw-user-input 2>/dev/null || true");
    add("iptables6", "ip6tables -S ufw6-user-input 2>/dev/null || true");
    add("docker-user", "iptables -S DOCKER-USER 2>/dev/null || true");
    add("listeners", "ss -H -ltnup 2>/dev/null || true");
    add(
        "secret-files",
        &format!(
            "for f in {}; do stat --printf '%n\\t%a\\t%U\\n' \"$f\" 2>/dev/null || printf '%s\\tmissing\\t-\\n' \"$f\"; done",
            files.join(" ")
        ),
    );
    add("timezone", "cat /etc/timezone");
    add("locale", "cat /etc/default/locale");
    // `locale charmap` names the charset, or says "Cannot set LC_CTYPE" for a locale not generated.
    add("locale-charmap", &format!("env -i LANG={} locale charmap 2>&1", shell_quote(&expected.locale)));
    add(
        "files",
        &format!(
            "for f in {}; do if [ -f \"$f\" ]; then printf '%s\\t%s\\n' \"$(stat -c '%n\t%a\t%U\t%G' \"$f\")\" \"$(sha256sum < \"$f\" | cut -d' ' -f1)\"; else printf '%s\\tmissing\\n' \"$f\"; fi; done",
            profile_files.join(" ")
        ),
    );
    add("standin-cloudflared", "cat /var/lib/kiln-standin/cloudflared.json 2>/dev/null || true");
    add("standin-tailscale", "cat /var/lib/kiln-standin/tailscale-up.json 2>/dev/null || true");
    add("failed-units", "systemctl --failed --plain --no-legend 2>/dev/null || true");
    if let Some(wireguard) = &expected.wireguard {
        // Never `wg show … dump` or `private-key`: those print the private key.
        let interface = shell_quote(&wireguard.interface);
        add("wg-address", &format!("ip -o addr show dev {interface} 2>&1 || true"));
        add("wg-port", &format!("wg show {interface} listen-port 2>&1 || true"));
        add("wg-peers", &format!("wg show {interface} peers 2>&1 || true"));
        add("wg-public-key", &format!("wg show {interface} public-key 2>&1 || true"));
        add("wg-public-key-file", &format!("cat {} 2>&1 || true", shell_quote(&wireguard.public_key_file)));
    }
    s
}

/// Splits probe output into its sections.
pub fn sections(output: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let mut current: Option<(String, Vec<&str>)> = None;
    for line in output.lines() {
        if let Some(name) = line.strip_prefix(MARK).and_then(|r| r.strip_suffix("@@")) {
            if let Some((n, lines)) = current.take() {
                map.insert(n, lines.join("\n").trim().to_string());
            }
            current = Some((name.to_string(), Vec::new()));
        } else if let Some((_, lines)) = current.as_mut() {
            lines.push(line);
        }
    }
    if let Some((n, lines)) = current {
        map.insert(n, lines.join("\n").trim().to_string());
    }
    map
}

/// `### tuple ### allow udp 41641 0.0.0.0/0 any 0.0.0.0/0 in comment=6869` → a rule.
/// Fields: action, proto, dport, dst, sport, src, direction[_iface], then optional `comment=HEX`.
pub fn parse_ufw_tuple(line: &str, ipv6: bool) -> Option<UfwRule> {
    let fields: Vec<&str> = line.strip_prefix("### tuple ###")?.split_whitespace().collect();
    if fields.len() < 7 {
        return None;
    }
    let direction = fields[6];
    let interface = direction.split_once('_').map(|(_, iface)| iface.to_string());
    let comment = fields.get(7).and_then(|c| c.strip_prefix("comment=")).and_then(decode_hex);
    Some(UfwRule {
        ipv6,
        action: fields[0].to_string(),
        proto: fields[1].to_string(),
        port: fields[2].to_string(),
        from: fields[5].to_string(),
        interface,
        comment,
    })
}

fn decode_hex(hex: &str) -> Option<String> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> =
        (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok()).collect();
    String::from_utf8(bytes?).ok()
}

/// One line of `ss -H -ltnup` → a listener; addresses are reduced to `any`, `loopback` or `specific`.
pub fn parse_ss_line(line: &str) -> Option<Listener> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() < 5 {
        return None;
    }
    let proto = fields[0].to_string();
    let local = fields[4];
    let (address, port) = local.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let address = address.trim_start_matches('[').trim_end_matches(']');
    let address = address.split('%').next().unwrap_or(address);
    let scope = match address {
        "*" | "0.0.0.0" | "::" => "any",
        a if a.starts_with("127.") || a == "::1" => "loopback",
        _ => "specific",
    };
    // No `users:` at all: the kernel holds the socket (WireGuard's does).
    let process = match line.split_once("users:(") {
        Some((_, rest)) => rest.split('"').nth(1).unwrap_or("?"),
        None => KERNEL_SOCKET,
    }
    .to_string();
    Some(Listener { proto, port, scope: scope.into(), process })
}

/// `deploy : deploy sudo docker` or `deploy sudo docker` (from `id -nG`) → group names.
pub fn parse_groups(text: &str) -> Vec<String> {
    text.split_whitespace().filter(|w| *w != ":").map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ufw_tuples() {
        let rule =
            parse_ufw_tuple("### tuple ### allow udp 41641 0.0.0.0/0 any 0.0.0.0/0 in comment=7473", false).unwrap();
        assert_eq!((rule.proto.as_str(), rule.port.as_str(), rule.comment.as_deref()), ("udp", "41641", Some("ts")));
        let iface = parse_ufw_tuple("### tuple ### allow any any ::/0 any ::/0 in_tailscale0", true).unwrap();
        assert_eq!(iface.interface.as_deref(), Some("tailscale0"));
        assert!(parse_ufw_tuple("### tuple ### allow", false).is_none());
    }

    #[test]
    fn ss_lines() {
        let l = parse_ss_line(
            "tcp   LISTEN 0      128          0.0.0.0:22        0.0.0.0:*    users:((\"sshd\",pid=612,fd=3))",
        )
        .unwrap();
        assert_eq!((l.proto.as_str(), l.port, l.scope.as_str(), l.process.as_str()), ("tcp", 22, "any", "sshd"));
        let l = parse_ss_line(
            "udp   UNCONN 0      0       127.0.0.53%lo:53        0.0.0.0:*    users:((\"systemd-resolve\",pid=1,fd=3))",
        )
        .unwrap();
        assert_eq!((l.scope.as_str(), l.process.as_str()), ("loopback", "systemd-resolve"));
        let l = parse_ss_line(
            "tcp   LISTEN 0      128             [::]:22           [::]:*    users:((\"sshd\",pid=612,fd=4))",
        )
        .unwrap();
        assert_eq!(l.scope, "any");
    }

    #[test]
    fn sections_split() {
        let map = sections("noise\n@@kiln:a@@\n1\n2\n\n@@kiln:b@@\n\n@@kiln:c@@\nx\n");
        assert_eq!(map["a"], "1\n2");
        assert_eq!(map["b"], "");
        assert_eq!(map["c"], "x");
    }
}
