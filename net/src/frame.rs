//! The wire format of one node-to-node message, sans-IO.
//!
//! One frame travels on one direction of one QUIC bidirectional stream and is
//! followed by the end of that direction (FIN):
//!
//! ```text
//!  offset  size  field (little-endian)
//!  0       4     magic  b"WRQ\0"
//!  4       2     version (VERSION)
//!  6       2     flags, must be 0
//!  8       4     header_len  (1 ..= FRAME_HEADER_BYTES_MAX)
//!  12      4     body_len    (0 ..= FRAME_BODY_BYTES_MAX)
//!  16      header_len   rkyv 0.8 archive of `Header` (aligned, little-endian)
//!  ..      body_len     body: raw bytes, never looked into by the transport
//! ```
//!
//! The header is validated with rkyv's bytecheck and then with `Header::check`
//! (lengths against `limits`, body length against what the header says);
//! malformed input is a `FrameError`, never a panic. The body of a fetch
//! response is the record batches of all partitions concatenated in header
//! order, exactly as read from the leader's log: it is carried as `Bytes` and
//! sliced per partition, never re-encoded.
//!
//! Header types carry plain integers (`i32` node ids, `i64` offsets) because
//! the `weir_proto` newtypes are not rkyv types; the replica core converts at
//! its boundary. Both ends run the same Weir version (`VERSION` is checked);
//! this format is not persisted.

use bytes::{BufMut, Bytes, BytesMut};
use rkyv::util::AlignedVec;

use super::limits::{
    FETCH_PARTITIONS_MAX, FETCH_WAIT_MS_MAX, FRAME_BODY_BYTES_MAX, FRAME_HEADER_BYTES_MAX,
    TOPIC_NAME_BYTES_MAX,
};

/// First four bytes of every frame.
pub const MAGIC: [u8; 4] = *b"WRQ\0";
/// Wire version; a peer speaking another version is refused.
pub const VERSION: u16 = 1;
/// Size of the fixed prefix before the header.
pub const PREFIX_BYTES: usize = 16;

/// rkyv archives are read in place, so the header bytes must sit at this
/// alignment (rkyv's default format aligns to at most 16).
const HEADER_ALIGN: usize = 16;

/// Why a frame was refused. Every variant is an expected outcome of bad peer
/// input (or a local caller passing an over-limit frame), not a bug.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("bad frame magic {0:02x?}")]
    Magic([u8; 4]),
    #[error("unsupported frame version {0} (this node speaks {VERSION})")]
    Version(u16),
    #[error("unknown frame flags {0:#x}")]
    Flags(u16),
    #[error("frame header of {0} bytes outside 1..={FRAME_HEADER_BYTES_MAX}")]
    HeaderLen(usize),
    #[error("frame body of {0} bytes over {FRAME_BODY_BYTES_MAX}")]
    BodyLen(usize),
    #[error("frame truncated: {0}")]
    Truncated(&'static str),
    #[error("{0} trailing bytes after the frame")]
    Trailing(usize),
    #[error("invalid frame header: {0}")]
    Archive(String),
    #[error("frame header fails a limit: {0}")]
    Limit(String),
    #[error("unexpected message {got}, expected {expected}")]
    Unexpected { got: &'static str, expected: &'static str },
}

/// The fixed prefix of a frame, already checked against the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    pub header_len: usize,
    pub body_len: usize,
}

impl Prefix {
    pub fn new(header_len: usize, body_len: usize) -> Result<Prefix, FrameError> {
        if header_len == 0 || header_len > FRAME_HEADER_BYTES_MAX {
            return Err(FrameError::HeaderLen(header_len));
        }
        if body_len > FRAME_BODY_BYTES_MAX {
            return Err(FrameError::BodyLen(body_len));
        }
        Ok(Prefix { header_len, body_len })
    }

    pub fn encode(&self) -> [u8; PREFIX_BYTES] {
        let mut out = [0u8; PREFIX_BYTES];
        out[0..4].copy_from_slice(&MAGIC);
        out[4..6].copy_from_slice(&VERSION.to_le_bytes());
        out[6..8].copy_from_slice(&0u16.to_le_bytes());
        // Both fit: `new` bounded them far below u32::MAX.
        out[8..12].copy_from_slice(&(self.header_len as u32).to_le_bytes());
        out[12..16].copy_from_slice(&(self.body_len as u32).to_le_bytes());
        out
    }

