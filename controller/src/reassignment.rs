//! Partition reassignment (Kafka KIP-455): moving a partition's replicas to
//! a new set, which also raises or lowers its replication factor. Part of the
//! sans-IO state machine ([`crate::state`]): plans records against the
//! image, changes nothing.
//!
//! The rules are Kafka KRaft's (`ReplicationControlManager`,
//! `PartitionReassignmentReplicas`, `PartitionReassignmentRevert`):
//!
//! - a target must name at least one replica, no node twice, and only
//!   registered nodes (INVALID_REPLICA_ASSIGNMENT);
//! - starting a move to `target` from the current replicas `current`:
//!   `replicas = target ++ (current − target)`, `adding = target − current`,
//!   `removing = current − target`; the partition epoch is bumped, the
//!   leader and its epoch stay. New replicas start empty and catch up from
//!   the leader, which adds them to the ISR (AlterPartition) once they have;
//! - a move *completes* as soon as every target replica is in the ISR —
//!   checked right after it is recorded and on every ISR change:
//!   `replicas = target`, `isr = isr ∩ target`, adding and removing cleared,
//!   and a leader outside the target hands over to the first target replica
//!   in the ISR that may lead (leader epoch bumped);
//! - cancelling goes back to `replicas − adding`, with `isr ∩ those` and the
//!   leader moved if it was an added replica (NO_REASSIGNMENT_IN_PROGRESS if
//!   no move is in progress). Where none of the ISR would remain, the move
//!   is only cancelled if the topic allows unclean leader election, and then
//!   keeps every replica (Kafka's "unclean revert");
//! - a new target while a move is in progress is planned against the current
//!   (in-progress) replica set, as in Kafka's KRaft controller: nothing that
//!   may hold data is dropped before the new target is in sync. Replicas the
//!   earlier move was adding stay in `adding` while they are in the new
//!   target (so the same target sent twice changes nothing, and a cancel
//!   drops them); those it no longer names are `removing`, and a cancel
//!   keeps them, as Kafka does.
//!
//! There is no record type of its own: each step writes a `PartitionChanged`
//! carrying the whole partition state, `adding_replicas` and
//! `removing_replicas` included (they default to empty, so logs written
//! before reassignments load unchanged). Nodes follow `replicas`: a node
//! opens the partitions that name it and deletes the data of those that no
//! longer do.

use std::collections::BTreeMap;

use weir_proto::ids::{LeaderEpoch, NodeId, PartitionId};

use crate::error::ControllerError;
use crate::state::{
    CommandResult, MetadataImage, MetadataRecord, NO_LEADER, OngoingReassignment,
    PARTITIONS_PER_COMMAND_MAX, PartitionMeta, Plan, ReassignmentResult,
};

/// The record that takes a partition from `old` to `new` (whose epochs are
/// still `old`'s): the partition epoch bumped, the leader epoch too if the
/// leader changed. `None` when nothing changed.
pub(crate) fn change(
    topic: &str,
    old: &PartitionMeta,
    mut new: PartitionMeta,
) -> Option<MetadataRecord> {
    assert_eq!(
        (new.leader_epoch, new.partition_epoch),
        (old.leader_epoch, old.partition_epoch),
        "planned from the old state"
    );
    if &new == old {
        return None;
    }
    if new.leader != old.leader {
        new.leader_epoch = LeaderEpoch(old.leader_epoch.0 + 1);
    }
    new.partition_epoch = old.partition_epoch + 1;
    Some(MetadataRecord::PartitionChanged {
        topic: topic.to_string(),
        partition: new,
        unclean: false,
    })
}

/// The partition once its reassignment completes, if every target replica
/// is in the ISR now. Epochs are left as they are (see [`change`]).
pub(crate) fn completed(image: &MetadataImage, p: &PartitionMeta) -> Option<PartitionMeta> {
    if !p.is_reassigning() {
        return None;
    }
    let target = p.target_replicas();
    if !target.iter().all(|r| p.isr.contains(r)) {
        return None;
    }
    let isr: Vec<NodeId> = p.isr.iter().copied().filter(|r| target.contains(r)).collect();
    let leader =
        if target.contains(&p.leader) { p.leader } else { first_leader(image, &target, &isr) };
    Some(PartitionMeta {
        leader,
        replicas: target,
        isr,
        adding_replicas: Vec::new(),
        removing_replicas: Vec::new(),
        ..p.clone()
    })
}

