//! `weir dev --nodes N` (N > 1): a local cluster of N storage node processes
//! and the controller member processes ([`crate::dev_quorum`]), each its own
//! OS process, so any one can be killed alone.
//!
//! ```text
//!   weir dev ─┬─ weir controller --config DIR/controller-i/controller.toml   (i in 1..=M)
//!             └─ weir node --config DIR/node-i/node.toml                     (i in 1..=N)
//! ```
//!
//! Node i of a dev cluster on Kafka port P serves Kafka on P+i-1, replication
//! on P+400+i (UDP) and metrics on P+500+i; its data is in DIR/node-i/data
//! and its log in DIR/node-i/node.log. Fixed offsets, so a restart on the
//! same data directory finds the same nodes at the same addresses.
//!
//! `weir dev` waits until node 1's Metadata lists every node, prints the
//! bootstrap line, and on SIGINT or SIGTERM stops the nodes first (while
//! the controller still answers them), then the members.

use crate::DevArgs;
use crate::client::Client;
use crate::dev_quorum::{DevProcess, Members, stop_all, toml_string};
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};
use weir_node::config::{Durability, NodeConfig};

/// The most nodes `weir dev` runs (the port offsets leave room for 9).
pub const NODES_MAX: u16 = 9;
/// How long the nodes may take to all appear in node 1's Metadata once they
/// serve Kafka (each registers with the controller and node 1 must see it).
const BROKERS_WAIT: Duration = Duration::from_secs(60);
/// Pause between Metadata requests while waiting.
const BROKERS_POLL: Duration = Duration::from_millis(200);
/// Port offsets from the Kafka port; node i adds i (Kafka: i-1).
const REPLICATION_PORT_OFFSET: u16 = 400;
const METRICS_PORT_OFFSET: u16 = 500;
/// Replication factor of auto-created topics: Kafka's usual 3, or every
/// node when there are fewer.
const REPLICATION_FACTOR_MAX: u16 = 3;

/// The running processes. Dropping it stops the nodes first, then the
/// controller members, so nodes never lose their controller while stopping.
struct Cluster {
    nodes: Vec<DevProcess>,
    members: Members,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        stop_all(&mut self.nodes);
        // `members` drops after this, stopping the members.
    }
}

/// Runs the cluster until SIGINT or SIGTERM.
pub fn run(
    args: &DevArgs,
    durability: Durability,
    signals: &mut signal_hook::iterator::Signals,
) -> Result<()> {
    let n = args.nodes;
    let p = args.kafka_port;
    assert!((2..=NODES_MAX).contains(&n), "checked by the caller");
    if p == 0 {
        bail!("--nodes {n} needs a fixed --kafka-port: the other ports are offsets from it");
    }
    let top = METRICS_PORT_OFFSET + n;
    if p.checked_add(top).is_none() {
        bail!(
            "--kafka-port {p} leaves no room for the ports of --nodes {n} (up to PORT+{top}): \
             use a port up to {}",
            u16::MAX - top
        );
    }
    if args.metrics_port.is_some() {
        bail!("--metrics-port is for one node; node i of --nodes {n} serves metrics on PORT+500+i");
    }
    // The options every node gets, checked before any process starts.
    NodeConfig {
        log_format: args.log_format.clone(),
        log_level: args.log_level.clone(),
        ..NodeConfig::default()
    }
    .validate()?;
    let data_dir = std::path::absolute(&args.data_dir)
        .with_context(|| format!("{} as an absolute path", args.data_dir.display()))?;
    let members = Members::start(args.controllers, &data_dir, p, &args.log_format)?;
    let mut cluster = Cluster { nodes: Vec::new(), members };

    let mut expected = BTreeMap::new();
    for i in 1..=n {
        let dir = data_dir.join(format!("node-{i}"));
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("node.toml");
        let text = node_toml(args, durability, &data_dir, i, &cluster.members.addrs)?;
        std::fs::write(&config, text).with_context(|| format!("writing {}", config.display()))?;
        // Read back as the node will, so a mistake in it is reported here
        // rather than in a node's log.
        NodeConfig::load(&config)?;
        let argv = [OsStr::new("node"), OsStr::new("--config"), config.as_os_str()];
        cluster.nodes.push(DevProcess::spawn(&format!("node {i}"), &argv, &dir.join("node.log"))?);
        expected.insert(i32::from(i), format!("127.0.0.1:{}", p + i - 1));
    }
    // Started together; each prints its metrics line, then its Kafka line
    // once it serves Kafka.
    for (node, (i, addr)) in cluster.nodes.iter_mut().zip(&expected) {
        println!("{}", node.expect_line("metrics: ")?);
        let kafka = node.expect_line("kafka: ")?;
        if kafka != format!("kafka: {addr}") {
            bail!(
                "node {i} printed {kafka:?}, expected kafka: {addr} (log: {})",
                node.log().display()
            );
        }
    }
    std::io::stdout().flush()?;
    if wait_for_brokers(&mut cluster.nodes, &expected, signals)? {
        let bootstrap: Vec<&str> = expected.values().map(String::as_str).collect();
        println!("bootstrap: {}", bootstrap.join(","));
        std::io::stdout().flush()?;
        let sig = weir_node::cli::wait_for_signal(signals);
        tracing::info!(signal = sig, "shutting down");
    } else {
        tracing::info!("signal during start-up; shutting down");
    }
    drop(cluster);
    Ok(())
}

