//! The coordinator: request handlers, timers, appends and replay.
//!
//! State effects that Kafka persists are applied in log order: an offset
//! commit, an offset deletion or a group deletion changes the visible state
//! only in [`GroupCoordinator::append_done`], and appends complete in the order
//! they were emitted. Membership (who joined, who is awaiting what) is live
//! state that Kafka does not persist either; the group snapshot written after a
//! rebalance is what replay restores.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse,
    LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::config::GroupConfig;
use crate::group::{Group, GroupState, JoinPhase, Member, Parked};
use crate::hash::partition_for;
use crate::ids::{IdSource, format_uuid};
use crate::records::{GroupMetadataValue, OffsetCommitValue, RecordError, RecordKey};
use crate::timers::{TimerKey, Timers};

/// Caller-chosen id of a request; its response carries it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// Id of an [`AppendRequest`], echoed to [`GroupCoordinator::append_done`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AppendId(pub u64);

/// Records to append, in order, to the coordinator's `__consumer_offsets`
/// partition as one batch: `(key, value)` with `None` for a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendRequest {
    pub id: AppendId,
    pub records: Vec<(Bytes, Option<Bytes>)>,
}

/// Why an append failed; mapped to the error Kafka sends for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendFailure {
    /// This node no longer leads the partition → NOT_COORDINATOR.
    NotLeader,
    /// Not enough in-sync replicas, a timeout → COORDINATOR_NOT_AVAILABLE.
    NotEnoughReplicas,
    /// The batch was too large → INVALID_COMMIT_OFFSET_SIZE for commits,
    /// UNKNOWN_SERVER_ERROR otherwise.
    RecordTooLarge,
    /// The log's disk failed → NOT_COORDINATOR (the partition moves away).
    StorageError,
    /// Anything else → UNKNOWN_SERVER_ERROR.
    Other,
}

impl AppendFailure {
    fn group_error(self) -> i16 {
        match self {
            AppendFailure::NotLeader | AppendFailure::StorageError => {
                ResponseError::NotCoordinator.code()
            }
            AppendFailure::NotEnoughReplicas => ResponseError::CoordinatorNotAvailable.code(),
            AppendFailure::RecordTooLarge | AppendFailure::Other => {
                ResponseError::UnknownServerError.code()
            }
        }
    }

    fn commit_error(self) -> i16 {
        match self {
            AppendFailure::RecordTooLarge => ResponseError::InvalidCommitOffsetSize.code(),
            other => other.group_error(),
        }
    }
}

/// Connection facts JoinGroup needs that are not in its body.
#[derive(Debug, Clone, Copy)]
pub struct ClientInfo<'a> {
    /// The request header's client id.
    pub client_id: &'a str,
    /// The peer address as Kafka shows it (`/10.0.0.1`).
    pub client_host: &'a str,
}

/// A response, ready to encode at the request's version.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    JoinGroup(JoinGroupResponse),
    SyncGroup(SyncGroupResponse),
    Heartbeat(HeartbeatResponse),
    LeaveGroup(LeaveGroupResponse),
    OffsetCommit(OffsetCommitResponse),
    OffsetFetch(OffsetFetchResponse),
    DescribeGroups(DescribeGroupsResponse),
    ListGroups(ListGroupsResponse),
    DeleteGroups(DeleteGroupsResponse),
    OffsetDelete(OffsetDeleteResponse),
}

/// Why replay refused a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    #[error("malformed __consumer_offsets record: {0}")]
    Record(#[from] RecordError),
    #[error("replay after load_complete")]
    NotLoading,
}

/// What replay can rebuild of a group: its last persisted snapshot (with the
/// state timestamp cleared) and its committed offsets. Equal before and after
/// a replay of everything the coordinator emitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurableGroup {
    pub metadata: Option<GroupMetadataValue>,
    pub offsets: BTreeMap<(String, i32), OffsetCommitValue>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Loading,
    Active,
    Resigned,
}

/// What to do when an append completes.
#[derive(Debug)]
enum PendingAppend {
    Commit {
        parked: Parked,
        group: String,
        entries: Vec<((String, i32), OffsetCommitValue)>,
        response: OffsetCommitResponse,
    },
    GroupSync {
        group: String,
        generation: i32,
        assignments: BTreeMap<String, Bytes>,
    },
    StaticJoin {
        parked: Parked,
        group: String,
        generation: i32,
        old_member_id: String,
        new_member_id: String,
        old_protocols: Vec<(String, Bytes)>,
        old_rebalance_timeout_ms: i32,
        old_session_timeout_ms: i32,
        leader_before: Option<String>,
    },
    /// A snapshot whose completion changes nothing (e.g. a group that emptied).
    Snapshot,
    OffsetDelete {
        parked: Parked,
        group: String,
        partitions: Vec<(String, i32)>,
        response: OffsetDeleteResponse,
    },
    DeleteGroups {
        parked: Parked,
        groups: Vec<String>,
        response: DeleteGroupsResponse,
    },
}

/// Everything the coordinator produces, split from the group table so group
/// logic can borrow one group and the outputs at once.
struct Outputs {
    responses: VecDeque<(RequestId, Response)>,
    appends: VecDeque<AppendRequest>,
    in_flight: VecDeque<(AppendId, PendingAppend)>,
    next_append_id: u64,
    timers: Timers,
    ids: Box<dyn IdSource + Send>,
}

impl Outputs {
    fn respond(&mut self, parked: Parked, response: Response) {
        self.responses.push_back((parked.request, response));
    }

    fn append(&mut self, records: Vec<(Bytes, Option<Bytes>)>, action: PendingAppend) {
        let id = AppendId(self.next_append_id);
        self.next_append_id += 1;
        self.appends.push_back(AppendRequest { id, records });
        self.in_flight.push_back((id, action));
    }

    fn member_id(&mut self, prefix: &str) -> String {
        // Record strings carry an i16 length; keep generated ids inside it.
        format!("{}-{}", clip(prefix), format_uuid(self.ids.next_u128()))
    }
}

/// Per-call context for group logic.
struct Cx<'a> {
    cfg: &'a GroupConfig,
    out: &'a mut Outputs,
    now_ms: i64,
}

