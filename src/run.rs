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
use crate::engine::objects::Objects;
use crate::engine::pending::Pending;
use crate::engine::{self, Env};
use crate::error::Cause;
use crate::flatten::{Pipeline, Request};
use crate::interrupt::{Interrupt, Interrupts};
use crate::output::{Reporter, Run};

/// A flatten that failed; what it was to change is unchanged (said on a
/// line of its own after a message of several lines).
#[derive(Debug, thiserror::Error)]
#[error("{error}{}{unchanged}", if error.to_string().contains('\n') { "\n" } else { "; " })]
pub struct Failed {
    /// Quoted in the message, so not its `source()`.
    error: crate::error::Error,
    unchanged: String,
}

/// The exit code for a run that ended with `err` (docs/usage.md's table):
/// an interrupt's, 2 for a command that cannot work as given, else 1.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if let Some(interrupted) = err.downcast_ref::<Interrupted>() {
        return interrupted.interrupt.exit_code();
    }
    let error = err
        .downcast_ref::<Failed>()
        .map(|f| &f.error)
        .or_else(|| err.downcast_ref::<crate::error::Error>());
    error.map_or(1, crate::error::Error::exit_code)
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
        None => format!("{} is unchanged", request.tag()),
        Some(path) if path == Path::new("-") => "the archive on stdout is incomplete".into(),
        Some(path) => format!("{} is unchanged", path.display()),
    }
}

pub async fn run(job: &Job, reporter: Arc<Reporter>) -> anyhow::Result<()> {
    let mut interrupts = Interrupts::listen().context("cannot install signal handlers")?;
    // An archive into a file, or its dry run, reaches no engine at all.
    if let Some(input) = offline_input(job) {
        let objects = Objects::new(None);
        let pipeline = Pipeline::without_engine(input, &objects);
        let shown = input.display().to_string();
        let view = Run {
            image: &job.image,
            format: job.format,
            endpoint: None,
            input: Some(&shown),
            debug: job.debug,
        };
        return work(&pipeline, None, &view, job, &reporter, &mut interrupts).await;
    }
    let env = Env::from_process();
    let endpoint = engine::resolve(&job.engine, &env)?;
    reporter.debug(job.debug, &format!("engine endpoint: {endpoint}"));
    // Kept to the end: a TLS or ssh endpoint is reached through its bridge.
    let connection = tokio::select! {
        connection = engine::connect(&endpoint) => connection?,
        interrupt = interrupts.next() => {
            return Err(Interrupted { interrupt, what: "nothing was changed".into() }.into())
        }
    };
    // The engine's ID keys what a run notes on the client (engine/pending.rs).
    let pending = tokio::select! {
        info = connection.docker.info() => info.ok().and_then(|i| i.id).filter(|id| !id.is_empty()),
        interrupt = interrupts.next() => {
            return Err(Interrupted { interrupt, what: "nothing was changed".into() }.into())
        }
    }
    .map(|id| Pending::new(&engine::config_dir(&job.engine, &env), &id));
    // What a killed run left goes first, whatever this run is to do.
    let swept = tokio::select! {
        swept = engine::sweep::sweep(&connection.docker, pending.as_ref()) => swept,
        interrupt = interrupts.next() => {
            return Err(Interrupted { interrupt, what: "nothing was changed".into() }.into())
        }
    };
    if let Mode::Cleanup = job.mode {
        let swept = swept.with_context(|| format!("cannot clean up on {endpoint}"))?;
        reporter.cleaned(job.format, &swept);
        return match swept.failed.len() {
            0 => Ok(()),
            n => Err(anyhow::anyhow!(
                "{n} object(s) of runs that are gone could not be removed from {endpoint}"
            )),
        };
    }
    match swept {
        Ok(swept) => reporter.swept(&swept),
        // Not this run's business: the run itself will meet a broken engine.
        Err(e) => reporter.debug(job.debug, &format!("{e}: {}", e.0)),
    }
    let objects = Objects::new(pending);
    let pipeline = Pipeline::new(
        connection.docker.clone(),
        connection.inspect_json.clone(),
        endpoint.to_string(),
        &objects,
    );
    let input = input_of(job).map(|p| p.display().to_string());
    let view = Run {
        image: &job.image,
        format: job.format,
        endpoint: Some(&endpoint),
        input: input.as_deref(),
        debug: job.debug,
    };
    if let Mode::VerifyOnly { flat, merged } = &job.mode {
        let flat = flat.to_string();
        return verify_only(
            &pipeline,
            &view,
            job,
            (&flat, *merged),
            &reporter,
            &mut interrupts,
        )
        .await;
    }
    work(
        &pipeline,
        Some(&connection.docker),
        &view,
        job,
        &reporter,
        &mut interrupts,
    )
    .await
}

