//! The controller as a Raft quorum of 1, 3 or 5 members (openraft 0.9).
//!
//! ```text
//!   submit(Command) ─▶ leader: ensure_linearizable ─▶ StateMachine::handle on the
//!                      applied image ─▶ client_write(MetadataEntry{base_version, records})
//!                                             │ replicated over weir-net QUIC (mutual TLS)
//!                                             ▼
//!   every member: LogStore (segment files, fsync) ─▶ MetadataStateMachine::apply
//!                                                     └─▶ Hub (image + subscribers)
//! ```
//!
//! # What is replicated: planned records, not commands
//!
//! Raft must replicate deterministic results. A [`Command`](crate::Command)
//! is not deterministic on its own: creating a topic draws a random topic id,
//! and placement depends on the image the command is planned against. So the
//! leader plans each command against its *applied* image (after
//! `ensure_linearizable`, which waits until everything committed before its
//! term is applied) and replicates the planned [`MetadataRecord`]s together
//! with the image version they were planned against ([`MetadataEntry`]).
//! Every member applies an entry only if its image is still at that version;
//! otherwise the entry is a deterministic no-op ([`ApplyResult::Stale`]) and
//! the leader plans again. That check is what makes a stale plan harmless
//! (one made before a leadership change and appended after entries of another
//! leader), since every member holds the same image at the same log position.
//! Submits on one member are serialized, so a leader normally never produces a
//! stale entry.
//!
//! # Modules
//!
//! * [`log_store`] — the durable Raft log: segment files, vote, purge marker.
//! * [`state_machine`] — applies entries to the metadata image; snapshots.
//! * [`network`] — openraft RPCs over weir-net (`Header::RaftRequest`).
//! * [`controller`] — [`RaftController`]: one member, its runtime and API.
//! * [`handle`] — a [`crate::ControllerHandle`] over a member, for the
//!   node-facing server.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::state::MetadataRecord;

pub mod controller;
pub mod handle;
pub mod log_store;
pub mod network;
pub mod state_machine;

pub use controller::{RaftController, RaftControllerConfig, RaftOptions};
pub use handle::start_handle;
pub use log_store::{LogRecovery, LogStore};
pub use state_machine::MetadataStateMachine;

/// The application data of one Raft entry: the records one command planned,
/// and the image version (records applied) it was planned against.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataEntry {
    pub base_version: u64,
    pub records: Vec<MetadataRecord>,
}

impl std::fmt::Display for MetadataEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} records at version {}", self.records.len(), self.base_version)
    }
}

/// What applying one entry did, returned to the leader's `client_write`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApplyResult {
    /// A blank or membership entry: nothing for the metadata image.
    NotData,
    /// The records were applied; the image is now at `version`.
    Applied { version: u64 },
    /// The image had moved past `base_version`; nothing was applied. The
    /// image is at `version`.
    Stale { version: u64 },
}

openraft::declare_raft_types!(
    /// Raft types of the controller quorum. Member ids are `u64` in openraft
    /// and the `i32` node id of the member's certificate on the wire.
    pub TypeConfig:
        D = MetadataEntry,
        R = ApplyResult,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
);

/// A Raft log entry of the controller quorum.
pub type RaftEntry = openraft::Entry<TypeConfig>;
/// Storage errors as openraft wants them.
pub type StorageError = openraft::StorageError<u64>;

fn io_error(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}
