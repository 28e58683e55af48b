//! Partition leadership: node registration with broker epochs, fencing,
//! unfencing, controlled shutdown, leader election from the ISR,
//! AlterPartition and ElectLeaders. Part of the sans-IO state machine
//! ([`crate::state`]): plans records against the image, changes nothing.
//!
//! The rules are Kafka KRaft's (`ReplicationControlManager`):
//!
//! - a node is *eligible* (may lead, join an ISR, be placed on) while it is
//!   registered, not fenced and not shutting down;
//! - a fenced node leaves every ISR it is in, except as the last member, which
//!   stays so the partition can come back clean; partitions it led get the
//!   first eligible ISR member in replica order, or no leader (-1);
//! - with no eligible ISR member, a topic with
//!   `unclean.leader.election.enable` makes any eligible replica the leader
//!   and the whole ISR (and loses whatever the others had);
//! - a node that becomes eligible again (registration, unfencing heartbeat)
//!   leads the partitions that had no leader and have it in the ISR;
//! - every leader change bumps the leader epoch, every change the partition
//!   epoch.
//!
//! A command that touches a partition several times (a restarted node is
//! fenced, then registered, then elected again) writes one
//! `PartitionChanged` per partition, after the node records, with the
//! leader epoch bumped once if its leader changed at any step — so a node
//! that bounced and leads again does so under a new leader epoch.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use weir_proto::ids::{LeaderEpoch, NodeId, PartitionId};

use crate::error::ControllerError;
use crate::reassignment;
use crate::state::{
    CommandResult, ElectionResult, ElectionType, IsrEntry, MetadataImage, MetadataRecord,
    NO_LEADER, NodeInfo, PartitionMeta, Plan, Registration,
};

/// One partition touched by a plan.
struct Touched {
    /// Its state in the plan; epochs are still the image's.
    meta: PartitionMeta,
    /// Its leader changed at some step (even if it is back to the old one).
    leader_changed: bool,
    unclean: bool,
}

/// The image as a command changes it, step by step: node records in order,
/// partition changes collected and written at the end, one per partition.
struct Planner<'a> {
    image: &'a MetadataImage,
    registrations: BTreeMap<NodeId, Registration>,
    touched: BTreeMap<(String, PartitionId), Touched>,
    records: Vec<MetadataRecord>,
}

