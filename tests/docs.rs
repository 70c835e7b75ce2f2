//! The docs held to the code and to the engine, so that they cannot drift:
//!
//! - the module map in `docs/architecture.md` names every `.rs` file under
//!   `src/` once, and nothing else;
//! - every example block in README.md and docs/*.md that runs
//!   `docker flatten` (or asks it for completions) is marked, either
//!   `<!-- checked: tests/docs.rs -->` or `<!-- not checked: REASON -->`,
//!   on the line before its fence;
//! - a checked block's commands are run for real, with the docs' image names
//!   replaced by images this test loads (see [`Fixtures`]), and compared:
//!   help, version and completion output exactly (at `COLUMNS=100`); a
//!   `--format json` document by its structure (the same keys at every
//!   level in the same order, the same value types, and the same values
//!   where they do not vary from run to run: see [`same_shape`]); a text
//!   run by its summary lines (`Flattened …`, `Verified …`, the dry run's
//!   totals, the image ID), numbers and digests matched by kind
//!   ([`Pattern`]).
//!
//! A checked block whose commands none of these checks takes fails, and so
//! does a block that runs `docker flatten` without a mark.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use support::*;

const CHECKED: &str = "<!-- checked: tests/docs.rs -->";
const NOT_CHECKED: &str = "<!-- not checked: ";
const MAP_START: &str = "<!-- module-map:start -->";
const MAP_END: &str = "<!-- module-map:end -->";

// ------------------------------------------------------------ the docs --

/// README.md and every docs/*.md, in a fixed order.
fn doc_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir("docs")
        .expect("docs/ exists")
        .map(|e| e.expect("read docs/").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    files.sort();
    files.insert(0, PathBuf::from("README.md"));
    files
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    Checked,
    NotChecked,
    None,
}

/// A fenced block of a doc: where it starts, its mark, its lines.
#[derive(Debug)]
struct Block {
    file: PathBuf,
    /// 1-based line of the opening fence.
    line: usize,
    mark: Mark,
    lines: Vec<String>,
}

impl Block {
    fn at(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }

    /// The shell commands the block shows (`$ …` lines), each with the
    /// output lines that follow it.
    fn commands(&self) -> Vec<Shown> {
        let mut shown: Vec<Shown> = Vec::new();
        for line in &self.lines {
            match line.strip_prefix("$ ") {
                Some(command) => shown.push(Shown {
                    command: command.to_owned(),
                    output: Vec::new(),
                }),
                None => {
                    if let Some(last) = shown.last_mut() {
                        last.output.push(line.clone());
                    }
                }
            }
        }
        shown
    }

    /// Whether the block runs the plugin.
    fn runs_the_plugin(&self) -> bool {
        self.commands()
            .iter()
            .any(|c| plugin_words(&c.command).is_some())
    }
}

/// One command of a block and the output the doc shows for it.
#[derive(Debug)]
struct Shown {
    command: String,
    output: Vec<String>,
}

fn blocks_of(file: &Path) -> Vec<Block> {
    let text =
        std::fs::read_to_string(file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(fence) = fence_of(lines[i]) else {
            i += 1;
            continue;
        };
        let mark = lines[..i]
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map_or(Mark::None, |l| {
                let l = l.trim();
                if l == CHECKED {
                    Mark::Checked
                } else if l.starts_with(NOT_CHECKED) && l.ends_with("-->") {
                    Mark::NotChecked
                } else {
                    Mark::None
                }
            });
        let start = i;
        i += 1;
        let mut body = Vec::new();
        while i < lines.len() && lines[i].trim_start() != fence {
            body.push(lines[i].to_owned());
            i += 1;
        }
        assert!(
            i < lines.len(),
            "{}:{}: a fenced block that never closes",
            file.display(),
            start + 1
        );
        i += 1;
        blocks.push(Block {
            file: file.to_owned(),
            line: start + 1,
            mark,
            lines: body,
        });
    }
    blocks
}

/// The fence a line opens (its backticks), if it opens one.
fn fence_of(line: &str) -> Option<&str> {
    let t = line.trim_start();
    let n = t.chars().take_while(|&c| c == '`').count();
    (n >= 3).then(|| &t[..n])
}

fn all_blocks() -> Vec<Block> {
    doc_files().iter().flat_map(|f| blocks_of(f)).collect()
}

/// A shell command's words: whitespace-separated, with '…' and "…" quoting.
fn shell_words(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                let w = word.get_or_insert_with(String::new);
                for q in chars.by_ref() {
                    if q == c {
                        break;
                    }
                    w.push(q);
                }
            }
            c if c.is_whitespace() => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

/// The words after `docker` when a command runs the plugin through the
/// docker CLI (`docker flatten …`, `docker __complete flatten …`).
fn plugin_words(command: &str) -> Option<Vec<String>> {
    let words = shell_words(command);
    let (docker, rest) = words.split_first()?;
    let runs = docker == "docker"
        && match rest.first().map(String::as_str) {
            Some("flatten") => true,
            Some("__complete" | "__completeNoDesc" | "help") => {
                rest.get(1).map(String::as_str) == Some("flatten")
            }
            _ => false,
        };
    runs.then(|| rest.to_vec())
}