/// `-i`'s archive, where the run reads IMAGE from one.
fn input_of(job: &Job) -> Option<&Path> {
    match &job.mode {
        Mode::DryRun { input, .. } => input.as_deref(),
        Mode::Flatten(request) => request.input.as_deref(),
        Mode::VerifyOnly { .. } | Mode::Cleanup => None,
    }
}

/// `-i`'s archive, where the run needs no engine: its dry run, or its
/// flatten into a file.
fn offline_input(job: &Job) -> Option<&Path> {
    match &job.mode {
        Mode::Flatten(Request { output: None, .. }) => None,
        _ => input_of(job),
    }
}

/// A flatten or a dry run, with the engine (`docker`) or without; then the
/// cleanup of what the run made there.
async fn work(
    pipeline: &Pipeline<'_>,
    docker: Option<&bollard::Docker>,
    view: &Run<'_>,
    job: &Job,
    reporter: &Arc<Reporter>,
    interrupts: &mut Interrupts,
) -> anyhow::Result<()> {
    let request = match &job.mode {
        Mode::DryRun { .. } => return dry_run(pipeline, view, job, reporter, interrupts).await,
        Mode::Flatten(request) => request,
        Mode::VerifyOnly { .. } | Mode::Cleanup => unreachable!("answered before"),
    };
    if let Some(path) = request.output.as_deref().filter(|p| *p != Path::new("-")) {
        let dir = crate::sink::file::dir_of(path);
        reporter.swept_files(&crate::os::files::sweep_staged(&dir));
    }
    let objects = pipeline.objects();
    let result = tokio::select! {
        result = pipeline.flatten(request, reporter.clone()) => Ok(result),
        interrupt = interrupts.next() => Err(interrupt),
    };
    let stopped = Instant::now();
    if !matches!(result, Ok(Ok(_))) {
        reporter.stage_failed();
    }

    // A second interrupt during cleanup skips it, saying what is left.
    // A run without an engine made nothing there.
    if let Some(docker) = docker {
        let leftovers = tokio::select! {
            left = objects.cleanup(docker, reporter.as_ref()) => Some(left),
            _ = interrupts.next_signal_after(stopped) => None,
        };
        reporter.left_behind(leftovers.as_ref(), || objects.removal_commands());
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
            if let Cause::Differs(differs) = &error.cause {
                let tag = request.tag.as_ref().map(ToString::to_string);
                reporter.differs(view, &tag.unwrap_or_default(), differs, false);
            }
            return Err(Failed {
                error,
                unchanged: unchanged(request),
            }
            .into());
        }
        Ok(Ok(finished)) => finished,
    };
    // From an archive, IMAGE and TAG as the run named them.
    let (image, tag) = match &finished.named {
        Some((image, tag)) => (image.as_str(), tag.to_string()),
        None => (view.image, request.tag().to_string()),
    };
    let view = Run { image, ..*view };
    reporter.flattened(&view, &tag, &finished);
    Ok(())
}

