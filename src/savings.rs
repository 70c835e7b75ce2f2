//! What flattening would gain. Reads the archive `docker save` streams (the
//! docker-archive of graphdriver engines or the OCI layout of the containerd
//! store; layers plain tar, gzip or zstd) once, front to back, keeping only file
//! lists, then merges the layers the way the engine does to find the bytes
//! that later layers delete or overwrite.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use serde::Serialize;

/// Archive members up to this size are kept in memory: the manifest, the
/// config, and small layers (which may be empty tars that no peek recognises).
const SMALL: u64 = 1 << 20;
/// How many wasted paths the report names.
pub const TOP_WASTED: usize = 10;

/// Why the archive could not be read. An I/O error is quoted, not returned
/// from `source()`: the flatten's message carries it whole.
#[derive(Debug, thiserror::Error)]
pub enum SavingsError {
    #[error("reading the image archive failed: {0}")]
    Io(std::io::Error),
    #[error("the image archive has no manifest.json")]
    NoManifest,
    #[error("the image archive's {what} is not valid: {detail}")]
    Invalid { what: String, detail: String },
    #[error("layer {0} named in the image archive's manifest is not in the archive")]
    MissingLayer(String),
}

impl From<std::io::Error> for SavingsError {
    fn from(e: std::io::Error) -> SavingsError {
        SavingsError::Io(e)
    }
}

/// One layer, as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Layer {
    /// 1-based position, bottom layer first.
    pub index: usize,
    pub diff_id: Option<String>,
    /// The build step that made it, from the image's history.
    pub created_by: Option<String>,
    /// Bytes of regular-file content the layer holds.
    pub size: u64,
    /// Entries that are not directories (files, links, devices, ...).
    pub files: u64,
    /// Paths the layer deletes from the layers below it.
    pub deletes: u64,
    /// Bytes of this layer's files that later layers delete or overwrite.
    pub wasted: u64,
}

/// A file whose bytes a later layer threw away.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Wasted {
    pub path: String,
    pub size: u64,
    /// The layer that added it.
    pub layer: usize,
    /// The layer that deleted or overwrote it.
    pub removed_by: usize,
}

/// The whole answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Savings {
    pub layers: Vec<Layer>,
    /// File bytes in all layers together: what the layers hold now.
    pub bytes_now: u64,
    /// File bytes of the merged filesystem: what one layer would hold.
    pub bytes_after: u64,
    pub wasted_bytes: u64,
    /// `wasted_bytes` as a share of `bytes_now`, to one decimal.
    pub wasted_percent: f64,
    /// Non-directory entries of the merged filesystem.
    pub files_after: u64,
    /// The largest wasted files, largest first.
    pub largest_wasted: Vec<Wasted>,
}

/// What a layer entry does to the filesystem below it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Change {
    Dir,
    /// Anything but a directory; `size` is its content (0 for links and devices).
    NonDir {
        size: u64,
    },
    /// `.wh.NAME`: removes NAME and what is under it.
    Whiteout,
    /// `.wh..wh..opq`: hides what lower layers have under the directory.
    Opaque,
}

type Changes = Vec<(Vec<u8>, Change)>;

/// Reads a whole `docker save` stream and works out the savings of the
/// image its `manifest.json` names.
pub fn analyze(reader: impl Read) -> Result<Savings, SavingsError> {
    let members = Members::read(reader)?;
    let manifest = members
        .small
        .get("manifest.json")
        .ok_or(SavingsError::NoManifest)?;
    let manifest: serde_json::Value = parse_json(manifest, "manifest.json")?;
    let image = manifest
        .get(0)
        .ok_or_else(|| invalid("manifest.json", "no image"))?;
    let config_path = image["Config"]
        .as_str()
        .ok_or_else(|| invalid("manifest.json", "no Config"))?;
    let config: serde_json::Value = match members.small.get(&member_name(config_path.as_bytes())) {
        Some(bytes) => parse_json(bytes, config_path)?,
        None => return Err(invalid(config_path, "missing")),
    };
    let paths: Vec<&str> = image["Layers"]
        .as_array()
        .ok_or_else(|| invalid("manifest.json", "no Layers"))?
        .iter()
        .map(|v| {
            v.as_str()
                .ok_or_else(|| invalid("manifest.json", "a layer is not a path"))
        })
        .collect::<Result<_, _>>()?;
    members.savings(&paths, &config)
}

