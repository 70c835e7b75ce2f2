//! One `flatten` job: pick the engine, connect, run the pipeline while
//! listening for interrupts, always clean up, and hand the result to the
//! reporter.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use bollard::query_parameters::ListImagesOptions;

use crate::cli::complete::{self, Completion, Want};
use crate::cli::job::{Job, Mode};
use crate::cli::Format;
use crate::engine::objects::Objects;
use crate::engine::{self, Endpoint, Env};
use crate::error::Cause;
use crate::flatten::{How, Made, Outcome, Pipeline, Request};
use crate::interrupt::{Interrupt, Interrupts};
use crate::model::source_index::LeftOut;
use crate::output::json::{Made as Result_, Source};
use crate::output::{text, Document, DryRunFacts, Reporter, Summary, VerifyDocument};

/// A flatten that failed; what it was to change is unchanged.
#[derive(Debug, thiserror::Error)]
#[error("{error}; {unchanged}")]
pub struct Failed {
    /// Quoted in the message, so not its `source()`.
    error: crate::error::Error,
    unchanged: String,
}

/// A run stopped by the user; carries the exit code to use.
#[derive(Debug, thiserror::Error)]
#[error("interrupted by {interrupt}: {what}")]
pub struct Interrupted {
    pub interrupt: Interrupt,
    pub what: String,
}

/// What a failed or interrupted flatten left as it was.
fn unchanged(request: &Request) -> String {
    match request.output.as_deref() {
        None => format!("{} is unchanged", request.tag),
        Some(path) if path == Path::new("-") => "the archive on stdout is incomplete".into(),
        Some(path) => format!("{} is unchanged", path.display()),
    }
}

