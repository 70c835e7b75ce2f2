//! The engine's image store, its version, and the compression policy they
//! decide: which compression suits a destination, and which the engine
//! cannot take. Decided before any object is created.

use bollard::errors::Error as EngineError;
use bollard::Docker;

use crate::encode::Compression;
use crate::sink::Destination;

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

/// The first API version that imports zstd layers on a graphdriver
/// engine: Engine 23 taught the classic archive code zstd.
const ZSTD_GRAPHDRIVER_API: (u32, u32) = (1, 42);

/// Why a requested compression cannot work on an engine, and what to use instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub mode: Compression,
    /// E.g. `Engine 20.10.24 (graphdriver)`.
    pub engine: String,
    pub why: &'static str,
    pub instead: &'static str,
}

/// Whether [`choose_compression`] needs the engine's version for this request.
pub fn needs_version(requested: Option<Compression>, destination: &Destination) -> bool {
    matches!(
        (requested, destination),
        (
            Some(Compression::Zstd),
            Destination::Import | Destination::Onto(Store::Graphdriver)
        ) | (
            Some(Compression::None),
            Destination::Load | Destination::Onto(Store::Containerd)
        )
    )
}

/// The compression to send the layer with, or why the requested one cannot
/// work there.
pub fn choose_compression(
    requested: Option<Compression>,
    destination: &Destination,
    engine: Option<EngineVersion>,
) -> Result<Compression, Refusal> {
    let named = |kind: &str| {
        let version = engine.as_ref().map_or("unknown version", |e| &e.version);
        format!("Engine {version} ({kind})")
    };
    match (requested, destination) {
        // A graphdriver store keeps layers uncompressed: compressing would only cost CPU.
        (None, Destination::Import | Destination::Onto(Store::Graphdriver)) => {
            Ok(Compression::None)
        }
        // The containerd store keeps the layer blob as it was loaded, and
        // pushes it so: compressed is what every registry expects. A file
        // goes anywhere: gzip is what every engine and registry reads.
        (
            None,
            Destination::Load
            | Destination::Onto(Store::Containerd)
            | Destination::File(_)
            | Destination::Stdout,
        ) => Ok(Compression::Gzip),
        (Some(Compression::None), Destination::Load | Destination::Onto(Store::Containerd)) => {
            Err(Refusal {
                mode: Compression::None,
                engine: named("containerd image store"),
                why: "the containerd image store keeps the layer as it is sent, so it would \
                  stay uncompressed on disk and in every push",
                instead: "--compression gzip (the default there) or zstd",
            })
        }
        (Some(Compression::Zstd), Destination::Import | Destination::Onto(Store::Graphdriver))
            if engine
                .as_ref()
                .and_then(|e| e.api)
                .is_some_and(|api| api < ZSTD_GRAPHDRIVER_API) =>
        {
            Err(Refusal {
                mode: Compression::Zstd,
                engine: named("graphdriver"),
                why: "graphdriver engines before Engine 23 cannot take a zstd layer",
                instead: "--compression gzip or none (the default there)",
            })
        }
        (Some(mode), _) => Ok(mode),
    }
}

/// `1.41` → (1, 41).
fn parse_api(version: &str) -> Option<(u32, u32)> {
    let (major, minor) = version.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(version: &str, api: &str) -> Option<EngineVersion> {
        Some(EngineVersion {
            version: version.into(),
            api: parse_api(api),
        })
    }

    #[test]
    fn auto_suits_the_destination() {
        let file = Destination::File("a.tar".into());
        for (destination, auto) in [
            (&Destination::Import, Compression::None),
            (&Destination::Load, Compression::Gzip),
            (&file, Compression::Gzip),
            (&Destination::Stdout, Compression::Gzip),
        ] {
            assert!(!needs_version(None, destination));
            assert_eq!(choose_compression(None, destination, None), Ok(auto));
        }
        for mode in [Compression::Gzip, Compression::Zstd] {
            assert_eq!(
                choose_compression(Some(mode), &Destination::Load, None),
                Ok(mode)
            );
        }
        assert_eq!(
            choose_compression(Some(Compression::Gzip), &Destination::Import, None),
            Ok(Compression::Gzip)
        );
        for mode in [Compression::None, Compression::Gzip, Compression::Zstd] {
            assert!(!needs_version(Some(mode), &file));
            assert_eq!(choose_compression(Some(mode), &file, None), Ok(mode));
        }
    }

    #[test]
    fn refuses_what_the_engine_cannot_keep() {
        assert!(needs_version(Some(Compression::Zstd), &Destination::Import));
        let old = choose_compression(
            Some(Compression::Zstd),
            &Destination::Import,
            engine("20.10.24", "1.41"),
        );
        let refusal = old.unwrap_err();
        assert_eq!(
            (refusal.mode, refusal.engine.as_str()),
            (Compression::Zstd, "Engine 20.10.24 (graphdriver)")
        );
        assert!(refusal.instead.contains("gzip"));
        assert_eq!(
            choose_compression(
                Some(Compression::Zstd),
                &Destination::Import,
                engine("23.0.1", "1.42")
            ),
            Ok(Compression::Zstd)
        );
        assert!(needs_version(Some(Compression::None), &Destination::Load));
        let none = choose_compression(
            Some(Compression::None),
            &Destination::Load,
            engine("26.1.5", "1.45"),
        );
        assert!(none.unwrap_err().instead.contains("zstd"));
    }

    #[test]
    fn reads_api_versions() {
        assert_eq!(parse_api("1.41"), Some((1, 41)));
        assert_eq!(parse_api("1.9"), Some((1, 9)));
        assert!(parse_api("1.41") < Some((1, 42)));
        assert_eq!(parse_api("dev"), None);
    }
}
