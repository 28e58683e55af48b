//! Prometheus metrics.
//!
//! Every shard counts into its own thread-local [`ShardMetrics`]: plain
//! integers, no atomics and no locks on the hot path. A scrape of `/metrics`
//! (served by shard 0) asks every shard for a copy of its counters and its
//! gauges over a cross-shard job, merges them, and renders the Prometheus
//! text exposition format (version 0.0.4). Metric names and help texts are in
//! [`render`]; they follow what a Kafka operator watches (messages and bytes in
//! and out per topic, request rate and time per API, flush rate and latency,
//! partitions, under-replicated and offline partitions, data-dir space).

use crate::shard::Shard;
use kafka_protocol::messages::ApiKey;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};
use weir_proto::exposition::{Exposition, Family, HistogramData};

/// Upper bounds (seconds) of the latency histogram buckets.
pub const LATENCY_BUCKETS_S: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A latency histogram with fixed buckets (non-cumulative counts).
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    buckets: [u64; LATENCY_BUCKETS_S.len()],
    count: u64,
    sum_s: f64,
}

impl Histogram {
    pub fn observe(&mut self, secs: f64) {
        self.count += 1;
        self.sum_s += secs;
        if let Some(i) = LATENCY_BUCKETS_S.iter().position(|b| secs <= *b) {
            self.buckets[i] += 1;
        }
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a += b;
        }
        self.count += other.count;
        self.sum_s += other.sum_s;
    }
}

/// One API's request times: the total and its phases (see [`RequestClock`]).
#[derive(Debug, Clone, Default)]
pub struct RequestTimes {
    pub total: Histogram,
    pub queue: Histogram,
    pub local: Histogram,
    pub remote: Histogram,
    pub response_queue: Histogram,
    pub response_send: Histogram,
}

impl RequestTimes {
    fn phases(&self) -> [(&'static str, &Histogram); 5] {
        [
            ("queue", &self.queue),
            ("local", &self.local),
            ("remote", &self.remote),
            ("response_queue", &self.response_queue),
            ("response_send", &self.response_send),
        ]
    }

    fn merge(&mut self, other: &RequestTimes) {
        self.total.merge(&other.total);
        self.queue.merge(&other.queue);
        self.local.merge(&other.local);
        self.remote.merge(&other.remote);
        self.response_queue.merge(&other.response_queue);
        self.response_send.merge(&other.response_send);
    }
}

/// Where one request's time goes, as Kafka splits it: queued (arrival to
/// handler start), local (the handler working), remote (the handler parked
/// on something outside this request: another shard, the group commit's
/// fdatasync, a fetch long poll), response queue (ready, waiting behind
/// earlier responses on the connection) and response send. Created when the
/// frame has been read; owned by the connection's shard.
#[derive(Debug)]
pub struct RequestClock {
    api: i16,
    arrived: Instant,
    started: Cell<Option<Instant>>,
    finished: Cell<Option<Instant>>,
    remote: Cell<Duration>,
}

impl RequestClock {
    pub fn new(api: i16, arrived: Instant) -> RequestClock {
        RequestClock {
            api,
            arrived,
            started: Cell::new(None),
            finished: Cell::new(None),
            remote: Cell::new(Duration::ZERO),
        }
    }

    pub fn start(&self) {
        self.started.set(Some(Instant::now()));
    }

    pub fn finish(&self) {
        self.finished.set(Some(Instant::now()));
    }

    /// Awaits `f`, counting the wait as remote time.
    pub async fn parked<F: std::future::Future>(&self, f: F) -> F::Output {
        let t = Instant::now();
        let out = f.await;
        self.remote.set(self.remote.get() + t.elapsed());
        out
    }

