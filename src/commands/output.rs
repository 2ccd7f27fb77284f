//! The commands that turn a profile into text or files: `check`, `render`, `seed`, `expect`, `schema`.

use super::{load_valid, output_is_not_an_input, print_diagnostics, to_stdout};
use crate::cli::{CheckArgs, ExpectArgs, Format, KamalArgs, RenderArgs, SeedArgs};
use crate::diag;
use crate::effects::fs::{read_limited, write_atomic};
use crate::effects::profile_dir::describe_io;
use crate::failure::Failure;
use crate::lower::Stage;
use crate::pipeline;
use crate::profile::{self, MAX_PROFILE_BYTES};

fn json(value: &impl serde::Serialize) -> Result<Vec<u8>, Failure> {
    let text = serde_json::to_string_pretty(value).map_err(Failure::io)?;
    Ok((text + "\n").into_bytes())
}

pub fn check(args: &CheckArgs) -> Result<(), Failure> {
    let (mut failing, mut unreadable, mut invalid_output) = (0, 0, 0);
    let mut json_reports = Vec::new();
    for path in &args.profiles {
        let mut loaded = match pipeline::load(path) {
            Ok(loaded) => loaded,
            Err(failure) => {
                // Reported here and counted: the other profiles are still checked.
                for line in failure.lines() {
                    eprintln!("error: {line}");
                }
                unreadable += 1;
                continue;
            }
        };
        if let (Some(model), Some(dir)) = (&loaded.model, &loaded.dir)
            && let Some(d) = pipeline::target_diagnostic(model, dir, args.output.target, args.output.encoding)
        {
            loaded.report.push(d);
        }
        let fails = loaded.report.fails(args.strict);
        // What the profile renders to must pass its release's cloud-init: if it does not, kiln is at fault.
        let mut bug = false;
        if let Some(model) = loaded.model.as_ref().filter(|_| !fails)
            && let Err(failure) = pipeline::check_output(model)
        {
            for line in failure.lines() {
                eprintln!("error: {}: {line}", loaded.display_path);
            }
            bug = true;
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
        }
        failing += usize::from(fails);
        invalid_output += usize::from(bug);
    }
    if args.format == Format::Json {
        to_stdout(&json(&serde_json::json!({ "strict": args.strict, "files": json_reports }))?)?;
    }
    if failing + unreadable + invalid_output > 0 {
        return Err(Failure::Checked { failing, unreadable, invalid_output, total: args.profiles.len() });
    }
    Ok(())
}

pub fn render(args: &RenderArgs) -> Result<(), Failure> {
    let (loaded, model) = load_valid(&args.profile, args.strict)?;
    // The bake stage carries no secret, so it needs none: CI can render it without credentials.
    let redact = args.redact || args.stage == Stage::Bake;
    let secrets = pipeline::resolve_secrets(&model, loaded.dir()?, redact)?;
    if let Some(path) = &args.output {
        output_is_not_an_input(path, &loaded.inputs(&args.profile))?;
    }
    let text = pipeline::user_data(&model, &secrets, args.stage)?;
    let encoded = pipeline::encode(&text, args.target.target, args.target.encoding)?;
    match &args.output {
        Some(path) => write_atomic(path, &encoded.bytes, 0o600).map_err(Failure::io),
        None => to_stdout(&encoded.bytes),
    }
}

pub fn seed(args: &SeedArgs) -> Result<(), Failure> {
    let (loaded, model) = load_valid(&args.profile, false)?;
    let redact = args.redact || args.stage == Stage::Bake;
    let secrets = pipeline::resolve_secrets(&model, loaded.dir()?, redact)?;
    let mut inputs = loaded.inputs(&args.profile);
    inputs.extend(args.network_config.clone());
    output_is_not_an_input(&args.output, &inputs)?;
    let user_data = pipeline::user_data(&model, &secrets, args.stage)?;
    let network_config = match &args.network_config {
        Some(path) => Some(read_network_config(path)?),
        None => None,
    };
    let seed = pipeline::seed(&user_data, &model.host.hostname, network_config.as_deref())?;
    write_atomic(&args.output, &seed.image, 0o600).map_err(Failure::io)?;
    eprintln!("wrote {} ({} bytes, instance-id {})", args.output.display(), seed.image.len(), seed.instance_id);
    Ok(())
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
    let (_, model) = load_valid(&args.profile, false)?;
    to_stdout(&json(&crate::expect::expect(&model))?)
}

/// Translate, then validate the output: what is printed must read back as what kiln meant.
pub fn kamal(args: &KamalArgs) -> Result<(), Failure> {
    let (loaded, model) = load_valid(&args.profile, false)?;
    let config = crate::kamal::config(&model).map_err(|e| Failure::Usage(format!("kiln kamal: {e}")))?;
    let yaml = crate::kamal::render(&config, &loaded.display_path);
    crate::kamal::validate(&yaml, &config).map_err(Failure::Bug)?;
    to_stdout(yaml.as_bytes())
}

pub fn schema() -> Result<(), Failure> {
    to_stdout(&json(profile::schema())?)
}
