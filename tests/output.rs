//! `--output FILE` and `-o -`: the flattened image as an archive instead of
//! an image on the engine. What the archive holds is checked by its real
//! consumers: `docker load` on the engine under test (and on the engine
//! with the other image store), skopeo and umoci; each result is compared
//! with a direct flatten of the same image, or with the independent merge
//! of the source's layers (tests/support/fsview.rs). Failures (a full or
//! read-only directory, an interrupt mid-stream) must leave FILE as it was
//! and nothing on the engine.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::proxy::{Fault, Proxy};
use support::small_engine::mount_tmpfs;
use support::*;

/// A directory that goes with the test.
fn scratch(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("dflt-{name}-"))
        .tempdir()
        .expect("temp dir")
}

/// `docker flatten -o FILE IMAGE TAG`, which must succeed.
fn flatten_to(cli: &Cli, file: &Path, image: &str, tag: &str, more: &[&str]) -> Output {
    let file = file.to_str().expect("UTF-8 path");
    let mut args = vec!["flatten", "-o", file];
    args.extend_from_slice(more);
    args.extend_from_slice(&[image, tag]);
    let out = cli.docker(&args);
    check_ok(&out, &format!("docker {}", args.join(" ")));
    out
}

/// The fidelity fixture with a platform and config of its own, marked so
/// that what its flattenings leave can be traced to it.
fn rich_source(name: &str) -> Source {
    let marker = unique("marker");
    let mut spec = ImageSpec::new(rich_layers());
    spec.architecture = "arm64".into();
    spec.variant = Some("v8".into());
    spec.config = json!({
        "Env": ["P=$5", "Q=a\nb"],
        "Cmd": ["/srv/run", "--flag"],
        "WorkingDir": "/srv",
        "Labels": {"dflt.test.marker": marker},
    });
    Source {
        image: load_image(&spec, &unique(name)),
        marker,
    }
}

/// Directory attributes that differ between any two flattens: the
/// container's creation time on `/etc` and `/dev` (README: Limits).
const PER_RUN: &[&str] = &["etc", "dev"];

/// The container config fields the fixtures set, as compared across
/// stores: a graphdriver engine reports its whole struct, zero values and
/// all, where the containerd store keeps what it was given (README: Limits).
const CONFIG_FIELDS: &[&str] = &[
    "Cmd",
    "Entrypoint",
    "Env",
    "WorkingDir",
    "User",
    "Labels",
    "Volumes",
];

/// Files, config and platform of `got` are those of `want`.
fn assert_same_image(want: &SavedImage, got: &SavedImage, what: &str) {
    assert_eq!(got.layers.len(), 1, "{what}: one layer");
    assert_same_fs(&want.fs(), &got.fs(), PER_RUN);
    assert_same_config(&want.config, &got.config, what);
}

fn assert_same_config(want: &Value, got: &Value, what: &str) {
    // Zero values and absent fields mean the same.
    let value = |config: &Value, field: &str| match &config["config"][field] {
        Value::String(s) if s.is_empty() => Value::Null,
        Value::Array(a) if a.is_empty() => Value::Null,
        Value::Object(o) if o.is_empty() => Value::Null,
        v => v.clone(),
    };
    for field in CONFIG_FIELDS {
        assert_eq!(
            value(got, field),
            value(want, field),
            "{what}: config.{field}"
        );
    }
    for field in ["os", "architecture", "variant", "author"] {
        assert_eq!(got[field], want[field], "{what}: {field}");
    }
}

#[test]
fn the_archive_loads_like_a_direct_flatten_and_leaves_nothing_on_the_engine() {
    let cli = Cli::new();
    let source = rich_source("out-load");
    let volumes = dangling_volumes();
    let direct = unique("out-direct");
    check_ok(
        &cli.docker(&["flatten", &source.image.reference, &direct]),
        "docker flatten",
    );
    let direct = TestImage::track(&direct);
    let dir = scratch("out-load");
    let file = dir.path().join("flat.tar");
    let tag = format!("{}:archived", unique("out-archived"));
    let out = flatten_to(&cli, &file, &source.image.reference, &tag, &[]);
    assert!(out.stdout.is_empty(), "stdout: {}", text(&out.stdout));
    assert!(!image_exists(&tag), "TAG was created on the engine");
    assert_nothing_left(&source, &volumes, &[&direct.id], "a flatten to a file");
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("read dir").count(),
        1,
        "only FILE, no temporary file"
    );

    docker_ok(&["load", "-i", file.to_str().expect("UTF-8 path")]);
    let loaded = TestImage::track(&tag);
    assert!(!loaded.id.is_empty(), "docker load did not name it {tag}");
    assert_same_image(
        &save_image(&direct.reference),
        &save_image(&loaded.reference),
        "loaded",
    );
    let (want, got) = (inspect(&direct.reference), inspect(&loaded.reference));
    for field in ["Config", "Os", "Architecture", "Variant"] {
        assert_eq!(got[field], want[field], "{field}");
    }
}

