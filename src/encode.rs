//! The flattened layer: a source's tar, as it is or compressed (gzip or
//! zstd) on every core, as a [`ByteStream`] for the destination, and the
//! digests the image config (diff ID) and manifest (blob digest and size)
//! need, known at its end ([`encode`]).
//!
//! Compression runs on tokio's blocking pool, never on the runtime's own
//! threads, so the export keeps streaming while the cores compress. gzip is
//! cut into independent blocks, each its own gzip member (as pigz does): a
//! multi-member gzip file is one standard gzip stream to every reader, Go's
//! included. At most one block per core is in flight and blocks leave in
//! the order they came, so memory stays constant whatever the layer's size.
//! zstd does its own multithreading; we only feed it block by block.
//!
//! The bytes depend on the input, the level and the library only, never on
//! the number of cores or how the input arrived: gzip's blocks are a fixed
//! size, and zstd, with at least one worker thread, cuts its jobs by size
//! alone (docs/reproducible.md).

use std::collections::VecDeque;
use std::io::Write;

use bytes::{Bytes, BytesMut};
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

use crate::model::compression::Compression;
use crate::source::filter::FilterStats;
use crate::source::{Source, SourceError};
use crate::stream::{self, Abandoned, ByteStream, Summary};
use crate::tar::clamp::Clamp;

/// Digests of the uploaded layer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Digests {
    /// `sha256:` of the uncompressed tar: the layer's diff ID.
    pub diff_id: String,
    /// `sha256:` of the bytes sent: the layer blob's digest.
    pub blob: String,
    pub blob_size: u64,
    /// How the bytes sent were compressed.
    pub compression: Compression,
}

/// The layer on its way to a destination: its bytes, and what it was once
/// they have all gone (await it after `bytes` has ended or been dropped).
pub struct Encoded {
    pub bytes: ByteStream,
    pub summary: Summary<Built, LayerError>,
}

/// A layer that has streamed whole.
#[derive(Debug, Clone)]
pub struct Built {
    /// What the source left out.
    pub filter: FilterStats,
    pub digests: Digests,
}

/// Why a layer did not stream whole.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Shows the compressor's error: no further source.
    #[error("compressing the layer failed: {0}")]
    Compress(std::io::Error),
    /// The destination stopped reading; its own error says why.
    #[error(transparent)]
    Abandoned(#[from] Abandoned),
}

/// Streams `source` through an [`Encoder`] on its own task, at most one
/// chunk ahead of the destination; with `epoch` (`SOURCE_DATE_EPOCH`), no
/// entry's mtime later than it ([`Clamp`]).
pub fn encode(
    mut source: Source,
    compression: Compression,
    epoch: Option<u64>,
) -> std::io::Result<Encoded> {
    let mut encoder = Encoder::new(compression, workers())?;
    let mut clamp = epoch.map(Clamp::new);
    let (bytes, summary) = stream::spawn(move |out| async move {
        let mut ready = VecDeque::new();
        let mut clamped = VecDeque::new();
        while let Some(tar) = source.next().await? {
            match &mut clamp {
                None => clamped.push_back(tar),
                Some(clamp) => clamp.push(tar, &mut clamped),
            }
            for tar in clamped.drain(..) {
                encoder
                    .encode(tar, &mut ready)
                    .await
                    .map_err(LayerError::Compress)?;
            }
            while let Some(chunk) = ready.pop_front() {
                out.send(chunk).await?;
            }
        }
        let digests = encoder
            .finish(&mut ready)
            .await
            .map_err(LayerError::Compress)?;
        for chunk in ready {
            out.send(chunk).await?;
        }
        Ok(Built {
            filter: source.stats(),
            digests,
        })
    });
    Ok(Encoded { bytes, summary })
}

/// Uncompressed bytes per gzip member / zstd feed ([`stream::BLOCK_SIZE`]).
pub use stream::BLOCK_SIZE;
/// Fast levels: the engine or the network, not the client, should set the pace.
const GZIP_LEVEL: u32 = 1;
const ZSTD_LEVEL: i32 = 1;

/// A compressed member on its way back from the blocking pool.
type Pending = JoinHandle<std::io::Result<Bytes>>;