// ------------------------------------------------------------- kinds --

/// How a checked command is checked.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    /// Help, version, completion: the engine plays no part; exact.
    Static,
    /// `--format json`: the document's structure.
    Json,
    /// A run's summary lines.
    Summary,
}

fn kind_of(words: &[String]) -> Kind {
    let first = words.first().map(String::as_str);
    let asks = |flag: &str| words.iter().any(|w| w == flag);
    if matches!(first, Some("__complete" | "__completeNoDesc" | "help"))
        || asks("--help")
        || asks("-h")
        || asks("--version")
        || asks("-V")
    {
        Kind::Static
    } else if words
        .windows(2)
        .any(|w| w[0] == "--format" && w[1] == "json")
        || asks("--format=json")
    {
        Kind::Json
    } else {
        Kind::Summary
    }
}

/// The lines of a run's output that a summary check compares.
fn summary_line(line: &str) -> bool {
    let line = line.trim();
    [
        "Flattened ",
        "Verified ",
        "Layers:",
        "Content:",
        "Wasted:",
        "Files:",
    ]
    .iter()
    .any(|p| line.starts_with(p))
        || line.contains(" is already one layer; ")
        || line.contains("(added by layer ")
        || (line.len() == 71
            && line
                .strip_prefix("sha256:")
                .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit())))
}

/// Why a checked block's command cannot be checked, if it cannot.
fn uncheckable(shown: &Shown) -> Option<String> {
    let words = plugin_words(&shown.command)?;
    if words.iter().any(|w| w == "|") {
        return Some("pipes into another command".into());
    }
    match kind_of(&words) {
        Kind::Static if shown.output.is_empty() => Some("shows no output".into()),
        Kind::Json if shown.output.is_empty() => Some("shows no document".into()),
        Kind::Summary if !shown.output.iter().any(|l| summary_line(l)) => {
            Some("shows no summary line (Flattened …, Verified …, the totals, the ID)".into())
        }
        _ => None,
    }
}

// ------------------------------------------------------------- tests --

#[test]
fn the_module_map_names_every_source_file_once() {
    let text = std::fs::read_to_string("docs/architecture.md").expect("docs/architecture.md");
    let start = text.find(MAP_START).expect("the module map's start line");
    let end = text.find(MAP_END).expect("the module map's end line");
    assert!(start < end, "the module map ends before it starts");
    let mut in_map: Vec<String> = Vec::new();
    for row in text[start + MAP_START.len()..end].lines() {
        let row = row.trim();
        if row.is_empty() {
            continue;
        }
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        assert!(cells.len() >= 2, "not a table row: {row}");
        if cells[0] == "file" || cells[0].starts_with("---") {
            continue;
        }
        let path = cells[0]
            .strip_prefix('`')
            .and_then(|c| c.strip_suffix('`'))
            .unwrap_or_else(|| panic!("the first cell is not one path in backticks: {row}"));
        assert!(!cells[1].is_empty(), "{path}: says not what it is for");
        in_map.push(path.to_owned());
    }
    let mut once = BTreeSet::new();
    for path in &in_map {
        assert!(once.insert(path.clone()), "{path} has two rows");
    }
    let mut tree = BTreeSet::new();
    rs_files(Path::new("src"), Path::new(""), &mut tree);
    assert!(!tree.is_empty(), "no .rs file under src/");
    let missing: Vec<&String> = tree.difference(&once).collect();
    let stale: Vec<&String> = once.difference(&tree).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/architecture.md's module map and src/ disagree:\n  \
         not in the map: {missing:?}\n  in the map, not in src/: {stale:?}"
    );
}

/// Every `.rs` file under `dir`, as paths relative to `src/` with `/`.
fn rs_files(dir: &Path, rel: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let entry = entry.expect("read src/");
        let name = PathBuf::from(entry.file_name());
        let kind = entry.file_type().expect("file type");
        if kind.is_dir() {
            rs_files(&entry.path(), &rel.join(&name), out);
        } else if name.extension().is_some_and(|x| x == "rs") {
            let path = rel.join(&name);
            out.insert(path.to_str().expect("UTF-8 path").replace('\\', "/"));
        }
    }
}

