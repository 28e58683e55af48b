//! Replication shell: drives each partition's sans-IO replica core
//! (`weir_node_core::replica::ReplicaState`, held by the storage
//! [`Partition`]) with the controller's partition states, time, follower
//! fetches over QUIC (`weir_net`) and AlterPartition round trips.
//!
//! ```text
//!  follower shard                                   leader node
//!  ──────────────                                   ───────────
//!  tick: core.handle_tick, poll_transmit ─┐
//!  fetcher(leader) ◀── pending transmits ─┘
//!    one FetchRequest for every partition ──QUIC──▶ any shard takes it, each
//!    this shard follows on that leader              partition served on its
//!                                                   owning shard: core decides,
//!  Partition::fetch_answered ◀──── headers + raw ── batches read up to the log
//!    (append as sent, persist, next fetch)          end, long-poll on appends
//! ```
//!
//! State owned per shard ([`ShardReplication`]): the transmits waiting to be
//! sent, by leader, and which leaders have a fetcher task. Nothing is shared
//! between shards; the node-wide part ([`NodeLink`]) is the QUIC endpoint
//! handle, the inbound request queue and this node's broker epoch.

use crate::shard::{Shard, now_ms};
use crate::storage::partition::{Partition, PartitionError};
use bytes::{Bytes, BytesMut};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use weir_controller::{Command, CommandResult, ControllerError, PartitionMeta};
use weir_net::{
    DivergingEpoch, EndpointHandle, FetchPartition, FetchPartitionResponse, FetchRequest,
    FetchResponse, Header, InboundRequest,
};
use weir_node_core::replica::{
    AlterPartitionError, AlterPartitionResponse, EpochEndOffset, FetchAnswer, PartitionEpoch,
    PartitionState, ReplicaError, ReplicaRequest, Role, Transmit,
};
use weir_proto::{LeaderEpoch, NodeId, Offset, ShardId, TopicPartition};

/// How often each shard ticks its replica cores (timers: fetch backoff,
/// request resend, ISR shrink).
const TICK_MS: u64 = 10;
/// Largest response body a follower asks for.
const FETCH_RESPONSE_BYTES_MAX: u32 = 8 << 20;
/// Per-partition share of a follower fetch.
const FETCH_PARTITION_BYTES_MAX: usize = 1 << 20;

/// Node-wide replication handles, shared by every shard (`Send`).
#[derive(Clone, Default)]
pub struct NodeLink {
    /// The QUIC endpoint; `None` when the node has no replication listener.
    pub endpoint: Option<EndpointHandle>,
    /// Requests from other nodes (every shard takes from it).
    pub inbound: Option<flume::Receiver<InboundRequest>>,
    /// This node's registration with the controller (Kafka's broker epoch).
    pub broker_epoch: Arc<AtomicI64>,
}

impl NodeLink {
    pub fn broker_epoch(&self) -> i64 {
        self.broker_epoch.load(Ordering::Acquire)
    }
}

/// A request the core wants sent, with the partition it is for.
struct Pending {
    tp: TopicPartition,
    transmit: Transmit,
}

/// Per-shard replication state. Owned by its shard.
#[derive(Default)]
pub struct ShardReplication {
    /// Requests waiting for the fetcher of their leader, by leader.
    pending: RefCell<BTreeMap<NodeId, BTreeMap<TopicPartition, Pending>>>,
    /// Leaders with a running fetcher task on this shard.
    fetchers: RefCell<HashSet<NodeId>>,
    /// Notified when requests are added to `pending`.
    work: event_listener::Event,
    /// Replication throttle (Kafka's `*.replication.throttled.rate` and
    /// `*.replication.throttled.replicas`), from the metadata image.
    throttle: RefCell<Throttle>,
}

/// A byte-rate quota refilled continuously. It may go below zero (a batch
/// is never split), which holds the next throttled transfer back until it
/// has refilled: the average rate is the configured one.
#[derive(Debug)]
struct Quota {
    /// This shard's share of the node's rate; `None`: unlimited.
    bytes_per_sec: Option<f64>,
    tokens: f64,
    refilled: std::time::Instant,
}

