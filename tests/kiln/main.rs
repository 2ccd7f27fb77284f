//! kiln's integration tests: one binary, one module per concern.

mod cli;
mod cloudflared_regexp;
mod completions;
mod explain;
mod facts;
mod generated;
mod golden;
mod init;
mod kamal;
mod keys;
mod layering;
mod mirror;
mod oracle;
mod oracles;
mod properties;
mod provenance;
mod release_facts;
mod sarif;
mod support;
mod workflow;
