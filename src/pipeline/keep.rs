//! `--exact`, `--keep-base`, `--keep-layers`: how many of IMAGE's bottom
//! layers a merge keeps as they are, checked before any object exists.

use bollard::models::ImageInspect;

use super::{Keep, Pipeline};
use crate::error::{Cause, Error, Step};
use crate::platforms::Plan;

impl Pipeline<'_> {
    /// [`Pipeline::keep`] for the image `plan` takes. Every platform of a
    /// multi-platform IMAGE can be merged whole (`--exact`); keeping layers
    /// takes one platform, whose own layers BASE must be the bottom of.
    pub(super) async fn keep_for_plan(
        &self,
        keep: &Keep,
        plan: &Plan,
        inspect: &ImageInspect,
        image: &str,
    ) -> Result<usize, Error> {
        let layers: Vec<String> = match plan {
            Plan::Index(platforms) => {
                if *keep == Keep::Layers(0) {
                    return Ok(0);
                }
                let offered: Vec<String> = platforms.iter().map(|(p, _)| p.to_string()).collect();
                return Err(self.error(
                    Step::Keep(image.to_owned()),
                    Cause::Refused(format!(
                        "{image} is a multi-platform image ({}), and --keep-base and \
                         --keep-layers keep the layers of one: choose it with --platform",
                        offered.join(", ")
                    )),
                ));
            }
            Plan::One {
                manifest,
                of_index: true,
                ..
            } => manifest.config["rootfs"]["diff_ids"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| d.as_str().map(str::to_owned))
                .collect(),
            _ => inspect
                .root_fs
                .as_ref()
                .and_then(|r| r.layers.clone())
                .unwrap_or_default(),
        };
        self.keep(keep, &layers, image).await
    }

    /// How many of IMAGE's bottom layers `keep` keeps; refused when that
    /// leaves nothing to merge, or BASE is not what IMAGE is built on.
    async fn keep(&self, keep: &Keep, layers: &[String], image: &str) -> Result<usize, Error> {
        let refused = |why: String| self.error(Step::Keep(image.to_owned()), Cause::Refused(why));
        let n = match keep {
            Keep::Layers(n) => *n,
            Keep::Base(base) => {
                let base_inspect = self.inspect_source(base).await?;
                let base_layers = base_inspect
                    .root_fs
                    .and_then(|r| r.layers)
                    .unwrap_or_default();
                match first_difference(&base_layers, layers) {
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
}

/// Where BASE's layers stop being IMAGE's: the index, and IMAGE's layer
/// there (`None` when IMAGE has fewer); `None` when BASE is a prefix.
fn first_difference(base: &[String], image: &[String]) -> Option<(usize, Option<String>)> {
    base.iter()
        .enumerate()
        .find(|(i, b)| image.get(*i) != Some(*b))
        .map(|(i, _)| (i, image.get(i).cloned()))
}
