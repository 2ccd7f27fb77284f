//! The deployer's local registry, as Kamal 2 runs one: Debian's `docker-registry` (the CNCF distribution
//! registry) on loopback in the WireGuard peer's namespace, filled with skopeo from OCI layouts. The guest
//! reaches it only through `ssh -R`, as Kamal's remote builder-less deploys do.
//!
//! The registry dies with the harness (PR_SET_PDEATHSIG) and is killed when dropped; its storage is in the
//! run directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use kiln::effects::fs::write_atomic;
use kiln::effects::process::die_with_parent;
use kiln::effects::vm::wait::wait_until;

/// The port Kamal 2's local registry listens on, on the deployer and (forwarded) on each host.
pub const PORT: u16 = kiln::effects::vm::tunnel::peer::KAMAL_REGISTRY_PORT;
/// docker-registry starts in well under a second; longer is a failure to start.
const START: Duration = Duration::from_secs(20);
/// One push of a small image to a local registry takes a second; longer is a hang.
const PUSH_TIMEOUT: Duration = Duration::from_secs(120);

/// A running registry on `127.0.0.1:PORT`, in the namespace `runner` enters.
pub struct Registry {
    child: Child,
    runner: Vec<String>,
    log: PathBuf,
}

impl Registry {
    /// Starts docker-registry with its storage in `dir`, run through `runner` (`ip netns exec NS`), and
    /// waits until it accepts connections.
    pub fn start(runner: &[&str], dir: &Path) -> Result<Registry> {
        std::fs::create_dir_all(dir.join("storage")).with_context(|| format!("creating {}", dir.display()))?;
        let config = dir.join("config.yml");
        let text = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{PORT}\n",
            dir.join("storage").display()
        );
        write_atomic(&config, text.as_bytes(), 0o644)?;
        let log = dir.join("registry.log");
        let file = std::fs::File::create(&log)?;
        let (program, prefix) = runner.split_first().context("an empty runner")?;
        let mut command = Command::new(program);
        command
            .args(prefix)
            .args(["docker-registry", "serve"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        die_with_parent(&mut command);
        let child = command.spawn().context("starting docker-registry (install Debian's docker-registry)")?;
        let mut registry = Registry { child, runner: runner.iter().map(|s| s.to_string()).collect(), log };
        let up = wait_until(START, Duration::from_millis(100), || {
            if let Some(status) = registry.child.try_wait()? {
                bail!("docker-registry exited ({status}): {}", registry.log_text());
            }
            Ok(registry.accepts()?.then_some(()))
        })?;
        if up.is_none() {
            bail!(
                "docker-registry did not listen on 127.0.0.1:{PORT} within {} s: {}",
                START.as_secs(),
                registry.log_text()
            );
        }
        Ok(registry)
    }

    /// Copies the OCI layout `layout`'s `tag` to `127.0.0.1:PORT/NAME:TAG` with skopeo (plain HTTP: a
    /// loopback registry, as Kamal's is).
    pub fn push(&self, layout: &Path, tag: &str, name: &str) -> Result<()> {
        let source = format!("oci:{}:{tag}", layout.display());
        let destination = format!("docker://127.0.0.1:{PORT}/{name}:{tag}");
        // `--insecure-policy`: the signature policy (no /etc/containers/policy.json is needed); the images
        // are the harness's own, built a moment ago.
        let out = self
            .command("timeout")
            .args([&PUSH_TIMEOUT.as_secs().to_string(), "skopeo", "--insecure-policy", "copy", "--quiet"])
            .args(["--dest-tls-verify=false", &source, &destination])
            .output()
            .context("running skopeo (install Debian's skopeo)")?;
        if !out.status.success() {
            bail!(
                "skopeo copy {source} {destination} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Whether something accepts a TCP connection on the registry's port, in its namespace.
    fn accepts(&self) -> Result<bool> {
        let status = self
            .command("bash")
            .args(["-c", &format!("exec 3<>/dev/tcp/127.0.0.1/{PORT}")])
            .stderr(Stdio::null())
            .status()
            .context("probing the registry's port")?;
        Ok(status.success())
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(&self.runner[0]);
        command.args(&self.runner[1..]).arg(program);
        command
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).map(|t| t.trim().to_string()).unwrap_or_else(|e| format!("(no log: {e})"))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::{File, ImageSpec, write_layout};

    /// The real programs, on this machine's loopback (no namespace): docker-registry accepts skopeo's push
    /// of a harness-built layout and serves its manifest back. Runs where both are installed (scripts/test-all
    /// installs them); elsewhere it says so and fails, never silently passes.
    #[test]
    fn docker_registry_accepts_a_layout_pushed_by_skopeo() {
        let dir = tempfile::tempdir().unwrap();
        let spec = ImageSpec {
            files: vec![File { path: "/www/index.html", bytes: b"kiln\n".to_vec(), mode: 0o644 }],
            cmd: vec!["/bin/true".into()],
        };
        let layout = write_layout(&dir.path().join("layout"), "v1", &spec).unwrap();
        // `env` as the runner: the same code path as `ip netns exec NS`, in this namespace.
        let registry = Registry::start(&["env"], &dir.path().join("registry")).expect("docker-registry starts");
        registry.push(&layout, "v1", "kiln-test").expect("skopeo pushes");
        let out = registry
            .command("skopeo")
            .args(["--insecure-policy", "inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://127.0.0.1:{PORT}/kiln-test:v1"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        let digest = index["manifests"][0]["digest"].as_str().unwrap().strip_prefix("sha256:").unwrap().to_string();
        assert_eq!(kiln::encoding::sha256_hex(&out.stdout), digest, "the registry serves the manifest pushed");
    }
}
