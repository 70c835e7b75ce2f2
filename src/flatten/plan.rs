//! Which platforms of IMAGE a run takes, decided before any object exists:
//! IMAGE as inspected, one platform, or every present one of its index.

use bollard::models::ImageInspect;

use super::{own_platform, Pipeline};
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
        let media_type = inspect
            .descriptor
            .as_ref()
            .and_then(|d| d.media_type.as_deref());
        let one_manifest = media_type.is_some_and(|t| source_index::MANIFEST_TYPES.contains(&t));
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
        let one_manifest = inspect
            .descriptor
            .as_ref()
            .and_then(|d| d.media_type.as_deref())
            .is_some_and(|t| source_index::MANIFEST_TYPES.contains(&t));
        store == Store::Containerd && !(one_manifest && wanted.is_none())
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
