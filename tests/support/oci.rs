//! Multi-platform test images, built offline: an OCI layout whose
//! `index.json` names one image that points at a nested index of one
//! manifest per platform, as `docker save` of such an image writes it on the
//! containerd store (and `docker buildx build --platform a,b` makes it).
//! A `manifest.json` lists the first platform, so a graphdriver engine,
//! which reads only that, loads it as a one-platform image.

use std::path::Path;

use super::archive::{archive_member, archive_path, sha256_hex, with_tag, ImageSpec};
use super::engine::{containerd_store, docker_ok, inspect, load_ok, require_engine, TestImage};
use serde_json::{json, Value};

pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// One platform of a written image.
#[derive(Debug, Clone)]
pub struct WrittenPlatform {
    /// `os/architecture[/variant]`, as `--platform` spells it.
    pub platform: String,
    pub manifest: String,
    pub config: String,
    pub diff_ids: Vec<String>,
    /// The layer blobs' digests, bottom first (here equal to the diff IDs:
    /// the layers are plain tars).
    pub blobs: Vec<String>,
}

/// What [`write_multi_platform`] wrote.
#[derive(Debug, Clone)]
pub struct WrittenIndex {
    /// Digest of the nested index: the image ID on the containerd store.
    pub index: String,
    pub platforms: Vec<WrittenPlatform>,
}

/// `reference` with the registry and namespace a bare name implies
/// (`name:tag` → `docker.io/library/name:tag`): the containerd store names
/// images only so.
pub fn fully_qualified(reference: &str) -> String {
    match reference.split_once('/') {
        None => format!("docker.io/library/{reference}"),
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => {
            reference.to_owned()
        }
        Some(_) => format!("docker.io/{reference}"),
    }
}

/// `os/architecture[/variant]` of `spec`.
pub fn platform_of(spec: &ImageSpec) -> String {
    let mut p = format!("{}/{}", spec.os, spec.architecture);
    if let Some(v) = &spec.variant {
        p = format!("{p}/{v}");
    }
    p
}

/// The architecture that is not the host's, for a platform the host cannot run.
pub fn foreign_architecture() -> (&'static str, Option<&'static str>) {
    if super::archive::host_architecture() == "arm64" {
        ("amd64", None)
    } else {
        ("arm64", Some("v8"))
    }
}

/// What a written index holds besides its platforms' images.
#[derive(Debug, Clone, Default)]
pub struct IndexExtras {
    /// Platforms (by position) listed in the index whose manifest, config
    /// and layers the archive leaves out, as a pull of one platform leaves
    /// the others' out of the store.
    pub absent: Vec<usize>,
    /// A BuildKit attestation manifest (`unknown/unknown`, annotated
    /// `vnd.docker.reference.type: attestation-manifest`) after each platform.
    pub attestations: bool,
}

/// Writes one image of `platforms` (at least one) as `reference` into an
/// OCI layout tar at `out`.
pub fn write_multi_platform(platforms: &[ImageSpec], reference: &str, out: &Path) -> WrittenIndex {
    write_multi_platform_with(platforms, reference, out, &IndexExtras::default())
}

