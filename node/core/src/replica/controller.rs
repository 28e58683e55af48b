//! A small sans-IO controller core for partition leadership: node
//! sessions, leader election from the ISR, AlterPartition, and the
//! LeaderAndIsr notifications that follow. Enough to drive the replica
//! simulation; the real controller (`controller/`, Raft-replicated) is to
//! adopt it. It behaves like Kafka's KRaft `ReplicationControlManager`:
//!
//! - a node is live while it heartbeats within the session timeout; when
//!   its session expires (or it registers again after a restart: a
//!   "bounced" broker) it is fenced: it leaves every ISR it is in (except as
//!   the last member, which stays so the partition can come back clean),
//!   and partitions it led get a new leader from the live ISR members;
//! - with no live ISR member the partition has no leader, unless the
//!   unclean election is enabled, which then picks any live replica and
//!   makes it the whole ISR (and loses whatever the others had);
//! - every leader change bumps the leader epoch and the partition epoch;
//!   every ISR change bumps the partition epoch;
//! - AlterPartition is checked against the leader, the leader epoch, the
//!   partition epoch and the registration of joining members.

use std::collections::{BTreeMap, VecDeque};

use weir_proto::{LeaderEpoch, NodeId, PartitionId};

use super::{AlterPartitionError, AlterPartitionRequest, PartitionEpoch, PartitionState};

/// Controller settings. Plain value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerConfig {
    /// `broker.session.timeout.ms`.
    pub session_timeout_ms: i64,
    /// `unclean.leader.election.enable` (off by default, as in Kafka).
    pub unclean_leader_election: bool,
}

/// The controller's answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeartbeatAnswer {
    /// Still registered; here is the state of every partition the node
    /// replicates (it re-applies them, which repairs lost notifications).
    Alive(Vec<PartitionState>),
    /// Not registered (session expired, or a newer registration): register again.
    Fenced,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Session {
    /// The node process's id for itself, new on every start.
    incarnation: u64,
    /// The controller's id for this registration (Kafka's broker epoch).
    broker_epoch: i64,
    last_heartbeat_ms: i64,
    fenced: bool,
}

/// The leadership part of the controller's state machine.
///
/// Owned by the controller's single state-machine task (in the real
/// controller, applied from the Raft log in order); no concurrent use.
/// Lifecycle: `new`, then `create_partition` and the `handle_*` calls;
/// notifications for replicas are drained with `poll_notification`.
#[derive(Debug, Clone)]
pub struct ControllerCore {
    config: ControllerConfig,
    sessions: BTreeMap<NodeId, Session>,
    partitions: BTreeMap<PartitionId, PartitionState>,
    next_broker_epoch: i64,
    notifications: VecDeque<PartitionState>,
}

impl ControllerCore {
    pub fn new(config: ControllerConfig) -> ControllerCore {
        assert!(config.session_timeout_ms > 0);
        ControllerCore {
            config,
            sessions: BTreeMap::new(),
            partitions: BTreeMap::new(),
            next_broker_epoch: 1,
            notifications: VecDeque::new(),
        }
    }

    /// A new partition with an empty log on every replica, so all of them
    /// are in sync; the first live one in `replicas` leads.
    pub fn create_partition(&mut self, partition: PartitionId, replicas: Vec<NodeId>) {
        assert!(!replicas.is_empty() && !self.partitions.contains_key(&partition));
        let state = PartitionState {
            partition,
            leader: None,
            leader_epoch: LeaderEpoch(0),
            partition_epoch: PartitionEpoch(0),
            isr: replicas.clone(),
            replicas,
        };
        self.partitions.insert(partition, state);
        self.elect(partition, None);
    }

    pub fn partition(&self, partition: PartitionId) -> Option<&PartitionState> {
        self.partitions.get(&partition)
    }

    pub fn is_live(&self, node: NodeId) -> bool {
        self.sessions.get(&node).is_some_and(|s| !s.fenced)
    }

    /// The next state to send to every replica of its partition.
    pub fn poll_notification(&mut self) -> Option<PartitionState> {
        self.notifications.pop_front()
    }

    /// A node (re)starts, or re-registers after being fenced. Returns its
    /// broker epoch. A repeat of the current registration returns the same
    /// one; a new incarnation of a live node first fences the old one.
    pub fn handle_register(&mut self, node: NodeId, incarnation: u64, now_ms: i64) -> i64 {
        match self.sessions.get_mut(&node) {
            Some(s) if !s.fenced && s.incarnation == incarnation => {
                s.last_heartbeat_ms = now_ms;
                return s.broker_epoch;
            }
            Some(s) if !s.fenced => self.fence(node),
            _ => {}
        }
        let broker_epoch = self.next_broker_epoch;
        self.next_broker_epoch += 1;
        let session =
            Session { incarnation, broker_epoch, last_heartbeat_ms: now_ms, fenced: false };
        self.sessions.insert(node, session);
        // Leaderless partitions may now have an eligible leader.
        let leaderless: Vec<PartitionId> = self
            .partitions
            .values()
            .filter(|p| p.leader.is_none() && p.replicas.contains(&node))
            .map(|p| p.partition)
            .collect();
        for partition in leaderless {
            self.elect(partition, None);
        }
        broker_epoch
    }

