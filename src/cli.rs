//! Command line: clap types and dispatch. The only module that joins the pure core and the effects.
//!
//! stdout carries only the product (user-data, a seed image path never, JSON reports, the schema);
//! diagnostics and progress go to stderr.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use crate::catalog::Code;
use crate::diag::{self, Diagnostic, Report};
use crate::effects::fs::{read_limited, refuse_input_as_output, write_atomic};
use crate::effects::profile_dir::{ProfileDir, describe_io};
use crate::effects::secret_source::EnvAndFiles;
use crate::effects::vm::bake::ImageFormat;
use crate::lower::Stage;
use crate::model::{self, Model};
use crate::profile::{self, MAX_PROFILE_BYTES};
use crate::secrets::{self, Secrets};
use crate::target::{Encoding, Target};
use crate::{cloud_config, lower, seed};

/// Exit codes, documented in the README.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// The profile has errors (or warnings, with `--strict`).
    pub const PROFILE: u8 = 1;
    /// The command line is wrong (clap's own code).
    pub const USAGE: u8 = 2;
    /// A file could not be read or written.
    pub const IO: u8 = 3;
    /// A secret could not be resolved.
    pub const SECRET: u8 = 4;
    /// The user-data does not fit the target (size limit or encoding).
    pub const TARGET: u8 = 5;
    /// `kiln test`: the VM is not in the declared state (at least one check failed).
    pub const CHECKS_FAILED: u8 = 6;
    /// `kiln test` / `kiln image`: the harness could not do its job (QEMU, image, mirror, timeout).
    pub const HARNESS: u8 = 7;
}

#[derive(Debug, Parser)]
#[command(name = "kiln", version, about = "Host profiles → validated cloud-init user-data, seeds and VM tests")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate profiles without producing output; report every problem with file:line:col.
    Check(CheckArgs),
    /// Render a profile into cloud-init user-data (stdout, or -o FILE written 0600).
    Render(RenderArgs),
    /// Write a NoCloud `cidata` seed image (vfat) for local boots.
    Seed(SeedArgs),
    /// Print, as JSON, the state a host booted from the profile must show (what `kiln test` checks).
    Expect(ExpectArgs),
    /// Print the JSON Schema of the profile format (for editors' YAML language servers).
    Schema,
    /// Boot a throwaway VM with the profile and check, from inside and outside, that it is as declared.
    Test(TestArgs),
    /// Bake a golden image: boot the base image with the profile's bake stage, make it generic, convert.
    Bake(BakeArgs),
    /// Build base images from kiln's pinned recipes.
    #[command(subcommand)]
    Image(ImageCommand),
}

#[derive(Debug, clap::Args)]
pub struct BakeArgs {
    /// The profile to bake (its bake stage: no secrets are read or needed).
    pub profile: PathBuf,
    /// Base disk image to start from (qcow2 or raw; never written to).
    #[arg(long)]
    pub base: PathBuf,
    /// The golden image to write; `OUT.manifest.json` is written beside it.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Disk format of the golden image.
    #[arg(long, value_enum, default_value_t = ImageFormat::Qcow2)]
    pub format: ImageFormat,
    /// Bake even if OUT is up to date with the same base, profile and kiln version.
    #[arg(long)]
    pub force: bool,
    /// Stream the build VM's console to stderr.
    #[arg(short, long)]
    pub verbose: bool,
    /// Seconds the build VM may take to boot and provision.
    #[arg(long, default_value_t = 1800)]
    pub timeout: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Human,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Profiles to check.
    #[arg(required = true)]
    pub profiles: Vec<PathBuf>,
    /// Fail on warnings too.
    #[arg(long)]
    pub strict: bool,
    /// How to print the report: `human` (stderr) or `json` (stdout).
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, clap::Args)]
pub struct OutputArgs {
    /// Cloud whose user-data size limit and accepted encodings apply.
    #[arg(long, value_enum, default_value_t = Target::Generic)]
    pub target: Target,
    /// How the user-data is encoded: plain text, gzip, or gzip then base64.
    #[arg(long, value_enum, default_value_t = Encoding::Plain)]
    pub encoding: Encoding,
}

