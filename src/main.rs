//! The `kiln` binary: parses arguments, runs the command, prints a failure once with its exit code.

use std::process::ExitCode;

use clap::Parser;
use kiln::cli::{Cli, run};

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            for line in failure.lines() {
                eprintln!("error: {line}");
            }
            ExitCode::from(failure.exit_code())
        }
    }
}
