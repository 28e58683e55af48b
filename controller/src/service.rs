//! The `weir-controller` process: its config file, logging, and the serve
//! loop that runs until SIGINT/SIGTERM. [`run_until`] is the same loop for
//! hosts that own the signals (e.g. `weir dev`).

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use crate::config::ConfigDefaults;
use crate::handle::{ControllerHandle, ControllerJoin};
use crate::handle::{ControllerOptions, start_in_process_with};
use crate::raft::network::member_node_id;
use crate::raft::{RaftController, RaftControllerConfig, RaftOptions};
use crate::rebalance::RebalanceOptions;
use crate::remote::serve_member_until;

/// How the process writes its logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    #[serde(alias = "human")]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

fn default_listen() -> String {
    "127.0.0.1:9093".into()
}

fn default_log_level() -> String {
    "info".into()
}

fn default_snapshot_every_records() -> u64 {
    ControllerOptions::default().snapshot_every_records
}

fn default_node_session_timeout_ms() -> u64 {
    crate::sessions::NODE_SESSION_TIMEOUT_MS_DEFAULT
}

fn default_true() -> bool {
    true
}

fn default_leader_imbalance_check_interval_ms() -> u64 {
    crate::rebalance::LEADER_IMBALANCE_CHECK_INTERVAL_MS_DEFAULT
}

fn default_leader_imbalance_per_node_percentage() -> u32 {
    crate::rebalance::LEADER_IMBALANCE_PER_NODE_PERCENTAGE_DEFAULT
}

/// The controller's TOML config file.
///
/// ```toml
/// data_dir = "/var/lib/weir/controller"
/// listen = "0.0.0.0:9093"
/// log_format = "json"
/// log_level = "info,weir_controller=debug"
///
/// [defaults]
/// num_partitions = 3
/// [defaults.topic]
/// "retention.ms" = "86400000"
/// ```
///
/// A quorum member adds (see ops/deploy/controller.toml):
///
/// ```toml
/// id = 2
/// tls_dir = "/etc/weir/tls"
/// [members]
/// 1 = "10.0.0.1:9094"
/// 2 = "10.0.0.2:9094"
/// 3 = "10.0.0.3:9094"
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerConfig {
    /// Folder for the metadata log and snapshots; created if missing. One
    /// controller per folder (it is locked while in use).
    pub data_dir: PathBuf,
    /// `host:port` nodes connect to: UDP (QUIC) with `tls_dir`, TCP without.
    /// Default `127.0.0.1:9093`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// `text` (default) or `json`.
    #[serde(default)]
    pub log_format: LogFormat,
    /// Log filter in tracing's EnvFilter syntax, e.g. `info` (default) or
    /// `warn,weir_controller=debug`. The `RUST_LOG` variable, when set, wins.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// Node-level defaults for new topics: `num_partitions`,
    /// `default_replication_factor`, and a `[defaults.topic]` table of topic
    /// config values (e.g. shorter retention for development).
    #[serde(default)]
    pub defaults: ConfigDefaults,
    /// Metadata records between snapshots (default 10000). Bounds the log's
    /// size and the time a restart spends replaying it.
    #[serde(default = "default_snapshot_every_records")]
    pub snapshot_every_records: u64,
    /// A node that sends no accepted heartbeat for this long is fenced: it
    /// loses its leaderships and leaves the ISRs (Kafka's
    /// `broker.session.timeout.ms`). Default 9000; 0 is treated as 1. The
    /// same in single-process and quorum mode (there the leader keeps the
    /// sessions).
    #[serde(default = "default_node_session_timeout_ms")]
    pub node_session_timeout_ms: u64,
    /// Move partition leadership back to the preferred (first) replicas
    /// when a node's share of partitions led by others grows too large
    /// (Kafka's `auto.leader.rebalance.enable`). Default true.
    #[serde(default = "default_true")]
    pub auto_leader_rebalance_enable: bool,
    /// How often the active controller checks the leader imbalance (Kafka's
    /// `leader.imbalance.check.interval.seconds`, in milliseconds). Default
    /// 300000; 0 is treated as 1.
    #[serde(default = "default_leader_imbalance_check_interval_ms")]
    pub leader_imbalance_check_interval_ms: u64,
    /// The percentage of a node's preferred partitions led by other nodes
    /// above which they are moved back to it (Kafka's
    /// `leader.imbalance.per.broker.percentage`). Default 10.
    #[serde(default = "default_leader_imbalance_per_node_percentage")]
    pub leader_imbalance_per_node_percentage: u32,
    /// `host:port` of the Prometheus `/metrics` endpoint. Default
    /// `127.0.0.1:9645`; port 0 picks a free one; an empty string turns it off.
    #[serde(default = "default_metrics_listen")]
    pub metrics_listen: String,
    /// Quorum mode: this member's id (>= 1). Required with `members`.
    #[serde(default)]
    pub id: Option<u64>,
    /// Quorum mode: every member of the Raft quorum, this one included, as a
    /// table of member id → Raft `host:port` (UDP, QUIC with mutual TLS), e.g.
    /// `[members]` / `1 = "10.0.0.1:9094"`. Empty (the default): the
    /// single-process controller.
    #[serde(default)]
    pub members: BTreeMap<String, String>,
    /// Quorum mode: the address the member's Raft endpoint binds. Default:
    /// its own entry in `members`.
    #[serde(default)]
    pub raft_listen: Option<String>,
    /// The folder of the cluster CA (`ca.pem`, `ca.key.pem`) and of the
    /// controller's certificate (`node-<1000000 + id>.pem`; a single-process
    /// controller's is `node-1000000.pem`). A missing CA or certificate is
    /// created, so every member must see the same folder (or a copy of it
    /// made after the CA exists). With it, nodes are served over QUIC with
    /// mutual TLS on `listen` (UDP); without it, over plain TCP with no
    /// authentication (development only: a warning is logged). Required in
    /// quorum mode.
    #[serde(default)]
    pub tls_dir: Option<PathBuf>,
}

