//! Nothing lost: after a successful flatten and after a failure at each
//! step, the engine holds no container, volume or dangling image that the
//! run made, and TAG still points where it did.
//!
//! Other tests share the engine, so only what can be traced to this test's
//! source image counts: objects with the plugin's source label, containers
//! of the source, and images carrying the source's own marker label (the
//! flattened image inherits it); plus volumes left dangling. Failures are
//! injected by a proxy in front of the real engine.

mod support;

use support::proxy::{Fault, Proxy};
use support::*;

#[test]
fn success_leaves_only_the_tagged_image() {
    let cli = Cli::new();
    let source = source_image();
    let tag = unique("cleanup-ok");
    let before = dangling_volumes();
    let out = cli.docker(&["flatten", &source.image.reference, &tag]);
    let flat = TestImage::track(&tag);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_nothing_left(&source, &before, &[&flat.id], "a successful flatten");
    assert_eq!(image_layer_count(&flat.reference), 1);
}

#[test]
fn failures_at_every_step_leave_nothing_and_keep_the_tag() {
    let cli = Cli::new();
    let source = source_image();
    let target = existing_tag();
    let cases = [
        (
            "create refused",
            Fault::Respond {
                matches: "/containers/create",
                status: 500,
            },
            "creating a container",
        ),
        (
            "export cut",
            Fault::CutResponse {
                matches: "/export",
                after: 300 * 1024,
            },
            "export",
        ),
        // The graphdriver store gets the layer by import, the containerd
        // store by load (together with the config).
        if containerd_store() {
            (
                "layer upload cut",
                Fault::CutRequest {
                    matches: "/images/load",
                    after: 300 * 1024,
                },
                "loading the flattened image",
            )
        } else {
            (
                "import upload cut",
                Fault::CutRequest {
                    matches: "fromSrc=-",
                    after: 300 * 1024,
                },
                "import",
            )
        },
        (
            "load refused",
            Fault::Respond {
                matches: "/images/load",
                status: 500,
            },
            "loading the flattened image",
        ),
        (
            "tag refused",
            Fault::Respond {
                matches: "/tag?",
                status: 500,
            },
            "tagging",
        ),
    ];
    for (name, fault, message) in cases {
        let proxy = Proxy::start(Some(fault));
        let before = dangling_volumes();
        let out = cli.docker(&[
            "-H",
            &proxy.host(),
            "flatten",
            &source.image.reference,
            &target.reference,
        ]);
        let err = text(&out.stderr);
        assert_eq!(proxy.fired(), 1, "{name}: the fault never fired:\n{err}");
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(
            err.contains(message),
            "{name}: error does not say what failed:\n{err}"
        );
        assert!(
            err.contains(&proxy.host()),
            "{name}: error does not name the endpoint:\n{err}"
        );
        assert!(
            err.contains(&format!("{} is unchanged", target.reference)),
            "{name}: {err}"
        );
        assert!(out.stdout.is_empty(), "{name}: printed an ID on failure");
        assert_eq!(
            inspect(&target.reference)["Id"],
            target.id.as_str(),
            "{name}: TAG moved"
        );
        assert_nothing_left(&source, &before, &[], name);
    }
}

#[test]
fn a_missing_image_changes_nothing() {
    let cli = Cli::new();
    let before = dangling_volumes();
    let never = unique("never");
    let out = cli.docker(&["flatten", &unique("missing"), &never]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(!image_exists(&never));
    assert_eq!(dangling_volumes().difference(&before).count(), 0);
}

#[test]
fn four_flattens_of_one_image_at_once_all_succeed_and_leave_nothing() {
    let cli = Cli::new();
    let source = source_image();
    let before = dangling_volumes();
    let tags: Vec<String> = (0..4).map(|i| unique(&format!("concurrent-{i}"))).collect();
    let children: Vec<_> = tags
        .iter()
        .map(|tag| {
            cli.command(&["flatten", &source.image.reference, tag])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("start a flatten")
        })
        .collect();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().expect("wait"))
        .collect();
    let flats: Vec<TestImage> = tags.iter().map(|t| TestImage::track(t)).collect();
    for ((out, tag), flat) in outputs.iter().zip(&tags).zip(&flats) {
        assert!(out.status.success(), "{tag}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout).trim(), flat.id, "{tag}");
        assert_eq!(image_layer_count(tag), 1, "{tag}");
    }
    let keep: Vec<&str> = flats.iter().map(|f| f.id.as_str()).collect();
    assert_nothing_left(&source, &before, &keep, "four concurrent flattens");
}
