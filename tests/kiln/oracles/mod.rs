//! Real-program oracles (issue 9): the programs that consume what kiln writes, from the release itself,
//! judge every rendered user-data in a throwaway Debian 12 root (`scripts/oracle-root`).
//!
//! Each oracle reads what it needs from the user-data alone (write_files, the provisioning script,
//! `users`, `timezone`, `locale`), runs the real program in a fresh overlay of the root (batched: one
//! process per oracle and chunk, each distinct input once), and compares what the program did with
//! what `kiln::expect` says the host must show. `judge` returns only the cases that fail, each failure
//! as `oracle: what it said`.
//!
//! | oracle | program (Debian 12) | proves |
//! |---|---|---|
//! | `cloud-init` | the release's cloud-init schema validator: 22.4.2 (Debian 12 root) for debian-12, 25.1.4 (Debian 13 root) for debian-13, and for Ubuntu 25.1.4 with Ubuntu's schema | the user-data is valid cloud-config, with no deprecated key on 25.1 |
//! | `ufw` | ufw 0.36.2, every command for real | each command succeeds silently, stores exactly the expected rules and policies |
//! | `docker-user` | ufw-init, iptables-restore | kiln's DOCKER-USER rules load with UFW at boot |
//! | `sysctl` | systemd-sysctl, then ufw-init's `sysctl -p` | kiln's kernel settings are what the kernel holds after both, in a boot's order |
//! | `sshd` | OpenSSH's `sshd -t`, `sshd -T -C` (10.0 for debian-13, 9.2 for the rest) | the configuration loads; every value kiln sets is sshd's effective one for the deploy user and root, from any address |
//! | `ssh-audit` | that sshd running, audited by ssh-audit 3.9 | no failure, no warning but those `kiln expect` accepts |
//! | `accounts` | useradd, passwd, visudo, usermod, sudo | the user is created as cloud-init creates it, the sudo rule parses, every owner exists when written |
//! | `timezone` | tzdata | the zone is a TZif file cloud-init accepts |
//! | `locale` | locale-gen, update-locale | cloud-init's locale commands succeed |
//! | `apt` | apt, gpg | every source parses, every key file is a public OpenPGP key apt can read |
//! | `wireguard` | wg-quick, wg, wireguard-go, ip | each interface comes up with the expected peers, port and address |
//! | `shell` | bash -n | every script kiln ships parses |
//!
//! The roots come from `scripts/oracle-root debian-12` and `scripts/oracle-root debian-13` (`KILN_ORACLE_ROOT`
//! and `KILN_ORACLE_ROOT_DEBIAN_13` point elsewhere); every oracle but cloud-init's, sshd's and ssh-audit's runs
//! in the Debian 12 root, whatever the case's release; the tests run as
//! root (namespaces, overlays). `KILN_ORACLES=ufw,sshd` runs only the oracles named; each oracle's time
//! is printed on stderr. `cargo test -- --ignored oracle_throughput --nocapture` measures many cases.

mod accounts;
mod apt;
mod cloud_init;
mod docker_user;
mod locale;
mod sandbox;
mod shell;
mod ssh_audit;
mod sshd;
mod sysctl;
mod tests;
mod timezone;
mod ufw;
mod userdata;
mod wireguard;

use std::collections::BTreeMap;

use kiln::expect::ExpectedState;
use kiln::model::Release;

use userdata::UserData;

pub use cloud_init::validate as cloud_init_schema;

/// One rendered user-data and the state its host must show.
pub struct Case {
    pub name: String,
    /// Full-stage `#cloud-config` text, as `kiln render` writes it.
    pub user_data: String,
    pub expected: ExpectedState,
    /// The model's `host.os`: whose cloud-init judges the user-data.
    pub release: Release,
}

/// A case whose user-data parsed, as the oracles see it.
pub(crate) struct Prepared<'a> {
    pub data: UserData,
    pub expected: &'a ExpectedState,
    pub release: Release,
}

/// What one oracle says about each case it was given (same order): failure messages, empty if it passed.
type Verdicts = Vec<Vec<String>>;

type Oracle = fn(&[Prepared]) -> Verdicts;

