//! Which members of an image archive make an image, in the two layouts
//! the engines write: the docker-archive's `manifest.json` (Engine 20.10's
//! graphdriver), and the OCI layout's `index.json` and `blobs/sha256/…`
//! (Engine 25+ and the containerd store); and the names of members.

use std::collections::HashMap;
use std::io;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::tar::reader::TarError;

/// Why the archive is not a whole image.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{0}")]
    Tar(TarError),
    #[error("the archive has no {0}")]
    Missing(String),
    #[error("the archive's {what} is not valid: {detail}")]
    Invalid { what: String, detail: String },
    #[error("the archive holds {0} images; expected one")]
    Images(usize),
    #[error("member {member} does not match its digest (it is sha256:{actual})")]
    Digest { member: String, actual: String },
    #[error(
        "layer {index} ({member}) is {actual} once uncompressed, but the image config says {expected}"
    )]
    DiffId {
        index: usize,
        member: String,
        expected: String,
        actual: String,
    },
}

impl From<TarError> for ArchiveError {
    fn from(e: TarError) -> ArchiveError {
        ArchiveError::Tar(e)
    }
}

impl From<io::Error> for ArchiveError {
    fn from(e: io::Error) -> ArchiveError {
        ArchiveError::Tar(TarError::Io(e))
    }
}

/// The digest an OCI layout's member name stands for.
pub(super) fn oci_digest(name: &str) -> Option<String> {
    name.strip_prefix("blobs/sha256/")
        .map(|hex| format!("sha256:{hex}"))
}

/// One image an archive holds: where it is, and the names it has there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archived {
    pub target: Target,
    /// Its ID: the digest its descriptor names (an index's or a
    /// manifest's), or in a docker-archive its config's digest.
    pub id: String,
    /// `RepoTags`, `io.containerd.image.name`, `org.opencontainers.image.ref.name`.
    pub names: Vec<String>,
    /// The digests of its configs (one per platform of an index): the
    /// image IDs a graphdriver engine shows for it.
    pub configs: Vec<String>,
}

/// Where an image of an archive is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A descriptor of the OCI layout's `index.json`: a manifest or an index.
    Descriptor(String),
    /// An entry of a docker-archive's `manifest.json`.
    Entry(usize),
}

impl Archived {
    /// Whether `image` names it: one of its names (a reference as docker
    /// reads it, `app` being `docker.io/library/app:latest`, or a bare
    /// `ref.name` as written), its ID or digest, or an ID prefix.
    pub fn is_named(&self, image: &str) -> bool {
        let full = |s: &str| {
            crate::model::reference::Tag::parse(s)
                .ok()
                .map(|t| t.full_name())
        };
        let (name, digest) = match image.split_once('@') {
            Some((name, digest)) => (Some(name), Some(digest)),
            None => (Some(image), None),
        };
        if let Some(digest) = digest {
            return digest == self.id;
        }
        let name = name.unwrap_or_default();
        let ids = std::iter::once(&self.id).chain(&self.configs);
        let by_id = ids.into_iter().any(|id| {
            let hex = id.strip_prefix("sha256:").unwrap_or(id);
            name == id
                || (crate::model::reference::is_id_prefix(name) && hex.starts_with(name))
                || name
                    .strip_prefix("sha256:")
                    .is_some_and(|p| p.len() >= 12 && hex.starts_with(p))
        });
        by_id
            || self
                .names
                .iter()
                .any(|n| n == name || (full(n).is_some() && full(n) == full(name)))
    }
}

