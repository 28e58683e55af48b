//! The device's ceiling, measured on the node's data directory.
//!
//! O_DIRECT sequential writes in groups followed by one `fdatasync` (what
//! group commit under acks=all with fsync does), then O_DIRECT sequential
//! reads, at the node's block sizes. The I/O goes through tokio-uring, an
//! io_uring implementation independent of the node's (glommio), so the
//! yardstick does not share the node's bugs.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use anyhow::{Context, Result};
use tokio_uring::buf::{IoBuf, IoBufMut};

const ALIGN: usize = 4096;

/// A 4 KiB-aligned heap buffer, as O_DIRECT needs.
pub struct AlignedBuf {
    ptr: *mut u8,
    len: usize,
    init: usize,
}

impl AlignedBuf {
    pub fn new(len: usize) -> AlignedBuf {
        assert!(
            len > 0 && len.is_multiple_of(ALIGN),
            "buffer length must be a multiple of {ALIGN}"
        );
        let layout = Layout::from_size_align(len, ALIGN).expect("layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        assert!(!ptr.is_null(), "out of memory");
        // Fill with non-zero, non-repeating bytes so no layer can shortcut zeros.
        // SAFETY: ptr is valid for len bytes, just allocated.
        let s = unsafe { std::slice::from_raw_parts_mut(ptr, len) };
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for b in s.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        AlignedBuf { ptr, len, init: len }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(self.len, ALIGN).expect("layout");
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.ptr, layout) };
    }
}

// SAFETY: the pointer is to a heap allocation owned by the buffer: it stays
// put when the buffer moves, and lives until drop.
unsafe impl IoBuf for AlignedBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.ptr
    }
    fn bytes_init(&self) -> usize {
        self.init
    }
    fn bytes_total(&self) -> usize {
        self.len
    }
}

// SAFETY: as above; `set_init` only records how much the kernel filled.
unsafe impl IoBufMut for AlignedBuf {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.ptr
    }
    unsafe fn set_init(&mut self, pos: usize) {
        if pos > self.init {
            self.init = pos;
        }
    }
}

/// What to measure.
#[derive(Clone, Debug)]
pub struct DiskOpts {
    pub dir: PathBuf,
    /// Bytes written (and read back) per block size.
    pub size: u64,
    pub block_sizes: Vec<usize>,
    /// Bytes written (concurrently) between two `fdatasync` calls.
    pub sync_bytes: u64,
    /// Reads in flight.
    pub read_depth: usize,
}

/// One block size's result.
#[derive(Clone, Debug)]
pub struct DiskResult {
    pub block_size: usize,
    pub bytes: u64,
    pub writes_per_sync: usize,
    /// Overwriting written blocks: the device's speed, and the ceiling.
    pub write_mb_s: f64,
    /// The first pass, into blocks `fallocate` left unwritten (shown beside
    /// it: what appending to a new file costs on this filesystem).
    pub write_fresh_mb_s: f64,
    pub read_mb_s: f64,
    /// One block written and synced at a time (overwriting): the latency an
    /// acknowledgement under acks=all with fsync cannot beat on this device.
    pub sync_latency: SyncLatency,
    /// False when the filesystem refused O_DIRECT (tmpfs): then the numbers
    /// are the page cache's, not the device's.
    pub direct: bool,
}

/// Latency of one O_DIRECT write followed by `fdatasync`, nothing else in
/// flight, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SyncLatency {
    pub ops: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl SyncLatency {
    /// Nearest-rank percentiles of `samples_us` (sorted here).
    pub fn from_samples(mut samples_us: Vec<u64>) -> SyncLatency {
        if samples_us.is_empty() {
            return SyncLatency::default();
        }
        samples_us.sort_unstable();
        let n = samples_us.len();
        let at = |q: f64| {
            let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
            samples_us[rank - 1] as f64 / 1000.0
        };
        SyncLatency {
            ops: n,
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: samples_us[n - 1] as f64 / 1000.0,
        }
    }
}

