//! "Stream through a transform, learn the summary at the end": the one way
//! the pipeline moves bytes between stages. A task (async, or on the
//! blocking pool) produces a [`ByteStream`] and, when it ends, a summary
//! (a layer's digests, a filter's counts) that the caller awaits through
//! [`Summary`] once the stream is drained.
//!
//! - **Flat memory.** The channel between the task and the stream holds one
//!   chunk: the task runs at most one chunk ahead of its consumer, whose
//!   pace (the engine's import, a file) is the backpressure.
//! - **Failures reach both ends.** When the task fails, the stream's last
//!   item is an I/O error, so a consumer such as an import aborts instead of
//!   completing a truncated archive; the typed error is the summary's.
//! - **Nothing outlives its owner.** Dropping the [`Summary`] aborts the
//!   task; dropping the stream makes the task's next send fail with
//!   [`Abandoned`].

use std::io::Read;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use futures_util::Stream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The pipeline's block: uncompressed bytes per gzip member or zstd feed,
/// and per chunk the merge sends. Big enough that a gzip member's header
/// and the matches lost at its edges cost well under 1%, small enough that
/// a few in flight use little memory.
pub const BLOCK_SIZE: usize = 1 << 20;

/// Chunks between a task and its consumer.
const IN_FLIGHT: usize = 1;

/// The consumer of a stream went away before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the consumer of the stream went away")]
pub struct Abandoned;

/// Where a task sends its bytes.
pub struct Out {
    tx: mpsc::Sender<std::io::Result<Bytes>>,
}

impl Out {
    /// Sends one chunk, waiting while the consumer still holds the last one.
    pub async fn send(&self, chunk: Bytes) -> Result<(), Abandoned> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.tx.send(Ok(chunk)).await.map_err(|_| Abandoned)
    }

    /// [`Out::send`] from a blocking thread.
    #[allow(dead_code)] // for blocking sources: the layer merge of issue 11
    pub fn blocking_send(&self, chunk: Bytes) -> Result<(), Abandoned> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.tx.blocking_send(Ok(chunk)).map_err(|_| Abandoned)
    }
}

/// The bytes a task produces; ends when the task does, with an error item
/// if it failed.
pub struct ByteStream {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
}

