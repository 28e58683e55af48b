//! Keyed deadlines. Setting a key again moves its deadline; firing pops it.

use std::collections::{BTreeSet, HashMap};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum TimerKey {
    /// The group's join phase ends (rebalance timeout or initial delay).
    Join(String),
    /// A member's session expires (group, member).
    Heartbeat(String, String),
    /// A member id handed out with MEMBER_ID_REQUIRED expires unused.
    PendingMember(String, String),
    /// Members that did not SyncGroup after a join are dropped.
    PendingSync(String),
}

#[derive(Debug, Default)]
pub(crate) struct Timers {
    deadlines: HashMap<TimerKey, i64>,
    queue: BTreeSet<(i64, TimerKey)>,
}

impl Timers {
    pub(crate) fn set(&mut self, key: TimerKey, at_ms: i64) {
        if let Some(old) = self.deadlines.insert(key.clone(), at_ms) {
            self.queue.remove(&(old, key.clone()));
        }
        self.queue.insert((at_ms, key));
    }

    pub(crate) fn cancel(&mut self, key: &TimerKey) {
        if let Some(old) = self.deadlines.remove(key) {
            self.queue.remove(&(old, key.clone()));
        }
    }

    pub(crate) fn next_ms(&self) -> Option<i64> {
        self.queue.first().map(|(at, _)| *at)
    }

    pub(crate) fn pop_due(&mut self, now_ms: i64) -> Option<TimerKey> {
        let (at, _) = self.queue.first()?;
        if *at > now_ms {
            return None;
        }
        let (_, key) = self.queue.pop_first()?;
        self.deadlines.remove(&key);
        Some(key)
    }

    pub(crate) fn clear(&mut self) {
        self.deadlines.clear();
        self.queue.clear();
    }
}
