//! Read-ahead for sequential cold readers.
//!
//! A consumer reading a backlog asks for one stretch of each partition per
//! fetch and waits for the answer before asking again, so without help the
//! device idles while the response travels and the client parses it. After a
//! fetch is answered from a segment file, the partition reads the next
//! stretch of the same segment in the background ([`Ahead`]); the next fetch
//! at the offset that follows finds it in memory while the device works on
//! the stretch after.
//!
//! Owned by one shard: one slot per partition, and a byte budget over the
//! shard ([`ReadAheads`], `Limits::read_ahead_bytes_per_shard`). At the
//! budget the oldest read-ahead of the shard is dropped (a reader that went
//! away gives its memory to one that reads now). Nothing here is on disk.

use bytes::Bytes;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use weir_proto::Offset;

/// A partition's read-ahead slot.
pub type Slot = Rc<RefCell<Option<Ahead>>>;

type WeakSlot = Weak<RefCell<Option<Ahead>>>;

/// One stretch of a segment being read (or read) ahead of its reader.
pub struct Ahead {
    /// Base offset of the segment read.
    pub segment: Offset,
    /// File position of the stretch's first byte.
    pub position: u64,
    /// The offset a sequential reader asks for next: served only to it.
    pub next: Offset,
    /// The read; dropping it cancels a read still in flight.
    pub task: glommio::Task<std::io::Result<Bytes>>,
    _reserved: Reservation,
    id: u64,
}

/// The shard's read-ahead budget and the order read-aheads were issued in.
pub struct ReadAheads {
    bytes_max: usize,
    used: Cell<usize>,
    live: Cell<usize>,
    next_id: Cell<u64>,
    /// Slots in the order their read-aheads were issued, with the id issued.
    order: RefCell<VecDeque<(WeakSlot, u64)>>,
}

impl ReadAheads {
    pub fn new(bytes_max: usize) -> Rc<ReadAheads> {
        Rc::new(ReadAheads {
            bytes_max,
            used: Cell::new(0),
            live: Cell::new(0),
            next_id: Cell::new(0),
            order: RefCell::new(VecDeque::new()),
        })
    }

    /// Bytes held by read-aheads on this shard (issued or complete).
    pub fn used_bytes(&self) -> usize {
        self.used.get()
    }

    /// Puts a stretch of `len` bytes into `slot` (replacing what was there),
    /// dropping the shard's oldest read-aheads while over budget. `start`
    /// issues the read; it is not called when `len` exceeds the whole budget.
    pub fn issue(
        self: &Rc<Self>,
        slot: &Slot,
        len: usize,
        segment: Offset,
        position: u64,
        next: Offset,
        start: impl FnOnce() -> glommio::Task<std::io::Result<Bytes>>,
    ) {
        if len > self.bytes_max {
            return;
        }
        // The slot's own previous read-ahead goes first.
        drop(slot.borrow_mut().take());
        while self.used.get() + len > self.bytes_max {
            let Some((weak, id)) = self.order.borrow_mut().pop_front() else { break };
            if let Some(other) = weak.upgrade() {
                let stale = other.borrow().as_ref().is_some_and(|a| a.id == id);
                if stale {
                    drop(other.borrow_mut().take());
                }
            }
        }
        assert!(self.used.get() + len <= self.bytes_max, "read-ahead budget accounting");
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let reserved = Reservation::new(self, len);
        *slot.borrow_mut() =
            Some(Ahead { segment, position, next, task: start(), _reserved: reserved, id });
        let mut order = self.order.borrow_mut();
        order.push_back((Rc::downgrade(slot), id));
        // Entries of read-aheads already used or replaced are skipped when
        // they reach the front; compact so they cannot pile up behind a
        // long-lived one.
        if order.len() > 64 + 2 * self.live.get() {
            order.retain(|(w, id)| {
                w.upgrade().is_some_and(|s| s.borrow().as_ref().is_some_and(|a| a.id == *id))
            });
        }
    }
}

/// Bytes of the budget held by one read-ahead; released when it is dropped.
struct Reservation {
    owner: Rc<ReadAheads>,
    bytes: usize,
}

impl Reservation {
    fn new(owner: &Rc<ReadAheads>, bytes: usize) -> Reservation {
        owner.used.set(owner.used.get() + bytes);
        owner.live.set(owner.live.get() + 1);
        Reservation { owner: owner.clone(), bytes }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.owner.used.set(self.owner.used.get() - self.bytes);
        self.owner.live.set(self.owner.live.get() - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(len: usize) -> impl FnOnce() -> glommio::Task<std::io::Result<Bytes>> {
        move || glommio::spawn_local(async move { Ok(Bytes::from(vec![7u8; len])) })
    }

    #[test]
    fn budget_drops_the_oldest_and_a_used_read_ahead_frees_its_bytes() {
        crate::rt::run_local(async {
            let ra = ReadAheads::new(3 << 20);
            let slots: Vec<Slot> = (0..4).map(|_| Rc::new(RefCell::new(None))).collect();
            for (i, s) in slots.iter().take(3).enumerate() {
                ra.issue(s, 1 << 20, Offset(0), 0, Offset(i as i64), ready(1 << 20));
            }
            assert_eq!(ra.used_bytes(), 3 << 20);
            // A fourth reader: the oldest (slot 0) gives way.
            ra.issue(&slots[3], 1 << 20, Offset(0), 0, Offset(3), ready(1 << 20));
            assert!(slots[0].borrow().is_none());
            assert!(slots.iter().skip(1).all(|s| s.borrow().is_some()));
            assert_eq!(ra.used_bytes(), 3 << 20);
            // Using one hands its bytes back.
            let ahead = slots[2].borrow_mut().take().unwrap();
            assert_eq!(ahead.next, Offset(2));
            let Ahead { task, _reserved, .. } = ahead;
            drop(_reserved);
            assert_eq!(ra.used_bytes(), 2 << 20);
            assert_eq!(task.await.unwrap().len(), 1 << 20);
            // Replacing a slot's read-ahead does not count it twice.
            ra.issue(&slots[1], 1 << 20, Offset(0), 0, Offset(9), ready(1 << 20));
            assert_eq!(ra.used_bytes(), 2 << 20);
            // Larger than the whole budget: not issued.
            ra.issue(&slots[0], 4 << 20, Offset(0), 0, Offset(0), ready(4 << 20));
            assert!(slots[0].borrow().is_none());
            // Many issues on one slot leave the order bounded.
            for i in 0..1000 {
                ra.issue(&slots[3], 1 << 10, Offset(0), 0, Offset(i), ready(1 << 10));
            }
            assert!(ra.order.borrow().len() <= 64 + 2 * ra.live.get() + 1);
        });
    }
}
