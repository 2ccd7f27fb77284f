//! Automatic security updates, proven on the guest: the harness publishes newer packages into its signed
//! mirror (a newer stand-in cloudflared from the vendor repository, and one of the guest's Debian packages
//! re-issued through the mirror's security-archive stand-in), then runs apt's own daily services
//! (`apt-daily.service`, then `apt-daily-upgrade.service`, which runs `unattended-upgrade`) and checks what
//! changed. A control run comes first, with both origins removed from the configuration apt merges: nothing
//! may change then, so each check is seen failing. Last, dockerd is restarted and a container must live on
//! (`live-restore`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use kiln::effects::mirror::{self, Mirror};
use kiln::effects::vm::qga::Agent;
use kiln::lower::updates;
use kiln::model::Model;
use kiln::verify::Check;
use serde::Deserialize;

/// apt's list refresh and unattended-upgrade under emulation: minutes, not seconds.
const APT_SERVICE_TIMEOUT: Duration = Duration::from_secs(900);
/// Observing, writing a file, restarting dockerd.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);
/// The control's configuration file: sorts after every other, so its `#clear` and list are the last word.
const CONTROL_FILE: &str = "/etc/apt/apt.conf.d/99zz-kiln-test-control";
/// The stand-in cloudflared's newer release.
const NEW_CLOUDFLARED: &str = "0.0.1~kiln.test";
/// Appended to the Debian package's version: dpkg orders `V+kiln.security1` after `V`.
const SECURITY_SUFFIX: &str = "+kiln.security1";
/// Where the stand-in records how (and as which version) it was started.
const CLOUDFLARED_RECORD: &str = "/var/lib/kiln-standin/cloudflared.json";
const UPGRADE_SUCCEEDED: &str = "apt-daily-upgrade.service (unattended-upgrade) succeeded";
pub const PHASE_CONTROL: &str = "automatic updates: control (origins removed)";
pub const PHASE_PROOF: &str = "automatic updates";

/// What the proof needs to know about the guest.
#[derive(Debug, Clone)]
pub struct UpdateProof {
    /// A Debian package the profile installs from the mirror, re-issued newer through the security stand-in.
    pub debian_package: String,
    /// A running container that must survive dockerd's restart.
    pub container: String,
}

/// The origin patterns the control removes, and the whole list it keeps the rest of: taken from the model
/// the guest was provisioned with (the mirror's addresses in place of the vendors').
#[derive(Debug, Clone, Default)]
pub struct Origins {
    pub all: Vec<String>,
    pub security: String,
    pub cloudflared: String,
}

impl Origins {
    pub fn of(model: &Model) -> Result<Origins> {
        let cloudflared = model.apt.cloudflared.as_ref().context("the update proof needs cloudflared's repository")?;
        Ok(Origins {
            all: kiln::lower::facts(model).update_origins,
            security: updates::security_pattern(model),
            cloudflared: updates::vendor_pattern(cloudflared).context("cloudflared's repository names no host")?,
        })
    }
}

/// What was published, so the checks know what to expect.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Published {
    debian_package: String,
    debian_version: String,
    cloudflared_version: String,
}

