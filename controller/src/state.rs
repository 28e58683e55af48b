//! The metadata state machine: sans-IO and deterministic.
//!
//! ```text
//!   Command ──handle()──▶ Plan { records, result }      (validates; changes nothing)
//!                              │
//!              shell appends records to the log, fsync
//!                              │
//!   MetadataRecord ──apply()──▶ MetadataImage' + MetadataDelta ──▶ subscribers
//! ```
//!
//! [`StateMachine::handle`] reads the image and either refuses the command
//! with a [`ControllerError`] or returns the records that carry it out plus
//! the answer for the caller; it has no clock, no randomness (topic ids come
//! from an injected [`TopicIdSource`] and are written into the records) and
//! no I/O. [`StateMachine::apply`] folds one record into the image and returns
//! the matching [`MetadataDelta`]. Replaying the same records from an empty
//! image rebuilds an identical image; a later Raft quorum replicates exactly
//! these records.
//!
//! Partition leadership — registrations with broker epochs, heartbeats,
//! fencing, elections, AlterPartition, controlled shutdown — is planned by
//! the private `leadership` module with Kafka KRaft's rules, and placement of
//! new replicas by `placement` (Kafka's rack-aware assignment), partition
//! reassignments (KIP-455) by `reassignment`. Node session times are not
//! state: the active controller's shell keeps them ([`crate::sessions`]) and
//! submits [`Command::FenceNode`] when one expires; it also submits the
//! preferred-leader elections of [`crate::rebalance`].
//!
//! Every record applied bumps [`MetadataImage::version`] by one, and every
//! record gives exactly one delta, so a subscriber that applies deltas with
//! [`MetadataImage::apply_delta`] holds an image equal to the controller's at
//! the same version.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use weir_proto::ids::{LeaderEpoch, NodeId, PartitionId, ProducerId, TopicId};

use crate::config::{
    self, ConfigDefaults, ConfigEntry, ConfigOp, ReplicationThrottle, TopicConfig,
};
use crate::error::ControllerError;
use crate::{leadership, placement, reassignment};

/// Longest topic name, as in Kafka.
pub const TOPIC_NAME_LEN_MAX: usize = 249;
/// Most partitions one command may create. Kafka's controller caps a batch at
/// the same number; it bounds one log record and one delta.
pub const PARTITIONS_PER_COMMAND_MAX: i32 = 10_000;
/// Most producer ids one AllocateProducerIds may take. Kafka hands out blocks
/// of 1000; the bound keeps a confused caller from exhausting the id space.
pub const PRODUCER_ID_BLOCK_MAX: u32 = 1_000_000;
/// The group coordinator's topic.
pub const CONSUMER_OFFSETS_TOPIC: &str = "__consumer_offsets";
/// The transaction coordinator's topic.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";
/// Kafka's partition count for `__consumer_offsets` (`offsets.topic.num.partitions`).
pub const CONSUMER_OFFSETS_PARTITIONS: i32 = 50;
/// Internal topics; only the node creates them (`internal: true`).
pub const INTERNAL_TOPICS: &[&str] = &[CONSUMER_OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC];
/// KRaft's metadata topic name; never a user topic.
const CLUSTER_METADATA_TOPIC: &str = "__cluster_metadata";

/// A registered storage node and where clients reach it.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: NodeId,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
    /// `host:port` of the node's QUIC replication endpoint.
    #[serde(default)]
    pub replication_addr: Option<String>,
    /// Random per node process start: a registration with a new incarnation
    /// is a restarted ("bounced") node and gets a new broker epoch.
    #[serde(default)]
    pub incarnation: u64,
}

/// The leader of a partition that has none (an offline partition), as
/// Kafka's -1.
pub const NO_LEADER: NodeId = NodeId(-1);

/// One partition's placement and leadership.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMeta {
    pub partition: PartitionId,
    /// [`NO_LEADER`] (-1) when no replica may lead (offline).
    pub leader: NodeId,
    /// Bumped on every leader change.
    pub leader_epoch: LeaderEpoch,
    /// Preferred leader first. During a reassignment: the target replicas,
    /// then those being removed.
    pub replicas: Vec<NodeId>,
    pub isr: Vec<NodeId>,
    /// Bumped on every change of leader, ISR or replicas; AlterPartition
    /// must name the current one.
    #[serde(default)]
    pub partition_epoch: i32,
    /// Replicas an ongoing reassignment adds (KIP-455): in `replicas`, not
    /// in the replica set before it. Empty when none is in progress (and
    /// then left out of the JSON, so records read as before reassignments).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding_replicas: Vec<NodeId>,
    /// Replicas an ongoing reassignment removes: in `replicas` (after the
    /// target ones), not in its target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing_replicas: Vec<NodeId>,
}

impl PartitionMeta {
    /// Whether a reassignment is in progress.
    pub fn is_reassigning(&self) -> bool {
        !self.adding_replicas.is_empty() || !self.removing_replicas.is_empty()
    }

    /// The replica set an ongoing reassignment moves to (`replicas` itself
    /// when none is in progress), preferred replica first.
    pub fn target_replicas(&self) -> Vec<NodeId> {
        self.replicas.iter().copied().filter(|r| !self.removing_replicas.contains(r)).collect()
    }

    /// The replica set before the ongoing reassignment (`replicas` itself
    /// when none is in progress): what cancelling it goes back to.
    pub fn original_replicas(&self) -> Vec<NodeId> {
        self.replicas.iter().copied().filter(|r| !self.adding_replicas.contains(r)).collect()
    }
}

/// A node's registration with the controller: the broker epoch of its
/// current registration and its liveness.
///
/// `fenced`: its session expired (or it restarted); it leads nothing and is
/// in no ISR but as the last member, until it heartbeats again.
/// `shutting_down`: it asked for a controlled shutdown; it takes no new
/// leaderships or ISR places until it registers again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Registration {
    pub broker_epoch: i64,
    pub fenced: bool,
    pub shutting_down: bool,
}

/// One member of the ISR an AlterPartition proposes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsrEntry {
    pub node: NodeId,
    /// The broker epoch the leader saw the member fetch with; -1 for members
    /// already in the ISR.
    pub broker_epoch: i64,
}

/// ElectLeaders' election type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectionType {
    /// Make the first replica the leader where it is in the ISR and live.
    Preferred,
    /// Give partitions without a leader any live replica (losing data).
    Unclean,
}

/// The outcome of ElectLeaders for one partition: `error_code` 0 when a
/// leader was elected, else the Kafka error (ELECTION_NOT_NEEDED,
/// PREFERRED_LEADER_NOT_AVAILABLE, ELIGIBLE_LEADERS_NOT_AVAILABLE,
/// UNKNOWN_TOPIC_OR_PARTITION).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElectionResult {
    pub topic: String,
    pub partition: PartitionId,
    pub error_code: i16,
    pub message: Option<String>,
}

/// The outcome of AlterPartitionReassignments for one partition:
/// `error_code` 0 when the reassignment was started, changed, completed or
/// cancelled (or there was nothing to do), else the Kafka error
/// (UNKNOWN_TOPIC_OR_PARTITION, INVALID_REPLICA_ASSIGNMENT,
/// NO_REASSIGNMENT_IN_PROGRESS).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReassignmentResult {
    pub topic: String,
    pub partition: PartitionId,
    pub error_code: i16,
    pub message: Option<String>,
}

/// A reassignment in progress, as ListPartitionReassignments reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OngoingReassignment {
    pub topic: String,
    pub partition: PartitionId,
    /// Every replica during the move: the target ones first, then those
    /// being removed.
    pub replicas: Vec<NodeId>,
    pub adding: Vec<NodeId>,
    pub removing: Vec<NodeId>,
}

/// A topic: its stable id, partitions (index = partition id) and config overrides.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    pub id: TopicId,
    /// `__consumer_offsets` and `__transaction_state` (Metadata's `is_internal`).
    pub internal: bool,
    pub partitions: Vec<PartitionMeta>,
    /// Canonical config overrides (see [`crate::config`]).
    pub overrides: BTreeMap<String, String>,
}