/// The first of `replicas` that is in `isr` and may lead, or none (-1).
fn first_leader(image: &MetadataImage, replicas: &[NodeId], isr: &[NodeId]) -> NodeId {
    replicas.iter().copied().find(|r| isr.contains(r) && image.is_eligible(*r)).unwrap_or(NO_LEADER)
}

fn invalid(message: String) -> ControllerError {
    ControllerError::InvalidReplicaAssignment(message)
}

/// Kafka's checks of a manual assignment, with Kafka's messages.
fn check_target(image: &MetadataImage, target: &[NodeId]) -> Result<(), ControllerError> {
    if target.is_empty() {
        return Err(invalid(
            "The manual partition assignment includes an empty replica list.".into(),
        ));
    }
    for (i, r) in target.iter().enumerate() {
        if target[..i].contains(r) {
            return Err(invalid(format!(
                "The manual partition assignment includes the broker {r} more than once."
            )));
        }
        if !image.nodes.contains_key(r) {
            return Err(invalid(format!(
                "The manual partition assignment includes broker {r}, but no such broker is registered."
            )));
        }
    }
    Ok(())
}

/// Starts (or changes) the move of `p` to `target`; completes it at once
/// when the target is in sync already.
fn reassign(
    image: &MetadataImage,
    p: &PartitionMeta,
    target: &[NodeId],
) -> Result<PartitionMeta, ControllerError> {
    check_target(image, target)?;
    let current = &p.replicas;
    // New to the replica set, or added by the move in progress and not in
    // sync-and-established yet: a replica stays "adding" until it completes.
    let adding: Vec<NodeId> = target
        .iter()
        .copied()
        .filter(|r| !current.contains(r) || p.adding_replicas.contains(r))
        .collect();
    let removing: Vec<NodeId> = current.iter().copied().filter(|r| !target.contains(r)).collect();
    let started = PartitionMeta {
        replicas: target.iter().chain(&removing).copied().collect(),
        adding_replicas: adding,
        removing_replicas: removing,
        ..p.clone()
    };
    Ok(completed(image, &started).unwrap_or(started))
}

/// Cancels the move of `p`, back to the replicas before it.
fn cancel(
    image: &MetadataImage,
    topic: &str,
    p: &PartitionMeta,
) -> Result<PartitionMeta, ControllerError> {
    if !p.is_reassigning() {
        return Err(ControllerError::NoReassignmentInProgress(
            "No partition reassignment is in progress.".into(),
        ));
    }
    let original = p.original_replicas();
    let isr: Vec<NodeId> = p.isr.iter().copied().filter(|r| original.contains(r)).collect();
    let cleared =
        PartitionMeta { adding_replicas: Vec::new(), removing_replicas: Vec::new(), ..p.clone() };
    if isr.is_empty() {
        // Only added replicas are in sync: going back would leave the
        // partition without an in-sync replica.
        let unclean = image.topic_config(topic).is_some_and(|c| c.unclean_leader_election_enable);
        if !unclean {
            return Err(invalid(format!(
                "Unable to revert partition assignment for {topic}:{} because it would require an unclean leader election.",
                p.partition
            )));
        }
        return Ok(cleared);
    }
    let leader =
        if isr.contains(&p.leader) { p.leader } else { first_leader(image, &original, &isr) };
    Ok(PartitionMeta { leader, replicas: original, isr, ..cleared })
}

fn unknown(image: &MetadataImage, topic: &str, partition: PartitionId) -> ControllerError {
    let message = if image.topic(topic).is_none() {
        format!("Unable to find a topic named {topic}.")
    } else {
        format!("Unable to find partition {topic}:{partition}.")
    };
    ControllerError::UnknownTopic(message)
}

