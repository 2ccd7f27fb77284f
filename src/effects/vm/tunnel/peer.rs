//! The deploying peer: the harness as a CI runner on the guest's "public internet", reaching SSH only
//! through WireGuard (`kiln test` on a WireGuard profile, and the CI's `wireguard` scenario).
//!
//! The guest gets a second NIC on a tap device that QEMU opens in the root namespace and the harness then
//! moves into a network namespace of its own (`ip link set TAP netns NS`), with static addresses on both
//! ends (the guest's from the seed's network-config, matched by MAC). In that namespace runs a userspace
//! WireGuard peer (Debian's `wireguard-go`, configured with `wg`) with a key the harness generated, and the
//! real OpenSSH client logs in as the deploy user with a harness-generated ed25519 key. The host kernel
//! here has no wireguard module; the guest uses its kernel's.
//!
//! Everything the peer creates (namespace, wireguard-go, key files) goes away when it is dropped, also on
//! a panic; wireguard-go also dies with the harness process (PR_SET_PDEATHSIG), and namespaces left by
//! a killed harness are removed by the next one.

use std::cell::RefCell;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::effects::fs::remove_if_present;
use crate::effects::process::{die_with_parent, run};
use crate::effects::vm::boot::reported_public_key;
use crate::effects::vm::harness::Network;
use crate::effects::vm::qemu::ExtraNic;
use crate::effects::vm::qga::Agent;
use crate::effects::vm::wait::wait_until;
use crate::lower::facts::Facts;
use crate::lower::wireguard::{PUBLIC_KEY_LINE, key_path};
use crate::model::{Model, Proto, SSH_PORT};
use crate::verify::reach::{self, Reach};
use crate::verify::{Check, observe};
use anyhow::{Context, Result, bail};

/// The guest's address on its public NIC, and the harness's across the link (TEST-NET-1, RFC 5737).
pub const GUEST_PUBLIC: &str = "192.0.2.2";
pub const PEER_PUBLIC: &str = "192.0.2.1";
const PUBLIC_PREFIX: u8 = 24;
/// QEMU gives the first NIC (user-mode networking) this address unless told otherwise.
const PRIMARY_MAC: &str = "52:54:00:12:34:56";
const PUBLIC_MAC: &str = "52:54:00:c0:00:02";
const NETNS_PREFIX: &str = "kiln-wg-";
/// QEMU sets its tap device up, after which it can be moved into the namespace.
const TAP_READY: Duration = Duration::from_secs(20);
/// wireguard-go creates its control socket.
const WIREGUARD_GO_START: Duration = Duration::from_secs(10);
/// Traffic into the tunnel gets a handshake with the guest.
const HANDSHAKE: Duration = Duration::from_secs(30);

/// Check names, used by scenarios to name the check a tampering must fail.
pub const CHECK_KEY_REPORTED: &str = "WireGuard: the guest printed its public key on the console";
pub const CHECK_HANDSHAKE: &str = "WireGuard: the harness peer completes a handshake";
pub const CHECK_SSH_TUNNEL: &str = "through WireGuard, ssh as the deploy user runs `docker ps`";
pub const CHECK_TUNNEL_PORTS: &str = "through WireGuard, only SSH and declared container ports answer";
/// Docker's address pools: its default bridge (172.17.0.0/16) and the networks it makes after it.
const DOCKER_NETWORKS: &str = "172.16.0.0/12";
/// Reading the containers' addresses in the guest.
const INSPECT_TIMEOUT: Duration = Duration::from_secs(60);

/// The check that a layer-2 neighbour routing to the Docker bridge gets no answer from a container.
pub fn neighbour_check_name(container: &str) -> String {
    format!(
        "from a layer-2 neighbour routing to the Docker bridge, container {container} does not answer at its own address"
    )
}

/// The process that holds a published container port on the host (`ss -p`).
const DOCKER_PROXY: &str = "docker-proxy";
pub const CHECK_PUBLIC_SSH: &str = "from the public network, SSH gives no banner";
pub const CHECK_PUBLIC_PORTS: &str = "from the public network, no TCP port answers but those declared";
pub const CHECK_WRONG_KEY_HANDSHAKE: &str = "a peer with an unknown key gets no handshake";
pub const CHECK_WRONG_KEY_SSH: &str = "a peer with an unknown key cannot reach SSH";
pub const CHECK_KAMAL_FORWARD: &str = "through WireGuard, Kamal's registry tunnel works: `ssh -R 5555` as the deploy user, offering what net-ssh 7.0 offers";

