//! Which engine to talk to, chosen the way the docker CLI chooses it.
//!
//! The CLI does not tell a plugin which engine it uses: it passes its global
//! flags through argv and sets neither `DOCKER_HOST` nor `DOCKER_CONTEXT`.
//! So we repeat its resolution: `--context`, else `-H`/`DOCKER_HOST` (the
//! `default` context), else `DOCKER_CONTEXT`, else `currentContext` from the
//! config file, else `default`.
//!
//! A `unix://` or plain `tcp://` engine is reached directly. An engine
//! behind TLS (`tcp://` with `--tls`/`--tlsverify`/`DOCKER_TLS_VERIFY` or a
//! context's TLS material) or ssh (`ssh://[user@]host[:port]`) is reached
//! through a [`Bridge`]: a private local socket whose connections are
//! carried over TLS, or through `ssh … docker system dial-stdio`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bollard::{BollardRequest, ClientVersion, Docker, API_DEFAULT_VERSION};
use sha2::{Digest, Sha256};

use crate::bridge::{Bridge, DialError, Upstream};
use crate::cli::GlobalArgs;
use crate::inspect_json::InspectJson;
use crate::tls::{self, TlsError};

/// The socket every engine listens on by default.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";
const DEFAULT_CONTEXT: &str = "default";

/// Requests such as an import last as long as the upload; the engine, not a
/// client-side clock, decides when they fail.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long to wait for the first answer before calling the engine unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// The engine's port for TLS when a `tcp://` host names none.
const TLS_PORT: u16 = 2376;
/// The engine's port for plain TCP when a `tcp://` host names none.
const TCP_PORT: u16 = 2375;

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("conflicting options: cannot specify both --host and --context")]
    HostAndContext,
    #[error("specify only one -H")]
    SeveralHosts,
    #[error("cannot read the docker config file {path}")]
    Config {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the docker config file {path} is not valid JSON")]
    ConfigJson {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("context \"{name}\" does not exist (looked in {path})")]
    NoSuchContext { name: String, path: PathBuf },
    #[error("context \"{name}\" has no docker endpoint ({path})")]
    ContextWithoutDocker { name: String, path: PathBuf },
    #[error("invalid DOCKER_API_VERSION \"{0}\": expected MAJOR.MINOR, e.g. 1.41")]
    ApiVersion(String),
    #[error(
        "invalid engine address \"{0}\": expected unix://PATH, tcp://HOST:PORT or ssh://[USER@]HOST[:PORT]"
    )]
    BadHost(String),
    #[error("invalid ssh endpoint \"{host}\": {why}; expected ssh://[USER@]HOST[:PORT]")]
    BadSsh { host: String, why: &'static str },
    #[error("cannot set up TLS for the Docker engine at {endpoint}: {source}")]
    Tls { endpoint: String, source: TlsError },
    #[error("cannot open a local socket to reach the Docker engine at {endpoint}: {source}")]
    Bridge {
        endpoint: String,
        source: std::io::Error,
    },
    #[error("cannot connect to the Docker engine at {endpoint}: {source}")]
    Dial { endpoint: String, source: DialError },
    #[error("cannot connect to the Docker engine at {endpoint}: {why}")]
    Unreachable {
        endpoint: String,
        why: &'static str,
        source: bollard::errors::Error,
    },
    #[error("cannot resolve the host name of the Docker engine at {endpoint}: {source}; check the address")]
    Resolve {
        endpoint: String,
        source: std::io::Error,
    },
    #[error("no answer from the Docker engine at {endpoint} within {}s", CONNECT_TIMEOUT.as_secs())]
    TimedOut { endpoint: String },
}

/// The environment variables resolution depends on, captured once so the
/// logic can be tested without touching the process environment.
#[derive(Debug, Default, Clone)]
pub struct Env {
    pub docker_host: Option<String>,
    pub docker_context: Option<String>,
    pub docker_config: Option<PathBuf>,
    pub docker_tls_verify: Option<String>,
    pub docker_cert_path: Option<PathBuf>,
    pub docker_api_version: Option<String>,
    pub home: Option<PathBuf>,
}

