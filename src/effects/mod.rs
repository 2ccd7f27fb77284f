//! Effects at the edge: file system, secrets lookup, seed images, processes. The only impure modules.

pub mod apt_state;
pub mod cache;
pub mod fs;
pub mod image;
pub mod interrupt;
pub mod mirror;
pub mod partitions;
pub mod process;
pub mod profile_dir;
pub mod secret_source;
pub mod seed_image;
pub mod vm;