#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    /// The profile to render.
    pub profile: PathBuf,
    /// Write here (atomically, mode 0600) instead of stdout.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Write placeholders instead of secret values (for review and diffs; not deployable).
    #[arg(long)]
    pub redact: bool,
    /// Refuse to render when the profile has warnings.
    #[arg(long)]
    pub strict: bool,
    /// `full`: everything at first boot; `bake`: what `kiln bake` puts in a golden image (no secrets);
    /// `boot`: what an instance of that image applies at its first boot.
    #[arg(long, value_enum, default_value_t = Stage::Full)]
    pub stage: Stage,
    #[command(flatten)]
    pub target: OutputArgs,
}

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// The profile to boot.
    pub profile: PathBuf,
    /// Base disk image (qcow2 or raw) with `IMAGE.dpkg-status` beside it (`kiln image build`).
    #[arg(long)]
    pub image: PathBuf,
    /// Also write the results as JUnit XML here.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Skip the reboot and the second round of checks.
    #[arg(long)]
    pub no_reboot: bool,
    /// `full`: IMAGE is a base image, provisioned at first boot; `boot`: IMAGE is a golden image baked
    /// from this profile (`kiln bake`), booted with the boot stage.
    #[arg(long, value_enum, default_value_t = Stage::Full)]
    pub stage: Stage,
    /// Seconds to wait for cloud-init to finish on each boot.
    #[arg(long, default_value_t = 900)]
    pub timeout: u64,
    /// Where the console log, seed and overlay go (default `target/vm-tests/<profile name>`).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build a base image from a recipe (cached by the hash of the recipe's inputs).
    Build(ImageBuildArgs),
}

#[derive(Debug, clap::Args)]
pub struct ImageBuildArgs {
    /// Recipe name (`debian-12`).
    pub recipe: String,
    /// Output image (qcow2); sidecars `.dpkg-status`, `.manifest`, `.sha256` are written beside it.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Rebuild even if the cache has this recipe.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, clap::Args)]
pub struct ExpectArgs {
    /// The profile whose expected state to print.
    pub profile: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct SeedArgs {
    /// The profile whose user-data goes into the seed.
    pub profile: PathBuf,
    /// The seed image to write (vfat, label `cidata`; mode 0600).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Write placeholders instead of secret values.
    #[arg(long)]
    pub redact: bool,
    /// Use this network-config (version 2) instead of DHCP on the first Ethernet interface.
    #[arg(long)]
    pub network_config: Option<PathBuf>,
    /// Which user-data goes into the seed (see `kiln render --stage`).
    #[arg(long, value_enum, default_value_t = Stage::Full)]
    pub stage: Stage,
}

/// Runs the command and returns the process exit code. Errors not tied to a profile come back as `Err`.
pub fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Check(args) => check(&args),
        Command::Render(args) => render(&args),
        Command::Seed(args) => seed_command(&args),
        Command::Expect(args) => {
            let (_, model, _) = match load_for_output(&args.profile, false, true)? {
                Ok(parts) => parts,
                Err(code) => return Ok(code),
            };
            let text = serde_json::to_string_pretty(&crate::expect::expect(&model))? + "\n";
            std::io::stdout().write_all(text.as_bytes()).context("writing to stdout")?;
            Ok(exit::OK)
        }
        Command::Test(args) => test_command(&args),
        Command::Bake(args) => bake_command(&args),
        Command::Image(ImageCommand::Build(args)) => {
            let started = std::time::Instant::now();
            match crate::effects::image::build(&args.recipe, &args.output, args.force) {
                Ok(hit) => {
                    let how = if hit { "from the cache" } else { "built" };
                    eprintln!("{}: {how} in {:.1} s", args.output.display(), started.elapsed().as_secs_f64());
                    Ok(exit::OK)
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    Ok(exit::HARNESS)
                }
            }
        }
        Command::Schema => {
            let text = serde_json::to_string_pretty(profile::schema())? + "\n";
            std::io::stdout().write_all(text.as_bytes()).context("writing to stdout")?;
            Ok(exit::OK)
        }
    }
}

/// A profile read from disk and taken as far as it goes: parsed, and validated when it parses.
pub struct Loaded {
    pub display_path: String,
    pub source: String,
    pub dir: Option<ProfileDir>,
    pub model: Option<Model>,
    pub report: Report,
}

impl Loaded {
    /// The profile and every file it had read (keys, file bodies, secrets): what no output may be.
    pub fn inputs(&self, profile: &Path) -> Vec<PathBuf> {
        let mut inputs = vec![profile.to_path_buf()];
        inputs.extend(self.dir.iter().flat_map(ProfileDir::files_read));
        inputs
    }
}

/// Refuses an output path that is one of the command's inputs (exit 2: the command line is wrong).
fn output_is_not_an_input(output: &Path, inputs: &[PathBuf]) -> Result<(), u8> {
    refuse_input_as_output(output, inputs).map_err(|why| {
        eprintln!("error: {why}; nothing was written");
        exit::USAGE
    })
}

