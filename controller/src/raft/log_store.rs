//! The durable Raft log of one controller member: plain std file I/O, fsync
//! before openraft is told an append is flushed.
//!
//! # Files in `<data dir>/raft/`
//!
//! ```text
//! lock                 empty; flock(LOCK_EX) while a member runs
//! log-<first index>    segment: frames of entries, the first at <first index> (20 digits)
//! vote, vote.tmp       one frame: the last vote (written to .tmp, fsync, rename, fsync dir)
//! purged, purged.tmp   one frame: the last purged log id (same protocol as the vote)
//! ```
//!
//! Every frame is [`crate::log`]'s: `[u32 BE length][u32 BE CRC-32C][JSON]`.
//! A segment frame's payload is `{"v":1,"entry":<openraft Entry>}`, the vote's
//! `{"v":1,"vote":<Vote>}`, the purge marker's `{"v":1,"log_id":<LogId>}`.
//!
//! # Appends, truncation, purge
//!
//! Entries are appended to the last segment, then `fdatasync`; only then is
//! openraft's `LogFlushed` callback called. A new segment is started (and the
//! folder fsync'd) when the last one reaches `segment_bytes_max`, so purging
//! deletes whole files instead of rewriting one. `truncate` deletes later
//! segments (newest first, so a crash leaves a contiguous prefix) and cuts the
//! one holding the first removed entry. `purge` persists the purge marker
//! first, then deletes segments that hold only purged entries; entries at or
//! below the marker in a surviving segment are skipped on recovery.
//!
//! # Recovery
//!
//! Segments are read in order. A frame that is incomplete or fails its CRC in
//! the *last* segment is a torn write: the segment is cut there, fsync'd, and
//! the cut logged. The same in an earlier segment, a frame with a good CRC
//! that does not decode, or a gap in indexes is damage, not a torn write, and
//! refuses to start (an earlier segment was fsync'd before the next began).
//!
//! All unpurged entries are also held in memory: the metadata log is small
//! (snapshots bound it), and it keeps reads off the disk.
//!
//! Owned by openraft's core task through [`LogStore`]; readers it hands out
//! share the same state behind a mutex that is never held across an await.
//! File I/O blocks that task for an fsync: metadata writes are small and rare
//! and the controller has its own runtime, so it is not on anyone's data path.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context, bail};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{LogId, RaftLogId, RaftLogReader, StorageIOError, Vote};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{RaftEntry, StorageError, TypeConfig, io_error};
use crate::log::{FRAME_BYTES_MAX, decode_frame, encode_frame, fsync_dir};

/// Format version of every frame payload in this folder.
const FORMAT_VERSION: u32 = 1;
const SEGMENT_PREFIX: &str = "log-";
const VOTE_FILE: &str = "vote";
const PURGED_FILE: &str = "purged";
const LOCK_FILE: &str = "lock";
/// Default size at which a new segment is started: small, since purging works
/// in whole segments and the metadata log is snapshotted often.
pub const SEGMENT_BYTES_MAX_DEFAULT: u64 = 8 * 1024 * 1024;

#[derive(Serialize, Deserialize)]
struct EntryFrame {
    v: u32,
    entry: RaftEntry,
}

/// The same payload as [`EntryFrame`], serialized without a clone.
#[derive(Serialize)]
struct EntryFrameRef<'a> {
    v: u32,
    entry: &'a RaftEntry,
}

#[derive(Serialize, Deserialize)]
struct VoteFrame {
    v: u32,
    vote: Vote<u64>,
}

#[derive(Serialize, Deserialize)]
struct PurgedFrame {
    v: u32,
    log_id: LogId<u64>,
}

/// Where an entry lives on disk: its segment (by first index) and byte position.
#[derive(Clone, Copy, Debug)]
struct Place {
    segment: u64,
    position: u64,
}