/// One look at the guest, from `OBSERVE`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
struct Observed {
    /// Installed version per package (dpkg's database).
    versions: std::collections::BTreeMap<String, String>,
    cloudflared_pid: String,
    /// The stand-in's start record: which version started.
    cloudflared_started_as: Option<String>,
    /// `Result` of apt-daily-upgrade.service's last run.
    upgrade_result: String,
    container: Option<ContainerState>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
struct ContainerState {
    #[serde(rename = "Running")]
    running: bool,
    #[serde(rename = "Pid")]
    pid: i64,
    #[serde(rename = "StartedAt")]
    started_at: String,
}

/// Prints one JSON object: python3 is on every guest (cloud-init is written in it).
const OBSERVE: &str = r#"
import json, subprocess, sys
packages, container = sys.argv[1:-1], sys.argv[-1]
def out(*args):
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout
versions = {}
for name in packages:
    r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", name], capture_output=True, text=True)
    versions[name] = r.stdout if r.returncode == 0 else "(not installed)"
try:
    with open(RECORD) as f:
        started_as = json.load(f)["standin"]
except FileNotFoundError:
    started_as = None
r = subprocess.run(["docker", "inspect", "--format", "{{json .State}}", container], capture_output=True, text=True)
print(json.dumps({
    "versions": versions,
    "cloudflared_pid": out("systemctl", "show", "-P", "MainPID", "cloudflared.service").strip(),
    "cloudflared_started_as": started_as,
    "upgrade_result": out("systemctl", "show", "-P", "Result", "apt-daily-upgrade.service").strip(),
    "container": json.loads(r.stdout) if r.returncode == 0 else None,
}))
"#;

impl UpdateProof {
    /// The control, then the proof: two phases of checks.
    pub fn run(
        &self,
        agent: &mut Agent,
        mirror: &Mirror,
        origins: &Origins,
        run_dir: &Path,
    ) -> Result<Vec<(String, Vec<Check>)>> {
        let before = self.observe(agent)?;
        let published = self.publish(mirror, &before, run_dir)?;
        let kept: Vec<String> =
            origins.all.iter().filter(|p| **p != origins.security && **p != origins.cloudflared).cloned().collect();
        ensure!(
            kept.len() + 2 == origins.all.len(),
            "kiln's origin patterns {:?} lack one the control removes",
            origins.all
        );
        write_file(agent, CONTROL_FILE, &updates::origins_config(&kept, true))?;
        run_daily_services(agent)?;
        let control = self.observe(agent)?;
        shell(agent, &format!("rm -- {CONTROL_FILE}"), COMMAND_TIMEOUT)?;
        run_daily_services(agent)?;
        let after = self.observe(agent)?;
        shell(agent, "systemctl restart docker.service", COMMAND_TIMEOUT)?;
        let restarted = self.observe(agent)?;
        let mut proof = update_checks(&published, &before, &after);
        proof.push(container_check(&self.container, &before, &restarted));
        Ok(vec![
            (PHASE_CONTROL.into(), control_checks(update_checks(&published, &before, &control))),
            (PHASE_PROOF.into(), proof),
        ])
    }

    fn observe(&self, agent: &mut Agent) -> Result<Observed> {
        let script = OBSERVE.replace("RECORD", &format!("{CLOUDFLARED_RECORD:?}"));
        let args = ["-c", script.as_str(), "cloudflared", self.debian_package.as_str(), self.container.as_str()];
        let out = agent.exec("python3", &args, None, COMMAND_TIMEOUT)?;
        ensure!(out.ok(), "observing the guest's packages failed: {}", out.stderr);
        serde_json::from_str(&out.stdout).with_context(|| format!("reading the guest's observation {:?}", out.stdout))
    }

    /// A newer stand-in cloudflared into the vendor repository; the Debian package, re-versioned, into the
    /// security stand-in.
    fn publish(&self, mirror: &Mirror, before: &Observed, run_dir: &Path) -> Result<Published> {
        let out_dir = run_dir.join("updates");
        std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
        let installed = before.versions.get(&self.debian_package).cloned().unwrap_or_default();
        let deb = pool_deb(&mirror.root.join("debian/pool"), &self.debian_package, &installed)?;
        let debian_version = format!("{installed}{SECURITY_SUFFIX}");
        mirror.publish("debian-security", &[mirror::reversion(&deb, &debian_version, &out_dir)?])?;
        mirror.publish("cloudflared", &[mirror::build_version("cloudflared", NEW_CLOUDFLARED, &out_dir)?])?;
        Ok(Published {
            debian_package: self.debian_package.clone(),
            debian_version,
            cloudflared_version: NEW_CLOUDFLARED.into(),
        })
    }
}

/// The mirror's .deb of `package` at the installed `version` (an epoch is not in the file name).
fn pool_deb(pool: &Path, package: &str, version: &str) -> Result<PathBuf> {
    let file_version = version.split_once(':').map_or(version, |(_, v)| v);
    let prefix = format!("{package}_{file_version}_");
    let entries = std::fs::read_dir(pool).with_context(|| format!("reading {}", pool.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&prefix)) {
            return Ok(path);
        }
    }
    bail!("the mirror has no {package} {version} to re-issue (is it installed from the mirror?)")
}