    /// Records the request once its response was written (`send_started` is
    /// when the writer took it up; equal to `sent` when nothing was sent).
    pub fn record(&self, send_started: Instant, sent: Instant) {
        let started = self.started.get().unwrap_or(self.arrived);
        let finished = self.finished.get().unwrap_or(started).max(started);
        let handler = finished - started;
        let remote = self.remote.get().min(handler);
        let secs = |d: Duration| d.as_secs_f64();
        with(|m| {
            let t = m.requests.entry(self.api).or_default();
            t.total.observe(secs(sent.saturating_duration_since(self.arrived)));
            t.queue.observe(secs(started.saturating_duration_since(self.arrived)));
            t.local.observe(secs(handler - remote));
            t.remote.observe(secs(remote));
            t.response_queue.observe(secs(send_started.saturating_duration_since(finished)));
            t.response_send.observe(secs(sent.saturating_duration_since(send_started)));
        });
    }
}

/// Counters of one topic on one shard.
#[derive(Debug, Clone, Default)]
pub struct TopicCounters {
    pub messages_in: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub produce_failures: u64,
}

/// Gauges read from one shard's state at scrape time.
#[derive(Debug, Clone, Default)]
pub struct ShardGauges {
    pub partitions: u64,
    pub leader_partitions: u64,
    pub under_replicated_partitions: u64,
    /// Largest lag, in records, of a follower behind this node as leader
    /// (Kafka's ReplicaFetcherManager MaxLag, seen from the leader).
    pub max_follower_lag: u64,
    pub offline_partitions: u64,
    pub batch_cache_bytes: u64,
    pub fetch_waiters: u64,
    pub produce_waiters: u64,
    /// Data directories this shard currently refuses appends to.
    pub blocked_dirs: BTreeSet<PathBuf>,
    /// Committed offsets of the groups this shard coordinates:
    /// (group, topic, partition, offset).
    pub committed_offsets: Vec<(String, String, i32, i64)>,
    /// High watermarks of the partitions this shard leads.
    pub high_watermarks: HashMap<(String, i32), i64>,
}

/// One shard's counters. Owned by that shard's thread (thread-local).
#[derive(Debug, Clone, Default)]
pub struct ShardMetrics {
    /// By Kafka API key: requests and their total time.
    pub requests: BTreeMap<i16, RequestTimes>,
    pub topics: BTreeMap<String, TopicCounters>,
    pub flushes: u64,
    pub flush_latency: Histogram,
    /// Bytes read from segment files (batch-cache misses: fetches, followers).
    pub log_read_bytes: u64,
    /// Fetch bytes answered from read-aheads (a subset of what was read).
    pub read_ahead_served_bytes: u64,
    /// Segment files created, and deleted ones reused as new segments.
    pub segments_created: u64,
    pub segments_recycled: u64,
    /// Duration of segment rolls (seal the old segment, start the next).
    pub roll_latency: Histogram,
    /// ISR changes this node (as leader) had accepted by the controller.
    pub isr_shrinks: u64,
    pub isr_expands: u64,
    /// Record-batch bytes sent to followers.
    pub replication_bytes_out: u64,
    pub connections_opened: u64,
    pub connections_closed: u64,
    pub gauges: ShardGauges,
}

impl ShardMetrics {
    fn merge(&mut self, other: &ShardMetrics) {
        for (k, h) in &other.requests {
            self.requests.entry(*k).or_default().merge(h);
        }
        for (t, c) in &other.topics {
            let m = self.topics.entry(t.clone()).or_default();
            m.messages_in += c.messages_in;
            m.bytes_in += c.bytes_in;
            m.bytes_out += c.bytes_out;
            m.produce_failures += c.produce_failures;
        }
        self.flushes += other.flushes;
        self.log_read_bytes += other.log_read_bytes;
        self.read_ahead_served_bytes += other.read_ahead_served_bytes;
        self.segments_created += other.segments_created;
        self.segments_recycled += other.segments_recycled;
        self.roll_latency.merge(&other.roll_latency);
        self.isr_shrinks += other.isr_shrinks;
        self.isr_expands += other.isr_expands;
        self.replication_bytes_out += other.replication_bytes_out;
        self.flush_latency.merge(&other.flush_latency);
        self.connections_opened += other.connections_opened;
        self.connections_closed += other.connections_closed;
        let (g, o) = (&mut self.gauges, &other.gauges);
        g.partitions += o.partitions;
        g.leader_partitions += o.leader_partitions;
        g.under_replicated_partitions += o.under_replicated_partitions;
        g.max_follower_lag = g.max_follower_lag.max(o.max_follower_lag);
        g.offline_partitions += o.offline_partitions;
        g.batch_cache_bytes += o.batch_cache_bytes;
        g.fetch_waiters += o.fetch_waiters;
        g.produce_waiters += o.produce_waiters;
        g.blocked_dirs.extend(o.blocked_dirs.iter().cloned());
        g.committed_offsets.extend(o.committed_offsets.iter().cloned());
        g.high_watermarks.extend(o.high_watermarks.iter().map(|(k, v)| (k.clone(), *v)));
    }
}

thread_local! {
    static METRICS: RefCell<ShardMetrics> = RefCell::new(ShardMetrics::default());
}

/// Updates this shard's counters.
pub fn with<R>(f: impl FnOnce(&mut ShardMetrics) -> R) -> R {
    METRICS.with(|m| f(&mut m.borrow_mut()))
}

/// Counts one produced batch set for `topic` (bytes and records appended).
pub fn produced(topic: &str, records: u64, bytes: u64) {
    with(|m| {
        let t = topic_entry(m, topic);
        t.messages_in += records;
        t.bytes_in += bytes;
    })
}

pub fn produce_failed(topic: &str) {
    with(|m| topic_entry(m, topic).produce_failures += 1)
}

pub fn fetched(topic: &str, bytes: u64) {
    if bytes > 0 {
        with(|m| topic_entry(m, topic).bytes_out += bytes)
    }
}

fn topic_entry<'a>(m: &'a mut ShardMetrics, topic: &str) -> &'a mut TopicCounters {
    // Avoid allocating the key on the hot path once the topic is known.
    if !m.topics.contains_key(topic) {
        m.topics.insert(topic.to_string(), TopicCounters::default());
    }
    m.topics.get_mut(topic).expect("inserted")
}

