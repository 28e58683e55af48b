//! Topic configuration: the keys Weir knows, their defaults and validation, and
//! what DescribeConfigs answers.
//!
//! One table, [`TOPIC_CONFIGS`], lists every topic config key a Kafka tool may
//! show. Keys Weir acts on are *settable*; the rest are *read-only*: they are
//! described with the value Weir actually behaves by, and setting them is
//! refused unless the value equals that fixed value (tools that read the full
//! config set and send it back unchanged keep working).
//!
//! A topic's effective value of a key is, first found: the topic's override,
//! the node-level default ([`ConfigDefaults`], e.g. shorter retention for
//! `weir dev`), the static default in the table.
//!
//! Overrides are stored in canonical form (numbers without padding, lists
//! trimmed), so equal configs compare equal in the metadata image.
//!
//! Node ("broker") configs are a second, much smaller table,
//! [`NODE_CONFIGS`]: the dynamic configs a node acts on, set per node or as
//! the cluster default with AlterConfigs / IncrementalAlterConfigs on a
//! BROKER resource and kept in [`crate::MetadataImage::node_configs`]. Today
//! these are the replication throttle rates; together with the topic keys
//! `leader.replication.throttled.replicas` and
//! `follower.replication.throttled.replicas` ([`ThrottledReplicas`]) they are
//! Kafka's replication throttle, as `kafka-reassign-partitions --throttle`
//! sets it. A node's static settings (its config file) are not here.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use weir_proto::ids::NodeId;

use crate::error::ControllerError;

/// A config value's type, as Kafka's DescribeConfigs v3+ reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigType {
    Boolean,
    String,
    Int,
    Short,
    Long,
    Double,
    List,
    Class,
    Password,
}

impl ConfigType {
    /// The `config_type` code in DescribeConfigs responses.
    pub fn kafka_code(self) -> i8 {
        match self {
            ConfigType::Boolean => 1,
            ConfigType::String => 2,
            ConfigType::Int => 3,
            ConfigType::Short => 4,
            ConfigType::Long => 5,
            ConfigType::Double => 6,
            ConfigType::List => 7,
            ConfigType::Class => 8,
            ConfigType::Password => 9,
        }
    }
}

/// Where a described value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigSource {
    /// The static default in [`TOPIC_CONFIGS`] or [`NODE_CONFIGS`].
    Default,
    /// A node-level default from [`ConfigDefaults`].
    NodeDefault,
    /// The topic's own override.
    TopicOverride,
    /// A dynamic node config set for this node.
    DynamicNode,
    /// A dynamic node config set as the cluster default.
    DynamicDefaultNode,
}

impl ConfigSource {
    /// The `config_source` code in DescribeConfigs v1+ responses
    /// (DEFAULT_CONFIG, STATIC_BROKER_CONFIG, DYNAMIC_TOPIC_CONFIG,
    /// DYNAMIC_BROKER_CONFIG, DYNAMIC_DEFAULT_BROKER_CONFIG).
    pub fn kafka_code(self) -> i8 {
        match self {
            ConfigSource::Default => 5,
            ConfigSource::NodeDefault => 4,
            ConfigSource::TopicOverride => 1,
            ConfigSource::DynamicNode => 2,
            ConfigSource::DynamicDefaultNode => 3,
        }
    }
}

/// How a key's values are checked.
#[derive(Clone, Copy, Debug)]
enum Rule {
    /// An integer (Int or Long) in `min..=max`.
    Range { min: i64, max: i64 },
    /// One of these exact strings.
    OneOf(&'static [&'static str]),
    /// `cleanup.policy`: a list of `delete` / `compact`; only `delete` works.
    CleanupPolicy,
    /// `*.replication.throttled.replicas`: empty, `*`, or `partition:node`
    /// items ([`ThrottledReplicas`]).
    ThrottledReplicas,
    /// Read-only: only the default value is accepted.
    Fixed,
}

/// One topic (or node) config key.
#[derive(Debug)]
pub struct ConfigDef {
    pub name: &'static str,
    pub config_type: ConfigType,
    /// The static default, in canonical form.
    pub default: &'static str,
    pub doc: &'static str,
    /// Weir does not act on this key; its value is fixed to `default`.
    pub read_only: bool,
    /// The node-level ("broker") config that supplies this key's default in
    /// Kafka, reported as a synonym by DescribeConfigs.
    pub broker_synonym: Option<&'static str>,
    rule: Rule,
}

const I32_MAX: i64 = i32::MAX as i64;
const LONG_MAX: &str = "9223372036854775807";

/// The smallest `segment.bytes` accepted: 1 MiB, the minimum Kafka 4.0 enforces
/// (KIP-1030). Segments are preallocated and written in aligned 4 KiB blocks
/// with O_DIRECT; tiny segments would mean a file roll (open, fallocate,
/// fsync of the folder) every few batches.
pub const SEGMENT_BYTES_MIN: i64 = 1024 * 1024;

macro_rules! def {
    ($name:literal, $ty:ident, $default:expr, $rule:expr, $syn:expr, $doc:literal) => {
        ConfigDef {
            name: $name,
            config_type: ConfigType::$ty,
            default: $default,
            doc: $doc,
            read_only: matches!($rule, Rule::Fixed),
            broker_synonym: $syn,
            rule: $rule,
        }
    };
}

