//! Zero-copy view of Kafka record batches (magic v2), as sent by clients and
//! as stored on disk.
//!
//! Layout (big-endian), see KAFKA-NOTES.md:
//!
//! ```text
//!  0..8   baseOffset i64         (not covered by the CRC; assigned by the leader)
//!  8..12  batchLength i32        (bytes after this field)
//! 12..16  partitionLeaderEpoch   (not covered by the CRC; set by the leader)
//! 16      magic i8 = 2
//! 17..21  crc u32 = CRC-32C of bytes 21..end
//! 21..23  attributes i16
//! 23..27  lastOffsetDelta i32
//! 27..35  baseTimestamp i64
//! 35..43  maxTimestamp i64
//! 43..51  producerId i64
//! 51..53  producerEpoch i16
//! 53..57  baseSequence i32
//! 57..61  recordsCount i32, then the (possibly compressed) records
//! ```
//!
//! The node never decodes records on the hot path: it validates the header and
//! CRC, then rewrites baseOffset and partitionLeaderEpoch in place.

use crate::ids::{LeaderEpoch, Offset, ProducerEpoch, ProducerId};
use std::ops::Range;

/// Bytes of the v2 batch header, up to and including recordsCount.
pub const BATCH_HEADER_LEN: usize = 61;
/// Bytes before the part counted by batchLength (baseOffset + batchLength).
pub const LOG_OVERHEAD: usize = 12;
/// Where the CRC-covered part of a batch begins.
const CRC_START: usize = 21;

const ATTR_COMPRESSION_MASK: i16 = 0x07;
const ATTR_LOG_APPEND_TIME: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch truncated: need {needed} bytes, have {have}")]
    Truncated { needed: usize, have: usize },
    #[error("unsupported record batch magic {0} (only v2 is accepted)")]
    BadMagic(i8),
    #[error("invalid batch length {0}")]
    BadLength(i32),
    #[error("batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("invalid batch header: {0}")]
    BadHeader(&'static str),
}

/// The parsed fixed header of one v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: Offset,
    pub batch_length: i32,
    pub partition_leader_epoch: LeaderEpoch,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: ProducerId,
    pub producer_epoch: ProducerEpoch,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl BatchHeader {
    /// Parses the fixed header at the start of `buf` without checking the CRC.
    /// Checks magic and that batchLength covers at least the header.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < BATCH_HEADER_LEN {
            // Report the magic error first if we can see it: a v0/v1 message set
            // is shorter and must be refused as unsupported, not as truncated.
            if buf.len() > 16 && buf[16] as i8 != 2 {
                return Err(BatchError::BadMagic(buf[16] as i8));
            }
            return Err(BatchError::Truncated { needed: BATCH_HEADER_LEN, have: buf.len() });
        }
        let magic = buf[16] as i8;
        if magic != 2 {
            return Err(BatchError::BadMagic(magic));
        }
        let batch_length = be_i32(buf, 8);
        if batch_length < (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32 {
            return Err(BatchError::BadLength(batch_length));
        }
        let header = BatchHeader {
            base_offset: Offset(be_i64(buf, 0)),
            batch_length,
            partition_leader_epoch: LeaderEpoch(be_i32(buf, 12)),
            magic,
            crc: be_u32(buf, 17),
            attributes: be_i16(buf, 21),
            last_offset_delta: be_i32(buf, 23),
            base_timestamp: be_i64(buf, 27),
            max_timestamp: be_i64(buf, 35),
            producer_id: ProducerId(be_i64(buf, 43)),
            producer_epoch: ProducerEpoch(be_i16(buf, 51)),
            base_sequence: be_i32(buf, 53),
            records_count: be_i32(buf, 57),
        };
        if header.last_offset_delta < 0 {
            return Err(BatchError::BadHeader("negative lastOffsetDelta"));
        }
        if header.records_count < 0 {
            return Err(BatchError::BadHeader("negative recordsCount"));
        }
        Ok(header)
    }

    /// Whole batch size in bytes, including baseOffset and batchLength.
    pub fn total_len(&self) -> usize {
        self.batch_length as usize + LOG_OVERHEAD
    }

    pub fn last_offset(&self) -> Offset {
        Offset(self.base_offset.0 + self.last_offset_delta as i64)
    }

    /// Number of offsets this batch occupies.
    pub fn offset_count(&self) -> i64 {
        self.last_offset_delta as i64 + 1
    }

    /// Compression codec: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn compression(&self) -> u8 {
        (self.attributes & ATTR_COMPRESSION_MASK) as u8
    }

    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTR_LOG_APPEND_TIME != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    pub fn has_producer_id(&self) -> bool {
        self.producer_id.0 >= 0
    }

    /// The sequence of the last record, wrapping at i32::MAX as Kafka does.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        let last = self.base_sequence as i64 + self.last_offset_delta as i64;
        if last > i32::MAX as i64 { (last - i32::MAX as i64 - 1) as i32 } else { last as i32 }
    }
}

