//! `kiln bake`: boots the base image with the bake-stage user-data, waits for provisioning to succeed,
//! makes the disk generic (no machine-id, host keys, cloud-init state, logs, caches, per-host secrets of
//! the daemons), powers off and converts the disk into the golden image, with a manifest beside it.
//!
//! The output appears only when complete: it is written as `OUT.partial` and renamed. The result is
//! keyed by what went into it (kiln version, base image digest, bake-stage user-data, format), so
//! baking again with the same inputs reuses it.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::accel;
use super::boot::{boot_to_cloud_init, cloud_init_outcome, fatal_pattern};
use super::chroot_install;
use super::progress::Progress;
use super::qemu::{Accel, Instance, QemuConfig, image_format};
use super::qga::Agent;
use super::wait::{self, wait_until};
use crate::effects::fs::{remove_if_present, sha256_file, write_atomic};
use crate::effects::interrupt;
use crate::effects::process::die_with_parent;
use crate::lower::Stage;
use crate::model::Model;
use crate::pipeline;

/// How often the build VM is looked at while it powers off.
const POWER_OFF_POLL: Duration = Duration::from_millis(300);
/// Making the image generic: cloud-init clean, removing logs and caches, zeroing nothing.
const GENERALIZE_TIMEOUT: Duration = Duration::from_secs(300);

/// The disk formats a golden image can be written in, with what `qemu-img convert` needs for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    /// qcow2, compressed (zlib): smallest to store and upload; what OpenStack, Proxmox and QEMU take.
    #[default]
    Qcow2,
    /// qcow2 compressed with zstd: written about four times faster than zlib and a little smaller, but
    /// readable only by QEMU 5.1 (2020) and later: check the importer's qemu-img before using it.
    #[value(name = "qcow2-zstd")]
    #[serde(rename = "qcow2-zstd")]
    Qcow2Zstd,
    /// Raw, sparse: what GCP (as disk.raw in a tar) and Hetzner's rescue `dd` take.
    Raw,
    /// Fixed-size VHD with a whole number of MiB: what Azure accepts.
    Vhd,
    /// Stream-optimized VMDK: what VMware and OVA imports take.
    Vmdk,
}

impl ImageFormat {
    pub fn name(self) -> &'static str {
        match self {
            ImageFormat::Qcow2 => "qcow2",
            ImageFormat::Qcow2Zstd => "qcow2-zstd",
            ImageFormat::Raw => "raw",
            ImageFormat::Vhd => "vhd",
            ImageFormat::Vmdk => "vmdk",
        }
    }

    /// The name qemu-img uses for the format.
    fn qemu_name(self) -> &'static str {
        match self {
            ImageFormat::Vhd => "vpc",
            ImageFormat::Qcow2Zstd => "qcow2",
            other => other.name(),
        }
    }

    /// `-m 8 -W`: eight coroutines writing out of order, so compression runs on every core (measured on
    /// the seed host's golden image with the second core busy: 22.0 s → 16.9 s for zlib). Not for the VHD
    /// and the stream-optimized VMDK, whose writers want their blocks in order.
    fn convert_args(self) -> &'static [&'static str] {
        match self {
            ImageFormat::Qcow2 => &["-O", "qcow2", "-c", "-m", "8", "-W"],
            ImageFormat::Qcow2Zstd => &["-O", "qcow2", "-c", "-o", "compression_type=zstd", "-m", "8", "-W"],
            ImageFormat::Raw => &["-O", "raw", "-m", "8", "-W"],
            ImageFormat::Vhd => &["-O", "vpc", "-o", "subformat=fixed,force_size=on"],
            ImageFormat::Vmdk => &["-O", "vmdk", "-o", "subformat=streamOptimized"],
        }
    }
}

