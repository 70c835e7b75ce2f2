//! The flattened image read back for a verify: from the engine (its save
//! stream, as [`crate::saved::layers::read_picked`] reads IMAGE's) or from
//! `--output`'s archive, each layer indexed with its facts, nothing spooled.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use super::Layers;
use crate::layers::{LayerIndex, MergeError};
use crate::saved::walk::{self, ArchiveError, Pick, ReadError};

/// Where the result is.
#[derive(Debug, Clone, Copy)]
pub enum Theirs<'a> {
    /// An image on the engine, by ID.
    Image(&'a str),
    /// An image archive (`--output`'s, before it is renamed into place).
    File(&'a Path),
}

/// Reads the images `picks` names of the image archive at `path`, on a
/// blocking thread.
pub async fn file(path: &Path, picks: Vec<Pick>) -> Result<Layers, ReadError<MergeError>> {
    let path: PathBuf = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let file = File::open(&path).map_err(ArchiveError::from)?;
        let file = BufReader::with_capacity(1 << 20, file);
        walk::read_picked(file, &picks, |layer| LayerIndex::read_facts(layer, None))
    })
    .await
    .expect("the reading thread does not panic")
}
