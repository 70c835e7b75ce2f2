//! Tar entries read one at a time from a stream, strictly.
//!
//! Both the outer archive of `docker save` and the layer tars inside it are
//! read through [`TarReader`]: every header's checksum is checked, PAX
//! (`x`) and GNU long-name (`L`, `K`) records are applied to the entry they
//! precede, and each entry knows the byte range it came from, so that a
//! merge can copy it again verbatim from a spooled layer. Only the current
//! entry is held, never a list of them.

use std::io::{self, Read};

use super::blocks::{self, padded};
use super::header::{self, parse_pax, trim_nul, ustar_path};

pub const BLOCK: u64 = blocks::BLOCK as u64;
/// Extension records larger than this are not a real archive; refusing them
/// bounds what one entry holds.
const MAX_EXTENSION: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum TarError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("not a valid tar archive at byte {offset}: {why}")]
    Corrupt { offset: u64, why: String },
    #[error("the archive breaks off at byte {offset}, before its end")]
    Truncated { offset: u64 },
}

/// How the end of the archive must look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// A zero block, then nothing but zeros: what the engine's `docker save`
    /// writes when it succeeds. A stream that stops without it was cut, and
    /// text after it is an error the engine appended.
    Strict,
    /// Also the end of the input at an entry boundary, as the engine's own
    /// reader (Go's `archive/tar`) takes it: for layer tars, whose diff ID
    /// proves them whole anyway.
    Lenient,
}

/// One entry, its extension records applied.
#[derive(Debug, Clone)]
pub struct Entry {
    pub typeflag: u8,
    /// As written (not normalized): PAX `path`, GNU long name, or
    /// ustar prefix + name.
    pub path: Vec<u8>,
    /// Hardlink or symlink target, likewise.
    pub link: Vec<u8>,
    /// Bytes of data (PAX `size` wins over the header's).
    pub size: u64,
    /// Offset of the entry's first block, its extension headers included.
    pub start: u64,
    /// Offset of its data.
    pub data: u64,
    /// The entry's own header block.
    pub header: [u8; 512],
    /// Its PAX records, in order.
    pub pax: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Entry {
    pub fn is_dir(&self) -> bool {
        self.typeflag == b'5'
    }

    /// Device numbers, raw header fields (only meaningful for devices).
    pub fn device(&self) -> (&[u8], &[u8]) {
        (&self.header[329..337], &self.header[337..345])
    }
}

/// Reads entries from a stream; skips whatever data of the previous entry
/// the caller did not read.
pub struct TarReader<R> {
    inner: R,
    end: End,
    pos: u64,
    /// Data (and padding) of the current entry not yet consumed.
    remaining: u64,
    padding: u64,
    done: bool,
}

impl<R: Read> TarReader<R> {
    pub fn new(inner: R, end: End) -> TarReader<R> {
        TarReader {
            inner,
            end,
            pos: 0,
            remaining: 0,
            padding: 0,
            done: false,
        }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The next entry, or `None` at the end of the archive.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, TarError> {
        if self.done {
            return Ok(None);
        }
        let rest = self.remaining + self.padding;
        self.skip(rest)?;
        self.remaining = 0;
        self.padding = 0;
        let mut start = self.pos;
        let mut pax: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut long_name = None;
        let mut long_link = None;
        loop {
            let at = self.pos;
            let Some(block) = self.block(at == start && long_name.is_none() && pax.is_empty())?
            else {
                return Ok(None);
            };
            if !header::checksum_ok(&block) {
                return Err(garbage(at, &block).with_prefix("bad header checksum"));
            }
            let typeflag = header::typeflag(&block);
            let size = header::size(&block).ok_or_else(|| corrupt(at, "bad size field"))?;
            match typeflag {
                b'x' | b'g' | b'L' | b'K' => {
                    if size > MAX_EXTENSION {
                        return Err(corrupt(at, "extension header too large"));
                    }
                    let mut data = vec![0; size as usize];
                    self.exact(&mut data)?;
                    self.skip(padded(size) - size)?;
                    match typeflag {
                        b'x' => pax.extend(
                            parse_pax(&data).ok_or_else(|| corrupt(at, "bad PAX records"))?,
                        ),
                        // A global header describes the archive, not the next entry.
                        b'g' => {}
                        b'L' => long_name = Some(trim_nul(data)),
                        _ => long_link = Some(trim_nul(data)),
                    }
                    if typeflag == b'g'
                        && pax.is_empty()
                        && long_name.is_none()
                        && long_link.is_none()
                    {
                        start = self.pos;
                    }
                }
                _ => {
                    let find = |key: &[u8]| {
                        pax.iter()
                            .rev()
                            .find(|(k, _)| k == key)
                            .map(|(_, v)| v.clone())
                    };
                    let size = match find(b"size") {
                        Some(v) => std::str::from_utf8(&v)
                            .ok()
                            .and_then(|v| v.parse().ok())
                            .ok_or_else(|| corrupt(at, "bad PAX size"))?,
                        None => size,
                    };
                    // Links, directories and devices carry no data, whatever the size field says.
                    let size = if matches!(typeflag, b'1' | b'2' | b'3' | b'4' | b'5' | b'6') {
                        0
                    } else {
                        size
                    };
                    let path = find(b"path")
                        .or(long_name)
                        .unwrap_or_else(|| ustar_path(&block));
                    let link = find(b"linkpath")
                        .or(long_link)
                        .unwrap_or_else(|| header::link(&block).to_vec());
                    self.remaining = size;
                    self.padding = padded(size) - size;
                    return Ok(Some(Entry {
                        typeflag,
                        path,
                        link,
                        size,
                        start,
                        data: self.pos,
                        header: block,
                        pax,
                    }));
                }
            }
        }
    }

    /// The current entry's data, `size` bytes, then end of file.
    pub fn data(&mut self) -> Data<'_, R> {
        Data { tar: self }
    }

