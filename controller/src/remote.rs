//! The controller over the network: [`serve`] on the controller side,
//! [`connect`] on the node side, giving a [`ControllerHandle`] that behaves
//! like the in-process one.
//!
//! Two transports share the client below (its failover, leader hints,
//! catching-up rule and reply hold-back):
//!
//! * QUIC with mutual TLS against the cluster CA ([`quic`]: [`connect_quic`],
//!   [`quic::serve_until`]): what production and `weir dev --nodes N` use.
//! * TCP with JSON frames, unauthenticated (this module's [`serve`] and
//!   [`connect`]): for development and tests without a CA; a controller
//!   serving it logs a warning.
//!
//! # Wire format (TCP)
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
//! connections at [`CONNECTIONS_MAX`]. A connected handle runs a driver
//! thread (it writes requests and owns the failover), a thread forwarding
//! requests from the handles to it, and a reader per open connection.
//!
//! # Several controllers (a Raft quorum)
//!
//! [`connect`] takes a comma-separated list of addresses and uses one at a
//! time. Every member serves subscriptions from its applied image; only the
//! active one (the Raft leader) runs submits, the others refuse them with
//! [`ControllerError::not_active`], naming the leader's member id. Hellos
//! carry the serving member's id, so the handle learns which address is which
//! member and goes straight to the leader; until it knows, it tries the next
//! address. When a connection drops it moves to the next address, with a
//! bounded backoff once every address has failed in a row. The handle's
//! subscribers never see that: their channel stays open, and the new
//! connection's image arrives as a [`MetadataDelta::Reset`]. Submits that
//! were in flight are sent again (a create that did commit then answers
//! "already exists", as a Kafka client retrying would see); each submit is
//! retried until [`ControllerOptions::failover_deadline`].

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::ControllerError;
use crate::handle::{ControllerHandle, ControllerOptions, Hub, Msg, Reply, Request};
use crate::state::{Command, CommandResult, MetadataDelta, MetadataImage};

pub mod quic;

pub use quic::{connect_quic, connect_quic_with};

/// Largest node→controller frame: one command.
pub const REQUEST_FRAME_BYTES_MAX: u32 = 16 * 1024 * 1024;
/// Largest controller→node frame: a snapshot of the whole image.
pub const EVENT_FRAME_BYTES_MAX: u32 = crate::log::SNAPSHOT_BYTES_MAX;
/// Most connections a controller serves at once; more are closed on accept.
pub const CONNECTIONS_MAX: usize = 256;
/// How long `connect` waits for the controller's hello.
pub(crate) const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How often `serve_until` checks its stop flag while no one connects.
pub const ACCEPT_POLL: Duration = Duration::from_millis(50);
/// How often an idle delta thread checks whether its connection closed.
const IDLE_CHECK: Duration = Duration::from_millis(200);

#[derive(Debug, Serialize, Deserialize)]
enum ClientMsg {
    Submit { id: u64, cmd: Command },
}

/// [`ClientMsg`] as the client sends it: the command stays with the client,
/// which may send it again to another controller. Same JSON.
#[derive(Serialize)]
enum ClientMsgRef<'a> {
    Submit { id: u64, cmd: &'a Command },
}

#[derive(Serialize, Deserialize)]
enum ServerMsg {
    /// `member`: the quorum member serving, so a client can map the leader
    /// named in a refusal to an address; `None` from a single-process controller.
    Hello {
        image: MetadataImage,
        #[serde(default)]
        member: Option<u64>,
    },
    Reply {
        id: u64,
        version: u64,
        result: Result<CommandResult, ControllerError>,
    },
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
    serve_member_until(listener, handle, None, stop)
}

