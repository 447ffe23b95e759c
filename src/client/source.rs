//! Blob contents as a sequence of segments (bytes in memory, ranges of files on
//! disk, runs of zeros) that can be read from any offset without materialising
//! the blob: a raw layer is one file, a tar layer is headers and files
//! interleaved, a config or manifest is bytes.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::oci::{Algorithm, Digest};

/// One piece of a blob.
#[derive(Debug, Clone)]
pub enum Segment {
    Bytes(Arc<[u8]>),
    /// The first `len` bytes of a file, which must still have exactly that length.
    File {
        path: PathBuf,
        len: u64,
    },
    Zeros(u64),
}

impl Segment {
    pub fn len(&self) -> u64 {
        match self {
            Segment::Bytes(b) => b.len() as u64,
            Segment::File { len, .. } | Segment::Zeros(len) => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A blob's contents, cheap to clone.
#[derive(Debug, Clone)]
pub struct BlobSource {
    segments: Arc<[Segment]>,
    size: u64,
}

impl BlobSource {
    pub fn new(segments: Vec<Segment>) -> BlobSource {
        let segments: Vec<Segment> = segments.into_iter().filter(|s| !s.is_empty()).collect();
        let size = segments.iter().map(Segment::len).sum();
        BlobSource {
            segments: segments.into(),
            size,
        }
    }

    pub fn bytes(bytes: impl Into<Arc<[u8]>>) -> BlobSource {
        Self::new(vec![Segment::Bytes(bytes.into())])
    }

    pub fn file(path: &Path, len: u64) -> BlobSource {
        Self::new(vec![Segment::File {
            path: path.to_path_buf(),
            len,
        }])
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// A reader of the bytes from `offset` to the end.
    pub fn open_at(&self, offset: u64) -> io::Result<SourceReader> {
        if offset > self.size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("offset {offset} is past the end ({} bytes)", self.size),
            ));
        }
        let mut r = SourceReader {
            segments: self.segments.clone(),
            index: 0,
            current: None,
            skip: offset,
        };
        // Skip whole segments before the offset without opening them.
        while let Some(seg) = r.segments.get(r.index) {
            if r.skip < seg.len() {
                break;
            }
            r.skip -= seg.len();
            r.index += 1;
        }
        Ok(r)
    }

    /// Hashes the whole content (blocking; run it off the async runtime).
    pub fn digest(
        &self,
        algorithm: Algorithm,
        mut progress: impl FnMut(u64),
    ) -> io::Result<Digest> {
        let mut hasher = algorithm.hasher();
        let mut r = self.open_at(0)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            progress(n as u64);
        }
        Ok(hasher.finish())
    }
}

enum Current {
    Bytes(Arc<[u8]>, usize),
    File {
        file: File,
        left: u64,
        path: PathBuf,
    },
    Zeros(u64),
}

/// Reads a [`BlobSource`] from an offset. A file that got shorter since it was
/// planned is an error, never silently short content.
pub struct SourceReader {
    segments: Arc<[Segment]>,
    index: usize,
    current: Option<Current>,
    skip: u64,
}

impl SourceReader {
    fn open_next(&mut self) -> io::Result<bool> {
        let Some(seg) = self.segments.get(self.index) else {
            return Ok(false);
        };
        self.index += 1;
        let skip = std::mem::take(&mut self.skip);
        self.current = Some(match seg {
            Segment::Bytes(b) => Current::Bytes(b.clone(), skip as usize),
            Segment::Zeros(n) => Current::Zeros(n - skip),
            Segment::File { path, len } => {
                let mut file = File::open(path).map_err(|e| {
                    io::Error::new(e.kind(), format!("opening {}: {e}", path.display()))
                })?;
                let actual = file.metadata()?.len();
                if actual != *len {
                    return Err(changed(path, *len, actual));
                }
                file.seek(SeekFrom::Start(skip))?;
                Current::File {
                    file,
                    left: len - skip,
                    path: path.clone(),
                }
            }
        });
        Ok(true)
    }
}

fn changed(path: &Path, expected: u64, actual: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!(
            "{} changed while being pushed (expected {expected} bytes, found {actual})",
            path.display()
        ),
    )
}

impl Read for SourceReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let n = match &mut self.current {
                None => 0,
                Some(Current::Bytes(b, pos)) => {
                    let n = (b.len() - *pos).min(buf.len());
                    buf[..n].copy_from_slice(&b[*pos..*pos + n]);
                    *pos += n;
                    n
                }
                Some(Current::Zeros(left)) => {
                    let n = (*left).min(buf.len() as u64) as usize;
                    buf[..n].fill(0);
                    *left -= n as u64;
                    n
                }
                Some(Current::File { file, left, path }) => {
                    let want = (*left).min(buf.len() as u64) as usize;
                    if want == 0 {
                        0
                    } else {
                        let n = file.read(&mut buf[..want])?;
                        if n == 0 {
                            let len = self.segments[self.index - 1].len();
                            return Err(changed(path, len, len - *left));
                        }
                        *left -= n as u64;
                        n
                    }
                }
            };
            if n > 0 {
                return Ok(n);
            }
            if !self.open_next()? {
                return Ok(0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(src: &BlobSource, offset: u64) -> Vec<u8> {
        let mut out = Vec::new();
        src.open_at(offset).unwrap().read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn reads_segments_from_any_offset() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"hello world").unwrap();
        let src = BlobSource::new(vec![
            Segment::Bytes(Arc::from(&b"ab"[..])),
            Segment::File { path: p, len: 11 },
            Segment::Zeros(3),
            Segment::Bytes(Arc::from(&b""[..])),
            Segment::Bytes(Arc::from(&b"z"[..])),
        ]);
        let whole = b"abhello world\0\0\0z".to_vec();
        assert_eq!(src.size(), whole.len() as u64);
        for off in 0..=whole.len() {
            assert_eq!(read_all(&src, off as u64), whole[off..], "offset {off}");
        }
        assert!(src.open_at(whole.len() as u64 + 1).is_err());
        assert_eq!(
            src.digest(Algorithm::Sha256, |_| {}).unwrap(),
            Digest::sha256_of(&whole)
        );
    }

    #[test]
    fn a_file_that_changed_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"hello").unwrap();
        let src = BlobSource::file(&p, 5);
        std::fs::write(&p, b"hel").unwrap();
        let mut out = Vec::new();
        assert!(src.open_at(0).unwrap().read_to_end(&mut out).is_err());
    }
}
