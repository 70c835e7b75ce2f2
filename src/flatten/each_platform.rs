//! A multi-platform IMAGE on the containerd store, flattened platform by
//! platform: each gets a container created for that platform, its export
//! through the filter into a compressed layer spooled to a temporary file,
//! and a one-layer manifest with that platform's own config; then one
//! `docker load` of an index over them all ([`IndexArchive`]), tagged TAG.
//! N platforms cost N exports and one load, about N single flattens.
//! With `--exact` the exports are merges instead: one read of IMAGE's save
//! stream spools every platform's layers, and each platform's are merged.
//!
//! Nothing is loaded until every platform has been exported: an interrupt
//! or a failure on any platform leaves no image and TAG where it was, and
//! the ledger's cleanup removes the containers made so far. With `--output`
//! the same archive, named TAG, is written instead of loaded.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use bollard::models::ImageInspect;
use bytes::Bytes;
use futures_util::{stream, Stream, StreamExt};
use serde_json::Value;

use super::build::{recipe, Identity, Of, Stamp};
use super::{
    created_of, own_platform, source_image, Check, Flattened, Made, Pipeline, Request,
    ResultDigests,
};
use crate::engine::store::Store;
use crate::error::{Cause, Error, Step};
use crate::model::compression::Compression;
use crate::model::platform::Platform;
use crate::model::source_index::Manifest;
use crate::progress::{Progress, Stage};
use crate::saved;
use crate::saved::walk::Pick;
use crate::sink::archive::index::{IndexArchive, PlatformImage};
use crate::sink::{file, load, spool::Spool};
use crate::source::filter::FilterStats;
use crate::tar::blocks;
use crate::verify::{read::Theirs, Report, Rules};

type Part = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// How the platforms are flattened, and where the index goes.
pub(super) struct IndexRun {
    pub compression: Compression,
    /// `SOURCE_DATE_EPOCH`, when set.
    pub epoch: Option<u64>,
    pub delivery: Delivery,
    /// Merge each platform's own layers, keeping its bottom `keeps[i]`;
    /// `None`: each platform's container export.
    pub keeps: Option<Vec<usize>>,
    /// IMAGE's save stream, already read whole for the plan.
    pub read: Option<saved::layers::Unpicked>,
    /// The engine's store; `None` with no engine (`-i` into a file).
    pub store: Option<Store>,
}

/// Where the index goes.
pub(super) enum Delivery {
    /// Loaded into the engine and tagged TAG.
    Load,
    /// An archive in FILE (written beside it first), named TAG.
    File(file::Output, PathBuf),
    /// An archive on stdout, named TAG.
    Stdout,
}

