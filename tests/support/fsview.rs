//! An independent model of an image's merged root filesystem, and a differ.
//!
//! [`image_fs`] reads what the engine stored (`docker save`) and applies the
//! layers with overlay/AUFS whiteout semantics; [`FsView::from_spec`] does
//! the same for the tars a test built, which gives the expected view "by
//! construction"; [`container_fs`] reads `docker export`, i.e. what a
//! running container really sees; [`FsView::from_dir`] reads a tree that
//! another tool (umoci, tar) extracted. Comparing them with [`diff_fs`] shows
//! every lost or altered property, hardlink grouping included.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;
use tar::EntryType;

use super::archive::{layer_tar, sha256_hex, ImageSpec};
use super::engine::{check_ok, docker, TestContainer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodeKind {
    Dir,
    File,
    Symlink,
    CharDev,
    BlockDev,
    Fifo,
}

/// One path of the merged filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: NodeKind,
    /// Permission bits plus setuid/setgid/sticky.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Seconds since the epoch (PAX fractions are floored).
    pub mtime: i64,
    /// Content length for files, 0 otherwise.
    pub size: u64,
    /// Hex SHA-256 of the content, files only.
    pub sha256: Option<String>,
    /// Symlink target.
    pub link: Option<Vec<u8>>,
    /// (major, minor) for device nodes.
    pub dev: Option<(u32, u32)>,
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// Identity for hardlink grouping only; numbers mean nothing across
    /// views (compare with [`FsView::hardlink_groups`]).
    pub inode: u64,
}

/// mtime of a directory the engine had to create because a layer lacked
/// its entry: the real value is the extraction time, which nobody can know.
pub const IMPLICIT_DIR_MTIME: i64 = -1;

fn next_inode() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Merged filesystem: normalized path (no leading `/` or `./`, no trailing
/// `/`, raw bytes) to node. The root directory itself is not modelled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsView(pub BTreeMap<Vec<u8>, Node>);

/// Prints a raw path readably, escaping bytes that are not printable ASCII.
pub fn show(path: &[u8]) -> String {
    path.escape_ascii().to_string()
}

/// Canonical key for a tar path or a caller's path; `None` for the root.
pub fn normalize(path: &[u8]) -> Option<Vec<u8>> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in path.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => panic!("path {} escapes the root", show(path)),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        None
    } else {
        Some(parts.join(&b'/'))
    }
}

fn is_under(path: &[u8], dir: &[u8]) -> bool {
    path.len() > dir.len() && path.starts_with(dir) && path[dir.len()] == b'/'
}

fn parse_pax_time(value: &[u8], path: &[u8]) -> i64 {
    let text = std::str::from_utf8(value)
        .unwrap_or_else(|_| panic!("non-UTF-8 PAX mtime for {}", show(path)));
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let secs: i64 = secs
        .parse()
        .unwrap_or_else(|e| panic!("bad PAX mtime {text:?} for {}: {e}", show(path)));
    // Floor, so -1.5 is -2 like the C library would store it.
    if text.starts_with('-') && frac.bytes().any(|b| b != b'0') {
        secs - 1
    } else {
        secs
    }
}

impl FsView {
    pub fn new() -> FsView {
        FsView::default()
    }

    /// Applies layer tars bottom-up.
    pub fn from_layer_tars<T: AsRef<[u8]>>(tars: &[T]) -> FsView {
        let mut view = FsView::new();
        for t in tars {
            view.apply_layer(t.as_ref());
        }
        view
    }

    /// The view the engine should show for `spec`, built from the very tars
    /// [`load_image`](super::archive::load_image) sends it.
    pub fn from_spec(spec: &ImageSpec) -> FsView {
        let tars: Vec<Vec<u8>> = spec.layers.iter().map(|l| layer_tar(l)).collect();
        FsView::from_layer_tars(&tars)
    }

