//! Tar, in one place: the 512-byte block arithmetic and the headers we
//! write ([`blocks`]), the strict reader and header writer ([`reader`]),
//! and `SOURCE_DATE_EPOCH`'s clamp of a streaming tar's mtimes ([`clamp`]).

pub mod blocks;
pub mod clamp;
pub mod header;
pub mod reader;