    /// A header block, or `None` at the end of the archive (only where an
    /// entry may start: `boundary`).
    fn block(&mut self, boundary: bool) -> Result<Option<[u8; 512]>, TarError> {
        let at = self.pos;
        let mut block = [0u8; 512];
        let n = self.fill(&mut block)?;
        if n == 0 && boundary && self.end == End::Lenient {
            self.done = true;
            return Ok(None);
        }
        if n < block.len() {
            if n > 0 && block[0] == b'{' {
                return Err(garbage(at, &block[..n]));
            }
            return Err(TarError::Truncated {
                offset: at + n as u64,
            });
        }
        if block.iter().any(|&b| b != 0) {
            return Ok(Some(block));
        }
        if !boundary {
            return Err(corrupt(at, "a zero block inside an entry's headers"));
        }
        // The end: Go's reader wants the second zero block (or the end of
        // the input); the engine writes both, then nothing.
        self.done = true;
        let second = self.fill(&mut block)?;
        if block[..second].iter().any(|&b| b != 0) {
            return Err(garbage(at + 512, &block[..second]));
        }
        if self.end == End::Strict {
            let mut buf = [0u8; 8192];
            loop {
                let at = self.pos;
                let n = self.fill(&mut buf)?;
                if n == 0 {
                    break;
                }
                if let Some(i) = buf[..n].iter().position(|&b| b != 0) {
                    return Err(garbage(at + i as u64, &buf[i..n]));
                }
            }
        }
        Ok(None)
    }

    /// Reads as much of `buf` as the input has.
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            match self.inner.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.pos += n as u64;
        Ok(n)
    }

    fn exact(&mut self, buf: &mut [u8]) -> Result<(), TarError> {
        let at = self.pos;
        let n = self.fill(buf)?;
        if n < buf.len() {
            return Err(TarError::Truncated {
                offset: at + n as u64,
            });
        }
        Ok(())
    }

    fn skip(&mut self, mut n: u64) -> Result<(), TarError> {
        let mut buf = [0u8; 8192];
        while n > 0 {
            let want = n.min(buf.len() as u64) as usize;
            self.exact(&mut buf[..want])?;
            n -= want as u64;
        }
        Ok(())
    }
}

/// The data of the current entry.
pub struct Data<'a, R> {
    tar: &'a mut TarReader<R>,
}

impl<R: Read> Read for Data<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (buf.len() as u64).min(self.tar.remaining) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.tar.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the archive breaks off at byte {}, inside an entry",
                    self.tar.pos
                ),
            ));
        }
        self.tar.pos += n as u64;
        self.tar.remaining -= n as u64;
        Ok(n)
    }
}

fn corrupt(offset: u64, why: &str) -> TarError {
    TarError::Corrupt {
        offset,
        why: why.to_owned(),
    }
}