/// Every topic config key, sorted by name.
pub static TOPIC_CONFIGS: &[ConfigDef] = &[
    def!(
        "cleanup.policy",
        List,
        "delete",
        Rule::CleanupPolicy,
        Some("log.cleanup.policy"),
        "What happens to old segments: \"delete\" removes them by retention.ms / retention.bytes. \"compact\" is not supported yet by Weir."
    ),
    def!(
        "compression.type",
        String,
        "producer",
        Rule::Fixed,
        Some("compression.type"),
        "Batches are stored exactly as the producer compressed them (\"producer\"); Weir never recompresses."
    ),
    def!(
        "delete.retention.ms",
        Long,
        "86400000",
        Rule::Fixed,
        Some("log.cleaner.delete.retention.ms"),
        "How long delete tombstones are kept in compacted topics. Unused: compaction is not supported yet."
    ),
    def!(
        "file.delete.delay.ms",
        Long,
        "60000",
        Rule::Fixed,
        Some("log.segment.delete.delay.ms"),
        "Delay before a segment removed by retention is deleted from the filesystem."
    ),
    def!(
        "flush.messages",
        Long,
        LONG_MAX,
        Rule::Fixed,
        Some("log.flush.interval.messages"),
        "Weir flushes by group commit after every write that needs durability; this count-based flush is not used."
    ),
    def!(
        "flush.ms",
        Long,
        LONG_MAX,
        Rule::Fixed,
        Some("log.flush.interval.ms"),
        "Weir flushes by group commit after every write that needs durability; this time-based flush is not used."
    ),
    def!(
        "follower.replication.throttled.replicas",
        List,
        "",
        Rule::ThrottledReplicas,
        None,
        "Replicas whose fetches from the leader are throttled by follower.replication.throttled.rate on the follower: \"partition:node\" items, or \"*\" for every replica of the topic. Set by reassignment tools during a move."
    ),
    def!(
        "index.interval.bytes",
        Int,
        "4096",
        Rule::Fixed,
        Some("log.index.interval.bytes"),
        "Bytes of batches between two entries of the sparse offset index."
    ),
    def!(
        "leader.replication.throttled.replicas",
        List,
        "",
        Rule::ThrottledReplicas,
        None,
        "Replicas whose answers to follower fetches are throttled by leader.replication.throttled.rate on the leader: \"partition:node\" items, or \"*\" for every replica of the topic. Set by reassignment tools during a move."
    ),
    def!(
        "local.retention.bytes",
        Long,
        "-2",
        Rule::Fixed,
        Some("log.local.retention.bytes"),
        "Local retention for tiered storage. Weir has no tiered storage; -2 means \"same as retention.bytes\"."
    ),
    def!(
        "local.retention.ms",
        Long,
        "-2",
        Rule::Fixed,
        Some("log.local.retention.ms"),
        "Local retention for tiered storage. Weir has no tiered storage; -2 means \"same as retention.ms\"."
    ),
    def!(
        "max.compaction.lag.ms",
        Long,
        LONG_MAX,
        Rule::Fixed,
        Some("log.cleaner.max.compaction.lag.ms"),
        "Longest time a record stays uncompacted. Unused: compaction is not supported yet."
    ),
    def!(
        "max.message.bytes",
        Int,
        "1048588",
        Rule::Range { min: 0, max: I32_MAX },
        Some("message.max.bytes"),
        "Largest record batch (after compression) the topic accepts; larger batches get MESSAGE_TOO_LARGE."
    ),
    def!(
        "message.timestamp.after.max.ms",
        Long,
        LONG_MAX,
        Rule::Fixed,
        Some("log.message.timestamp.after.max.ms"),
        "How far a CreateTime timestamp may lie in the future. Not enforced by Weir."
    ),
    def!(
        "message.timestamp.before.max.ms",
        Long,
        LONG_MAX,
        Rule::Fixed,
        Some("log.message.timestamp.before.max.ms"),
        "How far a CreateTime timestamp may lie in the past. Not enforced by Weir."
    ),
    def!(
        "message.timestamp.type",
        String,
        "CreateTime",
        Rule::OneOf(&["CreateTime", "LogAppendTime"]),
        Some("log.message.timestamp.type"),
        "CreateTime keeps the producer's timestamps; LogAppendTime replaces them with the leader's clock at append."
    ),
    def!(
        "min.cleanable.dirty.ratio",
        Double,
        "0.5",
        Rule::Fixed,
        Some("log.cleaner.min.cleanable.ratio"),
        "Dirty ratio that triggers compaction. Unused: compaction is not supported yet."
    ),
    def!(
        "min.compaction.lag.ms",
        Long,
        "0",
        Rule::Fixed,
        Some("log.cleaner.min.compaction.lag.ms"),
        "Shortest time a record stays uncompacted. Unused: compaction is not supported yet."
    ),
    def!(
        "min.insync.replicas",
        Int,
        "1",
        Rule::Range { min: 1, max: I32_MAX },
        Some("min.insync.replicas"),
        "With acks=all, the fewest in-sync replicas that must have a write; fewer gives NOT_ENOUGH_REPLICAS."
    ),
    def!(
        "preallocate",
        Boolean,
        "true",
        Rule::Fixed,
        Some("log.preallocate"),
        "Weir always preallocates segment files in large steps, so appends never extend file metadata."
    ),
    def!(
        "remote.storage.enable",
        Boolean,
        "false",
        Rule::Fixed,
        None,
        "Tiered storage. Not supported by Weir."
    ),
    def!(
        "retention.bytes",
        Long,
        "-1",
        Rule::Range { min: -1, max: i64::MAX },
        Some("log.retention.bytes"),
        "Largest size per partition before the oldest segments are deleted; -1 means no size limit."
    ),
    def!(
        "retention.ms",
        Long,
        "604800000",
        Rule::Range { min: -1, max: i64::MAX },
        Some("log.retention.ms"),
        "How long a segment is kept after its newest record; -1 means forever."
    ),
    def!(
        "segment.bytes",
        Int,
        "1073741824",
        Rule::Range { min: SEGMENT_BYTES_MIN, max: I32_MAX },
        Some("log.segment.bytes"),
        "Size at which the active segment is rolled. At least 1048576 (1 MiB), as in Kafka 4."
    ),
    def!(
        "segment.index.bytes",
        Int,
        "10485760",
        Rule::Fixed,
        Some("log.index.size.max.bytes"),
        "Largest offset index file per segment."
    ),
    def!(
        "segment.jitter.ms",
        Long,
        "0",
        Rule::Fixed,
        Some("log.roll.jitter.ms"),
        "Random jitter subtracted from segment.ms. Not used by Weir."
    ),
    def!(
        "segment.ms",
        Long,
        "604800000",
        Rule::Range { min: 1, max: i64::MAX },
        Some("log.roll.ms"),
        "Age after which the active segment is rolled even if not full, so retention can delete it."
    ),
    def!(
        "unclean.leader.election.enable",
        Boolean,
        "false",
        Rule::OneOf(&["false", "true"]),
        Some("unclean.leader.election.enable"),
        "Whether a replica outside the ISR may become leader when no ISR member is live (losing the records it lacks)."
    ),
];

/// The definition of `name`, if Weir knows the key.
pub fn lookup(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.binary_search_by(|d| d.name.cmp(name)).ok().map(|i| &TOPIC_CONFIGS[i])
}

fn lookup_or_err(name: &str) -> Result<&'static ConfigDef, ControllerError> {
    lookup(name)
        .ok_or_else(|| ControllerError::InvalidConfig(format!("Unknown topic config name: {name}")))
}