/// The images an archive holds: its `index.json`'s entries (one per
/// descriptor, however many names it has), or without one the entries of
/// its `manifest.json`.
pub(super) fn archived(
    small: &HashMap<String, Vec<u8>>,
    links: &HashMap<String, String>,
) -> Result<Vec<Archived>, ArchiveError> {
    if let Some(index) = small.get("index.json") {
        let index = parse_json(index, "index.json")?;
        let mut images: Vec<Archived> = Vec::new();
        for entry in index["manifests"]
            .as_array()
            .ok_or_else(|| invalid("index.json", "no manifests"))?
        {
            let digest = entry["digest"]
                .as_str()
                .ok_or_else(|| invalid("index.json", "a descriptor without a digest"))?;
            let names = [
                "io.containerd.image.name",
                "org.opencontainers.image.ref.name",
            ]
            .iter()
            .filter_map(|key| entry["annotations"][*key].as_str().map(str::to_owned));
            match images.iter_mut().find(|i| i.id == digest) {
                Some(image) => image.names.extend(names),
                None => images.push(Archived {
                    target: Target::Descriptor(digest.to_owned()),
                    id: digest.to_owned(),
                    names: names.collect(),
                    configs: configs_of(small, digest),
                }),
            }
        }
        for image in &mut images {
            image.names.dedup();
        }
        return Ok(images);
    }
    let manifest = small
        .get("manifest.json")
        .ok_or_else(|| ArchiveError::Missing("manifest.json or index.json".into()))?;
    let manifest = parse_json(manifest, "manifest.json")?;
    let entries = manifest
        .as_array()
        .ok_or_else(|| invalid("manifest.json", "not a list"))?;
    let mut images = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let (config, _) = entry_members(entry, links)?;
        let bytes = small
            .get(&config)
            .ok_or_else(|| ArchiveError::Missing(format!("config {config}")))?;
        let id = format!("sha256:{}", hex(&Sha256::digest(bytes)));
        images.push(Archived {
            target: Target::Entry(i),
            configs: vec![id.clone()],
            id,
            names: entry["RepoTags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n.as_str().map(str::to_owned))
                .collect(),
        });
    }
    Ok(images)
}

/// The config digests that the manifest or index `digest` names (through
/// nested indexes), as far as the archive holds them.
fn configs_of(small: &HashMap<String, Vec<u8>>, digest: &str) -> Vec<String> {
    let mut configs = Vec::new();
    let mut todo = vec![(digest.to_owned(), 0)];
    while let Some((digest, depth)) = todo.pop() {
        let Ok(member) = blob_member(&Value::from(digest.as_str()), "index.json") else {
            continue;
        };
        let Some(doc) = small
            .get(&member)
            .and_then(|b| serde_json::from_slice::<Value>(b).ok())
        else {
            continue;
        };
        if let Some(config) = doc["config"]["digest"].as_str() {
            configs.push(config.to_owned());
        }
        for entry in doc["manifests"].as_array().into_iter().flatten() {
            if let (Some(d), true) = (entry["digest"].as_str(), depth < 4) {
                todo.push((d.to_owned(), depth + 1));
            }
        }
    }
    configs
}

/// The config and layer members of entry `n` of a docker-archive's
/// `manifest.json`.
pub(super) fn entry_of(
    small: &HashMap<String, Vec<u8>>,
    links: &HashMap<String, String>,
    n: usize,
) -> Result<(String, Vec<String>), ArchiveError> {
    let manifest = small
        .get("manifest.json")
        .ok_or_else(|| ArchiveError::Missing("manifest.json".into()))?;
    let manifest = parse_json(manifest, "manifest.json")?;
    let entry = manifest
        .get(n)
        .ok_or_else(|| invalid("manifest.json", &format!("no entry {}", n + 1)))?;
    entry_members(entry, links)
}

/// The config and layer members an entry of `manifest.json` names, through
/// the archive's links.
fn entry_members(
    entry: &Value,
    links: &HashMap<String, String>,
) -> Result<(String, Vec<String>), ArchiveError> {
    let resolve = |name: &str| {
        let mut name = member_name(name.as_bytes());
        for _ in 0..8 {
            match links.get(&name) {
                Some(target) => name = target.clone(),
                None => break,
            }
        }
        name
    };
    let config = entry["Config"]
        .as_str()
        .ok_or_else(|| invalid("manifest.json", "no Config"))?;
    let layers = entry["Layers"]
        .as_array()
        .ok_or_else(|| invalid("manifest.json", "no Layers"))?
        .iter()
        .map(|v| {
            v.as_str()
                .map(resolve)
                .ok_or_else(|| invalid("manifest.json", "a layer is not a path"))
        })
        .collect::<Result<_, _>>()?;
    Ok((resolve(config), layers))
}

/// The config member `name`: its bytes, checked against its digest where
/// its name is one, and parsed.
pub(super) fn config_blob<'s>(
    small: &'s HashMap<String, Vec<u8>>,
    name: &str,
) -> Result<(&'s [u8], Value), ArchiveError> {
    let bytes = small
        .get(name)
        .ok_or_else(|| ArchiveError::Missing(format!("config {name}")))?;
    check_digest(name, bytes)?;
    Ok((bytes, parse_json(bytes, name)?))
}

