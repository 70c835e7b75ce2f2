//! Proves the fixture library in `tests/support` against the real engine,
//! without the plugin: images built from specs load with the expected ID,
//! `docker save` gives back the view the spec implies, busybox images run,
//! and the guards remove what they made.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;
use support::*;

const Y2100: u64 = 4_102_444_800;
const TWO_POW_33: u64 = 8_589_934_592;

/// A VFS_CAP_REVISION_2 `security.capability` value granting
/// CAP_NET_BIND_SERVICE (permitted + effective), as setcap would write it.
fn cap_net_bind_service() -> Vec<u8> {
    let mut v = Vec::new();
    for word in [0x0200_0001u32, 1 << 10, 0, 0, 0] {
        v.extend_from_slice(&word.to_le_bytes());
    }
    v
}

fn long_dir() -> Vec<u8> {
    format!("long/{}", "d".repeat(120)).into_bytes()
}

fn long_file() -> Vec<u8> {
    [long_dir(), b"/".to_vec(), "f".repeat(150).into_bytes()].concat()
}

/// Three layers exercising every entry kind, every header edge the library
/// claims to handle, and every merge rule.
fn exotic_spec() -> ImageSpec {
    let base = vec![
        Entry::dir("etc"),
        Entry::file("etc/keep", "keep\n"),
        Entry::file("etc/gone", "gone\n"),
        Entry::dir("opq").mode(0o700).owner(1, 2),
        Entry::file("opq/lower", "lower\n"),
        Entry::dir("opq/sub"),
        Entry::file("opq/sub/deep", "deep\n"),
        Entry::dir("opq2"),
        Entry::file("opq2/lower", "lower\n"),
        Entry::dir("wh"),
        Entry::file("wh/a", "a\n"),
        Entry::dir("wh/dir"),
        Entry::file("wh/dir/x", "x\n"),
        Entry::dir("hl"),
        Entry::file("hl/orig", "shared\n")
            .mode(0o640)
            .owner(1000, 1000),
        Entry::hardlink("hl/link1", "hl/orig"),
        Entry::hardlink("hl/link2", "hl/orig"),
        Entry::file("hl/pair-a", "pair\n"),
        Entry::hardlink("hl/pair-b", "hl/pair-a"),
        Entry::dir("devs"),
        Entry::char_dev("devs/null", 1, 3),
        Entry::block_dev("devs/loop0", 7, 0),
        Entry::char_dev("devs/bigdev", 4095, 1_048_575),
        Entry::fifo("devs/fifo").mode(0o600),
        Entry::dir("modes"),
        Entry::file("modes/suid", "s\n").mode(0o4755),
        Entry::file("modes/sgid", "s\n").mode(0o2755),
        Entry::file("modes/all", "s\n").mode(0o7777),
        Entry::dir("modes/sticky").mode(0o1777),
        Entry::file("modes/none", "s\n").mode(0o000),
        Entry::dir("times"),
        Entry::file("times/epoch", "t\n").mtime(0),
        Entry::file("times/y2100", "t\n").mtime(Y2100),
        Entry::file("times/octal-max", "t\n").mtime(MAX_OCTAL_MTIME),
        Entry::file("times/2pow33", "t\n").mtime(TWO_POW_33),
        Entry::dir("long"),
        Entry::dir(long_dir()),
        Entry::file(long_file(), "long\n"),
        Entry::symlink("long/link", [b"/".to_vec(), long_file()].concat()),
        Entry::hardlink("long/hard", long_file()),
        Entry::dir("enc"),
        Entry::file(b"enc/caf\xe9", "latin-1\n"),
        Entry::dir(b"enc/\xff\xfe"),
        Entry::file(b"enc/\xff\xfe/inner", "inner\n"),
        Entry::symlink(b"enc/sym\x80", b"caf\xe9"),
        Entry::dir("xattr").xattr("user.dirattr", "d"),
        Entry::file("xattr/cap", "cap\n")
            .mode(0o755)
            .xattr("security.capability", cap_net_bind_service()),
        Entry::file("xattr/user", "user\n").xattr("user.foo", "bar"),
        Entry::file("xattr/trusted", "trusted\n").xattr("trusted.x", "y"),
        Entry::file("xattr/binary", "bin\n").xattr("user.bin", [0u8, 255, 10, 61]),
        Entry::dir("owners"),
        Entry::file("owners/nobody", "o\n").owner(65534, 65534),
        Entry::file("owners/huge", "o\n").owner(3_000_000, 4_000_000),
        Entry::dir("replace"),
        Entry::dir("replace/was-dir"),
        Entry::file("replace/was-dir/child", "c\n"),
        Entry::file("replace/was-file", "f\n"),
    ];
    let middle = vec![
        Entry::dir("etc"),
        Entry::dir("wh"),
        Entry::dir("hl"),
        Entry::dir("replace"),
        Entry::whiteout("etc/gone"),
        Entry::file("etc/new", "new\n"),
        Entry::dir("opq").mode(0o750),
        Entry::opaque("opq"),
        Entry::file("opq/upper", "upper\n"),
        Entry::dir("opq2"),
        // Marker after this layer's own content: it must survive.
        Entry::file("opq2/upper", "upper\n"),
        Entry::opaque("opq2"),
        Entry::whiteout("wh/dir"),
        Entry::file("hl/pair-a", "rewritten\n"),
        Entry::file("replace/was-dir", "now a file\n"),
        Entry::dir("replace/was-file"),
        Entry::file("replace/was-file/child", "c\n"),
    ];
    let top = vec![
        Entry::dir("etc").mode(0o750).mtime(42),
        Entry::symlink("etc/link", "keep"),
        Entry::dir("hl").mtime(Y2100),
        Entry::whiteout("hl/orig"),
        Entry::dir("wh"),
        Entry::dir("wh/dir"),
        Entry::file("wh/dir/y", "y\n"),
    ];
    ImageSpec::new(vec![base, middle, top]).with_config(json!({
        "Cmd": ["/bin/sh"],
        "Env": ["PATH=/bin", "FIXTURE=1"],
        "WorkingDir": "/etc",
        "Labels": { "org.example.fixture": "exotic" },
    }))
}

