//! A Kamal 2-shaped deploy through the WireGuard tunnel, from the deploying peer's namespace, with real
//! components wherever Debian has them: the registry (`docker-registry`) on the deployer's loopback, images
//! pushed by `skopeo`, the registry reached from the host over SSH remote forwarding
//! (`ssh -R 5555:…` with net-ssh's algorithms, as Kamal does), and the host's real Docker pulling and
//! running as the deploy user without sudo, behind its real firewall.
//!
//! Standing in: the Kamal CLI (Ruby, not in Debian), whose `docker` commands are run here in one SSH
//! session in the order Kamal runs them; and kamal-proxy (not in Debian), replaced by a busybox `httpd`
//! whose CGI relays each request to the deployed container, switched by a `kamal-proxy deploy` script. It
//! is given the container's address, not its name: a static busybox cannot use Docker's DNS.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kiln::effects::vm::qga::Agent;
use kiln::effects::vm::tunnel::TunnelPeer;
use kiln::effects::vm::tunnel::peer::GUEST_PUBLIC;
use kiln::effects::vm::wait::wait_until;
use kiln::templates::shell_quote;
use kiln::verify::Check;

use crate::oci::{File, ImageSpec, write_layout};
use crate::registry::{self, Registry};

pub const PHASE: &str = "Kamal-shaped deploy through WireGuard";
pub const CHECK_ADDRESS: &str = "deploy: `kiln kamal`'s server is the tunnel address the deployer reaches";
pub const CHECK_DEPLOY_V1: &str = "deploy v1 as the deploy user: registry over `ssh -R`, pull, app and proxy run";
pub const CHECK_APP_V1: &str = "deploy: app v1 answers through the proxy on the host's 127.0.0.1:80";
pub const CHECK_PROXY_PUBLISHES: &str = "deploy: the proxy publishes 80 and 443 on all addresses, as kamal-proxy runs";
pub const CHECK_PROXY_CLOSED: &str =
    "deploy: the proxy's 80 and 443 answer neither on the public address nor through the tunnel";
pub const CHECK_DEPLOY_V2: &str = "deploy v2: pull, run, switch the proxy, stop and remove v1";
pub const CHECK_SWITCHED: &str = "deploy: after v2, v2 answers and v1's container is gone";
pub const CHECK_CONTROL: &str = "deploy fails when the deploy user is not in `docker` (control)";

/// Kamal's names: the service, its primary role, the network its containers share.
const SERVICE: &str = "kiln-app";
const NETWORK: &str = "kamal";
const PROXY_CONTAINER: &str = "kamal-proxy";
/// The stand-in proxy's repository and tag in the registry.
const PROXY_IMAGE: (&str, &str) = ("kamal-proxy", "stand-in");
/// One deploy under emulation: a pull of a 2 MB image, two `docker run`s, the proxy's health wait.
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(300);
/// The guest answers a local HTTP request or a docker query at once; longer is a hang.
const GUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The stand-in's command line: `run` serves, `deploy SERVICE --target ADDRESS:PORT` waits for the target
/// to answer (kamal-proxy's health check) and switches to it, `relay` is the CGI that forwards a request.
const PROXY_SCRIPT: &str = r#"#!/bin/busybox sh
# kiln's stand-in for kamal-proxy (not in Debian's archive).
set -eu
state=/tmp/kamal-proxy-target
fetch() {
  printf 'GET / HTTP/1.0\r\nHost: %s\r\n\r\n' "${1%:*}" | /bin/busybox nc "${1%:*}" "${1##*:}" \
    | /bin/busybox tr -d '\r' | /bin/busybox sed '1,/^$/d'
}
case "${1:-}" in
  run) exec /bin/busybox httpd -f -p 80 -h /proxy ;;
  relay)
    if [ ! -s "$state" ]; then printf 'Status: 503 Service Unavailable\r\n\r\nno target deployed\n'; exit 0; fi
    read -r target < "$state"
    printf 'Content-Type: text/html\r\n\r\n'
    fetch "$target" ;;
  deploy)
    shift 2
    target=
    while [ $# -gt 0 ]; do
      case "$1" in --target=*) target=${1#--target=} ;; --target) target=$2; shift ;; esac
      shift
    done
    [ -n "$target" ] || { echo "kamal-proxy deploy: --target is required" >&2; exit 2; }
    tries=0
    until [ -n "$(fetch "$target")" ]; do
      tries=$((tries + 1))
      [ "$tries" -lt 30 ] || { echo "kamal-proxy deploy: $target did not answer" >&2; exit 1; }
      /bin/busybox sleep 1
    done
    echo "$target" > "$state.new"
    /bin/busybox mv "$state.new" "$state" ;;
  *) echo "usage: kamal-proxy run | deploy SERVICE --target ADDRESS:PORT" >&2; exit 2 ;;
