//! Files: the mode the `-o` archive gets, positional reads of the spooled
//! layers, and the error for an output path that is a directory.
//!
//! - **Mode.** The archive is written under a private temporary name and
//!   renamed over FILE when whole. On unix it is first given the mode a new
//!   file gets, 0666 less the umask. Windows has no mode: the file keeps the
//!   access list it inherited from its directory, as any new file there,
//!   and tempfile's rename gives it normal (not temporary) attributes.
//! - **Positional reads** do not move a shared cursor on unix (`pread`); on
//!   Windows `seek_read` moves the file's cursor, which nothing reading a
//!   spool uses: a spool is written whole before it is read, and only read
//!   at offsets.

use std::fs::File;
use std::io;
use std::path::Path;

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