impl Default for Quota {
    fn default() -> Quota {
        Quota { bytes_per_sec: None, tokens: 0.0, refilled: std::time::Instant::now() }
    }
}

impl Quota {
    fn set_rate(&mut self, bytes_per_sec: Option<f64>) {
        if self.bytes_per_sec != bytes_per_sec {
            self.refill();
            self.bytes_per_sec = bytes_per_sec;
            self.tokens = self.tokens.min(bytes_per_sec.unwrap_or(0.0));
        }
    }

    fn refill(&mut self) {
        let now = std::time::Instant::now();
        if let Some(rate) = self.bytes_per_sec {
            let elapsed = now.duration_since(self.refilled).as_secs_f64();
            // At most one second's worth banked: no burst after a quiet spell.
            self.tokens = (self.tokens + elapsed * rate).min(rate);
        }
        self.refilled = now;
    }

    /// Whether a throttled transfer may go now.
    fn allows(&mut self) -> bool {
        self.refill();
        self.bytes_per_sec.is_none() || self.tokens > 0.0
    }

    fn consume(&mut self, bytes: usize) {
        if self.bytes_per_sec.is_some() {
            self.tokens -= bytes as f64;
        }
    }
}

/// The throttle in force on this shard.
#[derive(Debug, Default)]
struct Throttle {
    leader: Quota,
    follower: Quota,
    /// Partitions whose leader side (here) is throttled.
    leader_replicas: HashSet<TopicPartition>,
    /// Partitions whose follower side (here) is throttled.
    follower_replicas: HashSet<TopicPartition>,
}

/// The controller's record of a partition, as the replica core takes it.
pub fn partition_state(meta: &PartitionMeta) -> PartitionState {
    PartitionState {
        partition: meta.partition,
        leader: (meta.leader.0 >= 0).then_some(meta.leader),
        leader_epoch: meta.leader_epoch,
        partition_epoch: PartitionEpoch(meta.partition_epoch),
        isr: meta.isr.clone(),
        replicas: meta.replicas.clone(),
    }
}

/// Starts the shard's replication tasks: the tick loop and, with an
/// endpoint, the inbound request loop.
pub fn start(shard: &Rc<Shard>) {
    let s = shard.clone();
    glommio::spawn_local(async move {
        while !s.shutting_down.get() {
            glommio::timer::sleep(Duration::from_millis(TICK_MS)).await;
            tick(&s);
        }
    })
    .detach();
    if let Some(inbound) = shard.link.inbound.clone() {
        let s = shard.clone();
        glommio::spawn_local(async move {
            while let Ok(request) = inbound.recv_async().await {
                if s.shutting_down.get() {
                    break;
                }
                glommio::spawn_local(serve_inbound(s.clone(), request)).detach();
            }
        })
        .detach();
    }
}

/// Ticks every replica core of the shard and collects its output.
fn tick(shard: &Rc<Shard>) {
    let now = now_ms();
    let partitions: Vec<Rc<Partition>> = shard.partitions.borrow().values().cloned().collect();
    for p in &partitions {
        p.replica.borrow_mut().handle_tick(now);
        // A follower writing a fetched answer sends its next fetch itself,
        // once the write is persisted.
        if !p.follower_writing.get() {
            collect_output(shard, p);
        }
    }
}

/// Drains a core's transmits (to the fetchers) and ISR proposals (to the
/// controller); acks=all completions are the shell's own (high watermark
/// waits), so the core's purgatory is unused.
fn collect_output(shard: &Rc<Shard>, p: &Rc<Partition>) {
    let mut added = false;
    loop {
        let t = p.replica.borrow_mut().poll_transmit();
        let Some(transmit) = t else { break };
        shard
            .replication
            .pending
            .borrow_mut()
            .entry(transmit.to)
            .or_default()
            .insert(p.tp.clone(), Pending { tp: p.tp.clone(), transmit });
        added = true;
    }
    while p.replica.borrow_mut().poll_completed_acks().is_some() {}
    loop {
        let change = p.replica.borrow_mut().poll_isr_change();
        let Some(request) = change else { break };
        glommio::spawn_local(alter_partition(shard.clone(), p.clone(), request)).detach();
    }
    // The HW may have moved (ISR shrink, follower progress).
    p.update_high_watermark();
    if added {
        let leaders: Vec<NodeId> = shard.replication.pending.borrow().keys().copied().collect();
        for leader in leaders {
            ensure_fetcher(shard, leader);
        }
        shard.replication.work.notify(usize::MAX);
    }
}

