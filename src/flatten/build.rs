//! One platform's flattened layer started, whichever way it is made and
//! however many platforms the run takes: the container's export (a
//! never-started container and its filtered export) or the merge of IMAGE's
//! own layers above the kept ones, encoded on its way; and the recipe that
//! gives it IMAGE's config. The one-platform path and the index's path both
//! build through here.

use std::sync::Arc;

use bollard::models::ImageInspect;
use serde_json::Value;

use sha2::{Digest, Sha256};

use super::{Pipeline, Request};
use crate::encode::{self, Encoded};
use crate::error::{Cause, Error, Step};
use crate::model::compression::Compression;
use crate::model::config::{Provenance, Recipe};
use crate::model::platform::Platform;
use crate::model::KeptLayer;
use crate::progress::{Progress, Stage};
use crate::saved::layers::Layers;
use crate::source::merge as merge_source;
use crate::source::{export, Source};

/// Where one platform's layer comes from.
pub(super) enum Of<'a> {
    /// A container of IMAGE (of `platform`, for one of an index), exported.
    Export {
        platform: Option<&'a Platform>,
        /// What the layer's root entry takes of the image: its creation time.
        created: &'a ImageInspect,
        /// The bytes to expect, and the stage the export streams in.
        bytes: u64,
        stage: (Stage, String),
    },
    /// Image `image` of the layers read, merged above its bottom `keep`.
    Merge {
        layers: &'a Arc<Layers>,
        image: usize,
        keep: usize,
    },
}

impl Pipeline<'_> {
    /// Starts the layer of `of`, encoded with `compression`, and says which
    /// of IMAGE's layers stay below it. `label` names the platform in
    /// progress and errors; `stamp` says what the layer's entries carry.
    pub(super) async fn build(
        &self,
        of: Of<'_>,
        source_id: &str,
        label: &str,
        stamp: Stamp<'_>,
        compression: Compression,
        progress: &Arc<dyn Progress>,
    ) -> Result<(Encoded, Vec<KeptLayer>), Error> {
        let (source, kept) = match of {
            Of::Export {
                platform,
                created,
                bytes,
                stage: (stage, target),
            } => {
                progress.begin(Stage::Create, label);
                let container =
                    export::create_container(self.docker(), self.objects, source_id, platform)
                        .await
                        .map_err(self.failed(Step::Create(label.to_owned())))?;
                let preamble = export::root_entry(created, stamp.comment);
                progress.expect_bytes(bytes);
                progress.begin(stage, &target);
                let export =
                    export::Export::new(self.docker(), &container, preamble, progress.clone());
                (Source::Export(Box::new(export)), Vec::new())
            }
            Of::Merge {
                layers,
                image,
                keep,
            } => {
                progress.expect_bytes(merge_source::merged_bytes(layers, image, keep));
                progress.begin(Stage::Merge, label);
                let kept = merge_source::kept(&layers.images[image], keep);
                let merge = merge_source::Merge::start(
                    layers.clone(),
                    image,
                    keep,
                    stamp.comment.map(str::to_owned),
                    progress.clone(),
                );
                (Source::Merge(merge), kept)
            }
        };
        let layer = encode::encode(source, compression, stamp.epoch).map_err(|e| {
            self.error(
                Step::Export(label.to_owned()),
                Cause::Layer(encode::LayerError::Compress(e)),
            )
        })?;
        Ok((layer, kept))
    }
}

/// What the layer's entries carry of the run's options.
#[derive(Clone, Copy)]
pub(super) struct Stamp<'a> {
    /// On the layer's root entry (see [`Identity::comment`]).
    pub comment: Option<&'a str>,
    /// `SOURCE_DATE_EPOCH`: no entry's mtime is later.
    pub epoch: Option<u64>,
}

/// How the flattened image gets IMAGE's config: `config` (IMAGE's, or its
/// platform's), of `layers` layers, above the `kept` ones, dated `epoch`
/// (`SOURCE_DATE_EPOCH`) or, without it, as IMAGE is.
pub(super) fn recipe<'a>(
    image: &'a str,
    layers: usize,
    config: &Value,
    kept: &[KeptLayer],
    epoch: Option<u64>,
) -> Recipe<'a> {
    Recipe {
        provenance: Provenance {
            reference: image,
            layers: layers - kept.len(),
        },
        kept_diff_ids: kept.iter().map(|k| k.diff_id.clone()).collect(),
        kept_history: merge_source::kept_history(config, kept.len()),
        epoch,
    }
}

/// What the comment on the layer's root entry derives from: what the
/// flattened image is made of, as far as the run knows it before the
/// layer. `image` is IMAGE's config where the run has it by then (the
/// same on every engine), else IMAGE's ID (a digest of its content).
pub(super) struct Identity<'a> {
    pub image: &'a Value,
    pub request: &'a Request,
    pub platform: Option<&'a Platform>,
    pub keep: Option<usize>,
    pub compression: Compression,
    pub epoch: Option<u64>,
}

impl Identity<'_> {
    /// The comment on the layer's root entry. The containerd store keys a
    /// layer's snapshot by its chain of diff IDs, and a loaded image whose
    /// snapshot already exists is not unpacked, so never holds it: when
    /// the image that made it goes, the other breaks. Two different
    /// results of the same files must so have different layers; two runs
    /// of the same IMAGE and options give the same image, byte for byte,
    /// and may share (docs/reproducible.md). So the comment is a digest
    /// of what makes the image, never of the run.
    pub(super) fn comment(&self) -> String {
        let of = serde_json::json!({
            "image": self.image,
            "reference": self.request.image,
            "platform": self.platform.map(ToString::to_string),
            "keep": self.keep,
            "compression": self.compression.to_string(),
            "epoch": self.epoch,
            "version": env!("CARGO_PKG_VERSION"),
        });
        let bytes = serde_json::to_vec(&of).expect("a JSON value serializes");
        format!("docker-flatten {:x}", Sha256::digest(bytes))
    }
}
