//! Files: the `-o` archive while it is written ([`Staged`]), positional
//! reads of the spooled layers, and the error for an output path that is a
//! directory.
//!
//! - **Staged.** The archive is written beside FILE and gets FILE's name only
//!   when whole. On Linux it is an unnamed file (`O_TMPFILE`) that no death
//!   of the process can leave behind: it is linked into the directory at the
//!   end (`linkat` through `/proc/self/fd`; under a temporary name and
//!   renamed over FILE when FILE exists, a window of two system calls).
//!   Where the filesystem has no unnamed files, and on macOS and Windows, it
//!   is a named sibling whose name carries its [`Owner`]: a later run that
//!   writes into that directory removes it once that owner is gone
//!   ([`sweep_staged`]).
//! - **Mode.** The archive gets the mode a new file gets on unix, 0666 less
//!   the umask. Windows has no mode: the file keeps the access list it
//!   inherited from its directory, as any new file there, and tempfile's
//!   rename gives it normal (not temporary) attributes.
//! - **Positional reads** do not move a shared cursor on unix (`pread`); on
//!   Windows `seek_read` moves the file's cursor, which nothing reading a
//!   spool uses: a spool is written whole before it is read, and only read
//!   at offsets.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::os::process::{Liveness, Owner};

/// A file being written in `dir`, named only when whole.
pub struct Staged {
    file: File,
    name: Staging,
}

enum Staging {
    /// An `O_TMPFILE`: no name until [`Staged::persist`].
    #[cfg(target_os = "linux")]
    Unnamed { dir: PathBuf },
    /// A named sibling, removed if dropped unfinished.
    Named(tempfile::TempPath),
}

impl Staged {
    /// Creates the file in `dir`, for a final name starting `name`.
    pub fn new(dir: &Path, name: &str) -> io::Result<Staged> {
        #[cfg(target_os = "linux")]
        if let Some(file) = unnamed(dir)? {
            return Ok(Staged {
                file,
                name: Staging::Unnamed {
                    dir: dir.to_owned(),
                },
            });
        }
        let (file, path) = tempfile::Builder::new()
            .prefix(&staged_prefix(name))
            .suffix(&format!(".{}.tmp", Owner::me().file_tag()))
            .tempfile_in(dir)?
            .into_parts();
        Ok(Staged {
            file,
            name: Staging::Named(path),
        })
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// A path that opens the file as written so far.
    pub fn path(&self) -> PathBuf {
        match &self.name {
            #[cfg(target_os = "linux")]
            Staging::Unnamed { .. } => {
                use std::os::fd::AsRawFd;
                PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
            }
            Staging::Named(path) => path.to_path_buf(),
        }
    }

    /// Gives the file its final name `to`, replacing what was there.
    pub fn persist(self, to: &Path) -> io::Result<()> {
        match self.name {
            #[cfg(target_os = "linux")]
            Staging::Unnamed { dir } => link_unnamed(&self.file, &dir, to),
            Staging::Named(path) => {
                give_new_file_mode(&path)?;
                path.persist(to).map_err(|e| e.error)
            }
        }
    }
}

/// The start of a staged file's name: `.FILE.`, FILE cut so that the whole
/// name stays within the 255 bytes file systems allow.
fn staged_prefix(name: &str) -> String {
    let mut cut = name.len().min(96);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(".{}.", &name[..cut])
}

/// An unnamed file in `dir`, or `None` where the file system (or kernel)
/// has none, or `/proc` is missing to link it later.
#[cfg(target_os = "linux")]
fn unnamed(dir: &Path) -> io::Result<Option<File>> {
    use std::os::unix::fs::OpenOptionsExt;
    if !Path::new("/proc/self/fd").is_dir() {
        return Ok(None);
    }
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o666)
        .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
        .open(dir);
    match opened {
        Ok(file) => Ok(Some(file)),
        // No unnamed files here (old kernels answer EISDIR): a named one.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

#[cfg(target_os = "linux")]
fn link_unnamed(file: &File, dir: &Path, to: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
    };
    let link = |at: &Path| {
        let from = c(Path::new(&format!("/proc/self/fd/{}", file.as_raw_fd())))?;
        let at = c(at)?;
        // SAFETY: both paths are NUL-terminated and live across the call.
        let done = unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                from.as_ptr(),
                libc::AT_FDCWD,
                at.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        };
        if done == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    match link(to) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        other => return other,
    }
    // FILE exists: a name of our own first, then the rename over FILE.
    let name = to
        .file_name()
        .map_or("out".into(), |n| n.to_string_lossy().into_owned());
    let owner = Owner::me().file_tag();
    for attempt in 0u32.. {
        let temp = dir.join(format!("{}{attempt}.{owner}.tmp", staged_prefix(&name)));
        match link(&temp) {
            Ok(()) => {
                return std::fs::rename(&temp, to).inspect_err(|_| {
                    let _ = std::fs::remove_file(&temp);
                })
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => {}
            Err(e) => return Err(e),
        }
    }
    unreachable!("the loop returns")
}

/// Removes the staged files in `dir` whose owner is gone; returns them.
pub fn sweep_staged(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.starts_with('.')
                && Owner::from_file_name(&name)
                    .is_some_and(|owner| owner.liveness() == Liveness::Gone)
        })
        .map(|entry| entry.path())
        .filter(|path| std::fs::remove_file(path).is_ok())
        .collect()
}

