//! `weir dev --controllers N`: N `weir controller` member processes forming a
//! Raft quorum (each its own OS process, so one can be killed alone) and the
//! node in this process, following whichever member is active. With
//! `--nodes` above 1 the controller always runs as member processes, a
//! single one (no quorum) for `--controllers 1`.
//!
//! Member i of a dev cluster on Kafka port P listens for nodes on P+100+i,
//! for Raft on P+200+i and for metrics on P+300+i: fixed offsets, so a
//! restart on the same data directory finds the same members. The members
//! share a development CA in DIR/tls; their data and logs are in
//! DIR/controller-i/.
//!
//! [`DevProcess`] is the child-process plumbing of every process `weir dev`
//! starts, members and nodes ([`crate::dev_nodes`]) alike.

use anyhow::{Context, Result, bail};
use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a started process may take to print each start-up line.
const START_LINE_WAIT: Duration = Duration::from_secs(60);
/// How long stopping processes get after SIGTERM before they are killed.
/// A node's clean stop writes its shutdown marker; a member's writes a
/// snapshot: both take well under this.
const STOP_WAIT: Duration = Duration::from_secs(15);

/// A child process of `weir dev` (a controller member or a node).
///
/// It runs the `weir` binary itself with a hidden subcommand, in its own
/// process group (a Ctrl-C in the terminal reaches `weir dev` alone, which
/// then stops its children in order), with PR_SET_PDEATHSIG(SIGTERM) so it
/// dies with `weir dev` even when that is SIGKILLed. Its stderr goes to its
/// log file; a thread reads its stdout and hands over the lines (the
/// start-up lines `weir dev` waits for), and keeps draining it after that.
///
/// Dropping it stops it (SIGTERM, then SIGKILL after [`STOP_WAIT`]); use
/// [`stop_all`] to stop several at once.
pub struct DevProcess {
    /// For messages: `node 2`, `controller member 1`.
    name: String,
    log: PathBuf,
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Set once the process has been reaped: from then on its pid may name
    /// another process and must not be signalled.
    status: Option<ExitStatus>,
}

impl DevProcess {
    /// Starts `weir ARGS`, stderr appended to `log`.
    pub fn spawn(name: &str, args: &[&OsStr], log: &Path) -> Result<DevProcess> {
        let exe = std::env::current_exe().context("locating the weir binary")?;
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let parent = std::process::id();
        let mut command = Command::new(exe);
        // SAFETY: setpgid, prctl and getppid in the forked child before exec
        // are async-signal-safe and touch no shared state; the error paths
        // allocate nothing.
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(move || {
                if libc::setpgid(0, 0) != 0
                    || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                // `weir dev` died before the prctl: nobody would stop us.
                if libc::getppid() as u32 != parent {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
        let mut child = command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("{name} stdout"))
            .spawn(move || {
                // Keeps reading after `weir dev` stops listening, so the
                // child never blocks on a full pipe.
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            })
            .context("starting a stdout reader thread")?;
        Ok(DevProcess { name: name.into(), log: log.into(), child, lines, status: None })
    }

    /// Waits for the process's next stdout line, which must start with
    /// `prefix`, and returns it.
    pub fn expect_line(&mut self, prefix: &str) -> Result<String> {
        match self.lines.recv_timeout(START_LINE_WAIT) {
            Ok(line) if line.starts_with(prefix) => Ok(line),
            Ok(line) => bail!(
                "{} printed {line:?} where a {prefix:?} line was expected (log: {})",
                self.name,
                self.log.display()
            ),
            Err(mpsc::RecvTimeoutError::Timeout) => bail!(
                "{} printed no {prefix:?} line within {} s (log: {})",
                self.name,
                START_LINE_WAIT.as_secs(),
                self.log.display()
            ),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let how = match self.exited() {
                    Some(status) => format!("exited ({status})"),
                    None => "closed its stdout".into(),
                };
                bail!("{} {how} while starting (log: {})", self.name, self.log.display())
            }
        }
    }

    /// The exit status, once the process has exited (it is reaped then).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn log(&self) -> &Path {
        &self.log
    }
}