/// AlterPartitionReassignments: each entry is planned against the state the
/// entries before it left (a partition named twice is changed twice), and
/// each changed partition gets one record.
pub(crate) fn alter(
    image: &MetadataImage,
    partitions: &[(String, PartitionId, Option<Vec<NodeId>>)],
) -> Result<Plan, ControllerError> {
    if partitions.len() > PARTITIONS_PER_COMMAND_MAX as usize {
        return Err(ControllerError::InvalidRequest(format!(
            "At most {PARTITIONS_PER_COMMAND_MAX} partitions may be reassigned in one request, not {}.",
            partitions.len()
        )));
    }
    let mut planned: BTreeMap<(String, PartitionId), PartitionMeta> = BTreeMap::new();
    let mut results = Vec::with_capacity(partitions.len());
    for (topic, partition, target) in partitions {
        let key = (topic.clone(), *partition);
        let current = planned.get(&key).or_else(|| image.partition(topic, *partition)).cloned();
        let outcome = match (current, target) {
            (None, _) => Err(unknown(image, topic, *partition)),
            (Some(p), Some(target)) => reassign(image, &p, target),
            (Some(p), None) => cancel(image, topic, &p),
        };
        let (error_code, message) = match outcome {
            Ok(next) => {
                planned.insert(key, next);
                (0, None)
            }
            Err(e) => (e.kafka_code(), Some(e.message())),
        };
        results.push(ReassignmentResult {
            topic: topic.clone(),
            partition: *partition,
            error_code,
            message,
        });
    }
    let records = planned
        .into_iter()
        .filter_map(|((topic, partition), next)| {
            let old = image.partition(&topic, partition).expect("planned from the image");
            change(&topic, old, next)
        })
        .collect();
    Ok(Plan { records, result: CommandResult::PartitionReassignmentsAltered { results } })
}

/// ListPartitionReassignments: the moves in progress among `partitions`
/// (`None`: all), by topic and partition. Unknown partitions are left out,
/// as Kafka does.
pub(crate) fn list(image: &MetadataImage, partitions: Option<&[(String, PartitionId)]>) -> Plan {
    let ongoing = |topic: &str, p: &PartitionMeta| OngoingReassignment {
        topic: topic.to_string(),
        partition: p.partition,
        replicas: p.replicas.clone(),
        adding: p.adding_replicas.clone(),
        removing: p.removing_replicas.clone(),
    };
    let mut found: BTreeMap<(String, PartitionId), OngoingReassignment> = BTreeMap::new();
    match partitions {
        None => {
            for t in image.topics.values() {
                for p in t.partitions.iter().filter(|p| p.is_reassigning()) {
                    found.insert((t.name.clone(), p.partition), ongoing(&t.name, p));
                }
            }
        }
        Some(list) => {
            for (topic, partition) in list {
                if let Some(p) = image.partition(topic, *partition).filter(|p| p.is_reassigning()) {
                    found.insert((topic.clone(), *partition), ongoing(topic, p));
                }
            }
        }
    }
    Plan {
        records: Vec::new(),
        result: CommandResult::PartitionReassignments {
            reassignments: found.into_values().collect(),
        },
    }
}

#[cfg(test)]
mod tests {
    use weir_proto::ids::{LeaderEpoch, NodeId, PartitionId};

    use crate::leadership::tests::{
        Ids, alter, assigned, epoch, exec, fence, heartbeat, ns, part, setup,
    };
    use crate::state::tests::code;
    use crate::state::*;

    fn move_to(entries: &[(&str, i32, Option<&[i32]>)]) -> Command {
        Command::AlterPartitionReassignments {
            partitions: entries
                .iter()
                .map(|(t, p, r)| (t.to_string(), PartitionId(*p), r.map(ns)))
                .collect(),
        }
    }

    /// The per-partition error codes of an AlterPartitionReassignments.
    fn codes(r: CommandResult) -> Vec<i16> {
        let CommandResult::PartitionReassignmentsAltered { results } = r else { panic!("{r:?}") };
        results.iter().map(|r| r.error_code).collect()
    }

    fn reassign(sm: &mut StateMachine, ids: &mut Ids, topic: &str, p: i32, target: &[i32]) -> i16 {
        codes(exec(sm, ids, move_to(&[(topic, p, Some(target))])).unwrap())[0]
    }

    fn cancel(sm: &mut StateMachine, ids: &mut Ids, topic: &str, p: i32) -> i16 {
        codes(exec(sm, ids, move_to(&[(topic, p, None)])).unwrap())[0]
    }

