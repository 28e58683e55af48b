//! Workloads driven through rdkafka against one broker ("target").
//!
//! Producers are open loop when a rate is given: record `i` of a producer is
//! due at `start + i / rate`, and its latency is measured from that intended
//! time, not from when the client got round to sending it, so a stalled broker
//! shows up as latency instead of silently lowering the offered load
//! (coordinated omission). Without a rate they send as fast as the client's
//! bounded queue (`queue.buffering.max.messages` / `max.kbytes`) lets them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

use crate::admin::Admin;
use crate::procstat::{self, ProcSample};
use crate::recorder::{Percentiles, Recorder, Shard, Totals, WindowStats};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// Produce only: throughput and produce (ack) latency against stored data.
    Produce,
    /// Produce, with consumers reading the tail at the same time.
    Tail,
    /// Produce a backlog first, then consume it from the beginning (cold reads).
    Backlog,
    /// End-to-end latency: from intended send time to receipt by a consumer.
    E2e,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Produce => "produce",
            Workload::Tail => "tail",
            Workload::Backlog => "backlog",
            Workload::E2e => "e2e",
        }
    }
}

/// What the clients do (a preset fills these; flags override).
#[derive(Clone, Debug)]
pub struct Params {
    pub workload: Workload,
    pub record_size: usize,
    pub partitions: i32,
    pub producers: usize,
    pub consumers: usize,
    pub acks: String,
    pub compression: String,
    pub linger_ms: f64,
    pub batch_size: usize,
    /// Records per second over all producers; `None`: as fast as possible.
    pub rate: Option<f64>,
}

impl Default for Params {
    /// Without a preset: 1 KiB records to 16 partitions, acks=all, linger
    /// 1 ms, as fast as possible.
    fn default() -> Params {
        Params {
            workload: Workload::Produce,
            record_size: 1024,
            partitions: 16,
            producers: 1,
            consumers: 1,
            acks: "all".into(),
            compression: "none".into(),
            linger_ms: 1.0,
            batch_size: 1 << 20,
            rate: None,
        }
    }
}

/// One broker to drive.
#[derive(Clone, Debug)]
pub struct Target {
    pub name: String,
    pub bootstrap: String,
    /// Broker process to sample CPU and disk of (when on this machine).
    pub pid: Option<u32>,
}

/// How a run is bounded and observed.
#[derive(Clone, Debug)]
pub struct RunOpts {
    pub params: Params,
    pub topic: String,
    pub replication: i32,
    /// Produce until this many bytes (record values) were acknowledged.
    pub stored_bytes: u64,
    /// Stop each phase after this long, whatever was stored.
    pub duration: Option<Duration>,
    pub window: Duration,
    /// Topic `retention.bytes` (per partition), so deletion runs during the test.
    pub retention_bytes: Option<u64>,
    /// Topic `segment.bytes`, so retention has whole segments to delete.
    pub segment_bytes: Option<u64>,
    pub max_inflight_messages: u64,
    pub max_inflight_kbytes: u64,
    pub keep_topic: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Produce,
    Consume,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Produce => "produce",
            Phase::Consume => "consume",
        }
    }
}

/// One window of one phase.
#[derive(Clone, Debug)]
pub struct Row {
    pub phase: Phase,
    pub window: u32,
    /// End of the window, seconds since the target's run began.
    pub elapsed_s: f64,
    /// Length of the window in seconds.
    pub secs: f64,
    /// Bytes acknowledged by the broker so far (the stored-data axis).
    pub stored_bytes: u64,
    pub stats: WindowStats,
    /// Node counters' growth during the window.
    pub node: Option<ProcSample>,
    /// The producers offered load through the whole window (none had stopped
    /// or run out of budget): only such windows show the broker's steady rate.
    pub loaded: bool,
}

/// A phase's totals.
#[derive(Clone, Debug)]
pub struct PhaseSummary {
    pub phase: Phase,
    pub secs: f64,
    pub totals: Totals,
    /// Node counters' growth during the phase.
    pub node: Option<ProcSample>,
    /// CPU seconds this harness (the clients) used during the phase: when it
    /// nears the machine's cores, the client, not the broker, is the limit.
    pub client_cpu_s: f64,
    /// Seconds this harness's threads waited for a CPU during the phase.
    pub client_cpu_wait_s: f64,
    /// Open loop only: how late the producers handed records to the client
    /// against their schedule (intended send time → `send`). Produce latency
    /// is measured from the intended time, so it includes this.
    pub send_lag: Option<Percentiles>,
}

