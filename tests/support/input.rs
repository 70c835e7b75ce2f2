//! Image archives for `docker flatten -i FILE`, written by hand: OCI image
//! layouts of one image or several, with plain, gzip or zstd layers, as a
//! tar or as a directory; ways to break them (a cut, a changed byte, a
//! missing blob); and what a run on them must leave: nothing in the output
//! directory, nothing on the engine.
//!
//! Like the rest of tests/support, nothing here uses `src/`: the layouts
//! are built from the OCI image-layout spec with the tar, flate2 and zstd
//! crates, and read back with [`super::fsview`].

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::archive::{archive_member, sha256_hex, with_tag, ImageSpec};
use super::engine::{docker, docker_ok, text, PLUGIN_TIMEOUT};
use super::fsview::{parse_saved_archive, SavedImage};
use super::oci::{fully_qualified, INDEX, MANIFEST};

/// How a layout stores its layer blobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layers {
    Plain,
    Gzip,
    Zstd,
}

impl Layers {
    fn media_type(self) -> &'static str {
        match self {
            Layers::Plain => "application/vnd.oci.image.layer.v1.tar",
            Layers::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Layers::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }

    fn compress(self, tar: &[u8]) -> Vec<u8> {
        match self {
            Layers::Plain => tar.to_vec(),
            Layers::Gzip => {
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                enc.write_all(tar).expect("gzip a layer");
                enc.finish().expect("finish gzip")
            }
            Layers::Zstd => zstd::stream::encode_all(tar, 3).expect("zstd a layer"),
        }
    }
}

/// The config and layer tars of `spec` as loaded under `reference`: the
/// same bytes [`super::archive::write_docker_archive`] writes for it.
pub fn image_of(spec: &ImageSpec, reference: &str) -> (Vec<u8>, Vec<Vec<u8>>) {
    let reference = with_tag(reference);
    let tars = spec.layer_tars(&reference);
    let config = spec.config_json(&tars, &reference);
    (config, tars)
}

/// What [`Layout::add_image`] wrote.
#[derive(Debug, Clone)]
pub struct AddedImage {
    /// `sha256:…` of the manifest: the index entry's digest.
    pub manifest: String,
    /// `sha256:…` of the config: the image ID of a graphdriver engine.
    pub config: String,
    /// Each layer blob's path in the layout (`blobs/sha256/…`), bottom first.
    pub layer_paths: Vec<String>,
    pub config_path: String,
}

/// An OCI image layout being written: `oci-layout`, the blobs, and the
/// entries of `index.json`.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    blobs: Vec<(String, Vec<u8>)>,
    entries: Vec<Value>,
    /// A `manifest.json` to add, as `docker save` of Engine 25+ does.
    pub docker_manifest: Option<Value>,
}

impl Layout {
    pub fn new() -> Layout {
        Layout::default()
    }

    fn blob(&mut self, data: Vec<u8>) -> (String, usize) {
        let hex = sha256_hex(&data);
        let size = data.len();
        let path = format!("blobs/sha256/{hex}");
        if !self.blobs.iter().any(|(p, _)| *p == path) {
            self.blobs.push((path, data));
        }
        (format!("sha256:{hex}"), size)
    }

