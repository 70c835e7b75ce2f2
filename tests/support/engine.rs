//! Talking to the real Docker engine: the `docker` CLI wrappers, unique
//! names, cleanup guards, the plugin wiring and engine-state snapshots.
//!
//! Everything goes through the `docker` CLI rather than an API client so
//! that the tests exercise the same path a user does and share no code with
//! the plugin (which talks to the API itself).

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Generous because two cores are shared by all test binaries' engine work;
/// its purpose is to turn a hung engine into a failure, not to measure speed.
pub const DOCKER_TIMEOUT: Duration = Duration::from_secs(300);

/// The plugin may flatten large trees; still bounded so CI never hangs.
pub const PLUGIN_TIMEOUT: Duration = Duration::from_secs(600);

/// Environment variables that would make docker or the plugin print
/// differently depending on who runs the tests.
const SCRUBBED_ENV: &[&str] = &[
    "NO_COLOR",
    "FORCE_COLOR",
    "CLICOLOR",
    "CLICOLOR_FORCE",
    "DOCKER_CLI_HINTS",
    "BUILDKIT_PROGRESS",
];

fn scrub_env(cmd: &mut Command) {
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    // Keeps "What's next:" hints out of stderr that tests may match on.
    cmd.env("DOCKER_CLI_HINTS", "false");
}

/// A name valid as a Docker repository and unique across threads, processes
/// and reruns: `dflt-<prefix>-<pid>-<counter>-<time>`, lowercase.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock before 1970")
        .as_nanos();
    // Repository components allow [a-z0-9] joined by separators; anything
    // else in the caller's prefix becomes '-' so any test name can be used.
    let clean: String = prefix
        .chars()
        .take(40)
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    let clean = clean.trim_matches('-');
    let sep = if clean.is_empty() { "" } else { "-" };
    format!(
        "dflt-{clean}{sep}{}-{n}-{}",
        std::process::id(),
        radix36(nanos % 36u128.pow(8))
    )
}

fn radix36(mut v: u128) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(digits[(v % 36) as usize]);
        v /= 36;
        if v == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ascii")
}

/// Runs `cmd` to completion with a deadline, panicking (after killing it) if
/// the deadline passes.
pub fn run_with_timeout(cmd: Command, timeout: Duration) -> Output {
    try_run_with_timeout(cmd, timeout).unwrap_or_else(|e| panic!("{e}"))
}

/// Like [`run_with_timeout`] but reports failure to start or finish as an
/// error, for cleanup code that must not panic while a test unwinds.
pub fn try_run_with_timeout(mut cmd: Command, timeout: Duration) -> Result<Output, String> {
    let shown = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child: Child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {shown}: {e}"))?;
    // Drained on threads so a chatty child cannot block on a full pipe
    // while we wait for it.
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out_t = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let err_t = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => return Err(format!("waiting for {shown}: {e}")),
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{shown} did not finish within {timeout:?}; killed it"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Output {
        status,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    })
}

fn docker_command<S: AsRef<OsStr>>(args: &[S]) -> Command {
    let mut cmd = Command::new("docker");
    cmd.args(args);
    scrub_env(&mut cmd);
    cmd
}