enum Backend {
    None,
    Gzip {
        /// Oldest first: output order is input order.
        in_flight: VecDeque<Pending>,
        max_in_flight: usize,
    },
    /// `None` only while a block is being fed on the blocking pool, or after an error.
    Zstd(Option<zstd::stream::write::Encoder<'static, Vec<u8>>>),
}

/// Compresses and digests the upload as it streams by.
pub struct Encoder {
    backend: Backend,
    compression: Compression,
    /// Input not yet handed to a compressor (less than a block).
    block: BytesMut,
    diff: Sha256,
    sent: Sent,
}

/// The bytes sent so far, as digest and size; kept apart from the backend
/// so that both can be borrowed at once.
#[derive(Default)]
struct Sent {
    blob: Sha256,
    size: u64,
}

impl Sent {
    /// Queues `bytes` to send, counting them into the blob digest.
    fn push(&mut self, bytes: Bytes, out: &mut VecDeque<Bytes>) {
        if bytes.is_empty() {
            return;
        }
        self.blob.update(&bytes);
        self.size += bytes.len() as u64;
        out.push_back(bytes);
    }
}

/// The number of cores this process may use.
pub fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

impl Encoder {
    /// An encoder using `workers` cores for compression.
    pub fn new(compression: Compression, workers: usize) -> std::io::Result<Encoder> {
        let workers = workers.max(1);
        let backend = match compression {
            Compression::None => Backend::None,
            Compression::Gzip => Backend::Gzip {
                in_flight: VecDeque::with_capacity(workers),
                max_in_flight: workers * 2,
            },
            Compression::Zstd => {
                let mut zstd = zstd::stream::write::Encoder::new(Vec::new(), ZSTD_LEVEL)?;
                // zstd's own worker threads; with 0 it would compress on the caller's.
                zstd.multithread(u32::try_from(workers).unwrap_or(u32::MAX))?;
                Backend::Zstd(Some(zstd))
            }
        };
        Ok(Encoder {
            backend,
            compression,
            block: BytesMut::new(),
            diff: Sha256::new(),
            sent: Sent::default(),
        })
    }

    /// Takes a chunk of tar; appends to `out` what is ready to send (possibly nothing).
    pub async fn encode(&mut self, chunk: Bytes, out: &mut VecDeque<Bytes>) -> std::io::Result<()> {
        self.diff.update(&chunk);
        if matches!(self.backend, Backend::None) {
            self.sent.push(chunk, out);
            return Ok(());
        }
        let mut at = 0;
        while at < chunk.len() {
            // A whole block of the chunk itself goes as it is (the merge
            // sends such chunks): no copy.
            if self.block.is_empty() && chunk.len() - at >= BLOCK_SIZE {
                self.compress(chunk.slice(at..at + BLOCK_SIZE), out).await?;
                at += BLOCK_SIZE;
                continue;
            }
            // One allocation of exactly a block each time, never a growing one.
            self.block.reserve(BLOCK_SIZE - self.block.len());
            let take = (chunk.len() - at).min(BLOCK_SIZE - self.block.len());
            self.block.extend_from_slice(&chunk[at..at + take]);
            at += take;
            if self.block.len() == BLOCK_SIZE {
                let block = self.block.split().freeze();
                self.compress(block, out).await?;
            }
        }
        self.collect_ready(out).await
    }

    /// Ends the stream: appends the last bytes to send to `out`; returns the digests.
    pub async fn finish(mut self, out: &mut VecDeque<Bytes>) -> std::io::Result<Digests> {
        if !self.block.is_empty() {
            let block = self.block.split().freeze();
            self.compress(block, out).await?;
        }
        match &mut self.backend {
            Backend::None => {}
            Backend::Gzip { in_flight, .. } => {
                while let Some(pending) = in_flight.pop_front() {
                    let member = joined(pending.await)?;
                    self.sent.push(member, out);
                }
                if self.sent.size == 0 {
                    // No input at all: still a gzip stream, not zero bytes.
                    self.sent.push(gzip_member(&[])?, out);
                }
            }
            Backend::Zstd(zstd) => {
                let zstd = zstd.take().ok_or_else(broken)?;
                let tail = joined(tokio::task::spawn_blocking(move || zstd.finish()).await)?;
                self.sent.push(Bytes::from(tail), out);
            }
        }
        let hex = |h: Sha256| format!("sha256:{:x}", h.finalize());
        Ok(Digests {
            diff_id: hex(self.diff),
            blob: hex(self.sent.blob),
            blob_size: self.sent.size,
            compression: self.compression,
        })
    }

    /// Hands one block to the compressor, waiting only when it is saturated.
    async fn compress(&mut self, block: Bytes, out: &mut VecDeque<Bytes>) -> std::io::Result<()> {
        match &mut self.backend {
            Backend::None => self.sent.push(block, out),
            Backend::Gzip {
                in_flight,
                max_in_flight,
            } => {
                if in_flight.len() >= *max_in_flight {
                    let oldest = in_flight.pop_front().expect("in flight is not empty");
                    let member = joined(oldest.await)?;
                    self.sent.push(member, out);
                }
                in_flight.push_back(tokio::task::spawn_blocking(move || gzip_member(&block)));
            }
            Backend::Zstd(slot) => {
                let mut zstd = slot.take().ok_or_else(broken)?;
                let (zstd, compressed) = joined(
                    tokio::task::spawn_blocking(move || {
                        zstd.write_all(&block)?;
                        let compressed = std::mem::take(zstd.get_mut());
                        Ok((zstd, compressed))
                    })
                    .await,
                )?;
                *slot = Some(zstd);
                self.sent.push(Bytes::from(compressed), out);
            }
        }
        Ok(())
    }

