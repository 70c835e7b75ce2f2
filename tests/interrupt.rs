//! Interrupts in the middle of the stream: SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to the
//! plugin run directly, to the `docker` CLI running it (which, its stdout
//! not being a terminal, closes the plugin's socket instead of passing the
//! signal on), and to the plugin under the CLI. Each must stop the run,
//! remove what it made, leave TAG alone, and exit 128 + the signal's number (130, 143, 129, 131).
//!
//! A proxy in front of the real engine forwards the first 300 KiB of the
//! export and then holds the stream, so the run is reliably mid-stream when
//! the signal arrives.
//!
//! Unix signals and process groups: on Windows this file compiles to
//! nothing (Ctrl-C and Ctrl-Break there have unit tests in `src/os/`).
#![cfg(unix)]

mod support;

use std::os::unix::process::CommandExt;
use std::time::Duration;

use support::processes::*;
use support::proxy::{Fault, Proxy};
use support::*;

#[derive(Debug, Clone, Copy)]
enum Target {
    /// `docker-flatten flatten …`, signalled itself.
    Plugin,
    /// `docker flatten …`, the CLI process signalled.
    Cli,
    /// `docker flatten …`, the plugin process under the CLI signalled.
    PluginUnderCli,
    /// `docker flatten …` in its own process group, the whole group
    /// signalled, as Ctrl-C in a terminal does: the plugin gets the signal
    /// and the CLI closes its socket, one interrupt arriving twice.
    Group,
}

fn interrupt_mid_stream(target: Target, sig: &str, code: i32) {
    let source = source_image();
    let tag = existing_tag();
    let cli = Cli::new();
    let proxy = Proxy::start(Some(Fault::StallResponse {
        matches: "/export",
        after: 300 * 1024,
    }));
    let before = dangling_volumes();
    let host = proxy.host();
    let args = [
        "-H",
        &host,
        "flatten",
        &source.image.reference,
        &tag.reference,
    ];
    let mut cmd = match target {
        Target::Plugin => plugin_command(&args),
        Target::Cli | Target::PluginUnderCli => cli.command(&args),
        Target::Group => {
            let mut cmd = cli.command(&args);
            cmd.process_group(0);
            cmd
        }
    };
    let child = start(&mut cmd);
    until_fired(&proxy, 1);
    match target {
        Target::Plugin | Target::Cli => signal(&child.id().to_string(), sig),
        Target::PluginUnderCli => signal(&child_of(child.id()).to_string(), sig),
        Target::Group => {
            child_of(child.id());
            signal(&format!("-{}", child.id()), sig)
        }
    }
    let out = wait(child, Duration::from_secs(60));
    let what = format!("{sig} to {target:?}");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{what}: {err}");
    assert!(err.contains("interrupted by"), "{what}: {err}");
    assert!(
        err.contains(&format!("{} is unchanged", tag.reference)),
        "{what}: {err}"
    );
    assert!(out.stdout.is_empty(), "{what}: printed an ID");
    assert_eq!(
        inspect(&tag.reference)["Id"],
        tag.id.as_str(),
        "{what}: TAG moved"
    );
    assert_nothing_left(&source, &before, &[], &what);
}

#[test]
fn sigint_to_the_plugin() {
    interrupt_mid_stream(Target::Plugin, "INT", 130);
}

#[test]
fn sigterm_to_the_plugin() {
    interrupt_mid_stream(Target::Plugin, "TERM", 143);
}

#[test]
fn sigint_to_the_cli() {
    interrupt_mid_stream(Target::Cli, "INT", 130);
}

#[test]
fn sigterm_to_the_cli() {
    interrupt_mid_stream(Target::Cli, "TERM", 130);
}

#[test]
fn sigint_to_the_plugin_under_the_cli() {
    interrupt_mid_stream(Target::PluginUnderCli, "INT", 130);
}

#[test]
fn ctrl_c_to_the_whole_process_group_cleans_up_once() {
    interrupt_mid_stream(Target::Group, "INT", 130);
}

