//! The flattened image apart from its layer's bytes: its config, and the
//! archives that carry it into an engine or a file: one image
//! ([`archive`]), or one per platform under an index ([`index`]).

pub mod archive;
pub mod config;
pub mod index;