fn invalid(def: &ConfigDef, value: &str, why: impl std::fmt::Display) -> ControllerError {
    ControllerError::InvalidConfig(format!(
        "Invalid value {value} for configuration {}: {why}",
        def.name
    ))
}

fn list_items(value: &str) -> Vec<&str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty()).collect()
}

/// Parses `value` by the key's type and returns its canonical form.
fn canonical_by_type(def: &ConfigDef, value: &str) -> Result<String, ControllerError> {
    let v = value.trim();
    match def.config_type {
        ConfigType::Int | ConfigType::Short | ConfigType::Long => {
            let n: i64 = v.parse().map_err(|_| invalid(def, value, "Not a number"))?;
            let (lo, hi) = match def.config_type {
                ConfigType::Int => (i32::MIN as i64, I32_MAX),
                ConfigType::Short => (i16::MIN as i64, i16::MAX as i64),
                _ => (i64::MIN, i64::MAX),
            };
            if n < lo || n > hi {
                return Err(invalid(def, value, "Value out of range"));
            }
            Ok(n.to_string())
        }
        ConfigType::Double => {
            let n: f64 = v.parse().map_err(|_| invalid(def, value, "Not a number"))?;
            if !n.is_finite() {
                return Err(invalid(def, value, "Not a finite number"));
            }
            Ok(n.to_string())
        }
        ConfigType::Boolean => match v.to_ascii_lowercase().as_str() {
            "true" => Ok("true".into()),
            "false" => Ok("false".into()),
            _ => Err(invalid(def, value, "Expected value to be either true or false")),
        },
        ConfigType::List => Ok(list_items(v).join(",")),
        ConfigType::String | ConfigType::Class | ConfigType::Password => Ok(v.to_string()),
    }
}

/// Checks `value` for `name` and returns the canonical form to store.
pub fn validate_value(name: &str, value: &str) -> Result<String, ControllerError> {
    check_value(lookup_or_err(name)?, value)
}

/// Checks `value` by `def`'s type and rule; returns its canonical form.
fn check_value(def: &ConfigDef, value: &str) -> Result<String, ControllerError> {
    let canonical = canonical_by_type(def, value)?;
    match def.rule {
        Rule::Range { min, max } => {
            let n: i64 = canonical.parse().expect("canonical integers parse");
            if n < min {
                return Err(invalid(def, value, format!("Value must be at least {min}")));
            }
            if n > max {
                return Err(invalid(def, value, format!("Value must be no more than {max}")));
            }
        }
        Rule::OneOf(allowed) => {
            if !allowed.contains(&canonical.as_str()) {
                return Err(invalid(
                    def,
                    value,
                    format!("String must be one of: {}", allowed.join(", ")),
                ));
            }
        }
        Rule::CleanupPolicy => {
            let items = list_items(&canonical);
            if let Some(bad) = items.iter().find(|i| **i != "delete" && **i != "compact") {
                return Err(invalid(
                    def,
                    value,
                    format!("\"{bad}\" is not one of: compact, delete"),
                ));
            }
            if items.contains(&"compact") {
                return Err(ControllerError::InvalidConfig(
                    "cleanup.policy=compact is not supported yet by Weir".into(),
                ));
            }
            if items.is_empty() {
                return Err(invalid(def, value, "Weir requires cleanup.policy=delete"));
            }
            return Ok("delete".into());
        }
        Rule::ThrottledReplicas => {
            let parsed: ThrottledReplicas =
                canonical.parse().map_err(|why: String| invalid(def, value, why))?;
            return Ok(parsed.to_string());
        }
        Rule::Fixed => {
            if canonical != def.default {
                return Err(ControllerError::InvalidConfig(format!(
                    "{} is read-only in Weir: its value is always {:?}",
                    def.name, def.default
                )));
            }
        }
    }
    Ok(canonical)
}

/// Node-level defaults: what a topic gets for what it does not override.
///
/// Set at controller start from its configuration and recorded in the metadata
/// log, so every node describes configs with the same defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfigDefaults {
    /// Partitions for a CreateTopics that asks for the default (-1); Kafka's
    /// `num.partitions`.
    pub num_partitions: i32,
    /// Replication factor for a CreateTopics that asks for the default (-1);
    /// Kafka's `default.replication.factor`.
    pub default_replication_factor: i16,
    /// Topic config defaults that replace the static ones, keyed by topic
    /// config name (e.g. `"retention.ms" = "3600000"`). Read-only keys cannot
    /// be changed here either.
    pub topic: BTreeMap<String, String>,
}

impl Default for ConfigDefaults {
    fn default() -> Self {
        ConfigDefaults { num_partitions: 1, default_replication_factor: 1, topic: BTreeMap::new() }
    }
}

impl ConfigDefaults {
    /// Checks every field and returns the defaults with values in canonical form.
    pub fn validated(&self) -> Result<ConfigDefaults, ControllerError> {
        if self.num_partitions < 1 {
            return Err(ControllerError::InvalidConfig(format!(
                "num_partitions must be at least 1, not {}",
                self.num_partitions
            )));
        }
        if self.default_replication_factor < 1 {
            return Err(ControllerError::InvalidConfig(format!(
                "default_replication_factor must be at least 1, not {}",
                self.default_replication_factor
            )));
        }
        let mut topic = BTreeMap::new();
        for (k, v) in &self.topic {
            topic.insert(k.clone(), validate_value(k, v)?);
        }
        Ok(ConfigDefaults { topic, ..self.clone() })
    }

    /// The effective value of `def` for a topic with `overrides`, and its source.
    fn effective<'a>(
        &'a self,
        def: &'static ConfigDef,
        overrides: &'a BTreeMap<String, String>,
    ) -> (&'a str, ConfigSource) {
        if let Some(v) = overrides.get(def.name) {
            (v, ConfigSource::TopicOverride)
        } else if let Some(v) = self.topic.get(def.name) {
            (v, ConfigSource::NodeDefault)
        } else {
            (def.default, ConfigSource::Default)
        }
    }
}

/// `message.timestamp.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// `cleanup.policy`; only deletion is supported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CleanupPolicy {
    Delete,
}

/// `leader.replication.throttled.replicas` /
/// `follower.replication.throttled.replicas`: the replicas of a topic whose
/// replication traffic the node-level rates
/// (`*.replication.throttled.rate`, [`ReplicationThrottle`]) apply to.
///
/// Its text form is Kafka's: empty (none), `*` (every replica), or
/// `partition:node` items separated by commas. An item names the node on
/// which the throttle applies: for the leader list, the node acting as
/// leader of that partition; for the follower list, the node fetching as
/// follower. [`fmt::Display`] gives the canonical form stored in overrides
/// (numbers without padding, duplicates dropped, order kept).
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ThrottledReplicas {
    #[default]
    None,
    All,
    /// `(partition, node)` pairs; never empty.
    List(Vec<(i32, NodeId)>),
}