impl Pipeline<'_> {
    /// Flattens every one of `platforms` (IMAGE's, in index order) and
    /// loads them as one index, tagged TAG, or writes its archive. In the
    /// merge modes each platform's layer is the merge of its own layers
    /// above the ones it keeps, all read from one save stream; the kept
    /// layers stay the engine's, named by the manifests, not carried.
    pub(super) async fn flatten_index(
        &self,
        request: &Request,
        inspect: &ImageInspect,
        platforms: &[(Platform, Manifest)],
        run: IndexRun,
        progress: &Arc<dyn Progress>,
    ) -> Result<(Made, FilterStats, Vec<Flattened>, Option<Report>), Error> {
        let IndexRun {
            compression,
            epoch,
            delivery,
            keeps,
            read,
            store,
        } = run;
        let image = request.image.as_str();
        let exact = keeps.is_some();
        let keep_of = |i: usize| keeps.as_ref().map_or(0, |k| k[i]);
        let source_id = inspect.id.clone().unwrap_or_else(|| image.to_owned());
        let engine = self.engine(progress);
        let mut images = Vec::with_capacity(platforms.len());
        let mut spools = Vec::with_capacity(platforms.len());
        let mut flattened = Vec::with_capacity(platforms.len());
        let mut filter = FilterStats::default();
        let merged = match exact {
            false => None,
            true => {
                let picks: Vec<Pick> = platforms
                    .iter()
                    .map(|(_, m)| Pick::Manifest(m.digest.clone()))
                    .collect();
                let keep = keeps.iter().flatten().copied().min().unwrap_or(0);
                let layers = match read {
                    Some(all) => all.pick(&picks, keep),
                    None => {
                        progress.expect_bytes(platforms.iter().map(|(_, m)| m.layers_size()).sum());
                        progress.begin(Stage::Read, image);
                        saved::layers::read(
                            self.docker(),
                            &source_id,
                            picks,
                            keep,
                            progress.clone(),
                            saved::layers::Take::merged(request.verify),
                        )
                        .await
                    }
                }
                .map_err(|f| self.read_failed(image, f))?;
                Some(layers)
            }
        };
        for (i, (platform, manifest)) in platforms.iter().enumerate() {
            let label = format!("{image} ({platform})");
            let of = match &merged {
                None => Of::Export {
                    platform: Some(platform),
                    created: &created_of(&manifest.config),
                    bytes: manifest.layers_size(),
                    stage: (Stage::Spool, label.clone()),
                },
                Some(layers) => Of::Merge {
                    layers,
                    image: i,
                    keep: keep_of(i),
                },
            };
            // Each platform's layer its own, as on the one-platform path.
            let comment = Identity {
                image: &manifest.config,
                request,
                platform: Some(platform),
                keep: keeps.as_ref().map(|_| keep_of(i)),
                compression,
                epoch,
            }
            .comment();
            let stamp = Stamp {
                comment: Some(&comment),
                epoch,
            };
            let (layer, kept) = self
                .build(of, &source_id, &label, stamp, compression, progress)
                .await?;
            let no_config = std::future::ready(Ok(Value::Null));
            let (built, spool, _) = load::spool_beside(&engine, layer, no_config, &label).await?;
            let recipe = recipe(image, manifest.layers.len(), &manifest.config, &kept, epoch);
            let config = recipe.config(&manifest.config, &built.digests.diff_id);
            let config = serde_json::to_vec(&config).expect("a JSON value serializes");
            let digests = ResultDigests::new(&config, &built.digests);
            images.push(PlatformImage {
                config,
                kept: kept.to_vec(),
                layer: built.digests.clone(),
                platform: platform.to_oci(),
            });
            flattened.push(Flattened {
                platform: Some(platform.clone()),
                source_manifest: Some(manifest.digest.clone()),
                layers_before: manifest.layers.len(),
                size_before: manifest.layers_size(),
                manifest: None,
                layers_after: 1 + kept.len(),
                size_after: built.digests.blob_size,
                digests: Some(digests),
            });
            filter.dropped.extend(built.filter.dropped);
            spools.push(spool);
        }
        filter.dropped.sort();
        filter.dropped.dedup();

        // An engine that reads only `manifest.json` gets the platform
        // IMAGE's inspect describes, the host's.
        let main = own_platform(inspect)
            .and_then(|own| platforms.iter().position(|(p, _)| own.matches(p)))
            .unwrap_or(0);
        let name = (!matches!(delivery, Delivery::Load)).then_some((request.tag(), main));
        let archive = IndexArchive::new(images, name);
        for (f, digest) in flattened.iter_mut().zip(archive.manifest_digests()) {
            f.manifest = Some(digest);
        }
        progress.expect_bytes(flattened.iter().map(|f| f.size_after).sum());
        // Each platform's result beside that platform's own layers.
        let check = request.verify.then(|| Check {
            image: image.to_owned(),
            source: source_image(inspect),
            store,
            picks: platforms
                .iter()
                .zip(archive.manifest_digests())
                .map(|((_, m), theirs)| (Pick::Manifest(m.digest.clone()), Pick::Manifest(theirs)))
                .collect(),
            platforms: platforms.iter().map(|(p, _)| p.to_string()).collect(),
            mine: merged.clone(),
            rules: Rules {
                export: !exact,
                inspected_config: false,
                epoch,
            },
        });
        let mut verified = None;
        let made = match delivery {
            Delivery::Load => {
                progress.begin(Stage::LoadIndex, image);
                let body = self.archive_body(&archive, spools, progress).await?;
                let id = load::load_archive(&engine, archive.id(), body, Step::Load).await?;
                if let Some(check) = &check {
                    verified = Some(self.verify(check, Theirs::Image(&id), progress).await?);
                }
                self.tagged(id, request.tag(), progress.as_ref()).await?
            }
            Delivery::File(output, path) => {
                progress.begin(Stage::Write, &path.display().to_string());
                let body = self.archive_body(&archive, spools, progress).await?;
                let size = file::write_whole(&engine, Some(&output), body).await?;
                if let Some(check) = &check {
                    let theirs = Theirs::File(output.written());
                    verified = Some(self.verify(check, theirs, progress).await?);
                }
                file::finish(&engine, output).map_err(|e| *e)?;
                Made::Archive { path, size }
            }
            Delivery::Stdout => {
                progress.begin(Stage::Write, "stdout");
                let body = self.archive_body(&archive, spools, progress).await?;
                let size = file::write_whole(&engine, None, body).await?;
                let path = PathBuf::from("-");
                Made::Archive { path, size }
            }
        };
        Ok((made, filter, flattened, verified))
    }

    /// The archive's bytes: its metadata, then each platform's layer read
    /// back from its spool (a blob two platforms share, once), then the end.
    async fn archive_body(
        &self,
        archive: &IndexArchive,
        spools: Vec<Spool>,
        progress: &Arc<dyn Progress>,
    ) -> Result<impl Stream<Item = std::io::Result<Bytes>> + Send + 'static, Error> {
        let mut parts: Vec<Part> = vec![once(archive.metadata())];
        let mut written = std::collections::HashSet::new();
        for (i, spool) in spools.into_iter().enumerate() {
            if !written.insert(archive.layer_header(i)) {
                continue;
            }
            let blob = spool.read(progress.clone()).await.map_err(|error| {
                self.error(
                    Step::Spool(archive.id()),
                    Cause::Local {
                        dir: crate::sink::spool::dir(),
                        error,
                    },
                )
            })?;
            parts.push(once(archive.layer_header(i)));
            parts.push(Box::pin(blob));
            parts.push(once(archive.layer_padding(i)));
        }
        parts.push(once(Bytes::from_static(&blocks::END_OF_ARCHIVE)));
        Ok(stream::iter(parts).flatten())
    }
}

fn once(bytes: Bytes) -> Part {
    Box::pin(stream::once(async { Ok(bytes) }))
}
