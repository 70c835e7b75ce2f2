//! Multi-platform images: on the containerd store every platform whose
//! content the store has is flattened into its own one-layer manifest with
//! that platform's config, under one index tagged TAG; `--platform` flattens
//! one; absent platforms and attestations are left out, and said so. Each
//! platform of the result is compared with an independent merge of that
//! platform's layers (read with `docker save` of IMAGE, before the run). A
//! graphdriver has one platform per image: there `--platform` other than
//! IMAGE's own is refused.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::proxy::{Fault, Proxy};
use support::*;

/// Three layers for one platform, its files named after `tag`: a base, an
/// overwrite of it, and a delete.
fn platform_spec(architecture: &str, variant: Option<&str>, tag: &str) -> ImageSpec {
    let layers = vec![
        vec![
            Entry::dir("app"),
            Entry::file("app/base", pseudo_random(40_000, tag.len() as u64)),
            Entry::file("app/gone", format!("deleted later, {tag}")),
        ],
        vec![
            Entry::dir("app"),
            Entry::file("app/base", format!("overwritten, {tag}")),
            Entry::file(format!("app/{tag}"), tag),
        ],
        vec![
            Entry::dir("app"),
            Entry::whiteout("app/gone"),
            Entry::file("app/top", format!("top, {tag}")),
        ],
    ];
    ImageSpec {
        architecture: architecture.into(),
        variant: variant.map(Into::into),
        ..ImageSpec::new(layers).with_config(serde_json::json!({
            "Env": [format!("PLATFORM={tag}")],
            "Cmd": [format!("/app/{tag}")],
            "Labels": {},
        }))
    }
}

/// The host's platform and a foreign one (which the host cannot run).
fn two_platforms() -> Vec<ImageSpec> {
    let (arch, variant) = foreign_architecture();
    vec![
        platform_spec(host_architecture(), None, "host"),
        platform_spec(arch, variant, "foreign"),
    ]
}

/// Each platform carries the leftover marker of [`Source`].
/// A multi-platform source, its platforms' independent merges (platform →
/// image as `docker save` of IMAGE has it), and its leftover marker.
struct Fixture {
    source: Source,
    written: WrittenIndex,
    saved: Vec<(String, SavedImage)>,
}

fn fixture(name: &str, mut specs: Vec<ImageSpec>, extras: &IndexExtras) -> Fixture {
    let marker = unique("marker");
    for spec in &mut specs {
        spec.config["Labels"][MARKER] = Value::from(marker.clone());
        // Layers of this fixture's own: on the containerd store, tests that
        // share a layer share its snapshot, and one test's removal raced
        // another's unpacking of a foreign platform ("parent snapshot …
        // does not exist", seen once on Engine 28.5).
        spec.layers[0].push(Entry::file("fixture", marker.clone()));
    }
    let (image, written) = load_multi_platform_with(&specs, &unique(name), extras);
    let saved = if containerd_store() {
        save_platforms(&image.reference)
            .platforms
            .into_iter()
            .map(|p| (p.platform, p.image))
            .collect()
    } else {
        vec![(
            written.platforms[0].platform.clone(),
            save_image(&image.reference),
        )]
    };
    Fixture {
        source: Source { image, marker },
        written,
        saved,
    }
}

/// `docker-flatten flatten ARGS… --format json`: its JSON, or the failure.
fn flatten_json(args: &[&str]) -> Result<Value, (Option<i32>, String)> {
    let mut all = vec!["flatten", "--format", "json"];
    all.extend_from_slice(args);
    let out = plugin(&all);
    if !out.status.success() {
        return Err((out.status.code(), text(&out.stderr)));
    }
    let json: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", text(&out.stdout)));
    Ok(json)
}

