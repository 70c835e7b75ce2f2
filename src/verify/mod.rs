//! `--verify` and `--verify-only`: the flattened image read back and
//! compared, path by path, with IMAGE's own layers applied one on top of
//! the other.
//!
//! Both sides are images as their save stream (or `--output`'s archive)
//! holds them, their layers indexed with each entry's compact [`Facts`]
//! (no header kept, content as a SHA-256). Each side's layers are applied
//! by the merge's rules ([`crate::layers::apply`]), and the two trees are
//! walked together in path order: type, mode, owner, mtime, size, content,
//! symlink target, device numbers, xattrs and hardlink groups; then the
//! config and platform, and the diff IDs of the layers a partial flatten
//! kept. Comparing the *applied* trees makes every mode one comparison: a
//! partial flatten's kept layers plus its merged one must show what all of
//! IMAGE's layers show.
//!
//! What a mode documents as lost is listed as expected, with why
//! ([`Rules`]); everything else fails the run.

pub mod read;

use std::cmp::Ordering;
use std::fmt;

use serde::Serialize;
use serde_json::Value;

use crate::layers::facts::Facts;
use crate::layers::{self, LayerIndex, MergeError, Origin};
use crate::model::config;
use crate::saved::walk::{Saved, SavedLayer};
use crate::source::filter::{PLACEHOLDER_DIRS, PLACEHOLDER_FILES, PLACEHOLDER_MTAB};

/// An image's layers as read for a verify: indexed with their facts.
pub type Layers = Saved<LayerIndex>;

/// One image of a save stream read: its config and layers, with the
/// layers' indexes.
#[derive(Clone, Copy)]
pub struct Side<'a> {
    pub config: &'a Value,
    pub layers: &'a [SavedLayer],
    pub blobs: &'a [LayerIndex],
}

impl<'a> Side<'a> {
    /// Image `i` of `saved`.
    pub fn of(saved: &'a Layers, i: usize) -> Side<'a> {
        let image = &saved.images[i];
        Side {
            config: &image.config,
            layers: &image.layers,
            blobs: &saved.blobs,
        }
    }
}

/// Which differences the mode that made the result documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// The result is a container's export (the default mode): placeholder
    /// paths, xattrs but `security.capability`, the mtimes of `/etc` and
    /// `/dev` and the root's attributes are lost.
    pub export: bool,
    /// Its config came from a graphdriver engine's inspect: fields the
    /// inspect does not report are lost, and left-out fields come as zero
    /// values.
    pub inspected_config: bool,
    /// `SOURCE_DATE_EPOCH`: the result's mtimes are IMAGE's, but none
    /// later than this.
    pub epoch: Option<u64>,
}

/// What differs, at a path (`/etc/hosts`), a config field (`config.Env`)
/// or a layer (`layer 2`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    pub path: String,
    pub field: Field,
    /// As IMAGE has it, and as the result has it; `None`: not there.
    pub image: Option<String>,
    pub result: Option<String>,
    /// Why the mode loses it, for an expected difference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<&'static str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// The path is in IMAGE, not in the result.
    Missing,
    /// The path is in the result, not in IMAGE.
    Added,
    Type,
    Mode,
    Owner,
    Mtime,
    Size,
    Content,
    LinkTarget,
    Device,
    Xattr,
    Hardlink,
    Layer,
    Config,
    Platform,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = serde_json::to_value(self).expect("a field serializes");
        f.write_str(&name.as_str().expect("a name").replace('_', " "))
    }
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let none = || "nothing".to_owned();
        match self.field {
            Field::Missing => write!(
                f,
                "{}: missing (IMAGE has {})",
                self.path,
                self.image.clone().unwrap_or_else(none)
            )?,
            Field::Added => write!(
                f,
                "{}: not in IMAGE (the result has {})",
                self.path,
                self.result.clone().unwrap_or_else(none)
            )?,
            // `config.Cmd`: the path says it is the config already.
            Field::Config => write!(
                f,
                "{}: {} in IMAGE, {} in the result",
                self.path,
                self.image.clone().unwrap_or_else(none),
                self.result.clone().unwrap_or_else(none)
            )?,
            field => write!(
                f,
                "{}: {field}: {} in IMAGE, {} in the result",
                self.path,
                self.image.clone().unwrap_or_else(none),
                self.result.clone().unwrap_or_else(none)
            )?,
        }
        match self.why {
            Some(why) => write!(f, " (expected: {why})"),
            None => Ok(()),
        }
    }
}

