//! wireguard: every /etc/wireguard/IFACE.conf the user-data writes is brought up by the release's
//! `wg-quick up IFACE` (what wg-quick@IFACE.service runs: `wg-quick strip` + `wg setconf`, `ip address
//! add` per Address, routes, PostUp loading the private key) on a wireguard-go interface in a network
//! namespace of its own (tests/oracles/wireguard.sh), then `wg show` and `ip` must report exactly the
//! expected peers, listen port and address, and `wg-quick down` must take it down again.
//! Endpoint host names get a /etc/hosts entry (nothing resolves offline); a private key the user-data
//! does not carry is generated with `wg genkey`, as kiln's wireguard-key helper does at first boot.

use std::net::IpAddr;

use super::sandbox::{self, Mode, Outputs};
use super::userdata::{File, UserData};
use super::{Prepared, Verdicts, distinct};

const CONFIG_DIR: &str = "/etc/wireguard/";
/// Where endpoint host names point (TEST-NET-1, RFC 5737): wg resolves them when it configures a peer.
const ENDPOINT_ADDRESS: &str = "192.0.2.50";

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Input {
    interface: String,
    files: Vec<File>,
    hosts: Vec<String>,
    genkey: Option<String>,
}

pub fn check(cases: &[Prepared]) -> Verdicts {
    let per_case: Vec<Vec<Input>> = cases.iter().map(|c| inputs(&c.data)).collect();
    let (keys, of_input) = distinct(per_case.iter().flatten().cloned().map(Some).collect());
    let outputs = sandbox::run("wireguard.sh", Mode::Each, &keys, |dir, input| {
        dir.files(&input.files);
        dir.write("interface", &input.interface);
        dir.lines("hosts", &input.hosts);
        if let Some(key) = &input.genkey {
            dir.write("genkey", key);
        }
    });
    let mut next = of_input.into_iter();
    cases
        .iter()
        .zip(&per_case)
        .map(|(case, inputs)| {
            let mut failures = Vec::new();
            for input in inputs {
                let k = next.next().flatten().expect("every interface was judged");
                failures.extend(judge(case, input, &outputs[k]));
            }
            if let Some(expected) = &case.expected.wireguard
                && !inputs.iter().any(|i| i.interface == expected.interface)
            {
                failures.push(format!("no {CONFIG_DIR}{}.conf in write_files", expected.interface));
            }
            failures
        })
        .collect()
}

/// One input per configuration file: the file, the key files its PostUp/PreUp lines name, host entries.
fn inputs(data: &UserData) -> Vec<Input> {
    let configs = data.files_under(&[CONFIG_DIR]).filter(|f| f.path.ends_with(".conf"));
    configs
        .map(|config| {
            let interface = config.path[CONFIG_DIR.len()..].trim_end_matches(".conf").to_string();
            let text = String::from_utf8_lossy(&config.content);
            let key = text
                .lines()
                .filter(|l| l.trim_start().starts_with("PostUp") || l.trim_start().starts_with("PreUp"))
                .find_map(|l| l.split_once("private-key").map(|(_, rest)| rest.split_whitespace().next().unwrap_or("")))
                .filter(|k| k.starts_with('/'))
                .map(str::to_string);
            let mut files = vec![config.clone()];
            files.extend(key.iter().filter_map(|k| data.file(k)).cloned());
            let hosts = text
                .lines()
                .filter_map(|l| l.split_once('=').filter(|(k, _)| k.trim().eq_ignore_ascii_case("endpoint")))
                .filter_map(|(_, v)| v.trim().rsplit_once(':').map(|(host, _)| host.to_string()))
                .filter(|host| host.trim_matches(['[', ']']).parse::<IpAddr>().is_err())
                .map(|host| format!("{ENDPOINT_ADDRESS} {host}"))
                .collect();
            Input { genkey: key.filter(|k| data.file(k).is_none()), interface, files, hosts }
        })
        .collect()
}

fn judge(case: &Prepared, input: &Input, out: &Outputs) -> Vec<String> {
    let interface = &input.interface;
    let up = out.record("up");
    if up.rc != 0 {
        return vec![format!("wg-quick up {interface}: {}", up.said())];
    }
    // wg-quick's own warnings (a configuration others can read, for one).
    let mut failures: Vec<String> =
        up.err.lines().filter(|l| l.starts_with("Warning:")).map(|l| format!("wg-quick up {interface}: {l}")).collect();
    match case.expected.wireguard.as_ref().filter(|w| &w.interface == interface) {
        None => failures.push(format!("{CONFIG_DIR}{interface}.conf brings up an interface no expectation names")),
        Some(expected) => {
            let mut peers: Vec<String> = out.record("peers").out.lines().map(str::to_string).collect();
            peers.sort();
            if peers != expected.peers {
                failures.push(format!("wg show {interface} peers: {peers:?}, expected {:?}", expected.peers));
            }
            let port = out.record("port").out;
            if port.trim() != expected.listen_port.to_string() {
                failures.push(format!(
                    "wg show {interface} listen-port: {}, expected {}",
                    port.trim(),
                    expected.listen_port
                ));
            }
            let address = out.record("address").out;
            let family = if expected.address.contains(':') { "inet6" } else { "inet" };
            if !address.contains(&format!(" {family} {} ", expected.address)) {
                failures.push(format!("{interface} does not have address {}: {}", expected.address, address.trim()));
            }
        }
    }
    let down = out.record("down");
    if down.rc != 0 {
        failures.push(format!("wg-quick down {interface}: {}", down.said()));
    }
    failures
}
