//! An image archive given with `-i`: a file (a `docker save` archive, an
//! OCI layout as a tar), stdin (`-`), or an OCI layout directory. Each is
//! opened as one tar stream for the one reader of image archives
//! ([`super::walk`]); a directory's files are streamed as the members of
//! such a tar, so that it too is read once, by the same rules.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::tar::blocks;

/// An opened input, read from a blocking thread.
pub struct Opened {
    pub reader: Box<dyn Read + Send>,
    /// Its size in bytes where known before reading (not for stdin).
    pub size: Option<u64>,
}

/// Why the input cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error(
        "it is a directory but no OCI image layout (it has no oci-layout file); \
         give an image archive (docker save -o FILE) or an OCI layout"
    )]
    NotLayout,
}

/// Opens `path`: `-` is stdin.
pub fn open(path: &Path) -> Result<Opened, OpenError> {
    if path.as_os_str() == "-" {
        return Ok(Opened {
            reader: Box::new(io::stdin()),
            size: None,
        });
    }
    if path.is_dir() {
        return Ok(LayoutDir::open(path)?.into_opened());
    }
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    Ok(Opened {
        reader: Box::new(file),
        size: Some(size),
    })
}

/// An OCI layout directory's files as a tar stream: `oci-layout`,
/// `index.json`, then every blob. Nothing else of the directory is read.
struct LayoutDir {
    /// Member name, file path and size, in the order they stream.
    files: Vec<(String, PathBuf, u64)>,
}

impl LayoutDir {
    fn open(dir: &Path) -> Result<LayoutDir, OpenError> {
        if !dir.join("oci-layout").is_file() {
            return Err(OpenError::NotLayout);
        }
        let mut files = Vec::new();
        for name in ["oci-layout", "index.json"] {
            let path = dir.join(name);
            if path.is_file() {
                let size = path.metadata()?.len();
                files.push((name.to_owned(), path, size));
            }
        }
        let blobs = dir.join("blobs");
        let mut found = Vec::new();
        if blobs.is_dir() {
            for algorithm in std::fs::read_dir(&blobs)? {
                let algorithm = algorithm?;
                if !algorithm.file_type()?.is_dir() {
                    continue;
                }
                for blob in std::fs::read_dir(algorithm.path())? {
                    let blob = blob?;
                    let meta = blob.metadata()?;
                    if !meta.is_file() {
                        continue;
                    }
                    let name = format!(
                        "blobs/{}/{}",
                        algorithm.file_name().to_string_lossy(),
                        blob.file_name().to_string_lossy()
                    );
                    // A blob's name is its digest: no longer than a ustar name.
                    if name.len() <= 100 {
                        found.push((name, blob.path(), meta.len()));
                    }
                }
            }
        }
        // Small blobs (manifests, configs) first: the same order whatever
        // the directory's, so that the walk keeps little in memory.
        found.sort_by(|a, b| (a.2, &a.0).cmp(&(b.2, &b.0)));
        files.extend(found);
        Ok(LayoutDir { files })
    }

    fn into_opened(self) -> Opened {
        let size = self
            .files
            .iter()
            .map(|(_, _, size)| blocks::BLOCK as u64 + blocks::padded(*size))
            .sum::<u64>()
            + blocks::END_OF_ARCHIVE.len() as u64;
        Opened {
            reader: Box::new(DirTar {
                files: self.files.into_iter(),
                member: None,
                ended: false,
            }),
            size: Some(size),
        }
    }
}

/// The tar stream of a [`LayoutDir`]: one member at a time, each file
/// opened only when its turn comes.
struct DirTar {
    files: std::vec::IntoIter<(String, PathBuf, u64)>,
    /// The member being read: header, content, padding.
    member: Option<Box<dyn Read + Send>>,
    /// Whether the archive's end has been handed out as the last member.
    ended: bool,
}

impl Read for DirTar {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(member) = &mut self.member {
                match member.read(buf)? {
                    0 => {}
                    n => return Ok(n),
                }
            }
            self.member = match self.files.next() {
                Some((name, path, size)) => {
                    let header = blocks::file_header(&name, size);
                    let content = Whole {
                        file: File::open(&path)?.take(size),
                        left: size,
                    };
                    let padding = io::repeat(0).take(blocks::padding(size) as u64);
                    Some(Box::new(
                        io::Cursor::new(header).chain(content).chain(padding),
                    ))
                }
                None if !self.ended => {
                    self.ended = true;
                    Some(Box::new(&blocks::END_OF_ARCHIVE[..]))
                }
                None => return Ok(0),
            };
        }
    }
}

/// A file's content, which must be as long as it was when listed: one
/// that shrank while read would make the tar lie.
struct Whole {
    file: io::Take<File>,
    left: u64,
}

impl Read for Whole {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "a blob of the layout changed while it was read",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tar::reader::{End, TarReader};

    #[test]
    fn a_layout_directory_reads_as_a_tar_of_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(
            root.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        std::fs::write(root.join("index.json"), b"{}").unwrap();
        std::fs::create_dir_all(root.join("blobs/sha256")).unwrap();
        std::fs::write(root.join("blobs/sha256/aa"), vec![7u8; 1000]).unwrap();
        std::fs::write(root.join("blobs/sha256/bb"), b"x").unwrap();
        std::fs::write(root.join("stray"), b"not read").unwrap();
        let opened = open(root).unwrap();
        let mut bytes = Vec::new();
        { opened.reader }.read_to_end(&mut bytes).unwrap();
        assert_eq!(Some(bytes.len() as u64), opened.size);
        let mut tar = TarReader::new(&bytes[..], End::Strict);
        let mut names = Vec::new();
        while let Some(entry) = tar.next_entry().unwrap() {
            let mut data = Vec::new();
            tar.data().read_to_end(&mut data).unwrap();
            names.push((String::from_utf8(entry.path).unwrap(), data.len()));
        }
        assert_eq!(
            names,
            [
                ("oci-layout".to_owned(), 30),
                ("index.json".to_owned(), 2),
                ("blobs/sha256/bb".to_owned(), 1),
                ("blobs/sha256/aa".to_owned(), 1000),
            ]
        );
        let not_layout = tempfile::tempdir().unwrap();
        assert!(matches!(open(not_layout.path()), Err(OpenError::NotLayout)));
    }
}
