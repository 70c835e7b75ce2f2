//! End-to-end flattens through the real docker CLI on the real engine,
//! compared with an independent reading of the source image: `docker save`
//! merged layer by layer in tests/support, never the code under test.

mod support;

use serde_json::{json, Value};
use support::*;

/// Flattens through `docker flatten`, asserts success and the stdout
/// contract, and returns a guard for the new image. Always `--force`: these
/// tests are about the pipeline, and several sources have one layer, which
/// would otherwise only be tagged (see tests/compression.rs).
fn flatten(cli: &Cli, image: &str, tag: &str) -> TestImage {
    let out = cli.docker(&["flatten", "--force", image, tag]);
    assert!(
        out.status.success(),
        "docker flatten {image} {tag} failed:\n{}",
        text(&out.stderr)
    );
    let flat = TestImage::track(tag);
    assert_eq!(
        text(&out.stdout),
        format!("{}\n", flat.id),
        "stdout must be the new image ID alone"
    );
    assert_eq!(
        image_layer_count(tag),
        1,
        "flattened image must have one layer"
    );
    flat
}

/// The export carries no xattr but `security.capability` (a documented limit).
fn exportable(mut view: FsView) -> FsView {
    for node in view.0.values_mut() {
        node.xattrs.retain(|k, _| k == "security.capability");
    }
    view
}

/// Equal apart from the placeholder paths; and never a placeholder the image lacked.
fn assert_faithful(source: &str, flat: &str) {
    let expected = exportable(image_fs(source));
    let actual = image_fs(flat);
    assert_same_fs(&expected, &actual, PLACEHOLDERS);
    for path in PLACEHOLDERS {
        match (expected.get(path), actual.get(path)) {
            (None, Some(_)) => {
                panic!("flattened image has placeholder /{path} that {source} lacks")
            }
            (Some(want), Some(got)) if *path != "etc" && *path != "dev" => {
                assert_eq!(want.kind, got.kind, "/{path}");
                if want.kind != NodeKind::Dir {
                    assert_eq!(want, got, "/{path} differs from the source's");
                }
            }
            _ => {}
        }
    }
}

#[test]
fn filesystem_is_preserved_exactly() {
    let cli = Cli::new();
    let source = load_image(&ImageSpec::new(rich_layers()), &unique("rich"));
    let flat = flatten(&cli, &source.reference, &unique("rich-flat"));
    assert_faithful(&source.reference, &flat.reference);
    // Spot checks that the independent view itself saw the interesting cases.
    let view = image_fs(&flat.reference);
    assert_eq!(
        view.node("data/a-link").sha256,
        Some(sha256_hex(b"original a\n"))
    );
    assert!(view
        .hardlink_groups()
        .iter()
        .any(|g| g.contains(&b"data/c".to_vec())));
    assert!(
        !view.contains("wasted") && !view.contains("opt/x/old") && !view.contains("was-dir/child")
    );
    assert_eq!(view.node("data/y2242").mtime, 8_589_934_592);
    assert_eq!(view.node("devices/loop9").dev, Some((7, 9)));
    assert!(view
        .node("data/ping")
        .xattrs
        .contains_key("security.capability"));
    for placeholder in [".dockerenv", "etc", "etc/hosts", "proc", "sys", "dev"] {
        assert!(
            !view.contains(placeholder),
            "/{placeholder} leaked into the flattened image"
        );
    }
}

