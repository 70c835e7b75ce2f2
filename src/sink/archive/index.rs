//! The archive that loads a multi-platform flattened image: an OCI image
//! layout whose `index.json` has one entry, pointing at a nested index of
//! one one-layer manifest per platform, as `docker save` of such an image
//! writes it on the containerd store. Loaded so, Engines 26.1 and 28.5 keep
//! every platform under one image whose ID is the nested index's digest;
//! two manifests listed directly in `index.json` would leave only the last
//! (`tests/engines.rs`).
//!
//! The layer blobs are streamed by the caller, never held: the archive is
//! its metadata members, then per platform the layer's header, its bytes
//! and their padding, then the end of the archive.

use bytes::Bytes;
use serde_json::{json, Value};

use super::{
    blob_path, digest, layer_header, top_index, CONFIG_TYPE, INDEX_TYPE, LAYOUT, MANIFEST_TYPE,
};
use crate::encode::Digests;
use crate::model::reference::Tag;
use crate::model::KeptLayer;
use crate::tar::blocks;

/// One platform's flattened image: its config over its one layer.
pub struct PlatformImage {
    pub config: Vec<u8>,
    /// Layers kept from IMAGE below the flattened one, bottom first: the
    /// manifest names them, the archive does not carry them (the engine
    /// has them).
    pub kept: Vec<KeptLayer>,
    pub layer: Digests,
    /// The OCI platform object its index entry carries.
    pub platform: Value,
}

/// An OCI layout of one index over one-layer images, but the layers' bytes.
pub struct IndexArchive {
    images: Vec<PlatformImage>,
    manifests: Vec<Vec<u8>>,
    nested: Vec<u8>,
    index: Vec<u8>,
    /// `manifest.json` of a named archive: the `main` platform alone, as
    /// `docker save` of a multi-platform image lists it, for engines that
    /// read a docker-archive (one image per tag).
    docker_manifest: Option<Vec<u8>>,
}

impl IndexArchive {
    /// The archive of `images` (in index order). Unnamed, the load leaves
    /// the index untagged, for the run to tag once it is whole; named (an
    /// `--output` file), `docker load` tags it `name`, and an engine that
    /// reads `manifest.json` instead loads image `main` under that name.
    pub fn new(images: Vec<PlatformImage>, name: Option<(&Tag, usize)>) -> IndexArchive {
        let manifests: Vec<Vec<u8>> = images
            .iter()
            .map(|image| {
                json!({
                    "schemaVersion": 2,
                    "mediaType": MANIFEST_TYPE,
                    "config": {
                        "mediaType": CONFIG_TYPE,
                        "digest": digest(&image.config),
                        "size": image.config.len(),
                    },
                    "layers": image
                        .kept
                        .iter()
                        .map(|k| json!({"mediaType": k.media_type, "digest": k.digest, "size": k.size}))
                        .chain(std::iter::once(json!({
                            "mediaType": image.layer.compression.layer_media_type(),
                            "digest": image.layer.blob,
                            "size": image.layer.blob_size,
                        })))
                        .collect::<Vec<_>>(),
                })
                .to_string()
                .into_bytes()
            })
            .collect();
        let entries: Vec<Value> = images
            .iter()
            .zip(&manifests)
            .map(|(image, manifest)| {
                json!({
                    "mediaType": MANIFEST_TYPE,
                    "digest": digest(manifest),
                    "size": manifest.len(),
                    "platform": image.platform,
                })
            })
            .collect();
        let nested = json!({"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": entries})
            .to_string()
            .into_bytes();
        let entry =
            json!({"mediaType": INDEX_TYPE, "digest": digest(&nested), "size": nested.len()});
        let index = top_index(entry, name.map(|(tag, _)| tag));
        let docker_manifest = name.map(|(tag, main)| {
            let image = &images[main];
            let layers: Vec<String> = image
                .kept
                .iter()
                .map(|k| blob_path(&k.digest))
                .chain(std::iter::once(blob_path(&image.layer.blob)))
                .collect();
            json!([{
                "Config": blob_path(&digest(&image.config)),
                "RepoTags": [tag.to_string()],
                "Layers": layers,
            }])
            .to_string()
            .into_bytes()
        });
        IndexArchive {
            images,
            manifests,
            nested,
            index,
            docker_manifest,
        }
    }

    /// The image's ID on the containerd store: the nested index's digest.
    pub fn id(&self) -> String {
        digest(&self.nested)
    }

    /// Each platform's manifest digest, in index order.
    pub fn manifest_digests(&self) -> Vec<String> {
        self.manifests.iter().map(|m| digest(m)).collect()
    }

    /// Every member but the layers: layout, configs, manifests, the nested
    /// index and `index.json` (and `manifest.json` when named).
    pub fn metadata(&self) -> Bytes {
        let mut out = Vec::new();
        blocks::append_file(&mut out, "oci-layout", LAYOUT);
        for (image, manifest) in self.images.iter().zip(&self.manifests) {
            blocks::append_file(&mut out, &blob_path(&digest(&image.config)), &image.config);
            blocks::append_file(&mut out, &blob_path(&digest(manifest)), manifest);
        }
        blocks::append_file(&mut out, &blob_path(&self.id()), &self.nested);
        blocks::append_file(&mut out, "index.json", &self.index);
        if let Some(manifest) = &self.docker_manifest {
            blocks::append_file(&mut out, "manifest.json", manifest);
        }
        Bytes::from(out)
    }