    pub fn handle_heartbeat(
        &mut self,
        node: NodeId,
        broker_epoch: i64,
        now_ms: i64,
    ) -> HeartbeatAnswer {
        match self.sessions.get_mut(&node) {
            Some(s) if !s.fenced && s.broker_epoch == broker_epoch => {
                s.last_heartbeat_ms = now_ms;
                let states = self
                    .partitions
                    .values()
                    .filter(|p| p.replicas.contains(&node))
                    .cloned()
                    .collect();
                HeartbeatAnswer::Alive(states)
            }
            _ => HeartbeatAnswer::Fenced,
        }
    }

    /// Expires sessions.
    pub fn handle_tick(&mut self, now_ms: i64) {
        let expired: Vec<NodeId> = self
            .sessions
            .iter()
            .filter(|(_, s)| {
                !s.fenced && now_ms - s.last_heartbeat_ms > self.config.session_timeout_ms
            })
            .map(|(&n, _)| n)
            .collect();
        for node in expired {
            self.fence(node);
        }
    }

    /// A leader asks to change its ISR.
    pub fn handle_alter_partition(
        &mut self,
        request: &AlterPartitionRequest,
    ) -> Result<PartitionState, AlterPartitionError> {
        let Some(p) = self.partitions.get(&request.partition) else {
            return Err(AlterPartitionError::UnknownPartition);
        };
        if p.leader != Some(request.leader) || p.leader_epoch != request.leader_epoch {
            return Err(AlterPartitionError::FencedLeaderEpoch);
        }
        let new_isr: Vec<NodeId> = request.new_isr.iter().map(|m| m.node).collect();
        if request.partition_epoch != p.partition_epoch {
            // A resend of a request that was applied: answer the same.
            return if same_members(&new_isr, &p.isr) {
                Ok(p.clone())
            } else {
                Err(AlterPartitionError::InvalidUpdateVersion)
            };
        }
        let distinct = new_isr.iter().all(|n| new_isr.iter().filter(|m| *m == n).count() == 1);
        if !new_isr.contains(&request.leader)
            || !distinct
            || !new_isr.iter().all(|n| p.replicas.contains(n))
        {
            return Err(AlterPartitionError::InvalidRequest);
        }
        for m in &request.new_isr {
            if p.isr.contains(&m.node) {
                continue;
            }
            let eligible = self
                .sessions
                .get(&m.node)
                .is_some_and(|s| !s.fenced && s.broker_epoch == m.broker_epoch);
            if !eligible {
                return Err(AlterPartitionError::IneligibleReplica);
            }
        }
        let p = self.partitions.get_mut(&request.partition).expect("checked above");
        p.isr = new_isr;
        p.partition_epoch.0 += 1;
        self.notifications.push_back(p.clone());
        Ok(p.clone())
    }

    /// Fences a node: out of every ISR (unless it is the last member),
    /// leaderships moved.
    fn fence(&mut self, node: NodeId) {
        let s = self.sessions.get_mut(&node).expect("fencing a known node");
        s.fenced = true;
        let affected: Vec<PartitionId> = self
            .partitions
            .values()
            .filter(|p| p.replicas.contains(&node))
            .map(|p| p.partition)
            .collect();
        for partition in affected {
            let p = self.partitions.get_mut(&partition).expect("listed above");
            if p.leader == Some(node) {
                self.elect(partition, Some(node));
            } else if p.isr.contains(&node) && p.isr.len() > 1 {
                p.isr.retain(|&r| r != node);
                p.partition_epoch.0 += 1;
                self.notifications.push_back(p.clone());
            }
        }
    }

    /// Elects a leader for `partition`, without `failed` (its old leader, if
    /// it just failed). Emits the new state if anything changed.
    fn elect(&mut self, partition: PartitionId, failed: Option<NodeId>) {
        let sessions = &self.sessions;
        let live = |n: &NodeId| Some(*n) != failed && sessions.get(n).is_some_and(|s| !s.fenced);
        let p = self.partitions.get_mut(&partition).expect("known partition");
        let clean = p.replicas.iter().copied().find(|r| p.isr.contains(r) && live(r));
        let (leader, isr) = match clean {
            Some(leader) => {
                let mut isr = p.isr.clone();
                isr.retain(|r| Some(*r) != failed);
                (Some(leader), isr)
            }
            None => match p.replicas.iter().copied().find(|r| live(r)) {
                Some(leader) if self.config.unclean_leader_election => (Some(leader), vec![leader]),
                _ => {
                    // Keep the last ISR member(s): only they may lead again.
                    let mut isr = p.isr.clone();
                    if isr.len() > 1 {
                        isr.retain(|r| Some(*r) != failed);
                    }
                    (None, isr)
                }
            },
        };
        if leader == p.leader && isr == p.isr {
            return;
        }
        if leader != p.leader {
            p.leader_epoch.0 += 1;
        }
        p.leader = leader;
        p.isr = isr;
        p.partition_epoch.0 += 1;
        self.notifications.push_back(p.clone());
    }
}

