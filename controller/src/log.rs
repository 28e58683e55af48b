//! The durable metadata log: plain std file I/O (the controller is not on the
//! data path), fsync before a command is acknowledged.
//!
//! # Files in the data folder
//!
//! ```text
//! lock            empty; held with flock(LOCK_EX) while a controller runs
//! snapshot        one frame: the image at some version (absent before the first snapshot)
//! snapshot.tmp    a snapshot being written; removed at start
//! metadata.log    frames appended since the snapshot
//! ```
//!
//! # Frame (both files)
//!
//! ```text
//! offset  size  field
//! 0       4     payload length in bytes, u32 big-endian (at most FRAME_BYTES_MAX / SNAPSHOT_BYTES_MAX)
//! 4       4     CRC-32C (Castagnoli) of the payload, u32 big-endian
//! 8       len   payload: UTF-8 JSON
//! ```
//!
//! A log payload is one batch, all records of one command, so a command is
//! applied whole or not at all:
//! `{"v":1,"base":<version of the first record>,"records":[<MetadataRecord>...]}`.
//! A snapshot payload is `{"v":1,"image":<MetadataImage>}`; the image carries
//! its version (number of records folded in).
//!
//! # Recovery
//!
//! Load the snapshot (a bad snapshot refuses to start: it was renamed into
//! place only after an fsync, so damage there is not a torn write), then
//! replay the log frames in order. A frame that is incomplete, longer than the
//! limit, or fails its CRC ends the log: the file is truncated there and the
//! truncation logged. Batches whose records are all older than the snapshot
//! are skipped (a crash between renaming a snapshot and truncating the log
//! leaves them). A frame with a good CRC that does not decode, or a gap in
//! versions, is not a torn write and refuses to start.
//!
//! # Failure
//!
//! A failed write or fsync is fail-stop: [`MetadataLog`] refuses all later
//! writes and the caller gets [`ControllerError::Fatal`]; the process must exit.
//! Continuing after a lost write is how logs get silently corrupted.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::error::ControllerError;
use crate::state::{MetadataImage, MetadataRecord, StateMachine};

/// Largest log frame payload. One command's records (at most
/// [`crate::state::PARTITIONS_PER_COMMAND_MAX`] partitions) fit well inside.
pub const FRAME_BYTES_MAX: u32 = 64 * 1024 * 1024;
/// Largest snapshot payload: the whole image.
pub const SNAPSHOT_BYTES_MAX: u32 = 1024 * 1024 * 1024;
/// Frame header: length + CRC.
pub const FRAME_HEADER_BYTES: usize = 8;
/// Format version of log batches and snapshots.
const FORMAT_VERSION: u32 = 1;

const LOG_FILE: &str = "metadata.log";
const SNAPSHOT_FILE: &str = "snapshot";
const SNAPSHOT_TMP_FILE: &str = "snapshot.tmp";
const LOCK_FILE: &str = "lock";

#[derive(Serialize, Deserialize)]
struct LogBatch {
    v: u32,
    base: u64,
    records: Vec<MetadataRecord>,
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    v: u32,
    image: MetadataImage,
}

