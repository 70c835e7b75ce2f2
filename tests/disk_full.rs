//! The engine's disk fills up in the middle of the import: the flatten must
//! fail with the engine's reason, create no TAG, and leave nothing behind.
//! It runs against a private engine on a 120 MiB tmpfs (whatever engine the
//! other tests use), holding a 40 MB image that vfs copies for the container.

mod support;

use support::small_engine::SmallEngine;
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
