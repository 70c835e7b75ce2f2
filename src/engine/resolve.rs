//! Which engine to talk to, chosen the way the docker CLI chooses it. Pure:
//! flags, environment and the files of the config directory in, an
//! [`Endpoint`] out; nothing here opens a connection.
//!
//! The CLI does not tell a plugin which engine it uses: it passes its global
//! flags through argv and sets neither `DOCKER_HOST` nor `DOCKER_CONTEXT`.
//! So we repeat its resolution: `--context`, else `-H`/`DOCKER_HOST` (the
//! `default` context), else `DOCKER_CONTEXT`, else `currentContext` from the
//! config file, else `default`. The host is parsed once, here, into an
//! [`Address`]; the connection dispatches on that. Over half of this file
//! is its unit tests: each way the CLI resolves, and each kind of host.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::os::local::{self, DEFAULT_HOST, EXPECTED};

/// What `unix://` (`npipe://` on Windows) alone names, as in the CLI.
const DEFAULT_SOCKET: &str = local::DEFAULT_PATH;
/// What `tcp://` without a host names, as in the CLI.
const DEFAULT_TCP_HOST: &str = "localhost";
const DEFAULT_CONTEXT: &str = "default";
/// The engine's port for TLS when a `tcp://` host names none.
const TLS_PORT: u16 = 2376;
/// The engine's port for plain TCP when a `tcp://` host names none.
const TCP_PORT: u16 = 2375;

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("conflicting options: cannot specify both --host and --context; give one of them")]
    HostAndContext,
    #[error("specify only one -H")]
    SeveralHosts,
    #[error(
        "cannot read the docker config file {}: {error}; fix its permissions, \
         or point --config or DOCKER_CONFIG at another directory",
        path.display()
    )]
    Config {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("the docker config file {} is not valid JSON ({error}); fix or remove it", path.display())]
    ConfigJson {
        path: PathBuf,
        error: serde_json::Error,
    },
    #[error(
        "context \"{name}\" does not exist (looked in {}); `docker context ls` lists the contexts",
        path.display()
    )]
    NoSuchContext { name: String, path: PathBuf },
    #[error(
        "context \"{name}\" is damaged: {} is not valid JSON ({error}); \
         remove it (docker context rm {name}) and create it again",
        path.display()
    )]
    ContextJson {
        name: String,
        path: PathBuf,
        error: serde_json::Error,
    },
    #[error(
        "context \"{name}\" has no docker endpoint ({}); \
         give it one: docker context update --docker host=… {name}",
        path.display()
    )]
    ContextWithoutDocker { name: String, path: PathBuf },
    #[error("invalid DOCKER_API_VERSION \"{0}\": expected MAJOR.MINOR, e.g. 1.41")]
    ApiVersion(String),
    #[error("invalid engine address \"{host}\" (context \"{context}\"): {why}")]
    BadHost {
        host: String,
        context: String,
        why: String,
    },
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
            home: crate::os::env::home(),
        }
    }
}

/// TLS material for a TCP endpoint: paths, not yet read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub verify: bool,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// How the engine is reached: one variant per kind of endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// `unix://PATH`; `npipe://PATH` on Windows ([`crate::os::local`]).
    Local { path: PathBuf },
    /// `tcp://HOST[:PORT]` without TLS (port 2375 by default).
    Tcp { host: String, port: u16 },
    /// `tcp://HOST[:PORT]` with TLS (port 2376 by default).
    TcpTls { host: String, port: u16, tls: Tls },
    /// `ssh://[USER@]HOST[:PORT]`: `docker system dial-stdio` on HOST.
    Ssh {
        user: Option<String>,
        host: String,
        /// `None`: whatever the user's ssh config says.
        port: Option<u16>,
    },
}

/// The engine chosen for this run and how it was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The address as the user or the context gave it.
    pub host: String,
    pub context: String,
    pub address: Address,
    /// `DOCKER_API_VERSION` as (major, minor); `None`: negotiate.
    pub api_version: Option<(usize, usize)>,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (context \"{}\")", self.host, self.context)
    }
}

/// `HOST:PORT`, an IPv6 address in brackets: what a socket address or a URL takes.
pub fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// What the docker CLI's global flags say of the engine to use: `-H`,
/// `--context`, `--config` and the TLS flags, lowered from the command
/// line ([`crate::cli::job`]).
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub config: Option<PathBuf>,
    pub context: Option<String>,
    pub host: Vec<String>,
    pub tls: bool,
    pub tlsverify: Option<bool>,
    pub tlscacert: Option<PathBuf>,
    pub tlscert: Option<PathBuf>,
    pub tlskey: Option<PathBuf>,
}