/// The quorum settings of a [`ControllerConfig`], checked.
#[derive(Clone, Debug)]
pub struct QuorumConfig {
    pub id: u64,
    pub members: BTreeMap<u64, SocketAddr>,
    pub raft_listen: SocketAddr,
    pub tls_dir: PathBuf,
}

fn default_metrics_listen() -> String {
    "127.0.0.1:9645".into()
}

impl ControllerConfig {
    /// The preferred-leader rebalancing settings, for either mode.
    pub fn leader_rebalance(&self) -> RebalanceOptions {
        RebalanceOptions {
            enable: self.auto_leader_rebalance_enable,
            check_interval_ms: self.leader_imbalance_check_interval_ms.max(1),
            per_node_percentage: self.leader_imbalance_per_node_percentage,
        }
    }

    /// Reads and parses a TOML config file.
    pub fn from_file(path: &std::path::Path) -> anyhow::Result<ControllerConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        let config: ControllerConfig = toml::from_str(&text)
            .with_context(|| format!("parsing config file {}", path.display()))?;
        config.quorum().with_context(|| format!("in config file {}", path.display()))?;
        Ok(config)
    }

    /// The quorum settings, or `None` in single-process mode (no `members`).
    pub fn quorum(&self) -> anyhow::Result<Option<QuorumConfig>> {
        if self.members.is_empty() {
            anyhow::ensure!(
                self.id.is_none() && self.raft_listen.is_none(),
                "id and raft_listen are quorum options: they need a [members] table"
            );
            return Ok(None);
        }
        let resolve = |what: &str, addr: &str| -> anyhow::Result<SocketAddr> {
            addr.to_socket_addrs()
                .with_context(|| format!("{what} {addr:?} is not a host:port"))?
                .next()
                .with_context(|| format!("{what} {addr:?} resolves to no address"))
        };
        let mut members = BTreeMap::new();
        for (id, addr) in &self.members {
            let id: u64 =
                id.parse().ok().filter(|id| (1..=MEMBER_ID_MAX).contains(id)).with_context(
                    || format!("member id {id:?} is not a number in 1..={MEMBER_ID_MAX}"),
                )?;
            members.insert(id, resolve(&format!("member {id}"), addr)?);
        }
        let id = self.id.context("id (this member's id) is required with [members]")?;
        anyhow::ensure!(members.contains_key(&id), "id {id} is not in [members]");
        let raft_listen = match &self.raft_listen {
            Some(addr) => resolve("raft_listen", addr)?,
            None => members[&id],
        };
        let tls_dir = self.tls_dir.clone().context("tls_dir is required with [members]")?;
        Ok(Some(QuorumConfig { id, members, raft_listen, tls_dir }))
    }
}

/// The largest member id: the certificate's node id (1_000_000 + id) must
/// fit an i32.
const MEMBER_ID_MAX: u64 = 1_000_000;