/// CRC-32C over the CRC-covered part of a whole batch (bytes 21..end).
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[CRC_START..])
}

/// Validates the batch at the start of `buf`: header, magic, that the whole
/// batch is present, and its CRC. Returns the header; the batch occupies
/// `buf[..header.total_len()]`.
pub fn validate_batch(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(buf)?;
    let total = header.total_len();
    if buf.len() < total {
        return Err(BatchError::Truncated { needed: total, have: buf.len() });
    }
    let computed = compute_crc(&buf[..total]);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch { stored: header.crc, computed });
    }
    Ok(header)
}

/// Iterates over the batches concatenated in a buffer, validating each
/// (header and CRC). Yields `(header, byte range)`; after the first error it
/// yields that error once and then stops. A buffer that ends exactly at a batch
/// boundary ends the iteration cleanly.
pub struct BatchIter<'a> {
    buf: &'a [u8],
    at: usize,
    check_crc: bool,
    done: bool,
}

impl<'a> BatchIter<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        BatchIter { buf, at: 0, check_crc: true, done: false }
    }

    /// Walks headers only, trusting the CRC (for data already verified).
    pub fn headers_only(buf: &'a [u8]) -> Self {
        BatchIter { buf, at: 0, check_crc: false, done: false }
    }

    /// Byte position just past the last batch yielded successfully.
    pub fn position(&self) -> usize {
        self.at
    }
}

impl Iterator for BatchIter<'_> {
    type Item = Result<(BatchHeader, Range<usize>), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.at == self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.at..];
        let result = if self.check_crc {
            validate_batch(rest)
        } else {
            BatchHeader::parse(rest).and_then(|h| {
                if rest.len() < h.total_len() {
                    Err(BatchError::Truncated { needed: h.total_len(), have: rest.len() })
                } else {
                    Ok(h)
                }
            })
        };
        match result {
            Ok(header) => {
                let range = self.at..self.at + header.total_len();
                self.at = range.end;
                Some(Ok((header, range)))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Rewrites baseOffset in place (not covered by the CRC).
pub fn set_base_offset(batch: &mut [u8], offset: Offset) {
    batch[0..8].copy_from_slice(&offset.0.to_be_bytes());
}

/// Rewrites partitionLeaderEpoch in place (not covered by the CRC).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: LeaderEpoch) {
    batch[12..16].copy_from_slice(&epoch.0.to_be_bytes());
}

/// Marks a batch as LogAppendTime with the given broker time: sets the
/// timestamp-type attribute and maxTimestamp, then recomputes the CRC.
pub fn set_log_append_time(batch: &mut [u8], timestamp_ms: i64) {
    let attributes = be_i16(batch, 21) | ATTR_LOG_APPEND_TIME;
    batch[21..23].copy_from_slice(&attributes.to_be_bytes());
    batch[35..43].copy_from_slice(&timestamp_ms.to_be_bytes());
    let crc = compute_crc(batch);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// One record inside an uncompressed batch, borrowed from the batch bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    pub offset_delta: i32,
    pub timestamp_delta: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
}

fn get_varlong(buf: &[u8], at: &mut usize) -> Result<i64, BatchError> {
    let mut z: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*at).ok_or(BatchError::BadHeader("record truncated"))?;
        *at += 1;
        z |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
    }
    Err(BatchError::BadHeader("varint too long"))
}

fn get_bytes<'a>(buf: &'a [u8], at: &mut usize) -> Result<Option<&'a [u8]>, BatchError> {
    let len = get_varlong(buf, at)?;
    if len < 0 {
        return Ok(None);
    }
    let end = at.checked_add(len as usize).filter(|e| *e <= buf.len());
    let end = end.ok_or(BatchError::BadHeader("record field overruns the batch"))?;
    let out = &buf[*at..end];
    *at = end;
    Ok(Some(out))
}

