//! Filesystem `BlobStore`: `blobs/<alg>/<hex[0..2]>/<hex>`, uploads in `uploads/<id>`,
//! small writes staged in `tmp/`, blobs that failed verification set aside in
//! `quarantine/`, a blob a sweep is judging in `swept/`. Every commit is write, fsync, rename, fsync dir.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;

mod read;
mod tree;

use read::read_stream;
use tree::list_blob_tree;

use super::append::{Appender, UploadIo};
use super::blob::{
    AppendError, BlobReader, BlobStore, ByteRange, ByteStream, UploadState, verified,
};
use super::{StoreError, StoreResult};
use crate::oci::Digest;

/// Bytes per batch handed to the writer thread, and per read from disk: large
/// enough to amortise syscalls and thread wake-ups, small enough to keep memory flat.
const IO_CHUNK: usize = 1 << 20;
/// Most received buffers in one batch, so that a client sending tiny chunks cannot
/// make a batch's bookkeeping outgrow its bytes.
const BATCH_BUFFERS: usize = 256;
/// Batches in flight between the request task and the writer thread.
const WRITE_QUEUE: usize = 4;

pub struct FsBlobStore {
    root: PathBuf,
    fsync: bool,
    /// How upload bytes reach the disk: through the page cache or around it.
    io: UploadIo,
}

impl FsBlobStore {
    /// Opens (creating if needed) a blob tree under `root`. With `fsync` off, commits
    /// skip fsync: faster, but a power loss can lose recently committed blobs.
    pub fn open(root: &Path, fsync: bool) -> StoreResult<Self> {
        for dir in ["blobs", "uploads", "tmp", "quarantine", "swept"] {
            std::fs::create_dir_all(root.join(dir))?;
        }
        // Staged small writes never outlive a crash.
        if let Ok(entries) = std::fs::read_dir(root.join("tmp")) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let store = FsBlobStore {
            root: root.to_path_buf(),
            fsync,
            io: UploadIo::default(),
        };
        store.restore_swept()?;
        Ok(store)
    }

    /// How uploads are appended: with direct I/O where the filesystem allows it,
    /// through the page cache, or chosen by size (the default; see `append`).
    pub fn upload_io(mut self, io: UploadIo) -> Self {
        self.io = io;
        self
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        let hex = d.hex();
        self.root
            .join("blobs")
            .join(d.algorithm().as_str())
            .join(&hex[..2])
            .join(hex)
    }

    /// Where a sweep moves a blob while it judges it.
    fn swept_path(&self, d: &Digest) -> PathBuf {
        self.root
            .join("swept")
            .join(format!("{}-{}", d.algorithm().as_str(), d.hex()))
    }

    /// A sweep killed between moving a blob aside and deciding leaves it in
    /// `swept/`: it goes back where nothing has taken its place (if its links
    /// were removed, the next collection finds it unreferenced again), else it
    /// is dropped. Never lost, whichever way the sweep would have gone.
    fn restore_swept(&self) -> std::io::Result<()> {
        for e in std::fs::read_dir(self.root.join("swept"))? {
            let e = e?;
            let name = e.file_name().to_string_lossy().replacen('-', ":", 1);
            match name.parse::<Digest>() {
                Ok(d) if !self.blob_path(&d).exists() => {
                    let to = self.blob_path(&d);
                    if let Some(dir) = to.parent() {
                        std::fs::create_dir_all(dir)?;
                    }
                    std::fs::rename(e.path(), to)?;
                }
                _ => std::fs::remove_file(e.path())?,
            }
        }
        Ok(())
    }

    fn upload_path(&self, id: &str) -> PathBuf {
        self.root.join("uploads").join(id)
    }

