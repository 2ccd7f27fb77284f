//! Unit tests of the comparison: the probe output of a real guest booted from `profiles/app.yaml`
//! passes every check, and each fact, made wrong on either side, fails the check that covers it.
//!
//! The fixtures are whole probe outputs of real guests (Debian 13: seed-host, wireguard; Debian 12: awkward), from
//! the runs of 2026-12-01 during issue 12, after automatic updates came in (`target/vm-tests/<scenario>/
//! probe-first-boot.txt`, with the trailer that records each section's exit status), read by the
//! production parser as the harness reads them. No edit by hand.

use super::*;
use crate::effects::vm::harness::image_listeners;
use crate::expect::{ExpectedState, UfwRule, expect};
use crate::model::{self, ProfileFiles};
use crate::profile;

/// Probe output captured from a VM scenario run (`target/vm-tests/seed-host/probe-first-boot.txt`).
const PROBE: &str = include_str!("fixtures/seed-host-probe.txt");

fn captured(capture: &str) -> StateProbe {
    StateProbe::parse(capture, 0, "").expect("a whole probe output")
}
/// The stand-ins recorded these digests; the run's test secrets are not kept, only their sha256.
const FIXTURE_DIGESTS: &str = include_str!("fixtures/seed-host-digests.txt");

/// A profile directory holding nothing but the deploy user's key.
struct DeployKeyOnly(&'static [u8]);

impl ProfileFiles for DeployKeyOnly {
    fn read(&self, relative: &str) -> Result<Vec<u8>, model::FileError> {
        match relative {
            "keys/deploy.pub" => Ok(self.0.to_vec()),
            other => Err(model::FileError::Unreadable(format!("no {other}"))),
        }
    }
}

/// The validated model of a scenario profile whose only file is `keys/deploy.pub`.
pub(super) fn validated(profile_yaml: &str, deploy_key: &'static [u8]) -> model::Model {
    let parsed = profile::parse(profile_yaml);
    let (model, report) = model::validate(parsed.raw.as_ref().expect("the profile parses"), &DeployKeyOnly(deploy_key));
    assert!(!report.has_errors(), "{report:?}");
    model.expect("the profile validates")
}

pub(crate) fn seed_expected() -> ExpectedState {
    expected()
}

/// [`validated`], with the test mirror's repositories as the harness gives them to the guest: what the
/// harness derives the expected state from.
pub(super) fn as_tested(profile_yaml: &str, deploy_key: &'static [u8]) -> model::Model {
    let mut model = validated(profile_yaml, deploy_key);
    crate::effects::vm::harness::use_mirror(&mut model, b"(the mirror's key)")
        .expect("the mirror has every repository");
    model
}

fn expected() -> ExpectedState {
    expect(&as_tested(include_str!("../../profiles/app.yaml"), include_bytes!("../../profiles/keys/deploy.pub")))
}

fn digests() -> SecretDigests {
    let mut lines = FIXTURE_DIGESTS.lines();
    SecretDigests {
        cloudflared_token: lines.next().map(str::to_string),
        tailscale_auth_key: lines.next().map(str::to_string),
    }
}

fn run(expected: &ExpectedState, probe: &StateProbe, digests: &SecretDigests) -> Vec<Check> {
    verify(expected, probe, &image_listeners(), digests).expect("the probe reads")
}

/// Sets what sshd must print for `keyword`: the values separated by spaces, as it prints a list one per line.
fn set_sshd(settings: &mut [crate::expect::SshdValues], keyword: &str, values: &str) {
    let setting = settings.iter_mut().find(|s| s.keyword == keyword).expect("kiln sets the keyword");
    setting.values = values.split(' ').map(str::to_string).collect();
}

fn failing(checks: &[Check]) -> Vec<String> {
    checks.iter().filter(|c| !c.passed).map(|c| c.name.clone()).collect()
}

#[test]
fn the_real_guest_passes_every_check() {
    let checks = run(&expected(), &captured(PROBE), &digests());
    assert!(checks.len() > 40, "only {} checks", checks.len());
    assert!(failing(&checks).is_empty(), "{:#?}", checks.iter().filter(|c| !c.passed).collect::<Vec<_>>());
}

/// Changes the expected state one fact at a time; the check named must then fail, and only it (or the
/// few that necessarily share the fact).
#[test]
fn each_expected_fact_made_wrong_fails_its_check() {
    type Mutation = (&'static str, fn(&mut ExpectedState));
    let mutations: Vec<Mutation> = vec![
        ("hostname", |e| e.hostname = "other".into()),
        ("user deploy shell", |e| e.user.shell = "/bin/sh".into()),
        ("user deploy in group adm", |e| e.user.groups.push("adm".into())),
        ("user deploy authorized keys", |e| {
            e.user.authorized_keys.pop();
        }),
        ("user deploy password locked", |e| e.user.password_locked = false),
        ("user deploy passwordless sudo", |e| e.user.passwordless_sudo = false),
        ("sshd passwordauthentication", |e| set_sshd(&mut e.ssh.for_deploy_user, "passwordauthentication", "yes")),
        ("docker live-restore", |e| e.docker_live_restore = Some(false)),
        ("sshd macs", |e| set_sshd(&mut e.ssh.for_deploy_user, "macs", "hmac-sha2-256-etm@openssh.com")),
        ("sshd allowusers", |e| set_sshd(&mut e.ssh.for_deploy_user, "allowusers", "deploy root")),
        ("sshd allowtcpforwarding", |e| set_sshd(&mut e.ssh.for_deploy_user, "allowtcpforwarding", "no")),
        ("sshd allowtcpforwarding for root", |e| set_sshd(&mut e.ssh.for_root, "allowtcpforwarding", "yes")),
        ("package nginx", |e| e.packages.push("nginx".into())),
        ("unit docker.service enabled", |e| {
            e.units.iter_mut().find(|u| u.name == "docker.service").unwrap().enabled = false
        }),
        ("unit cloudflared.service active", |e| {
            e.units.iter_mut().find(|u| u.name == "cloudflared.service").unwrap().active = false
        }),
        ("ufw default policies", |e| e.firewall.as_mut().unwrap().incoming = "allow".into()),
        ("ufw rule set (exact)", |e| {
            e.firewall.as_mut().unwrap().rules.pop();
        }),
        ("iptables agree with ufw", |e| {
            let rules = &mut e.firewall.as_mut().unwrap().rules;
            let port_rule = rules.iter().find(|r| r.interface.is_none()).unwrap().clone();
            rules.push(UfwRule { port: "5432".into(), ..port_rule });
            rules.sort();
        }),
        ("DOCKER-USER filters published ports", |e| {
            e.firewall.as_mut().unwrap().docker_user = Some(vec!["9999/tcp".into()])
        }),
        ("listening sockets (exact)", |e| {
            e.listeners.pop();
        }),
        ("secret file /etc/kiln/secrets/cloudflared-token", |e| e.secret_files[0].present = false),
        ("secret file /etc/kiln/secrets/tailscale-auth-key", |e| e.secret_files[1].present = true),
        ("cloudflared invoked as declared (stand-in record)", |e| {
            e.cloudflared_args.as_mut().unwrap().push("--protocol=http2".into())
        }),
        ("tailscale up invoked as declared (stand-in record)", |e| {
            e.tailscale_up_args.as_mut().unwrap().retain(|a| a != "--ssh")
        }),
        ("timezone", |e| e.timezone = "Europe/Berlin".into()),
        ("locale LANG", |e| e.locale = "de_DE.UTF-8".into()),
        ("sysctl net.ipv4.conf.all.rp_filter", |e| {
            e.sysctls.iter_mut().find(|s| s.key == "net.ipv4.conf.all.rp_filter").unwrap().value = "2".into()
        }),
        ("unit systemd-timesyncd.service active", |e| {
            e.units.iter_mut().find(|u| u.name == "systemd-timesyncd.service").unwrap().active = false
        }),
        ("journal size cap", |e| e.journal.as_mut().unwrap().max_use_bytes = 4 << 30),
        ("journal kept on disk", |e| e.journal.as_mut().unwrap().directory = "/srv/journal/".into()),
        ("/tmp mounted nosuid,nodev", |e| e.tmp_mount_options.push("noexec".into())),
        ("unattended-upgrades allows site=pkg.example.com", |e| e.update_origins.push("site=pkg.example.com".into())),
        ("unit kiln-cloudflared-upgrade.path active", |e| {
            e.units.iter_mut().find(|u| u.name == "kiln-cloudflared-upgrade.path").unwrap().active = false
        }),
    ];
    let probe = captured(PROBE);
    for (name, mutate) in mutations {
        let mut wrong = expected();
        mutate(&mut wrong);
        let failed = failing(&run(&wrong, &probe, &digests()));
        assert!(failed.iter().any(|f| f == name), "making `{name}` wrong did not fail it; failed: {failed:?}");
    }
}

#[test]
fn each_observed_fact_made_wrong_fails_its_check() {
    type Mutation = (Section, &'static str, fn(&str) -> String);
    let mutations: Vec<Mutation> = vec![
        (Section::UfwStatus, "ufw active", |_| "Status: inactive".into()),
        (Section::DockerUser, "DOCKER-USER filters published ports", |s| {
            s.lines().filter(|l| !l.ends_with("-j DROP")).collect::<Vec<_>>().join("\n")
        }),
        (Section::FailedUnits, "no failed units", |_| {
            "cloud-config.service loaded failed failed Apply the settings".into()
        }),
        (Section::Iptables4, "iptables agree with ufw", |_| String::new()),
        (Section::Listeners, "listening sockets (exact)", |s| {
            format!("{s}\ntcp LISTEN 0 128 0.0.0.0:80 0.0.0.0:* users:((\"nginx\",pid=9,fd=3))")
        }),
        (Section::StandinCloudflared, "cloudflared secret file was 0600 when read", |s| {
            s.replace("\"600\"", "\"644\"")
        }),
        (Section::Timezone, "timezone", |_| "Etc/GMT".into()),
        (Section::DockerLiveRestore, "docker live-restore", |_| "false".into()),
        // The vendor's pattern dropped from apt's merged configuration (a later file's `#clear`).
        (Section::UpdateOrigins, "unattended-upgrades allows site=10.0.2.103", |s| {
            s.lines().filter(|l| *l != "site=10.0.2.103").collect::<Vec<_>>().join("\n")
        }),
        (Section::AptPeriodic, "apt refreshes and runs unattended-upgrade daily", |s| {
            s.replace("APT::Periodic::Unattended-Upgrade 1", "APT::Periodic::Unattended-Upgrade 0")
        }),
        // A Match block (or an earlier file) giving the deploy user passwords, or root forwarding.
        (Section::Sshd, "sshd passwordauthentication", |s| {
            s.replace("passwordauthentication no", "passwordauthentication yes")
        }),
        (Section::SshdRoot, "sshd allowtcpforwarding for root", |s| {
            s.replace("allowtcpforwarding no", "allowtcpforwarding yes")
        }),
        (Section::Sshd, "sshd allowusers", |s| format!("{s}\nallowusers admin")),
        (Section::Locale, "locale LANG", |_| "LANG=en_US.UTF-8".into()),
        (Section::LocaleCharmap, "locale C.UTF-8 usable", |_| {
            "locale: Cannot set LC_CTYPE to default locale: No such file or directory\nANSI_X3.4-1968".into()
        }),
        (Section::Keys, "user deploy authorized keys", |s| {
            format!("{s}\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIntruderKeyIntruderKeyIntruderKeyIntrud x")
        }),
        // UFW's own sysctl.conf applied after kiln's file: what the hardening must prevent.
        (Section::Sysctl, "sysctl net.ipv4.conf.all.log_martians", |s| {
            s.replace("net.ipv4.conf.all.log_martians = 1", "net.ipv4.conf.all.log_martians = 0")
        }),
        // A key the kernel did not print at all.
        (Section::Sysctl, "sysctl net.ipv4.tcp_syncookies", |s| {
            s.lines().filter(|l| !l.starts_with("net.ipv4.tcp_syncookies")).collect::<Vec<_>>().join("\n")
        }),
        (Section::Units, "unit systemd-timesyncd.service enabled", |s| {
            s.replace("systemd-timesyncd.service\tactive\tenabled", "systemd-timesyncd.service\tinactive\tdisabled")
        }),
        // journald restarted volatile (Storage=volatile, or no /var/log/journal with Storage=auto): its last
        // report of the boot is the runtime journal.
        (Section::JournalUsage, "journal kept on disk", |s| {
            let runtime = s.lines().next().unwrap().to_string();
            format!("{s}\n{runtime}")
        }),
        // No cap: journald's default (10% of the file system, at most 4 GiB).
        (Section::JournalUsage, "journal size cap", |s| {
            s.replace("\"MAX_USE\":\"524288000\"", "\"MAX_USE\":\"411041792\"")
        }),
        (Section::TmpMount, "/tmp mounted nosuid,nodev", |s| s.replace("rw,nosuid,nodev,", "rw,nodev,")),
        // /tmp on the root file system (Debian 12 without tmp.mount): no mount point.
        (Section::TmpMount, "/tmp mounted nosuid,nodev", |_| String::new()),
    ];
    for (section, name, mutate) in mutations {
        let mut probe = captured(PROBE);
        let value = probe.get(section).unwrap().to_string();
        probe.set(section, mutate(&value));
        let failed = failing(&run(&expected(), &probe, &digests()));
        assert!(
            failed.iter().any(|f| f == name),
            "changing section `{section:?}` did not fail `{name}`; failed: {failed:?}"
        );
    }
    let wrong = SecretDigests { cloudflared_token: Some("0".repeat(64)), ..digests() };
    let failed = failing(&run(&expected(), &captured(PROBE), &wrong));
    assert_eq!(failed, ["cloudflared read the secret from its file"]);
}

/// Probe output of the `awkward` scenario's guest: a port range, an IPv6 source, comments with
/// apostrophes and `$(…)`, a key with options, a non-C locale, a tzdata link, the profile's own files.
const AWKWARD_PROBE: &str = include_str!("fixtures/awkward-probe.txt");

pub(crate) fn awkward_expected() -> ExpectedState {
    expect(&as_tested(
        include_str!("../../vm-tests/profiles/awkward.yaml"),
        include_bytes!("../../vm-tests/profiles/keys/deploy.pub"),
    ))
}

#[test]
fn the_awkward_guest_passes_every_check() {
    let checks = run(&awkward_expected(), &captured(AWKWARD_PROBE), &SecretDigests::default());
    assert!(failing(&checks).is_empty(), "{:#?}", checks.iter().filter(|c| !c.passed).collect::<Vec<_>>());
    for name in [
        "file /etc/awkward/motd.txt",
        "file /etc/awkward/app.env",
        "locale de_DE.UTF-8 usable",
        "timezone",
        "unit tmp.mount active",
        "/tmp mounted nosuid,nodev",
        "journal size cap",
    ] {
        assert!(checks.iter().any(|c| c.name == name), "no check `{name}`");
    }
}

#[test]
fn each_awkward_fact_made_wrong_fails_its_check() {
    type Mutation = (&'static str, fn(&mut ExpectedState));
    let expected_mutations: Vec<Mutation> = vec![
        ("file /etc/awkward/motd.txt", |e| e.files[0].sha256 = "0".repeat(64)),
        ("file /etc/awkward/app.env", |e| e.files[1].mode = "644".into()),
        ("file /etc/awkward/app.env", |e| e.files[1].group = "root".into()),
        ("user deploy authorized keys", |e| {
            let options_free = e.user.authorized_keys[1].split_once(' ').unwrap().1.to_string();
            e.user.authorized_keys[1] = options_free;
        }),
        ("ufw rule set (exact)", |e| {
            let rules = &mut e.firewall.as_mut().unwrap().rules;
            let v6 = rules.iter_mut().find(|r| r.from.starts_with("2001:")).unwrap();
            v6.from = "2001:DB8:0:0::/32".into();
        }),
    ];
    let probe = captured(AWKWARD_PROBE);
    for (name, mutate) in expected_mutations {
        let mut wrong = awkward_expected();
        mutate(&mut wrong);
        let failed = failing(&run(&wrong, &probe, &SecretDigests::default()));
        assert!(failed.iter().any(|f| f == name), "making `{name}` wrong did not fail it; failed: {failed:?}");
    }
    type Observed = (Section, &'static str, fn(&str) -> String);
    let observed_mutations: Vec<Observed> = vec![
        (Section::Files, "file /etc/awkward/motd.txt", |s| {
            s.lines().filter(|l| !l.starts_with("/etc/awkward/motd.txt")).collect::<Vec<_>>().join("\n")
        }),
        // A range must be loaded as ufw loads it, with the multiport match.
        (Section::Iptables4, "iptables agree with ufw", |s| s.replace("--dports 8000:8010", "--dports 8000:8009")),
        // Debian 12: kiln installs and enables systemd's tmp.mount.
        (Section::Units, "unit tmp.mount enabled", |s| {
            s.replace("tmp.mount\tactive\tenabled", "tmp.mount\tinactive\tdisabled")
        }),
    ];
    for (section, name, mutate) in observed_mutations {
        let mut probe = captured(AWKWARD_PROBE);
        let value = probe.get(section).unwrap().to_string();
        probe.set(section, mutate(&value));
        let failed = failing(&run(&awkward_expected(), &probe, &SecretDigests::default()));
        assert!(failed.iter().any(|f| f == name), "changing `{section:?}` did not fail `{name}`; failed: {failed:?}");
    }
}

/// The readers ask only for sections the script produces: each fixture, cut down to the sections the
/// script for its expected state prints, gives the same checks; and a section missing is an error.
#[test]
fn readers_read_only_what_the_script_prints() {
    let fixtures = [
        (expected(), PROBE, digests()),
        (awkward_expected(), AWKWARD_PROBE, SecretDigests::default()),
        (super::wireguard::tests::expected(), include_str!("fixtures/wireguard-probe.txt"), SecretDigests::default()),
    ];
    for (expected, capture, digests) in fixtures {
        let full = run(&expected, &captured(capture), &digests);
        let script = observe::probe_script(&expected);
        let mut cut = captured(capture);
        cut.retain(script.sections());
        assert_eq!(cut.names().collect::<Vec<_>>().len(), script.sections().len());
        assert_eq!(run(&expected, &cut, &digests), full);
        for section in script.sections() {
            let mut without = captured(capture);
            without.retain(&script.sections().iter().copied().filter(|s| s != section).collect::<Vec<_>>());
            let error = verify(&expected, &without, &image_listeners(), &digests).unwrap_err().to_string();
            assert!(error.contains("produced no section"), "{section:?}: {error}");
        }
    }
}
