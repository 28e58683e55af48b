//! `weir-bench targets`: every phase the performance targets need, run
//! against one broker in one invocation, so that each ratio is taken against
//! a disk ceiling measured by the same invocation on the same machine state.
//!
//! Phases, each written like a `run` under its own name: the disk ceiling;
//! `omb-max` (the `omb-1kb` preset at max rate: targets 1 and 2); `omb-half`
//! (the same at half of omb-max's records/s, open loop, one tailing consumer:
//! 4 and 5); `kreps-100b` (3); `backlog` (produce, then read back cold: 6).

use std::fmt::Write as _;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::MultiProgress;

use crate::disk::{self, DiskOpts, DiskResult};
use crate::workload::{self, Params, Phase, PhaseSummary, Row, RunOpts, Target, TargetResult};
use crate::workload::{Workload, resolve_pid};
use crate::{LoadFlags, parse_size, presets, procstat, report};

#[derive(Args, Debug)]
pub struct TargetsArgs {
    /// The broker: `host:port` or `name=host:port`.
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Broker pid for CPU and disk counters (default: found from the
    /// listening port when the broker runs on this machine).
    #[arg(long)]
    node_pid: Option<u32>,
    /// Prefix of the files written: NAME-summary.md, NAME-omb-max.csv, ...
    #[arg(long, default_value = "targets")]
    name: String,
    /// Bytes the backlog phase produces and then reads back from the
    /// beginning: more than the broker's cache (`weir dev`: 2 shards × 128 MiB).
    #[arg(long, default_value = "1G", value_parser = parse_size)]
    backlog_bytes: u64,
    #[command(flatten)]
    load: LoadFlags,
}

/// Produce MB/s at max rate ÷ the O_DIRECT write ceiling (target 1).
const WRITE_SHARE: f64 = 0.90;
/// Every steady window's MB/s within this share of the median (target 2).
const CURVE_BAND: f64 = 0.05;
/// Windows left out at the start of the curve: connections, metadata, batching ramp up.
const WARMUP_WINDOWS: u32 = 2;
/// 100 B records per second per node core busy (target 3).
const RECORDS_PER_CORE: f64 = 1e6;
const PRODUCE_P99_MS: f64 = 5.0;
const PRODUCE_P999_MS: f64 = 10.0;
const E2E_P99_MS: f64 = 5.0;
/// Cold consume MB/s ÷ the O_DIRECT read ceiling (target 6).
const READ_SHARE: f64 = 0.90;

/// One phase's outcome.
struct PhaseRun {
    name: String,
    opts: RunOpts,
    result: Option<TargetResult>,
    /// Why the phase failed or was not run: its targets are then not judged.
    failed: Option<String>,
}

impl PhaseRun {
    fn outcome(&self) -> Result<&TargetResult, String> {
        match (&self.failed, &self.result) {
            (Some(e), _) => Err(format!("phase `{}`: {e}", self.name)),
            (None, Some(r)) => Ok(r),
            (None, None) => Err(format!("phase `{}` did not run", self.name)),
        }
    }
}

/// Runs the phases one after the other against the same broker.
struct Runner<'a> {
    a: &'a TargetsArgs,
    broker: Target,
    /// The broker process sampled, when known.
    pid: Option<u32>,
    disk: Option<(&'a DiskOpts, &'a [DiskResult])>,
    mp: MultiProgress,
    /// Set once the broker exited: later phases are not run.
    broker_gone: Option<String>,
    /// Report files that could not be written.
    errors: Vec<String>,
}

impl Runner<'_> {
    fn name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.a.name)
    }

    fn opts(&self, suffix: &str, p: Params, stored_bytes: u64) -> RunOpts {
        let topic = format!("weir-bench-{}-{}", self.name(suffix), std::process::id());
        crate::run_opts(p, topic, stored_bytes, &self.a.load)
    }

    fn not_run(&self, suffix: &str, opts: RunOpts, why: String) -> PhaseRun {
        PhaseRun { name: self.name(suffix), opts, result: None, failed: Some(why) }
    }

    /// Runs one phase and writes its CSV, charts and summary (also when the
    /// broker died during it: the partial reports say so).
    fn run(&mut self, suffix: &str, opts: RunOpts) -> PhaseRun {
        if let Some(why) = &self.broker_gone {
            let why = format!("not run: {why}");
            return self.not_run(suffix, opts, why);
        }
        let name = self.name(suffix);
        eprintln!("{name}: {} on {} ...", opts.params.workload.name(), self.broker.bootstrap);
        let r = match workload::run_target(&self.broker, &opts, &self.mp) {
            Ok(r) => r,
            Err(e) => {
                // A broker that is gone fails every later phase slowly (admin timeouts).
                if let Some(pid) = self.pid.filter(|p| procstat::sample(*p).is_none()) {
                    self.broker_gone = Some(format!("the broker process (pid {pid}) is gone"));
                }
                return self.not_run(suffix, opts, format!("failed: {e:#}"));
            }
        };
        let out = &self.a.load.out;
        if let Err(e) =
            report::write_run(out, &name, &opts, std::slice::from_ref(&r), self.disk, &[])
        {
            self.errors.push(format!("{name}: reports not written: {e:#}"));
        }
        for n in &r.notes {
            eprintln!("note: {n}");
        }
        let failed = r.node_died.then(|| {
            let why = format!("the broker process exited during `{name}`");
            self.broker_gone = Some(why.clone());
            format!("{why} (partial results in {name}-summary.md)")
        });
        PhaseRun { name, opts, result: Some(r), failed }
    }
}

