//! Incremental segment scanner for recovery.
//!
//! At startup (for the segments not covered by a clean shutdown) and after a
//! crash, the shell reads a segment file front to back and feeds the bytes to
//! a [`SegmentScanner`] in chunks of any size. The scanner validates every
//! batch (header, CRC32C via `weir_proto::batch::validate_batch`, offset
//! order), rebuilds both indexes and collects the producer fields needed to
//! rebuild idempotence state. It stops at the first batch that is not valid;
//! the shell truncates the file to [`ScanOutcome::valid_len`].
//!
//! ```text
//!  file:  | batch | batch | batch | torn / zeros / garbage ...
//!         ^0                      ^valid_len
//! ```
//!
//! Memory is bounded: a batch split across chunks is carried over, and the
//! carry never exceeds `max_batch_bytes` (a longer length field stops the
//! scan as corrupt before anything is buffered).

use weir_proto::batch::{BATCH_HEADER_LEN, BatchError, BatchHeader, LOG_OVERHEAD, validate_batch};
use weir_proto::{Offset, Position};

use crate::NO_TIMESTAMP;
use crate::index::{DEFAULT_INDEX_MAX_ENTRIES, MAX_RELATIVE_OFFSET, OffsetIndex, TimeIndex};
use crate::producer_state::{BATCHES_PER_PRODUCER, ProducerBatch};

/// Why a scan stopped. Everything before [`ScanOutcome::valid_len`] is valid
/// in every case; only `CleanEnd` and `ZeroFill` are expected after a clean
/// shutdown or a crash between preallocation and use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanStop {
    /// The input ended exactly at a batch boundary.
    CleanEnd,
    /// A batch length of 0 (or a short all-zero tail): preallocated space or
    /// a never-written block after the end of the log.
    ZeroFill,
    /// The input ended inside a batch (a torn write).
    Truncated,
    /// A batch failed validation (bad length, magic, header or CRC).
    Corrupt(BatchError),
    /// A batch's offsets do not follow the previous batch (base offset not
    /// greater than the previous last offset, below the segment base or the
    /// expected next offset) or do not fit the segment's relative-offset range.
    OffsetOrder,
    /// A valid batch wholly below the segment's base offset: an earlier
    /// segment's data in a recycled segment file, after the end of the new
    /// data. Where a recycled file's log ends; not damage.
    EarlierSegment,
}

impl ScanStop {
    /// Whether the scan stopped where a log ends normally (no torn or
    /// damaged bytes were cut).
    pub fn is_clean(&self) -> bool {
        matches!(self, ScanStop::CleanEnd | ScanStop::ZeroFill | ScanStop::EarlierSegment)
    }
}

/// The result of scanning one segment. A plain value handed to the shell,
/// which turns it into a [`crate::log::SegmentInfo`]
/// ([`ScanOutcome::into_segment_info`]) and replays `producer_batches`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanOutcome {
    pub base_offset: Offset,
    /// Bytes of whole valid batches from the start of the segment.
    pub valid_len: Position,
    /// One past the last valid batch's last offset, or the base if none.
    pub next_offset: Offset,
    /// Largest maxTimestamp of the valid batches (`NO_TIMESTAMP` if none).
    pub max_timestamp: i64,
    pub batch_count: u64,
    pub stop: ScanStop,
    pub offset_index: OffsetIndex,
    pub time_index: TimeIndex,
    /// Producer fields of the valid idempotent (non-control) batches, in log
    /// order. To bound memory, only the last 5 batches of each producer are
    /// guaranteed to be kept (older ones are dropped once the list grows),
    /// which is all `ProducerStateTable::record` retains anyway.
    pub producer_batches: Vec<ProducerBatch>,
}

impl ScanOutcome {
    /// The segment bookkeeping for the log, with `created_ms` as its roll
    /// time (the shell uses the file's mtime or "now").
    pub fn into_segment_info(self, created_ms: i64) -> crate::log::SegmentInfo {
        crate::log::SegmentInfo {
            base_offset: self.base_offset,
            next_offset: self.next_offset,
            size: self.valid_len,
            max_timestamp: self.max_timestamp,
            created_ms,
            offset_index: self.offset_index,
            time_index: self.time_index,
        }
    }
}

