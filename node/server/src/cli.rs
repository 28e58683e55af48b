//! Process plumbing shared by `weir-node`, `weir node` and `weir dev`:
//! logging set-up, waiting for SIGINT/SIGTERM, running a node process.

/// Sets up `tracing` output: human-readable by default, JSON when asked.
/// Levels per module come from `RUST_LOG` (default `info`).
pub fn init_logging(format: &str) {
    init_logging_with(format, "info");
}

/// Installs the log subscriber: `format` is `human`/`text` or `json`; `level`
/// an EnvFilter directive (levels per module), overridden by `RUST_LOG`. An
/// invalid directive falls back to `info` with a warning.
pub fn init_logging_with(format: &str, level: &str) {
    let (filter, bad) = match tracing_subscriber::EnvFilter::try_from_default_env() {
        Ok(f) => (f, None),
        Err(_) => match tracing_subscriber::EnvFilter::try_new(level) {
            Ok(f) => (f, None),
            Err(e) => (tracing_subscriber::EnvFilter::new("info"), Some(e)),
        },
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = if format == "json" { builder.json().try_init() } else { builder.try_init() };
    if let Some(e) = bad {
        tracing::warn!("log_level {level:?} is not a valid filter ({e}); logging at info");
    }
}

/// Makes any panic stop the whole process (fail-stop). A panic means an
/// invariant of our own state broke; a shard thread that died alone would
/// leave a node that accepts connections it never answers. The panic is
/// logged first, then the process aborts so a supervisor restarts it and
/// recovery runs.
pub fn install_fail_stop_panic_hook() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!("fatal: {info}");
        default_hook(info);
        std::process::abort();
    }));
}

/// Catches SIGINT and SIGTERM from now on. Call before starting anything,
/// so a signal that arrives during start-up still leads to a clean stop.
pub fn catch_signals() -> anyhow::Result<signal_hook::iterator::Signals> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    Ok(signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?)
}

/// Blocks until one of the caught signals arrives.
pub fn wait_for_signal(signals: &mut signal_hook::iterator::Signals) -> i32 {
    signals.forever().next().unwrap_or(signal_hook::consts::SIGTERM)
}

/// Runs one node from its config file until SIGINT or SIGTERM: logging,
/// fail-stop panics, the controller link (QUIC with mutual TLS when the
/// config names a `tls_dir`, else TCP), then `announce` once the node serves
/// Kafka (the start-up lines a supervisor waits for), and a clean shutdown.
pub fn run_node_process(
    path: &std::path::Path,
    announce: impl FnOnce(&crate::node::RunningNode) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let config = crate::config::NodeConfig::load(path)?;
    init_logging_with(&config.log_format, &config.log_level);
    install_fail_stop_panic_hook();
    let mut signals = catch_signals()?;
    let controller = match &config.tls_dir {
        Some(tls) => weir_controller::connect_quic(
            &config.controller,
            weir_proto::NodeId(config.node_id),
            tls,
        ),
        None => weir_controller::connect(&config.controller),
    }
    .map_err(|e| anyhow::anyhow!("connecting to controller {}: {e:#}", config.controller))?;
    let node = crate::node::start(config, controller)?;
    announce(&node)?;
    let sig = wait_for_signal(&mut signals);
    tracing::info!(signal = sig, "shutting down");
    node.shutdown()
}
