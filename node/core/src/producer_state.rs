//! Idempotent producer deduplication for one partition (Kafka semantics).
//!
//! Per producer id the table keeps the current epoch and the metadata of the
//! last [`BATCHES_PER_PRODUCER`] batches appended by it. A Produce batch is
//! first [`ProducerStateTable::check`]ed, then appended to the log, then
//! [`ProducerStateTable::record`]ed. Rules, as in Kafka 3.x/4.x
//! (`ProducerStateManager` / `ProducerAppendInfo`):
//!
//! - epoch older than the known one → `InvalidProducerEpoch`;
//! - same epoch, same (first seq, last seq) as one of the cached batches →
//!   `Duplicate` with the offsets it was written at (a retry);
//! - same epoch, first seq = last seq + 1 (wrapping from `i32::MAX` to 0) →
//!   `Append`; anything else → `OutOfOrderSequence`;
//! - newer epoch → must start at sequence 0, else `OutOfOrderSequence`;
//! - **unknown producer id → `Append` at any sequence.** Since Kafka 2.5
//!   (KIP-360) the broker cannot tell a producer it never saw from one whose
//!   state expired or was removed with the log's head (retention,
//!   DeleteRecords), so it accepts the batch and starts tracking from it.
//!
//! The state survives restarts through a snapshot taken at a segment roll
//! plus replaying the idempotent batches of the log after it
//! ([`crate::recovery::ScanOutcome::producer_batches`]).

use std::collections::{BTreeMap, HashMap, VecDeque};

use thiserror::Error;
use weir_proto::{Offset, ProducerEpoch, ProducerId};

/// Batches remembered per producer (Kafka's `NUM_BATCHES_TO_RETAIN`; the Java
/// producer allows at most 5 in flight per connection, so a retry is always
/// of one of these).
pub const BATCHES_PER_PRODUCER: usize = 5;

/// Snapshot format version written by [`ProducerStateTable::encode_snapshot`].
pub const SNAPSHOT_VERSION: u8 = 1;
const SNAPSHOT_HEADER_BYTES: usize = 1 + 4 + 8 + 4;
const SNAPSHOT_ENTRY_HEADER_BYTES: usize = 8 + 2 + 8 + 1;
const SNAPSHOT_BATCH_BYTES: usize = 4 + 4 + 8 + 8 + 8;

/// The producer fields of one appended idempotent batch, with where it was
/// written. Produced by the append path and by the recovery scanner; a plain
/// value, owned by whoever holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBatch {
    pub producer_id: ProducerId,
    pub producer_epoch: ProducerEpoch,
    pub base_sequence: i32,
    pub last_sequence: i32,
    pub base_offset: Offset,
    pub last_offset: Offset,
    pub max_timestamp: i64,
}

/// Outcome of a successful [`ProducerStateTable::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqCheck {
    /// A new batch in sequence: append it.
    Append,
    /// A retry of a batch already in the log: answer success with these
    /// offsets and do not append again.
    Duplicate { base_offset: Offset, last_offset: Offset },
}

/// Why a batch is refused; each maps to the Kafka error code of its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ProducerStateError {
    /// `INVALID_PRODUCER_EPOCH`: an older incarnation of the producer.
    #[error("producer epoch is older than the current one")]
    InvalidProducerEpoch,
    /// `OUT_OF_ORDER_SEQUENCE_NUMBER`: a gap, an unexpected sequence, or a
    /// new epoch that does not start at 0.
    #[error("out of order sequence number")]
    OutOfOrderSequence,
}

