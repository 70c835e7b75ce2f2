//! A flattened image through a registry: pushed from the engine under test
//! to a private `docker-registry`, pulled into the engine with the other
//! image store, run there, and compared with the source.

mod support;

use std::process::Output;

use serde_json::json;
use support::*;

/// `docker -H <host> <args>` with the usual deadline.
fn docker_on(host: &str, args: &[&str]) -> Output {
    let mut all = vec!["-H", host];
    all.extend_from_slice(args);
    docker(&all)
}

/// An image on the other engine, removed with the test.
struct OtherImage<'a> {
    host: &'a str,
    reference: String,
}

impl Drop for OtherImage<'_> {
    fn drop(&mut self) {
        docker_on(self.host, &["rmi", "-f", &self.reference]);
    }
}

#[test]
fn a_pushed_flattened_image_runs_on_the_other_engine_as_its_source() {
    let other = other_engine();
    let registry = Registry::start();
    let fields = json!({
        "docker_version": "17.03.2-ce-fixture",
        "author": "Fixture Author <fixture@example.com>",
    });
    let layers = vec![
        busybox_layer(),
        vec![
            Entry::dir("app"),
            Entry::file("app/hello", "hello through the registry\n"),
            Entry::file("app/old", "removed later\n"),
        ],
        vec![
            Entry::dir("app"),
            Entry::whiteout("app/old"),
            Entry::file("app/owned", "owned\n")
                .owner(4242, 4343)
                .mode(0o640),
        ],
    ];
    let config = json!({
        "Cmd": ["/bin/cat", "hello"],
        "WorkingDir": "/app",
        "Env": ["PATH=/bin", "GREETING=hi"],
        "Labels": {"org.example.fixture": "registry"},
    });
    let spec = ImageSpec::new(layers)
        .with_config(config.clone())
        .with_fields(fields.clone());
    let source = load_image(&spec, &unique("push"));

    let flat_tag = unique("push-flat");
    let out = Cli::new().docker(&["flatten", &source.reference, &flat_tag]);
    let flat = TestImage::track(&flat_tag);
    check_ok(
        &out,
        &format!("docker flatten {} {flat_tag}", source.reference),
    );
    let remote = format!("{}/{}:v1", registry.address, unique("pushed"));
    docker_ok(&["tag", &flat.id, &remote]);
    let _pushed_tag = TestImage::track(&remote);
    let push = docker(&["push", &remote]);
    check_ok(&push, &format!("docker push {remote}\n{}", registry.log()));

    let pulled = OtherImage {
        host: &other,
        reference: remote.clone(),
    };
    let pull = docker_on(&other, &["pull", &remote]);
    check_ok(&pull, &format!("docker -H {other} pull {remote}"));
    let run = docker_on(
        &other,
        &["run", "--rm", "--network", "none", &pulled.reference],
    );
    check_ok(&run, &format!("docker -H {other} run {remote}"));
    assert_eq!(text(&run.stdout), "hello through the registry\n");

    let there = save_image_on(&other, &pulled.reference);
    assert_eq!(there.layers.len(), 1, "one layer after the round trip");
    assert_same_fs(&image_fs(&source.reference), &there.fs(), PLACEHOLDERS);
    for (key, value) in fields.as_object().unwrap() {
        assert_eq!(&there.config[key], value, "{key} after the round trip");
    }
    for key in ["Cmd", "WorkingDir", "Env", "Labels"] {
        assert_eq!(there.config["config"][key], config[key], "config.{key}");
    }
    assert_eq!(there.config["architecture"], host_architecture());
    assert_eq!(there.config["os"], "linux");
    assert!(
        registry.storage().join("storage").exists(),
        "the registry kept the image in its own storage"
    );
}
