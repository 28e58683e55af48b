//! Kafka's `__consumer_offsets` record formats, byte for byte.
//!
//! Keys and values are Kafka's own coordinator record schemas, so Kafka tools
//! (`kafka-console-consumer --formatter ...GroupMetadataManager$...`,
//! `kafka-dump-log --offsets-decoder`) read what Weir writes. All integers are
//! big-endian. Non-flexible versions use `string` = i16 length + UTF-8 (length
//! −1 = null) and `bytes` = i32 length + data. Flexible versions (value
//! version 4) use compact (unsigned-varint length + 1) strings/bytes/arrays and
//! end each struct with a tagged-field section.
//!
//! ```text
//! key version 0|1  OffsetCommitKey    : i16 version | string group | string topic | i32 partition
//! key version 2    GroupMetadataKey   : i16 version | string group
//!
//! OffsetCommitValue v3 (written)      : i16 3 | i64 offset | i32 leader_epoch
//!                                     | string metadata | i64 commit_timestamp
//!   (read: v0 offset|metadata|commit_ts, v1 +expire_ts, v2 = v0, v4 flexible v3)
//!
//! GroupMetadataValue v3 (written)     : i16 3 | string protocol_type | i32 generation
//!                                     | nullable string protocol | nullable string leader
//!                                     | i64 current_state_timestamp
//!                                     | i32 member count, then per member:
//!                                       string member_id | nullable string group_instance_id
//!                                       | string client_id | string client_host
//!                                       | i32 rebalance_timeout | i32 session_timeout
//!                                       | bytes subscription | bytes assignment
//!   (read: v0 without rebalance timeout, timestamp, instance id; v1 adds the
//!    rebalance timeout; v2 the timestamp; v3 the instance id; v4 flexible v3)
//! ```
//!
//! A tombstone (null value) deletes the key. Decoders never trust a length
//! prefix further than the bytes actually present.

use bytes::{BufMut, Bytes, BytesMut};

/// Key version Kafka writes for offset commits.
pub const OFFSET_COMMIT_KEY_VERSION: i16 = 1;
/// Key version of group metadata.
pub const GROUP_METADATA_KEY_VERSION: i16 = 2;
/// Value version Weir writes for offset commits.
pub const OFFSET_COMMIT_VALUE_VERSION: i16 = 3;
/// Value version Weir writes for group metadata.
pub const GROUP_METADATA_VALUE_VERSION: i16 = 3;

/// Why a stored record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record truncated: needed {needed} more bytes at byte {at}")]
    Truncated { at: usize, needed: usize },
    #[error("invalid length {0}")]
    InvalidLength(i64),
    #[error("string is not valid UTF-8")]
    Utf8,
    #[error("unexpected null for a non-nullable field")]
    UnexpectedNull,
    #[error("unsupported {kind} version {version}")]
    UnsupportedVersion { kind: &'static str, version: i16 },
    #[error("{0} trailing bytes after key")]
    TrailingBytes(usize),
    #[error("varint too long")]
    Varint,
}

/// A decoded `__consumer_offsets` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    OffsetCommit { group: String, topic: String, partition: i32 },
    GroupMetadata { group: String },
}

/// Value of an offset commit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitValue {
    pub offset: i64,
    /// −1 when the client did not say.
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
    /// Only present in value version 1; −1 otherwise. Weir does not expire
    /// offsets by it.
    pub expire_timestamp_ms: i64,
}

/// One member inside a [`GroupMetadataValue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberMetadataValue {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// The member's metadata for the group's selected protocol.
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// Value of a group metadata record: a snapshot of the group after a
/// rebalance completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetadataValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// −1 when unknown (versions before 2).
    pub current_state_timestamp_ms: i64,
    pub members: Vec<MemberMetadataValue>,
}

// ---------------------------------------------------------------- encoding

fn put_string(buf: &mut BytesMut, s: &str) {
    let len = i16::try_from(s.len())
        .expect("string field longer than i16::MAX is rejected before encoding");
    buf.put_i16(len);
    buf.put_slice(s.as_bytes());
}

