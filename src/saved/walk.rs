//! The one reader of IMAGE's `docker save` stream (`GET /images/{id}/get`).
//!
//! It takes both layouts the engines write: the docker-archive
//! (`manifest.json`, `<id>/layer.tar`, a `layer.tar` symlink for a repeated
//! layer) of graphdriver engines, and the OCI layout (`index.json`,
//! `blobs/sha256/…`) that Engine 25+ and the containerd store write, beside a
//! `manifest.json` that names the same files. Layers come plain, gzip or
//! zstd.
//!
//! Members arrive in name order and the manifest comes last, so each layer
//! is handed, decompressed, to the caller's function as it streams by (to
//! spool it, or to list its entries); small members are kept until the
//! manifest says what they are. Strict: every header is checked, the
//! archive must end as the engine ends it, a blob must match its digest and
//! a layer the config's diff ID, and every layer the manifest names must
//! be there. A cut stream, or an engine error appended to it, fails.
//!
//! One image ID per stream. The containerd store's save of a multi-platform
//! image holds the blobs of every platform it has, but its `manifest.json`
//! lists one, the host-preferred platform, which is also the one the
//! engine's inspect describes: that is the image read by default
//! ([`Pick::Listed`]); a platform is read by its manifest's digest
//! ([`Pick::Manifest`]), several from one stream. Layers no picked image
//! names are read past (handed to the caller too, who drops them). An
//! archive whose manifest lists several images is refused.

use std::collections::HashMap;
use std::io::{self, Read};
use std::ops::ControlFlow;

use serde_json::Value;
use sha2::{Digest, Sha256};

pub use super::layout::ArchiveError;
use super::layout::{
    archived, blob_member, check_digest, check_hex, config_blob, entry_of, hex, image_members,
    invalid, manifest_members, member_name, oci_digest, parse_json, resolve_link,
};
pub use super::layout::{Archived, Target};
use crate::model::compression::Compression;
use crate::model::source_index::{Blobs, Descriptor, IndexError, Manifest, SourceIndex};
use crate::tar::reader::{End, TarReader};

/// Members up to this size wait in memory for the manifest (the engine's
/// small files, empty layers); larger ones are layers, handled as they come.
const SMALL: u64 = 64 << 10;
/// JSON members (configs, OCI manifests) are kept up to this size.
const MAX_JSON: u64 = 16 << 20;

/// A failure of the archive, or of the caller's function on a layer.
#[derive(Debug, thiserror::Error)]
pub enum ReadError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("layer {member} of the archive: {error}")]
    Layer { member: String, error: E },
}

/// Which image of the archive to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    /// The one image its `manifest.json` (or a one-image `index.json`)
    /// names: on the containerd store, the host-preferred platform.
    Listed,
    /// The image manifest with this digest: one platform of an OCI layout.
    Manifest(String),
    /// Entry N of a docker-archive's `manifest.json` (an archive given with
    /// `-i` may hold several images).
    Entry(usize),
}

/// The images read from the archive, and their layers' members.
#[derive(Debug)]
pub struct Saved<T> {
    /// One per [`Pick`], in the order asked.
    pub images: Vec<SavedImage>,
    /// What the caller's function made of each layer member, in the order
    /// read; [`SavedLayer::blob`] indexes it. May hold members no image
    /// names (another platform's); images may share members.
    pub blobs: Vec<T>,
}

/// One image of the archive.
#[derive(Debug, Clone)]
pub struct SavedImage {
    /// The config, parsed.
    pub config: Value,
    /// Bottom layer first.
    pub layers: Vec<SavedLayer>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedLayer {
    pub diff_id: String,
    pub blob: usize,
    /// The member's name in the archive.
    pub member: String,
    pub compression: Compression,
    /// Bytes as stored in the archive.
    pub stored_size: u64,
}

/// What one member turned out to be.
struct Blob {
    diff_id: String,
    compression: Compression,
    stored_size: u64,
    index: usize,
}

/// [`read`] for each image `picks` names.
pub fn read_picked<T, E>(
    save: impl Read,
    picks: &[Pick],
    mut layer: impl FnMut(&mut dyn Read) -> Result<T, E>,
) -> Result<Saved<T>, ReadError<E>>
where
    E: std::error::Error + 'static,
{
    read_members(save, &mut layer)?.pick(picks, layer)
}

/// A whole save stream read, each large member handed to the caller's
/// function, before any image of it is picked: what a run reads when the
/// stream is also where it learns which images there are (IMAGE's index
/// on Engine 26.1), so that it is read once.
pub struct Members<T> {
    small: HashMap<String, Vec<u8>>,
    links: HashMap<String, String>,
    done: HashMap<String, Blob>,
    blobs: Vec<T>,
}

/// One regular member of the archive, as the walk reaches it: read what
/// you need of it; the walk skips the rest.
pub struct Member<'r> {
    pub name: String,
    pub size: u64,
    /// Its first byte, once looked at.
    head: Option<([u8; 1], usize)>,
    data: &'r mut dyn Read,
}

