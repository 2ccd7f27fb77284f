//! cloud-init's own JSON schema for each release, embedded (`assets/cloud-init/`): the last check on every
//! user-data kiln renders, butane's "validate output" step (docs/design.md §3.1).
//!
//! The profile was valid when this runs, so a refusal here is kiln's bug, never the user's: the pipeline
//! turns it into `Failure::InvalidOutput`. A key the schema marks `deprecated: true` is refused too:
//! cloud-init 25.1 validates strictly in `cloud-init schema` and logs a deprecation on every boot for it
//! (`cloudinit/config/schema.py`: `validate_cloudconfig_schema(strict=True)` raises on deprecations).
//! Each schema is compiled once per process, when a release first needs it.

use std::fmt;
use std::sync::OnceLock;

use jsonschema::error::ValidationErrorKind;
use jsonschema::paths::Location;
use jsonschema::{Draft, Keyword, ValidationError, Validator};
use serde_json::{Map, Value};

use crate::model::Release;

/// A schema file under `assets/cloud-init/` (its source and sha256 are in the README there).
pub struct Schema {
    pub file: &'static str,
    /// The cloud-init version the file comes from: the release table's `cloud_init` (a test holds them equal).
    pub cloud_init: &'static str,
    text: &'static str,
}

/// The schemas kiln embeds, one per distinct file (both Ubuntu LTS releases ship the same file).
const SCHEMAS: [Schema; 3] = [
    Schema {
        file: "schema-cloud-config-v1-22.4.2-debian12.json",
        cloud_init: "22.4.2",
        text: include_str!("../../assets/cloud-init/schema-cloud-config-v1-22.4.2-debian12.json"),
    },
    Schema {
        file: "schema-cloud-config-v1-25.1.4-debian13.json",
        cloud_init: "25.1.4",
        text: include_str!("../../assets/cloud-init/schema-cloud-config-v1-25.1.4-debian13.json"),
    },
    Schema {
        file: "schema-cloud-config-v1-25.1.4-ubuntu.json",
        cloud_init: "25.1.4",
        text: include_str!("../../assets/cloud-init/schema-cloud-config-v1-25.1.4-ubuntu.json"),
    },
];

/// Which schema judges a release's output. Exhaustive on purpose: a new release must choose one.
fn index(release: Release) -> usize {
    match release {
        // Debian patches the schema (`apt.generate_mirrorlists`): each Debian release gets its package's file.
        Release::Debian12 => 0,
        Release::Debian13 => 1,
        // Ubuntu patches only defaults and descriptions (grub_dpkg, mounts), identically for 24.04 and 22.04.
        Release::Ubuntu2404 | Release::Ubuntu2204 => 2,
    }
}

/// The schema a release's cloud-init validates with.
pub fn schema(release: Release) -> &'static Schema {
    &SCHEMAS[index(release)]
}

/// The compiled validator of a release's schema: compiled on first use, then shared by the process.
fn validator(release: Release) -> &'static Validator {
    static COMPILED: [OnceLock<Validator>; SCHEMAS.len()] = [const { OnceLock::new() }; SCHEMAS.len()];
    let i = index(release);
    COMPILED[i].get_or_init(|| compile(&SCHEMAS[i]))
}

fn compile(schema: &Schema) -> Validator {
    // The files are constants checked by the tests (every one compiles): a failure here is a broken build.
    let value: Value = serde_json::from_str(schema.text)
        .unwrap_or_else(|e| panic!("embedded cloud-init schema {} is not JSON: {e}", schema.file));
    jsonschema::options()
        .with_draft(Draft::Draft4)
        .with_keyword("deprecated", deprecated_keyword)
        .build(&value)
        .unwrap_or_else(|e| panic!("embedded cloud-init schema {} does not compile: {e}", schema.file))
}

/// `deprecated: true` on a subschema: any instance that reaches it is refused, with the schema's own
/// `deprecated_version` and `deprecated_description` (as cloud-init words its deprecation warnings).
fn deprecated_keyword<'a>(
    parent: &'a Map<String, Value>,
    value: &'a Value,
    _: Location,
) -> Result<Box<dyn for<'i> Keyword<'i>>, ValidationError<'a>> {
    if value != &Value::Bool(true) {
        return Ok(Box::new(Deprecated(None)));
    }
    let version = parent.get("deprecated_version").and_then(Value::as_str).unwrap_or("devel");
    let mut message = format!("deprecated in cloud-init {version}");
    if let Some(description) = parent.get("deprecated_description").and_then(Value::as_str) {
        message.push_str(": ");
        message.push_str(description);
    }
    Ok(Box::new(Deprecated(Some(message))))
}

/// The `deprecated` keyword: refuses every instance with its message when the subschema is deprecated.
struct Deprecated(Option<String>);

impl<'i> Keyword<'i> for Deprecated {
    fn validate(&self, _: &'i Value) -> Result<(), ValidationError<'i>> {
        match &self.0 {
            Some(message) => Err(ValidationError::custom(message.clone())),
            None => Ok(()),
        }
    }

    fn is_valid(&self, _: &'i Value) -> bool {
        self.0.is_none()
    }
}

/// One thing the schema refuses: where (`$.write_files[2].permissions`) and the schema's message. Values
/// from the user-data are masked: it may hold secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

/// A user-data the release's cloud-init refuses.
#[derive(Debug, thiserror::Error)]
pub struct Rejected {
    pub release: Release,
    /// The stage rendered (`full`, `bake`, `boot`).
    pub stage: &'static str,
    pub problems: Vec<Problem>,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let facts = self.release.facts();
        write!(
            f,
            "kiln rendered {} user-data that {}'s cloud-init {} refuses ({}): this is a bug in kiln, not in the \
             profile; please report it; nothing was written",
            self.stage,
            facts.title,
            facts.cloud_init,
            schema(self.release).file
        )?;
        for problem in &self.problems {
            write!(f, "\n{}: {}", problem.path, problem.message)?;
        }
        Ok(())
    }
}