/// Reads and validates one profile. `Err` only for I/O failures on the profile itself.
pub fn load(path: &Path) -> Result<Loaded> {
    let display_path = path.display().to_string();
    let bytes = read_limited(path, MAX_PROFILE_BYTES)
        .map_err(|e| anyhow::anyhow!("reading profile {display_path}: {}", describe_io(&e)))?;
    let mut loaded = Loaded { display_path, source: String::new(), dir: None, model: None, report: Report::default() };
    let Some(bytes) = bytes else {
        loaded.report.push(profile::too_large(None));
        return Ok(loaded);
    };
    let text = match profile::text_from_bytes(&bytes) {
        Ok(text) => text.to_string(),
        Err(diagnostic) => {
            // Shown for the caret only: invalid bytes and control characters become `?`.
            loaded.source = String::from_utf8_lossy(&bytes)
                .chars()
                .map(|c| if c == '\u{fffd}' || (c.is_control() && c != '\n') { '?' } else { c })
                .collect();
            loaded.report.push(*diagnostic);
            return Ok(loaded);
        }
    };
    let parsed = profile::parse(&text);
    loaded.source = text;
    loaded.report = parsed.report;
    let dir = ProfileDir::of(path).with_context(|| format!("opening the directory of {}", loaded.display_path))?;
    if let Some(raw) = &parsed.raw {
        let (model, report) = model::validate(raw, &dir);
        for d in report.diagnostics {
            loaded.report.push(parsed.sources.locate(d));
        }
        loaded.model = model;
    }
    loaded.dir = Some(dir);
    Ok(loaded)
}

fn print_human(loaded: &Loaded) {
    if !loaded.report.diagnostics.is_empty() {
        eprint!("{}", diag::render_human(&loaded.report, &loaded.display_path, &loaded.source));
    }
}

fn check(args: &CheckArgs) -> Result<u8> {
    let mut worst = exit::OK;
    let mut json_reports = Vec::new();
    for path in &args.profiles {
        let mut loaded = match load(path) {
            Ok(loaded) => loaded,
            Err(e) => {
                eprintln!("error: {e:#}");
                worst = worst.max(exit::IO);
                continue;
            }
        };
        if let (Some(model), Some(dir)) = (&loaded.model, &loaded.dir)
            && let Some(d) = target_problem(model, dir, &args.output)
        {
            loaded.report.push(d);
        }
        let fails = loaded.report.fails(args.strict);
        match args.format {
            Format::Human => {
                print_human(&loaded);
                if !fails {
                    eprintln!("{}: ok", loaded.display_path);
                }
            }
            Format::Json => {
                json_reports.push(serde_json::to_value(diag::to_json(&loaded.report, &loaded.display_path))?)
            }
        }
        if fails {
            worst = worst.max(exit::PROFILE);
        }
    }
    if args.format == Format::Json {
        let text =
            serde_json::to_string_pretty(&serde_json::json!({ "strict": args.strict, "files": json_reports }))? + "\n";
        std::io::stdout().write_all(text.as_bytes()).context("writing to stdout")?;
    }
    Ok(worst)
}

/// Renders the single-shot user-data text for a validated model.
pub fn user_data(model: &Model, secrets: &Secrets) -> Result<String> {
    stage_user_data(model, secrets, Stage::Full)
}

/// Renders the user-data text of one stage.
pub fn stage_user_data(model: &Model, secrets: &Secrets, stage: Stage) -> Result<String> {
    let config = lower::lower_stage(model, secrets, stage);
    cloud_config::emit(&config, &lower::header(model, secrets, stage)).context("serializing the cloud-config")
}

/// Does the user-data fit the target? Measured with the real secrets when they can be read (exactly
/// what `render` would write; their values are only measured), otherwise with placeholders as long as
/// each secret can be: over the limit then is a warning naming the margin, since real secrets may be
/// shorter; over it even with the shortest placeholders is an error.
fn target_problem(model: &Model, dir: &ProfileDir, output: &OutputArgs) -> Option<Diagnostic> {
    let measure = |secrets: &Secrets| {
        let text = user_data(model, secrets).ok()?;
        crate::target::check(output.target, output.encoding, text.as_bytes()).err()
    };
    let as_diagnostic = |error: crate::target::TargetError| {
        let code = match error {
            crate::target::TargetError::EncodingUnsupported { .. } => Code::EncodingUnsupported,
            _ => Code::UserDataTooLarge,
        };
        Diagnostic::error(code, "$", error.to_string())
    };
    if let Ok(real) = secrets::resolve(model, Some(&EnvAndFiles { dir })) {
        return measure(&real).map(as_diagnostic);
    }
    if let Some(error) = measure(&secrets::resolve(model, None).unwrap_or_default()) {
        return Some(as_diagnostic(error));
    }
    let longest = secrets::longest(model);
    measure(&longest).map(|error| {
        Diagnostic::warning(
            Code::UserDataTooLarge,
            "$",
            format!("with its secrets at their longest ({}), {error}", secrets::longest_description(model)),
        )
        .with_help("set the secrets (as `kiln render` reads them) so `check` measures exactly")
    })
}

