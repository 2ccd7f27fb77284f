//! Where kiln keeps downloads and built images between runs, decided in one place.

use std::path::PathBuf;

/// `$KILN_CACHE_DIR`, else `$XDG_CACHE_HOME/kiln`, else `~/.cache/kiln`, else `/var/tmp/kiln-cache`
/// (kept across reboots, unlike `/tmp`). An empty variable counts as unset, as the XDG base directory
/// specification says.
pub fn dir() -> PathBuf {
    let env = |name| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    env("KILN_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("kiln")))
        .or_else(|| env("HOME").map(|d| d.join(".cache/kiln")))
        .unwrap_or_else(|| PathBuf::from("/var/tmp/kiln-cache"))
}