fn preset(name: &str) -> Result<Params> {
    Ok(presets::find(name).with_context(|| format!("preset {name}"))?.params)
}

pub fn run(a: TargetsArgs) -> Result<()> {
    let f = &a.load;
    std::fs::create_dir_all(&f.out).with_context(|| format!("create {}", f.out.display()))?;
    let mut broker = crate::broker(&a.bootstrap);
    broker.pid = a.node_pid;
    let pid = resolve_pid(&broker);
    let stored = f.stored_bytes();
    let omb = preset("omb-1kb")?;
    let kreps = preset("kreps-100b")?;

    // The ceiling first, while the broker is idle.
    let dopts = crate::disk_opts(f.disk_dir(), &f.disk);
    let (disk, disk_plots) = match crate::run_disk(&dopts, &f.out, &format!("{}-disk", a.name)) {
        Ok((r, files)) => (Ok(r), files),
        Err(e) => (Err(format!("{e:#}")), Vec::new()),
    };
    let mut runner = Runner {
        a: &a,
        broker,
        pid,
        disk: disk.as_ref().ok().map(|r| (&dopts, r.as_slice())),
        mp: MultiProgress::new(),
        broker_gone: None,
        errors: Vec::new(),
    };

    let max = runner.run("omb-max", runner.opts("omb-max", omb.clone(), stored));
    let half_rate = max
        .outcome()
        .ok()
        .and_then(produce)
        .map(|p| p.totals.records as f64 / p.secs.max(1e-9) / 2.0)
        .filter(|r| *r > 0.0);
    let half_params =
        Params { workload: Workload::E2e, rate: half_rate, consumers: 1, ..omb.clone() };
    let half_opts = runner.opts("omb-half", half_params, stored);
    let half = match half_rate {
        Some(_) => runner.run("omb-half", half_opts),
        None => {
            let why = runner.broker_gone.clone().unwrap_or_else(|| {
                format!("`{}` gave no records/s to take half of", runner.name("omb-max"))
            });
            runner.not_run("omb-half", half_opts, format!("not run: {why}"))
        }
    };
    let kreps = runner.run("kreps-100b", runner.opts("kreps-100b", kreps, stored));
    // The backlog must stay whole to be read back: no retention, whatever the flags say.
    let mut backlog_opts =
        runner.opts("backlog", Params { workload: Workload::Backlog, ..omb }, a.backlog_bytes);
    backlog_opts.retention_bytes = None;
    backlog_opts.segment_bytes = f.segment_bytes;
    let backlog = runner.run("backlog", backlog_opts);

    let ceiling = |pick: fn(&[DiskResult]) -> Option<f64>| {
        disk.as_ref()
            .map_err(|e| format!("no disk ceiling: {e}"))
            .and_then(|d| pick(d).ok_or_else(|| "no disk ceiling: nothing measured".into()))
    };
    let verdicts = [
        produce_share(max.outcome(), ceiling(disk::write_ceiling)),
        flat_curve(max.outcome()),
        records_per_core(kreps.outcome()),
        half_load_latency(
            half.outcome(),
            half.opts.params.rate,
            disk.as_ref().ok().and_then(|d| device_sync_floor(d)),
        ),
        tail_disk_reads(half.outcome(), max.outcome()),
        cold_backlog(backlog.outcome(), ceiling(disk::read_ceiling)),
    ];
    let phases = [(&max, "1, 2"), (&half, "4, 5"), (&kreps, "3"), (&backlog, "6")];

    // What went wrong, said in the summary and by the exit status.
    let mut failures: Vec<String> = Vec::new();
    if let Err(e) = &disk {
        failures.push(format!("disk ceiling: {e}"));
    }
    failures.extend(phases.iter().filter_map(|(p, _)| p.outcome().err()));
    failures.extend(runner.errors.iter().cloned());

    let mut md = format!("# weir-bench: {}\n\n", a.name);
    let _ = writeln!(
        md,
        "Broker `{}` at `{}`, {}. Each phase stops at {:.1} MB acknowledged{} (backlog: {:.1} MB); \
         window {} s; this machine has {} cores.\n",
        runner.broker.name,
        runner.broker.bootstrap,
        pid.map_or("broker process not found: no node CPU or disk counters".into(), |p| {
            format!("node pid {p}")
        }),
        stored as f64 / 1e6,
        f.duration.map_or(String::new(), |d| format!(" or after {d} s")),
        a.backlog_bytes as f64 / 1e6,
        f.window,
        cores(),
    );
    md.push_str("## Phases\n\n| phase | targets | parameters | outcome |\n|---|---|---|---|\n");
    for (p, feeds) in &phases {
        let outcome = match (&p.failed, &p.result) {
            (Some(e), _) => e.clone(),
            (None, _) => format!("[summary]({}-summary.md)", p.name),
        };
        // A phase that did not run has no parameters to show (omb-half's rate is unknown).
        let params = p.result.as_ref().map_or("–".into(), |_| report::params_line(&p.opts));
        let _ = writeln!(md, "| `{}` | {feeds} | {params} | {outcome} |", p.name);
    }
    md.push('\n');
    match &disk {
        Ok(d) => md.push_str(&report::disk_markdown(&dopts, d)),
        Err(e) => {
            let _ = writeln!(md, "## Disk ceiling\n\nFailed: {e}");
        }
    }
    let table = verdict_table(&verdicts);
    let _ = write!(md, "\n## Targets\n\n{table}\n{HOW}\n");
    if !failures.is_empty() {
        md.push_str("\n## Failures\n\n");
        for e in &failures {
            let _ = writeln!(md, "- {e}");
        }
    }
    let _ = writeln!(md, "\n## Phase results\n\n{}\n", report::RESULTS_LEGEND);
    for (p, _) in &phases {
        if let Some(r) = &p.result {
            let _ = writeln!(md, "### {}\n", p.name);
            md.push_str(&report::results_table(std::slice::from_ref(r), runner.disk.map(|d| d.1)));
            md.push('\n');
        }
    }
    if !disk_plots.is_empty() {
        md.push_str("## Plots\n\n");
        md.push_str(&report::plot_links(&disk_plots));
    }
    let path = f.out.join(format!("{}-summary.md", a.name));
    std::fs::write(&path, md).with_context(|| format!("write {}", path.display()))?;

    println!("\n{table}");
    println!("summary: {}", path.display());
    if !failures.is_empty() {
        bail!("{} (what was measured is in {})", failures.join("; "), path.display());
    }
    Ok(())
}

