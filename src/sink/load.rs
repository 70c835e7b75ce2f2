//! The containerd-store way: the compressed layer goes to a [`spool`]
//! file, then into one `docker load` together with the config, as an
//! unnamed OCI archive (TAG is set afterwards). An import would have the
//! engine write the files twice: once for the import, and again for the
//! loaded image, which cannot claim the import's snapshot.
//!
//! [`spool`]: super::spool

use std::future::Future;

use bollard::query_parameters::ImportImageOptionsBuilder;
use bytes::Bytes;
use futures_util::{stream, Stream, StreamExt};
use serde_json::Value;

use super::{spool, Engine};
use crate::encode::{Built, Encoded, LayerError};
use crate::error::{Cause, Error, Step};
use crate::model::config::{platform, Recipe};
use crate::progress::Stage;
use crate::sink::archive::OciArchive;

/// Spools `layer` and loads it with the flattened config; `config` (IMAGE's
/// config, read from its save stream) runs while the layer is spooled: it
/// is needed only afterwards. Returns the new image's ID.
pub async fn load(
    engine: &Engine<'_>,
    layer: Encoded,
    config: impl Future<Output = Result<Value, Error>>,
    recipe: &Recipe<'_>,
) -> Result<(String, Built), Error> {
    let image = recipe.provenance.reference;
    let (built, spooled, source_config) = spool_beside(engine, layer, config, image).await?;
    let config = recipe.config(&source_config, &built.digests.diff_id);
    let bytes = serde_json::to_vec(&config).expect("a JSON value serializes");
    let archive = OciArchive::new(bytes, &built.digests, &platform(&config), None);
    engine.progress.expect_bytes(built.digests.blob_size);
    engine.progress.begin(Stage::Load, image);
    let spool_error = |error| spool_failed(engine, image, error);
    let blob = spooled
        .read(engine.progress.clone())
        .await
        .map_err(spool_error)?;
    let head = archive.head();
    let tail = archive.tail();
    let body = stream::once(async { Ok(Bytes::from(head)) })
        .chain(blob)
        .chain(stream::once(async { Ok(Bytes::from(tail)) }));
    let id = load_archive(engine, archive.id(), body, Step::Load).await?;
    Ok((id, built))
}

/// Spools `layer` while `config` is read; the layer's failure first, then
/// the spool's, then the config's. A read that says the run must start
/// again ([`Cause::Replan`]) stops the layer at once.
pub async fn spool_beside(
    engine: &Engine<'_>,
    layer: Encoded,
    config: impl Future<Output = Result<Value, Error>>,
    image: &str,
) -> Result<(Built, spool::Spool, Value), Error> {
    let Encoded { bytes, summary } = layer;
    let mut fill = std::pin::pin!(spool::fill(bytes));
    let mut config = std::pin::pin!(config);
    let (written, config) = tokio::select! {
        written = &mut fill => (written, config.await),
        read = &mut config => match read {
            Err(replan @ Error { cause: Cause::Replan(_), .. }) => return Err(replan),
            read => (fill.await, read),
        },
    };
    let built = match summary.wait().await {
        Ok(built) => built,
        // The spool stopped reading: its error says why.
        Err(LayerError::Abandoned(_)) => {
            let error = written
                .err()
                .unwrap_or_else(|| std::io::Error::other("the spool stopped early"));
            return Err(spool_failed(engine, image, error));
        }
        Err(e) => return Err(engine.error(Step::Export(image.to_owned()), Cause::Layer(e))),
    };
    let spooled = written.map_err(|error| spool_failed(engine, image, error))?;
    Ok((built, spooled, config?))
}

fn spool_failed(engine: &Engine<'_>, image: &str, error: std::io::Error) -> Error {
    engine.error(
        Step::Spool(image.to_owned()),
        Cause::Local {
            dir: spool::dir(),
            error,
        },
    )
}

/// `docker load` of `archive`, which gives the image `id`; recorded as
/// this run's until TAG names it, unless the engine had it already.
pub async fn load_archive(
    engine: &Engine<'_>,
    id: String,
    archive: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    step: Step,
) -> Result<String, Error> {
    let docker = engine.docker();
    let existed = docker.inspect_image(&id).await.is_ok();
    if !existed {
        engine.objects.record(|c| c.untagged = Some(id.clone()));
    }
    let options = ImportImageOptionsBuilder::default().quiet(true).build();
    let mut responses = docker.import_image_stream(options, archive, None);
    while let Some(item) = responses.next().await {
        item.map_err(engine.failed(step.clone()))?;
    }
    docker
        .inspect_image(&id)
        .await
        .map_err(engine.failed(step))?;
    Ok(id)
}