    /// Checks the prefix before anything it claims is allocated.
    pub fn decode(bytes: &[u8; PREFIX_BYTES]) -> Result<Prefix, FrameError> {
        let magic: [u8; 4] = bytes[0..4].try_into().expect("4 bytes");
        if magic != MAGIC {
            return Err(FrameError::Magic(magic));
        }
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        if version != VERSION {
            return Err(FrameError::Version(version));
        }
        let flags = u16::from_le_bytes([bytes[6], bytes[7]]);
        if flags != 0 {
            return Err(FrameError::Flags(flags));
        }
        let header_len = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize;
        let body_len = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes")) as usize;
        Prefix::new(header_len, body_len)
    }
}

/// One partition in a follower's fetch: where the follower's log ends.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct FetchPartition {
    pub topic: String,
    pub partition: i32,
    /// The follower's log end offset: the first offset it wants.
    pub fetch_offset: i64,
    /// Epoch of the last batch the follower holds, so the leader can detect a
    /// diverging log (Kafka's `LastFetchedEpoch`); -1 when the log is empty.
    /// With `epoch_query`: the epoch whose end offset the follower asks for.
    pub last_fetched_epoch: i32,
    /// The leader epoch the follower is following (Kafka's
    /// `CurrentLeaderEpoch`): a leader in another epoch refuses the request.
    pub current_leader_epoch: i32,
    /// Kafka's OffsetForLeaderEpoch instead of a fetch: the answer carries
    /// `epoch_end` and no records.
    pub epoch_query: bool,
}

/// A follower shard's long-poll fetch, covering every partition that shard
/// follows on the leader it is sent to. Body: empty.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct FetchRequest {
    /// The follower node. The receiving endpoint refuses the request unless
    /// the follower's certificate names this node.
    pub follower: i32,
    /// The follower shard that sent it, so the response finds its way back and
    /// the leader can tell one follower shard's fetch session from another's.
    pub shard: u32,
    /// The follower's registration with the controller (Kafka's broker
    /// epoch, KIP-903), so the leader never admits an older incarnation to
    /// the ISR.
    pub broker_epoch: i64,
    pub partitions: Vec<FetchPartition>,
    /// How long the leader may hold the request waiting for `min_bytes`.
    pub max_wait_ms: u32,
    pub min_bytes: u32,
    /// Upper bound on the response body (at most `FRAME_BODY_BYTES_MAX`).
    pub max_bytes: u32,
}

/// Where a follower's log diverges from the leader's: the follower truncates
/// to `end_offset` (the end of `epoch` on the leader) before fetching on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct DivergingEpoch {
    pub epoch: i32,
    pub end_offset: i64,
}

/// One partition's part of a fetch response. Its batches are the next
/// `records_len` bytes of the response body.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct FetchPartitionResponse {
    pub topic: String,
    pub partition: i32,
    /// Kafka error code (0 = none).
    pub error: i16,
    pub high_watermark: i64,
    pub log_start: i64,
    pub diverging_epoch: Option<DivergingEpoch>,
    /// Answer to an epoch query: the largest epoch ≤ the asked one and where
    /// it ends in the leader's log.
    pub epoch_end: Option<DivergingEpoch>,
    /// The leader's log end (for out-of-range answers).
    pub log_end: i64,
    pub records_len: u32,
}

/// The leader's answer to a `FetchRequest`. Body: the batches of all
/// partitions concatenated, in the order of `partitions`.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct FetchResponse {
    pub partitions: Vec<FetchPartitionResponse>,
}

impl FetchResponse {
    /// Each partition with its slice of `body` (no copy). `Header::check` has
    /// already proved the lengths add up to the body.
    pub fn split_body<'a>(
        &'a self,
        body: &'a Bytes,
    ) -> impl Iterator<Item = (&'a FetchPartitionResponse, Bytes)> + 'a {
        let mut at = 0usize;
        self.partitions.iter().map(move |p| {
            let end = at + p.records_len as usize;
            let slice = body.slice(at..end);
            at = end;
            (p, slice)
        })
    }
}

/// Which Raft RPC a `RaftRequest` / `RaftResponse` frame carries. The
/// controller quorum (weir-controller's `raft` module) owns the body's
/// encoding; the transport only routes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum RaftRpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

/// A Raft RPC from one controller member to another. Body: the encoded RPC
/// (opaque here; never empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct RaftRequest {
    /// The sending member. The receiving endpoint refuses the request unless
    /// the sender's certificate names this id.
    pub from: i32,
    pub rpc: RaftRpc,
}

/// The answer to a `RaftRequest`. Body: the encoded result (never empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct RaftResponse {
    pub rpc: RaftRpc,
}

