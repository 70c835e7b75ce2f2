//! `--exact`, `--keep-base` and `--keep-layers`: IMAGE's own layers merged
//! client-side, through the real docker CLI on the real engine, compared
//! with the independent merge of tests/support (`docker save` applied layer
//! by layer), with no difference allowed.

mod support;

use support::proxy::{Fault, Proxy};
use support::*;

/// `docker flatten ARGS… IMAGE TAG`, asserting success and the stdout
/// contract; a guard for the new image.
fn flatten(cli: &Cli, args: &[&str], image: &str, tag: &str) -> TestImage {
    let mut all = vec!["flatten"];
    all.extend_from_slice(args);
    all.extend_from_slice(&[image, tag]);
    let out = cli.docker(&all);
    assert!(
        out.status.success(),
        "docker {} failed:\n{}",
        all.join(" "),
        text(&out.stderr)
    );
    let flat = TestImage::track(tag);
    assert_eq!(text(&out.stdout), format!("{}\n", flat.id));
    flat
}

/// Refused before any work (exit 2) with a message containing `says`;
/// TAG untouched.
fn refused(cli: &Cli, args: &[&str], image: &str, says: &str) {
    fails(cli, args, image, says, 2);
}

/// Fails with exit `code` and a message containing `says`; TAG untouched.
fn fails(cli: &Cli, args: &[&str], image: &str, says: &str, code: i32) {
    let tag = unique("refused");
    let mut all = vec!["flatten"];
    all.extend_from_slice(args);
    all.extend_from_slice(&[image, &tag]);
    let out = cli.docker(&all);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert!(stderr.contains(says), "expected {says:?} in:\n{stderr}");
    assert!(text(&out.stdout).is_empty());
    assert!(!image_exists(&tag), "a refused run made {tag}");
}

fn diff_ids(reference: &str) -> Vec<String> {
    inspect(reference)["RootFS"]["Layers"]
        .as_array()
        .expect("RootFS.Layers")
        .iter()
        .map(|l| l.as_str().unwrap().to_owned())
        .collect()
}

/// The source's files with what the export would fake: every placeholder
/// path present (so `--exact` must keep IMAGE's own), xattrs of every
/// namespace, and hardlinks whose target a later layer replaces, deletes or
/// links anew.
fn exact_layers() -> Vec<Vec<Entry>> {
    let mut layers = rich_layers();
    layers.push(vec![
        Entry::dir("etc"),
        Entry::file("etc/hosts", "10.0.0.1 real-host\n").mtime(1_600_000_000),
        Entry::file("etc/hostname", "real\n"),
        Entry::file("etc/resolv.conf", "nameserver 10.0.0.53\n").mode(0o600),
        Entry::symlink("etc/mtab", "../proc/self/mounts"),
        Entry::dir("dev").mtime(1_500_000_000),
        Entry::char_dev("dev/console", 5, 1).mode(0o600),
        Entry::dir("proc").mode(0o555),
        Entry::dir("sys").mode(0o555),
        Entry::file(".dockerenv", "not the engine's\n"),
        Entry::dir("x"),
        Entry::file("x/attrs", "xattrs")
            .xattr("user.mime_type", "text/plain")
            .xattr("trusted.overlay.origin", "keep me"),
        Entry::file("x/t1", "first target\n"),
        Entry::hardlink("x/l1", "x/t1"),
        Entry::file("x/t2", "second target\n"),
        Entry::hardlink("x/l2", "x/t2"),
        Entry::hardlink("x/l2b", "x/t2"),
        Entry::file("x/t3", "third target\n"),
        Entry::hardlink("x/l3", "x/t3"),
        Entry::dir("deep-tree"),
        Entry::dir("deep-tree/a"),
        Entry::dir("deep-tree/a/b"),
        Entry::file("deep-tree/a/b/c", "deep\n"),
    ]);
    layers.push(vec![
        Entry::dir("x"),
        // Replaced, deleted, linked anew: the links keep the old content.
        Entry::file("x/t1", "replaced\n"),
        Entry::whiteout("x/t2"),
        Entry::file("x/new", "a new file\n"),
        Entry::hardlink("x/t3", "x/new"),
        Entry::whiteout("deep-tree"),
        Entry::dir("opt"),
        Entry::opaque("opt"),
        Entry::file("opt/refilled", "after the opaque marker\n"),
        Entry::dir("dir-to-link"),
        Entry::file("dir-to-link/f", "x"),
        Entry::symlink("link-to-dir", "x"),
    ]);
    layers
}

