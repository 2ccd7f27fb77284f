//! The commands that boot VMs: `bake`, `test`, `image build`. Each validates what it was given (the
//! profile: exit 1; the image: exit 3) before it creates anything or starts QEMU.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::{load_printed, output_is_not_an_input};
use crate::cli::{BakeArgs, ImageBuildArgs, TestArgs, TestFormat};
use crate::effects::fs::{remove_if_present, write_atomic};
use crate::effects::vm::bake::{self, BakeError, BakeRequest, BaseImage, Outcome};
use crate::effects::vm::{accel, chroot_install, harness, qemu, tunnel};
use crate::effects::{image, interrupt};
use crate::failure::Failure;
use crate::lower::Stage;
use crate::model::{Model, Release};
use crate::pipeline;
use crate::pipeline::Loaded;
use crate::verify::report;

impl From<BakeError> for Failure {
    fn from(error: BakeError) -> Failure {
        match error {
            BakeError::Base { .. } => Failure::io(error),
            BakeError::Provisioning { .. } | BakeError::Packages(_) => Failure::Provisioning(error.to_string()),
            BakeError::Harness(e) => Failure::Harness(e),
        }
    }
}

/// The model a golden image is baked from: the profile's one host, or any host of a fleet, since the bake
/// stage names no host. A fleet whose hosts' bake stages differ (a baked file using a per-host variable)
/// cannot share one image: refused, naming the hosts.
fn role_model(loaded: &Loaded) -> Result<crate::model::Model, Failure> {
    let members = loaded.validated_all(false)?;
    let mut baked = Vec::new();
    for member in &members {
        // The bake stage carries no secret: placeholders, as `kiln render --stage bake` uses.
        let secrets = pipeline::resolve_secrets(&member.model, loaded.dir()?, true)?;
        baked.push(pipeline::user_data(&member.model, &secrets, Stage::Bake)?);
    }
    if let Some(i) = baked.iter().position(|text| *text != baked[0]) {
        return Err(Failure::Usage(format!(
            "hosts `{}` and `{}` of {} would bake different images (a baked file uses a per-host variable?): a golden image is one per role; nothing was written",
            members[0].hostname, members[i].hostname, loaded.display_path
        )));
    }
    Ok(members.into_iter().next().map(|m| m.model).expect("validated_all gives at least one host"))
}

pub fn bake(args: &BakeArgs) -> Result<(), Failure> {
    let started = Instant::now();
    // Before any thread exists: Ctrl-C and `kill` then remove the partial output and the work directory.
    interrupt::install();
    accel::env_choice().map_err(Failure::Usage)?;
    let loaded = load_printed(&args.profile)?;
    let model = role_model(&loaded)?;
    // Kiln's own output checked before anything boots (exit 8 names the schema rule: kiln's bug).
    pipeline::check_output(&model)?;
    let mut inputs = loaded.inputs(&args.profile);
    inputs.push(args.base.clone());
    output_is_not_an_input(&args.output, &inputs)?;
    let base = BaseImage::check(&args.base)?;
    same_release(&model, &args.base, false)?;
    let out_dir = match args.output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = args.output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // Beside the output, so the overlay is on the same disk the image goes to.
    let work = tempfile::Builder::new()
        .prefix(&format!(".{name}.bake-"))
        .tempdir_in(&out_dir)
        .with_context(|| format!("creating a work directory in {}", out_dir.display()))
        .map_err(Failure::io)?;
    interrupt::remove_on_interrupt(work.path());
    let request = BakeRequest {
        model: &model,
        profile_path: &args.profile,
        base_image: &base,
        output: &args.output,
        format: args.format,
        work_dir: work.path(),
        accel: args.accel,
        started,
        mirror_port: None,
        packages_in_vm: args.packages_in_vm,
        force: args.force,
        verbose: args.verbose,
        timeout: Duration::from_secs(args.timeout),
    };
    let result = bake::bake(&request);
    interrupt::forget(work.path());
    match result {
        Ok((outcome, manifest)) => {
            let how = if outcome == Outcome::UpToDate { "up to date" } else { "baked" };
            eprintln!("{}: {how} (sha256 {})", args.output.display(), manifest.output.sha256);
            Ok(())
        }
        Err(e) => {
            if work.path().join("console.log").is_file() {
                // The build VM's disk (its overlay, and the chroot's raw copy of the base under it) is gigabytes
                // the message does not promise: only the logs are kept.
                for disk in [qemu::OVERLAY, chroot_install::NATIVE_DISK] {
                    if let Err(e) = remove_if_present(&work.path().join(disk)) {
                        eprintln!("kiln bake: {e:#}");
                    }
                }
                let kept = work.keep();
                eprintln!("kiln bake: the build VM's console log is kept: {}", kept.join("console.log").display());
            }
            Err(e.into())
        }
    }
}

