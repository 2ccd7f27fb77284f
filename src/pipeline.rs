//! The one library entry every command goes through: load → validate → resolve secrets → render a stage
//! → encode for a target → pack a seed. `kiln check/render/seed/expect`, `kiln bake` and `kiln test` all
//! call it; it prints nothing and decides each failure's kind (`Failure`), so exit codes are decided once.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::catalog::Code;
use crate::consumers::cloud_init_schema;
use crate::diag::{Diagnostic, Report};
use crate::effects::fs::read_limited;
use crate::effects::profile_dir::{ProfileDir, describe_io};
use crate::effects::secret_source::EnvAndFiles;
use crate::failure::Failure;
use crate::fleet::{self, Member};
use crate::lower::Stage;
use crate::model::{self, Model, ProfileFiles};
use crate::profile::v1::RawProfile;
use crate::profile::{self, MAX_PROFILE_BYTES};
use crate::secrets::{self, Secrets};
use crate::target::{Encoded, Encoding, Target, TargetError};
use crate::{cloud_config, lower, seed};

/// A profile read from disk and taken as far as it goes: parsed, and validated when it parses.
pub struct Loaded {
    pub display_path: String,
    pub source: String,
    pub dir: Option<ProfileDir>,
    /// A profile of one host, validated.
    pub model: Option<Model>,
    /// A fleet (a profile listing `hosts`), every host validated.
    pub fleet: Option<Vec<Member>>,
    pub report: Report,
}

impl Loaded {
    /// The profile and every file it had read (keys, file bodies, secrets): what no output may be.
    pub fn inputs(&self, profile: &Path) -> Vec<PathBuf> {
        let mut inputs = vec![profile.to_path_buf()];
        inputs.extend(self.dir.iter().flat_map(ProfileDir::files_read));
        inputs
    }

    /// The validated model, if the report allows output (errors always stop it; warnings with `strict`).
    /// A fleet has one per host: see [`Loaded::validated_host`].
    pub fn validated(&self, strict: bool) -> Result<Model, Failure> {
        self.validated_host(strict, None)
    }

    /// The validated model of host `host` of a fleet, or of the one host a profile describes (whose name
    /// `host` may repeat). A fleet needs a host named; an unknown one is a usage error with the hosts listed.
    pub fn validated_host(&self, strict: bool, host: Option<&str>) -> Result<Model, Failure> {
        let refused = || Failure::Profile { path: self.display_path.clone() };
        if self.report.fails(strict) {
            return Err(refused());
        }
        match (&self.fleet, host) {
            (Some(fleet), Some(name)) => fleet::select(fleet, name)
                .map(|m| m.model.clone())
                .map_err(|why| Failure::Usage(format!("{why}; nothing was written"))),
            (Some(fleet), None) => Err(Failure::Usage(format!(
                "{} lists {} hosts ({}): name one with --host, or --all where the command has it; nothing was written",
                self.display_path,
                fleet.len(),
                fleet.iter().map(|m| m.hostname.as_str()).collect::<Vec<_>>().join(", ")
            ))),
            (None, Some(name)) => {
                let model = self.model.clone().ok_or_else(refused)?;
                if model.host.hostname.eq_ignore_ascii_case(name) {
                    Ok(model)
                } else {
                    Err(Failure::Usage(format!(
                        "{} describes one host, `{}`, not `{name}`; nothing was written",
                        self.display_path, model.host.hostname
                    )))
                }
            }
            (None, None) => self.model.clone().ok_or_else(refused),
        }
    }

    /// Every host's validated model: the fleet's, or the one host's.
    pub fn validated_all(&self, strict: bool) -> Result<Vec<Member>, Failure> {
        if self.report.fails(strict) {
            return Err(Failure::Profile { path: self.display_path.clone() });
        }
        match (&self.fleet, &self.model) {
            (Some(fleet), _) => Ok(fleet.clone()),
            (None, Some(model)) => Ok(vec![Member { hostname: model.host.hostname.clone(), model: model.clone() }]),
            (None, None) => Err(Failure::Profile { path: self.display_path.clone() }),
        }
    }

