//! lynis's hardening index, a recognised auditor's figure and not a gate: on the seed host after its checks,
//! and on the bare base image booted with an empty cloud-config (`lynis-bare`). lynis comes from the guest's
//! release through the test mirror and is installed for the test only. Both run with `KILN_LYNIS=1` only.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use kiln::effects::mirror::{self, MirrorRequest};
use kiln::effects::vm::boot::boot_to_cloud_init;
use kiln::effects::vm::harness::dpkg_status_of;
use kiln::effects::vm::qemu::{Accel, QemuConfig};
use kiln::effects::vm::qga::Agent;
use kiln::effects::vm::wait;
use kiln::verify::Check;
use kiln::verify::report::Verdict;

/// lynis runs only when asked (`KILN_LYNIS=1`): a whole audit takes about 19 minutes under TCG here, too long
/// for every CI run, and its figure is no gate.
pub fn wanted() -> bool {
    std::env::var_os("KILN_LYNIS").is_some_and(|v| v == "1")
}

/// The package the mirror must carry for the audit.
pub const PACKAGE: &str = "lynis";
/// `apt-get update` and the install, under emulation.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);
/// A whole `lynis audit system` under emulation.
const AUDIT_TIMEOUT: Duration = Duration::from_secs(1200);
/// The bare image's boot: a trivial config, no packages.
const BARE_BOOT_TIMEOUT: Duration = Duration::from_secs(600);
/// lynis's machine-readable report (`key=value` lines).
const REPORT: &str = "/var/log/lynis-report.dat";
pub const PHASE: &str = "lynis (a figure, not a gate)";

/// What the report says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub hardening_index: u32,
    pub tests_performed: u32,
    /// `TEST-ID: text` per suggestion, in the report's order.
    pub suggestions: Vec<String>,
}

/// Reads lynis's report: `hardening_index=NN`, `lynis_tests_done=NN`, `suggestion[]=ID|text|details|solution|`.
pub fn parse(report: &str) -> Result<Report> {
    let mut index = None;
    let mut tests = None;
    let mut suggestions = Vec::new();
    for line in report.lines() {
        let Some((key, value)) = line.split_once('=') else { continue };
        match key {
            "hardening_index" => index = Some(value.parse().with_context(|| format!("hardening_index={value}"))?),
            "lynis_tests_done" => tests = Some(value.parse().with_context(|| format!("lynis_tests_done={value}"))?),
            "suggestion[]" => {
                let mut fields = value.split('|');
                let id = fields.next().unwrap_or_default();
                let text = fields.next().unwrap_or_default();
                suggestions.push(format!("{id}: {text}"));
            }
            _ => {}
        }
    }
    match (index, tests) {
        (Some(hardening_index), Some(tests_performed)) => {
            ensure!(hardening_index <= 100, "a hardening index of {hardening_index} is not a percentage");
            Ok(Report { hardening_index, tests_performed, suggestions })
        }
        _ => bail!("lynis's report has no hardening_index or lynis_tests_done"),
    }
}

/// Installs lynis from the guest's configured sources, audits the system, keeps the report in
/// `run_dir/lynis-report.dat` and gives the figure as a check.
pub fn audit(agent: &mut Agent, run_dir: &Path, label: &str) -> Result<(Report, Vec<Check>)> {
    let started = Instant::now();
    let install = format!(
        "export DEBIAN_FRONTEND=noninteractive; apt-get -q update && apt-get -q -y install {PACKAGE} >/dev/null"
    );
    let out = agent.shell(&install, INSTALL_TIMEOUT)?;
    ensure!(out.ok(), "installing lynis in the guest failed: {}{}", out.stdout, out.stderr);
    let out = agent.exec("lynis", &["audit", "system", "--quick", "--no-colors", "--cronjob"], None, AUDIT_TIMEOUT)?;
    ensure!(out.ok(), "lynis audit system failed: {}", out.stderr);
    let text = agent.exec("cat", &["--", REPORT], None, wait::AGENT_CONNECT)?;
    ensure!(text.ok(), "reading {REPORT}: {}", text.stderr);
    let kept = run_dir.join("lynis-report.dat");
    std::fs::write(&kept, &text.stdout).with_context(|| format!("writing {}", kept.display()))?;
    let report = parse(&text.stdout)?;
    eprintln!(
        "{label}: lynis hardening index {} ({} tests, {} suggestions, {:.0} s); report in {}",
        report.hardening_index,
        report.tests_performed,
        report.suggestions.len(),
        started.elapsed().as_secs_f64(),
        kept.display()
    );
    let check = Check::new(
        format!("lynis audited the {label} (hardening index)"),
        "a report with an index and the tests run",
        format!(
            "index {} of 100, {} tests, {} suggestions",
            report.hardening_index,
            report.tests_performed,
            report.suggestions.len()
        ),
        report.tests_performed > 0,
    );
    Ok((report, vec![check]))
}

