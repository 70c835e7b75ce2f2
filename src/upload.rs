//! What goes up to the image import: the filtered tar, gzip-compressed when
//! the engine would otherwise compress it itself, and the digests the image
//! config (diff ID) and manifest (blob digest and size) need.

use std::io::Write;

use bytes::Bytes;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

/// How the layer travels to the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
}

/// Digests of the uploaded layer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Digests {
    /// `sha256:` of the uncompressed tar: the layer's diff ID.
    pub diff_id: String,
    /// `sha256:` of the bytes sent: the layer blob's digest.
    pub blob: String,
    pub blob_size: u64,
    pub compressed: bool,
}

/// Compresses and digests the upload as it streams by.
pub struct Encoder {
    gzip: Option<GzEncoder<Vec<u8>>>,
    diff: Sha256,
    blob: Sha256,
    blob_size: u64,
}

/// A fast level: the engine or the network, not the client, should set the pace.
const GZIP_LEVEL: u32 = 1;

impl Encoder {
    pub fn new(compression: Compression) -> Encoder {
        let gzip = (compression == Compression::Gzip)
            .then(|| GzEncoder::new(Vec::new(), flate2::Compression::new(GZIP_LEVEL)));
        Encoder {
            gzip,
            diff: Sha256::new(),
            blob: Sha256::new(),
            blob_size: 0,
        }
    }

    /// Takes a chunk of tar; returns what to send now (possibly nothing).
    pub fn encode(&mut self, chunk: Bytes) -> std::io::Result<Bytes> {
        self.diff.update(&chunk);
        let out = match &mut self.gzip {
            None => chunk,
            Some(gz) => {
                gz.write_all(&chunk)?;
                Bytes::from(std::mem::take(gz.get_mut()))
            }
        };
        self.sent(&out);
        Ok(out)
    }

    /// Ends the stream: the last bytes to send, and the digests.
    pub fn finish(mut self) -> std::io::Result<(Bytes, Digests)> {
        let compressed = self.gzip.is_some();
        let tail = match self.gzip.take() {
            None => Bytes::new(),
            Some(gz) => Bytes::from(gz.finish()?),
        };
        self.sent(&tail);
        let hex = |h: Sha256| format!("sha256:{:x}", h.finalize());
        let digests = Digests {
            diff_id: hex(self.diff),
            blob: hex(self.blob),
            blob_size: self.blob_size,
            compressed,
        };
        Ok((tail, digests))
    }

    fn sent(&mut self, bytes: &[u8]) {
        self.blob.update(bytes);
        self.blob_size += bytes.len() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn run(compression: Compression, input: &[u8]) -> (Vec<u8>, Digests) {
        let mut enc = Encoder::new(compression);
        let mut out = Vec::new();
        for chunk in input.chunks(1000) {
            out.extend_from_slice(&enc.encode(Bytes::copy_from_slice(chunk)).unwrap());
        }
        let (tail, digests) = enc.finish().unwrap();
        out.extend_from_slice(&tail);
        (out, digests)
    }

    #[test]
    fn digests_describe_what_was_sent() {
        let input: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let diff = format!("sha256:{:x}", Sha256::digest(&input));
        let (plain, d) = run(Compression::None, &input);
        assert_eq!(plain, input);
        assert_eq!(
            (d.diff_id.as_str(), d.blob.as_str()),
            (diff.as_str(), diff.as_str())
        );
        let (gz, d) = run(Compression::Gzip, &input);
        assert_eq!(d.diff_id, diff);
        assert_eq!(d.blob, format!("sha256:{:x}", Sha256::digest(&gz)));
        assert_eq!(d.blob_size, gz.len() as u64);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, input, "a standard gzip stream");
    }
}
