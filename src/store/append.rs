//! Appending to an upload file: through the page cache, with direct I/O where
//! the filesystem allows it, or (the default) each by the size of the upload.
//!
//! Through the page cache, a new blob costs a copy into freshly allocated cache
//! pages, and with durable commits the bytes are pushed to the disk as they
//! arrive so the commit's fsync only waits for the tail. The pages stay cached,
//! so the first pull after a push is served from memory.
//!
//! With `O_DIRECT` the bytes go from one reused, aligned buffer straight to the
//! disk: no cache pages to allocate (on virtual machines whose memory the host
//! backs lazily, that allocation is most of a push's cost), nothing hot evicted
//! by a multi-gigabyte upload, and an fsync with only the tail and the metadata
//! left. The price is that the first pull reads the blob from disk.
//!
//! The default takes each where it wins: the first [`LARGE_UPLOAD`] bytes of an
//! upload go through the page cache (small blobs, configs and tokenizers, stay
//! cached for their first pull), everything past them, and every byte of an
//! append declared at least that long, goes direct (large weights push at disk
//! and hash speed; their first pull reads from disk, as it would once the cache
//! has turned over).
//!
//! Direct I/O needs the buffer, the file offset and the length aligned. Bytes are
//! staged in an aligned buffer and written whole; a head that does not start on a
//! block boundary (a chunk appended after an unaligned one) and the unaligned tail
//! go through the page cache. Where the filesystem refuses `O_DIRECT` (tmpfs on
//! older kernels, some network and overlay filesystems), every byte goes through
//! the page cache.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use bytes::Bytes;

use super::writeback::Writeback;

/// Direct writes are aligned to this: a page, and a multiple of the logical block
/// size of any common disk (512 or 4096 bytes).
const ALIGN: usize = 4096;
/// Bytes staged before a direct write: large enough that each write keeps the disk
/// streaming, small enough to keep memory flat per upload.
const STAGE: usize = 2 << 20;
/// Where the default starts writing around the page cache.
pub const LARGE_UPLOAD: u64 = 64 << 20;

/// How upload bytes are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadIo {
    /// Through the page cache.
    Buffered,
    /// With `O_DIRECT` wherever the filesystem allows it.
    Direct,
    /// Through the page cache up to `large` bytes into an upload, direct past
    /// them, and direct for all of an append declared at least `large` long.
    BySize { large: u64 },
}

impl Default for UploadIo {
    fn default() -> Self {
        UploadIo::BySize {
            large: LARGE_UPLOAD,
        }
    }
}

impl UploadIo {
    /// The upload offset from which an append declaring `declared_len` bytes
    /// writes direct, or `None` for none of it.
    pub fn direct_from(self, declared_len: Option<u64>) -> Option<u64> {
        match self {
            UploadIo::Buffered => None,
            UploadIo::Direct => Some(0),
            UploadIo::BySize { large } if declared_len.is_some_and(|n| n >= large) => Some(0),
            UploadIo::BySize { large } => Some(large),
        }
    }
}

/// An open upload file being appended to.
pub struct Appender {
    /// Buffered handle: unaligned head and tail, and everything without direct I/O.
    buffered: File,
    /// `O_DIRECT` handle, while direct writes work.
    direct: Option<File>,
    /// Offset of the next byte accepted (written or staged).
    end: u64,
    /// Offset where this appender started.
    start: u64,
    /// Bytes before this offset go through the page cache.
    direct_from: u64,
    /// Whether `finish` makes what was appended durable.
    durable: bool,
    /// Bytes `end - staged_len .. end`, not written yet; starts at an aligned offset.
    stage: Vec<u8>,
    stage_offset: usize,
    staged_len: usize,
    /// Early writeback for the buffered path, when commits are durable.
    writeback: Option<Writeback>,
    /// Tests: act as if the filesystem refused the next direct write.
    #[cfg(test)]
    refuse_direct: bool,
}

