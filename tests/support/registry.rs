//! A private image registry for push and pull round trips, and the second
//! engine that pulls from it.
//!
//! [`Registry::start`] runs Debian's `docker-registry` (the distribution
//! registry) as a child process, never a system service: its own config and
//! storage in a fresh temporary directory, listening on a free port of
//! 127.0.0.1. Engines treat registries on 127.0.0.0/8 as insecure (plain
//! HTTP) without any configuration. Dropping it kills the process and
//! removes its storage.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::engine::{containerd_store, docker_host, try_run_with_timeout, DEFAULT_DOCKER_HOST};

const REGISTRY: &str = "/usr/bin/docker-registry";
/// Where `.ci/containerd-engine start` puts the containerd-store engine.
const CONTAINERD_ENGINE: &str = "unix:///run/dflt-c8d/docker.sock";
/// Overrides the engine that [`other_engine`] picks.
const OTHER_ENGINE_VAR: &str = "DFLT_OTHER_DOCKER_HOST";

pub struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`, the prefix of image references in this registry.
    pub address: String,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry and waits until it answers `GET /v2/`.
    pub fn start() -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("dflt-registry-")
            .tempdir()
            .expect("temp dir for the registry");
        // The port is free now; the registry binds it a moment later.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let address = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        let storage = dir.path().join("storage");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\n\
                 log:\n  level: warn\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: {address}\n",
                storage.display()
            ),
        )
        .expect("write the registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("registry log");
        let child = Command::new(REGISTRY)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("registry log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {REGISTRY} ({e}); install it with `apt-get install -y docker-registry`"
                )
            });
        let mut registry = Registry {
            child,
            address,
            dir,
        };
        registry.wait_until_up();
        registry
    }

    fn wait_until_up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the registry exited ({status}):\n{}", self.log());
            }
            if v2_answers(&self.address) {
                return;
            }
            if Instant::now() > deadline {
                panic!("the registry did not answer within 30 s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What the registry wrote to stdout and stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    pub fn storage(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `GET /v2/` on `address` answers 200.
fn v2_answers(address: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(address) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /v2/ HTTP/1.0\r\nHost: {address}\r\n\r\n");
    if s.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    answer.starts_with(b"HTTP/1.0 200") || answer.starts_with(b"HTTP/1.1 200")
}

/// The engine with the other image store, for pulls: the graphdriver
/// engine on the default socket when the engine under test has the
/// containerd store, else the containerd-store engine that
/// `.ci/containerd-engine start` runs. `DFLT_OTHER_DOCKER_HOST` overrides.
/// Panics, naming it, unless it answers.
pub fn other_engine() -> String {
    let host = match std::env::var(OTHER_ENGINE_VAR) {
        Ok(h) if !h.trim().is_empty() => h.trim().to_owned(),
        _ if containerd_store() => DEFAULT_DOCKER_HOST.to_owned(),
        _ => CONTAINERD_ENGINE.to_owned(),
    };
    assert_ne!(
        host,
        docker_host(),
        "the other engine is the engine under test; set {OTHER_ENGINE_VAR}"
    );
    let mut cmd = Command::new("docker");
    cmd.args(["-H", &host, "version", "--format", "{{.Server.Version}}"]);
    match try_run_with_timeout(cmd, Duration::from_secs(30)) {
        Ok(out) if out.status.success() => host,
        Ok(out) => panic!(
            "the second engine at {host} does not answer: {}\
             start it with `bash .ci/containerd-engine start`, or name another in {OTHER_ENGINE_VAR}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("the second engine at {host}: {e}"),
    }
}
