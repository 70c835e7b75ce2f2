//! Shared fixtures for the docker-flatten integration tests.
//!
//! Every test binary does `mod support;` and gets:
//! - [`archive`]: build layer tars and whole images from a declarative spec
//!   and `docker load` them (nothing can be pulled on the test machines);
//! - [`fsview`]: an independent model of an image's merged filesystem, read
//!   from `docker save` / `docker export`, plus a differ for comparing them;
//! - [`oci`]: multi-platform images (an OCI layout with a nested index);
//! - [`leftovers`]: a source image whose flattenings' leftovers can be traced
//!   to it, and the check that there are none;
//! - [`processes`]: start, signal and wait for the plugin and the CLI;
//! - [`registry`]: a private image registry, and the second engine that
//!   pulls from it;
//! - [`small_engine`]: a private engine on a small tmpfs, for disk-full runs;
//! - [`terminal`]: a real terminal (tmux) whose final screen a test reads;
//! - [`engine`]: thin wrappers around the real `docker` CLI, cleanup guards,
//!   the plugin wiring, and engine-state snapshots for leftover checks.
//!
//! None of this uses code from `src/`: the tests must be able to catch the
//! plugin being wrong in the same way as the code under test.
//!
//! Tests of many binaries share one engine, so every helper works only on
//! names from [`unique`] and removes what it created, even on panic.
//!
//! The engine is the one the `docker` CLI reaches: `DOCKER_HOST` when set,
//! else the default socket ([`docker_host`]); the fault proxy forwards to
//! the same one. Both image stores are supported ([`image_store`]): with a
//! graphdriver an image ID is its config digest, with the containerd store
//! it is the digest of a manifest the engine writes, and `docker save` may
//! hold gzip-compressed layers, which [`save_image`] decompresses.

// Each test binary compiles this module on its own and uses only part of it.
#![allow(dead_code, unused_imports)]

pub mod archive;
pub mod engine;
pub mod fsview;
pub mod input;
pub mod leftovers;
pub mod oci;
pub mod processes;
pub mod proxy;
pub mod registry;
pub mod small_engine;
pub mod terminal;

pub use archive::*;
pub use engine::*;
pub use fsview::*;
pub use leftovers::*;
pub use oci::*;
pub use registry::*;
pub use terminal::*;
