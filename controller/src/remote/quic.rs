//! The controller link over QUIC with mutual TLS (weir-net): the transport
//! nodes use when they have a `tls_dir` (DESIGN §1).
//!
//! Both ends authenticate against the cluster CA. The controller presents
//! its member certificate (node `1000000 + member`, or `1000000` for a
//! single-process controller); a node dials an address without knowing which
//! member is there, so it accepts any certificate of the CA that names a
//! controller id (`weir_net::tls::controller_client_config`). The node
//! presents its own certificate, and every request says `from: node id`,
//! which the endpoint checks against that certificate. A client whose
//! certificate comes from another CA fails the handshake.
//!
//! # RPCs (request/response, one QUIC stream each)
//!
//! Headers are weir-net's `ControllerRequest` / `ControllerResponse`; bodies
//! are serde JSON of the controller's own types.
//!
//! ```text
//! node                                         controller
//!   ── Hello ──────────────────────────────────▶
//!   ◀──────────────────────── { image, member }     the poll starts at image.version
//!   ── Deltas { since_version, max_wait_ms } ──▶    held until a delta or max_wait_ms
//!   ◀──────────────────────── { version, deltas }   deltas after since_version, or [Reset]
//!   ── Submit (command) ───────────────────────▶
//!   ◀──────────────────────── { version, result }
//! ```
//!
//! The controller keeps the last [`DELTAS_RING_LEN`] deltas in memory. A
//! poll from further back (or from a version it does not have, e.g. after it
//! restarted) is answered with a `Reset` of its whole image, which the client
//! takes by the same rule as a hello's image (see `Driver::adopt`).
//!
//! The client side is the TCP client's driver (failover across members,
//! leader hints, catching-up rule, replies held until the image reaches their
//! version); only what carries the messages differs. A submit's reply and
//! the deltas still travel separately (a stream each), so the hold-back rule
//! is needed exactly as over TCP. QUIC does not notice a peer that vanished
//! without closing (a killed process: QUIC ignores ICMP), so a long poll not
//! answered within [`DELTAS_WAIT_MS`] + [`POLL_ANSWER_MARGIN`] counts as a
//! lost connection, as a TCP reset would.
//!
//! Threads: the controller runs the endpoint's QUIC thread, one dispatcher
//! (hellos, polls, its subscription to the handle) and [`SUBMIT_WORKERS`]
//! threads that run submits. A client runs its endpoint's QUIC thread and one
//! tokio worker for its requests; the driver thread stays the TCP client's.

use std::collections::VecDeque;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use weir_net::tls::{DevCa, NodeIdentity, TrustRoots};
use weir_net::{
    ControllerRequest, ControllerResponse, ControllerRpc, Endpoint, EndpointConfig, EndpointHandle,
    Frame, Header, InboundRequest, Responder,
};
use weir_proto::NodeId;

use super::{ACCEPT_POLL, Event, ServerMsg, Transport, connect_over};
use crate::error::ControllerError;
use crate::handle::{ControllerHandle, ControllerOptions};
use crate::state::{Command, CommandResult, MetadataDelta, MetadataImage};

/// How long the controller may hold a long poll with nothing new. Short, so
/// that a silent controller is noticed quickly (see the module docs).
pub const DELTAS_WAIT_MS: u32 = 1_000;
/// How long past [`DELTAS_WAIT_MS`] a client waits for a poll's answer
/// before it gives the connection up.
pub const POLL_ANSWER_MARGIN: Duration = Duration::from_secs(2);
/// Recent deltas the controller keeps for polls; a client further behind
/// gets a `Reset`. A node polls continuously, so it is at most one answer
/// behind unless its link stalled; 4096 deltas (one per applied record) cover
/// any burst short of that, and a `Reset` repairs the rest.
pub const DELTAS_RING_LEN: usize = 4096;
/// Most deltas in one poll answer; the client polls again at once for more.
pub const DELTAS_PER_ANSWER_MAX: usize = 1024;
/// Polls the controller holds at once (about one per connected node); past
/// it a poll is answered at once, empty.
pub const HELD_POLLS_MAX: usize = 4096;
/// Threads running submits: each waits for its command's commit, so a slow
/// commit of one node's command does not hold up another's.
pub const SUBMIT_WORKERS: usize = 4;
/// Submits waiting for a worker; past it a submit's stream is reset and the
/// node sends it again on its next connection.
pub const SUBMIT_QUEUE_LEN: usize = 1024;
/// How long `open` waits for a hello. Shorter than over TCP: a controller
/// that was killed refuses nothing over UDP, and until its connection times
/// out the hello would wait on it while the driver (and every submit) waits.
/// A live controller answers a hello at once.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the controller's member certificate may take to appear when
/// members start together (the first creates the CA; see `service`).
const TLS_SETUP_WAIT: Duration = Duration::from_secs(10);

