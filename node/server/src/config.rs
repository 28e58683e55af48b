//! `weir-node` configuration (TOML). Every option has a default, so an empty
//! file is a valid development configuration.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// How an acknowledged produce is made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Acknowledge after the grouped `fdatasync` that covers the batch (default).
    #[default]
    Fsync,
    /// Acknowledge when the O_DIRECT write completes; `fdatasync` runs in the
    /// background at least every `flush_ms`.
    Write,
}

/// The node's configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's id in the cluster (Kafka's `node.id`).
    pub node_id: i32,
    /// Data directories (JBOD). Partitions are spread over them.
    pub data_dirs: Vec<PathBuf>,
    /// Address the Kafka listener binds, `host:port`.
    pub listen: String,
    /// Host advertised to clients in Metadata responses (port: the listen port).
    pub advertised_host: String,
    /// Rack of this node, for rack-aware placement.
    pub rack: Option<String>,
    /// Address of the controller (`host:port`) when it runs as its own
    /// process; for a controller quorum, every member's address, separated by
    /// commas (`"10.0.0.1:9093,10.0.0.2:9093,10.0.0.3:9093"`): the node uses
    /// one at a time and follows the active controller.
    pub controller: String,
    /// Number of shards (executors pinned to cores); 0 means one per core.
    pub shards: usize,
    /// Bytes of registered io_uring buffer memory per shard (glommio
    /// `io_memory`). Pinned when the process may lock memory (root or
    /// CAP_IPC_LOCK); otherwise glommio falls back to unregistered buffers.
    pub io_memory_bytes_per_shard: usize,
    /// `fsync` (default) or `write`; see [`Durability`].
    pub durability: Durability,
    /// In `write` durability, the longest time between background fdatasyncs.
    pub flush_ms: u64,
    /// Longest time appended bytes wait before an O_DIRECT write is issued
    /// when no producer is waiting for them.
    pub write_behind_ms: u64,
    /// Kafka's `socket.request.max.bytes`: the largest request frame accepted.
    pub socket_request_max_bytes: usize,
    /// Bytes of the hot-tail batch cache per shard.
    pub batch_cache_bytes_per_shard: usize,
    /// Kafka's `auto.create.topics.enable`.
    pub auto_create_topics_enable: bool,
    /// Partitions of an auto-created topic (Kafka's `num.partitions`).
    pub num_partitions: i32,
    /// Replication factor of auto-created topics.
    pub default_replication_factor: i16,
    /// Kafka's `group.initial.rebalance.delay.ms` (Kafka: 3000; 0 here keeps
    /// tools and tests snappy).
    pub group_initial_rebalance_delay_ms: i64,
    /// Log format: `human` (default; `text` is the same) or `json`.
    pub log_format: String,
    /// Log filter in tracing's EnvFilter syntax: a level (`info`, the
    /// default) or levels per module, e.g. `info,weir_node::kafka=debug`.
    /// The `RUST_LOG` variable, when set, wins.
    pub log_level: String,
    /// Below this many free bytes on a data directory's filesystem, that
    /// directory stops accepting appends (producers get a retriable
    /// KAFKA_STORAGE_ERROR); reads continue and appends resume once space
    /// returns.
    pub data_dir_min_free_bytes: u64,
    /// Address of the Prometheus `/metrics` endpoint, `host:port` (port 0
    /// picks a free one); empty disables it.
    pub metrics_listen: String,
    /// UDP address of the replication endpoint (QUIC, mutual TLS), `host:port`;
    /// other nodes fetch from this node here. Empty: no replication endpoint
    /// (a single-node cluster, replication factor 1 only).
    pub replication_listen: String,
    /// Host other nodes use to reach the replication endpoint (port: the
    /// listen port); empty means `advertised_host`.
    pub replication_advertised_host: String,
    /// Folder with the cluster CA (`ca.pem`, `ca.key` for a development CA)
    /// and this node's certificate; required with `replication_listen`.
    pub tls_dir: Option<PathBuf>,
    /// How often the node heartbeats to the controller (Kafka's
    /// `broker.heartbeat.interval.ms`).
    pub heartbeat_interval_ms: u64,
    /// Kafka's `replica.lag.time.max.ms`: a follower not caught up for this
    /// long leaves the ISR.
    pub replica_lag_time_max_ms: i64,
    /// Kafka's `replica.fetch.wait.max.ms`: how long a leader holds a
    /// follower's fetch waiting for data.
    pub replica_fetch_wait_max_ms: u32,
    /// Kafka's `replica.fetch.backoff.ms`: pause after a failed fetch.
    pub replica_fetch_backoff_ms: i64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            node_id: 1,
            data_dirs: vec![PathBuf::from("./weir-data/node-1")],
            listen: "127.0.0.1:9092".into(),
            advertised_host: "127.0.0.1".into(),
            rack: None,
            controller: "127.0.0.1:9093".into(),
            shards: 0,
            io_memory_bytes_per_shard: 16 << 20,
            durability: Durability::Fsync,
            flush_ms: 1000,
            write_behind_ms: 2,
            socket_request_max_bytes: 100 << 20,
            batch_cache_bytes_per_shard: 128 << 20,
            auto_create_topics_enable: true,
            num_partitions: 1,
            default_replication_factor: 1,
            group_initial_rebalance_delay_ms: 0,
            log_format: "human".into(),
            log_level: "info".into(),
            metrics_listen: "127.0.0.1:9644".into(),
            data_dir_min_free_bytes: 256 << 20,
            replication_listen: String::new(),
            replication_advertised_host: String::new(),
            tls_dir: None,
            heartbeat_interval_ms: 1000,
            replica_lag_time_max_ms: 30_000,
            replica_fetch_wait_max_ms: 500,
            replica_fetch_backoff_ms: 100,
        }
    }
}

