//! Command line: clap types and dispatch to `commands`, which run the `pipeline` and print.
//!
//! stdout carries only the product (user-data, a seed image path never, JSON reports, the schema);
//! diagnostics and progress go to stderr.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::commands;
use crate::effects::vm::accel::Choice;
use crate::effects::vm::bake::ImageFormat;
use crate::failure::Failure;
use crate::init::{Tunnel, Vpn};
use crate::lower::Stage;
use crate::target::{Encoding, Target};

#[derive(Debug, Parser)]
#[command(name = "kiln", version, about = "Host profiles → validated cloud-init user-data, seeds and VM tests")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented starter profile (with your SSH key) that `kiln check --strict` accepts.
    Init(InitArgs),
    /// Validate profiles without producing output; report every problem with file:line:col.
    Check(CheckArgs),
    /// Render a profile into cloud-init user-data (stdout, or -o FILE written 0600).
    Render(RenderArgs),
    /// Write a NoCloud `cidata` seed image (vfat) for local boots.
    Seed(SeedArgs),
    /// Print, as JSON, the state a host booted from the profile must show (what `kiln test` checks).
    Expect(ExpectArgs),
    /// Print the part of Kamal 2's config/deploy.yml the profile decides (servers, ssh user, proxy), as YAML.
    Kamal(KamalArgs),
    /// Print the JSON Schema of the profile format (for editors' YAML language servers).
    Schema,
    /// Explain a diagnostic code: what it means, why it matters, a profile that raises it and the fix.
    Explain(ExplainArgs),
    /// Print a shell completion script for kiln on stdout (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Write kiln's man pages, one per command (kiln.1, kiln-check.1, …), into a directory.
    Man(ManArgs),
    /// Boot a throwaway VM with the profile and check, from inside and outside, that it is as declared.
    Test(TestArgs),
    /// Bake a golden image: boot the base image with the profile's bake stage, make it generic, convert.
    Bake(BakeArgs),
    /// Build base images from kiln's pinned recipes.
    #[command(subcommand)]
    Image(ImageCommand),
}

#[derive(Debug, clap::Args)]
pub struct BakeArgs {
    /// The profile to bake (its bake stage: no secrets are read or needed).
    pub profile: PathBuf,
    /// Base disk image to start from (qcow2 or raw; never written to).
    #[arg(long)]
    pub base: PathBuf,
    /// The golden image to write; `OUT.manifest.json` is written beside it.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Disk format of the golden image.
    #[arg(long, value_enum, default_value_t = ImageFormat::Qcow2)]
    pub format: ImageFormat,
    /// Bake even if OUT is up to date with the same base, profile and kiln version.
    #[arg(long)]
    pub force: bool,
    /// Install the packages inside the build VM (as Packer would). By default, as root, kiln installs them
    /// natively in a chroot of a copy of the base before the build VM boots, which is several times faster
    /// under emulation; without root it always uses the build VM.
    #[arg(long)]
    pub packages_in_vm: bool,
    /// Stream the build VM's console to stderr.
    #[arg(short, long)]
    pub verbose: bool,
    /// Seconds the build VM may take to boot and provision (and, before it, the native package install).
    #[arg(long, default_value_t = 1800)]
    pub timeout: u64,
    /// QEMU's accelerator: `auto` uses KVM if a guest boots with it here (probed once per machine boot),
    /// else TCG. `KILN_ACCEL` decides the same when the flag is not given.
    #[arg(long, value_enum, default_value_t = Choice::Auto)]
    pub accel: Choice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// rustc-style diagnostics with the profile's lines, on stderr.
    Human,
    /// One JSON document on stdout: every file's diagnostics.
    Json,
    /// GitHub Actions workflow commands on stdout (`::error file=…,line=…::…`): annotations on the pull request.
    Github,
    /// SARIF 2.1.0 on stdout, for code scanning (`github/codeql-action/upload-sarif`).
    Sarif,
}