impl<'r> Member<'r> {
    /// Whether it may be JSON (a manifest, config or index): it starts
    /// with `{` and is no larger than one of those can be.
    fn is_json(&mut self) -> io::Result<bool> {
        if self.size > MAX_JSON {
            return Ok(false);
        }
        let (head, n) = match self.head {
            Some(head) => head,
            None => {
                let mut head = [0u8; 1];
                let n = self.data.read(&mut head)?;
                *self.head.insert((head, n))
            }
        };
        Ok(n == 1 && head[0] == b'{')
    }

    /// Its bytes if it may be JSON ([`Member::is_json`]); `None`, unread,
    /// for anything else (a layer).
    fn json(&mut self) -> io::Result<Option<Vec<u8>>> {
        match self.is_json()? {
            true => self.bytes().map(Some),
            false => Ok(None),
        }
    }

    /// All of its bytes.
    fn bytes(&mut self) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::with_capacity(self.size as usize);
        self.reader().read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    /// Its bytes as a stream, from the first.
    fn reader(&mut self) -> io::Chain<&[u8], &mut (dyn Read + 'r)> {
        let head = match &self.head {
            Some((head, n)) => &head[..*n],
            None => &[][..],
        };
        head.chain(&mut *self.data)
    }
}

/// What the walk hands its visitor.
pub enum Visit<'r> {
    /// A regular file.
    File(Member<'r>),
    /// A hardlink or symlink: `name` stands for the member `target`.
    Link { name: String, target: String },
}

