//! Where the flattened layer's tar comes from. One module per source; the
//! pipeline pulls tar chunks through [`Source::next`] and encodes them.
//! The container export, or IMAGE's own layers merged client-side
//! (`--exact`, `--keep-base`, `--keep-layers`).

pub mod export;
pub mod filter;
pub mod merge;

use bytes::Bytes;

use crate::source::filter::FilterStats;

/// A layer's tar, chunk by chunk.
pub enum Source {
    Export(Box<export::Export>),
    Merge(merge::Merge),
}

/// Why a source failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Export(#[from] export::ExportError),
    #[error(transparent)]
    Merge(#[from] merge::MergeFailure),
}

impl Source {
    /// The next chunk of tar; `None` after the archive's end.
    pub async fn next(&mut self) -> Result<Option<Bytes>, SourceError> {
        match self {
            Source::Export(export) => Ok(export.next().await?),
            Source::Merge(merge) => Ok(merge.next().await?),
        }
    }

    /// What the source left out of IMAGE's files, known at its end.
    pub fn stats(&self) -> FilterStats {
        match self {
            Source::Export(export) => export.stats().clone(),
            // The merge leaves nothing out.
            Source::Merge(_) => FilterStats::default(),
        }
    }
}
