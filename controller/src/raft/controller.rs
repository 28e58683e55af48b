//! [`RaftController`]: one member of the controller quorum, with its own
//! tokio runtime, QUIC endpoint, Raft log and state machine.
//!
//! ```text
//!  caller ──submit(Command)──▶ runtime task (one at a time per member, write_lock):
//!                               ensure_linearizable → bootstrap if needed → plan → client_write
//!  peers ══QUIC══▶ weir-net endpoint ──inbound──▶ serve_inbound ──▶ Raft
//!  Raft ──apply──▶ MetadataStateMachine ──publish──▶ Hub ──▶ subscribe()
//! ```
//!
//! Only the leader accepts submits; others answer `Unavailable` naming the
//! leader they know, and the caller retries there. A member that becomes
//! leader records the cluster id and its configured defaults (the same
//! bootstrap records as the single-process controller) before anything else.
//!
//! The leader is the active controller: it keeps the node sessions
//! ([`Sessions`], in memory, reset when it becomes leader) and fences the
//! nodes whose session expired by submitting `FenceNode` like any command;
//! it also runs the preferred-leader rebalancing ([`LeaderRebalancer`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use openraft::error::{CheckIsLeaderError, ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, Config, Raft, ServerState, SnapshotPolicy};
use weir_net::tls::{NodeIdentity, TrustRoots};
use weir_net::{Endpoint, EndpointConfig};

use super::log_store::{LogRecovery, LogStore, SEGMENT_BYTES_MAX_DEFAULT};
use super::network::{QuicNetwork, member_node_id, serve_inbound};
use super::state_machine::MetadataStateMachine;
use super::{ApplyResult, MetadataEntry, TypeConfig};
use crate::config::ConfigDefaults;
use crate::error::ControllerError;
use crate::handle::{Hub, log_rebalance};
use crate::rebalance::{LeaderRebalancer, RebalanceOptions};
use crate::sessions::{NODE_SESSION_TIMEOUT_MS_DEFAULT, SESSION_TICK_MS, Sessions};
use crate::state::{
    Command, CommandResult, MetadataDelta, MetadataImage, StateMachine, cluster_id_from_bytes,
};

/// How often a leader asks its quorum again to confirm it leads before a
/// write, when one round of heartbeats came back short (see `Writer::linearize`).
const LINEARIZE_ATTEMPTS_MAX: u32 = 5;

/// Timing and bounds of a member. The defaults suit a LAN or one machine.
#[derive(Clone, Debug)]
pub struct RaftOptions {
    pub heartbeat_interval_ms: u64,
    /// A follower that hears no leader for a random time in this range stands
    /// for election. Several heartbeats long, so one lost packet elects no one.
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Entries after which the image is snapshotted and the log purged.
    pub snapshot_every_entries: u64,
    /// Entries kept in the log behind a snapshot, so a briefly absent member
    /// catches up from the log rather than by a snapshot.
    pub log_entries_kept: u64,
    pub segment_bytes_max: u64,
    /// As [`crate::ControllerOptions::subscriber_queue_len`].
    pub subscriber_queue_len: usize,
    /// Attempts at a command whose plan went stale (another leader wrote first).
    pub stale_retries_max: u32,
    /// As [`crate::ControllerOptions::node_session_timeout_ms`]: the leader
    /// fences a node that sends no accepted heartbeat for this long.
    pub node_session_timeout_ms: u64,
    /// As [`crate::ControllerOptions::leader_rebalance`]: the leader runs the
    /// preferred-leader rebalancing.
    pub leader_rebalance: RebalanceOptions,
}

impl Default for RaftOptions {
    fn default() -> Self {
        RaftOptions {
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 500,
            election_timeout_max_ms: 1000,
            snapshot_every_entries: 10_000,
            log_entries_kept: 1000,
            segment_bytes_max: SEGMENT_BYTES_MAX_DEFAULT,
            subscriber_queue_len: 1024,
            stale_retries_max: 3,
            node_session_timeout_ms: NODE_SESSION_TIMEOUT_MS_DEFAULT,
            leader_rebalance: RebalanceOptions::default(),
        }
    }
}

/// What a member needs to start.
pub struct RaftControllerConfig {
    /// This member's id: also the node id its certificate names.
    pub id: u64,
    /// UDP address of its QUIC endpoint.
    pub listen: SocketAddr,
    /// Every member of the quorum, this one included: id → QUIC address.
    pub members: BTreeMap<u64, SocketAddr>,
    /// The member's data folder; the Raft files live in `<data_dir>/raft`.
    pub data_dir: PathBuf,
    pub roots: TrustRoots,
    pub identity: NodeIdentity,
    /// Topic defaults the member records when it becomes leader.
    pub defaults: ConfigDefaults,
    pub options: RaftOptions,
}

