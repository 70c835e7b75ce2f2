//! Everything the user sees. The pipeline reports through [`Progress`];
//! only this module writes: the result on stdout (an image ID, the JSON
//! document, the dry-run report), progress, the summary and errors on
//! stderr. The [`Reporter`] chooses how progress shows: bars on a terminal
//! ([`terminal`]), one plain line per stage when stderr is no terminal or
//! `TERM=dumb`, nothing with `--quiet`.

mod cleanup;
pub mod json;
mod report;
mod terminal;
pub mod text;

use std::io::{IsTerminal, Write};

use crate::layers::savings::Savings;
use crate::progress::{Progress, Stage};

pub use json::{Document, VerifyDocument};
pub use report::{Format, Run};
pub use text::{DryRunFacts, Summary};

/// How progress is shown.
enum Renderer {
    /// Live bars on a terminal.
    Terminal(terminal::Bars),
    /// A plain line per stage, for logs and pipes.
    Lines,
    /// Nothing (`--quiet`).
    Quiet,
}

/// Owns stdout and stderr.
pub struct Reporter {
    renderer: Renderer,
    quiet: bool,
}

impl Reporter {
    pub fn new(quiet: bool) -> Reporter {
        let renderer = if quiet {
            Renderer::Quiet
        } else if std::io::stderr().is_terminal() && !dumb_terminal() {
            Renderer::Terminal(terminal::Bars::default())
        } else {
            Renderer::Lines
        };
        Reporter { renderer, quiet }
    }

    /// The result on stdout: the new image ID, as `docker import` prints it.
    pub fn result(&self, id: &str) {
        self.stdout(&format!("{id}\n"));
    }

    /// The result on stdout as one JSON document.
    pub fn json(&self, document: &impl serde::Serialize) {
        let json = serde_json::to_string_pretty(document).expect("the document serializes");
        self.stdout(&format!("{json}\n"));
    }

    /// The dry-run report on stdout: a table cut to the terminal's width,
    /// whole lines when piped, the totals alone with `--quiet`.
    pub fn dry_run(&self, facts: &DryRunFacts<'_>, savings: &Savings) {
        let layout = if self.quiet {
            text::Layout::Totals
        } else {
            match stdout_width() {
                Some(width) => text::Layout::Table { width },
                None => text::Layout::Plain,
            }
        };
        self.stdout(&text::dry_run_text(facts, savings, layout));
    }

    fn stdout(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        // A closed stdout (e.g. `| head -0`) is not worth a second error.
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }

    /// The closing summary on stderr, unless `--quiet`.
    pub fn summary(&self, s: &Summary<'_>) {
        if !self.quiet {
            to_stderr(&text::summary(s));
        }
    }

    /// Prints an error: its message, one line; with `debug`, then each
    /// cause below it, one per line.
    pub fn error(&self, err: &anyhow::Error, debug: bool) {
        self.abandon();
        for line in error_lines(err, debug) {
            to_stderr(&line);
        }
    }

    /// A line on stderr, unless `--quiet` (what a verify found).
    pub fn note(&self, message: &str) {
        if !self.quiet {
            self.abandon();
            to_stderr(message);
        }
    }

    /// A note on stderr, shown even with `--quiet` (leftovers, warnings).
    pub fn warn(&self, message: &str) {
        self.abandon();
        to_stderr(&format!("docker flatten: {message}"));
    }

    /// A debug line, shown only with `--debug`.
    pub fn debug(&self, enabled: bool, message: &str) {
        if !enabled {
            return;
        }
        let print = || to_stderr(&format!("debug: {message}"));
        match &self.renderer {
            Renderer::Terminal(bars) => bars.suspend(print),
            Renderer::Lines | Renderer::Quiet => print(),
        }
    }

    /// Marks the running stage as the one that failed or was interrupted.
    pub fn stage_failed(&self) {
        if let Renderer::Terminal(bars) = &self.renderer {
            bars.finish('✗');
        }
    }

    fn abandon(&self) {
        if let Renderer::Terminal(bars) = &self.renderer {
            bars.abandon();
        }
    }
}

/// One line on stderr. A terminal that has gone away (closed, its ssh
/// session dropped) fails every write; `eprintln!` would panic there, and
/// a panic would end the run before its cleanup.
pub(crate) fn to_stderr(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

impl Progress for Reporter {
    fn begin(&self, stage: Stage, what: &str) {
        self.end();
        let label = text::stage_label(stage, what);
        match &self.renderer {
            Renderer::Terminal(bars) => {
                let bytes = matches!(
                    stage,
                    Stage::Stream
                        | Stage::Spool
                        | Stage::Load
                        | Stage::LoadIndex
                        | Stage::Write
                        | Stage::Read
                        | Stage::Merge
                        | Stage::Verify
                );
                bars.begin(label, bytes);
            }
            Renderer::Lines => to_stderr(&label),
            Renderer::Quiet => {}
        }
    }

    fn end(&self) {
        if let Renderer::Terminal(bars) = &self.renderer {
            bars.finish('✓');
        }
    }

    fn expect_bytes(&self, total: u64) {
        if let Renderer::Terminal(bars) = &self.renderer {
            bars.expect_bytes(total);
        }
    }

    fn bytes(&self, n: u64) {
        if let Renderer::Terminal(bars) = &self.renderer {
            bars.bytes(n);
        }
    }
}

/// An error as printed. Each link of the chain is printed once: every error
/// either quotes its cause in its message or returns it from `source()`,
/// never both ([`assert_causes_said_once`] holds each error type to it), so
/// nothing needs to be left out. The message says what failed, where and
/// what to do, so it stands alone; the causes are for `--debug`.
fn error_lines(err: &anyhow::Error, debug: bool) -> Vec<String> {
    let mut lines = vec![format!("docker flatten: {err}")];
    if debug {
        for cause in err.chain().skip(1) {
            lines.push(format!("  caused by: {cause}"));
        }
    }
    lines
}

/// The width of the terminal on stdout; `None` if stdout is no terminal
/// (or `TERM=dumb`), where text should be plain.
fn stdout_width() -> Option<usize> {
    let term = console::Term::stdout();
    if !term.is_term() || dumb_terminal() {
        return None;
    }
    Some(term.size_checked().map_or(80, |(_, cols)| cols as usize))
}

fn dumb_terminal() -> bool {
    std::env::var_os("TERM").is_some_and(|t| t == "dumb")
}

/// Asserts the rule the error printer relies on, for every link of `err`'s
/// chain: a message either quotes its cause or returns it from `source()`,
/// never both, so that printing each link once says everything once.
#[cfg(test)]
pub fn assert_causes_said_once(err: &(dyn std::error::Error + 'static)) {
    let mut link = Some(err);
    while let Some(e) = link {
        let (said, cause) = (e.to_string(), e.source());
        if let Some(cause) = cause {
            let cause = cause.to_string();
            assert!(
                !said.contains(&cause),
                "{said:?} quotes its source {cause:?} and also returns it"
            );
        }
        link = cause;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read {path}")]
    struct Outer {
        path: &'static str,
        source: std::io::Error,
    }

    #[test]
    fn the_message_stands_alone_and_debug_adds_each_cause_once() {
        let io = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let err = anyhow::Error::new(Outer {
            path: "/x",
            source: io,
        });
        assert_eq!(error_lines(&err, false), ["docker flatten: cannot read /x"]);
        assert_eq!(
            error_lines(&err, true),
            [
                "docker flatten: cannot read /x",
                "  caused by: permission denied"
            ]
        );
        let err = err.context("cannot flatten");
        assert_eq!(error_lines(&err, true).len(), 3);
    }
}
