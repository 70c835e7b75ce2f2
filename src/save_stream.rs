//! IMAGE's `docker save` stream (`GET /images/{name}/get`) carried to a
//! blocking thread as a `Read`, where [`crate::save_archive`] reads it: for
//! the dry run's analysis, and for the source's config on the containerd
//! store.

use std::io::Read;

use bollard::errors::Error as EngineError;
use bytes::{Buf, Bytes};
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;

/// Chunks in flight between the engine and the reader: bounded, so a slow
/// reader slows the stream instead of filling memory.
const IN_FLIGHT: usize = 16;

/// Feeds `save` to `work` on a blocking thread, calling `on_chunk` with the
/// size of every chunk that arrives. `work` may stop reading early: the
/// stream, and with it the engine's request, is then dropped.
pub async fn read<T: Send + 'static>(
    save: impl Stream<Item = Result<Bytes, EngineError>>,
    on_chunk: impl Fn(u64),
    work: impl FnOnce(ChannelReader) -> T + Send + 'static,
) -> Result<T, EngineError> {
    let (tx, rx) = mpsc::channel::<Bytes>(IN_FLIGHT);
    let worker = tokio::task::spawn_blocking(move || {
        work(ChannelReader {
            rx,
            current: Bytes::new(),
        })
    });
    let mut save = std::pin::pin!(save);
    let mut engine_error = None;
    while let Some(item) = save.next().await {
        match item {
            Ok(chunk) => {
                on_chunk(chunk.len() as u64);
                // A closed channel means the reader has all it needs, or failed.
                if tx.send(chunk).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                engine_error = Some(e);
                break;
            }
        }
    }
    drop(tx);
    let result = worker.await.expect("the reading thread does not panic");
    match engine_error {
        // The reader then saw a cut archive; the engine's error is the cause.
        Some(e) => Err(e),
        None => Ok(result),
    }
}

/// The channel as a `Read`: end of file when the sender is gone.
pub struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}