fn ensure_fetcher(shard: &Rc<Shard>, leader: NodeId) {
    if !shard.replication.fetchers.borrow_mut().insert(leader) {
        return;
    }
    let s = shard.clone();
    glommio::spawn_local(async move {
        fetcher(&s, leader).await;
        s.replication.fetchers.borrow_mut().remove(&leader);
    })
    .detach();
}

/// Sends this shard's requests to `leader`, one combined request at a time.
/// Lives until shutdown once started (one per leader node ever followed, so
/// bounded by the cluster's size): a task that ends while the QUIC thread
/// may still hold its waker is what glommio 0.9's foreign-wake race needs.
async fn fetcher(shard: &Rc<Shard>, leader: NodeId) {
    while !shard.shutting_down.get() {
        let batch: Vec<Pending> = {
            let mut pending = shard.replication.pending.borrow_mut();
            let mut throttle = shard.replication.throttle.borrow_mut();
            let over_quota = !throttle.follower.allows();
            let mut batch = Vec::new();
            if let Some(waiting) = pending.get_mut(&leader) {
                // Over the follower quota, throttled partitions' fetches wait
                // (epoch queries and unthrottled partitions go on).
                let held = |p: &Pending| {
                    over_quota
                        && matches!(p.transmit.request, ReplicaRequest::Fetch(_))
                        && throttle.follower_replicas.contains(&p.tp)
                };
                let ready: Vec<TopicPartition> =
                    waiting.values().filter(|p| !held(p)).map(|p| p.tp.clone()).collect();
                for tp in ready {
                    batch.extend(waiting.remove(&tp));
                }
                if waiting.is_empty() {
                    pending.remove(&leader);
                }
            }
            batch
        };
        if batch.is_empty() && shard.replication.pending.borrow().contains_key(&leader) {
            // Held back by the follower quota: wait for it to refill.
            glommio::timer::sleep(Duration::from_millis(TICK_MS)).await;
            continue;
        }
        if batch.is_empty() {
            let listener = shard.replication.work.listen();
            if shard.replication.pending.borrow().contains_key(&leader) {
                continue;
            }
            let sleep = glommio::timer::sleep(Duration::from_millis(100 * TICK_MS));
            futures::pin_mut!(sleep);
            let _ = futures::future::select(listener, sleep).await;
            continue;
        }
        exchange(shard, leader, batch).await;
    }
}

/// The address of `node`'s replication endpoint, from the metadata image.
fn replication_addr(node: NodeId) -> Option<SocketAddr> {
    crate::metadata_sync::with_image(|image| {
        image.nodes.get(&node).and_then(|n| n.replication_addr.as_deref()?.parse().ok())
    })
}