/// Each saved platform of TAG is one layer with the files of IMAGE's
/// platform merged, and that platform's config.
fn assert_platforms_flattened(tag: &SavedIndex, source: &[(String, SavedImage)], want: &[&str]) {
    let got: Vec<&str> = tag.platforms.iter().map(|p| p.platform.as_str()).collect();
    assert_eq!(got, want, "the platforms of TAG");
    for flat in &tag.platforms {
        let (_, original) = source
            .iter()
            .find(|(p, _)| *p == flat.platform)
            .unwrap_or_else(|| panic!("{} is not a platform of IMAGE", flat.platform));
        assert_eq!(flat.image.layers.len(), 1, "{}: one layer", flat.platform);
        assert_same_fs(&original.fs(), &flat.image.fs(), PLACEHOLDERS);
        for key in ["architecture", "os", "variant"] {
            assert_eq!(
                flat.image.config[key], original.config[key],
                "{}: {key}",
                flat.platform
            );
        }
        assert_eq!(
            flat.image.config["config"]["Env"], original.config["config"]["Env"],
            "{}: the platform's own config",
            flat.platform
        );
    }
}

fn platforms(written: &WrittenIndex, which: &[usize]) -> Vec<String> {
    which
        .iter()
        .map(|&i| written.platforms[i].platform.clone())
        .collect()
}

#[test]
fn every_platform_is_flattened_into_one_index() {
    let f = fixture("plat-all", two_platforms(), &IndexExtras::default());
    let tag = unique("plat-all-flat");
    let json = flatten_json(&[&f.source.image.reference, &tag]).expect("flatten");
    let flat = TestImage::track(&tag);
    assert_eq!(json["result"]["id"], flat.id.as_str());
    let entries = json["platforms"].as_array().expect("a platforms list");
    if containerd_store() {
        let saved = save_platforms(&tag);
        assert_eq!(
            saved.index.as_deref(),
            Some(flat.id.as_str()),
            "TAG is an index"
        );
        let both = platforms(&f.written, &[0, 1]);
        assert_platforms_flattened(&saved, &f.saved, &[&both[0], &both[1]]);
        assert_eq!(entries.len(), 2, "{json}");
        for (entry, (written, saved)) in entries
            .iter()
            .zip(f.written.platforms.iter().zip(&saved.platforms))
        {
            assert_eq!(entry["platform"], written.platform.as_str());
            assert_eq!(entry["source"]["manifest"], written.manifest.as_str());
            assert_eq!(entry["source"]["layers"], 3);
            assert_eq!(entry["result"]["manifest"], saved.manifest.as_str());
            assert_eq!(entry["result"]["layers"], 1);
            assert!(entry["result"]["size"].as_u64().unwrap_or(0) > 0, "{entry}");
        }
    } else {
        // The graphdriver loaded the first platform alone: that one is flattened.
        assert_eq!(image_layer_count(&tag), 1);
        assert_same_fs(&f.saved[0].1.fs(), &image_fs(&tag), PLACEHOLDERS);
        assert_eq!(entries.len(), 1, "{json}");
        assert_eq!(
            entries[0]["platform"],
            f.written.platforms[0].platform.as_str()
        );
    }
    assert_eq!(json["left_out"], serde_json::json!([]), "{json}");
}

/// `--output` of a multi-platform IMAGE: the archive holds the index, named
/// TAG; skopeo reads each platform from it, and a load gives every platform
/// back. Nothing is created on the engine by the flatten itself.
#[test]
fn every_platform_goes_into_the_output_archive() {
    let f = fixture("plat-out", two_platforms(), &IndexExtras::default());
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("all.tar");
    let path = file.to_str().expect("UTF-8");
    let tag = format!("{}:multi", unique("plat-out-flat"));
    let json = flatten_json(&["-o", path, &f.source.image.reference, &tag]).expect("-o FILE");
    assert!(!image_exists(&tag), "-o created TAG on the engine");
    assert_eq!(json["result"]["file"], path, "{json}");
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["all.tar"], "only FILE, no temporary file");

    let archive = format!("oci-archive:{path}");
    let skopeo = |args: &[&str]| -> Value {
        let out = Command::new("skopeo")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("skopeo (is it installed?)");
        check_ok(&out, &format!("skopeo {}", args.join(" ")));
        serde_json::from_slice(&out.stdout).expect("skopeo's JSON")
    };
    let expected = if containerd_store() { 2 } else { 1 };
    if containerd_store() {
        let index = skopeo(&["inspect", "--raw", &archive]);
        let entries = index["manifests"].as_array().expect("an index");
        assert_eq!(entries.len(), expected, "{index}");
        let (foreign_arch, _) = foreign_architecture();
        let foreign = skopeo(&["inspect", "--override-arch", foreign_arch, &archive]);
        assert_eq!(foreign["Architecture"], foreign_arch, "{foreign}");
        assert_eq!(foreign["Layers"].as_array().map(Vec::len), Some(1));
        assert_eq!(foreign["Env"], json!(["PLATFORM=foreign"]), "{foreign}");
    }
    let host = skopeo(&["inspect", &archive]);
    assert_eq!(host["Architecture"], host_architecture(), "{host}");
    assert_eq!(host["Env"], json!(["PLATFORM=host"]), "{host}");

    load_ok(&file);
    let _loaded = TestImage::track(&tag);
    if containerd_store() {
        let saved = save_platforms(&tag);
        let both = platforms(&f.written, &[0, 1]);
        assert_platforms_flattened(&saved, &f.saved, &[&both[0], &both[1]]);
    } else {
        assert_eq!(image_layer_count(&tag), 1);
        assert_same_fs(&f.saved[0].1.fs(), &image_fs(&tag), PLACEHOLDERS);
    }
}

