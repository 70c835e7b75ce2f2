//! Who owns a run's temporary objects, written into their labels (and into
//! the name of `-o`'s temporary file), so that a later run can tell whether
//! that owner is gone: the client's host name, and the process's ID and
//! start. An owner is judged only from the same host; the objects of
//! another client are never touched, nor those whose owner might be alive.
//!
//! - **Linux**: the start is the process's start time in clock ticks since
//!   boot (`/proc/PID/stat`), with the boot's ID and the PID namespace: a
//!   process ID from before a reboot names nobody, and one from another
//!   namespace (a container sharing the host name) cannot be looked up, so
//!   it counts as alive.
//! - **macOS**: a process that `kill(pid, 0)` cannot find is gone; a reused
//!   process ID reads as alive (the safe side).
//! - **Windows**: the process's creation time (`GetProcessTimes`); a
//!   process that cannot be opened for a query is gone.

use std::fmt;

/// A process on a client, as its labels name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    host: String,
    /// What the process ID is relative to: the boot and PID namespace on
    /// Linux; empty elsewhere.
    scope: String,
    pid: u32,
    /// When the process started, in the system's own unit; 0 where unknown.
    start: u64,
}

/// What is known of an owner from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Gone: what it left may be removed.
    Gone,
    /// Running, or perhaps running: leave its objects alone.
    Alive,
    /// Another client's (or unreadable): never touched.
    Elsewhere,
}

impl Owner {
    /// This process.
    pub fn me() -> Owner {
        let pid = std::process::id();
        Owner {
            host: host_name(),
            scope: scope(),
            pid,
            start: start_of(pid).unwrap_or(0),
        }
    }

    /// Reads a label's value; `None` if it is not one of ours.
    pub fn parse(label: &str) -> Option<Owner> {
        let mut parts = label.rsplitn(4, '/');
        let start = parts.next()?.parse().ok()?;
        let pid = parts.next()?.parse().ok()?;
        let scope = parts.next()?.to_owned();
        let host = parts.next()?.to_owned();
        (!host.is_empty()).then_some(Owner {
            host,
            scope,
            pid,
            start,
        })
    }

    /// Whether `self` is still running, as seen from this process.
    pub fn liveness(&self) -> Liveness {
        let me = Owner::me();
        if self.host != me.host {
            return Liveness::Elsewhere;
        }
        if *self == me {
            return Liveness::Alive;
        }
        judge(self, &me)
    }

    /// A short form for messages: `PID on HOST`.
    pub fn describe(&self) -> String {
        format!("process {} on {}", self.pid, self.host)
    }
}

impl Owner {
    /// The owner as a file name carries it: `dfo_HOSTHEX_SCOPE_PID_START`
    /// (the host in hex, which has no `_` or `.` then).
    pub fn file_tag(&self) -> String {
        let host: String = self.host.bytes().map(|b| format!("{b:02x}")).collect();
        format!(
            "{FILE_TAG}{host}_{}_{}_{}",
            self.scope, self.pid, self.start
        )
    }

    /// Reads the owner from a file name that ends in `.{file_tag}.tmp`.
    pub fn from_file_name(name: &str) -> Option<Owner> {
        let tag = name.strip_suffix(".tmp")?;
        let tag = &tag[tag.rfind(&format!(".{FILE_TAG}"))? + 1 + FILE_TAG.len()..];
        let mut parts = tag.split('_');
        let hex = parts.next()?;
        let scope = parts.next()?.to_owned();
        let pid = parts.next()?.parse().ok()?;
        let start = parts.next()?.parse().ok()?;
        if parts.next().is_some() || hex.len() % 2 != 0 || hex.is_empty() {
            return None;
        }
        let host = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        Some(Owner {
            host: String::from_utf8(host).ok()?,
            scope,
            pid,
            start,
        })
    }
}

const FILE_TAG: &str = "dfo_";

/// The label's value: `HOST/SCOPE/PID/START` (a host name has no `/`).
impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}",
            self.host, self.scope, self.pid, self.start
        )
    }
}

#[cfg(unix)]
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; the name is cut, not overrun.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = if ok {
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    clean_host(name)
}

#[cfg(windows)]
fn host_name() -> String {
    clean_host(std::env::var("COMPUTERNAME").unwrap_or_default())
}

/// A host name as a label carries it: no `/`, never empty.
fn clean_host(name: String) -> String {
    let name = name.replace('/', "_");
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

#[cfg(target_os = "linux")]
fn scope() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let namespace = std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let namespace: String = namespace.chars().filter(char::is_ascii_digit).collect();
    format!("{}.{namespace}", boot.trim())
}

