//! Test scaffolding in the guest (the `ports` and `awkward` scenarios): small HTTP servers on ports the
//! profile opens, so an "open" port has someone to answer, and Docker containers publishing ports, so
//! the firewall's handling of published ports is seen from outside. A static busybox served from the
//! package mirror is both the servers and the containers' only program.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use kiln::effects::vm::harness::PortProbe;
use kiln::effects::vm::qga::Agent;
use kiln::effects::vm::wait::wait_until;
use kiln::templates::shell_quote;
use kiln::verify::Check;

/// How long the harness waits for a test server or container it started to take connections (it used
/// to try 30 times a second apart, each try a guest-agent round trip: a minute is no shorter).
const LISTENER_START: Duration = Duration::from_secs(60);
/// Starting the servers and containers (the first `docker import` included).
const START_TIMEOUT: Duration = Duration::from_secs(300);

/// A test container and what the profile means for its published port.
#[derive(Debug, Clone)]
pub struct Container {
    pub name: String,
    /// `-p` argument, e.g. `0.0.0.0:8080:8080`.
    pub publish: String,
    pub host_port: u16,
    pub reachable_from_outside: bool,
}

impl Container {
    /// The port the container's server listens on inside: the last field of `publish`.
    pub fn container_port(&self) -> u16 {
        self.publish.rsplit(':').next().and_then(|p| p.parse().ok()).expect("`publish` ends with the container's port")
    }

    /// The name of the check that probes the container's port from outside (tamperings name it).
    pub fn probe_name(&self) -> String {
        format!("from outside, container {} (-p {})", self.name, self.publish)
    }
}

/// What a scenario starts in the guest.
#[derive(Debug, Clone, Default)]
pub struct Scaffolding {
    /// Guest ports where a small HTTP server listens.
    pub listen: Vec<u16>,
    /// Containers to run (host port published → reachable from outside or not, per the profile).
    pub containers: Vec<Container>,
}

impl Scaffolding {
    pub fn is_empty(&self) -> bool {
        self.listen.is_empty() && self.containers.is_empty()
    }

    /// The containers' ports, probed from outside with the expected state's ports.
    pub fn probes(&self) -> Vec<PortProbe> {
        self.containers
            .iter()
            .map(|c| PortProbe {
                name: c.probe_name(),
                guest_port: c.host_port,
                http: true,
                should_answer: c.reachable_from_outside,
            })
            .collect()
    }

    /// Started after the inside checks so it never shows up in them: a static busybox from the mirror,
    /// HTTP servers on the scenario's ports, and the test containers (not restarted by Docker, so they
    /// are started again after a reboot). Returns checks made from inside the guest: each server and
    /// container answers on the guest's own loopback, whatever the outside sees.
    pub fn start(&self, agent: &mut Agent) -> Result<Vec<Check>> {
        if self.is_empty() {
            return Ok(Vec::new());
        }
        let out = agent.shell(&self.start_script(), START_TIMEOUT)?;
        if !out.ok() {
            bail!("starting the test scaffolding failed: {}{}", out.stdout, out.stderr);
        }
        // The servers start in the background: wait until each takes connections before anything probes
        // it from outside (without this, a probe could race the server's start and see "no answer").
        let mut checks = Vec::new();
        for port in &self.listen {
            let answered = server_answers(agent, *port)?;
            checks.push(answers_check(
                format!("inside, test server on {port}/tcp answers on the guest's loopback"),
                answered,
            ));
        }
        for c in &self.containers {
            let answered = container_answers(agent, c.host_port)?;
            checks
                .push(answers_check(format!("inside, container {} answers on the guest's loopback", c.name), answered));
        }
        Ok(checks)
    }

    fn start_script(&self) -> String {
        let mut script = String::from(
            "set -e\nif [ ! -x /opt/kiln-test/bin/busybox ]; then\n  /usr/lib/apt/apt-helper download-file http://10.0.2.100/testdata/busybox.tar /opt/kiln-test.tar >/dev/null\n  mkdir -p /opt/kiln-test && tar -xf /opt/kiln-test.tar -C /opt/kiln-test\nfi\n",
        );
        for port in &self.listen {
            script.push_str(&format!(
                "setsid /opt/kiln-test/bin/busybox httpd -p {port} -h /opt/kiln-test/www </dev/null >/dev/null 2>&1 &\n"
            ));
        }
        if !self.containers.is_empty() {
            script.push_str("docker image inspect kiln/busybox >/dev/null 2>&1 || docker import /opt/kiln-test.tar kiln/busybox >/dev/null\n");
        }
        for c in &self.containers {
            let name = shell_quote(&c.name);
            script.push_str(&format!(
                "docker start {name} >/dev/null 2>&1 || docker run -d --name {name} -p {} kiln/busybox /bin/busybox httpd -f -p 8080 -h /www >/dev/null\n",
                shell_quote(&c.publish)
            ));
        }
        script
    }
}