#[test]
fn placeholders_the_image_really_has_are_kept_or_left_out_never_faked() {
    let cli = Cli::new();
    let layers = vec![vec![
        Entry::dir("etc"),
        Entry::file("etc/hosts", "10.0.0.1 real-host\n"),
        Entry::file("etc/hostname", "real\n"),
        Entry::file("etc/resolv.conf", "nameserver 10.0.0.53\n"),
        Entry::symlink("etc/mtab", "../proc/self/mounts"),
        Entry::file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
        Entry::dir("dev"),
        Entry::char_dev("dev/null", 1, 3).mode(0o666),
        Entry::dir("dev/pts"),
        Entry::dir("proc").mode(0o555),
        Entry::dir("sys").mode(0o555),
        Entry::file(".dockerenv", ""),
    ]];
    let source = load_image(&ImageSpec::new(layers), &unique("has-placeholders"));
    let flat = flatten(&cli, &source.reference, &unique("has-placeholders-flat"));
    assert_faithful(&source.reference, &flat.reference);
    let view = image_fs(&flat.reference);
    assert!(view.contains("etc/passwd") && view.contains("dev/null"));
}

#[test]
fn image_without_cmd_or_entrypoint_flattens() {
    let cli = Cli::new();
    let layers = vec![vec![
        Entry::dir("app"),
        Entry::file("app/data", "no command\n"),
    ]];
    let source = load_image(&ImageSpec::new(layers), &unique("nocmd"));
    let flat = flatten(&cli, &source.reference, &unique("nocmd-flat"));
    assert_eq!(
        inspect(&flat.reference)["Config"],
        inspect(&source.reference)["Config"]
    );
    assert_faithful(&source.reference, &flat.reference);
}

fn hostile_config() -> Value {
    json!({
        "User": "1000:1000",
        "Env": [
            "PATH=/usr/local/bin:/bin",
            "DOLLAR=$5 ${HOME} $$",
            "QUOTES=\"double\" 'single'",
            "BACKSLASH=a\\b\\\\c\\n",
            "EQUALS=a=b==c",
            "UNICODE=héllo wörld ✓ 日本",
            "NEWLINE=line1\nline2",
            "EMPTY=",
        ],
        "Cmd": ["-c", "echo \"$DOLLAR\"; exit 3"],
        "Entrypoint": ["/bin/sh"],
        "WorkingDir": "/work dir/$HOME",
        "ExposedPorts": {"80/tcp": {}, "53/udp": {}, "9000-9002/tcp": {}},
        "Volumes": {"/data": {}, "/var/lib/with space": {}},
        "Labels": {
            "com.example.empty": "",
            "com.example.dollar": "$NOT_EXPANDED",
            "com.example.multi": "a\nb",
            "org.opencontainers.image.title": "héllo \"x\"",
        },
        "StopSignal": "SIGQUIT",
        "Healthcheck": {
            "Test": ["CMD-SHELL", "test -f /tmp/ok || exit 1"],
            "Interval": 30_000_000_000u64,
            "Timeout": 5_000_000_000u64,
            "StartPeriod": 60_000_000_000u64,
            "Retries": 7,
        },
        "OnBuild": ["RUN echo onbuild", "ENV X=$Y"],
        "Shell": ["/bin/ash", "-eo", "pipefail", "-c"],
    })
}

#[test]
fn config_and_platform_round_trip_exactly() {
    let cli = Cli::new();
    let mut spec = ImageSpec::new(vec![busybox_layer(), vec![Entry::dir("data")]]);
    spec.config = hostile_config();
    let source = load_image(&spec, &unique("config"));
    let flat = flatten(&cli, &source.reference, &unique("config-flat"));
    let (src, out) = (inspect(&source.reference), inspect(&flat.reference));
    assert_eq!(out["Config"], src["Config"], "config differs");
    for field in ["Os", "Architecture", "Variant", "Author"] {
        assert_eq!(out[field], src[field], "{field}");
    }
    let history = docker_ok(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.CreatedBy}}",
        &flat.reference,
    ]);
    // IMAGE as named, not its ID, which is the engine's (the result is
    // the same on every engine: docs/reproducible.md).
    assert!(
        history.contains(&format!("docker flatten {}", source.reference))
            && !history.contains(&source.id),
        "{history}"
    );
}