/// What net-ssh 7.0 (the oldest Kamal 2 takes) offers by default with the gems Kamal's gemspec requires
/// (`x25519`, `ed25519`; not `rbnacl`, so no chacha20), from its `lib/net/ssh/transport/algorithms.rb`
/// (tag v7.0.0). The real OpenSSH client offers exactly these: a stand-in for Kamal's client, which cannot
/// run here (no RubyGems), that negotiates as it would. `ssh-rsa-cert-v00`, which OpenSSH no longer knows,
/// is left out.
const NET_SSH_KEX: &str = "curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp521,ecdh-sha2-nistp384,ecdh-sha2-nistp256,diffie-hellman-group-exchange-sha256,diffie-hellman-group14-sha1";
const NET_SSH_HOST_KEYS: &str = "ssh-ed25519-cert-v01@openssh.com,ssh-ed25519,ecdsa-sha2-nistp521-cert-v01@openssh.com,ecdsa-sha2-nistp384-cert-v01@openssh.com,ecdsa-sha2-nistp256-cert-v01@openssh.com,ecdsa-sha2-nistp521,ecdsa-sha2-nistp384,ecdsa-sha2-nistp256,ssh-rsa-cert-v01@openssh.com,ssh-rsa";
const NET_SSH_CIPHERS: &str = "aes256-ctr,aes192-ctr,aes128-ctr";
const NET_SSH_MACS: &str =
    "hmac-sha2-512-etm@openssh.com,hmac-sha2-256-etm@openssh.com,hmac-sha2-512,hmac-sha2-256,hmac-sha1";
/// Kamal 2's default port for a registry on the deploying machine (`localhost:5555`).
pub const KAMAL_REGISTRY_PORT: u16 = 5555;
/// The registry stand-in: listens on loopback in the namespace, says where, answers one connection with
/// the token it was given, and ends.
const ONE_ANSWER_SERVER: &str = r#"
import socket, sys
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(1)
print(server.getsockname()[1], flush=True)
connection, _ = server.accept()
connection.sendall((sys.argv[1] + "\n").encode())
connection.close()
"#;
/// The stand-in registry waits this long for the forwarded connection.
const REGISTRY_WAIT: Duration = Duration::from_secs(90);

/// The guest's second NIC: a tap that QEMU opens and the harness moves into `netns`.
#[derive(Debug, Clone)]
struct TapNic {
    pub ifname: String,
    pub mac: String,
    pub netns: String,
}

impl ExtraNic for TapNic {
    /// QEMU arguments for the NIC, on a PCI slot clear of the automatically placed devices (the guest
    /// names it `ens16`; the network-config matches it by MAC anyway).
    fn qemu_args(&self) -> Vec<String> {
        vec![
            "-netdev".into(),
            format!("tap,id=n1,ifname={},script=no,downscript=no", self.ifname),
            "-device".into(),
            format!("virtio-net-pci,netdev=n1,mac={},addr=0x10", self.mac),
        ]
    }

    /// Moves the tap QEMU just created into the namespace and addresses the harness's end. Called after
    /// every QEMU start: the tap is QEMU's and disappears when QEMU exits (at each reboot).
    fn after_start(&self, qemu_running: &mut dyn FnMut() -> bool) -> Result<()> {
        let in_root = Path::new("/sys/class/net").join(&self.ifname);
        // Moved the instant it appears, the device was gone from the namespace right after (QEMU was
        // still setting it up): wait a moment, move, and check that it arrived.
        let moved = wait_until(TAP_READY, Duration::from_millis(100), || {
            if in_root.exists() {
                std::thread::sleep(Duration::from_millis(300));
                let moved = ip(&["link", "set", &self.ifname, "netns", &self.netns]).is_ok()
                    && ip(&["-n", &self.netns, "link", "show", &self.ifname]).is_ok();
                if moved {
                    return Ok(Some(()));
                }
            }
            if !qemu_running() {
                bail!("QEMU exited before its tap device {} could be moved (see qemu.log)", self.ifname);
            }
            Ok(None)
        })?;
        if moved.is_none() {
            bail!(
                "could not move QEMU's tap device {} into {} within {} s",
                self.ifname,
                self.netns,
                TAP_READY.as_secs()
            );
        }
        let address = format!("{PEER_PUBLIC}/{PUBLIC_PREFIX}");
        ip(&["-n", &self.netns, "addr", "add", &address, "dev", &self.ifname])?;
        ip(&["-n", &self.netns, "link", "set", &self.ifname, "up"])?;
        Ok(())
    }
}

/// The harness's WireGuard peer and SSH client, in their own network namespace.
pub struct TunnelPeer {
    dir: PathBuf,
    netns: String,
    interface: String,
    tap: String,
    daemon: Option<Child>,
    key_file: PathBuf,
    wrong_key_file: PathBuf,
    ssh_key: PathBuf,
    user: String,
    guest_interface: String,
    guest_tunnel: IpAddr,
    guest_port: u16,
    /// What the profile's components decided, for which TCP ports its firewall opens to everyone on the
    /// public interface (`Facts::open_to_everyone`, as `kiln expect` decides it).
    facts: Facts,
    guest_key: RefCell<Option<String>>,
    timings: RefCell<Vec<(String, f64)>>,
}

