//! Early writeback for durable uploads. Left alone, the kernel holds a large
//! upload's pages dirty until the commit's fsync, which then writes the whole
//! blob while the client waits. Asking for writeback as the bytes arrive keeps the
//! disk busy during the transfer, so the fsync only waits for the tail; waiting on
//! ranges well behind the write position bounds dirty memory and lets a slow disk
//! push back on the client instead of filling the page cache.

use std::fs::File;

/// Writeback is requested once this much has been written since the last request.
const STEP: u64 = 8 << 20;
/// Ranges further than this behind the write position are waited for.
const LAG: u64 = 64 << 20;

pub struct Writeback {
    /// Everything before this offset has had writeback requested.
    requested: u64,
    /// Everything before this offset has been waited for.
    waited: u64,
}

impl Writeback {
    /// Tracks a file whose first `start` bytes were written before.
    pub fn new(start: u64) -> Self {
        Writeback {
            requested: start,
            waited: start,
        }
    }

    /// Called after the file grew to `end` bytes.
    pub fn wrote_up_to(&mut self, file: &File, end: u64) {
        if end - self.requested >= STEP {
            sync_range(file, self.requested, end - self.requested, false);
            self.requested = end;
        }
        if self.requested.saturating_sub(self.waited) > LAG {
            let upto = self.requested - LAG;
            sync_range(file, self.waited, upto - self.waited, true);
            self.waited = upto;
        }
    }
}

/// Starts writeback of a range (`wait` = also wait for it to reach the disk).
/// Failures are ignored: this is only a hint, the commit's fsync is what counts.
#[cfg(target_os = "linux")]
fn sync_range(file: &File, offset: u64, len: u64, wait: bool) {
    use std::os::fd::AsRawFd;
    let flags = if wait {
        libc::SYNC_FILE_RANGE_WAIT_BEFORE
            | libc::SYNC_FILE_RANGE_WRITE
            | libc::SYNC_FILE_RANGE_WAIT_AFTER
    } else {
        libc::SYNC_FILE_RANGE_WRITE
    };
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: sync_file_range only reads its integer arguments; the descriptor is
    // borrowed from a live `File`.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, flags);
    }
}

#[cfg(not(target_os = "linux"))]
fn sync_range(_file: &File, _offset: u64, _len: u64, _wait: bool) {}
