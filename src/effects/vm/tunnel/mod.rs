//! Joining the profile's WireGuard tunnel as its first peer, the way the machine that deploys does:
//! `kiln test` on a WireGuard profile runs through here, and so does the CI's `wireguard` scenario,
//! which adds its own checks on top (`vm-tests`).
//!
//! The harness replaces the key of the profile's first peer with one it generates (the real peer's
//! private key is on the user's laptop or CI runner, never given to kiln) and takes that peer's first
//! allowed address as its own; its SSH key joins the deploy user's. The expected state is derived after
//! that, so the harness is expected exactly as the declared peer would be.

pub mod peer;

use std::path::Path;

use anyhow::Result;

use crate::effects::process::root_and_programs;

pub use self::peer::TunnelPeer;
use super::harness::{Extension, Finished, Network};
use super::qemu::Instance;
use super::qga::Agent;
use crate::model::Model;
use crate::verify::Check;
use crate::verify::report::Verdict;

/// What the peer runs on this machine, each with the Debian package that has it.
pub const PROGRAMS: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("wireguard-go", "wireguard-go"),
    ("wg", "wireguard-tools"),
    ("ssh", "openssh-client"),
    ("ssh-keygen", "openssh-client"),
    ("python3", "python3"),
    ("timeout", "coreutils"),
    ("bash", "bash"),
];

/// Whether a run of this model joins its tunnel: it has WireGuard with a peer to stand in for.
pub fn wanted(model: &Model) -> bool {
    model.wireguard.as_ref().is_some_and(|w| !w.peers.is_empty())
}

/// What keeps this machine from joining, if anything: the peer's network namespace and the guest's tap
/// device need root, and every program in `PROGRAMS` must be on PATH.
pub fn cannot_join() -> Option<String> {
    root_and_programs("a network namespace and a tap device for the guest", PROGRAMS)
}

/// The harness as the profile's first WireGuard peer: SSH through the tunnel, Kamal's `ssh -R`, which
/// ports answer through the tunnel and on the public address, and a peer with an unknown key refused.
#[derive(Default)]
pub struct JoinTunnel {
    peer: Option<TunnelPeer>,
}

impl JoinTunnel {
    /// The peer, once `prepare` made it.
    pub fn peer(&self) -> Option<&TunnelPeer> {
        self.peer.as_ref()
    }
}

impl Extension for JoinTunnel {
    fn prepare(&mut self, run_dir: &Path, model: &mut Model) -> Result<()> {
        self.peer = Some(TunnelPeer::create(run_dir, model)?);
        Ok(())
    }

    fn network(&self) -> Option<Network> {
        self.peer.as_ref().map(TunnelPeer::network)
    }

    /// The guest's generated WireGuard key joins the values the secret scan looks for.
    fn guest_secrets(&mut self, agent: &mut Agent) -> Result<Vec<String>> {
        match &self.peer {
            Some(peer) => peer.guest_secrets(agent),
            None => Ok(Vec::new()),
        }
    }

    /// Through the tunnel and from the public network, then a peer with an unknown key (once the guest's
    /// key is known: without it, there is no tunnel to be refused from).
    fn round(&mut self, agent: &mut Agent, instance: &Instance, label: &str) -> Result<Vec<Check>> {
        let Some(peer) = &self.peer else { return Ok(Vec::new()) };
        let mut checks = peer.checks(agent, Some(&instance.console_text()), label)?;
        if peer.knows_guest_key() {
            checks.extend(peer.unknown_key_checks()?);
        }
        Ok(checks)
    }

    fn after_rounds(&mut self, _finished: Finished<'_>, verdict: &mut Verdict) -> Result<()> {
        verdict.timings.extend(self.peer.iter().flat_map(TunnelPeer::timings));
        Ok(())
    }
}
