//! Replica state of one partition on one node: role, log end, high
//! watermark, leader epochs, and on the leader the followers' progress, the
//! ISR and the acks=all purgatory. Kafka's ISR replication (`Partition`,
//! `ReplicaFetcherThread`) is the reference behaviour.
//!
//! Sans-IO like quinn-proto: inputs are `handle_*(…, now_ms)`, outputs are
//! drained with `poll_*()`; nothing here reads a clock or touches a file or
//! socket. The shell (and the simulator in `tests/replication_sim.rs`) owns
//! the log bytes and the network.
//!
//! ```text
//!  follower                               leader
//!  ────────                               ──────
//!  handle_leader_and_isr (new epoch)
//!  poll_transmit: EpochQuery(last epoch) ─▶ handle_epoch_query ─▶ EpochEndOffset
//!  handle_epoch_query_response ◀──────────
//!  poll_truncate: cut the log
//!  poll_transmit: Fetch(LEO, last epoch) ─▶ handle_follower_fetch
//!                                             follower LEO, HW = min LEO over ISR,
//!                                             poll_completed_acks, poll_isr_change
//!  handle_fetch_response ◀──────────────── Records [from, to) | Diverging | OutOfRange
//!  append the batches, HW = min(leader HW, LEO)
//! ```
//!
//! The ISR the leader uses for the high watermark is the *maximal* ISR: the
//! committed ISR plus any replica it has asked the controller to add, so an
//! expansion the controller may already have applied is always counted
//! (Kafka's `PendingExpandIsr`). `min.insync.replicas` is checked against the
//! committed ISR before an acks=all append, as Kafka does.
//!
//! The controller side (leader election, AlterPartition) is [`controller`].
//!
//! # What the shell must guarantee
//!
//! - It applies every [`LogCut`] and every append this core reports before
//!   the next input, so the core's log end is always the log's.
//! - It acts only on partition states recorded after its own registration
//!   with the controller (a KRaft broker stays fenced until it has caught up
//!   past its registration): an older state may name the node's previous
//!   process as leader of an epoch the controller is about to end, and
//!   resuming it would bring back a lower HW in the same epoch. The
//!   simulator found this; see `tests/replication_sim.rs`.
//! - Answers reach only the process that asked (connections die with it).
//!
//! # API
//!
//! - `ReplicaState::recover(ReplicaConfig, log_start, log_end, LeaderEpochCache, hw_checkpoint)`,
//!   `new_empty(config)`; getters `role() -> Role`, `log_start_offset`, `log_end_offset`,
//!   `high_watermark`, `epoch_cache`, `partition_epoch`, `isr`, `maximal_isr`,
//!   `follower_progress(NodeId)`; `set_broker_epoch(i64)`.
//! - Inputs: `handle_leader_and_isr(&PartitionState, now)`,
//!   `handle_append(record_count, Acks, timeout_ms, now) -> Result<Appended, ReplicaError>`,
//!   `handle_epoch_query(current_leader_epoch, epoch) -> Result<EpochEndOffset, ReplicaError>`,
//!   `handle_follower_fetch(&FetchRequest, now) -> FetchAnswer`,
//!   `handle_epoch_query_response(request_id, Result<EpochEndOffset, ReplicaError>, now)`,
//!   `handle_fetch_response(request_id, &FetchAnswer, &[BatchMeta], now) -> Option<Offset>`,
//!   `handle_alter_partition_response(&AlterPartitionResponse, now)`, `handle_tick(now)`.
//! - Outputs: `poll_transmit() -> Option<Transmit>`, `poll_truncate() -> Option<LogCut>`,
//!   `poll_completed_acks() -> Option<AckCompletion>`,
//!   `poll_isr_change() -> Option<AlterPartitionRequest>`.
//! - [`epoch_cache`]: `LeaderEpochCache::{new, from_entries, entries, latest, latest_epoch,
//!   assign, end_offset_for_epoch, truncate_from_end, truncate_from_start, clear}`.
//! - [`controller`]: `ControllerCore::{new(ControllerConfig), create_partition,
//!   handle_register(node, incarnation, now) -> broker_epoch,
//!   handle_heartbeat(node, broker_epoch, now) -> HeartbeatAnswer, handle_tick(now),
//!   handle_alter_partition(&AlterPartitionRequest) -> Result<PartitionState, AlterPartitionError>,
//!   poll_notification() -> Option<PartitionState>, partition, is_live}`.

pub mod controller;
pub mod epoch_cache;

use std::collections::{BTreeMap, VecDeque};

use thiserror::Error;
use weir_proto::{LeaderEpoch, NodeId, Offset, PartitionId};

pub use epoch_cache::{EpochCacheError, EpochEndOffset, EpochEntry, LeaderEpochCache};

/// Kafka's `partition_epoch`: bumped by the controller on every change of a
/// partition's leader or ISR; AlterPartition requests carry the one they
/// were based on so that stale ones are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PartitionEpoch(pub i32);

/// The controller's record of one partition, sent to its replicas
/// (LeaderAndIsr, or a metadata delta). Plain value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    pub partition: PartitionId,
    /// `None`: no eligible leader (Kafka's leader −1); the partition is offline.
    pub leader: Option<NodeId>,
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: PartitionEpoch,
    /// Never empty; contains the leader when there is one.
    pub isr: Vec<NodeId>,
    /// The assignment, in preference order.
    pub replicas: Vec<NodeId>,
}

/// One member of a proposed ISR and the broker epoch (registration) the
/// leader saw it fetch with; −1 for members already in the committed ISR.
/// The controller refuses a member whose registration changed since
/// (KIP-903), so a delayed, duplicated AlterPartition cannot re-admit a
/// replica that restarted or was fenced meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsrMember {
    pub node: NodeId,
    pub broker_epoch: i64,
}

/// Leader → controller: change the ISR. Plain value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterPartitionRequest {
    pub partition: PartitionId,
    pub leader: NodeId,
    /// Echoed in the response; a resend of the same proposal keeps it.
    pub request_id: u64,
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: PartitionEpoch,
    pub new_isr: Vec<IsrMember>,
}

/// Why the controller refused an AlterPartition (Kafka error names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum AlterPartitionError {
    #[error("UNKNOWN_TOPIC_OR_PARTITION")]
    UnknownPartition,
    /// The sender is not the leader, or not in this leader epoch.
    #[error("FENCED_LEADER_EPOCH")]
    FencedLeaderEpoch,
    /// Based on an older partition epoch.
    #[error("INVALID_UPDATE_VERSION")]
    InvalidUpdateVersion,
    /// A new member is fenced, or registered again since the leader saw it.
    #[error("INELIGIBLE_REPLICA")]
    IneligibleReplica,
    /// Malformed: leader missing, duplicates, or a node outside the assignment.
    #[error("INVALID_REQUEST")]
    InvalidRequest,
}

/// Controller → leader. Plain value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterPartitionResponse {
    pub request_id: u64,
    pub result: Result<PartitionState, AlterPartitionError>,
}

/// Errors answered to producers and replicas (Kafka error names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ReplicaError {
    #[error("NOT_LEADER_OR_FOLLOWER")]
    NotLeaderOrFollower,
    /// The requester's leader epoch is older than ours.
    #[error("FENCED_LEADER_EPOCH")]
    FencedLeaderEpoch,
    /// The requester's leader epoch is newer than ours (we have not heard yet).
    #[error("UNKNOWN_LEADER_EPOCH")]
    UnknownLeaderEpoch,
    /// acks=all refused before appending: ISR smaller than min.insync.replicas.
    #[error("NOT_ENOUGH_REPLICAS")]
    NotEnoughReplicas,
    /// Appended and replicated, but the ISR shrank below min.insync meanwhile.
    #[error("NOT_ENOUGH_REPLICAS_AFTER_APPEND")]
    NotEnoughReplicasAfterAppend,
    #[error("REQUEST_TIMED_OUT")]
    RequestTimedOut,
    /// The acks=all purgatory is at its bound; the shell throttles the client.
    #[error("purgatory full")]
    PurgatoryFull,
    #[error("INVALID_RECORD (record count)")]
    InvalidRecordCount,
}

