//! Booting profiles in QEMU and looking at the result: the instance, the guest agent, the harness.

pub mod bake;
pub mod boot;
pub mod golden;
pub mod harness;
pub mod peer;
pub mod progress;
pub mod qemu;
pub mod qga;
pub mod wait;
