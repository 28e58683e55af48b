//! Bookkeeping for one partition replica's log: segments, offsets, high
//! watermark, rolling, retention, DeleteRecords, truncation.
//!
//! Sans-IO: the shell owns the files. It asks the log *where* a batch goes
//! ([`PartitionLog::plan_append`]), writes the bytes, and reports back
//! ([`PartitionLog::append_done`]); likewise for retention and truncation it
//! asks for a plan, acts on the files, and reports what it did.
//!
//! ```text
//!  segments:  [base 0 .. next 100) [base 100 .. next 180) [base 180 .. active)
//!  offsets:   log_start ≤ high_watermark ≤ log_end
//!             log_start ≤ durable ≤ log_end   (durable: flushed per policy)
//! ```
//!
//! Invariants of this state are `assert!`ed (kept in release): a violation
//! is a bug in the core or the shell, and continuing could corrupt the log.
//! Inputs from clients or from disk are checked and answered with `Result`.

use thiserror::Error;
use weir_proto::{Offset, Position};

use crate::NO_TIMESTAMP;
use crate::index::{
    DEFAULT_INDEX_INTERVAL_BYTES, DEFAULT_INDEX_MAX_ENTRIES, MAX_RELATIVE_OFFSET, OffsetIndex,
    TimeIndex,
};

/// Per-partition log settings (Kafka topic configs of the same names).
/// A plain value; the shell validates topic configs with [`LogConfig::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll when the active segment would exceed this.
    pub segment_bytes: u64,
    /// `segment.ms`: roll a non-empty segment this long after its creation.
    pub segment_ms: i64,
    /// `retention.ms`; `None` keeps data forever (Kafka's −1).
    pub retention_ms: Option<i64>,
    /// `retention.bytes` for the whole partition; `None` = unlimited.
    pub retention_bytes: Option<u64>,
    /// `index.interval.bytes`: bytes between sparse index entries.
    pub index_interval_bytes: u32,
    /// `segment.index.bytes` / 8: entries an offset index may hold.
    pub index_max_entries: usize,
}

impl Default for LogConfig {
    /// Kafka's defaults: 1 GiB segments, 7 days, 4 KiB index interval.
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
            index_interval_bytes: DEFAULT_INDEX_INTERVAL_BYTES,
            index_max_entries: DEFAULT_INDEX_MAX_ENTRIES,
        }
    }
}

impl LogConfig {
    /// Checks a configuration from user input before it reaches a log (the
    /// constructors assert it).
    pub fn validate(&self) -> Result<(), LogError> {
        // Positions are stored as u32 and read by Kafka tools as i32.
        if self.segment_bytes == 0 || self.segment_bytes > i32::MAX as u64 {
            return Err(LogError::InvalidConfig("segment.bytes must be in 1..=2147483647"));
        }
        if self.segment_ms <= 0 {
            return Err(LogError::InvalidConfig("segment.ms must be positive"));
        }
        if self.retention_ms.is_some_and(|ms| ms < 0) {
            return Err(LogError::InvalidConfig("retention.ms must be ≥ 0 (or unlimited)"));
        }
        if self.index_max_entries == 0 {
            return Err(LogError::InvalidConfig("the index must hold at least one entry"));
        }
        Ok(())
    }
}

/// Errors caused by requests (client or replication input).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LogError {
    /// Kafka `OFFSET_OUT_OF_RANGE`.
    #[error(
        "offset {offset} out of range (log start {log_start}, high watermark {high_watermark})"
    )]
    OffsetOutOfRange { offset: Offset, log_start: Offset, high_watermark: Offset },
    /// Kafka `INVALID_CONFIG`.
    #[error("invalid log config: {0}")]
    InvalidConfig(&'static str),
    /// Segments found on disk do not form a log (overlap, wrong index base).
    #[error("inconsistent segments: {0}")]
    InvalidSegments(&'static str),
}

/// Bookkeeping of one segment file `<base>.log` and its indexes.
///
/// Owned by the [`PartitionLog`] of one shard. `size` counts only whole valid
/// batches; the file may be longer (preallocated zeros), which readers never
/// look at. Built by the log at a roll, or by the shell at startup (from a
/// [`crate::recovery::ScanOutcome`], or from decoded index files of a sealed
/// segment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    pub base_offset: Offset,
    /// One past the last offset in the segment (= base when empty).
    pub next_offset: Offset,
    pub size: Position,
    /// Largest batch maxTimestamp (`NO_TIMESTAMP` when unknown/empty).
    pub max_timestamp: i64,
    /// When the segment was rolled in (for `segment.ms`, and for time
    /// retention of a segment without timestamps).
    pub created_ms: i64,
    pub offset_index: OffsetIndex,
    pub time_index: TimeIndex,
}

impl SegmentInfo {
    /// A new empty segment at `base` (index bound: the default, until the
    /// log applies its config).
    pub fn empty(base: Offset, index_interval_bytes: u32, created_ms: i64) -> SegmentInfo {
        SegmentInfo {
            base_offset: base,
            next_offset: base,
            size: Position(0),
            max_timestamp: NO_TIMESTAMP,
            created_ms,
            offset_index: OffsetIndex::new(base, index_interval_bytes, DEFAULT_INDEX_MAX_ENTRIES),
            time_index: TimeIndex::new(base, index_interval_bytes, DEFAULT_INDEX_MAX_ENTRIES),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.size.0 == 0
    }

    /// Where to start scanning this segment for the first batch whose
    /// maxTimestamp ≥ `ts`: an offset and a byte position at or before it.
    pub fn time_index_start(&self, ts: i64) -> (Offset, Position) {
        let offset = self.time_index.lookup(ts);
        (offset, self.offset_index.lookup(offset).1)
    }

    /// The time retention measures from: the newest record timestamp, or the
    /// roll time when the segment has none (Kafka uses the file's mtime).
    fn retention_timestamp(&self) -> i64 {
        if self.max_timestamp >= 0 { self.max_timestamp } else { self.created_ms }
    }

    fn apply_limits(&mut self, config: &LogConfig) {
        self.offset_index.set_limits(config.index_interval_bytes, config.index_max_entries);
        self.time_index.set_limits(config.index_interval_bytes, config.index_max_entries);
    }
}

/// Where one batch goes, from [`PartitionLog::plan_append`]. Plain value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendPlan {
    /// Offsets assigned to the batch (rewrite its baseOffset to this).
    pub base_offset: Offset,
    pub last_offset: Offset,
    /// `Some(base)`: first seal the active segment and create the segment
    /// file `<base>.log`; the batch goes at its start.
    pub roll: Option<Offset>,
    /// Where the batch starts in the (possibly new) active segment.
    pub position: Position,
    /// The batch size the plan was made for.
    pub batch_len: usize,
}

