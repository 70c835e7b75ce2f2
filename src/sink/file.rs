//! `--output FILE` and `-o -`: the flattened image as an OCI image layout
//! archive (the one the containerd store's load gets, named TAG, with a
//! `manifest.json` for engines that read docker-archives), in a file or on
//! stdout. Nothing is created on the engine but the run's container.
//!
//! - **A file** is written beside FILE ([`Staged`]: unnamed on Linux), and
//!   given FILE's name only when whole: a failure, an interrupt or a kill
//!   leaves FILE as it was, and no partial file. The layer blob streams in
//!   first, under a placeholder header that is rewritten with the blob's
//!   name and size once its digest is known: no copy of the layer is held
//!   anywhere.
//! - **stdout** cannot go back, so the blob's header must come with its
//!   digest: the layer is [`spool`]ed first (an unnamed file in `TMPDIR`),
//!   as for a load.
//!
//! - **A multi-platform image** is an index archive
//!   ([`crate::sink::archive::index`]) whose layers are all spooled before it is
//!   written, as for its load: [`write_whole`].
//!
//! [`spool`]: super::spool
//! [`Staged`]: crate::os::files::Staged

use std::future::Future;
use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncSeekExt, AsyncWriteExt, BufWriter};

use super::load::spool_beside;
use super::Engine;
use crate::encode::{Built, Encoded, LayerError};
use crate::error::{Cause, Error, Step};
use crate::model::config::{platform, Recipe};
use crate::model::reference::Tag;
use crate::os::files::Staged;
use crate::progress::Stage;
use crate::sink::archive::{self, OciArchive};
use crate::tar::blocks;

/// Large writes: the blob arrives in chunks as small as the export's.
const WRITE_BUFFER: usize = 1 << 20;

/// The file that becomes FILE, made before any work so that a directory
/// that cannot take it fails the run at once. Gone when dropped unfinished.
pub struct Output {
    path: PathBuf,
    staged: Staged,
    /// A path that reads it as written so far.
    written: PathBuf,
}

/// What was written.
pub struct Written {
    pub built: Built,
    /// The archive's size in bytes.
    pub size: u64,
}

/// The directory FILE goes in.
pub fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Opens the temporary file beside `path`.
pub fn open(path: &Path) -> Result<Output, (PathBuf, std::io::Error)> {
    let dir = dir_of(path);
    if path.is_dir() {
        return Err((dir, crate::os::files::is_a_directory()));
    }
    let name = path
        .file_name()
        .map_or("out".into(), |n| n.to_string_lossy().into_owned());
    Staged::new(&dir, &name)
        .map(|staged| Output {
            path: path.to_owned(),
            written: staged.path(),
            staged,
        })
        .map_err(|e| (dir, e))
}

/// Writes the image archive of `layer` into `output`, whole and synced;
/// [`finish`] then renames it over FILE (a verify reads it in between).
pub async fn write(
    engine: &Engine<'_>,
    output: Output,
    layer: Encoded,
    config: impl Future<Output = Result<Value, Error>>,
    recipe: &Recipe<'_>,
    tag: &Tag,
) -> Result<(Written, Output), Error> {
    let image = recipe.provenance.reference;
    let failed = |error| write_failed(engine, &output.path, error);
    let file = output.staged.file().try_clone().map_err(failed)?;
    let mut file = BufWriter::with_capacity(WRITE_BUFFER, tokio::fs::File::from_std(file));
    let Encoded { bytes, summary } = layer;
    let blob = async {
        // A placeholder until the blob's digest and size are known.
        file.write_all(&blocks::file_header("blobs/sha256/pending", 0))
            .await?;
        let mut size = 0u64;
        let mut bytes = std::pin::pin!(bytes);
        while let Some(Ok(chunk)) = bytes.next().await {
            file.write_all(&chunk).await?;
            size += chunk.len() as u64;
        }
        Ok::<_, std::io::Error>(size)
    };
    let (written, config) = tokio::join!(blob, config);
    let built = match summary.wait().await {
        Ok(built) => built,
        Err(LayerError::Abandoned(_)) => {
            let error = written
                .err()
                .unwrap_or_else(|| std::io::Error::other("the write stopped early"));
            return Err(failed(error));
        }
        Err(e) => return Err(engine.error(Step::Export(image.to_owned()), Cause::Layer(e))),
    };
    let blob_size = written.map_err(failed)?;
    debug_assert_eq!(blob_size, built.digests.blob_size);
    let archive = named_archive(recipe, &config?, &built, tag);
    let rest = async {
        let tail = [
            &archive.layer_padding()[..],
            &archive.metadata(),
            &blocks::END_OF_ARCHIVE,
        ]
        .concat();
        file.write_all(&tail).await?;
        file.flush().await?;
        let mut file = file.into_inner();
        file.seek(std::io::SeekFrom::Start(0)).await?;
        file.write_all(&archive::layer_header(&built.digests))
            .await?;
        file.flush().await?;
        file.sync_all().await?;
        Ok::<_, std::io::Error>(blocks::BLOCK as u64 + blob_size + tail.len() as u64)
    };
    let size = rest.await.map_err(failed)?;
    Ok((Written { built, size }, output))
}