/// One request/response round with `leader` for `batch`.
async fn exchange(shard: &Rc<Shard>, leader: NodeId, batch: Vec<Pending>) {
    let link = &shard.link;
    let mut parts = Vec::with_capacity(batch.len());
    for p in &batch {
        let fp = match p.transmit.request {
            ReplicaRequest::Fetch(f) => FetchPartition {
                topic: p.tp.topic.clone(),
                partition: p.tp.partition.0,
                fetch_offset: f.fetch_offset.0,
                last_fetched_epoch: f.last_fetched_epoch.0,
                current_leader_epoch: f.current_leader_epoch.0,
                epoch_query: false,
            },
            ReplicaRequest::EpochQuery { current_leader_epoch, epoch, .. } => FetchPartition {
                topic: p.tp.topic.clone(),
                partition: p.tp.partition.0,
                fetch_offset: -1,
                last_fetched_epoch: epoch.0,
                current_leader_epoch: current_leader_epoch.0,
                epoch_query: true,
            },
        };
        parts.push(fp);
    }
    let header = Header::FetchRequest(FetchRequest {
        follower: shard.node_id.0,
        shard: shard.id.0,
        broker_epoch: link.broker_epoch(),
        partitions: parts,
        max_wait_ms: shard.config.replica_fetch_wait_max_ms,
        min_bytes: 1,
        max_bytes: FETCH_RESPONSE_BYTES_MAX,
    });
    let answer = match (&link.endpoint, replication_addr(leader)) {
        (Some(endpoint), Some(addr)) => {
            endpoint.request(addr, leader, header, Bytes::new()).await.map_err(|e| e.to_string())
        }
        (None, _) => Err("this node has no replication endpoint (replication_listen)".into()),
        (_, None) => Err(format!("node {leader} has no replication address")),
    };
    let now = now_ms();
    match answer {
        Ok(frame) => {
            let Header::FetchResponse(response) = &frame.header else {
                tracing::warn!(leader = leader.0, "unexpected answer {}", frame.header.name());
                fail_all(shard, batch, now).await;
                return;
            };
            if response.partitions.len() != batch.len() {
                tracing::warn!(leader = leader.0, "fetch answer with the wrong partition count");
                fail_all(shard, batch, now).await;
                return;
            }
            let bodies: Vec<(FetchPartitionResponse, Bytes)> =
                response.split_body(&frame.body).map(|(r, b)| (r.clone(), b)).collect();
            for (p, (r, records)) in batch.into_iter().zip(bodies) {
                if shard.replication.throttle.borrow().follower_replicas.contains(&p.tp) {
                    shard.replication.throttle.borrow_mut().follower.consume(records.len());
                }
                deliver(shard, p, &r, records, now).await;
            }
        }
        Err(e) => {
            tracing::debug!(leader = leader.0, "replica fetch failed: {e}");
            fail_all(shard, batch, now).await;
            glommio::timer::sleep(Duration::from_millis(
                shard.config.replica_fetch_backoff_ms.max(1) as u64,
            ))
            .await;
        }
    }
}

/// The request failed as a whole: every core backs off and resends.
async fn fail_all(shard: &Rc<Shard>, batch: Vec<Pending>, now: i64) {
    for p in batch {
        let Some(partition) = shard.partition(&p.tp) else { continue };
        let result = match p.transmit.request {
            ReplicaRequest::Fetch(f) => partition
                .fetch_answered(
                    f.request_id,
                    &FetchAnswer::Error(ReplicaError::NotLeaderOrFollower),
                    &Bytes::new(),
                    now,
                )
                .await
                .map(|_| ()),
            ReplicaRequest::EpochQuery { request_id, .. } => {
                partition
                    .epoch_query_answered(request_id, Err(ReplicaError::NotLeaderOrFollower), now)
                    .await
            }
        };
        if let Err(e) = result {
            tracing::warn!(partition = %p.tp, "replica: {e}");
        }
        collect_output(shard, &partition);
    }
}

fn replica_error(code: i16) -> ReplicaError {
    use kafka_protocol::error::ResponseError as E;
    match code {
        c if c == E::FencedLeaderEpoch.code() => ReplicaError::FencedLeaderEpoch,
        c if c == E::UnknownLeaderEpoch.code() => ReplicaError::UnknownLeaderEpoch,
        _ => ReplicaError::NotLeaderOrFollower,
    }
}

fn error_code(e: ReplicaError) -> i16 {
    use kafka_protocol::error::ResponseError as E;
    match e {
        ReplicaError::NotLeaderOrFollower => E::NotLeaderOrFollower.code(),
        ReplicaError::FencedLeaderEpoch => E::FencedLeaderEpoch.code(),
        ReplicaError::UnknownLeaderEpoch => E::UnknownLeaderEpoch.code(),
        ReplicaError::NotEnoughReplicas => E::NotEnoughReplicas.code(),
        ReplicaError::NotEnoughReplicasAfterAppend => E::NotEnoughReplicasAfterAppend.code(),
        ReplicaError::RequestTimedOut => E::RequestTimedOut.code(),
        ReplicaError::PurgatoryFull => E::ThrottlingQuotaExceeded.code(),
        ReplicaError::InvalidRecordCount => E::InvalidRecord.code(),
    }
}