/// How each row is computed, under the table.
const HOW: &str = "\
How: (1) the phase's acknowledged value bytes over its wall time ÷ the best O_DIRECT write \
ceiling above. (2) the MB/s of each window of the same phase in which the producer offered \
load throughout, after the first 2 windows, against the median of those windows. (3) records \
acknowledged ÷ the node's CPU-seconds (records/s per node core busy); bench cores = this \
harness's CPU-seconds ÷ wall time: when bench + node near the machine's cores, the client is \
the limit. (4) percentiles of the whole phase's merged histograms, produce from intended send \
time to acknowledgement, end-to-end from intended send time to receipt. (5) the node process \
tree's read_bytes (/proc/PID/io) over the phase's windows. (6) consume MB/s ÷ the best O_DIRECT \
read ceiling; node disk read from /proc/PID/io.";

/// One row of the targets table.
#[derive(Debug)]
struct Verdict {
    target: &'static str,
    required: String,
    measured: String,
    /// `None`: not judged (phase failed, counter missing).
    met: Option<bool>,
    gap: String,
}

impl Verdict {
    fn not_judged(target: &'static str, required: String, why: String) -> Verdict {
        Verdict { target, required, measured: why, met: None, gap: "not judged".into() }
    }
}

fn verdict_table(v: &[Verdict]) -> String {
    let mut s =
        String::from("| target | required | measured | met? | gap |\n|---|---|---|---|---|\n");
    for v in v {
        let met = match v.met {
            Some(true) => "yes",
            Some(false) => "no",
            None => "n/a",
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {met} | {} |",
            v.target,
            v.required,
            v.measured.replace('|', "/"),
            v.gap.replace('|', "/")
        );
    }
    s
}

fn times(x: f64) -> String {
    if x < 2.0 { format!("{x:.2}×") } else { format!("{x:.1}×") }
}

