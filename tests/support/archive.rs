//! Building test images offline: layer tars from a declarative entry list,
//! a docker-archive around them, and `docker load` into the engine.
//!
//! Headers are written by hand (ustar + PAX) so that every property the
//! plugin must preserve can be expressed: names longer than 100 bytes or not
//! UTF-8, xattrs, device numbers, special mode bits, mtimes at and beyond
//! the edges of the octal header fields.

use std::path::Path;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

use super::engine::{containerd_store, docker_ok, inspect, load_ok, require_engine, TestImage};

/// 2023-11-14T22:13:20Z: a plain, recognisable default that is neither the
/// epoch nor "now", so a tool that resets mtimes is caught.
pub const DEFAULT_MTIME: u64 = 1_700_000_000;

/// Largest mtime the 11-digit octal ustar field can hold; above it a writer
/// needs PAX or base-256.
pub const MAX_OCTAL_MTIME: u64 = 0o77777777777;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File(Vec<u8>),
    Symlink(Vec<u8>),
    /// Target path inside the image, no leading '/'. Must be in the same
    /// layer: the engine extracts each layer on its own.
    Hardlink(Vec<u8>),
    CharDev(u32, u32),
    BlockDev(u32, u32),
    Fifo,
    /// Deletes `path` from lower layers: written as `<dir>/.wh.<name>`.
    Whiteout,
    /// `path` is a directory whose lower-layer content is hidden: written
    /// as `<path>/.wh..wh..opq`.
    Opaque,
}

/// One tar entry of a test layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Raw bytes, no leading '/'; may be long or not UTF-8.
    pub path: Vec<u8>,
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky (no file-type bits).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    /// Nanoseconds past `mtime`, written as a PAX `mtime` when not zero.
    pub nanos: u32,
    pub xattrs: Vec<(String, Vec<u8>)>,
}

impl Entry {
    pub fn new(path: impl AsRef<[u8]>, kind: Kind) -> Entry {
        let mode = match kind {
            Kind::Dir => 0o755,
            Kind::Symlink(_) => 0o777,
            _ => 0o644,
        };
        let path = path.as_ref();
        assert!(
            !path.starts_with(b"/"),
            "entry paths are relative: {}",
            path.escape_ascii()
        );
        Entry {
            path: path.to_vec(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime: DEFAULT_MTIME,
            nanos: 0,
            xattrs: Vec::new(),
        }
    }

    pub fn dir(path: impl AsRef<[u8]>) -> Entry {
        Entry::new(path, Kind::Dir)
    }
    pub fn file(path: impl AsRef<[u8]>, content: impl AsRef<[u8]>) -> Entry {
        Entry::new(path, Kind::File(content.as_ref().to_vec()))
    }
    pub fn symlink(path: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Entry {
        Entry::new(path, Kind::Symlink(target.as_ref().to_vec()))
    }
    /// Metadata (mode, owner, mtime, xattrs) is taken from the target entry
    /// when the tar is written: both names are one inode, and the engine
    /// applies a hardlink header's metadata to that shared inode.
    pub fn hardlink(path: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Entry {
        Entry::new(path, Kind::Hardlink(target.as_ref().to_vec()))
    }
    pub fn char_dev(path: impl AsRef<[u8]>, major: u32, minor: u32) -> Entry {
        Entry::new(path, Kind::CharDev(major, minor))
    }
    pub fn block_dev(path: impl AsRef<[u8]>, major: u32, minor: u32) -> Entry {
        Entry::new(path, Kind::BlockDev(major, minor))
    }
    pub fn fifo(path: impl AsRef<[u8]>) -> Entry {
        Entry::new(path, Kind::Fifo)
    }
    pub fn whiteout(path: impl AsRef<[u8]>) -> Entry {
        Entry::new(path, Kind::Whiteout)
    }
    pub fn opaque(dir: impl AsRef<[u8]>) -> Entry {
        Entry::new(dir, Kind::Opaque)
    }

    pub fn mode(mut self, mode: u32) -> Entry {
        assert!(mode <= 0o7777, "mode {mode:o} has file-type bits");
        self.mode = mode;
        self
    }
    pub fn owner(mut self, uid: u64, gid: u64) -> Entry {
        self.uid = uid;
        self.gid = gid;
        self
    }
    pub fn mtime(mut self, mtime: u64) -> Entry {
        self.mtime = mtime;
        self
    }
    /// An mtime with a fraction of a second, which ustar cannot hold.
    pub fn mtime_nanos(mut self, mtime: u64, nanos: u32) -> Entry {
        assert!(nanos < 1_000_000_000);
        self.mtime = mtime;
        self.nanos = nanos;
        self
    }
    pub fn xattr(mut self, name: &str, value: impl AsRef<[u8]>) -> Entry {
        self.xattrs
            .push((name.to_string(), value.as_ref().to_vec()));
        self
    }
}

/// `len` pseudo-random bytes (xorshift from `seed`): incompressible, so a
/// gzipped upload is as large as the data, and the same on every run.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

fn split_parent(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..=i], &path[i + 1..]),
        None => (&[], path),
    }
}