/// Reads a whole `docker save` stream (an OCI layout) and works out the
/// savings of each of `images`: its layer blobs' digests, bottom first, and
/// its config, as IMAGE's index gives them (a multi-platform image's save
/// holds every platform the store has).
pub fn analyze_images(
    reader: impl Read,
    images: &[(Vec<String>, serde_json::Value)],
) -> Result<Vec<Savings>, SavingsError> {
    let members = Members::read(reader)?;
    images
        .iter()
        .map(|(layers, config)| {
            let paths: Vec<String> = layers
                .iter()
                .map(|d| format!("blobs/sha256/{}", d.trim_start_matches("sha256:")))
                .collect();
            let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
            members.savings(&paths, config)
        })
        .collect()
}

/// A save stream's members as the analysis needs them: every layer's
/// changes, small members whole, and the links between members.
#[derive(Default)]
struct Members {
    layers: HashMap<String, Changes>,
    small: HashMap<String, Vec<u8>>,
    links: HashMap<String, String>,
}

impl Members {
    fn read(reader: impl Read) -> Result<Members, SavingsError> {
        let mut members = Members::default();
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries()? {
            let mut entry = entry?;
            let name = member_name(&entry.path_bytes());
            match entry.header().entry_type() {
                // `docker save` links a layer that appears twice to its first copy.
                tar::EntryType::Symlink => {
                    if let Some(target) = entry.link_name_bytes() {
                        members
                            .links
                            .insert(name.clone(), resolve_link(&name, &target));
                    }
                }
                kind if kind.is_file() => {
                    if entry.size() <= SMALL {
                        let mut bytes = Vec::with_capacity(entry.size() as usize);
                        entry.read_to_end(&mut bytes)?;
                        members.small.insert(name, bytes);
                    } else if let Some(changes) = read_layer(&mut entry)? {
                        members.layers.insert(name, changes);
                    }
                }
                _ => {}
            }
        }
        Ok(members)
    }