    /// The tar header of platform `i`'s layer blob.
    pub fn layer_header(&self, i: usize) -> Bytes {
        Bytes::copy_from_slice(&layer_header(&self.images[i].layer))
    }

    /// The zeros after platform `i`'s layer blob.
    pub fn layer_padding(&self, i: usize) -> Bytes {
        Bytes::from(vec![0; blocks::padding(self.images[i].layer.blob_size)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::compression::Compression;

    fn image(arch: &str, blob: &[u8]) -> PlatformImage {
        PlatformImage {
            config: format!(r#"{{"architecture":"{arch}","os":"linux"}}"#).into_bytes(),
            layer: Digests {
                diff_id: format!("sha256:{arch}"),
                blob: digest(blob),
                blob_size: blob.len() as u64,
                compression: Compression::Gzip,
            },
            platform: json!({"architecture": arch, "os": "linux"}),
            kept: Vec::new(),
        }
    }

    #[test]
    fn one_unnamed_entry_points_at_an_index_of_one_layer_manifests() {
        let blobs: [&[u8]; 2] = [b"amd64 layer, odd length", &[9; 1024]];
        let images = || vec![image("amd64", blobs[0]), image("arm64", blobs[1])];
        let archive = IndexArchive::new(images(), None);
        let mut whole = archive.metadata().to_vec();
        for (i, blob) in blobs.iter().enumerate() {
            whole.extend_from_slice(&archive.layer_header(i));
            whole.extend_from_slice(blob);
            whole.extend_from_slice(&archive.layer_padding(i));
        }
        whole.extend_from_slice(&blocks::END_OF_ARCHIVE);
        assert_eq!(whole.len() % 512, 0);

        let mut files = std::collections::HashMap::new();
        for e in tar::Archive::new(&whole[..]).entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            files.insert(name, data);
        }
        let blob = |d: &str| -> Value { serde_json::from_slice(&files[&blob_path(d)]).unwrap() };
        let index: Value = serde_json::from_slice(&files["index.json"]).unwrap();
        assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
        assert_eq!(index["manifests"][0]["mediaType"], INDEX_TYPE);
        assert_eq!(index["manifests"][0]["digest"], archive.id().as_str());
        assert!(index["manifests"][0].get("annotations").is_none());
        assert!(!files.contains_key("manifest.json"));
        assert_eq!(digest(&files[&blob_path(&archive.id())]), archive.id());
        let nested = blob(&archive.id());
        let entries = nested["manifests"].as_array().unwrap();
        assert_eq!(entries.len(), 2);
        for (i, (entry, arch)) in entries.iter().zip(["amd64", "arm64"]).enumerate() {
            assert_eq!(entry["platform"]["architecture"], arch);
            assert_eq!(entry["digest"], archive.manifest_digests()[i].as_str());
            let manifest = blob(entry["digest"].as_str().unwrap());
            let layers = manifest["layers"].as_array().unwrap();
            assert_eq!(layers.len(), 1);
            assert_eq!(
                layers[0]["mediaType"],
                "application/vnd.oci.image.layer.v1.tar+gzip"
            );
            assert_eq!(
                files[&blob_path(layers[0]["digest"].as_str().unwrap())],
                blobs[i]
            );
            let config = blob(manifest["config"]["digest"].as_str().unwrap());
            assert_eq!(config["architecture"], arch);
        }
    }

    #[test]
    fn a_named_archive_tags_the_index_and_lists_its_main_platform() {
        let tag = Tag::parse("app:flat").unwrap();
        let blobs: [&[u8]; 2] = [b"amd64 layer", b"arm64 layer"];
        let images = vec![image("amd64", blobs[0]), image("arm64", blobs[1])];
        let archive = IndexArchive::new(images, Some((&tag, 1)));
        let metadata = archive.metadata();
        let mut files = std::collections::HashMap::new();
        let mut whole = metadata.to_vec();
        whole.extend_from_slice(&blocks::END_OF_ARCHIVE);
        for e in tar::Archive::new(&whole[..]).entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            files.insert(name, data);
        }
        let index: Value = serde_json::from_slice(&files["index.json"]).unwrap();
        let names = &index["manifests"][0]["annotations"];
        assert_eq!(
            names["io.containerd.image.name"],
            "docker.io/library/app:flat"
        );
        assert_eq!(names["org.opencontainers.image.ref.name"], "flat");
        let listed: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
        assert_eq!(listed[0]["RepoTags"], json!(["app:flat"]));
        assert_eq!(
            listed[0]["Layers"],
            json!([blob_path(&digest(blobs[1]))]),
            "the main platform's layer"
        );
    }
}
