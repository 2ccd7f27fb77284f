//! What a scenario adds to the product's test run (`kiln::effects::vm::harness::Extension`): the
//! WireGuard peer (the product's `kiln::effects::vm::tunnel`, as `kiln test` joins a tunnel, plus
//! ssh-audit and the layer-2 neighbour's checks), test servers and containers (`scaffolding.rs`), tamperings
//! (`tamper.rs`), a golden image baked first with its proofs (`golden.rs`), a base image carrying the
//! sshd override trap (`trap.rs`), and automatic updates published and installed (`updates.rs`). Each part is there or
//! not, as the scenario says; a scenario with none of them runs exactly as `kiln test` does.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use kiln::effects::vm::harness::{BeforeBoot, Extension, Finished, Image, Network, PortProbe};
use kiln::effects::vm::qemu::Instance;
use kiln::effects::vm::qga::Agent;
use kiln::effects::vm::tunnel::{JoinTunnel, TunnelPeer};
use kiln::lower::Stage;
use kiln::model::Model;
use kiln::verify::Check;
use kiln::verify::report::Verdict;

use crate::deploy::Deploy;
use crate::golden;
use crate::lynis;
use crate::scaffolding::{self, Scaffolding};
use crate::tamper::{self, Tamper};
use crate::trap;
use crate::updates::{Origins, UpdateProof};

pub struct ScenarioExtension {
    /// Join the profile's WireGuard tunnel as its first peer, from a network namespace on a second guest
    /// NIC, and check SSH through the tunnel and silence outside it.
    pub wireguard_peer: bool,
    pub scaffolding: Scaffolding,
    /// Changes made to the guest at the end, each of which a named check must then report as failed.
    pub tamper: Vec<Tamper>,
    /// Bake a golden image from the scenario's base image first, boot an instance of it, and prove what
    /// golden images promise after its rounds.
    pub bake_first: bool,
    /// Boot a copy of the base image carrying Ubuntu's `50-cloud-init.conf` (passwords and root login on),
    /// and check from outside that sshd offers public keys only.
    pub sshd_trap: bool,
    /// The profile's deploy user, once `prepare` saw the model.
    deploy_user: String,
    /// ssh-audit's warnings kiln accepts for the profile, once `prepare` saw the model.
    audit_accepted: Vec<kiln::expect::AuditWarning>,
    /// The scenario's run directory, once `prepare` saw it.
    run_dir: PathBuf,
    /// The tunnel `kiln test` joins, once `prepare` joined it.
    tunnel: Option<JoinTunnel>,
    /// The golden image, once baked.
    golden: Option<PathBuf>,
    /// Publish updates into the mirror after the rounds and prove the guest installs them by itself.
    pub updates: Option<UpdateProof>,
    /// Audit the guest with lynis at the end (a figure, not a gate).
    pub lynis: bool,
    /// A Kamal 2-shaped deploy through the tunnel after the rounds, before any tampering.
    pub deploy: bool,
    /// The deploy, once `prepare` found where `kiln kamal` deploys to.
    deployment: Option<Deploy>,
    /// unattended-upgrade's origins as the guest got them, once `image` saw the mirrored model.
    origins: Origins,
}

impl ScenarioExtension {
    pub fn new(
        wireguard_peer: bool,
        scaffolding: Scaffolding,
        tamper: Vec<Tamper>,
        bake_first: bool,
        sshd_trap: bool,
    ) -> Self {
        ScenarioExtension {
            wireguard_peer,
            scaffolding,
            tamper,
            bake_first,
            sshd_trap,
            deploy_user: String::new(),
            audit_accepted: Vec::new(),
            run_dir: PathBuf::new(),
            tunnel: None,
            golden: None,
            updates: None,
            lynis: false,
            deploy: false,
            deployment: None,
            origins: Origins::default(),
        }
    }

