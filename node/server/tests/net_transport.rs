//! The cluster transport (weir-net) on 127.0.0.1: fetch frames with multi-MiB
//! bodies arrive byte-identical (driven from a glommio shard), mutual TLS
//! refuses certificates from another CA and checks the dialled node id, bad
//! frames are refused without taking the endpoint down, and a throughput run
//! prints MiB/s (printed, not asserted: speed is proved by benchmarks).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use weir_net::frame::{PREFIX_BYTES, Prefix};
use weir_net::tls::{self, DevCa, NodeIdentity, TrustRoots};
use weir_net::{
    DivergingEpoch, Endpoint, EndpointConfig, FetchPartition, FetchPartitionResponse, FetchRequest,
    FetchResponse, FrameError, Header, InboundRequest, TransportError,
};
use weir_node::rt::run_local;
use weir_proto::NodeId;

fn start(
    roots: &TrustRoots,
    identity: NodeIdentity,
) -> (Endpoint, flume::Receiver<InboundRequest>) {
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    Endpoint::start(EndpointConfig { node: identity.node, listen, roots: roots.clone(), identity })
        .expect("start endpoint")
}

fn fetch_request(follower: i32, partitions: usize) -> Header {
    Header::FetchRequest(FetchRequest {
        follower,
        shard: 3,
        broker_epoch: 7,
        partitions: (0..partitions)
            .map(|i| FetchPartition {
                topic: format!("topic-{i}"),
                partition: i as i32,
                fetch_offset: 1000 * i as i64,
                last_fetched_epoch: 4,
                current_leader_epoch: 4,
                epoch_query: false,
            })
            .collect(),
        max_wait_ms: 100,
        min_bytes: 1,
        max_bytes: 32 << 20,
    })
}

/// Deterministic, position-dependent bytes so a shifted or reordered chunk
/// cannot compare equal.
fn pattern(len: usize, seed: u64) -> Bytes {
    let mut out = BytesMut::with_capacity(len);
    let mut x = seed | 1;
    while out.len() + 8 <= len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.put_u64_le(x);
    }
    while out.len() < len {
        out.put_u8(x as u8);
    }
    out.freeze()
}

/// Answers every fetch with one partition response per requested partition,
/// partition i carrying `lens[i % lens.len()]` bytes of `body`.
fn serve_fetches(inbound: flume::Receiver<InboundRequest>, lens: Vec<usize>, body: Bytes) {
    std::thread::spawn(move || {
        while let Ok(request) = inbound.recv() {
            let Header::FetchRequest(fetch) = &request.header else { panic!("not a fetch") };
            assert_eq!(fetch.follower, request.peer.0, "header and certificate disagree");
            let mut at = 0;
            let partitions = fetch
                .partitions
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let len = lens[i % lens.len()];
                    at += len;
                    FetchPartitionResponse {
                        topic: p.topic.clone(),
                        partition: p.partition,
                        error: 0,
                        high_watermark: p.fetch_offset + 10,
                        log_start: 0,
                        diverging_epoch: (i == 1)
                            .then_some(DivergingEpoch { epoch: 3, end_offset: p.fetch_offset }),
                        epoch_end: None,
                        log_end: p.fetch_offset + 10,
                        records_len: len as u32,
                    }
                })
                .collect();
            let header = Header::FetchResponse(FetchResponse { partitions });
            request.reply.respond(header, body.slice(..at)).expect("respond");
        }
    });
}

fn dev_ca(dir: &Path) -> (DevCa, TrustRoots) {
    let ca = DevCa::load_or_create(dir).expect("dev CA");
    let roots = ca.trust_roots().expect("roots");
    (ca, roots)
}

