//! `kiln check`'s reports for machines other than a person: GitHub Actions annotations and SARIF 2.1.0 for
//! code scanning. Both are made from the same diagnostics as the human and JSON reports, and like the JSON
//! report they never carry source text (a literal secret is only ever shown masked, in the human snippet).

pub mod github;
pub mod sarif;
