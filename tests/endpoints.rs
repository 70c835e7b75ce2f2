//! Engines behind TLS and ssh, reached through the real docker CLI.
//!
//! The engine stays the one under test ([`docker_host`]); in front of it
//! each test puts a private TLS terminator (`socat` with certificates made
//! by the `openssl` CLI) or a private `sshd` whose `docker system
//! dial-stdio` reaches that engine. Certificates, keys and configs live in
//! temp dirs; every server process is killed when its guard drops.
//!
//! Driven by unix tools (`socat`, `sshd`, an `ssh` wrapper script): on
//! Windows this file compiles to nothing.
#![cfg(unix)]

mod support;

use std::ffi::OsStr;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// A server process of this test; killed (and reaped) on drop.
struct Server {
    child: Child,
    name: &'static str,
    log: PathBuf,
}

impl Server {
    fn spawn(name: &'static str, mut cmd: Command, log: PathBuf) -> Server {
        let file = std::fs::File::create(&log).unwrap();
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        Server { child, name, log }
    }

    /// Waits until `port` accepts connections, failing with the server's log.
    fn wait_for(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited ({status}): {}", self.name, self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "{} does not listen on {port}: {}",
                self.name,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run(program: &str, args: &[&str], dir: &Path) {
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(dir);
    let out = run_with_timeout(cmd, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        text(&out.stderr)
    );
}

/// The engine under test as a socat address.
fn engine_address() -> String {
    let host = docker_host();
    if let Some(path) = host.strip_prefix("unix://") {
        format!("UNIX-CONNECT:{path}")
    } else if let Some(addr) = host.strip_prefix("tcp://") {
        format!("TCP:{}", addr.trim_end_matches('/'))
    } else {
        panic!("these tests put TLS in front of unix:// or tcp:// engines, not {host}")
    }
}

/// Two CAs, a server certificate from each (for 127.0.0.1), and a client
/// certificate from the first, made with the openssl CLI.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("dflt-pki-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        let key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for ca in ["ca", "rogue-ca"] {
            let (k, c, subj) = (
                format!("{ca}-key.pem"),
                format!("{ca}.pem"),
                format!("/CN=dflt {ca}"),
            );
            let mut args = vec!["req", "-x509"];
            args.extend(key);
            args.extend(["-keyout", &k, "-out", &c, "-days", "2", "-subj", &subj]);
            run("openssl", &args, d);
        }
        std::fs::write(
            d.join("server.ext"),
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        std::fs::write(d.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
        for (name, ca, ext) in [
            ("server", "ca", "server.ext"),
            ("rogue-server", "rogue-ca", "server.ext"),
            ("client", "ca", "client.ext"),
        ] {
            let (k, csr, c) = (
                format!("{name}-key.pem"),
                format!("{name}.csr"),
                format!("{name}-cert.pem"),
            );
            let subj = format!("/CN=dflt {name}");
            let mut args = vec!["req"];
            args.extend(key);
            args.extend(["-keyout", &k, "-out", &csr, "-subj", &subj]);
            run("openssl", &args, d);
            let (ca_cert, ca_key) = (format!("{ca}.pem"), format!("{ca}-key.pem"));
            run(
                "openssl",
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    &ca_cert,
                    "-CAkey",
                    &ca_key,
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-extfile",
                    ext,
                    "-out",
                    &c,
                ],
                d,
            );
        }
        Pki { dir }
    }

    fn path(&self, file: &str) -> String {
        self.dir.path().join(file).to_str().unwrap().to_owned()
    }

    /// A TLS front for the engine that requires a client certificate from
    /// the first CA and shows the server certificate `server`.
    fn serve(&self, server: &str) -> (Server, u16) {
        let port = free_port();
        let listen = format!(
            "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,cert={},key={},cafile={},verify=1",
            self.path(&format!("{server}-cert.pem")),
            self.path(&format!("{server}-key.pem")),
            self.path("ca.pem"),
        );
        let mut cmd = Command::new("socat");
        cmd.args([listen, engine_address()]);
        let log = self.dir.path().join(format!("socat-{port}.log"));
        let mut socat = Server::spawn("socat", cmd, log);
        socat.wait_for(port);
        (socat, port)
    }
}

fn small_image(name: &str) -> TestImage {
    let layers = vec![
        vec![Entry::dir("app"), Entry::file("app/a", "one")],
        vec![Entry::file("b", "two")],
    ];
    load_image(&ImageSpec::new(layers), &unique(name))
}

