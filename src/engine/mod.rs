//! The Docker engine this run talks to: which one ([`resolve`], pure, as the
//! docker CLI chooses it) and a client for it ([`connect`], the I/O: the
//! client per kind of endpoint, the API version, the [`bridge`] for TLS and
//! ssh). Dependencies run one way: `connect` uses `bridge`, `tls` and
//! `resolve`; `bridge` uses `tls`; `tls` uses `resolve`'s data.

mod bridge;
mod connect;
mod inspect;
pub mod objects;
mod resolve;
pub mod store;
mod tls;

pub use connect::connect;
pub use inspect::InspectJson;
pub use resolve::{resolve, Endpoint, Env};

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
