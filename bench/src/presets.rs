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
            params: Params {
                workload: Workload::Produce,
                record_size: 1024,
                partitions: 100,
                producers: 1,
                consumers: 1,
                acks: "all".into(),
                compression: "none".into(),
                linger_ms: 1.0,
                batch_size: 1 << 20,
                rate: None,
            },
        },
        Preset {
            name: "kreps-100b",
            about: "Jay Kreps' 2014 'two million writes per second' setup: 100 B records, \
                    6 partitions, acks=1, one producer, max rate",
            params: Params {
                workload: Workload::Produce,
                record_size: 100,
                partitions: 6,
                producers: 1,
                consumers: 1,
                acks: "1".into(),
                compression: "none".into(),
                linger_ms: 5.0,
                batch_size: 64 << 10,
                rate: None,
            },
        },
        Preset {
            name: "e2e-latency",
            about: "end-to-end latency: 1 KiB records, 16 partitions, acks=all, linger 0, \
                    open loop at 10 000 records/s, one tailing consumer",
            params: Params {
                workload: Workload::E2e,
                record_size: 1024,
                partitions: 16,
                producers: 1,
                consumers: 1,
                acks: "all".into(),
                compression: "none".into(),
                linger_ms: 0.0,
                batch_size: 1 << 20,
                rate: Some(10_000.0),
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