#[test]
fn the_platform_asked_for_is_flattened_alone() {
    let f = fixture("plat-one", two_platforms(), &IndexExtras::default());
    let (foreign_arch, _) = foreign_architecture();
    // Spelled without its variant, as people do: linux/arm64 is linux/arm64/v8.
    let asked = format!("linux/{foreign_arch}");
    let tag = unique("plat-one-flat");
    let result = flatten_json(&["--platform", &asked, &f.source.image.reference, &tag]);
    if containerd_store() {
        let json = result.expect("flatten --platform");
        let flat = TestImage::track(&tag);
        let saved = save_platforms(&tag);
        assert_eq!(saved.index, None, "TAG is one manifest");
        assert_eq!(saved.platforms[0].manifest, flat.id);
        let foreign = platforms(&f.written, &[1]);
        assert_platforms_flattened(&saved, &f.saved, &[&foreign[0]]);
        assert_eq!(inspect(&tag)["Architecture"], foreign_arch);
        assert_eq!(
            json["platforms"][0]["source"]["manifest"],
            f.written.platforms[1].manifest.as_str()
        );
    } else {
        let (code, err) = result.expect_err("a graphdriver has no foreign platform");
        assert_eq!(code, Some(2), "{err}");
        let host = &f.written.platforms[0].platform;
        assert!(
            err.contains(&format!("has no platform {asked}"))
                && err.contains(&format!("it has {host}")),
            "{err}"
        );
        assert!(!image_exists(&tag), "TAG was created by a refused run");
    }
    // IMAGE's own platform works on every store, in the CLI's other spellings too.
    let host = format!(
        "Linux/{}",
        if host_architecture() == "amd64" {
            "x86_64"
        } else {
            host_architecture()
        }
    );
    let own = unique("plat-own-flat");
    flatten_json(&["--platform", &host, &f.source.image.reference, &own])
        .expect("flatten its own platform");
    let _flat = TestImage::track(&own);
    assert_eq!(image_layer_count(&own), 1);
    assert_eq!(inspect(&own)["Architecture"], host_architecture());
    assert_same_fs(&f.saved[0].1.fs(), &image_fs(&own), PLACEHOLDERS);
}

#[test]
fn in_place_keeps_every_platform() {
    let f = fixture("plat-inplace", two_platforms(), &IndexExtras::default());
    let image = f.source.image.reference.clone();
    let json = flatten_json(&[&image, &image]).expect("flatten in place");
    let new_id = json["result"]["id"].as_str().expect("an ID").to_owned();
    assert_ne!(new_id, f.source.image.id);
    assert_eq!(inspect(&image)["Id"], new_id.as_str(), "the tag moved");
    let _new = TestImage {
        reference: image.clone(),
        id: new_id,
    };
    let _old = TestImage {
        reference: f.source.image.id.clone(),
        id: f.source.image.id.clone(),
    };
    if containerd_store() {
        let both = platforms(&f.written, &[0, 1]);
        assert_platforms_flattened(&save_platforms(&image), &f.saved, &[&both[0], &both[1]]);
    } else {
        assert_same_fs(&f.saved[0].1.fs(), &image_fs(&image), PLACEHOLDERS);
    }
}

