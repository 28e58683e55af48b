//! Automatic preferred-leader rebalancing, as Kafka's
//! `auto.leader.rebalance.enable`: every `leader_imbalance_check_interval_ms`
//! the active controller looks, for each node, at the partitions whose
//! preferred replica (the first of `replicas`) it is. When more than
//! `leader_imbalance_per_node_percentage` percent of them are led by another
//! node (or by none), it elects the preferred replica of each of those where
//! that replica is live (registered, unfenced, not shutting down) and in
//! the ISR: a preferred [`Command::ElectLeaders`], submitted like any
//! command, exactly what `weir elect-leaders --preferred` asks for.
//!
//! Leadership drifts away from the preferred replicas whenever a node
//! restarts or is fenced; without this, the nodes that stayed up keep
//! leading those partitions (and serving their produce and fetch traffic)
//! until an operator moves them back.
//!
//! Partitions under reassignment are left alone: their replica order is the
//! target's, and completing the move elects from the target anyway.
//!
//! Sans-IO: the decision is a function of the image, time is a parameter.
//! Owned by the shell that runs the state machine (the single-member
//! controller thread, or the Raft leader's tick task); like node sessions,
//! it is not metadata and a newly active controller starts its interval anew.
//!
//! ```text
//!   every ~100 ms: tick(image, now) ──▶ Some(ElectLeaders { Preferred }) ──▶ submitted
//!                  (once per interval, only when some node is over the threshold)
//! ```

use std::collections::BTreeMap;

use weir_proto::ids::{NodeId, PartitionId};

use crate::state::{Command, ElectionType, MetadataImage, PartitionMeta};

/// Kafka's `leader.imbalance.check.interval.seconds` default (300 s).
pub const LEADER_IMBALANCE_CHECK_INTERVAL_MS_DEFAULT: u64 = 300_000;
/// Kafka's `leader.imbalance.per.broker.percentage` default.
pub const LEADER_IMBALANCE_PER_NODE_PERCENTAGE_DEFAULT: u32 = 10;

/// When and how eagerly leadership is moved back to preferred replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RebalanceOptions {
    /// Kafka's `auto.leader.rebalance.enable`.
    pub enable: bool,
    /// Time between two checks; 0 is treated as 1.
    pub check_interval_ms: u64,
    /// A node's share (in percent) of the partitions it is preferred for but
    /// does not lead, above which they are moved back to it.
    pub per_node_percentage: u32,
}

impl Default for RebalanceOptions {
    fn default() -> Self {
        RebalanceOptions {
            enable: true,
            check_interval_ms: LEADER_IMBALANCE_CHECK_INTERVAL_MS_DEFAULT,
            per_node_percentage: LEADER_IMBALANCE_PER_NODE_PERCENTAGE_DEFAULT,
        }
    }
}

/// The partitions whose preferred replica should lead again: of each node
/// whose imbalance (partitions it is preferred for but does not lead, over
/// all it is preferred for) exceeds `per_node_percentage` percent, those it
/// may lead now (live and in the ISR) and that are not being reassigned.
/// By node, then topic and partition.
pub fn imbalanced_partitions(
    image: &MetadataImage,
    per_node_percentage: u32,
) -> Vec<(String, PartitionId)> {
    /// Of one preferred node: partitions it is preferred for, those it does not lead.
    type Preferred<'a> = (u64, Vec<(&'a str, &'a PartitionMeta)>);
    let mut by_node: BTreeMap<NodeId, Preferred<'_>> = BTreeMap::new();
    for t in image.topics.values() {
        for p in &t.partitions {
            let Some(&preferred) = p.replicas.first() else { continue };
            let (total, not_led) = by_node.entry(preferred).or_default();
            *total += 1;
            if p.leader != preferred {
                not_led.push((&t.name, p));
            }
        }
    }
    let mut out = Vec::new();
    for (node, (total, not_led)) in by_node {
        // Kafka's test, in integers: not_led / total > percentage / 100.
        if not_led.len() as u64 * 100 <= u64::from(per_node_percentage) * total {
            continue;
        }
        if !image.is_eligible(node) {
            continue;
        }
        out.extend(
            not_led
                .into_iter()
                .filter(|(_, p)| !p.is_reassigning() && p.isr.contains(&node))
                .map(|(topic, p)| (topic.to_string(), p.partition)),
        );
    }
    out
}

/// The rebalancing timer of the active controller.
#[derive(Clone, Debug)]
pub struct LeaderRebalancer {
    options: RebalanceOptions,
    next_check_ms: u64,
}

impl LeaderRebalancer {
    /// A rebalancer whose first check is one interval after time 0 of the
    /// shell's clock; [`LeaderRebalancer::reset`] when becoming active.
    pub fn new(options: RebalanceOptions) -> LeaderRebalancer {
        let options =
            RebalanceOptions { check_interval_ms: options.check_interval_ms.max(1), ..options };
        LeaderRebalancer { options, next_check_ms: options.check_interval_ms }
    }

    pub fn options(&self) -> RebalanceOptions {
        self.options
    }

    /// Becoming the active controller: the first check is one interval from
    /// now (as in Kafka, nodes that just came back get time to catch up).
    pub fn reset(&mut self, now_ms: u64) {
        self.next_check_ms = now_ms.saturating_add(self.options.check_interval_ms);
    }