/// The error for an output path that names a directory.
pub fn is_a_directory() -> io::Error {
    #[cfg(unix)]
    {
        io::Error::from_raw_os_error(libc::EISDIR)
    }
    // Windows' own codes say "access denied" for this.
    #[cfg(windows)]
    {
        io::Error::other("Is a directory")
    }
}

/// Gives the file at `path` the mode a new file gets: the temporary file it
/// was made as is private.
pub fn give_new_file_mode(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // SAFETY: umask only swaps the process's mask; it is put back at once.
        let mask = unsafe {
            let mask = libc::umask(0o077);
            libc::umask(mask);
            mask
        };
        // mode_t is 16 bits on macOS, 32 on Linux.
        #[allow(clippy::useless_conversion)]
        let mode = u32::from(0o666 & !mask);
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    }
    #[cfg(windows)]
    {
        let _ = path;
        Ok(())
    }
}

/// Fills `buf` from `file` at `offset`, or fails (`UnexpectedEof` past its end).
pub fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(buf, offset)
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::FileExt;
        let (mut buf, mut offset) = (buf, offset);
        while !buf.is_empty() {
            match file.seek_read(buf, offset) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "failed to fill whole buffer",
                    ))
                }
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_at_offsets_and_fails_past_the_end() {
        let mut file = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
        file.write_all(&data).unwrap();
        let mut buf = vec![0; 5000];
        read_exact_at(&file, &mut buf, 65_000).unwrap();
        assert_eq!(buf, data[65_000..]);
        read_exact_at(&file, &mut buf[..3], 1).unwrap();
        assert_eq!(buf[..3], [1, 2, 3]);
        let past = read_exact_at(&file, &mut buf, 65_001).unwrap_err();
        assert_eq!(past.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_staged_file_has_no_name_until_whole() {
        let dir = tempfile::tempdir().unwrap();
        let names = || {
            let mut names: Vec<String> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        let to = dir.path().join("app.tar");
        for round in ["first", "second"] {
            let staged = Staged::new(dir.path(), "app.tar").unwrap();
            staged.file().write_all(round.as_bytes()).unwrap();
            assert_eq!(std::fs::read(staged.path()).unwrap(), round.as_bytes());
            #[cfg(target_os = "linux")]
            assert_eq!(
                names().len(),
                usize::from(round == "second"),
                "{:?}",
                names()
            );
            staged.persist(&to).unwrap();
            assert_eq!(names(), ["app.tar"]);
            assert_eq!(std::fs::read(&to).unwrap(), round.as_bytes());
        }
        let dropped = Staged::new(dir.path(), "app.tar").unwrap();
        drop(dropped);
        assert_eq!(names(), ["app.tar"]);
    }

    #[test]
    fn the_sweep_removes_only_what_a_gone_owner_staged() {
        let dir = tempfile::tempdir().unwrap();
        let mine = Owner::me().file_tag();
        let alive = dir.path().join(format!(".a.tar.x.{mine}.tmp"));
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .arg("--list")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let theirs = mine.replace(
            &format!("_{}_", std::process::id()),
            &format!("_{}_", child.id()),
        );
        child.wait().unwrap();
        let gone = dir.path().join(format!(".a.tar.y.{theirs}.tmp"));
        let other = dir.path().join(".a.tar.z.dfo_6f74686572__1_1.tmp");
        let plain = dir.path().join(".a.tar.tmp");
        for path in [&alive, &gone, &other, &plain] {
            std::fs::write(path, b"").unwrap();
        }
        assert_eq!(sweep_staged(dir.path()), std::slice::from_ref(&gone));
        assert!(alive.exists() && other.exists() && plain.exists() && !gone.exists());
    }

    #[test]
    fn a_directory_is_said_to_be_one() {
        let said = is_a_directory().to_string();
        assert!(said.starts_with("Is a directory"), "{said}");
    }

    #[cfg(unix)]
    #[test]
    fn the_archive_gets_a_new_files_mode() {
        use std::os::unix::fs::PermissionsExt;
        let file = tempfile::NamedTempFile::new().unwrap();
        assert_eq!(
            file.as_file().metadata().unwrap().permissions().mode() & 0o777,
            0o600
        );
        give_new_file_mode(file.path()).unwrap();
        // A fresh file made the ordinary way is the reference.
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, b"").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(file.path()), mode(&plain));
    }

    #[cfg(windows)]
    #[test]
    fn the_archive_keeps_what_it_inherited() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let before = file.as_file().metadata().unwrap().permissions();
        give_new_file_mode(file.path()).unwrap();
        assert_eq!(
            std::fs::metadata(file.path()).unwrap().permissions(),
            before
        );
    }
}