/// Validates a rendered cloud-config, as the JSON value of what kiln serializes (`serde_json::to_value` of
/// the typed config: the test suite holds it equal to the emitted YAML read back, by serde-saphyr and by
/// PyYAML, for every output), against the release's schema, deprecations included. Returns every problem.
pub fn validate(release: Release, config: &Value, stage: &'static str) -> Result<(), Rejected> {
    let validator = validator(release);
    if validator.is_valid(config) {
        return Ok(());
    }
    let mut problems = Vec::new();
    for error in validator.iter_errors(config) {
        collect(config, &error, &mut problems);
    }
    problems.dedup();
    Err(Rejected { release, stage, problems })
}

/// The problem an error stands for. An `anyOf`/`oneOf` that fails only because the branch that fits is
/// deprecated says so through its nested errors: those deprecations are reported instead of the bare
/// "not valid under any of the schemas".
fn collect(instance: &Value, error: &ValidationError, problems: &mut Vec<Problem>) {
    let mut deprecations = Vec::new();
    nested_deprecations(error, &mut deprecations);
    if deprecations.is_empty() {
        problems
            .push(Problem { path: json_path(instance, error.instance_path()), message: error.masked().to_string() });
    }
    for deprecation in deprecations {
        problems.push(Problem {
            path: json_path(instance, deprecation.instance_path()),
            message: deprecation.masked().to_string(),
        });
    }
}

fn nested_deprecations<'e>(error: &'e ValidationError, out: &mut Vec<&'e ValidationError<'static>>) {
    let context = match error.kind() {
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => context,
        _ => return,
    };
    for nested in context.iter().flatten() {
        match nested.kind() {
            ValidationErrorKind::Custom { keyword, .. } if keyword == "deprecated" => out.push(nested),
            _ => nested_deprecations(nested, out),
        }
    }
}

/// A JSON pointer into `instance` as kiln writes paths in diagnostics: `$.users[0].sudo`. Whether a
/// segment is an index or a key is read from the instance itself (`"0"` may be an object's key).
fn json_path(instance: &Value, location: &Location) -> String {
    let mut path = String::from("$");
    let mut at = Some(instance);
    for segment in location.segments() {
        let name = segment.to_string();
        match at {
            Some(Value::Array(items)) => {
                path.push_str(&format!("[{name}]"));
                at = name.parse::<usize>().ok().and_then(|i| items.get(i));
            }
            _ => {
                let plain = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if plain {
                    path.push('.');
                    path.push_str(&name);
                } else {
                    path.push_str(&format!("[{}]", Value::String(name.clone())));
                }
                at = at.and_then(|v| v.get(&name));
            }
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::release::FACTS;

    fn yaml(text: &str) -> Value {
        serde_saphyr::from_str(text).unwrap()
    }

    #[test]
    fn every_release_has_the_schema_of_its_cloud_init_version_and_each_compiles() {
        for facts in FACTS {
            let schema = schema(facts.release);
            assert_eq!(schema.cloud_init, facts.cloud_init, "{}: {}", facts.name, schema.file);
            assert!(schema.file.contains(facts.cloud_init), "{}", schema.file);
            assert!(validator(facts.release).is_valid(&serde_json::json!({"packages": ["curl"]})));
        }
    }

    #[test]
    fn a_wrong_config_is_refused_with_the_release_version_path_and_message() {
        let text = "#cloud-config\nwrite_files:\n- path: /x\n  permissions: 420\n  content: secret-value\n";
        let rejected = validate(Release::Debian13, &yaml(text), "full").unwrap_err();
        let message = rejected.to_string();
        assert!(message.contains("Debian 13 (trixie)'s cloud-init 25.1.4"), "{message}");
        assert!(message.contains("$.write_files[0].permissions: "), "{message}");
        assert!(message.contains("bug in kiln"), "{message}");
        assert!(!message.contains("secret-value"), "{message}");
    }

    #[test]
    fn a_deprecated_key_is_refused_with_the_schemas_words() {
        // A user's `ssh-authorized-keys` is deprecated since 18.3 in favour of `ssh_authorized_keys`.
        let text = "#cloud-config\nusers:\n- name: deploy\n  ssh-authorized-keys: [ssh-ed25519 AAAA]\n";
        for release in [Release::Debian13, Release::Ubuntu2404] {
            let rejected = validate(release, &yaml(text), "full").unwrap_err();
            let message = rejected.to_string();
            assert!(message.contains("$.users[0]") && message.contains("deprecated in cloud-init"), "{message}");
        }
        validate(Release::Debian13, &yaml(&text.replace("ssh-authorized-keys", "ssh_authorized_keys")), "full")
            .unwrap();
    }

    #[test]
    fn paths_tell_indices_from_keys() {
        let instance = serde_json::json!({"a": [{"0": {"b c": 1}}]});
        let location = Location::new().join("a").join(0).join("0").join("b c");
        assert_eq!(json_path(&instance, &location), "$.a[0].0[\"b c\"]");
    }
}
