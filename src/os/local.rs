//! The engine's local endpoint and the bridge's: a unix socket on Linux and
//! macOS (`unix:///var/run/docker.sock`), a named pipe on Windows
//! (`npipe:////./pipe/docker_engine`, where Docker Desktop's engine
//! listens). TCP, TLS and ssh endpoints are the same everywhere.
//!
//! The bridge, which stands in for a TLS or ssh endpoint, listens on a unix
//! socket in a fresh directory only we may enter; on Windows on a named
//! pipe of a random name, and not on a TCP port on 127.0.0.1: any process
//! of any user could connect to a loopback port and use the engine with our
//! TLS client key or ssh identity, while a pipe's default access list lets
//! only this user (with SYSTEM and the administrators) write to it, and it
//! refuses clients from other machines. The pipe is also what the client
//! library speaks on Windows already.

use std::io;
use std::path::{Path, PathBuf};

use bollard::{ClientVersion, Docker};

/// The scheme of a local endpoint.
#[cfg(unix)]
pub const SCHEME: &str = "unix";
#[cfg(windows)]
pub const SCHEME: &str = "npipe";

/// The endpoint of the `default` context when nothing names one.
#[cfg(unix)]
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";
#[cfg(windows)]
pub const DEFAULT_HOST: &str = "npipe:////./pipe/docker_engine";

/// What the scheme alone (`unix://`, `npipe://`) names, as in the CLI.
#[cfg(unix)]
pub const DEFAULT_PATH: &str = "/var/run/docker.sock";
#[cfg(windows)]
pub const DEFAULT_PATH: &str = "//./pipe/docker_engine";

/// The endpoints there are, for a message about an address that is none.
#[cfg(unix)]
pub const EXPECTED: &str = "expected unix://PATH, tcp://HOST[:PORT] or ssh://[USER@]HOST[:PORT]";
#[cfg(windows)]
pub const EXPECTED: &str = "expected npipe://PATH, tcp://HOST[:PORT] or ssh://[USER@]HOST[:PORT]";

/// The other system's local scheme, and why it cannot be used here.
#[cfg(unix)]
pub const FOREIGN: (&str, &str) = (
    "npipe",
    "npipe:// is a Windows named pipe, which cannot be reached from here",
);
#[cfg(windows)]
pub const FOREIGN: (&str, &str) = (
    "unix",
    "unix:// is a unix socket, which this program cannot reach on Windows; \
     Docker Desktop's engine is npipe:////./pipe/docker_engine",
);

/// What to tell the user when the engine's endpoint refuses us.
#[cfg(unix)]
pub const PERMISSION_DENIED: &str =
    "permission denied; add your user to the docker group, or run as root";
#[cfg(windows)]
pub const PERMISSION_DENIED: &str =
    "permission denied; add your user to the docker-users group, or run as administrator";

/// What to check when the bridge cannot open its endpoint.
#[cfg(unix)]
pub const BIND_HINT: &str = "check that TMPDIR is a writable directory";
#[cfg(windows)]
pub const BIND_HINT: &str = "check that this user may create named pipes";

/// A client for the engine at a local endpoint.
pub fn client(
    path: &Path,
    timeout_secs: u64,
    version: &ClientVersion,
) -> Result<Docker, bollard::errors::Error> {
    #[cfg(unix)]
    {
        Docker::connect_with_unix(&path.to_string_lossy(), timeout_secs, version)
    }
    #[cfg(windows)]
    {
        Docker::connect_with_named_pipe(&path.to_string_lossy(), timeout_secs, version)
    }
}

/// A connection to a local endpoint.
#[cfg(unix)]
pub type Stream = tokio::net::UnixStream;
#[cfg(windows)]
pub type Stream = tokio::net::windows::named_pipe::NamedPipeClient;

/// Connects to the local endpoint at `path`.
pub async fn connect(path: &Path) -> io::Result<Stream> {
    #[cfg(unix)]
    {
        tokio::net::UnixStream::connect(path).await
    }
    #[cfg(windows)]
    {
        use tokio::net::windows::named_pipe::ClientOptions;
        use windows_sys::Win32::Foundation::ERROR_PIPE_BUSY;
        loop {
            match ClientOptions::new().open(path) {
                // Every instance is taken: the server makes another soon.
                Err(e) if e.raw_os_error() == Some(ERROR_PIPE_BUSY as i32) => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await
                }
                opened => return opened,
            }
        }
    }
}