/// Where the produce phase's CPU went, and how long threads waited for one.
fn cpu_note(name: &str, secs: f64, node: Option<&ProcSample>, client: &ProcSample) -> String {
    let node = node.map_or("node not sampled".to_string(), |n| {
        format!("node {:.1} CPU-s, waited {:.1} s", n.cpu_s, n.cpu_wait_s)
    });
    format!(
        "{name}: produce phase ({secs:.1} s): {node}; client {:.1} CPU-s, waited {:.1} s \
         (waited: seconds its runnable threads spent waiting for a CPU; a wait comparable to the \
         CPU-s means the machine's cores, not the process, set the pace)",
        client.cpu_s, client.cpu_wait_s
    )
}

/// This harness's own counters so far (CPU seconds, waits for a CPU).
fn own_sample() -> ProcSample {
    procstat::sample(std::process::id()).unwrap_or_default()
}

#[derive(Clone, Debug)]
pub struct TargetResult {
    pub target: Target,
    pub rows: Vec<Row>,
    pub phases: Vec<PhaseSummary>,
    pub notes: Vec<String>,
    /// The broker process was sampled and exited during the run.
    pub node_died: bool,
    /// Records retention had deleted by the end of the produce phase (the
    /// partitions' log-start offsets); `None` without retention or answer.
    pub deleted_records: Option<u64>,
}

/// The broker pid for `target`: given, or found from a local listening port.
pub fn resolve_pid(target: &Target) -> Option<u32> {
    if target.pid.is_some() {
        return target.pid;
    }
    let first = target.bootstrap.split(',').next()?;
    let (host, port) = first.rsplit_once(':')?;
    let host = host.trim_matches(['[', ']']);
    let local =
        host == "localhost" || host == "::1" || host.starts_with("127.") || host == "0.0.0.0";
    if !local {
        return None;
    }
    procstat::find_pid_by_port(port.parse().ok()?)
}

struct DeliveryCtx {
    shard: Arc<Shard>,
    base: Instant,
    record_size: u64,
}

impl ClientContext for DeliveryCtx {}

impl ProducerContext for DeliveryCtx {
    /// The record's intended send time, in ns since `base`.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, intended_ns: usize) {
        match result {
            Ok(_) => {
                let now = self.base.elapsed().as_nanos() as u64;
                let lat_us = now.saturating_sub(intended_ns as u64) / 1000;
                self.shard.record(self.record_size, Some(lat_us));
            }
            Err(_) => self.shard.error(),
        }
    }
}

fn producer_config(bootstrap: &str, p: &Params, o: &RunOpts) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("acks", &p.acks)
        .set("compression.type", &p.compression)
        .set("linger.ms", format!("{}", p.linger_ms))
        .set("batch.size", p.batch_size.to_string())
        .set(
            "message.max.bytes",
            (p.batch_size.max(p.record_size) + 4096).max(1_000_000).to_string(),
        )
        .set("queue.buffering.max.messages", o.max_inflight_messages.to_string())
        .set("queue.buffering.max.kbytes", o.max_inflight_kbytes.to_string())
        .set("message.timeout.ms", "120000");
    c
}

fn consumer_config(bootstrap: &str, group: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("queued.min.messages", "1000000")
        .set("fetch.queue.backoff.ms", "10");
    c
}