/// The classic group coordinator of one `__consumer_offsets` partition.
///
/// Lifecycle: created in the loading phase; the shell replays the partition
/// with [`replay`](Self::replay) and calls
/// [`load_complete`](Self::load_complete); it then serves requests until it is
/// dropped or [`resign`](Self::resign)s (leadership moved). It lives on the
/// shard that leads the partition and is never shared: every method takes
/// `&mut self` and nothing may be called concurrently.
pub struct GroupCoordinator {
    config: GroupConfig,
    phase: Phase,
    groups: BTreeMap<String, Group>,
    /// Committed partitions over all groups.
    offsets_total: usize,
    out: Outputs,
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

fn code(e: ResponseError) -> i16 {
    e.code()
}

const NONE: i16 = 0;

/// Longest protocol type, protocol name or instance id accepted; stored
/// records give strings an i16 length.
const STRING_BYTES_MAX: usize = 4096;

/// Topic names longer than this cannot exist (Kafka allows 249 characters).
const TOPIC_NAME_BYTES_MAX: usize = 255;

/// Client ids and hosts are stored in records with an i16 length; longer
/// ones (which a header cannot carry anyway) are cut at a char boundary.
fn clip(s: &str) -> &str {
    let mut end = s.len().min(STRING_BYTES_MAX);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

// ------------------------------------------------------------ response helpers

#[allow(clippy::too_many_arguments)]
fn make_join(
    version: i16,
    error: i16,
    generation: i32,
    protocol_type: Option<&str>,
    protocol_name: Option<&str>,
    leader: &str,
    member_id: &str,
    members: Vec<JoinGroupResponseMember>,
    skip_assignment: bool,
) -> Response {
    let mut r = JoinGroupResponse::default();
    r.error_code = error;
    r.generation_id = generation;
    r.protocol_type = if version >= 7 { protocol_type.map(sb) } else { None };
    // Versions before 7 cannot carry a null protocol name; Kafka sends "".
    r.protocol_name = match protocol_name {
        Some(p) => Some(sb(p)),
        None if version < 7 => Some(StrBytes::new()),
        None => None,
    };
    r.leader = sb(leader);
    r.member_id = sb(member_id);
    r.members = members;
    r.skip_assignment = version >= 9 && skip_assignment;
    Response::JoinGroup(r)
}

fn join_error(parked: Parked, error: i16, member_id: &str) -> Response {
    make_join(parked.version, error, -1, None, None, "", member_id, Vec::new(), false)
}

fn leader_members(g: &Group, version: i16) -> Vec<JoinGroupResponseMember> {
    let protocol = g.protocol_name.as_deref().unwrap_or("");
    g.members
        .values()
        .map(|m| {
            let mut r = JoinGroupResponseMember::default();
            r.member_id = sb(&m.member_id);
            r.group_instance_id =
                if version >= 5 { m.instance_id.as_deref().map(sb) } else { None };
            r.metadata = m.metadata(protocol).cloned().unwrap_or_default();
            r
        })
        .collect()
}

/// The current generation's JoinGroup answer for `member_id` (the leader also
/// gets every member's metadata).
fn join_success(g: &Group, member_id: &str, version: i16) -> Response {
    let members = if g.is_leader(member_id) { leader_members(g, version) } else { Vec::new() };
    make_join(
        version,
        NONE,
        g.generation,
        g.protocol_type.as_deref(),
        g.protocol_name.as_deref(),
        g.leader.as_deref().unwrap_or(""),
        member_id,
        members,
        false,
    )
}

fn sync_response(version: i16, error: i16, g: Option<&Group>, assignment: Bytes) -> Response {
    let mut r = SyncGroupResponse::default();
    r.error_code = error;
    r.assignment = assignment;
    if let Some(g) = g.filter(|_| version >= 5 && error == NONE) {
        r.protocol_type = g.protocol_type.as_deref().map(sb);
        r.protocol_name = g.protocol_name.as_deref().map(sb);
    }
    Response::SyncGroup(r)
}

fn sync_error(parked: Parked, error: i16) -> Response {
    sync_response(parked.version, error, None, Bytes::new())
}

fn heartbeat_response(error: i16) -> Response {
    let mut r = HeartbeatResponse::default();
    r.error_code = error;
    Response::Heartbeat(r)
}

// ------------------------------------------------------------ group logic

fn set_heartbeat(g: &Group, member_id: &str, cx: &mut Cx<'_>) {
    let Some(m) = g.members.get(member_id) else { return };
    let key = TimerKey::Heartbeat(g.group_id.clone(), member_id.to_owned());
    cx.out.timers.set(key, cx.now_ms + i64::from(m.session_timeout_ms));
}

fn cancel_heartbeat(g: &Group, member_id: &str, cx: &mut Cx<'_>) {
    cx.out.timers.cancel(&TimerKey::Heartbeat(g.group_id.clone(), member_id.to_owned()));
}

fn prepare_rebalance(g: &mut Group, cx: &mut Cx<'_>) {
    if g.is(GroupState::CompletingRebalance) {
        // The assignment being collected is void; members waiting for it rejoin.
        let mut parked = Vec::new();
        for m in g.members.values_mut() {
            m.assignment = Bytes::new();
            if let Some(p) = m.awaiting_sync.take() {
                parked.push((m.member_id.clone(), p));
            }
        }
        for (id, p) in parked {
            cx.out.respond(p, sync_error(p, code(ResponseError::RebalanceInProgress)));
            set_heartbeat(g, &id, cx);
        }
    }
    g.pending_sync.clear();
    g.sync_append_in_flight = false;
    cx.out.timers.cancel(&TimerKey::PendingSync(g.group_id.clone()));
    let rebalance_ms = g.rebalance_timeout_ms();
    let (phase, delay_ms) = if g.is(GroupState::Empty) {
        let delay = i64::from(cx.cfg.initial_rebalance_delay_ms).min(rebalance_ms);
        (JoinPhase::Initial { remaining_ms: rebalance_ms - delay }, delay)
    } else {
        (JoinPhase::Normal, rebalance_ms)
    };
    g.join_phase = Some(phase);
    g.new_member_added = false;
    g.transition(GroupState::PreparingRebalance, cx.now_ms);
    cx.out.timers.set(TimerKey::Join(g.group_id.clone()), cx.now_ms + delay_ms);
}

fn maybe_prepare_rebalance(g: &mut Group, cx: &mut Cx<'_>) {
    if matches!(g.state, GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty) {
        prepare_rebalance(g, cx);
    }
}

fn try_complete_join(g: &mut Group, cx: &mut Cx<'_>) {
    if g.is(GroupState::PreparingRebalance)
        && g.join_phase == Some(JoinPhase::Normal)
        && g.all_joined()
    {
        complete_join(g, cx);
    }
}

fn emit_snapshot(
    g: &mut Group,
    cx: &mut Cx<'_>,
    assignments: Option<&BTreeMap<String, Bytes>>,
    action: PendingAppend,
) {
    let value = g.metadata_value(assignments, cx.now_ms);
    let key = RecordKey::GroupMetadata { group: g.group_id.clone() }.encode();
    cx.out.append(vec![(key, Some(value.encode()))], action);
    g.persisted = true;
}

/// Ends the join phase: drops dynamic members that did not rejoin, starts
/// the next generation and answers every parked JoinGroup.
fn complete_join(g: &mut Group, cx: &mut Cx<'_>) {
    assert!(g.is(GroupState::PreparingRebalance));
    cx.out.timers.cancel(&TimerKey::Join(g.group_id.clone()));
    g.join_phase = None;
    let gone: Vec<String> = g
        .members
        .values()
        .filter(|m| m.awaiting_join.is_none() && m.instance_id.is_none())
        .map(|m| m.member_id.clone())
        .collect();
    for id in gone {
        cancel_heartbeat(g, &id, cx);
        g.remove_member(&id);
    }
    if !g.members.is_empty() {
        let leader_joined = g
            .leader
            .as_ref()
            .and_then(|l| g.members.get(l))
            .is_some_and(|m| m.awaiting_join.is_some());
        if !leader_joined {
            match g.members.values().find(|m| m.awaiting_join.is_some()) {
                Some(m) => g.leader = Some(m.member_id.clone()),
                None => {
                    // Only static members that have not rejoined remain: wait
                    // another rebalance timeout for them to rejoin or expire.
                    g.join_phase = Some(JoinPhase::Normal);
                    let at = cx.now_ms + g.rebalance_timeout_ms();
                    cx.out.timers.set(TimerKey::Join(g.group_id.clone()), at);
                    return;
                }
            }
        }
    }
    g.generation += 1;
    if g.members.is_empty() {
        g.protocol_name = None;
        g.leader = None;
        g.subscribed_topics = None;
        g.transition(GroupState::Empty, cx.now_ms);
        emit_snapshot(g, cx, None, PendingAppend::Snapshot);
        return;
    }
    let protocol = g.select_protocol();
    assert!(protocol.is_some(), "joined members always share a protocol");
    g.protocol_name = protocol;
    g.subscribed_topics = g.compute_subscribed_topics();
    g.transition(GroupState::CompletingRebalance, cx.now_ms);
    g.sync_append_in_flight = false;
    g.pending_sync = g.members.keys().cloned().collect();
    let at = cx.now_ms + g.rebalance_timeout_ms();
    cx.out.timers.set(TimerKey::PendingSync(g.group_id.clone()), at);
    let mut parked = Vec::new();
    for m in g.members.values_mut() {
        m.is_new = false;
        if let Some(p) = m.awaiting_join.take() {
            parked.push((m.member_id.clone(), p));
        }
    }
    for (id, p) in parked {
        cx.out.respond(p, join_success(g, &id, p.version));
    }
    let ids: Vec<String> = g.members.keys().cloned().collect();
    for id in ids {
        set_heartbeat(g, &id, cx);
    }
}

/// Removes a member (session expiry, LeaveGroup) and moves the group on, as
/// Kafka's `removeMemberAndUpdateGroup`.
fn remove_member_and_update(g: &mut Group, member_id: &str, cx: &mut Cx<'_>) {
    cancel_heartbeat(g, member_id, cx);
    let Some(m) = g.remove_member(member_id) else { return };
    if let Some(p) = m.awaiting_join {
        cx.out.respond(p, join_error(p, code(ResponseError::UnknownMemberId), member_id));
    }
    if let Some(p) = m.awaiting_sync {
        cx.out.respond(p, sync_error(p, code(ResponseError::UnknownMemberId)));
    }
    match g.state {
        GroupState::Dead | GroupState::Empty => {}
        GroupState::Stable | GroupState::CompletingRebalance => prepare_rebalance(g, cx),
        GroupState::PreparingRebalance => try_complete_join(g, cx),
    }
}

/// What a JoinGroup asks for, normalised.
struct JoinArgs<'a> {
    parked: Parked,
    instance_id: Option<String>,
    client: ClientInfo<'a>,
    protocol_type: String,
    protocols: Vec<(String, Bytes)>,
    rebalance_timeout_ms: i32,
    session_timeout_ms: i32,
}

fn add_member_and_rebalance(g: &mut Group, member_id: String, args: JoinArgs<'_>, cx: &mut Cx<'_>) {
    if g.members.is_empty() {
        g.protocol_type = Some(args.protocol_type.clone());
    }
    if let Some(instance) = &args.instance_id {
        g.static_members.insert(instance.clone(), member_id.clone());
    }
    if g.leader.is_none() {
        g.leader = Some(member_id.clone());
    }
    g.members.insert(
        member_id.clone(),
        Member {
            member_id: member_id.clone(),
            instance_id: args.instance_id,
            client_id: clip(args.client.client_id).to_owned(),
            client_host: clip(args.client.client_host).to_owned(),
            rebalance_timeout_ms: args.rebalance_timeout_ms,
            session_timeout_ms: args.session_timeout_ms,
            protocols: args.protocols,
            assignment: Bytes::new(),
            awaiting_join: Some(args.parked),
            awaiting_sync: None,
            is_new: true,
        },
    );
    // A new member arriving during the first rebalance extends its delay.
    if g.is(GroupState::PreparingRebalance) && g.generation == 0 {
        g.new_member_added = true;
    }
    // A new member that never completes its first join is dropped after the
    // new-member timeout even if the rebalance is stuck.
    let key = TimerKey::Heartbeat(g.group_id.clone(), member_id);
    cx.out.timers.set(key, cx.now_ms + i64::from(cx.cfg.new_member_join_timeout_ms));
    maybe_prepare_rebalance(g, cx);
    try_complete_join(g, cx);
}

fn update_member_and_rebalance(
    g: &mut Group,
    member_id: &str,
    args: JoinArgs<'_>,
    cx: &mut Cx<'_>,
) {
    let m = g.members.get_mut(member_id).expect("caller checked membership");
    m.protocols = args.protocols;
    m.rebalance_timeout_ms = args.rebalance_timeout_ms;
    m.session_timeout_ms = args.session_timeout_ms;
    if let Some(old) = m.awaiting_join.replace(args.parked) {
        // A second JoinGroup supersedes the first; every request gets an answer.
        cx.out.respond(old, join_error(old, code(ResponseError::RebalanceInProgress), member_id));
    }
    // A member waiting in a join is kept alive by the join phase's own timeout.
    cancel_heartbeat(g, member_id, cx);
    maybe_prepare_rebalance(g, cx);
    try_complete_join(g, cx);
}

/// Moves member `from` to id `to` (static member replacement and its revert).
fn rename_member(g: &mut Group, from: &str, to: &str, cx: &mut Cx<'_>) -> Option<()> {
    let mut m = g.members.remove(from)?;
    cancel_heartbeat(g, from, cx);
    m.member_id = to.to_owned();
    if let Some(instance) = &m.instance_id {
        g.static_members.insert(instance.clone(), to.to_owned());
    }
    if g.is_leader(from) {
        g.leader = Some(to.to_owned());
    }
    if g.pending_sync.remove(from) {
        g.pending_sync.insert(to.to_owned());
    }
    g.members.insert(to.to_owned(), m);
    Some(())
}

/// A known static member rejoined with an unknown member id (it restarted):
/// the new id replaces the old, which is fenced; Kafka's
/// `updateStaticMemberAndRebalance`.
fn replace_static_member(g: &mut Group, old_id: String, args: JoinArgs<'_>, cx: &mut Cx<'_>) {
    let prefix = args.instance_id.clone().unwrap_or_default();
    let new_id = cx.out.member_id(&prefix);
    let leader_before = g.leader.clone();
    {
        let m = g.members.get_mut(&old_id).expect("static member map points at members");
        if let Some(p) = m.awaiting_join.take() {
            cx.out.respond(p, join_error(p, code(ResponseError::FencedInstanceId), &old_id));
        }
        if let Some(p) = m.awaiting_sync.take() {
            cx.out.respond(p, sync_error(p, code(ResponseError::FencedInstanceId)));
        }
    }
    rename_member(g, &old_id, &new_id, cx).expect("member present");
    let m = g.members.get_mut(&new_id).expect("renamed");
    let old_protocols = std::mem::replace(&mut m.protocols, args.protocols);
    let old_rebalance_timeout_ms =
        std::mem::replace(&mut m.rebalance_timeout_ms, args.rebalance_timeout_ms);
    let old_session_timeout_ms =
        std::mem::replace(&mut m.session_timeout_ms, args.session_timeout_ms);
    match g.state {
        GroupState::Stable if g.select_protocol() == g.protocol_name => {
            // Nothing the assignment depends on changed: persist the new id and
            // answer once it is durable, without a rebalance.
            set_heartbeat(g, &new_id, cx);
            let action = PendingAppend::StaticJoin {
                parked: args.parked,
                group: g.group_id.clone(),
                generation: g.generation,
                old_member_id: old_id,
                new_member_id: new_id,
                old_protocols,
                old_rebalance_timeout_ms,
                old_session_timeout_ms,
                leader_before,
            };
            emit_snapshot(g, cx, None, action);
        }
        GroupState::Stable | GroupState::CompletingRebalance => {
            // The leader may already have assigned the old id; rebalance.
            g.members.get_mut(&new_id).expect("renamed").awaiting_join = Some(args.parked);
            cancel_heartbeat(g, &new_id, cx);
            prepare_rebalance(g, cx);
        }
        GroupState::PreparingRebalance => {
            g.members.get_mut(&new_id).expect("renamed").awaiting_join = Some(args.parked);
            cancel_heartbeat(g, &new_id, cx);
            try_complete_join(g, cx);
        }
        GroupState::Empty | GroupState::Dead => {
            unreachable!("a group with a registered static member has members and is not dead")
        }
    }
}

impl GroupCoordinator {
    /// A coordinator in the loading phase: replay the partition, then call
    /// [`load_complete`](Self::load_complete).
    pub fn new(config: GroupConfig, ids: Box<dyn IdSource + Send>) -> Self {
        config.validate();
        GroupCoordinator {
            config,
            phase: Phase::Loading,
            groups: BTreeMap::new(),
            offsets_total: 0,
            out: Outputs {
                responses: VecDeque::new(),
                appends: VecDeque::new(),
                in_flight: VecDeque::new(),
                next_append_id: 0,
                timers: Timers::default(),
                ids,
            },
        }
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    // -------------------------------------------------------------- outputs

    /// The next response to send. Every request gets exactly one response.
    pub fn poll_response(&mut self) -> Option<(RequestId, Response)> {
        self.out.responses.pop_front()
    }

    /// The next batch of records to append to the partition.
    pub fn poll_append(&mut self) -> Option<AppendRequest> {
        self.out.appends.pop_front()
    }

    /// When [`handle_tick`](Self::handle_tick) must next be called.
    pub fn next_timer_ms(&self) -> Option<i64> {
        self.out.timers.next_ms()
    }

    /// Fires every timer due at `now_ms`.
    pub fn handle_tick(&mut self, now_ms: i64) {
        self.run_timers(now_ms);
    }

    // -------------------------------------------------------------- loading

    /// Applies one record of the partition, in log order, while loading.
    /// Records of kinds this coordinator does not own are skipped. Limits do
    /// not apply: the log is the authority on what exists.
    pub fn replay(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), ReplayError> {
        if self.phase != Phase::Loading {
            return Err(ReplayError::NotLoading);
        }
        match RecordKey::decode(key)? {
            None => {}
            Some(RecordKey::OffsetCommit { group, topic, partition }) => match value {
                Some(v) => {
                    let v = OffsetCommitValue::decode(v)?;
                    let g =
                        self.groups.entry(group.clone()).or_insert_with(|| Group::new(group, -1));
                    g.offsets.insert((topic, partition), v);
                }
                None => {
                    if let Some(g) = self.groups.get_mut(&group) {
                        g.offsets.remove(&(topic, partition));
                    }
                }
            },
            Some(RecordKey::GroupMetadata { group }) => match value {
                Some(v) => {
                    let v = GroupMetadataValue::decode(v)?;
                    let g =
                        self.groups.entry(group.clone()).or_insert_with(|| Group::new(group, -1));
                    g.load_metadata(v);
                }
                None => {
                    if let Some(g) = self.groups.get_mut(&group) {
                        g.clear_metadata();
                    }
                }
            },
        }
        Ok(())
    }

    /// Ends loading: groups left with neither metadata nor offsets are gone;
    /// loaded members get a full session to heartbeat again.
    pub fn load_complete(&mut self, now_ms: i64) {
        assert_eq!(self.phase, Phase::Loading, "load_complete called twice");
        self.groups.retain(|_, g| g.persisted || !g.offsets.is_empty());
        self.offsets_total = self.groups.values().map(|g| g.offsets.len()).sum();
        self.phase = Phase::Active;
        let mut cx = Cx { cfg: &self.config, out: &mut self.out, now_ms };
        for g in self.groups.values() {
            for id in g.members.keys() {
                set_heartbeat(g, id, &mut cx);
            }
        }
    }

    /// Leadership of the partition moved away: answers every parked request
    /// with NOT_COORDINATOR and forgets all state. Later requests get
    /// NOT_COORDINATOR; later `append_done` calls are ignored.
    pub fn resign(&mut self) {
        let not_coordinator = code(ResponseError::NotCoordinator);
        for g in std::mem::take(&mut self.groups).into_values() {
            for m in g.members.into_values() {
                if let Some(p) = m.awaiting_join {
                    self.out.respond(p, join_error(p, not_coordinator, &m.member_id));
                }
                if let Some(p) = m.awaiting_sync {
                    self.out.respond(p, sync_error(p, not_coordinator));
                }
            }
        }
        for (_, action) in std::mem::take(&mut self.out.in_flight) {
            self.fail_action(action, AppendFailure::NotLeader, 0);
        }
        self.out.appends.clear();
        self.out.timers.clear();
        self.offsets_total = 0;
        self.phase = Phase::Resigned;
    }

    // -------------------------------------------------------------- appends

    /// The shell appended (or failed to append) the records of `id`. Appends
    /// complete in the order they were polled; the coordinator asserts it.
    pub fn append_done(&mut self, id: AppendId, result: Result<(), AppendFailure>, now_ms: i64) {
        if self.phase != Phase::Active {
            return;
        }
        let (expected, action) =
            self.out.in_flight.pop_front().expect("append_done without an append in flight");
        assert_eq!(expected, id, "appends must complete in the order they were polled");
        match result {
            Ok(()) => self.complete_action(action, now_ms),
            Err(failure) => self.fail_action(action, failure, now_ms),
        }
        self.run_timers(now_ms);
    }

    fn complete_action(&mut self, action: PendingAppend, now_ms: i64) {
        let mut cx = Cx { cfg: &self.config, out: &mut self.out, now_ms };
        match action {
            PendingAppend::Commit { parked, group, entries, response } => {
                if let Some(g) = self.groups.get_mut(&group) {
                    for (key, value) in entries {
                        release_pending(g, &key);
                        if g.offsets.insert(key, value).is_none() {
                            self.offsets_total += 1;
                        }
                    }
                }
                cx.out.respond(parked, Response::OffsetCommit(response));
            }
            PendingAppend::GroupSync { group, generation, assignments } => {
                let Some(g) = self.groups.get_mut(&group) else { return };
                if g.generation != generation || !g.is(GroupState::CompletingRebalance) {
                    return;
                }
                g.sync_append_in_flight = false;
                for (id, assignment) in assignments {
                    if let Some(m) = g.members.get_mut(&id) {
                        m.assignment = assignment;
                    }
                }
                g.transition(GroupState::Stable, now_ms);
                let mut parked = Vec::new();
                for m in g.members.values_mut() {
                    if let Some(p) = m.awaiting_sync.take() {
                        parked.push((m.member_id.clone(), p));
                    }
                }
                for (id, p) in parked {
                    let assignment = g.members[&id].assignment.clone();
                    cx.out.respond(p, sync_response(p.version, NONE, Some(g), assignment));
                    set_heartbeat(g, &id, &mut cx);
                }
            }
            PendingAppend::StaticJoin { parked, group, new_member_id, leader_before, .. } => {
                let Some(g) =
                    self.groups.get(&group).filter(|g| g.members.contains_key(&new_member_id))
                else {
                    cx.out.respond(
                        parked,
                        join_error(parked, code(ResponseError::UnknownMemberId), &new_member_id),
                    );
                    return;
                };
                let response = if parked.version >= 9 {
                    // KIP-814: a static leader learns it leads but skips assigning.
                    let is_leader = g.is_leader(&new_member_id);
                    make_join(
                        parked.version,
                        NONE,
                        g.generation,
                        g.protocol_type.as_deref(),
                        g.protocol_name.as_deref(),
                        g.leader.as_deref().unwrap_or(""),
                        &new_member_id,
                        if is_leader { leader_members(g, parked.version) } else { Vec::new() },
                        is_leader,
                    )
                } else {
                    // Older clients get the previous leader id, so a restarted
                    // leader does not think it must assign (the stable group
                    // would not distribute it).
                    make_join(
                        parked.version,
                        NONE,
                        g.generation,
                        g.protocol_type.as_deref(),
                        g.protocol_name.as_deref(),
                        leader_before.as_deref().unwrap_or(""),
                        &new_member_id,
                        Vec::new(),
                        false,
                    )
                };
                cx.out.respond(parked, response);
            }
            PendingAppend::Snapshot => {}
            PendingAppend::OffsetDelete { parked, group, partitions, response } => {
                if let Some(g) = self.groups.get_mut(&group) {
                    for key in partitions {
                        if g.offsets.remove(&key).is_some() {
                            self.offsets_total -= 1;
                        }
                    }
                }
                cx.out.respond(parked, Response::OffsetDelete(response));
                self.maybe_forget(&group);
            }
            PendingAppend::DeleteGroups { parked, groups, response } => {
                for id in groups {
                    if self.groups.get(&id).is_some_and(|g| g.is(GroupState::Dead)) {
                        let g = self.groups.remove(&id).expect("checked");
                        self.offsets_total -= g.offsets.len();
                    }
                }
                cx.out.respond(parked, Response::DeleteGroups(response));
            }
        }
    }

    fn fail_action(&mut self, action: PendingAppend, failure: AppendFailure, now_ms: i64) {
        let mut cx = Cx { cfg: &self.config, out: &mut self.out, now_ms };
        match action {
            PendingAppend::Commit { parked, group, entries, mut response } => {
                if let Some(g) = self.groups.get_mut(&group) {
                    for (key, _) in &entries {
                        release_pending(g, key);
                    }
                }
                for p in response.topics.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
                    if p.error_code == NONE {
                        p.error_code = failure.commit_error();
                    }
                }
                cx.out.respond(parked, Response::OffsetCommit(response));
                self.maybe_forget(&group);
            }
            PendingAppend::GroupSync { group, generation, .. } => {
                let Some(g) = self.groups.get_mut(&group) else { return };
                if g.generation != generation || !g.is(GroupState::CompletingRebalance) {
                    return;
                }
                let error = failure.group_error();
                let mut parked = Vec::new();
                for m in g.members.values_mut() {
                    m.assignment = Bytes::new();
                    if let Some(p) = m.awaiting_sync.take() {
                        parked.push((m.member_id.clone(), p));
                    }
                }
                for (id, p) in parked {
                    cx.out.respond(p, sync_error(p, error));
                    set_heartbeat(g, &id, &mut cx);
                }
                prepare_rebalance(g, &mut cx);
            }
            PendingAppend::StaticJoin {
                parked,
                group,
                generation,
                old_member_id,
                new_member_id,
                old_protocols,
                old_rebalance_timeout_ms,
                old_session_timeout_ms,
                ..
            } => {
                if let Some(g) = self.groups.get_mut(&group) {
                    let unchanged = g.generation == generation && g.is(GroupState::Stable);
                    if unchanged
                        && rename_member(g, &new_member_id, &old_member_id, &mut cx).is_some()
                    {
                        let m = g.members.get_mut(&old_member_id).expect("renamed");
                        m.protocols = old_protocols;
                        m.rebalance_timeout_ms = old_rebalance_timeout_ms;
                        m.session_timeout_ms = old_session_timeout_ms;
                        set_heartbeat(g, &old_member_id, &mut cx);
                    }
                }
                cx.out.respond(parked, join_error(parked, failure.group_error(), &new_member_id));
            }
            PendingAppend::Snapshot => {}
            PendingAppend::OffsetDelete { parked, response, .. } => {
                let mut response = response;
                for p in response.topics.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
                    if p.error_code == NONE {
                        p.error_code = failure.group_error();
                    }
                }
                cx.out.respond(parked, Response::OffsetDelete(response));
            }
            PendingAppend::DeleteGroups { parked, groups, mut response } => {
                for id in &groups {
                    if let Some(g) = self.groups.get_mut(id).filter(|g| g.is(GroupState::Dead)) {
                        g.transition(GroupState::Empty, now_ms);
                    }
                }
                for r in &mut response.results {
                    if r.error_code == NONE {
                        r.error_code = failure.group_error();
                    }
                }
                cx.out.respond(parked, Response::DeleteGroups(response));
            }
        }
    }

