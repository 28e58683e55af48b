//! The replication throttle (`weir reassign --execute --throttle`, Kafka's
//! `*.replication.throttled.rate` and `*.replication.throttled.replicas`)
//! holds a new replica's catch-up to the configured rate: the same amount of
//! data moved without a throttle and with 1 MB/s, on a real `weir dev
//! --nodes 3` cluster, and the throttled move takes at least the time the
//! rate allows and longer than the unthrottled one.

use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, producer::DefaultProducerContext};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use weir_tests::cluster::{DevCluster, leaders};

/// Bytes of record values per topic.
const DATA_BYTES: usize = 3 << 20;
const RATE_BYTES_PER_SEC: u64 = 1_000_000;

/// Writes `DATA_BYTES` of 1 KiB records to partition 0 of `topic`.
fn fill(bootstrap: &str, topic: &str) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "1")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let value = vec![b'x'; 1024];
    for _ in 0..DATA_BYTES / 1024 {
        let mut record = BaseRecord::<(), [u8]>::to(topic).partition(0).payload(&value[..]);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60)).expect("all records written");
}

fn plan(dir: &Path, topic: &str, replicas: &[i32]) -> PathBuf {
    let path = dir.join(format!("{topic}.json"));
    let doc = serde_json::json!({
        "version": 1,
        "partitions": [{"topic": topic, "partition": 0, "replicas": replicas}],
    });
    std::fs::write(&path, doc.to_string()).unwrap();
    path
}

/// Executes the move (with `throttle` if given) and returns how long it
/// took until `--verify` reports it complete.
fn reassign(
    dev: &DevCluster,
    dir: &Path,
    topic: &str,
    replicas: &[i32],
    throttle: Option<u64>,
) -> Duration {
    let file = plan(dir, topic, replicas);
    let file = file.to_str().unwrap();
    let rate = throttle.map(|t| t.to_string());
    let mut args = vec!["reassign", "--execute", file];
    if let Some(rate) = &rate {
        args.extend(["--throttle", rate]);
    }
    let started = Instant::now();
    dev.weir(&args);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = dev.weir(&["reassign", "--verify", file]);
        if !out.contains("in progress") {
            return started.elapsed();
        }
        assert!(Instant::now() < deadline, "the move did not complete: {out}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn throttled_catch_up_follows_the_configured_rate() {
    let dev = DevCluster::start(3, 1);
    let dir = tempfile::tempdir().unwrap();
    for topic in ["free", "held"] {
        dev.weir(&[
            "topics",
            "create",
            "--topic",
            topic,
            "--partitions",
            "1",
            "--replication-factor",
            "1",
        ]);
    }
    let node1 = format!("127.0.0.1:{}", dev.port);
    let first = |topic: &str| leaders(&node1, topic)[&0];
    let (free_on, held_on) = (first("free"), first("held"));
    fill(&dev.bootstrap, "free");
    fill(&dev.bootstrap, "held");

    // The same move without and with a throttle: each topic gains a replica.
    let other = |n: i32| if n == 3 { 1 } else { n + 1 };
    let free = reassign(&dev, dir.path(), "free", &[free_on, other(free_on)], None);
    let held =
        reassign(&dev, dir.path(), "held", &[held_on, other(held_on)], Some(RATE_BYTES_PER_SEC));
    let at_rate = Duration::from_secs_f64(DATA_BYTES as f64 / RATE_BYTES_PER_SEC as f64);
    eprintln!(
        "{} MiB caught up in {free:?} unthrottled, {held:?} at {RATE_BYTES_PER_SEC} B/s \
         (the rate allows {at_rate:?})",
        DATA_BYTES >> 20
    );
    // One second's worth may pass at once (the quota's bucket).
    assert!(held + Duration::from_secs(1) >= at_rate, "faster than the throttle allows");
    // And the unthrottled move was not simply as slow (a loaded machine).
    assert!(held > free, "the throttle made no difference: {held:?} vs {free:?}");
    assert!(free < at_rate, "the unthrottled move was too slow to compare: {free:?}");
}
