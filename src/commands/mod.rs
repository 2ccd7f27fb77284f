//! What each subcommand does: runs the `pipeline`, prints reports and progress on stderr and the product
//! on stdout, and returns a `Failure` for `main` to print. `cli` only parses and dispatches here.

pub mod completions;
pub mod explain;
pub mod init;
pub mod man;
pub mod output;
pub mod vm;

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::diag;
use crate::effects::fs::refuse_input_as_output;
use crate::failure::Failure;
use crate::pipeline::{self, Loaded};

/// Prints a profile's diagnostics as `kiln check` does (rustc-style, on stderr).
fn print_diagnostics(loaded: &Loaded) {
    if !loaded.report.diagnostics.is_empty() {
        eprint!("{}", diag::render_human(&loaded.report, &loaded.display_path, &loaded.source));
    }
}

/// Loads a profile and prints its diagnostics; the command then picks its hosts.
fn load_printed(path: &Path) -> Result<Loaded, Failure> {
    let loaded = pipeline::load(path)?;
    print_diagnostics(&loaded);
    Ok(loaded)
}

/// Refuses an output path that is one of the command's inputs (the command line is wrong).
fn output_is_not_an_input(output: &Path, inputs: &[PathBuf]) -> Result<(), Failure> {
    refuse_input_as_output(output, inputs).map_err(|why| Failure::Usage(format!("{why}; nothing was written")))
}

/// Writes the product to stdout, flushed.
fn to_stdout(bytes: &[u8]) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|_| stdout.flush())
        .map_err(|e| Failure::io(anyhow::anyhow!("writing to stdout: {e}")))
}