/// Incompressible payload (xorshift), so compression settings are honest.
fn payload(size: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

struct ProducerJob {
    producer: ThreadedProducer<DeliveryCtx>,
    topic: String,
    record_size: usize,
    rate: Option<f64>,
    start: Instant,
    base: Instant,
    /// Bytes still to enqueue, shared by all producers.
    budget: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    shard: Arc<Shard>,
    /// Open loop: where the lag behind the schedule is recorded.
    lag: Option<Arc<Shard>>,
    seed: u64,
}

impl ProducerJob {
    fn run(self) {
        let mut buf = payload(self.record_size, self.seed);
        let stamp = self.record_size >= 8;
        let mut i: u64 = 0;
        'outer: while !self.stop.load(Ordering::Relaxed) {
            if self.budget.fetch_sub(self.record_size as i64, Ordering::Relaxed) <= 0 {
                break;
            }
            let intended = match self.rate {
                Some(r) => {
                    let due = self.start + Duration::from_secs_f64(i as f64 / r);
                    let now = Instant::now();
                    // Sleep only when ahead by more than timer slack; being a
                    // little early is harmless, spinning would steal the
                    // broker's CPU.
                    if due > now + Duration::from_micros(200) {
                        std::thread::sleep(due - now);
                    }
                    due
                }
                None => Instant::now(),
            };
            if let Some(lag) = &self.lag {
                let late = Instant::now().saturating_duration_since(intended);
                lag.record(0, Some(late.as_micros() as u64));
            }
            let ns = intended.saturating_duration_since(self.base).as_nanos() as u64;
            if stamp {
                buf[..8].copy_from_slice(&ns.to_le_bytes());
            }
            let mut rec: BaseRecord<'_, (), [u8], usize> =
                BaseRecord::with_opaque_to(&self.topic, ns as usize).payload(&buf[..]);
            loop {
                match self.producer.send(rec) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        if self.stop.load(Ordering::Relaxed) {
                            break 'outer;
                        }
                        rec = r;
                        std::thread::sleep(Duration::from_micros(500));
                    }
                    Err(_) => {
                        self.shard.error();
                        break;
                    }
                }
            }
            i += 1;
        }
        let _ = self.producer.flush(Duration::from_secs(30));
        self.done.fetch_add(1, Ordering::Relaxed);
    }
}

struct ConsumerJob {
    consumer: BaseConsumer,
    stop: Arc<AtomicBool>,
    base: Instant,
    shard: Arc<Shard>,
    e2e: bool,
}

impl ConsumerJob {
    fn run(self) {
        while !self.stop.load(Ordering::Relaxed) {
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    let p = m.payload().unwrap_or(&[]);
                    let lat = if self.e2e && p.len() >= 8 {
                        let sent = u64::from_le_bytes(p[..8].try_into().expect("8 bytes"));
                        let now = self.base.elapsed().as_nanos() as u64;
                        Some(now.saturating_sub(sent) / 1000)
                    } else {
                        None
                    };
                    self.shard.record(p.len() as u64, lat);
                }
                Some(Err(_)) => self.shard.error(),
                None => {}
            }
        }
    }
}

/// Samples recorders and the node once a window.
struct Sampler {
    pid: Option<u32>,
    window: Duration,
    run_start: Instant,
    last_tick: Instant,
    node_last: Option<ProcSample>,
    windows: u32,
    stored: u64,
    rows: Vec<Row>,
    /// Set when the broker process was being sampled and has gone.
    node_died: bool,
    /// Copied into the rows of the next tick (see [`Row::loaded`]).
    loaded: bool,
}

impl Sampler {
    /// Drains `recs` into rows for the window that ends now.
    fn tick(&mut self, recs: &mut [(Phase, &mut Recorder)]) -> Vec<WindowStats> {
        let now = Instant::now();
        let secs = now.duration_since(self.last_tick).as_secs_f64();
        self.last_tick = now;
        let node_now = self.pid.and_then(procstat::sample);
        let node = match (node_now, self.node_last) {
            (Some(n), Some(l)) => Some(n.since(&l)),
            _ => None,
        };
        if node_now.is_some() {
            self.node_last = node_now;
        } else if self.pid.is_some() {
            self.node_died = true;
        }
        let mut out = Vec::new();
        for (phase, rec) in recs.iter_mut() {
            let stats = rec.drain();
            if *phase == Phase::Produce {
                self.stored += stats.bytes;
            }
            self.rows.push(Row {
                phase: *phase,
                window: self.windows,
                elapsed_s: now.duration_since(self.run_start).as_secs_f64(),
                secs,
                stored_bytes: self.stored,
                stats,
                node,
                loaded: self.loaded,
            });
            out.push(stats);
        }
        self.windows += 1;
        out
    }

    fn sleep_to_next(&self) {
        let next = self.last_tick + self.window;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
    }
}

fn bar(mp: &MultiProgress, prefix: String, total: u64) -> ProgressBar {
    let pb = mp.add(ProgressBar::new(total));
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix:>18} [{elapsed_precise}] {bar:30.cyan/blue} {bytes}/{total_bytes} {msg}",
        )
        .expect("template")
        .progress_chars("=>-"),
    );
    pb.set_prefix(prefix);
    pb
}

