//! The temporary objects a run creates on the engine: the ledger of what
//! exists so far, the labels that find even objects whose creation an
//! interrupt cut short, the cleanup that removes them all, and the commands
//! that do it by hand when cleanup is skipped. The ledger lives outside
//! the pipeline's future, so that it survives that future being dropped.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use bollard::errors::Error as EngineError;
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListImagesOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveImageOptionsBuilder,
};
use bollard::Docker;

use super::pending::Pending;
use crate::os::process::Owner;
use crate::progress::{Progress, Stage};

/// Label on every object a run creates, valued with the run's ID, so that
/// cleanup finds even objects whose creation was cut short by an interrupt.
pub const RUN_LABEL: &str = "com.docker-flatten.run";
/// On every temporary object: the process that made it
/// ([`Owner`]), so that a later run on the same client can tell that its
/// owner is gone and remove it ([`super::sweep`]).
pub const OWNER_LABEL: &str = "com.docker-flatten.owner";
/// Also on every temporary object, valued with IMAGE's ID: says where an
/// object a run could not remove came from.
pub const SOURCE_LABEL: &str = "com.docker-flatten.source";

/// Temporary objects that a run has created so far.
#[derive(Debug, Default, Clone)]
pub struct Created {
    /// IMAGE's ID, once inspected.
    pub source: Option<String>,
    pub containers: Vec<String>,
    pub imported: Option<String>,
    /// The flattened image while it is not yet tagged.
    pub untagged: Option<String>,
}

impl Created {
    fn images(self) -> Vec<String> {
        self.untagged.into_iter().chain(self.imported).collect()
    }
}

/// The ledger of one run.
pub struct Objects {
    run_id: String,
    owner: Owner,
    /// Where the untagged result is noted, for a later run to find.
    pending: Option<Pending>,
    created: Mutex<Created>,
}

impl Default for Objects {
    fn default() -> Self {
        Objects::new(None)
    }
}

impl Objects {
    pub fn new(pending: Option<Pending>) -> Objects {
        Objects {
            run_id: run_id(),
            owner: Owner::me(),
            pending,
            created: Mutex::default(),
        }
    }

    /// This run's value of [`RUN_LABEL`].
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Notes a change to what exists. The untagged result is noted on the
    /// client too ([`Pending`]): no label finds it.
    pub fn record(&self, f: impl FnOnce(&mut Created)) {
        let mut created = self.created.lock().expect("ledger lock");
        let before = created.untagged.clone();
        f(&mut created);
        if let Some(pending) = self.pending.as_ref().filter(|_| created.untagged != before) {
            // Without the note a kill at this moment leaves a `<none>`
            // image; that is no reason to fail the run.
            let _ = pending.note(&self.run_id, &self.owner, created.untagged.as_deref());
        }
    }

    fn created(&self) -> Created {
        self.created.lock().expect("ledger lock").clone()
    }

    /// The labels that mark this run's temporary objects.
    pub fn labels(&self) -> Vec<(String, String)> {
        [
            (RUN_LABEL.to_owned(), self.run_id.clone()),
            (OWNER_LABEL.to_owned(), self.owner.to_string()),
        ]
        .into_iter()
        .chain(
            self.created()
                .source
                .map(|id| (SOURCE_LABEL.to_owned(), id)),
        )
        .collect()
    }

    /// What this run has made so far, for the user to remove when cleanup
    /// is skipped; objects whose creation was cut short carry [`RUN_LABEL`].
    pub fn made_so_far(&self) -> Leftovers {
        let created = self.created();
        Leftovers {
            containers: created.containers.clone(),
            images: created.images(),
        }
    }

    /// The commands that remove everything of this run by hand: what the
    /// ledger knows, and whatever carries the run's label.
    pub fn removal_commands(&self) -> String {
        let made = self.made_so_far();
        let label = format!("{RUN_LABEL}={}", self.run_id);
        let known = if made.is_empty() {
            String::new()
        } else {
            format!("{made}; ")
        };
        format!(
            "{known}docker rm -fv $(docker ps -aq --filter label={label}); \
             docker rmi $(docker images -q --filter label={label})"
        )
    }