fn paths(view: &FsView) -> BTreeSet<String> {
    view.paths().map(|p| show(p)).collect()
}

/// The merge rules, checked on the spec alone: no engine needed.
#[test]
fn merged_view_follows_whiteout_opaque_and_replace_rules() {
    let view = FsView::from_spec(&exotic_spec());
    let all = paths(&view);
    for gone in [
        "etc/gone",
        "opq/lower",
        "opq/sub",
        "opq/sub/deep",
        "opq2/lower",
        "wh/dir/x",
        "hl/orig",
        "replace/was-dir/child",
    ] {
        assert!(!all.contains(gone), "{gone} should be hidden");
    }
    for kept in [
        "etc/keep",
        "etc/new",
        "etc/link",
        "opq",
        "opq/upper",
        "opq2/upper",
        "wh/a",
        "wh/dir",
        "wh/dir/y",
        "hl/link1",
        "hl/link2",
        "replace/was-file/child",
    ] {
        assert!(all.contains(kept), "{kept} should be visible");
    }
    assert!(
        !all.iter().any(|p| p.contains(".wh.")),
        "whiteouts leaked: {all:?}"
    );

    let etc = view.node("etc");
    assert_eq!((etc.mode, etc.mtime), (0o750, 42), "dir metadata replaced");
    let opq = view.node("opq");
    assert_eq!((opq.mode, opq.uid, opq.gid), (0o750, 0, 0));
    assert_eq!(view.node("replace/was-dir").kind, NodeKind::File);
    assert_eq!(view.node("replace/was-file").kind, NodeKind::Dir);

    let groups: BTreeSet<BTreeSet<String>> = view
        .hardlink_groups()
        .iter()
        .map(|g| g.iter().map(|p| show(p)).collect())
        .collect();
    let expected: BTreeSet<BTreeSet<String>> = [
        ["hl/link1", "hl/link2"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        ["long/hard".to_string(), show(&long_file())]
            .into_iter()
            .collect(),
    ]
    .into_iter()
    .collect();
    assert_eq!(groups, expected, "pair-a was rewritten, so pair-b is alone");
    let link1 = view.node("hl/link1");
    assert_eq!((link1.mode, link1.uid, link1.gid), (0o640, 1000, 1000));
    assert_eq!(
        link1.sha256.as_deref(),
        Some(sha256_hex(b"shared\n").as_str())
    );
}

/// Every header property the writer claims to encode is read back.
#[test]
fn layer_tar_encodes_every_property() {
    let view = FsView::from_spec(&exotic_spec());
    let check = |path: &[u8], f: &dyn Fn(&Node) -> bool, what: &str| {
        let node = view.node(path);
        assert!(f(node), "{}: {what}: {node:?}", show(path));
    };
    check(b"times/epoch", &|n| n.mtime == 0, "epoch mtime");
    check(b"times/y2100", &|n| n.mtime == Y2100 as i64, "2100 mtime");
    check(
        b"times/octal-max",
        &|n| n.mtime == MAX_OCTAL_MTIME as i64,
        "octal max",
    );
    check(b"times/2pow33", &|n| n.mtime == TWO_POW_33 as i64, "2^33");
    check(b"modes/suid", &|n| n.mode == 0o4755, "setuid");
    check(b"modes/sgid", &|n| n.mode == 0o2755, "setgid");
    check(b"modes/all", &|n| n.mode == 0o7777, "all bits");
    check(b"modes/sticky", &|n| n.mode == 0o1777, "sticky dir");
    check(b"modes/none", &|n| n.mode == 0, "no bits");
    check(b"devs/null", &|n| n.dev == Some((1, 3)), "char dev");
    check(
        b"devs/loop0",
        &|n| n.kind == NodeKind::BlockDev && n.dev == Some((7, 0)),
        "block dev",
    );
    check(
        b"devs/bigdev",
        &|n| n.dev == Some((4095, 1_048_575)),
        "big dev",
    );
    check(
        b"devs/fifo",
        &|n| n.kind == NodeKind::Fifo && n.mode == 0o600,
        "fifo",
    );
    check(&long_file(), &|n| n.size == 5, "long name");
    check(
        b"long/link",
        &|n| n.link.as_deref() == Some(&[b"/".to_vec(), long_file()].concat()[..]),
        "long symlink target",
    );
    check(
        b"enc/caf\xe9",
        &|n| n.kind == NodeKind::File,
        "latin-1 name",
    );
    check(
        b"enc/\xff\xfe/inner",
        &|n| n.kind == NodeKind::File,
        "non-UTF-8 dir",
    );
    check(
        b"enc/sym\x80",
        &|n| n.link.as_deref() == Some(&b"caf\xe9"[..]),
        "non-UTF-8 target",
    );
    check(
        b"xattr/cap",
        &|n| n.xattrs.get("security.capability") == Some(&cap_net_bind_service()),
        "capability",
    );
    check(
        b"xattr/binary",
        &|n| n.xattrs["user.bin"] == [0, 255, 10, 61],
        "binary xattr",
    );
    check(b"xattr", &|n| n.xattrs["user.dirattr"] == b"d", "dir xattr");
    check(
        b"owners/huge",
        &|n| (n.uid, n.gid) == (3_000_000, 4_000_000),
        "base-256 owner",
    );

    // The PAX records are the form the engine is known to read.
    let tar = layer_tar(&exotic_spec().layers[0]);
    let seen: BTreeMap<String, Vec<String>> = read_tar(&tar)
        .into_iter()
        .map(|e| {
            let keys = e.pax.iter().map(|(k, _)| show(k)).collect();
            (show(&e.path), keys)
        })
        .collect();
    assert_eq!(seen["times/2pow33"], ["mtime"]);
    assert!(seen["times/octal-max"].is_empty(), "fits the octal field");
    assert_eq!(seen[&show(&long_file())], ["path"]);
    assert_eq!(seen["enc/caf\\xe9"], ["path"]);
    assert_eq!(seen["xattr/cap"], ["SCHILY.xattr.security.capability"]);
}

#[test]
fn diff_reports_every_kind_of_difference_and_honours_ignore() {
    let spec = exotic_spec();
    let expected = FsView::from_spec(&spec);
    let mut changed = spec.clone();
    changed.layers.push(vec![
        Entry::dir("etc").mode(0o750).mtime(42),
        Entry::dir("modes"),
        Entry::dir("xattr").xattr("user.dirattr", "d"),
        Entry::dir("hl").mtime(Y2100),
        Entry::dir("wh"),
        Entry::dir("wh/dir"),
        Entry::file("etc/keep", "changed\n"),
        Entry::file("modes/suid", "s\n").mode(0o755),
        Entry::whiteout("etc/new"),
        Entry::file("extra", "x"),
        Entry::file("xattr/user", "user\n"),
        Entry::file("hl/link2", "split\n"),
        Entry::file("wh/dir/y", "y\n").owner(5, 5),
    ]);
    let actual = FsView::from_spec(&changed);
    let diffs = diff_fs(&expected, &actual, &[]);
    let text = diffs.join("\n");
    for needle in [
        "etc/keep: sha256",
        "modes/suid: mode expected 4755, got 0755",
        "missing: etc/new",
        "extra: extra",
        "xattr/user: xattr user.foo missing",
        "hardlink group missing: [hl/link1, hl/link2]",
        "wh/dir/y: uid expected 0, got 5",
    ] {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
    let ignored = diff_fs(
        &expected,
        &actual,
        &[
            "etc/keep",
            "modes/suid",
            "etc/new",
            "/extra",
            "xattr/user",
            "hl/**",
            "wh/**",
        ],
    );
    assert!(ignored.is_empty(), "ignore not honoured: {ignored:#?}");
    assert!(diff_fs(&expected, &expected.clone(), &[]).is_empty());
}

#[test]
fn unique_names_are_valid_and_distinct() {
    let names: Vec<String> = (0..4)
        .map(|_| std::thread::spawn(|| (0..50).map(|_| unique("Self Test!")).collect::<Vec<_>>()))
        .flat_map(|t| t.join().unwrap())
        .collect();
    let set: BTreeSet<&String> = names.iter().collect();
    assert_eq!(set.len(), names.len(), "duplicates");
    for n in &names {
        assert!(n.starts_with("dflt-self-test-"), "{n}");
        assert!(
            n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "{n}"
        );
    }
}

/// load -> save gives back exactly the view the spec implies, with the
/// config the spec asked for.
#[test]
fn load_and_save_round_trip_the_exotic_image() {
    let spec = exotic_spec();
    let reference = unique("roundtrip");
    let image = load_image(&spec, &reference);
    assert_eq!(image.reference, format!("{reference}:latest"));
    assert_eq!(image_layer_count(&image.reference), 3);

    let info = inspect(&image.reference);
    assert_eq!(info["Id"], json!(image.id));
    assert_eq!(info["Os"], json!("linux"));
    assert_eq!(info["Architecture"], json!(host_architecture()));
    assert_eq!(info["Config"]["Cmd"], json!(["/bin/sh"]));
    assert_eq!(info["Config"]["WorkingDir"], json!("/etc"));
    assert_eq!(
        info["Config"]["Labels"]["org.example.fixture"],
        json!("exotic")
    );

    let saved = save_image(&image.reference);
    assert_eq!(saved.layers.len(), 3);
    assert_eq!(
        saved.config["config"]["Env"],
        json!(["PATH=/bin", "FIXTURE=1"])
    );
    assert_eq!(saved.config["history"].as_array().unwrap().len(), 3);
    assert_same_fs(&FsView::from_spec(&spec), &saved.fs(), &[]);
}

#[test]
fn variant_is_recorded() {
    let mut spec = ImageSpec::new(vec![vec![Entry::file("f", "f")]]);
    spec.architecture = "arm".into();
    spec.variant = Some("v7".into());
    let image = load_image(&spec, &unique("variant"));
    let info = inspect(&image.reference);
    assert_eq!(info["Architecture"], json!("arm"));
    assert_eq!(info["Variant"], json!("v7"));
    assert_eq!(save_image(&image.reference).config["variant"], json!("v7"));
}

/// What a container really sees of the exotic image: everything the spec
/// says, except that `docker export` only carries `security.capability` of
/// all xattrs (the engine stores and mounts the others; export drops them).
#[test]
fn container_view_of_the_exotic_image() {
    let spec = exotic_spec();
    let image = load_image(&spec, &unique("export"));
    let expected = FsView::from_spec(&spec);
    let actual = container_fs(&image.reference);
    let diffs = diff_fs(&expected, &actual, CONTAINER_NOISE);
    eprintln!("container view vs spec:\n  {}", diffs.join("\n  "));
    let unexplained: Vec<&String> = diffs
        .iter()
        .filter(|d| !(d.contains(": xattr ") && d.ends_with(" missing")))
        .collect();
    assert!(unexplained.is_empty(), "{unexplained:#?}");
    assert!(
        !diffs.iter().any(|d| d.contains("security.capability")),
        "capabilities must survive export: {diffs:#?}"
    );
    // The engine's additions are what CONTAINER_NOISE claims, no more.
    let extra: Vec<String> = actual
        .paths()
        .filter(|p| !expected.0.contains_key(*p))
        .map(|p| show(p))
        .collect();
    for p in &extra {
        assert!(is_ignored(p.as_bytes(), CONTAINER_NOISE), "unlisted: {p}");
    }
}

/// A layer that omits a parent directory: the engine makes one (root,
/// 0755, load time) that masks the lower directory; the view says so.
#[test]
fn view_models_directories_a_layer_left_implicit() {
    let lower = layer_tar(&[
        Entry::dir("p").mode(0o700).owner(5, 5).xattr("user.k", "v"),
        Entry::file("p/old", "o"),
    ]);
    let mut upper = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(1);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(7);
    header.set_cksum();
    upper.append_data(&mut header, "p/new", &b"n"[..]).unwrap();
    let upper = upper.into_inner().unwrap();
    let view = FsView::from_layer_tars(&[lower, upper]);
    let p = view.node("p");
    assert_eq!(
        (p.mode, p.uid, p.gid, p.mtime),
        (0o755, 0, 0, IMPLICIT_DIR_MTIME)
    );
    assert!(p.xattrs.is_empty());
    assert!(view.contains("p/old") && view.contains("p/new"));
}

#[test]
#[should_panic(expected = "no entry for its directory a/b")]
fn layer_tar_insists_on_parent_directories() {
    layer_tar(&[Entry::dir("a"), Entry::file("a/b/c", "x")]);
}

#[test]
fn busybox_image_runs_and_sees_its_files() {
    let spec = ImageSpec::new(vec![
        busybox_layer(),
        vec![Entry::file("hello.txt", "hi there\n")
            .mode(0o4755)
            .owner(1000, 1000)],
    ])
    .with_config(json!({
        "Cmd": ["/bin/sh", "-c", "cat /hello.txt"],
        "Env": ["PATH=/bin", "FOO=bar"],
    }));
    let image = load_image(&spec, &unique("busybox"));

    let out = run_image(&image.reference, &[]);
    check_ok(&out, "default command");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi there\n");

    let out = run_image(&image.reference, &["stat", "-c", "%a %u %g", "/hello.txt"]);
    check_ok(&out, "stat");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "4755 1000 1000"
    );

    let out = run_image(&image.reference, &["printenv", "FOO"]);
    check_ok(&out, "printenv");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "bar\n");
    let out = run_image(&image.reference, &["printenv", "UNSET_VAR"]);
    assert_eq!(out.status.code(), Some(1), "printenv of an unset name");
    assert!(containers_of(&image.id).is_empty(), "--rm left containers");
}