#[test]
fn exact_is_the_merge_of_the_layers_with_no_difference() {
    let cli = Cli::new();
    let spec = ImageSpec::new(exact_layers());
    let source = load_image(&spec, &unique("exact"));
    let flat = flatten(&cli, &["--exact"], &source.reference, &unique("exact-flat"));
    assert_eq!(image_layer_count(&flat.reference), 1);
    let expected = image_fs(&source.reference);
    let actual = image_fs(&flat.reference);
    assert_same_fs(&expected, &actual, &[]);
    // The independent view saw what the export would have lost.
    assert_eq!(
        actual.node("etc/hosts").sha256,
        Some(sha256_hex(b"10.0.0.1 real-host\n"))
    );
    assert_eq!(
        actual.node("etc/mtab").link.as_deref(),
        Some(&b"../proc/self/mounts"[..])
    );
    assert_eq!(
        actual.node("x/l1").sha256,
        Some(sha256_hex(b"first target\n"))
    );
    assert_eq!(
        actual.node("x/l2").sha256,
        Some(sha256_hex(b"second target\n"))
    );
    assert_eq!(
        actual.node("x/l3").sha256,
        Some(sha256_hex(b"third target\n"))
    );
    assert!(actual.node("proc").kind == NodeKind::Dir && !actual.contains("deep-tree"));
    assert_eq!(
        actual
            .node("x/attrs")
            .xattrs
            .get("user.mime_type")
            .map(Vec::as_slice),
        Some(&b"text/plain"[..])
    );
    assert!(actual
        .hardlink_groups()
        .contains(&[b"x/l2".to_vec(), b"x/l2b".to_vec()].into_iter().collect()));
    let containers = containers_of(&source.id);
    assert!(
        containers.is_empty(),
        "containers of the source: {containers:?}"
    );
}

/// A layer that deletes paths and creates them again (a directory as a
/// link, a link as a directory): the containerd store saves it, and
/// `--exact` merges it; Engine 20.10 on fuse-overlayfs cannot even save it,
/// and `--exact` says so.
#[test]
fn paths_deleted_and_made_again_in_one_layer() {
    let cli = Cli::new();
    let layers = vec![
        vec![
            Entry::dir("dir-to-link"),
            Entry::file("dir-to-link/f", "x"),
            Entry::symlink("link-to-dir", "dir-to-link"),
            Entry::dir("t"),
            Entry::dir("t/becomes-file"),
            Entry::file("t/becomes-file/child", "y"),
        ],
        vec![
            Entry::whiteout("dir-to-link"),
            Entry::symlink("dir-to-link", "t"),
            Entry::whiteout("link-to-dir"),
            Entry::dir("link-to-dir"),
            Entry::file("link-to-dir/f", "now a directory\n"),
            Entry::dir("t"),
            Entry::whiteout("t/becomes-file"),
            Entry::file("t/becomes-file", "now a file\n"),
        ],
    ];
    let source = load_image(&ImageSpec::new(layers), &unique("remade"));
    let tag = unique("remade-flat");
    if containerd_store() {
        let flat = flatten(&cli, &["--exact"], &source.reference, &tag);
        assert_same_fs(
            &image_fs(&source.reference),
            &image_fs(&flat.reference),
            &[],
        );
        assert_eq!(
            image_fs(&flat.reference).node("t/becomes-file").kind,
            NodeKind::File
        );
    } else {
        // The engine's failure, not a refusal: exit 1.
        fails(
            &cli,
            &["--exact"],
            &source.reference,
            "the engine cannot save this image",
            1,
        );
    }
}

#[test]
fn keep_layers_zero_is_exact_and_keeping_all_is_refused() {
    let cli = Cli::new();
    let source = load_image(&ImageSpec::new(rich_layers()), &unique("keep0"));
    let flat = flatten(
        &cli,
        &["--keep-layers", "0"],
        &source.reference,
        &unique("keep0-flat"),
    );
    assert_eq!(image_layer_count(&flat.reference), 1);
    assert_same_fs(
        &image_fs(&source.reference),
        &image_fs(&flat.reference),
        &[],
    );
    refused(
        &cli,
        &["--keep-layers", "3"],
        &source.reference,
        "nothing to merge",
    );
}