#[test]
fn arm64_image_keeps_its_platform() {
    let cli = Cli::new();
    let mut spec = ImageSpec::new(vec![vec![
        Entry::dir("etc"),
        Entry::file("etc/os", "arm\n"),
    ]]);
    spec.architecture = "arm64".into();
    spec.variant = Some("v8".into());
    spec.config = json!({"Cmd": ["/bin/true"], "Env": ["A=1"]});
    let source = load_image(&spec, &unique("arm64"));
    let flat = flatten(&cli, &source.reference, &unique("arm64-flat"));
    let out = inspect(&flat.reference);
    assert_eq!(
        (out["Os"].as_str(), out["Architecture"].as_str()),
        (Some("linux"), Some("arm64"))
    );
    assert_eq!(out["Variant"], "v8");
    assert_eq!(out["Config"], inspect(&source.reference)["Config"]);
    assert_faithful(&source.reference, &flat.reference);
}

#[test]
fn flattened_image_runs_like_its_source() {
    let cli = Cli::new();
    let mut spec = ImageSpec::new(vec![
        busybox_layer(),
        vec![
            Entry::dir("srv"),
            Entry::file("srv/greeting", "hello from layer 2\n").owner(1000, 1000),
        ],
        vec![
            Entry::dir("srv"),
            Entry::whiteout("srv/greeting"),
            Entry::file("srv/final", "layer 3\n"),
        ],
    ]);
    spec.config = json!({
        "Env": ["PATH=/bin", "GREETING=hi $USER \"quoted\"", "MULTI=a\nb"],
        "WorkingDir": "/srv",
        "User": "1000:1000",
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": ["pwd; id; env | sort | grep -v ^HOSTNAME=; ls -ln; cat final"],
    });
    let source = load_image(&spec, &unique("runs"));
    let flat = flatten(&cli, &source.reference, &unique("runs-flat"));
    let (a, b) = (
        run_image(&source.reference, &[]),
        run_image(&flat.reference, &[]),
    );
    assert!(
        a.status.success(),
        "source failed to run: {}",
        text(&a.stderr)
    );
    assert_eq!(text(&b.stdout), text(&a.stdout));
    assert_eq!(b.status.code(), a.status.code());
    assert!(
        text(&b.stdout).contains("GREETING=hi $USER \"quoted\""),
        "{}",
        text(&b.stdout)
    );
}

#[test]
fn flatten_in_place_by_id_and_by_digest() {
    let cli = Cli::new();
    let layers = vec![
        vec![Entry::dir("a"), Entry::file("a/1", "one")],
        vec![Entry::dir("a"), Entry::file("a/2", "two")],
    ];
    let source = load_image(&ImageSpec::new(layers), &unique("inplace"));
    // By full ID and by short ID, to a new name.
    let short = source.id.trim_start_matches("sha256:")[..12].to_owned();
    for image in [source.id.as_str(), short.as_str()] {
        let flat = flatten(&cli, image, &unique("byid"));
        assert_faithful(&source.reference, &flat.reference);
    }
    // By digest: the containerd store records a repository digest even for
    // an image loaded offline; a graphdriver engine only has them for pulled
    // images, and then refuses an unknown digest as a missing image.
    let digests = inspect(&source.reference)["RepoDigests"].clone();
    match digests
        .as_array()
        .and_then(|d| d.first())
        .and_then(|d| d.as_str())
    {
        Some(by_digest) => {
            assert!(
                containerd_store(),
                "graphdriver engines record no digest on load"
            );
            let flat = flatten(&cli, by_digest, &unique("bydigest"));
            assert_faithful(&source.reference, &flat.reference);
        }
        None => {
            assert!(
                !containerd_store(),
                "the containerd store records a digest on load"
            );
            let name = source.reference.split(':').next().unwrap_or_default();
            let by_digest = format!("{name}@sha256:{}", "0".repeat(64));
            let out = cli.docker(&["flatten", &by_digest, &unique("bydigest")]);
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{err}");
            assert!(
                err.contains(&format!("no such image \"{by_digest}\"")),
                "{err}"
            );
        }
    }
    // In place: the tag moves to the flattened image; the old image stays, untagged.
    let original = source.id.clone();
    let flat = flatten(&cli, &source.reference, &source.reference);
    assert_ne!(flat.id, original);
    assert_eq!(image_layer_count(&source.reference), 1);
    docker(&["rmi", &original]);
}