struct Inner {
    dir: PathBuf,
    segment_bytes_max: u64,
    /// Segment first index → its length in bytes. The last one takes appends.
    segments: BTreeMap<u64, u64>,
    /// The last segment, open for appends (None when there is no segment).
    active: Option<File>,
    entries: BTreeMap<u64, (RaftEntry, Place)>,
    last_purged: Option<LogId<u64>>,
    vote: Option<Vote<u64>>,
    committed: Option<LogId<u64>>,
    /// Set after a failed write or fsync: everything is refused from then on.
    failed: bool,
    /// Held for the flock; closing it releases the folder.
    _lock: File,
}

/// What recovery found, for logging and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LogRecovery {
    pub segments: usize,
    pub entries: usize,
    /// Bytes cut from a torn tail of the last segment.
    pub truncated_bytes: u64,
}

/// The Raft log of one member. Clones share one state (openraft's log reader
/// is a clone). Lifecycle: [`LogStore::open`] recovers and locks the folder;
/// the lock is released when the last clone is dropped. After a write error it
/// is *failed* (fail-stop) and refuses everything.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{SEGMENT_PREFIX}{first:020}"))
}

fn lock_dir(dir: &Path) -> anyhow::Result<File> {
    crate::log::lock_dir_for(dir, LOCK_FILE, "another controller member")
}

/// Writes one frame to `name` atomically: temp file, fsync, rename, fsync dir.
pub(crate) fn write_atomic(dir: &Path, name: &str, payload: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(&encode_frame(payload))?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join(name))?;
    fsync_dir(dir)
}

/// Reads a file written by [`write_atomic`]; `None` when absent. Damage is an
/// error: the file was renamed into place only after an fsync.
pub(crate) fn read_atomic<T: DeserializeOwned>(
    dir: &Path,
    name: &str,
    max: u32,
) -> anyhow::Result<Option<T>> {
    let path = dir.join(name);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let (payload, used) = decode_frame(&bytes, max)
        .map_err(|e| anyhow::anyhow!("{} is damaged: {e:?}", path.display()))?;
    if used != bytes.len() {
        bail!("{} has trailing bytes", path.display());
    }
    let value =
        serde_json::from_slice(payload).with_context(|| format!("decoding {}", path.display()))?;
    Ok(Some(value))
}

fn storage_write(e: impl std::fmt::Display) -> StorageError {
    StorageError::IO { source: StorageIOError::write_logs(&io_error(e)) }
}

impl LogStore {
    /// Opens (creating if needed) the log in `dir`, recovers it, and locks
    /// the folder.
    pub fn open(dir: &Path, segment_bytes_max: u64) -> anyhow::Result<(LogStore, LogRecovery)> {
        assert!(segment_bytes_max > 0, "segments hold at least one entry");
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let lock = lock_dir(dir)?;
        let mut report = LogRecovery::default();
        let vote = read_atomic::<VoteFrame>(dir, VOTE_FILE, FRAME_BYTES_MAX)?
            .map(|f| check_version(f.v, "vote").map(|()| f.vote))
            .transpose()?;
        let last_purged = read_atomic::<PurgedFrame>(dir, PURGED_FILE, FRAME_BYTES_MAX)?
            .map(|f| check_version(f.v, "purge marker").map(|()| f.log_id))
            .transpose()?;

        let mut firsts = Vec::new();
        for dirent in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            let name = dirent?.file_name();
            let name = name.to_string_lossy();
            if let Some(first) = name.strip_prefix(SEGMENT_PREFIX) {
                let first: u64 =
                    first.parse().with_context(|| format!("segment file name {name}"))?;
                firsts.push(first);
            }
        }
        firsts.sort_unstable();

