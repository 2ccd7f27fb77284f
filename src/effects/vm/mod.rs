//! Booting profiles in QEMU and looking at the result, for `kiln bake` and `kiln test`: the instance,
//! the guest agent, booting to the end of cloud-init, baking golden images, the test harness, and the
//! WireGuard peer that joins a profile's tunnel. What only the CI scenarios do (test servers and
//! containers, tamperings, golden-image proofs, a deploy) lives in the `vm-tests` crate and reaches the
//! harness through `harness::Extension`.

pub mod accel;
pub mod bake;
pub mod boot;
pub mod chroot_install;
pub mod harness;
pub mod progress;
pub mod qemu;
pub mod qga;
pub mod tunnel;
pub mod wait;
