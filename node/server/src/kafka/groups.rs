//! Consumer group APIs (classic protocol): FindCoordinator, JoinGroup,
//! SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch,
//! DescribeGroups, ListGroups, DeleteGroups, OffsetDelete.
//!
//! The state machine is `weir_group::GroupCoordinator` (sans-IO). Each
//! `__consumer_offsets` partition hosted here gets one coordinator, living on
//! the shard that owns the partition: it is rebuilt at load by replaying the
//! partition, and what it persists (group metadata, commits, tombstones) is
//! appended to that partition, in the order the coordinator emitted it,
//! before the responses that depend on it are released. A group's requests
//! are routed to the shard owning `partition_for(group_id)`.

/// Kafka's `offsets.commit.timeout.ms`: how long a group write waits for the
/// offsets partition's ISR.
const OFFSETS_COMMIT_TIMEOUT_MS: i64 = 5000;

use crate::kafka::conn::{Reply, encode_response};
use crate::shard::{Shard, now_ms};
use crate::storage::partition::{Partition, PartitionError};
use event_listener::Event;
use futures::channel::oneshot;
use glommio::channels::local_channel;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator as FoundCoordinator;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use weir_group::{
    AppendFailure, AppendRequest, ClientInfo, GroupConfig, GroupCoordinator, RequestId, Response,
    SeededIds, partition_for,
};
use weir_proto::TopicPartition;
use weir_proto::batch::build;

/// Kafka's internal topic for group metadata and committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// The coordinators hosted on one shard, by `__consumer_offsets` partition.
#[derive(Default)]
pub struct ShardGroups {
    coordinators: RefCell<HashMap<i32, Rc<CoordinatorDriver>>>,
}

/// Drives one `GroupCoordinator`: feeds it requests and time, performs its
/// appends in order, and routes its responses back to the waiting requests.
/// Owned by the shard that owns its `__consumer_offsets` partition.
pub struct CoordinatorDriver {
    partition: Rc<Partition>,
    state: RefCell<GroupCoordinator>,
    waiters: RefCell<HashMap<u64, oneshot::Sender<Response>>>,
    next_request: Cell<u64>,
    appends: local_channel::LocalSender<AppendRequest>,
    timer_changed: Event,
    stopped: Cell<bool>,
}

impl CoordinatorDriver {
    /// Runs `f` against the coordinator and waits for the response to the
    /// request it registers. `None` if the coordinator stopped meanwhile.
    async fn call(
        self: &Rc<Self>,
        f: impl FnOnce(&mut GroupCoordinator, RequestId, i64),
    ) -> Option<Response> {
        let id = self.next_request.get();
        self.next_request.set(id + 1);
        let (tx, rx) = oneshot::channel();
        self.waiters.borrow_mut().insert(id, tx);
        f(&mut self.state.borrow_mut(), RequestId(id), now_ms());
        self.pump();
        rx.await.ok()
    }

    /// Drains the coordinator's outputs: appends to the append worker (in
    /// order), responses to their waiters; and re-arms the timer.
    fn pump(&self) {
        let mut state = self.state.borrow_mut();
        while let Some(append) = state.poll_append() {
            // The coordinator bounds appends in flight (GroupLimits), so this
            // local queue never holds more than that.
            if self.appends.try_send(append).is_err() {
                tracing::error!(partition = %self.partition.tp, "group append queue closed");
            }
        }
        while let Some((id, response)) = state.poll_response() {
            if let Some(tx) = self.waiters.borrow_mut().remove(&id.0) {
                let _ = tx.send(response);
            }
        }
        drop(state);
        self.timer_changed.notify(usize::MAX);
    }

    fn stop(&self) {
        self.stopped.set(true);
        self.state.borrow_mut().resign();
        self.pump();
    }
}

fn append_failure(e: &PartitionError) -> AppendFailure {
    match e {
        PartitionError::MessageTooLarge(..) => AppendFailure::RecordTooLarge,
        PartitionError::Storage(_) => AppendFailure::StorageError,
        _ => AppendFailure::Other,
    }
}

