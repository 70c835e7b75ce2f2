//! The flattened image's config: the source image's whole container config
//! and platform, over the one new layer, with a history entry saying where
//! it came from.

use std::time::SystemTime;

use serde_json::{json, Value};

/// Where the flattened image came from, for its history.
pub struct Provenance<'a> {
    /// What the user named, e.g. `myapp:1.4`.
    pub reference: &'a str,
    pub layers: usize,
}

/// How a destination makes the flattened config once it knows the layer.
pub struct Recipe<'a> {
    /// IMAGE's ID, for the history entry.
    pub source_id: &'a str,
    pub provenance: Provenance<'a>,
    /// A partial flatten's kept layers, below the new one: their diff IDs
    /// and history entries, as IMAGE has them.
    pub kept_diff_ids: Vec<String>,
    pub kept_history: Vec<Value>,
}

impl Recipe<'_> {
    /// The flattened image's config: `source` (IMAGE's config) over the
    /// kept layers and the layer `diff_id`, made now.
    pub fn config(&self, source: &Value, diff_id: &str) -> Value {
        let mut config = flattened(
            source,
            self.source_id,
            &self.provenance,
            diff_id,
            SystemTime::now(),
        );
        if !self.kept_diff_ids.is_empty() {
            let mut ids: Vec<Value> = self.kept_diff_ids.iter().map(|d| json!(d)).collect();
            ids.push(json!(diff_id));
            config["rootfs"]["diff_ids"] = Value::Array(ids);
            let mut history = self.kept_history.clone();
            history.extend(config["history"].as_array().cloned().unwrap_or_default());
            config["history"] = Value::Array(history);
        }
        config
    }
}

/// Top-level fields of the flattened config that are written anew, not
/// taken from the source: the one layer (`rootfs`), its one history entry
/// (`history`: the source's entries describe layers that no longer exist,
/// and an image's history must have one non-empty entry per layer), and
/// when it was made (`created`, the time of the flatten, as a build's is).
/// `id` and `parent` are links between the images of an old local graph
/// (Docker before 1.10): the flattened image has no parent.
pub const SET_ANEW: &[&str] = &["created", "history", "rootfs", "id", "parent"];

/// Builds the image config JSON for the flattened image: every top-level
/// field of `source` (an image config: `config`, the platform,
/// `docker_version`, `author`, `os.features`, …) exactly as it is there,
/// except those in [`SET_ANEW`].
pub fn flattened(
    source: &Value,
    source_id: &str,
    provenance: &Provenance<'_>,
    diff_id: &str,
    created: SystemTime,
) -> Value {
    let created = humantime::format_rfc3339_nanos(created).to_string();
    let mut config = source.as_object().cloned().unwrap_or_default();
    config.retain(|key, _| !SET_ANEW.contains(&key.as_str()));
    let anew = json!({
        "created": created,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{
            "created": created,
            "created_by": format!("docker flatten {} ({source_id})", provenance.reference),
            "comment": format!(
                "flattened from {} layer(s) by docker-flatten {}",
                provenance.layers,
                env!("CARGO_PKG_VERSION")
            ),
        }],
    });
    config.extend(anew.as_object().cloned().unwrap_or_default());
    Value::Object(config)
}

/// The graphdriver engine's inspect fields, and the config fields they are.
const NAMES: &[(&str, &str)] = &[
    ("Architecture", "architecture"),
    ("Os", "os"),
    ("Variant", "variant"),
    ("OsVersion", "os.version"),
    ("Author", "author"),
    ("Comment", "comment"),
    ("Created", "created"),
    ("DockerVersion", "docker_version"),
    ("Container", "container"),
    ("ContainerConfig", "container_config"),
    ("Config", "config"),
];

/// Whether the graphdriver engine's inspect reports the config field `key`.
pub fn inspect_reports(key: &str) -> bool {
    NAMES.iter().any(|(_, to)| *to == key)
}

/// An image config from a graphdriver engine's inspect of the image, as the
/// engine sent it: the store keeps the config it was given, and its inspect
/// reports the config's fields under other names. Empty strings are absent
/// fields (the config omits them), and so is a `container_config` with
/// nothing in it (the engine reports one for every image). The engine does
/// not report `os.features`, nor fields it does not know.
pub fn from_inspect(inspect: &Value) -> Value {
    let mut config = serde_json::Map::new();
    for (from, to) in NAMES {
        match inspect.get(*from) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.is_empty() => {}
            Some(v) if *to == "container_config" && is_empty(v) => {}
            Some(v) => {
                config.insert((*to).to_owned(), v.clone());
            }
        }
    }
    Value::Object(config)
}