/// [`write_multi_platform`], with `extras` in the index.
pub fn write_multi_platform_with(
    platforms: &[ImageSpec],
    reference: &str,
    out: &Path,
    extras: &IndexExtras,
) -> WrittenIndex {
    assert!(!platforms.is_empty(), "an image needs a platform");
    assert!(
        !extras.absent.contains(&0),
        "the first platform is the one manifest.json lists: it must be present"
    );
    let reference = with_tag(reference);
    let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add_blob = |data: Vec<u8>| -> (String, usize) {
        let hex = sha256_hex(&data);
        let size = data.len();
        if !blobs.iter().any(|(h, _)| *h == hex) {
            blobs.push((hex.clone(), data));
        }
        (hex, size)
    };
    let mut written = Vec::new();
    let mut descriptors = Vec::new();
    let mut first_paths: Option<(String, Vec<String>)> = None;
    let mut left_out: Vec<String> = Vec::new();
    for (position, spec) in platforms.iter().enumerate() {
        // The platform in each layer's comment keeps two platforms' equal
        // layers apart, as the reference keeps two tests' apart.
        let tars = spec.layer_tars(&format!("{reference} {}", platform_of(spec)));
        let config = spec.config_json(&tars, &reference);
        let diff_ids: Vec<String> = tars
            .iter()
            .map(|t| format!("sha256:{}", sha256_hex(t)))
            .collect();
        let (config_hex, config_size) = add_blob(config);
        let layers: Vec<Value> = tars
            .into_iter()
            .map(|t| {
                let (hex, size) = add_blob(t);
                json!({
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": format!("sha256:{hex}"),
                    "size": size,
                })
            })
            .collect();
        if first_paths.is_none() {
            let paths = layers
                .iter()
                .map(|l| format!("blobs/sha256/{}", &l["digest"].as_str().unwrap()[7..]))
                .collect();
            first_paths = Some((format!("blobs/sha256/{config_hex}"), paths));
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": format!("sha256:{config_hex}"),
                "size": config_size,
            },
            "layers": layers,
        });
        let (manifest_hex, manifest_size) =
            add_blob(serde_json::to_vec(&manifest).expect("serialise manifest"));
        let mut platform = json!({ "os": spec.os, "architecture": spec.architecture });
        if let Some(v) = &spec.variant {
            platform["variant"] = json!(v);
        }
        descriptors.push(json!({
            "mediaType": MANIFEST,
            "digest": format!("sha256:{manifest_hex}"),
            "size": manifest_size,
            "platform": platform,
        }));
        if extras.absent.contains(&position) {
            left_out.push(manifest_hex.clone());
            left_out.push(config_hex.clone());
            left_out.extend(
                layers
                    .iter()
                    .map(|l| l["digest"].as_str().expect("a digest")[7..].to_owned()),
            );
        }
        if extras.attestations {
            let statement = serde_json::to_vec(&json!({
                "_type": "https://in-toto.io/Statement/v0.1",
                "subject": [{"name": reference, "digest": {"sha256": manifest_hex}}],
                "predicateType": "https://slsa.dev/provenance/v0.2",
            }))
            .expect("serialise a statement");
            let (statement_hex, statement_size) = add_blob(statement);
            let config = serde_json::to_vec(&json!({
                "architecture": "unknown", "os": "unknown", "config": {},
                "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{statement_hex}")]},
            }))
            .expect("serialise a config");
            let (config_hex, config_size) = add_blob(config);
            let attestation = json!({
                "schemaVersion": 2,
                "mediaType": MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": format!("sha256:{config_hex}"),
                    "size": config_size,
                },
                "layers": [{
                    "mediaType": "application/vnd.in-toto+json",
                    "digest": format!("sha256:{statement_hex}"),
                    "size": statement_size,
                    "annotations": {"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"},
                }],
            });
            let (hex, size) =
                add_blob(serde_json::to_vec(&attestation).expect("serialise a manifest"));
            descriptors.push(json!({
                "mediaType": MANIFEST,
                "digest": format!("sha256:{hex}"),
                "size": size,
                "platform": {"architecture": "unknown", "os": "unknown"},
                "annotations": {
                    "vnd.docker.reference.type": "attestation-manifest",
                    "vnd.docker.reference.digest": format!("sha256:{manifest_hex}"),
                },
            }));
        }
        written.push(WrittenPlatform {
            platform: platform_of(spec),
            manifest: format!("sha256:{manifest_hex}"),
            config: format!("sha256:{config_hex}"),
            blobs: diff_ids.clone(),
            diff_ids,
        });
    }
    let nested = json!({ "schemaVersion": 2, "mediaType": INDEX, "manifests": descriptors });
    let (index_hex, index_size) = add_blob(serde_json::to_vec(&nested).expect("serialise index"));
    let tag = reference.rsplit(':').next().unwrap_or("latest");
    let top = json!({
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": [{
            "mediaType": INDEX,
            "digest": format!("sha256:{index_hex}"),
            "size": index_size,
            "annotations": {
                "io.containerd.image.name": fully_qualified(&reference),
                "org.opencontainers.image.ref.name": tag,
            },
        }],
    });
    let (config_path, layer_paths) = first_paths.expect("one platform at least");
    let legacy = json!([{ "Config": config_path, "RepoTags": [reference], "Layers": layer_paths }]);

    let file =
        std::fs::File::create(out).unwrap_or_else(|e| panic!("create {}: {e}", out.display()));
    let mut tar = tar::Builder::new(file);
    let mut add = |name: &str, data: &[u8]| archive_member(&mut tar, name, data);
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    for (hex, data) in &blobs {
        // A blob two platforms share stays when one of them is present.
        let absent = left_out.contains(hex)
            && !written
                .iter()
                .enumerate()
                .filter(|(i, _)| !extras.absent.contains(i))
                .any(|(_, w): (usize, &WrittenPlatform)| {
                    w.manifest.ends_with(hex.as_str())
                        || w.config.ends_with(hex.as_str())
                        || w.blobs.iter().any(|b| b.ends_with(hex.as_str()))
                });
        if !absent {
            add(&format!("blobs/sha256/{hex}"), data);
        }
    }
    add(
        "index.json",
        &serde_json::to_vec(&top).expect("serialise index.json"),
    );
    add(
        "manifest.json",
        &serde_json::to_vec(&legacy).expect("serialise manifest.json"),
    );
    tar.into_inner().expect("finish the OCI layout");
    WrittenIndex {
        index: format!("sha256:{index_hex}"),
        platforms: written,
    }
}

/// Writes `platforms` as one image and `docker load`s it as `reference`;
/// the guard holds the ID the engine gives it: the nested index's digest on
/// the containerd store, the first platform's config digest on a
/// graphdriver (which loads that platform alone).
pub fn load_multi_platform(platforms: &[ImageSpec], reference: &str) -> (TestImage, WrittenIndex) {
    load_multi_platform_with(platforms, reference, &IndexExtras::default())
}

/// [`load_multi_platform`], with `extras` in the index.
pub fn load_multi_platform_with(
    platforms: &[ImageSpec],
    reference: &str,
    extras: &IndexExtras,
) -> (TestImage, WrittenIndex) {
    require_engine();
    let reference = with_tag(reference);
    let (_dir, path) = archive_path();
    let written = write_multi_platform_with(platforms, &reference, &path, extras);
    let id = if containerd_store() {
        written.index.clone()
    } else {
        written.platforms[0].config.clone()
    };
    let image = TestImage {
        reference: reference.clone(),
        id,
    };
    load_ok(&path);
    assert_eq!(
        inspect(&reference)["Id"],
        json!(image.id),
        "{reference} was loaded under another ID"
    );
    (image, written)
}
