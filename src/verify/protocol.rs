//! The guest-probe protocol: bash scripts that print named sections, and the parser of what they print.
//!
//! A probe script prints, for each section, a marker line `@@kiln:NAME@@` followed by what the
//! section's command wrote on stdout. The command's stderr and exit status are kept apart: after the last
//! section the script prints a trailer, `@@kiln:probe-status@@`, with one line per section, in the
//! order of the sections:
//!
//! ```text
//! NAME<TAB>EXIT<TAB>STDERR (base64, one line)
//! ```
//!
//! Each section's command runs as a bash function with `-e`, `-u` and `pipefail`: its first failing
//! command ends it, and its exit status is that command's. A section whose command exited non-zero is a
//! harness error naming the section, the status and the stderr (never an empty section); so is output
//! without the trailer (the script died on the way), a section that is unknown, repeated or without its
//! status line, and a reader asking for a section the probe did not produce. Where a command's non-zero
//! exit is an answer rather than a failure (`grep` finding no line, `systemctl is-active` of an
//! inactive unit), the section's body handles it explicitly, with a comment saying why.
//!
//! The sections of each probe are an enum (`SectionName`): the script builder and every reader use the
//! variant, and its wire name is written once, in the enum's definition.

use std::collections::BTreeMap;
use std::fmt::Debug;

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// A section marker line is `MARK_PREFIX NAME MARK_SUFFIX`, alone on its line.
pub const MARK_PREFIX: &str = "@@kiln:";
pub const MARK_SUFFIX: &str = "@@";
/// The name of the trailer holding every section's exit status and stderr; no section may take it.
pub const STATUS_TRAILER: &str = "probe-status";

/// The marker line that opens section `name`.
pub fn marker(name: &str) -> String {
    format!("{MARK_PREFIX}{name}{MARK_SUFFIX}")
}

/// The name in a marker line, if `line` is one.
fn marker_name(line: &str) -> Option<&str> {
    line.strip_prefix(MARK_PREFIX)?.strip_suffix(MARK_SUFFIX)
}

/// The sections one probe prints. Implemented by `probe_sections!`, which writes each wire name once.
pub trait SectionName: Copy + Ord + Debug + 'static {
    /// What the probe is, for messages ("the state probe").
    const PROBE: &'static str;
    /// Every section, in declaration order.
    const ALL: &'static [Self];
    /// The section's name on the wire (in its marker line and its status line).
    fn name(self) -> &'static str;

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|s| s.name() == name)
    }
}

/// Declares a probe's sections: an enum, and its `SectionName` implementation with one wire name per
/// variant.
macro_rules! probe_sections {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident ($probe:literal) {
            $($(#[$vmeta:meta])* $variant:ident = $wire:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        $vis enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $crate::verify::protocol::SectionName for $name {
            const PROBE: &'static str = $probe;
            const ALL: &'static [Self] = &[$(Self::$variant,)+];
            fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $wire,)+
                }
            }
        }
    };
}
pub(crate) use probe_sections;

/// Shell options and helpers every probe script starts with.
///
/// `kiln_section NAME` runs the function `kiln_body` (defined just before) as section NAME: the marker,
/// then the body's stdout; its stderr is captured (fd 3 carries stdout past the capture) and goes, with
/// its exit status, into the trailer. The body runs with `-e` (and `inherit_errexit`, so a failing
/// `$(…)` fails it too) in a subshell of its own.
fn prelude() -> String {
    format!(
        r#"set -u -o pipefail
shopt -s inherit_errexit
export LC_ALL=C
kiln_status=
kiln_section() {{
  local err code
  printf '\n%s\n' "{MARK_PREFIX}$1{MARK_SUFFIX}"
  {{ err=$(set -e; kiln_body 2>&1 1>&3 3>&-); code=$?; }} 3>&1
  kiln_status+="$1"$'\t'"$code"$'\t'"$(printf '%s' "$err" | base64 -w0)"$'\n'
}}
# grep for which finding no line (exit 1) is an answer, not a failure; an error (exit 2) still fails.
kiln_grep() {{ grep "$@" || {{ local rc=$?; [ "$rc" -eq 1 ] || return "$rc"; }}; }}
"#
    )
}

