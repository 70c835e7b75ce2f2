//! The exit codes, as docs/usage.md's table states them, through the real
//! docker CLI: 0 done; 1 a run that failed (IMAGE missing, a result that
//! differs); 2 a command that cannot work as given, refused before any work
//! (wrong arguments, an IMAGE or TAG that is no reference, an option that
//! IMAGE or the engine refuses). Every refusal leaves TAG uncreated.

mod support;

use support::*;

#[test]
fn every_refusal_and_failure_exits_as_the_table_says() {
    let layers = vec![
        vec![Entry::dir("a"), Entry::file("a/f", unique("one"))],
        vec![Entry::dir("b"), Entry::file("b/g", unique("two"))],
    ];
    let image = load_image(&ImageSpec::new(layers), &unique("codes"));
    let other = load_image(
        &ImageSpec::new(vec![vec![Entry::file("o", unique("other"))]]),
        &unique("codes-other"),
    );
    let img = image.reference.as_str();
    let short_id = image.id.trim_start_matches("sha256:")[..12].to_owned();
    let missing = format!("{}:1", unique("missing"));
    let zstd = match image_store() {
        // Graphdriver engines before Engine 23 cannot take a zstd layer.
        ImageStore::GraphDriver => 2,
        ImageStore::Containerd => 0,
    };
    // "TAG" stands for a new name, unique to the row.
    let table: Vec<(Vec<&str>, i32)> = vec![
        (vec![img], 2),
        (vec!["UXT-APP:1", "TAG"], 2),
        (vec![img, "Bad:TAG"], 2),
        (vec!["--keep-layers", "99", img, "TAG"], 2),
        (vec!["--keep-layers", "-1", img, "TAG"], 2),
        (vec!["--exact", "--keep-layers", "1", img, "TAG"], 2),
        (vec!["--keep-base", "Base", img, "TAG"], 2),
        (vec!["--keep-base", &other.reference, img, "TAG"], 2),
        (vec!["--platform", "linux/s390x", img, "TAG"], 2),
        (vec!["--bogus-flag", img, "TAG"], 2),
        // A TAG that is IMAGE's ID would shadow it as a repository.
        (vec![img, &short_id], 2),
        (vec![&missing, "TAG"], 1),
        (vec!["--compression", "zstd", img, "TAG"], zstd),
        (vec![img, "TAG"], 0),
    ];
    let cli = Cli::new();
    for (args, code) in table {
        let tag = unique("codes-tag");
        let argv: Vec<&str> = std::iter::once("flatten")
            .chain(
                args.iter()
                    .map(|a| if *a == "TAG" { tag.as_str() } else { a }),
            )
            .collect();
        let out = cli.docker(&argv);
        let _made = TestImage::track(&tag);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "docker {argv:?}:\n{err}");
        if code != 0 {
            assert!(
                docker(&["image", "inspect", &tag]).status.code() != Some(0),
                "docker {argv:?} created TAG"
            );
            // One voice: the plugin's prefix, never clap's `error:` or tips.
            assert!(
                err.lines().any(|l| l.starts_with("docker flatten: "))
                    && !err.contains("error:")
                    && !err.contains("tip:"),
                "docker {argv:?}:\n{err}"
            );
        }
    }
    // --verify-only's second operand is FLAT, and is named so.
    let out = cli.docker(&["flatten", "--verify-only", img]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("missing FLAT"),
        "{}",
        text(&out.stderr)
    );
    // A FLAT that differs from what IMAGE's layers make fails the check.
    let out = cli.docker(&["flatten", "--verify-only", img, &other.reference]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
}
