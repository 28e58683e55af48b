//! Behaviour tests of the coordinator, driven as the shell drives it, with
//! deterministic time and ids. Every response is also encoded with the
//! `kafka-protocol` codec at its request's version, so a field that a version
//! cannot carry fails the test.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};

use crate::records::{GroupMetadataValue, OffsetCommitValue, RecordKey};
use crate::subscription::encode_subscription;
use crate::*;

const V_JOIN: i16 = 9;
const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 30_000;

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

fn err(e: ResponseError) -> i16 {
    e.code()
}

struct H {
    c: GroupCoordinator,
    now: i64,
    next_request: u64,
    versions: HashMap<RequestId, i16>,
    pending: Vec<(RequestId, Response)>,
    /// Every record whose append succeeded, in log order.
    log: Vec<(Bytes, Option<Bytes>)>,
}

impl H {
    fn with_config(config: GroupConfig) -> H {
        let mut c = GroupCoordinator::new(config, Box::new(SeededIds::new(42)));
        c.load_complete(0);
        H {
            c,
            now: 0,
            next_request: 0,
            versions: HashMap::new(),
            pending: Vec::new(),
            log: Vec::new(),
        }
    }

    fn new() -> H {
        H::with_config(GroupConfig::default())
    }

    fn rid(&mut self, version: i16) -> RequestId {
        self.next_request += 1;
        let id = RequestId(self.next_request);
        self.versions.insert(id, version);
        id
    }

    /// Drains responses, checking each encodes at its request version.
    fn drain(&mut self) {
        while let Some((id, r)) = self.c.poll_response() {
            let v = self.versions[&id];
            let mut buf = BytesMut::new();
            let encoded = match &r {
                Response::JoinGroup(x) => x.encode(&mut buf, v),
                Response::SyncGroup(x) => x.encode(&mut buf, v),
                Response::Heartbeat(x) => x.encode(&mut buf, v),
                Response::LeaveGroup(x) => x.encode(&mut buf, v),
                Response::OffsetCommit(x) => x.encode(&mut buf, v),
                Response::OffsetFetch(x) => x.encode(&mut buf, v),
                Response::DescribeGroups(x) => x.encode(&mut buf, v),
                Response::ListGroups(x) => x.encode(&mut buf, v),
                Response::DeleteGroups(x) => x.encode(&mut buf, v),
                Response::OffsetDelete(x) => x.encode(&mut buf, v),
            };
            encoded.unwrap_or_else(|e| panic!("response {r:?} does not encode at v{v}: {e}"));
            assert!(!self.pending.iter().any(|(p, _)| *p == id), "two responses for {id:?}");
            self.pending.push((id, r));
        }
    }

    fn try_take(&mut self, id: RequestId) -> Option<Response> {
        self.drain();
        let i = self.pending.iter().position(|(p, _)| *p == id)?;
        Some(self.pending.remove(i).1)
    }

    fn take(&mut self, id: RequestId) -> Response {
        self.try_take(id).unwrap_or_else(|| panic!("no response for {id:?}"))
    }

    fn no_response(&mut self, id: RequestId) {
        self.drain();
        assert!(!self.pending.iter().any(|(p, _)| *p == id), "unexpected response for {id:?}");
    }

    /// Completes every emitted append with `result`; returns the records.
    fn finish_appends(&mut self, result: Result<(), AppendFailure>) -> Vec<(Bytes, Option<Bytes>)> {
        let mut all = Vec::new();
        while let Some(a) = self.c.poll_append() {
            if result.is_ok() {
                self.log.extend(a.records.iter().cloned());
            }
            all.extend(a.records);
            self.c.append_done(a.id, result, self.now);
        }
        all
    }

    fn advance(&mut self, ms: i64) {
        self.now += ms;
        self.c.handle_tick(self.now);
    }

    fn join_v(
        &mut self,
        version: i16,
        group: &str,
        member: &str,
        instance: Option<&str>,
        topics: &[&str],
    ) -> RequestId {
        let id = self.rid(version);
        let req = join_req(group, member, instance, topics);
        let client = ClientInfo { client_id: "client", client_host: "/127.0.0.1" };
        self.c.handle_join_group(id, version, client, &req, self.now);
        id
    }

    fn join(&mut self, group: &str, member: &str, topics: &[&str]) -> RequestId {
        self.join_v(V_JOIN, group, member, None, topics)
    }

    /// A dynamic member's full KIP-394 join: MEMBER_ID_REQUIRED, then the
    /// parked join with the id. Returns (member id, parked join request).
    fn join_new(&mut self, group: &str, topics: &[&str]) -> (String, RequestId) {
        let first = self.join(group, "", topics);
        let r = join_resp(self.take(first));
        assert_eq!(r.error_code, err(ResponseError::MemberIdRequired));
        let member = r.member_id.to_string();
        assert!(member.starts_with("client-"), "{member}");
        (member.clone(), self.join(group, &member, topics))
    }

    fn sync(
        &mut self,
        group: &str,
        member: &str,
        generation: i32,
        assignments: &[(&str, &[u8])],
    ) -> RequestId {
        let id = self.rid(5);
        let mut req = SyncGroupRequest::default();
        req.group_id = GroupId(sb(group));
        req.member_id = sb(member);
        req.generation_id = generation;
        req.protocol_type = Some(sb("consumer"));
        req.protocol_name = Some(sb("range"));
        req.assignments = assignments
            .iter()
            .map(|(m, a)| {
                let mut x = SyncGroupRequestAssignment::default();
                x.member_id = sb(m);
                x.assignment = Bytes::copy_from_slice(a);
                x
            })
            .collect();
        self.c.handle_sync_group(id, 5, &req, self.now);
        id
    }

    fn heartbeat_with(
        &mut self,
        group: &str,
        member: &str,
        generation: i32,
        instance: Option<&str>,
    ) -> i16 {
        let id = self.rid(4);
        let mut req = HeartbeatRequest::default();
        req.group_id = GroupId(sb(group));
        req.member_id = sb(member);
        req.generation_id = generation;
        req.group_instance_id = instance.map(sb);
        self.c.handle_heartbeat(id, 4, &req, self.now);
        match self.take(id) {
            Response::Heartbeat(r) => r.error_code,
            other => panic!("{other:?}"),
        }
    }

    fn heartbeat(&mut self, group: &str, member: &str, generation: i32) -> i16 {
        self.heartbeat_with(group, member, generation, None)
    }

