//! Tar, in one place: the 512-byte block arithmetic and the headers we
//! write ([`blocks`]), and the strict reader and header writer
//! ([`reader`]).

pub mod blocks;
pub mod header;
pub mod reader;
