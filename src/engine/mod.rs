//! The Docker engine this run talks to: which one ([`resolve`], pure, as the
//! docker CLI chooses it) and a client for it ([`connect`], the I/O: the
//! client per kind of endpoint, the API version, the [`bridge`] for TLS and
//! ssh), and an image's raw inspect ([`inspect`], a `GET` over the client's
//! socket). [`objects`] are a run's temporary objects; [`sweep`] removes
//! those of dead runs. Dependencies run one way: `connect` uses `bridge`, `tls`,
//! `inspect` and `resolve`; `bridge` uses `tls`; `tls` uses `resolve`'s data.

mod bridge;
mod connect;
mod inspect;
pub mod objects;
pub mod pending;
mod resolve;
pub mod store;
pub mod sweep;
mod tls;

pub use connect::connect;
pub use inspect::InspectJson;
pub use resolve::{config_dir, resolve, Endpoint, Env, Selection};

/// The request with its path and query replaced by what `rewrite` makes of
/// them; unchanged when it makes nothing (or nothing valid).
fn rewrite_path(
    request: bollard::BollardRequest,
    rewrite: impl FnOnce(&http::uri::PathAndQuery) -> Option<String>,
) -> bollard::BollardRequest {
    let (mut parts, body) = request.into_parts();
    let mut uri = parts.uri.clone().into_parts();
    let rewritten = uri.path_and_query.as_ref().and_then(rewrite);
    if let Some(pq) = rewritten.and_then(|pq| pq.parse().ok()) {
        uri.path_and_query = Some(pq);
        if let Ok(uri) = http::Uri::from_parts(uri) {
            parts.uri = uri;
        }
    }
    bollard::BollardRequest::from_parts(parts, body)
}

/// The engine's own words for a failure, without the client library's framing.
pub fn detail(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => {
            message.trim().to_owned()
        }
        bollard::errors::Error::DockerStreamError { error } => error.trim().to_owned(),
        bollard::errors::Error::HyperResponseError { .. }
        | bollard::errors::Error::HyperLegacyError { .. }
        | bollard::errors::Error::IOError { .. }
        | bollard::errors::Error::RequestTimeoutError => {
            format!("the connection to the engine broke; check that it is still running ({e})")
        }
        other => other.to_string(),
    }
}
