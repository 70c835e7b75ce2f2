//! One `flatten` invocation: pick the engine, connect, flatten while
//! listening for interrupts, always clean up, and hand the result to the
//! reporter.

use std::sync::Arc;

use anyhow::Context;

use crate::cli::{FlattenArgs, GlobalArgs};
use crate::endpoint::{self, Env};
use crate::flatten::{FlattenError, Flattener, Options};
use crate::interrupt::{Interrupt, Interrupts};
use crate::report::{Reporter, Summary};

/// A flatten that failed; TAG was not touched.
#[derive(Debug, thiserror::Error)]
#[error("{source}; {tag} is unchanged")]
pub struct Failed {
    tag: String,
    source: FlattenError,
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
    let endpoint = endpoint::resolve(globals, &Env::from_process())
        .context("cannot choose the Docker engine")?;
    reporter.debug(globals.debug, &format!("engine endpoint: {endpoint}"));
    let docker = tokio::select! {
        docker = endpoint::connect(&endpoint) => docker?,
        interrupt = interrupts.next() => {
            return Err(Interrupted { interrupt, what: "nothing was changed".into() }.into())
        }
    };
    let flattener = Flattener::new(docker, endpoint.to_string());
    let options = Options {
        compression: args.compression.chosen(),
        force: args.force,
    };

    let result = tokio::select! {
        result = flattener.flatten(&args.image, &args.tag, options, reporter.clone()) => Ok(result),
        interrupt = interrupts.next() => Err(interrupt),
    };

    // A second interrupt during cleanup skips it, saying what is left.
    let leftovers = tokio::select! {
        left = flattener.cleanup(reporter.as_ref()) => Some(left),
        _ = interrupts.next() => None,
    };
    let tag = &args.tag;
    match &leftovers {
        None => reporter.warn(&format!(
            "cleanup skipped; remove this run's objects with: docker rm -fv $(docker ps -aq --filter label={}); \
             docker rmi $(docker images -q --filter label={})",
            crate::flatten::RUN_LABEL,
            crate::flatten::RUN_LABEL
        )),
        Some(left) if !left.is_empty() => {
            reporter.warn(&format!("could not remove every temporary object; remove them with: {left}"))
        }
        Some(_) => {}
    }

    match result {
        Err(interrupt) => Err(Interrupted {
            interrupt,
            what: format!("{tag} is unchanged"),
        }
        .into()),
        Ok(Err(source)) => Err(Failed {
            tag: tag.to_string(),
            source,
        }
        .into()),
        Ok(Ok(outcome)) => {
            reporter.debug(
                globals.debug,
                &format!(
                    "source {}; upload compression: {}; removed from the export: {}",
                    outcome.source_id,
                    outcome.compression,
                    outcome.filter.dropped.join(", ")
                ),
            );
            reporter.result(&outcome.id);
            reporter.summary(&Summary {
                source: &args.image,
                target: &tag.to_string(),
                layers_before: outcome.layers_before,
                size_before: outcome.size_before,
                size_after: outcome.size_after,
                elapsed: outcome.elapsed,
                already_flat: outcome.already_flat,
            });
            Ok(())
        }
    }
}
