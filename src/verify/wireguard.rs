//! The WireGuard interface as the host shows it: address, listen port, the exact set of peers, and the
//! public key the host reported being the one the interface really uses.

use anyhow::Result;

use super::observe::{self, Section, StateProbe};
use super::{Check, check_names};
use crate::expect::ExpectedState;

pub(super) fn checks(expected: &ExpectedState, probe: &StateProbe) -> Result<Vec<Check>> {
    let Some(wireguard) = &expected.wireguard else { return Ok(Vec::new()) };
    let interface = &wireguard.interface;
    let addresses = observe::parse_interface_addresses(probe.get(Section::WgAddress)?)?;
    let mut checks = vec![Check::new(
        format!("wireguard {interface} address"),
        &wireguard.address,
        if addresses.is_empty() { "(no address; is the interface up?)".to_string() } else { addresses.join(" ") },
        addresses == [wireguard.address.as_str()],
    )];
    let port = observe::parse_listen_port(probe.get(Section::WgPort)?)?;
    checks.push(Check::equal(
        format!("wireguard {interface} listen port"),
        wireguard.listen_port.to_string(),
        port.map_or_else(|| "(no interface)".to_string(), |p| p.to_string()),
    ));
    let peers = observe::parse_wireguard_peers(probe.get(Section::WgPeers)?)?;
    checks.push(Check::new(
        check_names::wireguard_peers(interface),
        format!("{} peer(s): {}", wireguard.peers.len(), wireguard.peers.join(" ")),
        format!("{} peer(s): {}", peers.len(), peers.join(" ")),
        peers == wireguard.peers.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    let in_use = probe.get(Section::WgPublicKey)?.trim();
    let reported = probe.get(Section::WgPublicKeyFile)?.trim();
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
    Ok(checks)
}

#[cfg(test)]
pub(crate) mod tests {
    //! On probe output captured from a real guest booted from `vm-tests/profiles/wireguard.yaml`: every
    //! check passes, and each WireGuard fact made wrong, on either side, fails the check that covers it.

    use super::super::observe::{Section, StateProbe};
    use super::super::{SecretDigests, verify};
    use crate::effects::vm::harness::image_listeners;
    use crate::expect::{ExpectedState, expect};

    /// `target/vm-tests/wireguard/probe-first-boot.txt` from a passing scenario run, trailer included.
    const PROBE: &str = include_str!("fixtures/wireguard-probe.txt");

    fn probe() -> StateProbe {
        StateProbe::parse(PROBE, 0, "").expect("the fixture reads")
    }

    /// The expected state as the harness derived it in that run: it had put its own WireGuard key in
    /// place of the first peer's and its SSH key beside the deploy user's (both read back from the probe).
    pub(crate) fn expected() -> ExpectedState {
        let mut model = super::super::tests::as_tested(
            include_str!("../../vm-tests/profiles/wireguard.yaml"),
            include_bytes!("../../vm-tests/profiles/keys/deploy.pub"),
        );
        let probe = probe();
        let wireguard = model.wireguard.as_mut().expect("wireguard");
        wireguard.peers[0].public_key = probe.get(Section::WgPeers).unwrap().trim().to_string();
        let harness_key =
            probe.get(Section::Keys).unwrap().lines().find(|l| l.contains("kiln-harness")).expect("harness key");
        model.user.ssh_keys.push(harness_key.trim().to_string());
        expect(&model)
    }

    fn failing(expected: &ExpectedState, probe: &StateProbe) -> Vec<String> {
        verify(expected, probe, &image_listeners(), &SecretDigests::default())
            .expect("the probe reads")
            .into_iter()
            .filter(|c| !c.passed)
            .map(|c| c.name)
            .collect()
    }

    #[test]
    fn the_real_guest_passes_every_check() {
        let expected = expected();
        assert!(expected.wireguard.is_some());
        assert_eq!(failing(&expected, &probe()), Vec::<String>::new());
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
        let probe = probe();
        for (name, mutate) in mutations {
            let mut wrong = expected();
            mutate(&mut wrong);
            let failed = failing(&wrong, &probe);
            // The package mutation adds a package that is not installed: named after it.
            let name = if name == "package wireguard-tools" { "package wireguard-go" } else { name };
            assert!(failed.iter().any(|f| f == name), "making `{name}` wrong did not fail it; failed: {failed:?}");
        }
    }

    #[test]
    fn each_observed_fact_made_wrong_fails_its_check() {
        type Mutation = (Section, &'static str, fn(&str) -> String);
        let mutations: Vec<Mutation> = vec![
            // No interface: the probe's guard leaves the section empty.
            (Section::WgAddress, "wireguard wg0 address", |_| String::new()),
            (Section::WgPort, "wireguard wg0 listen port", |_| "51821".into()),
            (Section::WgPort, "wireguard wg0 listen port", |_| String::new()),
            (Section::WgPeers, "wireguard wg0 peers (exact)", |s| {
                format!("{s}\nnct42ljlPDaVOfU5P5wpuUPkpd7taAmDf6on1cDV5CA=")
            }),
            (Section::WgPeers, "wireguard wg0 peers (exact)", |_| String::new()),
            (Section::WgPublicKeyFile, "wireguard wg0 public key file is the key in use", |_| {
                "TG+auU5uUQmkpMcrQbM5iWv2ayKYq1Y/0AnHjYggqmo=".into()
            }),
            // `wg show wg0 public-key` of an interface without a private key.
            (Section::WgPublicKey, "wireguard wg0 public key file is the key in use", |_| "(none)".into()),
            (Section::Listeners, "listening sockets (exact)", |s| {
                s.lines().filter(|l| !l.contains(":51820 ")).collect::<Vec<_>>().join("\n")
            }),
            (Section::UfwRules4, "ufw rule set (exact)", |s| {
                s.lines().filter(|l| !l.contains("in_wg0")).collect::<Vec<_>>().join("\n")
            }),
            (Section::UfwRules6, "ufw rule set (exact)", |s| {
                format!("{s}\n### tuple ### allow tcp 22 ::/0 any ::/0 in")
            }),
            (Section::Iptables4, "iptables agree with ufw", |s| {
                s.lines().filter(|l| !l.contains("-i wg0")).collect::<Vec<_>>().join("\n")
            }),
            (Section::Units, "unit wg-quick@wg0.service active", |s| {
                s.replace("wg-quick@wg0.service\tactive", "wg-quick@wg0.service\tinactive")
            }),
        ];
        for (section, name, mutate) in mutations {
            let mut probe = probe();
            let value = probe.get(section).unwrap().to_string();
            let changed = mutate(&value);
            assert_ne!(changed, value, "the mutation of `{section:?}` changed nothing");
            probe.set(section, changed);
            let failed = failing(&expected(), &probe);
            assert!(
                failed.iter().any(|f| f == name),
                "changing section `{section:?}` did not fail `{name}`; failed: {failed:?}"
            );
        }
    }

    /// What the probe used to put in a section when `ip` or `wg` failed is not a reading any more: a
    /// harness error, not a failed check.
    #[test]
    fn error_text_in_a_section_is_a_harness_error() {
        for (section, text) in [
            (Section::WgAddress, "Device \"wg0\" does not exist."),
            (Section::WgPort, "Unable to access interface: No such device"),
            (Section::WgPeers, "Unable to access interface: No such device"),
        ] {
            let mut probe = probe();
            probe.set(section, text);
            let error = verify(&expected(), &probe, &image_listeners(), &SecretDigests::default()).unwrap_err();
            assert!(error.to_string().contains(text), "{error}");
        }
    }
}