    /// The savings of the image whose layers are the members `paths`,
    /// bottom first, and whose config (for the history) is `config`.
    fn savings(&self, paths: &[&str], config: &serde_json::Value) -> Result<Savings, SavingsError> {
        let diff_ids: Vec<Option<String>> = config["rootfs"]["diff_ids"]
            .as_array()
            .map(|ids| ids.iter().map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        // History entries that made no layer (ENV, CMD, ...) are marked empty.
        let steps: Vec<Option<String>> = config["history"]
            .as_array()
            .map(|h| {
                h.iter()
                    .filter(|e| e["empty_layer"] != serde_json::Value::Bool(true))
                    .map(|e| e["created_by"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let mut ordered = Vec::with_capacity(paths.len());
        for path in paths {
            let mut name = member_name(path.as_bytes());
            for _ in 0..8 {
                match self.links.get(&name) {
                    Some(target) => name = target.clone(),
                    None => break,
                }
            }
            let changes = match (self.layers.get(&name), self.small.get(&name)) {
                (Some(changes), _) => changes.clone(),
                (None, Some(bytes)) => read_layer(&mut &bytes[..])?
                    .ok_or_else(|| invalid(path, "not a tar archive"))?,
                (None, None) => return Err(SavingsError::MissingLayer((*path).to_owned())),
            };
            ordered.push(changes);
        }
        let same_count = steps.len() == ordered.len();
        let mut savings = merge(&ordered);
        for (i, layer) in savings.layers.iter_mut().enumerate() {
            layer.diff_id = diff_ids.get(i).cloned().flatten();
            layer.created_by = if same_count { steps[i].clone() } else { None };
        }
        Ok(savings)
    }
}

/// Lists a layer's changes; `None` if the member is not a layer at all.
fn read_layer(member: &mut dyn Read) -> Result<Option<Changes>, SavingsError> {
    // A read may return less than a block, so take the head in full first.
    let mut head = Vec::with_capacity(512);
    (&mut *member).take(512).read_to_end(&mut head)?;
    let gzip = head.starts_with(&[0x1f, 0x8b]);
    let zstd = head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]);
    // A tar header, or the zero blocks of an empty tar.
    let tar = head.len() == 512 && (&head[257..262] == b"ustar" || head.iter().all(|&b| b == 0));
    let input = std::io::Cursor::new(head).chain(member);
    Ok(if gzip {
        Some(list_changes(flate2::read::MultiGzDecoder::new(input))?)
    } else if zstd {
        let decoder = zstd::stream::read::Decoder::new(input).map_err(SavingsError::Io)?;
        Some(list_changes(decoder)?)
    } else if tar {
        Some(list_changes(input)?)
    } else {
        None
    })
}

fn list_changes(layer: impl Read) -> std::io::Result<Changes> {
    let mut changes = Vec::new();
    let mut archive = tar::Archive::new(layer);
    for entry in archive.entries()? {
        let entry = entry?;
        // PAX global headers describe the archive, not a file (earlier
        // builds of this plugin began their layers with one).
        if entry.header().entry_type() == tar::EntryType::XGlobalHeader {
            continue;
        }
        let Some(path) = normalize(&entry.path_bytes()) else {
            continue;
        };
        let (parent, base) = match path.iter().rposition(|&b| b == b'/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => (&b""[..], &path[..]),
        };
        let change = if base == b".wh..wh..opq" {
            (parent.to_vec(), Change::Opaque)
        } else if base.starts_with(b".wh..wh.") {
            continue; // aufs bookkeeping, not a path
        } else if let Some(victim) = base.strip_prefix(b".wh.") {
            (join(parent, victim), Change::Whiteout)
        } else if entry.header().entry_type().is_dir() {
            (path, Change::Dir)
        } else {
            let size = if entry.header().entry_type().is_file() {
                entry.size()
            } else {
                0
            };
            (path, Change::NonDir { size })
        };
        changes.push(change);
    }
    Ok(changes)
}

/// A path in a merged filesystem: what is there, and which layer put it there.
struct Node {
    layer: usize,
    size: u64,
    dir: bool,
}

/// Applies the layers in order, as the engine stacks them.
fn merge(layers: &[Changes]) -> Savings {
    let mut m = Merge {
        fs: BTreeMap::new(),
        report: (0..layers.len())
            .map(|i| Layer {
                index: i + 1,
                diff_id: None,
                created_by: None,
                size: 0,
                files: 0,
                deletes: 0,
                wasted: 0,
            })
            .collect(),
        wasted: Vec::new(),
    };
    for (i, changes) in layers.iter().enumerate() {
        for (path, change) in changes {
            match change {
                Change::Whiteout => {
                    m.report[i].deletes += 1;
                    m.throw(path, true, i);
                }
                Change::Opaque => m.throw(path, false, i),
                Change::Dir => {
                    if m.fs.get(path).is_some_and(|n| !n.dir) {
                        m.throw(path, true, i);
                    }
                    m.fs.entry(path.clone()).or_insert(Node {
                        layer: i,
                        size: 0,
                        dir: true,
                    });
                }
                Change::NonDir { size } => {
                    m.report[i].files += 1;
                    m.report[i].size += size;
                    // A file over a directory replaces the whole tree.
                    m.throw(path, true, i);
                    let node = Node {
                        layer: i,
                        size: *size,
                        dir: false,
                    };
                    m.fs.insert(path.clone(), node);
                }
            }
        }
    }
    let Merge {
        fs,
        report,
        mut wasted,
    } = m;
    wasted.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.path.cmp(&b.path)));
    let wasted_bytes = wasted.iter().map(|w| w.size).sum();
    wasted.truncate(TOP_WASTED);
    let survivors = fs.values().filter(|n| !n.dir);
    let (files_after, bytes_after) = survivors.fold((0, 0), |(n, b), node| (n + 1, b + node.size));
    let bytes_now: u64 = report.iter().map(|l| l.size).sum();
    let wasted_percent = if bytes_now == 0 {
        0.0
    } else {
        (wasted_bytes as f64 * 1000.0 / bytes_now as f64).round() / 10.0
    };
    Savings {
        bytes_now,
        layers: report,
        bytes_after,
        wasted_bytes,
        wasted_percent,
        files_after,
        largest_wasted: wasted,
    }
}

struct Merge {
    fs: BTreeMap<Vec<u8>, Node>,
    report: Vec<Layer>,
    /// Every wasted file; sorted and cut to the top ones at the end.
    wasted: Vec<Wasted>,
}

impl Merge {
    /// Layer `by` removes what lower layers have under `path` (and at
    /// `path` itself if `itself`).
    fn throw(&mut self, path: &[u8], itself: bool, by: usize) {
        let mut victims: Vec<Vec<u8>> = descendants(&self.fs, path)
            .filter(|(_, node)| node.layer < by)
            .map(|(p, _)| p.clone())
            .collect();
        if itself && self.fs.get(path).is_some_and(|n| n.layer < by) {
            victims.push(path.to_vec());
        }
        for victim in victims {
            let node = self.fs.remove(&victim).expect("listed above");
            if !node.dir && node.size > 0 {
                self.report[node.layer].wasted += node.size;
                self.wasted.push(Wasted {
                    path: show(&victim),
                    size: node.size,
                    layer: node.layer + 1,
                    removed_by: by + 1,
                });
            }
        }
    }
}

fn descendants<'a>(
    fs: &'a BTreeMap<Vec<u8>, Node>,
    dir: &[u8],
) -> impl Iterator<Item = (&'a Vec<u8>, &'a Node)> + 'a {
    let prefix = if dir.is_empty() {
        Vec::new()
    } else {
        join(dir, b"")
    };
    fs.range(prefix.clone()..)
        .take_while(move |(p, _)| p.starts_with(&prefix))
        .filter(|(p, _)| !p.is_empty())
}

