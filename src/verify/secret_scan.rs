//! The secret scan in the guest: no secret value in any process argument, and every file holding one
//! 0600 (or 0400) root. The values reach the script on stdin, never as an argument.

use std::time::Duration;

use anyhow::{Result, anyhow};

use super::Check;
use super::protocol::{Outcome, Probe, Script, probe_sections};

probe_sections! {
    /// The secret scan's sections.
    pub enum ScanSection("the secret scan") {
        /// `MODE OWNER PATH` of each file holding a secret value.
        Files = "files",
        /// How many processes have a secret value in their arguments.
        Argv = "argv",
    }
}

pub type ScanProbe = Probe<ScanSection>;

/// How long the scan may take in the guest (it reads most of the disk's small files).
pub const SCAN_TIMEOUT: Duration = Duration::from_secs(180);

/// Where secrets could be written; package databases and container storage are left out (large, and
/// holding nothing kiln writes).
pub const SCANNED: &[&str] = &["/etc", "/var/log", "/var/lib", "/run", "/home", "/root", "/usr/local", "/tmp", "/opt"];
const SKIPPED_DIRS: &[&str] = &["dpkg", "apt", "docker", "containerd"];

/// The scan of `directories` (`SCANNED` in the harness).
pub fn script(directories: &[&str]) -> Script<ScanSection> {
    let excludes: Vec<String> = SKIPPED_DIRS.iter().map(|d| format!("--exclude-dir={d}")).collect();
    let directories: Vec<String> = directories.iter().map(|d| crate::templates::shell_quote(d)).collect();
    let mut s = Script::new("# The secret values, one per line.\npats=$(cat)\n");
    s.section(
        ScanSection::Files,
        &format!(
            r#"for d in {dirs}; do
  # Each must be there: one missing is the harness's assumption broken, not a file that vanished.
  [ -d "$d" ] || {{ printf 'no directory %s to scan\n' "$d" >&2; return 1; }}
done
rc=0
hits=$(grep -rlF {excludes} -f <(printf '%s\n' "$pats") {dirs}) || rc=$?
# grep exits 1 when no file holds a secret: an answer. Exit 2 means it could not read something: the
# files it found are still listed, and the harness accepts the status only when every message says a
# file vanished while grep walked the tree (`vanished_files_only`).
[ "$rc" -le 2 ] || return "$rc"
while IFS= read -r f; do
  [ -n "$f" ] || continue
  # A file can vanish between grep and stat too: then there is nothing left to report.
  stat -c '%a %U %n' -- "$f" || [ ! -e "$f" ]
done <<<"$hits"
return "$(( rc == 1 ? 0 : rc ))""#,
            excludes = excludes.join(" "),
            dirs = directories.join(" ")
        ),
    );
    s.section(
        ScanSection::Argv,
        r#"lines=
for p in /proc/[0-9]*; do
  if ! args=$(tr '\0' ' ' < "$p/cmdline"); then
    # The process exited between the glob and the read: it has no arguments left to leak.
    [ ! -e "$p" ] || return 1
    continue
  fi
  lines+="$args"$'\n'
done
# grep -c prints 0 and exits 1 when no process has a secret in its arguments: an answer.
printf '%s' "$lines" | kiln_grep -cF -f <(printf '%s\n' "$pats")"#,
    );
    s
}

/// The one failure the scan tolerates: grep (or stat) saying only that files vanished under it while it
/// walked /run and /tmp, which change as it reads them.
pub fn vanished_files_only(section: ScanSection, outcome: &Outcome) -> bool {
    let lines: Vec<&str> = outcome.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    section == ScanSection::Files
        && outcome.exit == 2
        && !lines.is_empty()
        && lines
            .iter()
            .all(|l| (l.starts_with("grep: ") || l.starts_with("stat: ")) && l.ends_with(": No such file or directory"))
}

/// A file holding a secret value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub mode: String,
    pub owner: String,
    pub path: String,
}

/// What the scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Findings {
    pub files: Vec<Holder>,
    pub processes: usize,
}

/// Parses the scan's output (the script's stdout, exit status and stderr).
pub fn parse(stdout: &str, exit: i64, stderr: &str) -> Result<Findings> {
    let probe = ScanProbe::parse_tolerating(stdout, exit, stderr, vanished_files_only)?;
    findings(&probe)
}

fn findings(probe: &ScanProbe) -> Result<Findings> {
    let files = probe
        .get(ScanSection::Files)?
        .lines()
        .map(|line| {
            let mut fields = line.splitn(3, ' ');
            match (fields.next(), fields.next(), fields.next()) {
                (Some(mode), Some(owner), Some(path))
                    if !mode.is_empty() && mode.bytes().all(|b| (b'0'..=b'7').contains(&b)) =>
                {
                    Ok(Holder { mode: mode.into(), owner: owner.into(), path: path.into() })
                }
                _ => Err(anyhow!("section files: `{line}` is not `MODE OWNER PATH`")),
            }
        })
        .collect::<Result<_>>()?;
    let argv = probe.get(ScanSection::Argv)?;
    let processes = argv.parse().map_err(|_| anyhow!("section argv: `{argv}` is not a count"))?;
    Ok(Findings { files, processes })
}

