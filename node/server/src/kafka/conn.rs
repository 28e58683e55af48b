//! One Kafka client connection on one shard.
//!
//! The reader decodes frames and starts each request as a local task as soon
//! as it arrives (so pipelined requests run concurrently); the writer awaits
//! those tasks in arrival order and writes their responses, so responses go
//! back in request order as clients require. The queue between them is
//! bounded: when a client has `connection_inflight_requests_max` requests
//! outstanding the reader stops reading the socket.

use super::api_versions;
use crate::metrics::RequestClock;
use crate::shard::Shard;
use bytes::{BufMut, Bytes, BytesMut};
use futures_lite::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use glommio::channels::local_channel;
use glommio::net::TcpStream;
use glommio::task::JoinHandle;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::{Decodable, Encodable};
use std::rc::Rc;
use std::time::Instant;

/// What a request produces.
#[derive(Debug)]
pub enum Reply {
    /// A response frame to send.
    Frame(BytesMut),
    /// A response frame in pieces, sent in order: encoded fields and, by
    /// reference, the record batches it carries (see [`GatherBuf`]).
    Gathered(Vec<Bytes>),
    /// No response (acks=0 produce).
    Nothing,
    /// Close the connection instead of answering.
    Close,
}

/// Why the node closes a connection instead of answering.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("request frame of {0} bytes exceeds socket.request.max.bytes ({1})")]
    TooLarge(i64, usize),
    #[error("request frame of {0} bytes is too short for a request header")]
    TooShort(i32),
    #[error("unknown api key {0}")]
    UnknownApiKey(i16),
    #[error("unsupported version {1} of {0:?}")]
    UnsupportedVersion(ApiKey, i16),
    #[error("malformed {0:?} v{1} request: {2}")]
    Malformed(ApiKey, i16, String),
}

/// A decoded request, ready to be handled.
pub struct Request {
    pub header: RequestHeader,
    pub api_key: ApiKey,
    pub version: i16,
    pub body: RequestKind,
}

/// Parses one frame (without its size prefix). `Ok(Err(frame))` is an
/// immediate reply that needs no handler (ApiVersions version fallback).
pub fn parse_frame(mut frame: Bytes) -> Result<Result<Request, BytesMut>, FrameError> {
    if frame.len() < 8 {
        return Err(FrameError::TooShort(frame.len() as i32));
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api_key = ApiKey::try_from(key).map_err(|_| FrameError::UnknownApiKey(key))?;
    if !api_versions::is_supported(api_key, version) {
        if api_key == ApiKey::ApiVersions {
            return Ok(Err(api_versions::unsupported_version_frame(correlation_id)));
        }
        if api_versions::supported_range(api_key).is_none() {
            return Err(FrameError::UnknownApiKey(key));
        }
        return Err(FrameError::UnsupportedVersion(api_key, version));
    }
    let header_version = api_key.request_header_version(version);
    let header = RequestHeader::decode(&mut frame, header_version)
        .map_err(|e| FrameError::Malformed(api_key, version, e.to_string()))?;
    let body = RequestKind::decode(api_key, &mut frame, version)
        .map_err(|e| FrameError::Malformed(api_key, version, e.to_string()))?;
    Ok(Ok(Request { header, api_key, version, body }))
}

/// Encodes a response frame, size prefix included.
///
/// An encode failure means a handler built a response the client's version
/// cannot carry: a bug on our side. It is logged and the connection closed
/// (the client reconnects and retries) rather than taking the shard down.
pub fn encode_response(request: &RequestHeader, api_key: ApiKey, body: &ResponseKind) -> Reply {
    if let ResponseKind::Fetch(fetch) = body {
        let records: Vec<Bytes> = fetch
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter())
            .filter_map(|p| p.records.clone())
            .filter(|r| r.len() >= GATHER_MIN_BYTES)
            .collect();
        if !records.is_empty() {
            return encode_gathered(request, api_key, fetch, records);
        }
    }
    let mut frame = BytesMut::with_capacity(256);
    frame.put_i32(0);
    if !encode_with_header(&mut frame, request, api_key, |f, v| body.encode(f, v)) {
        return Reply::Close;
    }
    let size = (frame.len() - 4) as i32;
    frame[0..4].copy_from_slice(&size.to_be_bytes());
    Reply::Frame(frame)
}

