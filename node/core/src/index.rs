//! Sparse offset index and time index of one segment, in Kafka's on-disk
//! layout.
//!
//! Both indexes are *rebuildable caches*: like Kafka they carry no checksum.
//! After a crash (no clean-shutdown marker) the shell rebuilds them by
//! scanning the segment ([`crate::recovery::SegmentScanner`]); after a clean
//! shutdown it decodes them, and `decode` rejects anything that is not a
//! well-formed index of that segment (wrong length, entries not increasing,
//! positions past the segment's end) so a torn or garbled file is rebuilt too.
//!
//! Offset index file (`<base>.index`), a sequence of 8-byte entries,
//! big-endian, sorted by offset:
//!
//! ```text
//!  0..4  relativeOffset u32  (batch base offset − segment base offset, ≤ i32::MAX)
//!  4..8  position u32        (byte position of that batch in the segment file)
//! ```
//!
//! Time index file (`<base>.timeindex`), 12-byte entries, big-endian:
//!
//! ```text
//!  0..8   timestamp i64      (largest batch maxTimestamp seen so far in the segment)
//!  8..12  relativeOffset u32 (base offset of the batch where that maximum was reached,
//!                             or of a later batch boundary; see `TimeIndex`)
//! ```
//!
//! Relative offsets are limited to `i32::MAX` (not `u32::MAX`) because Kafka
//! reads them as a signed int; the log rolls before a segment would exceed it.

use thiserror::Error;
use weir_proto::{Offset, Position};

use crate::NO_TIMESTAMP;

/// Bytes of one offset index entry.
pub const OFFSET_ENTRY_BYTES: usize = 8;
/// Bytes of one time index entry.
pub const TIME_ENTRY_BYTES: usize = 12;
/// Kafka's `index.interval.bytes` default.
pub const DEFAULT_INDEX_INTERVAL_BYTES: u32 = 4096;
/// Kafka's `segment.index.bytes` default (10 MiB) in offset index entries.
pub const DEFAULT_INDEX_MAX_ENTRIES: usize = (10 << 20) / OFFSET_ENTRY_BYTES;
/// Largest offset distance from a segment's base that an index can store.
pub const MAX_RELATIVE_OFFSET: i64 = i32::MAX as i64;

/// Why an index file was rejected; the shell then rebuilds it by scanning.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IndexError {
    #[error("index length {len} is not a multiple of the {entry_bytes}-byte entry")]
    BadLength { len: usize, entry_bytes: usize },
    #[error("index entry {slot} does not increase over the previous one")]
    NotIncreasing { slot: usize },
    #[error("index entry {slot} has relative offset {relative_offset} beyond i32::MAX")]
    RelativeOffsetTooLarge { slot: usize, relative_offset: u32 },
    #[error(
        "index entry {slot} points at position {position}, not below the segment size {segment_size}"
    )]
    PositionBeyondSegment { slot: usize, position: u32, segment_size: u64 },
}

/// `offset − base` as a stored relative offset. Callers (the log, the
/// scanner) check the range first, so a failure here is a bug.
fn relative(base: Offset, offset: Offset) -> u32 {
    let rel = offset.0.checked_sub(base.0).expect("relative offset overflows i64");
    assert!(
        (0..=MAX_RELATIVE_OFFSET).contains(&rel),
        "offset {offset:?} out of the index range of segment {base:?}"
    );
    rel as u32
}

fn absolute(base: Offset, relative_offset: u32) -> Offset {
    Offset(base.0 + relative_offset as i64)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OffsetEntry {
    relative_offset: u32,
    position: u32,
}

/// Sparse offset → file position index of one segment.
///
/// Owned by the shard that owns the partition, inside its
/// [`crate::log::SegmentInfo`]; not shared, no interior mutability. Lifecycle:
/// created empty at a roll (or decoded from `<base>.index`, or rebuilt by the
/// recovery scanner), grown by `on_append` while its segment is active,
/// trimmed by `truncate_to`, written with `encode` when the segment is sealed.
/// On-disk layout: see the module docs (8-byte big-endian entries).
///
/// An entry `(o, p)` means "the batch whose base offset is `o` starts at byte
/// `p`". Entries are added only every `interval_bytes`, so a lookup gives a
/// position at or before the wanted batch, from which the shell scans forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetIndex {
    base: Offset,
    interval_bytes: u32,
    max_entries: usize,
    entries: Vec<OffsetEntry>,
    /// Bytes appended since the last entry; decides when the next one is due.
    bytes_since_entry: u64,
}