/// Loads a profile for producing output: any error stops here with the profile's exit code.
fn load_for_output(path: &Path, strict: bool, redact: bool) -> Result<Result<(Loaded, Model, Secrets), u8>> {
    let loaded = match load(path) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(Err(exit::IO));
        }
    };
    print_human(&loaded);
    let Some(model) = loaded.model.clone().filter(|_| !loaded.report.fails(strict)) else {
        eprintln!("error: {} has problems; nothing was written", loaded.display_path);
        return Ok(Err(exit::PROFILE));
    };
    let dir = loaded.dir.as_ref().context("the profile's directory")?;
    let source = EnvAndFiles { dir };
    let secrets = match secrets::resolve(&model, if redact { None } else { Some(&source) }) {
        Ok(s) => s,
        Err(errors) => {
            for e in &errors {
                eprintln!("error: {e}");
            }
            eprintln!(
                "error: {} secret(s) missing; nothing was written (use --redact to render placeholders)",
                errors.len()
            );
            return Ok(Err(exit::SECRET));
        }
    };
    Ok(Ok((loaded, model, secrets)))
}

fn render(args: &RenderArgs) -> Result<u8> {
    // The bake stage carries no secret, so it needs none: CI can render it without credentials.
    let redact = args.redact || args.stage == Stage::Bake;
    let (loaded, model, secrets) = match load_for_output(&args.profile, args.strict, redact)? {
        Ok(parts) => parts,
        Err(code) => return Ok(code),
    };
    if let Some(path) = &args.output
        && let Err(code) = output_is_not_an_input(path, &loaded.inputs(&args.profile))
    {
        return Ok(code);
    }
    let text = stage_user_data(&model, &secrets, args.stage)?;
    let encoded = match crate::target::check(args.target.target, args.target.encoding, text.as_bytes()) {
        Ok(encoded) => encoded,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(exit::TARGET);
        }
    };
    match &args.output {
        Some(path) => write_atomic(path, &encoded.bytes, 0o600)?,
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&encoded.bytes).and_then(|_| stdout.flush()).context("writing to stdout")?;
        }
    }
    Ok(exit::OK)
}

fn seed_command(args: &SeedArgs) -> Result<u8> {
    let redact = args.redact || args.stage == Stage::Bake;
    let (loaded, model, secrets) = match load_for_output(&args.profile, false, redact)? {
        Ok(parts) => parts,
        Err(code) => return Ok(code),
    };
    let mut inputs = loaded.inputs(&args.profile);
    inputs.extend(args.network_config.clone());
    if let Err(code) = output_is_not_an_input(&args.output, &inputs) {
        return Ok(code);
    }
    let user_data = stage_user_data(&model, &secrets, args.stage)?;
    let network_config = match &args.network_config {
        Some(path) => {
            let read = read_limited(path, MAX_PROFILE_BYTES).map_err(|e| describe_io(&e)).and_then(|bytes| {
                let bytes = bytes.ok_or_else(|| format!("it is larger than {MAX_PROFILE_BYTES} bytes"))?;
                String::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".to_string())
            });
            match read {
                Ok(text) => text,
                Err(why) => {
                    eprintln!("error: reading network config {}: {why}", path.display());
                    return Ok(exit::IO);
                }
            }
        }
        None => seed::default_network_config().to_string(),
    };
    let instance_id = seed::instance_id(user_data.as_bytes(), network_config.as_bytes());
    let meta_data = seed::meta_data(&instance_id, &model.host.hostname);
    let image = crate::effects::seed_image::cidata_image(&[
        ("user-data", user_data.as_bytes()),
        ("meta-data", meta_data.as_bytes()),
        ("network-config", network_config.as_bytes()),
    ])?;
    write_atomic(&args.output, &image, 0o600)?;
    eprintln!("wrote {} ({} bytes, instance-id {instance_id})", args.output.display(), image.len());
    Ok(exit::OK)
}