#[derive(Serialize, Deserialize)]
struct HelloAnswer {
    image: MetadataImage,
    /// The quorum member serving; `None` from a single-process controller.
    member: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct SubmitAnswer {
    /// The image version after the command (0 with an error).
    version: u64,
    result: Result<CommandResult, ControllerError>,
}

#[derive(Serialize, Deserialize)]
struct DeltasAnswer {
    /// The controller's image version once `deltas` are applied.
    version: u64,
    deltas: Vec<MetadataDelta>,
}

/// The cluster CA's trust roots and `node`'s certificate from `tls_dir`:
/// loaded when the certificate exists (a CA folder without `ca.key.pem`
/// works then), otherwise issued by the CA there, which is created when
/// missing (`weir dev`). Retried for a while, since processes starting
/// together may be writing the CA at that moment.
pub fn load_tls(tls_dir: &Path, node: NodeId) -> anyhow::Result<(TrustRoots, NodeIdentity)> {
    let deadline = Instant::now() + TLS_SETUP_WAIT;
    loop {
        let attempt = if tls_dir.join(format!("node-{}.pem", node.0)).exists() {
            TrustRoots::load(tls_dir)
                .and_then(|roots| Ok((roots, NodeIdentity::load(tls_dir, node)?)))
        } else {
            DevCa::load_or_create(tls_dir)
                .and_then(|ca| Ok((ca.trust_roots()?, ca.load_or_issue(node)?)))
        };
        match attempt {
            Ok(tls) => return Ok(tls),
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = format!("{e:#}"), "TLS setup; trying again");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => {
                return Err(e).with_context(|| format!("the cluster CA in {}", tls_dir.display()));
            }
        }
    }
}

fn answer<T: Serialize>(reply: Responder, kind: ControllerRpc, body: &T) {
    let json = serde_json::to_vec(body).expect("controller answers serialize");
    let header = Header::ControllerResponse(ControllerResponse { kind });
    if let Err(e) = reply.respond(header, Bytes::from(json)) {
        // An image over the frame body limit; the node's request fails and
        // it tries again (or another controller).
        tracing::error!(error = %e, "controller answer refused by the transport");
    }
}

/// The recent deltas and the image they lead to, as the dispatcher saw them
/// on its subscription. Every delta but a `Reset` is one version.
struct Feed {
    image: MetadataImage,
    /// The last `ring.len()` deltas, ending at `image.version`.
    ring: VecDeque<MetadataDelta>,
}

impl Feed {
    fn push(&mut self, d: MetadataDelta) {
        self.image.apply_delta(&d);
        if matches!(d, MetadataDelta::Reset(_)) {
            self.ring.clear();
            return;
        }
        if self.ring.len() == DELTAS_RING_LEN {
            self.ring.pop_front();
        }
        self.ring.push_back(d);
    }

    /// The answer to a poll from `since`, or `None` when there is nothing
    /// after it yet.
    fn answer(&self, since: u64) -> Option<DeltasAnswer> {
        let version = self.image.version;
        if since == version {
            return None;
        }
        let floor = version - self.ring.len() as u64;
        if since < floor || since > version {
            let reset = MetadataDelta::Reset(Box::new(self.image.clone()));
            return Some(DeltasAnswer { version, deltas: vec![reset] });
        }
        let skip = (since - floor) as usize;
        let deltas: Vec<MetadataDelta> =
            self.ring.iter().skip(skip).take(DELTAS_PER_ANSWER_MAX).cloned().collect();
        Some(DeltasAnswer { version: since + deltas.len() as u64, deltas })
    }
}