/// Reads the whole partition and replays every record into `coordinator`.
async fn replay(
    partition: &Rc<Partition>,
    coordinator: &mut GroupCoordinator,
) -> anyhow::Result<()> {
    let mut at = partition.log_start_offset();
    loop {
        let read = partition.read(at, 1 << 20).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        if read.records.is_empty() {
            return Ok(());
        }
        for item in weir_proto::batch::BatchIter::new(&read.records) {
            let (h, range) =
                item.map_err(|e| anyhow::anyhow!("corrupt batch in {}: {e}", partition.tp))?;
            let records = weir_proto::batch::records(&read.records[range])
                .map_err(|e| anyhow::anyhow!("undecodable batch in {}: {e}", partition.tp))?;
            for (i, r) in records.iter().enumerate() {
                let offset = h.base_offset.0 + r.offset_delta as i64;
                if offset < at.0 {
                    continue;
                }
                if let Some(key) = r.key {
                    coordinator.replay(key, r.value).map_err(|e| {
                        anyhow::anyhow!("{} record {i} at {offset}: {e}", partition.tp)
                    })?;
                }
            }
            at = h.last_offset().next();
        }
    }
}

impl ShardGroups {
    /// Starts the coordinator of an `__consumer_offsets` partition this shard
    /// just opened: replays it, then serves.
    pub async fn load(shard: &Rc<Shard>, partition: Rc<Partition>, num_partitions: u32) {
        let index = partition.tp.partition.0;
        let config = GroupConfig {
            partition: index as u32,
            num_partitions,
            initial_rebalance_delay_ms: shard
                .config
                .group_initial_rebalance_delay_ms
                .clamp(0, i32::MAX as i64) as i32,
            ..GroupConfig::default()
        };
        let seed = (shard.node_id.0 as u64) << 32 ^ index as u64 ^ now_ms() as u64;
        let mut coordinator = GroupCoordinator::new(config, Box::new(SeededIds::new(seed)));
        if let Err(e) = replay(&partition, &mut coordinator).await {
            tracing::error!("group coordinator for {} failed to load: {e:#}", partition.tp);
            return;
        }
        coordinator.load_complete(now_ms());
        let (appends, append_rx) = local_channel::new_unbounded::<AppendRequest>();
        let driver = Rc::new(CoordinatorDriver {
            partition,
            state: RefCell::new(coordinator),
            waiters: RefCell::new(HashMap::new()),
            next_request: Cell::new(0),
            appends,
            timer_changed: Event::new(),
            stopped: Cell::new(false),
        });
        // Appends, one at a time in the order the coordinator emitted them.
        let d = driver.clone();
        glommio::spawn_local(async move {
            while let Some(append) = append_rx.recv().await {
                let records: Vec<build::Record<'_>> = append
                    .records
                    .iter()
                    .map(|(k, v)| build::Record {
                        key: Some(k),
                        value: v.as_deref(),
                        timestamp_delta: 0,
                    })
                    .collect();
                let now = now_ms();
                let result = if records.is_empty() {
                    Ok(())
                } else {
                    let batch =
                        bytes::Bytes::from(build::batch(&records, now, build::Producer::default()));
                    d.partition
                        .append(&batch, -1, OFFSETS_COMMIT_TIMEOUT_MS, now)
                        .await
                        .map(|_| ())
                        .map_err(|e| append_failure(&e))
                };
                if d.stopped.get() {
                    break;
                }
                d.state.borrow_mut().append_done(append.id, result, now_ms());
                d.pump();
            }
        })
        .detach();
        // Timers (session and rebalance timeouts).
        let d = driver.clone();
        glommio::spawn_local(async move {
            while !d.stopped.get() {
                let listener = d.timer_changed.listen();
                let next = d.state.borrow().next_timer_ms();
                let now = now_ms();
                match next {
                    Some(t) if t <= now => {
                        d.state.borrow_mut().handle_tick(now);
                        d.pump();
                        continue;
                    }
                    _ => {}
                }
                let wait = next.map_or(60_000, |t| (t - now).clamp(1, 60_000)) as u64;
                let sleep = glommio::timer::sleep(std::time::Duration::from_millis(wait));
                futures::pin_mut!(sleep);
                futures::future::select(listener, sleep).await;
            }
        })
        .detach();
        shard.groups.coordinators.borrow_mut().insert(index, driver);
        tracing::debug!(partition = index, "group coordinator loaded");
    }

