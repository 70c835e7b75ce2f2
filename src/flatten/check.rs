//! `--verify` and `--verify-only` in the pipeline: the result read back (from the engine,
//! or from FILE before it is renamed into place) and compared with IMAGE's
//! layers as the merge applies them ([`crate::verify`]), before TAG moves.

use std::sync::Arc;
use std::time::Instant;

use bollard::errors::Error as EngineError;

use super::{source_image, Made, Pipeline, Request, SourceImage, VerifyOutcome};
use crate::engine::store::{self, Store};
use crate::error::{Cause, Differs, Error, Step, Unexpected};
use crate::progress::{Progress, Stage};
use crate::saved;
use crate::saved::layers::Take;

/// How a verify takes each layer: its entries' facts, nothing spooled.
const FACTS: Take = Take {
    spool: false,
    facts: true,
};
use crate::saved::walk::Pick;
use crate::verify::{self, read::Theirs, Layers, Report, Rules, Side};

/// What a `--verify` holds the result to.
pub(super) struct Check {
    /// IMAGE as the user named it.
    pub image: String,
    pub source: SourceImage,
    pub store: Option<Store>,
    /// Which of IMAGE's images (platforms of an index) the result holds,
    /// and where the result has each: pairs compared in turn.
    pub picks: Vec<(Pick, Pick)>,
    /// The platforms' names, to say which one a difference is of; empty
    /// for one image.
    pub platforms: Vec<String>,
    /// IMAGE's layers, when the merge has read them already (that image
    /// first).
    pub mine: Option<Arc<Layers>>,
    pub rules: Rules,
}

impl Pipeline<'_> {
    /// Verifies the new image `id` if asked, then points TAG at it.
    pub(super) async fn checked(
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
        let made = self.tagged(id, request.tag(), progress.as_ref()).await?;
        Ok((made, report))
    }

    /// Compares `flat`, flattened earlier (`merged`: from IMAGE's layers,
    /// not an export), with IMAGE's layers. Changes nothing.
    pub async fn verify_only(
        &self,
        image: &str,
        flat: &str,
        merged: bool,
        epoch: Option<u64>,
        progress: Arc<dyn Progress>,
    ) -> Result<VerifyOutcome, Error> {
        progress.begin(Stage::Inspect, image);
        let source = source_image(&self.inspect_source(image).await?);
        let flat_id = source_image(&self.inspect_source(flat).await?).id;
        let store = store::probe(self.docker())
            .await
            .map_err(self.failed(Step::ReadInfo))?;
        let check = Check {
            image: image.to_owned(),
            source: source.clone(),
            store: Some(store),
            picks: vec![(Pick::Listed, Pick::Listed)],
            platforms: Vec::new(),
            mine: None,
            rules: Rules {
                export: !merged,
                inspected_config: !merged && store == Store::Graphdriver,
                // A result made with SOURCE_DATE_EPOCH is checked with it.
                epoch,
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

    /// Reads the result back and compares it with IMAGE's layers (read now
    /// unless the merge has them): fails naming the differences the mode
    /// does not account for.
    pub(super) async fn verify(
        &self,
        check: &Check,
        theirs: Theirs<'_>,
        progress: &Arc<dyn Progress>,
    ) -> Result<Report, Error> {
        let started = Instant::now();
        let image = check.image.as_str();
        progress.expect_bytes(2 * check.source.size);
        progress.begin(Stage::Verify, image);
        let theirs_picks: Vec<Pick> = check.picks.iter().map(|(_, t)| t.clone()).collect();
        let mine = async {
            match &check.mine {
                Some(layers) => Ok(layers.clone()),
                None => saved::layers::read_picked(
                    self.docker(),
                    &check.source.id,
                    check.picks.iter().map(|(mine, _)| mine.clone()).collect(),
                    progress.clone(),
                    FACTS,
                )
                .await
                .map(Arc::new)
                .map_err(|f| match f {
                    saved::layers::ReadFailure::Engine(
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
                Theirs::Image(id) => saved::layers::read_picked(
                    self.docker(),
                    id,
                    theirs_picks,
                    progress.clone(),
                    FACTS,
                )
                .await
                .map_err(|f| self.result_unread(id, f)),
                Theirs::File(path) => verify::read::file(path, theirs_picks).await.map_err(|e| {
                    let what = path.display().to_string();
                    self.error(
                        Step::ReadResult(what),
                        Cause::Unexpected(Unexpected::Read(e)),
                    )
                }),
            }
        };
        let (mine, theirs) = tokio::join!(mine, theirs);
        let (mine, theirs) = (mine?, theirs?);
        let rules = check.rules;
        let platforms = check.platforms.clone();
        let compared = tokio::task::spawn_blocking(move || {
            let mut all = Report::default();
            for i in 0..theirs.images.len() {
                let mut one = verify::compare(Side::of(&mine, i), Side::of(&theirs, i), rules)?;
                if let Some(platform) = platforms.get(i) {
                    for d in one.differences.iter_mut().chain(one.expected.iter_mut()) {
                        d.path = format!("{platform}: {}", d.path);
                    }
                }
                all.paths += one.paths;
                all.differences.append(&mut one.differences);
                all.expected.append(&mut one.expected);
            }
            Ok::<_, crate::layers::MergeError>(all)
        })
        .await
        .expect("the comparison does not panic");
        let step = || Step::Verify(image.to_owned());
        let mut report =
            compared.map_err(|e| self.error(step(), Cause::Unexpected(Unexpected::Layers(e))))?;
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
    fn result_unread(&self, id: &str, failure: saved::layers::ReadFailure) -> Error {
        let step = Step::ReadResult(id.to_owned());
        match failure {
            saved::layers::ReadFailure::Engine(e) => self.error(step, Cause::Engine(e)),
            saved::layers::ReadFailure::Archive(e) => {
                self.error(step, Cause::Unexpected(Unexpected::Read(e)))
            }
            saved::layers::ReadFailure::Spool(e) => {
                self.error(step, Cause::Unexpected(Unexpected::Io(e)))
            }
        }
    }
}