    /// Renames `from` to the blob path of `d` durably. The new, verified bytes
    /// replace a copy already there: that copy may be the one that rotted, and a
    /// reader holding it open keeps reading it whole.
    async fn install(&self, from: PathBuf, d: &Digest) -> std::io::Result<()> {
        let to = self.blob_path(d);
        let fsync = self.fsync;
        blocking(move || {
            let dir = to
                .parent()
                .ok_or_else(|| std::io::Error::other("blob path has no parent"))?;
            std::fs::create_dir_all(dir)?;
            std::fs::rename(&from, &to)?;
            if fsync {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        })
        .await
    }
}

fn not_found_as_none<T>(r: std::io::Result<T>) -> std::io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// An upload file holding fewer bytes than its record says: lost under us (a
/// crash with `--no-fsync`, or someone else's hand).
pub(super) fn short_upload(on_disk: u64, recorded: u64) -> std::io::Error {
    std::io::Error::other(format!(
        "upload file holds {on_disk} bytes where {recorded} were recorded"
    ))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(std::io::Error::other)?
}

/// Writes the batches `rx` delivers into `appender`, then flushes it; returns the
/// bytes kept and the first error. Each wake-up writes every batch queued by then
/// on one blocking thread, which is released as soon as the queue is empty.
async fn write_batches(
    mut appender: Appender,
    mut rx: tokio::sync::mpsc::Receiver<Vec<Bytes>>,
) -> (u64, std::io::Result<bool>) {
    let mut result = Ok(());
    while let Some(first) = rx.recv().await {
        let wrote = tokio::task::spawn_blocking(move || {
            let mut result = appender.append(&first);
            while result.is_ok() {
                let Ok(batch) = rx.try_recv() else { break };
                result = appender.append(&batch);
            }
            (appender, rx, result)
        })
        .await;
        // A panicked write loses the appender; what it kept is unknown.
        let Ok(wrote) = wrote else {
            return (0, Err(std::io::Error::other("upload writer panicked")));
        };
        (appender, rx, result) = wrote;
        if result.is_err() {
            break;
        }
    }
    drop(rx); // the sender sees the failure at once
    let finished = tokio::task::spawn_blocking(move || {
        // Bytes received before a failure stay appended: the client resumes from
        // the upload's length.
        let result = result.and_then(|()| appender.finish());
        let kept = match result {
            Ok(_) => appender.accepted(),
            Err(_) => appender.file_len().saturating_sub(appender.start()),
        };
        (kept, result)
    })
    .await;
    finished.unwrap_or_else(|e| (0, Err(std::io::Error::other(e))))
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn stat(&self, digest: &Digest) -> StoreResult<Option<u64>> {
        // Inline, not on the blocking pool: every blob HEAD stats, and the hop
        // to a pool thread cost 2.4x the HEAD rate, where a stat of a cached
        // inode takes about a microsecond.
        let meta = not_found_as_none(std::fs::metadata(self.blob_path(digest)))?;
        Ok(meta.map(|m| m.len()))
    }

    async fn read(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> StoreResult<Option<BlobReader>> {
        let path = self.blob_path(digest);
        let opened = blocking(move || {
            let Some(mut file) = not_found_as_none(std::fs::File::open(path))? else {
                return Ok(None);
            };
            let size = file.metadata()?.len();
            let (start, len) = match range {
                Some(r) => (r.start, r.len()),
                None => (0, size),
            };
            if start > 0 {
                file.seek(SeekFrom::Start(start))?;
            }
            Ok(Some((file, size, len)))
        })
        .await?;
        Ok(opened.map(|(file, size, len)| BlobReader {
            size,
            stream: read_stream(file, len),
        }))
    }

    async fn read_all(&self, digest: &Digest, limit: u64) -> StoreResult<Option<Bytes>> {
        let path = self.blob_path(digest);
        let bytes = blocking(move || {
            let Some(file) = not_found_as_none(std::fs::File::open(&path))? else {
                return Ok(None);
            };
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::Read::take(file, limit + 1), &mut buf)?;
            Ok(Some(buf))
        })
        .await?;
        bytes.map(|b| verified(digest, b, limit)).transpose()
    }

    async fn write_all(&self, digest: &Digest, bytes: Bytes) -> StoreResult<()> {
        let tmp = self
            .root
            .join("tmp")
            .join(uuid::Uuid::new_v4().simple().to_string());
        let fsync = self.fsync;
        let this_tmp = tmp.clone();
        blocking(move || {
            let mut f = std::fs::File::create(&this_tmp)?;
            f.write_all(&bytes)?;
            if fsync {
                f.sync_all()?;
            }
            Ok(())
        })
        .await?;
        let result = self.install(tmp.clone(), digest).await;
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        Ok(result?)
    }

    async fn delete(&self, digest: &Digest) -> StoreResult<bool> {
        Ok(not_found_as_none(tokio::fs::remove_file(self.blob_path(digest)).await)?.is_some())
    }

    async fn quarantine(&self, digest: &Digest) -> StoreResult<bool> {
        let from = self.blob_path(digest);
        let dir = self.root.join("quarantine");
        let stamp = jiff::Timestamp::now().as_nanosecond();
        let to = dir.join(format!(
            "{}-{}-{stamp}",
            digest.algorithm().as_str(),
            digest.hex()
        ));
        let fsync = self.fsync;
        let moved = blocking(move || {
            std::fs::create_dir_all(&dir)?;
            let moved = not_found_as_none(std::fs::rename(&from, &to))?.is_some();
            if moved && fsync {
                std::fs::File::open(&dir)?.sync_all()?;
            }
            Ok(moved)
        })
        .await?;
        Ok(moved)
    }

    async fn sweep(
        &self,
        digest: &Digest,
        untouched_since: std::time::SystemTime,
        apply: bool,
    ) -> StoreResult<Option<u64>> {
        let path = self.blob_path(digest);
        let aside = self.swept_path(digest);
        Ok(blocking(move || {
            if !apply {
                let Some(meta) = not_found_as_none(std::fs::metadata(&path))? else {
                    return Ok(None);
                };
                return Ok((meta.modified()? < untouched_since).then_some(meta.len()));
            }
            // Moved away first, then judged: a commit landing meanwhile writes a
            // new file at the path, which stays whatever happens to this one.
            if not_found_as_none(std::fs::rename(&path, &aside))?.is_none() {
                return Ok(None);
            }
            let meta = std::fs::metadata(&aside)?;
            if meta.modified()? >= untouched_since {
                // Committed again since the mark began: back (over a newer
                // copy, if one landed; the bytes are the same).
                std::fs::rename(&aside, &path)?;
                return Ok(None);
            }
            std::fs::remove_file(&aside)?;
            Ok(Some(meta.len()))
        })
        .await?)
    }

    async fn list_blobs(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> StoreResult<Vec<(Digest, u64)>> {
        let root = self.root.join("blobs");
        let after = after.cloned();
        Ok(blocking(move || list_blob_tree(&root, after.as_ref(), limit)).await?)
    }

    async fn begin_upload(&self, id: &str) -> StoreResult<UploadState> {
        tokio::fs::File::create(self.upload_path(id)).await?;
        Ok(UploadState::default())
    }

    async fn append_upload(
        &self,
        id: &str,
        from: &UploadState,
        declared_len: Option<u64>,
        mut body: ByteStream,
    ) -> Result<UploadState, (UploadState, AppendError)> {
        let path = self.upload_path(id);
        let durable = self.fsync;
        let direct_from = self.io.direct_from(declared_len);
        let start = from.len;
        let failed = |e| (from.clone(), AppendError::Store(e));
        let appender = blocking(move || Appender::open(&path, start, durable, direct_from))
            .await
            .map_err(failed)?;
        // The request task receives (and the caller hashes) while a blocking thread
        // writes: hashing and disk I/O overlap instead of adding up. The writer
        // holds a thread only while it has batches to write: a client that sends
        // slowly costs a few queued buffers, not a blocking thread, so slow
        // uploads cannot starve the pool that every read and commit needs.
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<Bytes>>(WRITE_QUEUE);
        let writer = tokio::spawn(write_batches(appender, rx));
        let mut batch = Vec::new();
        let mut batch_bytes = 0;
        let mut stream_error = None;
        while let Some(item) = body.next().await {
            match item {
                Ok(chunk) => {
                    batch_bytes += chunk.len();
                    batch.push(chunk);
                    if batch_bytes >= IO_CHUNK || batch.len() >= BATCH_BUFFERS {
                        batch_bytes = 0;
                        if tx.send(std::mem::take(&mut batch)).await.is_err() {
                            break; // the writer failed; its error is reported below
                        }
                    }
                }
                Err(e) => {
                    stream_error = Some(e);
                    break;
                }
            }
        }
        if !batch.is_empty() {
            let _ = tx.send(batch).await;
        }
        drop(tx);
        let (written, result) = writer
            .await
            .unwrap_or_else(|e| (0, Err(std::io::Error::other(e))));
        let mut kept = UploadState {
            len: start + written,
            store: String::new(),
            synced: false,
        };
        match (result, stream_error) {
            (Err(e), _) => Err((kept, AppendError::Store(e))),
            (Ok(synced), stream_error) => {
                kept.synced = synced;
                match stream_error {
                    Some(e) => Err((kept, AppendError::Body(e))),
                    None => Ok(kept),
                }
            }
        }
    }

    async fn read_upload(&self, id: &str, state: &UploadState) -> StoreResult<Option<ByteStream>> {
        let path = self.upload_path(id);
        let len = state.len;
        let opened = blocking(move || {
            let file = std::fs::File::open(path)?;
            let on_disk = file.metadata()?.len();
            if on_disk < len {
                return Err(short_upload(on_disk, len));
            }
            Ok(file)
        })
        .await;
        let file = opened.map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::UploadNotFound(id.to_string()),
            _ => StoreError::Io(e),
        })?;
        Ok(Some(read_stream(file, len)))
    }

