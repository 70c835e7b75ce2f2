//! Results as plain text: the dry-run report, the closing summary, the
//! stages' labels, and the small helpers every renderer shares (plurals,
//! cutting to a width, short IDs, seconds). Pure functions from facts to
//! text; the [`Reporter`](super::Reporter) prints them.

use crate::model::source_index::LeftOut;
use std::fmt::Write as _;
use std::time::Duration;

use crate::engine::store::Store;
use crate::layers::savings::Savings;
use crate::progress::Stage;
use crate::verify::Report;

/// The facts for the closing summary of a flatten.
pub struct Summary<'a> {
    pub source: &'a str,
    pub target: &'a str,
    pub layers_before: usize,
    /// 1, or the kept layers and the merged one of a partial flatten.
    pub layers_after: usize,
    pub size_before: u64,
    pub size_after: u64,
    pub elapsed: Duration,
    /// Nothing was built: the source has one layer and TAG now points at it.
    pub already_flat: bool,
    /// Each platform flattened: `(os/arch[/variant], layers before and
    /// after, size before and after)`; said one by one when there are
    /// several.
    pub platforms: Vec<(String, (usize, usize), u64, u64)>,
}

/// The closing summary, one line.
pub fn summary(s: &Summary<'_>) -> String {
    if s.already_flat {
        return format!(
            "{} is already one layer; tagged it as {}, nothing rebuilt (use --force to rebuild it)",
            s.source, s.target
        );
    }
    if s.platforms.len() > 1 {
        let each: Vec<String> = s
            .platforms
            .iter()
            .map(|(platform, (layers, kept_and_new), before, after)| {
                format!(
                    "{platform} {} → {kept_and_new}, {} → {}",
                    count(*layers as u64, "layer"),
                    Size(*before),
                    Size(*after)
                )
            })
            .collect();
        return format!(
            "Flattened {} → {}: {} platforms ({}), in {}",
            s.source,
            s.target,
            s.platforms.len(),
            each.join("; "),
            seconds(s.elapsed)
        );
    }
    format!(
        "Flattened {} → {}: {} → {}, {} → {}, in {}",
        s.source,
        s.target,
        count(s.layers_before as u64, "layer"),
        count(s.layers_after as u64, "layer"),
        Size(s.size_before),
        Size(s.size_after),
        seconds(s.elapsed)
    )
}

/// A size as the docker CLI prints it (`docker images`, `docker history`:
/// go-units' `HumanSizeWithPrecision(n, 3)`): decimal units, three
/// significant digits, no space: `54.4MB`, `474MB`, `1.5GB`, `512B`.
pub struct Size(pub u64);

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
        let mut value = self.0 as f64;
        let mut unit = 0;
        while value >= 1000.0 && unit < UNITS.len() - 1 {
            value /= 1000.0;
            unit += 1;
        }
        // Three significant digits, trailing zeros dropped, as %.3g does
        // (but 999.95 rounds to 1000, not to 1e+03).
        let decimals = match value {
            v if v >= 99.95 => 0,
            v if v >= 9.995 => 1,
            _ => 2,
        };
        let text = format!("{value:.decimals$}");
        let text = match text.contains('.') {
            true => text.trim_end_matches('0').trim_end_matches('.'),
            false => &text,
        };
        write!(f, "{text}{}", UNITS[unit])
    }
}

/// What a verify found: `subject` (the result, or FLAT) against IMAGE,
/// then the differences the mode documents, one per line with its reason.
pub fn verified(subject: &str, image: &str, report: &Report) -> String {
    let mut said = format!(
        "Verified {subject} against the layers of {image}: {} as IMAGE's, config and platform too, in {}",
        count(report.paths, "path"),
        seconds(std::time::Duration::from_secs_f64(report.duration_seconds))
    );
    if !report.expected.is_empty() {
        let _ = write!(
            said,
            "; {} the mode documents:\n{}",
            count(report.expected.len() as u64, "expected difference"),
            report.first_expected(EXPECTED_SHOWN)
        );
    }
    said
}