/// A poll waiting for a delta.
struct Held {
    since: u64,
    deadline: Instant,
    reply: Responder,
}

/// Serves `handle` to nodes over QUIC on `config.listen` (UDP) until `stop`
/// is set or the controller stops (its subscription ends); `member` is the
/// quorum member every hello names. Dropping the endpoint at the end closes
/// the nodes' connections, so they move on at once.
pub fn serve_until(
    config: EndpointConfig,
    handle: ControllerHandle,
    member: Option<u64>,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let (endpoint, inbound) = start_endpoint(config)?;
    serve_endpoint_until(endpoint, inbound, handle, member, stop)
}

/// Binds the controller's node-facing QUIC endpoint.
pub fn start_endpoint(
    config: EndpointConfig,
) -> anyhow::Result<(Endpoint, flume::Receiver<InboundRequest>)> {
    let listen = config.listen;
    Endpoint::start(config).with_context(|| format!("QUIC endpoint on {listen}"))
}

/// [`serve_until`] on an endpoint already bound ([`start_endpoint`]).
pub fn serve_endpoint_until(
    endpoint: Endpoint,
    inbound: flume::Receiver<InboundRequest>,
    handle: ControllerHandle,
    member: Option<u64>,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    tracing::info!(listen = %endpoint.local_addr(), ?member, "controller serving nodes over QUIC");
    let (image, deltas) = handle.subscribe();
    let mut feed = Feed { image, ring: VecDeque::new() };
    let (submits, queued) = flume::bounded::<(Command, Responder)>(SUBMIT_QUEUE_LEN);
    for i in 0..SUBMIT_WORKERS {
        let (handle, queued) = (handle.clone(), queued.clone());
        std::thread::Builder::new().name(format!("ctl-submit-{i}")).spawn(move || {
            for (cmd, reply) in queued.iter() {
                let (result, version) = match handle.submit_versioned_blocking(cmd) {
                    Ok((r, v)) => (Ok(r), v),
                    Err(e) => (Err(e), 0),
                };
                answer(reply, ControllerRpc::Submit, &SubmitAnswer { version, result });
            }
        })?;
    }
    let mut held: Vec<Held> = Vec::new();
    enum Input {
        Request(Result<InboundRequest, flume::RecvError>),
        Delta(Result<MetadataDelta, flume::RecvError>),
    }
    let result = loop {
        if stop.load(Ordering::SeqCst) {
            break Ok(());
        }
        let now = Instant::now();
        let wait = held
            .iter()
            .map(|h| h.deadline.saturating_duration_since(now))
            .min()
            .unwrap_or(ACCEPT_POLL)
            .min(ACCEPT_POLL);
        let input = flume::Selector::new()
            .recv(&inbound, Input::Request)
            .recv(&deltas, Input::Delta)
            .wait_timeout(wait);
        match input {
            Ok(Input::Request(Ok(request))) => {
                on_request(request, &feed, member, &submits, &mut held);
            }
            Ok(Input::Request(Err(_))) => break Err(anyhow::anyhow!("the QUIC endpoint stopped")),
            Ok(Input::Delta(Ok(d))) => {
                feed.push(d);
                while let Ok(d) = deltas.try_recv() {
                    feed.push(d);
                }
                for h in std::mem::take(&mut held) {
                    match feed.answer(h.since) {
                        Some(a) => answer(h.reply, deltas_kind(h.since), &a),
                        None => held.push(h),
                    }
                }
            }
            // The controller stopped.
            Ok(Input::Delta(Err(_))) => break Ok(()),
            Err(_) => {}
        }
        let now = Instant::now();
        let (late, waiting): (Vec<Held>, Vec<Held>) =
            std::mem::take(&mut held).into_iter().partition(|h| h.deadline <= now);
        held = waiting;
        for h in late {
            let version = feed.image.version;
            answer(h.reply, deltas_kind(h.since), &DeltasAnswer { version, deltas: Vec::new() });
        }
    };
    // Held polls are reset with the endpoint; the workers end once the
    // submits they hold are answered (or failed by the stopped controller).
    drop(held);
    drop(endpoint);
    result
}

fn deltas_kind(since: u64) -> ControllerRpc {
    ControllerRpc::Deltas { since_version: since, max_wait_ms: 0 }
}

