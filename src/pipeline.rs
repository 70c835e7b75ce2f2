//! The flatten, as one path: probe the store and choose the destination
//! and compression → inspect IMAGE → its config → source (the container
//! export) → layer (filter and encode) → destination (import, load, file)
//! → tag. Every temporary object goes in the run's [`Objects`] ledger,
//! which the caller cleans up whatever happened.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::errors::Error as EngineError;
use bollard::models::ImageInspect;
use bollard::query_parameters::TagImageOptionsBuilder;
use bollard::Docker;
use serde_json::Value;

use crate::destination::{self, file, Destination, Engine};
use crate::dryrun::{self, DryRunError};
use crate::engine::InspectJson;
use crate::error::{Cause, Differs, Error, Step};
use crate::image::config::{self, Provenance, Recipe};
use crate::layer::{self, Compression};
use crate::objects::Objects;
use crate::progress::{Progress, Stage};
use crate::reference::Tag;
use crate::save_archive;
use crate::save_stream;
use crate::savings::Savings;
use crate::source::merge as merge_source;
use crate::source::{export, Source};
use crate::store::{self, Store};
use crate::tarfilter::FilterStats;
use crate::verify::{self, read::Theirs, Layers, Report, Rules};

/// What to flatten, and where to.
#[derive(Debug, Clone)]
pub struct Request {
    pub image: String,
    pub tag: Tag,
    /// `--output`: a file, or `-` for stdout; `None`: the engine.
    pub output: Option<PathBuf>,
    /// `None`: what suits the destination.
    pub compression: Option<Compression>,
    /// Rebuild an image that already has one layer instead of only tagging it.
    pub force: bool,
    /// Merge IMAGE's own layers instead of exporting a container, keeping
    /// these bottom ones as they are; `None`: the export.
    pub merge: Option<Keep>,
    /// `--verify`: read the result back and compare it with IMAGE's
    /// layers before TAG moves (or FILE is renamed into place).
    pub verify: bool,
}

/// Which of IMAGE's bottom layers a merge keeps as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keep {
    /// The bottom N (0 for `--exact`: every layer is merged).
    Layers(usize),
    /// BASE's layers, which must be IMAGE's bottom ones.
    Base(String),
}

/// IMAGE as the run found it.
#[derive(Debug, Clone)]
pub struct SourceImage {
    pub id: String,
    pub layers: usize,
    /// The engine's figure, in bytes.
    pub size: u64,
}

/// A finished flatten.
#[derive(Debug)]
pub struct Finished {
    pub source: SourceImage,
    pub store: Store,
    pub elapsed: Duration,
    pub outcome: Outcome,
}

/// What a finished flatten did.
#[derive(Debug)]
pub enum Outcome {
    /// IMAGE had one layer already: TAG now points at it and nothing was built.
    AlreadyFlat,
    Flattened {
        made: Made,
        /// How the layer was sent (or written).
        compression: Compression,
        /// What the source left out.
        filter: FilterStats,
        /// Where the layer came from.
        how: How,
        /// What `--verify` found: no difference the mode does not account for.
        verified: Option<Report>,
    },
}

/// How the flattened layer was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum How {
    /// From a container's export.
    Export,
    /// By merging IMAGE's layers above these kept ones (diff IDs; none for
    /// `--exact`).
    Merge { kept: Vec<String> },
}

/// Where the flattened image is.
#[derive(Debug)]
pub enum Made {
    /// On the engine, tagged TAG.
    Image { id: String, size: u64 },
    /// In an archive file, or on stdout (`-`), named TAG inside.
    Archive { path: PathBuf, size: u64 },
}

/// What a dry run found.
#[derive(Debug)]
pub struct DryRunOutcome {
    pub source: SourceImage,
    pub savings: Savings,
    pub elapsed: Duration,
    pub store: Store,
}

/// What `--verify-only` found: FLAT as IMAGE's layers make it, the
/// differences the mode documents aside.
#[derive(Debug)]
pub struct VerifyOutcome {
    pub source: SourceImage,
    pub flat_id: String,
    pub store: Store,
    pub report: Report,
}

/// IMAGE's config as the store keeps it, now or later.
type Config<'a> = Pin<Box<dyn Future<Output = Result<Value, Error>> + Send + 'a>>;

/// Flattens on one engine.
pub struct Pipeline<'a> {
    docker: Docker,
    inspect_json: InspectJson,
    endpoint: String,
    objects: &'a Objects,
}