/// A probe script under construction: the prelude, probe-specific helpers, then one section at a time.
#[derive(Debug, Clone)]
pub struct Script<S> {
    body: String,
    sections: Vec<S>,
}

impl<S: SectionName> Script<S> {
    /// A script whose sections can use the shell functions and variables `helpers` defines (or whose
    /// commands, e.g. reading stdin, run before the first section).
    pub fn new(helpers: &str) -> Script<S> {
        let mut body = prelude();
        body.push_str(helpers);
        if !body.ends_with('\n') {
            body.push('\n');
        }
        Script { body, sections: Vec::new() }
    }

    /// Adds `section`, produced by the bash commands `body` (run as a function: `return N` works).
    pub fn section(&mut self, section: S, body: &str) {
        assert!(!body.trim().is_empty(), "section {} has no command", section.name());
        assert!(!self.sections.contains(&section), "section {} added twice", section.name());
        self.sections.push(section);
        self.body.push_str(&format!("kiln_body() {{\n{}\n}}\nkiln_section {}\n", body.trim_end(), section.name()));
    }

    /// The sections, in the order the script prints them.
    pub fn sections(&self) -> &[S] {
        &self.sections
    }

    /// The whole script: the sections, then the status trailer.
    pub fn text(&self) -> String {
        format!("{}printf '\\n%s\\n%s' '{}' \"$kiln_status\"\n", self.body, marker(STATUS_TRAILER))
    }
}

/// How a section's command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub exit: i32,
    pub stderr: String,
}

/// What a probe printed: each section's stdout, all of whose commands succeeded (or failed in a way the
/// caller tolerated explicitly).
#[derive(Debug, Clone)]
pub struct Probe<S> {
    sections: BTreeMap<S, Captured>,
}

#[derive(Debug, Clone)]
struct Captured {
    text: String,
    /// `None` only for captures made before the protocol recorded statuses (test fixtures).
    outcome: Option<Outcome>,
}

impl<S: SectionName> Probe<S> {
    /// Parses a probe's output; `exit` and `stderr` are the whole script's. Any section whose command
    /// failed is an error.
    pub fn parse(stdout: &str, exit: i64, stderr: &str) -> Result<Probe<S>> {
        Self::parse_tolerating(stdout, exit, stderr, |_, _| false)
    }

    /// `parse`, accepting the failures for which `tolerated(section, outcome)` says they are an answer.
    pub fn parse_tolerating(
        stdout: &str,
        exit: i64,
        stderr: &str,
        tolerated: impl Fn(S, &Outcome) -> bool,
    ) -> Result<Probe<S>> {
        Self::parse_inner(stdout, exit, stderr, tolerated)
            .with_context(|| format!("reading the output of {}", S::PROBE))
    }

    fn parse_inner(stdout: &str, exit: i64, stderr: &str, tolerated: impl Fn(S, &Outcome) -> bool) -> Result<Self> {
        let script_failed = || {
            let stderr = stderr.trim();
            format!("the script exited {exit}; its stderr: {}", if stderr.is_empty() { "(empty)" } else { stderr })
        };
        let mut blocks = split_blocks(stdout)?;
        let Some((STATUS_TRAILER, trailer)) = blocks.pop() else {
            bail!("the probe did not finish (no `{}` trailer); {}", marker(STATUS_TRAILER), script_failed());
        };
        if exit != 0 {
            bail!("{}", script_failed());
        }
        let statuses: Vec<&str> = trailer.lines().filter(|l| !l.is_empty()).collect();
        if statuses.len() != blocks.len() {
            bail!("{} sections but {} status lines", blocks.len(), statuses.len());
        }
        let mut sections = BTreeMap::new();
        let mut failures = Vec::new();
        for ((name, text), status) in blocks.into_iter().zip(statuses) {
            let section = S::from_name(name).ok_or_else(|| anyhow!("unknown section `{name}`"))?;
            let (status_name, outcome) = parse_status_line(status)?;
            if status_name != name {
                bail!("the status line `{status}` is not that of section `{name}`, which it follows");
            }
            if outcome.exit != 0 && !tolerated(section, &outcome) {
                failures.push(failure_message(name, &outcome));
            }
            let text = text.trim().to_string();
            if sections.insert(section, Captured { text, outcome: Some(outcome) }).is_some() {
                bail!("section `{name}` is there twice");
            }
        }
        if !failures.is_empty() {
            bail!("{}", failures.join("; "));
        }
        Ok(Probe { sections })
    }