/// How many expected differences a verify's note lists.
const EXPECTED_SHOWN: usize = 3;

/// What became of the image `tag` named before the run.
pub fn replaced(tag: &str, r: &crate::flatten::Replaced) -> String {
    let short = short_id(&r.id);
    match r.tags.is_empty() {
        true => format!(
            "{tag} was {short} ({}); that image is now untagged (<none>) and keeps its space: \
             remove it with docker rmi {short}",
            Size(r.size)
        ),
        false => format!(
            "{tag} was {short} ({}); that image keeps its other names: {}",
            Size(r.size),
            r.tags.join(", ")
        ),
    }
}

/// What a stage says it is doing; `what` names its subject.
pub fn stage_label(stage: Stage, what: &str) -> String {
    match stage {
        Stage::Inspect => format!("Inspecting {what}"),
        Stage::Create => format!("Creating a temporary container from {what}"),
        Stage::Stream => format!("Exporting and importing the files of {what}"),
        Stage::Spool => format!("Exporting and compressing the files of {what}"),
        Stage::Load => format!("Loading flattened {what} into the engine"),
        Stage::LoadIndex => format!("Loading every flattened platform of {what} into the engine"),
        Stage::Write => format!("Writing {what}"),
        Stage::Read => format!("Reading the layers of {what}"),
        Stage::Merge => format!("Merging the layers of {what}"),
        Stage::Verify => format!("Verifying the flattened image against the layers of {what}"),
        Stage::Configure => format!("Giving the new layer the config of {what}"),
        Stage::Tag => format!("Tagging {what}"),
        Stage::Cleanup => "Removing temporary objects".to_owned(),
    }
}

/// Facts the dry-run report names besides the analysis.
pub struct DryRunFacts<'a> {
    pub image: &'a str,
    pub id: &'a str,
    pub tag: Option<&'a str>,
    pub endpoint: &'a str,
    /// `None` for a dry run of an archive (`-i`), with no engine.
    pub store: Option<Store>,
    /// The platform reported on, when IMAGE has several or one was asked for.
    pub platform: Option<&'a str>,
    /// The first report of the run: the others follow it after a blank line.
    pub first: bool,
}

/// How the text report is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Aligned columns cut to the terminal's width.
    Table { width: usize },
    /// One fact per line, nothing cut: for logs and pipes.
    Plain,
    /// The totals alone (`--quiet`).
    Totals,
}

/// The dry-run report as text.
pub fn dry_run_text(facts: &DryRunFacts<'_>, s: &Savings, layout: Layout) -> String {
    let mut out = String::new();
    let short = short_id(facts.id);
    let on = match facts.store {
        Some(Store::Graphdriver) => format!("on {} (graphdriver store)", facts.endpoint),
        Some(Store::Containerd) => format!("on {} (containerd store)", facts.endpoint),
        None => format!("in {}", facts.endpoint),
    };
    let platform = facts
        .platform
        .map_or(String::new(), |p| format!(", platform {p},"));
    if !facts.first {
        out.push('\n');
    }
    if layout != Layout::Totals {
        let header = format!(
            "Dry run of {} ({short}){platform} {on}; nothing was changed.",
            facts.image
        );
        // On a terminal the header breaks between words, not inside one.
        let header = match layout {
            Layout::Table { width } => wrap(&header, width),
            _ => header,
        };
        let _ = writeln!(out, "{header}");
        out.push('\n');
    } else if let Some(p) = facts.platform {
        let _ = writeln!(out, "Platform: {p}");
    }
    match layout {
        Layout::Table { width } => layer_table(&mut out, s, width),
        Layout::Plain => {
            for l in &s.layers {
                let _ = writeln!(
                    out,
                    "layer {}: {} in {}, {} deleted, {} wasted; created by: {}",
                    l.index,
                    Size(l.size),
                    count(l.files, "file"),
                    l.deletes,
                    Size(l.wasted),
                    step(l.created_by.as_deref())
                );
            }
        }
        Layout::Totals => {}
    }
    if layout != Layout::Totals {
        out.push('\n');
    }
    let into = facts.tag.map(|t| format!(" as {t}")).unwrap_or_default();
    let kept = match s.kept_layers {
        0 => String::new(),
        n => format!(" (bottom {} kept)", count(n as u64, "layer")),
    };
    let _ = writeln!(
        out,
        "Layers:  {} → {}{into}{kept}",
        s.layers.len(),
        s.kept_layers + 1
    );
    let _ = writeln!(
        out,
        "Content: {} now → {} after flattening",
        Size(s.bytes_now),
        Size(s.bytes_after)
    );
    let _ = writeln!(
        out,
        "Wasted:  {} ({:.1}%) in files that later layers delete or overwrite",
        Size(s.wasted_bytes),
        s.wasted_percent
    );
    let _ = writeln!(out, "Files:   {} after flattening", s.files_after);
    if layout != Layout::Totals && !s.largest_wasted.is_empty() {
        let _ = writeln!(out, "\nLargest wasted files:");
        for w in &s.largest_wasted {
            let _ = writeln!(
                out,
                "  {:>10}  {}  (added by layer {}, {} by layer {})",
                Size(w.size).to_string(),
                w.path,
                w.layer,
                if w.replaced { "replaced" } else { "deleted" },
                w.removed_by
            );
        }
    }
    out
}

