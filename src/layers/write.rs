//! The merged layer written: the applied tree of the merged layers in
//! path order, each surviving entry's bytes copied from its layer's file
//! as they are, with the whiteouts and opaque markers the kept layers need.

use std::collections::BTreeMap;
use std::io::{self, Write};

use crate::os::files::read_exact_at;

use super::*;

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
    let mut state = State::new(layers, keep);
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

impl<'a> State<'a> {
    pub(super) fn write(
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
    pub(super) fn emitted(&self) -> impl Iterator<Item = (&'a [u8], &Node)> + '_ {
        let keep = self.keep;
        self.fs
            .iter()
            .filter(move |(_, n)| n.layer as usize >= keep)
            .map(|(k, n)| (*k, n))
    }

    /// Whether something is written under the directory `path`, so that
    /// the engine creates it without a header of its own.
    pub(super) fn has_written_child(&self, path: &[u8], markers: &Markers<'_>) -> bool {
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
    pub(super) fn write_linked(
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

/// Whiteouts and opaque markers the merged layer needs, sorted.
pub(super) struct Markers<'a> {
    pub(super) whiteouts: Vec<&'a [u8]>,
    pub(super) opaques: Vec<&'a [u8]>,
    /// Directories the engine made that must be written with a header.
    pub(super) explicit: Vec<&'a [u8]>,
}

/// Walks the kept layers' tree against the merged one: a kept path gone is
/// whited out, a kept directory that a merged layer wiped and that is a
/// directory again gets an opaque marker (if it had anything to hide); a
/// replaced path needs nothing, the replacement deletes it.
pub(super) fn markers<'a>(state: &State<'a>, kept: &Fs<'a>) -> Markers<'a> {
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

pub(super) struct Writer<'w> {
    pub(super) out: &'w mut dyn Write,
    pub(super) stats: MergeStats,
    pub(super) buf: Vec<u8>,
}

impl Writer<'_> {
    pub(super) fn bytes(&mut self, bytes: &[u8]) -> Result<(), MergeError> {
        self.out.write_all(bytes).map_err(MergeError::Write)?;
        self.stats.bytes += bytes.len() as u64;
        Ok(())
    }

    pub(super) fn header(&mut self, h: &NewHeader<'_>) -> Result<(), MergeError> {
        let mut block = Vec::with_capacity(1024);
        blocks::write_header(&mut block, h).map_err(MergeError::Write)?;
        self.stats.entries += 1;
        self.bytes(&block)
    }

    pub(super) fn spool(layer: &LayerIndex) -> Result<&File, MergeError> {
        layer
            .spool
            .as_ref()
            .ok_or_else(|| MergeError::Unspool(io::Error::other("the layer was not kept on disk")))
    }

    /// Copies `len` bytes at `at` of the layer's file.
    pub(super) fn range(
        &mut self,
        layer: &LayerIndex,
        mut at: u64,
        len: u64,
    ) -> Result<(), MergeError> {
        let file = Self::spool(layer)?;
        let mut left = len;
        while left > 0 {
            let n = left.min(self.buf.len() as u64) as usize;
            let mut buf = std::mem::take(&mut self.buf);
            let read = read_exact_at(file, &mut buf[..n], at).map_err(MergeError::Unspool);
            let written = read.and_then(|()| self.bytes(&buf[..n]));
            self.buf = buf;
            written?;
            at += n as u64;
            left -= n as u64;
        }
        Ok(())
    }

    /// An entry as it is in its layer; with its data if `data`.
    pub(super) fn copy(
        &mut self,
        layer: &LayerIndex,
        entry: u32,
        data: bool,
    ) -> Result<(), MergeError> {
        let e = layer.entries[entry as usize];
        let len = u64::from(e.headers) + if data { blocks::padded(e.size) } else { 0 };
        self.stats.entries += 1;
        self.range(layer, e.start, len)
    }

    /// An entry's data and padding.
    pub(super) fn data(&mut self, layer: &LayerIndex, e: &IndexEntry) -> Result<(), MergeError> {
        self.range(
            layer,
            e.start + u64::from(e.headers),
            blocks::padded(e.size),
        )
    }

    /// An entry's headers, parsed again from its layer's file.
    pub(super) fn header_of(
        &mut self,
        layer: &LayerIndex,
        entry: u32,
    ) -> Result<reader::Entry, MergeError> {
        let e = layer.entries[entry as usize];
        let mut bytes = vec![0; e.headers as usize];
        read_exact_at(Self::spool(layer)?, &mut bytes, e.start).map_err(MergeError::Unspool)?;
        let mut tar = TarReader::new(&bytes[..], End::Lenient);
        match tar.next_entry() {
            Ok(Some(entry)) => Ok(entry),
            Ok(None) => Err(MergeError::Unspool(io::Error::other(
                "an indexed entry is gone",
            ))),
            Err(e) => Err(MergeError::Tar(e)),
        }
    }

    pub(super) fn marker(&mut self, path: &[u8], opaque: bool) -> Result<(), MergeError> {
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

    pub(super) fn implicit_dir(&mut self, path: &[u8]) -> Result<(), MergeError> {
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
