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
//! * `leadership` (private) — registration, fencing, leader election,
//!   AlterPartition, controlled shutdown: Kafka KRaft's rules, sans-IO.
//! * `reassignment` (private) — partition reassignment (KIP-455): moving
//!   replicas between nodes and changing the replication factor, sans-IO.
//! * [`sessions`] — node sessions on the active controller (heartbeat
//!   times, in memory, not in the log); expired ones are fenced.
//! * [`rebalance`] — automatic preferred-leader rebalancing: the active
//!   controller's periodic decision, sans-IO, submitted as ElectLeaders.
//! * [`config`] — topic config keys, defaults, validation, DescribeConfigs;
//!   the dynamic node configs (replication throttle rates).
//! * [`log`] — the on-disk log and snapshots; a failed write stops the
//!   controller (fail-stop).
//! * [`handle`] — [`ControllerHandle`], the node's way in, the same in
//!   process and over the network ([`remote`]: QUIC with mutual TLS, or
//!   plain TCP for development).
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
mod leadership;
pub mod log;
pub mod metrics;
mod placement;
pub mod raft;
mod reassignment;
pub mod rebalance;
pub mod remote;
pub mod service;
pub mod sessions;
pub mod state;

pub use config::{
    ConfigDefaults, ConfigEntry, ConfigOp, ConfigOpType, ReplicationThrottle, ThrottledReplicas,
    TopicConfig,
};
pub use error::ControllerError;
pub use handle::{
    ControllerHandle, ControllerJoin, ControllerOptions, PendingSubmit, start_in_process,
    start_in_process_with,
};
pub use remote::{
    connect, connect_quic, connect_quic_with, connect_with, serve, serve_member_until, serve_until,
};
pub use service::{ControllerConfig, run, run_until};
pub use sessions::Sessions;
pub use state::{
    Command, CommandResult, ElectionResult, ElectionType, IsrEntry, MetadataDelta, MetadataImage,
    MetadataRecord, NO_LEADER, NodeInfo, OngoingReassignment, PartitionAssignment, PartitionMeta,
    ReassignmentResult, Registration, TopicMeta, TopicRef,
};