/// How far `measured` is from a lower bound.
fn gap_at_least(measured: f64, bound: f64) -> String {
    if measured >= bound {
        format!("none ({} the bound)", times(measured / bound))
    } else if measured > 0.0 {
        format!("needs {} more", times(bound / measured))
    } else {
        "nothing measured".into()
    }
}

/// `None` within an upper bound, else how far over it is.
fn over(what: &str, ms: f64, bound: f64) -> Option<String> {
    (ms > bound).then(|| format!("{what} {ms:.1} ms, {} the bound", times(ms / bound)))
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn produce(r: &TargetResult) -> Option<&PhaseSummary> {
    r.phases.iter().find(|p| p.phase == Phase::Produce)
}

fn consume(r: &TargetResult) -> Option<&PhaseSummary> {
    r.phases.iter().find(|p| p.phase == Phase::Consume)
}

fn mb_s(p: &PhaseSummary) -> f64 {
    p.totals.bytes as f64 / 1e6 / p.secs.max(1e-9)
}

fn errors(p: &PhaseSummary) -> String {
    if p.totals.errors > 0 { format!("; {} errors", p.totals.errors) } else { String::new() }
}

fn produce_share(r: Result<&TargetResult, String>, ceiling: Result<f64, String>) -> Verdict {
    const T: &str = "1. produce 1 KiB, acks=all, max rate (`omb-1kb`)";
    let required = match &ceiling {
        Ok(c) => format!("≥ {WRITE_SHARE:.2} × write ceiling = {:.1} MB/s", WRITE_SHARE * c),
        Err(_) => format!("≥ {WRITE_SHARE:.2} × write ceiling"),
    };
    let p = match r.map(|r| produce(r).ok_or_else(|| "no produce phase".to_string())) {
        Ok(Ok(p)) => p,
        Ok(Err(e)) | Err(e) => return Verdict::not_judged(T, required, e),
    };
    let c = match ceiling {
        Ok(c) if c > 0.0 => c,
        Ok(_) => return Verdict::not_judged(T, required, "no disk ceiling".into()),
        Err(e) => return Verdict::not_judged(T, required, e),
    };
    let m = mb_s(p);
    Verdict {
        target: T,
        required,
        measured: format!(
            "{m:.1} MB/s = {:.1} % of {c:.1} MB/s ({:.0} records/s){}",
            m / c * 100.0,
            p.totals.records as f64 / p.secs.max(1e-9),
            errors(p)
        ),
        met: Some(m >= WRITE_SHARE * c),
        gap: gap_at_least(m, WRITE_SHARE * c),
    }
}

/// The steady part of a produce phase: windows in which the producers offered
/// load throughout, after the warm-up.
#[derive(Debug, PartialEq)]
struct Curve {
    windows: usize,
    median: f64,
    /// The window farthest from the median: (deviation ÷ median, stored GB).
    worst: (f64, f64),
    first_quarter: f64,
    last_quarter: f64,
}

fn curve(rows: &[Row]) -> Option<Curve> {
    let steady: Vec<&Row> = rows
        .iter()
        .filter(|r| {
            r.phase == Phase::Produce && r.loaded && r.window >= WARMUP_WINDOWS && r.secs > 0.0
        })
        .collect();
    if steady.is_empty() {
        return None;
    }
    let rate = |r: &Row| r.stats.bytes as f64 / 1e6 / r.secs;
    let mut sorted: Vec<f64> = steady.iter().map(|r| rate(r)).collect();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 };
    let dev = |r: &Row| if median > 0.0 { rate(r) / median - 1.0 } else { 0.0 };
    let worst = steady
        .iter()
        .map(|r| (dev(r), r.stored_bytes as f64 / 1e9))
        .max_by(|a, b| a.0.abs().total_cmp(&b.0.abs()))?;
    let q = n.div_ceil(4);
    let avg = |rs: &[&Row]| {
        let secs: f64 = rs.iter().map(|r| r.secs).sum();
        rs.iter().map(|r| r.stats.bytes).sum::<u64>() as f64 / 1e6 / secs.max(1e-9)
    };
    Some(Curve {
        windows: n,
        median,
        worst,
        first_quarter: avg(&steady[..q]),
        last_quarter: avg(&steady[n - q..]),
    })
}

