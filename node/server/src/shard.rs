//! A shard: one glommio executor pinned to one core, and everything it owns.
//!
//! Each partition replica is owned by exactly one shard ([`Shard::shard_for`])
//! and only ever touched on that shard's thread. Work for another shard's
//! partition crosses over that shard's bounded inbox as a `Send` job (a
//! closure that starts a local task there); the answer comes back on a
//! oneshot channel. Shards share nothing else: each keeps its own copy of the
//! metadata view, applied from the controller's delta stream.

use crate::config::NodeConfig;
use crate::limits::Limits;
use crate::storage::cache::ShardCache;
use crate::storage::partition::Partition;
use event_listener::Event;
use futures::future::LocalBoxFuture;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::rc::Rc;
use weir_proto::{LeaderEpoch, NodeId, ShardId, TopicId, TopicPartition};

/// A unit of work sent to another shard.
pub type Job = Box<dyn FnOnce(Rc<Shard>) -> LocalBoxFuture<'static, ()> + Send>;

/// The target shard is gone (the node is shutting down).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("shard unavailable")]
pub struct ShardGone;

/// What every shard knows about one partition (from the controller).
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionView {
    pub leader: NodeId,
    pub leader_epoch: LeaderEpoch,
    pub replicas: Vec<NodeId>,
    pub isr: Vec<NodeId>,
}

/// What every shard knows about one topic (from the controller).
#[derive(Debug, Clone, PartialEq)]
pub struct TopicView {
    pub name: String,
    pub id: TopicId,
    pub partitions: Vec<PartitionView>,
    /// Explicitly set configs (overrides of the defaults).
    pub overrides: std::collections::BTreeMap<String, String>,
    pub internal: bool,
}

/// A node of the cluster as clients see it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeView {
    pub id: NodeId,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// The shard's copy of cluster metadata. Owned by one shard.
#[derive(Debug, Clone, Default)]
pub struct MetadataView {
    pub cluster_id: String,
    pub controller_id: i32,
    pub nodes: Vec<NodeView>,
    pub topics: HashMap<String, TopicView>,
    pub topic_names: HashMap<TopicId, String>,
}

impl MetadataView {
    pub fn insert_topic(&mut self, topic: TopicView) {
        self.topic_names.insert(topic.id, topic.name.clone());
        self.topics.insert(topic.name.clone(), topic);
    }

    pub fn remove_topic(&mut self, name: &str) {
        if let Some(t) = self.topics.remove(name) {
            self.topic_names.remove(&t.id);
        }
    }
}

/// The state of one shard. See the module docs.
pub struct Shard {
    pub id: ShardId,
    pub shard_count: usize,
    pub node_id: NodeId,
    pub config: Rc<NodeConfig>,
    pub limits: Rc<Limits>,
    pub controller: weir_controller::ControllerHandle,
    pub metadata: RefCell<MetadataView>,
    /// Notified after every metadata change has been applied on this shard.
    pub metadata_changed: Event,
    pub partitions: RefCell<HashMap<TopicPartition, Rc<Partition>>>,
    pub cache: Rc<RefCell<ShardCache>>,
    /// Read-ahead budget of the shard's partitions.
    pub read_aheads: Rc<crate::storage::read_ahead::ReadAheads>,
    pub peers: Vec<flume::Sender<Job>>,
    /// Permits for jobs this shard may have outstanding on each shard
    /// (`Limits::shard_jobs_in_flight_per_peer_max`); they bound the inboxes.
    peer_slots: Vec<glommio::sync::Semaphore>,
    pub shutting_down: Cell<bool>,
    /// Fetches parked on this shard waiting for data (bounded by
    /// `Limits::fetch_waiters_per_shard_max`).
    pub fetch_waiters: Cell<usize>,
    /// Produce requests (acks 1 or all) on this shard's connections waiting
    /// for their appends to become durable; a gauge for `/metrics`.
    pub produce_waiters: Cell<usize>,
    /// Recycled request-frame buffers (see `kafka::frame_pool`).
    pub frames: crate::kafka::frame_pool::FramePool,
    /// Free-space state of each data directory (see `storage::space`).
    pub space: HashMap<PathBuf, Rc<crate::storage::space::DirSpace>>,
    pub groups: crate::kafka::groups::ShardGroups,
    /// Node-wide replication handles (QUIC endpoint, broker epoch).
    pub link: crate::replication::NodeLink,
    /// This shard's replication state (fetchers, pending requests).
    pub replication: crate::replication::ShardReplication,
    this: RefCell<std::rc::Weak<Shard>>,
}

