//! IMAGE's `docker save` stream (`GET /images/{name}/get`), read as it
//! comes on a blocking thread: for the dry run's analysis, and for the
//! source's config on the containerd store.

use std::io::Read;

use bollard::errors::Error as EngineError;
use bytes::Bytes;
use futures_util::Stream;
use serde_json::Value;

use crate::stream;

/// Config blobs larger than this are not configs; it bounds what is held.
const MAX_CONFIG: u64 = 16 << 20;

/// The save stream as `work` reads it.
pub type ChannelReader = stream::Reader;

/// Feeds `save` to `work` on a blocking thread, calling `on_chunk` with the
/// size of every chunk that arrives. `work` may stop reading early: the
/// stream, and with it the engine's request, is then dropped.
pub async fn read<T: Send + 'static>(
    save: impl Stream<Item = Result<Bytes, EngineError>> + Send + 'static,
    on_chunk: impl Fn(u64) + Send + 'static,
    work: impl FnOnce(ChannelReader) -> T + Send + 'static,
) -> Result<T, EngineError> {
    let (bytes, fed) = stream::forward(save, on_chunk);
    let reader = bytes.into_reader();
    let result = tokio::task::spawn_blocking(move || work(reader))
        .await
        .expect("the reading thread does not panic");
    // On an engine error the reader saw a cut archive; the engine's error is the cause.
    fed.wait().await.map(|()| result)
}

/// The first image config in a save stream whose layers are `diff_ids` and
/// whose platform is `os`/`architecture`, as the engine stored it; reads no
/// further than that config. `None` if the archive holds none.
///
/// The containerd store sends its blobs in digest order, so where the config
/// comes is chance: the layers before it are read past, never held.
pub fn find_config(
    save: impl Read,
    diff_ids: &[String],
    os: &str,
    architecture: &str,
) -> std::io::Result<Option<Value>> {
    let mut archive = tar::Archive::new(save);
    for entry in archive.entries()? {
        let mut entry = entry?;
        if !entry.header().entry_type().is_file() || entry.size() > MAX_CONFIG {
            continue;
        }
        let mut first = [0u8; 1];
        if entry.read(&mut first)? == 0 || first[0] != b'{' {
            continue; // a layer (or an empty file): the reader skips the rest
        }
        let mut json = first.to_vec();
        entry.read_to_end(&mut json)?;
        let Ok(config) = serde_json::from_slice::<Value>(&json) else {
            continue;
        };
        let layers = config["rootfs"]["diff_ids"].as_array().map(|ids| {
            ids.iter()
                .map(|id| id.as_str().unwrap_or_default())
                .collect::<Vec<_>>()
        });
        if layers.as_deref() == Some(&diff_ids.iter().map(String::as_str).collect::<Vec<_>>()[..])
            && config["os"] == os
            && config["architecture"] == architecture
        {
            return Ok(Some(config));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn member(b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).unwrap();
    }

    #[test]
    fn finds_the_config_of_the_platform_and_layers_asked_for() {
        let config = |arch: &str, ids: &[&str]| {
            json!({"architecture": arch, "os": "linux", "docker_version": arch,
                   "rootfs": {"type": "layers", "diff_ids": ids}})
        };
        let mut b = tar::Builder::new(Vec::new());
        member(&mut b, "blobs/sha256/00", &[0x1f, 0x8b, 8, 0]);
        member(&mut b, "blobs/sha256/01", br#"{"schemaVersion":2}"#);
        member(
            &mut b,
            "blobs/sha256/02",
            config("arm64", &["sha256:a"]).to_string().as_bytes(),
        );
        member(
            &mut b,
            "blobs/sha256/03",
            config("amd64", &["sha256:b"]).to_string().as_bytes(),
        );
        member(
            &mut b,
            "blobs/sha256/04",
            config("amd64", &["sha256:a"]).to_string().as_bytes(),
        );
        member(&mut b, "index.json", b"{}");
        let archive = b.into_inner().unwrap();
        let found = find_config(&archive[..], &["sha256:a".into()], "linux", "amd64").unwrap();
        assert_eq!(found, Some(config("amd64", &["sha256:a"])));
        let none = find_config(&archive[..], &["sha256:c".into()], "linux", "amd64").unwrap();
        assert_eq!(none, None);
    }
}