    /// Stops the coordinator of a partition that left this shard.
    pub fn unload(&self, partition: i32) {
        if let Some(d) = self.coordinators.borrow_mut().remove(&partition) {
            d.stop();
        }
    }

    fn get(&self, partition: i32) -> Option<Rc<CoordinatorDriver>> {
        self.coordinators.borrow().get(&partition).cloned()
    }

    /// Committed offsets of every group coordinated on this shard:
    /// (group, topic, partition, offset), for the consumer-lag metric.
    pub fn committed_offsets(&self) -> Vec<(String, String, i32, i64)> {
        let coordinators = self.coordinators.borrow();
        let mut out = Vec::new();
        for d in coordinators.values() {
            let state = d.state.borrow();
            out.extend(
                state.committed_offsets().map(|(g, t, p, o)| (g.to_owned(), t.to_owned(), p, o)),
            );
        }
        out
    }
}

/// What a routed group request is, `Send` to cross shards.
enum GroupCall {
    Join(JoinGroupRequest, String, String),
    Sync(SyncGroupRequest),
    Heartbeat(HeartbeatRequest),
    Leave(LeaveGroupRequest),
    Commit(OffsetCommitRequest),
    Fetch(OffsetFetchRequest),
    Describe(DescribeGroupsRequest),
    List(ListGroupsRequest),
    Delete(DeleteGroupsRequest),
    OffsetDelete(OffsetDeleteRequest),
}

async fn call_local(
    shard: Rc<Shard>,
    partition: i32,
    version: i16,
    call: GroupCall,
) -> Option<Response> {
    let driver = shard.groups.get(partition)?;
    driver
        .call(move |c, id, now| match &call {
            GroupCall::Join(r, client_id, host) => {
                let client = ClientInfo { client_id, client_host: host };
                c.handle_join_group(id, version, client, r, now)
            }
            GroupCall::Sync(r) => c.handle_sync_group(id, version, r, now),
            GroupCall::Heartbeat(r) => c.handle_heartbeat(id, version, r, now),
            GroupCall::Leave(r) => c.handle_leave_group(id, version, r, now),
            GroupCall::Commit(r) => c.handle_offset_commit(id, version, r, now),
            GroupCall::Fetch(r) => c.handle_offset_fetch(id, version, r, now),
            GroupCall::Describe(r) => c.handle_describe_groups(id, version, r, now),
            GroupCall::List(r) => c.handle_list_groups(id, version, r, now),
            GroupCall::Delete(r) => c.handle_delete_groups(id, version, r, now),
            GroupCall::OffsetDelete(r) => c.handle_offset_delete(id, version, r, now),
        })
        .await
}

/// The `__consumer_offsets` partition count, creating the topic on first use.
async fn offsets_partitions(shard: &Rc<Shard>) -> Result<u32, i16> {
    super::admin::ensure_internal_topic(shard, OFFSETS_TOPIC).await?;
    let n = shard.metadata.borrow().topics.get(OFFSETS_TOPIC).map(|t| t.partitions.len() as u32);
    n.filter(|n| *n > 0).ok_or(ResponseError::CoordinatorNotAvailable.code())
}

