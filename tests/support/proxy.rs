//! A fault-injecting proxy in front of the real engine: it listens on a
//! loopback TCP port, forwards every connection to the engine that the
//! other helpers use (`DOCKER_HOST`, else the default socket), and breaks
//! the requests that match its rule. The engine stays real; only the wire
//! between the plugin and the engine misbehaves.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
#[cfg(unix)]
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use super::engine::{docker_host, DEFAULT_DOCKER_HOST};

/// Where the proxy forwards to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    #[cfg(unix)]
    Unix(String),
    /// `host:port` of a plain-TCP engine.
    Tcp(String),
}

impl Upstream {
    /// The engine the `docker` CLI reaches with this `DOCKER_HOST` value:
    /// `unix://PATH` or `tcp://HOST:PORT` (no TLS); unset or empty means
    /// the default socket. Anything else panics, rather than letting the
    /// proxy talk to a different engine than the rest of the test.
    pub fn from_docker_host(host: Option<&str>) -> Upstream {
        match host.map(str::trim).filter(|h| !h.is_empty()) {
            None => Upstream::from_docker_host(Some(DEFAULT_DOCKER_HOST)),
            Some(h) => {
                #[cfg(unix)]
                if let Some(path) = h.strip_prefix("unix://") {
                    return Upstream::Unix(path.to_string());
                }
                if let Some(addr) = h.strip_prefix("tcp://") {
                    Upstream::Tcp(addr.trim_end_matches('/').to_string())
                } else {
                    panic!("the test proxy can forward to unix:// or tcp:// engines, not DOCKER_HOST={h}")
                }
            }
        }
    }

    /// The engine the other helpers use (see [`docker_host`]).
    pub fn from_env() -> Upstream {
        Upstream::from_docker_host(Some(&docker_host()))
    }

    fn connect(&self) -> io::Result<EngineStream> {
        Ok(match self {
            #[cfg(unix)]
            Upstream::Unix(path) => EngineStream::Unix(UnixStream::connect(path)?),
            Upstream::Tcp(addr) => EngineStream::Tcp(TcpStream::connect(addr.as_str())?),
        })
    }
}

/// A connection to the engine, of either kind.
enum EngineStream {
    #[cfg(unix)]
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl EngineStream {
    fn try_clone(&self) -> io::Result<EngineStream> {
        Ok(match self {
            #[cfg(unix)]
            EngineStream::Unix(s) => EngineStream::Unix(s.try_clone()?),
            EngineStream::Tcp(s) => EngineStream::Tcp(s.try_clone()?),
        })
    }

    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            #[cfg(unix)]
            EngineStream::Unix(s) => s.shutdown(how),
            EngineStream::Tcp(s) => s.shutdown(how),
        }
    }
}

impl Read for EngineStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            #[cfg(unix)]
            EngineStream::Unix(s) => s.read(buf),
            EngineStream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for EngineStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            #[cfg(unix)]
            EngineStream::Unix(s) => s.write(buf),
            EngineStream::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            #[cfg(unix)]
            EngineStream::Unix(s) => s.flush(),
            EngineStream::Tcp(s) => s.flush(),
        }
    }
}

