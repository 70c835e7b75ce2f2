//! IMAGE's platforms on the containerd store, read from its `docker save`
//! stream: whether IMAGE is one manifest or an index, and for an index
//! every entry: its platform, whether it is an image or an attestation,
//! and whether the store has its content (manifest, config and every
//! layer: a pull fetches only the host's platform), with each present
//! platform's config as the store keeps it.
//!
//! The save stream is the one place every engine shows this: Engine 26.1
//! (API 1.45) has no per-platform inspect nor `manifests=1` listing, and
//! without a `platform` parameter the save sends every blob the store has
//! for IMAGE's index, in digest order (`tests/engines.rs` asserts both).
//! JSON blobs are kept (manifests, configs, the index: kilobytes), layers
//! are only noted and read past, and the read stops as soon as everything
//! the index names is accounted for; for a one-manifest IMAGE, as soon as
//! the manifest and its config are (the engine sends the stream slowly, and
//! the rest is layers, which the run reads or exports on its own). Then
//! [`SourceIndex::choose`]: what a run flattens of it. (Over half this file is its tests, with the builder
//! of the save streams they read.)

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use crate::model::platform::{NotOffered, Offered, Platform};

const INDEX_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
pub const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// The annotation BuildKit puts on an index entry that holds provenance or
/// an SBOM for another entry: it describes the source image, not ours.
const REFERENCE_TYPE: &str = "vnd.docker.reference.type";
const REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";

/// What IMAGE's ID names.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceIndex {
    /// One image manifest: a one-platform image.
    Manifest(Manifest),
    /// An index of manifests (`docker buildx build --platform a,b`, or a pull).
    Index(Vec<Entry>),
}

/// One entry of IMAGE's index.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The entry's manifest digest.
    pub digest: String,
    pub media_type: String,
    /// As the index states it, else as its config does; `None` for an
    /// attestation (`unknown/unknown`) or an entry that says none.
    pub platform: Option<Platform>,
    pub role: Role,
    /// `None` when the store lacks the manifest, its config or a layer.
    pub content: Option<Manifest>,
}

/// What an index entry is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// An image for a platform: flattened.
    Image,
    /// Provenance or SBOM of the entry `of`: refers to the source image.
    Attestation { of: String },
    /// Not an image manifest (a nested index, an artifact).
    Other,
}

/// An image manifest whose content the store has.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub digest: String,
    /// The manifest's own size in bytes.
    pub size: u64,
    pub config_digest: String,
    /// The image config, exactly as stored.
    pub config: Value,
    pub layers: Vec<Descriptor>,
}

/// A layer as a manifest describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
}

impl Manifest {
    /// The bytes of its layers as stored.
    pub fn layers_size(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }
}

/// Why a save stream does not tell IMAGE's platforms.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("the save stream holds no blob {0}, which the engine gives as the image's ID")]
    NoTarget(String),
    /// The engine lacks part of what IMAGE's manifest names, and saved it
    /// without its config and layers (moby#49473).
    #[error(
        "blob {digest} in the save stream is not an image manifest or index whose config and \
         layers are all there"
    )]
    Incomplete { digest: String },
}

impl SourceIndex {
    /// IMAGE's platforms as the refusal of a `--platform` lists them:
    /// images only, in index order.
    pub fn offered(&self) -> Vec<Offered> {
        match self {
            SourceIndex::Manifest(m) => Platform::from_oci(&m.config)
                .map(|platform| Offered {
                    platform,
                    present: true,
                })
                .into_iter()
                .collect(),
            SourceIndex::Index(entries) => entries
                .iter()
                .filter(|e| e.role == Role::Image)
                .filter_map(|e| {
                    Some(Offered {
                        platform: e.platform.clone()?,
                        present: e.content.is_some(),
                    })
                })
                .collect(),
        }
    }
}

/// Which of IMAGE's platforms a run flattens, and what it leaves out.
#[derive(Debug, PartialEq)]
pub struct Choice<'a> {
    /// In index order, each with its manifest.
    pub platforms: Vec<(Platform, &'a Manifest)>,
    /// The result is an index: IMAGE is one and no platform was asked for.
    pub index: bool,
    /// Platforms whose content the store lacks: left out.
    pub absent: Vec<Platform>,
    /// Attestation manifests: dropped, as they describe IMAGE's manifests.
    pub attestations: usize,
    /// Entries that are no image manifest (their media types): left out.
    pub others: Vec<String>,
}