    /// A directory tree on disk as a view (what an extractor wrote), its
    /// root not modelled, extended attributes not read. Unix only: it reads
    /// modes, owners and device numbers.
    #[cfg(unix)]
    pub fn from_dir(root: &std::path::Path) -> FsView {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let mut view = FsView::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let entries =
                std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
            for entry in entries {
                let entry = entry.expect("directory entry");
                let path = entry.path();
                let meta = std::fs::symlink_metadata(&path)
                    .unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
                let ft = meta.file_type();
                let kind = if ft.is_dir() {
                    stack.push(path.clone());
                    NodeKind::Dir
                } else if ft.is_symlink() {
                    NodeKind::Symlink
                } else if ft.is_char_device() {
                    NodeKind::CharDev
                } else if ft.is_block_device() {
                    NodeKind::BlockDev
                } else if ft.is_fifo() {
                    NodeKind::Fifo
                } else {
                    NodeKind::File
                };
                let content = (kind == NodeKind::File).then(|| {
                    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
                });
                let rdev = meta.rdev();
                let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
                let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
                let node = Node {
                    kind,
                    mode: meta.mode() & 0o7777,
                    uid: u64::from(meta.uid()),
                    gid: u64::from(meta.gid()),
                    mtime: meta.mtime(),
                    size: content.as_ref().map_or(0, |c| c.len() as u64),
                    sha256: content.as_deref().map(sha256_hex),
                    link: (kind == NodeKind::Symlink).then(|| {
                        let target = std::fs::read_link(&path).expect("read symlink");
                        target.as_os_str().as_bytes().to_vec()
                    }),
                    dev: matches!(kind, NodeKind::CharDev | NodeKind::BlockDev)
                        .then_some((major as u32, minor as u32)),
                    xattrs: BTreeMap::new(),
                    inode: meta.ino(),
                };
                let relative = path.strip_prefix(root).expect("under the root");
                view.0
                    .insert(relative.as_os_str().as_bytes().to_vec(), node);
            }
        }
        view
    }

    /// A single flat tar (e.g. `docker export` output) as a view.
    pub fn from_tar(tar: &[u8]) -> FsView {
        FsView::from_layer_tars(&[tar])
    }

    pub fn get(&self, path: impl AsRef<[u8]>) -> Option<&Node> {
        normalize(path.as_ref()).and_then(|p| self.0.get(&p))
    }

    /// Like [`get`](Self::get) but panics with the path when it is absent.
    pub fn node(&self, path: impl AsRef<[u8]>) -> &Node {
        let path = path.as_ref();
        self.get(path)
            .unwrap_or_else(|| panic!("{} is not in the view", show(path)))
    }

    pub fn contains(&self, path: impl AsRef<[u8]>) -> bool {
        self.get(path).is_some()
    }

    pub fn paths(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.0.keys()
    }

    /// Removes `path` and everything under it.
    fn remove_tree(&mut self, path: &[u8]) {
        self.0.retain(|k, _| k != path && !is_under(k, path));
    }

    /// A layer that changes something below a directory without carrying
    /// that directory's own entry makes the engine create it (root, 0755,
    /// extraction time), and overlay then shows that copy instead of the
    /// lower layer's. Modelled so, with [`IMPLICIT_DIR_MTIME`] because the
    /// real time is unknowable.
    fn implicit_parents(&mut self, path: &[u8], added: &mut BTreeSet<Vec<u8>>) {
        let mut end = 0;
        while let Some(i) = path[end..].iter().position(|&b| b == b'/') {
            let parent = &path[..end + i];
            end += i + 1;
            match self.0.get(parent) {
                Some(n) if n.kind != NodeKind::Dir => panic!(
                    "{} needs parent {} to be a directory, but it is a {:?}",
                    show(path),
                    show(parent),
                    n.kind
                ),
                Some(_) if added.contains(parent) => continue,
                _ => {}
            }
            self.0.insert(
                parent.to_vec(),
                Node {
                    kind: NodeKind::Dir,
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                    mtime: IMPLICIT_DIR_MTIME,
                    size: 0,
                    sha256: None,
                    link: None,
                    dev: None,
                    xattrs: BTreeMap::new(),
                    inode: next_inode(),
                },
            );
            added.insert(parent.to_vec());
        }
    }

    /// Applies one uncompressed layer tar on top of the view, following the
    /// engine's extraction rules: `.wh.<name>` removes `name`, an opaque
    /// marker hides what lower layers put in its directory, a directory
    /// over a directory only replaces metadata, anything else replaces.
    pub fn apply_layer(&mut self, tar_bytes: &[u8]) {
        // Paths this layer put in place: an opaque marker must not hide them.
        let mut added: BTreeSet<Vec<u8>> = BTreeSet::new();
        for entry in read_tar(tar_bytes) {
            let Some(path) = normalize(&entry.path) else {
                continue; // the root directory: not modelled
            };
            let (parent, base) = match path.iter().rposition(|&b| b == b'/') {
                Some(i) => (&path[..i], &path[i + 1..]),
                None => (&b""[..], &path[..]),
            };
            self.implicit_parents(&path, &mut added);

            if base == b".wh..wh..opq" {
                let parent = parent.to_vec();
                self.0.retain(|k, _| {
                    !is_under(k, &parent)
                        || added.contains(k)
                        || added.iter().any(|a| is_under(a, k))
                });
                continue;
            }
            if base.starts_with(b".wh..wh.") {
                continue; // AUFS bookkeeping (e.g. .wh..wh.plnk), never content
            }
            if let Some(name) = base.strip_prefix(b".wh.") {
                let victim = if parent.is_empty() {
                    name.to_vec()
                } else {
                    [parent, b"/", name].concat()
                };
                self.remove_tree(&victim);
                continue;
            }

            let mut node = Node {
                kind: NodeKind::File,
                mode: entry.mode,
                uid: entry.uid,
                gid: entry.gid,
                mtime: entry.mtime,
                size: 0,
                sha256: None,
                link: None,
                dev: entry.dev,
                xattrs: entry.xattrs.clone(),
                inode: next_inode(),
            };
            match entry.entry_type {
                EntryType::Directory => {
                    node.kind = NodeKind::Dir;
                    if self.0.get(&path).is_some_and(|n| n.kind != NodeKind::Dir) {
                        self.remove_tree(&path);
                    }
                }
                EntryType::Regular | EntryType::Continuous => {
                    node.size = entry.data.len() as u64;
                    node.sha256 = Some(sha256_hex(&entry.data));
                    self.remove_tree(&path);
                }
                EntryType::Symlink => {
                    node.kind = NodeKind::Symlink;
                    node.link = Some(entry.link.clone().expect("symlink without target"));
                    self.remove_tree(&path);
                }
                EntryType::Char => {
                    node.kind = NodeKind::CharDev;
                    self.remove_tree(&path);
                }
                EntryType::Block => {
                    node.kind = NodeKind::BlockDev;
                    self.remove_tree(&path);
                }
                EntryType::Fifo => {
                    node.kind = NodeKind::Fifo;
                    self.remove_tree(&path);
                }
                EntryType::Link => {
                    let target = entry.link.as_deref().expect("hardlink without target");
                    let target = normalize(target)
                        .unwrap_or_else(|| panic!("hardlink {} points at the root", show(&path)));
                    let inode = match self.0.get(&target) {
                        Some(n) if n.kind != NodeKind::Dir => n.inode,
                        Some(_) => {
                            panic!("hardlink {} to directory {}", show(&path), show(&target))
                        }
                        None => panic!(
                            "hardlink {} -> {}: target not in the view",
                            show(&path),
                            show(&target)
                        ),
                    };
                    // The engine applies a link header's owner, mode, mtime
                    // and xattrs to the shared inode, i.e. to every name.
                    for n in self.0.values_mut().filter(|n| n.inode == inode) {
                        n.mode = entry.mode;
                        n.uid = entry.uid;
                        n.gid = entry.gid;
                        n.mtime = entry.mtime;
                        n.xattrs.extend(entry.xattrs.clone());
                    }
                    node = self.0[&target].clone();
                    if path != target {
                        self.remove_tree(&path);
                    }
                }
                other => panic!("unsupported tar entry type {other:?} for {}", show(&path)),
            }
            self.0.insert(path.clone(), node);
            added.insert(path);
        }
    }

    /// Sets of two or more paths that are one inode.
    pub fn hardlink_groups(&self) -> BTreeSet<BTreeSet<Vec<u8>>> {
        let mut by_inode: BTreeMap<u64, BTreeSet<Vec<u8>>> = BTreeMap::new();
        for (path, node) in &self.0 {
            if node.kind != NodeKind::Dir {
                by_inode.entry(node.inode).or_default().insert(path.clone());
            }
        }
        by_inode.into_values().filter(|g| g.len() > 1).collect()
    }
}

