//! `weir dev --nodes 3 --controllers 3`: three node processes and three
//! controller member processes. Every node's Metadata lists all three
//! brokers, every node serves `/metrics`, topics work through node 1, kill -9
//! of one node leaves the others (and `weir dev`) serving, and SIGTERM to
//! `weir dev` stops every process it started.
//!
//! Nothing here needs replication between nodes: topics are created with
//! replication factor 1.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use weir_tests::cluster::{DevCluster, brokers, leaders, pid_of, weir_cli as weir};

const NODES: u16 = 3;
const MEMBERS: u16 = 3;

#[test]
fn dev_cluster_of_node_processes() {
    let mut dev = DevCluster::start(NODES, MEMBERS);
    let p = dev.port;
    let addrs: Vec<String> = (0..NODES).map(|i| format!("127.0.0.1:{}", p + i)).collect();
    assert_eq!(dev.bootstrap, addrs.join(","), "the bootstrap line names every node");

    // Every node's Metadata lists every broker at its own port.
    let expected: BTreeMap<i32, (String, i32)> =
        (1..=NODES).map(|i| (i32::from(i), ("127.0.0.1".into(), i32::from(p + i - 1)))).collect();
    for addr in &addrs {
        assert_eq!(brokers(addr), expected, "brokers in {addr}'s Metadata");
    }

    // Each member and node printed its metrics URL, and each node's answers.
    assert_eq!(dev.metrics_urls.len(), usize::from(MEMBERS + NODES), "{:?}", dev.metrics_urls);
    for i in 1..=NODES {
        let url = format!("http://127.0.0.1:{}/metrics", p + 500 + i);
        assert!(dev.metrics_urls.contains(&url), "{url} in {:?}", dev.metrics_urls);
        let body = weir_tests::scrape_url(&url);
        assert!(body.contains(&format!("node_id=\"{i}\"")), "node {i}'s metrics:\n{body}");
    }

    // A topic with replication factor 1 through node 1; its partitions are
    // spread over the nodes, so producing and consuming reaches them all.
    let b = &addrs[0];
    weir(
        b,
        &[
            "topics",
            "create",
            "--topic",
            "spread",
            "--partitions",
            "6",
            "--replication-factor",
            "1",
        ],
        "",
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !addrs.iter().all(|a| {
        let l = leaders(a, "spread");
        l.len() == 6 && l.values().all(|leader| *leader > 0)
    }) {
        assert!(Instant::now() < deadline, "every node learns the topic's leaders");
        std::thread::sleep(Duration::from_millis(100));
    }
    let lines: String = (0..60).map(|i| format!("r-{i}\n")).collect();
    weir(b, &["produce", "--topic", "spread"], &lines);
    let mut got: Vec<String> =
        weir(b, &["consume", "--topic", "spread", "--from-beginning", "--max-messages", "60"], "")
            .lines()
            .map(str::to_string)
            .collect();
    got.sort();
    let mut want: Vec<String> = (0..60).map(|i| format!("r-{i}")).collect();
    want.sort();
    assert_eq!(got, want, "every record produced through node 1 is read back");

    // kill -9 of node 3 leaves weir dev and nodes 1 and 2 serving.
    let node_pids: Vec<u32> = (1..=NODES)
        .map(|i| pid_of(&dev.node_config(i)).unwrap_or_else(|| panic!("node {i}'s process")))
        .collect();
    let member_pids: Vec<u32> = (1..=MEMBERS)
        .map(|i| pid_of(&dev.member_config(i)).unwrap_or_else(|| panic!("member {i}'s process")))
        .collect();
    // SAFETY: signalling a process this test's weir dev started.
    unsafe { libc::kill(node_pids[2] as i32, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while pid_of(&dev.node_config(3)).is_some() {
        assert!(Instant::now() < deadline, "node 3 is gone after kill -9");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(dev.running(), "weir dev outlives node 3; {}", dev.logs());
    for i in 1..=2 {
        assert!(pid_of(&dev.node_config(i)).is_some(), "node {i} outlives node 3");
        let listed = brokers(&addrs[usize::from(i - 1)]);
        for id in 1..=2 {
            assert_eq!(listed.get(&id), expected.get(&id), "node {i} lists broker {id}");
        }
    }

    // SIGTERM to weir dev stops every process it started.
    let child = dev.take_child().unwrap();
    assert!(weir_tests::terminate(child), "weir dev stops cleanly; {}", dev.logs());
    for (i, pid) in node_pids.iter().enumerate() {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&cmdline).contains("node.toml"),
            "node {} (pid {pid}) outlived weir dev",
            i + 1
        );
    }
    for (i, pid) in member_pids.iter().enumerate() {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&cmdline).contains("controller.toml"),
            "controller member {} (pid {pid}) outlived weir dev",
            i + 1
        );
    }
}
