//! CSV per run and a Markdown summary with the ratios that matter.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::disk::{self, DiskOpts, DiskResult};
use crate::plot;
use crate::workload::{Phase, PhaseSummary, RunOpts, TargetResult};

pub const CSV_HEADER: &str = "target,phase,window,elapsed_s,window_s,stored_bytes,records_per_s,mb_per_s,\
lat_p50_ms,lat_p99_ms,lat_p999_ms,lat_max_ms,errors,node_cpu_s,node_cpu_cores,node_disk_write_mb_s,\
node_disk_read_mb_s";

pub const DISK_CSV_HEADER: &str = "dir,block_size,bytes,writes_per_fdatasync,write_mb_s,write_fresh_mb_s,read_mb_s,o_direct,\
     sync_ops,sync_p50_ms,sync_p99_ms,sync_p999_ms,sync_max_ms";

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// One row per window and phase, all targets in one file.
pub fn write_csv(path: &Path, results: &[TargetResult]) -> Result<()> {
    let mut s = String::new();
    s.push_str(CSV_HEADER);
    s.push('\n');
    for r in results {
        for row in &r.rows {
            let secs = row.secs.max(1e-9);
            let w = &row.stats;
            let (cpu, cores, wr, rd) = match row.node {
                Some(n) => (
                    format!("{:.3}", n.cpu_s),
                    format!("{:.3}", n.cpu_s / secs),
                    format!("{:.3}", n.write_bytes as f64 / 1e6 / secs),
                    format!("{:.3}", n.read_bytes as f64 / 1e6 / secs),
                ),
                None => Default::default(),
            };
            let lat =
                |v: u64| if w.latency.count > 0 { format!("{:.3}", ms(v)) } else { String::new() };
            writeln!(
                s,
                "{},{},{},{:.3},{:.3},{},{:.1},{:.3},{},{},{},{},{},{},{},{},{}",
                r.target.name,
                row.phase.name(),
                row.window,
                row.elapsed_s,
                row.secs,
                row.stored_bytes,
                w.records as f64 / secs,
                w.bytes as f64 / 1e6 / secs,
                lat(w.latency.p50_us),
                lat(w.latency.p99_us),
                lat(w.latency.p999_us),
                lat(w.latency.max_us),
                w.errors,
                cpu,
                cores,
                wr,
                rd,
            )
            .expect("write to string");
        }
    }
    std::fs::write(path, s).with_context(|| format!("write {}", path.display()))
}

pub fn write_disk_csv(path: &Path, opts: &DiskOpts, results: &[DiskResult]) -> Result<()> {
    let mut s = String::new();
    s.push_str(DISK_CSV_HEADER);
    s.push('\n');
    for r in results {
        writeln!(
            s,
            "{},{},{},{},{:.1},{:.1},{:.1},{},{},{:.3},{:.3},{:.3},{:.3}",
            opts.dir.display(),
            r.block_size,
            r.bytes,
            r.writes_per_sync,
            r.write_mb_s,
            r.write_fresh_mb_s,
            r.read_mb_s,
            r.direct,
            r.sync_latency.ops,
            r.sync_latency.p50_ms,
            r.sync_latency.p99_ms,
            r.sync_latency.p999_ms,
            r.sync_latency.max_ms
        )
        .expect("write to string");
    }
    std::fs::write(path, s).with_context(|| format!("write {}", path.display()))
}

/// The Markdown section on the disk ceiling.
pub fn disk_markdown(opts: &DiskOpts, results: &[DiskResult]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## Disk ceiling\n\n`{}`: tokio-uring, sequential, {} MiB per block size, writes in groups of \
         {} KiB then one fdatasync, reads {} in flight. Writes run twice over the file: \
         into a new file's blocks that `fallocate` left unwritten (the filesystem converts \
         them as they are written), then over the written blocks; the ceiling is the \
         faster. Write + fdatasync: one block written over written blocks and synced at a time, \
         nothing else in flight (up to {} per block size): the latency an acknowledgement \
         with fsync cannot beat on this device.\n",
        opts.dir.display(),
        opts.size >> 20,
        opts.sync_bytes >> 10,
        opts.read_depth,
        crate::disk::SYNC_PROBE_OPS
    );
    s.push_str("| block | O_DIRECT | writes per fdatasync | write MB/s (overwrite) | write MB/s (new file) | read MB/s | write + fdatasync p50 / p99 / p99.9 ms |\n|---:|:---:|---:|---:|---:|---:|---:|\n");
    for r in results {
        let _ = writeln!(
            s,
            "| {} KiB | {} | {} | {:.1} | {:.1} | {:.1} | {:.2} / {:.2} / {:.2} |",
            r.block_size >> 10,
            if r.direct { "yes" } else { "no (page cache!)" },
            r.writes_per_sync,
            r.write_mb_s,
            r.write_fresh_mb_s,
            r.read_mb_s,
            r.sync_latency.p50_ms,
            r.sync_latency.p99_ms,
            r.sync_latency.p999_ms
        );
    }
    s
}