    fn commit(
        &mut self,
        group: &str,
        member: &str,
        generation: i32,
        offsets: &[(&str, i32, i64)],
    ) -> RequestId {
        let id = self.rid(8);
        let mut req = OffsetCommitRequest::default();
        req.group_id = GroupId(sb(group));
        req.member_id = sb(member);
        req.generation_id_or_member_epoch = generation;
        let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
        for (topic, partition, offset) in offsets {
            let mut p = OffsetCommitRequestPartition::default();
            p.partition_index = *partition;
            p.committed_offset = *offset;
            p.committed_leader_epoch = 4;
            p.committed_metadata = Some(sb("meta"));
            match topics.iter_mut().find(|t| t.name.0.as_str() == *topic) {
                Some(t) => t.partitions.push(p),
                None => {
                    let mut t = OffsetCommitRequestTopic::default();
                    t.name = TopicName(sb(topic));
                    t.partitions.push(p);
                    topics.push(t);
                }
            }
        }
        req.topics = topics;
        self.c.handle_offset_commit(id, 8, &req, self.now);
        id
    }

    /// OffsetFetch v7 for one group; None topics = all.
    fn fetch(
        &mut self,
        group: &str,
        topics: Option<&[(&str, &[i32])]>,
        require_stable: bool,
    ) -> OffsetFetchResponse {
        let id = self.rid(7);
        let mut req = OffsetFetchRequest::default();
        req.group_id = GroupId(sb(group));
        req.require_stable = require_stable;
        req.topics = topics.map(|ts| {
            ts.iter()
                .map(|(t, ps)| {
                    let mut x = OffsetFetchRequestTopic::default();
                    x.name = TopicName(sb(t));
                    x.partition_indexes = ps.to_vec();
                    x
                })
                .collect()
        });
        self.c.handle_offset_fetch(id, 7, &req, self.now);
        match self.take(id) {
            Response::OffsetFetch(r) => r,
            other => panic!("{other:?}"),
        }
    }

    fn fetched(&mut self, group: &str, topic: &str, partition: i32) -> (i64, i16) {
        let r = self.fetch(group, Some(&[(topic, &[partition])]), false);
        assert_eq!(r.error_code, 0);
        let p = &r.topics[0].partitions[0];
        (p.committed_offset, p.error_code)
    }

    fn leave(
        &mut self,
        version: i16,
        group: &str,
        members: &[(&str, Option<&str>)],
    ) -> LeaveGroupResponse {
        let id = self.rid(version);
        let mut req = LeaveGroupRequest::default();
        req.group_id = GroupId(sb(group));
        if version >= 3 {
            req.members = members
                .iter()
                .map(|(m, i)| {
                    let mut x = MemberIdentity::default();
                    x.member_id = sb(m);
                    x.group_instance_id = i.map(sb);
                    x
                })
                .collect();
        } else {
            req.member_id = sb(members[0].0);
        }
        self.c.handle_leave_group(id, version, &req, self.now);
        match self.take(id) {
            Response::LeaveGroup(r) => r,
            other => panic!("{other:?}"),
        }
    }

    fn describe(&mut self, version: i16, group: &str) -> describe_groups_response::DescribedGroup {
        let id = self.rid(version);
        let mut req = DescribeGroupsRequest::default();
        req.groups = vec![GroupId(sb(group))];
        self.c.handle_describe_groups(id, version, &req, self.now);
        match self.take(id) {
            Response::DescribeGroups(mut r) => r.groups.remove(0),
            other => panic!("{other:?}"),
        }
    }

    fn delete_groups(&mut self, groups: &[&str]) -> RequestId {
        let id = self.rid(2);
        let mut req = DeleteGroupsRequest::default();
        req.groups_names = groups.iter().map(|g| GroupId(sb(g))).collect();
        self.c.handle_delete_groups(id, 2, &req, self.now);
        id
    }

    /// Two dynamic members, Stable at generation 2 with assignments.
    fn stable_two(&mut self, group: &str) -> (String, String) {
        let (a, ja) = self.join_new(group, &["t1"]);
        let ra = join_resp(self.take(ja));
        assert_eq!((ra.error_code, ra.generation_id), (0, 1));
        let (b, jb) = self.join_new(group, &["t1", "t2"]);
        self.no_response(jb);
        let ja = self.join(group, &a, &["t1"]);
        let ra = join_resp(self.take(ja));
        let rb = join_resp(self.take(jb));
        assert_eq!((ra.generation_id, rb.generation_id), (2, 2));
        let sa = self.sync(group, &a, 2, &[(&a, b"A"), (&b, b"B")]);
        let sb_ = self.sync(group, &b, 2, &[]);
        self.finish_appends(Ok(()));
        assert_eq!(sync_resp(self.take(sa)).assignment, Bytes::from_static(b"A"));
        assert_eq!(sync_resp(self.take(sb_)).assignment, Bytes::from_static(b"B"));
        assert_eq!(self.c.group_state(group), Some(GroupState::Stable));
        (a, b)
    }
}

fn join_req(
    group: &str,
    member: &str,
    instance: Option<&str>,
    topics: &[&str],
) -> JoinGroupRequest {
    let mut r = JoinGroupRequest::default();
    r.group_id = GroupId(sb(group));
    r.session_timeout_ms = SESSION_MS;
    r.rebalance_timeout_ms = REBALANCE_MS;
    r.member_id = sb(member);
    r.group_instance_id = instance.map(sb);
    r.protocol_type = sb("consumer");
    let mut p = JoinGroupRequestProtocol::default();
    p.name = sb("range");
    p.metadata = encode_subscription(topics);
    r.protocols = vec![p];
    r
}

fn join_resp(r: Response) -> JoinGroupResponse {
    match r {
        Response::JoinGroup(r) => r,
        other => panic!("{other:?}"),
    }
}

fn sync_resp(r: Response) -> SyncGroupResponse {
    match r {
        Response::SyncGroup(r) => r,
        other => panic!("{other:?}"),
    }
}

