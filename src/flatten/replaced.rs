//! What became of the image TAG named before the run. A flatten in place
//! (`docker flatten app:1 app:1`), or into a TAG that named another image,
//! moves TAG; the image it named stays, untagged (`<none>`) unless another
//! name holds it, and keeps its space until it is removed. The run says
//! which, with the image's ID and size, and the command that reclaims it.

use bollard::errors::Error as EngineError;
use serde::Serialize;

use super::Pipeline;
use crate::model::reference::Tag;

/// The image TAG named before the run, and what holds it now.
#[derive(Debug, Clone, Serialize)]
pub struct Replaced {
    pub id: String,
    /// Its size as the engine reports it.
    pub size: u64,
    /// The names it still has; empty: it is now `<none>`.
    pub tags: Vec<String>,
}

/// TAG's image before the run, if any.
#[derive(Debug)]
pub(super) struct Before {
    id: String,
    size: u64,
}

impl Pipeline<'_> {
    /// The image `tag` names now; `None` if none (or it cannot be asked:
    /// this is only said, never acted on).
    pub(super) async fn tagged_before(&self, tag: &Tag) -> Option<Before> {
        let image = self.docker().inspect_image(&tag.to_string()).await.ok()?;
        Some(Before {
            id: image.id?,
            size: image.size.unwrap_or(0).max(0) as u64,
        })
    }

    /// What holds `before` now that TAG names `now`; `None` when TAG still
    /// names it (the result is the same image) or it is gone.
    pub(super) async fn replaced(&self, before: Option<Before>, now: &str) -> Option<Replaced> {
        let before = before.filter(|b| b.id != now)?;
        let tags = match self.docker().inspect_image(&before.id).await {
            Ok(image) => image.repo_tags.unwrap_or_default(),
            Err(EngineError::DockerResponseServerError {
                status_code: 404, ..
            }) => return None,
            Err(_) => return None,
        };
        Some(Replaced {
            id: before.id,
            size: before.size,
            tags,
        })
    }
}