/// Decodes the records of one whole, uncompressed batch (as validated by
/// [`validate_batch`]). Used where the node reads its own internal topics;
/// client data is never decoded.
pub fn records(batch: &[u8]) -> Result<Vec<RecordView<'_>>, BatchError> {
    let h = BatchHeader::parse(batch)?;
    if h.compression() != 0 {
        return Err(BatchError::BadHeader("compressed batch"));
    }
    let body = &batch[BATCH_HEADER_LEN..h.total_len().min(batch.len())];
    let mut at = 0usize;
    let mut out = Vec::with_capacity(h.records_count.clamp(0, 4096) as usize);
    for _ in 0..h.records_count {
        let len = get_varlong(body, &mut at)?;
        let end = (len >= 0)
            .then(|| at.checked_add(len as usize))
            .flatten()
            .filter(|e| *e <= body.len())
            .ok_or(BatchError::BadHeader("record length overruns the batch"))?;
        let rec = &body[..end];
        at += 1; // record attributes
        let timestamp_delta = get_varlong(rec, &mut at)?;
        let offset_delta = get_varlong(rec, &mut at)? as i32;
        let key = get_bytes(rec, &mut at)?;
        let value = get_bytes(rec, &mut at)?;
        let headers = get_varlong(rec, &mut at)?;
        for _ in 0..headers.max(0) {
            get_bytes(rec, &mut at)?;
            get_bytes(rec, &mut at)?;
        }
        if at != end {
            return Err(BatchError::BadHeader("record length does not match its fields"));
        }
        out.push(RecordView { offset_delta, timestamp_delta, key, value });
    }
    Ok(out)
}

/// Builds uncompressed v2 batches. Used by tests, tools and fault injection;
/// the node itself never builds client batches.
pub mod build {
    use super::*;

