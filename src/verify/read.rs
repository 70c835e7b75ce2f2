//! The flattened image read back for a verify: from the engine (its save
//! stream, as [`crate::saved::layers::read_facts`] reads IMAGE's) or from
//! `--output`'s archive, each layer indexed with its facts, nothing spooled.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use super::Layers;
use crate::layers::LayerIndex;
use crate::saved::walk::{self, Pick};

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
pub async fn file(path: &Path, picks: Vec<Pick>) -> Result<Layers, std::io::Error> {
    let path: PathBuf = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let file = BufReader::with_capacity(1 << 20, File::open(&path)?);
        walk::read_picked(file, &picks, |layer| LayerIndex::read_facts(layer, None))
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
    })
    .await
    .expect("the reading thread does not panic")
}
