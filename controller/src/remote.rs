//! The controller over TCP: [`serve`] on the controller side, [`connect`] on
//! the node side, giving a [`ControllerHandle`] that behaves like the
//! in-process one.
//!
//! # Wire format
//!
//! Each message is one frame: `[u32 length, big-endian][JSON]`. A receiver
//! checks the length against its limit before allocating
//! ([`REQUEST_FRAME_BYTES_MAX`] for node→controller, [`EVENT_FRAME_BYTES_MAX`]
//! for controller→node, whose snapshots hold the whole image). TCP already
//! checksums; these frames are never stored.
//!
//! ```text
//! node                                   controller
//!   ── connect ─────────────────────────▶
//!   ◀──────────────── Hello { image }        subscription starts here
//!   ── Submit { id, cmd } ──────────────▶
//!   ◀──────────────── Delta(d) ...           in log order
//!   ◀──────────────── Reply { id, version, result }
//! ```
//!
//! Replies and deltas travel on different server threads, so a reply may
//! overtake its deltas; the client holds a reply back until its image has
//! reached the reply's `version`, which keeps the in-process guarantee that a
//! returned `submit` is already visible in `subscribe`.
//!
//! Threads: the server runs two per connection (requests, deltas) and caps
//! connections at [`CONNECTIONS_MAX`]; a connected handle runs two (socket
//! writer, socket reader). When the connection drops, the handle's
//! subscribers see their channels disconnect and submits fail with
//! `Unavailable`; the node reconnects with a new `connect`.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::ControllerError;
use crate::handle::{ControllerHandle, ControllerOptions, Hub, Msg, Reply, Request};
use crate::state::{Command, CommandResult, MetadataDelta, MetadataImage};

/// Largest node→controller frame: one command.
pub const REQUEST_FRAME_BYTES_MAX: u32 = 16 * 1024 * 1024;
/// Largest controller→node frame: a snapshot of the whole image.
pub const EVENT_FRAME_BYTES_MAX: u32 = crate::log::SNAPSHOT_BYTES_MAX;
/// Most connections a controller serves at once; more are closed on accept.
pub const CONNECTIONS_MAX: usize = 256;
/// How long `connect` waits for the controller's hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How often `serve_until` checks its stop flag while no one connects.
pub const ACCEPT_POLL: Duration = Duration::from_millis(50);
/// How often an idle delta thread checks whether its connection closed.
const IDLE_CHECK: Duration = Duration::from_millis(200);

#[derive(Debug, Serialize, Deserialize)]
enum ClientMsg {
    Submit { id: u64, cmd: Command },
}

#[derive(Serialize, Deserialize)]
enum ServerMsg {
    Hello { image: MetadataImage },
    Reply { id: u64, version: u64, result: Result<CommandResult, ControllerError> },
    Delta(MetadataDelta),
}

fn write_msg<T: Serialize>(w: &mut impl Write, msg: &T) -> io::Result<()> {
    let json = serde_json::to_vec(msg).expect("wire messages serialize");
    let len = u32::try_from(json.len()).map_err(|_| io::Error::other("frame too large"))?;
    let mut frame = Vec::with_capacity(4 + json.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&json);
    w.write_all(&frame)
}

/// Reads one frame; `None` on a clean end of stream between frames.
fn read_msg<T: DeserializeOwned>(r: &mut impl Read, max: u32) -> io::Result<Option<T>> {
    let mut header = [0u8; 4];
    match r.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(header);
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes is over the {max}-byte limit"),
        ));
    }
    let mut buf = vec![0u8; len as usize];
    r.read_exact(&mut buf)?;
    serde_json::from_slice(&buf)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Serves `handle` to nodes connecting on `listener`, a thread pair per
/// connection. Returns only if the listener cannot be made non-blocking.
pub fn serve(listener: TcpListener, handle: ControllerHandle) -> io::Result<()> {
    serve_until(listener, handle, &AtomicBool::new(false))
}

/// [`serve`] until `stop` is set (checked every [`ACCEPT_POLL`]). Connections
/// already open end when the controller stops.
pub fn serve_until(
    listener: TcpListener,
    handle: ControllerHandle,
    stop: &AtomicBool,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let connections = Arc::new(AtomicUsize::new(0));
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(ACCEPT_POLL);
                continue;
            }
            Err(e) => {
                // EMFILE, ECONNABORTED and friends pass; keep serving.
                tracing::warn!(error = %e, "accept failed");
                std::thread::sleep(ACCEPT_POLL);
                continue;
            }
        };
        stream.set_nonblocking(false)?;
        if connections.fetch_add(1, Ordering::SeqCst) >= CONNECTIONS_MAX {
            connections.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!(%peer, "refusing connection: {CONNECTIONS_MAX} already open");
            drop(stream);
            continue;
        }
        let handle = handle.clone();
        let count = connections.clone();
        let spawned =
            std::thread::Builder::new().name(format!("ctl-conn-{peer}")).spawn(move || {
                if let Err(e) = serve_connection(stream, &handle) {
                    tracing::debug!(%peer, error = %e, "controller connection ended");
                }
                count.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            connections.fetch_sub(1, Ordering::SeqCst);
            tracing::error!(error = %e, "cannot spawn a connection thread");
        }
    }
}

