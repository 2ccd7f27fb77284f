//! `vm-scenarios bench`: kiln's image builds timed against the tools a user would otherwise pick, on the
//! same inputs, one build at a time: `kiln bake` against Packer's QEMU builder (Debian's `packer`) for the
//! golden image, `kiln image build` against mkosi (trixie's, `scripts/bench/mkosi/build`) for the base.
//! Not a test and not in CI: `scripts/bench-images` installs what it needs and runs it.
//!
//! Same inputs for both golden-image tools: kiln's base image of the profile's release, the bake-stage user-data byte
//! for byte (Packer's seed adds cloud-init's `power_state`, its only way to end a build without a
//! communicator), the same signed local mirror on the same guest addresses, 2 vCPUs, 2048 MiB, OVMF,
//! TCG, zlib-compressed qcow2. After the timings, each image is read offline for what it carries that
//! must differ between instances (`hygiene`), and Packer's for whether its provisioning succeeded, which
//! Packer itself never looks at.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use kiln::effects::fs::write_atomic;
use kiln::effects::mirror;
use kiln::effects::process::run;
use kiln::effects::vm::accel::Choice;
use kiln::effects::vm::bake::{self, BakeRequest, BaseImage, ImageFormat};
use kiln::effects::vm::harness::{mirror_for, use_mirror};
use kiln::lower::Stage;
use serde::Serialize;

/// The golden image's profile: the seed host, as the `golden` scenario bakes it.
const PROFILE: &str = "profiles/app.yaml";
/// The release both base-image tools build (`scripts/bench/mkosi` is its mkosi counterpart). The golden
/// builds start from a base of the profile's own release.
const RELEASE: &str = "debian-12";
/// The build VM's size, as `kiln bake` gives it (`bake::provision`).
const MEMORY_MIB: u32 = 2048;
const CPUS: u32 = 2;
/// How long one golden build may take before the benchmark gives up on it (a hung guest).
const BUILD_TIMEOUT: Duration = Duration::from_secs(1800);
/// The base image's virtual size (`images/debian-12/recipe.toml`, `[disk] size_mib`): Packer would
/// otherwise grow the disk to its default 40 GiB first.
const DISK_SIZE: &str = "4096M";
/// Files on an image that must not be shared between the instances made from it, or that only describe
/// the build: each is looked up offline in every golden image.
const HYGIENE: [(&str, &str, Leftover); 9] = [
    ("/etc", "machine-id", Leftover::NonEmptyFile),
    ("/etc/ssh", "ssh_host_", Leftover::NamePrefix),
    ("/var/lib/cloud", "instances", Leftover::Entry),
    ("/var/lib/systemd", "random-seed", Leftover::Entry),
    ("/etc", "hostname", Leftover::NonEmptyFile),
    ("/etc/docker", "key.json", Leftover::Entry),
    ("/var/cache/apt/archives", ".deb", Leftover::NameSuffix),
    ("/var/lib/apt/lists", "_Packages", Leftover::NameSuffix),
    ("/var/log/journal", "", Leftover::AnyEntry),
];

/// How a hygiene entry is found in its directory's listing.
#[derive(Debug, Clone, Copy)]
enum Leftover {
    /// A file of that name with a size above zero.
    NonEmptyFile,
    /// Any entry of that name.
    Entry,
    NamePrefix,
    NameSuffix,
    /// Anything but `.` and `..`.
    AnyEntry,
}

/// One timed build.
#[derive(Debug, Clone, Serialize)]
struct Run {
    tool: String,
    task: String,
    seconds: f64,
    bytes: u64,
    /// Where the image is, for the hygiene scan and anyone who wants to look.
    image: PathBuf,
    /// What the tool itself says of its result, or what the benchmark found (Packer's cloud-init result).
    note: String,
}

struct Options {
    runs: usize,
    dir: PathBuf,
    only: Vec<String>,
}

const USAGE: &str =
    "usage: vm-scenarios bench [--runs N] [--dir DIR] [--only kiln-image,mkosi,kiln-bake,kiln-bake-in-vm,packer]";

