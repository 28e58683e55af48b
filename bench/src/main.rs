//! weir-bench: drives any Kafka-compatible broker through a standard client
//! (librdkafka via rdkafka) and reports throughput against stored data,
//! latency percentiles, the node's CPU and disk cost, and the device's own
//! ceiling measured in the same run.

mod admin;
mod disk;
mod plot;
mod presets;
mod procstat;
mod recorder;
mod report;
mod targets;
mod workload;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::MultiProgress;

use crate::disk::{DiskOpts, DiskResult};
use crate::workload::{Params, RunOpts, Target, Workload};

#[derive(Parser, Debug)]
#[command(name = "weir-bench", version, about = "Load harness for Kafka-compatible brokers")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run a workload against one or more brokers (side by side).
    Run(Box<RunArgs>),
    /// Measure the disk ceiling (O_DIRECT sequential write + fdatasync, read).
    Disk(DiskArgs),
    /// Run every phase the performance targets need against one broker and
    /// write targets-summary.md: required, measured, met, gap.
    Targets(Box<targets::TargetsArgs>),
    /// List the named presets.
    Presets,
}

#[derive(Args, Debug, Clone)]
struct DiskFlags {
    /// Bytes written and read back per block size (suffixes K, M, G: binary).
    #[arg(long, default_value = "1G", value_parser = parse_size)]
    disk_size: u64,
    /// Block sizes, comma separated.
    #[arg(long, default_value = "256K,1M", value_delimiter = ',', value_parser = parse_size)]
    block_sizes: Vec<u64>,
    /// Bytes written concurrently between two fdatasync calls (the write group).
    #[arg(long, default_value = "1M", value_parser = parse_size)]
    sync_bytes: u64,
    /// Reads in flight.
    #[arg(long, default_value_t = 4)]
    read_depth: usize,
}

#[derive(Args, Debug)]
struct DiskArgs {
    /// Directory to measure: the node's data directory (same filesystem/device).
    #[arg(long)]
    dir: PathBuf,
    #[command(flatten)]
    flags: DiskFlags,
    /// Where to write disk.csv, the plots and the summary.
    #[arg(long, default_value = "bench-out")]
    out: PathBuf,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Broker to drive: `host:port`, or `name=host:port`. Repeat to compare brokers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: Vec<String>,
    /// Broker pid for CPU/disk counters: `PID` or `name=PID` (default: found
    /// from the listening port when the broker runs on this machine).
    #[arg(long)]
    node_pid: Vec<String>,
    /// Named preset (see `weir-bench presets`); flags override its values.
    #[arg(long)]
    preset: Option<String>,
    #[arg(long, value_enum)]
    workload: Option<Workload>,
    /// Record value size in bytes.
    #[arg(long)]
    record_size: Option<usize>,
    #[arg(long)]
    partitions: Option<i32>,
    #[arg(long)]
    producers: Option<usize>,
    #[arg(long)]
    consumers: Option<usize>,
    /// 0, 1 or all.
    #[arg(long)]
    acks: Option<String>,
    /// none, gzip, snappy, lz4, zstd.
    #[arg(long)]
    compression: Option<String>,
    #[arg(long)]
    linger_ms: Option<f64>,
    #[arg(long, value_parser = parse_size)]
    batch_size: Option<u64>,
    /// Target records/s over all producers, open loop (latency from intended
    /// send time); 0 = as fast as possible.
    #[arg(long)]
    rate: Option<f64>,
    /// Topic name (default: weir-bench-NAME-PID).
    #[arg(long)]
    topic: Option<String>,
    /// Run name: file names and chart titles (default: the preset or workload).
    #[arg(long)]
    name: Option<String>,
    /// Skip the disk ceiling.
    #[arg(long)]
    no_disk: bool,
    #[command(flatten)]
    load: LoadFlags,
}

/// How runs are bounded, sampled and written (shared by `run` and `targets`).
#[derive(Args, Debug, Clone)]
struct LoadFlags {
    #[arg(long, default_value_t = 1)]
    replication: i32,
    /// Stop producing after this many bytes were acknowledged (default 1.5 × RAM).
    #[arg(long, value_parser = parse_size)]
    stored_bytes: Option<u64>,
    /// Stop each phase after this many seconds, whatever was stored.
    #[arg(long)]
    duration: Option<f64>,
    /// Sampling window in seconds.
    #[arg(long, default_value_t = 1.0)]
    window: f64,
    /// Topic retention.bytes per partition (default: a share of --stored-bytes
    /// so that deletion runs during the test; 0: leave unset).
    #[arg(long, value_parser = parse_size)]
    retention_bytes: Option<u64>,
    /// Topic segment.bytes (default with retention: retention / 4, 1 MiB..1 GiB).
    #[arg(long, value_parser = parse_size)]
    segment_bytes: Option<u64>,
    /// Keep the topic after the run.
    #[arg(long)]
    keep_topic: bool,
    /// Client queue bound: messages in flight per producer.
    #[arg(long, default_value_t = 100_000)]
    max_inflight_messages: u64,
    /// Client queue bound: KiB in flight per producer.
    #[arg(long, default_value_t = 131_072)]
    max_inflight_kbytes: u64,
    /// Output directory.
    #[arg(long, default_value = "bench-out")]
    out: PathBuf,
    /// Directory for the disk ceiling measured in this run (the node's data
    /// directory; default: --out).
    #[arg(long)]
    disk_dir: Option<PathBuf>,
    #[command(flatten)]
    disk: DiskFlags,
}