        let mut segments = BTreeMap::new();
        let mut entries = BTreeMap::new();
        let mut next_index: Option<u64> = None;
        for (i, &first) in firsts.iter().enumerate() {
            let is_last = i + 1 == firsts.len();
            let path = segment_path(dir, first);
            let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let mut pos = 0usize;
            while pos < bytes.len() {
                let (payload, used) = match decode_frame(&bytes[pos..], FRAME_BYTES_MAX) {
                    Ok(ok) => ok,
                    Err(e) if is_last => {
                        tracing::warn!(
                            segment = %path.display(),
                            position = pos,
                            file_bytes = bytes.len(),
                            reason = ?e,
                            "Raft log ends in a torn or corrupt frame; truncating"
                        );
                        break;
                    }
                    Err(e) => bail!(
                        "{} is damaged at byte {pos} ({e:?}) and is not the last segment",
                        path.display()
                    ),
                };
                let frame: EntryFrame = serde_json::from_slice(payload).with_context(|| {
                    format!("decoding {} at byte {pos} (CRC is good)", path.display())
                })?;
                check_version(frame.v, "log entry")?;
                let index = frame.entry.get_log_id().index;
                let expected = next_index.unwrap_or(first);
                if index != expected {
                    bail!("{} byte {pos}: entry {index} where {expected} was due", path.display());
                }
                next_index = Some(index + 1);
                if last_purged.is_none_or(|p| index > p.index) {
                    let place = Place { segment: first, position: pos as u64 };
                    entries.insert(index, (frame.entry, place));
                }
                pos += used;
            }
            if pos < bytes.len() {
                report.truncated_bytes = (bytes.len() - pos) as u64;
                let f = OpenOptions::new().write(true).open(&path)?;
                f.set_len(pos as u64).context("truncating a torn Raft log segment")?;
                f.sync_all().context("fsync of a truncated Raft log segment")?;
            }
            segments.insert(first, pos as u64);
        }
        if let (Some(p), Some((&first, _))) = (last_purged, entries.first_key_value())
            && first != p.index + 1
        {
            bail!("Raft log starts at {first} but entries up to {} were purged", p.index);
        }
        let active = match segments.last_key_value() {
            Some((&first, _)) => Some(
                OpenOptions::new()
                    .append(true)
                    .open(segment_path(dir, first))
                    .context("opening the last Raft log segment")?,
            ),
            None => None,
        };
        report.segments = segments.len();
        report.entries = entries.len();
        let inner = Inner {
            dir: dir.to_path_buf(),
            segment_bytes_max,
            segments,
            active,
            entries,
            last_purged,
            vote,
            committed: None,
            failed: false,
            _lock: lock,
        };
        Ok((LogStore { inner: Arc::new(Mutex::new(inner)) }, report))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The last purged and the last log id.
    pub fn log_state(&self) -> (Option<LogId<u64>>, Option<LogId<u64>>) {
        let inner = self.lock();
        let last = inner.entries.last_key_value().map(|(_, (e, _))| e.log_id).or(inner.last_purged);
        (inner.last_purged, last)
    }

    /// Entries with indexes in `range`, in order.
    pub fn entries(&self, range: impl RangeBounds<u64>) -> Vec<RaftEntry> {
        self.lock().entries.range(range).map(|(_, (e, _))| e.clone()).collect()
    }

    pub fn vote(&self) -> Option<Vote<u64>> {
        self.lock().vote
    }

    /// Persists `vote` (atomically, fsync'd) before it is acted on.
    pub fn save_vote_durably(&self, vote: &Vote<u64>) -> io::Result<()> {
        let mut inner = self.lock();
        inner.check_failed()?;
        let payload = serde_json::to_vec(&VoteFrame { v: FORMAT_VERSION, vote: *vote })
            .expect("votes serialize");
        if let Err(e) = write_atomic(&inner.dir, VOTE_FILE, &payload) {
            return Err(inner.fail("writing the Raft vote", e));
        }
        inner.vote = Some(*vote);
        Ok(())
    }