/// Node i's configuration file.
fn node_toml(
    args: &DevArgs,
    durability: Durability,
    data_dir: &Path,
    i: u16,
    controller: &str,
) -> Result<String> {
    let p = args.kafka_port;
    let durability = match durability {
        Durability::Fsync => "fsync",
        Durability::Write => "write",
    };
    let quote = |s: &str| toml_string(Path::new(s));
    Ok(format!(
        "# Written by `weir dev --nodes {n}` at every start.\n\
         node_id = {i}\n\
         data_dirs = [{data}]\n\
         listen = \"127.0.0.1:{listen}\"\n\
         advertised_host = \"127.0.0.1\"\n\
         controller = {controller}\n\
         metrics_listen = \"127.0.0.1:{metrics}\"\n\
         replication_listen = \"127.0.0.1:{replication}\"\n\
         tls_dir = {tls}\n\
         shards = {shards}\n\
         durability = \"{durability}\"\n\
         log_format = {log_format}\n\
         log_level = {log_level}\n\
         data_dir_min_free_bytes = {min_free}\n\
         default_replication_factor = {rf}\n\
         # Faster failure detection than a production node (1000 ms).\n\
         heartbeat_interval_ms = 500\n",
        n = args.nodes,
        data = toml_string(&data_dir.join(format!("node-{i}")).join("data"))?,
        listen = p + i - 1,
        controller = quote(controller)?,
        metrics = p + METRICS_PORT_OFFSET + i,
        replication = p + REPLICATION_PORT_OFFSET + i,
        tls = toml_string(&data_dir.join("tls"))?,
        shards = args.shards,
        log_format = quote(&args.log_format)?,
        log_level = quote(&args.log_level)?,
        min_free = args.min_free_bytes,
        rf = args.nodes.min(REPLICATION_FACTOR_MAX),
    ))
}

/// Waits until node 1's Metadata lists every node at its address. Returns
/// false when a signal arrived first; fails when a node exits or
/// [`BROKERS_WAIT`] passes.
fn wait_for_brokers(
    nodes: &mut [DevProcess],
    expected: &BTreeMap<i32, String>,
    signals: &mut signal_hook::iterator::Signals,
) -> Result<bool> {
    let first = expected.values().next().expect("at least one node");
    let deadline = Instant::now() + BROKERS_WAIT;
    let mut last_error = String::new();
    loop {
        for node in nodes.iter_mut() {
            if let Some(status) = node.exited() {
                bail!("{} exited ({status}) (log: {})", node.name(), node.log().display());
            }
        }
        // Brokers that are missing or listed at another address.
        let missing: Vec<i32> = match Client::connect(first) {
            Ok(client) => expected
                .iter()
                .filter(|(id, addr)| client.brokers.get(id).is_none_or(|b| b.addr() != **addr))
                .map(|(id, _)| *id)
                .collect(),
            Err(e) => {
                last_error = format!(" (last error: {e:#})");
                expected.keys().copied().collect()
            }
        };
        if missing.is_empty() {
            return Ok(true);
        }
        if signals.pending().next().is_some() {
            return Ok(false);
        }
        if Instant::now() >= deadline {
            let logs: Vec<String> = missing
                .iter()
                .map(|id| nodes[*id as usize - 1].log().display().to_string())
                .collect();
            bail!(
                "after {} s, node 1's Metadata ({first}) does not list node(s) {missing:?}{last_error}; \
                 see {}",
                BROKERS_WAIT.as_secs(),
                logs.join(", ")
            );
        }
        std::thread::sleep(BROKERS_POLL);
    }
}

/// `weir node --config FILE`: one storage node, as `weir-node --config
/// FILE`, printing `metrics: URL` and then `kafka: ADDR` once it serves
/// Kafka (the lines `weir dev` waits for).
pub fn node_main(path: &Path) -> Result<()> {
    weir_node::cli::run_node_process(path, |node| {
        let mut out = std::io::stdout().lock();
        if let Some(addr) = node.metrics_addr {
            writeln!(out, "metrics: http://{addr}/metrics")?;
        }
        writeln!(out, "kafka: {}", node.kafka_addr)?;
        out.flush()
    })
}