/// Which node→controller RPC a `ControllerRequest` / `ControllerResponse`
/// frame carries (weir-controller's `remote::quic` module owns the bodies:
/// the controller's serde JSON types; the transport only routes them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum ControllerRpc {
    /// The serving controller's image and member id. Request body: empty.
    Hello,
    /// Run one command. Request body: the command (never empty).
    Submit,
    /// Long poll: the metadata deltas after `since_version`, held up to
    /// `max_wait_ms` (at most `FETCH_WAIT_MS_MAX`) while there are none.
    /// Request body: empty.
    Deltas { since_version: u64, max_wait_ms: u32 },
}

/// A storage node's request to a controller (quorum member or single
/// process). The receiving endpoint refuses it unless the sender's
/// certificate names node `from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ControllerRequest {
    pub from: i32,
    pub kind: ControllerRpc,
}

/// The controller's answer to a `ControllerRequest`. Body: the encoded
/// answer (never empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ControllerResponse {
    pub kind: ControllerRpc,
}

/// Every message the transport carries. Which variants are requests and
/// which responses is fixed (`is_request`).
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum Header {
    FetchRequest(FetchRequest),
    FetchResponse(FetchResponse),
    RaftRequest(RaftRequest),
    RaftResponse(RaftResponse),
    ControllerRequest(ControllerRequest),
    ControllerResponse(ControllerResponse),
}

impl Header {
    pub fn name(&self) -> &'static str {
        match self {
            Header::FetchRequest(_) => "FetchRequest",
            Header::FetchResponse(_) => "FetchResponse",
            Header::RaftRequest(_) => "RaftRequest",
            Header::RaftResponse(_) => "RaftResponse",
            Header::ControllerRequest(_) => "ControllerRequest",
            Header::ControllerResponse(_) => "ControllerResponse",
        }
    }

    pub fn is_request(&self) -> bool {
        matches!(
            self,
            Header::FetchRequest(_) | Header::RaftRequest(_) | Header::ControllerRequest(_)
        )
    }

    /// Checks the limits rkyv cannot know: list lengths, names, and that the
    /// body length is what the header says it is.
    pub fn check(&self, body_len: usize) -> Result<(), FrameError> {
        let limit = |what: String| Err(FrameError::Limit(what));
        let check_topic = |topic: &str| {
            if topic.is_empty() || topic.len() > TOPIC_NAME_BYTES_MAX {
                return limit(format!("topic name of {} bytes", topic.len()));
            }
            Ok(())
        };
        match self {
            Header::FetchRequest(r) => {
                if r.partitions.len() > FETCH_PARTITIONS_MAX {
                    return limit(format!("{} partitions in a fetch", r.partitions.len()));
                }
                for p in &r.partitions {
                    check_topic(&p.topic)?;
                }
                if r.max_wait_ms > FETCH_WAIT_MS_MAX {
                    return limit(format!("fetch max_wait_ms {}", r.max_wait_ms));
                }
                if r.max_bytes as usize > FRAME_BODY_BYTES_MAX {
                    return limit(format!("fetch max_bytes {}", r.max_bytes));
                }
                if body_len != 0 {
                    return limit(format!("fetch request with a {body_len}-byte body"));
                }
            }
            Header::FetchResponse(r) => {
                if r.partitions.len() > FETCH_PARTITIONS_MAX {
                    return limit(format!("{} partitions in a fetch response", r.partitions.len()));
                }
                let mut total = 0u64;
                for p in &r.partitions {
                    check_topic(&p.topic)?;
                    total += u64::from(p.records_len);
                }
                if total != body_len as u64 {
                    return limit(format!("records_len sum {total} != body of {body_len} bytes"));
                }
            }
            Header::RaftRequest(_) | Header::RaftResponse(_) => {
                if body_len == 0 {
                    return limit("a Raft frame without a body".into());
                }
            }
            Header::ControllerRequest(r) => match r.kind {
                ControllerRpc::Submit if body_len == 0 => {
                    return limit("a controller submit without a body".into());
                }
                ControllerRpc::Submit => {}
                ControllerRpc::Hello | ControllerRpc::Deltas { .. } if body_len != 0 => {
                    return limit(format!("controller request with a {body_len}-byte body"));
                }
                ControllerRpc::Deltas { max_wait_ms, .. } if max_wait_ms > FETCH_WAIT_MS_MAX => {
                    return limit(format!("deltas max_wait_ms {max_wait_ms}"));
                }
                ControllerRpc::Hello | ControllerRpc::Deltas { .. } => {}
            },
            Header::ControllerResponse(_) => {
                if body_len == 0 {
                    return limit("a controller response without a body".into());
                }
            }
        }
        Ok(())
    }

    /// The prefix and archived header of a frame carrying `body_len` body
    /// bytes; the body itself is sent after it as it is.
    pub fn encode_head(&self, body_len: usize) -> Result<Bytes, FrameError> {
        self.check(body_len)?;
        let archived = rkyv::to_bytes::<rkyv::rancor::Error>(self)
            .map_err(|e| FrameError::Archive(e.to_string()))?;
        let prefix = Prefix::new(archived.len(), body_len)?;
        let mut head = BytesMut::with_capacity(PREFIX_BYTES + archived.len());
        head.put_slice(&prefix.encode());
        head.put_slice(&archived);
        Ok(head.freeze())
    }

    /// Validates and deserializes an archived header. Copies into an aligned
    /// buffer when `bytes` is not aligned (headers are small).
    pub fn decode(bytes: &[u8]) -> Result<Header, FrameError> {
        if bytes.is_empty() || bytes.len() > FRAME_HEADER_BYTES_MAX {
            return Err(FrameError::HeaderLen(bytes.len()));
        }
        if (bytes.as_ptr() as usize).is_multiple_of(HEADER_ALIGN) {
            Self::decode_aligned(bytes)
        } else {
            let mut aligned = AlignedVec::<HEADER_ALIGN>::with_capacity(bytes.len());
            aligned.extend_from_slice(bytes);
            Self::decode_aligned(&aligned)
        }
    }

    fn decode_aligned(bytes: &[u8]) -> Result<Header, FrameError> {
        rkyv::from_bytes::<Header, rkyv::rancor::Error>(bytes)
            .map_err(|e| FrameError::Archive(e.to_string()))
    }
}

