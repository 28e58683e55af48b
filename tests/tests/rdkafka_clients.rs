//! The `rdkafka` crate (librdkafka) against a real `weir dev` process.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use weir_tests::WeirDev;

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("admin client")
}

async fn create_topic(bootstrap: &str, name: &str, partitions: i32) {
    let results = admin(bootstrap)
        .create_topics(
            &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("create_topics request");
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("creating {t}: {e}"));
    }
}

fn assign_consumer(bootstrap: &str, topic: &str, partitions: i32) -> BaseConsumer {
    let settings = [("fetch.wait.max.ms", "100")];
    weir_tests::assigned_consumer(bootstrap, "weir-test-assign", topic, partitions, &settings)
}

/// Reads until `count` records arrived (or a deadline), keyed by partition.
fn drain(
    consumer: &BaseConsumer,
    count: usize,
    limit: Duration,
) -> BTreeMap<i32, Vec<(i64, Vec<u8>)>> {
    let deadline = Instant::now() + limit;
    let mut got: BTreeMap<i32, Vec<(i64, Vec<u8>)>> = BTreeMap::new();
    let mut n = 0;
    while n < count && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                got.entry(m.partition())
                    .or_default()
                    .push((m.offset(), m.payload().unwrap_or_default().to_vec()));
                n += 1;
            }
            Some(Err(e)) => panic!("consume error: {e}"),
            None => {}
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_acks_all_round_trip_in_partition_order() {
    let dev = WeirDev::start();
    let bootstrap = dev.bootstrap();
    create_topic(&bootstrap, "orders", 3).await;

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    const N: usize = 20_000;
    let mut pending = Vec::with_capacity(N);
    for i in 0..N {
        let key = format!("key-{}", i % 97);
        let value = format!("value-{i:06}");
        let record = FutureRecord::to("orders").key(&key).payload(&value);
        pending.push((value.clone(), producer.send_result(record).expect("queue")));
    }
    let mut acked: BTreeMap<i32, Vec<(i64, Vec<u8>)>> = BTreeMap::new();
    for (value, fut) in pending {
        let d = fut.await.expect("delivery").expect("acknowledged");
        let (partition, offset) = (d.partition, d.offset);
        acked.entry(partition).or_default().push((offset, value.into_bytes()));
    }
    assert_eq!(acked.len(), 3, "keys spread over all three partitions");
    for records in acked.values_mut() {
        records.sort();
        let offsets: Vec<i64> = records.iter().map(|r| r.0).collect();
        let expected: Vec<i64> = (0..records.len() as i64).collect();
        assert_eq!(offsets, expected, "offsets are dense from 0");
    }

    let consumer = assign_consumer(&bootstrap, "orders", 3);
    let got = drain(&consumer, N, Duration::from_secs(60));
    assert_eq!(got, acked, "consumer reads exactly what was acknowledged, in order");

    // Watermarks (ListOffsets earliest/latest) agree.
    let total: i64 = (0..3)
        .map(|p| {
            let (lo, hi) =
                consumer.fetch_watermarks("orders", p, Duration::from_secs(5)).expect("watermarks");
            assert_eq!(lo, 0);
            hi
        })
        .sum();
    assert_eq!(total as usize, N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_topics_survive_clean_restart() {
    let mut dev = WeirDev::start();
    let bootstrap = dev.bootstrap();
    create_topic(&bootstrap, "keep", 2).await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("acks", "all")
        .create()
        .expect("producer");
    for i in 0..500 {
        let v = format!("r{i}");
        producer
            .send(
                FutureRecord::<(), _>::to("keep").partition(i % 2).payload(&v),
                Duration::from_secs(10),
            )
            .await
            .expect("acked");
    }
    drop(producer);
    assert!(dev.stop(), "clean shutdown exits 0");
    dev.restart();
    let consumer = assign_consumer(&bootstrap, "keep", 2);
    let got = drain(&consumer, 500, Duration::from_secs(30));
    assert_eq!(got.values().map(|v| v.len()).sum::<usize>(), 500);
    for (p, records) in &got {
        for (i, (offset, value)) in records.iter().enumerate() {
            assert_eq!(*offset, i as i64);
            assert_eq!(value, format!("r{}", i as i32 * 2 + p).as_bytes());
        }
    }
    // Producing after the restart continues at the right offsets.
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", &bootstrap).create().expect("producer");
    let d = producer
        .send(
            FutureRecord::<(), _>::to("keep").partition(0).payload("after"),
            Duration::from_secs(10),
        )
        .await
        .expect("acked");
    assert_eq!((d.partition, d.offset), (0, 250));
}

fn group_consumer(bootstrap: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("group consumer")
}

async fn produce_values(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    range: std::ops::Range<usize>,
) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let futs: Vec<_> = range
        .map(|i| {
            let v = format!("{i}");
            let p = i as i32 % partitions;
            producer
                .send_result(FutureRecord::<(), _>::to(topic).partition(p).payload(&v))
                .expect("queue")
        })
        .collect();
    for f in futs {
        f.await.expect("delivery").expect("acked");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_consumer_commits_and_a_new_member_resumes_after_restart() {
    let mut dev = WeirDev::start();
    let bootstrap = dev.bootstrap();
    create_topic(&bootstrap, "events", 3).await;
    produce_values(&bootstrap, "events", 3, 0..3000).await;

    let consumer = group_consumer(&bootstrap, "billing");
    consumer.subscribe(&["events"]).expect("subscribe");
    let first = drain(&consumer, 3000, Duration::from_secs(60));
    assert_eq!(
        first.values().map(|v| v.len()).sum::<usize>(),
        3000,
        "group member reads everything"
    );
    consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync).expect("commit");
    let committed = consumer
        .committed(Duration::from_secs(10))
        .expect("committed offsets")
        .elements()
        .iter()
        .map(|e| (e.partition(), e.offset()))
        .collect::<BTreeMap<_, _>>();
    assert_eq!(committed.values().map(|o| o.to_raw().unwrap()).sum::<i64>(), 3000);
    drop(consumer);

    // The commits are durable: restart the node, produce more, and a new
    // member of the same group starts exactly after what was committed.
    assert!(dev.stop());
    dev.restart();
    produce_values(&bootstrap, "events", 3, 3000..3600).await;
    let consumer = group_consumer(&bootstrap, "billing");
    consumer.subscribe(&["events"]).expect("subscribe");
    let second = drain(&consumer, 600, Duration::from_secs(60));
    let values: Vec<u64> = second
        .values()
        .flatten()
        .map(|(_, v)| std::str::from_utf8(v).unwrap().parse().unwrap())
        .collect();
    assert_eq!(values.len(), 600, "exactly the records after the commit");
    assert!(values.iter().all(|v| *v >= 3000), "nothing before the commit is read again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_split_partitions_and_one_takes_over_after_a_leave() {
    let dev = WeirDev::start();
    let bootstrap = dev.bootstrap();
    create_topic(&bootstrap, "shared", 4).await;
    produce_values(&bootstrap, "shared", 4, 0..400).await;

    let a = group_consumer(&bootstrap, "pair");
    let b = group_consumer(&bootstrap, "pair");
    a.subscribe(&["shared"]).unwrap();
    b.subscribe(&["shared"]).unwrap();
    // Poll both until the group settles with both members holding partitions
    // and every record has been read once.
    let mut seen: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let assigned = |c: &BaseConsumer| c.assignment().map(|t| t.count()).unwrap_or(0);
    // Every member is at the end (offset 100) of every partition it holds, so
    // its commit below covers everything (a record read by a previous owner
    // before a rebalance does not count for the new owner's position).
    let caught_up = |c: &BaseConsumer| {
        c.position()
            .map(|t| t.elements().iter().all(|e| e.offset() == Offset::Offset(100)))
            .unwrap_or(false)
    };
    while (seen.values().map(Vec::len).sum::<usize>() < 400
        || assigned(&a) == 0
        || assigned(&b) == 0
        || !caught_up(&a)
        || !caught_up(&b))
        && Instant::now() < deadline
    {
        for c in [&a, &b] {
            if let Some(m) = c.poll(Duration::from_millis(50)) {
                let m = m.expect("consume");
                seen.entry(m.partition()).or_default().push(m.offset());
            }
        }
    }
    assert_eq!(
        assigned(&a) + assigned(&b),
        4,
        "the four partitions are split between the two members"
    );
    assert!(assigned(&a) > 0 && assigned(&b) > 0);
    for offsets in seen.values_mut() {
        offsets.sort();
        offsets.dedup();
    }
    assert_eq!(seen.values().map(Vec::len).sum::<usize>(), 400);
    a.commit_consumer_state(rdkafka::consumer::CommitMode::Sync).unwrap();
    b.commit_consumer_state(rdkafka::consumer::CommitMode::Sync).unwrap();

    // b leaves; a is given all four partitions and continues after the commits.
    drop(b);
    let deadline = Instant::now() + Duration::from_secs(60);
    while assigned(&a) < 4 && Instant::now() < deadline {
        assert!(a.poll(Duration::from_millis(100)).is_none(), "nothing new to read yet");
    }
    assert_eq!(assigned(&a), 4, "the remaining member took over every partition");
    produce_values(&bootstrap, "shared", 4, 400..480).await;
    let mut after = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while after.len() < 80 && Instant::now() < deadline {
        if let Some(m) = a.poll(Duration::from_millis(100)) {
            let m = m.expect("consume");
            after.push(std::str::from_utf8(m.payload().unwrap()).unwrap().parse::<u64>().unwrap());
        }
    }
    after.sort();
    assert_eq!(after, (400..480).collect::<Vec<u64>>(), "exactly the new records, none read twice");
}