/// What the bytes at the scan point hold.
enum Examined {
    /// Not enough bytes: the batch (or its length field) needs this many.
    NeedMore(usize),
    /// A valid batch of this many bytes, with its last offset.
    Batch(BatchHeader, usize, Offset),
    Stop(ScanStop),
}

/// Producer list length at which it is first compacted.
const PRODUCER_COMPACT_MIN: usize = 4096;

/// Chunk-fed scanner of one segment file.
///
/// Created by the shell on the shard that owns the partition, fed in file
/// order, then consumed by `finish`. Never panics on any input.
#[derive(Debug)]
pub struct SegmentScanner {
    base_offset: Offset,
    /// The smallest base offset the next batch may have.
    min_next: Offset,
    max_batch_bytes: usize,
    /// Bytes of a batch split across chunks (always < the batch's length).
    carry: Vec<u8>,
    valid_len: u64,
    next_offset: Offset,
    max_timestamp: i64,
    batch_count: u64,
    stop: Option<ScanStop>,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    producer_batches: Vec<ProducerBatch>,
    producer_compact_at: usize,
}

impl SegmentScanner {
    /// A scanner for the segment based at `base_offset`. `expected_next`,
    /// when known (the previous segment's next offset), is the smallest base
    /// offset the first batch may have; gaps above it are tolerated (as in a
    /// compacted Kafka log). `max_batch_bytes` bounds one batch (use the
    /// largest `max.message.bytes` the partition ever had, plus slack).
    pub fn new(
        base_offset: Offset,
        expected_next: Option<Offset>,
        index_interval_bytes: u32,
        max_batch_bytes: usize,
    ) -> SegmentScanner {
        let min_next = expected_next.map_or(base_offset, |e| e.max(base_offset));
        SegmentScanner {
            base_offset,
            min_next,
            max_batch_bytes: max_batch_bytes.max(BATCH_HEADER_LEN),
            carry: Vec::new(),
            valid_len: 0,
            next_offset: base_offset,
            max_timestamp: NO_TIMESTAMP,
            batch_count: 0,
            stop: None,
            offset_index: OffsetIndex::new(
                base_offset,
                index_interval_bytes,
                DEFAULT_INDEX_MAX_ENTRIES,
            ),
            time_index: TimeIndex::new(
                base_offset,
                index_interval_bytes,
                DEFAULT_INDEX_MAX_ENTRIES,
            ),
            producer_batches: Vec::new(),
            producer_compact_at: PRODUCER_COMPACT_MIN,
        }
    }

    /// True once the scan has stopped at an invalid batch: the shell may stop
    /// reading (further `feed` calls are ignored).
    pub fn is_stopped(&self) -> bool {
        self.stop.is_some()
    }

    /// True when a batch is partly buffered and more bytes are needed to
    /// decide it (if the file ends now, it is torn).
    pub fn needs_more(&self) -> bool {
        self.stop.is_none() && !self.carry.is_empty()
    }

    /// Bytes of valid batches so far.
    pub fn valid_len(&self) -> Position {
        Position(self.valid_len)
    }

    /// Feeds the next bytes of the segment, in file order.
    pub fn feed(&mut self, chunk: &[u8]) {
        let mut input = chunk;
        while self.stop.is_none() && !input.is_empty() {
            if self.carry.is_empty() {
                match self.examine(input) {
                    Examined::Batch(header, len, last) => {
                        self.accept(&header, len, last);
                        input = &input[len..];
                    }
                    Examined::NeedMore(_) => {
                        // Bounded: the length was checked against
                        // max_batch_bytes before NeedMore(total) is returned.
                        self.carry.extend_from_slice(input);
                        input = &[];
                    }
                    Examined::Stop(stop) => self.stop = Some(stop),
                }
                continue;
            }
            let carry = std::mem::take(&mut self.carry);
            let (carry, rest) = self.feed_carry(carry, input);
            self.carry = carry;
            input = rest;
        }
    }