fn fmt_window(w: &WindowStats, secs: f64) -> String {
    format!(
        "{:.1} MB/s {:.0} rec/s p99 {:.2} ms",
        w.bytes as f64 / 1e6 / secs.max(1e-9),
        w.records as f64 / secs.max(1e-9),
        w.latency.p99_us as f64 / 1000.0
    )
}

/// Runs the configured workload against one target.
pub fn run_target(target: &Target, o: &RunOpts, mp: &MultiProgress) -> Result<TargetResult> {
    let p = &o.params;
    if p.workload == Workload::E2e && p.record_size < 8 {
        bail!("e2e needs --record-size >= 8 (the send time travels in the payload)");
    }
    let mut notes = Vec::new();
    let pid = resolve_pid(target);
    if pid.is_none() {
        notes.push(format!(
            "{}: broker process not found on this machine; no CPU or disk counters",
            target.name
        ));
    }
    let admin = Admin::connect(&target.bootstrap)?;
    let mut configs = Vec::new();
    if let Some(r) = o.retention_bytes {
        configs.push(("retention.bytes".to_string(), r.to_string()));
    }
    if let Some(s) = o.segment_bytes {
        configs.push(("segment.bytes".to_string(), s.to_string()));
    }
    if let Err(e) = admin.ensure_topic(&o.topic, p.partitions, o.replication, &configs) {
        if configs.is_empty() {
            return Err(e);
        }
        notes.push(format!("{}: topic configs not applied ({e:#}); retrying without", target.name));
        admin.ensure_topic(&o.topic, p.partitions, o.replication, &[])?;
    }

    let base = Instant::now();
    let run_start = Instant::now();
    let mut sampler = Sampler {
        pid,
        window: o.window,
        run_start,
        last_tick: run_start,
        node_last: pid.and_then(procstat::sample),
        windows: 0,
        stored: 0,
        rows: Vec::new(),
        node_died: false,
        loaded: false,
    };
    let mut phases = Vec::new();

    // Tailing consumers start first, positioned at the end.
    let tailing = matches!(p.workload, Workload::Tail | Workload::E2e);
    let mut consume_rec = Recorder::new();
    let consume_stop = Arc::new(AtomicBool::new(false));
    let mut consumer_threads: Vec<JoinHandle<()>> = Vec::new();
    if tailing {
        consumer_threads =
            start_consumers(target, o, Offset::End, base, &consume_stop, &mut consume_rec)?;
        std::thread::sleep(Duration::from_millis(1500));
        consume_rec.drain();
    }

    // Produce phase.
    let mut produce_rec = Recorder::new();
    let mut lag_rec = Recorder::new();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let budget = Arc::new(AtomicI64::new(o.stored_bytes.min(i64::MAX as u64) as i64));
    let phase_start = Instant::now();
    let node_start = pid.and_then(procstat::sample);
    let client_start = own_sample();
    // Windows start with the phase (not with the consumers' warm-up).
    sampler.last_tick = phase_start;
    sampler.node_last = node_start;
    let mut threads = Vec::new();
    for i in 0..p.producers {
        let shard = produce_rec.shard();
        let ctx = DeliveryCtx { shard: shard.clone(), base, record_size: p.record_size as u64 };
        let producer: ThreadedProducer<DeliveryCtx> = producer_config(&target.bootstrap, p, o)
            .create_with_context(ctx)
            .context("producer")?;
        let job = ProducerJob {
            producer,
            topic: o.topic.clone(),
            record_size: p.record_size,
            rate: p.rate.map(|r| r / p.producers as f64),
            start: phase_start,
            base,
            budget: budget.clone(),
            stop: stop.clone(),
            done: done.clone(),
            shard,
            lag: p.rate.is_some().then(|| lag_rec.shard()),
            seed: 0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1),
        };
        threads.push(
            std::thread::Builder::new().name(format!("produce-{i}")).spawn(move || job.run())?,
        );
    }
    let pb = bar(mp, format!("{} produce", target.name), o.stored_bytes);
    loop {
        sampler.sleep_to_next();
        let finished = done.load(Ordering::Relaxed) == p.producers;
        // Budget is taken before a record is enqueued: while some is left,
        // every producer was still offering load.
        sampler.loaded =
            !finished && !stop.load(Ordering::Relaxed) && budget.load(Ordering::Relaxed) > 0;
        let w = if tailing {
            sampler
                .tick(&mut [(Phase::Produce, &mut produce_rec), (Phase::Consume, &mut consume_rec)])
        } else {
            sampler.tick(&mut [(Phase::Produce, &mut produce_rec)])
        };
        pb.set_position(sampler.stored.min(o.stored_bytes));
        pb.set_message(fmt_window(&w[0], o.window.as_secs_f64()));
        let timed_out = o.duration.is_some_and(|d| phase_start.elapsed() >= d);
        if finished {
            break;
        }
        if sampler.node_died && !stop.load(Ordering::Relaxed) {
            notes.push(format!(
                "{}: the broker process (pid {}) exited during the produce phase; run cut short",
                target.name,
                pid.unwrap_or(0)
            ));
        }
        if timed_out || sampler.node_died {
            stop.store(true, Ordering::Relaxed);
        }
    }
    sampler.loaded = false;
    for t in threads {
        let _ = t.join();
    }
    let secs = phase_start.elapsed().as_secs_f64();
    let node_end = pid.and_then(procstat::sample);
    let client = own_sample().since(&client_start);
    if tailing {
        // Let consumers catch up with what was acknowledged, then stop them.
        let deadline = Instant::now() + Duration::from_secs(5);
        while consume_rec_total(&sampler.rows) < sampler.stored && Instant::now() < deadline {
            sampler.sleep_to_next();
            sampler.tick(&mut [
                (Phase::Produce, &mut produce_rec),
                (Phase::Consume, &mut consume_rec),
            ]);
        }
        consume_stop.store(true, Ordering::Relaxed);
        for t in consumer_threads.drain(..) {
            let _ = t.join();
        }
        sampler.tick(&mut [(Phase::Produce, &mut produce_rec), (Phase::Consume, &mut consume_rec)]);
    } else {
        sampler.tick(&mut [(Phase::Produce, &mut produce_rec)]);
    }
    pb.finish();
    let node = node_start.zip(node_end).map(|(s, e)| e.since(&s));
    let send_lag = p.rate.is_some().then(|| {
        lag_rec.drain();
        lag_rec.totals().latency
    });
    notes.push(cpu_note(&target.name, secs, node.as_ref(), &client));
    if let Some(lag) = &send_lag {
        let ms = |us: u64| us as f64 / 1000.0;
        notes.push(format!(
            "{}: open loop: the producers handed records to the client {:.2} ms (p50), {:.2} ms \
             (p99), {:.2} ms (max) after their intended send time; produce latency includes \
             this lag of the client itself",
            target.name,
            ms(lag.p50_us),
            ms(lag.p99_us),
            ms(lag.max_us)
        ));
    }
    phases.push(PhaseSummary {
        phase: Phase::Produce,
        secs,
        totals: produce_rec.totals(),
        node,
        client_cpu_s: client.cpu_s,
        client_cpu_wait_s: client.cpu_wait_s,
        send_lag,
    });
    if tailing {
        // The node's counters cover both; they are reported once, on the produce line.
        phases.push(PhaseSummary {
            phase: Phase::Consume,
            secs,
            totals: consume_rec.totals(),
            node: None,
            client_cpu_s: 0.0,
            client_cpu_wait_s: 0.0,
            send_lag: None,
        });
    }

    // Whether retention deleted anything while the phase wrote.
    let deleted_records = match o.retention_bytes {
        Some(_) if !sampler.node_died => match watermarks(target, o) {
            Ok((log_start, _)) => Some(log_start),
            Err(e) => {
                notes.push(format!("{}: log-start offsets not read: {e:#}", target.name));
                None
            }
        },
        _ => None,
    };

    // Backlog: read everything back from the beginning.
    if p.workload == Workload::Backlog {
        let phase = consume_backlog(target, o, base, &mut sampler, mp)?;
        phases.push(phase);
    }

    let node_died = sampler.node_died;
    if node_died && !notes.iter().any(|n| n.contains("exited")) {
        notes.push(format!(
            "{}: the broker process (pid {}) exited during the run",
            target.name,
            pid.unwrap_or(0)
        ));
    }
    if !o.keep_topic
        && !node_died
        && let Err(e) = admin.delete_topic(&o.topic)
    {
        notes.push(format!("{}: topic not deleted: {e:#}", target.name));
    }
    Ok(TargetResult {
        target: target.clone(),
        rows: sampler.rows,
        phases,
        notes,
        node_died,
        deleted_records,
    })
}

