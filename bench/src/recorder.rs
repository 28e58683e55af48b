//! Latency and throughput recording in fixed windows.
//!
//! Each client thread owns a [`Shard`] (a mutex it nearly never shares) and
//! records into an HDR histogram; the sampler drains all shards once a window
//! into one [`WindowStats`] and merges the window into a run-wide histogram.
//! Memory is bounded by the histograms' size, not by the number of records.

use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram;

/// Highest latency tracked: one hour, in microseconds.
const MAX_US: u64 = 3_600_000_000;

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("histogram bounds")
}

#[derive(Debug)]
struct ShardInner {
    hist: Histogram<u64>,
    records: u64,
    bytes: u64,
    errors: u64,
}

/// One thread's recording slot.
#[derive(Debug)]
pub struct Shard {
    inner: Mutex<ShardInner>,
}

impl Shard {
    fn new() -> Shard {
        Shard {
            inner: Mutex::new(ShardInner { hist: new_hist(), records: 0, bytes: 0, errors: 0 }),
        }
    }

    /// A record of `bytes` done, with its latency (`None`: not measured).
    pub fn record(&self, bytes: u64, latency_us: Option<u64>) {
        let mut g = self.inner.lock().expect("shard lock");
        g.records += 1;
        g.bytes += bytes;
        if let Some(l) = latency_us {
            g.hist.saturating_record(l.max(1));
        }
    }

    pub fn error(&self) {
        self.inner.lock().expect("shard lock").errors += 1;
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            p50_us: h.value_at_quantile(0.50),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// What happened in one window, over all shards.
#[derive(Debug, Clone, Copy, Default)]
pub struct WindowStats {
    pub records: u64,
    pub bytes: u64,
    pub errors: u64,
    pub latency: Percentiles,
}

/// Run-wide totals.
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    pub records: u64,
    pub bytes: u64,
    pub errors: u64,
    pub latency: Percentiles,
}

/// The set of shards of one kind of operation (produce, or consume).
#[derive(Debug)]
pub struct Recorder {
    shards: Vec<Arc<Shard>>,
    window: Histogram<u64>,
    total: Histogram<u64>,
    totals: Totals,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            shards: Vec::new(),
            window: new_hist(),
            total: new_hist(),
            totals: Totals::default(),
        }
    }

    /// A new slot for one client thread.
    pub fn shard(&mut self) -> Arc<Shard> {
        let s = Arc::new(Shard::new());
        self.shards.push(s.clone());
        s
    }

    /// Takes everything recorded since the last drain.
    pub fn drain(&mut self) -> WindowStats {
        self.window.reset();
        let mut w = WindowStats::default();
        for s in &self.shards {
            let mut g = s.inner.lock().expect("shard lock");
            w.records += g.records;
            w.bytes += g.bytes;
            w.errors += g.errors;
            g.records = 0;
            g.bytes = 0;
            g.errors = 0;
            self.window.add(&g.hist).expect("same bounds");
            g.hist.reset();
        }
        w.latency = Percentiles::of(&self.window);
        self.total.add(&self.window).expect("same bounds");
        self.totals.records += w.records;
        self.totals.bytes += w.bytes;
        self.totals.errors += w.errors;
        self.totals.latency = Percentiles::of(&self.total);
        w
    }

    /// Totals over all drained windows.
    pub fn totals(&self) -> Totals {
        self.totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_and_totals() {
        let mut r = Recorder::new();
        let a = r.shard();
        let b = r.shard();
        for i in 1..=100 {
            a.record(10, Some(i));
        }
        b.record(5, Some(10_000));
        b.error();
        let w = r.drain();
        assert_eq!((w.records, w.bytes, w.errors), (101, 1005, 1));
        assert_eq!(w.latency.count, 101);
        assert!(w.latency.p50_us >= 50 && w.latency.p50_us <= 52);
        assert!(w.latency.max_us >= 10_000);
        let w2 = r.drain();
        assert_eq!(w2.records, 0);
        assert_eq!(w2.latency, Percentiles::default());
        for _ in 0..3 {
            a.record(10, None);
        }
        r.drain();
        let t = r.totals();
        assert_eq!((t.records, t.bytes, t.errors), (104, 1035, 1));
        assert_eq!(t.latency.count, 101);
    }
}