    /// The preferred election to submit, when a check is due and finds
    /// partitions to move back.
    pub fn tick(&mut self, image: &MetadataImage, now_ms: u64) -> Option<Command> {
        if !self.options.enable || now_ms < self.next_check_ms {
            return None;
        }
        self.next_check_ms = now_ms.saturating_add(self.options.check_interval_ms);
        let partitions = imbalanced_partitions(image, self.options.per_node_percentage);
        (!partitions.is_empty()).then_some(Command::ElectLeaders {
            partitions: Some(partitions),
            election: ElectionType::Preferred,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leadership::tests::{alter, assigned, epoch, exec, fence, heartbeat, part, setup};
    use crate::state::CommandResult;

    fn names(list: &[(String, PartitionId)]) -> Vec<String> {
        list.iter().map(|(t, p)| format!("{t}-{}", p.0)).collect()
    }

    /// Node 1 prefers 4 partitions of "t" and 1 of "o"; it is fenced and
    /// comes back: node 2 leads what it preferred.
    fn drifted() -> (crate::state::StateMachine, crate::leadership::tests::Ids) {
        let (mut sm, mut ids) = setup(3);
        let layout: &[&[i32]] = &[&[1, 2], &[1, 2], &[1, 2], &[1, 2], &[2, 1], &[3, 1]];
        exec(&mut sm, &mut ids, assigned("t", layout, &[])).unwrap();
        exec(&mut sm, &mut ids, assigned("o", &[&[1, 3], &[2, 3]], &[])).unwrap();
        fence(&mut sm, &mut ids, 1);
        heartbeat(&mut sm, &mut ids, 1, false).unwrap();
        (sm, ids)
    }

    /// The leader of `topic-p` adds node `n` back to the ISR.
    fn rejoin(
        sm: &mut crate::state::StateMachine,
        ids: &mut crate::leadership::tests::Ids,
        topic: &str,
        p: i32,
        n: i32,
    ) {
        let before = part(sm, topic, p);
        let mut isr: Vec<(i32, i64)> = before.isr.iter().map(|m| (m.0, -1)).collect();
        isr.push((n, epoch(sm, n)));
        exec(sm, ids, alter(&before, topic, &isr)).unwrap();
    }

    #[test]
    fn only_nodes_over_the_threshold_with_their_replica_in_sync_get_leadership_back() {
        let (mut sm, mut ids) = drifted();
        // Node 1 leads none of its 5 partitions, but is in no ISR yet.
        assert!(imbalanced_partitions(sm.image(), 10).is_empty());
        for p in [0, 1, 3] {
            rejoin(&mut sm, &mut ids, "t", p, 1);
        }
        rejoin(&mut sm, &mut ids, "o", 0, 1);
        // 5 of 5 not led (100% > 10%): the 4 in sync move back; t-2 waits.
        assert_eq!(names(&imbalanced_partitions(sm.image(), 10)), ["o-0", "t-0", "t-1", "t-3"]);
        // The threshold is strict: 100% is not above 100%.
        assert!(imbalanced_partitions(sm.image(), 100).is_empty());
        assert_eq!(imbalanced_partitions(sm.image(), 99).len(), 4);
        // Node 2 prefers t-4 and o-1 and leads both; node 3 leads t-5.
        // A node that may not lead is left out.
        heartbeat(&mut sm, &mut ids, 1, true).unwrap();
        assert!(imbalanced_partitions(sm.image(), 10).is_empty());
    }

    #[test]
    fn partitions_under_reassignment_are_left_alone() {
        let (mut sm, mut ids) = drifted();
        rejoin(&mut sm, &mut ids, "t", 0, 1);
        let moving = Command::AlterPartitionReassignments {
            partitions: vec![(
                "t".into(),
                PartitionId(0),
                Some(vec![NodeId(1), NodeId(2), NodeId(3)]),
            )],
        };
        exec(&mut sm, &mut ids, moving).unwrap();
        assert!(part(&sm, "t", 0).is_reassigning());
        assert!(imbalanced_partitions(sm.image(), 10).is_empty());
    }

    #[test]
    fn the_timer_submits_a_preferred_election_once_per_interval() {
        let (mut sm, mut ids) = drifted();
        for p in [0, 1, 2, 3] {
            rejoin(&mut sm, &mut ids, "t", p, 1);
        }
        let options =
            RebalanceOptions { enable: true, check_interval_ms: 1000, per_node_percentage: 10 };
        let mut r = LeaderRebalancer::new(options);
        r.reset(5000);
        assert_eq!(r.tick(sm.image(), 5999), None, "not due");
        let cmd = r.tick(sm.image(), 6000).expect("due and imbalanced");
        assert_eq!(r.tick(sm.image(), 6001), None, "once per interval");

        // The command moves leadership back.
        let CommandResult::LeadersElected { results } = exec(&mut sm, &mut ids, cmd).unwrap()
        else {
            panic!()
        };
        assert!(results.iter().all(|r| r.error_code == 0), "{results:?}");
        assert_eq!(results.len(), 4);
        for p in 0..4 {
            assert_eq!(part(&sm, "t", p).leader, NodeId(1));
        }
        // 1 of 5 (o-0, not in sync) left: 20% > 10%, but nothing can move.
        assert_eq!(r.tick(sm.image(), 7000), None);

        // Disabled: never.
        let mut off = LeaderRebalancer::new(RebalanceOptions { enable: false, ..options });
        off.reset(0);
        fence(&mut sm, &mut ids, 1);
        heartbeat(&mut sm, &mut ids, 1, false).unwrap();
        rejoin(&mut sm, &mut ids, "t", 0, 1);
        assert_eq!(off.tick(sm.image(), 1_000_000), None);
        assert!(LeaderRebalancer::new(options).tick(sm.image(), 1_000_000).is_some());
    }
}