/// What a run flattens of IMAGE: an owned [`Choice`], or IMAGE as the
/// engine shows it when there is nothing to choose.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// IMAGE as inspected: a graphdriver image, or a one-manifest image
    /// whose config comes from its save stream beside the export.
    AsInspected,
    /// One platform: IMAGE's only one, or the one `--platform` picked from
    /// its index (`of_index`), whose container must be created for it.
    One {
        platform: Platform,
        manifest: Manifest,
        of_index: bool,
    },
    /// Every present platform of IMAGE's index, into an index.
    Index(Vec<(Platform, Manifest)>),
}

/// What a run leaves out of IMAGE, to be said.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeftOut {
    /// Platforms whose content the store lacks.
    pub absent: Vec<Platform>,
    /// Attestation manifests dropped.
    pub attestations: usize,
    /// Media types of entries that are no image.
    pub others: Vec<String>,
}

impl Choice<'_> {
    /// The plan and what it leaves out; `of_index` when IMAGE is an index.
    pub fn plan(&self, of_index: bool) -> (Plan, LeftOut) {
        let left_out = LeftOut {
            absent: self.absent.clone(),
            attestations: self.attestations,
            others: self.others.clone(),
        };
        let owned = || {
            self.platforms
                .iter()
                .map(|(p, m)| (p.clone(), (*m).clone()))
                .collect::<Vec<_>>()
        };
        let plan = match &self.platforms[..] {
            [] => Plan::AsInspected,
            _ if self.index => Plan::Index(owned()),
            [(platform, manifest)] => Plan::One {
                platform: platform.clone(),
                manifest: (*manifest).clone(),
                of_index,
            },
            _ => Plan::Index(owned()),
        };
        (plan, left_out)
    }
}

/// Why no platform of IMAGE can be flattened as asked.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChoiceError {
    #[error("{0}")]
    NotOffered(NotOffered),
    #[error(
        "the content of {platform} of {image} is not in the store (a pull fetches only the \
         host's platform): pull it first (docker pull --platform {platform} {image})"
    )]
    Absent { image: String, platform: Platform },
    #[error(
        "{image} has two manifests for {platform} ({first} and {second}), which the engine \
         cannot tell apart when it creates a container: flatten one with --platform"
    )]
    Ambiguous {
        image: String,
        platform: Platform,
        first: String,
        second: String,
    },
    #[error(
        "the store has the content of no platform of {image} (it lists {}): pull one first \
         (docker pull --platform PLATFORM {image})",
        list(.offered)
    )]
    NothingPresent {
        image: String,
        offered: Vec<Platform>,
    },
}

fn list(platforms: &[Platform]) -> String {
    platforms
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl SourceIndex {
    /// The platforms to flatten: `wanted` alone (refused when IMAGE lacks
    /// it or its content), else every platform whose content the store has.
    pub fn choose(
        &self,
        image: &str,
        wanted: Option<&Platform>,
    ) -> Result<Choice<'_>, Box<ChoiceError>> {
        let not_offered = |wanted: &Platform| {
            Box::new(ChoiceError::NotOffered(NotOffered {
                image: image.to_owned(),
                wanted: wanted.clone(),
                offered: self.offered(),
            }))
        };
        let entries = match self {
            SourceIndex::Manifest(m) => {
                let own = Platform::from_oci(&m.config);
                if let Some(wanted) = wanted {
                    if !own.as_ref().is_some_and(|own| wanted.matches(own)) {
                        return Err(not_offered(wanted));
                    }
                }
                return Ok(Choice {
                    platforms: own.map(|p| (p, m)).into_iter().collect(),
                    index: false,
                    absent: Vec::new(),
                    attestations: 0,
                    others: Vec::new(),
                });
            }
            SourceIndex::Index(entries) => entries,
        };
        let images: Vec<(&Platform, &Entry)> = entries
            .iter()
            .filter(|e| e.role == Role::Image)
            .filter_map(|e| Some((e.platform.as_ref()?, e)))
            .collect();
        let mut choice = Choice {
            platforms: Vec::new(),
            index: wanted.is_none(),
            absent: Vec::new(),
            attestations: entries
                .iter()
                .filter(|e| matches!(e.role, Role::Attestation { .. }))
                .count(),
            others: entries
                .iter()
                .filter(|e| e.role == Role::Other)
                .map(|e| e.media_type.clone())
                .collect(),
        };
        if let Some(wanted) = wanted {
            let (platform, entry) = images
                .iter()
                .find(|(p, _)| wanted.matches(p))
                .ok_or_else(|| not_offered(wanted))?;
            let manifest = entry.content.as_ref().ok_or_else(|| {
                Box::new(ChoiceError::Absent {
                    image: image.to_owned(),
                    platform: (*platform).clone(),
                })
            })?;
            choice.platforms.push(((*platform).clone(), manifest));
            return Ok(choice);
        }
        for (platform, entry) in &images {
            let Some(manifest) = &entry.content else {
                choice.absent.push((*platform).clone());
                continue;
            };
            if let Some((_, first)) = choice.platforms.iter().find(|(p, _)| p.matches(platform)) {
                return Err(Box::new(ChoiceError::Ambiguous {
                    image: image.to_owned(),
                    platform: (*platform).clone(),
                    first: first.digest.clone(),
                    second: manifest.digest.clone(),
                }));
            }
            choice.platforms.push(((*platform).clone(), manifest));
        }
        if choice.platforms.is_empty() {
            return Err(Box::new(ChoiceError::NothingPresent {
                image: image.to_owned(),
                offered: images.iter().map(|(p, _)| (*p).clone()).collect(),
            }));
        }
        Ok(choice)
    }
}