#[test]
fn dev_ca_and_node_certs_are_loaded_not_regenerated() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, _) = dev_ca(dir.path());
    let cert = ca.load_or_issue(NodeId(7)).unwrap();
    let ca_pem = std::fs::read(dir.path().join("ca.pem")).unwrap();
    drop(ca);
    let (ca, _) = dev_ca(dir.path());
    assert_eq!(std::fs::read(dir.path().join("ca.pem")).unwrap(), ca_pem);
    assert_eq!(ca.load_or_issue(NodeId(7)).unwrap().cert_chain, cert.cert_chain);
    assert_eq!(tls::peer_node_id(&cert.cert_chain[0]).unwrap(), NodeId(7));
    // What the reloaded CA signs verifies against the CA file on disk.
    let roots = TrustRoots::load(dir.path()).unwrap();
    let (leader, inbound) = start(&roots, ca.issue(NodeId(1)).unwrap());
    serve_fetches(inbound, vec![10], pattern(10, 1));
    let (follower, _) = start(&roots, NodeIdentity::load(dir.path(), NodeId(7)).unwrap());
    let response = run_local(follower.handle().request(
        leader.local_addr(),
        NodeId(1),
        fetch_request(7, 1),
        Bytes::new(),
    ))
    .expect("fetch with reloaded certs");
    assert_eq!(response.body, pattern(10, 1));
}

#[test]
fn fetch_multi_mib_bodies_from_a_glommio_shard() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, roots) = dev_ca(dir.path());
    let (leader, inbound) = start(&roots, ca.issue(NodeId(1)).unwrap());
    let lens = vec![3 << 20, 0, (1 << 20) + 17, 5];
    let body = pattern(lens.iter().sum::<usize>() * 2, 42);
    serve_fetches(inbound, lens.clone(), body.clone());
    let (follower, _) = start(&roots, ca.issue(NodeId(2)).unwrap());
    let handle = follower.handle();
    let leader_addr = leader.local_addr();

    run_local(async move {
        let peer = handle.peer(NodeId(1), leader_addr);
        // Several requests at once over one connection, each its own stream.
        let requests = (0..6).map(|i| {
            let peer = peer.clone();
            async move { (i, peer.request(fetch_request(2, 4 + i % 3), Bytes::new()).await) }
        });
        for (i, response) in futures::future::join_all(requests).await {
            let response = response.expect("fetch");
            let Header::FetchResponse(fetch) = &response.header else { panic!("not a response") };
            let partitions = 4 + i % 3;
            assert_eq!(fetch.partitions.len(), partitions);
            let expected_len: usize = (0..partitions).map(|p| lens[p % lens.len()]).sum();
            assert_eq!(response.body, body.slice(..expected_len), "body bytes differ");
            let mut at = 0;
            for (p, records) in fetch.split_body(&response.body) {
                assert_eq!(records, body.slice(at..at + p.records_len as usize));
                at += p.records_len as usize;
            }
            assert_eq!(fetch.partitions[1].diverging_epoch.unwrap().epoch, 3);
        }
    });
}

#[test]
fn mutual_tls_refuses_other_cas_and_wrong_node_ids() {
    let dir = tempfile::tempdir().unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let (ca, roots) = dev_ca(dir.path());
    let (other_ca, other_roots) = dev_ca(other_dir.path());
    let (leader, inbound) = start(&roots, ca.issue(NodeId(1)).unwrap());
    let leader_addr = leader.local_addr();

    let (rogue, _) = start(&roots, other_ca.issue(NodeId(3)).unwrap());
    let (stranger, _) = start(&other_roots, other_ca.issue(NodeId(4)).unwrap());
    let (follower, _) = start(&roots, ca.issue(NodeId(2)).unwrap());

    // One executor per test thread: every client call runs inside it.
    run_local(async {
        // A client that trusts the cluster CA but presents another CA's cert.
        let result =
            rogue.handle().request(leader_addr, NodeId(1), fetch_request(3, 1), Bytes::new()).await;
        assert!(result.is_err(), "a client cert from another CA was accepted");
        assert!(inbound.try_recv().is_err(), "the rogue request reached a shard");

        // A client that does not trust the leader's CA refuses the leader.
        let result = stranger
            .handle()
            .request(leader_addr, NodeId(1), fetch_request(4, 1), Bytes::new())
            .await;
        assert!(matches!(result, Err(TransportError::Connect { .. })), "{result:?}");

        // Dialling node 1's address as node 5: the server's cert names node 1.
        let result = follower
            .handle()
            .request(leader_addr, NodeId(5), fetch_request(2, 1), Bytes::new())
            .await;
        assert!(matches!(result, Err(TransportError::Connect { .. })), "{result:?}");

        // The right CA and node id still work, and the leader sees who asked.
        serve_fetches(inbound.clone(), vec![8], pattern(8, 5));
        let response = follower
            .handle()
            .request(leader_addr, NodeId(1), fetch_request(2, 1), Bytes::new())
            .await
            .expect("fetch");
        assert_eq!(response.body, pattern(8, 5));
    });
}