fn commit_codes(r: Response) -> Vec<i16> {
    match r {
        Response::OffsetCommit(r) => {
            r.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)).collect()
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn two_member_join_sync_rebalance() {
    let mut h = H::new();
    let (a, ja) = h.join_new("g", &["t1"]);
    // Initial delay 0: the first member's rebalance completes at once.
    let ra = join_resp(h.take(ja));
    assert_eq!((ra.error_code, ra.generation_id), (0, 1));
    assert_eq!(ra.leader.as_str(), a);
    assert_eq!(ra.protocol_name.as_ref().map(|p| p.as_str()), Some("range"));
    assert_eq!(ra.members.len(), 1);

    // A second member triggers a rebalance; A learns of it from SyncGroup.
    let (b, jb) = h.join_new("g", &["t1", "t2"]);
    h.no_response(jb);
    assert_eq!(h.c.group_state("g"), Some(GroupState::PreparingRebalance));
    let s = h.sync("g", &a, 1, &[(&a, b"x")]);
    assert_eq!(sync_resp(h.take(s)).error_code, err(ResponseError::RebalanceInProgress));
    assert_eq!(h.heartbeat("g", &a, 1), err(ResponseError::RebalanceInProgress));

    // A rejoins: both get generation 2; only the leader sees the members.
    let ja = h.join("g", &a, &["t1"]);
    let ra = join_resp(h.take(ja));
    let rb = join_resp(h.take(jb));
    assert_eq!((ra.generation_id, rb.generation_id), (2, 2));
    assert_eq!(ra.leader.as_str(), a);
    assert_eq!(rb.leader.as_str(), a);
    assert_eq!(ra.members.len(), 2);
    assert!(rb.members.is_empty());
    let b_meta = ra.members.iter().find(|m| m.member_id.as_str() == b).unwrap().metadata.clone();
    assert_eq!(crate::subscribed_topics(&b_meta).unwrap(), vec!["t1", "t2"]);
    assert_eq!(h.c.group_state("g"), Some(GroupState::CompletingRebalance));
    assert_eq!(h.heartbeat("g", &b, 2), 0);

    // The follower waits for the leader; the leader's sync waits for the append.
    let sb_ = h.sync("g", &b, 2, &[]);
    h.no_response(sb_);
    let sa = h.sync("g", &a, 2, &[(&a, b"A"), (&b, b"B")]);
    h.no_response(sa);
    h.no_response(sb_);
    let records = h.finish_appends(Ok(()));
    assert_eq!(records.len(), 1);
    let v = GroupMetadataValue::decode(records[0].1.as_ref().unwrap()).unwrap();
    assert_eq!((v.generation, v.leader.as_deref(), v.members.len()), (2, Some(a.as_str()), 2));
    let ra = sync_resp(h.take(sa));
    let rb = sync_resp(h.take(sb_));
    assert_eq!((ra.error_code, &ra.assignment[..]), (0, &b"A"[..]));
    assert_eq!((rb.error_code, &rb.assignment[..]), (0, &b"B"[..]));
    assert_eq!(rb.protocol_name.as_ref().map(|p| p.as_str()), Some("range"));
    assert_eq!(h.c.group_state("g"), Some(GroupState::Stable));

    assert_eq!(h.heartbeat("g", &a, 2), 0);
    assert_eq!(h.heartbeat("g", &a, 1), err(ResponseError::IllegalGeneration));
    assert_eq!(h.heartbeat("g", "nobody", 2), err(ResponseError::UnknownMemberId));
    assert_eq!(h.heartbeat("other", &a, 2), err(ResponseError::UnknownMemberId));
    // A follower's duplicate join with unchanged metadata gets the current generation.
    let jb = h.join("g", &b, &["t1", "t2"]);
    let rb = join_resp(h.take(jb));
    assert_eq!((rb.error_code, rb.generation_id), (0, 2));
    assert_eq!(h.c.group_state("g"), Some(GroupState::Stable));

    // Describe shows metadata and assignments when Stable.
    let d = h.describe(5, "g");
    assert_eq!(d.group_state.as_str(), "Stable");
    assert_eq!(d.protocol_data.as_str(), "range");
    assert_eq!(d.members.len(), 2);
    assert!(
        d.members.iter().all(|m| !m.member_assignment.is_empty() && !m.member_metadata.is_empty())
    );
    assert_eq!(d.members[0].client_host.as_str(), "/127.0.0.1");
}

#[test]
fn member_id_required_round_trip_and_old_versions() {
    let mut h = H::new();
    let first = h.join("g", "", &["t"]);
    let r = join_resp(h.take(first));
    assert_eq!(r.error_code, err(ResponseError::MemberIdRequired));
    assert_eq!(r.generation_id, -1);
    let id = r.member_id.to_string();
    assert!(id.starts_with("client-") && id.len() == "client-".len() + 36, "{id}");
    // Not a member yet: heartbeats are refused.
    assert_eq!(h.heartbeat("g", &id, 0), err(ResponseError::UnknownMemberId));
    let second = h.join("g", &id, &["t"]);
    let r = join_resp(h.take(second));
    assert_eq!((r.error_code, r.member_id.as_str(), r.generation_id), (0, id.as_str(), 1));

    // An unused id expires after the session timeout.
    let first = h.join("g2", "", &["t"]);
    let unused = join_resp(h.take(first)).member_id.to_string();
    h.advance(i64::from(SESSION_MS) + 1);
    let late = h.join("g2", &unused, &["t"]);
    assert_eq!(join_resp(h.take(late)).error_code, err(ResponseError::UnknownMemberId));
    assert_eq!(h.c.group_state("g2"), None, "an abandoned, never-written group is forgotten");

    // Versions before 4 join directly; v0 responses encode.
    let old = h.join_v(0, "g3", "", None, &["t"]);
    let r = join_resp(h.take(old));
    assert_eq!((r.error_code, r.generation_id), (0, 1));
    assert!(!r.member_id.is_empty());
    assert_eq!(r.protocol_name.as_ref().map(|p| p.as_str()), Some("range"));

    // Session timeout out of range.
    let id = h.rid(5);
    let mut req = join_req("g4", "", None, &["t"]);
    req.session_timeout_ms = 10;
    h.c.handle_join_group(id, 5, ClientInfo { client_id: "c", client_host: "h" }, &req, 0);
    assert_eq!(join_resp(h.take(id)).error_code, err(ResponseError::InvalidSessionTimeout));
    // Inconsistent protocol type with existing members.
    let (_m, j) = h.join_new("g5", &["t"]);
    h.take(j);
    let id = h.rid(5);
    let mut req = join_req("g5", "", None, &["t"]);
    req.protocol_type = sb("connect");
    h.c.handle_join_group(id, 5, ClientInfo { client_id: "c", client_host: "h" }, &req, 0);
    assert_eq!(join_resp(h.take(id)).error_code, err(ResponseError::InconsistentGroupProtocol));
}

#[test]
fn session_timeout_expires_member_and_rebalances() {
    let mut h = H::new();
    let (a, b) = h.stable_two("g");
    for _ in 0..3 {
        h.advance(i64::from(SESSION_MS) / 3);
        assert_eq!(h.heartbeat("g", &a, 2), 0);
    }
    assert_eq!(h.c.group_state("g"), Some(GroupState::Stable));
    h.advance(i64::from(SESSION_MS) / 3);
    // B never heartbeated: it is gone and the group rebalances.
    assert_eq!(h.c.group_state("g"), Some(GroupState::PreparingRebalance));
    assert_eq!(h.heartbeat("g", &b, 2), err(ResponseError::UnknownMemberId));
    assert_eq!(h.heartbeat("g", &a, 2), err(ResponseError::RebalanceInProgress));
    let ja = h.join("g", &a, &["t1"]);
    let r = join_resp(h.take(ja));
    assert_eq!((r.generation_id, r.members.len()), (3, 1));
    assert!(h.c.next_timer_ms().is_some());
}

#[test]
fn rebalance_timeout_expels_members_that_do_not_rejoin() {
    let mut h = H::new();
    let (a, b) = h.stable_two("g");
    // A rejoins with a new subscription: a rebalance starts; B keeps heartbeating but never rejoins.
    let ja = h.join("g", &a, &["t1", "t9"]);
    h.no_response(ja);
    let mut waited = 0;
    while waited < i64::from(REBALANCE_MS) - 1000 {
        h.advance(1000);
        waited += 1000;
        assert_eq!(h.heartbeat("g", &b, 2), err(ResponseError::RebalanceInProgress));
        h.no_response(ja);
    }
    h.advance(1000);
    let r = join_resp(h.take(ja));
    assert_eq!((r.error_code, r.generation_id, r.members.len()), (0, 3, 1));
    assert_eq!(h.heartbeat("g", &b, 3), err(ResponseError::UnknownMemberId));
}

#[test]
fn pending_sync_timeout_removes_followers_that_never_sync() {
    let mut h = H::new();
    let (a, jb_member) = {
        let (a, ja) = h.join_new("g", &["t"]);
        h.take(ja);
        let (b, jb) = h.join_new("g", &["t"]);
        let ja = h.join("g", &a, &["t"]);
        h.take(ja);
        h.take(jb);
        (a, b)
    };
    let sa = h.sync("g", &a, 2, &[]);
    h.finish_appends(Ok(()));
    assert_eq!(sync_resp(h.take(sa)).error_code, 0);
    // B never syncs: dropped after the rebalance timeout.
    for _ in 0..(REBALANCE_MS / 5000) {
        h.advance(5000);
        h.heartbeat("g", &a, 2);
    }
    h.advance(1);
    assert_eq!(h.heartbeat("g", &jb_member, 2), err(ResponseError::UnknownMemberId));
}

#[test]
fn leave_group_batched_and_legacy() {
    let mut h = H::new();
    let (a, b) = h.stable_two("g");
    let r = h.leave(5, "g", &[(&b, None), ("ghost", None)]);
    assert_eq!(r.error_code, 0);
    let codes: Vec<i16> = r.members.iter().map(|m| m.error_code).collect();
    assert_eq!(codes, vec![0, err(ResponseError::UnknownMemberId)]);
    assert_eq!(h.c.group_state("g"), Some(GroupState::PreparingRebalance));
    let ja = h.join("g", &a, &["t1"]);
    assert_eq!(join_resp(h.take(ja)).generation_id, 3);

    // Legacy v0: one member, top-level error.
    let r = h.leave(0, "g", &[("ghost", None)]);
    assert_eq!(r.error_code, err(ResponseError::UnknownMemberId));
    let r = h.leave(0, "g", &[(&a, None)]);
    assert_eq!(r.error_code, 0);
    // The last member left: the group completes an empty generation and is Empty.
    assert_eq!(h.c.group_state("g"), Some(GroupState::Empty));
    assert_eq!(h.c.group_generation("g"), Some(4));
    let records = h.finish_appends(Ok(()));
    let v = GroupMetadataValue::decode(records.last().unwrap().1.as_ref().unwrap()).unwrap();
    assert_eq!((v.generation, v.members.len(), v.protocol.as_deref()), (4, 0, None));
}

#[test]
fn static_member_rejoin_keeps_assignment_without_rebalance_and_fences_old_id() {
    let mut h = H::new();
    let ja = h.join_v(V_JOIN, "g", "", Some("ia"), &["t"]);
    let ra = join_resp(h.take(ja));
    let a = ra.member_id.to_string();
    assert!(a.starts_with("ia-"), "static members are named after their instance id: {a}");
    let jb = h.join_v(V_JOIN, "g", "", Some("ib"), &["t"]);
    let b = {
        h.drain();
        let sa = h.sync("g", &a, 1, &[]);
        assert_eq!(sync_resp(h.take(sa)).error_code, err(ResponseError::RebalanceInProgress));
        let ja = h.join_v(V_JOIN, "g", &a, Some("ia"), &["t"]);
        h.take(ja);
        join_resp(h.take(jb)).member_id.to_string()
    };
    let sa = h.sync("g", &a, 2, &[(&a, b"A"), (&b, b"B")]);
    let sb_ = h.sync("g", &b, 2, &[]);
    h.finish_appends(Ok(()));
    h.take(sa);
    assert_eq!(&sync_resp(h.take(sb_)).assignment[..], b"B");

    // B restarts: same instance id, no member id. No rebalance; the new id is
    // persisted before the answer.
    let jb2 = h.join_v(V_JOIN, "g", "", Some("ib"), &["t"]);
    h.no_response(jb2);
    let records = h.finish_appends(Ok(()));
    assert_eq!(records.len(), 1);
    let r = join_resp(h.take(jb2));
    let b2 = r.member_id.to_string();
    assert_ne!(b2, b);
    assert_eq!((r.error_code, r.generation_id), (0, 2));
    assert_eq!(r.leader.as_str(), a, "a follower is told the current leader");
    assert!(!r.skip_assignment);
    assert_eq!(h.c.group_state("g"), Some(GroupState::Stable));
    // The new id keeps the old assignment; the old id is fenced.
    let s = h.sync("g", &b2, 2, &[]);
    assert_eq!(&sync_resp(h.take(s)).assignment[..], b"B");
    assert_eq!(h.heartbeat_with("g", &b, 2, Some("ib")), err(ResponseError::FencedInstanceId));
    assert_eq!(h.heartbeat_with("g", &b2, 2, Some("ib")), 0);
    let stale = h.join_v(V_JOIN, "g", &b, Some("ib"), &["t"]);
    assert_eq!(join_resp(h.take(stale)).error_code, err(ResponseError::FencedInstanceId));

    // The static leader restarts: v9 tells it it leads but must skip assigning.
    let ja2 = h.join_v(V_JOIN, "g", "", Some("ia"), &["t"]);
    h.finish_appends(Ok(()));
    let r = join_resp(h.take(ja2));
    assert_eq!(r.leader, r.member_id);
    assert!(r.skip_assignment);
    assert_eq!(r.members.len(), 2);
    assert_eq!(h.c.group_generation("g"), Some(2));

    // A static member leaves by instance id (admin removeMembersFromConsumerGroup).
    let r = h.leave(5, "g", &[("", Some("ib")), ("", Some("nobody"))]);
    let codes: Vec<i16> = r.members.iter().map(|m| m.error_code).collect();
    assert_eq!(codes, vec![0, err(ResponseError::UnknownMemberId)]);
}

#[test]
fn static_rejoin_append_failure_reverts() {
    let mut h = H::new();
    let ja = h.join_v(V_JOIN, "g", "", Some("ia"), &["t"]);
    let a = join_resp(h.take(ja)).member_id.to_string();
    let s = h.sync("g", &a, 1, &[(&a, b"A")]);
    h.finish_appends(Ok(()));
    h.take(s);
    let j = h.join_v(7, "g", "", Some("ia"), &["t"]);
    h.finish_appends(Err(AppendFailure::NotLeader));
    assert_eq!(join_resp(h.take(j)).error_code, err(ResponseError::NotCoordinator));
    // The old id is still the member.
    assert_eq!(h.heartbeat_with("g", &a, 1, Some("ia")), 0);
}

#[test]
fn offset_commit_visible_only_after_append_done() {
    let mut h = H::new();
    let (a, _b) = h.stable_two("g");
    let c = h.commit("g", &a, 2, &[("t1", 0, 10), ("t1", 1, 20)]);
    h.no_response(c);
    // Not visible before the append completes; require_stable reports it.
    assert_eq!(h.fetched("g", "t1", 0), (-1, 0));
    let r = h.fetch("g", Some(&[("t1", &[0])]), true);
    assert_eq!(r.topics[0].partitions[0].error_code, err(ResponseError::UnstableOffsetCommit));

    let records = h.finish_appends(Ok(()));
    assert_eq!(commit_codes(h.take(c)), vec![0, 0]);
    assert_eq!(h.fetched("g", "t1", 0), (10, 0));
    assert_eq!(h.fetched("g", "t1", 1), (20, 0));
    assert_eq!(h.fetched("g", "t1", 7), (-1, 0));
    assert_eq!(h.fetched("g", "unknown-topic", 0), (-1, 0));
    let r = h.fetch("g", Some(&[("t1", &[0])]), false);
    assert_eq!(r.topics[0].partitions[0].committed_leader_epoch, 4);
    assert_eq!(r.topics[0].partitions[0].metadata.as_ref().map(|m| m.as_str()), Some("meta"));

    // The records are Kafka's formats.
    assert_eq!(records.len(), 2);
    let key = RecordKey::decode(&records[0].0).unwrap().unwrap();
    assert_eq!(
        key,
        RecordKey::OffsetCommit { group: "g".into(), topic: "t1".into(), partition: 0 }
    );
    let value = OffsetCommitValue::decode(records[0].1.as_ref().unwrap()).unwrap();
    assert_eq!((value.offset, value.leader_epoch, value.metadata.as_str()), (10, 4, "meta"));

    // A failed append: error per partition, nothing visible.
    let c = h.commit("g", &a, 2, &[("t1", 0, 99)]);
    h.finish_appends(Err(AppendFailure::NotLeader));
    assert_eq!(commit_codes(h.take(c)), vec![err(ResponseError::NotCoordinator)]);
    assert_eq!(h.fetched("g", "t1", 0), (10, 0));
    let c = h.commit("g", &a, 2, &[("t1", 0, 99)]);
    h.finish_appends(Err(AppendFailure::NotEnoughReplicas));
    assert_eq!(commit_codes(h.take(c)), vec![err(ResponseError::CoordinatorNotAvailable)]);

    // Member and generation are checked.
    let c = h.commit("g", &a, 1, &[("t1", 0, 5)]);
    assert_eq!(commit_codes(h.take(c)), vec![err(ResponseError::IllegalGeneration)]);
    let c = h.commit("g", "ghost", 2, &[("t1", 0, 5)]);
    assert_eq!(commit_codes(h.take(c)), vec![err(ResponseError::UnknownMemberId)]);
    let c = h.commit("g", "", -1, &[("t1", 0, 5)]);
    assert_eq!(
        commit_codes(h.take(c)),
        vec![err(ResponseError::UnknownMemberId)],
        "group not empty"
    );
    assert!(h.c.poll_append().is_none());

    // Fetch all partitions (null topics), v8 batched groups.
    let id = h.rid(8);
    let mut req = OffsetFetchRequest::default();
    let mut g1 = OffsetFetchRequestGroup::default();
    g1.group_id = GroupId(sb("g"));
    g1.topics = None;
    let mut g2 = OffsetFetchRequestGroup::default();
    g2.group_id = GroupId(sb("nope"));
    let mut t = OffsetFetchRequestTopics::default();
    t.name = TopicName(sb("t1"));
    t.partition_indexes = vec![3];
    g2.topics = Some(vec![t]);
    req.groups = vec![g1, g2];
    h.c.handle_offset_fetch(id, 8, &req, h.now);
    let Response::OffsetFetch(r) = h.take(id) else { panic!() };
    assert_eq!(r.groups.len(), 2);
    let parts: Vec<(i32, i64)> = r.groups[0].topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.committed_offset))
        .collect();
    assert_eq!(parts, vec![(0, 10), (1, 20)]);
    assert_eq!(r.groups[1].topics[0].partitions[0].committed_offset, -1);
}

