//! Waiting on a guest or a process: one `wait_until` (a deadline and a poll interval), and the
//! timeouts shared by bake and test, named so a slow machine can be accommodated in one place.

use std::time::{Duration, Instant};

use anyhow::Result;

/// The guest agent starts late in boot (after cloud-init's network stage); under emulation, minutes.
pub const AGENT_CONNECT: Duration = Duration::from_secs(120);
/// A guest asked to power off or reboot goes down (systemd stops every unit first).
pub const SHUTDOWN: Duration = Duration::from_secs(180);
/// A short command in the guest (`sync`, `ufw status`, reading a file).
pub const GUEST_COMMAND: Duration = Duration::from_secs(60);
/// A probe script or a scan in the guest (reads many files, runs many tools).
pub const GUEST_PROBE: Duration = Duration::from_secs(120);

/// Calls `attempt` every `every` until it gives a value, it fails, or `timeout` passes. There is
/// always a first attempt, and one more at the deadline, so a slow poll never misses the last chance.
/// `Ok(None)` means the time ran out.
pub fn wait_until<T>(
    timeout: Duration,
    every: Duration,
    mut attempt: impl FnMut() -> Result<Option<T>>,
) -> Result<Option<T>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = attempt()? {
            return Ok(Some(value));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        std::thread::sleep(every.min(deadline - now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gives_the_value_when_it_comes_and_none_when_time_runs_out() {
        let mut calls = 0;
        let got = wait_until(Duration::from_secs(5), Duration::from_millis(1), || {
            calls += 1;
            Ok((calls == 3).then_some("ready"))
        });
        assert_eq!(got.unwrap(), Some("ready"));
        assert_eq!(calls, 3);
        let mut calls = 0;
        let never = wait_until(Duration::from_millis(30), Duration::from_millis(10), || {
            calls += 1;
            Ok(None::<()>)
        });
        assert_eq!(never.unwrap(), None);
        assert!(calls >= 2, "a first attempt and one at the deadline: {calls}");
    }

    #[test]
    fn an_attempt_that_fails_stops_the_wait() {
        let got = wait_until(Duration::from_secs(5), Duration::from_millis(1), || -> Result<Option<()>> {
            anyhow::bail!("QEMU exited")
        });
        assert_eq!(got.unwrap_err().to_string(), "QEMU exited");
    }
}