/// Encodes one frame around `payload`.
pub fn encode_frame(payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("frame payload fits u32");
    let mut out = Vec::with_capacity(FRAME_HEADER_BYTES + payload.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Why a frame could not be read at the start of `buf`.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes than the header or the length announce.
    Incomplete,
    /// The length is over the limit.
    TooLong(u32),
    /// The payload's CRC does not match.
    BadCrc,
}

/// Decodes the frame at the start of `buf`: its payload and total size.
pub fn decode_frame(buf: &[u8], max: u32) -> Result<(&[u8], usize), FrameError> {
    if buf.len() < FRAME_HEADER_BYTES {
        return Err(FrameError::Incomplete);
    }
    let len = u32::from_be_bytes(buf[0..4].try_into().expect("4 bytes"));
    let crc = u32::from_be_bytes(buf[4..8].try_into().expect("4 bytes"));
    if len > max {
        return Err(FrameError::TooLong(len));
    }
    let end = FRAME_HEADER_BYTES + len as usize;
    if buf.len() < end {
        return Err(FrameError::Incomplete);
    }
    let payload = &buf[FRAME_HEADER_BYTES..end];
    if crc32c::crc32c(payload) != crc {
        return Err(FrameError::BadCrc);
    }
    Ok((payload, end))
}

/// The metadata log of one controller. Owned by the controller thread; not shared.
///
/// Lifecycle: [`MetadataLog::open`] recovers and locks the folder, then
/// [`MetadataLog::append`] per command and [`MetadataLog::snapshot`] now and
/// then; dropping it releases the lock. After any write error it is *failed*
/// and refuses everything.
#[derive(Debug)]
pub struct MetadataLog {
    dir: PathBuf,
    file: File,
    /// Held for the flock; closing it releases the folder.
    _lock: File,
    log_bytes: u64,
    records_since_snapshot: u64,
    failed: bool,
}

/// What recovery found, for logging.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub snapshot_version: Option<u64>,
    pub batches_replayed: u64,
    /// Bytes cut from a torn or corrupt tail.
    pub truncated_bytes: u64,
}

pub(crate) fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn lock_dir(dir: &Path) -> anyhow::Result<File> {
    lock_dir_for(dir, LOCK_FILE, "another controller")
}

/// Locks `dir` (flock on `lock_file` in it) for as long as the returned file
/// is open; `holder` names who else would hold it, for the error.
pub(crate) fn lock_dir_for(dir: &Path, lock_file: &str, holder: &str) -> anyhow::Result<File> {
    let path = dir.join(lock_file);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: flock on a file descriptor we own and keep open; no memory is shared.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        bail!("{} is in use by {holder} ({err})", dir.display());
    }
    Ok(file)
}

impl MetadataLog {
    /// Opens (creating if needed) the log in `dir`, recovers, and returns the
    /// log positioned for appends together with the recovered state machine.
    pub fn open(dir: &Path) -> anyhow::Result<(MetadataLog, StateMachine, RecoveryReport)> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let lock = lock_dir(dir)?;
        let mut report = RecoveryReport::default();

