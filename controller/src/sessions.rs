//! Node sessions on the active controller: when each registered, unfenced
//! node last heartbeat. Sans-IO: time is a parameter (`now_ms`, any
//! monotonic millisecond clock the shell keeps).
//!
//! Heartbeat times are not metadata: they are kept in memory by the active
//! controller only, never in the log (a heartbeat that changes nothing
//! writes no record). A controller that becomes active [`Sessions::reset`]s,
//! granting every node a full session, as Kafka's new active controller does:
//! it cannot know when a node last heartbeat to its predecessor.
//!
//! ```text
//!   Heartbeat / RegisterNode answered Ok ──observe()──▶ Sessions
//!   every ~100 ms: tick(registrations, now) ──▶ [FenceNode] ──▶ submitted like any command
//! ```
//!
//! Owned by the shell that runs the state machine (the single-member
//! controller thread, or a Raft member behind a mutex); not shared otherwise.

use std::collections::BTreeMap;

use weir_proto::ids::NodeId;

use crate::state::{Command, CommandResult, Registration};

/// Kafka's `broker.session.timeout.ms` default.
pub const NODE_SESSION_TIMEOUT_MS_DEFAULT: u64 = 9000;
/// How often the shells look for expired sessions.
pub const SESSION_TICK_MS: u64 = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Session {
    broker_epoch: i64,
    last_heartbeat_ms: u64,
}

/// The session of every registered, unfenced node.
#[derive(Clone, Debug)]
pub struct Sessions {
    timeout_ms: u64,
    sessions: BTreeMap<NodeId, Session>,
}

impl Sessions {
    pub fn new(timeout_ms: u64) -> Sessions {
        assert!(timeout_ms > 0, "a session timeout of 0 would fence every node at once");
        Sessions { timeout_ms, sessions: BTreeMap::new() }
    }

    pub fn timeout_ms(&self) -> u64 {
        self.timeout_ms
    }

    /// Becoming the active controller: every unfenced node gets a full
    /// session from `now_ms`.
    pub fn reset(&mut self, registrations: &BTreeMap<NodeId, Registration>, now_ms: u64) {
        self.sessions.clear();
        self.sync(registrations, now_ms);
    }

    /// A heartbeat (or registration) that the controller accepted.
    pub fn handle_heartbeat(&mut self, node: NodeId, broker_epoch: i64, now_ms: u64) {
        let s = self.sessions.entry(node).or_insert(Session { broker_epoch, last_heartbeat_ms: 0 });
        s.broker_epoch = broker_epoch;
        s.last_heartbeat_ms = s.last_heartbeat_ms.max(now_ms);
    }

    /// What a command's successful answer tells about sessions.
    pub fn observe(&mut self, cmd: &Command, result: &CommandResult, now_ms: u64) {
        match (cmd, result) {
            (Command::Heartbeat { node, broker_epoch, .. }, CommandResult::HeartbeatAck { .. }) => {
                self.handle_heartbeat(*node, *broker_epoch, now_ms);
            }
            (Command::RegisterNode(info), CommandResult::NodeRegistered { broker_epoch, .. }) => {
                self.handle_heartbeat(info.id, *broker_epoch, now_ms);
            }
            _ => {}
        }
    }

    /// Follows the registrations: fenced and unknown nodes are dropped; an
    /// unfenced node not tracked yet, or with a new broker epoch, gets a full
    /// session from `now_ms`.
    pub fn sync(&mut self, registrations: &BTreeMap<NodeId, Registration>, now_ms: u64) {
        self.sessions.retain(|n, s| {
            registrations.get(n).is_some_and(|r| !r.fenced && r.broker_epoch == s.broker_epoch)
        });
        for (node, r) in registrations {
            if !r.fenced {
                self.sessions
                    .entry(*node)
                    .or_insert(Session { broker_epoch: r.broker_epoch, last_heartbeat_ms: now_ms });
            }
        }
    }

    /// Nodes whose session has expired, with the broker epoch to fence.
    pub fn expired(&self, now_ms: u64) -> Vec<(NodeId, i64)> {
        self.sessions
            .iter()
            .filter(|(_, s)| now_ms.saturating_sub(s.last_heartbeat_ms) > self.timeout_ms)
            .map(|(n, s)| (*n, s.broker_epoch))
            .collect()
    }

    /// [`Sessions::sync`], then a `FenceNode` for every expired session.
    pub fn tick(
        &mut self,
        registrations: &BTreeMap<NodeId, Registration>,
        now_ms: u64,
    ) -> Vec<Command> {
        self.sync(registrations, now_ms);
        self.expired(now_ms)
            .into_iter()
            .map(|(node, broker_epoch)| Command::FenceNode { node, broker_epoch })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs(list: &[(i32, i64, bool)]) -> BTreeMap<NodeId, Registration> {
        list.iter()
            .map(|&(n, e, fenced)| {
                (NodeId(n), Registration { broker_epoch: e, fenced, shutting_down: false })
            })
            .collect()
    }

    #[test]
    fn sessions_expire_without_heartbeats() {
        let mut s = Sessions::new(100);
        let r = regs(&[(1, 10, false), (2, 11, false), (3, 12, true)]);
        s.reset(&r, 0);
        // A full session for every unfenced node; the fenced one is not tracked.
        assert!(s.expired(100).is_empty());
        s.handle_heartbeat(NodeId(1), 10, 80);
        assert_eq!(s.expired(101), vec![(NodeId(2), 11)]);
        assert_eq!(s.expired(181), vec![(NodeId(1), 10), (NodeId(2), 11)]);
        // The shell fences 2; the next tick drops it.
        assert_eq!(s.tick(&regs(&[(1, 10, false), (2, 11, true)]), 150), vec![]);
        // 2 registers again with a new epoch: a full session from then.
        let r = regs(&[(1, 10, false), (2, 20, false)]);
        let register =
            Command::RegisterNode(crate::state::NodeInfo { id: NodeId(2), ..Default::default() });
        s.observe(
            &register,
            &CommandResult::NodeRegistered { cluster_id: String::new(), broker_epoch: 20 },
            160,
        );
        assert_eq!(s.tick(&r, 200), vec![Command::FenceNode { node: NodeId(1), broker_epoch: 10 }]);
        assert!(s.expired(260).iter().all(|(n, _)| *n != NodeId(2)));
        assert_eq!(s.expired(261).last(), Some(&(NodeId(2), 20)));
        // A new active controller grants everyone a full session again.
        s.reset(&r, 1000);
        assert!(s.expired(1100).is_empty());
        assert_eq!(s.expired(1101).len(), 2);
    }
}
