//! Ways a run gets interrupted: SIGINT, SIGTERM, or the docker CLI closing
//! the plugin socket. When its stdout is not a terminal the CLI does not
//! forward Ctrl-C to the plugin; it closes the socket named in
//! `DOCKER_CLI_PLUGIN_SOCKET` instead, so we hold a connection to it and
//! treat end-of-file as an interrupt.

use std::fmt;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// Why the run was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    Sigint,
    Sigterm,
    /// The docker CLI closed the plugin socket (it got Ctrl-C or was told to stop).
    CliClosed,
}

impl Interrupt {
    /// The conventional exit code, 128 + signal number.
    pub fn exit_code(self) -> u8 {
        match self {
            Interrupt::Sigint | Interrupt::CliClosed => 130,
            Interrupt::Sigterm => 143,
        }
    }
}

impl fmt::Display for Interrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Interrupt::Sigint => "SIGINT",
            Interrupt::Sigterm => "SIGTERM",
            Interrupt::CliClosed => "the docker CLI",
        })
    }
}

/// Listens for interrupts from the moment it is created.
pub struct Interrupts {
    sigint: Signal,
    sigterm: Signal,
    cli: Option<tokio::net::UnixStream>,
}

impl Interrupts {
    /// Installs the signal handlers and connects to the CLI's plugin socket, if any.
    pub fn listen() -> std::io::Result<Interrupts> {
        Ok(Interrupts {
            sigint: signal(SignalKind::interrupt())?,
            sigterm: signal(SignalKind::terminate())?,
            cli: std::env::var("DOCKER_CLI_PLUGIN_SOCKET")
                .ok()
                .and_then(|name| connect(&name)),
        })
    }

    /// Resolves at the next interrupt.
    pub async fn next(&mut self) -> Interrupt {
        let cli_closed = async {
            match &mut self.cli {
                Some(stream) => {
                    let mut buf = [0u8; 64];
                    // Anything but data means the CLI went away.
                    while let Ok(n @ 1..) = stream.read(&mut buf).await {
                        let _ = n;
                    }
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = self.sigint.recv() => Interrupt::Sigint,
            _ = self.sigterm.recv() => Interrupt::Sigterm,
            _ = cli_closed => {
                self.cli = None;
                Interrupt::CliClosed
            }
        }
    }
}

impl Interrupts {
    /// Resolves at the next SIGINT or SIGTERM that is not the echo of an
    /// interrupt at `first`. One Ctrl-C reaches the plugin twice when the
    /// CLI's stdout is not a terminal: as SIGINT to the whole process group,
    /// and as the CLI closing its socket. Only a signal counts here, and only
    /// one that comes later than a person could press Ctrl-C twice.
    pub async fn next_signal_after(&mut self, first: Instant) -> Interrupt {
        loop {
            let interrupt = tokio::select! {
                _ = self.sigint.recv() => Interrupt::Sigint,
                _ = self.sigterm.recv() => Interrupt::Sigterm,
            };
            if first.elapsed() >= ECHO {
                return interrupt;
            }
        }
    }
}

/// Events closer than this to the first interrupt belong to the same one.
const ECHO: Duration = Duration::from_millis(500);

/// The CLI names an abstract socket as `@name`; a plain path otherwise.
fn connect(name: &str) -> Option<tokio::net::UnixStream> {
    let stream = match name.strip_prefix('@') {
        #[cfg(target_os = "linux")]
        Some(abstract_name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(abstract_name).ok()?;
            std::os::unix::net::UnixStream::connect_addr(&addr).ok()?
        }
        _ => std::os::unix::net::UnixStream::connect(name).ok()?,
    };
    stream.set_nonblocking(true).ok()?;
    tokio::net::UnixStream::from_std(stream).ok()
}