#[test]
fn standalone_consumer_commits_with_generation_minus_one() {
    let mut h = H::new();
    let c = h.commit("solo", "", -1, &[("t", 0, 7)]);
    h.finish_appends(Ok(()));
    assert_eq!(commit_codes(h.take(c)), vec![0]);
    assert_eq!(h.fetched("solo", "t", 0), (7, 0));
    assert_eq!(h.c.group_state("solo"), Some(GroupState::Empty));
    // A group-managed commit to an unknown group is refused.
    let c = h.commit("nogroup", "m", 3, &[("t", 0, 7)]);
    assert_eq!(commit_codes(h.take(c)), vec![err(ResponseError::IllegalGeneration)]);
    assert_eq!(h.c.group_state("nogroup"), None);
    // A failed first commit leaves no group behind.
    let c = h.commit("solo2", "", -1, &[("t", 0, 7)]);
    h.finish_appends(Err(AppendFailure::RecordTooLarge));
    assert_eq!(commit_codes(h.take(c)), vec![err(ResponseError::InvalidCommitOffsetSize)]);
    assert_eq!(h.c.group_state("solo2"), None);
    // Old OffsetFetch v1 reports load-in-progress per partition; list groups sees "solo".
    let id = h.rid(3);
    h.c.handle_list_groups(id, 3, &ListGroupsRequest::default(), h.now);
    let Response::ListGroups(r) = h.take(id) else { panic!() };
    assert_eq!(r.groups.len(), 1);
    assert_eq!(r.groups[0].group_id.0.as_str(), "solo");
}

