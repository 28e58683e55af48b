//! Process-level faults on a real cluster: `weir dev --nodes 3
//! --controllers 3` (each node and controller its own process), a topic with
//! replication factor 3 and min.insync.replicas=2, an idempotent librdkafka
//! producer with acks=all writing numbered records the whole time, and:
//!
//! 1. kill -9 of the node leading partition 0;
//! 2. kill -9 of the active controller member;
//! 3. the killed node restarted (it catches up and rejoins the ISR).
//!
//! Then a consumer reads every partition from the start and checks the
//! history against the producer's acknowledgements: no acknowledged record
//! lost or changed, no record twice, and each partition in producer order.
//! The report prints the time each fault took to a new leader.

use std::time::{Duration, Instant};
use weir_tests::cluster::{DevCluster, leaders, pid_of};
use weir_tests::history::{self, HistoryProducer};

const TOPIC: &str = "history";
const PARTITIONS: i32 = 3;

/// Waits until Metadata (asked at any live node) names a leader for
/// `partition` other than `not`; returns it and the time it took.
fn wait_new_leader(dev: &DevCluster, partition: i32, not: i32, since: Instant) -> (i32, Duration) {
    let deadline = Instant::now() + Duration::from_secs(60);
    // Ask a node that is still up.
    let alive = if not == 1 { dev.port + 1 } else { dev.port };
    let addr = format!("127.0.0.1:{alive}");
    loop {
        if let Some(l) =
            leaders(&addr, TOPIC).get(&partition).copied().filter(|&l| l >= 0 && l != not)
        {
            return (l, since.elapsed());
        }
        assert!(Instant::now() < deadline, "no new leader for partition {partition}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A sample without labels from a /metrics endpoint (0 when absent).
fn metric(url: &str, name: &str) -> f64 {
    let text = weir_tests::try_scrape_url(url).unwrap_or_default();
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0.0)
}

/// Which controller member reports itself active.
fn active_member(dev: &DevCluster) -> Option<u16> {
    (1..=3).find(|i| {
        let url = format!("http://127.0.0.1:{}/metrics", dev.port + 300 + i);
        weir_tests::try_scrape_url(&url)
            .is_ok_and(|text| text.contains("\nweir_controller_active 1\n"))
    })
}

#[test]
fn acknowledged_records_survive_leader_and_controller_failures() {
    let dev = DevCluster::start(3, 3);
    let first = dev.bootstrap.split(',').next().unwrap().to_string();
    dev.weir(&[
        "topics",
        "create",
        "--topic",
        TOPIC,
        "--partitions",
        &PARTITIONS.to_string(),
        "--replication-factor",
        "3",
        "--config",
        "min.insync.replicas=2",
    ]);

    let producer = HistoryProducer::start(&dev.bootstrap, TOPIC, PARTITIONS, &[]);
    let wait_acks = |n: usize| producer.wait_acks(n, Duration::from_secs(60), "history");
    wait_acks(3000);

    // 1. kill -9 the leader of partition 0.
    let leader = leaders(&first, TOPIC)[&0];
    let pid = pid_of(&dev.node_config(leader as u16)).expect("leader's process");
    // SAFETY: signalling a process this test's weir dev started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let killed = Instant::now();
    let (new_leader, took) = wait_new_leader(&dev, 0, leader, killed);
    eprintln!("node {leader} killed: partition 0 led by node {new_leader} after {took:?}");
    // The new leader reports the partition under-replicated (ISR 2 of 3).
    let url = format!("http://127.0.0.1:{}/metrics", dev.port + 500 + new_leader as u16);
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(&url, "weir_under_replicated_partitions") < 1.0 {
        assert!(Instant::now() < deadline, "no under-replicated partition reported");
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = producer.acked();
    wait_acks(before + 3000);

    // 2. kill -9 the active controller member; the cluster keeps going.
    let member = active_member(&dev).expect("an active controller");
    let pid = pid_of(&dev.member_config(member)).expect("member's process");
    // SAFETY: as above.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let killed_member = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(30);
    let next = loop {
        if let Some(m) = active_member(&dev).filter(|&m| m != member) {
            break m;
        }
        assert!(Instant::now() < deadline, "no new active controller");
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!(
        "controller {member} killed: member {next} active after {:?}",
        killed_member.elapsed()
    );
    let before = producer.acked();
    wait_acks(before + 3000);

    // 3. restart the killed node: it catches up and rejoins every ISR.
    let mut restarted = dev.start_node(leader as u16);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let isr_full = (0..PARTITIONS).all(|p| {
            let out = dev.weir(&["topics", "describe", "--topic", TOPIC]);
            out.lines().find(|l| l.contains(&format!("Partition: {p}\t"))).is_some_and(|l| {
                l.split("Isr: ").nth(1).is_some_and(|isr| isr.split(',').count() == 3)
            })
        });
        if isr_full {
            break;
        }
        assert!(Instant::now() < deadline, "node {leader} did not rejoin the ISR");
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("node {leader} restarted: back in every ISR");
    // The leaders asked for the expansions; the controller counted elections.
    let expands: f64 = (1..=3u16)
        .map(|i| {
            metric(
                &format!("http://127.0.0.1:{}/metrics", dev.port + 500 + i),
                "weir_isr_expands_total",
            )
        })
        .sum();
    assert!(expands >= 1.0, "ISR expansions counted: {expands}");
    let controller = format!("http://127.0.0.1:{}/metrics", dev.port + 300 + next);
    assert!(metric(&controller, "weir_controller_leader_elections_total") >= 1.0);
    let before = producer.acked();
    wait_acks(before + 2000);

    // 4. controlled shutdown: node `leader` leads partition 0 again
    // (preferred election), then SIGTERM moves its leaderships away before
    // it stops.
    dev.weir(&["elect-leaders", "--preferred", "--all-topic-partitions"]);
    let other = if leader == 1 { 2 } else { 1 };
    let alive = format!("127.0.0.1:{}", dev.port + other - 1);
    let deadline = Instant::now() + Duration::from_secs(20);
    while leaders(&alive, TOPIC)[&0] != leader {
        assert!(Instant::now() < deadline, "preferred leader not restored");
        std::thread::sleep(Duration::from_millis(50));
    }
    let stopping = Instant::now();
    assert!(restarted.stop(), "node {leader} stops cleanly");
    let stopped = Instant::now();
    let (moved_to, after_exit) = wait_new_leader(&dev, 0, leader, stopped);
    eprintln!(
        "node {leader} stopped (controlled shutdown) in {:?}; partition 0 led by node \
         {moved_to} {after_exit:?} after it exited",
        stopped - stopping
    );
    // Without a controlled shutdown the move would wait for the session
    // timeout (4 s in weir dev) after the exit.
    assert!(after_exit < Duration::from_millis(1500), "leadership moved before the exit");
    let before = producer.acked();
    wait_acks(before + 2000);

    let produced = producer.finish();
    let acks = produced.acks;
    eprintln!(
        "sent {}, acknowledged {}, failed {:?}",
        produced.sent,
        acks.len(),
        produced.failures
    );

    // Read everything back and check the history.
    let log = history::read_back(&dev.bootstrap, TOPIC, PARTITIONS, "history-check");
    let stored = history::check(&log, &acks);
    assert!(acks.len() as u64 >= 11_000, "too few acknowledgements: {}", acks.len());
    let unknown = acks.iter().filter(|a| a.1 == history::OFFSET_UNKNOWN).count();
    eprintln!(
        "history checked: {} acknowledged records present ({unknown} acknowledged without an \
         offset), {stored} stored, in order, no duplicates",
        acks.len()
    );
    drop(dev);
}