impl Shard {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: ShardId,
        shard_count: usize,
        config: Rc<NodeConfig>,
        limits: Rc<Limits>,
        controller: weir_controller::ControllerHandle,
        peers: Vec<flume::Sender<Job>>,
        link: crate::replication::NodeLink,
    ) -> Rc<Shard> {
        let space = config
            .data_dirs
            .iter()
            .map(|d| {
                let space =
                    crate::storage::space::DirSpace::new(d.clone(), config.data_dir_min_free_bytes);
                (d.clone(), Rc::new(space))
            })
            .collect();
        let peer_slots = (0..shard_count)
            .map(|_| glommio::sync::Semaphore::new(limits.shard_jobs_in_flight_per_peer_max as u64))
            .collect();
        let shard = Rc::new(Shard {
            id,
            shard_count,
            node_id: NodeId(config.node_id),
            cache: Rc::new(RefCell::new(ShardCache::new(limits.batch_cache_bytes_per_shard))),
            read_aheads: crate::storage::read_ahead::ReadAheads::new(
                limits.read_ahead_bytes_per_shard,
            ),
            frames: crate::kafka::frame_pool::FramePool::new(
                limits.frame_pool_buffers_per_shard,
                limits.frame_pool_buffer_bytes_max,
            ),
            config,
            limits,
            controller,
            metadata: RefCell::new(MetadataView::default()),
            metadata_changed: Event::new(),
            partitions: RefCell::new(HashMap::new()),
            peers,
            peer_slots,
            shutting_down: Cell::new(false),
            fetch_waiters: Cell::new(0),
            produce_waiters: Cell::new(0),
            space,
            groups: Default::default(),
            link,
            replication: Default::default(),
            this: RefCell::new(std::rc::Weak::new()),
        });
        *shard.this.borrow_mut() = Rc::downgrade(&shard);
        shard
    }

    pub fn rc(&self) -> Rc<Shard> {
        self.this.borrow().upgrade().expect("shard alive")
    }

    /// The shard that owns `tp`. Stable for a given shard count.
    pub fn shard_for(&self, tp: &TopicPartition) -> ShardId {
        shard_for(tp, self.shard_count)
    }

    /// The data directory holding `tp` (JBOD: spread by hash).
    pub fn data_dir_for(&self, tp: &TopicPartition) -> PathBuf {
        let dirs = &self.config.data_dirs;
        let h = crc32c::crc32c(tp.dir_name().as_bytes()) as usize;
        dirs[h % dirs.len()].clone()
    }

    pub fn partition(&self, tp: &TopicPartition) -> Option<Rc<Partition>> {
        self.partitions.borrow().get(tp).cloned()
    }

    /// The error for a partition not hosted on this shard: NOT_LEADER_OR_FOLLOWER
    /// when the topic and partition exist (the client's metadata is stale:
    /// another node hosts it), else UNKNOWN_TOPIC_OR_PARTITION.
    pub fn not_hosted_error(&self, tp: &TopicPartition) -> i16 {
        use kafka_protocol::error::ResponseError;
        let md = self.metadata.borrow();
        let exists = md
            .topics
            .get(&tp.topic)
            .is_some_and(|t| (0..t.partitions.len() as i32).contains(&tp.partition.0));
        if exists {
            ResponseError::NotLeaderOrFollower.code()
        } else {
            ResponseError::UnknownTopicOrPartition.code()
        }
    }

    /// Runs `f` on shard `target` and returns its result.
    ///
    /// The answer comes back as a job through this shard's own inbox, so the
    /// waiting task is only ever woken by its own thread. glommio 0.9 (and
    /// glommio-ng 0.12) can free a task twice when a foreign thread drops the
    /// last waker of a task while its own thread completes it (seen as
    /// "double free" aborts under cross-shard load); only the long-lived inbox
    /// tasks are ever woken from other threads. Both inboxes are unbounded
    /// channels, so no send waits (which would hand a waker to the other
    /// thread); what bounds them is the per-peer permit taken here.
    pub async fn run_on<T, F, Fut>(&self, target: ShardId, f: F) -> Result<T, ShardGone>
    where
        T: Send + 'static,
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        if target == self.id {
            return Ok(f(self.rc()).await);
        }
        let _permit =
            self.peer_slots[target.0 as usize].acquire_permit(1).await.map_err(|_| ShardGone)?;
        let (tx, rx) = futures::channel::oneshot::channel();
        let home = self.peers[self.id.0 as usize].clone();
        let job: Job = Box::new(move |shard| {
            Box::pin(async move {
                let out = f(shard).await;
                let answer: Job = Box::new(move |_| {
                    Box::pin(async move {
                        let _ = tx.send(out);
                    })
                });
                let _ = home.send(answer);
            })
        });
        self.peers[target.0 as usize].send(job).map_err(|_| ShardGone)?;
        rx.await.map_err(|_| ShardGone)
    }

    /// Runs a controller command and returns its answer, polling for it
    /// rather than handing this task's waker to the controller's thread (see
    /// [`Shard::run_on`] on glommio's foreign wakes). Commands are rare
    /// (topic and config changes, producer-id blocks); a millisecond of
    /// polling is nothing next to the metadata log's fsync.
    pub async fn submit(
        &self,
        cmd: weir_controller::Command,
    ) -> Result<weir_controller::CommandResult, weir_controller::ControllerError> {
        let tick = std::time::Duration::from_millis(1);
        let mut cmd = cmd;
        let pending = loop {
            match self.controller.try_submit(cmd) {
                Ok(p) => break p,
                Err(back) => {
                    cmd = back;
                    glommio::timer::sleep(tick).await;
                }
            }
        };
        loop {
            if let Some(answer) = pending.try_take() {
                return answer;
            }
            glommio::timer::sleep(tick).await;
        }
    }

    /// Runs `f` on every shard and collects the results in shard order.
    pub async fn run_on_all<T, F, Fut>(&self, f: F) -> Vec<Result<T, ShardGone>>
    where
        T: Send + 'static,
        F: Fn(Rc<Shard>) -> Fut + Send + Clone + 'static,
        Fut: Future<Output = T> + 'static,
    {
        let runs = (0..self.shard_count).map(|i| self.run_on(ShardId(i as u32), f.clone()));
        futures::future::join_all(runs).await
    }

    /// Waits until this shard's metadata satisfies `pred`, or the timeout.
    pub async fn wait_metadata(&self, timeout_ms: u64, pred: impl Fn(&Shard) -> bool) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(timeout_ms);
        loop {
            let listener = self.metadata_changed.listen();
            if pred(self) {
                return true;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            let sleep = glommio::timer::sleep(deadline - now);
            futures::pin_mut!(sleep);
            futures::future::select(listener, sleep).await;
        }
    }
}

/// The shard that owns `tp` among `shard_count` shards.
pub fn shard_for(tp: &TopicPartition, shard_count: usize) -> ShardId {
    let h =
        crc32c::crc32c_append(crc32c::crc32c(tp.topic.as_bytes()), &tp.partition.0.to_be_bytes());
    ShardId(h % shard_count as u32)
}

/// Milliseconds since the Unix epoch (the shell's clock; cores get it as a
/// parameter).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