    /// Appends `entries` (contiguous, following the last entry) and fsyncs.
    pub fn append_durably(&self, entries: impl IntoIterator<Item = RaftEntry>) -> io::Result<()> {
        let mut inner = self.lock();
        inner.check_failed()?;
        for entry in entries {
            let index = entry.log_id.index;
            let expected = inner
                .entries
                .last_key_value()
                .map(|(i, _)| i + 1)
                .or(inner.last_purged.map(|p| p.index + 1));
            assert!(
                expected.is_none_or(|e| e == index),
                "Raft log append at {index}, expected {expected:?}"
            );
            let roll = match inner.segments.last_key_value() {
                None => true,
                Some((_, &bytes)) => bytes >= inner.segment_bytes_max,
            };
            if roll && let Err(e) = inner.start_segment(index) {
                return Err(inner.fail("starting a Raft log segment", e));
            }
            let payload = serde_json::to_vec(&EntryFrameRef { v: FORMAT_VERSION, entry: &entry })
                .expect("entries serialize");
            if payload.len() > FRAME_BYTES_MAX as usize {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "Raft entry too large"));
            }
            let frame = encode_frame(&payload);
            let (&segment, &position) = inner.segments.last_key_value().expect("a segment");
            let file = inner.active.as_mut().expect("an active segment");
            if let Err(e) = file.write_all(&frame) {
                return Err(inner.fail("writing the Raft log", e));
            }
            *inner.segments.get_mut(&segment).expect("segment") += frame.len() as u64;
            inner.entries.insert(index, (entry, Place { segment, position }));
        }
        if let Some(file) = inner.active.as_ref()
            && let Err(e) = file.sync_data()
        {
            return Err(inner.fail("fsync of the Raft log", e));
        }
        Ok(())
    }

    /// Removes entries at `index` and after (a leader's log overrides ours).
    pub fn truncate_from(&self, index: u64) -> io::Result<()> {
        let mut inner = self.lock();
        inner.check_failed()?;
        let Some(&(_, place)) = inner.entries.get(&index) else {
            assert!(
                inner.entries.last_key_value().is_none_or(|(&last, _)| last < index),
                "truncation at {index} inside the log but not in it"
            );
            return Ok(());
        };
        let result = (|| -> io::Result<()> {
            let later: Vec<u64> =
                inner.segments.range(place.segment + 1..).map(|(&f, _)| f).collect();
            for first in later.into_iter().rev() {
                fs::remove_file(segment_path(&inner.dir, first))?;
                inner.segments.remove(&first);
            }
            let path = segment_path(&inner.dir, place.segment);
            let f = OpenOptions::new().append(true).open(path)?;
            f.set_len(place.position)?;
            f.sync_all()?;
            fsync_dir(&inner.dir)?;
            inner.segments.insert(place.segment, place.position);
            inner.active = Some(f);
            Ok(())
        })();
        if let Err(e) = result {
            return Err(inner.fail("truncating the Raft log", e));
        }
        inner.entries.split_off(&index);
        Ok(())
    }

    /// Forgets entries up to and including `log_id` (they are in a snapshot).
    /// `log_id` may lie past the last entry (after a snapshot was installed).
    pub fn purge_upto(&self, log_id: LogId<u64>) -> io::Result<()> {
        let mut inner = self.lock();
        inner.check_failed()?;
        if inner.last_purged.is_some_and(|p| p.index >= log_id.index) {
            return Ok(());
        }
        let payload = serde_json::to_vec(&PurgedFrame { v: FORMAT_VERSION, log_id })
            .expect("log ids serialize");
        if let Err(e) = write_atomic(&inner.dir, PURGED_FILE, &payload) {
            return Err(inner.fail("writing the Raft purge marker", e));
        }
        inner.last_purged = Some(log_id);
        inner.entries = inner.entries.split_off(&(log_id.index + 1));
        // A segment holds only purged entries when the next one starts at or
        // before log_id + 1; the last one when no entry remains.
        let firsts: Vec<u64> = inner.segments.keys().copied().collect();
        let mut removed = false;
        for (i, &first) in firsts.iter().enumerate() {
            let all_purged = match firsts.get(i + 1) {
                Some(&next) => next <= log_id.index + 1,
                None => inner.entries.is_empty(),
            };
            if !all_purged {
                break;
            }
            if let Err(e) = fs::remove_file(segment_path(&inner.dir, first)) {
                return Err(inner.fail("deleting a purged Raft log segment", e));
            }
            inner.segments.remove(&first);
            removed = true;
        }
        if inner.segments.is_empty() {
            inner.active = None;
        }
        if removed && let Err(e) = fsync_dir(&inner.dir) {
            return Err(inner.fail("fsync of the Raft log folder", e));
        }
        Ok(())
    }

    /// Segment files now on disk (tests, tools).
    pub fn segment_count(&self) -> usize {
        self.lock().segments.len()
    }

    /// The segment files in `dir`, oldest first (tests, tools).
    pub fn segment_paths(dir: &Path) -> io::Result<Vec<PathBuf>> {
        let mut paths: Vec<PathBuf> = fs::read_dir(dir)?
            .filter_map(|d| d.ok())
            .filter(|d| d.file_name().to_string_lossy().starts_with(SEGMENT_PREFIX))
            .map(|d| d.path())
            .collect();
        paths.sort();
        Ok(paths)
    }
}

