//! How a layer's bytes are compressed: the layers IMAGE's save stream
//! holds, and the flattened layer as it travels to the engine or a file.

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// A plain tar.
    #[default]
    None,
    Gzip,
    /// Needs Engine 23 or later (containerd 1.5) wherever the image goes.
    Zstd,
}

impl Compression {
    /// The OCI media type of a layer blob compressed this way.
    pub fn layer_media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        })
    }
}

/// Why a requested compression cannot work on an engine, and what to use instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub mode: Compression,
    /// E.g. `Engine 20.10.24 (graphdriver)`.
    pub engine: String,
    pub why: &'static str,
    pub instead: &'static str,
}