/// apt's daily services as their timers start them, after removing the stamps that say they ran today:
/// what a day passing does. `systemctl start` of a oneshot service returns when it has finished.
fn run_daily_services(agent: &mut Agent) -> Result<()> {
    let stamps = ["update-stamp", "download-upgradeable-stamp", "upgrade-stamp"]
        .map(|s| format!("/var/lib/apt/periodic/{s}"))
        .join(" ");
    shell(agent, &format!("rm -f -- {stamps}"), COMMAND_TIMEOUT)?;
    shell(agent, "systemctl start apt-daily.service", APT_SERVICE_TIMEOUT)?;
    shell(agent, "systemctl start apt-daily-upgrade.service", APT_SERVICE_TIMEOUT)
}

fn write_file(agent: &mut Agent, path: &str, contents: &str) -> Result<()> {
    let out = agent.exec("tee", &["--", path], Some(contents.as_bytes()), COMMAND_TIMEOUT)?;
    ensure!(out.ok(), "writing {path} in the guest failed: {}", out.stderr);
    Ok(())
}

fn shell(agent: &mut Agent, script: &str, timeout: Duration) -> Result<()> {
    let out = agent.shell(script, timeout)?;
    ensure!(out.ok(), "`{script}` failed in the guest: {}{}", out.stdout, out.stderr);
    Ok(())
}

/// Both packages upgraded by unattended-upgrade, and cloudflared restarted on its new version.
fn update_checks(published: &Published, before: &Observed, after: &Observed) -> Vec<Check> {
    let version = |o: &Observed, p: &str| o.versions.get(p).cloned().unwrap_or_else(|| "(not observed)".into());
    let debian = &published.debian_package;
    let started_as = after.cloudflared_started_as.clone().unwrap_or_else(|| "(no start record)".into());
    let restarted = after.cloudflared_pid != before.cloudflared_pid && after.cloudflared_pid != "0";
    vec![
        Check::new(UPGRADE_SUCCEEDED, "success", &after.upgrade_result, after.upgrade_result == "success"),
        Check::new(
            format!("unattended-upgrade installed {debian} from the security archive"),
            &published.debian_version,
            version(after, debian),
            version(after, debian) == published.debian_version,
        ),
        Check::new(
            "unattended-upgrade installed cloudflared from its vendor repository",
            &published.cloudflared_version,
            version(after, "cloudflared"),
            version(after, "cloudflared") == published.cloudflared_version,
        ),
        Check::new(
            "cloudflared.service restarted on the upgraded binary",
            format!("a new main process started as {}", published.cloudflared_version),
            format!("main PID {} → {}; started as {started_as}", before.cloudflared_pid, after.cloudflared_pid),
            restarted && started_as.contains(&format!(" {} ", published.cloudflared_version)),
        ),
    ]
}

/// The control's verdicts: apt's run must still succeed, and every upgrade check must fail, since nothing
/// allowed the packages in.
fn control_checks(checks: Vec<Check>) -> Vec<Check> {
    checks
        .into_iter()
        .map(|check| {
            if check.name == UPGRADE_SUCCEEDED {
                return check;
            }
            let observed = format!("{} (observed: {})", if check.passed { "passes" } else { "fails" }, check.observed);
            Check::new(format!("without its origin, `{}` fails", check.name), "fails", observed, !check.passed)
        })
        .collect()
}