/// What the blob `id` (IMAGE's ID) is, from the blobs of a save stream
/// read whole: each digest, with the bytes of those kept.
pub fn from_blobs<'a>(
    blobs: impl IntoIterator<Item = (String, Option<&'a [u8]>)>,
    id: &str,
) -> Result<SourceIndex, IndexError> {
    let mut read = Blobs::default();
    for (digest, bytes) in blobs {
        read.note(digest, bytes);
    }
    read.index(id)
}

/// The blobs of a save stream read so far: every digest, and the JSON
/// ones' contents. Fed by the save stream's walk
/// ([`crate::saved::walk::read_index`]) or from blobs already read.
#[derive(Default)]
pub struct Blobs {
    present: HashSet<String>,
    json: HashMap<String, Value>,
}

fn is_index(value: &Value) -> bool {
    value["manifests"].is_array()
        || INDEX_TYPES.contains(&value["mediaType"].as_str().unwrap_or(""))
}

impl Blobs {
    /// Notes the blob `digest`, with its bytes if they were kept: JSON ones
    /// (manifests, configs, indexes) are parsed.
    pub fn note(&mut self, digest: String, bytes: Option<&[u8]>) {
        if let Some(value) = bytes
            .filter(|b| b.first() == Some(&b'{'))
            .and_then(|b| serde_json::from_slice::<Value>(b).ok())
        {
            self.json.insert(digest.clone(), value);
        }
        self.present.insert(digest);
    }

    /// What the blob `id` is, as far as the blobs noted say.
    pub fn index(&self, id: &str) -> Result<SourceIndex, IndexError> {
        self.resolve(id)
            .unwrap_or_else(|| Err(IndexError::NoTarget(id.to_owned())))
    }

