//! What people and scripts see: `--format json` for a flatten, shell
//! completion through the docker CLI, and the progress display on a real
//! terminal (tmux), checked as a person would see its final state.

mod support;

use serde_json::Value;
use support::*;

fn two_layer_image(name: &str) -> TestImage {
    let layers = vec![
        vec![Entry::dir("data"), Entry::file("data/a", vec![1u8; 70_000])],
        vec![Entry::dir("data"), Entry::file("data/b", b"b")],
    ];
    load_image(&ImageSpec::new(layers), &unique(name))
}

#[test]
fn flatten_json_describes_source_result_and_engine() {
    let image = two_layer_image("json");
    let cli = Cli::new();
    let tag = format!("{}:flat", unique("json-flat"));
    let out = cli.docker(&["flatten", "--format=json", &image.reference, &tag]);
    let flat = TestImage::track(&tag);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", text(&out.stdout)));
    assert_eq!(doc["dry_run"], false);
    assert_eq!(doc["source"]["reference"], image.reference.as_str());
    assert_eq!(doc["source"]["id"], image.id.as_str());
    assert_eq!(doc["source"]["layers"], 2);
    assert_eq!(doc["result"]["reference"], tag.as_str());
    assert_eq!(doc["result"]["id"], flat.id.as_str());
    assert_eq!(doc["result"]["layers"], 1);
    assert_eq!(doc["result"]["size"], inspect(&tag)["Size"]);
    assert_eq!(doc["source"]["size"], inspect(&image.reference)["Size"]);
    assert!(doc["wasted_bytes"].is_null() && doc["analysis"].is_null());
    assert!(doc["duration_seconds"].as_f64().unwrap() > 0.0);
    let (store, compression) = if containerd_store() {
        ("containerd", "gzip")
    } else {
        ("graphdriver", "none")
    };
    assert_eq!(doc["engine"]["store"], store);
    assert_eq!(doc["compression"], compression);
    assert_eq!(doc["engine"]["endpoint"], docker_host());
}

fn complete(cli: &Cli, words: &[&str]) -> (Vec<String>, String) {
    let mut argv = vec!["__complete", "flatten"];
    argv.extend_from_slice(words);
    let out = cli.docker(&argv);
    assert!(out.status.success(), "{argv:?}: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let mut lines: Vec<String> = stdout.lines().map(str::to_owned).collect();
    let directive = lines.pop().unwrap_or_default();
    (lines, directive)
}

#[test]
fn completion_through_the_cli_offers_images_flags_and_values() {
    let image = two_layer_image("complete");
    let cli = Cli::new();
    let short = image.id.trim_start_matches("sha256:")[..12].to_owned();

    // IMAGE: the local image's name, with its ID as the description.
    let (lines, directive) = complete(&cli, &[&image.reference[..image.reference.len() - 3]]);
    assert_eq!(lines, [format!("{}\timage {short}", image.reference)]);
    assert_eq!(directive, ":4", "no file names for an image");
    // TAG may name an existing image too; after TAG nothing more.
    let (lines, _) = complete(&cli, &[&image.reference, &image.reference]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let (lines, directive) = complete(&cli, &[&image.reference, "x:y", ""]);
    assert!(
        lines.is_empty() && directive == ":4",
        "{lines:?} {directive}"
    );

    let (lines, _) = complete(&cli, &["--"]);
    let names: Vec<&str> = lines
        .iter()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    for flag in ["--dry-run", "--format", "--quiet", "--help"] {
        assert!(names.contains(&flag), "{flag} missing from {names:?}");
    }
    let (lines, directive) = complete(&cli, &["--format", ""]);
    let values: Vec<&str> = lines
        .iter()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert_eq!((values, directive.as_str()), (vec!["text", "json"], ":4"));
    assert_eq!(
        names.iter().filter(|n| **n == "--help").count(),
        1,
        "{names:?}"
    );
    // FILE: the shell's own file names; BASE: local images.
    let (lines, directive) = complete(&cli, &["-o", ""]);
    assert_eq!((lines.len(), directive.as_str()), (0, ":0"));
    let (lines, directive) = complete(
        &cli,
        &["--keep-base", &image.reference[..image.reference.len() - 3]],
    );
    assert_eq!(lines, [format!("{}\timage {short}", image.reference)]);
    assert_eq!(directive, ":4");
}

#[test]
fn completion_without_an_engine_says_error_not_files() {
    let cli = Cli::new();
    let mut cmd = std::process::Command::new("docker");
    cmd.args(["__complete", "flatten", ""])
        .env("DOCKER_CONFIG", cli.config_dir())
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
    let out = run_with_timeout(cmd, std::time::Duration::from_secs(60));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), ":1\n");
}

