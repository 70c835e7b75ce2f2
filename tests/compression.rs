//! `--compression` end to end on the engine `DOCKER_HOST` names: every mode
//! that engine takes gives a one-layer image with the source's files and
//! config; a mode it cannot take is refused before anything is created; and
//! an image that already has one layer is only tagged, unless `--force`.
//!
//! The filesystems are compared through `docker save`, read by the test
//! support (which decompresses gzip and zstd blobs itself), never by the
//! code under test.

mod support;

use serde_json::json;
use support::*;

/// Compressible data, different in every MiB, so that a gzip upload is
/// several members and a member out of order would change the files.
fn data(len: usize) -> Vec<u8> {
    pseudo_random(len, 0x853c_49e6_748f_ea9b)
        .into_iter()
        .enumerate()
        .map(|(i, r)| if i % 4 == 0 { r } else { b"flatten "[i % 8] })
        .collect()
}

fn multi_layer_image() -> TestImage {
    let mut spec = ImageSpec::new(vec![
        vec![
            Entry::dir("srv"),
            Entry::file("srv/big", data(3 * 1024 * 1024 + 4321)),
            Entry::file("srv/gone", "whited out later\n"),
            Entry::symlink("srv/link", "big"),
        ],
        vec![
            Entry::dir("srv"),
            Entry::whiteout("srv/gone"),
            Entry::file("srv/small", "second layer\n").owner(1000, 1000),
        ],
        vec![Entry::dir("top"), Entry::file("top/f", "third layer\n")],
    ]);
    spec.config = json!({
        "Env": ["PATH=/bin", "MODE=compressed $5"],
        "Cmd": ["/srv/small"],
        "WorkingDir": "/srv",
        "Labels": {"com.example.test": "compression"},
    });
    load_image(&spec, &unique("comp-src"))
}

/// The engine's version and API version, as `docker version` reports them.
fn engine_version() -> (String, (u32, u32)) {
    let out = docker_ok(&[
        "version",
        "--format",
        "{{.Server.Version}} {{.Server.APIVersion}}",
    ]);
    let (version, api) = out
        .trim()
        .split_once(' ')
        .unwrap_or_else(|| panic!("unexpected docker version output: {out}"));
    let (major, minor) = api.split_once('.').expect("API version a.b");
    let api = (
        major.parse().expect("API major"),
        minor.parse().expect("API minor"),
    );
    (version.to_string(), api)
}

/// Graphdriver engines import zstd only from Engine 23 (API 1.42) on.
fn graphdriver_takes_zstd() -> bool {
    engine_version().1 >= (1, 42)
}

/// The `--compression` values this engine must accept.
fn supported_modes() -> Vec<&'static str> {
    match image_store() {
        ImageStore::Containerd => vec!["auto", "gzip", "zstd"],
        ImageStore::GraphDriver if graphdriver_takes_zstd() => vec!["auto", "none", "gzip", "zstd"],
        ImageStore::GraphDriver => vec!["auto", "none", "gzip"],
    }
}

/// A `--compression` value this engine cannot take, if any.
fn unsupported_mode() -> Option<&'static str> {
    match image_store() {
        // It would keep (and push) the layer uncompressed.
        ImageStore::Containerd => Some("none"),
        ImageStore::GraphDriver if graphdriver_takes_zstd() => None,
        ImageStore::GraphDriver => Some("zstd"),
    }
}

fn flatten(cli: &Cli, args: &[&str], tag: &str) -> (TestImage, std::process::Output) {
    let mut all = vec!["flatten"];
    all.extend_from_slice(args);
    all.push(tag);
    let out = cli.docker(&all);
    let flat = TestImage::track(tag);
    assert!(
        out.status.success(),
        "docker {} failed:\n{}",
        all.join(" "),
        text(&out.stderr)
    );
    assert_eq!(
        text(&out.stdout),
        format!("{}\n", flat.id),
        "stdout must be the image ID alone"
    );
    (flat, out)
}

