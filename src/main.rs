//! `docker-flatten`: a Docker CLI plugin that flattens an image into one layer.

mod cli;
mod endpoint;
mod flatten;
mod image_config;
mod interrupt;
mod metadata;
mod reference;
mod report;
mod run;
mod tarfilter;
mod upload;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::report::Reporter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = match cli.command {
        Command::Metadata => {
            print!("{}", metadata::JSON);
            return ExitCode::SUCCESS;
        }
        Command::Flatten(args) => args,
    };
    let reporter = Arc::new(Reporter::new(args.quiet));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            reporter.error(
                &anyhow::Error::new(e).context("cannot start the async runtime"),
                true,
            );
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run::flatten(&cli.globals, &args, reporter.clone())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            reporter.error(&err, cli.globals.debug);
            match err.downcast_ref::<run::Interrupted>() {
                Some(i) => ExitCode::from(i.interrupt.exit_code()),
                None => ExitCode::FAILURE,
            }
        }
    }
}
