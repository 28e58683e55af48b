//! `/metrics`: parses with a Prometheus text parser, carries every documented
//! metric, and the counters move under real load.

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use weir_tests::WeirDev;

/// Every metric name the node documents (see node/server/src/metrics.rs).
const DOCUMENTED: &[&str] = &[
    "weir_node_info",
    "weir_requests_total",
    "weir_request_duration_seconds",
    "weir_request_phase_seconds",
    "weir_messages_in_total",
    "weir_bytes_in_total",
    "weir_bytes_out_total",
    "weir_produce_failures_total",
    "weir_log_flushes_total",
    "weir_log_read_bytes_total",
    "weir_log_flush_duration_seconds",
    "weir_partitions",
    "weir_leader_partitions",
    "weir_under_replicated_partitions",
    "weir_offline_partitions",
    "weir_isr_shrinks_total",
    "weir_isr_expands_total",
    "weir_replica_max_lag",
    "weir_replication_bytes_out_total",
    "weir_batch_cache_bytes",
    "weir_fetch_purgatory_size",
    "weir_produce_purgatory_size",
    "weir_consumer_group_lag",
    "weir_connections_open",
    "weir_data_dir_bytes_used",
    "weir_data_dir_bytes_free",
    "weir_data_dir_min_free_bytes",
    "weir_data_dir_appends_blocked",
    // weir dev runs its controller in-process: one endpoint carries both.
    "weir_controller_active",
    "weir_controller_metadata_version",
    "weir_controller_registered_nodes",
    "weir_controller_topics",
    "weir_controller_partitions",
    "weir_controller_offline_partitions",
    "weir_controller_preferred_replica_imbalance",
    "weir_controller_fenced_nodes",
    "weir_controller_leader_elections_total",
    "weir_controller_unclean_leader_elections_total",
];

/// Parsed samples: (name, sorted labels) -> value; histograms by their series.
fn scrape(dev: &WeirDev) -> (prometheus_parse::Scrape, HashMap<String, f64>) {
    let text = dev.scrape();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let parsed = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text format");
    let mut values = HashMap::new();
    for s in &parsed.samples {
        let mut labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        let value = match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(h) => h.iter().map(|b| b.count).fold(0.0, f64::max),
            prometheus_parse::Value::Summary(_) => continue,
        };
        values.insert(format!("{}{{{}}}", s.metric, labels.join(",")), value);
    }
    (parsed, values)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_documented_parse_and_move_under_load() {
    let dev = WeirDev::start();
    let bootstrap = dev.bootstrap();
    let (parsed, before) = scrape(&dev);
    for name in DOCUMENTED {
        assert!(parsed.docs.contains_key(*name), "metric {name} has HELP text");
    }

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("acks", "all")
        .create()
        .unwrap();
    let value = vec![b'm'; 100];
    for _ in 0..50 {
        producer
            .send(
                FutureRecord::<(), _>::to("metered").partition(0).payload(&value),
                Duration::from_secs(10),
            )
            .await
            .expect("acked");
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "metered")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("metered", 0, Offset::Beginning).unwrap();
    consumer.assign(&tpl).unwrap();
    let mut read = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while read < 50 && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            m.expect("consume");
            read += 1;
        }
    }
    assert_eq!(read, 50);
    // The group commits offset 30 of 50: its lag is 20.
    let mut commit = TopicPartitionList::new();
    commit.add_partition_offset("metered", 0, Offset::Offset(30)).unwrap();
    consumer.commit(&commit, rdkafka::consumer::CommitMode::Sync).expect("commit");

    let (_, after) = scrape(&dev);
    let get = |m: &HashMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(0.0);
    assert_eq!(get(&after, "weir_messages_in_total{topic=metered}"), 50.0);
    assert!(get(&after, "weir_bytes_in_total{topic=metered}") >= 50.0 * 100.0);
    assert!(get(&after, "weir_bytes_out_total{topic=metered}") >= 50.0 * 100.0);
    let produce_before = get(&before, "weir_requests_total{api=Produce}");
    assert!(get(&after, "weir_requests_total{api=Produce}") >= produce_before + 50.0);
    assert!(get(&after, "weir_requests_total{api=Fetch}") >= 1.0);
    assert!(get(&after, "weir_log_flushes_total{}") >= 1.0, "acks=all produces were flushed");
    // The consumer read what was just produced: all of it from the batch cache.
    assert_eq!(get(&after, "weir_log_read_bytes_total{}"), 0.0, "no segment reads");
    assert!(get(&after, "weir_partitions{}") >= 1.0);
    assert!(get(&after, "weir_leader_partitions{}") >= 1.0);
    assert_eq!(get(&after, "weir_offline_partitions{}"), 0.0);
    assert!(get(&after, "weir_connections_open{}") >= 1.0);
    assert!(after.keys().any(|k| k.starts_with("weir_data_dir_bytes_free{dir=")));
    assert_eq!(
        get(&after, "weir_consumer_group_lag{group=metered,partition=0,topic=metered}"),
        20.0
    );
    // Every produce was timed in each phase; the acks=all ones were parked
    // (remote) waiting for the group commit.
    for phase in ["queue", "local", "remote", "response_queue", "response_send"] {
        let key = format!("weir_request_phase_seconds{{api=Produce,phase={phase}}}");
        assert!(get(&after, &key) >= produce_before + 50.0, "{key}");
    }
    assert!(get(&after, "weir_request_duration_seconds{api=Fetch}") >= 1.0);
    assert_eq!(get(&after, "weir_produce_purgatory_size{}"), 0.0, "nothing left parked");
    assert_eq!(get(&after, "weir_controller_active{}"), 1.0);
    assert!(get(&after, "weir_controller_partitions{}") >= 1.0);
    assert!(
        get(&after, "weir_controller_metadata_version{}")
            > get(&before, "weir_controller_metadata_version{}"),
        "creating the topic appended metadata records"
    );
}
