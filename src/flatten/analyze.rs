//! `--dry-run`: IMAGE's layers as the engine streams them for `docker save`
//! (`GET /images/{name}/get`), fed through [`saved::read`] (a
//! [`crate::stream`] forward) into [`savings::analyze`] on a blocking
//! thread. Nothing touches the disk and
//! nothing is created on the engine.

use bollard::errors::Error as EngineError;
use std::sync::Arc;

use bollard::Docker;

use crate::layers::savings::{self, Changes, Savings, SavingsError};
use crate::progress::Progress;
use crate::saved;
use crate::saved::walk::{Members, Pick};

#[derive(Debug, thiserror::Error)]
pub enum DryRunError {
    #[error(transparent)]
    Engine(EngineError),
    #[error(transparent)]
    Savings(SavingsError),
}

/// Reads the whole save stream and returns what flattening all but the
/// bottom `keeps[i]` layers of each image `picks` names would gain: every
/// platform of a multi-platform IMAGE in one read.
pub async fn analyze(
    docker: &Docker,
    id: &str,
    picks: Vec<Pick>,
    keeps: Vec<usize>,
    progress: Arc<dyn Progress>,
) -> Result<Vec<Savings>, DryRunError> {
    saved::read(
        docker,
        id,
        move |n| progress.bytes(n),
        move |r| savings::analyze(r, &picks, &keeps),
    )
    .await
    .map_err(DryRunError::Engine)?
    .map_err(DryRunError::Savings)
}

/// Reads the whole save stream, each layer's changes listed, before its
/// images are picked: where the stream is also what says IMAGE's
/// platforms, one read serves both ([`savings::analyze_members`] then).
pub async fn read_members(
    docker: &Docker,
    id: &str,
    progress: Arc<dyn Progress>,
) -> Result<Members<Changes>, DryRunError> {
    saved::read(
        docker,
        id,
        move |n| progress.bytes(n),
        savings::read_members,
    )
    .await
    .map_err(DryRunError::Engine)?
    .map_err(DryRunError::Savings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::saved::walk::ArchiveError;
    use crate::tar::reader::TarError;

    #[test]
    fn every_error_says_its_cause_once() {
        let io = || std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        for err in [
            DryRunError::Engine(EngineError::from(io())),
            DryRunError::Engine(EngineError::DockerResponseServerError {
                status_code: 500,
                message: "no space left on device".into(),
            }),
            DryRunError::Savings(SavingsError::from(ArchiveError::from(io()))),
            DryRunError::Savings(SavingsError::from(ArchiveError::Missing(
                "manifest.json".into(),
            ))),
            DryRunError::Savings(SavingsError::from(ArchiveError::Invalid {
                what: "manifest.json".into(),
                detail: "no image".into(),
            })),
            DryRunError::Savings(SavingsError::from(ArchiveError::Tar(TarError::Truncated {
                offset: 1024,
            }))),
            DryRunError::Savings(SavingsError::Layer {
                member: "l.tar".into(),
                error: TarError::Corrupt {
                    offset: 0,
                    why: "bad header checksum".into(),
                },
            }),
        ] {
            crate::output::assert_causes_said_once(&err);
        }
    }
}