/// One running member. Owns its runtime (two worker threads), QUIC endpoint
/// thread and Raft tasks; dropping it (or [`RaftController::shutdown`])
/// stops them all. Must not be dropped inside an async runtime. Its methods
/// may be called from any thread; `submit` futures run on any executor.
pub struct RaftController {
    id: u64,
    members: BTreeMap<u64, SocketAddr>,
    raft: Raft<TypeConfig>,
    hub: Arc<Hub>,
    write_lock: Arc<tokio::sync::Mutex<()>>,
    defaults: ConfigDefaults,
    stale_retries_max: u32,
    heartbeat: Duration,
    /// Node sessions; kept while this member leads (see [`Sessions`]).
    sessions: Arc<Mutex<Sessions>>,
    /// The preferred-leader rebalancing timer; runs while this member leads.
    rebalancer: Arc<Mutex<LeaderRebalancer>>,
    /// The sessions' clock: milliseconds since the member started.
    clock: Instant,
    recovery: LogRecovery,
    endpoint: Option<Endpoint>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl RaftController {
    /// Recovers the member's log and snapshot from its data folder, binds its
    /// endpoint and starts Raft. It joins whatever leader is out there; a new
    /// quorum needs [`RaftController::initialize`] once.
    pub fn start(config: RaftControllerConfig) -> anyhow::Result<RaftController> {
        let RaftControllerConfig {
            id,
            listen,
            members,
            data_dir,
            roots,
            identity,
            defaults,
            options,
        } = config;
        anyhow::ensure!(members.contains_key(&id), "member {id} is not among the members");
        anyhow::ensure!(identity.node == member_node_id(id), "the certificate names another node");
        defaults.validated()?;
        let dir = data_dir.join("raft");
        let (log, recovery) = LogStore::open(&dir, options.segment_bytes_max)?;
        let image = MetadataStateMachine::recovered_image(&dir)?;
        tracing::info!(member = id, recovery = ?recovery, version = image.version, "Raft member recovered");
        let hub = Arc::new(Hub::new(image, options.subscriber_queue_len));
        let sm = MetadataStateMachine::open(&dir, hub.clone())?;

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("weir-raft-{id}"))
            .enable_all()
            .build()
            .context("the Raft runtime")?;
        let (endpoint, inbound) =
            Endpoint::start(EndpointConfig { node: member_node_id(id), listen, roots, identity })?;
        let network = QuicNetwork { endpoint: endpoint.handle() };
        let raft_config = Config {
            cluster_name: "weir-controller".into(),
            heartbeat_interval: options.heartbeat_interval_ms,
            election_timeout_min: options.election_timeout_min_ms,
            election_timeout_max: options.election_timeout_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(options.snapshot_every_entries),
            max_in_snapshot_log_to_keep: options.log_entries_kept,
            // Chunks stay far below weir-net's frame body limit, even as JSON.
            snapshot_max_chunk_size: 1024 * 1024,
            // Per chunk: sending it (perhaps over a new QUIC handshake),
            // decoding and, for the last one, fsyncing the snapshot. 200 ms
            // (openraft's default) timed out against a just-restarted member.
            install_snapshot_timeout: 2000,
            ..Default::default()
        }
        .validate()
        .context("Raft config")?;
        let raft = runtime
            .block_on(Raft::new(id, Arc::new(raft_config), network, log, sm))
            .context("starting Raft")?;
        runtime.spawn(serve_inbound(raft.clone(), inbound));

        let controller = RaftController {
            id,
            members,
            raft,
            hub,
            write_lock: Arc::new(tokio::sync::Mutex::new(())),
            defaults,
            stale_retries_max: options.stale_retries_max,
            heartbeat: Duration::from_millis(options.heartbeat_interval_ms),
            sessions: Arc::new(Mutex::new(Sessions::new(options.node_session_timeout_ms.max(1)))),
            rebalancer: Arc::new(Mutex::new(LeaderRebalancer::new(options.leader_rebalance))),
            clock: Instant::now(),
            recovery,
            endpoint: Some(endpoint),
            runtime: Some(runtime),
        };
        controller.spawn_background();
        Ok(controller)
    }

