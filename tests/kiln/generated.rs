//! Generated profiles against the real programs: every profile `kiln check --strict` accepts must pass
//! every oracle (`crate::oracles`), and every diagnostic must say where (file:line:col). (`--strict`: a
//! warning is kiln saying it cannot vouch for something, such as an owner a listed package may create.)
//!
//! The generator draws realistic and awkward values for every section (ports and ranges, sources in
//! both families and odd spellings, interfaces, comments, names, file paths, modes, owners, bodies,
//! templates and typed variables, WireGuard peers, cloudflared ingress, packages), writes each profile
//! as YAML and loads it the way `kiln check` does. Runs are seeded: `KILN_GENERATED_SEED=N` reproduces
//! a run, `KILN_GENERATED_COUNT=N` changes its size (default 600), `KILN_GENERATED_DEBUG=1` prints every
//! diagnostic of the refused profiles (to tune the generator).

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use kiln::lower::Stage;
use kiln::profile::v1::*;

use crate::oracles::{self, Case};
use crate::support::render_stage;

const DEFAULT_SEED: u64 = 0x6b69_6c6e_0009;
const DEFAULT_COUNT: usize = 600;
const DEPLOY_KEY: &str = include_str!("../../profiles/keys/deploy.pub");

/// splitmix64: small, seedable, the same sequence on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `percent`/100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T: ?Sized>(&mut self, items: &[&'a T]) -> &'a T {
        items[self.below(items.len())]
    }

    fn some<T>(&mut self, percent: u64, make: impl FnOnce(&mut Rng) -> T) -> Option<T> {
        self.chance(percent).then(|| make(self))
    }
}