    /// The section's text (its command's stdout, trimmed). A section the probe did not produce is an
    /// error: the script and its readers disagree.
    pub fn get(&self, section: S) -> Result<&str> {
        self.sections
            .get(&section)
            .map(|s| s.text.as_str())
            .ok_or_else(|| anyhow!("{} produced no section `{}`", S::PROBE, section.name()))
    }

    /// How the section's command ended (`None`: absent, or a capture from before statuses were recorded).
    pub fn outcome(&self, section: S) -> Option<&Outcome> {
        self.sections.get(&section).and_then(|s| s.outcome.as_ref())
    }

    /// The sections present, in enum order.
    pub fn names(&self) -> impl Iterator<Item = S> + '_ {
        self.sections.keys().copied()
    }

    /// Reads a capture made before the probe recorded exit statuses (the files in
    /// `src/verify/fixtures/`, captured from real guests): its sections, with no status to check.
    /// Tests only: real output without the trailer is refused by `parse`.
    #[cfg(test)]
    pub fn from_capture_without_status(capture: &str) -> Result<Probe<S>> {
        let mut sections = BTreeMap::new();
        for (name, text) in split_blocks(capture)? {
            let section = S::from_name(name).ok_or_else(|| anyhow!("unknown section `{name}`"))?;
            if sections.insert(section, Captured { text: text.trim().to_string(), outcome: None }).is_some() {
                bail!("section `{name}` is there twice");
            }
        }
        Ok(Probe { sections })
    }

    /// Replaces a section's text (tests: an observed fact made wrong).
    #[cfg(test)]
    pub fn set(&mut self, section: S, text: impl Into<String>) {
        let outcome = Some(Outcome { exit: 0, stderr: String::new() });
        self.sections.insert(section, Captured { text: text.into(), outcome });
    }

    /// Keeps only `sections` (tests: what a script producing only those would give).
    #[cfg(test)]
    pub fn retain(&mut self, sections: &[S]) {
        self.sections.retain(|s, _| sections.contains(s));
    }
}

/// The message for a section whose command failed.
fn failure_message(name: &str, outcome: &Outcome) -> String {
    let stderr = outcome.stderr.trim();
    let stderr = if stderr.is_empty() { "(no stderr)" } else { stderr };
    format!("probe command for section {name} failed (exit {}): {stderr}", outcome.exit)
}

/// `(name, text)` per marker, in order. Only blank lines may come before the first marker.
fn split_blocks(output: &str) -> Result<Vec<(&str, String)>> {
    let mut blocks: Vec<(&str, Vec<&str>)> = Vec::new();
    for line in output.lines() {
        if let Some(name) = marker_name(line) {
            blocks.push((name, Vec::new()));
        } else if let Some((_, lines)) = blocks.last_mut() {
            lines.push(line);
        } else if !line.trim().is_empty() {
            bail!("output before the first section marker: `{line}`");
        }
    }
    Ok(blocks.into_iter().map(|(name, lines)| (name, lines.join("\n"))).collect())
}

