//! kiln: declarative host profiles → validated cloud-init user-data, seeds, golden images and VM tests.
//!
//! ```text
//! profile.yaml ─parse→ RawProfile ─validate→ Model ─lower→ CloudConfig ─emit→ user-data
//!    (spans)       (shape-checked)      │   (typed, pure)       │       (+ gzip / base64 / size check)
//!                                       │                       └─seed→ NoCloud cidata image
//!                                       └─expect→ ExpectedState (what a booted VM must show)
//! Report (errors/warnings, YAML path, file:line:col) accumulates through parse → validate → lower
//! ```
//!
//! Everything outside `effects`, `pipeline`, `commands` and `cli` is pure: strings in, values out.
//! `pipeline` is the one library entry (load → validate → secrets → render → encode → seed); `commands`
//! run it for each subcommand and print; `cli` parses arguments and dispatches.

pub mod catalog;
pub mod cli;
pub mod cloud_config;
pub mod commands;
pub mod consumers;
pub mod diag;
pub mod effects;
pub mod encoding;
pub mod expect;
pub mod explain;
pub mod failure;
pub mod fleet;
pub mod formats;
pub mod init;
pub mod kamal;
pub mod lower;
pub mod model;
pub mod pipeline;
pub mod profile;
pub mod secret_scan;
pub mod secrets;
pub mod seed;
pub mod target;
pub mod templates;
pub mod verify;