/// Copies as much of `value` as fits; PAX carries the full value when it
/// does not, so the header copy only matters to readers without PAX.
fn put_field(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
    field[n..].fill(0);
}

/// Needs PAX when the ustar field cannot hold it exactly, or when it is not
/// ASCII (ustar is ASCII-only; Go's reader/writer follow the same rule).
fn needs_pax(value: &[u8], field_len: usize) -> bool {
    value.len() > field_len || !value.is_ascii()
}

/// Serialises one layer as an uncompressed tar, exactly as `docker load`
/// will receive it (so its SHA-256 is the layer's diff_id).
///
/// Panics unless every directory above an entry is itself an entry of the
/// layer, as in layers the engine makes: a missing one would be created by
/// the engine as root 0755 stamped with the load time, and would hide the
/// lower layer's directory metadata, which no test means to check.
pub fn layer_tar(entries: &[Entry]) -> Vec<u8> {
    let dirs: std::collections::BTreeSet<&[u8]> = entries
        .iter()
        .filter(|e| e.kind == Kind::Dir)
        .map(|e| e.path.strip_suffix(b"/").unwrap_or(&e.path))
        .collect();
    for entry in entries {
        // An opaque marker lives inside its directory; anything else lives
        // in its parent.
        let mut here: &[u8] = entry.path.strip_suffix(b"/").unwrap_or(&entry.path);
        if entry.kind != Kind::Opaque {
            here = split_parent(here).0;
        }
        let mut dir = here.strip_suffix(b"/").unwrap_or(here);
        while !dir.is_empty() {
            assert!(
                dirs.contains(dir),
                "layer has {} but no entry for its directory {}; add Entry::dir({:?}) \
                 to the same layer, or the engine invents one (root, 0755, load time)",
                entry.path.escape_ascii(),
                dir.escape_ascii(),
                String::from_utf8_lossy(dir)
            );
            dir = split_parent(dir).0;
            dir = dir.strip_suffix(b"/").unwrap_or(dir);
        }
    }
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        append_entry(&mut builder, entry, entries);
    }
    builder.into_inner().expect("finish layer tar")
}