pub fn main(root: &Path, args: &[String]) -> ExitCode {
    let options = match parse(args) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("{e:#}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match bench(root, &options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn parse(args: &[String]) -> Result<Options> {
    let mut options = Options {
        runs: 2,
        dir: PathBuf::from("/var/tmp/kiln-bench"),
        only: ["kiln-image", "mkosi", "kiln-bake", "kiln-bake-in-vm", "packer"].map(String::from).to_vec(),
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--runs" => options.runs = value()?.parse().context("--runs takes a number")?,
            "--dir" => options.dir = PathBuf::from(value()?),
            "--only" => options.only = value()?.split(',').map(String::from).collect(),
            other => bail!("unknown argument {other}"),
        }
    }
    if options.runs == 0 {
        bail!("--runs must be at least 1");
    }
    Ok(options)
}

fn bench(root: &Path, options: &Options) -> Result<()> {
    let wanted = |tool: &str| options.only.iter().any(|o| o == tool);
    fs::create_dir_all(&options.dir).with_context(|| format!("creating {}", options.dir.display()))?;
    let kiln = root.join("target/release/kiln");
    let results = options.dir.join("results.json");
    let mut runs = Vec::new();
    // Each run is kept as soon as it ends: a later failure loses nothing measured.
    let keep = |runs: &mut Vec<Run>, run: Run| -> Result<()> {
        eprintln!("bench: {} ({}): {:.1} s, {} bytes", run.tool, run.task, run.seconds, run.bytes);
        runs.push(run);
        fs::write(&results, serde_json::to_string_pretty(runs)? + "\n").context("writing results.json")
    };
    for n in 1..=options.runs {
        if wanted("kiln-image") {
            keep(&mut runs, kiln_image_build(&kiln, &options.dir, n)?)?;
        }
        if wanted("mkosi") {
            keep(&mut runs, mkosi(root, &options.dir, n)?)?;
        }
    }
    if wanted("kiln-bake") || wanted("kiln-bake-in-vm") || wanted("packer") {
        let golden = Golden::prepare(root, &kiln, &options.dir)?;
        for n in 1..=options.runs {
            if wanted("kiln-bake") {
                keep(&mut runs, golden.kiln_bake(n, false)?)?;
            }
            if wanted("kiln-bake-in-vm") {
                keep(&mut runs, golden.kiln_bake(n, true)?)?;
            }
            if wanted("packer") {
                keep(&mut runs, golden.packer(n)?)?;
            }
        }
    }
    let hygiene = hygiene_table(&runs, &options.dir)?;
    println!("{}\n\n{hygiene}", table(&runs));
    eprintln!("bench: results in {}", results.display());
    Ok(())
}

/// `kiln image build debian-12`, cold: an empty cache directory, so every package is downloaded.
fn kiln_image_build(kiln: &Path, dir: &Path, n: usize) -> Result<Run> {
    let cache = dir.join(format!("kiln-image-cache-{n}"));
    remove_dir(&cache)?;
    let output = dir.join(format!("kiln-image-{n}.qcow2"));
    eprintln!("bench: kiln image build {RELEASE} (cold, run {n})");
    let started = Instant::now();
    let mut command = Command::new(kiln);
    command.args(["image", "build", RELEASE, "--force", "-o"]).arg(&output).env("XDG_CACHE_HOME", &cache);
    run(&mut command, "kiln image build")?;
    let seconds = started.elapsed().as_secs_f64();
    remove_dir(&cache)?;
    Ok(Run {
        tool: "kiln image build".into(),
        task: "base, cold".into(),
        seconds,
        bytes: fs::metadata(&output)?.len(),
        image: output,
        note: "sha256, manifest, dpkg status and digests beside the image".into(),
    })
}

/// mkosi in a trixie root (`scripts/bench/mkosi/build`), cold: its last line is
/// `mkosi cold SECONDS BYTES`, the build alone (not the one-time root).
fn mkosi(root: &Path, dir: &Path, n: usize) -> Result<Run> {
    let output = dir.join(format!("mkosi-{n}.qcow2"));
    eprintln!("bench: mkosi (cold, run {n})");
    let mut command = Command::new(root.join("scripts/bench/mkosi/build"));
    command.arg("--cold").arg(&output).stderr(Stdio::inherit());
    let out = run(&mut command, "scripts/bench/mkosi/build")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let [tool, "cold", seconds, bytes] = last.split(' ').collect::<Vec<_>>()[..] else {
        bail!("scripts/bench/mkosi/build ended with `{last}`, not `mkosi cold SECONDS BYTES`");
    };
    anyhow::ensure!(tool == "mkosi", "scripts/bench/mkosi/build ended with `{last}`");
    Ok(Run {
        tool: "mkosi".into(),
        task: "base, cold".into(),
        seconds: seconds.parse().with_context(|| format!("the seconds in `{last}`"))?,
        bytes: bytes.parse().with_context(|| format!("the bytes in `{last}`"))?,
        image: output,
        note: String::new(),
    })
}

