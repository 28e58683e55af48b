//! A 3-member controller quorum in one process: real QUIC on 127.0.0.1 with
//! mutual TLS from a dev CA, real files in temp folders. Covers election,
//! replication, leader failure, restart and catch-up, a torn log tail, and
//! node heartbeats, AlterPartition and session fencing through the quorum,
//! partition reassignment and automatic leader rebalancing.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use weir_controller::raft::network::member_node_id;
use weir_controller::raft::{LogStore, RaftController, RaftControllerConfig, RaftOptions};
use weir_controller::rebalance::RebalanceOptions;
use weir_controller::{
    Command, CommandResult, ConfigDefaults, IsrEntry, MetadataImage, NO_LEADER, NodeInfo,
    PartitionAssignment,
};
use weir_net::tls::DevCa;
use weir_proto::ids::{NodeId, PartitionId};

struct Cluster {
    ca: DevCa,
    addrs: BTreeMap<u64, SocketAddr>,
    dirs: BTreeMap<u64, PathBuf>,
    members: BTreeMap<u64, RaftController>,
    options: RaftOptions,
    _tmp: tempfile::TempDir,
}

fn options() -> RaftOptions {
    RaftOptions {
        // Small, so the test crosses snapshots, purges and segment rolls.
        snapshot_every_entries: 15,
        log_entries_kept: 3,
        segment_bytes_max: 4096,
        // The registered nodes of these tests never heartbeat: no fencing.
        node_session_timeout_ms: 3_600_000,
        ..RaftOptions::default()
    }
}

impl Cluster {
    fn new(n: u64) -> Cluster {
        Cluster::with_options(n, options())
    }