fn on_request(
    request: InboundRequest,
    feed: &Feed,
    member: Option<u64>,
    submits: &flume::Sender<(Command, Responder)>,
    held: &mut Vec<Held>,
) {
    let InboundRequest { peer, header, body, reply } = request;
    let Header::ControllerRequest(ControllerRequest { kind, .. }) = header else {
        // Dropping the responder resets the peer's stream.
        tracing::warn!(peer = peer.0, got = header.name(), "not a controller request");
        return;
    };
    match kind {
        ControllerRpc::Hello => {
            answer(reply, kind, &HelloAnswer { image: feed.image.clone(), member });
        }
        ControllerRpc::Submit => match serde_json::from_slice::<Command>(&body) {
            Ok(cmd) => {
                if submits.try_send((cmd, reply)).is_err() {
                    tracing::warn!(peer = peer.0, "submit queue full; submit refused");
                }
            }
            Err(e) => tracing::warn!(peer = peer.0, error = %e, "undecodable command"),
        },
        ControllerRpc::Deltas { since_version, max_wait_ms } => match feed.answer(since_version) {
            Some(a) => answer(reply, kind, &a),
            None if max_wait_ms > 0 && held.len() < HELD_POLLS_MAX => {
                let deadline = Instant::now() + Duration::from_millis(u64::from(max_wait_ms));
                held.push(Held { since: since_version, deadline, reply });
            }
            None => {
                let version = feed.image.version;
                answer(reply, kind, &DeltasAnswer { version, deltas: Vec::new() });
            }
        },
    }
}

/// A node's QUIC client of the controllers: its own endpoint (bound to an
/// ephemeral UDP port; nothing is served on it) and one tokio worker for the
/// requests. Shared by a remote handle's driver and its connections; never
/// held by a task on its own runtime (dropping the runtime there would panic).
pub struct QuicClient {
    node: NodeId,
    endpoint: Endpoint,
    requests: EndpointHandle,
    /// `Some` until dropped; shut down in the background, so that dropping
    /// the client never blocks or panics inside another async runtime.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for QuicClient {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl QuicClient {
    /// Starts the client endpoint of `identity`'s node. `ipv6`: bind `[::]`
    /// rather than `0.0.0.0` (the controllers' address family).
    pub fn start(roots: TrustRoots, identity: NodeIdentity, ipv6: bool) -> anyhow::Result<Self> {
        let node = identity.node;
        let listen: SocketAddr = if ipv6 { "[::]:0" } else { "0.0.0.0:0" }.parse().expect("addr");
        let (endpoint, inbound) = Endpoint::start(EndpointConfig { node, listen, roots, identity })
            .context("the controller client's QUIC endpoint")?;
        // Nobody serves requests on it: dropping the receiver resets any.
        drop(inbound);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ctl-quic-client")
            .enable_all()
            .build()
            .context("the controller client's runtime")?;
        let requests = endpoint.handle();
        Ok(QuicClient { node, endpoint, requests, runtime: Some(runtime) })
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("the runtime lives as long as the client")
    }

    fn request(&self, kind: ControllerRpc) -> Header {
        Header::ControllerRequest(ControllerRequest { from: self.node.0, kind })
    }

    /// Says hello to the controller at `addr` and starts the long poll from
    /// its image. Blocks (the driver thread) for at most [`HELLO_TIMEOUT`].
    pub(super) fn open(
        &self,
        addr: &str,
        generation: u64,
        events: &flume::Sender<Event>,
    ) -> anyhow::Result<(Session, MetadataImage, Option<u64>)> {
        let to = addr
            .to_socket_addrs()
            .with_context(|| format!("resolving {addr}"))?
            .next()
            .with_context(|| format!("{addr} resolves to no address"))?;
        // Waited for on a channel, not with `block_on`: the caller may be
        // inside another async runtime (a node's start-up in a test).
        let (answered, answer) = flume::bounded(1);
        let (requests, header) = (self.requests.clone(), self.request(ControllerRpc::Hello));
        self.runtime().spawn(async move {
            let hello = requests.request_controller(to, header, Bytes::new());
            let _ = answered.send(tokio::time::timeout(HELLO_TIMEOUT, hello).await);
        });
        let frame = match answer.recv() {
            Ok(Ok(Ok(frame))) => frame,
            Ok(Ok(Err(e))) => {
                return Err(e).with_context(|| format!("hello to the controller at {addr}"));
            }
            Ok(Err(_)) | Err(_) => {
                bail!("the controller at {addr} did not answer the hello in {HELLO_TIMEOUT:?}")
            }
        };
        let HelloAnswer { image, member } = decode(&frame, ControllerRpc::Hello)
            .with_context(|| format!("reading the hello of {addr}"))?;
        let poll = self.runtime().spawn(poll(
            self.requests.clone(),
            self.node,
            to,
            image.version,
            generation,
            events.clone(),
        ));
        let session = Session {
            to,
            node: self.node,
            requests: self.requests.clone(),
            runtime: self.runtime().handle().clone(),
            poll: poll.abort_handle(),
        };
        Ok((session, image, member))
    }

