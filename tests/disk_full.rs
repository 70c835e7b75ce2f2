//! A disk fills up mid-flatten: the engine's, in the middle of the import,
//! or the client's TMPDIR, where the containerd store's path keeps the
//! compressed layer. The flatten must fail with the reason and the place,
//! create no TAG, and leave nothing behind. The engine's disk is a private
//! engine on a 120 MiB tmpfs (whatever engine the other tests use), holding
//! a 40 MB image that vfs copies for the container; TMPDIR is a 1 MiB tmpfs.

mod support;

use support::small_engine::{mount_tmpfs, SmallEngine};
use support::*;

#[test]
fn a_full_disk_fails_clearly_and_leaves_nothing() {
    let engine = SmallEngine::start(120);
    let dir = tempfile::tempdir().expect("temp dir");
    let blob = pseudo_random(40_000_000, 0x2545_f491_4f6c_dd1d);
    let tar = dir.path().join("image.tar");
    let mut builder = tar::Builder::new(std::fs::File::create(&tar).expect("create tar"));
    let mut header = tar::Header::new_ustar();
    header.set_size(blob.len() as u64);
    header.set_mode(0o644);
    builder
        .append_data(&mut header, "blob", &blob[..])
        .expect("append");
    builder.finish().expect("finish tar");
    drop(builder);
    let tar = tar.display().to_string();
    engine.lines(&["import", &tar, "full:src"]);
    let before_images = engine.lines(&["images", "-aq", "--no-trunc"]);

    let cli = Cli::new();
    // The image has one layer: --force makes it go through the whole pipeline.
    let out = cli.docker(&[
        "-H",
        &engine.host,
        "flatten",
        "--force",
        "full:src",
        "full:flat",
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let line = err.lines().last().unwrap_or_default();
    assert!(
        line.contains("no space left on device"),
        "the engine's reason: {err}"
    );
    assert!(line.contains(&engine.host), "names the engine: {err}");
    assert!(line.contains("full:flat is unchanged"), "{err}");
    assert!(out.stdout.is_empty());

    assert!(
        !engine
            .docker(&["image", "inspect", "full:flat"])
            .status
            .success(),
        "TAG was created"
    );
    assert_eq!(
        engine.lines(&["ps", "-aq"]),
        Vec::<String>::new(),
        "a container was left"
    );
    assert_eq!(
        engine.lines(&["volume", "ls", "-q"]),
        Vec::<String>::new(),
        "a volume was left"
    );
    assert_eq!(
        engine.lines(&["images", "-aq", "--no-trunc"]),
        before_images,
        "an image was left"
    );
}

/// A tmpfs of `mib` MiB, unmounted when dropped.
struct SmallDir {
    dir: tempfile::TempDir,
}

impl SmallDir {
    fn mount(mib: u32) -> SmallDir {
        let dir = tempfile::tempdir().expect("temp dir");
        mount_tmpfs(dir.path(), mib);
        SmallDir { dir }
    }
}

impl Drop for SmallDir {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

/// The containerd store's path writes the compressed layer to an unnamed
/// file in TMPDIR before the load: when that fills up, the flatten says so
/// and where, and leaves nothing. The graphdriver path streams straight
/// into the import and needs no room there.
#[test]
fn a_full_tmpdir_fails_clearly_where_the_layer_is_spooled() {
    let cli = Cli::new();
    let source = source_image();
    let target = existing_tag();
    // The source's 2 MiB of random data cannot fit.
    let small = SmallDir::mount(1);
    let before = dangling_volumes();
    let mut cmd = cli.command(&["flatten", &source.image.reference, &target.reference]);
    cmd.env("TMPDIR", small.dir.path());
    let out = run_with_timeout(cmd, std::time::Duration::from_secs(300));
    let err = text(&out.stderr);
    if containerd_store() {
        assert_eq!(out.status.code(), Some(1), "{err}");
        let line = err.lines().last().unwrap_or_default();
        let dir = small.dir.path().display().to_string();
        for needle in [
            "writing the flattened layer",
            &dir,
            "No space left on device",
            "set TMPDIR",
            &format!("{} is unchanged", target.reference),
        ] {
            assert!(line.contains(needle), "no {needle:?} in: {err}");
        }
        assert!(out.stdout.is_empty());
        assert_eq!(inspect(&target.reference)["Id"], target.id.as_str());
        assert_nothing_left(&source, &before, &[], "a full TMPDIR");
    } else {
        assert!(out.status.success(), "{err}");
        let flat = TestImage::track(&target.reference);
        assert_eq!(image_layer_count(&flat.reference), 1);
        assert_nothing_left(&source, &before, &[&flat.id], "a small TMPDIR");
    }
    assert_eq!(
        std::fs::read_dir(small.dir.path())
            .expect("read TMPDIR")
            .count(),
        0,
        "the spooled layer is an unnamed file: nothing may stay in TMPDIR"
    );
}

/// `--exact` spools IMAGE's layers, uncompressed, to unnamed files in
/// TMPDIR on every store: when that fills up, the run says so and where,
/// leaves TAG as it was and nothing behind, in TMPDIR or on the engine.
#[test]
fn a_full_tmpdir_fails_an_exact_flatten_clearly_where_the_layers_are_spooled() {
    let cli = Cli::new();
    let source = source_image();
    let target = existing_tag();
    let small = SmallDir::mount(1);
    let before = dangling_volumes();
    let mut cmd = cli.command(&[
        "flatten",
        "--exact",
        &source.image.reference,
        &target.reference,
    ]);
    cmd.env("TMPDIR", small.dir.path());
    let out = run_with_timeout(cmd, std::time::Duration::from_secs(300));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let line = err.lines().last().unwrap_or_default();
    let dir = small.dir.path().display().to_string();
    for needle in [
        "writing the layers of",
        &dir,
        "No space left on device",
        "set TMPDIR",
        &format!("{} is unchanged", target.reference),
    ] {
        assert!(line.contains(needle), "no {needle:?} in: {err}");
    }
    assert!(out.stdout.is_empty());
    assert_eq!(inspect(&target.reference)["Id"], target.id.as_str());
    assert_nothing_left(&source, &before, &[], "a full TMPDIR under --exact");
    assert_eq!(
        std::fs::read_dir(small.dir.path())
            .expect("read TMPDIR")
            .count(),
        0,
        "the spooled layers are unnamed files: nothing may stay in TMPDIR"
    );
}