/// The base image both golden-image tools start from, of the profile's release: built once (or taken
/// from kiln's cache).
fn base_image(kiln: &Path, dir: &Path, release: &str) -> Result<PathBuf> {
    let base = dir.join(format!("base-{release}.qcow2"));
    if !base.is_file() {
        eprintln!("bench: the base image for the golden builds (kiln image build {release})");
        run(Command::new(kiln).args(["image", "build", release, "-o"]).arg(&base), "kiln image build")?;
    }
    Ok(base)
}

/// What both golden-image tools are given: the base, the mirror (served for the whole benchmark) and the
/// bake stage's user-data rendered against it.
struct Golden {
    base: PathBuf,
    profile: PathBuf,
    model: kiln::model::Model,
    user_data: String,
    dir: PathBuf,
    server: mirror::MirrorServer,
}

impl Golden {
    fn prepare(root: &Path, kiln: &Path, dir: &Path) -> Result<Golden> {
        let profile = root.join(PROFILE);
        let mut model = kiln::pipeline::load(&profile)
            .and_then(|loaded| loaded.validated(false))
            .map_err(|failure| anyhow::anyhow!("{failure}"))?;
        let base = &base_image(kiln, dir, model.host.release.name())?;
        let secrets = kiln::secrets::placeholders(&model);
        eprintln!("bench: building the package mirror");
        let built = mirror_for(&model, &secrets, base, dir, Vec::new())?;
        use_mirror(&mut model, &built.public_key)?;
        let server = mirror::serve(&built.root)?;
        let user_data = kiln::pipeline::user_data(&model, &secrets, Stage::Bake)?;
        Ok(Golden { base: base.to_path_buf(), profile, model, user_data, dir: dir.to_path_buf(), server })
    }

    /// What `kiln bake` runs (`bake::bake`), with the mirror the CLI cannot be given; `in_vm` as with
    /// `--packages-in-vm` (the packages installed in the build VM, as Packer does, instead of in a chroot).
    fn kiln_bake(&self, n: usize, in_vm: bool) -> Result<Run> {
        let (tool, name) =
            if in_vm { ("kiln bake --packages-in-vm", "kiln-bake-in-vm") } else { ("kiln bake", "kiln-bake") };
        let output = self.dir.join(format!("{name}-{n}.qcow2"));
        let work_dir = self.dir.join(format!("{name}-{n}.work"));
        remove_dir(&work_dir)?;
        eprintln!("bench: {tool} (run {n})");
        let started = Instant::now();
        let base = BaseImage::check(&self.base)?;
        let request = BakeRequest {
            model: &self.model,
            profile_path: &self.profile,
            base_image: &base,
            output: &output,
            format: ImageFormat::Qcow2,
            work_dir: &work_dir,
            accel: Choice::Tcg,
            started,
            mirror_port: Some(self.server.port()),
            packages_in_vm: in_vm,
            force: true,
            verbose: false,
            timeout: BUILD_TIMEOUT,
        };
        let (_, manifest) = bake::bake(&request)?;
        let seconds = started.elapsed().as_secs_f64();
        remove_dir(&work_dir)?;
        let phases: Vec<String> =
            manifest.timings.iter().filter(|(k, _)| *k != "total").map(|(k, v)| format!("{k} {v:.0} s")).collect();
        Ok(Run {
            tool: tool.into(),
            task: "golden".into(),
            seconds,
            bytes: manifest.output.bytes,
            image: output,
            note: format!("cloud-init checked, generalised; {}", phases.join(", ")),
        })
    }