/// What a verify found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Paths compared (of both sides together, each once).
    pub paths: u64,
    /// Differences the mode does not account for: the result is wrong.
    pub differences: Vec<Difference>,
    /// Differences the mode documents.
    pub expected: Vec<Difference>,
    /// Time the verify took, reading included.
    pub duration_seconds: f64,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.differences.is_empty()
    }

    /// The first `n` differences, and how many more there are.
    /// The first `n` differences, one per line, indented, and a count of
    /// the rest.
    pub fn first(&self, n: usize) -> String {
        list(&self.differences, n)
    }

    /// The expected differences, as [`Report::first`] lists the others.
    pub fn first_expected(&self, n: usize) -> String {
        list(&self.expected, n)
    }

    fn push(&mut self, d: Difference) {
        if d.why.is_some() {
            self.expected.push(d);
        } else {
            self.differences.push(d);
        }
    }
}

fn list(differences: &[Difference], n: usize) -> String {
    let mut said: Vec<String> = differences
        .iter()
        .take(n)
        .map(|d| format!("  {d}"))
        .collect();
    if differences.len() > n {
        said.push(format!("  and {} more", differences.len() - n));
    }
    said.join("\n")
}

/// Compares the result's applied layers, config and kept layers with
/// IMAGE's. Fails only when a side's layers cannot be applied.
pub fn compare(image: Side<'_>, result: Side<'_>, rules: Rules) -> Result<Report, MergeError> {
    let mut report = Report::default();
    kept_layers(image, result, &mut report);
    // The config first: a lost one says most about the result.
    configs(image.config, result.config, rules, &mut report);
    let expected_order = order(image);
    let actual_order = order(result);
    let expected = layers::apply(&expected_order)?;
    let actual = layers::apply(&actual_order)?;
    root(
        expected.root().map(|at| {
            seen(
                &expected_order,
                Origin::Entry {
                    layer: at.0,
                    entry: at.1,
                },
            )
        }),
        actual.root().map(|at| {
            seen(
                &actual_order,
                Origin::Entry {
                    layer: at.0,
                    entry: at.1,
                },
            )
        }),
        rules,
        result.layers.len() > 1,
        &mut report,
    );
    let mut e = expected.paths().peekable();
    let mut a = actual.paths().peekable();
    loop {
        let order = match (e.peek(), a.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((ep, _)), Some((ap, _))) => ep.cmp(ap),
        };
        report.paths += 1;
        match order {
            Ordering::Less => {
                let (path, origin) = e.next().expect("peeked");
                let s = seen(&expected_order, origin);
                report.push(Difference {
                    path: show(path),
                    field: Field::Missing,
                    image: Some(kind(s.facts.typeflag).to_owned()),
                    result: None,
                    why: rules.export.then(|| lost_by_export(path, &s)).flatten(),
                });
            }
            Ordering::Greater => {
                let (path, origin) = a.next().expect("peeked");
                let s = seen(&actual_order, origin);
                report.push(Difference {
                    path: show(path),
                    field: Field::Added,
                    image: None,
                    result: Some(added(path, &s)),
                    why: None,
                });
            }
            Ordering::Equal => {
                let (path, eo) = e.next().expect("peeked");
                let (_, ao) = a.next().expect("peeked");
                let es = seen(&expected_order, eo);
                let as_ = seen(&actual_order, ao);
                entry(path, &es, &as_, rules, &mut report);
            }
        }
    }
    Ok(report)
}

fn order<'a>(saved: Side<'a>) -> Vec<&'a LayerIndex> {
    saved.layers.iter().map(|l| &saved.blobs[l.blob]).collect()
}

/// One path as its side has it.
struct Seen<'a> {
    facts: Facts,
    link: &'a [u8],
    xattrs: Vec<(&'a [u8], &'a [u8])>,
    /// A directory the engine made: no attributes of IMAGE's own.
    implicit: bool,
    /// Hardlinked: the inode's first name, and how many it has.
    group: Option<(&'a [u8], u32)>,
}

