//! `docker flatten -i FILE` (issue 23): flattening an image from an image
//! archive instead of the engine, through the real docker CLI.
//!
//! What is covered, on whatever engine `DOCKER_HOST` names:
//! - every form of archive: a docker-archive (`manifest.json`, as
//!   written by Engine 20.10's `docker save`), `docker save` of the engine
//!   under test (a docker-archive on a graphdriver, an OCI layout with a
//!   `manifest.json` on the containerd store), OCI layouts as a tar and as
//!   a directory with plain, gzip and zstd layers (written here by hand),
//!   `skopeo copy docker-archive:… oci-archive:…` and `… oci:DIR`, and
//!   stdin (`docker save IMAGE | docker flatten -i - TAG`, a real pipe);
//! - the result is the merge of the archive's layers: one layer whose
//!   files equal the independent merge (tests/support/fsview.rs) with no
//!   difference allowed, and IMAGE's whole config and platform; the same
//!   archive and arguments give the same bytes, the same bytes as
//!   `docker flatten --exact IMAGE -o` of that image loaded into the
//!   engine, whatever form the archive takes; `--exact` changes nothing;
//! - into the engine (`-i FILE [IMAGE] TAG`) the result is tagged, loads
//!   and runs; with `-o` it loads with `docker load` and runs;
//! - a two-platform OCI layout flattens into an index of both (skopeo
//!   reads it; the containerd store loads both; Engine 20.10 loads the
//!   host's), `--platform` picks one (umoci unpacks it);
//! - the operands: `-i FILE [IMAGE] TAG`, `-i FILE -o OUT [[IMAGE] TAG]`
//!   (a lone operand is TAG; without TAG, OUT names the image as FILE
//!   does); IMAGE left out when the archive holds one image; IMAGE a
//!   `RepoTags` name (`app` is `app:latest`, `docker.io/library/`
//!   normalized), an `io.containerd.image.name`, skopeo's bare ref name,
//!   the manifest's or index's digest, the image ID (the config's digest,
//!   in every form of archive) and a 12-hex prefix of it;
//!   several images and none named, or a name the archive lacks, exit 2
//!   listing what it has;
//! - `-o`, `--dry-run` and `--verify -o` need no engine (`DOCKER_HOST`
//!   pointing nowhere), and `--format json` then says `"engine": null`
//!   and `source.file` is FILE as given (`-` for stdin);
//! - broken input (a cut archive, a blob whose digest does not match, a
//!   missing layer or config, random bytes, an empty file, a directory
//!   that is no layout, a missing path) fails naming FILE, writes no file
//!   and no temporary file, tags nothing and leaves no image or container
//!   made from it; option conflicts (`--verify-only`, `--cleanup`) exit 2.
//!
//! Unix tools (skopeo, umoci) and unix file modes: on Windows this file
//! compiles to nothing.
#![cfg(unix)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};
use support::input::*;
use support::*;

/// `docker flatten ARGS…` through the real CLI, without
/// `SOURCE_DATE_EPOCH` (results compared byte for byte must not depend on
/// who runs the tests).
fn flatten(cli: &Cli, args: &[&str]) -> Output {
    let mut all = vec!["flatten"];
    all.extend_from_slice(args);
    let mut cmd = cli.command(&all);
    cmd.env_remove("SOURCE_DATE_EPOCH");
    run_with_timeout(cmd, PLUGIN_TIMEOUT)
}

/// [`flatten`], which must succeed.
#[track_caller]
fn flatten_ok(cli: &Cli, args: &[&str]) -> Output {
    let out = flatten(cli, args);
    check_ok(&out, &format!("docker flatten {}", args.join(" ")));
    out
}

/// [`flatten_ok`] with `--format json`: the document.
#[track_caller]
fn flatten_json(cli: &Cli, args: &[&str]) -> Value {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    let out = flatten_ok(cli, &all);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", text(&out.stdout)))
}

/// The fidelity fixture (every kind of file, whiteouts, an opaque
/// directory, long and non-UTF-8 names, xattrs, devices, mtimes past
/// 2038) on busybox, with a marker file and label of its own, a config
/// with every common field, and a command that prints the marker.
fn rich_spec(marker: &str) -> ImageSpec {
    let mut layers = vec![busybox_layer()];
    layers.extend(rich_layers());
    layers.push(vec![
        Entry::dir("fixture"),
        Entry::file("fixture/marker", format!("{marker}\n")),
    ]);
    ImageSpec::new(layers)
        .with_config(json!({
            "Env": ["PATH=/bin", "Q=a\nb", "P=$5"],
            "Cmd": ["cat", "/fixture/marker"],
            "WorkingDir": "/fixture",
            "User": "0:0",
            "Labels": {MARKER: marker},
            "ExposedPorts": {"8080/tcp": {}},
            "Volumes": {"/data": {}},
            "StopSignal": "SIGTERM",
        }))
        .with_fields(json!({"author": "docker-flatten input tests"}))
}

/// `docker run` of `reference` prints the marker.
#[track_caller]
fn assert_runs(reference: &str, marker: &str) {
    let out = run_image(reference, &[]);
    check_ok(&out, &format!("docker run {reference}"));
    assert_eq!(
        text(&out.stdout),
        format!("{marker}\n"),
        "{reference}'s output"
    );
}

/// FILE, written by `-o`, holds one image of one layer whose files are
/// `want` exactly and whose config is `config`'s.
#[track_caller]
fn assert_flattened(file: &Path, want: &FsView, config: &Value, what: &str) -> SavedImage {
    let got = read_image(file);
    assert_eq!(got.layers.len(), 1, "{what}: one layer");
    let diffs = diff_fs(want, &got.fs(), &[]);
    assert!(
        diffs.is_empty(),
        "{what}: files differ:\n  {}",
        diffs.join("\n  ")
    );
    assert_config_kept(config, &got.config, what);
    got
}

