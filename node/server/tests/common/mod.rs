//! Set-up shared by the storage tests: one partition on real O_DIRECT files,
//! outside any shard.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use weir_node::config::{Durability, NodeConfig};
use weir_node::limits::Limits;
use weir_node::storage::cache::ShardCache;
use weir_node::storage::partition::{Partition, StorageEnv, TopicSettings};
use weir_node::storage::read_ahead::ReadAheads;
use weir_node::storage::space::DirSpace;
use weir_node_core::log::LogConfig;
use weir_node_core::replica::ReplicaConfig;
use weir_proto::Offset;
use weir_proto::batch::BatchIter;
use weir_proto::{NodeId, PartitionId, TopicPartition};

pub const TOPIC_ID: uuid::Uuid = uuid::Uuid::from_u128(0x1234_5678);
pub const T0: i64 = 1_700_000_000_000;

/// Opens (recovers) partition `tp` in `dir` as node `node`'s replica, with
/// segments of `segment_bytes`, fsync durability and a 64 MiB batch cache.
#[allow(dead_code)] // not every test file uses every helper
pub async fn open(dir: &Path, tp: TopicPartition, node: i32, segment_bytes: u64) -> Rc<Partition> {
    open_with(dir, tp, node, segment_bytes, 64 << 20, ReadAheads::new(64 << 20)).await
}

/// [`open`] with a batch cache of `cache_bytes` and the given read-ahead budget.
pub async fn open_with(
    dir: &Path,
    tp: TopicPartition,
    node: i32,
    segment_bytes: u64,
    cache_bytes: usize,
    read_aheads: Rc<ReadAheads>,
) -> Rc<Partition> {
    let env = StorageEnv {
        durability: Durability::Fsync,
        limits: Rc::new(Limits::from_config(&NodeConfig::default())),
        shard_cache: Rc::new(RefCell::new(ShardCache::new(cache_bytes))),
        read_aheads,
        space: Rc::new(DirSpace::new(dir.to_path_buf(), 0)),
        replica: ReplicaConfig {
            node: NodeId(node),
            partition: PartitionId(0),
            min_insync_replicas: 1,
            replica_lag_time_max_ms: 30_000,
            fetch_backoff_ms: 100,
            request_timeout_ms: 30_000,
            ack_waiters_max: 1,
        },
    };
    let settings = TopicSettings {
        log: LogConfig { segment_bytes, ..LogConfig::default() },
        max_message_bytes: 1 << 20,
        log_append_time: false,
        min_insync_replicas: 1,
    };
    Partition::open(dir, tp, TOPIC_ID, settings, &env, T0).await.expect("open partition")
}

/// Makes node 1 the only replica and leader of `p`, as the controller would.
#[allow(dead_code)] // not every test file uses every helper
pub async fn lead_alone(p: &Rc<Partition>) {
    let state = weir_node_core::replica::PartitionState {
        partition: PartitionId(0),
        leader: Some(NodeId(1)),
        leader_epoch: weir_proto::LeaderEpoch(0),
        partition_epoch: weir_node_core::replica::PartitionEpoch(0),
        isr: vec![NodeId(1)],
        replicas: vec![NodeId(1)],
    };
    p.apply_partition_state(&state, T0).await.expect("lead");
}

/// Reads from `from` to the end in steps of at most `max_bytes`: the (base,
/// last) offsets of the batches served, each checked against its CRC.
#[allow(dead_code)] // not every test file uses every helper
pub async fn read_from(p: &Rc<Partition>, from: Offset, max_bytes: usize) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut at = from;
    loop {
        let r = p.read(at, max_bytes).await.expect("read");
        if r.records.is_empty() {
            return out;
        }
        for item in BatchIter::new(&r.records) {
            let (h, _) = item.expect("every served batch passes its CRC check");
            out.push((h.base_offset.0, h.last_offset().0));
            at = h.last_offset().next();
        }
    }
}
