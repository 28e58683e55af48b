//! Every bound the QUIC transport enforces, in one place.
//!
//! Frame bounds are part of the wire protocol (both ends must agree, so they
//! are constants, not configuration); transport bounds size the queues between
//! the QUIC thread and the shards. At a bound the transport pushes back:
//! callers wait for a permit, the QUIC thread stops reading streams (and QUIC
//! flow control stops the peer), and frames over a limit are refused before
//! anything their length prefix claims is allocated.

/// Largest rkyv header of one frame. A fetch naming every partition a
/// follower shard could follow on one leader (`FETCH_PARTITIONS_MAX` topics of
/// `TOPIC_NAME_BYTES_MAX`) stays well below it.
pub const FRAME_HEADER_BYTES_MAX: usize = 4 << 20;

/// Largest body of one frame: the concatenated batches of one fetch response.
/// Kafka's `replica.fetch.response.max.bytes` defaults to 10 MiB; the bound is
/// larger so a follower catching up can ask for more per round trip, and it is
/// what a receiver allocates at most for one frame.
pub const FRAME_BODY_BYTES_MAX: usize = 64 << 20;

/// Partitions named in one fetch request or response.
pub const FETCH_PARTITIONS_MAX: usize = 10_000;

/// Kafka's own limit on a topic name.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;

/// Longest long-poll a fetch may ask the leader to hold (Kafka's
/// `replica.fetch.wait.max.ms` defaults to 500 ms).
pub const FETCH_WAIT_MS_MAX: u32 = 30_000;

/// Requests in flight to one peer node from this node, over all shards.
/// At the bound `PeerClient::request` waits for a permit. The same number
/// bounds the bidirectional streams a peer may open to us at once, so the
/// server side of a connection is bounded too.
pub const INFLIGHT_PER_PEER_MAX: usize = 32;

/// Requests queued from shards to the QUIC thread. Senders wait when full.
pub const COMMAND_QUEUE_DEPTH_MAX: usize = 256;

/// Inbound requests read off the network but not yet taken by a shard. When
/// full the QUIC thread stops reading further request streams.
pub const INBOUND_QUEUE_DEPTH_MAX: usize = 256;

/// Longest a request may wait for its response, beyond the long-poll it asked
/// for. A peer that stops answering fails the request instead of holding the
/// permit forever.
pub const REQUEST_TIMEOUT_MARGIN_MS: u64 = 10_000;

/// Per-stream receive window. A whole fetch response body of a few MiB fits
/// in one or two windows, so one round trip is not cut into many.
pub const STREAM_RECEIVE_WINDOW_BYTES: u32 = 16 << 20;

/// Per-connection receive and send windows: what one peer connection may hold
/// buffered in each direction, over all its streams.
pub const CONNECTION_WINDOW_BYTES: u32 = 64 << 20;

/// Longest a connection attempt may take. A peer that is down does not
/// answer at all (QUIC ignores ICMP unreachable), so without this a request
/// to it would wait out the whole idle timeout.
pub const CONNECT_TIMEOUT_MS: u64 = 3_000;

/// Keep-alive interval and idle timeout: a silent peer is noticed within the
/// idle timeout, and the next request reconnects.
pub const KEEP_ALIVE_MS: u64 = 2_000;
pub const IDLE_TIMEOUT_MS: u32 = 10_000;

/// UDP socket buffer sizes asked of the kernel (capped by `net.core.rmem_max`
/// and `wmem_max`); bursts of a multi-MiB response would otherwise drop.
pub const UDP_SOCKET_BUFFER_BYTES: usize = 8 << 20;