impl ThrottledReplicas {
    /// Whether replication of `partition` on `node` is throttled.
    pub fn contains(&self, partition: i32, node: NodeId) -> bool {
        match self {
            ThrottledReplicas::None => false,
            ThrottledReplicas::All => true,
            ThrottledReplicas::List(items) => items.contains(&(partition, node)),
        }
    }
}

impl FromStr for ThrottledReplicas {
    /// Why the text is not a throttled-replicas list.
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        let items = list_items(value);
        if items.is_empty() {
            return Ok(ThrottledReplicas::None);
        }
        if items == ["*"] {
            return Ok(ThrottledReplicas::All);
        }
        let bad = || {
            "Value must be the literal '*' or a list of replicas in the following format: \
             [partitionId]:[brokerId],[partitionId]:[brokerId],..."
                .to_string()
        };
        // Digits only, as Kafka's validator (no signs, no spaces inside an item).
        let number = |s: &str| -> Result<i32, String> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            s.parse().map_err(|_| bad())
        };
        let mut out: Vec<(i32, NodeId)> = Vec::with_capacity(items.len());
        for item in items {
            let (p, n) = item.split_once(':').ok_or_else(bad)?;
            let pair = (number(p)?, NodeId(number(n)?));
            if !out.contains(&pair) {
                out.push(pair);
            }
        }
        Ok(ThrottledReplicas::List(out))
    }
}

impl fmt::Display for ThrottledReplicas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ThrottledReplicas::None => Ok(()),
            ThrottledReplicas::All => f.write_str("*"),
            ThrottledReplicas::List(items) => {
                for (i, (p, n)) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{p}:{n}")?;
                }
                Ok(())
            }
        }
    }
}

/// A topic's effective configuration, typed: what the node's log acts on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    /// -1: keep forever.
    pub retention_ms: i64,
    /// -1: no size limit.
    pub retention_bytes: i64,
    pub segment_bytes: i32,
    pub segment_ms: i64,
    pub max_message_bytes: i32,
    pub min_insync_replicas: i32,
    pub message_timestamp_type: TimestampType,
    pub cleanup_policy: CleanupPolicy,
    /// `unclean.leader.election.enable`: with no live ISR member, the
    /// controller may make any live replica the leader (and the whole ISR).
    #[serde(default)]
    pub unclean_leader_election_enable: bool,
    /// Replicas throttled on the leader side during a move.
    #[serde(default)]
    pub leader_replication_throttled_replicas: ThrottledReplicas,
    /// Replicas throttled on the follower side during a move.
    #[serde(default)]
    pub follower_replication_throttled_replicas: ThrottledReplicas,
}

impl TopicConfig {
    /// Resolves overrides over node defaults over static defaults.
    pub fn resolve(
        defaults: &ConfigDefaults,
        overrides: &BTreeMap<String, String>,
    ) -> Result<TopicConfig, ControllerError> {
        let get = |name: &str| -> Result<String, ControllerError> {
            let def = lookup_or_err(name)?;
            let (v, _) = defaults.effective(def, overrides);
            validate_value(name, v)
        };
        let int = |name: &str| -> Result<i64, ControllerError> {
            Ok(get(name)?.parse().expect("validated integers parse"))
        };
        let as_i32 = |n: i64| i32::try_from(n).expect("validated Int values fit i32");
        Ok(TopicConfig {
            retention_ms: int("retention.ms")?,
            retention_bytes: int("retention.bytes")?,
            segment_bytes: as_i32(int("segment.bytes")?),
            segment_ms: int("segment.ms")?,
            max_message_bytes: as_i32(int("max.message.bytes")?),
            min_insync_replicas: as_i32(int("min.insync.replicas")?),
            message_timestamp_type: match get("message.timestamp.type")?.as_str() {
                "LogAppendTime" => TimestampType::LogAppendTime,
                _ => TimestampType::CreateTime,
            },
            cleanup_policy: {
                get("cleanup.policy")?;
                CleanupPolicy::Delete
            },
            unclean_leader_election_enable: get("unclean.leader.election.enable")? == "true",
            leader_replication_throttled_replicas: get("leader.replication.throttled.replicas")?
                .parse()
                .expect("validated lists parse"),
            follower_replication_throttled_replicas: get(
                "follower.replication.throttled.replicas",
            )?
            .parse()
            .expect("validated lists parse"),
        })
    }

    /// Retention by age, `None` when records are kept forever.
    pub fn retention_ms_limit(&self) -> Option<u64> {
        u64::try_from(self.retention_ms).ok()
    }

    /// Retention by size, `None` when there is no size limit.
    pub fn retention_bytes_limit(&self) -> Option<u64> {
        u64::try_from(self.retention_bytes).ok()
    }
}

/// A described config value's synonym (DescribeConfigs `include_synonyms`),
/// most specific first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigSynonym {
    pub name: String,
    pub value: String,
    pub source: ConfigSource,
}

/// One row of a DescribeConfigs answer for a topic or a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigEntry {
    pub name: String,
    /// `None` only for sensitive values (none of the topic keys are).
    pub value: Option<String>,
    pub source: ConfigSource,
    pub read_only: bool,
    pub sensitive: bool,
    pub doc: String,
    pub config_type: ConfigType,
    pub synonyms: Vec<ConfigSynonym>,
}

/// The full config set of a topic with `overrides`, every key in
/// [`TOPIC_CONFIGS`], as Kafka's AdminClient expects from DescribeConfigs.
pub fn describe(
    defaults: &ConfigDefaults,
    overrides: &BTreeMap<String, String>,
) -> Vec<ConfigEntry> {
    TOPIC_CONFIGS
        .iter()
        .map(|def| {
            let (value, source) = defaults.effective(def, overrides);
            let broker_name = def.broker_synonym.unwrap_or(def.name);
            let mut synonyms = Vec::new();
            if let Some(v) = overrides.get(def.name) {
                synonyms.push(ConfigSynonym {
                    name: def.name.into(),
                    value: v.clone(),
                    source: ConfigSource::TopicOverride,
                });
            }
            if let Some(v) = defaults.topic.get(def.name) {
                synonyms.push(ConfigSynonym {
                    name: broker_name.into(),
                    value: v.clone(),
                    source: ConfigSource::NodeDefault,
                });
            }
            synonyms.push(ConfigSynonym {
                name: broker_name.into(),
                value: def.default.into(),
                source: ConfigSource::Default,
            });
            ConfigEntry {
                name: def.name.into(),
                value: Some(value.to_string()),
                source,
                read_only: def.read_only,
                sensitive: false,
                doc: def.doc.into(),
                config_type: def.config_type,
                synonyms,
            }
        })
        .collect()
}