/// What the producer asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// acks=0: no answer.
    None,
    /// acks=1: answered once the leader has written it.
    Leader,
    /// acks=all (−1): answered once the whole (maximal) ISR has it.
    All,
}

/// An acks=all produce waiting in the purgatory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WaiterId(pub u64);

/// Answer of [`ReplicaState::handle_append`]: the shell writes the records
/// at `base_offset`, stamped with `leader_epoch`, before it hands this
/// partition anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: Offset,
    pub leader_epoch: LeaderEpoch,
    /// Some for acks=all: the answer comes from [`ReplicaState::poll_completed_acks`].
    pub waiter: Option<WaiterId>,
}

/// A finished acks=all produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckCompletion {
    pub waiter: WaiterId,
    pub result: Result<(), ReplicaError>,
}

/// Follower → leader. Plain value (the shell frames it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaRequest {
    /// OffsetForLeaderEpoch: where does `epoch` end in the leader's log?
    EpochQuery {
        replica: NodeId,
        request_id: u64,
        current_leader_epoch: LeaderEpoch,
        epoch: LeaderEpoch,
    },
    Fetch(FetchRequest),
}

/// A follower's fetch. `fetch_offset` is its log end offset;
/// `last_fetched_epoch` the epoch of its last record (Kafka's
/// FetchRequest v12+ fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchRequest {
    pub replica: NodeId,
    /// The follower's registration with the controller (KIP-903); −1 if none yet.
    pub broker_epoch: i64,
    pub request_id: u64,
    pub current_leader_epoch: LeaderEpoch,
    pub fetch_offset: Offset,
    pub last_fetched_epoch: LeaderEpoch,
}

/// A request to send, from [`ReplicaState::poll_transmit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    pub to: NodeId,
    pub request: ReplicaRequest,
}

/// The leader's answer to a fetch. Plain value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchAnswer {
    /// Send the batches in `[from, to)` (a prefix of them is fine: the
    /// shell's byte limit), with the leader's high watermark.
    Records {
        from: Offset,
        to: Offset,
        high_watermark: Offset,
        log_start: Offset,
    },
    /// The follower's log diverges: it must truncate (Kafka's
    /// FetchResponse `diverging_epoch`).
    Diverging {
        diverging: EpochEndOffset,
        high_watermark: Offset,
    },
    /// The fetch offset is outside the leader's log.
    OutOfRange {
        log_start: Offset,
        log_end: Offset,
    },
    Error(ReplicaError),
}

/// One batch in a fetch response, as its header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMeta {
    pub base_offset: Offset,
    pub record_count: i64,
    pub leader_epoch: LeaderEpoch,
}

/// How the shell must cut the log, from [`ReplicaState::poll_truncate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogCut {
    /// Remove every record at or after this offset.
    TruncateTo(Offset),
    /// Remove everything and restart the (empty) log at this offset.
    ResetTo(Offset),
}

/// The role of the replica, as the controller last told it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Not started by the controller yet (after a restart), or not a replica.
    Offline,
    Leader {
        epoch: LeaderEpoch,
    },
    /// `leader: None` while the partition has no leader.
    Follower {
        leader: Option<NodeId>,
        epoch: LeaderEpoch,
    },
}

/// Per-partition replication settings (Kafka's names). Plain value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// This node.
    pub node: NodeId,
    pub partition: PartitionId,
    /// `min.insync.replicas`.
    pub min_insync_replicas: usize,
    /// `replica.lag.time.max.ms`: a follower that has not caught up to the
    /// leader's log end for this long leaves the ISR.
    pub replica_lag_time_max_ms: i64,
    /// `replica.fetch.backoff.ms`: pause after an empty or failed fetch.
    pub fetch_backoff_ms: i64,
    /// Resend a fetch, epoch query or AlterPartition unanswered for this long.
    pub request_timeout_ms: i64,
    /// Bound of the acks=all purgatory (STYLE: every in-flight table has one).
    pub ack_waiters_max: usize,
}

