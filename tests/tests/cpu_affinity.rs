//! Shards are pinned only to the CPUs the process may use (systemd's
//! `CPUAffinity=`, cgroup cpusets, `taskset`), and asking for more shards
//! than that fails at start with a clear message.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use weir_tests::{free_port, terminate, workspace_bin};

fn weir_dev_under_taskset(cpu: &str, shards: &str, dir: &std::path::Path) -> Command {
    let mut c = Command::new("taskset");
    c.args(["-c", cpu])
        .arg(workspace_bin("weir"))
        .args(["dev", "--data-dir"])
        .arg(dir)
        .args(["--kafka-port", &free_port().to_string(), "--shards", shards])
        .args(["--metrics-port", "0"]);
    c
}

/// `Cpus_allowed_list` of each `weir-shard-*` thread of `pid`.
fn shard_affinities(pid: u32) -> Vec<String> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        let name = status.lines().find_map(|l| l.strip_prefix("Name:\t")).unwrap_or("");
        if name.starts_with("weir-shard") {
            let cpus = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:\t"));
            out.push(cpus.unwrap_or("").to_string());
        }
    }
    out
}

#[test]
fn shards_stay_on_the_cpus_the_process_may_use() {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let last = (cpus - 1).to_string();
    let dir = tempfile::tempdir().unwrap();

    // One shard on the last CPU only.
    let mut child = weir_dev_under_taskset(&last, "1", &dir.path().join("one"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("taskset runs weir dev");
    let stdout = child.stdout.take().unwrap();
    let ready =
        BufReader::new(stdout).lines().map_while(Result::ok).any(|l| l.starts_with("bootstrap: "));
    assert!(ready, "weir dev started under taskset");
    let deadline = Instant::now() + Duration::from_secs(10);
    let affinities = loop {
        let a = shard_affinities(child.id());
        if !a.is_empty() || Instant::now() > deadline {
            break a;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // The shard's executor thread (and glommio's helper threads named after it).
    assert!(!affinities.is_empty(), "shard threads found");
    assert!(affinities.iter().all(|a| *a == last), "pinned to CPU {last} only: {affinities:?}");
    assert!(terminate(child), "clean shutdown");

    // More shards than allowed CPUs: a clear error, no start.
    let out = weir_dev_under_taskset(&last, "2", &dir.path().join("two"))
        .output()
        .expect("taskset runs weir dev");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 shards need 2 CPUs, but this process may use 1"), "{err}");
}
