//! A client for the resolved engine: one way per kind of [`Address`], the
//! API version agreed or pinned, and the engine asked to answer once before
//! the run starts. An engine behind TLS or ssh is reached through a
//! [`Bridge`]: a private local socket whose connections are carried over
//! TLS, or through `ssh … docker system dial-stdio`.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use bollard::{BollardRequest, ClientVersion, Docker, API_DEFAULT_VERSION};

use super::bridge::{Bridge, DialError, Upstream};
use super::inspect::{InspectJson, Socket};
use super::resolve::{authority, Address, Endpoint};
use super::tls::{self, TlsError};

/// Requests such as an import last as long as the upload; the engine, not a
/// client-side clock, decides when they fail.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long to wait for the first answer before calling the engine unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// The engine could not be reached. Names the endpoint once, for every
/// kind of failure.
#[derive(Debug)]
pub struct ConnectError {
    endpoint: String,
    failure: Failure,
}

#[derive(Debug)]
enum Failure {
    Tls(TlsError),
    /// The bridge's private socket could not be opened.
    Bridge(std::io::Error),
    /// The bridge could not carry a connection to the engine.
    Dial(DialError),
    /// The engine did not answer; `why` reads the cause's kind, which
    /// stays available as the source.
    Unreachable {
        why: &'static str,
        error: bollard::errors::Error,
    },
    Resolve(std::io::Error),
    TimedOut,
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = &self.endpoint;
        match &self.failure {
            Failure::Tls(e) => write!(f, "cannot set up TLS for the Docker engine at {at}: {e}"),
            Failure::Bridge(e) => write!(
                f,
                "cannot open a local socket to reach the Docker engine at {at}: {e}; \
                 check that TMPDIR is a writable directory"
            ),
            Failure::Dial(e) => write!(f, "cannot connect to the Docker engine at {at}: {e}"),
            Failure::Unreachable { why, .. } => {
                write!(f, "cannot connect to the Docker engine at {at}: {why}")
            }
            Failure::Resolve(e) => write!(
                f,
                "cannot resolve the host name of the Docker engine at {at}: {e}; check the address"
            ),
            Failure::TimedOut => write!(
                f,
                "no answer from the Docker engine at {at} within {}s; \
                 check that it runs and that this is its address",
                CONNECT_TIMEOUT.as_secs()
            ),
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.failure {
            Failure::Unreachable { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// A client for the engine, and the bridge it goes through if any (the
/// bridge stops when this is dropped).
pub struct Connection {
    pub docker: Docker,
    /// The same engine, for inspect documents the client library would cut.
    pub inspect_json: InspectJson,
    _bridge: Option<Bridge>,
}

/// Opens a client for the endpoint and checks that the engine answers,
/// agreeing on an API version unless `DOCKER_API_VERSION` fixes one.
pub async fn connect(endpoint: &Endpoint) -> Result<Connection, ConnectError> {
    let fail = |failure| ConnectError {
        endpoint: endpoint.to_string(),
        failure,
    };
    let unreachable = |error: bollard::errors::Error| {
        fail(Failure::Unreachable {
            why: why_unreachable(&error),
            error,
        })
    };
    let pinned = endpoint.api_version.map(|(major, minor)| ClientVersion {
        major_version: major,
        minor_version: minor,
    });
    let version = pinned.as_ref().unwrap_or(API_DEFAULT_VERSION);
    let secs = REQUEST_TIMEOUT.as_secs();
    let unix = |path: &str| Docker::connect_with_unix(path, secs, version).map_err(unreachable);
    let mut bridge = None;
    // The client, and where it sends its requests (for the raw inspect).
    let (docker, socket) = match &endpoint.address {
        Address::Unix { path } => (unix(&path.to_string_lossy())?, Socket::Unix(path.clone())),
        Address::Tcp { host, port } => {
            let address = authority(host, *port);
            // A name that does not resolve deserves its own message, not a
            // question about whether the daemon runs.
            if let Err(e) = tokio::net::lookup_host(&address).await {
                return Err(fail(Failure::Resolve(e)));
            }
            let docker = Docker::connect_with_http(&format!("tcp://{address}"), secs, version)
                .map_err(unreachable)?;
            (docker, Socket::Tcp(address))
        }
        Address::TcpTls { host, port, tls } => {
            let name = tls::server_name(host).map_err(|e| fail(Failure::Tls(e)))?;
            let config = tls::client_config(tls).map_err(|e| fail(Failure::Tls(e)))?;
            let upstream = Upstream::Tls {
                host: host.clone(),
                port: *port,
                name,
                config,
            };
            let started = Bridge::start(upstream).map_err(|e| fail(Failure::Bridge(e)))?;
            let docker = unix(&started.socket().to_string_lossy())?;
            let socket = Socket::Unix(started.socket().to_owned());
            bridge = Some(started);
            (docker, socket)
        }
        Address::Ssh { user, host, port } => {
            let args = ssh_args(user.as_deref(), host, *port);
            let started =
                Bridge::start(Upstream::Ssh { args }).map_err(|e| fail(Failure::Bridge(e)))?;
            let docker = unix(&started.socket().to_string_lossy())?;
            let socket = Socket::Unix(started.socket().to_owned());
            bridge = Some(started);
            (docker, socket)
        }
    };
    let version_in_paths = Arc::new(RwLock::new(
        pinned.as_ref().map(|v| (v.major_version, v.minor_version)),
    ));
    let modifier = {
        let version = version_in_paths.clone();
        move |request| with_version(request, *version.read().expect("version lock"))
    };
    let docker = docker.with_request_modifier(modifier);
    let handshake = async {
        let docker = if pinned.is_some() {
            docker.ping().await.map(|_| docker)?
        } else {
            docker.negotiate_version().await?
        };
        let agreed = docker.client_version();
        *version_in_paths.write().expect("version lock") =
            Some((agreed.major_version, agreed.minor_version));
        Ok::<_, bollard::errors::Error>(docker)
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, handshake).await {
        Ok(Ok(docker)) => {
            let agreed = docker.client_version();
            let version = (agreed.major_version, agreed.minor_version);
            Ok(Connection {
                inspect_json: InspectJson::new(socket, version, REQUEST_TIMEOUT),
                docker,
                _bridge: bridge,
            })
        }
        // Through a bridge, the reason it could not carry the connection
        // beats the client's "connection closed".
        Ok(Err(error)) => match bridge.as_ref().and_then(Bridge::failure) {
            Some(dial) => Err(fail(Failure::Dial(dial))),
            None => Err(unreachable(error)),
        },
        Err(_) => Err(fail(Failure::TimedOut)),
    }
}

/// The arguments of `ssh` that open a `docker system dial-stdio` stream to
/// an ssh endpoint, as the docker CLI runs it: the user's ssh config, keys
/// and agent apply.
fn ssh_args(user: Option<&str>, host: &str, port: Option<u16>) -> Vec<String> {
    let mut args = vec![
        "-o".to_owned(),
        format!("ConnectTimeout={}", CONNECT_TIMEOUT.as_secs()),
        "-T".to_owned(),
    ];
    if let Some(user) = user {
        args.extend(["-l".to_owned(), user.to_owned()]);
    }
    if let Some(port) = port {
        args.extend(["-p".to_owned(), port.to_string()]);
    }
    args.extend(
        ["--", host, "docker", "system", "dial-stdio"]
            .iter()
            .map(|a| a.to_string()),
    );
    args
}

/// What to tell the user about a connection that failed, from the kind of
/// the system error underneath (never from its text).
fn why_unreachable(error: &bollard::errors::Error) -> &'static str {
    const NO_SOCKET: &str = "no socket there; is the daemon running, and is that its address?";
    let mut cause: Option<&(dyn std::error::Error + 'static)> = match error {
        bollard::errors::Error::SocketNotFoundError(_) => return NO_SOCKET,
        // Transparent: its own source() skips the I/O error it wraps.
        bollard::errors::Error::IOError { err } => Some(err),
        other => Some(other),
    };
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::NotFound => return NO_SOCKET,
                std::io::ErrorKind::ConnectionRefused => {
                    return "nothing listens there; is the daemon running, and is that its address?"
                }
                std::io::ErrorKind::PermissionDenied => {
                    return "permission denied; add your user to the docker group, or run as root"
                }
                _ => {}
            }
        }
        cause = e.source();
    }
    "is the daemon running, and may you use it?"
}

