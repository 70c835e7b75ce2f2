//! IMAGE from an archive given with `-i`, described as the engine describes
//! an image it has: the archive read whole by the save stream's reader
//! (every layer indexed, and spooled for the merge), the image in it chosen
//! by IMAGE's name or as its only one, an inspect made from its config, and
//! its platforms planned by the rules a flatten from the engine keeps.

use std::path::Path;
use std::sync::Arc;

use bollard::models::{ImageInspect, ImageInspectRootFs};
use serde_json::Value;

use super::{Pipeline, Request};
use crate::error::{Cause, Error, InputError, Step};
use crate::model::platform::Platform;
use crate::model::reference::Tag;
use crate::model::source_index::{IndexError, LeftOut, Plan, SourceIndex};
use crate::progress::{Progress, Stage};
use crate::saved::layers::{self, ReadFailure, Take, Unpicked};
use crate::saved::walk::{Archived, Pick, Target};
use crate::saved::{self, input};
use crate::sink;

/// IMAGE as the archive holds it.
pub(super) struct FromInput {
    /// Its description, as an engine's inspect would give it.
    pub inspect: ImageInspect,
    pub plan: Plan,
    pub left_out: LeftOut,
    /// The archive as read, its images not picked yet.
    pub read: Unpicked,
    /// The image a one-image plan reads of the archive.
    pub pick: Pick,
    /// IMAGE as the user named it, else the archive's own name for it (or
    /// its ID): what the result's history and comment say it came from,
    /// the same as a flatten of that name on an engine says.
    pub reference: String,
    /// The archive's own name for it, where it has one.
    pub name: Option<Tag>,
}

impl Pipeline<'_> {
    /// Reads the archive `path` whole and describes the image in it that
    /// `image` names (empty: its only one), with the platforms `wanted`.
    pub(super) async fn read_archive(
        &self,
        path: &Path,
        image: &str,
        wanted: Option<&Platform>,
        take: Take,
        progress: &Arc<dyn Progress>,
    ) -> Result<FromInput, Error> {
        let failed = |e: InputError| self.error(Step::ReadInput(path.to_owned()), Cause::Input(e));
        let opened = input::open(path).map_err(|e| failed(InputError::Open(e)))?;
        progress.begin(Stage::Read, &shown(path));
        let read = layers::read_input(opened, progress.clone(), take)
            .await
            .map_err(|f| self.input_failed(path, f))?;
        let not_whole = |e: saved::walk::ArchiveError| {
            failed(InputError::NotWhole(saved::walk::ReadError::Archive(e)))
        };
        let held = read.archived().map_err(not_whole)?;
        let chosen = choose(&held, image).map_err(failed)?;
        // A bare `ref.name` (`v1`, as skopeo and buildx write one) is a
        // tag without a repository: no name for the image.
        let name = chosen
            .names
            .iter()
            .filter(|n| n.contains([':', '/']))
            .find_map(|n| Tag::parse(&familiar(n)).ok());
        let reference = match (image, &name) {
            ("", Some(name)) => name.to_string(),
            ("", None) => chosen.id.clone(),
            (image, _) => image.to_owned(),
        };
        let (index, pick) = match &chosen.target {
            Target::Descriptor(digest) => {
                let index = read.index(digest).map_err(|e| match e {
                    saved::walk::IndexReadError::Index(IndexError::Incomplete { digest }) => {
                        failed(InputError::Incomplete(digest))
                    }
                    saved::walk::IndexReadError::Index(IndexError::NoTarget(digest)) => {
                        not_whole(saved::walk::ArchiveError::Missing(format!("blob {digest}")))
                    }
                    saved::walk::IndexReadError::Archive(e) => not_whole(e),
                })?;
                (index, Pick::Manifest(digest.clone()))
            }
            Target::Entry(n) => {
                let manifest = read.entry_manifest(*n).map_err(not_whole)?;
                (SourceIndex::Manifest(manifest), Pick::Entry(*n))
            }
        };
        let step = || Step::ChoosePlatforms(reference.clone());
        let choice = index
            .choose(&reference, wanted)
            .map_err(|e| self.error(step(), Cause::Platforms(e)))?;
        let (plan, left_out) = choice.plan(matches!(index, SourceIndex::Index(_)));
        let inspect = described(&chosen.id, &plan);
        Ok(FromInput {
            inspect,
            plan,
            left_out,
            read,
            pick,
            reference,
            name,
        })
    }

    /// Reads the archive `path` for `request`, and says the request with
    /// IMAGE and TAG as the archive names them where the user did not.
    pub(super) async fn named_from_input(
        &self,
        request: &Request,
        path: &Path,
        progress: &Arc<dyn Progress>,
    ) -> Result<(Request, FromInput), Error> {
        let take = Take::merged(request.verify);
        let wanted = request.platform.as_ref();
        let from = self
            .read_archive(path, &request.image, wanted, take, progress)
            .await?;
        let tag = match (&request.tag, &from.name) {
            (Some(tag), _) => tag.clone(),
            (None, Some(name)) => name.clone(),
            (None, None) => {
                let step = Step::ReadInput(path.to_owned());
                return Err(self.error(step, Cause::Input(InputError::Unnamed)));
            }
        };
        let named = Request {
            image: from.reference.clone(),
            tag: Some(tag),
            ..request.clone()
        };
        Ok((named, from))
    }

    /// A failed read of the archive given with `-i`.
    pub(super) fn input_failed(&self, path: &Path, failure: ReadFailure) -> Error {
        let step = Step::ReadInput(path.to_owned());
        match failure {
            ReadFailure::Archive(e) => self.error(step, Cause::Input(InputError::NotWhole(e))),
            ReadFailure::Spool(error) => self.error(
                Step::SpoolLayers(shown(path)),
                Cause::Local {
                    dir: sink::spool::dir(),
                    error,
                },
            ),
            // No engine is read here.
            ReadFailure::Engine(e) => self.error(step, Cause::Engine(e)),
        }
    }
}