/// How `kiln test` reports its verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TestFormat {
    Human,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Profiles to check.
    #[arg(required = true)]
    pub profiles: Vec<PathBuf>,
    /// Fail on warnings too.
    #[arg(long)]
    pub strict: bool,
    /// How to print the report: `human` (stderr), or `json`, `github` or `sarif` (stdout).
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, clap::Args)]
pub struct OutputArgs {
    /// Cloud whose user-data size limit and accepted encodings apply.
    #[arg(long, value_enum, default_value_t = Target::Generic)]
    pub target: Target,
    /// How the user-data is encoded: plain text, gzip, or gzip then base64.
    #[arg(long, value_enum, default_value_t = Encoding::Plain)]
    pub encoding: Encoding,
}

#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    /// The profile to render.
    pub profile: PathBuf,
    /// Write here (atomically, mode 0600) instead of stdout; with `--all`, the directory for one
    /// `HOST.user-data` per host.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub hosts: HostArgs,
    /// Write placeholders instead of secret values (for review and diffs; not deployable).
    #[arg(long)]
    pub redact: bool,
    /// Refuse to render when the profile has warnings.
    #[arg(long)]
    pub strict: bool,
    /// `full`: everything at first boot; `bake`: what `kiln bake` puts in a golden image (no secrets);
    /// `boot`: what an instance of that image applies at its first boot.
    #[arg(long, value_enum, default_value_t = Stage::Full)]
    pub stage: Stage,
    #[command(flatten)]
    pub target: OutputArgs,
}

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// The profile to boot.
    pub profile: PathBuf,
    /// Base disk image (qcow2 or raw) with `IMAGE.dpkg-status` beside it (`kiln image build`).
    #[arg(long)]
    pub image: PathBuf,
    /// Also write the results as JUnit XML here.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// `human`: the table on stderr; `json`: also the verdict as JSON on stdout (every check with what was
    /// expected and observed, the timings), for other tools.
    #[arg(long, value_enum, default_value_t = TestFormat::Human)]
    pub format: TestFormat,
    /// Skip the reboot and the second round of checks.
    #[arg(long)]
    pub no_reboot: bool,
    /// Do not join the profile's WireGuard tunnel. By default `kiln test` joins it as the profile's first
    /// peer (with a key it generates in place of that peer's) and checks SSH through it; that needs root,
    /// wireguard-go, wg, ssh, ip and python3.
    #[arg(long)]
    pub no_tunnel: bool,
    /// For a profile listing `hosts`: the host to boot.
    #[arg(long)]
    pub host: Option<String>,
    /// `full`: IMAGE is a base image, provisioned at first boot; `boot`: IMAGE is a golden image baked
    /// from this profile (`kiln bake`), booted with the boot stage.
    #[arg(long, value_enum, default_value_t = Stage::Full)]
    pub stage: Stage,
    /// Seconds to wait for cloud-init to finish on each boot.
    #[arg(long, default_value_t = 900)]
    pub timeout: u64,
    /// QEMU's accelerator: `auto` uses KVM if a guest boots with it here (probed once per machine boot),
    /// else TCG. `KILN_ACCEL` decides the same when the flag is not given.
    #[arg(long, value_enum, default_value_t = Choice::Auto)]
    pub accel: Choice,
    /// Where the console log, seed and overlay go (default `target/vm-tests/<profile name>`).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build a base image from a recipe (cached by the hash of the recipe's inputs); with no recipe, list them.
    Build(ImageBuildArgs),
}

#[derive(Debug, clap::Args)]
pub struct ImageBuildArgs {
    /// Recipe name (`debian-12`, `debian-13`); without one, the recipes are listed.
    #[arg(requires = "output")]
    pub recipe: Option<String>,
    /// Output image (qcow2); sidecars `.dpkg-status`, `.manifest`, `.sha256` are written beside it.
    #[arg(short, long, requires = "recipe")]
    pub output: Option<PathBuf>,
    /// Rebuild even if the cache has this recipe.
    #[arg(long, requires = "recipe")]
    pub force: bool,
    /// List the recipes, one per line with what each builds, and exit.
    #[arg(long, conflicts_with_all = ["recipe", "output", "force"])]
    pub list: bool,
}

