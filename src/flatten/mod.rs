//! The flatten, as one path: probe the store and choose the destination
//! and compression → inspect IMAGE → its config → source (the container
//! export) → layer (filter and encode) → destination (import, load, file)
//! → tag. Every temporary object goes in the run's [`Objects`] ledger,
//! which the caller cleans up whatever happened. Which platforms of IMAGE
//! the run takes is decided first ([`plan`]); a multi-platform IMAGE takes
//! the export once per platform into one index ([`index`]). The dry run
//! ([`dry_run`]) reads instead of building. With `-i`, IMAGE is read from
//! an archive first ([`input`]) and the merge takes it from there; into a
//! file, such a run has no engine.

mod build;
mod dry_run;
mod each_platform;
mod input;
mod inspect;
mod outcome;
use build::{recipe, Identity, Of, Stamp};
use each_platform::{Delivery, IndexRun};
use inspect::{created_of, inspected_layers, left_out, own_platform, source_image};
pub use outcome::*;
pub use replaced::Replaced;
mod check;
mod keep;
use check::Check;
mod plan;
mod replaced;
mod request;
mod target;
pub use request::{Keep, Request};

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bollard::errors::Error as EngineError;
use bollard::query_parameters::TagImageOptionsBuilder;
use bollard::Docker;
use serde_json::Value;

use crate::engine::objects::Objects;
use crate::engine::store::{self, Store};
use crate::engine::InspectJson;
use crate::error::{Cause, Error, Step};
use crate::model::compression::Compression;
use crate::model::reference::Tag;
use crate::model::source_index::{LeftOut, Plan, SourceIndex};
pub use crate::model::SourceImage;
use crate::progress::{Progress, Stage};
use crate::saved;
use crate::saved::walk::{IndexReadError, Pick};
use crate::sink::{self, file, Destination, Engine};
use crate::verify::{read::Theirs, Layers, Rules};

/// IMAGE's config as the store keeps it, now or later.
type Config<'a> = Pin<Box<dyn Future<Output = Result<Value, Error>> + Send + 'a>>;

