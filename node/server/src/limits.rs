//! Every bound the node enforces, in one place.
//!
//! Each queue, buffer pool and in-flight table is sized here from
//! configuration at start-up. At a bound the node pushes back on the client
//! (stops reading the socket, or answers with a retriable error); nothing
//! grows without limit.

use crate::config::NodeConfig;

/// Bounds for one node, copied to every shard at start-up.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request frame accepted (Kafka's `socket.request.max.bytes`,
    /// default 100 MiB). Checked against the size prefix before allocating.
    pub request_frame_bytes_max: usize,
    /// Requests read but not yet answered on one connection. At the bound the
    /// connection stops reading, so a client pipelining too far waits.
    pub connection_inflight_requests_max: usize,
    /// Idle request-frame buffers a shard keeps for reuse, and the largest
    /// buffer kept (a 1 MiB produce batch plus its request): at most
    /// 16 × 1.25 MiB of idle memory per shard.
    pub frame_pool_buffers_per_shard: usize,
    pub frame_pool_buffer_bytes_max: usize,
    /// Cross-shard jobs one shard may have outstanding on another; a task
    /// waits for a permit beyond it. Bounds every shard's inbox to
    /// shards × this (jobs) plus as many answers.
    pub shard_jobs_in_flight_per_peer_max: usize,
    /// Bytes a partition may hold appended but not yet written to the device.
    /// Producers wait for the flush when a partition reaches it.
    pub partition_unflushed_bytes_max: usize,
    /// Size of one O_DIRECT write chunk (a multiple of 4 KiB).
    pub write_chunk_bytes: usize,
    /// How long appended bytes may wait in memory before a write is issued
    /// when nobody waits for them (acks=0, write-behind).
    pub write_behind_ms_max: u64,
    /// First preallocation step for a new segment, doubled up to
    /// `segment_preallocate_bytes_max` as the segment grows.
    pub segment_preallocate_bytes_min: u64,
    pub segment_preallocate_bytes_max: u64,
    /// Files of deleted segments a partition keeps to reuse as its next
    /// segments (written blocks: appends overwrite instead of allocating).
    /// Costs up to this many segments of disk per partition beyond
    /// `retention.bytes`; none are kept while the disk is short of space.
    pub segment_spares_per_partition_max: usize,
    /// Bytes of recently appended batches each shard keeps in memory to serve
    /// caught-up consumers without disk reads.
    pub batch_cache_bytes_per_shard: usize,
    /// Bytes each shard may hold read ahead of cold sequential readers
    /// (`storage::read_ahead`): at most one stretch of a fetch's partition
    /// size per partition; the oldest is dropped at the bound. While a
    /// stretch is read, the previous one's buffer may live on for the bytes
    /// it carries over: memory stays under twice this.
    pub read_ahead_bytes_per_shard: usize,
    /// Largest single cold read issued for a fetch.
    pub fetch_read_bytes_max: usize,
    /// Fetch requests parked waiting for data on one shard.
    pub fetch_waiters_per_shard_max: usize,
    /// Idempotent producers remembered per partition.
    pub producers_per_partition_max: usize,
    /// Partitions one node may host.
    pub partitions_per_node_max: usize,
}

impl Limits {
    pub fn from_config(config: &NodeConfig) -> Limits {
        Limits {
            request_frame_bytes_max: config.socket_request_max_bytes,
            connection_inflight_requests_max: 128,
            frame_pool_buffers_per_shard: 16,
            frame_pool_buffer_bytes_max: 1280 << 10,
            shard_jobs_in_flight_per_peer_max: 512,
            partition_unflushed_bytes_max: 8 << 20,
            write_chunk_bytes: 256 << 10,
            write_behind_ms_max: config.write_behind_ms,
            segment_preallocate_bytes_min: 1 << 20,
            segment_preallocate_bytes_max: 32 << 20,
            segment_spares_per_partition_max: 2,
            batch_cache_bytes_per_shard: config.batch_cache_bytes_per_shard,
            read_ahead_bytes_per_shard: 64 << 20,
            fetch_read_bytes_max: 8 << 20,
            fetch_waiters_per_shard_max: 4096,
            producers_per_partition_max: 10_000,
            partitions_per_node_max: 20_000,
        }
    }
}
