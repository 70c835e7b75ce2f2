//! What the engines do that the plugin is built on, asserted on the engine
//! under test, per image store and API version. The suite runs on Engine
//! 20.10 (graphdriver), 26.1 and 28.5 (containerd store); where they differ,
//! each engine's own behaviour is asserted, so an engine that changes one of
//! these facts fails here, by name, rather than somewhere in a flatten.

mod support;

use std::io::Read;

use support::*;

/// Three layers of known content: two files, one overwritten later.
fn fixture(name: &str) -> (TestImage, u64) {
    let a = pseudo_random(70_000, 1);
    let b = pseudo_random(30_000, 2);
    let layers = vec![
        vec![Entry::dir("d"), Entry::file("d/a", &a)],
        vec![Entry::dir("d"), Entry::file("d/b", &b)],
        vec![Entry::dir("d"), Entry::file("d/a", "short")],
    ];
    let content = (a.len() + b.len() + "short".len()) as u64;
    (load_image(&ImageSpec::new(layers), &unique(name)), content)
}

/// `(major, minor)` of the engine's API version.
fn engine_api() -> (u32, u32) {
    let v = docker_ok(&["version", "--format", "{{.Server.APIVersion}}"]);
    let (major, minor) = v.trim().split_once('.').expect("an API version");
    (
        major.parse().expect("API major"),
        minor.parse().expect("API minor"),
    )
}

/// One entry of a save stream.
struct Saved {
    name: String,
    size: u64,
    /// Its first 512 bytes.
    head: Vec<u8>,
}

/// Every entry of `docker save IMAGE`, in stream order.
fn save_entries(reference: &str) -> Vec<Saved> {
    let out = docker(&["save", reference]);
    check_ok(&out, &format!("docker save {reference}"));
    let mut archive = tar::Archive::new(&out.stdout[..]);
    let mut entries = Vec::new();
    for entry in archive.entries().expect("a tar") {
        let mut entry = entry.expect("a tar entry");
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let size = entry.size();
        let mut head = Vec::new();
        (&mut entry)
            .take(512)
            .read_to_end(&mut head)
            .expect("read an entry");
        entries.push(Saved { name, size, head });
    }
    entries
}

/// The progress bar's total comes from this figure: on the graphdriver
/// store the bytes of the files the layers hold (overwritten ones
/// included), on the containerd store the bytes of the blobs the image is
/// made of (its layers as stored, compressed or not, config and manifest).
#[test]
fn the_reported_size_is_what_the_store_counts() {
    let (image, content) = fixture("engines-size");
    let size = inspect(&image.reference)["Size"].as_u64().expect("a Size");
    match image_store() {
        ImageStore::GraphDriver => assert_eq!(size, content),
        ImageStore::Containerd => {
            let blobs: u64 = save_entries(&image.reference)
                .iter()
                .filter(|e| e.name.starts_with("blobs/sha256/"))
                .map(|e| e.size)
                .sum();
            assert_eq!(size, blobs, "Size is not the sum of the image's blobs");
        }
    }
}

/// A merge of IMAGE's layers cannot take them as they come: every engine
/// writes the save stream in lexical order of entry names, so the index
/// that says which layer is which (`manifest.json`, `index.json`) comes
/// after every layer. The layout and the layers' encoding differ by engine.
#[test]
fn the_save_stream_names_its_layers_only_at_the_end() {
    let (image, _) = fixture("engines-save");
    let entries = save_entries(&image.reference);
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "the save stream is not in name order");

    let api = engine_api();
    let store = image_store();
    // Graphdriver engines write the OCI layout from Engine 25 (API 1.44).
    let oci = store == ImageStore::Containerd || api >= (1, 44);
    let layers: Vec<usize> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            if oci {
                e.name.starts_with("blobs/sha256/") && is_layer(&e.head)
            } else {
                e.name.ends_with("/layer.tar")
            }
        })
        .map(|(i, _)| i)
        .collect();
    assert_eq!(layers.len(), 3, "layers in {names:#?}");
    let index = names
        .iter()
        .position(|n| *n == "manifest.json")
        .expect("a manifest.json");
    assert!(
        layers.iter().all(|&l| l < index),
        "a layer after manifest.json: {names:#?}"
    );
    if oci {
        let oci_index = names.iter().position(|n| *n == "index.json");
        assert!(
            oci_index.is_some_and(|i| layers.iter().all(|&l| l < i)),
            "no index.json after the layers: {names:#?}"
        );
    }
    // The fixture was loaded with plain tar layers. A graphdriver always
    // sends plain tars; the containerd store sends each layer as stored,
    // here the very tars loaded, so the blob's name is the layer's diff ID.
    let diff_ids = inspect(&image.reference)["RootFS"]["Layers"].clone();
    for &l in &layers {
        assert_eq!(&entries[l].head[257..262], b"ustar", "{}", names[l]);
        if store == ImageStore::Containerd {
            let digest = format!("sha256:{}", &names[l]["blobs/sha256/".len()..]);
            assert!(
                diff_ids
                    .as_array()
                    .is_some_and(|ids| ids.iter().any(|id| id == digest.as_str())),
                "{} is not one of the diff IDs {diff_ids}",
                names[l]
            );
        }
    }
}

/// A layer blob: gzip, zstd, or a tar (ustar magic at 257).
fn is_layer(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b])
        || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || head.get(257..262) == Some(b"ustar")
}
