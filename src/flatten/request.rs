//! What a flatten is asked to do: IMAGE (or an image of `-i`'s archive),
//! TAG, where the result goes, and how it is made; lowered from the
//! command line ([`crate::cli::job`]) before anything runs.

use std::path::PathBuf;

use crate::model::compression::Compression;
use crate::model::platform::Platform;
use crate::model::reference::Tag;

/// What to flatten, and where to.
#[derive(Debug, Clone)]
pub struct Request {
    /// IMAGE; with `-i`, the name of an image in the archive, or empty for
    /// its only one.
    pub image: String,
    /// TAG; `None` only with `-i` and `-o` when neither IMAGE nor TAG is
    /// given: the archive's own name for the image is used, once read.
    pub tag: Option<Tag>,
    /// `-i`: IMAGE comes from this image archive (`-`: stdin), not the engine.
    pub input: Option<PathBuf>,
    /// `--output`: a file, or `-` for stdout; `None`: the engine.
    pub output: Option<PathBuf>,
    /// `None`: what suits the destination.
    pub compression: Option<Compression>,
    /// Rebuild an image that already has one layer instead of only tagging it.
    pub force: bool,
    /// `--platform`: only this platform of IMAGE; `None`: every one it has.
    pub platform: Option<Platform>,
    /// Merge IMAGE's own layers instead of exporting a container, keeping
    /// these bottom ones as they are; `None`: the export.
    pub merge: Option<Keep>,
    /// `--verify`: read the result back and compare it with IMAGE's
    /// layers before TAG moves (or FILE is renamed into place).
    pub verify: bool,
    /// `SOURCE_DATE_EPOCH`, when set: the time the result says, and the
    /// newest its files may be.
    pub epoch: Option<u64>,
}

impl Request {
    /// TAG, as given or, with `-i`, named from the archive before any
    /// other step ([`Pipeline::flatten`] resolves it first).
    pub fn tag(&self) -> &Tag {
        self.tag
            .as_ref()
            .expect("TAG is given, or named from the archive before the run goes on")
    }
}

/// Which of IMAGE's bottom layers a merge keeps as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keep {
    /// The bottom N (0 for `--exact`: every layer is merged).
    Layers(usize),
    /// BASE's layers, which must be IMAGE's bottom ones.
    Base(String),
}
