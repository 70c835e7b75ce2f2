//! An image's inspect as the engine sends it, as JSON.
//!
//! The client library parses `GET /images/{name}/json` into a struct of its
//! API version's fields, and that struct has no `DockerVersion` (nor
//! whatever else an engine reports and the struct lacks), so a config built
//! from it loses them; it has no call for a request's raw body either. So
//! this sends that `GET` itself, over the transport the client uses (the
//! engine's unix socket or TCP address, or the bridge's socket for TLS and
//! ssh), with the API version agreed or pinned in the path and the client's
//! timeout, and reads the whole body. The engine's refusals come back as
//! the client library's errors, with their status codes.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use bollard::errors::Error as EngineError;
use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::Instant;

/// Where the engine's HTTP API is reached: every endpoint ends up as one of
/// these (TLS and ssh ones as the bridge's unix socket).
#[derive(Clone, Debug)]
pub enum Socket {
    Unix(PathBuf),
    /// `host:port`, as `resolve::authority` writes it.
    Tcp(String),
}

/// Reads images' inspect documents whole.
#[derive(Clone, Debug)]
pub struct InspectJson {
    socket: Socket,
    /// The API version in every path, `(1, 41)` for `/v1.41/…`.
    version: (usize, usize),
    /// Until the answer's head, as the client library counts its timeout.
    timeout: Duration,
}

impl InspectJson {
    pub fn new(socket: Socket, version: (usize, usize), timeout: Duration) -> InspectJson {
        InspectJson {
            socket,
            version,
            timeout,
        }
    }

    /// The engine's inspect of `image`, exactly as it sent it.
    pub async fn image(&self, image: &str) -> Result<serde_json::Value, EngineError> {
        let host = match &self.socket {
            // What the docker CLI sends over a socket; the engine ignores it,
            // but HTTP/1.1 wants one.
            Socket::Unix(_) => "api.moby.localhost",
            Socket::Tcp(address) => address,
        };
        let request = Request::get(inspect_path(image, self.version))
            .header(header::HOST, host)
            .body(Empty::<Bytes>::new())?;
        let deadline = Instant::now() + self.timeout;
        let (status, body) = match &self.socket {
            Socket::Unix(path) => {
                let stream = within(deadline, UnixStream::connect(path)).await??;
                exchange(stream, request, deadline).await?
            }
            Socket::Tcp(address) => {
                let stream = within(deadline, TcpStream::connect(address.as_str())).await??;
                let _ = stream.set_nodelay(true);
                exchange(stream, request, deadline).await?
            }
        };
        if !status.is_success() {
            return Err(refusal(status, &body));
        }
        serde_json::from_slice(&body).map_err(EngineError::from)
    }
}

/// `future`, or the client library's timeout error at `deadline`.
async fn within<T>(deadline: Instant, future: impl Future<Output = T>) -> Result<T, EngineError> {
    tokio::time::timeout_at(deadline, future)
        .await
        .map_err(|_| EngineError::RequestTimeoutError)
}

/// Sends `request` on a fresh HTTP/1.1 connection over `stream` and reads
/// the answer's status and whole body; the connection closes after it.
async fn exchange<S>(
    stream: S,
    request: Request<Empty<Bytes>>,
    deadline: Instant,
) -> Result<(StatusCode, Bytes), EngineError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let answer = async move {
        let response = within(deadline, sender.send_request(request)).await??;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    };
    tokio::pin!(answer);
    // The connection does the I/O; its errors reach the answer too. Once
    // it ends, what it read is buffered for the answer to take.
    tokio::select! {
        answer = &mut answer => answer,
        _ = connection => answer.await,
    }
}

/// `/v1.41/images/{image}/json`, the image's name escaped as the docker CLI
/// escapes a path: `/`, `:` and `@` (and the rest of RFC 3986's path
/// characters) stay as they are, as the client library leaves them; `%`,
/// `?`, `#`, spaces and anything else are percent-encoded, and the engine
/// decodes them back.
fn inspect_path(image: &str, (major, minor): (usize, usize)) -> String {
    let mut path = format!("/v{major}.{minor}/images/");
    for byte in image.bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => path.push(byte as char),
            b'-' | b'_' | b'.' | b'~' => path.push(byte as char),
            b'$' | b'&' | b'+' | b',' | b'/' | b':' | b';' | b'=' | b'@' => path.push(byte as char),
            _ => path.push_str(&format!("%{byte:02X}")),
        }
    }
    path.push_str("/json");
    path
}

/// The engine's refusal, as the client library reports it: the `message`
/// of its JSON body, or the body itself when that is not JSON.
fn refusal(status: StatusCode, body: &[u8]) -> EngineError {
    #[derive(serde::Deserialize)]
    struct Said {
        message: String,
    }
    let message = match serde_json::from_slice::<Said>(body) {
        Ok(said) => said.message,
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    EngineError::DockerResponseServerError {
        status_code: status.as_u16(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_carry_the_version_and_the_name_as_the_engine_reads_it() {
        let v = (1, 41);
        assert_eq!(
            inspect_path("sha256:abc", v),
            "/v1.41/images/sha256:abc/json"
        );
        let name = "registry.example:5000/team/app_1.2-x@sha256:0f";
        assert_eq!(
            inspect_path(name, (1, 47)),
            format!("/v1.47/images/{name}/json")
        );
        assert_eq!(
            inspect_path("a b?c#d%e\"é", v),
            "/v1.41/images/a%20b%3Fc%23d%25e%22%C3%A9/json"
        );
        // Whatever the name, the result is a request path.
        let path = inspect_path("x/../y?z=1 {}|\\^`[]", v);
        let parsed: http::uri::PathAndQuery = path.parse().unwrap();
        assert_eq!(parsed.path(), path);
        assert_eq!(parsed.query(), None);
    }

    fn said(error: EngineError) -> (u16, String) {
        match error {
            EngineError::DockerResponseServerError {
                status_code,
                message,
            } => (status_code, message),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refusals_keep_the_status_and_the_engines_message() {
        let body = br#"{"message":"No such image: app:1"}"#;
        assert_eq!(
            said(refusal(StatusCode::NOT_FOUND, body)),
            (404, "No such image: app:1".to_owned())
        );
        assert_eq!(
            said(refusal(StatusCode::BAD_GATEWAY, b"upstream down\n")),
            (502, "upstream down\n".to_owned())
        );
        assert_eq!(
            said(refusal(StatusCode::INTERNAL_SERVER_ERROR, b"")),
            (500, String::new())
        );
    }
}
