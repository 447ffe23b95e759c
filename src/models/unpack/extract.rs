//! Writing files under a root directory without ever leaving it: every parent is
//! created as a real directory (an existing symlink on the way is refused), an
//! existing symlink at the target is replaced rather than followed, and tar
//! entries are checked one by one (paths, symlink targets, hard-link targets).

use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::{SafePath, sanitize};

/// The absolute path for `rel` under `root`, with its parents created. Refuses a
/// path that goes through a symlink or a non-directory; removes a symlink or file
/// at the target itself (never follows it).
pub fn safe_target(root: &Path, rel: &SafePath) -> Result<PathBuf> {
    let parts: Vec<&str> = rel.as_str().split('/').filter(|p| !p.is_empty()).collect();
    let mut cur = root.to_path_buf();
    for (i, part) in parts.iter().enumerate() {
        cur.push(part);
        let last = i + 1 == parts.len();
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                if last {
                    fs::remove_file(&cur)
                        .with_context(|| format!("replacing symlink {}", cur.display()))?;
                } else {
                    bail!(
                        "{} goes through the symlink {}",
                        rel.as_str(),
                        cur.display()
                    );
                }
            }
            Ok(m) if !last && !m.is_dir() => {
                bail!("{} needs {} to be a directory", rel.as_str(), cur.display())
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !last {
                    fs::create_dir(&cur).with_context(|| format!("creating {}", cur.display()))?;
                }
            }
            Err(e) => return Err(e).with_context(|| format!("checking {}", cur.display())),
        }
    }
    Ok(cur)
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting permissions of {}", path.display()))
}

#[cfg(not(unix))]
fn set_mode(_: &Path, _: u32) -> Result<()> {
    Ok(())
}

/// Moves a verified blob file to `rel` under `root` (copying when `keep` is set,
/// for a blob that is needed at several paths).
pub fn place_file(
    root: &Path,
    rel: &SafePath,
    blob: &Path,
    mode: Option<u32>,
    keep: bool,
) -> Result<PathBuf> {
    let target = safe_target(root, rel)?;
    if fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
        bail!("{} is a directory", target.display());
    }
    if keep || fs::rename(blob, &target).is_err() {
        fs::copy(blob, &target).with_context(|| format!("writing {}", target.display()))?;
        if !keep {
            let _ = fs::remove_file(blob);
        }
    }
    set_mode(&target, mode.unwrap_or(0o644))?;
    Ok(target)
}

/// Opens a tar blob, decompressing gzip or refusing zstd by its magic bytes.
fn open_tar(path: &Path) -> Result<Box<dyn Read>> {
    let f = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut r = BufReader::new(f);
    let head = r.fill_buf()?.to_vec();
    if head.starts_with(&[0x1f, 0x8b]) {
        return Ok(Box::new(flate2::read::MultiGzDecoder::new(r)));
    }
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        bail!("zstd-compressed tar layers are not supported yet");
    }
    Ok(Box::new(r))
}

/// Whether a symlink at `link` (relative) with `target` stays under the root.
fn link_stays_inside(link: &SafePath, target: &str) -> bool {
    if target.starts_with('/') || target.is_empty() || target.contains('\0') {
        return false;
    }
    let parent = link.parent();
    let mut depth: Vec<&str> = parent
        .as_str()
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if depth.pop().is_none() {
                    return false;
                }
            }
            c => depth.push(c),
        }
    }
    true
}

/// Unpacks the tar blob at `blob` under `root/base`. Returns the files written
/// (relative paths). Entries that would escape the root fail the whole unpack.
pub fn extract_tar(root: &Path, base: &SafePath, blob: &Path) -> Result<Vec<String>> {
    let mut ar = tar::Archive::new(open_tar(blob)?);
    let mut written = Vec::new();
    for entry in ar.entries().context("reading the tar")? {
        let mut entry = entry.context("reading a tar entry")?;
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8(raw)
            .map_err(|e| anyhow::anyhow!("tar entry name {:?} is not UTF-8", e.as_bytes()))?;
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            continue;
        }
        let base_name = name.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        if base_name.starts_with(".wh.") {
            continue; // image-layer whiteouts: nothing to delete in a fresh pull
        }
        if kind.is_dir() && name.trim_start_matches("./").trim_matches('/').is_empty() {
            continue; // "./" itself
        }
        let rel = sanitize(&name)
            .map(|r| base.join(&r))
            .with_context(|| format!("tar entry {name:?}"))?;
        let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
        match kind {
            tar::EntryType::Directory => {
                let target = safe_target(root, &rel)?;
                match fs::symlink_metadata(&target) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => bail!(
                        "tar entry {name:?}: {} exists and is not a directory",
                        target.display()
                    ),
                    Err(_) => fs::create_dir(&target)
                        .with_context(|| format!("creating {}", target.display()))?,
                }
                set_mode(&target, mode | 0o700)?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let target = safe_target(root, &rel)?;
                let mut out = fs::File::create(&target)
                    .with_context(|| format!("writing {}", target.display()))?;
                io::copy(&mut entry, &mut out)
                    .with_context(|| format!("writing {}", target.display()))?;
                set_mode(&target, mode)?;
                written.push(rel.as_str().to_string());
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name()?
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if !link_stays_inside(&rel, &link) {
                    bail!(
                        "tar entry {name:?} is a symlink to {link:?}, outside the target directory"
                    );
                }
                let target = safe_target(root, &rel)?;
                if fs::symlink_metadata(&target).is_ok() {
                    fs::remove_file(&target)
                        .with_context(|| format!("replacing {}", target.display()))?;
                }
                make_symlink(&link, &target)?;
            }
            tar::EntryType::Link => {
                let link = entry
                    .link_name()?
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let source_rel = sanitize(&link)
                    .map(|r| base.join(&r))
                    .with_context(|| format!("hard link {name:?} -> {link:?}"))?;
                let source = safe_target(root, &source_rel)?;
                if !fs::symlink_metadata(&source).is_ok_and(|m| m.is_file()) {
                    bail!(
                        "tar entry {name:?} links to {link:?}, which is not a file unpacked before it"
                    );
                }
                let target = safe_target(root, &rel)?;
                let _ = fs::remove_file(&target);
                fs::hard_link(&source, &target)
                    .with_context(|| format!("linking {}", target.display()))?;
                written.push(rel.as_str().to_string());
            }
            other => {
                tracing::warn!("skipping tar entry {name:?} of type {other:?}");
            }
        }
    }
    Ok(written)
}

#[cfg(unix)]
fn make_symlink(link: &str, at: &Path) -> Result<()> {
    std::os::unix::fs::symlink(link, at)
        .with_context(|| format!("creating symlink {}", at.display()))
}

#[cfg(not(unix))]
fn make_symlink(_: &str, at: &Path) -> Result<()> {
    bail!("cannot create symlink {} on this platform", at.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlink_targets() {
        let l = |p: &str| sanitize(p).unwrap();
        assert!(link_stays_inside(&l("a/b"), "c"));
        assert!(link_stays_inside(&l("a/b"), "../c"));
        assert!(!link_stays_inside(&l("a/b"), "../../c"));
        assert!(!link_stays_inside(&l("b"), "../x"));
        assert!(!link_stays_inside(&l("b"), "/etc/passwd"));
        assert!(link_stays_inside(&l("a/b/c"), "./../../d/./e"));
    }
}
