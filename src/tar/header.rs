//! One tar header block read: its checksum, numeric and string fields,
//! its path, and the PAX records of an extension header. The one parser of
//! tar headers: [`super::reader::TarReader`] reads entries with it, and the
//! export's filter ([`crate::source::filter`]) reads the blocks it passes on.

/// Whether the block's checksum is right: the sum of its bytes with the
/// checksum field as spaces, unsigned or (as some old tars wrote it) signed.
pub fn checksum_ok(block: &[u8; 512]) -> bool {
    let stored = number(&block[148..156]);
    let signed: i64 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                i64::from(b as i8)
            }
        })
        .sum();
    matches!(stored, Some(s) if s == checksum(block) || s as i64 == signed)
}

/// The checksum a header block should carry: the sum of its bytes, the
/// checksum field counted as spaces.
pub fn checksum(block: &[u8; 512]) -> u64 {
    block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(b)
            }
        })
        .sum()
}

/// The entry's type.
pub fn typeflag(block: &[u8; 512]) -> u8 {
    block[156]
}

/// The size field; `None` if it is not a number.
pub fn size(block: &[u8; 512]) -> Option<u64> {
    number(&block[124..136])
}

/// The link target field.
pub fn link(block: &[u8; 512]) -> &[u8] {
    field(&block[157..257])
}

/// A numeric header field: octal (NUL- or space-terminated) or GNU base-256.
pub fn number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        if field[0] & 0x40 != 0 {
            return None; // negative
        }
        let mut v: u64 = u64::from(field[0] & 0x3f);
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let text = field
        .iter()
        .copied()
        .skip_while(|&b| b == b' ' || b == 0)
        .take_while(|&b| b != b' ' && b != 0)
        .collect::<Vec<u8>>();
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(std::str::from_utf8(&text).ok()?, 8).ok()
}

/// A NUL-terminated string field.
pub fn field(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

/// The path: ustar prefix and name, or the name alone.
pub fn ustar_path(block: &[u8; 512]) -> Vec<u8> {
    let name = field(&block[..100]);
    let prefix = if &block[257..263] == b"ustar\0" {
        field(&block[345..500])
    } else {
        &[]
    };
    if prefix.is_empty() {
        name.to_vec()
    } else {
        [prefix, b"/", name].concat()
    }
}

/// An extension record's bytes without their trailing NULs.
pub fn trim_nul(mut v: Vec<u8>) -> Vec<u8> {
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}

/// PAX records, `<len> <key>=<value>\n`, split by their length prefix:
/// binary values (xattrs) may hold newlines.
pub fn parse_pax(mut data: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let space = data.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&data[..space]).ok()?.parse().ok()?;
        if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
            return None;
        }
        let record = &data[space + 1..len - 1];
        let eq = record.iter().position(|&b| b == b'=')?;
        out.push((record[..eq].to_vec(), record[eq + 1..].to_vec()));
        data = &data[len..];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_octal_and_base_256() {
        assert_eq!(number(b"0000644\0"), Some(0o644));
        assert_eq!(number(b"   17 \0"), Some(0o17));
        let mut big = [0u8; 12];
        big[0] = 0x80;
        big[11] = 1;
        big[10] = 2;
        assert_eq!(number(&big), Some(513));
    }
}