/// `a/b/` and `./a/b` are `a/b`; the root itself is no entry.
fn normalize(path: &[u8]) -> Option<Vec<u8>> {
    let parts: Vec<&[u8]> = path
        .split(|&b| b == b'/')
        .filter(|p| !p.is_empty() && *p != b".")
        .collect();
    (!parts.is_empty()).then(|| parts.join(&b'/'))
}

fn member_name(path: &[u8]) -> String {
    String::from_utf8_lossy(&normalize(path).unwrap_or_default()).into_owned()
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        return name.to_vec();
    }
    let mut p = dir.to_vec();
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

/// The member a symlink inside the archive points at.
fn resolve_link(name: &str, target: &[u8]) -> String {
    let target = String::from_utf8_lossy(target);
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        name.split('/').collect()
    };
    parts.pop(); // the link's own name
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
}

fn show(path: &[u8]) -> String {
    format!("/{}", String::from_utf8_lossy(path))
}

fn parse_json(bytes: &[u8], what: &str) -> Result<serde_json::Value, SavingsError> {
    serde_json::from_slice(bytes).map_err(|e| invalid(what, &e.to_string()))
}

fn invalid(what: &str, detail: &str) -> SavingsError {
    SavingsError::Invalid {
        what: what.to_owned(),
        detail: detail.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    enum E<'a> {
        Dir(&'a str),
        File(&'a str, usize),
        Link(&'a str, &'a str),
    }

    fn layer(entries: &[E<'_>]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            let mut h = tar::Header::new_ustar();
            match e {
                E::Dir(p) => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    h.set_mode(0o755);
                    b.append_data(&mut h, p, &[][..]).unwrap();
                }
                E::File(p, n) => {
                    h.set_size(*n as u64);
                    h.set_mode(0o644);
                    b.append_data(&mut h, p, &vec![7u8; *n][..]).unwrap();
                }
                E::Link(p, t) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    b.append_link(&mut h, p, t).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(data).unwrap();
        gz.finish().unwrap()
    }

    fn member(b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).unwrap();
    }

    /// A docker-archive with the manifest last, as `docker save` writes it.
    fn save(layers: &[(&str, Vec<u8>)], history: serde_json::Value) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in layers {
            member(&mut b, name, data);
        }
        let config = serde_json::json!({
            "rootfs": {"type": "layers", "diff_ids": layers.iter().enumerate()
                .map(|(i, _)| format!("sha256:{i}")).collect::<Vec<_>>()},
            "history": history,
        });
        member(&mut b, "cfg.json", config.to_string().as_bytes());
        let manifest = serde_json::json!([{
            "Config": "cfg.json",
            "Layers": layers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        }]);
        member(&mut b, "manifest.json", manifest.to_string().as_bytes());
        b.into_inner().unwrap()
    }

    #[test]
    fn each_platform_of_an_oci_layout_is_analysed_on_its_own() {
        let shared = layer(&[E::Dir("d/"), E::File("d/base", 100)]);
        let amd = layer(&[E::File("d/.wh.base", 0), E::File("d/amd", 7)]);
        let arm = layer(&[E::File("d/arm", 9)]);
        let blob = |l: &[u8]| format!("sha256:{:x}", sha2::Sha256::digest(l));
        use sha2::Digest;
        let mut b = tar::Builder::new(Vec::new());
        for l in [&shared, &amd, &arm] {
            member(&mut b, &format!("blobs/sha256/{}", &blob(l)[7..]), l);
        }
        member(&mut b, "index.json", b"{}");
        let archive = b.into_inner().unwrap();
        let config = |by: &str| {
            serde_json::json!({"rootfs": {"diff_ids": ["sha256:s", format!("sha256:{by}")]},
                               "history": [{"created_by": "base"}, {"created_by": by}]})
        };
        let found = analyze_images(
            &archive[..],
            &[
                (vec![blob(&shared), blob(&amd)], config("amd")),
                (vec![blob(&shared), blob(&arm)], config("arm")),
            ],
        )
        .unwrap();
        assert_eq!((found[0].wasted_bytes, found[0].bytes_after), (100, 7));
        assert_eq!((found[1].wasted_bytes, found[1].bytes_after), (0, 109));
        assert_eq!(found[1].layers[1].created_by.as_deref(), Some("arm"));
        let missing = analyze_images(&archive[..], &[(vec!["sha256:00".into()], config("x"))]);
        assert!(
            matches!(missing, Err(SavingsError::MissingLayer(_))),
            "{missing:?}"
        );
    }

    #[test]
    fn deletes_and_overwrites_are_wasted_and_attributed() {
        let l1 = layer(&[
            E::Dir("app/"),
            E::File("app/big", 5000),
            E::File("app/keep", 10),
            E::Dir("cache/"),
            E::File("cache/a", 300),
            E::File("cache/sub/b", 200),
        ]);
        let l2 = layer(&[E::File("app/.wh.big", 0), E::File("app/keep", 20)]);
        let l3 = layer(&[
            E::Dir("cache/"),
            E::File("cache/.wh..wh..opq", 0),
            E::File("cache/new", 7),
        ]);
        let history = serde_json::json!([
            {"created_by": "ADD base"},
            {"created_by": "ENV X=1", "empty_layer": true},
            {"created_by": "RUN rm big"},
            {"created_by": "RUN reset cache"},
        ]);
        let archive = save(
            &[
                ("1/layer.tar", l1),
                ("2/layer.tar", l2),
                ("3/layer.tar", l3),
            ],
            history,
        );
        let s = analyze(&archive[..]).unwrap();
        assert_eq!(s.bytes_now, 5000 + 10 + 300 + 200 + 20 + 7);
        assert_eq!(s.wasted_bytes, 5000 + 10 + 300 + 200);
        assert_eq!(s.bytes_after, 20 + 7);
        assert_eq!(s.bytes_now - s.wasted_bytes, s.bytes_after);
        assert_eq!(s.files_after, 2);
        assert_eq!(s.layers[0].wasted, 5510);
        assert_eq!(s.layers[1].deletes, 1);
        assert_eq!(s.layers[2].created_by.as_deref(), Some("RUN reset cache"));
        assert_eq!(s.layers[1].diff_id.as_deref(), Some("sha256:1"));
        assert_eq!(
            s.largest_wasted[0],
            Wasted {
                path: "/app/big".into(),
                size: 5000,
                layer: 1,
                removed_by: 2
            }
        );
        let removed_by: Vec<_> = s
            .largest_wasted
            .iter()
            .map(|w| (w.path.as_str(), w.removed_by))
            .collect();
        assert_eq!(
            removed_by,
            [
                ("/app/big", 2),
                ("/cache/a", 3),
                ("/cache/sub/b", 3),
                ("/app/keep", 2)
            ]
        );
    }

    #[test]
    fn a_file_over_a_directory_wastes_the_tree_and_links_count_as_files() {
        let l1 = layer(&[E::Dir("d/"), E::File("d/x", 40), E::Link("l", "d/x")]);
        let l2 = layer(&[E::File("d", 1), E::Dir("l/")]);
        // As docker-flatten's own layers begin: the root with a comment.
        let root = crate::tarfilter::Root {
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 0,
        };
        let l2 = [
            &crate::tarfilter::root_entry(root, Some("run x"))[..],
            &l2[..],
        ]
        .concat();
        // As earlier builds' layers began: a global header.
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XGlobalHeader);
        h.set_path("pax_global_header").unwrap();
        h.set_size(15);
        h.set_cksum();
        let mut global = h.as_bytes().to_vec();
        global.extend_from_slice(b"15 comment=run\n");
        global.resize(1024, 0);
        let l1 = [&global[..], &l1[..]].concat();
        let s = analyze(&save(&[("a.tar", l1), ("b.tar", l2)], serde_json::json!([]))[..]).unwrap();
        assert_eq!((s.wasted_bytes, s.bytes_after, s.files_after), (40, 1, 1));
        assert_eq!(s.layers[0].files, 2);
        assert!(
            s.layers[0].created_by.is_none(),
            "no history, no step names"
        );
    }

    #[test]
    fn reads_gzip_and_zstd_layers_large_layers_and_linked_duplicates() {
        // Over SMALL, so it is read as a stream rather than kept.
        let big = layer(&[E::File("blob", (SMALL + 4096) as usize)]);
        let gz = gzip(&layer(&[E::File("g", 3)]));
        let zst = zstd::encode_all(&layer(&[E::File("z", 5)])[..], 1).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        member(&mut b, "blobs/sha256/aa", &big);
        member(&mut b, "blobs/sha256/bb", &gz);
        member(&mut b, "blobs/sha256/cc", &zst);
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "dup/layer.tar", "../blobs/sha256/aa")
            .unwrap();
        member(&mut b, "c.json", br#"{"rootfs":{"diff_ids":[]}}"#);
        let manifest = r#"[{"Config":"c.json","Layers":["blobs/sha256/aa","blobs/sha256/bb","blobs/sha256/cc","dup/layer.tar"]}]"#;
        member(&mut b, "manifest.json", manifest.as_bytes());
        let s = analyze(&b.into_inner().unwrap()[..]).unwrap();
        assert_eq!(s.layers.len(), 4);
        assert_eq!(s.layers[1].size, 3);
        assert_eq!(s.layers[2].size, 5, "a zstd layer is read");
        assert_eq!(s.layers[3].size, SMALL + 4096);
        assert_eq!(
            s.wasted_bytes,
            SMALL + 4096,
            "the repeated layer overwrites the first"
        );
    }

    #[test]
    fn broken_archives_say_what_is_wrong() {
        let mut b = tar::Builder::new(Vec::new());
        member(&mut b, "x", b"y");
        let err = analyze(&b.into_inner().unwrap()[..]).unwrap_err();
        assert!(matches!(err, SavingsError::NoManifest), "{err}");
        let archive = save(&[], serde_json::json!([]));
        let mut b = tar::Builder::new(Vec::new());
        member(&mut b, "cfg.json", br#"{}"#);
        member(
            &mut b,
            "manifest.json",
            br#"[{"Config":"cfg.json","Layers":["gone.tar"]}]"#,
        );
        let err = analyze(&b.into_inner().unwrap()[..]).unwrap_err();
        assert!(
            matches!(err, SavingsError::MissingLayer(ref p) if p == "gone.tar"),
            "{err}"
        );
        assert_eq!(analyze(&archive[..]).unwrap().layers.len(), 0);
    }

    #[test]
    fn links_resolve_inside_the_archive() {
        assert_eq!(
            resolve_link("a/layer.tar", b"../b/layer.tar"),
            "b/layer.tar"
        );
        assert_eq!(resolve_link("a/layer.tar", b"c.tar"), "a/c.tar");
    }
}
