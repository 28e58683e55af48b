//! The acknowledged-history check of the fault tests: an idempotent
//! librdkafka producer (acks=all) writes `p<partition>-<seq>` records
//! round-robin over a topic's partitions for as long as a fault scenario
//! runs, recording every acknowledgement; afterwards a consumer reads every
//! partition from the start and [`check`] proves no acknowledged record was
//! lost or changed, none is stored twice, and each partition keeps the
//! producer's order.

use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An acknowledged record: (partition, offset, value).
pub type Ack = (i32, i64, String);
/// Delivery failures by error text.
pub type Failures = BTreeMap<String, u64>;
/// What a partition holds, in offset order: (offset, value).
pub type Stored = BTreeMap<i32, Vec<(i64, String)>>;

#[derive(Default)]
struct Shared {
    acks: Mutex<Vec<Ack>>,
    failures: Mutex<Failures>,
}

struct AckContext(Arc<Shared>);

impl rdkafka::ClientContext for AckContext {}

impl rdkafka::producer::ProducerContext for AckContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                let value = String::from_utf8(m.payload().unwrap().to_vec()).unwrap();
                self.0.acks.lock().unwrap().push((m.partition(), m.offset(), value));
            }
            Err((e, _)) => *self.0.failures.lock().unwrap().entry(e.to_string()).or_default() += 1,
        }
    }
}

/// The producer of a scenario, running on its own thread until [`finish`].
///
/// [`finish`]: HistoryProducer::finish
pub struct HistoryProducer {
    shared: Arc<Shared>,
    partitions: i32,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

/// A finished producer's account.
pub struct Produced {
    pub sent: u64,
    pub acks: Vec<Ack>,
    pub failures: Failures,
}

impl HistoryProducer {
    /// Starts producing to `topic`; `settings` add to (or override) the
    /// producer config: idempotence, acks=all, linger 2 ms, 120 s message
    /// timeout, metadata refreshed every 500 ms.
    pub fn start(
        bootstrap: &str,
        topic: &str,
        partitions: i32,
        settings: &[(&str, &str)],
    ) -> HistoryProducer {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", bootstrap)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "2")
            .set("message.timeout.ms", "120000")
            .set("topic.metadata.refresh.interval.ms", "500");
        for (k, v) in settings {
            config.set(*k, *v);
        }
        let shared = Arc::new(Shared::default());
        let stop = Arc::new(AtomicBool::new(false));
        let producer: ThreadedProducer<AckContext> =
            config.create_with_context(AckContext(shared.clone())).expect("producer");
        let (topic, halt) = (topic.to_string(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut seq = vec![0u64; partitions as usize];
            let mut sent = 0u64;
            while !halt.load(Ordering::Acquire) {
                for p in 0..partitions {
                    let value = format!("p{p}-{}", seq[p as usize]);
                    let record = BaseRecord::to(&topic).partition(p).payload(&value).key("k");
                    match producer.send(record) {
                        Ok(()) => {
                            seq[p as usize] += 1;
                            sent += 1;
                        }
                        Err((e, _)) => {
                            eprintln!("send: {e}");
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            producer.flush(Duration::from_secs(120)).expect("every record settled");
            sent
        });
        HistoryProducer { shared, partitions, stop, thread: Some(thread) }
    }

    /// Acknowledgements so far.
    pub fn acked(&self) -> usize {
        self.shared.acks.lock().unwrap().len()
    }

    /// Acknowledgements so far, per partition.
    pub fn acked_per_partition(&self) -> Vec<usize> {
        let mut n = vec![0; self.partitions as usize];
        for (p, _, _) in self.shared.acks.lock().unwrap().iter() {
            n[*p as usize] += 1;
        }
        n
    }

    pub fn failures(&self) -> Failures {
        self.shared.failures.lock().unwrap().clone()
    }

    /// Waits until `n` records are acknowledged; fails after `within`.
    pub fn wait_acks(&self, n: usize, within: Duration, what: &str) {
        let deadline = Instant::now() + within;
        while self.acked() < n {
            assert!(Instant::now() < deadline, "{what}: producer stalled at {} acks", self.acked());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops producing, waits for every record to settle, and accounts.
    pub fn finish(mut self) -> Produced {
        self.stop.store(true, Ordering::Release);
        let sent = self.thread.take().expect("running").join().expect("producer thread");
        Produced { sent, acks: self.shared.acks.lock().unwrap().clone(), failures: self.failures() }
    }
}

impl Drop for HistoryProducer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Reads every partition of `topic` from the beginning to its end.
pub fn read_back(bootstrap: &str, topic: &str, partitions: i32, group: &str) -> Stored {
    let consumer = crate::assigned_consumer(
        bootstrap,
        group,
        topic,
        partitions,
        &[("enable.partition.eof", "true")],
    );
    let mut log = Stored::new();
    let mut at_end = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while at_end.len() < partitions as usize {
        assert!(Instant::now() < deadline, "reading back timed out");
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let v = String::from_utf8(m.payload().unwrap().to_vec()).unwrap();
                log.entry(m.partition()).or_default().push((m.offset(), v));
                at_end.remove(&m.partition());
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => eprintln!("consume: {e}"),
            None => {}
        }
    }
    log
}

/// The offset librdkafka reports for a message delivered successfully whose
/// offset it could not ascertain (`RD_KAFKA_OFFSET_INVALID`). Seen in
/// `cluster_faults` around a leader change: such a record must still be in
/// its partition, exactly once (checked by value).
pub const OFFSET_UNKNOWN: i64 = -1001;

/// Checks what was read back against the acknowledgements: every
/// acknowledged (partition, offset, value) is there (an acknowledgement
/// without an offset: the value is in its partition), no value is stored
/// twice, each partition holds only its own records, in the producer's
/// order. Returns how many records are stored.
pub fn check(log: &Stored, acks: &[Ack]) -> usize {
    let mut stored: BTreeMap<(i32, i64), &str> = BTreeMap::new();
    let mut values: HashSet<&str> = HashSet::new();
    for (p, records) in log {
        let mut last_seq = -1i64;
        for (offset, v) in records {
            assert!(values.insert(v.as_str()), "{v} stored twice (partition {p} offset {offset})");
            assert!(v.starts_with(&format!("p{p}-")), "{v} in partition {p}");
            let seq: i64 = v.rsplit('-').next().unwrap().parse().unwrap();
            assert!(seq > last_seq, "partition {p} out of order: {seq} after {last_seq}");
            last_seq = seq;
            stored.insert((*p, *offset), v);
        }
    }
    let present = |p: i32, offset: i64, v: &str| match offset {
        // Values are unique and each sits in its own partition (checked above).
        OFFSET_UNKNOWN => values.contains(v) && v.starts_with(&format!("p{p}-")),
        _ => stored.get(&(p, offset)) == Some(&v),
    };
    let lost: Vec<String> = acks
        .iter()
        .filter(|(p, offset, v)| !present(*p, *offset, v))
        .map(|(p, offset, v)| {
            format!(
                "{v} acknowledged at partition {p} offset {offset}, stored there: {:?}",
                stored.get(&(*p, *offset))
            )
        })
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged records missing or changed, e.g.:\n{}",
        lost.len(),
        lost.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
    );
    stored.len()
}