#[test]
fn guards_remove_what_they_made() {
    let spec = ImageSpec::new(vec![vec![Entry::file("f", "guard")]]);
    let reference;
    let id;
    {
        let image = load_image(&spec, &unique("guard"));
        reference = image.reference.clone();
        id = image.id.clone();
        assert!(image_exists(&reference));

        // A second tag the test picked up (as from the plugin) is tracked too.
        let extra = format!("{}:extra", unique("guard-extra"));
        docker_ok(&["tag", &reference, &extra]);
        let tracked = TestImage::track(&extra);
        assert_eq!(tracked.id, id);
        drop(tracked);
        assert!(!image_exists(&extra), "tracked tag not removed");
        assert!(
            image_exists(&reference),
            "untagging must not delete a tagged image"
        );

        let before = engine_state();
        let ctr = TestContainer::create(&reference, &["/nothing"]);
        let ctr_id = ctr.id.clone();
        let appeared = engine_state().appeared_since(&before);
        assert!(appeared.containers.contains(&ctr_id), "{appeared:?}");
        assert_eq!(containers_of(&id), BTreeSet::from([ctr_id.clone()]));
        drop(ctr);
        assert!(containers_of(&id).is_empty(), "container guard left it");
        assert!(!engine_state().containers.contains(&ctr_id));
    }
    assert!(!image_exists(&reference), "tag survived the guard");
    assert!(!image_exists(&id), "image survived the guard");
}

