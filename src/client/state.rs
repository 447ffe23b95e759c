//! Upload sessions remembered across runs, so that an interrupted push resumes:
//! one small JSON file per (registry, repository, digest) under
//! `$BERTH_CACHE_DIR`, else `$XDG_CACHE_HOME/berth`, else `~/.cache/berth`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::oci::Digest;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub registry: String,
    pub repo: String,
    pub digest: String,
    /// Where the session continues.
    pub url: String,
    /// Bytes the registry acknowledged when this was written.
    pub offset: u64,
}

/// The directory of upload records; `None` disables resuming.
#[derive(Debug, Clone)]
pub struct UploadState {
    dir: Option<PathBuf>,
}

/// Berth's cache directory.
pub fn cache_dir() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("BERTH_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("berth")))
        .or_else(|| env("HOME").map(|h| h.join(".cache").join("berth")))
}

impl UploadState {
    pub fn new(dir: Option<PathBuf>) -> UploadState {
        UploadState { dir }
    }

    /// The default location ([`cache_dir`]`/uploads`).
    pub fn default_location() -> UploadState {
        Self::new(cache_dir().map(|d| d.join("uploads")))
    }

    fn path(&self, registry: &str, repo: &str, digest: &Digest) -> Option<PathBuf> {
        let key = Digest::sha256_of(format!("{registry}\n{repo}\n{digest}").as_bytes());
        Some(
            self.dir
                .as_ref()?
                .join(format!("{}.json", &key.hex()[..40])),
        )
    }

    pub fn load(&self, registry: &str, repo: &str, digest: &Digest) -> Option<UploadRecord> {
        let path = self.path(registry, repo, digest)?;
        let bytes = std::fs::read(path).ok()?;
        let rec: UploadRecord = serde_json::from_slice(&bytes).ok()?;
        // A record is only trusted for exactly the key it was written for.
        (rec.registry == registry && rec.repo == repo && rec.digest == digest.to_string())
            .then_some(rec)
    }

    /// Saves a record (atomically: temp file, rename). Failure only loses resumability.
    pub fn save(&self, rec: &UploadRecord) {
        let Ok(digest) = rec.digest.parse::<Digest>() else {
            return;
        };
        let Some(path) = self.path(&rec.registry, &rec.repo, &digest) else {
            return;
        };
        if let Err(e) = write_atomic(&path, rec) {
            tracing::warn!("cannot save upload state to {}: {e}", path.display());
        }
    }

    pub fn remove(&self, registry: &str, repo: &str, digest: &Digest) {
        if let Some(p) = self.path(registry, repo, digest) {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn write_atomic(path: &Path, rec: &UploadRecord) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, serde_json::to_vec(rec)?)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_loads_and_removes_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let st = UploadState::new(Some(dir.path().join("uploads")));
        let d = Digest::sha256_of(b"x");
        let rec = UploadRecord {
            registry: "http://r/".into(),
            repo: "a/b".into(),
            digest: d.to_string(),
            url: "http://r/v2/a/b/blobs/uploads/1".into(),
            offset: 42,
        };
        assert_eq!(st.load("http://r/", "a/b", &d), None);
        st.save(&rec);
        assert_eq!(st.load("http://r/", "a/b", &d), Some(rec));
        assert_eq!(st.load("http://r/", "a/c", &d), None);
        st.remove("http://r/", "a/b", &d);
        assert_eq!(st.load("http://r/", "a/b", &d), None);
        // Without a directory nothing is kept and nothing fails.
        let none = UploadState::new(None);
        none.save(&UploadRecord {
            repo: "x".into(),
            ..st_rec(&d)
        });
        assert_eq!(none.load("http://r/", "x", &d), None);
    }

    fn st_rec(d: &Digest) -> UploadRecord {
        UploadRecord {
            registry: "http://r/".into(),
            repo: "a".into(),
            digest: d.to_string(),
            url: String::new(),
            offset: 0,
        }
    }
}