#[test]
fn absent_platforms_and_attestations_are_left_out_and_said_so() {
    let mut specs = two_platforms();
    specs.push(platform_spec("ppc64le", None, "absent"));
    let extras = IndexExtras {
        absent: vec![2],
        attestations: true,
    };
    let f = fixture("plat-absent", specs, &extras);
    let image = f.source.image.reference.clone();
    let tag = unique("plat-absent-flat");
    let out = plugin(&["flatten", "--format", "json", &image, &tag]);
    check_ok(&out, "flatten with an absent platform");
    let _flat = TestImage::track(&tag);
    let json: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let err = text(&out.stderr);
    if containerd_store() {
        assert!(
            err.contains("linux/ppc64le") && err.contains("not in the store"),
            "{err}"
        );
        assert!(
            err.contains("3 attestation"),
            "one per platform, the absent one's too: {err}"
        );
        let saved = save_platforms(&tag);
        let both = platforms(&f.written, &[0, 1]);
        assert_eq!(
            saved.listed, both,
            "TAG lists the flattened platforms alone"
        );
        assert_platforms_flattened(&saved, &f.saved, &[&both[0], &both[1]]);
        assert_eq!(json["left_out"][0]["platform"], "linux/ppc64le", "{json}");
        assert_eq!(json["attestations_dropped"], 3, "{json}");

        // Asked for by name, an absent platform fails (the store lacks it:
        // exit 1); one IMAGE lacks is refused as asked (exit 2).
        for (asked, says, exit) in [
            ("linux/ppc64le", "not in the store".to_owned(), 1),
            (
                "linux/s390x",
                format!(
                    "has no platform linux/s390x; it has {}, {}, linux/ppc64le (content not in the store)",
                    both[0], both[1]
                ),
                2,
            ),
        ] {
            let refused = unique("plat-refused");
            let (code, err) = flatten_json(&["--platform", asked, &image, &refused]).expect_err(asked);
            assert_eq!(code, Some(exit), "{err}");
            assert!(err.contains(&says), "{asked}: {err}");
            assert!(!image_exists(&refused), "a refused run made TAG");
        }
    } else {
        assert!(err.is_empty() || !err.contains("ppc64le"), "{err}");
        assert_same_fs(&f.saved[0].1.fs(), &image_fs(&tag), PLACEHOLDERS);
    }
}