/// This shard's counters with its gauges filled in from its state.
fn snapshot(shard: &Shard) -> ShardMetrics {
    let mut m = with(|m| m.clone());
    let md = shard.metadata.borrow();
    let partitions = shard.partitions.borrow();
    let mut g = ShardGauges {
        partitions: partitions.len() as u64,
        batch_cache_bytes: shard.cache.borrow().used_bytes() as u64,
        fetch_waiters: shard.fetch_waiters.get() as u64,
        produce_waiters: shard.produce_waiters.get() as u64,
        committed_offsets: shard.groups.committed_offsets(),
        ..Default::default()
    };
    for (tp, p) in partitions.iter() {
        let Some(view) =
            md.topics.get(&tp.topic).and_then(|t| t.partitions.get(tp.partition.0 as usize))
        else {
            continue;
        };
        if crate::replication::is_leader(p) {
            let replica = p.replica.borrow();
            let end = replica.log_end_offset();
            for r in &view.replicas {
                if let Some(progress) = replica.follower_progress(*r) {
                    let at = progress.log_end.unwrap_or(replica.log_start_offset());
                    g.max_follower_lag = g.max_follower_lag.max((end.0 - at.0).max(0) as u64);
                }
            }
        }
        if view.leader == shard.node_id {
            g.leader_partitions += 1;
            g.high_watermarks.insert((tp.topic.to_string(), tp.partition.0), p.high_watermark().0);
            if view.isr.len() < view.replicas.len() {
                g.under_replicated_partitions += 1;
            }
        }
        if p.is_failed() {
            g.offline_partitions += 1;
        }
    }
    g.blocked_dirs =
        shard.space.iter().filter(|(_, s)| s.is_blocked()).map(|(d, _)| d.clone()).collect();
    m.gauges = g;
    m
}

fn api_name(key: i16) -> String {
    ApiKey::try_from(key).map(|k| format!("{k:?}")).unwrap_or_else(|_| key.to_string())
}

