//! Layer tars merged into one, as the engine would apply them one on top of
//! the other: for `--exact` (all of IMAGE's layers) and the partial
//! flattens (the bottom `keep` layers left as they are, the rest merged
//! into one layer that goes on top of them).
//!
//! Each layer is first indexed ([`LayerIndex::read`]) while it is written to
//! an unnamed temporary file: per entry a fixed-size record (kind, where it
//! lies in the file) and its normalized path in one byte arena, never a
//! header. The merge then applies the indexes in order to a map from path
//! (slices of those arenas) to node, and writes the result in path order,
//! copying each surviving entry's bytes from its layer's file as they are
//! (extension headers, xattrs, times, owners, device numbers: all of it).
//!
//! The engine's rules, as moby's and containerd's appliers have them:
//! - a missing parent directory is created (root, 0755, the time of
//!   extraction); on overlay the new copy hides the lower directory's
//!   attributes, so such a directory is written without a header of its
//!   own whenever something under it is written, and the engine makes it
//!   again (with a header, root 0755, time 0, only when nothing is);
//! - later entries win; a non-directory replaces a directory with its whole
//!   subtree, children written earlier in the same layer included;
//! - `.wh.NAME` deletes NAME (and what is under it, earlier entries of the
//!   same layer too); `.wh..wh..opq` hides what lower layers have in its
//!   directory;
//! - a hardlink needs its target written earlier in the same layer, and its
//!   header's owner, mode, time and xattrs apply to the shared inode.
//!   When a later layer replaces or deletes the target but a link survives,
//!   the link keeps the target's old content: the first surviving name (in
//!   path order) becomes the file, the other names link to it.
//!
//! With `keep` layers kept, only nodes the merged layers made are written.
//! Deletions of kept paths are written as the engine needs them: a
//! whiteout for a kept path that is gone, an opaque marker for a kept
//! directory that a merged layer emptied (opaque marker, or whiteout and
//! recreate) and that is a directory again; markers that only hid files of
//! merged layers vanish, and no path is written beside its own whiteout.

pub mod facts;
pub mod savings;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::ops::Bound;
use std::os::unix::fs::FileExt;

use crate::layers::facts::Facts;
use crate::tar::blocks;
use crate::tar::reader::{self, End, NewHeader, TarError, TarReader, BLOCK};

