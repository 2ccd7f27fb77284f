//! `kiln kamal`: the part of Kamal 2's `config/deploy.yml` that the host profile decides (the host's address on
//! the VPN, the SSH user, kamal-proxy kept behind cloudflared), as commented YAML to merge into the user's own.
//!
//! Keys follow Kamal 2.10+'s documented configuration (`lib/kamal/configuration/docs/{servers,role,ssh,proxy}.yml`;
//! `proxy.run` came in 2.10.0). The printed text is parsed back and compared with what was meant before it is
//! printed (translate, then validate the output), and `tests/data/kamal-docs/` holds the documented keys.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;

use crate::model::Model;

/// Kamal's primary role, which runs behind the proxy by default.
pub const ROLE: &str = "web";

/// The configuration kiln derives, before it is written as YAML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KamalConfig {
    /// The address Kamal's SSH reaches each host at, and why that one: one per host of a fleet.
    pub hosts: Vec<Server>,
    pub ssh_user: String,
    /// What the profile decides about kamal-proxy: nothing without cloudflared.
    pub proxy: Option<Proxy>,
}

/// One host as Kamal reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub address: String,
    pub comment: String,
}

/// kamal-proxy's settings the profile decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    /// The host names cloudflared's ingress sends to the proxy (loopback port 80); empty without cloudflared.
    pub hosts: Vec<String>,
    /// Publish 80/443 on loopback only: cloudflared is the proxy's only client.
    pub loopback_only: bool,
}

/// Why there is nothing to print.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KamalError {
    #[error(
        "the profile has no VPN (`wireguard` or `tailscale`), so kiln does not know the address Kamal's SSH reaches \
         the host at; write `servers` yourself"
    )]
    NoVpn,
    #[error("the profile has no `docker` section: Kamal deploys containers, and this host would not run them")]
    NoDocker,
}

/// What kiln knows of the deploy configuration for the host `model` describes.
pub fn config(model: &Model) -> Result<KamalConfig, KamalError> {
    if model.docker.is_none() {
        return Err(KamalError::NoDocker);
    }
    let (host, host_comment) = if let Some(wireguard) = &model.wireguard {
        let why = if wireguard.ssh_only_through_tunnel {
            "the firewall lets SSH in only through the tunnel"
        } else {
            "reached through the tunnel"
        };
        (wireguard.address.address.to_string(), format!("WireGuard tunnel address ({}): {why}", wireguard.interface))
    } else if let Some(tailscale) = &model.tailscale {
        (tailscale.hostname.clone(), "Tailscale host name (MagicDNS): reached through the tailnet".to_string())
    } else {
        return Err(KamalError::NoVpn);
    };
    let proxy = model.cloudflared.as_ref().map(|_| {
        let hosts = model
            .cloudflared
            .as_ref()
            .and_then(|c| c.ingress.as_ref())
            .into_iter()
            .flatten()
            .filter(|rule| is_local_port_80(&rule.service))
            .filter_map(|rule| rule.hostname.clone())
            .fold(Vec::new(), |mut hosts, host| {
                if !hosts.contains(&host) {
                    hosts.push(host);
                }
                hosts
            });
        Proxy { hosts, loopback_only: model.cloudflared.is_some() }
    });
    // Without cloudflared the profile decides nothing about the proxy: Kamal's defaults stand.
    let proxy = proxy.filter(|p| p.loopback_only || !p.hosts.is_empty());
    Ok(KamalConfig {
        hosts: vec![Server { address: host, comment: host_comment }],
        ssh_user: model.user.name.clone(),
        proxy,
    })
}

/// [`config`] for every host of a fleet: one role, one server each (the role's settings are the same for all).
pub fn fleet_config(models: &[&Model]) -> Result<KamalConfig, KamalError> {
    let mut configs = models.iter().map(|m| config(m));
    let Some(first) = configs.next() else { return Err(KamalError::NoVpn) };
    let mut merged = first?;
    for next in configs {
        merged.hosts.extend(next?.hosts);
    }
    Ok(merged)
}