/// The whole cluster metadata at one version.
///
/// Owned by the controller thread ([`StateMachine`]); subscribers keep their
/// own copy, brought up to date with [`MetadataImage::apply_delta`]. Plain
/// data: clone it to share it.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MetadataImage {
    /// Kafka-style cluster id (22 characters, base64url of 16 random bytes);
    /// empty until the first start records one.
    pub cluster_id: String,
    /// Records applied so far: the offset of the next record.
    pub version: u64,
    pub nodes: BTreeMap<NodeId, NodeInfo>,
    pub topics: BTreeMap<String, TopicMeta>,
    /// The first producer id not yet handed out.
    pub next_producer_id: i64,
    /// Node-level config defaults in force.
    pub defaults: ConfigDefaults,
    /// The current registration of every node in `nodes` (a node from an
    /// image written before registrations were recorded has none until it
    /// registers again; it counts as live meanwhile).
    #[serde(default)]
    pub registrations: BTreeMap<NodeId, Registration>,
    /// Leader elections applied: partition changes that gave a partition a
    /// new leader or a new leader epoch (Kafka's LeaderElectionRateAndTimeMs count).
    #[serde(default)]
    pub leader_elections: u64,
    /// Of those, unclean ones (a leader from outside the ISR).
    #[serde(default)]
    pub unclean_leader_elections: u64,
    /// Dynamic node ("broker") configs ([`config::NODE_CONFIGS`]), keyed by
    /// node id in decimal, or `""` for the cluster default
    /// ([`config::node_config_key`]); canonical values. A key with no
    /// configs left is removed.
    #[serde(default)]
    pub node_configs: BTreeMap<String, BTreeMap<String, String>>,
}

impl MetadataImage {
    pub fn topic(&self, name: &str) -> Option<&TopicMeta> {
        self.topics.get(name)
    }

    /// Linear in the number of topics; the node keeps its own id index for
    /// the hot path.
    pub fn topic_by_id(&self, id: TopicId) -> Option<&TopicMeta> {
        self.topics.values().find(|t| t.id == id)
    }

    /// The typed effective config of a topic.
    pub fn topic_config(&self, name: &str) -> Option<TopicConfig> {
        let t = self.topics.get(name)?;
        Some(
            TopicConfig::resolve(&self.defaults, &t.overrides)
                .expect("stored overrides were validated when recorded"),
        )
    }

    /// A node's registration. A node known from an old image but not yet
    /// registered again counts as live with broker epoch -1.
    pub fn registration(&self, node: NodeId) -> Option<Registration> {
        match self.registrations.get(&node) {
            Some(r) => Some(*r),
            None if self.nodes.contains_key(&node) => {
                Some(Registration { broker_epoch: -1, fenced: false, shutting_down: false })
            }
            None => None,
        }
    }

    /// Registered, not fenced and not shutting down: may lead, join an ISR,
    /// and be placed on.
    pub fn is_eligible(&self, node: NodeId) -> bool {
        self.registration(node).is_some_and(|r| !r.fenced && !r.shutting_down)
    }

    /// One partition, if it exists.
    pub fn partition(&self, topic: &str, partition: PartitionId) -> Option<&PartitionMeta> {
        let i = usize::try_from(partition.0).ok()?;
        self.topics.get(topic)?.partitions.get(i)
    }

    /// DescribeConfigs for a topic: the full config set.
    pub fn describe_topic_configs(&self, name: &str) -> Option<Vec<ConfigEntry>> {
        let t = self.topics.get(name)?;
        Some(config::describe(&self.defaults, &t.overrides))
    }

    /// The replication throttle rates of `node`: its own value of each rate,
    /// else the cluster default, else unlimited (`None`).
    pub fn replication_throttle(&self, node: NodeId) -> ReplicationThrottle {
        ReplicationThrottle::resolve(
            self.node_configs.get(&config::node_config_key(Some(node))),
            self.node_configs.get(&config::node_config_key(None)),
        )
    }

    /// DescribeConfigs rows for the dynamic configs set for `node`, or for
    /// the cluster default (`None`), as [`config::describe_node`].
    pub fn describe_node_configs(&self, node: Option<NodeId>) -> Vec<ConfigEntry> {
        let default = self.node_configs.get(&config::node_config_key(None));
        match node {
            Some(n) => config::describe_node(
                self.node_configs.get(&config::node_config_key(Some(n))),
                default,
            ),
            None => config::describe_node(None, default),
        }
    }

    /// Brings this image forward by one delta (or replaces it on `Reset`).
    pub fn apply_delta(&mut self, delta: &MetadataDelta) {
        match delta {
            MetadataDelta::Reset(image) => {
                *self = (**image).clone();
                return;
            }
            MetadataDelta::ClusterInitialized { cluster_id } => {
                assert!(self.cluster_id.is_empty(), "cluster id recorded twice");
                self.cluster_id = cluster_id.clone();
            }
            MetadataDelta::DefaultsChanged(defaults) => self.defaults = defaults.clone(),
            MetadataDelta::NodeRegistered { node, broker_epoch } => {
                self.nodes.insert(node.id, node.clone());
                let registration = Registration {
                    broker_epoch: *broker_epoch,
                    fenced: false,
                    shutting_down: false,
                };
                self.registrations.insert(node.id, registration);
            }
            MetadataDelta::NodeFenced { node, broker_epoch } => {
                let r = self.registrations.get_mut(node).expect("fencing a registered node");
                assert_eq!(r.broker_epoch, *broker_epoch, "fencing the current registration");
                r.fenced = true;
            }
            MetadataDelta::NodeUnfenced { node, broker_epoch } => {
                let r = self.registrations.get_mut(node).expect("unfencing a registered node");
                assert_eq!(r.broker_epoch, *broker_epoch, "unfencing the current registration");
                r.fenced = false;
            }
            MetadataDelta::NodeShuttingDown { node, broker_epoch } => {
                let r = self.registrations.get_mut(node).expect("shutting down a registered node");
                assert_eq!(r.broker_epoch, *broker_epoch, "shutting down the current registration");
                r.shutting_down = true;
            }
            MetadataDelta::PartitionChanged { topic, partition, unclean } => {
                let t = self.topics.get_mut(topic).expect("change of a known topic");
                let old = usize::try_from(partition.partition.0)
                    .ok()
                    .and_then(|i| t.partitions.get_mut(i))
                    .expect("change of a known partition");
                assert!(
                    partition.leader_epoch >= old.leader_epoch
                        && partition.partition_epoch > old.partition_epoch,
                    "partition epochs only grow"
                );
                assert!(
                    partition.adding_replicas.iter().all(|r| partition.replicas.contains(r))
                        && partition.removing_replicas.iter().all(|r| {
                            partition.replicas.contains(r) && !partition.adding_replicas.contains(r)
                        }),
                    "a reassignment adds and removes only replicas, none both"
                );
                let elected = partition.leader != NO_LEADER
                    && (partition.leader != old.leader
                        || partition.leader_epoch != old.leader_epoch);
                if elected {
                    self.leader_elections += 1;
                    if *unclean {
                        self.unclean_leader_elections += 1;
                    }
                }
                *old = partition.clone();
            }
            MetadataDelta::TopicCreated(topic) => {
                let old = self.topics.insert(topic.name.clone(), topic.clone());
                assert!(old.is_none(), "topic {} created twice", topic.name);
            }
            MetadataDelta::TopicDeleted { name, id } => {
                let old = self.topics.remove(name);
                assert!(
                    old.as_ref().is_some_and(|t| t.id == *id),
                    "deleted topic {name} ({id}) was not in the image"
                );
            }
            MetadataDelta::PartitionsCreated { topic, partitions } => {
                let t = self.topics.get_mut(topic).expect("partitions added to a known topic");
                for p in partitions {
                    assert_eq!(p.partition.0 as usize, t.partitions.len(), "partitions in order");
                    t.partitions.push(p.clone());
                }
            }
            MetadataDelta::ConfigChanged { topic, overrides } => {
                let t = self.topics.get_mut(topic).expect("config of a known topic");
                t.overrides = overrides.clone();
            }
            MetadataDelta::NodeConfigChanged { node, overrides } => {
                assert!(
                    node.is_none_or(|n| self.nodes.contains_key(&n)),
                    "configs of a registered node"
                );
                let key = config::node_config_key(*node);
                if overrides.is_empty() {
                    self.node_configs.remove(&key);
                } else {
                    self.node_configs.insert(key, overrides.clone());
                }
            }
            MetadataDelta::ProducerIdsAllocated { first, count, .. } => {
                assert_eq!(*first, self.next_producer_id, "producer id blocks are contiguous");
                self.next_producer_id = first + i64::from(*count);
            }
        }
        self.version += 1;
    }
}

/// How DeleteTopics names a topic (by name, or by id from v6).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TopicRef {
    Name(String),
    Id(TopicId),
}

/// An explicit replica assignment of one partition in CreateTopics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionAssignment {
    pub partition: PartitionId,
    pub replicas: Vec<NodeId>,
}

