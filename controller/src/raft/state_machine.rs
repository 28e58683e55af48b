//! The replicated state machine of one member: committed entries folded into
//! the metadata image with the existing sans-IO [`StateMachine`], and
//! snapshots of that image.
//!
//! # Files in `<data dir>/raft/`
//!
//! ```text
//! snapshot, snapshot.tmp   one frame (crate::log's [len][CRC-32C][JSON]) of
//!                          {"v":1,"meta":<openraft SnapshotMeta>,"image":<MetadataImage>}
//! ```
//!
//! The snapshot is written (temp, fsync, rename, fsync dir) before
//! `build_snapshot` returns, because openraft purges the log up to it right
//! after. The same JSON payload is what a leader streams to a follower that
//! is too far behind, and what the follower writes on install.
//!
//! The image itself is not persisted apart from snapshots: on restart the
//! member resumes from the snapshot and re-applies committed entries from its
//! log as the leader tells it the commit index.
//!
//! Owned by openraft's state-machine task; the snapshot builder and the
//! [`Hub`] share it behind a mutex that is never held across an await.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageIOError,
    StoredMembership,
};
use serde::{Deserialize, Serialize};

use super::log_store::{read_atomic, write_atomic};
use super::{ApplyResult, RaftEntry, StorageError, TypeConfig, io_error};
use crate::handle::Hub;
use crate::log::SNAPSHOT_BYTES_MAX;
use crate::state::{MetadataDelta, MetadataImage, StateMachine};

/// Format version of the snapshot payload.
const FORMAT_VERSION: u32 = 1;
const SNAPSHOT_FILE: &str = "snapshot";

type Meta = SnapshotMeta<u64, BasicNode>;

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    v: u32,
    meta: Meta,
    image: MetadataImage,
}

struct Inner {
    dir: PathBuf,
    sm: StateMachine,
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
    /// The last snapshot built or installed: its meta and payload.
    snapshot: Option<(Meta, Vec<u8>)>,
    hub: Arc<Hub>,
}

/// The metadata state machine of one Raft member. Clones share one state
/// (the snapshot builder is a clone).
#[derive(Clone)]
pub struct MetadataStateMachine {
    inner: Arc<Mutex<Inner>>,
}

fn sm_error(e: impl std::fmt::Display) -> StorageError {
    StorageError::IO { source: StorageIOError::write_state_machine(&io_error(e)) }
}

impl MetadataStateMachine {
    /// Resumes from the snapshot in `dir` (if any). Every applied change is
    /// published to `hub`, whose image must be the snapshot's: build it with
    /// [`MetadataStateMachine::recovered_image`].
    pub(crate) fn open(dir: &Path, hub: Arc<Hub>) -> anyhow::Result<MetadataStateMachine> {
        let (snapshot, sm, last_applied, membership) = match Self::load(dir)? {
            Some((file, payload)) => {
                let applied = file.meta.last_log_id;
                let membership = file.meta.last_membership.clone();
                (
                    Some((file.meta, payload)),
                    StateMachine::from_image(file.image),
                    applied,
                    membership,
                )
            }
            None => (None, StateMachine::new(), None, StoredMembership::default()),
        };
        assert_eq!(hub.image(), *sm.image(), "the hub starts at the snapshot's image");
        let inner = Inner { dir: dir.to_path_buf(), sm, last_applied, membership, snapshot, hub };
        Ok(MetadataStateMachine { inner: Arc::new(Mutex::new(inner)) })
    }

    /// The image a member restarts from: its snapshot's, or empty.
    pub fn recovered_image(dir: &Path) -> anyhow::Result<MetadataImage> {
        Ok(Self::load(dir)?.map(|(f, _)| f.image).unwrap_or_default())
    }

