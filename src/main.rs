//! The `kiln` binary: parses arguments, runs the command, maps the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;
use kiln::cli::{Cli, exit, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit::IO)
        }
    }
}