fn append_entry(builder: &mut tar::Builder<Vec<u8>>, entry: &Entry, layer: &[Entry]) {
    let path = entry.path.strip_suffix(b"/").unwrap_or(&entry.path);
    assert!(!path.is_empty(), "empty entry path in test layer");
    // A hardlink shares its inode with the target, so it must carry the
    // target's metadata or the engine would rewrite that inode.
    let meta = match &entry.kind {
        Kind::Hardlink(target) => layer
            .iter()
            .rev()
            .find(|e| e.path == *target && !matches!(e.kind, Kind::Whiteout | Kind::Opaque))
            .unwrap_or_else(|| {
                panic!(
                    "hardlink {} -> {}: the target must be an entry of the same layer",
                    path.escape_ascii(),
                    target.escape_ascii()
                )
            }),
        _ => entry,
    };

    let (name, ty, data, link): (Vec<u8>, EntryType, &[u8], Option<&[u8]>) = match &entry.kind {
        Kind::Dir => ([path, b"/"].concat(), EntryType::Directory, &[], None),
        Kind::File(content) => (path.to_vec(), EntryType::Regular, content, None),
        Kind::Symlink(target) => (path.to_vec(), EntryType::Symlink, &[], Some(target)),
        Kind::Hardlink(target) => (path.to_vec(), EntryType::Link, &[], Some(target)),
        Kind::CharDev(..) => (path.to_vec(), EntryType::Char, &[], None),
        Kind::BlockDev(..) => (path.to_vec(), EntryType::Block, &[], None),
        Kind::Fifo => (path.to_vec(), EntryType::Fifo, &[], None),
        Kind::Whiteout => {
            let (dir, base) = split_parent(path);
            ([dir, b".wh.", base].concat(), EntryType::Regular, &[], None)
        }
        Kind::Opaque => (
            [path, b"/.wh..wh..opq"].concat(),
            EntryType::Regular,
            &[],
            None,
        ),
    };

    let mut header = Header::new_ustar();
    header.set_entry_type(ty);
    put_field(&mut header.as_old_mut().name, &name);
    if let Some(link) = link {
        put_field(&mut header.as_old_mut().linkname, link);
    }
    header.set_mode(meta.mode);
    header.set_uid(meta.uid);
    header.set_gid(meta.gid);
    header.set_mtime(meta.mtime);
    header.set_size(data.len() as u64);
    if let Kind::CharDev(major, minor) | Kind::BlockDev(major, minor) = entry.kind {
        header.set_device_major(major).expect("ustar has devmajor");
        header.set_device_minor(minor).expect("ustar has devminor");
    }
    header.set_cksum();

    let mtime_text = match meta.nanos {
        0 => meta.mtime.to_string(),
        n => format!("{}.{n:09}", meta.mtime),
    };
    let mut pax: Vec<(String, &[u8])> = Vec::new();
    if needs_pax(&name, 100) {
        pax.push(("path".into(), &name));
    }
    if let Some(link) = link.filter(|l| needs_pax(l, 100)) {
        pax.push(("linkpath".into(), link));
    }
    // Base-256 in the header would do for Go's reader too, but PAX is what
    // Go itself writes, so this is the form the engine is known to handle.
    if meta.mtime > MAX_OCTAL_MTIME || meta.nanos != 0 {
        pax.push(("mtime".into(), mtime_text.as_bytes()));
    }
    for (key, value) in &meta.xattrs {
        pax.push((format!("SCHILY.xattr.{key}"), value));
    }
    builder
        .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), *v)))
        .expect("append PAX header");
    builder.append(&header, data).expect("append tar entry");
}

/// A whole image to build: layers bottom-up and its config.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    pub layers: Vec<Vec<Entry>>,
    /// The image config's `config` object (Cmd, Entrypoint, Env, ...).
    pub config: Value,
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
    /// More top-level config fields (`docker_version`, `author`, …), as is.
    pub extra: serde_json::Map<String, Value>,
    /// The layer tars of an image this one is built on, below `layers`,
    /// byte for byte as that image has them (see [`ImageSpec::on`]).
    pub base: Vec<Vec<u8>>,
}

/// The engine's name for the host architecture, so images run without a
/// platform-mismatch warning.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

impl ImageSpec {
    /// Linux on the host architecture, with an empty `config`.
    pub fn new(layers: Vec<Vec<Entry>>) -> ImageSpec {
        ImageSpec {
            layers,
            config: json!({}),
            os: "linux".into(),
            architecture: host_architecture().into(),
            variant: None,
            extra: serde_json::Map::new(),
            base: Vec::new(),
        }
    }

