//! Everything the user sees. Logic reports through [`Progress`]; only this
//! module writes to stdout (the result) and stderr (progress, summary,
//! errors). Progress bars show only when stderr is a terminal, `TERM` is not
//! `dumb` and `--quiet` is off; otherwise stages are one plain line each.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::progress::{Progress, Stage};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bars,
    Lines,
    Quiet,
}

/// Owns the terminal.
pub struct Reporter {
    mode: Mode,
    current: Mutex<Option<(ProgressBar, Instant, String)>>,
    expected: Mutex<u64>,
}

/// The facts for the closing summary.
pub struct Summary<'a> {
    pub source: &'a str,
    pub target: &'a str,
    pub layers_before: usize,
    pub size_before: u64,
    pub size_after: u64,
    pub elapsed: Duration,
    /// Nothing was built: the source has one layer and TAG now points at it.
    pub already_flat: bool,
}

impl Reporter {
    pub fn new(quiet: bool) -> Reporter {
        let mode = if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() && !dumb_terminal() {
            Mode::Bars
        } else {
            Mode::Lines
        };
        Reporter {
            mode,
            current: Mutex::new(None),
            expected: Mutex::new(0),
        }
    }

    /// The result on stdout: the new image ID, as `docker import` prints it.
    pub fn result(&self, id: &str) {
        let mut out = std::io::stdout().lock();
        // A closed stdout (e.g. `| head -0`) is not worth a second error.
        let _ = writeln!(out, "{id}");
    }

    /// The result on stdout as one JSON document.
    pub fn json(&self, document: &impl serde::Serialize) {
        let json = serde_json::to_string_pretty(document).expect("the document serializes");
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{json}");
    }

    /// A textual result (the dry-run report) on stdout.
    pub fn text(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
    }

    /// The width of the terminal on stdout; `None` if stdout is no terminal
    /// (or `TERM=dumb`), where text should be plain.
    pub fn stdout_width(&self) -> Option<usize> {
        let term = console::Term::stdout();
        if !term.is_term() || dumb_terminal() {
            return None;
        }
        Some(term.size_checked().map_or(80, |(_, cols)| cols as usize))
    }

    pub fn summary(&self, s: &Summary<'_>) {
        if self.mode == Mode::Quiet {
            return;
        }
        let layers = |n: usize| {
            if n == 1 {
                "1 layer".to_owned()
            } else {
                format!("{n} layers")
            }
        };
        if s.already_flat {
            eprintln!(
                "{} is already one layer; tagged it as {}, nothing rebuilt (use --force to rebuild it)",
                s.source, s.target
            );
            return;
        }
        eprintln!(
            "Flattened {} → {}: {} → 1 layer, {} → {}, in {}",
            s.source,
            s.target,
            layers(s.layers_before),
            HumanBytes(s.size_before),
            HumanBytes(s.size_after),
            seconds(s.elapsed)
        );
    }

    /// Prints an error: the message alone, or with `debug` the whole cause chain.
    pub fn error(&self, err: &anyhow::Error, debug: bool) {
        self.abandon();
        let mut said = err.to_string();
        eprintln!("docker flatten: {said}");
        if debug {
            for cause in err.chain().skip(1).map(|c| c.to_string()) {
                // Our messages quote the engine's words; don't repeat them.
                if !said.contains(&cause) {
                    eprintln!("  caused by: {cause}");
                    said.push_str(&cause);
                }
            }
        }
    }

    /// A note on stderr, shown even with `--quiet` (leftovers, warnings).
    pub fn warn(&self, message: &str) {
        self.abandon();
        eprintln!("docker flatten: {message}");
    }

    /// A debug line, shown only with `--debug`.
    pub fn debug(&self, enabled: bool, message: &str) {
        if enabled {
            self.suspend(|| eprintln!("debug: {message}"));
        }
    }

