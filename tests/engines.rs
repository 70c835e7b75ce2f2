//! What the engines do that the plugin is built on, asserted on the engine
//! under test, per image store and API version. The suite runs on Engine
//! 20.10 (graphdriver), 26.1 and 28.5 (containerd store); where they differ,
//! each engine's own behaviour is asserted, so an engine that changes one of
//! these facts fails here, by name, rather than somewhere in a flatten.

mod support;

use std::io::Read;

use support::*;

/// Three layers of known content: two files, one overwritten later.
fn fixture(name: &str) -> (TestImage, u64) {
    let a = pseudo_random(70_000, 1);
    let b = pseudo_random(30_000, 2);
    let layers = vec![
        vec![Entry::dir("d"), Entry::file("d/a", &a)],
        vec![Entry::dir("d"), Entry::file("d/b", &b)],
        vec![Entry::dir("d"), Entry::file("d/a", "short")],
    ];
    let content = (a.len() + b.len() + "short".len()) as u64;
    (load_image(&ImageSpec::new(layers), &unique(name)), content)
}

/// `(major, minor)` of the engine's API version.
fn engine_api() -> (u32, u32) {
    let v = docker_ok(&["version", "--format", "{{.Server.APIVersion}}"]);
    let (major, minor) = v.trim().split_once('.').expect("an API version");
    (
        major.parse().expect("API major"),
        minor.parse().expect("API minor"),
    )
}

/// One entry of a save stream.
struct Saved {
    name: String,
    size: u64,
    /// Its first 512 bytes.
    head: Vec<u8>,
}

/// Every entry of `docker save IMAGE`, in stream order.
fn save_entries(reference: &str) -> Vec<Saved> {
    let out = docker(&["save", reference]);
    check_ok(&out, &format!("docker save {reference}"));
    let mut archive = tar::Archive::new(&out.stdout[..]);
    let mut entries = Vec::new();
    for entry in archive.entries().expect("a tar") {
        let mut entry = entry.expect("a tar entry");
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let size = entry.size();
        let mut head = Vec::new();
        (&mut entry)
            .take(512)
            .read_to_end(&mut head)
            .expect("read an entry");
        entries.push(Saved { name, size, head });
    }
    entries
}

/// The progress bar's total comes from this figure: on the graphdriver
/// store the bytes of the files the layers hold (overwritten ones
/// included), on the containerd store the bytes of the blobs the image is
/// made of (its layers as stored, compressed or not, config and manifest).
#[test]
fn the_reported_size_is_what_the_store_counts() {
    let (image, content) = fixture("engines-size");
    let size = inspect(&image.reference)["Size"].as_u64().expect("a Size");
    match image_store() {
        ImageStore::GraphDriver => assert_eq!(size, content),
        ImageStore::Containerd => {
            let blobs: u64 = save_entries(&image.reference)
                .iter()
                .filter(|e| e.name.starts_with("blobs/sha256/"))
                .map(|e| e.size)
                .sum();
            assert_eq!(size, blobs, "Size is not the sum of the image's blobs");
        }
    }
}

/// A merge of IMAGE's layers cannot take them as they come: every engine
/// writes the save stream in lexical order of entry names, so the index
/// that says which layer is which (`manifest.json`, `index.json`) comes
/// after every layer. The layout and the layers' encoding differ by engine.
#[test]
fn the_save_stream_names_its_layers_only_at_the_end() {
    let (image, _) = fixture("engines-save");
    let entries = save_entries(&image.reference);
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "the save stream is not in name order");

    let api = engine_api();
    let store = image_store();
    // Graphdriver engines write the OCI layout from Engine 25 (API 1.44).
    let oci = store == ImageStore::Containerd || api >= (1, 44);
    let layers: Vec<usize> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            if oci {
                e.name.starts_with("blobs/sha256/") && is_layer(&e.head)
            } else {
                e.name.ends_with("/layer.tar")
            }
        })
        .map(|(i, _)| i)
        .collect();
    assert_eq!(layers.len(), 3, "layers in {names:#?}");
    let index = names
        .iter()
        .position(|n| *n == "manifest.json")
        .expect("a manifest.json");
    assert!(
        layers.iter().all(|&l| l < index),
        "a layer after manifest.json: {names:#?}"
    );
    if oci {
        let oci_index = names.iter().position(|n| *n == "index.json");
        assert!(
            oci_index.is_some_and(|i| layers.iter().all(|&l| l < i)),
            "no index.json after the layers: {names:#?}"
        );
    }
    // The fixture was loaded with plain tar layers. A graphdriver always
    // sends plain tars; the containerd store sends each layer as stored,
    // here the very tars loaded, so the blob's name is the layer's diff ID.
    let diff_ids = inspect(&image.reference)["RootFS"]["Layers"].clone();
    for &l in &layers {
        assert_eq!(&entries[l].head[257..262], b"ustar", "{}", names[l]);
        if store == ImageStore::Containerd {
            let digest = format!("sha256:{}", &names[l]["blobs/sha256/".len()..]);
            assert!(
                diff_ids
                    .as_array()
                    .is_some_and(|ids| ids.iter().any(|id| id == digest.as_str())),
                "{} is not one of the diff IDs {diff_ids}",
                names[l]
            );
        }
    }
}

