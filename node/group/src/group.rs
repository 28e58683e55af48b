//! In-memory state of one classic group and its members.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;

use crate::RequestId;
use crate::records::{GroupMetadataValue, MemberMetadataValue, OffsetCommitValue};
use crate::subscription::subscribed_topics;

/// Kafka's classic group states, with Kafka's names (DescribeGroups and
/// ListGroups show them to users).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members; the group may still hold offsets.
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment.
    CompletingRebalance,
    Stable,
    /// Being deleted; every request on it is refused until it is gone.
    Dead,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// A parked request waiting for the group to answer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Parked {
    pub(crate) request: RequestId,
    pub(crate) version: i16,
}

#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) session_timeout_ms: i32,
    /// Offered protocols in preference order: (name, metadata).
    pub(crate) protocols: Vec<(String, Bytes)>,
    pub(crate) assignment: Bytes,
    pub(crate) awaiting_join: Option<Parked>,
    pub(crate) awaiting_sync: Option<Parked>,
    /// Joined during the current rebalance for the first time.
    pub(crate) is_new: bool,
}

impl Member {
    pub(crate) fn metadata(&self, protocol: &str) -> Option<&Bytes> {
        self.protocols.iter().find(|(name, _)| name == protocol).map(|(_, m)| m)
    }

    pub(crate) fn protocols_match(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }
}

/// How the join phase in progress ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JoinPhase {
    /// First rebalance of an empty group: wait `initial_rebalance_delay_ms`,
    /// extended while new members keep arriving, up to `remaining_ms` more.
    Initial { remaining_ms: i64 },
    /// Ends when every member rejoined, or at the rebalance timeout.
    Normal,
}

/// Committed offset of one partition, as visible to OffsetFetch.
pub type CommittedOffset = OffsetCommitValue;

#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub(crate) group_id: String,
    pub(crate) state: GroupState,
    pub(crate) state_timestamp_ms: i64,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol_name: Option<String>,
    pub(crate) generation: i32,
    pub(crate) leader: Option<String>,
    pub(crate) members: BTreeMap<String, Member>,
    /// group.instance.id → member id.
    pub(crate) static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not yet joined.
    pub(crate) pending_members: BTreeSet<String>,
    /// Members that got a JoinGroup response and have not sent SyncGroup.
    pub(crate) pending_sync: BTreeSet<String>,
    pub(crate) join_phase: Option<JoinPhase>,
    pub(crate) new_member_added: bool,
    /// The leader's assignment is being appended for this generation.
    pub(crate) sync_append_in_flight: bool,
    /// Topics the members subscribe to, when the group is a `consumer` group
    /// whose metadata decoded; `None` means unknown.
    pub(crate) subscribed_topics: Option<BTreeSet<String>>,
    /// Whether a group metadata record was ever written or replayed.
    pub(crate) persisted: bool,
    pub(crate) offsets: BTreeMap<(String, i32), CommittedOffset>,
    /// Partitions with a commit appended but not completed (count per key).
    pub(crate) pending_offsets: BTreeMap<(String, i32), u32>,
}

impl Group {
    pub(crate) fn new(group_id: String, now_ms: i64) -> Self {
        Group {
            group_id,
            state: GroupState::Empty,
            state_timestamp_ms: now_ms,
            protocol_type: None,
            protocol_name: None,
            generation: 0,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending_members: BTreeSet::new(),
            pending_sync: BTreeSet::new(),
            join_phase: None,
            new_member_added: false,
            sync_append_in_flight: false,
            subscribed_topics: None,
            persisted: false,
            offsets: BTreeMap::new(),
            pending_offsets: BTreeMap::new(),
        }
    }

    pub(crate) fn transition(&mut self, state: GroupState, now_ms: i64) {
        self.state = state;
        self.state_timestamp_ms = now_ms;
    }

    pub(crate) fn is(&self, state: GroupState) -> bool {
        self.state == state
    }

    pub(crate) fn size_with_pending(&self) -> usize {
        self.members.len() + self.pending_members.len()
    }

    /// The largest rebalance timeout of the members (Kafka's group rebalance
    /// timeout).
    pub(crate) fn rebalance_timeout_ms(&self) -> i64 {
        self.members.values().map(|m| i64::from(m.rebalance_timeout_ms)).max().unwrap_or(0)
    }

    pub(crate) fn is_leader(&self, member_id: &str) -> bool {
        self.leader.as_deref() == Some(member_id)
    }

    /// Whether a member with `instance_id` but a different `member_id` is
    /// registered: the caller is a stale incarnation.
    pub(crate) fn is_static_fenced(&self, member_id: &str, instance_id: Option<&str>) -> bool {
        match instance_id.and_then(|i| self.static_members.get(i)) {
            Some(registered) => registered != member_id,
            None => false,
        }
    }

