//! Benchmark (not a test): kiln's `check` + `render` against cloud-init's own `cloud-init schema` on the
//! same profile, as whole processes, in-process render throughput, and what validating the output against
//! the release's cloud-init schema costs (compiling it, then each validation). `cargo bench` prints the figures
//! the README quotes. Goals: kiln ≥ 20× faster per file than cloud-init's check; ≥ 1,000 renders/s.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kiln::consumers::cloud_init_schema;
use kiln::effects::profile_dir::ProfileDir;
use kiln::lower::Stage;
use kiln::pipeline::user_data;
use kiln::secrets::{self, SecretSource};
use kiln::{model, profile};

/// `require_tool`, shared with the tests: what the benchmark measures kiln against must be installed.
#[path = "../tests/kiln/tools.rs"]
#[allow(dead_code)]
mod tools;

struct FixedSecrets;

impl SecretSource for FixedSecrets {
    fn lookup(&self, _: &model::SecretRef) -> Result<String, String> {
        Ok("bench-secret-value-0123456789".into())
    }
}

/// Runs `f` repeatedly for about `budget`, returns (iterations, mean time).
fn measure(budget: Duration, mut f: impl FnMut()) -> (u32, Duration) {
    f(); // warm-up: page cache, lazy statics
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < budget {
        f();
        n += 1;
    }
    (n, start.elapsed() / n.max(1))
}

fn run(program: &str, args: &[&str], env: &[(&str, &str)]) {
    let status = Command::new(program).args(args).envs(env.iter().copied()).output().expect("command runs");
    assert!(status.status.success(), "{program} {args:?} failed: {}", String::from_utf8_lossy(&status.stderr));
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let profile_path = root.join("profiles/app.yaml");
    let kiln_bin = env!("CARGO_BIN_EXE_kiln");
    tools::require_tool("cloud-init");
    let env = [("CLOUDFLARED_TOKEN", "bench-token"), ("TAILSCALE_AUTH_KEY", "bench-key")];
    let budget = Duration::from_secs(3);

    // In process: parse → validate → resolve secrets → lower → emit → validate output, from the profile text.
    let text = std::fs::read_to_string(&profile_path).unwrap();
    let dir = ProfileDir::of(&profile_path).unwrap();

    // The release's cloud-init schema: compiled on a process's first validation, then reused.
    let parsed = profile::parse(&text);
    let model = kiln::pipeline::validate(parsed.raw.as_ref().unwrap(), &dir).0.unwrap();
    let release = model.host.release;
    let placeholders = secrets::placeholders(&model);
    let config = kiln::lower::lower_stage(&model, &placeholders, Stage::Full);
    let value = serde_json::to_value(&config).unwrap();
    let started = Instant::now();
    cloud_init_schema::validate(release, &value, "full").unwrap();
    let first = started.elapsed();
    let (_, per_validation) = measure(budget, || {
        let value = serde_json::to_value(&config).unwrap();
        cloud_init_schema::validate(release, &value, "full").unwrap()
    });
    println!(
        "cloud-init {} schema ({}): first validation {:.1} ms (compiles it, once per process), then {:.1} µs each (to_value + validate)",
        release.facts().cloud_init,
        release.name(),
        first.as_secs_f64() * 1e3,
        per_validation.as_secs_f64() * 1e6
    );

    let mut bytes = 0usize;
    let (n, per_render) = measure(budget, || {
        let parsed = profile::parse(&text);
        let (model, _) = kiln::pipeline::validate(parsed.raw.as_ref().unwrap(), &dir);
        let model = model.unwrap();
        let secrets = secrets::resolve(&model, Some(&FixedSecrets)).unwrap();
        bytes = user_data(&model, &secrets, Stage::Full).unwrap().len();
    });
    println!(
        "in-process render of {}: {n} renders, {:.1} µs each, {:.0} profiles/s ({bytes} bytes of user-data each)",
        profile_path.display(),
        per_render.as_secs_f64() * 1e6,
        1.0 / per_render.as_secs_f64()
    );

    // Whole processes: what a user or CI pays per file.
    let dir = tempfile::tempdir().unwrap();
    let rendered: &Path = &dir.path().join("user-data");
    let p = profile_path.to_str().unwrap();
    run(kiln_bin, &["render", p, "-o", rendered.to_str().unwrap()], &env);
    let (_, kiln_check) = measure(budget, || run(kiln_bin, &["check", "--strict", p], &env));
    let (_, kiln_render) = measure(budget, || run(kiln_bin, &["render", p, "-o", rendered.to_str().unwrap()], &env));
    let (_, cloud_init) =
        measure(budget, || run("cloud-init", &["schema", "--config-file", rendered.to_str().unwrap()], &[]));
    let kiln_both = kiln_check + kiln_render;
    println!("kiln check --strict:            {:8.2} ms", kiln_check.as_secs_f64() * 1e3);
    println!("kiln render:                    {:8.2} ms", kiln_render.as_secs_f64() * 1e3);
    println!("kiln check + render:            {:8.2} ms", kiln_both.as_secs_f64() * 1e3);
    println!("cloud-init schema --config-file:{:8.2} ms", cloud_init.as_secs_f64() * 1e3);
    println!(
        "kiln (check + render) is {:.1}x faster than cloud-init's schema check alone",
        cloud_init.as_secs_f64() / kiln_both.as_secs_f64()
    );
}