    // -------------------------------------------------------------- helpers

    /// The error a request about `group_id` gets before looking at the group,
    /// in Kafka's order: invalid id, not active, loading, not the coordinator.
    fn check_group(&self, group_id: &str, empty_id_allowed: bool) -> Option<i16> {
        if (group_id.is_empty() && !empty_id_allowed)
            || group_id.len() > self.config.limits.group_id_bytes_max
        {
            return Some(code(ResponseError::InvalidGroupId));
        }
        match self.phase {
            Phase::Loading => return Some(code(ResponseError::CoordinatorLoadInProgress)),
            Phase::Resigned => return Some(code(ResponseError::NotCoordinator)),
            Phase::Active => {}
        }
        if partition_for(group_id, self.config.num_partitions) != self.config.partition {
            return Some(code(ResponseError::NotCoordinator));
        }
        None
    }

    fn cx(&mut self, now_ms: i64) -> (&mut BTreeMap<String, Group>, Cx<'_>) {
        (&mut self.groups, Cx { cfg: &self.config, out: &mut self.out, now_ms })
    }

    /// Drops a group that holds nothing worth keeping and was never written.
    fn maybe_forget(&mut self, group_id: &str) {
        let forget = self.groups.get(group_id).is_some_and(|g| {
            g.is(GroupState::Empty)
                && !g.persisted
                && g.members.is_empty()
                && g.pending_members.is_empty()
                && g.offsets.is_empty()
                && g.pending_offsets.is_empty()
        });
        if forget {
            self.groups.remove(group_id);
        }
    }