impl NodeConfig {
    pub fn load(path: &std::path::Path) -> anyhow::Result<NodeConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config {}: {e}", path.display()))?;
        let config: NodeConfig = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("invalid config {}: {e}", path.display()))?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.data_dirs.is_empty(), "data_dirs must name at least one directory");
        anyhow::ensure!(self.node_id >= 0, "node_id must be >= 0");
        // Certificates from 1_000_000 up name controller quorum members
        // (weir_controller::raft::network::MEMBER_NODE_ID_BASE).
        anyhow::ensure!(
            self.node_id < 1_000_000,
            "node_id must be below 1000000 (ids from there are controller members')"
        );

        anyhow::ensure!(
            self.socket_request_max_bytes >= 1024,
            "socket_request_max_bytes must be at least 1024"
        );
        anyhow::ensure!(self.num_partitions >= 1, "num_partitions must be >= 1");
        anyhow::ensure!(
            matches!(self.log_format.as_str(), "human" | "text" | "json"),
            "log_format {:?} is not one of human, text, json",
            self.log_format
        );
        anyhow::ensure!(
            tracing_subscriber::EnvFilter::try_new(&self.log_level).is_ok(),
            "log_level {:?} is not a valid filter (e.g. info, or info,weir_node::kafka=debug)",
            self.log_level
        );
        anyhow::ensure!(
            self.replication_listen.is_empty() || self.tls_dir.is_some(),
            "replication_listen needs tls_dir (the cluster CA and this node's certificate)"
        );
        anyhow::ensure!(self.heartbeat_interval_ms >= 10, "heartbeat_interval_ms must be >= 10");
        anyhow::ensure!(
            self.replica_lag_time_max_ms >= 100,
            "replica_lag_time_max_ms must be >= 100"
        );
        Ok(())
    }

    /// Shards to run: the configured count, or one per online CPU.
    pub fn shard_count(&self) -> usize {
        if self.shards > 0 {
            self.shards
        } else {
            // The CPUs this process may use (available_parallelism reads the
            // same affinity mask), one shard each.
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_config_loads_and_names_every_option() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ops/deploy/node.toml");
        let config = NodeConfig::load(&path).expect("ops/deploy/node.toml loads");
        let text = std::fs::read_to_string(&path).unwrap();
        // Every option is present (uncommented) or shown commented out.
        let every = toml::Value::try_from(NodeConfig::default()).unwrap();
        for key in every.as_table().unwrap().keys() {
            assert!(
                text.lines().any(|l| {
                    let l = l.trim_start_matches('#').trim_start();
                    l.starts_with(&format!("{key} ")) || l.starts_with(&format!("{key}="))
                }),
                "ops/deploy/node.toml documents {key}"
            );
        }
        assert!(!config.data_dirs.is_empty());
        let bad = NodeConfig { log_format: "xml".into(), ..NodeConfig::default() };
        assert!(bad.validate().is_err());
    }
}
