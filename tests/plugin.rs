//! The plugin as the docker CLI sees it: handshake, help, argument errors,
//! and the errors a user meets before any work starts.

mod support;

use support::proxy::Proxy;
use support::*;

#[test]
fn metadata_is_the_shipped_plugin_metadata_and_needs_no_engine() {
    // An unreachable engine must not matter: the handshake talks to none.
    let out = std::process::Command::new(plugin_path())
        .arg("docker-cli-plugin-metadata")
        .env("DOCKER_HOST", "tcp://127.0.0.1:1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let shipped: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("plugin-metadata").unwrap()).unwrap();
    assert_eq!(printed, shipped);
    assert_eq!(printed["SchemaVersion"], "0.1.0");
    assert_eq!(printed["Version"], env!("CARGO_PKG_VERSION"));
    for field in ["Vendor", "ShortDescription", "URL"] {
        assert!(
            printed[field].as_str().is_some_and(|s| !s.is_empty()),
            "{field}"
        );
    }
}

#[test]
fn docker_help_lists_flatten() {
    let cli = Cli::new();
    let out = cli.docker(&["--help"]);
    let help = text(&out.stdout);
    let line = help
        .lines()
        .find(|l| l.trim_start().starts_with("flatten"))
        .unwrap_or_else(|| panic!("flatten not in docker --help:\n{help}"));
    assert!(
        line.contains("Flatten an image into a single layer"),
        "{line}"
    );
}

#[test]
fn flatten_help_through_the_cli_names_image_and_tag() {
    let cli = Cli::new();
    for args in [&["flatten", "--help"][..], &["help", "flatten"]] {
        let out = cli.docker(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        let help = text(&out.stdout);
        assert!(
            help.contains("Usage: docker flatten [OPTIONS] IMAGE TAG\n"),
            "{args:?}:\n{help}"
        );
        assert!(
            help.contains("docker flatten --dry-run [OPTIONS] IMAGE [TAG]"),
            "{help}"
        );
        for flag in ["--quiet", "--dry-run", "--format <FORMAT>"] {
            assert!(help.contains(flag), "{flag} missing:\n{help}");
        }
    }
}

#[test]
fn wrong_arguments_print_usage_and_exit_2() {
    let cli = Cli::new();
    for args in [
        &["flatten"][..],
        &["flatten", "only-image"],
        &["flatten", "a", "b", "extra"],
        &["flatten", "--no-such-flag", "a", "b"],
    ] {
        let out = cli.docker(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains("Usage: docker flatten"),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn invalid_tags_are_refused_before_any_work_quoting_them() {
    let cli = Cli::new();
    // Every run goes through this proxy, which counts what reaches the engine.
    let proxy = Proxy::start(None);
    // The image does not exist: a refusal that mentions it would mean work started.
    let image = unique("never-inspected");
    for tag in [
        "Upper",
        "has space",
        "a:b:c",
        "app@sha256:0000",
        "app:",
        "_lead",
        "x:-y",
        "x:.y",
    ] {
        let out = cli.docker(&["-H", &proxy.host(), "flatten", &image, tag]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{tag}: {err}");
        assert!(err.contains(&format!("\"{tag}\"")), "{tag}: {err}");
        assert!(
            !err.contains(&image),
            "{tag}: the image was looked at: {err}"
        );
    }
    assert_eq!(proxy.connections(), 0, "the engine was contacted");
}

#[test]
fn missing_image_fails_with_a_pull_hint() {
    let cli = Cli::new();
    let image = unique("missing");
    let out = cli.docker(&["flatten", &image, &unique("target")]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("no such image \"{image}\"")), "{err}");
    assert!(err.contains("docker pull"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn unreachable_engine_names_the_endpoint() {
    let cli = Cli::new();
    for (host, why) in [
        ("unix:///nonexistent/dflt.sock", "no socket there"),
        ("tcp://127.0.0.1:1", "nothing listens there"),
        (
            "tcp://no-such-host.invalid:2375",
            "cannot resolve the host name",
        ),
    ] {
        let started = std::time::Instant::now();
        let out = cli.docker(&["-H", host, "flatten", "img", "tag"]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{host}: {err}");
        assert!(err.contains(host), "{host}: {err}");
        assert!(err.contains(why), "{host}: says why: {err}");
        assert!(
            started.elapsed().as_secs() < 15,
            "{host}: took {:?}",
            started.elapsed()
        );
    }
    // DOCKER_HOST is honoured when no -H is given.
    let out = std::process::Command::new(plugin_path())
        .args(["flatten", "img", "tag"])
        .env("DOCKER_HOST", "tcp://127.0.0.1:1")
        .output()
        .unwrap();
    assert!(
        text(&out.stderr).contains("tcp://127.0.0.1:1"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn debug_shows_the_endpoint_and_cause_chain() {
    let cli = Cli::new();
    let out = cli.docker(&[
        "-D",
        "-H",
        "unix:///nonexistent/dflt.sock",
        "flatten",
        "img",
        "tag",
    ]);
    let err = text(&out.stderr);
    assert!(
        err.contains("engine endpoint: unix:///nonexistent/dflt.sock"),
        "{err}"
    );
    assert!(err.contains("caused by:"), "{err}");
}

#[test]
fn global_flags_in_every_spelling_are_accepted() {
    let cli = Cli::new();
    let host = docker_host();
    let sock = host.as_str();
    let (attached, long) = (format!("-H{sock}"), format!("--host={sock}"));
    let image = unique("missing");
    let config = cli.config_dir().to_str().unwrap().to_owned();
    let config_eq = format!("--config={config}");
    let spellings: [&[&str]; 6] = [
        &["-H", sock],
        &[&attached],
        &[&long],
        &["--config", &config, "-l", "warn", "-D"],
        &[
            &config_eq,
            "-c",
            "default",
            "--tlscacert",
            "/x/ca.pem",
            "--tlscert=/x/c",
            "--tlskey",
            "/k",
        ],
        &[
            "--log-level=error",
            "--debug=false",
            "--tls=false",
            "--tlsverify=false",
        ],
    ];
    for globals in spellings {
        let mut args: Vec<&str> = globals.to_vec();
        args.extend(["flatten", &image, "dflt-target"]);
        let out = cli.docker(&args);
        let err = text(&out.stderr);
        // Parsing succeeded when the failure is about the image, not the flags.
        assert!(err.contains("no such image"), "{globals:?}: {err}");
    }
}
