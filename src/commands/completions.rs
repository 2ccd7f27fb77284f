//! `kiln completions SHELL`: prints a shell completion script, generated from the command line's own definition
//! (`clap_complete`), so it knows every subcommand and flag kiln has.

use clap::CommandFactory as _;
use clap_complete::Shell;

use super::to_stdout;
use crate::cli::{Cli, CompletionsArgs};
use crate::failure::Failure;

/// The completion script for `shell`, completing the program `kiln`.
pub fn script(shell: Shell) -> Vec<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "kiln", &mut script);
    script
}

pub fn completions(args: &CompletionsArgs) -> Result<(), Failure> {
    to_stdout(&script(args.shell))
}
