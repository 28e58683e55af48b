//! The `weir-controller` process: its config file, logging, and the serve
//! loop that runs until SIGINT/SIGTERM. [`run_until`] is the same loop for
//! hosts that own the signals (e.g. `weir dev`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use crate::config::ConfigDefaults;
use crate::handle::{ControllerOptions, start_in_process_with};
use crate::remote::serve_until;

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
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerConfig {
    /// Folder for the metadata log and snapshots; created if missing. One
    /// controller per folder (it is locked while in use).
    pub data_dir: PathBuf,
    /// `host:port` nodes connect to. Default `127.0.0.1:9093`.
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
    /// `host:port` of the Prometheus `/metrics` endpoint. Default
    /// `127.0.0.1:9645`; port 0 picks a free one; an empty string turns it off.
    #[serde(default = "default_metrics_listen")]
    pub metrics_listen: String,
}

fn default_metrics_listen() -> String {
    "127.0.0.1:9645".into()
}

impl ControllerConfig {
    /// Reads and parses a TOML config file.
    pub fn from_file(path: &std::path::Path) -> anyhow::Result<ControllerConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
    }
}

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
pub fn run_until(config: ControllerConfig, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let options = ControllerOptions {
        snapshot_every_records: config.snapshot_every_records.max(1),
        ..ControllerOptions::default()
    };
    let (handle, join) = start_in_process_with(&config.data_dir, config.defaults.clone(), options)?;
    let listener = std::net::TcpListener::bind(&config.listen)
        .with_context(|| format!("listening on {}", config.listen))?;
    tracing::info!(listen = %listener.local_addr()?, "controller serving");
    if !config.metrics_listen.is_empty() {
        let metrics = std::net::TcpListener::bind(&config.metrics_listen)
            .with_context(|| format!("metrics_listen {}", config.metrics_listen))?;
        let addr = metrics.local_addr()?;
        let image_of = handle.clone();
        // One member today: this process is the active controller.
        crate::metrics::serve_http(metrics, "ctl-metrics", move || {
            crate::metrics::render(&image_of.image(), true)
        })?;
        tracing::info!(%addr, "metrics endpoint");
        println!("metrics: http://{addr}/metrics");
    }
    let serve_stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = serve_stop.clone();
        std::thread::Builder::new()
            .name("ctl-accept".into())
            .spawn(move || serve_until(listener, handle, &stop))?
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
        Ok(Err(e)) => return Err(e).context("serving nodes"),
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
        c.defaults.validated().expect("its topic defaults are valid");
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
            metrics_listen: "127.0.0.1:0".into(),
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
}
