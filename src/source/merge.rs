//! IMAGE's own layers as a source (`--exact`, `--keep-base`,
//! `--keep-layers`): its save stream (`GET /images/{id}/get`) read once
//! through [`crate::saved::walk`], each layer spooled to an unnamed file in
//! `TMPDIR` and indexed on the way, then merged ([`crate::layers`]) into one
//! tar on the blocking pool, which streams to the pipeline chunk by chunk.
//! No container is created.

use std::io::Write;
use std::sync::Arc;

use bollard::errors::Error as EngineError;
use bollard::Docker;
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::encode::Compression;
use crate::layers::{self, LayerIndex, MergeError, MergeStats};
use crate::model::source_index::{self, IndexError, SourceIndex};
use crate::progress::Progress;
use crate::saved;
use crate::saved::walk::{self, Members, Pick, ReadError, Saved, SavedImage};
use crate::stream::{self, ByteStream, Out, Summary};

/// Merged tar per chunk sent on.
const CHUNK: usize = 1 << 20;

/// IMAGE's layers, read and spooled.
pub type Layers = Saved<LayerIndex>;

/// Why reading the layers failed.
#[derive(Debug)]
pub enum ReadFailure {
    /// The engine refused, or the stream broke.
    Engine(EngineError),
    /// The save stream is no whole image.
    Archive(String),
    /// A temporary file could not be written.
    Spool(std::io::Error),
}

/// Reads IMAGE's save stream for the images `picks` names (one, or each
/// platform of a multi-platform IMAGE), counting its bytes into
/// `progress`, each layer spooled for the merge (with `facts`, indexed for
/// a verify too), and frees the files of every layer no image merges: each
/// keeps its bottom `keep` as they are.
pub async fn read(
    docker: &Docker,
    id: &str,
    picks: Vec<Pick>,
    keep: usize,
    progress: Arc<dyn Progress>,
    facts: bool,
) -> Result<Arc<Layers>, ReadFailure> {
    read_all(docker, id, progress, facts)
        .await?
        .pick(&picks, keep)
}

/// IMAGE's save stream read whole, every layer spooled and indexed, its
/// images not picked yet: on Engine 26.1 the stream is also the one place
/// that says what IMAGE's index holds ([`Unpicked::index`]), and it is
/// read once for both.
pub struct Unpicked {
    members: Members<LayerIndex>,
    facts: bool,
}

/// Reads IMAGE's save stream whole, as [`read`] does, before any image of
/// it is picked.
pub async fn read_all(
    docker: &Docker,
    id: &str,
    progress: Arc<dyn Progress>,
    facts: bool,
) -> Result<Unpicked, ReadFailure> {
    let members = read_with(docker, id, progress, move |reader| {
        walk::read_members(reader, index_layer(true, facts))
    })
    .await?;
    Ok(Unpicked { members, facts })
}

impl Unpicked {
    /// What IMAGE's ID names in the stream: one manifest, or an index.
    pub fn index(&self, id: &str) -> Result<SourceIndex, IndexError> {
        source_index::from_blobs(self.members.oci_blobs(), id)
    }

    /// The images `picks` names; frees the files of every layer no image
    /// merges (each keeps its bottom `keep`).
    pub fn pick(self, picks: &[Pick], keep: usize) -> Result<Arc<Layers>, ReadFailure> {
        let mut layers = self
            .members
            .pick(picks, index_layer(true, self.facts))
            .map_err(failure)?;
        // The kept layers' bytes are not needed again (their index is), nor
        // those of what no image names (a platform not picked).
        let merged: Vec<usize> = layers
            .images
            .iter()
            .flat_map(|image| image.layers[keep.min(image.layers.len())..].iter())
            .map(|l| l.blob)
            .collect();
        for (i, blob) in layers.blobs.iter_mut().enumerate() {
            if !merged.contains(&i) {
                blob.drop_spool();
            }
        }
        Ok(Arc::new(layers))
    }
}

/// Reads an image's save stream for a verify, for the images `picks`
/// names: their layers indexed with their facts, nothing spooled.
pub async fn read_facts(
    docker: &Docker,
    id: &str,
    picks: Vec<Pick>,
    progress: Arc<dyn Progress>,
) -> Result<Layers, ReadFailure> {
    read_with(docker, id, progress, move |reader| {
        walk::read_picked(reader, &picks, index_layer(false, true))
    })
    .await
}

/// How each layer member is taken: indexed (with its facts for a verify),
/// and spooled to an unnamed file when the merge will read it again.
fn index_layer(
    spool: bool,
    facts: bool,
) -> impl FnMut(&mut dyn std::io::Read) -> Result<LayerIndex, MergeError> + Send + 'static {
    move |layer| {
        let file = match spool {
            true => Some(tempfile::tempfile().map_err(MergeError::Spool)?),
            false => None,
        };
        match facts {
            true => LayerIndex::read_facts(layer, file),
            false => LayerIndex::read(layer, file),
        }
    }
}

/// Feeds IMAGE's save stream to `work`, its bytes counted into `progress`.
async fn read_with<T: Send + 'static>(
    docker: &Docker,
    id: &str,
    progress: Arc<dyn Progress>,
    work: impl FnOnce(saved::ChannelReader) -> Result<T, ReadError<MergeError>> + Send + 'static,
) -> Result<T, ReadFailure> {
    let save = docker.export_image(id);
    let read = saved::read(save, move |n| progress.bytes(n), work)
        .await
        .map_err(ReadFailure::Engine)?;
    read.map_err(failure)
}

