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
    weir_node::cli::run_node_process(&args.config, |node| {
        println!("kafka: {}", node.kafka_addr);
        if let Some(addr) = node.metrics_addr {
            println!("metrics: http://{addr}/metrics");
        }
        Ok(())
    })
}