fn wait(mut child: Child, timeout: Duration) -> std::process::Output {
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

/// Ctrl-C once the first platform is done and the second's container is
/// being created: nothing of the run is left and TAG is where it was.
#[test]
fn ctrl_c_between_platforms_leaves_nothing_and_tag_untouched() {
    let f = fixture("plat-int", two_platforms(), &IndexExtras::default());
    let tag = existing_tag();
    let before = dangling_volumes();
    let (foreign, _) = foreign_architecture();
    // The second platform's create; on a graphdriver, the only create.
    let matches = if containerd_store() {
        foreign
    } else {
        "/containers/create"
    };
    let proxy = Proxy::start(Some(Fault::Hang { matches }));
    let host = proxy.host();
    let mut child = Command::new(plugin_path())
        .args([
            "-H",
            &host,
            "flatten",
            &f.source.image.reference,
            &tag.reference,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the flatten");
    let deadline = Instant::now() + Duration::from_secs(120);
    while proxy.fired() < 1 {
        if let Some(status) = child.try_wait().expect("wait") {
            let out = child.wait_with_output().expect("output");
            panic!(
                "the run ended ({status}) before the second create: {}",
                text(&out.stderr)
            );
        }
        assert!(Instant::now() < deadline, "the second create never came");
        std::thread::sleep(Duration::from_millis(20));
    }
    if containerd_store() {
        // Where the inspect does not say IMAGE is an index (no `Descriptor`:
        // Engine 26.1), the run starts IMAGE's export as inspected beside the
        // read that finds the index, and starts again from there.
        let started_before_plan = inspect(&f.source.image.reference)["Descriptor"].is_null();
        let requests = proxy.requests();
        let exports = requests.iter().filter(|r| r.contains("/export")).count();
        let expected = if started_before_plan { 2 } else { 1 };
        assert_eq!(
            exports, expected,
            "the first platform was exported (and, started before the plan, IMAGE as \
             inspected): {requests:#?}"
        );
    }
    let status = Command::new("kill")
        .args(["-s", "INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let out = wait(child, Duration::from_secs(60));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        err.contains(&format!("{} is unchanged", tag.reference)),
        "{err}"
    );
    assert_eq!(inspect(&tag.reference)["Id"], tag.id.as_str(), "TAG moved");
    assert_nothing_left(&f.source, &before, &[], "Ctrl-C between platforms");
}

/// A dry run reports each platform a flatten would take, from one read of
/// the save stream: each platform's own waste (the base file its second
/// layer overwrites, the file its third deletes).
#[test]
fn a_dry_run_reports_per_platform() {
    let f = fixture("plat-dry", two_platforms(), &IndexExtras::default());
    let image = &f.source.image.reference;
    let json = flatten_json(&["--dry-run", image]).expect("dry run");
    let wasted = |tag: &str| 40_000 + format!("deleted later, {tag}").len() as u64;
    let entries = json["platforms"].as_array().expect("platforms");
    let expected: Vec<(String, u64)> = if containerd_store() {
        vec![
            (f.written.platforms[0].platform.clone(), wasted("host")),
            (f.written.platforms[1].platform.clone(), wasted("foreign")),
        ]
    } else {
        vec![(f.written.platforms[0].platform.clone(), wasted("host"))]
    };
    let got: Vec<(String, u64)> = entries
        .iter()
        .map(|e| {
            (
                e["platform"].as_str().unwrap_or_default().to_owned(),
                e["analysis"]["wasted_bytes"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(got, expected, "{json}");
    assert_eq!(json["wasted_bytes"], expected[0].1);
    let out = plugin(&["flatten", "--dry-run", image]);
    check_ok(&out, "dry run, text");
    let report = text(&out.stdout);
    for (platform, _) in &expected {
        let said = format!("platform {platform},");
        assert_eq!(
            report.contains(&said),
            expected.len() > 1,
            "{said}: {report}"
        );
    }
    let (arch, _) = foreign_architecture();
    let asked = format!("linux/{arch}");
    let one = flatten_json(&["--dry-run", "--platform", &asked, image]);
    if containerd_store() {
        let one = one.expect("dry run --platform");
        assert_eq!(one["platforms"].as_array().map(Vec::len), Some(1));
        assert_eq!(one["wasted_bytes"], wasted("foreign"));
    } else {
        let (code, err) = one.expect_err("no foreign platform on a graphdriver");
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains(&format!("has no platform {asked}")), "{err}");
    }
}

/// `--exact` merges every platform's own layers, no difference allowed;
/// `--keep-layers` keeps each platform's own bottom layers as they are,
/// on the whole index and on the one `--platform` names.
#[test]
fn exact_and_keep_layers_take_every_platform() {
    let f = fixture("plat-exact", two_platforms(), &IndexExtras::default());
    let image = f.source.image.reference.clone();
    let tag = unique("plat-exact-flat");
    let json = flatten_json(&["--exact", &image, &tag]).expect("flatten --exact");
    let _flat = TestImage::track(&tag);
    assert_eq!(json["mode"], "exact", "{json}");
    if containerd_store() {
        let saved = save_platforms(&tag);
        assert_eq!(saved.platforms.len(), 2, "both platforms");
        for flat in &saved.platforms {
            let (_, original) = f
                .saved
                .iter()
                .find(|(p, _)| *p == flat.platform)
                .unwrap_or_else(|| panic!("{} is not a platform of IMAGE", flat.platform));
            assert_eq!(flat.image.layers.len(), 1, "{}", flat.platform);
            assert_same_fs(&original.fs(), &flat.image.fs(), &[]);
            assert_eq!(
                flat.image.config["architecture"],
                original.config["architecture"]
            );
        }
    } else {
        assert_eq!(image_layer_count(&tag), 1);
        assert_same_fs(&f.saved[0].1.fs(), &image_fs(&tag), &[]);
    }

    let kept = unique("plat-keep-flat");
    let whole = flatten_json(&["--keep-layers", "1", &image, &kept]);
    let (foreign_arch, _) = foreign_architecture();
    let asked = format!("linux/{foreign_arch}");
    if containerd_store() {
        // Every platform keeps its own bottom layer, merged above it.
        let json = whole.expect("--keep-layers 1 of every platform");
        let _flat = TestImage::track(&kept);
        assert_eq!(json["mode"], "keep", "{json}");
        let saved = save_platforms(&kept);
        assert_eq!(saved.platforms.len(), 2, "both platforms");
        for flat in &saved.platforms {
            let (_, original) = f
                .saved
                .iter()
                .find(|(p, _)| *p == flat.platform)
                .unwrap_or_else(|| panic!("{} is not a platform of IMAGE", flat.platform));
            assert_eq!(flat.image.layers.len(), 2, "{}", flat.platform);
            assert_eq!(
                flat.image.layers[0], original.layers[0],
                "{}: the kept layer as it was",
                flat.platform
            );
            assert_same_fs(&original.fs(), &flat.image.fs(), &[]);
        }
        let kept = unique("plat-keep-one");
        let one = flatten_json(&["--keep-layers", "1", "--platform", &asked, &image, &kept]);
        let json = one.expect("--keep-layers 1 --platform");
        let _flat = TestImage::track(&kept);
        assert_eq!(json["mode"], "keep", "{json}");
        let saved = save_image(&kept);
        let (_, original) = &f.saved[1];
        assert_eq!(saved.layers.len(), 2, "the kept layer and the merged one");
        assert_eq!(
            saved.layers[0], original.layers[0],
            "the kept layer as it was"
        );
        assert_same_fs(&original.fs(), &saved.fs(), &[]);
        assert_eq!(inspect(&kept)["Architecture"], foreign_arch);
    } else {
        let json = whole.expect("a graphdriver image is one platform");
        let _flat = TestImage::track(&kept);
        assert_eq!(json["mode"], "keep", "{json}");
        assert_eq!(image_layer_count(&kept), 2);
        assert_same_fs(&f.saved[0].1.fs(), &image_fs(&kept), &[]);
        let one = flatten_json(&["--keep-layers", "1", "--platform", &asked, &image, &kept]);
        let (code, err) = one.expect_err("a graphdriver has no foreign platform");
        assert_eq!(code, Some(2), "{err}");
    }
}

/// `--verify` compares each platform's result with that platform's own
/// layers: the whole index, in the engine and in an `--output` archive,
/// and the one `--platform` names.
#[test]
fn verify_checks_every_platform() {
    let f = fixture("plat-verify", two_platforms(), &IndexExtras::default());
    let image = f.source.image.reference.clone();
    let tag = unique("plat-verify-flat");
    let json = flatten_json(&["--verify", "--exact", &image, &tag]).expect("--verify --exact");
    let _flat = TestImage::track(&tag);
    let report = &json["verify"];
    assert_eq!(report["differences"], json!([]), "{json}");
    assert!(report["paths"].as_u64().unwrap_or(0) > 3, "{json}");
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("all.tar");
    let path = file.to_str().expect("UTF-8");
    let json = flatten_json(&["--verify", "-o", path, &image, &tag]).expect("--verify -o FILE");
    let report = &json["verify"];
    assert_eq!(report["differences"], json!([]), "{json}");
    if containerd_store() {
        let whole_paths = report["paths"].as_u64().unwrap_or(0);
        let (foreign_arch, _) = foreign_architecture();
        let asked = format!("linux/{foreign_arch}");
        let one = unique("plat-verify-one");
        let json = flatten_json(&["--verify", "--exact", "--platform", &asked, &image, &one])
            .expect("--verify --platform");
        let _flat = TestImage::track(&one);
        assert_eq!(json["verify"]["differences"], json!([]), "{json}");
        assert_eq!(inspect(&one)["Architecture"], foreign_arch);
        // Both platforms were compared, not only the host's.
        let one_paths = json["verify"]["paths"].as_u64().unwrap_or(0);
        assert!(
            whole_paths > one_paths && one_paths > 3,
            "{whole_paths} paths for both platforms, {one_paths} for one"
        );
    }
    assert!(file.exists(), "FILE was not written");
}

/// A difference in one platform fails the whole flatten, naming that
/// platform: the default mode's export cuts sub-second mtimes, here in the
/// foreign platform only. TAG is not made, nothing is left.
#[test]
fn a_difference_in_one_platform_fails_the_verify_and_names_it() {
    let mut specs = two_platforms();
    specs[1].layers[2].push(Entry::file("app/frac", "x").mtime_nanos(1_600_000_000, 500_000_000));
    let f = fixture("plat-verify-bad", specs, &IndexExtras::default());
    let before = dangling_volumes();
    let tag = unique("plat-verify-bad-flat");
    let result = flatten_json(&["--verify", &f.source.image.reference, &tag]);
    if containerd_store() {
        let (code, err) = result.expect_err("a platform differs");
        assert_eq!(code, Some(1), "{err}");
        let foreign = &f.written.platforms[1].platform;
        assert!(
            err.contains(&format!("{foreign}: /app/frac: mtime")),
            "the difference and its platform: {err}"
        );
        assert!(
            !image_exists(&tag),
            "TAG was made by a run that failed its verify"
        );
        assert_nothing_left(&f.source, &before, &[], "a failed verify of an index");
    } else {
        // The graphdriver loaded the host's platform alone, which has no fraction.
        let json = result.expect("the host's platform verifies");
        let _flat = TestImage::track(&tag);
        assert_eq!(json["verify"]["differences"], json!([]), "{json}");
    }
}

/// `--keep-base` on a multi-platform IMAGE whose platforms are all built
/// on one one-platform BASE: every platform keeps BASE's layer as it is,
/// and the result verifies against IMAGE's own layers.
#[test]
fn keep_base_keeps_a_shared_base_under_every_platform() {
    let base_spec = ImageSpec::new(vec![vec![
        Entry::dir("base"),
        Entry::file("base/lib", pseudo_random(30_000, 7)),
        Entry::dir("app"),
        Entry::file("app/gone", "the app deletes this\n"),
    ]]);
    let base = load_image(&base_spec, &unique("plat-base"));
    let specs: Vec<ImageSpec> = two_platforms()
        .into_iter()
        .map(|spec| spec.on(&base_spec, &base.reference))
        .collect();
    let f = fixture("plat-keepbase", specs, &IndexExtras::default());
    let tag = unique("plat-keepbase-flat");
    let json = flatten_json(&[
        "--keep-base",
        &base.reference,
        "--verify",
        &f.source.image.reference,
        &tag,
    ])
    .expect("--keep-base of every platform");
    let _flat = TestImage::track(&tag);
    assert_eq!(json["mode"], "keep", "{json}");
    assert_eq!(json["verify"]["differences"], json!([]), "{json}");
    let results: Vec<(String, SavedImage)> = if containerd_store() {
        save_platforms(&tag)
            .platforms
            .into_iter()
            .map(|p| (p.platform, p.image))
            .collect()
    } else {
        vec![(f.saved[0].0.clone(), save_image(&tag))]
    };
    assert_eq!(results.len(), f.saved.len(), "every platform of IMAGE");
    for (platform, flat) in &results {
        let (_, original) = f
            .saved
            .iter()
            .find(|(p, _)| p == platform)
            .unwrap_or_else(|| panic!("{platform} is not a platform of IMAGE"));
        assert_eq!(
            flat.layers.len(),
            2,
            "{platform}: BASE's layer and the merged one"
        );
        assert_eq!(
            flat.layers[0], original.layers[0],
            "{platform}: BASE's layer as it was"
        );
        assert_same_fs(&original.fs(), &flat.fs(), &[]);
    }
}
