//! Where the flattened image goes: one module per destination, and the
//! pure [`choose`] of which one from the engine's store and `--output`.
//!
//! - [`import`]: the graphdriver store. The layer streams into an image
//!   import; a config-only `docker load` gives it IMAGE's config.
//! - [`load`]: the containerd store. The compressed layer goes to a
//!   [`spool`] file, then into one `docker load` with its config.
//! - [`file`]: `--output FILE` or `-o -`: the same OCI archive the load
//!   sends, written to a file (or stdout) instead of the engine.
//! - [`onto`]: a partial flatten, on either store: one `docker load` of the
//!   merged layer above the kept layers the engine has.

pub mod archive;
pub mod compression;

pub mod file;
pub mod import;
pub mod load;
pub mod onto;
pub mod spool;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bollard::errors::Error as EngineError;
use bollard::Docker;

use crate::engine::objects::Objects;
use crate::engine::store::Store;
use crate::error::{Cause, Error, Step};
use crate::progress::Progress;

/// How the flattened image leaves the pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Into a graphdriver engine, by import and config-only load.
    Import,
    /// Into a containerd-store engine, by one load.
    Load,
    /// Into either store, by one load above the kept layers it has.
    Onto(Store),
    /// An archive written to this file, replacing it whole at the end.
    File(PathBuf),
    /// An archive written to stdout.
    Stdout,
}

/// The destination for an engine with `store`, and `--output`'s value. A
/// run with no engine (`None`) has an output: the job is lowered so.
pub fn choose(store: Option<Store>, output: Option<&Path>) -> Destination {
    match (output, store) {
        (Some(path), _) if path.as_os_str() == "-" => Destination::Stdout,
        (Some(path), _) => Destination::File(path.to_owned()),
        (None, Some(Store::Graphdriver)) => Destination::Import,
        (None, Some(Store::Containerd)) => Destination::Load,
        (None, None) => unreachable!("a run without an engine writes a file"),
    }
}

impl Destination {
    /// Whether the result is an image on the engine, which TAG then names.
    pub fn is_engine(&self) -> bool {
        matches!(
            self,
            Destination::Import | Destination::Load | Destination::Onto(_)
        )
    }
}

/// The engine a destination works with, and what it reports to.
pub struct Engine<'a> {
    /// `None` where no engine is reached (`-i` into a file): only a file
    /// is written then.
    pub docker: Option<&'a Docker>,
    /// For messages: the address the user knows.
    pub endpoint: &'a str,
    pub objects: &'a Objects,
    pub progress: Arc<dyn Progress>,
}

impl<'a> Engine<'a> {
    /// The engine's client, for the destinations on it.
    pub fn docker(&self) -> &'a Docker {
        self.docker
            .expect("only a destination on the engine asks for it, and such a run has one")
    }

    /// Maps an engine error to a failure of `step`.
    pub fn failed(&self, step: Step) -> impl FnOnce(EngineError) -> Error + '_ {
        move |e| self.error(step, Cause::Engine(e))
    }

    pub fn error(&self, step: Step, cause: Cause) -> Error {
        Error {
            step,
            endpoint: self.endpoint.to_owned(),
            cause,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_decides_unless_a_file_is_asked_for() {
        assert_eq!(choose(Some(Store::Graphdriver), None), Destination::Import);
        assert_eq!(choose(Some(Store::Containerd), None), Destination::Load);
        for store in [Some(Store::Graphdriver), Some(Store::Containerd), None] {
            assert_eq!(choose(store, Some(Path::new("-"))), Destination::Stdout);
            assert_eq!(
                choose(store, Some(Path::new("out/app.tar"))),
                Destination::File("out/app.tar".into())
            );
            assert_eq!(
                choose(store, Some(Path::new("./-"))),
                Destination::File("./-".into()),
                "only a bare - is stdout"
            );
        }
        assert!(Destination::Import.is_engine() && Destination::Load.is_engine());
        assert!(!Destination::Stdout.is_engine());
    }
}
