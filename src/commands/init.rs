//! `kiln init`: writes a starter profile (`crate::init`) with the user's SSH key, never over an existing file;
//! a person at a terminal is asked for the choices no flag made.

use std::io::{BufRead, IsTerminal as _, Write};
use std::path::PathBuf;

use anyhow::Context as _;

use crate::cli::InitArgs;
use crate::effects::fs::{write_atomic, write_new_atomic};
use crate::failure::Failure;
use crate::init::{self, Choices, Tunnel, Vpn};

/// Where OpenSSH's `ssh-keygen` puts public keys, in the order `kiln init` takes the first that exists.
const DEFAULT_KEYS: &[&str] = &["id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"];
/// The host name a starter profile gets when none is given.
const DEFAULT_HOSTNAME: &str = "app-1";

pub fn init(args: &InitArgs) -> Result<(), Failure> {
    if !args.force && args.path.symlink_metadata().is_ok() {
        return Err(Failure::io(anyhow::anyhow!(
            "{} exists; kiln init never writes over a file (--force replaces it)",
            args.path.display()
        )));
    }
    // A person at a terminal is asked what the flags did not say; anywhere else (CI, a pipe) nothing
    // waits for an answer and the defaults are taken.
    let person = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let (mut stdin, mut stderr) = (std::io::stdin().lock(), std::io::stderr());
    let terminal: Option<Terminal> = person.then_some(Terminal { input: &mut stdin, output: &mut stderr });
    let asked = ask_missing(args, terminal).map_err(Failure::io)?;
    if asked.vpn == Vpn::Wireguard && asked.wireguard_peers.is_empty() {
        return Err(Failure::Usage(
            "--vpn wireguard needs the public key of each machine that deploys: --wireguard-peer \"$(wg pubkey < private.key)\" (nothing was written)"
                .into(),
        ));
    }
    if asked.vpn != Vpn::Wireguard && !asked.wireguard_peers.is_empty() {
        return Err(Failure::Usage("--wireguard-peer goes with --vpn wireguard (nothing was written)".into()));
    }
    let ssh_keys = ssh_keys(args)?;
    let choices = Choices {
        os: asked.os,
        hostname: asked.hostname,
        vpn: asked.vpn,
        tunnel: asked.tunnel,
        ssh_keys,
        wireguard_peers: asked.wireguard_peers,
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

/// Where questions go and answers come from: the person's terminal.
struct Terminal<'a> {
    input: &'a mut dyn BufRead,
    output: &'a mut dyn Write,
}

impl Terminal<'_> {
    /// Asks until an answer parses; an empty line takes the default, and so does the end of input (the
    /// person pressed Ctrl-D: the defaults for the rest).
    fn ask<T>(
        &mut self,
        question: &str,
        default: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> anyhow::Result<T> {
        loop {
            // One write: a person typing ahead is echoed by the terminal between writes, so a prompt written
            // in pieces could be split by their own answer.
            self.output.write_all(format!("{question} [{default}]: ").as_bytes())?;
            self.output.flush()?;
            let mut line = String::new();
            if self.input.read_line(&mut line)? == 0 {
                writeln!(self.output)?;
                return parse(default).map_err(|e| anyhow::anyhow!(e));
            }
            let answer = line.trim();
            match parse(if answer.is_empty() { default } else { answer }) {
                Ok(value) => return Ok(value),
                Err(why) => writeln!(self.output, "  {why}")?,
            }
        }
    }
}

/// What `kiln init` makes the profile from, once every choice is made.
struct Asked {
    os: String,
    hostname: String,
    vpn: Vpn,
    tunnel: Tunnel,
    wireguard_peers: Vec<String>,
}

/// One choice: the flag's value if it was given, else the answer on `terminal` if there is one, else
/// `default` (shown to the person as `shown`).
fn choose<T>(
    terminal: &mut Option<Terminal>,
    question: &str,
    given: Option<T>,
    (default, shown): (T, &str),
    parse: impl Fn(&str) -> Result<T, String>,
) -> anyhow::Result<T> {
    match (given, terminal.as_mut()) {
        (Some(value), _) => Ok(value),
        (None, Some(terminal)) => terminal.ask(question, shown, parse),
        (None, None) => Ok(default),
    }
}

/// `choose` for one of a flag's values: the question lists them and the answer is read as the flag is,
/// both from the flag's own value names.
fn choose_value<T: clap::ValueEnum + Clone>(
    terminal: &mut Option<Terminal>,
    topic: &str,
    given: Option<T>,
    default: T,
) -> anyhow::Result<T> {
    let name = |value: &T| value.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default();
    let names: Vec<String> = T::value_variants().iter().map(name).collect();
    let shown = name(&default);
    choose(terminal, &format!("{topic} ({})", names.join(", ")), given, (default, &shown), |a| T::from_str(a, true))
}

/// Each choice the flags left open: asked on `terminal` if there is one, else its default.
fn ask_missing(args: &InitArgs, mut terminal: Option<Terminal>) -> anyhow::Result<Asked> {
    let releases: Vec<&str> = crate::model::release::FACTS.iter().map(|f| f.name).collect();
    let default_os = crate::model::release::DEFAULT.name();
    let os = choose(&mut terminal, "Release (host.os)", args.os.clone(), (default_os.into(), default_os), |a| {
        match crate::model::Release::from_name(a) {
            Some(_) => Ok(a.to_string()),
            None => Err(format!("one of: {}", releases.join(", "))),
        }
    })?;
    let hostname =
        choose(&mut terminal, "Host name", args.hostname.clone(), (DEFAULT_HOSTNAME.into(), DEFAULT_HOSTNAME), |a| {
            Ok(a.to_string())
        })?;
    let vpn = choose_value(&mut terminal, "VPN for SSH", args.vpn, Vpn::Tailscale)?;
    let tunnel = choose_value(&mut terminal, "Tunnel for HTTP", args.tunnel, Tunnel::Cloudflared)?;
    let mut wireguard_peers = args.wireguard_peer.clone();
    if let (Vpn::Wireguard, true, Some(terminal)) = (vpn, wireguard_peers.is_empty(), terminal.as_mut()) {
        // At least one: a WireGuard host nobody can reach is a lockout.
        loop {
            let key =
                terminal.ask("WireGuard public key of a machine that deploys (`wg pubkey < key`)", "done", |a| {
                    if a == "done" || crate::model::is_wireguard_key(a) {
                        Ok(a.to_string())
                    } else {
                        Err("a WireGuard public key is 44 characters of base64 ending in `=`".into())
                    }
                })?;
            if key != "done" {
                wireguard_peers.push(key);
            } else if !wireguard_peers.is_empty() {
                break;
            } else {
                writeln!(terminal.output, "  at least one: nobody could reach the host through the tunnel")?;
                // The end of input answers "done" for ever: stop asking, and let the caller refuse.
                if terminal.input.fill_buf()?.is_empty() {
                    break;
                }
            }
        }
    }
    Ok(Asked { os, hostname, vpn, tunnel, wireguard_peers })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> InitArgs {
        InitArgs {
            path: "profile.yaml".into(),
            vpn: None,
            tunnel: None,
            ssh_key: Vec::new(),
            wireguard_peer: Vec::new(),
            os: None,
            hostname: None,
            force: false,
        }
    }

    /// Runs `ask_missing` on a terminal that answers `answers`; returns what it made and what it printed.
    fn on_terminal(args: &InitArgs, answers: &str) -> (Asked, String) {
        let mut input = std::io::Cursor::new(answers.as_bytes().to_vec());
        let mut output = Vec::new();
        let asked = ask_missing(args, Some(Terminal { input: &mut input, output: &mut output })).unwrap();
        (asked, String::from_utf8(output).unwrap())
    }

    const KEY: &str = "TG+auU5uUQmkpMcrQbM5iWv2ayKYq1Y/0AnHjYggqmo=";

    #[test]
    fn without_a_terminal_every_open_choice_takes_its_default_and_nothing_is_asked() {
        let asked = ask_missing(&args(), None).unwrap();
        assert_eq!((asked.os.as_str(), asked.hostname.as_str()), ("debian-13", "app-1"));
        assert_eq!((asked.vpn, asked.tunnel), (Vpn::Tailscale, Tunnel::Cloudflared));
        assert!(asked.wireguard_peers.is_empty());
    }

    #[test]
    fn a_person_is_asked_what_the_flags_left_open_and_a_wrong_answer_is_asked_again() {
        let (asked, said) =
            on_terminal(&args(), &format!("debian-99\ndebian-12\nweb-1\nwireguard\nnone\nnot-a-key\n{KEY}\n\n"));
        assert_eq!((asked.os.as_str(), asked.hostname.as_str()), ("debian-12", "web-1"));
        assert_eq!((asked.vpn, asked.tunnel), (Vpn::Wireguard, Tunnel::None));
        assert_eq!(asked.wireguard_peers, [KEY]);
        assert_eq!(said.matches("Release (host.os) [debian-13]: ").count(), 2, "{said}");
        assert!(said.contains("  one of: debian-13, debian-12"), "{said}");
        assert!(said.contains("44 characters of base64"), "{said}");
    }

    #[test]
    fn empty_answers_and_the_end_of_input_take_the_defaults() {
        let (asked, said) = on_terminal(&args(), "\n\n");
        assert_eq!((asked.os.as_str(), asked.hostname.as_str()), ("debian-13", "app-1"));
        assert_eq!((asked.vpn, asked.tunnel), (Vpn::Tailscale, Tunnel::Cloudflared));
        assert!(said.contains("Tunnel for HTTP (cloudflared, none) [cloudflared]: "), "{said}");
        // WireGuard chosen, then the input ends before any key: no peer, and the caller refuses.
        let (asked, said) = on_terminal(&args(), "\n\nwireguard\n\n");
        assert_eq!(asked.vpn, Vpn::Wireguard);
        assert!(asked.wireguard_peers.is_empty());
        assert!(said.contains("at least one"), "{said}");
    }

    #[test]
    fn what_the_flags_say_is_never_asked() {
        let given = InitArgs {
            vpn: Some(Vpn::None),
            tunnel: Some(Tunnel::None),
            os: Some("debian-12".into()),
            hostname: Some("db-1".into()),
            ..args()
        };
        let (asked, said) = on_terminal(&given, "");
        assert_eq!(said, "");
        assert_eq!((asked.os.as_str(), asked.hostname.as_str(), asked.vpn), ("debian-12", "db-1", Vpn::None));
    }
}
