//! A private Docker engine whose data root is a small tmpfs, for the
//! disk-full test: the machine's own `dockerd`, on its own socket, exec root,
//! pid file and containerd namespace, with the vfs driver and no network.
//! Dropping it stops the engine and removes everything, tmpfs included.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::engine::{text, unique};

pub struct SmallEngine {
    dir: PathBuf,
    daemon: Child,
    pub host: String,
}

impl SmallEngine {
    /// Starts an engine with `mib` MiB of disk. Needs root, as the engine does.
    pub fn start(mib: u32) -> SmallEngine {
        let uid = Command::new("id").arg("-u").output().expect("run id");
        assert_eq!(
            text(&uid.stdout).trim(),
            "0",
            "the disk-full test starts its own dockerd and mounts a tmpfs: run the tests as root"
        );
        let name = unique("small");
        let dir = PathBuf::from("/run").join(&name);
        let data = dir.join("data");
        std::fs::create_dir_all(&data).expect("create the engine's dir");
        mount_tmpfs(&data, mib);
        // The machine's /etc/docker/daemon.json must not apply to this engine.
        std::fs::write(dir.join("daemon.json"), "{}").expect("write daemon.json");
        let host = format!("unix://{}", dir.join("docker.sock").display());
        let log = std::fs::File::create(dir.join("dockerd.log")).expect("create log");
        let daemon = Command::new("dockerd")
            .arg("--config-file")
            .arg(dir.join("daemon.json"))
            .arg("--data-root")
            .arg(&data)
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .args(["--host", &host, "--storage-driver", "vfs"])
            .args(["--bridge", "none", "--iptables=false", "--ip-masq=false"])
            .args(["--containerd-namespace", &name])
            .args(["--containerd-plugins-namespace", &format!("{name}-plugins")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start dockerd");
        let engine = SmallEngine { dir, daemon, host };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !engine.docker(&["info"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "the small engine did not answer within 60s; see {}",
                engine.dir.join("dockerd.log").display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        engine
    }

    /// `docker -H <this engine> <args>`.
    pub fn docker(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker")
            .args(["-H", &self.host])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run docker")
    }

    /// Output lines of a docker command that must succeed.
    pub fn lines(&self, args: &[&str]) -> Vec<String> {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
            .lines()
            .map(str::to_owned)
            .filter(|l| !l.is_empty())
            .collect()
    }
}

impl Drop for SmallEngine {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.daemon.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while matches!(self.daemon.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        let _ = Command::new("umount").arg(self.dir.join("data")).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Mounts a tmpfs of `mib` MiB on `dir` (as root).
pub fn mount_tmpfs(dir: &std::path::Path, mib: u32) {
    let mount = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
        .arg(dir)
        .output()
        .expect("run mount");
    assert!(
        mount.status.success(),
        "mounting a tmpfs on {} needs root: {}",
        dir.display(),
        text(&mount.stderr)
    );
}
