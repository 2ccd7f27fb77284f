//! A QEMU instance bound to this process: an overlay per run (the base image is never written), the
//! serial console captured to a file, the guest agent on a unix socket, and QEMU killed when the
//! instance is dropped, when kiln dies (Ctrl-C included: the kernel delivers SIGKILL to QEMU through
//! PR_SET_PDEATHSIG), or when a wait times out.

use super::wait::wait_until;
use crate::effects::process::die_with_parent;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::qga::Agent;
use crate::effects::fs::remove_if_present;

/// The instance's writable disk in its run directory: a qcow2 overlay on the base, which is never written.
pub const OVERLAY: &str = "overlay.qcow2";

pub const OVMF: &str = "/usr/share/ovmf/OVMF.fd";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "KVM",
            Accel::Tcg => "TCG (software emulation)",
        }
    }
}

/// TCG with one host thread for all vCPUs. Multi-threaded TCG (QEMU 7.2's default for x86 guests)
/// let a Debian 13 guest (kernel 6.12, 2 vCPUs) take an `int3` that the kernel had already patched
/// away: `Oops: int3` in `sched_clock_cpu` two seconds into boot, when the kernel flips a static key
/// with `text_poke_bp` while the other vCPU runs code translated before the patch (seen once in a CI
/// run, a golden instance's second boot). Round-robin TCG switches vCPUs only between translated
/// blocks, after the writer's store has invalidated them, so every vCPU sees patched code as the real
/// CPU would.
const TCG: &str = "tcg,thread=single";
/// TCG with a host thread per vCPU.
const TCG_MULTI: &str = "tcg,thread=multi";
/// How often the console and QEMU's state are looked at while waiting.
const POLL: Duration = Duration::from_millis(500);

/// A host port forwarded to a guest TCP port, for probes from outside.
#[derive(Debug, Clone, Copy)]
pub struct HostForward {
    pub host_port: u16,
    pub guest_port: u16,
}

#[derive(Debug, Clone)]
pub struct QemuConfig {
    pub base_image: PathBuf,
    pub run_dir: PathBuf,
    pub seed: Option<PathBuf>,
    pub memory_mib: u32,
    pub cpus: u32,
    pub accel: Accel,
    /// The guest reaches the mirror's addresses on port 80 (`mirror::guest_addresses`), and only those, as this
    /// host port on 127.0.0.1.
    pub mirror_port: Option<u16>,
    pub forwards: Vec<HostForward>,
    /// User-mode NAT to the internet (a real bake fetches packages); otherwise `restrict=on` and the
    /// guest reaches nothing but the mirror and the forwarded ports.
    pub internet: bool,
    /// A NIC besides the user-mode one, set up by whoever asked for it (the CI scenarios give the guest
    /// a "public internet" this way).
    pub extra_nic: Option<Arc<dyn ExtraNic>>,
    /// Under TCG, one host thread per vCPU instead of one for all ([`TCG`] says why that is not the default).
    pub multi_threaded_tcg: bool,
}

/// A NIC besides the user-mode one: QEMU's arguments for it, and what must be done each time QEMU has
/// started (a tap device, say, is created anew by QEMU at every start, so at every reboot too). `kiln
/// test` and `kiln bake` use none; the CI scenarios' WireGuard peer (`vm-tests`) moves a tap device into
/// its network namespace.
pub trait ExtraNic: std::fmt::Debug + Send + Sync {
    fn qemu_args(&self) -> Vec<String>;
    /// Called right after every QEMU start; `qemu_running` tells whether QEMU is still up. An error
    /// stops QEMU and fails the start.
    fn after_start(&self, qemu_running: &mut dyn FnMut() -> bool) -> Result<()>;
}

pub struct Instance {
    child: Child,
    config: QemuConfig,
    overlay: PathBuf,
    /// How many times QEMU has been started on this overlay.
    pub boots: u32,
    pub run_dir: PathBuf,
    pub console: PathBuf,
    pub qga_socket: PathBuf,
    pub started: Instant,
    pub accel: Accel,
}