/// The bare base image: booted with an empty cloud-config, its apt pointed at a mirror holding lynis, audited.
pub fn bare(image: &Path, run_dir: &Path, accel: Accel) -> Result<Verdict> {
    std::fs::create_dir_all(run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let status = dpkg_status_of(image)?;
    let release = kiln::effects::image::release_of_file(&status)?;
    let packages = [PACKAGE.to_string()];
    let request = MirrorRequest { packages: &packages, dpkg_status: &status, codename: release.facts().codename };
    let mirror = mirror::build_mirror_with_cache(run_dir, &request, &mirror::default_cache_dir())?;
    let server = mirror::serve(&mirror.root)?;
    let user_data =
        "#cloud-config\n# kiln's VM tests: the bare base image, nothing configured (lynis's baseline)\n{}\n";
    let seed = kiln::pipeline::seed(user_data, "bare", None).map_err(|f| anyhow::anyhow!("{f}"))?;
    let seed_path = run_dir.join("seed.img");
    std::fs::write(&seed_path, &seed.image).with_context(|| format!("writing {}", seed_path.display()))?;
    let config = QemuConfig {
        base_image: image.to_path_buf(),
        run_dir: run_dir.to_path_buf(),
        seed: Some(seed_path),
        memory_mib: 2048,
        cpus: 2,
        accel,
        mirror_port: Some(server.port()),
        forwards: Vec::new(),
        internet: false,
        extra_nic: None,
        multi_threaded_tcg: false,
    };
    let started = Instant::now();
    let booted = boot_to_cloud_init(&config, BARE_BOOT_TIMEOUT, &mut |_| {})?;
    let mut agent = booted.instance.agent(wait::AGENT_CONNECT)?;
    // Only apt's sources change: the image's point at Debian's archive, which is out of reach here.
    let key = String::from_utf8(mirror.public_key.clone()).context("the mirror's key is not text")?;
    let sources = format!(
        "Types: deb\nURIs: {}\nSuites: ./\nSigned-By:\n{}\n",
        mirror::guest_url("debian")?,
        key.lines()
            .map(|l| if l.is_empty() { " .".to_string() } else { format!(" {l}") })
            .collect::<Vec<_>>()
            .join("\n")
    );
    let out = agent.exec(
        "sh",
        &["-c", "rm -f /etc/apt/sources.list.d/*.sources && : > /etc/apt/sources.list && cat > /etc/apt/sources.list.d/kiln-test-mirror.sources"],
        Some(sources.as_bytes()),
        wait::AGENT_CONNECT,
    )?;
    ensure!(out.ok(), "pointing the bare guest's apt at the mirror failed: {}", out.stderr);
    let (_, checks) = audit(&mut agent, run_dir, "bare base image")?;
    drop(server);
    Ok(Verdict {
        scenario: "lynis-bare".into(),
        phases: vec![(PHASE.into(), checks)],
        timings: vec![("boot, install and audit".into(), started.elapsed().as_secs_f64())],
        accel: accel.name().into(),
        notes: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_gives_the_index_and_suggestions() {
        let report = "# Lynis Report\nlynis_tests_done=251\nsuggestion[]=SSH-7408|Consider hardening SSH configuration|AllowTcpForwarding (set YES to NO)|-|\nhardening_index=71\nsuggestion[]=PKGS-7370|Install debsums utility for the verification of packages with known good database.|-|-|\n";
        let parsed = parse(report).unwrap();
        assert_eq!(parsed.hardening_index, 71);
        assert_eq!(parsed.tests_performed, 251);
        assert_eq!(parsed.suggestions[0], "SSH-7408: Consider hardening SSH configuration");
        assert_eq!(parsed.suggestions.len(), 2);
    }

    #[test]
    fn a_report_without_an_index_is_an_error() {
        assert!(parse("lynis_tests_done=12\n").is_err());
        assert!(parse("hardening_index=140\nlynis_tests_done=12\n").is_err());
        assert!(parse("hardening_index=x\nlynis_tests_done=12\n").is_err());
    }
}
