//! What a flatten may leave behind, traced to one test's source image so
//! that tests sharing the engine never see each other's objects: the plugin
//! labels its temporary objects with the source's ID, and the source carries
//! a marker label that its flattened images inherit.

use std::collections::BTreeSet;

use super::archive::*;
use super::engine::*;

/// A TAG that already points at another image, to prove failures leave it alone.
pub fn existing_tag() -> TestImage {
    let spec = ImageSpec::new(vec![vec![
        Entry::dir("old"),
        Entry::file("old/f", "previous target"),
    ]]);
    load_image(&spec, &unique("existing-tag"))
}

/// The source image and the label value only it (and its flattenings) carry.
pub struct Source {
    pub image: TestImage,
    pub marker: String,
}

/// An image that creates a volume and has a WORKDIR it lacks, with enough
/// data (2 MiB) that a stream can be cut in the middle.
pub fn source_image() -> Source {
    // Pseudo-random, so that a gzipped upload stays 2 MiB too.
    let data = pseudo_random(2 * 1024 * 1024, 0x9e37_79b9_7f4a_7c15);
    let mut spec = ImageSpec::new(vec![
        vec![Entry::dir("srv"), Entry::file("srv/blob", data)],
        vec![Entry::dir("srv"), Entry::file("srv/small", "x")],
    ]);
    let marker = unique("marker");
    spec.config = serde_json::json!({
        "Volumes": {"/var/lib/data": {}},
        "WorkingDir": "/does/not/exist",
        "Cmd": ["/srv/small"],
        "Labels": {MARKER: marker},
    });
    let image = load_image(&spec, &unique("src"));
    Source { image, marker }
}

pub const MARKER: &str = "dflt.test.marker";

fn ids(args: &[&str]) -> BTreeSet<String> {
    docker_ok(args)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

pub fn dangling_volumes() -> BTreeSet<String> {
    ids(&["volume", "ls", "-q", "--filter", "dangling=true"])
}

/// Asserts that no run from `source` left anything but the images in `keep`.
pub fn assert_nothing_left(
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