impl OffsetIndex {
    pub fn new(base: Offset, interval_bytes: u32, max_entries: usize) -> OffsetIndex {
        OffsetIndex { base, interval_bytes, max_entries, entries: Vec::new(), bytes_since_entry: 0 }
    }

    pub fn base_offset(&self) -> Offset {
        self.base
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True when no further entry fits; the log rolls the segment then.
    pub fn is_full(&self) -> bool {
        self.entries.len() >= self.max_entries
    }

    /// Changes the interval and bound (topic config change, or an index
    /// decoded from disk, which does not record them).
    pub fn set_limits(&mut self, interval_bytes: u32, max_entries: usize) {
        self.interval_bytes = interval_bytes;
        self.max_entries = max_entries;
    }

    /// The entries as `(offset, position)`, in increasing order.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = (Offset, Position)> + '_ {
        self.entries
            .iter()
            .map(|e| (absolute(self.base, e.relative_offset), Position(e.position as u64)))
    }

    /// Called once per appended batch, in order. Adds an entry for this batch
    /// when at least `interval_bytes` were appended since the last entry.
    /// No entry is ever made for position 0: a lookup already defaults to it.
    pub fn on_append(
        &mut self,
        batch_base_offset: Offset,
        batch_position: Position,
        batch_len: u32,
    ) {
        if self.bytes_since_entry >= self.interval_bytes as u64
            && batch_position.0 > 0
            && !self.is_full()
        {
            let relative_offset = relative(self.base, batch_base_offset);
            let position = u32::try_from(batch_position.0).expect("segment position beyond u32");
            if let Some(last) = self.entries.last() {
                assert!(
                    relative_offset > last.relative_offset && position > last.position,
                    "offset index appends must increase"
                );
            }
            self.entries.push(OffsetEntry { relative_offset, position });
            self.bytes_since_entry = 0;
        }
        self.bytes_since_entry += batch_len as u64;
    }

    /// The greatest entry with offset ≤ `target`, else `(base, 0)`. The batch
    /// containing `target` starts at or after the returned position.
    pub fn lookup(&self, target: Offset) -> (Offset, Position) {
        let after =
            self.entries.partition_point(|e| absolute(self.base, e.relative_offset) <= target);
        match after.checked_sub(1) {
            Some(slot) => {
                let e = self.entries[slot];
                (absolute(self.base, e.relative_offset), Position(e.position as u64))
            }
            None => (self.base, Position(0)),
        }
    }

    /// Removes entries for offsets ≥ `offset` (log truncation).
    pub fn truncate_to(&mut self, offset: Offset) {
        let keep =
            self.entries.partition_point(|e| absolute(self.base, e.relative_offset) < offset);
        self.entries.truncate(keep);
        // The bytes since the last kept entry are unknown here; making the
        // next append index itself costs one entry and keeps lookups short.
        self.bytes_since_entry = self.interval_bytes as u64;
    }

    /// Removes entries at positions ≥ `position` (the segment was cut there).
    pub fn truncate_to_position(&mut self, position: Position) {
        let keep = self.entries.partition_point(|e| (e.position as u64) < position.0);
        self.entries.truncate(keep);
    }

