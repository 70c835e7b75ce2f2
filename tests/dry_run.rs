//! `docker flatten --dry-run`: what it reports about a known image, in each
//! output format, through the real docker CLI, and that it changes nothing.

mod support;

use serde_json::Value;
use support::*;

const BIG: usize = 300_000;

/// Three layers whose waste is known: layer 2 deletes /app/big and
/// overwrites /app/keep; layer 3 hides /cache behind an opaque directory.
fn wasteful_image(name: &str) -> TestImage {
    let layers = vec![
        vec![
            Entry::dir("app"),
            Entry::file("app/big", vec![1u8; BIG]),
            Entry::file("app/keep", vec![2u8; 100]),
            Entry::dir("cache"),
            Entry::file("cache/a", vec![3u8; 5000]),
            Entry::symlink("link", "app/keep"),
        ],
        vec![
            Entry::dir("app"),
            Entry::whiteout("app/big"),
            Entry::file("app/keep", vec![4u8; 40]),
        ],
        vec![
            Entry::dir("cache"),
            Entry::opaque("cache"),
            Entry::file("cache/b", vec![5u8; 7]),
        ],
    ];
    load_image(&ImageSpec::new(layers), &unique(name))
}

fn dry_run_json(cli: &Cli, args: &[&str]) -> Value {
    let mut argv = vec!["flatten", "--dry-run", "--format", "json"];
    argv.extend_from_slice(args);
    let out = cli.docker(&argv);
    assert!(
        out.status.success(),
        "{argv:?} failed:\n{}",
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}):\n{}",
            text(&out.stdout)
        )
    })
}