/// Whether a JSON value holds nothing but zero values.
pub fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_empty),
        Value::Bool(true) => false,
    }
}

/// The OCI platform object of an image config.
pub fn platform(config: &Value) -> Value {
    let mut platform = json!({"architecture": config["architecture"], "os": config["os"]});
    for key in ["variant", "os.version"] {
        if let Some(v) = config.get(key) {
            platform[key] = v.clone();
        }
    }
    platform
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_flatten_keeps_the_kept_layers_and_their_history() {
        let recipe = Recipe {
            source_id: "sha256:src",
            provenance: Provenance {
                reference: "app:1",
                layers: 2,
            },
            kept_diff_ids: vec!["sha256:base".into()],
            kept_history: vec![json!({"created_by": "ADD base"})],
        };
        let source = json!({"architecture": "amd64", "os": "linux", "history": [1, 2, 3],
                            "rootfs": {"type": "layers", "diff_ids": ["sha256:base", "sha256:x"]}});
        let config = recipe.config(&source, "sha256:new");
        assert_eq!(
            config["rootfs"]["diff_ids"],
            json!(["sha256:base", "sha256:new"])
        );
        let history = config["history"].as_array().unwrap();
        assert_eq!(history.len(), 2);
        assert_eq!(history[0], json!({"created_by": "ADD base"}));
        assert_eq!(
            history[1]["comment"],
            "flattened from 2 layer(s) by docker-flatten 0.1.0"
        );
    }

    #[test]
    fn carries_every_field_but_those_set_anew() {
        let source = json!({
            "architecture": "arm64", "variant": "v8", "os": "linux",
            "os.version": "10.0.1", "os.features": ["win32k"],
            "author": "Ann", "docker_version": "17.03.2", "comment": "imported",
            "container": "abc", "container_config": {"Cmd": ["build"]},
            "x-vendor": {"kept": true},
            "config": {"Env": ["P=$5", "Q=a\nb"], "ExposedPorts": {}, "Volumes": null},
            "created": "2001-01-01T00:00:00Z", "id": "old", "parent": "older",
            "rootfs": {"type": "layers", "diff_ids": ["sha256:1", "sha256:2"]},
            "history": [{"created_by": "a"}, {"created_by": "b"}],
        });
        let p = Provenance {
            reference: "app:1",
            layers: 2,
        };
        let v = flattened(
            &source,
            "sha256:abc",
            &p,
            "sha256:layer",
            SystemTime::UNIX_EPOCH,
        );
        for key in [
            "architecture",
            "variant",
            "os",
            "os.version",
            "os.features",
            "author",
            "docker_version",
            "comment",
            "container",
            "container_config",
            "x-vendor",
            "config",
        ] {
            assert_eq!(v[key], source[key], "{key}");
        }
        for gone in ["id", "parent"] {
            assert!(v.get(gone).is_none(), "{gone}");
        }
        assert_eq!(v["rootfs"]["diff_ids"], json!(["sha256:layer"]));
        assert_eq!(v["history"].as_array().unwrap().len(), 1);
        assert_eq!(
            v["history"][0]["created_by"],
            "docker flatten app:1 (sha256:abc)"
        );
        assert_eq!(v["created"], "1970-01-01T00:00:00.000000000Z");
    }

    #[test]
    fn a_graphdriver_inspect_reads_back_as_the_config() {
        let inspect = json!({
            "Id": "sha256:abc", "Parent": "", "Comment": "", "Created": "2020-01-01T00:00:00Z",
            "Container": "", "DockerVersion": "20.10.24", "Author": "Ann",
            "ContainerConfig": {"Hostname": "", "Cmd": null, "Tty": false, "Labels": null},
            "Config": {"Cmd": ["/app"], "Env": null}, "Architecture": "amd64",
            "Variant": "", "Os": "linux", "OsVersion": "", "Size": 4,
            "RootFS": {"Type": "layers", "Layers": ["sha256:1"]},
        });
        assert_eq!(
            from_inspect(&inspect),
            json!({
                "architecture": "amd64", "os": "linux", "author": "Ann",
                "created": "2020-01-01T00:00:00Z", "docker_version": "20.10.24",
                "config": {"Cmd": ["/app"], "Env": null},
            })
        );
        let mut built = inspect.clone();
        built["ContainerConfig"]["Cmd"] = json!(["/bin/sh", "-c", "make"]);
        assert_eq!(
            from_inspect(&built)["container_config"],
            built["ContainerConfig"]
        );
    }
}