#[test]
fn replay_of_emitted_records_rebuilds_identical_state() {
    let mut h = H::new();
    let (a, b) = h.stable_two("g");
    let c = h.commit("g", &a, 2, &[("t1", 0, 10), ("t2", 3, 30)]);
    h.finish_appends(Ok(()));
    h.take(c);
    let c = h.commit("g", &b, 2, &[("t1", 0, 11)]);
    h.finish_appends(Ok(()));
    h.take(c);
    // A failed commit must not appear after replay either.
    let c = h.commit("g", &b, 2, &[("t1", 5, 55)]);
    h.finish_appends(Err(AppendFailure::Other));
    h.take(c);
    let c = h.commit("solo", "", -1, &[("x", 0, 1), ("x", 1, 2)]);
    h.finish_appends(Ok(()));
    h.take(c);
    // A static group, then a deleted group and a deleted offset.
    let j = h.join_v(V_JOIN, "s", "", Some("inst"), &["t"]);
    let m = join_resp(h.take(j)).member_id.to_string();
    let s = h.sync("s", &m, 1, &[(&m, b"S")]);
    h.finish_appends(Ok(()));
    h.take(s);
    let c = h.commit("gone", "", -1, &[("x", 0, 1)]);
    h.finish_appends(Ok(()));
    h.take(c);
    let d = h.delete_groups(&["gone"]);
    h.finish_appends(Ok(()));
    h.take(d);
    let id = h.rid(0);
    let mut req = OffsetDeleteRequest::default();
    req.group_id = GroupId(sb("solo"));
    let mut t = OffsetDeleteRequestTopic::default();
    t.name = TopicName(sb("x"));
    let mut p = OffsetDeleteRequestPartition::default();
    p.partition_index = 1;
    t.partitions = vec![p];
    req.topics = vec![t];
    h.c.handle_offset_delete(id, 0, &req, h.now);
    h.finish_appends(Ok(()));
    h.take(id);

    let before = h.c.durable_snapshot();
    assert_eq!(before.len(), 3, "{before:?}");
    assert!(!before.contains_key("gone"));

    let mut replayed = GroupCoordinator::new(GroupConfig::default(), Box::new(SeededIds::new(1)));
    // While loading, requests are refused with COORDINATOR_LOAD_IN_PROGRESS.
    let mut req = HeartbeatRequest::default();
    req.group_id = GroupId(sb("g"));
    replayed.handle_heartbeat(RequestId(1), 4, &req, 0);
    let Some((_, Response::Heartbeat(r))) = replayed.poll_response() else { panic!() };
    assert_eq!(r.error_code, err(ResponseError::CoordinatorLoadInProgress));
    for (k, v) in &h.log {
        replayed.replay(k, v.as_deref()).unwrap();
    }
    replayed.load_complete(h.now);
    assert_eq!(replayed.durable_snapshot(), before);
    assert_eq!(replayed.group_state("g"), Some(GroupState::Stable));
    assert_eq!(replayed.committed_offset("g", "t1", 0).map(|v| v.offset), Some(11));
    assert_eq!(replayed.committed_offset("solo", "x", 1), None);
    assert_eq!(replayed.replay(&h.log[0].0, None), Err(ReplayError::NotLoading));

    // Members carry on after the reload with their generation and assignment.
    let mut h2 = H {
        c: replayed,
        now: h.now,
        next_request: 1000,
        versions: HashMap::new(),
        pending: Vec::new(),
        log: Vec::new(),
    };
    assert_eq!(h2.heartbeat("g", &a, 2), 0);
    let s = h2.sync("g", &b, 2, &[]);
    assert_eq!(&sync_resp(h2.take(s)).assignment[..], b"B");
    // A static member restarting after the reload keeps its assignment.
    let j = h2.join_v(V_JOIN, "s", "", Some("inst"), &["t"]);
    h2.finish_appends(Ok(()));
    let r = join_resp(h2.take(j));
    assert_eq!((r.error_code, r.generation_id), (0, 1));
}