    fn run_timers(&mut self, now_ms: i64) {
        while let Some(key) = self.out.timers.pop_due(now_ms) {
            if let Some(group) = self.fire(key, now_ms) {
                self.maybe_forget(&group);
            }
        }
    }

    /// Fires one timer; returns a group that may have become forgettable.
    fn fire(&mut self, key: TimerKey, now_ms: i64) -> Option<String> {
        let (groups, mut cx) = self.cx(now_ms);
        match key {
            TimerKey::Join(group) => {
                let g = groups.get_mut(&group)?;
                if !g.is(GroupState::PreparingRebalance) {
                    return None;
                }
                match g.join_phase {
                    Some(JoinPhase::Initial { remaining_ms })
                        if g.new_member_added && remaining_ms > 0 =>
                    {
                        g.new_member_added = false;
                        let delay = i64::from(cx.cfg.initial_rebalance_delay_ms).min(remaining_ms);
                        g.join_phase =
                            Some(JoinPhase::Initial { remaining_ms: remaining_ms - delay });
                        cx.out.timers.set(TimerKey::Join(group), now_ms + delay);
                    }
                    _ => complete_join(g, &mut cx),
                }
                None
            }
            TimerKey::Heartbeat(group, member) => {
                let g = groups.get_mut(&group)?;
                let m = g.members.get(&member)?;
                if m.awaiting_sync.is_some() || (m.awaiting_join.is_some() && !m.is_new) {
                    return None;
                }
                remove_member_and_update(g, &member, &mut cx);
                Some(group)
            }
            TimerKey::PendingMember(group, member) => {
                let g = groups.get_mut(&group)?;
                if g.pending_members.remove(&member) {
                    try_complete_join(g, &mut cx);
                }
                Some(group)
            }
            TimerKey::PendingSync(group) => {
                let g = groups.get_mut(&group)?;
                if !matches!(g.state, GroupState::CompletingRebalance | GroupState::Stable)
                    || g.pending_sync.is_empty()
                {
                    return None;
                }
                let laggards: Vec<String> =
                    std::mem::take(&mut g.pending_sync).into_iter().collect();
                for id in laggards {
                    cancel_heartbeat(g, &id, &mut cx);
                    let parked = g.remove_member(&id).and_then(|m| m.awaiting_join);
                    if let Some(p) = parked {
                        cx.out.respond(p, join_error(p, code(ResponseError::UnknownMemberId), &id));
                    }
                }
                prepare_rebalance(g, &mut cx);
                None
            }
        }
    }

    // -------------------------------------------------------------- JoinGroup

    /// JoinGroup (v0–v9). The answer comes when the rebalance completes, or
    /// at once for errors and MEMBER_ID_REQUIRED.
    pub fn handle_join_group(
        &mut self,
        id: RequestId,
        api_version: i16,
        client: ClientInfo<'_>,
        req: &JoinGroupRequest,
        now_ms: i64,
    ) {
        let parked = Parked { request: id, version: api_version };
        let group_id = req.group_id.0.as_str();
        let member_id = req.member_id.as_str();
        if let Some(error) = self.join_group(parked, client, req, now_ms) {
            self.out.respond(parked, join_error(parked, error, member_id));
        }
        self.maybe_forget(group_id);
        self.run_timers(now_ms);
    }