/// What to bake and how.
pub struct BakeRequest<'a> {
    /// The validated profile (its bake stage is what gets applied).
    pub model: &'a Model,
    /// The profile file, for its digest in the manifest.
    pub profile_path: &'a Path,
    /// Checked by `BaseImage::check` (once, before anything was created).
    pub base_image: &'a BaseImage,
    pub output: &'a Path,
    pub format: ImageFormat,
    /// Overlay, seed, console log and QEMU log of the build VM.
    pub work_dir: &'a Path,
    /// The accelerator asked for: decided (probed if need be) only once an image is to be baked.
    pub accel: accel::Choice,
    /// When the command started: the progress lines and the manifest's total count from here.
    pub started: Instant,
    /// A loopback package mirror (tests); `None` gives the build VM NAT access to the internet.
    pub mirror_port: Option<u16>,
    /// Install the packages inside the build VM, as Packer would, even where a chroot could (root).
    pub packages_in_vm: bool,
    /// Bake even if the output is up to date.
    pub force: bool,
    /// Stream the build VM's console to stderr.
    pub verbose: bool,
    /// How long first boot and provisioning may take.
    pub timeout: Duration,
}

/// Why a bake failed; each maps to its own exit code (see the README).
#[derive(Debug, thiserror::Error)]
pub enum BakeError {
    #[error("base image {path}: {reason}")]
    Base { path: String, reason: String },
    #[error("provisioning failed in the build VM: {detail}\nconsole tail:\n{console_tail}")]
    Provisioning { detail: String, console_tail: String },
    /// apt refused the packages in the chroot, before any build VM: what apt said.
    #[error("{0}")]
    Packages(String),
    #[error(transparent)]
    Harness(#[from] anyhow::Error),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub kiln_version: String,
    /// sha256 of what determines the image: kiln version, base digest, bake-stage user-data, format.
    pub cache_key: String,
    pub profile: Digested,
    /// sha256 of the bake-stage user-data applied to the image (`kiln render --stage bake`).
    pub bake_user_data_sha256: String,
    pub base_image: Digested,
    pub output: Output,
    pub accelerator: String,
    /// Every installed package with its version, as dpkg reported it inside the build VM.
    pub packages: Vec<Package>,
    /// Seconds per phase.
    pub timings: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Digested {
    pub path: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Output {
    pub path: String,
    pub format: ImageFormat,
    pub sha256: String,
    pub bytes: u64,
    pub virtual_size: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Package {
    pub name: String,
    pub version: String,
}

/// Whether the image was baked now or an identical earlier one was kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Baked,
    UpToDate,
}

/// The release a golden image was baked on (`debian-13`), from its manifest's `base-files` version; `None`
/// when the image has no manifest beside it (not baked by kiln, or moved without it).
pub fn golden_release(image: &Path) -> anyhow::Result<Option<crate::model::Release>> {
    let path = manifest_path(image);
    if !path.is_file() {
        return Ok(None);
    }
    let text = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let manifest: Manifest = serde_json::from_slice(&text).with_context(|| format!("reading {}", path.display()))?;
    let base_files = manifest
        .packages
        .iter()
        .find(|p| p.name == "base-files")
        .with_context(|| format!("{} lists no base-files package", path.display()))?;
    super::super::image::release_of_base_files(&base_files.version).map(Some)
}

/// `OUT.manifest.json`, beside the image.
pub fn manifest_path(output: &Path) -> PathBuf {
    sibling(output, ".manifest.json")
}

fn partial_path(output: &Path) -> PathBuf {
    sibling(output, ".partial")
}

fn manifest_partial_path(output: &Path) -> PathBuf {
    sibling(&manifest_path(output), ".partial")
}

fn sibling(output: &Path, suffix: &str) -> PathBuf {
    let mut name = output.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    output.with_file_name(name)
}

/// A base image kiln can boot: present, readable by qemu-img, with consistent qcow2 metadata, and a
/// partition table (MBR boot signature, which GPT's protective MBR also carries) on the disk.
pub struct BaseImage {
    pub path: PathBuf,
    /// The format qemu-img sees (`qcow2`, `raw`).
    pub format: String,
}

impl BaseImage {
    /// Checks the image once, before anything is created or booted.
    pub fn check(path: &Path) -> Result<BaseImage, BakeError> {
        let fail = |reason: String| BakeError::Base { path: path.display().to_string(), reason };
        if !path.is_file() {
            return Err(fail("not found (build one with `kiln image build <host.os> -o FILE`)".into()));
        }
        let format = image_format(path).map_err(|e| fail(format!("{e:#}")))?;
        if format == "qcow2" {
            let out = Command::new("qemu-img")
                .args(["check", "-q", "-f", "qcow2"])
                .arg(path)
                .output()
                .map_err(|e| fail(format!("running qemu-img check: {e}")))?;
            if !out.status.success() {
                let detail = String::from_utf8_lossy(&out.stderr).trim().to_string();
                return Err(fail(format!("corrupt (qemu-img check failed: {detail})")));
            }
        }
        let first_sector = first_sector(path, &format).map_err(|e| fail(format!("reading its first sector: {e:#}")))?;
        if first_sector.len() < 512 || first_sector[510..512] != [0x55, 0xAA] {
            return Err(fail("not a bootable disk: no partition table in its first sector".into()));
        }
        Ok(BaseImage { path: path.to_path_buf(), format })
    }
}

/// The disk's first 512 bytes as the guest sees them (through qcow2's mapping if need be).
fn first_sector(path: &Path, format: &str) -> anyhow::Result<Vec<u8>> {
    if format == "raw" {
        let mut bytes = vec![0u8; 512];
        let n = fs::File::open(path)?.read(&mut bytes)?;
        bytes.truncate(n);
        return Ok(bytes);
    }
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("sector");
    let status = Command::new("qemu-img")
        .args(["dd", "-f", format, "-O", "raw", "bs=512", "count=1"])
        .arg(format!("if={}", path.display()))
        .arg(format!("of={}", out.display()))
        .stderr(Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "qemu-img dd could not read it");
    Ok(fs::read(out)?)
}

fn cache_key(base_sha256: &str, user_data: &str, format: ImageFormat) -> String {
    let mut hasher = Sha256::new();
    for part in ["kiln-bake/1", env!("CARGO_PKG_VERSION"), base_sha256, format.name(), user_data] {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    crate::encoding::hex(&hasher.finalize())
}

/// An earlier bake with the same inputs whose image is still intact.
fn up_to_date(output: &Path, key: &str) -> Option<Manifest> {
    let manifest: Manifest = serde_json::from_slice(&fs::read(manifest_path(output)).ok()?).ok()?;
    (manifest.cache_key == key && sha256_file(output).ok()? == manifest.output.sha256).then_some(manifest)
}

pub fn bake(request: &BakeRequest) -> Result<(Outcome, Manifest), BakeError> {
    let progress = Progress::since("kiln bake", request.started);
    let mut timings = BTreeMap::new();
    let base = request.base_image;
    progress.say(&format!("base image {} ({}); hashing it", base.path.display(), base.format));
    let base_sha256 = sha256_file(&base.path).with_context(|| format!("reading base image {}", base.path.display()))?;
    // The bake stage reads no secret: placeholders render it exactly (a test holds kiln to that).
    let secrets = crate::secrets::placeholders(request.model);
    let user_data = pipeline::user_data(request.model, &secrets, Stage::Bake).map_err(|e| anyhow!("{e}"))?;
    let key = cache_key(&base_sha256, &user_data, request.format);
    if !request.force
        && let Some(manifest) = up_to_date(request.output, &key)
    {
        let (output, short_key) = (request.output.display(), &key[..16]);
        progress.say(&format!("{output} is up to date (cache key {short_key}); --force bakes again"));
        return Ok((Outcome::UpToDate, manifest));
    }
    for stale in [partial_path(request.output), manifest_partial_path(request.output)] {
        // Left by a bake that was killed with SIGKILL, the one signal nothing can clean up after.
        remove_if_present(&stale)?;
    }
    // Decided only now: an up-to-date image needs no accelerator, and no probe.
    let decision = accel::decide(request.accel, &base.path, request.work_dir).map_err(|e| anyhow!(e))?;
    progress.say(&format!("accelerator: {} ({})", decision.accel.name(), decision.how));
    timings.insert("accelerator decision".to_string(), decision.seconds);
    let disk = native_packages(request, &secrets, &progress, &mut timings)?;
    let disk = disk.as_deref().unwrap_or(&base.path);
    let (mut instance, mut agent) = provision(request, disk, decision.accel, &user_data, &progress, &mut timings)?;
    progress.say("provisioned; listing packages");
    let packages = installed_packages(&mut agent)?;
    generalize_and_power_off(agent, &mut instance, &progress, &mut timings)?;
    let manifest = Manifest {
        kiln_version: env!("CARGO_PKG_VERSION").to_string(),
        cache_key: key,
        profile: Digested {
            path: request.profile_path.display().to_string(),
            sha256: sha256_file(request.profile_path).unwrap_or_default(),
        },
        bake_user_data_sha256: crate::encoding::sha256_hex(&user_data),
        base_image: Digested { path: base.path.display().to_string(), sha256: base_sha256 },
        // Filled in by `place` once the image exists.
        output: Output {
            path: String::new(),
            format: request.format,
            sha256: String::new(),
            bytes: 0,
            virtual_size: 0,
        },
        accelerator: decision.accel.name().to_string(),
        packages,
        timings,
    };
    let manifest = place(request, manifest, &progress)?;
    progress.say(&format!(
        "wrote {} ({:.0} MB, {}) and {}",
        request.output.display(),
        manifest.output.bytes as f64 / 1e6,
        manifest.output.format.name(),
        manifest_path(request.output).display()
    ));
    Ok((Outcome::Baked, manifest))
}

/// Installs the bake stage's packages natively, in a chroot of a raw copy of the base (`chroot_install`),
/// when this process can and the user did not ask for the build VM to do it: the disk to boot, if so.
fn native_packages(
    request: &BakeRequest,
    secrets: &crate::secrets::Secrets,
    progress: &Progress,
    timings: &mut BTreeMap<String, f64>,
) -> Result<Option<PathBuf>, BakeError> {
    if request.packages_in_vm {
        progress.say("packages are installed in the build VM (--packages-in-vm)");
        return Ok(None);
    }
    if let Some(why) = chroot_install::unavailable() {
        progress.say(&format!("packages are installed in the build VM, the slow way: {why}"));
        return Ok(None);
    }
    let config = crate::lower::lower_stage(request.model, secrets, Stage::Bake);
    if config.packages.is_empty() {
        return Ok(None);
    }
    progress.say(&format!("installing {} packages natively, in a chroot of a copy of the base", config.packages.len()));
    fs::create_dir_all(request.work_dir).with_context(|| format!("creating {}", request.work_dir.display()))?;
    let started = Instant::now();
    let install =
        chroot_install::Install { config: &config, mirror_port: request.mirror_port, timeout: request.timeout };
    let disk = chroot_install::install(&request.base_image.path, &install, request.work_dir).map_err(|e| match e {
        e @ chroot_install::InstallError::Packages(_) => BakeError::Packages(e.to_string()),
        chroot_install::InstallError::Base(reason) => {
            BakeError::Base { path: request.base_image.path.display().to_string(), reason }
        }
        chroot_install::InstallError::Other(e) => BakeError::Harness(e),
    })?;
    timings.insert("install packages (chroot)".to_string(), started.elapsed().as_secs_f64());
    Ok(Some(disk))
}

/// Boots `disk` (the base, or its copy with the packages installed) with the bake-stage seed and waits
/// for provisioning to succeed.
fn provision(
    request: &BakeRequest,
    disk: &Path,
    accel: Accel,
    user_data: &str,
    progress: &Progress,
    timings: &mut BTreeMap<String, f64>,
) -> Result<(Instance, Agent), BakeError> {
    fs::create_dir_all(request.work_dir).with_context(|| format!("creating {}", request.work_dir.display()))?;
    let seed_path = request.work_dir.join("seed.img");
    // The build VM is no particular host; each instance gets its own name from the boot stage.
    let seed = pipeline::seed(user_data, "kiln-bake", None).map_err(|e| anyhow!("{e}"))?;
    write_atomic(&seed_path, &seed.image, 0o600)?;
    let config = QemuConfig {
        base_image: disk.to_path_buf(),
        run_dir: request.work_dir.to_path_buf(),
        seed: Some(seed_path),
        memory_mib: 2048,
        cpus: 2,
        accel,
        mirror_port: request.mirror_port,
        forwards: Vec::new(),
        internet: request.mirror_port.is_none(),
        extra_nic: None,
        // The build VM is the one guest a bake runs, so it gets a host thread per vCPU, as Packer's QEMU does
        // by default: single-threaded, the seed host's bake took 261-264 s against Packer's 242-257 s; now
        // 208-219 s against 194-216 s (README, Performance). A kernel oops, the reason the tests' guests run
        // single-threaded, makes `boot_to_cloud_init` boot again single-threaded, and an oops after
        // cloud-init finished fails the bake (`generalize_and_power_off`).
        multi_threaded_tcg: true,
    };
    let threads = if accel == Accel::Tcg { ", a host thread per vCPU" } else { "" };
    progress.say(&format!("booting the build VM ({}{threads}) and provisioning (bake stage)", accel.name()));
    let started = Instant::now();
    let mut console = ConsoleEcho { enabled: request.verbose, shown: 0 };
    let booted = boot_to_cloud_init(&config, request.timeout, &mut |text| {
        console.echo(text);
        progress.detail(text);
    })?;
    if let Some(why) = &booted.retried {
        let why = why.lines().next().unwrap_or_default();
        progress.say(&format!("the build VM was booted again once, on a fresh overlay: {why}"));
    }
    let instance = booted.instance;
    let mut agent = instance.agent(wait::AGENT_CONNECT)?;
    let outcome = cloud_init_outcome(&mut agent)?;
    if !outcome.errors.is_empty() || !outcome.complete {
        return Err(BakeError::Provisioning { detail: outcome.describe(), console_tail: instance.console_tail(25) });
    }
    timings.insert("boot and provision".to_string(), started.elapsed().as_secs_f64());
    Ok((instance, agent))
}

/// `kiln bake -v`: the build VM's console on stderr as it grows.
struct ConsoleEcho {
    enabled: bool,
    /// How many bytes of the console were shown.
    shown: usize,
}

impl ConsoleEcho {
    fn echo(&mut self, console: &str) {
        if !self.enabled {
            return;
        }
        // Whole lines only, and never from inside a character: the console is read while QEMU writes it,
        // so an earlier read may have ended in the middle of one.
        while self.shown < console.len() && !console.is_char_boundary(self.shown) {
            self.shown += 1;
        }
        let new = console.get(self.shown..).unwrap_or_default();
        if let Some(end) = new.rfind('\n') {
            for line in new[..end].lines() {
                eprintln!("  console| {line}");
            }
            self.shown += end + 1;
        }
    }
}

/// Makes the disk generic and powers the build VM off.
fn generalize_and_power_off(
    mut agent: Agent,
    instance: &mut Instance,
    progress: &Progress,
    timings: &mut BTreeMap<String, f64>,
) -> Result<(), BakeError> {
    progress.say(
        "making the image generic (cloud-init state, machine-id, host keys, random seed, host name, logs, caches)",
    );
    let started = Instant::now();
    let out = agent.shell(GENERALIZE, GENERALIZE_TIMEOUT)?;
    if !out.ok() {
        return Err(anyhow!("making the image generic failed: {}{}", out.stdout, out.stderr).into());
    }
    agent.shutdown("powerdown")?;
    if wait_until(wait::SHUTDOWN, POWER_OFF_POLL, || Ok((!instance.running()).then_some(())))?.is_none() {
        return Err(anyhow!("the build VM did not power off within {} s", wait::SHUTDOWN.as_secs()).into());
    }
    timings.insert("generalize and power off".to_string(), started.elapsed().as_secs_f64());
    // A kernel that oopsed after cloud-init finished may have left anything on the disk: no image from it.
    if let Some(pattern) = fatal_pattern(&instance.console_text()) {
        let tail = instance.console_tail(30);
        return Err(anyhow!(
            "the build VM hit `{pattern}` while it was made generic or powered off; console tail:\n{tail}"
        )
        .into());
    }
    Ok(())
}

/// Converts the build VM's disk into the output and writes the manifest beside it: as `.partial`
/// files renamed into place, image first, so a manifest always describes an image that is there.
/// Nothing is left behind on failure.
fn place(request: &BakeRequest, mut manifest: Manifest, progress: &Progress) -> Result<Manifest, BakeError> {
    let (partial, manifest_partial) = (partial_path(request.output), manifest_partial_path(request.output));
    progress.say(&format!("converting to {}", request.format.name()));
    let started = Instant::now();
    interrupt::remove_on_interrupt(&partial);
    let placed = convert(&request.work_dir.join(super::qemu::OVERLAY), &partial, request.format).and_then(|_| {
        manifest.timings.insert("convert".to_string(), started.elapsed().as_secs_f64());
        manifest.timings.insert("total".to_string(), progress.elapsed());
        manifest.output = Output {
            path: request.output.display().to_string(),
            format: request.format,
            sha256: sha256_file(&partial).context("hashing the converted image")?,
            bytes: fs::metadata(&partial)?.len(),
            virtual_size: virtual_size(&partial, request.format)?,
        };
        let text = serde_json::to_string_pretty(&manifest)? + "\n";
        write_atomic(&manifest_partial, text.as_bytes(), 0o644)?;
        fs::rename(&partial, request.output).with_context(|| format!("renaming into {}", request.output.display()))?;
        fs::rename(&manifest_partial, manifest_path(request.output))?;
        Ok(())
    });
    interrupt::forget(&partial);
    if let Err(e) = placed {
        // The conversion's error is the one to return; a file that cannot be removed is said, not hidden.
        for left in [&partial, &manifest_partial] {
            if let Err(cleanup) = remove_if_present(left) {
                progress.println(&format!("kiln bake: {cleanup:#}"));
            }
        }
        return Err(e.into());
    }
    Ok(manifest)
}

/// Run in the build VM after provisioning. Everything that must differ between instances, or that
/// only describes the build, goes; what the profile installed stays.
const GENERALIZE: &str = r#"set -eu
# Daemons that keep per-host identity or state: stopped before their state is removed.
for unit in cloudflared.service tailscaled.service docker.service docker.socket containerd.service; do
  # A unit the profile does not install is not loaded: there is nothing to stop.
  if [ "$(systemctl show -p LoadState --value "$unit")" = loaded ]; then systemctl stop "$unit"; fi
done
rm -rf /var/lib/tailscale/*            # tailscaled's node key and state
rm -f /etc/docker/key.json             # dockerd's engine identity
# cloud-init forgets this instance and its logs, so every boot of the image is a first boot.
cloud-init clean --logs --seed
# An empty machine-id makes systemd generate a new one at the next boot (first-boot semantics).
truncate -s 0 /etc/machine-id
if [ -f /var/lib/dbus/machine-id ] && [ ! -L /var/lib/dbus/machine-id ]; then rm -f /var/lib/dbus/machine-id; fi
rm -f /etc/ssh/ssh_host_*              # cloud-init's ssh module makes new ones per instance
# systemd-random-seed.service saves a fresh seed when it stops, which would be at power-off: stopped now
# (it saves once more), its file then removed, nothing writes one again, and every instance of the image
# starts without a seed it shares with the others.
systemctl stop systemd-random-seed.service
rm -f /var/lib/systemd/random-seed /var/lib/systemd/credential.secret
# The boot loader's seed, which systemd-boot-random-seed.service wrote to the ESP when the build VM booted
# (and only then): systemd-boot would hand it to every instance's kernel at its first boot. The ESP is
# mounted at one of the places systemd's boot loader specification names.
for esp in /efi /boot /boot/efi; do rm -f "$esp/loader/random-seed"; done
# The build VM's name goes: cloud-init names each instance at its first boot.
truncate -s 0 /etc/hostname
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
# journald writes to /run from now on (as it does at every shutdown): left on /var, it would write the rest of
# this boot, power-off included, into a journal in the image, under the build VM's machine-id.
journalctl --relinquish-var
rm -rf /var/log/journal/*
find /var/log -type f \( -name '*.gz' -o -name '*.[0-9]' -o -name '*.old' \) -delete
find /var/log -type f -exec truncate -s 0 {} +
rm -rf /tmp/* /tmp/.[!.]* /var/tmp/* /root/.bash_history
# Free blocks become holes in the disk, so the image carries only what is in use.
fstrim -av
sync
"#;

fn installed_packages(agent: &mut super::qga::Agent) -> Result<Vec<Package>, BakeError> {
    let out = agent.exec(
        "/usr/bin/dpkg-query",
        &["-W", "-f", "${binary:Package}\t${Version}\n"],
        None,
        wait::GUEST_COMMAND,
    )?;
    if !out.ok() {
        return Err(anyhow!("dpkg-query failed in the build VM: {}", out.stderr).into());
    }
    Ok(out
        .stdout
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(name, version)| Package { name: name.to_string(), version: version.to_string() })
        .collect())
}

/// `qemu-img convert` of the build VM's overlay (with its base) into one standalone image.
fn convert(overlay: &Path, to: &Path, format: ImageFormat) -> anyhow::Result<()> {
    let mut command = Command::new("qemu-img");
    command.args(["convert", "-q", "-f", "qcow2"]).args(format.convert_args()).arg(overlay).arg(to);
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    die_with_parent(&mut command);
    let out = command.spawn().context("running qemu-img convert")?.wait_with_output()?;
    if !out.status.success() {
        anyhow::bail!("qemu-img convert failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Named explicitly: qemu-img's probe takes a fixed VHD (data, then a footer) for raw.
fn virtual_size(image: &Path, format: ImageFormat) -> anyhow::Result<u64> {
    let out = Command::new("qemu-img").args(["info", "--output=json", "-f", format.qemu_name()]).arg(image).output()?;
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).context("parsing qemu-img info")?;
    info["virtual-size"].as_u64().context("qemu-img info gives no virtual size")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecars_keep_the_whole_file_name() {
        assert_eq!(manifest_path(Path::new("out/app.qcow2")), Path::new("out/app.qcow2.manifest.json"));
        assert_eq!(partial_path(Path::new("app.img")), Path::new("app.img.partial"));
    }

    #[test]
    fn the_cache_key_changes_with_every_input() {
        let base = cache_key("aa", "#cloud-config\n", ImageFormat::Qcow2);
        assert_eq!(base, cache_key("aa", "#cloud-config\n", ImageFormat::Qcow2));
        assert_ne!(base, cache_key("ab", "#cloud-config\n", ImageFormat::Qcow2));
        assert_ne!(base, cache_key("aa", "#cloud-config\nx: 1\n", ImageFormat::Qcow2));
        assert_ne!(base, cache_key("aa", "#cloud-config\n", ImageFormat::Raw));
    }

    #[test]
    fn an_earlier_bake_is_reused_only_when_its_key_and_bytes_match() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("app.qcow2");
        fs::write(&image, b"golden bytes").unwrap();
        let manifest = Manifest {
            kiln_version: "0".into(),
            cache_key: "k1".into(),
            profile: Digested { path: "p".into(), sha256: String::new() },
            bake_user_data_sha256: String::new(),
            base_image: Digested { path: "b".into(), sha256: String::new() },
            output: Output {
                path: image.display().to_string(),
                format: ImageFormat::Qcow2,
                sha256: sha256_file(&image).unwrap(),
                bytes: 12,
                virtual_size: 0,
            },
            accelerator: "TCG".into(),
            packages: Vec::new(),
            timings: BTreeMap::new(),
        };
        fs::write(manifest_path(&image), serde_json::to_string(&manifest).unwrap()).unwrap();
        assert_eq!(up_to_date(&image, "k1"), Some(manifest));
        assert_eq!(up_to_date(&image, "k2"), None, "another profile, base, format or kiln");
        fs::write(&image, b"golden bytez").unwrap();
        assert_eq!(up_to_date(&image, "k1"), None, "the image changed since its manifest was written");
        fs::remove_file(manifest_path(&image)).unwrap();
        assert_eq!(up_to_date(&image, "k1"), None, "no manifest");
    }

    /// Every `--format` converts with this machine's qemu-img and reads back as that format.
    #[test]
    fn every_format_converts() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("disk.qcow2");
        let created = Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(&source).arg("64M").status();
        assert!(created.expect("qemu-img runs (install qemu-utils)").success());
        for format in
            [ImageFormat::Qcow2, ImageFormat::Qcow2Zstd, ImageFormat::Raw, ImageFormat::Vhd, ImageFormat::Vmdk]
        {
            let out = dir.path().join(format!("out.{}", format.name()));
            convert(&source, &out, format).unwrap_or_else(|e| panic!("{}: {e:#}", format.name()));
            let bytes = fs::read(&out).unwrap();
            match format {
                // A fixed VHD is raw data plus a 512-byte footer (which qemu-img's probe cannot see).
                ImageFormat::Vhd => {
                    assert_eq!(&bytes[bytes.len() - 512..][..8], b"conectix");
                    assert_eq!(bytes.len() as u64, (64 << 20) + 512);
                    assert_eq!(virtual_size(&out, format).unwrap(), 64 << 20);
                }
                _ => {
                    let probed = image_format(&out).unwrap();
                    assert_eq!(probed, format.qemu_name());
                    assert_eq!(virtual_size(&out, format).unwrap(), 64 << 20, "{}", format.name());
                    if format.qemu_name() == "qcow2" {
                        let info = Command::new("qemu-img").args(["info", "--output=json"]).arg(&out).output().unwrap();
                        let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
                        let wanted = if format == ImageFormat::Qcow2Zstd { "zstd" } else { "zlib" };
                        assert_eq!(info["format-specific"]["data"]["compression-type"], wanted, "{}", format.name());
                    }
                }
            }
        }
    }

    #[test]
    fn missing_and_corrupt_bases_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.qcow2");
        let err = BaseImage::check(&missing).err().expect("refused").to_string();
        assert!(err.contains("nope.qcow2") && err.contains("not found"), "{err}");
        // qcow2 magic and a header that points past the end of the file.
        let corrupt = dir.path().join("corrupt.qcow2");
        let mut bytes = b"QFI\xfb\x00\x00\x00\x03".to_vec();
        bytes.resize(512, 0xff);
        fs::write(&corrupt, bytes).unwrap();
        let err = BaseImage::check(&corrupt).err().expect("refused").to_string();
        assert!(err.contains("corrupt.qcow2"), "{err}");
        // Random bytes pass as a raw image to qemu-img; they are not a disk.
        let noise = dir.path().join("noise.img");
        fs::write(&noise, (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect::<Vec<u8>>()).unwrap();
        let err = BaseImage::check(&noise).err().expect("refused").to_string();
        assert!(err.contains("no partition table"), "{err}");
    }
}
