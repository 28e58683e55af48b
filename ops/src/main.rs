//! `weir`: the operator CLI. `weir dev` runs a local cluster that a Kafka
//! client can use at once: by default a controller and a node in one process;
//! with `--controllers` and `--nodes` each member and node in its own process
//! ([`dev_quorum`], [`dev_nodes`]).
//!
//! The other subcommands are tools for operators. Those that talk to a
//! cluster use only the Kafka protocol ([`client`]), so they work against any
//! Kafka-compatible broker:
//!
//! - `topics`, `groups`, `configs`, `cluster`: like `kafka-topics`,
//!   `kafka-consumer-groups`, `kafka-configs`, `kafka-cluster`;
//! - `produce`, `consume`: console producer and consumer;
//! - `plan`: disk and retention sizing (no cluster needed);
//! - `doctor`: checks of this host for running a node (no cluster needed);
//! - `reassign`, `elect-leaders`: replica moves and preferred leaders.
//!
//! Tables go to stdout for people; `--output json` prints one JSON document
//! for scripts (`consume` prints one JSON object per record, one per line).
//! Errors go to stderr with a hint, and the exit status is 1.

mod client;
mod cluster;
mod configs;
mod console;
mod dev_nodes;
mod dev_quorum;
mod doctor;
mod groups;
mod output;
mod plan;
mod reassign;
mod topics;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;

#[derive(Parser)]
#[command(version, about = "Weir operator CLI")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Kafka bootstrap address, host:port, of any broker in the cluster.
    #[arg(
        long = "bootstrap-server",
        alias = "bootstrap",
        global = true,
        env = "WEIR_BOOTSTRAP",
        default_value = "127.0.0.1:9092"
    )]
    bootstrap: String,
    /// Output format: table (for people) or json (for scripts).
    #[arg(long, global = true, value_enum, default_value = "table")]
    output: output::Format,
}

/// What every subcommand gets from the global flags.
pub struct Ctx {
    pub bootstrap: String,
    pub output: output::Format,
}