/// What the leader knows of one follower (Kafka's `Replica` state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerProgress {
    /// Its log end as of its last valid fetch in this leader epoch; `None`
    /// until it has fetched in this epoch (so an unchecked log never counts).
    pub log_end: Option<Offset>,
    /// Last time it had fetched up to the leader's log end (see
    /// [`ReplicaState::handle_follower_fetch`]).
    pub last_caught_up_ms: i64,
    last_fetch_ms: i64,
    last_fetch_leader_log_end: Offset,
    pub broker_epoch: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PendingPhase {
    /// Sent at `sent_ms`; resent after the request timeout.
    InFlight { sent_ms: i64 },
    /// Refused for being stale (fenced epoch, invalid version): the
    /// controller moved on, so wait for its newer state. Until then the
    /// proposal keeps counting in the maximal ISR, because an earlier copy
    /// may have been applied.
    AwaitingMetadata,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PendingIsr {
    request: AlterPartitionRequest,
    phase: PendingPhase,
}

#[derive(Debug, Clone)]
struct Waiter {
    /// The high watermark that completes it (one past its last offset).
    required: Offset,
    deadline_ms: i64,
}

#[derive(Debug, Clone)]
struct LeaderState {
    epoch: LeaderEpoch,
    /// The log end when this leadership began: a follower is in sync only
    /// once it has fetched past it (it has then truncated to this epoch).
    epoch_start_offset: Offset,
    replicas: Vec<NodeId>,
    /// Committed ISR, including this node.
    isr: Vec<NodeId>,
    pending: Option<PendingIsr>,
    followers: BTreeMap<NodeId, FollowerProgress>,
    waiters: BTreeMap<WaiterId, Waiter>,
}

impl LeaderState {
    /// Committed ISR plus the members of an outstanding proposal.
    fn maximal_isr(&self) -> Vec<NodeId> {
        let mut isr = self.isr.clone();
        if let Some(p) = &self.pending {
            for m in &p.request.new_isr {
                if !isr.contains(&m.node) {
                    isr.push(m.node);
                }
            }
        }
        isr
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FollowerPhase {
    /// Asking the leader where our last epoch ends (OffsetForLeaderEpoch).
    Truncating,
    Fetching,
}

#[derive(Debug, Clone)]
struct FollowerState {
    leader: Option<NodeId>,
    epoch: LeaderEpoch,
    phase: FollowerPhase,
    /// (request id, sent at)
    in_flight: Option<(u64, i64)>,
    next_send_ms: i64,
}

#[derive(Debug, Clone)]
enum RoleState {
    Offline,
    Leader(LeaderState),
    Follower(FollowerState),
}

/// The replica of one partition on one node.
///
/// Owned by the shard that owns the partition; all calls come from that
/// shard, one at a time. Lifecycle: [`ReplicaState::recover`] at startup
/// from what is durable (log start/end, epoch checkpoint, HW checkpoint),
/// `Offline` until the controller's [`PartitionState`] arrives through
/// [`ReplicaState::handle_leader_and_isr`], then leader or follower as the
/// controller says, with [`ReplicaState::handle_tick`] called at least every
/// few milliseconds. The shell drains every `poll_*` after each `handle_*`.
///
/// The log end here is the shell's log end: the shell applies each append
/// and each cut this value asks for before handing it the next input.
/// Durability is the shell's too: this core counts written records as part
/// of the log (the simulator writes them durably, as acks=all with fsync).
#[derive(Debug, Clone)]
pub struct ReplicaState {
    config: ReplicaConfig,
    role: RoleState,
    /// Latest leader epoch heard from the controller (UNKNOWN after restart).
    leader_epoch: LeaderEpoch,
    partition_epoch: PartitionEpoch,
    broker_epoch: i64,
    log_start: Offset,
    log_end: Offset,
    high_watermark: Offset,
    epochs: LeaderEpochCache,
    next_request_id: u64,
    next_waiter_id: u64,
    transmits: VecDeque<Transmit>,
    cuts: VecDeque<LogCut>,
    completed: VecDeque<AckCompletion>,
    isr_changes: VecDeque<AlterPartitionRequest>,
}

impl ReplicaState {
    /// A replica rebuilt from what survived on disk: the log's start and
    /// end, the leader-epoch checkpoint and the HW checkpoint. Epoch entries
    /// past the log end (checkpointed before a truncation that was
    /// interrupted) are dropped, and the HW is clamped into the log, as
    /// Kafka's log loader does. The HW may thus be below what it was before
    /// the crash; it only matters that it never passes what the ISR has.
    pub fn recover(
        config: ReplicaConfig,
        log_start: Offset,
        log_end: Offset,
        mut epochs: LeaderEpochCache,
        hw_checkpoint: Offset,
    ) -> ReplicaState {
        assert!(config.min_insync_replicas >= 1 && config.ack_waiters_max >= 1);
        assert!(Offset(0) <= log_start && log_start <= log_end, "{log_start:?}..{log_end:?}");
        epochs.truncate_from_end(log_end);
        ReplicaState {
            config,
            role: RoleState::Offline,
            leader_epoch: LeaderEpoch::UNKNOWN,
            partition_epoch: PartitionEpoch(-1),
            broker_epoch: -1,
            log_start,
            log_end,
            high_watermark: hw_checkpoint.clamp(log_start, log_end),
            epochs,
            next_request_id: 0,
            next_waiter_id: 0,
            transmits: VecDeque::new(),
            cuts: VecDeque::new(),
            completed: VecDeque::new(),
            isr_changes: VecDeque::new(),
        }
    }

    /// A new, empty replica.
    pub fn new_empty(config: ReplicaConfig) -> ReplicaState {
        ReplicaState::recover(config, Offset(0), Offset(0), LeaderEpochCache::new(), Offset(0))
    }

    pub fn config(&self) -> &ReplicaConfig {
        &self.config
    }

    pub fn role(&self) -> Role {
        match &self.role {
            RoleState::Offline => Role::Offline,
            RoleState::Leader(l) => Role::Leader { epoch: l.epoch },
            RoleState::Follower(f) => Role::Follower { leader: f.leader, epoch: f.epoch },
        }
    }

    pub fn log_start_offset(&self) -> Offset {
        self.log_start
    }

    pub fn log_end_offset(&self) -> Offset {
        self.log_end
    }

    pub fn high_watermark(&self) -> Offset {
        self.high_watermark
    }

    /// The shell checkpoints `entries()` whenever they change.
    pub fn epoch_cache(&self) -> &LeaderEpochCache {
        &self.epochs
    }

    pub fn partition_epoch(&self) -> PartitionEpoch {
        self.partition_epoch
    }

    /// The committed ISR, on the leader.
    pub fn isr(&self) -> Option<&[NodeId]> {
        match &self.role {
            RoleState::Leader(l) => Some(&l.isr),
            _ => None,
        }
    }

    /// The ISR the high watermark is computed over, on the leader.
    pub fn maximal_isr(&self) -> Option<Vec<NodeId>> {
        match &self.role {
            RoleState::Leader(l) => Some(l.maximal_isr()),
            _ => None,
        }
    }

    pub fn follower_progress(&self, follower: NodeId) -> Option<FollowerProgress> {
        match &self.role {
            RoleState::Leader(l) => l.followers.get(&follower).copied(),
            _ => None,
        }
    }

    /// This node's registration with the controller, sent in fetches.
    pub fn set_broker_epoch(&mut self, broker_epoch: i64) {
        self.broker_epoch = broker_epoch;
    }

    // ── outputs ─────────────────────────────────────────────────────────

    /// The next request for the shell to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next cut the shell must apply to the log (before anything else).
    pub fn poll_truncate(&mut self) -> Option<LogCut> {
        self.cuts.pop_front()
    }

    /// The next finished acks=all produce.
    pub fn poll_completed_acks(&mut self) -> Option<AckCompletion> {
        self.completed.pop_front()
    }

    /// The next AlterPartition to send to the controller.
    pub fn poll_isr_change(&mut self) -> Option<AlterPartitionRequest> {
        self.isr_changes.pop_front()
    }

    // ── inputs: controller ──────────────────────────────────────────────

    /// A partition state from the controller (LeaderAndIsr or a metadata
    /// delta). Older states than the one applied are ignored, so the shell
    /// may deliver repeats and reorderings.
    pub fn handle_leader_and_isr(&mut self, state: &PartitionState, now_ms: i64) {
        assert_eq!(state.partition, self.config.partition);
        let newer_epoch = state.leader_epoch > self.leader_epoch;
        if !newer_epoch
            && (state.leader_epoch < self.leader_epoch
                || state.partition_epoch <= self.partition_epoch)
        {
            return;
        }
        let me = self.config.node;
        self.leader_epoch = state.leader_epoch;
        self.partition_epoch = state.partition_epoch;
        if !state.replicas.contains(&me) {
            self.fail_waiters(ReplicaError::NotLeaderOrFollower);
            self.role = RoleState::Offline;
            return;
        }
        if state.leader == Some(me) {
            match &mut self.role {
                RoleState::Leader(l) if !newer_epoch => {
                    // Same leadership, new ISR (the controller applied an
                    // AlterPartition or removed a fenced follower). Any
                    // proposal in flight was based on an older partition
                    // epoch, so the controller will refuse it.
                    assert!(state.isr.contains(&me), "the leader left the ISR: {state:?}");
                    // A member the controller removed (fenced, shut down)
                    // must fetch again before it is proposed back: its old
                    // position would otherwise look caught up on an idle
                    // partition, and the proposal would be refused forever.
                    for (r, p) in l.followers.iter_mut() {
                        if l.isr.contains(r) && !state.isr.contains(r) {
                            p.log_end = None;
                        }
                    }
                    l.isr = state.isr.clone();
                    l.replicas = state.replicas.clone();
                    l.pending = None;
                    // A reassignment adds or removes replicas without a new
                    // epoch: new ones start unknown (not caught up), removed
                    // ones are forgotten.
                    l.followers.retain(|r, _| state.replicas.contains(r));
                    for &r in &state.replicas {
                        if r != me {
                            l.followers.entry(r).or_insert(FollowerProgress {
                                log_end: None,
                                last_caught_up_ms: i64::MIN / 2,
                                last_fetch_ms: i64::MIN / 2,
                                last_fetch_leader_log_end: Offset::NONE,
                                broker_epoch: -1,
                            });
                        }
                    }
                    self.after_leader_change(now_ms);
                }
                _ => self.become_leader(state, now_ms),
            }
        } else {
            match &self.role {
                RoleState::Follower(f) if !newer_epoch && f.leader == state.leader => {}
                _ => self.become_follower(state.leader, state.leader_epoch, now_ms),
            }
        }
    }

    fn become_leader(&mut self, state: &PartitionState, now_ms: i64) {
        assert!(state.isr.contains(&self.config.node), "elected outside the ISR: {state:?}");
        self.fail_waiters(ReplicaError::NotLeaderOrFollower);
        // Records of this epoch start at our log end (the checkpoint keeps
        // it even before the first record, as Kafka's does).
        self.epochs.assign(state.leader_epoch, self.log_end);
        let followers = state
            .replicas
            .iter()
            .filter(|&&r| r != self.config.node)
            .map(|&r| {
                // Kafka's resetReplicaState: the ISR keeps its members'
                // lag clock running from now; nobody's LEO counts until
                // they fetch in this epoch.
                let in_sync = state.isr.contains(&r);
                let progress = FollowerProgress {
                    log_end: None,
                    last_caught_up_ms: if in_sync { now_ms } else { i64::MIN / 2 },
                    last_fetch_ms: i64::MIN / 2,
                    last_fetch_leader_log_end: Offset::NONE,
                    broker_epoch: -1,
                };
                (r, progress)
            })
            .collect();
        self.role = RoleState::Leader(LeaderState {
            epoch: state.leader_epoch,
            epoch_start_offset: self.log_end,
            replicas: state.replicas.clone(),
            isr: state.isr.clone(),
            pending: None,
            followers,
            waiters: BTreeMap::new(),
        });
        self.after_leader_change(now_ms);
    }

    fn become_follower(&mut self, leader: Option<NodeId>, epoch: LeaderEpoch, now_ms: i64) {
        self.fail_waiters(ReplicaError::NotLeaderOrFollower);
        // With no epochs there is nothing that could diverge: fetch at once.
        let phase = if self.epochs.is_empty() {
            FollowerPhase::Fetching
        } else {
            FollowerPhase::Truncating
        };
        self.role = RoleState::Follower(FollowerState {
            leader,
            epoch,
            phase,
            in_flight: None,
            next_send_ms: now_ms,
        });
        self.maybe_send(now_ms);
    }

    /// The controller's answer to our AlterPartition.
    pub fn handle_alter_partition_response(
        &mut self,
        response: &AlterPartitionResponse,
        now_ms: i64,
    ) {
        let RoleState::Leader(l) = &mut self.role else { return };
        let Some(pending) = &mut l.pending else { return };
        if pending.request.request_id != response.request_id {
            return; // an answer to an older proposal, already settled
        }
        match &response.result {
            Ok(state) => {
                if state.leader_epoch != l.epoch || state.partition_epoch <= self.partition_epoch {
                    return;
                }
                assert_eq!(state.leader, Some(self.config.node));
                l.isr = state.isr.clone();
                l.pending = None;
                self.partition_epoch = state.partition_epoch;
            }
            Err(
                AlterPartitionError::FencedLeaderEpoch | AlterPartitionError::InvalidUpdateVersion,
            ) => {
                pending.phase = PendingPhase::AwaitingMetadata;
            }
            Err(
                AlterPartitionError::IneligibleReplica
                | AlterPartitionError::InvalidRequest
                | AlterPartitionError::UnknownPartition,
            ) => {
                // Refused with the partition epoch still current, and the
                // refusal cannot turn into acceptance later: not applied.
                // A refused joiner (fenced, or registered again since) is
                // proposed again only after it fetches again, never in a
                // loop on its stale position.
                for m in &pending.request.new_isr {
                    if !l.isr.contains(&m.node)
                        && let Some(p) = l.followers.get_mut(&m.node)
                    {
                        p.log_end = None;
                    }
                }
                l.pending = None;
            }
        }
        self.after_leader_change(now_ms);
    }

    // ── inputs: producers (leader) ──────────────────────────────────────

    /// A produce of `record_count` records. Kafka checks the ISR size before
    /// appending: acks=all with an ISR below `min.insync.replicas` is
    /// refused with nothing written.
    pub fn handle_append(
        &mut self,
        record_count: i64,
        acks: Acks,
        timeout_ms: i64,
        now_ms: i64,
    ) -> Result<Appended, ReplicaError> {
        let RoleState::Leader(l) = &mut self.role else {
            return Err(ReplicaError::NotLeaderOrFollower);
        };
        if record_count <= 0 {
            return Err(ReplicaError::InvalidRecordCount);
        }
        if acks == Acks::All {
            if l.isr.len() < self.config.min_insync_replicas {
                return Err(ReplicaError::NotEnoughReplicas);
            }
            if l.waiters.len() >= self.config.ack_waiters_max {
                return Err(ReplicaError::PurgatoryFull);
            }
        }
        let base_offset = self.log_end;
        self.log_end = Offset(base_offset.0 + record_count);
        let waiter = (acks == Acks::All).then(|| {
            let id = WaiterId(self.next_waiter_id);
            self.next_waiter_id += 1;
            let waiter = Waiter { required: self.log_end, deadline_ms: now_ms + timeout_ms };
            l.waiters.insert(id, waiter);
            id
        });
        let appended = Appended { base_offset, leader_epoch: l.epoch, waiter };
        self.maybe_advance_high_watermark();
        Ok(appended)
    }

    // ── inputs: followers (leader) ──────────────────────────────────────

    /// OffsetForLeaderEpoch from a follower.
    pub fn handle_epoch_query(
        &self,
        current_leader_epoch: LeaderEpoch,
        epoch: LeaderEpoch,
    ) -> Result<EpochEndOffset, ReplicaError> {
        let RoleState::Leader(l) = &self.role else {
            return Err(ReplicaError::NotLeaderOrFollower);
        };
        check_epoch(current_leader_epoch, l.epoch)?;
        Ok(self.epochs.end_offset_for_epoch(epoch, self.log_end))
    }

    /// A follower's fetch. Validates its position against our epochs first
    /// (Kafka's `validateFetchOffsetAndMaybeGetDivergingEpoch`); only a
    /// valid fetch updates its progress, which may advance the HW, complete
    /// acks=all waiters and propose an ISR expansion.
    ///
    /// Catch-up time follows Kafka's `Replica.updateFetchState`: a fetch at
    /// our log end makes the follower caught up now; a fetch at or past our
    /// log end as of its previous fetch makes it caught up as of that fetch.
    pub fn handle_follower_fetch(&mut self, fetch: &FetchRequest, now_ms: i64) -> FetchAnswer {
        let RoleState::Leader(l) = &mut self.role else {
            return FetchAnswer::Error(ReplicaError::NotLeaderOrFollower);
        };
        if let Err(e) = check_epoch(fetch.current_leader_epoch, l.epoch) {
            return FetchAnswer::Error(e);
        }
        let Some(progress) = l.followers.get_mut(&fetch.replica) else {
            return FetchAnswer::Error(ReplicaError::NotLeaderOrFollower);
        };
        if fetch.last_fetched_epoch != LeaderEpoch::UNKNOWN {
            let end = self.epochs.end_offset_for_epoch(fetch.last_fetched_epoch, self.log_end);
            if end.is_undefined() {
                return FetchAnswer::OutOfRange {
                    log_start: self.log_start,
                    log_end: self.log_end,
                };
            }
            if end.epoch < fetch.last_fetched_epoch || end.end_offset < fetch.fetch_offset {
                return FetchAnswer::Diverging {
                    diverging: end,
                    high_watermark: self.high_watermark,
                };
            }
        }
        if fetch.fetch_offset < self.log_start || fetch.fetch_offset > self.log_end {
            return FetchAnswer::OutOfRange { log_start: self.log_start, log_end: self.log_end };
        }
        if fetch.fetch_offset >= self.log_end {
            progress.last_caught_up_ms = progress.last_caught_up_ms.max(now_ms);
        } else if fetch.fetch_offset >= progress.last_fetch_leader_log_end {
            progress.last_caught_up_ms = progress.last_caught_up_ms.max(progress.last_fetch_ms);
        }
        progress.last_fetch_leader_log_end = self.log_end;
        progress.last_fetch_ms = now_ms;
        progress.log_end = Some(fetch.fetch_offset);
        progress.broker_epoch = fetch.broker_epoch;
        self.after_leader_change(now_ms);
        FetchAnswer::Records {
            from: fetch.fetch_offset,
            to: self.log_end,
            high_watermark: self.high_watermark,
            log_start: self.log_start,
        }
    }

    // ── inputs: leader's answers (follower) ─────────────────────────────

    /// The leader's answer to our epoch query.
    pub fn handle_epoch_query_response(
        &mut self,
        request_id: u64,
        result: Result<EpochEndOffset, ReplicaError>,
        now_ms: i64,
    ) {
        let RoleState::Follower(f) = &mut self.role else { return };
        if f.in_flight.map(|(id, _)| id) != Some(request_id) || f.phase != FollowerPhase::Truncating
        {
            return;
        }
        f.in_flight = None;
        match result {
            Err(_) => f.next_send_ms = now_ms + self.config.fetch_backoff_ms,
            Ok(leader_end) => {
                let (to, complete) = self.truncation_offset(leader_end);
                self.truncate_to(to);
                // With no epoch left to ask about, nothing more can diverge.
                if complete || self.epochs.is_empty() {
                    let RoleState::Follower(f) = &mut self.role else { unreachable!() };
                    f.phase = FollowerPhase::Fetching;
                }
            }
        }
        self.maybe_send(now_ms);
    }

    /// The leader's answer to our fetch. For `Records`, `batches` are the
    /// headers of the batches that came with it; on `Some(at)` the shell
    /// appends exactly those batches to the log at offset `at` (our
    /// previous log end). `None`: ignore the batches (stale answer, a
    /// truncation instead, or batches that do not continue our log).
    pub fn handle_fetch_response(
        &mut self,
        request_id: u64,
        answer: &FetchAnswer,
        batches: &[BatchMeta],
        now_ms: i64,
    ) -> Option<Offset> {
        let RoleState::Follower(f) = &mut self.role else { return None };
        if f.in_flight.map(|(id, _)| id) != Some(request_id) || f.phase != FollowerPhase::Fetching {
            return None;
        }
        f.in_flight = None;
        let epoch = f.epoch;
        let backoff_until = now_ms + self.config.fetch_backoff_ms;
        let mut appended_at = None;
        match *answer {
            FetchAnswer::Records { from, high_watermark, .. } => {
                let continues =
                    batches_continue_log(batches, self.log_end, self.epochs.latest_epoch(), epoch);
                if from != self.log_end || !continues {
                    f.next_send_ms = backoff_until;
                } else {
                    if batches.is_empty() {
                        f.next_send_ms = backoff_until;
                    }
                    for b in batches {
                        self.epochs.assign(b.leader_epoch, b.base_offset);
                        self.log_end = Offset(b.base_offset.0 + b.record_count);
                    }
                    // Kafka sets a follower's HW from the leader's, capped
                    // by its own log: it can drop after a leader change.
                    self.high_watermark = high_watermark.clamp(self.log_start, self.log_end);
                    appended_at = Some(from);
                }
            }
            FetchAnswer::Diverging { diverging, .. } => {
                // An incomplete truncation is resolved by the next fetch,
                // which carries our new last epoch and diverges again if needed.
                let (to, _complete) = self.truncation_offset(diverging);
                self.truncate_to(to);
            }
            FetchAnswer::OutOfRange { log_start, log_end } => {
                if log_end < self.log_end {
                    // The leader has less than we do (possible only after an
                    // unclean election): follow it, as Kafka does.
                    self.truncate_to(log_end);
                } else if self.log_end < log_start {
                    // A new or long-gone replica: start over from the
                    // leader's log start and catch up from there.
                    self.reset_to(log_start);
                } else {
                    f.next_send_ms = backoff_until;
                }
            }
            FetchAnswer::Error(_) => f.next_send_ms = backoff_until,
        }
        self.maybe_send(now_ms);
        appended_at
    }

    /// Timers: request resends, fetch backoff, acks=all timeouts, ISR shrink.
    pub fn handle_tick(&mut self, now_ms: i64) {
        match &mut self.role {
            RoleState::Offline => {}
            RoleState::Follower(f) => {
                if f.in_flight
                    .is_some_and(|(_, sent)| now_ms - sent >= self.config.request_timeout_ms)
                {
                    f.in_flight = None;
                }
                self.maybe_send(now_ms);
            }
            RoleState::Leader(l) => {
                let expired: Vec<WaiterId> = l
                    .waiters
                    .iter()
                    .filter(|(_, w)| w.deadline_ms <= now_ms)
                    .map(|(&id, _)| id)
                    .collect();
                for waiter in expired {
                    l.waiters.remove(&waiter);
                    let result = Err(ReplicaError::RequestTimedOut);
                    self.completed.push_back(AckCompletion { waiter, result });
                }
                let timeout_ms = self.config.request_timeout_ms;
                let resend = l.pending.as_mut().filter(|p| {
                    matches!(p.phase, PendingPhase::InFlight { sent_ms } if now_ms - sent_ms >= timeout_ms)
                });
                if let Some(p) = resend {
                    p.phase = PendingPhase::InFlight { sent_ms: now_ms };
                    self.isr_changes.push_back(p.request.clone());
                }
                self.after_leader_change(now_ms);
            }
        }
    }

    // ── internals ───────────────────────────────────────────────────────

    /// After anything that may move the HW or the ISR on a leader.
    fn after_leader_change(&mut self, now_ms: i64) {
        self.maybe_advance_high_watermark();
        self.maybe_propose_isr_change(now_ms);
    }

    /// HW = min over the maximal ISR of the known log ends (the leader's
    /// own included); it only moves forward and never past our log end.
    /// Completes the acks=all waiters it covers.
    fn maybe_advance_high_watermark(&mut self) {
        let RoleState::Leader(l) = &mut self.role else { return };
        let mut hw = self.log_end;
        for r in l.maximal_isr() {
            if r == self.config.node {
                continue;
            }
            match l.followers.get(&r).and_then(|p| p.log_end) {
                Some(end) => hw = hw.min(end),
                None => return, // not fetched in this epoch yet: cannot count it
            }
        }
        if hw <= self.high_watermark {
            return;
        }
        assert!(hw <= self.log_end);
        self.high_watermark = hw;
        let maximal = l.maximal_isr().len();
        let done: Vec<WaiterId> =
            l.waiters.iter().filter(|(_, w)| w.required <= hw).map(|(&id, _)| id).collect();
        for waiter in done {
            l.waiters.remove(&waiter);
            // Kafka's checkEnoughReplicasReachOffset.
            let result = if maximal >= self.config.min_insync_replicas {
                Ok(())
            } else {
                Err(ReplicaError::NotEnoughReplicasAfterAppend)
            };
            self.completed.push_back(AckCompletion { waiter, result });
        }
    }

    /// One ISR change at a time: first shrink (followers not caught up for
    /// longer than `replica.lag.time.max.ms`), else expand by one follower
    /// that is in sync (Kafka's `isFollowerInSync`: fetched at or past the HW
    /// and past the start of this leader epoch).
    fn maybe_propose_isr_change(&mut self, now_ms: i64) {
        let RoleState::Leader(l) = &mut self.role else { return };
        if l.pending.is_some() || self.partition_epoch.0 < 0 {
            return;
        }
        let me = self.config.node;
        let lag_max = self.config.replica_lag_time_max_ms;
        let log_end = self.log_end;
        let out_of_sync: Vec<NodeId> = l
            .isr
            .iter()
            .copied()
            .filter(|&r| r != me)
            .filter(|r| {
                let p = &l.followers[r];
                let caught_up =
                    p.log_end == Some(log_end) || now_ms - p.last_caught_up_ms <= lag_max;
                !caught_up
            })
            .collect();
        let new_isr: Vec<IsrMember> = if !out_of_sync.is_empty() {
            l.isr
                .iter()
                .filter(|r| !out_of_sync.contains(r))
                .map(|&node| IsrMember { node, broker_epoch: -1 })
                .collect()
        } else {
            let joining = l.replicas.iter().copied().find(|r| {
                !l.isr.contains(r)
                    && l.followers.get(r).is_some_and(|p| {
                        p.broker_epoch >= 0
                            && p.log_end.is_some_and(|end| {
                                end >= self.high_watermark && end >= l.epoch_start_offset
                            })
                    })
            });
            let Some(joining) = joining else { return };
            let mut isr: Vec<IsrMember> =
                l.isr.iter().map(|&node| IsrMember { node, broker_epoch: -1 }).collect();
            isr.push(IsrMember { node: joining, broker_epoch: l.followers[&joining].broker_epoch });
            isr
        };
        let request = AlterPartitionRequest {
            partition: self.config.partition,
            leader: me,
            request_id: self.next_request_id,
            leader_epoch: l.epoch,
            partition_epoch: self.partition_epoch,
            new_isr,
        };
        self.next_request_id += 1;
        self.isr_changes.push_back(request.clone());
        l.pending = Some(PendingIsr { request, phase: PendingPhase::InFlight { sent_ms: now_ms } });
    }

    /// Kafka's `getOffsetTruncationState`: where to cut our log given where
    /// the leader says an epoch ends, and whether that settles it (else ask
    /// again with our new last epoch).
    fn truncation_offset(&self, leader_end: EpochEndOffset) -> (Offset, bool) {
        if leader_end.is_undefined() {
            // The leader knows nothing of our epoch. Everything at or below
            // our HW is committed; above it nothing can be trusted.
            return (self.high_watermark.min(self.log_end), true);
        }
        let mine = self.epochs.end_offset_for_epoch(leader_end.epoch, self.log_end);
        if mine.is_undefined() {
            (leader_end.end_offset.min(self.log_end), true)
        } else if mine.epoch == leader_end.epoch {
            (leader_end.end_offset.min(mine.end_offset), true)
        } else {
            (mine.end_offset.min(self.log_end), false)
        }
    }

    fn truncate_to(&mut self, to: Offset) {
        if to >= self.log_end {
            // Nothing to cut, but an epoch that started at our log end and
            // never wrote (we led it briefly) must go: left in place it is
            // our "last fetched epoch" and the leader keeps answering with
            // a divergence we never resolve (Kafka's `truncateTo` does the same).
            self.epochs.truncate_from_end(self.log_end);
            return;
        }
        if to < self.log_start {
            self.reset_to(to);
            return;
        }
        self.log_end = to;
        self.epochs.truncate_from_end(to);
        self.high_watermark = self.high_watermark.min(to);
        self.cuts.push_back(LogCut::TruncateTo(to));
    }

    fn reset_to(&mut self, start: Offset) {
        self.log_start = start;
        self.log_end = start;
        self.high_watermark = start;
        self.epochs.clear();
        self.cuts.push_back(LogCut::ResetTo(start));
    }

    /// Queues the follower's next request if one is due.
    fn maybe_send(&mut self, now_ms: i64) {
        let RoleState::Follower(f) = &mut self.role else { return };
        let Some(leader) = f.leader else { return };
        if f.in_flight.is_some() || now_ms < f.next_send_ms {
            return;
        }
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        f.in_flight = Some((request_id, now_ms));
        let request = match f.phase {
            FollowerPhase::Truncating => ReplicaRequest::EpochQuery {
                replica: self.config.node,
                request_id,
                current_leader_epoch: f.epoch,
                epoch: self.epochs.latest_epoch(),
            },
            FollowerPhase::Fetching => ReplicaRequest::Fetch(FetchRequest {
                replica: self.config.node,
                broker_epoch: self.broker_epoch,
                request_id,
                current_leader_epoch: f.epoch,
                fetch_offset: self.log_end,
                last_fetched_epoch: self.epochs.latest_epoch(),
            }),
        };
        self.transmits.push_back(Transmit { to: leader, request });
    }

    fn fail_waiters(&mut self, error: ReplicaError) {
        if let RoleState::Leader(l) = &mut self.role {
            for (waiter, _) in std::mem::take(&mut l.waiters) {
                self.completed.push_back(AckCompletion { waiter, result: Err(error) });
            }
        }
    }
}

/// Kafka's leader-epoch fencing of replica requests.
fn check_epoch(requester: LeaderEpoch, ours: LeaderEpoch) -> Result<(), ReplicaError> {
    match requester.cmp(&ours) {
        std::cmp::Ordering::Less => Err(ReplicaError::FencedLeaderEpoch),
        std::cmp::Ordering::Greater => Err(ReplicaError::UnknownLeaderEpoch),
        std::cmp::Ordering::Equal => Ok(()),
    }
}

/// Fetched batches must continue our log: contiguous from our log end,
/// non-empty, epochs non-decreasing, never older than our last epoch
/// nor newer than the leader's.
fn batches_continue_log(
    batches: &[BatchMeta],
    log_end: Offset,
    last_epoch: LeaderEpoch,
    leader_epoch: LeaderEpoch,
) -> bool {
    let mut next = log_end;
    let mut epoch = last_epoch;
    for b in batches {
        if b.base_offset != next
            || b.record_count <= 0
            || b.leader_epoch < epoch
            || b.leader_epoch > leader_epoch
        {
            return false;
        }
        next = Offset(b.base_offset.0 + b.record_count);
        epoch = b.leader_epoch;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: PartitionId = PartitionId(0);

    fn config(node: i32) -> ReplicaConfig {
        ReplicaConfig {
            node: NodeId(node),
            partition: P,
            min_insync_replicas: 2,
            replica_lag_time_max_ms: 100,
            fetch_backoff_ms: 10,
            request_timeout_ms: 50,
            ack_waiters_max: 8,
        }
    }

    fn state(leader: i32, epoch: i32, pe: i32, isr: &[i32]) -> PartitionState {
        PartitionState {
            partition: P,
            leader: Some(NodeId(leader)),
            leader_epoch: LeaderEpoch(epoch),
            partition_epoch: PartitionEpoch(pe),
            isr: isr.iter().map(|&n| NodeId(n)).collect(),
            replicas: vec![NodeId(1), NodeId(2), NodeId(3)],
        }
    }

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        let entries = entries
            .iter()
            .map(|&(e, o)| EpochEntry { epoch: LeaderEpoch(e), start_offset: Offset(o) })
            .collect();
        LeaderEpochCache::from_entries(entries).unwrap()
    }

    fn replica(node: i32, log_end: i64, epochs: &[(i32, i64)]) -> ReplicaState {
        ReplicaState::recover(config(node), Offset(0), Offset(log_end), cache(epochs), Offset(0))
    }

    fn fetch(replica: i32, epoch: i32, offset: i64, last_epoch: i32) -> FetchRequest {
        FetchRequest {
            replica: NodeId(replica),
            broker_epoch: 10 + replica as i64,
            request_id: 0,
            current_leader_epoch: LeaderEpoch(epoch),
            fetch_offset: Offset(offset),
            last_fetched_epoch: LeaderEpoch(last_epoch),
        }
    }

    /// Runs the follower's request to completion against `leader`, applying
    /// answers, until it is fetching and has nothing in flight. Returns the
    /// log cuts it asked for.
    fn sync_once(follower: &mut ReplicaState, leader: &mut ReplicaState, now: i64) -> Vec<LogCut> {
        let mut cuts = Vec::new();
        while let Some(t) = follower.poll_transmit() {
            match t.request {
                ReplicaRequest::EpochQuery { request_id, current_leader_epoch, epoch, .. } => {
                    let answer = leader.handle_epoch_query(current_leader_epoch, epoch);
                    follower.handle_epoch_query_response(request_id, answer, now);
                }
                ReplicaRequest::Fetch(f) => {
                    let answer = leader.handle_follower_fetch(&f, now);
                    let batches: Vec<BatchMeta> = match answer {
                        FetchAnswer::Records { from, to, .. } if to > from => {
                            // One batch per epoch run, read from the leader's cache.
                            let mut out = Vec::new();
                            let mut at = from;
                            while at < to {
                                let entries = leader.epochs.entries();
                                let i = entries.iter().rposition(|e| e.start_offset <= at).unwrap();
                                let end = entries.get(i + 1).map_or(to, |e| e.start_offset.min(to));
                                out.push(BatchMeta {
                                    base_offset: at,
                                    record_count: end.0 - at.0,
                                    leader_epoch: entries[i].epoch,
                                });
                                at = end;
                            }
                            out
                        }
                        _ => Vec::new(),
                    };
                    follower.handle_fetch_response(f.request_id, &answer, &batches, now);
                    if matches!(answer, FetchAnswer::Records { .. }) && batches.is_empty() {
                        break; // caught up
                    }
                }
            }
            while let Some(c) = follower.poll_truncate() {
                cuts.push(c);
            }
        }
        cuts
    }

    #[test]
    fn hw_is_min_over_the_isr_and_completes_acks_all() {
        let mut leader = ReplicaState::new_empty(config(1));
        leader.handle_leader_and_isr(&state(1, 1, 1, &[1, 2, 3]), 0);
        assert_eq!(leader.role(), Role::Leader { epoch: LeaderEpoch(1) });
        let a = leader.handle_append(5, Acks::All, 1000, 0).unwrap();
        assert_eq!((a.base_offset, a.leader_epoch), (Offset(0), LeaderEpoch(1)));
        leader.handle_follower_fetch(&fetch(2, 1, 5, 1), 1);
        assert_eq!(leader.high_watermark(), Offset(0), "follower 3 has not fetched yet");
        leader.handle_follower_fetch(&fetch(3, 1, 3, 1), 2);
        assert_eq!(leader.high_watermark(), Offset(3));
        assert_eq!(leader.poll_completed_acks(), None);
        let answer = leader.handle_follower_fetch(&fetch(3, 1, 5, 1), 3);
        assert_eq!(leader.high_watermark(), Offset(5));
        assert!(matches!(answer, FetchAnswer::Records { high_watermark: Offset(5), .. }));
        let done = leader.poll_completed_acks().unwrap();
        assert_eq!(done, AckCompletion { waiter: a.waiter.unwrap(), result: Ok(()) });
        // A stale follower epoch is fenced and changes nothing.
        let stale = leader.handle_follower_fetch(&fetch(3, 0, 0, 0), 4);
        assert_eq!(stale, FetchAnswer::Error(ReplicaError::FencedLeaderEpoch));
        assert_eq!(leader.high_watermark(), Offset(5));
    }

    #[test]
    fn replicas_added_in_the_same_epoch_can_fetch_and_join() {
        let mut leader = ReplicaState::new_empty(config(1));
        let mut s = state(1, 1, 1, &[1]);
        s.replicas = vec![NodeId(1)];
        leader.handle_leader_and_isr(&s, 0);
        leader.handle_append(3, Acks::Leader, 0, 0).unwrap();
        let answer = leader.handle_follower_fetch(&fetch(2, 1, 0, -1), 1);
        assert_eq!(answer, FetchAnswer::Error(ReplicaError::NotLeaderOrFollower));
        // A reassignment adds node 2: same leader epoch, new partition epoch.
        s.replicas = vec![NodeId(1), NodeId(2)];
        s.partition_epoch = PartitionEpoch(2);
        leader.handle_leader_and_isr(&s, 2);
        let answer = leader.handle_follower_fetch(&fetch(2, 1, 0, -1), 3);
        assert!(matches!(answer, FetchAnswer::Records { from: Offset(0), to: Offset(3), .. }));
        leader.handle_follower_fetch(&fetch(2, 1, 3, 1), 4);
        let expand = leader.poll_isr_change().expect("caught up: proposed for the ISR");
        let members: Vec<NodeId> = expand.new_isr.iter().map(|m| m.node).collect();
        assert_eq!(members, vec![NodeId(1), NodeId(2)]);
        // Removed again: its fetches are refused.
        s.replicas = vec![NodeId(1)];
        s.partition_epoch = PartitionEpoch(3);
        leader.handle_leader_and_isr(&s, 5);
        let answer = leader.handle_follower_fetch(&fetch(2, 1, 3, 1), 6);
        assert_eq!(answer, FetchAnswer::Error(ReplicaError::NotLeaderOrFollower));
    }

    #[test]
    fn a_refused_or_removed_follower_is_not_proposed_again_until_it_fetches() {
        let mut leader = ReplicaState::new_empty(config(1));
        leader.handle_leader_and_isr(&state(1, 1, 1, &[1, 2, 3]), 0);
        leader.handle_append(2, Acks::Leader, 0, 0).unwrap();
        leader.handle_follower_fetch(&fetch(2, 1, 2, 1), 1);
        leader.handle_follower_fetch(&fetch(3, 1, 2, 1), 1);
        // The controller fences node 3 and removes it (same leader epoch).
        leader.handle_leader_and_isr(&state(1, 1, 2, &[1, 2]), 2);
        leader.handle_tick(3);
        assert_eq!(leader.poll_isr_change(), None, "no proposal on its stale position");
        // It fetches again (an old process's epoch): proposed once, refused.
        leader.handle_follower_fetch(&fetch(3, 1, 2, 1), 4);
        let expand = leader.poll_isr_change().expect("caught up: proposed");
        let refused = AlterPartitionResponse {
            request_id: expand.request_id,
            result: Err(AlterPartitionError::IneligibleReplica),
        };
        leader.handle_alter_partition_response(&refused, 5);
        for now in 6..20 {
            leader.handle_tick(now);
        }
        assert_eq!(leader.poll_isr_change(), None, "not proposed again in a loop");
        leader.handle_follower_fetch(&fetch(3, 1, 2, 1), 21);
        assert!(leader.poll_isr_change().is_some(), "a new fetch makes it eligible again");
    }

    #[test]
    fn min_insync_is_checked_before_appending() {
        let mut leader = ReplicaState::new_empty(config(1));
        leader.handle_leader_and_isr(&state(1, 1, 1, &[1]), 0);
        assert_eq!(
            leader.handle_append(1, Acks::All, 100, 0),
            Err(ReplicaError::NotEnoughReplicas)
        );
        assert_eq!(leader.log_end_offset(), Offset(0), "nothing written");
        let a = leader.handle_append(1, Acks::Leader, 100, 0).unwrap();
        assert_eq!(a.waiter, None);
        assert_eq!(leader.high_watermark(), Offset(1), "a lone ISR commits at once");
    }

    #[test]
    fn lagging_follower_is_shrunk_and_a_caught_up_one_expanded() {
        let mut leader = ReplicaState::new_empty(config(1));
        leader.handle_leader_and_isr(&state(1, 1, 1, &[1, 2, 3]), 0);
        leader.handle_append(4, Acks::Leader, 0, 0).unwrap();
        leader.handle_follower_fetch(&fetch(2, 1, 4, 1), 10);
        leader.handle_follower_fetch(&fetch(3, 1, 1, 1), 10);
        leader.handle_tick(100);
        assert_eq!(leader.poll_isr_change(), None, "within replica.lag.time.max.ms");
        leader.handle_follower_fetch(&fetch(2, 1, 4, 1), 150);
        leader.handle_tick(150);
        let shrink = leader.poll_isr_change().unwrap();
        let members: Vec<NodeId> = shrink.new_isr.iter().map(|m| m.node).collect();
        assert_eq!(members, vec![NodeId(1), NodeId(2)]);
        assert_eq!(shrink.partition_epoch, PartitionEpoch(1));
        // Until the controller answers, HW still waits for 3 (maximal ISR).
        assert_eq!(leader.high_watermark(), Offset(1));
        let mut committed = state(1, 1, 2, &[1, 2]);
        let stale = AlterPartitionResponse { request_id: 99, result: Ok(committed.clone()) };
        leader.handle_alter_partition_response(&stale, 151);
        assert_eq!(leader.isr().unwrap().len(), 3, "an answer to another request is ignored");
        let ok =
            AlterPartitionResponse { request_id: shrink.request_id, result: Ok(committed.clone()) };
        leader.handle_alter_partition_response(&ok, 151);
        assert_eq!(leader.isr().unwrap(), &[NodeId(1), NodeId(2)]);
        assert_eq!(leader.high_watermark(), Offset(4));
        // 3 catches up to the HW: proposed back, with its broker epoch.
        leader.handle_follower_fetch(&fetch(3, 1, 4, 1), 160);
        let expand = leader.poll_isr_change().unwrap();
        assert_eq!(expand.new_isr.last(), Some(&IsrMember { node: NodeId(3), broker_epoch: 13 }));
        // Refused as stale: keep counting 3 until the controller's state arrives.
        let refused = AlterPartitionResponse {
            request_id: expand.request_id,
            result: Err(AlterPartitionError::InvalidUpdateVersion),
        };
        leader.handle_alter_partition_response(&refused, 161);
        assert_eq!(leader.maximal_isr().unwrap().len(), 3);
        leader.handle_tick(500);
        assert_eq!(leader.poll_isr_change(), None, "no resend while awaiting metadata");
        committed.partition_epoch = PartitionEpoch(3);
        committed.isr = vec![NodeId(1), NodeId(2), NodeId(3)];
        leader.handle_leader_and_isr(&committed, 501);
        assert_eq!(leader.isr().unwrap().len(), 3);
    }

    #[test]
    fn follower_truncates_extra_records_of_an_old_epoch() {
        // Leader: epoch 0 wrote 0..10, epoch 2 wrote 10..15. The follower
        // got 8..12 from the epoch-1 leader, which the new leader never had.
        let mut leader = replica(1, 15, &[(0, 0), (2, 10)]);
        leader.handle_leader_and_isr(&state(1, 3, 5, &[1, 2]), 0);
        let mut follower = replica(2, 12, &[(0, 0), (1, 8)]);
        follower.handle_leader_and_isr(&state(1, 3, 5, &[1, 2]), 0);
        let cuts = sync_once(&mut follower, &mut leader, 1);
        // Epoch 1 is unknown to the leader: it answers epoch 0 ending at 10,
        // and the follower's epoch 0 ends at 8.
        assert_eq!(cuts, vec![LogCut::TruncateTo(Offset(8))]);
        assert_eq!(follower.log_end_offset(), Offset(15));
        assert_eq!(follower.epoch_cache(), &cache(&[(0, 0), (2, 10)]));
    }

    #[test]
    fn follower_ahead_in_the_same_epoch_is_cut_by_the_diverging_epoch() {
        let mut leader = replica(1, 12, &[(0, 0), (1, 10)]);
        leader.handle_leader_and_isr(&state(1, 2, 3, &[1, 2]), 0);
        // Log end 20, all in epoch 0: the first fetch already diverges.
        let mut follower = replica(2, 20, &[(0, 0)]);
        let answer = leader.handle_follower_fetch(&fetch(2, 2, 20, 0), 0);
        assert_eq!(
            answer,
            FetchAnswer::Diverging {
                diverging: EpochEndOffset { epoch: LeaderEpoch(0), end_offset: Offset(10) },
                high_watermark: Offset(0),
            }
        );
        follower.handle_leader_and_isr(&state(1, 2, 3, &[1, 2]), 0);
        let cuts = sync_once(&mut follower, &mut leader, 1);
        assert_eq!(cuts, vec![LogCut::TruncateTo(Offset(10))]);
        assert_eq!(follower.log_end_offset(), Offset(12));
    }

    #[test]
    fn truncation_walks_back_through_epochs_the_leader_never_had() {
        // Follower led epoch 3 (5..7); the leader led epochs 2 and 4.
        let mut leader = replica(1, 9, &[(0, 0), (2, 5)]);
        leader.handle_leader_and_isr(&state(1, 4, 6, &[1, 2]), 0);
        let mut follower = replica(2, 7, &[(0, 0), (3, 5)]);
        follower.handle_leader_and_isr(&state(1, 4, 6, &[1, 2]), 0);
        let t = follower.poll_transmit().unwrap();
        let ReplicaRequest::EpochQuery { request_id, epoch, .. } = t.request else { panic!() };
        assert_eq!(epoch, LeaderEpoch(3));
        let answer = leader.handle_epoch_query(LeaderEpoch(4), epoch).unwrap();
        assert_eq!(answer, EpochEndOffset { epoch: LeaderEpoch(2), end_offset: Offset(9) });
        follower.handle_epoch_query_response(request_id, Ok(answer), 1);
        // The follower has no epoch 2: cut back to where its epoch 0 ends
        // and ask again about epoch 0.
        assert_eq!(follower.poll_truncate(), Some(LogCut::TruncateTo(Offset(5))));
        let t = follower.poll_transmit().unwrap();
        let ReplicaRequest::EpochQuery { request_id, epoch, .. } = t.request else { panic!() };
        assert_eq!(epoch, LeaderEpoch(0));
        let answer = leader.handle_epoch_query(LeaderEpoch(4), epoch).unwrap();
        assert_eq!(answer, EpochEndOffset { epoch: LeaderEpoch(0), end_offset: Offset(5) });
        follower.handle_epoch_query_response(request_id, Ok(answer), 2);
        let cuts = sync_once(&mut follower, &mut leader, 2);
        assert!(cuts.is_empty(), "{cuts:?}");
        assert_eq!(follower.log_end_offset(), Offset(9));
    }

    #[test]
    fn an_empty_epoch_at_the_log_end_is_dropped_when_following() {
        // Node 2 led epoch 4 at offset 135 but wrote nothing before 1 took over.
        let mut leader = replica(1, 140, &[(1, 0), (3, 100)]);
        leader.handle_leader_and_isr(&state(1, 5, 9, &[1, 2]), 0);
        let mut follower = replica(2, 135, &[(1, 0), (3, 100)]);
        follower.handle_leader_and_isr(&state(2, 4, 8, &[2, 1]), 0);
        assert_eq!(follower.epoch_cache().latest_epoch(), LeaderEpoch(4));
        follower.handle_leader_and_isr(&state(1, 5, 9, &[1, 2]), 1);
        sync_once(&mut follower, &mut leader, 2);
        assert_eq!(follower.log_end_offset(), Offset(140));
        // The leader's epoch 5 has no records yet; 135..140 came in epoch 3.
        assert_eq!(follower.epoch_cache(), &cache(&[(1, 0), (3, 100)]));
    }

    #[test]
    fn new_replica_catches_up_from_the_leader_log_start() {
        let mut leader =
            ReplicaState::recover(config(1), Offset(50), Offset(60), cache(&[(2, 50)]), Offset(60));
        leader.handle_leader_and_isr(&state(1, 3, 4, &[1, 2]), 0);
        let mut follower = ReplicaState::new_empty(config(3));
        follower.handle_leader_and_isr(&state(1, 3, 4, &[1, 2]), 0);
        let cuts = sync_once(&mut follower, &mut leader, 1);
        assert_eq!(cuts, vec![LogCut::ResetTo(Offset(50))]);
        assert_eq!(
            (follower.log_start_offset(), follower.log_end_offset()),
            (Offset(50), Offset(60))
        );
    }

    #[test]
    fn recovery_drops_epochs_past_the_log_end_and_clamps_the_hw() {
        let r = ReplicaState::recover(
            config(1),
            Offset(0),
            Offset(20),
            cache(&[(0, 0), (2, 20)]),
            Offset(25),
        );
        assert_eq!(r.epoch_cache(), &cache(&[(0, 0)]));
        assert_eq!(r.high_watermark(), Offset(20));
        assert_eq!(r.role(), Role::Offline);
    }

    #[test]
    fn losing_leadership_fails_waiters() {
        let mut leader = ReplicaState::new_empty(config(1));
        leader.handle_leader_and_isr(&state(1, 1, 1, &[1, 2]), 0);
        let a = leader.handle_append(1, Acks::All, 1000, 0).unwrap();
        leader.handle_leader_and_isr(&state(2, 2, 2, &[2]), 1);
        let done = leader.poll_completed_acks().unwrap();
        assert_eq!(done.waiter, a.waiter.unwrap());
        assert_eq!(done.result, Err(ReplicaError::NotLeaderOrFollower));
        assert_eq!(
            leader.handle_append(1, Acks::All, 10, 2),
            Err(ReplicaError::NotLeaderOrFollower)
        );
    }

    /// KIP-101 scenario 1: a follower whose HW checkpoint lagged restarts.
    /// Truncating to its HW (pre-KIP-101) would drop a committed record;
    /// with epochs it keeps it.
    #[test]
    fn restart_with_a_lagging_hw_keeps_committed_records() {
        let mut leader = replica(1, 2, &[(1, 0)]);
        leader.handle_leader_and_isr(&state(1, 1, 3, &[1, 2]), 0);
        let mut follower =
            ReplicaState::recover(config(2), Offset(0), Offset(2), cache(&[(1, 0)]), Offset(1));
        follower.handle_leader_and_isr(&state(1, 1, 3, &[1, 2]), 0);
        let cuts = sync_once(&mut follower, &mut leader, 1);
        assert!(cuts.is_empty(), "{cuts:?}");
        assert_eq!(follower.log_end_offset(), Offset(2));
    }

    /// KIP-101 scenario 2: both crash; the one with less data comes back
    /// first, leads epoch 2 and writes a different record at offset 1. The
    /// other must drop its uncommitted offset 1 and take the new one.
    #[test]
    fn returning_replica_drops_its_uncommitted_divergent_suffix() {
        let mut leader = replica(2, 1, &[(1, 0)]);
        leader.handle_leader_and_isr(&state(2, 2, 5, &[2]), 0);
        leader.handle_append(1, Acks::Leader, 0, 0).unwrap();
        assert_eq!(leader.epoch_cache(), &cache(&[(1, 0), (2, 1)]));
        let mut follower = replica(1, 2, &[(1, 0)]);
        follower.handle_leader_and_isr(&state(2, 2, 5, &[2]), 0);
        let cuts = sync_once(&mut follower, &mut leader, 1);
        assert_eq!(cuts, vec![LogCut::TruncateTo(Offset(1))]);
        assert_eq!(follower.log_end_offset(), Offset(2));
        assert_eq!(follower.epoch_cache(), &cache(&[(1, 0), (2, 1)]));
    }
}
