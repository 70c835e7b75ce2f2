//! The image archives we write: the config-only docker-archive that gives
//! an imported layer its config on the graphdriver store, and the OCI image
//! layout (as `docker save` writes it since Engine 25) that the containerd
//! store's `docker load` and `--output` both use: the load is this archive
//! piped into the engine, the file is this archive on disk, as
//! go-containerregistry's `daemon.Write` is its `tarball.Write` piped into
//! a load.
//!
//! The layer blob is streamed by the caller, never held: the archive is
//! metadata members ([`OciArchive::metadata`]) plus the layer's header, its
//! bytes and their padding, in whichever order the destination needs.

pub mod index;

use bytes::Bytes;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::encode::Digests;
use crate::model::reference::Tag;
use crate::model::KeptLayer;
use crate::tar::blocks;

/// `sha256:` and the hex digest of `bytes`: a blob's name; for a config,
/// the image ID a graphdriver engine gives it.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// A `docker load` archive holding only `manifest.json` and the config: the
/// layer is already in the engine's store (the import put it there), so the
/// engine links it by diff ID instead of reading a layer tar.
pub fn config_only(config_bytes: &[u8], diff_id: &str) -> Bytes {
    let config_name = format!("{}.json", hex(&digest(config_bytes)));
    let layer = format!("{}/layer.tar", hex(diff_id));
    let manifest = json!([{
        "Config": config_name,
        "RepoTags": null,
        "Layers": [layer],
    }])
    .to_string();
    let mut archive = Vec::new();
    blocks::append_file(&mut archive, &config_name, config_bytes);
    blocks::append_file(&mut archive, "manifest.json", manifest.as_bytes());
    archive.extend_from_slice(&blocks::END_OF_ARCHIVE);
    Bytes::from(archive)
}

pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";
pub const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// An OCI image layout of one image, but the layer's bytes (and without
/// the bytes of layers kept from the source, which the engine has).
pub struct OciArchive {
    config: Vec<u8>,
    manifest: Vec<u8>,
    index: Vec<u8>,
    /// `manifest.json`, for engines that read a docker-archive (Engine 20.10
    /// loads by it); only in a named archive.
    docker_manifest: Option<Vec<u8>>,
    layer: Digests,
}

impl OciArchive {
    /// The archive of the image with config `config` over `layer`, of the
    /// platform `platform`; named `name` (`docker load` tags it so), or
    /// unnamed (the load leaves the image untagged).
    pub fn new(config: Vec<u8>, layer: &Digests, platform: &Value, name: Option<&Tag>) -> Self {
        Self::onto(config, &[], layer, platform, name)
    }