/// A base of two layers and an image of three more that delete and
/// recreate base files, add a file and delete it again.
fn base_and_app() -> (TestImage, TestImage) {
    let base_layers = vec![
        vec![
            Entry::dir("usr"),
            Entry::file("usr/lib.so", vec![3u8; 64 * 1024]),
            Entry::file("usr/tool", "tool v1\n"),
            Entry::dir("etc"),
            Entry::file("etc/conf", "base conf\n"),
            Entry::dir("cache"),
            Entry::file("cache/a", "cached a\n"),
            Entry::file("cache/b", "cached b\n"),
        ],
        vec![
            Entry::dir("srv"),
            Entry::file("srv/base-data", "data\n"),
            Entry::dir("gone"),
            Entry::file("gone/inside", "x\n"),
        ],
    ];
    let app_layers = vec![
        vec![
            Entry::dir("usr"),
            Entry::whiteout("usr/tool"),
            Entry::dir("tmp"),
            Entry::file("tmp/build-junk", vec![9u8; 128 * 1024]),
            Entry::dir("cache"),
            Entry::opaque("cache"),
            Entry::file("cache/fresh", "fresh\n"),
        ],
        vec![
            Entry::dir("tmp"),
            Entry::whiteout("tmp/build-junk"),
            Entry::dir("usr"),
            Entry::file("usr/tool", "tool v2\n"),
            Entry::whiteout("gone"),
            Entry::dir("etc"),
            Entry::file("etc/conf", "app conf\n"),
        ],
        vec![Entry::dir("app"), Entry::file("app/main", "main\n")],
    ];
    let base_spec = ImageSpec::new(base_layers);
    let base = load_image(&base_spec, &unique("base"));
    let app_spec = ImageSpec::new(app_layers).on(&base_spec, &base.reference);
    let app = load_image(&app_spec, &unique("app"));
    (base, app)
}

#[test]
fn keep_base_keeps_its_layers_and_merges_the_rest() {
    let cli = Cli::new();
    let (base, app) = base_and_app();
    let base_ids = diff_ids(&base.reference);
    let flat = flatten(
        &cli,
        &["--keep-base", &base.reference],
        &app.reference,
        &unique("kept-flat"),
    );
    let ids = diff_ids(&flat.reference);
    assert_eq!(ids.len(), 3, "the base's two layers and one merged layer");
    assert_eq!(
        ids[..2],
        base_ids[..],
        "the base's layers are kept as they are"
    );
    assert_same_fs(&image_fs(&app.reference), &image_fs(&flat.reference), &[]);
    // The merged layer: no junk, and the whiteouts that hide base files.
    let saved = save_image(&flat.reference);
    let merged: Vec<String> = read_tar(&saved.layers[2])
        .iter()
        .map(|e| String::from_utf8_lossy(&e.path).into_owned())
        .collect();
    assert!(
        !merged.iter().any(|p| p.contains("build-junk")),
        "{merged:?}"
    );
    assert!(merged.iter().any(|p| p == ".wh.gone"), "{merged:?}");
    assert!(
        merged.iter().any(|p| p == "cache/.wh..wh..opq"),
        "{merged:?}"
    );
    assert!(
        !merged.iter().any(|p| p.ends_with(".wh.tool")),
        "replaced, not whited out: {merged:?}"
    );
    let history = inspect(&flat.reference);
    assert_eq!(
        saved.config["history"].as_array().unwrap().len(),
        3,
        "{history}"
    );
    // The same with --keep-layers.
    let by_count = flatten(
        &cli,
        &["--keep-layers", "2"],
        &app.reference,
        &unique("kept2"),
    );
    assert_eq!(diff_ids(&by_count.reference)[..2], base_ids[..]);
    assert_same_fs(
        &image_fs(&app.reference),
        &image_fs(&by_count.reference),
        &[],
    );
}

#[test]
fn keep_base_refuses_a_base_the_image_is_not_built_on() {
    let cli = Cli::new();
    let (base, app) = base_and_app();
    let other = load_image(
        &ImageSpec::new(vec![vec![Entry::file("other", "not the base\n")]]),
        &unique("other-base"),
    );
    refused(
        &cli,
        &["--keep-base", &other.reference],
        &app.reference,
        "layer 1 of --keep-base",
    );
    refused(
        &cli,
        &["--keep-base", &app.reference],
        &base.reference,
        "BASE must be an image",
    );
    refused(
        &cli,
        &["--keep-base", &app.reference],
        &app.reference,
        "nothing to merge",
    );
}