/// Runs only the oracles named here (comma-separated), for measuring or debugging one of them.
const ONLY_VAR: &str = "KILN_ORACLES";

const ORACLES: &[(&str, Oracle)] = &[
    ("cloud-init", cloud_init::check),
    ("ufw", ufw::check),
    ("docker-user", docker_user::check),
    ("sysctl", sysctl::check),
    ("sshd", sshd::check),
    ("ssh-audit", ssh_audit::check),
    ("accounts", accounts::check),
    ("timezone", timezone::check),
    ("locale", locale::check),
    ("apt", apt::check),
    ("wireguard", wireguard::check),
    ("shell", shell::check),
];

/// Runs every oracle over every case; returns the failing cases only, with each failure as
/// `oracle: what it said`. Panics when the oracles cannot run at all (no oracle root, a host tool
/// missing, a driver that broke): that is not a verdict on the cases.
pub fn judge(cases: &[Case]) -> Vec<(String, Vec<String>)> {
    let mut failures: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let mut prepared = Vec::new();
    let mut index = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        match userdata::parse(&case.user_data) {
            Ok(data) => {
                prepared.push(Prepared { data, expected: &case.expected, release: case.release });
                index.push(i);
            }
            Err(e) => failures.entry(i).or_default().push(format!("user-data: {e}")),
        }
    }
    if !prepared.is_empty() {
        sandbox::preflight();
        let verdicts: Vec<(&str, Verdicts)> = std::thread::scope(|scope| {
            let only = std::env::var(ONLY_VAR).ok();
            let selected = |name: &str| only.as_deref().is_none_or(|o| o.split(',').any(|n| n == name));
            let running: Vec<_> = ORACLES
                .iter()
                .filter(|(name, _)| selected(name))
                .map(|(name, oracle)| {
                    (
                        *name,
                        scope.spawn(|| {
                            let started = std::time::Instant::now();
                            let verdicts = oracle(&prepared);
                            (verdicts, started.elapsed())
                        }),
                    )
                })
                .collect();
            running
                .into_iter()
                .map(|(name, handle)| {
                    let (verdicts, took) = handle.join().expect("oracle thread");
                    eprintln!("oracle {name}: {} cases in {:.1} s", prepared.len(), took.as_secs_f64());
                    (name, verdicts)
                })
                .collect()
        });
        for (name, per_case) in verdicts {
            assert_eq!(per_case.len(), prepared.len(), "the {name} oracle judged every case");
            for (i, messages) in per_case.into_iter().enumerate() {
                let entry = failures.entry(index[i]).or_default();
                entry.extend(messages.into_iter().map(|m| format!("{name}: {m}")));
            }
        }
    }
    failures
        .into_iter()
        .filter(|(_, messages)| !messages.is_empty())
        .map(|(i, messages)| (cases[i].name.clone(), messages))
        .collect()
}

/// A readable report of `judge`'s result: each failing case, then its failures indented.
pub fn report(failures: &[(String, Vec<String>)]) -> String {
    let mut out = String::new();
    for (name, messages) in failures {
        out.push_str(&format!("{name}:\n"));
        for message in messages {
            for (i, line) in message.lines().enumerate() {
                out.push_str(if i == 0 { "  - " } else { "    " });
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// Each distinct input once: `inputs[i]` is case i's input (or none: the oracle has nothing to
/// judge there); returns the distinct inputs and, per case, the index of its input among them.
pub(crate) fn distinct<K: Ord + Clone>(inputs: Vec<Option<K>>) -> (Vec<K>, Vec<Option<usize>>) {
    let mut seen: BTreeMap<K, usize> = BTreeMap::new();
    let mut keys = Vec::new();
    let of_case = inputs
        .into_iter()
        .map(|input| {
            input.map(|k| {
                *seen.entry(k.clone()).or_insert_with(|| {
                    keys.push(k);
                    keys.len() - 1
                })
            })
        })
        .collect();
    (keys, of_case)
}

/// Spreads the verdicts on distinct inputs back over the cases.
pub(crate) fn per_case(of_case: &[Option<usize>], verdicts: &[Vec<String>]) -> Verdicts {
    of_case.iter().map(|k| k.map(|k| verdicts[k].clone()).unwrap_or_default()).collect()
}
