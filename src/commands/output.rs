//! The commands that turn a profile into text or files: `check`, `render`, `seed`, `expect`, `schema`.

use super::{load_printed, output_is_not_an_input, print_diagnostics, to_stdout};
use std::path::{Path, PathBuf};

use crate::cli::{CheckArgs, ExpectArgs, Format, HostArgs, KamalArgs, RenderArgs, SeedArgs};
use crate::diag;
use crate::effects::fs::{read_limited, write_atomic};
use crate::effects::profile_dir::describe_io;
use crate::failure::Failure;
use crate::fleet::Member;
use crate::formats;
use crate::lower::Stage;
use crate::pipeline;
use crate::pipeline::Loaded;
use crate::profile::{self, MAX_PROFILE_BYTES};

pub(super) fn json(value: &impl serde::Serialize) -> Result<Vec<u8>, Failure> {
    let text = serde_json::to_string_pretty(value).map_err(Failure::io)?;
    Ok((text + "\n").into_bytes())
}

pub fn check(args: &CheckArgs) -> Result<(), Failure> {
    let (mut failing, mut unreadable, mut invalid_output) = (0, 0, 0);
    let mut json_reports = Vec::new();
    let mut loaded_all = Vec::new();
    let mut unreadable_files = Vec::new();
    for path in &args.profiles {
        let mut loaded = match pipeline::load(path) {
            Ok(loaded) => loaded,
            Err(failure) => {
                // Reported here and counted: the other profiles are still checked.
                for line in failure.lines() {
                    eprintln!("error: {line}");
                }
                let file = path.display().to_string();
                match args.format {
                    Format::Github => to_stdout(
                        formats::github::file_error(&file, "unreadable", &failure.lines().join("; ")).as_bytes(),
                    )?,
                    Format::Sarif => unreadable_files.push((file, failure.lines().join("; "))),
                    Format::Human | Format::Json => {}
                }
                unreadable += 1;
                continue;
            }
        };
        if let Some(dir) = &loaded.dir {
            // Each host's user-data must fit (a fleet's differ by their own values).
            let models = loaded.model.iter().chain(loaded.fleet.iter().flatten().map(|m| &m.model));
            let found: Vec<_> = models
                .filter_map(|m| pipeline::target_diagnostic(m, dir, args.output.target, args.output.encoding))
                .collect();
            for d in found {
                if !loaded.report.diagnostics.iter().any(|seen| seen.message == d.message) {
                    loaded.report.push(d);
                }
            }
        }
        let fails = loaded.report.fails(args.strict);
        // What the profile renders to must pass its release's cloud-init: if it does not, kiln is at fault.
        let mut bug = false;
        let members = if fails { Vec::new() } else { loaded.validated_all(false).unwrap_or_default() };
        for member in &members {
            if let Err(failure) = pipeline::check_output(&member.model) {
                let host = if loaded.fleet.is_some() { format!(" (host {})", member.hostname) } else { String::new() };
                for line in failure.lines() {
                    eprintln!("error: {}{host}: {line}", loaded.display_path);
                }
                bug = true;
            }
        }
        match args.format {
            Format::Human => {
                print_diagnostics(&loaded);
                if !fails && !bug {
                    eprintln!("{}: ok", loaded.display_path);
                }
            }
            Format::Json => json_reports
                .push(serde_json::to_value(diag::to_json(&loaded.report, &loaded.display_path)).map_err(Failure::io)?),
            Format::Github => to_stdout(formats::github::annotations(&loaded.report, &loaded.display_path).as_bytes())?,
            Format::Sarif => {}
        }
        failing += usize::from(fails);
        invalid_output += usize::from(bug);
        loaded_all.push(loaded);
    }
    if args.format == Format::Sarif {
        let mut files: Vec<formats::sarif::FileReport> = loaded_all
            .iter()
            .map(|l| formats::sarif::FileReport::Checked { file: &l.display_path, report: &l.report })
            .collect();
        files.extend(
            unreadable_files
                .iter()
                .map(|(file, message)| formats::sarif::FileReport::Unreadable { file, message: message.clone() }),
        );
        to_stdout(&json(&formats::sarif::log(&files))?)?;
    }
    if args.format == Format::Json {
        to_stdout(&json(&serde_json::json!({ "strict": args.strict, "files": json_reports }))?)?;
    }
    if failing + unreadable + invalid_output > 0 {
        return Err(Failure::Checked { failing, unreadable, invalid_output, total: args.profiles.len() });
    }
    Ok(())
}

/// The hosts a command acts on: `--all` (every host), `--host NAME`, or the profile's one host.
fn selected(loaded: &Loaded, strict: bool, hosts: &HostArgs) -> Result<Vec<Member>, Failure> {
    if hosts.all {
        return loaded.validated_all(strict);
    }
    let model = loaded.validated_host(strict, hosts.host.as_deref())?;
    Ok(vec![Member { hostname: model.host.hostname.clone(), model }])
}