#[test]
fn container_fs_leaves_no_container() {
    let spec = ImageSpec::new(vec![vec![Entry::file("f", "x")]]);
    let image = load_image(&spec, &unique("export-clean"));
    let view = container_fs(&image.reference);
    assert!(view.contains("f"));
    assert!(containers_of(&image.id).is_empty());
}

#[test]
fn cli_installs_the_plugin_in_a_private_config() {
    let cli = Cli::new();
    let link = cli.config_dir().join("cli-plugins/docker-flatten");
    assert_eq!(std::fs::read_link(&link).unwrap(), plugin_path());
    let out = cli.docker(&["version", "--format", "{{.Server.Version}}"]);
    check_ok(&out, "docker version with private DOCKER_CONFIG");
    assert!(!String::from_utf8_lossy(&out.stdout).trim().is_empty());
    let dir = cli.config_dir().to_path_buf();
    drop(cli);
    assert!(!dir.exists(), "temp DOCKER_CONFIG not removed");
}

/// Without an engine the helpers fail the test with a clear message rather
/// than skipping it: rerun one engine test of this binary against a socket
/// that does not exist.
#[test]
fn helpers_fail_loudly_without_an_engine() {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "guards_remove_what_they_made", "--nocapture"])
        .env("DOCKER_HOST", "unix:///nonexistent/dflt-no-engine.sock")
        .env_remove("DOCKER_CONTEXT");
    let out = run_with_timeout(cmd, std::time::Duration::from_secs(120));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "passed without an engine:\n{text}");
    assert!(
        text.contains("these tests need a running Docker engine"),
        "unclear failure:\n{text}"
    );
}

