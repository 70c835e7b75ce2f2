//! The `--format json` document, for a flatten and for a dry run alike. Its
//! field names are an interface, documented in docs/json.md: add fields,
//! never rename or remove them. [`Document::new`] is the one place it is
//! put together.

use std::time::Duration;

use serde::Serialize;

use crate::engine::store::Store;
use crate::engine::Endpoint;
use crate::layers::savings::Savings;
use crate::model::compression::Compression;
use crate::verify::Report;

/// The `--format json` document.
#[derive(Debug, Serialize)]
pub struct Document<'a> {
    pub dry_run: bool,
    /// IMAGE had one layer already, so TAG now points at it; nothing rebuilt.
    pub already_flat: bool,
    pub source: Image<'a>,
    pub result: Image<'a>,
    /// Bytes that later layers delete or overwrite; known after a dry run only.
    pub wasted_bytes: Option<u64>,
    pub duration_seconds: f64,
    /// How the layer was compressed; null in a dry run and when already flat.
    pub compression: Option<Compression>,
    /// Null for a run that reached no engine (`-i` into a file).
    pub engine: Option<Engine<'a>>,
    /// The dry run's layer-by-layer findings; null for a flatten.
    pub analysis: Option<&'a Savings>,
    /// Each platform flattened, in IMAGE's index order: one for a
    /// one-platform IMAGE, none when it was already flat.
    pub platforms: Vec<PlatformEntry>,
    /// The platforms of IMAGE's index the result leaves out, and why.
    pub left_out: Vec<LeftOutEntry>,
    /// IMAGE's attestation manifests (provenance, SBOM), which the result drops.
    pub attestations_dropped: usize,
    /// How the layer is made: `export` (a container's), `exact` (IMAGE's
    /// layers merged), `keep` (merged above kept layers).
    pub mode: &'static str,
    /// Diff IDs of IMAGE's bottom layers kept as they are, bottom first.
    pub kept_layers: Vec<String>,
    /// What `--verify` found; null without it (and when already flat).
    pub verify: Option<&'a Report>,
    /// The image TAG named before, when TAG moved off it: its `id`, `size`
    /// and the `tags` it still has (none: it is now `<none>`); null
    /// otherwise.
    pub replaced: Option<&'a crate::flatten::Replaced>,
}

/// The `--format json` document of `--verify-only`, and of a flatten whose
/// verify failed (then `result.id` is null: the image was removed).
#[derive(Debug, Serialize)]
pub struct VerifyDocument<'a> {
    pub verify_only: bool,
    pub source: Image<'a>,
    /// FLAT, or TAG.
    pub result: Checked<'a>,
    pub engine: Option<Engine<'a>>,
    pub verify: &'a Report,
}

impl<'a> VerifyDocument<'a> {
    pub fn new(
        verify_only: bool,
        source: Source<'a>,
        result: (&'a str, Option<&'a str>),
        endpoint: Option<&'a Endpoint>,
        store: Option<Store>,
        verify: &'a Report,
    ) -> VerifyDocument<'a> {
        VerifyDocument {
            verify_only,
            source: source.image(),
            result: Checked {
                reference: result.0,
                id: result.1,
            },
            engine: engine(endpoint, store),
            verify,
        }
    }
}

/// The engine the run reached, if it reached one.
fn engine<'a>(endpoint: Option<&'a Endpoint>, store: Option<Store>) -> Option<Engine<'a>> {
    let (endpoint, store) = endpoint.zip(store)?;
    Some(Engine {
        endpoint: &endpoint.host,
        context: &endpoint.context,
        store,
    })
}

/// One platform of the result.
#[derive(Debug, Serialize)]
pub struct PlatformEntry {
    /// `os/arch[/variant]`; null where the engine names none.
    pub platform: Option<String>,
    pub source: PlatformImage,
    /// Null in a dry run.
    pub result: Option<PlatformResult>,
    /// The dry run's findings for this platform; null for a flatten.
    pub analysis: Option<Savings>,
}

