//! TAG checked against the engine before any work: a TAG whose name is an
//! image ID's prefix (`docker flatten bb217b5af6a5 bb217b5af6a5`) would
//! create the repository `bb217b5af6a5`, which from then on shadows that
//! ID in every command that names it.

use bollard::errors::Error as EngineError;

use super::Pipeline;
use crate::error::{Cause, Error, Step};
use crate::model::reference::{is_id_prefix, Tag};

impl Pipeline<'_> {
    /// Refuses `tag` if its name is the prefix of an image ID on the engine.
    pub(super) async fn check_target(&self, tag: &Tag) -> Result<(), Error> {
        let name = tag.repo.as_str();
        if !is_id_prefix(name) {
            return Ok(());
        }
        let step = || Step::Target(tag.to_string());
        // The engine resolves a name first, then an ID prefix: an answer
        // whose ID starts with the name is an image the name would shadow.
        let found = match self.docker().inspect_image(name).await {
            Ok(image) => image.id.unwrap_or_default(),
            Err(EngineError::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(()),
            Err(e) => return Err(self.failed(step())(e)),
        };
        let id = found.trim_start_matches("sha256:");
        if !id.starts_with(name) {
            return Ok(());
        }
        let why = format!(
            "the name {name} is the start of image ID {}: as a repository it would shadow that \
             ID for every later docker command; give TAG a name, as app:flat",
            &id[..id.len().min(12)]
        );
        Err(self.error(step(), Cause::Refused(why)))
    }
}
