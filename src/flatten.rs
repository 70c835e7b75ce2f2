//! The flatten pipeline: inspect IMAGE, create (never start) a container from
//! it, stream its export through [`TarFilter`] into a one-layer image with
//! IMAGE's config and platform (an import and a config-only load on the
//! graphdriver store, one load on the containerd store), point TAG at the
//! result, and remove every temporary object whatever happened.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bollard::errors::Error as EngineError;
use bollard::models::{ContainerCreateBody, HostConfig, ImageInspect};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ImportImageOptionsBuilder,
    ListContainersOptionsBuilder, ListImagesOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveImageOptionsBuilder, TagImageOptionsBuilder,
};
use bollard::{body_try_stream, Docker};
use bytes::Bytes;
use futures_util::{stream, Stream, StreamExt};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::dryrun::{self, DryRunError};
use crate::engine::InspectJson;
use crate::image_config::{self, Provenance};
use crate::progress::{Progress, Stage};
use crate::reference::Tag;
use crate::save_archive;
use crate::save_stream;
use crate::savings::Savings;
use crate::tarfilter::{self, FilterError, FilterStats, TarFilter};
use crate::upload::{self, Compression, Digests, Encoder};

/// Where the engine keeps images; it decides how the config is installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Store {
    /// Layers in a graph driver: a config-only docker-archive links the layer by diff ID.
    Graphdriver,
    /// The containerd image store: an OCI manifest links the uploaded blob by digest.
    Containerd,
}

/// Label on every object a run creates, valued with the run's ID, so that
/// cleanup finds even objects whose creation was cut short by an interrupt.
pub const RUN_LABEL: &str = "com.docker-flatten.run";
/// Also on every temporary object, valued with IMAGE's ID: says where an
/// object a run could not remove came from.
pub const SOURCE_LABEL: &str = "com.docker-flatten.source";
/// The container is never started, but the engine refuses to create one
/// without a command.
const PLACEHOLDER_CMD: &str = "/docker-flatten-never-runs";

#[derive(Debug, thiserror::Error)]
pub enum FlattenError {
    #[error(
        "no such image \"{image}\" on {endpoint}: build or pull it first (docker pull {image})"
    )]
    NoSuchImage { image: String, endpoint: String },
    #[error("{step} failed on {endpoint}: {detail}")]
    Engine {
        step: String,
        endpoint: String,
        detail: String,
        source: EngineError,
    },
    #[error("exporting the filesystem of {image} from {endpoint} failed: {source}")]
    Export {
        image: String,
        endpoint: String,
        source: ExportError,
    },
    #[error(
        "writing the flattened layer of {image} to a temporary file in {} failed: {source}; \
         free space there, or set TMPDIR to a directory with room for the compressed layer",
        dir.display()
    )]
    Spool {
        image: String,
        dir: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(
        "--compression {mode} cannot be used with {engine} at {endpoint}: {why}; use {instead}"
    )]
    Unsupported {
        mode: Compression,
        endpoint: String,
        engine: String,
        why: &'static str,
        instead: &'static str,
    },
    #[error("{step} on {endpoint} gave an unexpected answer: {detail}")]
    Unexpected {
        step: String,
        endpoint: String,
        detail: String,
    },
}

/// Why the export stream failed, as seen from the filter.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{}", detail(.0))]
    Engine(#[source] EngineError),
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error("compressing the upload failed: {0}")]
    Compress(#[source] std::io::Error),
}

/// What the user asked for besides IMAGE and TAG.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// `None`: pick what suits the engine's image store.
    pub compression: Option<Compression>,
    /// Rebuild an image that already has one layer instead of only tagging it.
    pub force: bool,
}

/// What a finished flatten produced.
#[derive(Debug)]
pub struct Outcome {
    pub id: String,
    pub source_id: String,
    pub layers_before: usize,
    pub size_before: u64,
    pub size_after: u64,
    pub elapsed: Duration,
    pub filter: FilterStats,
    pub store: Store,
    /// How the layer was uploaded (meaningless when `already_flat`).
    pub compression: Compression,
    /// IMAGE had one layer already: TAG now points at it and nothing was built.
    pub already_flat: bool,
}

/// What a dry run found.
#[derive(Debug)]
pub struct DryRunOutcome {
    pub source_id: String,
    pub layers_before: usize,
    pub size_before: u64,
    pub savings: Savings,
    pub elapsed: Duration,
    pub store: Store,
}

/// The engine as far as the choice of compression cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineVersion {
    /// As the engine reports it, e.g. `20.10.24+dfsg1`.
    pub version: String,
    /// API version, e.g. (1, 41); `None` when unreadable.
    pub api: Option<(u32, u32)>,
}

/// The first API version that imports zstd layers on a graphdriver
/// engine: Engine 23 taught the classic archive code zstd.
const ZSTD_GRAPHDRIVER_API: (u32, u32) = (1, 42);