impl Env {
    pub fn from_process() -> Env {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Env {
            docker_host: var("DOCKER_HOST"),
            docker_context: var("DOCKER_CONTEXT"),
            docker_config: var("DOCKER_CONFIG").map(PathBuf::from),
            docker_tls_verify: var("DOCKER_TLS_VERIFY"),
            docker_cert_path: var("DOCKER_CERT_PATH").map(PathBuf::from),
            docker_api_version: var("DOCKER_API_VERSION"),
            home: std::env::var_os("HOME").map(PathBuf::from),
        }
    }
}

/// TLS material for a TCP endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub verify: bool,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// The engine chosen for this run and how it was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub context: String,
    pub tls: Option<Tls>,
    pub api_version: Option<String>,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (context \"{}\")", self.host, self.context)
    }
}

/// Where `--tlsverify` finds `ca.pem`, `cert.pem` and `key.pem`:
/// `DOCKER_CERT_PATH`, else the config directory as the CLI knows it before
/// it parses flags (`DOCKER_CONFIG`, else `~/.docker`; not `--config`).
fn cert_dir(env: &Env) -> PathBuf {
    env.docker_cert_path
        .clone()
        .or_else(|| env.docker_config.clone())
        .unwrap_or_else(|| env.home.clone().unwrap_or_default().join(".docker"))
}

/// The config directory: `--config`, else `DOCKER_CONFIG`, else `~/.docker`.
pub fn config_dir(globals: &GlobalArgs, env: &Env) -> PathBuf {
    globals
        .config
        .clone()
        .or_else(|| env.docker_config.clone())
        .unwrap_or_else(|| env.home.clone().unwrap_or_default().join(".docker"))
}

/// Resolves the endpoint as the docker CLI would for the same flags and environment.
pub fn resolve(globals: &GlobalArgs, env: &Env) -> Result<Endpoint, EndpointError> {
    if globals.context.is_some() && !globals.host.is_empty() {
        return Err(EndpointError::HostAndContext);
    }
    if globals.host.len() > 1 {
        return Err(EndpointError::SeveralHosts);
    }
    let config_dir = config_dir(globals, env);
    let context = if let Some(name) = &globals.context {
        name.clone()
    } else if !globals.host.is_empty() || env.docker_host.is_some() {
        DEFAULT_CONTEXT.to_owned()
    } else if let Some(name) = &env.docker_context {
        name.clone()
    } else {
        current_context(&config_dir)?.unwrap_or_else(|| DEFAULT_CONTEXT.to_owned())
    };
    let api_version = env.docker_api_version.clone();
    if context == DEFAULT_CONTEXT {
        let host = globals
            .host
            .first()
            .cloned()
            .or_else(|| env.docker_host.clone())
            .unwrap_or_else(|| DEFAULT_HOST.to_owned());
        let verify = globals.tlsverify.unwrap_or(env.docker_tls_verify.is_some());
        // Like the CLI: giving --tlsverify at all, even =false, turns TLS on.
        let tls = (globals.tls || globals.tlsverify.is_some() || verify).then(|| {
            let cert_dir = cert_dir(env);
            let pick = |flag: &Option<PathBuf>, file: &str| {
                flag.clone()
                    .or_else(|| Some(cert_dir.join(file)).filter(|p| p.exists()))
            };
            Tls {
                verify,
                // Verifying needs the CA: a missing default ca.pem is an
                // error then (as in the CLI), not a silent fallback.
                ca: match verify {
                    true => Some(globals.tlscacert.clone().unwrap_or(cert_dir.join("ca.pem"))),
                    false => pick(&globals.tlscacert, "ca.pem"),
                },
                cert: pick(&globals.tlscert, "cert.pem"),
                key: pick(&globals.tlskey, "key.pem"),
            }
        });
        return Ok(Endpoint {
            host,
            context,
            tls,
            api_version,
        });
    }
    named_context(&config_dir, &context, api_version)
}

fn current_context(config_dir: &Path) -> Result<Option<String>, EndpointError> {
    let path = config_dir.join("config.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(EndpointError::Config { path, source }),
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| EndpointError::ConfigJson {
            path: path.clone(),
            source,
        })?;
    Ok(value["currentContext"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned))
}