/// Answer of [`PartitionLog::locate`] for Fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locate {
    /// Below the log start or above the log end: `OFFSET_OUT_OF_RANGE`.
    OutOfRange,
    /// At the log end: nothing to read yet (long poll).
    AtEnd,
    /// Read segment `base_offset` from `start_position` (at or before the
    /// batch containing the offset) up to `end_position` (its valid size).
    Segment { base_offset: Offset, start_position: Position, end_position: Position },
}

/// Where the shell found the cut for [`PartitionLog::truncate_to`] in the
/// segment containing the truncation offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TruncateCut {
    /// Byte position of the first batch whose last offset ≥ the truncation
    /// offset (the new segment size).
    pub position: Position,
    /// Largest maxTimestamp of the batches before it (`NO_TIMESTAMP` if none).
    pub max_timestamp: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PendingAppend {
    plan: AppendPlan,
    now_ms: i64,
    rolled: bool,
}

/// The log of one partition replica.
///
/// Owned by the shard that owns the partition; all calls come from that
/// shard's executor, one at a time (no interior mutability, not `Sync` by
/// intent). Lifecycle: `new_empty` or `from_recovered` at startup; then
/// appends, durability and high-watermark updates, fetch lookups, retention;
/// dropped when the partition is closed or stopped.
///
/// Appends are two-phase. `plan_append` reserves offsets and a byte range
/// (and decides a roll); the shell writes the bytes (creating the new segment
/// first when rolling, then optionally calling `roll_done`) and calls
/// `append_done`, which makes the batch part of the log. Only one plan may be
/// outstanding. If the shell cannot complete a plan (the write or the segment
/// creation failed), it must stop the partition (fail-stop) and drop this
/// value; the log's state is then still that before the plan, and the
/// partition is reopened through recovery, which trusts only what the files
/// hold. Any further call on a log with an abandoned plan panics.
#[derive(Debug, Clone)]
pub struct PartitionLog {
    config: LogConfig,
    /// Never empty; the last one is the active segment. Bases increase and
    /// each segment's next offset ≤ the following segment's base.
    segments: Vec<SegmentInfo>,
    log_start_offset: Offset,
    log_end_offset: Offset,
    high_watermark: Offset,
    durable_offset: Offset,
    pending: Option<PendingAppend>,
}

impl PartitionLog {
    /// A brand-new partition: one empty segment at offset 0.
    pub fn new_empty(config: LogConfig, now_ms: i64) -> PartitionLog {
        let segment = SegmentInfo::empty(Offset(0), config.index_interval_bytes, now_ms);
        PartitionLog::from_recovered(config, vec![segment], Offset(0), now_ms)
    }

    /// A partition reopened from disk. `segments` are in base order as found
    /// (the last one becomes active); an empty list starts a fresh empty
    /// segment at `log_start_offset`. The log start is raised to the first
    /// segment's base if below it; a checkpointed log start beyond the log
    /// end (its data was lost) is lowered to the log end. The high watermark
    /// starts at the log start (the shell then advances it from its
    /// checkpoint, clamped to the log end) and everything is durable.
    pub fn from_recovered(
        config: LogConfig,
        mut segments: Vec<SegmentInfo>,
        log_start_offset: Offset,
        now_ms: i64,
    ) -> PartitionLog {
        config.validate().expect("log config validated by the shell");
        if segments.is_empty() {
            segments.push(SegmentInfo::empty(
                log_start_offset,
                config.index_interval_bytes,
                now_ms,
            ));
        }
        if let Err(e) = PartitionLog::check_segments(&segments) {
            panic!("recovered segments not checked by the shell: {e}");
        }
        for s in &mut segments {
            s.apply_limits(&config);
            s.time_index.resume(s.max_timestamp, s.next_offset);
        }
        let log_end_offset = segments.last().expect("at least one segment").next_offset;
        let log_start_offset = log_start_offset.max(segments[0].base_offset).min(log_end_offset);
        PartitionLog {
            config,
            segments,
            log_start_offset,
            log_end_offset,
            high_watermark: log_start_offset,
            durable_offset: log_end_offset,
            pending: None,
        }
    }