pub fn test(args: &TestArgs) -> Result<(), Failure> {
    if args.stage == Stage::Bake {
        return Err(Failure::Usage(
            "`kiln test --stage bake` is not a thing: bake with `kiln bake`, then test with --stage boot".into(),
        ));
    }
    let loaded = load_printed(&args.profile)?;
    let model = loaded.validated_host(false, args.host.as_deref())?;
    pipeline::check_output(&model)?;
    let mut tunnel = join_tunnel(&model, args.no_tunnel)?;
    if let Some(junit) = &args.junit {
        let mut inputs = loaded.inputs(&args.profile);
        inputs.push(args.image.clone());
        output_is_not_an_input(junit, &inputs)?;
    }
    BaseImage::check(&args.image)?;
    let boot = if args.stage == Stage::Boot { harness::Boot::Golden } else { harness::Boot::Provision };
    if boot == harness::Boot::Provision {
        // A base image is provisioned from kiln's mirror, built from what the image lacks.
        harness::dpkg_status_of(&args.image).map_err(Failure::io)?;
    }
    same_release(&model, &args.image, boot == harness::Boot::Golden)?;
    let name = args.profile.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "profile".into());
    let run_dir = args.run_dir.clone().unwrap_or_else(|| PathBuf::from("target/vm-tests").join(&name));
    let scenario = harness::Scenario {
        name,
        profile: args.profile.clone(),
        image: args.image.clone(),
        boot,
        outcome: harness::Outcome::Healthy,
        run_dir: run_dir.clone(),
        reboot: !args.no_reboot,
        boot_timeout: Duration::from_secs(args.timeout),
    };
    let decision = accel::decide(args.accel, &args.image, &run_dir).map_err(Failure::Usage)?;
    eprintln!("kiln: accelerator: {} ({})", decision.accel.name(), decision.how);
    let accel = decision.accel;
    let extension: &mut dyn harness::Extension = match &mut tunnel {
        Some(tunnel) => tunnel,
        None => &mut harness::NoExtension,
    };
    let verdict = harness::run(&scenario, model, accel, extension).map_err(|e| {
        Failure::harness(
            e.context(format!("the test harness failed (console log: {})", run_dir.join("console.log").display())),
        )
    })?;
    eprint!("{}", report::table(&verdict));
    if args.format == TestFormat::Json {
        super::to_stdout(&super::output::json(&report::json(&verdict))?)?;
    }
    if let Some(path) = &args.junit {
        write_atomic(path, report::junit(std::slice::from_ref(&verdict)).as_bytes(), 0o644).map_err(Failure::io)?;
    }
    let (passed, failed) = verdict.counts();
    if failed > 0 {
        return Err(Failure::ChecksFailed { failed, total: passed + failed });
    }
    Ok(())
}

/// The tunnel `kiln test` joins: the profile's WireGuard one, unless `--no-tunnel`, said on stderr either
/// way. A machine that cannot join (not root, a program missing) is refused before anything boots (exit 7),
/// naming what is missing: a test that silently skipped the tunnel would prove less than it says.
fn join_tunnel(model: &Model, no_tunnel: bool) -> Result<Option<tunnel::JoinTunnel>, Failure> {
    if !tunnel::wanted(model) {
        return Ok(None);
    }
    if no_tunnel {
        eprintln!("kiln: not joining the WireGuard tunnel (--no-tunnel): SSH through it is not checked");
        return Ok(None);
    }
    if let Some(reason) = tunnel::cannot_join() {
        return Err(Failure::Harness(anyhow::anyhow!(
            "kiln test joins the profile's WireGuard tunnel to check SSH through it, and cannot here: {reason} (or pass --no-tunnel)"
        )));
    }
    eprintln!(
        "kiln: joining the WireGuard tunnel as wireguard.peers[0], with a key generated for this run in place of that peer's"
    );
    Ok(Some(tunnel::JoinTunnel::default()))
}

/// Builds a recipe's image, or (no recipe, or `--list`) lists the recipes on stdout: that list is the product.
pub fn image_build(args: &ImageBuildArgs) -> Result<(), Failure> {
    let (Some(name), Some(output)) = (&args.recipe, &args.output) else {
        let list: String = image::RECIPES.iter().map(|r| format!("{}\t{}\n", r.name(), r.summary)).collect();
        return super::to_stdout(list.as_bytes());
    };
    // An unknown name is a wrong command line, not a broken harness.
    image::recipe(name).map_err(|e| Failure::Usage(format!("{e:#}")))?;
    let started = Instant::now();
    let hit = image::build(name, output, args.force).map_err(Failure::Harness)?;
    let how = if hit { "from the cache" } else { "built" };
    eprintln!("{}: {how} in {:.1} s", output.display(), started.elapsed().as_secs_f64());
    Ok(())
}

/// Refuses (exit 2, before anything boots) an image of another release than the profile's `host.os`: its
/// packages, sources and sshd would not be what the profile was rendered and checked for. A base image
/// says its release in its dpkg-status sidecar, a golden image in its bake manifest; without either, kiln
/// cannot tell and says so.
fn same_release(model: &Model, image: &Path, golden: bool) -> Result<(), Failure> {
    let found = if golden { bake::golden_release(image) } else { base_release(image) }.map_err(Failure::io)?;
    let wanted = model.host.release.name();
    match found {
        Some(release) if release != model.host.release => {
            let how = if image::recipe(wanted).is_err() {
                " (kiln builds and boots Debian images only)".to_string()
            } else if golden {
                format!(" (`kiln image build {wanted} -o FILE`, then `kiln bake`)")
            } else {
                format!(" (`kiln image build {wanted} -o FILE`)")
            };
            Err(Failure::Usage(format!(
                "{} is a {} image, but the profile's host.os is {wanted}: use an image of {wanted}{how}, or change host.os",
                image.display(),
                release.name()
            )))
        }
        Some(_) => Ok(()),
        None => {
            let beside = if golden { "bake manifest" } else { "dpkg-status" };
            eprintln!(
                "kiln: warning: cannot tell which release {} is (no {beside} beside it); the profile says {wanted}",
                image.display()
            );
            Ok(())
        }
    }
}

/// A base image's release from its dpkg-status sidecar, if it has one.
fn base_release(image: &Path) -> anyhow::Result<Option<Release>> {
    let status = image.with_extension("dpkg-status");
    if !status.is_file() {
        return Ok(None);
    }
    image::release_of_file(&status).map(Some)
}
