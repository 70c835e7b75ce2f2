//! `SOURCE_DATE_EPOCH` on a layer's tar as it streams by: every entry's
//! modification time later than the epoch becomes the epoch, as BuildKit's
//! `rewrite-timestamp` does, and nothing else changes. A header's `mtime`
//! field is rewritten (and its checksum); a PAX `mtime` record is rewritten
//! in place, to the same length (the seconds zero-padded, the fraction
//! zeroed), so no size moves. Data passes through as the slices it came in.
//!
//! The tar is the one our sources write (the filtered export, the merge):
//! headers, PAX and GNU long-name entries, data padded to whole blocks.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::blocks::{padded, BLOCK};
use super::header;

/// Rewrites a tar stream's mtimes to at most `epoch`.
pub struct Clamp {
    epoch: u64,
    state: State,
    /// The header block (and a PAX entry's data) being gathered.
    held: BytesMut,
    /// The data size the next header has, from a PAX `size` record.
    pax_size: Option<u64>,
}

enum State {
    /// Gathering a header block.
    Header,
    /// Gathering a PAX header's data (padded) after its header block.
    Pax { len: usize },
    /// Passing this many bytes of data and padding through.
    Data { left: u64 },
}

impl Clamp {
    pub fn new(epoch: u64) -> Clamp {
        Clamp {
            epoch,
            state: State::Header,
            held: BytesMut::new(),
            pax_size: None,
        }
    }

    /// Takes the next piece of the tar; appends to `out` what is ready.
    pub fn push(&mut self, mut chunk: Bytes, out: &mut VecDeque<Bytes>) {
        while !chunk.is_empty() {
            match self.state {
                State::Data { left } => {
                    let take = (left.min(chunk.len() as u64)) as usize;
                    out.push_back(chunk.split_to(take));
                    self.state = match left - take as u64 {
                        0 => State::Header,
                        left => State::Data { left },
                    };
                }
                State::Header => {
                    let take = (BLOCK - self.held.len()).min(chunk.len());
                    self.held.extend_from_slice(&chunk.split_to(take));
                    if self.held.len() == BLOCK {
                        self.header(out);
                    }
                }
                State::Pax { len } => {
                    let take = (len - self.held.len()).min(chunk.len());
                    self.held.extend_from_slice(&chunk.split_to(take));
                    if self.held.len() == len {
                        let (head, data) = self.held.split_at_mut(BLOCK);
                        let size = header::size(block(head)).unwrap_or(0) as usize;
                        let end = size.min(data.len());
                        let records = &mut data[..end];
                        let global = header::typeflag(block(head)) == b'g';
                        let size = clamp_pax(records, self.epoch);
                        if !global {
                            self.pax_size = size;
                        }
                        out.push_back(self.held.split().freeze());
                        self.state = State::Header;
                    }
                }
            }
        }
    }

    /// A whole header block is held: rewrites it and passes it on.
    fn header(&mut self, out: &mut VecDeque<Bytes>) {
        let block: &mut [u8; BLOCK] = (&mut self.held[..]).try_into().expect("one block");
        if block.iter().all(|&b| b == 0) {
            // The end of the archive, or padding after it.
            out.push_back(self.held.split().freeze());
            return;
        }
        let kind = header::typeflag(block);
        let size = header::size(block).unwrap_or(0);
        clamp_field(block, self.epoch);
        if matches!(kind, b'x' | b'g') {
            self.state = State::Pax {
                len: BLOCK + padded(size) as usize,
            };
            return;
        }
        let size = match kind {
            // Their size is their link or directory's, not data that follows.
            b'1' | b'2' | b'3' | b'4' | b'5' | b'6' => 0,
            _ => self.pax_size.unwrap_or(size),
        };
        self.pax_size = None;
        out.push_back(self.held.split().freeze());
        if size > 0 {
            self.state = State::Data { left: padded(size) };
        }
    }
}

fn block(bytes: &mut [u8]) -> &mut [u8; BLOCK] {
    bytes.try_into().expect("one block")
}

