//! The engine's image store and its version, asked before any object is
//! created: they decide where the image goes and how its layer travels
//! ([`crate::sink::compression`]).

use bollard::errors::Error as EngineError;
use bollard::Docker;

/// Where the engine keeps images; it decides how the config is read and
/// how the image is installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Store {
    /// Layers in a graph driver: a config-only docker-archive links the layer by diff ID.
    Graphdriver,
    /// The containerd image store: an OCI manifest links the uploaded blob by digest.
    Containerd,
}

/// Asks the engine which store it uses.
pub async fn probe(docker: &Docker) -> Result<Store, EngineError> {
    let info = docker.info().await?;
    let containerd = info.driver_status.unwrap_or_default().iter().any(|pair| {
        pair.first().map(String::as_str) == Some("driver-type")
            && pair.get(1).map(String::as_str) == Some("io.containerd.snapshotter.v1")
    });
    Ok(if containerd {
        Store::Containerd
    } else {
        Store::Graphdriver
    })
}

/// The engine as far as the choice of compression cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineVersion {
    /// As the engine reports it, e.g. `20.10.24+dfsg1`.
    pub version: String,
    /// API version, e.g. (1, 41); `None` when unreadable.
    pub api: Option<(u32, u32)>,
}

/// Asks the engine its version.
pub async fn version(docker: &Docker) -> Result<EngineVersion, EngineError> {
    let v = docker.version().await?;
    Ok(EngineVersion {
        version: v.version.unwrap_or_else(|| "unknown version".into()),
        api: v.api_version.as_deref().and_then(parse_api),
    })
}

/// `1.41` → (1, 41).
pub(crate) fn parse_api(version: &str) -> Option<(u32, u32)> {
    let (major, minor) = version.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}