    fn join_group(
        &mut self,
        parked: Parked,
        client: ClientInfo<'_>,
        req: &JoinGroupRequest,
        now_ms: i64,
    ) -> Option<i16> {
        let group_id = req.group_id.0.as_str();
        let member_id = req.member_id.as_str();
        if let Some(error) = self.check_group(group_id, false) {
            return Some(error);
        }
        let limits = &self.config.limits;
        let session = req.session_timeout_ms;
        if session < self.config.session_timeout_ms_min
            || session > self.config.session_timeout_ms_max
        {
            return Some(code(ResponseError::InvalidSessionTimeout));
        }
        // Version 0 has no rebalance timeout: Kafka uses the session timeout.
        let rebalance = if parked.version == 0 || req.rebalance_timeout_ms <= 0 {
            session
        } else {
            req.rebalance_timeout_ms
        };
        let metadata_bytes: usize =
            req.protocols.iter().map(|p| p.metadata.len() + p.name.len()).sum();
        if req.protocols.len() > limits.protocols_per_member_max
            || metadata_bytes > limits.member_metadata_bytes_max
        {
            return Some(code(ResponseError::InvalidRequest));
        }
        // Flexible versions allow strings longer than the i16 lengths of the
        // stored records; nothing legitimate comes close to this bound.
        let too_long = |s: &str| s.len() > STRING_BYTES_MAX;
        if too_long(req.protocol_type.as_str())
            || req.protocols.iter().any(|p| too_long(p.name.as_str()))
            || req.group_instance_id.as_ref().is_some_and(|i| too_long(i.as_str()))
        {
            return Some(code(ResponseError::InvalidRequest));
        }
        let protocols: Vec<(String, Bytes)> = req
            .protocols
            .iter()
            .map(|p| (p.name.as_str().to_owned(), p.metadata.clone()))
            .collect();
        let instance_id = if parked.version >= 5 {
            req.group_instance_id.as_ref().map(|i| i.as_str().to_owned())
        } else {
            None
        };
        if !self.groups.contains_key(group_id) {
            if !member_id.is_empty() {
                return Some(code(ResponseError::UnknownMemberId));
            }
            if self.groups.len() >= limits.groups_max {
                return Some(code(ResponseError::CoordinatorNotAvailable));
            }
            self.groups.insert(group_id.to_owned(), Group::new(group_id.to_owned(), now_ms));
        }
        let members_max = limits.members_per_group_max;
        let record_max = limits.group_record_bytes_max;
        let (groups, mut cx) = self.cx(now_ms);
        let g = groups.get_mut(group_id).expect("present");
        if g.is(GroupState::Dead) {
            return Some(code(ResponseError::CoordinatorNotAvailable));
        }
        if !g.supports_protocols(req.protocol_type.as_str(), &protocols) {
            return Some(code(ResponseError::InconsistentGroupProtocol));
        }
        let args = JoinArgs {
            parked,
            instance_id,
            client,
            protocol_type: req.protocol_type.as_str().to_owned(),
            protocols,
            rebalance_timeout_ms: rebalance,
            session_timeout_ms: session,
        };
        // A snapshot holds every member's metadata; keep it appendable.
        let group_bytes: usize = g
            .members
            .values()
            .map(|m| m.protocols.iter().map(|(_, b)| b.len()).max().unwrap_or(0) + 256)
            .sum();
        let too_big = group_bytes + metadata_bytes + 256 > record_max;

        if member_id.is_empty() {
            let known_static =
                args.instance_id.as_ref().and_then(|i| g.static_members.get(i)).cloned();
            if let Some(old_id) = known_static {
                replace_static_member(g, old_id, args, &mut cx);
                return None;
            }
            if g.size_with_pending() >= members_max || too_big {
                return Some(code(ResponseError::GroupMaxSizeReached));
            }
            if args.instance_id.is_some() || parked.version < 4 {
                let prefix =
                    args.instance_id.clone().unwrap_or_else(|| client.client_id.to_owned());
                let new_id = cx.out.member_id(&prefix);
                add_member_and_rebalance(g, new_id, args, &mut cx);
                return None;
            }
            // KIP-394: hand out an id and make the client join again with it,
            // so a retried first join cannot leave a ghost member behind.
            let new_id = cx.out.member_id(client.client_id);
            g.pending_members.insert(new_id.clone());
            let key = TimerKey::PendingMember(g.group_id.clone(), new_id.clone());
            cx.out.timers.set(key, now_ms + i64::from(session));
            cx.out.respond(
                parked,
                join_error(parked, code(ResponseError::MemberIdRequired), &new_id),
            );
            return None;
        }

        if g.pending_members.contains(member_id) {
            if g.members.len() >= members_max || too_big {
                return Some(code(ResponseError::GroupMaxSizeReached));
            }
            g.pending_members.remove(member_id);
            cx.out
                .timers
                .cancel(&TimerKey::PendingMember(g.group_id.clone(), member_id.to_owned()));
            add_member_and_rebalance(g, member_id.to_owned(), args, &mut cx);
            return None;
        }
        if g.is_static_fenced(member_id, args.instance_id.as_deref()) {
            return Some(code(ResponseError::FencedInstanceId));
        }
        let Some(m) = g.members.get(member_id) else {
            return Some(code(ResponseError::UnknownMemberId));
        };
        let same_metadata = m.protocols_match(&args.protocols);
        match g.state {
            GroupState::PreparingRebalance => {
                update_member_and_rebalance(g, member_id, args, &mut cx)
            }
            GroupState::CompletingRebalance if same_metadata => {
                // The member missed its JoinGroup response: resend it.
                cx.out.respond(parked, join_success(g, member_id, parked.version));
            }
            GroupState::Stable if same_metadata && !g.is_leader(member_id) => {
                set_heartbeat(g, member_id, &mut cx);
                cx.out.respond(parked, join_success(g, member_id, parked.version));
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                update_member_and_rebalance(g, member_id, args, &mut cx)
            }
            GroupState::Empty | GroupState::Dead => {
                return Some(code(ResponseError::UnknownMemberId));
            }
        }
        None
    }

    // -------------------------------------------------------------- SyncGroup

    /// SyncGroup (v0–v5). Followers wait for the leader's assignment; the
    /// leader's assignment is answered once the group snapshot is appended.
    pub fn handle_sync_group(
        &mut self,
        id: RequestId,
        api_version: i16,
        req: &SyncGroupRequest,
        now_ms: i64,
    ) {
        let parked = Parked { request: id, version: api_version };
        if let Some(error) = self.sync_group(parked, req, now_ms) {
            self.out.respond(parked, sync_error(parked, error));
        }
        self.run_timers(now_ms);
    }

    fn sync_group(&mut self, parked: Parked, req: &SyncGroupRequest, now_ms: i64) -> Option<i16> {
        let group_id = req.group_id.0.as_str();
        let member_id = req.member_id.as_str();
        if let Some(error) = self.check_group(group_id, false) {
            return Some(error);
        }
        let assignment_max = self.config.limits.assignment_bytes_max;
        let record_max = self.config.limits.group_record_bytes_max;
        let (groups, mut cx) = self.cx(now_ms);
        let Some(g) = groups.get_mut(group_id) else {
            return Some(code(ResponseError::UnknownMemberId));
        };
        let instance_id = if parked.version >= 3 {
            req.group_instance_id.as_ref().map(|i| i.as_str())
        } else {
            None
        };
        if g.is(GroupState::Dead) {
            return Some(code(ResponseError::CoordinatorNotAvailable));
        }
        if g.is_static_fenced(member_id, instance_id) {
            return Some(code(ResponseError::FencedInstanceId));
        }
        if !g.members.contains_key(member_id) {
            return Some(code(ResponseError::UnknownMemberId));
        }
        if req.generation_id != g.generation {
            return Some(code(ResponseError::IllegalGeneration));
        }
        let inconsistent = |asked: &Option<StrBytes>, have: &Option<String>| {
            asked.as_ref().is_some_and(|a| have.as_deref() != Some(a.as_str()))
        };
        if inconsistent(&req.protocol_type, &g.protocol_type)
            || inconsistent(&req.protocol_name, &g.protocol_name)
        {
            return Some(code(ResponseError::InconsistentGroupProtocol));
        }
        match g.state {
            GroupState::Empty | GroupState::Dead => Some(code(ResponseError::UnknownMemberId)),
            GroupState::PreparingRebalance => Some(code(ResponseError::RebalanceInProgress)),
            GroupState::Stable => {
                g.pending_sync.remove(member_id);
                set_heartbeat(g, member_id, &mut cx);
                let assignment = g.members[member_id].assignment.clone();
                cx.out.respond(parked, sync_response(parked.version, NONE, Some(g), assignment));
                None
            }
            GroupState::CompletingRebalance => {
                let is_leader = g.is_leader(member_id);
                if is_leader && req.assignments.iter().any(|a| a.assignment.len() > assignment_max)
                {
                    return Some(code(ResponseError::InvalidRequest));
                }
                g.pending_sync.remove(member_id);
                cancel_heartbeat(g, member_id, &mut cx);
                let m = g.members.get_mut(member_id).expect("checked");
                if let Some(old) = m.awaiting_sync.replace(parked) {
                    cx.out.respond(old, sync_error(old, code(ResponseError::RebalanceInProgress)));
                }
                if is_leader && !g.sync_append_in_flight {
                    let mut assignments: BTreeMap<String, Bytes> =
                        g.members.keys().map(|id| (id.clone(), Bytes::new())).collect();
                    for a in &req.assignments {
                        if let Some(slot) = assignments.get_mut(a.member_id.as_str()) {
                            *slot = a.assignment.clone();
                        }
                    }
                    if g.metadata_value(Some(&assignments), now_ms).encoded_len_estimate()
                        > record_max
                    {
                        // Kafka fails the same way when the snapshot exceeds
                        // the partition's message size: everyone rejoins.
                        let mut parked_syncs = Vec::new();
                        for m in g.members.values_mut() {
                            if let Some(p) = m.awaiting_sync.take() {
                                parked_syncs.push((m.member_id.clone(), p));
                            }
                        }
                        for (id, p) in parked_syncs {
                            cx.out
                                .respond(p, sync_error(p, code(ResponseError::UnknownServerError)));
                            set_heartbeat(g, &id, &mut cx);
                        }
                        prepare_rebalance(g, &mut cx);
                        return None;
                    }
                    g.sync_append_in_flight = true;
                    let action = PendingAppend::GroupSync {
                        group: g.group_id.clone(),
                        generation: g.generation,
                        assignments: assignments.clone(),
                    };
                    emit_snapshot(g, &mut cx, Some(&assignments), action);
                }
                None
            }
        }
    }

