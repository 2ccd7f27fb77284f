//! Whether TCP ports answer, seen from the harness's network namespace (`vm-tests/src/peer.rs`): a bash script
//! trying every port at once, and the reading of how each attempt ended.
//!
//! A connection attempt ends in one of three answers (it connected; it was refused or reset; nothing
//! came back within the window) or in a failure of the attempt itself (a tool missing, the namespace
//! gone), which is a harness error with the attempt's stderr, never "closed".

use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// How long a silent port is given before it counts as closed: a service under emulation answers within
/// a second or two.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long sshd is given to send its banner.
pub const BANNER_TIMEOUT: Duration = Duration::from_secs(8);
/// `timeout`'s exit status when the time ran out.
const TIMED_OUT: i32 = 124;

/// How a connection attempt (`timeout … bash -c 'exec 3<>/dev/tcp/…'`) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    Connected,
    /// Refused or reset: something (a firewall's REJECT, a closed port) said no.
    Refused,
    /// Nothing came back within the window (a firewall's DROP).
    Silent,
}

/// Reads the exit status (`None`: killed by a signal) and stderr of a connection attempt.
pub fn classify(exit: Option<i32>, stderr: &str) -> Result<Reach> {
    match exit {
        Some(0) => Ok(Reach::Connected),
        Some(TIMED_OUT) => Ok(Reach::Silent),
        // bash says `connect: Connection refused` (or `No route to host`…) when connect() fails.
        Some(1) if stderr.contains("connect: ") || stderr.contains("Connection reset by peer") => Ok(Reach::Refused),
        _ => bail!(
            "the connection attempt itself failed (exit {}): {}",
            exit.map_or("by signal".to_string(), |c| c.to_string()),
            if stderr.trim().is_empty() { "(no stderr)" } else { stderr.trim() }
        ),
    }
}

/// The bash command of one attempt at `$0:$1` (address and port as arguments, never spliced in).
pub const CONNECT: &str = "exec 3<>\"/dev/tcp/$0/$1\"";
/// The same, then up to 4 bytes of what the server says first.
pub const CONNECT_AND_READ_BANNER: &str = "exec 3<>\"/dev/tcp/$0/$1\" && head -c 4 <&3";

/// Tries every port of `address` at once; prints `PORT<TAB>EXIT<TAB>STDERR-BASE64` per port.
pub fn ports_script(address: &str, ports: &[u16]) -> String {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    format!(
        r#"set -u
for p in {ports}; do
  (
    rc=0
    err=$(timeout {secs} bash -c {connect} {address} "$p" 2>&1) || rc=$?
    printf '%s\t%s\t%s\n' "$p" "$rc" "$(printf '%s' "$err" | base64 -w0)"
  ) &
done
wait
"#,
        ports = ports.join(" "),
        secs = CONNECT_TIMEOUT.as_secs(),
        connect = crate::templates::shell_quote(CONNECT),
        address = crate::templates::shell_quote(address),
    )
}

/// `ports_script`'s output → the ports that accepted a connection, sorted. Every port asked about must
/// be there exactly once.
pub fn parse_ports(stdout: &str, ports: &[u16]) -> Result<Vec<u16>> {
    let mut seen = Vec::new();
    let mut open = Vec::new();
    for line in stdout.lines().filter(|l| !l.is_empty()) {
        let malformed = || anyhow!("`{line}` is not `PORT<TAB>EXIT<TAB>STDERR`");
        let mut fields = line.split('\t');
        let (Some(port), Some(exit), Some(stderr), None) = (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(malformed());
        };
        let port: u16 = port.parse().map_err(|_| malformed())?;
        let exit: i32 = exit.parse().map_err(|_| malformed())?;
        let stderr = String::from_utf8_lossy(&STANDARD.decode(stderr).map_err(|_| malformed())?).into_owned();
        if !ports.contains(&port) || seen.contains(&port) {
            bail!("port {port} reported unasked or twice");
        }
        seen.push(port);
        let reach = classify(Some(exit), &stderr).map_err(|e| anyhow!("port {port}: {e}"))?;
        if reach == Reach::Connected {
            open.push(port);
        }
    }
    if let Some(missing) = ports.iter().find(|p| !seen.contains(p)) {
        bail!("no result for port {missing}");
    }
    open.sort_unstable();
    Ok(open)
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::super::protocol::testing::{assert_bash_syntax, run_bash};
    use super::*;

    #[test]
    fn open_and_closed_ports_on_this_machine() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap().port();
        let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let script = ports_script("127.0.0.1", &[open, closed]);
        assert_bash_syntax(&script);
        let (exit, stdout, stderr) = run_bash(&script, None, b"");
        assert_eq!(exit, 0, "{stderr}");
        assert_eq!(parse_ports(&stdout, &[open, closed]).unwrap(), [open]);
        assert!(parse_ports(&stdout, &[open, closed, 1]).unwrap_err().to_string().contains("no result for port 1"));
        assert!(parse_ports(&stdout, &[open]).is_err());
    }

    #[test]
    fn a_failed_attempt_is_not_a_closed_port() {
        assert_eq!(classify(Some(0), "").unwrap(), Reach::Connected);
        assert_eq!(classify(Some(124), "").unwrap(), Reach::Silent);
        let refused = "bash: connect: Connection refused\nbash: line 1: /dev/tcp/192.0.2.2/80: Connection refused";
        assert_eq!(classify(Some(1), refused).unwrap(), Reach::Refused);
        for (exit, stderr) in [
            (Some(127), "timeout: failed to run command 'bash': No such file or directory"),
            (Some(1), "Cannot open network namespace \"kiln-wg-1\": No such file or directory"),
            (Some(125), "timeout: invalid time interval"),
            (None, ""),
        ] {
            let error = classify(exit, stderr).unwrap_err().to_string();
            assert!(error.contains("the connection attempt itself failed"), "{error}");
        }
        let line = format!("22\t127\t{}\n", STANDARD.encode("bash: timeout: command not found"));
        let error = parse_ports(&line, &[22]).unwrap_err().to_string();
        assert!(error.contains("port 22: the connection attempt itself failed (exit 127): bash: timeout"), "{error}");
    }
}