/// One member of a tar as a reader that honours PAX and GNU extensions
/// sees it, with the extension records already applied.
#[derive(Debug, Clone)]
pub struct TarEntry {
    /// As written (not normalized), from PAX `path`, a GNU long name, or
    /// the header.
    pub path: Vec<u8>,
    pub entry_type: EntryType,
    pub link: Option<Vec<u8>>,
    /// Permission and special bits only.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: i64,
    pub dev: Option<(u32, u32)>,
    /// Every PAX record of the member, in order, raw.
    pub pax: Vec<(Vec<u8>, Vec<u8>)>,
    /// From `SCHILY.xattr.<name>` records.
    pub xattrs: BTreeMap<String, Vec<u8>>,
    pub data: Vec<u8>,
}

/// Parses PAX records by their length prefix. (tar 0.4's own parser splits
/// on '\n', which breaks binary values such as capability xattrs that
/// contain 0x0a, so it is not used.)
pub fn parse_pax_records(data: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut records = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let bad = || panic!("malformed PAX records: {}", data.escape_ascii());
        let space = rest.iter().position(|&b| b == b' ').unwrap_or_else(bad);
        let len: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(bad);
        if len <= space + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            bad();
        }
        let record = &rest[space + 1..len - 1];
        let eq = record.iter().position(|&b| b == b'=').unwrap_or_else(bad);
        records.push((record[..eq].to_vec(), record[eq + 1..].to_vec()));
        rest = &rest[len..];
    }
    records
}