/// What to break, on requests whose request line contains `matches`.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Forward this many bytes of the engine's response, then cut the connection.
    CutResponse { matches: &'static str, after: u64 },
    /// [`Fault::CutResponse`] for the matching requests after the first
    /// `skip`, which pass untouched.
    CutLaterResponse {
        matches: &'static str,
        skip: usize,
        after: u64,
    },
    /// Forward this many bytes of the engine's (chunked) response body,
    /// then end it as an engine ends a stream that failed after it began:
    /// an error's JSON as the last chunk, and the body closed properly.
    /// The first `skip` matching requests pass untouched.
    ErrorInBody {
        matches: &'static str,
        skip: usize,
        after: u64,
    },
    /// Forward this many bytes of the client's request, then cut the connection.
    CutRequest { matches: &'static str, after: u64 },
    /// Answer with this HTTP status instead of asking the engine.
    Respond { matches: &'static str, status: u16 },
    /// Forward this many bytes of the engine's response, then forward
    /// nothing more, holding both connections open until the client goes:
    /// a run frozen mid-stream, for interrupting it. Counts as fired once
    /// the bytes have gone through.
    StallResponse { matches: &'static str, after: u64 },
    /// Never pass the request on and never answer, until the client goes.
    Hang { matches: &'static str },
    /// Forward this many bytes of the client's request, then take the rest
    /// from the client without passing it on, until the client goes: the
    /// engine holds a request cut in the middle of its upload (a load, an
    /// import). Counts as fired once the bytes have gone through.
    StallRequest { matches: &'static str, after: u64 },
}

impl Fault {
    fn matches(&self) -> &'static str {
        match *self {
            Fault::CutResponse { matches, .. }
            | Fault::CutLaterResponse { matches, .. }
            | Fault::ErrorInBody { matches, .. }
            | Fault::CutRequest { matches, .. }
            | Fault::Respond { matches, .. }
            | Fault::StallResponse { matches, .. }
            | Fault::StallRequest { matches, .. }
            | Fault::Hang { matches } => matches,
        }
    }
}

pub struct Proxy {
    addr: SocketAddr,
    upstream: Upstream,
    fired: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    requests: Arc<std::sync::Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// A proxy in front of the engine named by `DOCKER_HOST` (see
    /// [`Upstream::from_env`]), the one the other helpers talk to.
    pub fn start(fault: Option<Fault>) -> Proxy {
        Proxy::start_to(Upstream::from_env(), fault)
    }

    /// A proxy in front of the `DOCKER_HOST` engine with several faults;
    /// a request meets the first one it matches.
    pub fn start_with(faults: Vec<Fault>) -> Proxy {
        Proxy::serving(Upstream::from_env(), faults)
    }

    /// A proxy in front of `upstream`.
    pub fn start_to(upstream: Upstream, fault: Option<Fault>) -> Proxy {
        Proxy::serving(upstream, fault.into_iter().collect())
    }

    fn serving(upstream: Upstream, faults: Vec<Fault>) -> Proxy {
        let faults = Arc::new(faults);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let fired = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (fired2, stop2, upstream2) = (fired.clone(), stop.clone(), upstream.clone());
        let connections2 = connections.clone();
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let requests2 = requests.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                connections2.fetch_add(1, Ordering::SeqCst);
                let fired = fired2.clone();
                let upstream = upstream2.clone();
                let faults = faults.clone();
                let requests = requests2.clone();
                thread::spawn(move || serve(client, &upstream, &faults, &fired, &requests));
            }
        });
        Proxy {
            addr,
            upstream,
            fired,
            connections,
            requests,
            stop,
        }
    }

    /// The engine this proxy forwards to.
    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// The `-H` value that reaches the engine through this proxy.
    pub fn host(&self) -> String {
        format!("tcp://{}", self.addr)
    }

    /// How many connections clients have opened through the proxy.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// The first request line of every connection, e.g. `GET /v1.41/info HTTP/1.1`.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("requests lock").clone()
    }

    /// How many requests the fault has hit.
    pub fn fired(&self) -> usize {
        self.fired.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(
    mut client: TcpStream,
    upstream: &Upstream,
    faults: &[Fault],
    fired: &AtomicUsize,
    requests: &std::sync::Mutex<Vec<String>>,
) {
    // Read up to the end of the request line to decide what to do.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") && head.len() < 8192 {
        match client.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let line = String::from_utf8_lossy(&head).into_owned();
    requests
        .lock()
        .expect("requests lock")
        .push(line.trim_end().to_owned());
    let earlier = |matches: &str| {
        let requests = requests.lock().expect("requests lock");
        requests.iter().filter(|r| r.contains(matches)).count() - 1
    };
    let fault = faults
        .iter()
        .copied()
        .find(|f| line.contains(f.matches()))
        .and_then(|f| match f {
            Fault::CutLaterResponse {
                matches,
                skip,
                after,
            } => (earlier(matches) >= skip).then_some(Fault::CutResponse { matches, after }),
            Fault::ErrorInBody { matches, skip, .. } => (earlier(matches) >= skip).then_some(f),
            f => Some(f),
        });
    if fault.is_some()
        && !matches!(
            fault,
            Some(Fault::StallResponse { .. } | Fault::StallRequest { .. })
        )
    {
        fired.fetch_add(1, Ordering::SeqCst);
    }
    if let Some(Fault::Hang { .. }) = fault {
        let mut sink = [0u8; 4096];
        while matches!(client.read(&mut sink), Ok(n) if n > 0) {}
        return;
    }
    if let Some(Fault::Respond { status, .. }) = fault {
        let body = format!("{{\"message\":\"fault injected by the test proxy ({status})\"}}");
        let response = format!(
            "HTTP/1.1 {status} Injected\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = client.write_all(response.as_bytes());
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    let Ok(mut engine) = upstream.connect() else {
        return;
    };
    if engine.write_all(&head).is_err() {
        return;
    }
    let (up_limit, down_limit) = match fault {
        Some(Fault::CutRequest { after, .. }) => {
            (Some(after.saturating_sub(head.len() as u64)), None)
        }
        Some(Fault::CutResponse { after, .. }) => (None, Some(after)),
        _ => (None, None),
    };
    let (Ok(client2), Ok(engine2)) = (client.try_clone(), engine.try_clone()) else {
        return;
    };
    if let Some(Fault::StallRequest { after, .. }) = fault {
        let limit = after.saturating_sub(head.len() as u64);
        let down = thread::spawn(move || pump_back(engine2, client2, None));
        let (mut from, mut to) = (client, engine);
        if copy(&mut from, &mut to, Some(limit)) {
            fired.fetch_add(1, Ordering::SeqCst);
            // The rest goes nowhere, until the client goes.
            let _ = std::io::copy(&mut from, &mut std::io::sink());
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
        let _ = down.join();
        return;
    }
    let up = thread::spawn(move || pump(client2, engine2, up_limit));
    if let Some(Fault::StallResponse { after, .. }) = fault {
        let (mut from, mut to) = (engine, client);
        if copy(&mut from, &mut to, Some(after)) {
            fired.fetch_add(1, Ordering::SeqCst);
            // Hold on until the client gives up on the request.
            let _ = up.join();
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
        return;
    }
    if let Some(Fault::ErrorInBody { after, .. }) = fault {
        let _ = error_in_body(engine, &mut client, after);
        let _ = client.shutdown(Shutdown::Both);
        let _ = up.join();
        return;
    }
    pump_back(engine, client, down_limit);
    let _ = up.join();
}

/// [`Fault::ErrorInBody`]: the response's head as it is, then its chunks
/// re-framed up to `after` body bytes, then the error and the last chunk.
fn error_in_body(engine: EngineStream, client: &mut TcpStream, after: u64) -> std::io::Result<()> {
    let mut from = std::io::BufReader::new(engine);
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        from.read_exact(&mut byte)?;
        head.push(byte[0]);
    }
    client.write_all(&head)?;
    let chunked = String::from_utf8_lossy(&head)
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    assert!(chunked, "ErrorInBody needs a chunked response");
    let mut sent = 0u64;
    while sent < after {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut from, &mut line)?;
        let size = u64::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)
            .map_err(std::io::Error::other)?;
        if size == 0 {
            break;
        }
        let mut data = vec![0u8; size as usize];
        from.read_exact(&mut data)?;
        let mut crlf = [0u8; 2];
        from.read_exact(&mut crlf)?;
        let keep = data.len().min((after - sent) as usize);
        write!(client, "{keep:x}\r\n")?;
        client.write_all(&data[..keep])?;
        client.write_all(b"\r\n")?;
        sent += keep as u64;
    }
    let error = br#"{"message":"fault injected by the test proxy: the save failed midway"}"#;
    write!(client, "{:x}\r\n", error.len())?;
    client.write_all(error)?;
    client.write_all(b"\r\n0\r\n\r\n")?;
    client.flush()
}

/// Copies until end of input or `limit` bytes; returns whether the limit cut it.
fn copy(from: &mut impl Read, to: &mut impl Write, limit: Option<u64>) -> bool {
    let mut sent = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let want = limit.map_or(buf.len(), |l| (l - sent).min(buf.len() as u64) as usize);
        if want == 0 {
            return true;
        }
        match from.read(&mut buf[..want]) {
            Ok(0) | Err(_) => return false,
            Ok(n) if to.write_all(&buf[..n]).is_err() => return false,
            Ok(n) => sent += n as u64,
        }
    }
}

fn pump(mut from: TcpStream, mut to: EngineStream, limit: Option<u64>) {
    if copy(&mut from, &mut to, limit) {
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    } else {
        let _ = to.shutdown(Shutdown::Write);
    }
}

fn pump_back(mut from: EngineStream, mut to: TcpStream, limit: Option<u64>) {
    copy(&mut from, &mut to, limit);
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
