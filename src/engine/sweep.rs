//! What dead runs left on the engine: a run killed (SIGKILL, out of memory,
//! a power loss) cannot clean up, so the next run on the same client does,
//! before it starts its own work. Every temporary object carries its
//! owner's [`OWNER_LABEL`]: it is removed when [`Owner::liveness`] says its
//! owner is gone, and never when the owner may be alive or is another
//! client's. The result a dead run loaded but never tagged carries no
//! label: the run noted it on the client ([`Pending`]), and it goes if
//! nothing has tagged it since. `--cleanup` runs the same sweep on demand
//! and also lists what it kept.

use std::collections::HashMap;

use bollard::errors::Error as EngineError;
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListImagesOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveImageOptionsBuilder,
};
use bollard::Docker;

use super::objects::OWNER_LABEL;
use super::pending::Pending;
use crate::os::process::{Liveness, Owner};

/// A container or an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Container,
    Image,
}

/// One temporary object found by its label.
#[derive(Debug, Clone)]
pub struct Found {
    pub kind: Kind,
    pub id: String,
    /// The owner's label as written; parsed into `owner` when it is ours.
    pub owner: Option<Owner>,
    pub liveness: Liveness,
}

/// What a sweep did.
#[derive(Debug, Default)]
pub struct Swept {
    /// Removed: their owner is gone.
    pub removed: Vec<Found>,
    /// Kept: their owner may be running, or is another client.
    pub kept: Vec<Found>,
    /// Their owner is gone, but the engine refused the removal.
    pub failed: Vec<(Found, EngineError)>,
}

/// The sweep could not list the engine's objects.
#[derive(Debug, thiserror::Error)]
#[error("cannot list the temporary objects of earlier runs")]
pub struct ListError(#[source] pub EngineError);

/// Removes every temporary object whose owner is gone, and the untagged
/// results that `pending` notes of runs now gone.
pub async fn sweep(docker: &Docker, pending: Option<&Pending>) -> Result<Swept, ListError> {
    let mut swept = Swept::default();
    for left in pending.map(Pending::left).unwrap_or_default() {
        let found = Found {
            kind: Kind::Image,
            id: left.image.clone(),
            owner: Some(left.owner.clone()),
            liveness: Liveness::Gone,
        };
        // Only an image nothing has tagged since: a tag means someone uses it.
        let untagged = match docker.inspect_image(&left.image).await {
            Ok(image) => image.repo_tags.unwrap_or_default().is_empty(),
            Err(EngineError::DockerResponseServerError {
                status_code: 404, ..
            }) => false,
            Err(e) => return Err(ListError(e)),
        };
        let removed = match untagged {
            true => remove(docker, &found).await,
            false => Ok(()),
        };
        match removed {
            Ok(()) => {
                let _ = std::fs::remove_file(&left.file);
                if untagged {
                    swept.removed.push(found);
                }
            }
            Err(error) => swept.failed.push((found, error)),
        }
    }
    // Containers first: an image a container uses cannot go before it.
    for found in list(docker).await? {
        if found.liveness != Liveness::Gone {
            swept.kept.push(found);
            continue;
        }
        match remove(docker, &found).await {
            Ok(()) => swept.removed.push(found),
            Err(error) => swept.failed.push((found, error)),
        }
    }
    Ok(swept)
}

/// Every object with an owner label: containers, then images.
async fn list(docker: &Docker) -> Result<Vec<Found>, ListError> {
    let filter = HashMap::from([("label".to_owned(), vec![OWNER_LABEL.to_owned()])]);
    let containers = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filter)
                .build(),
        ))
        .await
        .map_err(ListError)?;
    let images = docker
        .list_images(Some(
            ListImagesOptionsBuilder::default()
                .all(true)
                .filters(&filter)
                .build(),
        ))
        .await
        .map_err(ListError)?;
    let containers = containers.into_iter().filter_map(|c| {
        let label = c.labels.as_ref()?.get(OWNER_LABEL)?.clone();
        Some(found(Kind::Container, c.id?, &label))
    });
    let images = images.into_iter().filter_map(|i| {
        let label = i.labels.get(OWNER_LABEL)?.clone();
        Some(found(Kind::Image, i.id, &label))
    });
    Ok(containers.chain(images).collect())
}

fn found(kind: Kind, id: String, label: &str) -> Found {
    let owner = Owner::parse(label);
    let liveness = owner.as_ref().map_or(Liveness::Elsewhere, Owner::liveness);
    Found {
        kind,
        id,
        owner,
        liveness,
    }
}

async fn remove(docker: &Docker, found: &Found) -> Result<(), EngineError> {
    let result = match found.kind {
        Kind::Container => {
            let options = RemoveContainerOptionsBuilder::default()
                .force(true)
                .v(true)
                .build();
            docker.remove_container(&found.id, Some(options)).await
        }
        Kind::Image => {
            let options = RemoveImageOptionsBuilder::default().build();
            docker
                .remove_image(&found.id, Some(options), None)
                .await
                .map(drop)
        }
    };
    match result {
        // Gone already: another run's sweep was first.
        Err(EngineError::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(()),
        other => other,
    }
}
