//! `--dry-run`: IMAGE's layers as the engine streams them for `docker save`
//! (`GET /images/{name}/get`), fed through a bounded channel into
//! [`savings::analyze`] on a blocking thread. Nothing touches the disk and
//! nothing is created on the engine.

use bollard::errors::Error as EngineError;
use bytes::{Buf, Bytes};
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;

use crate::report::Progress;
use crate::savings::{self, Savings, SavingsError};

/// Chunks in flight between the engine and the analysis: bounded, so a slow
/// analysis slows the read instead of filling memory.
const IN_FLIGHT: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum DryRunError {
    #[error(transparent)]
    Engine(EngineError),
    #[error(transparent)]
    Savings(SavingsError),
}

/// Reads the whole save stream and returns what flattening would gain.
pub async fn analyze(
    save: impl Stream<Item = Result<Bytes, EngineError>>,
    progress: &dyn Progress,
) -> Result<Savings, DryRunError> {
    let (tx, rx) = mpsc::channel::<Bytes>(IN_FLIGHT);
    let worker = tokio::task::spawn_blocking(move || {
        savings::analyze(ChannelReader {
            rx,
            current: Bytes::new(),
        })
    });
    let mut save = std::pin::pin!(save);
    let mut engine_error = None;
    while let Some(item) = save.next().await {
        match item {
            Ok(chunk) => {
                progress.bytes(chunk.len() as u64);
                // A closed channel means the analysis has all it needs, or failed.
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
    let analysis = worker.await.expect("the analysis thread does not panic");
    match engine_error {
        // The analysis then saw a cut archive; the engine's error is the cause.
        Some(e) => Err(DryRunError::Engine(e)),
        None => analysis.map_err(DryRunError::Savings),
    }
}

/// The channel as a `Read`: end of file when the sender is gone.
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl std::io::Read for ChannelReader {
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
