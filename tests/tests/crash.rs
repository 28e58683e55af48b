//! kill -9 during an acks=all produce loses no acknowledged record.

use rdkafka::consumer::Consumer;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use weir_tests::WeirDev;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_acks_all_produce_keeps_every_acknowledged_record() {
    kill9_during_produce(&[]).await;
}

/// `write` durability acknowledges once the O_DIRECT write completed: the
/// data is on the device, so a process crash (unlike power loss) keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_in_write_durability_keeps_every_acknowledged_record() {
    kill9_during_produce(&["--durability", "write"]).await;
}

async fn kill9_during_produce(args: &[&str]) {
    let mut dev = WeirDev::start_with(args);
    let bootstrap = dev.bootstrap();
    const PARTITIONS: i32 = 3;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "5000")
        .create()
        .expect("producer");
    // Auto-created by the first produce's metadata request (3 partitions are
    // asked for explicitly below through per-partition sends after creation).
    let admin: rdkafka::admin::AdminClient<_> =
        ClientConfig::new().set("bootstrap.servers", &bootstrap).create().expect("admin");
    admin
        .create_topics(
            &[rdkafka::admin::NewTopic::new(
                "crash",
                PARTITIONS,
                rdkafka::admin::TopicReplication::Fixed(1),
            )],
            &rdkafka::admin::AdminOptions::new(),
        )
        .await
        .expect("create")
        .into_iter()
        .for_each(|r| {
            r.expect("created");
        });

    let mut acked: BTreeMap<i32, Vec<(i64, u64)>> = BTreeMap::new();
    // A separate thread kills the node while windows of produces are in flight.
    let pid = dev.pid() as i32;
    let killed = Arc::new(AtomicBool::new(false));
    let killer = {
        let killed = killed.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(2500));
            // SAFETY: signalling our own child process.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed.store(true, Ordering::SeqCst);
        })
    };
    let mut seq = 0u64;
    while !killed.load(Ordering::SeqCst) {
        let mut window = Vec::with_capacity(2000);
        for _ in 0..2000 {
            let value = seq.to_string();
            let partition = (seq % PARTITIONS as u64) as i32;
            let fut = producer
                .send_result(
                    FutureRecord::<(), _>::to("crash").partition(partition).payload(&value),
                )
                .expect("queue");
            window.push((seq, fut));
            seq += 1;
        }
        for (s, fut) in window {
            if let Ok(Ok(d)) = fut.await {
                acked.entry(d.partition).or_default().push((d.offset, s));
            }
        }
    }
    killer.join().unwrap();
    dev.kill9();
    drop(producer);
    let acked_count: usize = acked.values().map(|v| v.len()).sum();
    assert!(acked_count > 1000, "the test acknowledged too little to mean anything: {acked_count}");

    dev.restart();
    let consumer =
        weir_tests::assigned_consumer(&bootstrap, "crash-check", "crash", PARTITIONS, &[]);
    let mut ends = BTreeMap::new();
    for p in 0..PARTITIONS {
        let (_, hi) =
            consumer.fetch_watermarks("crash", p, Duration::from_secs(10)).expect("watermarks");
        ends.insert(p, hi);
    }
    let total: i64 = ends.values().sum();
    let mut stored: BTreeMap<i32, Vec<(i64, u64)>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut n = 0;
    while n < total && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.expect("consume");
            let v: u64 = std::str::from_utf8(m.payload().unwrap()).unwrap().parse().unwrap();
            stored.entry(m.partition()).or_default().push((m.offset(), v));
            n += 1;
        }
    }
    assert_eq!(n, total, "read the whole log back");
    for p in 0..PARTITIONS {
        let log = stored.get(&p).cloned().unwrap_or_default();
        // Dense offsets, values strictly increasing: order kept, no duplicates.
        for (i, (offset, _)) in log.iter().enumerate() {
            assert_eq!(*offset, i as i64, "partition {p}: offsets dense");
        }
        let values: Vec<u64> = log.iter().map(|r| r.1).collect();
        assert!(values.windows(2).all(|w| w[0] < w[1]), "partition {p}: in order, no duplicates");
        let present: BTreeSet<(i64, u64)> = log.into_iter().collect();
        for rec in acked.get(&p).cloned().unwrap_or_default() {
            assert!(
                present.contains(&rec),
                "partition {p}: acknowledged record {rec:?} lost after kill -9"
            );
        }
    }
    eprintln!("acknowledged {acked_count} records before kill -9; {total} stored after restart");
}