/// The ticked stage lines of a flatten, by the start of each.
fn stages() -> [&'static str; 6] {
    [
        "✓ Inspecting",
        "✓ Creating a temporary",
        "✓ Exporting and",
        // The containerd store gets the layer and the config in one load.
        if containerd_store() {
            "✓ Loading flattened"
        } else {
            "✓ Giving the new layer the config"
        },
        "✓ Tagging",
        "✓ Removing temporary objects",
    ]
}

/// Braille spinner frames, bar fill and the byte counter's tilde must all
/// be gone from a finished screen.
fn assert_no_live_progress(screen: &Screen) {
    for line in &screen.lines {
        assert!(
            !line.chars().any(|c| ('\u{2800}'..='\u{28ff}').contains(&c)),
            "spinner left on screen: {line:?}\n{}",
            screen.text()
        );
        assert!(
            !line.contains("=>") && !line.contains("/~"),
            "bar left: {line:?}"
        );
    }
}

#[test]
fn progress_on_a_narrow_terminal_ends_clean_with_every_stage_ticked() {
    let image = two_layer_image("tty");
    let cli = Cli::new();
    let tag = format!("{}:flat", unique("tty-flat-with-a-rather-long-name"));
    let screen = run_in_terminal(
        cli.config_dir(),
        &["docker", "flatten", &image.reference, &tag],
        50,
        40,
    );
    let flat = TestImage::track(&tag);
    assert_eq!(screen.status, 0, "{}", screen.text());
    assert_no_live_progress(&screen);
    let ticked: Vec<&String> = screen.lines.iter().filter(|l| l.starts_with('✓')).collect();
    assert_eq!(
        ticked.len(),
        stages().len(),
        "one line per stage:\n{}",
        screen.text()
    );
    for (line, stage) in ticked.iter().zip(stages()) {
        assert!(
            line.starts_with(stage),
            "{line:?} should be {stage:?}\n{}",
            screen.text()
        );
        assert!(
            line.ends_with("s)"),
            "a stage ends with its duration: {line:?}"
        );
        assert!(
            line.chars().count() < screen.width,
            "stage line wrapped: {line:?}"
        );
    }
    // The ID, then the summary, broken between words to fit the width.
    let after: Vec<&String> = screen
        .lines
        .iter()
        .skip_while(|l| !l.starts_with("✓ Removing"))
        .skip(1)
        .collect();
    assert_eq!(after[0], &flat.id, "{}", screen.text());
    // A line is broken only between words: it fits, or it is one word
    // longer than the width.
    assert!(
        after[1..]
            .iter()
            .all(|l| l.chars().count() < screen.width || !l.contains(' ')),
        "{}",
        screen.text()
    );
    let summary: Vec<&str> = after[1..].iter().map(|l| l.as_str()).collect();
    assert!(summary.join(" ").starts_with(&format!(
        "Flattened {} → {tag}: 2 layers → 1 layer",
        image.reference
    )));
}

