//! The leader-epoch cache of one partition replica: which leader epoch
//! started at which offset (Kafka's `leader-epoch-checkpoint`,
//! `LeaderEpochFileCache`).
//!
//! ```text
//!   entries:  (epoch 0, start 0) (epoch 2, start 40) (epoch 5, start 97)
//!   log:      [0 ........ 40 ............ 97 ....... log end)
//!   end_offset_for_epoch(2) = (2, 97)   end_offset_for_epoch(3) = (2, 97)
//!   end_offset_for_epoch(5) = (5, log end)
//! ```
//!
//! It is what makes truncation after a leader change safe (KIP-101, KIP-279):
//! a follower asks the leader where the follower's last epoch ends in the
//! leader's log and cuts its own log there, so it never keeps records that
//! the new leader does not have at the same offsets.
//!
//! Persistence is the shell's: it writes `entries()` to the checkpoint file
//! whenever they change, and hands them back to [`LeaderEpochCache::from_entries`]
//! at startup.

use weir_proto::{LeaderEpoch, Offset};

/// One cache entry: records from `start_offset` on were written in `epoch`
/// (until the next entry's start offset). Plain value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: LeaderEpoch,
    pub start_offset: Offset,
}

/// An answer to OffsetForLeaderEpoch: the largest epoch ≤ the requested one
/// that this log knows, and the offset where that epoch ends (the start of
/// the next epoch, or the log end for the latest). Plain value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEndOffset {
    pub epoch: LeaderEpoch,
    pub end_offset: Offset,
}

impl EpochEndOffset {
    /// Kafka's `UNDEFINED_EPOCH` / `UNDEFINED_EPOCH_OFFSET` answer.
    pub const UNDEFINED: EpochEndOffset =
        EpochEndOffset { epoch: LeaderEpoch::UNKNOWN, end_offset: Offset::NONE };

    pub fn is_undefined(&self) -> bool {
        self.epoch == LeaderEpoch::UNKNOWN || self.end_offset == Offset::NONE
    }
}

/// Error from [`LeaderEpochCache::from_entries`]: the checkpoint read from
/// disk is not a cache (the shell then rebuilds it from the batches).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("leader-epoch checkpoint is not ordered or has negative values")]
pub struct EpochCacheError;

