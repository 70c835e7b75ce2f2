//! IMAGE's own layers as a source (`--exact`, `--keep-base`,
//! `--keep-layers`): its save stream (`GET /images/{id}/get`) read once
//! through [`crate::saved::walk`], each layer spooled to an unnamed file in
//! `TMPDIR` and indexed on the way, then merged ([`crate::layers`]) into one
//! tar on the blocking pool, which streams to the pipeline chunk by chunk.
//! No container is created.

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::layers::{self, LayerIndex, MergeError, MergeStats};
use crate::model::KeptLayer;
use crate::progress::Progress;
use crate::saved::layers::Layers;
use crate::saved::walk::SavedImage;
use crate::stream::{self, ByteStream, Out, Summary};

/// Merged tar per chunk sent on: the encoder's block.
const CHUNK: usize = stream::BLOCK_SIZE;

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
    /// Fills chunks of exactly [`CHUNK`] bytes: never grown past the one
    /// allocation, and each a whole block for the encoder, which then takes
    /// it without a copy.
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let mut rest = data;
        while !rest.is_empty() {
            let take = (CHUNK - self.buf.len()).min(rest.len());
            self.buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.buf.len() == CHUNK {
                self.send()?;
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The bottom `keep` layers of an image read.
pub fn kept(image: &SavedImage, keep: usize) -> Vec<KeptLayer> {
    image.layers[..keep]
        .iter()
        .map(|l| {
            let compression = l.compression;
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