/// Checks a CreateTopics config set and returns the overrides to store:
/// canonical values, read-only keys at their fixed value dropped.
pub fn validate_overrides(
    configs: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ControllerError> {
    let mut out = BTreeMap::new();
    for (k, v) in configs {
        let canonical = validate_value(k, v)?;
        if !lookup_or_err(k)?.read_only {
            out.insert(k.clone(), canonical);
        }
    }
    Ok(out)
}

/// An IncrementalAlterConfigs operation (legacy AlterConfigs uses only `Set`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigOpType {
    Set,
    Delete,
    /// Add items to a list-typed value.
    Append,
    /// Remove items from a list-typed value.
    Subtract,
}

impl ConfigOpType {
    /// From IncrementalAlterConfigs' `config_operation` (0 SET, 1 DELETE,
    /// 2 APPEND, 3 SUBTRACT).
    pub fn from_kafka(code: i8) -> Option<ConfigOpType> {
        match code {
            0 => Some(ConfigOpType::Set),
            1 => Some(ConfigOpType::Delete),
            2 => Some(ConfigOpType::Append),
            3 => Some(ConfigOpType::Subtract),
            _ => None,
        }
    }
}

/// One change to a topic's config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigOp {
    pub key: String,
    pub op: ConfigOpType,
    /// Required for all but `Delete`.
    pub value: Option<String>,
}

impl ConfigOp {
    pub fn set(key: impl Into<String>, value: impl Into<String>) -> ConfigOp {
        ConfigOp { key: key.into(), op: ConfigOpType::Set, value: Some(value.into()) }
    }

    pub fn delete(key: impl Into<String>) -> ConfigOp {
        ConfigOp { key: key.into(), op: ConfigOpType::Delete, value: None }
    }
}

/// Applies `ops` to a topic's `current` overrides and returns the new ones.
///
/// `replace_all` is legacy AlterConfigs: the ops (all `Set`) become the whole
/// override set, and keys not named go back to their defaults.
pub fn apply_ops(
    defaults: &ConfigDefaults,
    current: &BTreeMap<String, String>,
    ops: &[ConfigOp],
    replace_all: bool,
) -> Result<BTreeMap<String, String>, ControllerError> {
    check_duplicate_keys(ops)?;
    let mut out = if replace_all { BTreeMap::new() } else { current.clone() };
    for op in ops {
        let def = lookup_or_err(&op.key)?;
        let value = |op: &ConfigOp| {
            op.value.clone().ok_or_else(|| {
                ControllerError::InvalidConfig(format!(
                    "Null value not supported for topic config: {}",
                    op.key
                ))
            })
        };
        let new_value = match op.op {
            ConfigOpType::Delete if replace_all => {
                return Err(ControllerError::InvalidRequest(
                    "AlterConfigs only sets values".into(),
                ));
            }
            ConfigOpType::Delete => None,
            ConfigOpType::Set => Some(value(op)?),
            ConfigOpType::Append | ConfigOpType::Subtract => {
                if replace_all || def.config_type != ConfigType::List {
                    return Err(ControllerError::InvalidRequest(format!(
                        "Config value append/subtract is not allowed for config key: {}",
                        op.key
                    )));
                }
                let arg = value(op)?;
                let (cur, _) = defaults.effective(def, &out);
                let mut items: Vec<String> =
                    list_items(cur).into_iter().map(String::from).collect();
                for item in list_items(&arg) {
                    if op.op == ConfigOpType::Append {
                        if !items.iter().any(|i| i == item) {
                            items.push(item.to_string());
                        }
                    } else {
                        items.retain(|i| i != item);
                    }
                }
                Some(items.join(","))
            }
        };
        match new_value {
            None => {
                out.remove(def.name);
            }
            Some(v) => {
                let canonical = validate_value(def.name, &v)?;
                if def.read_only {
                    out.remove(def.name);
                } else {
                    out.insert(def.name.to_string(), canonical);
                }
            }
        }
    }
    TopicConfig::resolve(defaults, &out)?;
    Ok(out)
}

fn check_duplicate_keys(ops: &[ConfigOp]) -> Result<(), ControllerError> {
    let mut seen = std::collections::BTreeSet::new();
    for op in ops {
        if !seen.insert(op.key.as_str()) {
            return Err(ControllerError::InvalidRequest(format!(
                "Error due to duplicate config keys: {}",
                op.key
            )));
        }
    }
    Ok(())
}

/// `leader.replication.throttled.rate`: node config, bytes/s.
pub const LEADER_THROTTLED_RATE: &str = "leader.replication.throttled.rate";
/// `follower.replication.throttled.rate`: node config, bytes/s.
pub const FOLLOWER_THROTTLED_RATE: &str = "follower.replication.throttled.rate";
/// `leader.replication.throttled.replicas`: topic config.
pub const LEADER_THROTTLED_REPLICAS: &str = "leader.replication.throttled.replicas";
/// `follower.replication.throttled.replicas`: topic config.
pub const FOLLOWER_THROTTLED_REPLICAS: &str = "follower.replication.throttled.replicas";

/// The dynamic node ("broker") configs Weir acts on, sorted by name: set
/// for one node or as the cluster default, never read-only. A node's value
/// wins over the cluster default, which wins over the static default
/// (Kafka's `Long.MAX_VALUE`: unlimited).
pub static NODE_CONFIGS: &[ConfigDef] = &[
    def!(
        "follower.replication.throttled.rate",
        Long,
        LONG_MAX,
        Rule::Range { min: 0, max: i64::MAX },
        None,
        "Bytes per second a node fetches as follower for the replicas in follower.replication.throttled.replicas, all together. Unset: unlimited."
    ),
    def!(
        "leader.replication.throttled.rate",
        Long,
        LONG_MAX,
        Rule::Range { min: 0, max: i64::MAX },
        None,
        "Bytes per second a node sends as leader to followers of the replicas in leader.replication.throttled.replicas, all together. Unset: unlimited."
    ),
];