/// Installs the global tracing subscriber for the process.
pub fn init_logging(format: LogFormat, level: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .with_context(|| format!("log_level {level:?} is not a valid filter"))?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("installing the log subscriber: {e}"))
}

/// Runs the controller until SIGINT or SIGTERM, then shuts down cleanly
/// (snapshot written, lock released). A second signal exits at once.
pub fn run(config: ControllerConfig) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        // The first signal sets `stop`; a second, with `stop` already set, exits.
        signal_hook::flag::register_conditional_shutdown(sig, 1, stop.clone())
            .context("installing signal handlers")?;
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    run_until(config, stop)
}

/// Runs the controller until `stop` is set. Returns an error if the
/// controller stopped by itself (a fatal log error): the process must exit.
///
/// With `[members]` the process is one member of a Raft quorum: the member
/// with the lowest id initializes a new quorum (harmless on an existing one),
/// every member serves nodes on `listen`, and only the leader (the active
/// controller) runs their commands; the others refuse them naming the leader.
pub fn run_until(config: ControllerConfig, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let options = ControllerOptions {
        snapshot_every_records: config.snapshot_every_records.max(1),
        node_session_timeout_ms: config.node_session_timeout_ms.max(1),
        leader_rebalance: config.leader_rebalance(),
        ..ControllerOptions::default()
    };
    let Some(quorum) = config.quorum()? else {
        let (handle, join) =
            start_in_process_with(&config.data_dir, config.defaults.clone(), options)?;
        // One member: this process is the active controller.
        return serve_nodes(&config, handle, join, None, Box::new(|| true), &stop);
    };
    let member = Arc::new(start_member(&config, &quorum)?);
    let lowest = quorum.members.keys().next().copied();
    if lowest == Some(quorum.id) {
        member.initialize()?;
        tracing::info!(member = quorum.id, "quorum initialized (or already was)");
    }
    let (handle, join) = crate::raft::start_handle(member.clone(), &options)?;
    let weak = Arc::downgrade(&member);
    let active = Box::new(move || weak.upgrade().is_some_and(|m| m.is_leader()));
    let result = serve_nodes(&config, handle, join, Some(quorum.id), active, &stop);
    // The submit thread has let go of it: this drop stops Raft and closes the
    // hub, which ends the nodes' connections.
    drop(member);
    result
}

fn start_member(
    config: &ControllerConfig,
    quorum: &QuorumConfig,
) -> anyhow::Result<RaftController> {
    // Members starting together wait for one another to finish writing the
    // shared CA (the first one creates it).
    let (roots, identity) =
        crate::remote::quic::load_tls(&quorum.tls_dir, member_node_id(quorum.id))?;
    let member = RaftController::start(RaftControllerConfig {
        id: quorum.id,
        listen: quorum.raft_listen,
        members: quorum.members.clone(),
        data_dir: config.data_dir.clone(),
        roots,
        identity,
        defaults: config.defaults.clone(),
        options: RaftOptions {
            snapshot_every_entries: config.snapshot_every_records.max(1),
            node_session_timeout_ms: config.node_session_timeout_ms.max(1),
            leader_rebalance: config.leader_rebalance(),
            ..RaftOptions::default()
        },
    })?;
    tracing::info!(
        member = quorum.id,
        raft_listen = %quorum.raft_listen,
        members = ?quorum.members,
        "controller quorum member started"
    );
    Ok(member)
}

/// Where nodes are served: a bound TCP listener, or the QUIC endpoint to
/// serve on.
enum NodeListener {
    Tcp(std::net::TcpListener),
    Quic(weir_net::Endpoint, flume::Receiver<weir_net::InboundRequest>),
}