fn strip_nuls(mut v: Vec<u8>) -> Vec<u8> {
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}

/// Reads every member of an uncompressed tar, applying PAX (local) and GNU
/// long-name/long-link extensions to the member they describe.
pub fn read_tar(bytes: &[u8]) -> Vec<TarEntry> {
    let mut out = Vec::new();
    let mut archive = tar::Archive::new(bytes);
    let mut pax: Option<Vec<(Vec<u8>, Vec<u8>)>> = None;
    let mut long_name: Option<Vec<u8>> = None;
    let mut long_link: Option<Vec<u8>> = None;
    let entries = archive.entries().expect("read tar").raw(true);
    for entry in entries {
        let mut entry = entry.expect("read tar member");
        let ty = entry.header().entry_type();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("read tar member data");
        match ty {
            EntryType::XHeader => {
                assert!(pax.is_none(), "two PAX headers for one member");
                pax = Some(parse_pax_records(&data));
                continue;
            }
            EntryType::XGlobalHeader => continue,
            EntryType::GNULongName => {
                long_name = Some(strip_nuls(data));
                continue;
            }
            EntryType::GNULongLink => {
                long_link = Some(strip_nuls(data));
                continue;
            }
            EntryType::GNUSparse => panic!("GNU sparse members are not supported"),
            _ => {}
        }
        let header = entry.header();
        let records = pax.take().unwrap_or_default();
        let find = |key: &[u8]| {
            records
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        let path = find(b"path")
            .or(long_name.take())
            .unwrap_or_else(|| header.path_bytes().into_owned());
        let number = |key: &[u8], fallback: u64| -> u64 {
            find(key).map_or(fallback, |v| {
                std::str::from_utf8(&v)
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .unwrap_or_else(|| panic!("bad PAX {} for {}", show(key), show(&path)))
            })
        };
        if let Some(size) = find(b"size") {
            assert_eq!(
                size,
                data.len().to_string().into_bytes(),
                "PAX size disagrees with the header of {}",
                show(&path)
            );
        }
        let link = find(b"linkpath")
            .or(long_link.take())
            .or_else(|| header.link_name_bytes().map(|l| l.into_owned()));
        let link = match ty {
            EntryType::Link | EntryType::Symlink => link,
            _ => None,
        };
        let mtime = match find(b"mtime") {
            Some(v) => parse_pax_time(&v, &path),
            None => i64::try_from(header.mtime().expect("mtime")).expect("mtime fits i64"),
        };
        let dev = match ty {
            EntryType::Char | EntryType::Block => Some((
                header
                    .device_major()
                    .expect("devmajor")
                    .expect("devmajor field"),
                header
                    .device_minor()
                    .expect("devminor")
                    .expect("devminor field"),
            )),
            _ => None,
        };
        let mut xattrs = BTreeMap::new();
        for (key, value) in &records {
            if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                let name = String::from_utf8(name.to_vec())
                    .unwrap_or_else(|_| panic!("non-UTF-8 xattr name on {}", show(&path)));
                xattrs.insert(name, value.clone());
            }
        }
        out.push(TarEntry {
            entry_type: ty,
            link,
            mode: header.mode().expect("mode") & 0o7777,
            uid: number(b"uid", header.uid().expect("uid")),
            gid: number(b"gid", header.gid().expect("gid")),
            mtime,
            dev,
            pax: records.clone(),
            xattrs,
            data,
            path,
        });
    }
    assert!(
        pax.is_none() && long_name.is_none() && long_link.is_none(),
        "tar ends with an extension header describing no member"
    );
    out
}

