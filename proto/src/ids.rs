//! Newtypes for values that must never be mixed up.
//!
//! *offset*: a logical Kafka record offset. *position*: a byte in a file.
//! *index*: a slot in an array. The type system keeps them apart.

use std::fmt;

macro_rules! newtype {
    ($(#[$m:meta])* $name:ident($inner:ty)) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

newtype!(
    /// A logical Kafka record offset within one partition.
    Offset(i64)
);
newtype!(
    /// A byte position within one file (segment, index).
    Position(u64)
);
newtype!(
    /// A partition leader epoch, bumped by the controller on every leader change.
    LeaderEpoch(i32)
);
newtype!(
    /// A node ("broker") id, unique in the cluster.
    NodeId(i32)
);
newtype!(
    /// A partition number within a topic.
    PartitionId(i32)
);
newtype!(
    /// A shard (one glommio executor pinned to one core) within a node.
    ShardId(u32)
);
newtype!(
    /// An idempotent/transactional producer id; -1 means "not idempotent".
    ProducerId(i64)
);
newtype!(
    /// A producer epoch, fencing older incarnations of one producer id.
    ProducerEpoch(i16)
);

impl Offset {
    /// Offset used by Kafka for "no offset".
    pub const NONE: Offset = Offset(-1);

    pub fn next(self) -> Offset {
        Offset(self.0 + 1)
    }
}

impl LeaderEpoch {
    /// Epoch used by Kafka for "unknown epoch".
    pub const UNKNOWN: LeaderEpoch = LeaderEpoch(-1);
}

impl ProducerId {
    /// The producer id of batches from a non-idempotent producer.
    pub const NONE: ProducerId = ProducerId(-1);
}

/// A topic's UUID, assigned at creation and stable for the topic's lifetime.
pub type TopicId = uuid::Uuid;

/// A topic name plus partition, the key of a partition everywhere in the node.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: PartitionId,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition { topic: topic.into(), partition: PartitionId(partition) }
    }

    /// The partition's folder name on disk, as in Kafka: `<topic>-<partition>`.
    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.topic, self.partition.0)
    }
}

impl fmt::Debug for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition.0)
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition.0)
    }
}
