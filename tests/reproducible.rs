//! Reproducible results (docs/reproducible.md): the same IMAGE and options
//! give the same image, run after run, through the real docker CLI on the
//! engine under test; `--exact` gives the same archive on all three
//! engines; the compressed layer is the same on one core as on two; and
//! `SOURCE_DATE_EPOCH` dates the result and clamps newer mtimes.

mod support;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use support::*;

/// The engines of the test machine (tests/engines.rs and
/// `.ci/containerd-engine`): Engine 20.10 (graphdriver) on the default
/// socket, 26.1 and 28.5 (containerd store). `DFLT_ENGINES` (hosts,
/// space-separated) names others.
const ENGINES: [&str; 3] = [
    "unix:///var/run/docker.sock",
    "unix:///run/dflt-c8d/docker.sock",
    "unix:///run/dflt-c8d-sid/docker.sock",
];

/// Three layers whose files have mtimes on both sides of [`EPOCH`], one
/// overwritten, one deleted; the config has a `created` of its own.
fn spec(marker: &str) -> ImageSpec {
    ImageSpec::new(vec![
        vec![
            Entry::dir("app").mtime(OLD),
            Entry::file("app/old", pseudo_random(200_000, 7)).mtime(OLD),
            Entry::file("app/gone", "x").mtime(OLD),
            // Its own files: no two tests' images share a layer.
            Entry::file("marker", marker).mtime(OLD),
        ],
        vec![
            Entry::dir("app").mtime(OLD),
            Entry::file("app/new", pseudo_random(50_000, 8)).mtime(NEW),
        ],
        vec![
            Entry::dir("app").mtime(OLD),
            Entry::file("app/old", "overwritten").mtime(OLD),
            Entry::whiteout("app/gone"),
        ],
    ])
    .with_config(serde_json::json!({"Env": ["A=1"], "Cmd": ["/app/old"]}))
}

const OLD: u64 = 1_000_000_000;
const NEW: u64 = 1_900_000_000;
/// `SOURCE_DATE_EPOCH` for the tests: between the two, and before the
/// fixture's `created` (2024-01-01).
const EPOCH: u64 = 1_500_000_000;
const EPOCH_TIME: &str = "2017-07-14T02:40:00Z";

/// `docker flatten --format json ARGS… IMAGE TAG` with `env`; the document.
fn flatten_json(cli: &Cli, args: &[&str], image: &str, tag: &str, env: &[(&str, &OsStr)]) -> Value {
    let mut all = vec!["flatten", "--format", "json"];
    all.extend_from_slice(args);
    all.extend_from_slice(&[image, tag]);
    let out = cli.docker_env(&all, env);
    check_ok(&out, &format!("docker {}", all.join(" ")));
    serde_json::from_slice(&out.stdout).expect("a JSON document")
}

/// Flattens `image` twice as `args` say, to two tags; both results' IDs
/// and the documents' digests, which must be the same.
fn twice(cli: &Cli, args: &[&str], image: &str, env: &[(&str, &OsStr)]) -> (TestImage, Value) {
    let mut ids = Vec::new();
    let mut docs = Vec::new();
    let mut guards = Vec::new();
    for _ in 0..2 {
        let tag = unique("repro-flat");
        let doc = flatten_json(cli, args, image, &tag, env);
        let flat = TestImage::track(&tag);
        assert_eq!(doc["result"]["id"], flat.id.as_str(), "{doc}");
        ids.push(flat.id.clone());
        docs.push(doc);
        guards.push(flat);
    }
    assert_eq!(ids[0], ids[1], "{args:?}: two runs, two images");
    let digests = |doc: &Value| -> Vec<Value> {
        let platforms = doc["platforms"].as_array().expect("platforms");
        assert!(!platforms.is_empty(), "{doc}");
        platforms
            .iter()
            .map(|p| {
                let r = &p["result"];
                for key in ["config", "layer_diff_id", "layer_digest"] {
                    assert!(
                        r[key].as_str().is_some_and(|d| d.starts_with("sha256:")),
                        "{key}: {doc}"
                    );
                }
                serde_json::json!([r["config"], r["layer_diff_id"], r["layer_digest"]])
            })
            .collect()
    };
    assert_eq!(digests(&docs[0]), digests(&docs[1]));
    if !containerd_store() {
        // A graphdriver's image ID is its config's digest.
        assert_eq!(docs[0]["platforms"][0]["result"]["config"], ids[0].as_str());
    }
    let second = guards.pop().expect("two");
    (second, docs.remove(0))
}

#[test]
fn the_default_mode_twice_gives_the_same_image_dated_as_image() {
    let cli = Cli::new();
    let image = load_image(&spec(&unique("m")), &unique("repro-src"));
    let (flat, _) = twice(&cli, &[], &image.reference, &[]);
    // IMAGE's own `created`, not the run's, on the image and its history.
    let info = inspect(&flat.reference);
    assert!(
        info["Created"]
            .as_str()
            .unwrap()
            .starts_with("2024-01-01T00:00:00"),
        "{info}"
    );
    let history = docker_ok(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.CreatedAt}}|{{.CreatedBy}}",
        &flat.reference,
    ]);
    let top = history.lines().next().expect("a history entry");
    assert!(top.starts_with("2024-01-01T00:00:00"), "{history}");
    assert!(
        top.ends_with(&format!("docker flatten {}", image.reference)),
        "{history}"
    );
}