#[test]
fn replay_rejects_malformed_records() {
    let mut c = GroupCoordinator::new(GroupConfig::default(), Box::new(SeededIds::new(1)));
    assert!(matches!(c.replay(&[0, 1, 0], Some(&[])), Err(ReplayError::Record(_))));
    let key =
        RecordKey::OffsetCommit { group: "g".into(), topic: "t".into(), partition: 0 }.encode();
    assert!(matches!(c.replay(&key, Some(&[0, 3, 1])), Err(ReplayError::Record(_))));
    let key = RecordKey::GroupMetadata { group: "g".into() }.encode();
    assert!(matches!(c.replay(&key, Some(&[0, 9])), Err(ReplayError::Record(_))));
    // Unknown key versions (other coordinators' records) are skipped.
    assert_eq!(c.replay(&[0, 7, 0, 0], Some(&[1, 2, 3])), Ok(()));
    c.load_complete(0);
    assert_eq!(c.group_count(), 0);
}

#[test]
fn delete_groups_only_when_empty_and_writes_tombstones() {
    let mut h = H::new();
    let (a, b) = h.stable_two("g");
    let c = h.commit("g", &a, 2, &[("t1", 0, 10)]);
    h.finish_appends(Ok(()));
    h.take(c);
    let d = h.delete_groups(&["g", "missing"]);
    let Response::DeleteGroups(r) = h.take(d) else { panic!() };
    let codes: Vec<i16> = r.results.iter().map(|x| x.error_code).collect();
    assert_eq!(codes, vec![err(ResponseError::NonEmptyGroup), err(ResponseError::GroupIdNotFound)]);

    h.leave(5, "g", &[(&a, None), (&b, None)]);
    h.finish_appends(Ok(()));
    assert_eq!(h.c.group_state("g"), Some(GroupState::Empty));
    let d = h.delete_groups(&["g"]);
    h.no_response(d);
    // While the tombstones are being appended, the group is Dead.
    let j = h.join("g", "", &["t"]);
    assert_eq!(join_resp(h.take(j)).error_code, err(ResponseError::CoordinatorNotAvailable));
    let records = h.finish_appends(Ok(()));
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|(_, v)| v.is_none()));
    assert_eq!(
        RecordKey::decode(&records[0].0).unwrap().unwrap(),
        RecordKey::OffsetCommit { group: "g".into(), topic: "t1".into(), partition: 0 }
    );
    assert_eq!(
        RecordKey::decode(&records[1].0).unwrap().unwrap(),
        RecordKey::GroupMetadata { group: "g".into() }
    );
    let Response::DeleteGroups(r) = h.take(d) else { panic!() };
    assert_eq!(r.results[0].error_code, 0);
    assert_eq!(h.c.group_state("g"), None);
    assert_eq!(h.fetched("g", "t1", 0), (-1, 0));
    let d = h.describe(6, "g");
    assert_eq!(d.error_code, err(ResponseError::GroupIdNotFound));
    let d = h.describe(5, "g");
    assert_eq!((d.error_code, d.group_state.as_str()), (0, "Dead"));

    // A failed deletion leaves the group as it was.
    let c = h.commit("e", "", -1, &[("t", 0, 1)]);
    h.finish_appends(Ok(()));
    h.take(c);
    let d = h.delete_groups(&["e"]);
    h.finish_appends(Err(AppendFailure::StorageError));
    let Response::DeleteGroups(r) = h.take(d) else { panic!() };
    assert_eq!(r.results[0].error_code, err(ResponseError::NotCoordinator));
    assert_eq!(h.c.group_state("e"), Some(GroupState::Empty));
    assert_eq!(h.fetched("e", "t", 0), (1, 0));
}