/// Encodes the response header, then the body with `body`, into `buf`.
/// False (logged) when the body's version cannot carry what a handler built.
fn encode_with_header<B: ByteBufMut>(
    buf: &mut B,
    request: &RequestHeader,
    api_key: ApiKey,
    body: impl FnOnce(&mut B, i16) -> anyhow::Result<()>,
) -> bool {
    let version = request.request_api_version;
    let encoded = ResponseHeader::default()
        .with_correlation_id(request.correlation_id)
        .encode(buf, api_key.response_header_version(version))
        .and_then(|_| body(buf, version));
    if let Err(e) = &encoded {
        tracing::error!(
            "BUG: cannot encode {api_key:?} v{version} response: {e}; closing connection"
        );
    }
    encoded.is_ok()
}

/// Record batches at least this large are sent from their own buffers (the
/// batch cache's, a cold read's) instead of being copied into the frame.
const GATHER_MIN_BYTES: usize = 16 << 10;

fn encode_gathered(
    request: &RequestHeader,
    api_key: ApiKey,
    body: &kafka_protocol::messages::FetchResponse,
    records: Vec<Bytes>,
) -> Reply {
    let mut buf = GatherBuf::new(records);
    if !encode_with_header(&mut buf, request, api_key, |b, v| body.encode(b, v)) {
        return Reply::Close;
    }
    Reply::Gathered(buf.into_frame())
}

/// An encoding target that keeps record batches by reference: kafka-protocol
/// writes a `records` field as one `put_slice` of the `Bytes`' own memory, so
/// a slice that is exactly one of the registered buffers (same address and
/// length) ends the current piece and the buffer itself becomes the next.
/// Everything else is copied into the current piece. A 30 MB cold-read fetch
/// response used to be copied into a frame grown by doubling.
struct GatherBuf {
    pieces: Vec<Bytes>,
    pieces_len: usize,
    current: BytesMut,
    by_address: std::collections::HashMap<(usize, usize), Bytes>,
}

impl GatherBuf {
    fn new(records: Vec<Bytes>) -> GatherBuf {
        let by_address = records.into_iter().map(|b| ((b.as_ptr() as usize, b.len()), b)).collect();
        GatherBuf {
            pieces: Vec::new(),
            pieces_len: 0,
            current: BytesMut::with_capacity(1024),
            by_address,
        }
    }

    /// The frame: its size prefix, then the pieces in order.
    fn into_frame(mut self) -> Vec<Bytes> {
        self.end_piece();
        let size = self.pieces_len as i32;
        let mut frame = Vec::with_capacity(self.pieces.len() + 1);
        frame.push(Bytes::copy_from_slice(&size.to_be_bytes()));
        frame.extend(self.pieces);
        frame
    }

    fn end_piece(&mut self) {
        if !self.current.is_empty() {
            let piece = self.current.split().freeze();
            self.pieces_len += piece.len();
            self.pieces.push(piece);
        }
    }
}

