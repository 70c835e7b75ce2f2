//! The docker CLI's plugin socket. The CLI names it in
//! `DOCKER_CLI_PLUGIN_SOCKET` and closes it when it is interrupted or
//! stops; the plugin holds a connection and takes end-of-file as an
//! interrupt.
//!
//! What the CLI listens on (docker/cli, `cli-plugins/socket`): a unix
//! socket everywhere, Windows included (Go speaks AF_UNIX there), not a
//! named pipe. On Linux and Windows it is abstract, passed as
//! `@docker_cli_<random>`: `@` stands for the leading NUL byte of an
//! abstract address, which Go writes there on both systems. On macOS and
//! the BSDs it is a file in the temporary directory, passed as its path.
//!
//! tokio has no AF_UNIX on Windows, so there the socket is opened through
//! Winsock and read by a thread of its own, blocking, until it ends.

/// What `DOCKER_CLI_PLUGIN_SOCKET` names.
#[derive(Debug, PartialEq, Eq)]
#[cfg_attr(not(any(target_os = "linux", windows, test)), allow(dead_code))]
pub enum Name<'a> {
    /// `@NAME`: an abstract socket (Linux and Windows).
    Abstract(&'a str),
    Path(&'a str),
}

/// Reads the variable's value.
pub fn name(value: &str) -> Name<'_> {
    match value.strip_prefix('@') {
        Some(name) => Name::Abstract(name),
        None => Name::Path(value),
    }
}

/// A connection to the CLI's plugin socket.
pub struct CliSocket {
    #[cfg(unix)]
    stream: tokio::net::UnixStream,
    #[cfg(windows)]
    closed: tokio::sync::oneshot::Receiver<()>,
}

impl CliSocket {
    /// Connects to the socket `DOCKER_CLI_PLUGIN_SOCKET` names, if it is set
    /// and the socket can be reached. Must be called within a tokio runtime.
    pub fn from_env() -> Option<CliSocket> {
        CliSocket::connect(&std::env::var("DOCKER_CLI_PLUGIN_SOCKET").ok()?)
    }

    #[cfg(unix)]
    fn connect(value: &str) -> Option<CliSocket> {
        let stream = match name(value) {
            #[cfg(target_os = "linux")]
            Name::Abstract(abstract_name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr =
                    std::os::unix::net::SocketAddr::from_abstract_name(abstract_name).ok()?;
                std::os::unix::net::UnixStream::connect_addr(&addr).ok()?
            }
            Name::Path(path) => std::os::unix::net::UnixStream::connect(path).ok()?,
            // Elsewhere the CLI passes a path; `@` would be part of one.
            #[cfg(not(target_os = "linux"))]
            Name::Abstract(_) => std::os::unix::net::UnixStream::connect(value).ok()?,
        };
        stream.set_nonblocking(true).ok()?;
        Some(CliSocket {
            stream: tokio::net::UnixStream::from_std(stream).ok()?,
        })
    }

    #[cfg(windows)]
    fn connect(value: &str) -> Option<CliSocket> {
        use std::io::Read;
        let mut stream = winsock::connect(&name(value)).ok()?;
        let (tx, closed) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("cli-socket".into())
            .spawn(move || {
                let mut buf = [0u8; 64];
                // Anything but data means the CLI went away.
                while let Ok(1..) = stream.read(&mut buf) {}
                let _ = tx.send(());
            })
            .ok()?;
        Some(CliSocket { closed })
    }

    /// Resolves when the CLI closes the socket (or it fails).
    pub async fn closed(&mut self) {
        #[cfg(unix)]
        {
            use tokio::io::AsyncReadExt;
            let mut buf = [0u8; 64];
            // Anything but data means the CLI went away.
            while let Ok(n @ 1..) = self.stream.read(&mut buf).await {
                let _ = n;
            }
        }
        #[cfg(windows)]
        {
            let _ = (&mut self.closed).await;
        }
    }
}

/// The bytes of a `sockaddr_un`'s path for `name` and the address's
/// length, as Go's AF_UNIX code writes them on Linux and Windows: an
/// abstract name after a NUL byte and not terminated, a path terminated.
#[cfg(any(windows, test))]
fn sun_path(name: &Name<'_>) -> std::io::Result<([u8; 108], usize)> {
    /// `sun_family`, before the path.
    const FAMILY: usize = 2;
    let (lead, bytes, end) = match name {
        Name::Abstract(n) => (1, n.as_bytes(), 0),
        Name::Path(p) => (0, p.as_bytes(), 1),
    };
    let mut path = [0u8; 108];
    if lead + bytes.len() + end > path.len() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "socket name too long",
        ));
    }
    path[lead..lead + bytes.len()].copy_from_slice(bytes);
    Ok((path, FAMILY + lead + bytes.len() + end))
}