fn same_members(a: &[NodeId], b: &[NodeId]) -> bool {
    a.len() == b.len() && a.iter().all(|n| b.contains(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::IsrMember;

    fn nodes() -> Vec<NodeId> {
        vec![NodeId(1), NodeId(2), NodeId(3)]
    }

    fn controller(unclean: bool) -> ControllerCore {
        let mut c = ControllerCore::new(ControllerConfig {
            session_timeout_ms: 100,
            unclean_leader_election: unclean,
        });
        for (i, n) in nodes().into_iter().enumerate() {
            c.handle_register(n, 7, i as i64);
        }
        c.create_partition(PartitionId(0), nodes());
        c
    }

    fn state(c: &ControllerCore) -> PartitionState {
        c.partition(PartitionId(0)).unwrap().clone()
    }

    fn keep_alive(c: &mut ControllerCore, alive: &[i32], now: i64) {
        for &n in alive {
            let epoch = c.sessions[&NodeId(n)].broker_epoch;
            assert!(matches!(c.handle_heartbeat(NodeId(n), epoch, now), HeartbeatAnswer::Alive(_)));
        }
        c.handle_tick(now);
    }

    #[test]
    fn leader_failure_elects_from_the_isr_and_bumps_epochs() {
        let mut c = controller(false);
        let s0 = state(&c);
        assert_eq!((s0.leader, s0.leader_epoch), (Some(NodeId(1)), LeaderEpoch(1)));
        keep_alive(&mut c, &[2, 3], 150);
        let s1 = state(&c);
        assert_eq!(s1.leader, Some(NodeId(2)));
        assert_eq!(s1.leader_epoch, LeaderEpoch(2));
        assert_eq!(s1.isr, vec![NodeId(2), NodeId(3)]);
        assert!(s1.partition_epoch > s0.partition_epoch);
    }

    #[test]
    fn no_unclean_election_by_default() {
        let mut c = controller(false);
        // Shrink the ISR to {1}: 3 is behind.
        let s = state(&c);
        let req = AlterPartitionRequest {
            partition: PartitionId(0),
            leader: NodeId(1),
            request_id: 0,
            leader_epoch: s.leader_epoch,
            partition_epoch: s.partition_epoch,
            new_isr: vec![IsrMember { node: NodeId(1), broker_epoch: -1 }],
        };
        c.handle_alter_partition(&req).unwrap();
        keep_alive(&mut c, &[2, 3], 150);
        let s = state(&c);
        assert_eq!((s.leader, s.isr.clone()), (None, vec![NodeId(1)]));
        // The same with the unclean election enabled picks 2 and loses 1's data.
        let mut u = controller(true);
        u.handle_alter_partition(&req).unwrap();
        keep_alive(&mut u, &[2, 3], 150);
        let s = state(&u);
        assert_eq!((s.leader, s.isr), (Some(NodeId(2)), vec![NodeId(2)]));
        // 1 comes back: it is the last ISR member, so it leads again.
        c.handle_register(NodeId(1), 8, 200);
        assert_eq!(state(&c).leader, Some(NodeId(1)));
    }

    #[test]
    fn alter_partition_is_fenced_by_epochs_and_registrations() {
        let mut c = controller(false);
        let s = state(&c);
        let shrink = AlterPartitionRequest {
            partition: PartitionId(0),
            leader: NodeId(1),
            request_id: 0,
            leader_epoch: s.leader_epoch,
            partition_epoch: s.partition_epoch,
            new_isr: vec![
                IsrMember { node: NodeId(1), broker_epoch: -1 },
                IsrMember { node: NodeId(2), broker_epoch: -1 },
            ],
        };
        let after = c.handle_alter_partition(&shrink).unwrap();
        assert_eq!(after.isr, vec![NodeId(1), NodeId(2)]);
        // A duplicate is answered idempotently.
        assert_eq!(c.handle_alter_partition(&shrink), Ok(after.clone()));
        let mut stale = shrink.clone();
        stale.new_isr.pop();
        assert_eq!(
            c.handle_alter_partition(&stale),
            Err(AlterPartitionError::InvalidUpdateVersion)
        );
        let mut old_epoch = shrink.clone();
        old_epoch.leader_epoch = LeaderEpoch(0);
        assert_eq!(
            c.handle_alter_partition(&old_epoch),
            Err(AlterPartitionError::FencedLeaderEpoch)
        );
        // Node 3 restarted (new registration) since the leader saw it fetch.
        let old_broker_epoch = c.sessions[&NodeId(3)].broker_epoch;
        c.handle_register(NodeId(3), 8, 10);
        let mut expand = shrink.clone();
        expand.partition_epoch = after.partition_epoch;
        expand.new_isr.push(IsrMember { node: NodeId(3), broker_epoch: old_broker_epoch });
        assert_eq!(c.handle_alter_partition(&expand), Err(AlterPartitionError::IneligibleReplica));
        expand.new_isr[2].broker_epoch = c.sessions[&NodeId(3)].broker_epoch;
        assert_eq!(c.handle_alter_partition(&expand).unwrap().isr.len(), 3);
    }
}