    pub(crate) fn all_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    /// Protocols every member supports, Kafka's `candidateProtocols`.
    fn candidate_protocols(&self) -> Vec<&str> {
        let Some(first) = self.members.values().next() else { return Vec::new() };
        first
            .protocols
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| self.members.values().all(|m| m.metadata(name).is_some()))
            .collect()
    }

    /// Whether a joining member fits the group, Kafka's `supportsProtocols`.
    pub(crate) fn supports_protocols(
        &self,
        protocol_type: &str,
        protocols: &[(String, Bytes)],
    ) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        let candidates = self.candidate_protocols();
        protocols.iter().any(|(name, _)| candidates.contains(&name.as_str()))
    }

    /// Picks the protocol as Kafka does: among the protocols every member
    /// supports, each member votes for the first it listed; most votes wins
    /// (ties go to the lexically smallest name, to be deterministic).
    pub(crate) fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some((name, _)) =
                m.protocols.iter().find(|(n, _)| candidates.contains(&n.as_str()))
            {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        let best = votes.values().copied().max()?;
        votes.into_iter().find(|(_, v)| *v == best).map(|(name, _)| name.to_owned())
    }

    pub(crate) fn compute_subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = BTreeSet::new();
        for m in self.members.values() {
            let metadata = m.metadata(protocol)?;
            topics.extend(subscribed_topics(metadata).ok()?);
        }
        Some(topics)
    }

    /// Kafka's `isSubscribedToTopic`: unknown subscriptions count as not
    /// subscribed.
    pub(crate) fn is_subscribed_to(&self, topic: &str) -> bool {
        self.subscribed_topics.as_ref().is_some_and(|t| t.contains(topic))
    }

    pub(crate) fn remove_member(&mut self, member_id: &str) -> Option<Member> {
        let member = self.members.remove(member_id)?;
        let registered = member
            .instance_id
            .as_ref()
            .filter(|i| self.static_members.get(*i).map(String::as_str) == Some(member_id));
        if let Some(instance) = registered {
            self.static_members.remove(instance);
        }
        self.pending_sync.remove(member_id);
        if self.is_leader(member_id) {
            self.leader = self.members.keys().next().cloned();
        }
        Some(member)
    }

    /// The record Kafka writes for this group: its members with their
    /// metadata for the selected protocol and `assignments` (or their current
    /// assignment when `assignments` lacks them).
    pub(crate) fn metadata_value(
        &self,
        assignments: Option<&BTreeMap<String, Bytes>>,
        now_ms: i64,
    ) -> GroupMetadataValue {
        let protocol = self.protocol_name.clone();
        GroupMetadataValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: protocol.clone(),
            leader: self.leader.clone(),
            current_state_timestamp_ms: now_ms,
            members: self
                .members
                .values()
                .map(|m| MemberMetadataValue {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: protocol
                        .as_deref()
                        .and_then(|p| m.metadata(p))
                        .cloned()
                        .unwrap_or_default(),
                    assignment: assignments
                        .and_then(|a| a.get(&m.member_id))
                        .cloned()
                        .unwrap_or_else(|| m.assignment.clone()),
                })
                .collect(),
        }
    }

    /// Replaces membership with a replayed snapshot, keeping offsets.
    pub(crate) fn load_metadata(&mut self, value: GroupMetadataValue) {
        self.protocol_type = (!value.protocol_type.is_empty()).then_some(value.protocol_type);
        self.generation = value.generation;
        self.protocol_name = value.protocol;
        self.leader = value.leader;
        self.state_timestamp_ms = value.current_state_timestamp_ms;
        self.members.clear();
        self.static_members.clear();
        self.persisted = true;
        for m in value.members {
            if let Some(instance) = &m.group_instance_id {
                self.static_members.insert(instance.clone(), m.member_id.clone());
            }
            let protocols = match &self.protocol_name {
                Some(p) => vec![(p.clone(), m.subscription)],
                None => Vec::new(),
            };
            self.members.insert(
                m.member_id.clone(),
                Member {
                    member_id: m.member_id,
                    instance_id: m.group_instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    protocols,
                    assignment: m.assignment,
                    awaiting_join: None,
                    awaiting_sync: None,
                    is_new: false,
                },
            );
        }
        if self.leader.as_ref().is_some_and(|l| !self.members.contains_key(l)) {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = if self.members.is_empty() { GroupState::Empty } else { GroupState::Stable };
        self.subscribed_topics = self.compute_subscribed_topics();
    }

    /// Forgets membership after a group tombstone in replay, keeping offsets.
    pub(crate) fn clear_metadata(&mut self) {
        let offsets = std::mem::take(&mut self.offsets);
        *self = Group::new(std::mem::take(&mut self.group_id), self.state_timestamp_ms);
        self.offsets = offsets;
    }
}