impl Stream for ByteStream {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl ByteStream {
    /// The stream as a blocking [`Read`], for a reader on the blocking pool
    /// (a tar parser). An error item reads as that error.
    pub fn into_reader(self) -> Reader {
        Reader {
            rx: self.rx,
            current: Bytes::new(),
        }
    }
}

/// A [`ByteStream`] read from a blocking thread: end of file when it ends.
pub struct Reader {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    current: Bytes,
}

impl Read for Reader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk?,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

/// The result of the task behind a [`ByteStream`]; aborts the task when
/// dropped unawaited.
pub struct Summary<T, E> {
    handle: Option<JoinHandle<Result<T, E>>>,
}

impl<T, E> Summary<T, E> {
    /// Waits for the task's end. Await it after the stream has ended (or
    /// been dropped): the task ends only then.
    pub async fn wait(mut self) -> Result<T, E> {
        let handle = self.handle.take().expect("a summary is awaited once");
        match handle.await {
            Ok(result) => result,
            // Never cancelled: only the drop of this summary aborts it.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}

impl<T, E> Drop for Summary<T, E> {
    fn drop(&mut self) {
        if let Some(handle) = &self.handle {
            handle.abort();
        }
    }
}

/// Runs `work` as a task that sends its bytes to the returned stream.
pub fn spawn<T, E, F, Fut>(work: F) -> (ByteStream, Summary<T, E>)
where
    F: FnOnce(Out) -> Fut,
    Fut: std::future::Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let (tx, rx) = mpsc::channel(IN_FLIGHT);
    let fail = tx.clone();
    let work = work(Out { tx });
    let handle = tokio::spawn(async move {
        let result = work.await;
        if let Err(e) = &result {
            // Only a consumer still listening can be told.
            let _ = fail.send(Err(std::io::Error::other(e.to_string()))).await;
        }
        result
    });
    (
        ByteStream { rx },
        Summary {
            handle: Some(handle),
        },
    )
}

/// [`spawn`] for work that blocks (reads a [`Reader`], parses a tar): it
/// runs on the blocking pool and sends with [`Out::blocking_send`]. Its
/// summary's drop cannot stop it mid-call; it stops at its next send.
#[allow(dead_code)] // for blocking sources: the layer merge of issue 11
pub fn spawn_blocking<T, E, F>(work: F) -> (ByteStream, Summary<T, E>)
where
    F: FnOnce(&Out) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let (tx, rx) = mpsc::channel(IN_FLIGHT);
    let out = Out { tx };
    let handle = tokio::task::spawn_blocking(move || {
        let result = work(&out);
        if let Err(e) = &result {
            let _ = out
                .tx
                .blocking_send(Err(std::io::Error::other(e.to_string())));
        }
        result
    });
    (
        ByteStream { rx },
        Summary {
            handle: Some(handle),
        },
    )
}

/// `input` as a [`ByteStream`], calling `on_chunk` with the size of every
/// chunk that arrives: the way to hand an engine's response to a blocking
/// reader ([`ByteStream::into_reader`]). The summary is the input's own
/// error, if it failed; a reader that stops early is no failure.
pub fn forward<S, E>(
    input: S,
    on_chunk: impl Fn(u64) + Send + 'static,
) -> (ByteStream, Summary<(), E>)
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    use futures_util::StreamExt;
    spawn(move |out| async move {
        let mut input = std::pin::pin!(input);
        while let Some(chunk) = input.next().await {
            let chunk = chunk?;
            on_chunk(chunk.len() as u64);
            if out.send(chunk).await.is_err() {
                break; // the reader has all it needs, or failed on its own
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn the_stream_carries_the_bytes_and_the_summary_comes_after() {
        runtime().block_on(async {
            let (bytes, summary) = spawn(|out| async move {
                let mut n = 0;
                for i in 0..100u8 {
                    out.send(Bytes::from(vec![i; 10])).await?;
                    n += 10;
                }
                Ok::<_, Abandoned>(n)
            });
            let got: Vec<u8> = bytes.map(|c| c.unwrap().to_vec()).concat().await;
            assert_eq!(got.len(), 1000);
            assert_eq!(&got[990..], &[99; 10]);
            assert_eq!(summary.wait().await, Ok(1000));
        });
    }

    #[test]
    fn the_task_runs_at_most_one_chunk_ahead() {
        runtime().block_on(async {
            let sent = Arc::new(AtomicUsize::new(0));
            let counter = sent.clone();
            let (mut bytes, _summary) = spawn(move |out| async move {
                for _ in 0..10 {
                    out.send(Bytes::from_static(b"x")).await?;
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                Ok::<_, Abandoned>(())
            });
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            // One in the channel, one waiting to be sent: the second send
            // has not returned.
            assert_eq!(sent.load(Ordering::SeqCst), 1);
            bytes.next().await.unwrap().unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            assert_eq!(sent.load(Ordering::SeqCst), 2);
        });
    }

    #[derive(Debug, PartialEq, thiserror::Error)]
    enum Broke {
        #[error("broke at {0}")]
        At(u32),
        #[error(transparent)]
        Abandoned(#[from] Abandoned),
    }

    #[test]
    fn a_failure_ends_the_stream_with_an_error_and_is_the_summary() {
        runtime().block_on(async {
            let (bytes, summary) = spawn(|out| async move {
                out.send(Bytes::from_static(b"ok")).await?;
                Err::<(), _>(Broke::At(7))
            });
            let items: Vec<_> = bytes.collect().await;
            assert_eq!(items.len(), 2);
            assert_eq!(items[1].as_ref().unwrap_err().to_string(), "broke at 7");
            assert_eq!(summary.wait().await, Err(Broke::At(7)));
        });
    }

    #[test]
    fn a_dropped_stream_abandons_the_task() {
        runtime().block_on(async {
            let (bytes, summary) = spawn(|out| async move {
                loop {
                    out.send(Bytes::from_static(b"more")).await?;
                }
                #[allow(unreachable_code)]
                Ok::<(), Broke>(())
            });
            drop(bytes);
            assert_eq!(summary.wait().await, Err(Broke::Abandoned(Abandoned)));
        });
    }

    #[test]
    fn a_dropped_summary_aborts_the_task() {
        runtime().block_on(async {
            let dropped = Arc::new(AtomicUsize::new(0));
            struct Flag(Arc<AtomicUsize>);
            impl Drop for Flag {
                fn drop(&mut self) {
                    self.0.fetch_add(1, Ordering::SeqCst);
                }
            }
            let flag = Flag(dropped.clone());
            let (_bytes, summary) = spawn(move |_out| async move {
                let _flag = flag;
                std::future::pending::<()>().await;
                Ok::<(), Abandoned>(())
            });
            drop(summary);
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            assert_eq!(dropped.load(Ordering::SeqCst), 1);
        });
    }

    #[test]
    fn forward_feeds_a_blocking_reader_and_keeps_the_input_s_error() {
        runtime().block_on(async {
            let input = futures_util::stream::iter(vec![
                Ok(Bytes::from_static(b"hello ")),
                Ok(Bytes::from_static(b"world")),
                Err("cut"),
            ]);
            let seen = Arc::new(AtomicUsize::new(0));
            let counter = seen.clone();
            let (bytes, summary) = forward(input, move |n| {
                counter.fetch_add(n as usize, Ordering::SeqCst);
            });
            let read = tokio::task::spawn_blocking(move || {
                let mut text = String::new();
                let result = bytes.into_reader().read_to_string(&mut text);
                (text, result.map_err(|e| e.to_string()))
            })
            .await
            .unwrap();
            assert_eq!(read, ("hello world".to_owned(), Err("cut".to_owned())));
            assert_eq!(summary.wait().await, Err("cut"));
            assert_eq!(seen.load(Ordering::SeqCst), 11);
        });
    }

    #[test]
    fn blocking_work_sends_from_its_thread() {
        runtime().block_on(async {
            let (bytes, summary) = spawn_blocking(|out| {
                for word in ["a", "b", "c"] {
                    out.blocking_send(Bytes::from(word))?;
                }
                Ok::<_, Abandoned>(3)
            });
            let got = bytes.map(|c| c.unwrap().to_vec()).concat().await;
            assert_eq!(&got[..], b"abc");
            assert_eq!(summary.wait().await, Ok(3));
        });
    }
}