fn put_nullable_string(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_string(buf, s),
        None => buf.put_i16(-1),
    }
}

fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    let len = i32::try_from(b.len()).expect("bytes field longer than i32::MAX");
    buf.put_i32(len);
    buf.put_slice(b);
}

impl RecordKey {
    /// Encodes the key in the version Kafka writes (1 for offsets, 2 for groups).
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        match self {
            RecordKey::OffsetCommit { group, topic, partition } => {
                buf.put_i16(OFFSET_COMMIT_KEY_VERSION);
                put_string(&mut buf, group);
                put_string(&mut buf, topic);
                buf.put_i32(*partition);
            }
            RecordKey::GroupMetadata { group } => {
                buf.put_i16(GROUP_METADATA_KEY_VERSION);
                put_string(&mut buf, group);
            }
        }
        buf.freeze()
    }

    /// Decodes a key. `Ok(None)` is a well-formed key of a kind this
    /// coordinator does not own (key versions 3 and up belong to KIP-848
    /// consumer groups, share groups and other coordinators' records); replay
    /// skips those.
    pub fn decode(bytes: &[u8]) -> Result<Option<RecordKey>, RecordError> {
        let mut r = Reader::new(bytes);
        let version = r.i16()?;
        let key = match version {
            0 | 1 => {
                let group = r.string()?;
                let topic = r.string()?;
                let partition = r.i32()?;
                RecordKey::OffsetCommit { group, topic, partition }
            }
            2 => RecordKey::GroupMetadata { group: r.string()? },
            v if v >= 3 => return Ok(None),
            v => return Err(RecordError::UnsupportedVersion { kind: "key", version: v }),
        };
        if r.remaining() != 0 {
            return Err(RecordError::TrailingBytes(r.remaining()));
        }
        Ok(Some(key))
    }
}

impl OffsetCommitValue {
    /// Encodes as value version 3.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(24 + self.metadata.len());
        buf.put_i16(OFFSET_COMMIT_VALUE_VERSION);
        buf.put_i64(self.offset);
        buf.put_i32(self.leader_epoch);
        put_string(&mut buf, &self.metadata);
        buf.put_i64(self.commit_timestamp_ms);
        buf.freeze()
    }

    /// Decodes value versions 0 to 4. Bytes after the known fields are
    /// ignored, as Kafka's readers do, for forward compatibility.
    pub fn decode(bytes: &[u8]) -> Result<OffsetCommitValue, RecordError> {
        let mut r = Reader::new(bytes);
        let version = r.i16()?;
        if !(0..=4).contains(&version) {
            return Err(RecordError::UnsupportedVersion { kind: "offset commit value", version });
        }
        let flexible = version >= 4;
        let offset = r.i64()?;
        let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
        let metadata = if flexible { r.compact_string()? } else { r.string()? };
        let commit_timestamp_ms = r.i64()?;
        let expire_timestamp_ms = if version == 1 { r.i64()? } else { -1 };
        if flexible {
            r.skip_tagged_fields()?;
        }
        Ok(OffsetCommitValue {
            offset,
            leader_epoch,
            metadata,
            commit_timestamp_ms,
            expire_timestamp_ms,
        })
    }
}

