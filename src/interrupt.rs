//! Ways a run gets interrupted: a signal (SIGINT or SIGTERM; Ctrl-C,
//! Ctrl-Break or the console closing on Windows: [`crate::os::signals`]),
//! or the docker CLI closing the plugin socket. When its stdout is not a
//! terminal the CLI does not forward Ctrl-C to the plugin; it closes the
//! socket named in `DOCKER_CLI_PLUGIN_SOCKET` instead, so we hold a
//! connection to it ([`crate::os::plugin_socket`]) and treat its end as an
//! interrupt.

use std::fmt;
use std::time::{Duration, Instant};

use crate::os::plugin_socket::CliSocket;
use crate::os::signals::{Signal, Signals};

/// Why the run was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    Signal(Signal),
    /// The docker CLI closed the plugin socket (it got Ctrl-C or was told to stop).
    CliClosed,
}

impl Interrupt {
    /// The conventional exit code, 128 + signal number.
    pub fn exit_code(self) -> u8 {
        match self {
            Interrupt::Signal(signal) => signal.exit_code(),
            Interrupt::CliClosed => 130,
        }
    }
}

impl fmt::Display for Interrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Interrupt::Signal(signal) => signal.fmt(f),
            Interrupt::CliClosed => f.write_str("the docker CLI"),
        }
    }
}

/// Listens for interrupts from the moment it is created.
pub struct Interrupts {
    signals: Signals,
    cli: Option<CliSocket>,
}

impl Interrupts {
    /// Installs the signal handlers and connects to the CLI's plugin socket, if any.
    pub fn listen() -> std::io::Result<Interrupts> {
        Ok(Interrupts {
            signals: Signals::listen()?,
            cli: CliSocket::from_env(),
        })
    }

    /// Resolves at the next interrupt.
    pub async fn next(&mut self) -> Interrupt {
        let cli_closed = async {
            match &mut self.cli {
                Some(socket) => socket.closed().await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            signal = self.signals.recv() => Interrupt::Signal(signal),
            _ = cli_closed => {
                self.cli = None;
                Interrupt::CliClosed
            }
        }
    }
}

impl Interrupts {
    /// Resolves at the next signal that is not the echo of an interrupt at
    /// `first`. One Ctrl-C reaches the plugin twice when the CLI's stdout is
    /// not a terminal: as SIGINT to the whole process group, and as the CLI
    /// closing its socket. Only a signal counts here, and only one that
    /// comes later than a person could press Ctrl-C twice.
    pub async fn next_signal_after(&mut self, first: Instant) -> Interrupt {
        loop {
            let interrupt = Interrupt::Signal(self.signals.recv().await);
            if first.elapsed() >= ECHO {
                return interrupt;
            }
        }
    }
}

/// Events closer than this to the first interrupt belong to the same one.
const ECHO: Duration = Duration::from_millis(500);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_going_away_reads_as_an_interrupt() {
        assert_eq!(Interrupt::CliClosed.to_string(), "the docker CLI");
        assert_eq!(Interrupt::CliClosed.exit_code(), 130);
        #[cfg(unix)]
        {
            let term = Interrupt::Signal(Signal::Terminate);
            assert_eq!(
                (term.to_string(), term.exit_code()),
                ("SIGTERM".into(), 143)
            );
        }
    }
}