    /// Packer 1.6.6's QEMU builder on the same seed, the way its documentation has a cloud image
    /// provisioned without SSH: a `cidata` CD, no communicator, cloud-init powering the VM off.
    fn packer(&self, n: usize) -> Result<Run> {
        let work = self.dir.join(format!("packer-{n}"));
        remove_dir(&work)?;
        fs::create_dir_all(&work)?;
        // The user-data is the bake stage's, byte for byte, with cloud-init's power-off after it: without
        // a communicator, a build ends when the guest powers itself off. The seed's other files are what
        // `kiln bake`'s seed holds (`pipeline::seed_files`).
        let user_data = format!("{}\npower_state:\n  mode: poweroff\n  condition: true\n", self.user_data);
        let seed = kiln::pipeline::seed_files(&user_data, "kiln-bake", None);
        for (name, text) in &seed.files {
            write_atomic(&work.join(name), text.as_bytes(), 0o600)?;
        }
        let template = packer_template(&self.base, &work, self.server.port());
        write_atomic(&work.join("template.json"), serde_json::to_string_pretty(&template)?.as_bytes(), 0o644)?;
        eprintln!("bench: packer build (run {n})");
        let started = Instant::now();
        let mut command = Command::new("packer");
        command.args(["build", "-color=false", "template.json"]).current_dir(&work);
        command.env("CHECKPOINT_DISABLE", "1").env("PACKER_CACHE_DIR", work.join("cache"));
        let log = fs::File::create(work.join("packer.log"))?;
        let status = command.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).status()?;
        let seconds = started.elapsed().as_secs_f64();
        if !status.success() {
            bail!("packer build failed ({status}); see {}", work.join("packer.log").display());
        }
        let image = work.join("out/packer.qcow2");
        let bytes = fs::metadata(&image).with_context(|| format!("Packer wrote no {}", image.display()))?.len();
        Ok(Run {
            tool: "Packer 1.6.6 (QEMU builder)".into(),
            task: "golden".into(),
            seconds,
            bytes,
            image,
            note: "exit 0 whatever cloud-init did".into(),
        })
    }
}

/// The template, as JSON (Packer 1.6.6 reads HCL too, but JSON needs no escaping here).
fn packer_template(base: &Path, work: &Path, mirror_port: u16) -> serde_json::Value {
    // The guest's network as `kiln bake` builds it (`qemu::spawn`): no way out but the mirror's addresses.
    let mut netdev = String::from("user,id=user.0,restrict=on");
    for address in mirror::guest_addresses() {
        let _ = write!(netdev, ",guestfwd=tcp:{address}:80-cmd:nc 127.0.0.1 {mirror_port}");
    }
    serde_json::json!({
        "builders": [{
            "type": "qemu",
            "disk_image": true,
            "iso_url": base.display().to_string(),
            "iso_checksum": "none",
            "disk_size": DISK_SIZE,
            "format": "qcow2",
            "disk_compression": true,
            "disk_interface": "virtio",
            "net_device": "virtio-net",
            "cd_files": ["./user-data", "./meta-data", "./network-config"],
            "cd_label": "cidata",
            "communicator": "none",
            "shutdown_timeout": format!("{}s", BUILD_TIMEOUT.as_secs()),
            "accelerator": "tcg",
            "cpus": CPUS,
            "memory": MEMORY_MIB,
            "headless": true,
            "output_directory": work.join("out").display().to_string(),
            "vm_name": "packer.qcow2",
            "qemuargs": [
                ["-bios", kiln::effects::vm::qemu::OVMF],
                ["-netdev", netdev],
                ["-device", "virtio-net,netdev=user.0"],
                ["-serial", format!("file:{}", work.join("console.log").display())],
            ],
        }]
    })
}