/// The format `qemu-img` reports for an image (qcow2 for cloud images, raw for some).
pub(crate) fn image_format(path: &Path) -> Result<String> {
    let out = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(path)
        .output()
        .context("running qemu-img info (install qemu-utils)")?;
    if !out.status.success() {
        bail!(
            "{} is not a disk image qemu-img can read: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).context("parsing qemu-img info")?;
    info.get("format").and_then(|f| f.as_str()).map(str::to_string).context("qemu-img info names no format")
}

impl Instance {
    pub fn start(config: &QemuConfig) -> Result<Instance> {
        fs::create_dir_all(&config.run_dir).with_context(|| format!("creating {}", config.run_dir.display()))?;
        let base =
            config.base_image.canonicalize().with_context(|| format!("base image {}", config.base_image.display()))?;
        let format = image_format(&base)?;
        let overlay = config.run_dir.join(OVERLAY);
        remove_if_present(&overlay)?;
        let status = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", &format, "-b"])
            .arg(&base)
            .arg(&overlay)
            .status()
            .context("running qemu-img create")?;
        if !status.success() {
            bail!("qemu-img could not create an overlay on {}", base.display());
        }
        let console = config.run_dir.join("console.log");
        let qga_socket = config.run_dir.join("qga.sock");
        let child = spawn(config, &overlay, &console, &qga_socket)?;
        Ok(Instance {
            child,
            config: config.clone(),
            overlay,
            boots: 1,
            run_dir: config.run_dir.clone(),
            console,
            qga_socket,
            started: Instant::now(),
            accel: config.accel,
        })
    }

    /// After the guest was asked to reboot: waits for QEMU to exit (`-no-reboot`), keeps the previous
    /// console as `console-boot<N>.log`, and boots the same disk again.
    pub fn restart_after_reboot(&mut self, timeout: Duration) -> Result<()> {
        if wait_until(timeout, POLL, || Ok((!self.running()).then_some(())))?.is_none() {
            bail!("the guest did not go down within {} s of the reboot request", timeout.as_secs());
        }
        let kept = self.run_dir.join(format!("console-boot{}.log", self.boots));
        fs::rename(&self.console, &kept).with_context(|| format!("keeping {}", kept.display()))?;
        self.child = spawn(&self.config, &self.overlay, &self.console, &self.qga_socket)?;
        self.boots += 1;
        Ok(())
    }

    /// The host port on 127.0.0.1 forwarded to `guest_port`, if the instance forwards it.
    pub fn forwarded_port(&self, guest_port: u16) -> Option<u16> {
        self.config.forwards.iter().find(|f| f.guest_port == guest_port).map(|f| f.host_port)
    }

    pub fn console_text(&self) -> String {
        fs::read(&self.console).map(|b| String::from_utf8_lossy(&b).replace('\r', "")).unwrap_or_default()
    }

    /// The last `n` lines of the console, for failure reports.
    /// The console's last `n` lines, fit to print on a terminal: the firmware's and the guest's escape
    /// sequences (screen clears, colours, cursor moves) and other control characters removed.
    pub fn console_tail(&self, n: usize) -> String {
        let text = printable(&self.console_text());
        let lines: Vec<&str> = text.lines().map(str::trim_end).filter(|l| !l.is_empty()).collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits until `done(console)` holds, QEMU exits, or `timeout` passes.
    pub fn wait_console(&mut self, timeout: Duration, mut done: impl FnMut(&str) -> bool) -> Result<bool> {
        let seen = wait_until(timeout, POLL, || {
            if done(&self.console_text()) {
                return Ok(Some(()));
            }
            if !self.running() {
                let log = fs::read_to_string(self.run_dir.join("qemu.log")).unwrap_or_default();
                bail!("QEMU exited: {}", log.trim());
            }
            Ok(None)
        })?;
        Ok(seen.is_some())
    }

    pub fn agent(&self, timeout: Duration) -> Result<Agent> {
        Agent::connect(&self.qga_socket, Instant::now() + timeout)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts QEMU on an existing overlay. With `-no-reboot` a guest reboot ends QEMU and the harness
/// starts it again, a cold boot: OVMF's warm reset under TCG spent 100-200 s here before the kernel.
fn spawn(config: &QemuConfig, overlay: &Path, console: &Path, qga_socket: &Path) -> Result<Child> {
    remove_if_present(qga_socket)?;
    // A console left by an earlier run would be read as this boot's before QEMU truncates it.
    remove_if_present(console)?;
    let mut netdev = String::from(if config.internet { "user,id=n0" } else { "user,id=n0,restrict=on" });
    if let Some(port) = config.mirror_port {
        // One `nc` per connection: a plain tcp chardev would serve a single connection only.
        for address in crate::effects::mirror::guest_addresses() {
            netdev.push_str(&format!(",guestfwd=tcp:{address}:80-cmd:nc 127.0.0.1 {port}"));
        }
    }
    for forward in &config.forwards {
        netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{}-:{}", forward.host_port, forward.guest_port));
    }
    let mut command = Command::new("qemu-system-x86_64");
    command
        .args([
            "-accel",
            match (config.accel, config.multi_threaded_tcg) {
                (Accel::Kvm, _) => "kvm",
                (Accel::Tcg, false) => TCG,
                (Accel::Tcg, true) => TCG_MULTI,
            },
        ])
        .args(["-m", &config.memory_mib.to_string(), "-smp", &config.cpus.to_string()])
        .args(["-bios", OVMF])
        .args(["-display", "none", "-monitor", "none", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .args(["-netdev", &netdev, "-device", "virtio-net-pci,netdev=n0,addr=0x3"])
        .arg("-drive")
        .arg(format!("file={},if=none,id=disk0,format=qcow2,discard=unmap", overlay.display()))
        .args(["-device", "virtio-blk-pci,drive=disk0,bootindex=0"])
        .arg("-chardev")
        .arg(format!("socket,path={},server=on,wait=off,id=qga0", qga_socket.display()))
        .args(["-device", "virtio-serial", "-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0"])
        .args(["-device", "virtio-rng-pci"]);
    if let Some(nic) = &config.extra_nic {
        command.args(nic.qemu_args());
    }
    if let Some(seed) = &config.seed {
        command.arg("-drive").arg(format!("file={},if=none,id=seed0,format=raw,readonly=on", seed.display()));
        command.args(["-device", "virtio-blk-pci,drive=seed0"]);
    }
    let log = fs::File::create(config.run_dir.join("qemu.log")).context("creating qemu.log")?;
    command.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
    die_with_parent(&mut command);
    fs::write(config.run_dir.join("qemu.cmdline"), format!("{command:?}\n"))?;
    let mut child = command.spawn().context("starting qemu-system-x86_64 (install qemu-system-x86)")?;
    if let Some(nic) = &config.extra_nic
        && let Err(e) = nic.after_start(&mut || matches!(child.try_wait(), Ok(None)))
    {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    Ok(child)
}

/// `text` without ANSI escape sequences (ECMA-48 CSI: ESC `[` parameters, final byte in `@`..`~`; other ESC
/// sequences: ESC and the byte after it) and without control characters other than line feeds and tabs.
fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                if chars.next_if_eq(&'[').is_some() {
                    // Parameters and intermediates, up to and including the final byte.
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod printable_tests {
    use super::printable;

    #[test]
    fn escape_sequences_and_control_characters_are_removed() {
        // OVMF's screen clear, cursor moves and colours, as kiln saw them on a console.
        let console = "\u{1b}[2J\u{1b}[01;01H\u{1b}[=3hBdsDxe: failed\r\n\u{1b}[1m\u{1b}[33m\u{1b}[40mMapping table\u{1b}[0m\n\tFS0:\u{7}";
        assert_eq!(printable(console), "BdsDxe: failed\nMapping table\n\tFS0:");
    }
}
