//! The graphdriver way: the layer streams into an image import, and a
//! config-only `docker load` links the imported layer by diff ID. The
//! engine writes the files once and keeps the layer uncompressed.

use bollard::body_try_stream;
use bollard::models::ImageInspect;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures_util::{stream, StreamExt};
use serde_json::Value;

use super::load::load_archive;
use super::Engine;
use crate::encode::{Built, Encoded, LayerError};
use crate::error::{Cause, Error, Step, Unexpected};
use crate::model::config::Recipe;
use crate::progress::Stage;
use crate::sink::archive;

/// Imports `layer` and gives it IMAGE's config (`config`, as the store
/// keeps it); returns the new image's ID.
pub async fn import(
    engine: &Engine<'_>,
    layer: Encoded,
    inspect: &ImageInspect,
    config: &Value,
    recipe: &Recipe<'_>,
) -> Result<(String, Built), Error> {
    let image = recipe.provenance.reference;
    let platform = [
        inspect.os.as_deref(),
        inspect.architecture.as_deref(),
        inspect.variant.as_deref(),
    ]
    .into_iter()
    .flatten()
    .filter(|s| !s.is_empty())
    .collect::<Vec<_>>()
    .join("/");
    let labels = engine
        .objects
        .labels()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ");
    let options = CreateImageOptionsBuilder::default()
        .from_src("-")
        .platform(&platform)
        .changes(vec![format!("LABEL {labels}")])
        .build();
    let Encoded { bytes, summary } = layer;
    let mut responses =
        engine
            .docker()
            .create_image(Some(options), Some(body_try_stream(bytes)), None);
    let mut imported = None;
    let mut engine_error = None;
    while let Some(item) = responses.next().await {
        match item {
            Ok(info) => {
                if let Some(status) = info.status.filter(|s| s.starts_with("sha256:")) {
                    imported = Some(status);
                }
            }
            Err(e) => {
                engine_error = Some(e);
                break;
            }
        }
    }
    drop(responses);
    if let Some(id) = &imported {
        engine.objects.record(|c| c.imported = Some(id.clone()));
    }
    let step = || Step::Import(image.to_owned());
    // A failed layer makes the import fail too; the layer's is the cause to report.
    let built = match summary.wait().await {
        Ok(built) => Some(built),
        Err(LayerError::Abandoned(_)) => None,
        Err(e) => return Err(engine.error(Step::Export(image.to_owned()), Cause::Layer(e))),
    };
    if let Some(e) = engine_error {
        return Err(engine.failed(step())(e));
    }
    let (Some(built), Some(imported)) = (built, imported) else {
        return Err(engine.error(step(), Cause::Unexpected(Unexpected::NoImageId)));
    };

    engine.progress.begin(Stage::Configure, image);
    let imported_layers = engine
        .docker()
        .inspect_image(&imported)
        .await
        .map_err(engine.failed(Step::InspectImported))?
        .root_fs
        .and_then(|r| r.layers)
        .unwrap_or_default();
    let diff_id = &built.digests.diff_id;
    if imported_layers != [diff_id.clone()] {
        return Err(engine.error(
            step(),
            Cause::Unexpected(Unexpected::ImportedLayers {
                expected: diff_id.clone(),
                found: imported_layers,
            }),
        ));
    }
    // A config-only archive: exact for every field, the platform included.
    let bytes =
        serde_json::to_vec(&recipe.config(config, diff_id)).expect("a JSON value serializes");
    let config_only = archive::config_only(&bytes, diff_id);
    let id = load_archive(
        engine,
        archive::digest(&bytes),
        stream::once(async move { Ok(config_only) }),
        Step::LoadConfig,
    )
    .await?;
    Ok((id, built))
}
