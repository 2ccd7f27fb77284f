//! kiln's VM scenarios: boots real Debian 13 and Debian 12 guests under QEMU and checks them from inside
//! and outside.
//!
//! Run by `scripts/test-all` (and so by CI) after the unit tests: builds (or takes from the cache) the
//! base image of each release a scenario's profile names (`host.os`), probes the accelerator once, runs each scenario in turn (two TCG guests at once on two
//! cores would only slow both), prints a table per scenario, writes `target/vm-tests/junit.xml`, and
//! ends with `N passed, N failed`. Exit status 0 only when every check of every scenario passed.
//!
//! Each scenario runs through the product's harness (`kiln::effects::vm::harness::run`, what `kiln test`
//! runs) with what only CI does plugged in through its `Extension` (`extension.rs`): the WireGuard peer
//! (the product's, with ssh-audit and more), test servers and containers (`scaffolding.rs`), tamperings (`tamper.rs`), golden images
//! baked first and their proofs (`golden.rs`). The list itself is `scenarios.rs`.

mod audit;
mod bench;
mod deploy;
mod disk;
mod extension;
mod golden;
mod interrupted;
mod lynis;
mod oci;
mod preflight;
mod registry;
mod scaffolding;
mod scenarios;
mod tamper;
mod trap;
mod updates;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::{Context as _, Result};
use kiln::effects::vm::{accel, qemu};
use kiln::failure::exit;
use kiln::model::{Model, Release};
use kiln::verify::report::{self, Verdict};

fn main() -> ExitCode {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = root.join("target/vm-tests");
    let only: Vec<String> = std::env::args().skip(1).collect();
    // Not a scenario: kiln's image builds timed against Packer's and mkosi's (`scripts/bench-images`).
    if only.first().map(String::as_str) == Some("bench") {
        return bench::main(&root, &only[1..]);
    }
    let selected = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    // Two guests share stderr: live progress lines would draw over each other.
    kiln::effects::vm::progress::plain_only();
    if let Err(code) = ready_to_run(&out) {
        return code;
    }
    let mut images = Images { out: out.clone(), built: BTreeMap::new(), accel: None };
    let results = Mutex::new(Results::default());
    let mut jobs = VecDeque::new();
    // Everything shared is made first, one at a time: the base images, the accelerator's verdict, each
    // release's private apt state (two concurrent `apt-get update`s of one state would fail on its lock).
    for scenario in scenarios::scenarios(&root, &out).into_iter().filter(|s| selected(&s.name)) {
        let prepared = load(&scenario.profile).and_then(|model| {
            let (image, accel) = images.for_release(model.host.release)?;
            warm_apt_state(model.host.release)?;
            Ok(ScenarioJob { scenario: scenario.clone(), model, image, accel })
        });
        match prepared {
            Ok(job) => jobs.push_back(Job::Scenario(Box::new(job))),
            Err(e) => results.lock().expect("no worker yet").record(&scenario.name, Err(e)),
        }
    }
    // Not a boot scenario: the real `kiln bake` binary, stopped half-way by signals.
    if selected("bake-interrupted") {
        let profile = root.join("profiles/app.yaml");
        match load(&profile).and_then(|model| images.for_release(model.host.release)) {
            Ok((image, _)) => jobs.push_back(Job::Interrupted { profile, image }),
            Err(e) => results.lock().expect("no worker yet").record("bake-interrupted", Err(e)),
        }
    }
    // Not a kiln host: the base image as it is, for lynis's baseline figure (asked for by name, or with
    // KILN_LYNIS=1 as the seed host's audit is).
    if (selected("lynis-bare") && lynis::wanted()) || only.iter().any(|o| o == "lynis-bare") {
        match images.for_release(Release::Debian13) {
            Ok((image, accel)) => jobs.push_back(Job::LynisBare { image, accel }),
            Err(e) => results.lock().expect("no worker yet").record("lynis-bare", Err(e)),
        }
    }
    let jobs = Mutex::new(jobs);
    // Guests run single-threaded TCG (`qemu::TCG`): one per core keeps every core busy.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_PARALLEL_GUESTS);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    // Taken in its own statement: a guard in a `while let` would hold the queue for the
                    // whole run of the job, and the workers would take turns.
                    let next = jobs.lock().expect("a worker panicked").pop_front();
                    let Some(job) = next else { break };
                    let (name, result) = job.run(&root, &out);
                    results.lock().expect("a worker panicked").record(&name, result);
                }
            });
        }
    });
    let results = results.into_inner().expect("a worker panicked");
    results.report(&out, images.accel.unwrap_or(qemu::Accel::Tcg))
}

/// At most this many guests at once: each takes a core (single-threaded TCG) and 2 GiB.
const MAX_PARALLEL_GUESTS: usize = 2;

/// One scenario to run on a worker.
enum Job {
    Scenario(Box<ScenarioJob>),
    Interrupted { profile: PathBuf, image: PathBuf },
    LynisBare { image: PathBuf, accel: qemu::Accel },
}

/// A boot scenario with its validated model and the base image it starts from.
struct ScenarioJob {
    scenario: scenarios::Scenario,
    model: Model,
    image: PathBuf,
    accel: qemu::Accel,
}