pub async fn run(job: &Job, reporter: Arc<Reporter>) -> anyhow::Result<()> {
    let mut interrupts = Interrupts::listen().context("cannot install signal handlers")?;
    let endpoint = engine::resolve(&job.engine, &Env::from_process())?;
    reporter.debug(job.debug, &format!("engine endpoint: {endpoint}"));
    // Kept to the end: a TLS or ssh endpoint is reached through its bridge.
    let connection = tokio::select! {
        connection = engine::connect(&endpoint) => connection?,
        interrupt = interrupts.next() => {
            return Err(Interrupted { interrupt, what: "nothing was changed".into() }.into())
        }
    };
    let objects = Objects::new();
    let pipeline = Pipeline::new(
        connection.docker.clone(),
        connection.inspect_json.clone(),
        endpoint.to_string(),
        &objects,
    );
    let request = match &job.mode {
        Mode::DryRun { .. } => {
            return dry_run(&pipeline, &endpoint, job, &reporter, &mut interrupts).await;
        }
        Mode::VerifyOnly { flat, merged } => {
            let flat = flat.to_string();
            return verify_only(
                &pipeline,
                &endpoint,
                job,
                (&flat, *merged),
                &reporter,
                &mut interrupts,
            )
            .await;
        }
        Mode::Flatten(request) => request,
    };

    let result = tokio::select! {
        result = pipeline.flatten(request, reporter.clone()) => Ok(result),
        interrupt = interrupts.next() => Err(interrupt),
    };
    let stopped = Instant::now();
    if !matches!(result, Ok(Ok(_))) {
        reporter.stage_failed();
    }

    // A second interrupt during cleanup skips it, saying what is left.
    let leftovers = tokio::select! {
        left = objects.cleanup(&connection.docker, reporter.as_ref()) => Some(left),
        _ = interrupts.next_signal_after(stopped) => None,
    };
    match &leftovers {
        None => reporter.warn(&format!(
            "cleanup skipped; remove what this run made with: {}",
            objects.removal_commands()
        )),
        Some(left) if !left.is_empty() => reporter.warn(&format!(
            "could not remove every temporary object; remove them with: {left}"
        )),
        Some(_) => {}
    }

    let finished = match result {
        Err(interrupt) => {
            return Err(Interrupted {
                interrupt,
                what: unchanged(request),
            }
            .into())
        }
        Ok(Err(error)) => {
            if let (Format::Json, Cause::Differs(report)) = (job.format, &error.cause) {
                let tag = request.tag.to_string();
                let source = Source {
                    reference: &job.image,
                    id: &report.source.id,
                    layers: report.source.layers,
                    size: report.source.size,
                };
                reporter.json(&VerifyDocument::new(
                    false,
                    source,
                    (&tag, None),
                    &endpoint,
                    report.store,
                    &report.report,
                ));
            }
            return Err(Failed {
                error,
                unchanged: unchanged(request),
            }
            .into());
        }
        Ok(Ok(finished)) => finished,
    };
    let tag = request.tag.to_string();
    let (made, compression, how, verified) = match &finished.outcome {
        Outcome::AlreadyFlat => (None, None, None, None),
        Outcome::Flattened {
            made,
            compression,
            filter,
            how,
            verified,
        } => {
            reporter.debug(
                job.debug,
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
    match (job.format, id, &file) {
        (Format::Text, Some(id), None) => reporter.result(id),
        // The archive is the result: in the file, or on stdout.
        (Format::Text, _, _) => {}
        (Format::Json, _, _) => {
            let result = match (&file, id, compression) {
                (Some(file), _, Some(compression)) => Result_::Archive {
                    reference: &tag,
                    file,
                    size,
                    compression,
                },
                (_, id, compression) => Result_::Image {
                    reference: &tag,
                    id: id.unwrap_or_default(),
                    size,
                    compression,
                },
            };
            let document = Document::new(
                Source {
                    reference: &job.image,
                    id: &finished.source.id,
                    layers: finished.source.layers,
                    size: finished.source.size,
                },
                result,
                &endpoint,
                finished.store,
                finished.elapsed,
            )
            .with_platforms(&finished.platforms, &finished.left_out);
            let document = match kept.clone() {
                Some(kept) => document.merged(kept),
                None => document,
            };
            reporter.json(&document.verified(verified))
        }
    }
    let target = match &file {
        Some(file) if file == "-" => format!("stdout ({tag})"),
        Some(file) => format!("{file} ({tag})"),
        None => tag.clone(),
    };
    for warning in left_out_warnings(&job.image, &finished.left_out) {
        reporter.warn(&warning);
    }
    if let Some(report) = verified {
        reporter.note(&text::verified(&target, &job.image, report));
    }
    reporter.summary(&Summary {
        source: &job.image,
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
    Ok(())
}

/// What the result leaves out of IMAGE's index, said once each.
fn left_out_warnings(image: &str, left_out: &LeftOut) -> Vec<String> {
    let mut warnings = Vec::new();
    if !left_out.absent.is_empty() {
        let list: Vec<String> = left_out.absent.iter().map(ToString::to_string).collect();
        warnings.push(format!(
            "left out {} of {image}: its content is not in the store (a pull fetches only the \
             host's platform); to flatten it too, pull it (docker pull --platform {} {image}) \
             and run again",
            if list.len() == 1 {
                format!("platform {}", list[0])
            } else {
                format!("platforms {}", list.join(", "))
            },
            list[0]
        ));
    }
    if left_out.attestations > 0 {
        warnings.push(format!(
            "dropped {} attestation manifest(s) of {image} (provenance, SBOM): they describe \
             its layers, not the flattened ones",
            left_out.attestations
        ));
    }
    if !left_out.others.is_empty() {
        warnings.push(format!(
            "left out {} index entr{} of {image} that {} no image manifest ({})",
            left_out.others.len(),
            if left_out.others.len() == 1 {
                "y"
            } else {
                "ies"
            },
            if left_out.others.len() == 1 {
                "is"
            } else {
                "are"
            },
            left_out.others.join(", ")
        ));
    }
    warnings
}

/// `--verify-only IMAGE FLAT`: `flat` and whether it was `merged`.
async fn verify_only(
    pipeline: &Pipeline<'_>,
    endpoint: &Endpoint,
    job: &Job,
    (flat, merged): (&str, bool),
    reporter: &Arc<Reporter>,
    interrupts: &mut Interrupts,
) -> anyhow::Result<()> {
    let outcome = tokio::select! {
        outcome = pipeline.verify_only(&job.image, flat, merged, reporter.clone()) => outcome,
        interrupt = interrupts.next() => {
            reporter.stage_failed();
            return Err(Interrupted { interrupt, what: "nothing was changed".into() }.into())
        }
    };
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(error) => {
            reporter.stage_failed();
            if let (Format::Json, Cause::Differs(d)) = (job.format, &error.cause) {
                let source = Source {
                    reference: &job.image,
                    id: &d.source.id,
                    layers: d.source.layers,
                    size: d.source.size,
                };
                let document =
                    VerifyDocument::new(true, source, (flat, None), endpoint, d.store, &d.report);
                reporter.json(&document);
            }
            return Err(error.into());
        }
    };
    match job.format {
        Format::Json => {
            let source = Source {
                reference: &job.image,
                id: &outcome.source.id,
                layers: outcome.source.layers,
                size: outcome.source.size,
            };
            let result = (flat, Some(outcome.flat_id.as_str()));
            reporter.json(&VerifyDocument::new(
                true,
                source,
                result,
                endpoint,
                outcome.store,
                &outcome.report,
            ));
        }
        Format::Text => reporter.note(&text::verified(flat, &job.image, &outcome.report)),
    }
    Ok(())
}

async fn dry_run(
    pipeline: &Pipeline<'_>,
    endpoint: &Endpoint,
    job: &Job,
    reporter: &Arc<Reporter>,
    interrupts: &mut Interrupts,
) -> anyhow::Result<()> {
    let Mode::DryRun {
        tag,
        platform,
        keep,
    } = &job.mode
    else {
        unreachable!("called for a dry run")
    };
    let (platform, keep) = (platform.as_ref(), keep.as_ref());
    let outcome = tokio::select! {
        outcome = pipeline.dry_run(&job.image, platform, keep, reporter.clone()) => outcome,
        interrupt = interrupts.next() => {
            reporter.stage_failed();
            return Err(Interrupted { interrupt, what: "nothing was changed".into() }.into())
        }
    };
    let outcome = outcome.inspect_err(|_| reporter.stage_failed())?;
    let tag = tag.as_ref().map(ToString::to_string);
    match job.format {
        Format::Json => {
            let document = Document::new(
                Source {
                    reference: &job.image,
                    id: &outcome.source.id,
                    layers: outcome.source.layers,
                    size: outcome.source.size,
                },
                Result_::DryRun {
                    tag: tag.as_deref(),
                    savings: &outcome.platforms[0].savings,
                },
                endpoint,
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
            reporter.json(&match keep {
                Some(_) => document.merged(kept),
                None => document,
            })
        }
        Format::Text => {
            let several = outcome.platforms.len() > 1;
            for (i, analysed) in outcome.platforms.iter().enumerate() {
                let platform = analysed.platform.as_ref().map(ToString::to_string);
                reporter.dry_run(
                    &DryRunFacts {
                        image: &job.image,
                        id: &outcome.source.id,
                        tag: tag.as_deref(),
                        endpoint: &endpoint.to_string(),
                        store: outcome.store,
                        platform: platform.as_deref().filter(|_| several || analysed.chosen),
                        first: i == 0,
                    },
                    &analysed.savings,
                );
            }
            for warning in left_out_warnings(&job.image, &outcome.left_out) {
                reporter.warn(&warning);
            }
        }
    }
    Ok(())
}

/// Answers a completion request. The CLI passes no global flags with it, so
/// the engine is the one the environment and config select.
pub async fn complete(words: &[String]) -> Completion {
    let prefix = match complete::want(words) {
        Want::Done(completion) => return completion,
        Want::Images { prefix } => prefix,
    };
    let list = async {
        let endpoint = engine::resolve(&engine::Selection::default(), &Env::from_process()).ok()?;
        let connection = engine::connect(&endpoint).await.ok()?;
        connection
            .docker
            .list_images(None::<ListImagesOptions>)
            .await
            .ok()
    };
    // A shell waiting on a dead engine is worse than no candidates.
    match tokio::time::timeout(COMPLETION_TIMEOUT, list).await {
        Ok(Some(images)) => {
            let images: Vec<(Vec<String>, String)> =
                images.into_iter().map(|i| (i.repo_tags, i.id)).collect();
            complete::images(&prefix, &images)
        }
        _ => complete::failed(),
    }
}

const COMPLETION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Cause, Error, Step};

    #[test]
    fn a_failure_says_its_message_once_and_what_is_unchanged() {
        let failed = Failed {
            error: Error {
                step: Step::Inspect("app:1".into()),
                endpoint: "unix:///s (context \"default\")".into(),
                cause: Cause::NoSuchImage("app:1".into()),
            },
            unchanged: "app:flat is unchanged".into(),
        };
        let said = failed.to_string();
        assert!(
            said.starts_with("no such image \"app:1\" on unix:///s"),
            "{said}"
        );
        assert!(said.ends_with("; app:flat is unchanged"), "{said}");
        crate::output::assert_causes_said_once(&failed);
        let interrupted = Interrupted {
            interrupt: Interrupt::Sigterm,
            what: "nothing was changed".into(),
        };
        crate::output::assert_causes_said_once(&interrupted);
    }

    #[test]
    fn what_is_unchanged_is_what_the_run_was_to_write() {
        let request = |output: Option<&str>| Request {
            image: "app:1".into(),
            tag: crate::model::reference::Tag::parse("app:flat").unwrap(),
            output: output.map(Into::into),
            compression: None,
            force: false,
            platform: None,
            merge: None,
            verify: false,
        };
        assert_eq!(unchanged(&request(None)), "app:flat is unchanged");
        assert_eq!(unchanged(&request(Some("a.tar"))), "a.tar is unchanged");
        assert_eq!(
            unchanged(&request(Some("-"))),
            "the archive on stdout is incomplete"
        );
    }
}