/// The one walk over a save stream's members: every header checked, the
/// archive ended as the engine ends it (a cut stream, or an engine error
/// appended to it, fails), unless `visit` breaks off: the readers of the
/// plan and the config stop as soon as they have what they came for.
pub fn walk<E: From<ArchiveError>>(
    save: impl Read,
    mut visit: impl FnMut(Visit<'_>) -> Result<ControlFlow<()>, E>,
) -> Result<(), E> {
    let mut tar = TarReader::new(save, End::Strict);
    while let Some(entry) = tar.next_entry().map_err(ArchiveError::Tar)? {
        let name = member_name(&entry.path);
        let flow = match entry.typeflag {
            b'2' => visit(Visit::Link {
                target: resolve_link(&name, &entry.link),
                name,
            })?,
            b'1' => visit(Visit::Link {
                target: member_name(&entry.link),
                name,
            })?,
            b'0' | b'\0' | b'7' => {
                let mut data = tar.data();
                visit(Visit::File(Member {
                    name,
                    size: entry.size,
                    head: None,
                    data: &mut data,
                }))?
            }
            _ => ControlFlow::Continue(()),
        };
        if flow.is_break() {
            break;
        }
    }
    Ok(())
}

/// Reads a whole save stream into [`Members`], calling `layer` with every
/// member too large to wait for the manifest, decompressed, as it streams by.
pub fn read_members<T, E>(
    save: impl Read,
    mut layer: impl FnMut(&mut dyn Read) -> Result<T, E>,
) -> Result<Members<T>, ReadError<E>>
where
    E: std::error::Error + 'static,
{
    let mut small: HashMap<String, Vec<u8>> = HashMap::new();
    let mut links: HashMap<String, String> = HashMap::new();
    let mut done: HashMap<String, Blob> = HashMap::new();
    let mut blobs = Vec::new();
    walk(save, |visit| -> Result<_, ReadError<E>> {
        match visit {
            Visit::Link { name, target } => {
                links.insert(name, target);
            }
            Visit::File(mut member) => {
                if member.size <= SMALL || member.is_json().map_err(ArchiveError::from)? {
                    let bytes = member.bytes().map_err(ArchiveError::from)?;
                    small.insert(member.name, bytes);
                } else {
                    let name = member.name.clone();
                    let (value, mut blob) = process(&name, &mut member.reader(), &mut layer)?;
                    blob.index = blobs.len();
                    blobs.push(value);
                    done.insert(member.name, blob);
                }
            }
        }
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(Members {
        small,
        links,
        done,
        blobs,
    })
}

impl<T> Members<T> {
    /// The images the archive holds, with their names
    /// ([`super::layout::archived`]).
    pub fn archived(&self) -> Result<Vec<Archived>, ArchiveError> {
        archived(&self.small, &self.links)
    }

    /// The OCI blobs read (`blobs/sha256/…`): each digest, with the bytes
    /// of those small enough to be kept (JSON: manifests, configs, indexes).
    pub fn oci_blobs(&self) -> impl Iterator<Item = (String, Option<&[u8]>)> + '_ {
        let small = self
            .small
            .iter()
            .filter_map(|(name, bytes)| Some((oci_digest(name)?, Some(&bytes[..]))));
        let large = self
            .done
            .keys()
            .filter_map(|name| Some((oci_digest(name)?, None)));
        small.chain(large)
    }

    /// Entry `n` of a docker-archive's `manifest.json` as a manifest: its
    /// config (checked against its digest where the name is one) and its
    /// layers as read. The digest it gets is its config's, the image's ID.
    pub fn entry_manifest(&self, n: usize) -> Result<Manifest, ArchiveError> {
        let (config_name, layer_names) = entry_of(&self.small, &self.links, n)?;
        let (bytes, config) = config_blob(&self.small, &config_name)?;
        let id = format!("sha256:{}", hex(&Sha256::digest(bytes)));
        let layers = layer_names
            .iter()
            .map(|name| {
                let (size, compression) = match (self.done.get(name), self.small.get(name)) {
                    (Some(blob), _) => (blob.stored_size, blob.compression),
                    (None, Some(bytes)) => (bytes.len() as u64, Compression::None),
                    (None, None) => return Err(ArchiveError::Missing(format!("layer {name}"))),
                };
                Ok(Descriptor {
                    digest: oci_digest(name).unwrap_or_default(),
                    size,
                    media_type: compression.layer_media_type().to_owned(),
                })
            })
            .collect::<Result<_, ArchiveError>>()?;
        Ok(Manifest {
            digest: id.clone(),
            size: 0,
            config_digest: id,
            config,
            layers,
        })
    }

    /// The images `picks` names, checked against their manifests and
    /// configs; `layer` takes the layers small enough to have waited.
    pub fn pick<E>(
        self,
        picks: &[Pick],
        mut layer: impl FnMut(&mut dyn Read) -> Result<T, E>,
    ) -> Result<Saved<T>, ReadError<E>>
    where
        E: std::error::Error + 'static,
    {
        let Members {
            small,
            links,
            mut done,
            mut blobs,
        } = self;
        let mut images = Vec::with_capacity(picks.len());
        for pick in picks {
            let (config_name, layer_names) = match pick {
                Pick::Listed => image_members(&small, &links)?,
                Pick::Entry(n) => entry_of(&small, &links, *n)?,
                Pick::Manifest(digest) => {
                    let member = blob_member(&Value::from(digest.as_str()), "the chosen manifest")?;
                    let bytes = small
                        .get(&member)
                        .ok_or_else(|| ArchiveError::Missing(format!("manifest {digest}")))?;
                    check_digest(&member, bytes)?;
                    manifest_members(&parse_json(bytes, &member)?, &member)?
                }
            };
            let (_, config) = config_blob(&small, &config_name)?;
            let diff_ids: Vec<&str> = config["rootfs"]["diff_ids"]
                .as_array()
                .ok_or_else(|| invalid(&config_name, "no rootfs.diff_ids"))?
                .iter()
                .map(|v| {
                    v.as_str()
                        .ok_or_else(|| invalid(&config_name, "a diff ID is not a string"))
                })
                .collect::<Result<_, _>>()?;
            if diff_ids.len() != layer_names.len() {
                return Err(invalid(
                    &config_name,
                    &format!(
                        "{} diff IDs for {} layers in the manifest",
                        diff_ids.len(),
                        layer_names.len()
                    ),
                )
                .into());
            }
            let mut layers = Vec::with_capacity(layer_names.len());
            for (i, (name, expected)) in layer_names.iter().zip(&diff_ids).enumerate() {
                if !done.contains_key(name) {
                    let bytes = small
                        .get(name)
                        .ok_or_else(|| ArchiveError::Missing(format!("layer {name}")))?;
                    let (value, mut blob) = process(name, &mut &bytes[..], &mut layer)?;
                    blob.index = blobs.len();
                    blobs.push(value);
                    done.insert(name.clone(), blob);
                }
                let blob = &done[name];
                if blob.diff_id != *expected {
                    return Err(ArchiveError::DiffId {
                        index: i + 1,
                        member: name.clone(),
                        expected: (*expected).to_owned(),
                        actual: blob.diff_id.clone(),
                    }
                    .into());
                }
                layers.push(SavedLayer {
                    diff_id: blob.diff_id.clone(),
                    blob: blob.index,
                    member: name.clone(),
                    compression: blob.compression,
                    stored_size: blob.stored_size,
                });
            }
            images.push(SavedImage { config, layers });
        }
        Ok(Saved { images, blobs })
    }
}

/// The first image config in a save stream whose layers are `diff_ids`
/// and whose platform is `os`/`architecture`, as the engine stored it;
/// reads no further than that config, skipping layers undecompressed.
/// `None` if the archive holds none.
///
/// The containerd store sends its blobs in digest order, so where the
/// config comes is chance; it is proved by its digest and its diff IDs.
pub fn find_config(
    save: impl Read,
    diff_ids: &[String],
    os: &str,
    architecture: &str,
) -> Result<Option<Value>, ArchiveError> {
    let mut found = None;
    walk(save, |visit| -> Result<_, ArchiveError> {
        let Visit::File(mut member) = visit else {
            return Ok(ControlFlow::Continue(()));
        };
        let Some(json) = member.json()? else {
            return Ok(ControlFlow::Continue(())); // a layer: the walk skips it
        };
        let Ok(config) = serde_json::from_slice::<Value>(&json) else {
            return Ok(ControlFlow::Continue(()));
        };
        let layers = config["rootfs"]["diff_ids"].as_array().map(|ids| {
            ids.iter()
                .map(|id| id.as_str().unwrap_or_default())
                .collect::<Vec<_>>()
        });
        if layers.as_deref() == Some(&diff_ids.iter().map(String::as_str).collect::<Vec<_>>()[..])
            && config["os"] == os
            && config["architecture"] == architecture
        {
            check_digest(&member.name, &json)?;
            found = Some(config);
            return Ok(ControlFlow::Break(()));
        }
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(found)
}

/// The blobs that `manifest` (a digest) names and a save stream of the
/// containerd store left out: what each is (`config`, `layer 2 of 3`) and
/// its digest. The engine saves a manifest whose content it lacks in part
/// without its config or layers, and without an error (moby#49473).
pub fn missing_blobs(
    save: impl Read,
    manifest: &str,
) -> Result<Vec<(String, String)>, ArchiveError> {
    let wanted = blob_name(manifest);
    let mut names = std::collections::HashSet::new();
    let mut named = None;
    walk(save, |visit| -> Result<_, ArchiveError> {
        if let Visit::File(mut member) = visit {
            if member.name == wanted {
                if let Some(json) = member.json()? {
                    check_digest(&member.name, &json)?;
                    named = serde_json::from_slice::<Value>(&json).ok();
                }
            }
            names.insert(member.name);
        }
        Ok(ControlFlow::Continue(()))
    })?;
    let Some(named) = named else {
        return Ok(Vec::new());
    };
    let layers = named["layers"].as_array().cloned().unwrap_or_default();
    let total = layers.len();
    let config = named["config"]["digest"]
        .as_str()
        .map(|d| ("config".to_owned(), d));
    let layers = layers.iter().enumerate().filter_map(|(i, layer)| {
        let digest = layer["digest"].as_str()?;
        Some((format!("layer {} of {total}", i + 1), digest))
    });
    Ok(config
        .into_iter()
        .chain(layers)
        .filter(|(_, digest)| !names.contains(&blob_name(digest)))
        .map(|(what, digest)| (what, digest.to_owned()))
        .collect())
}

/// The member that holds the blob `digest` in an OCI layout.
fn blob_name(digest: &str) -> String {
    format!("blobs/{}", digest.replacen(':', "/", 1))
}

/// What the blob `id` (IMAGE's ID) names in a save stream of the
/// containerd store: one manifest or an index, with what the store has of
/// each entry. Reads no further than it must to know: for an index, until
/// every image entry's manifest, config and layers have come; for one
/// manifest, until its config has (its layers are the export's or the
/// merge's to read, and fail there if missing; waiting for their blobs
/// would read the whole stream, at the engine's pace: about 25 MB/s on
/// Engine 26.1). JSON blobs must match their digests.
pub fn read_index(save: impl Read, id: &str) -> Result<SourceIndex, IndexReadError> {
    let mut blobs = Blobs::default();
    walk(save, |visit| -> Result<_, ArchiveError> {
        let Visit::File(mut member) = visit else {
            return Ok(ControlFlow::Continue(()));
        };
        let Some(digest) = oci_digest(&member.name) else {
            return Ok(ControlFlow::Continue(()));
        };
        let json = member.json()?;
        if let Some(json) = &json {
            check_digest(&member.name, json)?;
        }
        blobs.note(digest, json.as_deref());
        // What comes later cannot change the answer once it is complete.
        Ok(match blobs.complete(id) {
            true => ControlFlow::Break(()),
            false => ControlFlow::Continue(()),
        })
    })
    .map_err(IndexReadError::Archive)?;
    blobs.index(id).map_err(IndexReadError::Index)
}

/// Why a save stream did not tell what IMAGE's ID names.
#[derive(Debug, thiserror::Error)]
pub enum IndexReadError {
    #[error("the save stream is not a valid archive: {0}")]
    Archive(ArchiveError),
    #[error(transparent)]
    Index(IndexError),
}

/// One member through `layer`: decompressed, hashed as stored and as
/// uncompressed, read to its end. Any read error is the archive's (a cut
/// stream, bad gzip); an error of `layer` itself is its own.
fn process<T, E: std::error::Error + 'static>(
    name: &str,
    member: &mut dyn Read,
    layer: &mut impl FnMut(&mut dyn Read) -> Result<T, E>,
) -> Result<(T, Blob), ReadError<E>> {
    let mut stored_hash = Sha256::new();
    let mut stored = Hashing {
        inner: member,
        hasher: &mut stored_hash,
        count: 0,
        enabled: true,
    };
    let mut head = [0u8; 4];
    let mut n = 0;
    while n < head.len() {
        match stored.read(&mut head[n..]).map_err(ArchiveError::from)? {
            0 => break,
            k => n += k,
        }
    }
    let compression = if head[..n].starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head[..n] == [0x28, 0xb5, 0x2f, 0xfd] {
        Compression::Zstd
    } else {
        Compression::None
    };
    // A plain layer is its own blob: hashed once.
    stored.enabled = compression != Compression::None;
    let mut diff_hash = Sha256::new();
    let value = {
        let input = (&head[..n]).chain(&mut stored);
        let decoded: Box<dyn Read + '_> = match compression {
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
            Compression::Zstd => {
                Box::new(zstd::stream::read::Decoder::new(input).map_err(ArchiveError::from)?)
            }
            Compression::None => Box::new(input),
        };
        let mut unpacked = Guarded {
            inner: Hashing {
                inner: decoded,
                hasher: &mut diff_hash,
                count: 0,
                enabled: true,
            },
            error: None,
        };
        let value = layer(&mut unpacked);
        // The diff ID covers the whole uncompressed stream, padding included.
        let drained = io::copy(&mut unpacked, &mut io::sink());
        if let Some(e) = unpacked.error.take() {
            return Err(ArchiveError::from(e).into());
        }
        let value = value.map_err(|error| ReadError::Layer {
            member: name.to_owned(),
            error,
        })?;
        drained.map_err(ArchiveError::from)?;
        value
    };
    io::copy(&mut stored, &mut io::sink()).map_err(ArchiveError::from)?;
    let stored_size = stored.count;
    let diff_hex = hex(&diff_hash.finalize());
    let stored_hex = match compression {
        Compression::None => diff_hex.clone(),
        _ => hex(&stored_hash.finalize()),
    };
    check_hex(name, &stored_hex)?;
    let blob = Blob {
        diff_id: format!("sha256:{diff_hex}"),
        compression,
        stored_size,
        index: 0,
    };
    Ok((value, blob))
}

struct Hashing<'h, R> {
    inner: R,
    hasher: &'h mut Sha256,
    count: u64,
    enabled: bool,
}

impl<R: Read> Read for Hashing<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.enabled {
            self.hasher.update(&buf[..n]);
        }
        self.count += n as u64;
        Ok(n)
    }
}