fn flat_curve(r: Result<&TargetResult, String>) -> Verdict {
    const T: &str = "2. throughput flat from empty to the stored-bytes target, retention deleting";
    let required = format!(
        "every window within ±{:.0} % of the median MB/s (after {WARMUP_WINDOWS} warm-up windows)",
        CURVE_BAND * 100.0
    );
    let r = match r {
        Ok(r) => r,
        Err(e) => return Verdict::not_judged(T, required, e),
    };
    let Some(c) = curve(&r.rows) else {
        return Verdict::not_judged(
            T,
            required,
            format!("no full window after the {WARMUP_WINDOWS} warm-up windows"),
        );
    };
    let stored = r.rows.iter().map(|w| w.stored_bytes).max().unwrap_or(0) as f64 / 1e9;
    let deleted = match r.deleted_records {
        Some(d) => format!("retention deleted {d} records"),
        None => "deletion not checked".into(),
    };
    let measured = format!(
        "worst window {:+.1} % at {:.2} GB; median {:.1} MB/s over {} windows; first quarter \
         {:.1}, last quarter {:.1} MB/s; {stored:.2} GB stored, {deleted}",
        c.worst.0 * 100.0,
        c.worst.1,
        c.median,
        c.windows,
        c.first_quarter,
        c.last_quarter,
    );
    // Without deletion, the condition the target is about was not exercised.
    if r.deleted_records == Some(0) {
        return Verdict {
            target: T,
            required,
            measured,
            met: None,
            gap: "not judged: retention deleted nothing (store more than retention.bytes × \
                  partitions)"
                .into(),
        };
    }
    let off = c.worst.0.abs();
    Verdict {
        target: T,
        required,
        measured,
        met: Some(off <= CURVE_BAND),
        gap: if off <= CURVE_BAND {
            "none".into()
        } else {
            format!(
                "worst window {:.1} % off the median, {} the ±{:.0} % band",
                off * 100.0,
                times(off / CURVE_BAND),
                CURVE_BAND * 100.0
            )
        },
    }
}

fn records_per_core(r: Result<&TargetResult, String>) -> Verdict {
    const T: &str = "3. 100 B records, acks=1, max rate (`kreps-100b`)";
    let required = format!(
        "≥ {:.1} M records/s per node core busy (≤ {:.2} node CPU-s / M records)",
        RECORDS_PER_CORE / 1e6,
        1e6 / RECORDS_PER_CORE
    );
    let p = match r.map(|r| produce(r).ok_or_else(|| "no produce phase".to_string())) {
        Ok(Ok(p)) => p,
        Ok(Err(e)) | Err(e) => return Verdict::not_judged(T, required, e),
    };
    let secs = p.secs.max(1e-9);
    let records_s = p.totals.records as f64 / secs;
    let bench_cores = p.client_cpu_s / secs;
    let Some(node) = p.node.filter(|n| n.cpu_s > 0.0) else {
        return Verdict::not_judged(
            T,
            required,
            format!("{records_s:.0} records/s; node CPU not sampled; bench {bench_cores:.2} cores"),
        );
    };
    let node_cores = node.cpu_s / secs;
    let per_core = p.totals.records as f64 / node.cpu_s;
    let n = cores();
    let saturated = if bench_cores + node_cores >= 0.9 * n as f64 {
        " (CPU saturated: the client shares the node's cores and is the limit)"
    } else {
        ""
    };
    Verdict {
        target: T,
        required,
        measured: format!(
            "{:.3} M records/s per node core busy: {records_s:.0} records/s, node {node_cores:.2} \
             cores, {:.3} node CPU-s / M records; bench {bench_cores:.2} cores of {n}{saturated}{}",
            per_core / 1e6,
            node.cpu_s / (p.totals.records as f64 / 1e6).max(1e-9),
            errors(p)
        ),
        met: Some(per_core >= RECORDS_PER_CORE),
        gap: gap_at_least(per_core, RECORDS_PER_CORE),
    }
}

/// The device's write + fdatasync latency at the smallest block size
/// measured (one at a time): what no acks=all acknowledgement can beat.
fn device_sync_floor(d: &[DiskResult]) -> Option<(usize, disk::SyncLatency)> {
    d.iter()
        .filter(|r| r.sync_latency.ops > 0)
        .min_by_key(|r| r.block_size)
        .map(|r| (r.block_size, r.sync_latency))
}

