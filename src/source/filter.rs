//! The filter between the container export and the image import.
//!
//! A container's export is not its image's filesystem: the engine's init
//! layer adds placeholders (`/.dockerenv`, `/etc/hosts`, `/etc/hostname`,
//! `/etc/resolv.conf`, `/etc/mtab`, `/dev/console`) and the directories
//! `/dev`, `/dev/pts`, `/dev/shm`, `/proc`, `/sys` and `/etc` that hold them.
//! This filter removes the placeholders and keeps those directories only when
//! something else lives under them. Every other entry is passed through as the
//! exact bytes the engine sent (extension headers included), so content,
//! modes, owners, times, links, devices and xattrs are untouched.
//!
//! It works on 512-byte tar blocks as they stream by, holding at most one
//! header, its extension records and a few deferred directory headers.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::tar::blocks::{self as blocks, BLOCK};
use crate::tar::header as tar_header;
/// Extension records (PAX, GNU long names) larger than this are not a real
/// export; refusing them keeps memory bounded whatever the input.
const MAX_EXTENSION: u64 = 16 << 20;

/// Regular files the init layer puts in every container: always masked, so
/// the export shows the empty placeholder whatever the image had there.
pub const PLACEHOLDER_FILES: &[&[u8]] = &[
    b".dockerenv",
    b"etc/hosts",
    b"etc/hostname",
    b"etc/resolv.conf",
    b"dev/console",
];
/// The init layer's `/etc/mtab`, a symlink.
pub const PLACEHOLDER_MTAB: (&[u8], &[u8]) = (b"etc/mtab", b"/proc/mounts");
/// Directories the init layer creates: kept only if a kept entry lives under them.
pub const PLACEHOLDER_DIRS: &[&[u8]] = &[b"dev", b"dev/pts", b"dev/shm", b"etc", b"proc", b"sys"];

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("the export stream is not a valid tar archive at byte {offset}: {why}")]
    Corrupt { offset: u64, why: &'static str },
    #[error("the export stream ended early, at byte {offset}, before the end of the archive")]
    Truncated { offset: u64 },
}

/// What the filter did, for the summary and for debugging.
#[derive(Debug, Default, Clone)]
pub struct FilterStats {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub entries_kept: u64,
    pub dropped: Vec<String>,
}

#[derive(Debug)]
enum State {
    Header,
    Extension {
        kind: u8,
        remaining: u64,
        padding: u64,
    },
    Data {
        remaining: u64,
        keep: bool,
    },
    End,
}

struct Deferred {
    path: Vec<u8>,
    bytes: Bytes,
}

/// Streaming tar filter; feed it chunks with [`TarFilter::push`], then call
/// [`TarFilter::finish`].
pub struct TarFilter {
    state: State,
    header: BytesMut,
    /// Raw bytes of the extension entries that precede the next real entry.
    extensions: BytesMut,
    /// Payload of the extension entry being read.
    payload: Vec<u8>,
    long_name: Option<Vec<u8>>,
    pax_path: Option<Vec<u8>>,
    pax_size: Option<u64>,
    deferred: Vec<Deferred>,
    stats: FilterStats,
}

impl Default for TarFilter {
    fn default() -> Self {
        TarFilter {
            state: State::Header,
            header: BytesMut::with_capacity(BLOCK),
            extensions: BytesMut::new(),
            payload: Vec::new(),
            long_name: None,
            pax_path: None,
            pax_size: None,
            deferred: Vec::new(),
            stats: FilterStats::default(),
        }
    }
}

impl TarFilter {
    pub fn stats(&self) -> &FilterStats {
        &self.stats
    }

