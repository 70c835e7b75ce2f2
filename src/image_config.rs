//! The flattened image's config: the source image's whole container config
//! and platform, over the one imported layer, with a history entry saying
//! where it came from; and the `docker load` archives that install it.

use std::time::SystemTime;

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

/// Top-level fields of the flattened config that are written anew, not
/// taken from the source: the one layer (`rootfs`), its one history entry
/// (`history`: the source's entries describe layers that no longer exist,
/// and an image's history must have one non-empty entry per layer), and
/// when it was made (`created`, the time of the flatten, as a build's is).
/// `id` and `parent` are links between the images of an old local graph
/// (Docker before 1.10): the flattened image has no parent.
const SET_ANEW: &[&str] = &["created", "history", "rootfs", "id", "parent"];

/// Builds the image config JSON for the flattened image: every top-level
/// field of `source` (an image config: `config`, the platform,
/// `docker_version`, `author`, `os.features`, …) exactly as it is there,
/// except those in [`SET_ANEW`].
pub fn flattened(
    source: &Value,
    source_id: &str,
    provenance: &Provenance<'_>,
    diff_id: &str,
    created: SystemTime,
) -> Value {
    let created = humantime::format_rfc3339_nanos(created).to_string();
    let mut config = source.as_object().cloned().unwrap_or_default();
    config.retain(|key, _| !SET_ANEW.contains(&key.as_str()));
    let anew = json!({
        "created": created,
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
    config.extend(anew.as_object().cloned().unwrap_or_default());
    Value::Object(config)
}

/// An image config from a graphdriver engine's inspect of the image, as the
/// engine sent it: the store keeps the config it was given, and its inspect
/// reports the config's fields under other names. Empty strings are absent
/// fields (the config omits them), and so is a `container_config` with
/// nothing in it (the engine reports one for every image). The engine does
/// not report `os.features`, nor fields it does not know.
pub fn from_inspect(inspect: &Value) -> Value {
    const NAMES: &[(&str, &str)] = &[
        ("Architecture", "architecture"),
        ("Os", "os"),
        ("Variant", "variant"),
        ("OsVersion", "os.version"),
        ("Author", "author"),
        ("Comment", "comment"),
        ("Created", "created"),
        ("DockerVersion", "docker_version"),
        ("Container", "container"),
        ("ContainerConfig", "container_config"),
        ("Config", "config"),
    ];
    let mut config = serde_json::Map::new();
    for (from, to) in NAMES {
        match inspect.get(*from) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.is_empty() => {}
            Some(v) if *to == "container_config" && is_empty(v) => {}
            Some(v) => {
                config.insert((*to).to_owned(), v.clone());
            }
        }
    }
    Value::Object(config)
}

/// Whether a JSON value holds nothing but zero values.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_empty),
        Value::Bool(true) => false,
    }
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

    #[test]
    fn carries_every_field_but_those_set_anew() {
        let source = json!({
            "architecture": "arm64", "variant": "v8", "os": "linux",
            "os.version": "10.0.1", "os.features": ["win32k"],
            "author": "Ann", "docker_version": "17.03.2", "comment": "imported",
            "container": "abc", "container_config": {"Cmd": ["build"]},
            "x-vendor": {"kept": true},
            "config": {"Env": ["P=$5", "Q=a\nb"], "ExposedPorts": {}, "Volumes": null},
            "created": "2001-01-01T00:00:00Z", "id": "old", "parent": "older",
            "rootfs": {"type": "layers", "diff_ids": ["sha256:1", "sha256:2"]},
            "history": [{"created_by": "a"}, {"created_by": "b"}],
        });
        let p = Provenance {
            reference: "app:1",
            layers: 2,
        };
        let v = flattened(
            &source,
            "sha256:abc",
            &p,
            "sha256:layer",
            SystemTime::UNIX_EPOCH,
        );
        for key in [
            "architecture",
            "variant",
            "os",
            "os.version",
            "os.features",
            "author",
            "docker_version",
            "comment",
            "container",
            "container_config",
            "x-vendor",
            "config",
        ] {
            assert_eq!(v[key], source[key], "{key}");
        }
        for gone in ["id", "parent"] {
            assert!(v.get(gone).is_none(), "{gone}");
        }
        assert_eq!(v["rootfs"]["diff_ids"], json!(["sha256:layer"]));
        assert_eq!(v["history"].as_array().unwrap().len(), 1);
        assert_eq!(
            v["history"][0]["created_by"],
            "docker flatten app:1 (sha256:abc)"
        );
        assert_eq!(v["created"], "1970-01-01T00:00:00.000000000Z");
    }

    #[test]
    fn a_graphdriver_inspect_reads_back_as_the_config() {
        let inspect = json!({
            "Id": "sha256:abc", "Parent": "", "Comment": "", "Created": "2020-01-01T00:00:00Z",
            "Container": "", "DockerVersion": "20.10.24", "Author": "Ann",
            "ContainerConfig": {"Hostname": "", "Cmd": null, "Tty": false, "Labels": null},
            "Config": {"Cmd": ["/app"], "Env": null}, "Architecture": "amd64",
            "Variant": "", "Os": "linux", "OsVersion": "", "Size": 4,
            "RootFS": {"Type": "layers", "Layers": ["sha256:1"]},
        });
        assert_eq!(
            from_inspect(&inspect),
            json!({
                "architecture": "amd64", "os": "linux", "author": "Ann",
                "created": "2020-01-01T00:00:00Z", "docker_version": "20.10.24",
                "config": {"Cmd": ["/app"], "Env": null},
            })
        );
        let mut built = inspect.clone();
        built["ContainerConfig"]["Cmd"] = json!(["/bin/sh", "-c", "make"]);
        assert_eq!(
            from_inspect(&built)["container_config"],
            built["ContainerConfig"]
        );
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