/// `--verify-only IMAGE FLAT`: `flat` and whether it was `merged`.
async fn verify_only(
    pipeline: &Pipeline<'_>,
    view: &Run<'_>,
    job: &Job,
    (flat, merged): (&str, bool),
    reporter: &Arc<Reporter>,
    interrupts: &mut Interrupts,
) -> anyhow::Result<()> {
    let outcome = tokio::select! {
        outcome = pipeline.verify_only(&job.image, flat, merged, job.epoch, reporter.clone()) => outcome,
        interrupt = interrupts.next() => {
            reporter.stage_failed();
            return Err(Interrupted { interrupt, what: "nothing was changed".into() }.into())
        }
    };
    match outcome {
        Ok(outcome) => {
            reporter.verified_only(view, flat, &outcome);
            Ok(())
        }
        Err(error) => {
            reporter.stage_failed();
            if let Cause::Differs(differs) = &error.cause {
                reporter.differs(view, flat, differs, true);
            }
            Err(error.into())
        }
    }
}

async fn dry_run(
    pipeline: &Pipeline<'_>,
    view: &Run<'_>,
    job: &Job,
    reporter: &Arc<Reporter>,
    interrupts: &mut Interrupts,
) -> anyhow::Result<()> {
    let Mode::DryRun {
        tag,
        input,
        platform,
        keep,
    } = &job.mode
    else {
        unreachable!("called for a dry run")
    };
    let (platform, keep) = (platform.as_ref(), keep.as_ref());
    let outcome = tokio::select! {
        outcome = pipeline.dry_run(&job.image, input.as_deref(), platform, keep, reporter.clone()) => outcome,
        interrupt = interrupts.next() => {
            reporter.stage_failed();
            return Err(Interrupted { interrupt, what: "nothing was changed".into() }.into())
        }
    };
    let outcome = outcome.inspect_err(|_| reporter.stage_failed())?;
    let tag = tag.as_ref().map(ToString::to_string);
    let view = &Run {
        image: outcome.named.as_deref().unwrap_or(view.image),
        ..*view
    };
    reporter.dry_run_outcome(view, tag.as_deref(), keep.is_some(), &outcome);
    Ok(())
}

/// Answers a completion request. The CLI passes no global flags with it, so
/// the engine is the one the environment and config select.
pub async fn complete(words: &[String]) -> Completion {
    let prefix = match complete::want(words) {
        Want::Done(completion) => return completion,
        Want::Images { prefix } => prefix,
    };
    let endpoint = engine::resolve(&engine::Selection::default(), &Env::from_process()).ok();
    let list = async {
        let endpoint = endpoint?;
        // The containerd store's list fails whole (404 "failed to calculate
        // size of image …: content digest … not found") when an image goes
        // while it is listed, as in the test suite on Engine 26.1: asked
        // again, it lists the images that are left.
        for attempt in 1..=COMPLETION_ATTEMPTS {
            let listed = match engine::connect(&endpoint).await {
                Ok(connection) => connection
                    .docker
                    .list_images(None::<ListImagesOptions>)
                    .await
                    .ok(),
                Err(_) => None,
            };
            if listed.is_some() || attempt == COMPLETION_ATTEMPTS {
                return listed;
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
        None
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

/// A shell waits this long at most. An engine busy loading images (the
/// containerd store sizes every image it lists) took more than 5 s under
/// the test suite's load; a dead one fails at once.
const COMPLETION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
const COMPLETION_ATTEMPTS: u32 = 3;

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
            interrupt: Interrupt::CliClosed,
            what: "nothing was changed".into(),
        };
        crate::output::assert_causes_said_once(&interrupted);
    }

    #[test]
    fn what_is_unchanged_is_what_the_run_was_to_write() {
        let request = |output: Option<&str>| Request {
            image: "app:1".into(),
            tag: Some(crate::model::reference::Tag::parse("app:flat").unwrap()),
            input: None,
            output: output.map(Into::into),
            compression: None,
            force: false,
            platform: None,
            merge: None,
            verify: false,
            epoch: None,
        };
        assert_eq!(unchanged(&request(None)), "app:flat is unchanged");
        assert_eq!(unchanged(&request(Some("a.tar"))), "a.tar is unchanged");
        assert_eq!(
            unchanged(&request(Some("-"))),
            "the archive on stdout is incomplete"
        );
    }
}
