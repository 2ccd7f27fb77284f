//! `kiln explain [CODE]`: prints a diagnostic code's explanation, or every code with its summary, as
//! `crate::explain` writes them.

use super::to_stdout;
use crate::cli::ExplainArgs;
use crate::explain;
use crate::failure::Failure;

pub fn explain(args: &ExplainArgs) -> Result<(), Failure> {
    let text = match &args.code {
        None => explain::list(),
        // An unknown code is a wrong command line (exit 2), with the nearest code.
        Some(name) => explain::render(explain::lookup(name).map_err(Failure::Usage)?),
    };
    to_stdout(text.as_bytes())
}