/// Picks from `valid` mostly, from `invalid` with probability `percent_invalid`/100: every dimension
/// is usually right, so a profile is accepted often enough, and each can go wrong on its own.
fn choose<'a>(rng: &mut Rng, valid: &[&'a str], invalid: &[&'a str], percent_invalid: u64) -> &'a str {
    if !invalid.is_empty() && rng.chance(percent_invalid) { rng.pick(invalid) } else { rng.pick(valid) }
}

/// How often a dimension draws from its invalid values.
const WRONG: u64 = 4;

/// Fragments of comments and bodies: plain words, shell and YAML metacharacters, quotes, Unicode.
const TEXT: &[&str] = &[
    "app",
    "Let's Encrypt",
    "it's",
    "$(reboot)",
    "`id`",
    "\"quoted\"",
    "back\\slash",
    "#hash",
    "a: b",
    "- item",
    "allow",
    "to any",
    "yes",
    "0644",
    "~",
    "{x}",
    "ünïcode",
    "日本",
    "  ",
    "comment",
    "on",
    "port 22",
];
/// Comments ufw refuses (its own keywords and options).
const BAD_COMMENTS: &[&str] = &["in", "out", "log", "log-all", "--rootdir=/tmp", ""];

fn text(rng: &mut Rng, max_words: usize) -> String {
    (0..1 + rng.below(max_words)).map(|_| rng.pick(TEXT)).collect::<Vec<_>>().join(" ")
}

const HOSTNAMES: &[&str] = &["app-1", "web.example.com", "h", "db-primary.internal.example", "x1"];
const BAD_HOSTNAMES: &[&str] = &["localhost", "-bad", "a_b", "app.123"];
const TIMEZONES: &[&str] = &["Etc/UTC", "UTC", "Europe/Berlin", "US/Eastern", "EST5EDT", "GMT", "Asia/Kolkata"];
const BAD_TIMEZONES: &[&str] = &["Europe/Berlim", "Mars/Olympus", "../../etc/passwd"];
const LOCALES: &[&str] = &["C.UTF-8", "C.UTF-8", "C", "POSIX", "en_US.UTF-8", "de_DE.UTF-8"];
const BAD_LOCALES: &[&str] = &["en_US.UTF8", "klingon", "C.utf8"];
const USERS: &[&str] = &["deploy", "app", "kamal", "ci-bot", "web_1"];
const BAD_USERS: &[&str] = &["staff", "users", "operator", "_apt", "docker", "Deploy", "root"];
const SHELLS: &[&str] = &["/bin/bash", "/bin/bash", "/bin/sh", "/usr/bin/bash", "/bin/dash"];
const BAD_SHELLS: &[&str] = &["/usr/bin/zsh", "/usr/sbin/nologin", "bash", "/bin/false"];
const SOURCES: &[&str] = &[
    "10.0.0.0/8",
    "192.168.1.0/24",
    "203.0.113.7",
    "203.0.113.7/32",
    "2001:db8::/32",
    "2001:DB8:0::/48",
    "2001:db8::1",
    "fd00::/8",
    "0.0.0.0/0",
];
const BAD_SOURCES: &[&str] = &["203.0.113.7/24", "2001:db8::1/64", "300.1.1.1", "example.com"];
const INTERFACES: &[&str] = &["ens4", "eth1", "eth+", "br-lan", "a.b", "enp7s0"];
const BAD_INTERFACES: &[&str] = &["log", "in", "eth0:1", "..", "averyveryverylongname"];
const PATHS: &[&str] = &[
    "/etc/app/config.yml",
    "/etc/app/nested/deeper.conf",
    "/opt/app/run.sh",
    "/usr/local/bin/tool",
    "/srv/www/index.html",
    "/etc/ssh/sshd_config.d/50-app.conf",
    "/etc/ssh/sshd_config.d/05-early.conf",
    "/etc/systemd/system/app.service",
    "/etc/sysctl.d/90-app.conf",
];
const BAD_PATHS: &[&str] = &[
    "/etc/hosts",
    "/etc/ufw/user.rules",
    "/etc/docker/daemon.json",
    "/home/deploy/.ssh/authorized_keys",
    "/proc/sys/vm/swappiness",
    "/etc/sudoers.d/app",
    "/etc/cloud/cloud.cfg.d/99.cfg",
    "etc/relative",
];
const SSHD_LINES: &[&str] = &[
    "MaxSessions 20",
    "PrintLastLog no",
    "UseDNS no",
    "Banner /etc/issue.net",
    "Match Address 10.0.0.0/8\n  Banner none",
    "TCPKeepAlive yes",
];
const BAD_SSHD_LINES: &[&str] = &[
    "PasswordAuthentication yes",
    "PermitRootLogin yes",
    "Match User deploy\n  PasswordAuthentication yes",
    "Port 2222",
    "UsePAM no",
    "PasswordAuthenticaton no",
    "Include /etc/other.conf",
    "AllowTcpForwarding yes",
    "MACs +hmac-sha1",
    "Match Address 10.0.0.0/8\n  X11Forwarding yes",
];
const MODES: &[&str] = &["0644", "0600", "0640", "0755", "0700", "0444"];
const BAD_MODES: &[&str] = &["4755", "2755", "0999", "rw-r--r--"];
/// `USER` stands for the profile's deploy user.
const OWNERS: &[&str] = &["root:root", "root:root", "USER:USER", "root:USER", "www-data:www-data", "root:adm"];
const BAD_OWNERS: &[&str] = &["app:app", "root", "nobody:nosuchgroup"];
pub(crate) const REGEXES: &[&str] =
    &["^/api/", "^/\\.well-known/acme-challenge/", "(?i)^/admin", "^/(v1|v2)/", "\\p{L}+", "\\.(css|js)$"];
pub(crate) const BAD_REGEXES: &[&str] = &["(", "a{1001}", "(?x)a", "[a-z&&b]", "\\p{Greek}"];
const SERVICES: &[&str] = &[
    "http://localhost:80",
    "https://localhost:443",
    "http://127.0.0.1:3000",
    "http_status:404",
    "unix:/run/app.sock",
    "tcp://127.0.0.1:5432",
    "hello_world",
];
const BAD_SERVICES: &[&str] = &["http://localhost:80/", "ftp://x", "http_status:1000", "localhost:80"];
const PACKAGES: &[&str] = &["htop", "curl", "jq", "vim-tiny", "git", "rsync"];
const BAD_PACKAGES: &[&str] = &["docker-ce", "Bad_Name"];
const WG_ADDRESSES: &[&str] = &["10.77.0.1/24", "10.99.5.1/16", "fd00:77::1/64", "10.8.0.1/24"];
const BAD_WG_ADDRESSES: &[&str] = &["100.100.0.1/24", "172.17.5.1/24", "10.77.0.1", "0.0.0.0/0"];
const KEY_OPTIONS: &[&str] =
    &["from=\"10.0.0.0/8\",no-pty", "no-agent-forwarding,no-X11-forwarding", "restrict,pty", "command=\"echo 'hi'\""];
const BAD_KEY_OPTIONS: &[&str] = &["bogus-option", "from=10.0.0.0/8", "cert-authority"];
const OTHER_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBxWybPIDxpvBwMJC1XACxY6G8IUePVSjP7WQSQCSUwn ops@example";

fn port(rng: &mut Rng) -> PortSpec {
    if rng.chance(WRONG) {
        return if rng.chance(50) { PortSpec::Single(0) } else { PortSpec::Range("9010-9000".into()) };
    }
    match rng.below(6) {
        0 => PortSpec::Range(format!("{}-{}", 8000 + rng.below(100), 8100 + rng.below(100))),
        1 => PortSpec::Range("9000:9010".into()),
        _ => PortSpec::Single(1024 + rng.below(60000) as i64),
    }
}

fn proto(rng: &mut Rng) -> Proto {
    if rng.chance(70) { Proto::Tcp } else { Proto::Udp }
}

fn wireguard_key(rng: &mut Rng) -> String {
    let bytes: Vec<u8> = (0..32).map(|_| rng.next() as u8).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn firewall(rng: &mut Rng, ssh_rule: bool) -> Firewall {
    let policy = |rng: &mut Rng, usual: Policy| {
        if rng.chance(100 - WRONG) { usual } else { *rng.pick(&[&Policy::Deny, &Policy::Reject, &Policy::Allow]) }
    };
    let mut allow: Vec<AllowRule> = (0..rng.below(4))
        .map(|_| AllowRule {
            port: port(rng),
            proto: proto(rng),
            from: rng.some(50, |rng| choose(rng, SOURCES, BAD_SOURCES, WRONG).to_string()),
            comment: rng
                .some(60, |rng| if rng.chance(WRONG) { rng.pick(BAD_COMMENTS).to_string() } else { text(rng, 4) }),
        })
        .collect();
    // A way in for SSH, most of the time: from a network, or through a trusted interface below.
    if ssh_rule && rng.chance(60) {
        allow.push(AllowRule {
            port: PortSpec::Single(22),
            proto: Proto::Tcp,
            from: Some("10.0.0.0/8".into()),
            comment: rng.some(50, |rng| text(rng, 3)),
        });
    }
    Firewall {
        incoming: policy(rng, Policy::Deny),
        outgoing: policy(rng, Policy::Allow),
        allow,
        allow_in_on: {
            let mut interfaces: Vec<String> = Vec::new();
            for _ in 0..rng.below(3) {
                let name = choose(rng, INTERFACES, BAD_INTERFACES, WRONG).to_string();
                if !interfaces.contains(&name) {
                    interfaces.push(name);
                }
            }
            interfaces
        },
    }
}

fn wireguard(rng: &mut Rng) -> Wireguard {
    let endpoints = ["203.0.113.50:51820", "[2001:db8::7]:51820", "vpn.example.com:51820"];
    Wireguard {
        interface: choose(rng, &["wg0", "wg0", "wg-ci", "wg1"], &["tailscale0", "docker0", "wg 0"], WRONG).to_string(),
        address: Some(choose(rng, WG_ADDRESSES, BAD_WG_ADDRESSES, WRONG).to_string()),
        listen_port: if rng.chance(100 - WRONG) {
            *rng.pick(&[&51820, &51821, &40000])
        } else {
            *rng.pick(&[&41641, &0])
        },
        private_key: rng.some(30, |_| SecretRef::Env("WIREGUARD_PRIVATE_KEY".into())),
        peers: (0..1 + rng.below(2))
            .map(|i| WireguardPeer {
                public_key: if rng.chance(100 - WRONG) { wireguard_key(rng) } else { "not-a-key".into() },
                allowed_ips: vec![match if rng.chance(WRONG) { 5 } else { rng.below(5) } {
                    0 => format!("10.77.{}.0/28", 10 + i),
                    1 => format!("fd00:77::{}/128", i + 2),
                    5 => "0.0.0.0/0".into(),
                    _ => format!("10.77.0.{}/32", i + 2),
                }],
                endpoint: rng.some(40, |rng| rng.pick(&endpoints).to_string()),
                persistent_keepalive: rng.some(30, |rng| if rng.chance(100 - WRONG) { 25 } else { 70000 }),
            })
            .collect(),
        ssh_only_through_tunnel: rng.chance(50),
    }
}

fn cloudflared(rng: &mut Rng) -> Cloudflared {
    let hosts = ["app.example.com", "*.example.org", "api.example.net", "static.example.com"];
    let bad_hosts = ["app.example.com:443", "bad_host", "x.*.example.com"];
    let ingress = rng.some(70, |rng| {
        let mut rules: Vec<IngressRule> = (0..rng.below(3))
            .map(|i| IngressRule {
                hostname: Some(if rng.chance(WRONG) {
                    rng.pick(&bad_hosts).to_string()
                } else {
                    // Distinct names, so no rule hides another; a wildcard keeps its `*.` first.
                    let host = rng.pick(&hosts);
                    match host.strip_prefix("*.") {
                        Some(domain) => format!("*.h{i}.{domain}"),
                        None => format!("h{i}.{host}"),
                    }
                }),
                path: rng.some(40, |rng| choose(rng, REGEXES, BAD_REGEXES, WRONG).to_string()),
                service: choose(rng, SERVICES, BAD_SERVICES, WRONG).to_string(),
                origin_server_name: None,
            })
            .map(|mut rule| {
                if rule.service.starts_with("https://") {
                    rule.origin_server_name = Some("app.example.com".into());
                }
                rule
            })
            .collect();
        if rng.chance(100 - WRONG) {
            rules.push(IngressRule {
                hostname: None,
                path: None,
                service: "http_status:404".into(),
                origin_server_name: None,
            });
        }
        rules
    });
    Cloudflared { token: SecretRef::Env("CLOUDFLARED_TOKEN".into()), ingress }
}

fn file(rng: &mut Rng, index: usize, user: &str) -> File {
    let path = if rng.chance(WRONG) {
        rng.pick(BAD_PATHS).to_string()
    } else {
        // Distinct paths: the same path twice is its own (refused) case.
        // Distinct paths: the same path twice is its own (refused) case.
        rng.pick(PATHS)
            .replace("/app", &format!("/app{index}"))
            .replace("50-app", &format!("5{index}-app"))
            .replace("05-early", &format!("0{index}-early"))
            .replace("90-app", &format!("9{index}-app"))
            .replace("/tool", &format!("/tool{index}"))
            .replace("index.html", &format!("index{index}.html"))
    };
    let template = rng.chance(30);
    let content = if path.starts_with("/etc/ssh/sshd_config.d/") {
        (0..1 + rng.below(2)).map(|_| choose(rng, SSHD_LINES, BAD_SSHD_LINES, WRONG)).collect::<Vec<_>>().join("\n")
            + "\n"
    } else if template {
        let expression = choose(
            rng,
            &[
                "{{ host.hostname }}",
                "{{ user.name }}",
                "{{ vars.name }}",
                "{% if vars.flag %}on{% else %}off{% endif %}",
                "{{ vars.port + 1 }}",
            ],
            &["{{ vars.missing }}", "{{ vars.name | nosuchfilter }}", "{% if %}"],
            WRONG,
        );
        format!("{} {expression}\n", text(rng, 3))
    } else {
        (0..1 + rng.below(3)).map(|_| text(rng, 5)).collect::<Vec<_>>().join("\n")
            + if rng.chance(80) { "\n" } else { "" }
    };
    File {
        allow_setuid: false,
        path,
        content: Some(content),
        source: None,
        template,
        mode: choose(rng, MODES, BAD_MODES, WRONG).to_string(),
        owner: choose(rng, OWNERS, BAD_OWNERS, WRONG).replace("USER", user),
    }
}

fn profile(rng: &mut Rng) -> RawProfile {
    let mut keys = vec![SshKeySource::Inline(DEPLOY_KEY.trim().to_string())];
    if rng.chance(30) {
        let options = choose(rng, KEY_OPTIONS, BAD_KEY_OPTIONS, WRONG);
        keys.push(SshKeySource::Inline(format!("{options} {OTHER_KEY}")));
    }
    let docker = rng.some(60, |rng| Docker {
        source: if rng.chance(85) { DockerSource::Distro } else { DockerSource::DockerCe },
        log: DockerLog::default(),
        published_ports: PublishedPorts {
            default_bind: rng.pick(&["127.0.0.1", "127.0.0.1", "0.0.0.0"]).to_string(),
            block_from_outside: rng.chance(97),
            open: (0..rng.below(2)).map(|_| PortRule { port: port(rng), proto: proto(rng) }).collect(),
        },
    });
    let tailscale = rng.some(35, |rng| Tailscale {
        auth_key: SecretRef::Env("TAILSCALE_AUTH_KEY".into()),
        one_off_key: true,
        ssh: rng.chance(50),
        tags: Vec::new(),
        hostname: None,
        accept_dns: None,
        login_server: None,
        timeout: "120s".into(),
    });
    let wireguard = rng.some(40, wireguard);
    // Under `ssh_only_through_tunnel` a rule opening 22/tcp is a contradiction: add one only without it.
    let tunnel_only = wireguard.as_ref().is_some_and(|w| w.ssh_only_through_tunnel);
    let mut firewall = rng.some(100 - WRONG, |rng| firewall(rng, !tunnel_only));
    // With Tailscale, let the tailnet in most of the time (as the examples do).
    if let (Some(_), Some(f)) = (&tailscale, firewall.as_mut())
        && rng.chance(80)
    {
        f.allow_in_on.push("tailscale0".into());
    }
    let user_name = choose(rng, USERS, BAD_USERS, WRONG).to_string();
    let mut packages: Vec<String> = Vec::new();
    for _ in 0..rng.below(3) {
        let package = choose(rng, PACKAGES, BAD_PACKAGES, WRONG).to_string();
        if !packages.contains(&package) {
            packages.push(package);
        }
    }
    let mut vars = BTreeMap::new();
    vars.insert("name".to_string(), VarValue::Text(text(rng, 3)));
    vars.insert("flag".to_string(), VarValue::Bool(rng.chance(50)));
    vars.insert("port".to_string(), VarValue::Integer(8000 + rng.below(1000) as i64));
    RawProfile {
        version: 1,
        host: Host {
            // The oracle root is Debian 12: its programs judge what kiln writes for Debian 12.
            os: Some(Release::Debian12),
            hostname: Some(choose(rng, HOSTNAMES, BAD_HOSTNAMES, WRONG).to_string()),
            timezone: choose(rng, TIMEZONES, BAD_TIMEZONES, WRONG).to_string(),
            locale: choose(rng, LOCALES, BAD_LOCALES, WRONG).to_string(),
            swap: rng.some(20, |rng| choose(rng, &["512M", "1G"], &["2X"], WRONG).to_string()),
        },
        user: User {
            name: user_name.clone(),
            ssh_keys: keys,
            sudo: rng.chance(80),
            shell: choose(rng, SHELLS, BAD_SHELLS, WRONG).to_string(),
        },
        ssh: Ssh::default(),
        docker,
        cloudflared: rng.some(40, cloudflared),
        tailscale,
        wireguard,
        firewall,
        packages,
        files: (0..rng.below(4)).map(|i| file(rng, i, &user_name)).collect(),
        vars,
        apt: Apt::default(),
        // Drawn last, so the rest of a seed's profile stays what it was before this section existed.
        hardening: Hardening {
            kernel_network: rng.chance(97),
            time_sync: rng.chance(97),
            persistent_journal: rng.chance(97),
            tmp_nosuid_nodev: rng.chance(97),
            automatic_updates: rng.chance(97),
        },
        hosts: Vec::new(),
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// What one generated profile came to.
enum Outcome {
    Accepted(Box<Case>),
    /// Refused, with the codes of its diagnostics.
    Refused(Vec<&'static str>),
}

/// Writes and loads one profile as `kiln check --strict` would.
fn load(dir: &Path, index: usize, raw: &RawProfile) -> Result<Outcome, String> {
    let yaml = serde_saphyr::to_string(raw).map_err(|e| format!("the generator wrote no YAML: {e}"))?;
    let path = dir.join(format!("profile-{index}.yaml"));
    std::fs::write(&path, &yaml).map_err(|e| e.to_string())?;
    let (loaded, rendered) = render_stage(&path, Stage::Full);
    if let Some(d) = loaded.report.diagnostics.iter().find(|d| d.span.is_none()) {
        return Err(format!(
            "a diagnostic without file:line:col: {}[{}] {} (at {})\n{yaml}",
            d.severity.label(),
            d.code.name(),
            d.message,
            d.path
        ));
    }
    // Accepted as `kiln check --strict` accepts: a warning says kiln cannot vouch for the host.
    if loaded.report.fails(true) || loaded.model.is_none() {
        if std::env::var_os("KILN_GENERATED_DEBUG").is_some() {
            for d in &loaded.report.diagnostics {
                eprintln!("DEBUG {} {}", d.code.name(), d.message);
            }
        }
        return Ok(Outcome::Refused(loaded.report.diagnostics.iter().map(|d| d.code.name()).collect()));
    }
    let model = loaded.model.as_ref().expect("accepted");
    let (user_data, _) = rendered.ok_or("accepted but not rendered")?;
    Ok(Outcome::Accepted(Box::new(Case {
        name: format!("profile-{index}"),
        user_data,
        expected: kiln::expect::expect(model),
        release: model.host.release,
    })))
}

#[test]
fn generated_profiles_pass_every_oracle_or_are_refused_with_a_position() {
    let seed = env_number("KILN_GENERATED_SEED", DEFAULT_SEED);
    let count = env_number("KILN_GENERATED_COUNT", DEFAULT_COUNT as u64) as usize;
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut cases = Vec::new();
    let mut problems = Vec::new();
    let mut yaml_of = BTreeMap::new();
    let mut refusals: BTreeMap<&'static str, usize> = BTreeMap::new();
    for index in 0..count {
        let raw = profile(&mut rng);
        match load(dir.path(), index, &raw) {
            Ok(Outcome::Accepted(case)) => {
                yaml_of.insert(case.name.clone(), serde_saphyr::to_string(&raw).unwrap_or_default());
                cases.push(*case);
            }
            Ok(Outcome::Refused(codes)) => {
                for code in codes {
                    *refusals.entry(code).or_insert(0usize) += 1;
                }
            }
            Err(problem) => problems.push(format!("profile-{index}: {problem}")),
        }
    }
    let accepted = cases.len();
    eprintln!("seed {seed}: {count} profiles generated, {accepted} accepted, {} refused", count - accepted);
    eprintln!("diagnostics of the refused: {refusals:?}");
    assert!(problems.is_empty(), "seed {seed}:\n{}", problems.join("\n\n"));
    assert!(
        accepted >= count / 4,
        "seed {seed}: only {accepted} of {count} accepted: the generator is too hostile to mean anything"
    );
    let failures = oracles::judge(&cases);
    let shown: String = failures
        .iter()
        .take(5)
        .map(|(name, _)| format!("--- {name}:\n{}", yaml_of.get(name).map(String::as_str).unwrap_or("")))
        .collect();
    assert!(
        failures.is_empty(),
        "seed {seed} (KILN_GENERATED_SEED={seed} reproduces it): {} accepted profile(s) fail a real program:\n{}\n{shown}",
        failures.len(),
        oracles::report(&failures)
    );
}