/// Resolves the endpoint as the docker CLI would for the same flags and environment.
pub fn resolve(globals: &Selection, env: &Env) -> Result<Endpoint, ResolveError> {
    if globals.context.is_some() && !globals.host.is_empty() {
        return Err(ResolveError::HostAndContext);
    }
    if globals.host.len() > 1 {
        return Err(ResolveError::SeveralHosts);
    }
    let api_version = env
        .docker_api_version
        .as_deref()
        .map(api_version)
        .transpose()?;
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
    let (host, tls) = if context == DEFAULT_CONTEXT {
        let host = globals
            .host
            .first()
            .cloned()
            .or_else(|| env.docker_host.clone())
            .unwrap_or_else(|| DEFAULT_HOST.to_owned());
        (host, default_tls(globals, env))
    } else {
        named_context(&config_dir, &context)?
    };
    let address = parse_address(&host, tls).map_err(|why| ResolveError::BadHost {
        host: host.clone(),
        context: context.clone(),
        why,
    })?;
    Ok(Endpoint {
        host,
        context,
        address,
        api_version,
    })
}

/// The config directory: `--config`, else `DOCKER_CONFIG`, else `~/.docker`.
pub fn config_dir(globals: &Selection, env: &Env) -> PathBuf {
    globals
        .config
        .clone()
        .or_else(|| env.docker_config.clone())
        .unwrap_or_else(|| env.home.clone().unwrap_or_default().join(".docker"))
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

/// The TLS material of the `default` context, from flags and environment.
fn default_tls(globals: &Selection, env: &Env) -> Option<Tls> {
    let verify = globals.tlsverify.unwrap_or(env.docker_tls_verify.is_some());
    // Like the CLI: giving --tlsverify at all, even =false, turns TLS on.
    if !(globals.tls || globals.tlsverify.is_some() || verify) {
        return None;
    }
    let cert_dir = cert_dir(env);
    let pick = |flag: &Option<PathBuf>, file: &str| {
        flag.clone()
            .or_else(|| Some(cert_dir.join(file)).filter(|p| p.exists()))
    };
    Some(Tls {
        verify,
        // Verifying needs the CA: a missing default ca.pem is an error then
        // (as in the CLI), not a silent fallback.
        ca: match verify {
            true => Some(globals.tlscacert.clone().unwrap_or(cert_dir.join("ca.pem"))),
            false => pick(&globals.tlscacert, "ca.pem"),
        },
        cert: pick(&globals.tlscert, "cert.pem"),
        key: pick(&globals.tlskey, "key.pem"),
    })
}

fn api_version(text: &str) -> Result<(usize, usize), ResolveError> {
    let bad = || ResolveError::ApiVersion(text.to_owned());
    let (major, minor) = text.split_once('.').ok_or_else(bad)?;
    Ok((
        major.parse().map_err(|_| bad())?,
        minor.parse().map_err(|_| bad())?,
    ))
}

fn current_context(config_dir: &Path) -> Result<Option<String>, ResolveError> {
    let path = config_dir.join("config.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(ResolveError::Config { path, error }),
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|error| ResolveError::ConfigJson { path, error })?;
    Ok(value["currentContext"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned))
}

/// A named context's host and TLS material, as `docker context create` stores them.
fn named_context(config_dir: &Path, name: &str) -> Result<(String, Option<Tls>), ResolveError> {
    let id = format!("{:x}", Sha256::digest(name.as_bytes()));
    let path = config_dir
        .join("contexts")
        .join("meta")
        .join(&id)
        .join("meta.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Err(ResolveError::NoSuchContext {
            name: name.to_owned(),
            path,
        });
    };
    let meta: serde_json::Value = match serde_json::from_str(&text) {
        Ok(meta) => meta,
        Err(error) => {
            return Err(ResolveError::ContextJson {
                name: name.to_owned(),
                path,
                error,
            })
        }
    };
    let docker = &meta["Endpoints"]["docker"];
    let Some(host) = docker["Host"].as_str().filter(|h| !h.is_empty()) else {
        return Err(ResolveError::ContextWithoutDocker {
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
    Ok((host.to_owned(), tls))
}

/// The one place a host string is taken apart. TLS material applies to a
/// TCP host only, as in the CLI. The error says why, for [`ResolveError::BadHost`].
///
/// The CLI's shorthands mean what they mean there (docker/cli `opts.ParseHost`):
/// a bare `HOST:PORT` is TCP, `tcp://` and `tcp://:PORT` are localhost, an
/// empty port is the default one, and `unix://` is the default socket.
fn parse_address(host: &str, tls: Option<Tls>) -> Result<Address, String> {
    let host = host.trim();
    let (scheme, rest) = match host.split_once("://") {
        Some(parts) => parts,
        None if !host.is_empty() => ("tcp", host),
        None => return Err(EXPECTED.to_owned()),
    };
    match scheme {
        local::SCHEME if !rest.is_empty() => Ok(Address::Local {
            path: PathBuf::from(rest),
        }),
        local::SCHEME => Ok(Address::Local {
            path: PathBuf::from(DEFAULT_SOCKET),
        }),
        "tcp" | "http" => {
            let rest = rest.strip_suffix('/').unwrap_or(rest);
            let rest = match rest {
                "" => DEFAULT_TCP_HOST.to_owned(),
                rest if rest.starts_with(':') => format!("{DEFAULT_TCP_HOST}{rest}"),
                rest => rest.to_owned(),
            };
            let (host, port) = host_and_port(&rest).ok_or_else(|| EXPECTED.to_owned())?;
            Ok(match tls {
                Some(tls) => Address::TcpTls {
                    host,
                    port: port.unwrap_or(TLS_PORT),
                    tls,
                },
                None => Address::Tcp {
                    host,
                    port: port.unwrap_or(TCP_PORT),
                },
            })
        }
        "ssh" => parse_ssh(rest)
            .map_err(|why| format!("{why}; expected ssh://[USER@]HOST[:PORT] (no path)")),
        scheme if scheme == local::FOREIGN.0 => Err(format!("{}; {EXPECTED}", local::FOREIGN.1)),
        _ => Err(EXPECTED.to_owned()),
    }
}

fn parse_ssh(rest: &str) -> Result<Address, &'static str> {
    let (user, authority) = match rest.rsplit_once('@') {
        Some((user, authority)) => (Some(user), authority),
        None => (None, rest),
    };
    if user.is_some_and(|u| u.is_empty() || u.contains(':')) {
        return Err("a user must be a plain name (no password)");
    }
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    if authority.contains(['/', '?', '#']) {
        return Err("a path, query or fragment is not allowed");
    }
    let (host, port) = host_and_port(authority).ok_or("no host, or a bad port")?;
    Ok(Address::Ssh {
        user: user.map(str::to_owned),
        host,
        port,
    })
}

/// `HOST` and `PORT` of `HOST[:PORT][/]`, `HOST` possibly a bracketed IPv6
/// address (returned without its brackets).
fn host_and_port(authority: &str) -> Option<(String, Option<u16>)> {
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
        return None;
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(bracketed) => {
            let (host, rest) = bracketed.split_once(']')?;
            match rest {
                "" => (host, None),
                rest => (host, Some(rest.strip_prefix(':')?)),
            }
        }
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let port = match port {
        // `HOST:` is the default port in the CLI.
        Some("") => None,
        Some(port) => Some(port.parse().ok().filter(|p| *p != 0)?),
        None => None,
    };
    (!host.is_empty()).then(|| (host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn globals() -> Selection {
        Selection::default()
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

    fn tls_of(e: Endpoint) -> Option<Tls> {
        match e.address {
            Address::TcpTls { tls, .. } => Some(tls),
            _ => None,
        }
    }

    fn with_host(host: &str) -> Selection {
        let mut g = globals();
        g.host = vec![host.into()];
        g
    }

    #[test]
    fn default_is_the_local_socket() {
        let env = Env {
            home: Some("/nonexistent-home".into()),
            ..Env::default()
        };
        let e = resolve(&globals(), &env).unwrap();
        assert_eq!(
            (e.host.as_str(), e.context.as_str()),
            (DEFAULT_HOST, "default")
        );
        assert_eq!(
            e.address,
            Address::Local {
                path: "/var/run/docker.sock".into()
            }
        );
        assert_eq!(
            e.to_string(),
            "unix:///var/run/docker.sock (context \"default\")"
        );
    }

    #[test]
    fn host_flag_beats_docker_host_and_context_env() {
        let env = Env {
            docker_host: Some("tcp://env:2".into()),
            docker_context: Some("nope".into()),
            ..Env::default()
        };
        assert_eq!(
            resolve(&with_host("tcp://flag:1"), &env).unwrap().host,
            "tcp://flag:1"
        );
        assert_eq!(resolve(&globals(), &env).unwrap().host, "tcp://env:2");
    }

    #[test]
    fn context_and_host_conflict() {
        let mut g = with_host("tcp://a:1");
        g.context = Some("x".into());
        assert!(matches!(
            resolve(&g, &Env::default()),
            Err(ResolveError::HostAndContext)
        ));
        g.context = None;
        g.host.push("tcp://b:2".into());
        assert!(matches!(
            resolve(&g, &Env::default()),
            Err(ResolveError::SeveralHosts)
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
            Err(ResolveError::NoSuchContext { .. })
        ));
    }

    #[test]
    fn broken_config_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), "{").unwrap();
        let mut g = globals();
        g.config = Some(dir.path().to_owned());
        let err = resolve(&g, &Env::default()).unwrap_err();
        assert!(matches!(err, ResolveError::ConfigJson { .. }), "{err}");
        assert!(err.to_string().contains("config.json"), "{err}");
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        write_context(dir.path(), "broken", "tcp://h:1", false);
        let id = format!("{:x}", Sha256::digest(b"broken"));
        let meta = dir.path().join("contexts/meta").join(id).join("meta.json");
        std::fs::write(&meta, "not json").unwrap();
        g.context = Some("broken".into());
        let err = resolve(&g, &Env::default()).unwrap_err();
        assert!(matches!(err, ResolveError::ContextJson { .. }), "{err}");
        std::fs::write(&meta, r#"{"Endpoints":{}}"#).unwrap();
        let err = resolve(&g, &Env::default()).unwrap_err();
        assert!(
            matches!(err, ResolveError::ContextWithoutDocker { .. }),
            "{err}"
        );
    }

    #[test]
    fn tls_flags_and_env() {
        let mut g = with_host("tcp://h");
        g.tls = true;
        let env = Env {
            home: Some("/nowhere".into()),
            ..Env::default()
        };
        let e = resolve(&g, &env).unwrap();
        assert_eq!(
            e.address,
            Address::TcpTls {
                host: "h".into(),
                port: TLS_PORT,
                tls: Tls {
                    verify: false,
                    ca: None,
                    cert: None,
                    key: None
                }
            }
        );
        let env = Env {
            docker_tls_verify: Some("1".into()),
            ..env
        };
        let tls = tls_of(resolve(&with_host("tcp://h"), &env).unwrap()).unwrap();
        assert!(tls.verify);
        // TLS material applies to TCP only.
        assert!(matches!(
            resolve(&with_host("unix:///s"), &env).unwrap().address,
            Address::Local { .. }
        ));
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
        let g = with_host("tcp://h:1");
        let tls = tls_of(resolve(&g, &env).unwrap()).unwrap();
        // The CA is required when verifying; client files only when present.
        assert_eq!(tls.ca, Some(dir.path().join("ca.pem")));
        assert_eq!(tls.cert, Some(dir.path().join("cert.pem")));
        assert_eq!(tls.key, None);
        // --tlsverify=false still turns TLS on, without verification.
        let mut g = g;
        g.tlsverify = Some(false);
        let tls = tls_of(resolve(&g, &env).unwrap()).unwrap();
        assert!(!tls.verify);
    }

    #[test]
    fn context_tls_material_and_skip_verify() {
        let dir = tempfile::tempdir().unwrap();
        write_context(dir.path(), "secure", "tcp://h:2376", false);
        write_context(dir.path(), "skip", "tcp://h:2376", true);
        write_context(dir.path(), "plain", "tcp://h", false);
        let id = format!("{:x}", Sha256::digest(b"secure"));
        let tls_dir = dir.path().join("contexts/tls").join(id).join("docker");
        std::fs::create_dir_all(&tls_dir).unwrap();
        for f in ["ca.pem", "cert.pem", "key.pem"] {
            std::fs::write(tls_dir.join(f), "").unwrap();
        }
        let mut g = globals();
        g.config = Some(dir.path().to_owned());
        g.context = Some("secure".into());
        let tls = tls_of(resolve(&g, &Env::default()).unwrap()).unwrap();
        assert!(tls.verify);
        assert_eq!(tls.key, Some(tls_dir.join("key.pem")));
        g.context = Some("skip".into());
        let tls = tls_of(resolve(&g, &Env::default()).unwrap()).unwrap();
        assert!(!tls.verify && tls.ca.is_none());
        g.context = Some("plain".into());
        assert_eq!(
            resolve(&g, &Env::default()).unwrap().address,
            Address::Tcp {
                host: "h".into(),
                port: TCP_PORT
            }
        );
    }

    #[test]
    fn every_kind_of_host_parses_once() {
        let parse = |h: &str| parse_address(h, None);
        assert_eq!(
            parse("tcp://[::1]:5/"),
            Ok(Address::Tcp {
                host: "::1".into(),
                port: 5
            })
        );
        assert_eq!(
            parse("http://h"),
            Ok(Address::Tcp {
                host: "h".into(),
                port: TCP_PORT
            })
        );
        assert_eq!(
            parse("ssh://me@h:2222/"),
            Ok(Address::Ssh {
                user: Some("me".into()),
                host: "h".into(),
                port: Some(2222)
            })
        );
        assert_eq!(
            parse("ssh://[::1]"),
            Ok(Address::Ssh {
                user: None,
                host: "::1".into(),
                port: None
            })
        );
        let tcp = |host: &str, port| {
            Ok(Address::Tcp {
                host: host.into(),
                port,
            })
        };
        // The CLI's shorthands (docker/cli opts/hosts_test.go).
        assert_eq!(parse("h:2377"), tcp("h", 2377));
        assert_eq!(parse(" 10.0.0.1: "), tcp("10.0.0.1", TCP_PORT));
        assert_eq!(parse("[::1]:"), tcp("::1", TCP_PORT));
        assert_eq!(parse("tcp://"), tcp("localhost", TCP_PORT));
        assert_eq!(parse("tcp://:7777"), tcp("localhost", 7777));
        assert_eq!(parse(":6666"), tcp("localhost", 6666));
        assert_eq!(parse("tcp://h:"), tcp("h", TCP_PORT));
        assert_eq!(
            parse("unix://"),
            Ok(Address::Local {
                path: DEFAULT_SOCKET.into()
            })
        );
        for bad in [
            "bad://x",
            "",
            "tcp://h:99999",
            "tcp://h:x",
            "tcp://h/path",
            "h:2375/path",
            "ssh://",
            "ssh://me:pw@h",
            "ssh://h/var/run/docker.sock",
            "ssh://h:x",
            "ssh://h:0",
            "ssh://@h",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let npipe = parse("npipe:////./pipe/docker_engine").unwrap_err();
        assert!(npipe.contains("Windows"), "{npipe}");
        let err = resolve(&with_host("ssh://h/p"), &Env::default()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid engine address \"ssh://h/p\" (context \"default\"): a path"),
            "{err}"
        );
    }

    #[test]
    fn ipv6_hosts_get_their_brackets_back() {
        assert_eq!(authority("::1", 5), "[::1]:5");
        assert_eq!(authority("h", 5), "h:5");
    }

    #[test]
    fn api_version_parses() {
        let env = |v: &str| Env {
            docker_api_version: Some(v.into()),
            ..Env::default()
        };
        let g = with_host("unix:///s");
        assert_eq!(
            resolve(&g, &env("1.41")).unwrap().api_version,
            Some((1, 41))
        );
        assert!(matches!(
            resolve(&g, &env("latest")),
            Err(ResolveError::ApiVersion(_))
        ));
        assert_eq!(resolve(&g, &Env::default()).unwrap().api_version, None);
    }

    #[test]
    fn every_error_says_its_cause_once() {
        let io = || std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let json = || serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        let path = PathBuf::from("/c/config.json");
        for err in [
            ResolveError::HostAndContext,
            ResolveError::SeveralHosts,
            ResolveError::Config {
                path: path.clone(),
                error: io(),
            },
            ResolveError::ConfigJson {
                path: path.clone(),
                error: json(),
            },
            ResolveError::NoSuchContext {
                name: "n".into(),
                path: path.clone(),
            },
            ResolveError::ContextJson {
                name: "n".into(),
                path: path.clone(),
                error: json(),
            },
            ResolveError::ContextWithoutDocker {
                name: "n".into(),
                path,
            },
            ResolveError::ApiVersion("x".into()),
            ResolveError::BadHost {
                host: "h".into(),
                context: "default".into(),
                why: EXPECTED.into(),
            },
        ] {
            crate::output::assert_causes_said_once(&err);
        }
    }
}