#[test]
fn offset_delete_refuses_subscribed_topics() {
    let mut h = H::new();
    let (a, _b) = h.stable_two("g");
    let c = h.commit("g", &a, 2, &[("t1", 0, 1), ("old", 0, 2)]);
    h.finish_appends(Ok(()));
    h.take(c);
    let id = h.rid(0);
    let mut req = OffsetDeleteRequest::default();
    req.group_id = GroupId(sb("g"));
    for name in ["t1", "old"] {
        let mut t = OffsetDeleteRequestTopic::default();
        t.name = TopicName(sb(name));
        let mut p = OffsetDeleteRequestPartition::default();
        p.partition_index = 0;
        t.partitions = vec![p];
        req.topics.push(t);
    }
    h.c.handle_offset_delete(id, 0, &req, h.now);
    h.no_response(id);
    h.finish_appends(Ok(()));
    let Response::OffsetDelete(r) = h.take(id) else { panic!() };
    assert_eq!(r.error_code, 0);
    assert_eq!(r.topics[0].partitions[0].error_code, err(ResponseError::GroupSubscribedToTopic));
    assert_eq!(r.topics[1].partitions[0].error_code, 0);
    assert_eq!(h.fetched("g", "t1", 0), (1, 0));
    assert_eq!(h.fetched("g", "old", 0), (-1, 0));

    let id = h.rid(0);
    req.group_id = GroupId(sb("missing"));
    h.c.handle_offset_delete(id, 0, &req, h.now);
    let Response::OffsetDelete(r) = h.take(id) else { panic!() };
    assert_eq!(r.error_code, err(ResponseError::GroupIdNotFound));
}

#[test]
fn limits_are_enforced_with_kafka_errors() {
    let mut config = GroupConfig::default();
    config.limits.members_per_group_max = 2;
    config.limits.groups_max = 2;
    config.limits.offsets_per_group_max = 2;
    config.limits.offset_metadata_bytes_max = 8;
    let mut h = H::with_config(config);
    let (_a, ja) = h.join_new("g", &["t"]);
    h.take(ja);
    let (_b, _jb) = h.join_new("g", &["t"]);
    let third = h.join("g", "", &["t"]);
    assert_eq!(join_resp(h.take(third)).error_code, err(ResponseError::GroupMaxSizeReached));

    let c = h.commit("g2", "", -1, &[("t", 0, 1)]);
    h.finish_appends(Ok(()));
    h.take(c);
    let j = h.join("g3", "", &["t"]);
    assert_eq!(join_resp(h.take(j)).error_code, err(ResponseError::CoordinatorNotAvailable));
    assert_eq!(h.c.group_count(), 2);

    let c = h.commit("g2", "", -1, &[("t", 1, 1), ("t", 2, 1), ("t", 0, 5)]);
    h.finish_appends(Ok(()));
    assert_eq!(commit_codes(h.take(c)), vec![0, err(ResponseError::InvalidCommitOffsetSize), 0]);

    let id = h.rid(8);
    let mut req = OffsetCommitRequest::default();
    req.group_id = GroupId(sb("g2"));
    req.generation_id_or_member_epoch = -1;
    let mut t = OffsetCommitRequestTopic::default();
    t.name = TopicName(sb("t"));
    let mut p = OffsetCommitRequestPartition::default();
    p.committed_metadata = Some(sb("this is more than eight bytes"));
    t.partitions = vec![p];
    req.topics = vec![t];
    h.c.handle_offset_commit(id, 8, &req, h.now);
    assert_eq!(commit_codes(h.take(id)), vec![err(ResponseError::OffsetMetadataTooLarge)]);
    assert!(h.c.poll_append().is_none());

    // Names that cannot be stored are refused, not panicked on.
    let mut h2 = H::new();
    let long = "x".repeat(40_000);
    let c = h2.commit("g", "", -1, &[(&long, 0, 1)]);
    assert_eq!(commit_codes(h2.take(c)), vec![err(ResponseError::UnknownTopicOrPartition)]);
    let id = h2.rid(9);
    let mut req = join_req("g", "", Some(&long), &["t"]);
    req.protocol_type = sb("consumer");
    h2.c.handle_join_group(id, 9, ClientInfo { client_id: &long, client_host: "h" }, &req, 0);
    assert_eq!(join_resp(h2.take(id)).error_code, err(ResponseError::InvalidRequest));
    let id = h2.rid(9);
    let req = join_req("g", "", Some("i"), &["t"]);
    h2.c.handle_join_group(id, 9, ClientInfo { client_id: &long, client_host: "h" }, &req, 0);
    let member = join_resp(h2.take(id)).member_id.to_string();
    let sync = h2.sync("g", &member, 1, &[]);
    let records = h2.finish_appends(Ok(()));
    assert_eq!(sync_resp(h2.take(sync)).error_code, 0);
    let v = GroupMetadataValue::decode(records[0].1.as_ref().unwrap()).unwrap();
    assert_eq!(v.members[0].client_id.len(), 4096, "an oversized client id is clipped");

    // Oversized subscriptions are refused.
    let mut config = GroupConfig::default();
    config.limits.member_metadata_bytes_max = 16;
    let mut h = H::with_config(config);
    let j = h.join("g", "", &["a-rather-long-topic-name"]);
    assert_eq!(join_resp(h.take(j)).error_code, err(ResponseError::InvalidRequest));
}

#[test]
fn initial_rebalance_delay_gathers_members() {
    let config = GroupConfig { initial_rebalance_delay_ms: 3000, ..GroupConfig::default() };
    let mut h = H::with_config(config);
    let (_a, ja) = h.join_new("g", &["t"]);
    h.no_response(ja);
    assert_eq!(h.c.next_timer_ms(), Some(3000));
    h.advance(1000);
    let (_b, jb) = h.join_new("g", &["t"]);
    h.advance(2000);
    // A member arrived during the delay: it is extended once more.
    h.no_response(ja);
    assert_eq!(h.c.next_timer_ms(), Some(6000));
    h.advance(3000);
    let ra = join_resp(h.take(ja));
    let rb = join_resp(h.take(jb));
    assert_eq!((ra.generation_id, rb.generation_id), (1, 1));
    assert_eq!(ra.members.len() + rb.members.len(), 2);
}

