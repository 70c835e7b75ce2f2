//! One layer's index: per entry a fixed-size record (kind, where it lies
//! in the layer's spooled file) and its normalized path in one byte arena,
//! read as the layer streams by.

use std::fs::File;
use std::io::{self, BufWriter, Read};

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Dir,
    /// A regular file (or anything else with data).
    Data,
    Symlink,
    Hardlink,
    /// Devices and FIFOs.
    Special,
    /// `.wh.NAME`; its path is NAME's.
    Whiteout,
    /// `.wh..wh..opq`; its path is the directory's.
    Opaque,
    /// Other `.wh..wh.*` names: AUFS bookkeeping, no file.
    Aufs,
    /// The layer's `./` entry.
    Root,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct IndexEntry {
    pub(super) path: u32,
    pub(super) path_len: u32,
    pub(super) link: u32,
    pub(super) link_len: u32,
    /// Offset of the entry's first header block in the layer's file.
    pub(super) start: u64,
    /// Bytes of headers before the data.
    pub(super) headers: u32,
    pub(super) size: u64,
    pub(super) kind: Kind,
}

/// One layer's entries, and the file it was spooled to.
pub struct LayerIndex {
    pub(super) names: Vec<u8>,
    pub(super) entries: Vec<IndexEntry>,
    pub(super) spool: Option<File>,
    /// Bytes of the uncompressed tar.
    pub bytes: u64,
    /// Per entry, what `--verify` compares (see [`LayerIndex::read_facts`]).
    pub(super) facts: Option<Vec<Facts>>,
    /// The facts' symlink targets and xattrs.
    pub(super) arena: Vec<u8>,
}

impl std::fmt::Debug for LayerIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerIndex")
            .field("entries", &self.entries.len())
            .field("bytes", &self.bytes)
            .finish()
    }
}

/// Copies what is read to the spool, keeping its own error apart.
pub(super) struct Tee<'a> {
    pub(super) inner: &'a mut dyn Read,
    pub(super) out: Option<BufWriter<File>>,
    pub(super) error: Option<io::Error>,
}

impl Read for Tee<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(out) = &mut self.out {
            if let Err(e) = out.write_all(&buf[..n]) {
                let copy = io::Error::new(e.kind(), e.to_string());
                self.error = Some(e);
                return Err(copy);
            }
        }
        Ok(n)
    }
}

impl LayerIndex {
    /// Indexes an uncompressed layer tar, writing it to `spool` on the way
    /// (the merged layers need their bytes again; kept ones only their index).
    pub fn read(layer: &mut dyn Read, spool: Option<File>) -> Result<LayerIndex, MergeError> {
        Self::index(layer, spool, false)
    }

    /// As [`LayerIndex::read`], also keeping each entry's [`Facts`] (its
    /// content hashed on the way) for `--verify`.
    pub fn read_facts(layer: &mut dyn Read, spool: Option<File>) -> Result<LayerIndex, MergeError> {
        Self::index(layer, spool, true)
    }

    pub(super) fn index(
        layer: &mut dyn Read,
        spool: Option<File>,
        facts: bool,
    ) -> Result<LayerIndex, MergeError> {
        let mut tee = Tee {
            inner: layer,
            out: spool.map(|f| BufWriter::with_capacity(256 << 10, f)),
            error: None,
        };
        let mut index = LayerIndex {
            names: Vec::new(),
            entries: Vec::new(),
            spool: None,
            bytes: 0,
            facts: facts.then(Vec::new),
            arena: Vec::new(),
        };
        let result = index.fill(&mut tee);
        if let Some(e) = tee.error.take() {
            return Err(MergeError::Spool(e));
        }
        result.map_err(MergeError::Tar)?;
        // What follows the end blocks is the layer's too (its diff ID covers it).
        let tail = io::copy(&mut tee, &mut io::sink());
        if let Some(e) = tee.error.take() {
            return Err(MergeError::Spool(e));
        }
        index.bytes += tail.map_err(|e| MergeError::Tar(TarError::Io(e)))?;
        if let Some(out) = tee.out {
            let file = out
                .into_inner()
                .map_err(|e| MergeError::Spool(e.into_error()))?;
            index.spool = Some(file);
        }
        Ok(index)
    }