impl GroupMetadataValue {
    /// Encodes as value version 3.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(self.encoded_len_estimate());
        buf.put_i16(GROUP_METADATA_VALUE_VERSION);
        put_string(&mut buf, &self.protocol_type);
        buf.put_i32(self.generation);
        put_nullable_string(&mut buf, self.protocol.as_deref());
        put_nullable_string(&mut buf, self.leader.as_deref());
        buf.put_i64(self.current_state_timestamp_ms);
        buf.put_i32(i32::try_from(self.members.len()).expect("member count bounded by limits"));
        for m in &self.members {
            put_string(&mut buf, &m.member_id);
            put_nullable_string(&mut buf, m.group_instance_id.as_deref());
            put_string(&mut buf, &m.client_id);
            put_string(&mut buf, &m.client_host);
            buf.put_i32(m.rebalance_timeout_ms);
            buf.put_i32(m.session_timeout_ms);
            put_bytes(&mut buf, &m.subscription);
            put_bytes(&mut buf, &m.assignment);
        }
        buf.freeze()
    }

    /// Upper bound on the encoded size, used for limit checks and capacity.
    pub fn encoded_len_estimate(&self) -> usize {
        let strings = self.protocol_type.len()
            + self.protocol.as_ref().map_or(0, String::len)
            + self.leader.as_ref().map_or(0, String::len);
        let members: usize = self
            .members
            .iter()
            .map(|m| {
                24 + m.member_id.len()
                    + m.group_instance_id.as_ref().map_or(0, String::len)
                    + m.client_id.len()
                    + m.client_host.len()
                    + m.subscription.len()
                    + m.assignment.len()
            })
            .sum();
        24 + strings + members
    }

    /// Decodes value versions 0 to 4. Bytes after the known fields are
    /// ignored, as Kafka's readers do.
    pub fn decode(bytes: &[u8]) -> Result<GroupMetadataValue, RecordError> {
        let mut r = Reader::new(bytes);
        let version = r.i16()?;
        if !(0..=4).contains(&version) {
            return Err(RecordError::UnsupportedVersion { kind: "group metadata value", version });
        }
        let flexible = version >= 4;
        let string = |r: &mut Reader<'_>| if flexible { r.compact_string() } else { r.string() };
        let nullable = |r: &mut Reader<'_>| {
            if flexible { r.compact_nullable_string() } else { r.nullable_string() }
        };
        let protocol_type = string(&mut r)?;
        let generation = r.i32()?;
        let protocol = nullable(&mut r)?;
        let leader = nullable(&mut r)?;
        let current_state_timestamp_ms = if version >= 2 { r.i64()? } else { -1 };
        // Each member takes at least 16 bytes even when every field is empty,
        // so a count larger than that bound is corrupt, not a reason to allocate.
        let count = if flexible { r.compact_len()? } else { r.len_i32()? };
        if count > r.remaining() / 16 + 1 {
            return Err(RecordError::InvalidLength(count as i64));
        }
        let mut members = Vec::with_capacity(count);
        for _ in 0..count {
            let member_id = string(&mut r)?;
            let group_instance_id = if version >= 3 { nullable(&mut r)? } else { None };
            let client_id = string(&mut r)?;
            let client_host = string(&mut r)?;
            let rebalance_timeout_ms = if version >= 1 { r.i32()? } else { -1 };
            let session_timeout_ms = r.i32()?;
            let subscription = if flexible { r.compact_bytes()? } else { r.bytes()? };
            let assignment = if flexible { r.compact_bytes()? } else { r.bytes()? };
            if flexible {
                r.skip_tagged_fields()?;
            }
            let rebalance_timeout_ms =
                if rebalance_timeout_ms < 0 { session_timeout_ms } else { rebalance_timeout_ms };
            members.push(MemberMetadataValue {
                member_id,
                group_instance_id,
                client_id,
                client_host,
                rebalance_timeout_ms,
                session_timeout_ms,
                subscription,
                assignment,
            });
        }
        if flexible {
            r.skip_tagged_fields()?;
        }
        Ok(GroupMetadataValue {
            protocol_type,
            generation,
            protocol,
            leader,
            current_state_timestamp_ms,
            members,
        })
    }
}

// ---------------------------------------------------------------- decoding