    // -------------------------------------------------------------- Heartbeat

    /// Heartbeat (v0–v4), answered at once.
    pub fn handle_heartbeat(
        &mut self,
        id: RequestId,
        api_version: i16,
        req: &HeartbeatRequest,
        now_ms: i64,
    ) {
        let parked = Parked { request: id, version: api_version };
        let error = self.heartbeat(parked, req, now_ms);
        self.out.respond(parked, heartbeat_response(error));
        self.run_timers(now_ms);
    }

    fn heartbeat(&mut self, parked: Parked, req: &HeartbeatRequest, now_ms: i64) -> i16 {
        let group_id = req.group_id.0.as_str();
        let member_id = req.member_id.as_str();
        if let Some(error) = self.check_group(group_id, false) {
            return error;
        }
        let (groups, mut cx) = self.cx(now_ms);
        let Some(g) = groups.get_mut(group_id) else {
            return code(ResponseError::UnknownMemberId);
        };
        let instance_id = if parked.version >= 3 {
            req.group_instance_id.as_ref().map(|i| i.as_str())
        } else {
            None
        };
        if g.is(GroupState::Dead) {
            return code(ResponseError::CoordinatorNotAvailable);
        }
        if g.is_static_fenced(member_id, instance_id) {
            return code(ResponseError::FencedInstanceId);
        }
        if !g.members.contains_key(member_id) {
            return code(ResponseError::UnknownMemberId);
        }
        if req.generation_id != g.generation {
            return code(ResponseError::IllegalGeneration);
        }
        let m = &g.members[member_id];
        let kept_alive = m.awaiting_join.is_some() || m.awaiting_sync.is_some();
        match g.state {
            GroupState::Empty | GroupState::Dead => code(ResponseError::UnknownMemberId),
            GroupState::CompletingRebalance | GroupState::Stable => {
                if !kept_alive {
                    set_heartbeat(g, member_id, &mut cx);
                }
                NONE
            }
            GroupState::PreparingRebalance => {
                if !kept_alive {
                    set_heartbeat(g, member_id, &mut cx);
                }
                code(ResponseError::RebalanceInProgress)
            }
        }
    }

    // -------------------------------------------------------------- LeaveGroup

    /// LeaveGroup (v0–v5; v3+ leaves a batch of members, by member id or by
    /// group instance id).
    pub fn handle_leave_group(
        &mut self,
        id: RequestId,
        api_version: i16,
        req: &LeaveGroupRequest,
        now_ms: i64,
    ) {
        let parked = Parked { request: id, version: api_version };
        let group_id = req.group_id.0.as_str();
        let leaving: Vec<(String, Option<String>)> = if api_version >= 3 {
            req.members
                .iter()
                .map(|m| {
                    (
                        m.member_id.as_str().to_owned(),
                        m.group_instance_id.as_ref().map(|i| i.as_str().to_owned()),
                    )
                })
                .collect()
        } else {
            vec![(req.member_id.as_str().to_owned(), None)]
        };
        let (top_error, results) = self.leave_group(group_id, &leaving, now_ms);
        let mut r = LeaveGroupResponse::default();
        if api_version >= 3 {
            r.error_code = top_error;
            r.members = leaving
                .iter()
                .zip(&results)
                .map(|((member_id, instance), error)| {
                    let mut m = MemberResponse::default();
                    m.member_id = sb(member_id);
                    m.group_instance_id = instance.as_deref().map(sb);
                    m.error_code = *error;
                    m
                })
                .collect();
        } else {
            r.error_code = if top_error != NONE {
                top_error
            } else {
                results.first().copied().unwrap_or(NONE)
            };
        }
        self.out.respond(parked, Response::LeaveGroup(r));
        self.maybe_forget(group_id);
        self.run_timers(now_ms);
    }

    fn leave_group(
        &mut self,
        group_id: &str,
        leaving: &[(String, Option<String>)],
        now_ms: i64,
    ) -> (i16, Vec<i16>) {
        if let Some(error) = self.check_group(group_id, false) {
            return (error, vec![error; leaving.len()]);
        }
        let (groups, mut cx) = self.cx(now_ms);
        let Some(g) = groups.get_mut(group_id) else {
            return (NONE, vec![code(ResponseError::UnknownMemberId); leaving.len()]);
        };
        if g.is(GroupState::Dead) {
            let error = code(ResponseError::CoordinatorNotAvailable);
            return (error, vec![error; leaving.len()]);
        }
        let mut results = Vec::with_capacity(leaving.len());
        for (member_id, instance_id) in leaving {
            let error = match instance_id {
                Some(instance) => match g.static_members.get(instance).cloned() {
                    None => code(ResponseError::UnknownMemberId),
                    Some(registered) if !member_id.is_empty() && registered != *member_id => {
                        code(ResponseError::FencedInstanceId)
                    }
                    Some(registered) => {
                        remove_member_and_update(g, &registered, &mut cx);
                        NONE
                    }
                },
                None if g.pending_members.remove(member_id) => {
                    cx.out
                        .timers
                        .cancel(&TimerKey::PendingMember(g.group_id.clone(), member_id.clone()));
                    try_complete_join(g, &mut cx);
                    NONE
                }
                None if g.members.contains_key(member_id) => {
                    remove_member_and_update(g, member_id, &mut cx);
                    NONE
                }
                None => code(ResponseError::UnknownMemberId),
            };
            results.push(error);
        }
        (NONE, results)
    }

    // -------------------------------------------------------------- OffsetCommit

