//! `--exact`, `--keep-base`, `--keep-layers`: how many of IMAGE's bottom
//! layers a merge keeps as they are, checked before any object exists.

use bollard::models::ImageInspect;

use serde_json::Value;

use super::{Keep, Pipeline};
use crate::error::{Cause, Error, Step};
use crate::platform::Platform;
use crate::platforms::Plan;
use crate::store;

impl Pipeline<'_> {
    /// How many bottom layers `keep` keeps of each image `plan` takes, in
    /// the plan's order: one for IMAGE or the platform asked for, one per
    /// platform of a multi-platform IMAGE (a BASE is then matched platform
    /// by platform, as the engine would pull it).
    pub(super) async fn keeps_for_plan(
        &self,
        keep: &Keep,
        plan: &Plan,
        inspect: &ImageInspect,
        image: &str,
    ) -> Result<Vec<usize>, Error> {
        let platforms = match plan {
            Plan::Index(platforms) => platforms,
            Plan::One {
                platform,
                manifest,
                of_index: true,
            } => {
                let layers = diff_ids(&manifest.config);
                let base = self.base_layers(keep, Some(platform)).await?;
                return Ok(vec![
                    self.keep(keep, base.as_deref(), &layers, image).await?,
                ]);
            }
            _ => {
                let layers = inspect
                    .root_fs
                    .as_ref()
                    .and_then(|r| r.layers.clone())
                    .unwrap_or_default();
                let base = self.base_layers(keep, None).await?;
                return Ok(vec![
                    self.keep(keep, base.as_deref(), &layers, image).await?,
                ]);
            }
        };
        let mut keeps = Vec::with_capacity(platforms.len());
        for (platform, manifest) in platforms {
            let base = self.base_layers(keep, Some(platform)).await?;
            let which = format!("{image} ({platform})");
            keeps.push(
                self.keep(keep, base.as_deref(), &diff_ids(&manifest.config), &which)
                    .await?,
            );
        }
        Ok(keeps)
    }

    /// BASE's layers (of `platform`, where BASE has several platforms),
    /// for `--keep-base`; `None` for the other modes.
    async fn base_layers(
        &self,
        keep: &Keep,
        platform: Option<&Platform>,
    ) -> Result<Option<Vec<String>>, Error> {
        let Keep::Base(base) = keep else {
            return Ok(None);
        };
        let inspect = self.inspect_source(base).await?;
        let store = store::probe(&self.docker)
            .await
            .map_err(self.failed(Step::ReadInfo))?;
        // A one-platform BASE is every platform's base as far as its layers
        // go; a multi-platform one gives each platform its own.
        let (plan, _) = self.plan(&inspect, base, store, None).await?;
        let plan = match (plan, platform) {
            (Plan::Index(_), Some(platform)) => {
                self.plan(&inspect, base, store, Some(platform)).await?.0
            }
            (plan, _) => plan,
        };
        Ok(Some(match plan {
            Plan::One { manifest, .. } => diff_ids(&manifest.config),
            _ => inspect.root_fs.and_then(|r| r.layers).unwrap_or_default(),
        }))
    }

    /// How many of IMAGE's bottom layers `keep` keeps; refused when that
    /// leaves nothing to merge, or BASE is not what IMAGE is built on.
    async fn keep(
        &self,
        keep: &Keep,
        base_layers: Option<&[String]>,
        layers: &[String],
        image: &str,
    ) -> Result<usize, Error> {
        let refused = |why: String| self.error(Step::Keep(image.to_owned()), Cause::Refused(why));
        let n = match (keep, base_layers) {
            (Keep::Base(base), Some(base_layers)) => match first_difference(base_layers, layers) {
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
            },
            (Keep::Layers(n), _) => *n,
            (Keep::Base(_), None) => unreachable!("BASE's layers are read for --keep-base"),
        };
        if n >= layers.len() && !(n == 0 && layers.is_empty()) {
            return Err(refused(format!(
                "{image} has {} layer(s) and all {n} would be kept: nothing to merge",
                layers.len()
            )));
        }
        Ok(n)
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

/// An image config's diff IDs, bottom first.
fn diff_ids(config: &Value) -> Vec<String> {
    config["rootfs"]["diff_ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d.as_str().map(str::to_owned))
        .collect()
}
