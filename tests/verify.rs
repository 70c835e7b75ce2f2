//! `--verify` and `--verify-only`, through the real docker CLI on the real
//! engine: clean flattens verify in every mode; results the test tampers
//! with by hand (`docker load` of an archive it writes) fail, naming the
//! difference; a real difference found during a flatten leaves TAG (or
//! FILE) as it was; and what each engine really loses is asserted per
//! engine, never skipped.

mod support;

use std::process::Output;

use serde_json::{json, Value};
use support::*;

/// `docker flatten ARGS…`.
fn flatten(cli: &Cli, args: &[&str]) -> Output {
    let mut all = vec!["flatten"];
    all.extend_from_slice(args);
    cli.docker(&all)
}

fn succeeded(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed:\n{}",
        text(&out.stderr)
    );
}

fn failed(out: &Output, what: &str) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
    stderr
}

/// The `verify` object of a JSON document on stdout.
fn verify_of(out: &Output) -> Value {
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON on stdout ({e}): {}", text(&out.stdout)));
    doc["verify"].clone()
}

fn differences(verify: &Value) -> Vec<Value> {
    verify["differences"].as_array().expect("a list").clone()
}

/// The graphdriver of the engine under test (`fuse-overlayfs` on this
/// project's Engine 20.10; the containerd store reports its snapshotter's).
fn driver() -> String {
    docker_ok(&["info", "--format", "{{.Driver}}"])
        .trim()
        .to_owned()
}

fn config() -> Value {
    json!({"Env": ["PATH=/bin", "A=1"], "Cmd": ["/app/data"], "WorkingDir": "/app"})
}

#[test]
fn a_clean_flatten_verifies_in_every_mode() {
    let cli = Cli::new();
    let spec = ImageSpec::new(rich_layers()).with_config(config());
    let source = load_image(&spec, &unique("verify-src"));
    for mode in [&[][..], &["--exact"], &["--keep-layers", "1"]] {
        let tag = unique("verify-flat");
        let mut args = vec!["--verify", "--format", "json"];
        args.extend_from_slice(mode);
        args.extend_from_slice(&[&source.reference, &tag]);
        let out = flatten(&cli, &args);
        let flat = TestImage::track(&tag);
        succeeded(&out, &format!("--verify {mode:?}"));
        let verify = verify_of(&out);
        assert_eq!(differences(&verify), Vec::<Value>::new(), "{mode:?}");
        assert!(verify["paths"].as_u64() > Some(30), "{verify}");
        let expected = verify["expected"].as_array().unwrap();
        if mode.is_empty() {
            // The export keeps no xattr but security.capability.
            assert!(
                expected
                    .iter()
                    .any(|d| d["path"] == "/data/user-xattr xattr user.note"
                        && d["why"]
                            .as_str()
                            .is_some_and(|w| w.contains("security.capability"))),
                "{expected:#?}"
            );
        } else {
            assert_eq!(expected, &Vec::<Value>::new(), "{mode:?}");
        }
        // Read-only, the same verdict.
        let mut args = vec!["--verify-only"];
        args.extend_from_slice(mode);
        args.extend_from_slice(&[&source.reference, &flat.reference]);
        let out = flatten(&cli, &args);
        succeeded(&out, &format!("--verify-only {mode:?}"));
        assert!(
            text(&out.stderr).contains(&format!("Verified {}", flat.reference)),
            "{}",
            text(&out.stderr)
        );
        assert!(
            out.stdout.is_empty(),
            "--verify-only prints nothing on stdout"
        );
    }
    // Into a file: read back from the file before it is renamed into place.
    for mode in [&[][..], &["--exact"]] {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("flat.tar");
        let tag = unique("verify-file");
        let mut args = vec!["--verify", "--format", "json", "-o", file.to_str().unwrap()];
        args.extend_from_slice(mode);
        args.extend_from_slice(&[&source.reference, &tag]);
        let out = flatten(&cli, &args);
        succeeded(&out, &format!("-o --verify {mode:?}"));
        assert_eq!(differences(&verify_of(&out)), Vec::<Value>::new());
        assert!(file.exists());
        assert!(!image_exists(&tag), "-o tags nothing");
    }
}