fn facts_of<'a>(
    layers: &[&'a LayerIndex],
    (layer, entry): (usize, usize),
) -> (&'a Facts, &'a [u8]) {
    layers[layer]
        .facts(entry)
        .expect("a verify reads its layers with their facts")
}

fn seen<'a>(layers: &[&'a LayerIndex], origin: Origin<'a>) -> Seen<'a> {
    match origin {
        Origin::Implicit => Seen {
            facts: Facts::implicit_dir(),
            link: b"",
            xattrs: Vec::new(),
            implicit: true,
            group: None,
        },
        Origin::Entry { layer, entry } => {
            let (facts, arena) = facts_of(layers, (layer, entry));
            Seen {
                facts: *facts,
                link: facts.link(arena),
                xattrs: facts.xattrs(arena),
                implicit: false,
                group: None,
            }
        }
        Origin::Linked {
            content,
            headers,
            first,
            names,
        } => {
            let (data, arena) = facts_of(layers, content);
            let mut facts = *data;
            let mut xattrs: Vec<(&[u8], &[u8])> = Vec::new();
            for at in headers {
                let (header, arena) = facts_of(layers, at);
                facts.mode = header.mode;
                facts.uid = header.uid;
                facts.gid = header.gid;
                facts.mtime = header.mtime;
                facts.nanos = header.nanos;
                for (k, v) in header.xattrs(arena) {
                    xattrs.retain(|(old, _)| *old != k);
                    xattrs.push((k, v));
                }
            }
            xattrs.sort();
            Seen {
                facts,
                link: data.link(arena),
                xattrs,
                implicit: false,
                group: (names > 1).then_some((first, names)),
            }
        }
    }
}

