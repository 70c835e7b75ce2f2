//! An image's inspect as the engine sends it, as JSON.
//!
//! The client library parses `GET /images/{name}/json` into a struct of its
//! API version's fields, and that struct has no `DockerVersion` (nor
//! whatever else an engine reports and the struct lacks), so a config built
//! from it loses them. It has no call for a request's raw body either,
//! except the streaming ones. So this is a copy of the connection whose
//! requests for `GET /images/{name}/get` (`docker save`, whose body the
//! library hands over untouched) go to `/images/{name}/json` instead: the
//! same transport (unix, TCP, the TLS or ssh bridge), the same timeouts and
//! the same API version in the path, and the engine's errors with their
//! status codes.

use bollard::errors::Error as EngineError;
use bollard::{BollardRequest, Docker};
use futures_util::StreamExt;

/// Reads images' inspect documents whole.
#[derive(Clone)]
pub struct InspectJson {
    docker: Docker,
}

impl InspectJson {
    /// `docker` with `modifier` applied after the rewrite (the connection's
    /// own request modifier, which a client can hold only one of).
    pub fn new(
        docker: Docker,
        modifier: impl Fn(BollardRequest) -> BollardRequest + Send + Sync + 'static,
    ) -> InspectJson {
        InspectJson {
            docker: docker.with_request_modifier(move |r| modifier(save_to_inspect(r))),
        }
    }

    /// The engine's inspect of `image`, exactly as it sent it.
    pub async fn image(&self, image: &str) -> Result<serde_json::Value, EngineError> {
        let mut body = Vec::new();
        let mut stream = self.docker.export_image(image);
        while let Some(chunk) = stream.next().await {
            body.extend_from_slice(&chunk?);
        }
        serde_json::from_slice(&body).map_err(EngineError::from)
    }
}

/// Points a `GET /images/{name}/get` at `/images/{name}/json`; leaves any
/// other request alone.
fn save_to_inspect(request: BollardRequest) -> BollardRequest {
    super::rewrite_path(request, |pq| {
        let name = pq.path().strip_prefix("/images/")?.strip_suffix("/get")?;
        let query = pq.query().map(|q| format!("?{q}")).unwrap_or_default();
        Some(format!("/images/{name}/json{query}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_of(uri: &str) -> String {
        let body = bollard::body_stream(futures_util::stream::empty());
        let request = http::Request::get(uri).body(body).unwrap();
        save_to_inspect(request).uri().to_string()
    }

    #[test]
    fn only_a_save_becomes_an_inspect() {
        assert_eq!(
            path_of("http://localhost/images/sha256:abc/get"),
            "http://localhost/images/sha256:abc/json"
        );
        assert_eq!(
            path_of("http://localhost/images/app:1/get?platform=x"),
            "http://localhost/images/app:1/json?platform=x"
        );
        for other in [
            "http://localhost/containers/abc/export",
            "http://localhost/images/abc/json",
            "http://localhost/images/get",
        ] {
            assert_eq!(path_of(other), other);
        }
    }
}