impl LoadFlags {
    /// `--stored-bytes`, or 1.5 × RAM: more than the page cache can hold.
    fn stored_bytes(&self) -> u64 {
        match self.stored_bytes {
            Some(s) => s,
            None => procstat::mem_total_bytes().map(|m| m / 2 * 3).unwrap_or(8 << 30),
        }
    }

    fn disk_dir(&self) -> &Path {
        self.disk_dir.as_deref().unwrap_or(&self.out)
    }
}

/// `123`, `64K`, `1.5G`, `256KiB`, `1MB` (all binary multiples).
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let digits_end = lower.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(lower.len());
    let (num, unit) = lower.split_at(digits_end);
    let n: f64 = num.parse().map_err(|_| format!("not a size: {s}"))?;
    let mult: u64 = match unit.trim().trim_end_matches("ib").trim_end_matches('b') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return Err(format!("unknown unit in {s}")),
    };
    Ok((n * mult as f64) as u64)
}

fn split_named(s: &str) -> (Option<&str>, &str) {
    match s.split_once('=') {
        Some((n, v)) => (Some(n), v),
        None => (None, s),
    }
}

/// A broker from `host:port` or `name=host:port`.
fn broker(s: &str) -> Target {
    let (name, addr) = split_named(s);
    Target { name: name.unwrap_or(addr).to_string(), bootstrap: addr.to_string(), pid: None }
}

fn brokers(a: &RunArgs) -> Result<Vec<Target>> {
    let mut out: Vec<Target> = a.bootstrap.iter().map(|b| broker(b)).collect();
    for p in &a.node_pid {
        let (name, pid) = split_named(p);
        let pid: u32 = pid.parse().with_context(|| format!("--node-pid {p}"))?;
        let t = match name {
            Some(n) => out.iter_mut().find(|t| t.name == n),
            None if out.len() == 1 => out.first_mut(),
            None => bail!("--node-pid {p}: several brokers, say which: name=PID"),
        };
        t.with_context(|| format!("--node-pid {p}: no such --bootstrap name"))?.pid = Some(pid);
    }
    Ok(out)
}

fn params(a: &RunArgs) -> Result<Params> {
    let mut p = match &a.preset {
        Some(n) => {
            presets::find(n)
                .with_context(|| format!("no preset {n}; see `weir-bench presets`"))?
                .params
        }
        None => Params::default(),
    };
    if let Some(w) = a.workload {
        p.workload = w;
    }
    if let Some(v) = a.record_size {
        p.record_size = v.max(1);
    }
    if let Some(v) = a.partitions {
        p.partitions = v.max(1);
    }
    if let Some(v) = a.producers {
        p.producers = v.max(1);
    }
    if let Some(v) = a.consumers {
        p.consumers = v.max(1);
    }
    if let Some(v) = &a.acks {
        p.acks = v.clone();
    }
    if let Some(v) = &a.compression {
        p.compression = v.clone();
    }
    if let Some(v) = a.linger_ms {
        p.linger_ms = v;
    }
    if let Some(v) = a.batch_size {
        p.batch_size = v as usize;
    }
    if let Some(v) = a.rate {
        p.rate = (v > 0.0).then_some(v);
    }
    Ok(p)
}

fn disk_opts(dir: &Path, f: &DiskFlags) -> DiskOpts {
    DiskOpts {
        dir: dir.to_path_buf(),
        size: f.disk_size,
        block_sizes: f.block_sizes.iter().map(|b| *b as usize).collect(),
        sync_bytes: f.sync_bytes,
        read_depth: f.read_depth,
    }
}

fn run_disk(dopts: &DiskOpts, out: &Path, stem: &str) -> Result<(Vec<DiskResult>, Vec<String>)> {
    eprintln!("measuring disk ceiling on {} ...", dopts.dir.display());
    let res = disk::measure(dopts)?;
    report::write_disk_csv(&out.join(format!("{stem}.csv")), dopts, &res)?;
    let files = plot::disk_chart(out, stem, &res)?;
    for r in &res {
        println!(
            "disk {} KiB: write {:.1} MB/s overwriting, {:.1} MB/s into a new file ({} writes per fdatasync), read {:.1} MB/s; one write + fdatasync at a time p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms{}",
            r.block_size >> 10,
            r.write_mb_s,
            r.write_fresh_mb_s,
            r.writes_per_sync,
            r.read_mb_s,
            r.sync_latency.p50_ms,
            r.sync_latency.p99_ms,
            r.sync_latency.p999_ms,
            if r.direct { "" } else { " (no O_DIRECT: page cache)" }
        );
    }
    Ok((res, files))
}

