//! Child processes bound to kiln: each one kiln starts (QEMU, qemu-img, wireguard-go) dies with it.

use std::os::unix::process::CommandExt as _;
use std::process::Command;

/// The child gets SIGKILL when kiln dies, however it dies (Ctrl-C, `kill -9`, a panic), so no QEMU
/// or daemon outlives the run that started it.
pub fn die_with_parent(command: &mut Command) -> &mut Command {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
}
