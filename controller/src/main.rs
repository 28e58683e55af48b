//! `weir-controller --config FILE`: serves cluster metadata to nodes until
//! SIGINT or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use weir_controller::service::{ControllerConfig, init_logging, run};

/// Weir's metadata controller: a single process, or one member of a Raft
/// quorum when the config has a [members] table.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The TOML config file (data_dir, listen, log_format, log_level, defaults,
    /// snapshot_every_records, metrics_listen; for a quorum member id,
    /// members, raft_listen, tls_dir). Documented example:
    /// ops/deploy/controller.toml.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match ControllerConfig::from_file(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("weir-controller: {e:#}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = init_logging(config.log_format, &config.log_level) {
        eprintln!("weir-controller: {e:#}");
        return ExitCode::from(2);
    }
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "weir-controller failed");
            eprintln!("weir-controller: {e:#}");
            ExitCode::FAILURE
        }
    }
}