#[derive(Subcommand)]
enum Command {
    /// Run a local development cluster (a controller and one node, or --nodes N) in the foreground.
    Dev(DevArgs),
    /// Create, list, describe, alter and delete topics.
    #[command(subcommand)]
    Topics(topics::TopicsCommand),
    /// List, describe, delete consumer groups and reset their offsets.
    #[command(subcommand)]
    Groups(groups::GroupsCommand),
    /// Describe and alter configs of topics and nodes.
    #[command(subcommand)]
    Configs(configs::ConfigsCommand),
    /// Cluster-wide views.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Produce lines from stdin as records.
    Produce(console::ProduceArgs),
    /// Consume records and print them, one per line.
    Consume(console::ConsumeArgs),
    /// Size a cluster: disk per node and maximum retention.
    Plan(plan::PlanArgs),
    /// Check this host for running a node (kernel, io_uring, memlock, disks).
    Doctor(doctor::DoctorArgs),
    /// Move partition replicas between nodes (AlterPartitionReassignments).
    Reassign(reassign::ReassignArgs),
    /// Move leadership back to the preferred replicas (ElectLeaders).
    ElectLeaders(reassign::ElectArgs),
    /// Run one controller member, as `weir-controller --config FILE` does
    /// (used by `weir dev --controllers N`).
    #[command(hide = true)]
    Controller {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Run one storage node, as `weir-node --config FILE` does, printing its
    /// metrics and Kafka addresses (used by `weir dev --nodes N`).
    #[command(hide = true)]
    Node {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

/// Parses `key=value`.
pub fn parse_kv(s: &str) -> Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => bail!("expected key=value, got {s:?}"),
    }
}

#[derive(clap::Args)]
struct DevArgs {
    /// Folder for all data (metadata log, partitions). Reused across restarts.
    #[arg(long, default_value = "./weir-data")]
    data_dir: PathBuf,
    /// Port of the Kafka listener on 127.0.0.1; with --nodes N, node i's is
    /// PORT+i-1 (and the other ports of the cluster are offsets from PORT).
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
    /// Log levels: a level, or levels per module (e.g. info,weir_node::kafka=debug). RUST_LOG wins.
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Port of the node's Prometheus /metrics endpoint on 127.0.0.1 (0 picks a
    /// free one) [default: 9644]. Only for one node: with --nodes N, node i's
    /// is KAFKA_PORT+500+i.
    #[arg(long)]
    metrics_port: Option<u16>,
    /// Free bytes below which a data directory stops accepting appends (reads continue).
    #[arg(long, default_value_t = 256 << 20)]
    min_free_bytes: u64,
    /// Controller members: 1 runs the controller in this process (in a
    /// `weir controller` process with --nodes above 1); 3 or 5 run a Raft
    /// quorum of `weir controller` processes (one can be killed alone).
    #[arg(long, default_value_t = 1)]
    controllers: u16,
    /// Storage nodes, 1 to 9: 1 runs the node in this process; more run each
    /// node as a `weir node` process (one can be killed alone).
    #[arg(long, default_value_t = 1)]
    nodes: u16,
}

/// The node's `/metrics` port when `weir dev` runs one node.
const DEV_METRICS_PORT: u16 = 9644;

fn dev(args: DevArgs) -> anyhow::Result<()> {
    weir_node::cli::init_logging_with(&args.log_format, &args.log_level);
    weir_node::cli::install_fail_stop_panic_hook();
    let mut signals = weir_node::cli::catch_signals()?;
    if !(1..=dev_nodes::NODES_MAX).contains(&args.nodes) {
        bail!("--nodes takes 1 to {} nodes", dev_nodes::NODES_MAX);
    }
    std::fs::create_dir_all(&args.data_dir)?;
    let durability = match args.durability.as_str() {
        "fsync" => weir_node::config::Durability::Fsync,
        "write" => weir_node::config::Durability::Write,
        other => anyhow::bail!("unknown durability mode {other:?}: use fsync or write"),
    };
    if args.nodes > 1 {
        return dev_nodes::run(&args, durability, &mut signals);
    }
    // One member runs in this process; a quorum runs as member processes.
    let (controller, controller_join, members) = if args.controllers <= 1 {
        let (handle, join) = weir_controller::start_in_process(
            &args.data_dir.join("controller"),
            weir_controller::ConfigDefaults::default(),
        )?;
        (handle, Some(join), None)
    } else {
        let members = dev_quorum::Members::start(
            args.controllers,
            &args.data_dir,
            args.kafka_port,
            &args.log_format,
        )?;
        // The members serve QUIC with mutual TLS (their CA is DIR/tls).
        let handle = weir_controller::connect_quic(
            &members.addrs,
            weir_proto::NodeId(1),
            &args.data_dir.join("tls"),
        )
        .map_err(|e| anyhow::anyhow!("connecting to the controller quorum: {e:#}"))?;
        (handle, None, Some(members))
    };
    let config = weir_node::config::NodeConfig {
        node_id: 1,
        data_dirs: vec![args.data_dir.join("node-1")],
        listen: format!("127.0.0.1:{}", args.kafka_port),
        advertised_host: "127.0.0.1".into(),
        shards: args.shards,
        durability,
        log_format: args.log_format.clone(),
        log_level: args.log_level.clone(),
        metrics_listen: format!("127.0.0.1:{}", args.metrics_port.unwrap_or(DEV_METRICS_PORT)),
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
    if let Some(join) = controller_join {
        join.shutdown()?;
    }
    drop(members);
    node_result
}

fn main() {
    let cli = Cli::parse();
    let ctx = Ctx { bootstrap: cli.bootstrap, output: cli.output };
    let result = match cli.command {
        Command::Dev(args) => dev(args),
        Command::Topics(cmd) => topics::run(&ctx, cmd),
        Command::Groups(cmd) => groups::run(&ctx, cmd),
        Command::Configs(cmd) => configs::run(&ctx, cmd),
        Command::Cluster(cmd) => cluster::run(&ctx, cmd),
        Command::Produce(args) => console::produce(&ctx, args),
        Command::Consume(args) => console::consume(&ctx, args),
        Command::Plan(args) => plan::run(&ctx, args),
        Command::Doctor(args) => doctor::run(&ctx, args),
        Command::Reassign(args) => reassign::reassign(&ctx, args),
        Command::ElectLeaders(args) => reassign::elect_leaders(&ctx, args),
        Command::Controller { config } => dev_quorum::controller_main(&config),
        Command::Node { config } => dev_nodes::node_main(&config),
    };
    match result {
        Ok(()) => {}
        Err(e) if e.downcast_ref::<doctor::ChecksFailed>().is_some() => std::process::exit(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