/// The key of a node's dynamic configs in
/// [`crate::MetadataImage::node_configs`]: its id in decimal, or `""` for
/// the cluster default (as Kafka names the BROKER resource).
pub fn node_config_key(node: Option<NodeId>) -> String {
    node.map(|n| n.to_string()).unwrap_or_default()
}

fn lookup_node_or_err(name: &str) -> Result<&'static ConfigDef, ControllerError> {
    NODE_CONFIGS.iter().find(|d| d.name == name).ok_or_else(|| {
        let keys: Vec<&str> = NODE_CONFIGS.iter().map(|d| d.name).collect();
        ControllerError::InvalidConfig(format!(
            "Node config {name} cannot be set dynamically in Weir; the settable node configs are: {}",
            keys.join(", ")
        ))
    })
}

/// Checks a node config `value` for `name`; returns its canonical form.
pub fn validate_node_value(name: &str, value: &str) -> Result<String, ControllerError> {
    check_value(lookup_node_or_err(name)?, value)
}

/// Applies `ops` to one node's (or the cluster default's) dynamic configs
/// `current` and returns the new ones. `replace_all`: legacy AlterConfigs,
/// the `Set` ops become the whole set.
pub fn apply_node_ops(
    current: &BTreeMap<String, String>,
    ops: &[ConfigOp],
    replace_all: bool,
) -> Result<BTreeMap<String, String>, ControllerError> {
    check_duplicate_keys(ops)?;
    let mut out = if replace_all { BTreeMap::new() } else { current.clone() };
    for op in ops {
        let def = lookup_node_or_err(&op.key)?;
        match op.op {
            ConfigOpType::Delete if replace_all => {
                return Err(ControllerError::InvalidRequest(
                    "AlterConfigs only sets values".into(),
                ));
            }
            ConfigOpType::Delete => {
                out.remove(def.name);
            }
            ConfigOpType::Set => {
                let value = op.value.as_deref().ok_or_else(|| {
                    ControllerError::InvalidConfig(format!(
                        "Null value not supported for node config: {}",
                        op.key
                    ))
                })?;
                out.insert(def.name.to_string(), check_value(def, value)?);
            }
            ConfigOpType::Append | ConfigOpType::Subtract => {
                return Err(ControllerError::InvalidRequest(format!(
                    "Config value append/subtract is not allowed for config key: {}",
                    op.key
                )));
            }
        }
    }
    Ok(out)
}

/// A node's replication throttle: bytes per second over all its throttled
/// replicas, as leader and as follower; `None` is unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ReplicationThrottle {
    pub leader_bytes_per_sec: Option<u64>,
    pub follower_bytes_per_sec: Option<u64>,
}

impl ReplicationThrottle {
    /// From a node's own dynamic configs over the cluster default's.
    pub fn resolve(
        own: Option<&BTreeMap<String, String>>,
        default: Option<&BTreeMap<String, String>>,
    ) -> ReplicationThrottle {
        let rate = |key: &str| {
            let v = own.and_then(|c| c.get(key)).or_else(|| default.and_then(|c| c.get(key)))?;
            Some(v.parse::<u64>().expect("stored node configs were validated when recorded"))
        };
        ReplicationThrottle {
            leader_bytes_per_sec: rate(LEADER_THROTTLED_RATE),
            follower_bytes_per_sec: rate(FOLLOWER_THROTTLED_RATE),
        }
    }
}