fn named_context(
    config_dir: &Path,
    name: &str,
    api_version: Option<String>,
) -> Result<Endpoint, EndpointError> {
    let id = format!("{:x}", Sha256::digest(name.as_bytes()));
    let path = config_dir
        .join("contexts")
        .join("meta")
        .join(&id)
        .join("meta.json");
    let text = std::fs::read_to_string(&path).map_err(|_| EndpointError::NoSuchContext {
        name: name.to_owned(),
        path: path.clone(),
    })?;
    let meta: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| EndpointError::ConfigJson {
            path: path.clone(),
            source,
        })?;
    let docker = &meta["Endpoints"]["docker"];
    let Some(host) = docker["Host"].as_str().filter(|h| !h.is_empty()) else {
        return Err(EndpointError::ContextWithoutDocker {
            name: name.to_owned(),
            path,
        });
    };
    let tls_dir = config_dir
        .join("contexts")
        .join("tls")
        .join(&id)
        .join("docker");
    let file = |f: &str| Some(tls_dir.join(f)).filter(|p| p.exists());
    let (ca, cert, key) = (file("ca.pem"), file("cert.pem"), file("key.pem"));
    let skip_verify = docker["SkipTLSVerify"].as_bool().unwrap_or(false);
    let tls = (ca.is_some() || cert.is_some() || skip_verify).then_some(Tls {
        verify: !skip_verify,
        ca,
        cert,
        key,
    });
    Ok(Endpoint {
        host: host.to_owned(),
        context: name.to_owned(),
        tls,
        api_version,
    })
}

fn client_version(endpoint: &Endpoint) -> Result<Option<ClientVersion>, EndpointError> {
    let Some(text) = &endpoint.api_version else {
        return Ok(None);
    };
    let bad = || EndpointError::ApiVersion(text.clone());
    let (major, minor) = text.split_once('.').ok_or_else(bad)?;
    Ok(Some(ClientVersion {
        major_version: major.parse().map_err(|_| bad())?,
        minor_version: minor.parse().map_err(|_| bad())?,
    }))
}

/// A client for the engine, and the bridge it goes through if any (the
/// bridge stops when this is dropped).
pub struct Connection {
    pub docker: Docker,
    /// The same engine, for inspect documents the client library would cut.
    pub inspect_json: InspectJson,
    _bridge: Option<Bridge>,
}

/// What to tell the user about a connection that failed, from the kind of
/// the system error underneath (never from its text).
fn why_unreachable(error: &bollard::errors::Error) -> &'static str {
    const NO_SOCKET: &str = "no socket there; is the daemon running, and is that its address?";
    if let bollard::errors::Error::SocketNotFoundError(_) = error {
        return NO_SOCKET;
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
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
    let (mut parts, body) = request.into_parts();
    let mut uri = parts.uri.clone().into_parts();
    let rewritten = uri.path_and_query.as_ref().and_then(|pq| {
        if pq.path().starts_with("/v1.") {
            return None;
        }
        format!("/v{major}.{minor}{}", pq.as_str()).parse().ok()
    });
    if let Some(pq) = rewritten {
        uri.path_and_query = Some(pq);
        if let Ok(uri) = http::Uri::from_parts(uri) {
            parts.uri = uri;
        }
    }
    BollardRequest::from_parts(parts, body)
}

/// `HOST` and `PORT` of `HOST[:PORT][/]`, `HOST` possibly a bracketed IPv6
/// address (brackets kept).
fn host_and_port(authority: &str, default_port: u16) -> Option<(String, u16)> {
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
        return None;
    }
    let (host, port) = if authority.starts_with('[') {
        let close = authority.find(']')?;
        match &authority[close + 1..] {
            "" => (&authority[..=close], None),
            rest => (&authority[..=close], Some(rest.strip_prefix(':')?)),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(port) => port.parse().ok().filter(|p| *p != 0)?,
        None => default_port,
    };
    (!host.is_empty()).then(|| (host.to_owned(), port))
}

