//! `docker-flatten`: a Docker CLI plugin that flattens an image into one layer.

mod cli;
mod encode;
mod engine;
mod error;
mod flatten;
mod interrupt;
mod layers;
mod model;
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
    tune_allocator();
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
    let cli = Cli::parse();
    let args = match cli.command {
        Command::Metadata => {
            print!("{}", metadata::JSON);
            return ExitCode::SUCCESS;
        }
        Command::Flatten(args) => *args,
    };
    let reporter = Arc::new(Reporter::new(args.quiet));
    let job = match job::lower(cli.globals, args, || std::io::stdout().is_terminal()) {
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
            match err.downcast_ref::<run::Interrupted>() {
                Some(i) => ExitCode::from(i.interrupt.exit_code()),
                None => ExitCode::FAILURE,
            }
        }
    }
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

/// The pipeline allocates and frees 1 MiB blocks all the time. glibc raises
/// its mmap threshold after the first such block is freed and from then on
/// serves them from heaps that fragment: peak RSS grew with the image (40 MiB
/// at 1 GiB, 59 MiB at 4 GiB on the containerd store). At the default
/// threshold they stay mappings of their own, returned when freed: 14 MiB
/// at 4 GiB.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: first thing in main, before any other thread exists; mallopt
    // only changes a glibc tunable.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}
