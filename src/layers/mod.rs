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

mod apply;
pub mod facts;
mod index;
pub mod savings;
mod write;

use std::fs::File;
use std::io::{self, Write};

use crate::layers::facts::Facts;
use crate::tar::blocks;
use crate::tar::blocks::NewHeader;
use crate::tar::reader::{self, End, TarError, TarReader, BLOCK};

const NONE: u32 = u32::MAX;

pub use apply::{apply, Origin};
pub use index::{Change, LayerIndex};
pub use write::{merge, MergeStats};
#[allow(unused_imports)] // the submodules' own items, for one another
use {apply::*, index::*, write::*};

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

pub(super) fn whiteout_name(victim: &[u8]) -> Vec<u8> {
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

pub(super) fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&b""[..], path),
    }
}

pub(super) fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        return name.to_vec();
    }
    [dir, b"/", name].concat()
}

pub(super) fn is_under(path: &[u8], dir: &[u8]) -> bool {
    dir.is_empty() || (path.len() > dir.len() && path.starts_with(dir) && path[dir.len()] == b'/')
}

pub(super) fn show(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};
    use std::io::Read;

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

    /// The dry run's figures come from the rules the merge writes by: what
    /// it predicts survives is what the merged layer (above the kept ones)
    /// holds, file for file and byte for byte.
    #[test]
    fn the_dry_run_predicts_what_the_merge_writes() {
        let mut rng = Rng(0x2545f4914f6cdd1d);
        let mut compared = 0;
        for case in 0..600 {
            let layers = random_layers(&mut rng);
            let indexes: Vec<LayerIndex> = layers.iter().map(|t| index(t)).collect();
            let refs: Vec<&LayerIndex> = indexes.iter().collect();
            for keep in 0..layers.len() {
                let predicted = savings::of(&refs, &[], &serde_json::Value::Null, keep).unwrap();
                let (out, _) = run(&layers, keep).unwrap();
                let (mut files, mut bytes) = (0u64, 0u64);
                for l in &predicted.layers[..keep] {
                    files += l.files;
                    bytes += l.size;
                }
                let mut tar = TarReader::new(&out[..], End::Strict);
                while let Some(e) = tar.next_entry().unwrap() {
                    let base = e.path.rsplit(|&b| b == b'/').find(|p| !p.is_empty());
                    let marker = base.is_some_and(|b| b.starts_with(b".wh."));
                    if e.is_dir() || marker {
                        continue;
                    }
                    files += 1;
                    if matches!(e.typeflag, b'0' | b'\0' | b'7') {
                        bytes += e.size;
                    }
                }
                assert_eq!(
                    (predicted.files_after, predicted.bytes_after),
                    (files, bytes),
                    "case {case}, keep {keep}: {}",
                    dump(&out)
                );
                compared += 1;
            }
        }
        assert!(compared > 1000, "{compared}");
    }
}