fn serve_connection(stream: TcpStream, handle: &ControllerHandle) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let writer = Arc::new(Mutex::new(stream.try_clone()?));
    let closed = Arc::new(AtomicBool::new(false));

    // Subscribe before anything else so the hello image and the deltas after
    // it are contiguous.
    let (image, deltas) = handle.subscribe();
    write_msg(&mut *writer.lock().expect("writer lock"), &ServerMsg::Hello { image })?;
    let delta_writer = writer.clone();
    let delta_closed = closed.clone();
    let delta_stream = stream.try_clone()?;
    let delta_thread = std::thread::spawn(move || {
        loop {
            if delta_closed.load(Ordering::SeqCst) {
                break;
            }
            let d = match deltas.recv_timeout(IDLE_CHECK) {
                Ok(d) => d,
                Err(flume::RecvTimeoutError::Timeout) => continue,
                Err(flume::RecvTimeoutError::Disconnected) => break,
            };
            let mut w = delta_writer.lock().expect("writer lock");
            if write_msg(&mut *w, &ServerMsg::Delta(d)).is_err() {
                break;
            }
        }
        // The controller stopped or the peer is gone: end the connection.
        let _ = delta_stream.shutdown(Shutdown::Both);
    });

    let mut reader = io::BufReader::new(stream);
    let result = loop {
        match read_msg::<ClientMsg>(&mut reader, REQUEST_FRAME_BYTES_MAX) {
            Ok(Some(ClientMsg::Submit { id, cmd })) => {
                let (result, version) = match handle.submit_versioned_blocking(cmd) {
                    Ok((r, v)) => (Ok(r), v),
                    Err(e) => (Err(e), 0),
                };
                let mut w = writer.lock().expect("writer lock");
                if let Err(e) = write_msg(&mut *w, &ServerMsg::Reply { id, version, result }) {
                    break Err(e);
                }
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    closed.store(true, Ordering::SeqCst);
    let _ = reader.get_ref().shutdown(Shutdown::Both);
    let _ = delta_thread.join();
    result
}

/// Waiting submits of a connected handle.
#[derive(Default)]
struct Pending {
    next_id: u64,
    waiting: HashMap<u64, flume::Sender<Reply>>,
    /// Replies held until the image reaches their version.
    parked: Vec<(u64, flume::Sender<Reply>, Reply)>,
    /// Set when the connection is gone.
    lost: bool,
}

fn connection_lost() -> ControllerError {
    ControllerError::Unavailable("connection to the controller lost".into())
}

/// Connects to a controller served at `addr` and returns a handle backed by
/// the connection, after the controller's initial image has arrived.
pub fn connect(addr: impl ToSocketAddrs) -> anyhow::Result<ControllerHandle> {
    connect_with(addr, &ControllerOptions::default())
}

/// [`connect`] with explicit queue bounds (`subscriber_queue_len`, `request_queue_len`).
pub fn connect_with(
    addr: impl ToSocketAddrs,
    options: &ControllerOptions,
) -> anyhow::Result<ControllerHandle> {
    let stream = TcpStream::connect(addr).context("connecting to the controller")?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(HELLO_TIMEOUT))?;
    let mut reader = io::BufReader::new(stream.try_clone()?);
    let image = match read_msg::<ServerMsg>(&mut reader, EVENT_FRAME_BYTES_MAX)
        .context("reading the controller's hello")?
    {
        Some(ServerMsg::Hello { image }) => image,
        Some(_) => bail!("the controller did not start with a hello"),
        None => bail!("the controller closed the connection"),
    };
    stream.set_read_timeout(None)?;

    let hub = Arc::new(Hub::new(image, options.subscriber_queue_len));
    let pending = Arc::new(Mutex::new(Pending::default()));
    let (tx, rx) = flume::bounded::<Msg>(options.request_queue_len);

    // Writer: requests from handles to the socket. Ends when every handle is dropped.
    let mut write_stream = stream.try_clone()?;
    let writer_pending = pending.clone();
    std::thread::Builder::new().name("ctl-client-writer".into()).spawn(move || {
        for msg in rx.iter() {
            let Msg::Submit(Request { cmd, reply }) = msg else { continue };
            let id = {
                let mut p = writer_pending.lock().expect("pending lock");
                if p.lost {
                    let _ = reply.send(Err(connection_lost()));
                    continue;
                }
                p.next_id += 1;
                let id = p.next_id;
                p.waiting.insert(id, reply);
                id
            };
            if write_msg(&mut write_stream, &ClientMsg::Submit { id, cmd }).is_err() {
                // The reader sees the broken socket and fails what is waiting.
                let _ = write_stream.shutdown(Shutdown::Both);
            }
        }
        let _ = write_stream.shutdown(Shutdown::Both);
    })?;

    // Reader: replies and deltas from the socket.
    let reader_hub = hub.clone();
    std::thread::Builder::new().name("ctl-client-reader".into()).spawn(move || {
        loop {
            let msg = match read_msg::<ServerMsg>(&mut reader, EVENT_FRAME_BYTES_MAX) {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "controller connection failed");
                    break;
                }
            };
            let mut p = pending.lock().expect("pending lock");
            match msg {
                ServerMsg::Hello { .. } => break,
                ServerMsg::Reply { id, version, result } => {
                    let Some(reply) = p.waiting.remove(&id) else { break };
                    let result = result.map(|r| (r, version));
                    if result.is_err() || reader_hub.version() >= version {
                        let _ = reply.send(result);
                    } else {
                        p.parked.push((version, reply, result));
                    }
                }
                ServerMsg::Delta(d) => {
                    reader_hub.publish(std::slice::from_ref(&d));
                    let now = reader_hub.version();
                    let (ready, held) = std::mem::take(&mut p.parked)
                        .into_iter()
                        .partition::<Vec<_>, _>(|(v, _, _)| *v <= now);
                    p.parked = held;
                    for (_, reply, result) in ready {
                        let _ = reply.send(result);
                    }
                }
            }
        }
        let mut p = pending.lock().expect("pending lock");
        p.lost = true;
        for (_, reply) in p.waiting.drain() {
            let _ = reply.send(Err(connection_lost()));
        }
        for (_, reply, _) in p.parked.drain(..) {
            let _ = reply.send(Err(connection_lost()));
        }
        drop(p);
        reader_hub.close(connection_lost());
        let _ = reader.get_ref().shutdown(Shutdown::Both);
    })?;

    Ok(ControllerHandle { tx, hub, in_process: false })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigDefaults;
    use crate::handle::start_in_process;
    use crate::state::tests::node;
    use futures::executor::block_on;

    #[test]
    fn serve_connect_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let (local, join) = start_in_process(dir.path(), ConfigDefaults::default()).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server_handle = local.clone();
        std::thread::spawn(move || serve(listener, server_handle));

        let remote = connect(addr).unwrap();
        let (image, rx) = remote.subscribe();
        assert_eq!(image.cluster_id, local.image().cluster_id);

        block_on(async {
            remote.submit(Command::RegisterNode(node(1))).await.unwrap();
            let r = remote.submit(Command::create_topic("remote.t", 3, 1)).await.unwrap();
            let CommandResult::TopicCreated { topic, .. } = r else { panic!() };
            assert_eq!(topic.partitions.len(), 3);
            // Read-your-writes holds remotely too.
            assert!(remote.image().topic("remote.t").is_some());
            let e = remote.submit(Command::create_topic("remote_t", 1, 1)).await.unwrap_err();
            assert_eq!(e.kafka_code(), 17);
            assert!(e.message().contains("collides"));
        });

        // Deltas arrive in order and rebuild the controller's image.
        let mut mirror = image;
        for _ in 0..2 {
            mirror.apply_delta(&rx.recv_timeout(Duration::from_secs(5)).unwrap());
        }
        assert_eq!(mirror, local.image());
        assert_eq!(remote.image(), local.image());

        // A change made in-process reaches the remote subscriber.
        local.submit_blocking(Command::create_topic("local-t", 1, 1)).unwrap();
        let d = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(matches!(d, MetadataDelta::TopicCreated(t) if t.name == "local-t"));

        // Controller shutdown: the remote side sees its channel end and a retriable error.
        join.shutdown().unwrap();
        assert!(rx.recv_timeout(Duration::from_secs(5)).is_err());
        let e = remote.submit_blocking(Command::RegisterNode(node(2))).unwrap_err();
        assert_eq!(e.kafka_code(), 7);
    }

    #[test]
    fn oversized_frames_are_refused_before_allocating() {
        let mut bytes = (REQUEST_FRAME_BYTES_MAX + 1).to_be_bytes().to_vec();
        bytes.extend_from_slice(b"{}");
        let err = read_msg::<ClientMsg>(&mut &bytes[..], REQUEST_FRAME_BYTES_MAX).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
