//! How a node talks to the controller: [`ControllerHandle`], the same type
//! whether the controller runs in this process ([`start_in_process`]) or
//! across TCP ([`crate::remote::connect`]).
//!
//! ```text
//!  node shards ──submit()──▶ flume (bounded) ──▶ controller thread ──▶ log (fsync)
//!       ▲                                              │ apply
//!       │ deltas (bounded flume per subscriber)        ▼
//!       └─────────────────────────────────────── Hub { image, subscribers }
//! ```
//!
//! The handle has no runtime of its own: `submit` awaits flume futures, which
//! work under glommio (whose futures are `!Send`), tokio or a plain
//! `block_on`. The [`Hub`] keeps a copy of the image at the published
//! version, so `subscribe` is synchronous and the snapshot it returns is
//! exactly the state the first delta on the new channel applies to.
//!
//! A subscriber whose queue is full is marked *lagging*: it receives nothing
//! more until its queue has room again, then one [`MetadataDelta::Reset`] with
//! the current image. The controller never blocks on a subscriber.
//!
//! A command's deltas are published before its reply is sent, so once
//! `submit` returns, `subscribe` (and every existing subscriber's queue)
//! already reflect it.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::ConfigDefaults;
use crate::error::ControllerError;
use crate::log::MetadataLog;
use crate::rebalance::{LeaderRebalancer, RebalanceOptions};
use crate::sessions::{NODE_SESSION_TIMEOUT_MS_DEFAULT, SESSION_TICK_MS, Sessions};
use crate::state::{
    Command, CommandResult, MetadataDelta, MetadataImage, StateMachine, cluster_id_from_bytes,
};

/// Bounds and intervals of a controller; defaults suit development and production alike.
#[derive(Clone, Debug)]
pub struct ControllerOptions {
    /// Records after which the image is snapshotted and the log emptied.
    /// Bounds recovery time and the log's size.
    pub snapshot_every_records: u64,
    /// Deltas queued per subscriber before it is marked lagging and later
    /// sent a `Reset` instead.
    pub subscriber_queue_len: usize,
    /// Commands queued for the controller thread before `submit` waits.
    pub request_queue_len: usize,
    /// How often lagging subscribers are retried when no command arrives.
    pub tick: Duration,
    /// Remote handles only ([`crate::remote::connect`]): how long a submit is
    /// retried while no controller answers it (connection lost, failover,
    /// election) before it fails with a retriable error.
    pub failover_deadline: Duration,
    /// A node that sends no accepted heartbeat for this long is fenced
    /// (Kafka's `broker.session.timeout.ms`).
    pub node_session_timeout_ms: u64,
    /// Automatic preferred-leader rebalancing ([`crate::rebalance`]).
    pub leader_rebalance: RebalanceOptions,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        ControllerOptions {
            snapshot_every_records: 10_000,
            subscriber_queue_len: 1024,
            request_queue_len: 1024,
            tick: Duration::from_millis(100),
            failover_deadline: Duration::from_secs(15),
            node_session_timeout_ms: NODE_SESSION_TIMEOUT_MS_DEFAULT,
            leader_rebalance: RebalanceOptions::default(),
        }
    }
}

/// The answer a controller gives: the result and the image version after it.
pub(crate) type Reply = Result<(CommandResult, u64), ControllerError>;

pub(crate) struct Request {
    pub(crate) cmd: Command,
    pub(crate) reply: flume::Sender<Reply>,
}

pub(crate) enum Msg {
    Submit(Request),
    Stop,
}

struct Subscriber {
    tx: flume::Sender<MetadataDelta>,
    lagging: bool,
}

struct HubInner {
    image: MetadataImage,
    subscribers: Vec<Subscriber>,
    /// Set once the source stops: why submits now fail.
    closed: Option<ControllerError>,
}

/// The published image and its subscribers. Shared by the handles and the
/// thread that publishes (controller thread, or a remote handle's reader).
pub(crate) struct Hub {
    inner: Mutex<HubInner>,
    queue_len: usize,
}