fn cmd_disk(a: DiskArgs) -> Result<()> {
    std::fs::create_dir_all(&a.out)?;
    let dopts = disk_opts(&a.dir, &a.flags);
    let (res, files) = run_disk(&dopts, &a.out, "disk")?;
    let mut md = String::from("# weir-bench: disk\n\n");
    md.push_str(&report::disk_markdown(&dopts, &res));
    md.push_str("\n## Plots\n\n");
    md.push_str(&report::plot_links(&files));
    let path = a.out.join("disk-summary.md");
    std::fs::write(&path, md)?;
    println!("summary: {}", path.display());
    Ok(())
}

/// The run's bounds from the flags: `stored_bytes` acknowledged, and unless
/// `--retention-bytes 0`, retention of about half of it (not for backlog,
/// whose data must stay to be read back), so deletion runs in the second half.
fn run_opts(p: Params, topic: String, stored_bytes: u64, f: &LoadFlags) -> RunOpts {
    let retention_bytes = match f.retention_bytes {
        Some(0) => None,
        Some(r) => Some(r),
        None if p.workload != Workload::Backlog => {
            Some((stored_bytes / 2 / p.partitions as u64).max(1 << 20))
        }
        None => None,
    };
    let segment_bytes =
        f.segment_bytes.or_else(|| retention_bytes.map(|r| (r / 4).clamp(1 << 20, 1 << 30)));
    RunOpts {
        params: p,
        topic,
        replication: f.replication,
        stored_bytes,
        duration: f.duration.map(Duration::from_secs_f64),
        window: Duration::from_secs_f64(f.window.max(0.05)),
        retention_bytes,
        segment_bytes,
        max_inflight_messages: f.max_inflight_messages,
        max_inflight_kbytes: f.max_inflight_kbytes,
        keep_topic: f.keep_topic,
    }
}

fn cmd_run(a: RunArgs) -> Result<()> {
    let p = params(&a)?;
    let brokers = brokers(&a)?;
    let f = &a.load;
    let name = a
        .name
        .clone()
        .or_else(|| a.preset.clone())
        .unwrap_or_else(|| p.workload.name().to_string());
    std::fs::create_dir_all(&f.out).with_context(|| format!("create {}", f.out.display()))?;
    let topic =
        a.topic.clone().unwrap_or_else(|| format!("weir-bench-{name}-{}", std::process::id()));
    let opts = run_opts(p, topic, f.stored_bytes(), f);

    let mut plots = Vec::new();
    let disk = if a.no_disk {
        None
    } else {
        let dopts = disk_opts(f.disk_dir(), &f.disk);
        let (res, files) = run_disk(&dopts, &f.out, &format!("{name}-disk"))?;
        plots.extend(files);
        Some((dopts, res))
    };

    let mp = MultiProgress::new();
    let mut results = Vec::new();
    for t in &brokers {
        eprintln!("{}: {} on {} ...", t.name, opts.params.workload.name(), t.bootstrap);
        results.push(workload::run_target(t, &opts, &mp)?);
    }

    report::write_run(
        &f.out,
        &name,
        &opts,
        &results,
        disk.as_ref().map(|(o, r)| (o, r.as_slice())),
        &plots,
    )?;
    for n in results.iter().flat_map(|r| &r.notes) {
        eprintln!("note: {n}");
    }
    if results.iter().any(|r| r.node_died) {
        bail!("a broker process exited during the run (partial results written)");
    }
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Run(a) => cmd_run(*a),
        Cmd::Disk(a) => cmd_disk(a),
        Cmd::Targets(a) => targets::run(*a),
        Cmd::Presets => {
            for p in presets::all() {
                println!("{:<12} {}", p.name, p.about);
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("123"), Ok(123));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert!(parse_size("1X").is_err());
    }

    #[test]
    fn cli_parses() {
        let c = Cli::try_parse_from([
            "weir-bench",
            "run",
            "--preset",
            "omb-1kb",
            "--bootstrap",
            "weir=127.0.0.1:9092",
            "--bootstrap",
            "kafka=127.0.0.1:9093",
            "--node-pid",
            "weir=42",
            "--stored-bytes",
            "64M",
        ])
        .unwrap();
        let Cmd::Run(a) = c.cmd else { panic!() };
        let t = brokers(&a).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].pid, Some(42));
        assert_eq!(t[1].bootstrap, "127.0.0.1:9093");
        let p = params(&a).unwrap();
        assert_eq!(p.partitions, 100);
        assert_eq!(p.acks, "all");

        let c = Cli::try_parse_from([
            "weir-bench",
            "targets",
            "--bootstrap",
            "weir=127.0.0.1:9092",
            "--node-pid",
            "42",
            "--stored-bytes",
            "6G",
            "--duration",
            "45",
            "--disk-size",
            "4G",
        ])
        .unwrap();
        assert!(matches!(c.cmd, Cmd::Targets(_)));
        assert!(Cli::try_parse_from(["weir-bench", "targets", "--node-pid", "x"]).is_err());
    }
}
