//! Measures producer throughput against a running broker with librdkafka:
//! `cargo run --release -p weir-tests --example produce_rate -- BOOTSTRAP TOPIC RECORD_BYTES RECORDS`
//! (acks=all, idempotent). Prints records/s and MB/s; creates TOPIC with 6
//! partitions if it does not exist. Used for the README's performance note;
//! `weir-bench` (the bench issue) is the full harness.

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::Instant;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: produce_rate BOOTSTRAP TOPIC RECORD_BYTES RECORDS");
        std::process::exit(2);
    }
    let (bootstrap, topic) = (&args[1], &args[2]);
    let size: usize = args[3].parse().expect("RECORD_BYTES");
    let count: usize = args[4].parse().expect("RECORDS");
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("admin");
    let _ = admin
        .create_topics(&[NewTopic::new(topic, 6, TopicReplication::Fixed(1))], &AdminOptions::new())
        .await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create()
        .expect("producer");
    let payload = vec![b'w'; size];
    let started = Instant::now();
    let mut inflight = std::collections::VecDeque::with_capacity(200_000);
    for i in 0..count {
        let rec = FutureRecord::<(), _>::to(topic).partition((i % 6) as i32).payload(&payload);
        inflight.push_back(producer.send_result(rec).expect("queue"));
        if inflight.len() >= 200_000 {
            inflight.pop_front().unwrap().await.expect("delivery").expect("acked");
        }
    }
    for f in inflight {
        f.await.expect("delivery").expect("acked");
    }
    let secs = started.elapsed().as_secs_f64();
    let mb = (count * size) as f64 / 1e6;
    println!(
        "records={count} record_bytes={size} seconds={secs:.2} records_per_s={:.0} MB_per_s={:.1}",
        count as f64 / secs,
        mb / secs
    );
}