    /// One image: its config and layers (each compressed as `layers` says)
    /// and a manifest, listed in `index.json` with `annotations`.
    pub fn add_image(
        &mut self,
        config: &[u8],
        tars: &[Vec<u8>],
        layers: Layers,
        annotations: Value,
    ) -> AddedImage {
        let (config_digest, config_size) = self.blob(config.to_vec());
        let mut descriptors = Vec::new();
        let mut layer_paths = Vec::new();
        for tar in tars {
            let (digest, size) = self.blob(layers.compress(tar));
            layer_paths.push(format!("blobs/sha256/{}", &digest[7..]));
            descriptors.push(json!({
                "mediaType": layers.media_type(),
                "digest": digest,
                "size": size,
            }));
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config_size,
            },
            "layers": descriptors,
        });
        let (manifest_digest, manifest_size) =
            self.blob(serde_json::to_vec(&manifest).expect("serialise a manifest"));
        let mut entry = json!({
            "mediaType": MANIFEST,
            "digest": manifest_digest,
            "size": manifest_size,
        });
        if annotations.as_object().is_some_and(|a| !a.is_empty()) {
            entry["annotations"] = annotations;
        }
        self.entries.push(entry);
        AddedImage {
            manifest: manifest_digest,
            config_path: format!("blobs/sha256/{}", &config_digest[7..]),
            config: config_digest,
            layer_paths,
        }
    }

    /// Every member, in the order a tar gets them: `oci-layout`, the
    /// blobs, `index.json`, and `manifest.json` if any.
    pub fn members(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = vec![(
            "oci-layout".to_owned(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        )];
        out.extend(self.blobs.iter().cloned());
        let index = json!({ "schemaVersion": 2, "mediaType": INDEX, "manifests": self.entries });
        out.push((
            "index.json".to_owned(),
            serde_json::to_vec(&index).expect("serialise index.json"),
        ));
        if let Some(manifest) = &self.docker_manifest {
            out.push((
                "manifest.json".to_owned(),
                serde_json::to_vec(manifest).expect("serialise manifest.json"),
            ));
        }
        out
    }

    /// The layout as a tar at `out` (what `skopeo copy … oci-archive:`
    /// and `buildx --output type=oci` write).
    pub fn write_tar(&self, out: &Path) {
        write_tar(&self.members(), out);
    }

    /// The layout as a directory `dir` (what `skopeo copy … oci:DIR`
    /// writes); `dir` may exist.
    pub fn write_dir(&self, dir: &Path) {
        for (name, data) in self.members() {
            let path = dir.join(&name);
            std::fs::create_dir_all(path.parent().expect("a parent"))
                .unwrap_or_else(|e| panic!("mkdir for {}: {e}", path.display()));
            std::fs::write(&path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        }
    }
}

/// The members of a docker-archive (the layout of `docker save` before
/// Engine 25) of one image: each layer as `<diff_id hex>/layer.tar`, the
/// config as `<hex>.json`, then `manifest.json` naming it `repo_tags`.
pub fn docker_archive_members(
    config: &[u8],
    tars: &[Vec<u8>],
    repo_tags: &[&str],
) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut layers = Vec::new();
    for tar in tars {
        let path = format!("{}/layer.tar", sha256_hex(tar));
        if !out.iter().any(|(p, _)| *p == path) {
            out.push((path.clone(), tar.clone()));
        }
        layers.push(path);
    }
    let config_name = format!("{}.json", sha256_hex(config));
    out.push((config_name.clone(), config.to_vec()));
    let manifest = json!([{ "Config": config_name, "RepoTags": repo_tags, "Layers": layers }]);
    out.push((
        "manifest.json".to_owned(),
        serde_json::to_vec(&manifest).expect("serialise manifest.json"),
    ));
    out
}

/// The two names `docker save` of the containerd store gives an image in
/// `index.json`: the full reference and the bare tag.
pub fn containerd_names(reference: &str) -> Value {
    let reference = with_tag(reference);
    let tag = reference.rsplit(':').next().expect("a tag");
    json!({
        "io.containerd.image.name": fully_qualified(&reference),
        "org.opencontainers.image.ref.name": tag,
    })
}

/// Members `(name, data)` as a tar at `out`.
pub fn write_tar(members: &[(String, Vec<u8>)], out: &Path) {
    let file =
        std::fs::File::create(out).unwrap_or_else(|e| panic!("create {}: {e}", out.display()));
    let mut tar = tar::Builder::new(file);
    for (name, data) in members {
        archive_member(&mut tar, name, data);
    }
    tar.into_inner().expect("finish the tar");
}

/// Regular files of a tar, by name (leading `./` dropped).
pub fn tar_members(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut archive = tar::Archive::new(bytes);
    for entry in archive.entries().expect("read a tar") {
        let mut entry = entry.expect("a tar entry");
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = String::from_utf8_lossy(&entry.path_bytes())
            .trim_start_matches("./")
            .to_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("a tar member");
        out.push((name, data));
    }
    out
}

/// A directory's regular files as an in-memory tar, for
/// [`parse_saved_archive`] to read an OCI layout directory.
pub fn tar_of_dir(dir: &Path) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    tar.append_dir_all(".", dir)
        .unwrap_or_else(|e| panic!("tar up {}: {e}", dir.display()));
    tar.into_inner().expect("finish the tar")
}

