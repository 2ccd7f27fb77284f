//! Effects at the edge: file system, secrets lookup, seed images, processes. The only impure modules.

pub mod seed_image;
