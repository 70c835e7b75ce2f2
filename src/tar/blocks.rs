//! Tar's 512-byte block arithmetic and the headers we write, in one place:
//! the filter walks the export by it, the layer's root entry and the image
//! archives are written with it, and [`write_header`] writes an entry whose
//! header the merge must change (a hardlink turned into a file, a whiteout
//! it makes): a POSIX ustar block, preceded by a PAX header for what does
//! not fit.

use std::io::{self, Write};

/// Everything in a tar archive is a whole number of these.
pub const BLOCK: usize = 512;

/// Two zero blocks end an archive.
pub const END_OF_ARCHIVE: [u8; 2 * BLOCK] = [0; 2 * BLOCK];

/// `size` rounded up to whole blocks.
pub fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK as u64) * BLOCK as u64
}

/// The zeros that follow an entry of `size` bytes.
pub fn padding(size: u64) -> usize {
    (padded(size) - size) as usize
}

/// A ustar header block. `name` (at most 100 bytes) is written as is (a
/// path library would turn `./` into `.`). A number too large for its
/// octal field (a size of 8 GiB or more) is written in base-256, which
/// every reader (Go's `archive/tar` included) takes.
pub fn header(
    name: &[u8],
    kind: u8,
    size: u64,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
) -> [u8; BLOCK] {
    assert!(name.len() <= 100, "a ustar name is at most 100 bytes");
    let mut block = [0u8; BLOCK];
    block[..name.len()].copy_from_slice(name);
    number(&mut block[100..108], u64::from(mode));
    number(&mut block[108..116], uid);
    number(&mut block[116..124], gid);
    number(&mut block[124..136], size);
    number(&mut block[136..148], mtime);
    block[156] = kind;
    block[257..263].copy_from_slice(b"ustar\0");
    block[263..265].copy_from_slice(b"00");
    let sum = super::header::checksum(&block);
    octal(&mut block[148..156], sum);
    block
}

/// A numeric field: octal, zero-padded and NUL-terminated, or base-256
/// where octal does not fit.
fn number(field: &mut [u8], value: u64) {
    let digits = 3 * (field.len() - 1);
    if digits < 64 && value >= 1 << digits {
        field.fill(0);
        let n = field.len();
        field[n - 8..].copy_from_slice(&value.to_be_bytes());
        field[0] |= 0x80;
    } else {
        octal(field, value);
    }
}

fn octal(field: &mut [u8], value: u64) {
    let n = field.len() - 1;
    field[..n].copy_from_slice(format!("{value:0n$o}").as_bytes());
    field[n] = 0;
}

/// The header of a regular file `name` of `size` bytes, mode 0644, owned by
/// root, dated the epoch: an image archive's member.
pub fn file_header(name: &str, size: u64) -> [u8; BLOCK] {
    header(name.as_bytes(), b'0', size, 0o644, 0, 0, 0)
}

/// One PAX record, `<len> <key>=<value>\n`; its length counts its own digits.
pub fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while body + len.to_string().len() != len {
        len = body + len.to_string().len();
    }
    let mut record = len.to_string().into_bytes();
    record.push(b' ');
    record.extend_from_slice(key);
    record.push(b'=');
    record.extend_from_slice(value);
    record.push(b'\n');
    record
}

/// Appends a regular file entry: header, `data`, padding.
pub fn append_file(out: &mut Vec<u8>, name: &str, data: &[u8]) {
    out.extend_from_slice(&file_header(name, data.len() as u64));
    out.extend_from_slice(data);
    out.resize(out.len() + padding(data.len() as u64), 0);
}

/// What a header written by [`write_header`] says.
pub struct NewHeader<'a> {
    pub typeflag: u8,
    pub path: &'a [u8],
    pub link: &'a [u8],
    pub size: u64,
    /// Mode, uid, gid, mtime, uname and gname are copied from this block
    /// as they are (so base-256 fields stay exact); `None` for root, 0644
    /// (0755 for directories), the epoch.
    pub meta: Option<&'a [u8; 512]>,
    /// Device numbers, raw fields.
    pub device: Option<(&'a [u8], &'a [u8])>,
    /// PAX records to carry (not `path`, `linkpath`, `size`: those follow
    /// from the fields above).
    pub pax: &'a [(Vec<u8>, Vec<u8>)],
}