/// Why the export mode loses a path IMAGE has, if it documents that.
fn lost_by_export(path: &[u8], s: &Seen<'_>) -> Option<&'static str> {
    if PLACEHOLDER_FILES.contains(&path) || path == PLACEHOLDER_MTAB.0 {
        Some("a placeholder path: the export shows the engine's placeholder there, which docker-flatten removes")
    } else if PLACEHOLDER_DIRS.contains(&path) && s.facts.typeflag == b'5' {
        Some("an empty placeholder directory, which docker-flatten leaves out of the export")
    } else {
        None
    }
}

/// A path IMAGE lacks, described; named if it is the engine's placeholder.
fn added(path: &[u8], s: &Seen<'_>) -> String {
    let what = kind(s.facts.typeflag).to_owned();
    let placeholder =
        (PLACEHOLDER_FILES.contains(&path) && s.facts.typeflag == b'0' && s.facts.size == 0)
            || (path == PLACEHOLDER_MTAB.0 && s.link == PLACEHOLDER_MTAB.1)
            || (PLACEHOLDER_DIRS.contains(&path) && s.facts.typeflag == b'5');
    if placeholder {
        format!("{what}, the engine's placeholder")
    } else {
        what
    }
}

fn root(
    image: Option<Seen<'_>>,
    result: Option<Seen<'_>>,
    rules: Rules,
    partial: bool,
    report: &mut Report,
) {
    // Without a root entry, IMAGE's root is the engine's own: nothing to hold it to.
    let (Some(e), Some(a)) = (image, result) else {
        return;
    };
    let why = if rules.export {
        Some("the export has no root entry: the layer's is 0755, root-owned, at IMAGE's creation time")
    } else if partial {
        Some(
            "a partial flatten's merged layer has a root entry of its own (the merged layers' \
             last, else 0755, root-owned, at the epoch), which the engine applies over the kept one",
        )
    } else {
        None
    };
    let mut found = Vec::new();
    attributes(&e, &a, rules.epoch, &mut found);
    for mut d in found {
        d.path = "/".into();
        d.why = why;
        report.push(d);
    }
}

/// The attributes every entry has: mode, owner, mtime (IMAGE's, clamped to
/// `epoch` when set).
fn attributes(e: &Seen<'_>, a: &Seen<'_>, epoch: Option<u64>, out: &mut Vec<Difference>) {
    let mut differ = |field, image: String, result: String| {
        if image != result {
            out.push(Difference {
                path: String::new(),
                field,
                image: Some(image),
                result: Some(result),
                why: None,
            });
        }
    };
    let (ef, af) = (&e.facts, &a.facts);
    differ(
        Field::Mode,
        format!("{:04o}", ef.mode),
        format!("{:04o}", af.mode),
    );
    differ(
        Field::Owner,
        format!("{}:{}", ef.uid, ef.gid),
        format!("{}:{}", af.uid, af.gid),
    );
    let epoch = epoch.and_then(|ep| i64::try_from(ep).ok());
    let clamped = epoch.is_some_and(|ep| (ef.mtime, ef.nanos) > (ep, 0))
        && epoch == Some(af.mtime)
        && af.nanos == 0;
    if !e.implicit && !a.implicit && !clamped {
        differ(Field::Mtime, time(ef), time(af));
    }
}

fn entry(path: &[u8], e: &Seen<'_>, a: &Seen<'_>, rules: Rules, report: &mut Report) {
    let p = show(path);
    let (ef, af) = (&e.facts, &a.facts);
    if ef.typeflag != af.typeflag {
        report.push(Difference {
            path: p,
            field: Field::Type,
            image: Some(kind(ef.typeflag).into()),
            result: Some(kind(af.typeflag).into()),
            why: None,
        });
        return;
    }
    let mut found = Vec::new();
    attributes(e, a, rules.epoch, &mut found);
    let mut differ = |field, image: String, result: String| {
        if image != result {
            found.push(Difference {
                path: String::new(),
                field,
                image: Some(image),
                result: Some(result),
                why: None,
            });
        }
    };
    differ(Field::Size, ef.size.to_string(), af.size.to_string());
    differ(Field::Content, digest(ef), digest(af));
    differ(Field::LinkTarget, show_raw(e.link), show_raw(a.link));
    differ(
        Field::Device,
        format!("{}:{}", ef.device.0, ef.device.1),
        format!("{}:{}", af.device.0, af.device.1),
    );
    differ(Field::Hardlink, group(path, e), group(path, a));
    let export_mtime = rules.export && (path == b"etc" || path == b"dev");
    for mut d in found {
        if d.field == Field::Mtime && export_mtime {
            d.why = Some("the export gives /etc and /dev the container's creation time");
        }
        d.path = p.clone();
        report.push(d);
    }
    xattrs(&p, e, a, rules, report);
}

fn xattrs(p: &str, e: &Seen<'_>, a: &Seen<'_>, rules: Rules, report: &mut Report) {
    let (mut i, mut j) = (0, 0);
    while i < e.xattrs.len() || j < a.xattrs.len() {
        let ex = e.xattrs.get(i);
        let ax = a.xattrs.get(j);
        let order = match (ex, ax) {
            (Some(x), Some(y)) => x.0.cmp(y.0),
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        let (name, image, result) = match order {
            Ordering::Less => {
                i += 1;
                let (k, v) = ex.expect("compared");
                (k, Some(value(v)), None)
            }
            Ordering::Greater => {
                j += 1;
                let (k, v) = ax.expect("compared");
                (k, None, Some(value(v)))
            }
            Ordering::Equal => {
                i += 1;
                j += 1;
                let ((k, ev), (_, av)) = (ex.expect("compared"), ax.expect("compared"));
                if ev == av {
                    continue;
                }
                (k, Some(value(ev)), Some(value(av)))
            }
        };
        let lost = result.is_none() && rules.export && name != b"security.capability";
        report.push(Difference {
            path: format!("{p} xattr {}", String::from_utf8_lossy(name)),
            field: Field::Xattr,
            image,
            result,
            why: lost.then_some("the export carries no xattr but security.capability"),
        });
    }
}

/// The bottom layers of a partial result must be IMAGE's, unchanged.
fn kept_layers(image: Side<'_>, result: Side<'_>, report: &mut Report) {
    let kept = result.layers.len().saturating_sub(1);
    for i in 0..kept {
        let mine = image.layers.get(i).map(|l| l.diff_id.clone());
        let theirs = &result.layers[i].diff_id;
        if mine.as_ref() != Some(theirs) {
            report.push(Difference {
                path: format!("layer {}", i + 1),
                field: Field::Layer,
                image: mine,
                result: Some(theirs.clone()),
                why: None,
            });
        }
    }
}

/// Fields whose difference is the platform's.
const PLATFORM: &[&str] = &["architecture", "os", "variant", "os.version", "os.features"];
/// Top-level fields compared one level deeper, to name what differs.
const NESTED: &[&str] = &["config", "container_config"];

fn configs(image: &Value, result: &Value, rules: Rules, report: &mut Report) {
    let empty = serde_json::Map::new();
    let e = image.as_object().unwrap_or(&empty);
    let a = result.as_object().unwrap_or(&empty);
    let mut keys: Vec<&String> = e.keys().chain(a.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        if config::SET_ANEW.contains(&key.as_str()) {
            continue;
        }
        let (ev, av) = (e.get(key), a.get(key));
        if NESTED.contains(&key.as_str())
            && ev.map_or(true, Value::is_object)
            && av.map_or(true, Value::is_object)
        {
            let (eo, ao) = (
                ev.and_then(Value::as_object).unwrap_or(&empty),
                av.and_then(Value::as_object).unwrap_or(&empty),
            );
            let mut inner: Vec<&String> = eo.keys().chain(ao.keys()).collect();
            inner.sort();
            inner.dedup();
            for k in inner {
                config_field(&format!("{key}.{k}"), eo.get(k), ao.get(k), rules, report);
            }
            continue;
        }
        let lost = rules.inspected_config && av.is_none() && !config::inspect_reports(key);
        // The engine's inspect falls back on the last history entry's comment.
        let history = image["history"].as_array().and_then(|h| h.last());
        let derived = rules.inspected_config
            && key == "comment"
            && ev.is_none()
            && av.is_some()
            && history.map(|h| &h["comment"]) == av;
        if ev != av {
            report.push(Difference {
                path: key.clone(),
                field: if PLATFORM.contains(&key.as_str()) {
                    Field::Platform
                } else {
                    Field::Config
                },
                image: ev.map(Value::to_string),
                result: av.map(Value::to_string),
                why: if lost {
                    Some("the graphdriver engine's inspect, where the config comes from, does not report it")
                } else if derived {
                    Some("the graphdriver engine's inspect, where the config comes from, reports the last history entry's comment as the image's")
                } else {
                    None
                },
            });
        }
    }
}

fn config_field(
    name: &str,
    e: Option<&Value>,
    a: Option<&Value>,
    rules: Rules,
    report: &mut Report,
) {
    if e == a {
        return;
    }
    let zero = |v: Option<&Value>| v.map_or(true, config::is_empty);
    let inspected = rules.inspected_config && zero(e) && zero(a);
    report.push(Difference {
        path: name.to_owned(),
        field: Field::Config,
        image: e.map(Value::to_string),
        result: a.map(Value::to_string),
        why: inspected.then_some(
            "the graphdriver engine's inspect reports fields the config leaves out as zero values",
        ),
    });
}

fn show(path: &[u8]) -> String {
    format!("/{}", String::from_utf8_lossy(path))
}

fn show_raw(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        "none".into()
    } else {
        String::from_utf8_lossy(bytes).into_owned()
    }
}

fn kind(typeflag: u8) -> &'static str {
    match typeflag {
        b'0' => "a file",
        b'1' => "a hardlink",
        b'2' => "a symlink",
        b'3' => "a character device",
        b'4' => "a block device",
        b'5' => "a directory",
        b'6' => "a FIFO",
        _ => "an entry of another type",
    }
}