    /// The leader adds `joiner` to the ISR, with its broker epoch.
    fn join(
        sm: &mut StateMachine,
        ids: &mut Ids,
        topic: &str,
        p: i32,
        joiner: i32,
    ) -> PartitionMeta {
        let before = part(sm, topic, p);
        let mut isr: Vec<(i32, i64)> = before.isr.iter().map(|n| (n.0, -1)).collect();
        isr.push((joiner, epoch(sm, joiner)));
        match exec(sm, ids, alter(&before, topic, &isr)).unwrap() {
            CommandResult::PartitionAltered { partition, .. } => partition,
            other => panic!("{other:?}"),
        }
    }

    fn ongoing(sm: &mut StateMachine, ids: &mut Ids, only: Option<&[(&str, i32)]>) -> Vec<String> {
        let cmd = Command::ListPartitionReassignments {
            partitions: only
                .map(|l| l.iter().map(|(t, p)| (t.to_string(), PartitionId(*p))).collect()),
        };
        let version = sm.image().version;
        let r = exec(sm, ids, cmd).unwrap();
        assert_eq!(sm.image().version, version, "listing writes nothing");
        let CommandResult::PartitionReassignments { reassignments } = r else { panic!("{r:?}") };
        reassignments
            .iter()
            .map(|o| {
                let ids = |v: &[NodeId]| v.iter().map(|n| n.0).collect::<Vec<_>>();
                let (r, a, d) = (ids(&o.replicas), ids(&o.adding), ids(&o.removing));
                format!("{}-{} {r:?} +{a:?} -{d:?}", o.topic, o.partition.0)
            })
            .collect()
    }

    #[test]
    fn a_move_starts_and_completes_when_the_target_is_in_sync() {
        let (mut sm, mut ids) = setup(4);
        exec(&mut sm, &mut ids, assigned("m", &[&[1, 2]], &[])).unwrap();
        let before = part(&sm, "m", 0);
        let version = sm.image().version;

        assert_eq!(reassign(&mut sm, &mut ids, "m", 0, &[2, 3, 4]), 0);
        assert_eq!(sm.image().version, version + 1, "one record");
        let started = part(&sm, "m", 0);
        assert_eq!(started.replicas, ns(&[2, 3, 4, 1]));
        assert_eq!(
            (started.adding_replicas.clone(), started.removing_replicas.clone()),
            (ns(&[3, 4]), ns(&[1]))
        );
        assert_eq!(started.target_replicas(), ns(&[2, 3, 4]));
        assert_eq!(started.original_replicas(), ns(&[2, 1]));
        assert_eq!((started.leader, started.isr.clone()), (NodeId(1), ns(&[1, 2])));
        assert_eq!(started.leader_epoch, before.leader_epoch, "the leader stays");
        assert_eq!(started.partition_epoch, before.partition_epoch + 1);
        assert_eq!(ongoing(&mut sm, &mut ids, None), ["m-0 [2, 3, 4, 1] +[3, 4] -[1]"]);

        // 3 catches up: in the ISR, the move goes on.
        let after_3 = join(&mut sm, &mut ids, "m", 0, 3);
        assert_eq!(after_3.isr, ns(&[1, 2, 3]));
        assert!(part(&sm, "m", 0).is_reassigning());

        // 4 catches up: the move completes in a record of its own, after the
        // ISR change the leader is answered with.
        let version = sm.image().version;
        let answer = join(&mut sm, &mut ids, "m", 0, 4);
        assert_eq!(sm.image().version, version + 2);
        assert_eq!(
            (answer.isr.clone(), answer.replicas.clone()),
            (ns(&[1, 2, 3, 4]), started.replicas.clone())
        );
        assert_eq!(answer.partition_epoch, after_3.partition_epoch + 1);
        let done = part(&sm, "m", 0);
        assert_eq!((done.replicas.clone(), done.isr.clone()), (ns(&[2, 3, 4]), ns(&[2, 3, 4])));
        assert!(!done.is_reassigning());
        assert_eq!(done.partition_epoch, answer.partition_epoch + 1);
        // The leader was removed: the first target replica in the ISR leads.
        assert_eq!(
            (done.leader, done.leader_epoch),
            (NodeId(2), LeaderEpoch(before.leader_epoch.0 + 1))
        );
        assert!(ongoing(&mut sm, &mut ids, None).is_empty());
    }