/// Routes a call for `group` to its coordinator.
async fn route(
    shard: &Rc<Shard>,
    group: &str,
    version: i16,
    call: GroupCall,
) -> Result<Response, i16> {
    let n = offsets_partitions(shard).await?;
    let partition = partition_for(group, n) as i32;
    call_partition(shard, partition, version, call).await
}

async fn call_partition(
    shard: &Rc<Shard>,
    partition: i32,
    version: i16,
    call: GroupCall,
) -> Result<Response, i16> {
    let tp = TopicPartition::new(OFFSETS_TOPIC, partition);
    let target = shard.shard_for(&tp);
    shard
        .run_on(target, move |s| call_local(s, partition, version, call))
        .await
        .ok()
        .flatten()
        // Not loaded (yet) here: clients retry after looking the coordinator up again.
        .ok_or(ResponseError::CoordinatorLoadInProgress.code())
}

fn find_coordinator_answer(
    shard: &Shard,
    key: StrBytes,
    key_type: i8,
    ready: Result<u32, i16>,
) -> FoundCoordinator {
    let md = shard.metadata.borrow();
    // The coordinator is the leader of the group's offsets partition.
    let me = ready.ok().and_then(|n| {
        let partition = partition_for(&key, n) as usize;
        let leader = md.topics.get(OFFSETS_TOPIC)?.partitions.get(partition)?.leader;
        md.nodes.iter().find(|node| node.id == leader)
    });
    let ready = ready.map(|_| ());
    let (code, message) = match (key_type, ready, me) {
        (1, _, _) => (
            ResponseError::CoordinatorNotAvailable.code(),
            Some("transactions are not supported yet"),
        ),
        (0, Err(code), _) => (code, None),
        (0, Ok(()), Some(_)) => (0, None),
        (0, Ok(()), None) => (ResponseError::CoordinatorNotAvailable.code(), None),
        _ => (ResponseError::InvalidRequest.code(), Some("unknown coordinator key type")),
    };
    let mut c = FoundCoordinator::default()
        .with_key(key)
        .with_error_code(code)
        .with_node_id(BrokerId(-1))
        .with_port(-1);
    c.error_message = message.map(StrBytes::from_static_str);
    if code == 0 {
        let me = me.expect("checked");
        c = c
            .with_node_id(BrokerId(me.id.0))
            .with_host(StrBytes::from_string(me.host.clone()))
            .with_port(me.port);
    }
    c
}

async fn find_coordinator(
    shard: Rc<Shard>,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let keys = if version >= 4 { req.coordinator_keys.clone() } else { vec![req.key.clone()] };
    let needs_topic = req.key_type == 0;
    let ready = if needs_topic { offsets_partitions(&shard).await } else { Ok(0) };
    let answers: Vec<FoundCoordinator> =
        keys.into_iter().map(|k| find_coordinator_answer(&shard, k, req.key_type, ready)).collect();
    let mut resp = FindCoordinatorResponse::default();
    if version < 4 {
        let a = answers.into_iter().next().expect("one key");
        resp = resp
            .with_error_code(a.error_code)
            .with_error_message(a.error_message)
            .with_node_id(a.node_id)
            .with_host(a.host)
            .with_port(a.port);
    } else {
        resp = resp.with_coordinators(answers);
    }
    resp
}

/// Splits a list of groups by coordinator partition, keeping first-seen order.
async fn split_groups(
    shard: &Rc<Shard>,
    groups: &[String],
) -> Result<BTreeMap<i32, Vec<usize>>, i16> {
    let n = offsets_partitions(shard).await?;
    let mut by_partition: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    for (i, g) in groups.iter().enumerate() {
        by_partition.entry(partition_for(g, n) as i32).or_default().push(i);
    }
    Ok(by_partition)
}