    /// Whether every image the target names is present, so that more of
    /// the stream cannot change what [`Blobs::resolve`] says.
    pub fn complete(&self, id: &str) -> bool {
        let Some(target) = self.json.get(id) else {
            return false;
        };
        if !is_index(target) {
            // IMAGE as one manifest: its config is all the run needs from
            // here. Its layers are the export's snapshot or the merge's read,
            // which fail on their own if the store lacks one; waiting for
            // their blobs would read the whole stream, as slow as the engine
            // sends it (about 25 MB/s on Engine 26.1).
            let config = target["config"]["digest"].as_str().unwrap_or_default();
            return self.json.contains_key(config);
        }
        target["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|d| {
                let annotated = d["annotations"][REFERENCE_TYPE].is_string();
                let image = MANIFEST_TYPES.contains(&d["mediaType"].as_str().unwrap_or(""));
                annotated
                    || !image
                    || d["digest"]
                        .as_str()
                        .and_then(|digest| self.json.get(digest))
                        .is_some_and(|m| self.has_content(m))
            })
    }

    /// Whether a manifest's config and layers have all been read.
    fn has_content(&self, manifest: &Value) -> bool {
        let config = manifest["config"]["digest"].as_str().unwrap_or_default();
        self.json.contains_key(config)
            && manifest["layers"].as_array().is_some_and(|layers| {
                layers.iter().all(|l| {
                    l["digest"]
                        .as_str()
                        .is_some_and(|d| self.present.contains(d))
                })
            })
    }

    /// What the blobs read so far say; `None` until the target itself has
    /// been read.
    fn resolve(&self, id: &str) -> Option<Result<SourceIndex, IndexError>> {
        let target = self.json.get(id)?;
        if !is_index(target) {
            return Some(
                self.manifest(id, target, false)
                    .map(SourceIndex::Manifest)
                    .ok_or_else(|| IndexError::Incomplete {
                        digest: id.to_owned(),
                    }),
            );
        }
        let mut entries = Vec::new();
        for descriptor in target["manifests"].as_array().into_iter().flatten() {
            let digest = descriptor["digest"].as_str().unwrap_or_default().to_owned();
            let media_type = descriptor["mediaType"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let annotations = &descriptor["annotations"];
            let role = if let Some(of) = annotations[REFERENCE_DIGEST]
                .as_str()
                .filter(|_| annotations[REFERENCE_TYPE].is_string())
            {
                Role::Attestation { of: of.to_owned() }
            } else if MANIFEST_TYPES.contains(&media_type.as_str()) {
                Role::Image
            } else {
                Role::Other
            };
            let content = match (&role, self.json.get(&digest)) {
                (Role::Image, Some(manifest)) => self.manifest(&digest, manifest, true),
                _ => None,
            };
            let platform = Platform::from_oci(&descriptor["platform"])
                .filter(|p| p.os != "unknown")
                .or_else(|| content.as_ref().and_then(|m| Platform::from_oci(&m.config)));
            entries.push(Entry {
                digest,
                media_type,
                platform,
                role,
                content,
            });
        }
        Some(Ok(SourceIndex::Index(entries)))
    }

    /// The manifest `digest` with its config, if the store has it (and,
    /// with `check_layers`, every layer: how a platform of an index counts as
    /// present).
    fn manifest(&self, digest: &str, manifest: &Value, check_layers: bool) -> Option<Manifest> {
        let config_digest = manifest["config"]["digest"].as_str()?;
        let config = self.json.get(config_digest)?;
        let layers = manifest["layers"]
            .as_array()?
            .iter()
            .map(|l| {
                Some(Descriptor {
                    digest: l["digest"].as_str()?.to_owned(),
                    size: l["size"].as_u64()?,
                    media_type: l["mediaType"].as_str().unwrap_or_default().to_owned(),
                })
            })
            .collect::<Option<Vec<Descriptor>>>()?;
        if check_layers && !layers.iter().all(|l| self.present.contains(&l.digest)) {
            return None;
        }
        Some(Manifest {
            digest: digest.to_owned(),
            size: serde_json::to_vec(manifest).map_or(0, |b| b.len() as u64),
            config_digest: config_digest.to_owned(),
            config: config.clone(),
            layers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // The streamed read is the save stream walk's; these fixtures test it
    // beside the read of blobs already in memory, which must agree.
    use crate::saved::walk::read_index as read;
    use serde_json::json;
    use sha2::{Digest, Sha256};
    use std::io::Read;

    fn digest(bytes: &[u8]) -> String {
        format!("sha256:{:x}", Sha256::digest(bytes))
    }

    /// A save stream of `blobs` in digest order, as the containerd store
    /// sends it, then `index.json`; `counted` records how far a reader got.
    struct Save {
        blobs: Vec<(String, Vec<u8>)>,
    }

    impl Save {
        fn new() -> Save {
            Save { blobs: Vec::new() }
        }

        fn add(&mut self, bytes: Vec<u8>) -> String {
            let d = digest(&bytes);
            self.blobs.push((d.clone(), bytes));
            d
        }

        fn add_json(&mut self, value: Value) -> (String, usize) {
            let bytes = serde_json::to_vec(&value).unwrap();
            let size = bytes.len();
            (self.add(bytes), size)
        }

        fn without(mut self, digest: &str) -> Save {
            self.blobs.retain(|(d, _)| d != digest);
            self
        }

        fn tar(&self) -> Vec<u8> {
            let mut sorted = self.blobs.clone();
            sorted.sort();
            let mut b = tar::Builder::new(Vec::new());
            for (d, data) in sorted
                .iter()
                .map(|(d, b)| (d, b.as_slice()))
                .chain([(&"index".to_owned(), &b"{}"[..])])
            {
                let mut h = tar::Header::new_ustar();
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                let name = match d.strip_prefix("sha256:") {
                    Some(hex) => format!("blobs/sha256/{hex}"),
                    None => "index.json".to_owned(),
                };
                b.append_data(&mut h, name, data).unwrap();
            }
            b.into_inner().unwrap()
        }

        /// A platform's image: two layers, config, manifest; its descriptor.
        fn image(&mut self, arch: &str, variant: Option<&str>) -> (Value, String, String) {
            let layers: Vec<Value> = (0..2)
                .map(|i| {
                    let mut tar = vec![0u8; 1024];
                    tar[0] = i;
                    tar[1] = arch.len() as u8;
                    tar[2..2 + arch.len()].copy_from_slice(arch.as_bytes());
                    let size = tar.len();
                    json!({"mediaType": "application/vnd.oci.image.layer.v1.tar",
                           "digest": self.add(tar), "size": size})
                })
                .collect();
            let mut config = json!({"architecture": arch, "os": "linux",
                                    "rootfs": {"type": "layers", "diff_ids": []}});
            let mut platform = json!({"architecture": arch, "os": "linux"});
            if let Some(v) = variant {
                config["variant"] = json!(v);
                platform["variant"] = json!(v);
            }
            let (config_digest, config_size) = self.add_json(config);
            let (manifest, size) = self.add_json(json!({
                "schemaVersion": 2, "mediaType": MANIFEST_TYPES[0],
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": config_digest, "size": config_size},
                "layers": layers,
            }));
            let descriptor = json!({"mediaType": MANIFEST_TYPES[0], "digest": manifest,
                                    "size": size, "platform": platform});
            (descriptor, manifest, config_digest)
        }

        fn attestation(&mut self, of: &str) -> Value {
            let (statement, size) =
                self.add_json(json!({"_type": "https://in-toto.io/Statement/v0.1"}));
            let (manifest, msize) = self.add_json(json!({
                "schemaVersion": 2, "mediaType": MANIFEST_TYPES[0],
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": statement, "size": size},
                "layers": [{"mediaType": "application/vnd.in-toto+json", "digest": statement, "size": size}],
            }));
            json!({"mediaType": MANIFEST_TYPES[0], "digest": manifest, "size": msize,
                   "platform": {"architecture": "unknown", "os": "unknown"},
                   "annotations": {REFERENCE_TYPE: "attestation-manifest", REFERENCE_DIGEST: of}})
        }
    }

    #[test]
    fn an_index_lists_its_platforms_attestations_and_what_is_present() {
        let mut save = Save::new();
        let (amd, amd_manifest, amd_config) = save.image("amd64", None);
        let (arm, arm_manifest, _) = save.image("arm64", Some("v8"));
        let att = save.attestation(&amd_manifest);
        let (id, _) = save.add_json(json!({"schemaVersion": 2, "mediaType": INDEX_TYPES[0],
                                           "manifests": [amd, att, arm]}));
        let all = read(&save.tar()[..], &id).unwrap();
        let SourceIndex::Index(entries) = &all else {
            panic!("not an index: {all:?}")
        };
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].role, Role::Image);
        let amd = entries[0].content.as_ref().expect("amd64 present");
        assert_eq!(
            (amd.digest.as_str(), amd.config_digest.as_str()),
            (amd_manifest.as_str(), amd_config.as_str())
        );
        assert_eq!(amd.config["architecture"], "amd64");
        assert_eq!((amd.layers.len(), amd.layers_size()), (2, 2048));
        assert_eq!(
            entries[1].role,
            Role::Attestation {
                of: amd_manifest.clone()
            }
        );
        assert_eq!(entries[1].platform, None);
        assert_eq!(
            entries[2].platform.as_ref().unwrap().to_string(),
            "linux/arm64/v8"
        );
        let offered: Vec<String> = all
            .offered()
            .iter()
            .map(|o| format!("{} {}", o.platform, o.present))
            .collect();
        assert_eq!(offered, ["linux/amd64 true", "linux/arm64/v8 true"]);

        // A pull fetches the host's platform only: the other's manifest is absent.
        let pulled = read(
            &Save {
                blobs: save.blobs.clone(),
            }
            .without(&arm_manifest)
            .tar()[..],
            &id,
        )
        .unwrap();
        let offered: Vec<bool> = pulled.offered().iter().map(|o| o.present).collect();
        assert_eq!(offered, [true, false]);
        // A layer missing makes the platform absent too.
        let layer = entries[2].content.as_ref().unwrap().layers[1]
            .digest
            .clone();
        let partial = read(
            &Save {
                blobs: save.blobs.clone(),
            }
            .without(&layer)
            .tar()[..],
            &id,
        )
        .unwrap();
        assert_eq!(
            partial
                .offered()
                .iter()
                .map(|o| o.present)
                .collect::<Vec<_>>(),
            [true, false]
        );
    }

    #[test]
    fn flattens_every_present_platform_or_the_one_asked_for() {
        let mut save = Save::new();
        let (amd, amd_manifest, _) = save.image("amd64", None);
        let (arm, arm_manifest, _) = save.image("arm64", Some("v8"));
        let att = save.attestation(&amd_manifest);
        let (id, _) = save.add_json(json!({"schemaVersion": 2, "mediaType": INDEX_TYPES[0],
                                           "manifests": [amd, att, arm]}));
        let full = read(&save.tar()[..], &id).unwrap();
        let all = full.choose("app:1", None).unwrap();
        let names: Vec<String> = all.platforms.iter().map(|(p, _)| p.to_string()).collect();
        assert_eq!(names, ["linux/amd64", "linux/arm64/v8"]);
        assert!(all.index && all.absent.is_empty() && all.others.is_empty());
        assert_eq!(all.attestations, 1);
        let arm64 = Platform::parse("linux/arm64").unwrap();
        let one = full.choose("app:1", Some(&arm64)).unwrap();
        assert!(!one.index);
        assert_eq!(one.platforms.len(), 1);
        assert_eq!(one.platforms[0].1.digest, arm_manifest);
        let s390x = Platform::parse("linux/s390x").unwrap();
        let refused = full.choose("app:1", Some(&s390x)).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "app:1 has no platform linux/s390x; it has linux/amd64, linux/arm64/v8"
        );

        let pulled = read(
            &Save {
                blobs: save.blobs.clone(),
            }
            .without(&arm_manifest)
            .tar()[..],
            &id,
        )
        .unwrap();
        let present = pulled.choose("app:1", None).unwrap();
        assert_eq!(present.platforms.len(), 1);
        assert_eq!(
            present
                .absent
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["linux/arm64/v8"]
        );
        let absent = pulled.choose("app:1", Some(&arm64)).unwrap_err();
        assert!(matches!(*absent, ChoiceError::Absent { .. }), "{absent}");
        assert!(
            absent
                .to_string()
                .contains("docker pull --platform linux/arm64/v8 app:1"),
            "{absent}"
        );
        let amd_only = Save {
            blobs: save.blobs.clone(),
        }
        .without(&arm_manifest)
        .without(&amd_manifest);
        let none = read(&amd_only.tar()[..], &id)
            .unwrap()
            .choose("app:1", None)
            .unwrap_err();
        assert!(
            matches!(*none, ChoiceError::NothingPresent { .. }),
            "{none}"
        );
    }

    #[test]
    fn two_manifests_for_one_platform_are_refused_and_one_manifest_is_its_own_platform() {
        let mut save = Save::new();
        let (a, _, _) = save.image("arm64", None);
        let (b, _, _) = save.image("arm64", Some("v8"));
        let (id, _) = save.add_json(json!({"schemaVersion": 2, "mediaType": INDEX_TYPES[0],
                                           "manifests": [a, b]}));
        let twice = read(&save.tar()[..], &id).unwrap();
        let err = twice.choose("app:1", None).unwrap_err();
        assert!(matches!(*err, ChoiceError::Ambiguous { .. }), "{err}");

        let mut save = Save::new();
        let (_, manifest, _) = save.image("amd64", None);
        let single = read(&save.tar()[..], &manifest).unwrap();
        let own = single
            .choose("app:1", Some(&Platform::parse("linux/x86_64").unwrap()))
            .unwrap();
        assert_eq!((own.platforms.len(), own.index), (1, false));
        let other = single.choose("app:1", Some(&Platform::parse("linux/arm64").unwrap()));
        assert_eq!(
            other.unwrap_err().to_string(),
            "app:1 has no platform linux/arm64; it has linux/amd64"
        );
    }

    #[test]
    fn a_manifest_is_one_platform_and_the_read_stops_once_it_is_known() {
        let mut save = Save::new();
        let (_, manifest, config) = save.image("amd64", None);
        let tar = save.tar();
        let found = read(&tar[..], &manifest).unwrap();
        let SourceIndex::Manifest(m) = &found else {
            panic!("not a manifest: {found:?}")
        };
        assert_eq!(m.config_digest, config);
        assert_eq!(found.offered().len(), 1);
        // Cut right after the last blob it needs: still enough.
        let mut counting = CountingReader {
            inner: &tar[..],
            read: 0,
        };
        read(&mut counting, &manifest).unwrap();
        assert!(
            counting.read < tar.len(),
            "read the whole stream: {} of {}",
            counting.read,
            tar.len()
        );
    }

    #[test]
    fn a_manifest_needs_no_layer_blob_and_is_known_once_its_config_is_read() {
        let mut save = Save::new();
        let (_, manifest, config) = save.image("amd64", None);
        let layers: Vec<String> = save
            .blobs
            .iter()
            .map(|(d, _)| d.clone())
            .filter(|d| *d != manifest && *d != config)
            .collect();
        // The one's layers stay in the store's snapshots even where their
        // blobs are gone; the export reads those, the merge fails on its own.
        let mut stripped = save;
        for layer in &layers {
            stripped = stripped.without(layer);
        }
        let found = read(&stripped.tar()[..], &manifest).unwrap();
        let SourceIndex::Manifest(m) = &found else {
            panic!("not a manifest: {found:?}")
        };
        assert_eq!(m.layers.len(), 2, "the layers as the manifest lists them");
        // Blobs big enough to be layers after the manifest and config are
        // never read.
        let mut late = Save::new();
        let (_, manifest, _) = late.image("amd64", None);
        late.blobs
            .push(("sha256:ffff".to_owned(), vec![7; 64 << 10]));
        let tar = late.tar();
        let mut counting = CountingReader {
            inner: &tar[..],
            read: 0,
        };
        read(&mut counting, &manifest).unwrap();
        assert!(
            counting.read < tar.len() - (64 << 10),
            "read past the manifest and config: {} of {}",
            counting.read,
            tar.len()
        );
    }

    #[test]
    fn blobs_read_whole_say_what_the_stream_says() {
        let mut save = Save::new();
        let (amd64, _, _) = save.image("amd64", None);
        let (arm64, arm64_manifest, _) = save.image("arm64", Some("v8"));
        let attestation = save.attestation(amd64["digest"].as_str().unwrap());
        let (index, _) = save.add_json(json!({
            "schemaVersion": 2, "mediaType": INDEX_TYPES[0],
            "manifests": [amd64, arm64, attestation],
        }));
        let save = save.without(&arm64_manifest);
        let blobs: Vec<(String, Option<&[u8]>)> = save
            .blobs
            .iter()
            .map(|(d, b)| (d.clone(), (b.len() < 1024).then_some(&b[..])))
            .collect();
        let whole = from_blobs(blobs, &index).unwrap();
        assert_eq!(whole, read(&save.tar()[..], &index).unwrap());
        let SourceIndex::Index(entries) = &whole else {
            panic!("not an index: {whole:?}")
        };
        assert_eq!(entries.len(), 3);
        assert!(entries[0].content.is_some() && entries[1].content.is_none());
        assert!(matches!(
            from_blobs(Vec::new(), &index),
            Err(IndexError::NoTarget(_))
        ));
    }

    #[test]
    fn a_stream_without_the_target_says_so() {
        let mut save = Save::new();
        save.image("amd64", None);
        let err = read(&save.tar()[..], "sha256:00").unwrap_err();
        assert!(
            matches!(
                err,
                crate::saved::walk::IndexReadError::Index(IndexError::NoTarget(_))
            ),
            "{err}"
        );
        let cut = &save.tar()[..700];
        assert!(read(cut, "sha256:00").is_err());
    }

    struct CountingReader<'a> {
        inner: &'a [u8],
        read: usize,
    }

    impl Read for CountingReader<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let len = buf.len().min(512);
            let n = self.inner.read(&mut buf[..len])?;
            self.read += n;
            Ok(n)
        }
    }
}