impl Hub {
    pub(crate) fn new(image: MetadataImage, queue_len: usize) -> Hub {
        assert!(queue_len >= 1, "subscriber queues hold at least a Reset");
        Hub {
            inner: Mutex::new(HubInner { image, subscribers: Vec::new(), closed: None }),
            queue_len,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HubInner> {
        // A panic while holding the lock is a bug elsewhere; the image is
        // still consistent (deltas are applied before subscribers are fed).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn version(&self) -> u64 {
        self.lock().image.version
    }

    pub(crate) fn image(&self) -> MetadataImage {
        self.lock().image.clone()
    }

    /// Reads the image in place (no copy); `f` must not block.
    pub(crate) fn read<R>(&self, f: impl FnOnce(&MetadataImage) -> R) -> R {
        f(&self.lock().image)
    }

    pub(crate) fn subscribe(&self) -> (MetadataImage, flume::Receiver<MetadataDelta>) {
        let (tx, rx) = flume::bounded(self.queue_len);
        let mut inner = self.lock();
        if inner.closed.is_none() {
            inner.subscribers.push(Subscriber { tx, lagging: false });
        }
        (inner.image.clone(), rx)
    }

    /// Applies `deltas` to the image and queues them to every subscriber.
    pub(crate) fn publish(&self, deltas: &[MetadataDelta]) {
        let mut inner = self.lock();
        for d in deltas {
            inner.image.apply_delta(d);
        }
        let HubInner { image, subscribers, .. } = &mut *inner;
        subscribers.retain_mut(|s| {
            if s.lagging {
                return true;
            }
            for d in deltas {
                match s.tx.try_send(d.clone()) {
                    Ok(()) => {}
                    Err(flume::TrySendError::Full(_)) => {
                        s.lagging = true;
                        return true;
                    }
                    Err(flume::TrySendError::Disconnected(_)) => return false,
                }
            }
            true
        });
        Self::retry_lagging(image, subscribers);
    }

    /// Sends a `Reset` to each lagging subscriber whose queue has room again.
    pub(crate) fn tick(&self) {
        let mut inner = self.lock();
        let HubInner { image, subscribers, .. } = &mut *inner;
        Self::retry_lagging(image, subscribers);
    }

    fn retry_lagging(image: &MetadataImage, subscribers: &mut Vec<Subscriber>) {
        subscribers.retain_mut(|s| {
            if !s.lagging {
                return !s.tx.is_disconnected();
            }
            if s.tx.is_disconnected() {
                return false;
            }
            if s.tx.is_full() {
                return true;
            }
            match s.tx.try_send(MetadataDelta::Reset(Box::new(image.clone()))) {
                Ok(()) => {
                    s.lagging = false;
                    true
                }
                Err(flume::TrySendError::Full(_)) => true,
                Err(flume::TrySendError::Disconnected(_)) => false,
            }
        });
    }

    /// Stops publishing: subscribers see their channel disconnect, and later
    /// submits fail with `why`.
    pub(crate) fn close(&self, why: ControllerError) {
        let mut inner = self.lock();
        inner.subscribers.clear();
        inner.closed.get_or_insert(why);
    }

    pub(crate) fn closed_error(&self) -> ControllerError {
        self.lock()
            .closed
            .clone()
            .unwrap_or_else(|| ControllerError::Unavailable("the controller stopped".into()))
    }
}

/// A node's connection to the controller. Clone it freely; all clones share
/// one queue to the controller and one published image.
///
/// `Send + Sync`; its futures hold only flume channel futures, so any async
/// runtime can drive them, and they never block a thread.
#[derive(Clone)]
pub struct ControllerHandle {
    pub(crate) tx: flume::Sender<Msg>,
    pub(crate) hub: Arc<Hub>,
    /// Whether the controller runs in this process (`weir dev`): the node's
    /// `/metrics` then carries the controller's metrics too.
    pub(crate) in_process: bool,
}

impl std::fmt::Debug for ControllerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerHandle").field("version", &self.hub.version()).finish()
    }
}

