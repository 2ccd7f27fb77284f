//! The `kiln` binary: parses arguments, runs the command, maps the outcome to an exit code.
fn main() {}
