//! The provisioning script: one fail-fast bash script, the only runcmd entry (DESIGN.md §4).

use serde::Serialize;

use super::SECRETS_DIR;
use super::apt::{NO_RECOMMENDS_PATH, UNSAFE_IO_PATH};
use crate::cloud_config::WriteFile;
use crate::model::Model;
use crate::templates;

pub const PROVISION_PATH: &str = "/usr/local/lib/kiln/provision";

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

pub(super) fn provision_file(model: &Model, component_steps: &[Step]) -> WriteFile {
    let mut steps = vec![Step::new(
        "prepare",
        vec![cmd(&["install", "-d", "-m", "0700", "-o", "root", "-g", "root", SECRETS_DIR])],
    )];
    steps.extend_from_slice(component_steps);
    steps.push(Step::new("finish", vec![cmd(&["rm", "-f", UNSAFE_IO_PATH, NO_RECOMMENDS_PATH])]));
    let body = templates::render(
        templates::PROVISION_SCRIPT,
        minijinja::context! { version => env!("CARGO_PKG_VERSION"), hostname => &model.host.hostname, steps => steps },
    );
    WriteFile::new(PROVISION_PATH, 0o700, body)
}