/// The arguments of `ssh` that open a `docker system dial-stdio` stream to
/// an `ssh://[user@]host[:port]` endpoint, as the docker CLI runs it: the
/// user's ssh config, keys and agent apply.
pub fn ssh_args(host: &str) -> Result<Vec<String>, EndpointError> {
    let bad = |why| EndpointError::BadSsh {
        host: host.to_owned(),
        why,
    };
    let rest = host
        .strip_prefix("ssh://")
        .ok_or_else(|| bad("not ssh://"))?;
    let (user, authority) = match rest.rsplit_once('@') {
        Some((user, authority)) => (Some(user), authority),
        None => (None, rest),
    };
    if user.is_some_and(|u| u.is_empty() || u.contains(':')) {
        return Err(bad("a user must be a plain name (no password)"));
    }
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    if authority.contains(['/', '?', '#']) {
        return Err(bad("a path, query or fragment is not allowed"));
    }
    // Port 0 stands for "none given": ssh then takes it from its config.
    let (name, port) = host_and_port(authority, 0).ok_or_else(|| bad("no host, or a bad port"))?;
    let mut args = vec![
        "-o".to_owned(),
        format!("ConnectTimeout={}", CONNECT_TIMEOUT.as_secs()),
        "-T".to_owned(),
    ];
    if let Some(user) = user {
        args.extend(["-l".to_owned(), user.to_owned()]);
    }
    if port != 0 {
        args.extend(["-p".to_owned(), port.to_string()]);
    }
    let name = name.trim_start_matches('[').trim_end_matches(']');
    args.extend(
        ["--", name, "docker", "system", "dial-stdio"]
            .iter()
            .map(|a| a.to_string()),
    );
    Ok(args)
}

/// Where the bridge for this endpoint carries connections, if it needs one.
fn upstream(endpoint: &Endpoint) -> Result<Option<Upstream>, EndpointError> {
    let host = endpoint.host.as_str();
    if host.starts_with("ssh://") {
        return Ok(Some(Upstream::Ssh {
            args: ssh_args(host)?,
        }));
    }
    let (Some(tls), Some(authority)) = (&endpoint.tls, host.strip_prefix("tcp://")) else {
        return Ok(None);
    };
    let bad = || EndpointError::BadHost(host.to_owned());
    let (name, port) = host_and_port(authority, TLS_PORT).ok_or_else(bad)?;
    let server_name = tls::server_name(&name).ok_or_else(bad)?;
    let config = tls::client_config(tls).map_err(|source| EndpointError::Tls {
        endpoint: endpoint.to_string(),
        source,
    })?;
    Ok(Some(Upstream::Tls {
        host: name,
        port,
        name: server_name,
        config,
    }))
}

