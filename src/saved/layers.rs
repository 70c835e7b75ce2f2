//! IMAGE's layers from its save stream, each indexed by the layer rules'
//! reader ([`LayerIndex`]) as it streams by: spooled to an unnamed file in
//! `TMPDIR` for a merge, with each entry's facts for `--verify`, or only
//! listed for a dry run. Read whole ([`read_all`]), when the stream is also
//! where the run learns IMAGE's index (Engine 26.1), or for the images
//! picked ([`read`], [`read_facts`]).

use std::sync::Arc;

use bollard::errors::Error as EngineError;
use bollard::Docker;

use crate::layers::{LayerIndex, MergeError};
use crate::model::source_index::{self, SourceIndex};
use crate::progress::Progress;
use crate::saved::walk::{self, IndexReadError, Members, Pick, ReadError, Saved};

/// IMAGE's layers, read and spooled.
pub type Layers = Saved<LayerIndex>;

/// Why reading the layers failed.
#[derive(Debug)]
pub enum ReadFailure {
    /// The engine refused, or the stream broke.
    Engine(EngineError),
    /// The save stream is no whole image.
    Archive(ReadError<MergeError>),
    /// A temporary file could not be written.
    Spool(std::io::Error),
}

/// How each layer is taken as it streams by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Take {
    /// Spooled to an unnamed file: the merge reads its bytes again.
    pub spool: bool,
    /// Each entry's facts kept, for `--verify`.
    pub facts: bool,
}

impl Take {
    /// Only listed: what the dry run applies.
    pub const LISTED: Take = Take {
        spool: false,
        facts: false,
    };
    /// For the merge, and with `facts` for a verify of it.
    pub fn merged(facts: bool) -> Take {
        Take { spool: true, facts }
    }
}

/// Reads IMAGE's save stream for the images `picks` names (one, or each
/// platform of a multi-platform IMAGE), counting its bytes into
/// `progress`, each layer taken as `take` says, and frees the files of
/// every layer no image merges: each keeps its bottom `keep` as they are.
pub async fn read(
    docker: &Docker,
    id: &str,
    picks: Vec<Pick>,
    keep: usize,
    progress: Arc<dyn Progress>,
    take: Take,
) -> Result<Arc<Layers>, ReadFailure> {
    read_all(docker, id, progress, take)
        .await?
        .pick(&picks, keep)
}

/// IMAGE's save stream read whole, every layer spooled and indexed, its
/// images not picked yet: on Engine 26.1 the stream is also the one place
/// that says what IMAGE's index holds ([`Unpicked::index`]), and it is
/// read once for both.
pub struct Unpicked {
    members: Members<LayerIndex>,
    take: Take,
}

/// Reads IMAGE's save stream whole, as [`read`] does, before any image of
/// it is picked.
pub async fn read_all(
    docker: &Docker,
    id: &str,
    progress: Arc<dyn Progress>,
    take: Take,
) -> Result<Unpicked, ReadFailure> {
    let members = read_with(docker, id, progress, move |reader| {
        walk::read_members(reader, index_layer(take))
    })
    .await?;
    Ok(Unpicked { members, take })
}

/// The archive given with `-i`, `opened`, read whole, as [`read_all`]
/// reads a save stream, its bytes counted into `progress`.
pub async fn read_input(
    opened: super::input::Opened,
    progress: Arc<dyn Progress>,
    take: Take,
) -> Result<Unpicked, ReadFailure> {
    if let Some(size) = opened.size {
        progress.expect_bytes(size);
    }
    // Set when this future is dropped (an interrupt): the reading thread
    // then stops at its next read instead of reading on to the end.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let _stop_on_drop = StopOnDrop(stop.clone());
    let reader = Counted {
        inner: opened.reader,
        progress,
        stop,
    };
    let members = tokio::task::spawn_blocking(move || {
        walk::read_members(
            std::io::BufReader::with_capacity(1 << 20, reader),
            index_layer(take),
        )
    })
    .await
    .expect("the reading thread does not panic")
    .map_err(failure)?;
    Ok(Unpicked { members, take })
}