fn add_histogram(f: &mut Family<'_>, labels: &[(&str, &str)], h: &Histogram) {
    let mut cumulative = h.buckets;
    for i in 1..cumulative.len() {
        cumulative[i] += cumulative[i - 1];
    }
    f.histogram(
        labels,
        HistogramData {
            upper_bounds: &LATENCY_BUCKETS_S,
            cumulative: &cumulative,
            count: h.count,
            sum: h.sum_s,
        },
    );
}

/// A per-topic counter: name, help, and how to read it.
type TopicMetric = (&'static str, &'static str, fn(&TopicCounters) -> u64);

/// Renders the merged metrics of all shards in the Prometheus text format.
/// Every metric the node exports is named and explained here.
pub fn render(
    node_id: i32,
    shards: &[ShardMetrics],
    data_dirs: &[std::path::PathBuf],
    min_free_bytes: u64,
) -> String {
    let mut all = ShardMetrics::default();
    for s in shards {
        all.merge(s);
    }
    let mut e = Exposition::new();
    e.gauge("weir_node_info", "Constant 1, labelled with the node id and the shard count.")
        .sample(&[("node_id", &node_id.to_string()), ("shards", &shards.len().to_string())], 1.0);

    let mut f = e.counter("weir_requests_total", "Kafka requests handled, by API.");
    for (k, t) in &all.requests {
        f.sample(&[("api", &api_name(*k))], t.total.count as f64);
    }
    let mut f = e.histogram(
        "weir_request_duration_seconds",
        "Total time of a request, from its arrival to its response being written to the socket, by API (Kafka's TotalTimeMs).",
    );
    for (k, t) in &all.requests {
        add_histogram(&mut f, &[("api", &api_name(*k))], &t.total);
    }
    let mut f = e.histogram(
        "weir_request_phase_seconds",
        "A request's time split by phase, by API: queue (arrival to handler start), local (handler at work), remote (parked: on other shards, the group commit's fdatasync, or a fetch long poll), response_queue (response ready, waiting for earlier responses on the connection), response_send (writing it to the socket). Kafka's RequestQueueTimeMs, LocalTimeMs, RemoteTimeMs, ResponseQueueTimeMs and ResponseSendTimeMs.",
    );
    for (k, t) in &all.requests {
        let api = api_name(*k);
        for (phase, h) in t.phases() {
            add_histogram(&mut f, &[("api", &api), ("phase", phase)], h);
        }
    }

    let per_topic: [TopicMetric; 4] = [
        ("weir_messages_in_total", "Records appended, by topic (Kafka's MessagesInPerSec).", |c| {
            c.messages_in
        }),
        (
            "weir_bytes_in_total",
            "Bytes of record batches appended, by topic (BytesInPerSec).",
            |c| c.bytes_in,
        ),
        (
            "weir_bytes_out_total",
            "Bytes of record batches returned by Fetch, by topic (BytesOutPerSec).",
            |c| c.bytes_out,
        ),
        (
            "weir_produce_failures_total",
            "Partition appends refused or failed, by topic (FailedProduceRequestsPerSec).",
            |c| c.produce_failures,
        ),
    ];
    for (name, help, get) in per_topic {
        let mut f = e.counter(name, help);
        for (t, c) in &all.topics {
            f.sample(&[("topic", t)], get(c) as f64);
        }
    }

    e.counter(
        "weir_isr_shrinks_total",
        "ISR shrinks of partitions this node leads, accepted by the controller (IsrShrinksPerSec).",
    )
    .sample(&[], all.isr_shrinks as f64);
    e.counter(
        "weir_isr_expands_total",
        "ISR expansions of partitions this node leads, accepted by the controller (IsrExpandsPerSec).",
    )
    .sample(&[], all.isr_expands as f64);
    e.counter(
        "weir_replication_bytes_out_total",
        "Record-batch bytes sent to followers (ReplicationBytesOutPerSec).",
    )
    .sample(&[], all.replication_bytes_out as f64);
    e.counter(
        "weir_log_read_bytes_total",
        "Bytes read from segment files for fetches and followers: what the batch cache did not serve.",
    )
    .sample(&[], all.log_read_bytes as f64);
    e.counter(
        "weir_read_ahead_served_bytes_total",
        "Fetch bytes answered from data read ahead of a cold sequential reader (read while the previous answer travelled).",
    )
    .sample(&[], all.read_ahead_served_bytes as f64);
    e.counter(
        "weir_log_segments_created_total",
        "Segment files started, by how: \"new\" (created) or \"recycled\" (a file retention deleted, renamed; its blocks are written already).",
    )
    .sample(&[("how", "new")], all.segments_created as f64)
    .sample(&[("how", "recycled")], all.segments_recycled as f64);
    add_histogram(
        &mut e.histogram(
            "weir_log_roll_duration_seconds",
            "Duration of one segment roll (the old segment sealed and synced, the next started), during which its partition's appends wait.",
        ),
        &[],
        &all.roll_latency,
    );
    e.counter(
        "weir_log_flushes_total",
        "O_DIRECT write (and fdatasync, per durability mode) cycles of partition logs (LogFlushRateAndTimeMs).",
    )
    .sample(&[], all.flushes as f64);
    add_histogram(
        &mut e.histogram(
            "weir_log_flush_duration_seconds",
            "Duration of one flush cycle (write plus fdatasync).",
        ),
        &[],
        &all.flush_latency,
    );

    let g = &all.gauges;
    let gauges: [(&str, &str, u64); 8] = [
        (
            "weir_replica_max_lag",
            "Largest lag in records of a follower behind this node's log end, over the partitions it leads (MaxLag).",
            g.max_follower_lag,
        ),
        (
            "weir_partitions",
            "Partition replicas hosted by this node (PartitionCount).",
            g.partitions,
        ),
        (
            "weir_leader_partitions",
            "Partitions this node leads (LeaderCount).",
            g.leader_partitions,
        ),
        (
            "weir_under_replicated_partitions",
            "Led partitions whose ISR is smaller than their replica set (UnderReplicatedPartitions).",
            g.under_replicated_partitions,
        ),
        (
            "weir_offline_partitions",
            "Hosted partitions that stopped after a storage failure (OfflinePartitionsCount).",
            g.offline_partitions,
        ),
        (
            "weir_batch_cache_bytes",
            "Bytes held by the shards' hot-tail batch caches.",
            g.batch_cache_bytes,
        ),
        (
            "weir_fetch_purgatory_size",
            "Fetch requests parked waiting for data (fetch purgatory size).",
            g.fetch_waiters,
        ),
        (
            "weir_produce_purgatory_size",
            "Produce requests (acks 1 or all) parked waiting for their appends to become durable (produce purgatory size).",
            g.produce_waiters,
        ),
    ];
    for (name, help, v) in gauges {
        e.gauge(name, help).sample(&[], v as f64);
    }
    e.gauge("weir_connections_open", "Kafka client connections open.")
        .sample(&[], all.connections_opened.saturating_sub(all.connections_closed) as f64);

    let mut f = e.gauge(
        "weir_consumer_group_lag",
        "Records between a group's committed offset and the partition's high watermark, for groups coordinated by this node and partitions it leads.",
    );
    for (group, topic, partition, committed) in &g.committed_offsets {
        if let Some(hw) = g.high_watermarks.get(&(topic.clone(), *partition)) {
            let lag = (*hw - *committed).max(0);
            f.sample(
                &[("group", group), ("topic", topic), ("partition", &partition.to_string())],
                lag as f64,
            );
        }
    }

    let spaces: Vec<_> = data_dirs
        .iter()
        .map(|d| (d.display().to_string(), crate::storage::space::statvfs_space(d)))
        .collect();
    let mut f =
        e.gauge("weir_data_dir_bytes_used", "Bytes used on the filesystem of each data directory.");
    for (d, s) in &spaces {
        if let Some((used, _)) = s {
            f.sample(&[("dir", d)], *used as f64);
        }
    }
    let mut f = e.gauge(
        "weir_data_dir_bytes_free",
        "Bytes available to the node on the filesystem of each data directory.",
    );
    for (d, s) in &spaces {
        if let Some((_, free)) = s {
            f.sample(&[("dir", d)], *free as f64);
        }
    }
    e.gauge(
        "weir_data_dir_min_free_bytes",
        "The free-space threshold (data_dir_min_free_bytes) below which appends stop.",
    )
    .sample(&[], min_free_bytes as f64);
    // The shards' own state, not a fresh statvfs: a shard blocks on its
    // running estimate (free space minus what it appended since the last
    // reading), which the filesystem may not show yet.
    let mut f = e.gauge(
        "weir_data_dir_appends_blocked",
        "1 while a data directory refuses appends (on any shard) because its free space is below data_dir_min_free_bytes.",
    );
    for (d, path) in spaces.iter().map(|(d, _)| d).zip(data_dirs) {
        f.sample(&[("dir", d)], f64::from(u8::from(g.blocked_dirs.contains(path))));
    }
    e.render()
}