/// Ratios of one phase, as printed and tabled.
#[derive(Clone, Debug)]
pub struct Ratios {
    pub mb_s: f64,
    pub records_s: f64,
    /// Node MB/s ÷ disk write (produce) or read (consume) ceiling.
    pub of_disk: Option<f64>,
    pub cpu_s_per_m_records: Option<f64>,
    pub cpu_s_per_gb: Option<f64>,
    /// Node disk bytes written ÷ bytes produced.
    pub write_amplification: Option<f64>,
}

pub fn ratios(p: &PhaseSummary, disk: Option<&[DiskResult]>) -> Ratios {
    let secs = p.secs.max(1e-9);
    let mb_s = p.totals.bytes as f64 / 1e6 / secs;
    let ceiling = disk.and_then(|d| match p.phase {
        Phase::Produce => disk::write_ceiling(d),
        Phase::Consume => disk::read_ceiling(d),
    });
    let cpu = p.node.map(|n| n.cpu_s);
    Ratios {
        mb_s,
        records_s: p.totals.records as f64 / secs,
        of_disk: ceiling.filter(|c| *c > 0.0).map(|c| mb_s / c),
        cpu_s_per_m_records: cpu
            .filter(|_| p.totals.records > 0)
            .map(|c| c / (p.totals.records as f64 / 1e6)),
        cpu_s_per_gb: cpu.filter(|_| p.totals.bytes > 0).map(|c| c / (p.totals.bytes as f64 / 1e9)),
        write_amplification: p
            .node
            .filter(|_| p.phase == Phase::Produce && p.totals.bytes > 0)
            .map(|n| n.write_bytes as f64 / p.totals.bytes as f64),
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".to_string(), |v| format!("{v:.digits$}"))
}

/// One sentence with a run's parameters.
pub fn params_line(o: &RunOpts) -> String {
    let p = &o.params;
    format!(
        "workload `{}`; {} B records, {} partitions, {} producer(s), {} consumer(s), acks={}, \
         compression={}, linger {} ms, batch.size {} B, rate {}; stop at {:.1} MB acknowledged{}; \
         window {} s{}{}.",
        p.workload.name(),
        p.record_size,
        p.partitions,
        p.producers,
        p.consumers,
        p.acks,
        p.compression,
        p.linger_ms,
        p.batch_size,
        p.rate.map_or("max".to_string(), |r| format!("{r:.0} records/s (open loop)")),
        o.stored_bytes as f64 / 1e6,
        o.duration.map_or(String::new(), |d| format!(" or after {} s", d.as_secs_f64())),
        o.window.as_secs_f64(),
        o.retention_bytes.map_or(String::new(), |r| format!(", retention.bytes {r}")),
        o.segment_bytes.map_or(String::new(), |r| format!(", segment.bytes {r}")),
    )
}

/// The whole summary: parameters, disk ceiling, one line per target and phase.
pub fn markdown(
    name: &str,
    o: &RunOpts,
    results: &[TargetResult],
    disk: Option<(&DiskOpts, &[DiskResult])>,
    plots: &[String],
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# weir-bench: {name}\n");
    let _ = writeln!(s, "{}\n", params_line(o));
    if let Some((dopts, d)) = disk {
        s.push_str(&disk_markdown(dopts, d));
        s.push('\n');
    }
    let _ = writeln!(s, "## Results\n\n{RESULTS_LEGEND}\n");
    s.push_str(&results_table(results, disk.map(|d| d.1)));
    if !plots.is_empty() {
        s.push_str("\n## Plots\n\n");
        s.push_str(&plot_links(plots));
    }
    s
}

/// What the results table's columns measure.
pub const RESULTS_LEGEND: &str = "Latency: produce = from intended send time to acknowledgement; \
consume (e2e) = from intended send time to receipt. Node CPU and disk bytes from /proc of the \
broker process tree; bench CPU s: this harness's own CPU (the client is the limit when it nears \
the machine's cores).";

/// The results table (one line per target and phase), then what retention
/// deleted and the runs' notes.
pub fn results_table(results: &[TargetResult], disk: Option<&[DiskResult]>) -> String {
    let mut s = String::new();
    s.push_str(
        "| target | phase | records | MB | MB/s | records/s | p50 ms | p99 ms | p99.9 ms | max ms \
         | errors | node CPU s | CPU-s / M records | CPU-s / GB | disk written ÷ produced | MB/s ÷ disk ceiling \
         | bench CPU s |\n",
    );
    s.push_str(
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in results {
        for ph in &r.phases {
            let q = ratios(ph, disk);
            let t = &ph.totals;
            let l =
                |v: u64| if t.latency.count > 0 { format!("{:.2}", ms(v)) } else { "–".into() };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.1} | {:.1} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.target.name,
                ph.phase.name(),
                t.records,
                t.bytes as f64 / 1e6,
                q.mb_s,
                q.records_s,
                l(t.latency.p50_us),
                l(t.latency.p99_us),
                l(t.latency.p999_us),
                l(t.latency.max_us),
                t.errors,
                opt(ph.node.map(|n| n.cpu_s), 2),
                opt(q.cpu_s_per_m_records, 3),
                opt(q.cpu_s_per_gb, 2),
                opt(q.write_amplification, 2),
                q.of_disk.map_or("–".to_string(), |v| format!("{:.1} %", v * 100.0)),
                if ph.client_cpu_s > 0.0 {
                    format!("{:.2}", ph.client_cpu_s)
                } else {
                    "–".into()
                },
            );
        }
    }
    for r in results {
        if let Some(d) = r.deleted_records {
            let _ = writeln!(
                s,
                "\n{}: retention had deleted {d} records (the partitions' log-start offsets) when \
                 the produce phase ended.",
                r.target.name
            );
        }
    }
    let notes: Vec<&String> = results.iter().flat_map(|r| &r.notes).collect();
    if !notes.is_empty() {
        s.push_str("\nNotes:\n\n");
        for n in notes {
            let _ = writeln!(s, "- {n}");
        }
    }
    s
}

