//! CI smoke run: the harness works end to end against a real `weir dev`
//! (needs `cargo build --workspace --bins` first). Asserts files and their
//! shape, never throughput.

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use weir_tests::WeirDev;

const BENCH: &str = env!("CARGO_BIN_EXE_weir-bench");

/// One broker and bench at a time: the machines this runs on have few cores.
static SERIAL: Mutex<()> = Mutex::new(());

const CSV_COLUMNS: &[&str] = &[
    "target",
    "phase",
    "window",
    "elapsed_s",
    "window_s",
    "stored_bytes",
    "records_per_s",
    "mb_per_s",
    "lat_p50_ms",
    "lat_p99_ms",
    "lat_p999_ms",
    "lat_max_ms",
    "errors",
    "node_cpu_s",
    "node_cpu_cores",
    "node_disk_write_mb_s",
    "node_disk_read_mb_s",
];

fn bench(args: &[&str]) -> String {
    let out = Command::new(BENCH).args(args).output().expect("run weir-bench");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "weir-bench {args:?} failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn assert_png(p: &Path) {
    let b = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert!(b.starts_with(b"\x89PNG\r\n\x1a\n"), "{} is not a PNG", p.display());
}

fn assert_svg(p: &Path) {
    let s = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert!(s.contains("<svg") && s.contains("</svg>"), "{} is not an SVG", p.display());
    assert!(s.contains("<text"), "{} has no text", p.display());
}

const DISK_COLUMNS: &[&str] = &[
    "dir",
    "block_size",
    "bytes",
    "writes_per_fdatasync",
    "write_mb_s",
    "write_fresh_mb_s",
    "read_mb_s",
    "o_direct",
    "sync_ops",
    "sync_p50_ms",
    "sync_p99_ms",
    "sync_p999_ms",
    "sync_max_ms",
];

/// Rows of a CSV as maps from column to value, after checking the header.
fn csv_rows(p: &Path, columns: &[&str]) -> Vec<Vec<String>> {
    let s = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut lines = s.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    assert_eq!(header, columns, "{} header", p.display());
    let rows: Vec<Vec<String>> =
        lines.map(|l| l.split(',').map(str::to_string).collect()).collect();
    for r in &rows {
        assert_eq!(r.len(), columns.len(), "{}: row {r:?}", p.display());
    }
    rows
}

