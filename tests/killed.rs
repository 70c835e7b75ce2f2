//! Runs that end without a chance to clean up: SIGKILL (as an out-of-memory
//! kill or a power loss would end them) at each stage, and a terminal
//! closed under a run. A killed run's objects must be gone once the next
//! run has started, and that run must never touch the objects of a run that
//! is still going. A closed terminal hangs the run up: it cleans up at once.
//!
//! One test, its scenarios in turn: every run starts with a sweep, so a
//! second test in this binary could remove what the first one's kill left
//! before the first one looks.
#![cfg(unix)]

mod support;

use std::collections::BTreeSet;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use support::processes::*;
use support::proxy::{Fault, Proxy};
use support::*;

/// What runs from `source` made: the containers and images that carry its
/// run's label, and the images that carry IMAGE's marker (its results).
fn labelled(source: &Source) -> BTreeSet<String> {
    let filter = format!("label=com.docker-flatten.source={}", source.image.id);
    let marker = format!("label={MARKER}={}", source.marker);
    let mut found = BTreeSet::new();
    for args in [
        ["ps", "-aq", "--no-trunc", "--filter", &filter],
        ["images", "-q", "--no-trunc", "--filter", &filter],
        ["images", "-q", "--no-trunc", "--filter", &marker],
    ] {
        found.extend(docker_ok(&args).split_whitespace().map(str::to_owned));
    }
    found.remove(&source.image.id);
    found
}

/// Starts `args` through a proxy with `fault`, waits until it fired, and
/// returns the running plugin.
/// The run notes an untagged result in the docker config directory, which
/// the next run, through `cli`, must share.
fn stalled(cli: &Cli, fault: Fault, args: &[&str]) -> (Child, Proxy) {
    let proxy = Proxy::start(Some(fault));
    let host = proxy.host();
    let mut argv = vec!["-H", &host, "flatten"];
    argv.extend_from_slice(args);
    let mut cmd = plugin_command(&argv);
    cmd.env("DOCKER_CONFIG", cli.config_dir());
    let child = start(&mut cmd);
    until_fired(&proxy, 1);
    (child, proxy)
}

/// SIGKILLs `child` and returns what its run had made.
fn kill(mut child: Child, source: &Source) -> BTreeSet<String> {
    let made = labelled(source);
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    made
}

