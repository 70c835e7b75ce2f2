//! A private unix socket standing in for an engine that is reached over
//! TLS or ssh, so that the client talks plain HTTP to a local socket.
//!
//! The socket lives in a fresh directory only we may enter (on Windows it
//! is a named pipe: [`crate::os::local`] says why). Every
//! connection made to it is carried to the engine on a connection of its
//! own: a TCP connection with a TLS session on it, or an
//! `ssh … docker system dial-stdio` process (as the docker CLI does). A
//! connection that cannot be carried records why before it is closed, so
//! the caller can tell the user the real reason instead of "connection
//! closed". Dropping the bridge stops it: its connections end and their
//! ssh processes are killed (as they are when the runtime shuts down).

use std::io;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::TlsConnector;

use super::resolve::authority;
use super::tls;
use crate::os::local::{self, Accepted, Listener, Place};

/// How long a failed ssh gets to exit and say why, once its output ended.
const SSH_EXIT_GRACE: Duration = Duration::from_secs(5);

/// Where the bridge carries each connection.
#[derive(Clone)]
pub enum Upstream {
    Tls {
        host: String,
        port: u16,
        name: ServerName<'static>,
        config: Arc<ClientConfig>,
    },
    /// The arguments of `ssh` that open a `docker system dial-stdio` stream.
    Ssh { args: Vec<String> },
}

/// Why a connection could not be carried to the engine. Each message
/// quotes its cause itself (none is returned from `source()`): the cause,
/// often the only clue, belongs on the one line the user sees.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("cannot open a TCP connection to {addr}: {error}; is the engine listening there?")]
    Tcp { addr: String, error: io::Error },
    #[error(
        "TLS certificate problem: {error}; check that the CA (--tlscacert) is the one \
         that signed the engine's certificate, and that the engine accepts the client's"
    )]
    Certificate { error: io::Error },
    #[error("TLS handshake failed: {error}; does the engine speak TLS on that port?")]
    Handshake { error: io::Error },
    #[error("cannot run ssh: {error}; install an ssh client (openssh-client)")]
    SshSpawn { error: io::Error },
    #[error(
        "ssh failed ({status}): {said}; check that ssh reaches the host with your keys \
         or agent, and that `docker` runs there"
    )]
    Ssh { status: String, said: String },
}

/// The first reason a connection failed, kept for the caller.
#[derive(Default)]
struct Failures(Mutex<Option<DialError>>);

impl Failures {
    fn record(&self, err: DialError) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(err);
    }

    fn take(&self) -> Option<DialError> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

pub struct Bridge {
    socket: Place,
    accept: JoinHandle<()>,
    failures: Arc<Failures>,
}

impl Bridge {
    /// Opens the socket and starts carrying its connections to `upstream`.
    /// Must be called within a tokio runtime.
    pub fn start(upstream: Upstream) -> io::Result<Bridge> {
        let (socket, listener) = local::listen()?;
        let failures = Arc::new(Failures::default());
        let accept = tokio::spawn(accept_loop(listener, Arc::new(upstream), failures.clone()));
        Ok(Bridge {
            socket,
            accept,
            failures,
        })
    }

    /// The socket to connect to instead of the engine.
    pub fn socket(&self) -> &Path {
        self.socket.path()
    }

    /// Why a connection failed, if one did since the last call.
    pub fn failure(&self) -> Option<DialError> {
        self.failures.take()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        // Dropping the loop drops its JoinSet, which aborts every connection.
        self.accept.abort();
    }
}

async fn accept_loop(mut listener: Listener, upstream: Arc<Upstream>, failures: Arc<Failures>) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let Ok(client) = listener.accept().await else {
            // Out of file descriptors, say: let running connections finish.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let (upstream, failures) = (upstream.clone(), failures.clone());
        connections.spawn(async move {
            match upstream.as_ref() {
                Upstream::Tls {
                    host,
                    port,
                    name,
                    config,
                } => carry_tls(client, host, *port, name, config, &failures).await,
                Upstream::Ssh { args } => carry_ssh(client, args, &failures).await,
            }
        });
    }
}

fn tls_failure(error: io::Error) -> DialError {
    if tls::is_certificate_problem(&error) {
        DialError::Certificate { error }
    } else {
        DialError::Handshake { error }
    }
}

