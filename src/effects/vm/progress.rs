//! Progress of a long VM job on stderr, each line with the seconds since the job started.

use std::time::Instant;

pub struct Progress {
    start: Instant,
    /// Who speaks: `kiln bake`, or a scenario's name.
    label: String,
}

impl Progress {
    pub fn start(label: impl Into<String>) -> Progress {
        Progress::since(label, Instant::now())
    }

    /// A job that started at `start` (before the progress lines: the command's own start).
    pub fn since(label: impl Into<String>, start: Instant) -> Progress {
        Progress { start, label: label.into() }
    }

    pub fn say(&self, what: &str) {
        eprintln!("{}: [{:6.1}s] {what}", self.label, self.elapsed());
    }

    /// Seconds since the job started.
    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}