#[test]
fn json_reports_layers_waste_and_the_largest_wasted_files() {
    let image = wasteful_image("dry-json");
    let cli = Cli::new();
    let before = containers_of(&image.id);
    let doc = dry_run_json(&cli, &[&image.reference]);

    assert_eq!(doc["dry_run"], true);
    assert_eq!(doc["source"]["reference"], image.reference.as_str());
    assert_eq!(doc["source"]["id"], image.id.as_str());
    assert_eq!(doc["source"]["layers"], 3);
    assert_eq!(doc["result"]["layers"], 1);
    assert!(doc["result"]["id"].is_null() && doc["result"]["reference"].is_null());
    let store = if containerd_store() {
        "containerd"
    } else {
        "graphdriver"
    };
    assert_eq!(doc["engine"]["store"], store);
    assert_eq!(doc["engine"]["endpoint"], docker_host());
    assert_eq!(doc["engine"]["context"], "default");

    let a = &doc["analysis"];
    let now = (BIG + 100 + 5000 + 40 + 7) as u64;
    let wasted = (BIG + 100 + 5000) as u64;
    assert_eq!(a["bytes_now"], now, "{a:#}");
    assert_eq!(a["wasted_bytes"], wasted, "{a:#}");
    assert_eq!(doc["wasted_bytes"], wasted);
    assert_eq!(a["bytes_after"], now - wasted);
    // /app/keep, /link, /cache/b
    assert_eq!(a["files_after"], 3);
    let layers = a["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3);
    assert_eq!(layers[0]["wasted"], wasted);
    assert_eq!(layers[1]["deletes"], 1);
    assert_eq!(layers[2]["size"], 7);
    for (i, layer) in layers.iter().enumerate() {
        assert_eq!(layer["index"], i + 1);
        assert_eq!(
            layer["created_by"],
            format!("docker-flatten test fixture: layer {i}"),
            "history lines up with layers"
        );
        assert!(layer["diff_id"].as_str().unwrap().starts_with("sha256:"));
    }
    let top = a["largest_wasted"].as_array().unwrap();
    let top: Vec<(&str, u64, u64, u64)> = top
        .iter()
        .map(|w| {
            let n = |k: &str| w[k].as_u64().unwrap();
            (
                w["path"].as_str().unwrap(),
                n("size"),
                n("layer"),
                n("removed_by"),
            )
        })
        .collect();
    assert_eq!(
        top,
        [
            ("/app/big", BIG as u64, 1, 2),
            ("/cache/a", 5000, 1, 3),
            ("/app/keep", 100, 1, 2)
        ]
    );
    assert_eq!(
        containers_of(&image.id),
        before,
        "a dry run creates no container"
    );
}

#[test]
fn text_report_is_plain_off_a_terminal_and_tag_is_checked_but_optional() {
    let image = wasteful_image("dry-text");
    let cli = Cli::new();
    let tag = unique("dry-text-flat");
    let out = cli.docker(&["flatten", "--dry-run", &image.reference, &tag]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    assert!(report.contains("nothing was changed"), "{report}");
    for needle in [
        "layer 1: 305kB in 4 files, 0 deleted, 305kB wasted; created by: docker-flatten test fixture: layer 0",
        "layer 2: 40B in 1 file, 1 deleted, 0B wasted",
        &format!("Layers:  3 → 1 as {tag}:latest"),
        "Wasted:  305kB (100.0%)",
        "/app/big  (added by layer 1, deleted by layer 2)",
    ] {
        assert!(report.contains(needle), "missing {needle:?} in:\n{report}");
    }
    assert!(!report.contains('…'), "plain text is never cut:\n{report}");
    assert!(!image_exists(&tag), "a dry run never creates TAG");

    let quiet = cli.docker(&["flatten", "--dry-run", "-q", &image.reference]);
    assert!(quiet.status.success(), "{}", text(&quiet.stderr));
    assert_eq!(
        text(&quiet.stdout).lines().count(),
        4,
        "{}",
        text(&quiet.stdout)
    );
    assert!(quiet.stderr.is_empty(), "{}", text(&quiet.stderr));

    let bad = cli.docker(&["flatten", "--dry-run", &image.reference, "Bad:Tag"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
    assert!(text(&bad.stderr).contains("Bad:Tag"));
}

#[test]
fn table_on_a_terminal_fits_its_width() {
    let image = wasteful_image("dry-table");
    let cli = Cli::new();
    let screen = run_in_terminal(
        cli.config_dir(),
        &["docker", "flatten", "--dry-run", &image.reference],
        60,
        40,
    );
    assert_eq!(screen.status, 0, "{}", screen.text());
    let header = screen
        .lines
        .iter()
        .position(|l| l.starts_with("LAYER") && l.ends_with("CREATED BY"))
        .unwrap_or_else(|| panic!("no table header:\n{}", screen.text()));
    let rows = &screen.lines[header + 1..header + 4];
    for (i, row) in rows.iter().enumerate() {
        assert!(
            row.trim_start().starts_with(&(i + 1).to_string()),
            "{}",
            screen.text()
        );
        assert!(
            row.chars().count() < 60,
            "row wider than the terminal: {row:?}"
        );
        assert!(row.ends_with('…'), "the long step is cut to fit: {row:?}");
    }
    assert!(
        screen.text().contains("✓ Reading the layers of"),
        "{}",
        screen.text()
    );
}

#[test]
fn missing_image_fails_cleanly_with_empty_stdout() {
    let cli = Cli::new();
    let name = unique("dry-missing");
    let out = cli.docker(&["flatten", "--dry-run", "--format", "json", &name]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stdout.is_empty(),
        "no JSON on failure: {}",
        text(&out.stdout)
    );
    let err = text(&out.stderr);
    assert!(err.contains(&name) && err.contains(&docker_host()), "{err}");
}

/// The plugin's own layers begin with the root entry (and, on the
/// containerd store, a PAX header with the run's comment): a dry run of a
/// flattened image reads them as one layer holding what the source merges to.
#[test]
fn a_flattened_image_reads_back_as_one_layer_without_waste() {
    let image = wasteful_image("dry-flat");
    let cli = Cli::new();
    let tag = unique("dry-flat-out");
    let out = cli.docker(&["flatten", &image.reference, &tag]);
    let flat = TestImage::track(&tag);
    check_ok(&out, &format!("docker flatten {}", image.reference));
    let source = dry_run_json(&cli, &[&image.reference]);
    let doc = dry_run_json(&cli, &[&flat.reference]);
    let analysis = &doc["analysis"];
    assert_eq!(analysis["layers"].as_array().map(Vec::len), Some(1));
    assert_eq!(analysis["wasted_bytes"], 0);
    assert_eq!(
        analysis["files_after"], source["analysis"]["files_after"],
        "{doc}"
    );
    assert_eq!(
        analysis["bytes_after"], source["analysis"]["bytes_after"],
        "{doc}"
    );
}