/// Panics with a clear message unless a Docker engine answers. Tests must
/// fail, never skip, without one. The probe runs once per process.
pub fn require_engine() {
    static PROBE: OnceLock<Result<String, String>> = OnceLock::new();
    let probe = PROBE.get_or_init(|| {
        let mut cmd = docker_command(&["info", "--format", "{{.ServerVersion}}"]);
        cmd.stdin(Stdio::null());
        match cmd.output() {
            Err(e) => Err(format!("cannot run the `docker` CLI: {e}")),
            Ok(out) if !out.status.success() => Err(format!(
                "`docker info` failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Ok(out) => Ok(String::from_utf8_lossy(&out.stdout).trim().to_string()),
        }
    });
    if let Err(why) = probe {
        panic!(
            "these tests need a running Docker engine reachable by the `docker` CLI \
             (start dockerd, or set DOCKER_HOST): {why}"
        );
    }
}

/// A command's output as text, for messages and matching.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The engine the `docker` CLI (and the plugin) reach when no `-H` is
/// given, as a `-H` value: `DOCKER_HOST` when set, else the default socket.
/// Use it instead of spelling out `unix:///var/run/docker.sock`, so a test
/// run against another engine stays on that engine.
pub fn docker_host() -> String {
    match std::env::var("DOCKER_HOST") {
        Ok(host) if !host.trim().is_empty() => host.trim().to_string(),
        _ => DEFAULT_DOCKER_HOST.to_string(),
    }
}

/// Where the docker CLI looks for the engine when nothing says otherwise.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// How the engine stores images, which decides what an image ID is and
/// what `docker save` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageStore {
    /// A graphdriver (overlay2, fuse-overlayfs, vfs, ...): the image ID is
    /// the config digest and `docker save` writes uncompressed layer tars.
    GraphDriver,
    /// The containerd image store (`driver-type` is
    /// `io.containerd.snapshotter.v1`): the image ID is the manifest
    /// digest, and `docker save` writes an OCI layout whose layer blobs are
    /// usually gzip-compressed.
    Containerd,
}

/// The image store of the engine the `docker` CLI reaches (probed once per
/// process).
pub fn image_store() -> ImageStore {
    static STORE: OnceLock<ImageStore> = OnceLock::new();
    *STORE.get_or_init(|| {
        let status = docker_ok(&["info", "--format", "{{json .DriverStatus}}"]);
        if status.contains("io.containerd.snapshotter.v1") {
            ImageStore::Containerd
        } else {
            ImageStore::GraphDriver
        }
    })
}

/// Whether the engine uses the containerd image store.
pub fn containerd_store() -> bool {
    image_store() == ImageStore::Containerd
}

/// `docker <args>` with a deadline; the caller interprets the exit status.
pub fn docker<S: AsRef<OsStr>>(args: &[S]) -> Output {
    require_engine();
    run_with_timeout(docker_command(args), DOCKER_TIMEOUT)
}

/// `docker load -q -i PATH` of a fixture archive, which must succeed.
/// Engine 26.1 (containerd 1.7) now and then fails a load with "parent
/// snapshot … does not exist" while other tests load and remove images; the
/// content is in the store by then and another load unpacks it.
pub fn load_ok(path: &Path) {
    let path = path.to_str().expect("temp path is UTF-8");
    let args = ["load", "-q", "-i", path];
    for _ in 0..2 {
        if docker(&args).status.success() {
            return;
        }
    }
    docker_ok(&args);
}

/// `docker <args>` that must succeed; returns stdout.
pub fn docker_ok<S: AsRef<OsStr>>(args: &[S]) -> String {
    let out = docker(args);
    check_ok(&out, &format!("docker {}", show_args(args)));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn show_args<S: AsRef<OsStr>>(args: &[S]) -> String {
    args.iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Panics with the command's output unless it exited 0.
pub fn check_ok(out: &Output, what: &str) {
    if !out.status.success() {
        panic!(
            "{what} failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The first element of `docker image inspect <reference>`.
pub fn inspect(reference: &str) -> serde_json::Value {
    let text = docker_ok(&["image", "inspect", reference]);
    let mut all: Vec<serde_json::Value> = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("bad `docker image inspect` JSON for {reference}: {e}"));
    assert!(
        !all.is_empty(),
        "`docker image inspect {reference}` returned nothing"
    );
    all.swap_remove(0)
}

/// Whether the engine knows `reference` (a tag or an ID) as an image.
pub fn image_exists(reference: &str) -> bool {
    docker(&["image", "inspect", "--format", "{{.Id}}", reference])
        .status
        .success()
}

/// Number of layers in the image's `RootFS.Layers`.
pub fn image_layer_count(reference: &str) -> usize {
    let info = inspect(reference);
    info["RootFS"]["Layers"]
        .as_array()
        .unwrap_or_else(|| panic!("{reference} has no RootFS.Layers: {info}"))
        .len()
}

/// `docker run --rm --network none <reference> <args...>`.
pub fn run_image(reference: &str, args: &[&str]) -> Output {
    let mut all = vec!["run", "--rm", "--network", "none", reference];
    all.extend_from_slice(args);
    docker(&all)
}

/// An image this test owns. Dropping it removes the tag it was given, and
/// the image itself when no other tag still points at it, so a panicking
/// test cannot leave it behind nor take another test's image with it.
#[derive(Debug)]
pub struct TestImage {
    pub reference: String,
    pub id: String,
}

impl TestImage {
    /// Takes ownership of an image that something else (usually the plugin)
    /// created, so it is removed with the test.
    ///
    /// When `reference` does not exist (the plugin failed before tagging),
    /// `id` is empty and the guard only removes the tag should it appear;
    /// this does not panic, so that the test's own check of the plugin's
    /// outcome reports the real failure. Any use of the empty `id` fails.
    pub fn track(reference: &str) -> TestImage {
        let out = docker(&["image", "inspect", "--format", "{{.Id}}", reference]);
        let id = if out.status.success() {
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        } else {
            String::new()
        };
        TestImage {
            reference: reference.to_string(),
            id,
        }
    }
}

/// For guards' Drop: a panic there while a test unwinds would abort the
/// whole test binary, so failures are ignored.
fn docker_quiet<S: AsRef<OsStr>>(args: &[S]) -> Option<Output> {
    try_run_with_timeout(docker_command(args), DOCKER_TIMEOUT).ok()
}

impl Drop for TestImage {
    fn drop(&mut self) {
        // A forced removal by tag only untags when other tags exist, so it
        // cannot delete an image that another test has tagged too.
        docker_quiet(&["rmi", "-f", &self.reference]);
        if self.id.is_empty() {
            return;
        }
        // On the containerd store an image whose last tag goes while a
        // container still uses it stays on as a dangling image: this
        // removes it too.
        let format = "{{len .RepoTags}}";
        let tags = docker_quiet(&["image", "inspect", "--format", format, &self.id]);
        let untagged = tags.is_some_and(|t| {
            t.status.success() && String::from_utf8_lossy(&t.stdout).trim() == "0"
        });
        if untagged {
            docker_quiet(&["rmi", "-f", &self.id]);
        }
    }
}

/// A container this test created; removed (forcibly) on drop.
#[derive(Debug)]
pub struct TestContainer {
    pub id: String,
}

impl TestContainer {
    /// `docker create` with a unique name and no network; `args` follow the
    /// image reference (command and its arguments).
    pub fn create(reference: &str, args: &[&str]) -> TestContainer {
        let name = unique("ctr");
        let mut all = vec!["create", "--network", "none", "--name", &name, reference];
        all.extend_from_slice(args);
        let id = docker_ok(&all).trim().to_string();
        assert!(!id.is_empty(), "docker create printed no container ID");
        TestContainer { id }
    }
}

impl Drop for TestContainer {
    fn drop(&mut self) {
        docker_quiet(&["rm", "-f", "-v", &self.id]);
    }
}

/// Path of the plugin binary that cargo built for this test run.
pub fn plugin_path() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_docker-flatten"))
}

/// Runs the plugin binary directly (not through the docker CLI).
pub fn plugin<S: AsRef<OsStr>>(args: &[S]) -> Output {
    run_with_timeout(plugin_command(args), PLUGIN_TIMEOUT)
}

/// The plugin binary as a command not yet started, for tests that must
/// act on the running process.
pub fn plugin_command<S: AsRef<OsStr>>(args: &[S]) -> Command {
    require_engine();
    let mut cmd = Command::new(plugin_path());
    cmd.args(args);
    scrub_env(&mut cmd);
    cmd
}

/// The real `docker` CLI with the plugin installed in a private
/// `DOCKER_CONFIG`, so tests never depend on (or modify) the user's plugins.
pub struct Cli {
    config_dir: tempfile::TempDir,
}

impl Cli {
    pub fn new() -> Cli {
        let config_dir = tempfile::Builder::new()
            .prefix("dflt-docker-config-")
            .tempdir()
            .expect("create temp DOCKER_CONFIG");
        let plugins = config_dir.path().join("cli-plugins");
        std::fs::create_dir(&plugins).expect("create cli-plugins dir");
        let target = plugin_path();
        assert!(
            target.exists(),
            "plugin binary {} does not exist",
            target.display()
        );
        #[cfg(unix)]
        std::os::unix::fs::symlink(&target, plugins.join("docker-flatten"))
            .expect("symlink plugin into cli-plugins");
        #[cfg(windows)]
        std::fs::copy(&target, plugins.join("docker-flatten.exe"))
            .expect("copy plugin into cli-plugins");
        Cli { config_dir }
    }

    pub fn config_dir(&self) -> &Path {
        self.config_dir.path()
    }

    /// `docker <args>` through the real CLI, with only our plugin installed.
    pub fn docker<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        run_with_timeout(self.command(args), PLUGIN_TIMEOUT)
    }

    /// The same, as a command not yet started.
    pub fn command<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        require_engine();
        let mut cmd = docker_command(args);
        cmd.env("DOCKER_CONFIG", self.config_dir.path());
        cmd
    }

    /// Like [`Cli::docker`], with extra environment variables (set after the
    /// private `DOCKER_CONFIG`, so they may replace it too).
    pub fn docker_env<S: AsRef<OsStr>>(&self, args: &[S], env: &[(&str, &OsStr)]) -> Output {
        require_engine();
        let mut cmd = docker_command(args);
        cmd.env("DOCKER_CONFIG", self.config_dir.path());
        for (k, v) in env {
            cmd.env(k, v);
        }
        run_with_timeout(cmd, PLUGIN_TIMEOUT)
    }
}

impl Default for Cli {
    fn default() -> Self {
        Cli::new()
    }
}

/// What exists on the engine at one moment, for checking that an operation
/// left nothing behind. Other tests run concurrently on the same engine, so
/// compare only objects you can attribute to your test (e.g. by image ID).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineState {
    pub containers: BTreeSet<String>,
    pub volumes: BTreeSet<String>,
    pub dangling_images: BTreeSet<String>,
}

impl EngineState {
    /// What exists now but did not in `earlier`.
    pub fn appeared_since(&self, earlier: &EngineState) -> EngineState {
        EngineState {
            containers: self
                .containers
                .difference(&earlier.containers)
                .cloned()
                .collect(),
            volumes: self.volumes.difference(&earlier.volumes).cloned().collect(),
            dangling_images: self
                .dangling_images
                .difference(&earlier.dangling_images)
                .cloned()
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.containers.is_empty() && self.volumes.is_empty() && self.dangling_images.is_empty()
    }
}

fn lines(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

pub fn engine_state() -> EngineState {
    EngineState {
        containers: lines(&docker_ok(&["ps", "-aq", "--no-trunc"])),
        volumes: lines(&docker_ok(&["volume", "ls", "-q"])),
        dangling_images: lines(&docker_ok(&[
            "images",
            "-q",
            "--no-trunc",
            "--filter",
            "dangling=true",
        ])),
    }
}

/// IDs of all containers (running or not) created from `image` (tag or ID).
pub fn containers_of(image: &str) -> BTreeSet<String> {
    lines(&docker_ok(&[
        "ps",
        "-aq",
        "--no-trunc",
        "--filter",
        &format!("ancestor={image}"),
    ]))
}