    #[test]
    fn replication_factor_grows_and_the_leader_stays_when_in_the_target() {
        let (mut sm, mut ids) = setup(3);
        exec(&mut sm, &mut ids, assigned("g", &[&[1]], &[])).unwrap();
        assert_eq!(reassign(&mut sm, &mut ids, "g", 0, &[1, 2, 3]), 0);
        let started = part(&sm, "g", 0);
        assert_eq!(
            (started.replicas.clone(), started.adding_replicas.clone()),
            (ns(&[1, 2, 3]), ns(&[2, 3]))
        );
        assert!(started.removing_replicas.is_empty());
        join(&mut sm, &mut ids, "g", 0, 2);
        assert!(part(&sm, "g", 0).is_reassigning());
        join(&mut sm, &mut ids, "g", 0, 3);
        let done = part(&sm, "g", 0);
        assert_eq!((done.replicas.clone(), done.isr.clone()), (ns(&[1, 2, 3]), ns(&[1, 2, 3])));
        assert!(!done.is_reassigning());
        assert_eq!((done.leader, done.leader_epoch), (NodeId(1), started.leader_epoch));
        assert_eq!(done.partition_epoch, started.partition_epoch + 3);
    }

    #[test]
    fn a_move_already_in_sync_completes_at_once() {
        let (mut sm, mut ids) = setup(3);
        exec(&mut sm, &mut ids, assigned("s", &[&[1, 2, 3], &[2, 1, 3]], &[])).unwrap();
        let version = sm.image().version;
        // Shrinking: 2 and 3 are in the ISR; 1 led, so 2 takes over.
        let r =
            exec(&mut sm, &mut ids, move_to(&[("s", 0, Some(&[2, 3])), ("s", 1, Some(&[2, 1]))]))
                .unwrap();
        assert_eq!(codes(r), [0, 0]);
        assert_eq!(sm.image().version, version + 2, "one record per partition");
        let s0 = part(&sm, "s", 0);
        assert_eq!(
            (s0.replicas.clone(), s0.isr.clone(), s0.leader),
            (ns(&[2, 3]), ns(&[2, 3]), NodeId(2))
        );
        assert_eq!((s0.leader_epoch, s0.partition_epoch), (LeaderEpoch(1), 1));
        assert!(!s0.is_reassigning());
        // 2 led and stays.
        let s1 = part(&sm, "s", 1);
        assert_eq!(
            (s1.replicas.clone(), s1.isr.clone(), s1.leader),
            (ns(&[2, 1]), ns(&[2, 1]), NodeId(2))
        );
        assert_eq!((s1.leader_epoch, s1.partition_epoch), (LeaderEpoch(0), 1));
        // A new order is a move too: the preferred replica changes, nothing else.
        assert_eq!(reassign(&mut sm, &mut ids, "s", 1, &[1, 2]), 0);
        let s1 = part(&sm, "s", 1);
        assert_eq!(
            (s1.replicas.clone(), s1.leader, s1.partition_epoch),
            (ns(&[1, 2]), NodeId(2), 2)
        );
    }