/// The image of a one-image archive or layout directory, read by the
/// tests' own reader (layers decompressed and checked against their
/// digests and diff IDs).
pub fn read_image(path: &Path) -> SavedImage {
    if path.is_dir() {
        parse_saved_archive(&tar_of_dir(path))
    } else {
        parse_saved_archive(&std::fs::read(path).unwrap_or_else(|e| {
            panic!("read {}: {e}", path.display());
        }))
    }
}

/// A directory that goes with the test.
pub fn scratch(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("dflt-{name}-"))
        .tempdir()
        .expect("temp dir")
}

/// The names in `dir`, sorted.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `path` as a `&str` (the tests' temp paths are UTF-8).
pub fn utf8(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// The source config's fields, every one but the layers' (`rootfs`,
/// `history`), are the result's: IMAGE's whole config and platform.
#[track_caller]
pub fn assert_config_kept(source: &Value, result: &Value, what: &str) {
    let source = source.as_object().expect("a config object");
    for (key, value) in source {
        if key == "rootfs" || key == "history" {
            continue;
        }
        assert_eq!(&result[key], value, "{what}: config field {key}");
    }
    assert_eq!(
        result["rootfs"]["diff_ids"].as_array().map(Vec::len),
        Some(1),
        "{what}: one layer in the result's config: {result}"
    );
}

/// `docker … | docker-or-plugin …`: `producer`'s stdout is `consumer`'s
/// stdin through a real pipe (nothing seekable). Both outputs, each with a
/// deadline.
pub fn pipe(mut producer: Command, mut consumer: Command) -> (Output, Output) {
    let shown = format!("{producer:?} | {consumer:?}");
    producer
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut first = producer
        .spawn()
        .unwrap_or_else(|e| panic!("start {shown}: {e}"));
    let stdout = first.stdout.take().expect("piped stdout");
    consumer
        .stdin(Stdio::from(stdout))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let second = consumer
        .spawn()
        .unwrap_or_else(|e| panic!("start {shown}: {e}"));
    let second = wait_output(second, PLUGIN_TIMEOUT, &shown);
    let first = wait_output(first, PLUGIN_TIMEOUT, &shown);
    (first, second)
}

/// `cmd` with stdin read from `file` (a regular file, seekable).
pub fn with_stdin_file(mut cmd: Command, file: &Path) -> Output {
    let shown = format!("{cmd:?} < {}", file.display());
    let input =
        std::fs::File::open(file).unwrap_or_else(|e| panic!("open {}: {e}", file.display()));
    cmd.stdin(Stdio::from(input))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap_or_else(|e| panic!("start {shown}: {e}"));
    wait_output(child, PLUGIN_TIMEOUT, &shown)
}

fn wait_output(mut child: std::process::Child, timeout: Duration, shown: &str) -> Output {
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for a child") {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{shown} did not finish within {timeout:?}; killed it");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// The IDs of the images and containers on the engine labelled
/// `dflt.test.marker=marker` (the fixtures' configs carry it, so a
/// container or image made from one of them does too).
pub fn marked(marker: &str) -> BTreeSet<String> {
    let filter = format!("label=dflt.test.marker={marker}");
    let images = docker_ok(&["images", "-a", "-q", "--no-trunc", "--filter", &filter]);
    let containers = docker_ok(&["ps", "-a", "-q", "--no-trunc", "--filter", &filter]);
    images
        .lines()
        .chain(containers.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// A refused run: exit `code` (any nonzero one for `None`), stderr names
/// every one of `names`, stdout carries no image ID.
#[track_caller]
pub fn assert_refused(out: &Output, code: Option<i32>, names: &[&str], what: &str) {
    let err = text(&out.stderr);
    match code {
        Some(code) => assert_eq!(out.status.code(), Some(code), "{what}:\n{err}"),
        None => assert!(
            !out.status.success() && out.status.code().is_some(),
            "{what}: {}\n{err}",
            out.status
        ),
    }
    for name in names {
        assert!(
            err.contains(name),
            "{what}: {name:?} is not in stderr:\n{err}"
        );
    }
    assert!(
        !text(&out.stdout).contains("sha256:"),
        "{what}: stdout has an ID: {}",
        text(&out.stdout)
    );
}

/// Whether the engine knows `reference`.
pub fn exists(reference: &str) -> bool {
    docker(&["image", "inspect", "--format", "{{.Id}}", reference])
        .status
        .success()
}

/// `OsStr` of a `&str`, for environment values.
pub fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}
