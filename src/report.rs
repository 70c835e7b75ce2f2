//! Everything the user sees. Logic reports through [`Progress`]; only this
//! module writes to stdout (the result) and stderr (progress, summary,
//! errors). Progress bars show only when stderr is a terminal, `TERM` is not
//! `dumb` and `--quiet` is off; otherwise stages are one plain line each.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The steps of a flatten, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Inspect,
    Create,
    Stream,
    Configure,
    Tag,
    Cleanup,
}

/// What the pipeline tells the user about its progress.
pub trait Progress: Send + Sync {
    /// A stage starts; `what` names its subject (an image, a tag).
    fn begin(&self, stage: Stage, what: &str);
    /// The current stage finished.
    fn end(&self);
    /// The stream stage's expected size, an estimate.
    fn expect_bytes(&self, total: u64);
    /// More bytes of the export went by.
    fn bytes(&self, n: u64);
}

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
        let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
        let mode = if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() && !dumb {
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
            Mode::Bars if stage == Stage::Stream => {
                let total = *self.expected.lock().expect("reporter lock");
                let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} {msg} {wide_bar} {bytes}/~{total_bytes} {binary_bytes_per_sec} {eta}",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                );
                bar
            }
            Mode::Bars => {
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {msg}").expect("valid template"),
                );
                bar
            }
        };
        bar.set_message(label.clone());
        bar.enable_steady_tick(Duration::from_millis(100));
        *self.current.lock().expect("reporter lock") = Some((bar, Instant::now(), label));
    }

    fn end(&self) {
        if let Some((bar, started, label)) = self.current.lock().expect("reporter lock").take() {
            if self.mode == Mode::Bars {
                bar.set_style(ProgressStyle::with_template("{msg}").expect("valid template"));
                bar.finish_with_message(format!("✓ {label} ({})", seconds(started.elapsed())));
            }
        }
    }

    fn expect_bytes(&self, total: u64) {
        *self.expected.lock().expect("reporter lock") = total;
    }

    fn bytes(&self, n: u64) {
        if let Some((bar, ..)) = &*self.current.lock().expect("reporter lock") {
            bar.inc(n);
        }
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}