    /// Sends the gzip members already done, in order, without waiting.
    async fn collect_ready(&mut self, out: &mut VecDeque<Bytes>) -> std::io::Result<()> {
        while let Backend::Gzip { in_flight, .. } = &mut self.backend {
            if !in_flight.front().is_some_and(JoinHandle::is_finished) {
                break;
            }
            let done = in_flight.pop_front().expect("checked above");
            let member = joined(done.await)?;
            self.sent.push(member, out);
        }
        Ok(())
    }
}

/// One block as a complete gzip member: stored, not deflated, where
/// samples of it do not compress ([`incompressible`]), so that random or
/// already compressed data (model weights, archives) costs what a copy
/// does. The choice depends on the bytes alone: the same block gives the
/// same member.
fn gzip_member(block: &[u8]) -> std::io::Result<Bytes> {
    let level = match incompressible(block) {
        true => 0,
        false => GZIP_LEVEL,
    };
    // Room for incompressible data too (deflate adds ~5 bytes per 64 KiB
    // stored), so the output never grows by reallocation.
    let mut gz = GzEncoder::new(
        Vec::with_capacity(block.len() + block.len() / 1024 + 64),
        flate2::Compression::new(level),
    );
    gz.write_all(block)?;
    Ok(Bytes::from(gz.finish()?))
}

/// Bytes per sample, and samples per block, that [`incompressible`] deflates.
const SAMPLE: usize = 8 << 10;
const SAMPLES: usize = 4;

/// Whether `block` would not compress: each of a few samples spread over
/// it deflates (at the level used) to more than 97% of its size. Costs
/// about 3% of deflating the block.
fn incompressible(block: &[u8]) -> bool {
    if block.len() < SAMPLE * SAMPLES {
        return false;
    }
    let step = block.len() / SAMPLES;
    let mut out = Vec::with_capacity(SAMPLE + SAMPLE / 8 + 64);
    (0..SAMPLES).all(|i| {
        let sample = &block[i * step..i * step + SAMPLE];
        let mut deflate = flate2::Compress::new(flate2::Compression::new(GZIP_LEVEL), false);
        out.clear();
        let done = deflate.compress_vec(sample, &mut out, flate2::FlushCompress::Finish);
        matches!(done, Ok(flate2::Status::StreamEnd)) && out.len() * 100 > sample.len() * 97
    })
}

/// The result of a blocking task; a panicked one is an I/O error, not ours to re-raise.
fn joined<T>(result: Result<std::io::Result<T>, tokio::task::JoinError>) -> std::io::Result<T> {
    result.map_err(|e| std::io::Error::other(format!("compression worker failed: {e}")))?
}

fn broken() -> std::io::Error {
    std::io::Error::other("the zstd encoder failed earlier")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap()
    }

    /// Feeds `input` in `chunk`-sized pieces; returns everything sent and the digests.
    fn run(
        compression: Compression,
        workers: usize,
        input: &[u8],
        chunk: usize,
    ) -> (Vec<u8>, Digests) {
        runtime().block_on(async {
            let mut enc = Encoder::new(compression, workers).unwrap();
            let mut out = VecDeque::new();
            for piece in input.chunks(chunk) {
                enc.encode(Bytes::copy_from_slice(piece), &mut out)
                    .await
                    .unwrap();
            }
            let digests = enc.finish(&mut out).await.unwrap();
            (out.into_iter().flatten().collect(), digests)
        })
    }