/// Writes one run's CSV, charts (plus `extra_plots` already written) and
/// summary, and prints its ratios. Returns the summary's path.
pub fn write_run(
    out: &Path,
    name: &str,
    o: &RunOpts,
    results: &[TargetResult],
    disk: Option<(&DiskOpts, &[DiskResult])>,
    extra_plots: &[String],
) -> Result<PathBuf> {
    let csv = out.join(format!("{name}.csv"));
    write_csv(&csv, results)?;
    let ceiling = disk.and_then(|(_, r)| disk::write_ceiling(r));
    let mut files = plot::run_charts(out, name, results, ceiling)?;
    files.extend_from_slice(extra_plots);
    let summary = out.join(format!("{name}-summary.md"));
    std::fs::write(&summary, markdown(name, o, results, disk, &files))
        .with_context(|| format!("write {}", summary.display()))?;
    print_ratios(results, disk.map(|d| d.1));
    println!("csv: {}", csv.display());
    println!("summary: {}", summary.display());
    Ok(summary)
}

/// PNGs shown inline, each with a link to its SVG.
pub fn plot_links(files: &[String]) -> String {
    let mut s = String::new();
    for f in files.iter().filter(|f| f.ends_with(".png")) {
        let svg = format!("{}.svg", f.trim_end_matches(".png"));
        if files.contains(&svg) {
            let _ = writeln!(s, "![{f}]({f}) ([svg]({svg}))\n");
        } else {
            let _ = writeln!(s, "![{f}]({f})\n");
        }
    }
    s
}

/// Short lines for the terminal.
pub fn print_ratios(results: &[TargetResult], disk: Option<&[DiskResult]>) {
    for r in results {
        for ph in &r.phases {
            let q = ratios(ph, disk);
            println!(
                "{} {}: {:.1} MB/s, {:.0} records/s, p99 {:.2} ms; of disk ceiling: {}; node CPU-s per M records: {}; write amplification: {}; bench CPU-s: {:.2}",
                r.target.name,
                ph.phase.name(),
                q.mb_s,
                q.records_s,
                ms(ph.totals.latency.p99_us),
                q.of_disk.map_or("–".to_string(), |v| format!("{:.1} %", v * 100.0)),
                opt(q.cpu_s_per_m_records, 3),
                opt(q.write_amplification, 2),
                ph.client_cpu_s,
            );
        }
    }
}