fn bake_command(args: &BakeArgs) -> Result<u8> {
    use crate::effects::interrupt;
    use crate::effects::vm::bake::{self, BakeError, BakeRequest, Outcome};
    use crate::effects::vm::qemu;
    // Before any thread exists: Ctrl-C and `kill` then remove the partial output and the work directory.
    interrupt::install();
    let (loaded, model, _) = match load_for_output(&args.profile, false, true)? {
        Ok(parts) => parts,
        Err(code) => return Ok(code),
    };
    let mut inputs = loaded.inputs(&args.profile);
    inputs.push(args.base.clone());
    if let Err(code) = output_is_not_an_input(&args.output, &inputs) {
        return Ok(code);
    }
    let out_dir = match args.output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = args.output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // Beside the output, so the overlay is on the same disk the image goes to.
    let work = tempfile::Builder::new()
        .prefix(&format!(".{name}.bake-"))
        .tempdir_in(&out_dir)
        .with_context(|| format!("creating a work directory in {}", out_dir.display()))?;
    interrupt::remove_on_interrupt(work.path());
    if let Err(e) = bake::check_base(&args.base) {
        eprintln!("error: {e}");
        return Ok(exit::IO);
    }
    let accel = qemu::probe_accel(&args.base, work.path());
    eprintln!("kiln bake: accelerator: {}", accel.name());
    let request = BakeRequest {
        model: &model,
        profile_path: &args.profile,
        base_image: &args.base,
        output: &args.output,
        format: args.format,
        work_dir: work.path(),
        accel,
        mirror_port: None,
        force: args.force,
        verbose: args.verbose,
        timeout: std::time::Duration::from_secs(args.timeout),
    };
    let result = bake::bake(&request);
    interrupt::forget(work.path());
    match result {
        Ok((outcome, manifest)) => {
            let how = if outcome == Outcome::UpToDate { "up to date" } else { "baked" };
            eprintln!("{}: {how} (sha256 {})", args.output.display(), manifest.output.sha256);
            Ok(exit::OK)
        }
        Err(e) => {
            eprintln!("error: {e}");
            if work.path().join("console.log").is_file() {
                let kept = work.keep();
                eprintln!("the build VM's console log is kept: {}", kept.join("console.log").display());
            }
            Ok(match e {
                BakeError::Base { .. } => exit::IO,
                BakeError::Provisioning { .. } => exit::CHECKS_FAILED,
                BakeError::Harness(_) => exit::HARNESS,
            })
        }
    }
}

fn test_command(args: &TestArgs) -> Result<u8> {
    use crate::effects::vm::{harness, qemu};
    if args.stage == Stage::Bake {
        eprintln!("error: `kiln test --stage bake` is not a thing: bake with `kiln bake`, then test with --stage boot");
        return Ok(exit::USAGE);
    }
    if let Some(junit) = &args.junit
        && let Err(code) = output_is_not_an_input(junit, &[args.profile.clone(), args.image.clone()])
    {
        return Ok(code);
    }
    let name = args.profile.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "profile".into());
    let run_dir = args.run_dir.clone().unwrap_or_else(|| PathBuf::from("target/vm-tests").join(&name));
    let scenario = harness::Scenario {
        name,
        profile: args.profile.clone(),
        base_image: args.image.clone(),
        run_dir: run_dir.clone(),
        reboot: !args.no_reboot,
        containers: Vec::new(),
        listen: Vec::new(),
        tamper: Vec::new(),
        expect_provisioning_failure: None,
        bake: false,
        image_is_golden: args.stage == Stage::Boot,
        boot_timeout: std::time::Duration::from_secs(args.timeout),
        wireguard_peer: false,
    };
    let accel = qemu::probe_accel(&args.image, &run_dir);
    eprintln!("kiln: accelerator: {}", accel.name());
    match harness::run(&scenario, accel) {
        Ok(verdict) => {
            eprint!("{}", crate::verify::report::table(&verdict));
            if let Some(path) = &args.junit {
                write_atomic(path, crate::verify::report::junit(std::slice::from_ref(&verdict)).as_bytes(), 0o644)?;
            }
            Ok(if verdict.passed() { exit::OK } else { exit::CHECKS_FAILED })
        }
        Err(e) => {
            eprintln!("error: the test harness failed: {e:#}");
            eprintln!("console log: {}", run_dir.join("console.log").display());
            Ok(exit::HARNESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
