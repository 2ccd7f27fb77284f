//! kiln's integration tests: one binary, one module per concern.

mod cli;
mod cloudflared_regexp;
mod facts;
mod generated;
mod golden;
mod keys;
mod mirror;
mod oracle;
mod oracles;
mod properties;
mod release_facts;
mod support;
mod workflow;