impl ControllerHandle {
    /// Runs `cmd` on the controller. `Ok` means the change is durable in the
    /// metadata log (or, under `validate_only`, would be accepted).
    pub async fn submit(&self, cmd: Command) -> Result<CommandResult, ControllerError> {
        self.submit_versioned(cmd).await.map(|(r, _)| r)
    }

    pub(crate) async fn submit_versioned(&self, cmd: Command) -> Reply {
        let (reply, rx) = flume::bounded(1);
        if self.tx.send_async(Msg::Submit(Request { cmd, reply })).await.is_err() {
            return Err(self.hub.closed_error());
        }
        match rx.recv_async().await {
            Ok(r) => r,
            Err(_) => Err(self.hub.closed_error()),
        }
    }

    /// `submit` for threads outside any async runtime (tools, the TCP server).
    pub fn submit_blocking(&self, cmd: Command) -> Result<CommandResult, ControllerError> {
        self.submit_versioned_blocking(cmd).map(|(r, _)| r)
    }

    pub(crate) fn submit_versioned_blocking(&self, cmd: Command) -> Reply {
        let (reply, rx) = flume::bounded(1);
        if self.tx.send(Msg::Submit(Request { cmd, reply })).is_err() {
            return Err(self.hub.closed_error());
        }
        rx.recv().unwrap_or_else(|_| Err(self.hub.closed_error()))
    }

    /// Queues `cmd` without waiting; poll the returned [`PendingSubmit`] for
    /// the answer. For executors that must not hand their wakers to the
    /// controller's thread (glommio, see `weir_node::shard::Shard::submit`).
    /// `Err(cmd)` when the controller's queue is full: retry later.
    #[allow(clippy::result_large_err)]
    pub fn try_submit(&self, cmd: Command) -> Result<PendingSubmit, Command> {
        let (reply, rx) = flume::bounded(1);
        match self.tx.try_send(Msg::Submit(Request { cmd, reply })) {
            Ok(()) | Err(flume::TrySendError::Disconnected(_)) => {
                // Disconnected: the reply sender is gone with the message,
                // so the pending answer reads as "controller stopped".
                Ok(PendingSubmit { rx, hub: self.hub.clone() })
            }
            Err(flume::TrySendError::Full(Msg::Submit(r))) => Err(r.cmd),
            Err(flume::TrySendError::Full(Msg::Stop)) => unreachable!("only Submit is sent here"),
        }
    }

    /// The current image and a channel of the deltas that follow it, in order.
    ///
    /// The channel is bounded; a subscriber that falls behind receives a
    /// [`MetadataDelta::Reset`] instead of what it missed. The channel
    /// disconnects when the controller (or the connection to it) stops.
    pub fn subscribe(&self) -> (MetadataImage, flume::Receiver<MetadataDelta>) {
        self.hub.subscribe()
    }

    /// A copy of the current image.
    pub fn image(&self) -> MetadataImage {
        self.hub.image()
    }

    /// Whether the controller runs in this process.
    pub fn is_in_process(&self) -> bool {
        self.in_process
    }
}

/// A command queued with [`ControllerHandle::try_submit`], answered later.
pub struct PendingSubmit {
    rx: flume::Receiver<Reply>,
    hub: Arc<Hub>,
}

impl PendingSubmit {
    /// The answer, once there is one (never blocks, registers no waker).
    pub fn try_take(&self) -> Option<Result<CommandResult, ControllerError>> {
        match self.rx.try_recv() {
            Ok(r) => Some(r.map(|(r, _)| r)),
            Err(flume::TryRecvError::Empty) => None,
            Err(flume::TryRecvError::Disconnected) => Some(Err(self.hub.closed_error())),
        }
    }
}

/// Owns the in-process controller thread. Dropping it shuts the controller down.
pub struct ControllerJoin {
    tx: flume::Sender<Msg>,
    thread: Option<JoinHandle<Result<(), ControllerError>>>,
}