/// Sums over the topic's partitions: (log-start offsets, records between the
/// watermarks). Gives up at the first partition without an answer (10 s).
fn watermarks(target: &Target, o: &RunOpts) -> Result<(u64, u64)> {
    let probe: BaseConsumer = consumer_config(&target.bootstrap, "weir-bench-probe").create()?;
    let (mut start, mut available) = (0u64, 0u64);
    for part in 0..o.params.partitions {
        let (lo, hi) = probe.fetch_watermarks(&o.topic, part, Duration::from_secs(10))?;
        start += lo.max(0) as u64;
        available += (hi - lo).max(0) as u64;
    }
    Ok((start, available))
}

fn consume_rec_total(rows: &[Row]) -> u64 {
    rows.iter().filter(|r| r.phase == Phase::Consume).map(|r| r.stats.bytes).sum()
}

fn start_consumers(
    target: &Target,
    o: &RunOpts,
    offset: Offset,
    base: Instant,
    stop: &Arc<AtomicBool>,
    rec: &mut Recorder,
) -> Result<Vec<JoinHandle<()>>> {
    let p = &o.params;
    let n = p.consumers.max(1);
    let group = format!("weir-bench-{}-{}", std::process::id(), o.topic);
    let mut threads = Vec::new();
    for i in 0..n {
        let consumer: BaseConsumer = consumer_config(&target.bootstrap, &group).create()?;
        let mut tpl = TopicPartitionList::new();
        for part in (0..p.partitions).filter(|q| *q as usize % n == i) {
            tpl.add_partition_offset(&o.topic, part, offset)?;
        }
        consumer.assign(&tpl)?;
        let job = ConsumerJob {
            consumer,
            stop: stop.clone(),
            base,
            shard: rec.shard(),
            e2e: p.workload == Workload::E2e,
        };
        threads.push(
            std::thread::Builder::new().name(format!("consume-{i}")).spawn(move || job.run())?,
        );
    }
    Ok(threads)
}