/// A layer blob: gzip, zstd, or a tar (ustar magic at 257).
fn is_layer(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b])
        || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || head.get(257..262) == Some(b"ustar")
}

/// A host and a foreign platform, two layers each.
fn two_platforms() -> Vec<ImageSpec> {
    let (arch, variant) = foreign_architecture();
    // Layers of this call's own: on the containerd store, images that share
    // a layer share its snapshot, so another test's unpacking would show
    // here, and its removal race this test's.
    let own = unique("layers");
    let layers = |tag: &str| {
        vec![
            vec![
                Entry::file(format!("base-{tag}"), pseudo_random(4_000, 3)),
                Entry::file("fixture", own.clone()),
            ],
            vec![Entry::file(format!("top-{tag}"), tag)],
        ]
    };
    let foreign = ImageSpec {
        architecture: arch.into(),
        variant: variant.map(Into::into),
        ..ImageSpec::new(layers("foreign"))
    };
    vec![ImageSpec::new(layers("host")), foreign]
}

/// The files of a container created (never started) for `platform`.
fn exported_for(reference: &str, platform: &str) -> Result<Vec<String>, String> {
    let name = unique("engines-ctr");
    let out = docker(&[
        "create",
        "--platform",
        platform,
        "--network",
        "none",
        "--name",
        &name,
        reference,
        "/x",
    ]);
    if !out.status.success() {
        return Err(text(&out.stderr));
    }
    let container = TestContainer {
        id: text(&out.stdout).trim().to_owned(),
    };
    let export = docker(&["export", &container.id]);
    check_ok(&export, "docker export");
    let mut names = Vec::new();
    for entry in tar::Archive::new(&export.stdout[..])
        .entries()
        .expect("a tar")
    {
        let entry = entry.expect("a tar entry");
        names.push(String::from_utf8_lossy(&entry.path_bytes()).into_owned());
    }
    Ok(names)
}