    pub(super) fn fill(&mut self, tee: &mut Tee<'_>) -> Result<(), TarError> {
        let mut tar = TarReader::new(&mut *tee, End::Lenient);
        while let Some(entry) = tar.next_entry()? {
            let offset = entry.start;
            let Some(path) = normalize(&entry.path).ok_or_else(|| TarError::Corrupt {
                offset,
                why: format!("{} leaves the root", show(&entry.path)),
            })?
            else {
                if entry.is_dir() {
                    self.push(b"", b"", &entry, Kind::Root);
                    self.note_facts(&entry, &mut tar)?;
                }
                continue;
            };
            let (parent, base) = split(&path);
            let (kind, path) = if base == b".wh..wh..opq" {
                (Kind::Opaque, parent.to_vec())
            } else if base.starts_with(b".wh..wh.") {
                (Kind::Aufs, path.clone())
            } else if let Some(victim) = base.strip_prefix(b".wh.") {
                (Kind::Whiteout, join(parent, victim))
            } else {
                let kind = match entry.typeflag {
                    b'5' => Kind::Dir,
                    b'1' => Kind::Hardlink,
                    b'2' => Kind::Symlink,
                    b'3' | b'4' | b'6' => Kind::Special,
                    _ => Kind::Data,
                };
                (kind, path)
            };
            let link = if kind == Kind::Hardlink {
                normalize(&entry.link)
                    .flatten()
                    .ok_or_else(|| TarError::Corrupt {
                        offset,
                        why: format!("hardlink {} has no target in the root", show(&path)),
                    })?
            } else {
                Vec::new()
            };
            self.push(&path, &link, &entry, kind);
            self.note_facts(&entry, &mut tar)?;
        }
        self.bytes = tar.position();
        Ok(())
    }

    /// The facts of the entry just pushed, if they are kept.
    pub(super) fn note_facts<R: Read>(
        &mut self,
        entry: &reader::Entry,
        tar: &mut TarReader<R>,
    ) -> Result<(), TarError> {
        if let Some(facts) = &mut self.facts {
            facts.push(Facts::read(entry, &mut tar.data(), &mut self.arena)?);
        }
        Ok(())
    }

    /// The facts of entry `i` and the arena they refer to; `None` unless
    /// read with [`LayerIndex::read_facts`].
    pub fn facts(&self, i: usize) -> Option<(&Facts, &[u8])> {
        Some((self.facts.as_ref()?.get(i)?, &self.arena))
    }

    pub(super) fn push(&mut self, path: &[u8], link: &[u8], entry: &reader::Entry, kind: Kind) {
        let at = self.names.len() as u32;
        self.names.extend_from_slice(path);
        self.names.extend_from_slice(link);
        self.entries.push(IndexEntry {
            path: at,
            path_len: path.len() as u32,
            link: at + path.len() as u32,
            link_len: link.len() as u32,
            start: entry.start,
            headers: (entry.data - entry.start) as u32,
            size: entry.size,
            kind,
        });
    }

    pub(super) fn path(&self, e: &IndexEntry) -> &[u8] {
        &self.names[e.path as usize..][..e.path_len as usize]
    }

    pub(super) fn link(&self, e: &IndexEntry) -> &[u8] {
        &self.names[e.link as usize..][..e.link_len as usize]
    }

    /// Entry `i`'s path, normalized (a whiteout's: the path it deletes).
    pub fn path_of(&self, i: usize) -> &[u8] {
        self.path(&self.entries[i])
    }

    /// How many entries the layer has (its root and markers included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// What entry `i` is, as the layer rules see it.
    pub fn change(&self, i: usize) -> Change {
        let e = &self.entries[i];
        match e.kind {
            Kind::Dir | Kind::Root => Change::Dir,
            Kind::Data => Change::File { size: e.size },
            Kind::Symlink | Kind::Hardlink | Kind::Special => Change::File { size: 0 },
            Kind::Whiteout => Change::Whiteout,
            Kind::Opaque => Change::Opaque,
            Kind::Aufs => Change::None,
        }
    }

    /// Frees the layer's file: it will be kept, not merged.
    pub fn drop_spool(&mut self) {
        self.spool = None;
    }
}

/// What one layer entry is, as the layer rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A directory (the layer's root included).
    Dir,
    /// Anything but a directory; `size` is its content (0 for links,
    /// devices and FIFOs).
    File { size: u64 },
    /// `.wh.NAME`: deletes NAME and what is under it.
    Whiteout,
    /// `.wh..wh..opq`: hides what lower layers have in its directory.
    Opaque,
    /// AUFS bookkeeping (`.wh..wh.*`): no file.
    None,
}
