//! `docker-flatten`: a Docker CLI plugin that flattens an image into one layer.

mod cli;
mod encode;
mod engine;
mod error;
mod flatten;
mod interrupt;
mod layers;
mod model;
mod os;
mod output;
mod progress;
mod run;
mod saved;
mod sink;
mod source;
mod stream;
mod tar;
mod verify;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use crate::cli::{complete, job, metadata, Cli, Command};
use crate::output::Reporter;

fn main() -> ExitCode {
    os::allocator::tune();
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(request @ (complete::REQUEST | complete::REQUEST_NO_DESC)) =
        argv.get(1).and_then(|a| a.to_str())
    {
        let words: Vec<String> = argv[2..]
            .iter()
            .map(|w| w.to_string_lossy().into_owned())
            .collect();
        return complete(&words, request == complete::REQUEST);
    }
    let verify_only = argv.iter().any(|a| a == "--verify-only");
    let cli = match Cli::try_parse_from(help_as_a_word(argv)) {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            output::to_stderr(&cli::usage_error(&e, verify_only));
            return ExitCode::from(2);
        }
    };
    let args = match cli.command {
        Command::Metadata => {
            print!("{}", metadata::JSON);
            return ExitCode::SUCCESS;
        }
        Command::Flatten(args) => *args,
    };
    let reporter = Arc::new(Reporter::new(args.quiet));
    let terminal = |std| match std {
        job::Std::In => std::io::stdin().is_terminal(),
        job::Std::Out => std::io::stdout().is_terminal(),
    };
    let job = match job::lower(cli.globals, args, terminal) {
        Ok(job) => job,
        Err(e) => {
            reporter.error(&e.into(), false);
            // As for any other wrong arguments: nothing was done.
            return ExitCode::from(2);
        }
    };
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
    match runtime.block_on(run::run(&job, reporter.clone())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            reporter.error(&err, job.debug);
            ExitCode::from(run::exit_code(&err))
        }
    }
}

/// `docker flatten help` asks for the help, as `docker help` does; no image
/// is named `help` that a flatten of it with no TAG could mean.
fn help_as_a_word(mut argv: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    if argv.len() >= 3 && argv[argv.len() - 2] == "flatten" && argv[argv.len() - 1] == "help" {
        *argv.last_mut().expect("not empty") = "--help".into();
    }
    argv
}

/// The docker CLI asks for shell completions; stdout goes to the shell.
fn complete(words: &[String], descriptions: bool) -> ExitCode {
    let completion = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(run::complete(words)),
        Err(_) => complete::failed(),
    };
    print!("{}", completion.render(descriptions));
    eprintln!("{}", completion.note());
    ExitCode::SUCCESS
}
