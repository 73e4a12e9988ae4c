//! The daemon's output: its log on stdout, its warnings and errors on stderr.
//!
//! A daemon whose output goes nowhere (a pipe whose reader has exited, a full disk) goes on
//! running the house: a line that cannot be written is dropped rather than stopping the thread
//! that wrote it (the standard library's `println!` panics then). The first such failure of
//! each stream is said on the other one, if that can be written.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether writing to stdout, and to stderr, has failed already.
static FAILED: [AtomicBool; 2] = [AtomicBool::new(false), AtomicBool::new(false)];

/// Where a line goes.
#[derive(Clone, Copy)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Writes `text` and a newline to `stream`, whole; never panics.
pub fn line(stream: Stream, text: std::fmt::Arguments<'_>) {
    let written = match stream {
        Stream::Stdout => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{text}").and_then(|()| out.flush())
        }
        Stream::Stderr => writeln!(std::io::stderr().lock(), "{text}"),
    };
    let Err(error) = written else { return };
    if FAILED[stream as usize].swap(true, Ordering::Relaxed) {
        return;
    }
    let message = |name: &str| {
        format!(
            "warning: cannot write to {name} ({error}); vigil serve goes on, and drops what it cannot write there"
        )
    };
    let _ = match stream {
        Stream::Stdout => writeln!(std::io::stderr().lock(), "{}", message("stdout")),
        Stream::Stderr => writeln!(std::io::stdout().lock(), "{}", message("stderr")),
    };
}