    /// Completes the carried partial batch from `input` as far as possible.
    /// Returns the new carry (empty once the batch was handled) and the
    /// unused input.
    fn feed_carry<'a>(&mut self, mut carry: Vec<u8>, mut input: &'a [u8]) -> (Vec<u8>, &'a [u8]) {
        loop {
            match self.examine(&carry) {
                Examined::NeedMore(need) => {
                    if input.is_empty() {
                        return (carry, input);
                    }
                    let take = (need - carry.len()).min(input.len());
                    carry.extend_from_slice(&input[..take]);
                    input = &input[take..];
                }
                Examined::Batch(header, len, last) => {
                    debug_assert_eq!(len, carry.len());
                    self.accept(&header, len, last);
                    carry.clear();
                    return (carry, input);
                }
                Examined::Stop(stop) => {
                    self.stop = Some(stop);
                    carry.clear();
                    return (carry, input);
                }
            }
        }
    }

    fn examine(&self, buf: &[u8]) -> Examined {
        if buf.len() < LOG_OVERHEAD {
            return Examined::NeedMore(LOG_OVERHEAD);
        }
        let batch_length = i32::from_be_bytes(buf[8..12].try_into().expect("4 bytes"));
        if batch_length == 0 {
            return Examined::Stop(ScanStop::ZeroFill);
        }
        if batch_length < (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32 {
            return Examined::Stop(ScanStop::Corrupt(BatchError::BadLength(batch_length)));
        }
        let total = batch_length as usize + LOG_OVERHEAD;
        if total > self.max_batch_bytes {
            return Examined::Stop(ScanStop::Corrupt(BatchError::BadLength(batch_length)));
        }
        if self.valid_len + total as u64 > u32::MAX as u64 {
            // Index positions are u32; Kafka segments stay below 2 GiB.
            return Examined::Stop(ScanStop::Corrupt(BatchError::BadHeader(
                "segment larger than 4 GiB",
            )));
        }
        if buf.len() < total {
            return Examined::NeedMore(total);
        }
        let header = match validate_batch(&buf[..total]) {
            Ok(h) => h,
            Err(e) => return Examined::Stop(ScanStop::Corrupt(e)),
        };
        // baseOffset is not covered by the CRC: check it arithmetically safely.
        let base = header.base_offset;
        let Some(last) = base.0.checked_add(header.last_offset_delta as i64) else {
            return Examined::Stop(ScanStop::OffsetOrder);
        };
        let in_range = base >= self.min_next
            && last < i64::MAX
            && last.checked_sub(self.base_offset.0).is_some_and(|rel| rel <= MAX_RELATIVE_OFFSET);
        if !in_range {
            // Recycled files keep their old batches after the new ones
            // (segments are renamed, not zeroed).
            if last < self.base_offset.0 {
                return Examined::Stop(ScanStop::EarlierSegment);
            }
            return Examined::Stop(ScanStop::OffsetOrder);
        }
        Examined::Batch(header, total, Offset(last))
    }

    fn accept(&mut self, header: &BatchHeader, len: usize, last: Offset) {
        let position = Position(self.valid_len);
        let len32 = u32::try_from(len).expect("batch length checked against 4 GiB");
        self.offset_index.on_append(header.base_offset, position, len32);
        self.time_index.on_append(header.max_timestamp, header.base_offset, position, len32);
        self.valid_len += len as u64;
        self.next_offset = last.next();
        self.min_next = last.next();
        self.max_timestamp = self.max_timestamp.max(header.max_timestamp);
        self.batch_count += 1;
        if header.has_producer_id() && !header.is_control() {
            self.producer_batches.push(ProducerBatch {
                producer_id: header.producer_id,
                producer_epoch: header.producer_epoch,
                base_sequence: header.base_sequence,
                last_sequence: header.last_sequence(),
                base_offset: header.base_offset,
                last_offset: last,
                max_timestamp: header.max_timestamp,
            });
            if self.producer_batches.len() >= self.producer_compact_at {
                self.compact_producer_batches();
            }
        }
    }

    /// Keeps only the last `BATCHES_PER_PRODUCER` batches of each producer,
    /// in log order: replaying them gives the same producer table.
    fn compact_producer_batches(&mut self) {
        let mut seen: std::collections::HashMap<weir_proto::ProducerId, usize> =
            std::collections::HashMap::new();
        let mut kept: Vec<ProducerBatch> = Vec::with_capacity(self.producer_batches.len());
        for b in self.producer_batches.iter().rev() {
            let n = seen.entry(b.producer_id).or_default();
            if *n < BATCHES_PER_PRODUCER {
                *n += 1;
                kept.push(*b);
            }
        }
        kept.reverse();
        self.producer_batches = kept;
        self.producer_compact_at = (self.producer_batches.len() * 2).max(PRODUCER_COMPACT_MIN);
    }

    /// Ends the scan: the input is over.
    pub fn finish(mut self) -> ScanOutcome {
        let stop = match self.stop.take() {
            Some(stop) => stop,
            None if self.carry.is_empty() => ScanStop::CleanEnd,
            // Fewer bytes than a length field, all zero: the zero tail of a
            // preallocated or partially written last block.
            None if self.carry.len() < LOG_OVERHEAD && self.carry.iter().all(|b| *b == 0) => {
                ScanStop::ZeroFill
            }
            None => ScanStop::Truncated,
        };
        ScanOutcome {
            base_offset: self.base_offset,
            valid_len: Position(self.valid_len),
            next_offset: self.next_offset,
            max_timestamp: self.max_timestamp,
            batch_count: self.batch_count,
            stop,
            offset_index: self.offset_index,
            time_index: self.time_index,
            producer_batches: self.producer_batches,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use weir_proto::batch::build::{self, Producer, Record};
    use weir_proto::batch::set_base_offset;
    use weir_proto::{ProducerEpoch, ProducerId};

    /// Concatenated valid batches starting at `base`; returns the bytes and
    /// each batch's (start position, base offset, last offset).
    fn segment(base: i64, shapes: &[(usize, usize)]) -> (Vec<u8>, Vec<(usize, i64, i64)>) {
        let mut out = Vec::new();
        let mut layout = Vec::new();
        let mut offset = base;
        for (i, (count, value_len)) in shapes.iter().enumerate() {
            let mut b = build::simple(*count, *value_len, 1_000 + i as i64 * 7);
            set_base_offset(&mut b, Offset(offset));
            layout.push((out.len(), offset, offset + *count as i64 - 1));
            out.extend_from_slice(&b);
            offset += *count as i64;
        }
        (out, layout)
    }

    fn scan_chunked(base: i64, bytes: &[u8], cuts: &[usize]) -> ScanOutcome {
        let mut s = SegmentScanner::new(Offset(base), None, 100, 1 << 20);
        let mut at = 0;
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.sort_unstable();
        for c in cuts {
            s.feed(&bytes[at..c.max(at)]);
            at = c.max(at);
        }
        s.feed(&bytes[at..]);
        s.finish()
    }

    fn scan(base: i64, bytes: &[u8]) -> ScanOutcome {
        scan_chunked(base, bytes, &[])
    }

    #[test]
    fn clean_segment() {
        let (bytes, layout) = segment(10, &[(3, 10), (1, 500), (5, 40), (2, 1)]);
        let out = scan(10, &bytes);
        assert_eq!(out.stop, ScanStop::CleanEnd);
        assert_eq!(out.valid_len, Position(bytes.len() as u64));
        assert_eq!(out.next_offset, Offset(21));
        assert_eq!(out.batch_count, 4);
        assert_eq!(out.max_timestamp, 1_021);
        // Index entries point at real batch starts.
        assert!(!out.offset_index.is_empty());
        for (o, p) in out.offset_index.entries() {
            assert!(
                layout.iter().any(|l| l.0 == p.0 as usize && l.1 == o.0),
                "entry ({o:?}, {p:?})"
            );
        }
        assert!(out.producer_batches.is_empty());
    }

    #[test]
    fn empty_and_zero_filled() {
        let out = scan(5, &[]);
        assert_eq!(
            (out.stop, out.valid_len, out.next_offset),
            (ScanStop::CleanEnd, Position(0), Offset(5))
        );
        assert_eq!(out.max_timestamp, NO_TIMESTAMP);
        let out = scan(5, &[0; 4096]);
        assert_eq!((out.stop, out.valid_len), (ScanStop::ZeroFill, Position(0)));
        let (mut bytes, _) = segment(0, &[(2, 3)]);
        let good = bytes.len();
        bytes.extend_from_slice(&[0; 5]);
        let out = scan(0, &bytes);
        assert_eq!((out.stop, out.valid_len), (ScanStop::ZeroFill, Position(good as u64)));
    }

    #[test]
    fn a_recycled_file_ends_at_the_earlier_segments_data() {
        // New data at 100.., then what the file held before: batches at 10...
        let (mut bytes, _) = segment(100, &[(2, 3), (3, 40)]);
        let good = bytes.len();
        let (old, _) = segment(10, &[(4, 50), (4, 50)]);
        bytes.extend_from_slice(&old);
        let out = scan(100, &bytes);
        assert_eq!(
            (out.stop.clone(), out.valid_len, out.next_offset, out.batch_count),
            (ScanStop::EarlierSegment, Position(good as u64), Offset(105), 2)
        );
        assert!(out.stop.is_clean());
        // A batch reaching into the segment's range is damage, not old data.
        let (mut bytes, _) = segment(100, &[(2, 3)]);
        let (straddling, _) = segment(98, &[(4, 3)]);
        bytes.extend_from_slice(&straddling);
        let out = scan(100, &bytes);
        assert_eq!(out.stop, ScanStop::OffsetOrder);
        assert!(!out.stop.is_clean() && !ScanStop::Truncated.is_clean());
    }

    #[test]
    fn torn_tail() {
        let (mut bytes, _) = segment(0, &[(2, 3), (4, 30)]);
        let good = bytes.len();
        let (next, _) = segment(6, &[(1, 100)]);
        bytes.extend_from_slice(&next[..70]);
        let out = scan(0, &bytes);
        assert_eq!(
            (out.stop, out.valid_len, out.next_offset),
            (ScanStop::Truncated, Position(good as u64), Offset(6))
        );
    }

    #[test]
    fn offsets_must_increase() {
        let (mut bytes, layout) = segment(0, &[(2, 3), (2, 3), (2, 3)]);
        // Third batch claims offset 3, which overlaps the second (2..=3).
        set_base_offset(&mut bytes[layout[2].0..], Offset(3));
        let out = scan(0, &bytes);
        assert_eq!(
            (out.stop, out.valid_len, out.batch_count),
            (ScanStop::OffsetOrder, Position(layout[2].0 as u64), 2)
        );
        // Below the segment base or the expected next offset.
        let (bytes, _) = segment(0, &[(2, 3)]);
        assert_eq!(scan(1, &bytes).stop, ScanStop::OffsetOrder);
        let mut s = SegmentScanner::new(Offset(0), Some(Offset(1)), 100, 1 << 20);
        s.feed(&bytes);
        assert_eq!(s.finish().stop, ScanStop::OffsetOrder);
        // A gap is tolerated.
        let (mut bytes, layout) = segment(0, &[(2, 3), (2, 3)]);
        set_base_offset(&mut bytes[layout[1].0..], Offset(100));
        let out = scan(0, &bytes);
        assert_eq!((out.stop, out.next_offset), (ScanStop::CleanEnd, Offset(102)));
        // Beyond the relative offset range, or overflowing i64.
        let (mut bytes, _) = segment(0, &[(2, 3)]);
        set_base_offset(&mut bytes, Offset(MAX_RELATIVE_OFFSET));
        assert_eq!(scan(0, &bytes).stop, ScanStop::OffsetOrder);
        set_base_offset(&mut bytes, Offset(i64::MAX));
        assert_eq!(scan(i64::MAX - 1, &bytes).stop, ScanStop::OffsetOrder);
    }

    #[test]
    fn oversized_length_is_corrupt_without_buffering() {
        let mut bytes = vec![0u8; 12];
        bytes[8..12].copy_from_slice(&(10_000_000i32).to_be_bytes());
        let mut s = SegmentScanner::new(Offset(0), None, 100, 4096);
        s.feed(&bytes);
        assert!(s.is_stopped());
        assert_eq!(s.finish().stop, ScanStop::Corrupt(BatchError::BadLength(10_000_000)));
        bytes[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert_eq!(scan(0, &bytes).stop, ScanStop::Corrupt(BatchError::BadLength(-5)));
    }

    #[test]
    fn needs_more_reports_partial_batch() {
        let (bytes, _) = segment(0, &[(2, 50)]);
        let mut s = SegmentScanner::new(Offset(0), None, 100, 1 << 20);
        s.feed(&bytes[..5]);
        assert!(s.needs_more());
        s.feed(&bytes[5..40]);
        assert!(s.needs_more());
        s.feed(&bytes[40..]);
        assert!(!s.needs_more());
        assert_eq!(s.valid_len(), Position(bytes.len() as u64));
    }

    #[test]
    fn producer_batches_are_collected() {
        let mut bytes = Vec::new();
        let mut offset = 0;
        for i in 0..3 {
            let mut b = build::batch(
                &[
                    Record { value: Some(b"x"), ..Default::default() },
                    Record { value: Some(b"y"), ..Default::default() },
                ],
                500 + i,
                Producer {
                    id: ProducerId(9),
                    epoch: ProducerEpoch(2),
                    base_sequence: i as i32 * 2,
                },
            );
            set_base_offset(&mut b, Offset(offset));
            offset += 2;
            bytes.extend_from_slice(&b);
        }
        let (plain, _) = segment(6, &[(1, 1)]);
        bytes.extend_from_slice(&plain);
        let out = scan(0, &bytes);
        assert_eq!(out.stop, ScanStop::CleanEnd);
        assert_eq!(out.producer_batches.len(), 3);
        assert_eq!(
            out.producer_batches[2],
            ProducerBatch {
                producer_id: ProducerId(9),
                producer_epoch: ProducerEpoch(2),
                base_sequence: 4,
                last_sequence: 5,
                base_offset: Offset(4),
                last_offset: Offset(5),
                max_timestamp: 502,
            }
        );
    }

    #[test]
    fn producer_list_is_compacted_to_last_five_per_producer() {
        let mut s = SegmentScanner::new(Offset(0), None, 4096, 1 << 20);
        for i in 0..(PRODUCER_COMPACT_MIN as i32 + 10) {
            let mut b = build::batch(
                &[Record { value: Some(b"x"), ..Default::default() }],
                0,
                Producer {
                    id: ProducerId((i % 2) as i64),
                    epoch: ProducerEpoch(0),
                    base_sequence: i / 2,
                },
            );
            set_base_offset(&mut b, Offset(i as i64));
            s.feed(&b);
        }
        let out = s.finish();
        assert!(out.producer_batches.len() < 100);
        let mut table = crate::producer_state::ProducerStateTable::new(10);
        for b in &out.producer_batches {
            table.record(*b);
        }
        let last = PRODUCER_COMPACT_MIN as i32 + 9;
        assert_eq!(
            table.producer(ProducerId((last % 2) as i64)),
            Some((ProducerEpoch(0), last / 2))
        );
    }

    #[test]
    fn into_segment_info_carries_everything() {
        let (bytes, _) = segment(3, &[(2, 3), (2, 300)]);
        let info = scan(3, &bytes).into_segment_info(77);
        assert_eq!(info.base_offset, Offset(3));
        assert_eq!(info.next_offset, Offset(7));
        assert_eq!(info.size, Position(bytes.len() as u64));
        assert_eq!(info.created_ms, 77);
    }

    /// How the tail after the valid batches is damaged.
    #[derive(Debug, Clone)]
    enum Tail {
        None,
        Zeros(usize),
        Torn(usize),
        /// Flip a bit in batch `n % count` at a CRC-covered or length byte.
        Flip(usize, usize, u8),
    }

    fn tail() -> impl Strategy<Value = Tail> {
        prop_oneof![
            Just(Tail::None),
            (1usize..5000).prop_map(Tail::Zeros),
            (1usize..10_000).prop_map(Tail::Torn),
            (0usize..100, 0usize..10_000, 0u8..8).prop_map(|(n, at, bit)| Tail::Flip(n, at, bit)),
        ]
    }

    proptest! {
        #[test]
        fn scan_reports_exact_valid_prefix(
            shapes in proptest::collection::vec((1usize..6, 0usize..400), 1..12),
            tail in tail(),
            cuts in proptest::collection::vec(0usize..100_000, 0..12),
        ) {
            let (mut bytes, layout) = segment(50, &shapes);
            let full = bytes.len();
            let (expect_len, expect_count, expect_stop) = match tail {
                Tail::None => (full, layout.len(), Some(ScanStop::CleanEnd)),
                Tail::Zeros(n) => {
                    bytes.extend(std::iter::repeat_n(0u8, n));
                    (full, layout.len(), Some(ScanStop::ZeroFill))
                }
                Tail::Torn(n) => {
                    let next_base = layout.last().unwrap().2 + 1;
                    let (next, _) = segment(next_base, &[(3, 200)]);
                    let n = 1 + n % (next.len() - 1);
                    bytes.extend_from_slice(&next[..n]);
                    // A tear inside the next batch's leading zero bytes (its
                    // baseOffset) cannot be told from zero fill.
                    let torn = &next[..n];
                    let stop = if torn.len() < LOG_OVERHEAD && torn.iter().all(|b| *b == 0) {
                        ScanStop::ZeroFill
                    } else {
                        ScanStop::Truncated
                    };
                    (full, layout.len(), Some(stop))
                }
                Tail::Flip(n, at, bit) => {
                    let victim = n % layout.len();
                    let start = layout[victim].0;
                    let end = layout.get(victim + 1).map_or(full, |l| l.0);
                    // The length field (8..12) or the magic/CRC-covered part (16..).
                    let covered: Vec<usize> = (8..12).chain(16..end - start).collect();
                    let pos = start + covered[at % covered.len()];
                    bytes[pos] ^= 1 << bit;
                    (start, victim, None)
                }
            };
            let out = scan_chunked(50, &bytes, &cuts);
            prop_assert_eq!(out.valid_len, Position(expect_len as u64));
            prop_assert_eq!(out.batch_count, expect_count as u64);
            let expect_next = if expect_count == 0 { 50 } else { layout[expect_count - 1].2 + 1 };
            prop_assert_eq!(out.next_offset, Offset(expect_next));
            match expect_stop {
                Some(stop) => prop_assert_eq!(&out.stop, &stop),
                None => prop_assert!(!matches!(out.stop, ScanStop::CleanEnd)),
            }
            // Chunking never changes the outcome.
            prop_assert_eq!(&out, &scan(50, &bytes));
        }

        #[test]
        fn random_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
            cuts in proptest::collection::vec(0usize..600, 0..8),
            base in any::<i64>(),
            max in 0usize..1000,
        ) {
            let mut s = SegmentScanner::new(Offset(base), Some(Offset(base.wrapping_add(3))), 16, max);
            let mut at = 0;
            let mut cuts = cuts;
            cuts.sort_unstable();
            for c in cuts {
                let c = c.min(bytes.len()).max(at);
                s.feed(&bytes[at..c]);
                at = c;
            }
            s.feed(&bytes[at..]);
            let out = s.finish();
            prop_assert!(out.valid_len.0 as usize <= bytes.len());
        }

        #[test]
        fn random_bytes_after_valid_batches_keep_the_prefix(
            shapes in proptest::collection::vec((1usize..4, 0usize..100), 1..5),
            junk in proptest::collection::vec(any::<u8>(), 1..300),
            cuts in proptest::collection::vec(0usize..5000, 0..8),
        ) {
            let (mut bytes, layout) = segment(0, &shapes);
            let full = bytes.len();
            bytes.extend_from_slice(&junk);
            let out = scan_chunked(0, &bytes, &cuts);
            // Random junk is (almost surely) not a valid batch: the prefix is kept exactly.
            prop_assert_eq!(out.valid_len, Position(full as u64));
            prop_assert_eq!(out.batch_count, layout.len() as u64);
            prop_assert!(!matches!(out.stop, ScanStop::CleanEnd));
        }
    }
}