/// The same container process before and after dockerd's restart: live-restore kept it.
fn container_check(name: &str, before: &Observed, after: &Observed) -> Check {
    let show = |s: &Option<ContainerState>| match s {
        Some(s) => format!("running: {}, pid {}, started {}", s.running, s.pid, s.started_at),
        None => "(no such container)".into(),
    };
    let kept = match (&before.container, &after.container) {
        (Some(b), Some(a)) => b.running && a.running && a.pid == b.pid && a.started_at == b.started_at,
        _ => false,
    };
    Check::new(
        format!("container {name} kept running across dockerd's restart (live-restore)"),
        show(&before.container),
        show(&after.container),
        kept,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(htop: &str, cloudflared: &str, pid: &str, started: &str, container_pid: i64) -> Observed {
        Observed {
            versions: [("htop".to_string(), htop.to_string()), ("cloudflared".to_string(), cloudflared.to_string())]
                .into(),
            cloudflared_pid: pid.into(),
            cloudflared_started_as: Some(format!("cloudflared {started} (kiln TEST DOUBLE)")),
            upgrade_result: "success".into(),
            container: Some(ContainerState {
                running: true,
                pid: container_pid,
                started_at: "2026-12-01T06:00:00.1Z".into(),
            }),
        }
    }

    fn published() -> Published {
        Published {
            debian_package: "htop".into(),
            debian_version: "3.4.1-5+kiln.security1".into(),
            cloudflared_version: NEW_CLOUDFLARED.into(),
        }
    }

    fn before() -> Observed {
        observed("3.4.1-5", "0.0.0~kiln.test", "812", "0.0.0~kiln.test", 2301)
    }

    #[test]
    fn an_upgrade_of_both_with_a_restart_passes() {
        let after = observed("3.4.1-5+kiln.security1", NEW_CLOUDFLARED, "1904", NEW_CLOUDFLARED, 2301);
        let checks = update_checks(&published(), &before(), &after);
        assert!(checks.iter().all(|c| c.passed), "{checks:#?}");
        assert!(container_check("sentinel", &before(), &after).passed);
    }

    #[test]
    fn each_fact_made_wrong_fails_its_check() {
        let good = observed("3.4.1-5+kiln.security1", NEW_CLOUDFLARED, "1904", NEW_CLOUDFLARED, 2301);
        let failing = |after: Observed| -> Vec<String> {
            let mut checks = update_checks(&published(), &before(), &after);
            checks.push(container_check("sentinel", &before(), &after));
            checks.into_iter().filter(|c| !c.passed).map(|c| c.name).collect()
        };
        let cases: Vec<(Observed, &str)> = vec![
            (Observed { upgrade_result: "exit-code".into(), ..good.clone() }, "succeeded"),
            (observed("3.4.1-5", NEW_CLOUDFLARED, "1904", NEW_CLOUDFLARED, 2301), "htop"),
            (observed("3.4.1-5+kiln.security1", "0.0.0~kiln.test", "812", "0.0.0~kiln.test", 2301), "cloudflared"),
            (observed("3.4.1-5+kiln.security1", NEW_CLOUDFLARED, "812", "0.0.0~kiln.test", 2301), "restarted"),
            (observed("3.4.1-5+kiln.security1", NEW_CLOUDFLARED, "0", NEW_CLOUDFLARED, 2301), "restarted"),
            (observed("3.4.1-5+kiln.security1", NEW_CLOUDFLARED, "1904", NEW_CLOUDFLARED, 2999), "live-restore"),
            (Observed { container: None, ..good.clone() }, "live-restore"),
        ];
        for (after, needle) in cases {
            let failed = failing(after);
            assert!(!failed.is_empty() && failed.iter().all(|n| n.contains(needle)), "{needle}: {failed:?}");
        }
    }

    #[test]
    fn the_control_passes_only_when_nothing_was_upgraded() {
        let unchanged = control_checks(update_checks(&published(), &before(), &before()));
        assert!(unchanged.iter().all(|c| c.passed), "{unchanged:#?}");
        let upgraded = observed("3.4.1-5+kiln.security1", "0.0.0~kiln.test", "812", "0.0.0~kiln.test", 2301);
        let failed: Vec<String> = control_checks(update_checks(&published(), &before(), &upgraded))
            .into_iter()
            .filter(|c| !c.passed)
            .map(|c| c.name)
            .collect();
        assert_eq!(failed, ["without its origin, `unattended-upgrade installed htop from the security archive` fails"]);
    }

    #[test]
    fn the_observation_script_output_parses() {
        let json = r#"{"versions": {"cloudflared": "0.0.0~kiln.test", "htop": "(not installed)"},
            "cloudflared_pid": "812", "cloudflared_started_as": null, "upgrade_result": "success",
            "container": {"Status": "running", "Running": true, "Pid": 2301, "StartedAt": "2026-12-01T06:00:00Z"}}"#;
        let o: Observed = serde_json::from_str(json).unwrap();
        assert_eq!(o.container.unwrap().pid, 2301);
        assert_eq!(o.cloudflared_started_as, None);
    }
}