/// Each tool's first image, read offline for what it leaves that must differ between instances or that
/// only describes the build.
fn hygiene_table(runs: &[Run], dir: &Path) -> Result<String> {
    let mut images: BTreeMap<String, &Run> = BTreeMap::new();
    // Every image, base and golden: what each tool leaves is the same question for both.
    for run in runs {
        images.entry(run.tool.clone()).or_insert(run);
    }
    let mut table = String::from("| left in the image | ");
    table.push_str(&images.keys().cloned().collect::<Vec<_>>().join(" | "));
    table.push_str(" |\n|---|");
    table.push_str(&"---|".repeat(images.len()));
    let mut found: Vec<Vec<String>> = Vec::new();
    for run in images.values() {
        let raw = dir.join("scan.raw");
        crate::disk::to_raw(&run.image, &raw)?;
        let scanned = scan(&raw);
        fs::remove_file(&raw)?;
        found.push(scanned?);
    }
    let labels = HYGIENE
        .iter()
        .map(|(directory, name, _)| format!("`{directory}/{name}{}`", if name.is_empty() { "*" } else { "" }))
        .chain(std::iter::once(format!("boot loader random seed (ESP `{}`)", crate::disk::ESP_RANDOM_SEED)))
        .chain(std::iter::once(format!("cloud-init's verdict of the build (`{RESULT_JSON}`)")));
    for (row, label) in labels.enumerate() {
        let _ = write!(table, "\n| {label} |");
        for column in &found {
            let _ = write!(table, " {} |", column[row]);
        }
    }
    Ok(table)
}

/// Where cloud-init leaves its verdict of a boot: `{"v1": {"errors": [...]}}`.
const RESULT_JSON: &str = "/var/lib/cloud/data/result.json";

/// One cell per [`HYGIENE`] row (what was found, or "none"), then the boot loader's seed, then cloud-init's verdict of the build as the
/// image keeps it: a build whose provisioning failed still exits 0 in Packer.
fn scan(raw: &Path) -> Result<Vec<String>> {
    let device = crate::disk::root_device(raw)?;
    let mut cells = leftovers(&device)?;
    let boot_seed = crate::disk::esp_paths(raw)?.iter().any(|p| p == crate::disk::ESP_RANDOM_SEED);
    cells.push(if boot_seed { "**yes**" } else { "none" }.to_string());
    cells.push(build_verdict(&device)?);
    Ok(cells)
}

/// cloud-init's errors in the image's `result.json`, or that it has none (kiln removes it with the rest of
/// the build's cloud-init state, after reading it in the build VM).
fn build_verdict(device: &str) -> Result<String> {
    if !crate::disk::exists(device, RESULT_JSON)? {
        return Ok("none".into());
    }
    let out = run(Command::new("debugfs").arg("-R").arg(format!("cat {RESULT_JSON}")).arg(device), "debugfs cat")?;
    let result: serde_json::Value =
        serde_json::from_slice(&out.stdout).with_context(|| format!("reading {RESULT_JSON} from the image"))?;
    let errors = result["v1"]["errors"].as_array().with_context(|| format!("{RESULT_JSON} has no v1.errors"))?;
    Ok(match errors.len() {
        0 => "**kept**: no errors".to_string(),
        n => format!("**kept**: {n} error(s), the build still exited 0"),
    })
}

fn leftovers(device: &str) -> Result<Vec<String>> {
    HYGIENE
        .iter()
        .map(|(directory, name, how)| {
            let entries = match crate::disk::list(device, directory) {
                Ok(entries) => entries,
                // debugfs prints nothing for a directory that is not there: nothing is left in it.
                Err(_) if !crate::disk::exists(device, directory)? => return Ok("none (no directory)".into()),
                Err(e) => return Err(e),
            };
            let matching: Vec<&crate::disk::Entry> = entries
                .iter()
                .filter(|e| e.name != "." && e.name != "..")
                .filter(|e| match how {
                    Leftover::NonEmptyFile => e.name == *name && e.size.unwrap_or(0) > 0,
                    Leftover::Entry => e.name == *name,
                    Leftover::NamePrefix => e.name.starts_with(name),
                    Leftover::NameSuffix => e.name.ends_with(name),
                    Leftover::AnyEntry => true,
                })
                .collect();
            let bytes: u64 = matching.iter().filter_map(|e| e.size).sum();
            Ok(match matching.len() {
                0 => "none".to_string(),
                1 if bytes > 0 => format!("**yes** ({})", size(bytes)),
                1 => "**yes**".to_string(),
                count => format!("**{count}** ({})", size(bytes)),
            })
        })
        .collect()
}

/// A size as people read it: bytes, kB or MB.
fn size(bytes: u64) -> String {
    match bytes {
        0..10_000 => format!("{bytes} B"),
        10_000..10_000_000 => format!("{:.0} kB", bytes as f64 / 1e3),
        _ => format!("{:.1} MB", bytes as f64 / 1e6),
    }
}

