//! The live display on a terminal: a spinner per stage, a byte bar with
//! rate and ETA for the stream, and each finished stage as a line with ✓ or
//! ✗ and its duration. Every line is cut to the terminal's width: a wrapped
//! line is what leaves a terminal garbled when it is redrawn.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::text::{cut, seconds};

/// The running stage's bar, and the estimate the next byte bar starts with.
#[derive(Default)]
pub struct Bars {
    current: Mutex<Option<Running>>,
    expected: Mutex<u64>,
}

struct Running {
    bar: ProgressBar,
    started: Instant,
    label: String,
}

impl Bars {
    /// Shows a stage; `bytes`: with a byte bar against the expected size.
    pub fn begin(&self, label: String, bytes: bool) {
        let total = bytes.then(|| *self.expected.lock().expect("bars lock"));
        let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
        bar.set_style(live_style(bytes, terminal_width()));
        bar.set_message(label.clone());
        bar.enable_steady_tick(Duration::from_millis(100));
        let running = Running {
            bar,
            started: Instant::now(),
            label,
        };
        if let Some(previous) = self.current.lock().expect("bars lock").replace(running) {
            previous.bar.finish_and_clear();
        }
    }

    pub fn expect_bytes(&self, total: u64) {
        *self.expected.lock().expect("bars lock") = total;
    }

    pub fn bytes(&self, n: u64) {
        if let Some(Running { bar, .. }) = &*self.current.lock().expect("bars lock") {
            bar.inc(n);
            // The total is an estimate; past it, the stream itself is the best one.
            if bar.length().is_some_and(|total| bar.position() > total) {
                bar.set_length(bar.position());
            }
        }
    }

    /// Replaces the running stage's live line with its final line, marked
    /// ✓ or ✗. The final line is printed, not drawn by the bar, so it ends
    /// in a real newline: a bar pads its line to the terminal's width, which
    /// a terminal that reflows on resize would join with the next line.
    pub fn finish(&self, mark: char) {
        if let Some(running) = self.current.lock().expect("bars lock").take() {
            running.bar.finish_and_clear();
            let elapsed = running.started.elapsed();
            super::to_stderr(&done_line(mark, &running.label, elapsed, terminal_width()));
        }
    }

    /// Clears a bar left running by a failure so the terminal stays clean.
    pub fn abandon(&self) {
        if let Some(running) = self.current.lock().expect("bars lock").take() {
            running.bar.finish_and_clear();
        }
    }

    /// Runs `f` (which prints) with the live line out of its way.
    pub fn suspend(&self, f: impl FnOnce()) {
        match &*self.current.lock().expect("bars lock") {
            Some(running) => running.bar.suspend(f),
            None => f(),
        }
    }
}

/// The width of the terminal on stderr.
fn terminal_width() -> usize {
    console::Term::stderr()
        .size_checked()
        .map_or(80, |(_, cols)| cols as usize)
}

/// A running stage's line, on one line whatever the width.
fn live_style(bytes: bool, width: usize) -> ProgressStyle {
    let template = match (bytes, width) {
        (false, _) => "{spinner} {wide_msg}",
        (true, 100..) => {
            "{spinner} {msg:40!} [{wide_bar}] {bytes}/~{total_bytes} {binary_bytes_per_sec} ETA {eta}"
        }
        (true, 72..) => "{spinner} [{wide_bar}] {bytes}/~{total_bytes} {binary_bytes_per_sec} ETA {eta}",
        (true, 48..) => "{spinner} {bytes}/~{total_bytes} {binary_bytes_per_sec} ETA {eta}",
        (true, _) => "{spinner} {bytes}/~{total_bytes}",
    };
    ProgressStyle::with_template(template)
        .expect("valid template")
        .progress_chars("=> ")
}

/// A finished stage: "✓ label (1.2s)", the label cut to fit the width.
fn done_line(mark: char, label: &str, elapsed: Duration, width: usize) -> String {
    let time = format!(" ({})", seconds(elapsed));
    // The last column stays free: writing into it makes some terminals wrap.
    let room = width.saturating_sub(1 + 2 + time.chars().count()).max(8);
    format!("{mark} {}{time}", cut(label, room))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_lines_fit_any_width() {
        let label = "Creating a temporary container from registry.example/team/app:1.4";
        for width in [20, 40, 60, 200] {
            let line = done_line('✓', label, Duration::from_millis(1234), width);
            assert!(
                line.starts_with("✓ ") && line.ends_with(" (1.2s)"),
                "{line}"
            );
            assert!(line.chars().count() < width.max(20), "{width}: {line}");
        }
        assert_eq!(
            done_line('✗', "Tagging a:b", Duration::ZERO, 80),
            "✗ Tagging a:b (0.0s)"
        );
    }
}
