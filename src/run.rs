//! One `flatten` invocation: pick the engine, connect, flatten while
//! listening for interrupts, always clean up, and hand the result to the
//! reporter.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use bollard::query_parameters::ListImagesOptions;

use crate::cli::{FlattenArgs, Format, GlobalArgs};
use crate::complete::{self, Completion, Want};
use crate::engine::{self, Endpoint, Env};
use crate::flatten::{FlattenError, Flattener, Options};
use crate::interrupt::{Interrupt, Interrupts};
use crate::output::json::{Made, Source};
use crate::output::{Document, DryRunFacts, Reporter, Summary};

/// A flatten that failed; TAG was not touched. Says the failure's own
/// message, with the note, and hands on the failure's cause, as a
/// transparent error would: the message it quotes is not a link of its own.
#[derive(Debug)]
pub struct Failed {
    tag: String,
    source: FlattenError,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; {} is unchanged", self.source, self.tag)
    }
}

impl std::error::Error for Failed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.source)
    }
}

/// A run stopped by the user; carries the exit code to use.
#[derive(Debug, thiserror::Error)]
#[error("interrupted by {interrupt}: {what}")]
pub struct Interrupted {
    pub interrupt: Interrupt,
    pub what: String,
}

pub async fn flatten(
    globals: &GlobalArgs,
    args: &FlattenArgs,
    reporter: Arc<Reporter>,
) -> anyhow::Result<()> {
    let mut interrupts = Interrupts::listen().context("cannot install signal handlers")?;
    let endpoint = engine::resolve(globals, &Env::from_process())?;
    reporter.debug(globals.debug, &format!("engine endpoint: {endpoint}"));
    // Kept to the end: a TLS or ssh endpoint is reached through its bridge.
    let connection = tokio::select! {
        connection = engine::connect(&endpoint) => connection?,
        interrupt = interrupts.next() => {
            return Err(Interrupted { interrupt, what: "nothing was changed".into() }.into())
        }
    };
    let flattener = Flattener::new(
        connection.docker.clone(),
        connection.inspect_json.clone(),
        endpoint.to_string(),
    );
    let tag = match (&args.tag, args.dry_run) {
        (_, true) => return dry_run(&flattener, &endpoint, args, &reporter, &mut interrupts).await,
        (Some(tag), false) => tag,
        (None, false) => unreachable!("clap requires TAG without --dry-run"),
    };

    let options = Options {
        compression: args.compression.chosen(),
        force: args.force,
    };

    let result = tokio::select! {
        result = flattener.flatten(&args.image, tag, options, reporter.clone()) => Ok(result),
        interrupt = interrupts.next() => Err(interrupt),
    };
    let stopped = Instant::now();
    if !matches!(result, Ok(Ok(_))) {
        reporter.stage_failed();
    }

    // A second interrupt during cleanup skips it, saying what is left.
    let leftovers = tokio::select! {
        left = flattener.cleanup(reporter.as_ref()) => Some(left),
        _ = interrupts.next_signal_after(stopped) => None,
    };
    match &leftovers {
        None => {
            let made = flattener.made_so_far();
            let label = format!("{}={}", crate::flatten::RUN_LABEL, flattener.run_id());
            let known = if made.is_empty() {
                String::new()
            } else {
                format!("{made}; ")
            };
            reporter.warn(&format!(
                "cleanup skipped; remove what this run made with: {known}\
                 docker rm -fv $(docker ps -aq --filter label={label}); \
                 docker rmi $(docker images -q --filter label={label})"
            ))
        }
        Some(left) if !left.is_empty() => reporter.warn(&format!(
            "could not remove every temporary object; remove them with: {left}"
        )),
        Some(_) => {}
    }

    let outcome = match result {
        Err(interrupt) => {
            return Err(Interrupted {
                interrupt,
                what: format!("{tag} is unchanged"),
            }
            .into())
        }
        Ok(Err(source)) => {
            return Err(Failed {
                tag: tag.to_string(),
                source,
            }
            .into())
        }
        Ok(Ok(outcome)) => outcome,
    };
    reporter.debug(
        globals.debug,
        &format!(
            "source {}; upload compression: {}; removed from the export: {}",
            outcome.source_id,
            outcome.compression,
            outcome.filter.dropped.join(", ")
        ),
    );
    let target = tag.to_string();
    match args.format {
        Format::Text => reporter.result(&outcome.id),
        Format::Json => reporter.json(&Document::new(
            Source {
                reference: &args.image,
                id: &outcome.source_id,
                layers: outcome.layers_before,
                size: outcome.size_before,
            },
            Made::Image {
                reference: &target,
                id: &outcome.id,
                size: outcome.size_after,
                compression: outcome.compression,
                already_flat: outcome.already_flat,
            },
            &endpoint,
            outcome.store,
            outcome.elapsed,
        )),
    }
    reporter.summary(&Summary {
        source: &args.image,
        target: &target,
        layers_before: outcome.layers_before,
        size_before: outcome.size_before,
        size_after: outcome.size_after,
        elapsed: outcome.elapsed,
        already_flat: outcome.already_flat,
    });
    Ok(())
}

async fn dry_run(
    flattener: &Flattener,
    endpoint: &Endpoint,
    args: &FlattenArgs,
    reporter: &Arc<Reporter>,
    interrupts: &mut Interrupts,
) -> anyhow::Result<()> {
    let outcome = tokio::select! {
        outcome = flattener.dry_run(&args.image, reporter.clone()) => outcome,
        interrupt = interrupts.next() => {
            reporter.stage_failed();
            return Err(Interrupted { interrupt, what: "nothing was changed".into() }.into())
        }
    };
    let outcome = outcome.inspect_err(|_| reporter.stage_failed())?;
    let tag = args.tag.as_ref().map(ToString::to_string);
    match args.format {
        Format::Json => reporter.json(&Document::new(
            Source {
                reference: &args.image,
                id: &outcome.source_id,
                layers: outcome.layers_before,
                size: outcome.size_before,
            },
            Made::DryRun {
                tag: tag.as_deref(),
                savings: &outcome.savings,
            },
            endpoint,
            outcome.store,
            outcome.elapsed,
        )),
        Format::Text => reporter.dry_run(
            &DryRunFacts {
                image: &args.image,
                id: &outcome.source_id,
                tag: tag.as_deref(),
                endpoint: &endpoint.to_string(),
                store: outcome.store,
            },
            &outcome.savings,
        ),
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
        let endpoint = engine::resolve(&GlobalArgs::default(), &Env::from_process()).ok()?;
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

    #[test]
    fn a_failure_says_its_message_once_and_that_tag_is_unchanged() {
        let failed = Failed {
            tag: "app:flat".into(),
            source: FlattenError::NoSuchImage {
                image: "app:1".into(),
                endpoint: "unix:///s (context \"default\")".into(),
            },
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
}