    fn suspend(&self, f: impl FnOnce()) {
        match &*self.current.lock().expect("reporter lock") {
            Some((bar, ..)) => bar.suspend(f),
            None => f(),
        }
    }

    /// Marks the running stage as the one that failed or was interrupted.
    pub fn stage_failed(&self) {
        self.close_stage('✗');
    }

    /// Replaces the live line of the running stage with its final line. The
    /// final line is printed, not drawn by the bar, so it ends in a real
    /// newline: a bar pads its line to the terminal's width, which a
    /// terminal that reflows on resize would join with the next line.
    fn close_stage(&self, mark: char) {
        if let Some((bar, started, label)) = self.current.lock().expect("reporter lock").take() {
            if self.mode == Mode::Bars {
                bar.finish_and_clear();
                eprintln!(
                    "{}",
                    done_line(mark, &label, started.elapsed(), terminal_width())
                );
            }
        }
    }

    /// Clears a bar left running by a failure so the terminal stays clean.
    fn abandon(&self) {
        if let Some((bar, ..)) = self.current.lock().expect("reporter lock").take() {
            bar.finish_and_clear();
        }
    }

    fn label(stage: Stage, what: &str) -> String {
        match stage {
            Stage::Inspect => format!("Inspecting {what}"),
            Stage::Create => format!("Creating a temporary container from {what}"),
            Stage::Stream => "Exporting the container into an import".to_owned(),
            Stage::Spool => "Exporting the container into a compressed layer file".to_owned(),
            Stage::Load => format!("Loading the layer with the config and platform of {what}"),
            Stage::Write => format!("Writing the image archive to {what}"),
            Stage::Read => format!("Reading the layers of {what}"),
            Stage::Configure => format!("Applying the config and platform of {what}"),
            Stage::Tag => format!("Tagging {what}"),
            Stage::Cleanup => "Removing temporary objects".to_owned(),
        }
    }
}

impl Progress for Reporter {
    fn begin(&self, stage: Stage, what: &str) {
        self.end();
        let label = Reporter::label(stage, what);
        let bar = match self.mode {
            Mode::Quiet => ProgressBar::hidden(),
            Mode::Lines => {
                eprintln!("{label}");
                ProgressBar::hidden()
            }
            Mode::Bars => {
                let bytes = matches!(
                    stage,
                    Stage::Stream | Stage::Spool | Stage::Load | Stage::Write | Stage::Read
                );
                let total = bytes.then(|| *self.expected.lock().expect("reporter lock"));
                let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
                bar.set_style(live_style(bytes, terminal_width()));
                bar
            }
        };
        bar.set_message(label.clone());
        bar.enable_steady_tick(Duration::from_millis(100));
        *self.current.lock().expect("reporter lock") = Some((bar, Instant::now(), label));
    }

    fn end(&self) {
        self.close_stage('✓');
    }

    fn expect_bytes(&self, total: u64) {
        *self.expected.lock().expect("reporter lock") = total;
    }

    fn bytes(&self, n: u64) {
        if let Some((bar, ..)) = &*self.current.lock().expect("reporter lock") {
            bar.inc(n);
            // The total is an estimate; past it, the stream itself is the best one.
            if bar.length().is_some_and(|total| bar.position() > total) {
                bar.set_length(bar.position());
            }
        }
    }
}

/// The width of the terminal on stderr.
fn terminal_width() -> usize {
    console::Term::stderr()
        .size_checked()
        .map_or(80, |(_, cols)| cols as usize)
}

/// A running stage's line. Everything stays on one line whatever the width:
/// a wrapped line is what leaves a terminal garbled when it is redrawn.
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
    let label = if label.chars().count() > room {
        let mut cut: String = label.chars().take(room - 1).collect();
        cut.push('…');
        cut
    } else {
        label.to_owned()
    };
    format!("{mark} {label}{time}")
}

fn dumb_terminal() -> bool {
    std::env::var_os("TERM").is_some_and(|t| t == "dumb")
}

fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
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