    /// Consumes one chunk of the export, appending what to forward to `out`.
    pub fn push(&mut self, mut chunk: Bytes, out: &mut VecDeque<Bytes>) -> Result<(), FilterError> {
        while !chunk.is_empty() {
            match &mut self.state {
                State::End => {
                    self.stats.bytes_in += chunk.len() as u64;
                    return Ok(());
                }
                State::Header => {
                    let take = (BLOCK - self.header.len()).min(chunk.len());
                    self.header.extend_from_slice(&chunk.split_to(take));
                    self.stats.bytes_in += take as u64;
                    if self.header.len() == BLOCK {
                        let block = self.header.split().freeze();
                        self.on_header(block, out)?;
                    }
                }
                State::Extension {
                    remaining,
                    padding,
                    kind,
                } => {
                    let total = *remaining + *padding;
                    let take = (total.min(chunk.len() as u64)) as usize;
                    let part = chunk.split_to(take);
                    let payload_part = (*remaining).min(take as u64) as usize;
                    self.payload.extend_from_slice(&part[..payload_part]);
                    self.extensions.extend_from_slice(&part);
                    *remaining -= payload_part as u64;
                    *padding -= (take - payload_part) as u64;
                    self.stats.bytes_in += take as u64;
                    if *remaining == 0 && *padding == 0 {
                        let kind = *kind;
                        self.on_extension(kind)?;
                        self.state = State::Header;
                    }
                }
                State::Data { remaining, keep } => {
                    let take = ((*remaining).min(chunk.len() as u64)) as usize;
                    let part = chunk.split_to(take);
                    *remaining -= take as u64;
                    self.stats.bytes_in += take as u64;
                    if *keep {
                        self.stats.bytes_out += take as u64;
                        out.push_back(part);
                    }
                    if *remaining == 0 {
                        self.state = State::Header;
                    }
                }
            }
        }
        Ok(())
    }

    /// Ends the stream: fails unless the archive ended properly, so that a cut
    /// export can never become a truncated image.
    pub fn finish(&mut self, out: &mut VecDeque<Bytes>) -> Result<(), FilterError> {
        if !matches!(self.state, State::End) {
            return Err(FilterError::Truncated {
                offset: self.stats.bytes_in,
            });
        }
        for gone in self.deferred.drain(..) {
            self.stats.dropped.push(display(&gone.path));
        }
        out.push_back(Bytes::from_static(&blocks::END_OF_ARCHIVE));
        self.stats.bytes_out += blocks::END_OF_ARCHIVE.len() as u64;
        Ok(())
    }

    fn corrupt(&self, why: &'static str) -> FilterError {
        FilterError::Corrupt {
            offset: self.stats.bytes_in,
            why,
        }
    }