/// [`serve_until`] for quorum member `member`, which every hello names.
pub fn serve_member_until(
    listener: TcpListener,
    handle: ControllerHandle,
    member: Option<u64>,
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
                if let Err(e) = serve_connection(stream, &handle, member) {
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

fn serve_connection(
    stream: TcpStream,
    handle: &ControllerHandle,
    member: Option<u64>,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let writer = Arc::new(Mutex::new(stream.try_clone()?));
    let closed = Arc::new(AtomicBool::new(false));

    // Subscribe before anything else so the hello image and the deltas after
    // it are contiguous.
    let (image, deltas) = handle.subscribe();
    write_msg(&mut *writer.lock().expect("writer lock"), &ServerMsg::Hello { image, member })?;
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

/// A submit a remote handle has not answered yet.
struct Submit {
    cmd: Command,
    reply: flume::Sender<Reply>,
    /// Past this, it fails instead of being retried on another controller.
    deadline: Instant,
    /// Why the last attempt did not succeed, for the final error.
    last_error: Option<String>,
}

/// What the driver thread of a remote handle reacts to.
enum Event {
    Request(Request),
    /// A frame from connection `conn` (a generation number: frames of
    /// connections already given up are ignored).
    Server {
        conn: u64,
        msg: ServerMsg,
    },
    Lost {
        conn: u64,
        why: String,
    },
    /// Every handle is gone: stop.
    HandlesGone,
}

/// An open connection to one controller.
struct Conn {
    generation: u64,
    opened: Instant,
    /// Index of its address in the list.
    index: usize,
    /// The quorum member it is, if the controller said (in its hello).
    member: Option<u64>,
    link: Link,
}

/// What carries a [`Conn`].
enum Link {
    Tcp(TcpStream),
    /// Dropping it stops its long poll.
    Quic(quic::Session),
}

/// Which transport a remote handle uses for every connection it opens.
#[derive(Clone)]
enum Transport {
    Tcp,
    Quic(Arc<quic::QuicClient>),
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Ends its reader thread (or poll), whose last event is then ignored.
        if let Link::Tcp(stream) = &self.link {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// How long one connection attempt waits for TCP to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a write to a controller may block before the connection is
/// given up (the reader would otherwise have to notice).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a whole round of addresses failed to connect, doubling per
/// round up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// A connection that ends sooner than this after its hello counts as a
/// failed attempt (backoff applies), so a controller that accepts and then
/// drops every connection is not hammered.
const CONNECTION_HEALTHY_AFTER: Duration = Duration::from_secs(1);
/// Pause before a submit is retried on the same member after an answer that
/// names no leader (an election is under way).
const NO_LEADER_RETRY: Duration = Duration::from_millis(200);

fn backoff(rounds: u32) -> Duration {
    BACKOFF_MIN.saturating_mul(1 << rounds.min(16)).min(BACKOFF_MAX)
}

/// Opens a connection to `addr` and reads the hello; spawns the reader (or
/// the long poll).
fn open(
    transport: &Transport,
    addr: &str,
    index: usize,
    generation: u64,
    events: &flume::Sender<Event>,
) -> anyhow::Result<(Conn, MetadataImage)> {
    match transport {
        Transport::Tcp => open_tcp(addr, index, generation, events),
        Transport::Quic(client) => {
            let (session, image, member) = client.open(addr, generation, events)?;
            let link = Link::Quic(session);
            Ok((Conn { generation, opened: Instant::now(), index, member, link }, image))
        }
    }
}

fn open_tcp(
    addr: &str,
    index: usize,
    generation: u64,
    events: &flume::Sender<Event>,
) -> anyhow::Result<(Conn, MetadataImage)> {
    let mut last = None;
    let mut stream = None;
    for a in addr.to_socket_addrs().with_context(|| format!("resolving {addr}"))? {
        match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let stream = match (stream, last) {
        (Some(s), _) => s,
        (None, Some(e)) => return Err(e).with_context(|| format!("connecting to {addr}")),
        (None, None) => bail!("{addr} resolves to no address"),
    };
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(HELLO_TIMEOUT))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut reader = io::BufReader::new(stream.try_clone()?);
    let (image, member) = match read_msg::<ServerMsg>(&mut reader, EVENT_FRAME_BYTES_MAX)
        .with_context(|| format!("reading the hello of {addr}"))?
    {
        Some(ServerMsg::Hello { image, member }) => (image, member),
        Some(_) => bail!("the controller at {addr} did not start with a hello"),
        None => bail!("the controller at {addr} closed the connection"),
    };
    stream.set_read_timeout(None)?;
    let events = events.clone();
    std::thread::Builder::new().name("ctl-client-reader".into()).spawn(move || {
        let why = loop {
            match read_msg::<ServerMsg>(&mut reader, EVENT_FRAME_BYTES_MAX) {
                Ok(Some(msg)) => {
                    if events.send(Event::Server { conn: generation, msg }).is_err() {
                        return;
                    }
                }
                Ok(None) => break "the controller closed the connection".to_string(),
                Err(e) => break e.to_string(),
            }
        };
        let _ = reader.get_ref().shutdown(Shutdown::Both);
        let _ = events.send(Event::Lost { conn: generation, why });
    })?;
    let link = Link::Tcp(stream);
    Ok((Conn { generation, opened: Instant::now(), index, member, link }, image))
}

/// The node side of a remote handle: one thread that owns the connection to
/// the controller in use, the submits not answered yet, and the failover
/// from one controller to the next. Its [`Hub`] outlives connections, so the
/// node's subscriptions keep flowing across a failover (a `Reset` with the
/// new controller's image comes first).
struct Driver {
    transport: Transport,
    addrs: Vec<String>,
    hub: Arc<Hub>,
    events: flume::Sender<Event>,
    failover_deadline: Duration,
    conn: Option<Conn>,
    generations: u64,
    /// Member ids learned from hellos, with the index of their address.
    members: HashMap<u64, usize>,
    /// The address to try next.
    cursor: usize,
    /// Connection attempts that failed since the last success.
    failures: u32,
    reconnect_at: Instant,
    /// Submits to send on the current connection (once `hold_until` passed).
    queue: VecDeque<Submit>,
    hold_until: Option<Instant>,
    next_id: u64,
    in_flight: HashMap<u64, Submit>,
    /// Replies held until the image reaches their version (or, at the
    /// latest, until their submit's deadline: they are committed anyway).
    parked: Vec<(u64, Instant, flume::Sender<Reply>, Reply)>,
    /// The image of the current connection while it is behind ours (see
    /// [`Driver::adopt`]); its deltas go here until it has caught up.
    catching_up: Option<MetadataImage>,
    last_tick: Instant,
    tick: Duration,
}

impl Driver {
    fn run(mut self, events: flume::Receiver<Event>) {
        loop {
            let now = Instant::now();
            if self.conn.is_none() && now >= self.reconnect_at {
                self.reconnect();
            }
            if self.conn.is_some() && self.hold_until.is_none_or(|t| now >= t) {
                self.hold_until = None;
                self.send_queued();
            }
            self.expire(Instant::now());
            if self.last_tick.elapsed() >= self.tick {
                self.last_tick = Instant::now();
                self.hub.tick();
            }
            match events.recv_timeout(self.wait()) {
                Ok(Event::Request(Request { cmd, reply })) => {
                    let deadline = Instant::now() + self.failover_deadline;
                    self.queue.push_back(Submit { cmd, reply, deadline, last_error: None });
                }
                Ok(Event::Server { conn, msg }) if self.is_current(conn) => self.on_message(msg),
                Ok(Event::Lost { conn, why }) if self.is_current(conn) => self.lost(&why),
                Ok(Event::Server { .. } | Event::Lost { .. }) => {}
                Ok(Event::HandlesGone) | Err(flume::RecvTimeoutError::Disconnected) => break,
                Err(flume::RecvTimeoutError::Timeout) => {}
            }
        }
        self.conn = None;
        let gone = || Err(ControllerError::Unavailable("the controller handle was closed".into()));
        for s in self.queue.drain(..).chain(self.in_flight.drain().map(|(_, s)| s)) {
            let _ = s.reply.send(gone());
        }
        self.hub.close(ControllerError::Unavailable("the controller handle was closed".into()));
    }

    fn is_current(&self, generation: u64) -> bool {
        self.conn.as_ref().is_some_and(|c| c.generation == generation)
    }

    /// How long to wait for the next event.
    fn wait(&self) -> Duration {
        let now = Instant::now();
        let mut until = now + self.tick;
        if self.conn.is_none() {
            until = until.min(self.reconnect_at);
        } else if let Some(t) = self.hold_until
            && !self.queue.is_empty()
        {
            until = until.min(t);
        }
        let deadlines = self.queue.iter().chain(self.in_flight.values()).map(|s| s.deadline);
        if let Some(d) = deadlines.chain(self.parked.iter().map(|p| p.1)).min() {
            until = until.min(d);
        }
        until.saturating_duration_since(now)
    }

    fn reconnect(&mut self) {
        let index = self.cursor % self.addrs.len();
        self.generations += 1;
        match open(&self.transport, &self.addrs[index], index, self.generations, &self.events) {
            Ok((conn, image)) => {
                tracing::info!(
                    addr = %self.addrs[index],
                    member = ?conn.member,
                    version = image.version,
                    "connected to the controller"
                );
                if let Some(m) = conn.member {
                    self.members.insert(m, index);
                }
                self.conn = Some(conn);
                self.adopt(image);
            }
            Err(e) => {
                tracing::warn!(
                    addr = %self.addrs[index],
                    error = format!("{e:#}"),
                    "controller unreachable"
                );
                self.cursor += 1;
                self.failed_attempt();
            }
        }
    }

    /// Counts a failed connection attempt; once every address has failed in
    /// a row, the next round waits (bounded exponential backoff).
    fn failed_attempt(&mut self) {
        self.failures += 1;
        let len = self.addrs.len() as u32;
        let pause = if self.failures.is_multiple_of(len) {
            backoff(self.failures / len - 1)
        } else {
            Duration::ZERO
        };
        self.reconnect_at = Instant::now() + pause;
    }

    /// Gives up the current connection; the next attempt goes to `index`.
    fn switch_to(&mut self, index: usize) {
        self.conn = None;
        self.catching_up = None;
        self.cursor = index;
        self.reconnect_at = Instant::now();
        // What was sent there is sent again on the next connection.
        let mut again: Vec<(u64, Submit)> = self.in_flight.drain().collect();
        again.sort_by_key(|(id, _)| std::cmp::Reverse(*id));
        for (_, s) in again {
            self.queue.push_front(s);
        }
        // Their commands are committed; nothing to wait for on a connection
        // that is gone.
        for (_, _, reply, result) in self.parked.drain(..) {
            let _ = reply.send(result);
        }
    }

    fn lost(&mut self, why: &str) {
        let Some(conn) = self.conn.as_ref() else { return };
        let (index, short) = (conn.index, conn.opened.elapsed() < CONNECTION_HEALTHY_AFTER);
        tracing::warn!(addr = %self.addrs[index], why, "lost the controller connection");
        for s in self.in_flight.values_mut() {
            s.last_error = Some(format!("connection lost: {why}"));
        }
        self.switch_to(index + 1);
        if short {
            self.failed_attempt();
        } else {
            self.failures = 0;
        }
    }

    fn send_queued(&mut self) {
        while let Some(s) = self.queue.pop_front() {
            let Some(conn) = self.conn.as_mut() else {
                self.queue.push_front(s);
                return;
            };
            self.next_id += 1;
            let id = self.next_id;
            let sent = match &mut conn.link {
                Link::Tcp(stream) => write_msg(stream, &ClientMsgRef::Submit { id, cmd: &s.cmd }),
                Link::Quic(session) => {
                    session.submit(conn.generation, id, &s.cmd, &self.events);
                    Ok(())
                }
            };
            self.in_flight.insert(id, s);
            if let Err(e) = sent {
                self.lost(&format!("writing a request: {e}"));
                return;
            }
        }
    }

    fn on_message(&mut self, msg: ServerMsg) {
        match msg {
            ServerMsg::Hello { .. } => self.lost("a second hello"),
            // A reset from the controller (its feed lagged, or this client's
            // poll fell behind its ring) is a new image from the same
            // controller: taken by the same rule as a hello's.
            ServerMsg::Delta(MetadataDelta::Reset(image)) => {
                self.catching_up = None;
                self.adopt(*image);
            }
            ServerMsg::Delta(d) => match self.catching_up.take() {
                Some(mut image) => {
                    image.apply_delta(&d);
                    self.adopt(image);
                }
                None => {
                    self.hub.publish(std::slice::from_ref(&d));
                    self.release_parked();
                }
            },
            ServerMsg::Reply { id, version, result } => {
                // Unknown ids are submits that already timed out.
                let Some(mut s) = self.in_flight.remove(&id) else { return };
                match result {
                    Err(e @ ControllerError::Unavailable(_)) if Instant::now() < s.deadline => {
                        self.retry_elsewhere(&e);
                        s.last_error = Some(e.to_string());
                        self.queue.push_front(s);
                    }
                    Err(e) => {
                        let _ = s.reply.send(Err(e));
                    }
                    // Released once our image holds the change: an image from
                    // this connection's controller (not one still catching up,
                    // whose version numbers say nothing about ours) at or
                    // past the reply's version.
                    Ok(r) if self.catching_up.is_none() && self.hub.version() >= version => {
                        let _ = s.reply.send(Ok((r, version)));
                    }
                    Ok(r) => self.parked.push((version, s.deadline, s.reply, Ok((r, version)))),
                }
            }
        }
    }

    /// After a retriable refusal: go to the leader it names (or the next
    /// address when that member's address is not known yet), or, with no
    /// leader known, try this one again shortly.
    fn retry_elsewhere(&mut self, e: &ControllerError) {
        let Some(conn) = self.conn.as_ref() else { return };
        let here = conn.member;
        let next = match e.leader_hint() {
            Some(leader) if Some(leader) != here => {
                Some(self.members.get(&leader).copied().unwrap_or(conn.index + 1))
            }
            // A member that does not know it leads yet, or no leader: wait.
            Some(_) | None if e.is_not_active() => None,
            // Unavailable for another reason (the controller stopping): move on.
            _ => Some(conn.index + 1),
        };
        match next {
            Some(index) => {
                // Hops between members that each name another (an election
                // in flux) back off like failed connections.
                let short = conn.opened.elapsed() < CONNECTION_HEALTHY_AFTER;
                tracing::info!(
                    from = %self.addrs[conn.index],
                    to = %self.addrs[index % self.addrs.len()],
                    error = %e,
                    "following the active controller"
                );
                self.switch_to(index);
                if short {
                    self.failed_attempt();
                }
            }
            None => self.hold_until = Some(Instant::now() + NO_LEADER_RETRY),
        }
    }

    /// Makes the current connection's `image` ours, as a `Reset` for every
    /// subscriber, unless it is the same (a reconnect to a controller that has
    /// not moved on) or older.
    ///
    /// Every quorum member applies the same committed log, so a member's
    /// image at a lower version is an earlier state of ours: a member that was
    /// down, or a follower a few entries behind the leader we were on. Taking
    /// it would make the node forget topics it already has, and a node
    /// removes the partitions (and their data) of topics that leave its
    /// image. So an older image is kept aside, brought forward by that
    /// connection's deltas, and taken once it has caught up.
    fn adopt(&mut self, image: MetadataImage) {
        let ours = self.hub.version();
        if image.version < ours {
            if self.catching_up.is_none() {
                tracing::info!(
                    theirs = image.version,
                    ours,
                    "the controller is behind this node's metadata; waiting for it to catch up"
                );
            }
            self.catching_up = Some(image);
            return;
        }
        if image != self.hub.image() {
            self.hub.publish(&[MetadataDelta::Reset(Box::new(image))]);
        }
        self.release_parked();
    }

    fn release_parked(&mut self) {
        if self.catching_up.is_some() {
            return;
        }
        let now = self.hub.version();
        let (ready, held) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition::<Vec<_>, _>(|(v, _, _, _)| *v <= now);
        self.parked = held;
        for (_, _, reply, result) in ready {
            let _ = reply.send(result);
        }
    }

    /// Fails submits past their deadline with a retriable error.
    fn expire(&mut self, now: Instant) {
        let (late, held): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.parked).into_iter().partition(|(_, d, _, _)| *d <= now);
        self.parked = held;
        for (_, _, reply, result) in late {
            let _ = reply.send(result);
        }
        let fail = |s: Submit, deadline: Duration| {
            let why = s.last_error.unwrap_or_else(|| "no controller reachable".into());
            let _ = s.reply.send(Err(ControllerError::Unavailable(format!(
                "no active controller answered within {deadline:?}; last: {why}"
            ))));
        };
        let (late, keep): (Vec<Submit>, Vec<Submit>) =
            self.queue.drain(..).partition(|s| s.deadline <= now);
        self.queue = keep.into();
        for s in late {
            fail(s, self.failover_deadline);
        }
        let late: Vec<u64> =
            self.in_flight.iter().filter(|(_, s)| s.deadline <= now).map(|(id, _)| *id).collect();
        for id in late {
            let s = self.in_flight.remove(&id).expect("listed");
            fail(s, self.failover_deadline);
        }
    }
}

/// Connects to a controller and returns a handle backed by the connection,
/// after the controller's initial image has arrived.
///
/// `addrs` is one `host:port` or a comma-separated list of them: the members
/// of a controller quorum. The handle uses one at a time; it follows the
/// active controller when a submit is refused with
/// [`ControllerError::not_active`] and moves to the next address when the
/// connection drops, re-subscribing there (subscribers see a
/// [`MetadataDelta::Reset`] with that controller's image, and their channel
/// stays open). Submits are retried across such failovers for
/// [`ControllerOptions::failover_deadline`] (15 s), then fail with a
/// retriable `Unavailable`.
pub fn connect(addrs: &str) -> anyhow::Result<ControllerHandle> {
    connect_with(addrs, &ControllerOptions::default())
}

/// [`connect`] with explicit bounds (`subscriber_queue_len`,
/// `request_queue_len`, `failover_deadline`, `tick`).
pub fn connect_with(addrs: &str, options: &ControllerOptions) -> anyhow::Result<ControllerHandle> {
    connect_over(Transport::Tcp, addrs, options)
}

fn connect_over(
    transport: Transport,
    addrs: &str,
    options: &ControllerOptions,
) -> anyhow::Result<ControllerHandle> {
    let addrs: Vec<String> =
        addrs.split(',').map(str::trim).filter(|a| !a.is_empty()).map(String::from).collect();
    anyhow::ensure!(!addrs.is_empty(), "no controller address given");
    let (events_tx, events_rx) = flume::bounded::<Event>(options.request_queue_len);
    // The first connection: of the controllers that answer, the one with the
    // newest image (a member that was down for a while serves an old one,
    // and a node that started from it would remove the partitions of the
    // topics it lacks). The others are closed again.
    let mut errors = Vec::new();
    let mut first: Option<(Conn, MetadataImage)> = None;
    for (index, addr) in addrs.iter().enumerate() {
        match open(&transport, addr, index, index as u64 + 1, &events_tx) {
            Ok(opened) if first.as_ref().is_none_or(|f| opened.1.version > f.1.version) => {
                first = Some(opened);
            }
            Ok(_) => {}
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    let Some((conn, image)) = first else {
        bail!("no controller answered: {}", errors.join("; "));
    };
    let hub = Arc::new(Hub::new(image, options.subscriber_queue_len));
    let (tx, rx) = flume::bounded::<Msg>(options.request_queue_len);

    // Requests from the handles join the driver's events; when every handle
    // is gone, so is the driver.
    let forward = events_tx.clone();
    std::thread::Builder::new().name("ctl-client-requests".into()).spawn(move || {
        for msg in rx.iter() {
            let Msg::Submit(r) = msg else { continue };
            if forward.send(Event::Request(r)).is_err() {
                return;
            }
        }
        let _ = forward.send(Event::HandlesGone);
    })?;

    let members = conn.member.map(|m| (m, conn.index)).into_iter().collect();
    let generations = addrs.len() as u64;
    let driver = Driver {
        transport,
        addrs,
        hub: hub.clone(),
        events: events_tx,
        failover_deadline: options.failover_deadline,
        cursor: conn.index,
        conn: Some(conn),
        generations,
        members,
        failures: 0,
        reconnect_at: Instant::now(),
        queue: VecDeque::new(),
        hold_until: None,
        next_id: 0,
        in_flight: HashMap::new(),
        parked: Vec::new(),
        catching_up: None,
        last_tick: Instant::now(),
        tick: options.tick,
    };
    std::thread::Builder::new().name("ctl-client".into()).spawn(move || driver.run(events_rx))?;
    Ok(ControllerHandle { tx, hub, in_process: false })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigDefaults;
    use crate::handle::start_in_process;
    use crate::state::tests::node;
    use futures::executor::block_on;

    /// A transport the handle's scenarios run over: TCP here, QUIC with
    /// mutual TLS in [`super::quic`].
    pub(super) struct Wire {
        /// Serves `handle` as member `member`; its address and a stopper.
        pub serve: Box<dyn Fn(ControllerHandle, u64) -> Served>,
        pub connect: Box<Connect>,
    }

    /// Connects a handle to comma-separated controller addresses.
    pub(super) type Connect = dyn Fn(&str, &ControllerOptions) -> ControllerHandle;

    /// A controller being served; `stop` ends serving and checks it ended cleanly.
    pub(super) struct Served {
        pub addr: String,
        pub stop: Box<dyn FnOnce()>,
    }

    fn tcp() -> Wire {
        Wire {
            serve: Box::new(|handle, _member| {
                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = listener.local_addr().unwrap().to_string();
                let stop = Arc::new(AtomicBool::new(false));
                let flag = stop.clone();
                let thread = std::thread::spawn(move || serve_until(listener, handle, &flag));
                let stop = Box::new(move || {
                    stop.store(true, Ordering::SeqCst);
                    thread.join().unwrap().unwrap();
                });
                Served { addr, stop }
            }),
            connect: Box::new(|addrs, options| connect_with(addrs, options).unwrap()),
        }
    }

    /// Submits, read-your-writes, deltas in order, and a controller that
    /// stops: submits are retried until the failover deadline, then fail
    /// retriably, while the subscription stays open.
    pub(super) fn round_trip(wire: &Wire) {
        let dir = tempfile::tempdir().unwrap();
        let (local, join) = start_in_process(dir.path(), ConfigDefaults::default()).unwrap();
        let served = (wire.serve)(local.clone(), 1);
        let options =
            ControllerOptions { failover_deadline: Duration::from_secs(1), ..Default::default() };
        let remote = (wire.connect)(&served.addr, &options);
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

        join.shutdown().unwrap();
        (served.stop)();
        let started = std::time::Instant::now();
        let e = remote.submit_blocking(Command::RegisterNode(node(2))).unwrap_err();
        assert_eq!(e.kafka_code(), 7, "{e}");
        assert!(started.elapsed() >= Duration::from_millis(900), "{:?}", started.elapsed());
        assert!(matches!(
            rx.recv_timeout(Duration::from_millis(100)),
            Err(flume::RecvTimeoutError::Timeout)
        ));
    }

    /// Two single-process controllers stand in for quorum members: the handle
    /// moves to the second when the first goes away, its subscriber sees a
    /// reset to the second's image, and a submit made meanwhile succeeds.
    pub(super) fn fails_over(wire: &Wire) {
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, join_a) = start_in_process(dir_a.path(), ConfigDefaults::default()).unwrap();
        let (b, _join_b) = start_in_process(dir_b.path(), ConfigDefaults::default()).unwrap();
        for c in [&a, &b] {
            c.submit_blocking(Command::RegisterNode(node(1))).unwrap();
        }
        let (served_a, served_b) = ((wire.serve)(a.clone(), 1), (wire.serve)(b.clone(), 2));
        let addrs = format!("{},{}", served_a.addr, served_b.addr);

        let remote = (wire.connect)(&addrs, &ControllerOptions::default());
        let (image, rx) = remote.subscribe();
        assert_eq!(image.cluster_id, a.image().cluster_id);
        remote.submit_blocking(Command::create_topic("on-a", 1, 1)).unwrap();

        // A goes away: no longer served, controller stopped.
        (served_a.stop)();
        join_a.shutdown().unwrap();
        let r = remote.submit_blocking(Command::create_topic("on-b", 1, 1)).unwrap();
        assert!(matches!(r, CommandResult::TopicCreated { .. }));
        let image = remote.image();
        assert!(image.topic("on-b").is_some() && image.topic("on-a").is_none());

        // The subscriber saw A's topic, then a reset to B's image (taken
        // once B had caught up with A's version, which on-b did).
        let d = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(matches!(&d, MetadataDelta::TopicCreated(t) if t.name == "on-a"), "{d:?}");
        let d = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        let MetadataDelta::Reset(reset) = d else { panic!("expected a reset, got {d:?}") };
        assert_ne!(reset.cluster_id, a.image().cluster_id);
        assert!(reset.topic("on-b").is_some());
        (served_b.stop)();
    }

    /// A controller behind the handle's image (a restarted or lagging quorum
    /// member) is not taken until it has caught up: the node must never see
    /// topics vanish, since it removes their partitions.
    pub(super) fn older_image_waits(wire: &Wire) {
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, join_a) = start_in_process(dir_a.path(), ConfigDefaults::default()).unwrap();
        let (b, _join_b) = start_in_process(dir_b.path(), ConfigDefaults::default()).unwrap();
        for c in [&a, &b] {
            c.submit_blocking(Command::RegisterNode(node(1))).unwrap();
        }
        for i in 0..3 {
            a.submit_blocking(Command::create_topic(format!("a{i}"), 1, 1)).unwrap();
        }
        let (served_a, served_b) = ((wire.serve)(a.clone(), 1), (wire.serve)(b.clone(), 2));
        let addrs = format!("{},{}", served_a.addr, served_b.addr);
        let remote = (wire.connect)(&addrs, &ControllerOptions::default());
        let (_, rx) = remote.subscribe();
        let a_image = a.image();
        assert_eq!(remote.image(), a_image);

        (served_a.stop)();
        join_a.shutdown().unwrap();
        // B is connected to but behind: the handle keeps A's image.
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(remote.image(), a_image);
        assert!(rx.try_recv().is_err(), "nothing published");
        // Once B has moved past A's version, its image is taken.
        for i in 0..4 {
            b.submit_blocking(Command::create_topic(format!("b{i}"), 1, 1)).unwrap();
        }
        let d = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        let MetadataDelta::Reset(image) = d else { panic!("expected a reset, got {d:?}") };
        // Taken as soon as its version reached ours, then followed.
        assert_eq!(image.version, a_image.version);
        assert_eq!(image.cluster_id, b.image().cluster_id);
        let d = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(matches!(&d, MetadataDelta::TopicCreated(t) if t.name == "b3"), "{d:?}");
        assert_eq!(remote.image(), b.image());
        (served_b.stop)();
    }

    #[test]
    fn serve_connect_round_trip() {
        round_trip(&tcp());
    }

    #[test]
    fn connect_fails_over_to_the_next_address() {
        fails_over(&tcp());
    }

    #[test]
    fn an_older_image_is_taken_only_once_caught_up() {
        older_image_waits(&tcp());
    }

    #[test]
    fn oversized_frames_are_refused_before_allocating() {
        let mut bytes = (REQUEST_FRAME_BYTES_MAX + 1).to_be_bytes().to_vec();
        bytes.extend_from_slice(b"{}");
        let err = read_msg::<ClientMsg>(&mut &bytes[..], REQUEST_FRAME_BYTES_MAX).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