esac
"#;

/// The deploy, set up for one scenario: the address to deploy to, as `kiln kamal` derives it.
pub struct Deploy {
    /// `kiln kamal`'s first server address for the profile.
    pub host: String,
    dir: PathBuf,
}

impl Deploy {
    pub fn new(host: String, run_dir: &Path) -> Deploy {
        Deploy { host, dir: run_dir.join("deploy") }
    }

    /// Builds and pushes the images, deploys v1 then v2, proves each, then shows the deploy failing on a
    /// host whose deploy user is not in `docker`. Leaves the guest as it found it (no containers, the user
    /// back in `docker`). Timings go to `timings`.
    pub fn run(&self, peer: &TunnelPeer, agent: &mut Agent, timings: &mut Vec<(String, f64)>) -> Result<Vec<Check>> {
        let mut checks = vec![Check::new(
            CHECK_ADDRESS,
            peer.guest_tunnel_address().to_string(),
            self.host.clone(),
            self.host == peer.guest_tunnel_address().to_string(),
        )];
        let started = Instant::now();
        let registry = Registry::start(&peer.runner(), &self.dir.join("registry"))?;
        for version in ["v1", "v2", "v3"] {
            let layout = write_layout(&self.dir.join(format!("app-{version}")), version, &app_image(version)?)?;
            registry.push(&layout, version, SERVICE)?;
        }
        let (name, tag) = PROXY_IMAGE;
        registry.push(&write_layout(&self.dir.join("proxy"), tag, &proxy_image()?)?, tag, name)?;
        timings.push((
            "deploy: build and push three images (skopeo → docker-registry)".into(),
            started.elapsed().as_secs_f64(),
        ));

        let v1 = self.deploy(peer, "v1", None)?;
        checks.push(session_check(CHECK_DEPLOY_V1, &v1, timings, "v1"));
        let served = page(agent)?;
        checks.push(Check::new(CHECK_APP_V1, page_of("v1"), served.clone(), served == page_of("v1")));
        checks.push(publishes_everywhere(agent)?);
        let answering: Vec<String> = [GUEST_PUBLIC.to_string(), peer.guest_tunnel_address().to_string()]
            .iter()
            .map(|address| {
                Ok(peer.answering_ports(address, &[80, 443])?.iter().map(|p| format!("{address}:{p}")).collect())
            })
            .collect::<Result<Vec<Vec<String>>>>()?
            .concat();
        checks.push(Check::new(
            CHECK_PROXY_CLOSED,
            "none answers",
            if answering.is_empty() { "none answers".into() } else { format!("{} answer", answering.join(", ")) },
            answering.is_empty(),
        ));

        let v2 = self.deploy(peer, "v2", Some("v1"))?;
        checks.push(session_check(CHECK_DEPLOY_V2, &v2, timings, "v2"));
        let served = page(agent)?;
        let containers = app_containers(agent)?;
        let wanted = format!("{}; containers: {SERVICE}-web-v2", page_of("v2"));
        let observed = format!("{served}; containers: {}", containers.join(", "));
        checks.push(Check::new(CHECK_SWITCHED, wanted.clone(), observed.clone(), observed == wanted));

        checks.push(self.control(peer, agent)?);
        clean_up(agent)?;
        Ok(checks)
    }

    /// The deploy user taken out of `docker` (through the agent, as root), a deploy of v3 must fail with
    /// Docker's refusal; then the user is put back.
    fn control(&self, peer: &TunnelPeer, agent: &mut Agent) -> Result<Check> {
        let user = peer.user();
        as_root(agent, "/usr/bin/gpasswd", &["-d", user, "docker"])?;
        let session = self.deploy(peer, "v3", Some("v2"));
        as_root(agent, "/usr/bin/gpasswd", &["-a", user, "docker"])?;
        let session = session?;
        let refused = !session.ok && session.stderr.contains("permission denied");
        Ok(Check::new(
            CHECK_CONTROL,
            "the deploy fails: permission denied on Docker's socket",
            if session.ok { "the deploy succeeded".to_string() } else { session.stderr_tail() },
            refused,
        ))
    }