const NONE: u32 = u32::MAX;

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("writing a layer to a temporary file failed: {0}")]
    Spool(io::Error),
    #[error("a layer is not a valid tar archive: {0}")]
    Tar(TarError),
    #[error("layer {layer} cannot be applied: /{path}: {why}")]
    Invalid {
        layer: usize,
        path: String,
        why: &'static str,
    },
    #[error("reading a layer back from its temporary file failed: {0}")]
    Unspool(io::Error),
    #[error(transparent)]
    Write(io::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
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
struct IndexEntry {
    path: u32,
    path_len: u32,
    link: u32,
    link_len: u32,
    /// Offset of the entry's first header block in the layer's file.
    start: u64,
    /// Bytes of headers before the data.
    headers: u32,
    size: u64,
    kind: Kind,
}

/// One layer's entries, and the file it was spooled to.
pub struct LayerIndex {
    names: Vec<u8>,
    entries: Vec<IndexEntry>,
    spool: Option<File>,
    /// Bytes of the uncompressed tar.
    pub bytes: u64,
    /// Per entry, what `--verify` compares (see [`LayerIndex::read_facts`]).
    facts: Option<Vec<Facts>>,
    /// The facts' symlink targets and xattrs.
    arena: Vec<u8>,
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
struct Tee<'a> {
    inner: &'a mut dyn Read,
    out: Option<BufWriter<File>>,
    error: Option<io::Error>,
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

    fn index(
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

    fn fill(&mut self, tee: &mut Tee<'_>) -> Result<(), TarError> {
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
    fn note_facts<R: Read>(
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

    fn push(&mut self, path: &[u8], link: &[u8], entry: &reader::Entry, kind: Kind) {
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

    fn path(&self, e: &IndexEntry) -> &[u8] {
        &self.names[e.path as usize..][..e.path_len as usize]
    }

    fn link(&self, e: &IndexEntry) -> &[u8] {
        &self.names[e.link as usize..][..e.link_len as usize]
    }

    /// Frees the layer's file: it will be kept, not merged.
    pub fn drop_spool(&mut self) {
        self.spool = None;
    }
}

/// What the merge wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MergeStats {
    /// Entries written (markers included).
    pub entries: u64,
    /// Bytes of the merged tar.
    pub bytes: u64,
    /// Hardlink names that became a file because their target was replaced.
    pub materialised: u64,
    /// Whiteouts and opaque markers written, hiding kept layers' files.
    pub whiteouts: u64,
    pub opaques: u64,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    layer: u16,
    /// `NONE` for a directory the engine created.
    entry: u32,
    /// `NONE` unless a hardlink shares this node's inode.
    inode: u32,
    dir: bool,
}

struct Inode {
    /// The entry with the content.
    layer: u16,
    entry: u32,
    /// The last header applied to it (see `Applied`).
    last: u32,
}

/// Headers applied to an inode, newest first through `prev`.
struct Applied {
    layer: u16,
    entry: u32,
    prev: u32,
}

type Fs<'a> = BTreeMap<&'a [u8], Node>;

struct State<'a> {
    layers: &'a [&'a LayerIndex],
    fs: Fs<'a>,
    inodes: Vec<Inode>,
    applied: Vec<Applied>,
    /// Paths whose kept contents a merged layer wiped (an opaque marker, a
    /// whiteout, a replacement).
    wiped: Vec<&'a [u8]>,
    root: Option<(u16, u32)>,
    keep: usize,
}

/// Merges `layers` (bottom first) and writes the merged tar of all but the
/// bottom `keep` to `out`. Layers from `keep` on must have been spooled.
///
/// The merged layers' last root entry (`./`) comes first; with a `comment`,
/// one is always written (root 0755 at the epoch when no layer had one),
/// carrying the comment as a PAX record: it changes the layer's digest and
/// none of its files (see [`crate::source::filter::root_entry`]).
pub fn merge(
    layers: &[&LayerIndex],
    keep: usize,
    comment: Option<&str>,
    out: &mut dyn Write,
) -> Result<MergeStats, MergeError> {
    let mut state = State {
        layers,
        fs: BTreeMap::new(),
        inodes: Vec::new(),
        applied: Vec::new(),
        wiped: Vec::new(),
        root: None,
        keep,
    };
    if keep >= layers.len() {
        return Err(MergeError::Invalid {
            layer: layers.len(),
            path: String::new(),
            why: "nothing to merge above the kept layers",
        });
    }
    let mut kept: Fs<'_> = BTreeMap::new();
    for l in 0..layers.len() {
        if l == keep {
            kept = state.fs.clone();
            state.root = None;
        }
        state.apply(l)?;
    }
    state.wiped.sort_unstable();
    state.wiped.dedup();
    let markers = markers(&state, &kept);
    let mut writer = Writer {
        out,
        stats: MergeStats::default(),
        buf: vec![0; 256 << 10],
    };
    state.write(&markers, comment, &mut writer)?;
    writer.bytes(&[0; 2 * BLOCK as usize])?;
    Ok(writer.stats)
}

/// Where one path of the applied layers comes from (see [`Tree::paths`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin<'a> {
    /// A directory the engine made for what lies under it: no header.
    Implicit,
    /// Entry `entry` of layer `layer`, the only name of its inode.
    Entry { layer: usize, entry: usize },
    /// A name of a hardlinked inode: `content` (layer, entry) holds its
    /// data; `headers` applied to it, oldest first (the last one's mode,
    /// owner and time win, xattrs add up); `first` is its first surviving
    /// name in path order, of `names`.
    Linked {
        content: (usize, usize),
        headers: Vec<(usize, usize)>,
        first: &'a [u8],
        names: u32,
    },
}

/// `layers` applied one on top of the other, as the engine applies them.
pub struct Tree<'a> {
    state: State<'a>,
    /// Per inode, its surviving names and the first of them.
    names: Vec<(u32, Option<&'a [u8]>)>,
}

/// Applies `layers` (bottom first), by the rules [`merge`] follows.
pub fn apply<'a>(layers: &'a [&'a LayerIndex]) -> Result<Tree<'a>, MergeError> {
    let mut state = State {
        layers,
        fs: BTreeMap::new(),
        inodes: Vec::new(),
        applied: Vec::new(),
        wiped: Vec::new(),
        root: None,
        keep: 0,
    };
    for l in 0..layers.len() {
        state.apply(l)?;
    }
    let mut names: Vec<(u32, Option<&'a [u8]>)> = vec![(0, None); state.inodes.len()];
    for (path, n) in &state.fs {
        if n.inode != NONE {
            let slot = &mut names[n.inode as usize];
            slot.0 += 1;
            slot.1.get_or_insert(path);
        }
    }
    Ok(Tree { state, names })
}

impl<'a> Tree<'a> {
    /// The last root entry (`./`): layer and entry.
    pub fn root(&self) -> Option<(usize, usize)> {
        self.state.root.map(|(l, e)| (l as usize, e as usize))
    }

    /// Every path (no root, no markers), in path order.
    pub fn paths(&self) -> impl Iterator<Item = (&'a [u8], Origin<'a>)> + '_ {
        self.state.fs.iter().map(|(&path, n)| {
            let origin = if n.entry == NONE {
                Origin::Implicit
            } else if n.inode == NONE {
                Origin::Entry {
                    layer: n.layer as usize,
                    entry: n.entry as usize,
                }
            } else {
                let inode = &self.state.inodes[n.inode as usize];
                let mut headers = Vec::new();
                let mut at = inode.last;
                while at != NONE {
                    let a = &self.state.applied[at as usize];
                    headers.push((a.layer as usize, a.entry as usize));
                    at = a.prev;
                }
                headers.reverse();
                let (names, first) = self.names[n.inode as usize];
                Origin::Linked {
                    content: (inode.layer as usize, inode.entry as usize),
                    headers,
                    first: first.expect("counted"),
                    names,
                }
            };
            (path, origin)
        })
    }
}

impl<'a> State<'a> {
    fn invalid(&self, layer: usize, path: &[u8], why: &'static str) -> MergeError {
        MergeError::Invalid {
            layer: layer + 1,
            path: show(path),
            why,
        }
    }

    fn apply(&mut self, l: usize) -> Result<(), MergeError> {
        let index: &'a LayerIndex = self.layers[l];
        let layer = l as u16;
        for (i, e) in index.entries.iter().enumerate() {
            let path: &'a [u8] = index.path(e);
            let node = Node {
                layer,
                entry: i as u32,
                inode: NONE,
                dir: e.kind == Kind::Dir,
            };
            match e.kind {
                Kind::Root => self.root = Some((layer, i as u32)),
                Kind::Aufs => self.parents(l, path, false)?,
                Kind::Whiteout => {
                    self.parents(l, path, false)?;
                    self.remove(l, path, true, false);
                }
                Kind::Opaque => {
                    self.parents(l, path, true)?;
                    self.remove(l, path, false, true);
                }
                Kind::Dir => {
                    self.parents(l, path, false)?;
                    if self.fs.get(path).is_some_and(|n| !n.dir) {
                        self.remove(l, path, true, false);
                    }
                    self.fs.insert(path, node);
                }
                Kind::Data | Kind::Symlink | Kind::Special => {
                    self.parents(l, path, false)?;
                    self.remove(l, path, true, false);
                    self.fs.insert(path, node);
                }
                Kind::Hardlink => {
                    self.parents(l, path, false)?;
                    let target: &'a [u8] = index.link(e);
                    let Some(&t) = self.fs.get(target) else {
                        return Err(self.invalid(
                            l,
                            path,
                            "a hardlink to a path not written before it",
                        ));
                    };
                    if t.dir {
                        return Err(self.invalid(l, path, "a hardlink to a directory"));
                    }
                    if t.layer != layer {
                        return Err(self.invalid(
                            l,
                            path,
                            "a hardlink to a file of a lower layer (the engine refuses such a layer)",
                        ));
                    }
                    let inode = if t.inode == NONE {
                        self.applied.push(Applied {
                            layer,
                            entry: t.entry,
                            prev: NONE,
                        });
                        self.inodes.push(Inode {
                            layer,
                            entry: t.entry,
                            last: self.applied.len() as u32 - 1,
                        });
                        let id = self.inodes.len() as u32 - 1;
                        self.fs.get_mut(target).expect("looked up").inode = id;
                        id
                    } else {
                        t.inode
                    };
                    self.applied.push(Applied {
                        layer,
                        entry: i as u32,
                        prev: self.inodes[inode as usize].last,
                    });
                    self.inodes[inode as usize].last = self.applied.len() as u32 - 1;
                    if path != target {
                        self.remove(l, path, true, false);
                        self.fs.insert(path, Node { inode, ..node });
                    }
                }
            }
        }
        Ok(())
    }

    /// The engine creates the missing parents of `path` (and `path` itself
    /// if `itself`) for this layer; on overlay they hide lower copies.
    fn parents(&mut self, l: usize, path: &'a [u8], itself: bool) -> Result<(), MergeError> {
        let layer = l as u16;
        let mut end = if itself {
            path.len()
        } else {
            match path.iter().rposition(|&b| b == b'/') {
                Some(i) => i,
                None => return Ok(()),
            }
        };
        while end > 0 {
            let dir: &'a [u8] = &path[..end];
            match self.fs.get(dir) {
                Some(n) if n.dir && n.layer == layer => break, // its parents are this layer's too
                Some(n) if !n.dir => {
                    return Err(self.invalid(l, path, "its parent is not a directory"));
                }
                _ => {
                    let node = Node {
                        layer,
                        entry: NONE,
                        inode: NONE,
                        dir: true,
                    };
                    self.fs.insert(dir, node);
                }
            }
            end = dir.iter().rposition(|&b| b == b'/').unwrap_or(0);
        }
        Ok(())
    }

    /// Removes what is under `path` (lower layers' only if `lower_only`),
    /// and `path` itself if `itself`.
    fn remove(&mut self, l: usize, path: &'a [u8], itself: bool, lower_only: bool) {
        let layer = l as u16;
        let mut victims: Vec<&'a [u8]> = below(&self.fs, path)
            .filter(|(_, n)| !lower_only || n.layer < layer)
            .map(|(k, _)| *k)
            .collect();
        if itself && self.fs.contains_key(path) {
            victims.push(path);
        }
        if l >= self.keep && !victims.is_empty() {
            self.wiped.push(path);
        }
        for v in victims {
            self.fs.remove(v);
        }
    }

    fn write(
        &self,
        markers: &Markers<'a>,
        comment: Option<&str>,
        w: &mut Writer<'_>,
    ) -> Result<(), MergeError> {
        match (self.root, comment) {
            (Some((l, e)), None) => w.copy(self.layers[l as usize], e, false)?,
            (root, Some(comment)) => {
                let root = match root {
                    Some((l, e)) => Some(w.header_of(self.layers[l as usize], e)?),
                    None => None,
                };
                let mut pax: Vec<(Vec<u8>, Vec<u8>)> = root
                    .as_ref()
                    .map(|r| {
                        r.pax
                            .iter()
                            .filter(|(k, _)| k != b"comment")
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                pax.push((b"comment".to_vec(), comment.as_bytes().to_vec()));
                w.header(&NewHeader {
                    typeflag: b'5',
                    path: b"./",
                    link: b"",
                    size: 0,
                    meta: root.as_ref().map(|r| &r.header),
                    device: None,
                    pax: &pax,
                })?;
            }
            (None, None) => {}
        }
        if markers.opaques.first() == Some(&&b""[..]) {
            w.marker(b".wh..wh..opq", true)?;
        }
        // Names per inode, and the first, which gets the content.
        let mut names: Vec<(u32, Option<&'a [u8]>)> = vec![(0, None); self.inodes.len()];
        for (path, n) in self.emitted() {
            if n.inode != NONE {
                let slot = &mut names[n.inode as usize];
                slot.0 += 1;
                slot.1.get_or_insert(path);
            }
        }
        let mut whiteouts = markers.whiteouts.iter().peekable();
        for (path, n) in self.emitted() {
            while let Some(&&victim) = whiteouts.peek().filter(|v| **v < &path) {
                w.marker(&whiteout_name(victim), false)?;
                whiteouts.next();
            }
            if n.dir {
                if n.entry != NONE {
                    w.copy(self.layers[n.layer as usize], n.entry, false)?;
                } else if markers.explicit.binary_search(&path).is_ok()
                    || !self.has_written_child(path, markers)
                {
                    w.implicit_dir(path)?;
                }
                if markers.opaques.binary_search(&path).is_ok() {
                    w.marker(&join(path, b".wh..wh..opq"), true)?;
                }
            } else if n.inode == NONE {
                w.copy(self.layers[n.layer as usize], n.entry, true)?;
            } else {
                let (count, first) = names[n.inode as usize];
                let first = first.expect("counted above");
                self.write_linked(path, n, count, first, w)?;
            }
        }
        for victim in whiteouts {
            w.marker(&whiteout_name(victim), false)?;
        }
        Ok(())
    }

    /// The nodes the merged layers made, in path order.
    fn emitted(&self) -> impl Iterator<Item = (&'a [u8], &Node)> + '_ {
        let keep = self.keep;
        self.fs
            .iter()
            .filter(move |(_, n)| n.layer as usize >= keep)
            .map(|(k, n)| (*k, n))
    }

    /// Whether something is written under the directory `path`, so that
    /// the engine creates it without a header of its own.
    fn has_written_child(&self, path: &[u8], markers: &Markers<'_>) -> bool {
        if below(&self.fs, path).any(|(_, n)| n.layer as usize >= self.keep) {
            return true;
        }
        let prefix = join(path, b"");
        let under = |list: &[&[u8]], or_self: bool| {
            let at = list.partition_point(|p| *p < &prefix[..]);
            list.get(at).is_some_and(|p| p.starts_with(&prefix))
                || (or_self && list.binary_search(&path).is_ok())
        };
        under(&markers.whiteouts, false) || under(&markers.opaques, true)
    }

    /// A name of a hardlinked inode: the first name gets the content and the
    /// inode's last-applied attributes; the others link to it.
    fn write_linked(
        &self,
        path: &[u8],
        n: &Node,
        count: u32,
        first: &[u8],
        w: &mut Writer<'_>,
    ) -> Result<(), MergeError> {
        let inode = &self.inodes[n.inode as usize];
        let content_layer = self.layers[inode.layer as usize];
        let content_entry = &content_layer.entries[inode.entry as usize];
        // Headers applied, oldest first: xattrs add up, the last one's
        // other attributes win.
        let mut chain = Vec::new();
        let mut at = inode.last;
        while at != NONE {
            let a = &self.applied[at as usize];
            chain.push((a.layer, a.entry));
            at = a.prev;
        }
        chain.reverse();
        let mut xattrs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut last = None;
        for &(l, e) in &chain {
            let entry = w.header_of(self.layers[l as usize], e)?;
            for (k, v) in &entry.pax {
                if k.starts_with(b"SCHILY.xattr.") {
                    xattrs.retain(|(old, _)| old != k);
                    xattrs.push((k.clone(), v.clone()));
                }
            }
            last = Some(entry);
        }
        let meta = last.expect("an inode has a header");
        let mut pax: Vec<(Vec<u8>, Vec<u8>)> = meta
            .pax
            .iter()
            .filter(|(k, _)| !k.starts_with(b"SCHILY.xattr."))
            .cloned()
            .collect();
        pax.extend(xattrs);
        let content = w.header_of(content_layer, inode.entry)?;
        if path == first {
            let original = content_layer.path(content_entry);
            if !self.fs.get(original).is_some_and(|o| o.inode == n.inode) {
                w.stats.materialised += u64::from(count);
            }
            let typeflag = match content.typeflag {
                b'\0' | b'7' => b'0',
                t => t,
            };
            w.header(&NewHeader {
                typeflag,
                path,
                link: if typeflag == b'2' { &content.link } else { b"" },
                size: content.size,
                meta: Some(&meta.header),
                device: Some(content.device()),
                pax: &pax,
            })?;
            w.data(content_layer, content_entry)?;
        } else {
            w.header(&NewHeader {
                typeflag: b'1',
                path,
                link: first,
                size: 0,
                meta: Some(&meta.header),
                device: None,
                pax: &pax,
            })?;
        }
        Ok(())
    }
}

/// What `path`'s subtree holds (not `path` itself); the root's is everything.
fn below<'m, 'a>(fs: &'m Fs<'a>, path: &[u8]) -> impl Iterator<Item = (&'m &'a [u8], &'m Node)> {
    let range = if path.is_empty() {
        fs.range::<[u8], _>(..)
    } else {
        let lo = join(path, b"");
        let mut hi = path.to_vec();
        hi.push(b'/' + 1);
        fs.range::<[u8], _>((Bound::Included(&lo[..]), Bound::Excluded(&hi[..])))
    };
    range
}

/// Whiteouts and opaque markers the merged layer needs, sorted.
struct Markers<'a> {
    whiteouts: Vec<&'a [u8]>,
    opaques: Vec<&'a [u8]>,
    /// Directories the engine made that must be written with a header.
    explicit: Vec<&'a [u8]>,
}

/// Walks the kept layers' tree against the merged one: a kept path gone is
/// whited out, a kept directory that a merged layer wiped and that is a
/// directory again gets an opaque marker (if it had anything to hide); a
/// replaced path needs nothing, the replacement deletes it.
fn markers<'a>(state: &State<'a>, kept: &Fs<'a>) -> Markers<'a> {
    let mut m = Markers {
        whiteouts: Vec::new(),
        opaques: Vec::new(),
        explicit: Vec::new(),
    };
    if kept.is_empty() {
        return m;
    }
    if state.wiped.first() == Some(&&b""[..]) {
        m.opaques.push(b"");
        return m;
    }
    let mut covered: Option<&'a [u8]> = None;
    let mut iter = kept.iter().peekable();
    while let Some((&path, k)) = iter.next() {
        if covered.is_some_and(|c| is_under(path, c)) {
            continue;
        }
        covered = None;
        match state.fs.get(path) {
            None => {
                m.whiteouts.push(path);
                covered = Some(path);
            }
            Some(f) if (f.layer as usize) < state.keep => {} // as it was
            Some(f) if f.dir && k.dir => {
                // Merged into; wiped first, it must hide all it had.
                if state.wiped.binary_search(&path).is_ok() {
                    if iter.peek().is_some_and(|(next, _)| is_under(next, path)) {
                        m.opaques.push(path);
                    }
                    covered = Some(path);
                }
            }
            Some(f) => {
                // Replaced. A directory the engine made over a kept
                // non-directory needs its header: without it, the engine
                // would find a file where it wants the parent.
                if f.dir && f.entry == NONE {
                    m.explicit.push(path);
                }
                covered = Some(path);
            }
        }
    }
    m
}

struct Writer<'w> {
    out: &'w mut dyn Write,
    stats: MergeStats,
    buf: Vec<u8>,
}

impl Writer<'_> {
    fn bytes(&mut self, bytes: &[u8]) -> Result<(), MergeError> {
        self.out.write_all(bytes).map_err(MergeError::Write)?;
        self.stats.bytes += bytes.len() as u64;
        Ok(())
    }

    fn header(&mut self, h: &NewHeader<'_>) -> Result<(), MergeError> {
        let mut block = Vec::with_capacity(1024);
        reader::write_header(&mut block, h).map_err(MergeError::Write)?;
        self.stats.entries += 1;
        self.bytes(&block)
    }

    fn spool(layer: &LayerIndex) -> Result<&File, MergeError> {
        layer
            .spool
            .as_ref()
            .ok_or_else(|| MergeError::Unspool(io::Error::other("the layer was not kept on disk")))
    }

    /// Copies `len` bytes at `at` of the layer's file.
    fn range(&mut self, layer: &LayerIndex, mut at: u64, len: u64) -> Result<(), MergeError> {
        let file = Self::spool(layer)?;
        let mut left = len;
        while left > 0 {
            let n = left.min(self.buf.len() as u64) as usize;
            let mut buf = std::mem::take(&mut self.buf);
            let read = file
                .read_exact_at(&mut buf[..n], at)
                .map_err(MergeError::Unspool);
            let written = read.and_then(|()| self.bytes(&buf[..n]));
            self.buf = buf;
            written?;
            at += n as u64;
            left -= n as u64;
        }
        Ok(())
    }

    /// An entry as it is in its layer; with its data if `data`.
    fn copy(&mut self, layer: &LayerIndex, entry: u32, data: bool) -> Result<(), MergeError> {
        let e = layer.entries[entry as usize];
        let len = u64::from(e.headers) + if data { blocks::padded(e.size) } else { 0 };
        self.stats.entries += 1;
        self.range(layer, e.start, len)
    }

    /// An entry's data and padding.
    fn data(&mut self, layer: &LayerIndex, e: &IndexEntry) -> Result<(), MergeError> {
        self.range(
            layer,
            e.start + u64::from(e.headers),
            blocks::padded(e.size),
        )
    }

    /// An entry's headers, parsed again from its layer's file.
    fn header_of(&mut self, layer: &LayerIndex, entry: u32) -> Result<reader::Entry, MergeError> {
        let e = layer.entries[entry as usize];
        let mut bytes = vec![0; e.headers as usize];
        Self::spool(layer)?
            .read_exact_at(&mut bytes, e.start)
            .map_err(MergeError::Unspool)?;
        let mut tar = TarReader::new(&bytes[..], End::Lenient);
        match tar.next_entry() {
            Ok(Some(entry)) => Ok(entry),
            Ok(None) => Err(MergeError::Unspool(io::Error::other(
                "an indexed entry is gone",
            ))),
            Err(e) => Err(MergeError::Tar(e)),
        }
    }

    fn marker(&mut self, path: &[u8], opaque: bool) -> Result<(), MergeError> {
        if opaque {
            self.stats.opaques += 1;
        } else {
            self.stats.whiteouts += 1;
        }
        self.header(&NewHeader {
            typeflag: b'0',
            path,
            link: b"",
            size: 0,
            meta: None,
            device: None,
            pax: &[],
        })
    }

    fn implicit_dir(&mut self, path: &[u8]) -> Result<(), MergeError> {
        self.header(&NewHeader {
            typeflag: b'5',
            path: &join(path, b""),
            link: b"",
            size: 0,
            meta: None,
            device: None,
            pax: &[],
        })
    }
}

fn whiteout_name(victim: &[u8]) -> Vec<u8> {
    let (parent, base) = split(victim);
    join(parent, &[b".wh.", base].concat())
}

/// `a/b/` and `./a//b` are `a/b`; `Some(None)` for the root itself; `None`
/// for a path that leaves the root.
pub fn normalize(path: &[u8]) -> Option<Option<Vec<u8>>> {
    let mut out = Vec::with_capacity(path.len());
    for part in path.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return None,
            p => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(p);
            }
        }
    }
    Some((!out.is_empty()).then_some(out))
}

fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&b""[..], path),
    }
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        return name.to_vec();
    }
    [dir, b"/", name].concat()
}

fn is_under(path: &[u8], dir: &[u8]) -> bool {
    dir.is_empty() || (path.len() > dir.len() && path.starts_with(dir) && path[dir.len()] == b'/')
}

fn show(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    /// One entry of a test layer.
    #[derive(Debug, Clone)]
    enum Op {
        Dir(String, u32, u64),
        File(String, Vec<u8>, u32, u64, Vec<(String, String)>),
        Symlink(String, String),
        Hardlink(String, String, u32, u64),
        Whiteout(String),
        Opaque(String),
        Fifo(String),
    }

    fn tar_of(ops: &[Op]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for op in ops {
            let mut h = tar::Header::new_ustar();
            h.set_mode(0o644);
            h.set_size(0);
            let (name, data): (String, Vec<u8>) = match op {
                Op::Dir(p, mode, mtime) => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(*mode);
                    h.set_mtime(*mtime);
                    (format!("{p}/"), vec![])
                }
                Op::File(p, data, mode, mtime, xattrs) => {
                    h.set_mode(*mode);
                    h.set_mtime(*mtime);
                    h.set_size(data.len() as u64);
                    let records: Vec<(String, &[u8])> = xattrs
                        .iter()
                        .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.as_bytes()))
                        .collect();
                    b.append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), *v)))
                        .unwrap();
                    (p.clone(), data.clone())
                }
                Op::Symlink(p, t) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_link_name(t).unwrap();
                    (p.clone(), vec![])
                }
                Op::Hardlink(p, t, mode, mtime) => {
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_link_name(t).unwrap();
                    h.set_mode(*mode);
                    h.set_mtime(*mtime);
                    (p.clone(), vec![])
                }
                Op::Fifo(p) => {
                    h.set_entry_type(tar::EntryType::Fifo);
                    (p.clone(), vec![])
                }
                Op::Whiteout(p) => {
                    let (dir, base) = p.rsplit_once('/').unwrap_or(("", p));
                    let name = if dir.is_empty() {
                        format!(".wh.{base}")
                    } else {
                        format!("{dir}/.wh.{base}")
                    };
                    (name, vec![])
                }
                Op::Opaque(d) => (format!("{d}/.wh..wh..opq"), vec![]),
            };
            h.set_path(&name).unwrap();
            h.set_cksum();
            b.append(&h, &data[..]).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn index(tar: &[u8]) -> LayerIndex {
        LayerIndex::read(&mut &tar[..], Some(tempfile::tempfile().unwrap())).unwrap()
    }

    fn run(tars: &[Vec<u8>], keep: usize) -> Result<(Vec<u8>, MergeStats), MergeError> {
        let indexes: Vec<LayerIndex> = tars.iter().map(|t| index(t)).collect();
        let refs: Vec<&LayerIndex> = indexes.iter().collect();
        let mut out = Vec::new();
        let stats = merge(&refs, keep, None, &mut out)?;
        Ok((out, stats))
    }

    /// An independent model of the engine's layer application, as simple
    /// as it can be: whole paths in a map, inodes as numbers.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct MNode {
        kind: String,
        content: Vec<u8>,
        mode: u32,
        mtime: i64,
        xattrs: BTreeMap<String, Vec<u8>>,
        inode: u64,
    }

    #[derive(Debug, Clone, Default)]
    struct Model {
        fs: BTreeMap<Vec<u8>, MNode>,
        next: u64,
    }

    fn under(p: &[u8], d: &[u8]) -> bool {
        p.len() > d.len() && p.starts_with(d) && p[d.len()] == b'/'
    }

    impl Model {
        fn remove_tree(&mut self, p: &[u8]) {
            self.fs.retain(|k, _| k != p && !under(k, p));
        }

        fn node(&mut self, kind: &str, content: Vec<u8>, mode: u32, mtime: i64) -> MNode {
            self.next += 1;
            MNode {
                kind: kind.into(),
                content,
                mode,
                mtime,
                xattrs: BTreeMap::new(),
                inode: self.next,
            }
        }

        /// Applies one uncompressed layer tar, read with the tar crate.
        fn apply(&mut self, bytes: &[u8]) -> Result<(), String> {
            let mut added: BTreeSet<Vec<u8>> = BTreeSet::new();
            let mut archive = tar::Archive::new(bytes);
            for entry in archive.entries().unwrap() {
                let mut entry = entry.unwrap();
                let raw = entry.path_bytes().into_owned();
                let parts: Vec<&[u8]> = raw
                    .split(|&b| b == b'/')
                    .filter(|p| !p.is_empty() && *p != b".")
                    .collect();
                if parts.is_empty() {
                    continue;
                }
                let path = parts.join(&b'/');
                for i in 1..parts.len() {
                    let parent = parts[..i].join(&b'/');
                    match self.fs.get(&parent) {
                        Some(n) if n.kind != "dir" => return Err("parent is not a dir".into()),
                        Some(_) if added.contains(&parent) => continue,
                        _ => {}
                    }
                    let n = self.node("dir", vec![], 0o755, -1);
                    self.fs.insert(parent.clone(), n);
                    added.insert(parent);
                }
                let base = *parts.last().unwrap();
                let parent = parts[..parts.len() - 1].join(&b'/');
                if base == b".wh..wh..opq" {
                    self.fs.retain(|k, _| {
                        !(parent.is_empty() || under(k, &parent))
                            || added.contains(k)
                            || added.iter().any(|a| under(a, k))
                    });
                    continue;
                }
                if let Some(victim) = base.strip_prefix(b".wh.") {
                    let victim = if parent.is_empty() {
                        victim.to_vec()
                    } else {
                        [&parent[..], b"/", victim].concat()
                    };
                    self.remove_tree(&victim);
                    continue;
                }
                let h = entry.header().clone();
                let mode = h.mode().unwrap() & 0o7777;
                let mtime = h.mtime().unwrap() as i64;
                let mut xattrs = BTreeMap::new();
                if let Some(pax) = entry.pax_extensions().unwrap() {
                    for ext in pax {
                        let ext = ext.unwrap();
                        if let Some(name) = ext.key().unwrap().strip_prefix("SCHILY.xattr.") {
                            xattrs.insert(name.to_owned(), ext.value_bytes().to_vec());
                        }
                    }
                }
                let mut node = match h.entry_type() {
                    tar::EntryType::Directory => {
                        if self.fs.get(&path).is_some_and(|n| n.kind != "dir") {
                            self.remove_tree(&path);
                        }
                        self.node("dir", vec![], mode, mtime)
                    }
                    tar::EntryType::Link => {
                        let target = entry.link_name_bytes().unwrap().into_owned();
                        let target: Vec<u8> = target
                            .split(|&b| b == b'/')
                            .filter(|p| !p.is_empty() && *p != b".")
                            .collect::<Vec<_>>()
                            .join(&b'/');
                        let Some(t) = self.fs.get(&target).cloned() else {
                            return Err("link to nothing".into());
                        };
                        if t.kind == "dir" || !added.contains(&target) {
                            return Err("bad link".into());
                        }
                        for n in self.fs.values_mut().filter(|n| n.inode == t.inode) {
                            n.mode = mode;
                            n.mtime = mtime;
                            n.xattrs.extend(xattrs.clone());
                        }
                        let node = self.fs[&target].clone();
                        if path != target {
                            self.remove_tree(&path);
                        }
                        self.fs.insert(path.clone(), node);
                        added.insert(path);
                        continue;
                    }
                    other => {
                        let (kind, content) = match other {
                            tar::EntryType::Symlink => {
                                ("symlink", entry.link_name_bytes().unwrap().into_owned())
                            }
                            tar::EntryType::Fifo => ("fifo", vec![]),
                            _ => {
                                let mut data = Vec::new();
                                entry.read_to_end(&mut data).unwrap();
                                ("file", data)
                            }
                        };
                        self.remove_tree(&path);
                        self.node(kind, content, mode, mtime)
                    }
                };
                node.xattrs = xattrs;
                self.fs.insert(path.clone(), node);
                added.insert(path);
            }
            Ok(())
        }

        /// The tree with inodes as groups of names, and directories the
        /// engine made (mtime -1) as what the merge writes for them.
        fn canonical(&self) -> Canonical {
            let mut groups: BTreeMap<u64, BTreeSet<Vec<u8>>> = BTreeMap::new();
            let mut fs = BTreeMap::new();
            for (k, n) in &self.fs {
                let mut n = n.clone();
                groups.entry(n.inode).or_default().insert(k.clone());
                n.inode = 0;
                if n.kind == "dir" && n.mtime == -1 {
                    n.mtime = 0;
                }
                fs.insert(k.clone(), n);
            }
            let groups = groups.into_values().filter(|g| g.len() > 1).collect();
            (fs, groups)
        }
    }

    /// The tree, and the hardlink groups.
    type Canonical = (BTreeMap<Vec<u8>, MNode>, BTreeSet<BTreeSet<Vec<u8>>>);

    fn model(tars: &[Vec<u8>]) -> Result<Model, String> {
        let mut m = Model::default();
        for t in tars {
            m.apply(t)?;
        }
        Ok(m)
    }

    /// The merge, checked against the model: the kept layers plus the
    /// merged one must show what all layers show, and the merged layer must
    /// be one the engine takes.
    fn check(tars: &[Vec<u8>], keep: usize) -> (Vec<u8>, MergeStats) {
        let expected = model(tars).expect("test layers are valid");
        let (out, stats) = run(tars, keep).expect("merge");
        let mut layers = tars[..keep].to_vec();
        layers.push(out.clone());
        let actual = model(&layers).unwrap_or_else(|e| panic!("merged layer refused: {e}"));
        assert_eq!(
            actual.canonical(),
            expected.canonical(),
            "keep {keep} of {tars:#?}"
        );
        // Never a path beside its own whiteout.
        let mut names = BTreeSet::new();
        let mut archive = tar::Archive::new(&out[..]);
        for e in archive.entries().unwrap() {
            let p = e.unwrap().path_bytes().into_owned();
            names.insert(
                String::from_utf8(p)
                    .unwrap()
                    .trim_end_matches('/')
                    .to_owned(),
            );
        }
        for n in &names {
            let (dir, base) = n.rsplit_once('/').unwrap_or(("", n));
            if let Some(v) = base.strip_prefix(".wh.").filter(|v| !v.starts_with(".wh.")) {
                let victim = if dir.is_empty() {
                    v.to_owned()
                } else {
                    format!("{dir}/{v}")
                };
                assert!(!names.contains(&victim), "{victim} beside its whiteout");
            }
        }
        (out, stats)
    }

    fn file(p: &str, data: &str) -> Op {
        Op::File(p.into(), data.as_bytes().to_vec(), 0o644, 1000, vec![])
    }

    fn dir(p: &str) -> Op {
        Op::Dir(p.into(), 0o755, 1000)
    }

    fn paths(tar: &[u8]) -> Vec<String> {
        let mut archive = tar::Archive::new(tar);
        archive
            .entries()
            .unwrap()
            .map(|e| String::from_utf8(e.unwrap().path_bytes().into_owned()).unwrap())
            .collect()
    }

    fn dump(tar: &[u8]) -> String {
        let mut archive = tar::Archive::new(tar);
        let items: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let p = String::from_utf8(e.path_bytes().into_owned()).unwrap();
                let link = e
                    .link_name_bytes()
                    .map(|l| String::from_utf8(l.into_owned()).unwrap());
                format!(
                    "{p}:{:?}{}",
                    e.header().entry_type(),
                    link.map(|l| format!("->{l}")).unwrap_or_default()
                )
            })
            .collect();
        items.join(" ")
    }

    #[test]
    fn unchanged_entries_are_copied_byte_for_byte() {
        let ops = vec![
            dir("etc"),
            Op::File(
                "etc/hosts".into(),
                b"127.0.0.1 x\n".to_vec(),
                0o600,
                1234567,
                vec![
                    ("user.a".into(), "1".into()),
                    ("trusted.b".into(), "2".into()),
                ],
            ),
            Op::Symlink("etc/mtab".into(), "/proc/mounts".into()),
        ];
        let tar = tar_of(&ops);
        let (out, stats) = check(&[tar.clone(), tar_of(&[dir("x")])], 0);
        let body = &tar[..tar.len() - 1024];
        assert!(
            out.windows(body.len()).any(|w| w == body),
            "copied as it was"
        );
        assert_eq!(stats.entries, 4);
    }

    #[test]
    fn a_link_whose_target_is_replaced_keeps_the_old_content() {
        let l1 = tar_of(&[
            dir("d"),
            file("d/t", "old"),
            Op::Hardlink("d/a".into(), "d/t".into(), 0o644, 1000),
            Op::Hardlink("d/b".into(), "d/t".into(), 0o644, 1000),
        ]);
        let l2 = tar_of(&[dir("d"), file("d/t", "new")]);
        let (out, stats) = check(&[l1.clone(), l2.clone()], 0);
        assert_eq!(stats.materialised, 2);
        let mut archive = tar::Archive::new(&out[..]);
        let kinds: Vec<(String, tar::EntryType)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    String::from_utf8(e.path_bytes().into_owned()).unwrap(),
                    e.header().entry_type(),
                )
            })
            .collect();
        assert_eq!(kinds[1], ("d/a".into(), tar::EntryType::Regular));
        assert_eq!(kinds[2], ("d/b".into(), tar::EntryType::Link));
        // Deleted instead of replaced, and a link header that changes the mode.
        let l1 = tar_of(&[
            dir("d"),
            file("d/t", "old"),
            Op::Hardlink("d/a".into(), "d/t".into(), 0o600, 2000),
        ]);
        let l2 = tar_of(&[dir("d"), Op::Whiteout("d/t".into())]);
        check(&[l1, l2], 0);
    }

    #[test]
    fn kept_layers_keep_what_hides_them_and_lose_what_does_not() {
        let base = tar_of(&[
            dir("k"),
            file("k/a", "1"),
            file("k/b", "2"),
            dir("o"),
            file("o/x", "3"),
            dir("r"),
            file("r/y", "4"),
        ]);
        let l2 = tar_of(&[
            dir("m"),
            file("m/tmp", "5"),
            dir("k"),
            Op::Whiteout("k/a".into()),
        ]);
        let l3 = tar_of(&[
            dir("m"),
            Op::Whiteout("m/tmp".into()),
            dir("o"),
            Op::Opaque("o".into()),
            file("o/new", "6"),
            Op::Whiteout("r".into()),
        ]);
        let l4 = tar_of(&[dir("r"), file("r/z", "7")]);
        let (out, stats) = check(&[base, l2, l3, l4], 1);
        let names = paths(&out);
        assert!(names.contains(&"k/.wh.a".to_owned()), "{names:?}");
        assert!(names.contains(&"o/.wh..wh..opq".to_owned()), "{names:?}");
        // Whited out and made again as a directory: hidden by an opaque marker.
        assert!(names.contains(&"r/.wh..wh..opq".to_owned()), "{names:?}");
        assert!(!names.iter().any(|n| n.contains("tmp")), "{names:?}");
        assert_eq!((stats.whiteouts, stats.opaques), (1, 2));
    }

    #[test]
    fn a_comment_goes_on_the_root_entry() {
        let l1 = tar_of(&[Op::Dir(".".into(), 0o700, 77), file("a", "1")]);
        let l2 = tar_of(&[file("b", "2")]);
        let indexes: Vec<LayerIndex> = [l1, l2].iter().map(|t| index(t)).collect();
        let refs: Vec<&LayerIndex> = indexes.iter().collect();
        let mut out = Vec::new();
        merge(&refs, 0, Some("run 1"), &mut out).unwrap();
        let mut archive = tar::Archive::new(&out[..]);
        let mut first = archive.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(first.path_bytes().as_ref(), b"./");
        assert_eq!(first.header().mode().unwrap(), 0o700, "the layers' root");
        let pax = first.pax_extensions().unwrap().unwrap();
        let records: Vec<_> = pax.map(|r| r.unwrap().key().unwrap().to_owned()).collect();
        assert_eq!(records, ["comment"]);
        let mut bare = Vec::new();
        merge(&refs[1..], 0, Some("run 2"), &mut bare).unwrap();
        assert_eq!(paths(&bare), ["./", "b"]);
    }

    #[test]
    fn nothing_to_merge_is_refused() {
        let l = tar_of(&[file("a", "1")]);
        assert!(matches!(
            run(std::slice::from_ref(&l), 1),
            Err(MergeError::Invalid { .. })
        ));
        assert!(run(&[l], 0).is_ok());
    }

    #[test]
    fn layers_the_engine_refuses_are_refused() {
        let l1 = tar_of(&[file("t", "1")]);
        let l2 = tar_of(&[Op::Hardlink("l".into(), "t".into(), 0o644, 0)]);
        let err = run(&[l1.clone(), l2], 0).unwrap_err().to_string();
        assert!(
            err.contains("layer 2") && err.contains("lower layer"),
            "{err}"
        );
        let l2 = tar_of(&[file("t/x", "1")]);
        let err = run(&[l1, l2], 0).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");
    }

    /// xorshift: reproducible without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    fn random_layers(rng: &mut Rng) -> Vec<Vec<u8>> {
        const NAMES: [&str; 3] = ["a", "b", "c"];
        let mut all = Vec::new();
        let mut state = Model::default();
        for _ in 0..1 + rng.next(5) {
            let mut ops: Vec<Op> = Vec::new();
            let mut written: Vec<String> = Vec::new();
            for _ in 0..1 + rng.next(8) {
                let depth = 1 + rng.next(3);
                let path: Vec<&str> = (0..depth).map(|_| NAMES[rng.next(3)]).collect();
                let path = path.join("/");
                let t = 900 + rng.next(3) as u64;
                let op = match rng.next(10) {
                    0 | 1 => Op::Dir(path.clone(), [0o755, 0o700][rng.next(2)], t),
                    2..=4 => {
                        let xattrs = match rng.next(3) {
                            0 => vec![("user.x".into(), format!("v{}", rng.next(3)))],
                            _ => vec![],
                        };
                        Op::File(
                            path.clone(),
                            vec![b'0' + rng.next(9) as u8; rng.next(3)],
                            [0o644, 0o600][rng.next(2)],
                            t,
                            xattrs,
                        )
                    }
                    5 => Op::Symlink(path.clone(), "a".into()),
                    6 if !written.is_empty() => Op::Hardlink(
                        path.clone(),
                        written[rng.next(written.len())].clone(),
                        [0o644, 0o640][rng.next(2)],
                        t,
                    ),
                    7 => Op::Whiteout(path.clone()),
                    8 => Op::Opaque(path.clone()),
                    _ => Op::Fifo(path.clone()),
                };
                let mut candidate = ops.clone();
                candidate.push(op.clone());
                let mut trial = state.clone();
                if trial.apply(&tar_of(&candidate)).is_ok() {
                    if matches!(op, Op::File(..) | Op::Symlink(..) | Op::Fifo(..)) {
                        written.push(path.clone());
                    }
                    if let Op::Whiteout(_) | Op::Opaque(_) = op {
                        written.retain(|w| !w.starts_with(&path));
                    }
                    ops = candidate;
                }
            }
            let tar = tar_of(&ops);
            state.apply(&tar).expect("checked");
            all.push(tar);
        }
        all
    }

    #[test]
    fn random_layers_merge_as_the_model_applies_them() {
        let mut rng = Rng(0x9e3779b97f4a7c15);
        let mut seen = MergeStats::default();
        for case in 0..1200 {
            let layers = random_layers(&mut rng);
            for keep in 0..layers.len() {
                let seed = rng.0;
                let result = std::panic::catch_unwind(|| check(&layers, keep));
                if let Ok((_, stats)) = &result {
                    seen.materialised += stats.materialised;
                    seen.whiteouts += stats.whiteouts;
                    seen.opaques += stats.opaques;
                }
                if result.is_err() {
                    let dumped: Vec<String> = layers.iter().map(|l| dump(l)).collect();
                    let out = run(&layers, keep).map(|(o, _)| dump(&o));
                    panic!(
                        "case {case} (keep {keep}, rng {seed:#x}) failed:\n{}\nmerged: {out:?}",
                        dumped.join("\n")
                    );
                }
            }
        }
        // The cases reach what is hard.
        assert!(
            seen.materialised > 20 && seen.whiteouts > 100 && seen.opaques > 20,
            "{seen:?}"
        );
    }
}