#[cfg(windows)]
mod winsock {
    //! An AF_UNIX stream socket through Winsock, held as a
    //! `std::net::TcpStream`: that type only sends, receives and closes its
    //! socket, which works the same whatever the socket's family.

    use std::io;
    use std::net::TcpStream;
    use std::os::windows::io::{FromRawSocket, RawSocket};

    use windows_sys::Win32::Networking::WinSock::{
        connect as wsa_connect, socket, WSAGetLastError, WSAStartup, AF_UNIX, INVALID_SOCKET,
        SOCKADDR, SOCKADDR_UN, SOCKET_ERROR, SOCK_STREAM, WSADATA,
    };

    use super::{sun_path, Name};

    pub fn connect(name: &Name<'_>) -> io::Result<TcpStream> {
        let (path, len) = sun_path(name)?;
        // SAFETY: plain Winsock calls on memory we own; the socket is
        // owned by the TcpStream (which closes it) as soon as it exists.
        unsafe {
            let mut data: WSADATA = std::mem::zeroed();
            // Counted: std's own start-up and this one do not interfere.
            let started = WSAStartup(0x0202, &mut data);
            if started != 0 {
                return Err(io::Error::from_raw_os_error(started));
            }
            let raw = socket(AF_UNIX as _, SOCK_STREAM as _, 0);
            if raw == INVALID_SOCKET {
                return Err(io::Error::from_raw_os_error(WSAGetLastError()));
            }
            let stream = TcpStream::from_raw_socket(raw as RawSocket);
            let mut addr: SOCKADDR_UN = std::mem::zeroed();
            addr.sun_family = AF_UNIX as _;
            for (to, from) in addr.sun_path.iter_mut().zip(path) {
                *to = from as _;
            }
            let addr_ptr = &addr as *const SOCKADDR_UN as *const SOCKADDR;
            if wsa_connect(raw, addr_ptr, len as i32) == SOCKET_ERROR {
                return Err(io::Error::from_raw_os_error(WSAGetLastError()));
            }
            Ok(stream)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_abstract_after_an_at_sign() {
        assert_eq!(name("@docker_cli_ab12"), Name::Abstract("docker_cli_ab12"));
        assert_eq!(
            name("/tmp/docker_cli_ab12"),
            Name::Path("/tmp/docker_cli_ab12")
        );
    }

    #[test]
    fn addresses_are_laid_out_as_the_cli_lays_them_out() {
        let (path, len) = sun_path(&Name::Abstract("ab")).unwrap();
        assert_eq!((&path[..4], len), (&b"\0ab\0"[..], 2 + 3));
        let (path, len) = sun_path(&Name::Path("/s")).unwrap();
        assert_eq!((&path[..3], len), (&b"/s\0"[..], 2 + 3));
        let long = "x".repeat(108);
        assert!(sun_path(&Name::Path(&long)).is_err());
        assert!(sun_path(&Name::Abstract(&long[1..])).is_ok());
    }

    /// The CLI's way on Linux: an abstract socket it closes; the plugin
    /// sees the end.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn an_abstract_socket_closed_by_the_cli_ends() {
        use std::os::linux::net::SocketAddrExt;
        let id = format!("docker-flatten-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(&id).unwrap();
        let listener = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
        let mut socket = CliSocket::connect(&format!("@{id}")).expect("connected");
        let (cli, _) = listener.accept().unwrap();
        drop(cli);
        tokio::time::timeout(std::time::Duration::from_secs(10), socket.closed())
            .await
            .expect("closed within 10 s");
    }

    /// The CLI's way on macOS: a socket file.
    #[cfg(unix)]
    #[tokio::test]
    async fn a_socket_file_closed_by_the_cli_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker_cli_test");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let mut socket = CliSocket::connect(path.to_str().unwrap()).expect("connected");
        let (cli, _) = listener.accept().unwrap();
        drop(cli);
        tokio::time::timeout(std::time::Duration::from_secs(10), socket.closed())
            .await
            .expect("closed within 10 s");
    }

    #[test]
    fn nothing_there_is_no_socket() {
        assert!(CliSocket::connect("/nonexistent/docker_cli_none").is_none());
    }
}