impl TunnelPeer {
    /// Makes the keys, the namespace and the userspace WireGuard interface, and writes the harness into
    /// the model: its WireGuard key replaces the key of the profile's first peer (whose first allowed IP
    /// becomes the harness's tunnel address) and its SSH key joins the deploy user's keys. The expected
    /// state is derived afterwards, so it expects the harness exactly as a declared peer.
    pub fn create(run_dir: &Path, model: &mut Model) -> Result<TunnelPeer> {
        let Some(wireguard) = model.wireguard.as_mut() else {
            bail!("the scenario wants a WireGuard peer, but the profile has no `wireguard` section");
        };
        let Some(first) = wireguard.peers.first_mut() else {
            bail!("the profile's `wireguard.peers` is empty: the harness takes the place of the first peer");
        };
        let Some(tunnel) = first.allowed_ips.first().copied() else {
            bail!("the profile's first WireGuard peer has no allowed IP to use as the harness's address");
        };
        remove_stale_namespaces();
        let pid = std::process::id();
        let dir = run_dir.join("peer");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        let key_file = dir.join("wg.key");
        let wrong_key_file = dir.join("wg-unknown.key");
        for file in [&key_file, &wrong_key_file] {
            let key = run(Command::new("wg").arg("genkey"), "wg genkey (install wireguard-tools)")?;
            write_private(file, &key.stdout)?;
        }
        let public_key = String::from_utf8(
            run_with_input("wg", &["pubkey"], &std::fs::read(&key_file)?).context("wg pubkey")?.stdout,
        )?
        .trim()
        .to_string();
        let ssh_key = dir.join("id_ed25519");
        run(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "kiln-harness", "-f"])
                .arg(&ssh_key),
            "ssh-keygen (install openssh-client)",
        )?;
        let ssh_public = std::fs::read_to_string(ssh_key.with_extension("pub"))?.trim().to_string();

        first.public_key = public_key;
        let (guest_interface, guest_tunnel, guest_port) =
            (wireguard.interface.clone(), wireguard.address.address, wireguard.listen_port);
        if !model.user.ssh_keys.contains(&ssh_public) {
            model.user.ssh_keys.push(ssh_public);
        }
        let facts = crate::lower::facts(model);

        let netns = format!("{NETNS_PREFIX}{pid}");
        let mut peer = TunnelPeer {
            dir,
            netns: netns.clone(),
            interface: format!("kwg{}", pid % 10_000_000),
            tap: format!("ktap{}", pid % 10_000_000),
            daemon: None,
            key_file,
            wrong_key_file,
            ssh_key,
            user: model.user.name.clone(),
            guest_interface,
            guest_tunnel,
            guest_port,
            facts,
            guest_key: RefCell::new(None),
            timings: RefCell::new(Vec::new()),
        };
        ip(&["netns", "add", &netns])?;
        ip(&["-n", &netns, "link", "set", "lo", "up"])?;
        peer.start_daemon(tunnel.address)?;
        Ok(peer)
    }

    /// wireguard-go in the namespace, in the foreground (so the harness owns the process). It refuses
    /// to run when it believes the kernel has WireGuard; this host's kernel has no module, hence the
    /// variable.
    fn start_daemon(&mut self, tunnel_address: IpAddr) -> Result<()> {
        let log = std::fs::File::create(self.dir.join("wireguard-go.log"))?;
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.netns, "wireguard-go", "-f", &self.interface])
            .env("WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD", "1")
            .env("LOG_LEVEL", "error")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        die_with_parent(&mut command);
        self.daemon = Some(command.spawn().context("starting wireguard-go (install wireguard-go)")?);
        let socket = PathBuf::from(format!("/var/run/wireguard/{}.sock", self.interface));
        let created = wait_until(WIREGUARD_GO_START, Duration::from_millis(50), || {
            if socket.exists() {
                return Ok(Some(()));
            }
            if let Some(status) = self.daemon.as_mut().and_then(|d| d.try_wait().ok().flatten()) {
                let log = std::fs::read_to_string(self.dir.join("wireguard-go.log")).unwrap_or_default();
                bail!("wireguard-go exited ({status}): {}", log.trim());
            }
            Ok(None)
        })?;
        if created.is_none() {
            bail!("wireguard-go did not create {} within {} s", socket.display(), WIREGUARD_GO_START.as_secs());
        }
        self.wg(&["set", &self.interface, "private-key", &self.key_file.display().to_string()])?;
        let ns = self.netns.clone();
        ip(&["-n", &ns, "addr", "add", &format!("{tunnel_address}/32"), "dev", &self.interface])?;
        ip(&["-n", &ns, "link", "set", &self.interface, "up"])?;
        ip(&["-n", &ns, "route", "add", &format!("{}/32", self.guest_tunnel), "dev", &self.interface])?;
        Ok(())
    }

    /// The guest's second NIC, on the tap the peer moves into its namespace, and the network-config
    /// that addresses it.
    pub fn network(&self) -> Network {
        let nic = TapNic { ifname: self.tap.clone(), mac: PUBLIC_MAC.into(), netns: self.netns.clone() };
        Network { config: network_config(), nic: Arc::new(nic) }
    }

    /// Timings measured so far ("WireGuard handshake (first boot)", seconds).
    pub fn timings(&self) -> Vec<(String, f64)> {
        self.timings.borrow().clone()
    }

    /// The guest's generated private key, read through the agent (stdout, never an argument), so that
    /// the secret scan can look for it in every process argument and file.
    pub fn guest_secrets(&self, agent: &mut Agent) -> Result<Vec<String>> {
        const READ_TIMEOUT: Duration = Duration::from_secs(30);
        let path = key_path(&self.guest_interface);
        let out = agent.exec("/bin/cat", &[&path], None, READ_TIMEOUT)?;
        if !out.ok() {
            bail!("reading the guest's WireGuard key {path} failed (exit {}): {}", out.code, out.stderr.trim());
        }
        let key = out.stdout.trim();
        // Never shown: it is the secret the scan looks for.
        if !crate::model::is_wireguard_key(key) {
            bail!("the guest's {path} does not hold a WireGuard key ({} bytes)", key.len());
        }
        Ok(vec![key.to_string()])
    }

    /// Every check through the tunnel and from the public network. `label` names the phase in timings;
    /// `console` is read for the guest's public key until it is known.
    pub fn checks(&self, agent: &mut Agent, console: Option<&str>, label: &str) -> Result<Vec<Check>> {
        let mut checks = Vec::new();
        if self.guest_key.borrow().is_none() {
            let (reported, key) = self.key_reported(console);
            checks.push(reported);
            match key {
                Some(key) => *self.guest_key.borrow_mut() = Some(key),
                None => return Ok(checks),
            }
        }
        let handshake = self.connect()?;
        checks.push(self.handshake_check(handshake, label));
        checks.push(self.ssh_check(handshake.is_some(), label)?);
        checks.push(self.forward_check()?);
        checks.extend(self.port_checks(agent)?);
        Ok(checks)
    }

    /// Whether the guest's public key is known (read from its console): the tunnel can be tried.
    pub fn knows_guest_key(&self) -> bool {
        self.guest_key.borrow().is_some()
    }

    /// The program prefix that runs a command in the peer's namespace (`ip netns exec NS`).
    pub fn runner(&self) -> [&str; 4] {
        ["ip", "netns", "exec", self.netns.as_str()]
    }

    /// The guest's address in the tunnel, where the peer reaches SSH.
    pub fn guest_tunnel_address(&self) -> IpAddr {
        self.guest_tunnel
    }

    /// The deploy user the peer logs in as.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The guest printed its public key on the console: the check, and the key.
    fn key_reported(&self, console: Option<&str>) -> (Check, Option<String>) {
        let key = console.and_then(|c| reported_public_key(c, &self.guest_interface));
        let check = Check::new(
            CHECK_KEY_REPORTED,
            format!("`{PUBLIC_KEY_LINE} ({}): KEY`", self.guest_interface),
            key.clone().unwrap_or_else(|| "no such line".into()),
            key.is_some(),
        );
        (check, key)
    }

    /// A handshake completed (`connect`'s time, kept as a timing).
    fn handshake_check(&self, handshake: Option<f64>, label: &str) -> Check {
        let observed = match handshake {
            Some(seconds) => {
                self.timings.borrow_mut().push((format!("WireGuard handshake ({label})"), seconds));
                format!("after {seconds:.2} s")
            }
            None => format!("no handshake within {} s", HANDSHAKE.as_secs()),
        };
        Check::new(CHECK_HANDSHAKE, "a handshake", observed, handshake.is_some())
    }

    /// The deploy user logs in through the tunnel and runs `docker ps` (its round trip kept as a timing).
    fn ssh_check(&self, handshake: bool, label: &str) -> Result<Check> {
        let mut started = Instant::now();
        let mut ssh = self.ssh("docker ps", 20)?;
        let mut retried = "";
        if !ssh_listed_containers(&ssh) && handshake {
            // One more try, said so in the result: a login can race sshd's start-up limits under emulation.
            std::thread::sleep(Duration::from_secs(3));
            started = Instant::now();
            ssh = self.ssh("docker ps", 20)?;
            retried = " (second attempt)";
        }
        let round_trip = started.elapsed().as_secs_f64();
        let ok = ssh_listed_containers(&ssh);
        if ok {
            self.timings
                .borrow_mut()
                .push((format!("SSH round trip through WireGuard, `docker ps` ({label})"), round_trip));
        }
        Ok(Check::new(
            CHECK_SSH_TUNNEL,
            format!("`ssh {}@{} docker ps` lists containers", self.user, self.guest_tunnel),
            if ok {
                format!("listed, {round_trip:.2} s{retried}")
            } else {
                format!("exit {:?}: {}", ssh.status.code(), String::from_utf8_lossy(&ssh.stderr).trim())
            },
            ok,
        ))
    }

    /// The Docker hole Docker's own documentation warns of (before Docker 28): a host on the same layer-2
    /// network routes to the bridge through the guest's public address and connects to containers directly,
    /// even to ports published on 127.0.0.1 only. The namespace is such a neighbour; every container, given as
    /// (name, port it listens on inside), must stay silent at its own address, declared open or not (a
    /// declared port is open at the host's address, where the public-ports check expects it).
    pub fn neighbour_checks(&self, agent: &mut Agent, containers: &[(String, u16)]) -> Result<Vec<Check>> {
        if containers.is_empty() {
            return Ok(Vec::new());
        }
        // The route goes with the tap device, which QEMU makes anew at every start: set it each round.
        ip(&["-n", &self.netns, "route", "replace", DOCKER_NETWORKS, "via", GUEST_PUBLIC])?;
        let names: Vec<&str> = containers.iter().map(|(name, _)| name.as_str()).collect();
        let inspect =
            agent.exec("/usr/bin/docker", &[&["inspect", "--"][..], &names].concat(), None, INSPECT_TIMEOUT)?;
        if !inspect.ok() {
            bail!("docker inspect {} failed in the guest: {}", names.join(" "), inspect.stderr.trim());
        }
        let addresses = container_addresses(&inspect.stdout)?;
        let mut checks = Vec::new();
        for (name, port) in containers {
            let address = addresses
                .get(name.as_str())
                .with_context(|| format!("docker inspect gave no address for container {name}"))?;
            let answered = self.answering_ports(address, &[*port])?;
            checks.push(Check::new(
                neighbour_check_name(name),
                format!("{address}:{port} silent"),
                if answered.is_empty() {
                    format!("{address}:{port} silent")
                } else {
                    format!("{address}:{port} answers")
                },
                answered.is_empty(),
            ));
        }
        Ok(checks)
    }

    /// Kamal 2's way to a registry on the deploying machine: `ssh -R 5555:localhost:5555` as the deploy
    /// user, with net-ssh's algorithms; in the guest, a connection to 127.0.0.1:5555 must reach the
    /// stand-in registry in the namespace and read the token it was given.
    fn forward_check(&self) -> Result<Check> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
        let token = format!("kiln-registry-{}-{}", std::process::id(), now.as_nanos());
        let mut server = self
            .in_namespace("timeout")
            .args([&REGISTRY_WAIT.as_secs().to_string(), "python3", "-c", ONE_ANSWER_SERVER, &token])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the stand-in registry (python3)")?;
        let mut port = String::new();
        let stdout = server.stdout.take().context("the stand-in registry's stdout")?;
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut port)?;
        let port: u16 = port.trim().parse().with_context(|| format!("the stand-in registry said {port:?}"))?;
        let remote = format!("exec 3<>/dev/tcp/127.0.0.1/{KAMAL_REGISTRY_PORT} && head -n 1 <&3");
        let ssh = self
            .kamal_session(20, port, &self.guest_tunnel.to_string())
            .args(["bash", "-c", &crate::templates::shell_quote(&remote)])
            .output()
            .context("running ssh -R (install openssh-client)")?;
        // The server ends after one answer, or when its wait runs out; either way it is gone after this.
        let _ = server.kill();
        let _ = server.wait();
        let answered = String::from_utf8_lossy(&ssh.stdout).trim() == token;
        Ok(Check::new(
            CHECK_KAMAL_FORWARD,
            "the guest reads the stand-in registry's token through the forward",
            if answered {
                "read it".to_string()
            } else {
                format!("exit {:?}: {}", ssh.status.code(), String::from_utf8_lossy(&ssh.stderr).trim())
            },
            answered,
        ))
    }

    /// An SSH session to `host` as Kamal 2 opens one: as the deploy user, offering net-ssh's algorithms,
    /// with the registry's port forwarded back (`-R 5555:127.0.0.1:LOCAL_PORT`, refused outright if sshd
    /// will not forward). The caller adds the remote command.
    pub fn kamal_session(&self, timeout_secs: u32, local_port: u16, host: &str) -> Command {
        let forward = format!("{KAMAL_REGISTRY_PORT}:127.0.0.1:{local_port}");
        let mut command = self.ssh_command(timeout_secs);
        command
            .args(["-o", "ExitOnForwardFailure=yes", "-o", &format!("KexAlgorithms={NET_SSH_KEX}")])
            .args([
                "-o",
                &format!("HostKeyAlgorithms={NET_SSH_HOST_KEYS}"),
                "-o",
                &format!("Ciphers={NET_SSH_CIPHERS}"),
            ])
            .args(["-o", &format!("MACs={NET_SSH_MACS}"), "-R", &forward])
            .arg(format!("{}@{host}", self.user));
        command
    }

    /// Of the TCP ports the guest listens on: only SSH answers through the tunnel, SSH gives no banner
    /// on the public address, and no port answers there but those the profile opens to everyone.
    fn port_checks(&self, agent: &mut Agent) -> Result<Vec<Check>> {
        let (listening, published) = listening_tcp_ports(agent)?;
        let through_tunnel = self.answering_ports(&self.guest_tunnel.to_string(), &listening)?;
        let banner = self.public_banner()?;
        let public = self.answering_ports(GUEST_PUBLIC, &listening)?;
        // Container ports declared open answer on every interface (DOCKER-USER lets them through, UFW never
        // sees them); other published ports on none.
        let declared_container = |p: &u16| published.contains(p) && self.facts.published_port_open(Proto::Tcp, *p);
        let mut wanted: Vec<u16> = listening
            .iter()
            .copied()
            .filter(|p| self.facts.open_to_everyone(Proto::Tcp, *p) || declared_container(p))
            .collect();
        wanted.sort_unstable();
        let mut tunnel_wanted: Vec<u16> =
            listening.iter().copied().filter(|p| *p == SSH_PORT || declared_container(p)).collect();
        tunnel_wanted.sort_unstable();
        Ok(vec![
            Check::new(
                CHECK_TUNNEL_PORTS,
                format!("{} (of {} listening TCP ports)", describe_ports(&tunnel_wanted), listening.len()),
                describe_ports(&through_tunnel),
                through_tunnel == tunnel_wanted,
            ),
            Check::new(CHECK_PUBLIC_SSH, "no banner", if banner { "SSH banner" } else { "no banner" }, !banner),
            Check::new(
                CHECK_PUBLIC_PORTS,
                format!(
                    "{} (of {} listening TCP ports: {})",
                    describe_ports(&wanted),
                    listening.len(),
                    describe_ports(&listening)
                ),
                describe_ports(&public),
                public == wanted,
            ),
        ])
    }

    /// Re-keys the harness's interface with a key the guest does not know, with the same tunnel address
    /// and the guest's right public key, and tries again; then restores the real key.
    pub fn unknown_key_checks(&self) -> Result<Vec<Check>> {
        self.wg(&["set", &self.interface, "private-key", &self.wrong_key_file.display().to_string()])?;
        self.reset_guest_peer()?;
        let ssh = self.ssh("docker ps", 12);
        let handshake = self.latest_handshake();
        self.wg(&["set", &self.interface, "private-key", &self.key_file.display().to_string()])?;
        self.reset_guest_peer()?;
        let (ssh, handshake) = (ssh?, handshake?);
        Ok(vec![
            Check::new(
                CHECK_WRONG_KEY_HANDSHAKE,
                "no handshake",
                if handshake { "a handshake completed" } else { "no handshake in 12 s" },
                !handshake,
            ),
            Check::new(
                CHECK_WRONG_KEY_SSH,
                "ssh fails",
                if ssh.status.success() { "ssh logged in".to_string() } else { "ssh failed".to_string() },
                !ssh.status.success(),
            ),
        ])
    }

    /// Forgets any session with the guest (it may have rebooted) and configures it afresh.
    fn reset_guest_peer(&self) -> Result<()> {
        let key = self.guest_key.borrow().clone().context("the guest's public key is not known yet")?;
        let _ = self.wg(&["set", &self.interface, "peer", &key, "remove"]);
        self.wg(&[
            "set",
            &self.interface,
            "peer",
            &key,
            "allowed-ips",
            &format!("{}/32", self.guest_tunnel),
            "endpoint",
            &format!("{GUEST_PUBLIC}:{}", self.guest_port),
        ])?;
        Ok(())
    }

    /// Resets the session and sends traffic into the tunnel until a handshake completes: its time, or
    /// `None` after `HANDSHAKE`.
    fn connect(&self) -> Result<Option<f64>> {
        self.reset_guest_peer()?;
        let started = Instant::now();
        // A TCP connection attempt to the guest's tunnel address is what makes wireguard-go handshake.
        let mut trigger = self
            .in_namespace("timeout")
            .args(["30", "bash", "-c", &format!("exec 3<>/dev/tcp/{}/{SSH_PORT}", self.guest_tunnel)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting a connection through the tunnel")?;
        let result = wait_until(HANDSHAKE, Duration::from_millis(50), || {
            Ok(self.latest_handshake()?.then(|| started.elapsed().as_secs_f64()))
        });
        let _ = trigger.kill();
        let _ = trigger.wait();
        result
    }

    fn latest_handshake(&self) -> Result<bool> {
        let out = self.wg_output(&["show", &self.interface, "latest-handshakes"])?;
        // `PUBLIC-KEY<TAB>UNIX-TIME` per peer, 0 for a peer never heard from.
        let mut any = false;
        for line in out.lines().filter(|l| !l.is_empty()) {
            let time = line
                .split_once('\t')
                .and_then(|(_, t)| t.parse::<u64>().ok())
                .with_context(|| format!("`wg show latest-handshakes` printed `{line}`, not KEY<TAB>TIME"))?;
            any |= time != 0;
        }
        Ok(any)
    }

    /// The real OpenSSH client, in the namespace, as the deploy user with the harness's key.
    fn ssh(&self, remote: &str, timeout_secs: u32) -> Result<Output> {
        self.ssh_command(timeout_secs)
            .args([&format!("{}@{}", self.user, self.guest_tunnel), remote])
            .stdin(Stdio::null())
            .output()
            .context("running ssh (install openssh-client)")
    }

    /// `ssh` in the namespace with the harness's key and no host-key bookkeeping; the caller adds options,
    /// the destination and the command.
    pub fn ssh_command(&self, timeout_secs: u32) -> Command {
        let mut command = self.in_namespace("ssh");
        command
            .arg("-i")
            .arg(&self.ssh_key)
            .args([
                "-F",
                "/dev/null",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "LogLevel=ERROR",
                "-o",
                &format!("ConnectTimeout={timeout_secs}"),
            ])
            .stdin(Stdio::null());
        command
    }

    /// Whether sshd's banner comes back from the guest's public address within a few seconds.
    fn public_banner(&self) -> Result<bool> {
        let out = self
            .in_namespace("timeout")
            .arg(reach::BANNER_TIMEOUT.as_secs().to_string())
            .args(["bash", "-c", reach::CONNECT_AND_READ_BANNER, GUEST_PUBLIC, &SSH_PORT.to_string()])
            .output()?;
        // Refused or silent is "no banner"; an attempt that could not be made is an error.
        let connected = reach::classify(out.status.code(), &String::from_utf8_lossy(&out.stderr))? == Reach::Connected;
        Ok(connected && out.stdout.starts_with(b"SSH-"))
    }

    /// Which of `ports` accept a TCP connection at `address` from the namespace (all tried at once; a
    /// silent port costs its 5 s timeout).
    pub fn answering_ports(&self, address: &str, ports: &[u16]) -> Result<Vec<u16>> {
        if ports.is_empty() {
            return Ok(Vec::new());
        }
        let script = reach::ports_script(address, ports);
        let out = self.in_namespace("bash").args(["-c", &script]).output()?;
        if !out.status.success() {
            bail!(
                "probing ports from {} failed ({}): {}",
                self.netns,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        reach::parse_ports(&String::from_utf8_lossy(&out.stdout), ports)
            .with_context(|| format!("probing ports of {address} from {}", self.netns))
    }

    pub fn in_namespace(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.netns, program]);
        command
    }

    fn wg(&self, args: &[&str]) -> Result<()> {
        self.wg_output(args).map(|_| ())
    }

    fn wg_output(&self, args: &[&str]) -> Result<String> {
        let mut command = self.in_namespace("wg");
        command.args(args);
        Ok(String::from_utf8_lossy(&run(&mut command, "wg")?.stdout).into_owned())
    }
}

impl Drop for TunnelPeer {
    fn drop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).status();
        // SIGKILL leaves wireguard-go no chance to remove its control socket. The keys are private: one that
        // stays is said, not hidden (a drop can return no error).
        let socket = PathBuf::from(format!("/var/run/wireguard/{}.sock", self.interface));
        for file in [&socket, &self.key_file, &self.wrong_key_file] {
            if let Err(e) = remove_if_present(file) {
                eprintln!("kiln: the WireGuard peer's cleanup: {e:#}");
            }
        }
    }
}

