//! The image model, without I/O: platforms and their matching rules, TAG's
//! reference grammar, IMAGE's index and the choice of its platforms, and
//! the flattened image's config.

pub mod config;
pub mod platform;
pub mod reference;
pub mod source_index;