    #[test]
    fn cancel_goes_back_and_moves_the_leader_off_added_replicas() {
        let (mut sm, mut ids) = setup(4);
        exec(&mut sm, &mut ids, assigned("c", &[&[1, 2], &[1, 2]], &[])).unwrap();
        assert_eq!(cancel(&mut sm, &mut ids, "c", 0), 85);

        // Partition 0: cancelled while 3 caught up; 3 leaves the ISR again.
        assert_eq!(reassign(&mut sm, &mut ids, "c", 0, &[3, 4]), 0);
        join(&mut sm, &mut ids, "c", 0, 3);
        let moving = part(&sm, "c", 0);
        assert_eq!(cancel(&mut sm, &mut ids, "c", 0), 0);
        let c0 = part(&sm, "c", 0);
        assert_eq!(
            (c0.replicas.clone(), c0.isr.clone(), c0.leader),
            (ns(&[1, 2]), ns(&[1, 2]), NodeId(1))
        );
        assert!(!c0.is_reassigning());
        assert_eq!(
            (c0.leader_epoch, c0.partition_epoch),
            (moving.leader_epoch, moving.partition_epoch + 1)
        );
        assert_eq!(cancel(&mut sm, &mut ids, "c", 0), 85);

        // Partition 1: an added replica came to lead (1 was fenced); after the
        // cancel the first original replica in the ISR leads.
        assert_eq!(reassign(&mut sm, &mut ids, "c", 1, &[3, 4]), 0);
        join(&mut sm, &mut ids, "c", 1, 3);
        fence(&mut sm, &mut ids, 1);
        let moving = part(&sm, "c", 1);
        assert_eq!((moving.leader, moving.isr.clone()), (NodeId(3), ns(&[2, 3])));
        assert_eq!(cancel(&mut sm, &mut ids, "c", 1), 0);
        let c1 = part(&sm, "c", 1);
        assert_eq!(
            (c1.replicas.clone(), c1.isr.clone(), c1.leader),
            (ns(&[1, 2]), ns(&[2]), NodeId(2))
        );
        assert_eq!(c1.leader_epoch, LeaderEpoch(moving.leader_epoch.0 + 1));
    }

    #[test]
    fn cancel_that_would_empty_the_isr_needs_unclean_election() {
        let (mut sm, mut ids) = setup(3);
        let unclean = [("unclean.leader.election.enable", "true")];
        exec(&mut sm, &mut ids, assigned("c", &[&[1]], &[])).unwrap();
        exec(&mut sm, &mut ids, assigned("u", &[&[1]], &unclean)).unwrap();
        for topic in ["c", "u"] {
            assert_eq!(reassign(&mut sm, &mut ids, topic, 0, &[2, 3]), 0);
            join(&mut sm, &mut ids, topic, 0, 2);
        }
        // 1 stops: 2 leads and is the whole ISR.
        fence(&mut sm, &mut ids, 1);
        assert_eq!((part(&sm, "c", 0).leader, part(&sm, "c", 0).isr), (NodeId(2), ns(&[2])));
        assert_eq!(cancel(&mut sm, &mut ids, "c", 0), 39);
        assert!(part(&sm, "c", 0).is_reassigning());
        // Allowed: the move is dropped, every replica kept.
        let before = part(&sm, "u", 0);
        assert_eq!(cancel(&mut sm, &mut ids, "u", 0), 0);
        let u = part(&sm, "u", 0);
        assert_eq!((u.replicas, u.isr, u.leader), (before.replicas, before.isr, before.leader));
        assert!(!part(&sm, "u", 0).is_reassigning());
    }

    #[test]
    fn a_new_target_replaces_the_one_in_progress() {
        let (mut sm, mut ids) = setup(5);
        exec(&mut sm, &mut ids, assigned("n", &[&[1, 2]], &[])).unwrap();
        assert_eq!(reassign(&mut sm, &mut ids, "n", 0, &[3, 4]), 0);
        assert_eq!(reassign(&mut sm, &mut ids, "n", 0, &[3, 5]), 0);
        // Planned against the replicas in progress: 4 is on its way out.
        assert_eq!(
            ongoing(&mut sm, &mut ids, Some(&[("n", 0)])),
            ["n-0 [3, 5, 4, 1, 2] +[3, 5] -[4, 1, 2]"]
        );
        // The same target again changes nothing.
        let version = sm.image().version;
        assert_eq!(reassign(&mut sm, &mut ids, "n", 0, &[3, 5]), 0);
        assert_eq!(sm.image().version, version);
        // Back to the original replicas: they are in sync, done at once.
        assert_eq!(reassign(&mut sm, &mut ids, "n", 0, &[1, 2]), 0);
        let n = part(&sm, "n", 0);
        assert_eq!((n.replicas, n.isr, n.leader), (ns(&[1, 2]), ns(&[1, 2]), NodeId(1)));
        assert!(ongoing(&mut sm, &mut ids, None).is_empty());
    }

