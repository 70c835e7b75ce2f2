//! The engine's rules applied: the layers' indexes stacked, bottom first,
//! into a map from path to node ([`apply`] for the dry run and
//! `--verify`, and the merge's first half).

use std::collections::BTreeMap;
use std::ops::Bound;

use super::*;

#[derive(Debug, Clone, Copy)]
pub(super) struct Node {
    pub(super) layer: u16,
    /// `NONE` for a directory the engine created.
    pub(super) entry: u32,
    /// `NONE` unless a hardlink shares this node's inode.
    pub(super) inode: u32,
    pub(super) dir: bool,
}

pub(super) struct Inode {
    /// The entry with the content.
    pub(super) layer: u16,
    pub(super) entry: u32,
    /// The last header applied to it (see `Applied`).
    pub(super) last: u32,
}

/// Headers applied to an inode, newest first through `prev`.
pub(super) struct Applied {
    pub(super) layer: u16,
    pub(super) entry: u32,
    pub(super) prev: u32,
}

pub(super) type Fs<'a> = BTreeMap<&'a [u8], Node>;

pub(super) struct State<'a> {
    pub(super) layers: &'a [&'a LayerIndex],
    pub(super) fs: Fs<'a>,
    pub(super) inodes: Vec<Inode>,
    pub(super) applied: Vec<Applied>,
    /// Paths whose kept contents a merged layer wiped (an opaque marker, a
    /// whiteout, a replacement).
    pub(super) wiped: Vec<&'a [u8]>,
    pub(super) root: Option<(u16, u32)>,
    pub(super) keep: usize,
    /// Every node a layer removed, in order (see [`Tree::removed`]).
    pub(super) removed: Vec<Removed>,
}

/// A node that a layer removed: deleted (a whiteout, an opaque marker) or
/// replaced (a later entry at its path or above it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    /// The layer and entry that had made it.
    pub layer: usize,
    pub entry: usize,
    /// The inode it shared with hardlinks, if any (see [`Tree::inode`]).
    pub inode: Option<usize>,
    /// The layer that removed it.
    pub by: usize,
    /// Whether a later entry took its place (or its parent's), rather
    /// than a whiteout or an opaque marker deleting it.
    pub replaced: bool,
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
    pub(super) state: State<'a>,
    /// Per inode, its surviving names and the first of them.
    pub(super) names: Vec<(u32, Option<&'a [u8]>)>,
}

/// Applies `layers` (bottom first), by the rules [`merge`] follows.
pub fn apply<'a>(layers: &'a [&'a LayerIndex]) -> Result<Tree<'a>, MergeError> {
    let mut state = State::new(layers, 0);
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
    /// Every node a layer removed, in the order the layers removed them.
    pub fn removed(&self) -> &[Removed] {
        &self.state.removed
    }

    /// Inode `inode`'s content (layer, entry) and how many of its names
    /// survive.
    pub fn inode(&self, inode: usize) -> ((usize, usize), u32) {
        let i = &self.state.inodes[inode];
        ((i.layer as usize, i.entry as usize), self.names[inode].0)
    }

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
    /// Nothing applied yet; `keep`: the bottom layers a merge keeps.
    pub(super) fn new(layers: &'a [&'a LayerIndex], keep: usize) -> State<'a> {
        State {
            layers,
            fs: BTreeMap::new(),
            inodes: Vec::new(),
            applied: Vec::new(),
            wiped: Vec::new(),
            root: None,
            keep,
            removed: Vec::new(),
        }
    }

    pub(super) fn invalid(&self, layer: usize, path: &[u8], why: &'static str) -> MergeError {
        MergeError::Invalid {
            layer: layer + 1,
            path: show(path),
            why,
        }
    }

    pub(super) fn apply(&mut self, l: usize) -> Result<(), MergeError> {
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
                    self.remove(l, path, true, false, false);
                }
                Kind::Opaque => {
                    self.parents(l, path, true)?;
                    self.remove(l, path, false, true, false);
                }
                Kind::Dir => {
                    self.parents(l, path, false)?;
                    if self.fs.get(path).is_some_and(|n| !n.dir) {
                        self.remove(l, path, true, false, true);
                    }
                    self.fs.insert(path, node);
                }
                Kind::Data | Kind::Symlink | Kind::Special => {
                    self.parents(l, path, false)?;
                    self.remove(l, path, true, false, true);
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
                        self.remove(l, path, true, false, true);
                        self.fs.insert(path, Node { inode, ..node });
                    }
                }
            }
        }
        Ok(())
    }

    /// The engine creates the missing parents of `path` (and `path` itself
    /// if `itself`) for this layer; on overlay they hide lower copies.
    pub(super) fn parents(
        &mut self,
        l: usize,
        path: &'a [u8],
        itself: bool,
    ) -> Result<(), MergeError> {
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
    /// and `path` itself if `itself`; `replaced`: by an entry taking its place.
    pub(super) fn remove(
        &mut self,
        l: usize,
        path: &'a [u8],
        itself: bool,
        lower_only: bool,
        replaced: bool,
    ) {
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
            let Some(n) = self.fs.remove(v) else { continue };
            if n.entry != NONE {
                self.removed.push(Removed {
                    layer: n.layer as usize,
                    entry: n.entry as usize,
                    inode: (n.inode != NONE).then_some(n.inode as usize),
                    by: l,
                    replaced,
                });
            }
        }
    }
}

/// What `path`'s subtree holds (not `path` itself); the root's is everything.
pub(super) fn below<'m, 'a>(
    fs: &'m Fs<'a>,
    path: &[u8],
) -> impl Iterator<Item = (&'m &'a [u8], &'m Node)> {
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