/// `skopeo ARGS…`, which must succeed.
fn skopeo(args: &[&str]) -> Output {
    let out = Command::new("skopeo")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run skopeo (is it installed? apt-get install -y skopeo)");
    check_ok(&out, &format!("skopeo {}", args.join(" ")));
    out
}

/// `docker load -i FILE`, and a guard for `tag`, which it must create.
#[track_caller]
fn load_tagged(file: &Path, tag: &str) -> TestImage {
    load_ok(file);
    let loaded = TestImage::track(tag);
    assert!(
        !loaded.id.is_empty(),
        "docker load of {} made no {tag}",
        file.display()
    );
    loaded
}

/// The whole bytes of `path`.
fn bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[track_caller]
fn assert_same_bytes(a: &Path, b: &Path) {
    assert!(
        bytes(a) == bytes(b),
        "{} and {} differ",
        a.display(),
        b.display()
    );
}

/// One image in every form an archive takes, each flattened with `-o`:
/// the same files (the merge of the layers), the same config, and, for the
/// same IMAGE and TAG strings and the same config bytes, the same bytes.
#[test]
fn every_form_of_archive_flattens_to_the_merge_of_its_layers() {
    let cli = Cli::new();
    let marker = unique("in-forms-marker");
    let spec = rich_spec(&marker);
    let name = format!("{}:1", unique("in-forms"));
    let tag = format!("{}:flat", unique("in-forms-flat"));
    let (config, tars) = image_of(&spec, &name);
    let want = FsView::from_layer_tars(&tars);
    let config_json: Value = serde_json::from_slice(&config).expect("the config");
    let dir = scratch("in-forms");
    let at = |name: &str| dir.path().join(name);
    let outs = scratch("in-forms-out");
    let out = |name: &str| outs.path().join(name);

    let docker_archive = at("docker-archive.tar");
    write_docker_archive(&spec, &name, &docker_archive);
    let mut forms: Vec<(&str, PathBuf)> = vec![("docker-archive", docker_archive.clone())];
    let mut manifests = Vec::new();
    for (form, layers, as_dir) in [
        ("oci-gzip.tar", Layers::Gzip, false),
        ("oci-zstd.tar", Layers::Zstd, false),
        ("oci-plain-dir", Layers::Plain, true),
        ("oci-zstd-dir", Layers::Zstd, true),
    ] {
        let mut layout = Layout::new();
        manifests.push(
            layout
                .add_image(&config, &tars, layers, containerd_names(&name))
                .manifest,
        );
        let path = at(form);
        if as_dir {
            std::fs::create_dir(&path).expect("mkdir");
            layout.write_dir(&path);
        } else {
            layout.write_tar(&path);
        }
        forms.push((form, path));
    }

    // The reference: the docker-archive, twice, and with --exact.
    let first = out("first.tar");
    let (first_s, docker_s) = (utf8(&first), utf8(&docker_archive));
    let done = flatten_ok(&cli, &["-i", docker_s, "-o", first_s, &name, &tag]);
    assert!(
        done.stdout.is_empty(),
        "-o FILE: stdout: {}",
        text(&done.stdout)
    );
    assert_eq!(
        names_in(outs.path()),
        ["first.tar"],
        "only FILE, no temporary file"
    );
    assert_flattened(&first, &want, &config_json, "the docker-archive");
    let again = out("again.tar");
    flatten_ok(&cli, &["-i", docker_s, "-o", utf8(&again), &name, &tag]);
    assert_same_bytes(&first, &again);
    let exact = out("exact.tar");
    flatten_ok(
        &cli,
        &["--exact", "-i", docker_s, "-o", utf8(&exact), &name, &tag],
    );
    assert_same_bytes(&first, &exact);

    // Every OCI form, found by its io.containerd.image.name: the same bytes.
    for (form, path) in &forms[1..] {
        let file = out(&format!("{form}.out.tar"));
        flatten_ok(&cli, &["-i", utf8(path), "-o", utf8(&file), &name, &tag]);
        assert_flattened(&file, &want, &config_json, form);
        assert_same_bytes(&first, &file);
    }
    // IMAGE left out (the archive holds one image), and named by digests.
    let layout_dir = &forms[3].1;
    let unnamed = out("unnamed.tar");
    flatten_ok(&cli, &["-i", utf8(layout_dir), "-o", utf8(&unnamed)]);
    assert_flattened(&unnamed, &want, &config_json, "IMAGE left out");
    let config_digest = format!("sha256:{}", sha256_hex(&config));
    let by_digest = |how: &str, image: &str, archive: &Path| {
        let file = out("by-digest.tar");
        let args = ["-i", utf8(archive), "-o", utf8(&file), image, &tag];
        flatten_ok(&cli, &args);
        assert_flattened(&file, &want, &config_json, how);
        std::fs::remove_file(&file).expect("rm");
    };
    by_digest("the image ID", &config_digest, &docker_archive);
    by_digest("an ID prefix", &config_digest[7..19], &docker_archive);
    by_digest("the manifest digest", &manifests[0], &forms[1].1);

    // skopeo's layouts: gzip layers, its own config bytes, a bare ref name.
    let skopeo_tar = at("skopeo.tar");
    let skopeo_dir = at("skopeo-dir");
    let source = format!("docker-archive:{docker_s}");
    skopeo(&[
        "copy",
        "--quiet",
        &source,
        &format!("oci-archive:{}:v1", utf8(&skopeo_tar)),
    ]);
    skopeo(&[
        "copy",
        "--quiet",
        &source,
        &format!("oci:{}:v1", utf8(&skopeo_dir)),
    ]);
    let skopeo_config = read_image(&skopeo_dir).config;
    let from_tar = out("skopeo-tar.out.tar");
    let from_dir = out("skopeo-dir.out.tar");
    flatten_ok(
        &cli,
        &["-i", utf8(&skopeo_tar), "-o", utf8(&from_tar), "v1", &tag],
    );
    flatten_ok(
        &cli,
        &["-i", utf8(&skopeo_dir), "-o", utf8(&from_dir), "v1", &tag],
    );
    assert_flattened(&from_tar, &want, &skopeo_config, "skopeo's oci-archive");
    assert_flattened(&from_dir, &want, &skopeo_config, "skopeo's oci directory");
    assert_same_bytes(&from_tar, &from_dir);

    // What the engine makes of them: each loads as TAG (without TAG, as
    // FILE names the image) and runs.
    for (file, tag) in [(&first, &tag), (&from_dir, &tag), (&unnamed, &name)] {
        let loaded = load_tagged(file, tag);
        assert_eq!(image_layer_count(&loaded.reference), 1);
        assert_runs(tag, &marker);
        let info = inspect(tag);
        assert_eq!(info["Config"]["Env"], spec.config["Env"], "{info}");
        assert_eq!(info["Architecture"], host_architecture());
        assert_eq!(info["Author"], "docker-flatten input tests");
        drop(loaded);
        assert!(!exists(tag), "{tag} is still there");
    }

    // The image ID (the config's digest) names it in an OCI layout too.
    by_digest("the image ID", &config_digest, &forms[2].1);
    by_digest("an ID prefix", &config_digest[7..21], &forms[3].1);
}

