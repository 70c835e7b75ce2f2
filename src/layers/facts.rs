//! What `--verify` compares of one tar entry, compact: its type, mode,
//! owner, mtime, size, the SHA-256 of its content, device numbers, and (in
//! its layer's byte arena) its symlink target and xattrs. Computed while
//! the layer streams by; no header is kept.

use std::io::{self, Read};

use sha2::{Digest, Sha256};

use crate::tar::header::number;
use crate::tar::reader::Entry;

/// One entry's facts; its target and xattrs live in an arena beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// The typeflag, `0` for every kind of regular file.
    pub typeflag: u8,
    /// Permission bits, setuid, setgid and sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds since the epoch, and nanoseconds (PAX `mtime`).
    pub mtime: i64,
    pub nanos: u32,
    pub size: u64,
    /// SHA-256 of the data; zeros for entries without data.
    pub content: [u8; 32],
    /// Major and minor, for character and block devices.
    pub device: (u32, u32),
    extra: u32,
    link_len: u32,
    xattrs_len: u32,
}

impl Facts {
    /// A directory the engine makes for what lies under it: root, 0755.
    pub fn implicit_dir() -> Facts {
        Facts {
            typeflag: b'5',
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 0,
            nanos: 0,
            size: 0,
            content: [0; 32],
            device: (0, 0),
            extra: 0,
            link_len: 0,
            xattrs_len: 0,
        }
    }

    /// Reads `entry`'s facts, hashing its data from `data` (a regular
    /// file's; nothing is read for others), and appends its symlink target
    /// and xattrs to `arena`.
    pub fn read(entry: &Entry, data: &mut dyn Read, arena: &mut Vec<u8>) -> io::Result<Facts> {
        let h = &entry.header;
        let pax = |key: &[u8]| {
            entry
                .pax
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_slice())
        };
        let decimal = |key: &[u8]| {
            pax(key)
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.parse::<u64>().ok())
        };
        let typeflag = match entry.typeflag {
            b'\0' | b'7' => b'0',
            t => t,
        };
        let field = |range: std::ops::Range<usize>| number(&h[range]).unwrap_or(0);
        let (mtime, nanos) = match pax(b"mtime").and_then(parse_time) {
            Some(t) => t,
            None => (field(136..148) as i64, 0),
        };
        let mut content = [0u8; 32];
        if typeflag == b'0' {
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 64 << 10];
            loop {
                let n = data.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            content = hasher.finalize().into();
        }
        let device = if matches!(typeflag, b'3' | b'4') {
            (field(329..337) as u32, field(337..345) as u32)
        } else {
            (0, 0)
        };
        let extra = arena.len() as u32;
        let link: &[u8] = if typeflag == b'2' { &entry.link } else { b"" };
        arena.extend_from_slice(link);
        let mut xattrs: Vec<(&[u8], &[u8])> = entry
            .pax
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(b"SCHILY.xattr.")?, v.as_slice())))
            .collect();
        // The last record of a name wins, as readers apply them.
        xattrs.reverse();
        xattrs.sort_by(|a, b| a.0.cmp(b.0));
        xattrs.dedup_by(|a, b| a.0 == b.0);
        let start = arena.len();
        for (k, v) in xattrs {
            put(arena, k);
            put(arena, v);
        }
        Ok(Facts {
            typeflag,
            mode: (field(100..108) & 0o7777) as u32,
            uid: decimal(b"uid").unwrap_or_else(|| field(108..116)) as u32,
            gid: decimal(b"gid").unwrap_or_else(|| field(116..124)) as u32,
            mtime,
            nanos,
            size: if typeflag == b'0' { entry.size } else { 0 },
            content,
            device,
            extra,
            link_len: link.len() as u32,
            xattrs_len: (arena.len() - start) as u32,
        })
    }

    /// The symlink target.
    pub fn link<'a>(&self, arena: &'a [u8]) -> &'a [u8] {
        &arena[self.extra as usize..][..self.link_len as usize]
    }

    /// The xattrs, sorted by name.
    pub fn xattrs<'a>(&self, arena: &'a [u8]) -> Vec<(&'a [u8], &'a [u8])> {
        let start = (self.extra + self.link_len) as usize;
        let mut rest = &arena[start..][..self.xattrs_len as usize];
        let mut out = Vec::new();
        while !rest.is_empty() {
            let (k, after) = take(rest);
            let (v, after) = take(after);
            out.push((k, v));
            rest = after;
        }
        out
    }
}

fn put(arena: &mut Vec<u8>, bytes: &[u8]) {
    arena.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    arena.extend_from_slice(bytes);
}

fn take(bytes: &[u8]) -> (&[u8], &[u8]) {
    let len = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
    (&bytes[4..4 + len], &bytes[4 + len..])
}

/// A PAX time, `SECONDS[.FRACTION]`, possibly negative.
fn parse_time(value: &[u8]) -> Option<(i64, u32)> {
    let text = std::str::from_utf8(value).ok()?;
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (secs, fraction) = text.split_once('.').unwrap_or((text, ""));
    let secs: i64 = secs.parse().ok()?;
    let digits: String = fraction.chars().take(9).collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let nanos: u32 = if digits.is_empty() {
        0
    } else {
        format!("{digits:0<9}").parse().ok()?
    };
    // -1.5 is 1.5 s before the epoch: -2 s and 0.5 s after that.
    Some(match (negative, nanos) {
        (false, n) => (secs, n),
        (true, 0) => (-secs, 0),
        (true, n) => (-secs - 1, 1_000_000_000 - n),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tar::reader::{End, TarReader};

    #[test]
    fn pax_times_keep_their_fraction() {
        assert_eq!(
            parse_time(b"1600000000.5"),
            Some((1_600_000_000, 500_000_000))
        );
        assert_eq!(parse_time(b"12"), Some((12, 0)));
        assert_eq!(parse_time(b"-1.25"), Some((-2, 750_000_000)));
        assert_eq!(parse_time(b"x"), None);
    }

    #[test]
    fn facts_of_a_file_with_xattrs_and_a_symlink() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(3);
        h.set_mode(0o4755);
        h.set_uid(7);
        h.set_mtime(99);
        b.append_pax_extensions([
            ("SCHILY.xattr.user.b", &b"2"[..]),
            ("SCHILY.xattr.user.a", b"1"),
            ("mtime", b"99.000000001"),
        ])
        .unwrap();
        b.append_data(&mut h, "f", &b"abc"[..]).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Symlink);
        b.append_link(&mut h, "l", "target").unwrap();
        let tar = b.into_inner().unwrap();
        let mut reader = TarReader::new(&tar[..], End::Strict);
        let mut arena = Vec::new();
        let e = reader.next_entry().unwrap().unwrap();
        let f = Facts::read(&e, &mut reader.data(), &mut arena).unwrap();
        assert_eq!((f.typeflag, f.mode, f.uid, f.size), (b'0', 0o4755, 7, 3));
        assert_eq!((f.mtime, f.nanos), (99, 1));
        assert_eq!(f.content, <[u8; 32]>::from(Sha256::digest(b"abc")));
        assert_eq!(
            f.xattrs(&arena),
            [(&b"user.a"[..], &b"1"[..]), (&b"user.b"[..], &b"2"[..])]
        );
        let e = reader.next_entry().unwrap().unwrap();
        let l = Facts::read(&e, &mut reader.data(), &mut arena).unwrap();
        assert_eq!(l.link(&arena), b"target");
        assert!(l.xattrs(&arena).is_empty());
        assert_eq!(f.link(&arena), b"");
    }
}