pub async fn dispatch(
    shard: Rc<Shard>,
    header: RequestHeader,
    key: ApiKey,
    version: i16,
    req: RequestKind,
) -> Reply {
    let client_id = header.client_id.as_ref().map(|c| c.to_string()).unwrap_or_default();
    let body = match req {
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(find_coordinator(shard, r, version).await)
        }
        RequestKind::JoinGroup(r) => {
            let group = r.group_id.0.to_string();
            let host = "/127.0.0.1".to_string();
            match route(&shard, &group, version, GroupCall::Join(r, client_id, host)).await {
                Ok(Response::JoinGroup(resp)) => {
                    tracing::debug!(
                        group,
                        member = %resp.member_id,
                        generation = resp.generation_id,
                        error = resp.error_code,
                        "JoinGroup answered"
                    );
                    ResponseKind::JoinGroup(resp)
                }
                Err(code) => ResponseKind::JoinGroup(
                    JoinGroupResponse::default().with_error_code(code).with_generation_id(-1),
                ),
                Ok(_) => unreachable!("coordinator answers JoinGroup with JoinGroup"),
            }
        }
        RequestKind::SyncGroup(r) => {
            let group = r.group_id.0.to_string();
            match route(&shard, &group, version, GroupCall::Sync(r)).await {
                Ok(Response::SyncGroup(resp)) => {
                    tracing::debug!(group, error = resp.error_code, "SyncGroup answered");
                    ResponseKind::SyncGroup(resp)
                }
                Err(code) => {
                    ResponseKind::SyncGroup(SyncGroupResponse::default().with_error_code(code))
                }
                Ok(_) => unreachable!("coordinator answers SyncGroup with SyncGroup"),
            }
        }
        RequestKind::Heartbeat(r) => {
            let group = r.group_id.0.to_string();
            match route(&shard, &group, version, GroupCall::Heartbeat(r)).await {
                Ok(Response::Heartbeat(resp)) => {
                    if resp.error_code != 0 {
                        tracing::debug!(group, error = resp.error_code, "Heartbeat answered");
                    }
                    ResponseKind::Heartbeat(resp)
                }
                Err(code) => {
                    ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(code))
                }
                Ok(_) => unreachable!("coordinator answers Heartbeat with Heartbeat"),
            }
        }
        RequestKind::LeaveGroup(r) => {
            let group = r.group_id.0.to_string();
            match route(&shard, &group, version, GroupCall::Leave(r)).await {
                Ok(Response::LeaveGroup(resp)) => ResponseKind::LeaveGroup(resp),
                Err(code) => {
                    ResponseKind::LeaveGroup(LeaveGroupResponse::default().with_error_code(code))
                }
                Ok(_) => unreachable!("coordinator answers LeaveGroup with LeaveGroup"),
            }
        }
        RequestKind::OffsetCommit(r) => {
            let group = r.group_id.0.to_string();
            let topics = r.topics.clone();
            match route(&shard, &group, version, GroupCall::Commit(r)).await {
                Ok(Response::OffsetCommit(resp)) => ResponseKind::OffsetCommit(resp),
                Err(code) => ResponseKind::OffsetCommit(commit_error(&topics, code)),
                Ok(_) => unreachable!("coordinator answers OffsetCommit with OffsetCommit"),
            }
        }
        RequestKind::OffsetFetch(r) => {
            ResponseKind::OffsetFetch(offset_fetch(&shard, r, version).await)
        }
        RequestKind::OffsetDelete(r) => {
            let group = r.group_id.0.to_string();
            match route(&shard, &group, version, GroupCall::OffsetDelete(r)).await {
                Ok(Response::OffsetDelete(resp)) => ResponseKind::OffsetDelete(resp),
                Err(code) => ResponseKind::OffsetDelete(
                    OffsetDeleteResponse::default().with_error_code(code),
                ),
                Ok(_) => unreachable!("coordinator answers OffsetDelete with OffsetDelete"),
            }
        }
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(describe_groups(&shard, r, version).await)
        }
        RequestKind::DeleteGroups(r) => {
            ResponseKind::DeleteGroups(delete_groups(&shard, r, version).await)
        }
        RequestKind::ListGroups(r) => {
            ResponseKind::ListGroups(list_groups(&shard, r, version).await)
        }
        other => {
            tracing::warn!("{:?} v{version} is not served; closing connection", key);
            drop(other);
            return Reply::Close;
        }
    };
    encode_response(&header, key, &body)
}