impl Appender {
    /// Opens `path` (which must exist) for appending after its first `start`
    /// bytes; anything past them is cut off (an append that was never recorded).
    /// `durable`: commits will fsync, so bytes are pushed to the disk as they
    /// arrive and [`Appender::finish`] syncs them. `direct_from`: the offset from
    /// which bytes are written with direct I/O, if at all.
    pub fn open(
        path: &Path,
        start: u64,
        durable: bool,
        direct_from: Option<u64>,
    ) -> std::io::Result<Appender> {
        let buffered = OpenOptions::new().write(true).open(path)?;
        let on_disk = buffered.metadata()?.len();
        if on_disk < start {
            return Err(super::fs::short_upload(on_disk, start));
        }
        if on_disk > start {
            buffered.set_len(start)?;
        }
        let direct = direct_from.and_then(|_| open_direct(path));
        let direct_from = direct_from.unwrap_or(u64::MAX);
        let mut stage = Vec::new();
        let mut stage_offset = 0;
        if direct.is_some() {
            // Over-allocate and use the aligned window: safe code, no custom allocator.
            stage = vec![0u8; STAGE + ALIGN];
            stage_offset = stage.as_ptr().align_offset(ALIGN);
        }
        let mut appender = Appender {
            buffered,
            direct,
            end: start,
            start,
            direct_from,
            durable,
            stage,
            stage_offset,
            staged_len: 0,
            writeback: durable.then(|| Writeback::new(start)),
            #[cfg(test)]
            refuse_direct: false,
        };
        if appender.stage_offset > ALIGN {
            appender.direct = None; // no aligned window (never on real platforms)
        }
        Ok(appender)
    }

    /// Bytes accepted since opening. After an error, what reached the file is
    /// what [`Appender::file_len`] reports.
    pub fn accepted(&self) -> u64 {
        self.end - self.start
    }

    /// Accepts `bufs`; staged bytes are written when the stage fills or at `finish`.
    pub fn append(&mut self, bufs: &[Bytes]) -> std::io::Result<()> {
        if self.direct.is_none() {
            return self.append_buffered(bufs);
        }
        // Nothing is staged before `direct_from`, so the page-cache head cannot
        // overtake staged bytes.
        let before = self.direct_from.saturating_sub(self.end);
        if before == 0 {
            return self.append_direct(bufs);
        }
        let total: u64 = bufs.iter().map(|b| b.len() as u64).sum();
        if total <= before {
            return self.append_buffered(bufs);
        }
        let (head, tail) = split_bufs(bufs, before);
        self.append_buffered(&head)?;
        self.append_direct(&tail)
    }

    fn append_direct(&mut self, bufs: &[Bytes]) -> std::io::Result<()> {
        for (i, buf) in bufs.iter().enumerate() {
            let mut data: &[u8] = buf;
            while !data.is_empty() {
                if self.direct.is_none() {
                    // Direct I/O was refused mid-batch: the rest goes buffered.
                    let mut rest = vec![buf.slice(buf.len() - data.len()..)];
                    rest.extend_from_slice(&bufs[i + 1..]);
                    return self.append_buffered(&rest);
                }
                let misaligned = (self.end % ALIGN as u64) as usize;
                if self.staged_len == 0 && misaligned != 0 {
                    // Up to the next block boundary through the page cache.
                    let n = data.len().min(ALIGN - misaligned);
                    self.buffered.write_all_at(&data[..n], self.end)?;
                    self.end += n as u64;
                    data = &data[n..];
                    continue;
                }
                let n = data.len().min(STAGE - self.staged_len);
                let at = self.stage_offset + self.staged_len;
                self.stage[at..at + n].copy_from_slice(&data[..n]);
                self.staged_len += n;
                self.end += n as u64;
                data = &data[n..];
                if self.staged_len == STAGE {
                    self.flush_stage()?;
                }
            }
        }
        Ok(())
    }

    /// Writes everything staged; the file then holds every accepted byte.
    /// Returns whether they are all durable: with durable commits, an append
    /// that reached the direct-I/O part of the upload is synced here (cheap: its
    /// bytes are on the disk already, and the page-cache head is written back by
    /// now); one that stayed in the page-cache head is not, as waiting for
    /// every small chunk to reach the disk cost a fifth of a chunked push. The
    /// commit syncs whatever is left.
    pub fn finish(&mut self) -> std::io::Result<bool> {
        self.flush_stage()?;
        if !self.durable {
            return Ok(true); // what `--no-fsync` promises: survives a crash, not a power cut
        }
        let past_head = self.end > self.direct_from;
        if past_head {
            self.buffered.sync_data()?;
        }
        Ok(past_head)
    }