/// One platform's image, before or after.
#[derive(Debug, Serialize)]
pub struct PlatformImage {
    /// Its manifest's digest; null on a graphdriver, which has none.
    pub manifest: Option<String>,
    pub layers: usize,
    /// Its layers' bytes as stored.
    pub size: u64,
}

/// One platform's flattened image.
#[derive(Debug, Serialize)]
pub struct PlatformResult {
    /// Its manifest's digest; null on a graphdriver, which has none.
    pub manifest: Option<String>,
    pub layers: usize,
    /// Its layers' bytes as stored.
    pub size: u64,
    /// Its config's digest: the image ID on a graphdriver, and the same
    /// for the same IMAGE and options (docs/reproducible.md).
    pub config: Option<String>,
    /// The flattened layer's diff ID (the digest of its tar) and its
    /// blob's digest (as sent, compressed).
    pub layer_diff_id: Option<String>,
    pub layer_digest: Option<String>,
}

/// A platform of IMAGE's index that the result does not hold.
#[derive(Debug, Serialize)]
pub struct LeftOutEntry {
    pub platform: String,
    pub reason: &'static str,
}

impl PlatformEntry {
    pub fn from(f: &crate::flatten::Flattened) -> PlatformEntry {
        PlatformEntry {
            platform: f.platform.as_ref().map(ToString::to_string),
            source: PlatformImage {
                manifest: f.source_manifest.clone(),
                layers: f.layers_before,
                size: f.size_before,
            },
            result: Some(PlatformResult {
                manifest: f.manifest.clone(),
                layers: f.layers_after,
                size: f.size_after,
                config: f.digests.as_ref().map(|d| d.config.clone()),
                layer_diff_id: f.digests.as_ref().map(|d| d.diff_id.clone()),
                layer_digest: f.digests.as_ref().map(|d| d.blob.clone()),
            }),
            analysis: None,
        }
    }
}

impl LeftOutEntry {
    pub fn list(left_out: &crate::model::source_index::LeftOut) -> Vec<LeftOutEntry> {
        left_out
            .absent
            .iter()
            .map(|p| LeftOutEntry {
                platform: p.to_string(),
                reason: "its content is not in the store",
            })
            .collect()
    }
}

#[derive(Debug, Serialize)]
pub struct Image<'a> {
    /// As the user wrote it (IMAGE, or TAG normalized to name:tag).
    pub reference: Option<&'a str>,
    pub id: Option<&'a str>,
    pub layers: usize,
    /// The engine's figure for the image's size, in bytes; with `--output`
    /// the archive's size.
    pub size: Option<u64>,
    /// `--output`'s FILE (`-` for stdout); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<&'a str>,
}

/// The image a verify checked.
#[derive(Debug, Serialize)]
pub struct Checked<'a> {
    pub reference: &'a str,
    pub id: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct Engine<'a> {
    /// The engine's address, e.g. `unix:///var/run/docker.sock`.
    pub endpoint: &'a str,
    /// The docker context it came from (`default` when none was used).
    pub context: &'a str,
    pub store: Store,
}

/// IMAGE as the run found it.
pub struct Source<'a> {
    pub reference: &'a str,
    pub id: &'a str,
    pub layers: usize,
    pub size: u64,
    /// `-i`'s archive, where IMAGE was read from one.
    pub file: Option<&'a str>,
}

impl<'a> Source<'a> {
    /// IMAGE as the user named it, as the run found it.
    pub fn of(
        reference: &'a str,
        file: Option<&'a str>,
        image: &'a crate::model::SourceImage,
    ) -> Source<'a> {
        Source {
            reference,
            id: &image.id,
            layers: image.layers,
            size: image.size,
            file,
        }
    }

    fn image(&self) -> Image<'a> {
        Image {
            reference: Some(self.reference),
            id: Some(self.id),
            layers: self.layers,
            size: Some(self.size),
            file: self.file,
        }
    }
}

