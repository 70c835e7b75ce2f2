//! Processes of a test run: starting the plugin or the CLI with piped
//! output, finding the plugin under the CLI, signalling them, and waiting
//! with a deadline. Unix only (`/proc`, `kill`).
#![cfg(unix)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::engine::text;
use super::proxy::Proxy;

/// The child process of `parent` (the plugin the CLI started).
pub fn child_of(parent: u32) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // "pid (comm) state ppid ...": comm may hold spaces, so split after ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(parent) && stat.contains("(docker-flatten)") {
                return pid;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the CLI started no plugin process"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends signal `name` to `pid` (a process group if it starts with `-`).
pub fn signal(pid: &str, name: &str) {
    let status = Command::new("kill")
        .args(["-s", name, "--", pid])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -s {name} {pid}");
}

pub fn start(cmd: &mut Command) -> Child {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the flatten")
}

/// Waits until the proxy's faults have fired `n` times in all.
pub fn until_fired(proxy: &Proxy, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while proxy.fired() < n {
        assert!(Instant::now() < deadline, "fault {n} never fired");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn wait(mut child: Child, timeout: Duration) -> std::process::Output {
    let deadline = Instant::now() + timeout;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "did not stop within {timeout:?} of the signal:\n{}",
                text(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}
