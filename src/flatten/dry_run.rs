//! `--dry-run`: IMAGE's layers read as `docker save` streams them, listed
//! (never spooled), and applied per platform a flatten would take by the
//! rules `--exact` merges with ([`crate::layers::savings`]). Creates
//! nothing.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::{left_out, own_platform, source_image, Analysed, DryRunOutcome, Keep, Pipeline};
use crate::engine::store::{self, Store};
use crate::error::{Cause, Error, Step, Unexpected};
use crate::layers::savings;
use crate::model::platform::Platform;
use crate::model::source_index::{self, Plan};
use crate::progress::{Progress, Stage};
use crate::saved::layers::{self, ReadFailure, Take};
use crate::saved::walk::Pick;

impl Pipeline<'_> {
    /// Reads IMAGE's layers as `docker save` would and works out what
    /// flattening would gain. Creates nothing on the engine.
    ///
    /// A multi-platform IMAGE is analysed per platform, as a flatten would
    /// take it: every present platform, or the one `wanted`. With `keep`,
    /// what that partial flatten would gain.
    pub async fn dry_run(
        &self,
        image: &str,
        input: Option<&Path>,
        wanted: Option<&Platform>,
        keep: Option<&Keep>,
        progress: Arc<dyn Progress>,
    ) -> Result<DryRunOutcome, Error> {
        let started = Instant::now();
        // From an archive: read whole first, for IMAGE, its plan and layers.
        let from_input = match input {
            Some(path) => Some(
                self.read_archive(path, image, wanted, Take::LISTED, &progress)
                    .await?,
            ),
            None => None,
        };
        let named = from_input.as_ref().map(|from| from.reference.clone());
        let image = named.as_deref().unwrap_or(image);
        let inspect = match &from_input {
            Some(from) => from.inspect.clone(),
            None => {
                progress.begin(Stage::Inspect, image);
                self.inspect_source(image).await?
            }
        };
        let source = source_image(&inspect);
        let store = match from_input {
            Some(_) => None,
            None => Some(
                store::probe(self.docker())
                    .await
                    .map_err(self.failed(Step::ReadInfo))?,
            ),
        };
        let step = || Step::ReadLayers(image.to_owned());
        let failed = |f| match f {
            ReadFailure::Engine(e) => self.error(step(), Cause::Engine(e)),
            ReadFailure::Archive(e) => match left_out(image, &e) {
                Some(incomplete) => self.error(step(), Cause::Incomplete(Box::new(incomplete))),
                None => self.error(step(), Cause::Unexpected(Unexpected::Read(e))),
            },
            ReadFailure::Spool(_) => self.read_failed(image, f),
        };
        // Where the plan would read the save stream (Engine 26.1), the one
        // read the analysis needs comes first and serves both.
        let mut read_first = None;
        let mut listed = Pick::Listed;
        let (plan, left_out) = if let Some(from) = from_input {
            read_first = Some(from.read);
            listed = from.pick;
            (from.plan, from.left_out)
        } else if store.is_some_and(|s| Self::plan_reads_save(&inspect, s, wanted)) {
            progress.expect_bytes(source.size);
            progress.begin(Stage::Read, image);
            let all = layers::read_all(self.docker(), &source.id, progress.clone(), Take::LISTED)
                .await
                .map_err(failed)?;
            let planned = self.plan_of(all.index(&source.id), image, wanted).await?;
            read_first = Some(all);
            planned
        } else {
            let store = store.expect("a dry run from the engine has its store");
            self.plan(&inspect, image, store, wanted).await?
        };
        let keep = match keep {
            Some(keep) => self.keeps_for_plan(keep, &plan, &inspect, image).await?,
            None => Vec::new(),
        };
        let chosen: Vec<(Platform, source_index::Manifest)> = match plan {
            Plan::AsInspected => Vec::new(),
            Plan::One {
                platform, manifest, ..
            } => vec![(platform, manifest)],
            Plan::Index(platforms) => platforms,
        };
        let picks = match (&chosen[..], &listed) {
            // A docker-archive's image is read as its entry: it has no manifest.
            ([], _) | ([_], Pick::Entry(_)) => vec![listed.clone()],
            (some, _) => some
                .iter()
                .map(|(_, m)| Pick::Manifest(m.digest.clone()))
                .collect(),
        };
        let read = match read_first {
            Some(all) => all.pick(&picks, 0).map_err(failed)?,
            None => {
                progress.expect_bytes(match &chosen[..] {
                    [] => source.size,
                    some => some.iter().map(|(_, m)| m.layers_size()).sum(),
                });
                progress.begin(Stage::Read, image);
                let read = layers::read_picked(
                    self.docker(),
                    &source.id,
                    picks,
                    progress.clone(),
                    Take::LISTED,
                )
                .await
                .map_err(failed)?;
                Arc::new(read)
            }
        };
        // The layers applied by the merge's rules: CPU work, off the runtime.
        let all = tokio::task::spawn_blocking(move || {
            read.images
                .iter()
                .enumerate()
                .map(|(i, image)| {
                    let indexes: Vec<_> =
                        image.layers.iter().map(|l| &read.blobs[l.blob]).collect();
                    let diff_ids: Vec<_> = image.layers.iter().map(|l| l.diff_id.clone()).collect();
                    let keep = keep.get(i).copied().unwrap_or(0);
                    savings::of(&indexes, &diff_ids, &image.config, keep)
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .expect("the analysis does not panic")
        .map_err(|e| self.error(step(), Cause::Unexpected(Unexpected::Layers(e))))?;
        let platforms = if chosen.is_empty() {
            vec![Analysed {
                platform: own_platform(&inspect),
                manifest: (store == Some(Store::Containerd)).then(|| source.id.clone()),
                layers: source.layers,
                size: source.size,
                savings: all.into_iter().next().expect("one image picked, one read"),
                chosen: wanted.is_some(),
            }]
        } else {
            chosen
                .into_iter()
                .zip(all)
                .map(|((platform, manifest), savings)| Analysed {
                    platform: Some(platform),
                    layers: manifest.layers.len(),
                    size: manifest.layers_size(),
                    manifest: Some(manifest.digest),
                    savings,
                    chosen: wanted.is_some(),
                })
                .collect()
        };
        progress.end();
        Ok(DryRunOutcome {
            source,
            platforms,
            left_out,
            elapsed: started.elapsed(),
            store,
            named,
        })
    }
}
