//! `weir-node --config FILE`: runs one storage node against a separately
//! running `weir-controller`.

use clap::Parser;
use std::path::PathBuf;

/// Weir storage node: a Kafka-compatible, shard-per-core log store.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// TOML configuration file (documented example: ops/deploy/node.toml).
    #[arg(long)]
    config: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = weir_node::config::NodeConfig::load(&args.config)?;
    weir_node::cli::init_logging_with(&config.log_format, &config.log_level);
    weir_node::cli::install_fail_stop_panic_hook();
    let mut signals = weir_node::cli::catch_signals()?;
    let controller = match &config.tls_dir {
        Some(tls) => weir_controller::connect_quic(
            &config.controller,
            weir_proto::NodeId(config.node_id),
            tls,
        ),
        None => weir_controller::connect(&config.controller),
    }
    .map_err(|e| anyhow::anyhow!("connecting to controller {}: {e:#}", config.controller))?;
    let node = weir_node::node::start(config, controller)?;
    println!("kafka: {}", node.kafka_addr);
    if let Some(addr) = node.metrics_addr {
        println!("metrics: http://{addr}/metrics");
    }
    let sig = weir_node::cli::wait_for_signal(&mut signals);
    tracing::info!(signal = sig, "shutting down");
    node.shutdown()
}
