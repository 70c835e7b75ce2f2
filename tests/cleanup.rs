//! Nothing lost: after a successful flatten and after a failure at each
//! step, the engine holds no container, volume or dangling image that the
//! run made, and TAG still points where it did.
//!
//! These tests compare whole-engine snapshots, so they run one at a time and
//! rely on no other test binary running at the same moment (`cargo test`
//! runs test binaries one after another). Failures are injected by a proxy
//! in front of the real engine.

mod support;

use std::sync::Mutex;

use support::proxy::{Fault, Proxy};
use support::*;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// An image that creates a volume and has a WORKDIR it lacks, with enough
/// data (2 MiB) that a stream can be cut in the middle.
fn source_image() -> TestImage {
    // Pseudo-random, so that a gzipped upload stays 2 MiB too.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let data: Vec<u8> = (0..2 * 1024 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let mut spec = ImageSpec::new(vec![
        vec![Entry::dir("srv"), Entry::file("srv/blob", data)],
        vec![Entry::dir("srv"), Entry::file("srv/small", "x")],
    ]);
    spec.config = serde_json::json!({
        "Volumes": {"/var/lib/data": {}},
        "WorkingDir": "/does/not/exist",
        "Cmd": ["/srv/small"],
    });
    load_image(&spec, &unique("cleanup-src"))
}

/// A TAG that already points at another image, to prove failures leave it alone.
fn existing_tag() -> TestImage {
    let spec = ImageSpec::new(vec![vec![
        Entry::dir("old"),
        Entry::file("old/f", "previous target"),
    ]]);
    load_image(&spec, &unique("cleanup-tag"))
}

fn assert_nothing_left(before: &EngineState, what: &str) {
    let appeared = engine_state().appeared_since(before);
    assert!(
        appeared.is_empty(),
        "{what} left objects behind: {appeared:?}"
    );
    let labelled = docker_ok(&["ps", "-aq", "--filter", "label=com.docker-flatten.run"]);
    assert_eq!(labelled.trim(), "", "{what} left a temporary container");
}

#[test]
fn success_leaves_only_the_tagged_image() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cli = Cli::new();
    let source = source_image();
    let tag = unique("cleanup-ok");
    let before = engine_state();
    let out = cli.docker(&["flatten", &source.reference, &tag]);
    let flat = TestImage::track(&tag);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_nothing_left(&before, "a successful flatten");
    assert_eq!(image_layer_count(&flat.reference), 1);
}

#[test]
fn failures_at_every_step_leave_nothing_and_keep_the_tag() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cli = Cli::new();
    let source = source_image();
    let target = existing_tag();
    let cases = [
        (
            "create refused",
            Fault::Respond {
                matches: "/containers/create",
                status: 500,
            },
            "creating a container",
        ),
        (
            "export cut",
            Fault::CutResponse {
                matches: "/export",
                after: 300 * 1024,
            },
            "export",
        ),
        (
            "import upload cut",
            Fault::CutRequest {
                matches: "fromSrc=-",
                after: 300 * 1024,
            },
            "import",
        ),
        (
            "config load refused",
            Fault::Respond {
                matches: "/images/load",
                status: 500,
            },
            "loading the flattened image's config",
        ),
        (
            "tag refused",
            Fault::Respond {
                matches: "/tag?",
                status: 500,
            },
            "tagging",
        ),
    ];
    for (name, fault, message) in cases {
        let proxy = Proxy::start(Some(fault));
        let before = engine_state();
        let out = cli.docker(&[
            "-H",
            &proxy.host(),
            "flatten",
            &source.reference,
            &target.reference,
        ]);
        let err = text(&out.stderr);
        assert_eq!(proxy.fired(), 1, "{name}: the fault never fired:\n{err}");
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(
            err.contains(message),
            "{name}: error does not say what failed:\n{err}"
        );
        assert!(
            err.contains(&proxy.host()),
            "{name}: error does not name the endpoint:\n{err}"
        );
        assert!(
            err.contains(&format!("{} is unchanged", target.reference)),
            "{name}: {err}"
        );
        assert!(out.stdout.is_empty(), "{name}: printed an ID on failure");
        assert_eq!(
            inspect(&target.reference)["Id"],
            target.id.as_str(),
            "{name}: TAG moved"
        );
        assert_nothing_left(&before, name);
    }
}

#[test]
fn a_missing_image_changes_nothing() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cli = Cli::new();
    let before = engine_state();
    let out = cli.docker(&["flatten", &unique("missing"), &unique("never")]);
    assert_eq!(out.status.code(), Some(1));
    assert_nothing_left(&before, "a missing image");
}