    /// This spec's layers on top of the layers of `base` as loaded under
    /// `base_reference`: the image shares them, as a `FROM base` build does.
    pub fn on(mut self, base: &ImageSpec, base_reference: &str) -> ImageSpec {
        self.base = base.layer_tars(&with_tag(base_reference));
        self
    }

    /// Adds the top-level config fields of `fields`, a JSON object.
    pub fn with_fields(mut self, fields: Value) -> ImageSpec {
        self.extra
            .extend(fields.as_object().expect("an object").clone());
        self
    }

    pub fn with_config(mut self, config: Value) -> ImageSpec {
        self.config = config;
        self
    }

    /// The image config JSON exactly as it is loaded; its SHA-256 is the
    /// image ID. `reference` goes into the history so that identical specs
    /// loaded by parallel tests still get distinct image IDs (and removing
    /// one test's image cannot remove another's).
    pub fn config_json(&self, layer_tars: &[Vec<u8>], reference: &str) -> Vec<u8> {
        let diff_ids: Vec<String> = layer_tars
            .iter()
            .map(|t| format!("sha256:{}", sha256_hex(t)))
            .collect();
        let history: Vec<Value> = (0..layer_tars.len())
            .map(|i| {
                json!({
                    "created": "2024-01-01T00:00:00Z",
                    "created_by": format!("docker-flatten test fixture: layer {i}"),
                    "comment": reference,
                })
            })
            .collect();
        let mut config = json!({
            "architecture": self.architecture,
            "os": self.os,
            "config": self.config,
            "created": "2024-01-01T00:00:00Z",
            "history": history,
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        });
        if let Some(variant) = &self.variant {
            config["variant"] = json!(variant);
        }
        for (key, value) in &self.extra {
            config[key] = value.clone();
        }
        serde_json::to_vec(&config).expect("serialise image config")
    }

    /// `sha256:` + digest of the config that [`load_image`] sends for
    /// `reference`: the image ID on a graphdriver engine, and the
    /// [`config_digest`](super::fsview::SavedImage::config_digest) that
    /// `docker save` gives back on either store.
    pub fn config_digest(&self, reference: &str) -> String {
        let reference = with_tag(reference);
        let config = self.config_json(&self.layer_tars(&reference), &reference);
        format!("sha256:{}", sha256_hex(&config))
    }

    /// The layer tars as `docker load` gets them for `reference` (tagged).
    ///
    /// On the containerd store, an image loaded while another has the very
    /// same layers is not unpacked and never claims their snapshots: when
    /// the other (another test's) goes, this one breaks ("snapshot ... does
    /// not exist"). There a comment naming the image at the top of its top
    /// layer makes its chain its own; both engines ignore it (umoci would
    /// refuse it, but these fixtures only ever go into an engine).
    pub fn layer_tars(&self, reference: &str) -> Vec<Vec<u8>> {
        let mut tars: Vec<Vec<u8>> = self.layers.iter().map(|l| layer_tar(l)).collect();
        if containerd_store() {
            if let Some(top) = tars.last_mut() {
                top.splice(0..0, pax_global_comment(reference));
            }
        }
        [self.base.clone(), tars].concat()
    }
}

/// Adds `:latest` when the reference has no tag, as `docker load` insists
/// on a tagged reference in `RepoTags`.
pub fn with_tag(reference: &str) -> String {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    if last.contains(':') || last.contains('@') {
        reference.to_string()
    } else {
        format!("{reference}:latest")
    }
}

/// Writes `spec` as a docker-archive (legacy `docker save` layout) to `out`;
/// returns the config digest (`sha256:...`), which is the image ID a
/// graphdriver engine assigns. The containerd image store names the image
/// by the digest of a manifest it writes itself instead (see [`load_image`]).
pub fn write_docker_archive(spec: &ImageSpec, reference: &str, out: &Path) -> String {
    write_archive(spec, reference, out).0
}