    /// One record to put in a batch.
    #[derive(Debug, Clone, Default)]
    pub struct Record<'a> {
        pub key: Option<&'a [u8]>,
        pub value: Option<&'a [u8]>,
        pub timestamp_delta: i64,
    }

    /// Producer fields of a batch (defaults: not idempotent).
    #[derive(Debug, Clone, Copy)]
    pub struct Producer {
        pub id: ProducerId,
        pub epoch: ProducerEpoch,
        pub base_sequence: i32,
    }

    impl Default for Producer {
        fn default() -> Self {
            Producer { id: ProducerId(-1), epoch: ProducerEpoch(-1), base_sequence: -1 }
        }
    }

    fn put_varlong(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        while z >= 0x80 {
            out.push((z as u8) | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
    }

    fn put_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
        match b {
            None => put_varlong(out, -1),
            Some(b) => {
                put_varlong(out, b.len() as i64);
                out.extend_from_slice(b);
            }
        }
    }

    /// Encodes an uncompressed batch with base offset 0 and a valid CRC.
    pub fn batch(records: &[Record<'_>], base_timestamp: i64, producer: Producer) -> Vec<u8> {
        assert!(!records.is_empty(), "a batch holds at least one record");
        let mut body = Vec::new();
        for (i, r) in records.iter().enumerate() {
            let mut rec = Vec::new();
            rec.push(0u8); // record attributes
            put_varlong(&mut rec, r.timestamp_delta);
            put_varlong(&mut rec, i as i64);
            put_bytes(&mut rec, r.key);
            put_bytes(&mut rec, r.value);
            put_varlong(&mut rec, 0); // no headers
            put_varlong(&mut body, rec.len() as i64);
            body.extend_from_slice(&rec);
        }
        let max_ts = base_timestamp + records.iter().map(|r| r.timestamp_delta).max().unwrap_or(0);
        let mut out = Vec::with_capacity(BATCH_HEADER_LEN + body.len());
        out.extend_from_slice(&0i64.to_be_bytes());
        out.extend_from_slice(
            &((BATCH_HEADER_LEN - LOG_OVERHEAD + body.len()) as i32).to_be_bytes(),
        );
        out.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
        out.push(2); // magic
        out.extend_from_slice(&[0; 4]); // crc, set below
        out.extend_from_slice(&0i16.to_be_bytes()); // attributes: no compression
        out.extend_from_slice(&((records.len() - 1) as i32).to_be_bytes());
        out.extend_from_slice(&base_timestamp.to_be_bytes());
        out.extend_from_slice(&max_ts.to_be_bytes());
        out.extend_from_slice(&producer.id.0.to_be_bytes());
        out.extend_from_slice(&producer.epoch.0.to_be_bytes());
        out.extend_from_slice(&producer.base_sequence.to_be_bytes());
        out.extend_from_slice(&(records.len() as i32).to_be_bytes());
        out.extend_from_slice(&body);
        let crc = compute_crc(&out);
        out[17..21].copy_from_slice(&crc.to_be_bytes());
        out
    }

    /// A batch of `count` records each with a value of `value_len` bytes.
    pub fn simple(count: usize, value_len: usize, base_timestamp: i64) -> Vec<u8> {
        let value = vec![b'v'; value_len];
        let records: Vec<Record<'_>> = (0..count)
            .map(|_| Record { key: None, value: Some(&value), timestamp_delta: 0 })
            .collect();
        batch(&records, base_timestamp, Producer::default())
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;

    #[test]
    fn built_batch_validates_and_reports_fields() {
        let b = batch(
            &[
                Record { key: Some(b"k"), value: Some(b"hello"), timestamp_delta: 0 },
                Record { key: None, value: Some(b"world"), timestamp_delta: 5 },
            ],
            1_000,
            Producer { id: ProducerId(7), epoch: ProducerEpoch(1), base_sequence: 10 },
        );
        let h = validate_batch(&b).expect("valid");
        assert_eq!(h.total_len(), b.len());
        assert_eq!(h.last_offset_delta, 1);
        assert_eq!(h.records_count, 2);
        assert_eq!(h.base_timestamp, 1_000);
        assert_eq!(h.max_timestamp, 1_005);
        assert_eq!(h.producer_id, ProducerId(7));
        assert_eq!(h.base_sequence, 10);
        assert_eq!(h.last_sequence(), 11);
        assert_eq!(h.compression(), 0);
    }

    #[test]
    fn offset_and_epoch_rewrite_keep_crc_valid() {
        let mut b = simple(3, 10, 0);
        set_base_offset(&mut b, Offset(42));
        set_partition_leader_epoch(&mut b, LeaderEpoch(5));
        let h = validate_batch(&b).expect("still valid");
        assert_eq!(h.base_offset, Offset(42));
        assert_eq!(h.last_offset(), Offset(44));
        assert_eq!(h.partition_leader_epoch, LeaderEpoch(5));
    }

    #[test]
    fn log_append_time_rewrites_crc() {
        let mut b = simple(1, 10, 0);
        set_log_append_time(&mut b, 99);
        let h = validate_batch(&b).expect("valid after rewrite");
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 99);
    }

    #[test]
    fn flipped_byte_is_a_crc_error() {
        let mut b = simple(2, 20, 0);
        let last = b.len() - 1;
        b[last] ^= 0x40;
        assert!(matches!(validate_batch(&b), Err(BatchError::CrcMismatch { .. })));
    }

    #[test]
    fn bad_magic_and_truncation() {
        let mut b = simple(1, 10, 0);
        b[16] = 1;
        assert_eq!(validate_batch(&b), Err(BatchError::BadMagic(1)));
        let b = simple(1, 10, 0);
        assert!(matches!(validate_batch(&b[..b.len() - 1]), Err(BatchError::Truncated { .. })));
        assert!(matches!(validate_batch(&b[..30]), Err(BatchError::Truncated { .. })));
    }

    #[test]
    fn iterator_walks_concatenated_batches_and_stops_at_garbage() {
        let mut buf = simple(1, 5, 0);
        buf.extend(simple(4, 5, 0));
        let good = buf.len();
        buf.extend([0u8; 100]); // preallocated zeros after the log end
        let mut it = BatchIter::new(&buf);
        assert!(it.next().unwrap().is_ok());
        assert!(it.next().unwrap().is_ok());
        assert!(it.next().unwrap().is_err());
        assert!(it.next().is_none());
        assert_eq!(it.position(), good);
    }

    #[test]
    fn records_decode_what_build_encodes() {
        let b = batch(
            &[
                Record { key: Some(b"k1"), value: Some(b"v1"), timestamp_delta: 0 },
                Record { key: None, value: None, timestamp_delta: 7 },
            ],
            5,
            Producer::default(),
        );
        let recs = records(&b).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].key, Some(&b"k1"[..]));
        assert_eq!(recs[0].value, Some(&b"v1"[..]));
        assert_eq!(
            recs[1],
            RecordView { offset_delta: 1, timestamp_delta: 7, key: None, value: None }
        );
    }

    proptest::proptest! {
        #[test]
        fn records_never_panic(count in 1usize..4, len in 0usize..20, cut in 0usize..200, flip in 0usize..200) {
            let mut b = simple(count, len, 0);
            let at = BATCH_HEADER_LEN + flip % (b.len() - BATCH_HEADER_LEN);
            b[at] = b[at].wrapping_add(0x41);
            let cut = cut.min(b.len());
            let _ = records(&b[..cut.max(BATCH_HEADER_LEN)]);
        }

        #[test]
        fn parse_never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = validate_batch(&data);
            for item in BatchIter::new(&data) { let _ = item; }
        }

        #[test]
        fn any_single_bit_flip_in_crc_range_is_detected(count in 1usize..5, len in 0usize..50, bit in 0usize..8, pick in 0usize..10_000) {
            let mut b = simple(count, len, 0);
            let at = CRC_START + pick % (b.len() - CRC_START);
            b[at] ^= 1 << bit;
            // Either the header no longer parses or the CRC catches it.
            proptest::prop_assert!(validate_batch(&b).is_err());
        }
    }
}