/// A source whose merge has a replaced file, a deleted one and a hardlink.
fn tamper_source() -> TestImage {
    let spec = ImageSpec::new(vec![
        vec![
            Entry::dir("app"),
            Entry::file("app/data", "v1"),
            Entry::file("app/gone", "bye"),
            Entry::file("app/t", "shared\n"),
            Entry::hardlink("app/l", "app/t"),
        ],
        vec![
            Entry::dir("app"),
            Entry::file("app/data", "v2 data\n"),
            Entry::whiteout("app/gone"),
        ],
    ])
    .with_config(config());
    load_image(&spec, &unique("tamper-src"))
}

/// IMAGE's merged files as one layer, as a correct flatten writes them.
fn merged() -> Vec<Entry> {
    vec![
        Entry::dir("app"),
        Entry::file("app/data", "v2 data\n"),
        Entry::file("app/t", "shared\n"),
        Entry::hardlink("app/l", "app/t"),
    ]
}

#[test]
fn a_tampered_result_fails_naming_the_difference() {
    let cli = Cli::new();
    let source = tamper_source();
    let flat_of = |layer: Vec<Entry>, config: Value| {
        load_image(
            &ImageSpec::new(vec![layer]).with_config(config),
            &unique("tampered"),
        )
    };
    // The hand-made flat image first: it must verify, or the rest proves nothing.
    let clean = flat_of(merged(), config());
    for mode in [&["--exact"][..], &[]] {
        let mut args = vec!["--verify-only"];
        args.extend_from_slice(mode);
        args.extend_from_slice(&[&source.reference, &clean.reference]);
        succeeded(&flatten(&cli, &args), "the untampered image");
    }
    let mut changed = merged();
    changed[1] = Entry::file("app/data", "v2 DATA\n");
    let mut removed = merged();
    removed.remove(1);
    let mut added = merged();
    added.push(Entry::file("app/extra", "not IMAGE's\n"));
    let mut broken = merged();
    broken[3] = Entry::file("app/l", "shared\n");
    let mut env = config();
    env["Env"] = json!(["PATH=/bin", "A=2"]);
    let cases = [
        (flat_of(changed, config()), "/app/data: content: sha256:", 1),
        (
            flat_of(removed, config()),
            "/app/data: missing (IMAGE has a file)",
            1,
        ),
        (flat_of(added, config()), "/app/extra: not in IMAGE", 1),
        (
            flat_of(broken, config()),
            "/app/t: hardlink: linked to /app/l (2 names) in IMAGE, not linked in the result",
            2,
        ),
        (
            flat_of(merged(), env),
            "config.Env: [\"PATH=/bin\",\"A=1\"] in IMAGE",
            1,
        ),
    ];
    for (flat, says, count) in &cases {
        let args = [
            "--verify-only",
            "--exact",
            &source.reference,
            &flat.reference,
        ];
        let stderr = failed(&flatten(&cli, &args), says);
        assert!(stderr.contains(says), "expected {says:?} in:\n{stderr}");
        let noun = if *count == 1 {
            "difference"
        } else {
            "differences"
        };
        assert!(
            stderr.contains(&format!("found {count} {noun} that")),
            "{stderr}"
        );
        let out = flatten(
            &cli,
            &[
                "--verify-only",
                "--exact",
                "--format",
                "json",
                &source.reference,
                &flat.reference,
            ],
        );
        failed(&out, says);
        let verify = verify_of(&out);
        assert_eq!(differences(&verify).len(), *count, "{verify:#}");
        assert_eq!(
            inspect(&flat.reference)["Id"],
            flat.id.as_str(),
            "read-only"
        );
    }
}