#[test]
fn bad_frames_are_refused_and_the_endpoint_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, roots) = dev_ca(dir.path());
    let (leader, inbound) = start(&roots, ca.issue(NodeId(1)).unwrap());
    let leader_addr = leader.local_addr();
    let client_tls = tls::client_config(&roots, &ca.issue(NodeId(2)).unwrap()).unwrap();

    let valid = fetch_request(2, 2).encode_head(0).unwrap();
    let mut bad_magic = valid.to_vec();
    bad_magic[0] = b'X';
    let mut oversized_header = valid.to_vec();
    oversized_header[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut oversized_body = valid.to_vec();
    oversized_body[12..16].copy_from_slice(&(1u32 << 31).to_le_bytes());
    let mut corrupted_header = valid.to_vec();
    for b in &mut corrupted_header[PREFIX_BYTES..] {
        *b = !*b;
    }
    let mut truncated = valid.to_vec();
    truncated.truncate(valid.len() - 3);
    let mut body_on_request = Prefix::new(valid.len() - PREFIX_BYTES, 4).unwrap().encode().to_vec();
    body_on_request.extend_from_slice(&valid[PREFIX_BYTES..]);
    body_on_request.extend_from_slice(b"junk");
    let response_as_request = Header::FetchResponse(FetchResponse { partitions: vec![] })
        .encode_head(0)
        .unwrap()
        .to_vec();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("bad magic", bad_magic),
        ("oversized header", oversized_header),
        ("oversized body", oversized_body),
        ("corrupted header", corrupted_header),
        ("truncated", truncated),
        ("body on a fetch request", body_on_request),
        ("response sent as a request", response_as_request),
        ("garbage", pattern(1000, 9).to_vec()),
        ("a fetch claiming another follower", fetch_request(9, 1).encode_head(0).unwrap().to_vec()),
    ];

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client_tls =
            quinn::crypto::rustls::QuicClientConfig::try_from(client_tls).expect("quic tls");
        let client = quinn::ClientConfig::new(std::sync::Arc::new(client_tls));
        let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let conn = endpoint
            .connect_with(client, leader_addr, &tls::node_server_name(NodeId(1)))
            .unwrap()
            .await
            .expect("connect");
        for (name, bytes) in cases {
            let (mut send, mut recv) = conn.open_bi().await.unwrap();
            // The server may stop the stream before reading it all.
            let _ = send.write_all(&bytes).await;
            let _ = send.finish();
            let answer = tokio::time::timeout(Duration::from_secs(5), recv.read_to_end(1 << 20))
                .await
                .unwrap_or_else(|_| panic!("{name}: no answer"));
            assert!(answer.is_err(), "{name}: got an answer {answer:?}");
        }
        assert!(inbound.try_recv().is_err(), "a bad frame reached a shard");
        // The same connection still carries a valid request.
        serve_fetches(inbound, vec![8], pattern(16, 3));
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(&valid).await.unwrap();
        send.finish().unwrap();
        let answer = recv.read_to_end(1 << 20).await.expect("valid request answered");
        let frame = weir_net::Frame::decode(answer.into()).expect("decode response");
        assert_eq!(frame.body, pattern(16, 3));
    });

    // Frames over the limits are refused on the sending side too.
    let (follower, _) = start(&roots, ca.issue(NodeId(2)).unwrap());
    let result = run_local(follower.handle().request(
        leader_addr,
        NodeId(1),
        fetch_request(2, 10_001),
        Bytes::new(),
    ));
    assert!(matches!(result, Err(TransportError::Outgoing(FrameError::Limit(_)))), "{result:?}");
}