// SAFETY: every method delegates to the current piece's `BytesMut`, which
// upholds `BufMut`'s contract; `put_slice` only appends whole slices.
unsafe impl BufMut for GatherBuf {
    fn remaining_mut(&self) -> usize {
        self.current.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller initialised `cnt` bytes of `chunk_mut`, which is
        // the current piece's.
        unsafe { self.current.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut bytes::buf::UninitSlice {
        self.current.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        let key = (src.as_ptr() as usize, src.len());
        match self.by_address.get(&key).cloned() {
            Some(records) if !src.is_empty() => {
                self.end_piece();
                self.pieces_len += records.len();
                self.pieces.push(records);
            }
            _ => self.current.extend_from_slice(src),
        }
    }
}

impl ByteBufMut for GatherBuf {
    fn offset(&self) -> usize {
        self.pieces_len + self.current.len()
    }

    // Gaps (written later) only ever fall in the current piece: the
    // response encoders that use them do not carry records.
    fn seek(&mut self, offset: usize) {
        assert!(offset >= self.pieces_len, "seek into a finished piece");
        self.current.resize(offset - self.pieces_len, 0);
    }

    fn range(&mut self, r: std::ops::Range<usize>) -> &mut [u8] {
        assert!(r.start >= self.pieces_len, "gap in a finished piece");
        &mut self.current[r.start - self.pieces_len..r.end - self.pieces_len]
    }
}

/// Replies written into the buffer before one flush, at most: their clocks
/// wait for that flush.
const REPLIES_PER_FLUSH_MAX: usize = 64;

/// Writes the replies in request order. Replies that are already there when
/// the writer gets to them share one buffer and one syscall; the buffer is
/// sent before the writer waits for anything (the next request or its
/// reply), so an answered request never waits for a later one, e.g. a
/// produce acknowledgement for the next request's fsync or a heartbeat for a
/// fetch's long poll.
async fn write_replies<W>(
    rx: local_channel::LocalReceiver<(JoinHandle<Reply>, Option<Rc<RequestClock>>)>,
    mut out: BufWriter<W>,
) where
    W: futures_lite::io::AsyncWrite + Unpin,
{
    use futures::FutureExt;
    // Written into `out` but not yet flushed: (clock, when writing began).
    let mut unsent: Vec<(Rc<RequestClock>, Instant)> = Vec::new();
    async fn flush<W: futures_lite::io::AsyncWrite + Unpin>(
        out: &mut BufWriter<W>,
        unsent: &mut Vec<(Rc<RequestClock>, Instant)>,
    ) -> bool {
        if out.flush().await.is_err() {
            return false;
        }
        let sent = Instant::now();
        for (clock, send_started) in unsent.drain(..) {
            clock.record(send_started, sent);
        }
        true
    }
    loop {
        let next = match rx.recv().now_or_never() {
            Some(next) => next,
            None => {
                if !flush(&mut out, &mut unsent).await {
                    return;
                }
                rx.recv().await
            }
        };
        let Some((mut task, clock)) = next else { break };
        let reply = match (&mut task).now_or_never() {
            Some(reply) => reply,
            None => {
                if !flush(&mut out, &mut unsent).await {
                    return;
                }
                task.await
            }
        };
        let send_started = Instant::now();
        let written = match reply {
            Some(Reply::Frame(frame)) => out.write_all(&frame).await.is_ok(),
            // Large pieces bypass the 64 KiB write buffer: sent from the
            // batch cache's or the cold read's memory.
            Some(Reply::Gathered(pieces)) => {
                let mut ok = true;
                for piece in &pieces {
                    if out.write_all(piece).await.is_err() {
                        ok = false;
                        break;
                    }
                }
                ok
            }
            Some(Reply::Nothing) => true,
            Some(Reply::Close) | None => break,
        };
        if !written {
            return;
        }
        if let Some(clock) = clock {
            unsent.push((clock, send_started));
        }
        if unsent.len() >= REPLIES_PER_FLUSH_MAX && !flush(&mut out, &mut unsent).await {
            return;
        }
    }
    if flush(&mut out, &mut unsent).await {
        let _ = out.close().await;
    }
}

/// Serves one connection until the client closes it or breaks the protocol.
pub async fn serve(stream: TcpStream, shard: Rc<Shard>) {
    crate::metrics::with(|m| m.connections_opened += 1);
    serve_inner(stream, shard).await;
    crate::metrics::with(|m| m.connections_closed += 1);
}

async fn serve_inner(stream: TcpStream, shard: Rc<Shard>) {
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().ok();
    let (read_half, write_half) = futures_lite::io::split(stream);
    let mut reader = BufReader::with_capacity(64 << 10, read_half);
    let write_half = BufWriter::with_capacity(64 << 10, write_half);
    let (tx, rx) = local_channel::new_bounded::<(JoinHandle<Reply>, Option<Rc<RequestClock>>)>(
        shard.limits.connection_inflight_requests_max,
    );
    let writer = glommio::spawn_local(write_replies(rx, write_half));
    let max = shard.limits.request_frame_bytes_max;
    loop {
        let mut size_buf = [0u8; 4];
        if reader.read_exact(&mut size_buf).await.is_err() {
            break;
        }
        let size = i32::from_be_bytes(size_buf);
        if size < 0 || size as usize > max {
            tracing::warn!(?peer, "{}; closing connection", FrameError::TooLarge(size as i64, max));
            break;
        }
        // Allocated only after the size was checked against the limit.
        let mut frame = shard.frames.take(size as usize);
        if reader.read_exact(&mut frame).await.is_err() {
            break;
        }
        let arrived = Instant::now();
        let task = match parse_frame(shard.frames.freeze(frame)) {
            Ok(Ok(request)) => {
                let shard = shard.clone();
                let clock = Rc::new(RequestClock::new(request.api_key as i16, arrived));
                let timed = clock.clone();
                let task =
                    glommio::spawn_local(
                        async move { super::dispatch(shard, request, timed).await },
                    );
                (task.detach(), Some(clock))
            }
            Ok(Err(immediate)) => {
                (glommio::spawn_local(async move { Reply::Frame(immediate) }).detach(), None)
            }
            Err(e) => {
                tracing::warn!(?peer, "{e}; closing connection");
                break;
            }
        };
        if tx.send(task).await.is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::FetchResponse;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::protocol::{Message, StrBytes};

    fn fetch_response(records: &[Bytes]) -> FetchResponse {
        let partitions = records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                PartitionData::default()
                    .with_partition_index(i as i32)
                    .with_high_watermark(1000 + i as i64)
                    .with_records(Some(r.clone()))
            })
            .collect();
        FetchResponse::default().with_session_id(0).with_responses(vec![
            FetchableTopicResponse::default()
                .with_topic(StrBytes::from_static_str("t").into())
                .with_partitions(partitions),
        ])
    }

    #[test]
    fn gathered_fetch_frame_equals_the_copied_one_and_shares_the_records() {
        let big = Bytes::from((0..100_000u32).map(|i| i as u8).collect::<Vec<u8>>());
        let twin = Bytes::from(big.to_vec()); // same content, other buffer
        let small = Bytes::from_static(b"small batch");
        let records = [big.clone(), small.clone(), twin.clone(), Bytes::new()];
        let (min, max) = (FetchResponse::VERSIONS.min.max(4), FetchResponse::VERSIONS.max);
        for version in min..=max {
            let header = RequestHeader::default()
                .with_request_api_key(ApiKey::Fetch as i16)
                .with_request_api_version(version)
                .with_correlation_id(7);
            let body = ResponseKind::Fetch(fetch_response(&records));
            let Reply::Gathered(pieces) = encode_response(&header, ApiKey::Fetch, &body) else {
                panic!("v{version}: large records are gathered");
            };
            // The reference encoding: one copied frame.
            let mut frame = BytesMut::new();
            frame.put_i32(0);
            ResponseHeader::default()
                .with_correlation_id(7)
                .encode(&mut frame, ApiKey::Fetch.response_header_version(version))
                .unwrap();
            body.encode(&mut frame, version).unwrap();
            let size = (frame.len() - 4) as i32;
            frame[0..4].copy_from_slice(&size.to_be_bytes());
            assert_eq!(pieces.concat(), frame.to_vec(), "v{version}");
            // Both large buffers are sent from their own memory, the small
            // one is copied.
            for shared in [&big, &twin] {
                assert!(
                    pieces.iter().any(|p| p.as_ptr() == shared.as_ptr() && p.len() == shared.len()),
                    "v{version}: a large batch was copied"
                );
            }
            assert!(pieces.iter().all(|p| p.as_ptr() != small.as_ptr()));
        }
    }

    #[test]
    fn small_fetch_responses_stay_one_frame() {
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::Fetch as i16)
            .with_request_api_version(12)
            .with_correlation_id(1);
        let body = ResponseKind::Fetch(fetch_response(&[Bytes::from_static(b"tiny")]));
        assert!(matches!(encode_response(&header, ApiKey::Fetch, &body), Reply::Frame(_)));
    }
}