    /// Removes every temporary object of this run, and the flattened image
    /// too if it never got its tag. Returns what could not be removed.
    pub async fn cleanup(&self, docker: &Docker, progress: &dyn Progress) -> Leftovers {
        let created = self.created();
        let untagged = created.untagged.clone();
        let mut left = Leftovers::default();
        let mut containers = created.containers.clone();
        let mut images = created.images();
        // Objects whose creation an interrupt cut short are known only by label.
        let filter = HashMap::from([(
            "label".to_owned(),
            vec![format!("{RUN_LABEL}={}", self.run_id)],
        )]);
        let list = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filter)
            .build();
        if let Ok(found) = docker.list_containers(Some(list)).await {
            containers.extend(found.into_iter().filter_map(|c| c.id));
        }
        let list = ListImagesOptionsBuilder::default()
            .all(true)
            .filters(&filter)
            .build();
        if let Ok(found) = docker.list_images(Some(list)).await {
            images.extend(found.into_iter().map(|i| i.id));
        }
        dedup_in_order(&mut containers);
        dedup_in_order(&mut images);
        // A run that made nothing does not say it removes anything.
        if containers.is_empty() && images.is_empty() {
            return left;
        }
        progress.begin(Stage::Cleanup, "");
        for id in containers {
            let options = RemoveContainerOptionsBuilder::default()
                .force(true)
                .v(true)
                .build();
            if !gone(docker.remove_container(&id, Some(options)).await) {
                left.containers.push(id);
            }
        }
        for id in images {
            // The same result, loaded and tagged by a concurrent run of the
            // same flatten (results are reproducible), is that run's now.
            if untagged.as_ref() == Some(&id) && tagged(docker, &id).await {
                continue;
            }
            let options = RemoveImageOptionsBuilder::default().build();
            if !gone(docker.remove_image(&id, Some(options), None).await) {
                left.images.push(id);
            }
        }
        let untagged_gone = untagged.is_some_and(|id| !left.images.contains(&id));
        if let Some(pending) = self.pending.as_ref().filter(|_| untagged_gone) {
            let _ = pending.note(&self.run_id, &self.owner, None);
        }
        progress.end();
        left
    }
}

/// Objects cleanup could not remove, for the user to remove by hand.
#[derive(Debug, Default)]
pub struct Leftovers {
    pub containers: Vec<String>,
    pub images: Vec<String>,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty() && self.images.is_empty()
    }
}

impl std::fmt::Display for Leftovers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if !self.containers.is_empty() {
            parts.push(format!("docker rm -fv {}", self.containers.join(" ")));
        }
        if !self.images.is_empty() {
            parts.push(format!("docker rmi {}", self.images.join(" ")));
        }
        f.write_str(&parts.join("; "))
    }
}

/// Whether a removal left the object gone: removed now, or already absent.
fn gone<T>(result: Result<T, EngineError>) -> bool {
    matches!(
        result,
        Ok(_)
            | Err(EngineError::DockerResponseServerError {
                status_code: 404,
                ..
            })
    )
}

/// Whether image `id` has a tag (an unreadable one counts as tagged: it is
/// left alone).
async fn tagged(docker: &Docker, id: &str) -> bool {
    match docker.inspect_image(id).await {
        Ok(image) => !image.repo_tags.unwrap_or_default().is_empty(),
        Err(EngineError::DockerResponseServerError {
            status_code: 404, ..
        }) => false,
        Err(_) => true,
    }
}

/// Drops repeated IDs, keeping the first of each: the order is removal order.
fn dedup_in_order(ids: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    ids.retain(|id| seen.insert(id.clone()));
}

/// A name for this run's temporary objects, unique across concurrent runs.
fn run_id() -> String {
    use sha2::{Digest, Sha256};
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let seed = format!("{}-{nanos}-{:p}", std::process::id(), &nanos);
    format!("{:x}", Sha256::digest(seed.as_bytes()))[..16].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_removal_commands_name_what_is_known_and_the_label() {
        let objects = Objects::default();
        let label = format!("label={RUN_LABEL}={}", objects.run_id());
        let none = objects.removal_commands();
        assert!(none.starts_with("docker rm -fv $(docker ps"), "{none}");
        objects.record(|c| {
            c.containers.push("c1".into());
            c.imported = Some("sha256:i".into());
        });
        let some = objects.removal_commands();
        assert!(
            some.starts_with("docker rm -fv c1; docker rmi sha256:i; "),
            "{some}"
        );
        assert_eq!(some.matches(&label).count(), 2, "{some}");
    }

    #[test]
    fn labels_name_the_source_once_known() {
        let objects = Objects::default();
        assert_eq!(objects.labels().len(), 2);
        assert_eq!(
            objects.labels()[1],
            (OWNER_LABEL.to_owned(), Owner::me().to_string())
        );
        objects.record(|c| c.source = Some("sha256:s".into()));
        assert_eq!(
            objects.labels()[2],
            (SOURCE_LABEL.to_owned(), "sha256:s".to_owned())
        );
    }
}