/// Writes a header (with a PAX header before it when needed); the caller
/// writes the data and its padding.
pub fn write_header(out: &mut dyn Write, h: &NewHeader<'_>) -> io::Result<u64> {
    let mut block = [0u8; 512];
    let mut records = Vec::new();
    for (k, v) in h.pax {
        if !matches!(&k[..], b"path" | b"linkpath" | b"size") {
            records.extend(pax_record(k, v));
        }
    }
    let fits = |v: &[u8], n: usize| v.len() <= n && v.is_ascii();
    if fits(h.path, 100) {
        block[..h.path.len()].copy_from_slice(h.path);
    } else {
        records.extend(pax_record(b"path", h.path));
        let cut = &h.path[..h.path.len().min(100)];
        block[..cut.len()].copy_from_slice(cut);
    }
    if fits(h.link, 100) {
        block[157..157 + h.link.len()].copy_from_slice(h.link);
    } else {
        records.extend(pax_record(b"linkpath", h.link));
    }
    match h.meta {
        Some(meta) => {
            for range in [100..136, 136..148, 265..329] {
                block[range.clone()].copy_from_slice(&meta[range]);
            }
        }
        None => {
            let mode: &[u8] = if h.typeflag == b'5' {
                b"0000755\0"
            } else {
                b"0000644\0"
            };
            block[100..108].copy_from_slice(mode);
            block[108..116].copy_from_slice(b"0000000\0");
            block[116..124].copy_from_slice(b"0000000\0");
            block[136..148].copy_from_slice(b"00000000000\0");
        }
    }
    if h.size < 1 << 33 {
        block[124..136].copy_from_slice(format!("{:011o}\0", h.size).as_bytes());
    } else {
        records.extend(pax_record(b"size", h.size.to_string().as_bytes()));
        block[124..136].copy_from_slice(b"00000000000\0");
    }
    block[156] = h.typeflag;
    block[257..263].copy_from_slice(b"ustar\0");
    block[263..265].copy_from_slice(b"00");
    match h.device {
        Some((major, minor)) => {
            block[329..337].copy_from_slice(major);
            block[337..345].copy_from_slice(minor);
        }
        None => {
            block[329..337].copy_from_slice(b"0000000\0");
            block[337..345].copy_from_slice(b"0000000\0");
        }
    }
    let mut written = 0;
    if !records.is_empty() {
        let mut x = [0u8; 512];
        x[..14].copy_from_slice(b"././@PaxHeader");
        x[100..108].copy_from_slice(b"0000644\0");
        x[108..116].copy_from_slice(b"0000000\0");
        x[116..124].copy_from_slice(b"0000000\0");
        x[124..136].copy_from_slice(format!("{:011o}\0", records.len()).as_bytes());
        x[136..148].copy_from_slice(b"00000000000\0");
        x[156] = b'x';
        x[257..263].copy_from_slice(b"ustar\0");
        x[263..265].copy_from_slice(b"00");
        set_sum(&mut x);
        out.write_all(&x)?;
        records.resize(padded(records.len() as u64) as usize, 0);
        out.write_all(&records)?;
        written += 512 + records.len() as u64;
    }
    set_sum(&mut block);
    out.write_all(&block)?;
    Ok(written + 512)
}

fn set_sum(block: &mut [u8; 512]) {
    block[148..156].fill(b' ');
    let sum: u64 = block.iter().map(|&b| u64::from(b)).sum();
    block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same bytes as the tar crate writes for the same header, large
    /// numbers in base-256 included.
    #[test]
    fn headers_are_what_a_tar_library_writes() {
        for (name, kind, size, mode, uid, gid, mtime) in [
            (&b"./"[..], b'5', 0, 0o755, 0, 0, 0),
            (
                b"blobs/sha256/abc",
                b'0',
                12345,
                0o644,
                1000,
                1000,
                1_700_000_000,
            ),
            (b"big", b'0', 9 << 30, 0o4755, 3_000_000, 65534, 1 << 34),
        ] {
            let mut theirs = ::tar::Header::new_ustar();
            theirs.as_old_mut().name[..name.len()].copy_from_slice(name);
            theirs.set_entry_type(::tar::EntryType::new(kind));
            theirs.set_size(size);
            theirs.set_mode(mode);
            theirs.set_uid(uid);
            theirs.set_gid(gid);
            theirs.set_mtime(mtime);
            theirs.set_cksum();
            let ours = header(name, kind, size, mode, uid, gid, mtime);
            assert_eq!(
                &ours[..],
                theirs.as_bytes(),
                "{}",
                String::from_utf8_lossy(name)
            );
        }
    }

    #[test]
    fn entries_round_up_to_whole_blocks() {
        assert_eq!((padded(0), padding(0)), (0, 0));
        assert_eq!((padded(1), padding(1)), (512, 511));
        assert_eq!((padded(512), padding(512)), (512, 0));
        assert_eq!((padded(513), padding(513)), (1024, 511));
    }

    #[test]
    fn files_read_back_with_the_tar_crate_even_beyond_8_gib() {
        let mut out = Vec::new();
        append_file(&mut out, "blobs/sha256/ab", b"hello");
        out.extend_from_slice(&END_OF_ARCHIVE);
        assert_eq!(out.len() % BLOCK, 0);
        let mut archive = ::tar::Archive::new(&out[..]);
        let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(entry.path().unwrap().to_str(), Some("blobs/sha256/ab"));
        let mut data = String::new();
        std::io::Read::read_to_string(&mut entry, &mut data).unwrap();
        assert_eq!(data, "hello");
        let big = 9 << 30;
        let block = file_header("big", big);
        assert_eq!(
            ::tar::Header::from_byte_slice(&block).entry_size().unwrap(),
            big
        );
    }
}
