//! IMAGE's `docker save` stream (`GET /images/{name}/get`) carried to a
//! blocking thread as a `Read`, where [`crate::saved::walk`] reads it: for
//! the dry run's analysis, the source's config on the containerd store, and
//! the layer merge.

pub mod walk;

use bollard::errors::Error as EngineError;
use bytes::Bytes;
use futures_util::Stream;

use crate::stream;

/// The save stream as `work` reads it.
pub type ChannelReader = stream::Reader;

/// Feeds `save` to `work` on a blocking thread, calling `on_chunk` with the
/// size of every chunk that arrives. `work` may stop reading early: the
/// stream, and with it the engine's request, is then dropped.
pub async fn read<T: Send + 'static>(
    save: impl Stream<Item = Result<Bytes, EngineError>> + Send + 'static,
    on_chunk: impl Fn(u64) + Send + 'static,
    work: impl FnOnce(ChannelReader) -> T + Send + 'static,
) -> Result<T, EngineError> {
    let (bytes, fed) = stream::forward(save, on_chunk);
    let reader = bytes.into_reader();
    let result = tokio::task::spawn_blocking(move || work(reader))
        .await
        .expect("the reading thread does not panic");
    // On an engine error the reader saw a cut archive; the engine's error is the cause.
    fed.wait().await.map(|()| result)
}