/// Hands one partition's part of the leader's answer to its core.
async fn deliver(
    shard: &Rc<Shard>,
    p: Pending,
    r: &FetchPartitionResponse,
    records: Bytes,
    now: i64,
) {
    let Some(partition) = shard.partition(&p.tp) else { return };
    let offset_out_of_range = kafka_protocol::error::ResponseError::OffsetOutOfRange.code();
    let result = match p.transmit.request {
        ReplicaRequest::EpochQuery { request_id, .. } => {
            let result = match (r.error, r.epoch_end) {
                (0, Some(end)) => Ok(EpochEndOffset {
                    epoch: LeaderEpoch(end.epoch),
                    end_offset: Offset(end.end_offset),
                }),
                (0, None) => Err(ReplicaError::NotLeaderOrFollower),
                (code, _) => Err(replica_error(code)),
            };
            partition.epoch_query_answered(request_id, result, now).await
        }
        ReplicaRequest::Fetch(f) => {
            let answer = if r.error == offset_out_of_range {
                FetchAnswer::OutOfRange {
                    log_start: Offset(r.log_start),
                    log_end: Offset(r.log_end),
                }
            } else if r.error != 0 {
                FetchAnswer::Error(replica_error(r.error))
            } else if let Some(d) = r.diverging_epoch {
                FetchAnswer::Diverging {
                    diverging: EpochEndOffset {
                        epoch: LeaderEpoch(d.epoch),
                        end_offset: Offset(d.end_offset),
                    },
                    high_watermark: Offset(r.high_watermark),
                }
            } else {
                FetchAnswer::Records {
                    from: f.fetch_offset,
                    to: Offset(r.log_end),
                    high_watermark: Offset(r.high_watermark),
                    log_start: Offset(r.log_start),
                }
            };
            partition.fetch_answered(f.request_id, &answer, &records, now).await.map(|_| ())
        }
    };
    if let Err(e) = result {
        tracing::warn!(partition = %p.tp, "replica: {e}");
    }
    collect_output(shard, &partition);
}

/// Asks the controller to change the ISR and hands the answer to the core.
async fn alter_partition(
    shard: Rc<Shard>,
    partition: Rc<Partition>,
    request: weir_node_core::replica::AlterPartitionRequest,
) {
    let cmd = Command::AlterPartition {
        topic: partition.tp.topic.clone(),
        partition: request.partition,
        leader: request.leader,
        leader_epoch: request.leader_epoch,
        partition_epoch: request.partition_epoch.0,
        new_isr: request
            .new_isr
            .iter()
            .map(|m| weir_controller::IsrEntry { node: m.node, broker_epoch: m.broker_epoch })
            .collect(),
    };
    let isr_before = partition.replica.borrow().isr().map_or(0, <[NodeId]>::len);
    let result = match shard.submit(cmd).await {
        Ok(CommandResult::PartitionAltered { partition: meta, .. }) => Ok(partition_state(&meta)),
        Ok(other) => {
            tracing::warn!(partition = %partition.tp, "unexpected AlterPartition answer {other:?}");
            return;
        }
        Err(ControllerError::FencedLeaderEpoch(_)) => Err(AlterPartitionError::FencedLeaderEpoch),
        Err(ControllerError::InvalidUpdateVersion(_)) => {
            Err(AlterPartitionError::InvalidUpdateVersion)
        }
        Err(ControllerError::IneligibleReplica(_)) => Err(AlterPartitionError::IneligibleReplica),
        Err(ControllerError::UnknownTopic(_)) => Err(AlterPartitionError::UnknownPartition),
        Err(ControllerError::InvalidRequest(_)) => Err(AlterPartitionError::InvalidRequest),
        Err(e) => {
            // Unavailable and the like: the core resends after its timeout.
            tracing::debug!(partition = %partition.tp, "AlterPartition: {e}");
            return;
        }
    };
    match &result {
        Ok(state) => tracing::info!(partition = %partition.tp, isr = ?state.isr, "ISR changed"),
        Err(e) => tracing::info!(partition = %partition.tp, "AlterPartition refused: {e}"),
    }
    let response = AlterPartitionResponse { request_id: request.request_id, result };
    partition.replica.borrow_mut().handle_alter_partition_response(&response, now_ms());
    if let Ok(state) = &response.result {
        crate::metrics::with(|m| {
            if state.isr.len() < isr_before {
                m.isr_shrinks += 1;
            } else if state.isr.len() > isr_before {
                m.isr_expands += 1;
            }
        });
    }
    collect_output(&shard, &partition);
}

