//! Tar's 512-byte block arithmetic and the headers we write, in one place:
//! the filter walks the export by it, the layer's root entry and the image
//! archives are written with it.

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

/// A ustar header block. `name` (at most 100 bytes) is written as is:
/// `tar::Header::set_path` would turn `./` into `.`. A size beyond the
/// 11 octal digits (8 GiB) is written in base-256, which every reader
/// (Go's `archive/tar` included) takes.
pub fn header(
    name: &[u8],
    kind: u8,
    size: u64,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
) -> ::tar::Header {
    let mut header = ::tar::Header::new_ustar();
    assert!(name.len() <= 100, "a ustar name is at most 100 bytes");
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.set_entry_type(::tar::EntryType::new(kind));
    header.set_size(size);
    header.set_mode(mode);
    header.set_uid(uid);
    header.set_gid(gid);
    header.set_mtime(mtime);
    header.set_cksum();
    header
}

/// The header of a regular file `name` of `size` bytes, mode 0644, owned by
/// root, dated the epoch: an image archive's member.
pub fn file_header(name: &str, size: u64) -> [u8; BLOCK] {
    let mut block = [0; BLOCK];
    block.copy_from_slice(header(name.as_bytes(), b'0', size, 0o644, 0, 0, 0).as_bytes());
    block
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

#[cfg(test)]
mod tests {
    use super::*;

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