fn commit_error(
    topics: &[offset_commit_request::OffsetCommitRequestTopic],
    code: i16,
) -> OffsetCommitResponse {
    use offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
    OffsetCommitResponse::default().with_topics(
        topics
            .iter()
            .map(|t| {
                OffsetCommitResponseTopic::default().with_name(t.name.clone()).with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                        })
                        .collect(),
                )
            })
            .collect(),
    )
}

async fn offset_fetch(
    shard: &Rc<Shard>,
    req: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    if version < 8 {
        let group = req.group_id.0.to_string();
        return match route(shard, &group, version, GroupCall::Fetch(req)).await {
            Ok(Response::OffsetFetch(resp)) => resp,
            Err(code) => OffsetFetchResponse::default().with_error_code(code),
            Ok(_) => unreachable!("coordinator answers OffsetFetch with OffsetFetch"),
        };
    }
    let names: Vec<String> = req.groups.iter().map(|g| g.group_id.0.to_string()).collect();
    let mut out: Vec<Option<offset_fetch_response::OffsetFetchResponseGroup>> =
        vec![None; names.len()];
    match split_groups(shard, &names).await {
        Err(code) => {
            for (i, g) in req.groups.iter().enumerate() {
                out[i] = Some(
                    offset_fetch_response::OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id.clone())
                        .with_error_code(code),
                );
            }
        }
        Ok(parts) => {
            for (partition, indexes) in parts {
                let mut sub = req.clone();
                sub.groups = indexes.iter().map(|i| req.groups[*i].clone()).collect();
                let resp = call_partition(shard, partition, version, GroupCall::Fetch(sub)).await;
                for (k, i) in indexes.iter().enumerate() {
                    let g = match &resp {
                        Ok(Response::OffsetFetch(r)) => r.groups.get(k).cloned(),
                        _ => None,
                    };
                    let code = resp
                        .as_ref()
                        .err()
                        .copied()
                        .unwrap_or(ResponseError::UnknownServerError.code());
                    out[*i] = Some(g.unwrap_or_else(|| {
                        offset_fetch_response::OffsetFetchResponseGroup::default()
                            .with_group_id(req.groups[*i].group_id.clone())
                            .with_error_code(code)
                    }));
                }
            }
        }
    }
    OffsetFetchResponse::default().with_groups(out.into_iter().flatten().collect())
}

async fn describe_groups(
    shard: &Rc<Shard>,
    req: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    use describe_groups_response::DescribedGroup;
    let names: Vec<String> = req.groups.iter().map(|g| g.0.to_string()).collect();
    let mut out: Vec<Option<DescribedGroup>> = vec![None; names.len()];
    let error = |g: &GroupId, code: i16| {
        DescribedGroup::default().with_group_id(g.clone()).with_error_code(code)
    };
    match split_groups(shard, &names).await {
        Err(code) => {
            for (i, g) in req.groups.iter().enumerate() {
                out[i] = Some(error(g, code));
            }
        }
        Ok(parts) => {
            for (partition, indexes) in parts {
                let mut sub = req.clone();
                sub.groups = indexes.iter().map(|i| req.groups[*i].clone()).collect();
                let resp =
                    call_partition(shard, partition, version, GroupCall::Describe(sub)).await;
                for (k, i) in indexes.iter().enumerate() {
                    out[*i] = Some(match &resp {
                        Ok(Response::DescribeGroups(r)) => {
                            r.groups.get(k).cloned().unwrap_or_else(|| {
                                error(&req.groups[*i], ResponseError::UnknownServerError.code())
                            })
                        }
                        Err(code) => error(&req.groups[*i], *code),
                        Ok(_) => {
                            unreachable!("coordinator answers DescribeGroups with DescribeGroups")
                        }
                    });
                }
            }
        }
    }
    DescribeGroupsResponse::default().with_groups(out.into_iter().flatten().collect())
}