#[test]
fn produce_e2e_and_disk_runs_write_their_reports() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dev = WeirDev::start();
    let out = tempfile::tempdir().unwrap();
    let o = out.path().to_str().unwrap();
    let bootstrap = format!("weir={}", dev.bootstrap());
    let pid = format!("weir={}", dev.pid());

    // Produce with a tiny stored-data target and retention, plus the disk ceiling.
    let stdout = bench(&[
        "run",
        "--bootstrap",
        &bootstrap,
        "--node-pid",
        &pid,
        "--name",
        "smoke",
        "--workload",
        "produce",
        "--record-size",
        "1024",
        "--partitions",
        "4",
        "--stored-bytes",
        "4M",
        "--duration",
        "15",
        "--window",
        "0.5",
        "--out",
        o,
        "--disk-size",
        "8M",
        "--block-sizes",
        "256K,1M",
    ]);
    assert!(stdout.contains("weir produce:"), "{stdout}");
    let rows = csv_rows(&out.path().join("smoke.csv"), CSV_COLUMNS);
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r[0] == "weir" && r[1] == "produce"));
    let last = rows.last().unwrap();
    assert_eq!(last[5], (4u64 << 20).to_string(), "all 4 MiB acknowledged: {last:?}");
    assert!(rows.iter().any(|r| !r[13].is_empty()), "node CPU sampled");
    assert!(rows.iter().any(|r| !r[9].is_empty()), "latency recorded");
    for stem in ["smoke-throughput", "smoke-latency", "smoke-disk"] {
        assert_png(&out.path().join(format!("{stem}.png")));
        assert_svg(&out.path().join(format!("{stem}.svg")));
    }
    let disk = csv_rows(&out.path().join("smoke-disk.csv"), DISK_COLUMNS);
    assert_eq!(disk.len(), 2);
    for r in &disk {
        // Each block of the small file written and synced once, one at a time.
        let ms = |i: usize| r[i].parse::<f64>().unwrap_or_else(|e| panic!("{r:?}: {e}"));
        assert!(r[8].parse::<u64>().is_ok_and(|n| n > 0), "sync probe ran: {r:?}");
        assert!(ms(9) > 0.0 && ms(9) <= ms(10) && ms(10) <= ms(11) && ms(11) <= ms(12), "{r:?}");
    }
    let summary = std::fs::read_to_string(out.path().join("smoke-summary.md")).unwrap();
    assert!(summary.contains("write + fdatasync p50 / p99 / p99.9 ms"), "{summary}");
    assert!(summary.contains("## Disk ceiling"), "{summary}");
    assert!(summary.contains("MB/s ÷ disk ceiling"), "{summary}");
    assert!(summary.contains("CPU-s / M records"), "{summary}");
    let line = summary.lines().find(|l| l.starts_with("| weir | produce |")).expect("result line");
    assert!(line.contains(" % |"), "ratio to disk ceiling present: {line}");

    // End-to-end latency: open loop, a tailing consumer.
    bench(&[
        "run",
        "--bootstrap",
        &bootstrap,
        "--name",
        "smoke-e2e",
        "--preset",
        "e2e-latency",
        "--rate",
        "2000",
        "--partitions",
        "2",
        "--stored-bytes",
        "2M",
        "--duration",
        "3",
        "--window",
        "0.5",
        "--out",
        o,
        "--no-disk",
    ]);
    let rows = csv_rows(&out.path().join("smoke-e2e.csv"), CSV_COLUMNS);
    assert!(rows.iter().any(|r| r[1] == "consume" && !r[9].is_empty()), "e2e latency recorded");
    assert_png(&out.path().join("smoke-e2e-e2e.png"));

    // The disk ceiling alone.
    let d = out.path().join("disk-dir");
    bench(&[
        "disk",
        "--dir",
        d.to_str().unwrap(),
        "--disk-size",
        "4M",
        "--block-sizes",
        "256K,1M",
        "--out",
        o,
    ]);
    assert_eq!(csv_rows(&out.path().join("disk.csv"), DISK_COLUMNS,).len(), 2);
    assert_png(&out.path().join("disk.png"));
    assert_svg(&out.path().join("disk.svg"));
    assert!(out.path().join("disk-summary.md").exists());
}

#[test]
fn targets_run_writes_one_row_per_target() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dev = WeirDev::start();
    let out = tempfile::tempdir().unwrap();
    let o = out.path().to_str().unwrap();
    let stdout = bench(&[
        "targets",
        "--bootstrap",
        &format!("weir={}", dev.bootstrap()),
        "--node-pid",
        &dev.pid().to_string(),
        "--stored-bytes",
        "1M",
        "--backlog-bytes",
        "1M",
        "--duration",
        "2",
        "--window",
        "0.5",
        "--out",
        o,
        "--disk-size",
        "4M",
        "--block-sizes",
        "256K,1M",
    ]);
    let summary = std::fs::read_to_string(out.path().join("targets-summary.md")).unwrap();
    assert!(summary.contains("## Disk ceiling"), "{summary}");
    assert!(summary.contains("| target | required | measured | met? | gap |"), "{summary}");
    for n in 1..=6 {
        let row = format!("| {n}. ");
        assert_eq!(summary.lines().filter(|l| l.starts_with(&row)).count(), 1, "{row}\n{summary}");
        assert!(stdout.lines().any(|l| l.starts_with(&row)), "{row} printed\n{stdout}");
    }
    // Each phase wrote what `run` writes.
    for phase in ["omb-max", "omb-half", "kreps-100b", "backlog"] {
        let rows = csv_rows(&out.path().join(format!("targets-{phase}.csv")), CSV_COLUMNS);
        assert!(!rows.is_empty(), "{phase}");
        assert!(out.path().join(format!("targets-{phase}-summary.md")).exists(), "{phase}");
        assert_png(&out.path().join(format!("targets-{phase}-throughput.png")));
    }
    assert_png(&out.path().join("targets-disk.png"));
    let half = csv_rows(&out.path().join("targets-omb-half.csv"), CSV_COLUMNS);
    assert!(half.iter().any(|r| r[1] == "consume" && !r[9].is_empty()), "e2e latency recorded");
}