/// `docker save` of this engine, flattened back into it: tagged TAG,
/// the files of IMAGE with no difference, its config, and it runs; the
/// same through a pipe; `--verify` finds nothing; and `-o` of the archive
/// gives the very bytes `--exact -o` gives of the loaded image.
#[test]
fn a_docker_save_of_this_engine_goes_back_flattened() {
    let cli = Cli::new();
    let marker = unique("in-save-marker");
    let spec = rich_spec(&marker);
    let name = format!("{}:1", unique("in-save"));
    let source = load_image(&spec, &name);
    let dir = scratch("in-save");
    let saved = dir.path().join("saved.tar");
    let saved_s = utf8(&saved);
    docker_ok(&["save", "-o", saved_s, &name]);
    let want = image_fs(&name);
    let want_info = inspect(&name);

    // One positional with -i and no -o: TAG.
    let tag = unique("in-save-flat");
    let out = flatten(&cli, &["-i", saved_s, &tag]);
    let flat = TestImage::track(&tag);
    check_ok(&out, "docker flatten -i saved.tar TAG");
    assert_eq!(
        text(&out.stdout),
        format!("{}\n", flat.id),
        "stdout: the new image ID"
    );
    let check = |reference: &str| {
        assert_eq!(image_layer_count(reference), 1, "{reference}: one layer");
        let diffs = diff_fs(&want, &image_fs(reference), &[]);
        assert!(
            diffs.is_empty(),
            "{reference}: files differ:\n  {}",
            diffs.join("\n  ")
        );
        let info = inspect(reference);
        for field in ["Config", "Os", "Architecture", "Variant", "Author"] {
            assert_eq!(info[field], want_info[field], "{reference}: {field}");
        }
        assert_runs(reference, &marker);
    };
    check(&tag);

    // IMAGE and TAG, with --verify and --format json.
    let verified = unique("in-save-verified");
    let doc = flatten_json(&cli, &["--verify", "-i", saved_s, &name, &verified]);
    let verified = TestImage::track(&verified);
    assert_eq!(doc["source"]["file"], saved_s, "{doc}");
    assert!(doc["engine"].is_object(), "the engine was used: {doc}");
    assert_eq!(doc["result"]["id"], verified.id.as_str(), "{doc}");
    assert_eq!(doc["verify"]["differences"], json!([]), "{doc}");
    assert!(doc["verify"]["paths"].as_u64().unwrap_or(0) > 20, "{doc}");
    check(&verified.reference);

    // `docker save IMAGE | docker flatten -i - TAG`.
    let piped = unique("in-save-piped");
    let mut save = Command::new("docker");
    save.args(["save", &name]);
    let (saving, out) = pipe(
        save,
        cli.command(&["flatten", "--format", "json", "-i", "-", &piped]),
    );
    let piped = TestImage::track(&piped);
    check_ok(&saving, "docker save");
    check_ok(&out, "docker flatten -i - TAG");
    let doc: Value = serde_json::from_slice(&out.stdout).expect("a JSON document");
    assert_eq!(doc["source"]["file"], "-", "{doc}");
    check(&piped.reference);

    // The archive's bytes are --exact's of the image loaded from it, and
    // so are those of the docker-archive it was loaded from.
    let outs = scratch("in-save-out");
    let (z, y, w) = (
        outs.path().join("exact.tar"),
        outs.path().join("input.tar"),
        outs.path().join("written.tar"),
    );
    let written = dir.path().join("written.tar");
    write_docker_archive(&spec, &name, &written);
    flatten_ok(&cli, &["--exact", "-o", utf8(&z), &name, &name]);
    flatten_ok(&cli, &["-i", saved_s, "-o", utf8(&y), &name, &name]);
    flatten_ok(&cli, &["-i", utf8(&written), "-o", utf8(&w), &name, &name]);
    assert_same_bytes(&z, &y);
    assert_same_bytes(&z, &w);
    assert_eq!(
        inspect(&name)["Id"],
        source.id.as_str(),
        "IMAGE was left as it was"
    );
}