/// `NAME<TAB>EXIT<TAB>STDERR-BASE64` → the name and the outcome.
fn parse_status_line(line: &str) -> Result<(&str, Outcome)> {
    let malformed = || anyhow!("malformed status line `{line}` (want NAME, exit status, base64 stderr)");
    let mut fields = line.split('\t');
    let (Some(name), Some(exit), Some(stderr), None) = (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(malformed());
    };
    let exit: i32 = exit.parse().map_err(|_| malformed())?;
    let stderr = STANDARD.decode(stderr).map_err(|_| malformed())?;
    Ok((name, Outcome { exit, stderr: String::from_utf8_lossy(&stderr).into_owned() }))
}

/// Test support: run probe scripts on this machine and check them.
#[cfg(test)]
pub(crate) mod testing {
    use std::process::{Command, Stdio};

    use super::{STATUS_TRAILER, SectionName, marker, marker_name};

    /// Runs `script` with `bash -c` (with `PATH` prefixed by `path_prefix`, where stubs may stand in
    /// for commands this machine lacks) and `stdin`; returns (exit, stdout, stderr).
    pub fn run_bash(script: &str, path_prefix: Option<&std::path::Path>, stdin: &[u8]) -> (i64, String, String) {
        use std::io::Write as _;
        use std::os::unix::process::ExitStatusExt as _;
        let mut command = Command::new("bash");
        command.arg("-c").arg(script).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        if let Some(prefix) = path_prefix {
            let path = std::env::var("PATH").unwrap_or_default();
            command.env("PATH", format!("{}:{path}", prefix.display()));
        }
        let mut child = command.spawn().expect("bash runs");
        child.stdin.take().expect("stdin").write_all(stdin).expect("stdin written");
        let out = child.wait_with_output().expect("bash finishes");
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        // Killed by a signal: 128 + its number, as a shell reports it.
        let exit = out.status.code().or_else(|| out.status.signal().map(|s| 128 + s)).unwrap_or(-1);
        (i64::from(exit), text(&out.stdout), text(&out.stderr))
    }

    /// Asserts that `bash -n` accepts `script`.
    pub fn assert_bash_syntax(script: &str) {
        let out = Command::new("bash").arg("-n").arg("-c").arg(script).output().expect("bash runs");
        assert!(out.status.success(), "bash -n refuses the script: {}\n{script}", String::from_utf8_lossy(&out.stderr));
    }

    /// Every probe's section names: distinct, markers that split cleanly, none the trailer's.
    pub fn check_names<S: SectionName>() {
        let names: Vec<&str> = S::ALL.iter().map(|s| s.name()).collect();
        for (i, name) in names.iter().enumerate() {
            assert!(
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{name}"
            );
            assert_ne!(*name, STATUS_TRAILER);
            assert!(!names[..i].contains(name), "{name} twice");
            assert_eq!(S::from_name(name).map(S::name), Some(*name));
            assert_eq!(marker_name(&marker(name)), Some(*name));
        }
    }

    /// A directory of executable stubs (`name` → shell script body).
    pub fn stubs(scripts: &[(&str, &str)]) -> tempfile::TempDir {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, body) in scripts {
            let path = dir.path().join(name);
            std::fs::write(&path, format!("#!/bin/bash\n{body}\n")).expect("stub written");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("stub executable");
        }
        dir
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{assert_bash_syntax, check_names, run_bash, stubs};
    use super::*;

    probe_sections! {
        enum Demo("the demo probe") {
            Ok = "ok",
            Empty = "empty",
            Fails = "fails",
            NoMatch = "no-match",
            Missing = "missing",
        }
    }

    fn run(script: &Script<Demo>) -> (i64, String, String) {
        run_bash(&script.text(), None, b"")
    }

