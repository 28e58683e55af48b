//! The controller's error type, shared by the state machine, the log and the
//! handle, and carried over the wire to remote handles.

use kafka_protocol::error::ResponseError;
use serde::{Deserialize, Serialize};
use weir_proto::ids::{NodeId, TopicId};

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

    /// Whether the controller has stopped for good and the host must exit.
    pub fn is_fatal(&self) -> bool {
        matches!(self, ControllerError::Fatal(_))
    }
}