/// Keeps the first read error, so that a failure of the caller's function
/// can be told apart from a failure of the stream it read.
struct Guarded<R> {
    inner: R,
    error: Option<io::Error>,
}

impl<R: Read> Read for Guarded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => Ok(n),
            Err(e) => {
                let copy = io::Error::new(e.kind(), e.to_string());
                self.error.get_or_insert(e);
                Err(copy)
            }
        }
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// Reads a whole save stream, calling `layer` with each layer member's
    /// uncompressed tar as it streams by, for the image its manifest lists.
    pub fn read<T, E>(
        save: impl Read,
        layer: impl FnMut(&mut dyn Read) -> Result<T, E>,
    ) -> Result<Saved<T>, ReadError<E>>
    where
        E: std::error::Error + 'static,
    {
        read_picked(save, &[Pick::Listed], layer)
    }
    use serde_json::json;
    use std::io::Write;

    pub fn member(b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).unwrap();
    }

    pub fn sha(data: &[u8]) -> String {
        format!("sha256:{}", hex(&Sha256::digest(data)))
    }

    pub fn gzip(data: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(data).unwrap();
        gz.finish().unwrap()
    }

    /// A docker-archive with the manifest last, as `docker save` writes it.
    pub fn docker_archive(layers: &[Vec<u8>], history: Value) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut names = Vec::new();
        for (i, data) in layers.iter().enumerate() {
            let name = format!("{i:064x}/layer.tar");
            member(&mut b, &name, data);
            names.push(name);
        }
        let config = json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| sha(l)).collect::<Vec<_>>()},
            "history": history,
        });
        member(&mut b, "cfg.json", config.to_string().as_bytes());
        let manifest = json!([{"Config": "cfg.json", "Layers": names}]);
        member(&mut b, "manifest.json", manifest.to_string().as_bytes());
        b.into_inner().unwrap()
    }

    /// An OCI layout as the containerd store saves it: blobs by digest,
    /// compressed layers, then the index and manifest.json.
    pub fn oci_archive(layers: &[Vec<u8>], zstd_layer: Option<usize>) -> (Vec<u8>, Value) {
        let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
        let mut descriptors = Vec::new();
        for (i, data) in layers.iter().enumerate() {
            let stored = if zstd_layer == Some(i) {
                zstd::encode_all(&data[..], 1).unwrap()
            } else {
                gzip(data)
            };
            descriptors.push(json!({"digest": sha(&stored), "size": stored.len()}));
            blobs.push((sha(&stored), stored));
        }
        let config = json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| sha(l)).collect::<Vec<_>>()},
        });
        let config_bytes = config.to_string().into_bytes();
        let manifest = json!({"schemaVersion": 2, "config": {"digest": sha(&config_bytes)}, "layers": descriptors});
        let manifest_bytes = manifest.to_string().into_bytes();
        let index = json!({"manifests": [{"digest": sha(&manifest_bytes)}]});
        blobs.push((sha(&config_bytes), config_bytes.clone()));
        blobs.push((sha(&manifest_bytes), manifest_bytes));
        blobs.sort();
        let mut b = tar::Builder::new(Vec::new());
        for (digest, data) in &blobs {
            member(&mut b, &format!("blobs/sha256/{}", &digest[7..]), data);
        }
        member(&mut b, "index.json", index.to_string().as_bytes());
        member(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
        (b.into_inner().unwrap(), config)
    }

    /// An OCI layout as the containerd store saves a multi-platform image:
    /// per platform (architecture, layers bottom first, history) a config
    /// and a manifest, every blob once in digest order, then an index of
    /// the manifests. Returns it and the manifests' digests.
    pub fn platforms_archive(platforms: &[(&str, Vec<Vec<u8>>, Value)]) -> (Vec<u8>, Vec<String>) {
        let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
        let mut manifests = Vec::new();
        for (arch, layers, history) in platforms {
            let diff_ids: Vec<String> = layers.iter().map(|l| sha(l)).collect();
            let config = json!({"architecture": arch, "os": "linux", "history": history,
                                "rootfs": {"type": "layers", "diff_ids": diff_ids}});
            let config = config.to_string().into_bytes();
            let descriptors: Vec<Value> =
                layers.iter().map(|l| json!({"digest": sha(l)})).collect();
            let manifest = json!({"schemaVersion": 2, "config": {"digest": sha(&config)},
                                  "layers": descriptors});
            let manifest = manifest.to_string().into_bytes();
            manifests.push(sha(&manifest));
            blobs.push((sha(&config), config));
            blobs.push((sha(&manifest), manifest));
            blobs.extend(layers.iter().map(|l| (sha(l), l.clone())));
        }
        blobs.sort();
        blobs.dedup();
        let mut b = tar::Builder::new(Vec::new());
        for (digest, data) in &blobs {
            member(&mut b, &format!("blobs/sha256/{}", &digest[7..]), data);
        }
        let index = json!({"manifests": manifests.iter().map(|d| json!({"digest": d})).collect::<Vec<_>>()});
        member(&mut b, "index.json", index.to_string().as_bytes());
        (b.into_inner().unwrap(), manifests)
    }

    pub fn layer_tar(files: &[(&str, usize)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, size) in files {
            member(&mut b, name, &vec![b'x'; *size]);
        }
        b.into_inner().unwrap()
    }

    fn sizes(archive: &[u8]) -> Result<Vec<u64>, ReadError<io::Error>> {
        let saved = read(archive, |layer: &mut dyn Read| {
            io::copy(layer, &mut io::sink())
        })?;
        let image = &saved.images[0];
        Ok(image.layers.iter().map(|l| saved.blobs[l.blob]).collect())
    }

    #[test]
    fn reads_both_layouts_in_manifest_order() {
        let big = layer_tar(&[("big", SMALL as usize * 2)]);
        let small = layer_tar(&[("s", 10)]);
        let archive = docker_archive(&[small.clone(), big.clone()], json!([]));
        assert_eq!(
            sizes(&archive).unwrap(),
            [small.len() as u64, big.len() as u64]
        );
        let (oci, config) = oci_archive(&[big.clone(), small.clone(), big.clone()], Some(1));
        let saved = read(&oci[..], |l: &mut dyn Read| io::copy(l, &mut io::sink())).unwrap();
        let image = &saved.images[0];
        assert_eq!(image.config, config);
        let kinds: Vec<_> = image.layers.iter().map(|l| l.compression).collect();
        assert_eq!(
            kinds,
            [Compression::Gzip, Compression::Zstd, Compression::Gzip]
        );
        assert_eq!(
            image.layers[0].blob, image.layers[2].blob,
            "one blob, twice"
        );
    }

    #[test]
    fn platforms_are_picked_by_their_manifests_digest_from_one_stream() {
        let shared = layer_tar(&[("base", SMALL as usize + 1)]);
        let amd = layer_tar(&[("amd", 3)]);
        let arm = layer_tar(&[("arm", 5)]);
        let (archive, manifests) = platforms_archive(&[
            ("amd64", vec![shared.clone(), amd], json!([])),
            ("arm64", vec![shared, arm], json!([])),
        ]);
        let picks: Vec<Pick> = manifests
            .iter()
            .rev()
            .cloned()
            .map(Pick::Manifest)
            .collect();
        let saved = read_picked(&archive[..], &picks, |l: &mut dyn Read| {
            io::copy(l, &mut io::sink())
        })
        .unwrap();
        let archs: Vec<_> = saved
            .images
            .iter()
            .map(|i| i.config["architecture"].clone())
            .collect();
        assert_eq!(
            archs,
            [json!("arm64"), json!("amd64")],
            "in the order asked"
        );
        assert_eq!(
            saved.images[0].layers[0].blob, saved.images[1].layers[0].blob,
            "the shared base layer is read once"
        );
        assert!(
            matches!(
                read(&archive[..], |l: &mut dyn Read| io::copy(
                    l,
                    &mut io::sink()
                )),
                Err(ReadError::Archive(ArchiveError::Images(2)))
            ),
            "two images and none picked"
        );
        let absent = Pick::Manifest(sha(b"nothing"));
        assert!(matches!(
            read_picked(&archive[..], &[absent], |l: &mut dyn Read| io::copy(
                l,
                &mut io::sink()
            )),
            Err(ReadError::Archive(ArchiveError::Missing(_)))
        ));
    }

    #[test]
    fn a_repeated_layer_is_a_symlink_to_its_first_copy() {
        let l = layer_tar(&[("a", SMALL as usize + 1)]);
        let mut b = tar::Builder::new(Vec::new());
        member(&mut b, "aa/layer.tar", &l);
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "bb/layer.tar", "../aa/layer.tar")
            .unwrap();
        let config = json!({"rootfs": {"diff_ids": [sha(&l), sha(&l)]}});
        member(&mut b, "c.json", config.to_string().as_bytes());
        let manifest = r#"[{"Config":"c.json","Layers":["aa/layer.tar","bb/layer.tar"]}]"#;
        member(&mut b, "manifest.json", manifest.as_bytes());
        assert_eq!(sizes(&b.into_inner().unwrap()).unwrap().len(), 2);
    }

    #[test]
    fn a_cut_garbled_or_lying_archive_is_no_image() {
        let big = layer_tar(&[("big", SMALL as usize * 2)]);
        let archive = docker_archive(std::slice::from_ref(&big), json!([]));
        for cut in [
            700,
            big.len() / 2,
            archive.len() - 1024,
            archive.len() - 2048,
        ] {
            let err = sizes(&archive[..cut]).unwrap_err();
            assert!(matches!(err, ReadError::Archive(_)), "cut at {cut}: {err}");
        }
        let mut appended = archive[..archive.len() - 1024].to_vec();
        appended.extend_from_slice(br#"{"message":"write failed"}"#);
        let err = sizes(&appended).unwrap_err().to_string();
        assert!(err.contains("write failed"), "{err}");
        // A layer that is not what the config says.
        let mut b = tar::Builder::new(Vec::new());
        member(&mut b, "l.tar", &big);
        member(
            &mut b,
            "c.json",
            json!({"rootfs": {"diff_ids": ["sha256:00"]}})
                .to_string()
                .as_bytes(),
        );
        member(
            &mut b,
            "manifest.json",
            br#"[{"Config":"c.json","Layers":["l.tar"]}]"#,
        );
        let err = sizes(&b.into_inner().unwrap()).unwrap_err();
        assert!(
            matches!(
                err,
                ReadError::Archive(ArchiveError::DiffId { index: 1, .. })
            ),
            "{err}"
        );
        // A blob that is not its digest; a layer that is missing.
        let (mut oci, _) = oci_archive(std::slice::from_ref(&big), None);
        let at = oci
            .windows(4)
            .position(|w| w == [0x1f, 0x8b, 8, 0])
            .unwrap();
        oci[at + 100] ^= 1;
        assert!(sizes(&oci).is_err());
        let mut b = tar::Builder::new(Vec::new());
        member(
            &mut b,
            "c.json",
            json!({"rootfs": {"diff_ids": ["sha256:00"]}})
                .to_string()
                .as_bytes(),
        );
        member(
            &mut b,
            "manifest.json",
            br#"[{"Config":"c.json","Layers":["gone.tar"]}]"#,
        );
        let err = sizes(&b.into_inner().unwrap()).unwrap_err();
        assert!(
            matches!(err, ReadError::Archive(ArchiveError::Missing(ref m)) if m == "layer gone.tar"),
            "{err}"
        );
        let mut b = tar::Builder::new(Vec::new());
        member(
            &mut b,
            "manifest.json",
            br#"[{"Config":"a"},{"Config":"b"}]"#,
        );
        let err = sizes(&b.into_inner().unwrap()).unwrap_err();
        assert!(
            matches!(err, ReadError::Archive(ArchiveError::Images(2))),
            "{err}"
        );
    }

    #[test]
    fn a_failure_of_the_callers_function_is_its_own() {
        let archive = docker_archive(&[layer_tar(&[("big", SMALL as usize * 2)])], json!([]));
        let err = read(&archive[..], |_: &mut dyn Read| {
            Err::<(), _>(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(matches!(err, ReadError::Layer { .. }), "{err}");
    }

    #[test]
    fn finds_the_config_of_the_platform_and_layers_asked_for() {
        let config = |arch: &str, ids: &[&str]| {
            json!({"architecture": arch, "os": "linux", "docker_version": arch,
                   "rootfs": {"type": "layers", "diff_ids": ids}})
        };
        let mut b = tar::Builder::new(Vec::new());
        member(&mut b, "blobs/sha256/00", &[0x1f, 0x8b, 8, 0]);
        member(&mut b, "blobs/sha256/01", br#"{"schemaVersion":2}"#);
        for c in [
            config("arm64", &["sha256:a"]),
            config("amd64", &["sha256:b"]),
            config("amd64", &["sha256:a"]),
        ] {
            let bytes = c.to_string().into_bytes();
            member(
                &mut b,
                &format!("blobs/sha256/{}", &sha(&bytes)[7..]),
                &bytes,
            );
        }
        member(&mut b, "index.json", b"{}");
        let archive = b.into_inner().unwrap();
        let found = find_config(&archive[..], &["sha256:a".into()], "linux", "amd64").unwrap();
        assert_eq!(found, Some(config("amd64", &["sha256:a"])));
        let none = find_config(&archive[..], &["sha256:c".into()], "linux", "amd64").unwrap();
        assert_eq!(none, None);
        assert!(find_config(
            &archive[..archive.len() - 1024],
            &["sha256:c".into()],
            "linux",
            "amd64"
        )
        .is_err());
    }

    #[test]
    fn links_resolve_inside_the_archive() {
        assert_eq!(
            resolve_link("a/layer.tar", b"../b/layer.tar"),
            "b/layer.tar"
        );
        assert_eq!(resolve_link("a/layer.tar", b"c.tar"), "a/c.tar");
    }
}