#[test]
fn every_block_that_runs_the_plugin_is_marked_and_every_checked_one_is_checkable() {
    let blocks = all_blocks();
    let mut problems = Vec::new();
    let mut checked = 0;
    for block in &blocks {
        match block.mark {
            Mark::None if block.runs_the_plugin() => problems.push(format!(
                "{}: runs docker flatten but is not marked ({CHECKED}, or {NOT_CHECKED}why -->)",
                block.at()
            )),
            Mark::Checked => {
                checked += 1;
                let commands = block.commands();
                if !commands.iter().any(|c| plugin_words(&c.command).is_some()) {
                    problems.push(format!(
                        "{}: marked checked, but runs no docker flatten command",
                        block.at()
                    ));
                }
                for shown in &commands {
                    if let Some(why) = uncheckable(shown) {
                        problems.push(format!("{}: `{}` {why}", block.at(), shown.command));
                    }
                }
            }
            _ => {}
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(checked > 0, "no block is marked {CHECKED}");
}

/// The checked blocks' commands of one kind, with their blocks.
fn checked(kind: Kind) -> Vec<(Block, Vec<Shown>)> {
    let mut out = Vec::new();
    for block in all_blocks() {
        if block.mark != Mark::Checked {
            continue;
        }
        let commands = block.commands();
        if commands
            .iter()
            .any(|c| plugin_words(&c.command).is_some_and(|w| kind_of(&w) == kind))
        {
            out.push((block, commands));
        }
    }
    out
}

#[test]
fn help_version_and_completion_blocks_are_the_binarys_output() {
    let cli = Cli::new();
    let blocks = checked(Kind::Static);
    assert!(!blocks.is_empty(), "no checked help block");
    let mut wrong = Vec::new();
    for (block, commands) in &blocks {
        for shown in commands {
            let Some(words) = plugin_words(&shown.command) else {
                continue;
            };
            if kind_of(&words) != Kind::Static {
                continue;
            }
            let out = cli.docker_env(&words, &[("COLUMNS", "100".as_ref())]);
            assert!(
                out.status.success(),
                "{}: `{}` failed: {}",
                block.at(),
                shown.command,
                text(&out.stderr)
            );
            let real = text(&out.stdout);
            let real = real.strip_suffix('\n').unwrap_or(&real);
            let doc = shown.output.join("\n");
            if real != doc {
                wrong.push(format!(
                    "{}: `{}` prints, at COLUMNS=100:\n{real}\n--- the doc shows:\n{doc}\n---\n{}",
                    block.at(),
                    shown.command,
                    first_difference(&doc, real)
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

fn first_difference(doc: &str, real: &str) -> String {
    let (d, r): (Vec<&str>, Vec<&str>) = (doc.lines().collect(), real.lines().collect());
    for i in 0..d.len().max(r.len()) {
        if d.get(i) != r.get(i) {
            return format!(
                "first difference at output line {}: doc {:?}, real {:?}",
                i + 1,
                d.get(i),
                r.get(i)
            );
        }
    }
    "they differ only in a final newline".into()
}

#[test]
fn json_blocks_have_the_structure_of_a_real_run() {
    let blocks = checked(Kind::Json);
    assert!(!blocks.is_empty(), "no checked JSON block");
    let fixtures = Fixtures::load();
    let cli = Cli::new();
    let mut wrong = Vec::new();
    for (block, commands) in &blocks {
        let mut run = Run::new(&fixtures, block);
        for shown in commands {
            let Some(words) = plugin_words(&shown.command) else {
                continue;
            };
            let args = run.args(&words);
            let out = cli.docker(&args);
            if kind_of(&words) != Kind::Json {
                check_ok(&out, &format!("{}: `{}`", block.at(), shown.command));
                continue;
            }
            let doc_text = shown.output.join("\n");
            let doc = Json::parse(&doc_text)
                .unwrap_or_else(|e| panic!("{}: the doc's JSON: {e}", block.at()));
            let real_text = text(&out.stdout);
            let real = Json::parse(&real_text).unwrap_or_else(|e| {
                panic!(
                    "{}: `{}` printed no JSON document ({e}); exit {:?}\n{real_text}\n{}",
                    block.at(),
                    shown.command,
                    out.status.code(),
                    text(&out.stderr)
                )
            });
            let mut differences = Vec::new();
            same_shape(&doc, &real, "", &run, &mut differences);
            if !differences.is_empty() {
                wrong.push(format!(
                    "{}: `{}`:\n  {}\n--- a real run printed:\n{real_text}",
                    block.at(),
                    shown.command,
                    differences.join("\n  ")
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

#[test]
fn summary_lines_match_a_real_runs() {
    let blocks = checked(Kind::Summary);
    assert!(!blocks.is_empty(), "no checked block with a summary line");
    let fixtures = Fixtures::load();
    let cli = Cli::new();
    let mut wrong = Vec::new();
    for (block, commands) in &blocks {
        let mut run = Run::new(&fixtures, block);
        for shown in commands {
            let Some(words) = plugin_words(&shown.command) else {
                continue;
            };
            let args = run.args(&words);
            // stdout and stderr in one pipe, in the order they were written.
            let mut command = Command::new("sh");
            command
                .args(["-c", "exec docker \"$@\" 2>&1", "sh"])
                .args(&args)
                .env("DOCKER_CONFIG", cli.config_dir())
                .env("DOCKER_CLI_HINTS", "false")
                .env_remove("NO_COLOR");
            let out = run_with_timeout(command, PLUGIN_TIMEOUT);
            let printed = text(&out.stdout);
            let real: Vec<&str> = printed.lines().filter(|l| summary_line(l)).collect();
            let doc: Vec<&String> = shown.output.iter().filter(|l| summary_line(l)).collect();
            let matches = doc.len() == real.len()
                && doc
                    .iter()
                    .zip(&real)
                    .all(|(d, r)| Pattern::of(d, &run).matches(r));
            if !matches {
                wrong.push(format!(
                    "{}: `{}` (exit {:?}) printed\n{printed}--- whose summary lines do not match the doc's:\n{}",
                    block.at(),
                    shown.command,
                    out.status.code(),
                    doc.iter().map(|l| l.as_str()).collect::<Vec<_>>().join("\n")
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

// ---------------------------------------------------------- fixtures --

/// The images the docs' examples name, loaded under unique names:
/// `mybase:1`, two layers (a busybox binary, then its applet links), and
/// `myapp:1.4` built on it, three more: `/tmp/sdk.tar` added, then
/// `/opt/sdk/lib.so` unpacked from it and the tar deleted, then
/// `/opt/sdk` deleted and `/app/hello` written. That is the shape of the
/// docs' `myapp:1.4` (built from a Dockerfile, see docs/README.md), small.
struct Fixtures {
    base: TestImage,
    app: TestImage,
}

const DOC_BASE: &str = "mybase:1";
const DOC_APP: &str = "myapp:1.4";

impl Fixtures {
    fn load() -> Fixtures {
        let base_ref = format!("{}:1", unique("docs-base"));
        let app_ref = format!("{}:1.4", unique("docs-app"));
        let base_spec = spec(
            vec![
                vec![
                    Entry::dir("bin"),
                    Entry::file("bin/busybox", pseudo_random(4096, 1)).mode(0o755),
                ],
                ["sh", "ls", "cat", "echo"]
                    .iter()
                    .map(|a| Entry::symlink(format!("bin/{a}"), "/bin/busybox"))
                    .chain([Entry::dir("bin")])
                    .collect(),
            ],
            &base_ref,
            &[
                "/bin/sh -c #(nop) COPY file:0 in /bin/busybox ",
                "/bin/busybox --install -s /bin",
            ],
        );
        let base = load_image(&base_spec, &base_ref);
        let mut sdk = Vec::new();
        {
            let mut tar = tar::Builder::new(&mut sdk);
            archive_member(&mut tar, "lib.so", &pseudo_random(16384, 2));
            tar.finish().expect("sdk.tar");
        }
        let app_spec = spec(
            vec![
                vec![Entry::dir("tmp"), Entry::file("tmp/sdk.tar", &sdk)],
                vec![
                    Entry::dir("opt"),
                    Entry::dir("opt/sdk"),
                    Entry::file("opt/sdk/lib.so", pseudo_random(16384, 2)),
                    Entry::dir("tmp"),
                    Entry::whiteout("tmp/sdk.tar"),
                ],
                vec![
                    Entry::dir("app"),
                    Entry::file("app/hello", "#!/bin/sh\necho hello from myapp\n").mode(0o755),
                    Entry::dir("opt"),
                    Entry::whiteout("opt/sdk"),
                ],
            ],
            &app_ref,
            &[
                "/bin/sh -c #(nop) COPY file:0 in /bin/busybox ",
                "/bin/busybox --install -s /bin",
                "/bin/sh -c #(nop) COPY file:1 in /tmp/sdk.tar ",
                "/bin/sh -c mkdir -p /opt/sdk && tar -xf /tmp/sdk.tar -C /opt/sdk && rm /tmp/sdk.tar",
                "/bin/sh -c rm -rf /opt/sdk && mkdir /app && printf … > /app/hello && chmod 755 /app/hello",
            ],
        )
        .on(&base_spec, &base_ref);
        let app = load_image(&app_spec, &app_ref);
        Fixtures { base, app }
    }
}

/// An image of `layers` on linux/amd64 (the docs' platform, whatever the
/// host's) with a Dockerfile's history and config. Each history entry's
/// comment, and the config's, name `reference` (what [`load_image`]
/// expects on the containerd store), so that a graphdriver engine's
/// inspect reports no comment the config lacks.
fn spec(layers: Vec<Vec<Entry>>, reference: &str, created_by: &[&str]) -> ImageSpec {
    let reference = with_tag(reference);
    let history: Vec<serde_json::Value> = created_by
        .iter()
        .map(|c| json!({"created": "2024-01-01T00:00:00Z", "created_by": c, "comment": reference}))
        .collect();
    let mut spec = ImageSpec::new(layers)
        // Every field, as the classic builder writes it: a graphdriver
        // engine's inspect reports the ones a config leaves out as zero
        // values, which a verify lists as expected.
        .with_config(json!({
            "Hostname": "",
            "Domainname": "",
            "User": "",
            "AttachStdin": false,
            "AttachStdout": false,
            "AttachStderr": false,
            "Tty": false,
            "OpenStdin": false,
            "StdinOnce": false,
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/app/hello"],
            "Image": "",
            "Volumes": null,
            "WorkingDir": "",
            "Entrypoint": null,
            "OnBuild": null,
            "Labels": null,
        }))
        .with_fields(json!({"history": history, "comment": reference}));
    spec.architecture = "amd64".into();
    spec
}

/// One block's run: the docs' names and the real ones they stand for.
struct Run {
    /// (doc's name, real name).
    names: Vec<(String, String)>,
    /// Files named by `-o`, in a directory of their own.
    dir: tempfile::TempDir,
    /// The images the block's runs may have made (each TAG), removed with
    /// the run.
    made: Vec<String>,
}

impl Run {
    fn new(fixtures: &Fixtures, block: &Block) -> Run {
        let names = vec![
            (DOC_BASE.to_owned(), fixtures.base.reference.clone()),
            (DOC_APP.to_owned(), fixtures.app.reference.clone()),
        ];
        let dir = tempfile::Builder::new()
            .prefix("dflt-docs-")
            .tempdir()
            .unwrap_or_else(|e| panic!("{}: a temporary directory: {e}", block.at()));
        Run {
            names,
            dir,
            made: Vec::new(),
        }
    }

    fn real(&self, doc: &str) -> Option<&str> {
        self.names
            .iter()
            .find(|(d, _)| d == doc)
            .map(|(_, r)| r.as_str())
    }

    /// The real name of an image the doc names: a fixture, an image an
    /// earlier command of the block made, or a new unique one.
    fn image(&mut self, doc: &str) -> String {
        if let Some(real) = self.real(doc) {
            return real.to_owned();
        }
        let tag = doc.rsplit_once(':').map_or("latest", |(_, t)| t);
        let real = format!("{}:{tag}", unique("docs-tag"));
        self.names.push((doc.to_owned(), real.clone()));
        real
    }

    /// A file `-o` names, in the run's directory; `-` stays stdout.
    fn file(&mut self, doc: &str) -> String {
        if doc == "-" {
            return doc.to_owned();
        }
        if let Some(real) = self.real(doc) {
            return real.to_owned();
        }
        let name = Path::new(doc).file_name().expect("a file name");
        let real = self
            .dir
            .path()
            .join(name)
            .to_str()
            .expect("UTF-8")
            .to_owned();
        self.names.push((doc.to_owned(), real.clone()));
        real
    }

    /// A file `-i` reads: the docs' `myapp:1.4` as `docker save` writes
    /// it (the docs make it so: `docker save myapp:1.4 -o myapp.tar`),
    /// saved into the run's directory when first named.
    fn input(&mut self, doc: &str) -> String {
        let real = self.file(doc);
        if !Path::new(&real).exists() {
            let app = self.real(DOC_APP).expect("the app fixture").to_owned();
            docker_ok(&["save", &app, "-o", &real]);
        }
        real
    }

    /// The arguments to run for the doc's `words` (after `docker`),
    /// redirections dropped; every image it may make is tracked.
    fn args(&mut self, words: &[String]) -> Vec<String> {
        const VALUE: [&str; 6] = [
            "--format",
            "--compression",
            "--platform",
            "--keep-layers",
            "--output",
            "-o",
        ];
        let verify_only = words.iter().any(|w| w == "--verify-only");
        let mut out = Vec::new();
        let mut positional = Vec::new();
        let mut i = 0;
        while i < words.len() {
            let w = words[i].as_str();
            i += 1;
            if w.starts_with("2>") || w.starts_with('>') {
                continue;
            }
            if w == "--keep-base" {
                let base = words.get(i).expect("--keep-base BASE");
                let real = self.image(base);
                out.extend([w.to_owned(), real]);
                i += 1;
            } else if w == "-i" || w == "--input" {
                let file = words.get(i).expect("-i FILE");
                let real = self.input(file);
                out.extend([w.to_owned(), real]);
                i += 1;
            } else if w == "-o" || w == "--output" {
                let file = words.get(i).expect("-o FILE");
                let real = self.file(file);
                out.extend([w.to_owned(), real]);
                i += 1;
            } else if VALUE.contains(&w) {
                out.push(w.to_owned());
                out.extend(words.get(i).cloned());
                i += 1;
            } else if w.starts_with('-') || out.is_empty() {
                // Flags, and the subcommand (`flatten`).
                out.push(w.to_owned());
            } else {
                assert!(
                    positional.is_empty() || verify_only || ![DOC_APP, DOC_BASE].contains(&w),
                    "a checked example must not flatten into {w}, which other examples read"
                );
                let real = self.image(w);
                positional.push(real.clone());
                out.push(real);
            }
        }
        // IMAGE is the first positional; TAG, the second, may be made.
        for tag in positional.iter().skip(1) {
            if !self.made.contains(tag) && !verify_only {
                self.made.push(tag.clone());
            }
        }
        out
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        // A guard that knows the ID removes the image once no other tag
        // points at it.
        for tag in self.made.drain(..) {
            drop(TestImage::track(&tag));
        }
    }
}

// ---------------------------------------------------- summary lines --

/// A doc's summary line with its numbers, sizes and hex IDs made
/// wildcards of their kind, and its image names the run's.
#[derive(Debug)]
struct Pattern(Vec<Piece>);

#[derive(Debug, PartialEq)]
enum Piece {
    Text(String),
    /// `12`, `0.4`.
    Number,
    /// `1.99MB`, `32B`.
    Size,
    /// Twelve or more lowercase hex digits: an ID or a digest.
    Hex,
}

/// The docker CLI's units (decimal), as the plugin prints sizes.
const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];

impl Pattern {
    fn of(line: &str, run: &Run) -> Pattern {
        let line = squeeze(line);
        let mut names: Vec<&(String, String)> = run.names.iter().collect();
        names.sort_by_key(|(doc, _)| std::cmp::Reverse(doc.len()));
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = line.as_str();
        while !rest.is_empty() {
            let after_name = literal.ends_with(name_char);
            // A name ends where no name character follows, or a `:` after
            // its tag (`TAG: 5 layers`).
            let name = names.iter().find(|(doc, _)| {
                rest.strip_prefix(doc.as_str()).is_some_and(|after| {
                    !after.starts_with(name_char) || (after.starts_with(':') && doc.contains(':'))
                })
            });
            if let (false, Some((doc, real))) = (after_name, name) {
                literal.push_str(real);
                rest = &rest[doc.len()..];
                continue;
            }
            let hex = rest
                .bytes()
                .take_while(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
                .count();
            let bounded = |n: usize| !rest[n..].starts_with(|c: char| c.is_ascii_alphanumeric());
            let after_word = literal.ends_with(|c: char| c.is_ascii_alphanumeric());
            if hex >= 12 && bounded(hex) && !after_word {
                pieces.push(Piece::Text(std::mem::take(&mut literal)));
                pieces.push(Piece::Hex);
                rest = &rest[hex..];
                continue;
            }
            let digits = number_len(rest);
            // Layer counts and positions hold for the fixture as for the
            // doc's image: `5 layers`, `layer 3`, the dry run's `Layers:`.
            let layers = rest[digits..].starts_with(" layer")
                || literal.ends_with("layer ")
                || line.starts_with("Layers:");
            if digits > 0 && !after_word && !layers {
                pieces.push(Piece::Text(std::mem::take(&mut literal)));
                match size_len(rest) {
                    Some(n) => {
                        pieces.push(Piece::Size);
                        rest = &rest[n..];
                    }
                    None => {
                        pieces.push(Piece::Number);
                        rest = &rest[digits..];
                    }
                }
                continue;
            }
            let c = rest.chars().next().expect("not empty");
            literal.push(c);
            rest = &rest[c.len_utf8()..];
        }
        pieces.push(Piece::Text(literal));
        pieces.retain(|p| *p != Piece::Text(String::new()));
        Pattern(pieces)
    }

    fn matches(&self, line: &str) -> bool {
        let line = squeeze(line);
        let mut rest = line.as_str();
        for piece in &self.0 {
            let taken = match piece {
                Piece::Text(t) => rest.starts_with(t.as_str()).then_some(t.len()),
                Piece::Number => Some(number_len(rest)).filter(|&n| n > 0),
                Piece::Size => size_len(rest),
                Piece::Hex => Some(
                    rest.bytes()
                        .take_while(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
                        .count(),
                )
                .filter(|&n| n >= 12),
            };
            match taken {
                Some(n) => rest = &rest[n..],
                None => return false,
            }
        }
        rest.is_empty()
    }
}

/// Whether `c` may be part of an image reference or a path.
fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "._-:/@".contains(c)
}

/// The length of the size `rest` starts with, a number and a unit, as the
/// docker CLI writes it (`18.8MB`) or with a space (`3.1 MB/s`); `None` if
/// it starts with none.
fn size_len(rest: &str) -> Option<usize> {
    let n = number_len(rest);
    let after = &rest[n..];
    let (gap, after) = match after.strip_prefix(' ') {
        Some(r) => (1, r),
        None => (0, after),
    };
    UNITS
        .iter()
        .find(|u| {
            n > 0
                && after
                    .strip_prefix(**u)
                    .is_some_and(|r| !r.starts_with(|c: char| c.is_ascii_alphanumeric()))
        })
        .map(|u| n + gap + u.len())
}

/// The length of the number `rest` starts with: `12`, `0.4`; 0 if none.
fn number_len(rest: &str) -> usize {
    let int = rest.bytes().take_while(u8::is_ascii_digit).count();
    if int == 0 {
        return 0;
    }
    let frac = rest[int..]
        .strip_prefix('.')
        .map_or(0, |r| r.bytes().take_while(u8::is_ascii_digit).count());
    if frac > 0 {
        int + 1 + frac
    } else {
        int
    }
}

/// Trimmed, with each run of spaces one space: columns may be padded to
/// other widths.
fn squeeze(line: &str) -> String {
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

// -------------------------------------------------------------- JSON --

/// A JSON value that keeps its objects' key order (serde_json's `Value`
/// sorts them unless a feature the plugin must not get is on).
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    /// The number as written; `float` when it has a fraction or exponent.
    Number {
        text: String,
        float: bool,
    },
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    fn parse(text: &str) -> Result<Json, String> {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.space();
        if p.i != p.s.len() {
            return Err(format!("trailing text at byte {}", p.i));
        }
        Ok(v)
    }

    fn type_name(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "boolean",
            Json::Number { float: false, .. } => "integer",
            Json::Number { float: true, .. } => "number with a fraction",
            Json::String(_) => "string",
            Json::Array(_) => "array",
            Json::Object(_) => "object",
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn space(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, word: &str) -> Result<(), String> {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(())
        } else {
            Err(format!("expected {word:?} at byte {}", self.i))
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.space();
        match self.s.get(self.i) {
            None => Err("unexpected end".into()),
            Some(b'n') => self.eat("null").map(|()| Json::Null),
            Some(b't') => self.eat("true").map(|()| Json::Bool(true)),
            Some(b'f') => self.eat("false").map(|()| Json::Bool(false)),
            Some(b'"') => self.string().map(Json::String),
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.space();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Array(items));
                }
                loop {
                    items.push(self.value()?);
                    self.space();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Array(items));
                        }
                        _ => return Err(format!("expected , or ] at byte {}", self.i)),
                    }
                }
            }
            Some(b'{') => {
                self.i += 1;
                let mut fields = Vec::new();
                self.space();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Object(fields));
                }
                loop {
                    self.space();
                    let key = self.string()?;
                    self.space();
                    self.eat(":")?;
                    fields.push((key, self.value()?));
                    self.space();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Object(fields));
                        }
                        _ => return Err(format!("expected , or }} at byte {}", self.i)),
                    }
                }
            }
            Some(_) => {
                let start = self.i;
                while self.i < self.s.len()
                    && matches!(
                        self.s[self.i],
                        b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                    )
                {
                    self.i += 1;
                }
                let text = std::str::from_utf8(&self.s[start..self.i]).expect("ASCII");
                if text.is_empty() || text.parse::<f64>().is_err() {
                    return Err(format!("not a JSON value at byte {start}"));
                }
                let float = text.contains(['.', 'e', 'E']);
                Ok(Json::Number {
                    text: text.to_owned(),
                    float,
                })
            }
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.eat("\"")?;
        let start = self.i;
        let mut escaped = false;
        while let Some(&b) = self.s.get(self.i) {
            self.i += 1;
            match (escaped, b) {
                (false, b'\\') => escaped = true,
                (false, b'"') => {
                    let raw = &self.s[start - 1..self.i];
                    // serde_json decodes the escapes.
                    return serde_json::from_slice(raw).map_err(|e| e.to_string());
                }
                _ => escaped = false,
            }
        }
        Err("a string that never ends".into())
    }
}

/// Paths (`.`-joined keys, `[]` for any array element) whose values depend
/// on the engine under test, not on the run: the store, its endpoint, the
/// compression it takes by default, and the manifest digests that only the
/// containerd store has (null on a graphdriver).
const ENGINE_DEPENDENT: [&str; 5] = [
    "compression",
    "engine.endpoint",
    "engine.store",
    "platforms[].source.manifest",
    "platforms[].result.manifest",
];

/// String values that vary from run to run: build steps of the fixture's
/// history, and what a verify shows of the two values it compared.
const VARYING_STRINGS: [&str; 3] = ["created_by", "image", "result"];

/// Integer values that hold for the fixture as for the doc's image; every
/// other number (sizes, bytes, times, counts of files) varies.
const FIXED_NUMBERS: [&str; 6] = [
    "layers",
    "kept_layers",
    "attestations_dropped",
    "index",
    "layer",
    "removed_by",
];

/// Compares the doc's `doc` with the real `real` at `path`: keys and their
/// order, types, and the values that do not vary.
fn same_shape(doc: &Json, real: &Json, path: &str, run: &Run, out: &mut Vec<String>) {
    let at = if path.is_empty() {
        "(the document)"
    } else {
        path
    };
    let key = path.rsplit(['.', ']']).next().unwrap_or(path);
    let engine_dependent = ENGINE_DEPENDENT.contains(&path);
    match (doc, real) {
        (Json::Object(d), Json::Object(r)) => {
            let (dk, rk): (Vec<&str>, Vec<&str>) = (
                d.iter().map(|(k, _)| k.as_str()).collect(),
                r.iter().map(|(k, _)| k.as_str()).collect(),
            );
            if dk != rk {
                out.push(format!("{at}: keys {dk:?} in the doc, {rk:?} for real"));
                return;
            }
            for ((k, dv), (_, rv)) in d.iter().zip(r) {
                let sub = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                same_shape(dv, rv, &sub, run, out);
            }
        }
        (Json::Array(d), Json::Array(r)) => {
            if d.len() != r.len() {
                out.push(format!(
                    "{at}: {} elements in the doc, {} for real",
                    d.len(),
                    r.len()
                ));
                return;
            }
            for (dv, rv) in d.iter().zip(r) {
                same_shape(dv, rv, &format!("{path}[]"), run, out);
            }
        }
        (Json::Null | Json::String(_), Json::Null | Json::String(_)) if engine_dependent => {}
        (Json::String(d), Json::String(r)) => {
            let digest = |s: &str| {
                s.strip_prefix("sha256:")
                    .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            };
            if digest(d) {
                if !digest(r) {
                    out.push(format!("{at}: a digest in the doc, {r:?} for real"));
                }
            } else if !VARYING_STRINGS.contains(&key) && !Pattern::of(d, run).matches(r) {
                out.push(format!("{at}: {d:?} in the doc, {r:?} for real"));
            }
        }
        (Json::Number { text: d, float: df }, Json::Number { text: r, float: rf }) => {
            if df != rf {
                out.push(format!(
                    "{at}: {} in the doc, {} for real",
                    doc.type_name(),
                    real.type_name()
                ));
            } else if FIXED_NUMBERS.contains(&key) && d != r {
                out.push(format!("{at}: {d} in the doc, {r} for real"));
            }
        }
        (Json::Bool(d), Json::Bool(r)) if d != r => {
            out.push(format!("{at}: {d} in the doc, {r} for real"));
        }
        (Json::Bool(_), Json::Bool(_)) | (Json::Null, Json::Null) => {}
        _ => out.push(format!(
            "{at}: {} in the doc, {} for real",
            doc.type_name(),
            real.type_name()
        )),
    }
}

#[test]
fn the_checkers_tell_right_from_wrong() {
    // The pattern: numbers, sizes and IDs by kind, all else exactly.
    let fixtures_free = Run {
        names: vec![("myapp:1.4".into(), "dflt-x:1.4".into())],
        dir: tempfile::tempdir().unwrap(),
        made: Vec::new(),
    };
    let run = &fixtures_free;
    let line = "Flattened myapp:1.4 → myapp:1.4-flat: 5 layers → 1 layer, 18.8MB → 1.99MB, in 0.4s";
    let p = Pattern::of(line, run);
    assert!(p.matches(
        "Flattened dflt-x:1.4 → myapp:1.4-flat: 5 layers → 1 layer, 20.5kB → 3B, in 12.0s"
    ));
    assert!(!p.matches(
        "Flattened dflt-x:1.4 → myapp:1.4-flat: 5 layers → 3 layers, 20.5kB → 3B, in 1.0s"
    ));
    assert!(
        !p.matches("Flattened myapp:1.4 → myapp:1.4-flat: 5 layers → 1 layer, 1B → 1B, in 1.0s")
    );
    assert!(!p.matches(
        "Flattened dflt-x:1.4 → myapp:1.4-flat: 4 layers → 1 layer, 20.5kB → 3B, in 12.0s"
    ));
    // Sizes in the docker CLI's units only: a binary unit is not one.
    assert!(!p.matches(
        "Flattened dflt-x:1.4 → myapp:1.4-flat: 5 layers → 1 layer, 20.00 KiB → 3 B, in 12.0s"
    ));
    let totals = Pattern::of("Layers: 5 → 3 (bottom 2 layers kept)", &fixtures_free);
    assert!(totals.matches("Layers:  5 → 3 (bottom 2 layers kept)"));
    assert!(!totals.matches("Layers:  5 → 1"));
    // A name, not its prefix; the `:` after a TAG ends it.
    let mut named = Run {
        names: fixtures_free.names.clone(),
        dir: tempfile::tempdir().unwrap(),
        made: Vec::new(),
    };
    named
        .names
        .push(("myapp:1.4-flat".into(), "dflt-y:1.4-flat".into()));
    let p = Pattern::of(line, &named);
    assert!(p.matches(
        "Flattened dflt-x:1.4 → dflt-y:1.4-flat: 5 layers → 1 layer, 20.5kB → 3B, in 12.0s"
    ));
    assert!(!p.matches(
        "Flattened dflt-x:1.4 → dflt-x:1.4-flat: 5 layers → 1 layer, 20.5kB → 3B, in 12.0s"
    ));
    let id = Pattern::of(
        "sha256:01c542e095c193f1bec6cfcfe12c31ac347808d624f83329f30b5ce6483bb6d5",
        run,
    );
    assert!(id.matches("sha256:d9fcff8a175cc9530ff20adc15a6dc8b111a4e60da71af0dcd571ac2ba178906"));
    assert!(!id.matches("sha256:"));
    // The structure: keys in order, types, fixed values.
    let doc = Json::parse(r#"{"a": 1, "mode": "export", "b": [true], "id": "sha256:0000000000000000000000000000000000000000000000000000000000000000"}"#).unwrap();
    let check = |real: &str| {
        let mut out = Vec::new();
        same_shape(&doc, &Json::parse(real).unwrap(), "", run, &mut out);
        out
    };
    let id = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    assert!(check(&format!(
        r#"{{"a": 7, "mode": "export", "b": [true], "id": "{id}"}}"#
    ))
    .is_empty());
    for wrong in [
        format!(r#"{{"mode": "export", "a": 7, "b": [true], "id": "{id}"}}"#),
        format!(r#"{{"a": 7, "mode": "exact", "b": [true], "id": "{id}"}}"#),
        format!(r#"{{"a": 7, "mode": "export", "b": [false], "id": "{id}"}}"#),
        format!(r#"{{"a": 7, "mode": "export", "b": [], "id": "{id}"}}"#),
        format!(r#"{{"a": 7.5, "mode": "export", "b": [true], "id": "{id}"}}"#),
        r#"{"a": 7, "mode": "export", "b": [true], "id": null}"#.to_owned(),
        format!(r#"{{"a": 7, "mode": "export", "b": [true], "id": "{id}", "new": 1}}"#),
    ] {
        assert!(!check(&wrong).is_empty(), "{wrong} passed");
    }
    // Marks and kinds.
    let words = |c: &str| plugin_words(c).unwrap();
    assert_eq!(kind_of(&words("docker flatten --help")), Kind::Static);
    assert_eq!(
        kind_of(&words("docker __complete flatten --compression ''")),
        Kind::Static
    );
    assert_eq!(
        kind_of(&words(
            "docker flatten --format json myapp:1.4 t 2>/dev/null"
        )),
        Kind::Json
    );
    assert_eq!(kind_of(&words("docker flatten myapp:1.4 t")), Kind::Summary);
    assert!(plugin_words("docker load -i x.tar").is_none());
    assert_eq!(shell_words("a 'b c' \"d\" ''"), ["a", "b c", "d", ""]);
}