/// Why a snapshot file was rejected; the shell then rebuilds the state by
/// replaying the log (or an older snapshot).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SnapshotError {
    #[error("producer snapshot too short ({0} bytes)")]
    TooShort(usize),
    #[error("unsupported producer snapshot version {0}")]
    BadVersion(u8),
    #[error("producer snapshot CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("malformed producer snapshot: {0}")]
    Malformed(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchMeta {
    base_sequence: i32,
    last_sequence: i32,
    base_offset: Offset,
    last_offset: Offset,
    max_timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ProducerEntry {
    epoch: ProducerEpoch,
    /// Oldest first; never empty, at most `BATCHES_PER_PRODUCER`.
    batches: VecDeque<BatchMeta>,
    /// maxTimestamp of the last batch: Kafka expires producers by it.
    last_timestamp: i64,
    /// Position in the recency order (key in `ProducerStateTable::lru`).
    tick: u64,
}

impl ProducerEntry {
    fn last(&self) -> &BatchMeta {
        self.batches.back().expect("a producer entry holds at least one batch")
    }
}

/// The sequence that must follow `last` (sequences wrap at `i32::MAX`).
fn next_sequence(last: i32) -> i32 {
    if last == i32::MAX { 0 } else { last + 1 }
}

/// Idempotent producer state of one partition.
///
/// Owned by the shard that owns the partition, next to its
/// [`crate::log::PartitionLog`]; not shared. Bounded: at `producers_max`
/// entries, recording a new producer evicts the least recently used one (as
/// if its state had expired; it is then accepted again at any sequence).
///
/// Snapshot layout (all big-endian), written by `encode_snapshot`:
///
/// ```text
///  0       version u8 = 1
///  1..5    crc u32 = CRC-32C of bytes 5..end
///  5..13   snapshot offset i64 (state of all batches with last offset < it)
/// 13..17   producer count u32
/// then per producer, least recently used first:
///          producerId i64, epoch i16, lastTimestamp i64, batch count u8 (1..=5),
///          then per batch, oldest first:
///          baseSequence i32, lastSequence i32, baseOffset i64, lastOffset i64,
///          maxTimestamp i64
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerStateTable {
    producers_max: usize,
    entries: HashMap<ProducerId, ProducerEntry>,
    /// Recency order: tick → producer. The first key is the least recent.
    lru: BTreeMap<u64, ProducerId>,
    next_tick: u64,
}

impl ProducerStateTable {
    /// An empty table remembering at most `producers_max` producers (from
    /// the node's limits; must be ≥ 1).
    pub fn new(producers_max: usize) -> ProducerStateTable {
        assert!(producers_max >= 1, "producer table bound must be at least 1");
        ProducerStateTable {
            producers_max,
            entries: HashMap::new(),
            lru: BTreeMap::new(),
            next_tick: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The known epoch and last sequence of a producer, if tracked.
    pub fn producer(&self, producer_id: ProducerId) -> Option<(ProducerEpoch, i32)> {
        self.entries.get(&producer_id).map(|e| (e.epoch, e.last().last_sequence))
    }

    /// Decides what to do with an idempotent batch (rules in the module
    /// docs). Batches without a producer id (`producer_id < 0`) are always
    /// `Append`.
    pub fn check(
        &self,
        producer_id: ProducerId,
        epoch: ProducerEpoch,
        base_sequence: i32,
        last_sequence: i32,
    ) -> Result<SeqCheck, ProducerStateError> {
        if producer_id.0 < 0 {
            return Ok(SeqCheck::Append);
        }
        if base_sequence < 0 || last_sequence < 0 {
            return Err(ProducerStateError::OutOfOrderSequence);
        }
        let Some(entry) = self.entries.get(&producer_id) else {
            return Ok(SeqCheck::Append);
        };
        if epoch < entry.epoch {
            return Err(ProducerStateError::InvalidProducerEpoch);
        }
        if epoch > entry.epoch {
            return if base_sequence == 0 {
                Ok(SeqCheck::Append)
            } else {
                Err(ProducerStateError::OutOfOrderSequence)
            };
        }
        if let Some(dup) = entry
            .batches
            .iter()
            .find(|b| b.base_sequence == base_sequence && b.last_sequence == last_sequence)
        {
            return Ok(SeqCheck::Duplicate {
                base_offset: dup.base_offset,
                last_offset: dup.last_offset,
            });
        }
        if base_sequence == next_sequence(entry.last().last_sequence) {
            Ok(SeqCheck::Append)
        } else {
            Err(ProducerStateError::OutOfOrderSequence)
        }
    }

    /// Records a batch appended to the log (after `check` said `Append`, or
    /// when replaying the log in recovery). Tolerant by design: a batch from
    /// the log is a fact, so a different epoch simply replaces the producer's
    /// state, as Kafka does for replicated batches.
    pub fn record(&mut self, batch: ProducerBatch) {
        if batch.producer_id.0 < 0 {
            return;
        }
        let tick = self.next_tick;
        self.next_tick += 1;
        let meta = BatchMeta {
            base_sequence: batch.base_sequence,
            last_sequence: batch.last_sequence,
            base_offset: batch.base_offset,
            last_offset: batch.last_offset,
            max_timestamp: batch.max_timestamp,
        };
        if let Some(entry) = self.entries.get_mut(&batch.producer_id) {
            self.lru.remove(&entry.tick);
            if entry.epoch != batch.producer_epoch {
                entry.epoch = batch.producer_epoch;
                entry.batches.clear();
            }
            if entry.batches.len() == BATCHES_PER_PRODUCER {
                entry.batches.pop_front();
            }
            entry.batches.push_back(meta);
            entry.last_timestamp = batch.max_timestamp;
            entry.tick = tick;
        } else {
            if self.entries.len() >= self.producers_max {
                self.evict_least_recent();
            }
            let mut batches = VecDeque::with_capacity(BATCHES_PER_PRODUCER);
            batches.push_back(meta);
            self.entries.insert(
                batch.producer_id,
                ProducerEntry {
                    epoch: batch.producer_epoch,
                    batches,
                    last_timestamp: batch.max_timestamp,
                    tick,
                },
            );
        }
        self.lru.insert(tick, batch.producer_id);
        assert_eq!(self.lru.len(), self.entries.len(), "producer recency order out of step");
    }

    fn evict_least_recent(&mut self) {
        let (_, producer_id) =
            self.lru.pop_first().expect("a full table has a least recent producer");
        self.entries.remove(&producer_id).expect("recency order names a tracked producer");
    }

    /// Forgets producers whose last batch is older than
    /// `producer_id_expiration_ms` (Kafka's `producer.id.expiration.ms`,
    /// measured against the batch maxTimestamp as Kafka does). Returns how
    /// many were removed.
    pub fn expire(&mut self, now_ms: i64, producer_id_expiration_ms: i64) -> usize {
        self.retain(|e| now_ms.saturating_sub(e.last_timestamp) < producer_id_expiration_ms)
    }

    /// Forgets producers whose every batch lies below the new log start
    /// offset (their data was deleted by retention or DeleteRecords).
    pub fn truncate_head(&mut self, log_start_offset: Offset) -> usize {
        self.retain(|e| e.last().last_offset >= log_start_offset)
    }

    /// The log was truncated to `offset` (new log end): forgets the batches
    /// at or after it. A producer left with no batch is forgotten (it will be
    /// accepted at any sequence); one left with older batches falls back to
    /// them (and their epoch), with a dedup window shorter than 5 batches.
    /// This is exact for sequence checks; to restore the full window the
    /// shell may instead rebuild from a snapshot below `offset` plus replay.
    pub fn truncate_after(&mut self, offset: Offset) {
        for entry in self.entries.values_mut() {
            while entry.batches.back().is_some_and(|b| b.last_offset >= offset) {
                entry.batches.pop_back();
            }
            if let Some(last) = entry.batches.back() {
                entry.last_timestamp = last.max_timestamp;
            }
        }
        self.retain(|e| !e.batches.is_empty());
    }

    fn retain(&mut self, mut keep: impl FnMut(&ProducerEntry) -> bool) -> usize {
        let before = self.entries.len();
        let lru = &mut self.lru;
        self.entries.retain(|_, e| {
            let kept = keep(e);
            if !kept {
                lru.remove(&e.tick);
            }
            kept
        });
        assert_eq!(self.lru.len(), self.entries.len(), "producer recency order out of step");
        before - self.entries.len()
    }

    /// The snapshot file contents for state covering all batches with last
    /// offset < `at_offset` (layout in the type docs).
    pub fn encode_snapshot(&self, at_offset: Offset) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            SNAPSHOT_HEADER_BYTES
                + self.entries.len()
                    * (SNAPSHOT_ENTRY_HEADER_BYTES + BATCHES_PER_PRODUCER * SNAPSHOT_BATCH_BYTES),
        );
        out.push(SNAPSHOT_VERSION);
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&at_offset.0.to_be_bytes());
        out.extend_from_slice(&(self.entries.len() as u32).to_be_bytes());
        for producer_id in self.lru.values() {
            let e = &self.entries[producer_id];
            out.extend_from_slice(&producer_id.0.to_be_bytes());
            out.extend_from_slice(&e.epoch.0.to_be_bytes());
            out.extend_from_slice(&e.last_timestamp.to_be_bytes());
            out.push(e.batches.len() as u8);
            for b in &e.batches {
                out.extend_from_slice(&b.base_sequence.to_be_bytes());
                out.extend_from_slice(&b.last_sequence.to_be_bytes());
                out.extend_from_slice(&b.base_offset.0.to_be_bytes());
                out.extend_from_slice(&b.last_offset.0.to_be_bytes());
                out.extend_from_slice(&b.max_timestamp.to_be_bytes());
            }
        }
        let crc = crc32c::crc32c(&out[5..]);
        out[1..5].copy_from_slice(&crc.to_be_bytes());
        out
    }

    /// Decodes a snapshot, checking version, CRC (a torn write fails it) and
    /// structure. If it names more than `producers_max` producers the most
    /// recently used ones are kept.
    pub fn decode_snapshot(
        bytes: &[u8],
        producers_max: usize,
    ) -> Result<(Offset, ProducerStateTable), SnapshotError> {
        if bytes.len() < SNAPSHOT_HEADER_BYTES {
            return Err(SnapshotError::TooShort(bytes.len()));
        }
        if bytes[0] != SNAPSHOT_VERSION {
            return Err(SnapshotError::BadVersion(bytes[0]));
        }
        let mut r = Reader { buf: bytes, at: 1 };
        let stored = r.u32()?;
        let computed = crc32c::crc32c(&bytes[5..]);
        if stored != computed {
            return Err(SnapshotError::CrcMismatch { stored, computed });
        }
        let at_offset = Offset(r.i64()?);
        let count = r.u32()? as usize;
        // Check the claimed count against the bytes present before trusting it.
        let min_entry = SNAPSHOT_ENTRY_HEADER_BYTES + SNAPSHOT_BATCH_BYTES;
        if count > (bytes.len() - SNAPSHOT_HEADER_BYTES) / min_entry {
            return Err(SnapshotError::Malformed("producer count exceeds the snapshot size"));
        }
        let mut table = ProducerStateTable::new(producers_max);
        let mut seen = std::collections::HashSet::with_capacity(count);
        for _ in 0..count {
            let producer_id = ProducerId(r.i64()?);
            let epoch = ProducerEpoch(r.i16()?);
            let last_timestamp = r.i64()?;
            let batch_count = r.u8()? as usize;
            if producer_id.0 < 0 {
                return Err(SnapshotError::Malformed("negative producer id"));
            }
            if !seen.insert(producer_id) {
                return Err(SnapshotError::Malformed("producer id listed twice"));
            }
            if !(1..=BATCHES_PER_PRODUCER).contains(&batch_count) {
                return Err(SnapshotError::Malformed("batch count out of range"));
            }
            let mut previous_last: Option<Offset> = None;
            for _ in 0..batch_count {
                let base_sequence = r.i32()?;
                let last_sequence = r.i32()?;
                let base_offset = Offset(r.i64()?);
                let last_offset = Offset(r.i64()?);
                let max_timestamp = r.i64()?;
                if base_offset > last_offset || previous_last.is_some_and(|p| base_offset <= p) {
                    return Err(SnapshotError::Malformed("batch offsets out of order"));
                }
                previous_last = Some(last_offset);
                table.record(ProducerBatch {
                    producer_id,
                    producer_epoch: epoch,
                    base_sequence,
                    last_sequence,
                    base_offset,
                    last_offset,
                    max_timestamp,
                });
            }
            if let Some(e) = table.entries.get_mut(&producer_id) {
                e.last_timestamp = last_timestamp;
            }
        }
        if r.at != bytes.len() {
            return Err(SnapshotError::Malformed("trailing bytes"));
        }
        Ok((at_offset, table))
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        let end = self.at.checked_add(N).filter(|e| *e <= self.buf.len());
        let end = end.ok_or(SnapshotError::Malformed("truncated entry"))?;
        let out = self.buf[self.at..end].try_into().expect("N bytes");
        self.at = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, SnapshotError> {
        Ok(self.take::<1>()?[0])
    }
    fn i16(&mut self) -> Result<i16, SnapshotError> {
        Ok(i16::from_be_bytes(self.take()?))
    }
    fn i32(&mut self) -> Result<i32, SnapshotError> {
        Ok(i32::from_be_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32, SnapshotError> {
        Ok(u32::from_be_bytes(self.take()?))
    }
    fn i64(&mut self) -> Result<i64, SnapshotError> {
        Ok(i64::from_be_bytes(self.take()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PID: ProducerId = ProducerId(42);

    fn batch(epoch: i16, base_sequence: i32, count: i32, base_offset: i64) -> ProducerBatch {
        let last = (base_sequence as i64 + count as i64 - 1) % (i32::MAX as i64 + 1);
        ProducerBatch {
            producer_id: PID,
            producer_epoch: ProducerEpoch(epoch),
            base_sequence,
            last_sequence: last as i32,
            base_offset: Offset(base_offset),
            last_offset: Offset(base_offset + count as i64 - 1),
            max_timestamp: 1_000 + base_offset,
        }
    }

    fn check(t: &ProducerStateTable, b: &ProducerBatch) -> Result<SeqCheck, ProducerStateError> {
        t.check(b.producer_id, b.producer_epoch, b.base_sequence, b.last_sequence)
    }

    /// Checks then records, as the append path does.
    fn append(t: &mut ProducerStateTable, b: ProducerBatch) {
        assert_eq!(check(t, &b), Ok(SeqCheck::Append), "{b:?}");
        t.record(b);
    }

    #[test]
    fn duplicates_of_last_five_return_original_offsets() {
        let mut t = ProducerStateTable::new(10);
        let batches: Vec<_> = (0..7).map(|i| batch(0, i * 3, 3, 100 + i as i64 * 10)).collect();
        for b in &batches {
            append(&mut t, *b);
        }
        for b in &batches[2..] {
            assert_eq!(
                check(&t, b),
                Ok(SeqCheck::Duplicate { base_offset: b.base_offset, last_offset: b.last_offset })
            );
        }
        // Older than the window: no longer recognisable, refused.
        assert_eq!(check(&t, &batches[1]), Err(ProducerStateError::OutOfOrderSequence));
        // A retry with the same first but another last sequence is not a duplicate.
        assert_eq!(
            t.check(PID, ProducerEpoch(0), 18, 19),
            Err(ProducerStateError::OutOfOrderSequence)
        );
    }

    #[test]
    fn gap_and_old_epoch_and_new_epoch() {
        let mut t = ProducerStateTable::new(10);
        append(&mut t, batch(3, 0, 5, 0));
        // Gap: expected 5.
        assert_eq!(
            t.check(PID, ProducerEpoch(3), 6, 6),
            Err(ProducerStateError::OutOfOrderSequence)
        );
        assert_eq!(t.check(PID, ProducerEpoch(3), 5, 9), Ok(SeqCheck::Append));
        // Older epoch.
        assert_eq!(
            t.check(PID, ProducerEpoch(2), 5, 9),
            Err(ProducerStateError::InvalidProducerEpoch)
        );
        // New epoch must start at 0.
        assert_eq!(
            t.check(PID, ProducerEpoch(4), 5, 9),
            Err(ProducerStateError::OutOfOrderSequence)
        );
        append(&mut t, batch(4, 0, 2, 5));
        assert_eq!(t.producer(PID), Some((ProducerEpoch(4), 1)));
        // The old epoch's batches are gone: its retry is now fenced.
        assert_eq!(
            t.check(PID, ProducerEpoch(3), 0, 4),
            Err(ProducerStateError::InvalidProducerEpoch)
        );
        assert_eq!(t.check(PID, ProducerEpoch(4), 2, 2), Ok(SeqCheck::Append));
        // Negative sequences from an idempotent producer are refused.
        assert_eq!(
            t.check(PID, ProducerEpoch(4), -1, -1),
            Err(ProducerStateError::OutOfOrderSequence)
        );
    }

    #[test]
    fn unknown_producer_is_accepted_at_any_sequence() {
        let t = ProducerStateTable::new(10);
        assert_eq!(t.check(ProducerId(9), ProducerEpoch(0), 0, 0), Ok(SeqCheck::Append));
        assert_eq!(t.check(ProducerId(9), ProducerEpoch(7), 1234, 1240), Ok(SeqCheck::Append));
        assert_eq!(t.check(ProducerId::NONE, ProducerEpoch(-1), -1, -1), Ok(SeqCheck::Append));
    }

    #[test]
    fn sequence_wraps_at_i32_max() {
        let mut t = ProducerStateTable::new(10);
        append(&mut t, batch(0, i32::MAX - 4, 5, 0));
        assert_eq!(t.producer(PID), Some((ProducerEpoch(0), i32::MAX)));
        assert_eq!(
            t.check(PID, ProducerEpoch(0), i32::MAX, i32::MAX),
            Err(ProducerStateError::OutOfOrderSequence)
        );
        // A batch straddling the wrap: 0 follows i32::MAX.
        append(&mut t, batch(0, 0, 3, 5));
        let straddle = batch(0, i32::MAX - 1, 4, 8);
        assert_eq!(straddle.last_sequence, 1);
        let mut t2 = ProducerStateTable::new(10);
        append(&mut t2, batch(0, i32::MAX - 10, 9, 0));
        append(&mut t2, straddle);
        assert_eq!(t2.check(PID, ProducerEpoch(0), 2, 2), Ok(SeqCheck::Append));
        assert_eq!(
            check(&t2, &straddle),
            Ok(SeqCheck::Duplicate { base_offset: Offset(8), last_offset: Offset(11) })
        );
    }

    #[test]
    fn bounded_table_evicts_least_recently_used() {
        let mut t = ProducerStateTable::new(3);
        for pid in 1..=3 {
            t.record(ProducerBatch { producer_id: ProducerId(pid), ..batch(0, 0, 1, pid) });
        }
        // Touch producer 1 so that 2 is the least recent.
        t.record(ProducerBatch { producer_id: ProducerId(1), ..batch(0, 1, 1, 10) });
        t.record(ProducerBatch { producer_id: ProducerId(4), ..batch(0, 0, 1, 11) });
        assert_eq!(t.len(), 3);
        assert!(t.producer(ProducerId(2)).is_none());
        assert!(t.producer(ProducerId(1)).is_some());
        assert!(t.producer(ProducerId(3)).is_some());
    }

    #[test]
    fn expire_and_truncate() {
        let mut t = ProducerStateTable::new(10);
        t.record(ProducerBatch {
            producer_id: ProducerId(1),
            max_timestamp: 1_000,
            ..batch(0, 0, 1, 0)
        });
        t.record(ProducerBatch {
            producer_id: ProducerId(2),
            max_timestamp: 5_000,
            ..batch(0, 0, 1, 1)
        });
        assert_eq!(t.expire(6_000, 5_000), 1);
        assert!(t.producer(ProducerId(1)).is_none());
        assert!(t.producer(ProducerId(2)).is_some());

        let mut t = ProducerStateTable::new(10);
        for i in 0..4 {
            append(&mut t, batch(0, i * 2, 2, i as i64 * 2));
        }
        t.record(ProducerBatch { producer_id: ProducerId(7), ..batch(0, 0, 1, 8) });
        t.truncate_after(Offset(4));
        // Offsets 4.. are gone: PID falls back to its first two batches, 7 is forgotten.
        assert_eq!(t.producer(PID), Some((ProducerEpoch(0), 3)));
        assert!(t.producer(ProducerId(7)).is_none());
        assert_eq!(t.check(PID, ProducerEpoch(0), 4, 5), Ok(SeqCheck::Append));
        assert_eq!(t.truncate_head(Offset(4)), 1);
        assert!(t.is_empty());
    }

    fn sample_table() -> ProducerStateTable {
        let mut t = ProducerStateTable::new(100);
        for pid in 0..20i64 {
            for i in 0..(pid % 7 + 1) as i32 {
                t.record(ProducerBatch {
                    producer_id: ProducerId(pid),
                    producer_epoch: ProducerEpoch((pid % 3) as i16),
                    base_sequence: i * 4,
                    last_sequence: i * 4 + 3,
                    base_offset: Offset(pid * 1000 + i as i64 * 4),
                    last_offset: Offset(pid * 1000 + i as i64 * 4 + 3),
                    max_timestamp: pid * 10 + i as i64,
                });
            }
        }
        t
    }

    #[test]
    fn snapshot_round_trip() {
        let t = sample_table();
        let bytes = t.encode_snapshot(Offset(12_345));
        assert_eq!(bytes[0], SNAPSHOT_VERSION);
        let (at, decoded) = ProducerStateTable::decode_snapshot(&bytes, 100).unwrap();
        assert_eq!(at, Offset(12_345));
        assert_eq!(decoded.len(), t.len());
        for pid in 0..20 {
            assert_eq!(decoded.producer(ProducerId(pid)), t.producer(ProducerId(pid)));
            let e = &t.entries[&ProducerId(pid)];
            let d = &decoded.entries[&ProducerId(pid)];
            assert_eq!(d.batches, e.batches);
            assert_eq!(d.last_timestamp, e.last_timestamp);
        }
        // Re-encoding gives the same bytes: recency order survives too.
        assert_eq!(decoded.encode_snapshot(Offset(12_345)), bytes);
        // A smaller bound keeps the most recently used producers.
        let (_, small) = ProducerStateTable::decode_snapshot(&bytes, 5).unwrap();
        assert_eq!(small.len(), 5);
        assert!(small.producer(ProducerId(19)).is_some());
        assert!(small.producer(ProducerId(0)).is_none());
        let empty = ProducerStateTable::new(1).encode_snapshot(Offset(0));
        assert!(ProducerStateTable::decode_snapshot(&empty, 1).unwrap().1.is_empty());
    }

    #[test]
    fn torn_or_damaged_snapshot_is_detected() {
        let bytes = sample_table().encode_snapshot(Offset(7));
        for cut in [0, 4, 16, 17, 100, bytes.len() - 1] {
            assert!(ProducerStateTable::decode_snapshot(&bytes[..cut], 100).is_err(), "cut {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[200] ^= 0x10;
        assert!(matches!(
            ProducerStateTable::decode_snapshot(&flipped, 100),
            Err(SnapshotError::CrcMismatch { .. })
        ));
        let mut version = bytes.clone();
        version[0] = 9;
        assert_eq!(
            ProducerStateTable::decode_snapshot(&version, 100),
            Err(SnapshotError::BadVersion(9))
        );
        // A torn write of a file preallocated with zeros.
        let mut zeroed = bytes.clone();
        zeroed[bytes.len() / 2..].fill(0);
        assert!(ProducerStateTable::decode_snapshot(&zeroed, 100).is_err());
    }

    proptest! {
        #[test]
        fn decode_snapshot_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..300), fix_crc: bool) {
            if fix_crc && bytes.len() >= 5 {
                bytes[0] = SNAPSHOT_VERSION;
                let crc = crc32c::crc32c(&bytes[5..]);
                bytes[1..5].copy_from_slice(&crc.to_be_bytes());
            }
            if let Ok((at, table)) = ProducerStateTable::decode_snapshot(&bytes, 50) {
                prop_assert!(table.len() <= 50);
                let _ = table.encode_snapshot(at);
            }
        }

        #[test]
        fn in_order_stream_is_always_accepted(counts in proptest::collection::vec(1i32..1000, 1..40), start in 0i32..i32::MAX) {
            let mut t = ProducerStateTable::new(4);
            let mut seq = start;
            let mut offset = 0i64;
            for c in counts {
                let b = batch(1, seq, c, offset);
                append(&mut t, b);
                prop_assert_eq!(check(&t, &b), Ok(SeqCheck::Duplicate { base_offset: b.base_offset, last_offset: b.last_offset }));
                seq = next_sequence(b.last_sequence);
                offset += c as i64;
            }
        }
    }
}