/// The image of `held` that `image` names, or with no name the only one.
fn choose<'h>(held: &'h [Archived], image: &str) -> Result<&'h Archived, InputError> {
    let names = || held.iter().map(shown_name).collect::<Vec<_>>();
    if image.is_empty() {
        return match held {
            [one] => Ok(one),
            _ => Err(InputError::Several(names())),
        };
    }
    let named: Vec<&Archived> = held.iter().filter(|a| a.is_named(image)).collect();
    match &named[..] {
        [one] => Ok(one),
        [] => Err(InputError::NoSuch {
            image: image.to_owned(),
            held: names(),
        }),
        _ => Err(InputError::Several(
            named.iter().map(|a| shown_name(a)).collect(),
        )),
    }
}

/// An image of the archive as a list of them names it: its first name,
/// else its ID.
fn shown_name(image: &Archived) -> String {
    image
        .names
        .first()
        .map_or_else(|| image.id.clone(), |n| familiar(n))
}

/// A name as docker shows it: `docker.io/library/app:1` is `app:1`.
fn familiar(name: &str) -> String {
    let short = name
        .strip_prefix("docker.io/library/")
        .or_else(|| name.strip_prefix("docker.io/"))
        .unwrap_or(name);
    short.to_owned()
}

/// FILE as progress and errors name it.
fn shown(path: &Path) -> String {
    match path.as_os_str() == "-" {
        true => "stdin".to_owned(),
        false => path.display().to_string(),
    }
}

/// IMAGE as an engine's inspect would describe it: its ID, and the layers,
/// platform and size of the one image the plan takes (of an index, its
/// first platform's, as the engine's inspect describes one of them).
fn described(id: &str, plan: &Plan) -> ImageInspect {
    let manifests: Vec<_> = match plan {
        Plan::Index(platforms) => platforms.iter().map(|(_, m)| m).collect(),
        Plan::One { manifest, .. } => vec![manifest],
        Plan::AsInspected => Vec::new(),
    };
    let config = manifests.first().map_or(&Value::Null, |m| &m.config);
    let text = |key: &str| config[key].as_str().map(str::to_owned);
    let layers = config["rootfs"]["diff_ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d.as_str().map(str::to_owned))
        .collect();
    ImageInspect {
        id: Some(id.to_owned()),
        os: text("os"),
        architecture: text("architecture"),
        variant: text("variant"),
        os_version: text("os.version"),
        created: text("created"),
        size: Some(manifests.first().map_or(0, |m| m.layers_size()) as i64),
        root_fs: Some(ImageInspectRootFs {
            typ: "layers".to_owned(),
            layers: Some(layers),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &str, names: &[&str]) -> Archived {
        Archived {
            target: Target::Descriptor(id.to_owned()),
            id: id.to_owned(),
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            configs: vec![format!("sha256:{}", "c".repeat(64))],
        }
    }

    #[test]
    fn an_image_is_chosen_by_name_id_or_as_the_only_one() {
        let id1 = format!("sha256:{}", "a".repeat(64));
        let id2 = format!("sha256:{}", "b".repeat(64));
        let held = [
            image(&id1, &["docker.io/library/app:1", "1"]),
            image(&id2, &["app:2"]),
        ];
        assert_eq!(choose(&held, "app:1").unwrap().id, id1);
        assert_eq!(choose(&held, "docker.io/library/app:2").unwrap().id, id2);
        assert_eq!(choose(&held, "1").unwrap().id, id1, "a bare ref.name");
        assert_eq!(choose(&held, &id2).unwrap().id, id2);
        assert_eq!(choose(&held, "bbbbbbbbbbbb").unwrap().id, id2);
        // A config's digest (a graphdriver's image ID) names its image too;
        // both have one here, so it names neither alone.
        assert!(matches!(
            choose(&held, "cccccccccccc"),
            Err(InputError::Several(_))
        ));
        assert_eq!(
            choose(&held[..1], &format!("sha256:{}", "c".repeat(64)))
                .unwrap()
                .id,
            id1
        );
        assert_eq!(choose(&held, &format!("app@{id1}")).unwrap().id, id1);
        assert!(matches!(
            choose(&held, ""),
            Err(InputError::Several(names)) if names == ["app:1", "app:2"]
        ));
        assert!(matches!(
            choose(&held, "app:3"),
            Err(InputError::NoSuch { .. })
        ));
        assert!(
            matches!(choose(&held, "app"), Err(InputError::NoSuch { .. })),
            "app is app:latest"
        );
        assert_eq!(choose(&held[1..], "").unwrap().id, id2);
    }
}