fn check_version(v: u32, what: &str) -> anyhow::Result<()> {
    if v != FORMAT_VERSION {
        bail!("Raft {what} format v{v} is not supported (this build reads v{FORMAT_VERSION})");
    }
    Ok(())
}

impl Inner {
    fn check_failed(&self) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other("the Raft log failed earlier"));
        }
        Ok(())
    }

    fn fail(&mut self, what: &str, e: io::Error) -> io::Error {
        self.failed = true;
        tracing::error!(error = %e, "{what} failed; the controller member stops");
        io::Error::new(e.kind(), format!("{what}: {e}"))
    }

    /// Creates segment `first` and makes it the active one.
    fn start_segment(&mut self, first: u64) -> io::Result<()> {
        if let Some(file) = &self.active {
            file.sync_data()?;
        }
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(segment_path(&self.dir, first))?;
        fsync_dir(&self.dir)?;
        self.segments.insert(first, 0);
        self.active = Some(file);
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<RaftEntry>, StorageError> {
        Ok(self.entries(range))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let (last_purged_log_id, last_log_id) = self.log_state();
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError> {
        self.save_vote_durably(vote)
            .map_err(|e| StorageError::IO { source: StorageIOError::write_vote(&e) })
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError> {
        Ok(self.vote())
    }

    // The committed id is kept in memory only: openraft learns it again from
    // the leader, and the state machine restarts from its snapshot.
    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> Result<(), StorageError> {
        self.lock().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError> {
        Ok(self.lock().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = RaftEntry> + Send,
        I::IntoIter: Send,
    {
        match self.append_durably(entries) {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let err = storage_write(&e);
                callback.log_io_completed(Err(e));
                Err(err)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError> {
        self.truncate_from(log_id.index).map_err(storage_write)
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError> {
        self.purge_upto(log_id).map_err(storage_write)
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::raft::MetadataEntry;

    fn entry(term: u64, index: u64) -> RaftEntry {
        RaftEntry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Normal(MetadataEntry { base_version: index, records: vec![] }),
        }
    }

    fn indexes(log: &LogStore) -> Vec<u64> {
        log.entries(..).iter().map(|e| e.log_id.index).collect()
    }

    #[test]
    fn append_and_recover() {
        let dir = tempfile::tempdir().unwrap();
        let (log, report) = LogStore::open(dir.path(), 200).unwrap();
        assert_eq!(report, LogRecovery::default());
        log.append_durably((0..10).map(|i| entry(1, i))).unwrap();
        assert!(log.segment_count() > 1, "small segments roll");
        assert_eq!(log.entries(3..5), vec![entry(1, 3), entry(1, 4)]);
        drop(log);
        let (log, report) = LogStore::open(dir.path(), 200).unwrap();
        assert_eq!(report.entries, 10);
        assert_eq!(report.truncated_bytes, 0);
        assert_eq!(indexes(&log), (0..10).collect::<Vec<_>>());
        assert_eq!(log.log_state(), (None, Some(entry(1, 9).log_id)));
    }

    #[test]
    fn second_open_of_a_locked_folder_fails() {
        let dir = tempfile::tempdir().unwrap();
        let _held = LogStore::open(dir.path(), 200).unwrap();
        assert!(LogStore::open(dir.path(), 200).is_err());
    }

    #[test]
    fn truncate_across_segments_and_recover() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = LogStore::open(dir.path(), 200).unwrap();
        log.append_durably((0..10).map(|i| entry(1, i))).unwrap();
        log.truncate_from(4).unwrap();
        assert_eq!(indexes(&log), vec![0, 1, 2, 3]);
        // A new leader's entries replace the truncated ones.
        log.append_durably((4..6).map(|i| entry(2, i))).unwrap();
        drop(log);
        let (log, _) = LogStore::open(dir.path(), 200).unwrap();
        assert_eq!(indexes(&log), vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(log.entries(4..5), vec![entry(2, 4)]);
        // Truncating everything leaves an empty log that takes appends at 0.
        log.truncate_from(0).unwrap();
        assert!(indexes(&log).is_empty());
        log.append_durably([entry(3, 0)]).unwrap();
        drop(log);
        let (log, _) = LogStore::open(dir.path(), 200).unwrap();
        assert_eq!(log.entries(..), vec![entry(3, 0)]);
    }

    #[test]
    fn purge_deletes_whole_segments_and_survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = LogStore::open(dir.path(), 200).unwrap();
        log.append_durably((0..20).map(|i| entry(1, i))).unwrap();
        let before = log.segment_count();
        log.purge_upto(entry(1, 12).log_id).unwrap();
        assert!(log.segment_count() < before);
        assert_eq!(indexes(&log), (13..20).collect::<Vec<_>>());
        assert_eq!(log.log_state(), (Some(entry(1, 12).log_id), Some(entry(1, 19).log_id)));
        drop(log);
        let (log, _) = LogStore::open(dir.path(), 200).unwrap();
        assert_eq!(indexes(&log), (13..20).collect::<Vec<_>>());
        // Purging past the end (a snapshot was installed) empties the log;
        // appends continue after the purged id.
        log.purge_upto(entry(2, 30).log_id).unwrap();
        assert_eq!(log.segment_count(), 0);
        assert_eq!(log.log_state(), (Some(entry(2, 30).log_id), Some(entry(2, 30).log_id)));
        log.append_durably([entry(2, 31)]).unwrap();
        drop(log);
        let (log, _) = LogStore::open(dir.path(), 200).unwrap();
        assert_eq!(indexes(&log), vec![31]);
    }

    #[test]
    fn torn_tail_is_truncated_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = LogStore::open(dir.path(), 1 << 20).unwrap();
        log.append_durably((0..5).map(|i| entry(1, i))).unwrap();
        drop(log);
        let path = LogStore::segment_paths(dir.path()).unwrap().pop().unwrap();
        let good_len = fs::metadata(&path).unwrap().len();
        let frame =
            encode_frame(&serde_json::to_vec(&EntryFrame { v: 1, entry: entry(1, 5) }).unwrap());
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&frame[..frame.len() - 7]).unwrap();
        drop(f);

        let (log, report) = LogStore::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(report.truncated_bytes, (frame.len() - 7) as u64);
        assert_eq!(fs::metadata(&path).unwrap().len(), good_len);
        assert_eq!(indexes(&log), vec![0, 1, 2, 3, 4]);
        log.append_durably([entry(1, 5)]).unwrap();
        drop(log);
        let (log, report) = LogStore::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(report.truncated_bytes, 0);
        assert_eq!(indexes(&log), vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn damage_in_an_earlier_segment_refuses_to_start() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = LogStore::open(dir.path(), 200).unwrap();
        log.append_durably((0..10).map(|i| entry(1, i))).unwrap();
        drop(log);
        let first = LogStore::segment_paths(dir.path()).unwrap().remove(0);
        let mut bytes = fs::read(&first).unwrap();
        bytes[12] ^= 1;
        fs::write(&first, bytes).unwrap();
        assert!(LogStore::open(dir.path(), 200).is_err());
    }

    #[test]
    fn vote_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = LogStore::open(dir.path(), 200).unwrap();
        assert_eq!(log.vote(), None);
        let vote = Vote::new(3, 2);
        log.save_vote_durably(&vote).unwrap();
        let mut committed = Vote::new(4, 1);
        committed.commit();
        log.save_vote_durably(&committed).unwrap();
        drop(log);
        let (log, _) = LogStore::open(dir.path(), 200).unwrap();
        assert_eq!(log.vote(), Some(committed));
        assert!(!dir.path().join("vote.tmp").exists());
    }
}