/// The leader-epoch cache of one replica.
///
/// Owned by the partition's [`super::ReplicaState`], on the shard that owns
/// the partition; no concurrent use. Epochs and start offsets both strictly
/// increase along `entries` (asserted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderEpochCache {
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    pub fn new() -> LeaderEpochCache {
        LeaderEpochCache::default()
    }

    /// Rebuilds the cache from a checkpoint (input from disk, so checked).
    pub fn from_entries(entries: Vec<EpochEntry>) -> Result<LeaderEpochCache, EpochCacheError> {
        let ordered = entries
            .windows(2)
            .all(|w| w[0].epoch < w[1].epoch && w[0].start_offset < w[1].start_offset);
        let non_negative = entries.iter().all(|e| e.epoch.0 >= 0 && e.start_offset.0 >= 0);
        if ordered && non_negative {
            Ok(LeaderEpochCache { entries })
        } else {
            Err(EpochCacheError)
        }
    }

    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// The epoch of the newest entry, `LeaderEpoch::UNKNOWN` when empty. A
    /// follower sends it as `last_fetched_epoch`.
    pub fn latest_epoch(&self) -> LeaderEpoch {
        self.latest().map_or(LeaderEpoch::UNKNOWN, |e| e.epoch)
    }

    /// Records that `epoch` starts at `start_offset` (a leader on election,
    /// at its log end; a follower when it appends the first batch of a new
    /// epoch). As in Kafka, an entry whose epoch is already the latest with
    /// a start ≤ this one is kept; otherwise entries with an epoch ≥
    /// `epoch` or a start ≥ `start_offset` are dropped first, which removes
    /// epochs that ended without any record. Returns whether it changed
    /// (the shell then rewrites the checkpoint).
    pub fn assign(&mut self, epoch: LeaderEpoch, start_offset: Offset) -> bool {
        assert!(epoch.0 >= 0 && start_offset.0 >= 0, "assign({epoch:?}, {start_offset:?})");
        if self.latest().is_some_and(|l| l.epoch == epoch && l.start_offset <= start_offset) {
            return false;
        }
        while self.latest().is_some_and(|l| l.epoch >= epoch || l.start_offset >= start_offset) {
            self.entries.pop();
        }
        self.entries.push(EpochEntry { epoch, start_offset });
        true
    }

    /// Kafka's `LeaderEpochFileCache.endOffsetFor`: what OffsetForLeaderEpoch
    /// (and a FetchResponse's diverging epoch) answers for `requested`.
    ///
    /// - the latest epoch: it ends at the log end;
    /// - an epoch between two known ones: the largest known epoch below it
    ///   (or equal), ending where the next known epoch starts;
    /// - an epoch below every known one: the requested epoch itself, ending
    ///   where the first known epoch starts (Kafka's answer; it may be
    ///   imprecise if older entries were removed with old segments);
    /// - unknown, or above every known epoch: undefined.
    pub fn end_offset_for_epoch(&self, requested: LeaderEpoch, log_end: Offset) -> EpochEndOffset {
        if requested == LeaderEpoch::UNKNOWN || requested.0 < 0 {
            return EpochEndOffset::UNDEFINED;
        }
        if self.latest_epoch() == requested {
            return EpochEndOffset { epoch: requested, end_offset: log_end };
        }
        let Some(higher) = self.entries.iter().find(|e| e.epoch > requested) else {
            return EpochEndOffset::UNDEFINED;
        };
        match self.entries.iter().rev().find(|e| e.epoch <= requested) {
            None => EpochEndOffset { epoch: requested, end_offset: higher.start_offset },
            Some(floor) => EpochEndOffset { epoch: floor.epoch, end_offset: higher.start_offset },
        }
    }

    /// The log was truncated to `end_offset`: drop the epochs that started
    /// at or after it (Kafka's `truncateFromEnd`).
    pub fn truncate_from_end(&mut self, end_offset: Offset) {
        while self.latest().is_some_and(|e| e.start_offset >= end_offset) {
            self.entries.pop();
        }
    }

    /// The log start moved to `start_offset` (retention, DeleteRecords, a
    /// follower reset): drop epochs that ended before it and move the start
    /// of the epoch containing it up (Kafka's `truncateFromStart`).
    pub fn truncate_from_start(&mut self, start_offset: Offset) {
        let covered = self.entries.iter().take_while(|e| e.start_offset <= start_offset).count();
        if covered == 0 {
            return;
        }
        let epoch = self.entries[covered - 1].epoch;
        self.entries.drain(..covered);
        self.entries.insert(0, EpochEntry { epoch, start_offset });
    }

    /// Drops every entry (a follower reset to a leader's log start).
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        let entries = entries
            .iter()
            .map(|&(e, o)| EpochEntry { epoch: LeaderEpoch(e), start_offset: Offset(o) })
            .collect();
        LeaderEpochCache::from_entries(entries).unwrap()
    }

    fn eo(epoch: i32, end: i64) -> EpochEndOffset {
        EpochEndOffset { epoch: LeaderEpoch(epoch), end_offset: Offset(end) }
    }

    #[test]
    fn end_offset_for_epoch_follows_kafka() {
        let c = cache(&[(0, 0), (2, 40), (5, 97)]);
        let end = Offset(120);
        assert_eq!(c.end_offset_for_epoch(LeaderEpoch(5), end), eo(5, 120));
        assert_eq!(c.end_offset_for_epoch(LeaderEpoch(2), end), eo(2, 97));
        // Epoch 3 never wrote here: answer the epoch below it and where 5 starts.
        assert_eq!(c.end_offset_for_epoch(LeaderEpoch(3), end), eo(2, 97));
        assert_eq!(c.end_offset_for_epoch(LeaderEpoch(0), end), eo(0, 40));
        assert_eq!(c.end_offset_for_epoch(LeaderEpoch(9), end), EpochEndOffset::UNDEFINED);
        assert_eq!(c.end_offset_for_epoch(LeaderEpoch::UNKNOWN, end), EpochEndOffset::UNDEFINED);
        let late = cache(&[(4, 10), (6, 30)]);
        assert_eq!(late.end_offset_for_epoch(LeaderEpoch(1), end), eo(1, 10));
        assert_eq!(
            LeaderEpochCache::new().end_offset_for_epoch(LeaderEpoch(1), end).epoch,
            LeaderEpoch::UNKNOWN
        );
    }

    #[test]
    fn assign_drops_empty_and_non_monotonic_epochs() {
        let mut c = cache(&[(0, 0), (3, 10)]);
        assert!(!c.assign(LeaderEpoch(3), Offset(12)), "same epoch, later start: kept");
        // Epoch 3 wrote nothing before epoch 4 started at the same offset.
        let mut empty = cache(&[(0, 0), (3, 10)]);
        assert!(empty.assign(LeaderEpoch(4), Offset(10)));
        assert_eq!(empty, cache(&[(0, 0), (4, 10)]));
        // A start offset below the latest start rewinds the cache.
        assert!(c.assign(LeaderEpoch(5), Offset(5)));
        assert_eq!(c, cache(&[(0, 0), (5, 5)]));
    }

    #[test]
    fn truncation_from_both_ends() {
        let mut c = cache(&[(0, 0), (2, 40), (5, 97)]);
        c.truncate_from_end(Offset(97));
        assert_eq!(c, cache(&[(0, 0), (2, 40)]));
        c.truncate_from_end(Offset(41));
        assert_eq!(c, cache(&[(0, 0), (2, 40)]));
        c.truncate_from_start(Offset(50));
        assert_eq!(c, cache(&[(2, 50)]));
        c.truncate_from_start(Offset(10));
        assert_eq!(c, cache(&[(2, 50)]));
    }

    #[test]
    fn from_entries_rejects_disorder() {
        let bad = vec![
            EpochEntry { epoch: LeaderEpoch(2), start_offset: Offset(10) },
            EpochEntry { epoch: LeaderEpoch(1), start_offset: Offset(20) },
        ];
        assert_eq!(LeaderEpochCache::from_entries(bad), Err(EpochCacheError));
    }
}
