//! The WireGuard interface as the host shows it: address, listen port, the exact set of peers, and the
//! public key the host reported being the one the interface really uses.

use super::Check;
use crate::expect::ExpectedState;

pub(super) fn checks<'a>(expected: &ExpectedState, get: &dyn Fn(&str) -> &'a str) -> Vec<Check> {
    let Some(wireguard) = &expected.wireguard else { return Vec::new() };
    let interface = &wireguard.interface;
    // `3: wg0    inet 10.77.0.1/24 scope global wg0\       valid_lft forever preferred_lft forever`
    let addresses: Vec<&str> = get("wg-address")
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace().skip_while(|w| *w != "inet" && *w != "inet6");
            words.next().and_then(|_| words.next())
        })
        .filter(|a| !a.starts_with("fe80:"))
        .collect();
    let mut checks = vec![Check::new(
        format!("wireguard {interface} address"),
        &wireguard.address,
        if addresses.is_empty() { "(no address; is the interface up?)".to_string() } else { addresses.join(" ") },
        addresses == [wireguard.address.as_str()],
    )];
    checks.push(Check::equal(
        format!("wireguard {interface} listen port"),
        wireguard.listen_port.to_string(),
        get("wg-port").trim(),
    ));
    let mut peers: Vec<&str> = get("wg-peers").lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    peers.sort();
    checks.push(Check::new(
        format!("wireguard {interface} peers (exact)"),
        format!("{} peer(s): {}", wireguard.peers.len(), wireguard.peers.join(" ")),
        format!("{} peer(s): {}", peers.len(), peers.join(" ")),
        peers == wireguard.peers.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    let in_use = get("wg-public-key").trim();
    let reported = get("wg-public-key-file").trim();
    let valid = crate::model::is_wireguard_key(in_use);
    checks.push(Check::new(
        format!("wireguard {interface} public key file is the key in use"),
        format!("{} = `wg show {interface} public-key`", wireguard.public_key_file),
        if !valid {
            format!("interface has no key: {in_use}")
        } else if reported == in_use {
            "the same key".to_string()
        } else {
            format!("file: {reported}; interface: {in_use}")
        },
        valid && reported == in_use,
    ));
    checks
}

#[cfg(test)]
mod tests {
    //! On probe output captured from a real guest booted from `vm-tests/profiles/wireguard.yaml`: every
    //! check passes, and each WireGuard fact made wrong, on either side, fails the check that covers it.

    use std::collections::BTreeMap;

    use super::super::{SecretDigests, observe, verify};
    use crate::effects::vm::harness::image_listeners;
    use crate::expect::{ExpectedState, expect};

    /// `target/vm-tests/wireguard/probe-first-boot.txt` from a passing scenario run.
    const PROBE: &str = include_str!("fixtures/wireguard-probe.txt");

    /// The expected state as the harness derived it in that run: it had put its own WireGuard key in
    /// place of the first peer's and its SSH key beside the deploy user's (both read back from the probe).
    fn expected() -> ExpectedState {
        let mut model = super::super::tests::validated(
            include_str!("../../vm-tests/profiles/wireguard.yaml"),
            include_bytes!("../../vm-tests/profiles/keys/deploy.pub"),
        );
        let sections = observe::sections(PROBE);
        let wireguard = model.wireguard.as_mut().expect("wireguard");
        wireguard.peers[0].public_key = sections["wg-peers"].trim().to_string();
        let harness_key = sections["keys"].lines().find(|l| l.contains("kiln-harness")).expect("harness key");
        model.user.ssh_keys.push(harness_key.trim().to_string());
        expect(&model)
    }

    fn failing(expected: &ExpectedState, sections: &BTreeMap<String, String>) -> Vec<String> {
        verify(expected, sections, &image_listeners(), &SecretDigests::default())
            .into_iter()
            .filter(|c| !c.passed)
            .map(|c| c.name)
            .collect()
    }

    #[test]
    fn the_real_guest_passes_every_check() {
        let expected = expected();
        assert!(expected.wireguard.is_some());
        assert_eq!(failing(&expected, &observe::sections(PROBE)), Vec::<String>::new());
    }

    #[test]
    fn each_expected_fact_made_wrong_fails_its_check() {
        type Mutation = (&'static str, fn(&mut ExpectedState));
        let mutations: Vec<Mutation> = vec![
            ("wireguard wg0 address", |e| e.wireguard.as_mut().unwrap().address = "10.77.0.9/24".into()),
            ("wireguard wg0 listen port", |e| e.wireguard.as_mut().unwrap().listen_port = 51821),
            ("wireguard wg0 peers (exact)", |e| {
                e.wireguard.as_mut().unwrap().peers.push("TG+auU5uUQmkpMcrQbM5iWv2ayKYq1Y/0AnHjYggqmo=".into())
            }),
            ("package wireguard-tools", |e| e.packages.push("wireguard-go".into())),
            ("unit wg-quick@wg0.service enabled", |e| {
                e.units.iter_mut().find(|u| u.name == "wg-quick@wg0.service").unwrap().enabled = false
            }),
            ("listening sockets (exact)", |e| e.listeners.retain(|l| l.port != 51820)),
            ("ufw rule set (exact)", |e| e.firewall.as_mut().unwrap().rules.retain(|r| r.interface.is_none())),
            ("secret file /etc/kiln/secrets/wireguard-wg0.key", |e| {
                e.secret_files.iter_mut().for_each(|f| f.present = false)
            }),
        ];
        let sections = observe::sections(PROBE);
        for (name, mutate) in mutations {
            let mut wrong = expected();
            mutate(&mut wrong);
            let failed = failing(&wrong, &sections);
            // The package mutation adds a package that is not installed: named after it.
            let name = if name == "package wireguard-tools" { "package wireguard-go" } else { name };
            assert!(failed.iter().any(|f| f == name), "making `{name}` wrong did not fail it; failed: {failed:?}");
        }
    }

    #[test]
    fn each_observed_fact_made_wrong_fails_its_check() {
        type Mutation = (&'static str, &'static str, fn(&str) -> String);
        let mutations: Vec<Mutation> = vec![
            ("wg-address", "wireguard wg0 address", |_| "Device \"wg0\" does not exist.".into()),
            ("wg-port", "wireguard wg0 listen port", |_| "51821".into()),
            ("wg-peers", "wireguard wg0 peers (exact)", |s| {
                format!("{s}\nnct42ljlPDaVOfU5P5wpuUPkpd7taAmDf6on1cDV5CA=")
            }),
            ("wg-peers", "wireguard wg0 peers (exact)", |_| String::new()),
            ("wg-public-key-file", "wireguard wg0 public key file is the key in use", |_| {
                "TG+auU5uUQmkpMcrQbM5iWv2ayKYq1Y/0AnHjYggqmo=".into()
            }),
            ("wg-public-key", "wireguard wg0 public key file is the key in use", |_| "(none)".into()),
            ("listeners", "listening sockets (exact)", |s| {
                s.lines().filter(|l| !l.contains(":51820 ")).collect::<Vec<_>>().join("\n")
            }),
            ("ufw-rules4", "ufw rule set (exact)", |s| {
                s.lines().filter(|l| !l.contains("in_wg0")).collect::<Vec<_>>().join("\n")
            }),
            ("ufw-rules6", "ufw rule set (exact)", |s| format!("{s}\n### tuple ### allow tcp 22 ::/0 any ::/0 in")),
            ("iptables4", "iptables agree with ufw", |s| {
                s.lines().filter(|l| !l.contains("-i wg0")).collect::<Vec<_>>().join("\n")
            }),
            ("units", "unit wg-quick@wg0.service active", |s| {
                s.replace("wg-quick@wg0.service\tactive", "wg-quick@wg0.service\tinactive")
            }),
        ];
        for (section, name, mutate) in mutations {
            let mut sections = observe::sections(PROBE);
            let value = sections.get(section).cloned().unwrap_or_default();
            let changed = mutate(&value);
            assert_ne!(changed, value, "the mutation of `{section}` changed nothing");
            sections.insert(section.to_string(), changed);
            let failed = failing(&expected(), &sections);
            assert!(
                failed.iter().any(|f| f == name),
                "changing section `{section}` did not fail `{name}`; failed: {failed:?}"
            );
        }
    }
}