/// Serves `handle` to nodes on `config.listen` (and `/metrics`) until `stop`
/// is set or the controller stops by itself.
fn serve_nodes(
    config: &ControllerConfig,
    handle: ControllerHandle,
    join: ControllerJoin,
    member: Option<u64>,
    active: Box<dyn Fn() -> bool + Send>,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    // QUIC with mutual TLS when there is a CA, else plain TCP.
    let listener = match &config.tls_dir {
        Some(tls_dir) => {
            // A single-process controller's certificate is member 0's.
            let node = member_node_id(member.unwrap_or(0));
            let (roots, identity) = crate::remote::quic::load_tls(tls_dir, node)?;
            let listen = config
                .listen
                .to_socket_addrs()
                .with_context(|| format!("listen {:?} is not a host:port", config.listen))?
                .next()
                .with_context(|| format!("listen {:?} resolves to no address", config.listen))?;
            let config = weir_net::EndpointConfig { node, listen, roots, identity };
            let (endpoint, inbound) = crate::remote::quic::start_endpoint(config)?;
            NodeListener::Quic(endpoint, inbound)
        }
        None => {
            let listener = std::net::TcpListener::bind(&config.listen)
                .with_context(|| format!("listening on {}", config.listen))?;
            tracing::warn!(
                listen = %listener.local_addr()?,
                "the controller link is unauthenticated (plain TCP): set tls_dir to serve nodes \
                 over QUIC with mutual TLS"
            );
            tracing::info!(listen = %listener.local_addr()?, ?member, "controller serving");
            NodeListener::Tcp(listener)
        }
    };
    if !config.metrics_listen.is_empty() {
        let metrics = std::net::TcpListener::bind(&config.metrics_listen)
            .with_context(|| format!("metrics_listen {}", config.metrics_listen))?;
        let addr = metrics.local_addr()?;
        let image_of = handle.clone();
        crate::metrics::serve_http(metrics, "ctl-metrics", move || {
            crate::metrics::render(&image_of.image(), active())
        })?;
        tracing::info!(%addr, "metrics endpoint");
        println!("metrics: http://{addr}/metrics");
    }
    let serve_stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = serve_stop.clone();
        std::thread::Builder::new().name("ctl-accept".into()).spawn(move || match listener {
            NodeListener::Tcp(listener) => serve_member_until(listener, handle, member, &stop)
                .context("serving nodes over TCP"),
            NodeListener::Quic(endpoint, inbound) => {
                crate::remote::quic::serve_endpoint_until(endpoint, inbound, handle, member, &stop)
            }
        })?
    };
    while !stop.load(Ordering::SeqCst) && !join.is_finished() && !server.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
    }
    serve_stop.store(true, Ordering::SeqCst);
    let stopped_by_itself = join.is_finished();
    tracing::info!("controller shutting down");
    join.shutdown()?;
    match server.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e.context("serving nodes")),
        Err(_) => anyhow::bail!("the accept thread panicked"),
    }
    if stopped_by_itself {
        anyhow::bail!("the controller stopped unexpectedly");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_config_loads() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/deploy/controller.toml");
        let c = ControllerConfig::from_file(&path).expect("ops/deploy/controller.toml loads");
        assert_eq!(c.metrics_listen, "127.0.0.1:9645");
        assert_eq!(c.node_session_timeout_ms, 9000);
        assert_eq!(c.leader_rebalance(), RebalanceOptions::default());
        c.defaults.validated().expect("its topic defaults are valid");

        // Every option is named in it (set, or shown commented out). The
        // options are the fields serde lists when it refuses an unknown one.
        let refusal = toml::from_str::<ControllerConfig>("data_dir = \"x\"\nno_such_option = 1")
            .unwrap_err()
            .to_string();
        let expected = refusal.split("expected one of").nth(1).expect("serde names the options");
        let options: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        assert!(options.len() >= 15 && options.contains(&"auto_leader_rebalance_enable"));
        let text = std::fs::read_to_string(&path).unwrap();
        for key in options {
            assert!(
                text.lines().any(|l| {
                    let l = l.trim_start_matches('#').trim_start();
                    l.starts_with(&format!("{key} =")) || l == format!("[{key}]")
                }),
                "ops/deploy/controller.toml documents {key}"
            );
        }
        assert!(c.quorum().unwrap().is_none(), "the example is single-process");

        // Its commented-out quorum options, uncommented, make a member.
        let quorum_text: String = text
            .lines()
            .map(|l| {
                let bare = l.strip_prefix("# ").unwrap_or(l);
                let quorum_key = bare == "[members]"
                    || ["id = ", "tls_dir = ", "1 = ", "2 = ", "3 = "]
                        .iter()
                        .any(|k| bare.starts_with(k));
                if quorum_key { bare } else { l }
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let c: ControllerConfig = toml::from_str(&quorum_text).unwrap();
        let q = c.quorum().unwrap().expect("a quorum member");
        assert_eq!(q.id, 1);
        assert_eq!(q.members.len(), 3);
        assert_eq!(q.raft_listen, q.members[&1]);
    }

    #[test]
    fn quorum_options_are_checked() {
        let parse = |extra: &str| {
            let c: ControllerConfig =
                toml::from_str(&format!("data_dir = \"/tmp/x\"\n{extra}")).unwrap();
            c.quorum()
        };
        let members = "[members]\n1 = \"127.0.0.1:9101\"\n2 = \"127.0.0.1:9102\"\n";
        let q = parse(&format!("id = 2\ntls_dir = \"/tmp/tls\"\n{members}")).unwrap().unwrap();
        assert_eq!(q.raft_listen.port(), 9102);
        assert!(parse(&format!("tls_dir = \"/tmp/tls\"\n{members}")).is_err(), "id required");
        assert!(parse(&format!("id = 3\ntls_dir = \"/tmp/tls\"\n{members}")).is_err());
        assert!(parse(&format!("id = 1\n{members}")).is_err(), "tls_dir required");
        assert!(parse("id = 1").is_err(), "id without members");
        assert!(parse("tls_dir = \"/tmp/tls\"\n[members]\nx = \"127.0.0.1:1\"").is_err());
    }

    #[test]
    fn config_file_parses_with_defaults() {
        let c: ControllerConfig = toml::from_str(
            r#"
            data_dir = "/tmp/x"
            [defaults]
            num_partitions = 3
            [defaults.topic]
            "retention.ms" = "1000"
            "#,
        )
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:9093");
        assert_eq!(c.node_session_timeout_ms, 9000);
        assert_eq!(c.leader_rebalance(), RebalanceOptions::default());
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.defaults.num_partitions, 3);
        assert_eq!(c.defaults.default_replication_factor, 1);
        assert_eq!(c.defaults.topic["retention.ms"], "1000");
        assert!(toml::from_str::<ControllerConfig>("data_dir = \"x\"\nlisten_port = 1").is_err());
    }

    #[test]
    fn run_until_stops_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let config = ControllerConfig {
            data_dir: dir.path().to_path_buf(),
            listen: "127.0.0.1:0".into(),
            log_format: LogFormat::Text,
            log_level: "info".into(),
            defaults: ConfigDefaults::default(),
            snapshot_every_records: 10,
            node_session_timeout_ms: 9000,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_ms: 300_000,
            leader_imbalance_per_node_percentage: 10,
            metrics_listen: "127.0.0.1:0".into(),
            id: None,
            members: BTreeMap::new(),
            raft_listen: None,
            tls_dir: None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let t = {
            let stop = stop.clone();
            std::thread::spawn(move || run_until(config, stop))
        };
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::SeqCst);
        t.join().unwrap().unwrap();
        assert!(crate::log::MetadataLog::snapshot_path(dir.path()).exists());
    }

    /// A quorum of one through `run_until`: it initializes itself, leads,
    /// and serves nodes (over QUIC with mutual TLS, as it has a CA).
    #[test]
    fn run_until_serves_a_quorum_of_one() {
        let dir = tempfile::tempdir().unwrap();
        let free_udp = || std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let (raft, listen) = (free_udp(), free_udp());
        let config = ControllerConfig {
            data_dir: dir.path().join("data"),
            listen: listen.to_string(),
            log_format: LogFormat::Text,
            log_level: "info".into(),
            defaults: ConfigDefaults::default(),
            snapshot_every_records: 10,
            node_session_timeout_ms: 9000,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_ms: 300_000,
            leader_imbalance_per_node_percentage: 10,
            metrics_listen: String::new(),
            id: Some(1),
            members: [("1".to_string(), raft.to_string())].into(),
            raft_listen: None,
            tls_dir: Some(dir.path().join("tls")),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let t = {
            let stop = stop.clone();
            std::thread::spawn(move || run_until(config, stop))
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let remote = loop {
            let tls = dir.path().join("tls");
            match crate::remote::connect_quic(&listen.to_string(), weir_proto::NodeId(1), &tls) {
                Ok(r) => break r,
                Err(e) => assert!(std::time::Instant::now() < deadline, "{e:#}"),
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let node = crate::NodeInfo {
            id: weir_proto::ids::NodeId(1),
            host: "127.0.0.1".into(),
            port: 9092,
            ..Default::default()
        };
        remote.submit_blocking(crate::Command::RegisterNode(node)).unwrap();
        remote.submit_blocking(crate::Command::create_topic("q", 2, 1)).unwrap();
        assert!(remote.image().topic("q").is_some());
        assert!(!remote.image().cluster_id.is_empty());
        // The member's certificate names node 1000001, under the shared CA.
        assert!(dir.path().join("tls/node-1000001.pem").exists());
        stop.store(true, Ordering::SeqCst);
        t.join().unwrap().unwrap();
        assert!(dir.path().join("data/raft").is_dir());
    }
}