/// What a node asks of the controller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Register a node, or update its address. Idempotent for the same
    /// incarnation; a new incarnation is a restarted node, which gets a new
    /// broker epoch after its old registration is fenced.
    RegisterNode(NodeInfo),
    CreateTopic {
        name: String,
        /// -1: the default ([`ConfigDefaults::num_partitions`]).
        partitions: i32,
        /// -1: the default ([`ConfigDefaults::default_replication_factor`]).
        replication_factor: i16,
        /// Explicit assignments; then `partitions` and `replication_factor` must be -1.
        assignments: Option<Vec<PartitionAssignment>>,
        configs: BTreeMap<String, String>,
        /// Set only by the node creating `__consumer_offsets` / `__transaction_state`.
        internal: bool,
        validate_only: bool,
    },
    DeleteTopic {
        topic: TopicRef,
    },
    CreatePartitions {
        topic: String,
        new_total: i32,
        /// Replicas of each new partition, in order; `None` to let the controller place them.
        assignments: Option<Vec<Vec<NodeId>>>,
        validate_only: bool,
    },
    AlterConfigs {
        topic: String,
        ops: Vec<ConfigOp>,
        /// Legacy AlterConfigs: the `Set` ops replace all overrides.
        replace_all: bool,
        validate_only: bool,
    },
    /// Change the dynamic configs ([`config::NODE_CONFIGS`]) of a registered
    /// node, or the cluster default (`node: None`): AlterConfigs and
    /// IncrementalAlterConfigs on a BROKER resource.
    AlterNodeConfigs {
        node: Option<NodeId>,
        ops: Vec<ConfigOp>,
        /// Legacy AlterConfigs: the `Set` ops replace all of them.
        replace_all: bool,
        validate_only: bool,
    },
    AllocateProducerIds {
        node: NodeId,
        count: u32,
    },
    /// A node's periodic heartbeat. Unfences a fenced node; `want_shutdown`
    /// starts (and then polls) its controlled shutdown.
    Heartbeat {
        node: NodeId,
        broker_epoch: i64,
        want_shutdown: bool,
    },
    /// A partition leader changes its ISR.
    AlterPartition {
        topic: String,
        partition: PartitionId,
        leader: NodeId,
        leader_epoch: LeaderEpoch,
        partition_epoch: i32,
        new_isr: Vec<IsrEntry>,
    },
    /// Preferred or unclean leader election; `None`: every partition.
    ElectLeaders {
        partitions: Option<Vec<(String, PartitionId)>>,
        election: ElectionType,
    },
    /// A node's session expired: submitted by the active controller's own
    /// session timer ([`crate::sessions::Sessions`]). A no-op unless
    /// `broker_epoch` is the node's current, unfenced registration.
    FenceNode {
        node: NodeId,
        broker_epoch: i64,
    },
    /// Start or change (`Some(target replicas)`) or cancel (`None`) the
    /// reassignment of each partition (KIP-455; planned by the private
    /// `reassignment` module).
    /// Each entry is answered on its own.
    AlterPartitionReassignments {
        partitions: Vec<(String, PartitionId, Option<Vec<NodeId>>)>,
    },
    /// The reassignments in progress among `partitions`; `None`: all of them.
    ListPartitionReassignments {
        partitions: Option<Vec<(String, PartitionId)>>,
    },
}

impl Command {
    /// A plain CreateTopics entry: controller-placed, no configs.
    pub fn create_topic(
        name: impl Into<String>,
        partitions: i32,
        replication_factor: i16,
    ) -> Command {
        Command::CreateTopic {
            name: name.into(),
            partitions,
            replication_factor,
            assignments: None,
            configs: BTreeMap::new(),
            internal: false,
            validate_only: false,
        }
    }

    /// `__consumer_offsets`, as the node creates it on first use.
    pub fn create_consumer_offsets(replication_factor: i16) -> Command {
        Command::CreateTopic {
            name: CONSUMER_OFFSETS_TOPIC.into(),
            partitions: CONSUMER_OFFSETS_PARTITIONS,
            replication_factor,
            assignments: None,
            configs: BTreeMap::new(),
            internal: true,
            validate_only: false,
        }
    }
}

/// The answer to a command that succeeded (or would, under `validate_only`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    NodeRegistered {
        cluster_id: String,
        /// The epoch of this registration: heartbeats must carry it.
        broker_epoch: i64,
    },
    /// Under `validate_only` the topic id is nil.
    TopicCreated {
        topic: TopicMeta,
        configs: Vec<ConfigEntry>,
    },
    TopicDeleted {
        name: String,
        id: TopicId,
    },
    PartitionsCreated {
        topic: String,
        partitions: Vec<PartitionMeta>,
    },
    ConfigsAltered {
        topic: String,
        overrides: BTreeMap<String, String>,
    },
    /// The node's (or the cluster default's) dynamic configs after the change.
    NodeConfigsAltered {
        node: Option<NodeId>,
        overrides: BTreeMap<String, String>,
    },
    /// Ids `first .. first + count` belong to the asking node for good.
    ProducerIds {
        first: ProducerId,
        count: u32,
    },
    /// `fenced`: the node is fenced after this heartbeat (it asked to shut
    /// down while fenced). `shutdown_ready`: it asked to shut down and leads
    /// no partition that another replica could lead; it may stop now.
    HeartbeatAck {
        fenced: bool,
        shutdown_ready: bool,
    },
    /// The partition's state after AlterPartition.
    PartitionAltered {
        topic: String,
        partition: PartitionMeta,
    },
    LeadersElected {
        results: Vec<ElectionResult>,
    },
    NodeFenced,
    /// One result per entry of the command, in its order.
    PartitionReassignmentsAltered {
        results: Vec<ReassignmentResult>,
    },
    /// Reassignments in progress, by topic name and partition.
    PartitionReassignments {
        reassignments: Vec<OngoingReassignment>,
    },
}

/// One entry of the metadata log. The log frames these in batches (one batch
/// per command, see [`crate::log`]) with a format version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MetadataRecord {
    ClusterInitialized {
        cluster_id: String,
    },
    DefaultsChanged {
        defaults: ConfigDefaults,
    },
    /// `broker_epoch` is the record's own offset (image version); 0 in logs
    /// written before broker epochs, read as that offset.
    NodeRegistered {
        node: NodeInfo,
        #[serde(default)]
        broker_epoch: i64,
    },
    TopicCreated {
        topic: TopicMeta,
    },
    TopicDeleted {
        name: String,
        id: TopicId,
    },
    PartitionsCreated {
        topic: String,
        partitions: Vec<PartitionMeta>,
    },
    ConfigChanged {
        topic: String,
        overrides: BTreeMap<String, String>,
    },
    /// The full new dynamic configs of a node, or of the cluster default
    /// (`node: None`); empty when none are left.
    NodeConfigChanged {
        node: Option<NodeId>,
        overrides: BTreeMap<String, String>,
    },
    ProducerIdsAllocated {
        node: NodeId,
        first: i64,
        count: u32,
    },
    NodeFenced {
        node: NodeId,
        broker_epoch: i64,
    },
    NodeUnfenced {
        node: NodeId,
        broker_epoch: i64,
    },
    NodeShuttingDown {
        node: NodeId,
        broker_epoch: i64,
    },
    /// The full new state of one partition. `unclean`: its new leader came
    /// from outside the ISR.
    PartitionChanged {
        topic: String,
        partition: PartitionMeta,
        #[serde(default)]
        unclean: bool,
    },
}

/// A change to the metadata image, as subscribers receive it.
///
/// Deltas arrive in log order. `Reset` replaces the subscriber's image: it is
/// sent instead of the deltas a subscriber missed because its bounded queue
/// was full, so a slow subscriber never blocks the controller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataDelta {
    Reset(Box<MetadataImage>),
    ClusterInitialized { cluster_id: String },
    DefaultsChanged(ConfigDefaults),
    NodeRegistered { node: NodeInfo, broker_epoch: i64 },
    TopicCreated(TopicMeta),
    TopicDeleted { name: String, id: TopicId },
    PartitionsCreated { topic: String, partitions: Vec<PartitionMeta> },
    ConfigChanged { topic: String, overrides: BTreeMap<String, String> },
    NodeConfigChanged { node: Option<NodeId>, overrides: BTreeMap<String, String> },
    ProducerIdsAllocated { node: NodeId, first: i64, count: u32 },
    NodeFenced { node: NodeId, broker_epoch: i64 },
    NodeUnfenced { node: NodeId, broker_epoch: i64 },
    NodeShuttingDown { node: NodeId, broker_epoch: i64 },
    PartitionChanged { topic: String, partition: PartitionMeta, unclean: bool },
}