/// Checks that the plugin run succeeded and that `tag` is a one-layer image.
fn assert_flattened(out: &std::process::Output, tag: &TestImage, how: &str) {
    assert!(
        out.status.success(),
        "{how}: exit {:?}: {}",
        out.status.code(),
        text(&out.stderr)
    );
    let layers = docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{len .RootFS.Layers}}",
        &tag.reference,
    ]);
    assert_eq!(layers.trim(), "1", "{how}: layers of {}", tag.reference);
}

fn image_exists(reference: &str) -> bool {
    docker(&["image", "inspect", reference]).status.success()
}

#[test]
fn tls_with_verification_by_flags_env_and_context() {
    let pki = Pki::new();
    let (_socat, port) = pki.serve("server");
    let host = format!("tcp://127.0.0.1:{port}");
    let source = small_image("tls-src");
    let cli = Cli::new();

    // Flags, with the CLI's shorthand for a TCP host: no scheme.
    let bare = format!("127.0.0.1:{port}");
    let tag = unique("tls-flags");
    let out = cli.docker(&[
        "--tlsverify",
        "--tlscacert",
        &pki.path("ca.pem"),
        "--tlscert",
        &pki.path("client-cert.pem"),
        "--tlskey",
        &pki.path("client-key.pem"),
        "-H",
        &bare,
        "flatten",
        "-q",
        &source.reference,
        &tag,
    ]);
    let tag = TestImage::track(&tag);
    assert_flattened(&out, &tag, "--tlsverify flags and a host without a scheme");

    // DOCKER_TLS_VERIFY + DOCKER_CERT_PATH with the CLI's file names.
    let certs = tempfile::tempdir().unwrap();
    for (from, to) in [
        ("ca.pem", "ca.pem"),
        ("client-cert.pem", "cert.pem"),
        ("client-key.pem", "key.pem"),
    ] {
        std::fs::copy(pki.path(from), certs.path().join(to)).unwrap();
    }
    let tag = unique("tls-env");
    let out = cli.docker_env(
        &["flatten", "-q", &source.reference, &tag],
        &[
            ("DOCKER_HOST", OsStr::new(&host)),
            ("DOCKER_TLS_VERIFY", OsStr::new("1")),
            ("DOCKER_CERT_PATH", certs.path().as_os_str()),
        ],
    );
    let tag = TestImage::track(&tag);
    assert_flattened(&out, &tag, "DOCKER_TLS_VERIFY");

    // A context holding the TLS material.
    let context = unique("tls-ctx");
    let spec = format!(
        "host={host},ca={},cert={},key={}",
        pki.path("ca.pem"),
        pki.path("client-cert.pem"),
        pki.path("client-key.pem")
    );
    let out = cli.docker(&["context", "create", &context, "--docker", &spec]);
    assert!(
        out.status.success(),
        "context create: {}",
        text(&out.stderr)
    );
    let tag = unique("tls-context");
    let out = cli.docker(&[
        "--context",
        &context,
        "flatten",
        "-q",
        &source.reference,
        &tag,
    ]);
    let tag = TestImage::track(&tag);
    assert_flattened(&out, &tag, "context with TLS material");
}

#[test]
fn tls_without_verification_accepts_an_unknown_server() {
    let pki = Pki::new();
    // The server's certificate comes from a CA the client never heard of.
    let (_socat, port) = pki.serve("rogue-server");
    let source = small_image("tls-noverify-src");
    let cli = Cli::new();
    let tag = unique("tls-noverify");
    let out = cli.docker(&[
        "--tls",
        "--tlscert",
        &pki.path("client-cert.pem"),
        "--tlskey",
        &pki.path("client-key.pem"),
        "-H",
        &format!("tcp://127.0.0.1:{port}"),
        "flatten",
        "-q",
        &source.reference,
        &tag,
    ]);
    let tag = TestImage::track(&tag);
    assert_flattened(&out, &tag, "--tls without verification");
}

