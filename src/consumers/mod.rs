//! The rules of the programs that consume what kiln writes, each read from that program's own source
//! or documentation and cited where it is applied. Pure: text in, verdicts out.
//!
//! kiln's promise is that a profile `kiln check` accepts makes a working host *by these programs'
//! rules*, not by kiln's idea of them; the test suite runs the real programs over every output
//! (`tests/kiln/oracles/`) to hold these modules to that.

pub mod cloud_init_schema;
pub mod cloudflared;
pub mod debian;
pub mod openpgp;
pub mod sshd;
pub mod ufw;
pub mod useradd;