/// DescribeConfigs rows for the dynamic node configs that are set: for a
/// node (`own` its values) or for the cluster default (`own` is `None`).
/// Keys set nowhere are left out; the node adds its static settings.
pub fn describe_node(
    own: Option<&BTreeMap<String, String>>,
    default: Option<&BTreeMap<String, String>>,
) -> Vec<ConfigEntry> {
    let mut out = Vec::new();
    for def in NODE_CONFIGS {
        let mut synonyms = Vec::new();
        if let Some(v) = own.and_then(|c| c.get(def.name)) {
            synonyms.push(ConfigSynonym {
                name: def.name.into(),
                value: v.clone(),
                source: ConfigSource::DynamicNode,
            });
        }
        if let Some(v) = default.and_then(|c| c.get(def.name)) {
            synonyms.push(ConfigSynonym {
                name: def.name.into(),
                value: v.clone(),
                source: ConfigSource::DynamicDefaultNode,
            });
        }
        let Some(first) = synonyms.first().cloned() else { continue };
        synonyms.push(ConfigSynonym {
            name: def.name.into(),
            value: def.default.into(),
            source: ConfigSource::Default,
        });
        out.push(ConfigEntry {
            name: def.name.into(),
            value: Some(first.value),
            source: first.source,
            read_only: false,
            sensitive: false,
            doc: def.doc.into(),
            config_type: def.config_type,
            synonyms,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn table_is_sorted_and_defaults_validate() {
        for w in TOPIC_CONFIGS.windows(2) {
            assert!(w[0].name < w[1].name, "{} before {}", w[0].name, w[1].name);
        }
        for def in TOPIC_CONFIGS {
            assert_eq!(validate_value(def.name, def.default).unwrap(), def.default, "{}", def.name);
        }
        let c = TopicConfig::resolve(&ConfigDefaults::default(), &BTreeMap::new()).unwrap();
        assert_eq!(c.retention_ms, 604_800_000);
        assert_eq!(c.retention_bytes_limit(), None);
        assert_eq!(c.segment_bytes, 1_073_741_824);
        assert_eq!(c.max_message_bytes, 1_048_588);
        assert_eq!(c.message_timestamp_type, TimestampType::CreateTime);
    }

    #[test]
    fn validation_errors() {
        let code = |k: &str, v: &str| validate_value(k, v).unwrap_err().kafka_code();
        assert_eq!(code("no.such.key", "1"), 40);
        assert_eq!(code("segment.bytes", "4096"), 40);
        assert_eq!(code("retention.ms", "-2"), 40);
        assert_eq!(code("retention.ms", "abc"), 40);
        assert_eq!(code("message.timestamp.type", "createtime"), 40);
        assert_eq!(code("flush.ms", "1000"), 40);
        let e = validate_value("cleanup.policy", "compact").unwrap_err();
        assert_eq!(e.message(), "cleanup.policy=compact is not supported yet by Weir");
        assert_eq!(e.kafka_code(), 40);
        assert!(validate_value("cleanup.policy", "delete,compact").is_err());
        assert_eq!(validate_value("cleanup.policy", " delete ").unwrap(), "delete");
        assert_eq!(validate_value("retention.ms", " -1").unwrap(), "-1");
        assert_eq!(validate_value("unclean.leader.election.enable", "FALSE").unwrap(), "false");
        assert_eq!(validate_value("unclean.leader.election.enable", "True").unwrap(), "true");
        let c = TopicConfig::resolve(
            &ConfigDefaults::default(),
            &map(&[("unclean.leader.election.enable", "true")]),
        )
        .unwrap();
        assert!(c.unclean_leader_election_enable);
        assert_eq!(
            validate_overrides(&map(&[("compression.type", "producer"), ("retention.ms", "5")]))
                .unwrap(),
            map(&[("retention.ms", "5")])
        );
    }

    #[test]
    fn describe_sources_and_synonyms() {
        let defaults = ConfigDefaults {
            topic: map(&[("retention.ms", "3600000")]),
            ..ConfigDefaults::default()
        }
        .validated()
        .unwrap();
        let entries = describe(&defaults, &map(&[("segment.bytes", "2097152")]));
        assert_eq!(entries.len(), TOPIC_CONFIGS.len());
        let get = |n: &str| entries.iter().find(|e| e.name == n).unwrap();
        assert_eq!(get("retention.ms").source, ConfigSource::NodeDefault);
        assert_eq!(get("retention.ms").value.as_deref(), Some("3600000"));
        assert_eq!(get("retention.ms").synonyms.len(), 2);
        assert_eq!(get("segment.bytes").source, ConfigSource::TopicOverride);
        assert_eq!(get("segment.bytes").synonyms[0].source.kafka_code(), 1);
        assert_eq!(get("retention.bytes").source, ConfigSource::Default);
        assert!(get("flush.ms").read_only);
        assert!(!get("retention.bytes").read_only);
        assert_eq!(get("retention.ms").config_type.kafka_code(), 5);
    }

    #[test]
    fn incremental_ops() {
        let d = ConfigDefaults::default();
        let cur = map(&[("retention.ms", "1000"), ("segment.ms", "5000")]);
        let out = apply_ops(
            &d,
            &cur,
            &[ConfigOp::set("retention.bytes", "100"), ConfigOp::delete("segment.ms")],
            false,
        )
        .unwrap();
        assert_eq!(out, map(&[("retention.bytes", "100"), ("retention.ms", "1000")]));

        // Legacy AlterConfigs replaces everything.
        let out = apply_ops(&d, &cur, &[ConfigOp::set("max.message.bytes", "10")], true).unwrap();
        assert_eq!(out, map(&[("max.message.bytes", "10")]));

        // Append to a list: "delete" is already there, so nothing changes; compact is refused.
        let append = |v: &str| ConfigOp {
            key: "cleanup.policy".into(),
            op: ConfigOpType::Append,
            value: Some(v.into()),
        };
        assert_eq!(
            apply_ops(&d, &cur, &[append("delete")], false).unwrap()["cleanup.policy"],
            "delete"
        );
        assert_eq!(apply_ops(&d, &cur, &[append("compact")], false).unwrap_err().kafka_code(), 40);
        let subtract = ConfigOp {
            key: "cleanup.policy".into(),
            op: ConfigOpType::Subtract,
            value: Some("delete".into()),
        };
        assert_eq!(apply_ops(&d, &cur, &[subtract], false).unwrap_err().kafka_code(), 40);
        // Append to a non-list is an invalid request.
        let bad = ConfigOp {
            key: "retention.ms".into(),
            op: ConfigOpType::Append,
            value: Some("1".into()),
        };
        assert_eq!(apply_ops(&d, &cur, &[bad], false).unwrap_err().kafka_code(), 42);
        // Duplicate keys and unknown keys.
        let dup = [ConfigOp::set("retention.ms", "1"), ConfigOp::delete("retention.ms")];
        assert_eq!(apply_ops(&d, &cur, &dup, false).unwrap_err().kafka_code(), 42);
        assert_eq!(
            apply_ops(&d, &cur, &[ConfigOp::delete("nope")], false).unwrap_err().kafka_code(),
            40
        );
    }

    #[test]
    fn throttled_replicas_lists() {
        let key = LEADER_THROTTLED_REPLICAS;
        assert!(!lookup(key).unwrap().read_only);
        assert!(!lookup(FOLLOWER_THROTTLED_REPLICAS).unwrap().read_only);
        assert_eq!(validate_value(key, "").unwrap(), "");
        assert_eq!(validate_value(key, " * ").unwrap(), "*");
        assert_eq!(validate_value(key, " 0:1 , 00:2,0:1,12:3").unwrap(), "0:1,0:2,12:3");
        for bad in
            ["*,0:1", "a:1", "0:-1", "-1:0", "0", "0:1:2", ":1", "0:", "0 :1", "9999999999:1"]
        {
            let e = validate_value(key, bad).unwrap_err();
            assert_eq!(e.kafka_code(), 40, "{bad:?}");
            assert!(e.message().contains("[partitionId]:[brokerId]"), "{bad:?}: {e}");
        }
        let parsed: ThrottledReplicas = "0:1,2:3".parse().unwrap();
        assert_eq!(parsed, ThrottledReplicas::List(vec![(0, NodeId(1)), (2, NodeId(3))]));
        assert!(parsed.contains(0, NodeId(1)) && parsed.contains(2, NodeId(3)));
        assert!(!parsed.contains(0, NodeId(3)) && !parsed.contains(1, NodeId(1)));
        assert!(ThrottledReplicas::All.contains(7, NodeId(9)));
        assert!(!ThrottledReplicas::None.contains(0, NodeId(0)));
        assert_eq!(ThrottledReplicas::None.to_string(), "");

        // Resolved into the typed config, default none.
        let d = ConfigDefaults::default();
        let c = TopicConfig::resolve(&d, &BTreeMap::new()).unwrap();
        assert_eq!(c.leader_replication_throttled_replicas, ThrottledReplicas::None);
        assert_eq!(c.follower_replication_throttled_replicas, ThrottledReplicas::None);
        let out = apply_ops(
            &d,
            &BTreeMap::new(),
            &[ConfigOp::set(key, "0:1,0:2"), ConfigOp::set(FOLLOWER_THROTTLED_REPLICAS, "*")],
            false,
        )
        .unwrap();
        let c = TopicConfig::resolve(&d, &out).unwrap();
        assert_eq!(c.leader_replication_throttled_replicas.to_string(), "0:1,0:2");
        assert_eq!(c.follower_replication_throttled_replicas, ThrottledReplicas::All);
        // Lists take append / subtract; a bad item is refused.
        let op = |op, v: &str| ConfigOp { key: key.into(), op, value: Some(v.into()) };
        let out = apply_ops(&d, &out, &[op(ConfigOpType::Append, "1:3,0:1")], false).unwrap();
        assert_eq!(out[key], "0:1,0:2,1:3");
        let out = apply_ops(&d, &out, &[op(ConfigOpType::Subtract, "0:2")], false).unwrap();
        assert_eq!(out[key], "0:1,1:3");
        assert_eq!(
            apply_ops(&d, &out, &[op(ConfigOpType::Append, "x")], false).unwrap_err().kafka_code(),
            40
        );
        // Described as ordinary, settable topic configs.
        let entries = describe(&d, &out);
        let e = entries.iter().find(|e| e.name == key).unwrap();
        assert_eq!(
            (e.value.as_deref(), e.source, e.read_only),
            (Some("0:1,1:3"), ConfigSource::TopicOverride, false)
        );
    }

    #[test]
    fn node_config_ops_and_validation() {
        let none = BTreeMap::new();
        let out = apply_node_ops(
            &none,
            &[
                ConfigOp::set(LEADER_THROTTLED_RATE, " 1000 "),
                ConfigOp::set(FOLLOWER_THROTTLED_RATE, "0"),
            ],
            false,
        )
        .unwrap();
        assert_eq!(out, map(&[(FOLLOWER_THROTTLED_RATE, "0"), (LEADER_THROTTLED_RATE, "1000")]));
        let out2 =
            apply_node_ops(&out, &[ConfigOp::delete(FOLLOWER_THROTTLED_RATE)], false).unwrap();
        assert_eq!(out2, map(&[(LEADER_THROTTLED_RATE, "1000")]));
        // Deleting what is not set is no change.
        assert_eq!(
            apply_node_ops(&out2, &[ConfigOp::delete(FOLLOWER_THROTTLED_RATE)], false).unwrap(),
            out2
        );
        // Legacy AlterConfigs replaces the set.
        let out3 =
            apply_node_ops(&out, &[ConfigOp::set(FOLLOWER_THROTTLED_RATE, "5")], true).unwrap();
        assert_eq!(out3, map(&[(FOLLOWER_THROTTLED_RATE, "5")]));
        assert_eq!(
            apply_node_ops(&out, &[ConfigOp::delete(LEADER_THROTTLED_RATE)], true)
                .unwrap_err()
                .kafka_code(),
            42
        );

        let err = |ops: &[ConfigOp]| apply_node_ops(&none, ops, false).unwrap_err();
        let e = err(&[ConfigOp::set("log.retention.ms", "1")]);
        assert_eq!(e.kafka_code(), 40);
        assert!(
            e.message().contains("log.retention.ms")
                && e.message().contains(LEADER_THROTTLED_RATE)
                && e.message().contains(FOLLOWER_THROTTLED_RATE),
            "{e}"
        );
        // A topic key is not a node key.
        assert_eq!(err(&[ConfigOp::set("retention.ms", "1")]).kafka_code(), 40);
        assert_eq!(err(&[ConfigOp::set(LEADER_THROTTLED_RATE, "-1")]).kafka_code(), 40);
        assert_eq!(err(&[ConfigOp::set(LEADER_THROTTLED_RATE, "fast")]).kafka_code(), 40);
        assert_eq!(
            err(&[ConfigOp::set(LEADER_THROTTLED_RATE, "99999999999999999999")]).kafka_code(),
            40
        );
        let null =
            ConfigOp { key: LEADER_THROTTLED_RATE.into(), op: ConfigOpType::Set, value: None };
        assert_eq!(err(&[null]).kafka_code(), 40);
        let append = ConfigOp {
            key: LEADER_THROTTLED_RATE.into(),
            op: ConfigOpType::Append,
            value: Some("1".into()),
        };
        assert_eq!(err(&[append]).kafka_code(), 42);
        let dup =
            [ConfigOp::set(LEADER_THROTTLED_RATE, "1"), ConfigOp::delete(LEADER_THROTTLED_RATE)];
        assert_eq!(err(&dup).kafka_code(), 42);
        assert_eq!(validate_node_value(LEADER_THROTTLED_RATE, "0010").unwrap(), "10");
        for def in NODE_CONFIGS {
            assert_eq!(check_value(def, def.default).unwrap(), def.default);
        }
    }

    #[test]
    fn node_throttle_precedence_and_describe() {
        let own = map(&[(LEADER_THROTTLED_RATE, "100")]);
        let cluster = map(&[(LEADER_THROTTLED_RATE, "7"), (FOLLOWER_THROTTLED_RATE, "9")]);
        assert_eq!(ReplicationThrottle::resolve(None, None), ReplicationThrottle::default());
        assert_eq!(
            ReplicationThrottle::resolve(Some(&own), None),
            ReplicationThrottle { leader_bytes_per_sec: Some(100), follower_bytes_per_sec: None }
        );
        assert_eq!(
            ReplicationThrottle::resolve(Some(&own), Some(&cluster)),
            ReplicationThrottle {
                leader_bytes_per_sec: Some(100),
                follower_bytes_per_sec: Some(9)
            }
        );
        assert_eq!(
            ReplicationThrottle::resolve(None, Some(&cluster)),
            ReplicationThrottle { leader_bytes_per_sec: Some(7), follower_bytes_per_sec: Some(9) }
        );

        assert!(describe_node(None, None).is_empty());
        let rows = describe_node(Some(&own), Some(&cluster));
        assert_eq!(rows.len(), 2);
        let (follower, leader) = (&rows[0], &rows[1]);
        assert_eq!(leader.name, LEADER_THROTTLED_RATE);
        assert_eq!((leader.value.as_deref(), leader.source.kafka_code()), (Some("100"), 2));
        let sources: Vec<i8> = leader.synonyms.iter().map(|s| s.source.kafka_code()).collect();
        assert_eq!(sources, vec![2, 3, 5]);
        assert_eq!((follower.value.as_deref(), follower.source.kafka_code()), (Some("9"), 3));
        assert!(!leader.read_only && leader.config_type == ConfigType::Long);
        // The cluster default alone.
        let rows = describe_node(None, Some(&map(&[(FOLLOWER_THROTTLED_RATE, "9")])));
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].source, ConfigSource::DynamicDefaultNode);
    }
}