    #[test]
    fn sections_are_split_and_statuses_checked() {
        let mut script = Script::new("");
        script.section(Demo::Ok, "echo one; echo two >&2; echo three");
        script.section(Demo::Empty, "true");
        // grep finding nothing is an answer: kiln_grep says so.
        script.section(Demo::NoMatch, "printf 'a\\nb\\n' | kiln_grep -x c");
        assert_bash_syntax(&script.text());
        let (exit, stdout, stderr) = run(&script);
        let probe = Probe::<Demo>::parse(&stdout, exit, &stderr).unwrap();
        assert_eq!(probe.get(Demo::Ok).unwrap(), "one\nthree");
        assert_eq!(probe.outcome(Demo::Ok).unwrap(), &Outcome { exit: 0, stderr: "two".into() });
        assert_eq!(probe.get(Demo::Empty).unwrap(), "");
        assert_eq!(probe.get(Demo::NoMatch).unwrap(), "");
        let missing = probe.get(Demo::Missing).unwrap_err().to_string();
        assert_eq!(missing, "the demo probe produced no section `missing`");
        assert_eq!(probe.names().collect::<Vec<_>>(), [Demo::Ok, Demo::Empty, Demo::NoMatch]);
    }

    #[test]
    fn a_failing_command_is_a_harness_error_with_its_status_and_stderr() {
        let mut script = Script::new("");
        script.section(Demo::Ok, "echo fine");
        // -e: the first failing command ends the body with its status; `after` is never printed.
        script.section(Demo::Fails, "echo partial; ls /nonexistent/kiln-probe-test; echo after");
        script.section(Demo::Empty, "true");
        let (exit, stdout, stderr) = run(&script);
        assert!(!stdout.contains("after"), "{stdout}");
        let error = format!("{:#}", Probe::<Demo>::parse(&stdout, exit, &stderr).unwrap_err());
        assert!(error.contains("reading the output of the demo probe"), "{error}");
        assert!(
            error.contains(
                "probe command for section fails failed (exit 2): ls: cannot access '/nonexistent/kiln-probe-test'"
            ),
            "{error}"
        );
        // A failing `$(…)` inside a body fails it too (inherit_errexit), as does a failing pipeline stage.
        let mut script = Script::new("");
        script.section(Demo::Ok, "x=$(echo a; false; echo b)\necho \"$x\"");
        script.section(Demo::Fails, "false | cat\necho not reached");
        script.section(Demo::NoMatch, "printf 'a\\n' | kiln_grep -x a /nonexistent/kiln-probe-test");
        let (exit, stdout, stderr) = run(&script);
        let error = format!("{:#}", Probe::<Demo>::parse(&stdout, exit, &stderr).unwrap_err());
        assert!(error.contains("section ok failed (exit 1): (no stderr)"), "{error}");
        assert!(error.contains("section fails failed (exit 1)"), "{error}");
        // grep's own errors (exit 2) are not "no match".
        assert!(error.contains("section no-match failed (exit 2): grep: /nonexistent/kiln-probe-test"), "{error}");
    }

    #[test]
    fn a_command_missing_in_the_guest_is_reported_with_bashs_message() {
        let stub = stubs(&[("kiln-fake-tool", "echo 'kiln-fake-tool: no hostkeys available' >&2; exit 255")]);
        let mut script = Script::new("");
        script.section(Demo::Ok, "kiln-fake-tool -T");
        script.section(Demo::Fails, "kiln-no-such-command");
        let (exit, stdout, stderr) = run_bash(&script.text(), Some(stub.path()), b"");
        let error = format!("{:#}", Probe::<Demo>::parse(&stdout, exit, &stderr).unwrap_err());
        assert!(error.contains("section ok failed (exit 255): kiln-fake-tool: no hostkeys available"), "{error}");
        assert!(error.contains("section fails failed (exit 127)"), "{error}");
        assert!(error.contains("kiln-no-such-command: command not found"), "{error}");
    }