async fn carry_tls(
    mut client: Accepted,
    host: &str,
    port: u16,
    name: &ServerName<'static>,
    config: &Arc<ClientConfig>,
    failures: &Failures,
) {
    let tcp = match TcpStream::connect((host, port)).await {
        Ok(tcp) => tcp,
        Err(error) => {
            let addr = authority(host, port);
            return failures.record(DialError::Tcp { addr, error });
        }
    };
    let _ = tcp.set_nodelay(true);
    let connector = TlsConnector::from(config.clone());
    let mut engine = match connector.connect(name.clone(), tcp).await {
        Ok(engine) => engine,
        Err(source) => return failures.record(tls_failure(source)),
    };
    // The server may still refuse our certificate after the handshake (TLS 1.3).
    if let Err(err) = tokio::io::copy_bidirectional(&mut client, &mut engine).await {
        if tls::is_certificate_problem(&err) {
            failures.record(DialError::Certificate { error: err });
        }
    }
}

async fn carry_ssh(client: Accepted, args: &[String], failures: &Failures) {
    let spawned = Command::new("ssh")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => return failures.record(DialError::SshSpawn { error }),
    };
    let (Some(mut stdin), Some(mut stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return;
    };
    // Read on its own task: an ssh master kept alive by the user's config
    // may hold stderr open long after this connection.
    let said = Arc::new(Mutex::new(Vec::new()));
    let said_writer = said.clone();
    let mut stderr_task = tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stderr.read(&mut buf).await {
            let mut said = said_writer.lock().unwrap_or_else(|p| p.into_inner());
            // Only the last words matter; keep memory bounded.
            if said.len() > 64 * 1024 {
                let drop_to = said.len() - 16 * 1024;
                said.drain(..drop_to);
            }
            said.extend_from_slice(&buf[..n]);
        }
    });
    let (mut from_client, mut to_client) = tokio::io::split(client);
    let upload = async {
        let _ = tokio::io::copy(&mut from_client, &mut stdin).await;
        // Closing stdin tells dial-stdio that the client is done sending.
        drop(stdin);
        std::future::pending::<()>().await
    };
    let download = async {
        let received = tokio::io::copy(&mut stdout, &mut to_client)
            .await
            .unwrap_or(0);
        if received > 0 {
            return;
        }
        // Nothing came back: if ssh failed, say why before the client sees EOF.
        if let Ok(Ok(status)) = tokio::time::timeout(SSH_EXIT_GRACE, child.wait()).await {
            if !status.success() {
                let _ = tokio::time::timeout(Duration::from_secs(1), &mut stderr_task).await;
                let text = said.lock().unwrap_or_else(|p| p.into_inner()).clone();
                failures.record(DialError::Ssh {
                    status: describe(status),
                    said: last_words(&String::from_utf8_lossy(&text)),
                });
            }
        }
    };
    tokio::select! {
        _ = upload => {}
        _ = download => {}
    }
    stderr_task.abort();
    let _ = to_client.shutdown().await;
}

fn describe(status: ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exit status {code}"),
        None => status.to_string(),
    }
}

/// The line of ssh's stderr that explains a failure: the last one that is
/// not one of its routine warnings.
pub fn last_words(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines
        .iter()
        .rev()
        .find(|l| !l.starts_with("Warning:"))
        .or(lines.last())
        .map(|l| l.to_string())
        .unwrap_or_else(|| "it printed nothing".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_words_skip_warnings() {
        let err = "Warning: Permanently added '[127.0.0.1]:2222' (ED25519) to the list of known hosts.\r\n\
                   root@127.0.0.1: Permission denied (publickey).\r\n";
        assert_eq!(
            last_words(err),
            "root@127.0.0.1: Permission denied (publickey)."
        );
        assert_eq!(last_words("Warning: only\n"), "Warning: only");
        assert_eq!(last_words(""), "it printed nothing");
    }

    #[tokio::test]
    async fn a_failing_command_is_reported_before_the_client_sees_eof() {
        // `ssh` with an option it refuses exits 255 at once, printing why.
        let bridge = Bridge::start(Upstream::Ssh {
            args: vec!["-o".into(), "NoSuchOption=1".into(), "localhost".into()],
        })
        .unwrap();
        let mut s = local::connect(bridge.socket()).await.unwrap();
        s.write_all(b"GET /_ping HTTP/1.1\r\n\r\n").await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        assert!(out.is_empty());
        let err = bridge.failure().expect("a recorded failure").to_string();
        assert!(err.contains("exit status 255"), "{err}");
        assert!(err.to_lowercase().contains("nosuchoption"), "{err}");
    }

    #[test]
    fn every_error_says_its_cause_once() {
        let io = || io::Error::from(io::ErrorKind::ConnectionRefused);
        for err in [
            DialError::Tcp {
                addr: "h:1".into(),
                error: io(),
            },
            DialError::Certificate { error: io() },
            DialError::Handshake { error: io() },
            DialError::SshSpawn { error: io() },
            DialError::Ssh {
                status: "exit status 255".into(),
                said: "Connection refused".into(),
            },
        ] {
            crate::output::assert_causes_said_once(&err);
        }
    }
}