/// One decoded frame: a checked header and its untouched body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub header: Header,
    pub body: Bytes,
}

impl Frame {
    /// Encodes a whole frame into one buffer (tests, tools: the transport
    /// itself sends `encode_head` and the body as separate chunks).
    pub fn encode(&self) -> Result<Bytes, FrameError> {
        let head = self.header.encode_head(self.body.len())?;
        let mut out = BytesMut::with_capacity(head.len() + self.body.len());
        out.put_slice(&head);
        out.put_slice(&self.body);
        Ok(out.freeze())
    }

    /// Decodes a whole frame held in one buffer; the body is a slice of it.
    pub fn decode(buf: Bytes) -> Result<Frame, FrameError> {
        let prefix_bytes: &[u8; PREFIX_BYTES] = buf
            .get(..PREFIX_BYTES)
            .ok_or(FrameError::Truncated("prefix"))?
            .try_into()
            .expect("PREFIX_BYTES");
        let prefix = Prefix::decode(prefix_bytes)?;
        let header_end = PREFIX_BYTES + prefix.header_len;
        let body_end = header_end + prefix.body_len;
        if buf.len() < header_end {
            return Err(FrameError::Truncated("header"));
        }
        if buf.len() < body_end {
            return Err(FrameError::Truncated("body"));
        }
        if buf.len() > body_end {
            return Err(FrameError::Trailing(buf.len() - body_end));
        }
        let header = Header::decode(&buf[PREFIX_BYTES..header_end])?;
        header.check(prefix.body_len)?;
        Ok(Frame { header, body: buf.slice(header_end..body_end) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(lens: &[u32]) -> Header {
        Header::FetchResponse(FetchResponse {
            partitions: lens
                .iter()
                .enumerate()
                .map(|(i, &len)| FetchPartitionResponse {
                    topic: format!("t{i}"),
                    partition: i as i32,
                    error: 0,
                    high_watermark: 10,
                    log_start: 0,
                    diverging_epoch: (i == 1).then_some(DivergingEpoch { epoch: 3, end_offset: 7 }),
                    epoch_end: None,
                    log_end: 10,
                    records_len: len,
                })
                .collect(),
        })
    }

    #[test]
    fn round_trip_and_split() {
        let body = Bytes::from((0..300u32).map(|i| i as u8).collect::<Vec<_>>());
        let frame = Frame { header: response(&[100, 0, 200]), body: body.clone() };
        let decoded = Frame::decode(frame.encode().unwrap()).unwrap();
        assert_eq!(decoded, frame);
        let Header::FetchResponse(r) = &decoded.header else { panic!("kind") };
        let parts: Vec<_> = r.split_body(&decoded.body).map(|(_, b)| b).collect();
        assert_eq!(parts[0], body.slice(0..100));
        assert!(parts[1].is_empty());
        assert_eq!(parts[2], body.slice(100..300));
    }

    #[test]
    fn refuses_bad_prefixes_before_allocating() {
        let good = Frame { header: response(&[4]), body: Bytes::from_static(b"abcd") };
        let bytes = good.encode().unwrap().to_vec();
        let mut bad = bytes.clone();
        bad[0] ^= 1;
        assert!(matches!(Frame::decode(bad.into()), Err(FrameError::Magic(_))));
        let mut bad = bytes.clone();
        bad[4] = 9;
        assert!(matches!(Frame::decode(bad.into()), Err(FrameError::Version(9))));
        let mut bad = bytes.clone();
        bad[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(Frame::decode(bad.into()), Err(FrameError::HeaderLen(_))));
        let mut bad = bytes.clone();
        bad[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(Frame::decode(bad.into()), Err(FrameError::BodyLen(_))));
        let mut bad = bytes.clone();
        bad.push(0);
        assert!(matches!(Frame::decode(bad.into()), Err(FrameError::Trailing(1))));
        assert!(Frame::decode(Bytes::copy_from_slice(&bytes[..bytes.len() - 1])).is_err());
    }

    #[test]
    fn refuses_body_not_matching_header() {
        let frame = Frame { header: response(&[4]), body: Bytes::from_static(b"abc") };
        assert!(matches!(frame.encode(), Err(FrameError::Limit(_))));
    }

    #[test]
    fn raft_frames_round_trip_with_opaque_bodies() {
        let header = Header::RaftRequest(RaftRequest { from: 3, rpc: RaftRpc::Vote });
        assert!(header.is_request());
        let frame = Frame { header, body: Bytes::from_static(b"{\"vote\":1}") };
        assert_eq!(Frame::decode(frame.encode().unwrap()).unwrap(), frame);
        let header = Header::RaftResponse(RaftResponse { rpc: RaftRpc::AppendEntries });
        assert!(!header.is_request());
        let empty = Frame { header, body: Bytes::new() };
        assert!(matches!(empty.encode(), Err(FrameError::Limit(_))));
    }

    #[test]
    fn controller_frames_round_trip_and_check_their_bodies() {
        let deltas = ControllerRpc::Deltas { since_version: 7, max_wait_ms: 1000 };
        let header = Header::ControllerRequest(ControllerRequest { from: 3, kind: deltas });
        assert!(header.is_request());
        let frame = Frame { header: header.clone(), body: Bytes::new() };
        assert_eq!(Frame::decode(frame.encode().unwrap()).unwrap(), frame);
        let with_body = Frame { header, body: Bytes::from_static(b"x") };
        assert!(matches!(with_body.encode(), Err(FrameError::Limit(_))));
        let long = ControllerRpc::Deltas { since_version: 0, max_wait_ms: FETCH_WAIT_MS_MAX + 1 };
        let header = Header::ControllerRequest(ControllerRequest { from: 3, kind: long });
        assert!(matches!(header.encode_head(0), Err(FrameError::Limit(_))));
        let submit = ControllerRequest { from: 3, kind: ControllerRpc::Submit };
        assert!(Header::ControllerRequest(submit).encode_head(0).is_err());
        let header = Header::ControllerResponse(ControllerResponse { kind: ControllerRpc::Hello });
        assert!(!header.is_request());
        assert!(header.encode_head(0).is_err());
        let frame = Frame { header, body: Bytes::from_static(b"{}") };
        assert_eq!(Frame::decode(frame.encode().unwrap()).unwrap(), frame);
    }

    #[test]
    fn corrupted_headers_error_without_panicking() {
        let frame = Frame { header: response(&[1, 2, 3]), body: Bytes::from_static(b"abcdef") };
        let bytes = frame.encode().unwrap().to_vec();
        let header_end = bytes.len() - 6;
        // A deterministic xorshift walk over single- and multi-byte corruptions
        // of the header: each must decode or be refused, never panic.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut refused = 0;
        for _ in 0..20_000 {
            let mut bad = bytes.clone();
            for _ in 0..1 + next() % 4 {
                let at = PREFIX_BYTES + (next() as usize % (header_end - PREFIX_BYTES));
                bad[at] = next() as u8;
            }
            if Frame::decode(bad.into()).is_err() {
                refused += 1;
            }
        }
        assert!(refused > 0);
        // Pure garbage as a header.
        for len in [1usize, 7, 64, 1000] {
            let garbage: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let _ = Header::decode(&garbage);
        }
    }
}