#[cfg(not(target_os = "linux"))]
fn scope() -> String {
    String::new()
}

/// The start of process `pid`, or `None` if there is no such process.
#[cfg(target_os = "linux")]
fn start_of(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces and parentheses:
    // the fields are counted after its last `)`. starttime is field 22.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(all(unix, not(target_os = "linux")))]
fn start_of(_pid: u32) -> Option<u64> {
    None
}

#[cfg(windows)]
fn start_of(pid: u32) -> Option<u64> {
    use windows_sys::Win32::Foundation::{CloseHandle, FILETIME};
    use windows_sys::Win32::System::Threading::{
        GetProcessTimes, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION,
    };
    // SAFETY: the handle is checked, used for one query and closed.
    unsafe {
        let handle = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid);
        if handle.is_null() {
            return None;
        }
        let zero = FILETIME {
            dwLowDateTime: 0,
            dwHighDateTime: 0,
        };
        let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
        let ok = GetProcessTimes(handle, &mut created, &mut exited, &mut kernel, &mut user);
        CloseHandle(handle);
        (ok != 0)
            .then(|| (u64::from(created.dwHighDateTime) << 32) | u64::from(created.dwLowDateTime))
    }
}

#[cfg(target_os = "linux")]
fn judge(owner: &Owner, me: &Owner) -> Liveness {
    let boot = |scope: &str| scope.split('.').next().unwrap_or_default().to_owned();
    if boot(&owner.scope) != boot(&me.scope) {
        // The host rebooted since: every process of before is gone.
        return Liveness::Gone;
    }
    if owner.scope != me.scope {
        return Liveness::Elsewhere;
    }
    match start_of(owner.pid) {
        Some(start) if start == owner.start => Liveness::Alive,
        _ => Liveness::Gone,
    }
}

#[cfg(all(unix, not(target_os = "linux")))]
fn judge(owner: &Owner, _me: &Owner) -> Liveness {
    let Ok(pid) = libc::pid_t::try_from(owner.pid) else {
        return Liveness::Elsewhere;
    };
    // SAFETY: signal 0 checks that the process exists; nothing is sent.
    let found = unsafe { libc::kill(pid, 0) } == 0;
    if found || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM) {
        Liveness::Alive
    } else {
        Liveness::Gone
    }
}

#[cfg(windows)]
fn judge(owner: &Owner, _me: &Owner) -> Liveness {
    // A run is the user's own process, which opens for a query: one that
    // cannot be opened, or started at another time, is not the owner.
    match start_of(owner.pid) {
        Some(start) if start == owner.start => Liveness::Alive,
        _ => Liveness::Gone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_reads_back_from_its_label() {
        let me = Owner::me();
        assert_eq!(Owner::parse(&me.to_string()), Some(me.clone()));
        assert_eq!(Owner::parse("not an owner"), None);
        assert_eq!(Owner::parse("/x/1/2"), None);
        assert_eq!(me.liveness(), Liveness::Alive);
    }

    #[test]
    fn an_owner_reads_back_from_a_file_name() {
        let me = Owner::me();
        let name = format!(".app.v1.tar.x_y.{}.tmp", me.file_tag());
        assert_eq!(Owner::from_file_name(&name), Some(me.clone()));
        assert_eq!(Owner::from_file_name(".app.tar.tmp"), None);
        assert_eq!(Owner::from_file_name(".app.dfo_zz_a_1_2.tmp"), None);
        assert_eq!(Owner::from_file_name(&name.replace(".tmp", ".tar")), None);
    }

    #[test]
    fn another_host_is_never_judged() {
        let mut other = Owner::me();
        other.host.push_str("-elsewhere");
        other.pid = u32::MAX - 1;
        assert_eq!(other.liveness(), Liveness::Elsewhere);
    }

    #[test]
    fn a_process_that_ended_is_gone() {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .arg("--list")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut owner = Owner::me();
        owner.pid = child.id();
        owner.start = start_of(child.id()).unwrap_or(0);
        child.wait().unwrap();
        assert_eq!(owner.liveness(), Liveness::Gone);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_reused_process_id_is_not_its_old_owner() {
        let mut owner = Owner::me();
        owner.start += 1;
        assert_eq!(owner.liveness(), Liveness::Gone);
        let mut rebooted = Owner::me();
        rebooted.scope = format!("another-boot.{}", rebooted.scope);
        assert_eq!(rebooted.liveness(), Liveness::Gone);
        let mut contained = Owner::me();
        contained.scope.push('9');
        assert_eq!(contained.liveness(), Liveness::Elsewhere);
    }
}