    /// Checks that segments built from disk form a log: bases strictly
    /// increase, no segment ends before it starts or overlaps the next, and
    /// the indexes belong to their segment. The shell calls it before
    /// `from_recovered` (which asserts it) and, on error, drops the segments
    /// from the first bad one on, as Kafka does after a corrupt segment.
    pub fn check_segments(segments: &[SegmentInfo]) -> Result<(), LogError> {
        for s in segments {
            if s.next_offset < s.base_offset {
                return Err(LogError::InvalidSegments("a segment ends before it starts"));
            }
            if s.offset_index.base_offset() != s.base_offset
                || s.time_index.base_offset() != s.base_offset
            {
                return Err(LogError::InvalidSegments("an index belongs to another segment"));
            }
        }
        for pair in segments.windows(2) {
            if pair[0].base_offset >= pair[1].base_offset
                || pair[0].next_offset > pair[1].base_offset
            {
                return Err(LogError::InvalidSegments("segments overlap or are out of order"));
            }
        }
        Ok(())
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Applies changed topic configs; they take effect from the next append
    /// or retention pass (index limits on the active segment at once).
    pub fn set_config(&mut self, config: LogConfig) {
        config.validate().expect("log config validated by the shell");
        self.config = config;
        let config = self.config.clone();
        self.active_mut().apply_limits(&config);
    }

    pub fn log_start_offset(&self) -> Offset {
        self.log_start_offset
    }

    /// The next offset to assign.
    pub fn log_end_offset(&self) -> Offset {
        self.log_end_offset
    }

    pub fn high_watermark(&self) -> Offset {
        self.high_watermark
    }

    /// All offsets below this are on the device per the flush policy.
    pub fn durable_offset(&self) -> Offset {
        self.durable_offset
    }

    /// Segments in base order; the last is the active one.
    pub fn segments(&self) -> impl DoubleEndedIterator<Item = &SegmentInfo> + ExactSizeIterator {
        self.segments.iter()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    pub fn segment(&self, base: Offset) -> Option<&SegmentInfo> {
        self.segments.binary_search_by_key(&base, |s| s.base_offset).ok().map(|i| &self.segments[i])
    }

    /// The segment following the one based at `base`.
    pub fn segment_after(&self, base: Offset) -> Option<&SegmentInfo> {
        let after = self.segments.partition_point(|s| s.base_offset <= base);
        self.segments.get(after)
    }

    pub fn active_segment(&self) -> &SegmentInfo {
        self.segments.last().expect("a log has at least one segment")
    }

    fn active_mut(&mut self) -> &mut SegmentInfo {
        self.segments.last_mut().expect("a log has at least one segment")
    }

    /// Total valid bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size.0).sum()
    }

    /// The outstanding plan, if any (between `plan_append` and `append_done`).
    pub fn pending_append(&self) -> Option<&AppendPlan> {
        self.pending.as_ref().map(|p| &p.plan)
    }

    fn assert_no_pending(&self) {
        assert!(self.pending.is_none(), "partition log used with an outstanding append plan");
    }

    /// Phase one of an append: reserves offsets `[log_end, log_end +
    /// offset_count)` for a validated batch of `batch_len` bytes and decides
    /// where it goes. Rolls first when the active segment is non-empty and
    /// the batch would take it past `segment_bytes`, or `segment_ms` passed
    /// since it was created, or either index is full, or its last offset
    /// would not fit the segment's relative-offset range. An over-size batch
    /// still goes into an empty segment. `_max_timestamp` is accepted for
    /// Kafka's timestamp-based rolling, which this log does not use: rolls
    /// follow the segment's creation time as configured.
    pub fn plan_append(
        &mut self,
        batch_len: usize,
        offset_count: i64,
        _max_timestamp: i64,
        now_ms: i64,
    ) -> AppendPlan {
        self.assert_no_pending();
        assert!(batch_len > 0, "empty batch");
        assert!(
            (1..=MAX_RELATIVE_OFFSET + 1).contains(&offset_count),
            "batch offset count {offset_count} out of range"
        );
        let base_offset = self.log_end_offset;
        let last_offset =
            Offset(base_offset.0.checked_add(offset_count - 1).expect("offsets exhausted"));
        let active = self.active_segment();
        let roll = !active.is_empty()
            && (active.size.0.saturating_add(batch_len as u64) > self.config.segment_bytes
                || now_ms.saturating_sub(active.created_ms) > self.config.segment_ms
                || active.offset_index.is_full()
                || active.time_index.is_full()
                || last_offset.0 - active.base_offset.0 > MAX_RELATIVE_OFFSET);
        let plan = AppendPlan {
            base_offset,
            last_offset,
            roll: roll.then_some(base_offset),
            position: if roll { Position(0) } else { active.size },
            batch_len,
        };
        assert!(plan.position.0 <= u32::MAX as u64, "segment position beyond u32");
        if roll {
            // The sealed segment's time index gets its final entry now, so the
            // shell's encode of it (before `roll_done`) carries the max timestamp.
            self.active_mut().time_index.seal();
        }
        self.pending = Some(PendingAppend { plan, now_ms, rolled: false });
        plan
    }

    /// Optional, between `plan_append` and `append_done` of a rolling plan:
    /// the shell created segment `new_base` and sealed the old one; from now
    /// on the new segment is the active one.
    pub fn roll_done(&mut self, new_base: Offset) {
        let pending = self.pending.as_mut().expect("roll_done without a plan");
        assert_eq!(pending.plan.roll, Some(new_base), "roll_done for a roll that was not planned");
        if pending.rolled {
            return;
        }
        pending.rolled = true;
        let now_ms = pending.now_ms;
        let mut segment = SegmentInfo::empty(new_base, self.config.index_interval_bytes, now_ms);
        segment.apply_limits(&self.config);
        assert!(
            new_base >= self.active_segment().next_offset,
            "new segment overlaps the active one"
        );
        self.segments.push(segment);
    }

    /// Phase two: the batch bytes of `plan` are written (to the write buffer
    /// or the device: durability is tracked separately by `set_durable`).
    /// `max_timestamp` is the batch's final maxTimestamp (LogAppendTime
    /// already applied).
    pub fn append_done(&mut self, plan: &AppendPlan, batch_len: usize, max_timestamp: i64) {
        let pending = self.pending.expect("append_done without plan_append");
        assert_eq!(pending.plan, *plan, "append_done for another plan");
        assert_eq!(batch_len, plan.batch_len, "batch length changed between plan and append");
        if let Some(new_base) = plan.roll {
            self.roll_done(new_base);
        }
        self.pending = None;
        let active = self.active_mut();
        assert_eq!(active.size, plan.position, "plan position does not match the active segment");
        assert!(active.next_offset <= plan.base_offset, "plan offsets overlap the active segment");
        let len32 = u32::try_from(batch_len).expect("batch larger than 4 GiB");
        active.offset_index.on_append(plan.base_offset, plan.position, len32);
        active.time_index.on_append(max_timestamp, plan.base_offset, plan.position, len32);
        active.size = Position(active.size.0 + batch_len as u64);
        active.next_offset = plan.last_offset.next();
        active.max_timestamp = active.max_timestamp.max(max_timestamp);
        self.log_end_offset = plan.last_offset.next();
    }

    /// Offsets below `offset` are durable (written, and synced where the
    /// flush policy asks). A value at or below the current one is ignored,
    /// so flush completions may be reported in any order.
    pub fn set_durable(&mut self, offset: Offset) {
        assert!(offset <= self.log_end_offset, "durable offset {offset:?} beyond the log end");
        self.durable_offset = self.durable_offset.max(offset);
    }

    /// Moves the high watermark forward. It never moves backwards (except by
    /// `truncate_to`/`reset_to`) and never passes the log end: both are bugs.
    pub fn advance_high_watermark(&mut self, offset: Offset) {
        assert!(
            offset >= self.high_watermark,
            "high watermark moving backwards: {:?} -> {offset:?}",
            self.high_watermark
        );
        assert!(offset <= self.log_end_offset, "high watermark {offset:?} beyond the log end");
        self.high_watermark = offset;
    }

    /// Where Fetch reads `offset` from.
    pub fn locate(&self, offset: Offset) -> Locate {
        if offset < self.log_start_offset || offset > self.log_end_offset {
            return Locate::OutOfRange;
        }
        if offset == self.log_end_offset {
            return Locate::AtEnd;
        }
        // log_start ≥ the first base, so some segment has base ≤ offset.
        let mut slot = self.segments.partition_point(|s| s.base_offset <= offset) - 1;
        // In a gap after a segment's end the data continues in the next one.
        while self.segments[slot].next_offset <= offset {
            slot += 1;
            assert!(slot < self.segments.len(), "offset below the log end lies in no segment");
        }
        let s = &self.segments[slot];
        let start_position =
            if s.base_offset > offset { Position(0) } else { s.offset_index.lookup(offset).1 };
        Locate::Segment { base_offset: s.base_offset, start_position, end_position: s.size }
    }

    /// ListOffsets by timestamp: the first segment (at or above the log
    /// start) holding a batch with maxTimestamp ≥ `ts`, and a position in it
    /// from which to scan for that batch. The shell skips batches below the
    /// log start and above the high watermark.
    pub fn locate_time(&self, ts: i64) -> Option<(Offset, Position)> {
        self.segments
            .iter()
            .find(|s| s.next_offset > self.log_start_offset && s.max_timestamp >= ts)
            .map(|s| (s.base_offset, s.time_index_start(ts).1))
    }

    /// Bases of the oldest whole segments to delete now: those past
    /// `retention.ms` (by their newest timestamp, as Kafka), those beyond
    /// `retention.bytes` (oldest first, while the excess covers a whole
    /// segment), and those entirely below the log start offset. Never the
    /// active segment, never one with offsets at or above the high watermark.
    pub fn retention_plan(&self, now_ms: i64) -> Vec<Offset> {
        let candidates = &self.segments[..self.segments.len() - 1];
        let below_hw =
            candidates.iter().take_while(|s| s.next_offset <= self.high_watermark).count();
        let candidates = &candidates[..below_hw];

        let by_log_start =
            candidates.iter().take_while(|s| s.next_offset <= self.log_start_offset).count();
        let by_time = match self.config.retention_ms {
            Some(ms) => candidates
                .iter()
                .take_while(|s| now_ms.saturating_sub(s.retention_timestamp()) > ms)
                .count(),
            None => 0,
        };
        let by_size = match self.config.retention_bytes {
            Some(limit) => {
                let mut excess = self.size_bytes().saturating_sub(limit);
                candidates
                    .iter()
                    .take_while(|s| {
                        let fits = excess > 0 && s.size.0 <= excess;
                        if fits {
                            excess -= s.size.0;
                        }
                        fits
                    })
                    .count()
            }
            None => 0,
        };
        let count = by_log_start.max(by_time).max(by_size);
        candidates[..count].iter().map(|s| s.base_offset).collect()
    }

    /// Bases of whole non-active segments entirely below the log start
    /// offset (after DeleteRecords), to delete.
    pub fn segments_below_log_start(&self) -> Vec<Offset> {
        self.segments[..self.segments.len() - 1]
            .iter()
            .take_while(|s| s.next_offset <= self.log_start_offset)
            .map(|s| s.base_offset)
            .collect()
    }

    /// The shell deleted these segments' files (a prefix of the log from
    /// `retention_plan` / `segments_below_log_start`, in any order). The log
    /// start advances to the first remaining segment's base if greater.
    pub fn segments_deleted(&mut self, bases: &[Offset]) {
        self.assert_no_pending();
        let mut sorted = bases.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert!(sorted.len() < self.segments.len(), "deleting the active segment");
        for (segment, base) in self.segments.iter().zip(&sorted) {
            assert_eq!(segment.base_offset, *base, "deleted segments are not the oldest ones");
            assert!(
                segment.next_offset <= self.high_watermark,
                "deleted a segment above the high watermark"
            );
        }
        self.segments.drain(..sorted.len());
        self.log_start_offset = self.log_start_offset.max(self.segments[0].base_offset);
        assert!(
            self.log_start_offset <= self.high_watermark,
            "log start passed the high watermark"
        );
        self.durable_offset = self.durable_offset.max(self.log_start_offset);
    }

    /// DeleteRecords: moves the log start offset forward to `offset` (−1 =
    /// the high watermark). Beyond the high watermark, or negative, is
    /// `OffsetOutOfRange`; below the current log start changes nothing.
    /// Returns the new low watermark. Whole segments below it are then
    /// deleted through `segments_below_log_start`.
    pub fn delete_records(&mut self, offset: Offset) -> Result<Offset, LogError> {
        self.assert_no_pending();
        let target = if offset == Offset(-1) { self.high_watermark } else { offset };
        if target.0 < 0 || target > self.high_watermark {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start: self.log_start_offset,
                high_watermark: self.high_watermark,
            });
        }
        self.log_start_offset = self.log_start_offset.max(target);
        Ok(self.log_start_offset)
    }

    /// Truncates the log to end at `offset` (follower reconciliation;
    /// recovery uses the scanner instead). Whole segments with base ≥
    /// `offset` are dropped (except the first, which is emptied); the
    /// segment containing `offset` is cut at `cut`, which the shell found by
    /// scanning it (`cut` is ignored when nothing is cut). Returns the bases
    /// of the segments whose files the shell deletes. The high watermark and
    /// durable offset drop to `offset` if above it (the one case where the
    /// high watermark moves back, as in Kafka). `offset` below the log start
    /// is `OffsetOutOfRange` (use `reset_to`); at or past the end is a no-op.
    pub fn truncate_to(
        &mut self,
        offset: Offset,
        cut: TruncateCut,
    ) -> Result<Vec<Offset>, LogError> {
        self.assert_no_pending();
        if offset >= self.log_end_offset {
            return Ok(Vec::new());
        }
        if offset < self.log_start_offset {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start: self.log_start_offset,
                high_watermark: self.high_watermark,
            });
        }
        let mut keep = self.segments.partition_point(|s| s.base_offset < offset).max(1);
        let removed: Vec<Offset> = self.segments.drain(keep..).map(|s| s.base_offset).collect();
        keep = self.segments.len();
        let s = &mut self.segments[keep - 1];
        if s.base_offset >= offset {
            // The first segment starts at the truncation point: empty it.
            s.size = Position(0);
            s.next_offset = s.base_offset;
            s.max_timestamp = NO_TIMESTAMP;
            s.offset_index.truncate_to(s.base_offset);
            s.time_index.truncate_to(s.base_offset, NO_TIMESTAMP);
        } else if s.next_offset > offset {
            assert!(cut.position <= s.size, "truncation cut beyond the segment end");
            s.size = cut.position;
            s.next_offset = offset;
            s.max_timestamp = cut.max_timestamp;
            s.offset_index.truncate_to(offset);
            s.offset_index.truncate_to_position(cut.position);
            s.time_index.truncate_to(offset, cut.max_timestamp);
        }
        self.log_end_offset = offset;
        self.high_watermark = self.high_watermark.min(offset);
        self.durable_offset = self.durable_offset.min(offset);
        Ok(removed)
    }

    /// Drops every segment and starts an empty log at `offset` (Kafka's
    /// truncateFullyAndStartAt, for a follower far behind the leader's log
    /// start). Returns the bases of the segment files to delete; the shell
    /// creates `<offset>.log`.
    pub fn reset_to(&mut self, offset: Offset, now_ms: i64) -> Vec<Offset> {
        self.assert_no_pending();
        assert!(offset.0 >= 0, "negative log start");
        let removed = self.segments.drain(..).map(|s| s.base_offset).collect();
        let mut segment = SegmentInfo::empty(offset, self.config.index_interval_bytes, now_ms);
        segment.apply_limits(&self.config);
        self.segments.push(segment);
        self.log_start_offset = offset;
        self.log_end_offset = offset;
        self.high_watermark = offset;
        self.durable_offset = offset;
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LogConfig {
        LogConfig {
            segment_bytes: 1000,
            segment_ms: 10_000,
            retention_ms: None,
            retention_bytes: None,
            index_interval_bytes: 250,
            index_max_entries: 100,
        }
    }

    /// Plans and completes one append.
    fn append(log: &mut PartitionLog, len: usize, count: i64, ts: i64, now: i64) -> AppendPlan {
        let plan = log.plan_append(len, count, ts, now);
        log.append_done(&plan, len, ts);
        plan
    }

    #[test]
    fn appends_assign_offsets_and_positions() {
        let mut log = PartitionLog::new_empty(config(), 0);
        let a = append(&mut log, 100, 3, 10, 0);
        let b = append(&mut log, 200, 1, 20, 0);
        assert_eq!(
            (a.base_offset, a.last_offset, a.position, a.roll),
            (Offset(0), Offset(2), Position(0), None)
        );
        assert_eq!(
            (b.base_offset, b.last_offset, b.position),
            (Offset(3), Offset(3), Position(100))
        );
        assert_eq!(log.log_end_offset(), Offset(4));
        let s = log.active_segment();
        assert_eq!((s.size, s.next_offset, s.max_timestamp), (Position(300), Offset(4), 20));
    }

    #[test]
    fn rolls_by_size_but_not_for_an_empty_segment() {
        let mut log = PartitionLog::new_empty(config(), 0);
        append(&mut log, 600, 1, 1, 0);
        let p = append(&mut log, 400, 1, 1, 0);
        assert_eq!(p.roll, None, "exactly segment_bytes fits");
        let p = append(&mut log, 1, 1, 1, 0);
        assert_eq!((p.roll, p.position), (Some(Offset(2)), Position(0)));
        assert_eq!(log.segment_count(), 2);
        // An over-size batch goes into the (new, empty) segment it starts.
        let p = append(&mut log, 5000, 1, 1, 0);
        assert_eq!(p.roll, Some(Offset(3)));
        let p = log.plan_append(5000, 1, 1, 0);
        assert_eq!(p.roll, Some(Offset(4)));
        log.append_done(&p, 5000, 1);
        let sizes: Vec<_> = log.segments().map(|s| (s.base_offset.0, s.size.0)).collect();
        assert_eq!(sizes, vec![(0, 1000), (2, 1), (3, 5000), (4, 5000)]);
    }

    #[test]
    fn rolls_by_time_only_when_non_empty() {
        let mut log = PartitionLog::new_empty(config(), 1_000);
        // Empty for a long time: no roll.
        let p = append(&mut log, 10, 1, 1, 50_000);
        assert_eq!(p.roll, None);
        let p = append(&mut log, 10, 1, 1, 11_000);
        assert_eq!(p.roll, None, "exactly segment_ms is not past it");
        let p = append(&mut log, 10, 1, 1, 11_001);
        assert_eq!(p.roll, Some(Offset(2)));
        assert_eq!(log.active_segment().created_ms, 11_001);
        let p = append(&mut log, 10, 1, 1, 21_001);
        assert_eq!(p.roll, None);
    }

    #[test]
    fn rolls_when_index_full() {
        let mut cfg = config();
        cfg.segment_bytes = 1 << 20;
        cfg.index_interval_bytes = 10;
        cfg.index_max_entries = 3;
        let mut log = PartitionLog::new_empty(cfg, 0);
        let mut rolls = Vec::new();
        for i in 0..10 {
            let p = append(&mut log, 10, 1, i, 0);
            if let Some(b) = p.roll {
                rolls.push(b.0);
            }
        }
        // Batch 0 at position 0 gets no entry; batches 1..=3 fill the index.
        assert_eq!(rolls, vec![4, 8]);
        assert!(log.segments().all(|s| s.offset_index.len() <= 3));
    }

    #[test]
    fn rolls_before_relative_offsets_overflow() {
        let mut log = PartitionLog::new_empty(config(), 0);
        append(&mut log, 10, MAX_RELATIVE_OFFSET, 1, 0);
        let p = log.plan_append(10, 2, 1, 0);
        assert_eq!(p.roll, Some(Offset(MAX_RELATIVE_OFFSET)));
        log.append_done(&p, 10, 1);
        assert_eq!(log.log_end_offset(), Offset(MAX_RELATIVE_OFFSET + 2));
    }

    #[test]
    fn roll_done_before_append_done() {
        let mut log = PartitionLog::new_empty(config(), 0);
        append(&mut log, 900, 1, 5, 0);
        let p = log.plan_append(200, 1, 7, 0);
        assert_eq!(p.roll, Some(Offset(1)));
        // The old segment is still active until roll_done; its time index is sealed.
        assert_eq!(log.active_segment().base_offset, Offset(0));
        assert_eq!(log.active_segment().time_index.last_timestamp(), Some(5));
        log.roll_done(Offset(1));
        assert_eq!(log.active_segment().base_offset, Offset(1));
        assert_eq!(log.pending_append(), Some(&p));
        log.append_done(&p, 200, 7);
        assert_eq!(log.active_segment().size, Position(200));
        assert_eq!(log.pending_append(), None);
    }

    #[test]
    #[should_panic(expected = "outstanding append plan")]
    fn abandoned_plan_stops_the_log() {
        let mut log = PartitionLog::new_empty(config(), 0);
        log.plan_append(10, 1, 1, 0);
        log.plan_append(10, 1, 1, 0);
    }

    #[test]
    fn high_watermark_and_durability() {
        let mut log = PartitionLog::new_empty(config(), 0);
        append(&mut log, 10, 5, 1, 0);
        log.set_durable(Offset(3));
        log.set_durable(Offset(2));
        assert_eq!(log.durable_offset(), Offset(3));
        log.advance_high_watermark(Offset(3));
        log.advance_high_watermark(Offset(3));
        log.advance_high_watermark(Offset(5));
        assert_eq!(log.high_watermark(), Offset(5));
    }

    #[test]
    #[should_panic(expected = "high watermark moving backwards")]
    fn high_watermark_never_moves_backwards() {
        let mut log = PartitionLog::new_empty(config(), 0);
        append(&mut log, 10, 5, 1, 0);
        log.advance_high_watermark(Offset(4));
        log.advance_high_watermark(Offset(3));
    }

    #[test]
    #[should_panic(expected = "beyond the log end")]
    fn high_watermark_never_passes_log_end() {
        let mut log = PartitionLog::new_empty(config(), 0);
        append(&mut log, 10, 5, 1, 0);
        log.advance_high_watermark(Offset(6));
    }

    /// Three segments of ten 100-byte batches of 2 offsets each: offsets
    /// 0..20, 20..40, 40..60; timestamps = offset.
    fn three_segments(cfg: LogConfig) -> PartitionLog {
        let mut log = PartitionLog::new_empty(cfg, 0);
        for i in 0..30 {
            append(&mut log, 100, 2, i * 2 + 1, 0);
        }
        let bases: Vec<_> = log.segments().map(|s| s.base_offset.0).collect();
        assert_eq!(bases, vec![0, 20, 40]);
        log
    }

    #[test]
    fn locate_uses_the_index() {
        let mut log = three_segments(config());
        assert_eq!(log.locate(Offset(-1)), Locate::OutOfRange);
        assert_eq!(log.locate(Offset(61)), Locate::OutOfRange);
        assert_eq!(log.locate(Offset(60)), Locate::AtEnd);
        assert_eq!(
            log.locate(Offset(0)),
            Locate::Segment {
                base_offset: Offset(0),
                start_position: Position(0),
                end_position: Position(1000)
            }
        );
        // Entries every 3 batches (300 bytes ≥ 250): offsets 26 @300, 32 @600, 38 @900.
        assert_eq!(
            log.locate(Offset(35)),
            Locate::Segment {
                base_offset: Offset(20),
                start_position: Position(600),
                end_position: Position(1000)
            }
        );
        assert_eq!(
            log.locate(Offset(25)),
            Locate::Segment {
                base_offset: Offset(20),
                start_position: Position(0),
                end_position: Position(1000)
            }
        );
        log.advance_high_watermark(Offset(30));
        log.delete_records(Offset(21)).unwrap();
        assert_eq!(log.locate(Offset(20)), Locate::OutOfRange);
        assert!(matches!(log.locate(Offset(21)), Locate::Segment { base_offset: Offset(20), .. }));
        assert_eq!(log.segment_after(Offset(20)).map(|s| s.base_offset), Some(Offset(40)));
        assert!(log.segment_after(Offset(40)).is_none());
        assert_eq!(log.segment(Offset(40)).map(|s| s.size), Some(Position(1000)));
    }

    #[test]
    fn locate_time_finds_segment_and_scan_start() {
        let log = three_segments(config());
        assert_eq!(log.locate_time(0), Some((Offset(0), Position(0))));
        // ts 35 is first reached by the batch at offset 34 (timestamps = offset + 1).
        let (base, position) = log.locate_time(35).unwrap();
        assert_eq!(base, Offset(20));
        assert!(position.0 <= 700, "must start at or before the batch at offset 34 (position 700)");
        assert_eq!(log.locate_time(45).map(|(base, _)| base), Some(Offset(40)));
        assert_eq!(log.locate_time(1_000), None);
        let s = log.segment(Offset(20)).unwrap();
        let (offset, pos) = s.time_index_start(35);
        assert!(offset <= Offset(34) && pos.0 <= 700);
    }

    #[test]
    fn retention_by_time() {
        let mut cfg = config();
        cfg.retention_ms = Some(100);
        let mut log = three_segments(cfg);
        // Max timestamps of the segments: 19, 39, 59 (batch i has ts 2i+1).
        assert!(log.retention_plan(1_000).is_empty(), "nothing below the high watermark");
        log.advance_high_watermark(Offset(60));
        assert!(log.retention_plan(119).is_empty());
        assert_eq!(log.retention_plan(120), vec![Offset(0)]);
        assert_eq!(
            log.retention_plan(10_000),
            vec![Offset(0), Offset(20)],
            "never the active segment"
        );
        log.segments_deleted(&[Offset(0)]);
        assert_eq!(log.log_start_offset(), Offset(20));
        assert_eq!(log.retention_plan(140), vec![Offset(20)]);
        // The high watermark bounds retention.
        let mut cfg = config();
        cfg.retention_ms = Some(0);
        let mut log = three_segments(cfg);
        log.advance_high_watermark(Offset(39));
        assert_eq!(log.retention_plan(10_000), vec![Offset(0)]);
        // An absurd clock neither overflows nor deletes.
        assert_eq!(log.retention_plan(i64::MIN), Vec::<Offset>::new());
    }

    #[test]
    fn retention_by_bytes() {
        let mut cfg = config();
        cfg.retention_bytes = Some(1500);
        let mut log = three_segments(cfg);
        log.advance_high_watermark(Offset(60));
        // 3000 bytes, limit 1500: excess 1500 covers one 1000-byte segment only.
        assert_eq!(log.retention_plan(0), vec![Offset(0)]);
        log.segments_deleted(&[Offset(0)]);
        assert!(log.retention_plan(0).is_empty());
        let mut cfg = config();
        cfg.retention_bytes = Some(0);
        let mut log = three_segments(cfg);
        log.advance_high_watermark(Offset(60));
        assert_eq!(log.retention_plan(0), vec![Offset(0), Offset(20)]);
        log.segments_deleted(&[Offset(20), Offset(0)]);
        assert_eq!(log.log_start_offset(), Offset(40));
        assert_eq!(log.segment_count(), 1);
    }

    #[test]
    fn delete_records_moves_log_start() {
        let mut log = three_segments(config());
        log.advance_high_watermark(Offset(45));
        assert!(matches!(log.delete_records(Offset(46)), Err(LogError::OffsetOutOfRange { .. })));
        assert!(matches!(log.delete_records(Offset(-2)), Err(LogError::OffsetOutOfRange { .. })));
        assert_eq!(log.delete_records(Offset(25)), Ok(Offset(25)));
        assert_eq!(log.delete_records(Offset(10)), Ok(Offset(25)), "never backwards");
        assert_eq!(log.segments_below_log_start(), vec![Offset(0)]);
        assert_eq!(log.retention_plan(0), vec![Offset(0)]);
        log.segments_deleted(&log.segments_below_log_start());
        assert_eq!(log.log_start_offset(), Offset(25));
        assert_eq!(log.delete_records(Offset(-1)), Ok(Offset(45)));
        assert_eq!(log.segments_below_log_start(), vec![Offset(20)]);
        log.segments_deleted(&[Offset(20)]);
        assert_eq!(log.log_start_offset(), Offset(45));
        assert_eq!(log.locate(Offset(44)), Locate::OutOfRange);
    }

    #[test]
    fn truncate_cuts_and_drops_segments() {
        let mut log = three_segments(config());
        log.advance_high_watermark(Offset(50));
        log.set_durable(Offset(60));
        // Offset 30 starts the batch at position 500 of segment 20.
        let removed = log
            .truncate_to(Offset(30), TruncateCut { position: Position(500), max_timestamp: 29 })
            .unwrap();
        assert_eq!(removed, vec![Offset(40)]);
        assert_eq!(log.log_end_offset(), Offset(30));
        assert_eq!((log.high_watermark(), log.durable_offset()), (Offset(30), Offset(30)));
        let s = log.active_segment();
        assert_eq!(
            (s.base_offset, s.size, s.next_offset, s.max_timestamp),
            (Offset(20), Position(500), Offset(30), 29)
        );
        assert!(s.offset_index.entries().all(|(o, p)| o < Offset(30) && p < Position(500)));
        // Appends continue right after the cut.
        let p = append(&mut log, 100, 2, 5, 0);
        assert_eq!((p.base_offset, p.position), (Offset(30), Position(500)));
        // Truncating at a segment base drops that segment whole.
        let removed = log
            .truncate_to(Offset(20), TruncateCut { position: Position(0), max_timestamp: -1 })
            .unwrap();
        assert_eq!(removed, vec![Offset(20)]);
        assert_eq!(log.active_segment().base_offset, Offset(0));
        assert_eq!(log.log_end_offset(), Offset(20));
        // Down to the first base: the first segment is emptied, not dropped.
        let removed = log
            .truncate_to(Offset(0), TruncateCut { position: Position(0), max_timestamp: -1 })
            .unwrap();
        assert!(removed.is_empty());
        assert!(log.active_segment().is_empty());
        assert_eq!(log.locate(Offset(0)), Locate::AtEnd);
        // Past the end: no-op.
        assert!(
            log.truncate_to(Offset(10), TruncateCut { position: Position(0), max_timestamp: -1 })
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn truncate_below_log_start_is_refused_and_reset_works() {
        let mut log = three_segments(config());
        log.advance_high_watermark(Offset(60));
        log.delete_records(Offset(30)).unwrap();
        assert!(
            log.truncate_to(Offset(29), TruncateCut { position: Position(0), max_timestamp: -1 })
                .is_err()
        );
        let removed = log.reset_to(Offset(500), 7);
        assert_eq!(removed, vec![Offset(0), Offset(20), Offset(40)]);
        assert_eq!(
            (log.log_start_offset(), log.log_end_offset(), log.high_watermark()),
            (Offset(500), Offset(500), Offset(500))
        );
        let p = append(&mut log, 10, 1, 1, 8);
        assert_eq!((p.base_offset, p.roll), (Offset(500), None));
    }

    #[test]
    fn from_recovered_rebuilds_state() {
        let cfg = config();
        let original = three_segments(cfg.clone());
        let segments: Vec<SegmentInfo> = original.segments().cloned().collect();
        let mut log = PartitionLog::from_recovered(cfg.clone(), segments.clone(), Offset(5), 0);
        assert_eq!(log.log_start_offset(), Offset(5));
        assert_eq!(log.log_end_offset(), Offset(60));
        assert_eq!(log.high_watermark(), Offset(5));
        assert_eq!(log.durable_offset(), Offset(60));
        let p = append(&mut log, 100, 1, 1, 0);
        assert_eq!((p.base_offset, p.roll), (Offset(60), Some(Offset(60))));
        // A checkpointed log start beyond the recovered end is clamped.
        let log = PartitionLog::from_recovered(cfg.clone(), segments, Offset(1_000), 0);
        assert_eq!(log.log_start_offset(), Offset(60));
        // No segments: a fresh one at the log start.
        let log = PartitionLog::from_recovered(cfg, Vec::new(), Offset(77), 0);
        assert_eq!(
            (log.active_segment().base_offset, log.log_end_offset()),
            (Offset(77), Offset(77))
        );
    }

    #[test]
    fn overlapping_segments_are_reported() {
        let mut a = SegmentInfo::empty(Offset(0), 250, 0);
        a.next_offset = Offset(15);
        let b = SegmentInfo::empty(Offset(10), 250, 0);
        assert!(matches!(
            PartitionLog::check_segments(&[a.clone(), b.clone()]),
            Err(LogError::InvalidSegments(_))
        ));
        assert!(PartitionLog::check_segments(&[b.clone(), a.clone()]).is_err());
        let mut c = SegmentInfo::empty(Offset(20), 250, 0);
        c.offset_index = OffsetIndex::new(Offset(0), 250, 10);
        assert!(PartitionLog::check_segments(&[c]).is_err());
        a.next_offset = Offset(10);
        assert_eq!(PartitionLog::check_segments(&[a, b]), Ok(()));
    }

    #[test]
    fn locate_skips_gaps_between_segments() {
        let cfg = config();
        let mut first = SegmentInfo::empty(Offset(0), 250, 0);
        first.offset_index.on_append(Offset(0), Position(0), 100);
        first.size = Position(100);
        first.next_offset = Offset(10);
        let mut second = SegmentInfo::empty(Offset(20), 250, 0);
        second.offset_index.on_append(Offset(20), Position(0), 100);
        second.size = Position(100);
        second.next_offset = Offset(30);
        let log = PartitionLog::from_recovered(cfg, vec![first, second], Offset(0), 0);
        assert_eq!(
            log.locate(Offset(15)),
            Locate::Segment {
                base_offset: Offset(20),
                start_position: Position(0),
                end_position: Position(100)
            }
        );
    }

    #[test]
    fn config_validation() {
        assert!(LogConfig::default().validate().is_ok());
        let bad = [
            LogConfig { segment_bytes: 0, ..config() },
            LogConfig { segment_bytes: 1 << 32, ..config() },
            LogConfig { segment_ms: 0, ..config() },
            LogConfig { retention_ms: Some(-5), ..config() },
            LogConfig { index_max_entries: 0, ..config() },
        ];
        for c in bad {
            assert!(matches!(c.validate(), Err(LogError::InvalidConfig(_))), "{c:?}");
        }
    }
}