/// A platform of the multi-platform fixture: two layers (an overwrite, a
/// delete) whose files name the platform and the test; the host's has
/// busybox and a command that prints them.
fn platform_spec(architecture: &str, variant: Option<&str>, name: &str, marker: &str) -> ImageSpec {
    let line = format!("{name} {marker}");
    let mut layers = vec![
        vec![
            Entry::dir("app"),
            Entry::file("app/base", pseudo_random(40_000, name.len() as u64 + 3)),
            Entry::file("app/gone", format!("deleted later, {name}")),
        ],
        vec![
            Entry::dir("app"),
            Entry::file("app/base", format!("overwritten, {name}")),
            Entry::whiteout("app/gone"),
            Entry::file("app/platform", format!("{line}\n")),
        ],
    ];
    if architecture == host_architecture() {
        layers.insert(0, busybox_layer());
    }
    ImageSpec {
        architecture: architecture.into(),
        variant: variant.map(Into::into),
        ..ImageSpec::new(layers).with_config(json!({
            "Env": ["PATH=/bin", format!("PLATFORM={name}")],
            "Cmd": ["cat", "/app/platform"],
            "Labels": {MARKER: marker},
        }))
    }
}

/// An OCI layout of a two-platform image (the host's and a foreign one),
/// as a tar and as a directory: `-o` gives an index of both platforms
/// flattened, `--platform` one of them; into the engine too.
#[test]
fn a_two_platform_layout_flattens_every_platform_into_an_index() {
    let cli = Cli::new();
    let marker = unique("in-multi-marker");
    let (arch, variant) = foreign_architecture();
    let specs = vec![
        platform_spec(host_architecture(), None, "host", &marker),
        platform_spec(arch, variant, "foreign", &marker),
    ];
    let name = format!("{}:2", unique("in-multi"));
    let dir = scratch("in-multi");
    let layout_tar = dir.path().join("multi.tar");
    let written = write_multi_platform(&specs, &name, &layout_tar);
    let layout_dir = dir.path().join("multi");
    std::fs::create_dir(&layout_dir).expect("mkdir");
    for (member, data) in tar_members(&bytes(&layout_tar)) {
        let path = layout_dir.join(member);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(path, data).expect("write a member");
    }
    let source = parse_saved_platforms(&bytes(&layout_tar));
    let host = written.platforms[0].platform.clone();
    let foreign = written.platforms[1].platform.clone();
    let of = |platform: &str| -> &SavedImage {
        &source
            .platforms
            .iter()
            .find(|p| p.platform == platform)
            .unwrap_or_else(|| panic!("the fixture has no {platform}"))
            .image
    };
    let check = |got: &SavedImage, platform: &str, what: &str| {
        let want = of(platform);
        assert_eq!(got.layers.len(), 1, "{what}: {platform}: one layer");
        let diffs = diff_fs(&want.fs(), &got.fs(), &[]);
        assert!(
            diffs.is_empty(),
            "{what}: {platform}: files differ:\n  {}",
            diffs.join("\n  ")
        );
        assert_config_kept(&want.config, &got.config, &format!("{what}: {platform}"));
    };

    let tag = format!("{}:flat", unique("in-multi-flat"));
    let outs = scratch("in-multi-out");
    let all = outs.path().join("all.tar");
    let all_s = utf8(&all);
    flatten_ok(&cli, &["-i", utf8(&layout_tar), "-o", all_s, &name, &tag]);
    assert_eq!(
        names_in(outs.path()),
        ["all.tar"],
        "only FILE, no temporary file"
    );
    let result = parse_saved_platforms(&bytes(&all));
    assert!(result.index.is_some(), "the result is an index");
    let got: Vec<&str> = result
        .platforms
        .iter()
        .map(|p| p.platform.as_str())
        .collect();
    assert_eq!(
        got,
        [host.as_str(), foreign.as_str()],
        "the result's platforms, in order"
    );
    for platform in &result.platforms {
        check(&platform.image, &platform.platform, "-o of the layout");
    }
    // The directory holds the same image: the same bytes.
    let from_dir = outs.path().join("from-dir.tar");
    flatten_ok(
        &cli,
        &["-i", utf8(&layout_dir), "-o", utf8(&from_dir), &name, &tag],
    );
    assert_same_bytes(&all, &from_dir);

    // skopeo reads the index and each platform of it.
    let archive = format!("oci-archive:{all_s}");
    let index: Value =
        serde_json::from_slice(&skopeo(&["inspect", "--raw", &archive]).stdout).expect("JSON");
    let entries = index["manifests"].as_array().expect("an index");
    assert_eq!(entries.len(), 2, "{index}");
    assert_eq!(entries[1]["platform"]["architecture"], arch, "{index}");
    let inspected: Value =
        serde_json::from_slice(&skopeo(&["inspect", "--override-arch", arch, &archive]).stdout)
            .expect("JSON");
    assert_eq!(inspected["Architecture"], arch, "{inspected}");
    assert_eq!(
        inspected["Layers"].as_array().map(Vec::len),
        Some(1),
        "{inspected}"
    );
    assert_eq!(
        inspected["Env"],
        json!(["PATH=/bin", "PLATFORM=foreign"]),
        "{inspected}"
    );

    // --platform: the foreign one alone, which umoci unpacks.
    let one = outs.path().join("one.tar");
    flatten_ok(
        &cli,
        &[
            "-i",
            utf8(&layout_dir),
            "--platform",
            &foreign,
            "-o",
            utf8(&one),
            &name,
            &tag,
        ],
    );
    let picked = parse_saved_platforms(&bytes(&one));
    assert_eq!(picked.index, None, "--platform gives one manifest");
    assert_eq!(picked.platforms.len(), 1);
    check(&picked.platforms[0].image, &foreign, "--platform");
    let unpacked = scratch("in-multi-umoci");
    let layout = unpacked.path().join("layout");
    std::fs::create_dir(&layout).expect("mkdir");
    for (member, data) in tar_members(&bytes(&one)) {
        let path = layout.join(member);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(path, data).expect("write a member");
    }
    let bundle = unpacked.path().join("bundle");
    let image = format!("{}:flat", utf8(&layout));
    let umoci = Command::new("umoci")
        .args(["unpack", "--rootless", "--image", &image, utf8(&bundle)])
        .output()
        .expect("run umoci (is it installed? apt-get install -y umoci)");
    check_ok(&umoci, "umoci unpack");
    let mut want = of(&foreign).fs();
    for node in want.0.values_mut() {
        (node.uid, node.gid) = (0, 0);
    }
    let diffs = diff_fs(&want, &FsView::from_dir(&bundle.join("rootfs")), &[]);
    assert!(
        diffs.is_empty(),
        "umoci's tree differs:\n  {}",
        diffs.join("\n  ")
    );

    // The engine loads the index: every platform on the containerd
    // store, the host's (manifest.json) on a graphdriver; it runs.
    {
        let loaded = load_tagged(&all, &tag);
        if containerd_store() {
            let saved = save_platforms(&tag);
            assert_eq!(
                saved.index.as_deref(),
                Some(loaded.id.as_str()),
                "TAG is the index"
            );
            let got: Vec<&str> = saved
                .platforms
                .iter()
                .map(|p| p.platform.as_str())
                .collect();
            assert_eq!(got, [host.as_str(), foreign.as_str()]);
            for platform in &saved.platforms {
                check(&platform.image, &platform.platform, "loaded");
            }
        } else {
            check(&save_image(&tag), &host, "loaded");
        }
        assert_eq!(inspect(&tag)["Architecture"], host_architecture());
        assert_runs(&tag, &format!("host {marker}"));
    }

    // Into the engine, the host's platform of the directory, IMAGE named
    // by its index's digest: every store.
    let own = unique("in-multi-own");
    let args = [
        "-i",
        utf8(&layout_dir),
        "--platform",
        &host,
        &written.index,
        &own,
    ];
    let out = flatten(&cli, &args);
    let own = TestImage::track(&own);
    check_ok(&out, &format!("docker flatten {}", args.join(" ")));
    assert_eq!(image_layer_count(&own.reference), 1);
    check(&save_image(&own.reference), &host, "into the engine");
    assert_runs(&own.reference, &format!("host {marker}"));
}