    /// One deploy of `version` (stopping and removing `previous`), in one SSH session through the tunnel.
    fn deploy(&self, peer: &TunnelPeer, version: &str, previous: Option<&str>) -> Result<Session> {
        let script = deploy_script(version, previous);
        let mut command = peer.kamal_session(20, registry::PORT, &self.host);
        command.args(["bash", "-c", &shell_quote(&script)]);
        Session::run(command, &self.dir.join(format!("deploy-{version}")), DEPLOY_TIMEOUT)
    }
}

/// The `docker` commands Kamal 2 runs on a host for `kamal deploy` (the proxy booted on the first), in
/// its order: pull, the `kamal` network, kamal-proxy publishing 80 and 443, the new app container, the
/// proxy switched to it, the old one stopped (and removed, as `kamal prune` does).
fn deploy_script(version: &str, previous: Option<&str>) -> String {
    let registry = format!("localhost:{}", registry::PORT);
    let (proxy_name, proxy_tag) = PROXY_IMAGE;
    let app = format!("{SERVICE}-web-{version}");
    let mut script = format!(
        r#"set -eu
docker pull --quiet {registry}/{SERVICE}:{version}
if [ -z "$(docker network ls --quiet --filter name=^{NETWORK}$)" ]; then docker network create {NETWORK}; fi
if [ -z "$(docker ps --quiet --filter name=^{PROXY_CONTAINER}$)" ]; then
  docker pull --quiet {registry}/{proxy_name}:{proxy_tag}
  docker run --detach --restart unless-stopped --name {PROXY_CONTAINER} --network {NETWORK} --publish 80:80 --publish 443:443 {registry}/{proxy_name}:{proxy_tag}
fi
docker run --detach --restart unless-stopped --name {app} --network {NETWORK} --label service={SERVICE} --label role=web {registry}/{SERVICE}:{version}
address=$(docker inspect --format '{{{{(index .NetworkSettings.Networks "{NETWORK}").IPAddress}}}}' {app})
docker exec {PROXY_CONTAINER} kamal-proxy deploy {SERVICE}-web --target "$address:80"
"#
    );
    if let Some(previous) = previous {
        let _ = writeln!(script, "docker stop {SERVICE}-web-{previous}\ndocker rm {SERVICE}-web-{previous}");
    }
    script
}

/// The page app `version` serves.
fn page_of(version: &str) -> String {
    format!("kiln-app {version}")
}

fn app_image(version: &str) -> Result<ImageSpec> {
    Ok(ImageSpec {
        files: vec![
            busybox()?,
            File { path: "/www/index.html", bytes: format!("{}\n", page_of(version)).into_bytes(), mode: 0o644 },
        ],
        cmd: ["/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/www"].map(String::from).to_vec(),
    })
}

fn proxy_image() -> Result<ImageSpec> {
    Ok(ImageSpec {
        files: vec![
            busybox()?,
            File { path: "/usr/local/bin/kamal-proxy", bytes: PROXY_SCRIPT.as_bytes().to_vec(), mode: 0o755 },
            File {
                path: "/proxy/cgi-bin/index.cgi",
                bytes: b"#!/bin/busybox sh\nexec /usr/local/bin/kamal-proxy relay\n".to_vec(),
                mode: 0o755,
            },
        ],
        cmd: ["/usr/local/bin/kamal-proxy", "run"].map(String::from).to_vec(),
    })
}

/// The host's static busybox (a dynamic one would find no libc in the image).
fn busybox() -> Result<File> {
    let bytes = std::fs::read("/bin/busybox").context("reading /bin/busybox (install Debian's busybox-static)")?;
    Ok(File { path: "/bin/busybox", bytes, mode: 0o755 })
}

/// The page the guest's loopback port 80 serves, body only, trimmed.
fn page(agent: &mut Agent) -> Result<String> {
    let script =
        r#"exec 3<>/dev/tcp/127.0.0.1/80 && printf 'GET / HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3 && cat <&3"#;
    let out = agent.exec("/bin/bash", &["-c", script], None, GUEST_TIMEOUT)?;
    if !out.ok() {
        return Ok(format!("no answer on 127.0.0.1:80 (exit {}): {}", out.code, out.stderr.trim()));
    }
    Ok(body(&out.stdout))
}

