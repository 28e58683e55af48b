//! `weir-net`: the cluster's transport: QUIC with mutual TLS, carrying
//! rkyv-framed messages whose bodies are raw bytes (record batches for
//! replication). A crate of its own so that nodes (replication) and
//! controllers (Raft) share one transport, TLS set-up and set of limits.
//!
//! ```text
//!  follower shard ──PeerClient::request(FetchRequest)──▶ QUIC thread ══QUIC══▶ leader's
//!  (glommio)      ◀──────────── Frame(FetchResponse) ──  (tokio)      ◀══════  QUIC thread
//!                                                                              │ InboundRequest
//!                                                                              ▼ Responder
//!                                                                          leader shard
//! ```
//!
//! * `tls` — the cluster CA, node certificates, mutual-TLS configs, and the
//!   peer's node id from its certificate.
//! * `frame` — the sans-IO wire format: prefix, rkyv header, raw body.
//! * `endpoint` — the QUIC thread and the flume bridge the shards use.
//! * `limits` — every bound the transport enforces.
//!
//! This crate moves bytes between nodes and authenticates them; it never
//! interprets a body and holds no replica state (that is the sans-IO replica
//! core's, driven by the shard that owns each partition).

pub mod endpoint;
pub mod frame;
pub mod limits;
pub mod tls;

pub use endpoint::{
    ANY_CONTROLLER, Endpoint, EndpointConfig, EndpointHandle, InboundRequest, PeerClient,
    Responder, TransportError,
};
pub use frame::{
    ControllerRequest, ControllerResponse, ControllerRpc, DivergingEpoch, FetchPartition,
    FetchPartitionResponse, FetchRequest, FetchResponse, Frame, FrameError, Header,
};