/// A small image of its own: one file naming it, the marker label.
fn small_spec(name: &str, marker: &str) -> ImageSpec {
    ImageSpec::new(vec![
        vec![
            Entry::dir("x"),
            Entry::file("x/big", pseudo_random(60_000, 5)),
        ],
        vec![Entry::dir("x"), Entry::file("x/who", name)],
    ])
    .with_config(json!({"Env": [format!("WHO={name}")], "Labels": {MARKER: marker}}))
}

/// The config digest of each image of a docker-archive's `manifest.json`
/// (whatever layout `docker save` wrote), by its first RepoTag.
fn config_digests(archive: &Path) -> Vec<(String, String)> {
    let members = tar_members(&bytes(archive));
    let member = |name: &str| -> &Vec<u8> {
        &members
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{} has no {name}", archive.display()))
            .1
    };
    let manifest: Value = serde_json::from_slice(member("manifest.json")).expect("manifest.json");
    manifest
        .as_array()
        .expect("an array")
        .iter()
        .map(|image| {
            let tag = image["RepoTags"][0].as_str().expect("a RepoTag").to_owned();
            let config = image["Config"].as_str().expect("Config");
            (tag, format!("sha256:{}", sha256_hex(member(config))))
        })
        .collect()
}

/// Several images in one archive (`docker save A B` of this engine; a
/// skopeo layout with two refs): IMAGE picks one by any of its names or
/// digests; none named, or one the archive lacks, exits 2 and makes
/// nothing.
#[test]
fn image_picks_one_of_several_by_name_or_digest() {
    let cli = Cli::new();
    let marker = unique("in-names-marker");
    let a_repo = unique("in-names-a");
    let a_name = with_tag(&a_repo);
    let b_repo = unique("in-names-b");
    let b_name = format!("{b_repo}:2");
    let (a_spec, b_spec) = (small_spec(&a_name, &marker), small_spec(&b_name, &marker));
    let a = load_image(&a_spec, &a_name);
    let b = load_image(&b_spec, &b_name);
    let dir = scratch("in-names");
    let two = dir.path().join("two.tar");
    let two_s = utf8(&two);
    docker_ok(&["save", "-o", two_s, &a_name, &b_name]);
    let (want_a, want_b) = (image_fs(&a_name), image_fs(&b_name));
    let digests = config_digests(&two);
    let b_config = &digests
        .iter()
        .find(|(t, _)| t.ends_with(&b_name))
        .unwrap_or_else(|| panic!("{b_name} is not in manifest.json: {digests:?}"))
        .1;

    let outs = scratch("in-names-out");
    let file = outs.path().join("flat.tar");
    let file_s = utf8(&file);
    // IMAGE comes with TAG (a lone operand is TAG).
    let picks = |archive: &str, image: &str, want: &FsView| {
        let args = ["-i", archive, "-o", file_s, image, "dflt-in-names-picked:1"];
        let out = flatten(&cli, &args);
        check_ok(&out, &format!("docker flatten {}", args.join(" ")));
        let got = read_image(&file);
        assert_eq!(got.layers.len(), 1);
        let diffs = diff_fs(want, &got.fs(), &[]);
        assert!(
            diffs.is_empty(),
            "{image}: not that image:\n  {}",
            diffs.join("\n  ")
        );
        std::fs::remove_file(&file).expect("rm");
    };
    let refused = |archive: &str, image: Option<&str>, names: &[&str], what: &str| {
        let mut args = vec!["-i", archive, "-o", file_s];
        args.extend(image);
        args.push("dflt-in-names-never:1");
        let out = flatten(&cli, &args);
        assert_refused(&out, Some(2), names, what);
        assert!(
            names_in(outs.path()).is_empty(),
            "{what}: something was written"
        );
        // The same into the engine: TAG is not made.
        let tag = unique("in-names-never");
        let mut args = vec!["-i", archive];
        args.extend(image);
        args.push(tag.as_str());
        let out = flatten(&cli, &args);
        let _never = TestImage::track(&tag);
        assert_refused(&out, Some(2), names, &format!("{what}, into the engine"));
        assert!(!exists(&tag), "{what}: TAG was made");
    };

    refused(
        two_s,
        None,
        &[two_s, &a_repo, &b_repo],
        "two images, none named",
    );
    refused(
        two_s,
        Some("dflt-in-names-nowhere:1"),
        &[two_s, "dflt-in-names-nowhere"],
        "a name the archive lacks",
    );
    picks(two_s, &a_repo, &want_a);
    picks(two_s, &format!("docker.io/library/{b_name}"), &want_b);
    picks(two_s, &b.id, &want_b);
    // Into the engine: IMAGE and TAG.
    let tag = unique("in-names-flat");
    let out = flatten(&cli, &["-i", two_s, &a_name, &tag]);
    let flat = TestImage::track(&tag);
    check_ok(&out, "-i two.tar A TAG");
    let diffs = diff_fs(&want_a, &image_fs(&flat.reference), &[]);
    assert!(
        diffs.is_empty(),
        "A into the engine:\n  {}",
        diffs.join("\n  ")
    );
    assert_eq!(
        inspect(&tag)["Config"]["Env"],
        json!([format!("WHO={a_name}")])
    );

    // A skopeo layout with two bare ref names.
    let layout = dir.path().join("layout");
    let (first, second) = (unique("first"), unique("second"));
    for (spec, name, reference) in [(&a_spec, &a_name, &first), (&b_spec, &b_name, &second)] {
        let archive = dir.path().join(format!("{reference}.tar"));
        write_docker_archive(spec, name, &archive);
        skopeo(&[
            "copy",
            "--quiet",
            &format!("docker-archive:{}", utf8(&archive)),
            &format!("oci:{}:{reference}", utf8(&layout)),
        ]);
    }
    let index: Value = serde_json::from_slice(&bytes(&layout.join("index.json"))).expect("JSON");
    let first_digest = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == first.as_str())
        .unwrap_or_else(|| panic!("no {first} in {index}"))["digest"]
        .as_str()
        .expect("a digest")
        .to_owned();
    let layout_s = utf8(&layout);
    let third = unique("third");
    refused(
        layout_s,
        None,
        &[layout_s, &first, &second],
        "two refs, none named",
    );
    refused(
        layout_s,
        Some(&third),
        &[layout_s, &third],
        "a ref the layout lacks",
    );
    picks(layout_s, &second, &want_b);
    picks(layout_s, &first_digest, &want_a);
    // The image ID (the config's digest) and a prefix of it, whatever
    // layout `docker save` wrote.
    picks(two_s, &b_config[7..19], &want_b);
    picks(two_s, b_config, &want_b);
    drop((a, b));
}