    #[test]
    fn tolerated_failures_are_the_callers_explicit_choice() {
        let mut script = Script::new("");
        script.section(Demo::Fails, "echo found; echo 'gone: No such file or directory' >&2; return 2");
        let (exit, stdout, stderr) = run(&script);
        assert!(Probe::<Demo>::parse(&stdout, exit, &stderr).is_err());
        let probe =
            Probe::<Demo>::parse_tolerating(&stdout, exit, &stderr, |s, o| s == Demo::Fails && o.exit == 2).unwrap();
        assert_eq!(probe.get(Demo::Fails).unwrap(), "found");
    }

    #[test]
    fn a_script_that_did_not_finish_is_an_error() {
        let mut script = Script::new("");
        script.section(Demo::Ok, "echo fine");
        script.section(Demo::Fails, "kill -KILL $$");
        let (exit, stdout, stderr) = run(&script);
        let error = format!("{:#}", Probe::<Demo>::parse(&stdout, exit, &stderr).unwrap_err());
        assert!(error.contains("the probe did not finish"), "{error}");
        assert!(error.contains("the script exited 137"), "{error}");
        // The whole output, but a non-zero exit of the script.
        let mut script = Script::new("");
        script.section(Demo::Ok, "echo fine");
        let (_, stdout, _) = run(&script);
        assert!(Probe::<Demo>::parse(&stdout, 0, "").is_ok());
        let error = format!("{:#}", Probe::<Demo>::parse(&stdout, 1, "oops").unwrap_err());
        assert!(error.contains("the script exited 1; its stderr: oops"), "{error}");
    }

    #[test]
    fn malformed_output_is_refused() {
        let ok = |s: &str| Probe::<Demo>::parse(s, 0, "").map(|_| ());
        let trailer = format!("{}\nok\t0\t\n", marker(STATUS_TRAILER));
        assert!(ok(&format!("@@kiln:ok@@\nx\n{trailer}")).is_ok());
        for (bad, why) in [
            (format!("noise\n@@kiln:ok@@\nx\n{trailer}"), "output before the first section marker"),
            (format!("@@kiln:other@@\nx\n{}\nother\t0\t\n", marker(STATUS_TRAILER)), "unknown section `other`"),
            (format!("@@kiln:ok@@\n@@kiln:ok@@\n{}\nok\t0\t\nok\t0\t\n", marker(STATUS_TRAILER)), "there twice"),
            (format!("@@kiln:ok@@\n@@kiln:empty@@\n{trailer}"), "2 sections but 1 status lines"),
            (format!("@@kiln:empty@@\n{trailer}"), "is not that of section `empty`"),
            (format!("@@kiln:ok@@\n{}\nok\tzero\t\n", marker(STATUS_TRAILER)), "malformed status line"),
            (format!("@@kiln:ok@@\n{}\nok\t0\t!!\n", marker(STATUS_TRAILER)), "malformed status line"),
            (format!("@@kiln:ok@@\n{}\nok\t0\n", marker(STATUS_TRAILER)), "malformed status line"),
            ("@@kiln:ok@@\nx\n".to_string(), "did not finish"),
        ] {
            let error = format!("{:#}", ok(&bad).unwrap_err());
            assert!(error.contains(why), "{bad:?}: {error}");
        }
    }

    #[test]
    fn a_fixture_capture_reads_only_through_the_test_helper() {
        let capture = "\n@@kiln:ok@@\n1\n2\n\n@@kiln:empty@@\n\n@@kiln:no-match@@\nx\n";
        assert!(Probe::<Demo>::parse(capture, 0, "").is_err());
        let probe = Probe::<Demo>::from_capture_without_status(capture).unwrap();
        assert_eq!(probe.get(Demo::Ok).unwrap(), "1\n2");
        assert_eq!(probe.get(Demo::Empty).unwrap(), "");
        assert_eq!(probe.get(Demo::NoMatch).unwrap(), "x");
        assert_eq!(probe.outcome(Demo::Ok), None);
    }

    #[test]
    fn wire_names_are_one_word_and_distinct() {
        check_names::<Demo>();
    }
}
