//! Ctrl-C and `kill` during a long job: remove what the job registered (partial outputs, its work
//! directory) and exit. QEMU and qemu-img die with kiln through PR_SET_PDEATHSIG.
//!
//! SIGINT and SIGTERM are blocked in every thread and taken by one thread with `sigwait`, so the cleanup
//! runs as ordinary code rather than inside a signal handler. `install` must run before any other thread
//! is started (a thread started earlier would keep the default action and die without cleaning up).
//! Children do not inherit the blocked mask: the standard library resets it before `exec`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

static REGISTERED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Starts the thread that waits for SIGINT/SIGTERM. Safe to call more than once.
pub fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: plain libc calls on a local, zero-initialized sigset_t.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        unsafe {
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        }
        std::thread::spawn(move || {
            let mut signal: libc::c_int = 0;
            // SAFETY: `set` is initialized above and outlives the call.
            if unsafe { libc::sigwait(&set, &mut signal) } != 0 {
                return;
            }
            let name = if signal == libc::SIGINT { "SIGINT" } else { "SIGTERM" };
            let paths = std::mem::take(&mut *REGISTERED.lock().unwrap_or_else(|p| p.into_inner()));
            for path in paths.iter().rev() {
                let removed = if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
                if removed.is_ok() {
                    eprintln!("kiln: interrupted ({name}): removed {}", path.display());
                }
            }
            // 128 + signal number, as shells report it.
            std::process::exit(128 + signal);
        });
    });
}

/// Removes `path` (a file or a directory tree) if kiln is interrupted before `forget` is called.
pub fn remove_on_interrupt(path: &Path) {
    REGISTERED.lock().unwrap_or_else(|p| p.into_inner()).push(path.to_path_buf());
}

/// The job is past the point where `path` must go: it was renamed into place, or is kept on purpose.
pub fn forget(path: &Path) {
    REGISTERED.lock().unwrap_or_else(|p| p.into_inner()).retain(|p| p != path);
}