    /// The archive of an image whose `kept` layers (bottom first) lie below
    /// `layer`: its manifests name them, but it carries only `layer`'s
    /// bytes, for an engine that has them (a graphdriver `docker load`
    /// finds a layer by chain ID and reads its file only when it lacks it;
    /// the containerd store takes a blob it has). With kept layers it
    /// always has a `manifest.json`, which a graphdriver engine loads by.
    pub fn onto(
        config: Vec<u8>,
        kept: &[KeptLayer],
        layer: &Digests,
        platform: &Value,
        name: Option<&Tag>,
    ) -> Self {
        let config_digest = digest(&config);
        let mut layers: Vec<Value> = kept
            .iter()
            .map(|k| json!({"mediaType": k.media_type, "digest": k.digest, "size": k.size}))
            .collect();
        layers.push(json!({
            "mediaType": layer.compression.layer_media_type(),
            "digest": layer.blob,
            "size": layer.blob_size,
        }));
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "digest": config_digest, "size": config.len()},
            "layers": layers,
        })
        .to_string()
        .into_bytes();
        let entry = json!({
            "mediaType": MANIFEST_TYPE,
            "digest": digest(&manifest),
            "size": manifest.len(),
            "platform": platform,
        });
        let index = top_index(entry, name);
        let docker_manifest = (name.is_some() || !kept.is_empty()).then(|| {
            let mut paths: Vec<String> = kept.iter().map(|k| blob_path(&k.digest)).collect();
            paths.push(blob_path(&layer.blob));
            json!([{
                "Config": blob_path(&config_digest),
                "RepoTags": name.map(|tag| vec![tag.to_string()]),
                "Layers": paths,
            }])
            .to_string()
            .into_bytes()
        });
        OciArchive {
            config,
            manifest,
            index,
            docker_manifest,
            layer: layer.clone(),
        }
    }

    /// The image's ID on a graphdriver engine: its config's digest.
    pub fn config_id(&self) -> String {
        digest(&self.config)
    }

    /// The image's ID on the containerd store: its manifest's digest.
    pub fn id(&self) -> String {
        digest(&self.manifest)
    }

    /// Every member but the layer: layout, config, manifest, index (and
    /// `manifest.json` when named).
    pub fn metadata(&self) -> Vec<u8> {
        let mut out = Vec::new();
        blocks::append_file(&mut out, "oci-layout", LAYOUT);
        blocks::append_file(&mut out, &blob_path(&digest(&self.config)), &self.config);
        blocks::append_file(&mut out, &blob_path(&self.id()), &self.manifest);
        blocks::append_file(&mut out, "index.json", &self.index);
        if let Some(manifest) = &self.docker_manifest {
            blocks::append_file(&mut out, "manifest.json", manifest);
        }
        out
    }

    /// The layer blob's tar header.
    pub fn layer_header(&self) -> [u8; blocks::BLOCK] {
        layer_header(&self.layer)
    }

    /// The zeros after the layer blob.
    pub fn layer_padding(&self) -> Vec<u8> {
        vec![0; blocks::padding(self.layer.blob_size)]
    }

    /// What goes before the layer blob when it streams last: the metadata
    /// members and the blob's header.
    pub fn head(&self) -> Vec<u8> {
        [&self.metadata()[..], &self.layer_header()].concat()
    }

    /// What goes after the layer blob when it streams last: its padding
    /// and the end of the archive.
    pub fn tail(&self) -> Vec<u8> {
        [&self.layer_padding()[..], &blocks::END_OF_ARCHIVE].concat()
    }
}