#[derive(Debug, clap::Args)]
pub struct ExpectArgs {
    /// The profile whose expected state to print.
    pub profile: PathBuf,
    /// For a profile listing `hosts`: the host whose expected state to print.
    #[arg(long)]
    pub host: Option<String>,
}

/// Which hosts of a profile a command acts on (a profile that lists `hosts`, a fleet, needs one of these).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct HostArgs {
    /// The host of the profile's `hosts` to act on.
    #[arg(long, conflicts_with = "all")]
    pub host: Option<String>,
    /// Every host of the profile's `hosts`, one file each in the `-o` directory; nothing is written if any
    /// host fails.
    #[arg(long, requires = "output")]
    pub all: bool,
}

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Where to write the profile (never over an existing file without --force).
    #[arg(default_value = "profile.yaml")]
    pub path: PathBuf,
    /// How SSH reaches the host [default: tailscale; asked on a terminal].
    #[arg(long, value_enum)]
    pub vpn: Option<Vpn>,
    /// How HTTP reaches the app [default: cloudflared; asked on a terminal].
    #[arg(long, value_enum)]
    pub tunnel: Option<Tunnel>,
    /// Public key files for the deploy user (repeatable); default: the first of ~/.ssh/id_ed25519.pub,
    /// id_ecdsa.pub, id_rsa.pub that exists.
    #[arg(long)]
    pub ssh_key: Vec<PathBuf>,
    /// With --vpn wireguard: a deploying machine's WireGuard public key (repeatable; `wg pubkey < key`).
    #[arg(long)]
    pub wireguard_peer: Vec<String>,
    /// The release (`kiln image build --list`) [default: debian-13; asked on a terminal].
    #[arg(long)]
    pub os: Option<String>,
    /// The host's name [default: app-1; asked on a terminal].
    #[arg(long)]
    pub hostname: Option<String>,
    /// Replace PATH if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The code as diagnostics print it (`lockout` in `error[lockout]`); without one, every code is listed.
    pub code: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell whose completion script to print.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// The directory to write the pages to (created if missing); pages of the same names are replaced.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct KamalArgs {
    /// The profile of the hosts Kamal deploys to.
    pub profile: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct SeedArgs {
    /// The profile whose user-data goes into the seed.
    pub profile: PathBuf,
    /// The seed image to write (vfat, label `cidata`; mode 0600); with `--all`, the directory for one
    /// `HOST.img` per host.
    #[arg(short, long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub hosts: HostArgs,
    /// Write placeholders instead of secret values.
    #[arg(long)]
    pub redact: bool,
    /// Use this network-config (version 2) instead of DHCP on the first Ethernet interface.
    #[arg(long)]
    pub network_config: Option<PathBuf>,
    /// Which user-data goes into the seed (see `kiln render --stage`).
    #[arg(long, value_enum, default_value_t = Stage::Full)]
    pub stage: Stage,
}

/// Runs the command. A failure says what stopped it and carries its exit code; `main` prints it.
pub fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Check(args) => commands::output::check(&args),
        Command::Render(args) => commands::output::render(&args),
        Command::Seed(args) => commands::output::seed(&args),
        Command::Expect(args) => commands::output::expect(&args),
        Command::Kamal(args) => commands::output::kamal(&args),
        Command::Schema => commands::output::schema(),
        Command::Init(args) => commands::init::init(&args),
        Command::Explain(args) => commands::explain::explain(&args),
        Command::Completions(args) => commands::completions::completions(&args),
        Command::Man(args) => commands::man::man(&args),
        Command::Test(args) => commands::vm::test(&args),
        Command::Bake(args) => commands::vm::bake(&args),
        Command::Image(ImageCommand::Build(args)) => commands::vm::image_build(&args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