fn time(f: &Facts) -> String {
    if f.nanos == 0 {
        f.mtime.to_string()
    } else {
        format!("{}.{:09}", f.mtime, f.nanos)
    }
}

fn digest(f: &Facts) -> String {
    if f.typeflag != b'0' {
        return "none".into();
    }
    let hex: String = f.content[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}…")
}

fn group(path: &[u8], s: &Seen<'_>) -> String {
    match s.group {
        None => "not linked".into(),
        Some((first, names)) if first == path => format!("linked, the first of {names} names"),
        Some((first, names)) => format!("linked to {} ({names} names)", show(first)),
    }
}

fn value(v: &[u8]) -> String {
    match std::str::from_utf8(v) {
        Ok(text) if !text.chars().any(char::is_control) => format!("{text:?}"),
        _ => format!("{} bytes", v.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::compression::Compression;
    use crate::saved::walk::SavedLayer;
    use serde_json::json;

    enum Op<'a> {
        Dir(&'a str),
        File(&'a str, &'a str, u32),
        Link(&'a str, &'a str),
        Whiteout(&'a str),
        Xattr(&'a str, &'a str, &'a str),
    }

    fn tar_of(ops: &[Op<'_>]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for op in ops {
            let mut h = tar::Header::new_ustar();
            h.set_mtime(1000);
            match op {
                Op::Dir(p) => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(0o755);
                    h.set_size(0);
                    b.append_data(&mut h, p, &[][..]).unwrap();
                }
                Op::File(p, data, mode) => {
                    h.set_mode(*mode);
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, p, data.as_bytes()).unwrap();
                }
                Op::Link(p, target) => {
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_mode(0o644);
                    h.set_size(0);
                    b.append_link(&mut h, p, target).unwrap();
                }
                Op::Whiteout(p) => {
                    let (dir, name) = p.rsplit_once('/').unwrap_or(("", p));
                    let wh = if dir.is_empty() {
                        format!(".wh.{name}")
                    } else {
                        format!("{dir}/.wh.{name}")
                    };
                    h.set_mode(0o644);
                    h.set_size(0);
                    b.append_data(&mut h, wh, &[][..]).unwrap();
                }
                Op::Xattr(p, name, value) => {
                    let key = format!("SCHILY.xattr.{name}");
                    b.append_pax_extensions([(key.as_str(), value.as_bytes())])
                        .unwrap();
                    h.set_mode(0o644);
                    h.set_size(1);
                    b.append_data(&mut h, p, &b"x"[..]).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    fn image(layers: &[Vec<u8>], config: Value) -> Layers {
        let blobs: Vec<LayerIndex> = layers
            .iter()
            .map(|t| LayerIndex::read_facts(&mut &t[..], None).unwrap())
            .collect();
        let layers = (0..layers.len())
            .map(|i| SavedLayer {
                diff_id: format!("sha256:{i}{}", layers[i].len()),
                blob: i,
                member: String::new(),
                compression: Compression::None,
                stored_size: 0,
            })
            .collect();
        Saved {
            images: vec![crate::saved::walk::SavedImage { config, layers }],
            blobs,
        }
    }

    const MERGE: Rules = Rules {
        export: false,
        inspected_config: false,
        epoch: None,
    };
    const EXPORT: Rules = Rules {
        export: true,
        inspected_config: false,
        epoch: None,
    };

    fn source() -> Layers {
        image(
            &[
                tar_of(&[
                    Op::Dir("bin"),
                    Op::File("bin/perl", "perl", 0o755),
                    Op::Link("bin/perl5", "bin/perl"),
                    Op::File("bin/gone", "x", 0o644),
                ]),
                tar_of(&[
                    Op::Dir("bin"),
                    Op::Whiteout("bin/gone"),
                    Op::Dir("etc"),
                    Op::File("etc/hosts", "real\n", 0o644),
                    Op::Xattr("bin/attr", "user.mime", "text"),
                ]),
            ],
            json!({"architecture": "amd64", "os": "linux", "config": {"Env": ["A=1"]}, "history": [1, 2]}),
        )
    }

    #[test]
    fn a_layer_with_the_applied_files_verifies() {
        let flat = image(
            &[tar_of(&[
                Op::Xattr("bin/attr", "user.mime", "text"),
                Op::Dir("bin"),
                Op::File("bin/perl", "perl", 0o755),
                Op::Link("bin/perl5", "bin/perl"),
                Op::Dir("etc"),
                Op::File("etc/hosts", "real\n", 0o644),
            ])],
            json!({"architecture": "amd64", "os": "linux", "config": {"Env": ["A=1"]}, "history": [3]}),
        );
        let report = compare(Side::of(&source(), 0), Side::of(&flat, 0), MERGE).unwrap();
        assert!(report.ok(), "{}", report.first(10));
        assert_eq!(report.paths, 6);
        assert!(report.expected.is_empty());
    }

    #[test]
    fn every_kind_of_difference_is_named() {
        let flat = image(
            &[tar_of(&[
                Op::Dir("bin"),
                Op::File("bin/perl", "perl", 0o700),
                Op::File("bin/perl5", "perl", 0o755),
                Op::File("bin/new", "n", 0o644),
                Op::Dir("etc"),
                Op::File("etc/hosts", "fake\n", 0o644),
            ])],
            json!({"architecture": "arm64", "os": "linux", "config": {}}),
        );
        let report = compare(Side::of(&source(), 0), Side::of(&flat, 0), MERGE).unwrap();
        let said: Vec<String> = report.differences.iter().map(ToString::to_string).collect();
        let has = |s: &str| said.iter().any(|d| d.contains(s));
        assert!(has("/bin/attr: missing (IMAGE has a file)"), "{said:#?}");
        assert!(has("/bin/new: not in IMAGE"), "{said:#?}");
        assert!(
            has("/bin/perl: mode: 0644 in IMAGE, 0700 in the result"),
            "{said:#?}"
        );
        assert!(
            // The link header's mode is the inode's.
            has("/bin/perl5: hardlink: linked to /bin/perl (2 names) in IMAGE, not linked"),
            "{said:#?}"
        );
        assert!(has("/etc/hosts: content: sha256:"), "{said:#?}");
        assert!(
            has("architecture: platform: \"amd64\" in IMAGE, \"arm64\""),
            "{said:#?}"
        );
        // The path says it is the config: the field is not said again.
        assert!(has("config.Env: [\"A=1\"] in IMAGE, nothing"), "{said:#?}");
        assert!(!has("history"), "set anew: {said:#?}");
    }

    #[test]
    fn the_export_mode_s_losses_are_expected_and_nothing_else() {
        let flat = image(
            &[tar_of(&[
                Op::File("bin/attr", "x", 0o644),
                Op::Dir("bin"),
                Op::File("bin/perl", "perl", 0o755),
                Op::Link("bin/perl5", "bin/perl"),
                Op::Dir("etc"),
                Op::File(".dockerenv", "", 0o755),
            ])],
            json!({"architecture": "amd64", "os": "linux", "config": {"Env": ["A=1"]}}),
        );
        let report = compare(Side::of(&source(), 0), Side::of(&flat, 0), EXPORT).unwrap();
        let expected: Vec<String> = report.expected.iter().map(ToString::to_string).collect();
        assert_eq!(expected.len(), 2, "{expected:#?}");
        assert!(
            expected[0].starts_with("/bin/attr xattr user.mime: xattr:"),
            "{expected:#?}"
        );
        assert!(
            expected[1].starts_with("/etc/hosts: missing"),
            "{expected:#?}"
        );
        let said = report.first(5);
        assert_eq!(report.differences.len(), 1, "{said}");
        assert!(said.contains("the engine's placeholder"), "{said}");
    }

    #[test]
    fn an_inspected_config_s_losses_are_expected_and_nothing_else() {
        let image = json!({
            "architecture": "amd64", "os": "linux", "os.features": ["x"],
            "config": {"Env": ["A=1"]},
            "history": [{"comment": "buildkit.dockerfile.v0"}],
        });
        let result = json!({
            "architecture": "amd64", "os": "linux", "comment": "buildkit.dockerfile.v0",
            "config": {"Env": ["A=1"], "Hostname": "", "Cmd": null},
        });
        let inspected = Rules {
            export: true,
            inspected_config: true,
            epoch: None,
        };
        let mut report = Report::default();
        configs(&image, &result, inspected, &mut report);
        assert!(report.ok(), "{}", report.first(9));
        let paths: Vec<&str> = report.expected.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(
            paths,
            ["comment", "config.Cmd", "config.Hostname", "os.features"]
        );
        // Not from an inspect, or not what it derives: differences.
        let mut report = Report::default();
        configs(&image, &result, EXPORT, &mut report);
        assert_eq!(report.differences.len(), 4);
        let mut other = result.clone();
        other["comment"] = json!("mine");
        other["config"]["Cmd"] = json!(["x"]);
        let mut report = Report::default();
        configs(&image, &other, inspected, &mut report);
        let paths: Vec<&str> = report.differences.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["comment", "config.Cmd"]);
    }

    #[test]
    fn kept_layers_must_be_image_s_own() {
        let src = source();
        let mut flat = image(
            &[tar_of(&[Op::Dir("bin")]), tar_of(&[Op::Dir("bin")])],
            src.images[0].config.clone(),
        );
        flat.images[0].layers[0].diff_id = "sha256:other".into();
        let report = compare(Side::of(&src, 0), Side::of(&flat, 0), MERGE).unwrap();
        assert_eq!(report.differences[0].path, "layer 1");
        assert_eq!(report.differences[0].field, Field::Layer);
    }
}
