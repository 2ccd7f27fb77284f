//! `kiln init`: writes a starter profile (`crate::init`) with the user's SSH key, never over an existing file.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::cli::InitArgs;
use crate::effects::fs::{write_atomic, write_new_atomic};
use crate::failure::Failure;
use crate::init::{self, Choices, Vpn};

/// Where OpenSSH's `ssh-keygen` puts public keys, in the order `kiln init` takes the first that exists.
const DEFAULT_KEYS: &[&str] = &["id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"];

pub fn init(args: &InitArgs) -> Result<(), Failure> {
    if args.vpn == Vpn::Wireguard && args.wireguard_peer.is_empty() {
        return Err(Failure::Usage(
            "--vpn wireguard needs the public key of each machine that deploys: --wireguard-peer \"$(wg pubkey < private.key)\" (nothing was written)"
                .into(),
        ));
    }
    if args.vpn != Vpn::Wireguard && !args.wireguard_peer.is_empty() {
        return Err(Failure::Usage("--wireguard-peer goes with --vpn wireguard (nothing was written)".into()));
    }
    if !args.force && args.path.symlink_metadata().is_ok() {
        return Err(Failure::io(anyhow::anyhow!(
            "{} exists; kiln init never writes over a file (--force replaces it)",
            args.path.display()
        )));
    }
    let ssh_keys = ssh_keys(args)?;
    let choices = Choices {
        os: args.os.clone(),
        hostname: args.hostname.clone(),
        vpn: args.vpn,
        tunnel: args.tunnel,
        ssh_keys,
        wireguard_peers: args.wireguard_peer.clone(),
    };
    let text = init::profile(&choices);
    // With --force the file is replaced; otherwise it is linked into place, which fails if it appeared
    // since the check above: a file is never replaced without --force.
    let written = if args.force {
        write_atomic(&args.path, text.as_bytes(), 0o644)
    } else {
        write_new_atomic(&args.path, text.as_bytes(), 0o644)
    };
    written.map_err(Failure::io)?;
    eprintln!("wrote {}", args.path.display());
    if choices.ssh_keys.is_empty() {
        return Err(Failure::Incomplete(format!(
            "{} has no SSH key: no --ssh-key given and none of ~/.ssh/{} exists. A host without a key is a lockout (`kiln explain lockout`): add your public key under `user.ssh_keys`",
            args.path.display(),
            DEFAULT_KEYS.join(", ~/.ssh/")
        )));
    }
    eprintln!("next: kiln check --strict {}", args.path.display());
    Ok(())
}

/// The key lines to put in the profile, each with where it came from: the `--ssh-key` files, else the first
/// of the user's default keys that exists (said on stderr), else none.
fn ssh_keys(args: &InitArgs) -> Result<Vec<(String, String)>, Failure> {
    let files: Vec<PathBuf> = if args.ssh_key.is_empty() {
        let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
        let found =
            home.iter().flat_map(|h| DEFAULT_KEYS.iter().map(move |k| h.join(".ssh").join(k))).find(|p| p.is_file());
        if let Some(path) = &found {
            eprintln!("kiln init: using your SSH key {}", path.display());
        }
        found.into_iter().collect()
    } else {
        args.ssh_key.clone()
    };
    let mut keys = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading the SSH public key {}", file.display()))
            .map_err(Failure::io)?;
        let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
        if lines.is_empty() {
            return Err(Failure::Usage(format!("{} holds no SSH public key (nothing was written)", file.display())));
        }
        // A private key given by mistake must never be copied into a profile.
        if text.contains("PRIVATE KEY") {
            return Err(Failure::Usage(format!(
                "{} is a private key: give the .pub file beside it (nothing was written)",
                file.display()
            )));
        }
        keys.extend(lines.into_iter().map(|l| (l.to_string(), format!("from {}", file.display()))));
    }
    Ok(keys)
}