    /// Lagging subscribers are retried on a tick; a new leader bootstraps.
    fn spawn_background(&self) {
        let rt = self.runtime.as_ref().expect("running");
        let hub = self.hub.clone();
        rt.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                hub.tick();
            }
        });
        let writer = self.writer();
        let raft = self.raft.clone();
        rt.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(SESSION_TICK_MS));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if raft.metrics().borrow().state == ServerState::Leader {
                    writer.fence_expired().await;
                    writer.rebalance_leaders().await;
                }
            }
        });
        let writer = self.writer();
        let mut metrics = self.raft.metrics();
        rt.spawn(async move {
            let mut led_term = None;
            loop {
                let (state, term) = {
                    let m = metrics.borrow_and_update();
                    (m.state, m.current_term)
                };
                if state == ServerState::Leader && led_term != Some(term) {
                    led_term = Some(term);
                    // A new active controller: every node gets a full
                    // session, and the leader imbalance check a full interval.
                    writer.reset_sessions();
                    if let Err(e) = writer.bootstrap_as_leader().await {
                        tracing::info!(error = %e, "bootstrap as leader did not complete");
                    }
                }
                if metrics.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    fn writer(&self) -> Writer {
        Writer {
            raft: self.raft.clone(),
            hub: self.hub.clone(),
            lock: self.write_lock.clone(),
            defaults: self.defaults.clone(),
            stale_retries_max: self.stale_retries_max,
            heartbeat: self.heartbeat,
            sessions: self.sessions.clone(),
            rebalancer: self.rebalancer.clone(),
            clock: self.clock,
        }
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("running until dropped")
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// What recovering the Raft log at start found.
    pub fn log_recovery(&self) -> &LogRecovery {
        &self.recovery
    }

    /// Makes the configured members a quorum. Call it on one member of a new
    /// quorum (member 1 by convention); on a quorum that already exists it
    /// does nothing.
    pub fn initialize(&self) -> anyhow::Result<()> {
        let members: BTreeMap<u64, BasicNode> =
            self.members.iter().map(|(&id, addr)| (id, BasicNode::new(addr.to_string()))).collect();
        match self.runtime().block_on(self.raft.initialize(members)) {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(anyhow::anyhow!("initializing the quorum: {e}")),
        }
    }

    /// Whether this member believes it is the leader (it may have been
    /// deposed without knowing yet; `submit` checks with a quorum).
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// The leader this member knows of.
    pub fn current_leader(&self) -> Option<u64> {
        self.raft.metrics().borrow().current_leader
    }

    /// Runs `cmd` on the quorum: on the leader, plans it against the applied
    /// image and returns once its records are committed and applied here.
    /// Elsewhere, `Unavailable` naming the leader.
    pub async fn submit(&self, cmd: Command) -> Result<CommandResult, ControllerError> {
        let writer = self.writer();
        let task = self.runtime().spawn(async move { writer.submit(cmd).await });
        task.await.unwrap_or_else(|e| Err(ControllerError::Fatal(format!("submit task: {e}"))))
    }

    /// [`RaftController::submit`] for threads outside any async runtime.
    pub fn submit_blocking(&self, cmd: Command) -> Result<CommandResult, ControllerError> {
        let writer = self.writer();
        self.runtime().block_on(writer.submit(cmd))
    }

    /// The applied image and the deltas that follow it, exactly as
    /// [`crate::ControllerHandle::subscribe`] (same hub, same lag rules).
    pub fn subscribe(&self) -> (MetadataImage, flume::Receiver<MetadataDelta>) {
        self.hub.subscribe()
    }

    /// A copy of the applied image.
    pub fn image(&self) -> MetadataImage {
        self.hub.image()
    }

    /// The hub the state machine publishes to, for a [`crate::ControllerHandle`]
    /// over this member (see [`super::handle`]).
    pub(crate) fn hub(&self) -> Arc<Hub> {
        self.hub.clone()
    }

    /// Stops the member (same as dropping it).
    pub fn shutdown(self) {}
}

impl Drop for RaftController {
    fn drop(&mut self) {
        let Some(runtime) = self.runtime.take() else { return };
        if let Err(e) = runtime.block_on(self.raft.shutdown()) {
            tracing::warn!(member = self.id, error = %e, "Raft did not shut down cleanly");
        }
        self.hub.close(ControllerError::Unavailable("the controller member stopped".into()));
        drop(self.endpoint.take());
        runtime.shutdown_timeout(Duration::from_secs(1));
    }
}

/// The leader-side write path, cloned into the tasks that run it.
struct Writer {
    raft: Raft<TypeConfig>,
    hub: Arc<Hub>,
    /// One plan-and-write at a time per member, so each plan sees the last.
    lock: Arc<tokio::sync::Mutex<()>>,
    defaults: ConfigDefaults,
    stale_retries_max: u32,
    heartbeat: Duration,
    sessions: Arc<Mutex<Sessions>>,
    rebalancer: Arc<Mutex<LeaderRebalancer>>,
    clock: Instant,
}

fn not_leader(raft: &Raft<TypeConfig>, e: impl std::fmt::Display) -> ControllerError {
    let metrics = raft.metrics().borrow().clone();
    match metrics.current_leader {
        Some(l) => {
            let addr = metrics
                .membership_config
                .membership()
                .get_node(&l)
                .map_or_else(|| "an unknown address".to_string(), |n| n.addr.clone());
            ControllerError::not_active(Some((l, &addr)), e)
        }
        None => ControllerError::not_active(None, e),
    }
}

impl Writer {
    /// Waits until this member is a confirmed leader whose image holds every
    /// entry committed before its term.
    ///
    /// openraft confirms leadership with one round of heartbeats that must
    /// all answer within one heartbeat interval; a loaded machine misses that
    /// now and then although the quorum is fine, so a leader that lacked a
    /// quorum asks again a few times before giving up.
    async fn linearize(&self) -> Result<(), ControllerError> {
        let mut attempt = 0;
        loop {
            match self.raft.ensure_linearizable().await {
                Ok(_) => return Ok(()),
                Err(RaftError::Fatal(e)) => return Err(ControllerError::Fatal(e.to_string())),
                Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e)))
                    if attempt < LINEARIZE_ATTEMPTS_MAX =>
                {
                    attempt += 1;
                    tracing::debug!(attempt, error = %e, "leadership not confirmed; asking again");
                    tokio::time::sleep(self.heartbeat).await;
                }
                Err(e) => return Err(not_leader(&self.raft, e)),
            }
        }
    }

    /// Replicates `records` planned at `base_version`; whether they applied.
    async fn write(
        &self,
        base_version: u64,
        records: Vec<crate::state::MetadataRecord>,
    ) -> Result<bool, ControllerError> {
        match self.raft.client_write(MetadataEntry { base_version, records }).await {
            Ok(resp) => Ok(matches!(resp.data, ApplyResult::Applied { .. })),
            Err(RaftError::Fatal(e)) => Err(ControllerError::Fatal(e.to_string())),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(not_leader(&self.raft, f))
            }
            Err(e) => Err(ControllerError::Unavailable(e.to_string())),
        }
    }

    /// The cluster id on first election, and this member's defaults when they
    /// differ from the recorded ones. Caller holds the write lock.
    async fn bootstrap_locked(&self) -> Result<(), ControllerError> {
        for _ in 0..=self.stale_retries_max {
            let sm = StateMachine::from_image(self.hub.image());
            let records = sm.bootstrap(
                || cluster_id_from_bytes(*uuid::Uuid::new_v4().as_bytes()),
                &self.defaults,
            )?;
            if records.is_empty() || self.write(sm.image().version, records).await? {
                return Ok(());
            }
        }
        Err(ControllerError::Unavailable("bootstrap kept going stale".into()))
    }

    async fn bootstrap_as_leader(&self) -> Result<(), ControllerError> {
        let _guard = self.lock.lock().await;
        self.linearize().await?;
        self.bootstrap_locked().await
    }

    async fn submit(&self, cmd: Command) -> Result<CommandResult, ControllerError> {
        let _guard = self.lock.lock().await;
        let mut new_topic_id = uuid::Uuid::new_v4;
        for _ in 0..=self.stale_retries_max {
            self.linearize().await?;
            self.bootstrap_locked().await?;
            let sm = StateMachine::from_image(self.hub.image());
            let plan = sm.handle(&cmd, &mut new_topic_id)?;
            if plan.records.is_empty() || self.write(sm.image().version, plan.records).await? {
                self.lock_sessions().observe(&cmd, &plan.result, self.now_ms());
                return Ok(plan.result);
            }
            tracing::info!("metadata plan went stale; planning again");
        }
        Err(ControllerError::Unavailable("the command's plan kept going stale".into()))
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        // Sessions are plain data, consistent after any panic elsewhere.
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Becoming leader: every registered, unfenced node gets a full
    /// session, and the next leader imbalance check is an interval away.
    fn reset_sessions(&self) {
        let now = self.now_ms();
        self.hub.read(|image| self.lock_sessions().reset(&image.registrations, now));
        self.lock_rebalancer().reset(now);
    }

    fn lock_rebalancer(&self) -> std::sync::MutexGuard<'_, LeaderRebalancer> {
        // Plain data, consistent after any panic elsewhere.
        self.rebalancer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Submits the preferred-leader election the rebalancing timer asks for
    /// (leader only; a deposed member's submit fails and changes nothing).
    async fn rebalance_leaders(&self) {
        let now = self.now_ms();
        let cmd = self.hub.read(|image| self.lock_rebalancer().tick(image, now));
        if let Some(cmd) = cmd {
            let reply = self.submit(cmd.clone()).await;
            log_rebalance(&cmd, &reply);
        }
    }

    /// Fences the nodes whose session expired (leader only; a member that
    /// was deposed meanwhile gets `not_active` and fences nothing).
    async fn fence_expired(&self) {
        let now = self.now_ms();
        let fences = self.hub.read(|image| self.lock_sessions().tick(&image.registrations, now));
        for cmd in fences {
            tracing::info!(?cmd, "node session expired; fencing");
            if let Err(e) = self.submit(cmd).await {
                tracing::info!(error = %e, "fencing an expired node did not complete");
                return;
            }
        }
    }
}
