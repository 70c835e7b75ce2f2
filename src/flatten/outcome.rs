//! What a run did, for `output/` to render: a flatten's [`Finished`], a
//! dry run's [`DryRunOutcome`], a `--verify-only`'s [`VerifyOutcome`].

use std::path::PathBuf;
use std::time::Duration;

use crate::engine::store::Store;
use crate::layers::savings::Savings;
use crate::model::compression::Compression;
use crate::model::platform::Platform;
use crate::model::reference::Tag;
use crate::model::source_index::LeftOut;
use crate::model::SourceImage;
use crate::source::filter::FilterStats;
use crate::verify::Report;

/// A finished flatten.
#[derive(Debug)]
pub struct Finished {
    pub source: SourceImage,
    /// `None` for a run that reached no engine (`-i` into a file).
    pub store: Option<Store>,
    pub elapsed: Duration,
    pub outcome: Outcome,
    /// Each platform flattened, in IMAGE's index order (one for a
    /// one-platform IMAGE); empty when IMAGE was already flat.
    pub platforms: Vec<Flattened>,
    /// What of IMAGE's index the result leaves out.
    pub left_out: LeftOut,
    /// The image TAG named before, if TAG moved off it.
    pub replaced: Option<super::Replaced>,
    /// With `-i`: IMAGE and TAG as the run named them from the archive.
    pub named: Option<(String, Tag)>,
}

/// One platform of the result.
#[derive(Debug, Clone)]
pub struct Flattened {
    pub platform: Option<Platform>,
    /// IMAGE's manifest for it, where the store has manifests.
    pub source_manifest: Option<String>,
    pub layers_before: usize,
    /// Its layers' bytes as stored (the engine's figure for a one-platform IMAGE).
    pub size_before: u64,
    /// The flattened manifest, where the result has one (not on a graphdriver).
    pub manifest: Option<String>,
    /// The kept layers and the flattened one.
    pub layers_after: usize,
    /// The flattened layer's bytes as sent.
    pub size_after: u64,
    /// The flattened image's config digest (its ID on a graphdriver) and
    /// its new layer's, which a script compares across runs.
    pub digests: Option<ResultDigests>,
}

/// The digests of one platform's flattened image.
#[derive(Debug, Clone)]
pub struct ResultDigests {
    pub config: String,
    /// The layer's diff ID (of its tar) and blob digest (as sent).
    pub diff_id: String,
    pub blob: String,
}

impl ResultDigests {
    /// Of the image whose config is `config` (as written) over `layer`.
    pub fn new(config: &[u8], layer: &crate::encode::Digests) -> ResultDigests {
        ResultDigests {
            config: crate::sink::archive::digest(config),
            diff_id: layer.diff_id.clone(),
            blob: layer.blob.clone(),
        }
    }
}

/// What a finished flatten did.
#[derive(Debug)]
pub enum Outcome {
    /// IMAGE had one layer already: TAG now points at it and nothing was built.
    AlreadyFlat,
    Flattened {
        made: Made,
        /// How the layer was sent (or written).
        compression: Compression,
        /// What the source left out.
        filter: FilterStats,
        /// Where the layer came from.
        how: How,
        /// What `--verify` found: no difference the mode does not account for.
        verified: Option<Report>,
    },
}

/// How the flattened layer was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum How {
    /// From a container's export.
    Export,
    /// By merging IMAGE's layers above these kept ones (diff IDs; none for
    /// `--exact`).
    Merge { kept: Vec<String> },
}

/// Where the flattened image is.
#[derive(Debug)]
pub enum Made {
    /// On the engine, tagged TAG.
    Image { id: String, size: u64 },
    /// In an archive file, or on stdout (`-`), named TAG inside.
    Archive { path: PathBuf, size: u64 },
}

/// What a dry run found.
#[derive(Debug)]
pub struct DryRunOutcome {
    pub source: SourceImage,
    /// Per platform, in IMAGE's index order: one for a one-platform IMAGE.
    pub platforms: Vec<Analysed>,
    /// What of IMAGE's index a flatten would leave out.
    pub left_out: LeftOut,
    pub elapsed: Duration,
    /// `None` for a dry run of an archive (`-i`), with no engine.
    pub store: Option<Store>,
    /// With `-i`: IMAGE as the run named it from the archive.
    pub named: Option<String>,
}

/// One platform's analysis.
#[derive(Debug)]
pub struct Analysed {
    pub platform: Option<Platform>,
    /// IMAGE's manifest for it, where the store has manifests.
    pub manifest: Option<String>,
    pub layers: usize,
    /// Its layers' bytes as stored.
    pub size: u64,
    pub savings: Savings,
    /// Picked with `--platform`.
    pub chosen: bool,
}

/// What `--verify-only` found: FLAT as IMAGE's layers make it, the
/// differences the mode documents aside.
#[derive(Debug)]
pub struct VerifyOutcome {
    pub source: SourceImage,
    pub flat_id: String,
    pub store: Store,
    pub report: Report,
}
