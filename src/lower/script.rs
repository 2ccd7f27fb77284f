//! The provisioning script: one fail-fast bash script, the only runcmd entry (docs/design.md §4.1).

use serde::Serialize;

use super::apt::{NO_RECOMMENDS_PATH, UNSAFE_IO_PATH};
use super::{SECRETS_DIR, Stage};
use crate::cloud_config::WriteFile;
use crate::model::Model;
use crate::templates;

pub const PROVISION_PATH: &str = "/usr/local/lib/kiln/provision";

/// Each stage has its own script, so a golden image keeps the bake script for inspection and an
/// instance's boot script never overwrites it.
pub fn provision_path(stage: Stage) -> String {
    match stage {
        Stage::Full => PROVISION_PATH.to_string(),
        Stage::Bake | Stage::Boot => format!("{PROVISION_PATH}-{}", stage.name()),
    }
}

/// A named group of commands; its name is printed before it runs and named if it fails.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub name: String,
    pub commands: Vec<Vec<String>>,
}

impl Step {
    pub fn new(name: &str, commands: Vec<Vec<String>>) -> Self {
        Step { name: name.to_string(), commands }
    }
}

pub fn cmd(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

pub(super) fn provision_file(model: &Model, component_steps: &[Step], stage: Stage) -> WriteFile {
    let mut steps = vec![Step::new(
        "prepare",
        vec![cmd(&["install", "-d", "-m", "0700", "-o", "root", "-g", "root", SECRETS_DIR])],
    )];
    steps.extend_from_slice(component_steps);
    if stage != Stage::Boot {
        // The first-boot speed-ups are written by the stage that installs packages.
        steps.push(Step::new("finish", vec![cmd(&["rm", "-f", UNSAFE_IO_PATH, NO_RECOMMENDS_PATH])]));
    }
    // Host names are RFC 1123 (validated), so they are safe in this comment line as they are.
    let purpose = match stage {
        Stage::Full => format!("first-boot provisioning of {}", model.host.hostname),
        Stage::Bake => "golden-image provisioning (bake stage; the same for every host)".to_string(),
        Stage::Boot => format!("per-instance provisioning of {} from a golden image (boot stage)", model.host.hostname),
    };
    let failure_note = match stage {
        Stage::Full | Stage::Bake => "the firewall is enabled last, so a failure never locks the host out.",
        Stage::Boot => "the firewall was baked into the image and is already on.",
    };
    let body = templates::render(
        templates::PROVISION_SCRIPT,
        minijinja::context! {
            version => env!("CARGO_PKG_VERSION"),
            // Fixed text chosen above, not data: exempt from the shell quoting applied to values.
            purpose => minijinja::Value::from_safe_string(purpose),
            failure_note => minijinja::Value::from_safe_string(failure_note.to_string()),
            steps => steps,
        },
    );
    WriteFile::new(provision_path(stage), 0o700, body)
}