/// Bounds-checked big-endian reader over a borrowed buffer.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.remaining() < n {
            return Err(RecordError::Truncated { at: self.pos, needed: n - self.remaining() });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub(crate) fn i16(&mut self) -> Result<i16, RecordError> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    pub(crate) fn i32(&mut self) -> Result<i32, RecordError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    pub(crate) fn i64(&mut self) -> Result<i64, RecordError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    fn utf8(&mut self, len: usize) -> Result<String, RecordError> {
        let s = self.take(len)?;
        std::str::from_utf8(s).map(str::to_owned).map_err(|_| RecordError::Utf8)
    }

    pub(crate) fn nullable_string(&mut self) -> Result<Option<String>, RecordError> {
        let len = self.i16()?;
        match len {
            -1 => Ok(None),
            l if l < 0 => Err(RecordError::InvalidLength(i64::from(l))),
            l => self.utf8(l as usize).map(Some),
        }
    }

    pub(crate) fn string(&mut self) -> Result<String, RecordError> {
        self.nullable_string()?.ok_or(RecordError::UnexpectedNull)
    }

    fn len_i32(&mut self) -> Result<usize, RecordError> {
        let len = self.i32()?;
        usize::try_from(len).map_err(|_| RecordError::InvalidLength(i64::from(len)))
    }

    pub(crate) fn nullable_bytes_len(&mut self) -> Result<Option<usize>, RecordError> {
        let len = self.i32()?;
        match len {
            -1 => Ok(None),
            l if l < 0 => Err(RecordError::InvalidLength(i64::from(l))),
            l => Ok(Some(l as usize)),
        }
    }

    fn bytes(&mut self) -> Result<Bytes, RecordError> {
        let len = self.nullable_bytes_len()?.ok_or(RecordError::UnexpectedNull)?;
        Ok(Bytes::copy_from_slice(self.take(len)?))
    }

    fn unsigned_varint(&mut self) -> Result<u32, RecordError> {
        let mut value = 0u32;
        for i in 0..5 {
            let b = self.array::<1>()?[0];
            value |= u32::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(RecordError::Varint)
    }

    /// Compact length: varint N+1, where 0 means null.
    fn compact_nullable_len(&mut self) -> Result<Option<usize>, RecordError> {
        let n = self.unsigned_varint()?;
        Ok(if n == 0 { None } else { Some((n - 1) as usize) })
    }

    fn compact_len(&mut self) -> Result<usize, RecordError> {
        self.compact_nullable_len()?.ok_or(RecordError::UnexpectedNull)
    }

    fn compact_nullable_string(&mut self) -> Result<Option<String>, RecordError> {
        match self.compact_nullable_len()? {
            None => Ok(None),
            Some(len) => self.utf8(len).map(Some),
        }
    }

    fn compact_string(&mut self) -> Result<String, RecordError> {
        self.compact_nullable_string()?.ok_or(RecordError::UnexpectedNull)
    }

    fn compact_bytes(&mut self) -> Result<Bytes, RecordError> {
        let len = self.compact_len()?;
        Ok(Bytes::copy_from_slice(self.take(len)?))
    }

    fn skip_tagged_fields(&mut self) -> Result<(), RecordError> {
        let count = self.unsigned_varint()?;
        for _ in 0..count {
            let _tag = self.unsigned_varint()?;
            let size = self.unsigned_varint()? as usize;
            self.take(size)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_commit_key_layout_matches_kafka() {
        let key = RecordKey::OffsetCommit { group: "g".into(), topic: "t1".into(), partition: 3 };
        let bytes = key.encode();
        #[rustfmt::skip]
        let expected: &[u8] = &[
            0, 1,             // key version 1
            0, 1, b'g',       // group
            0, 2, b't', b'1', // topic
            0, 0, 0, 3,       // partition
        ];
        assert_eq!(&bytes[..], expected);
        assert_eq!(RecordKey::decode(&bytes).unwrap(), Some(key.clone()));
        // Version 0 keys have the same layout.
        let mut v0 = bytes.to_vec();
        v0[1] = 0;
        assert_eq!(RecordKey::decode(&v0).unwrap(), Some(key));
    }

    #[test]
    fn group_metadata_key_layout_matches_kafka() {
        let key = RecordKey::GroupMetadata { group: "grp".into() };
        assert_eq!(&key.encode()[..], &[0, 2, 0, 3, b'g', b'r', b'p']);
        assert_eq!(RecordKey::decode(&key.encode()).unwrap(), Some(key));
        // Key versions of other coordinators are skipped, not errors.
        assert_eq!(RecordKey::decode(&[0, 3, 0, 1, b'x']).unwrap(), None);
        assert!(RecordKey::decode(&[0, 2, 0, 5, b'x']).is_err());
        assert!(RecordKey::decode(&[0, 2, 0, 1, b'x', 9]).is_err());
        assert!(RecordKey::decode(&[0xFF, 0xFF]).is_err());
    }

    #[test]
    fn offset_commit_value_layout_matches_kafka() {
        let v = OffsetCommitValue {
            offset: 42,
            leader_epoch: 7,
            metadata: "m".into(),
            commit_timestamp_ms: 1000,
            expire_timestamp_ms: -1,
        };
        #[rustfmt::skip]
        let expected: &[u8] = &[
            0, 3,                        // value version 3
            0, 0, 0, 0, 0, 0, 0, 42,     // offset
            0, 0, 0, 7,                  // leader epoch
            0, 1, b'm',                  // metadata
            0, 0, 0, 0, 0, 0, 0x03, 0xE8 // commit timestamp 1000
        ];
        assert_eq!(&v.encode()[..], expected);
        assert_eq!(OffsetCommitValue::decode(expected).unwrap(), v);
    }

    #[test]
    fn offset_commit_value_older_and_flexible_versions_decode() {
        // v1: offset, metadata, commit ts, expire ts.
        let mut b = BytesMut::new();
        b.put_i16(1);
        b.put_i64(5);
        put_string(&mut b, "");
        b.put_i64(10);
        b.put_i64(20);
        let v = OffsetCommitValue::decode(&b).unwrap();
        assert_eq!(
            (v.offset, v.leader_epoch, v.commit_timestamp_ms, v.expire_timestamp_ms),
            (5, -1, 10, 20)
        );
        // v4: flexible, compact metadata, tagged fields (one unknown tag).
        let mut b = BytesMut::new();
        b.put_i16(4);
        b.put_i64(9);
        b.put_i32(2);
        b.put_u8(3); // "ab" as compact string
        b.put_slice(b"ab");
        b.put_i64(77);
        b.put_u8(1); // one tagged field
        b.put_u8(0); // tag 0
        b.put_u8(2); // size 2
        b.put_slice(&[1, 2]);
        let v = OffsetCommitValue::decode(&b).unwrap();
        assert_eq!(
            (v.offset, v.leader_epoch, v.metadata.as_str(), v.commit_timestamp_ms),
            (9, 2, "ab", 77)
        );
    }

    fn sample_group() -> GroupMetadataValue {
        GroupMetadataValue {
            protocol_type: "consumer".into(),
            generation: 3,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            current_state_timestamp_ms: 99,
            members: vec![MemberMetadataValue {
                member_id: "m1".into(),
                group_instance_id: Some("i1".into()),
                client_id: "c".into(),
                client_host: "/h".into(),
                rebalance_timeout_ms: 300,
                session_timeout_ms: 100,
                subscription: Bytes::from_static(&[1, 2]),
                assignment: Bytes::from_static(&[3]),
            }],
        }
    }

    #[test]
    fn group_metadata_value_layout_matches_kafka() {
        let g = GroupMetadataValue {
            protocol_type: "consumer".into(),
            generation: 1,
            protocol: None,
            leader: None,
            current_state_timestamp_ms: 5,
            members: vec![],
        };
        #[rustfmt::skip]
        let expected: &[u8] = &[
            0, 3,                                        // value version 3
            0, 8, b'c', b'o', b'n', b's', b'u', b'm', b'e', b'r',
            0, 0, 0, 1,                                  // generation
            0xFF, 0xFF,                                  // protocol: null
            0xFF, 0xFF,                                  // leader: null
            0, 0, 0, 0, 0, 0, 0, 5,                      // current state timestamp
            0, 0, 0, 0,                                  // no members
        ];
        assert_eq!(&g.encode()[..], expected);
        assert_eq!(GroupMetadataValue::decode(expected).unwrap(), g);

        let g = sample_group();
        let bytes = g.encode();
        #[rustfmt::skip]
        let member: &[u8] = &[
            0, 0, 0, 1,               // one member
            0, 2, b'm', b'1',         // member id
            0, 2, b'i', b'1',         // group instance id
            0, 1, b'c',               // client id
            0, 2, b'/', b'h',         // client host
            0, 0, 1, 44,              // rebalance timeout 300
            0, 0, 0, 100,             // session timeout
            0, 0, 0, 2, 1, 2,         // subscription
            0, 0, 0, 1, 3,            // assignment
        ];
        assert!(bytes.ends_with(member));
        assert_eq!(GroupMetadataValue::decode(&bytes).unwrap(), g);
        assert!(g.encoded_len_estimate() >= bytes.len());
    }

    #[test]
    fn group_metadata_value_v0_and_v4_decode() {
        // v0: no timestamp, no instance id, no rebalance timeout.
        let mut b = BytesMut::new();
        b.put_i16(0);
        put_string(&mut b, "consumer");
        b.put_i32(2);
        put_nullable_string(&mut b, Some("range"));
        put_nullable_string(&mut b, Some("m"));
        b.put_i32(1);
        put_string(&mut b, "m");
        put_string(&mut b, "c");
        put_string(&mut b, "h");
        b.put_i32(10_000);
        put_bytes(&mut b, &[1]);
        put_bytes(&mut b, &[2]);
        let g = GroupMetadataValue::decode(&b).unwrap();
        assert_eq!(g.generation, 2);
        assert_eq!(g.current_state_timestamp_ms, -1);
        assert_eq!(g.members[0].rebalance_timeout_ms, 10_000);
        assert_eq!(g.members[0].group_instance_id, None);

        // v4: flexible.
        let mut b = BytesMut::new();
        b.put_i16(4);
        b.put_u8(2);
        b.put_slice(b"c");
        b.put_i32(1);
        b.put_u8(0); // protocol null
        b.put_u8(2);
        b.put_slice(b"m"); // leader
        b.put_i64(3);
        b.put_u8(2); // one member
        b.put_u8(2);
        b.put_slice(b"m");
        b.put_u8(0); // instance id null
        b.put_u8(1); // client id ""
        b.put_u8(1); // host ""
        b.put_i32(5);
        b.put_i32(6);
        b.put_u8(2);
        b.put_slice(&[9]);
        b.put_u8(1); // empty assignment
        b.put_u8(0); // member tagged fields
        b.put_u8(0); // struct tagged fields
        let g = GroupMetadataValue::decode(&b).unwrap();
        assert_eq!(g.protocol_type, "c");
        assert_eq!(g.protocol, None);
        assert_eq!(g.leader.as_deref(), Some("m"));
        assert_eq!(g.members.len(), 1);
        assert_eq!((g.members[0].rebalance_timeout_ms, g.members[0].session_timeout_ms), (5, 6));
        assert_eq!(&g.members[0].subscription[..], &[9]);
    }

    #[test]
    fn malformed_values_are_errors_not_panics() {
        let bytes = sample_group().encode();
        for cut in 0..bytes.len() {
            assert!(GroupMetadataValue::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        // Absurd member count.
        let mut b = BytesMut::new();
        b.put_i16(3);
        put_string(&mut b, "");
        b.put_i32(0);
        b.put_i16(-1);
        b.put_i16(-1);
        b.put_i64(0);
        b.put_i32(i32::MAX);
        assert!(GroupMetadataValue::decode(&b).is_err());
        assert!(OffsetCommitValue::decode(&[0, 9]).is_err());
        assert!(OffsetCommitValue::decode(&[0, 3, 0]).is_err());
    }
}