    fn on_header(&mut self, block: Bytes, out: &mut VecDeque<Bytes>) -> Result<(), FilterError> {
        if block.iter().all(|&b| b == 0) {
            if !self.extensions.is_empty() {
                return Err(self.corrupt("end of archive right after an extension header"));
            }
            self.state = State::End;
            return Ok(());
        }
        let header: &[u8; BLOCK] = block[..].try_into().expect("a whole block");
        if !tar_header::checksum_ok(header) {
            return Err(self.corrupt("header checksum mismatch"));
        }
        let kind = tar_header::typeflag(header);
        let size = tar_header::size(header).ok_or_else(|| self.corrupt("unreadable entry size"))?;
        match kind {
            b'x' | b'L' | b'K' | b'g' => {
                if size > MAX_EXTENSION {
                    return Err(self.corrupt("extension record too large"));
                }
                self.extensions.extend_from_slice(&block);
                self.payload.clear();
                self.state = State::Extension {
                    kind,
                    remaining: size,
                    padding: blocks::padding(size) as u64,
                };
                if size == 0 {
                    self.on_extension(kind)?;
                    self.state = State::Header;
                }
                return Ok(());
            }
            _ => {}
        }
        let path = self
            .long_name
            .take()
            .or_else(|| self.pax_path.take())
            .unwrap_or_else(|| tar_header::ustar_path(header));
        let size = self.pax_size.take().unwrap_or(size);
        self.pax_path = None;
        let path = normalize(&path).to_vec();
        // Links, directories, devices and FIFOs carry no data whatever their size field says.
        let data = if matches!(kind, b'0' | b'\0' | b'7') {
            blocks::padded(size)
        } else {
            0
        };
        let mut entry = self.extensions.split();
        entry.extend_from_slice(&block);
        let entry = entry.freeze();

        // Deferred directories whose subtree we have left were empty: drop them.
        while let Some(last) = self.deferred.last() {
            if is_under(&path, &last.path) {
                break;
            }
            let gone = self.deferred.pop().expect("checked non-empty");
            self.stats.dropped.push(display(&gone.path));
        }

        let keep = if is_placeholder(&path, kind, size, header) {
            self.stats.dropped.push(display(&path));
            false
        } else if kind == b'5' && PLACEHOLDER_DIRS.contains(&path.as_slice()) {
            self.deferred.push(Deferred {
                path,
                bytes: entry.clone(),
            });
            false
        } else {
            for d in self.deferred.drain(..) {
                self.stats.bytes_out += d.bytes.len() as u64;
                self.stats.entries_kept += 1;
                out.push_back(d.bytes);
            }
            self.stats.bytes_out += entry.len() as u64;
            self.stats.entries_kept += 1;
            out.push_back(entry);
            true
        };
        self.state = if data == 0 {
            State::Header
        } else {
            State::Data {
                remaining: data,
                keep,
            }
        };
        Ok(())
    }