/// A test server takes connections on the guest's loopback (within `LISTENER_START`).
fn server_answers(agent: &mut Agent, port: u16) -> Result<bool> {
    let connect = format!("exec 3<>/dev/tcp/127.0.0.1/{port}");
    let answered = wait_until(LISTENER_START, Duration::from_secs(1), || {
        let probe =
            agent.exec("/usr/bin/timeout", &["5", "/bin/bash", "-c", &connect], None, Duration::from_secs(10))?;
        Ok(probe.ok().then_some(()))
    })?;
    Ok(answered.is_some())
}

/// A container serves its page on the guest's loopback (within `LISTENER_START`).
fn container_answers(agent: &mut Agent, host_port: u16) -> Result<bool> {
    // bash's /dev/tcp, not busybox wget: Debian's static busybox segfaults resolving names.
    let fetch =
        format!("exec 3<>/dev/tcp/127.0.0.1/{host_port}; printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3; timeout 5 cat <&3");
    let answered = wait_until(LISTENER_START, Duration::from_secs(1), || {
        let probe =
            agent.exec("/usr/bin/timeout", &["10", "/bin/bash", "-c", &fetch], None, Duration::from_secs(20))?;
        Ok(probe.stdout.contains(PAGE.trim()).then_some(()))
    })?;
    Ok(answered.is_some())
}

fn answers_check(name: String, answered: bool) -> Check {
    Check::new(name, "answers", if answered { "answers" } else { "no answer" }, answered)
}

/// What the test servers and containers serve.
const PAGE: &str = "kiln test container\n";

/// A tiny container image for the Docker checks, put in the package mirror's root (`testdata/`): Debian's
/// static busybox and a page to serve.
pub fn add_test_data(root: &Path) -> Result<()> {
    let dir = root.join("testdata");
    let tar = dir.join("busybox.tar");
    if tar.is_file() {
        return Ok(());
    }
    let tree = tempfile::tempdir()?;
    std::fs::create_dir_all(tree.path().join("bin"))?;
    std::fs::create_dir_all(tree.path().join("www"))?;
    std::fs::copy("/bin/busybox", tree.path().join("bin/busybox"))
        .context("copying /bin/busybox (install Debian's busybox-static on the host)")?;
    std::fs::write(tree.path().join("www/index.html"), PAGE)?;
    std::fs::create_dir_all(&dir)?;
    let status = std::process::Command::new("tar")
        .args(["--owner=0", "--group=0", "--numeric-owner", "-C"])
        .arg(tree.path())
        .args(["-cf"])
        .arg(&tar)
        .arg(".")
        .status()
        .context("running tar")?;
    if !status.success() {
        bail!("tar failed building the test container image");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports_scaffolding() -> Scaffolding {
        let container = |name: &str, publish: &str, host_port, reachable_from_outside| Container {
            name: name.into(),
            publish: publish.into(),
            host_port,
            reachable_from_outside,
        };
        Scaffolding {
            listen: vec![8000],
            containers: vec![
                container("declared-open", "0.0.0.0:8080:8080", 8080, true),
                container("default-bind", "8082:8080", 8082, false),
            ],
        }
    }

    #[test]
    fn container_probes_are_named_after_the_container_and_its_publish_argument() {
        let probes = ports_scaffolding().probes();
        let names: Vec<&str> = probes.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "from outside, container declared-open (-p 0.0.0.0:8080:8080)",
                "from outside, container default-bind (-p 8082:8080)"
            ]
        );
        assert_eq!(
            probes.iter().map(|p| (p.guest_port, p.http, p.should_answer)).collect::<Vec<_>>(),
            [(8080, true, true), (8082, true, false)]
        );
        assert!(Scaffolding::default().probes().is_empty() && Scaffolding::default().is_empty());
    }

    #[test]
    fn the_start_script_starts_each_server_and_container_once() {
        let script = ports_scaffolding().start_script();
        assert_eq!(script.matches("busybox httpd -p 8000 ").count(), 1, "{script}");
        assert_eq!(script.matches("docker import").count(), 1, "{script}");
        assert!(script.contains("docker run -d --name declared-open -p 0.0.0.0:8080:8080 kiln/busybox"), "{script}");
        assert!(!Scaffolding { listen: vec![8000], containers: Vec::new() }.start_script().contains("docker"));
    }
}