    async fn commit_upload(
        &self,
        id: &str,
        state: &UploadState,
        digest: &Digest,
    ) -> StoreResult<()> {
        let path = self.upload_path(id);
        let (len, fsync) = (state.len, self.fsync);
        let p = path.clone();
        blocking(move || {
            // Past the recorded length are bytes of an append that never finished.
            let file = std::fs::OpenOptions::new().write(true).open(p)?;
            let on_disk = file.metadata()?.len();
            if on_disk < len {
                return Err(short_upload(on_disk, len));
            }
            if on_disk > len {
                file.set_len(len)?;
            }
            // A blob's time is when it was last committed: a sweep leaves new ones.
            file.set_modified(std::time::SystemTime::now())?;
            if fsync {
                file.sync_all()?;
            }
            Ok(())
        })
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::UploadNotFound(id.to_string()),
            _ => StoreError::Io(e),
        })?;
        Ok(self.install(path, digest).await?)
    }

    async fn delete_upload(&self, id: &str, _state: Option<&UploadState>) -> StoreResult<()> {
        not_found_as_none(tokio::fs::remove_file(self.upload_path(id)).await)?;
        Ok(())
    }

    async fn list_uploads(&self) -> StoreResult<Vec<(String, u64)>> {
        let dir = self.root.join("uploads");
        Ok(blocking(move || {
            let mut out = Vec::new();
            for entry in std::fs::read_dir(dir)? {
                let entry = entry?;
                // Finished (and removed) since it was listed: not an upload any more.
                let Some(meta) = not_found_as_none(entry.metadata())? else {
                    continue;
                };
                let modified = meta
                    .modified()?
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                out.push((entry.file_name().to_string_lossy().into_owned(), modified));
            }
            Ok(out)
        })
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    /// A file that ends before the length it was opened for (cut short under
    /// us) ends the stream with an error, never with silently fewer bytes.
    #[tokio::test]
    async fn read_stream_reports_a_file_shorter_than_promised() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("short");
        std::fs::write(&path, vec![5u8; (1 << 20) + 10]).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let mut s = super::read_stream(file, 3 << 20);
        let mut got = 0;
        let mut failed = None;
        while let Some(item) = s.next().await {
            match item {
                Ok(b) => got += b.len(),
                Err(e) => failed = Some(e.kind()),
            }
        }
        assert_eq!(got, 1 << 20, "the whole buffers that could be read");
        assert_eq!(failed, Some(std::io::ErrorKind::UnexpectedEof));
    }

    /// A sweep killed with a blob moved aside: reopening puts it back, unless
    /// a new copy took its place meanwhile (then the aside one goes).
    #[tokio::test]
    async fn a_blob_a_killed_sweep_moved_aside_comes_back() {
        use crate::oci::Digest;
        use crate::store::BlobStore;
        let dir = tempfile::tempdir().unwrap();
        let store = super::FsBlobStore::open(dir.path(), true).unwrap();
        let (a, b) = (
            b"moved aside".as_slice(),
            b"moved aside, then pushed again".as_slice(),
        );
        let (da, db) = (Digest::sha256_of(a), Digest::sha256_of(b));
        for (d, bytes) in [(&da, a), (&db, b)] {
            store
                .write_all(d, bytes::Bytes::copy_from_slice(bytes))
                .await
                .unwrap();
            std::fs::rename(store.blob_path(d), store.swept_path(d)).unwrap();
        }
        store
            .write_all(&db, bytes::Bytes::copy_from_slice(b))
            .await
            .unwrap();
        drop(store);
        let store = super::FsBlobStore::open(dir.path(), true).unwrap();
        assert_eq!(store.read_all(&da, 100).await.unwrap().unwrap().as_ref(), a);
        assert_eq!(store.read_all(&db, 100).await.unwrap().unwrap().as_ref(), b);
        assert_eq!(
            std::fs::read_dir(dir.path().join("swept")).unwrap().count(),
            0
        );
    }
}
