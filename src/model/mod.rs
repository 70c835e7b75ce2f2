//! The image model, without I/O: platforms and their matching rules, TAG's
//! reference grammar, IMAGE's index and the choice of its platforms, and
//! the flattened image's config.

pub mod compression;
pub mod config;
pub mod platform;
pub mod reference;
pub mod source_index;

/// IMAGE as the run found it.
#[derive(Debug, Clone)]
pub struct SourceImage {
    pub id: String,
    pub layers: usize,
    /// The engine's figure, in bytes.
    pub size: u64,
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