impl MetadataRecord {
    /// The delta of this record when applied as the record at `version`.
    fn to_delta(&self, version: u64) -> MetadataDelta {
        match self.clone() {
            MetadataRecord::ClusterInitialized { cluster_id } => {
                MetadataDelta::ClusterInitialized { cluster_id }
            }
            MetadataRecord::DefaultsChanged { defaults } => {
                MetadataDelta::DefaultsChanged(defaults)
            }
            MetadataRecord::NodeRegistered { node, broker_epoch } => {
                let broker_epoch = if broker_epoch == 0 {
                    i64::try_from(version).expect("versions fit i64")
                } else {
                    broker_epoch
                };
                MetadataDelta::NodeRegistered { node, broker_epoch }
            }
            MetadataRecord::TopicCreated { topic } => MetadataDelta::TopicCreated(topic),
            MetadataRecord::TopicDeleted { name, id } => MetadataDelta::TopicDeleted { name, id },
            MetadataRecord::PartitionsCreated { topic, partitions } => {
                MetadataDelta::PartitionsCreated { topic, partitions }
            }
            MetadataRecord::ConfigChanged { topic, overrides } => {
                MetadataDelta::ConfigChanged { topic, overrides }
            }
            MetadataRecord::NodeConfigChanged { node, overrides } => {
                MetadataDelta::NodeConfigChanged { node, overrides }
            }
            MetadataRecord::ProducerIdsAllocated { node, first, count } => {
                MetadataDelta::ProducerIdsAllocated { node, first, count }
            }
            MetadataRecord::NodeFenced { node, broker_epoch } => {
                MetadataDelta::NodeFenced { node, broker_epoch }
            }
            MetadataRecord::NodeUnfenced { node, broker_epoch } => {
                MetadataDelta::NodeUnfenced { node, broker_epoch }
            }
            MetadataRecord::NodeShuttingDown { node, broker_epoch } => {
                MetadataDelta::NodeShuttingDown { node, broker_epoch }
            }
            MetadataRecord::PartitionChanged { topic, partition, unclean } => {
                MetadataDelta::PartitionChanged { topic, partition, unclean }
            }
        }
    }
}

/// Where new topic ids come from. The shell passes a random source; tests a
/// seeded one. Ids are written into records, so replay needs no source.
pub trait TopicIdSource {
    fn next_topic_id(&mut self) -> TopicId;
}

impl<F: FnMut() -> TopicId> TopicIdSource for F {
    fn next_topic_id(&mut self) -> TopicId {
        self()
    }
}

/// What a command does: records to append, then the answer to give once
/// they are durable. `records` is empty under `validate_only` and for no-ops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub records: Vec<MetadataRecord>,
    pub result: CommandResult,
}

/// The controller's metadata state machine. Single-threaded: owned by the
/// controller thread (or a simulator); nothing in it is shared.
#[derive(Clone, Debug, Default)]
pub struct StateMachine {
    image: MetadataImage,
}

/// The form Kafka compares topic names in for metric collisions.
fn collision_key(name: &str) -> String {
    name.replace('.', "_")
}