/// Opens a client for the endpoint and checks that the engine answers,
/// agreeing on an API version unless `DOCKER_API_VERSION` fixes one.
pub async fn connect(endpoint: &Endpoint) -> Result<Connection, EndpointError> {
    let pinned = client_version(endpoint)?;
    let version = pinned.as_ref().unwrap_or(API_DEFAULT_VERSION);
    let secs = REQUEST_TIMEOUT.as_secs();
    let host = endpoint.host.as_str();
    let unreachable = |source: bollard::errors::Error| EndpointError::Unreachable {
        endpoint: endpoint.to_string(),
        why: why_unreachable(&source),
        source,
    };
    let mut bridge = None;
    let docker = if let Some(upstream) = upstream(endpoint)? {
        let started = Bridge::start(upstream).map_err(|source| EndpointError::Bridge {
            endpoint: endpoint.to_string(),
            source,
        })?;
        let socket = started.socket().to_string_lossy().into_owned();
        bridge = Some(started);
        Docker::connect_with_unix(&socket, secs, version).map_err(unreachable)?
    } else if let Some(path) = host.strip_prefix("unix://") {
        Docker::connect_with_unix(path, secs, version).map_err(unreachable)?
    } else if let Some(authority) = host
        .strip_prefix("tcp://")
        .or_else(|| host.strip_prefix("http://"))
    {
        let (name, port) = host_and_port(authority, TCP_PORT)
            .ok_or_else(|| EndpointError::BadHost(host.to_owned()))?;
        // A name that does not resolve deserves its own message, not a
        // question about whether the daemon runs.
        if let Err(source) = tokio::net::lookup_host(format!("{name}:{port}")).await {
            return Err(EndpointError::Resolve {
                endpoint: endpoint.to_string(),
                source,
            });
        }
        let address = format!("tcp://{name}:{port}");
        Docker::connect_with_http(&address, secs, version).map_err(unreachable)?
    } else {
        return Err(EndpointError::BadHost(host.to_owned()));
    };
    let version_in_paths = Arc::new(RwLock::new(
        pinned.as_ref().map(|v| (v.major_version, v.minor_version)),
    ));
    let modifier = {
        let version = version_in_paths.clone();
        move |request| with_version(request, *version.read().expect("version lock"))
    };
    let inspect_json = InspectJson::new(docker.clone(), modifier.clone());
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
        Ok(Ok(docker)) => Ok(Connection {
            docker,
            inspect_json,
            _bridge: bridge,
        }),
        Ok(Err(source)) => match bridge.as_ref().and_then(Bridge::failure) {
            Some(source) => Err(EndpointError::Dial {
                endpoint: endpoint.to_string(),
                source,
            }),
            None => Err(unreachable(source)),
        },
        Err(_) => Err(EndpointError::TimedOut {
            endpoint: endpoint.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn globals() -> GlobalArgs {
        GlobalArgs::default()
    }

    fn write_context(dir: &Path, name: &str, host: &str, skip_verify: bool) {
        let id = format!("{:x}", Sha256::digest(name.as_bytes()));
        let meta = dir.join("contexts/meta").join(id);
        std::fs::create_dir_all(&meta).unwrap();
        let json = serde_json::json!({
            "Name": name, "Metadata": {},
            "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": skip_verify}}
        });
        std::fs::write(meta.join("meta.json"), json.to_string()).unwrap();
    }

    #[test]
    fn default_is_the_local_socket() {
        let env = Env {
            home: Some("/nonexistent-home".into()),
            ..Env::default()
        };
        let e = resolve(&globals(), &env).unwrap();
        assert_eq!(
            (e.host.as_str(), e.context.as_str(), e.tls),
            (DEFAULT_HOST, "default", None)
        );
    }

    #[test]
    fn host_flag_beats_docker_host_and_context_env() {
        let mut g = globals();
        g.host = vec!["tcp://flag:1".into()];
        let env = Env {
            docker_host: Some("tcp://env:2".into()),
            docker_context: Some("nope".into()),
            ..Env::default()
        };
        assert_eq!(resolve(&g, &env).unwrap().host, "tcp://flag:1");
        assert_eq!(resolve(&globals(), &env).unwrap().host, "tcp://env:2");
    }

    #[test]
    fn context_and_host_conflict() {
        let mut g = globals();
        g.host = vec!["tcp://a:1".into()];
        g.context = Some("x".into());
        assert!(matches!(
            resolve(&g, &Env::default()),
            Err(EndpointError::HostAndContext)
        ));
    }

    #[test]
    fn contexts_come_from_flag_env_then_config_file() {
        let dir = tempfile::tempdir().unwrap();
        write_context(dir.path(), "flag", "tcp://flag:1", false);
        write_context(dir.path(), "env", "tcp://env:2", false);
        write_context(dir.path(), "current", "unix:///current.sock", false);
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"currentContext":"current"}"#,
        )
        .unwrap();
        let mut g = globals();
        g.config = Some(dir.path().to_owned());
        assert_eq!(
            resolve(&g, &Env::default()).unwrap().host,
            "unix:///current.sock"
        );
        let env = Env {
            docker_context: Some("env".into()),
            ..Env::default()
        };
        assert_eq!(resolve(&g, &env).unwrap().host, "tcp://env:2");
        g.context = Some("flag".into());
        let e = resolve(&g, &env).unwrap();
        assert_eq!(
            (e.host.as_str(), e.context.as_str()),
            ("tcp://flag:1", "flag")
        );
        g.context = Some("missing".into());
        assert!(matches!(
            resolve(&g, &env),
            Err(EndpointError::NoSuchContext { .. })
        ));
    }

    #[test]
    fn tls_flags_and_env() {
        let mut g = globals();
        g.tls = true;
        let e = resolve(
            &g,
            &Env {
                home: Some("/nowhere".into()),
                ..Env::default()
            },
        )
        .unwrap();
        assert_eq!(
            e.tls,
            Some(Tls {
                verify: false,
                ca: None,
                cert: None,
                key: None
            })
        );
        let env = Env {
            docker_tls_verify: Some("1".into()),
            ..Env::default()
        };
        assert!(resolve(&globals(), &env).unwrap().tls.unwrap().verify);
    }

    #[test]
    fn tls_defaults_come_from_the_cert_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cert.pem"), "").unwrap();
        let env = Env {
            docker_tls_verify: Some("1".into()),
            docker_cert_path: Some(dir.path().to_owned()),
            ..Env::default()
        };
        let tls = resolve(&globals(), &env).unwrap().tls.unwrap();
        // The CA is required when verifying; client files only when present.
        assert_eq!(tls.ca, Some(dir.path().join("ca.pem")));
        assert_eq!(tls.cert, Some(dir.path().join("cert.pem")));
        assert_eq!(tls.key, None);
        // --tlsverify=false still turns TLS on, without verification.
        let mut g = globals();
        g.tlsverify = Some(false);
        let tls = resolve(&g, &env).unwrap().tls.unwrap();
        assert!(!tls.verify);
    }

    #[test]
    fn context_tls_material_and_skip_verify() {
        let dir = tempfile::tempdir().unwrap();
        write_context(dir.path(), "secure", "tcp://h:2376", false);
        write_context(dir.path(), "skip", "tcp://h:2376", true);
        let id = format!("{:x}", Sha256::digest(b"secure"));
        let tls_dir = dir.path().join("contexts/tls").join(id).join("docker");
        std::fs::create_dir_all(&tls_dir).unwrap();
        for f in ["ca.pem", "cert.pem", "key.pem"] {
            std::fs::write(tls_dir.join(f), "").unwrap();
        }
        let mut g = globals();
        g.config = Some(dir.path().to_owned());
        g.context = Some("secure".into());
        let tls = resolve(&g, &Env::default()).unwrap().tls.unwrap();
        assert!(tls.verify);
        assert_eq!(tls.key, Some(tls_dir.join("key.pem")));
        g.context = Some("skip".into());
        let tls = resolve(&g, &Env::default()).unwrap().tls.unwrap();
        assert!(!tls.verify && tls.ca.is_none());
    }

    #[test]
    fn ssh_endpoints_become_ssh_arguments() {
        let tail = ["--", "h", "docker", "system", "dial-stdio"];
        let args = ssh_args("ssh://h").unwrap();
        assert_eq!(args[args.len() - 5..], tail);
        assert!(!args.contains(&"-l".to_owned()) && !args.contains(&"-p".to_owned()));
        let args = ssh_args("ssh://me@h:2222/").unwrap();
        let joined = args.join(" ");
        assert!(joined.contains("-l me -p 2222 -- h docker"), "{joined}");
        let args = ssh_args("ssh://[::1]:22").unwrap();
        assert!(args.join(" ").contains("-p 22 -- ::1 docker"));
        for bad in [
            "ssh://",
            "ssh://me:pw@h",
            "ssh://h/var/run/docker.sock",
            "ssh://h:x",
            "ssh://h:0",
            "ssh://@h",
        ] {
            assert!(
                matches!(ssh_args(bad), Err(EndpointError::BadSsh { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn tcp_hosts_get_default_ports() {
        assert_eq!(
            host_and_port("h", TLS_PORT),
            Some(("h".to_owned(), TLS_PORT))
        );
        assert_eq!(host_and_port("h:1/", 9), Some(("h".to_owned(), 1)));
        assert_eq!(host_and_port("[::1]:5", 9), Some(("[::1]".to_owned(), 5)));
        assert_eq!(host_and_port("[::1]", 9), Some(("[::1]".to_owned(), 9)));
        assert_eq!(host_and_port("h:99999", 9), None);
        assert_eq!(host_and_port(":1", 9), None);
    }

    #[test]
    fn api_version_parses() {
        let mut e = resolve(&globals(), &Env::default()).unwrap();
        e.api_version = Some("1.41".into());
        let v = client_version(&e).unwrap().unwrap();
        assert_eq!((v.major_version, v.minor_version), (1, 41));
        e.api_version = Some("latest".into());
        assert!(client_version(&e).is_err());
    }
}
