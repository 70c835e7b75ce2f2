//! Which engine to talk to, chosen the way the docker CLI chooses it.
//!
//! The CLI does not tell a plugin which engine it uses: it passes its global
//! flags through argv and sets neither `DOCKER_HOST` nor `DOCKER_CONTEXT`.
//! So we repeat its resolution: `--context`, else `-H`/`DOCKER_HOST` (the
//! `default` context), else `DOCKER_CONTEXT`, else `currentContext` from the
//! config file, else `default`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::{ClientVersion, Docker, API_DEFAULT_VERSION};
use sha2::{Digest, Sha256};

use crate::cli::GlobalArgs;

/// The socket every engine listens on by default.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";
const DEFAULT_CONTEXT: &str = "default";

/// Requests such as an import last as long as the upload; the engine, not a
/// client-side clock, decides when they fail.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long to wait for the first answer before calling the engine unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

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
    #[error("{scheme} endpoints are not supported yet: {host}")]
    Unsupported { scheme: &'static str, host: String },
    #[error("invalid engine address \"{0}\": expected unix://PATH or tcp://HOST:PORT")]
    BadHost(String),
    #[error("cannot connect to the Docker engine at {endpoint}: is the daemon running, and may you use it?")]
    Unreachable {
        endpoint: String,
        source: bollard::errors::Error,
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
        let tls = (globals.tls || verify).then(|| {
            let cert_dir = env
                .docker_cert_path
                .clone()
                .unwrap_or_else(|| config_dir.clone());
            let pick = |flag: &Option<PathBuf>, file: &str| {
                flag.clone()
                    .or_else(|| Some(cert_dir.join(file)).filter(|p| p.exists()))
            };
            Tls {
                verify,
                ca: pick(&globals.tlscacert, "ca.pem"),
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

/// Opens a client for the endpoint and checks that the engine answers,
/// agreeing on an API version unless `DOCKER_API_VERSION` fixes one.
pub async fn connect(endpoint: &Endpoint) -> Result<Docker, EndpointError> {
    let pinned = client_version(endpoint)?;
    let version = pinned.as_ref().unwrap_or(API_DEFAULT_VERSION);
    let secs = REQUEST_TIMEOUT.as_secs();
    let host = endpoint.host.as_str();
    let unreachable = |source| EndpointError::Unreachable {
        endpoint: endpoint.to_string(),
        source,
    };
    let docker = if let Some(path) = host.strip_prefix("unix://") {
        Docker::connect_with_unix(path, secs, version).map_err(unreachable)?
    } else if host.starts_with("tcp://") || host.starts_with("http://") {
        if endpoint.tls.is_some() {
            return Err(EndpointError::Unsupported {
                scheme: "TLS",
                host: host.to_owned(),
            });
        }
        Docker::connect_with_http(host, secs, version).map_err(unreachable)?
    } else if host.starts_with("ssh://") {
        return Err(EndpointError::Unsupported {
            scheme: "ssh",
            host: host.to_owned(),
        });
    } else {
        return Err(EndpointError::BadHost(host.to_owned()));
    };
    let handshake = async {
        if pinned.is_some() {
            docker.ping().await.map(|_| docker)
        } else {
            docker.negotiate_version().await
        }
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, handshake).await {
        Ok(result) => result.map_err(unreachable),
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
    fn api_version_parses() {
        let mut e = resolve(&globals(), &Env::default()).unwrap();
        e.api_version = Some("1.41".into());
        let v = client_version(&e).unwrap().unwrap();
        assert_eq!((v.major_version, v.minor_version), (1, 41));
        e.api_version = Some("latest".into());
        assert!(client_version(&e).is_err());
    }
}