/// Stops `processes` together: SIGTERM to each, up to [`STOP_WAIT`] for all
/// of them to exit, then SIGKILL for any still running.
pub fn stop_all(processes: &mut [DevProcess]) {
    for p in processes.iter_mut() {
        if p.exited().is_none() {
            // SAFETY: signalling our own child, not yet reaped (so its pid
            // is still its own).
            unsafe { libc::kill(p.child.id() as i32, libc::SIGTERM) };
        }
    }
    let deadline = Instant::now() + STOP_WAIT;
    for p in processes.iter_mut() {
        while p.exited().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if p.status.is_none() {
            tracing::warn!(process = p.name, "did not stop within {STOP_WAIT:?}; killing it");
            let _ = p.child.kill();
            p.status = p.child.wait().ok();
        }
    }
}

impl Drop for DevProcess {
    fn drop(&mut self) {
        stop_all(std::slice::from_mut(self));
    }
}

/// The running members; dropping it stops them (SIGTERM, then SIGKILL).
pub struct Members {
    processes: Vec<DevProcess>,
    /// Node-facing addresses, comma-separated (the node's `controller`).
    pub addrs: String,
}

impl Members {
    /// Writes each member's config and starts it; returns once every member
    /// has printed its metrics line (it serves nodes from then on). Prints
    /// `metrics: URL` for each member.
    ///
    /// `count` 1 is one `weir controller` process without a quorum (used
    /// when the nodes run as processes too); 2 to 9 form a Raft quorum.
    pub fn start(
        count: u16,
        data_dir: &Path,
        kafka_port: u16,
        log_format: &str,
    ) -> Result<Members> {
        if !(1..=9).contains(&count) {
            bail!(
                "--controllers takes 1 to 9 members (3 or 5 for a quorum that survives failures)"
            );
        }
        if kafka_port == 0 {
            bail!(
                "controller member processes need a fixed --kafka-port: their ports are offsets from it"
            );
        }
        let port = |offset: u16, i: u16| -> Result<u16> {
            kafka_port.checked_add(offset + i).with_context(|| {
                format!("--kafka-port {kafka_port} leaves no room for member ports")
            })
        };
        let mut members = String::new();
        for i in 1..=count {
            members.push_str(&format!("{i} = \"127.0.0.1:{}\"\n", port(200, i)?));
        }
        let tls = toml_string(&data_dir.join("tls"))?;
        let format = if log_format == "json" { "json" } else { "text" };
        let mut out = Members { processes: Vec::new(), addrs: String::new() };
        let mut addrs = Vec::new();
        for i in 1..=count {
            let dir = data_dir.join(format!("controller-{i}"));
            std::fs::create_dir_all(&dir)?;
            let config = dir.join("controller.toml");
            // One member alone is the single-process controller: no Raft.
            // Either way nodes reach it over QUIC with mutual TLS.
            let quorum = if count > 1 {
                format!("id = {i}\ntls_dir = {tls}\n\n[members]\n{members}")
            } else {
                format!("tls_dir = {tls}\n")
            };
            std::fs::write(
                &config,
                format!(
                    "# Written by `weir dev` at every start.\n\
                     data_dir = {data}\nlisten = \"127.0.0.1:{listen}\"\n\
                     metrics_listen = \"127.0.0.1:{metrics}\"\nlog_format = \"{format}\"\n\
                     # A dev cluster fails over faster than production (9000 ms).\n\
                     node_session_timeout_ms = 4000\n{quorum}",
                    data = toml_string(&dir.join("data"))?,
                    listen = port(100, i)?,
                    metrics = port(300, i)?,
                ),
            )?;
            let argv = [OsStr::new("controller"), OsStr::new("--config"), config.as_os_str()];
            let name = format!("controller member {i}");
            out.processes.push(DevProcess::spawn(&name, &argv, &dir.join("controller.log"))?);
            addrs.push(format!("127.0.0.1:{}", port(100, i)?));
        }
        // Started together; each prints its metrics line once it serves nodes.
        for p in &mut out.processes {
            println!("{}", p.expect_line("metrics: ")?);
        }
        out.addrs = addrs.join(",");
        Ok(out)
    }
}

impl Drop for Members {
    fn drop(&mut self) {
        stop_all(&mut self.processes);
    }
}

/// `path` as a TOML basic string, quoted and escaped.
pub fn toml_string(path: &Path) -> Result<String> {
    let s = path.to_str().with_context(|| format!("{} is not UTF-8", path.display()))?;
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(out)
}

/// `weir controller --config FILE`: one controller member, as `weir-controller`.
pub fn controller_main(config: &Path) -> Result<()> {
    use weir_controller::service::{ControllerConfig, init_logging, run};
    let config = ControllerConfig::from_file(config)?;
    init_logging(config.log_format, &config.log_level)?;
    run(config)
}