/// The timings: one row per tool and task, every run's seconds, the size of the first image, and the
/// median's ratio to kiln's for the same task.
fn table(runs: &[Run]) -> String {
    let mut groups: Vec<(String, String, Vec<&Run>)> = Vec::new();
    for run in runs {
        match groups.iter_mut().find(|(tool, task, _)| *tool == run.tool && *task == run.task) {
            Some((_, _, group)) => group.push(run),
            None => groups.push((run.tool.clone(), run.task.clone(), vec![run])),
        }
    }
    let median = |group: &[&Run]| {
        let mut seconds: Vec<f64> = group.iter().map(|r| r.seconds).collect();
        seconds.sort_by(f64::total_cmp);
        let mid = seconds.len() / 2;
        if seconds.len().is_multiple_of(2) { (seconds[mid - 1] + seconds[mid]) / 2.0 } else { seconds[mid] }
    };
    let kiln_median = |task: &str| {
        groups.iter().find(|(tool, t, _)| tool.starts_with("kiln") && t == task).map(|(_, _, g)| median(g))
    };
    let mut table =
        String::from("| tool | task | wall time | median | image | median ÷ kiln's |\n|---|---|---|---|---|---|");
    for (tool, task, group) in &groups {
        let times: Vec<String> = group.iter().map(|r| format!("{:.0} s", r.seconds)).collect();
        let ratio = kiln_median(task).map_or("".into(), |k| format!("{:.2}", median(group) / k));
        let _ = write!(
            table,
            "\n| {tool} | {task} | {} | {:.0} s | {:.0} MB | {ratio} |",
            times.join(", "),
            median(group),
            group[0].bytes as f64 / 1e6
        );
    }
    for run in runs.iter().filter(|r| !r.note.is_empty()) {
        let _ = write!(table, "\n\n{} ({}): {}", run.tool, run.image.display(), run.note);
    }
    table
}

fn remove_dir(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(tool: &str, task: &str, seconds: f64) -> Run {
        Run {
            tool: tool.into(),
            task: task.into(),
            seconds,
            bytes: 300_000_000,
            image: PathBuf::from("x"),
            note: String::new(),
        }
    }

    #[test]
    fn the_table_gives_each_tools_median_against_kilns() {
        let runs = [
            run("kiln bake", "golden", 200.0),
            run("Packer", "golden", 250.0),
            run("kiln bake", "golden", 220.0),
            run("Packer", "golden", 270.0),
        ];
        let table = table(&runs);
        assert!(table.contains("| kiln bake | golden | 200 s, 220 s | 210 s | 300 MB | 1.00 |"), "{table}");
        assert!(table.contains("| Packer | golden | 250 s, 270 s | 260 s | 300 MB | 1.24 |"), "{table}");
    }

    /// Packer's guest gets the network `kiln bake`'s gets: restricted, with the mirror on each address.
    #[test]
    fn packers_guest_reaches_the_mirror_on_every_address_and_nothing_else() {
        let template = packer_template(Path::new("/b.qcow2"), Path::new("/w"), 4321);
        let args = template["builders"][0]["qemuargs"].as_array().unwrap();
        let netdev = args.iter().find(|a| a[0] == "-netdev").unwrap()[1].as_str().unwrap().to_string();
        assert!(netdev.starts_with("user,id=user.0,restrict=on"), "{netdev}");
        for address in mirror::guest_addresses() {
            assert!(netdev.contains(&format!("guestfwd=tcp:{address}:80-cmd:nc 127.0.0.1 4321")), "{netdev}");
        }
        assert_eq!(template["builders"][0]["cpus"], CPUS);
        assert_eq!(template["builders"][0]["memory"], MEMORY_MIB);
    }

    #[test]
    fn sizes_read_as_people_read_them() {
        assert_eq!(size(33), "33 B");
        assert_eq!(size(2_602), "2602 B");
        assert_eq!(size(93_000), "93 kB");
        assert_eq!(size(68_600_000), "68.6 MB");
    }

    #[test]
    fn arguments_are_checked() {
        assert!(parse(&["--runs".into(), "0".into()]).is_err());
        assert!(parse(&["--frobnicate".into()]).is_err());
        let options = parse(&["--only".into(), "packer".into()]).unwrap();
        assert_eq!(options.only, ["packer"]);
    }
}