fn failure(e: ReadError<MergeError>) -> ReadFailure {
    match e {
        ReadError::Layer {
            error: MergeError::Spool(e),
            ..
        } => ReadFailure::Spool(e),
        other => ReadFailure::Archive(other.to_string()),
    }
}

/// The bytes, uncompressed, of the layers of `layers.images[image]` that
/// a merge above its bottom `keep` reads.
pub fn merged_bytes(layers: &Layers, image: usize, keep: usize) -> u64 {
    layers.images[image].layers[keep..]
        .iter()
        .map(|l| layers.blobs[l.blob].bytes)
        .sum()
}

/// The merged tar on its way.
pub struct Merge {
    bytes: ByteStream,
    summary: Option<Summary<MergeStats, MergeError>>,
    progress: Arc<dyn Progress>,
}

/// Why the merge failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MergeFailure(MergeError);

impl Merge {
    /// Starts merging the layers of `layers.images[image]` above its bottom
    /// `keep`, with `comment` on the root entry.
    pub fn start(
        layers: Arc<Layers>,
        image: usize,
        keep: usize,
        comment: Option<String>,
        progress: Arc<dyn Progress>,
    ) -> Merge {
        let (bytes, summary) = stream::spawn_blocking(move |out: &Out| {
            let order: Vec<&LayerIndex> = layers.images[image]
                .layers
                .iter()
                .map(|l| &layers.blobs[l.blob])
                .collect();
            let mut sink = Chunks {
                out,
                buf: Vec::with_capacity(CHUNK),
            };
            let stats = layers::merge(&order, keep, comment.as_deref(), &mut sink)?;
            sink.send().map_err(MergeError::Write)?;
            Ok(stats)
        });
        Merge {
            bytes,
            summary: Some(summary),
            progress,
        }
    }

    /// The next chunk of the merged tar; `None` after its end.
    pub async fn next(&mut self) -> Result<Option<Bytes>, MergeFailure> {
        match self.bytes.next().await {
            Some(Ok(chunk)) => {
                self.progress.bytes(chunk.len() as u64);
                Ok(Some(chunk))
            }
            // The summary holds the typed error.
            Some(Err(_)) | None => match self.summary.take() {
                Some(summary) => {
                    summary.wait().await.map_err(MergeFailure)?;
                    Ok(None)
                }
                None => Ok(None),
            },
        }
    }
}

/// Collects the merged tar into chunks for the stream.
struct Chunks<'o> {
    out: &'o Out,
    buf: Vec<u8>,
}

impl Chunks<'_> {
    fn send(&mut self) -> std::io::Result<()> {
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.out
            .blocking_send(Bytes::from(chunk))
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::BrokenPipe, e))
    }
}

impl Write for Chunks<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A layer kept as it is, as the new image's manifest names it: the
/// engine has its bytes, so the archive does not carry them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptLayer {
    pub diff_id: String,
    /// The blob as the engine stores it: its digest, size and media type.
    pub digest: String,
    pub size: u64,
    pub media_type: &'static str,
}

/// The bottom `keep` layers of an image read.
pub fn kept(image: &SavedImage, keep: usize) -> Vec<KeptLayer> {
    image.layers[..keep]
        .iter()
        .map(|l| {
            let compression = match l.compression {
                walk::Compression::None => Compression::None,
                walk::Compression::Gzip => Compression::Gzip,
                walk::Compression::Zstd => Compression::Zstd,
            };
            KeptLayer {
                diff_id: l.diff_id.clone(),
                // A docker-archive names layers by ID, not digest: there
                // the blob is the plain layer, its digest the diff ID.
                digest: match l.member.strip_prefix("blobs/sha256/") {
                    Some(hex) => format!("sha256:{hex}"),
                    None => l.diff_id.clone(),
                },
                size: l.stored_size,
                media_type: compression.layer_media_type(),
            }
        })
        .collect()
}

/// The history entries of the bottom `keep` layers (and the entries that
/// made no layer among them), from IMAGE's config; one is made up for a
/// kept layer the history does not describe.
pub fn kept_history(config: &Value, keep: usize) -> Vec<Value> {
    let mut kept = Vec::new();
    let mut layers = 0;
    for entry in config["history"].as_array().into_iter().flatten() {
        if layers == keep {
            break;
        }
        if entry["empty_layer"] != Value::Bool(true) {
            layers += 1;
        }
        kept.push(entry.clone());
    }
    while layers < keep {
        layers += 1;
        kept.push(json!({"comment": format!("layer {layers}, kept by docker-flatten")}));
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kept_history_is_the_kept_layers_and_the_steps_between_them() {
        let config = json!({"history": [
            {"created_by": "ADD base"},
            {"created_by": "ENV A=1", "empty_layer": true},
            {"created_by": "RUN two"},
            {"created_by": "ENV B=2", "empty_layer": true},
            {"created_by": "RUN three"},
        ]});
        let by = |h: Vec<Value>| -> Vec<String> {
            h.iter()
                .map(|e| e["created_by"].as_str().unwrap_or("?").to_owned())
                .collect()
        };
        assert_eq!(by(kept_history(&config, 0)), Vec::<String>::new());
        assert_eq!(by(kept_history(&config, 1)), ["ADD base"]);
        assert_eq!(
            by(kept_history(&config, 2)),
            ["ADD base", "ENV A=1", "RUN two"]
        );
        assert_eq!(by(kept_history(&json!({}), 2)), ["?", "?"]);
    }
}
