//! Sans-IO core of a Weir partition replica: log bookkeeping, sparse
//! indexes, the recovery scanner and idempotent-producer state.
//!
//! Everything here is plain data driven by the I/O shell (`weir-node`, on
//! glommio): no files, no sockets, no clock (time is a `now_ms: i64`
//! argument), no async. Each value belongs to the shard that owns its
//! partition and is used from that shard only. Invariants of our own state
//! are `assert!`ed and stay on in release; malformed input (client requests,
//! bytes read from disk) gets a `Result`, never a panic.
//!
//! ```text
//!   shell (node/server)                    core (this crate)
//!   ───────────────────                    ─────────────────
//!   Produce ─ check ────────────────────▶ ProducerStateTable::check
//!           ─ plan ─────────────────────▶ PartitionLog::plan_append ─▶ AppendPlan
//!           ─ write bytes (roll: new file, roll_done)
//!           ─ done ─────────────────────▶ PartitionLog::append_done, ProducerStateTable::record
//!   flush   ─────────────────────────────▶ set_durable, advance_high_watermark
//!   Fetch   ─────────────────────────────▶ locate / locate_time ─▶ (segment, position)
//!   startup ─ feed segment bytes ───────▶ SegmentScanner ─▶ ScanOutcome ─▶ from_recovered
//!   timer   ─────────────────────────────▶ retention_plan ─▶ delete files ─▶ segments_deleted
//! ```
//!
//! # API
//!
//! [`index`] (on-disk layouts in its module docs):
//! - `OffsetIndex::new(base: Offset, interval_bytes: u32, max_entries: usize)`,
//!   `on_append(&mut self, batch_base_offset: Offset, batch_position: Position, batch_len: u32)`,
//!   `lookup(&self, target: Offset) -> (Offset, Position)`, `truncate_to(&mut self, Offset)`,
//!   `truncate_to_position(&mut self, Position)`, `is_full`, `len`, `entries`,
//!   `set_limits(interval_bytes, max_entries)`, `encode(&self) -> Vec<u8>`,
//!   `decode(base, bytes: &[u8], segment_size: Position) -> Result<OffsetIndex, IndexError>`.
//! - `TimeIndex::new(base, interval_bytes, max_entries)`,
//!   `on_append(&mut self, max_timestamp: i64, batch_base_offset: Offset, batch_position: Position, batch_len: u32)`,
//!   `lookup(&self, ts: i64) -> Offset` (scan forward from it for the first batch with
//!   maxTimestamp ≥ ts), `seal`, `resume(max_timestamp, next_offset)`,
//!   `truncate_to(&mut self, Offset, max_timestamp_kept: i64)`, `last_timestamp() -> Option<i64>`,
//!   `is_full`, `len`, `entries`, `set_limits`, `encode`,
//!   `decode(base, bytes: &[u8]) -> Result<TimeIndex, IndexError>`.
//!
//! [`recovery`]:
//! - `SegmentScanner::new(base_offset: Offset, expected_next: Option<Offset>, index_interval_bytes: u32, max_batch_bytes: usize)`,
//!   `feed(&mut self, chunk: &[u8])`, `needs_more(&self) -> bool`, `is_stopped(&self) -> bool`,
//!   `valid_len(&self) -> Position`, `finish(self) -> ScanOutcome`.
//! - `ScanOutcome { base_offset, valid_len: Position, next_offset: Offset, max_timestamp: i64,
//!   batch_count: u64, stop: ScanStop, offset_index, time_index, producer_batches: Vec<ProducerBatch> }`,
//!   `into_segment_info(self, created_ms: i64) -> SegmentInfo`.
//! - `ScanStop::{CleanEnd, ZeroFill, Truncated, Corrupt(BatchError), OffsetOrder, EarlierSegment}`,
//!   `is_clean(&self) -> bool`.
//!
//! [`log`]:
//! - `LogConfig { segment_bytes: u64, segment_ms: i64, retention_ms: Option<i64>,
//!   retention_bytes: Option<u64>, index_interval_bytes: u32, index_max_entries: usize }`
//!   (`Default` = Kafka's defaults), `validate(&self) -> Result<(), LogError>`.
//! - `SegmentInfo { base_offset, next_offset, size: Position, max_timestamp: i64, created_ms: i64,
//!   offset_index, time_index }`, `SegmentInfo::empty(base, index_interval_bytes, created_ms)`,
//!   `is_empty`, `time_index_start(&self, ts) -> (Offset, Position)`.
//! - `PartitionLog::new_empty(config, now_ms)`,
//!   `check_segments(&[SegmentInfo]) -> Result<(), LogError>`,
//!   `from_recovered(config, segments: Vec<SegmentInfo>, log_start_offset: Offset, now_ms) -> PartitionLog`,
//!   `plan_append(&mut self, batch_len: usize, offset_count: i64, max_timestamp: i64, now_ms: i64) -> AppendPlan`,
//!   `roll_done(&mut self, new_base: Offset)`, `append_done(&mut self, &AppendPlan, batch_len: usize, max_timestamp: i64)`,
//!   `pending_append`, `set_durable(Offset)`, `durable_offset()`, `advance_high_watermark(Offset)`,
//!   `high_watermark()`, `log_start_offset()`, `log_end_offset()`, `locate(Offset) -> Locate`,
//!   `locate_time(i64) -> Option<(Offset, Position)>`, `segments()`, `segment(base)`,
//!   `segment_after(base)`, `active_segment()`, `segment_count()`, `size_bytes()`,
//!   `retention_plan(now_ms) -> Vec<Offset>`, `segments_deleted(&[Offset])`,
//!   `delete_records(Offset) -> Result<Offset, LogError>`, `segments_below_log_start() -> Vec<Offset>`,
//!   `truncate_to(Offset, TruncateCut) -> Result<Vec<Offset>, LogError>`,
//!   `reset_to(Offset, now_ms) -> Vec<Offset>`, `config()`, `set_config(LogConfig)`.
//! - `AppendPlan { base_offset, last_offset, roll: Option<Offset>, position: Position, batch_len }`,
//!   `Locate::{OutOfRange, AtEnd, Segment { base_offset, start_position, end_position }}`,
//!   `TruncateCut { position, max_timestamp }`, `LogError::{OffsetOutOfRange {..}, InvalidConfig(_), InvalidSegments(_)}`.
//!
//! [`producer_state`]:
//! - `ProducerStateTable::new(producers_max: usize)`,
//!   `check(&self, ProducerId, ProducerEpoch, base_seq: i32, last_seq: i32) -> Result<SeqCheck, ProducerStateError>`,
//!   `record(&mut self, ProducerBatch)`, `expire(now_ms, producer_id_expiration_ms) -> usize`,
//!   `truncate_head(log_start: Offset) -> usize`, `truncate_after(offset: Offset)`,
//!   `producer(ProducerId) -> Option<(ProducerEpoch, i32)>`, `len`,
//!   `encode_snapshot(&self, at_offset: Offset) -> Vec<u8>`,
//!   `decode_snapshot(&[u8], producers_max: usize) -> Result<(Offset, ProducerStateTable), SnapshotError>`.
//! - `SeqCheck::{Append, Duplicate { base_offset, last_offset }}`,
//!   `ProducerStateError::{InvalidProducerEpoch, OutOfOrderSequence}`,
//!   `ProducerBatch { producer_id, producer_epoch, base_sequence, last_sequence, base_offset,
//!   last_offset, max_timestamp }`.

pub mod index;
pub mod log;
pub mod producer_state;
pub mod recovery;
pub mod replica;

/// Kafka's "no timestamp" (`RecordBatch.NO_TIMESTAMP`).
pub const NO_TIMESTAMP: i64 = -1;
