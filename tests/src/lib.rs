//! Harness for cross-process tests: runs the real `weir` binary (`weir dev`)
//! on a free port with its own data folder, and tears it down.

pub mod cluster;
pub mod history;
pub mod netns;
pub mod raw;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Path of a binary built from this workspace (next to the test executable).
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} not found: build the workspace binaries first (cargo build --workspace --bins)",
        bin.display()
    );
    bin
}

/// A port nobody is listening on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running `weir dev` process.
pub struct WeirDev {
    child: Option<Child>,
    pub port: u16,
    pub data_dir: PathBuf,
    pub shards: usize,
    _tmp: Option<tempfile::TempDir>,
    stderr_log: PathBuf,
    extra_args: Vec<String>,
    /// The `/metrics` URL the node printed.
    pub metrics_url: Option<String>,
}

impl WeirDev {
    /// Starts `weir dev` in a fresh temporary folder.
    pub fn start() -> WeirDev {
        WeirDev::start_with(&[])
    }

    /// Like [`WeirDev::start`], with extra `weir dev` arguments.
    pub fn start_with(extra_args: &[&str]) -> WeirDev {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let extra: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
        // With --controllers, members bind ports at offsets from the Kafka
        // port: take a base whose whole range is free.
        let mut dev = WeirDev::start_in(&dir, cluster::free_base_port(1, 3), 2, &extra);
        dev._tmp = Some(tmp);
        dev
    }

    /// Starts `weir dev` on `data_dir` and `port` and waits for its bootstrap line.
    pub fn start_in(data_dir: &Path, port: u16, shards: usize, extra_args: &[String]) -> WeirDev {
        let stderr_log = data_dir.with_extension(format!("{port}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr_log)
            .expect("log file");
        let mut child = Command::new(workspace_bin("weir"))
            .args(["dev", "--data-dir"])
            .arg(data_dir)
            .args(["--kafka-port", &port.to_string(), "--shards", &shards.to_string()])
            .args(["--metrics-port", "0"])
            .args(extra_args)
            .env("RUST_LOG", std::env::var("WEIR_TEST_LOG").unwrap_or_else(|_| "info".into()))
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn weir dev");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut metrics_url = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line == format!("bootstrap: 127.0.0.1:{port}") => break,
                Ok(line) if line.starts_with("metrics: ") => {
                    metrics_url = Some(line["metrics: ".len()..].to_string());
                }
                Ok(_) => continue,
                Err(_) => {
                    let _ = child.kill();
                    let log = std::fs::read_to_string(&stderr_log).unwrap_or_default();
                    panic!("weir dev did not print its bootstrap line; log:\n{log}");
                }
            }
        }
        WeirDev {
            child: Some(child),
            port,
            data_dir: data_dir.to_path_buf(),
            shards,
            _tmp: None,
            stderr_log,
            extra_args: extra_args.to_vec(),
            metrics_url,
        }
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGTERM and wait: a clean shutdown. Returns the exit status success.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else { return true };
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: a crash.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Restarts on the same folder and port (after stop or kill9).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill the node first");
        let mut next = WeirDev::start_in(&self.data_dir, self.port, self.shards, &self.extra_args);
        self.child = next.child.take();
        self.metrics_url = next.metrics_url.take();
    }

    /// Fetches the node's `/metrics` page with a plain HTTP/1.1 GET.
    pub fn scrape(&self) -> String {
        scrape_url(self.metrics_url.as_ref().expect("weir dev printed a metrics line"))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }
}

impl Drop for WeirDev {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// GETs a `http://host:port/metrics` URL and returns the body (asserting 200).
pub fn scrape_url(url: &str) -> String {
    try_scrape_url(url).unwrap_or_else(|e| panic!("scraping {url}: {e}"))
}

/// [`scrape_url`] that reports failures (nothing listening, not 200).
pub fn try_scrape_url(url: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://").trim_end_matches("/metrics");
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: weir\r\n\r\n").map_err(|e| e.to_string())?;
    let mut response = String::new();
    s.read_to_string(&mut response).map_err(|e| e.to_string())?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or("not an HTTP response")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(head.to_string());
    }
    Ok(body.to_string())
}

/// Sends SIGTERM to a child process and waits (up to 30 s) for it to exit;
/// `true` when it exited successfully. Kills it if it does not stop.
pub fn terminate(mut child: std::process::Child) -> bool {
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return status.success();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    false
}

/// A consumer assigned every partition `0..partitions` of `topic` from the
/// beginning (no group rebalance), with `settings` on top of the basics.
pub fn assigned_consumer(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
    settings: &[(&str, &str)],
) -> rdkafka::consumer::BaseConsumer {
    use rdkafka::consumer::Consumer;
    let mut config = rdkafka::ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false");
    for (k, v) in settings {
        config.set(*k, *v);
    }
    let consumer: rdkafka::consumer::BaseConsumer = config.create().expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning).expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    consumer
}