// ── leader side ─────────────────────────────────────────────────────────

/// One partition of an inbound fetch, with its index in the request.
#[derive(Clone)]
struct Wanted {
    index: usize,
    part: FetchPartition,
}

/// Answers a follower's request (any shard takes it; each partition is
/// served on the shard that owns it).
async fn serve_inbound(shard: Rc<Shard>, request: InboundRequest) {
    let Header::FetchRequest(fetch) = request.header else {
        // Raft frames are for controllers; dropping resets the stream.
        return;
    };
    let follower = NodeId(fetch.follower);
    let broker_epoch = fetch.broker_epoch;
    let wait = Duration::from_millis(u64::from(fetch.max_wait_ms));
    let per_partition = (fetch.max_bytes as usize / fetch.partitions.len().max(1))
        .clamp(64 << 10, FETCH_PARTITION_BYTES_MAX);
    let mut by_shard: BTreeMap<ShardId, Vec<Wanted>> = BTreeMap::new();
    for (index, part) in fetch.partitions.into_iter().enumerate() {
        let tp = TopicPartition::new(part.topic.clone(), part.partition);
        by_shard.entry(shard.shard_for(&tp)).or_default().push(Wanted { index, part });
    }
    let total = by_shard.values().map(Vec::len).sum::<usize>();
    // With one owning shard the long poll waits there on the partitions'
    // appends; across shards it re-polls.
    let single = by_shard.len() == 1;
    let started = std::time::Instant::now();
    let mut answers: Vec<Option<(FetchPartitionResponse, Bytes)>> = vec![None; total];
    loop {
        let remaining = wait.saturating_sub(started.elapsed());
        let wait_here = if single { remaining } else { Duration::ZERO };
        let work = by_shard.iter().map(|(&target, wanted)| {
            let wanted = wanted.clone();
            let shard = shard.clone();
            async move {
                shard
                    .run_on(target, move |s| {
                        serve_local(s, follower, broker_epoch, wanted, per_partition, wait_here)
                    })
                    .await
            }
        });
        let results = futures::future::join_all(work).await;
        let mut any_data = false;
        for (wanted, result) in by_shard.values().zip(results) {
            match result {
                Ok(list) => {
                    for (i, (r, b)) in list {
                        any_data |= worth_answering(&r, &b);
                        answers[i] = Some((r, b));
                    }
                }
                Err(_) => {
                    for w in wanted {
                        answers[w.index] = Some((partition_response(&w.part, 6), Bytes::new()));
                    }
                    any_data = true;
                }
            }
        }
        if any_data || single || started.elapsed() >= wait || shard.shutting_down.get() {
            break;
        }
        glommio::timer::sleep(Duration::from_millis(2)).await;
    }
    let mut partitions = Vec::with_capacity(total);
    let mut body = BytesMut::new();
    for a in answers {
        let (mut r, b) = a.expect("every partition answered");
        r.records_len = b.len() as u32;
        body.extend_from_slice(&b);
        partitions.push(r);
    }
    crate::metrics::with(|m| m.replication_bytes_out += body.len() as u64);
    let header = Header::FetchResponse(FetchResponse { partitions });
    if let Err(e) = request.reply.respond(header, body.freeze()) {
        tracing::warn!(follower = follower.0, "answering a replica fetch: {e}");
    }
}

/// Whether a partition's answer ends a long poll: records, an error, or a
/// truncation point to act on.
fn worth_answering(r: &FetchPartitionResponse, records: &Bytes) -> bool {
    !records.is_empty() || r.error != 0 || r.diverging_epoch.is_some() || r.epoch_end.is_some()
}

