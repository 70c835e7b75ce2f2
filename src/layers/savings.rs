//! What flattening would gain. Reads IMAGE's save stream once, front to
//! back, through [`walk::read_picked`], keeping only each layer's list of
//! changes, then stacks the layers the way the engine does to find the bytes
//! that later layers delete or overwrite.

use serde::Serialize;
use serde_json::Value;

use super::{apply, Change, LayerIndex, MergeError, Origin};

/// How many wasted paths the report names.
pub const TOP_WASTED: usize = 10;

/// One layer, as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerSavings {
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
    /// Replaced by a later entry, rather than deleted.
    pub replaced: bool,
}

/// The whole answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Savings {
    /// Bottom layers the flatten keeps as they are (0: all are merged).
    pub kept_layers: usize,
    pub layers: Vec<LayerSavings>,
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

/// What flattening all but the bottom `keep` of `layers` (an image's
/// layers, bottom first, with their diff IDs and the image's `config` for
/// the build steps) would gain.
pub fn of(
    layers: &[&LayerIndex],
    diff_ids: &[String],
    config: &Value,
    keep: usize,
) -> Result<Savings, MergeError> {
    let tree = apply(layers)?;
    let mut report: Vec<LayerSavings> = layers
        .iter()
        .enumerate()
        .map(|(i, layer)| {
            let mut l = LayerSavings {
                index: i + 1,
                diff_id: diff_ids.get(i).cloned(),
                created_by: None,
                size: 0,
                files: 0,
                deletes: 0,
                wasted: 0,
            };
            for e in 0..layer.len() {
                match layer.change(e) {
                    Change::File { size } => {
                        l.files += 1;
                        l.size += size;
                    }
                    Change::Whiteout => l.deletes += 1,
                    Change::Dir | Change::Opaque | Change::None => {}
                }
            }
            l
        })
        .collect();
    // History entries that made no layer (ENV, CMD, ...) are marked empty.
    let steps: Vec<Option<String>> = config["history"]
        .as_array()
        .map(|h| {
            h.iter()
                .filter(|e| e["empty_layer"] != Value::Bool(true))
                .map(|e| e["created_by"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if steps.len() == layers.len() {
        for (layer, step) in report.iter_mut().zip(steps) {
            layer.created_by = step;
        }
    }
    let size_of = |layer: usize, entry: usize| match layers[layer].change(entry) {
        Change::File { size } => size,
        _ => 0,
    };
    // What a layer removed of the layers below it. A hardlinked inode's
    // content is thrown away only when its last name goes.
    let mut wasted = Vec::new();
    let mut throw = |path: &str, (layer, entry): (usize, usize), by: usize, replaced: bool| {
        let size = size_of(layer, entry);
        if layer < by && size > 0 {
            report[layer].wasted += size;
            wasted.push(Wasted {
                path: path.to_owned(),
                size,
                layer: layer + 1,
                removed_by: by + 1,
                replaced,
            });
        }
    };
    // Each inode's last removal: the layer and how.
    let mut gone: Vec<Option<(usize, bool)>> = Vec::new();
    for r in tree.removed() {
        let path = show(layers[r.layer].path_of(r.entry));
        match r.inode {
            None => throw(&path, (r.layer, r.entry), r.by, r.replaced),
            Some(inode) => {
                if gone.len() <= inode {
                    gone.resize(inode + 1, None);
                }
                gone[inode] = Some((r.by, r.replaced));
            }
        }
    }
    for (inode, last) in gone.iter().enumerate() {
        let (content, names) = tree.inode(inode);
        if let (Some((by, replaced)), 0) = (last, names) {
            throw(
                &show(layers[content.0].path_of(content.1)),
                content,
                *by,
                *replaced,
            );
        }
    }
    wasted.retain(|w| w.layer > keep);
    wasted.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.path.cmp(&b.path)));
    let wasted_bytes = wasted.iter().map(|w| w.size).sum();
    wasted.truncate(TOP_WASTED);
    // The kept layers stay whole; of the merged ones, what survives.
    let kept = &report[..keep.min(report.len())];
    let (mut files_after, mut bytes_after) = kept
        .iter()
        .fold((0, 0), |(n, b), l| (n + l.files, b + l.size));
    for (path, origin) in tree.paths() {
        let ((layer, entry), holds_content) = match origin {
            Origin::Implicit => continue,
            Origin::Entry { layer, entry } => ((layer, entry), true),
            // Every name of an inode is of its content's layer (a link to a
            // lower layer's file is refused); the content counts once.
            Origin::Linked { content, first, .. } => (content, path == first),
        };
        if layer < keep || layers[layer].change(entry) == Change::Dir {
            continue;
        }
        files_after += 1;
        if holds_content {
            bytes_after += size_of(layer, entry);
        }
    }
    let bytes_now: u64 = report.iter().map(|l| l.size).sum();
    let wasted_percent = if bytes_now == 0 {
        0.0
    } else {
        (wasted_bytes as f64 * 1000.0 / bytes_now as f64).round() / 10.0
    };
    Ok(Savings {
        kept_layers: keep,
        bytes_now,
        layers: report,
        bytes_after,
        wasted_bytes,
        wasted_percent,
        files_after,
        largest_wasted: wasted,
    })
}

fn show(path: &[u8]) -> String {
    format!("/{}", String::from_utf8_lossy(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::saved::walk::{self, Pick};

    /// The savings of each image `picks` names in a save archive, each
    /// keeping its bottom `keeps[i]` layers.
    fn analyze(archive: &[u8], picks: &[Pick], keeps: &[usize]) -> Result<Vec<Savings>, String> {
        let saved = walk::read_picked(archive, picks, |l| LayerIndex::read(l, None))
            .map_err(|e| e.to_string())?;
        saved
            .images
            .iter()
            .enumerate()
            .map(|(i, image)| {
                let indexes: Vec<_> = image.layers.iter().map(|l| &saved.blobs[l.blob]).collect();
                let diff_ids: Vec<_> = image.layers.iter().map(|l| l.diff_id.clone()).collect();
                let keep = keeps.get(i).copied().unwrap_or(0);
                of(&indexes, &diff_ids, &image.config, keep).map_err(|e| e.to_string())
            })
            .collect()
    }

    /// The savings of the one image an archive lists.
    fn one(archive: &[u8], keep: usize) -> Result<Savings, String> {
        let mut all = analyze(archive, &[Pick::Listed], &[keep])?;
        assert_eq!(all.len(), 1);
        Ok(all.remove(0))
    }
    use crate::saved::walk::tests::{
        docker_archive, gzip, member, oci_archive, platforms_archive, sha,
    };

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

    /// A docker-archive with the manifest last, as `docker save` writes it.
    fn save(layers: &[(&str, Vec<u8>)], history: serde_json::Value) -> Vec<u8> {
        let tars: Vec<Vec<u8>> = layers.iter().map(|(_, t)| t.clone()).collect();
        docker_archive(&tars, history)
    }

    #[test]
    fn each_platform_of_an_oci_layout_is_analysed_on_its_own() {
        let shared = layer(&[E::Dir("d/"), E::File("d/base", 100)]);
        let amd = layer(&[E::File("d/.wh.base", 0), E::File("d/amd", 7)]);
        let arm = layer(&[E::File("d/arm", 9)]);
        let history = |by: &str| serde_json::json!([{"created_by": "base"}, {"created_by": by}]);
        let (archive, manifests) = platforms_archive(&[
            ("amd64", vec![shared.clone(), amd], history("amd")),
            ("arm64", vec![shared, arm], history("arm")),
        ]);
        let picks: Vec<Pick> = manifests.into_iter().map(Pick::Manifest).collect();
        let found = analyze(&archive[..], &picks, &[]).unwrap();
        assert_eq!((found[0].wasted_bytes, found[0].bytes_after), (100, 7));
        assert_eq!((found[1].wasted_bytes, found[1].bytes_after), (0, 109));
        assert_eq!(found[1].layers[1].created_by.as_deref(), Some("arm"));
        let kept = analyze(&archive[..], &picks, &[1, 1]).unwrap();
        assert_eq!(
            kept[0].wasted_bytes, 0,
            "the base's file is kept, not wasted"
        );
        let missing = analyze(&archive[..], &[Pick::Manifest(sha(b"x"))], &[]);
        assert!(
            missing.as_ref().is_err_and(|e| e.contains("manifest")),
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
                ("2/layer.tar", l2.clone()),
                ("3/layer.tar", l3),
            ],
            history,
        );
        let s = one(&archive[..], 0).unwrap();
        assert_eq!(s.bytes_now, 5000 + 10 + 300 + 200 + 20 + 7);
        assert_eq!(s.wasted_bytes, 5000 + 10 + 300 + 200);
        assert_eq!(s.bytes_after, 20 + 7);
        assert_eq!(s.bytes_now - s.wasted_bytes, s.bytes_after);
        assert_eq!(s.files_after, 2);
        assert_eq!(s.layers[0].wasted, 5510);
        assert_eq!(s.layers[1].deletes, 1);
        assert_eq!(s.layers[2].created_by.as_deref(), Some("RUN reset cache"));
        assert_eq!(s.layers[1].diff_id.as_deref(), Some(&sha(&l2)[..]));
        assert_eq!(
            s.largest_wasted[0],
            Wasted {
                path: "/app/big".into(),
                size: 5000,
                layer: 1,
                removed_by: 2,
                replaced: false,
            }
        );
        let removed_by: Vec<_> = s
            .largest_wasted
            .iter()
            .map(|w| (w.path.as_str(), w.removed_by, w.replaced))
            .collect();
        // A whiteout and an opaque marker delete; a new /app/keep replaces.
        assert_eq!(
            removed_by,
            [
                ("/app/big", 2, false),
                ("/cache/a", 3, false),
                ("/cache/sub/b", 3, false),
                ("/app/keep", 2, true)
            ]
        );
    }

    #[test]
    fn a_file_over_a_directory_wastes_the_tree_and_links_count_as_files() {
        let l1 = layer(&[E::Dir("d/"), E::File("d/x", 40), E::Link("l", "d/x")]);
        let l2 = layer(&[E::File("d", 1), E::Dir("l/")]);
        // As docker-flatten's own layers begin: the root with a comment.
        let root = crate::source::filter::Root {
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 0,
        };
        let l2 = [
            &crate::source::filter::root_entry(root, Some("run x"))[..],
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
        let s = one(
            &save(&[("a.tar", l1), ("b.tar", l2)], serde_json::json!([]))[..],
            0,
        )
        .unwrap();
        assert_eq!((s.wasted_bytes, s.bytes_after, s.files_after), (40, 1, 1));
        assert_eq!(s.layers[0].files, 2);
        assert!(
            s.layers[0].created_by.is_none(),
            "no history, no step names"
        );
    }

    #[test]
    fn reads_gzip_and_zstd_layers_large_layers_and_repeated_ones() {
        let big = layer(&[E::File("blob", 300 << 10)]);
        let g = layer(&[E::File("g", 3)]);
        let z = layer(&[E::File("z", 5)]);
        let (archive, _) = oci_archive(&[big.clone(), g, z, big], Some(2));
        let s = one(&archive[..], 0).unwrap();
        assert_eq!(s.layers.len(), 4);
        assert_eq!(s.layers[1].size, 3);
        assert_eq!(s.layers[2].size, 5, "a zstd layer is read");
        assert_eq!(s.layers[3].size, 300 << 10);
        assert_eq!(
            s.wasted_bytes,
            300 << 10,
            "the repeated layer overwrites the first"
        );
        let _ = gzip;
    }

    #[test]
    fn a_partial_flatten_saves_only_what_the_merged_layers_waste() {
        let l1 = layer(&[E::File("base", 100), E::File("gone", 50)]);
        let l2 = layer(&[E::File("tmp", 30), E::File(".wh.gone", 0)]);
        let l3 = layer(&[E::File(".wh.tmp", 0), E::File("app", 7)]);
        let archive = save(
            &[("1.tar", l1), ("2.tar", l2), ("3.tar", l3)],
            serde_json::json!([]),
        );
        let all = one(&archive[..], 0).unwrap();
        assert_eq!(
            (all.wasted_bytes, all.bytes_after, all.files_after),
            (80, 107, 2)
        );
        let s = one(&archive[..], 1).unwrap();
        assert_eq!(s.kept_layers, 1);
        // The deleted base file stays in the kept layer; the temporary one goes.
        assert_eq!((s.wasted_bytes, s.bytes_after, s.files_after), (30, 157, 3));
        assert_eq!(s.bytes_now - s.wasted_bytes, s.bytes_after);
        assert_eq!(s.largest_wasted.len(), 1);
        assert_eq!(s.largest_wasted[0].path, "/tmp");
    }

    #[test]
    fn broken_archives_say_what_is_wrong() {
        let mut b = tar::Builder::new(Vec::new());
        member(&mut b, "x", b"y");
        let err = one(&b.into_inner().unwrap()[..], 0).unwrap_err();
        assert_eq!(err, "the archive has no manifest.json or index.json");
        let archive = save(&[], serde_json::json!([]));
        assert_eq!(one(&archive[..], 0).unwrap().layers.len(), 0);
    }
}
