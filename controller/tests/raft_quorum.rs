//! A 3-member controller quorum in one process: real QUIC on 127.0.0.1 with
//! mutual TLS from a dev CA, real files in temp folders. Covers election,
//! replication, leader failure, restart and catch-up, and a torn log tail.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use weir_controller::raft::network::member_node_id;
use weir_controller::raft::{LogStore, RaftController, RaftControllerConfig, RaftOptions};
use weir_controller::{Command, ConfigDefaults, MetadataImage, NodeInfo};
use weir_net::tls::DevCa;
use weir_proto::ids::NodeId;

struct Cluster {
    ca: DevCa,
    addrs: BTreeMap<u64, SocketAddr>,
    dirs: BTreeMap<u64, PathBuf>,
    members: BTreeMap<u64, RaftController>,
    _tmp: tempfile::TempDir,
}

fn options() -> RaftOptions {
    RaftOptions {
        // Small, so the test crosses snapshots, purges and segment rolls.
        snapshot_every_entries: 15,
        log_entries_kept: 3,
        segment_bytes_max: 4096,
        ..RaftOptions::default()
    }
}

impl Cluster {
    fn new(n: u64) -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        let ca = DevCa::load_or_create(&tmp.path().join("ca")).unwrap();
        // Free UDP ports: bound and released; nothing else binds here meanwhile.
        let sockets: Vec<UdpSocket> =
            (0..n).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
        let addrs = (1..=n).zip(&sockets).map(|(id, s)| (id, s.local_addr().unwrap())).collect();
        drop(sockets);
        let dirs = (1..=n).map(|id| (id, tmp.path().join(format!("member-{id}")))).collect();
        let mut cluster = Cluster { ca, addrs, dirs, members: BTreeMap::new(), _tmp: tmp };
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
            options: options(),
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

    let node = NodeInfo { id: NodeId(1), host: "127.0.0.1".into(), port: 9092, rack: None };
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
    let node = NodeInfo { id: NodeId(1), host: "127.0.0.1".into(), port: 9092, rack: None };
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