/// Why a requested compression cannot work on an engine, and what to use instead.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Refusal {
    mode: Compression,
    engine: EngineVersion,
    why: &'static str,
    instead: &'static str,
}

/// The compression to upload with on this engine, or why the requested one
/// cannot work there. Decided before any object is created.
fn choose_compression(
    requested: Option<Compression>,
    store: Store,
    engine: impl FnOnce() -> Option<EngineVersion>,
) -> Result<Compression, Refusal> {
    match (requested, store) {
        // A graphdriver store keeps layers uncompressed: compressing would only cost CPU.
        (None, Store::Graphdriver) => Ok(Compression::None),
        // The containerd store keeps the layer blob as it was loaded, and
        // pushes it so: compressed is what every registry expects.
        (None, Store::Containerd) => Ok(Compression::Gzip),
        (Some(Compression::None), Store::Containerd) => Err(Refusal {
            mode: Compression::None,
            engine: engine().unwrap_or_else(unknown_engine),
            why: "the containerd image store keeps the layer as it is sent, so it would \
                  stay uncompressed on disk and in every push",
            instead: "--compression gzip (the default there) or zstd",
        }),
        (Some(Compression::Zstd), Store::Graphdriver) => match engine() {
            Some(e) if e.api.is_some_and(|api| api < ZSTD_GRAPHDRIVER_API) => Err(Refusal {
                mode: Compression::Zstd,
                engine: e,
                why: "graphdriver engines before Engine 23 cannot import a zstd layer",
                instead: "--compression gzip or none (the default there)",
            }),
            _ => Ok(Compression::Zstd),
        },
        (Some(mode), _) => Ok(mode),
    }
}

fn unknown_engine() -> EngineVersion {
    EngineVersion {
        version: "unknown version".into(),
        api: None,
    }
}

/// `1.41` → (1, 41).
fn parse_api(version: &str) -> Option<(u32, u32)> {
    let (major, minor) = version.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Temporary objects that a run has created so far.
#[derive(Debug, Default, Clone)]
struct Created {
    /// IMAGE's ID, once inspected.
    source: Option<String>,
    containers: Vec<String>,
    imported: Option<String>,
    /// The flattened image while it is not yet tagged.
    untagged: Option<String>,
}

/// Objects cleanup could not remove, for the user to remove by hand.
#[derive(Debug, Default)]
pub struct Leftovers {
    pub containers: Vec<String>,
    pub images: Vec<String>,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty() && self.images.is_empty()
    }
}

impl std::fmt::Display for Leftovers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if !self.containers.is_empty() {
            parts.push(format!("docker rm -fv {}", self.containers.join(" ")));
        }
        if !self.images.is_empty() {
            parts.push(format!("docker rmi {}", self.images.join(" ")));
        }
        f.write_str(&parts.join("; "))
    }
}

/// One flatten against one engine.
pub struct Flattener {
    docker: Docker,
    inspect_json: InspectJson,
    endpoint: String,
    run_id: String,
    created: Mutex<Created>,
}

impl Flattener {
    pub fn new(docker: Docker, inspect_json: InspectJson, endpoint: String) -> Flattener {
        Flattener {
            docker,
            inspect_json,
            endpoint,
            run_id: run_id(),
            created: Mutex::new(Created::default()),
        }
    }