fn half_load_latency(
    r: Result<&TargetResult, String>,
    offered: Option<f64>,
    device: Option<(usize, disk::SyncLatency)>,
) -> Verdict {
    const T: &str = "4. latency at 50 % of max load, acks=all (`omb-1kb`, open loop)";
    let required = format!(
        "produce p99 ≤ {PRODUCE_P99_MS} ms, p99.9 ≤ {PRODUCE_P999_MS} ms; end-to-end p99 ≤ \
         {E2E_P99_MS} ms"
    );
    let (p, c) = match r.map(|r| (produce(r), consume(r))) {
        Ok((Some(p), Some(c))) if p.totals.latency.count > 0 && c.totals.latency.count > 0 => {
            (p, c)
        }
        Ok(_) => {
            return Verdict::not_judged(T, required, "no produce or end-to-end samples".into());
        }
        Err(e) => return Verdict::not_judged(T, required, e),
    };
    let ms = |us: u64| us as f64 / 1000.0;
    let (p99, p999, e2e) =
        (ms(p.totals.latency.p99_us), ms(p.totals.latency.p999_us), ms(c.totals.latency.p99_us));
    let over: Vec<String> = [
        over("produce p99", p99, PRODUCE_P99_MS),
        over("produce p99.9", p999, PRODUCE_P999_MS),
        over("end-to-end p99", e2e, E2E_P99_MS),
    ]
    .into_iter()
    .flatten()
    .collect();
    // What the open-loop latency holds besides the broker: the client's own
    // lag behind its schedule, and threads waiting for the machine's cores.
    let lag = p.send_lag.as_ref().map_or(String::new(), |l| {
        format!("; the client's own send lag p99 {:.2} ms", ms(l.p99_us))
    });
    let waits = p.node.as_ref().map_or(String::new(), |n| {
        format!(
            "; waiting for a CPU: node {:.1} s (running {:.1} CPU-s), client {:.1} s (running \
             {:.1} CPU-s) in {:.0} s",
            n.cpu_wait_s, n.cpu_s, p.client_cpu_wait_s, p.client_cpu_s, p.secs
        )
    });
    let device = device.map_or(String::new(), |(bs, l)| {
        format!(
            "; the device's own write + fdatasync of one {} KiB block at a time: p99 {:.2} ms, \
             p99.9 {:.2} ms",
            bs >> 10,
            l.p99_ms,
            l.p999_ms
        )
    });
    Verdict {
        target: T,
        required,
        measured: format!(
            "produce p99 {p99:.2} ms, p99.9 {p999:.2} ms; end-to-end p99 {e2e:.2} ms; \
             {:.0} records/s acknowledged over the phase, {} offered{}{lag}{waits}{device}",
            p.totals.records as f64 / p.secs.max(1e-9),
            offered.map_or("–".into(), |r| format!("{r:.0}")),
            errors(p)
        ),
        met: Some(over.is_empty()),
        gap: if over.is_empty() { "none".into() } else { over.join("; ") },
    }
}

/// The node's disk reads over a phase's produce windows: (bytes, seconds),
/// `None` when the node was not sampled. A tick's node counters are on each
/// of its rows, so only the produce rows count.
fn node_reads(r: &TargetResult) -> Option<(u64, f64)> {
    let windows: Vec<&Row> =
        r.rows.iter().filter(|w| w.phase == Phase::Produce && w.node.is_some()).collect();
    if windows.is_empty() {
        return None;
    }
    let read: u64 = windows.iter().filter_map(|w| w.node).map(|n| n.read_bytes).sum();
    Some((read, windows.iter().map(|w| w.secs).sum()))
}

/// `r`: omb-half (a tailing consumer); `control`: omb-max, which has no
/// consumer, so what the node read there was not a consumer's doing.
fn tail_disk_reads(
    r: Result<&TargetResult, String>,
    control: Result<&TargetResult, String>,
) -> Verdict {
    const T: &str = "5. caught-up consumer causes no disk reads (during 4)";
    let required = "0 bytes read from disk by the node".to_string();
    let r = match r {
        Ok(r) => r,
        Err(e) => return Verdict::not_judged(T, required, e),
    };
    let Some((read, secs)) = node_reads(r) else {
        return Verdict::not_judged(T, required, "node disk counters not sampled".into());
    };
    let control = match control.ok().map(|c| (c, node_reads(c))) {
        Some((c, Some((bytes, secs)))) => {
            let produced: u64 = c.rows.iter().map(|w| w.stats.bytes).sum();
            format!(
                "; without a consumer (omb-max, {:.1} MB produced) the node read {bytes} bytes \
                 in {secs:.1} s",
                produced as f64 / 1e6
            )
        }
        _ => String::new(),
    };
    let bytes = |ph: Phase| {
        r.rows.iter().filter(|w| w.phase == ph).map(|w| w.stats.bytes).sum::<u64>() as f64 / 1e6
    };
    Verdict {
        target: T,
        required,
        measured: format!(
            "{read} bytes read by the node in {secs:.1} s; the consumer received {:.1} of \
             {:.1} MB produced{control}",
            bytes(Phase::Consume),
            bytes(Phase::Produce)
        ),
        met: Some(read == 0),
        gap: if read == 0 {
            "none".into()
        } else {
            format!(
                "{:.3} MB read ({:.3} MB/s), must be 0",
                read as f64 / 1e6,
                read as f64 / 1e6 / secs
            )
        },
    }
}