/// The seed's network-config v2 for a guest with the public NIC: DHCP on the user-mode NIC as by default,
/// a static address on the public one. Both matched by MAC (a name glob would take both NICs).
fn network_config() -> String {
    format!(
        "version: 2\nethernets:\n  primary:\n    match:\n      macaddress: \"{PRIMARY_MAC}\"\n    dhcp4: true\n  public:\n    match:\n      macaddress: \"{PUBLIC_MAC}\"\n    addresses: [\"{GUEST_PUBLIC}/{PUBLIC_PREFIX}\"]\n"
    )
}

fn ssh_listed_containers(out: &Output) -> bool {
    out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with("CONTAINER ID")
}

/// Every TCP port the guest listens on, whatever the address (from `ss` inside).
/// `docker inspect` → each container's name → its address on its (first) network.
fn container_addresses(json: &str) -> Result<std::collections::BTreeMap<String, String>> {
    let containers: serde_json::Value = serde_json::from_str(json).context("docker inspect's output is not JSON")?;
    let mut addresses = std::collections::BTreeMap::new();
    for container in containers.as_array().context("docker inspect's output is not a list")? {
        let name = container["Name"].as_str().context("a container without a name")?.trim_start_matches('/');
        let networks = container["NetworkSettings"]["Networks"].as_object().context("a container without networks")?;
        let address = networks
            .values()
            .filter_map(|n| n["IPAddress"].as_str())
            .find(|a| !a.is_empty())
            .with_context(|| format!("container {name} has no address"))?;
        addresses.insert(name.to_string(), address.to_string());
    }
    Ok(addresses)
}

