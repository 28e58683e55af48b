//! Process plumbing shared by `weir-node` and `weir dev`: logging set-up and
//! waiting for SIGINT/SIGTERM.

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
