//! What a finished run tells the user, rendered from its outcome: the
//! result on stdout (the image ID, the JSON document, the dry-run report),
//! and on stderr the warnings, the verify note and the summary. The runner
//! hands over outcomes; every sentence and document is made here.

use super::json::{Made as Result_, Source};
use super::{text, Document, DryRunFacts, Reporter, Summary, VerifyDocument};
use crate::engine::objects::Leftovers;
use crate::engine::Endpoint;
use crate::error::Differs;
use crate::flatten::{DryRunOutcome, Finished, How, Made, Outcome, VerifyOutcome};

/// What stdout carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The image ID (or the dry-run report) as text.
    Text,
    /// One JSON document describing the run.
    Json,
}

/// The run the outcome is of, as the user asked for it.
#[derive(Clone, Copy)]
pub struct Run<'a> {
    /// IMAGE as the user named it.
    pub image: &'a str,
    pub format: Format,
    /// `None` for a run that reached no engine (`-i` into a file).
    pub endpoint: Option<&'a Endpoint>,
    /// `-i`'s archive, as given.
    pub input: Option<&'a str>,
    /// `-D`: more on stderr.
    pub debug: bool,
}

impl Reporter {
    /// A finished flatten into TAG (or FILE, named TAG inside).
    pub fn flattened(&self, run: &Run<'_>, tag: &str, finished: &Finished) {
        let (made, compression, how, verified) = match &finished.outcome {
            Outcome::AlreadyFlat => (None, None, None, None),
            Outcome::Flattened {
                made,
                compression,
                filter,
                how,
                verified,
            } => {
                self.debug(
                    run.debug,
                    &format!(
                        "source {}; layer compression: {compression}; removed from the export: {}",
                        finished.source.id,
                        filter.dropped.join(", ")
                    ),
                );
                (Some(made), Some(*compression), Some(how), verified.as_ref())
            }
        };
        let kept = match how {
            Some(How::Merge { kept }) => Some(kept.clone()),
            _ => None,
        };
        // Already flat: TAG is IMAGE itself.
        let (id, size, file) = match made {
            None => (
                Some(finished.source.id.as_str()),
                finished.source.size,
                None,
            ),
            Some(Made::Image { id, size }) => (Some(id.as_str()), *size, None),
            Some(Made::Archive { path, size }) => (None, *size, Some(path.display().to_string())),
        };
        match (run.format, id, &file) {
            (Format::Text, Some(id), None) => self.result(id),
            // The archive is the result: in the file, or on stdout.
            (Format::Text, _, _) => {}
            (Format::Json, _, _) => {
                let result = match (&file, id, compression) {
                    (Some(file), _, Some(compression)) => Result_::Archive {
                        reference: tag,
                        file,
                        size,
                        compression,
                    },
                    (_, id, compression) => Result_::Image {
                        reference: tag,
                        id: id.unwrap_or_default(),
                        size,
                        compression,
                    },
                };
                let document = Document::new(
                    Source::of(run.image, run.input, &finished.source),
                    result,
                    run.endpoint,
                    finished.store,
                    finished.elapsed,
                )
                .with_platforms(&finished.platforms, &finished.left_out);
                let document = match kept.clone() {
                    Some(kept) => document.merged(kept),
                    None => document,
                };
                self.json(
                    &document
                        .verified(verified)
                        .replacing(finished.replaced.as_ref()),
                )
            }
        }
        let target = match &file {
            Some(file) if file == "-" => format!("stdout ({tag})"),
            Some(file) => format!("{file} ({tag})"),
            None => tag.to_owned(),
        };
        for warning in text::left_out(run.image, &finished.left_out) {
            self.warn(&warning);
        }
        if let Some(report) = verified {
            self.note(&text::verified(&target, run.image, report));
        }
        self.summary(&Summary {
            source: run.image,
            target: &target,
            layers_before: finished.source.layers,
            layers_after: 1 + kept.as_ref().map_or(0, Vec::len),
            size_before: finished.source.size,
            size_after: size,
            elapsed: finished.elapsed,
            already_flat: made.is_none(),
            platforms: finished
                .platforms
                .iter()
                .map(|f| {
                    let platform = f.platform.as_ref().map(ToString::to_string);
                    (
                        platform.unwrap_or_default(),
                        (f.layers_before, f.layers_after),
                        f.size_before,
                        f.size_after,
                    )
                })
                .collect(),
        });
        if let Some(replaced) = &finished.replaced {
            self.note(&text::replaced(tag, replaced));
        }
    }