fn layer_table(out: &mut String, s: &Savings, width: usize) {
    let rows: Vec<[String; 5]> = s
        .layers
        .iter()
        .map(|l| {
            [
                l.index.to_string(),
                Size(l.size).to_string(),
                l.files.to_string(),
                l.deletes.to_string(),
                Size(l.wasted).to_string(),
            ]
        })
        .collect();
    let head = ["LAYER", "SIZE", "FILES", "DELETES", "WASTED"];
    let widths: Vec<usize> = (0..head.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([head[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: [&str; 5], last: &str| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let _ = write!(l, "{cell:>w$}  ", w = widths[i]);
        }
        // The last column stays free: writing into it makes some terminals wrap.
        let room = width.saturating_sub(1 + l.chars().count()).max(10);
        l.push_str(&cut(last, room));
        l.trim_end().to_owned()
    };
    let _ = writeln!(out, "{}", line(head, "CREATED BY"));
    for (row, layer) in rows.iter().zip(&s.layers) {
        let cells = [&*row[0], &*row[1], &*row[2], &*row[3], &*row[4]];
        let _ = writeln!(out, "{}", line(cells, &step(layer.created_by.as_deref())));
    }
}

/// A build step on one line, without the legacy builder's shell wrapper
/// around instructions that ran nothing (`/bin/sh -c #(nop) COPY …`).
fn step(created_by: Option<&str>) -> String {
    let s = created_by.unwrap_or("-");
    let s = s
        .trim_start()
        .strip_prefix("/bin/sh -c #(nop) ")
        .unwrap_or(s);
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `1 file`, `2 files`.
pub fn count(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// `s` in at most `room` characters, cut with `…`.
pub fn cut(s: &str, room: usize) -> String {
    if s.chars().count() <= room {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(room.saturating_sub(1)).collect();
    t.push('…');
    t
}

/// `text` broken into lines of fewer than `width` columns at spaces (a
/// word longer than a line stays whole): a terminal that wraps a line
/// itself breaks it anywhere, inside a size or a name.
pub fn wrap(text: &str, width: usize) -> String {
    text.split('\n')
        .map(|line| wrap_line(line, width))
        .collect::<Vec<_>>()
        .join("\n")
}

fn wrap_line(text: &str, width: usize) -> String {
    let room = width.saturating_sub(1).max(20);
    let mut out = String::new();
    let mut line = 0;
    for word in text.split(' ') {
        let len = word.chars().count();
        if line > 0 && line + 1 + len > room {
            out.push('\n');
            line = 0;
        } else if line > 0 {
            out.push(' ');
            line += 1;
        }
        out.push_str(word);
        line += len;
    }
    out
}

/// The same text for a terminal that shows only ASCII (`TERM=dumb`).
pub fn ascii(text: &str) -> String {
    text.replace('→', "->")
        .replace('…', "...")
        .replace('✓', "ok")
        .replace('✗', "x")
}

/// An image ID as `docker images` shows it: 12 hex digits, no `sha256:`.
pub fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

/// A duration as people read it: `1.2s`.
pub fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// What the result leaves out of IMAGE's index, said once each.
pub fn left_out(image: &str, left_out: &LeftOut) -> Vec<String> {
    let mut warnings = Vec::new();
    if !left_out.absent.is_empty() {
        let list: Vec<String> = left_out.absent.iter().map(ToString::to_string).collect();
        warnings.push(format!(
            "left out {} of {image}: its content is not in the store (a pull fetches only the \
             host's platform); to flatten it too, pull it (docker pull --platform {} {image}) \
             and run again",
            if list.len() == 1 {
                format!("platform {}", list[0])
            } else {
                format!("platforms {}", list.join(", "))
            },
            list[0]
        ));
    }
    if left_out.attestations > 0 {
        warnings.push(format!(
            "dropped {} attestation manifest(s) of {image} (provenance, SBOM): they describe \
             its layers, not the flattened ones",
            left_out.attestations
        ));
    }
    if !left_out.others.is_empty() {
        warnings.push(format!(
            "left out {} index entr{} of {image} that {} no image manifest ({})",
            left_out.others.len(),
            if left_out.others.len() == 1 {
                "y"
            } else {
                "ies"
            },
            if left_out.others.len() == 1 {
                "is"
            } else {
                "are"
            },
            left_out.others.join(", ")
        ));
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::savings::{LayerSavings, Wasted};

    fn savings() -> Savings {
        let layer = |index, size, wasted, step: &str| LayerSavings {
            index,
            diff_id: None,
            created_by: Some(step.to_owned()),
            size,
            files: 3,
            deletes: 0,
            wasted,
        };
        Savings {
            kept_layers: 0,
            layers: vec![
                layer(1, 4096, 1024, "/bin/sh -c #(nop) ADD rootfs.tar /"),
                layer(
                    2,
                    10,
                    0,
                    "RUN   rm -rf /var/cache/apt/archives/partial   && apt-get clean\n  && true",
                ),
            ],
            bytes_now: 4106,
            bytes_after: 3082,
            wasted_bytes: 1024,
            wasted_percent: 24.9,
            files_after: 5,
            largest_wasted: vec![Wasted {
                path: "/big".into(),
                size: 1024,
                layer: 1,
                removed_by: 2,
                replaced: false,
            }],
        }
    }

    fn facts() -> DryRunFacts<'static> {
        DryRunFacts {
            image: "app:1",
            id: "sha256:0123456789abcdef",
            tag: None,
            endpoint: "unix:///var/run/docker.sock",
            store: Some(Store::Graphdriver),
            platform: None,
            first: true,
        }
    }

    #[test]
    fn table_fits_the_terminal_and_keeps_every_layer() {
        let text = dry_run_text(&facts(), &savings(), Layout::Table { width: 60 });
        // The header, broken between words to fit, then a blank line.
        let header: Vec<&str> = text.lines().take_while(|l| !l.is_empty()).collect();
        assert!(header.iter().all(|l| l.chars().count() < 60), "{text}");
        assert!(
            header.join(" ").ends_with("; nothing was changed."),
            "{text}"
        );
        let table: Vec<&str> = text.lines().skip(header.len() + 1).take(3).collect();
        assert!(
            table[0].starts_with("LAYER") && table[0].ends_with("CREATED BY"),
            "{text}"
        );
        assert!(table.iter().all(|l| l.chars().count() < 60), "{text}");
        assert!(
            table[2].ends_with('…') && !table[2].contains('\n'),
            "{text}"
        );
        assert!(text.contains("Wasted:  1.02kB (24.9%)"), "{text}");
        assert!(table[1].ends_with("  ADD rootfs.tar /"), "{text}");
        assert!(
            text.contains("/big  (added by layer 1, deleted by layer 2)"),
            "{text}"
        );
        assert!(text.contains("0123456789ab"), "{text}");
    }

    #[test]
    fn plain_keeps_whole_steps_and_totals_stand_alone() {
        let plain = dry_run_text(&facts(), &savings(), Layout::Plain);
        assert!(plain.contains("layer 2: 10B in 3 files, 0 deleted, 0B wasted; created by: RUN rm"));
        let totals = dry_run_text(&facts(), &savings(), Layout::Totals);
        assert_eq!(totals.lines().count(), 4, "{totals}");
        assert!(totals.starts_with("Layers:  2 → 1\n"), "{totals}");
        let partial = Savings {
            kept_layers: 1,
            ..savings()
        };
        let totals = dry_run_text(&facts(), &partial, Layout::Totals);
        assert!(
            totals.starts_with("Layers:  2 → 2 (bottom 1 layer kept)\n"),
            "{totals}"
        );
    }

    #[test]
    fn summaries_say_layers_sizes_and_time() {
        let mut s = Summary {
            source: "app:1",
            target: "app:flat",
            layers_before: 1,
            layers_after: 1,
            size_before: 2048,
            size_after: 1024,
            elapsed: Duration::from_millis(1250),
            already_flat: false,
            platforms: vec![("linux/amd64".into(), (1, 1), 2048, 1024)],
        };
        assert_eq!(
            summary(&s),
            "Flattened app:1 → app:flat: 1 layer → 1 layer, 2.05kB → 1.02kB, in 1.2s"
        );
        s.platforms
            .push(("linux/arm64/v8".into(), (3, 1), 4096, 1024));
        assert_eq!(
            summary(&s),
            "Flattened app:1 → app:flat: 2 platforms (linux/amd64 1 layer → 1, 2.05kB → \
             1.02kB; linux/arm64/v8 3 layers → 1, 4.1kB → 1.02kB), in 1.2s"
        );
        s.platforms.pop();
        s.layers_before = 3;
        assert!(summary(&s).contains(": 3 layers → 1 layer,"));
        s.layers_after = 2;
        assert!(summary(&s).contains(": 3 layers → 2 layers,"));
        s.already_flat = true;
        assert!(summary(&s).starts_with("app:1 is already one layer; tagged it as app:flat"));
    }

    #[test]
    fn wrapped_lines_break_between_words_and_fit() {
        let text =
            "Flattened myapp:1.4 → myapp:1.4-flat: 5 layers → 1 layer, 401MB → 18.8MB, in 3.7s";
        for width in [30, 40, 80] {
            let wrapped = wrap(text, width);
            assert!(
                wrapped.lines().all(|l| l.chars().count() < width),
                "{wrapped}"
            );
            assert_eq!(wrapped.replace('\n', " "), text);
        }
        assert_eq!(wrap(text, 200), text);
        assert_eq!(ascii("a → b…"), "a -> b...");
    }

    #[test]
    fn sizes_read_as_the_docker_cli_prints_them() {
        for (bytes, said) in [
            (0, "0B"),
            (512, "512B"),
            (999, "999B"),
            (1000, "1kB"),
            (54_400_000, "54.4MB"),
            (54_412_345, "54.4MB"),
            (1_890_000, "1.89MB"),
            (474_123_456, "474MB"),
            (1_500_000_000, "1.5GB"),
            (999_960, "1000kB"),
            (10_050_000, "10.1MB"),
        ] {
            assert_eq!(Size(bytes).to_string(), said, "{bytes}");
        }
    }

    #[test]
    fn helpers() {
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(short_id("abc"), "abc");
        assert_eq!(count(1, "file"), "1 file");
        assert_eq!(count(0, "file"), "0 files");
    }
}