/// An HTTP response's body, trimmed.
fn body(response: &str) -> String {
    response.split_once("\r\n\r\n").map_or("", |(_, body)| body).trim().to_string()
}

/// Where Docker publishes the proxy's 80 and 443 (`docker port`, one `ADDRESS:PORT` a line).
fn publishes_everywhere(agent: &mut Agent) -> Result<Check> {
    let mut bindings = Vec::new();
    for port in ["80/tcp", "443/tcp"] {
        let out = agent.exec("/usr/bin/docker", &["port", PROXY_CONTAINER, port], None, GUEST_TIMEOUT)?;
        if !out.ok() {
            // No proxy (a deploy that failed before starting it): the check fails, saying so.
            let observed = format!("`docker port {PROXY_CONTAINER} {port}` failed: {}", out.stderr.trim());
            return Ok(Check::new(CHECK_PROXY_PUBLISHES, "80 and 443 published", observed, false));
        }
        bindings.extend(out.stdout.lines().map(str::to_string));
    }
    let wanted = ["0.0.0.0:80", "[::]:80", "0.0.0.0:443", "[::]:443"];
    let all = wanted.iter().all(|w| bindings.iter().any(|b| b == w));
    Ok(Check::new(CHECK_PROXY_PUBLISHES, wanted.join(", "), bindings.join(", "), all))
}

/// The names of the app's containers, running or not.
fn app_containers(agent: &mut Agent) -> Result<Vec<String>> {
    let filter = format!("label=service={SERVICE}");
    listed(agent, &["ps", "--all", "--filter", &filter, "--format", "{{.Names}}"])
}

/// The names a `docker … --format {{.Name(s)}}` listing prints, sorted.
fn listed(agent: &mut Agent, args: &[&str]) -> Result<Vec<String>> {
    let out = agent.exec("/usr/bin/docker", args, None, GUEST_TIMEOUT)?;
    if !out.ok() {
        bail!("docker {} failed in the guest: {}", args.join(" "), out.stderr.trim());
    }
    let mut names: Vec<String> = out.stdout.lines().filter(|l| !l.is_empty()).map(str::to_string).collect();
    names.sort();
    Ok(names)
}

/// Removes what the deploy started (what of it exists: a deploy that failed early started less), so later
/// rounds see the scenario's own containers only.
fn clean_up(agent: &mut Agent) -> Result<()> {
    let mut containers = app_containers(agent)?;
    let proxy = format!("name=^{PROXY_CONTAINER}$");
    containers.extend(listed(agent, &["ps", "--all", "--filter", &proxy, "--format", "{{.Names}}"])?);
    if !containers.is_empty() {
        let mut remove = vec!["rm", "--force"];
        remove.extend(containers.iter().map(String::as_str));
        as_root(agent, "/usr/bin/docker", &remove)?;
    }
    let network = format!("name=^{NETWORK}$");
    if !listed(agent, &["network", "ls", "--filter", &network, "--format", "{{.Name}}"])?.is_empty() {
        as_root(agent, "/usr/bin/docker", &["network", "rm", NETWORK])?;
    }
    Ok(())
}

fn as_root(agent: &mut Agent, program: &str, args: &[&str]) -> Result<()> {
    let out = agent.exec(program, args, None, GUEST_TIMEOUT)?;
    if !out.ok() {
        bail!("{program} {} failed in the guest (exit {}): {}", args.join(" "), out.code, out.stderr.trim());
    }
    Ok(())
}

/// A deploy check from its session, its time kept as a timing when it succeeded.
fn session_check(name: &str, session: &Session, timings: &mut Vec<(String, f64)>, version: &str) -> Check {
    if session.ok {
        timings.push((format!("deploy {version} through WireGuard (one SSH session)"), session.seconds));
    }
    Check::new(
        name,
        "the session exits 0",
        if session.ok { format!("done in {:.1} s", session.seconds) } else { session.stderr_tail() },
        session.ok,
    )
}

/// One SSH session's result; its output is kept in files beside the deploy.
struct Session {
    ok: bool,
    stderr: String,
    seconds: f64,
}