    /// The profile's directory: where its keys, file bodies and file secrets are read from.
    pub fn dir(&self) -> Result<&ProfileDir, Failure> {
        self.dir.as_ref().ok_or_else(|| Failure::Profile { path: self.display_path.clone() })
    }
}

/// Reads and validates one profile. `Err` only when the profile itself cannot be read (exit 3); every
/// problem in it is a diagnostic in the report.
pub fn load(path: &Path) -> Result<Loaded, Failure> {
    let display_path = path.display().to_string();
    let bytes = read_limited(path, MAX_PROFILE_BYTES)
        .map_err(|e| Failure::io(anyhow::anyhow!("reading profile {display_path}: {}", describe_io(&e))))?;
    let mut loaded =
        Loaded { display_path, source: String::new(), dir: None, model: None, fleet: None, report: Report::default() };
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
    let dir = ProfileDir::of(path)
        .with_context(|| format!("opening the directory of {}", loaded.display_path))
        .map_err(Failure::io)?;
    if let Some(raw) = &parsed.raw {
        let report = if raw.hosts.is_empty() {
            let (model, report) = validate(raw, &dir);
            loaded.model = model;
            report
        } else {
            let (fleet, report) = fleet::validate(raw, &|one| validate(one, &dir));
            loaded.fleet = fleet;
            report
        };
        for d in report.diagnostics {
            loaded.report.push(parsed.sources.locate(d));
        }
    }
    loaded.dir = Some(dir);
    Ok(loaded)
}

/// Validates a parsed profile: the model's own rules, then what needs the lowering (butane's "validate
/// output" step: the profile's files may not land where a component writes). The model comes back only
/// when there is no error.
pub fn validate(raw: &RawProfile, files: &dyn ProfileFiles) -> (Option<Model>, Report) {
    let (model, mut report) = model::validate(raw, files);
    let Some(model) = model else { return (None, report) };
    files_on_claimed_paths(&model, &mut report);
    ((!report.has_errors()).then_some(model), report)
}

/// The profile's `files` may not write where kiln writes or what a section decides: the lowering says
/// which paths those are (`lower::claims`), so a new component cannot forget to protect its files.
fn files_on_claimed_paths(model: &Model, report: &mut Report) {
    let claims = crate::lower::claims(model);
    for file in &model.files {
        let Some(claim) = claims.iter().find(|c| c.covers(&file.path)) else { continue };
        let (message, help) = match claim.by {
            "kiln" => (
                format!("`{}` is where kiln and cloud-init keep their own files", file.path),
                "put the file somewhere else".to_string(),
            ),
            section => (
                format!(
                    "kiln writes or manages `{}` for the profile's {section} section: this file would be written twice or change what that section declares",
                    file.path
                ),
                format!("configure it through {section}"),
            ),
        };
        report.push(
            Diagnostic::error(Code::ContradictoryRule, format!("$.files[{}].path", file.origin), message)
                .with_help(help),
        );
    }
}

/// The secrets the model references, read from the environment and files beside the profile, or
/// placeholders when `redact` (and for the bake stage, which carries none).
pub fn resolve_secrets(model: &Model, dir: &ProfileDir, redact: bool) -> Result<Secrets, Failure> {
    let source = EnvAndFiles { dir };
    secrets::resolve(model, if redact { None } else { Some(&source) }).map_err(Failure::Secrets)
}