    /// The endpoint's local UDP address (tests).
    pub fn local_addr(&self) -> SocketAddr {
        self.endpoint.local_addr()
    }
}

/// One connection's state on the client: where it goes and its long poll
/// (stopped when the session is dropped).
pub(super) struct Session {
    to: SocketAddr,
    node: NodeId,
    requests: EndpointHandle,
    runtime: tokio::runtime::Handle,
    poll: tokio::task::AbortHandle,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.poll.abort();
    }
}

impl Session {
    /// Sends submit `id` of connection `generation`; its answer (or the
    /// connection's loss) arrives as an event.
    pub(super) fn submit(
        &self,
        generation: u64,
        id: u64,
        cmd: &Command,
        events: &flume::Sender<Event>,
    ) {
        let body = Bytes::from(serde_json::to_vec(cmd).expect("commands serialize"));
        let header = Header::ControllerRequest(ControllerRequest {
            from: self.node.0,
            kind: ControllerRpc::Submit,
        });
        let (requests, to, events) = (self.requests.clone(), self.to, events.clone());
        self.runtime.spawn(async move {
            let event = match requests.request_controller(to, header, body).await {
                Ok(frame) => match decode::<SubmitAnswer>(&frame, ControllerRpc::Submit) {
                    Ok(SubmitAnswer { version, result }) => Event::Server {
                        conn: generation,
                        msg: ServerMsg::Reply { id, version, result },
                    },
                    Err(e) => Event::Lost { conn: generation, why: format!("{e:#}") },
                },
                Err(e) => Event::Lost { conn: generation, why: format!("submitting: {e}") },
            };
            let _ = events.send_async(event).await;
        });
    }
}

/// The long poll of connection `generation`: forwards the deltas after
/// `since` as they come, until the connection fails (reported as lost) or the
/// session stops it.
async fn poll(
    requests: EndpointHandle,
    node: NodeId,
    to: SocketAddr,
    mut since: u64,
    generation: u64,
    events: flume::Sender<Event>,
) {
    let limit = Duration::from_millis(u64::from(DELTAS_WAIT_MS)) + POLL_ANSWER_MARGIN;
    loop {
        let kind = ControllerRpc::Deltas { since_version: since, max_wait_ms: DELTAS_WAIT_MS };
        let header = Header::ControllerRequest(ControllerRequest { from: node.0, kind });
        let answer = match tokio::time::timeout(
            limit,
            requests.request_controller(to, header, Bytes::new()),
        )
        .await
        {
            Ok(Ok(frame)) => decode::<DeltasAnswer>(&frame, kind).map_err(|e| format!("{e:#}")),
            Ok(Err(e)) => Err(format!("polling for deltas: {e}")),
            Err(_) => Err(format!("no answer to a poll for deltas within {limit:?}")),
        };
        match answer {
            Ok(DeltasAnswer { version, deltas }) => {
                for d in deltas {
                    let event = Event::Server { conn: generation, msg: ServerMsg::Delta(d) };
                    if events.send_async(event).await.is_err() {
                        return;
                    }
                }
                since = version;
            }
            Err(why) => {
                let _ = events.send_async(Event::Lost { conn: generation, why }).await;
                return;
            }
        }
    }
}