/// A saved archive as the containerd image store writes it: an OCI layout
/// whose layer blobs are gzip-compressed, plus a `manifest.json` pointing
/// into `blobs/`. `manifest_json: false` leaves only the OCI layout, with
/// the manifest listed twice in index.json as for an image with two names.
fn oci_archive(layers: &[Vec<u8>], diff_ids: &[Vec<u8>], manifest_json: bool) -> Vec<u8> {
    use std::io::Write;
    let gz = |data: &[u8]| {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    };
    let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add_blob = |data: Vec<u8>| {
        let digest = format!("sha256:{}", sha256_hex(&data));
        let size = data.len();
        blobs.push((format!("blobs/sha256/{}", sha256_hex(&data)), data));
        (digest, size)
    };
    let layer_descs: Vec<serde_json::Value> = layers
        .iter()
        .map(|l| {
            let (digest, size) = add_blob(gz(l));
            json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": digest,
                "size": size,
            })
        })
        .collect();
    let diff_ids: Vec<String> = diff_ids
        .iter()
        .map(|t| format!("sha256:{}", sha256_hex(t)))
        .collect();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let (config_digest, config_size) = add_blob(config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": layer_descs,
    }))
    .unwrap();
    let (manifest_digest, manifest_size) = add_blob(manifest);
    let desc = json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": manifest_digest,
        "size": manifest_size,
    });
    let mut files = blobs;
    files.push((
        "index.json".into(),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [desc, desc]})).unwrap(),
    ));
    files.push((
        "oci-layout".into(),
        br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
    ));
    if manifest_json {
        let layer_paths: Vec<String> = layer_descs
            .iter()
            .map(|d| format!("blobs/sha256/{}", &d["digest"].as_str().unwrap()[7..]))
            .collect();
        files.push((
            "manifest.json".into(),
            serde_json::to_vec(&json!([{
                "Config": format!("blobs/sha256/{}", &config_digest[7..]),
                "RepoTags": ["c8d-shaped:latest"],
                "Layers": layer_paths,
            }]))
            .unwrap(),
        ));
    }
    let mut outer = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o444);
        h.set_size(data.len() as u64);
        outer.append_data(&mut h, name, &data[..]).unwrap();
    }
    outer.into_inner().unwrap()
}