/// Whether `path` is covered by one of the ignore patterns: an exact path,
/// or `dir/**` for everything below `dir` (not `dir` itself; `**` alone
/// matches everything).
pub fn is_ignored(path: &[u8], ignore: &[&str]) -> bool {
    ignore.iter().any(|pat| {
        if let Some(dir) = pat.strip_suffix("**") {
            match normalize(dir.as_bytes()) {
                None => true,
                Some(dir) => is_under(path, &dir),
            }
        } else {
            normalize(pat.as_bytes()).is_some_and(|p| p == path)
        }
    })
}

fn describe_xattr(v: &[u8]) -> String {
    if v.len() > 64 {
        format!("{}... ({} bytes)", v[..64].escape_ascii(), v.len())
    } else {
        v.escape_ascii().to_string()
    }
}

/// Human-readable differences between two views: missing and extra paths,
/// per-field mismatches, and hardlink groups that differ. Paths matched by
/// `ignore` (see [`is_ignored`]) are skipped everywhere.
pub fn diff_fs(expected: &FsView, actual: &FsView, ignore: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let keys: BTreeSet<&Vec<u8>> = expected.0.keys().chain(actual.0.keys()).collect();
    for key in keys {
        if is_ignored(key, ignore) {
            continue;
        }
        let p = show(key);
        let (e, a) = match (expected.0.get(key), actual.0.get(key)) {
            (Some(e), Some(a)) => (e, a),
            (Some(e), None) => {
                out.push(format!("missing: {p} ({:?})", e.kind));
                continue;
            }
            (None, Some(a)) => {
                out.push(format!("extra: {p} ({:?})", a.kind));
                continue;
            }
            (None, None) => unreachable!(),
        };
        if e.kind != a.kind {
            out.push(format!("{p}: kind {:?} != {:?}", e.kind, a.kind));
            continue;
        }
        let mut field = |name: &str, ev: String, av: String| {
            if ev != av {
                out.push(format!("{p}: {name} expected {ev}, got {av}"));
            }
        };
        field("mode", format!("{:04o}", e.mode), format!("{:04o}", a.mode));
        field("uid", e.uid.to_string(), a.uid.to_string());
        field("gid", e.gid.to_string(), a.gid.to_string());
        field("mtime", e.mtime.to_string(), a.mtime.to_string());
        field("size", e.size.to_string(), a.size.to_string());
        field(
            "sha256",
            format!("{:?}", e.sha256),
            format!("{:?}", a.sha256),
        );
        field(
            "link target",
            format!("{:?}", e.link.as_deref().map(show)),
            format!("{:?}", a.link.as_deref().map(show)),
        );
        field("device", format!("{:?}", e.dev), format!("{:?}", a.dev));
        let names: BTreeSet<&String> = e.xattrs.keys().chain(a.xattrs.keys()).collect();
        for name in names {
            match (e.xattrs.get(name), a.xattrs.get(name)) {
                (Some(_), None) => out.push(format!("{p}: xattr {name} missing")),
                (None, Some(v)) => {
                    out.push(format!("{p}: extra xattr {name}={}", describe_xattr(v)))
                }
                (Some(ev), Some(av)) if ev != av => out.push(format!(
                    "{p}: xattr {name} expected {}, got {}",
                    describe_xattr(ev),
                    describe_xattr(av)
                )),
                _ => {}
            }
        }
    }

    let groups = |view: &FsView| -> BTreeSet<BTreeSet<Vec<u8>>> {
        view.hardlink_groups()
            .into_iter()
            .map(|g| g.into_iter().filter(|p| !is_ignored(p, ignore)).collect())
            .filter(|g: &BTreeSet<Vec<u8>>| g.len() > 1)
            .collect()
    };
    let show_group =
        |g: &BTreeSet<Vec<u8>>| g.iter().map(|p| show(p)).collect::<Vec<_>>().join(", ");
    let (eg, ag) = (groups(expected), groups(actual));
    for g in eg.difference(&ag) {
        out.push(format!("hardlink group missing: [{}]", show_group(g)));
    }
    for g in ag.difference(&eg) {
        out.push(format!("unexpected hardlink group: [{}]", show_group(g)));
    }
    out
}

/// Panics listing every difference between the views.
#[track_caller]
pub fn assert_same_fs(expected: &FsView, actual: &FsView, ignore: &[&str]) {
    let diffs = diff_fs(expected, actual, ignore);
    if !diffs.is_empty() {
        panic!(
            "filesystems differ ({} differences):\n  {}",
            diffs.len(),
            diffs.join("\n  ")
        );
    }
}