/// A source with a file whose mtime has a fraction of a second: the
/// engine's export keeps whole seconds only (every engine here), so the
/// default mode's result really differs; `--exact` keeps it.
fn subsecond_source() -> Source {
    let marker = unique("marker");
    let spec = ImageSpec::new(vec![
        vec![
            Entry::dir("app"),
            Entry::file("app/f", "x").mtime_nanos(1_600_000_000, 500_000_000),
        ],
        vec![Entry::dir("app"), Entry::file("app/g", "y")],
    ])
    .with_config(json!({"Cmd": ["/app/f"], "Labels": {MARKER: marker}}));
    let image = load_image(&spec, &unique("subsecond"));
    Source { image, marker }
}

#[test]
fn a_difference_found_during_a_flatten_leaves_tag_and_file_as_they_were() {
    let cli = Cli::new();
    let src = subsecond_source();
    let tag = existing_tag();
    let before = dangling_volumes();
    let says = "/app/f: mtime: 1600000000.500000000 in IMAGE, 1600000000 in the result";
    let out = flatten(&cli, &["--verify", &src.image.reference, &tag.reference]);
    let stderr = failed(&out, "a flatten whose export loses the fraction");
    assert!(stderr.contains(says), "{stderr}");
    assert!(
        stderr.contains(&format!("{} is unchanged", tag.reference)),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    assert_eq!(inspect(&tag.reference)["Id"], tag.id.as_str(), "TAG moved");
    // JSON lists the differences, the one the export loses among them.
    let out = flatten(
        &cli,
        &[
            "--verify",
            "--format",
            "json",
            &src.image.reference,
            &tag.reference,
        ],
    );
    failed(&out, "the same in JSON");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["verify_only"], false);
    assert_eq!(doc["result"]["reference"], tag.reference.as_str());
    let found = differences(&doc["verify"]);
    assert!(
        found
            .iter()
            .any(|d| d["path"] == "/app/f" && d["field"] == "mtime"),
        "{found:#?}"
    );
    assert_eq!(inspect(&tag.reference)["Id"], tag.id.as_str(), "TAG moved");
    // Into a file: FILE is not made, nor is anything left beside it.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flat.tar");
    let out = flatten(
        &cli,
        &[
            "--verify",
            "-o",
            file.to_str().unwrap(),
            &src.image.reference,
            "dflt-unused:1",
        ],
    );
    let stderr = failed(&out, "-o --verify");
    assert!(stderr.contains(says), "{stderr}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "FILE or its temporary file"
    );
    assert_nothing_left(&src, &before, &[], "a failed --verify");
    // --exact merges the layers as they are: the fraction stays.
    let exact_tag = unique("subsecond-exact");
    let out = flatten(
        &cli,
        &["--verify", "--exact", &src.image.reference, &exact_tag],
    );
    let exact = TestImage::track(&exact_tag);
    succeeded(&out, "--exact --verify");
    assert!(!exact.id.is_empty());
}

/// Hardlinks of a lower layer: Engine 20.10 on fuse-overlayfs exports most
/// of them as separate files (see README, Limits), which `--verify`
/// catches; the containerd store keeps them, and the verify passes.
#[test]
fn lower_layer_hardlinks_are_verified_as_the_engine_exports_them() {
    let cli = Cli::new();
    let mut lower = vec![Entry::dir("d")];
    for i in 0..300 {
        let name = format!("d/f{i}");
        lower.push(Entry::file(&name, format!("content {i}\n")));
        lower.push(Entry::hardlink(format!("{name}-link"), &name));
    }
    let spec = ImageSpec::new(vec![
        lower,
        vec![Entry::dir("top"), Entry::file("top/x", "x")],
    ]);
    let source = load_image(&spec, &unique("lower-links"));
    let tag = unique("lower-links-flat");
    let out = flatten(&cli, &["--verify", &source.reference, &tag]);
    let flat = TestImage::track(&tag);
    if driver() == "fuse-overlayfs" {
        let stderr = failed(&out, "the split links");
        assert!(stderr.contains(": hardlink: linked"), "{stderr}");
        assert!(
            !image_exists(&tag),
            "TAG was made from a result that differs"
        );
    } else {
        succeeded(&out, &format!("--verify on {}", driver()));
        assert!(!flat.id.is_empty());
    }
    // The engine's save has them all: --exact is right everywhere.
    let exact_tag = unique("lower-links-exact");
    let out = flatten(
        &cli,
        &["--verify", "--exact", &source.reference, &exact_tag],
    );
    let _exact = TestImage::track(&exact_tag);
    succeeded(&out, "--exact --verify");
}

