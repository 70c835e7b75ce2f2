//! An image whose content the engine lacks in part. On the containerd store
//! an image can keep its manifest while a blob it names is gone from the
//! content store (moby#49473, #49784: an image pulled while its snapshot
//! already existed). The engine then reports no config and saves the
//! manifest alone, without an error. A run must fail naming what the save
//! left out, never make an image with files missing, and create nothing.
//!
//! The graphdriver store keeps layers, not blobs: there, the fact the
//! plugin builds on is that a save holds every layer the inspect names.

mod support;

use std::process::Command;

use support::*;

fn two_layers(name: &str) -> TestImage {
    let layers = vec![
        vec![Entry::dir("a"), Entry::file("a/f", unique("first"))],
        vec![Entry::dir("b"), Entry::file("b/g", unique("second"))],
    ];
    load_image(&ImageSpec::new(layers), &unique(name))
}

/// `ctr` against the containerd of the engine `test.sh` started at DOCKER_HOST.
fn ctr(args: &[&str]) -> String {
    let host = docker_host();
    let run = host
        .strip_prefix("unix://")
        .and_then(|p| p.strip_suffix("/docker.sock"))
        .unwrap_or_else(|| panic!("{host} is not an engine that test.sh started"));
    let socket = format!("{run}/containerd/containerd.sock");
    assert!(
        std::path::Path::new(&socket).exists(),
        "no containerd socket at {socket}: this test needs an engine that test.sh started"
    );
    let out = Command::new("ctr")
        .args(["--address", &socket, "--namespace", "moby"])
        .args(args)
        .output()
        .expect("run ctr (Debian package containerd)");
    assert!(out.status.success(), "ctr {args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn a_blob_missing_from_the_content_store_fails_every_mode_naming_what_was_left_out() {
    let image = two_layers("incomplete");
    match image_store() {
        ImageStore::GraphDriver => {
            let saved = save_image(&image.reference);
            let layers = inspect(&image.reference)["RootFS"]["Layers"]
                .as_array()
                .expect("layers")
                .len();
            assert_eq!(saved.layers.len(), layers, "the save holds every layer");
        }
        ImageStore::Containerd => containerd_lacks_a_layer(&image),
    }
}

fn containerd_lacks_a_layer(image: &TestImage) {
    let manifest: serde_json::Value =
        serde_json::from_str(&ctr(&["content", "get", &image.id])).expect("the manifest");
    let top = manifest["layers"][1]["digest"]
        .as_str()
        .expect("a layer digest")
        .to_owned();
    ctr(&["content", "rm", &top]);
    // What the save leaves out: every blob the manifest lists.
    let listed: Vec<String> = std::iter::once(&manifest["config"])
        .chain(manifest["layers"].as_array().expect("layers"))
        .map(|d| d["digest"].as_str().expect("a digest").to_owned())
        .collect();
    let cli = Cli::new();
    let target = unique("never");
    let flat = load_image(
        &ImageSpec::new(vec![vec![Entry::file("f", "flat")]]),
        &unique("flat"),
    );
    for args in [
        vec!["flatten", "--exact", &image.reference, &target],
        vec!["flatten", "--keep-layers", "1", &image.reference, &target],
        vec!["flatten", &image.reference, &target],
        vec!["flatten", "--dry-run", &image.reference],
        vec![
            "flatten",
            "--verify-only",
            &image.reference,
            &flat.reference,
        ],
    ] {
        let out = cli.docker(&args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("moby#49473")
                && err.contains(&image.reference)
                && listed.iter().any(|blob| err.contains(blob.as_str())),
            "{args:?} names IMAGE and a blob its manifest lists:\n{err}"
        );
        assert!(
            docker(&["image", "inspect", &target]).status.code() != Some(0),
            "{args:?} created {target}"
        );
    }
}