/// The terminal closing (or an ssh session dropping) hangs the plugin up.
#[test]
fn sighup_to_the_plugin() {
    interrupt_mid_stream(Target::Plugin, "HUP", 129);
}

/// Ctrl-\ in a terminal.
#[test]
fn sigquit_to_the_plugin() {
    interrupt_mid_stream(Target::Plugin, "QUIT", 131);
}

#[test]
fn sighup_to_the_plugin_under_the_cli() {
    interrupt_mid_stream(Target::PluginUnderCli, "HUP", 129);
}

#[test]
fn sigterm_to_the_plugin_under_the_cli() {
    interrupt_mid_stream(Target::PluginUnderCli, "TERM", 143);
}

/// A second Ctrl-C while cleanup hangs skips it, and says exactly what is
/// left: the container it names exists, and removing what it lists (plus the
/// label filter) leaves nothing behind.
#[test]
fn a_second_interrupt_skips_cleanup_and_says_what_is_left() {
    let source = source_image();
    let tag = existing_tag();
    let proxy = Proxy::start_with(vec![
        Fault::StallResponse {
            matches: "/export",
            after: 300 * 1024,
        },
        // Cleanup's first removal never reaches the engine.
        Fault::Hang { matches: "DELETE " },
    ]);
    let before = dangling_volumes();
    let host = proxy.host();
    let args = [
        "-H",
        &host,
        "flatten",
        &source.image.reference,
        &tag.reference,
    ];
    let child = start(&mut plugin_command(&args));
    until_fired(&proxy, 1);
    signal(&child.id().to_string(), "INT");
    // Cleanup is now stuck on removing the container.
    until_fired(&proxy, 2);
    let hung = docker_ok(&[
        "ps",
        "-aq",
        "--no-trunc",
        "--filter",
        &format!("ancestor={}", source.image.id),
    ]);
    let hung = hung.trim().to_owned();
    assert!(
        !hung.is_empty() && !hung.contains('\n'),
        "one container: {hung:?}"
    );
    // Later than the window in which a second event counts as the same Ctrl-C.
    std::thread::sleep(Duration::from_secs(1));
    signal(&child.id().to_string(), "INT");
    let out = wait(child, Duration::from_secs(60));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("cleanup skipped"), "{err}");
    assert!(
        err.contains(&format!("docker rm -fv {hung}")),
        "names the container:\n{err}"
    );
    assert!(err.contains("label=com.docker-flatten.run="), "{err}");
    assert_eq!(inspect(&tag.reference)["Id"], tag.id.as_str(), "TAG moved");
    // Do what the message says, then nothing may be left. The run is
    // dead now, so another test's run may sweep the same objects at the
    // same time: one that is already going, or gone, counts as removed.
    as_told(&["rm", "-fv", &hung]);
    let labelled = docker_ok(&[
        "images",
        "-q",
        "--filter",
        &format!("label=com.docker-flatten.source={}", source.image.id),
    ]);
    for image in labelled.split_whitespace() {
        as_told(&["rmi", image]);
    }
    assert_nothing_left(&source, &before, &[], "a skipped cleanup, finished by hand");
}

/// A removal the plugin's message tells the user to make, which a
/// concurrent run's sweep of dead runs may be making too.
fn as_told(args: &[&str]) {
    let out = docker(args);
    let err = text(&out.stderr);
    let raced = ["already in progress", "No such container", "No such image"]
        .iter()
        .any(|why| err.contains(why));
    assert!(
        out.status.success() || raced,
        "docker {}: {err}",
        args.join(" ")
    );
    // A removal in progress elsewhere: wait until it is done.
    let id = args.last().expect("an object");
    let kind = if args[0] == "rm" {
        "container"
    } else {
        "image"
    };
    for _ in 0..100 {
        if !docker(&[kind, "inspect", id]).status.success() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("docker {} left {kind} {id}", args.join(" "));
}