    /// The trap's checks from outside, through the forwarded SSH port (none without the trap): the login
    /// methods sshd offers, then ssh-audit's verdict (`label` names its report).
    fn trap_checks(&self, instance: &Instance, user: &str, label: &str) -> Result<Vec<Check>> {
        if !self.sshd_trap {
            return Ok(Vec::new());
        }
        let port = instance
            .forwarded_port(kiln::model::SSH_PORT)
            .context("the trap scenario's profile must let SSH in from outside (the checks reach it there)")?;
        let mut checks = trap::checks(port, &[user, "root"])?;
        let report = self.run_dir.join(format!("ssh-audit-{label}.json"));
        checks.push(crate::audit::check(&[], "127.0.0.1", port, &self.audit_accepted, &report)?);
        Ok(checks)
    }

    fn peer(&self) -> Option<&TunnelPeer> {
        self.tunnel.as_ref().and_then(JoinTunnel::peer)
    }

    /// The peer's checks besides `kiln test`'s: ssh-audit through the tunnel (`label` names its report) and
    /// the layer-2 neighbour's, once the tunnel could be tried.
    fn peer_checks(&self, agent: &mut Agent, label: &str) -> Result<Vec<Check>> {
        let Some(peer) = self.peer().filter(|p| p.knows_guest_key()) else { return Ok(Vec::new()) };
        let report = self.run_dir.join(format!("ssh-audit-{}.json", label.replace(' ', "-")));
        let tunnel = peer.guest_tunnel_address().to_string();
        let mut checks =
            vec![crate::audit::check(&peer.runner(), &tunnel, kiln::model::SSH_PORT, &self.audit_accepted, &report)?];
        checks.extend(peer.neighbour_checks(agent, &self.container_ports())?);
        Ok(checks)
    }

    /// The test containers, each with the port its server listens on inside.
    fn container_ports(&self) -> Vec<(String, u16)> {
        self.scaffolding.containers.iter().map(|c| (c.name.clone(), c.container_port())).collect()
    }

    /// Changes the guest on purpose, runs the product's checks and the peer's again, and reports whether
    /// each change made its check fail.
    /// The tamperings of the second round are applied after the first round's checks, on top of them.
    fn tampered(&self, finished: &mut Finished) -> Result<Vec<Check>> {
        let mut verdicts = Vec::new();
        for (second, label) in [(false, "tampered"), (true, "tampered again")] {
            let these: Vec<Tamper> = self.tamper.iter().filter(|t| t.second_round == second).cloned().collect();
            if these.is_empty() {
                continue;
            }
            finished.progress.say(&format!("breaking the guest on purpose ({label})"));
            tamper::apply(&mut finished.agent, &these)?;
            let mut after = finished.rounds.recheck(&mut finished.agent, label)?;
            if let Some(peer) = self.peer() {
                after.extend(peer.checks(&mut finished.agent, None, label)?);
            }
            after.extend(self.peer_checks(&mut finished.agent, label)?);
            after.extend(self.trap_checks(finished.instance, &self.deploy_user, label)?);
            verdicts.extend(tamper::verdicts(&these, &after));
        }
        Ok(verdicts)
    }
}

impl Extension for ScenarioExtension {
    /// The peer takes the place of the profile's first WireGuard peer before the expected state is
    /// derived, so it is expected exactly as a declared peer.
    fn prepare(&mut self, run_dir: &Path, model: &mut Model) -> Result<()> {
        self.deploy_user = model.user.name.clone();
        let facts = kiln::lower::facts(model);
        self.audit_accepted = facts.ssh_audit_accepted.iter().map(kiln::expect::AuditWarning::from).collect();
        self.run_dir = run_dir.to_path_buf();
        if self.wireguard_peer {
            let mut tunnel = JoinTunnel::default();
            tunnel.prepare(run_dir, model)?;
            self.tunnel = Some(tunnel);
        }
        if self.deploy {
            // Where `kiln kamal` tells Kamal to deploy: the deploy goes there, and nowhere else.
            let config = kiln::kamal::config(model).context("the deploy scenario's profile must suit `kiln kamal`")?;
            let host = config.hosts.first().context("`kiln kamal` named no server")?.address.clone();
            self.deployment = Some(Deploy::new(host, run_dir));
        }
        Ok(())
    }

    fn mirror_packages(&self) -> Vec<String> {
        if self.lynis { vec![lynis::PACKAGE.into()] } else { Vec::new() }
    }

