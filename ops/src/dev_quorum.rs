//! `weir dev --controllers N`: N `weir controller` member processes forming a
//! Raft quorum (each its own OS process, so one can be killed alone) and the
//! node in this process, following whichever member is active.
//!
//! Member i of a dev cluster on Kafka port P listens for nodes on P+100+i,
//! for Raft on P+200+i and for metrics on P+300+i: fixed offsets, so a
//! restart on the same data directory finds the same members. The members
//! share a development CA in DIR/tls; their data and logs are in
//! DIR/controller-i/.

use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The running members; dropping it stops them (SIGTERM, then SIGKILL).
pub struct Members {
    children: Vec<Child>,
    /// Node-facing addresses, comma-separated (the node's `controller`).
    pub addrs: String,
}

impl Members {
    /// Writes each member's config and starts it; returns once every member
    /// has printed its metrics line (it serves nodes from then on). Prints
    /// `metrics: URL` for each member.
    pub fn start(
        count: u16,
        data_dir: &Path,
        kafka_port: u16,
        log_format: &str,
    ) -> Result<Members> {
        if !(2..=9).contains(&count) {
            bail!(
                "--controllers takes 1 to 9 members (3 or 5 for a quorum that survives failures)"
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
        let exe = std::env::current_exe().context("locating the weir binary")?;
        let mut out = Members { children: Vec::new(), addrs: String::new() };
        let mut addrs = Vec::new();
        for i in 1..=count {
            let dir = data_dir.join(format!("controller-{i}"));
            std::fs::create_dir_all(&dir)?;
            let config = dir.join("controller.toml");
            let format = if log_format == "json" { "json" } else { "text" };
            std::fs::write(
                &config,
                format!(
                    "# Written by `weir dev --controllers {count}`.\n\
                     data_dir = {data:?}\nlisten = \"127.0.0.1:{listen}\"\n\
                     metrics_listen = \"127.0.0.1:{metrics}\"\nlog_format = \"{format}\"\n\
                     id = {i}\ntls_dir = {tls:?}\n\n[members]\n{members}",
                    data = dir.join("data"),
                    listen = port(100, i)?,
                    metrics = port(300, i)?,
                    tls = data_dir.join("tls"),
                ),
            )?;
            let log = std::fs::File::create(dir.join("controller.log"))?;
            let mut command = Command::new(&exe);
            // SAFETY: prctl in the forked child before exec touches no
            // shared state. Members get SIGTERM when `weir dev` dies, even
            // by SIGKILL, so none is left running on its own.
            unsafe {
                use std::os::unix::process::CommandExt;
                command.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            let mut child = command
                .arg("controller")
                .arg("--config")
                .arg(&config)
                .stdout(Stdio::piped())
                .stderr(Stdio::from(log))
                .spawn()
                .context("starting a controller member")?;
            let stdout = child.stdout.take().expect("piped");
            out.children.push(child);
            // The member prints its metrics line once it serves nodes.
            let line = BufReader::new(stdout).lines().map_while(Result::ok).next();
            match line {
                Some(l) if l.starts_with("metrics: ") => println!("{l}"),
                _ => bail!(
                    "controller member {i} did not start (log: {})",
                    dir.join("controller.log").display()
                ),
            }
            addrs.push(format!("127.0.0.1:{}", port(100, i)?));
        }
        out.addrs = addrs.join(",");
        Ok(out)
    }
}

impl Drop for Members {
    fn drop(&mut self) {
        for c in &self.children {
            // SAFETY: signalling our own child processes.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        for c in &mut self.children {
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `weir controller --config FILE`: one controller member, as `weir-controller`.
pub fn controller_main(config: &Path) -> Result<()> {
    use weir_controller::service::{ControllerConfig, init_logging, run};
    let config = ControllerConfig::from_file(config)?;
    init_logging(config.log_format, &config.log_level)?;
    run(config)
}