/// The header's `mtime`, at most `epoch`; its checksum anew if it changed.
fn clamp_field(block: &mut [u8; BLOCK], epoch: u64) {
    match header::number(&block[136..148]) {
        Some(mtime) if mtime > epoch => {}
        _ => return,
    }
    let field = &mut block[136..148];
    if epoch < 1 << 33 {
        field[..11].copy_from_slice(format!("{epoch:011o}").as_bytes());
        field[11] = 0;
    } else {
        field.fill(0);
        field[4..].copy_from_slice(&epoch.to_be_bytes());
        field[0] |= 0x80;
    }
    let sum = header::checksum(block);
    block[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    block[155] = b' ';
}

/// Rewrites the `mtime` record of PAX `records` in place to at most
/// `epoch`; returns its `size` record.
fn clamp_pax(records: &mut [u8], epoch: u64) -> Option<u64> {
    let mut size = None;
    let mut rest = records;
    while let Some(space) = rest.iter().position(|&b| b == b' ') {
        let len: usize = std::str::from_utf8(&rest[..space]).ok()?.parse().ok()?;
        if len > rest.len() || len <= space + 1 {
            return size;
        }
        let (record, tail) = rest.split_at_mut(len);
        let body = &mut record[space + 1..len - 1];
        if let Some(value) = body.strip_prefix(b"size=") {
            size = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
        } else if body.starts_with(b"mtime=") {
            clamp_time(&mut body[6..], epoch);
        }
        rest = tail;
    }
    size
}

/// A PAX time (`seconds[.fraction]`) later than `epoch` becomes `epoch`,
/// written in the same number of bytes.
fn clamp_time(value: &mut [u8], epoch: u64) {
    let dot = value.iter().position(|&b| b == b'.').unwrap_or(value.len());
    let Some(seconds) = std::str::from_utf8(&value[..dot])
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    else {
        return;
    };
    let fraction = value[dot..].iter().skip(1).any(|&b| b != b'0');
    let later = seconds > epoch || (seconds == epoch && fraction);
    let digits = epoch.to_string();
    if !later || digits.len() > dot {
        return;
    }
    let padded = format!("{epoch:0dot$}");
    value[..dot].copy_from_slice(padded.as_bytes());
    value[dot..].iter_mut().skip(1).for_each(|b| *b = b'0');
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPOCH: u64 = 1_600_000_000;

    /// A tar of a directory, a file with PAX times and data, a symlink
    /// and a hardlink, older and newer than the epoch, by the tar crate.
    fn sample() -> Vec<u8> {
        fn add(
            b: &mut tar::Builder<Vec<u8>>,
            name: &str,
            kind: tar::EntryType,
            mtime: u64,
            data: &[u8],
        ) {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(mtime);
            h.set_cksum();
            if kind.is_symlink() || kind.is_hard_link() {
                b.append_link(&mut h, name, "old").unwrap();
            } else {
                b.append_data(&mut h, name, data).unwrap();
            }
        }
        let mut b = tar::Builder::new(Vec::new());
        add(
            &mut b,
            "old",
            tar::EntryType::Regular,
            EPOCH - 5,
            b"kept as it is",
        );
        add(&mut b, "dir/", tar::EntryType::Directory, EPOCH + 5, b"");
        add(&mut b, "link", tar::EntryType::Symlink, EPOCH + 100, b"");
        add(&mut b, "hard", tar::EntryType::Link, EPOCH + 100, b"");
        b.append_pax_extensions([("mtime", &b"1700000000.123456789"[..]), ("size", b"600")])
            .unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(600);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append_data(&mut h, "big", &[7u8; 600][..]).unwrap();
        add(
            &mut b,
            "after",
            tar::EntryType::Regular,
            EPOCH + 1,
            &[1; 1000],
        );
        b.into_inner().unwrap()
    }

    /// Every entry: name, mtime (seconds, and the PAX one when present), data.
    fn read(tar_bytes: &[u8]) -> Vec<(String, u64, Option<String>, Vec<u8>)> {
        let mut a = tar::Archive::new(tar_bytes);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let pax = e.pax_extensions().unwrap().and_then(|p| {
                    p.map(Result::unwrap)
                        .find(|x| x.key() == Ok("mtime"))
                        .map(|x| x.value().unwrap().to_owned())
                });
                assert!(e.header().cksum().is_ok());
                let name = e.path().unwrap().display().to_string();
                let mtime = e.header().mtime().unwrap();
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut data).unwrap();
                (name, mtime, pax, data)
            })
            .collect()
    }

    fn clamped(input: &[u8], piece: usize) -> Vec<u8> {
        let mut clamp = Clamp::new(EPOCH);
        let mut out = VecDeque::new();
        for p in input.chunks(piece) {
            clamp.push(Bytes::copy_from_slice(p), &mut out);
        }
        out.into_iter().flatten().collect()
    }

    #[test]
    fn newer_mtimes_become_the_epoch_and_nothing_else_moves() {
        let input = sample();
        let output = clamped(&input, 1 << 20);
        assert_eq!(output.len(), input.len());
        let (before, after) = (read(&input), read(&output));
        assert_eq!(before.len(), after.len());
        for (b, a) in before.iter().zip(&after) {
            assert_eq!((&a.0, &a.3), (&b.0, &b.3), "name and data unchanged");
            assert_eq!(a.1, b.1.min(EPOCH), "{}", a.0);
        }
        let big = after.iter().find(|e| e.0 == "big").unwrap();
        assert_eq!(big.2.as_deref(), Some("1600000000.000000000"));
        assert_eq!(big.3.len(), 600, "the PAX size still rules");
        // Read in any pieces, the same bytes.
        for piece in [1, 7, 512, 513, 4096] {
            assert_eq!(clamped(&input, piece), output, "pieces of {piece}");
        }
    }

    #[test]
    fn older_entries_pass_byte_for_byte() {
        let mut clamp = Clamp::new(u64::from(u32::MAX));
        let input = sample();
        let mut out = VecDeque::new();
        clamp.push(Bytes::from(input.clone()), &mut out);
        assert_eq!(out.into_iter().flatten().collect::<Vec<u8>>(), input);
    }
}
