//! Where the flattened layer's tar comes from. One module per source; the
//! pipeline pulls tar chunks through [`Source::next`] and encodes them.
//! Today the container export; IMAGE's own layers merged client-side
//! (`--exact`, keep-base) come next, as a variant and a module beside it.

pub mod export;

use bytes::Bytes;

use crate::tarfilter::FilterStats;

/// A layer's tar, chunk by chunk.
pub enum Source {
    Export(export::Export),
}

/// Why a source failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Export(#[from] export::ExportError),
}

impl Source {
    /// The next chunk of tar; `None` after the archive's end.
    pub async fn next(&mut self) -> Result<Option<Bytes>, SourceError> {
        match self {
            Source::Export(export) => Ok(export.next().await?),
        }
    }

    /// What the source left out of IMAGE's files, known at its end.
    pub fn stats(&self) -> FilterStats {
        match self {
            Source::Export(export) => export.stats().clone(),
        }
    }
}