#[test]
fn exact_and_keep_layers_twice_give_the_same_image() {
    let cli = Cli::new();
    let image = load_image(&spec(&unique("m")), &unique("repro-src"));
    for args in [&["--exact"][..], &["--keep-layers", "1"]] {
        let (flat, _) = twice(&cli, args, &image.reference, &[]);
        let expected = if args[0] == "--exact" { 1 } else { 2 };
        assert_eq!(image_layer_count(&flat.reference), expected, "{args:?}");
    }
}

#[test]
fn a_multi_platform_image_twice_gives_the_same_index() {
    let cli = Cli::new();
    let (arch, variant) = foreign_architecture();
    let marker = unique("m");
    let foreign = ImageSpec {
        architecture: arch.into(),
        variant: variant.map(Into::into),
        ..spec(&format!("{marker}-foreign"))
    };
    let (image, _) = load_multi_platform(&[spec(&marker), foreign], &unique("repro-multi"));
    let (_, doc) = twice(&cli, &[], &image.reference, &[]);
    let platforms = doc["platforms"].as_array().unwrap().len();
    assert_eq!(platforms, if containerd_store() { 2 } else { 1 }, "{doc}");
    let (_, doc) = twice(&cli, &["--exact"], &image.reference, &[]);
    assert_eq!(doc["platforms"].as_array().unwrap().len(), platforms);
}

#[test]
fn an_archive_twice_is_the_same_bytes() {
    let cli = Cli::new();
    let image = load_image(&spec(&unique("m")), &unique("repro-src"));
    let dir = tempfile::tempdir().expect("a temp dir");
    let tag = unique("repro-file");
    for args in [&[][..], &["--exact"]] {
        let files: Vec<Vec<u8>> = (0..2)
            .map(|i| {
                let path = dir.path().join(format!("{i}.tar"));
                let mut all = vec!["flatten", "-o", path.to_str().unwrap()];
                all.extend_from_slice(args);
                all.extend_from_slice(&[&image.reference, &tag]);
                check_ok(&cli.docker(&all), &all.join(" "));
                std::fs::read(&path).expect("the archive")
            })
            .collect();
        assert!(files[0] == files[1], "{args:?}: two runs, two archives");
    }
}

/// An image of the same name on another engine; removed from there on drop.
struct Elsewhere {
    host: String,
    reference: String,
}

impl Drop for Elsewhere {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["-H", &self.host, "rmi", "-f", &self.reference])
            .output();
    }
}

fn engines() -> Vec<String> {
    match std::env::var("DFLT_ENGINES") {
        Ok(list) if !list.trim().is_empty() => list.split_whitespace().map(str::to_owned).collect(),
        _ => ENGINES.iter().map(|h| (*h).to_owned()).collect(),
    }
}

#[test]
fn exact_gives_one_archive_on_every_engine() {
    let cli = Cli::new();
    let reference = with_tag(&unique("repro-everywhere"));
    let (_dir, archive) = archive_path();
    // One archive, loaded into every engine: the same IMAGE everywhere.
    write_docker_archive(&spec(&unique("m")), &reference, &archive);
    let out_dir = tempfile::tempdir().expect("a temp dir");
    let mut results = Vec::new();
    let mut guards = Vec::new();
    for (i, host) in engines().iter().enumerate() {
        guards.push(Elsewhere {
            host: host.clone(),
            reference: reference.clone(),
        });
        let load = ["-H", host, "load", "-q", "-i", archive.to_str().unwrap()];
        check_ok(&cli.docker(&load), &format!("load into {host}"));
        let path = out_dir.path().join(format!("{i}.tar"));
        let flatten = [
            "-H",
            host,
            "flatten",
            "--exact",
            "-o",
            path.to_str().unwrap(),
            &reference,
            "repro:flat",
        ];
        check_ok(&cli.docker(&flatten), &format!("flatten --exact on {host}"));
        results.push((host.clone(), std::fs::read(&path).expect("the archive")));
    }
    let (first_host, first) = &results[0];
    for (host, bytes) in &results[1..] {
        assert!(
            bytes == first,
            "{host} and {first_host} wrote different archives"
        );
    }
}

/// `docker ARGS…` of `cli`, on the cores `cpus` only (`taskset -c`).
fn on_cores(cli: &Cli, cpus: &str, args: &[&str]) -> Output {
    let docker = cli.command(args);
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", cpus])
        .arg(docker.get_program())
        .args(docker.get_args());
    for (key, value) in docker.get_envs() {
        match value {
            Some(value) => cmd.env(key, value),
            None => cmd.env_remove(key),
        };
    }
    run_with_timeout(cmd, std::time::Duration::from_secs(300))
}