/// The guest's listening TCP ports, and of them those Docker publishes (its `docker-proxy` holds them).
fn listening_tcp_ports(agent: &mut Agent) -> Result<(Vec<u16>, Vec<u16>)> {
    const SS_TIMEOUT: Duration = Duration::from_secs(30);
    let out = agent.shell(&observe::listeners_script().text(), SS_TIMEOUT)?;
    let probe = observe::StateProbe::parse(&out.stdout, out.code, &out.stderr)?;
    let listeners = observe::parse_listeners(probe.get(observe::Section::Listeners)?)?;
    let tcp = || listeners.iter().filter(|l| l.proto == "tcp");
    let mut ports: Vec<u16> = tcp().map(|l| l.port).collect();
    ports.sort_unstable();
    ports.dedup();
    if ports.is_empty() {
        bail!("`ss` in the guest listed no listening TCP socket");
    }
    let published = tcp().filter(|l| l.process == DOCKER_PROXY).map(|l| l.port).collect();
    Ok((ports, published))
}

fn describe_ports(ports: &[u16]) -> String {
    if ports.is_empty() { "none".into() } else { ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", ") }
}

/// Namespaces and wireguard-go sockets of harness runs that no longer exist (killed before they could
/// clean up).
fn remove_stale_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if let Some(pid) = name.strip_prefix(NETNS_PREFIX)
            && !Path::new("/proc").join(pid).exists()
        {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
    let Ok(sockets) = std::fs::read_dir("/var/run/wireguard") else { return };
    for entry in sockets.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("kwg").and_then(|n| n.strip_suffix(".sock"))
            && !Path::new("/proc").join(pid).exists()
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn ip(args: &[&str]) -> Result<()> {
    run(Command::new("ip").args(args), "ip (install iproute2)").map(|_| ())
}

/// Runs `program args` with `input` on stdin (keys go to `wg pubkey` this way, never as arguments).
fn run_with_input(program: &str, args: &[&str], input: &[u8]) -> Result<Output> {
    use std::io::Write as _;
    let mut child =
        Command::new(program).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    child.stdin.take().context("stdin")?.write_all(input)?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("{program} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::effects::fs::write_atomic(path, bytes, 0o600).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_addresses_come_from_docker_inspect() {
        // The parts of `docker inspect` (Docker 26) the reader uses; the rest of each object is left out.
        let json = r#"[{"Name": "/undeclared", "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "172.17.0.3"}}}},
                       {"Name": "/loopback", "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "172.17.0.4"}}}}]"#;
        let addresses = container_addresses(json).unwrap();
        assert_eq!(addresses["undeclared"], "172.17.0.3");
        assert_eq!(addresses["loopback"], "172.17.0.4");
        let stopped = r#"[{"Name": "/gone", "NetworkSettings": {"Networks": {"bridge": {"IPAddress": ""}}}}]"#;
        assert!(container_addresses(stopped).unwrap_err().to_string().contains("gone has no address"));
        assert!(container_addresses("Error: No such object").is_err());
    }

    #[test]
    fn network_config_matches_both_nics_by_mac() {
        let nic = TapNic { ifname: "t".into(), mac: PUBLIC_MAC.into(), netns: "n".into() };
        assert!(nic.qemu_args().join(" ").contains(&format!("mac={PUBLIC_MAC}")));
        let text = network_config();
        let value: serde_json::Value = serde_saphyr::from_str(&text).expect("valid YAML");
        assert_eq!(value["ethernets"]["public"]["addresses"][0], "192.0.2.2/24");
        assert_eq!(value["ethernets"]["primary"]["dhcp4"], true);
    }
}
