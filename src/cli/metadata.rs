//! The Docker CLI plugin handshake: the JSON the CLI reads from
//! `docker-flatten docker-cli-plugin-metadata` to list us in `docker --help`.
//!
//! The JSON lives in `plugin-metadata` at the repository root so that packaging
//! and the binary share one source of truth; it is embedded at build time.

/// The subcommand the docker CLI runs to discover the plugin.
pub const SUBCOMMAND: &str = "docker-cli-plugin-metadata";

/// The plugin metadata, exactly as shipped in `plugin-metadata`.
pub const JSON: &str = include_str!("../../plugin-metadata");

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str) -> String {
        let value: serde_json::Value = serde_json::from_str(JSON).expect("plugin-metadata is JSON");
        value[name]
            .as_str()
            .unwrap_or_else(|| panic!("plugin-metadata lacks string field {name}"))
            .to_owned()
    }

    #[test]
    fn version_matches_cargo() {
        assert_eq!(field("Version"), env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn has_required_fields() {
        assert_eq!(field("SchemaVersion"), "0.1.0");
        for name in ["Vendor", "ShortDescription", "URL"] {
            assert!(!field(name).is_empty(), "{name} is empty");
        }
    }
}
