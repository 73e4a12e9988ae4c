//! Progress on standard error while a benchmark runs: a line per phase, with counts and the
//! time elapsed, and a counter that updates in place when standard error is a terminal (a
//! line every few seconds otherwise, so that a log shows the run is alive without filling up).
//!
//! Children inherit the parent's standard error, so their counters draw on the same terminal.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    label: String,
    terminal: bool,
    started: Instant,
    /// When the counter was last drawn.
    drawn: Option<Instant>,
    /// A counter is on the screen, without its newline.
    open: bool,
}

impl Progress {
    pub fn new(label: impl Into<String>) -> Progress {
        Progress {
            label: label.into(),
            terminal: std::io::stderr().is_terminal(),
            started: Instant::now(),
            drawn: None,
            open: false,
        }
    }

    /// One line: `[label] message`.
    pub fn line(&mut self, message: &str) {
        self.close();
        eprintln!("[{}] {message}", self.label);
    }

    /// A counter: `[label] what 120/2000 (3.2 s)`, drawn in place ten times a second on a
    /// terminal, every ten seconds elsewhere.
    pub fn count(&mut self, what: &str, done: usize, total: usize) {
        let now = Instant::now();
        let every = if self.terminal {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(10)
        };
        if self.drawn.is_some_and(|last| now - last < every) && done < total {
            return;
        }
        if self.drawn.is_none() && !self.terminal && done < total {
            // Not on a terminal, the first line waits for the first interval.
            self.drawn = Some(now);
            return;
        }
        self.drawn = Some(now);
        let text = format!(
            "[{}] {what} {done}/{total} ({:.1} s)",
            self.label,
            self.started.elapsed().as_secs_f64()
        );
        let mut stderr = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(stderr, "\r\x1b[K{text}");
            let _ = stderr.flush();
            self.open = true;
        } else if done < total {
            let _ = writeln!(stderr, "{text}");
        }
    }

    /// Ends an in-place counter, so that the next line starts on its own.
    pub fn close(&mut self) {
        if self.open {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[K");
            let _ = stderr.flush();
            self.open = false;
        }
        self.drawn = None;
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.close();
    }
}