#[test]
fn tls_with_the_wrong_ca_fails_as_a_certificate_problem() {
    let pki = Pki::new();
    let (_socat, port) = pki.serve("server");
    let host = format!("tcp://127.0.0.1:{port}");
    let source = small_image("tls-wrongca-src");
    let cli = Cli::new();
    let tag = unique("tls-wrongca");
    let started = Instant::now();
    let out = cli.docker(&[
        "--tlsverify",
        "--tlscacert",
        &pki.path("rogue-ca.pem"),
        "--tlscert",
        &pki.path("client-cert.pem"),
        "--tlskey",
        &pki.path("client-key.pem"),
        "-H",
        &host,
        "flatten",
        &source.reference,
        &tag,
    ]);
    let _guard = TestImage::track(&tag);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&host), "{err}");
    assert!(err.contains("certificate"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    assert!(!image_exists(&tag), "{tag} was created");
}

/// A private sshd on a free port, whose sessions' `docker` reaches the
/// engine under test, and a `PATH` whose `ssh` uses a private client config
/// (OpenSSH reads `~/.ssh/config` from the password database, not `$HOME`,
/// so a wrapper passing `-F` stands in for the user's config).
struct Sshd {
    dir: tempfile::TempDir,
    port: u16,
    _server: Server,
}

impl Sshd {
    fn start() -> Sshd {
        let dir = tempfile::Builder::new()
            .prefix("dflt-sshd-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        let p = |f: &str| d.join(f).to_str().unwrap().to_owned();
        for key in ["host_key", "client_key"] {
            run(
                "ssh-keygen",
                &["-q", "-t", "ed25519", "-N", "", "-f", &p(key)],
                d,
            );
        }
        let public = std::fs::read_to_string(d.join("client_key.pub")).unwrap();
        std::fs::write(
            d.join("authorized_keys"),
            format!("environment=\"DOCKER_HOST={}\" {public}", docker_host()),
        )
        .unwrap();
        let port = free_port();
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\n\
                 AuthorizedKeysFile {}\nPermitRootLogin prohibit-password\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 StrictModes no\nUsePAM no\nPermitUserEnvironment yes\n",
                p("host_key"),
                p("sshd.pid"),
                p("authorized_keys"),
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("ssh_config"),
            format!(
                "Host 127.0.0.1\n  Port {port}\n  IdentityFile {}\n  IdentitiesOnly yes\n\
                 StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n  BatchMode yes\n",
                p("client_key"),
            ),
        )
        .unwrap();
        let bin = d.join("bin");
        std::fs::create_dir(&bin).unwrap();
        let wrapper = bin.join("ssh");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec /usr/bin/ssh -F {} \"$@\"\n",
                p("ssh_config")
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        // sshd refuses to start without its privilege separation directory.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let mut cmd = Command::new("/usr/sbin/sshd");
        cmd.args(["-D", "-e", "-f", &p("sshd_config")]);
        let mut server = Server::spawn("sshd", cmd, d.join("sshd.log"));
        server.wait_for(port);
        Sshd {
            dir,
            port,
            _server: server,
        }
    }

    /// The environment that makes `ssh` use the private client config.
    fn path_env(&self) -> std::ffi::OsString {
        let mut path = self.dir.path().join("bin").into_os_string();
        path.push(":");
        path.push(std::env::var_os("PATH").unwrap_or_default());
        path
    }
}

/// ssh processes still running that talk to `port`.
fn ssh_processes(port: u16) -> Vec<String> {
    let wanted = format!("\0{port}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).into_owned())
        .filter(|c| c.contains("dial-stdio") && c.contains(&wanted) && c.contains("ssh"))
        .collect()
}

#[test]
fn ssh_by_host_and_by_context() {
    let sshd = Sshd::start();
    let path = sshd.path_env();
    let host = format!("ssh://root@127.0.0.1:{}", sshd.port);
    let source = small_image("ssh-src");
    let cli = Cli::new();

    let tag = unique("ssh-host");
    let out = cli.docker_env(
        &["-H", &host, "flatten", "-q", &source.reference, &tag],
        &[("PATH", &path)],
    );
    let tag = TestImage::track(&tag);
    assert_flattened(&out, &tag, "-H ssh://");

    let context = unique("ssh-ctx");
    let out = cli.docker(&[
        "context",
        "create",
        &context,
        "--docker",
        &format!("host={host}"),
    ]);
    assert!(
        out.status.success(),
        "context create: {}",
        text(&out.stderr)
    );
    let tag = unique("ssh-context");
    let out = cli.docker_env(
        &[
            "--context",
            &context,
            "flatten",
            "-q",
            &source.reference,
            &tag,
        ],
        &[("PATH", &path)],
    );
    let tag = TestImage::track(&tag);
    assert_flattened(&out, &tag, "context with an ssh host");

    // The plugin's ssh processes ended with it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ssh_processes(sshd.port).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(ssh_processes(sshd.port), Vec::<String>::new());
}

#[test]
fn unreachable_ssh_host_fails_clearly_and_fast() {
    // Nothing listens on a port we just freed.
    let host = format!("ssh://root@127.0.0.1:{}", free_port());
    let cli = Cli::new();
    let tag = unique("ssh-unreachable");
    let started = Instant::now();
    let out = cli.docker(&["-H", &host, "flatten", "img", &tag]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&host), "{err}");
    assert!(err.contains("ssh"), "{err}");
    assert!(err.contains("Connection refused"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    assert!(!image_exists(&tag));
}