impl ControllerJoin {
    pub(crate) fn new(
        tx: flume::Sender<Msg>,
        thread: JoinHandle<Result<(), ControllerError>>,
    ) -> ControllerJoin {
        ControllerJoin { tx, thread: Some(thread) }
    }

    /// Stops the controller after the commands already queued, writes a
    /// snapshot, and waits for the thread. Errors if the controller had
    /// stopped on a fatal error.
    pub fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop()
    }

    /// Whether the controller thread has ended (after a fatal error, the host
    /// process must exit).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    fn stop(&mut self) -> anyhow::Result<()> {
        let Some(thread) = self.thread.take() else { return Ok(()) };
        let _ = self.tx.send(Msg::Stop);
        match thread.join() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(anyhow::anyhow!(e)),
            Err(_) => Err(anyhow::anyhow!("the controller thread panicked")),
        }
    }
}

impl Drop for ControllerJoin {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::error!(error = %e, "controller stopped with an error");
        }
    }
}

/// Starts a controller on its own thread with its data in `dir`.
pub fn start_in_process(
    dir: &Path,
    defaults: ConfigDefaults,
) -> anyhow::Result<(ControllerHandle, ControllerJoin)> {
    start_in_process_with(dir, defaults, ControllerOptions::default())
}

/// [`start_in_process`] with explicit bounds.
pub fn start_in_process_with(
    dir: &Path,
    defaults: ConfigDefaults,
    options: ControllerOptions,
) -> anyhow::Result<(ControllerHandle, ControllerJoin)> {
    let (mut log, mut sm, report) = MetadataLog::open(dir)?;
    tracing::info!(
        dir = %dir.display(),
        snapshot_version = ?report.snapshot_version,
        batches_replayed = report.batches_replayed,
        truncated_bytes = report.truncated_bytes,
        version = sm.image().version,
        "metadata log recovered"
    );
    let boot =
        sm.bootstrap(|| cluster_id_from_bytes(*uuid::Uuid::new_v4().as_bytes()), &defaults)?;
    if !boot.is_empty() {
        log.append(sm.image().version, &boot)?;
        for r in &boot {
            sm.apply(r);
        }
    }
    tracing::info!(cluster_id = %sm.image().cluster_id, "controller ready");
    let hub = Arc::new(Hub::new(sm.image().clone(), options.subscriber_queue_len));
    let (tx, rx) = flume::bounded(options.request_queue_len);
    let thread_hub = hub.clone();
    let thread = std::thread::Builder::new().name("weir-controller".into()).spawn(move || {
        let result = controller_loop(&mut log, &mut sm, &thread_hub, &rx, &options);
        let why = match &result {
            Ok(()) => ControllerError::Unavailable("the controller shut down".into()),
            Err(e) => e.clone(),
        };
        thread_hub.close(why);
        result
    })?;
    Ok((
        ControllerHandle { tx: tx.clone(), hub, in_process: true },
        ControllerJoin { tx, thread: Some(thread) },
    ))
}