/// The JSON body of a controller's answer to a `kind` request.
fn decode<T: DeserializeOwned>(frame: &Frame, kind: ControllerRpc) -> anyhow::Result<T> {
    let Header::ControllerResponse(ControllerResponse { kind: got }) = &frame.header else {
        bail!("a {} frame answered a controller request", frame.header.name());
    };
    let same = std::mem::discriminant(got) == std::mem::discriminant(&kind);
    anyhow::ensure!(same, "a {got:?} answer to a {kind:?} request");
    serde_json::from_slice(&frame.body).context("decoding the controller's answer")
}

/// [`super::connect`] over QUIC with mutual TLS: `node` is this node's id,
/// whose certificate (and the cluster CA) `tls_dir` holds (issued there on
/// first use when the CA's key is there too, as `weir dev` sets it up).
pub fn connect_quic(addrs: &str, node: NodeId, tls_dir: &Path) -> anyhow::Result<ControllerHandle> {
    connect_quic_with(addrs, node, tls_dir, &ControllerOptions::default())
}

/// [`connect_quic`] with explicit bounds (see [`super::connect_with`]).
pub fn connect_quic_with(
    addrs: &str,
    node: NodeId,
    tls_dir: &Path,
    options: &ControllerOptions,
) -> anyhow::Result<ControllerHandle> {
    let (roots, identity) = load_tls(tls_dir, node)?;
    connect_with_identity(addrs, roots, identity, options)
}

