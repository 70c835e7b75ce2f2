//! Nothing lost: after a successful flatten and after a failure at each
//! step, the engine holds no container, volume or dangling image that the
//! run made, and TAG still points where it did.
//!
//! Other tests share the engine, so only what can be traced to this test's
//! source image counts: objects with the plugin's source label, containers
//! of the source, and images carrying the source's own marker label (the
//! flattened image inherits it); plus volumes left dangling. Failures are
//! injected by a proxy in front of the real engine.

mod support;

use std::collections::BTreeSet;

use support::proxy::{Fault, Proxy};
use support::*;

/// The source image and the label value only it (and its flattenings) carry.
struct Source {
    image: TestImage,
    marker: String,
}

/// An image that creates a volume and has a WORKDIR it lacks, with enough
/// data (2 MiB) that a stream can be cut in the middle.
fn source_image() -> Source {
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
    let marker = unique("cleanup-marker");
    spec.config = serde_json::json!({
        "Volumes": {"/var/lib/data": {}},
        "WorkingDir": "/does/not/exist",
        "Cmd": ["/srv/small"],
        "Labels": {MARKER: marker},
    });
    let image = load_image(&spec, &unique("cleanup-src"));
    Source { image, marker }
}

const MARKER: &str = "dflt.test.marker";

fn ids(args: &[&str]) -> BTreeSet<String> {
    docker_ok(args)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

fn dangling_volumes() -> BTreeSet<String> {
    ids(&["volume", "ls", "-q", "--filter", "dangling=true"])
}

/// A TAG that already points at another image, to prove failures leave it alone.
fn existing_tag() -> TestImage {
    let spec = ImageSpec::new(vec![vec![
        Entry::dir("old"),
        Entry::file("old/f", "previous target"),
    ]]);
    load_image(&spec, &unique("cleanup-tag"))
}

/// Asserts that no run from `source` left anything but the images in `keep`.
fn assert_nothing_left(
    source: &Source,
    volumes_before: &BTreeSet<String>,
    keep: &[&str],
    what: &str,
) {
    let id = source.image.id.as_str();
    let by_plugin = format!("label=com.docker-flatten.source={id}");
    let mut left: Vec<String> = Vec::new();
    for filter in [by_plugin.clone(), format!("ancestor={id}")] {
        let found = ids(&["ps", "-aq", "--no-trunc", "--filter", &filter]);
        left.extend(found.into_iter().map(|c| format!("container {c}")));
    }
    for filter in [by_plugin, format!("label={MARKER}={}", source.marker)] {
        let found = ids(&["images", "-aq", "--no-trunc", "--filter", &filter]);
        let stray = found
            .into_iter()
            .filter(|i| i != id && !keep.contains(&i.as_str()));
        left.extend(stray.map(|i| format!("image {i}")));
    }
    let volumes = dangling_volumes();
    left.extend(
        volumes
            .difference(volumes_before)
            .map(|v| format!("volume {v}")),
    );
    assert!(left.is_empty(), "{what} left objects behind: {left:?}");
}

#[test]
fn success_leaves_only_the_tagged_image() {
    let cli = Cli::new();
    let source = source_image();
    let tag = unique("cleanup-ok");
    let before = dangling_volumes();
    let out = cli.docker(&["flatten", &source.image.reference, &tag]);
    let flat = TestImage::track(&tag);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_nothing_left(&source, &before, &[&flat.id], "a successful flatten");
    assert_eq!(image_layer_count(&flat.reference), 1);
}

#[test]
fn failures_at_every_step_leave_nothing_and_keep_the_tag() {
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
        let before = dangling_volumes();
        let out = cli.docker(&[
            "-H",
            &proxy.host(),
            "flatten",
            &source.image.reference,
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
        assert_nothing_left(&source, &before, &[], name);
    }
}

#[test]
fn a_missing_image_changes_nothing() {
    let cli = Cli::new();
    let before = dangling_volumes();
    let never = unique("never");
    let out = cli.docker(&["flatten", &unique("missing"), &never]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(!image_exists(&never));
    assert_eq!(dangling_volumes().difference(&before).count(), 0);
}
