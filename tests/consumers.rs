//! What other tools make of a flattened image: skopeo gets it out of the
//! engine as an OCI layout and umoci unpacks it; GNU tar and bsdtar extract
//! its layer. Each tree is compared with the independent merge of the
//! source's layers (tests/support/fsview.rs), not with the plugin's output.
//!
//! Unix tools writing unix modes and owners: on Windows this file compiles
//! to nothing.
#![cfg(unix)]

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use support::*;

/// The source's creation time in every fixture (see `ImageSpec`), which
/// the flattened layer's root directory carries.
const FIXTURE_CREATED: i64 = 1_704_067_200;

/// The fidelity tests' three layers (modes with special bits, owners,
/// times, long names, links, whiteouts, an opaque directory, replaced
/// paths) less what these tools cannot or rightly will not write: no time
/// in the future (GNU tar warns of those), no device (a rootless umoci
/// cannot make one), no xattr (the export keeps only capabilities, which
/// an unprivileged unpack cannot set). A name that is not UTF-8 only where
/// `odd_name`: the engine's export writes it raw into a PAX `path` record,
/// which bsdtar refuses (README: Limits).
fn layers(odd_name: bool) -> Vec<Vec<Entry>> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let keep = |e: &Entry| {
        !matches!(e.kind, Kind::CharDev(..) | Kind::BlockDev(..))
            && e.mtime <= now
            && (odd_name || std::str::from_utf8(&e.path).is_ok())
    };
    rich_layers()
        .into_iter()
        .map(|layer| {
            let mut layer: Vec<Entry> = layer.into_iter().filter(keep).collect();
            for e in &mut layer {
                e.xattrs.clear();
            }
            layer
        })
        .collect()
}

/// Loads the fixture and flattens it through `docker flatten`.
fn source_and_flat(name: &str, odd_name: bool) -> (TestImage, TestImage) {
    let source = load_image(&ImageSpec::new(layers(odd_name)), &unique(name));
    let tag = unique(&format!("{name}-flat"));
    let out = Cli::new().docker(&["flatten", &source.reference, &tag]);
    let flat = TestImage::track(&tag);
    check_ok(&out, &format!("docker flatten {} {tag}", source.reference));
    (source, flat)
}

fn run(program: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program} (is it installed?): {e}"));
    if let Some(data) = stdin {
        let mut pipe = child.stdin.take().expect("piped stdin");
        pipe.write_all(data)
            .unwrap_or_else(|e| panic!("feeding {program}: {e}"));
    }
    let out = child.wait_with_output().expect("wait for the tool");
    check_ok(&out, &format!("{program} {}", args.join(" ")));
    out
}

/// The source's files as an extractor should write them: the merge of its
/// layers from `docker save`, without the placeholder paths.
fn expected(source: &TestImage) -> FsView {
    let mut view = image_fs(&source.reference);
    view.0.retain(|path, _| !is_ignored(path, PLACEHOLDERS));
    view
}

fn root_of(dir: &Path) -> (u32, i64) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir).expect("stat the unpacked root");
    (meta.mode() & 0o7777, meta.mtime())
}

#[test]
fn umoci_unpacks_the_flattened_image_like_the_merged_source() {
    let (source, flat) = source_and_flat("umoci", true);
    let dir = tempfile::Builder::new()
        .prefix("dflt-umoci-")
        .tempdir()
        .expect("temp dir");
    let saved = dir.path().join("save.tar");
    let saved = saved.to_str().expect("UTF-8 temp path");
    docker_ok(&["save", "-o", saved, &flat.reference]);
    let layout = format!("{}/oci:flat", dir.path().display());
    run(
        "skopeo",
        &[
            "copy",
            "--quiet",
            &format!("docker-archive:{saved}"),
            &format!("oci:{layout}"),
        ],
        None,
    );
    let bundle = dir.path().join("bundle");
    let bundle_str = bundle.to_str().expect("UTF-8 temp path");
    let out = run(
        "umoci",
        &["unpack", "--rootless", "--image", &layout, bundle_str],
        None,
    );
    assert!(out.stderr.is_empty(), "umoci: {}", text(&out.stderr));

    let rootfs = bundle.join("rootfs");
    assert_eq!(
        root_of(&rootfs),
        (0o755, FIXTURE_CREATED),
        "the root directory"
    );
    // A rootless unpack cannot give files away: every owner is the caller.
    let mut want = expected(&source);
    for node in want.0.values_mut() {
        (node.uid, node.gid) = (0, 0);
    }
    assert_same_fs(&want, &FsView::from_dir(&rootfs), &[]);
}

/// Extracts the flattened layer with `tool` as root into a fresh directory
/// and compares the tree with the source's merge.
fn extracts_without_a_word(tool: &str, odd_name: bool) {
    let (source, flat) = source_and_flat(tool, odd_name);
    let saved = save_image(&flat.reference);
    assert_eq!(saved.layers.len(), 1);
    let dir = tempfile::Builder::new()
        .prefix("dflt-extract-")
        .tempdir()
        .expect("temp dir");
    let target = dir.path().to_str().expect("UTF-8 temp path");
    let out = run(
        tool,
        &["-x", "--numeric-owner", "-f", "-", "-C", target],
        Some(&saved.layers[0]),
    );
    assert!(
        out.stderr.is_empty() && out.stdout.is_empty(),
        "{tool} said something: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_same_fs(&expected(&source), &FsView::from_dir(dir.path()), &[]);
    let (mode, mtime) = root_of(dir.path());
    assert_eq!(mode, 0o755, "{tool}: the root's mode");
    // bsdtar leaves the time of the directory it extracts into alone.
    if tool == "tar" {
        assert_eq!(mtime, FIXTURE_CREATED, "{tool}: the root's mtime");
    }
}

#[test]
fn gnu_tar_extracts_the_layer_without_a_word() {
    extracts_without_a_word("tar", true);
}

#[test]
fn bsdtar_extracts_the_layer_without_a_word() {
    extracts_without_a_word("bsdtar", false);
}
