//! The flattened image's config: the source image's whole container config
//! and platform, over the one new layer, with a history entry saying where
//! it came from. Nothing of the run goes in (no time, host or run ID): the
//! same IMAGE and options give the same config, byte for byte
//! (docs/reproducible.md). serde_json writes keys sorted.

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

/// Where the flattened image came from, for its history.
pub struct Provenance<'a> {
    /// What the user named, e.g. `myapp:1.4`.
    pub reference: &'a str,
    pub layers: usize,
}

/// How a destination makes the flattened config once it knows the layer.
pub struct Recipe<'a> {
    pub provenance: Provenance<'a>,
    /// A partial flatten's kept layers, below the new one: their diff IDs
    /// and history entries, as IMAGE has them.
    pub kept_diff_ids: Vec<String>,
    pub kept_history: Vec<Value>,
    /// `SOURCE_DATE_EPOCH`: the time the image and its new history entry
    /// say; `None`: IMAGE's own `created`.
    pub epoch: Option<u64>,
}

impl Recipe<'_> {
    /// The flattened image's config: `source` (IMAGE's config) over the
    /// kept layers and the layer `diff_id`.
    pub fn config(&self, source: &Value, diff_id: &str) -> Value {
        let created = match self.epoch {
            Some(epoch) => Some(epoch_time(epoch)),
            None => source["created"].as_str().map(str::to_owned),
        };
        let mut config = flattened(source, &self.provenance, diff_id, created);
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

/// `SOURCE_DATE_EPOCH` as a config time, as BuildKit writes it:
/// RFC 3339 in UTC, whole seconds.
pub fn epoch_time(epoch: u64) -> String {
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(epoch);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// Why `SOURCE_DATE_EPOCH` cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("SOURCE_DATE_EPOCH is {0:?}, not a whole number of seconds since 1970-01-01 UTC")]
pub struct BadEpoch(pub String);

/// `SOURCE_DATE_EPOCH`'s value `value`, read as BuildKit reads it: a
/// decimal integer of seconds; empty is unset.
pub fn parse_epoch(value: &str) -> Result<Option<u64>, BadEpoch> {
    match value.trim() {
        "" => Ok(None),
        v => v
            .parse::<u64>()
            .ok()
            .filter(|s| {
                SystemTime::UNIX_EPOCH
                    .checked_add(Duration::from_secs(*s))
                    .is_some()
            })
            .map(Some)
            .ok_or_else(|| BadEpoch(value.to_owned())),
    }
}

/// `SOURCE_DATE_EPOCH` of this process, as [`parse_epoch`] reads it.
pub fn source_date_epoch() -> Result<Option<u64>, BadEpoch> {
    let value = std::env::var_os("SOURCE_DATE_EPOCH").unwrap_or_default();
    parse_epoch(&value.to_string_lossy())
}

/// Top-level fields of the flattened config that are written anew, not
/// taken from the source: the one layer (`rootfs`), its one history entry
/// (`history`: the source's entries describe layers that no longer exist,
/// and an image's history must have one non-empty entry per layer), and
/// when it was made (`created`: IMAGE's own, or `SOURCE_DATE_EPOCH`; never
/// the time of the run, which would give every run its own digest).
/// `id` and `parent` are links between the images of an old local graph
/// (Docker before 1.10): the flattened image has no parent.
pub const SET_ANEW: &[&str] = &["created", "history", "rootfs", "id", "parent"];

/// Builds the image config JSON for the flattened image: every top-level
/// field of `source` (an image config: `config`, the platform,
/// `docker_version`, `author`, `os.features`, …) exactly as it is there,
/// except those in [`SET_ANEW`]. `created` (`None`: IMAGE has none) is the
/// image's and its history entry's. The history names IMAGE as the user
/// did, not by its ID: an ID is the engine's (a config digest on a
/// graphdriver, a manifest digest on the containerd store), and the result
/// of `--exact` is the same on every engine.
pub fn flattened(
    source: &Value,
    provenance: &Provenance<'_>,
    diff_id: &str,
    created: Option<String>,
) -> Value {
    let mut config = source.as_object().cloned().unwrap_or_default();
    config.retain(|key, _| !SET_ANEW.contains(&key.as_str()));
    let mut entry = json!({
        "created_by": format!("docker flatten {}", provenance.reference),
        "comment": format!(
            "flattened from {} layer(s) by docker-flatten {}",
            provenance.layers,
            env!("CARGO_PKG_VERSION")
        ),
    });
    if let Some(created) = &created {
        entry["created"] = json!(created);
        config.insert("created".to_owned(), json!(created));
    }
    config.insert(
        "rootfs".to_owned(),
        json!({"type": "layers", "diff_ids": [diff_id]}),
    );
    config.insert("history".to_owned(), json!([entry]));
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
            provenance: Provenance {
                reference: "app:1",
                layers: 2,
            },
            kept_diff_ids: vec!["sha256:base".into()],
            kept_history: vec![json!({"created_by": "ADD base"})],
            epoch: None,
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
        let v = flattened(&source, &p, "sha256:layer", Some(epoch_time(0)));
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
        assert_eq!(v["history"][0]["created_by"], "docker flatten app:1");
        assert_eq!(v["created"], "1970-01-01T00:00:00Z");
        assert_eq!(v["history"][0]["created"], "1970-01-01T00:00:00Z");
    }

    #[test]
    fn the_time_is_image_s_own_or_source_date_epoch_never_the_run_s() {
        let source = json!({"os": "linux", "created": "2024-05-06T07:08:09.123456789Z"});
        let mut recipe = Recipe {
            provenance: Provenance {
                reference: "app:1",
                layers: 3,
            },
            kept_diff_ids: Vec::new(),
            kept_history: Vec::new(),
            epoch: None,
        };
        let first = recipe.config(&source, "sha256:l");
        assert_eq!(first["created"], source["created"]);
        assert_eq!(first["history"][0]["created"], source["created"]);
        assert_eq!(
            serde_json::to_vec(&first).unwrap(),
            serde_json::to_vec(&recipe.config(&source, "sha256:l")).unwrap()
        );
        recipe.epoch = Some(1_700_000_000);
        let dated = recipe.config(&source, "sha256:l");
        assert_eq!(dated["created"], "2023-11-14T22:13:20Z");
        assert_eq!(dated["history"][0]["created"], "2023-11-14T22:13:20Z");
        let undated = recipe.config(&json!({"os": "linux"}), "sha256:l");
        assert_eq!(undated["history"][0]["created"], "2023-11-14T22:13:20Z");
        recipe.epoch = None;
        let undated = recipe.config(&json!({"os": "linux"}), "sha256:l");
        assert!(undated.get("created").is_none() && undated["history"][0].get("created").is_none());
    }

    #[test]
    fn source_date_epoch_reads_as_buildkit_reads_it() {
        assert_eq!(parse_epoch(""), Ok(None));
        assert_eq!(parse_epoch("1700000000"), Ok(Some(1_700_000_000)));
        assert_eq!(parse_epoch("0"), Ok(Some(0)));
        for bad in ["-1", "1.5", "soon", "99999999999999999999"] {
            assert_eq!(parse_epoch(bad), Err(BadEpoch(bad.to_owned())), "{bad}");
        }
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
