//! The engine the user selected, resolved as the docker CLI resolves it,
//! through the real CLI: `-H`, `DOCKER_HOST`, `--context`, `DOCKER_CONTEXT`,
//! `currentContext`, and `DOCKER_API_VERSION`. The selected engine is a proxy
//! that counts what reaches it, in front of the real engine; every other
//! candidate points at a socket that does not exist, so choosing wrongly
//! fails the flatten.

mod support;

use std::process::Command;

use support::proxy::Proxy;
use support::*;

const DEAD: &str = "unix:///nonexistent/dflt-dead.sock";

fn image(name: &str) -> TestImage {
    let layers = vec![
        vec![Entry::dir("d"), Entry::file("d/a", "a")],
        vec![Entry::dir("d"), Entry::file("d/b", "b")],
    ];
    load_image(&ImageSpec::new(layers), &unique(name))
}

fn create_context(cli: &Cli, name: &str, host: &str) {
    let out = cli.docker(&[
        "context",
        "create",
        name,
        "--docker",
        &format!("host={host}"),
    ]);
    assert!(
        out.status.success(),
        "context create {name}: {}",
        text(&out.stderr)
    );
}

fn set_current_context(cli: &Cli, name: &str) {
    let path = cli.config_dir().join("config.json");
    let mut config: serde_json::Value = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    config["currentContext"] = serde_json::json!(name);
    std::fs::write(&path, config.to_string()).expect("write config.json");
}

/// Runs `docker <args>` with `env` (and no other DOCKER_HOST or
/// DOCKER_CONTEXT), expects a flatten of `source` into `tag` that went
/// through `proxy`, and returns the flattened image's guard.
fn flatten_through(
    cli: &Cli,
    proxy: &Proxy,
    env: &[(&str, &str)],
    globals: &[&str],
    source: &TestImage,
    way: &str,
) -> TestImage {
    let tag = unique(&format!("select-{way}"));
    let mut cmd: Command = cli.command(&[globals, &["flatten", &source.reference, &tag]].concat());
    cmd.env_remove("DOCKER_HOST")
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_API_VERSION");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let before = proxy.requests().len();
    let out = run_with_timeout(cmd, PLUGIN_TIMEOUT);
    let flat = TestImage::track(&tag);
    assert!(out.status.success(), "{way}: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), flat.id, "{way}");
    assert_eq!(image_layer_count(&tag), 1, "{way}");
    let seen = proxy.requests().len() - before;
    assert!(
        seen >= 5,
        "{way}: only {seen} requests reached the selected engine"
    );
    flat
}

#[test]
fn every_way_of_selecting_the_engine_is_honoured() {
    let source = image("select-src");
    let proxy = Proxy::start(None);
    let selected = proxy.host();
    let cli = Cli::new();
    create_context(&cli, "selected", &selected);
    create_context(&cli, "dead", DEAD);

    flatten_through(
        &cli,
        &proxy,
        &[("DOCKER_HOST", DEAD)],
        &["-H", &selected],
        &source,
        "host-flag",
    );
    flatten_through(
        &cli,
        &proxy,
        &[],
        &[&format!("--host={selected}")],
        &source,
        "host-equals",
    );
    flatten_through(
        &cli,
        &proxy,
        &[("DOCKER_HOST", &selected)],
        &[],
        &source,
        "docker-host",
    );
    // --context beats DOCKER_HOST and DOCKER_CONTEXT.
    flatten_through(
        &cli,
        &proxy,
        &[("DOCKER_HOST", DEAD), ("DOCKER_CONTEXT", "dead")],
        &["--context", "selected"],
        &source,
        "context-flag",
    );
    // DOCKER_HOST beats DOCKER_CONTEXT and the config's current context.
    set_current_context(&cli, "dead");
    flatten_through(
        &cli,
        &proxy,
        &[("DOCKER_HOST", &selected), ("DOCKER_CONTEXT", "dead")],
        &[],
        &source,
        "docker-host-over-context",
    );
    // DOCKER_CONTEXT beats the config's current context.
    flatten_through(
        &cli,
        &proxy,
        &[("DOCKER_CONTEXT", "selected")],
        &[],
        &source,
        "docker-context",
    );
    // Nothing else set: the config's current context.
    set_current_context(&cli, "selected");
    flatten_through(&cli, &proxy, &[], &[], &source, "current-context");
    // --config names another config dir, whose current context is dead.
    let other = Cli::new();
    create_context(&other, "dead", DEAD);
    set_current_context(&other, "dead");
    let config = other.config_dir().display().to_string();
    let mut cmd = cli.command(&[
        "--config",
        &config,
        "flatten",
        &source.reference,
        &unique("select-cfg"),
    ]);
    cmd.env_remove("DOCKER_HOST").env_remove("DOCKER_CONTEXT");
    let out = run_with_timeout(cmd, PLUGIN_TIMEOUT);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(DEAD), "{}", text(&out.stderr));
}

