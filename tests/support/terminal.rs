//! A real terminal for tests that must see what a person sees: a command
//! runs in a detached `tmux` session of a chosen size, and the pane's final
//! contents are captured once it has exited.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::engine::{docker_host, run_with_timeout, text, unique};

/// The screen a command left behind.
#[derive(Debug)]
pub struct Screen {
    /// The pane's lines, wrapped lines joined, trailing blank lines dropped.
    pub lines: Vec<String>,
    /// The command's exit status.
    pub status: i32,
    pub width: usize,
}

impl Screen {
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }
}

/// A private tmux server, killed on drop even if the test panics.
struct Server {
    socket: String,
}

impl Server {
    fn tmux(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new("tmux");
        cmd.args(["-L", &self.socket, "-f", "/dev/null"]).args(args);
        run_with_timeout(cmd, Duration::from_secs(600))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Runs `argv` in a `width`×`height` terminal with the docker CLI's config
/// in `docker_config`, and returns the screen once it has exited.
pub fn run_in_terminal(docker_config: &Path, argv: &[&str], width: u16, height: u16) -> Screen {
    let tmux = Command::new("tmux").arg("-V").output();
    assert!(
        tmux.is_ok_and(|o| o.status.success()),
        "these tests need tmux (Debian package tmux)"
    );
    let server = Server {
        socket: unique("dflt-tmux"),
    };
    let status_file = tempfile::NamedTempFile::new().expect("temp file");
    let command = format!(
        "env DOCKER_CONFIG={} DOCKER_HOST={} TERM=xterm-256color {}; echo $? > {}; tmux -L {} wait-for -S done; sleep 600",
        quote(&docker_config.display().to_string()),
        quote(&docker_host()),
        argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" "),
        quote(&status_file.path().display().to_string()),
        server.socket,
    );
    let (w, h) = (width.to_string(), height.to_string());
    let out = server.tmux(&["new-session", "-d", "-s", "t", "-x", &w, "-y", &h, &command]);
    assert!(
        out.status.success(),
        "tmux new-session: {}",
        text(&out.stderr)
    );
    // A signal sent before anyone waits is remembered, so this cannot miss it.
    let out = server.tmux(&["wait-for", "done"]);
    assert!(out.status.success(), "tmux wait-for: {}", text(&out.stderr));
    let out = server.tmux(&["capture-pane", "-p", "-J", "-t", "t"]);
    assert!(
        out.status.success(),
        "tmux capture-pane: {}",
        text(&out.stderr)
    );
    let mut lines: Vec<String> = text(&out.stdout)
        .lines()
        .map(|l| l.trim_end().to_owned())
        .collect();
    while lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    let status = std::fs::read_to_string(status_file.path())
        .expect("status file")
        .trim()
        .parse()
        .expect("exit status");
    Screen {
        lines,
        status,
        width: width.into(),
    }
}

/// A command running in a terminal that a test reads while it runs and
/// types into ([`Live::keys`]), for the live display and Ctrl-C.
pub struct Live {
    server: Server,
    status_file: tempfile::NamedTempFile,
    pub width: usize,
}

impl Live {
    /// Starts `argv` in a `width`×`height` terminal, as [`run_in_terminal`] does.
    pub fn start(docker_config: &Path, argv: &[&str], width: u16, height: u16) -> Live {
        let server = Server {
            socket: unique("dflt-tmux"),
        };
        let status_file = tempfile::NamedTempFile::new().expect("temp file");
        let command = format!(
            "env DOCKER_CONFIG={} DOCKER_HOST={} TERM=xterm-256color {}; echo $? > {}; sleep 600",
            quote(&docker_config.display().to_string()),
            quote(&docker_host()),
            argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" "),
            quote(&status_file.path().display().to_string()),
        );
        let (w, h) = (width.to_string(), height.to_string());
        let out = server.tmux(&["new-session", "-d", "-s", "t", "-x", &w, "-y", &h, &command]);
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            text(&out.stderr)
        );
        Live {
            server,
            status_file,
            width: width.into(),
        }
    }

    /// The screen now, trailing blank lines dropped (lines as drawn, not joined).
    pub fn screen(&self) -> Vec<String> {
        let out = self.server.tmux(&["capture-pane", "-p", "-t", "t"]);
        assert!(
            out.status.success(),
            "tmux capture-pane: {}",
            text(&out.stderr)
        );
        let mut lines: Vec<String> = text(&out.stdout)
            .lines()
            .map(|l| l.trim_end().to_owned())
            .collect();
        while lines.last().is_some_and(String::is_empty) {
            lines.pop();
        }
        lines
    }

    /// Types `keys` as tmux names them (`C-c`).
    pub fn keys(&self, keys: &str) {
        let out = self.server.tmux(&["send-keys", "-t", "t", keys]);
        assert!(
            out.status.success(),
            "tmux send-keys: {}",
            text(&out.stderr)
        );
    }

    /// Waits for the command to exit, and returns its screen.
    pub fn finish(self, timeout: Duration) -> Screen {
        let deadline = std::time::Instant::now() + timeout;
        let status = loop {
            let written = std::fs::read_to_string(self.status_file.path()).unwrap_or_default();
            if let Ok(status) = written.trim().parse() {
                break status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "still running:\n{}",
                self.screen().join("\n")
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        Screen {
            lines: self.screen(),
            status,
            width: self.width,
        }
    }
}
