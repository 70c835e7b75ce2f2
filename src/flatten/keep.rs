//! `--exact`, `--keep-base`, `--keep-layers`: how many of IMAGE's bottom
//! layers a merge keeps as they are, checked before any object exists.

use bollard::models::ImageInspect;

use serde_json::Value;

use super::{inspected_layers, Keep, Pipeline};
use crate::engine::store;
use crate::error::{Cause, Error, Step};
use crate::model::platform::Platform;
use crate::model::source_index::Plan;

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
        // Each image taken: how it is named, its layers, its platform.
        let images: Vec<(String, Vec<String>, Option<&Platform>)> = match plan {
            Plan::Index(platforms) => platforms
                .iter()
                .map(|(platform, manifest)| {
                    (
                        format!("{image} ({platform})"),
                        diff_ids(&manifest.config),
                        Some(platform),
                    )
                })
                .collect(),
            Plan::One {
                platform,
                manifest,
                of_index: true,
            } => vec![(image.to_owned(), diff_ids(&manifest.config), Some(platform))],
            _ => vec![(image.to_owned(), inspected_layers(inspect), None)],
        };
        let mut base = match keep {
            Keep::Base(name) => Some(Base {
                name,
                inspect: self.inspect_source(name).await?,
                plan: None,
            }),
            Keep::Layers(_) => None,
        };
        let mut keeps = Vec::with_capacity(images.len());
        for (which, layers, platform) in &images {
            let base_layers = match &mut base {
                Some(base) => Some(self.base_layers(base, *platform, layers).await?),
                None => None,
            };
            keeps.push(
                self.keep(keep, base_layers.as_deref(), layers, which)
                    .await?,
            );
        }
        Ok(keeps)
    }

    /// BASE's layers for an image with `layers` (of `platform`, where BASE
    /// has several platforms). BASE as inspected, when its layers begin
    /// `layers`, is the answer without a look at its index (on Engine 26.1
    /// a read of its save stream); otherwise BASE's platforms are read,
    /// once per run.
    async fn base_layers(
        &self,
        base: &mut Base<'_>,
        platform: Option<&Platform>,
        layers: &[String],
    ) -> Result<Vec<String>, Error> {
        let inspected = inspected_layers(&base.inspect);
        if first_difference(&inspected, layers).is_none() {
            return Ok(inspected);
        }
        let store = store::probe(self.docker())
            .await
            .map_err(self.failed(Step::ReadInfo))?;
        if base.plan.is_none() {
            base.plan = Some(self.plan(&base.inspect, base.name, store, None).await?.0);
        }
        // A one-platform BASE is every platform's base as far as its layers
        // go; a multi-platform one gives each platform its own.
        let plan = match (base.plan.as_ref().expect("read above"), platform) {
            (Plan::Index(platforms), Some(platform)) => {
                match platforms.iter().find(|(p, _)| platform.matches(p)) {
                    Some((_, manifest)) => return Ok(diff_ids(&manifest.config)),
                    // Asked again to be refused as the platform's absence says.
                    None => {
                        self.plan(&base.inspect, base.name, store, Some(platform))
                            .await?
                            .0
                    }
                }
            }
            (plan, _) => plan.clone(),
        };
        Ok(match plan {
            Plan::One { manifest, .. } => diff_ids(&manifest.config),
            _ => inspected,
        })
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

/// `--keep-base`'s BASE, inspected, and its platforms once read.
struct Base<'k> {
    name: &'k str,
    inspect: ImageInspect,
    plan: Option<Plan>,
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
