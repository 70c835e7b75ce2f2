//! What the pipeline tells the user about its progress, and the stages it
//! goes through. The pipeline owns this interface and depends on nothing
//! else for output; the renderers in `output/` implement it.

/// The steps of a flatten, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Inspect,
    Create,
    /// The export into an import.
    Stream,
    /// The export into a temporary layer file.
    Spool,
    /// The layer file and the config into `docker load`.
    Load,
    /// Every platform's layer file and config, and their index, into `docker load`.
    LoadIndex,
    /// The image archive into `--output`'s file or stdout.
    Write,
    /// The dry run's read of the image's layers, and the merge's.
    Read,
    /// The merge of the image's layers into the layer that is sent.
    Merge,
    /// The result read back and compared with IMAGE's layers (`--verify`).
    Verify,
    Configure,
    Tag,
    Cleanup,
}

/// What the pipeline tells the user about its progress.
pub trait Progress: Send + Sync {
    /// A stage starts; `what` names its subject (an image, a tag).
    fn begin(&self, stage: Stage, what: &str);
    /// The current stage finished.
    fn end(&self);
    /// The stream stage's expected size, an estimate.
    fn expect_bytes(&self, total: u64);
    /// More bytes of the export went by.
    fn bytes(&self, n: u64);
}