fn assert_same_image(source: &str, flat: &str, what: &str) {
    assert_eq!(image_layer_count(flat), 1, "{what}: not one layer");
    let (src, out) = (inspect(source), inspect(flat));
    assert_eq!(out["Config"], src["Config"], "{what}: config differs");
    for field in ["Os", "Architecture"] {
        assert_eq!(out[field], src[field], "{what}: {field}");
    }
    let expected = image_fs(source);
    let actual = image_fs(flat);
    assert_same_fs(&expected, &actual, PLACEHOLDERS);
    for path in PLACEHOLDERS {
        assert!(
            !actual.contains(path),
            "{what}: placeholder /{path} leaked into the flattened image"
        );
    }
}

#[test]
fn every_mode_the_engine_takes_keeps_files_and_config() {
    let cli = Cli::new();
    let source = multi_layer_image();
    for mode in supported_modes() {
        let (flat, _) = flatten(
            &cli,
            &["--compression", mode, &source.reference],
            &unique(&format!("comp-{mode}")),
        );
        assert_ne!(flat.id, source.id, "{mode}: no new image");
        assert_same_image(&source.reference, &flat.reference, mode);
        if containerd_store() {
            // The store keeps the upload as it was sent: its blob says how.
            let saved = save_image(&flat.reference);
            let zstd = mode == "zstd";
            assert_eq!(
                (saved.gzipped[0], saved.zstd[0]),
                (!zstd, zstd),
                "{mode}: stored layer has the wrong compression"
            );
        }
    }
}

#[test]
fn a_mode_the_engine_cannot_take_is_refused_before_any_work() {
    let Some(mode) = unsupported_mode() else {
        // A graphdriver engine from 23 on takes every mode; the test above covers them.
        assert!(supported_modes().contains(&"zstd"));
        return;
    };
    let cli = Cli::new();
    let source = multi_layer_image();
    let tag = unique("comp-refused");
    let out = cli.docker(&["flatten", "--compression", mode, &source.reference, &tag]);
    let _guard = TestImage::track(&tag);
    let err = text(&out.stderr);
    // Refused before any work: the command cannot work on this engine.
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(out.stdout.is_empty(), "printed an ID on failure");
    let (version, _) = engine_version();
    let flag = format!("--compression {mode}");
    for needed in [flag.as_str(), version.as_str(), "use --compression"] {
        assert!(err.contains(needed), "no {needed:?} in:\n{err}");
    }
    assert!(
        !err.contains("Creating a temporary container"),
        "refused only after starting work:\n{err}"
    );
    assert!(!image_exists(&tag), "TAG was created");
    assert!(
        containers_of(&source.id).is_empty(),
        "a container of the source was left"
    );
}

#[test]
fn a_one_layer_image_is_only_tagged_unless_forced() {
    let cli = Cli::new();
    let spec = ImageSpec::new(vec![vec![
        Entry::dir("one"),
        Entry::file("one/f", data(1500 * 1024)),
    ]]);
    let source = load_image(&spec, &unique("comp-flat"));
    let (tagged, out) = flatten(&cli, &[&source.reference], &unique("comp-flat-tag"));
    assert_eq!(tagged.id, source.id, "TAG must point at IMAGE itself");
    let err = text(&out.stderr);
    assert!(
        err.contains("already one layer") && err.contains("--force"),
        "the user is not told:\n{err}"
    );
    assert!(
        !err.contains("Creating a temporary container"),
        "work was done:\n{err}"
    );

    let (forced, out) = flatten(
        &cli,
        &["--force", &source.reference],
        &unique("comp-flat-forced"),
    );
    assert_ne!(forced.id, source.id, "--force must build a new image");
    assert!(
        text(&out.stderr).contains("1 layer → 1 layer"),
        "{}",
        text(&out.stderr)
    );
    assert_same_image(&source.reference, &forced.reference, "--force");
}