/// The engine with the other image store loads it too: an archive made on
/// a graphdriver engine (plain OCI, gzip) goes into the containerd store,
/// and one from the containerd store into Engine 20.10 (by its
/// `manifest.json`).
#[test]
fn the_engine_with_the_other_store_loads_it_too() {
    let other = other_engine();
    let cli = Cli::new();
    let source = rich_source("out-other").image;
    let want = save_image(&source.reference);
    let dir = scratch("out-other");
    let file = dir.path().join("flat.tar");
    let tag = format!("{}:other", unique("out-other"));
    flatten_to(&cli, &file, &source.reference, &tag, &[]);
    let file = file.to_str().expect("UTF-8 path");
    let load = Command::new("docker")
        .args(["-H", &other, "load", "-i", file])
        .output()
        .expect("run docker load");
    let cleanup = || {
        let _ = Command::new("docker")
            .args(["-H", &other, "rmi", "-f", &tag])
            .output();
    };
    if !load.status.success() {
        cleanup();
        panic!("docker -H {other} load: {}", text(&load.stderr));
    }
    let got = save_image_on(&other, &tag);
    cleanup();
    assert_eq!(got.layers.len(), 1);
    // The export carries no xattr but `security.capability` (README: Limits).
    let mut expected = want.fs();
    for node in expected.0.values_mut() {
        node.xattrs.retain(|k, _| k == "security.capability");
    }
    assert_same_fs(&expected, &got.fs(), PLACEHOLDERS);
    assert_same_config(&want.config, &got.config, "on the other engine");
}

#[cfg(unix)]
fn run(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot start {program} (is it installed?): {e}"));
    check_ok(&out, &format!("{program} {}", args.join(" ")));
    out
}