async fn delete_groups(
    shard: &Rc<Shard>,
    req: DeleteGroupsRequest,
    version: i16,
) -> DeleteGroupsResponse {
    use delete_groups_response::DeletableGroupResult;
    let names: Vec<String> = req.groups_names.iter().map(|g| g.0.to_string()).collect();
    let mut out: Vec<Option<DeletableGroupResult>> = vec![None; names.len()];
    let error = |g: &GroupId, code: i16| {
        DeletableGroupResult::default().with_group_id(g.clone()).with_error_code(code)
    };
    match split_groups(shard, &names).await {
        Err(code) => {
            for (i, g) in req.groups_names.iter().enumerate() {
                out[i] = Some(error(g, code));
            }
        }
        Ok(parts) => {
            for (partition, indexes) in parts {
                let mut sub = req.clone();
                sub.groups_names = indexes.iter().map(|i| req.groups_names[*i].clone()).collect();
                let resp = call_partition(shard, partition, version, GroupCall::Delete(sub)).await;
                for (k, i) in indexes.iter().enumerate() {
                    out[*i] = Some(match &resp {
                        Ok(Response::DeleteGroups(r)) => {
                            r.results.get(k).cloned().unwrap_or_else(|| {
                                error(
                                    &req.groups_names[*i],
                                    ResponseError::UnknownServerError.code(),
                                )
                            })
                        }
                        Err(code) => error(&req.groups_names[*i], *code),
                        Ok(_) => unreachable!("coordinator answers DeleteGroups with DeleteGroups"),
                    });
                }
            }
        }
    }
    DeleteGroupsResponse::default().with_results(out.into_iter().flatten().collect())
}

async fn list_groups(
    shard: &Rc<Shard>,
    req: ListGroupsRequest,
    version: i16,
) -> ListGroupsResponse {
    let n = match offsets_partitions(shard).await {
        Ok(n) => n,
        Err(code) => return ListGroupsResponse::default().with_error_code(code),
    };
    let calls =
        (0..n as i32).map(|p| call_partition(shard, p, version, GroupCall::List(req.clone())));
    let mut resp = ListGroupsResponse::default();
    for r in futures::future::join_all(calls).await {
        match r {
            Ok(Response::ListGroups(part)) => {
                if part.error_code != 0 && resp.error_code == 0 {
                    resp.error_code = part.error_code;
                }
                resp.groups.extend(part.groups);
            }
            Ok(_) => unreachable!("coordinator answers ListGroups with ListGroups"),
            Err(code) => {
                if resp.error_code == 0 {
                    resp.error_code = code;
                }
            }
        }
    }
    resp
}

/// Called by metadata sync after this shard opened `partition`.
/// Called by replication when this node starts or stops leading a
/// partition: the coordinator of an offsets partition lives on its leader
/// only, rebuilt from the partition when leadership arrives.
pub fn leadership_changed(shard: &Rc<Shard>, partition: &Rc<Partition>, leader: bool) {
    if partition.tp.topic != OFFSETS_TOPIC {
        return;
    }
    if !leader {
        shard.groups.unload(partition.tp.partition.0);
        return;
    }
    let num_partitions = crate::metadata_sync::with_image(|image| {
        image.topic(OFFSETS_TOPIC).map_or(0, |t| t.partitions.len() as u32)
    });
    let shard = shard.clone();
    let partition = partition.clone();
    glommio::spawn_local(async move { ShardGroups::load(&shard, partition, num_partitions).await })
        .detach();
}

/// Called by metadata sync before this shard drops `tp`.
pub fn partition_closing(shard: &Shard, tp: &TopicPartition) {
    if tp.topic == OFFSETS_TOPIC {
        shard.groups.unload(tp.partition.0);
    }
}
