//! The flattened image's config: the source image's whole container config
//! and platform, over the one imported layer, with a history entry saying
//! where it came from; and the `docker load` archives that install it.

use std::time::SystemTime;

use bollard::models::ImageInspect;
use bytes::Bytes;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::upload::Digests;

/// Where the flattened image came from, for its history.
pub struct Provenance<'a> {
    /// What the user named, e.g. `myapp:1.4`.
    pub reference: &'a str,
    pub layers: usize,
}

/// Builds the image config JSON for the flattened image.
pub fn flattened(
    source: &ImageInspect,
    provenance: &Provenance<'_>,
    diff_id: &str,
    created: SystemTime,
) -> Value {
    let created = humantime::format_rfc3339_nanos(created).to_string();
    let source_id = source.id.as_deref().unwrap_or("unknown");
    let mut container_config = source.config.clone().unwrap_or_default();
    // bollard reads a null map as an empty one; null is what images carry
    // when the Dockerfile had no EXPOSE or VOLUME.
    for field in [
        &mut container_config.exposed_ports,
        &mut container_config.volumes,
    ] {
        if field.as_ref().is_some_and(Vec::is_empty) {
            *field = None;
        }
    }
    let mut config = json!({
        "architecture": source.architecture.clone().unwrap_or_default(),
        "os": source.os.clone().unwrap_or_default(),
        "created": created,
        "config": container_config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{
            "created": created,
            "created_by": format!("docker flatten {} ({source_id})", provenance.reference),
            "comment": format!(
                "flattened from {} layer(s) by docker-flatten {}",
                provenance.layers,
                env!("CARGO_PKG_VERSION")
            ),
        }],
    });
    let optional = [
        ("variant", &source.variant),
        ("os.version", &source.os_version),
        ("author", &source.author),
    ];
    for (key, value) in optional {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            config[key] = Value::String(v.to_owned());
        }
    }
    config
}

/// The image ID the engine will give a config: the digest of its bytes.
pub fn image_id(config_bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(config_bytes))
}

/// A `docker load` archive holding only `manifest.json` and the config: the
/// layer is already in the engine's store (the import put it there), so the
/// engine links it by diff ID instead of reading a layer tar.
pub fn config_only_archive(config_bytes: &[u8], diff_id: &str) -> std::io::Result<Bytes> {
    let id = image_id(config_bytes);
    let hex = id.trim_start_matches("sha256:");
    let layer = format!("{}/layer.tar", diff_id.trim_start_matches("sha256:"));
    let config_name = format!("{hex}.json");
    let manifest = serde_json::to_vec(&json!([{
        "Config": config_name,
        "RepoTags": null,
        "Layers": [layer],
    }]))?;
    let mut archive = Vec::new();
    append_file(&mut archive, &config_name, config_bytes)?;
    append_file(&mut archive, "manifest.json", &manifest)?;
    archive.resize(archive.len() + END_OF_ARCHIVE, 0);
    Ok(Bytes::from(archive))
}

/// An OCI-layout archive for `docker load` on the containerd image store,
/// in two pieces around the layer blob, which the caller streams between
/// them: `head` holds the layout, index, manifest and config and ends with
/// the layer's tar header; `tail` pads the blob and ends the archive.
pub struct OciArchive {
    pub head: Bytes,
    pub tail: Bytes,
    /// The image ID the engine will give it: the manifest's digest.
    pub id: String,
}

pub fn oci_archive(
    config_bytes: &[u8],
    layer: &Digests,
    platform: &Value,
) -> std::io::Result<OciArchive> {
    let config_digest = image_id(config_bytes);
    let layer_type = layer.compression.layer_media_type();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_bytes.len(),
        },
        "layers": [{"mediaType": layer_type, "digest": layer.blob, "size": layer.blob_size}],
    }))?;
    let manifest_digest = image_id(&manifest);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": MANIFEST_TYPE,
            "digest": manifest_digest,
            "size": manifest.len(),
            "platform": platform,
        }],
    }))?;
    let blob = |digest: &str| format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
    let mut head = Vec::new();
    for (name, data) in [
        (
            "oci-layout".to_owned(),
            &br#"{"imageLayoutVersion":"1.0.0"}"#[..],
        ),
        (blob(&config_digest), config_bytes),
        (blob(&manifest_digest), &manifest),
        ("index.json".to_owned(), &index),
    ] {
        append_file(&mut head, &name, data)?;
    }
    // Last, so the engine has read everything else when the big part comes.
    tar_header(&mut head, &blob(&layer.blob), layer.blob_size)?;
    let tail = vec![0; padding(layer.blob_size) + END_OF_ARCHIVE];
    Ok(OciArchive {
        head: Bytes::from(head),
        tail: Bytes::from(tail),
        id: manifest_digest,
    })
}

/// Two zero blocks end a tar archive.
const END_OF_ARCHIVE: usize = 1024;

/// Zeros that round an entry of `size` bytes up to whole 512-byte blocks.
fn padding(size: u64) -> usize {
    ((512 - size % 512) % 512) as usize
}

/// A regular file entry: header, `data`, padding.
fn append_file(out: &mut Vec<u8>, name: &str, data: &[u8]) -> std::io::Result<()> {
    tar_header(out, name, data.len() as u64)?;
    out.extend_from_slice(data);
    out.resize(out.len() + padding(data.len() as u64), 0);
    Ok(())
}