#[test]
fn reconnects_after_the_leader_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, roots) = dev_ca(dir.path());
    let leader_identity = ca.issue(NodeId(1)).unwrap();
    let (leader, inbound) = start(&roots, leader_identity.clone());
    let leader_addr = leader.local_addr();
    serve_fetches(inbound, vec![32], pattern(32, 11));
    let (follower, _) = start(&roots, ca.issue(NodeId(2)).unwrap());
    let peer = follower.handle().peer(NodeId(1), leader_addr);

    run_local(async move {
        let response = peer.request(fetch_request(2, 1), Bytes::new()).await.expect("fetch");
        assert_eq!(response.body, pattern(32, 11));
        // The leader goes away: requests fail instead of hanging.
        drop(leader);
        let result = peer.request(fetch_request(2, 1), Bytes::new()).await;
        assert!(result.is_err(), "a request to a stopped leader succeeded: {result:?}");
        // It comes back on the same address: the next request reconnects.
        let (leader, inbound) = Endpoint::start(EndpointConfig {
            node: NodeId(1),
            listen: leader_addr,
            roots: roots.clone(),
            identity: leader_identity,
        })
        .expect("restart leader");
        serve_fetches(inbound, vec![32], pattern(32, 12));
        let response = peer.request(fetch_request(2, 1), Bytes::new()).await.expect("reconnect");
        assert_eq!(response.body, pattern(32, 12));
        drop(leader);
    });
}

#[test]
fn throughput_prints_mib_per_s() {
    let total_mib: usize =
        std::env::var("WEIR_QUIC_THROUGHPUT_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(512);
    const BODY_BYTES: usize = 8 << 20;
    const CONCURRENT: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let (ca, roots) = dev_ca(dir.path());
    let (leader, inbound) = start(&roots, ca.issue(NodeId(1)).unwrap());
    let body = pattern(BODY_BYTES, 77);
    serve_fetches(inbound, vec![BODY_BYTES / 4], body.clone());
    let (follower, _) = start(&roots, ca.issue(NodeId(2)).unwrap());
    let peer = follower.handle().peer(NodeId(1), leader.local_addr());
    let requests = (total_mib << 20) / BODY_BYTES;

    let (moved, elapsed) = run_local(async move {
        // Warm the connection up before timing.
        peer.request(fetch_request(2, 4), Bytes::new()).await.expect("warm-up fetch");
        let started = Instant::now();
        let workers = (0..CONCURRENT).map(|w| {
            let peer = peer.clone();
            let body = body.clone();
            async move {
                let mut moved = 0usize;
                for _ in (w..requests).step_by(CONCURRENT) {
                    let response =
                        peer.request(fetch_request(2, 4), Bytes::new()).await.expect("fetch");
                    assert!(response.body == body, "body bytes differ");
                    moved += response.body.len();
                }
                moved
            }
        });
        let moved: usize = futures::future::join_all(workers).await.into_iter().sum();
        (moved, started.elapsed())
    });
    let mib = moved as f64 / (1 << 20) as f64;
    println!(
        "quic transport: {mib:.0} MiB in {:.2} s = {:.0} MiB/s ({} x {} MiB bodies, {CONCURRENT} in flight, debug build)",
        elapsed.as_secs_f64(),
        mib / elapsed.as_secs_f64(),
        requests,
        BODY_BYTES >> 20,
    );
    assert_eq!(moved, requests * BODY_BYTES);
}