    fn engine(&self, step: impl Into<String>) -> impl FnOnce(EngineError) -> FlattenError + '_ {
        let step = step.into();
        move |source| FlattenError::Engine {
            step,
            endpoint: self.endpoint.clone(),
            detail: detail(&source),
            source,
        }
    }

    /// The labels that mark this run's temporary objects.
    fn labels(&self) -> Vec<(String, String)> {
        let source = self.created.lock().expect("created lock").source.clone();
        std::iter::once((RUN_LABEL.to_owned(), self.run_id.clone()))
            .chain(source.map(|id| (SOURCE_LABEL.to_owned(), id)))
            .collect()
    }

    fn record(&self, f: impl FnOnce(&mut Created)) {
        f(&mut self.created.lock().expect("created lock"));
    }

    /// Flattens `image` into a new image tagged `tag`. Leaves temporary
    /// objects for [`Flattener::cleanup`], which must run afterwards.
    pub async fn flatten(
        &self,
        image: &str,
        tag: &Tag,
        options: Options,
        progress: Arc<dyn Progress>,
    ) -> Result<Outcome, FlattenError> {
        let started = Instant::now();
        let store = self.store().await?;
        let compression = self.compression(options.compression, store).await?;
        progress.begin(Stage::Inspect, image);
        let source = self.inspect_source(image).await?;
        let source_id = source.id.clone().unwrap_or_default();
        self.record(|c| c.source = Some(source_id.clone()));
        let (layers_before, size_before) = layers_and_size(&source);

        if layers_before == 1 && !options.force {
            // Already the shape asked for: a rebuild would give the same
            // files under a new ID, minus the xattrs an export cannot carry.
            self.tag(&source_id, tag, progress.as_ref()).await?;
            progress.end();
            return Ok(Outcome {
                id: source_id.clone(),
                source_id,
                layers_before,
                size_before,
                size_after: size_before,
                elapsed: started.elapsed(),
                filter: FilterStats::default(),
                store,
                compression,
                already_flat: true,
            });
        }

        // A quick inspect on the graphdriver store, so asked before any
        // object exists; on the containerd store a read of the save stream,
        // which runs beside the export instead.
        let inspected_config = match store {
            Store::Graphdriver => Some(self.inspected_config(&source, image).await?),
            Store::Containerd => None,
        };
        progress.begin(Stage::Create, image);
        let container = self
            .create_container(&source_id, format!("creating a container from {image}"))
            .await?;

        let provenance = Provenance {
            reference: image,
            layers: layers_before,
        };
        progress.expect_bytes(size_before);
        let (id, filter) = match inspected_config {
            Some(config) => {
                let source = Source {
                    inspect: &source,
                    config: &config,
                };
                self.through_import(&container, &source, image, &provenance, progress.clone())
                    .await?
            }
            None => {
                self.through_load(
                    &container,
                    &source,
                    self.saved_config(&source, image),
                    &provenance,
                    compression,
                    progress.clone(),
                )
                .await?
            }
        };

        self.tag(&id, tag, progress.as_ref()).await?;
        self.record(|c| c.untagged = None);
        let size_after = self
            .docker
            .inspect_image(&id)
            .await
            .map_err(self.engine("inspecting the flattened image"))?
            .size
            .unwrap_or(0)
            .max(0) as u64;
        progress.end();
        Ok(Outcome {
            id,
            source_id,
            layers_before,
            size_before,
            size_after,
            elapsed: started.elapsed(),
            filter,
            store,
            compression,
            already_flat: false,
        })
    }

    /// Reads IMAGE's layers as `docker save` would and works out what
    /// flattening would gain. Creates nothing on the engine.
    pub async fn dry_run(
        &self,
        image: &str,
        progress: Arc<dyn Progress>,
    ) -> Result<DryRunOutcome, FlattenError> {
        let started = Instant::now();
        progress.begin(Stage::Inspect, image);
        let source = self.inspect_source(image).await?;
        let source_id = source.id.clone().unwrap_or_default();
        let (layers_before, size_before) = layers_and_size(&source);
        let store = self.store().await?;
        progress.expect_bytes(size_before);
        progress.begin(Stage::Read, image);
        let step = format!("reading the layers of {image}");
        let savings = dryrun::analyze(self.docker.export_image(&source_id), progress.as_ref())
            .await
            .map_err(|e| match e {
                DryRunError::Engine(e) => self.engine(step.clone())(e),
                DryRunError::Savings(e) => FlattenError::Unexpected {
                    step: step.clone(),
                    endpoint: self.endpoint.clone(),
                    detail: e.to_string(),
                },
            })?;
        progress.end();
        Ok(DryRunOutcome {
            source_id,
            layers_before,
            size_before,
            savings,
            elapsed: started.elapsed(),
            store,
        })
    }

    /// Points `tag` at the image `id`.
    async fn tag(&self, id: &str, tag: &Tag, progress: &dyn Progress) -> Result<(), FlattenError> {
        progress.begin(Stage::Tag, &tag.to_string());
        let options = TagImageOptionsBuilder::default()
            .repo(&tag.repo)
            .tag(&tag.tag)
            .build();
        self.docker
            .tag_image(id, Some(options))
            .await
            .map_err(self.engine(format!("tagging {tag}")))
    }

    /// The upload's compression on this engine; asks the engine its version
    /// only when the answer depends on it.
    async fn compression(
        &self,
        requested: Option<Compression>,
        store: Store,
    ) -> Result<Compression, FlattenError> {
        let needs_version = matches!(
            (requested, store),
            (Some(Compression::Zstd), Store::Graphdriver)
                | (Some(Compression::None), Store::Containerd)
        );
        let engine = if needs_version {
            let v = self
                .docker
                .version()
                .await
                .map_err(self.engine("reading the engine version"))?;
            Some(EngineVersion {
                version: v.version.unwrap_or_else(|| "unknown version".into()),
                api: v.api_version.as_deref().and_then(parse_api),
            })
        } else {
            None
        };
        choose_compression(requested, store, || engine).map_err(|refusal| {
            let kind = match store {
                Store::Graphdriver => "graphdriver",
                Store::Containerd => "containerd image store",
            };
            FlattenError::Unsupported {
                mode: refusal.mode,
                endpoint: self.endpoint.clone(),
                engine: format!("Engine {} ({kind})", refusal.engine.version),
                why: refusal.why,
                instead: refusal.instead,
            }
        })
    }

    /// IMAGE's config on the graphdriver store, for the fields the
    /// flattened config carries over: the engine's inspect, as sent, holds
    /// them all (but `os.features`) under its own names. A `docker save`
    /// would have the engine write the whole image to its disk first.
    async fn inspected_config(
        &self,
        source: &ImageInspect,
        image: &str,
    ) -> Result<serde_json::Value, FlattenError> {
        let inspect = self
            .inspect_json
            .image(source.id.as_deref().unwrap_or(image))
            .await
            .map_err(self.engine(format!("reading the config of {image}")))?;
        Ok(image_config::from_inspect(&inspect))
    }

    /// IMAGE's config on the containerd store, whose inspect reports the
    /// engine's own version as `DockerVersion` and leaves out `comment` and
    /// `container_config`: the config blob itself, from IMAGE's save stream,
    /// which streams from the content store as it goes and is dropped as
    /// soon as the config has come. That can be the whole stream (blobs come
    /// in digest order), so this runs beside the export.
    async fn saved_config(
        &self,
        source: &ImageInspect,
        image: &str,
    ) -> Result<serde_json::Value, FlattenError> {
        let id = source.id.as_deref().unwrap_or(image);
        let step = format!("reading the config of {image}");
        let diff_ids = source
            .root_fs
            .as_ref()
            .and_then(|r| r.layers.clone())
            .unwrap_or_default();
        let os = source.os.clone().unwrap_or_default();
        let arch = source.architecture.clone().unwrap_or_default();
        let found = save_stream::read(
            self.docker.export_image(id),
            |_| {},
            move |save| save_archive::find_config(save, &diff_ids, &os, &arch),
        )
        .await
        .map_err(self.engine(step.clone()))?;
        let detail = match found {
            Ok(Some(config)) => return Ok(config),
            Ok(None) => {
                format!("its save stream holds no config for its layers and platform ({id})")
            }
            Err(e) => format!("its save stream is not a valid archive: {e}"),
        };
        Err(FlattenError::Unexpected {
            step,
            endpoint: self.endpoint.clone(),
            detail,
        })
    }

    async fn inspect_source(&self, image: &str) -> Result<ImageInspect, FlattenError> {
        match self.docker.inspect_image(image).await {
            Err(EngineError::DockerResponseServerError {
                status_code: 404, ..
            }) => Err(FlattenError::NoSuchImage {
                image: image.to_owned(),
                endpoint: self.endpoint.clone(),
            }),
            other => other.map_err(self.engine(format!("inspecting image {image}"))),
        }
    }

    async fn store(&self) -> Result<Store, FlattenError> {
        let info = self
            .docker
            .info()
            .await
            .map_err(self.engine("reading engine info"))?;
        let containerd = info.driver_status.unwrap_or_default().iter().any(|pair| {
            pair.first().map(String::as_str) == Some("driver-type")
                && pair.get(1).map(String::as_str) == Some("io.containerd.snapshotter.v1")
        });
        Ok(if containerd {
            Store::Containerd
        } else {
            Store::Graphdriver
        })
    }

    /// Creates (never starts) a container of this run from `image_id`.
    async fn create_container(&self, image_id: &str, step: String) -> Result<String, FlattenError> {
        let body = ContainerCreateBody {
            image: Some(image_id.to_owned()),
            cmd: Some(vec![PLACEHOLDER_CMD.to_owned()]),
            // "/" always exists, so the engine creates no WORKDIR directory
            // that would then show up in the export.
            working_dir: Some("/".to_owned()),
            network_disabled: Some(true),
            labels: Some(self.labels().into_iter().collect()),
            host_config: Some(HostConfig {
                network_mode: Some("none".to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let name = format!("docker-flatten-{}", self.run_id);
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        let response = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(self.engine(step))?;
        self.record(|c| c.containers.push(response.id.clone()));
        Ok(response.id)
    }

    /// The graphdriver way: the export streams into an image import, and a
    /// config-only `docker load` links the imported layer by diff ID. The
    /// engine writes the files once and keeps the layer uncompressed.
    async fn through_import(
        &self,
        container: &str,
        source: &Source<'_>,
        image: &str,
        provenance: &Provenance<'_>,
        progress: Arc<dyn Progress>,
    ) -> Result<(String, FilterStats), FlattenError> {
        progress.begin(Stage::Stream, image);
        let root = tarfilter::root_entry(export_root(source.inspect), None);
        let (body, export) = self
            .export_stream(container, image, root, Compression::None, progress.clone())
            .await?;
        let platform = [
            source.inspect.os.as_deref(),
            source.inspect.architecture.as_deref(),
            source.inspect.variant.as_deref(),
        ]
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("/");
        let options = CreateImageOptionsBuilder::default()
            .from_src("-")
            .platform(&platform)
            .changes(vec![format!(
                "LABEL {}",
                self.labels()
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            )])
            .build();
        let mut responses =
            self.docker
                .create_image(Some(options), Some(body_try_stream(body)), None);
        let mut imported = None;
        let mut engine_error = None;
        while let Some(item) = responses.next().await {
            match item {
                Ok(info) => {
                    if let Some(status) = info.status.filter(|s| s.starts_with("sha256:")) {
                        imported = Some(status);
                    }
                }
                Err(e) => {
                    engine_error = Some(e);
                    break;
                }
            }
        }
        if let Some(id) = &imported {
            self.record(|c| c.imported = Some(id.clone()));
        }
        // An export failure makes the import fail too; the export's is the cause to report.
        if let Some(source) = export.failure() {
            return Err(self.export_failed(image, source));
        }
        if let Some(e) = engine_error {
            return Err(self.engine(format!("importing the filesystem of {image}"))(
                e,
            ));
        }
        let (filter, layer) = export.result();
        let Some(imported) = imported else {
            return Err(FlattenError::Unexpected {
                step: format!("importing the filesystem of {image}"),
                endpoint: self.endpoint.clone(),
                detail: "no image ID in the response".into(),
            });
        };

        progress.begin(Stage::Configure, image);
        let imported_layers = self
            .docker
            .inspect_image(&imported)
            .await
            .map_err(self.engine("inspecting the imported layer"))?
            .root_fs
            .and_then(|r| r.layers)
            .unwrap_or_default();
        if imported_layers != [layer.diff_id.clone()] {
            return Err(FlattenError::Unexpected {
                step: format!("importing the filesystem of {image}"),
                endpoint: self.endpoint.clone(),
                detail: format!(
                    "expected the one layer {}, the engine has {imported_layers:?}",
                    layer.diff_id
                ),
            });
        }
        let config = source.flattened(provenance, &layer.diff_id);
        let id = self.install_config(&config, &layer).await?;
        Ok((id, filter))
    }

    /// The containerd-store way: the export, compressed, goes to an unnamed
    /// temporary file, then into one `docker load` together with the config.
    /// An import would have the engine write the files twice: once for the
    /// import, and again for the loaded image, which cannot claim the
    /// import's snapshot. A tar member needs its size before its bytes,
    /// hence the file; it vanishes with the process whatever happens.
    ///
    /// `config` (IMAGE's config, read from its save stream) runs while the
    /// export is written to the file: it is needed only afterwards.
    async fn through_load(
        &self,
        container: &str,
        inspect: &ImageInspect,
        config: impl std::future::Future<Output = Result<serde_json::Value, FlattenError>>,
        provenance: &Provenance<'_>,
        compression: Compression,
        progress: Arc<dyn Progress>,
    ) -> Result<(String, FilterStats), FlattenError> {
        let image = provenance.reference;
        progress.begin(Stage::Spool, image);
        // The store keys a layer's snapshot by its digest, and a loaded
        // image whose snapshot already exists (another flatten of the same
        // files, an earlier one, a concurrent one) is never unpacked, so it
        // never claims that snapshot and breaks when the other image goes.
        // A comment only this run writes makes the digest its own; the
        // files stay the same.
        let comment = format!("docker-flatten run {}", self.run_id);
        let root = tarfilter::root_entry(export_root(inspect), Some(&comment));
        let (body, export) = self
            .export_stream(container, image, root, compression, progress.clone())
            .await?;
        let spool_error = |source| FlattenError::Spool {
            image: image.to_owned(),
            dir: std::env::temp_dir(),
            source,
        };
        let mut file = tokio::fs::File::from_std(tempfile::tempfile().map_err(spool_error)?);
        let spool = async {
            let mut body = std::pin::pin!(body);
            while let Some(chunk) = body.next().await {
                // An error item means the export failed; `failed` says why.
                let Ok(chunk) = chunk else { break };
                file.write_all(&chunk).await?;
            }
            file.flush().await
        };
        let (written, source_config) = tokio::join!(spool, config);
        if let Some(source) = export.failure() {
            return Err(self.export_failed(image, source));
        }
        written.map_err(spool_error)?;
        let source = Source {
            inspect,
            config: &source_config?,
        };
        let (filter, layer) = export.result();

        let config = source.flattened(provenance, &layer.diff_id);
        let bytes = serde_json::to_vec(&config).expect("a JSON value serializes");
        let archive = image_config::oci_archive(&bytes, &layer, &image_config::platform(&config))
            .map_err(|e| FlattenError::Unexpected {
            step: "writing the image archive".into(),
            endpoint: self.endpoint.clone(),
            detail: e.to_string(),
        })?;
        progress.expect_bytes(layer.blob_size);
        progress.begin(Stage::Load, image);
        file.seek(std::io::SeekFrom::Start(0))
            .await
            .map_err(spool_error)?;
        let blob = spooled(file, layer.blob_size, progress);
        let body = stream::once(async { Ok(archive.head) })
            .chain(blob)
            .chain(stream::once(async { Ok(archive.tail) }));
        let id = self
            .load(archive.id, body, "loading the flattened image")
            .await?;
        Ok((id, filter))
    }

    fn export_failed(&self, image: &str, source: ExportError) -> FlattenError {
        FlattenError::Export {
            image: image.to_owned(),
            endpoint: self.endpoint.clone(),
            source,
        }
    }

    /// The export of `container`, filtered and encoded, ready to be sent.
    async fn export_stream(
        &self,
        container: &str,
        image: &str,
        preamble: Bytes,
        compression: Compression,
        progress: Arc<dyn Progress>,
    ) -> Result<
        (
            impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
            ExportStatus,
        ),
        FlattenError,
    > {
        let failure: Arc<Mutex<Option<ExportError>>> = Arc::default();
        let result: Arc<Mutex<(FilterStats, Digests)>> = Arc::default();
        let encoder = Encoder::new(compression, upload::workers())
            .map_err(|e| self.export_failed(image, ExportError::Compress(e)))?;
        let body = filtered(
            self.docker.export_container(container),
            preamble,
            encoder,
            progress,
            failure.clone(),
            result.clone(),
        );
        Ok((body, ExportStatus { failure, result }))
    }

    /// Gives the imported layer the source's config through `docker load` of
    /// an archive that holds the config but not the layer, which the engine
    /// already has: exact for every field, the platform included.
    async fn install_config(
        &self,
        config: &serde_json::Value,
        layer: &Digests,
    ) -> Result<String, FlattenError> {
        let bytes = serde_json::to_vec(config).expect("a JSON value serializes");
        let archive = image_config::config_only_archive(&bytes, &layer.diff_id).map_err(|e| {
            FlattenError::Unexpected {
                step: "writing the config archive".into(),
                endpoint: self.endpoint.clone(),
                detail: e.to_string(),
            }
        })?;
        let body = stream::once(async move { Ok::<_, std::io::Error>(archive) });
        self.load(
            image_config::image_id(&bytes),
            body,
            "loading the flattened image's config",
        )
        .await
    }

    /// `docker load` of `archive`, which gives the image `id`.
    async fn load(
        &self,
        id: String,
        archive: impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
        step: &str,
    ) -> Result<String, FlattenError> {
        let existed = self.docker.inspect_image(&id).await.is_ok();
        if !existed {
            self.record(|c| c.untagged = Some(id.clone()));
        }
        let options = ImportImageOptionsBuilder::default().quiet(true).build();
        let mut responses = self.docker.import_image_stream(options, archive, None);
        while let Some(item) = responses.next().await {
            item.map_err(self.engine(step))?;
        }
        self.docker
            .inspect_image(&id)
            .await
            .map_err(self.engine(step))?;
        Ok(id)
    }

    /// What this run has made so far, for the user to remove when cleanup
    /// is skipped; objects whose creation was cut short carry [`RUN_LABEL`].
    pub fn made_so_far(&self) -> Leftovers {
        let created = self.created.lock().expect("created lock").clone();
        Leftovers {
            containers: created.containers,
            images: created
                .untagged
                .into_iter()
                .chain(created.imported)
                .collect(),
        }
    }

    /// This run's value of [`RUN_LABEL`].
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Removes every temporary object of this run, and the flattened image
    /// too if it never got its tag. Returns what could not be removed.
    pub async fn cleanup(&self, progress: &dyn Progress) -> Leftovers {
        progress.begin(Stage::Cleanup, "");
        let created = self.created.lock().expect("created lock").clone();
        let mut left = Leftovers::default();
        let mut containers = created.containers;
        let mut images: Vec<String> = created
            .untagged
            .into_iter()
            .chain(created.imported)
            .collect();
        // Objects whose creation an interrupt cut short are known only by label.
        let filter = HashMap::from([(
            "label".to_owned(),
            vec![format!("{RUN_LABEL}={}", self.run_id)],
        )]);
        let list = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filter)
            .build();
        if let Ok(found) = self.docker.list_containers(Some(list)).await {
            containers.extend(found.into_iter().filter_map(|c| c.id));
        }
        dedup_in_order(&mut containers);
        for id in containers {
            let options = RemoveContainerOptionsBuilder::default()
                .force(true)
                .v(true)
                .build();
            if !gone(self.docker.remove_container(&id, Some(options)).await) {
                left.containers.push(id);
            }
        }
        let list = ListImagesOptionsBuilder::default()
            .all(true)
            .filters(&filter)
            .build();
        if let Ok(found) = self.docker.list_images(Some(list)).await {
            images.extend(found.into_iter().map(|i| i.id));
        }
        dedup_in_order(&mut images);
        for id in images {
            let options = RemoveImageOptionsBuilder::default().build();
            if !gone(self.docker.remove_image(&id, Some(options), None).await) {
                left.images.push(id);
            }
        }
        progress.end();
        left
    }
}

/// The export stream, filtered, encoded, counted, and turned into an error
/// the moment anything goes wrong so the import is aborted, never completed
/// on a truncated archive. It reads the export only when everything encoded
/// so far has been taken: the consumer's pace (the import, or the temporary
/// file) is the backpressure.
fn filtered(
    export: impl Stream<Item = Result<Bytes, EngineError>> + Send + 'static,
    preamble: Bytes,
    encoder: Encoder,
    progress: Arc<dyn Progress>,
    failure: Arc<Mutex<Option<ExportError>>>,
    result: Arc<Mutex<(FilterStats, Digests)>>,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    struct State<S> {
        export: std::pin::Pin<Box<S>>,
        filter: TarFilter,
        encoder: Option<Encoder>,
        /// Filtered tar still to encode.
        tar: VecDeque<Bytes>,
        /// Encoded bytes still to send.
        out: VecDeque<Bytes>,
        ended: bool,
    }
    let state = State {
        export: Box::pin(export),
        filter: TarFilter::default(),
        encoder: Some(encoder),
        tar: VecDeque::from([preamble]),
        out: VecDeque::new(),
        ended: false,
    };
    stream::unfold(state, move |mut s| {
        let progress = progress.clone();
        let failure = failure.clone();
        let result = result.clone();
        async move {
            loop {
                if let Some(bytes) = s.out.pop_front() {
                    return Some((Ok(bytes), s));
                }
                let step = if let Some(chunk) = s.tar.pop_front() {
                    match s.encoder.as_mut() {
                        Some(encoder) => encoder
                            .encode(chunk, &mut s.out)
                            .await
                            .map_err(ExportError::Compress),
                        None => unreachable!("tar is only queued while the encoder lives"),
                    }
                } else if s.ended {
                    return None;
                } else {
                    match s.export.next().await {
                        Some(Ok(chunk)) => {
                            progress.bytes(chunk.len() as u64);
                            s.filter.push(chunk, &mut s.tar).map_err(ExportError::from)
                        }
                        Some(Err(e)) => Err(ExportError::Engine(e)),
                        None => {
                            s.ended = true;
                            let encoder =
                                s.encoder.take().expect("the encoder lives until the end");
                            end_of_export(&mut s.filter, encoder, &mut s.out)
                                .await
                                .map(|digests| {
                                    *result.lock().expect("result lock") =
                                        (s.filter.stats().clone(), digests);
                                })
                        }
                    }
                };
                if let Err(e) = step {
                    let message = e.to_string();
                    *failure.lock().expect("failure lock") = Some(e);
                    s.ended = true;
                    s.encoder = None;
                    s.tar.clear();
                    s.out.clear();
                    return Some((Err(std::io::Error::other(message)), s));
                }
            }
        }
    })
}

/// How an export went, known once its stream has ended or been dropped.
struct ExportStatus {
    failure: Arc<Mutex<Option<ExportError>>>,
    result: Arc<Mutex<(FilterStats, Digests)>>,
}

impl ExportStatus {
    /// Why the export failed, if it did.
    fn failure(&self) -> Option<ExportError> {
        self.failure.lock().expect("failure lock").take()
    }

    /// What the filter did and the layer's digests.
    fn result(&self) -> (FilterStats, Digests) {
        self.result.lock().expect("result lock").clone()
    }
}

/// The `size` bytes written to `file`, read back in blocks, counted.
fn spooled(
    file: tokio::fs::File,
    size: u64,
    progress: Arc<dyn Progress>,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    stream::try_unfold((file, size), move |(mut file, left)| {
        let progress = progress.clone();
        async move {
            if left == 0 {
                return Ok(None);
            }
            let mut block = vec![0; left.min(upload::BLOCK_SIZE as u64) as usize];
            file.read_exact(&mut block).await?;
            let n = block.len() as u64;
            progress.bytes(n);
            Ok(Some((Bytes::from(block), (file, left - n))))
        }
    })
}

/// Closes the archive and the encoder; leaves the encoded rest in `out`.
async fn end_of_export(
    filter: &mut TarFilter,
    mut encoder: Encoder,
    out: &mut VecDeque<Bytes>,
) -> Result<Digests, ExportError> {
    let mut tail = VecDeque::new();
    filter.finish(&mut tail)?;
    for chunk in tail {
        encoder
            .encode(chunk, out)
            .await
            .map_err(ExportError::Compress)?;
    }
    encoder.finish(out).await.map_err(ExportError::Compress)
}

/// The root directory's attributes for a layer built from an export, which
/// carries no root entry; nor does the engine say anything of the root
/// elsewhere (a container's own root is the engine's fresh `0755` directory,
/// owned by root, made when the container was). The exact values sit in
/// IMAGE's base layer, which only a `docker save` can reach: a graphdriver
/// engine writes the whole image to its disk before that streams, and the
/// containerd store sends the base layer wherever its digest sorts, while
/// the root must precede the export's first byte. So: mode `0755`,
/// owner `0:0` (what nearly every base image has, and what the engine gives
/// every container's root anyway) and IMAGE's creation time (the epoch if
/// IMAGE has none the engine can tell).
fn export_root(source: &ImageInspect) -> tarfilter::Root {
    let mtime = source
        .created
        .as_deref()
        .and_then(|c| humantime::parse_rfc3339_weak(c).ok())
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    tarfilter::Root {
        mode: 0o755,
        uid: 0,
        gid: 0,
        mtime,
    }
}

/// IMAGE as the engine reports it and its config as the store keeps it.
struct Source<'a> {
    inspect: &'a ImageInspect,
    config: &'a serde_json::Value,
}

impl Source<'_> {
    /// The flattened image's config, over the layer `diff_id`.
    fn flattened(&self, provenance: &Provenance<'_>, diff_id: &str) -> serde_json::Value {
        let id = self.inspect.id.as_deref().unwrap_or("unknown");
        image_config::flattened(self.config, id, provenance, diff_id, SystemTime::now())
    }
}