/// An image as `docker save` wrote it: the config and the uncompressed
/// layer tars, bottom-up.
#[derive(Debug, Clone)]
pub struct SavedImage {
    pub config: Value,
    /// `sha256:` + digest of the config exactly as saved: the image ID on a
    /// graphdriver engine, and on the containerd store too when the engine
    /// kept the loaded config byte for byte.
    pub config_digest: String,
    pub layers: Vec<Vec<u8>>,
    /// Per layer, whether the archive stored it gzip-compressed (as the
    /// containerd image store does).
    pub gzipped: Vec<bool>,
    /// Per layer, whether the archive stored it zstd-compressed.
    pub zstd: Vec<bool>,
}

impl SavedImage {
    pub fn fs(&self) -> FsView {
        FsView::from_layer_tars(&self.layers)
    }
}

/// Regular files and symlinks of a small outer archive, by normalized name.
fn read_outer(bytes: &[u8]) -> HashMap<String, Result<Vec<u8>, String>> {
    let mut files = HashMap::new();
    let mut archive = tar::Archive::new(bytes);
    for entry in archive.entries().expect("read saved archive") {
        let mut entry = entry.expect("read saved archive entry");
        let name = String::from_utf8(normalize(&entry.path_bytes()).unwrap_or_default())
            .expect("saved archive member names are ASCII");
        match entry.header().entry_type() {
            EntryType::Regular => {
                let mut data = Vec::new();
                entry.read_to_end(&mut data).expect("read archive member");
                files.insert(name, Ok(data));
            }
            EntryType::Symlink | EntryType::Link => {
                let target = entry.link_name_bytes().expect("link target").into_owned();
                let target = String::from_utf8(target).expect("ASCII link target");
                let resolved = if entry.header().entry_type() == EntryType::Link {
                    target
                } else {
                    let dir = name.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                    let mut parts: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
                    for part in target.split('/') {
                        match part {
                            "" | "." => {}
                            ".." => {
                                parts.pop();
                            }
                            p => parts.push(p),
                        }
                    }
                    parts.join("/")
                };
                files.insert(name, Err(resolved));
            }
            _ => {}
        }
    }
    files
}

fn member(files: &HashMap<String, Result<Vec<u8>, String>>, name: &str) -> Vec<u8> {
    let mut name = name.trim_start_matches("./").to_string();
    for _ in 0..16 {
        match files.get(&name) {
            Some(Ok(data)) => return data.clone(),
            Some(Err(target)) => name = target.clone(),
            None => panic!("saved archive has no member {name}"),
        }
    }
    panic!("saved archive member {name}: link loop")
}

fn json_member(files: &HashMap<String, Result<Vec<u8>, String>>, name: &str) -> Value {
    serde_json::from_slice(&member(files, name))
        .unwrap_or_else(|e| panic!("saved archive member {name} is not JSON: {e}"))
}

fn blob_path(digest: &str) -> String {
    let (algo, hex) = digest
        .split_once(':')
        .unwrap_or_else(|| panic!("bad digest {digest}"));
    format!("blobs/{algo}/{hex}")
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// A layer as stored in a saved archive, uncompressed: gzip (what the
/// containerd image store saves) and zstd (what it keeps of a zstd upload)
/// are recognised by their magic bytes and decompressed; anything else is
/// taken as a plain tar.
pub fn decompress_layer(data: Vec<u8>, name: &str) -> Vec<u8> {
    if data.starts_with(&GZIP_MAGIC) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&data[..])
            .read_to_end(&mut out)
            .unwrap_or_else(|e| panic!("layer {name}: bad gzip: {e}"));
        out
    } else if data.starts_with(&ZSTD_MAGIC) {
        zstd::stream::decode_all(&data[..])
            .unwrap_or_else(|e| panic!("layer {name}: bad zstd: {e}"))
    } else {
        data
    }
}