#[test]
fn groups_of_other_partitions_get_not_coordinator() {
    let config = GroupConfig {
        num_partitions: 50,
        partition: partition_for("mine", 50),
        ..GroupConfig::default()
    };
    let mut h = H::with_config(config);
    let other = (0..)
        .map(|i| format!("g{i}"))
        .find(|g| partition_for(g, 50) != partition_for("mine", 50))
        .unwrap();
    let j = h.join(&other, "", &["t"]);
    assert_eq!(join_resp(h.take(j)).error_code, err(ResponseError::NotCoordinator));
    let j = h.join("mine", "", &["t"]);
    assert_eq!(join_resp(h.take(j)).error_code, err(ResponseError::MemberIdRequired));
    let j = h.join("", "", &["t"]);
    assert_eq!(join_resp(h.take(j)).error_code, err(ResponseError::InvalidGroupId));
}

#[test]
fn describe_and_list_with_filters() {
    let mut h = H::new();
    h.stable_two("g");
    let c = h.commit("solo", "", -1, &[("t", 0, 1)]);
    h.finish_appends(Ok(()));
    h.take(c);
    let list = |h: &mut H,
                version: i16,
                states: &[&str],
                types: &[&str]|
     -> Vec<(String, String, String)> {
        let id = h.rid(version);
        let mut req = ListGroupsRequest::default();
        req.states_filter = states.iter().map(|s| sb(s)).collect();
        req.types_filter = types.iter().map(|s| sb(s)).collect();
        h.c.handle_list_groups(id, version, &req, h.now);
        let Response::ListGroups(r) = h.take(id) else { panic!() };
        r.groups
            .iter()
            .map(|g| {
                (g.group_id.0.to_string(), g.group_state.to_string(), g.protocol_type.to_string())
            })
            .collect()
    };
    assert_eq!(
        list(&mut h, 4, &["stable"], &[]),
        vec![("g".into(), "Stable".into(), "consumer".into())]
    );
    assert_eq!(
        list(&mut h, 5, &["Empty"], &["classic"]),
        vec![("solo".into(), "Empty".into(), "".into())]
    );
    assert!(list(&mut h, 5, &[], &["consumer"]).is_empty());
    assert_eq!(list(&mut h, 0, &[], &[]).len(), 2);

    let d = h.describe(0, "solo");
    assert_eq!((d.group_state.as_str(), d.members.len()), ("Empty", 0));
    // During a rebalance, members are listed without metadata.
    let j = h.join("g", "", &["t"]);
    let new_id = join_resp(h.take(j)).member_id.to_string();
    let _j = h.join("g", &new_id, &["t"]);
    let d = h.describe(6, "g");
    assert_eq!(d.group_state.as_str(), "PreparingRebalance");
    assert_eq!(d.members.len(), 3);
    assert!(d.members.iter().all(|m| m.member_metadata.is_empty()));
}

#[test]
fn sync_append_failure_makes_the_group_rebalance() {
    let mut h = H::new();
    let (a, ja) = h.join_new("g", &["t"]);
    h.take(ja);
    let s = h.sync("g", &a, 1, &[(&a, b"A")]);
    h.finish_appends(Err(AppendFailure::NotLeader));
    assert_eq!(sync_resp(h.take(s)).error_code, err(ResponseError::NotCoordinator));
    assert_eq!(h.c.group_state("g"), Some(GroupState::PreparingRebalance));
    let ja = h.join("g", &a, &["t"]);
    assert_eq!(join_resp(h.take(ja)).generation_id, 2);
}

#[test]
fn resign_answers_everything_parked() {
    let mut h = H::new();
    let (a, ja) = h.join_new("g", &["t"]);
    h.take(ja);
    let (_b, jb) = h.join_new("g", &["t"]);
    let c = h.commit("solo", "", -1, &[("t", 0, 1)]);
    h.c.resign();
    assert_eq!(join_resp(h.take(jb)).error_code, err(ResponseError::NotCoordinator));
    assert_eq!(commit_codes(h.take(c)), vec![err(ResponseError::NotCoordinator)]);
    assert_eq!(h.heartbeat("g", &a, 1), err(ResponseError::NotCoordinator));
    assert!(h.c.poll_append().is_none());
    assert_eq!(h.c.next_timer_ms(), None);
}

#[test]
fn every_version_encodes() {
    // Walk the main flow at the oldest and newest versions of each API.
    for (join_v, sync_v, hb_v) in [(0i16, 0i16, 0i16), (3, 2, 2), (5, 3, 3), (9, 5, 4)] {
        let mut h = H::new();
        let j = h.join_v(join_v, "g", "", None, &["t"]);
        let mut r = join_resp(h.take(j));
        if r.error_code == err(ResponseError::MemberIdRequired) {
            let id = r.member_id.to_string();
            let j = h.join_v(join_v, "g", &id, None, &["t"]);
            r = join_resp(h.take(j));
        }
        assert_eq!(r.error_code, 0);
        let m = r.member_id.to_string();
        let id = h.rid(sync_v);
        let mut req = SyncGroupRequest::default();
        req.group_id = GroupId(sb("g"));
        req.member_id = sb(&m);
        req.generation_id = 1;
        h.c.handle_sync_group(id, sync_v, &req, h.now);
        h.finish_appends(Ok(()));
        assert_eq!(sync_resp(h.take(id)).error_code, 0);
        let id = h.rid(hb_v);
        let mut req = HeartbeatRequest::default();
        req.group_id = GroupId(sb("g"));
        req.member_id = sb(&m);
        req.generation_id = 1;
        h.c.handle_heartbeat(id, hb_v, &req, h.now);
        h.take(id);
        for v in [1i16, 2, 5, 6, 7] {
            let id = h.rid(v);
            let mut req = OffsetFetchRequest::default();
            req.group_id = GroupId(sb("g"));
            let mut t = OffsetFetchRequestTopic::default();
            t.name = TopicName(sb("t"));
            t.partition_indexes = vec![0];
            req.topics = Some(vec![t]);
            h.c.handle_offset_fetch(id, v, &req, h.now);
            h.take(id);
        }
        for v in [0i16, 3, 6] {
            h.describe(v, "g");
        }
        h.leave(if join_v >= 5 { 5 } else { 1 }, "g", &[(&m, None)]);
    }
}
