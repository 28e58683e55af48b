//! Named workloads, so that runs on different brokers and machines compare.

use crate::workload::{Params, Workload};

pub struct Preset {
    pub name: &'static str,
    pub about: &'static str,
    pub params: Params,
}

/// All presets. Flags given on the command line override a preset's values.
pub fn all() -> Vec<Preset> {
    vec![
        Preset {
            name: "omb-1kb",
            about: "OpenMessaging Benchmark's Kafka workload: 1 topic, 100 partitions, 1 KiB records, \
                    acks=all, linger 1 ms, batch 1 MiB, max rate",
            params: Params { partitions: 100, ..Params::default() },
        },
        Preset {
            name: "kreps-100b",
            about: "Jay Kreps' 2014 'two million writes per second' setup: 100 B records, \
                    6 partitions, acks=1, one producer, max rate",
            params: Params {
                record_size: 100,
                partitions: 6,
                acks: "1".into(),
                linger_ms: 5.0,
                batch_size: 64 << 10,
                ..Params::default()
            },
        },
        Preset {
            name: "e2e-latency",
            about: "end-to-end latency: 1 KiB records, 16 partitions, acks=all, linger 0, \
                    open loop at 10 000 records/s, one tailing consumer",
            params: Params {
                workload: Workload::E2e,
                linger_ms: 0.0,
                rate: Some(10_000.0),
                ..Params::default()
            },
        },
    ]
}

pub fn find(name: &str) -> Option<Preset> {
    all().into_iter().find(|p| p.name == name)
}

#[cfg(test)]
mod tests {
    #[test]
    fn presets_are_found() {
        for n in ["omb-1kb", "kreps-100b", "e2e-latency"] {
            assert!(super::find(n).is_some(), "{n}");
        }
        assert!(super::find("nope").is_none());
    }
}