/// `docker flatten --cleanup --format json`, through the CLI, on the engine
/// itself: the next run.
fn cleanup(cli: &Cli) -> serde_json::Value {
    let out = cli.docker(&["flatten", "--cleanup", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("--cleanup's JSON")
}

fn ids(document: &serde_json::Value, key: &str) -> BTreeSet<String> {
    document[key]
        .as_array()
        .expect("a list")
        .iter()
        .map(|e| e["id"].as_str().expect("an id").to_owned())
        .collect()
}

#[test]
fn a_killed_run_leaves_nothing_once_the_next_has_started() {
    let source = source_image();
    let tag = existing_tag();
    let cli = Cli::new();
    let before = dangling_volumes();
    let src = source.image.reference.as_str();
    let target = tag.reference.as_str();
    let tag_unchanged = |what: &str| {
        assert_eq!(inspect(target)["Id"], tag.id.as_str(), "{what}: TAG moved");
    };

    // Each stage: the run is held there by the proxy, then killed.
    let stages: [(&str, Fault, &[&str]); 6] = [
        (
            "the container made, its export asked for",
            Fault::Hang { matches: "/export" },
            &[],
        ),
        (
            "mid-export",
            Fault::StallResponse {
                matches: "/export",
                after: 300 * 1024,
            },
            &[],
        ),
        (
            // The graphdriver store has imported the layer (a labelled
            // image) and loads the config; the containerd store loads the
            // spooled layer.
            "mid-load",
            Fault::StallRequest {
                matches: "/images/load",
                after: 1024,
            },
            &[],
        ),
        (
            "mid-load of a merge",
            Fault::StallRequest {
                matches: "/images/load",
                after: 1024,
            },
            &["--exact"],
        ),
        (
            // Loaded, untagged: no label finds the result, the client's note does.
            "the result loaded, its tag asked for",
            Fault::Hang { matches: "/tag?" },
            &[],
        ),
        (
            "the merged result loaded, its tag asked for",
            Fault::Hang { matches: "/tag?" },
            &["--exact"],
        ),
    ];
    for (what, fault, flags) in stages {
        let mut args = flags.to_vec();
        args.extend([src, target]);
        let (child, _proxy) = stalled(&cli, fault, &args);
        let made = kill(child, &source);
        if flags.is_empty() || what.contains("loaded") {
            assert!(!made.is_empty(), "{what}: the run had made nothing yet");
        }
        let swept = cleanup(&cli);
        let removed = ids(&swept, "removed");
        assert!(
            made.iter().all(|id| removed
                .iter()
                .any(|r| r.ends_with(id.trim_start_matches("sha256:")))),
            "{what}: made {made:?}, the next run removed {removed:?}"
        );
        assert_nothing_left(&source, &before, &[], what);
        tag_unchanged(what);
    }

    // -o FILE: the archive being written has no name until it is whole.
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("app.tar");
    let file_arg = file.display().to_string();
    let (child, _proxy) = stalled(
        &cli,
        Fault::StallResponse {
            matches: "/export",
            after: 300 * 1024,
        },
        &["-o", &file_arg, src, target],
    );
    kill(child, &source);
    let in_dir: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(in_dir.is_empty(), "-o left files: {in_dir:?}");
    // The next run says what it removed, before its own work.
    let other = unique("next");
    let out = cli.docker(&["flatten", target, &other]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("Removed what an earlier run left (process ")
            && err.contains(", which is gone): container "),
        "the next run says what it removed:\n{err}"
    );
    docker_ok(&["rmi", &other]);
    assert_nothing_left(&source, &before, &[], "-o killed mid-write");

    // Two runs at once, one killed: the next run removes only the dead one's.
    let (alive, _alive_proxy) = stalled(
        &cli,
        Fault::StallResponse {
            matches: "/export",
            after: 300 * 1024,
        },
        &[src, target],
    );
    let alive_made = labelled(&source);
    assert_eq!(alive_made.len(), 1, "one container: {alive_made:?}");
    let (dead, _dead_proxy) = stalled(
        &cli,
        Fault::StallResponse {
            matches: "/export",
            after: 300 * 1024,
        },
        &[src, target],
    );
    let dead_made: BTreeSet<_> = kill(dead, &source)
        .difference(&alive_made)
        .cloned()
        .collect();
    assert_eq!(dead_made.len(), 1, "one more container: {dead_made:?}");
    let swept = cleanup(&cli);
    assert_eq!(ids(&swept, "removed"), dead_made, "{swept:#}");
    assert!(ids(&swept, "kept").is_superset(&alive_made), "{swept:#}");
    assert_eq!(
        labelled(&source),
        alive_made,
        "the live run's container stays"
    );
    signal(&alive.id().to_string(), "INT");
    let out = wait(alive, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    assert_nothing_left(&source, &before, &[], "a live run beside a killed one");

    // Stderr closed under the run (a log pipe gone): every line it writes
    // fails (EPIPE), and the interrupt's cleanup must still happen.
    let (mut run, _proxy) = stalled(
        &cli,
        Fault::StallResponse {
            matches: "/export",
            after: 300 * 1024,
        },
        &[src, target],
    );
    drop(run.stderr.take());
    signal(&run.id().to_string(), "TERM");
    let out = wait(run, Duration::from_secs(60));
    assert_eq!(
        out.status.code(),
        Some(143),
        "stderr closed: exits as for SIGTERM"
    );
    assert_nothing_left(&source, &before, &[], "an interrupt with stderr closed");
    tag_unchanged("an interrupt with stderr closed");

    // A closed terminal: the CLI and the plugin get SIGHUP from the kernel.
    terminal_closed_mid_export(&cli, &source, target);
    assert_nothing_left(&source, &before, &[], "a terminal closed mid-export");
    tag_unchanged("a terminal closed mid-export");
}

/// `docker flatten` in a real terminal (tmux), held mid-export, then the
/// terminal's server killed: the pane's processes are hung up.
fn terminal_closed_mid_export(cli: &Cli, source: &Source, target: &str) {
    let proxy = Proxy::start(Some(Fault::StallResponse {
        matches: "/export",
        after: 300 * 1024,
    }));
    let socket = unique("dflt-tmux");
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .args(["-L", &socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("run tmux")
    };
    let line = format!(
        "env DOCKER_CONFIG='{}' docker -H '{}' flatten '{}' '{}'; sleep 600",
        cli.config_dir().display(),
        proxy.host(),
        source.image.reference,
        target,
    );
    let out = tmux(&["new-session", "-d", "-x", "80", "-y", "24", &line]);
    assert!(out.status.success(), "tmux: {}", text(&out.stderr));
    until_fired(&proxy, 1);
    assert!(!labelled(source).is_empty(), "the run made its container");
    let out = tmux(&["kill-server"]);
    assert!(
        out.status.success(),
        "tmux kill-server: {}",
        text(&out.stderr)
    );
    // The plugin cleans up on its own; nothing else runs a sweep here.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !labelled(source).is_empty() || plugin_running(target) {
        assert!(
            Instant::now() < deadline,
            "a hung-up run still has {:?} a minute later",
            labelled(source)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether a plugin process whose command line names `target` still runs.
fn plugin_running(target: &str) -> bool {
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .any(|cmdline| {
            let cmdline = String::from_utf8_lossy(&cmdline);
            cmdline.contains("docker-flatten") && cmdline.contains(target)
        })
}
