//! The signals that stop a run: SIGINT, SIGTERM, SIGHUP (the terminal
//! closed, the ssh session dropped) and SIGQUIT (Ctrl-\) on Linux and macOS;
//! Ctrl-C, Ctrl-Break and the console window closing on Windows (which has
//! no SIGTERM: `taskkill /F` cannot be caught, and a plain `taskkill` only
//! asks windowed programs to close).
//!
//! On a console close Windows waits for the handler (tokio's sleeps, so
//! that the program gets its chance) and ends the process some seconds
//! later: the cleanup it starts may be cut short.

use std::fmt;
use std::io;

/// A signal that stops the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    #[cfg(unix)]
    Interrupt,
    #[cfg(unix)]
    Terminate,
    /// The terminal went away.
    #[cfg(unix)]
    HangUp,
    #[cfg(unix)]
    Quit,
    #[cfg(windows)]
    CtrlC,
    #[cfg(windows)]
    CtrlBreak,
    #[cfg(windows)]
    ConsoleClosed,
}

impl Signal {
    /// The conventional exit code, 128 + the signal's number (on Windows,
    /// the C runtime's numbers: SIGINT 2, SIGBREAK 21; a closed console as
    /// a hang-up, 1).
    pub fn exit_code(self) -> u8 {
        match self {
            #[cfg(unix)]
            Signal::Interrupt => 130,
            #[cfg(unix)]
            Signal::Terminate => 143,
            #[cfg(unix)]
            Signal::HangUp => 129,
            #[cfg(unix)]
            Signal::Quit => 131,
            #[cfg(windows)]
            Signal::CtrlC => 130,
            #[cfg(windows)]
            Signal::CtrlBreak => 149,
            #[cfg(windows)]
            Signal::ConsoleClosed => 129,
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            #[cfg(unix)]
            Signal::Interrupt => "SIGINT",
            #[cfg(unix)]
            Signal::Terminate => "SIGTERM",
            #[cfg(unix)]
            Signal::HangUp => "SIGHUP",
            #[cfg(unix)]
            Signal::Quit => "SIGQUIT",
            #[cfg(windows)]
            Signal::CtrlC => "Ctrl-C",
            #[cfg(windows)]
            Signal::CtrlBreak => "Ctrl-Break",
            #[cfg(windows)]
            Signal::ConsoleClosed => "the console closing",
        })
    }
}

/// Listens for the signals from the moment it is created.
#[cfg(unix)]
pub struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hang_up: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    /// Installs the handlers. Must be called within a tokio runtime.
    pub fn listen() -> io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hang_up: signal(SignalKind::hangup())?,
            quit: signal(SignalKind::quit())?,
        })
    }

    /// Resolves at the next signal.
    pub async fn recv(&mut self) -> Signal {
        tokio::select! {
            _ = self.interrupt.recv() => Signal::Interrupt,
            _ = self.terminate.recv() => Signal::Terminate,
            _ = self.hang_up.recv() => Signal::HangUp,
            _ = self.quit.recv() => Signal::Quit,
        }
    }
}

/// Listens for the signals from the moment it is created.
#[cfg(windows)]
pub struct Signals {
    ctrl_c: tokio::signal::windows::CtrlC,
    ctrl_break: tokio::signal::windows::CtrlBreak,
    close: tokio::signal::windows::CtrlClose,
}

#[cfg(windows)]
impl Signals {
    /// Installs the handlers. Must be called within a tokio runtime.
    pub fn listen() -> io::Result<Signals> {
        use tokio::signal::windows::{ctrl_break, ctrl_c, ctrl_close};
        Ok(Signals {
            ctrl_c: ctrl_c()?,
            ctrl_break: ctrl_break()?,
            close: ctrl_close()?,
        })
    }

    /// Resolves at the next signal.
    pub async fn recv(&mut self) -> Signal {
        tokio::select! {
            _ = self.ctrl_c.recv() => Signal::CtrlC,
            _ = self.ctrl_break.recv() => Signal::CtrlBreak,
            _ = self.close.recv() => Signal::ConsoleClosed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn signals_are_named_and_numbered_as_on_unix() {
        assert_eq!(Signal::Interrupt.to_string(), "SIGINT");
        assert_eq!(Signal::Terminate.to_string(), "SIGTERM");
        assert_eq!(Signal::Interrupt.exit_code(), 128 + libc::SIGINT as u8);
        assert_eq!(Signal::Terminate.exit_code(), 128 + libc::SIGTERM as u8);
        assert_eq!(Signal::HangUp.to_string(), "SIGHUP");
        assert_eq!(Signal::Quit.to_string(), "SIGQUIT");
        assert_eq!(Signal::HangUp.exit_code(), 128 + libc::SIGHUP as u8);
        assert_eq!(Signal::Quit.exit_code(), 128 + libc::SIGQUIT as u8);
    }

    /// The only test in this binary that raises signals: the handlers are
    /// in place before each is raised, so none reaches its default action.
    #[cfg(unix)]
    #[tokio::test]
    async fn a_raised_signal_is_received() {
        let mut signals = Signals::listen().unwrap();
        for (raised, expected) in [
            (libc::SIGTERM, Signal::Terminate),
            (libc::SIGINT, Signal::Interrupt),
            (libc::SIGHUP, Signal::HangUp),
            (libc::SIGQUIT, Signal::Quit),
        ] {
            // SAFETY: raise only sends a signal to this process, whose
            // handler for it is installed.
            assert_eq!(unsafe { libc::raise(raised) }, 0);
            let got = tokio::time::timeout(std::time::Duration::from_secs(10), signals.recv());
            assert_eq!(got.await.expect("the signal within 10 s"), expected);
        }
    }

    #[cfg(windows)]
    #[test]
    fn signals_are_named_and_numbered_as_on_windows() {
        assert_eq!(Signal::CtrlC.to_string(), "Ctrl-C");
        assert_eq!(Signal::CtrlBreak.to_string(), "Ctrl-Break");
        assert_eq!(Signal::ConsoleClosed.exit_code(), 129);
        assert_eq!(Signal::CtrlC.exit_code(), 130);
    }
}
