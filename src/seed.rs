//! NoCloud seed contents: the instance id, `meta-data` and the default `network-config` that go next to
//! `user-data` on a `cidata` volume. Pure; `effects::seed_image` packs them into a vfat image.

use sha2::{Digest, Sha256};
use std::fmt::Write as _;

/// Versions the hash input, so a future change to what feeds the id cannot collide with ids made today.
const INSTANCE_ID_DOMAIN: &[u8] = b"kiln-nocloud-instance-id-v1\0";

/// A stable instance id derived from the seed's contents: `kiln-` and 16 hex digits (64 bits) of SHA-256.
///
/// cloud-init runs its per-instance modules again whenever the instance id changes, so the id changes exactly
/// when the configuration does: re-seeding a VM with new user-data or network-config re-provisions it, and
/// re-seeding it with the same files does not. Each part is prefixed with its length so that moving bytes from
/// one file to the other cannot produce the same hash input.
pub fn instance_id(user_data: &[u8], network_config: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(INSTANCE_ID_DOMAIN);
    for part in [user_data, network_config] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    format!("kiln-{}", crate::encoding::hex(&hasher.finalize()[..8]))
}

/// The NoCloud `meta-data` file: `instance-id` and `local-hostname`.
///
/// Both values are written as JSON strings, which are also YAML 1.1 double-quoted scalars, so no value can turn
/// into a number, a boolean, `null` or extra keys, whatever the caller passes.
pub fn meta_data(instance_id: &str, hostname: &str) -> String {
    format!("instance-id: {}\nlocal-hostname: {}\n", yaml_json_string(instance_id), yaml_json_string(hostname))
}

/// The `network-config` kiln writes when a profile has none: network-config version 2, DHCPv4 on every NIC
/// whose kernel name starts with `en` (systemd's predictable names for Ethernet: `ens3` or `enp0s3` for a QEMU
/// virtio NIC on Debian 12). Interfaces named otherwise (`eth0`, `wl*`, `lo`) are left alone.
///
/// The name glob only survives cloud-init's netplan renderer, which passes version 2 through unchanged; kiln's
/// Debian 12 image has no ifupdown, so cloud-init 22.4 picks netplan. Its `eni` and `networkd` renderers would
/// instead configure an interface literally called `primary`. Match by `macaddress` if another renderer is
/// in play.
pub fn default_network_config() -> &'static str {
    "version: 2\nethernets:\n  primary:\n    match:\n      name: \"en*\"\n    dhcp4: true\n"
}

/// Quotes a string as JSON that is also valid YAML 1.1: besides JSON's mandatory escapes, everything PyYAML
/// (cloud-init's reader) refuses to read raw or treats as a line break is written as `\uXXXX`.
fn yaml_json_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            // C0 and C1 controls and DEL; NEL and the Unicode line and paragraph separators, which YAML 1.1
            // folds as line breaks; the BOM and the two non-characters PyYAML rejects.
            '\u{0}'..='\u{1f}'
            | '\u{7f}'..='\u{9f}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{feff}'
            | '\u{fffe}'
            | '\u{ffff}' => {
                // Writing into a String cannot fail.
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn instance_id_has_the_documented_shape() {
        let id = instance_id(b"#cloud-config\n", default_network_config().as_bytes());
        assert_eq!(id.len(), 5 + 16);
        assert!(id.starts_with("kiln-"));
        assert!(id[5..].chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{id}");
    }

    #[test]
    fn instance_id_is_stable_and_content_addressed() {
        let a = instance_id(b"#cloud-config\n", b"version: 2\n");
        assert_eq!(a, instance_id(b"#cloud-config\n", b"version: 2\n"));
        assert_ne!(a, instance_id(b"#cloud-config\nhostname: x\n", b"version: 2\n"));
        assert_ne!(a, instance_id(b"#cloud-config\n", b"version: 1\n"));
        // Pinned (computed independently with Python's hashlib) so that an accidental change to the hash input,
        // which would re-provision every VM seeded before it, fails here.
        assert_eq!(instance_id(b"", b""), "kiln-dc504cd27111b0a2");
        assert_eq!(a, "kiln-2d7768fb32100e65");
    }

    #[test]
    fn different_splits_do_not_collide() {
        assert_ne!(instance_id(b"ab", b"c"), instance_id(b"a", b"bc"));
        assert_ne!(instance_id(b"abc", b""), instance_id(b"", b"abc"));
        assert_ne!(instance_id(b"", b""), instance_id(b"\0", b""));
    }

    fn parse(yaml: &str) -> BTreeMap<String, String> {
        serde_saphyr::from_str(yaml).expect("meta-data is valid YAML")
    }

    #[test]
    fn meta_data_is_yaml_with_both_keys() {
        let text = meta_data("kiln-0123456789abcdef", "web-1");
        assert_eq!(text, "instance-id: \"kiln-0123456789abcdef\"\nlocal-hostname: \"web-1\"\n");
        let map = parse(&text);
        assert_eq!(map.get("instance-id").map(String::as_str), Some("kiln-0123456789abcdef"));
        assert_eq!(map.get("local-hostname").map(String::as_str), Some("web-1"));
        assert_eq!(map.len(), 2);
    }

    #[test]
    fn meta_data_values_cannot_change_type_or_inject_keys() {
        let hostile = [
            "yes",
            "null",
            "0644",
            "1e3",
            "~",
            "a: b",
            "x\ninstance-id: evil",
            "\"quoted\"",
            "back\\slash",
            "#comment",
            "tab\there",
            "nel\u{85}ls\u{2028}ps\u{2029}",
            "\u{feff}bom",
            "bell\u{7}del\u{7f}",
            "ünïcödé 🦀",
            "",
        ];
        for value in hostile {
            let text = meta_data(value, value);
            assert_eq!(text.lines().count(), 2, "{text:?}");
            let map = parse(&text);
            assert_eq!(map.get("instance-id").map(String::as_str), Some(value), "{text:?}");
            assert_eq!(map.get("local-hostname").map(String::as_str), Some(value), "{text:?}");
            // Each value is also a JSON string, as documented.
            let json_value = text.lines().next().and_then(|l| l.strip_prefix("instance-id: ")).expect("first line");
            assert_eq!(serde_json::from_str::<String>(json_value).expect("JSON string"), value);
        }
    }

    #[test]
    fn default_network_config_is_version_2_dhcp_on_en_star() {
        let text = default_network_config();
        assert_eq!(text, "version: 2\nethernets:\n  primary:\n    match:\n      name: \"en*\"\n    dhcp4: true\n");
        let value: serde_json::Value = serde_saphyr::from_str(text).expect("valid YAML");
        assert_eq!(
            value,
            serde_json::json!({
                "version": 2,
                "ethernets": { "primary": { "match": { "name": "en*" }, "dhcp4": true } }
            })
        );
        // The glob matches the names Debian 12 gives a QEMU virtio NIC.
        let glob = value["ethernets"]["primary"]["match"]["name"].as_str().expect("string");
        let prefix = glob.strip_suffix('*').expect("a prefix glob");
        assert!(["ens3", "enp0s3"].iter().all(|name| name.starts_with(prefix)));
        assert!(!"lo".starts_with(prefix));
    }
}