fn cold_backlog(r: Result<&TargetResult, String>, ceiling: Result<f64, String>) -> Verdict {
    const T: &str = "6. cold backlog consumer (`backlog`, 1 KiB)";
    let required = match &ceiling {
        Ok(c) => format!("≥ {READ_SHARE:.2} × read ceiling = {:.1} MB/s", READ_SHARE * c),
        Err(_) => format!("≥ {READ_SHARE:.2} × read ceiling"),
    };
    let (p, c) = match r.map(|r| (produce(r), consume(r))) {
        Ok((Some(p), Some(c))) => (p, c),
        Ok(_) => return Verdict::not_judged(T, required, "no consume phase".into()),
        Err(e) => return Verdict::not_judged(T, required, e),
    };
    let ceil = match ceiling {
        Ok(v) if v > 0.0 => v,
        Ok(_) => return Verdict::not_judged(T, required, "no disk ceiling".into()),
        Err(e) => return Verdict::not_judged(T, required, e),
    };
    let m = mb_s(c);
    let disk = match c.node {
        Some(n) => {
            let warm = if (n.read_bytes as f64) < c.totals.bytes as f64 / 2.0 {
                " (under half of what was consumed: mostly served from memory, not cold)"
            } else {
                ""
            };
            format!(
                "node disk read {:.1} MB/s{warm}; node {:.2} cores",
                n.read_bytes as f64 / 1e6 / c.secs.max(1e-9),
                n.cpu_s / c.secs.max(1e-9)
            )
        }
        None => "node disk read not sampled".into(),
    };
    // One consumer keeps one fetch in flight: neither side need be busy.
    let client = format!(", bench {:.2} cores of {}", c.client_cpu_s / c.secs.max(1e-9), cores());
    Verdict {
        target: T,
        required,
        measured: format!(
            "{m:.1} MB/s = {:.1} % of {ceil:.1} MB/s; {disk}{client}; {:.1} MB produced, {:.1} \
             MB read back{}",
            m / ceil * 100.0,
            p.totals.bytes as f64 / 1e6,
            c.totals.bytes as f64 / 1e6,
            errors(c)
        ),
        met: Some(m >= READ_SHARE * ceil),
        gap: gap_at_least(m, READ_SHARE * ceil),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procstat::ProcSample;
    use crate::recorder::{Percentiles, Totals, WindowStats};

    fn row(window: u32, mb: u64, loaded: bool) -> Row {
        Row {
            phase: Phase::Produce,
            window,
            elapsed_s: window as f64 + 1.0,
            secs: 1.0,
            stored_bytes: (window as u64 + 1) * 1_000_000_000,
            stats: WindowStats { records: mb * 1000, bytes: mb * 1_000_000, ..Default::default() },
            node: Some(ProcSample {
                cpu_s: 0.5,
                write_bytes: mb * 1_000_000,
                read_bytes: 0,
                cpu_wait_s: 0.0,
            }),
            loaded,
        }
    }

    fn result(rows: Vec<Row>, phases: Vec<PhaseSummary>) -> TargetResult {
        TargetResult {
            target: crate::broker("weir=127.0.0.1:9092"),
            rows,
            phases,
            notes: Vec::new(),
            node_died: false,
            deleted_records: Some(10),
        }
    }

    fn summary(phase: Phase, records: u64, bytes: u64, p99_ms: u64, p999_ms: u64) -> PhaseSummary {
        PhaseSummary {
            phase,
            secs: 10.0,
            totals: Totals {
                records,
                bytes,
                errors: 0,
                latency: Percentiles {
                    count: records,
                    p50_us: 500,
                    p99_us: p99_ms * 1000,
                    p999_us: p999_ms * 1000,
                    max_us: p999_ms * 2000,
                },
            },
            node: Some(ProcSample {
                cpu_s: 2.0,
                write_bytes: bytes,
                read_bytes: 0,
                cpu_wait_s: 1.5,
            }),
            client_cpu_s: 5.0,
            client_cpu_wait_s: 4.0,
            send_lag: Some(Percentiles {
                count: records,
                p50_us: 100,
                p99_us: 12_000,
                p999_us: 20_000,
                max_us: 30_000,
            }),
        }
    }

    #[test]
    fn curve_skips_warmup_and_unloaded_windows() {
        // Slow warm-up, 100/100/110/90 MB/s, a short flush window at the end.
        let mut rows = vec![row(0, 10, true), row(1, 50, true)];
        rows.extend(
            [100, 100, 110, 90].iter().enumerate().map(|(i, mb)| row(i as u32 + 2, *mb, true)),
        );
        rows.push(row(6, 5, false));
        let c = curve(&rows).unwrap();
        assert_eq!(c.windows, 4);
        assert!((c.median - 100.0).abs() < 1e-9);
        assert!((c.worst.0.abs() - 0.10).abs() < 1e-9, "{c:?}");
        assert!((c.first_quarter - 100.0).abs() < 1e-9);
        assert!((c.last_quarter - 90.0).abs() < 1e-9);
        let v = flat_curve(Ok(&result(rows, Vec::new())));
        assert_eq!(v.met, Some(false));
        assert!(v.gap.contains("10.0 % off the median, 2.0× the ±5 % band"), "{}", v.gap);
        assert!(curve(&[row(0, 1, true), row(1, 1, true), row(2, 1, false)]).is_none());
    }

    #[test]
    fn gaps_say_how_far_off() {
        assert_eq!(gap_at_least(100.0, 380.0), "needs 3.8× more");
        assert_eq!(gap_at_least(400.0, 380.0), "none (1.05× the bound)");
        assert_eq!(over("p99", 18.2, 5.0).unwrap(), "p99 18.2 ms, 3.6× the bound");
        assert!(over("p99", 4.0, 5.0).is_none());
    }

    #[test]
    fn failed_phase_is_not_judged() {
        let v = produce_share(Err("phase `x`: failed: boom".into()), Ok(1000.0));
        assert_eq!(v.met, None);
        assert!(v.measured.contains("boom"));
        assert!(verdict_table(&[v]).contains("| n/a | not judged |"));
    }

    #[test]
    fn targets_from_phase_totals() {
        // 1: 100 MB/s against 1000 MB/s.
        let r = result(Vec::new(), vec![summary(Phase::Produce, 100_000, 1_000_000_000, 2, 3)]);
        let v = produce_share(Ok(&r), Ok(1000.0));
        assert_eq!((v.met, v.gap.as_str()), (Some(false), "needs 9.0× more"));
        // 3: 100 000 records on 2 node CPU-s = 50 000 per core.
        let v = records_per_core(Ok(&r));
        assert_eq!(v.met, Some(false));
        assert!(v.measured.starts_with("0.050 M records/s per node core"), "{}", v.measured);
        // 4: produce p99 2 ms, p99.9 30 ms; end-to-end p99 4 ms.
        let r = result(
            vec![row(0, 10, true)],
            vec![
                summary(Phase::Produce, 1000, 1_000_000, 2, 30),
                summary(Phase::Consume, 1000, 1_000_000, 4, 8),
            ],
        );
        let floor =
            disk::SyncLatency { ops: 1000, p50_ms: 0.4, p99_ms: 0.9, p999_ms: 1.5, max_ms: 2.0 };
        let v = half_load_latency(Ok(&r), Some(100.0), Some((256 << 10, floor)));
        assert_eq!((v.met, v.gap.as_str()), (Some(false), "produce p99.9 30.0 ms, 3.0× the bound"));
        // The client's share of the latency is stated beside it.
        assert!(
            v.measured.contains("the client's own send lag p99 12.00 ms")
                && v.measured
                    .contains("waiting for a CPU: node 1.5 s (running 2.0 CPU-s), client 4.0 s")
                && v.measured.contains(
                    "the device's own write + fdatasync of one 256 KiB block at a time: p99 \
                     0.90 ms, p99.9 1.50 ms"
                ),
            "{}",
            v.measured
        );
        // 5: no node reads in the windows; the produce-only control read 4096 bytes.
        let mut read_row = row(0, 20, true);
        read_row.node = read_row.node.map(|n| ProcSample { read_bytes: 4096, ..n });
        let control = result(vec![read_row], Vec::new());
        let v = tail_disk_reads(Ok(&r), Ok(&control));
        assert_eq!(v.met, Some(true));
        assert!(
            v.measured.ends_with(
                "without a consumer (omb-max, 20.0 MB produced) the node read 4096 bytes in 1.0 s"
            ),
            "{}",
            v.measured
        );
        // ... and the other way round: reads with the consumer fail the target.
        let v = tail_disk_reads(Ok(&control), Err("phase `omb-max` did not run".into()));
        assert_eq!((v.met, v.gap.as_str()), (Some(false), "0.004 MB read (0.004 MB/s), must be 0"));
        // 6: 0.1 MB/s read back, no node reads: flagged as not cold.
        let v = cold_backlog(Ok(&r), Ok(1000.0));
        assert_eq!(v.met, Some(false));
        assert!(v.measured.contains("not cold"), "{}", v.measured);
        // The consume phase's CPU on both sides: node 2.0 and bench 5.0 CPU-s in 10 s.
        assert!(v.measured.contains("; node 0.20 cores, bench 0.50 cores of"), "{}", v.measured);
    }
}