#[test]
fn a_dry_run_of_a_partial_flatten_counts_only_what_it_saves() {
    let cli = Cli::new();
    let (base, app) = base_and_app();
    let out = cli.docker(&[
        "flatten",
        "--dry-run",
        "--format",
        "json",
        "--keep-base",
        &base.reference,
        &app.reference,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let analysis = &doc["analysis"];
    assert_eq!(analysis["kept_layers"], 2);
    // The junk of layer 3 is saved; the base files the app deletes are not.
    assert_eq!(analysis["wasted_bytes"], 128 * 1024);
    let full = cli.docker(&["flatten", "--dry-run", "--format", "json", &app.reference]);
    let full: serde_json::Value = serde_json::from_slice(&full.stdout).unwrap();
    assert!(full["analysis"]["wasted_bytes"].as_u64() > analysis["wasted_bytes"].as_u64());
}

#[test]
fn a_cut_save_stream_fails_and_leaves_nothing() {
    let cli = Cli::new();
    let src = source_image();
    let tag = existing_tag();
    let before = dangling_volumes();
    // Even where the engine does not say whether an image is
    // multi-platform (the containerd store before API 1.48, which only the
    // save stream tells), the stream is read once: for the platforms and
    // the layers both.
    let counting = Proxy::start(None);
    let done = TestImage::track(&unique("dflt-exact-count"));
    let out = cli.docker(&[
        "-H",
        &counting.host(),
        "flatten",
        "--exact",
        &src.image.reference,
        &done.reference,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let reads = counting
        .requests()
        .iter()
        .filter(|r| r.contains("/get"))
        .count();
    assert_eq!(
        reads,
        1,
        "one read of the save stream: {:?}",
        counting.requests()
    );
    let done_id = inspect(&done.reference)["Id"].as_str().unwrap().to_owned();
    let proxy = Proxy::start(Some(Fault::CutLaterResponse {
        matches: "/get",
        skip: 0,
        after: 300_000,
    }));
    let out = cli.docker(&[
        "-H",
        &proxy.host(),
        "flatten",
        "--exact",
        &src.image.reference,
        &tag.reference,
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("reading the layers of"), "{stderr}");
    assert!(proxy.fired() > 0, "the fault never fired");
    assert!(
        stderr.contains(&format!("{} is unchanged", tag.reference)),
        "{stderr}"
    );
    assert_eq!(inspect(&tag.reference)["Id"], tag.id.as_str(), "TAG moved");
    assert_nothing_left(&src, &before, &[&done_id], "a cut save stream");
}

/// The engine's way to fail a save that has begun: its error appended to
/// the body, which ends properly. The archive is then not whole, and the
/// run must fail on it, never build from what came.
#[test]
fn a_save_stream_ending_in_an_error_fails_and_leaves_nothing() {
    let cli = Cli::new();
    let src = source_image();
    let tag = existing_tag();
    let before = dangling_volumes();
    let counting = Proxy::start(None);
    let out = cli.docker(&[
        "-H",
        &counting.host(),
        "flatten",
        "--dry-run",
        "--exact",
        &src.image.reference,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The dry run too reads the save stream once, for the platforms and
    // the layers (see a_cut_save_stream_fails_and_leaves_nothing).
    let reads = counting
        .requests()
        .iter()
        .filter(|r| r.contains("/get"))
        .count();
    assert_eq!(
        reads,
        1,
        "one read of the save stream: {:?}",
        counting.requests()
    );
    let proxy = Proxy::start(Some(Fault::ErrorInBody {
        matches: "/get",
        skip: 0,
        after: 300_000,
    }));
    let out = cli.docker(&[
        "-H",
        &proxy.host(),
        "flatten",
        "--exact",
        &src.image.reference,
        &tag.reference,
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(proxy.fired() > 0, "the fault never fired");
    assert!(
        stderr.contains("reading the layers of") && stderr.contains("is not a whole image"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{} is unchanged", tag.reference)),
        "{stderr}"
    );
    assert_eq!(inspect(&tag.reference)["Id"], tag.id.as_str(), "TAG moved");
    assert_nothing_left(&src, &before, &[], "a save stream ending in an error");
}

/// Ctrl-C while the layers are read: the run stops, exits 130, leaves TAG
/// alone and nothing behind (the layers' files are unnamed and go with it).
#[test]
fn an_interrupt_while_reading_the_layers_leaves_nothing() {
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let src = source_image();
    let tag = existing_tag();
    let before = dangling_volumes();
    let proxy = Proxy::start(Some(Fault::StallResponse {
        matches: "/get",
        after: 300 * 1024,
    }));
    let mut child = plugin_command(&["flatten", "--exact", &src.image.reference, &tag.reference])
        .env("DOCKER_HOST", proxy.host())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the flatten");
    let deadline = Instant::now() + Duration::from_secs(120);
    while proxy.fired() == 0 {
        assert!(Instant::now() < deadline, "the save stream never stalled");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = std::process::Command::new("kill")
        .args(["-s", "INT", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "did not stop after SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(out.stdout.is_empty());
    assert_eq!(inspect(&tag.reference)["Id"], tag.id.as_str(), "TAG moved");
    assert_nothing_left(&src, &before, &[], "an interrupted --exact");
}