/// A partition's answer with `error` and nothing else filled in yet.
fn partition_response(part: &FetchPartition, error: i16) -> FetchPartitionResponse {
    FetchPartitionResponse {
        topic: part.topic.clone(),
        partition: part.partition,
        error,
        high_watermark: -1,
        log_start: -1,
        diverging_epoch: None,
        epoch_end: None,
        log_end: -1,
        records_len: 0,
    }
}

/// Serves the partitions this shard owns; waits up to `wait` for an append
/// when none has anything to send.
async fn serve_local(
    shard: Rc<Shard>,
    follower: NodeId,
    broker_epoch: i64,
    wanted: Vec<Wanted>,
    max_bytes: usize,
    wait: Duration,
) -> Vec<(usize, (FetchPartitionResponse, Bytes))> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        let mut listeners = Vec::new();
        let mut out = Vec::with_capacity(wanted.len());
        let mut any = false;
        for w in &wanted {
            let tp = TopicPartition::new(w.part.topic.clone(), w.part.partition);
            let answer = match shard.partition(&tp) {
                None => (partition_response(&w.part, 3), Bytes::new()),
                Some(p) => {
                    listeners.push(p.appended.listen());
                    // A throttled partition over its quota sends nothing this
                    // round (its follower fetches again); others are not held.
                    let throttled =
                        shard.replication.throttle.borrow().leader_replicas.contains(&tp);
                    let budget =
                        if throttled && !shard.replication.throttle.borrow_mut().leader.allows() {
                            0
                        } else {
                            max_bytes
                        };
                    let answer = serve_partition(&p, follower, broker_epoch, &w.part, budget).await;
                    if throttled {
                        shard.replication.throttle.borrow_mut().leader.consume(answer.1.len());
                    }
                    answer
                }
            };
            any |= worth_answering(&answer.0, &answer.1);
            out.push((w.index, answer));
        }
        let now = std::time::Instant::now();
        if any || now >= deadline || listeners.is_empty() || shard.shutting_down.get() {
            return out;
        }
        let sleep = glommio::timer::sleep(deadline - now);
        futures::pin_mut!(sleep);
        let _ = futures::future::select(futures::future::select_all(listeners), sleep).await;
    }
}

async fn serve_partition(
    p: &Rc<Partition>,
    follower: NodeId,
    broker_epoch: i64,
    part: &FetchPartition,
    max_bytes: usize,
) -> (FetchPartitionResponse, Bytes) {
    let mut r = partition_response(part, 0);
    let fill = |r: &mut FetchPartitionResponse, p: &Partition| {
        r.high_watermark = p.high_watermark().0;
        r.log_start = p.log_start_offset().0;
        r.log_end = p.log_end_offset().0;
    };
    if part.epoch_query {
        let answer = p.replica.borrow().handle_epoch_query(
            LeaderEpoch(part.current_leader_epoch),
            LeaderEpoch(part.last_fetched_epoch),
        );
        fill(&mut r, p);
        match answer {
            Ok(end) => {
                r.epoch_end =
                    Some(DivergingEpoch { epoch: end.epoch.0, end_offset: end.end_offset.0 })
            }
            Err(e) => r.error = error_code(e),
        }
        return (r, Bytes::new());
    }
    let request = weir_node_core::replica::FetchRequest {
        replica: follower,
        broker_epoch,
        request_id: 0,
        current_leader_epoch: LeaderEpoch(part.current_leader_epoch),
        fetch_offset: Offset(part.fetch_offset),
        last_fetched_epoch: LeaderEpoch(part.last_fetched_epoch),
    };
    let answer = p.replica.borrow_mut().handle_follower_fetch(&request, now_ms());
    // The follower's progress may move the HW (completing acks=all produces).
    p.update_high_watermark();
    fill(&mut r, p);
    match answer {
        FetchAnswer::Records { .. } if max_bytes == 0 => {}
        FetchAnswer::Records { from, to, .. } => {
            match p.read_for_follower(from, to, max_bytes).await {
                Ok(bytes) => return (r, bytes),
                Err(PartitionError::OffsetOutOfRange) => {
                    r.error = kafka_protocol::error::ResponseError::OffsetOutOfRange.code()
                }
                Err(e) => r.error = e.code(),
            }
        }
        FetchAnswer::Diverging { diverging, .. } => {
            r.diverging_epoch = Some(DivergingEpoch {
                epoch: diverging.epoch.0,
                end_offset: diverging.end_offset.0,
            })
        }
        FetchAnswer::OutOfRange { log_start, log_end } => {
            r.error = kafka_protocol::error::ResponseError::OffsetOutOfRange.code();
            r.log_start = log_start.0;
            r.log_end = log_end.0;
        }
        FetchAnswer::Error(e) => r.error = error_code(e),
    }
    (r, Bytes::new())
}

