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