impl Session {
    /// Runs `command` with its output in `stem.out`/`stem.err`, killed after `timeout`.
    fn run(mut command: Command, stem: &Path, timeout: Duration) -> Result<Session> {
        if let Some(dir) = stem.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let (out, err) = (stem.with_extension("out"), stem.with_extension("err"));
        command.stdin(Stdio::null()).stdout(std::fs::File::create(&out)?).stderr(std::fs::File::create(&err)?);
        let started = Instant::now();
        let mut child = command.spawn().context("running ssh (install openssh-client)")?;
        let status = wait_until(timeout, Duration::from_millis(200), || Ok(child.try_wait()?))?;
        let seconds = started.elapsed().as_secs_f64();
        let Some(status) = status else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("a deploy session took over {} s (see {})", timeout.as_secs(), err.display());
        };
        let stderr = std::fs::read_to_string(&err).with_context(|| format!("reading {}", err.display()))?;
        Ok(Session { ok: status.success(), stderr, seconds })
    }

    /// The last lines of stderr: what failed.
    fn stderr_tail(&self) -> String {
        let lines: Vec<&str> = self.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(3)..].join(" / ");
        if tail.is_empty() { "failed, nothing on stderr".into() } else { format!("failed: {tail}") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_runs_kamals_docker_commands_in_order() {
        let script = deploy_script("v2", Some("v1"));
        let order = [
            "docker pull --quiet localhost:5555/kiln-app:v2",
            "docker network create kamal",
            "--publish 80:80 --publish 443:443",
            "docker run --detach --restart unless-stopped --name kiln-app-web-v2 --network kamal",
            "kamal-proxy deploy kiln-app-web --target \"$address:80\"",
            "docker stop kiln-app-web-v1",
            "docker rm kiln-app-web-v1",
        ];
        let mut at = 0;
        for part in order {
            let found = script[at..].find(part).unwrap_or_else(|| panic!("{part} not after byte {at}:\n{script}"));
            at += found + part.len();
        }
        // Go's template braces survive the format string.
        assert!(script.contains(r#"{{(index .NetworkSettings.Networks "kamal").IPAddress}}"#), "{script}");
        assert!(!deploy_script("v1", None).contains("docker stop"));
    }

    #[test]
    fn the_page_is_the_body_of_the_response() {
        assert_eq!(body("HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\nkiln-app v1\n"), "kiln-app v1");
        assert_eq!(body("HTTP/1.0 503 Service Unavailable\r\n\r\n"), "");
        assert_eq!(body("garbage"), "");
    }

    /// The stand-in proxy's own script, run by the host's static busybox in an empty root (so a command
    /// the script names without `/bin/busybox` is not found): with no target, `relay` answers 503;
    /// `deploy` is started before the target listens, so it must retry, and switches once it answers;
    /// `relay` then serves its page.
    #[test]
    fn the_stand_in_proxy_relays_to_the_target_it_was_switched_to() {
        let root = tempfile::tempdir().unwrap();
        for file in proxy_image().unwrap().files.into_iter().chain(app_image("v1").unwrap().files) {
            let path = root.path().join(file.path.trim_start_matches('/'));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            kiln::effects::fs::write_atomic(&path, &file.bytes, file.mode).unwrap();
        }
        std::fs::create_dir_all(root.path().join("tmp")).unwrap();
        let chroot = |args: &[&str]| Command::new("chroot").arg(root.path()).args(args).output().unwrap();
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let target = format!("127.0.0.1:{port}");
        let relay = chroot(&["/usr/local/bin/kamal-proxy", "relay"]);
        assert!(String::from_utf8_lossy(&relay.stdout).starts_with("Status: 503"), "{relay:?}");
        let deploy = Command::new("chroot")
            .arg(root.path())
            .args(["/usr/local/bin/kamal-proxy", "deploy", "kiln-app-web", "--target", &target])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Long enough for the first attempt to be refused, well short of the script's 30 tries.
        std::thread::sleep(Duration::from_secs(2));
        let mut app = Command::new("chroot")
            .arg(root.path())
            .args(["/bin/busybox", "httpd", "-f", "-p", &target, "-h", "/www"])
            .spawn()
            .unwrap();
        let deploy = deploy.wait_with_output().unwrap();
        let relay = chroot(&["/usr/local/bin/kamal-proxy", "relay"]);
        let _ = app.kill();
        let _ = app.wait();
        let stderr = String::from_utf8_lossy(&deploy.stderr);
        assert!(deploy.status.success(), "{stderr}");
        assert!(stderr.contains("can't connect"), "the deploy never had to retry: {stderr}");
        assert!(String::from_utf8_lossy(&relay.stdout).ends_with("\r\n\r\nkiln-app v1\n"), "{relay:?}");
    }
}