    /// The file contents, `len() * 8` bytes (layout in the module docs).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * OFFSET_ENTRY_BYTES);
        for e in &self.entries {
            out.extend_from_slice(&e.relative_offset.to_be_bytes());
            out.extend_from_slice(&e.position.to_be_bytes());
        }
        out
    }

    /// Decodes and validates an index of the segment based at `base` whose
    /// file is `segment_size` bytes long. The result uses the default
    /// interval and bound until [`OffsetIndex::set_limits`] is called.
    pub fn decode(
        base: Offset,
        bytes: &[u8],
        segment_size: Position,
    ) -> Result<OffsetIndex, IndexError> {
        // chunks_exact leaves a remainder exactly when the length is not a multiple.
        if !bytes.chunks_exact(OFFSET_ENTRY_BYTES).remainder().is_empty() {
            return Err(IndexError::BadLength {
                len: bytes.len(),
                entry_bytes: OFFSET_ENTRY_BYTES,
            });
        }
        let mut entries: Vec<OffsetEntry> = Vec::with_capacity(bytes.len() / OFFSET_ENTRY_BYTES);
        for (slot, raw) in bytes.chunks_exact(OFFSET_ENTRY_BYTES).enumerate() {
            let relative_offset = u32::from_be_bytes(raw[0..4].try_into().expect("4 bytes"));
            let position = u32::from_be_bytes(raw[4..8].try_into().expect("4 bytes"));
            if relative_offset as i64 > MAX_RELATIVE_OFFSET {
                return Err(IndexError::RelativeOffsetTooLarge { slot, relative_offset });
            }
            if position as u64 >= segment_size.0 {
                return Err(IndexError::PositionBeyondSegment {
                    slot,
                    position,
                    segment_size: segment_size.0,
                });
            }
            if entries.last().is_some_and(|last| {
                relative_offset <= last.relative_offset || position <= last.position
            }) {
                return Err(IndexError::NotIncreasing { slot });
            }
            entries.push(OffsetEntry { relative_offset, position });
        }
        let last_position = entries.last().map_or(0, |e| e.position as u64);
        Ok(OffsetIndex {
            base,
            interval_bytes: DEFAULT_INDEX_INTERVAL_BYTES,
            max_entries: DEFAULT_INDEX_MAX_ENTRIES.max(entries.len()),
            entries,
            bytes_since_entry: segment_size.0 - last_position,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TimeEntry {
    timestamp: i64,
    relative_offset: u32,
}

/// Sparse timestamp → offset index of one segment.
///
/// Owned like [`OffsetIndex`] (one shard, inside its `SegmentInfo`). On-disk
/// layout: see the module docs (12-byte big-endian entries).
///
/// An entry `(t, o)` promises: every batch of the segment with base offset
/// below `o` has maxTimestamp ≤ `t`. Entries hold the running maximum, so
/// timestamps and offsets both strictly increase. [`TimeIndex::lookup`] uses
/// this to return an offset from which "the first batch whose maxTimestamp ≥
/// ts" is found by scanning forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeIndex {
    base: Offset,
    interval_bytes: u32,
    max_entries: usize,
    entries: Vec<TimeEntry>,
    bytes_since_entry: u64,
    /// Largest maxTimestamp seen so far in the segment (`NO_TIMESTAMP` if none).
    max_timestamp: i64,
    /// Offset at which `max_timestamp` was reached (or a later batch boundary
    /// when only the value is known, after a decode or truncation).
    offset_of_max: Offset,
}

impl TimeIndex {
    pub fn new(base: Offset, interval_bytes: u32, max_entries: usize) -> TimeIndex {
        TimeIndex {
            base,
            interval_bytes,
            max_entries,
            entries: Vec::new(),
            bytes_since_entry: 0,
            max_timestamp: NO_TIMESTAMP,
            offset_of_max: base,
        }
    }

    pub fn base_offset(&self) -> Offset {
        self.base
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.entries.len() >= self.max_entries
    }

    pub fn set_limits(&mut self, interval_bytes: u32, max_entries: usize) {
        self.interval_bytes = interval_bytes;
        self.max_entries = max_entries;
    }

    /// Timestamp of the last entry, if any. After [`TimeIndex::seal`] this is
    /// the segment's max timestamp.
    pub fn last_timestamp(&self) -> Option<i64> {
        self.entries.last().map(|e| e.timestamp)
    }

    /// The entries as `(timestamp, offset)`, in increasing order.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = (i64, Offset)> + '_ {
        self.entries.iter().map(|e| (e.timestamp, absolute(self.base, e.relative_offset)))
    }

    /// Called once per appended batch, in order, with its maxTimestamp.
    /// Adds an entry when `interval_bytes` passed since the last one and the
    /// running maximum grew past the last entry.
    pub fn on_append(
        &mut self,
        max_timestamp: i64,
        batch_base_offset: Offset,
        _batch_position: Position,
        batch_len: u32,
    ) {
        assert!(
            batch_base_offset >= self.offset_of_max,
            "time index appends must be in offset order"
        );
        if max_timestamp > self.max_timestamp {
            self.max_timestamp = max_timestamp;
            self.offset_of_max = batch_base_offset;
        }
        if self.bytes_since_entry >= self.interval_bytes as u64 && !self.is_full() {
            self.push_running_max();
        }
        self.bytes_since_entry += batch_len as u64;
    }

    fn push_running_max(&mut self) {
        if self.max_timestamp == NO_TIMESTAMP || self.last_timestamp() >= Some(self.max_timestamp) {
            return;
        }
        let relative_offset = relative(self.base, self.offset_of_max);
        if let Some(last) = self.entries.last() {
            assert!(relative_offset > last.relative_offset, "time index offsets must increase");
        }
        self.entries.push(TimeEntry { timestamp: self.max_timestamp, relative_offset });
        self.bytes_since_entry = 0;
    }

    /// Records the final running maximum as an entry, ignoring the bound, as
    /// Kafka does when a segment becomes inactive: afterwards the last entry
    /// holds the segment's max timestamp, which recovery reads back.
    pub fn seal(&mut self) {
        self.push_running_max();
    }

    /// Tells a decoded index the segment's true max timestamp and end, which
    /// it cannot know if the tail after its last entry was not indexed.
    pub fn resume(&mut self, segment_max_timestamp: i64, segment_next_offset: Offset) {
        if segment_max_timestamp > self.max_timestamp {
            self.max_timestamp = segment_max_timestamp;
            // Every batch below the segment end is ≤ that max, so the end is a
            // safe (if late) offset to attribute it to.
            self.offset_of_max = self.offset_of_max.max(segment_next_offset);
        }
    }

    /// An offset of this segment from which scanning forward finds the first
    /// batch whose maxTimestamp ≥ `ts`: the offset of the greatest entry with
    /// timestamp < `ts` (every batch before it is older than `ts`), else the
    /// segment base.
    pub fn lookup(&self, ts: i64) -> Offset {
        let after = self.entries.partition_point(|e| e.timestamp < ts);
        match after.checked_sub(1) {
            Some(slot) => absolute(self.base, self.entries[slot].relative_offset),
            None => self.base,
        }
    }

    /// Removes entries for offsets ≥ `offset`. `max_timestamp_kept` is the
    /// largest maxTimestamp of the batches that remain (`NO_TIMESTAMP` if
    /// none), which the index cannot derive from its sparse entries.
    pub fn truncate_to(&mut self, offset: Offset, max_timestamp_kept: i64) {
        let keep =
            self.entries.partition_point(|e| absolute(self.base, e.relative_offset) < offset);
        self.entries.truncate(keep);
        let last = self.entries.last().copied();
        match last {
            Some(e) => {
                self.max_timestamp = e.timestamp.max(max_timestamp_kept);
                self.offset_of_max = if max_timestamp_kept > e.timestamp {
                    offset
                } else {
                    absolute(self.base, e.relative_offset)
                };
            }
            None => {
                self.max_timestamp = max_timestamp_kept;
                self.offset_of_max =
                    if max_timestamp_kept == NO_TIMESTAMP { self.base } else { offset };
            }
        }
        self.bytes_since_entry = self.interval_bytes as u64;
    }

    /// The file contents, `len() * 12` bytes (layout in the module docs).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * TIME_ENTRY_BYTES);
        for e in &self.entries {
            out.extend_from_slice(&e.timestamp.to_be_bytes());
            out.extend_from_slice(&e.relative_offset.to_be_bytes());
        }
        out
    }

    /// Decodes and validates a time index of the segment based at `base`.
    /// Rejects a length that is not a multiple of 12 and entries whose
    /// timestamps or offsets do not strictly increase.
    pub fn decode(base: Offset, bytes: &[u8]) -> Result<TimeIndex, IndexError> {
        // chunks_exact leaves a remainder exactly when the length is not a multiple.
        if !bytes.chunks_exact(TIME_ENTRY_BYTES).remainder().is_empty() {
            return Err(IndexError::BadLength { len: bytes.len(), entry_bytes: TIME_ENTRY_BYTES });
        }
        let mut entries: Vec<TimeEntry> = Vec::with_capacity(bytes.len() / TIME_ENTRY_BYTES);
        for (slot, raw) in bytes.chunks_exact(TIME_ENTRY_BYTES).enumerate() {
            let timestamp = i64::from_be_bytes(raw[0..8].try_into().expect("8 bytes"));
            let relative_offset = u32::from_be_bytes(raw[8..12].try_into().expect("4 bytes"));
            if relative_offset as i64 > MAX_RELATIVE_OFFSET {
                return Err(IndexError::RelativeOffsetTooLarge { slot, relative_offset });
            }
            let increasing = match entries.last() {
                Some(last) => timestamp > last.timestamp && relative_offset > last.relative_offset,
                // A running maximum is never below "no timestamp".
                None => timestamp > NO_TIMESTAMP,
            };
            if !increasing {
                return Err(IndexError::NotIncreasing { slot });
            }
            entries.push(TimeEntry { timestamp, relative_offset });
        }
        let (max_timestamp, offset_of_max) = match entries.last() {
            Some(e) => (e.timestamp, absolute(base, e.relative_offset)),
            None => (NO_TIMESTAMP, base),
        };
        Ok(TimeIndex {
            base,
            interval_bytes: DEFAULT_INDEX_INTERVAL_BYTES,
            max_entries: DEFAULT_INDEX_MAX_ENTRIES.max(entries.len()),
            entries,
            bytes_since_entry: 0,
            max_timestamp,
            offset_of_max,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Appends batches of `len` bytes, each holding `count` offsets.
    fn fill(index: &mut OffsetIndex, batches: usize, count: i64, len: u32) {
        let mut offset = index.base_offset();
        let mut position = 0u64;
        for _ in 0..batches {
            index.on_append(offset, Position(position), len);
            offset = Offset(offset.0 + count);
            position += len as u64;
        }
    }

    #[test]
    fn offset_index_is_sparse_by_interval() {
        let mut index = OffsetIndex::new(Offset(100), 250, 1000);
        // 100-byte batches of 10 offsets: an entry every third batch.
        fill(&mut index, 10, 10, 100);
        let entries: Vec<_> = index.entries().collect();
        assert_eq!(
            entries,
            vec![
                (Offset(130), Position(300)),
                (Offset(160), Position(600)),
                (Offset(190), Position(900)),
            ]
        );
    }

    #[test]
    fn offset_lookup_arithmetic() {
        let mut index = OffsetIndex::new(Offset(100), 250, 1000);
        fill(&mut index, 10, 10, 100);
        assert_eq!(index.lookup(Offset(0)), (Offset(100), Position(0)));
        assert_eq!(index.lookup(Offset(100)), (Offset(100), Position(0)));
        assert_eq!(index.lookup(Offset(129)), (Offset(100), Position(0)));
        assert_eq!(index.lookup(Offset(130)), (Offset(130), Position(300)));
        assert_eq!(index.lookup(Offset(159)), (Offset(130), Position(300)));
        assert_eq!(index.lookup(Offset(175)), (Offset(160), Position(600)));
        assert_eq!(index.lookup(Offset(10_000)), (Offset(190), Position(900)));
    }

    #[test]
    fn offset_index_first_batch_and_zero_interval() {
        let mut index = OffsetIndex::new(Offset(0), 0, 1000);
        fill(&mut index, 3, 1, 10);
        // Every batch but the first (position 0) is indexed.
        let entries: Vec<_> = index.entries().collect();
        assert_eq!(entries, vec![(Offset(1), Position(10)), (Offset(2), Position(20))]);
    }

    #[test]
    fn offset_index_full_and_truncate() {
        let mut index = OffsetIndex::new(Offset(0), 0, 2);
        fill(&mut index, 5, 1, 10);
        assert_eq!(index.len(), 2);
        assert!(index.is_full());
        index.truncate_to(Offset(2));
        assert_eq!(index.entries().collect::<Vec<_>>(), vec![(Offset(1), Position(10))]);
        assert!(!index.is_full());
        assert_eq!(index.lookup(Offset(4)), (Offset(1), Position(10)));
        // The next append after a truncation gets an entry.
        index.on_append(Offset(2), Position(20), 10);
        assert_eq!(index.lookup(Offset(4)), (Offset(2), Position(20)));
        index.truncate_to_position(Position(20));
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn offset_index_round_trip() {
        let mut index = OffsetIndex::new(Offset(5_000), 100, 1000);
        fill(&mut index, 50, 3, 64);
        let bytes = index.encode();
        assert_eq!(bytes.len(), index.len() * 8);
        // Layout check of the first entry: relative offset then position.
        let (o, p) = index.entries().next().unwrap();
        assert_eq!(&bytes[0..4], &((o.0 - 5_000) as u32).to_be_bytes());
        assert_eq!(&bytes[4..8], &(p.0 as u32).to_be_bytes());
        let decoded = OffsetIndex::decode(Offset(5_000), &bytes, Position(50 * 64)).unwrap();
        assert_eq!(decoded.entries().collect::<Vec<_>>(), index.entries().collect::<Vec<_>>());
        for target in 5_000..5_200 {
            assert_eq!(decoded.lookup(Offset(target)), index.lookup(Offset(target)));
        }
    }

    #[test]
    fn offset_index_decode_rejects_damage() {
        let mut index = OffsetIndex::new(Offset(0), 100, 1000);
        fill(&mut index, 50, 3, 64);
        let bytes = index.encode();
        let size = Position(50 * 64);
        // Torn: not a whole number of entries.
        assert!(matches!(
            OffsetIndex::decode(Offset(0), &bytes[..bytes.len() - 3], size),
            Err(IndexError::BadLength { .. })
        ));
        // Preallocated zeros after the real entries.
        let mut padded = bytes.clone();
        padded.extend_from_slice(&[0; 16]);
        assert!(matches!(
            OffsetIndex::decode(Offset(0), &padded, size),
            Err(IndexError::NotIncreasing { .. })
        ));
        // A position past the segment (the segment was truncated).
        assert!(matches!(
            OffsetIndex::decode(Offset(0), &bytes, Position(1000)),
            Err(IndexError::PositionBeyondSegment { .. })
        ));
        // Swapped entries.
        let mut swapped = bytes.clone();
        swapped[0..8].copy_from_slice(&bytes[8..16]);
        swapped[8..16].copy_from_slice(&bytes[0..8]);
        assert!(matches!(
            OffsetIndex::decode(Offset(0), &swapped, size),
            Err(IndexError::NotIncreasing { slot: 1 })
        ));
        // A relative offset with the sign bit set.
        let mut big = bytes.clone();
        big[0] = 0x80;
        assert!(matches!(
            OffsetIndex::decode(Offset(0), &big, size),
            Err(IndexError::RelativeOffsetTooLarge { .. })
        ));
        assert!(OffsetIndex::decode(Offset(0), &[], Position(0)).unwrap().is_empty());
    }

    #[test]
    fn time_index_lookup_finds_scan_start() {
        let mut index = TimeIndex::new(Offset(0), 0, 100);
        // Batches of 10 offsets with these max timestamps (not monotonic).
        let ts = [100, 90, 200, 150, 300, 300, 400];
        for (i, t) in ts.iter().enumerate() {
            index.on_append(*t, Offset(i as i64 * 10), Position(i as u64 * 50), 50);
        }
        let entries: Vec<_> = index.entries().collect();
        assert_eq!(
            entries,
            vec![(100, Offset(0)), (200, Offset(20)), (300, Offset(40)), (400, Offset(60))]
        );
        // The first batch with max ≥ target, by brute force, must be at or
        // after the lookup result for every target.
        for target in 0..450 {
            let first = ts.iter().position(|t| *t >= target).map(|i| Offset(i as i64 * 10));
            let start = index.lookup(target);
            if let Some(first) = first {
                assert!(start <= first, "target {target}: start {start:?} > first {first:?}");
            }
        }
        assert_eq!(index.lookup(100), Offset(0));
        assert_eq!(index.lookup(101), Offset(0));
        assert_eq!(index.lookup(250), Offset(20));
        assert_eq!(index.lookup(1_000), Offset(60));
    }

    #[test]
    fn time_index_round_trip_and_damage() {
        let mut index = TimeIndex::new(Offset(7), 100, 100);
        for i in 0..40i64 {
            index.on_append(1_000 + i * 5, Offset(7 + i * 2), Position(i as u64 * 60), 60);
        }
        index.seal();
        assert_eq!(index.last_timestamp(), Some(1_000 + 39 * 5));
        let bytes = index.encode();
        assert_eq!(bytes.len(), index.len() * 12);
        let decoded = TimeIndex::decode(Offset(7), &bytes).unwrap();
        assert_eq!(decoded.entries().collect::<Vec<_>>(), index.entries().collect::<Vec<_>>());
        assert!(matches!(
            TimeIndex::decode(Offset(7), &bytes[..bytes.len() - 1]),
            Err(IndexError::BadLength { .. })
        ));
        let mut padded = bytes.clone();
        padded.extend_from_slice(&[0; 12]);
        assert!(matches!(
            TimeIndex::decode(Offset(7), &padded),
            Err(IndexError::NotIncreasing { .. })
        ));
        // A single entry at timestamp 0 is legal; one at "no timestamp" is not.
        assert_eq!(
            TimeIndex::decode(Offset(7), &[0; 12]).unwrap().entries().collect::<Vec<_>>(),
            vec![(0, Offset(7))]
        );
        let mut none = [0u8; 12];
        none[..8].copy_from_slice(&NO_TIMESTAMP.to_be_bytes());
        assert_eq!(TimeIndex::decode(Offset(7), &none), Err(IndexError::NotIncreasing { slot: 0 }));
    }

    #[test]
    fn time_index_truncate_with_unindexed_max() {
        // Sparse: no entry within the first 1000 bytes, so the max of the
        // kept batches (500, batch 2) is known only to the caller.
        let mut index = TimeIndex::new(Offset(0), 1000, 100);
        let ts = [10, 20, 500, 30, 40, 50, 60];
        for (i, t) in ts.iter().enumerate() {
            index.on_append(*t, Offset(i as i64), Position(i as u64 * 10), 10);
        }
        assert!(index.is_empty());
        index.truncate_to(Offset(3), 500);
        index.on_append(40, Offset(3), Position(30), 10);
        index.on_append(600, Offset(4), Position(40), 10);
        index.seal();
        // Whatever entries exist, scanning from lookup(ts) must not skip batch 2
        // for any ts in (20, 500].
        for target in 21..=500 {
            assert!(index.lookup(target) <= Offset(2), "target {target}");
        }
        assert_eq!(index.last_timestamp(), Some(600));
    }

    #[test]
    fn time_index_truncate_keeps_promise() {
        let mut index = TimeIndex::new(Offset(0), 0, 100);
        for i in 0..10i64 {
            index.on_append(i * 10, Offset(i), Position(i as u64 * 10), 10);
        }
        index.truncate_to(Offset(5), 40);
        assert_eq!(index.last_timestamp(), Some(40));
        // A later, smaller batch must not create an entry claiming a smaller max.
        index.on_append(20, Offset(5), Position(50), 10);
        index.on_append(45, Offset(6), Position(60), 10);
        assert_eq!(index.entries().last(), Some((45, Offset(6))));
    }

    proptest! {
        #[test]
        fn offset_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), size in 0u64..100_000) {
            if let Ok(index) = OffsetIndex::decode(Offset(3), &bytes, Position(size)) {
                prop_assert_eq!(index.encode(), bytes);
            }
        }

        #[test]
        fn time_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(index) = TimeIndex::decode(Offset(3), &bytes) {
                prop_assert_eq!(index.encode(), bytes);
                let _ = index.lookup(0);
            }
        }
    }
}
