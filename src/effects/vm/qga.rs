//! qemu-guest-agent client: runs commands in the guest over virtio-serial, so checks keep working when
//! the guest's firewall closes every port.
//!
//! The channel is a plain byte stream that may hold leftovers from an earlier client: every session
//! starts with a 0xFF byte (the agent resets its parser) and `guest-sync-delimited`, whose reply is
//! preceded by 0xFF; everything before it is discarded.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use super::wait::wait_until;
use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

pub struct Agent {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

/// How often a connection to the agent is tried while the guest boots.
const CONNECT_RETRY: Duration = Duration::from_secs(1);
/// How often a running guest command is asked whether it has finished.
const EXEC_POLL: Duration = Duration::from_millis(200);

/// What a command printed and how it ended.
#[derive(Debug, Clone)]
pub struct Output {
    pub code: i64,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn ok(&self) -> bool {
        self.code == 0
    }
}

impl Agent {
    /// Connects and synchronizes, retrying until `deadline` (the agent starts late in boot).
    pub fn connect(socket: &Path, deadline: Instant) -> Result<Agent> {
        let mut last_error = None;
        let timeout = deadline.saturating_duration_since(Instant::now());
        let agent = wait_until(timeout, CONNECT_RETRY, || match Self::try_connect(socket) {
            Ok(agent) => Ok(Some(agent)),
            Err(e) => {
                last_error = Some(e);
                Ok(None)
            }
        })?;
        agent
            .ok_or_else(|| last_error.unwrap_or_else(|| anyhow::anyhow!("no attempt made")))
            .with_context(|| format!("the guest agent on {} did not answer", socket.display()))
    }

    fn try_connect(socket: &Path) -> Result<Agent> {
        let stream = UnixStream::connect(socket).with_context(|| format!("connecting to {}", socket.display()))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let writer = stream.try_clone()?;
        let mut agent = Agent { reader: BufReader::new(stream), writer };
        agent.sync()?;
        Ok(agent)
    }

    fn sync(&mut self) -> Result<()> {
        // A fresh id per session, so a reply queued for an earlier client is never mistaken for ours.
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let id = (std::process::id() << 20) ^ nanos;
        self.writer.write_all(&[0xff])?;
        self.send(&json!({"execute": "guest-sync-delimited", "arguments": {"id": id}}))?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let line = self.read_line()?;
            let text = match line.iter().rposition(|b| *b == 0xff) {
                Some(i) => &line[i + 1..],
                None => &line[..],
            };
            if let Ok(msg) = serde_json::from_slice::<Value>(text)
                && msg.get("return").and_then(Value::as_u64) == Some(u64::from(id))
            {
                return Ok(());
            }
        }
        bail!("no reply to guest-sync-delimited")
    }

    fn send(&mut self, message: &Value) -> Result<()> {
        let mut bytes = serde_json::to_vec(message)?;
        bytes.push(b'\n');
        self.writer.write_all(&bytes).context("writing to the guest agent")
    }

    fn read_line(&mut self) -> Result<Vec<u8>> {
        let mut line = Vec::new();
        let n = self.reader.read_until(b'\n', &mut line).context("reading from the guest agent")?;
        if n == 0 {
            bail!("the guest agent closed the channel");
        }
        Ok(line)
    }

    fn call(&mut self, command: &str, arguments: Value) -> Result<Value> {
        self.send(&json!({"execute": command, "arguments": arguments}))?;
        loop {
            let line = self.read_line()?;
            let text: Vec<u8> = line.into_iter().filter(|b| *b != 0xff).collect();
            let Ok(msg) = serde_json::from_slice::<Value>(&text) else { continue };
            if let Some(error) = msg.get("error") {
                bail!("guest agent {command} failed: {error}");
            }
            if let Some(ret) = msg.get("return") {
                return Ok(ret.clone());
            }
        }
    }

    /// Runs `program args…` in the guest with `stdin` as its input; waits at most `timeout`.
    pub fn exec(&mut self, program: &str, args: &[&str], stdin: Option<&[u8]>, timeout: Duration) -> Result<Output> {
        let pid = self.start(program, args, stdin)?;
        self.finish(pid, program, timeout)
    }

    /// Starts `program args…` in the guest and returns its pid without waiting, so that several guest
    /// commands can run at once; `finish` collects the result.
    pub fn start(&mut self, program: &str, args: &[&str], stdin: Option<&[u8]>) -> Result<i64> {
        let mut arguments = json!({"path": program, "arg": args, "capture-output": true});
        if let Some(input) = stdin {
            arguments["input-data"] = Value::String(STANDARD.encode(input));
        }
        self.call("guest-exec", arguments)?.get("pid").and_then(Value::as_i64).context("guest-exec returned no pid")
    }

    /// Waits at most `timeout` for a command from `start` and returns what it printed.
    pub fn finish(&mut self, pid: i64, program: &str, timeout: Duration) -> Result<Output> {
        let finished = wait_until(timeout, EXEC_POLL, || {
            let status = self.call("guest-exec-status", json!({"pid": pid}))?;
            if status.get("exited").and_then(Value::as_bool) != Some(true) {
                return Ok(None);
            }
            {
                let text = |key: &str| {
                    status
                        .get(key)
                        .and_then(Value::as_str)
                        .and_then(|b| STANDARD.decode(b).ok())
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default()
                };
                let code = status.get("exitcode").and_then(Value::as_i64).unwrap_or(-1);
                Ok(Some(Output { code, stdout: text("out-data"), stderr: text("err-data") }))
            }
        })?;
        finished.with_context(|| format!("`{program}` did not finish in the guest within {} s", timeout.as_secs()))
    }

    /// `bash -c SCRIPT` in the guest.
    pub fn shell(&mut self, script: &str, timeout: Duration) -> Result<Output> {
        self.exec("/bin/bash", &["-c", script], None, timeout)
    }

    /// Asks the guest to reboot or power off. The agent does not answer when it works.
    pub fn shutdown(&mut self, mode: &str) -> Result<()> {
        self.send(&json!({"execute": "guest-shutdown", "arguments": {"mode": mode}}))
    }
}
