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
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::rc::Rc;

/// Upper bounds (seconds) of the latency histogram buckets.
pub const LATENCY_BUCKETS_S: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

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
    pub offline_partitions: u64,
    pub batch_cache_bytes: u64,
    pub fetch_waiters: u64,
    /// Data directories this shard currently refuses appends to.
    pub blocked_dirs: std::collections::BTreeSet<std::path::PathBuf>,
}

/// One shard's counters. Owned by that shard's thread (thread-local).
#[derive(Debug, Clone, Default)]
pub struct ShardMetrics {
    /// By Kafka API key: requests and their total time.
    pub requests: BTreeMap<i16, Histogram>,
    pub topics: BTreeMap<String, TopicCounters>,
    pub flushes: u64,
    pub flush_latency: Histogram,
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
        self.flush_latency.merge(&other.flush_latency);
        self.connections_opened += other.connections_opened;
        self.connections_closed += other.connections_closed;
        let (g, o) = (&mut self.gauges, &other.gauges);
        g.partitions += o.partitions;
        g.leader_partitions += o.leader_partitions;
        g.under_replicated_partitions += o.under_replicated_partitions;
        g.offline_partitions += o.offline_partitions;
        g.batch_cache_bytes += o.batch_cache_bytes;
        g.fetch_waiters += o.fetch_waiters;
        g.blocked_dirs.extend(o.blocked_dirs.iter().cloned());
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
        ..Default::default()
    };
    for (tp, p) in partitions.iter() {
        let Some(view) =
            md.topics.get(&tp.topic).and_then(|t| t.partitions.get(tp.partition.0 as usize))
        else {
            continue;
        };
        if view.leader == shard.node_id {
            g.leader_partitions += 1;
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

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    let sep = if labels.is_empty() { "" } else { "," };
    let mut cumulative = 0;
    for (i, b) in LATENCY_BUCKETS_S.iter().enumerate() {
        cumulative += h.buckets[i];
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", h.count);
    let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
    let _ = writeln!(out, "{name}_sum{braces} {}", h.sum_s);
    let _ = writeln!(out, "{name}_count{braces} {}", h.count);
}

/// A per-topic counter: name, help, and how to read it.
type TopicMetric = (&'static str, &'static str, fn(&TopicCounters) -> u64);

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Renders the merged metrics of all shards in the Prometheus text format.
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
    let mut out = String::with_capacity(8192);
    header(
        &mut out,
        "weir_node_info",
        "gauge",
        "Constant 1, labelled with the node id and the shard count.",
    );
    let _ = writeln!(out, "weir_node_info{{node_id=\"{node_id}\",shards=\"{}\"}} 1", shards.len());

    header(&mut out, "weir_requests_total", "counter", "Kafka requests handled, by API.");
    for (k, h) in &all.requests {
        let _ = writeln!(out, "weir_requests_total{{api=\"{}\"}} {}", api_name(*k), h.count);
    }
    header(
        &mut out,
        "weir_request_duration_seconds",
        "histogram",
        "Time from a request's arrival to its response being ready, by API.",
    );
    for (k, h) in &all.requests {
        histogram(
            &mut out,
            "weir_request_duration_seconds",
            &format!("api=\"{}\"", api_name(*k)),
            h,
        );
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
        header(&mut out, name, "counter", help);
        for (t, c) in &all.topics {
            let _ = writeln!(out, "{name}{{topic=\"{}\"}} {}", escape(t), get(c));
        }
    }

    header(
        &mut out,
        "weir_log_flushes_total",
        "counter",
        "O_DIRECT write (and fdatasync, per durability mode) cycles of partition logs.",
    );
    let _ = writeln!(out, "weir_log_flushes_total {}", all.flushes);
    header(
        &mut out,
        "weir_log_flush_duration_seconds",
        "histogram",
        "Duration of one flush cycle (write plus fdatasync).",
    );
    histogram(&mut out, "weir_log_flush_duration_seconds", "", &all.flush_latency);

    let g = &all.gauges;
    let gauges: [(&str, &str, u64); 6] = [
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
    ];
    for (name, help, v) in gauges {
        header(&mut out, name, "gauge", help);
        let _ = writeln!(out, "{name} {v}");
    }
    header(&mut out, "weir_connections_open", "gauge", "Kafka client connections open.");
    let _ = writeln!(
        out,
        "weir_connections_open {}",
        all.connections_opened.saturating_sub(all.connections_closed)
    );

    header(
        &mut out,
        "weir_data_dir_bytes_used",
        "gauge",
        "Bytes used on the filesystem of each data directory.",
    );
    let spaces: Vec<_> =
        data_dirs.iter().map(|d| (d, crate::storage::space::statvfs_space(d))).collect();
    for (d, s) in &spaces {
        if let Some((used, _)) = s {
            let _ = writeln!(
                out,
                "weir_data_dir_bytes_used{{dir=\"{}\"}} {used}",
                escape(&d.display().to_string())
            );
        }
    }
    header(
        &mut out,
        "weir_data_dir_bytes_free",
        "gauge",
        "Bytes available to the node on the filesystem of each data directory.",
    );
    for (d, s) in &spaces {
        if let Some((_, free)) = s {
            let _ = writeln!(
                out,
                "weir_data_dir_bytes_free{{dir=\"{}\"}} {free}",
                escape(&d.display().to_string())
            );
        }
    }
    header(
        &mut out,
        "weir_data_dir_min_free_bytes",
        "gauge",
        "The free-space threshold (data_dir_min_free_bytes) below which appends stop.",
    );
    let _ = writeln!(out, "weir_data_dir_min_free_bytes {min_free_bytes}");
    header(
        &mut out,
        "weir_data_dir_appends_blocked",
        "gauge",
        "1 while a data directory refuses appends (on any shard) because its free space is below data_dir_min_free_bytes.",
    );
    // The shards' own state, not a fresh statvfs: a shard blocks on its
    // running estimate (free space minus what it appended since the last
    // reading), which the filesystem may not show yet.
    for d in data_dirs {
        let blocked = u8::from(all.gauges.blocked_dirs.contains(d));
        let _ = writeln!(
            out,
            "weir_data_dir_appends_blocked{{dir=\"{}\"}} {blocked}",
            escape(&d.display().to_string())
        );
    }
    out
}

/// Serves `GET /metrics` from a plain thread with an exclusive listener (a
/// glommio listener would set SO_REUSEPORT, and two nodes on one port would
/// then split scrapes silently). Each scrape asks every shard for a snapshot
/// through its job inbox.
pub fn serve_thread(
    listener: std::net::TcpListener,
    shards: Vec<flume::Sender<crate::shard::Job>>,
    node_id: i32,
    data_dirs: Vec<std::path::PathBuf>,
    min_free_bytes: u64,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("weir-metrics".into()).spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            if let Err(e) = answer(stream, &shards, node_id, &data_dirs, min_free_bytes) {
                tracing::debug!("metrics connection: {e}");
            }
        }
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

fn answer(
    mut stream: std::net::TcpStream,
    shards: &[flume::Sender<crate::shard::Job>],
    node_id: i32,
    data_dirs: &[std::path::PathBuf],
    min_free_bytes: u64,
) -> std::io::Result<()> {
    use std::io::{Read, Write};
    stream.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    // Read the request head, bounded: scrapes are tiny.
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 || head.len() + n > 8192 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let (status, body, kind) = if line.starts_with(b"GET /metrics ") || line == b"GET /metrics" {
        let body = render(node_id, &gather(shards), data_dirs, min_free_bytes);
        ("200 OK", body, "text/plain; version=0.0.4; charset=utf-8")
    } else {
        ("404 Not Found", "only /metrics is served here\n".to_string(), "text/plain; charset=utf-8")
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes())?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_in_the_text() {
        let mut m = ShardMetrics::default();
        let h = m.requests.entry(0).or_default();
        h.observe(0.0002);
        h.observe(0.003);
        h.observe(20.0);
        let text = render(1, &[m.clone(), m], &[], 0);
        assert!(text.contains("weir_requests_total{api=\"Produce\"} 6"));
        assert!(
            text.contains("weir_request_duration_seconds_bucket{api=\"Produce\",le=\"0.0005\"} 2")
        );
        assert!(
            text.contains("weir_request_duration_seconds_bucket{api=\"Produce\",le=\"0.005\"} 4")
        );
        assert!(text.contains("weir_request_duration_seconds_bucket{api=\"Produce\",le=\"10\"} 4"));
        assert!(
            text.contains("weir_request_duration_seconds_bucket{api=\"Produce\",le=\"+Inf\"} 6")
        );
    }
}