/// Whether this node leads `p` now.
pub fn is_leader(p: &Partition) -> bool {
    matches!(p.replica.borrow().role(), Role::Leader { .. })
}

/// Applies the controller's states to the partitions this shard hosts, once
/// the image carries this node's current registration (older states may name
/// this node's previous process as leader of an epoch about to end).
pub async fn apply_states(shard: &Rc<Shard>) {
    let me = shard.node_id;
    let epoch = shard.link.broker_epoch();
    let states: Vec<(TopicPartition, PartitionState)> = crate::metadata_sync::with_image(|image| {
        let registered = image.registrations.get(&me).is_some_and(|r| r.broker_epoch == epoch);
        if !registered {
            return Vec::new();
        }
        let mut out = Vec::new();
        for t in image.topics.values() {
            for p in &t.partitions {
                let tp = TopicPartition::new(t.name.clone(), p.partition.0);
                if shard.shard_for(&tp) == shard.id && p.replicas.contains(&me) {
                    out.push((tp, partition_state(p)));
                }
            }
        }
        out
    });
    refresh_throttle(shard);
    let now = now_ms();
    for (tp, state) in states {
        let Some(p) = shard.partition(&tp) else { continue };
        let before = is_leader(&p);
        if let Err(e) = p.apply_partition_state(&state, now).await {
            tracing::error!(partition = %tp, "applying the controller's state: {e}");
            continue;
        }
        let after = is_leader(&p);
        if before != after {
            tracing::info!(partition = %tp, role = ?p.replica.borrow().role(), "replica role changed");
            crate::kafka::groups::leadership_changed(shard, &p, after);
        }
        collect_output(shard, &p);
    }
}

/// Rebuilds the shard's throttle from the image: the node's rates (its own
/// value, else the cluster default; split evenly over the shards) and the
/// throttled replicas of the partitions this shard hosts.
fn refresh_throttle(shard: &Rc<Shard>) {
    let me = shard.node_id;
    let (rates, leader_replicas, follower_replicas) = crate::metadata_sync::with_image(|image| {
        let rates = image.replication_throttle(me);
        let (mut leader, mut follower) = (HashSet::new(), HashSet::new());
        for t in image.topics.values() {
            let Some(config) = image.topic_config(&t.name) else { continue };
            let (l, f) = (
                &config.leader_replication_throttled_replicas,
                &config.follower_replication_throttled_replicas,
            );
            if *l == weir_controller::ThrottledReplicas::None
                && *f == weir_controller::ThrottledReplicas::None
            {
                continue;
            }
            for p in &t.partitions {
                let tp = TopicPartition::new(t.name.clone(), p.partition.0);
                if shard.shard_for(&tp) != shard.id || !p.replicas.contains(&me) {
                    continue;
                }
                if l.contains(p.partition.0, me) {
                    leader.insert(tp.clone());
                }
                if f.contains(p.partition.0, me) {
                    follower.insert(tp);
                }
            }
        }
        (rates, leader, follower)
    });
    let share = |rate: Option<u64>| rate.map(|r| r as f64 / shard.shard_count as f64);
    let mut t = shard.replication.throttle.borrow_mut();
    t.leader.set_rate(share(rates.leader_bytes_per_sec));
    t.follower.set_rate(share(rates.follower_bytes_per_sec));
    t.leader_replicas = leader_replicas;
    t.follower_replicas = follower_replicas;
}
