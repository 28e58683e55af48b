//! weir-node: the storage node.
//!
//! One glommio executor per core ("shard"), each pinned. Every shard accepts
//! Kafka connections on the same port; each partition is owned by exactly one
//! shard, and requests for other shards' partitions cross over bounded
//! channels. Partition state machines live in `weir-node-core` (sans-IO); this
//! crate is the I/O shell around them.

pub mod cli;
pub mod config;
pub mod kafka;
pub mod limits;
pub mod metadata_sync;
pub mod metrics;
pub mod node;
pub mod replication;
pub mod rt;
pub mod shard;
pub mod storage;