/// Broken archives, each refused naming FILE, with nothing written, tagged
/// or left on the engine.
#[test]
fn a_broken_archive_fails_naming_it_and_leaves_nothing() {
    let cli = Cli::new();
    let marker = unique("in-broken-marker");
    let name = format!("{}:1", unique("in-broken"));
    let spec = ImageSpec::new(vec![
        vec![
            Entry::dir("x"),
            Entry::file("x/big", pseudo_random(300_000, 9)),
        ],
        vec![Entry::dir("x"), Entry::file("x/small", marker.as_str())],
    ])
    .with_config(json!({"Cmd": ["/x/small"], "Labels": {MARKER: marker}}));
    let (config, tars) = image_of(&spec, &name);
    let dir = scratch("in-broken");
    let at = |name: &str| dir.path().join(name);
    let mut cases: Vec<(&str, PathBuf, Option<i32>)> = Vec::new();

    // Cut in the middle of the big layer, manifest.json first (readable).
    let mut members = docker_archive_members(&config, &tars, &[&name]);
    members.rotate_right(2);
    let mut tar = Vec::new();
    {
        let mut builder = tar::Builder::new(&mut tar);
        for (n, d) in &members {
            archive_member(&mut builder, n, d);
        }
        builder.finish().expect("finish");
    }
    std::fs::write(at("cut-docker-archive.tar"), &tar[..tar.len() / 2]).expect("write");
    cases.push((
        "a cut docker-archive",
        at("cut-docker-archive.tar"),
        Some(1),
    ));
    // An OCI archive cut in half.
    let mut layout = Layout::new();
    let added = layout.add_image(&config, &tars, Layers::Gzip, containerd_names(&name));
    layout.write_tar(&at("whole.tar"));
    let whole = bytes(&at("whole.tar"));
    std::fs::write(at("cut-oci.tar"), &whole[..whole.len() / 2]).expect("write");
    cases.push(("a cut OCI archive", at("cut-oci.tar"), Some(1)));

    // One byte of a layer changed: the digest no longer matches.
    let mut plain = Layout::new();
    let blobs = plain.add_image(&config, &tars, Layers::Plain, containerd_names(&name));
    let edited: Vec<(String, Vec<u8>)> = plain
        .members()
        .into_iter()
        .map(|(n, mut d)| {
            if n == blobs.layer_paths[0] {
                let middle = d.len() / 2;
                d[middle] ^= 0x5a;
            }
            (n, d)
        })
        .collect();
    write_tar(&edited, &at("edited.tar"));
    cases.push((
        "an OCI archive with a changed byte",
        at("edited.tar"),
        Some(1),
    ));
    let edited_dir = at("edited-dir");
    plain.write_dir(&edited_dir);
    let blob = edited_dir.join(&blobs.layer_paths[0]);
    let mut data = bytes(&blob);
    let middle = data.len() / 2;
    data[middle] ^= 0x5a;
    std::fs::write(&blob, data).expect("write");
    cases.push(("an OCI layout with a changed byte", edited_dir, Some(1)));
    // A layer or the config missing.
    let no_layer = at("no-layer");
    plain.write_dir(&no_layer);
    std::fs::remove_file(no_layer.join(&blobs.layer_paths[1])).expect("rm a layer");
    cases.push(("an OCI layout without a layer", no_layer, Some(1)));
    let no_config = at("no-config");
    plain.write_dir(&no_config);
    std::fs::remove_file(no_config.join(&blobs.config_path)).expect("rm the config");
    cases.push(("an OCI layout without its config", no_config, Some(1)));
    let members: Vec<(String, Vec<u8>)> = docker_archive_members(&config, &tars, &[&name])
        .into_iter()
        .filter(|(n, _)| *n != format!("{}/layer.tar", sha256_hex(&tars[1])))
        .collect();
    write_tar(&members, &at("docker-no-layer.tar"));
    cases.push((
        "a docker-archive without a layer",
        at("docker-no-layer.tar"),
        Some(1),
    ));
    let members: Vec<(String, Vec<u8>)> = layout
        .members()
        .into_iter()
        .filter(|(n, _)| *n != added.config_path)
        .collect();
    write_tar(&members, &at("oci-no-config.tar"));
    cases.push((
        "an OCI archive without its config",
        at("oci-no-config.tar"),
        Some(1),
    ));

    // Not an archive at all.
    std::fs::write(at("random.tar"), pseudo_random(100_000, 11)).expect("write");
    cases.push(("random bytes", at("random.tar"), None));
    std::fs::write(at("empty.tar"), b"").expect("write");
    cases.push(("an empty file", at("empty.tar"), None));
    let not_layout = at("not-a-layout");
    std::fs::create_dir(&not_layout).expect("mkdir");
    std::fs::write(not_layout.join("notes.txt"), "not an image\n").expect("write");
    cases.push(("a directory that is no OCI layout", not_layout, None));
    cases.push(("a path that does not exist", at("missing.tar"), None));

    let outs = scratch("in-broken-out");
    let file = outs.path().join("flat.tar");
    for (what, path, code) in &cases {
        let input = utf8(path);
        let out = flatten(&cli, &["-i", input, "-o", utf8(&file)]);
        assert_refused(&out, *code, &[input], &format!("{what}, -o FILE"));
        assert!(
            names_in(outs.path()).is_empty(),
            "{what}: -o left {:?}",
            names_in(outs.path())
        );

        let tag = unique("in-broken-never");
        let out = flatten(&cli, &["-i", input, &tag]);
        let _never = TestImage::track(&tag);
        assert_refused(&out, *code, &[input], &format!("{what}, into the engine"));
        assert!(!exists(&tag), "{what}: TAG was made");
        assert_eq!(
            marked(&marker),
            Default::default(),
            "{what}: left images or containers"
        );
        assert!(
            text(&out.stderr)
                .lines()
                .any(|l| l.starts_with("docker flatten: ")),
            "{what}: {}",
            text(&out.stderr)
        );
    }
}