impl Output {
    /// The archive as written so far.
    pub fn written(&self) -> &Path {
        &self.written
    }
}

/// Renames the written archive over FILE.
pub fn finish(engine: &Engine<'_>, output: Output) -> Result<(), Box<Error>> {
    let Output { path, staged, .. } = output;
    staged
        .persist(&path)
        .map_err(|e| Box::new(write_failed(engine, &path, e)))
}

/// Writes the image archive of `layer` to stdout, spooling the layer first.
pub async fn write_stdout(
    engine: &Engine<'_>,
    layer: Encoded,
    config: impl Future<Output = Result<Value, Error>>,
    recipe: &Recipe<'_>,
    tag: &Tag,
) -> Result<Written, Error> {
    let image = recipe.provenance.reference;
    let (built, spooled, config) = spool_beside(engine, layer, config, image).await?;
    let archive = named_archive(recipe, &config, &built, tag);
    engine.progress.expect_bytes(built.digests.blob_size);
    engine.progress.begin(Stage::Write, "stdout");
    let stdout = Path::new("-");
    let failed = |error| write_failed(engine, stdout, error);
    let blob = spooled
        .read(engine.progress.clone())
        .await
        .map_err(failed)?;
    let mut out = BufWriter::with_capacity(WRITE_BUFFER, tokio::io::stdout());
    let head = archive.head();
    let tail = archive.tail();
    let size = (head.len() + tail.len()) as u64 + built.digests.blob_size;
    let write = async {
        out.write_all(&head).await?;
        let mut blob = std::pin::pin!(blob);
        while let Some(chunk) = blob.next().await {
            out.write_all(&chunk?).await?;
        }
        out.write_all(&tail).await?;
        out.flush().await
    };
    write.await.map_err(failed)?;
    Ok(Written { built, size })
}

/// Writes `body`, a whole archive whose every blob is known, into `output`
/// (for [`finish`] to rename over FILE), or (no `output`) to stdout.
/// Returns its size.
pub async fn write_whole(
    engine: &Engine<'_>,
    output: Option<&Output>,
    body: impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>>,
) -> Result<u64, Error> {
    let path = output
        .as_ref()
        .map_or_else(|| PathBuf::from("-"), |o| o.path.clone());
    let failed = |error| write_failed(engine, &path, error);
    let write = async {
        let mut size = 0u64;
        let mut body = std::pin::pin!(body);
        match output {
            Some(output) => {
                let file = output.staged.file().try_clone()?;
                let mut file =
                    BufWriter::with_capacity(WRITE_BUFFER, tokio::fs::File::from_std(file));
                while let Some(chunk) = body.next().await {
                    let chunk = chunk?;
                    file.write_all(&chunk).await?;
                    size += chunk.len() as u64;
                }
                file.flush().await?;
                file.into_inner().sync_all().await?;
            }
            None => {
                let mut out = BufWriter::with_capacity(WRITE_BUFFER, tokio::io::stdout());
                while let Some(chunk) = body.next().await {
                    let chunk = chunk?;
                    out.write_all(&chunk).await?;
                    size += chunk.len() as u64;
                }
                out.flush().await?;
            }
        }
        Ok::<_, std::io::Error>(size)
    };
    write.await.map_err(failed)
}

fn named_archive(
    recipe: &Recipe<'_>,
    source_config: &Value,
    built: &Built,
    tag: &Tag,
) -> OciArchive {
    let config = recipe.config(source_config, &built.digests.diff_id);
    let bytes = serde_json::to_vec(&config).expect("a JSON value serializes");
    OciArchive::new(bytes, &built.digests, &platform(&config), Some(tag))
}

fn write_failed(engine: &Engine<'_>, path: &Path, error: std::io::Error) -> Error {
    engine.error(
        Step::Write(path.to_owned()),
        Cause::Local {
            dir: dir_of(path),
            error,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_output_goes_if_unfinished() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.tar");
        let output = open(&path).unwrap();
        assert!(output.written().exists());
        drop(output);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let (at, error) = open(dir.path()).err().unwrap();
        assert_eq!(
            error.to_string(),
            crate::os::files::is_a_directory().to_string()
        );
        assert_eq!(at, dir.path().parent().unwrap());
        assert_eq!(dir_of(Path::new("app.tar")), Path::new("."));
    }
}