    /// Every scenario's mirror carries the test container's image (only scaffolded ones fetch it).
    fn mirror_data(&self, mirror_root: &Path) -> Result<()> {
        scaffolding::add_test_data(mirror_root)
    }

    fn image(&mut self, before: BeforeBoot<'_>) -> Result<Image> {
        if self.updates.is_some() {
            self.origins = Origins::of(before.model)?;
        }
        if self.sshd_trap {
            before.progress.say("putting the sshd override trap into a copy of the base image");
            let path = trap::image(&before.scenario.image, &before.scenario.run_dir)?;
            return Ok(Image::Other { path, stage: Stage::Full });
        }
        if !self.bake_first {
            return Ok(Image::Scenario);
        }
        let (image, golden) = golden::bake_first(before)?;
        self.golden = golden;
        Ok(image)
    }

    fn network(&self) -> Option<Network> {
        self.tunnel.as_ref().and_then(JoinTunnel::network)
    }

    fn outside_probes(&self) -> Vec<PortProbe> {
        self.scaffolding.probes()
    }

    /// The guest's generated WireGuard key joins the values the secret scan looks for.
    fn guest_secrets(&mut self, agent: &mut Agent) -> Result<Vec<String>> {
        match &mut self.tunnel {
            Some(tunnel) => tunnel.guest_secrets(agent),
            None => Ok(Vec::new()),
        }
    }

    fn sets_up_guest(&self) -> bool {
        !self.scaffolding.is_empty()
    }

    fn set_up_guest(&mut self, agent: &mut Agent) -> Result<Vec<Check>> {
        self.scaffolding.start(agent)
    }

    /// Through the tunnel and from the public network as `kiln test` does (a peer with an unknown key
    /// too), then ssh-audit and the neighbour's checks.
    fn round(&mut self, agent: &mut Agent, instance: &Instance, label: &str) -> Result<Vec<Check>> {
        let mut checks = match &mut self.tunnel {
            Some(tunnel) => tunnel.round(agent, instance, label)?,
            None => Vec::new(),
        };
        checks.extend(self.peer_checks(agent, label)?);
        checks.extend(self.trap_checks(instance, &self.deploy_user, label)?);
        Ok(checks)
    }

    fn after_rounds(&mut self, mut finished: Finished<'_>, verdict: &mut Verdict) -> Result<()> {
        if let Some(proof) = &self.updates {
            finished.progress.say("publishing updates; running apt's daily services (control, then proof)");
            let mirror = finished.mirror.context("the update proof needs the package mirror")?;
            let started = std::time::Instant::now();
            verdict.phases.extend(proof.run(&mut finished.agent, mirror, &self.origins, &self.run_dir)?);
            verdict
                .timings
                .push(("automatic updates: publish, control run, proof run".into(), started.elapsed().as_secs_f64()));
        }
        if self.lynis {
            finished.progress.say("installing lynis and auditing the host");
            let (_, checks) = lynis::audit(&mut finished.agent, &self.run_dir, "seed host")?;
            verdict.phases.push((lynis::PHASE.into(), checks));
        }
        if let Some(deployment) = &self.deployment {
            let peer =
                self.peer().context("the deploy goes through the tunnel: the scenario needs the WireGuard peer")?;
            finished.progress.say("deploying as Kamal 2 does, through the tunnel (v1, v2, then the control)");
            let checks = deployment.run(peer, &mut finished.agent, &mut verdict.timings)?;
            verdict.phases.push((crate::deploy::PHASE.into(), checks));
        }
        if !self.tamper.is_empty() {
            let detected = self.tampered(&mut finished)?;
            verdict.phases.push((tamper::PHASE.into(), detected));
        }
        verdict.timings.extend(self.peer().iter().flat_map(|p| p.timings()));
        let Some(image) = &self.golden else { return Ok(()) };
        finished.progress.say("scanning disks for secrets; booting a second instance of the golden image");
        let Finished { agent, instance, config, scenario, secret_values, .. } = finished;
        let timeout = scenario.boot_timeout;
        let proofs =
            golden::instance_proofs(agent, instance, config, image, secret_values, timeout, &mut verdict.timings)?;
        verdict.phases.push(("golden image: secrets and per-instance identity".into(), proofs));
        Ok(())
    }
}