/// IMAGE's layer count and the engine's idea of its size.
fn layers_and_size(image: &ImageInspect) -> (usize, u64) {
    let layers = image
        .root_fs
        .as_ref()
        .and_then(|r| r.layers.as_ref())
        .map_or(0, Vec::len);
    (layers, image.size.unwrap_or(0).max(0) as u64)
}

/// Whether a removal left the object gone: removed now, or already absent.
fn gone<T>(result: Result<T, EngineError>) -> bool {
    matches!(
        result,
        Ok(_)
            | Err(EngineError::DockerResponseServerError {
                status_code: 404,
                ..
            })
    )
}

/// Drops repeated IDs, keeping the first of each: the order is removal order.
fn dedup_in_order(ids: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    ids.retain(|id| seen.insert(id.clone()));
}

/// The engine's own words for a failure, without bollard's framing.
fn detail(e: &EngineError) -> String {
    match e {
        EngineError::DockerResponseServerError { message, .. } => message.trim().to_owned(),
        EngineError::DockerStreamError { error } => error.trim().to_owned(),
        EngineError::HyperResponseError { .. }
        | EngineError::HyperLegacyError { .. }
        | EngineError::IOError { .. }
        | EngineError::RequestTimeoutError => {
            format!("the connection to the engine broke; check that it is still running ({e})")
        }
        other => other.to_string(),
    }
}