/// [`write_docker_archive`], also returning the layers' diff_ids.
fn write_archive(spec: &ImageSpec, reference: &str, out: &Path) -> (String, Vec<String>) {
    let reference = with_tag(reference);
    let tars = spec.layer_tars(&reference);
    let config = spec.config_json(&tars, &reference);
    let config_hex = sha256_hex(&config);

    let mut outer = tar::Builder::new(
        std::fs::File::create(out).unwrap_or_else(|e| panic!("create {}: {e}", out.display())),
    );
    let mut add = |name: &str, data: &[u8]| archive_member(&mut outer, name, data);
    let mut layer_paths = Vec::new();
    let mut diff_ids = Vec::new();
    let mut written = std::collections::BTreeSet::new();
    for t in &tars {
        let hex = sha256_hex(t);
        let path = format!("{hex}/layer.tar");
        if written.insert(path.clone()) {
            add(&path, t);
        }
        layer_paths.push(path);
        diff_ids.push(format!("sha256:{hex}"));
    }
    let config_name = format!("{config_hex}.json");
    add(&config_name, &config);
    let manifest = json!([{
        "Config": config_name,
        "RepoTags": [reference],
        "Layers": layer_paths,
    }]);
    add(
        "manifest.json",
        &serde_json::to_vec(&manifest).expect("serialise manifest"),
    );
    outer.into_inner().expect("finish docker-archive");
    (format!("sha256:{config_hex}"), diff_ids)
}

/// A regular file `name` in an image archive (not in a layer: no metadata
/// worth choosing).
pub fn archive_member<W: std::io::Write>(archive: &mut tar::Builder<W>, name: &str, data: &[u8]) {
    let mut h = Header::new_ustar();
    h.set_entry_type(EntryType::Regular);
    h.set_mode(0o644);
    h.set_mtime(DEFAULT_MTIME);
    h.set_size(data.len() as u64);
    archive
        .append_data(&mut h, name, data)
        .unwrap_or_else(|e| panic!("write {name} into the image archive: {e}"));
}

/// A path for an image archive to `docker load`, in a temporary directory
/// that goes with the guard.
pub fn archive_path() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("dflt-archive-")
        .tempdir()
        .expect("temp dir for an image archive");
    let path = dir.path().join("image.tar");
    (dir, path)
}

/// A PAX global header whose only record is `comment=<comment>`.
fn pax_global_comment(comment: &str) -> Vec<u8> {
    let body = format!(" comment={comment}\n");
    // The record's length counts its own digits.
    let mut len = body.len() + 1;
    while format!("{len}{body}").len() != len {
        len += 1;
    }
    let record = format!("{len}{body}");
    let mut header = Header::new_ustar();
    header.set_entry_type(EntryType::XGlobalHeader);
    header.set_path("pax_global_header").expect("short path");
    header.set_mode(0o644);
    header.set_size(record.len() as u64);
    header.set_cksum();
    let mut out = header.as_bytes().to_vec();
    out.extend_from_slice(record.as_bytes());
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

/// Builds `spec`, `docker load`s it as `reference` and returns a guard that
/// removes it, holding the ID the engine assigned.
///
/// A graphdriver engine must assign the config digest. The containerd image
/// store assigns the digest of the manifest it writes on import (its layer
/// digests depend on how it compressed them, so nobody can predict it);
/// there the loaded image must instead carry this spec's layers, platform
/// and history, whose comments name `reference` and so no other test's image.
pub fn load_image(spec: &ImageSpec, reference: &str) -> TestImage {
    require_engine();
    let reference = with_tag(reference);
    let (_dir, path) = archive_path();
    let (config_id, diff_ids) = write_archive(spec, &reference, &path);
    // Guard first, so a half-successful load is still cleaned up (by tag:
    // the ID is only known after the load on the containerd store).
    let mut image = TestImage {
        reference: reference.clone(),
        id: config_id.clone(),
    };
    load_ok(&path);
    let info = inspect(&reference);
    let actual = info["Id"]
        .as_str()
        .unwrap_or_else(|| panic!("no Id in `docker image inspect {reference}`: {info}"))
        .to_string();
    if actual == config_id {
        return image;
    }
    assert!(
        containerd_store(),
        "engine assigned an unexpected image ID to {reference}: expected {config_id}, got {actual}"
    );
    // From here on the guard removes the image the engine really made.
    image.id = actual;
    assert_eq!(
        info["RootFS"]["Layers"],
        json!(diff_ids),
        "{reference} was loaded with other layers than its spec"
    );
    assert_eq!(info["Os"], json!(spec.os), "{reference}: Os");
    assert_eq!(
        info["Architecture"],
        json!(spec.architecture),
        "{reference}: Architecture"
    );
    let comments = docker_ok(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.Comment}}",
        &image.id,
    ]);
    let comments: Vec<&str> = comments.lines().map(str::trim).collect();
    assert_eq!(
        comments,
        vec![reference.as_str(); spec.base.len() + spec.layers.len()],
        "{} is not the image loaded as {reference}",
        image.id
    );
    image
}

