//! A layer held in an unnamed temporary file (in `TMPDIR`) until its
//! digests are known: a tar member needs its size and name before its
//! bytes, and a destination that cannot go back (a load, stdout) writes the
//! blob's header first. The file vanishes with the process whatever happens.

use bytes::Bytes;
use futures_util::{stream, Stream, StreamExt};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::encode::BLOCK_SIZE;
use crate::progress::Progress;
use crate::stream::ByteStream;

/// The layer's bytes, on disk.
pub struct Spool {
    file: tokio::fs::File,
    pub size: u64,
}

/// Where the spool goes.
pub fn dir() -> std::path::PathBuf {
    std::env::temp_dir()
}

/// Writes `bytes` to a new spool. Stops at an error item: the layer's
/// summary says why, and is the error to report.
pub async fn fill(bytes: ByteStream) -> std::io::Result<Spool> {
    let mut file = tokio::fs::File::from_std(tempfile::tempfile()?);
    let mut size = 0;
    let mut bytes = std::pin::pin!(bytes);
    while let Some(Ok(chunk)) = bytes.next().await {
        file.write_all(&chunk).await?;
        size += chunk.len() as u64;
    }
    file.flush().await?;
    Ok(Spool { file, size })
}

impl Spool {
    /// The bytes, read back from the start in blocks, counted into `progress`.
    pub async fn read(
        mut self,
        progress: Arc<dyn Progress>,
    ) -> std::io::Result<impl Stream<Item = std::io::Result<Bytes>> + Send + 'static> {
        self.file.seek(std::io::SeekFrom::Start(0)).await?;
        Ok(stream::try_unfold(
            (self.file, self.size),
            move |(mut file, left)| {
                let progress = progress.clone();
                async move {
                    if left == 0 {
                        return Ok(None);
                    }
                    let mut block = vec![0; left.min(BLOCK_SIZE as u64) as usize];
                    file.read_exact(&mut block).await?;
                    let n = block.len() as u64;
                    progress.bytes(n);
                    Ok(Some((Bytes::from(block), (file, left - n))))
                }
            },
        ))
    }
}