/// Serves `GET /metrics` from a plain thread (see
/// [`weir_controller::metrics::serve_http`]). Each scrape asks every shard for
/// a snapshot through its job inbox. With the controller in this process
/// (`weir dev`), its metrics are served here too: one endpoint per process.
pub fn serve_thread(
    listener: std::net::TcpListener,
    shards: Vec<flume::Sender<crate::shard::Job>>,
    node_id: i32,
    data_dirs: Vec<std::path::PathBuf>,
    min_free_bytes: u64,
    controller: Option<weir_controller::ControllerHandle>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    weir_controller::metrics::serve_http(listener, "weir-metrics", move || {
        let mut text = render(node_id, &gather(&shards), &data_dirs, min_free_bytes);
        if let Some(c) = &controller {
            text.push_str(&weir_controller::metrics::render(&c.image(), true));
        }
        text
    })
}

fn gather(shards: &[flume::Sender<crate::shard::Job>]) -> Vec<ShardMetrics> {
    let replies: Vec<_> = shards
        .iter()
        .filter_map(|inbox| {
            let (tx, rx) = futures::channel::oneshot::channel();
            let job: crate::shard::Job = Box::new(move |shard: Rc<Shard>| {
                Box::pin(async move {
                    let _ = tx.send(snapshot(&shard));
                })
            });
            inbox.send(job).ok().map(|_| rx)
        })
        .collect();
    replies.into_iter().filter_map(|rx| futures::executor::block_on(rx).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_in_the_text() {
        let mut m = ShardMetrics::default();
        let h = &mut m.requests.entry(0).or_default().total;
        h.observe(0.0002);
        h.observe(0.003);
        h.observe(20.0);
        let text = render(1, &[m.clone(), m], &[], 0);
        assert!(text.contains("weir_requests_total{api=\"Produce\"} 6"), "{text}");
        let bucket = |le: &str, n: u64| {
            format!("weir_request_duration_seconds_bucket{{api=\"Produce\",le=\"{le}\"}} {n}\n")
        };
        assert!(text.contains(&bucket("0.0001", 0)), "{text}");
        assert!(text.contains(&bucket("0.00025", 2)), "{text}");
        assert!(text.contains(&bucket("0.005", 4)), "{text}");
        assert!(text.contains(&bucket("10", 4)), "{text}");
        assert!(text.contains(&bucket("+Inf", 6)), "{text}");
    }

    #[test]
    fn consumer_lag_is_the_high_watermark_minus_the_committed_offset() {
        let mut coordinator_shard = ShardMetrics::default();
        coordinator_shard.gauges.committed_offsets =
            vec![("g".into(), "t".into(), 0, 40), ("g".into(), "t".into(), 1, 5)];
        let mut leader_shard = ShardMetrics::default();
        leader_shard.gauges.high_watermarks.insert(("t".into(), 0), 100);
        let text = render(1, &[coordinator_shard, leader_shard], &[], 0);
        assert!(
            text.contains("weir_consumer_group_lag{group=\"g\",partition=\"0\",topic=\"t\"} 60\n")
                || text.contains(
                    "weir_consumer_group_lag{group=\"g\",topic=\"t\",partition=\"0\"} 60\n"
                ),
            "{text}"
        );
        assert!(!text.contains("partition=\"1\""), "no lag for a partition led elsewhere: {text}");
    }
}
