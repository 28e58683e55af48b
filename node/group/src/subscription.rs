//! Minimal decoding of the consumer protocol's subscription metadata.
//!
//! The coordinator treats member metadata as opaque, except for one question
//! OffsetDelete must answer: is some member of a `consumer` group subscribed to
//! topic T? Every version of `ConsumerProtocolSubscription` starts the same
//! way, and later versions only append fields, so reading the topic list is
//! enough and stays correct for versions newer than this code:
//!
//! ```text
//! i16 version | i32 topic count | count × (i16 length + UTF-8 topic) | ...
//! ```

use crate::records::{Reader, RecordError};

/// Topics a consumer subscribed to, decoded from its JoinGroup metadata for
/// the `consumer` protocol type. Malformed metadata is an error; the caller
/// decides what that means (Kafka treats the group's topics as unknown).
pub fn subscribed_topics(metadata: &[u8]) -> Result<Vec<String>, RecordError> {
    let mut r = Reader::new(metadata);
    let version = r.i16()?;
    if version < 0 {
        return Err(RecordError::UnsupportedVersion { kind: "consumer subscription", version });
    }
    let count = r.i32()?;
    // A topic takes at least its 2-byte length, which bounds a sane count by
    // the bytes present; anything larger is corrupt and allocates nothing.
    let count = usize::try_from(count).map_err(|_| RecordError::InvalidLength(i64::from(count)))?;
    if count > r.remaining() / 2 {
        return Err(RecordError::InvalidLength(count as i64));
    }
    let mut topics = Vec::with_capacity(count);
    for _ in 0..count {
        topics.push(r.string()?);
    }
    Ok(topics)
}

#[cfg(test)]
pub(crate) fn encode_subscription(topics: &[&str]) -> bytes::Bytes {
    use bytes::BufMut;
    let mut b = bytes::BytesMut::new();
    b.put_i16(1);
    b.put_i32(topics.len() as i32);
    for t in topics {
        b.put_i16(t.len() as i16);
        b.put_slice(t.as_bytes());
    }
    b.put_i32(-1); // null user data
    b.put_i32(0); // no owned partitions
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_topics_and_rejects_garbage() {
        assert_eq!(subscribed_topics(&encode_subscription(&["a", "bc"])).unwrap(), vec!["a", "bc"]);
        assert!(subscribed_topics(&[0, 0, 0x7F, 0xFF, 0xFF, 0xFF]).is_err());
        assert!(subscribed_topics(&[0, 0, 0, 0, 0, 1, 0, 5, b'a']).is_err());
        assert!(subscribed_topics(&[]).is_err());
        assert!(subscribed_topics(&[0xFF, 0xFF, 0, 0, 0, 0]).is_err());
    }
}