// umoci and the unpacked tree's modes and owners: unix only.
#[cfg(unix)]
#[test]
fn skopeo_and_umoci_read_the_archive() {
    let cli = Cli::new();
    // What a rootless umoci can write: no devices, no xattrs (see
    // tests/consumers.rs), no times in the future.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let layers = rich_layers()
        .into_iter()
        .map(|layer| {
            layer
                .into_iter()
                .filter(|e| !matches!(e.kind, Kind::CharDev(..) | Kind::BlockDev(..)))
                .filter(|e| e.mtime <= now)
                .map(|mut e| {
                    e.xattrs.clear();
                    e
                })
                .collect()
        })
        .collect();
    let mut spec = ImageSpec::new(layers);
    spec.config = json!({"Cmd": ["/srv/run"], "Env": ["A=1"]});
    let source = load_image(&spec, &unique("out-oci"));
    let dir = scratch("out-oci");
    let file = dir.path().join("flat.tar");
    let tag = format!("{}:1.4", unique("out-oci"));
    flatten_to(&cli, &file, &source.reference, &tag, &[]);
    let file = file.to_str().expect("UTF-8 path");

    let archive = format!("oci-archive:{file}");
    let out = run("skopeo", &["inspect", &archive]);
    let image: Value = serde_json::from_slice(&out.stdout).expect("skopeo's JSON");
    assert_eq!(image["Layers"].as_array().map(Vec::len), Some(1), "{image}");
    assert_eq!(image["Os"], "linux");
    assert_eq!(image["Architecture"], host_architecture());
    assert_eq!(image["Env"], json!(["A=1"]));
    let out = run("skopeo", &["inspect", "--raw", &archive]);
    let manifest: Value = serde_json::from_slice(&out.stdout).expect("the manifest");
    assert_eq!(
        manifest["layers"][0]["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip",
        "{manifest}"
    );
    assert_eq!(manifest["layers"][0]["digest"], image["Layers"][0]);

    let layout = dir.path().join("layout");
    std::fs::create_dir(&layout).expect("mkdir");
    run(
        "tar",
        &["-xf", file, "-C", layout.to_str().expect("UTF-8 path")],
    );
    let bundle = dir.path().join("bundle");
    let image = format!("{}:1.4", layout.display());
    let out = run(
        "umoci",
        &[
            "unpack",
            "--rootless",
            "--image",
            &image,
            bundle.to_str().expect("UTF-8"),
        ],
    );
    assert!(out.stderr.is_empty(), "umoci: {}", text(&out.stderr));
    let mut want = image_fs(&source.reference);
    want.0.retain(|path, _| !is_ignored(path, PLACEHOLDERS));
    // A rootless unpack cannot give files away: every owner is the caller.
    for node in want.0.values_mut() {
        (node.uid, node.gid) = (0, 0);
    }
    assert_same_fs(&want, &FsView::from_dir(&bundle.join("rootfs")), &[]);
}

#[test]
fn json_names_the_file_and_its_size_and_stdout_carries_the_same_image() {
    let cli = Cli::new();
    let source = source_image();
    let before = dangling_volumes();
    let dir = scratch("out-json");
    let file = dir.path().join("flat.tar");
    let tag = format!("{}:json", unique("out-json"));
    let out = flatten_to(
        &cli,
        &file,
        &source.image.reference,
        &tag,
        &["--format=json", "--compression=none"],
    );
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", text(&out.stdout)));
    let size = std::fs::metadata(&file).expect("FILE").len();
    assert_eq!(doc["result"]["file"], file.to_str().expect("UTF-8"));
    assert_eq!(doc["result"]["size"], size);
    assert_eq!(doc["result"]["reference"], tag.as_str());
    assert_eq!(doc["result"]["layers"], 1);
    assert_eq!(doc["compression"], "none");
    assert_eq!(doc["already_flat"], false);
    assert_eq!(doc["source"]["id"], source.image.id.as_str());
    assert_nothing_left(&source, &before, &[], "a flatten to a file");
    // A compressed layer is no whole number of tar blocks: its padding
    // counts once in the size said.
    let gzip = dir.path().join("flat-gzip.tar");
    let out = flatten_to(
        &cli,
        &gzip,
        &source.image.reference,
        &tag,
        &["--format=json", "--compression=gzip"],
    );
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let size = std::fs::metadata(&gzip).expect("FILE").len();
    assert_eq!(doc["result"]["size"], size, "gzip");

    // The same image through stdout, which a pipe reads.
    let piped = dir.path().join("piped.tar");
    let out = cli.docker(&["flatten", "-o", "-", &source.image.reference, &tag]);
    check_ok(&out, "docker flatten -o -");
    std::fs::write(&piped, &out.stdout).expect("write what stdout carried");
    assert_nothing_left(&source, &before, &[], "a flatten to stdout");
    for archive in [&file, &piped] {
        docker_ok(&["load", "-i", archive.to_str().expect("UTF-8")]);
        let loaded = TestImage::track(&tag);
        assert_same_image(
            &save_image(&source.image.reference),
            &save_image(&loaded.reference),
            &archive.display().to_string(),
        );
    }
}

/// A tmpfs, unmounted on drop.
struct Mount {
    dir: tempfile::TempDir,
}

impl Mount {
    fn tmpfs(mib: u32) -> Mount {
        let dir = scratch("out-mnt");
        mount_tmpfs(dir.path(), mib);
        Mount { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path())
            .expect("read the mount")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Runs `docker flatten -o FILE` of the leftovers fixture, which must fail;
/// returns its last line of stderr.
fn fails_to_write(file: &Path, what: &str) -> String {
    let cli = Cli::new();
    let source = source_image();
    let tag = existing_tag();
    let before = dangling_volumes();
    let file_str = file.to_str().expect("UTF-8 path");
    let out = cli.docker(&[
        "flatten",
        "-o",
        file_str,
        &source.image.reference,
        &tag.reference,
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{what}: {err}");
    assert!(out.stdout.is_empty(), "{what}: stdout");
    assert_eq!(
        inspect(&tag.reference)["Id"],
        tag.id.as_str(),
        "{what}: TAG moved"
    );
    assert_nothing_left(&source, &before, &[], what);
    let line = err.lines().last().unwrap_or_default().to_owned();
    for needle in [
        "writing the image archive",
        file_str,
        &format!("{file_str} is unchanged"),
    ] {
        assert!(line.contains(needle), "{what}: no {needle:?} in: {err}");
    }
    line
}

#[test]
fn a_full_directory_fails_clearly_and_keeps_the_old_file() {
    // The source's 2 MiB of random data cannot fit.
    let mount = Mount::tmpfs(1);
    let file = mount.path().join("flat.tar");
    std::fs::write(&file, "the previous archive").expect("write the old FILE");
    let line = fails_to_write(&file, "a full directory");
    assert!(line.contains("No space left on device"), "{line}");
    assert_eq!(mount.entries(), ["flat.tar"], "a temporary file was left");
    assert_eq!(
        std::fs::read_to_string(&file).expect("read FILE"),
        "the previous archive"
    );
}

#[test]
fn a_read_only_directory_fails_before_any_work() {
    let mount = Mount::tmpfs(1);
    let remount = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(mount.path())
        .output()
        .expect("run mount");
    check_ok(&remount, "mount -o remount,ro");
    let line = fails_to_write(&mount.path().join("flat.tar"), "a read-only directory");
    assert!(line.contains("Read-only file system"), "{line}");
    assert!(mount.entries().is_empty());
}

#[test]
fn an_interrupt_mid_stream_leaves_no_file() {
    let source = source_image();
    let tag = existing_tag();
    let before = dangling_volumes();
    let proxy = Proxy::start(Some(Fault::StallResponse {
        matches: "/export",
        after: 300 * 1024,
    }));
    let dir = scratch("out-int");
    let file = dir.path().join("flat.tar");
    let file_str = file.to_str().expect("UTF-8 path");
    let host = proxy.host();
    let child = plugin_command(&[
        "-H",
        &host,
        "flatten",
        "-o",
        file_str,
        &source.image.reference,
        &tag.reference,
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start the flatten");
    let deadline = Instant::now() + Duration::from_secs(120);
    while proxy.fired() < 1 {
        assert!(Instant::now() < deadline, "the export never stalled");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Mid-stream, the archive being written has no name (O_TMPFILE).
    assert_eq!(std::fs::read_dir(dir.path()).expect("read dir").count(), 0);
    let kill = Command::new("kill")
        .args(["-s", "INT", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(kill.success());
    let out = wait_with_timeout(child, Duration::from_secs(60));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted by"), "{err}");
    assert!(err.contains(&format!("{file_str} is unchanged")), "{err}");
    assert!(!file.exists(), "FILE was written");
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("read dir").count(),
        0,
        "a temporary file was left"
    );
    assert_eq!(inspect(&tag.reference)["Id"], tag.id.as_str(), "TAG moved");
    assert_nothing_left(&source, &before, &[], "an interrupted flatten to a file");
}

fn wait_with_timeout(mut child: std::process::Child, timeout: Duration) -> Output {
    let deadline = Instant::now() + timeout;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("did not stop within {timeout:?} of the signal");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn stdout_on_a_terminal_is_refused() {
    let cli = Cli::new();
    let image = format!("{}:never", unique("out-tty"));
    let screen = run_in_terminal(
        cli.config_dir(),
        &["docker", "flatten", "-o", "-", &image, "out-tty:never"],
        100,
        20,
    );
    assert_eq!(screen.status, 2, "{}", screen.text());
    assert!(
        screen.text().contains("stdout, which is a terminal"),
        "{}",
        screen.text()
    );
}

/// `-o FILE IMAGE` with no TAG names the image in the archive as IMAGE, as
/// `docker save IMAGE` does; GNU tar reads the name back.
#[test]
fn an_archive_without_tag_names_the_image_as_image() {
    let source = source_image();
    let dir = scratch("out-noname");
    let file = dir.path().join("flat.tar");
    let cli = Cli::new();
    let out = cli.docker(&[
        "flatten",
        "-o",
        file.to_str().expect("UTF-8 path"),
        &source.image.reference,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let index = std::process::Command::new("tar")
        .args(["-xOf", file.to_str().unwrap(), "index.json"])
        .output()
        .expect("run tar");
    assert!(index.status.success());
    let index: serde_json::Value = serde_json::from_slice(&index.stdout).expect("index.json");
    let (repo, tag) = source.image.reference.rsplit_once(':').unwrap();
    let annotations = &index["manifests"][0]["annotations"];
    assert_eq!(annotations["org.opencontainers.image.ref.name"], tag);
    assert!(
        annotations["io.containerd.image.name"]
            .as_str()
            .is_some_and(|n| n.ends_with(&format!("{repo}:{tag}"))),
        "{annotations}"
    );
    // An image ID names nothing: TAG is then needed.
    let id = source.image.id.trim_start_matches("sha256:")[..12].to_owned();
    let out = cli.docker(&["flatten", "-o", file.to_str().unwrap(), &id]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("give TAG"));
}