/// A layer that deletes paths and makes them again: Engine 20.10 on
/// fuse-overlayfs can neither save it nor export it whole, and `--verify`
/// refuses to move TAG; the containerd store gets it right.
#[test]
fn a_path_made_again_in_one_layer_is_caught_where_the_engine_loses_it() {
    let cli = Cli::new();
    let layers = vec![
        vec![
            Entry::dir("t"),
            Entry::dir("t/becomes-file"),
            Entry::file("t/becomes-file/child", "y"),
        ],
        vec![
            Entry::dir("t"),
            Entry::whiteout("t/becomes-file"),
            Entry::file("t/becomes-file", "now a file\n"),
        ],
    ];
    let source = load_image(&ImageSpec::new(layers), &unique("remade"));
    let tag = unique("remade-flat");
    let out = flatten(&cli, &["--verify", &source.reference, &tag]);
    let flat = TestImage::track(&tag);
    if containerd_store() {
        succeeded(&out, "--verify on the containerd store");
        assert!(!flat.id.is_empty());
    } else {
        let stderr = failed(&out, "--verify on a graphdriver engine");
        assert!(
            stderr.contains("the engine cannot save that image"),
            "{stderr}"
        );
        assert!(!image_exists(&tag), "TAG was made from an unproved result");
    }
}

/// The manual pipeline this plugin replaces: its config is gone and the
/// engine's placeholders are in.
#[test]
fn an_export_import_image_is_reported_with_its_lost_config_and_placeholders() {
    let cli = Cli::new();
    let spec = ImageSpec::new(vec![
        vec![
            Entry::dir("etc"),
            Entry::file("etc/passwd", "root:x:0:0::/:/bin/sh\n"),
        ],
        vec![Entry::dir("app"), Entry::file("app/data", "data\n")],
    ])
    .with_config(config());
    let source = load_image(&spec, &unique("manual-src"));
    let container = TestContainer::create(&source.reference, &["/app/data"]);
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("export.tar");
    docker_ok(&["export", "-o", export.to_str().unwrap(), &container.id]);
    let flat_tag = unique("manual-flat");
    docker_ok(&["import", export.to_str().unwrap(), &flat_tag]);
    let flat = TestImage::track(&flat_tag);
    let out = flatten(
        &cli,
        &[
            "--verify-only",
            "--format",
            "json",
            &source.reference,
            &flat.reference,
        ],
    );
    let stderr = failed(&out, "--verify-only of an export | import");
    let found = differences(&verify_of(&out));
    let has = |path: &str, field: &str| {
        found
            .iter()
            .any(|d| d["path"] == path && d["field"] == field)
    };
    assert!(
        has("config.Cmd", "config") && has("config.Env", "config"),
        "{found:#?}"
    );
    assert!(has("config.WorkingDir", "config"), "{found:#?}");
    let placeholder = |path: &str| {
        found.iter().any(|d| {
            d["path"] == path
                && d["field"] == "added"
                && d["result"]
                    .as_str()
                    .is_some_and(|r| r.ends_with("the engine's placeholder"))
        })
    };
    assert!(
        placeholder("/.dockerenv") && placeholder("/etc/hosts"),
        "{found:#?}"
    );
    assert!(
        stderr.contains("config.Cmd"),
        "the config comes first: {stderr}"
    );
}
