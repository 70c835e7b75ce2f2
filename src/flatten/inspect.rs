//! IMAGE as the engine describes it: its inspect, its config (the raw
//! inspect on a graphdriver, the config blob of its save stream on the
//! containerd store), its platform, and what a failed read of its layers
//! means for the user.

use std::future::Future;

use bollard::errors::Error as EngineError;
use bollard::models::ImageInspect;
use serde_json::Value;

use super::Pipeline;
use crate::error::{Cause, Error, Incomplete, Step, Unexpected};
use crate::model::config;
use crate::model::platform::Platform;
use crate::model::SourceImage;
use crate::saved;
use crate::sink;

impl Pipeline<'_> {
    /// IMAGE's config on the graphdriver store, for the fields the
    /// flattened config carries over: the engine's inspect, as sent, holds
    /// them all (but `os.features`) under its own names. A `docker save`
    /// would have the engine write the whole image to its disk first.
    pub(super) async fn inspected_config(&self, id: &str, image: &str) -> Result<Value, Error> {
        let inspect = self
            .inspect_json()
            .image(id)
            .await
            .map_err(self.failed(Step::ReadConfig(image.to_owned())))?;
        Ok(config::from_inspect(&inspect))
    }

    /// IMAGE's config on the containerd store, whose inspect reports the
    /// engine's own version as `DockerVersion` and leaves out `comment` and
    /// `container_config`: the config blob itself, from IMAGE's save stream,
    /// which streams from the content store as it goes and is dropped as
    /// soon as the config has come. That can be the whole stream (blobs come
    /// in digest order), so this runs beside the layer.
    pub(super) fn saved_config(
        &self,
        source: &ImageInspect,
        image: &str,
    ) -> impl Future<Output = Result<Value, Error>> + Send + 'static {
        let id = source.id.clone().unwrap_or_else(|| image.to_owned());
        let step = Step::ReadConfig(image.to_owned());
        let endpoint = self.endpoint.clone();
        let diff_ids = inspected_layers(source);
        let os = source.os.clone().unwrap_or_default();
        let arch = source.architecture.clone().unwrap_or_default();
        let found = saved::config(self.docker(), &id, diff_ids, os, arch);
        async move {
            let error = |cause| Error {
                step,
                endpoint,
                cause,
            };
            let found = found.await;
            let unexpected = match found {
                Err(e) => return Err(error(Cause::Engine(e))),
                Ok(Ok(Some(config))) => return Ok(config),
                Ok(Ok(None)) => Unexpected::NoConfig(id),
                Ok(Err(e)) => Unexpected::Archive(e),
            };
            Err(error(Cause::Unexpected(unexpected)))
        }
    }

    /// A failed read of IMAGE's layers, said as the user can act on it.
    pub(super) fn read_failed(&self, image: &str, failure: saved::layers::ReadFailure) -> Error {
        let step = Step::ReadLayers(image.to_owned());
        match failure {
            // The engine answered, but with its own failure to save.
            saved::layers::ReadFailure::Engine(
                e @ EngineError::DockerResponseServerError {
                    status_code: 500, ..
                },
            ) => self.error(step, Cause::Unsaveable(e)),
            saved::layers::ReadFailure::Engine(e) => self.error(step, Cause::Engine(e)),
            saved::layers::ReadFailure::Archive(e) => match left_out(image, &e) {
                Some(incomplete) => self.error(step, Cause::Incomplete(Box::new(incomplete))),
                None => self.error(step, Cause::Unexpected(Unexpected::NotWhole(e))),
            },
            saved::layers::ReadFailure::Spool(error) => self.error(
                Step::SpoolLayers(image.to_owned()),
                Cause::Local {
                    dir: sink::spool::dir(),
                    error,
                },
            ),
        }
    }

    pub(super) async fn inspect_source(&self, image: &str) -> Result<ImageInspect, Error> {
        let step = Step::Inspect(image.to_owned());
        match self.docker().inspect_image(image).await {
            Err(EngineError::DockerResponseServerError {
                status_code: 404, ..
            }) => Err(self.error(step, Cause::NoSuchImage(image.to_owned()))),
            Err(
                error @ EngineError::DockerResponseServerError {
                    status_code: 400, ..
                },
            ) => {
                let image = image.to_owned();
                Err(self.error(step, Cause::BadReference { image, error }))
            }
            // The engine's answer lacks what every image has (its rootfs):
            // the sign of a manifest whose content is missing in part.
            Err(e @ EngineError::JsonDataError { .. }) => match self.without_config(image).await {
                Some(manifest) => {
                    let incomplete = self.incomplete(image, manifest).await;
                    Err(self.error(step, Cause::Incomplete(Box::new(incomplete))))
                }
                None => Err(self.failed(step)(e)),
            },
            other => other.map_err(self.failed(step)),
        }
    }

    /// IMAGE's manifest, if the engine has it but reports no config for
    /// it (Engine 28: the sign that the content it names is missing in part).
    async fn without_config(&self, image: &str) -> Option<String> {
        let raw = self.inspect_json().image(image).await.ok()?;
        let manifest = raw["Descriptor"]["digest"].as_str()?.to_owned();
        (!raw["RootFS"]["Type"].is_string()).then_some(manifest)
    }

    /// What IMAGE's save leaves out of `manifest`, which the engine has
    /// without all the content it names.
    pub(super) async fn incomplete(&self, image: &str, manifest: String) -> Incomplete {
        let missing = saved::missing_blobs(self.docker(), image, &manifest)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        Incomplete {
            image: image.to_owned(),
            manifest: Some(manifest),
            missing,
        }
    }
}

/// The config or layer that IMAGE's save stream names but left out, which
/// the engine does when its content store lacks part of IMAGE.
pub(super) fn left_out<E: std::error::Error>(
    image: &str,
    e: &saved::walk::ReadError<E>,
) -> Option<Incomplete> {
    let saved::walk::ReadError::Archive(saved::walk::ArchiveError::Missing(what)) = e else {
        return None;
    };
    let (kind, member) = what.split_once(' ')?;
    let digest = member.strip_prefix("blobs/")?.replacen('/', ":", 1);
    matches!(kind, "config" | "layer").then(|| Incomplete {
        image: image.to_owned(),
        manifest: None,
        missing: vec![(kind.to_owned(), digest)],
    })
}

/// An image's diff IDs as its inspect says, bottom first.
pub(super) fn inspected_layers(inspect: &ImageInspect) -> Vec<String> {
    inspect
        .root_fs
        .as_ref()
        .and_then(|r| r.layers.clone())
        .unwrap_or_default()
}

/// IMAGE's platform as its inspect says (the host's on the containerd store).
pub(super) fn own_platform(inspect: &ImageInspect) -> Option<Platform> {
    Platform::from_oci(&serde_json::json!({
        "os": inspect.os,
        "architecture": inspect.architecture,
        "variant": inspect.variant,
        "os.version": inspect.os_version,
    }))
}

/// What the export's root entry takes of an image: when it was made, here
/// from a platform's own config.
pub(super) fn created_of(config: &Value) -> ImageInspect {
    ImageInspect {
        created: config["created"].as_str().map(str::to_owned),
        ..Default::default()
    }
}

/// IMAGE's ID, layer count and the engine's idea of its size.
pub(super) fn source_image(image: &ImageInspect) -> SourceImage {
    let layers = image
        .root_fs
        .as_ref()
        .and_then(|r| r.layers.as_ref())
        .map_or(0, Vec::len);
    SourceImage {
        id: image.id.clone().unwrap_or_default(),
        layers,
        size: image.size.unwrap_or(0).max(0) as u64,
    }
}