    #[test]
    fn bad_targets_and_unknown_partitions_are_refused_one_by_one() {
        let (mut sm, mut ids) = setup(3);
        exec(&mut sm, &mut ids, assigned("e", &[&[1, 2]], &[])).unwrap();
        let version = sm.image().version;
        let r = exec(
            &mut sm,
            &mut ids,
            move_to(&[
                ("e", 0, Some(&[])),
                ("e", 0, Some(&[2, 2])),
                ("e", 0, Some(&[2, 9])),
                ("nope", 0, Some(&[1])),
                ("e", 1, Some(&[1])),
                ("e", -1, None),
                ("e", 0, None),
                ("e", 0, Some(&[1, 2])),
            ]),
        )
        .unwrap();
        let CommandResult::PartitionReassignmentsAltered { results } = r else { panic!() };
        let got: Vec<(i16, String)> =
            results.into_iter().map(|r| (r.error_code, r.message.unwrap_or_default())).collect();
        let want = [
            (39, "The manual partition assignment includes an empty replica list."),
            (39, "The manual partition assignment includes the broker 2 more than once."),
            (
                39,
                "The manual partition assignment includes broker 9, but no such broker is registered.",
            ),
            (3, "Unable to find a topic named nope."),
            (3, "Unable to find partition e:1."),
            (3, "Unable to find partition e:-1."),
            (85, "No partition reassignment is in progress."),
            // The current replicas: nothing to do.
            (0, ""),
        ];
        assert_eq!(got, want.map(|(c, m)| (c, m.to_string())));
        assert_eq!(sm.image().version, version, "nothing recorded");
        // Fenced nodes may be named (they are registered).
        fence(&mut sm, &mut ids, 3);
        assert_eq!(reassign(&mut sm, &mut ids, "e", 0, &[1, 2, 3]), 0);
        // Too many entries in one command.
        let many: Vec<(&str, i32, Option<&[i32]>)> =
            (0..=PARTITIONS_PER_COMMAND_MAX).map(|_| ("e", 0, None)).collect();
        assert_eq!(code(exec(&mut sm, &mut ids, move_to(&many))), 42);
    }

    #[test]
    fn a_partition_named_twice_is_changed_twice_in_one_record() {
        let (mut sm, mut ids) = setup(3);
        exec(&mut sm, &mut ids, assigned("d", &[&[1]], &[])).unwrap();
        let version = sm.image().version;
        let r =
            exec(&mut sm, &mut ids, move_to(&[("d", 0, Some(&[1, 2])), ("d", 0, Some(&[1, 3]))]))
                .unwrap();
        assert_eq!(codes(r), [0, 0]);
        assert_eq!(sm.image().version, version + 1);
        let d = part(&sm, "d", 0);
        assert_eq!(
            (d.replicas, d.adding_replicas, d.partition_epoch),
            (ns(&[1, 3, 2]), ns(&[3]), 1)
        );
        // Started and cancelled in one command: nothing changes.
        let version = sm.image().version;
        let r = exec(&mut sm, &mut ids, move_to(&[("d", 0, None), ("d", 0, Some(&[1, 3, 2]))]));
        assert_eq!(codes(r.unwrap()), [0, 0]);
        // Cancelled back to [1, 2], then a move to [1, 3, 2] from there.
        let d = part(&sm, "d", 0);
        assert_eq!(sm.image().version, version + 1);
        assert_eq!(
            (d.replicas, d.adding_replicas, d.partition_epoch),
            (ns(&[1, 3, 2]), ns(&[3]), 2)
        );
        assert!(d.removing_replicas.is_empty());
    }

    #[test]
    fn list_names_only_moves_in_progress() {
        let (mut sm, mut ids) = setup(3);
        exec(&mut sm, &mut ids, assigned("a", &[&[1], &[2], &[3]], &[])).unwrap();
        exec(&mut sm, &mut ids, assigned("b", &[&[1]], &[])).unwrap();
        assert_eq!(reassign(&mut sm, &mut ids, "b", 0, &[2]), 0);
        assert_eq!(reassign(&mut sm, &mut ids, "a", 2, &[1, 3]), 0);
        assert_eq!(
            ongoing(&mut sm, &mut ids, None),
            ["a-2 [1, 3] +[1] -[]", "b-0 [2, 1] +[2] -[1]"]
        );
        let only = [("b", 0), ("a", 0), ("zz", 0), ("a", 7), ("b", 0)];
        assert_eq!(ongoing(&mut sm, &mut ids, Some(&only)), ["b-0 [2, 1] +[2] -[1]"]);
    }