#[test]
fn quiet_prints_only_the_id_and_plain_progress_otherwise() {
    let cli = Cli::new();
    let layers = vec![
        vec![Entry::dir("q"), Entry::file("q/x", "x")],
        vec![Entry::dir("q"), Entry::file("q/y", "y")],
    ];
    let source = load_image(&ImageSpec::new(layers), &unique("quiet"));
    let tag = unique("quiet-flat");
    let out = cli.docker(&["flatten", "-q", &source.reference, &tag]);
    let flat = TestImage::track(&tag);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{}\n", flat.id));
    assert_eq!(text(&out.stderr), "", "--quiet must keep stderr empty");

    // stderr is a pipe here: one plain line per stage, no bar, then the summary.
    let tag2 = unique("plain-flat");
    let out = cli.docker(&["flatten", &source.reference, &tag2]);
    let _flat2 = TestImage::track(&tag2);
    let err = text(&out.stderr);
    for line in [
        "Inspecting",
        "Creating a temporary container",
        "Exporting",
        if containerd_store() {
            "Loading flattened"
        } else {
            "Giving the new layer the config"
        },
        "Tagging",
    ] {
        assert!(
            err.lines().any(|l| l.starts_with(line)),
            "no '{line}' line in:\n{err}"
        );
    }
    assert!(err.contains("2 layers → 1 layer"), "{err}");
    assert!(
        !err.contains('\r') && !err.contains('\u{1b}'),
        "terminal control codes in:\n{err}"
    );
}

#[test]
fn the_binary_works_when_run_directly() {
    let layers = vec![vec![Entry::dir("d"), Entry::file("d/f", "direct")]];
    let source = load_image(&ImageSpec::new(layers), &unique("direct"));
    let tag = unique("direct-flat");
    let out = plugin(&["flatten", &source.reference, &tag]);
    let flat = TestImage::track(&tag);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{}\n", flat.id));
}

/// Two flattens of the same files, then the first result removed: the
/// second must stand on its own (on the containerd store a layer's snapshot
/// is shared by digest, and an image that never claimed it loses it). Two
/// flattens of one IMAGE are one image (docs/reproducible.md); an IMAGE
/// of the same files with another config gets a layer of its own.
#[test]
fn a_flattened_image_outlives_another_flatten_of_the_same_files() {
    let cli = Cli::new();
    let layers = vec![
        vec![Entry::dir("same"), Entry::file("same/1", "one")],
        vec![Entry::dir("same"), Entry::file("same/2", "two")],
    ];
    let spec = ImageSpec::new(layers);
    let other_spec = spec
        .clone()
        .with_config(serde_json::json!({"Env": ["OTHER=1"]}));
    let source = load_image(&spec, &unique("twice"));
    let other = load_image(&other_spec, &unique("twice-other"));
    let first = flatten(&cli, &other.reference, &unique("twice-a"));
    let second = flatten(&cli, &source.reference, &unique("twice-b"));
    let again = flatten(&cli, &source.reference, &unique("twice-c"));
    assert_eq!(second.id, again.id, "one IMAGE, two images");
    assert_ne!(first.id, second.id);
    if containerd_store() {
        // The comment on the root entry, a digest of what makes the image,
        // gives the other IMAGE's layer its own digest.
        let layers = |image: &TestImage| inspect(&image.reference)["RootFS"]["Layers"].clone();
        assert_ne!(
            layers(&first),
            layers(&second),
            "the two layers share a digest"
        );
    }
    drop(again);
    drop(first);
    let history = docker(&["history", "-q", &second.reference]);
    assert!(
        history.status.success(),
        "history: {}",
        text(&history.stderr)
    );
    let ctr = TestContainer::create(&second.reference, &["/none"]);
    drop(ctr);
    assert_faithful(&source.reference, &second.reference);
}