/// Puts the API version in the request's path, `/v1.41/images/…`, as the
/// docker CLI does. The client library builds its URLs without it (its
/// version prefix is lost when the path is joined), and an engine then
/// answers in its own newest API version, whatever was agreed or pinned.
fn with_version(request: BollardRequest, version: Option<(usize, usize)>) -> BollardRequest {
    let Some((major, minor)) = version else {
        return request; // still negotiating: /_ping and /version need none
    };
    super::rewrite_path(request, |pq| {
        (!pq.path().starts_with("/v1.")).then(|| format!("/v{major}.{minor}{}", pq.as_str()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_endpoints_become_ssh_arguments() {
        let args = ssh_args(None, "h", None);
        assert_eq!(
            args[args.len() - 5..],
            ["--", "h", "docker", "system", "dial-stdio"]
        );
        assert!(!args.contains(&"-l".to_owned()) && !args.contains(&"-p".to_owned()));
        let joined = ssh_args(Some("me"), "h", Some(2222)).join(" ");
        assert!(joined.contains("-T -l me -p 2222 -- h docker"), "{joined}");
        let joined = ssh_args(None, "::1", Some(22)).join(" ");
        assert!(joined.contains("-p 22 -- ::1 docker"), "{joined}");
    }

    fn path_with(version: Option<(usize, usize)>, uri: &str) -> String {
        let body = bollard::body_stream(futures_util::stream::empty());
        let request = http::Request::get(uri).body(body).unwrap();
        with_version(request, version).uri().to_string()
    }

    #[test]
    fn requests_carry_the_agreed_version_once() {
        let uri = "http://localhost/images/app:1/json?x=1";
        assert_eq!(path_with(None, uri), uri);
        assert_eq!(
            path_with(Some((1, 41)), uri),
            "http://localhost/v1.41/images/app:1/json?x=1"
        );
        let versioned = "http://localhost/v1.45/_ping";
        assert_eq!(path_with(Some((1, 41)), versioned), versioned);
    }

    #[test]
    fn unreachable_reasons_come_from_the_error_kind() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let error = bollard::errors::Error::from(refused);
        assert!(why_unreachable(&error).starts_with("nothing listens there"));
        let missing = bollard::errors::Error::SocketNotFoundError("/x".into());
        assert!(why_unreachable(&missing).starts_with("no socket there"));
    }

    #[test]
    fn every_error_names_the_endpoint_once_and_says_its_cause_once() {
        let io = || std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let endpoint = "tcp://h:1 (context \"default\")";
        for failure in [
            Failure::Tls(TlsError::NoRoots),
            Failure::Bridge(io()),
            Failure::Dial(DialError::Tcp {
                addr: "h:1".into(),
                error: io(),
            }),
            Failure::Unreachable {
                why: "why",
                error: bollard::errors::Error::from(io()),
            },
            Failure::Resolve(io()),
            Failure::TimedOut,
        ] {
            let err = ConnectError {
                endpoint: endpoint.into(),
                failure,
            };
            crate::output::assert_causes_said_once(&err);
            assert_eq!(err.to_string().matches(endpoint).count(), 1, "{err}");
        }
    }
}