/// The controller thread: one command at a time, log before apply, publish
/// before reply. It is the active controller from its start, so it keeps
/// the node sessions and fences the expired ones itself, and runs the
/// preferred-leader rebalancing.
fn controller_loop(
    log: &mut MetadataLog,
    sm: &mut StateMachine,
    hub: &Hub,
    rx: &flume::Receiver<Msg>,
    options: &ControllerOptions,
) -> Result<(), ControllerError> {
    let clock = std::time::Instant::now();
    let now_ms = || u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut sessions = Sessions::new(options.node_session_timeout_ms.max(1));
    sessions.reset(&sm.image().registrations, now_ms());
    let mut rebalancer = LeaderRebalancer::new(options.leader_rebalance);
    rebalancer.reset(now_ms());
    let mut last_session_tick = now_ms();
    let tick = options.tick.min(Duration::from_millis(SESSION_TICK_MS));
    loop {
        match rx.recv_timeout(tick) {
            Ok(Msg::Submit(req)) => {
                let reply = match execute(log, sm, hub, &req.cmd) {
                    Ok(reply) => reply,
                    Err(fatal) => {
                        let _ = req.reply.send(Err(fatal.clone()));
                        return Err(fatal);
                    }
                };
                if let Ok((result, _)) = &reply {
                    sessions.observe(&req.cmd, result, now_ms());
                }
                let _ = req.reply.send(reply);
            }
            Ok(Msg::Stop) | Err(flume::RecvTimeoutError::Disconnected) => break,
            Err(flume::RecvTimeoutError::Timeout) => hub.tick(),
        }
        let now = now_ms();
        if now.saturating_sub(last_session_tick) >= SESSION_TICK_MS {
            last_session_tick = now;
            for cmd in sessions.tick(&sm.image().registrations, now) {
                tracing::info!(?cmd, "node session expired; fencing");
                if let Err(e) = execute(log, sm, hub, &cmd)? {
                    tracing::warn!(error = %e, "fencing an expired node failed");
                }
            }
            if let Some(cmd) = rebalancer.tick(sm.image(), now) {
                let reply = execute(log, sm, hub, &cmd)?;
                log_rebalance(&cmd, &reply.map(|(r, _)| r));
            }
        }
        if log.records_since_snapshot() >= options.snapshot_every_records {
            log.snapshot(sm.image())?;
            tracing::info!(version = sm.image().version, "metadata snapshot written");
        }
    }
    if log.records_since_snapshot() > 0 {
        log.snapshot(sm.image())?;
    }
    tracing::info!(version = sm.image().version, "controller stopped");
    Ok(())
}

/// Logs what an automatic preferred-leader election did.
pub(crate) fn log_rebalance(cmd: &Command, reply: &Result<CommandResult, ControllerError>) {
    let Command::ElectLeaders { partitions, .. } = cmd else { return };
    let asked = partitions.as_ref().map_or(0, Vec::len);
    match reply {
        Ok(CommandResult::LeadersElected { results }) => {
            let elected = results.iter().filter(|r| r.error_code == 0).count();
            tracing::info!(asked, elected, "leader imbalance: preferred replicas elected");
        }
        Ok(other) => tracing::warn!(?other, "unexpected answer to a preferred election"),
        Err(e) => tracing::info!(error = %e, "leader imbalance: preferred election failed"),
    }
}