    /// Reassignment records replay from JSON (and as deltas) to the same
    /// image; records and snapshots from before reassignments still load.
    #[test]
    fn reassignment_records_replay_and_old_records_load() {
        let (mut sm, mut ids) = setup(0);
        let mut mirror = sm.image().clone();
        let mut log: Vec<String> = Vec::new();
        let mut commit = |sm: &mut StateMachine, ids: &mut Ids, cmd: Command| {
            let plan = sm.handle(&cmd, ids).unwrap();
            for r in plan.records {
                log.push(serde_json::to_string(&r).unwrap());
                mirror.apply_delta(&sm.apply(&r));
            }
        };
        for n in 1..=4 {
            commit(&mut sm, &mut ids, Command::RegisterNode(crate::state::tests::node(n)));
        }
        commit(&mut sm, &mut ids, assigned("r", &[&[1, 2], &[1, 2], &[2, 3]], &[]));
        commit(
            &mut sm,
            &mut ids,
            move_to(&[("r", 0, Some(&[1, 2, 3])), ("r", 1, Some(&[3, 4])), ("r", 2, Some(&[3]))]),
        );
        for (p, joiner) in [(0, 3), (1, 3)] {
            let before = part(&sm, "r", p);
            let mut isr: Vec<(i32, i64)> = before.isr.iter().map(|n| (n.0, -1)).collect();
            isr.push((joiner, epoch(&sm, joiner)));
            commit(&mut sm, &mut ids, alter(&before, "r", &isr));
        }
        commit(&mut sm, &mut ids, move_to(&[("r", 1, None)]));
        let e = epoch(&sm, 1);
        commit(&mut sm, &mut ids, Command::FenceNode { node: NodeId(1), broker_epoch: e });
        assert_eq!(part(&sm, "r", 0).replicas, ns(&[1, 2, 3]));
        assert_eq!(part(&sm, "r", 1).replicas, ns(&[1, 2]));
        assert_eq!(part(&sm, "r", 2).replicas, ns(&[3]));
        assert!(log.iter().any(|r| r.contains("\"adding_replicas\"")));

        let (fresh, _) = setup(0);
        let mut replayed = StateMachine::from_image(fresh.image().clone());
        for json in &log {
            replayed.apply(&serde_json::from_str(json).unwrap());
        }
        assert_eq!(replayed.image(), sm.image());
        assert_eq!(&mirror, sm.image());

        // Outside a move the new fields are not written: records read (and
        // are written) as before reassignments existed.
        let p = part(&sm, "r", 0);
        let json = serde_json::to_string(&p).unwrap();
        assert!(!json.contains("replicas\":[]") && !json.contains("adding"), "{json}");
        let old = r#"{"partition":0,"leader":1,"leader_epoch":0,"replicas":[1],"isr":[1],"partition_epoch":0}"#;
        let meta: PartitionMeta = serde_json::from_str(old).unwrap();
        assert!(!meta.is_reassigning());
        let old_image = serde_json::to_string(&fresh.image()).unwrap();
        let reloaded: MetadataImage = serde_json::from_str(&old_image).unwrap();
        assert_eq!(&reloaded, fresh.image());
    }

    #[test]
    fn moves_survive_fencing_and_elections() {
        let (mut sm, mut ids) = setup(3);
        exec(&mut sm, &mut ids, assigned("f", &[&[1, 2]], &[])).unwrap();
        assert_eq!(reassign(&mut sm, &mut ids, "f", 0, &[2, 3]), 0);
        // 1 stops: the move goes on, 2 leads.
        fence(&mut sm, &mut ids, 1);
        let f = part(&sm, "f", 0);
        assert_eq!((f.leader, f.isr.clone()), (NodeId(2), ns(&[2])));
        assert!(f.is_reassigning());
        heartbeat(&mut sm, &mut ids, 1, false).unwrap();
        // 3 catches up: done, 1 is gone for good.
        join(&mut sm, &mut ids, "f", 0, 3);
        let f = part(&sm, "f", 0);
        assert_eq!((f.replicas, f.isr, f.leader), (ns(&[2, 3]), ns(&[2, 3]), NodeId(2)));
    }
}