    /// A verify that found differences: with `--format json`, the
    /// document that lists them (the error itself goes to stderr).
    /// `target` is TAG or FLAT; `only`: `--verify-only`.
    pub fn differs(&self, run: &Run<'_>, target: &str, differs: &Differs, only: bool) {
        if run.format == Format::Json {
            self.json(&VerifyDocument::new(
                only,
                Source::of(run.image, run.input, &differs.source),
                (target, None),
                run.endpoint,
                differs.store,
                &differs.report,
            ));
        }
    }

    /// `--verify-only IMAGE FLAT` that found FLAT whole.
    pub fn verified_only(&self, run: &Run<'_>, flat: &str, outcome: &VerifyOutcome) {
        match run.format {
            Format::Json => self.json(&VerifyDocument::new(
                true,
                Source::of(run.image, run.input, &outcome.source),
                (flat, Some(outcome.flat_id.as_str())),
                run.endpoint,
                Some(outcome.store),
                &outcome.report,
            )),
            Format::Text => self.note(&text::verified(flat, run.image, &outcome.report)),
        }
    }

    /// A dry run's analysis; `keep`: of a partial flatten.
    pub fn dry_run_outcome(
        &self,
        run: &Run<'_>,
        tag: Option<&str>,
        keep: bool,
        outcome: &DryRunOutcome,
    ) {
        match run.format {
            Format::Json => {
                let document = Document::new(
                    Source::of(run.image, run.input, &outcome.source),
                    Result_::DryRun {
                        tag,
                        savings: &outcome.platforms[0].savings,
                    },
                    run.endpoint,
                    outcome.store,
                    outcome.elapsed,
                )
                .with_analyses(&outcome.platforms, &outcome.left_out);
                // What a partial flatten keeps is the same bottom layers on
                // every platform; the first one's say which.
                let first = &outcome.platforms[0].savings;
                let kept: Vec<String> = first.layers[..first.kept_layers]
                    .iter()
                    .filter_map(|l| l.diff_id.clone())
                    .collect();
                self.json(&match keep {
                    true => document.merged(kept),
                    false => document,
                })
            }
            Format::Text => {
                let several = outcome.platforms.len() > 1;
                for (i, analysed) in outcome.platforms.iter().enumerate() {
                    let platform = analysed.platform.as_ref().map(ToString::to_string);
                    self.dry_run(
                        &DryRunFacts {
                            image: run.image,
                            id: &outcome.source.id,
                            tag,
                            endpoint: &run.endpoint.map_or_else(
                                || run.input.unwrap_or_default().to_owned(),
                                ToString::to_string,
                            ),
                            store: outcome.store,
                            platform: platform.as_deref().filter(|_| several || analysed.chosen),
                            first: i == 0,
                        },
                        &analysed.savings,
                    );
                }
                for warning in text::left_out(run.image, &outcome.left_out) {
                    self.warn(&warning);
                }
            }
        }
    }

    /// What the cleanup left: `None` when a second interrupt skipped it,
    /// else what it could not remove, said with the commands that do.
    pub fn left_behind(
        &self,
        leftovers: Option<&Leftovers>,
        removal_commands: impl FnOnce() -> String,
    ) {
        match leftovers {
            None => self.warn(&format!(
                "cleanup skipped; remove what this run made with: {}",
                removal_commands()
            )),
            Some(left) if !left.is_empty() => self.warn(&format!(
                "could not remove every temporary object; remove them with: {left}"
            )),
            Some(_) => {}
        }
    }
}