/// Plans `cmd`, logs and applies its records, publishes their deltas. The
/// outer error is fatal (the controller stops); the inner one is the answer.
fn execute(
    log: &mut MetadataLog,
    sm: &mut StateMachine,
    hub: &Hub,
    cmd: &Command,
) -> Result<Reply, ControllerError> {
    let mut new_topic_id = uuid::Uuid::new_v4;
    let plan = match sm.handle(cmd, &mut new_topic_id) {
        Ok(plan) => plan,
        Err(e) => return Ok(Err(e)),
    };
    if !plan.records.is_empty() {
        if let Err(e) = log.append(sm.image().version, &plan.records) {
            if e.is_fatal() {
                return Err(e);
            }
            return Ok(Err(e));
        }
        let deltas: Vec<MetadataDelta> = plan.records.iter().map(|r| sm.apply(r)).collect();
        hub.publish(&deltas);
    }
    Ok(Ok((plan.result, sm.image().version)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::node;
    use futures::executor::block_on;
    use weir_proto::ids::NodeId;

    #[test]
    fn handle_is_shareable_across_threads() {
        fn assert_shareable<T: Clone + Send + Sync + 'static>() {}
        assert_shareable::<ControllerHandle>();
        fn assert_send<T: Send>(_: &T) {}
        let handle = ControllerHandle {
            tx: flume::bounded(1).0,
            hub: Arc::new(Hub::new(MetadataImage::default(), 1)),
            in_process: true,
        };
        // The future is Send too, so tokio can spawn it; glommio does not need it.
        assert_send(&handle.submit(Command::RegisterNode(node(1))));
    }

    #[test]
    fn submit_and_subscribe_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (handle, join) = start_in_process(dir.path(), ConfigDefaults::default()).unwrap();
        let (image, rx) = handle.subscribe();
        assert!(!image.cluster_id.is_empty());
        let mut mirror = image.clone();

        block_on(async {
            handle.submit(Command::RegisterNode(node(1))).await.unwrap();
            for i in 0..5 {
                handle.submit(Command::create_topic(format!("t{i}"), 2, 1)).await.unwrap();
            }
            let e = handle.submit(Command::create_topic("t0", 1, 1)).await.unwrap_err();
            assert_eq!(e.kafka_code(), 36);
        });
        // Read-your-writes: the image a new subscriber gets already has t4.
        assert!(handle.subscribe().0.topic("t4").is_some());

        let mut names = Vec::new();
        for _ in 0..6 {
            let d = rx.recv_timeout(Duration::from_secs(5)).unwrap();
            if let MetadataDelta::TopicCreated(t) = &d {
                names.push(t.name.clone());
            }
            mirror.apply_delta(&d);
        }
        assert_eq!(names, ["t0", "t1", "t2", "t3", "t4"]);
        assert_eq!(mirror, handle.image());

        // Usable from other threads (Send + Sync).
        let h2 = handle.clone();
        let r = std::thread::spawn(move || {
            h2.submit_blocking(Command::AllocateProducerIds { node: NodeId(1), count: 10 })
        })
        .join()
        .unwrap()
        .unwrap();
        assert!(matches!(r, CommandResult::ProducerIds { .. }));

        let final_image = handle.image();
        join.shutdown().unwrap();
        // Subscribers see the end; submits fail with a retriable error.
        assert!(rx.iter().any(|d| matches!(d, MetadataDelta::ProducerIdsAllocated { .. })));
        let e = handle.submit_blocking(Command::RegisterNode(node(2))).unwrap_err();
        assert_eq!(e.kafka_code(), 7);

        // Shutdown flushed a snapshot; restart finds the same image.
        assert!(MetadataLog::snapshot_path(dir.path()).exists());
        let (handle, join) = start_in_process(dir.path(), ConfigDefaults::default()).unwrap();
        assert_eq!(handle.image(), final_image);
        join.shutdown().unwrap();
    }

    #[test]
    fn lagging_subscriber_gets_a_reset() {
        let dir = tempfile::tempdir().unwrap();
        let options = ControllerOptions { subscriber_queue_len: 2, ..Default::default() };
        let (handle, _join) =
            start_in_process_with(dir.path(), ConfigDefaults::default(), options).unwrap();
        let (_, rx) = handle.subscribe();
        handle.submit_blocking(Command::RegisterNode(node(1))).unwrap();
        for i in 0..10 {
            handle.submit_blocking(Command::create_topic(format!("t{i}"), 1, 1)).unwrap();
        }
        // The queue filled after two deltas; the rest were not queued.
        assert_eq!(rx.len(), 2);
        rx.drain().for_each(drop);
        // The next tick (or command) sends a Reset with the whole image.
        let d = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        let MetadataDelta::Reset(image) = d else { panic!("expected a reset, got {d:?}") };
        assert_eq!(image.topics.len(), 10);
        assert_eq!(*image, handle.image());
        // After the reset, deltas flow again.
        handle.submit_blocking(Command::create_topic("later", 1, 1)).unwrap();
        let d = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(matches!(d, MetadataDelta::TopicCreated(t) if t.name == "later"));
    }

    /// The single-member controller keeps node sessions: heartbeats keep a
    /// node live, silence fences it, a heartbeat brings it back.
    #[test]
    fn expired_sessions_are_fenced() {
        let dir = tempfile::tempdir().unwrap();
        let options = ControllerOptions { node_session_timeout_ms: 1000, ..Default::default() };
        let (handle, _join) =
            start_in_process_with(dir.path(), ConfigDefaults::default(), options).unwrap();
        let r = handle.submit_blocking(Command::RegisterNode(node(1))).unwrap();
        let CommandResult::NodeRegistered { broker_epoch, .. } = r else { panic!("{r:?}") };
        handle.submit_blocking(Command::create_topic("t", 1, 1)).unwrap();
        let heartbeat = Command::Heartbeat { node: NodeId(1), broker_epoch, want_shutdown: false };
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_millis(1500) {
            let r = handle.submit_blocking(heartbeat.clone()).unwrap();
            assert_eq!(r, CommandResult::HeartbeatAck { fenced: false, shutdown_ready: false });
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(!handle.image().registrations[&NodeId(1)].fenced);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !handle.image().registrations[&NodeId(1)].fenced {
            assert!(std::time::Instant::now() < deadline, "the silent node was not fenced");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(handle.image().topics["t"].partitions[0].leader, crate::state::NO_LEADER);
        handle.submit_blocking(heartbeat).unwrap();
        let image = handle.image();
        assert!(!image.registrations[&NodeId(1)].fenced);
        assert_eq!(image.topics["t"].partitions[0].leader, NodeId(1));
    }

    /// The single-member controller moves leadership back to a preferred
    /// replica that returned, by itself, once per check interval.
    #[test]
    fn leader_imbalance_is_rebalanced() {
        let dir = tempfile::tempdir().unwrap();
        let leader_rebalance =
            RebalanceOptions { enable: true, check_interval_ms: 200, per_node_percentage: 10 };
        let options = ControllerOptions { leader_rebalance, ..Default::default() };
        let (handle, _join) =
            start_in_process_with(dir.path(), ConfigDefaults::default(), options).unwrap();
        let mut epochs = Vec::new();
        for n in 1..=2 {
            match handle.submit_blocking(Command::RegisterNode(node(n))).unwrap() {
                CommandResult::NodeRegistered { broker_epoch, .. } => epochs.push(broker_epoch),
                other => panic!("{other:?}"),
            }
        }
        let assignment = crate::state::PartitionAssignment {
            partition: weir_proto::ids::PartitionId(0),
            replicas: vec![NodeId(1), NodeId(2)],
        };
        handle
            .submit_blocking(Command::CreateTopic {
                name: "r".into(),
                partitions: -1,
                replication_factor: -1,
                assignments: Some(vec![assignment]),
                configs: Default::default(),
                internal: false,
                validate_only: false,
            })
            .unwrap();
        // Node 1 is fenced and comes back; node 2 leads, then lets 1 rejoin.
        let broker_epoch = epochs[0];
        handle.submit_blocking(Command::FenceNode { node: NodeId(1), broker_epoch }).unwrap();
        let heartbeat = Command::Heartbeat { node: NodeId(1), broker_epoch, want_shutdown: false };
        handle.submit_blocking(heartbeat).unwrap();
        let p = handle.image().topics["r"].partitions[0].clone();
        assert_eq!(p.leader, NodeId(2));
        handle
            .submit_blocking(Command::AlterPartition {
                topic: "r".into(),
                partition: p.partition,
                leader: p.leader,
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
                new_isr: vec![
                    crate::state::IsrEntry { node: NodeId(2), broker_epoch: -1 },
                    crate::state::IsrEntry { node: NodeId(1), broker_epoch },
                ],
            })
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while handle.image().topics["r"].partitions[0].leader != NodeId(1) {
            assert!(std::time::Instant::now() < deadline, "the preferred leader was not restored");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn defaults_change_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let (handle, join) = start_in_process(dir.path(), ConfigDefaults::default()).unwrap();
        let cluster_id = handle.image().cluster_id;
        join.shutdown().unwrap();
        let dev = ConfigDefaults {
            topic: [("retention.ms".to_string(), "3600000".to_string())].into(),
            ..Default::default()
        };
        let (handle, join) = start_in_process(dir.path(), dev.clone()).unwrap();
        assert_eq!(handle.image().defaults, dev);
        assert_eq!(handle.image().cluster_id, cluster_id, "the cluster id is stable");
        join.shutdown().unwrap();
        let bad = ConfigDefaults { num_partitions: 0, ..Default::default() };
        assert!(start_in_process(dir.path(), bad).is_err());
    }
}