impl<'a> Planner<'a> {
    fn new(image: &'a MetadataImage) -> Planner<'a> {
        Planner {
            image,
            registrations: BTreeMap::new(),
            touched: BTreeMap::new(),
            records: Vec::new(),
        }
    }

    fn registration(&self, node: NodeId) -> Option<Registration> {
        self.registrations.get(&node).copied().or_else(|| self.image.registration(node))
    }

    fn eligible(&self, node: NodeId) -> bool {
        self.registration(node).is_some_and(|r| !r.fenced && !r.shutting_down)
    }

    /// The offset the next record will have.
    fn next_version(&self) -> u64 {
        self.image.version + self.records.len() as u64
    }

    fn partition(&self, topic: &str, partition: PartitionId) -> Option<PartitionMeta> {
        match self.touched.get(&(topic.to_string(), partition)) {
            Some(t) => Some(t.meta.clone()),
            None => self.image.partition(topic, partition).cloned(),
        }
    }

    /// Every partition with `node` among its replicas, as `(topic, id)`.
    fn partitions_of(&self, node: NodeId) -> Vec<(String, PartitionId)> {
        self.image
            .topics
            .values()
            .flat_map(|t| t.partitions.iter().map(move |p| (t, p)))
            .filter(|(_, p)| p.replicas.contains(&node))
            .map(|(t, p)| (t.name.clone(), p.partition))
            .collect()
    }

    fn unclean_enabled(&self, topic: &str) -> bool {
        self.image.topic_config(topic).is_some_and(|c| c.unclean_leader_election_enable)
    }

    /// Sets a partition's leader and ISR in the plan.
    fn update(
        &mut self,
        topic: &str,
        partition: PartitionId,
        leader: NodeId,
        isr: Vec<NodeId>,
        unclean: bool,
    ) {
        let image = self.image;
        let t = self.touched.entry((topic.to_string(), partition)).or_insert_with(|| Touched {
            meta: image.partition(topic, partition).expect("a known partition").clone(),
            leader_changed: false,
            unclean: false,
        });
        if t.meta.leader != leader {
            t.leader_changed = true;
            // Only the last election decides whether the leader is unclean.
            t.unclean = unclean;
        }
        t.meta.leader = leader;
        t.meta.isr = isr;
    }

    fn set_registration(&mut self, node: NodeId, r: Registration) {
        self.registrations.insert(node, r);
    }

    /// Elects a leader for a partition whose leader is gone or ineligible:
    /// the first eligible ISR member in replica order; else, if the topic
    /// allows it, any eligible replica (unclean); else none. `failed` leaves
    /// the ISR unless it is its last member.
    fn elect(&mut self, topic: &str, partition: PartitionId, failed: Option<NodeId>) {
        let p = self.partition(topic, partition).expect("a known partition");
        let clean = p.replicas.iter().copied().find(|r| p.isr.contains(r) && self.eligible(*r));
        let without_failed = |isr: &[NodeId]| -> Vec<NodeId> {
            isr.iter().copied().filter(|r| Some(*r) != failed).collect()
        };
        let (leader, isr, unclean) = match clean {
            Some(leader) => (leader, without_failed(&p.isr), false),
            None => match p.replicas.iter().copied().find(|r| self.eligible(*r)) {
                Some(leader) if self.unclean_enabled(topic) => (leader, vec![leader], true),
                _ => {
                    // Keep the last ISR member: only it may lead again cleanly.
                    let isr = if p.isr.len() > 1 { without_failed(&p.isr) } else { p.isr.clone() };
                    (NO_LEADER, isr, false)
                }
            },
        };
        if leader != p.leader || isr != p.isr {
            self.update(topic, partition, leader, isr, unclean);
        }
    }

    /// Fences `node`'s current registration: out of every ISR but as the
    /// last member, its leaderships moved.
    fn fence(&mut self, node: NodeId) {
        let mut r = self.registration(node).expect("fencing a registered node");
        assert!(!r.fenced, "fencing a fenced node");
        self.records.push(MetadataRecord::NodeFenced { node, broker_epoch: r.broker_epoch });
        r.fenced = true;
        self.set_registration(node, r);
        for (topic, partition) in self.partitions_of(node) {
            let p = self.partition(&topic, partition).expect("listed");
            if p.leader == node {
                self.elect(&topic, partition, Some(node));
            } else if p.isr.contains(&node) && p.isr.len() > 1 {
                let isr = p.isr.iter().copied().filter(|r| *r != node).collect();
                self.update(&topic, partition, p.leader, isr, false);
            }
        }
    }

    /// `node` became eligible: partitions without a leader that it may lead
    /// get one.
    fn elect_leaderless(&mut self, node: NodeId) {
        for (topic, partition) in self.partitions_of(node) {
            if self.partition(&topic, partition).expect("listed").leader == NO_LEADER {
                self.elect(&topic, partition, None);
            }
        }
    }

    /// Controlled shutdown of `node`: marked shutting down, its leaderships
    /// moved to another eligible ISR member where there is one, and out of
    /// every ISR but as the last member.
    fn shut_down(&mut self, node: NodeId) {
        let mut r = self.registration(node).expect("a registered node");
        if !r.shutting_down {
            self.records
                .push(MetadataRecord::NodeShuttingDown { node, broker_epoch: r.broker_epoch });
            r.shutting_down = true;
            self.set_registration(node, r);
        }
        for (topic, partition) in self.partitions_of(node) {
            let p = self.partition(&topic, partition).expect("listed");
            let others: Vec<NodeId> = p.isr.iter().copied().filter(|r| *r != node).collect();
            if p.leader == node {
                let next =
                    p.replicas.iter().copied().find(|r| others.contains(r) && self.eligible(*r));
                if let Some(next) = next {
                    self.update(&topic, partition, next, others, false);
                }
            } else if p.isr.contains(&node) && !others.is_empty() {
                self.update(&topic, partition, p.leader, others, false);
            }
        }
    }

    /// Whether `node` leads no partition that another replica could lead.
    fn shutdown_ready(&self, node: NodeId) -> bool {
        self.partitions_of(node).into_iter().all(|(topic, partition)| {
            let p = self.partition(&topic, partition).expect("listed");
            p.leader != node || !p.isr.iter().any(|r| *r != node && self.eligible(*r))
        })
    }

    /// The records: node records in order, then one `PartitionChanged` per
    /// partition that changed, epochs bumped.
    fn finish(mut self) -> Vec<MetadataRecord> {
        for ((topic, partition), t) in std::mem::take(&mut self.touched) {
            let old = self.image.partition(&topic, partition).expect("a known partition");
            if !t.leader_changed && t.meta.isr == old.isr {
                continue;
            }
            let mut meta = t.meta;
            if t.leader_changed {
                meta.leader_epoch = LeaderEpoch(old.leader_epoch.0 + 1);
            }
            meta.partition_epoch = old.partition_epoch + 1;
            self.records.push(MetadataRecord::PartitionChanged {
                topic,
                partition: meta,
                unclean: t.unclean,
            });
        }
        self.records
    }
}

/// RegisterNode, after the node info was validated.
pub(crate) fn register(image: &MetadataImage, node: &NodeInfo) -> Plan {
    let current = image.registrations.get(&node.id).copied();
    let known = image.nodes.get(&node.id);
    let answer = |broker_epoch| CommandResult::NodeRegistered {
        cluster_id: image.cluster_id.clone(),
        broker_epoch,
    };
    if let (Some(r), Some(info)) = (current, known)
        && info == node
    {
        return Plan { records: Vec::new(), result: answer(r.broker_epoch) };
    }
    let mut planner = Planner::new(image);
    let same_process =
        current.is_some() && known.is_some_and(|k| k.incarnation == node.incarnation);
    let broker_epoch = match current {
        // The same process moved its address: same session, same epoch.
        Some(r) if same_process => r.broker_epoch,
        _ => {
            // A restarted ("bounced") node: its old incarnation is fenced
            // first, so what it led gets a new leader epoch.
            if current.is_some_and(|r| !r.fenced) {
                planner.fence(node.id);
            }
            i64::try_from(planner.next_version()).expect("versions fit i64")
        }
    };
    planner.records.push(MetadataRecord::NodeRegistered { node: node.clone(), broker_epoch });
    planner.set_registration(
        node.id,
        Registration { broker_epoch, fenced: false, shutting_down: false },
    );
    planner.elect_leaderless(node.id);
    Plan { records: planner.finish(), result: answer(broker_epoch) }
}

fn stale_epoch(image: &MetadataImage, node: NodeId, broker_epoch: i64) -> ControllerError {
    match image.registrations.get(&node) {
        Some(r) => ControllerError::StaleBrokerEpoch(format!(
            "Node {node} sent broker epoch {broker_epoch}, but its current broker epoch is {}; register again.",
            r.broker_epoch
        )),
        None => ControllerError::StaleBrokerEpoch(format!(
            "Node {node} is not registered (broker epoch {broker_epoch}); register again."
        )),
    }
}

/// Heartbeat.
pub(crate) fn heartbeat(
    image: &MetadataImage,
    node: NodeId,
    broker_epoch: i64,
    want_shutdown: bool,
) -> Result<Plan, ControllerError> {
    let Some(r) = image.registrations.get(&node).copied() else {
        return Err(stale_epoch(image, node, broker_epoch));
    };
    if r.broker_epoch != broker_epoch {
        return Err(stale_epoch(image, node, broker_epoch));
    }
    let mut planner = Planner::new(image);
    let (fenced, shutdown_ready) = if want_shutdown {
        if r.fenced {
            // Fenced already: it leads nothing and may stop at once.
            (true, true)
        } else {
            planner.shut_down(node);
            (false, planner.shutdown_ready(node))
        }
    } else {
        if r.fenced {
            planner.records.push(MetadataRecord::NodeUnfenced { node, broker_epoch });
            planner.set_registration(node, Registration { fenced: false, ..r });
            planner.elect_leaderless(node);
        }
        (false, false)
    };
    Ok(Plan {
        records: planner.finish(),
        result: CommandResult::HeartbeatAck { fenced, shutdown_ready },
    })
}

/// FenceNode: a no-op unless `broker_epoch` is the node's current,
/// unfenced registration.
pub(crate) fn fence_node(image: &MetadataImage, node: NodeId, broker_epoch: i64) -> Plan {
    let current = image.registrations.get(&node);
    let mut planner = Planner::new(image);
    if current.is_some_and(|r| r.broker_epoch == broker_epoch && !r.fenced) {
        planner.fence(node);
    }
    Plan { records: planner.finish(), result: CommandResult::NodeFenced }
}

fn same_members(a: &[NodeId], b: &[NodeId]) -> bool {
    a.len() == b.len() && a.iter().all(|n| b.contains(n))
}

/// AlterPartition, checked as Kafka's controller checks it.
pub(crate) fn alter_partition(
    image: &MetadataImage,
    topic: &str,
    partition: PartitionId,
    leader: NodeId,
    leader_epoch: LeaderEpoch,
    partition_epoch: i32,
    new_isr: &[IsrEntry],
) -> Result<Plan, ControllerError> {
    let Some(p) = image.partition(topic, partition) else {
        return Err(ControllerError::UnknownTopic(format!(
            "This server does not host this topic-partition: {topic}-{partition}"
        )));
    };
    let answer = |p: &PartitionMeta| CommandResult::PartitionAltered {
        topic: topic.to_string(),
        partition: p.clone(),
    };
    if p.leader != leader || p.leader_epoch != leader_epoch {
        return Err(ControllerError::FencedLeaderEpoch(format!(
            "{topic}-{partition}: node {leader} at leader epoch {leader_epoch} is not the leader (node {} at leader epoch {})",
            p.leader, p.leader_epoch
        )));
    }
    let isr: Vec<NodeId> = new_isr.iter().map(|m| m.node).collect();
    if partition_epoch != p.partition_epoch {
        // A resend of a request that was applied is answered the same.
        if same_members(&isr, &p.isr) {
            return Ok(Plan { records: Vec::new(), result: answer(p) });
        }
        return Err(ControllerError::InvalidUpdateVersion(format!(
            "{topic}-{partition}: partition epoch {partition_epoch} is not the current {}",
            p.partition_epoch
        )));
    }
    let distinct = isr.iter().enumerate().all(|(i, n)| !isr[..i].contains(n));
    if !isr.contains(&leader) || !distinct || !isr.iter().all(|n| p.replicas.contains(n)) {
        return Err(ControllerError::InvalidRequest(format!(
            "{topic}-{partition}: the new ISR {isr:?} must hold the leader, no node twice, and only replicas {:?}",
            p.replicas
        )));
    }
    for m in new_isr {
        if p.isr.contains(&m.node) {
            continue;
        }
        let ok = image
            .registrations
            .get(&m.node)
            .is_some_and(|r| !r.fenced && !r.shutting_down && r.broker_epoch == m.broker_epoch);
        if !ok {
            return Err(ControllerError::IneligibleReplica(format!(
                "{topic}-{partition}: node {} (broker epoch {}) may not join the ISR: it is not registered with that epoch, fenced, or shutting down",
                m.node, m.broker_epoch
            )));
        }
    }
    if same_members(&isr, &p.isr) {
        return Ok(Plan { records: Vec::new(), result: answer(p) });
    }
    let changed = PartitionMeta { isr, partition_epoch: p.partition_epoch + 1, ..p.clone() };
    let mut records = vec![MetadataRecord::PartitionChanged {
        topic: topic.to_string(),
        partition: changed.clone(),
        unclean: false,
    }];
    // A reassignment whose target replicas are all in the ISR now completes,
    // in a record of its own after the ISR change the leader is answered
    // with: a leader's replica core takes only the ISR from the answer and
    // ignores a partition state at an epoch it holds already, so the new
    // replica set must reach it at a later partition epoch, through the
    // metadata stream.
    if let Some(done) = reassignment::completed(image, &changed) {
        records.extend(reassignment::change(topic, &changed, done));
    }
    Ok(Plan { records, result: answer(&changed) })
}

fn election_result(
    topic: &str,
    partition: PartitionId,
    error: Option<ResponseError>,
) -> ElectionResult {
    ElectionResult {
        topic: topic.to_string(),
        partition,
        error_code: error.map_or(0, |e| e.code()),
        message: error.map(|e| e.to_string()),
    }
}

/// ElectLeaders. `None`: every partition; then partitions that need no
/// election are left out of the answer, as in Kafka.
pub(crate) fn elect_leaders(
    image: &MetadataImage,
    partitions: Option<&[(String, PartitionId)]>,
    election: ElectionType,
) -> Plan {
    let all = partitions.is_none();
    let wanted: Vec<(String, PartitionId)> = match partitions {
        Some(list) => list.to_vec(),
        None => image
            .topics
            .values()
            .flat_map(|t| t.partitions.iter().map(|p| (t.name.clone(), p.partition)))
            .collect(),
    };
    let mut planner = Planner::new(image);
    let mut results = Vec::new();
    for (topic, partition) in wanted {
        let Some(p) = planner.partition(&topic, partition) else {
            results.push(election_result(
                &topic,
                partition,
                Some(ResponseError::UnknownTopicOrPartition),
            ));
            continue;
        };
        let error = match election {
            ElectionType::Preferred => {
                let preferred = p.replicas[0];
                if p.leader == preferred {
                    Some(ResponseError::ElectionNotNeeded)
                } else if p.isr.contains(&preferred) && planner.eligible(preferred) {
                    planner.update(&topic, partition, preferred, p.isr.clone(), false);
                    None
                } else {
                    Some(ResponseError::PreferredLeaderNotAvailable)
                }
            }
            ElectionType::Unclean => {
                if p.leader != NO_LEADER {
                    Some(ResponseError::ElectionNotNeeded)
                } else {
                    let clean = p
                        .replicas
                        .iter()
                        .copied()
                        .find(|r| p.isr.contains(r) && planner.eligible(*r));
                    match clean
                        .or_else(|| p.replicas.iter().copied().find(|r| planner.eligible(*r)))
                    {
                        Some(leader) if clean.is_some() => {
                            planner.update(&topic, partition, leader, p.isr.clone(), false);
                            None
                        }
                        Some(leader) => {
                            planner.update(&topic, partition, leader, vec![leader], true);
                            None
                        }
                        None => Some(ResponseError::EligibleLeadersNotAvailable),
                    }
                }
            }
        };
        if all && error == Some(ResponseError::ElectionNotNeeded) {
            continue;
        }
        results.push(election_result(&topic, partition, error));
    }
    Plan { records: planner.finish(), result: CommandResult::LeadersElected { results } }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use weir_proto::ids::{LeaderEpoch, NodeId, PartitionId, TopicId};

    use crate::error::ControllerError;
    use crate::metrics;
    use crate::state::tests::{cluster, code, node, run};
    use crate::state::*;

    pub(crate) type Ids = Box<dyn FnMut() -> TopicId>;

    pub(crate) fn setup(nodes: i32) -> (StateMachine, Ids) {
        let (sm, ids) = cluster(nodes);
        (sm, Box::new(ids))
    }

    pub(crate) fn exec(
        sm: &mut StateMachine,
        ids: &mut Ids,
        cmd: Command,
    ) -> Result<CommandResult, ControllerError> {
        run(sm, ids, cmd)
    }

    pub(crate) fn epoch(sm: &StateMachine, n: i32) -> i64 {
        sm.image().registrations[&NodeId(n)].broker_epoch
    }

    pub(crate) fn part(sm: &StateMachine, topic: &str, p: i32) -> PartitionMeta {
        sm.image().partition(topic, PartitionId(p)).unwrap().clone()
    }

    pub(crate) fn ns(v: &[i32]) -> Vec<NodeId> {
        v.iter().map(|n| NodeId(*n)).collect()
    }

    pub(crate) fn fence(sm: &mut StateMachine, ids: &mut Ids, n: i32) {
        let broker_epoch = epoch(sm, n);
        let r = exec(sm, ids, Command::FenceNode { node: NodeId(n), broker_epoch }).unwrap();
        assert_eq!(r, CommandResult::NodeFenced);
        assert!(sm.image().registrations[&NodeId(n)].fenced);
    }

    pub(crate) fn heartbeat(
        sm: &mut StateMachine,
        ids: &mut Ids,
        n: i32,
        want_shutdown: bool,
    ) -> Result<CommandResult, ControllerError> {
        let broker_epoch = epoch(sm, n);
        exec(sm, ids, Command::Heartbeat { node: NodeId(n), broker_epoch, want_shutdown })
    }

    pub(crate) fn assigned(name: &str, replicas: &[&[i32]], configs: &[(&str, &str)]) -> Command {
        Command::CreateTopic {
            name: name.into(),
            partitions: -1,
            replication_factor: -1,
            assignments: Some(
                replicas
                    .iter()
                    .enumerate()
                    .map(|(p, r)| PartitionAssignment {
                        partition: PartitionId(p as i32),
                        replicas: ns(r),
                    })
                    .collect(),
            ),
            configs: configs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            internal: false,
            validate_only: false,
        }
    }

    pub(crate) fn alter(p: &PartitionMeta, topic: &str, isr: &[(i32, i64)]) -> Command {
        Command::AlterPartition {
            topic: topic.into(),
            partition: p.partition,
            leader: p.leader,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            new_isr: isr
                .iter()
                .map(|&(n, e)| IsrEntry { node: NodeId(n), broker_epoch: e })
                .collect(),
        }
    }

    fn metric(sm: &StateMachine, name: &str) -> f64 {
        let text = metrics::render(sm.image(), true);
        let line = text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap();
        line[name.len() + 1..].parse().unwrap()
    }

    #[test]
    fn registration_epochs_and_balanced_placement() {
        let (mut sm, mut ids) = setup(3);
        let (e1, e2, e3) = (epoch(&sm, 1), epoch(&sm, 2), epoch(&sm, 3));
        assert!(0 < e1 && e1 < e2 && e2 < e3, "{e1} {e2} {e3}");
        // The same registration again: no record, the same epoch.
        let version = sm.image().version;
        let r = exec(&mut sm, &mut ids, Command::RegisterNode(node(2))).unwrap();
        assert_eq!(
            r,
            CommandResult::NodeRegistered { cluster_id: "cluster-a".into(), broker_epoch: e2 }
        );
        assert_eq!(sm.image().version, version);

        exec(&mut sm, &mut ids, Command::create_topic("t", 6, 3)).unwrap();
        let mut leaders = BTreeMap::<NodeId, usize>::new();
        for p in &sm.image().topics["t"].partitions {
            let mut distinct = p.replicas.clone();
            distinct.sort();
            distinct.dedup();
            assert_eq!(distinct.len(), 3, "{p:?}");
            assert_eq!((p.leader, &p.isr), (p.replicas[0], &p.replicas));
            assert_eq!((p.leader_epoch, p.partition_epoch), (LeaderEpoch(0), 0));
            *leaders.entry(p.leader).or_default() += 1;
        }
        assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
        // The next topic continues where the cluster's partition count left off.
        exec(&mut sm, &mut ids, Command::create_topic("u", 1, 3)).unwrap();
        assert_eq!(part(&sm, "u", 0).leader, NodeId(1));
        exec(&mut sm, &mut ids, Command::create_topic("v", 1, 3)).unwrap();
        assert_eq!(part(&sm, "v", 0).leader, NodeId(2));
    }

    #[test]
    fn rack_aware_placement() {
        let (mut sm, mut ids) = setup(0);
        let racks = ["a", "a", "b", "b", "c", "c"];
        for (i, rack) in racks.iter().enumerate() {
            let info = NodeInfo { rack: Some(rack.to_string()), ..node(i as i32 + 1) };
            exec(&mut sm, &mut ids, Command::RegisterNode(info)).unwrap();
        }
        exec(&mut sm, &mut ids, Command::create_topic("r", 6, 3)).unwrap();
        let rack = |n: NodeId| racks[n.0 as usize - 1];
        let mut leaders = Vec::new();
        for p in &sm.image().topics["r"].partitions {
            let mut spanned: Vec<&str> = p.replicas.iter().map(|n| rack(*n)).collect();
            spanned.sort();
            assert_eq!(spanned, ["a", "b", "c"], "{p:?}");
            leaders.push(p.leader);
        }
        leaders.sort();
        assert_eq!(leaders, ns(&[1, 2, 3, 4, 5, 6]));
    }

    #[test]
    fn fencing_elects_from_the_isr_until_none_is_left() {
        let (mut sm, mut ids) = setup(3);
        exec(&mut sm, &mut ids, Command::create_topic("t", 1, 3)).unwrap();
        let p0 = part(&sm, "t", 0);
        let [a, b, c] = [p0.replicas[0].0, p0.replicas[1].0, p0.replicas[2].0];
        assert_eq!(p0.leader, NodeId(a));

        // A stale fence does nothing.
        let version = sm.image().version;
        let stale = Command::FenceNode { node: NodeId(a), broker_epoch: epoch(&sm, a) - 1 };
        assert_eq!(exec(&mut sm, &mut ids, stale).unwrap(), CommandResult::NodeFenced);
        assert_eq!(sm.image().version, version);

        fence(&mut sm, &mut ids, a);
        let p1 = part(&sm, "t", 0);
        assert_eq!(p1.leader, NodeId(b));
        assert_eq!(p1.leader_epoch, LeaderEpoch(1));
        assert_eq!(p1.partition_epoch, 1);
        assert_eq!(p1.isr, ns(&[b, c]));
        assert_eq!(sm.image().leader_elections, 1);
        assert_eq!(metric(&sm, "weir_controller_fenced_nodes"), 1.0);
        // Fencing a fenced node again is a no-op.
        let version = sm.image().version;
        let again = Command::FenceNode { node: NodeId(a), broker_epoch: epoch(&sm, a) };
        exec(&mut sm, &mut ids, again).unwrap();
        assert_eq!(sm.image().version, version);

        fence(&mut sm, &mut ids, b);
        assert_eq!((part(&sm, "t", 0).leader, part(&sm, "t", 0).isr), (NodeId(c), ns(&[c])));
        fence(&mut sm, &mut ids, c);
        let p3 = part(&sm, "t", 0);
        assert_eq!(p3.leader, NO_LEADER);
        assert_eq!(p3.isr, ns(&[c]), "the last ISR member stays");
        assert_eq!((p3.leader_epoch, p3.partition_epoch), (LeaderEpoch(3), 3));
        assert_eq!(metric(&sm, "weir_controller_offline_partitions"), 1.0);
        assert_eq!(metric(&sm, "weir_controller_fenced_nodes"), 3.0);
        assert_eq!(metric(&sm, "weir_controller_leader_elections_total"), 2.0);

        // a comes back: it is not in the ISR, and unclean election is off.
        let r = heartbeat(&mut sm, &mut ids, a, false).unwrap();
        assert_eq!(r, CommandResult::HeartbeatAck { fenced: false, shutdown_ready: false });
        assert!(!sm.image().registrations[&NodeId(a)].fenced);
        assert_eq!(part(&sm, "t", 0).leader, NO_LEADER);
        // c, the last ISR member, comes back and leads again under a new epoch.
        heartbeat(&mut sm, &mut ids, c, false).unwrap();
        let p4 = part(&sm, "t", 0);
        assert_eq!(
            (p4.leader, p4.leader_epoch, p4.partition_epoch),
            (NodeId(c), LeaderEpoch(4), 4)
        );
        assert_eq!(metric(&sm, "weir_controller_offline_partitions"), 0.0);
        assert_eq!(metric(&sm, "weir_controller_preferred_replica_imbalance"), 1.0);
        // A heartbeat that changes nothing writes nothing.
        let version = sm.image().version;
        heartbeat(&mut sm, &mut ids, c, false).unwrap();
        assert_eq!(sm.image().version, version);

        // Stale or unknown broker epochs: register again.
        let old = Command::Heartbeat { node: NodeId(c), broker_epoch: 1, want_shutdown: false };
        assert_eq!(code(exec(&mut sm, &mut ids, old)), 77);
        let unknown = Command::Heartbeat { node: NodeId(9), broker_epoch: 1, want_shutdown: false };
        assert_eq!(code(exec(&mut sm, &mut ids, unknown)), 77);
    }

    #[test]
    fn unclean_election_only_when_the_topic_allows_it() {
        let (mut sm, mut ids) = setup(3);
        let unclean = [("unclean.leader.election.enable", "true")];
        exec(&mut sm, &mut ids, assigned("u", &[&[1, 2, 3]], &unclean)).unwrap();
        exec(&mut sm, &mut ids, assigned("c", &[&[1, 2, 3]], &[])).unwrap();
        for topic in ["u", "c"] {
            let p = part(&sm, topic, 0);
            exec(&mut sm, &mut ids, alter(&p, topic, &[(1, -1)])).unwrap();
        }
        fence(&mut sm, &mut ids, 1);
        let u = part(&sm, "u", 0);
        assert_eq!((u.leader, u.isr, u.leader_epoch), (NodeId(2), ns(&[2]), LeaderEpoch(1)));
        let c = part(&sm, "c", 0);
        assert_eq!((c.leader, c.isr), (NO_LEADER, ns(&[1])));
        assert_eq!(sm.image().unclean_leader_elections, 1);
        assert_eq!(metric(&sm, "weir_controller_unclean_leader_elections_total"), 1.0);
    }

    #[test]
    fn alter_partition_checks() {
        let (mut sm, mut ids) = setup(4);
        exec(&mut sm, &mut ids, assigned("a", &[&[1, 2, 3]], &[])).unwrap();
        let p = part(&sm, "a", 0);
        let full = [(1, -1), (2, -1), (3, -1)];

        let mut unknown = alter(&p, "a", &full);
        if let Command::AlterPartition { partition, .. } = &mut unknown {
            *partition = PartitionId(5);
        }
        assert_eq!(code(exec(&mut sm, &mut ids, unknown)), 3);
        assert_eq!(code(exec(&mut sm, &mut ids, alter(&p, "zz", &full))), 3);
        let not_leader = PartitionMeta { leader: NodeId(2), ..p.clone() };
        assert_eq!(code(exec(&mut sm, &mut ids, alter(&not_leader, "a", &full))), 74);
        let old_epoch = PartitionMeta { leader_epoch: LeaderEpoch(7), ..p.clone() };
        assert_eq!(code(exec(&mut sm, &mut ids, alter(&old_epoch, "a", &full))), 74);
        let other_version = PartitionMeta { partition_epoch: 3, ..p.clone() };
        assert_eq!(
            code(exec(&mut sm, &mut ids, alter(&other_version, "a", &[(1, -1)]))),
            ControllerError::InvalidUpdateVersion(String::new()).kafka_code()
        );
        for bad in [&[(2, -1), (3, -1)][..], &[(1, -1), (1, -1)], &[(1, -1), (4, epoch(&sm, 4))]] {
            assert_eq!(code(exec(&mut sm, &mut ids, alter(&p, "a", bad))), 42, "{bad:?}");
        }

        // The same ISR: the current state, no record.
        let version = sm.image().version;
        let r = exec(&mut sm, &mut ids, alter(&p, "a", &full)).unwrap();
        assert_eq!(r, CommandResult::PartitionAltered { topic: "a".into(), partition: p.clone() });
        assert_eq!(sm.image().version, version);

        // Shrink.
        let shrink = alter(&p, "a", &[(1, -1), (2, -1)]);
        let CommandResult::PartitionAltered { partition: shrunk, .. } =
            exec(&mut sm, &mut ids, shrink.clone()).unwrap()
        else {
            panic!()
        };
        assert_eq!((shrunk.isr.clone(), shrunk.partition_epoch), (ns(&[1, 2]), 1));
        assert_eq!(shrunk.leader_epoch, p.leader_epoch);
        assert_eq!(part(&sm, "a", 0), shrunk);
        assert_eq!(sm.image().version, version + 1);
        // A resend of the applied request gets the same answer and no record.
        let r = exec(&mut sm, &mut ids, shrink).unwrap();
        assert_eq!(
            r,
            CommandResult::PartitionAltered { topic: "a".into(), partition: shrunk.clone() }
        );
        assert_eq!(sm.image().version, version + 1);

        // Expand: the joiner's broker epoch must be its registration's.
        let e3 = epoch(&sm, 3);
        let wrong = alter(&shrunk, "a", &[(1, -1), (2, -1), (3, e3 - 1)]);
        assert_eq!(code(exec(&mut sm, &mut ids, wrong)), 107);
        let expand = alter(&shrunk, "a", &[(1, -1), (2, -1), (3, e3)]);
        let CommandResult::PartitionAltered { partition: expanded, .. } =
            exec(&mut sm, &mut ids, expand).unwrap()
        else {
            panic!()
        };
        assert_eq!((expanded.isr.clone(), expanded.partition_epoch), (ns(&[1, 2, 3]), 2));

        // A fenced node may not join.
        let shrunk = match exec(&mut sm, &mut ids, alter(&expanded, "a", &[(1, -1), (2, -1)])) {
            Ok(CommandResult::PartitionAltered { partition, .. }) => partition,
            other => panic!("{other:?}"),
        };
        fence(&mut sm, &mut ids, 3);
        let fenced = alter(&shrunk, "a", &[(1, -1), (2, -1), (3, e3)]);
        assert_eq!(code(exec(&mut sm, &mut ids, fenced)), 107);
        // Nor one that is shutting down.
        heartbeat(&mut sm, &mut ids, 3, false).unwrap();
        heartbeat(&mut sm, &mut ids, 3, true).unwrap();
        let leaving = alter(&shrunk, "a", &[(1, -1), (2, -1), (3, e3)]);
        assert_eq!(code(exec(&mut sm, &mut ids, leaving)), 107);
    }

    #[test]
    fn bounced_node_is_fenced_then_registered_again() {
        let (mut sm, mut ids) = setup(3);
        exec(&mut sm, &mut ids, assigned("b", &[&[1, 2, 3], &[2, 1, 3]], &[])).unwrap();
        exec(&mut sm, &mut ids, assigned("solo", &[&[1]], &[])).unwrap();
        let old_epoch = epoch(&sm, 1);
        let version = sm.image().version;

        let bounced = NodeInfo { incarnation: 7, ..node(1) };
        let r = exec(&mut sm, &mut ids, Command::RegisterNode(bounced.clone())).unwrap();
        let CommandResult::NodeRegistered { broker_epoch, .. } = r else { panic!("{r:?}") };
        assert!(broker_epoch > old_epoch);
        assert_eq!(
            sm.image().registrations[&NodeId(1)],
            Registration { broker_epoch, fenced: false, shutting_down: false }
        );
        // Records: the old registration fenced, the new one, then the partitions.
        assert_eq!(broker_epoch, version as i64 + 1);
        // It led b-0: the next ISR member leads, 1 has left the ISR.
        let b0 = part(&sm, "b", 0);
        assert_eq!((b0.leader, b0.isr, b0.leader_epoch), (NodeId(2), ns(&[2, 3]), LeaderEpoch(1)));
        // It followed b-1: out of the ISR.
        let b1 = part(&sm, "b", 1);
        assert_eq!((b1.leader, b1.isr, b1.leader_epoch), (NodeId(2), ns(&[2, 3]), LeaderEpoch(0)));
        // It was the only ISR member of solo-0: it leads it still, under a new epoch.
        let solo = part(&sm, "solo", 0);
        assert_eq!((solo.leader, solo.isr), (NodeId(1), ns(&[1])));
        assert_eq!((solo.leader_epoch, solo.partition_epoch), (LeaderEpoch(1), 1));
        // The old incarnation's heartbeats are refused.
        let old =
            Command::Heartbeat { node: NodeId(1), broker_epoch: old_epoch, want_shutdown: false };
        assert_eq!(code(exec(&mut sm, &mut ids, old)), 77);
        // The new incarnation registering again changes nothing.
        let version = sm.image().version;
        let r = exec(&mut sm, &mut ids, Command::RegisterNode(bounced)).unwrap();
        assert!(
            matches!(r, CommandResult::NodeRegistered { broker_epoch: e, .. } if e == broker_epoch)
        );
        assert_eq!(sm.image().version, version);
    }

    #[test]
    fn controlled_shutdown_moves_leadership_away() {
        let (mut sm, mut ids) = setup(3);
        exec(&mut sm, &mut ids, assigned("s", &[&[2, 1], &[1, 2], &[3, 1]], &[])).unwrap();
        exec(&mut sm, &mut ids, assigned("solo", &[&[2]], &[])).unwrap();
        let r = heartbeat(&mut sm, &mut ids, 2, true).unwrap();
        assert_eq!(r, CommandResult::HeartbeatAck { fenced: false, shutdown_ready: true });
        assert!(sm.image().registrations[&NodeId(2)].shutting_down);
        let s0 = part(&sm, "s", 0);
        assert_eq!((s0.leader, s0.isr, s0.leader_epoch), (NodeId(1), ns(&[1]), LeaderEpoch(1)));
        let s1 = part(&sm, "s", 1);
        assert_eq!((s1.leader, s1.isr, s1.leader_epoch), (NodeId(1), ns(&[1]), LeaderEpoch(0)));
        assert_eq!(part(&sm, "s", 2).isr, ns(&[3, 1]));
        // No other replica could lead solo-0: it stays with 2 until 2 stops.
        assert_eq!(part(&sm, "solo", 0).leader, NodeId(2));
        // Polling again changes nothing.
        let version = sm.image().version;
        let r = heartbeat(&mut sm, &mut ids, 2, true).unwrap();
        assert_eq!(r, CommandResult::HeartbeatAck { fenced: false, shutdown_ready: true });
        assert_eq!(sm.image().version, version);
        // Nothing new is placed on it.
        assert_eq!(code(exec(&mut sm, &mut ids, Command::create_topic("new", 1, 3))), 38);
        exec(&mut sm, &mut ids, Command::create_topic("new", 4, 2)).unwrap();
        assert!(
            sm.image().topics["new"].partitions.iter().all(|p| !p.replicas.contains(&NodeId(2)))
        );
        // Fenced (it stopped), it may shut down at once.
        fence(&mut sm, &mut ids, 2);
        assert_eq!(part(&sm, "solo", 0).leader, NO_LEADER);
        let r = heartbeat(&mut sm, &mut ids, 2, true).unwrap();
        assert_eq!(r, CommandResult::HeartbeatAck { fenced: true, shutdown_ready: true });
    }

    #[test]
    fn preferred_and_unclean_elections() {
        let (mut sm, mut ids) = setup(3);
        exec(&mut sm, &mut ids, assigned("e", &[&[1, 2, 3], &[2, 3, 1]], &[])).unwrap();
        exec(&mut sm, &mut ids, assigned("o", &[&[2, 3]], &[])).unwrap();
        fence(&mut sm, &mut ids, 1);
        assert_eq!(part(&sm, "e", 0).leader, NodeId(2));
        let elect = |partitions: Option<Vec<(&str, i32)>>, election| Command::ElectLeaders {
            partitions: partitions
                .map(|l| l.into_iter().map(|(t, p)| (t.to_string(), PartitionId(p))).collect()),
            election,
        };
        let results = |r: CommandResult| -> Vec<(String, i32, i16)> {
            let CommandResult::LeadersElected { results } = r else { panic!("{r:?}") };
            results.into_iter().map(|r| (r.topic, r.partition.0, r.error_code)).collect()
        };
        let r = exec(
            &mut sm,
            &mut ids,
            elect(Some(vec![("e", 0), ("e", 1), ("x", 0)]), ElectionType::Preferred),
        )
        .unwrap();
        assert_eq!(results(r), vec![("e".into(), 0, 80), ("e".into(), 1, 84), ("x".into(), 0, 3)]);

        // 1 comes back and catches up: the leader adds it to the ISR.
        heartbeat(&mut sm, &mut ids, 1, false).unwrap();
        let e0 = part(&sm, "e", 0);
        let add = alter(&e0, "e", &[(2, -1), (3, -1), (1, epoch(&sm, 1))]);
        exec(&mut sm, &mut ids, add).unwrap();
        // All partitions: only those that needed an election are reported.
        let r = exec(&mut sm, &mut ids, elect(None, ElectionType::Preferred)).unwrap();
        assert_eq!(results(r), vec![("e".into(), 0, 0)]);
        let e0 = part(&sm, "e", 0);
        assert_eq!((e0.leader, e0.leader_epoch), (NodeId(1), LeaderEpoch(2)));
        assert_eq!(metric(&sm, "weir_controller_preferred_replica_imbalance"), 0.0);

        // o-0 goes offline with 2 as the last ISR member; 3 is live but out of it.
        let o0 = part(&sm, "o", 0);
        exec(&mut sm, &mut ids, alter(&o0, "o", &[(2, -1)])).unwrap();
        fence(&mut sm, &mut ids, 2);
        assert_eq!(part(&sm, "o", 0).leader, NO_LEADER);
        let r =
            exec(&mut sm, &mut ids, elect(Some(vec![("o", 0), ("e", 1)]), ElectionType::Unclean))
                .unwrap();
        assert_eq!(results(r), vec![("o".into(), 0, 0), ("e".into(), 1, 84)]);
        assert_eq!((part(&sm, "o", 0).leader, part(&sm, "o", 0).isr), (NodeId(3), ns(&[3])));
        assert_eq!(sm.image().unclean_leader_elections, 1);
        // No live replica at all.
        fence(&mut sm, &mut ids, 3);
        let r =
            exec(&mut sm, &mut ids, elect(Some(vec![("o", 0)]), ElectionType::Unclean)).unwrap();
        assert_eq!(results(r), vec![("o".into(), 0, 83)]);
    }

    #[test]
    fn explicit_assignment_needs_a_live_replica() {
        let (mut sm, mut ids) = setup(3);
        fence(&mut sm, &mut ids, 1);
        // Fenced nodes may be named; the ISR holds the live ones, the first leads.
        exec(&mut sm, &mut ids, assigned("x", &[&[1, 2]], &[])).unwrap();
        assert_eq!((part(&sm, "x", 0).leader, part(&sm, "x", 0).isr), (NodeId(2), ns(&[2])));
        assert_eq!(code(exec(&mut sm, &mut ids, assigned("y", &[&[1]], &[]))), 39);
        // Placement leaves the fenced node out.
        assert_eq!(code(exec(&mut sm, &mut ids, Command::create_topic("z", 1, 3))), 38);
    }

    /// Every kind of record, replayed from JSON and mirrored by deltas,
    /// rebuilds the controller's image.
    #[test]
    fn leadership_records_replay_and_mirror() {
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
        for n in 1..=3 {
            commit(&mut sm, &mut ids, Command::RegisterNode(node(n)));
        }
        commit(&mut sm, &mut ids, Command::create_topic("t", 3, 3));
        commit(
            &mut sm,
            &mut ids,
            assigned("u", &[&[1, 2]], &[("unclean.leader.election.enable", "true")]),
        );
        let p = part(&sm, "u", 0);
        commit(&mut sm, &mut ids, alter(&p, "u", &[(1, -1)]));
        let e1 = epoch(&sm, 1);
        commit(&mut sm, &mut ids, Command::FenceNode { node: NodeId(1), broker_epoch: e1 });
        commit(
            &mut sm,
            &mut ids,
            Command::Heartbeat { node: NodeId(1), broker_epoch: e1, want_shutdown: false },
        );
        commit(&mut sm, &mut ids, Command::RegisterNode(NodeInfo { incarnation: 2, ..node(2) }));
        let e3 = epoch(&sm, 3);
        commit(
            &mut sm,
            &mut ids,
            Command::Heartbeat { node: NodeId(3), broker_epoch: e3, want_shutdown: true },
        );
        commit(
            &mut sm,
            &mut ids,
            Command::ElectLeaders { partitions: None, election: ElectionType::Preferred },
        );
        // u-0 went unclean twice: to 2 when 1 was fenced, back to 1 when 2 bounced.
        assert_eq!(part(&sm, "u", 0).isr, ns(&[1]));
        assert_eq!(sm.image().unclean_leader_elections, 2);
        assert!(sm.image().leader_elections > 2);

        let (fresh, _) = setup(0);
        let mut replayed = StateMachine::from_image(fresh.image().clone());
        for json in &log {
            replayed.apply(&serde_json::from_str(json).unwrap());
        }
        assert_eq!(replayed.image(), sm.image());
        assert_eq!(&mirror, sm.image());
    }
}
