//! Which platforms of IMAGE a run takes, decided before any object exists:
//! IMAGE as inspected, one platform, or every present one of its index.
//! Where only IMAGE's save stream tells (Engine 26.1's inspect has no
//! `Descriptor`), a default-mode run into the engine does not wait for that
//! slow read: it starts IMAGE's export as inspected beside it
//! ([`Pipeline::starts_before_plan`]), and IMAGE found to be an index after
//! all starts the run again from what the read gave ([`Cause::Replan`]).

use bollard::models::ImageInspect;
use serde_json::Value;

use super::{own_platform, Pipeline, Request};
use crate::engine::store::Store;
use crate::error::{Cause, Error, Step, Unexpected};
use crate::model::platform::{NotOffered, Offered, Platform};
use crate::model::source_index::{self, ChoiceError, IndexError, LeftOut, Plan, SourceIndex};
use crate::saved;
use crate::saved::walk::IndexReadError;

impl Pipeline<'_> {
    /// Which platforms of IMAGE to flatten, refused before any object
    /// exists when IMAGE lacks the one asked for. A graphdriver image, and
    /// on the containerd store an image the engine says is one manifest
    /// (its inspect's `Descriptor`, API 1.48+), need no look at the index;
    /// otherwise IMAGE's save stream says (Engine 26.1 tells no other way).
    pub(super) async fn plan(
        &self,
        inspect: &ImageInspect,
        image: &str,
        store: Store,
        wanted: Option<&Platform>,
    ) -> Result<(Plan, LeftOut), Error> {
        let step = || Step::ChoosePlatforms(image.to_owned());
        let one_manifest = said_one_manifest(inspect);
        match (store, wanted) {
            (Store::Graphdriver, None) => return Ok((Plan::AsInspected, LeftOut::default())),
            (Store::Containerd, None) if one_manifest => {
                return Ok((Plan::AsInspected, LeftOut::default()))
            }
            (Store::Graphdriver, Some(wanted)) => {
                let own = own_platform(inspect);
                if own.as_ref().is_some_and(|own| wanted.matches(own)) {
                    return Ok((Plan::AsInspected, LeftOut::default()));
                }
                let refusal = Box::new(ChoiceError::NotOffered(NotOffered {
                    image: image.to_owned(),
                    wanted: wanted.clone(),
                    offered: own
                        .into_iter()
                        .map(|platform| Offered {
                            platform,
                            present: true,
                        })
                        .collect(),
                }));
                return Err(self.error(step(), Cause::Platforms(refusal)));
            }
            (Store::Containerd, _) => {}
        }
        let id = inspect.id.clone().unwrap_or_else(|| image.to_owned());
        let read = saved::index(self.docker(), &id)
            .await
            .map_err(self.failed(step()))?;
        self.plan_of(read, image, wanted).await
    }

    /// Whether [`Pipeline::plan`] reads IMAGE's save stream: on the
    /// containerd store, unless the engine says IMAGE is one manifest and
    /// no platform is asked for.
    pub(super) fn plan_reads_save(
        inspect: &ImageInspect,
        store: Store,
        wanted: Option<&Platform>,
    ) -> bool {
        store == Store::Containerd && !(said_one_manifest(inspect) && wanted.is_none())
    }

    /// Whether the run starts IMAGE's export as inspected while the plan's
    /// read of its save stream runs beside it ([`Pipeline::confirmed_config`]),
    /// instead of before. That read goes as far as IMAGE's manifest and
    /// config in the stream's digest order: measured on Engine 26.1, 4.8 s of
    /// a 27 s run of a 1 GiB image, all of it before the export. Only where
    /// the inspect does not say what IMAGE is (no `Descriptor`: API < 1.48),
    /// for a default-mode run into the engine's load that asks for no
    /// platform; and not for an image of one layer, which the run would tag
    /// as it is if the plan were not an index's.
    pub(super) fn starts_before_plan(
        inspect: &ImageInspect,
        store: Store,
        request: &Request,
        layers: usize,
    ) -> bool {
        let wanted = request.platform.as_ref();
        store == Store::Containerd
            && request.merge.is_none()
            && request.output.is_none()
            && request.input.is_none()
            && wanted.is_none()
            && layers > 1
            && said_media_type(inspect).is_none()
    }

    /// IMAGE's config, from the read the plan would have made first: the
    /// one manifest's config, or [`Cause::Replan`] with what the read gave
    /// (an index, or a failure the plan reports as it would have).
    pub(super) async fn confirmed_config(
        &self,
        inspect: &ImageInspect,
        image: &str,
    ) -> Result<Value, Error> {
        let step = || Step::ChoosePlatforms(image.to_owned());
        let id = inspect.id.clone().unwrap_or_else(|| image.to_owned());
        let read = saved::index(self.docker(), &id)
            .await
            .map_err(self.failed(step()))?;
        match read {
            Ok(SourceIndex::Manifest(manifest)) => Ok(manifest.config),
            other => Err(self.error(step(), Cause::Replan(Box::new(other)))),
        }
    }

    /// The plan for what IMAGE's save stream said its ID names. Async like
    /// the other steps, so that its large `Error` lives in their future.
    pub(super) async fn plan_of(
        &self,
        index: Result<SourceIndex, IndexReadError>,
        image: &str,
        wanted: Option<&Platform>,
    ) -> Result<(Plan, LeftOut), Error> {
        let step = || Step::ChoosePlatforms(image.to_owned());
        let index = match index {
            Err(IndexReadError::Index(IndexError::Incomplete { digest })) => {
                let incomplete = self.incomplete(image, digest).await;
                return Err(self.error(step(), Cause::Incomplete(Box::new(incomplete))));
            }
            other => {
                other.map_err(|e| self.error(step(), Cause::Unexpected(Unexpected::Index(e))))?
            }
        };
        let choice = index
            .choose(image, wanted)
            .map_err(|e| self.error(step(), Cause::Platforms(e)))?;
        Ok(choice.plan(matches!(index, SourceIndex::Index(_))))
    }
}

/// What the inspect's `Descriptor` (API 1.48+) says IMAGE's ID names: a
/// manifest's or an index's media type; `None` where the engine does not say.
fn said_media_type(inspect: &ImageInspect) -> Option<&str> {
    inspect.descriptor.as_ref()?.media_type.as_deref()
}

/// Whether the inspect says IMAGE is one manifest.
fn said_one_manifest(inspect: &ImageInspect) -> bool {
    said_media_type(inspect).is_some_and(|t| source_index::MANIFEST_TYPES.contains(&t))
}