#[test]
fn saves_with_gzip_layers_in_the_containerd_shape_are_read() {
    let spec = exotic_spec();
    let tars: Vec<Vec<u8>> = spec.layers.iter().map(|l| layer_tar(l)).collect();
    for manifest_json in [true, false] {
        let saved = parse_saved_archive(&oci_archive(&tars, &tars, manifest_json));
        assert_eq!(saved.layers, tars, "manifest.json: {manifest_json}");
        assert_eq!(saved.gzipped, vec![true; 3]);
        assert_same_fs(&FsView::from_spec(&spec), &saved.fs(), &[]);
    }
}

#[test]
#[should_panic(expected = "does not match its diff_id once uncompressed")]
fn gzip_layers_are_checked_against_their_diff_ids() {
    let a = layer_tar(&[Entry::file("a", "a")]);
    let b = layer_tar(&[Entry::file("b", "b")]);
    parse_saved_archive(&oci_archive(&[a], &[b], true));
}

#[test]
fn zstd_layers_are_decompressed() {
    let tar = layer_tar(&[Entry::file("z", "zstd layer")]);
    let packed = zstd::stream::encode_all(&tar[..], 1).unwrap();
    assert_eq!(decompress_layer(packed, "blobs/sha256/x"), tar);
}

#[test]
#[should_panic(expected = "bad zstd")]
fn corrupt_zstd_layers_are_refused_clearly() {
    decompress_layer(vec![0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0], "blobs/sha256/x");
}