fn consume_backlog(
    target: &Target,
    o: &RunOpts,
    base: Instant,
    sampler: &mut Sampler,
    mp: &MultiProgress,
) -> Result<PhaseSummary> {
    let p = &o.params;
    // How much there is to read: the sum of the partitions' watermarks.
    let (_, want_records) = watermarks(target, o)?;
    let mut rec = Recorder::new();
    let stop = Arc::new(AtomicBool::new(false));
    let phase_start = Instant::now();
    let node_start = sampler.pid.and_then(procstat::sample);
    let client_start = own_sample();
    let threads = start_consumers(target, o, Offset::Beginning, base, &stop, &mut rec)?;
    let pb = bar(mp, format!("{} backlog", target.name), want_records * p.record_size as u64);
    let mut got = 0u64;
    let mut last_progress = Instant::now();
    loop {
        sampler.sleep_to_next();
        let w = sampler.tick(&mut [(Phase::Consume, &mut rec)]);
        got += w[0].records;
        if w[0].records > 0 {
            last_progress = Instant::now();
        }
        pb.set_position(got * p.record_size as u64);
        pb.set_message(fmt_window(&w[0], o.window.as_secs_f64()));
        let timed_out = o.duration.is_some_and(|d| phase_start.elapsed() >= d);
        if got >= want_records
            || timed_out
            || sampler.node_died
            || last_progress.elapsed() > Duration::from_secs(15)
        {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    sampler.tick(&mut [(Phase::Consume, &mut rec)]);
    pb.finish();
    let node_end = sampler.pid.and_then(procstat::sample);
    let client = own_sample().since(&client_start);
    Ok(PhaseSummary {
        phase: Phase::Consume,
        secs: phase_start.elapsed().as_secs_f64(),
        totals: rec.totals(),
        node: node_start.zip(node_end).map(|(s, e)| e.since(&s)),
        client_cpu_s: client.cpu_s,
        client_cpu_wait_s: client.cpu_wait_s,
        send_lag: None,
    })
}
