//! `weir-group`: a sans-IO classic consumer group coordinator and offset store.
//!
//! One [`GroupCoordinator`] owns the groups of one `__consumer_offsets`
//! partition that the shard leads (groups map to partitions with
//! [`partition_for`], exactly as Kafka places them). It does what Kafka's
//! classic `GroupCoordinator` does: JoinGroup/SyncGroup rebalances with
//! generations and protocol selection, heartbeats and session timeouts,
//! static membership (KIP-345), LeaveGroup, offset commits and fetches,
//! DescribeGroups, ListGroups, DeleteGroups and OffsetDelete.
//!
//! It must never do I/O: it reads no clock (time is `now_ms`), opens no file
//! or socket, spawns nothing and draws no randomness (member ids come from an
//! injected [`IdSource`]). The shell drives it:
//!
//! ```text
//!            replay(key, value)*  then  load_complete(now)
//!                         │
//!   handle_*(id, version, request, now) ──▶ ┌──────────────────┐ ──▶ poll_response() → (RequestId, Response)
//!   handle_tick(now) at next_timer_ms() ──▶ │ GroupCoordinator │ ──▶ poll_append()   → AppendRequest
//!   append_done(append id, result, now) ──▶ └──────────────────┘
//! ```
//!
//! What Kafka persists is emitted as records in Kafka's own
//! `__consumer_offsets` formats ([`records`]); the shell appends them to the
//! partition and reports back with `append_done`, and only then are the
//! corresponding responses released and commits made visible. Replaying the
//! partition's records rebuilds the same state.

mod config;
mod coordinator;
mod group;
mod hash;
mod ids;
pub mod records;
mod subscription;
mod timers;

#[cfg(test)]
mod tests;

pub use config::{GroupConfig, GroupLimits};
pub use coordinator::{
    AppendFailure, AppendId, AppendRequest, ClientInfo, DurableGroup, GroupCoordinator,
    ReplayError, RequestId, Response,
};
pub use group::{CommittedOffset, GroupState};
pub use hash::{java_string_hash, partition_for};
pub use ids::{IdSource, SeededIds};
pub use subscription::subscribed_topics;