/// `docker import`s one layer built from `entries` as `reference` (no
/// config: no command, no environment), the way the plugin makes its
/// output, and returns a guard that removes it. On the containerd store the
/// engine keeps such a layer gzip-compressed.
pub fn import_image(entries: &[Entry], reference: &str) -> TestImage {
    require_engine();
    let reference = with_tag(reference);
    let dir = tempfile::Builder::new()
        .prefix("dflt-import-")
        .tempdir()
        .expect("temp dir for the layer");
    let path = dir.path().join("layer.tar");
    std::fs::write(&path, layer_tar(entries))
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    let path_str = path.to_str().expect("temp path is UTF-8");
    // Guard first: by tag until the ID is known.
    let mut image = TestImage {
        reference: reference.clone(),
        id: String::new(),
    };
    let id = docker_ok(&["import", path_str, &reference])
        .trim()
        .to_string();
    let actual = docker_ok(&["image", "inspect", "--format", "{{.Id}}", &reference]);
    assert_eq!(actual.trim(), id, "docker import printed another ID");
    image.id = id;
    image
}

/// Debian's busybox has no `printenv` applet; this behaves the same for
/// names that are set (value printed, exit 0) and unset (exit 1).
const PRINTENV_SCRIPT: &str = r#"#!/bin/sh
[ $# -eq 0 ] && exec env
rc=0
for n in "$@"; do
  if eval "[ -n \"\${$n+x}\" ]"; then eval "printf '%s\n' \"\$$n\""; else rc=1; fi
done
exit $rc
"#;

/// `bin/busybox` copied from the host plus applet symlinks (and a
/// `printenv` script), so an image can run commands. Needs Debian's
/// busybox-static (a static binary).
pub fn busybox_layer() -> Vec<Entry> {
    let host = Path::new("/bin/busybox");
    let content = std::fs::read(host).unwrap_or_else(|e| {
        panic!(
            "{} is needed to build runnable test images ({e}); \
             install it with `apt-get install -y busybox-static`",
            host.display()
        )
    });
    let list = std::process::Command::new(host)
        .arg("--list")
        .output()
        .expect("run /bin/busybox --list");
    let available = String::from_utf8_lossy(&list.stdout).into_owned();
    let mut layer = vec![
        Entry::dir("bin"),
        Entry::file("bin/busybox", content).mode(0o755),
        Entry::file("bin/printenv", PRINTENV_SCRIPT).mode(0o755),
    ];
    for applet in [
        "sh",
        "env",
        "cat",
        "ls",
        "echo",
        "id",
        "stat",
        "find",
        "sha256sum",
        "readlink",
        "pwd",
    ] {
        assert!(
            available.lines().any(|l| l.trim() == applet),
            "/bin/busybox lacks the {applet} applet the test images rely on"
        );
        layer.push(Entry::symlink(format!("bin/{applet}"), "busybox"));
    }
    layer
}

fn bits(v: u64) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

/// Everything a filesystem can hold that an export can carry, across three layers.
pub fn rich_layers() -> Vec<Vec<Entry>> {
    let long = format!("deep/{}", "n".repeat(200));
    let non_utf8 = b"odd/caf\xe9-\xff\xfe".to_vec();
    // VFS capability v2: cap_net_raw effective+permitted; 0x0a byte on purpose.
    let mut cap = vec![0x01, 0x00, 0x00, 0x02];
    cap.extend(bits(0x0000_2000_0000_000a)[..4].iter());
    cap.extend([0; 12]);
    let base = vec![
        Entry::dir("bin"),
        Entry::dir("data"),
        Entry::file("data/a", "original a\n"),
        Entry::hardlink("data/a-link", "data/a"),
        Entry::file("data/b", "b and its twin\n"),
        Entry::hardlink("data/b-twin", "data/b"),
        Entry::file("data/setuid", "x").mode(0o4755),
        Entry::dir("data/setgid-dir").mode(0o2775).owner(1000, 1001),
        Entry::dir("data/sticky").mode(0o1777),
        Entry::file("data/owned", "owned\n")
            .owner(4242, 4343)
            .mode(0o640),
        Entry::file("data/epoch", "old\n").mtime(0),
        Entry::file("data/y2100", "future\n").mtime(4_102_444_800),
        Entry::file("data/y2242", "far future\n").mtime(8_589_934_592),
        Entry::file("data/ping", "pretend binary")
            .mode(0o755)
            .xattr("security.capability", &cap),
        Entry::file("data/user-xattr", "u").xattr("user.note", "dropped by export"),
        Entry::symlink("data/abs-link", "/data/a"),
        Entry::symlink("data/rel-link", "../data/b"),
        Entry::symlink("data/dangling", "/nowhere/at/all"),
        Entry::dir("devices"),
        Entry::char_dev("devices/null", 1, 3).mode(0o666),
        Entry::block_dev("devices/loop9", 7, 9).mode(0o660),
        Entry::fifo("devices/pipe").mode(0o600),
        Entry::dir("deep"),
        Entry::file(&long, "long name\n"),
        Entry::dir("odd"),
        Entry::file(&non_utf8, "latin-1 name\n"),
        Entry::dir("opt"),
        Entry::dir("opt/x"),
        Entry::file("opt/x/old", "hidden by opaque\n"),
        Entry::file("opt/x/removed", "whited out\n"),
        Entry::file("was-file", "becomes a dir\n"),
        Entry::dir("was-dir"),
        Entry::file("was-dir/child", "gone with the dir\n"),
        Entry::file("wasted", vec![7u8; 256 * 1024]),
    ];
    let middle = vec![
        Entry::dir("data"),
        Entry::file("data/a", "a rewritten: breaks the link\n"),
        Entry::whiteout("data/b"),
        Entry::dir("opt"),
        Entry::dir("opt/x"),
        Entry::opaque("opt/x"),
        Entry::file("opt/x/new", "after opaque\n"),
        // Replacing needs no whiteout: the new entry hides the old one.
        Entry::dir("was-file"),
        Entry::file("was-file/inside", "now a dir\n"),
        Entry::file("was-dir", "now a file\n"),
        Entry::whiteout("wasted"),
    ];
    let top = vec![
        Entry::dir("data"),
        Entry::file("data/c", "pair in the top layer\n"),
        Entry::hardlink("data/c-link", "data/c"),
        Entry::dir("empty-dir").mode(0o700),
    ];
    vec![base, middle, top]
}