/// The config and layer members the archive's manifest names.
pub(super) fn image_members(
    small: &HashMap<String, Vec<u8>>,
    links: &HashMap<String, String>,
) -> Result<(String, Vec<String>), ArchiveError> {
    if let Some(bytes) = small.get("manifest.json") {
        let manifest = parse_json(bytes, "manifest.json")?;
        let images = manifest
            .as_array()
            .ok_or_else(|| invalid("manifest.json", "not a list"))?;
        let [image] = &images[..] else {
            return Err(ArchiveError::Images(images.len()));
        };
        return entry_members(image, links);
    }
    let index = small
        .get("index.json")
        .ok_or_else(|| ArchiveError::Missing("manifest.json or index.json".into()))?;
    let mut doc = parse_json(index, "index.json")?;
    let mut what = "index.json".to_owned();
    // An index naming one manifest (maybe through a nested index).
    for _ in 0..4 {
        if doc["layers"].is_array() {
            return manifest_members(&doc, &what);
        }
        let mut digests: Vec<&str> = doc["manifests"]
            .as_array()
            .ok_or_else(|| invalid(&what, "no manifests"))?
            .iter()
            .filter_map(|m| m["digest"].as_str())
            .collect();
        digests.sort_unstable();
        digests.dedup();
        let [digest] = &digests[..] else {
            return Err(ArchiveError::Images(digests.len()));
        };
        what = blob_member(&Value::from(*digest), &what)?;
        let bytes = small
            .get(&what)
            .ok_or_else(|| ArchiveError::Missing(what.clone()))?;
        check_digest(&what, bytes)?;
        doc = parse_json(bytes, &what)?;
    }
    Err(invalid("index.json", "nested too deeply"))
}

/// The config and layer members an image manifest names.
pub(super) fn manifest_members(
    manifest: &Value,
    what: &str,
) -> Result<(String, Vec<String>), ArchiveError> {
    if !manifest["layers"].is_array() {
        return Err(invalid(what, "not an image manifest"));
    }
    let config = blob_member(&manifest["config"]["digest"], what)?;
    let layers = manifest["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| blob_member(&l["digest"], what))
        .collect::<Result<_, _>>()?;
    Ok((config, layers))
}

pub(super) fn blob_member(digest: &Value, what: &str) -> Result<String, ArchiveError> {
    let digest = digest
        .as_str()
        .ok_or_else(|| invalid(what, "a descriptor without a digest"))?;
    let (algorithm, hex) = digest
        .split_once(':')
        .ok_or_else(|| invalid(what, &format!("bad digest {digest}")))?;
    Ok(format!("blobs/{algorithm}/{hex}"))
}

/// A member named for its SHA-256 must have it.
pub(super) fn check_digest(name: &str, bytes: &[u8]) -> Result<(), ArchiveError> {
    check_hex(name, &hex(&Sha256::digest(bytes)))
}

pub(super) fn check_hex(name: &str, actual: &str) -> Result<(), ArchiveError> {
    match name.strip_prefix("blobs/sha256/") {
        Some(expected) if expected != actual => Err(ArchiveError::Digest {
            member: name.to_owned(),
            actual: actual.to_owned(),
        }),
        _ => Ok(()),
    }
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A member's name without `./` or a trailing `/`.
pub(super) fn member_name(path: &[u8]) -> String {
    let text = String::from_utf8_lossy(path);
    text.split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// The member a symlink inside the archive points at.
pub(super) fn resolve_link(name: &str, target: &[u8]) -> String {
    let target = String::from_utf8_lossy(target);
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        name.split('/').collect()
    };
    parts.pop(); // the link's own name
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

pub(super) fn parse_json(bytes: &[u8], what: &str) -> Result<Value, ArchiveError> {
    serde_json::from_slice(bytes).map_err(|e| invalid(what, &e.to_string()))
}

pub(super) fn invalid(what: &str, detail: &str) -> ArchiveError {
    ArchiveError::Invalid {
        what: what.to_owned(),
        detail: detail.to_owned(),
    }
}