/// Where `--all` writes host `name`'s file: `DIR/NAME.EXTENSION`.
fn per_host_path(dir: &Path, name: &str, extension: &str) -> PathBuf {
    dir.join(format!("{name}.{extension}"))
}

/// Writes every file, or none when any cannot be made: all are made in memory first. `--all` makes `dir`.
fn write_each(outputs: &[(PathBuf, Vec<u8>)], dir: Option<&Path>) -> Result<(), Failure> {
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::io(anyhow::anyhow!("creating {}: {}", dir.display(), describe_io(&e))))?;
    }
    for (path, bytes) in outputs {
        write_atomic(path, bytes, 0o600).map_err(Failure::io)?;
        if dir.is_some() {
            eprintln!("wrote {} ({} bytes)", path.display(), bytes.len());
        }
    }
    Ok(())
}

pub fn render(args: &RenderArgs) -> Result<(), Failure> {
    let loaded = load_printed(&args.profile)?;
    let members = selected(&loaded, args.strict, &args.hosts)?;
    // The bake stage carries no secret, so it needs none: CI can render it without credentials.
    let redact = args.redact || args.stage == Stage::Bake;
    let inputs = loaded.inputs(&args.profile);
    let mut outputs = Vec::new();
    for member in &members {
        let secrets = pipeline::resolve_secrets(&member.model, loaded.dir()?, redact)?;
        let text = pipeline::user_data(&member.model, &secrets, args.stage)?;
        let encoded = pipeline::encode(&text, args.target.target, args.target.encoding)?;
        let path = match &args.output {
            Some(dir) if args.hosts.all => Some(per_host_path(dir, &member.hostname, "user-data")),
            other => other.clone(),
        };
        if let Some(path) = &path {
            output_is_not_an_input(path, &inputs)?;
        }
        outputs.push((path, encoded.bytes));
    }
    match outputs.as_slice() {
        [(None, bytes)] => to_stdout(bytes),
        _ => {
            let files: Vec<(PathBuf, Vec<u8>)> =
                outputs.into_iter().filter_map(|(path, bytes)| path.map(|p| (p, bytes))).collect();
            write_each(&files, args.hosts.all.then_some(args.output.as_deref()).flatten())
        }
    }
}

pub fn seed(args: &SeedArgs) -> Result<(), Failure> {
    let loaded = load_printed(&args.profile)?;
    let members = selected(&loaded, false, &args.hosts)?;
    let redact = args.redact || args.stage == Stage::Bake;
    let mut inputs = loaded.inputs(&args.profile);
    inputs.extend(args.network_config.clone());
    let network_config = match &args.network_config {
        Some(path) => Some(read_network_config(path)?),
        None => None,
    };
    let mut outputs = Vec::new();
    for member in &members {
        let secrets = pipeline::resolve_secrets(&member.model, loaded.dir()?, redact)?;
        let path =
            if args.hosts.all { per_host_path(&args.output, &member.hostname, "img") } else { args.output.clone() };
        output_is_not_an_input(&path, &inputs)?;
        let user_data = pipeline::user_data(&member.model, &secrets, args.stage)?;
        let seed = pipeline::seed(&user_data, &member.model.host.hostname, network_config.as_deref())?;
        eprintln!("{}: instance-id {}", member.hostname, seed.instance_id);
        outputs.push((path, seed.image));
    }
    write_each(&outputs, args.hosts.all.then_some(args.output.as_path()))
}

/// A network-config file given with `--network-config`: a regular file, UTF-8, at most as large as a profile.
fn read_network_config(path: &std::path::Path) -> Result<String, Failure> {
    read_limited(path, MAX_PROFILE_BYTES)
        .map_err(|e| describe_io(&e))
        .and_then(|bytes| {
            let bytes = bytes.ok_or_else(|| format!("it is larger than {MAX_PROFILE_BYTES} bytes"))?;
            String::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".to_string())
        })
        .map_err(|why| Failure::io(anyhow::anyhow!("reading network config {}: {why}", path.display())))
}

pub fn expect(args: &ExpectArgs) -> Result<(), Failure> {
    let loaded = load_printed(&args.profile)?;
    let model = loaded.validated_host(false, args.host.as_deref())?;
    to_stdout(&json(&crate::expect::expect(&model))?)
}

/// Translate, then validate the output: what is printed must read back as what kiln meant.
pub fn kamal(args: &KamalArgs) -> Result<(), Failure> {
    let loaded = load_printed(&args.profile)?;
    let members = loaded.validated_all(false)?;
    let models: Vec<&crate::model::Model> = members.iter().map(|m| &m.model).collect();
    let config = crate::kamal::fleet_config(&models).map_err(|e| Failure::Usage(format!("kiln kamal: {e}")))?;
    let yaml = crate::kamal::render(&config, &loaded.display_path);
    crate::kamal::validate(&yaml, &config).map_err(Failure::Bug)?;
    to_stdout(yaml.as_bytes())
}

pub fn schema() -> Result<(), Failure> {
    to_stdout(&json(profile::schema())?)
}
