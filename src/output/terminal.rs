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
        let target = ProgressDrawTarget::term_like_with_hz(Box::new(Margined::stderr()), 20);
        let bar = ProgressBar::with_draw_target(total, target);
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

/// The terminal on stderr as the bars see it: [`MARGIN`] columns narrower.
/// indicatif pads a live line to the width it is given; a line that fills
/// the terminal leaves the cursor past the last column, where the `^C` a
/// terminal echoes at Ctrl-C wraps onto a new line, and the bar's line can
/// no longer be cleared: it would stay, frozen, above the ✗ line.
#[derive(Debug)]
struct Margined(console::Term);

const MARGIN: u16 = 3;

impl Margined {
    fn stderr() -> Margined {
        Margined(console::Term::stderr())
    }
}

impl indicatif::TermLike for Margined {
    fn width(&self) -> u16 {
        self.0.size().1.saturating_sub(MARGIN).max(1)
    }
    fn height(&self) -> u16 {
        self.0.size().0
    }
    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_up(n)
    }
    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_down(n)
    }
    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_right(n)
    }
    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_left(n)
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.0.write_line(s)
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.0.write_str(s)
    }
    fn clear_line(&self) -> std::io::Result<()> {
        self.0.clear_line()
    }
    fn flush(&self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// The width of the terminal on stderr.
pub fn width() -> usize {
    terminal_width()
}

fn terminal_width() -> usize {
    console::Term::stderr()
        .size_checked()
        .map_or(80, |(_, cols)| cols as usize)
}

/// Gives `bar` the look of its state, cut to the terminal's width.
fn style(bar: &ProgressBar, label: &str, state: Option<ByteBar>) {
    let (template, room) = live_template(state, label.chars().count(), terminal_width());
    bar.set_style(
        ProgressStyle::with_template(&template)
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(cut(label, room));
}

/// The widest a byte bar's numbers get: `999.99 MB/~999.99 MB`, ` 999.99
/// MB/s`, ` ETA 59m`.
const AMOUNTS: usize = 20;
const RATE: usize = 12;
const ETA: usize = 8;
/// The narrowest bar worth drawing, and the least of a label: its stage's name.
const MIN_BAR: usize = 10;
const MIN_LABEL: usize = 12;

/// A running stage's template and the room its `label_len`-character label
/// gets at `width` columns. The label keeps at least its first words (the
/// stage's name); the bar takes what is left, and the ETA, the rate and the
/// bar go, in that order, before the label is cut further. The line stays
/// three columns short of the width: a line that fills it leaves the
/// cursor past the last column, where the `^C` a terminal echoes wraps onto
/// a new line, and the bar could then not be cleared.
fn live_template(state: Option<ByteBar>, label_len: usize, width: usize) -> (String, usize) {
    let usable = width.saturating_sub(2 + 3);
    let fit = |tail: usize| label_len.min(usable.saturating_sub(tail)).max(MIN_LABEL);
    let Some(state) = state else {
        return ("{spinner} {msg}".into(), fit(0));
    };
    if state == ByteBar::Waiting {
        let waiting = [": waiting for the engine…", ": waiting…"]
            .into_iter()
            .find(|w| usable >= MIN_LABEL + w.chars().count())
            .unwrap_or("");
        return (
            format!("{{spinner}} {{msg}}{waiting}"),
            fit(waiting.chars().count()),
        );
    }
    let steady = state == ByteBar::Steady;
    let amounts = "{decimal_bytes}/~{decimal_total_bytes}";
    for (eta, rate) in [(steady, true), (false, true), (false, false)] {
        let tail = 1 + AMOUNTS + if rate { RATE } else { 0 } + if eta { ETA } else { 0 };
        // The label takes what it needs, up to what leaves the bar its least.
        let label = fit(tail + 3 + MIN_BAR);
        let bar = usable.saturating_sub(label + 3 + tail);
        if bar >= MIN_BAR {
            let mut template = format!("{{spinner}} {{msg}} [{{bar:{bar}}}] {amounts}");
            if rate {
                template.push_str(" {decimal_bytes_per_sec}");
            }
            if eta {
                template.push_str(" ETA {eta}");
            }
            return (template, label);
        }
    }
    (format!("{{spinner}} {{msg}} {amounts}"), fit(1 + AMOUNTS))
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
    fn the_stage_name_stays_and_the_line_never_fills_the_width() {
        let states = [
            Some(ByteBar::Waiting),
            Some(ByteBar::Measuring(Instant::now())),
            Some(ByteBar::Steady),
            None,
        ];
        for width in [40, 60, 80, 100, 120, 200] {
            for state in states {
                let (template, room) = live_template(state, 60, width);
                assert!(room >= MIN_LABEL, "{width}: the label keeps its stage name");
                // The widest the line gets: label, bar, numbers at their widest.
                let bar = template.split("{bar:").nth(1).map_or(0, |r| {
                    r.split('}').next().unwrap().parse::<usize>().unwrap()
                });
                let widest = 2
                    + room
                    + if bar > 0 { 3 + bar } else { 0 }
                    + if template.contains("decimal_bytes}") {
                        1 + AMOUNTS
                    } else {
                        0
                    }
                    + if template.contains("per_sec") {
                        RATE
                    } else {
                        0
                    }
                    + if template.contains("{eta}") { ETA } else { 0 }
                    + if template.contains("for the engine") {
                        25
                    } else {
                        0
                    }
                    + if template.contains("waiting…") {
                        10
                    } else {
                        0
                    };
                assert!(
                    widest <= width.saturating_sub(3).max(2 + MIN_LABEL + 1 + AMOUNTS),
                    "{width} {template}: {widest}"
                );
                assert!(
                    !template.contains("{eta}") || state == Some(ByteBar::Steady),
                    "no ETA before the rate is known: {template}"
                );
            }
        }
        let (steady, room) = live_template(Some(ByteBar::Steady), 45, 120);
        assert!(steady.contains("ETA") && room == 45, "{steady} {room}");
        let (narrow, _) = live_template(Some(ByteBar::Steady), 45, 60);
        assert!(
            !narrow.contains("ETA") && narrow.contains("{bar:"),
            "{narrow}"
        );
        assert!(live_template(Some(ByteBar::Waiting), 30, 80)
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