        let tmp = dir.join(SNAPSHOT_TMP_FILE);
        if tmp.exists() {
            fs::remove_file(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
        }
        let snap_path = dir.join(SNAPSHOT_FILE);
        let mut sm = match fs::read(&snap_path) {
            Ok(bytes) => {
                let (payload, used) = decode_frame(&bytes, SNAPSHOT_BYTES_MAX).map_err(|e| {
                    anyhow::anyhow!("snapshot {} is damaged: {e:?}", snap_path.display())
                })?;
                if used != bytes.len() {
                    bail!("snapshot {} has trailing bytes", snap_path.display());
                }
                let snap: Snapshot = serde_json::from_slice(payload)
                    .with_context(|| format!("decoding snapshot {}", snap_path.display()))?;
                if snap.v != FORMAT_VERSION {
                    bail!("snapshot format v{} is not supported (this build reads v1)", snap.v);
                }
                report.snapshot_version = Some(snap.image.version);
                StateMachine::from_image(snap.image)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => StateMachine::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", snap_path.display())),
        };

        let log_path = dir.join(LOG_FILE);
        let existed = log_path.exists();
        let bytes = if existed {
            fs::read(&log_path).with_context(|| format!("reading {}", log_path.display()))?
        } else {
            Vec::new()
        };
        let mut pos = 0usize;
        let mut records_since_snapshot = 0u64;
        while pos < bytes.len() {
            let (payload, used) = match decode_frame(&bytes[pos..], FRAME_BYTES_MAX) {
                Ok(ok) => ok,
                Err(e) => {
                    tracing::warn!(
                        position = pos,
                        file_bytes = bytes.len(),
                        reason = ?e,
                        "metadata log ends in a torn or corrupt frame; truncating"
                    );
                    break;
                }
            };
            let batch: LogBatch = serde_json::from_slice(payload).with_context(|| {
                format!("decoding metadata log frame at byte {pos} (CRC is good)")
            })?;
            if batch.v != FORMAT_VERSION {
                bail!("metadata log batch v{} at byte {pos} is not supported", batch.v);
            }
            let version = sm.image().version;
            let end = batch.base + batch.records.len() as u64;
            if end <= version {
                // Already in the snapshot.
            } else if batch.base == version {
                for r in &batch.records {
                    sm.apply(r);
                }
                records_since_snapshot += batch.records.len() as u64;
                report.batches_replayed += 1;
            } else {
                bail!(
                    "metadata log batch at byte {pos} starts at version {} but the image is at {version}",
                    batch.base
                );
            }
            pos += used;
        }

        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        if pos < bytes.len() {
            report.truncated_bytes = (bytes.len() - pos) as u64;
            file.set_len(pos as u64).context("truncating the metadata log")?;
            file.sync_all().context("fsync of the truncated metadata log")?;
        }
        if !existed {
            file.flush()?;
            fsync_dir(dir).context("fsync of the data folder")?;
        }
        let log = MetadataLog {
            dir: dir.to_path_buf(),
            file,
            _lock: lock,
            log_bytes: pos as u64,
            records_since_snapshot,
            failed: false,
        };
        Ok((log, sm, report))
    }

    /// Records appended since the last snapshot.
    pub fn records_since_snapshot(&self) -> u64 {
        self.records_since_snapshot
    }

    /// Bytes in `metadata.log`.
    pub fn log_bytes(&self) -> u64 {
        self.log_bytes
    }

    fn check_failed(&self) -> Result<(), ControllerError> {
        if self.failed {
            return Err(ControllerError::Fatal("the metadata log failed earlier".into()));
        }
        Ok(())
    }

    fn fail(&mut self, what: &str, e: io::Error) -> ControllerError {
        self.failed = true;
        tracing::error!(error = %e, "{what} failed; the controller stops");
        ControllerError::Fatal(format!("{what}: {e}"))
    }

    /// Appends one command's records (the first at version `base`) as one
    /// frame and fsyncs. Only after `Ok` may the records be applied and the
    /// command acknowledged.
    pub fn append(&mut self, base: u64, records: &[MetadataRecord]) -> Result<(), ControllerError> {
        self.check_failed()?;
        assert!(!records.is_empty(), "empty batches are not logged");
        let batch = LogBatch { v: FORMAT_VERSION, base, records: records.to_vec() };
        let payload = serde_json::to_vec(&batch).expect("records serialize");
        if payload.len() > FRAME_BYTES_MAX as usize {
            // Limits on commands keep this from happening; refuse rather than
            // write a frame recovery would reject.
            return Err(ControllerError::InvalidRequest(format!(
                "command too large for the metadata log ({} bytes)",
                payload.len()
            )));
        }
        let frame = encode_frame(&payload);
        if let Err(e) = self.file.write_all(&frame) {
            return Err(self.fail("write of the metadata log", e));
        }
        if let Err(e) = self.file.sync_data() {
            return Err(self.fail("fsync of the metadata log", e));
        }
        self.log_bytes += frame.len() as u64;
        self.records_since_snapshot += records.len() as u64;
        Ok(())
    }

    /// Writes `image` as the snapshot (temp file, fsync, rename, fsync of the
    /// folder) and empties the log, whose records the snapshot now holds.
    pub fn snapshot(&mut self, image: &MetadataImage) -> Result<(), ControllerError> {
        self.check_failed()?;
        let payload = serde_json::to_vec(&Snapshot { v: FORMAT_VERSION, image: image.clone() })
            .expect("image serializes");
        assert!(payload.len() <= SNAPSHOT_BYTES_MAX as usize, "image over the snapshot limit");
        let frame = encode_frame(&payload);
        let tmp = self.dir.join(SNAPSHOT_TMP_FILE);
        let write = || -> io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&frame)?;
            f.sync_all()?;
            fs::rename(&tmp, self.dir.join(SNAPSHOT_FILE))?;
            fsync_dir(&self.dir)
        };
        if let Err(e) = write() {
            return Err(self.fail("writing the metadata snapshot", e));
        }
        if let Err(e) = self.file.set_len(0).and_then(|()| self.file.sync_all()) {
            return Err(self.fail("truncating the metadata log after a snapshot", e));
        }
        self.log_bytes = 0;
        self.records_since_snapshot = 0;
        Ok(())
    }

    /// Path of the log file (for tests and tools).
    pub fn log_path(dir: &Path) -> PathBuf {
        dir.join(LOG_FILE)
    }

    /// Path of the snapshot file (for tests and tools).
    pub fn snapshot_path(dir: &Path) -> PathBuf {
        dir.join(SNAPSHOT_FILE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigDefaults;
    use crate::state::tests::{node, seq_ids};
    use crate::state::{Command, TopicIdSource};

    /// Handles `cmd`, appends, applies: the controller loop without threads.
    fn commit(
        log: &mut MetadataLog,
        sm: &mut StateMachine,
        ids: &mut dyn TopicIdSource,
        cmd: Command,
    ) {
        let plan = sm.handle(&cmd, ids).unwrap();
        if !plan.records.is_empty() {
            log.append(sm.image().version, &plan.records).unwrap();
            for r in &plan.records {
                sm.apply(r);
            }
        }
    }

    fn populate(dir: &Path) -> MetadataImage {
        let (mut log, mut sm, _) = MetadataLog::open(dir).unwrap();
        let boot = sm.bootstrap(|| "cid".into(), &ConfigDefaults::default()).unwrap();
        log.append(0, &boot).unwrap();
        for r in &boot {
            sm.apply(r);
        }
        let mut ids = seq_ids();
        commit(&mut log, &mut sm, &mut ids, Command::RegisterNode(node(1)));
        for i in 0..5 {
            commit(&mut log, &mut sm, &mut ids, Command::create_topic(format!("t{i}"), 3, 1));
        }
        sm.image().clone()
    }

    #[test]
    fn frame_round_trip_and_errors() {
        let f = encode_frame(b"hello");
        assert_eq!(&f[0..4], &5u32.to_be_bytes());
        assert_eq!(decode_frame(&f, 100), Ok((&b"hello"[..], 13)));
        assert_eq!(decode_frame(&f[..12], 100), Err(FrameError::Incomplete));
        assert_eq!(decode_frame(&f[..3], 100), Err(FrameError::Incomplete));
        assert_eq!(decode_frame(&f, 4), Err(FrameError::TooLong(5)));
        let mut bad = f.clone();
        bad[10] ^= 1;
        assert_eq!(decode_frame(&bad, 100), Err(FrameError::BadCrc));
    }

    #[test]
    fn replay_rebuilds_identical_image() {
        let dir = tempfile::tempdir().unwrap();
        let image = populate(dir.path());
        let (_log, sm, report) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(sm.image(), &image);
        assert_eq!(report.batches_replayed, 7);
        assert_eq!(report.truncated_bytes, 0);
    }

    #[test]
    fn second_open_of_a_locked_folder_fails() {
        let dir = tempfile::tempdir().unwrap();
        let _held = MetadataLog::open(dir.path()).unwrap();
        let err = MetadataLog::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("in use"), "{err}");
    }

    #[test]
    fn torn_tail_is_truncated_and_the_prefix_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let image = populate(dir.path());
        let path = MetadataLog::log_path(dir.path());
        let good_len = fs::metadata(&path).unwrap().len();

        // A torn frame: header and half the payload of another batch.
        let frame = encode_frame(br#"{"v":1,"base":99,"records":[]}"#);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&frame[..frame.len() / 2]).unwrap();
        drop(f);
        let (mut log, mut sm, report) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(sm.image(), &image);
        assert_eq!(report.truncated_bytes, (frame.len() / 2) as u64);
        assert_eq!(fs::metadata(&path).unwrap().len(), good_len);

        // Appends continue after the valid prefix and survive the next restart.
        let mut ids = seq_ids();
        commit(&mut log, &mut sm, &mut ids, Command::create_topic("after", 1, 1));
        let image = sm.image().clone();
        drop(log);
        let (_log, sm, _) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(sm.image(), &image);
        assert!(sm.image().topic("after").is_some());
    }

    #[test]
    fn corrupt_last_frame_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        populate(dir.path());
        let path = MetadataLog::log_path(dir.path());
        let mut bytes = fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 3] ^= 0x40; // inside the last frame (topic t4)
        fs::write(&path, &bytes).unwrap();
        let (_log, sm, report) = MetadataLog::open(dir.path()).unwrap();
        assert!(report.truncated_bytes > 0);
        assert!(sm.image().topic("t3").is_some());
        assert!(sm.image().topic("t4").is_none());
    }

    #[test]
    fn snapshot_truncate_restart() {
        let dir = tempfile::tempdir().unwrap();
        populate(dir.path());
        let (mut log, mut sm, _) = MetadataLog::open(dir.path()).unwrap();
        log.snapshot(sm.image()).unwrap();
        assert_eq!(fs::metadata(MetadataLog::log_path(dir.path())).unwrap().len(), 0);
        assert_eq!(log.records_since_snapshot(), 0);
        let mut ids = seq_ids();
        commit(&mut log, &mut sm, &mut ids, Command::create_topic("post", 2, 1));
        let image = sm.image().clone();
        drop(log);
        let (_log, sm, report) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(sm.image(), &image);
        assert_eq!(report.snapshot_version, Some(image.version - 1));
        assert_eq!(report.batches_replayed, 1);
    }

    #[test]
    fn crash_between_snapshot_and_truncate_skips_old_batches() {
        let dir = tempfile::tempdir().unwrap();
        let image = populate(dir.path());
        let path = MetadataLog::log_path(dir.path());
        let old_log = fs::read(&path).unwrap();
        {
            let (mut log, sm, _) = MetadataLog::open(dir.path()).unwrap();
            log.snapshot(sm.image()).unwrap();
        }
        // Put the pre-snapshot log back, as if truncation never happened.
        fs::write(&path, &old_log).unwrap();
        let (_log, sm, report) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(sm.image(), &image);
        assert_eq!(report.batches_replayed, 0);
    }

    #[test]
    fn damaged_snapshot_refuses_to_start() {
        let dir = tempfile::tempdir().unwrap();
        populate(dir.path());
        {
            let (mut log, sm, _) = MetadataLog::open(dir.path()).unwrap();
            log.snapshot(sm.image()).unwrap();
        }
        let path = MetadataLog::snapshot_path(dir.path());
        let mut bytes = fs::read(&path).unwrap();
        bytes[20] ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert!(MetadataLog::open(dir.path()).is_err());
    }

    #[test]
    fn leadership_records_survive_a_reload() {
        use crate::state::{IsrEntry, NodeInfo};
        use weir_proto::ids::NodeId;
        let dir = tempfile::tempdir().unwrap();
        populate(dir.path());
        let (mut log, mut sm, _) = MetadataLog::open(dir.path()).unwrap();
        let mut ids = seq_ids();
        for n in 2..=3 {
            commit(&mut log, &mut sm, &mut ids, Command::RegisterNode(node(n)));
        }
        commit(&mut log, &mut sm, &mut ids, Command::create_topic("r", 3, 3));
        let epoch = |sm: &StateMachine, n: i32| sm.image().registrations[&NodeId(n)].broker_epoch;
        let e1 = epoch(&sm, 1);
        commit(
            &mut log,
            &mut sm,
            &mut ids,
            Command::FenceNode { node: NodeId(1), broker_epoch: e1 },
        );
        let p = sm.image().topics["r"].partitions[1].clone();
        let alter = Command::AlterPartition {
            topic: "r".into(),
            partition: p.partition,
            leader: p.leader,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            new_isr: vec![IsrEntry { node: p.leader, broker_epoch: -1 }],
        };
        commit(&mut log, &mut sm, &mut ids, alter);
        let heartbeat =
            Command::Heartbeat { node: NodeId(1), broker_epoch: e1, want_shutdown: false };
        commit(&mut log, &mut sm, &mut ids, heartbeat);
        let bounced = NodeInfo { incarnation: 9, ..node(3) };
        commit(&mut log, &mut sm, &mut ids, Command::RegisterNode(bounced));
        let image = sm.image().clone();
        assert!(image.leader_elections > 0);
        drop(log);
        let (mut log, sm, _) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(sm.image(), &image);
        // And through a snapshot.
        log.snapshot(sm.image()).unwrap();
        drop(log);
        let (_log, sm, _) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(sm.image(), &image);
    }

    /// Records and snapshots written before broker epochs, partition epochs
    /// and registrations still load.
    #[test]
    fn old_format_records_and_snapshots_still_load() {
        use crate::state::CommandResult;
        use weir_proto::ids::NodeId;
        let topic = r#"{"name":"t","id":"00000000-0000-0000-0000-000000000101","internal":false,
            "partitions":[{"partition":0,"leader":1,"leader_epoch":0,"replicas":[1],"isr":[1]}],
            "overrides":{}}"#;
        let node = r#"{"id":1,"host":"127.0.0.1","port":9093,"rack":null}"#;
        let batch = format!(
            r#"{{"v":1,"base":0,"records":[{{"type":"ClusterInitialized","cluster_id":"old"}},
            {{"type":"NodeRegistered","node":{node}}},{{"type":"TopicCreated","topic":{topic}}}]}}"#
        );
        let dir = tempfile::tempdir().unwrap();
        fs::write(MetadataLog::log_path(dir.path()), encode_frame(batch.as_bytes())).unwrap();
        let (mut log, mut sm, report) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(report.batches_replayed, 1);
        // The old registration's broker epoch is its record's offset.
        assert_eq!(sm.image().registrations[&NodeId(1)].broker_epoch, 1);
        assert_eq!(sm.image().topics["t"].partitions[0].partition_epoch, 0);
        let mut ids = seq_ids();
        let plan =
            sm.handle(&Command::RegisterNode(crate::state::tests::node(1)), &mut ids).unwrap();
        assert!(plan.records.is_empty(), "the same node registering again writes nothing");
        assert!(matches!(plan.result, CommandResult::NodeRegistered { broker_epoch: 1, .. }));
        commit(&mut log, &mut sm, &mut ids, Command::create_topic("new", 1, 1));
        drop(log);

        // A snapshot image from before registrations: its nodes count as live
        // until they register again.
        let image = format!(
            r#"{{"v":1,"image":{{"cluster_id":"old","version":3,"nodes":{{"1":{node}}},
            "topics":{{"t":{topic}}},"next_producer_id":0,
            "defaults":{{"num_partitions":1,"default_replication_factor":1,"topic":{{}}}}}}}}"#
        );
        let dir = tempfile::tempdir().unwrap();
        fs::write(MetadataLog::snapshot_path(dir.path()), encode_frame(image.as_bytes())).unwrap();
        let (mut log, mut sm, _) = MetadataLog::open(dir.path()).unwrap();
        assert!(sm.image().registrations.is_empty());
        assert!(sm.image().is_eligible(NodeId(1)));
        commit(&mut log, &mut sm, &mut ids, Command::create_topic("new", 1, 1));
        commit(&mut log, &mut sm, &mut ids, Command::RegisterNode(crate::state::tests::node(1)));
        assert_eq!(sm.image().registrations[&NodeId(1)].broker_epoch, 4);
    }

    #[test]
    fn producer_id_blocks_never_overlap_across_restart() {
        let dir = tempfile::tempdir().unwrap();
        populate(dir.path());
        let mut seen: Vec<(i64, i64)> = Vec::new();
        for round in 0..3 {
            let (mut log, mut sm, _) = MetadataLog::open(dir.path()).unwrap();
            if round == 1 {
                log.snapshot(sm.image()).unwrap();
            }
            for _ in 0..3 {
                let cmd = Command::AllocateProducerIds { node: node(1).id, count: 100 };
                let plan = sm.handle(&cmd, &mut seq_ids()).unwrap();
                log.append(sm.image().version, &plan.records).unwrap();
                for r in &plan.records {
                    sm.apply(r);
                }
                let crate::state::CommandResult::ProducerIds { first, count } = plan.result else {
                    panic!()
                };
                seen.push((first.0, first.0 + i64::from(count)));
            }
        }
        seen.sort();
        for w in seen.windows(2) {
            assert!(w[0].1 <= w[1].0, "overlap: {:?} {:?}", w[0], w[1]);
        }
        assert_eq!(seen.len(), 9);
    }
}
