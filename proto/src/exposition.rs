//! The Prometheus text exposition of Weir's `/metrics` endpoints, built on
//! the `prometheus` crate's metric model and text encoder.
//!
//! Weir does not keep its counters in `prometheus` metric objects: those are
//! shared atomics, and the node counts per shard in plain thread-local
//! integers instead. At scrape time the merged numbers are turned into metric
//! families here and encoded. A family with no samples yet still gets its
//! HELP and TYPE lines, so every documented metric is always listed.

use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};

/// A histogram's data: upper bounds (seconds, ascending) with the count of
/// observations at or below each, cumulative; total count and sum.
pub struct HistogramData<'a> {
    pub upper_bounds: &'a [f64],
    pub cumulative: &'a [u64],
    pub count: u64,
    pub sum: f64,
}

/// Metric families under construction, in the order they are added.
#[derive(Default)]
pub struct Exposition {
    families: Vec<MetricFamily>,
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition::default()
    }

    fn family(&mut self, name: &str, help: &str, kind: MetricType) -> &mut MetricFamily {
        let mut f = MetricFamily::default();
        f.set_name(name.to_string());
        f.set_help(help.to_string());
        f.set_field_type(kind);
        self.families.push(f);
        self.families.last_mut().expect("pushed")
    }

    /// Starts a counter family; add samples with [`Family::sample`].
    pub fn counter(&mut self, name: &str, help: &str) -> Family<'_> {
        Family(self.family(name, help, MetricType::COUNTER))
    }

    /// Starts a gauge family.
    pub fn gauge(&mut self, name: &str, help: &str) -> Family<'_> {
        Family(self.family(name, help, MetricType::GAUGE))
    }

    /// Starts a histogram family; add series with [`Family::histogram`].
    pub fn histogram(&mut self, name: &str, help: &str) -> Family<'_> {
        Family(self.family(name, help, MetricType::HISTOGRAM))
    }

    /// Encodes every family in the text format (version 0.0.4).
    pub fn render(&self) -> String {
        let encoder = prometheus::TextEncoder::new();
        let mut out = String::with_capacity(16 << 10);
        for f in &self.families {
            if f.get_metric().is_empty() {
                // The encoder refuses empty families; list the metric anyway.
                let kind = match f.get_field_type() {
                    MetricType::COUNTER => "counter",
                    MetricType::GAUGE => "gauge",
                    MetricType::HISTOGRAM => "histogram",
                    MetricType::SUMMARY => "summary",
                    MetricType::UNTYPED => "untyped",
                };
                let help = f.help().replace('\\', "\\\\").replace('\n', "\\n");
                out.push_str(&format!("# HELP {} {help}\n# TYPE {} {kind}\n", f.name(), f.name()));
                continue;
            }
            if let Err(e) = encoder.encode_utf8(std::slice::from_ref(f), &mut out) {
                // Only malformed families fail; say so in the scrape rather than panic.
                out.push_str(&format!("# error encoding {}: {e}\n", f.name()));
            }
        }
        out
    }
}

/// One family being filled.
pub struct Family<'a>(&'a mut MetricFamily);

fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    pairs
        .iter()
        .map(|(k, v)| {
            let mut l = LabelPair::default();
            l.set_name(k.to_string());
            l.set_value(v.to_string());
            l
        })
        .collect()
}

impl Family<'_> {
    /// Adds a counter or gauge sample with these labels.
    pub fn sample(&mut self, label_pairs: &[(&str, &str)], value: f64) -> &mut Self {
        let mut m = Metric::default();
        m.set_label(labels(label_pairs));
        match self.0.get_field_type() {
            MetricType::COUNTER => {
                let mut c = Counter::default();
                c.set_value(value);
                m.set_counter(c);
            }
            _ => {
                let mut g = Gauge::default();
                g.set_value(value);
                m.set_gauge(g);
            }
        }
        self.0.mut_metric().push(m);
        self
    }

    /// Adds one histogram series with these labels.
    pub fn histogram(&mut self, label_pairs: &[(&str, &str)], h: HistogramData<'_>) -> &mut Self {
        assert_eq!(h.upper_bounds.len(), h.cumulative.len(), "one count per bucket");
        let mut hist = Histogram::default();
        hist.set_sample_count(h.count);
        hist.set_sample_sum(h.sum);
        let buckets = h
            .upper_bounds
            .iter()
            .zip(h.cumulative)
            .map(|(le, n)| {
                let mut b = Bucket::default();
                b.set_upper_bound(*le);
                b.set_cumulative_count(*n);
                b
            })
            .collect();
        hist.set_bucket(buckets);
        let mut m = Metric::default();
        m.set_label(labels(label_pairs));
        m.set_histogram(hist);
        self.0.mut_metric().push(m);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_encode_with_help_type_labels_and_buckets() {
        let mut e = Exposition::new();
        e.counter("x_total", "Things \"counted\".").sample(&[("topic", "a\"b")], 3.0);
        e.gauge("empty", "Nothing yet.");
        e.histogram("lat_seconds", "Latency.").histogram(
            &[("api", "Produce")],
            HistogramData { upper_bounds: &[0.001, 0.01], cumulative: &[1, 2], count: 3, sum: 0.5 },
        );
        let text = e.render();
        assert!(text.contains("# TYPE x_total counter\n"), "{text}");
        assert!(text.contains("x_total{topic=\"a\\\"b\"} 3\n"), "{text}");
        assert!(text.contains("# HELP empty Nothing yet.\n# TYPE empty gauge\n"), "{text}");
        assert!(text.contains("lat_seconds_bucket{api=\"Produce\",le=\"0.001\"} 1\n"), "{text}");
        assert!(text.contains("lat_seconds_bucket{api=\"Produce\",le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("lat_seconds_count{api=\"Produce\"} 3\n"), "{text}");
    }
}
