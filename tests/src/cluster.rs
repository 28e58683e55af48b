//! A local cluster for process-level tests: `weir dev --nodes N
//! --controllers M`, each node and controller member its own OS process, on
//! a base port whose whole range is free. Helpers find a process by its
//! config file (to kill it alone), restart a node, and ask Metadata.

use crate::{raw, workspace_bin};
use kafka_protocol::messages::{ApiKey, MetadataRequest, ResponseKind};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Highest port offset `weir dev --nodes` uses (metrics of node 9).
const PORT_OFFSET_MAX: u16 = 509;

/// The lowest port the kernel hands out for outgoing connections. Ports
/// below it collide only with sockets bound to them explicitly.
fn ephemeral_port_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

/// A Kafka port P for which every port a cluster of `nodes` nodes and
/// `members` controller members binds is free right now: Kafka P..P+n-1,
/// member ports P+100+i (TCP and UDP), P+200+i (UDP), P+300+i (TCP), node
/// ports P+400+i (UDP), P+500+i (TCP). Drawn below the ephemeral range when there
/// is room, so that no client connection on this busy machine takes one of
/// them in the meantime.
pub fn free_base_port(nodes: u16, members: u16) -> u16 {
    let (low, high) = (10_000, ephemeral_port_low().saturating_sub(PORT_OFFSET_MAX));
    for _ in 0..100 {
        let p = if high > low + 1_000 { rand::random_range(low..high) } else { crate::free_port() };
        if p.checked_add(PORT_OFFSET_MAX).is_none() {
            continue;
        }
        let tcp = (0..nodes)
            .map(|i| p + i)
            .chain((1..=members).flat_map(|i| [p + 100 + i, p + 300 + i]))
            .chain((1..=nodes).map(|i| p + 500 + i));
        // Members' node-facing port is UDP (QUIC) with a tls_dir, TCP without.
        let udp = (1..=members)
            .flat_map(|i| [p + 100 + i, p + 200 + i])
            .chain((1..=nodes).map(|i| p + 400 + i));
        let tcp_free = tcp.into_iter().all(|port| TcpListener::bind(("127.0.0.1", port)).is_ok());
        if tcp_free && udp.into_iter().all(|port| UdpSocket::bind(("127.0.0.1", port)).is_ok()) {
            return p;
        }
    }
    panic!("no free range of ports for a dev cluster");
}

/// A running `weir dev --nodes N --controllers M`; killed (with its
/// children, through PR_SET_PDEATHSIG) when dropped.
pub struct DevCluster {
    child: Option<Child>,
    /// Kept (not deleted) when the test fails or `WEIR_TEST_KEEP` is set.
    dir: Option<tempfile::TempDir>,
    log: PathBuf,
    pub nodes: u16,
    pub members: u16,
    /// Kafka port of node 1 (node i: port + i - 1).
    pub port: u16,
    /// `metrics:` lines printed before the bootstrap line.
    pub metrics_urls: Vec<String>,
    /// The bootstrap list `weir dev` printed.
    pub bootstrap: String,
}