/// An ingress service that reaches kamal-proxy's HTTP port on the host itself.
fn is_local_port_80(service: &str) -> bool {
    let Some(rest) = service.strip_prefix("http://") else { return false };
    let authority = rest.split('/').next().unwrap_or_default();
    // An IPv6 address is bracketed (`[::1]:80`): its colons are not the port's.
    let (host, port) = match authority.strip_prefix('[').and_then(|a| a.split_once(']')) {
        Some((host, rest)) => (host, rest.strip_prefix(':').unwrap_or("80")),
        None => authority.rsplit_once(':').unwrap_or((authority, "80")),
    };
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    loopback && port == "80"
}

/// The YAML, with a comment on each line that says why.
pub fn render(config: &KamalConfig, profile: &str) -> String {
    let mut out = format!(
        "# The part of Kamal 2's config/deploy.yml that {profile} decides (kiln kamal).\n\
         # Merge it into yours: service, image, registry, builder and env stay yours.\n\
         servers:\n  {ROLE}:\n    hosts:\n{}\
         ssh:\n  user: {}  # the profile's deploy user: in the docker group, so Kamal needs no sudo\n",
        config
            .hosts
            .iter()
            .map(|s| format!("      - {}  # {}\n", yaml_string(&s.address), s.comment))
            .collect::<String>(),
        yaml_string(&config.ssh_user),
    );
    if let Some(proxy) = &config.proxy {
        out.push_str("proxy:\n");
        if !proxy.hosts.is_empty() {
            out.push_str("  # The host names cloudflared's ingress sends to http://localhost:80.\n  hosts:\n");
            for host in &proxy.hosts {
                out.push_str(&format!("    - {}\n", yaml_string(host)));
            }
        }
        if proxy.loopback_only {
            out.push_str(
                "  ssl: false  # TLS ends at Cloudflare's edge; cloudflared reaches the proxy over loopback HTTP\n\
                 \x20 run:\n\
                 \x20   bind_ips:  # Kamal 2.10+: kamal-proxy publishes 80/443 on loopback only\n\
                 \x20     - 127.0.0.1\n",
            );
        }
    }
    out
}

/// A plain YAML scalar when the text is one, else a double-quoted string (JSON's quoting is YAML's).
fn yaml_string(text: &str) -> String {
    let plain = !text.is_empty()
        && text.chars().all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c))
        && !text.starts_with(['-', '.'])
        && !matches!(text.to_ascii_lowercase().as_str(), "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "~")
        && text.parse::<f64>().is_err();
    if plain { text.to_string() } else { serde_json::Value::String(text.into()).to_string() }
}