/// The layer's first entry is the root directory, which an export lacks:
/// mode 0755, owner 0:0 and the source's creation time (the fixtures' is
/// 2024-01-01), then no other root entry.
#[test]
fn the_layer_starts_with_the_root_directory() {
    let cli = Cli::new();
    let layers = vec![
        vec![Entry::dir("a"), Entry::file("a/1", "one")],
        vec![Entry::file("b", "two")],
    ];
    let source = load_image(&ImageSpec::new(layers), &unique("root"));
    let flat = flatten(&cli, &source.reference, &unique("root-flat"));
    let saved = save_image(&flat.reference);
    let entries = read_tar(&saved.layers[0]);
    let root = &entries[0];
    assert_eq!(show(&root.path), "./");
    assert_eq!(root.entry_type, tar::EntryType::Directory);
    assert_eq!(
        (root.mode, root.uid, root.gid, root.mtime),
        (0o755, 0, 0, 1_704_067_200)
    );
    let comments: Vec<_> = root.pax.iter().filter(|(k, _)| k == b"comment").collect();
    assert_eq!(
        comments.len(),
        usize::from(containerd_store()),
        "a run comment on the containerd store only: {:?}",
        root.pax
    );
    assert!(
        entries[1..].iter().all(|e| normalize(&e.path).is_some()),
        "a second root entry"
    );
}

/// Every top-level config field comes through as the source has it, but
/// those set anew; on the graphdriver store, whose inspect does not report
/// them, `os.features` and fields unknown to the engine are lost (README).
#[test]
fn top_level_config_fields_survive() {
    let cli = Cli::new();
    let fields = json!({
        "docker_version": "17.03.2-ce-fixture",
        "author": "Fixture Author <fixture@example.com>",
        "comment": "a comment of the image itself",
        "container": "4f1c0ffee",
        "container_config": {"Cmd": ["/bin/sh", "-c", "#(nop) fixture"], "Env": ["A=1"]},
        "os.version": "5.10-fixture",
        "os.features": ["fixture-feature"],
        "x-fixture": {"kept": [1, 2]},
    });
    let layers = vec![vec![Entry::file("a", "1")], vec![Entry::file("b", "2")]];
    let spec = ImageSpec::new(layers)
        .with_config(json!({"Cmd": ["/a"], "ExposedPorts": {}}))
        .with_fields(fields.clone());
    let source = load_image(&spec, &unique("fields"));
    let flat = flatten(&cli, &source.reference, &unique("fields-flat"));
    let config = save_image(&flat.reference).config;
    let lost: &[&str] = if containerd_store() {
        &[]
    } else {
        &["os.features", "x-fixture"]
    };
    for (key, value) in fields.as_object().unwrap() {
        if lost.contains(&key.as_str()) {
            assert!(config.get(key).is_none(), "{key}: {}", config[key]);
        } else if key == "container_config" && !containerd_store() {
            // The engine's inspect reports every field of its struct.
            assert_eq!(non_zero(&config[key]), *value, "{key}");
        } else {
            assert_eq!(&config[key], value, "{key}");
        }
    }
    assert_eq!(config["config"]["Cmd"], json!(["/a"]));
    assert_eq!(config["created"].as_str().map(|c| c < "2024"), Some(false));
    assert_eq!(config["history"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        inspect(&flat.reference)["DockerVersion"],
        inspect(&source.reference)["DockerVersion"],
        "DockerVersion as the engine reports it"
    );
}

/// `v` without the fields that hold zero values (null, false, "", 0, [], {}).
fn non_zero(v: &Value) -> Value {
    let zero = |v: &Value| match v {
        Value::Null | Value::Bool(false) => true,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Bool(true) => false,
    };
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(_, v)| !zero(v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}