/// The user-data text of one stage, validated against its release's cloud-init schema (butane's
/// "validate output"): a refusal is kiln's bug, `Failure::InvalidOutput`, and nothing is returned.
pub fn user_data(model: &Model, secrets: &Secrets, stage: Stage) -> Result<String, Failure> {
    let config = lower::lower_stage(model, secrets, stage);
    let text = cloud_config::emit(&config, &lower::header(model, secrets, stage))
        .context("serializing the cloud-config")
        .map_err(Failure::io)?;
    // The typed config's JSON value is what the text reads back as (tests/kiln/oracle.rs holds them
    // equal for every output); validating it skips parsing the YAML again, the larger part of the cost.
    let value = serde_json::to_value(&config).context("serializing the cloud-config").map_err(Failure::io)?;
    cloud_init_schema::validate(model.host.release, &value, stage.name())?;
    Ok(text)
}

/// `kiln check`'s "validate output": every stage renders (with placeholder secrets: their values do not
/// change the config's shape) and passes the release's cloud-init schema.
pub fn check_output(model: &Model) -> Result<(), Failure> {
    let secrets = secrets::placeholders(model);
    for stage in [Stage::Full, Stage::Bake, Stage::Boot] {
        user_data(model, &secrets, stage)?;
    }
    Ok(())
}

/// The user-data encoded as the target's API takes it, refused when it does not fit.
pub fn encode(text: &str, target: Target, encoding: Encoding) -> Result<Encoded, Failure> {
    crate::target::check(target, encoding, text.as_bytes()).map_err(Failure::Target)
}

/// Does the user-data fit the target? Measured with the real secrets when they can be read (exactly
/// what `render` would write; their values are only measured), otherwise with placeholders as long as
/// each secret can be: over the limit then is a warning naming the margin, since real secrets may be
/// shorter; over it even with the shortest placeholders is an error.
pub fn target_diagnostic(model: &Model, dir: &ProfileDir, target: Target, encoding: Encoding) -> Option<Diagnostic> {
    let measure = |secrets: &Secrets| {
        let text = user_data(model, secrets, Stage::Full).ok()?;
        crate::target::check(target, encoding, text.as_bytes()).err()
    };
    let as_diagnostic = |error: TargetError| {
        let code = match error {
            TargetError::EncodingUnsupported { .. } => Code::EncodingUnsupported,
            _ => Code::UserDataTooLarge,
        };
        Diagnostic::error(code, "$", error.to_string())
    };
    if let Ok(real) = resolve_secrets(model, dir, false) {
        return measure(&real).map(as_diagnostic);
    }
    if let Some(error) = measure(&secrets::placeholders(model)) {
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

/// A NoCloud `cidata` seed image and the instance id it gives the machine.
pub struct Seed {
    pub image: Vec<u8>,
    pub instance_id: String,
}

/// A NoCloud seed's files by name (user-data, meta-data naming the instance id and host name,
/// network-config: DHCP on Ethernet by default), and that instance id.
pub struct SeedFiles {
    pub instance_id: String,
    pub files: [(&'static str, String); 3],
}

/// What a seed holds: the one place its files are decided, for the seed image below and for a tool
/// that packs them itself (the benchmark's Packer, which writes its own `cidata` CD).
pub fn seed_files(user_data: &str, hostname: &str, network_config: Option<&str>) -> SeedFiles {
    let network_config = network_config.unwrap_or(seed::default_network_config());
    let instance_id = seed::instance_id(user_data.as_bytes(), network_config.as_bytes());
    let meta_data = seed::meta_data(&instance_id, hostname);
    SeedFiles {
        files: [
            ("user-data", user_data.to_string()),
            ("meta-data", meta_data),
            ("network-config", network_config.to_string()),
        ],
        instance_id,
    }
}

/// Packs [`seed_files`] into a seed image: the one place `kiln seed`, `kiln bake` and `kiln test` make seeds.
pub fn seed(user_data: &str, hostname: &str, network_config: Option<&str>) -> Result<Seed, Failure> {
    let SeedFiles { instance_id, files } = seed_files(user_data, hostname, network_config);
    let entries: Vec<(&str, &[u8])> = files.iter().map(|(name, text)| (*name, text.as_bytes())).collect();
    let image = crate::effects::seed_image::cidata_image(&entries).map_err(Failure::io)?;
    Ok(Seed { image, instance_id })
}