    /// OffsetCommit (v2–v9). Accepted partitions are appended; the response
    /// comes from [`append_done`](Self::append_done), and only then do the
    /// offsets become visible to OffsetFetch.
    pub fn handle_offset_commit(
        &mut self,
        id: RequestId,
        api_version: i16,
        req: &OffsetCommitRequest,
        now_ms: i64,
    ) {
        let parked = Parked { request: id, version: api_version };
        let mut response = OffsetCommitResponse::default();
        response.topics = req
            .topics
            .iter()
            .map(|t| {
                let mut rt = OffsetCommitResponseTopic::default();
                rt.name = t.name.clone();
                if api_version >= 10 {
                    rt.topic_id = t.topic_id;
                }
                rt.partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let mut rp = OffsetCommitResponsePartition::default();
                        rp.partition_index = p.partition_index;
                        rp
                    })
                    .collect();
                rt
            })
            .collect();
        let group_id = req.group_id.0.as_str();
        match self.commit_group_error(parked, req, now_ms) {
            Err(error) => {
                for p in response.topics.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
                    p.error_code = error;
                }
                self.out.respond(parked, Response::OffsetCommit(response));
            }
            Ok(()) => self.commit_offsets(parked, req, response, now_ms),
        }
        self.maybe_forget(group_id);
        self.run_timers(now_ms);
    }

    /// Group-level validation of a commit, as Kafka's classic group does it.
    fn commit_group_error(
        &mut self,
        parked: Parked,
        req: &OffsetCommitRequest,
        now_ms: i64,
    ) -> Result<(), i16> {
        let group_id = req.group_id.0.as_str();
        if let Some(error) = self.check_group(group_id, true) {
            return Err(error);
        }
        if self.out.in_flight.len() >= self.config.limits.appends_in_flight_max {
            return Err(code(ResponseError::CoordinatorLoadInProgress));
        }
        let generation = req.generation_id_or_member_epoch;
        let member_id = req.member_id.as_str();
        let instance_id = if parked.version >= 7 {
            req.group_instance_id.as_ref().map(|i| i.as_str())
        } else {
            None
        };
        if !self.groups.contains_key(group_id) {
            if generation >= 0 {
                // Not a standalone consumer, and the group is gone.
                return Err(code(ResponseError::IllegalGeneration));
            }
            if self.groups.len() >= self.config.limits.groups_max {
                return Err(code(ResponseError::CoordinatorNotAvailable));
            }
            self.groups.insert(group_id.to_owned(), Group::new(group_id.to_owned(), now_ms));
        }
        let (groups, mut cx) = self.cx(now_ms);
        let g = groups.get_mut(group_id).expect("present");
        if g.is(GroupState::Dead) {
            return Err(code(ResponseError::CoordinatorNotAvailable));
        }
        if generation < 0 && g.is(GroupState::Empty) {
            // A standalone consumer (assign()) using Kafka only to store offsets.
            return Ok(());
        }
        if generation >= 0 || !member_id.is_empty() || instance_id.is_some() {
            if g.is_static_fenced(member_id, instance_id) {
                return Err(code(ResponseError::FencedInstanceId));
            }
            if !g.members.contains_key(member_id) {
                return Err(code(ResponseError::UnknownMemberId));
            }
            if generation != g.generation {
                return Err(code(ResponseError::IllegalGeneration));
            }
        } else {
            return Err(code(ResponseError::UnknownMemberId));
        }
        if g.is(GroupState::CompletingRebalance) {
            // The member has the new generation but not its assignment yet.
            return Err(code(ResponseError::RebalanceInProgress));
        }
        let m = &g.members[member_id];
        if m.awaiting_join.is_none() && m.awaiting_sync.is_none() {
            set_heartbeat(g, member_id, &mut cx);
        }
        Ok(())
    }

    fn commit_offsets(
        &mut self,
        parked: Parked,
        req: &OffsetCommitRequest,
        mut response: OffsetCommitResponse,
        now_ms: i64,
    ) {
        let group_id = req.group_id.0.as_str();
        let limits = &self.config.limits;
        let g = self.groups.get_mut(group_id).expect("validated");
        let mut records = Vec::new();
        let mut entries = Vec::new();
        for (t, rt) in req.topics.iter().zip(response.topics.iter_mut()) {
            for (p, rp) in t.partitions.iter().zip(rt.partitions.iter_mut()) {
                let metadata = p.committed_metadata.as_ref().map(|m| m.as_str()).unwrap_or("");
                if metadata.len() > limits.offset_metadata_bytes_max {
                    rp.error_code = code(ResponseError::OffsetMetadataTooLarge);
                    continue;
                }
                if t.name.0.len() > TOPIC_NAME_BYTES_MAX {
                    // No such topic can exist (Kafka: at most 249 characters).
                    rp.error_code = code(ResponseError::UnknownTopicOrPartition);
                    continue;
                }
                let key = (t.name.0.as_str().to_owned(), p.partition_index);
                let is_new = !g.offsets.contains_key(&key) && !g.pending_offsets.contains_key(&key);
                if is_new
                    && (g.offsets.len() + g.pending_offsets.len() >= limits.offsets_per_group_max
                        || self.offsets_total >= limits.offsets_max)
                {
                    rp.error_code = code(ResponseError::InvalidCommitOffsetSize);
                    continue;
                }
                let value = OffsetCommitValue {
                    offset: p.committed_offset,
                    leader_epoch: if parked.version >= 6 { p.committed_leader_epoch } else { -1 },
                    metadata: metadata.to_owned(),
                    commit_timestamp_ms: now_ms,
                    expire_timestamp_ms: -1,
                };
                let record_key = RecordKey::OffsetCommit {
                    group: group_id.to_owned(),
                    topic: key.0.clone(),
                    partition: key.1,
                };
                records.push((record_key.encode(), Some(value.encode())));
                *g.pending_offsets.entry(key.clone()).or_default() += 1;
                entries.push((key, value));
            }
        }
        if records.is_empty() {
            self.out.respond(parked, Response::OffsetCommit(response));
            return;
        }
        let action =
            PendingAppend::Commit { parked, group: group_id.to_owned(), entries, response };
        self.out.append(records, action);
    }

    // -------------------------------------------------------------- OffsetFetch

    /// OffsetFetch (v1–v9; v8+ batches groups). Unknown partitions answer
    /// offset −1; null topics mean every committed partition.
    pub fn handle_offset_fetch(
        &mut self,
        id: RequestId,
        api_version: i16,
        req: &OffsetFetchRequest,
        now_ms: i64,
    ) {
        let parked = Parked { request: id, version: api_version };
        let require_stable = api_version >= 7 && req.require_stable;
        let mut r = OffsetFetchResponse::default();
        if api_version >= 8 {
            r.groups = req
                .groups
                .iter()
                .map(|rg| {
                    let topics = rg.topics.as_ref().map(|ts| {
                        ts.iter()
                            .map(|t| (t.name.0.as_str().to_owned(), t.partition_indexes.clone()))
                            .collect()
                    });
                    let (error, mut found) =
                        self.fetch_offsets(rg.group_id.0.as_str(), topics, require_stable);
                    if error != NONE {
                        found.clear();
                    }
                    let mut out = OffsetFetchResponseGroup::default();
                    out.group_id = rg.group_id.clone();
                    out.error_code = error;
                    out.topics = found
                        .into_iter()
                        .map(|(name, parts)| {
                            let mut t = OffsetFetchResponseTopics::default();
                            t.name = TopicName(sb(&name));
                            t.partitions = parts
                                .into_iter()
                                .map(|f| {
                                    let mut p = OffsetFetchResponsePartitions::default();
                                    p.partition_index = f.partition;
                                    p.committed_offset = f.offset;
                                    p.committed_leader_epoch = f.leader_epoch;
                                    p.metadata = Some(sb(&f.metadata));
                                    p.error_code = f.error;
                                    p
                                })
                                .collect();
                            t
                        })
                        .collect();
                    out
                })
                .collect();
        } else {
            let topics = req.topics.as_ref().map(|ts| {
                ts.iter()
                    .map(|t| (t.name.0.as_str().to_owned(), t.partition_indexes.clone()))
                    .collect()
            });
            let (error, mut found) =
                self.fetch_offsets(req.group_id.0.as_str(), topics, require_stable);
            if api_version >= 2 {
                r.error_code = error;
                if error != NONE {
                    found.clear();
                }
            }
            r.topics = found
                .into_iter()
                .map(|(name, parts)| {
                    let mut t = OffsetFetchResponseTopic::default();
                    t.name = TopicName(sb(&name));
                    t.partitions = parts
                        .into_iter()
                        .map(|f| {
                            let mut p = OffsetFetchResponsePartition::default();
                            p.partition_index = f.partition;
                            p.committed_offset = f.offset;
                            p.committed_leader_epoch = f.leader_epoch;
                            p.metadata = Some(sb(&f.metadata));
                            // Version 1 has no top-level error: each partition carries it.
                            p.error_code =
                                if api_version < 2 && error != NONE { error } else { f.error };
                            p
                        })
                        .collect();
                    t
                })
                .collect();
        }
        self.out.respond(parked, Response::OffsetFetch(r));
        self.run_timers(now_ms);
    }

    /// Offsets of one group: (group error, topics in request order or sorted
    /// for "all"). A group-level error returns no topics, except that the
    /// requested partitions are listed for clients that cannot carry a
    /// group-level error.
    #[allow(clippy::type_complexity)]
    fn fetch_offsets(
        &self,
        group_id: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
        require_stable: bool,
    ) -> (i16, Vec<(String, Vec<Fetched>)>) {
        let unknown = |partition: i32, error: i16| Fetched {
            partition,
            offset: -1,
            leader_epoch: -1,
            metadata: String::new(),
            error,
        };
        if let Some(error) = self.check_group(group_id, true) {
            let listed = topics
                .unwrap_or_default()
                .into_iter()
                .map(|(t, ps)| (t, ps.into_iter().map(|p| unknown(p, error)).collect()))
                .collect();
            return (error, listed);
        }
        let group = self.groups.get(group_id).filter(|g| !g.is(GroupState::Dead));
        let lookup = |topic: &str, partition: i32| -> Fetched {
            let Some(g) = group else { return unknown(partition, NONE) };
            let key = (topic.to_owned(), partition);
            if require_stable && g.pending_offsets.contains_key(&key) {
                return unknown(partition, code(ResponseError::UnstableOffsetCommit));
            }
            match g.offsets.get(&key) {
                Some(v) => Fetched {
                    partition,
                    offset: v.offset,
                    leader_epoch: v.leader_epoch,
                    metadata: v.metadata.clone(),
                    error: NONE,
                },
                None => unknown(partition, NONE),
            }
        };
        let found = match topics {
            Some(topics) => topics
                .into_iter()
                .map(|(t, ps)| {
                    let parts = ps.into_iter().map(|p| lookup(&t, p)).collect();
                    (t, parts)
                })
                .collect(),
            None => {
                let mut all: Vec<(String, Vec<Fetched>)> = Vec::new();
                for (topic, partition) in
                    group.map(|g| g.offsets.keys().collect::<Vec<_>>()).unwrap_or_default()
                {
                    let f = lookup(topic, *partition);
                    match all.last_mut() {
                        Some((t, parts)) if t == topic => parts.push(f),
                        _ => all.push((topic.clone(), vec![f])),
                    }
                }
                all
            }
        };
        (NONE, found)
    }

    // -------------------------------------------------------------- DescribeGroups

    /// DescribeGroups (v0–v6). Member metadata and assignments are shown
    /// when the group is Stable, as Kafka does.
    pub fn handle_describe_groups(
        &mut self,
        id: RequestId,
        api_version: i16,
        req: &DescribeGroupsRequest,
        now_ms: i64,
    ) {
        let parked = Parked { request: id, version: api_version };
        let mut r = DescribeGroupsResponse::default();
        r.groups = req.groups.iter().map(|gid| self.describe_group(gid, api_version)).collect();
        self.out.respond(parked, Response::DescribeGroups(r));
        self.run_timers(now_ms);
    }

    fn describe_group(&self, gid: &GroupId, version: i16) -> DescribedGroup {
        let mut d = DescribedGroup::default();
        d.group_id = gid.clone();
        if let Some(error) = self.check_group(gid.0.as_str(), true) {
            d.error_code = error;
            return d;
        }
        let Some(g) = self.groups.get(gid.0.as_str()).filter(|g| !g.is(GroupState::Dead)) else {
            d.group_state = sb(GroupState::Dead.name());
            if version >= 6 {
                d.error_code = code(ResponseError::GroupIdNotFound);
                d.error_message = Some(sb(&format!("Group {} not found.", gid.0.as_str())));
            }
            return d;
        };
        d.group_state = sb(g.state.name());
        d.protocol_type = sb(g.protocol_type.as_deref().unwrap_or(""));
        let stable = g.is(GroupState::Stable);
        let protocol = g.protocol_name.as_deref().unwrap_or("");
        if stable {
            d.protocol_data = sb(protocol);
        }
        d.members = g
            .members
            .values()
            .map(|m| {
                let mut dm = DescribedGroupMember::default();
                dm.member_id = sb(&m.member_id);
                if version >= 4 {
                    dm.group_instance_id = m.instance_id.as_deref().map(sb);
                }
                dm.client_id = sb(&m.client_id);
                dm.client_host = sb(&m.client_host);
                if stable {
                    dm.member_metadata = m.metadata(protocol).cloned().unwrap_or_default();
                    dm.member_assignment = m.assignment.clone();
                }
                dm
            })
            .collect();
        d
    }

    // -------------------------------------------------------------- ListGroups

    /// ListGroups (v0–v5) over this coordinator's groups; the shell merges
    /// the answers of all coordinators it hosts. States filter from v4, type
    /// filter from v5 (all groups here are `classic`).
    pub fn handle_list_groups(
        &mut self,
        id: RequestId,
        api_version: i16,
        req: &ListGroupsRequest,
        now_ms: i64,
    ) {
        let parked = Parked { request: id, version: api_version };
        let mut r = ListGroupsResponse::default();
        match self.phase {
            Phase::Loading => r.error_code = code(ResponseError::CoordinatorLoadInProgress),
            Phase::Resigned => r.error_code = code(ResponseError::NotCoordinator),
            Phase::Active => {
                let states: &[StrBytes] = if api_version >= 4 { &req.states_filter } else { &[] };
                let types: &[StrBytes] = if api_version >= 5 { &req.types_filter } else { &[] };
                let type_ok = types.is_empty()
                    || types.iter().any(|t| t.as_str().eq_ignore_ascii_case("classic"));
                if type_ok {
                    r.groups = self
                        .groups
                        .values()
                        .filter(|g| !g.is(GroupState::Dead))
                        .filter(|g| {
                            states.is_empty()
                                || states
                                    .iter()
                                    .any(|s| s.as_str().eq_ignore_ascii_case(g.state.name()))
                        })
                        .map(|g| {
                            let mut l = ListedGroup::default();
                            l.group_id = GroupId(sb(&g.group_id));
                            l.protocol_type = sb(g.protocol_type.as_deref().unwrap_or(""));
                            if api_version >= 4 {
                                l.group_state = sb(g.state.name());
                            }
                            if api_version >= 5 {
                                l.group_type = sb("classic");
                            }
                            l
                        })
                        .collect();
                }
            }
        }
        self.out.respond(parked, Response::ListGroups(r));
        self.run_timers(now_ms);
    }

    // -------------------------------------------------------------- DeleteGroups

    /// DeleteGroups (v0–v2): only Empty groups; writes tombstones for the
    /// group and its offsets and answers once they are appended.
    pub fn handle_delete_groups(
        &mut self,
        id: RequestId,
        api_version: i16,
        req: &DeleteGroupsRequest,
        now_ms: i64,
    ) {
        let parked = Parked { request: id, version: api_version };
        let mut response = DeleteGroupsResponse::default();
        let mut records = Vec::new();
        let mut deleting = Vec::new();
        let appends_full = self.out.in_flight.len() >= self.config.limits.appends_in_flight_max;
        for gid in &req.groups_names {
            let name = gid.0.as_str();
            let error = if let Some(error) = self.check_group(name, true) {
                error
            } else if deleting.iter().any(|d| d == name) {
                NONE
            } else {
                match self.groups.get_mut(name) {
                    None => code(ResponseError::GroupIdNotFound),
                    Some(g) if g.is(GroupState::Dead) => code(ResponseError::GroupIdNotFound),
                    Some(g) if !g.is(GroupState::Empty) => code(ResponseError::NonEmptyGroup),
                    Some(_) if appends_full => code(ResponseError::CoordinatorLoadInProgress),
                    Some(g) => {
                        let keys: std::collections::BTreeSet<&(String, i32)> =
                            g.offsets.keys().chain(g.pending_offsets.keys()).collect();
                        for (topic, partition) in keys {
                            let key = RecordKey::OffsetCommit {
                                group: name.to_owned(),
                                topic: topic.clone(),
                                partition: *partition,
                            };
                            records.push((key.encode(), None));
                        }
                        records.push((
                            RecordKey::GroupMetadata { group: name.to_owned() }.encode(),
                            None,
                        ));
                        for pending in std::mem::take(&mut g.pending_members) {
                            self.out
                                .timers
                                .cancel(&TimerKey::PendingMember(name.to_owned(), pending));
                        }
                        g.transition(GroupState::Dead, now_ms);
                        deleting.push(name.to_owned());
                        NONE
                    }
                }
            };
            let mut result = DeletableGroupResult::default();
            result.group_id = gid.clone();
            result.error_code = error;
            response.results.push(result);
        }
        if records.is_empty() {
            self.out.respond(parked, Response::DeleteGroups(response));
        } else {
            self.out.append(
                records,
                PendingAppend::DeleteGroups { parked, groups: deleting, response },
            );
        }
        self.run_timers(now_ms);
    }

    // -------------------------------------------------------------- OffsetDelete

    /// OffsetDelete (v0): removes committed offsets of topics the group does
    /// not subscribe to; answered once the tombstones are appended.
    pub fn handle_offset_delete(
        &mut self,
        id: RequestId,
        api_version: i16,
        req: &OffsetDeleteRequest,
        now_ms: i64,
    ) {
        let parked = Parked { request: id, version: api_version };
        let group_id = req.group_id.0.as_str();
        let mut response = OffsetDeleteResponse::default();
        let group_error = self.check_group(group_id, false).or_else(|| {
            if self.out.in_flight.len() >= self.config.limits.appends_in_flight_max {
                return Some(code(ResponseError::CoordinatorLoadInProgress));
            }
            match self.groups.get(group_id) {
                None => Some(code(ResponseError::GroupIdNotFound)),
                Some(g) if g.is(GroupState::Dead) => Some(code(ResponseError::GroupIdNotFound)),
                Some(g)
                    if !g.is(GroupState::Empty)
                        && g.protocol_type.as_deref() != Some("consumer") =>
                {
                    Some(code(ResponseError::NonEmptyGroup))
                }
                Some(_) => None,
            }
        });
        if let Some(error) = group_error {
            response.error_code = error;
            self.out.respond(parked, Response::OffsetDelete(response));
            return;
        }
        let g = self.groups.get(group_id).expect("checked");
        let empty = g.is(GroupState::Empty);
        let mut records = Vec::new();
        let mut partitions = Vec::new();
        for t in &req.topics {
            let topic = t.name.0.as_str();
            let subscribed = !empty && g.is_subscribed_to(topic);
            let mut rt = OffsetDeleteResponseTopic::default();
            rt.name = t.name.clone();
            for p in &t.partitions {
                let mut rp = OffsetDeleteResponsePartition::default();
                rp.partition_index = p.partition_index;
                if subscribed {
                    rp.error_code = code(ResponseError::GroupSubscribedToTopic);
                } else {
                    let key = (topic.to_owned(), p.partition_index);
                    if (g.offsets.contains_key(&key) || g.pending_offsets.contains_key(&key))
                        && !partitions.contains(&key)
                    {
                        let record_key = RecordKey::OffsetCommit {
                            group: group_id.to_owned(),
                            topic: key.0.clone(),
                            partition: key.1,
                        };
                        records.push((record_key.encode(), None));
                        partitions.push(key);
                    }
                }
                rt.partitions.push(rp);
            }
            response.topics.push(rt);
        }
        if records.is_empty() {
            self.out.respond(parked, Response::OffsetDelete(response));
        } else {
            let action = PendingAppend::OffsetDelete {
                parked,
                group: group_id.to_owned(),
                partitions,
                response,
            };
            self.out.append(records, action);
        }
        self.run_timers(now_ms);
    }

    // -------------------------------------------------------------- inspection

    /// The state of a group, if the coordinator knows it.
    pub fn group_state(&self, group_id: &str) -> Option<GroupState> {
        self.groups.get(group_id).map(|g| g.state)
    }

    /// The generation of a group, if the coordinator knows it.
    pub fn group_generation(&self, group_id: &str) -> Option<i32> {
        self.groups.get(group_id).map(|g| g.generation)
    }

    /// Number of groups held (any state).
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// A committed (visible) offset.
    pub fn committed_offset(
        &self,
        group_id: &str,
        topic: &str,
        partition: i32,
    ) -> Option<&OffsetCommitValue> {
        self.groups.get(group_id)?.offsets.get(&(topic.to_owned(), partition))
    }

    /// Every visible committed offset: (group, topic, partition, offset), for
    /// the consumer-lag metric.
    pub fn committed_offsets(&self) -> impl Iterator<Item = (&str, &str, i32, i64)> + '_ {
        self.groups.iter().filter(|(_, g)| !g.is(GroupState::Dead)).flat_map(|(id, g)| {
            g.offsets.iter().map(move |((t, p), v)| (id.as_str(), t.as_str(), *p, v.offset))
        })
    }

    /// What a replay of the emitted records would rebuild, for every group
    /// that has persisted state. Meaningful when no rebalance is under way.
    pub fn durable_snapshot(&self) -> BTreeMap<String, DurableGroup> {
        self.groups
            .iter()
            .filter(|(_, g)| !g.is(GroupState::Dead) && (g.persisted || !g.offsets.is_empty()))
            .map(|(id, g)| {
                let metadata = g.persisted.then(|| g.metadata_value(None, -1));
                (id.clone(), DurableGroup { metadata, offsets: g.offsets.clone() })
            })
            .collect()
    }
}

fn release_pending(g: &mut Group, key: &(String, i32)) {
    if let Some(count) = g.pending_offsets.get_mut(key) {
        *count -= 1;
        if *count == 0 {
            g.pending_offsets.remove(key);
        }
    }
}

/// One partition's answer to OffsetFetch.
struct Fetched {
    partition: i32,
    offset: i64,
    leader_epoch: i32,
    metadata: String,
    error: i16,
}