/// A connection accepted by a [`Listener`].
#[cfg(unix)]
pub type Accepted = tokio::net::UnixStream;
#[cfg(windows)]
pub type Accepted = tokio::net::windows::named_pipe::NamedPipeServer;

/// Where a [`Listener`] listens; clients connect there as long as this lives
/// (on unix, dropping it removes the socket and its directory).
pub struct Place {
    path: PathBuf,
    #[cfg(unix)]
    _dir: tempfile::TempDir,
}

impl Place {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A private local endpoint that accepts connections.
pub struct Listener {
    #[cfg(unix)]
    listener: tokio::net::UnixListener,
    /// The instance that takes the next client; one is always waiting.
    #[cfg(windows)]
    next: tokio::net::windows::named_pipe::NamedPipeServer,
    #[cfg(windows)]
    path: PathBuf,
}

/// Opens a private endpoint. Must be called within a tokio runtime.
pub fn listen() -> io::Result<(Place, Listener)> {
    #[cfg(unix)]
    {
        // Mode 0700, asked for (tempfile's default is 0777 less the umask):
        // nobody else can reach the engine through it.
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("docker-flatten-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()?;
        let path = dir.path().join("engine.sock");
        let listener = tokio::net::UnixListener::bind(&path)?;
        Ok((Place { path, _dir: dir }, Listener { listener }))
    }
    #[cfg(windows)]
    {
        use std::hash::BuildHasher;
        let random = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
        let path = PathBuf::from(format!(
            r"\\.\pipe\docker-flatten-{}-{random:016x}",
            std::process::id()
        ));
        let next = pipe_options().first_pipe_instance(true).create(&path)?;
        Ok((Place { path: path.clone() }, Listener { next, path }))
    }
}

#[cfg(windows)]
fn pipe_options() -> tokio::net::windows::named_pipe::ServerOptions {
    let mut options = tokio::net::windows::named_pipe::ServerOptions::new();
    options.reject_remote_clients(true);
    options
}

impl Listener {
    /// The next client's connection.
    pub async fn accept(&mut self) -> io::Result<Accepted> {
        #[cfg(unix)]
        {
            self.listener.accept().await.map(|(stream, _)| stream)
        }
        #[cfg(windows)]
        {
            self.next.connect().await?;
            let waiting = pipe_options().create(&self.path)?;
            Ok(std::mem::replace(&mut self.next, waiting))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn the_default_endpoint_is_the_local_scheme_and_path() {
        assert_eq!(DEFAULT_HOST, format!("{SCHEME}://{DEFAULT_PATH}"));
        assert!(EXPECTED.contains(&format!("{SCHEME}://PATH")));
        assert!(FOREIGN.1.starts_with(&format!("{}://", FOREIGN.0)));
        assert_ne!(FOREIGN.0, SCHEME);
    }

    #[tokio::test]
    async fn a_listener_carries_bytes_both_ways_and_goes_with_its_place() {
        let (place, mut listener) = listen().unwrap();
        let path = place.path().to_owned();
        let server = tokio::spawn(async move {
            let mut accepted = listener.accept().await.unwrap();
            let mut got = [0u8; 4];
            accepted.read_exact(&mut got).await.unwrap();
            accepted.write_all(b"pong").await.unwrap();
            got
        });
        let mut client = connect(&path).await.unwrap();
        client.write_all(b"ping").await.unwrap();
        let mut answer = [0u8; 4];
        client.read_exact(&mut answer).await.unwrap();
        assert_eq!((&server.await.unwrap(), &answer), (b"ping", b"pong"));
        drop(place);
        #[cfg(unix)]
        assert!(!path.exists() && !path.parent().unwrap().exists());
    }

    #[cfg(unix)]
    #[test]
    fn the_bridge_socket_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _inside = runtime.enter();
        let (place, _listener) = listen().unwrap();
        let dir = place.path().parent().unwrap();
        let mode = std::fs::metadata(dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