/// What the run made of IMAGE.
pub enum Made<'a> {
    /// A flatten: TAG points at the image `id`; `compression` is `None`
    /// when IMAGE was already flat and TAG points at it.
    Image {
        reference: &'a str,
        id: &'a str,
        size: u64,
        compression: Option<Compression>,
    },
    /// A flatten into an archive `file` (`-`: stdout) of `size` bytes,
    /// that names the image `reference`.
    Archive {
        reference: &'a str,
        file: &'a str,
        size: u64,
        compression: Compression,
    },
    /// A dry run: nothing, and what flattening would save.
    DryRun {
        tag: Option<&'a str>,
        savings: &'a Savings,
    },
}

impl<'a> Document<'a> {
    pub fn new(
        source: Source<'a>,
        made: Made<'a>,
        endpoint: Option<&'a Endpoint>,
        store: Option<Store>,
        elapsed: Duration,
    ) -> Document<'a> {
        let (result, compression, already_flat, savings) = match made {
            Made::Image {
                reference,
                id,
                size,
                compression,
            } => {
                let image = Image {
                    reference: Some(reference),
                    id: Some(id),
                    layers: 1,
                    size: Some(size),
                    file: None,
                };
                (image, compression, compression.is_none(), None)
            }
            Made::Archive {
                reference,
                file,
                size,
                compression,
            } => {
                let image = Image {
                    reference: Some(reference),
                    id: None,
                    layers: 1,
                    size: Some(size),
                    file: Some(file),
                };
                (image, Some(compression), false, None)
            }
            Made::DryRun { tag, savings } => {
                let image = Image {
                    reference: tag,
                    id: None,
                    layers: 1,
                    size: None,
                    file: None,
                };
                (image, None, false, Some(savings))
            }
        };
        Document {
            dry_run: savings.is_some(),
            already_flat,
            source: source.image(),
            result,
            wasted_bytes: savings.map(|s| s.wasted_bytes),
            duration_seconds: duration_seconds(elapsed),
            compression,
            engine: engine(endpoint, store),
            analysis: savings,
            platforms: Vec::new(),
            left_out: Vec::new(),
            attestations_dropped: 0,
            mode: "export",
            kept_layers: Vec::new(),
            verify: None,
            replaced: None,
        }
    }

    /// With the platforms a flatten made and what it left out of IMAGE.
    pub fn with_platforms(
        mut self,
        platforms: &[crate::flatten::Flattened],
        left_out: &crate::model::source_index::LeftOut,
    ) -> Document<'a> {
        self.platforms = platforms.iter().map(PlatformEntry::from).collect();
        self.left_out = LeftOutEntry::list(left_out);
        self.attestations_dropped = left_out.attestations;
        self
    }

    /// With a dry run's analysis of each platform and what a flatten would
    /// leave out of IMAGE; `analysis` stays the first platform's.
    pub fn with_analyses(
        mut self,
        analysed: &[crate::flatten::Analysed],
        left_out: &crate::model::source_index::LeftOut,
    ) -> Document<'a> {
        self.platforms = analysed
            .iter()
            .map(|a| PlatformEntry {
                platform: a.platform.as_ref().map(ToString::to_string),
                source: PlatformImage {
                    manifest: a.manifest.clone(),
                    layers: a.layers,
                    size: a.size,
                },
                result: None,
                analysis: Some(a.savings.clone()),
            })
            .collect();
        self.left_out = LeftOutEntry::list(left_out);
        self.attestations_dropped = left_out.attestations;
        self
    }

    /// Adds what `--verify` found.
    pub fn verified(mut self, report: Option<&'a Report>) -> Document<'a> {
        self.verify = report;
        self
    }

    /// With the image TAG named before the run, if TAG moved off it.
    pub fn replacing(mut self, replaced: Option<&'a crate::flatten::Replaced>) -> Document<'a> {
        self.replaced = replaced;
        self
    }

    /// Says the layer was merged from IMAGE's layers above `kept` ones.
    pub fn merged(mut self, kept: Vec<String>) -> Document<'a> {
        self.mode = if kept.is_empty() { "exact" } else { "keep" };
        self.result.layers = 1 + kept.len();
        self.kept_layers = kept;
        self
    }
}

