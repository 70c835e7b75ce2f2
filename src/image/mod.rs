//! The flattened image apart from its layer's bytes: its config, and the
//! archives that carry it into an engine or a file.

pub mod archive;
pub mod config;