/// Writes in the latency probe of each block size (fewer when the file is
/// smaller: each block is written once).
pub const SYNC_PROBE_OPS: u64 = 1000;

/// The write ceiling to compare a node against: the best block size and
/// pass.
pub fn write_ceiling(results: &[DiskResult]) -> Option<f64> {
    results
        .iter()
        .map(|r| r.write_mb_s.max(r.write_fresh_mb_s))
        .fold(None, |m, v| Some(m.map_or(v, |m: f64| m.max(v))))
}

pub fn read_ceiling(results: &[DiskResult]) -> Option<f64> {
    results.iter().map(|r| r.read_mb_s).fold(None, |m, v| Some(m.map_or(v, |m: f64| m.max(v))))
}

fn open(path: &Path, direct: bool) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.read(true).write(true).create(true).truncate(true);
    if direct {
        o.custom_flags(libc::O_DIRECT);
    }
    o.open(path)
}

/// Runs the measurement (a tokio-uring runtime on this thread).
pub fn measure(opts: &DiskOpts) -> Result<Vec<DiskResult>> {
    std::fs::create_dir_all(&opts.dir).with_context(|| format!("create {}", opts.dir.display()))?;
    let mut out = Vec::new();
    for &bs in &opts.block_sizes {
        let r = tokio_uring::start(measure_one(opts, bs))
            .with_context(|| format!("disk measurement, block size {bs}"))?;
        out.push(r);
    }
    Ok(out)
}

async fn measure_one(opts: &DiskOpts, bs: usize) -> Result<DiskResult> {
    let bs = bs.div_ceil(ALIGN) * ALIGN;
    let blocks = (opts.size / bs as u64).max(1);
    let size = blocks * bs as u64;
    let path = opts.dir.join(format!(".weir-bench-disk-{}-{bs}.tmp", std::process::id()));
    let (std_file, direct) = match open(&path, true) {
        Ok(f) => (f, true),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => (open(&path, false)?, false),
        Err(e) => return Err(e).with_context(|| format!("open {}", path.display())),
    };
    let file = Rc::new(tokio_uring::fs::File::from_std(std_file));
    let result = async {
        // Preallocate, as the node does for its segments.
        let _ = file.fallocate(0, size, 0).await;
        let per_sync = ((opts.sync_bytes as usize) / bs).max(1);
        let mut pool: Vec<AlignedBuf> =
            (0..per_sync.max(opts.read_depth)).map(|_| AlignedBuf::new(bs)).collect();

        // Writes: a group in flight, then one fdatasync; twice. The first
        // pass writes blocks fallocate left unwritten (ext4 converts them at
        // each write's completion and fdatasync writes the extent tree: what
        // a new segment file costs), the second overwrites written blocks
        // (what a recycled segment costs): the device's own speed.
        let fresh_s = pass(&file, &mut pool, blocks, bs, per_sync, Op::WriteSync).await?;
        let write_s = pass(&file, &mut pool, blocks, bs, per_sync, Op::WriteSync).await?;
        let sync_latency = sync_probe(&file, &mut pool, blocks.min(SYNC_PROBE_OPS), bs).await?;

        // Reads: `read_depth` in flight, sequential.
        let read_s = pass(&file, &mut pool, blocks, bs, opts.read_depth.max(1), Op::Read).await?;
        Ok::<_, anyhow::Error>(DiskResult {
            block_size: bs,
            bytes: size,
            writes_per_sync: per_sync,
            write_mb_s: size as f64 / 1e6 / write_s.max(1e-9),
            write_fresh_mb_s: size as f64 / 1e6 / fresh_s.max(1e-9),
            read_mb_s: size as f64 / 1e6 / read_s.max(1e-9),
            sync_latency,
            direct,
        })
    }
    .await;
    let _ = std::fs::remove_file(&path);
    result
}

/// What a [`pass`] does with each group of blocks.
#[derive(Clone, Copy, PartialEq)]
enum Op {
    /// Write them, then one fdatasync.
    WriteSync,
    Read,
}

