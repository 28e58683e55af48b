//! Three `weir-controller` processes as a Raft quorum and one `weir-node`
//! given all three addresses: the active controller is killed with SIGKILL,
//! another takes over, and the node keeps creating topics and serving
//! produce and fetch through it; the killed member restarts and rejoins.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use weir_tests::{free_port, terminate, workspace_bin};

/// One `weir-controller` member: its config file, ports and process.
struct Member {
    id: u64,
    config: PathBuf,
    log: PathBuf,
    listen_port: u16,
    metrics_port: u16,
    child: Option<Child>,
}

impl Member {
    fn start(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(workspace_bin("weir-controller"))
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", std::env::var("WEIR_TEST_LOG").unwrap_or_else(|_| "info".into()))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn weir-controller");
        self.child = Some(child);
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait; whether it exited cleanly.
    fn terminate(&mut self) -> bool {
        let Some(child) = self.child.take() else { return true };
        terminate(child)
    }

    /// Its `/metrics` page, or `None` while it is not serving.
    fn scrape(&self) -> Option<String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: weir\r\n\r\n").ok()?;
        let mut response = String::new();
        s.read_to_string(&mut response).ok()?;
        Some(response.split_once("\r\n\r\n")?.1.to_string())
    }

    fn gauge(&self, name: &str) -> Option<f64> {
        let text = self.scrape()?;
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    fn is_active(&self) -> bool {
        self.gauge("weir_controller_active") == Some(1.0)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A UDP port nobody has bound right now (for a member's Raft endpoint).
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn members(dir: &Path, n: u64) -> Vec<Member> {
    let raft_ports: Vec<u16> = (0..n).map(|_| free_udp_port()).collect();
    let table: String = (1..=n)
        .zip(&raft_ports)
        .map(|(id, port)| format!("{id} = \"127.0.0.1:{port}\"\n"))
        .collect();
    (1..=n)
        .map(|id| {
            let (listen_port, metrics_port) = (free_port(), free_port());
            let config = dir.join(format!("controller-{id}.toml"));
            std::fs::write(
                &config,
                format!(
                    "data_dir = {:?}\nlisten = \"127.0.0.1:{listen_port}\"\n\
                     metrics_listen = \"127.0.0.1:{metrics_port}\"\nid = {id}\ntls_dir = {:?}\n\
                     [members]\n{table}",
                    dir.join(format!("controller-{id}")),
                    dir.join("tls"),
                ),
            )
            .unwrap();
            let log = dir.join(format!("controller-{id}.log"));
            Member { id, config, log, listen_port, metrics_port, child: None }
        })
        .collect()
}

/// The one member that reports itself active, once exactly one does and
/// every other running member is up.
fn wait_active(members: &[Member], within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let active: Vec<usize> = (0..members.len())
            .filter(|&i| members[i].child.is_some() && members[i].is_active())
            .collect();
        if let [one] = active[..] {
            return one;
        }
        if Instant::now() > deadline {
            let logs: String =
                members.iter().map(|m| format!("--- member {}\n{}", m.id, m.log_text())).collect();
            panic!("no single active controller within {within:?} ({active:?}); logs:\n{logs}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("admin client")
}

async fn create_topic(bootstrap: &str, name: &str) {
    let results = admin(bootstrap)
        .create_topics(
            &[NewTopic::new(name, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new()
                .operation_timeout(Some(Duration::from_secs(20)))
                .request_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .expect("create_topics request");
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("creating {t}: {e}"));
    }
}

async fn produce(producer: &FutureProducer, topic: &str, range: std::ops::Range<u32>) {
    for i in range {
        let v = format!("{topic}-{i}");
        producer
            .send(FutureRecord::<(), _>::to(topic).payload(&v), Duration::from_secs(20))
            .await
            .unwrap_or_else(|(e, _)| panic!("producing {v}: {e}"));
    }
}

fn read_all(bootstrap: &str, topic: &str, count: usize) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "quorum-check")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
    consumer.assign(&tpl).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < count && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            got.push(String::from_utf8(m.unwrap().payload().unwrap().to_vec()).unwrap());
        }
    }
    got
}

fn expected(topic: &str, range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("{topic}-{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_follows_the_active_controller_across_a_kill() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut members = members(dir.path(), 3);
    for m in &mut members {
        m.start();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for m in &members {
        // Nodes are served over QUIC (UDP) on listen_port; /metrics (TCP)
        // is bound right after that endpoint.
        while std::net::TcpStream::connect(("127.0.0.1", m.metrics_port)).is_err() {
            assert!(Instant::now() < deadline, "member {} never listened:\n{}", m.id, m.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let first_active = wait_active(&members, Duration::from_secs(15));

    let kafka_port = free_port();
    let controllers: Vec<String> =
        members.iter().map(|m| format!("127.0.0.1:{}", m.listen_port)).collect();
    let node_toml = dir.path().join("node.toml");
    std::fs::write(
        &node_toml,
        format!(
            "node_id = 1\ndata_dirs = [{:?}]\nlisten = \"127.0.0.1:{kafka_port}\"\n\
             controller = \"{}\"\nshards = 2\nmetrics_listen = \"\"\ntls_dir = {:?}\n",
            dir.path().join("node-1"),
            controllers.join(","),
            dir.path().join("tls"),
        ),
    )
    .unwrap();
    let node_log = dir.path().join("node.log");
    let mut node = Command::new(workspace_bin("weir-node"))
        .arg("--config")
        .arg(&node_toml)
        .env("RUST_LOG", std::env::var("WEIR_TEST_LOG").unwrap_or_else(|_| "info".into()))
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(&node_log).unwrap()))
        .spawn()
        .expect("spawn node");
    let first = BufReader::new(node.stdout.take().unwrap()).lines().next();
    assert_eq!(
        first.and_then(Result::ok).as_deref(),
        Some(format!("kafka: 127.0.0.1:{kafka_port}").as_str()),
        "node log:\n{}",
        std::fs::read_to_string(&node_log).unwrap_or_default()
    );

    let bootstrap = format!("127.0.0.1:{kafka_port}");
    create_topic(&bootstrap, "before").await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("acks", "all")
        .create()
        .unwrap();
    produce(&producer, "before", 0..50).await;

    // The active controller dies; another member takes over.
    let killed = first_active;
    members[killed].kill9();
    let killed_at = Instant::now();
    let now_active = wait_active(&members, Duration::from_secs(10));
    assert_ne!(now_active, killed);
    eprintln!(
        "member {} active {:?} after member {} was killed",
        members[now_active].id,
        killed_at.elapsed(),
        members[killed].id
    );

    // Through the node: a new topic, and produce to both.
    create_topic(&bootstrap, "after").await;
    eprintln!("topic created through the new leader {:?} after the kill", killed_at.elapsed());
    produce(&producer, "after", 0..50).await;
    produce(&producer, "before", 50..100).await;
    assert_eq!(read_all(&bootstrap, "before", 100), expected("before", 0..100));
    assert_eq!(read_all(&bootstrap, "after", 50), expected("after", 0..50));

    // The killed member restarts and catches up: the same topics as the
    // leader, and still one active controller.
    members[killed].start();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let topics = |m: &Member| m.gauge("weir_controller_topics");
        let leader_topics = topics(&members[now_active]);
        if leader_topics.is_some() && topics(&members[killed]) == leader_topics {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "member {} did not catch up:\n{}",
            members[killed].id,
            members[killed].log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!members[killed].is_active());
    assert_eq!(wait_active(&members, Duration::from_secs(5)), now_active);

    drop(producer);
    assert!(terminate(node), "node exits cleanly on SIGTERM");
    for m in &mut members {
        assert!(m.terminate(), "member {} exits cleanly on SIGTERM:\n{}", m.id, m.log_text());
    }
    // What the node's controller client did, for whoever reads the output.
    let node_text = std::fs::read_to_string(&node_log).unwrap_or_default();
    for line in node_text.lines().filter(|l| l.contains("weir_controller::remote")) {
        eprintln!("node: {line}");
    }
    eprintln!("took {:?}", started.elapsed());
}
