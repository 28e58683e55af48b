//! openraft's RPCs over weir-net: each RPC is one `Header::RaftRequest`
//! frame on its own QUIC stream, answered by one `Header::RaftResponse`.
//!
//! ```text
//!  member A (openraft core) ─RaftPeer::call─▶ weir-net QUIC (mutual TLS) ─▶ member B
//!                                                                          serve_inbound
//!  ◀──────────── Result<Response, RaftError> (JSON body) ◀── Raft::append_entries/vote/…
//! ```
//!
//! Bodies are serde_json encodings of openraft's request types and of
//! `Result<response, RaftError>`; weir-net never looks into them. JSON keeps
//! them readable and needs no new dependency; snapshots travel in chunks of
//! `snapshot_max_chunk_size`, well under the frame body limit even as JSON
//! (whose byte arrays are about 4 bytes per byte). Both ends run the same
//! Weir version, as for every weir-net frame; nothing here is persisted.
//!
//! The endpoint authenticates the sender: `RaftRequest::from` must be the id
//! in the sender's certificate, or the stream is refused before we see it.

use std::time::Duration;

use bytes::Bytes;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft};
use serde::Serialize;
use serde::de::DeserializeOwned;
use weir_net::frame::{Header, RaftRequest, RaftResponse, RaftRpc};
use weir_net::{EndpointHandle, InboundRequest, PeerClient, TransportError};
use weir_proto::NodeId;

use super::TypeConfig;

/// Controller members' certificates name node ids from here up; storage
/// nodes' ids stay below it (the node refuses a larger `node_id`).
///
/// Members and storage nodes are issued certificates by the same cluster CA,
/// and weir-net authenticates a peer by the node id its certificate names.
/// Were member 1 node 1, storage node 1's certificate would let it speak for
/// member 1 in the quorum (vote, append entries). Offsetting member ids keeps
/// the two id spaces apart, and `serve_inbound` refuses Raft RPCs from any
/// certificate below the offset.
pub const MEMBER_NODE_ID_BASE: i32 = weir_net::tls::CONTROLLER_NODE_ID_MIN;

/// Converts a member id to the node id its certificate names
/// ([`MEMBER_NODE_ID_BASE`] + id).
pub fn member_node_id(id: u64) -> NodeId {
    let node = MEMBER_NODE_ID_BASE
        .checked_add(i32::try_from(id).expect("member ids fit the certificate's i32 node id"))
        .expect("member ids fit the certificate's i32 node id");
    NodeId(node)
}

/// Whether a certificate's node id is a controller member's, not a storage node's.
pub fn is_member_node_id(node: NodeId) -> bool {
    node.0 >= MEMBER_NODE_ID_BASE
}

/// Makes one [`RaftPeer`] per target for openraft. Owned by the Raft core.
pub struct QuicNetwork {
    pub(crate) endpoint: EndpointHandle,
}

impl RaftNetworkFactory<TypeConfig> for QuicNetwork {
    type Network = RaftPeer;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> RaftPeer {
        // Membership holds the SocketAddrs RaftController was configured
        // with, so this parses; were it not to, the peer is unreachable.
        let addr = node.addr.parse().unwrap_or_else(|_| ([0, 0, 0, 0], 0).into());
        RaftPeer {
            target,
            from: self.endpoint.node().0,
            client: self.endpoint.peer(member_node_id(target), addr),
        }
    }
}

/// RPCs to one member. Owned by the openraft replication task for that target.
pub struct RaftPeer {
    target: u64,
    from: i32,
    client: PeerClient,
}

impl RaftPeer {
    async fn call<Req, Resp, E>(
        &self,
        rpc: RaftRpc,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<u64, BasicNode, RaftError<u64, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let body = serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let header = Header::RaftRequest(RaftRequest { from: self.from, rpc });
        let ttl = option.hard_ttl().max(Duration::from_millis(50));
        let frame =
            match tokio::time::timeout(ttl, self.client.request(header, Bytes::from(body))).await {
                Ok(Ok(frame)) => frame,
                Ok(Err(e @ (TransportError::Connect { .. } | TransportError::Shutdown))) => {
                    return Err(RPCError::Unreachable(Unreachable::new(&e)));
                }
                Ok(Err(e)) => return Err(RPCError::Network(NetworkError::new(&e))),
                Err(_) => {
                    let e = std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in time");
                    return Err(RPCError::Network(NetworkError::new(&e)));
                }
            };
        if frame.header != Header::RaftResponse(RaftResponse { rpc }) {
            let e = std::io::Error::other(format!("answered with {}", frame.header.name()));
            return Err(RPCError::Network(NetworkError::new(&e)));
        }
        let result: Result<Resp, RaftError<u64, E>> = serde_json::from_slice(&frame.body)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for RaftPeer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call(RaftRpc::AppendEntries, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        self.call(RaftRpc::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call(RaftRpc::Vote, &rpc, &option).await
    }
}

/// Answers Raft RPCs from peers until the endpoint's inbound channel closes.
/// Runs on the member's runtime; one task per request, so a slow snapshot
/// install does not hold up heartbeats.
pub(crate) async fn serve_inbound(
    raft: Raft<TypeConfig>,
    inbound: flume::Receiver<InboundRequest>,
) {
    while let Ok(request) = inbound.recv_async().await {
        let raft = raft.clone();
        tokio::spawn(async move {
            if !is_member_node_id(request.peer) {
                // A storage node's certificate: it has no say in the quorum.
                tracing::warn!(peer = request.peer.0, "Raft request from a non-member refused");
                return;
            }
            let Header::RaftRequest(RaftRequest { rpc, .. }) = request.header else {
                // Dropping the responder resets the peer's stream.
                tracing::warn!(
                    peer = request.peer.0,
                    got = request.header.name(),
                    "not a Raft request"
                );
                return;
            };
            let body = match answer(&raft, rpc, &request.body).await {
                Ok(body) => body,
                Err(e) => {
                    tracing::warn!(peer = request.peer.0, error = %e, "undecodable Raft request");
                    return;
                }
            };
            let header = Header::RaftResponse(RaftResponse { rpc });
            if let Err(e) = request.reply.respond(header, Bytes::from(body)) {
                tracing::warn!(error = %e, "Raft response refused by the transport");
            }
        });
    }
}

async fn answer(raft: &Raft<TypeConfig>, rpc: RaftRpc, body: &[u8]) -> serde_json::Result<Vec<u8>> {
    match rpc {
        RaftRpc::AppendEntries => {
            let req: AppendEntriesRequest<TypeConfig> = serde_json::from_slice(body)?;
            serde_json::to_vec(&raft.append_entries(req).await)
        }
        RaftRpc::Vote => {
            let req: VoteRequest<u64> = serde_json::from_slice(body)?;
            serde_json::to_vec(&raft.vote(req).await)
        }
        RaftRpc::InstallSnapshot => {
            let req: InstallSnapshotRequest<TypeConfig> = serde_json::from_slice(body)?;
            serde_json::to_vec(&raft.install_snapshot(req).await)
        }
    }
}