/// Writes or reads `blocks` blocks of `bs` bytes from the start of `file`
/// in order, `group` in flight at a time; returns the seconds taken.
async fn pass(
    file: &Rc<tokio_uring::fs::File>,
    pool: &mut Vec<AlignedBuf>,
    blocks: u64,
    bs: usize,
    group: usize,
    op: Op,
) -> Result<f64> {
    let t = Instant::now();
    let mut next: u64 = 0;
    while next < blocks {
        let n = group.min((blocks - next) as usize);
        let mut handles = Vec::with_capacity(n);
        for k in 0..n {
            let f = file.clone();
            let buf = pool.pop().expect("pool");
            let pos = (next + k as u64) * bs as u64;
            handles.push(tokio_uring::spawn(async move {
                match op {
                    Op::WriteSync => f.write_all_at(buf, pos).await,
                    Op::Read => f.read_exact_at(buf, pos).await,
                }
            }));
        }
        for h in handles {
            let (res, buf) = h.await.context("I/O task")?;
            res.context(if op == Op::Read { "read" } else { "write" })?;
            pool.push(buf);
        }
        if op == Op::WriteSync {
            file.sync_data().await.context("fdatasync")?;
        }
        next += n as u64;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Writes the first `ops` blocks one at a time, each followed by
/// `fdatasync` before the next starts, and times each pair.
async fn sync_probe(
    file: &Rc<tokio_uring::fs::File>,
    pool: &mut Vec<AlignedBuf>,
    ops: u64,
    bs: usize,
) -> Result<SyncLatency> {
    let mut buf = pool.pop().expect("pool");
    let mut samples = Vec::with_capacity(ops as usize);
    for k in 0..ops {
        let t = Instant::now();
        let (res, b) = file.write_all_at(buf, k * bs as u64).await;
        buf = b;
        res.context("write")?;
        file.sync_data().await.context("fdatasync")?;
        samples.push(t.elapsed().as_micros() as u64);
    }
    pool.push(buf);
    Ok(SyncLatency::from_samples(samples))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_latency_percentiles() {
        let l = SyncLatency::from_samples((1..=1000).rev().collect());
        assert_eq!((l.ops, l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms), (1000, 0.5, 0.99, 0.999, 1.0));
        let one = SyncLatency::from_samples(vec![2500]);
        assert_eq!((one.p50_ms, one.p999_ms, one.max_ms), (2.5, 2.5, 2.5));
        assert_eq!(SyncLatency::from_samples(Vec::new()), SyncLatency::default());
    }

    #[test]
    fn aligned_buffer() {
        let b = AlignedBuf::new(8192);
        assert_eq!(b.stable_ptr() as usize % ALIGN, 0);
        assert_eq!(b.bytes_total(), 8192);
    }

    #[test]
    fn small_measurement() {
        let dir = tempfile::tempdir().unwrap();
        let opts = DiskOpts {
            dir: dir.path().to_path_buf(),
            size: 4 << 20,
            block_sizes: vec![256 << 10, 1 << 20],
            sync_bytes: 1 << 20,
            read_depth: 4,
        };
        let r = measure(&opts).unwrap();
        assert_eq!(r.len(), 2);
        assert!(
            r.iter().all(|r| r.write_mb_s > 0.0 && r.write_fresh_mb_s > 0.0 && r.read_mb_s > 0.0)
        );
        assert_eq!(r[0].writes_per_sync, 4);
        // 4 MiB holds 16 blocks of 256 KiB: each written and synced once.
        assert_eq!(r[0].sync_latency.ops, 16);
        assert_eq!(r[1].sync_latency.ops, 4);
        assert!(r.iter().all(|r| r.sync_latency.p50_ms > 0.0
            && r.sync_latency.p50_ms <= r.sync_latency.p999_ms
            && r.sync_latency.p999_ms <= r.sync_latency.max_ms));
        assert!(write_ceiling(&r).unwrap() > 0.0);
    }
}
