//! The controller's error type, shared by the state machine, the log and the
//! handle, and carried over the wire to remote handles.

use kafka_protocol::error::ResponseError;
use serde::{Deserialize, Serialize};
use weir_proto::ids::{NodeId, TopicId};

/// How a quorum member that does not lead starts its `Unavailable` message.
const NOT_ACTIVE: &str = "not the active controller";
const LEADER_IS: &str = "leader is member ";

/// Why a command was refused, or why the controller could not run it.
///
/// Every variant but [`ControllerError::Unavailable`] and
/// [`ControllerError::Fatal`] is an *expected* answer to client input and maps
/// to the Kafka error code a Kafka controller would send for it
/// ([`ControllerError::kafka_code`]); the `String` is the human message Kafka
/// puts in the response's `error_message` field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", content = "message")]
pub enum ControllerError {
    #[error("{0}")]
    InvalidTopic(String),
    #[error("{0}")]
    TopicAlreadyExists(String),
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    #[error("{0}")]
    InvalidConfig(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    UnknownTopic(String),
    #[error("Topic id {0} does not exist.")]
    UnknownTopicId(TopicId),
    #[error("Node {0} is not registered with the controller.")]
    NodeNotRegistered(NodeId),
    /// AlterPartition from a node that is not the leader, or with an old
    /// leader epoch.
    #[error("{0}")]
    FencedLeaderEpoch(String),
    /// AlterPartition planned against an old partition epoch.
    #[error("{0}")]
    InvalidUpdateVersion(String),
    /// AlterPartition adds a replica that may not join the ISR (not
    /// registered, fenced, shutting down, or restarted since).
    #[error("{0}")]
    IneligibleReplica(String),
    /// A heartbeat with a broker epoch that is not the node's current one:
    /// the node must register again.
    #[error("{0}")]
    StaleBrokerEpoch(String),
    /// Cancelling a partition reassignment where none is in progress.
    #[error("{0}")]
    NoReassignmentInProgress(String),
    /// The controller could not be reached or has stopped; retriable.
    #[error("controller unavailable: {0}")]
    Unavailable(String),
    /// A write or fsync of the metadata log failed. The controller has stopped
    /// (fail-stop); the process hosting it must exit.
    #[error("controller stopped after a fatal error: {0}")]
    Fatal(String),
}

impl ControllerError {
    /// The Kafka error this maps to, as a Kafka controller would answer.
    pub fn response_error(&self) -> ResponseError {
        match self {
            ControllerError::InvalidTopic(_) => ResponseError::InvalidTopicException,
            ControllerError::TopicAlreadyExists(_) => ResponseError::TopicAlreadyExists,
            ControllerError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
            ControllerError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
            ControllerError::InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment,
            ControllerError::InvalidConfig(_) => ResponseError::InvalidConfig,
            ControllerError::InvalidRequest(_) => ResponseError::InvalidRequest,
            ControllerError::UnknownTopic(_) => ResponseError::UnknownTopicOrPartition,
            ControllerError::UnknownTopicId(_) => ResponseError::UnknownTopicId,
            ControllerError::NodeNotRegistered(_) => ResponseError::BrokerIdNotRegistered,
            ControllerError::FencedLeaderEpoch(_) => ResponseError::FencedLeaderEpoch,
            ControllerError::InvalidUpdateVersion(_) => ResponseError::InvalidUpdateVersion,
            ControllerError::IneligibleReplica(_) => ResponseError::IneligibleReplica,
            ControllerError::StaleBrokerEpoch(_) => ResponseError::StaleBrokerEpoch,
            ControllerError::NoReassignmentInProgress(_) => ResponseError::NoReassignmentInProgress,
            // Kafka brokers answer REQUEST_TIMED_OUT when the controller does not
            // answer a forwarded request; clients retry it.
            ControllerError::Unavailable(_) => ResponseError::RequestTimedOut,
            ControllerError::Fatal(_) => ResponseError::UnknownServerError,
        }
    }

    /// The Kafka error code (`error_code` in responses).
    pub fn kafka_code(&self) -> i16 {
        self.response_error().code()
    }

    /// The human message for the response's `error_message` field.
    pub fn message(&self) -> String {
        self.to_string()
    }

    /// The answer of a quorum member that does not lead: retriable, and
    /// naming the leader (member id and Raft address) when one is known, so
    /// that a client ([`crate::remote::connect`]) can go there.
    pub fn not_active(leader: Option<(u64, &str)>, detail: impl std::fmt::Display) -> Self {
        ControllerError::Unavailable(match leader {
            Some((id, addr)) => format!("{NOT_ACTIVE}; leader is member {id} at {addr} ({detail})"),
            None => format!("{NOT_ACTIVE}; no leader is known yet ({detail})"),
        })
    }

    /// Whether this is a [`ControllerError::not_active`] answer.
    pub fn is_not_active(&self) -> bool {
        matches!(self, ControllerError::Unavailable(m) if m.starts_with(NOT_ACTIVE))
    }

    /// The leader a [`ControllerError::not_active`] answer names.
    pub fn leader_hint(&self) -> Option<u64> {
        let ControllerError::Unavailable(m) = self else { return None };
        let rest = m.strip_prefix(NOT_ACTIVE)?.split_once(LEADER_IS)?.1;
        let digits = rest.split(|c: char| !c.is_ascii_digit()).next()?;
        digits.parse().ok()
    }

    /// Whether the controller has stopped for good and the host must exit.
    pub fn is_fatal(&self) -> bool {
        matches!(self, ControllerError::Fatal(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_active_names_the_leader() {
        let e = ControllerError::not_active(Some((3, "10.0.0.3:9094")), "forward");
        assert_eq!(e.kafka_code(), 7);
        assert!(e.is_not_active());
        assert_eq!(e.leader_hint(), Some(3));
        assert!(e.to_string().contains("leader is member 3 at 10.0.0.3:9094"), "{e}");
        let e = ControllerError::not_active(None, "election");
        assert!(e.is_not_active());
        assert_eq!(e.leader_hint(), None);
        assert!(!ControllerError::Unavailable("stopped".into()).is_not_active());
    }

    #[test]
    fn leadership_errors_carry_kafka_codes() {
        let m = String::new;
        assert_eq!(ControllerError::FencedLeaderEpoch(m()).kafka_code(), 74);
        assert_eq!(ControllerError::StaleBrokerEpoch(m()).kafka_code(), 77);
        assert_eq!(ControllerError::InvalidUpdateVersion(m()).kafka_code(), 95);
        assert_eq!(ControllerError::IneligibleReplica(m()).kafka_code(), 107);
        assert_eq!(ControllerError::NoReassignmentInProgress(m()).kafka_code(), 85);
    }
}