/// Flattens on one engine, or with none: an archive given with `-i` into
/// a file (`-o`), or its dry run.
pub struct Pipeline<'a> {
    /// The engine's client, and the same engine for raw inspects; `None`
    /// for a run that asks no engine anything.
    engine: Option<(Docker, InspectJson)>,
    /// The engine's address as the user knows it; with no engine, what the
    /// run reads instead (`-i`'s FILE).
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
            engine: Some((docker, inspect_json)),
            endpoint,
            objects,
        }
    }

    /// A pipeline that reaches no engine: for `-i FILE` with `-o` or
    /// `--dry-run`, whose every step is on this machine. `input` names
    /// FILE in its errors.
    pub fn without_engine(input: &std::path::Path, objects: &'a Objects) -> Pipeline<'a> {
        Pipeline {
            engine: None,
            endpoint: input.display().to_string(),
            objects,
        }
    }

    /// The ledger of what the run makes on the engine.
    pub fn objects(&self) -> &'a Objects {
        self.objects
    }

    /// The engine's client. Only the steps of a run that has an engine ask
    /// for it: [`Pipeline::without_engine`] serves runs that take none.
    fn docker(&self) -> &Docker {
        &self.reached().0
    }

    fn inspect_json(&self) -> &InspectJson {
        &self.reached().1
    }

    fn reached(&self) -> &(Docker, InspectJson) {
        self.engine
            .as_ref()
            .expect("a run without an engine takes no step that needs one")
    }

    fn engine(&self, progress: &Arc<dyn Progress>) -> Engine<'_> {
        Engine {
            docker: self.engine.as_ref().map(|(docker, _)| docker),
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

    /// Flattens as `request` says, and says what became of the image TAG
    /// named before. Leaves temporary objects in the ledger for
    /// [`Objects::cleanup`], which must run afterwards.
    pub async fn flatten(
        &self,
        request: &Request,
        progress: Arc<dyn Progress>,
    ) -> Result<Finished, Error> {
        // From an archive: read first, for IMAGE and TAG as it names them.
        let (request, from_input) = match &request.input {
            Some(path) => {
                let (named, from) = self.named_from_input(request, path, &progress).await?;
                (std::borrow::Cow::Owned(named), Some(from))
            }
            None => (std::borrow::Cow::Borrowed(request), None),
        };
        let request = request.as_ref();
        let before = match request.output {
            None => self.tagged_before(request.tag()).await,
            Some(_) => None,
        };
        let named = from_input
            .is_some()
            .then(|| (request.image.clone(), request.tag().clone()));
        let started = Instant::now();
        let mut finished = match self
            .flatten_into(request, progress.clone(), from_input, None)
            .await
        {
            // Started before the plan, which found more than one manifest.
            Err(Error {
                cause: Cause::Replan(read),
                ..
            }) => {
                self.flatten_into(request, progress, None, Some(*read))
                    .await
            }
            other => other,
        }?;
        finished.elapsed = started.elapsed();
        finished.named = named;
        let now = match &finished.outcome {
            Outcome::Flattened {
                made: Made::Image { id, .. },
                ..
            } => Some(id.clone()),
            Outcome::AlreadyFlat => Some(finished.source.id.clone()),
            Outcome::Flattened { .. } => None,
        };
        if let Some(now) = now {
            finished.replaced = self.replaced(before, &now).await;
        }
        Ok(finished)
    }

    async fn flatten_into(
        &self,
        request: &Request,
        progress: Arc<dyn Progress>,
        from_input: Option<input::FromInput>,
        known: Option<Result<SourceIndex, IndexReadError>>,
    ) -> Result<Finished, Error> {
        let started = Instant::now();
        let image = request.image.as_str();
        // An archive into a file asks no engine anything.
        let store = match (&from_input, &request.output) {
            (Some(_), Some(_)) => None,
            _ => Some(
                store::probe(self.docker())
                    .await
                    .map_err(self.failed(Step::ReadInfo))?,
            ),
        };
        let destination = sink::choose(store, request.output.as_deref());
        let compression = self.compression(request.compression, &destination).await?;
        // Before any work: a directory that cannot take the file fails now.
        let output = match &destination {
            Destination::File(path) => Some(file::open(path).map_err(|(dir, error)| {
                self.error(Step::Write(path.clone()), Cause::Local { dir, error })
            })?),
            _ => None,
        };
        let epoch = request.epoch;
        // IMAGE's image a one-image plan reads: the one a save stream lists,
        // or the one of the archive IMAGE named.
        let mut listed = Pick::Listed;
        let inspect = match &from_input {
            Some(from) => from.inspect.clone(),
            None => {
                progress.begin(Stage::Inspect, image);
                self.inspect_source(image).await?
            }
        };
        if output.is_none() {
            self.check_target(request.tag()).await?;
        }
        let mut source = source_image(&inspect);
        self.objects.record(|c| c.source = Some(source.id.clone()));
        let wanted = request.platform.as_ref();
        // A merge reads IMAGE's whole save stream anyway; where the plan
        // would read it too (Engine 26.1 tells IMAGE's index no other way,
        // and its save stream is slow: ~25 MB/s), both come from one read.
        let mut read_first: Option<saved::layers::Unpicked> = None;
        let before_plan = known.is_none()
            && store.is_some_and(|s| Self::starts_before_plan(&inspect, s, request, source.layers));
        let (plan, left_out) = match (from_input, store) {
            (Some(from), _) => {
                read_first = Some(from.read);
                listed = from.pick;
                (from.plan, from.left_out)
            }
            (None, Some(store))
                if request.merge.is_some() && Self::plan_reads_save(&inspect, store, wanted) =>
            {
                progress.expect_bytes(source.size);
                progress.begin(Stage::Read, image);
                let all = saved::layers::read_all(
                    self.docker(),
                    &source.id,
                    progress.clone(),
                    saved::layers::Take::merged(request.verify),
                )
                .await
                .map_err(|f| self.read_failed(image, request.input.as_deref(), f))?;
                let planned = self.plan_of(all.index(&source.id), image, wanted).await?;
                read_first = Some(all);
                planned
            }
            (None, _) if before_plan => (Plan::AsInspected, LeftOut::default()),
            (None, store) => match known {
                Some(read) => self.plan_of(read, image, wanted).await?,
                None => {
                    let store = store.expect("a run from the engine has its store");
                    self.plan(&inspect, image, store, wanted).await?
                }
            },
        };
        let finished = |source: &SourceImage, outcome, platforms| Finished {
            source: source.clone(),
            store,
            elapsed: started.elapsed(),
            outcome,
            platforms,
            left_out: left_out.clone(),
            replaced: None,
            named: None,
        };
        // Per image the plan takes: how many bottom layers a merge keeps.
        let keeps = match &request.merge {
            Some(keep) => Some(self.keeps_for_plan(keep, &plan, &inspect, image).await?),
            None => None,
        };
        let keep = keeps.as_ref().map(|k| k[0]);
        // One platform of an index is no image of its own that TAG could name.
        let taggable = !matches!(plan, Plan::One { of_index: true, .. });
        let flat = match &plan {
            Plan::Index(platforms) => platforms.iter().all(|(_, m)| m.layers.len() == 1),
            _ => source.layers == 1,
        };
        let keeps_none = !keeps.as_ref().is_some_and(|k| k.iter().any(|&n| n > 0));
        // An archive's image is not on the engine to be tagged: it is loaded.
        let on_engine = request.input.is_none();
        if flat && taggable && !request.force && destination.is_engine() && keeps_none && on_engine
        {
            // Already the shape asked for: a rebuild would give the same
            // files under a new ID, minus the xattrs an export cannot carry.
            self.tag(&source.id, request.tag(), progress.as_ref())
                .await?;
            progress.end();
            return Ok(Finished {
                left_out: LeftOut::default(),
                ..finished(&source, Outcome::AlreadyFlat, Vec::new())
            });
        }
        let how = |kept: Vec<String>| match keep {
            None => How::Export,
            Some(_) => How::Merge { kept },
        };
        let one = match plan {
            Plan::Index(platforms) => {
                let delivery = match (destination, output) {
                    (Destination::File(path), Some(output)) => Delivery::File(output, path),
                    (Destination::Stdout, _) => Delivery::Stdout,
                    _ => Delivery::Load,
                };
                let run = IndexRun {
                    compression,
                    epoch,
                    delivery,
                    keeps,
                    read: read_first.take(),
                    store,
                };
                let (made, filter, flattened, verified) = self
                    .flatten_index(request, &inspect, &platforms, run, &progress)
                    .await?;
                let kept = match flattened.first() {
                    Some(f) if f.layers_after > 1 => platforms[0].1.config["rootfs"]["diff_ids"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .take(f.layers_after - 1)
                        .filter_map(|d| d.as_str().map(str::to_owned))
                        .collect(),
                    _ => Vec::new(),
                };
                progress.end();
                let outcome = Outcome::Flattened {
                    made,
                    compression,
                    filter,
                    how: how(kept),
                    verified,
                };
                return Ok(finished(&source, outcome, flattened));
            }
            Plan::One {
                platform,
                manifest,
                of_index,
            } => Some((platform, manifest, of_index)),
            Plan::AsInspected => None,
        };
        // One platform of an index is IMAGE as far as the run goes; IMAGE as
        // one manifest keeps the engine's figures.
        if let Some((_, manifest, true)) = &one {
            source.layers = manifest.layers.len();
            source.size = manifest.layers_size();
        }
        // Kept layers stay on the engine: only a load above them can use them.
        let destination = match keep {
            Some(n) if n > 0 && destination.is_engine() => {
                Destination::Onto(store.expect("a run onto the engine has its store"))
            }
            _ => destination,
        };

        let for_platform = one
            .as_ref()
            .filter(|(_, _, of_index)| *of_index)
            .map(|(platform, _, _)| platform);
        let label = match for_platform {
            Some(platform) => format!("{image} ({platform})"),
            None => image.to_owned(),
        };
        // IMAGE's layers as the merge read them, for a verify.
        let mut mine: Option<Arc<Layers>> = None;
        // IMAGE's image the run reads: the platform of an index chosen.
        let pick = match &one {
            Some((_, manifest, true)) => Pick::Manifest(manifest.digest.clone()),
            _ => listed.clone(),
        };
        // IMAGE's config, where the run has it before the layer, for the
        // layer's comment; else IMAGE's ID.
        let mut known = serde_json::json!(source.id);
        let (config, read): (Config<'_>, Option<Arc<Layers>>) = match keep {
            None => {
                // A quick inspect on the graphdriver store, so asked before
                // any object exists; on the containerd store a read of the
                // save stream, which runs beside the layer instead, unless
                // the platform's config has come with IMAGE's index.
                let config: Config<'_> = match (&one, store) {
                    (Some((_, manifest, _)), _) => {
                        known = manifest.config.clone();
                        Box::pin(std::future::ready(Ok(manifest.config.clone())))
                    }
                    (None, Some(Store::Graphdriver) | None) => {
                        let config = self.inspected_config(&source.id, image).await?;
                        known = config.clone();
                        Box::pin(std::future::ready(Ok(config)))
                    }
                    (None, Some(Store::Containerd)) if before_plan => {
                        Box::pin(self.confirmed_config(&inspect, image))
                    }
                    (None, Some(Store::Containerd)) => Box::pin(self.saved_config(&inspect, image)),
                };
                (config, None)
            }
            Some(keep) => {
                // The config as the store keeps it comes with the layers.
                let layers = match read_first.take() {
                    Some(all) => all.pick(std::slice::from_ref(&pick), keep),
                    None => {
                        progress.expect_bytes(source.size);
                        progress.begin(Stage::Read, &label);
                        saved::layers::read(
                            self.docker(),
                            &source.id,
                            vec![pick.clone()],
                            keep,
                            progress.clone(),
                            saved::layers::Take::merged(request.verify),
                        )
                        .await
                    }
                }
                .map_err(|f| self.read_failed(image, request.input.as_deref(), f))?;
                mine = request.verify.then(|| layers.clone());
                let config = layers.images[0].config.clone();
                known = config.clone();
                (Box::pin(std::future::ready(Ok(config))), Some(layers))
            }
        };
        let created = one
            .as_ref()
            .map(|(_, manifest, _)| created_of(&manifest.config));
        let of = match (&read, keep) {
            (Some(layers), Some(keep)) => Of::Merge {
                layers,
                image: 0,
                keep,
            },
            _ => Of::Export {
                platform: for_platform,
                created: created.as_ref().unwrap_or(&inspect),
                bytes: source.size,
                stage: match &destination {
                    Destination::Import => (Stage::Stream, label.clone()),
                    Destination::Load | Destination::Onto(_) | Destination::Stdout => {
                        (Stage::Spool, label.clone())
                    }
                    Destination::File(path) => (Stage::Write, path.display().to_string()),
                },
            },
        };
        // An import (a graphdriver's, which keys nothing by digest) needs no
        // comment; a load does, and an archive, which may be loaded anywhere.
        let comment = Identity {
            image: &known,
            request,
            platform: for_platform,
            keep,
            compression,
            epoch,
        }
        .comment();
        let stamp = Stamp {
            comment: (destination != Destination::Import).then_some(comment.as_str()),
            epoch,
        };
        let (layer, kept) = match self
            .build(of, &source.id, &label, stamp, compression, &progress)
            .await
        {
            Ok(built) => built,
            // An image that is no one manifest, or one whose content the
            // engine lacks, fails its container first: the plan's read
            // says which, as it would have before the container.
            Err(e) if before_plan => {
                return Err(match config.await {
                    Err(
                        replan @ Error {
                            cause: Cause::Replan(_),
                            ..
                        },
                    ) => replan,
                    _ => e,
                })
            }
            Err(e) => return Err(e),
        };
        // IMAGE's config as the destination takes it, for the result's digest.
        let seen = Arc::new(std::sync::Mutex::new(None));
        let config: Config<'_> = {
            let seen = seen.clone();
            Box::pin(async move {
                let config = config.await?;
                *seen.lock().expect("not poisoned") = Some(config.clone());
                Ok(config)
            })
        };
        let config_of_kept = read.as_ref().map_or(&Value::Null, |l| &l.images[0].config);
        let recipe = recipe(image, source.layers, config_of_kept, &kept, epoch);
        let engine = self.engine(&progress);
        let check = request.verify.then(|| Check {
            image: image.to_owned(),
            source: source.clone(),
            store,
            picks: vec![(pick.clone(), Pick::Listed)],
            platforms: Vec::new(),
            mine,
            rules: Rules {
                export: keep.is_none(),
                inspected_config: keep.is_none() && store == Some(Store::Graphdriver),
                epoch,
            },
        });
        let mut verified = None;
        let (made, built) = match destination {
            Destination::Import => {
                let config = config.await?;
                let (id, built) =
                    sink::import::import(&engine, layer, &inspect, &config, &recipe).await?;
                let (made, report) = self.checked(check.as_ref(), id, request, &progress).await?;
                verified = report;
                (made, built)
            }
            Destination::Onto(store) => {
                let config = config.await?;
                let (id, built) =
                    sink::onto::load_onto(&engine, layer, config, &recipe, &kept, store).await?;
                let (made, report) = self.checked(check.as_ref(), id, request, &progress).await?;
                verified = report;
                (made, built)
            }
            Destination::Load => {
                let (id, built) = sink::load::load(&engine, layer, config, &recipe).await?;
                let (made, report) = self.checked(check.as_ref(), id, request, &progress).await?;
                verified = report;
                (made, built)
            }
            Destination::File(path) => {
                let output = output.expect("opened above");
                let (written, output) =
                    file::write(&engine, output, layer, config, &recipe, request.tag()).await?;
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
                    file::write_stdout(&engine, layer, config, &recipe, request.tag()).await?;
                let size = written.size;
                let path = PathBuf::from("-");
                (Made::Archive { path, size }, written.built)
            }
        };
        let kept_diff_ids = recipe.kept_diff_ids.clone();
        let source_config = seen.lock().expect("not poisoned").take();
        let digests = source_config.map(|config| {
            let config = recipe.config(&config, &built.digests.diff_id);
            let config = serde_json::to_vec(&config).expect("a JSON value serializes");
            ResultDigests::new(&config, &built.digests)
        });
        drop(recipe);
        progress.end();
        let flattened = Flattened {
            platform: one
                .as_ref()
                .map(|(platform, _, _)| platform.clone())
                .or_else(|| own_platform(&inspect)),
            source_manifest: match (&one, store) {
                // A docker-archive's image has no manifest.
                (Some(_), _) if matches!(listed, Pick::Entry(_)) => None,
                (Some((_, manifest, _)), _) => Some(manifest.digest.clone()),
                (None, Some(Store::Containerd)) => Some(source.id.clone()),
                (None, _) => None,
            },
            layers_before: source.layers,
            size_before: source.size,
            manifest: match (&made, store) {
                (Made::Image { id, .. }, Some(Store::Containerd)) => Some(id.clone()),
                _ => None,
            },
            layers_after: 1 + kept_diff_ids.len(),
            size_after: built.digests.blob_size,
            digests,
        };
        let outcome = Outcome::Flattened {
            made,
            compression,
            filter: built.filter,
            how: how(kept_diff_ids),
            verified,
        };
        Ok(finished(&source, outcome, vec![flattened]))
    }

    /// Points TAG at the new image `id` and reads its size.
    async fn tagged(&self, id: String, tag: &Tag, progress: &dyn Progress) -> Result<Made, Error> {
        self.tag(&id, tag, progress).await?;
        self.objects.record(|c| c.untagged = None);
        let size = self
            .docker()
            .inspect_image(&id)
            .await
            .map_err(self.failed(Step::InspectResult))?
            .size
            .unwrap_or(0)
            .max(0) as u64;
        Ok(Made::Image { id, size })
    }

    /// Points `tag` at the image `id`.
    async fn tag(&self, id: &str, tag: &Tag, progress: &dyn Progress) -> Result<(), Error> {
        progress.begin(Stage::Tag, &tag.to_string());
        let options = TagImageOptionsBuilder::default()
            .repo(&tag.repo)
            .tag(&tag.tag)
            .build();
        self.docker()
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
        let engine = if sink::compression::needs_version(requested, destination) {
            let version = store::version(self.docker())
                .await
                .map_err(self.failed(Step::ReadVersion))?;
            Some(version)
        } else {
            None
        };
        sink::compression::choose_compression(requested, destination, engine)
            .map_err(|refusal| self.error(Step::ReadVersion, Cause::Unsupported(refusal)))
    }
}
