//! Deterministic uncompressed tar layers, described as segments (headers in
//! memory, file contents on disk, zero padding) so that a layer of any size is
//! hashed and uploaded by streaming, from any offset, without a temporary file.
//!
//! Headers are normalised (mtime 0, uid/gid 0, no user or group names, mode 0644
//! or 0755 by the executable bit), so identical trees give identical digests.

use std::collections::BTreeSet;
use std::io;
use std::sync::Arc;

use tar::{EntryType, Header};

use super::FileEntry;
use crate::client::source::{BlobSource, Segment};

const BLOCK: u64 = 512;

/// The header bytes (including any GNU long-name entry) for one entry.
fn header_bytes(path: &str, kind: EntryType, mode: u32, size: u64) -> io::Result<Vec<u8>> {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(size);
    let mut b = tar::Builder::new(Vec::new());
    b.append_data(&mut h, path, io::empty())?;
    // Take the bytes before the builder writes its end-of-archive blocks on drop.
    Ok(std::mem::take(b.get_mut()))
}

/// A tar of `files` (sorted by path) with a directory entry before the first file
/// under each directory.
pub fn build(files: &[&FileEntry]) -> io::Result<BlobSource> {
    let mut segments = Vec::new();
    let mut dirs_done: BTreeSet<String> = BTreeSet::new();
    for f in files {
        let parts: Vec<&str> = f.path.split('/').collect();
        for i in 1..parts.len() {
            let dir = format!("{}/", parts[..i].join("/"));
            if dirs_done.insert(dir.clone()) {
                let h = header_bytes(&dir, EntryType::Directory, 0o755, 0)?;
                segments.push(Segment::Bytes(Arc::from(h)));
            }
        }
        let h = header_bytes(&f.path, EntryType::Regular, f.mode(), f.size)?;
        segments.push(Segment::Bytes(Arc::from(h)));
        segments.push(Segment::File {
            path: f.abs.clone(),
            len: f.size,
        });
        let pad = (BLOCK - f.size % BLOCK) % BLOCK;
        segments.push(Segment::Zeros(pad));
    }
    segments.push(Segment::Zeros(2 * BLOCK));
    Ok(BlobSource::new(segments))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::pack::classify;
    use std::io::Read;

    #[test]
    fn tar_is_readable_and_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let long = format!("nested/{}/file.txt", "d".repeat(120));
        let mut entries = Vec::new();
        for (rel, data, exec) in [
            ("a.txt", &b"hello"[..], false),
            (long.as_str(), &b"long path"[..], false),
            ("nested/run.sh", &b"#!/bin/sh\n"[..], true),
        ] {
            let abs = dir.path().join(rel);
            std::fs::create_dir_all(abs.parent().unwrap()).unwrap();
            std::fs::write(&abs, data).unwrap();
            entries.push(FileEntry {
                path: rel.to_string(),
                abs,
                size: data.len() as u64,
                executable: exec,
                kind: classify(rel),
            });
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        let refs: Vec<&FileEntry> = entries.iter().collect();
        let src = build(&refs).unwrap();
        let mut bytes = Vec::new();
        src.open_at(0).unwrap().read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes.len() as u64, src.size());
        assert_eq!(bytes.len() % 512, 0);

        let mut ar = tar::Archive::new(&bytes[..]);
        let mut seen = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let h = e.header();
            assert_eq!(h.mtime().unwrap(), 0);
            assert_eq!(h.uid().unwrap(), 0);
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let mode = h.mode().unwrap();
            let mut data = String::new();
            e.read_to_string(&mut data).unwrap();
            seen.push((path, mode, data));
        }
        let names: Vec<&str> = seen.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(names[0], "a.txt");
        assert_eq!(names[1], "nested/");
        assert!(names.contains(&long.as_str()));
        let run = seen.iter().find(|s| s.0 == "nested/run.sh").unwrap();
        assert_eq!((run.1, run.2.as_str()), (0o755, "#!/bin/sh\n"));
        assert_eq!(seen[0].1, 0o644);

        // The same tree elsewhere gives the same bytes.
        let again = build(&refs).unwrap();
        let d1 = src.digest(crate::oci::Algorithm::Sha256, |_| {}).unwrap();
        let d2 = again.digest(crate::oci::Algorithm::Sha256, |_| {}).unwrap();
        assert_eq!(d1, d2);
    }
}