/// Seconds to the millisecond, as JSON numbers go.
fn duration_seconds(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{resolve, Env};

    fn endpoint() -> Endpoint {
        let globals = crate::engine::Selection {
            host: vec!["unix:///x".into()],
            ..Default::default()
        };
        resolve(&globals, &Env::default()).unwrap()
    }

    fn source() -> Source<'static> {
        Source {
            reference: "app:1",
            id: "sha256:01",
            layers: 2,
            size: 9,
            file: None,
        }
    }

    fn keys(v: &serde_json::Value) -> Vec<&str> {
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        keys
    }

    const FIELDS: [&str; 16] = [
        "already_flat",
        "analysis",
        "attestations_dropped",
        "compression",
        "dry_run",
        "duration_seconds",
        "engine",
        "kept_layers",
        "left_out",
        "mode",
        "platforms",
        "replaced",
        "result",
        "source",
        "verify",
        "wasted_bytes",
    ];

    #[test]
    fn a_dry_run_document_keeps_its_field_names() {
        let s = Savings {
            kept_layers: 0,
            layers: Vec::new(),
            bytes_now: 10,
            bytes_after: 4,
            wasted_bytes: 6,
            wasted_percent: 60.0,
            files_after: 1,
            largest_wasted: vec![crate::layers::savings::Wasted {
                path: "/big".into(),
                size: 6,
                layer: 1,
                removed_by: 2,
                replaced: false,
            }],
        };
        let endpoint = endpoint();
        let made = Made::DryRun {
            tag: None,
            savings: &s,
        };
        let doc = Document::new(
            source(),
            made,
            Some(&endpoint),
            Some(Store::Containerd),
            Duration::from_millis(1234),
        );
        let v = serde_json::to_value(&doc).unwrap();
        assert_eq!(keys(&v), FIELDS);
        assert_eq!(v["dry_run"], true);
        assert_eq!(v["engine"]["store"], "containerd");
        assert_eq!(v["engine"]["endpoint"], "unix:///x");
        assert_eq!(v["engine"]["context"], "default");
        assert_eq!(v["duration_seconds"], 1.234);
        assert_eq!(v["wasted_bytes"], 6);
        assert_eq!(v["compression"], serde_json::Value::Null);
        assert_eq!(v["result"]["id"], serde_json::Value::Null);
        assert_eq!(v["analysis"]["largest_wasted"][0]["removed_by"], 2);
    }

    #[test]
    fn a_flatten_document_keeps_its_field_names() {
        let endpoint = endpoint();
        let made = Made::Image {
            reference: "app:flat",
            id: "sha256:02",
            size: 5,
            compression: Some(Compression::Gzip),
        };
        let doc = Document::new(
            source(),
            made,
            Some(&endpoint),
            Some(Store::Graphdriver),
            Duration::ZERO,
        );
        let v = serde_json::to_value(&doc).unwrap();
        assert_eq!(keys(&v), FIELDS);
        assert_eq!(keys(&v["source"]), ["id", "layers", "reference", "size"]);
        assert_eq!(keys(&v["result"]), ["id", "layers", "reference", "size"]);
        assert_eq!(keys(&v["engine"]), ["context", "endpoint", "store"]);
        assert_eq!(v["dry_run"], false);
        assert_eq!(v["result"]["reference"], "app:flat");
        assert_eq!(v["result"]["layers"], 1);
        assert_eq!(
            (
                v["mode"].as_str(),
                v["kept_layers"].as_array().map(Vec::len)
            ),
            (Some("export"), Some(0))
        );
        assert_eq!(v["source"]["size"], 9);
        assert_eq!(v["compression"], "gzip");
        assert_eq!(v["analysis"], serde_json::Value::Null);
        assert_eq!(v["wasted_bytes"], serde_json::Value::Null);
    }
}
