//! IMAGE's `docker save` stream (`GET /images/{name}/get`): the one place
//! the plugin asks the engine for it ([`read`]), carried to a blocking
//! thread as a `Read` and walked there ([`walk`]) for what the caller came
//! for: IMAGE's index for the plan ([`index`]), its config as the store
//! keeps it ([`config`]), or its layers for the merge, the dry run and
//! `--verify` ([`layers`]). An archive given with `-i` ([`input`]) is read
//! by the same walk.

pub mod input;
pub mod layers;
mod layout;
pub mod walk;

use std::future::Future;

use bollard::errors::Error as EngineError;
use bollard::Docker;
use serde_json::Value;

use crate::model::source_index::SourceIndex;
use crate::stream;
use walk::{ArchiveError, IndexReadError};

/// The save stream as `work` reads it.
pub type ChannelReader = stream::Reader;

/// Asks the engine for `image`'s save stream and feeds it to `work` on a
/// blocking thread, calling `on_chunk` with the size of every chunk that
/// arrives. `work` may stop reading early: the stream, and with it the
/// engine's request, is then dropped. The request is made before the
/// future is first polled, so the future borrows nothing.
pub fn read<T: Send + 'static>(
    docker: &Docker,
    image: &str,
    on_chunk: impl Fn(u64) + Send + 'static,
    work: impl FnOnce(ChannelReader) -> T + Send + 'static,
) -> impl Future<Output = Result<T, EngineError>> + Send + 'static {
    let save = docker.export_image(image);
    async move {
        let (bytes, fed) = stream::forward(save, on_chunk);
        let reader = bytes.into_reader();
        let result = tokio::task::spawn_blocking(move || work(reader))
            .await
            .expect("the reading thread does not panic");
        // On an engine error the reader saw a cut archive; the engine's error is the cause.
        fed.wait().await.map(|()| result)
    }
}

/// What IMAGE's ID names in its save stream (see [`walk::read_index`]).
pub async fn index(
    docker: &Docker,
    id: &str,
) -> Result<Result<SourceIndex, IndexReadError>, EngineError> {
    let target = id.to_owned();
    read(
        docker,
        id,
        |_| {},
        move |save| walk::read_index(save, &target),
    )
    .await
}

/// The config blob in IMAGE's save stream whose layers are `diff_ids` and
/// whose platform is `os`/`architecture` (see [`walk::find_config`]).
pub fn config(
    docker: &Docker,
    id: &str,
    diff_ids: Vec<String>,
    os: String,
    architecture: String,
) -> impl Future<Output = Result<Result<Option<Value>, ArchiveError>, EngineError>> + Send + 'static
{
    read(
        docker,
        id,
        |_| {},
        move |save| walk::find_config(save, &diff_ids, &os, &architecture),
    )
}

/// The blobs `manifest` names that IMAGE's save stream lacks (see
/// [`walk::missing_blobs`]).
pub async fn missing_blobs(
    docker: &Docker,
    image: &str,
    manifest: &str,
) -> Result<Result<Vec<(String, String)>, ArchiveError>, EngineError> {
    let manifest = manifest.to_owned();
    read(
        docker,
        image,
        |_| {},
        move |save| walk::missing_blobs(save, &manifest),
    )
    .await
}