    /// Compressible but not trivially so, and different in every block, so
    /// that a block out of order changes the output.
    fn sample(len: usize) -> Vec<u8> {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        (0..len)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if i % 3 == 0 {
                    (x >> 40) as u8
                } else {
                    b"layer tar "[i % 10]
                }
            })
            .collect()
    }

    fn sha(data: &[u8]) -> String {
        format!("sha256:{:x}", Sha256::digest(data))
    }

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(data)
            .read_to_end(&mut back)
            .unwrap();
        back
    }

    #[test]
    fn plain_passes_through_with_one_digest() {
        let input = sample(100_000);
        let (sent, d) = run(Compression::None, 2, &input, 1000);
        assert_eq!(sent, input);
        assert_eq!(
            (d.diff_id.as_str(), d.blob.as_str()),
            (sha(&input).as_str(), sha(&input).as_str())
        );
        assert_eq!(d.blob_size, input.len() as u64);
        assert_eq!(d.compression, Compression::None);
    }

    #[test]
    fn parallel_gzip_is_one_stream_of_ordered_members() {
        // 5.5 blocks over 4 workers: the pool fills, waits, and ends on a short block.
        let input = sample(BLOCK_SIZE * 11 / 2);
        let (sent, d) = run(Compression::Gzip, 4, &input, 64 * 1024 + 7);
        assert_eq!(
            gunzip(&sent),
            input,
            "members decompress, in order, to the input"
        );
        assert_eq!(d.diff_id, sha(&input));
        assert_eq!(d.blob, sha(&sent));
        assert_eq!(d.blob_size, sent.len() as u64);
        assert_eq!(d.compression, Compression::Gzip);
        assert!(
            sent.len() < input.len() * 3 / 4,
            "it compresses: {}",
            sent.len()
        );
        // Each block is its own member: as many gzip headers as blocks.
        let members = sent.windows(3).filter(|w| *w == [0x1f, 0x8b, 8]).count();
        assert!(members >= 6, "{members} members");
        // Same bytes whatever the worker count: the order never depends on timing.
        let (one_worker, _) = run(Compression::Gzip, 1, &input, 1 << 20);
        assert_eq!(one_worker, sent);
    }

    #[test]
    fn gzip_reads_with_a_single_member_reader_per_member() {
        // The first member alone is a complete gzip file of the first block.
        let input = sample(BLOCK_SIZE + 10);
        let (sent, _) = run(Compression::Gzip, 2, &input, 4096);
        let mut first = Vec::new();
        flate2::read::GzDecoder::new(&sent[..])
            .read_to_end(&mut first)
            .unwrap();
        assert_eq!(first, input[..BLOCK_SIZE]);
    }

    #[test]
    fn zstd_round_trips_with_digests_of_what_was_sent() {
        let input = sample(BLOCK_SIZE * 3 + 123);
        let (sent, d) = run(Compression::Zstd, 2, &input, 100_000);
        assert_eq!(zstd::stream::decode_all(&sent[..]).unwrap(), input);
        assert_eq!(d.diff_id, sha(&input));
        assert_eq!(
            (d.blob.clone(), d.blob_size),
            (sha(&sent), sent.len() as u64)
        );
        assert_eq!(d.compression, Compression::Zstd);
    }

    #[test]
    fn the_same_bytes_whatever_the_number_of_cores() {
        // gzip: fixed blocks, one member each, in order; zstd: its worker
        // threads cut jobs by size, not by how many there are (libzstd
        // promises the same frame for any nbWorkers >= 1). Fed in any pieces.
        let input = sample(BLOCK_SIZE * 9 + 4321);
        for compression in [Compression::Gzip, Compression::Zstd] {
            let (one, _) = run(compression, 1, &input, BLOCK_SIZE);
            for (workers, chunk) in [(2, 65_536 + 3), (3, 4096), (8, 1 << 22)] {
                let (many, _) = run(compression, workers, &input, chunk);
                assert!(one == many, "{compression}: {workers} workers differ");
            }
        }
    }

    #[test]
    fn empty_input_is_a_valid_empty_stream() {
        for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let (sent, d) = run(compression, 2, &[], 1);
            assert_eq!(d.diff_id, sha(&[]), "{compression}");
            assert_eq!(d.blob, sha(&sent), "{compression}");
        }
        let (sent, _) = run(Compression::Zstd, 2, &[], 1);
        assert!(zstd::stream::decode_all(&sent[..]).unwrap().is_empty());
        let (sent, _) = run(Compression::Gzip, 2, &[], 1);
        assert!(!sent.is_empty() && gunzip(&sent).is_empty());
    }

    #[test]
    fn blocks_that_do_not_compress_are_stored_and_others_deflated() {
        // xorshift: bytes no deflate can shorten.
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let noise: Vec<u8> = (0..BLOCK_SIZE)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let text: Vec<u8> = b"a line of a config file, repeated\n"
            .iter()
            .copied()
            .cycle()
            .take(BLOCK_SIZE)
            .collect();
        assert!(incompressible(&noise));
        assert!(!incompressible(&text));
        // Half noise, half text: deflated, as it pays.
        let mixed = [&noise[..BLOCK_SIZE / 2], &text[..BLOCK_SIZE / 2]].concat();
        assert!(!incompressible(&mixed));
        let stored = gzip_member(&noise).unwrap();
        assert!(stored.len() > noise.len(), "stored: {}", stored.len());
        assert!(gzip_member(&text).unwrap().len() < text.len() / 10);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&stored[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, noise);
    }
}
