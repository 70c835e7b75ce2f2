//! A partial flatten's way, on both stores: the merged layer goes to a
//! [`spool`] file, then into one `docker load` with a config over IMAGE's
//! kept layers and it. The archive names the kept layers but does not carry
//! them: the engine has them (a graphdriver engine finds each by chain ID;
//! the containerd store has their blobs), so only the merged layer travels.
//!
//! [`spool`]: super::spool

use bytes::Bytes;
use futures_util::{stream, StreamExt};
use serde_json::Value;

use super::load::{load_archive, spool_beside};
use super::Engine;
use crate::encode::{Built, Encoded};
use crate::engine::store::Store;
use crate::error::{Cause, Error, Step};
use crate::model::config::{platform, Recipe};
use crate::model::KeptLayer;
use crate::progress::Stage;
use crate::sink::archive::OciArchive;

/// Spools `layer` and loads it above `kept` with the flattened config;
/// returns the new image's ID.
pub async fn load_onto(
    engine: &Engine<'_>,
    layer: Encoded,
    config: Value,
    recipe: &Recipe<'_>,
    kept: &[KeptLayer],
    store: Store,
) -> Result<(String, Built), Error> {
    let image = recipe.provenance.reference;
    let (built, spooled, source_config) =
        spool_beside(engine, layer, std::future::ready(Ok(config)), image).await?;
    let config = recipe.config(&source_config, &built.digests.diff_id);
    let bytes = serde_json::to_vec(&config).expect("a JSON value serializes");
    let archive = OciArchive::onto(bytes, kept, &built.digests, &platform(&config), None);
    let id = match store {
        Store::Graphdriver => archive.config_id(),
        Store::Containerd => archive.id(),
    };
    engine.progress.expect_bytes(built.digests.blob_size);
    engine.progress.begin(Stage::Load, image);
    let blob = spooled
        .read(engine.progress.clone())
        .await
        .map_err(|error| {
            engine.error(
                Step::Spool(image.to_owned()),
                Cause::Local {
                    dir: super::spool::dir(),
                    error,
                },
            )
        })?;
    let head = archive.head();
    let tail = archive.tail();
    let body = stream::once(async { Ok(Bytes::from(head)) })
        .chain(blob)
        .chain(stream::once(async { Ok(Bytes::from(tail)) }));
    let id = load_archive(engine, id, body, Step::Load).await?;
    Ok((id, built))
}