    /// Offset where this appender started.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Length of the file on disk.
    pub fn file_len(&self) -> u64 {
        self.buffered
            .metadata()
            .map(|m| m.len())
            .unwrap_or(self.start)
    }

    fn append_buffered(&mut self, bufs: &[Bytes]) -> std::io::Result<()> {
        let mut file = &self.buffered;
        // Empty buffers are left out: a writev of nothing but them writes 0 bytes,
        // which would read as a failed write.
        let mut slices: Vec<std::io::IoSlice<'_>> = bufs
            .iter()
            .filter(|b| !b.is_empty())
            .map(|b| std::io::IoSlice::new(b))
            .collect();
        let mut rest = &mut slices[..];
        // pwritev would need the offset; the buffered handle is positioned by
        // seeking once, then plain writes keep it moving.
        use std::io::Seek;
        file.seek(std::io::SeekFrom::Start(self.end))?;
        while !rest.is_empty() {
            match file.write_vectored(rest) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.end += n as u64;
                    std::io::IoSlice::advance_slices(&mut rest, n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if let Some(wb) = self.writeback.as_mut() {
            wb.wrote_up_to(&self.buffered, self.end);
        }
        Ok(())
    }

    /// Writes the staged bytes: whole blocks directly, a partial last block through
    /// the page cache. Falls back to buffered writes for good if the filesystem
    /// refuses direct I/O.
    fn flush_stage(&mut self) -> std::io::Result<()> {
        if self.staged_len == 0 {
            return Ok(());
        }
        let offset = self.end - self.staged_len as u64;
        let staged = &self.stage[self.stage_offset..self.stage_offset + self.staged_len];
        let whole = self.staged_len / ALIGN * ALIGN;
        let mut done = 0;
        #[cfg(test)]
        if self.refuse_direct {
            self.direct = None;
        }
        if let Some(direct) = &self.direct {
            while done < whole {
                match direct.write_at(&staged[done..whole], offset + done as u64) {
                    Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                    // A short direct write still ends on a block boundary in
                    // practice; if not, the rest goes buffered below.
                    Ok(n) => done += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                        tracing::debug!("direct I/O refused; appending through the page cache");
                        self.direct = None;
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            if done % ALIGN != 0 {
                self.direct = None;
            }
        }
        self.buffered
            .write_all_at(&staged[done..], offset + done as u64)?;
        self.staged_len = 0;
        Ok(())
    }
}

/// `bufs` cut after `at` bytes (which fall inside them), as slices of the same buffers.
fn split_bufs(bufs: &[Bytes], at: u64) -> (Vec<Bytes>, Vec<Bytes>) {
    let (mut head, mut tail) = (Vec::new(), Vec::new());
    let mut left = at;
    for b in bufs {
        let n = b.len() as u64;
        if left >= n {
            head.push(b.clone());
            left -= n;
        } else if left > 0 {
            head.push(b.slice(..left as usize));
            tail.push(b.slice(left as usize..));
            left = 0;
        } else {
            tail.push(b.clone());
        }
    }
    (head, tail)
}

/// Opens `path` with `O_DIRECT`, or `None` where the platform or filesystem has none.
#[cfg(target_os = "linux")]
fn open_direct(path: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .ok()
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_path: &Path) -> Option<File> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
            .collect()
    }

    /// Appends `chunks` in separate appenders (as separate PATCH requests would),
    /// each split into the given buffers, and checks the file byte for byte.
    fn roundtrip(direct_from: Option<u64>, appends: &[&[usize]]) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("upload");
        std::fs::File::create(&path).unwrap();
        let mut expected = Vec::new();
        for (i, bufs) in appends.iter().enumerate() {
            let start = expected.len() as u64;
            let mut a = Appender::open(&path, start, i % 2 == 0, direct_from).unwrap();
            let mut total = 0;
            let bytes: Vec<Bytes> = bufs
                .iter()
                .enumerate()
                .map(|(j, &len)| {
                    let b = pattern(len, (i * 31 + j) as u8);
                    expected.extend_from_slice(&b);
                    total += len as u64;
                    Bytes::from(b)
                })
                .collect();
            for pair in bytes.chunks(2) {
                a.append(pair).unwrap();
            }
            a.finish().unwrap();
            assert_eq!(a.accepted(), total);
            assert_eq!(a.file_len(), expected.len() as u64);
        }
        assert!(
            std::fs::read(&path).unwrap() == expected,
            "file content differs"
        );
    }

    const CASES: &[&[&[usize]]] = &[
        // aligned, one stage and more
        &[&[STAGE], &[STAGE * 2 + ALIGN]],
        // unaligned tails followed by appends that start mid-block
        &[
            &[1],
            &[ALIGN - 1],
            &[ALIGN + 1, 7],
            &[STAGE + 3, 5000, 1 << 20],
        ],
        // many small buffers crossing the stage boundary
        &[&[100_000; 50], &[3], &[STAGE - 1, 2]],
        // an append of nothing
        &[&[], &[0], &[12_345]],
    ];

    #[test]
    fn direct_appends_keep_every_byte_in_order() {
        for case in CASES {
            roundtrip(Some(0), case);
        }
    }

    /// The switch from the page cache to direct writes falls anywhere: inside a
    /// buffer, on a block boundary, in a later append.
    #[test]
    fn appends_that_turn_direct_part_way_keep_every_byte_in_order() {
        for from in [1, ALIGN as u64, 100_001, STAGE as u64 + 3, 3 * STAGE as u64] {
            for case in CASES {
                roundtrip(Some(from), case);
            }
        }
    }

    /// An append starts where the record says, cutting off what a lost append
    /// left behind, and refuses a file that lost recorded bytes.
    #[test]
    fn an_append_starts_at_the_recorded_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("upload");
        std::fs::write(&path, b"kept|lost").unwrap();
        let mut a = Appender::open(&path, 5, false, None).unwrap();
        a.append(&[Bytes::from_static(b"new")]).unwrap();
        a.finish().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"kept|new");
        assert!(Appender::open(&path, 9, false, None).is_err());
    }

    #[test]
    fn the_default_writes_small_uploads_through_the_cache_and_large_ones_direct() {
        let io = UploadIo::default();
        assert_eq!(io.direct_from(Some(1 << 20)), Some(LARGE_UPLOAD));
        assert_eq!(io.direct_from(None), Some(LARGE_UPLOAD));
        assert_eq!(io.direct_from(Some(LARGE_UPLOAD)), Some(0));
        assert_eq!(UploadIo::Buffered.direct_from(Some(u64::MAX)), None);
        assert_eq!(UploadIo::Direct.direct_from(Some(1)), Some(0));
    }

    #[test]
    fn a_refused_direct_write_falls_back_without_losing_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("upload");
        std::fs::File::create(&path).unwrap();
        let parts: Vec<Bytes> = (0..5u8)
            .map(|i| Bytes::from(pattern(STAGE / 2 + 3, i)))
            .collect();
        let mut a = Appender::open(&path, 0, true, Some(0)).unwrap();
        a.append(&parts[..1]).unwrap();
        // The stage fills (and is refused) in the middle of this batch.
        a.refuse_direct = true;
        a.append(&parts[1..4]).unwrap();
        assert!(a.direct.is_none());
        a.append(&parts[4..]).unwrap();
        a.finish().unwrap();
        let expected: Vec<u8> = parts.iter().flat_map(|p| p.to_vec()).collect();
        assert_eq!(a.accepted(), expected.len() as u64);
        assert!(
            std::fs::read(&path).unwrap() == expected,
            "file content differs"
        );
    }

    #[test]
    fn buffered_appends_keep_every_byte_in_order() {
        for case in CASES {
            roundtrip(None, case);
        }
    }
}