    fn load(dir: &Path) -> anyhow::Result<Option<(SnapshotFile, Vec<u8>)>> {
        let Some(file) = read_atomic::<SnapshotFile>(dir, SNAPSHOT_FILE, SNAPSHOT_BYTES_MAX)?
        else {
            return Ok(None);
        };
        if file.v != FORMAT_VERSION {
            anyhow::bail!("Raft snapshot format v{} is not supported", file.v);
        }
        let payload = serde_json::to_vec(&file)?;
        Ok(Some((file, payload)))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The image as applied so far.
    pub fn image(&self) -> MetadataImage {
        self.lock().sm.image().clone()
    }

    /// Folds committed entries into the image; one result per entry.
    pub fn apply_entries(&self, entries: impl IntoIterator<Item = RaftEntry>) -> Vec<ApplyResult> {
        let mut inner = self.lock();
        let mut deltas: Vec<MetadataDelta> = Vec::new();
        let mut results = Vec::new();
        for entry in entries {
            inner.last_applied = Some(entry.log_id);
            let result = match entry.payload {
                EntryPayload::Blank => ApplyResult::NotData,
                EntryPayload::Membership(m) => {
                    inner.membership = StoredMembership::new(Some(entry.log_id), m);
                    ApplyResult::NotData
                }
                EntryPayload::Normal(data) => {
                    let version = inner.sm.image().version;
                    if data.base_version == version {
                        deltas.extend(data.records.iter().map(|r| inner.sm.apply(r)));
                        ApplyResult::Applied { version: inner.sm.image().version }
                    } else {
                        // Every member holds the same image here, so every
                        // member skips it alike (see the module docs).
                        tracing::info!(
                            base_version = data.base_version,
                            version,
                            "stale metadata entry skipped"
                        );
                        ApplyResult::Stale { version }
                    }
                }
            };
            results.push(result);
        }
        if !deltas.is_empty() {
            inner.hub.publish(&deltas);
        }
        results
    }

    /// Snapshots the applied image to disk; returns its meta and payload.
    pub fn build(&self) -> std::io::Result<(Meta, Vec<u8>)> {
        let (file, dir) = {
            let inner = self.lock();
            let image = inner.sm.image().clone();
            let snapshot_id = match inner.last_applied {
                Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, image.version),
                None => format!("none-{}", image.version),
            };
            let meta = Meta {
                last_log_id: inner.last_applied,
                last_membership: inner.membership.clone(),
                snapshot_id,
            };
            (SnapshotFile { v: FORMAT_VERSION, meta, image }, inner.dir.clone())
        };
        // Serialized and written outside the lock: applies carry on meanwhile.
        let payload = serde_json::to_vec(&file).map_err(io_error)?;
        write_atomic(&dir, SNAPSHOT_FILE, &payload)?;
        let mut inner = self.lock();
        let newer =
            inner.snapshot.as_ref().is_some_and(|(m, _)| m.last_log_id > file.meta.last_log_id);
        if !newer {
            inner.snapshot = Some((file.meta.clone(), payload.clone()));
        }
        Ok((file.meta, payload))
    }

    /// Replaces the image with a snapshot the leader sent.
    pub fn install(&self, meta: &Meta, payload: Vec<u8>) -> std::io::Result<()> {
        let file: SnapshotFile = serde_json::from_slice(&payload).map_err(io_error)?;
        if file.v != FORMAT_VERSION {
            return Err(io_error(format!("snapshot format v{} is not supported", file.v)));
        }
        let dir = self.lock().dir.clone();
        write_atomic(&dir, SNAPSHOT_FILE, &payload)?;
        let mut inner = self.lock();
        inner.sm = StateMachine::from_image(file.image.clone());
        inner.last_applied = meta.last_log_id;
        inner.membership = meta.last_membership.clone();
        inner.snapshot = Some((meta.clone(), payload));
        inner.hub.publish(&[MetadataDelta::Reset(Box::new(file.image))]);
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for MetadataStateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (meta, payload) = self
            .build()
            .map_err(|e| StorageError::IO { source: StorageIOError::write_snapshot(None, &e) })?;
        tracing::info!(snapshot = %meta.snapshot_id, bytes = payload.len(), "metadata snapshot built");
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(payload)) })
    }
}

impl RaftStateMachine<TypeConfig> for MetadataStateMachine {
    type SnapshotBuilder = MetadataStateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError> {
        let inner = self.lock();
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ApplyResult>, StorageError>
    where
        I: IntoIterator<Item = RaftEntry> + Send,
        I::IntoIter: Send,
    {
        Ok(self.apply_entries(entries))
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        self.install(meta, snapshot.into_inner()).map_err(sm_error)?;
        tracing::info!(snapshot = %meta.snapshot_id, "metadata snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self.lock().snapshot.as_ref().map(|(meta, payload)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(payload.clone())),
        }))
    }
}