/// `GET /images/json?manifests=1` of the engine under test (API 1.48+):
/// per platform of `id`, whether its content is present and the bytes
/// unpacked for it.
fn manifests_of(id: &str, api: (u32, u32)) -> Vec<(String, bool, u64)> {
    let host = docker_host();
    let socket = host.strip_prefix("unix://").expect("a unix socket engine");
    let url = format!("http://engine/v{}.{}/images/json?manifests=1", api.0, api.1);
    // Listing every image fails now and then while other tests remove
    // theirs; ask again.
    let curl = || {
        std::process::Command::new("curl")
            .args(["-sS", "--fail-with-body", "--unix-socket", socket, &url])
            .output()
            .expect("run curl")
    };
    let mut out = curl();
    for _ in 0..2 {
        if out.status.success() {
            break;
        }
        out = curl();
    }
    assert!(
        out.status.success(),
        "curl {url}: {}{}",
        text(&out.stderr),
        text(&out.stdout)
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let image = list
        .as_array()
        .and_then(|l| l.iter().find(|i| i["Id"] == id))
        .unwrap_or_else(|| panic!("{id} not listed"));
    image["Manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("no Manifests for {id}: {image}"))
        .iter()
        .filter(|m| m["Kind"] == "image")
        .map(|m| {
            let p = &m["ImageData"]["Platform"];
            let mut platform = format!(
                "{}/{}",
                p["os"].as_str().unwrap_or(""),
                p["architecture"].as_str().unwrap_or("")
            );
            if let Some(v) = p["variant"].as_str() {
                platform = format!("{platform}/{v}");
            }
            let unpacked = m["ImageData"]["Size"]["Unpacked"].as_u64().unwrap_or(0);
            (platform, m["Available"] == true, unpacked)
        })
        .collect()
}

/// What multi-platform support builds on. A graphdriver loads one platform
/// (what `manifest.json` lists). The containerd store keeps them all under
/// one name whose ID is the index digest, shows the host platform's config,
/// and creates a container for another platform from its content. Engine
/// 28 (API 1.48+) lists each platform and unpacks only the host's at load;
/// Engine 26.1 lists none. From API 1.49 `inspect --platform` picks a
/// platform's config.
#[test]
fn a_multi_platform_image_keeps_every_platform_on_the_containerd_store() {
    let specs = two_platforms();
    let (image, written) = load_multi_platform(&specs, &unique("engines-multi"));
    let (host, foreign) = (&written.platforms[0], &written.platforms[1]);
    let info = inspect(&image.reference);
    assert_eq!(info["Architecture"], specs[0].architecture.as_str());
    let api = engine_api();
    match image_store() {
        ImageStore::GraphDriver => {
            assert_eq!(info["Id"], host.config.as_str());
            assert_eq!(info["RootFS"]["Layers"], serde_json::json!(host.diff_ids));
            let refused = exported_for(&image.reference, &foreign.platform);
            assert!(
                refused.is_err(),
                "a graphdriver made a {} container",
                foreign.platform
            );
        }
        ImageStore::Containerd => {
            assert_eq!(info["Id"], written.index.as_str());
            // Before any container: what the load itself unpacked.
            if api >= (1, 48) {
                let listed = manifests_of(&written.index, api);
                let want = vec![
                    (host.platform.clone(), true, true),
                    (foreign.platform.clone(), true, false),
                ];
                let got: Vec<(String, bool, bool)> =
                    listed.into_iter().map(|(p, a, u)| (p, a, u > 0)).collect();
                assert_eq!(got, want, "(platform, content present, unpacked)");
            } else {
                let listed = docker(&["image", "ls", "--tree"]);
                assert!(
                    !listed.status.success(),
                    "--tree listed platforms below API 1.47"
                );
            }
            let files = exported_for(&image.reference, &foreign.platform)
                .expect("create for the foreign platform");
            assert!(files.iter().any(|f| f == "top-foreign"), "{files:?}");
            assert!(!files.iter().any(|f| f == "top-host"), "{files:?}");
            let inspected = docker(&[
                "image",
                "inspect",
                "--platform",
                &foreign.platform,
                "--format",
                "{{.Architecture}}",
                &image.reference,
            ]);
            if api >= (1, 49) {
                check_ok(&inspected, "inspect --platform");
                assert_eq!(text(&inspected.stdout).trim(), specs[1].architecture);
            } else {
                assert!(
                    !inspected.status.success(),
                    "inspect --platform worked below API 1.49"
                );
            }
        }
    }
}

/// `GET {path}` on the engine under test's API (version `api`): status and body.
fn engine_get(path: &str, api: (u32, u32), method: &str, body: Option<&str>) -> (u16, Vec<u8>) {
    let host = docker_host();
    let socket = host.strip_prefix("unix://").expect("a unix socket engine");
    let url = format!("http://engine/v{}.{}{path}", api.0, api.1);
    let mut cmd = std::process::Command::new("curl");
    cmd.args([
        "-s",
        "-X",
        method,
        "--unix-socket",
        socket,
        "-w",
        "\n%{http_code}",
    ]);
    if let Some(body) = body {
        cmd.args(["-H", "Content-Type: application/json", "-d", body]);
    }
    let out = cmd.arg(&url).output().expect("run curl");
    assert!(out.status.success(), "curl {url}: {}", text(&out.stderr));
    let split = out
        .stdout
        .iter()
        .rposition(|&b| b == b'\n')
        .expect("a status line");
    let status = text(&out.stdout[split + 1..])
        .trim()
        .parse()
        .expect("an HTTP status");
    (status, out.stdout[..split].to_vec())
}

/// The blob digests in a save stream, and its `index.json`.
fn saved_blobs(archive: &[u8]) -> (std::collections::BTreeSet<String>, serde_json::Value) {
    let mut blobs = std::collections::BTreeSet::new();
    let mut index = serde_json::Value::Null;
    for entry in tar::Archive::new(archive).entries().expect("a tar") {
        let mut entry = entry.expect("a tar entry");
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if let Some(hex) = name.strip_prefix("blobs/sha256/").filter(|h| !h.is_empty()) {
            blobs.insert(format!("sha256:{hex}"));
        } else if name == "index.json" {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).expect("read index.json");
            index = serde_json::from_slice(&bytes).expect("index.json is JSON");
        }
    }
    (blobs, index)
}

/// Where the plugin learns IMAGE's platforms. On the containerd store the
/// save stream without a `platform` parameter holds IMAGE's index and every
/// blob the store has for it: each present platform's manifest, config and
/// layers, and the attestations; a platform whose content is absent (as a
/// pull leaves the others) is listed in the index, its blobs are not sent,
/// and the save still succeeds. From API 1.48 `platform` narrows the stream
/// to that platform (`index.json` points at its manifest) and is answered
/// 404 for an absent one, and the inspect's `Descriptor` says whether the ID
/// is an index; Engine 26.1 ignores the parameter and has no `Descriptor`.
/// Both answer 404 to a container create for an absent platform. A
/// graphdriver saves the one platform it loaded.
#[test]
fn the_save_stream_holds_every_platform_whose_content_the_store_has() {
    let mut specs = two_platforms();
    specs.push(ImageSpec {
        architecture: "ppc64le".into(),
        ..ImageSpec::new(vec![vec![Entry::file("absent", "never loaded")]])
    });
    let extras = IndexExtras {
        absent: vec![2],
        attestations: true,
    };
    let (image, written) = load_multi_platform_with(&specs, &unique("engines-saved"), &extras);
    let (host, foreign, absent) = (
        &written.platforms[0],
        &written.platforms[1],
        &written.platforms[2],
    );
    let api = engine_api();
    let path = |platform: Option<&str>| {
        let mut path = format!("/images/{}/get", image.reference);
        if let Some(p) = platform {
            let mut parts = p.split('/');
            let (os, arch) = (parts.next().unwrap(), parts.next().unwrap());
            let json = serde_json::json!({"os": os, "architecture": arch}).to_string();
            let encoded: String = json
                .bytes()
                .map(|b| match b {
                    b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => (b as char).to_string(),
                    _ => format!("%{b:02X}"),
                })
                .collect();
            path = format!("{path}?platform={encoded}");
        }
        path
    };
    let (status, all) = engine_get(&path(None), api, "GET", None);
    assert_eq!(status, 200, "{}", text(&all));
    let (blobs, _) = saved_blobs(&all);
    let content = |p: &WrittenPlatform| -> Vec<String> {
        let mut c = vec![p.manifest.clone(), p.config.clone()];
        c.extend(p.blobs.iter().cloned());
        c
    };
    if image_store() == ImageStore::GraphDriver {
        // Engine 20.10 names the config `<hex>.json`, Engine 25+ `blobs/sha256/<hex>`.
        let names: Vec<String> = save_entries(&image.reference)
            .into_iter()
            .map(|e| e.name)
            .collect();
        let has = |digest: &str| names.iter().any(|n| n.contains(&digest[7..]));
        assert!(has(&host.config) && !has(&foreign.config), "{names:?}");
        return assert_eq!(inspect(&image.reference)["Id"], host.config.as_str());
    }
    for d in content(host).iter().chain(&content(foreign)) {
        assert!(blobs.contains(d), "{d} not saved: {blobs:?}");
    }
    assert!(blobs.contains(&written.index), "the index is saved");
    for d in content(absent) {
        assert!(!blobs.contains(&d), "{d} of the absent platform was saved");
    }
    let (status, one) = engine_get(&path(Some(&foreign.platform)), api, "GET", None);
    let (status_absent, body) = engine_get(&path(Some(&absent.platform)), api, "GET", None);
    if api >= (1, 48) {
        assert_eq!(status, 200, "{}", text(&one));
        let (blobs, index) = saved_blobs(&one);
        assert_eq!(
            blobs,
            content(foreign).into_iter().collect(),
            "one platform's blobs"
        );
        assert_eq!(index["manifests"][0]["digest"], foreign.manifest.as_str());
        assert_eq!(status_absent, 404, "{}", text(&body));
    } else {
        assert_eq!(
            (status, saved_blobs(&one).0),
            (200, blobs),
            "platform is ignored"
        );
        assert_eq!(status_absent, 200, "platform is ignored");
    }
    let (status, body) = engine_get(
        &format!("/images/{}/json", image.reference),
        api,
        "GET",
        None,
    );
    assert_eq!(status, 200);
    let info: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    if api >= (1, 48) {
        assert_eq!(info["Descriptor"]["mediaType"], INDEX);
        assert_eq!(info["Descriptor"]["digest"], written.index.as_str());
    } else {
        assert!(info["Descriptor"].is_null(), "{}", info["Descriptor"]);
    }
    let create = format!(r#"{{"Image":"{}","Cmd":["/x"]}}"#, image.reference);
    let platform = absent.platform.replace('/', "%2F");
    let (status, body) = engine_get(
        &format!("/containers/create?platform={platform}"),
        api,
        "POST",
        Some(&create),
    );
    if status == 201 {
        let id: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        docker(&["rm", "-f", id["Id"].as_str().unwrap_or_default()]);
    }
    assert_eq!(
        status,
        404,
        "a container for an absent platform: {}",
        text(&body)
    );
}