    fn on_extension(&mut self, kind: u8) -> Result<(), FilterError> {
        let payload = std::mem::take(&mut self.payload);
        match kind {
            b'L' => {
                let end = payload
                    .iter()
                    .position(|&b| b == 0)
                    .unwrap_or(payload.len());
                self.long_name = Some(payload[..end].to_vec());
            }
            b'x' => {
                let records = tar_header::parse_pax(&payload)
                    .ok_or_else(|| self.corrupt("bad PAX records"))?;
                for (key, value) in records {
                    match &key[..] {
                        b"path" => self.pax_path = Some(value),
                        b"size" => {
                            self.pax_size = std::str::from_utf8(&value)
                                .ok()
                                .and_then(|v| v.parse().ok());
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// The attributes of the layer's root directory, `./`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Root {
    /// Permission bits (with setuid, setgid, sticky).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Seconds since the epoch.
    pub mtime: u64,
}

/// The layer's first entry: the root directory `./` with `root`'s
/// attributes, which an export never carries, so that extractors other than
/// the engine's (umoci, tar into a directory) give the root the source's
/// mode, owner and time instead of their own default.
///
/// With a `comment`, a PAX extended header (typeflag `x`) holding one
/// standard `comment` record goes before it: it changes the layer's digest
/// and nothing in its filesystem. Readers merge an `x` header into the entry
/// it precedes, and POSIX has them ignore `comment`; tried with umoci 0.4.7,
/// GNU tar 1.34, bsdtar 3.6.2 and both engines. (A global header, typeflag
/// `g`, is refused by umoci; a private keyword makes GNU tar warn.)
pub fn root_entry(root: Root, comment: Option<&str>) -> Bytes {
    let mut out = Vec::with_capacity(3 * BLOCK);
    if let Some(comment) = comment {
        let record = blocks::pax_record(b"comment", comment.as_bytes());
        out.extend_from_slice(&blocks::header(
            b"././@PaxHeader",
            b'x',
            record.len() as u64,
            0o644,
            0,
            0,
            0,
        ));
        out.extend_from_slice(&record);
        out.resize(blocks::padded(out.len() as u64) as usize, 0);
    }
    let dir = blocks::header(b"./", b'5', 0, root.mode, root.uid, root.gid, root.mtime);
    out.extend_from_slice(&dir);
    Bytes::from(out)
}

fn is_placeholder(path: &[u8], kind: u8, size: u64, header: &[u8; BLOCK]) -> bool {
    let regular = matches!(kind, b'0' | b'\0' | b'7');
    if regular && size == 0 && PLACEHOLDER_FILES.contains(&path) {
        return true;
    }
    kind == b'2' && path == PLACEHOLDER_MTAB.0 && tar_header::link(header) == PLACEHOLDER_MTAB.1
}

/// Strips `./` and `/` prefixes and a trailing `/`: export paths are relative
/// to the root, directories often end in `/`.
fn normalize(mut path: &[u8]) -> &[u8] {
    loop {
        if let Some(rest) = path.strip_prefix(b"./") {
            path = rest;
        } else if let Some(rest) = path.strip_prefix(b"/") {
            path = rest;
        } else {
            break;
        }
    }
    while let Some(rest) = path.strip_suffix(b"/") {
        path = rest;
    }
    path
}

fn is_under(path: &[u8], dir: &[u8]) -> bool {
    path.len() > dir.len() && path.starts_with(dir) && path[dir.len()] == b'/'
}

fn display(path: &[u8]) -> String {
    format!("/{}", String::from_utf8_lossy(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_entry_comes_first_and_its_comment_merges_into_it() {
        let root = Root {
            mode: 0o750,
            uid: 1,
            gid: 3_000_000,
            mtime: 1_000_000_000,
        };
        for comment in [
            None,
            Some("docker-flatten run 0123456789abcdef"),
            Some(&*"x".repeat(600)),
        ] {
            let head = root_entry(root, comment);
            assert_eq!(head.len() % BLOCK, 0);
            let rest = archive(&[("f", tar::EntryType::Regular, b"data")]);
            let stream = [&head[..], &rest[..]].concat();
            let mut reader = tar::Archive::new(&stream[..]);
            let mut entries = reader.entries().unwrap();
            let mut first = entries.next().unwrap().unwrap();
            assert_eq!(&*first.path_bytes(), b"./");
            let h = first.header();
            assert_eq!(h.entry_type(), tar::EntryType::Directory);
            assert_eq!(
                (
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                    h.mtime().unwrap()
                ),
                (0o750, 1, 3_000_000, 1_000_000_000)
            );
            let records: Vec<(String, String)> = first
                .pax_extensions()
                .unwrap()
                .into_iter()
                .flatten()
                .map(|r| {
                    let r = r.unwrap();
                    (r.key().unwrap().to_owned(), r.value().unwrap().to_owned())
                })
                .collect();
            let expected: Vec<(String, String)> = comment
                .map(|c| ("comment".to_owned(), c.to_owned()))
                .into_iter()
                .collect();
            assert_eq!(records, expected);
            let second = entries.next().unwrap().unwrap();
            assert_eq!(&*second.path_bytes(), b"f");
            assert!(entries.next().is_none());
        }
    }

    /// Builds an archive the way the engine's export does, as (path, type, data).
    fn archive(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o755);
            h.set_mtime(1_700_000_000);
            if *kind == tar::EntryType::Symlink {
                h.set_size(0);
                b.append_link(&mut h, path, std::str::from_utf8(data).unwrap())
                    .unwrap();
            } else {
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, *data).unwrap();
            }
        }
        b.into_inner().unwrap()
    }

    fn run(input: &[u8], chunk: usize) -> Result<(Vec<u8>, FilterStats), FilterError> {
        let mut f = TarFilter::default();
        let mut out = VecDeque::new();
        for c in input.chunks(chunk) {
            f.push(Bytes::copy_from_slice(c), &mut out)?;
        }
        f.finish(&mut out)?;
        Ok((
            out.into_iter().flat_map(|b| b.to_vec()).collect(),
            f.stats().clone(),
        ))
    }

    fn paths(tar_bytes: &[u8]) -> Vec<String> {
        let mut a = tar::Archive::new(tar_bytes);
        a.entries()
            .unwrap()
            .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
            .collect()
    }

    use tar::EntryType::{Directory as D, Regular as F, Symlink as S};

    #[test]
    fn drops_placeholders_and_empty_placeholder_dirs() {
        let input = archive(&[
            (".dockerenv", F, b""),
            ("bin/", D, b""),
            ("bin/sh", F, b"#!shell"),
            ("dev/", D, b""),
            ("dev/console", F, b""),
            ("dev/pts/", D, b""),
            ("dev/shm/", D, b""),
            ("etc/", D, b""),
            ("etc/hostname", F, b""),
            ("etc/hosts", F, b""),
            ("etc/mtab", S, b"/proc/mounts"),
            ("etc/resolv.conf", F, b""),
            ("proc/", D, b""),
            ("sys/", D, b""),
        ]);
        for chunk in [1, 7, 512, 513, 100_000] {
            let (out, stats) = run(&input, chunk).unwrap();
            assert_eq!(paths(&out), ["bin/", "bin/sh"], "chunk {chunk}");
            assert_eq!(stats.dropped.len(), 12);
        }
    }

    #[test]
    fn keeps_placeholder_dirs_with_real_content_and_real_files() {
        let input = archive(&[
            ("dev/", D, b""),
            ("dev/null", F, b"not really"),
            ("dev/pts/", D, b""),
            ("etc/", D, b""),
            ("etc/hosts", F, b"127.0.0.1 real\n"),
            ("etc/mtab", S, b"../proc/self/mounts"),
            ("etc/passwd", F, b"root:x:0:0::/:/bin/sh\n"),
            ("proc/", D, b""),
            ("proc/keep", F, b"x"),
        ]);
        let (out, _) = run(&input, 300).unwrap();
        assert_eq!(
            paths(&out),
            [
                "dev/",
                "dev/null",
                "etc/",
                "etc/hosts",
                "etc/mtab",
                "etc/passwd",
                "proc/",
                "proc/keep"
            ]
        );
    }

    #[test]
    fn passes_kept_entries_through_byte_exact() {
        let long = format!("d/{}", "n".repeat(200));
        let kept: &[(&str, tar::EntryType, &[u8])] = &[("d/", D, b""), (&long, F, b"payload")];
        let mut all = kept.to_vec();
        all.push(("etc/hosts", F, b""));
        let (out, _) = run(&archive(&all), 64).unwrap();
        assert_eq!(out, archive(kept));
    }

    #[test]
    fn pax_values_may_contain_newlines() {
        let cap = b"\x01\x00\x00\x02\x0a\x00\x00\x00";
        let mut records = Vec::new();
        for (k, v) in [
            (&b"SCHILY.xattr.security.capability"[..], &cap[..]),
            (b"path", b"etc/hosts"),
        ] {
            let body = [k, b"=", v, b"\n"].concat();
            let mut len = body.len() + 2;
            while len.to_string().len() + 1 + body.len() != len {
                len += 1;
            }
            records.extend_from_slice(format!("{len} ").as_bytes());
            records.extend_from_slice(&body);
        }
        let parsed = tar_header::parse_pax(&records).unwrap();
        assert_eq!(
            parsed,
            [
                (b"SCHILY.xattr.security.capability".to_vec(), cap.to_vec()),
                (b"path".to_vec(), b"etc/hosts".to_vec())
            ]
        );
    }

    #[test]
    fn refuses_truncated_or_corrupt_input() {
        let input = archive(&[("a", F, b"hello world")]);
        let cut = &input[..BLOCK + 5];
        assert!(matches!(run(cut, 100), Err(FilterError::Truncated { .. })));
        let mut bad = input.clone();
        bad[0] ^= 1;
        assert!(matches!(run(&bad, 100), Err(FilterError::Corrupt { .. })));
        assert!(matches!(run(&[], 100), Err(FilterError::Truncated { .. })));
    }
}