pub fn checks(findings: &Findings) -> Vec<Check> {
    let loose: Vec<String> = findings
        .files
        .iter()
        .filter(|f| !(matches!(f.mode.as_str(), "600" | "400") && f.owner == "root"))
        .map(|f| format!("{} {} {}", f.mode, f.owner, f.path))
        .collect();
    vec![
        Check::new(
            "files holding a secret are 0600 root",
            "only 0600 root files",
            if loose.is_empty() {
                format!("{} file(s), all 0600 root", findings.files.len())
            } else {
                format!("too open: {}", loose.join(", "))
            },
            loose.is_empty(),
        ),
        Check::new(
            super::check_names::NO_SECRET_IN_ARGV,
            "0 processes",
            format!("{} processes", findings.processes),
            findings.processes == 0,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;
    use std::os::unix::process::CommandExt as _;

    use super::super::protocol::marker;
    use super::super::protocol::testing::{assert_bash_syntax, check_names, run_bash};
    use super::*;

    #[test]
    fn wire_names_and_syntax() {
        check_names::<ScanSection>();
        assert_bash_syntax(&script(SCANNED).text());
    }

    /// The scan run on this machine over a directory of its own, with a process whose argv holds a
    /// secret (as the `ports` scenario's tampering starts one).
    #[test]
    fn the_scan_finds_files_and_arguments() {
        let secret = format!("kiln-test-secret-{}-{}", std::process::id(), line!());
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str, mode: u32| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            path
        };
        write("token", &format!("{secret}\n"), 0o600);
        let loose = write("with spaces.log", &format!("token={secret}\n"), 0o644);
        write("other", "nothing here\n", 0o644);
        std::fs::create_dir(dir.path().join("docker")).unwrap();
        std::fs::write(dir.path().join("docker/skipped"), &secret).unwrap();
        let scan = script(&[dir.path().to_str().unwrap()]).text();
        let input = format!("{secret}\nkiln-test-secret-absent\n");

        let (exit, stdout, stderr) = run_bash(&scan, None, input.as_bytes());
        let found = parse(&stdout, exit, &stderr).unwrap_or_else(|e| panic!("{e:#}"));
        let mut files: Vec<(String, String)> = found.files.iter().map(|f| (f.mode.clone(), f.path.clone())).collect();
        files.sort();
        assert_eq!(
            files,
            [
                ("600".to_string(), format!("{}/token", dir.path().display())),
                ("644".into(), loose.display().to_string())
            ]
        );
        assert_eq!(found.processes, 0);
        let checks = checks(&found);
        assert!(!checks[0].passed && checks[0].observed.contains("with spaces.log"), "{checks:?}");
        assert!(checks[1].passed);

        let mut leak = std::process::Command::new("sleep").arg0(&secret).arg("30").spawn().unwrap();
        let (exit, stdout, stderr) = run_bash(&scan, None, input.as_bytes());
        let _ = leak.kill();
        let _ = leak.wait();
        assert_eq!(parse(&stdout, exit, &stderr).unwrap().processes, 1);

        // Nothing anywhere: grep's "no match" is an answer, not an error.
        let (exit, stdout, stderr) = run_bash(&scan, None, b"kiln-test-secret-absent\n");
        assert_eq!(parse(&stdout, exit, &stderr).unwrap(), Findings { files: Vec::new(), processes: 0 });
    }

    #[test]
    fn a_directory_that_cannot_be_read_fails_the_scan() {
        let scan = script(&["/nonexistent/kiln-scan-test"]).text();
        let (exit, stdout, stderr) = run_bash(&scan, None, b"kiln-test-secret-absent\n");
        let error = format!("{:#}", parse(&stdout, exit, &stderr).unwrap_err());
        // Not a file that vanished (which grep would report in the same words): the scan says so first.
        assert!(
            error.contains(
                "probe command for section files failed (exit 1): no directory /nonexistent/kiln-scan-test to scan"
            ),
            "{error}"
        );
    }

    #[test]
    fn only_vanished_files_are_tolerated() {
        let outcome = |exit: i32, stderr: &str| Outcome { exit, stderr: stderr.into() };
        let vanished = "grep: /run/systemd/transient/x.scope: No such file or directory\nstat: cannot statx '/tmp/y': No such file or directory";
        assert!(vanished_files_only(ScanSection::Files, &outcome(2, vanished)));
        assert!(!vanished_files_only(ScanSection::Argv, &outcome(2, vanished)));
        assert!(!vanished_files_only(ScanSection::Files, &outcome(2, "grep: /etc/x: Permission denied")));
        assert!(!vanished_files_only(ScanSection::Files, &outcome(2, "")));
        assert!(!vanished_files_only(ScanSection::Files, &outcome(1, vanished)));
    }

    #[test]
    fn output_that_is_not_the_scans_is_refused() {
        let probe = |files: &str, argv: &str| {
            let capture = format!("{}\n{files}\n{}\n{argv}\n", marker("files"), marker("argv"));
            let p = ScanProbe::from_capture_without_status(&capture).unwrap();
            findings(&p)
        };
        assert_eq!(probe("600 root /etc/kiln/secrets/token", "0").unwrap().files[0].path, "/etc/kiln/secrets/token");
        assert!(probe("root /etc/x", "0").is_err());
        assert!(probe("", "").is_err());
        assert!(probe("", "grep: /proc/1/cmdline: Permission denied").is_err());
    }
}
