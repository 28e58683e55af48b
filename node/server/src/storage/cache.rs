//! The batch cache: recently appended batches kept in memory per shard, so
//! caught-up consumers are served without disk reads (with O_DIRECT there is
//! no page cache to do it).
//!
//! Each partition keeps its cached tail as a run of consecutive batches; the
//! shard keeps one FIFO over all partitions' entries and evicts from its front
//! when the shard's byte budget is exceeded. Appends are in offset order per
//! partition, so the FIFO always evicts a partition's oldest cached batch and
//! every partition's cached run stays contiguous.

use bytes::Bytes;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use weir_proto::Offset;

/// One cached batch, bytes exactly as stored on disk.
#[derive(Clone)]
pub struct CachedBatch {
    pub base: Offset,
    pub last: Offset,
    pub bytes: Bytes,
}

/// The cached tail of one partition. Owned by the partition's shard.
#[derive(Default)]
pub struct PartitionCache {
    batches: VecDeque<CachedBatch>,
}

impl PartitionCache {
    /// Batches starting with the one containing `offset`, stopping before any
    /// batch whose base is at or above `upper`, and before exceeding
    /// `max_bytes` (the first batch is always included, KIP-74). `None` when
    /// `offset` is below the cached run: the caller reads the disk.
    pub fn read(&self, offset: Offset, upper: Offset, max_bytes: usize) -> Option<Vec<Bytes>> {
        let first = self.batches.front()?;
        if offset < first.base {
            return None;
        }
        let start = self.batches.partition_point(|b| b.last < offset);
        let mut out = Vec::new();
        let mut total = 0usize;
        for b in self.batches.iter().skip(start) {
            if b.base >= upper {
                break;
            }
            if !out.is_empty() && total + b.bytes.len() > max_bytes {
                break;
            }
            total += b.bytes.len();
            out.push(b.bytes.clone());
        }
        Some(out)
    }

    /// Whether a read at `offset` is served here (not from the files).
    pub fn covers(&self, offset: Offset) -> bool {
        self.batches.front().is_some_and(|b| b.base <= offset)
    }

    /// Drops cached batches at or above `offset` (log truncation).
    pub fn truncate_from(&mut self, offset: Offset) {
        while self.batches.back().is_some_and(|b| b.last >= offset) {
            self.batches.pop_back();
        }
    }

    pub fn clear(&mut self) {
        self.batches.clear();
    }
}

/// The shard-wide budget and eviction order. Owned by one shard.
pub struct ShardCache {
    budget_bytes: usize,
    used_bytes: usize,
    fifo: VecDeque<(Weak<RefCell<PartitionCache>>, Offset, usize)>,
}

impl ShardCache {
    pub fn new(budget_bytes: usize) -> ShardCache {
        ShardCache { budget_bytes, used_bytes: 0, fifo: VecDeque::new() }
    }

    pub fn used_bytes(&self) -> usize {
        self.used_bytes
    }

    /// Caches `batch` for `partition`, evicting the oldest entries of the
    /// shard while over budget.
    pub fn insert(&mut self, partition: &Rc<RefCell<PartitionCache>>, batch: CachedBatch) {
        let len = batch.bytes.len();
        if len > self.budget_bytes {
            return;
        }
        self.fifo.push_back((Rc::downgrade(partition), batch.base, len));
        partition.borrow_mut().batches.push_back(batch);
        self.used_bytes += len;
        while self.used_bytes > self.budget_bytes {
            let Some((weak, base, len)) = self.fifo.pop_front() else { break };
            self.used_bytes -= len;
            if let Some(p) = weak.upgrade() {
                let mut p = p.borrow_mut();
                if p.batches.front().is_some_and(|b| b.base == base) {
                    p.batches.pop_front();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(base: i64, last: i64, len: usize) -> CachedBatch {
        CachedBatch { base: Offset(base), last: Offset(last), bytes: Bytes::from(vec![0u8; len]) }
    }

    #[test]
    fn reads_from_containing_batch_and_respects_limits() {
        let p = Rc::new(RefCell::new(PartitionCache::default()));
        let mut shard = ShardCache::new(1000);
        shard.insert(&p, batch(0, 4, 100));
        shard.insert(&p, batch(5, 9, 100));
        shard.insert(&p, batch(10, 14, 100));
        let got = p.borrow().read(Offset(7), Offset(15), 1000).unwrap();
        assert_eq!(got.len(), 2);
        // Upper bound (high watermark) stops before batch 10..14.
        assert_eq!(p.borrow().read(Offset(7), Offset(10), 1000).unwrap().len(), 1);
        // max_bytes smaller than one batch still returns the first batch.
        assert_eq!(p.borrow().read(Offset(0), Offset(15), 10).unwrap().len(), 1);
        assert!(p.borrow().read(Offset(15), Offset(15), 10).unwrap().is_empty());
    }

    #[test]
    fn evicts_oldest_across_partitions_within_budget() {
        let a = Rc::new(RefCell::new(PartitionCache::default()));
        let b = Rc::new(RefCell::new(PartitionCache::default()));
        let mut shard = ShardCache::new(250);
        shard.insert(&a, batch(0, 0, 100));
        shard.insert(&b, batch(0, 0, 100));
        shard.insert(&a, batch(1, 1, 100));
        assert!(shard.used_bytes() <= 250);
        assert!(a.borrow().read(Offset(0), Offset(2), 1000).is_none(), "a's oldest evicted");
        assert_eq!(a.borrow().read(Offset(1), Offset(2), 1000).unwrap().len(), 1);
        assert_eq!(b.borrow().read(Offset(0), Offset(1), 1000).unwrap().len(), 1);
    }
}