/// Bytes where the archive should have ended or a header should be: often
/// the engine's own error, appended as JSON, worth showing.
fn garbage(offset: u64, bytes: &[u8]) -> TarError {
    let text: String = String::from_utf8_lossy(bytes)
        .chars()
        .take_while(|&c| c != '\0')
        .take(300)
        .collect();
    let why = if !text.is_empty() && text.chars().all(|c| !c.is_control() || c == '\n') {
        format!("found text instead: {}", text.trim())
    } else {
        "found data after the end of the archive".to_owned()
    };
    TarError::Corrupt { offset, why }
}

impl TarError {
    fn with_prefix(self, prefix: &str) -> TarError {
        match self {
            TarError::Corrupt { offset, why } if why.starts_with("found text") => {
                TarError::Corrupt {
                    offset,
                    why: format!("{prefix}; {why}"),
                }
            }
            TarError::Corrupt { offset, .. } => corrupt(offset, prefix),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tar::blocks::{write_header, NewHeader};

    fn archive(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    /// Each entry's path and data.
    type Entries = Vec<(Vec<u8>, Vec<u8>)>;

    fn read_all(bytes: &[u8], end: End) -> Result<Entries, TarError> {
        let mut r = TarReader::new(bytes, end);
        let mut out = Vec::new();
        while let Some(e) = r.next_entry()? {
            let mut data = Vec::new();
            r.data().read_to_end(&mut data)?;
            out.push((e.path, data));
        }
        Ok(out)
    }

    #[test]
    fn reads_entries_with_long_names_and_pax_records() {
        let long = "d/".repeat(80) + "file";
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        b.append_data(&mut h, &long, &b"abc"[..]).unwrap();
        b.append_pax_extensions([("SCHILY.xattr.user.a", &b"x\ny"[..])])
            .unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(0);
        b.append_data(&mut h, "p", &b""[..]).unwrap();
        let bytes = b.into_inner().unwrap();
        let mut r = TarReader::new(&bytes[..], End::Strict);
        let e = r.next_entry().unwrap().unwrap();
        assert_eq!(e.path, long.as_bytes());
        assert_eq!((e.size, e.start), (3, 0));
        let e = r.next_entry().unwrap().unwrap();
        assert_eq!(
            e.pax,
            vec![(b"SCHILY.xattr.user.a".to_vec(), b"x\ny".to_vec())]
        );
        assert_eq!(&bytes[e.start as usize..][..512][156], &b'x');
        assert!(r.next_entry().unwrap().is_none());
    }

    #[test]
    fn a_cut_or_garbled_archive_fails() {
        let good = archive(&[("a", b"hello"), ("b", b"world")]);
        assert_eq!(read_all(&good, End::Strict).unwrap().len(), 2);
        // Cut inside data, at an entry boundary, and before the end blocks.
        for cut in [600, 1024, good.len() - 1024] {
            let err = read_all(&good[..cut], End::Strict).unwrap_err();
            assert!(
                matches!(err, TarError::Truncated { .. } | TarError::Io(_)),
                "cut at {cut}: {err}"
            );
        }
        // Lenient: the end of input at a boundary ends the archive.
        assert_eq!(read_all(&good[..1024], End::Lenient).unwrap().len(), 1);
        // An engine error appended where a header should be, or after the end.
        let mut garbled = good[..1024].to_vec();
        garbled.extend_from_slice(br#"{"message":"open /x: no such file or directory"}"#);
        garbled.resize(2048, 0);
        let err = read_all(&garbled, End::Lenient).unwrap_err().to_string();
        assert!(
            err.contains("bad header checksum") && err.contains("no such file"),
            "{err}"
        );
        let mut trailing = good.clone();
        trailing.extend_from_slice(br#"{"message":"boom"}"#);
        let err = read_all(&trailing, End::Strict).unwrap_err().to_string();
        assert!(err.contains("boom"), "{err}");
    }

    #[test]
    fn written_headers_read_back() {
        let mut out = Vec::new();
        let long = "x".repeat(150);
        let pax = vec![(b"SCHILY.xattr.user.k".to_vec(), b"v\n".to_vec())];
        write_header(
            &mut out,
            &NewHeader {
                typeflag: b'1',
                path: long.as_bytes(),
                link: "é".as_bytes(),
                size: 0,
                meta: None,
                device: None,
                pax: &pax,
            },
        )
        .unwrap();
        out.resize(out.len() + 1024, 0);
        let mut r = TarReader::new(&out[..], End::Strict);
        let e = r.next_entry().unwrap().unwrap();
        assert_eq!(e.path, long.as_bytes());
        assert_eq!(e.link, "é".as_bytes());
        assert_eq!(e.typeflag, b'1');
        assert!(e.pax.contains(&pax[0]));
    }
}