/// [`connect_quic_with`] with the trust roots and certificate in hand.
pub fn connect_with_identity(
    addrs: &str,
    roots: TrustRoots,
    identity: NodeIdentity,
    options: &ControllerOptions,
) -> anyhow::Result<ControllerHandle> {
    let ipv6 = addrs
        .split(',')
        .map(str::trim)
        .find(|a| !a.is_empty())
        .and_then(|a| a.to_socket_addrs().ok()?.next())
        .is_some_and(|a| a.is_ipv6());
    let client = QuicClient::start(roots, identity, ipv6)?;
    connect_over(Transport::Quic(Arc::new(client)), addrs, options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigDefaults;
    use crate::handle::start_in_process;
    use crate::raft::network::member_node_id;
    use crate::remote::tests::{
        Served as WireServed, Wire, fails_over, older_image_waits, round_trip,
    };
    use crate::state::tests::node;

    /// A controller served over QUIC on a free port: its address, stop flag
    /// and serving thread.
    struct Served {
        addr: SocketAddr,
        stop: Arc<AtomicBool>,
        thread: std::thread::JoinHandle<anyhow::Result<()>>,
    }

    fn serve(ca: &DevCa, handle: ControllerHandle, member: u64) -> Served {
        let config = EndpointConfig {
            node: member_node_id(member),
            listen: "127.0.0.1:0".parse().unwrap(),
            roots: ca.trust_roots().unwrap(),
            identity: ca.issue(member_node_id(member)).unwrap(),
        };
        let (endpoint, inbound) = start_endpoint(config).unwrap();
        let addr = endpoint.local_addr();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                serve_endpoint_until(endpoint, inbound, handle, Some(member), &stop)
            })
        };
        Served { addr, stop, thread }
    }

    impl Served {
        fn stop(self) {
            self.stop.store(true, Ordering::SeqCst);
            self.thread.join().unwrap().unwrap();
        }
    }

    fn client(ca: &DevCa, addrs: &str, options: &ControllerOptions) -> ControllerHandle {
        let identity = ca.issue(NodeId(1)).unwrap();
        connect_with_identity(addrs, ca.trust_roots().unwrap(), identity, options).unwrap()
    }

    /// The handle's scenarios (see `remote::tests`) over QUIC with mutual
    /// TLS against a fresh development CA (kept alive by the returned folder).
    fn quic() -> (Wire, tempfile::TempDir) {
        let tls = tempfile::tempdir().unwrap();
        let ca = Arc::new(DevCa::load_or_create(tls.path()).unwrap());
        let ca2 = ca.clone();
        let wire = Wire {
            serve: Box::new(move |handle, member| {
                let served = serve(&ca, handle, member);
                let addr = served.addr.to_string();
                WireServed { addr, stop: Box::new(move || served.stop()) }
            }),
            connect: Box::new(move |addrs, options| client(&ca2, addrs, options)),
        };
        (wire, tls)
    }

    #[test]
    fn serve_connect_round_trip() {
        round_trip(&quic().0);
    }

    #[test]
    fn connect_fails_over_to_the_next_address() {
        fails_over(&quic().0);
    }

    #[test]
    fn an_older_image_is_taken_only_once_caught_up() {
        older_image_waits(&quic().0);
    }

    /// A node whose certificate comes from another CA gets nothing: the
    /// handshake fails, so no hello and no submit.
    #[test]
    fn a_client_of_another_ca_is_refused() {
        let (dir, tls, other) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let ca = DevCa::load_or_create(tls.path()).unwrap();
        let stranger = DevCa::load_or_create(other.path()).unwrap();
        let (local, _join) = start_in_process(dir.path(), ConfigDefaults::default()).unwrap();
        let served = serve(&ca, local, 1);
        // A node with the other CA's certificate is refused.
        let stranger_trusting = |roots| {
            let identity = stranger.issue(NodeId(1)).unwrap();
            let addr = served.addr.to_string();
            connect_with_identity(&addr, roots, identity, &ControllerOptions::default())
        };
        // It trusts our CA (so only its own certificate is at fault).
        assert!(stranger_trusting(ca.trust_roots().unwrap()).is_err());
        // And a node that trusts only the other CA does not take ours.
        assert!(stranger_trusting(stranger.trust_roots().unwrap()).is_err());
        // Nor does a node accept another node posing as the controller.
        let dir2 = tempfile::tempdir().unwrap();
        let (other_ctl, _join2) = start_in_process(dir2.path(), ConfigDefaults::default()).unwrap();
        let config = EndpointConfig {
            node: NodeId(5),
            listen: "127.0.0.1:0".parse().unwrap(),
            roots: ca.trust_roots().unwrap(),
            identity: ca.issue(NodeId(5)).unwrap(),
        };
        let (endpoint, inbound) = start_endpoint(config).unwrap();
        let addr = endpoint.local_addr();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let t = std::thread::spawn(move || {
            serve_endpoint_until(endpoint, inbound, other_ctl, None, &stop2)
        });
        let identity = ca.issue(NodeId(1)).unwrap();
        let refused = connect_with_identity(
            &addr.to_string(),
            ca.trust_roots().unwrap(),
            identity,
            &ControllerOptions::default(),
        );
        assert!(refused.is_err());
        stop.store(true, Ordering::SeqCst);
        t.join().unwrap().unwrap();
        // The same node with a certificate of the cluster CA is served.
        let ok = client(&ca, &served.addr.to_string(), &ControllerOptions::default());
        assert!(!ok.image().cluster_id.is_empty());
    }

    #[test]
    fn polls_from_before_the_ring_get_a_reset() {
        let image = MetadataImage { cluster_id: "c".into(), ..Default::default() };
        let mut feed = Feed { image, ring: VecDeque::new() };
        assert!(feed.answer(0).is_none());
        for i in 0..(DELTAS_RING_LEN as i32 + 10) {
            feed.push(MetadataDelta::NodeRegistered { node: node(i), broker_epoch: 1 });
        }
        let version = feed.image.version;
        let a = feed.answer(version - 2).unwrap();
        assert_eq!((a.version, a.deltas.len()), (version, 2));
        let a = feed.answer(version - DELTAS_RING_LEN as u64 + 1).unwrap();
        assert_eq!(a.deltas.len(), DELTAS_PER_ANSWER_MAX);
        assert_eq!(a.version, version - DELTAS_RING_LEN as u64 + 1 + DELTAS_PER_ANSWER_MAX as u64);
        for since in [0, version - DELTAS_RING_LEN as u64 - 1, version + 1] {
            let a = feed.answer(since).unwrap();
            assert_eq!(a.version, version);
            assert!(matches!(&a.deltas[..], [MetadataDelta::Reset(i)] if i.version == version));
        }
        feed.push(MetadataDelta::Reset(Box::new(feed.image.clone())));
        assert!(feed.answer(version).is_none());
        assert!(matches!(&feed.answer(version - 1).unwrap().deltas[..], [MetadataDelta::Reset(_)]));
    }
}