/// `index.json`: one entry, named TAG for the engines that read it
/// (`io.containerd.image.name`) and for OCI tools (`ref.name`, the tag).
pub fn top_index(mut entry: Value, name: Option<&Tag>) -> Vec<u8> {
    if let Some(tag) = name {
        entry["annotations"] = json!({
            "io.containerd.image.name": tag.full_name(),
            "org.opencontainers.image.ref.name": tag.tag,
        });
    }
    json!({"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [entry]})
        .to_string()
        .into_bytes()
}

/// The tar header of the layer blob `layer`: what a destination that
/// streams the blob before knowing its digest writes last, over a
/// placeholder.
pub fn layer_header(layer: &Digests) -> [u8; blocks::BLOCK] {
    blocks::file_header(&blob_path(&layer.blob), layer.blob_size)
}

pub fn blob_path(digest: &str) -> String {
    format!("blobs/sha256/{}", hex(digest))
}

fn hex(digest: &str) -> &str {
    digest.trim_start_matches("sha256:")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::platform;

    /// The members of a whole archive: name and contents.
    fn members(whole: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut files = Vec::new();
        for e in ::tar::Archive::new(whole).entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            files.push((name, data));
        }
        files
    }

    fn layer(blob: &[u8]) -> Digests {
        Digests {
            diff_id: "sha256:d".into(),
            blob: digest(blob),
            blob_size: blob.len() as u64,
            compression: crate::model::compression::Compression::Zstd,
        }
    }

    #[test]
    fn an_unnamed_archive_carries_the_layer_after_the_metadata() {
        let blob = b"not really zstd, but bytes of an odd length".to_vec();
        let layer = layer(&blob);
        let config = br#"{"architecture":"arm64","variant":"v8","os":"linux"}"#.to_vec();
        let value: Value = serde_json::from_slice(&config).unwrap();
        let archive = OciArchive::new(config.clone(), &layer, &platform(&value), None);
        let whole = [
            &archive.metadata()[..],
            &archive.layer_header(),
            &blob,
            &archive.layer_padding(),
            &blocks::END_OF_ARCHIVE,
        ]
        .concat();
        assert_eq!(whole.len() % 512, 0);
        let files = members(&whole);
        let file = |name: &str| &files.iter().find(|(n, _)| n == name).unwrap().1;
        let manifest_name = format!("blobs/sha256/{}", hex(&archive.id()));
        let manifest: Value = serde_json::from_slice(file(&manifest_name)).unwrap();
        assert_eq!(digest(file(&manifest_name)), archive.id());
        assert_eq!(manifest["layers"][0]["digest"], layer.blob.as_str());
        assert_eq!(manifest["layers"][0]["size"], blob.len());
        assert_eq!(
            manifest["layers"][0]["mediaType"], "application/vnd.oci.image.layer.v1.tar+zstd",
            "the media type says how the blob is compressed"
        );
        assert_eq!(manifest["config"]["digest"], digest(&config));
        assert_eq!(
            file(&format!("blobs/sha256/{}", hex(&digest(&config)))),
            &config
        );
        let index: Value = serde_json::from_slice(file("index.json")).unwrap();
        assert_eq!(
            index["manifests"][0]["platform"],
            json!({"architecture":"arm64","os":"linux","variant":"v8"})
        );
        assert!(index["manifests"][0].get("annotations").is_none());
        assert!(files.iter().all(|(n, _)| n != "manifest.json"));
        assert_eq!(files.last().unwrap().0, blob_path(&layer.blob));
        assert_eq!(files.last().unwrap().1, blob, "the layer comes last, whole");
    }

    #[test]
    fn an_archive_onto_kept_layers_names_them_and_carries_only_the_new_one() {
        let blob = vec![7; 100];
        let kept = KeptLayer {
            diff_id: "sha256:4567".into(),
            digest: "sha256:0123".into(),
            size: 5000,
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip",
        };
        let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
        let value: Value = serde_json::from_slice(&config).unwrap();
        let archive = OciArchive::onto(config, &[kept], &layer(&blob), &platform(&value), None);
        let files = members(&[&archive.metadata()[..], &blocks::END_OF_ARCHIVE].concat());
        let file = |name: &str| {
            files
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, d)| d.clone())
        };
        let manifest: Value =
            serde_json::from_slice(&file(&blob_path(&archive.id())).unwrap()).unwrap();
        assert_eq!(manifest["layers"][0]["digest"], "sha256:0123");
        assert_eq!(manifest["layers"][0]["size"], 5000);
        assert_eq!(manifest["layers"][1]["digest"], digest(&blob).as_str());
        let docker: Value = serde_json::from_slice(&file("manifest.json").unwrap()).unwrap();
        assert_eq!(docker[0]["Layers"][0], "blobs/sha256/0123");
        assert_eq!(docker[0]["RepoTags"], Value::Null);
        assert!(
            file("blobs/sha256/0123").is_none(),
            "the kept layer does not travel"
        );
        assert_eq!(
            archive.config_id(),
            digest(br#"{"architecture":"amd64","os":"linux"}"#)
        );
    }

    #[test]
    fn a_named_archive_names_the_image_for_every_engine() {
        let blob = vec![7; 1000];
        let layer = layer(&blob);
        let tag = Tag::parse("team/app:1.4").unwrap();
        let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
        let archive = OciArchive::new(config.clone(), &layer, &json!({}), Some(&tag));
        // The layer first under a placeholder header, as a file is written.
        let whole = [
            &layer_header(&layer)[..],
            &blob,
            &archive.layer_padding(),
            &archive.metadata(),
            &blocks::END_OF_ARCHIVE,
        ]
        .concat();
        let files = members(&whole);
        let file = |name: &str| &files.iter().find(|(n, _)| n == name).unwrap().1;
        let index: Value = serde_json::from_slice(file("index.json")).unwrap();
        assert_eq!(
            index["manifests"][0]["annotations"],
            json!({
                "io.containerd.image.name": "docker.io/team/app:1.4",
                "org.opencontainers.image.ref.name": "1.4",
            })
        );
        let manifest: Value = serde_json::from_slice(file("manifest.json")).unwrap();
        assert_eq!(
            manifest,
            json!([{
                "Config": blob_path(&digest(&config)),
                "RepoTags": ["team/app:1.4"],
                "Layers": [blob_path(&layer.blob)],
            }])
        );
        assert_eq!(file(&blob_path(&layer.blob)), &blob);
        assert_eq!(file("oci-layout"), LAYOUT);
    }

    #[test]
    fn config_only_names_config_by_its_digest() {
        let bytes = config_only(b"{}", "sha256:0011");
        let names: Vec<String> = members(&bytes).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                format!("{}.json", hex(&digest(b"{}"))),
                "manifest.json".to_owned()
            ]
        );
    }
}
