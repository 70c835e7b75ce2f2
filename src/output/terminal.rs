//! The live display on a terminal: a spinner per stage, a byte bar for the
//! streams, and each finished stage as a line with ✓ or ✗ and its duration.
//! Every line is cut to the terminal's width (a wrapped line is what leaves
//! a terminal garbled when it is redrawn), and the stage's name is the last
//! thing to go, as `docker pull` keeps `a1b2: Downloading [==> ] 12MB/50MB`:
//! the bar shrinks first, then the rate and the ETA.
//!
//! A byte bar says that it waits for the engine until the first byte comes
//! (a save can take seconds to start), shows no ETA before the rate has
//! been measured for a while, and marks its total as an estimate (`~`): it
//! is the image's size, which the stream need not reach.

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
    /// The byte bar's state: `None` for a spinner.
    bytes: Option<ByteBar>,
}

/// Where a byte bar is in its life.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ByteBar {
    /// No byte yet.
    Waiting,
    /// Bytes since this instant: the rate is not known well enough for an ETA.
    Measuring(Instant),
    /// With rate and ETA.
    Steady,
}

/// How long the rate is measured before an ETA is shown.
const MEASURE: Duration = Duration::from_secs(2);

impl Bars {
    /// Shows a stage; `bytes`: with a byte bar against the expected size.
    pub fn begin(&self, label: String, bytes: bool) {
        let total = bytes.then(|| *self.expected.lock().expect("bars lock"));
        let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
        let state = bytes.then_some(ByteBar::Waiting);
        style(&bar, &label, state);
        bar.enable_steady_tick(Duration::from_millis(100));
        let running = Running {
            bar,
            started: Instant::now(),
            label,
            bytes: state,
        };
        if let Some(previous) = self.current.lock().expect("bars lock").replace(running) {
            previous.bar.finish_and_clear();
        }
    }

    pub fn expect_bytes(&self, total: u64) {
        *self.expected.lock().expect("bars lock") = total;
    }

    pub fn bytes(&self, n: u64) {
        if let Some(running) = &mut *self.current.lock().expect("bars lock") {
            let next = match running.bytes {
                Some(ByteBar::Waiting) => Some(ByteBar::Measuring(Instant::now())),
                Some(ByteBar::Measuring(since)) if since.elapsed() >= MEASURE => {
                    Some(ByteBar::Steady)
                }
                same => same,
            };
            if next != running.bytes {
                running.bytes = next;
                style(&running.bar, &running.label, next);
            }
            let bar = &running.bar;
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

/// Gives `bar` the look of its state, cut to the terminal's width.
fn style(bar: &ProgressBar, label: &str, state: Option<ByteBar>) {
    let (template, room) = live_template(state, terminal_width());
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(cut(label, room));
}

/// A running stage's template and the room its label gets at `width`
/// columns: the label keeps at least its first words (the stage's name);
/// the bar takes what is left, at least 10 columns, or goes.
fn live_template(state: Option<ByteBar>, width: usize) -> (&'static str, usize) {
    // The last column stays free, and the spinner takes two.
    let usable = width.saturating_sub(3);
    // Widest counts of each tail: "[" + bar + "] ", "999.9MB/~999.9MB",
    // " 999.9MB/s", " ETA 59m".
    let (amounts, rate, eta) = (17, 10, 8);
    let label_room = |tail: usize| usable.saturating_sub(tail).max(12);
    match state {
        None => ("{spinner} {wide_msg}", usable),
        Some(ByteBar::Waiting) => (
            "{spinner} {msg}: waiting for the engine…",
            label_room(": waiting for the engine…".chars().count()),
        ),
        Some(_) if usable < 12 + 13 + amounts => (
            "{spinner} {msg} {decimal_bytes}/~{decimal_total_bytes}",
            label_room(1 + amounts),
        ),
        Some(ByteBar::Measuring(_)) => {
            let room = label_room(1 + 13 + amounts + rate).min(usable * 6 / 10);
            (
                "{spinner} {msg} [{wide_bar}] {decimal_bytes}/~{decimal_total_bytes} {decimal_bytes_per_sec}",
                room,
            )
        }
        Some(ByteBar::Steady) if usable < 12 + 13 + amounts + rate + eta => {
            let room = label_room(1 + 13 + amounts + rate);
            (
                "{spinner} {msg} [{wide_bar}] {decimal_bytes}/~{decimal_total_bytes} {decimal_bytes_per_sec}",
                room,
            )
        }
        Some(ByteBar::Steady) => {
            let room = label_room(1 + 13 + amounts + rate + eta).min(usable * 6 / 10);
            (
                "{spinner} {msg} [{wide_bar}] {decimal_bytes}/~{decimal_total_bytes} {decimal_bytes_per_sec} ETA {eta}",
                room,
            )
        }
    }
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
    fn the_stage_name_stays_and_the_bar_shrinks() {
        let states = [
            Some(ByteBar::Waiting),
            Some(ByteBar::Measuring(Instant::now())),
            Some(ByteBar::Steady),
            None,
        ];
        for width in [40, 60, 80, 120, 200] {
            for state in states {
                let (template, room) = live_template(state, width);
                assert!(room >= 12, "{width}: the label keeps its stage name");
                assert!(room <= width, "{width}");
                let eta = template.contains("{eta}");
                assert!(
                    !eta || matches!(state, Some(ByteBar::Steady)),
                    "no ETA before the rate is known: {template}"
                );
            }
        }
        assert!(live_template(Some(ByteBar::Steady), 120).0.contains("ETA"));
        assert!(!live_template(Some(ByteBar::Steady), 60).0.contains("ETA"));
        assert!(live_template(Some(ByteBar::Waiting), 80)
            .0
            .contains("waiting for the engine"));
    }

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