/// Kafka's topic name rules, with Kafka's messages.
pub fn validate_topic_name(name: &str) -> Result<(), ControllerError> {
    let err = |m: String| Err(ControllerError::InvalidTopic(m));
    if name.is_empty() {
        return err("Topic name is illegal, it can't be empty".into());
    }
    if name == "." || name == ".." {
        return err("Topic name cannot be \".\" or \"..\"".into());
    }
    if name.len() > TOPIC_NAME_LEN_MAX {
        return err(format!(
            "Topic name is illegal, it can't be longer than {TOPIC_NAME_LEN_MAX} characters, topic name: {name}"
        ));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-') {
        return err(format!(
            "Topic name \"{name}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        ));
    }
    Ok(())
}

impl StateMachine {
    pub fn new() -> StateMachine {
        StateMachine::default()
    }

    /// Resumes from a snapshot.
    pub fn from_image(image: MetadataImage) -> StateMachine {
        StateMachine { image }
    }

    pub fn image(&self) -> &MetadataImage {
        &self.image
    }

    /// Records that a starting controller must append before serving: the
    /// cluster id on first start, and the node-level defaults when the
    /// configuration changed them. Empty when nothing changed.
    pub fn bootstrap(
        &self,
        new_cluster_id: impl FnOnce() -> String,
        defaults: &ConfigDefaults,
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        let defaults = defaults.validated()?;
        let mut records = Vec::new();
        if self.image.cluster_id.is_empty() {
            records.push(MetadataRecord::ClusterInitialized { cluster_id: new_cluster_id() });
        }
        if self.image.defaults != defaults {
            records.push(MetadataRecord::DefaultsChanged { defaults });
        }
        Ok(records)
    }

    /// Folds one record into the image and returns its delta.
    pub fn apply(&mut self, record: &MetadataRecord) -> MetadataDelta {
        let delta = record.to_delta(self.image.version);
        self.image.apply_delta(&delta);
        delta
    }

    /// Validates `cmd` against the current image and plans it. Changes nothing.
    pub fn handle(
        &self,
        cmd: &Command,
        ids: &mut dyn TopicIdSource,
    ) -> Result<Plan, ControllerError> {
        match cmd {
            Command::RegisterNode(node) => self.register_node(node),
            Command::CreateTopic {
                name,
                partitions,
                replication_factor,
                assignments,
                configs,
                internal,
                validate_only,
            } => self.create_topic(
                name,
                *partitions,
                *replication_factor,
                assignments.as_deref(),
                configs,
                *internal,
                *validate_only,
                ids,
            ),
            Command::DeleteTopic { topic } => self.delete_topic(topic),
            Command::CreatePartitions { topic, new_total, assignments, validate_only } => {
                self.create_partitions(topic, *new_total, assignments.as_deref(), *validate_only)
            }
            Command::AlterConfigs { topic, ops, replace_all, validate_only } => {
                self.alter_configs(topic, ops, *replace_all, *validate_only)
            }
            Command::AlterNodeConfigs { node, ops, replace_all, validate_only } => {
                self.alter_node_configs(*node, ops, *replace_all, *validate_only)
            }
            Command::AllocateProducerIds { node, count } => {
                self.allocate_producer_ids(*node, *count)
            }
            Command::Heartbeat { node, broker_epoch, want_shutdown } => {
                leadership::heartbeat(&self.image, *node, *broker_epoch, *want_shutdown)
            }
            Command::AlterPartition {
                topic,
                partition,
                leader,
                leader_epoch,
                partition_epoch,
                new_isr,
            } => leadership::alter_partition(
                &self.image,
                topic,
                *partition,
                *leader,
                *leader_epoch,
                *partition_epoch,
                new_isr,
            ),
            Command::ElectLeaders { partitions, election } => {
                Ok(leadership::elect_leaders(&self.image, partitions.as_deref(), *election))
            }
            Command::FenceNode { node, broker_epoch } => {
                Ok(leadership::fence_node(&self.image, *node, *broker_epoch))
            }
            Command::AlterPartitionReassignments { partitions } => {
                reassignment::alter(&self.image, partitions)
            }
            Command::ListPartitionReassignments { partitions } => {
                Ok(reassignment::list(&self.image, partitions.as_deref()))
            }
        }
    }

    fn register_node(&self, node: &NodeInfo) -> Result<Plan, ControllerError> {
        if node.id.0 < 0 {
            return Err(ControllerError::InvalidRequest(format!(
                "Node id must be non-negative, not {}",
                node.id
            )));
        }
        if node.host.is_empty() || node.port == 0 {
            return Err(ControllerError::InvalidRequest(format!(
                "Node {} must register a host and a non-zero port",
                node.id
            )));
        }
        Ok(leadership::register(&self.image, node))
    }

    /// Nodes new replicas may be placed on: registered, not fenced, not
    /// shutting down.
    fn eligible_nodes(&self) -> Vec<NodeId> {
        self.image.nodes.keys().copied().filter(|n| self.image.is_eligible(*n)).collect()
    }

    /// Places `count` new partitions starting at partition `first` with
    /// Kafka's (rack-aware) placement over the eligible nodes, from where the
    /// cluster's partition count left off so leaders spread. Deterministic.
    fn place(&self, first: i32, count: i32, rf: usize) -> Vec<PartitionMeta> {
        let nodes: Vec<(NodeId, Option<&str>)> = self
            .eligible_nodes()
            .into_iter()
            .map(|n| (n, self.image.nodes[&n].rack.as_deref()))
            .collect();
        let existing: usize = self.image.topics.values().map(|t| t.partitions.len()).sum();
        let count = usize::try_from(count).expect("partition counts checked before placing");
        placement::assign(&nodes, existing, count, rf)
            .into_iter()
            .zip(first..)
            .map(|(replicas, p)| new_partition(p, replicas))
            .collect()
    }

    /// A partition with an explicit assignment: its ISR is the eligible
    /// replicas, its leader the first of them (Kafka refuses an assignment
    /// with none).
    fn assigned_partition(
        &self,
        partition: i32,
        replicas: Vec<NodeId>,
    ) -> Result<PartitionMeta, ControllerError> {
        let isr: Vec<NodeId> =
            replicas.iter().copied().filter(|r| self.image.is_eligible(*r)).collect();
        let Some(&leader) = isr.first() else {
            return Err(ControllerError::InvalidReplicaAssignment(format!(
                "All brokers specified in the partition assignment for partition {partition} are fenced or in controlled shutdown."
            )));
        };
        Ok(PartitionMeta {
            partition: PartitionId(partition),
            leader,
            leader_epoch: LeaderEpoch(0),
            replicas,
            isr,
            partition_epoch: 0,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        })
    }

    fn check_replicas(&self, replicas: &[NodeId], partition: i32) -> Result<(), ControllerError> {
        if replicas.is_empty() {
            return Err(ControllerError::InvalidReplicaAssignment(format!(
                "The manual partition assignment of partition {partition} is empty."
            )));
        }
        for (i, r) in replicas.iter().enumerate() {
            if replicas[..i].contains(r) {
                return Err(ControllerError::InvalidReplicaAssignment(format!(
                    "The manual partition assignment of partition {partition} includes the broker {r} more than once."
                )));
            }
            if !self.image.nodes.contains_key(r) {
                return Err(ControllerError::InvalidReplicaAssignment(format!(
                    "The manual partition assignment of partition {partition} includes broker {r}, which is not registered."
                )));
            }
        }
        Ok(())
    }

    fn check_replication_factor(&self, rf: i32) -> Result<usize, ControllerError> {
        let live = self.eligible_nodes().len();
        if rf < 1 {
            return Err(ControllerError::InvalidReplicationFactor(
                "Replication factor must be larger than 0, or -1 to use the default value.".into(),
            ));
        }
        if rf as usize > live {
            return Err(ControllerError::InvalidReplicationFactor(format!(
                "Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only {live} broker(s) are registered."
            )));
        }
        Ok(rf as usize)
    }

    #[allow(clippy::too_many_arguments)]
    fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        assignments: Option<&[PartitionAssignment]>,
        configs: &BTreeMap<String, String>,
        internal: bool,
        validate_only: bool,
        ids: &mut dyn TopicIdSource,
    ) -> Result<Plan, ControllerError> {
        validate_topic_name(name)?;
        if name == CLUSTER_METADATA_TOPIC {
            return Err(ControllerError::InvalidRequest(format!(
                "Topic name {name} is reserved for the metadata log"
            )));
        }
        let is_internal_name = INTERNAL_TOPICS.contains(&name);
        if internal && !is_internal_name {
            return Err(ControllerError::InvalidRequest(format!(
                "Topic {name} is not an internal topic"
            )));
        }
        if is_internal_name && !internal {
            return Err(ControllerError::InvalidRequest(format!(
                "Topic {name} is internal; the node creates it on first use"
            )));
        }
        if self.image.topics.contains_key(name) {
            return Err(ControllerError::TopicAlreadyExists(format!(
                "Topic '{name}' already exists."
            )));
        }
        let key = collision_key(name);
        if let Some(other) = self.image.topics.keys().find(|t| collision_key(t) == key) {
            return Err(ControllerError::InvalidTopic(format!(
                "Topic '{name}' collides with existing topic: {other}"
            )));
        }

        let placed = match assignments {
            Some(list) => {
                if partitions != -1 || replication_factor != -1 {
                    return Err(ControllerError::InvalidRequest(
                        "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.".into(),
                    ));
                }
                if list.is_empty() {
                    return Err(ControllerError::InvalidReplicaAssignment(
                        "The manual partition assignment is empty.".into(),
                    ));
                }
                if list.len() > PARTITIONS_PER_COMMAND_MAX as usize {
                    return Err(too_many_partitions());
                }
                let mut sorted: Vec<&PartitionAssignment> = list.iter().collect();
                sorted.sort_by_key(|a| a.partition);
                let mut out = Vec::with_capacity(sorted.len());
                for (i, a) in sorted.iter().enumerate() {
                    if a.partition.0 != i as i32 {
                        return Err(ControllerError::InvalidReplicaAssignment(
                            "Partitions should be a consecutive 0-based integer sequence".into(),
                        ));
                    }
                    self.check_replicas(&a.replicas, a.partition.0)?;
                    if a.replicas.len() != sorted[0].replicas.len() {
                        return Err(ControllerError::InvalidReplicaAssignment(
                            "All partitions must have the same number of replicas.".into(),
                        ));
                    }
                    out.push(self.assigned_partition(a.partition.0, a.replicas.clone())?);
                }
                out
            }
            None => {
                let n = match partitions {
                    -1 => self.image.defaults.num_partitions,
                    n if n < 1 => {
                        return Err(ControllerError::InvalidPartitions(
                            "Number of partitions was set to an invalid non-positive value.".into(),
                        ));
                    }
                    n => n,
                };
                if n > PARTITIONS_PER_COMMAND_MAX {
                    return Err(too_many_partitions());
                }
                let rf = match replication_factor {
                    -1 => self.image.defaults.default_replication_factor,
                    rf => rf,
                };
                let rf = self.check_replication_factor(i32::from(rf))?;
                self.place(0, n, rf)
            }
        };
        let overrides = config::validate_overrides(configs)?;
        TopicConfig::resolve(&self.image.defaults, &overrides)?;
        let id = if validate_only { TopicId::nil() } else { self.new_topic_id(ids) };
        let topic =
            TopicMeta { name: name.to_string(), id, internal, partitions: placed, overrides };
        let configs = config::describe(&self.image.defaults, &topic.overrides);
        let records = if validate_only {
            Vec::new()
        } else {
            vec![MetadataRecord::TopicCreated { topic: topic.clone() }]
        };
        Ok(Plan { records, result: CommandResult::TopicCreated { topic, configs } })
    }

    /// A fresh id: never nil, never Kafka's reserved metadata topic id
    /// (…0001), never one in use.
    fn new_topic_id(&self, ids: &mut dyn TopicIdSource) -> TopicId {
        const RESERVED: TopicId = TopicId::from_u128(1);
        // A source that keeps returning used ids is broken; give up loudly.
        for _ in 0..1000 {
            let id = ids.next_topic_id();
            if id != TopicId::nil() && id != RESERVED && self.image.topic_by_id(id).is_none() {
                return id;
            }
        }
        panic!("topic id source returned 1000 unusable ids in a row");
    }

    fn resolve_topic(&self, topic: &TopicRef) -> Result<&TopicMeta, ControllerError> {
        match topic {
            TopicRef::Name(name) => self.image.topics.get(name).ok_or_else(|| unknown_topic(name)),
            TopicRef::Id(id) => {
                self.image.topic_by_id(*id).ok_or(ControllerError::UnknownTopicId(*id))
            }
        }
    }

    fn delete_topic(&self, topic: &TopicRef) -> Result<Plan, ControllerError> {
        let t = self.resolve_topic(topic)?;
        if t.internal {
            return Err(ControllerError::InvalidRequest(format!(
                "Internal topic {} cannot be deleted",
                t.name
            )));
        }
        Ok(Plan {
            records: vec![MetadataRecord::TopicDeleted { name: t.name.clone(), id: t.id }],
            result: CommandResult::TopicDeleted { name: t.name.clone(), id: t.id },
        })
    }

    fn create_partitions(
        &self,
        topic: &str,
        new_total: i32,
        assignments: Option<&[Vec<NodeId>]>,
        validate_only: bool,
    ) -> Result<Plan, ControllerError> {
        let t = self.image.topics.get(topic).ok_or_else(|| unknown_topic(topic))?;
        let current = t.partitions.len() as i32;
        if new_total < current {
            return Err(ControllerError::InvalidPartitions(format!(
                "Topic currently has {current} partitions, which is higher than the requested {new_total}."
            )));
        }
        if new_total == current {
            return Err(ControllerError::InvalidPartitions(format!(
                "Topic already has {current} partitions."
            )));
        }
        let added = new_total - current;
        if added > PARTITIONS_PER_COMMAND_MAX {
            return Err(too_many_partitions());
        }
        // The replication factor a reassignment is moving to, if one is.
        let rf = t.partitions.first().map_or(1, |p| p.target_replicas().len());
        let partitions = match assignments {
            Some(list) => {
                if list.len() != added as usize {
                    return Err(ControllerError::InvalidReplicaAssignment(format!(
                        "Attempted to add {added} additional partition(s), but only {} assignment(s) were specified.",
                        list.len()
                    )));
                }
                let mut out = Vec::with_capacity(list.len());
                for (i, replicas) in list.iter().enumerate() {
                    let p = current + i as i32;
                    self.check_replicas(replicas, p)?;
                    if replicas.len() != rf {
                        return Err(ControllerError::InvalidReplicaAssignment(format!(
                            "The manual partition assignment of partition {p} has {} replicas; the topic's replication factor is {rf}.",
                            replicas.len()
                        )));
                    }
                    out.push(self.assigned_partition(p, replicas.clone())?);
                }
                out
            }
            None => {
                let rf = self.check_replication_factor(rf as i32)?;
                self.place(current, added, rf)
            }
        };
        let records = if validate_only {
            Vec::new()
        } else {
            vec![MetadataRecord::PartitionsCreated {
                topic: topic.to_string(),
                partitions: partitions.clone(),
            }]
        };
        Ok(Plan {
            records,
            result: CommandResult::PartitionsCreated { topic: topic.to_string(), partitions },
        })
    }

    fn alter_configs(
        &self,
        topic: &str,
        ops: &[ConfigOp],
        replace_all: bool,
        validate_only: bool,
    ) -> Result<Plan, ControllerError> {
        let t = self.image.topics.get(topic).ok_or_else(|| unknown_topic(topic))?;
        let overrides = config::apply_ops(&self.image.defaults, &t.overrides, ops, replace_all)?;
        let records = if validate_only || overrides == t.overrides {
            Vec::new()
        } else {
            vec![MetadataRecord::ConfigChanged {
                topic: topic.to_string(),
                overrides: overrides.clone(),
            }]
        };
        Ok(Plan {
            records,
            result: CommandResult::ConfigsAltered { topic: topic.to_string(), overrides },
        })
    }

    fn alter_node_configs(
        &self,
        node: Option<NodeId>,
        ops: &[ConfigOp],
        replace_all: bool,
        validate_only: bool,
    ) -> Result<Plan, ControllerError> {
        if let Some(n) = node {
            if n.0 < 0 {
                return Err(ControllerError::InvalidRequest("Invalid negative broker ID.".into()));
            }
            if !self.image.nodes.contains_key(&n) {
                return Err(ControllerError::InvalidRequest(format!(
                    "Node {n} is not registered with the controller."
                )));
            }
        }
        let current = self
            .image
            .node_configs
            .get(&config::node_config_key(node))
            .cloned()
            .unwrap_or_default();
        let overrides = config::apply_node_ops(&current, ops, replace_all)?;
        let records = if validate_only || overrides == current {
            Vec::new()
        } else {
            vec![MetadataRecord::NodeConfigChanged { node, overrides: overrides.clone() }]
        };
        Ok(Plan { records, result: CommandResult::NodeConfigsAltered { node, overrides } })
    }

    fn allocate_producer_ids(&self, node: NodeId, count: u32) -> Result<Plan, ControllerError> {
        if !self.image.nodes.contains_key(&node) {
            return Err(ControllerError::NodeNotRegistered(node));
        }
        if count == 0 || count > PRODUCER_ID_BLOCK_MAX {
            return Err(ControllerError::InvalidRequest(format!(
                "Producer id block size must be 1..={PRODUCER_ID_BLOCK_MAX}, not {count}"
            )));
        }
        let first = self.image.next_producer_id;
        if first.checked_add(i64::from(count)).is_none() {
            return Err(ControllerError::InvalidRequest("Producer id space exhausted".into()));
        }
        Ok(Plan {
            records: vec![MetadataRecord::ProducerIdsAllocated { node, first, count }],
            result: CommandResult::ProducerIds { first: ProducerId(first), count },
        })
    }
}

/// A controller-placed partition: every replica eligible, so all in sync,
/// the first leads.
fn new_partition(partition: i32, replicas: Vec<NodeId>) -> PartitionMeta {
    PartitionMeta {
        partition: PartitionId(partition),
        leader: replicas[0],
        leader_epoch: LeaderEpoch(0),
        isr: replicas.clone(),
        replicas,
        partition_epoch: 0,
        adding_replicas: Vec::new(),
        removing_replicas: Vec::new(),
    }
}

fn unknown_topic(name: &str) -> ControllerError {
    ControllerError::UnknownTopic(format!("This server does not host this topic: {name}"))
}

fn too_many_partitions() -> ControllerError {
    ControllerError::InvalidPartitions(format!(
        "Excessively large number of partitions per request (more than {PARTITIONS_PER_COMMAND_MAX})."
    ))
}

/// A Kafka-style cluster id from 16 random bytes: unpadded base64url, 22 characters.
pub fn cluster_id_from_bytes(bytes: [u8; 16]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(22);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(ALPHABET[((acc >> bits) & 63) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (6 - bits)) & 63) as usize] as char);
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::ConfigOpType;

    /// A deterministic id source: 0x…0100, 0x…0101, ...
    pub(crate) fn seq_ids() -> impl FnMut() -> TopicId {
        let mut n = 0x100u128;
        move || {
            n += 1;
            TopicId::from_u128(n)
        }
    }

    pub(crate) fn node(id: i32) -> NodeInfo {
        NodeInfo {
            id: NodeId(id),
            host: "127.0.0.1".into(),
            port: 9092 + id as u16,
            ..Default::default()
        }
    }

    /// Handles and applies; returns the result.
    pub(crate) fn run(
        sm: &mut StateMachine,
        ids: &mut dyn TopicIdSource,
        cmd: Command,
    ) -> Result<CommandResult, ControllerError> {
        let plan = sm.handle(&cmd, ids)?;
        for r in &plan.records {
            sm.apply(r);
        }
        Ok(plan.result)
    }

    pub(crate) fn cluster(nodes: i32) -> (StateMachine, impl FnMut() -> TopicId) {
        let mut sm = StateMachine::new();
        let recs = sm.bootstrap(|| "cluster-a".into(), &ConfigDefaults::default()).unwrap();
        for r in &recs {
            sm.apply(r);
        }
        let mut ids = seq_ids();
        for i in 1..=nodes {
            run(&mut sm, &mut ids, Command::RegisterNode(node(i))).unwrap();
        }
        (sm, ids)
    }

    pub(crate) fn code(r: Result<CommandResult, ControllerError>) -> i16 {
        r.unwrap_err().kafka_code()
    }

    #[test]
    fn topic_names() {
        let (mut sm, mut ids) = cluster(1);
        for bad in ["", ".", "..", "a b", "ä", "x/y", &"a".repeat(250)] {
            let r = run(&mut sm, &mut ids, Command::create_topic(bad, 1, 1));
            assert_eq!(code(r), 17, "{bad:?}");
        }
        run(&mut sm, &mut ids, Command::create_topic("a".repeat(249), 1, 1)).unwrap();
        run(&mut sm, &mut ids, Command::create_topic("metrics.in", 1, 1)).unwrap();
        let e = run(&mut sm, &mut ids, Command::create_topic("metrics_in", 1, 1)).unwrap_err();
        assert_eq!(e.kafka_code(), 17);
        assert_eq!(e.message(), "Topic 'metrics_in' collides with existing topic: metrics.in");
        let e = run(&mut sm, &mut ids, Command::create_topic("metrics.in", 1, 1)).unwrap_err();
        assert_eq!(e.kafka_code(), 36);
        assert_eq!(e.message(), "Topic 'metrics.in' already exists.");
        assert_eq!(
            validate_topic_name(".").unwrap_err().message(),
            "Topic name cannot be \".\" or \"..\""
        );
    }

    #[test]
    fn partitions_and_replication_factor() {
        let (mut sm, mut ids) = cluster(2);
        assert_eq!(code(run(&mut sm, &mut ids, Command::create_topic("t", 0, 1))), 37);
        assert_eq!(code(run(&mut sm, &mut ids, Command::create_topic("t", -2, 1))), 37);
        assert_eq!(code(run(&mut sm, &mut ids, Command::create_topic("t", 1, 3))), 38);
        assert_eq!(code(run(&mut sm, &mut ids, Command::create_topic("t", 1, 0))), 38);
        assert_eq!(code(run(&mut sm, &mut ids, Command::create_topic("t", 10_001, 1))), 37);
        let CommandResult::TopicCreated { topic, configs } =
            run(&mut sm, &mut ids, Command::create_topic("t", 3, 2)).unwrap()
        else {
            panic!()
        };
        assert_eq!(topic.partitions.len(), 3);
        assert_eq!(configs.len(), config::TOPIC_CONFIGS.len());
        for p in &topic.partitions {
            assert_eq!(p.replicas.len(), 2);
            assert_ne!(p.replicas[0], p.replicas[1]);
            assert_eq!(p.leader, p.replicas[0]);
            assert_eq!(p.isr, p.replicas);
        }
        // Leaders alternate over the two nodes.
        assert_ne!(topic.partitions[0].leader, topic.partitions[1].leader);
        // Defaults (-1, -1).
        let CommandResult::TopicCreated { topic, .. } =
            run(&mut sm, &mut ids, Command::create_topic("d", -1, -1)).unwrap()
        else {
            panic!()
        };
        assert_eq!(topic.partitions.len(), 1);
        assert_eq!(topic.partitions[0].replicas.len(), 1);

        // CreatePartitions only grows.
        let grow = |n: i32, validate_only: bool| Command::CreatePartitions {
            topic: "t".into(),
            new_total: n,
            assignments: None,
            validate_only,
        };
        let e = run(&mut sm, &mut ids, grow(2, false)).unwrap_err();
        assert_eq!(e.kafka_code(), 37);
        assert_eq!(
            e.message(),
            "Topic currently has 3 partitions, which is higher than the requested 2."
        );
        assert_eq!(code(run(&mut sm, &mut ids, grow(3, false))), 37);
        run(&mut sm, &mut ids, grow(5, true)).unwrap();
        assert_eq!(sm.image().topics["t"].partitions.len(), 3);
        let CommandResult::PartitionsCreated { partitions, .. } =
            run(&mut sm, &mut ids, grow(5, false)).unwrap()
        else {
            panic!()
        };
        assert_eq!(partitions.iter().map(|p| p.partition.0).collect::<Vec<_>>(), vec![3, 4]);
        assert_eq!(sm.image().topics["t"].partitions.len(), 5);
        let unknown = Command::CreatePartitions {
            topic: "nope".into(),
            new_total: 5,
            assignments: None,
            validate_only: false,
        };
        assert_eq!(code(run(&mut sm, &mut ids, unknown)), 3);
        let bad_assign = Command::CreatePartitions {
            topic: "t".into(),
            new_total: 6,
            assignments: Some(vec![vec![NodeId(1), NodeId(9)]]),
            validate_only: false,
        };
        assert_eq!(code(run(&mut sm, &mut ids, bad_assign)), 39);
    }

    #[test]
    fn explicit_assignments() {
        let (mut sm, mut ids) = cluster(2);
        let with = |assignments: Vec<(i32, Vec<i32>)>, p: i32, rf: i16| Command::CreateTopic {
            name: "x".into(),
            partitions: p,
            replication_factor: rf,
            assignments: Some(
                assignments
                    .into_iter()
                    .map(|(p, r)| PartitionAssignment {
                        partition: PartitionId(p),
                        replicas: r.into_iter().map(NodeId).collect(),
                    })
                    .collect(),
            ),
            configs: BTreeMap::new(),
            internal: false,
            validate_only: false,
        };
        assert_eq!(code(run(&mut sm, &mut ids, with(vec![(0, vec![1])], 1, -1))), 42);
        assert_eq!(code(run(&mut sm, &mut ids, with(vec![(1, vec![1])], -1, -1))), 39);
        assert_eq!(code(run(&mut sm, &mut ids, with(vec![(0, vec![1, 1])], -1, -1))), 39);
        assert_eq!(code(run(&mut sm, &mut ids, with(vec![(0, vec![3])], -1, -1))), 39);
        assert_eq!(
            code(run(&mut sm, &mut ids, with(vec![(0, vec![1]), (1, vec![1, 2])], -1, -1))),
            39
        );
        run(&mut sm, &mut ids, with(vec![(1, vec![1, 2]), (0, vec![2, 1])], -1, -1)).unwrap();
        let t = &sm.image().topics["x"];
        assert_eq!(t.partitions[0].leader, NodeId(2));
        assert_eq!(t.partitions[1].leader, NodeId(1));
    }

    #[test]
    fn validate_only_changes_nothing() {
        let (sm, mut ids) = cluster(1);
        let before = sm.image().clone();
        let cmd = Command::CreateTopic {
            name: "v".into(),
            partitions: 2,
            replication_factor: 1,
            assignments: None,
            configs: [("retention.ms".to_string(), "1000".to_string())].into(),
            internal: false,
            validate_only: true,
        };
        let plan = sm.handle(&cmd, &mut ids).unwrap();
        assert!(plan.records.is_empty());
        let CommandResult::TopicCreated { topic, configs } = plan.result else { panic!() };
        assert!(topic.id.is_nil());
        assert_eq!(
            configs.iter().find(|c| c.name == "retention.ms").unwrap().value.as_deref(),
            Some("1000")
        );
        assert_eq!(sm.image(), &before);
    }

    #[test]
    fn configs_on_create_and_alter() {
        let (mut sm, mut ids) = cluster(1);
        let with = |k: &str, v: &str| Command::CreateTopic {
            name: "c".into(),
            partitions: 1,
            replication_factor: 1,
            assignments: None,
            configs: [(k.to_string(), v.to_string())].into(),
            internal: false,
            validate_only: false,
        };
        let e = run(&mut sm, &mut ids, with("cleanup.policy", "compact")).unwrap_err();
        assert_eq!(e.kafka_code(), 40);
        assert_eq!(e.message(), "cleanup.policy=compact is not supported yet by Weir");
        let e = run(&mut sm, &mut ids, with("retention.mss", "1")).unwrap_err();
        assert_eq!(
            (e.kafka_code(), e.message().as_str()),
            (40, "Unknown topic config name: retention.mss")
        );
        run(&mut sm, &mut ids, with("retention.ms", "1000")).unwrap();
        assert_eq!(sm.image().topic_config("c").unwrap().retention_ms, 1000);

        let alter = |ops: Vec<ConfigOp>, replace_all: bool| Command::AlterConfigs {
            topic: "c".into(),
            ops,
            replace_all,
            validate_only: false,
        };
        run(&mut sm, &mut ids, alter(vec![ConfigOp::set("segment.ms", "100")], false)).unwrap();
        assert_eq!(sm.image().topics["c"].overrides.len(), 2);
        let version = sm.image().version;
        // A no-op change writes no record.
        run(&mut sm, &mut ids, alter(vec![ConfigOp::set("segment.ms", "100")], false)).unwrap();
        assert_eq!(sm.image().version, version);
        run(&mut sm, &mut ids, alter(vec![ConfigOp::delete("retention.ms")], false)).unwrap();
        assert_eq!(
            sm.image().topics["c"].overrides,
            [("segment.ms".to_string(), "100".to_string())].into()
        );
        let append = ConfigOp {
            key: "cleanup.policy".into(),
            op: ConfigOpType::Append,
            value: Some("compact".into()),
        };
        assert_eq!(code(run(&mut sm, &mut ids, alter(vec![append], false))), 40);
        run(&mut sm, &mut ids, alter(vec![ConfigOp::set("retention.bytes", "5")], true)).unwrap();
        assert_eq!(
            sm.image().topics["c"].overrides,
            [("retention.bytes".to_string(), "5".to_string())].into()
        );
        let unknown = Command::AlterConfigs {
            topic: "zz".into(),
            ops: vec![],
            replace_all: false,
            validate_only: false,
        };
        assert_eq!(code(run(&mut sm, &mut ids, unknown)), 3);
    }

    #[test]
    fn internal_topics_and_delete() {
        let (mut sm, mut ids) = cluster(1);
        let user = Command::create_topic(CONSUMER_OFFSETS_TOPIC, 50, 1);
        assert_eq!(code(run(&mut sm, &mut ids, user)), 42);
        run(&mut sm, &mut ids, Command::create_consumer_offsets(1)).unwrap();
        let t = &sm.image().topics[CONSUMER_OFFSETS_TOPIC];
        assert!(t.internal);
        assert_eq!(t.partitions.len(), 50);
        let del = Command::DeleteTopic { topic: TopicRef::Name(CONSUMER_OFFSETS_TOPIC.into()) };
        assert_eq!(code(run(&mut sm, &mut ids, del)), 42);

        run(&mut sm, &mut ids, Command::create_topic("gone", 1, 1)).unwrap();
        let id = sm.image().topics["gone"].id;
        run(&mut sm, &mut ids, Command::DeleteTopic { topic: TopicRef::Id(id) }).unwrap();
        assert!(sm.image().topic("gone").is_none());
        let again = Command::DeleteTopic { topic: TopicRef::Id(id) };
        assert_eq!(code(run(&mut sm, &mut ids, again)), 100);
        let by_name = Command::DeleteTopic { topic: TopicRef::Name("gone".into()) };
        assert_eq!(code(run(&mut sm, &mut ids, by_name)), 3);
        // Recreated topics get a new id.
        run(&mut sm, &mut ids, Command::create_topic("gone", 1, 1)).unwrap();
        assert_ne!(sm.image().topics["gone"].id, id);
    }

    #[test]
    fn producer_ids_and_nodes() {
        let (mut sm, mut ids) = cluster(1);
        let alloc = |n: i32, count: u32| Command::AllocateProducerIds { node: NodeId(n), count };
        assert_eq!(code(run(&mut sm, &mut ids, alloc(7, 10))), 102);
        assert_eq!(code(run(&mut sm, &mut ids, alloc(1, 0))), 42);
        let a = run(&mut sm, &mut ids, alloc(1, 1000)).unwrap();
        let b = run(&mut sm, &mut ids, alloc(1, 1000)).unwrap();
        assert_eq!(a, CommandResult::ProducerIds { first: ProducerId(0), count: 1000 });
        assert_eq!(b, CommandResult::ProducerIds { first: ProducerId(1000), count: 1000 });

        let version = sm.image().version;
        run(&mut sm, &mut ids, Command::RegisterNode(node(1))).unwrap();
        assert_eq!(sm.image().version, version, "re-registering unchanged writes nothing");
        let moved = NodeInfo { port: 1, ..node(1) };
        run(&mut sm, &mut ids, Command::RegisterNode(moved.clone())).unwrap();
        assert_eq!(sm.image().nodes[&NodeId(1)], moved);
        let bad = NodeInfo { port: 0, ..node(2) };
        assert_eq!(code(run(&mut sm, &mut ids, Command::RegisterNode(bad))), 42);
    }

    #[test]
    fn replay_and_deltas_rebuild_identical_image() {
        let mut sm = StateMachine::new();
        let mut ids = seq_ids();
        let mut log: Vec<String> = Vec::new();
        let mut mirror = MetadataImage::default();
        let mut commit = |sm: &mut StateMachine, records: Vec<MetadataRecord>| {
            for r in records {
                log.push(serde_json::to_string(&r).unwrap());
                mirror.apply_delta(&sm.apply(&r));
            }
        };
        let boot = sm.bootstrap(|| "c1".into(), &ConfigDefaults::default()).unwrap();
        commit(&mut sm, boot);
        let mut cmds: Vec<Command> = (1..=3).map(|i| Command::RegisterNode(node(i))).collect();
        cmds.extend([
            Command::create_topic("a", 4, 3),
            Command::create_topic("b", 2, 1),
            Command::AllocateProducerIds { node: NodeId(2), count: 5 },
            Command::AlterConfigs {
                topic: "a".into(),
                ops: vec![ConfigOp::set("retention.ms", "-1")],
                replace_all: false,
                validate_only: false,
            },
            Command::CreatePartitions {
                topic: "b".into(),
                new_total: 4,
                assignments: None,
                validate_only: false,
            },
            Command::AlterConfigs {
                topic: "b".into(),
                ops: vec![
                    ConfigOp::set("leader.replication.throttled.replicas", "0:1,1:2"),
                    ConfigOp::set("follower.replication.throttled.replicas", "*"),
                ],
                replace_all: false,
                validate_only: false,
            },
            Command::AlterNodeConfigs {
                node: None,
                ops: vec![ConfigOp::set("leader.replication.throttled.rate", "500")],
                replace_all: false,
                validate_only: false,
            },
            Command::AlterNodeConfigs {
                node: Some(NodeId(2)),
                ops: vec![
                    ConfigOp::set("leader.replication.throttled.rate", "100"),
                    ConfigOp::set("follower.replication.throttled.rate", "200"),
                ],
                replace_all: false,
                validate_only: false,
            },
            Command::AlterNodeConfigs {
                node: Some(NodeId(2)),
                ops: vec![ConfigOp::delete("leader.replication.throttled.rate")],
                replace_all: false,
                validate_only: false,
            },
            Command::DeleteTopic { topic: TopicRef::Name("a".into()) },
        ]);
        for cmd in cmds {
            let plan = sm.handle(&cmd, &mut ids).unwrap();
            commit(&mut sm, plan.records);
        }
        let mut replayed = StateMachine::new();
        for json in &log {
            replayed.apply(&serde_json::from_str(json).unwrap());
        }
        assert_eq!(replayed.image(), sm.image());
        assert_eq!(&mirror, sm.image());
        assert_eq!(sm.image().version, log.len() as u64);
        assert_eq!(sm.image().next_producer_id, 5);
        assert_eq!(sm.image().cluster_id, "c1");
        let b = sm.image().topic_config("b").unwrap();
        assert!(b.leader_replication_throttled_replicas.contains(1, NodeId(2)));
        assert_eq!(b.follower_replication_throttled_replicas, config::ThrottledReplicas::All);
        let t = sm.image().replication_throttle(NodeId(2));
        assert_eq!((t.leader_bytes_per_sec, t.follower_bytes_per_sec), (Some(500), Some(200)));
        assert_eq!(replayed.image().replication_throttle(NodeId(2)), t);
    }

    #[test]
    fn node_configs_alter_validate_and_resolve() {
        use crate::config::{FOLLOWER_THROTTLED_RATE as FOLLOWER, LEADER_THROTTLED_RATE as LEADER};
        let (mut sm, mut ids) = cluster(3);
        let alter = |node: Option<i32>, ops: Vec<ConfigOp>| Command::AlterNodeConfigs {
            node: node.map(NodeId),
            ops,
            replace_all: false,
            validate_only: false,
        };
        let throttle = |sm: &StateMachine, n: i32| {
            let t = sm.image().replication_throttle(NodeId(n));
            (t.leader_bytes_per_sec, t.follower_bytes_per_sec)
        };
        assert_eq!(throttle(&sm, 1), (None, None));

        // Unregistered or negative node ids, unknown keys, bad values.
        let e = run(&mut sm, &mut ids, alter(Some(9), vec![ConfigOp::set(LEADER, "1")]));
        assert_eq!(code(e), 42);
        let e = run(&mut sm, &mut ids, alter(Some(-2), vec![ConfigOp::set(LEADER, "1")]));
        assert_eq!(code(e), 42);
        let e = run(&mut sm, &mut ids, alter(Some(1), vec![ConfigOp::set("num.io.threads", "8")]))
            .unwrap_err();
        assert_eq!(e.kafka_code(), 40);
        assert!(e.message().contains(LEADER) && e.message().contains(FOLLOWER), "{e}");
        assert_eq!(
            code(run(&mut sm, &mut ids, alter(None, vec![ConfigOp::set(LEADER, "-5")]))),
            40
        );

        // validate_only records nothing but answers the result.
        let version = sm.image().version;
        let plan = sm
            .handle(
                &Command::AlterNodeConfigs {
                    node: Some(NodeId(1)),
                    ops: vec![ConfigOp::set(LEADER, "10")],
                    replace_all: false,
                    validate_only: true,
                },
                &mut ids,
            )
            .unwrap();
        assert!(plan.records.is_empty());
        assert_eq!(
            plan.result,
            CommandResult::NodeConfigsAltered {
                node: Some(NodeId(1)),
                overrides: [(LEADER.to_string(), "10".to_string())].into(),
            }
        );
        assert_eq!(sm.image().version, version);

        // The cluster default applies to every node; a node's own value wins.
        let ops = vec![ConfigOp::set(LEADER, "1000"), ConfigOp::set(FOLLOWER, "2000")];
        run(&mut sm, &mut ids, alter(None, ops)).unwrap();
        run(&mut sm, &mut ids, alter(Some(2), vec![ConfigOp::set(FOLLOWER, "0")])).unwrap();
        assert_eq!(throttle(&sm, 1), (Some(1000), Some(2000)));
        assert_eq!(throttle(&sm, 2), (Some(1000), Some(0)));
        assert_eq!(sm.image().node_configs.keys().collect::<Vec<_>>(), vec!["", "2"]);
        let rows = sm.image().describe_node_configs(Some(NodeId(2)));
        let sources: Vec<(String, i8)> =
            rows.iter().map(|r| (r.name.clone(), r.source.kafka_code())).collect();
        assert_eq!(sources, vec![(FOLLOWER.into(), 2), (LEADER.into(), 3)]);
        assert_eq!(sm.image().describe_node_configs(None).len(), 2);

        // A no-op writes nothing; deleting the last key drops the node's entry.
        let version = sm.image().version;
        run(&mut sm, &mut ids, alter(Some(2), vec![ConfigOp::set(FOLLOWER, "0")])).unwrap();
        run(&mut sm, &mut ids, alter(Some(3), vec![ConfigOp::delete(FOLLOWER)])).unwrap();
        assert_eq!(sm.image().version, version);
        run(&mut sm, &mut ids, alter(Some(2), vec![ConfigOp::delete(FOLLOWER)])).unwrap();
        assert!(!sm.image().node_configs.contains_key("2"));
        assert_eq!(throttle(&sm, 2), (Some(1000), Some(2000)));
        let replace = Command::AlterNodeConfigs {
            node: None,
            ops: vec![ConfigOp::set(FOLLOWER, "1")],
            replace_all: true,
            validate_only: false,
        };
        run(&mut sm, &mut ids, replace).unwrap();
        assert_eq!(throttle(&sm, 3), (None, Some(1)));
    }

    #[test]
    fn images_and_records_without_node_configs_still_load() {
        let (sm, _) = cluster(1);
        let mut json = serde_json::to_value(sm.image()).unwrap();
        json.as_object_mut().unwrap().remove("node_configs").expect("field serialized");
        let image: MetadataImage = serde_json::from_value(json).unwrap();
        assert_eq!(&image, sm.image());
        let record: MetadataRecord =
            serde_json::from_str(r#"{"type":"NodeConfigChanged","node":null,"overrides":{}}"#)
                .unwrap();
        assert_eq!(
            record,
            MetadataRecord::NodeConfigChanged { node: None, overrides: BTreeMap::new() }
        );
    }

    #[test]
    fn cluster_id_shape() {
        let id = cluster_id_from_bytes([0xff; 16]);
        assert_eq!(id.len(), 22);
        assert_eq!(cluster_id_from_bytes([0; 16]), "AAAAAAAAAAAAAAAAAAAAAA");
    }
}