impl<'a> Pipeline<'a> {
    pub fn new(
        docker: Docker,
        inspect_json: InspectJson,
        endpoint: String,
        objects: &'a Objects,
    ) -> Pipeline<'a> {
        Pipeline {
            docker,
            inspect_json,
            endpoint,
            objects,
        }
    }

    fn engine(&self, progress: &Arc<dyn Progress>) -> Engine<'_> {
        Engine {
            docker: &self.docker,
            endpoint: &self.endpoint,
            objects: self.objects,
            progress: progress.clone(),
        }
    }

    fn error(&self, step: Step, cause: Cause) -> Error {
        Error {
            step,
            endpoint: self.endpoint.clone(),
            cause,
        }
    }

    fn failed(&self, step: Step) -> impl FnOnce(EngineError) -> Error + '_ {
        move |e| self.error(step, Cause::Engine(e))
    }

    /// Flattens as `request` says. Leaves temporary objects in the ledger
    /// for [`Objects::cleanup`], which must run afterwards.
    pub async fn flatten(
        &self,
        request: &Request,
        progress: Arc<dyn Progress>,
    ) -> Result<Finished, Error> {
        let started = Instant::now();
        let image = request.image.as_str();
        let store = store::probe(&self.docker)
            .await
            .map_err(self.failed(Step::ReadInfo))?;
        let destination = destination::choose(store, request.output.as_deref());
        let compression = self.compression(request.compression, &destination).await?;
        // Before any work: a directory that cannot take the file fails now.
        let output = match &destination {
            Destination::File(path) => Some(file::open(path).map_err(|(dir, error)| {
                self.error(Step::Write(path.clone()), Cause::Local { dir, error })
            })?),
            _ => None,
        };
        progress.begin(Stage::Inspect, image);
        let inspect = self.inspect_source(image).await?;
        let source = source_image(&inspect);
        self.objects.record(|c| c.source = Some(source.id.clone()));

        let keep = match &request.merge {
            Some(keep) => Some(self.keep(keep, &inspect, image).await?),
            None => None,
        };
        if source.layers == 1 && !request.force && destination.is_engine() && keep.unwrap_or(0) == 0
        {
            // Already the shape asked for: a rebuild would give the same
            // files under a new ID, minus the xattrs an export cannot carry.
            self.tag(&source.id, &request.tag, progress.as_ref())
                .await?;
            progress.end();
            return Ok(Finished {
                source,
                store,
                elapsed: started.elapsed(),
                outcome: Outcome::AlreadyFlat,
            });
        }
        // Kept layers stay on the engine: only a load above them can use them.
        let destination = match keep {
            Some(n) if n > 0 && destination.is_engine() => Destination::Onto(store),
            _ => destination,
        };

        // The containerd store keys a layer's snapshot by its digest, and a
        // loaded image whose snapshot already exists (another flatten of the
        // same files, an earlier one, a concurrent one) is never unpacked,
        // so it never claims that snapshot and breaks when the other image
        // goes. A comment only this run writes makes the digest its own;
        // the files stay the same. An archive may be loaded anywhere.
        let comment = format!("docker-flatten run {}", self.objects.run_id());
        let comment = (destination != Destination::Import).then_some(comment.as_str());
        let stage = match &destination {
            Destination::Import => Stage::Stream,
            Destination::Load | Destination::Onto(_) | Destination::Stdout => Stage::Spool,
            Destination::File(_) => Stage::Write,
        };
        let subject = match &destination {
            Destination::File(path) => path.display().to_string(),
            _ => image.to_owned(),
        };
        // IMAGE's layers as the merge read them, for a verify.
        let mut mine: Option<Arc<Layers>> = None;
        let (config, source_stream, kept, kept_history): (Config<'_>, _, _, _) = match keep {
            None => {
                // A quick inspect on the graphdriver store, so asked before any
                // object exists; on the containerd store a read of the save stream,
                // which runs beside the layer instead.
                let config: Config<'_> = match store {
                    Store::Graphdriver => {
                        let config = self.inspected_config(&source.id, image).await?;
                        Box::pin(std::future::ready(Ok(config)))
                    }
                    Store::Containerd => Box::pin(self.saved_config(&inspect, image)),
                };
                progress.begin(Stage::Create, image);
                let container = export::create_container(&self.docker, self.objects, &source.id)
                    .await
                    .map_err(self.failed(Step::Create(image.to_owned())))?;
                let preamble = export::root_entry(&inspect, comment);
                progress.expect_bytes(source.size);
                progress.begin(stage, &subject);
                let export =
                    export::Export::new(&self.docker, &container, preamble, progress.clone());
                (
                    config,
                    Source::Export(Box::new(export)),
                    Vec::new(),
                    Vec::new(),
                )
            }
            Some(keep) => {
                // The config as the store keeps it comes with the layers.
                progress.expect_bytes(source.size);
                progress.begin(Stage::Read, image);
                let mut layers =
                    merge_source::read(&self.docker, &source.id, progress.clone(), request.verify)
                        .await
                        .map_err(|f| self.read_failed(image, f))?;
                merge_source::drop_kept(&mut layers, keep);
                let layers = Arc::new(layers);
                mine = request.verify.then(|| layers.clone());
                let kept = merge_source::kept(&layers, keep);
                let history = merge_source::kept_history(&layers.config, keep);
                let config = layers.config.clone();
                let merged: u64 = layers.layers[keep..]
                    .iter()
                    .map(|l| layers.blobs[l.blob].bytes)
                    .sum();
                progress.expect_bytes(merged);
                let _ = stage;
                progress.begin(Stage::Merge, image);
                let merge = merge_source::Merge::start(
                    layers,
                    keep,
                    comment.map(str::to_owned),
                    progress.clone(),
                );
                let config: Config<'_> = Box::pin(std::future::ready(Ok(config)));
                (config, Source::Merge(merge), kept, history)
            }
        };
        let layer = layer::encode(source_stream, compression).map_err(|e| {
            self.error(
                Step::Export(image.to_owned()),
                Cause::Layer(layer::LayerError::Compress(e)),
            )
        })?;
        let recipe = Recipe {
            source_id: &source.id,
            provenance: Provenance {
                reference: image,
                layers: source.layers - kept.len(),
            },
            kept_diff_ids: kept.iter().map(|k| k.diff_id.clone()).collect(),
            kept_history,
        };
        let engine = self.engine(&progress);
        let check = request.verify.then(|| Check {
            image: image.to_owned(),
            source: source.clone(),
            store,
            mine,
            rules: Rules {
                export: keep.is_none(),
                inspected_config: keep.is_none() && store == Store::Graphdriver,
            },
        });
        let mut verified = None;
        let (made, built) = match destination {
            Destination::Import => {
                let config = config.await?;
                let (id, built) =
                    destination::import::import(&engine, layer, &inspect, &config, &recipe).await?;
                let (made, report) = self.checked(check.as_ref(), id, request, &progress).await?;
                verified = report;
                (made, built)
            }
            Destination::Onto(store) => {
                let config = config.await?;
                let (id, built) =
                    destination::onto::load_onto(&engine, layer, config, &recipe, &kept, store)
                        .await?;
                let (made, report) = self.checked(check.as_ref(), id, request, &progress).await?;
                verified = report;
                (made, built)
            }
            Destination::Load => {
                let (id, built) = destination::load::load(&engine, layer, config, &recipe).await?;
                let (made, report) = self.checked(check.as_ref(), id, request, &progress).await?;
                verified = report;
                (made, built)
            }
            Destination::File(path) => {
                let output = output.expect("opened above");
                let (written, output) =
                    file::write(&engine, output, layer, config, &recipe, &request.tag).await?;
                if let Some(check) = &check {
                    let theirs = Theirs::File(output.written());
                    verified = Some(self.verify(check, theirs, &progress).await?);
                }
                file::finish(&engine, output).map_err(|e| *e)?;
                let size = written.size;
                (Made::Archive { path, size }, written.built)
            }
            Destination::Stdout => {
                let written =
                    file::write_stdout(&engine, layer, config, &recipe, &request.tag).await?;
                let size = written.size;
                let path = PathBuf::from("-");
                (Made::Archive { path, size }, written.built)
            }
        };
        let how = match keep {
            None => How::Export,
            Some(_) => How::Merge {
                kept: recipe.kept_diff_ids.clone(),
            },
        };
        drop(recipe);
        progress.end();
        Ok(Finished {
            source,
            store,
            elapsed: started.elapsed(),
            outcome: Outcome::Flattened {
                made,
                compression,
                filter: built.filter,
                how,
                verified,
            },
        })
    }

    /// Verifies the new image `id` if asked, then points TAG at it.
    async fn checked(
        &self,
        check: Option<&Check>,
        id: String,
        request: &Request,
        progress: &Arc<dyn Progress>,
    ) -> Result<(Made, Option<Report>), Error> {
        let report = match check {
            Some(check) => Some(self.verify(check, Theirs::Image(&id), progress).await?),
            None => None,
        };
        let made = self.tagged(id, &request.tag, progress.as_ref()).await?;
        Ok((made, report))
    }

    /// Points TAG at the new image `id` and reads its size.
    async fn tagged(&self, id: String, tag: &Tag, progress: &dyn Progress) -> Result<Made, Error> {
        self.tag(&id, tag, progress).await?;
        self.objects.record(|c| c.untagged = None);
        let size = self
            .docker
            .inspect_image(&id)
            .await
            .map_err(self.failed(Step::InspectResult))?
            .size
            .unwrap_or(0)
            .max(0) as u64;
        Ok(Made::Image { id, size })
    }

    /// Compares `flat`, flattened earlier (`merged`: from IMAGE's layers,
    /// not an export), with IMAGE's layers. Changes nothing.
    pub async fn verify_only(
        &self,
        image: &str,
        flat: &str,
        merged: bool,
        progress: Arc<dyn Progress>,
    ) -> Result<VerifyOutcome, Error> {
        progress.begin(Stage::Inspect, image);
        let source = source_image(&self.inspect_source(image).await?);
        let flat_id = source_image(&self.inspect_source(flat).await?).id;
        let store = store::probe(&self.docker)
            .await
            .map_err(self.failed(Step::ReadInfo))?;
        let check = Check {
            image: image.to_owned(),
            source: source.clone(),
            store,
            mine: None,
            rules: Rules {
                export: !merged,
                inspected_config: !merged && store == Store::Graphdriver,
            },
        };
        let report = self
            .verify(&check, Theirs::Image(&flat_id), &progress)
            .await?;
        progress.end();
        Ok(VerifyOutcome {
            source,
            flat_id,
            store,
            report,
        })
    }

    /// Reads IMAGE's layers as `docker save` would and works out what
    /// flattening would gain. Creates nothing on the engine.
    pub async fn dry_run(
        &self,
        image: &str,
        keep: Option<&Keep>,
        progress: Arc<dyn Progress>,
    ) -> Result<DryRunOutcome, Error> {
        let started = Instant::now();
        progress.begin(Stage::Inspect, image);
        let inspect = self.inspect_source(image).await?;
        let source = source_image(&inspect);
        let keep = match keep {
            Some(keep) => self.keep(keep, &inspect, image).await?,
            None => 0,
        };
        let store = store::probe(&self.docker)
            .await
            .map_err(self.failed(Step::ReadInfo))?;
        progress.expect_bytes(source.size);
        progress.begin(Stage::Read, image);
        let step = || Step::ReadLayers(image.to_owned());
        let save = self.docker.export_image(&source.id);
        let savings = dryrun::analyze(save, progress.clone(), keep)
            .await
            .map_err(|e| match e {
                DryRunError::Engine(e) => self.error(step(), Cause::Engine(e)),
                DryRunError::Savings(e) => self.error(step(), Cause::Unexpected(e.to_string())),
            })?;
        progress.end();
        Ok(DryRunOutcome {
            source,
            savings,
            elapsed: started.elapsed(),
            store,
        })
    }

    /// Reads the result back and compares it with IMAGE's layers (read now
    /// unless the merge has them): fails naming the differences the mode
    /// does not account for.
    async fn verify(
        &self,
        check: &Check,
        theirs: Theirs<'_>,
        progress: &Arc<dyn Progress>,
    ) -> Result<Report, Error> {
        let started = Instant::now();
        let image = check.image.as_str();
        progress.expect_bytes(2 * check.source.size);
        progress.begin(Stage::Verify, image);
        let mine = async {
            match &check.mine {
                Some(layers) => Ok(layers.clone()),
                None => merge_source::read_facts(&self.docker, &check.source.id, progress.clone())
                    .await
                    .map(Arc::new)
                    .map_err(|f| match f {
                        merge_source::ReadFailure::Engine(
                            e @ EngineError::DockerResponseServerError {
                                status_code: 500, ..
                            },
                        ) => self.error(Step::Verify(image.to_owned()), Cause::Unverifiable(e)),
                        f => self.read_failed(image, f),
                    }),
            }
        };
        let theirs = async {
            match theirs {
                Theirs::Image(id) => merge_source::read_facts(&self.docker, id, progress.clone())
                    .await
                    .map_err(|f| self.result_unread(id, f)),
                Theirs::File(path) => verify::read::file(path).await.map_err(|e| {
                    let what = path.display().to_string();
                    self.error(Step::ReadResult(what), Cause::Unexpected(e.to_string()))
                }),
            }
        };
        let (mine, theirs) = tokio::join!(mine, theirs);
        let (mine, theirs) = (mine?, theirs?);
        let rules = check.rules;
        let compared = tokio::task::spawn_blocking(move || verify::compare(&mine, &theirs, rules))
            .await
            .expect("the comparison does not panic");
        let step = || Step::Verify(image.to_owned());
        let mut report =
            compared.map_err(|e| self.error(step(), Cause::Unexpected(e.to_string())))?;
        report.duration_seconds = (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
        if !report.ok() {
            let differs = Differs {
                report,
                source: check.source.clone(),
                store: check.store,
            };
            return Err(self.error(step(), Cause::Differs(Box::new(differs))));
        }
        Ok(report)
    }

    /// A failed read of the result.
    fn result_unread(&self, id: &str, failure: merge_source::ReadFailure) -> Error {
        let step = Step::ReadResult(id.to_owned());
        match failure {
            merge_source::ReadFailure::Engine(e) => self.error(step, Cause::Engine(e)),
            merge_source::ReadFailure::Archive(what) => self.error(step, Cause::Unexpected(what)),
            merge_source::ReadFailure::Spool(e) => {
                self.error(step, Cause::Unexpected(e.to_string()))
            }
        }
    }

    /// Points `tag` at the image `id`.
    async fn tag(&self, id: &str, tag: &Tag, progress: &dyn Progress) -> Result<(), Error> {
        progress.begin(Stage::Tag, &tag.to_string());
        let options = TagImageOptionsBuilder::default()
            .repo(&tag.repo)
            .tag(&tag.tag)
            .build();
        self.docker
            .tag_image(id, Some(options))
            .await
            .map_err(self.failed(Step::Tag(tag.to_string())))
    }

    /// The layer's compression for this destination; asks the engine its
    /// version only when the answer depends on it.
    async fn compression(
        &self,
        requested: Option<Compression>,
        destination: &Destination,
    ) -> Result<Compression, Error> {
        let engine = if store::needs_version(requested, destination) {
            let version = store::version(&self.docker)
                .await
                .map_err(self.failed(Step::ReadVersion))?;
            Some(version)
        } else {
            None
        };
        store::choose_compression(requested, destination, engine)
            .map_err(|refusal| self.error(Step::ReadVersion, Cause::Unsupported(refusal)))
    }

    /// IMAGE's config on the graphdriver store, for the fields the
    /// flattened config carries over: the engine's inspect, as sent, holds
    /// them all (but `os.features`) under its own names. A `docker save`
    /// would have the engine write the whole image to its disk first.
    async fn inspected_config(&self, id: &str, image: &str) -> Result<Value, Error> {
        let inspect = self
            .inspect_json
            .image(id)
            .await
            .map_err(self.failed(Step::ReadConfig(image.to_owned())))?;
        Ok(config::from_inspect(&inspect))
    }

    /// IMAGE's config on the containerd store, whose inspect reports the
    /// engine's own version as `DockerVersion` and leaves out `comment` and
    /// `container_config`: the config blob itself, from IMAGE's save stream,
    /// which streams from the content store as it goes and is dropped as
    /// soon as the config has come. That can be the whole stream (blobs come
    /// in digest order), so this runs beside the layer.
    fn saved_config(
        &self,
        source: &ImageInspect,
        image: &str,
    ) -> impl Future<Output = Result<Value, Error>> + Send + 'static {
        let id = source.id.clone().unwrap_or_else(|| image.to_owned());
        let step = Step::ReadConfig(image.to_owned());
        let endpoint = self.endpoint.clone();
        let diff_ids = source
            .root_fs
            .as_ref()
            .and_then(|r| r.layers.clone())
            .unwrap_or_default();
        let os = source.os.clone().unwrap_or_default();
        let arch = source.architecture.clone().unwrap_or_default();
        let save = self.docker.export_image(&id);
        async move {
            let error = |cause| Error {
                step,
                endpoint,
                cause,
            };
            let found = save_stream::read(
                save,
                |_| {},
                move |save| save_archive::find_config(save, &diff_ids, &os, &arch),
            )
            .await;
            let detail = match found {
                Err(e) => return Err(error(Cause::Engine(e))),
                Ok(Ok(Some(config))) => return Ok(config),
                Ok(Ok(None)) => {
                    format!("its save stream holds no config for its layers and platform ({id})")
                }
                Ok(Err(e)) => format!("its save stream is not a valid archive: {e}"),
            };
            Err(error(Cause::Unexpected(detail)))
        }
    }

    /// How many of IMAGE's bottom layers `keep` keeps; refused when that
    /// leaves nothing to merge, or BASE is not what IMAGE is built on.
    async fn keep(&self, keep: &Keep, inspect: &ImageInspect, image: &str) -> Result<usize, Error> {
        let layers = inspect
            .root_fs
            .as_ref()
            .and_then(|r| r.layers.clone())
            .unwrap_or_default();
        let refused = |why: String| self.error(Step::Keep(image.to_owned()), Cause::Refused(why));
        let n = match keep {
            Keep::Layers(n) => *n,
            Keep::Base(base) => {
                let base_inspect = self.inspect_source(base).await?;
                let base_layers = base_inspect
                    .root_fs
                    .and_then(|r| r.layers)
                    .unwrap_or_default();
                match first_difference(&base_layers, &layers) {
                    Some((_, None)) => {
                        return Err(refused(format!(
                            "--keep-base {base} has {} layers, {image} only {}: BASE must be \
                             an image that {image} is built on",
                            base_layers.len(),
                            layers.len()
                        )))
                    }
                    Some((i, Some(theirs))) => {
                        return Err(refused(format!(
                            "layer {} of --keep-base {base} ({}) is not layer {} of {image} \
                             ({theirs}): BASE must be an image that {image} is built on",
                            i + 1,
                            base_layers[i],
                            i + 1
                        )))
                    }
                    None => base_layers.len(),
                }
            }
        };
        if n >= layers.len() && !(n == 0 && layers.is_empty()) {
            return Err(refused(format!(
                "{image} has {} layer(s) and all {n} would be kept: nothing to merge",
                layers.len()
            )));
        }
        Ok(n)
    }

    /// A failed read of IMAGE's layers, said as the user can act on it.
    fn read_failed(&self, image: &str, failure: merge_source::ReadFailure) -> Error {
        let step = Step::ReadLayers(image.to_owned());
        match failure {
            // The engine answered, but with its own failure to save.
            merge_source::ReadFailure::Engine(
                e @ EngineError::DockerResponseServerError {
                    status_code: 500, ..
                },
            ) => self.error(step, Cause::Unsaveable(e)),
            merge_source::ReadFailure::Engine(e) => self.error(step, Cause::Engine(e)),
            merge_source::ReadFailure::Archive(what) => self.error(
                step,
                Cause::Unexpected(format!("its save stream is not a whole image: {what}")),
            ),
            merge_source::ReadFailure::Spool(error) => self.error(
                Step::SpoolLayers(image.to_owned()),
                Cause::Local {
                    dir: destination::spool::dir(),
                    error,
                },
            ),
        }
    }

    async fn inspect_source(&self, image: &str) -> Result<ImageInspect, Error> {
        let step = Step::Inspect(image.to_owned());
        match self.docker.inspect_image(image).await {
            Err(EngineError::DockerResponseServerError {
                status_code: 404, ..
            }) => Err(self.error(step, Cause::NoSuchImage(image.to_owned()))),
            other => other.map_err(self.failed(step)),
        }
    }
}

/// Where BASE's layers stop being IMAGE's: the index, and IMAGE's layer
/// there (`None` when IMAGE has fewer); `None` when BASE is a prefix.
fn first_difference(base: &[String], image: &[String]) -> Option<(usize, Option<String>)> {
    base.iter()
        .enumerate()
        .find(|(i, b)| image.get(*i) != Some(*b))
        .map(|(i, _)| (i, image.get(i).cloned()))
}

/// IMAGE's ID, layer count and the engine's idea of its size.
fn source_image(image: &ImageInspect) -> SourceImage {
    let layers = image
        .root_fs
        .as_ref()
        .and_then(|r| r.layers.as_ref())
        .map_or(0, Vec::len);
    SourceImage {
        id: image.id.clone().unwrap_or_default(),
        layers,
        size: image.size.unwrap_or(0).max(0) as u64,
    }
}

/// What a `--verify` holds the result to.
struct Check {
    /// IMAGE as the user named it.
    image: String,
    source: SourceImage,
    store: Store,
    /// IMAGE's layers, when the merge has read them already.
    mine: Option<Arc<Layers>>,
    rules: Rules,
}
