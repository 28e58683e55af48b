//! Disk-space safety: a data directory whose filesystem has less free space
//! than `data_dir_min_free_bytes` stops accepting appends (producers get a
//! retriable KAFKA_STORAGE_ERROR with a message saying why), keeps serving
//! reads, and accepts appends again once space returns. Stopping before the
//! filesystem is full means no write ever fails half-way for lack of space,
//! so nothing acknowledged is lost ("Kafka does not degrade gracefully if it
//! runs out of disk space").
//!
//! Each shard keeps its own [`DirSpace`] per data directory. A timer re-reads
//! the filesystem's free space; between readings every append subtracts its
//! size from the estimate, so a fast producer cannot run past the threshold
//! before the next reading. The threshold should exceed a segment's
//! preallocation step plus what other shards append between readings.

use std::cell::Cell;
use std::path::{Path, PathBuf};

/// Bytes used and available (to unprivileged writers) on `dir`'s filesystem.
pub fn statvfs_space(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills a zeroed struct from a valid NUL-terminated path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let frsize = st.f_frsize as u64;
    let used = (st.f_blocks as u64).saturating_sub(st.f_bfree as u64) * frsize;
    Some((used, st.f_bavail as u64 * frsize))
}

/// The free-space state of one data directory, as one shard sees it.
/// Owned by that shard.
#[derive(Debug)]
pub struct DirSpace {
    pub dir: PathBuf,
    pub min_free_bytes: u64,
    /// Free bytes at the last reading, minus what this shard appended since.
    free_bytes: Cell<u64>,
    blocked: Cell<bool>,
}

impl DirSpace {
    pub fn new(dir: PathBuf, min_free_bytes: u64) -> DirSpace {
        let space = DirSpace {
            dir,
            min_free_bytes,
            free_bytes: Cell::new(u64::MAX),
            blocked: Cell::new(false),
        };
        space.refresh();
        space
    }

    /// Re-reads the free space; logs when appends stop or resume.
    pub fn refresh(&self) {
        let Some((_, free)) = statvfs_space(&self.dir) else { return };
        self.free_bytes.set(free);
        self.set_blocked(free < self.min_free_bytes);
    }

    fn set_blocked(&self, blocked: bool) {
        let free = self.free_bytes.get();
        if blocked != self.blocked.replace(blocked) {
            if blocked {
                tracing::warn!(
                    dir = %self.dir.display(),
                    free_bytes = free,
                    min_free_bytes = self.min_free_bytes,
                    "free space below the threshold: appends to this data directory stop; reads continue"
                );
            } else {
                tracing::info!(dir = %self.dir.display(), free_bytes = free, "free space recovered: appends resume");
            }
        }
    }

    /// Whether this shard currently refuses appends to the directory.
    pub fn is_blocked(&self) -> bool {
        self.blocked.get()
    }

    /// Accounts for `bytes` about to be appended. `Err` (with a message for
    /// the producer) when appends are stopped or these bytes would take the
    /// free space below the threshold; nothing is reserved then.
    pub fn reserve(&self, bytes: u64) -> Result<(), String> {
        if !self.blocked.get() {
            let left = self.free_bytes.get().saturating_sub(bytes);
            if left >= self.min_free_bytes {
                self.free_bytes.set(left);
                return Ok(());
            }
            self.set_blocked(true);
        }
        Err(format!(
            "data directory {} has {} bytes free, below data_dir_min_free_bytes ({}); appends resume when space is freed",
            self.dir.display(),
            self.free_bytes.get(),
            self.min_free_bytes
        ))
    }
}