/// A name for this run's temporary objects, unique across concurrent runs.
fn run_id() -> String {
    use sha2::{Digest, Sha256};
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let seed = format!("{}-{nanos}-{:p}", std::process::id(), &nanos);
    format!("{:x}", Sha256::digest(seed.as_bytes()))[..16].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(version: &str, api: &str) -> impl FnOnce() -> Option<EngineVersion> {
        let e = EngineVersion {
            version: version.into(),
            api: parse_api(api),
        };
        move || Some(e)
    }

    #[test]
    fn auto_suits_the_store() {
        let never = || -> Option<EngineVersion> { panic!("no version needed") };
        assert_eq!(
            choose_compression(None, Store::Graphdriver, never),
            Ok(Compression::None)
        );
        assert_eq!(
            choose_compression(None, Store::Containerd, never),
            Ok(Compression::Gzip)
        );
        for mode in [Compression::Gzip, Compression::Zstd] {
            assert_eq!(
                choose_compression(Some(mode), Store::Containerd, never),
                Ok(mode)
            );
        }
        assert_eq!(
            choose_compression(Some(Compression::Gzip), Store::Graphdriver, never),
            Ok(Compression::Gzip)
        );
    }

    #[test]
    fn refuses_what_the_engine_cannot_keep() {
        let old = choose_compression(
            Some(Compression::Zstd),
            Store::Graphdriver,
            engine("20.10.24", "1.41"),
        );
        let refusal = old.unwrap_err();
        assert_eq!(
            (refusal.mode, refusal.engine.version.as_str()),
            (Compression::Zstd, "20.10.24")
        );
        assert!(refusal.instead.contains("gzip"));
        assert_eq!(
            choose_compression(
                Some(Compression::Zstd),
                Store::Graphdriver,
                engine("23.0.1", "1.42")
            ),
            Ok(Compression::Zstd)
        );
        let none = choose_compression(
            Some(Compression::None),
            Store::Containerd,
            engine("26.1.5", "1.45"),
        );
        assert!(none.unwrap_err().instead.contains("zstd"));
    }

    #[test]
    fn an_export_s_root_is_0755_root_owned_at_image_creation() {
        let at = |created: &str| ImageInspect {
            created: Some(created.to_owned()),
            ..Default::default()
        };
        let root = export_root(&at("2024-01-01T00:00:00.123456789Z"));
        assert_eq!((root.mode, root.uid, root.gid), (0o755, 0, 0));
        assert_eq!(root.mtime, 1_704_067_200);
        assert_eq!(
            export_root(&at("2024-01-01T00:00:00Z")).mtime,
            1_704_067_200
        );
        assert_eq!(export_root(&at("not a time")).mtime, 0);
        assert_eq!(export_root(&ImageInspect::default()).mtime, 0);
    }

    #[test]
    fn reads_api_versions() {
        assert_eq!(parse_api("1.41"), Some((1, 41)));
        assert_eq!(parse_api("1.9"), Some((1, 9)));
        assert!(parse_api("1.41") < Some((1, 42)));
        assert_eq!(parse_api("dev"), None);
    }
}