impl DevCluster {
    /// Starts the cluster (one shard per node) and waits for its bootstrap line.
    pub fn start(nodes: u16, members: u16) -> DevCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_base_port(nodes, members);
        let log = dir.path().join("weir-dev.log");
        let mut child = Command::new(workspace_bin("weir"))
            .args(["dev", "--nodes", &nodes.to_string(), "--controllers", &members.to_string()])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--kafka-port", &port.to_string(), "--shards", "1"])
            .env("RUST_LOG", std::env::var("WEIR_TEST_LOG").unwrap_or_else(|_| "info".into()))
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .expect("spawn weir dev");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut dev = DevCluster {
            child: Some(child),
            dir: Some(dir),
            log,
            nodes,
            members,
            port,
            metrics_urls: Vec::new(),
            bootstrap: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.starts_with("bootstrap: ") => {
                    dev.bootstrap = line["bootstrap: ".len()..].to_string();
                    break;
                }
                Ok(line) if line.starts_with("metrics: ") => {
                    dev.metrics_urls.push(line["metrics: ".len()..].to_string());
                }
                Ok(line) => panic!("unexpected line from weir dev: {line:?}"),
                Err(_) => panic!("weir dev printed no bootstrap line; {}", dev.logs()),
            }
        }
        dev
    }

    /// The data folder `weir dev` was given.
    pub fn data(&self) -> PathBuf {
        self.dir.as_ref().expect("data folder").path().join("data")
    }

    pub fn node_config(&self, i: u16) -> PathBuf {
        self.data().join(format!("node-{i}/node.toml"))
    }

    pub fn member_config(&self, i: u16) -> PathBuf {
        self.data().join(format!("controller-{i}/controller.toml"))
    }

    /// `weir dev`'s own log and every node's, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = format!("weir dev log:\n{}", read(&self.log));
        for i in 1..=self.nodes {
            for name in ["node.log", "node-restarted.log"] {
                let path = self.data().join(format!("node-{i}/{name}"));
                if path.exists() {
                    out.push_str(&format!("\nnode {i} {name}:\n{}", read(&path)));
                }
            }
        }
        out
    }

    /// Whether `weir dev` itself is still running.
    pub fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// `weir dev`'s process.
    pub fn child_mut(&mut self) -> Option<&mut Child> {
        self.child.as_mut()
    }

    /// Takes the `weir dev` process (to stop it by hand).
    pub fn take_child(&mut self) -> Option<Child> {
        self.child.take()
    }

    /// Starts node `i` again from its config (after it was killed), as its
    /// own process; returns once it serves Kafka.
    pub fn start_node(&self, i: u16) -> NodeProcess {
        let log = self.data().join(format!("node-{i}/node-restarted.log"));
        let mut child = Command::new(workspace_bin("weir"))
            .args(["node", "--config"])
            .arg(self.node_config(i))
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .expect("spawn weir node");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.starts_with("kafka: ") => break,
                Ok(_) => continue,
                Err(_) => panic!("node {i} did not start again: {}", read(&log)),
            }
        }
        NodeProcess { child: Some(child) }
    }

    /// Runs the `weir` CLI against the cluster; panics if it fails.
    pub fn weir(&self, args: &[&str]) -> String {
        weir_cli(&self.bootstrap, args, "")
    }
}

/// Runs the `weir` CLI against `bootstrap` with `stdin` as its input.
pub fn weir_output(bootstrap: &str, args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(workspace_bin("weir"))
        .args(["--bootstrap-server", bootstrap])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run weir");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// Like [`weir_output`]; panics if it fails and returns its stdout.
pub fn weir_cli(bootstrap: &str, args: &[&str], stdin: &str) -> String {
    let out = weir_output(bootstrap, args, stdin);
    assert!(out.status.success(), "weir {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let keep = std::thread::panicking() || std::env::var_os("WEIR_TEST_KEEP").is_some();
        if keep && let Some(dir) = self.dir.take() {
            eprintln!("cluster data and logs kept in {}", dir.keep().display());
        }
    }
}

/// A node process a test started; SIGTERM on drop.
pub struct NodeProcess {
    child: Option<Child>,
}

impl NodeProcess {
    /// SIGTERM and wait; whether it exited cleanly.
    pub fn stop(&mut self) -> bool {
        self.child.take().is_none_or(crate::terminate)
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The pid of the live process whose command line names `config`.
pub fn pid_of(config: &Path) -> Option<u32> {
    let needle = config.to_string_lossy().to_string();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        // A zombie has an empty command line: it is gone for this purpose.
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&needle) {
            return Some(pid);
        }
    }
    None
}

/// Brokers in `addr`'s Metadata: node id → (host, port).
pub fn brokers(addr: &str) -> BTreeMap<i32, (String, i32)> {
    let mut client = raw::Client::connect(addr);
    let req = MetadataRequest::default().with_topics(Some(Vec::new()));
    let ResponseKind::Metadata(md) = client.call(ApiKey::Metadata, 12, req.into()) else {
        panic!("not a Metadata response")
    };
    md.brokers.iter().map(|b| (b.node_id.0, (b.host.to_string(), b.port))).collect()
}

/// Partition → leader of `topic` in `addr`'s Metadata (leader -1: none yet).
pub fn leaders(addr: &str, topic: &str) -> BTreeMap<i32, i32> {
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::protocol::StrBytes;
    let mut client = raw::Client::connect(addr);
    let name = TopicName(StrBytes::from_string(topic.to_string()));
    let req = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(name))]))
        .with_allow_auto_topic_creation(false);
    let ResponseKind::Metadata(md) = client.call(ApiKey::Metadata, 12, req.into()) else {
        panic!("not a Metadata response")
    };
    md.topics
        .iter()
        .filter(|t| t.error_code == 0)
        .flat_map(|t| t.partitions.iter().map(|p| (p.partition_index, p.leader_id.0)))
        .collect()
}