#[test]
fn context_and_host_together_are_refused_before_any_contact() {
    let proxy = Proxy::start(None);
    let cli = Cli::new();
    create_context(&cli, "selected", &proxy.host());
    let out = cli.docker(&[
        "--context",
        "selected",
        "-H",
        &proxy.host(),
        "flatten",
        "a",
        "b",
    ]);
    let err = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("cannot specify both --host and --context"),
        "{err}"
    );
    assert_eq!(proxy.connections(), 0);
}

#[test]
fn docker_api_version_pins_every_request() {
    let source = image("select-api");
    let proxy = Proxy::start(None);
    let cli = Cli::new();
    flatten_through(
        &cli,
        &proxy,
        &[("DOCKER_API_VERSION", "1.41")],
        &["-H", &proxy.host()],
        &source,
        "api",
    );
    let requests = proxy.requests();
    assert!(
        requests.iter().all(|r| r.contains(" /v1.41/")),
        "a request without the pinned version: {requests:#?}"
    );
    let out = cli.docker(&["-H", &proxy.host(), "flatten", "a", "b"]);
    assert!(
        out.status.code() == Some(1) || out.status.code() == Some(0),
        "{}",
        text(&out.stderr)
    );
}

/// The newest API version the plugin speaks (its client library's default):
/// negotiation may only lower it.
const PLUGIN_API: (u32, u32) = (1, 53);

fn api_version(text: &str) -> (u32, u32) {
    let parse = || {
        let (major, minor) = text.trim().split_once('.')?;
        Some((major.parse().ok()?, minor.parse().ok()?))
    };
    parse().unwrap_or_else(|| panic!("not an API version: {text:?}"))
}

#[test]
fn requests_carry_the_version_negotiated_with_the_engine() {
    let engine = api_version(&docker_ok(&[
        "version",
        "--format",
        "{{.Server.APIVersion}}",
    ]));
    // Every engine the suite runs on is older than the plugin's default, so
    // a plugin that skipped negotiation would send the wrong version.
    let (major, minor) = engine.min(PLUGIN_API);
    let agreed = format!(" /v{major}.{minor}/");
    let source = image("select-negotiated");
    let proxy = Proxy::start(None);
    let cli = Cli::new();
    flatten_through(
        &cli,
        &proxy,
        &[],
        &["-H", &proxy.host()],
        &source,
        "negotiated",
    );
    let requests = proxy.requests();
    // Only the requests that negotiate may go without a version.
    let negotiating = |r: &&String| r.contains(" /_ping ") || r.contains(" /version ");
    let (unversioned, versioned): (Vec<&String>, Vec<&String>) =
        requests.iter().partition(negotiating);
    assert!(
        !unversioned.is_empty(),
        "no negotiation reached the engine: {requests:#?}"
    );
    assert!(
        versioned.len() >= 4,
        "too few requests to tell: {requests:#?}"
    );
    assert!(
        versioned.iter().all(|r| r.contains(&agreed)),
        "a request without the agreed version{agreed}(engine API {}.{}): {requests:#?}",
        engine.0,
        engine.1
    );
}

#[test]
fn the_endpoint_in_use_is_in_debug_output_and_errors() {
    let proxy = Proxy::start(None);
    let cli = Cli::new();
    let missing = unique("select-missing");
    let out = cli.docker(&["-D", "-H", &proxy.host(), "flatten", &missing, "x:y"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("debug: engine endpoint: {}", proxy.host())),
        "{err}"
    );
    assert!(
        err.lines()
            .any(|l| l.contains(&missing) && l.contains(&proxy.host())),
        "{err}"
    );
}
