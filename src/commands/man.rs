//! `kiln man [DIR]`: writes kiln's man pages, one per command (`kiln.1`, `kiln-check.1`, …,
//! `kiln-image-build.1`), generated from the command line's own definition (`clap_mangen`): each written
//! atomically with mode 0644, and all rendered before any is written.

use std::path::Path;

use anyhow::Context as _;
use clap::CommandFactory as _;

use crate::cli::{Cli, ManArgs};
use crate::effects::fs::write_atomic;
use crate::effects::profile_dir::describe_io;
use crate::failure::Failure;

/// Every page: its file name and its roff text, the top-level command first.
pub fn pages() -> Result<Vec<(String, Vec<u8>)>, Failure> {
    // As `clap_mangen::generate_to` does: no page for clap's `help` subcommand, and the command built so that
    // each subcommand knows its full name (`kiln-image-build`).
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    let mut pages = Vec::new();
    collect(command, &mut pages)?;
    Ok(pages)
}

fn collect(command: clap::Command, pages: &mut Vec<(String, Vec<u8>)>) -> Result<(), Failure> {
    let subcommands: Vec<clap::Command> = command.get_subcommands().filter(|c| !c.is_hide_set()).cloned().collect();
    let page = clap_mangen::Man::new(command);
    let mut text = Vec::new();
    page.render(&mut text).with_context(|| format!("rendering {}", page.get_filename())).map_err(Failure::io)?;
    let text = String::from_utf8(text).context("clap_mangen wrote a page that is not UTF-8").map_err(Failure::io)?;
    pages.push((page.get_filename(), ascii(&text).into_bytes()));
    for subcommand in subcommands {
        collect(subcommand, pages)?;
    }
    Ok(())
}

/// The page with every character beyond ASCII written as groff's `\[uXXXX]` escape: troff reads its input as
/// Latin-1 unless told otherwise (`preconv`, which `man` runs but plain `groff` does not), so the UTF-8 of the
/// help texts' `→` and `…` would be invalid input characters.
fn ascii(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii() { c.to_string() } else { format!("\\[u{:04X}]", u32::from(c)) }).collect()
}

pub fn man(args: &ManArgs) -> Result<(), Failure> {
    let pages = pages()?;
    create_dir(&args.dir)?;
    for (name, text) in &pages {
        let path = args.dir.join(name);
        // Man pages are for every user to read.
        write_atomic(&path, text, 0o644).map_err(Failure::io)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn create_dir(dir: &Path) -> Result<(), Failure> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Failure::io(anyhow::anyhow!("creating {}: {}", dir.display(), describe_io(&e))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_ascii_with_groff_escapes() {
        assert_eq!(ascii("a → b …"), "a \\[u2192] b \\[u2026]");
        let pages = pages().unwrap();
        assert_eq!(pages[0].0, "kiln.1");
        assert!(pages.iter().any(|(name, _)| name == "kiln-image-build.1"));
        assert!(pages.iter().all(|(_, text)| text.is_ascii()));
    }
}
