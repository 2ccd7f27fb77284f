//! Progress of a long VM job on stderr, each line with the seconds since the job started.
//!
//! On a terminal, the current phase also stays on a live line below the log (indicatif): a spinner, the
//! seconds ticking, and what the guest's console last said ("cloud-init[372]: Setting up docker.io …"), so a
//! five-minute boot visibly moves. Anywhere else (a pipe, a CI log) only the plain lines are written, exactly
//! as before: one per phase, nothing redrawn.

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often the live line redraws (the spinner and the seconds).
const TICK: Duration = Duration::from_millis(120);
/// The console line shown on the live line is cut to this many characters.
const DETAIL_CHARS: usize = 72;

/// Set when several jobs share one stderr (the CI scenarios run two guests at a time): live lines would
/// overwrite each other, so every job writes plain lines only.
static PLAIN_ONLY: AtomicBool = AtomicBool::new(false);

/// Makes every `Progress` of this process plain, terminal or not.
pub fn plain_only() {
    PLAIN_ONLY.store(true, Ordering::Relaxed);
}

pub struct Progress {
    start: Instant,
    /// Who speaks: `kiln bake`, or a scenario's name.
    label: String,
    /// The live line, on a terminal.
    live: Option<ProgressBar>,
}

impl Progress {
    pub fn start(label: impl Into<String>) -> Progress {
        Progress::since(label, Instant::now())
    }

    /// A job that started at `start` (before the progress lines: the command's own start).
    pub fn since(label: impl Into<String>, start: Instant) -> Progress {
        let live =
            (std::io::stderr().is_terminal() && !PLAIN_ONLY.load(Ordering::Relaxed)).then(ProgressDrawTarget::stderr);
        Progress::with_target(label.into(), start, live)
    }

    /// A job whose live line (if any) is drawn to `target`.
    pub(crate) fn with_target(label: String, start: Instant, target: Option<ProgressDrawTarget>) -> Progress {
        let live = target.map(|target| {
            let bar = ProgressBar::with_draw_target(None, target);
            let style = ProgressStyle::with_template("{prefix}: [{job_seconds}] {spinner} {msg}")
                .expect("the template is valid")
                .with_key("job_seconds", move |_: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:6.1}s", start.elapsed().as_secs_f64());
                });
            bar.set_style(style);
            bar.set_prefix(label.clone());
            bar.enable_steady_tick(TICK);
            bar
        });
        Progress { start, label, live }
    }

    /// A new phase: its plain line, and on a terminal the live line now shows it.
    pub fn say(&self, what: &str) {
        self.println(&self.line(what));
        if let Some(bar) = &self.live {
            bar.set_message(what.to_string());
        }
    }

    /// What the current phase is doing now (the console's last line): on the live line only.
    pub fn detail(&self, console: &str) {
        let Some(bar) = &self.live else { return };
        let Some(last) = last_line(console) else { return };
        let phase = bar.message();
        let phase = phase.split(" — ").next().unwrap_or_default().to_string();
        bar.set_message(format!("{phase} — {last}"));
    }

    /// A line of a child program's own output: on a terminal it becomes the live line's detail (the
    /// caller keeps the lines, to show them if the program fails); anywhere else it is written as it is,
    /// so a CI log has the whole output.
    pub fn output(&self, line: &str) {
        if self.live.is_some() { self.detail(line) } else { eprintln!("{line}") }
    }

    /// A line as it is, above the live line if there is one.
    pub fn println(&self, line: &str) {
        match &self.live {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// Whether a live line hides what `output` is given.
    pub fn is_live(&self) -> bool {
        self.live.is_some()
    }

    /// Seconds since the job started.
    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// The plain line for a phase.
    fn line(&self, what: &str) -> String {
        format!("{}: [{:6.1}s] {what}", self.label, self.elapsed())
    }
}

impl Drop for Progress {
    /// The live line goes away with the job; the plain lines stay.
    fn drop(&mut self) {
        if let Some(bar) = &self.live {
            bar.finish_and_clear();
        }
    }
}

/// The console's last non-empty line, without the kernel's timestamp, cut to `DETAIL_CHARS` characters.
fn last_line(console: &str) -> Option<String> {
    let line = console.lines().rev().map(str::trim).find(|l| !l.is_empty())?;
    let line = match line.strip_prefix('[').and_then(|rest| rest.split_once("] ")) {
        Some((stamp, rest)) if stamp.trim().parse::<f64>().is_ok() => rest,
        _ => line,
    };
    // Control characters (the console's escape sequences) would garble the live line.
    let clean: String = line.chars().filter(|c| !c.is_control()).collect();
    Some(match clean.char_indices().nth(DETAIL_CHARS) {
        Some((end, _)) => format!("{}…", &clean[..end]),
        None => clean,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use indicatif::{InMemoryTerm, TermLike as _};

    #[test]
    fn the_console_detail_is_its_last_line_without_the_timestamp() {
        let console = "[   12.5] cloud-init[372]: Get:1 http://10.0.2.100 ./ InRelease\n[  116.83] cloud-init[372]: Setting up docker.io (26.1.5) ...\n\n";
        assert_eq!(last_line(console).unwrap(), "cloud-init[372]: Setting up docker.io (26.1.5) ...");
        assert_eq!(last_line("no stamp\n").unwrap(), "no stamp");
        assert_eq!(last_line(&"x".repeat(100)).unwrap().chars().count(), DETAIL_CHARS + 1);
        assert_eq!(last_line("\n \n"), None);
    }

    #[test]
    fn on_a_terminal_the_live_line_shows_the_phase_the_seconds_and_the_console() {
        let term = InMemoryTerm::new(10, 120);
        let progress = Progress::with_target(
            "kiln bake".into(),
            Instant::now(),
            Some(ProgressDrawTarget::term_like(Box::new(term.clone()))),
        );
        progress.say("booting the build VM");
        progress.detail("[  98.5] cloud-init[372]: Setting up docker.io (26.1.5) ...\n");
        std::thread::sleep(TICK * 3);
        let screen = term.contents();
        // The plain line stays above; the live line has the phase, the seconds and the console's last line.
        assert!(screen.contains("kiln bake: ["), "{screen}");
        let live = screen.lines().last().unwrap_or_default();
        assert!(live.starts_with("kiln bake: ["), "{screen}");
        assert!(live.contains("booting the build VM — cloud-init[372]: Setting up docker.io"), "{screen}");
        // A new phase replaces the detail.
        progress.say("converting to qcow2");
        std::thread::sleep(TICK * 3);
        let screen = term.contents();
        assert!(screen.lines().last().unwrap_or_default().ends_with("converting to qcow2"), "{screen}");
        assert_eq!(term.height(), 10);
    }

    #[test]
    fn off_a_terminal_there_is_no_live_line() {
        let progress = Progress::with_target("kiln bake".into(), Instant::now(), None);
        assert!(progress.live.is_none());
        assert!(progress.line("converting").starts_with("kiln bake: ["));
        assert!(progress.line("converting").ends_with("s] converting"));
    }
}