struct StopOnDrop(Arc<std::sync::atomic::AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The input as read: its bytes counted, stopped when the run is.
struct Counted {
    inner: Box<dyn std::io::Read + Send>,
    progress: Arc<dyn Progress>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl std::io::Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.stop.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Interrupted,
                "the run was stopped",
            ));
        }
        let n = self.inner.read(buf)?;
        self.progress.bytes(n as u64);
        Ok(n)
    }
}

impl Unpicked {
    /// The images the archive holds, with their names.
    pub fn archived(&self) -> Result<Vec<walk::Archived>, walk::ArchiveError> {
        self.members.archived()
    }

    /// Entry `n` of a docker-archive as a manifest ([`Members::entry_manifest`]).
    pub fn entry_manifest(&self, n: usize) -> Result<source_index::Manifest, walk::ArchiveError> {
        self.members.entry_manifest(n)
    }

    /// What IMAGE's ID names in the stream: one manifest, or an index.
    pub fn index(&self, id: &str) -> Result<SourceIndex, IndexReadError> {
        source_index::from_blobs(self.members.oci_blobs(), id).map_err(IndexReadError::Index)
    }

    /// The images `picks` names; frees the files of every layer no image
    /// merges (each keeps its bottom `keep`).
    pub fn pick(self, picks: &[Pick], keep: usize) -> Result<Arc<Layers>, ReadFailure> {
        let mut layers = self
            .members
            .pick(picks, index_layer(self.take))
            .map_err(failure)?;
        // The kept layers' bytes are not needed again (their index is), nor
        // those of what no image names (a platform not picked).
        let merged: Vec<usize> = layers
            .images
            .iter()
            .flat_map(|image| image.layers[keep.min(image.layers.len())..].iter())
            .map(|l| l.blob)
            .collect();
        for (i, blob) in layers.blobs.iter_mut().enumerate() {
            if !merged.contains(&i) {
                blob.drop_spool();
            }
        }
        Ok(Arc::new(layers))
    }
}

/// Reads an image's save stream for the images `picks` names, their
/// layers taken as `take` says: for a verify, or a dry run.
pub async fn read_picked(
    docker: &Docker,
    id: &str,
    picks: Vec<Pick>,
    progress: Arc<dyn Progress>,
    take: Take,
) -> Result<Layers, ReadFailure> {
    read_with(docker, id, progress, move |reader| {
        walk::read_picked(reader, &picks, index_layer(take))
    })
    .await
}

/// How each layer member is taken: indexed (with its facts for a verify),
/// and spooled to an unnamed file when the merge will read it again.
fn index_layer(
    take: Take,
) -> impl FnMut(&mut dyn std::io::Read) -> Result<LayerIndex, MergeError> + Send + 'static {
    move |layer| {
        let file = match take.spool {
            true => Some(tempfile::tempfile().map_err(MergeError::Spool)?),
            false => None,
        };
        match take.facts {
            true => LayerIndex::read_facts(layer, file),
            false => LayerIndex::read(layer, file),
        }
    }
}

/// Feeds IMAGE's save stream to `work`, its bytes counted into `progress`.
async fn read_with<T: Send + 'static>(
    docker: &Docker,
    id: &str,
    progress: Arc<dyn Progress>,
    work: impl FnOnce(super::ChannelReader) -> Result<T, ReadError<MergeError>> + Send + 'static,
) -> Result<T, ReadFailure> {
    let read = super::read(docker, id, move |n| progress.bytes(n), work)
        .await
        .map_err(ReadFailure::Engine)?;
    read.map_err(failure)
}

fn failure(e: ReadError<MergeError>) -> ReadFailure {
    match e {
        ReadError::Layer {
            error: MergeError::Spool(e),
            ..
        } => ReadFailure::Spool(e),
        other => ReadFailure::Archive(other),
    }
}