/// What the printed YAML must say, read back with a YAML parser (unknown keys refused).
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Printed {
    servers: BTreeMap<String, PrintedRole>,
    ssh: PrintedSsh,
    proxy: Option<PrintedProxy>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct PrintedRole {
    hosts: Vec<String>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct PrintedSsh {
    user: String,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct PrintedProxy {
    hosts: Option<Vec<String>>,
    ssl: Option<bool>,
    run: Option<PrintedRun>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct PrintedRun {
    bind_ips: Vec<String>,
}

/// Parses `yaml` and compares it with `config`: a mismatch is kiln's bug, reported rather than printed.
pub fn validate(yaml: &str, config: &KamalConfig) -> Result<(), String> {
    let printed: Printed =
        serde_saphyr::from_str(yaml).map_err(|e| format!("kiln kamal wrote YAML that does not parse: {e}"))?;
    let mut problems = Vec::new();
    let addresses: Vec<String> = config.hosts.iter().map(|s| s.address.clone()).collect();
    if printed.servers.keys().collect::<Vec<_>>() != [ROLE] || printed.servers[ROLE].hosts != addresses {
        problems.push(format!("servers: {:?}", printed.servers));
    }
    if printed.ssh.user != config.ssh_user {
        problems.push(format!("ssh.user: {}", printed.ssh.user));
    }
    let expected_proxy = config.proxy.as_ref().map(|p| PrintedProxy {
        hosts: (!p.hosts.is_empty()).then(|| p.hosts.clone()),
        ssl: p.loopback_only.then_some(false),
        run: p.loopback_only.then(|| PrintedRun { bind_ips: vec!["127.0.0.1".into()] }),
    });
    if printed.proxy != expected_proxy {
        problems.push(format!("proxy: {:?}", printed.proxy));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("kiln kamal printed other values than it meant: {}", problems.join("; ")))
    }
}

/// Every key path the printed YAML uses (`proxy.run.bind_ips`), roles written as `<role>`.
pub fn key_paths(yaml: &str) -> Result<Vec<String>, String> {
    let value: serde_json::Value = serde_saphyr::from_str(yaml).map_err(|e| e.to_string())?;
    Ok(value_key_paths(&value))
}

/// Every key path of a parsed deploy configuration (or of Kamal's documentation of one), roles as `<role>`.
pub fn value_key_paths(value: &serde_json::Value) -> Vec<String> {
    let mut paths = Vec::new();
    collect_paths(value, "", &mut paths);
    paths
}

fn collect_paths(value: &serde_json::Value, prefix: &str, paths: &mut Vec<String>) {
    if let serde_json::Value::Object(map) = value {
        for (key, child) in map {
            let key = if prefix == "servers" { "<role>" } else { key.as_str() };
            let path = if prefix.is_empty() { key.to_string() } else { format!("{prefix}.{key}") };
            paths.push(path.clone());
            collect_paths(child, &path, paths);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_port_80_reaches_the_proxy() {
        for yes in
            ["http://localhost:80", "http://localhost", "http://127.0.0.1:80/", "http://[::1]:80", "http://[::1]"]
        {
            assert!(is_local_port_80(yes), "{yes}");
        }
        for no in [
            "http://localhost:3000",
            "https://localhost:443",
            "http://10.0.0.5:80",
            "http_status:404",
            "http://[::1]:8080",
        ] {
            assert!(!is_local_port_80(no), "{no}");
        }
    }

    #[test]
    fn strings_that_yaml_would_retype_are_quoted() {
        assert_eq!(yaml_string("deploy"), "deploy");
        assert_eq!(yaml_string("10.77.0.1"), "10.77.0.1");
        for odd in ["yes", "1.5", "no", "a b", "x: y", "-x", ""] {
            assert!(yaml_string(odd).starts_with('"'), "{odd}");
        }
    }

    fn config() -> KamalConfig {
        KamalConfig {
            hosts: vec![Server {
                address: "10.77.0.1".into(),
                comment: "WireGuard tunnel address (wg0): the firewall lets SSH in only through the tunnel".into(),
            }],
            ssh_user: "deploy".into(),
            proxy: Some(Proxy { hosts: vec!["app.example.com".into()], loopback_only: true }),
        }
    }

    #[test]
    fn what_is_printed_reads_back_as_meant() {
        let yaml = render(&config(), "app.yaml");
        validate(&yaml, &config()).unwrap();
        let paths = key_paths(&yaml).unwrap();
        assert!(
            paths.contains(&"proxy.run.bind_ips".to_string()) && paths.contains(&"servers.<role>.hosts".to_string())
        );
    }

    #[test]
    fn a_printed_value_other_than_meant_is_caught() {
        let yaml = render(&config(), "app.yaml");
        for (from, to) in [
            ("10.77.0.1", "10.77.0.9"),
            ("user: deploy", "user: root"),
            ("127.0.0.1", "0.0.0.0"),
            ("ssl: false", "ssl: true"),
        ] {
            assert!(validate(&yaml.replace(from, to), &config()).is_err(), "{from} → {to}");
        }
        assert!(validate(&format!("{yaml}builder:\n  arch: amd64\n"), &config()).is_err(), "an unknown key");
    }
}