// Unix sockets: the proxy forwards to none on Windows.
#[cfg(unix)]
#[test]
fn proxy_upstream_follows_docker_host() {
    use support::proxy::Upstream;
    let unix = |p: &str| Upstream::Unix(p.to_string());
    assert_eq!(
        Upstream::from_docker_host(None),
        unix("/var/run/docker.sock")
    );
    assert_eq!(
        Upstream::from_docker_host(Some("")),
        unix("/var/run/docker.sock")
    );
    assert_eq!(
        Upstream::from_docker_host(Some("unix:///run/dflt-c8d/docker.sock")),
        unix("/run/dflt-c8d/docker.sock")
    );
    assert_eq!(
        Upstream::from_docker_host(Some("tcp://127.0.0.1:2375")),
        Upstream::Tcp("127.0.0.1:2375".into())
    );
    let ssh = std::panic::catch_unwind(|| Upstream::from_docker_host(Some("ssh://u@h")));
    assert!(ssh.is_err(), "an ssh:// engine cannot be proxied");
    assert_eq!(
        Upstream::from_env(),
        Upstream::from_docker_host(Some(&docker_host()))
    );
}

/// The proxy reaches the very engine the other helpers use (so fault tests
/// run against `DOCKER_HOST`'s engine too), and its faults fire.
#[test]
fn proxy_forwards_to_the_engine_the_helpers_use() {
    let direct = docker_ok(&["info", "--format", "{{.ID}}"]);
    let proxy = support::proxy::Proxy::start(None);
    let via = docker_ok(&["-H", &proxy.host(), "info", "--format", "{{.ID}}"]);
    assert_eq!(
        via.trim(),
        direct.trim(),
        "the proxy reached another engine"
    );
    assert_eq!(proxy.fired(), 0);

    let faulty = support::proxy::Proxy::start(Some(support::proxy::Fault::Respond {
        // Every connection's first request: the proxy looks at no other,
        // and this answer closes the connection, so every request fails.
        matches: " HTTP/1.1",
        status: 500,
    }));
    // `docker info` exits 0 on server errors; `docker version` does not.
    let out = docker(&["-H", &faulty.host(), "version"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the fault did not fail docker version"
    );
    assert!(err.contains("fault injected by the test proxy"), "{err}");
    assert!(faulty.fired() >= 1);
}

/// The image ID is the config digest on a graphdriver engine and not on
/// the containerd store; either way `docker save` gives back the config
/// that was loaded, byte for byte.
#[test]
fn image_ids_follow_the_image_store() {
    let spec = ImageSpec::new(vec![vec![Entry::file("id", "id\n")]]);
    let reference = unique("ids");
    let image = load_image(&spec, &reference);
    let config_digest = spec.config_digest(&reference);
    let saved = save_image(&image.reference);
    assert_eq!(saved.config_digest, config_digest);
    match image_store() {
        ImageStore::GraphDriver => assert_eq!(image.id, config_digest),
        ImageStore::Containerd => assert_ne!(image.id, config_digest),
    }
    assert!(image_exists(&image.id));
}

/// An image made by `docker import`, as the plugin makes its output: the
/// containerd store keeps (and saves) its layer gzip-compressed, which
/// `docker save` parsing undoes; the layer comes back byte for byte.
#[test]
fn imported_images_save_back_their_layer() {
    let layer = vec![
        Entry::dir("srv").mode(0o750).owner(7, 8),
        Entry::file("srv/data", vec![42u8; 100_000]).mtime(0),
        Entry::symlink("srv/link", "data"),
    ];
    let image = import_image(&layer, &unique("imported"));
    assert_eq!(image_layer_count(&image.reference), 1);
    let saved = save_image(&image.reference);
    assert_eq!(saved.layers, [layer_tar(&layer)]);
    let gzipped = image_store() == ImageStore::Containerd;
    assert_eq!(saved.gzipped, [gzipped], "{:?}", image_store());
    assert_same_fs(
        &FsView::from_layer_tars(&[layer_tar(&layer)]),
        &saved.fs(),
        &[],
    );
}

/// A tag moved onto another image (as an in-place flatten does) leaves the
/// old image dangling: it is listed so, saves by ID, and its guard still
/// removes it and nothing else.
#[test]
fn a_moved_tag_leaves_a_dangling_image_the_guard_removes() {
    let old_spec = ImageSpec::new(vec![vec![Entry::file("which", "old\n")]]);
    let new_spec = ImageSpec::new(vec![vec![Entry::file("which", "new\n")]]);
    let old = load_image(&old_spec, &unique("moved-old"));
    let (old_id, new_id);
    {
        let new = load_image(&new_spec, &unique("moved-new"));
        new_id = new.id.clone();
        old_id = old.id.clone();
        let before = engine_state();
        docker_ok(&["tag", &new.reference, &old.reference]);
        let appeared = engine_state().appeared_since(&before);
        assert!(appeared.dangling_images.contains(&old_id), "{appeared:?}");
        assert_eq!(inspect(&old_id)["RepoTags"], json!([]));
        let saved = save_image(&old_id);
        assert_eq!(saved.config_digest, old_spec.config_digest(&old.reference));
        assert_same_fs(&FsView::from_spec(&old_spec), &saved.fs(), &[]);

        // Dropping the old guard removes the moved tag and the dangling
        // image, and leaves the new image under its own tag.
        drop(old);
        assert!(!image_exists(&old_id), "dangling image survived its guard");
        assert!(!engine_state().dangling_images.contains(&old_id));
        assert!(image_exists(&new.reference));
        assert_eq!(inspect(&new.reference)["Id"], json!(new_id));
    }
    assert!(!image_exists(&new_id), "image survived the guard");
}

/// An image guard dropped while a container of the image still exists (on
/// the containerd store that leaves a dangling image behind the tag) and the
/// container guard after it: nothing of either remains.
#[test]
fn guards_clean_up_when_a_container_outlives_the_image_guard() {
    let spec = ImageSpec::new(vec![vec![Entry::file("f", "outlived")]]);
    let image = load_image(&spec, &unique("outlived"));
    let id = image.id.clone();
    let ctr = TestContainer::create(&image.reference, &["/nothing"]);
    let ctr_id = ctr.id.clone();
    drop(image);
    drop(ctr);
    assert!(!image_exists(&id), "image survived its guard");
    // Only what this test made is looked at: other tests share the engine.
    let state = engine_state();
    assert!(!state.containers.contains(&ctr_id), "container left behind");
    assert!(
        !state.dangling_images.contains(&id),
        "dangling image left behind"
    );
}

#[test]
fn tracking_a_missing_image_defers_the_failure_to_the_test() {
    let reference = unique("never-made");
    let tracked = TestImage::track(&reference);
    assert_eq!(tracked.id, "");
    drop(tracked);
}

/// `FsView::from_dir` reads back what an extractor wrote: GNU tar of one
/// layer, as root, gives the same view as the tar itself (devices and
/// special bits included), hardlinks as one inode. Unix only, as `from_dir`.
#[cfg(unix)]
#[test]
fn a_directory_tree_reads_back_as_its_tar() {
    let layer = vec![
        Entry::dir("d").mode(0o2750).owner(7, 8),
        Entry::file("d/f", "content")
            .mode(0o4755)
            .mtime(1_000_000_000),
        Entry::hardlink("d/g", "d/f"),
        Entry::symlink("d/s", "../d/f"),
        Entry::char_dev("d/null", 1, 3),
        Entry::fifo("d/p"),
        Entry::dir("empty").mode(0o700),
    ];
    let tar = layer_tar(&layer);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = std::process::Command::new("tar")
        .args(["-x", "--numeric-owner", "-f", "-", "-C"])
        .arg(dir.path())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("run GNU tar");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &tar).unwrap();
    assert!(child.wait().unwrap().success());
    let read = FsView::from_dir(dir.path());
    assert_same_fs(&FsView::from_tar(&tar), &read, &[]);
    assert_eq!(read.hardlink_groups().len(), 1);
    assert_eq!(read.node("d/null").dev, Some((1, 3)));
}