/// At 80 and 120 columns: the live line keeps the stage's name and fits the
/// width; Ctrl-C replaces it with the ✗ line, leaving no frozen bar.
#[test]
fn the_live_line_keeps_its_stage_and_ctrl_c_leaves_no_bar() {
    // Pseudo-random: a gzipped upload stays large too.
    let data = pseudo_random(2 * 1024 * 1024, 7);
    let layers = vec![
        vec![Entry::dir("d"), Entry::file("d/big", data)],
        vec![Entry::dir("d"), Entry::file("d/small", "x")],
    ];
    let image = load_image(&ImageSpec::new(layers), &unique("live"));
    let cli = Cli::new();
    for width in [80u16, 120] {
        let proxy = support::proxy::Proxy::start(Some(support::proxy::Fault::StallResponse {
            matches: "/export",
            after: 300 * 1024,
        }));
        let tag = unique("live-flat");
        let live = Live::start(
            cli.config_dir(),
            &[
                "docker",
                "-H",
                &proxy.host(),
                "flatten",
                &image.reference,
                &tag,
            ],
            width,
            20,
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let line = loop {
            let bar = live
                .screen()
                .into_iter()
                .find(|l| l.contains(" MB/~") || l.contains(" kB/~"));
            if let Some(line) = bar {
                break line;
            }
            assert!(std::time::Instant::now() < deadline, "{:?}", live.screen());
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        assert!(
            line.contains("Exporting and"),
            "{width}: the live line names its stage: {line:?}"
        );
        assert!(
            line.chars().count() < usize::from(width) - 1,
            "{width}: the line leaves the last columns free: {line:?}"
        );
        live.keys("C-c");
        let screen = live.finish(std::time::Duration::from_secs(60));
        assert_eq!(screen.status, 130, "{}", screen.text());
        assert_no_live_progress(&screen);
        assert!(
            screen
                .lines
                .iter()
                .any(|l| l.starts_with("✗ Exporting and")),
            "{}",
            screen.text()
        );
        assert!(docker(&["image", "inspect", &tag]).status.code() != Some(0));
    }
}

#[test]
fn a_failure_on_a_terminal_leaves_the_error_and_no_progress() {
    let cli = Cli::new();
    let missing = unique("tty-missing");
    let screen = run_in_terminal(
        cli.config_dir(),
        &["docker", "flatten", &missing, "x:y"],
        60,
        20,
    );
    assert_eq!(screen.status, 1, "{}", screen.text());
    assert_no_live_progress(&screen);
    // The error, broken between words to fit the width.
    let error: Vec<&str> = screen
        .lines
        .iter()
        .skip_while(|l| !l.starts_with("docker flatten: "))
        .map(String::as_str)
        .collect();
    assert!(
        error.iter().all(|l| l.chars().count() < screen.width),
        "{}",
        screen.text()
    );
    let error = error.join(" ");
    assert!(
        error.starts_with("docker flatten: no such image") && error.contains(&missing),
        "{}",
        screen.text()
    );
    assert!(
        !screen.text().contains("✓ Inspecting"),
        "the failed stage is not ticked:\n{}",
        screen.text()
    );
    assert!(
        screen.lines[0].starts_with("✗ Inspecting"),
        "the failed stage is marked:\n{}",
        screen.text()
    );
}

/// `TERM=dumb`: a plain line per stage, and ASCII where the output would
/// use an arrow or an ellipsis.
#[test]
fn a_dumb_terminal_gets_ascii() {
    let image = two_layer_image("dumb");
    let cli = Cli::new();
    let tag = format!("{}:flat", unique("dumb-flat"));
    let out = cli.docker_env(
        &["flatten", &image.reference, &tag],
        &[("TERM", "dumb".as_ref())],
    );
    let _flat = TestImage::track(&tag);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.is_ascii(), "{err}");
    assert!(
        err.contains(&format!(
            "Flattened {} -> {tag}: 2 layers -> 1 layer",
            image.reference
        )),
        "{err}"
    );
}

/// A flatten in place moves TAG off the image it named: the run says that
/// image is now untagged, its size, and how to remove it; JSON too.
#[test]
fn a_flatten_in_place_says_what_became_of_the_old_image() {
    let image = two_layer_image("inplace");
    let old = image.id.clone();
    let short = old.trim_start_matches("sha256:")[..12].to_owned();
    let cli = Cli::new();
    let out = cli.docker(&["flatten", &image.reference, &image.reference]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    // The old image, now `<none>`, is this test's to remove.
    let _old = TestImage {
        reference: old.clone(),
        id: old.clone(),
    };
    assert!(
        err.contains(&format!("{} was {short} (", image.reference))
            && err.contains(&format!(
                "now untagged (<none>) and keeps its space: remove it with docker rmi {short}"
            )),
        "{err}"
    );
    assert!(inspect(&old)["RepoTags"]
        .as_array()
        .is_some_and(Vec::is_empty));
    // Into a TAG that names an image with another name: that name holds it.
    let other = two_layer_image("inplace-other");
    let alias = unique("inplace-alias");
    docker_ok(&["tag", &other.id, &alias]);
    let _alias = TestImage::track(&alias);
    let out = cli.docker(&[
        "flatten",
        "--format",
        "json",
        &image.reference,
        &other.reference,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(doc["replaced"]["id"], other.id.as_str(), "{doc}");
    assert_eq!(
        doc["replaced"]["tags"][0],
        format!("{alias}:latest"),
        "{doc}"
    );
    assert!(
        doc["replaced"]["size"].as_u64().is_some_and(|s| s > 0),
        "{doc}"
    );
}
