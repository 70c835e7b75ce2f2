//! The compression policy: which compression suits where the layer goes,
//! and which the engine there cannot take. Decided before any object is
//! created.

use crate::engine::store::{EngineVersion, Store};
use crate::model::compression::{Compression, Refusal};
use crate::sink::Destination;

/// The first API version that imports zstd layers on a graphdriver
/// engine: Engine 23 taught the classic archive code zstd.
const ZSTD_GRAPHDRIVER_API: (u32, u32) = (1, 42);

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::store::parse_api;

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
