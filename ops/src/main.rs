//! `weir`: the operator CLI. `weir dev` runs a local single-node cluster (a
//! controller and a node in one process) that a Kafka client can use at once.

use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;

#[derive(Parser)]
#[command(version, about = "Weir operator CLI")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a local development cluster (controller + one node) in the foreground.
    Dev(DevArgs),
}

#[derive(clap::Args)]
struct DevArgs {
    /// Folder for all data (metadata log, partitions). Reused across restarts.
    #[arg(long, default_value = "./weir-data")]
    data_dir: PathBuf,
    /// Port of the Kafka listener on 127.0.0.1.
    #[arg(long, default_value_t = 9092)]
    kafka_port: u16,
    /// Shards (cores) for the node; 0 means one per core.
    #[arg(long, default_value_t = 0)]
    shards: usize,
    /// Durability mode: fsync (default) or write.
    #[arg(long, default_value = "fsync")]
    durability: String,
    /// Log format: human or json.
    #[arg(long, default_value = "human")]
    log_format: String,
    /// Port of the node's Prometheus /metrics endpoint on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 9644)]
    metrics_port: u16,
    /// Free bytes below which a data directory stops accepting appends (reads continue).
    #[arg(long, default_value_t = 256 << 20)]
    min_free_bytes: u64,
}

fn dev(args: DevArgs) -> anyhow::Result<()> {
    weir_node::cli::init_logging(&args.log_format);
    weir_node::cli::install_fail_stop_panic_hook();
    let mut signals = weir_node::cli::catch_signals()?;
    std::fs::create_dir_all(&args.data_dir)?;
    let durability = match args.durability.as_str() {
        "fsync" => weir_node::config::Durability::Fsync,
        "write" => weir_node::config::Durability::Write,
        other => anyhow::bail!("unknown durability mode {other:?}: use fsync or write"),
    };
    let (controller, controller_join) = weir_controller::start_in_process(
        &args.data_dir.join("controller"),
        weir_controller::ConfigDefaults::default(),
    )?;
    let config = weir_node::config::NodeConfig {
        node_id: 1,
        data_dirs: vec![args.data_dir.join("node-1")],
        listen: format!("127.0.0.1:{}", args.kafka_port),
        advertised_host: "127.0.0.1".into(),
        shards: args.shards,
        durability,
        log_format: args.log_format.clone(),
        metrics_listen: format!("127.0.0.1:{}", args.metrics_port),
        data_dir_min_free_bytes: args.min_free_bytes,
        ..Default::default()
    };
    let node = weir_node::node::start(config, controller)?;
    if let Some(addr) = node.metrics_addr {
        println!("metrics: http://{addr}/metrics");
    }
    println!("bootstrap: 127.0.0.1:{}", node.kafka_addr.port());
    std::io::stdout().flush()?;
    let sig = weir_node::cli::wait_for_signal(&mut signals);
    tracing::info!(signal = sig, "shutting down");
    let node_result = node.shutdown();
    controller_join.shutdown()?;
    node_result
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Dev(args) => dev(args),
    }
}