fn tar_header(out: &mut Vec<u8>, name: &str, size: u64) -> std::io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_path(name)?;
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
    Ok(())
}

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// The OCI platform object of an image config.
pub fn platform(config: &Value) -> Value {
    let mut platform = json!({"architecture": config["architecture"], "os": config["os"]});
    for key in ["variant", "os.version"] {
        if let Some(v) = config.get(key) {
            platform[key] = v.clone();
        }
    }
    platform
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{HealthConfig, ImageConfig};

    fn source() -> ImageInspect {
        ImageInspect {
            id: Some("sha256:abc".into()),
            architecture: Some("arm64".into()),
            variant: Some("v8".into()),
            os: Some("linux".into()),
            author: Some("".into()),
            config: Some(ImageConfig {
                env: Some(vec!["P=$5".into(), "Q=a\nb".into()]),
                exposed_ports: Some(vec!["80/tcp".into()]),
                volumes: Some(vec!["/data".into()]),
                healthcheck: Some(HealthConfig {
                    test: Some(vec!["CMD".into(), "true".into()]),
                    start_period: Some(5),
                    ..Default::default()
                }),
                shell: Some(vec!["/bin/ash".into(), "-c".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn carries_config_platform_and_provenance() {
        let p = Provenance {
            reference: "app:1",
            layers: 7,
        };
        let v = flattened(&source(), &p, "sha256:layer", SystemTime::UNIX_EPOCH);
        assert_eq!(v["architecture"], "arm64");
        assert_eq!(v["variant"], "v8");
        assert!(v.get("author").is_none(), "empty author is left out");
        assert_eq!(v["config"]["Env"], json!(["P=$5", "Q=a\nb"]));
        assert_eq!(v["config"]["ExposedPorts"], json!({"80/tcp": {}}));
        assert_eq!(v["config"]["Volumes"], json!({"/data": {}}));
        assert_eq!(v["config"]["Healthcheck"]["StartPeriod"], 5);
        let mut empty = source();
        empty.config.as_mut().unwrap().volumes = Some(vec![]);
        let e = flattened(&empty, &p, "sha256:layer", SystemTime::UNIX_EPOCH);
        assert!(
            e["config"].get("Volumes").is_none(),
            "empty maps are written as absent"
        );
        assert_eq!(v["rootfs"]["diff_ids"], json!(["sha256:layer"]));
        assert_eq!(
            v["history"][0]["created_by"],
            "docker flatten app:1 (sha256:abc)"
        );
        assert_eq!(v["created"], "1970-01-01T00:00:00.000000000Z");
    }

    #[test]
    fn oci_archive_carries_the_layer_between_head_and_tail() {
        let blob = b"not really zstd, but bytes of an odd length".to_vec();
        let layer = Digests {
            diff_id: "sha256:d".into(),
            blob: image_id(&blob),
            blob_size: blob.len() as u64,
            compression: crate::upload::Compression::Zstd,
        };
        let config = br#"{"architecture":"arm64","variant":"v8","os":"linux"}"#;
        let value: Value = serde_json::from_slice(config).unwrap();
        let archive = oci_archive(config, &layer, &platform(&value)).unwrap();
        let whole = [&archive.head[..], &blob, &archive.tail].concat();
        assert_eq!(whole.len() % 512, 0);
        let mut files = Vec::new();
        for e in tar::Archive::new(&whole[..]).entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            files.push((name, data));
        }
        let file = |name: &str| &files.iter().find(|(n, _)| n == name).unwrap().1;
        let hex = |d: &str| d.trim_start_matches("sha256:").to_owned();
        let manifest_name = format!("blobs/sha256/{}", hex(&archive.id));
        let manifest: Value = serde_json::from_slice(file(&manifest_name)).unwrap();
        assert_eq!(image_id(file(&manifest_name)), archive.id);
        assert_eq!(manifest["layers"][0]["digest"], layer.blob.as_str());
        assert_eq!(manifest["layers"][0]["size"], blob.len());
        assert_eq!(
            manifest["layers"][0]["mediaType"], "application/vnd.oci.image.layer.v1.tar+zstd",
            "the media type says how the blob is compressed"
        );
        assert_eq!(manifest["config"]["digest"], image_id(config));
        assert_eq!(
            file(&format!("blobs/sha256/{}", hex(&image_id(config)))),
            config
        );
        let index: Value = serde_json::from_slice(file("index.json")).unwrap();
        assert_eq!(
            index["manifests"][0]["platform"],
            json!({"architecture":"arm64","os":"linux","variant":"v8"})
        );
        assert_eq!(
            files.last().unwrap().0,
            format!("blobs/sha256/{}", hex(&layer.blob))
        );
        assert_eq!(files.last().unwrap().1, blob, "the layer comes last, whole");
    }

    #[test]
    fn archive_names_config_by_its_digest() {
        let bytes = config_only_archive(b"{}", "sha256:0011").unwrap();
        let mut archive = tar::Archive::new(&bytes[..]);
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        let hex = image_id(b"{}").trim_start_matches("sha256:").to_owned();
        assert_eq!(names, [format!("{hex}.json"), "manifest.json".to_owned()]);
    }
}