#[test]
fn one_core_or_two_give_the_same_layer_gzip_and_zstd() {
    let cli = Cli::new();
    // More than a few compression blocks, so that two cores run at once.
    let mut spec = spec(&unique("m"));
    spec.layers[1].push(Entry::file("app/big", pseudo_random(6 << 20, 9)));
    let image = load_image(&spec, &unique("repro-cores"));
    let dir = tempfile::tempdir().expect("a temp dir");
    for compression in ["gzip", "zstd"] {
        let files: Vec<Vec<u8>> = ["0", "0,1"]
            .iter()
            .map(|cpus| {
                let path = dir.path().join(format!("{compression}-{cpus}.tar"));
                let args = [
                    "flatten",
                    "--compression",
                    compression,
                    "-o",
                    path.to_str().unwrap(),
                    &image.reference,
                    "cores:flat",
                ];
                check_ok(&on_cores(&cli, cpus, &args), &format!("taskset -c {cpus}"));
                std::fs::read(&path).expect("the archive")
            })
            .collect();
        assert!(
            files[0] == files[1],
            "{compression}: one core and two differ"
        );
    }
}

/// The one layer of an uncompressed `-o` archive: each entry's mtime.
fn layer_mtimes(archive: &Path) -> BTreeMap<String, u64> {
    let bytes = std::fs::read(archive).expect("the archive");
    let mut members = BTreeMap::new();
    for entry in tar::Archive::new(&bytes[..]).entries().expect("a tar") {
        let mut entry = entry.expect("an entry");
        let name = entry.path().unwrap().display().to_string();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("read a member");
        members.insert(name, data);
    }
    let index: Value = serde_json::from_slice(&members["index.json"]).unwrap();
    let blob =
        |digest: &Value| &members[&format!("blobs/sha256/{}", &digest.as_str().unwrap()[7..])];
    let manifest: Value = serde_json::from_slice(blob(&index["manifests"][0]["digest"])).unwrap();
    let layer = blob(&manifest["layers"][0]["digest"]);
    let mut mtimes = BTreeMap::new();
    for entry in tar::Archive::new(&layer[..])
        .entries()
        .expect("a layer tar")
    {
        let entry = entry.expect("a layer entry");
        let name = entry.path().unwrap().display().to_string();
        mtimes.insert(name, entry.header().mtime().unwrap());
    }
    mtimes
}

#[test]
fn source_date_epoch_dates_the_image_and_clamps_newer_mtimes() {
    let cli = Cli::new();
    let image = load_image(&spec(&unique("m")), &unique("repro-sde"));
    let epoch = EPOCH.to_string();
    let env = [("SOURCE_DATE_EPOCH", OsStr::new(&epoch))];
    let (dated, _) = twice(&cli, &[], &image.reference, &env);
    let info = inspect(&dated.reference);
    assert_eq!(info["Created"], EPOCH_TIME, "{info}");
    let history = docker_ok(&["history", "--format", "{{.CreatedAt}}", &dated.reference]);
    assert_eq!(history.lines().next(), Some(EPOCH_TIME), "{history}");
    // Without it, IMAGE's time: another image.
    let tag = unique("repro-undated");
    flatten_json(&cli, &[], &image.reference, &tag, &[]);
    let undated = TestImage::track(&tag);
    assert_ne!(undated.id, dated.id);

    let dir = tempfile::tempdir().expect("a temp dir");
    for args in [&[][..], &["--exact"]] {
        let path = dir.path().join("layer.tar");
        // --verify holds the result to IMAGE's layers, mtimes clamped.
        let mut all = vec![
            "flatten",
            "--verify",
            "--compression",
            "none",
            "-o",
            path.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        all.extend_from_slice(&[&image.reference, "sde:flat"]);
        check_ok(&cli.docker_env(&all, &env), &all.join(" "));
        let mtimes = layer_mtimes(&path);
        let at = |name: &str| {
            mtimes
                .iter()
                .find(|(n, _)| n.trim_start_matches("./").trim_end_matches('/') == name)
                .map(|(_, m)| *m)
                .unwrap_or_else(|| panic!("{args:?}: no {name} in {mtimes:?}"))
        };
        assert_eq!(at("app/old"), OLD, "{args:?}: older stays");
        assert_eq!(at("marker"), OLD, "{args:?}");
        assert_eq!(at("app/new"), EPOCH, "{args:?}: newer is clamped");
        assert!(mtimes.values().all(|&m| m <= EPOCH), "{args:?}: {mtimes:?}");
    }
}

#[test]
fn a_source_date_epoch_that_is_no_number_is_refused() {
    let cli = Cli::new();
    let image = load_image(&spec(&unique("m")), &unique("repro-bad-sde"));
    let tag = unique("repro-bad-sde-flat");
    let args = ["flatten", image.reference.as_str(), tag.as_str()];
    let out = cli.docker_env(&args, &[("SOURCE_DATE_EPOCH", OsStr::new("soon"))]);
    let stderr = text(&out.stderr);
    // Refused before any work, as a wrong argument is.
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(r#"SOURCE_DATE_EPOCH is "soon""#),
        "{stderr}"
    );
    assert!(!image_exists(&tag));
}
