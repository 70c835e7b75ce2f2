//! The container export as a source: a container created (never started)
//! from IMAGE, its `GET /containers/{id}/export` stream, and that stream
//! through the [`TarFilter`] behind a root entry the export lacks.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use bollard::errors::Error as EngineError;
use bollard::models::{ContainerCreateBody, HostConfig, ImageInspect};
use bollard::query_parameters::CreateContainerOptionsBuilder;
use bollard::Docker;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use crate::engine::detail;
use crate::engine::objects::Objects;
use crate::model::platform::Platform;
use crate::progress::Progress;
use crate::source::filter::{self, FilterError, FilterStats, TarFilter};

/// The container is never started, but the engine refuses to create one
/// without a command.
const PLACEHOLDER_CMD: &str = "/docker-flatten-never-runs";

/// Why the export stream failed, as seen from the filter.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The engine's words for it are the message: no further source.
    #[error("{}", detail(.0))]
    Engine(EngineError),
    #[error(transparent)]
    Filter(#[from] FilterError),
}

/// Creates (never starts) a container of this run from `image_id`, for
/// `platform` of it when given (a multi-platform image's other platforms:
/// the engine unpacks that platform's layers for it), recorded in
/// `objects` before anything else can fail.
pub async fn create_container(
    docker: &Docker,
    objects: &Objects,
    image_id: &str,
    platform: Option<&Platform>,
) -> Result<String, EngineError> {
    let body = ContainerCreateBody {
        image: Some(image_id.to_owned()),
        cmd: Some(vec![PLACEHOLDER_CMD.to_owned()]),
        // "/" always exists, so the engine creates no WORKDIR directory
        // that would then show up in the export.
        working_dir: Some("/".to_owned()),
        network_disabled: Some(true),
        labels: Some(objects.labels().into_iter().collect()),
        host_config: Some(HostConfig {
            network_mode: Some("none".to_owned()),
            ..Default::default()
        }),
        ..Default::default()
    };
    // One container per platform in a run: the platform keeps names apart.
    let name = match platform {
        None => format!("docker-flatten-{}", objects.run_id()),
        Some(p) => format!(
            "docker-flatten-{}-{}",
            objects.run_id(),
            p.to_string().replace('/', "-")
        ),
    };
    let mut options = CreateContainerOptionsBuilder::default().name(&name);
    if let Some(p) = platform {
        options = options.platform(&p.to_string());
    }
    let options = options.build();
    let response = docker.create_container(Some(options), body).await?;
    objects.record(|c| c.containers.push(response.id.clone()));
    Ok(response.id)
}

/// The export of a container, filtered, as tar chunks.
pub struct Export {
    export: Pin<Box<dyn Stream<Item = Result<Bytes, EngineError>> + Send>>,
    filter: TarFilter,
    /// Filtered tar not yet taken.
    ready: VecDeque<Bytes>,
    ended: bool,
    progress: Arc<dyn Progress>,
}

impl Export {
    /// The export of `container` behind `preamble` (the layer's root
    /// entry, see [`root_entry`]), counting its bytes into `progress`.
    pub fn new(
        docker: &Docker,
        container: &str,
        preamble: Bytes,
        progress: Arc<dyn Progress>,
    ) -> Export {
        Export {
            export: Box::pin(docker.export_container(container)),
            filter: TarFilter::default(),
            ready: VecDeque::from([preamble]),
            ended: false,
            progress,
        }
    }

    /// The next filtered chunk; `None` once the archive has ended.
    pub async fn next(&mut self) -> Result<Option<Bytes>, ExportError> {
        loop {
            if let Some(chunk) = self.ready.pop_front() {
                return Ok(Some(chunk));
            }
            if self.ended {
                return Ok(None);
            }
            match self.export.next().await {
                Some(Ok(chunk)) => {
                    self.progress.bytes(chunk.len() as u64);
                    self.filter.push(chunk, &mut self.ready)?;
                }
                Some(Err(e)) => return Err(ExportError::Engine(e)),
                None => {
                    self.ended = true;
                    self.filter.finish(&mut self.ready)?;
                }
            }
        }
    }

    /// What the filter removed and kept.
    pub fn stats(&self) -> &FilterStats {
        self.filter.stats()
    }
}

/// The layer's first entry, the root directory, which an export never
/// carries; nor does the engine say anything of the root elsewhere (a
/// container's own root is the engine's fresh `0755` directory, owned by
/// root, made when the container was). The exact values sit in IMAGE's base
/// layer, which only a `docker save` can reach: a graphdriver engine writes
/// the whole image to its disk before that streams, and the containerd
/// store sends the base layer wherever its digest sorts, while the root
/// must precede the export's first byte. So: mode `0755`, owner `0:0` (what
/// nearly every base image has, and what the engine gives every container's
/// root anyway) and IMAGE's creation time (the epoch if IMAGE has none the
/// engine can tell). A `comment` makes the layer's digest this run's own
/// (see [`filter::root_entry`]).
pub fn root_entry(source: &ImageInspect, comment: Option<&str>) -> Bytes {
    filter::root_entry(root(source), comment)
}

fn root(source: &ImageInspect) -> filter::Root {
    let mtime = source
        .created
        .as_deref()
        .and_then(|c| humantime::parse_rfc3339_weak(c).ok())
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    filter::Root {
        mode: 0o755,
        uid: 0,
        gid: 0,
        mtime,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_export_s_root_is_0755_root_owned_at_image_creation() {
        let at = |created: &str| ImageInspect {
            created: Some(created.to_owned()),
            ..Default::default()
        };
        let r = root(&at("2024-01-01T00:00:00.123456789Z"));
        assert_eq!((r.mode, r.uid, r.gid), (0o755, 0, 0));
        assert_eq!(r.mtime, 1_704_067_200);
        assert_eq!(root(&at("2024-01-01T00:00:00Z")).mtime, 1_704_067_200);
        assert_eq!(root(&at("not a time")).mtime, 0);
        assert_eq!(root(&ImageInspect::default()).mtime, 0);
    }
}