    fn with_options(n: u64, options: RaftOptions) -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        let ca = DevCa::load_or_create(&tmp.path().join("ca")).unwrap();
        // Free UDP ports: bound and released; nothing else binds here meanwhile.
        let sockets: Vec<UdpSocket> =
            (0..n).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
        let addrs = (1..=n).zip(&sockets).map(|(id, s)| (id, s.local_addr().unwrap())).collect();
        drop(sockets);
        let dirs = (1..=n).map(|id| (id, tmp.path().join(format!("member-{id}")))).collect();
        let mut cluster = Cluster { ca, addrs, dirs, members: BTreeMap::new(), options, _tmp: tmp };
        for id in 1..=n {
            cluster.start(id);
        }
        cluster
    }

    fn start(&mut self, id: u64) {
        let config = RaftControllerConfig {
            id,
            listen: self.addrs[&id],
            members: self.addrs.clone(),
            data_dir: self.dirs[&id].clone(),
            roots: self.ca.trust_roots().unwrap(),
            identity: self.ca.issue(member_node_id(id)).unwrap(),
            defaults: ConfigDefaults::default(),
            options: self.options.clone(),
        };
        self.members.insert(id, RaftController::start(config).unwrap());
    }

    fn stop(&mut self, id: u64) {
        drop(self.members.remove(&id).unwrap());
    }

    /// The member every running member agrees leads, once there is one.
    fn wait_leader(&self, within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        loop {
            let leaders: Vec<u64> =
                self.members.values().filter(|m| m.is_leader()).map(|m| m.id()).collect();
            if let [leader] = leaders[..]
                && self.members.values().all(|m| m.current_leader() == Some(leader))
            {
                return leader;
            }
            assert!(Instant::now() < deadline, "no leader within {within:?}: {leaders:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until every running member holds the same image; returns it.
    fn wait_converged(&self, check: impl Fn(&MetadataImage) -> bool) -> MetadataImage {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let images: Vec<MetadataImage> = self.members.values().map(|m| m.image()).collect();
            if images.windows(2).all(|w| w[0] == w[1]) && check(&images[0]) {
                return images[0].clone();
            }
            assert!(
                Instant::now() < deadline,
                "images did not converge: versions {:?}",
                images.iter().map(|i| i.version).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn create_topics(&self, leader: u64, names: impl Iterator<Item = String>) {
        for name in names {
            self.members[&leader].submit_blocking(Command::create_topic(name, 2, 1)).unwrap();
        }
    }
}

fn has_topics(image: &MetadataImage, range: std::ops::Range<u32>) -> bool {
    range.into_iter().all(|i| image.topic(&format!("t{i}")).is_some())
}

fn append_garbage_to_last_segment(dir: &Path) -> u64 {
    let path = LogStore::segment_paths(&dir.join("raft")).unwrap().pop().expect("a segment");
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    // A frame header announcing 100 bytes, followed by only a few: a torn write.
    let mut torn = 100u32.to_be_bytes().to_vec();
    torn.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, b'{', b'"']);
    f.write_all(&torn).unwrap();
    torn.len() as u64
}

#[test]
fn quorum_elects_replicates_fails_over_and_catches_up() {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<RaftController>();
    let mut cluster = Cluster::new(3);
    cluster.members[&1].initialize().unwrap();
    // Initializing twice is harmless.
    cluster.members[&1].initialize().unwrap();

    let leader = cluster.wait_leader(Duration::from_secs(10));
    let image = cluster.wait_converged(|i| !i.cluster_id.is_empty());
    let cluster_id = image.cluster_id.clone();

    let node =
        NodeInfo { id: NodeId(1), host: "127.0.0.1".into(), port: 9092, ..Default::default() };
    cluster.members[&leader].submit_blocking(Command::RegisterNode(node)).unwrap();
    cluster.create_topics(leader, (0..10).map(|i| format!("t{i}")));
    // Refusals come from the state machine, as in the single-process controller.
    let e =
        cluster.members[&leader].submit_blocking(Command::create_topic("t0", 1, 1)).unwrap_err();
    assert_eq!(e.kafka_code(), 36, "{e}");
    // A follower refuses writes with a retriable error naming the leader.
    let follower = *cluster.members.keys().find(|&&id| id != leader).unwrap();
    let e = cluster.members[&follower]
        .submit_blocking(Command::create_topic("elsewhere", 1, 1))
        .unwrap_err();
    assert_eq!(e.kafka_code(), 7, "{e}");
    assert!(e.to_string().contains(&format!("member {leader}")), "{e}");

    let before = cluster.wait_converged(|i| has_topics(i, 0..10));

    // The leader fails: another is elected and has every committed topic.
    let stopped_at = Instant::now();
    cluster.stop(leader);
    let new_leader = cluster.wait_leader(Duration::from_secs(10));
    assert_ne!(new_leader, leader);
    eprintln!("new leader {new_leader} after {:?}", stopped_at.elapsed());
    let image = cluster.members[&new_leader].image();
    assert!(has_topics(&image, 0..10));
    assert_eq!(image.topics, before.topics);
    assert_eq!(image.cluster_id, cluster_id);

    // More writes: enough entries for snapshots and purges on the survivors.
    cluster.create_topics(new_leader, (10..40).map(|i| format!("t{i}")));
    cluster.wait_converged(|i| has_topics(i, 0..40));

    // The failed member comes back from its data folder and catches up
    // (from the log or a snapshot, whichever the leader still has).
    cluster.start(leader);
    let image = cluster.wait_converged(|i| has_topics(i, 0..40));
    assert_eq!(image.cluster_id, cluster_id);
    assert_eq!(image.topics.len(), 40);

    // A follower's last segment gets a torn tail while it is down: it
    // restarts, cuts the tail, and converges with the rest.
    let leader = cluster.wait_leader(Duration::from_secs(10));
    // Entries after the last snapshot, so every member's log has a segment
    // (a member that installed a snapshot may have purged all of its log).
    cluster.create_topics(leader, (40..42).map(|i| format!("t{i}")));
    cluster.wait_converged(|i| has_topics(i, 0..42));
    let follower = *cluster.members.keys().find(|&&id| id != leader).unwrap();
    cluster.stop(follower);
    let torn = append_garbage_to_last_segment(&cluster.dirs[&follower]);
    assert!(torn > 0);
    cluster.create_topics(leader, (42..44).map(|i| format!("t{i}")));
    cluster.start(follower);
    assert_eq!(cluster.members[&follower].log_recovery().truncated_bytes, torn);
    let image = cluster.wait_converged(|i| has_topics(i, 0..44));
    assert_eq!(image.topics.len(), 44);

    // Subscribers see what is applied, in order.
    let (image, rx) = cluster.members[&follower].subscribe();
    assert!(has_topics(&image, 0..44));
    cluster.create_topics(leader, std::iter::once("t44".to_string()));
    let delta = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(
        matches!(&delta, weir_controller::MetadataDelta::TopicCreated(t) if t.name == "t44"),
        "{delta:?}"
    );
}

#[test]
fn single_member_quorum_serves_and_restarts() {
    let mut cluster = Cluster::new(1);
    cluster.members[&1].initialize().unwrap();
    assert_eq!(cluster.wait_leader(Duration::from_secs(10)), 1);
    let node =
        NodeInfo { id: NodeId(1), host: "127.0.0.1".into(), port: 9092, ..Default::default() };
    cluster.members[&1].submit_blocking(Command::RegisterNode(node)).unwrap();
    cluster.create_topics(1, (0..20).map(|i| format!("t{i}")));
    let image = cluster.members[&1].image();
    cluster.stop(1);
    cluster.start(1);
    assert_eq!(cluster.wait_leader(Duration::from_secs(10)), 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster.members[&1].image() != image {
        assert!(Instant::now() < deadline, "restarted member did not recover its image");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn register(member: &RaftController, id: i32) -> i64 {
    let node = NodeInfo {
        id: NodeId(id),
        host: "127.0.0.1".into(),
        port: 9092 + id as u16,
        incarnation: 42,
        ..Default::default()
    };
    match member.submit_blocking(Command::RegisterNode(node)).unwrap() {
        CommandResult::NodeRegistered { broker_epoch, .. } => broker_epoch,
        other => panic!("{other:?}"),
    }
}

fn heartbeat(member: &RaftController, id: i32, broker_epoch: i64) -> CommandResult {
    let cmd = Command::Heartbeat { node: NodeId(id), broker_epoch, want_shutdown: false };
    member.submit_blocking(cmd).unwrap()
}

/// Heartbeats, AlterPartition and session fencing through the quorum: the
/// leader keeps the sessions, and every member applies the same changes.
#[test]
fn quorum_runs_heartbeats_alter_partition_and_fencing() {
    let options = RaftOptions { node_session_timeout_ms: 1500, ..options() };
    let cluster = Cluster::with_options(3, options);
    cluster.members[&1].initialize().unwrap();
    let leader = cluster.wait_leader(Duration::from_secs(10));
    let l = &cluster.members[&leader];
    let e1 = register(l, 1);
    let e2 = register(l, 2);
    assert!(e1 < e2);
    l.submit_blocking(Command::create_topic("q", 1, 2)).unwrap();
    let image = cluster.wait_converged(|i| i.topic("q").is_some());
    let p = image.topics["q"].partitions[0].clone();
    assert_eq!((p.leader, p.isr.clone()), (NodeId(1), vec![NodeId(1), NodeId(2)]));

    // Heartbeats that change nothing write nothing.
    let version = l.image().version;
    let ack = CommandResult::HeartbeatAck { fenced: false, shutdown_ready: false };
    assert_eq!(heartbeat(l, 1, e1), ack);
    assert_eq!(heartbeat(l, 2, e2), ack);
    assert_eq!(l.image().version, version);
    // A stale epoch is refused; a follower names the leader.
    let stale = Command::Heartbeat { node: NodeId(1), broker_epoch: e1 - 1, want_shutdown: false };
    assert_eq!(l.submit_blocking(stale).unwrap_err().kafka_code(), 77);
    let follower = *cluster.members.keys().find(|&&id| id != leader).unwrap();
    let e = cluster.members[&follower]
        .submit_blocking(Command::Heartbeat {
            node: NodeId(1),
            broker_epoch: e1,
            want_shutdown: false,
        })
        .unwrap_err();
    assert!(e.is_not_active(), "{e}");

    // The leader shrinks its ISR.
    let shrink = Command::AlterPartition {
        topic: "q".into(),
        partition: p.partition,
        leader: p.leader,
        leader_epoch: p.leader_epoch,
        partition_epoch: p.partition_epoch,
        new_isr: vec![IsrEntry { node: NodeId(1), broker_epoch: -1 }],
    };
    let CommandResult::PartitionAltered { partition, .. } =
        l.submit_blocking(shrink.clone()).unwrap()
    else {
        panic!()
    };
    assert_eq!((partition.isr.clone(), partition.partition_epoch), (vec![NodeId(1)], 1));
    let image = cluster.wait_converged(|i| i.topics["q"].partitions[0].partition_epoch == 1);
    assert_eq!(image.topics["q"].partitions[0], partition);
    // The same request again (a retry) is answered the same, with no new entry.
    let version = l.image().version;
    assert!(matches!(l.submit_blocking(shrink).unwrap(), CommandResult::PartitionAltered { .. }));
    assert_eq!(l.image().version, version);

    // Node 2 stops heartbeating: the leader fences it; node 1 stays live.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        heartbeat(l, 1, e1);
        let image = l.image();
        if image.registrations[&NodeId(2)].fenced {
            assert!(!image.registrations[&NodeId(1)].fenced);
            break;
        }
        assert!(Instant::now() < deadline, "node 2 was not fenced");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Node 1 stops too: its partition goes offline, with 1 kept in the ISR.
    let image = cluster.wait_converged(|i| i.registrations[&NodeId(1)].fenced);
    let q = &image.topics["q"].partitions[0];
    assert_eq!((q.leader, q.isr.clone()), (NO_LEADER, vec![NodeId(1)]));
    // It heartbeats again: unfenced, and it leads under a new leader epoch.
    assert_eq!(heartbeat(l, 1, e1), ack);
    let image = cluster.wait_converged(|i| i.topics["q"].partitions[0].leader == NodeId(1));
    let q = &image.topics["q"].partitions[0];
    assert_eq!(q.leader_epoch.0, 2);
    assert!(image.leader_elections >= 1);
}

/// Through a quorum: a reassignment's records replicate and replay after a
/// restart, and the leader moves leadership back to a preferred replica
/// that returned (automatic leader rebalancing).
#[test]
fn quorum_reassigns_and_rebalances_leaders() {
    let leader_rebalance =
        RebalanceOptions { enable: true, check_interval_ms: 200, per_node_percentage: 10 };
    let mut cluster = Cluster::with_options(1, RaftOptions { leader_rebalance, ..options() });
    cluster.members[&1].initialize().unwrap();
    cluster.wait_leader(Duration::from_secs(10));
    let l = &cluster.members[&1];
    let e1 = register(l, 1);
    register(l, 2);
    register(l, 3);
    l.submit_blocking(Command::create_topic("m", 1, 1)).unwrap();
    let first = l.image().topics["m"].partitions[0].replicas[0];
    let all = [NodeId(1), NodeId(2), NodeId(3)];
    let target: Vec<NodeId> =
        std::iter::once(first).chain(all.iter().copied().filter(|n| *n != first)).collect();
    let grow = Command::AlterPartitionReassignments {
        partitions: vec![("m".into(), PartitionId(0), Some(target.clone()))],
    };
    let CommandResult::PartitionReassignmentsAltered { results } = l.submit_blocking(grow).unwrap()
    else {
        panic!()
    };
    assert_eq!(results[0].error_code, 0);
    let listed =
        l.submit_blocking(Command::ListPartitionReassignments { partitions: None }).unwrap();
    let CommandResult::PartitionReassignments { reassignments } = listed else { panic!() };
    assert_eq!(reassignments.len(), 1);
    assert_eq!(reassignments[0].replicas, target);

    // Node 1 leads a partition it prefers; it is fenced, comes back and
    // rejoins the ISR: the leader makes it the leader again by itself.
    let assigned = Command::CreateTopic {
        name: "p".into(),
        partitions: -1,
        replication_factor: -1,
        assignments: Some(vec![PartitionAssignment {
            partition: PartitionId(0),
            replicas: vec![NodeId(1), NodeId(2)],
        }]),
        configs: Default::default(),
        internal: false,
        validate_only: false,
    };
    l.submit_blocking(assigned).unwrap();
    l.submit_blocking(Command::FenceNode { node: NodeId(1), broker_epoch: e1 }).unwrap();
    heartbeat(l, 1, e1);
    let p = l.image().topics["p"].partitions[0].clone();
    assert_eq!(p.leader, NodeId(2));
    l.submit_blocking(Command::AlterPartition {
        topic: "p".into(),
        partition: p.partition,
        leader: p.leader,
        leader_epoch: p.leader_epoch,
        partition_epoch: p.partition_epoch,
        new_isr: vec![
            IsrEntry { node: NodeId(2), broker_epoch: -1 },
            IsrEntry { node: NodeId(1), broker_epoch: e1 },
        ],
    })
    .unwrap();
    let image = cluster.wait_converged(|i| i.topics["p"].partitions[0].leader == NodeId(1));
    assert!(image.topics["m"].partitions[0].is_reassigning());

    // The log replays to the same image.
    cluster.stop(1);
    cluster.start(1);
    cluster.wait_leader(Duration::from_secs(10));
    cluster.wait_converged(|i| i == &image);
}