/// Parses a `docker save` archive: the legacy docker-archive layout via
/// `manifest.json` (engines up to 24, and newer ones too, whose
/// `manifest.json` then points into the OCI layout's `blobs/`), else the OCI
/// layout alone. Compressed layers are decompressed (see
/// [`decompress_layer`]); each must match its diff_id once uncompressed.
pub fn parse_saved_archive(bytes: &[u8]) -> SavedImage {
    let files = read_outer(bytes);
    let (config_name, layer_names) = if files.contains_key("manifest.json") {
        let manifest = json_member(&files, "manifest.json");
        let list = manifest.as_array().expect("manifest.json is an array");
        assert_eq!(
            list.len(),
            1,
            "expected one image in the archive: {manifest}"
        );
        let config = list[0]["Config"].as_str().expect("Config").to_string();
        let layers: Vec<String> = list[0]["Layers"]
            .as_array()
            .expect("Layers")
            .iter()
            .map(|l| l.as_str().expect("layer path").to_string())
            .collect();
        (config, layers)
    } else if files.contains_key("index.json") {
        let index = json_member(&files, "index.json");
        let manifests = index["manifests"].as_array().expect("index manifests");
        // One entry per name when an image is saved under several names.
        let digests: BTreeSet<&str> = manifests
            .iter()
            .map(|m| m["digest"].as_str().expect("digest"))
            .collect();
        assert_eq!(
            digests.len(),
            1,
            "expected one image in index.json: {index}"
        );
        let digest = digests.into_iter().next().expect("one digest");
        let manifest = json_member(&files, &blob_path(digest));
        assert!(
            manifest["layers"].is_array(),
            "index.json points at an index, not a manifest (multi-platform save?): {manifest}"
        );
        let config = blob_path(
            manifest["config"]["digest"]
                .as_str()
                .expect("config digest"),
        );
        let layers = manifest["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(|l| blob_path(l["digest"].as_str().expect("layer digest")))
            .collect();
        (config, layers)
    } else {
        panic!("saved archive has neither manifest.json nor index.json");
    };

    saved_from(&files, &config_name, &layer_names)
}

/// The image of config `config_name` over `layer_names` in a saved archive.
fn saved_from(
    files: &HashMap<String, Result<Vec<u8>, String>>,
    config_name: &str,
    layer_names: &[String],
) -> SavedImage {
    let config_bytes = member(files, config_name);
    let config_digest = format!("sha256:{}", sha256_hex(&config_bytes));
    check_blob_digest(config_name, &config_bytes);
    let config: Value = serde_json::from_slice(&config_bytes)
        .unwrap_or_else(|e| panic!("saved config {config_name} is not JSON: {e}"));
    let diff_ids = config["rootfs"]["diff_ids"]
        .as_array()
        .expect("config rootfs.diff_ids");
    assert_eq!(
        diff_ids.len(),
        layer_names.len(),
        "diff_ids and layers disagree"
    );
    let mut layers = Vec::new();
    let mut gzipped = Vec::new();
    let mut zstd = Vec::new();
    for (name, diff_id) in layer_names.iter().zip(diff_ids) {
        let stored = member(files, name);
        check_blob_digest(name, &stored);
        gzipped.push(stored.starts_with(&GZIP_MAGIC));
        zstd.push(stored.starts_with(&ZSTD_MAGIC));
        let data = decompress_layer(stored, name);
        let actual = format!("sha256:{}", sha256_hex(&data));
        assert_eq!(
            diff_id.as_str(),
            Some(actual.as_str()),
            "layer {name} does not match its diff_id once uncompressed"
        );
        layers.push(data);
    }
    SavedImage {
        config,
        config_digest,
        layers,
        gzipped,
        zstd,
    }
}

/// One platform of a multi-platform image in a saved archive.
#[derive(Debug)]
pub struct SavedPlatform {
    /// `os/architecture[/variant]` as its index entry says.
    pub platform: String,
    pub manifest: String,
    pub image: SavedImage,
}

/// What `index.json` of a saved OCI layout names.
#[derive(Debug)]
pub struct SavedIndex {
    /// The nested index's digest when it names one, `None` for a manifest.
    pub index: Option<String>,
    /// Image platforms whose content the archive holds, in index order.
    pub platforms: Vec<SavedPlatform>,
    /// Every entry's platform as the index lists it (`unknown/unknown` for
    /// attestations), present or not.
    pub listed: Vec<String>,
}

/// Parses a saved OCI layout through `index.json` alone, a nested index
/// and all: every platform it holds, each as a [`SavedImage`].
pub fn parse_saved_platforms(bytes: &[u8]) -> SavedIndex {
    let files = read_outer(bytes);
    let top = json_member(&files, "index.json");
    let digest = top["manifests"][0]["digest"]
        .as_str()
        .expect("index.json names a digest");
    let target = json_member(&files, &blob_path(digest));
    let platform_of = |p: &Value| {
        let mut s = format!(
            "{}/{}",
            p["os"].as_str().unwrap_or(""),
            p["architecture"].as_str().unwrap_or("")
        );
        if let Some(v) = p["variant"].as_str() {
            s = format!("{s}/{v}");
        }
        s
    };
    let image_of = |manifest: &Value| {
        let config = blob_path(
            manifest["config"]["digest"]
                .as_str()
                .expect("config digest"),
        );
        let layers: Vec<String> = manifest["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(|l| blob_path(l["digest"].as_str().expect("layer digest")))
            .collect();
        saved_from(&files, &config, &layers)
    };
    if target["layers"].is_array() {
        let image = image_of(&target);
        let platform = platform_of(&image.config);
        return SavedIndex {
            index: None,
            listed: vec![platform.clone()],
            platforms: vec![SavedPlatform {
                platform,
                manifest: digest.to_owned(),
                image,
            }],
        };
    }
    let entries = target["manifests"]
        .as_array()
        .expect("an index's manifests");
    let mut platforms = Vec::new();
    for entry in entries {
        let manifest = entry["digest"].as_str().expect("digest");
        let attestation = entry["annotations"]["vnd.docker.reference.type"].is_string();
        if attestation || !files.contains_key(&blob_path(manifest)) {
            continue;
        }
        platforms.push(SavedPlatform {
            platform: platform_of(&entry["platform"]),
            manifest: manifest.to_owned(),
            image: image_of(&json_member(&files, &blob_path(manifest))),
        });
    }
    SavedIndex {
        index: Some(digest.to_owned()),
        platforms,
        listed: entries
            .iter()
            .map(|e| platform_of(&e["platform"]))
            .collect(),
    }
}

/// `docker save <reference>` read through its `index.json`: every platform
/// the store has of it (containerd store, or a graphdriver from Engine 25).
pub fn save_platforms(reference: &str) -> SavedIndex {
    let bytes = temp_file_output(&["save", reference], &format!("docker save {reference}"));
    parse_saved_platforms(&bytes)
}

/// A member stored under `blobs/sha256/<hex>` must have that digest.
fn check_blob_digest(name: &str, data: &[u8]) {
    if let Some(hex) = name.trim_start_matches("./").strip_prefix("blobs/sha256/") {
        assert_eq!(
            sha256_hex(data),
            hex,
            "saved archive member {name} does not match its digest"
        );
    }
}

fn temp_file_output(args: &[&str], what: &str) -> Vec<u8> {
    let dir = tempfile::Builder::new()
        .prefix("dflt-save-")
        .tempdir()
        .expect("temp dir");
    let path = dir.path().join("out.tar");
    let path_str = path.to_str().expect("UTF-8 temp path");
    let mut all = args.to_vec();
    all.extend_from_slice(&["-o", path_str]);
    let out = docker(&all);
    check_ok(&out, what);
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {what} output: {e}"))
}

/// `docker save <reference>`, parsed.
pub fn save_image(reference: &str) -> SavedImage {
    let bytes = temp_file_output(&["save", reference], &format!("docker save {reference}"));
    parse_saved_archive(&bytes)
}

/// `docker -H <host> save <reference>`, parsed: an image on another engine.
pub fn save_image_on(host: &str, reference: &str) -> SavedImage {
    let what = format!("docker -H {host} save {reference}");
    parse_saved_archive(&temp_file_output(&["-H", host, "save", reference], &what))
}

/// The merged filesystem of an image as stored by the engine.
pub fn image_fs(reference: &str) -> FsView {
    save_image(reference).fs()
}

/// Paths a container's init layer puts in every export, and the
/// directories that hold them: the plugin drops the ones the image lacks and
/// cannot see the image's own version where it had one (documented limits).
pub const PLACEHOLDERS: &[&str] = &[
    ".dockerenv",
    "etc/hosts",
    "etc/hostname",
    "etc/resolv.conf",
    "etc/mtab",
    "dev/console",
    "dev",
    "dev/pts",
    "dev/shm",
    "proc",
    "sys",
    "etc",
];

/// Paths the engine adds to every container (its init layer and mounts);
/// pass to [`diff_fs`] when comparing a [`container_fs`] with an image view.
pub const CONTAINER_NOISE: &[&str] = &[
    ".dockerenv",
    "etc/hostname",
    "etc/hosts",
    "etc/resolv.conf",
    "etc/mtab",
    "dev",
    "dev/**",
    "proc",
    "sys",
    "etc",
];

/// What a container of the image really sees, via `docker create` +
/// `docker export` (the container is removed afterwards). This is where
/// properties the storage driver dropped on extraction show up.
pub fn container_fs(reference: &str) -> FsView {
    // The command is never run; it only has to be present for `create`.
    let ctr = TestContainer::create(reference, &["/fixture-never-runs"]);
    let bytes = temp_file_output(&["export", &ctr.id], &format!("docker export {}", ctr.id));
    FsView::from_tar(&bytes)
}