/// `-i` with `--verify-only` or `--cleanup`: a usage error, exit 2.
#[test]
fn input_with_verify_only_or_cleanup_is_refused() {
    let cli = Cli::new();
    let marker = unique("in-conflict-marker");
    let name = format!("{}:1", unique("in-conflict"));
    let dir = scratch("in-conflict");
    let archive = dir.path().join("image.tar");
    write_docker_archive(&small_spec(&name, &marker), &name, &archive);
    let archive = utf8(&archive);
    // -i on its own is understood: the refusals below are the conflicts'.
    let outs = scratch("in-conflict-out");
    let file = outs.path().join("flat.tar");
    flatten_ok(&cli, &["-i", archive, "-o", utf8(&file), &name]);
    assert_eq!(names_in(outs.path()), ["flat.tar"]);
    let tag = unique("in-conflict-never");
    for args in [
        vec!["--verify-only", "-i", archive, &name, &tag],
        vec!["-i", archive, "--verify-only", &tag],
        vec!["--cleanup", "-i", archive],
        vec!["-i", archive, "--cleanup", "--format", "json"],
    ] {
        let out = flatten(&cli, &args);
        let _never = TestImage::track(&tag);
        assert_refused(&out, Some(2), &[], &format!("{args:?}"));
        assert!(
            text(&out.stderr)
                .lines()
                .any(|l| l.starts_with("docker flatten: ")),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(!exists(&tag), "{args:?}: TAG was made");
        assert_eq!(
            marked(&marker),
            Default::default(),
            "{args:?}: left something"
        );
    }
}

/// The dry run's fixture: three layers whose waste is known (as in
/// tests/dry_run.rs), with the marker label.
fn wasteful_spec(marker: &str) -> ImageSpec {
    ImageSpec::new(vec![
        vec![
            Entry::dir("app"),
            Entry::file("app/big", vec![1u8; 300_000]),
            Entry::file("app/keep", vec![2u8; 100]),
            Entry::dir("cache"),
            Entry::file("cache/a", vec![3u8; 5000]),
        ],
        vec![
            Entry::dir("app"),
            Entry::whiteout("app/big"),
            Entry::file("app/keep", vec![4u8; 40]),
            Entry::file("app/marker", marker),
        ],
        vec![
            Entry::dir("cache"),
            Entry::opaque("cache"),
            Entry::file("cache/b", vec![5u8; 7]),
        ],
    ])
    .with_config(json!({"Labels": {MARKER: marker}}))
}

/// With `-o`, `--dry-run` and `--verify -o` nothing talks to an engine:
/// `DOCKER_HOST` points at no socket, and the runs succeed, the plugin
/// alone and through the docker CLI.
#[test]
fn output_dry_run_and_verify_need_no_engine() {
    let cli = Cli::new();
    let marker = unique("in-none-marker");
    let spec = wasteful_spec(&marker);
    let name = format!("{}:1", unique("in-none"));
    let (config, tars) = image_of(&spec, &name);
    let want = FsView::from_layer_tars(&tars);
    let config_json: Value = serde_json::from_slice(&config).expect("the config");
    let dir = scratch("in-none");
    let archive = dir.path().join("image.tar");
    write_docker_archive(&spec, &name, &archive);
    let archive_s = utf8(&archive);
    let outs = scratch("in-none-out");
    let nowhere = [("DOCKER_HOST", os("unix:///nonexistent/docker.sock"))];
    let through_cli = |args: &[&str]| -> Output {
        let mut all = vec!["flatten"];
        all.extend_from_slice(args);
        let out = cli.docker_env(&all, &nowhere);
        check_ok(
            &out,
            &format!("DOCKER_HOST=nowhere docker {}", all.join(" ")),
        );
        out
    };
    let json_of = |out: &Output| -> Value {
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", text(&out.stdout)))
    };

    // The plugin alone.
    let direct = outs.path().join("direct.tar");
    let mut cmd = plugin_command(&["flatten", "-i", archive_s, "-o", utf8(&direct)]);
    cmd.env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
    let out = run_with_timeout(cmd, PLUGIN_TIMEOUT);
    check_ok(
        &out,
        "DOCKER_HOST=nowhere docker-flatten flatten -i FILE -o OUT",
    );
    assert_flattened(&direct, &want, &config_json, "the plugin alone");

    // Through the CLI, with JSON; a lone operand is TAG, the name in OUT.
    let file = outs.path().join("cli.tar");
    let file_s = utf8(&file);
    let lone = format!("{}:lone", unique("in-none-tag"));
    let doc = json_of(&through_cli(&[
        "--format", "json", "-i", archive_s, "-o", file_s, &lone,
    ]));
    assert_eq!(doc.get("engine"), Some(&Value::Null), "{doc}");
    assert_eq!(doc["source"]["file"], archive_s, "{doc}");
    assert_eq!(doc["result"]["file"], file_s, "{doc}");
    assert_eq!(doc["result"]["reference"], lone.as_str(), "{doc}");
    assert_flattened(&file, &want, &config_json, "through the CLI");
    let (_, listed) = tar_members(&bytes(&file))
        .into_iter()
        .find(|(n, _)| n == "manifest.json")
        .expect("OUT has a manifest.json");
    let listed: Value = serde_json::from_slice(&listed).expect("manifest.json");
    assert_eq!(listed[0]["RepoTags"], json!([lone]), "{listed}");

    // --verify, into a file.
    let verified = outs.path().join("verified.tar");
    let doc = json_of(&through_cli(&[
        "--verify",
        "--format",
        "json",
        "-i",
        archive_s,
        "-o",
        utf8(&verified),
    ]));
    assert_eq!(doc.get("engine"), Some(&Value::Null), "{doc}");
    assert_eq!(doc["verify"]["differences"], json!([]), "{doc}");
    assert!(doc["verify"]["paths"].as_u64().unwrap_or(0) >= 5, "{doc}");
    assert_flattened(&verified, &want, &config_json, "--verify");

    // stdin, through a real pipe.
    let piped = outs.path().join("piped.tar");
    let mut cat = Command::new("cat");
    cat.arg(archive_s);
    let mut flatten = cli.command(&[
        "flatten",
        "--format",
        "json",
        "-i",
        "-",
        "-o",
        utf8(&piped),
        &lone,
    ]);
    flatten.env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
    let (_, out) = pipe(cat, flatten);
    check_ok(&out, "cat FILE | docker flatten -i - -o OUT");
    let doc = json_of(&out);
    assert_eq!(doc["source"]["file"], "-", "{doc}");
    assert_eq!(doc.get("engine"), Some(&Value::Null), "{doc}");
    assert_flattened(&piped, &want, &config_json, "stdin");
    assert_same_bytes(&file, &piped);
    assert_eq!(
        names_in(outs.path()),
        ["cli.tar", "direct.tar", "piped.tar", "verified.tar"],
        "only the files asked for"
    );

    // The dry run: the numbers of tests/dry_run.rs, from the archive.
    let doc = json_of(&through_cli(&[
        "--dry-run",
        "--format",
        "json",
        "-i",
        archive_s,
    ]));
    assert_eq!(doc["dry_run"], true, "{doc}");
    assert_eq!(doc.get("engine"), Some(&Value::Null), "{doc}");
    assert_eq!(doc["source"]["file"], archive_s, "{doc}");
    assert_eq!(doc["source"]["layers"], 3, "{doc}");
    let wasted = 300_000 + 100 + 5000;
    assert_eq!(doc["wasted_bytes"], wasted, "{doc}");
    let analysis = &doc["analysis"];
    assert_eq!(analysis["wasted_bytes"], wasted, "{doc}");
    let diff_ids: Vec<Value> = tars
        .iter()
        .map(|t| json!(format!("sha256:{}", sha256_hex(t))))
        .collect();
    let listed: Vec<Value> = analysis["layers"]
        .as_array()
        .expect("the layers")
        .iter()
        .map(|l| l["diff_id"].clone())
        .collect();
    assert_eq!(listed, diff_ids, "{doc}");
    assert_eq!(analysis["largest_wasted"][0]["path"], "/app/big", "{doc}");
    let out = through_cli(&["--dry-run", "-i", archive_s, &name]);
    assert!(
        text(&out.stdout).contains("/app/big"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        names_in(outs.path()).len(),
        4,
        "the dry run wrote something"
    );
    assert_eq!(
        marked(&marker),
        Default::default(),
        "something reached the engine"
    );
}
