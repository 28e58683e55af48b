//! weir-controller: owns cluster metadata — nodes, topics, partition
//! placement, leaders and epochs, topic configs, producer id blocks — in a
//! durable metadata log.
//!
//! ```text
//!   weir-node ──ControllerHandle──┬── in process: flume ──┐
//!                                 └── TCP (remote) ───────┤
//!                                                         ▼
//!                          controller thread: StateMachine (sans-IO)
//!                                 │ records                │ deltas
//!                                 ▼                        ▼
//!                          MetadataLog (fsync)       subscribers
//! ```
//!
//! * [`state`] — the deterministic state machine: commands in, records and
//!   answers out, image rebuilt by replaying records. No clock, no I/O, no
//!   randomness; the Raft quorum ([`raft`]) replicates its records.
//! * [`config`] — topic config keys, defaults, validation, DescribeConfigs.
//! * [`log`] — the on-disk log and snapshots; a failed write stops the
//!   controller (fail-stop).
//! * [`handle`] — [`ControllerHandle`], the node's way in, the same in
//!   process and over TCP ([`remote`]).
//! * [`raft`] — the controller as a 3- or 5-member Raft quorum (openraft):
//!   the same state machine, its planned records replicated; every member
//!   serves nodes, only the leader runs commands.
//! * [`service`] — the `weir-controller` process: config file, signals;
//!   single-process, or one quorum member when `[members]` is configured.
//!
//! This crate must never be on the data path: nodes cache the image and
//! answer Metadata from their copy.

pub mod config;
pub mod error;
pub mod handle;
pub mod log;
pub mod metrics;
pub mod raft;
pub mod remote;
pub mod service;
pub mod state;

pub use config::{ConfigDefaults, ConfigEntry, ConfigOp, ConfigOpType, TopicConfig};
pub use error::ControllerError;
pub use handle::{
    ControllerHandle, ControllerJoin, ControllerOptions, PendingSubmit, start_in_process,
    start_in_process_with,
};
pub use remote::{connect, connect_with, serve, serve_member_until, serve_until};
pub use service::{ControllerConfig, run, run_until};
pub use state::{
    Command, CommandResult, MetadataDelta, MetadataImage, MetadataRecord, NodeInfo,
    PartitionAssignment, PartitionMeta, TopicMeta, TopicRef,
};