impl Job {
    fn run(self, root: &Path, out: &Path) -> (String, Result<Verdict>) {
        match self {
            Job::Scenario(job) => {
                let ScenarioJob { scenario, model, image, accel } = *job;
                eprintln!("\n== scenario {} ({})", scenario.name, scenario.profile.display());
                let result = scenario.run(model, &image, accel);
                (scenario.name, result)
            }
            Job::Interrupted { profile, image } => {
                eprintln!("\n== scenario bake-interrupted (kiln bake stopped by SIGTERM, then SIGKILL)");
                let kiln = root.join("target/release/kiln");
                ("bake-interrupted".into(), interrupted::run(&kiln, &profile, &image, &out.join("bake-interrupted")))
            }
            Job::LynisBare { image, accel } => {
                eprintln!("\n== scenario lynis-bare (the Debian 13 base image, nothing configured, audited by lynis)");
                ("lynis-bare".into(), lynis::bare(&image, &out.join("lynis-bare"), accel))
            }
        }
    }
}

/// The release's private apt state (`apt-get update`d once), as the mirror build will ask for it.
fn warm_apt_state(release: Release) -> Result<()> {
    kiln::effects::apt_state::AptState::for_release(
        release.facts().codename,
        &kiln::effects::mirror::default_cache_dir(),
    )
    .map(drop)
}

/// The base image of each release the scenarios need, built (or taken from kiln's cache) on first use,
/// and the accelerator, probed once with the first of them.
struct Images {
    out: PathBuf,
    built: BTreeMap<Release, PathBuf>,
    accel: Option<qemu::Accel>,
}

impl Images {
    fn for_release(&mut self, release: Release) -> Result<(PathBuf, qemu::Accel)> {
        let image = match self.built.get(&release) {
            Some(image) => image.clone(),
            None => {
                let image = self.out.join(format!("{}.qcow2", release.name()));
                base_image(release, &image)?;
                self.built.insert(release, image.clone());
                image
            }
        };
        let accel = match self.accel {
            Some(accel) => accel,
            None => *self.accel.insert(accelerator(&image, &self.out)?),
        };
        Ok((image, accel))
    }
}

/// Every program and file the scenarios need is there (exit 7 naming what is not), and so is the
/// output directory.
fn ready_to_run(out: &Path) -> Result<(), ExitCode> {
    let missing = preflight::missing();
    if !missing.is_empty() {
        eprintln!("error: the VM scenarios cannot run here:\n  {}", missing.join("\n  "));
        return Err(ExitCode::from(7));
    }
    std::fs::create_dir_all(out).map_err(|e| {
        eprintln!("error: creating {}: {e}", out.display());
        ExitCode::from(exit::HARNESS)
    })
}

/// A release's base image, built from its recipe or taken from the cache.
fn base_image(release: Release, image: &Path) -> Result<()> {
    let started = std::time::Instant::now();
    let hit = kiln::effects::image::build(release.name(), image, false)
        .with_context(|| format!("building the {} base image", release.name()))?;
    let how = if hit { "cache" } else { "built" };
    eprintln!("base image: {} ({how}, {:.1} s)", image.display(), started.elapsed().as_secs_f64());
    Ok(())
}

/// KVM when a guest really boots with it here, TCG otherwise (`kiln test`'s decision: `KILN_ACCEL`, else the
/// verdict kept for this machine boot, else a probe); decided once for every scenario.
fn accelerator(image: &Path, out: &Path) -> Result<qemu::Accel> {
    let decision = accel::decide(accel::Choice::Auto, image, out).map_err(anyhow::Error::msg)?;
    eprintln!("accelerator: {} ({})", decision.accel.name(), decision.how);
    Ok(decision.accel)
}

/// Loads and validates a scenario's profile.
fn load(profile: &Path) -> Result<Model> {
    let model = kiln::pipeline::load(profile).and_then(|loaded| loaded.validated(false));
    model.map_err(|failure| anyhow::anyhow!("{failure}"))
}

/// The verdicts so far, and the scenarios whose harness failed (each counts as one failure).
#[derive(Default)]
struct Results {
    verdicts: Vec<Verdict>,
    broken_harness: Vec<String>,
}

impl Results {
    /// Prints the scenario's table, or that its harness failed.
    fn record(&mut self, name: &str, result: Result<Verdict>) {
        match result {
            Ok(verdict) => {
                eprint!("{}", report::table(&verdict));
                self.verdicts.push(verdict);
            }
            Err(e) => {
                eprintln!("error: scenario {name}: the harness failed: {e:#}");
                self.broken_harness.push(name.to_string());
            }
        }
    }

    /// Writes the JUnit report, prints the timings and `N passed, N failed`, and gives the exit status.
    fn report(&self, out: &Path, accel: qemu::Accel) -> ExitCode {
        let junit = out.join("junit.xml");
        if let Err(e) = std::fs::write(&junit, report::junit(&self.verdicts)) {
            eprintln!("error: writing {}: {e}", junit.display());
        }
        eprintln!("\nscenario timings ({}):", accel.name());
        for verdict in &self.verdicts {
            let timings: Vec<String> = verdict.timings.iter().map(|(what, s)| format!("{what} {s:.0} s")).collect();
            eprintln!("  {}: {}", verdict.scenario, timings.join(", "));
        }
        let (passed, failed) = self.verdicts.iter().map(Verdict::counts).fold((0, 0), |(p, f), (a, b)| (p + a, f + b));
        let failed = failed + self.broken_harness.len();
        println!("{passed} passed, {failed} failed");
        if failed == 0 && !self.verdicts.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
    }
}
