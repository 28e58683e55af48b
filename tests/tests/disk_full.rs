//! Disk-full safety on a real, small filesystem (a 64 MiB ext4 image,
//! loop-mounted): when free space drops below `--min-free-bytes`, produces are
//! refused with a retriable KAFKA_STORAGE_ERROR and a clear message, reads keep
//! working, nothing acknowledged is lost, and appends resume once space
//! returns. Needs root (mount), as on the project's machines and CI.

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use weir_proto::batch::{BatchIter, build};
use weir_tests::raw::Client;
use weir_tests::{WeirDev, free_port};

struct LoopMount {
    _dir: tempfile::TempDir,
    mnt: PathBuf,
}

impl LoopMount {
    fn new(size_mib: u64) -> LoopMount {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("fs.img");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        std::fs::File::create(&img).unwrap().set_len(size_mib << 20).unwrap();
        let run = |cmd: &mut Command| {
            let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
            assert!(
                out.status.success(),
                "{cmd:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(Command::new("mkfs.ext4").arg("-q").arg(&img));
        run(Command::new("mount").args(["-o", "loop"]).arg(&img).arg(&mnt));
        LoopMount { _dir: dir, mnt }
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
    }
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn produce(c: &mut Client, batch: Vec<u8>) -> (i16, i64, Option<String>) {
    let req =
        ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![
            produce_request::TopicProduceData::default()
                .with_name(name("fill"))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(Bytes::from(batch))),
                ]),
        ]);
    let ResponseKind::Produce(r) = c.call(ApiKey::Produce, 9, RequestKind::Produce(req)) else {
        panic!()
    };
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset, p.error_message.as_ref().map(|m| m.to_string()))
}

/// Reads the partition from offset 0 and returns every batch's (base, last).
fn read_all(c: &mut Client) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut at = 0i64;
    loop {
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_bytes(8 << 20)
            .with_topics(vec![
                fetch_request::FetchTopic::default().with_topic(name("fill")).with_partitions(
                    vec![
                        fetch_request::FetchPartition::default()
                            .with_partition(0)
                            .with_fetch_offset(at)
                            .with_partition_max_bytes(4 << 20),
                    ],
                ),
            ]);
        let ResponseKind::Fetch(r) = c.call(ApiKey::Fetch, 12, RequestKind::Fetch(req)) else {
            panic!()
        };
        let p = &r.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "reads keep working");
        let records = p.records.clone().unwrap_or_default();
        if records.is_empty() {
            return out;
        }
        for item in BatchIter::new(&records) {
            let (h, _) = item.expect("every batch read back passes its CRC");
            out.push((h.base_offset.0, h.last_offset().0));
            at = h.last_offset().0 + 1;
        }
    }
}

fn write_filler(path: &Path, mib: usize) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let block = vec![0xabu8; 1 << 20];
    for _ in 0..mib {
        f.write_all(&block).unwrap();
    }
    f.sync_all().unwrap();
}

#[test]
fn appends_stop_below_the_free_space_threshold_and_resume_when_space_returns() {
    let fs = LoopMount::new(64);
    let filler = fs.mnt.join("filler");
    write_filler(&filler, 24);
    let data = fs.mnt.join("weir");
    std::fs::create_dir(&data).unwrap();
    let args: Vec<String> =
        ["--min-free-bytes", &(12u64 << 20).to_string()].iter().map(|s| s.to_string()).collect();
    let dev = WeirDev::start_in(&data, free_port(), 2, &args);
    let mut c = Client::connect(&dev.bootstrap());
    let create = CreateTopicsRequest::default().with_timeout_ms(10_000).with_topics(vec![
        create_topics_request::CreatableTopic::default()
            .with_name(name("fill"))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(vec![
                create_topics_request::CreatableTopicConfig::default()
                    .with_name(StrBytes::from_static_str("segment.bytes"))
                    .with_value(Some(StrBytes::from_static_str("1048576"))),
            ]),
    ]);
    let ResponseKind::CreateTopics(r) =
        c.call(ApiKey::CreateTopics, 5, RequestKind::CreateTopics(create))
    else {
        panic!()
    };
    assert_eq!(r.topics[0].error_code, 0);

    // Fill until the node refuses.
    let mut acked: Vec<(i64, i64)> = Vec::new();
    let mut refusal = None;
    for _ in 0..2000 {
        let (code, base, message) = produce(&mut c, build::simple(100, 1000, 1_700_000_000_000));
        match code {
            0 => acked.push((base, base + 99)),
            56 => {
                refusal = message;
                break;
            }
            other => panic!("unexpected produce error {other}: {message:?}"),
        }
    }
    let refusal = refusal.expect("the node refused appends before the filesystem filled");
    assert!(refusal.contains("data_dir_min_free_bytes"), "the producer is told why: {refusal}");
    assert!(acked.len() > 20, "some data was written first ({} batches)", acked.len());
    let metrics = dev.scrape();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("weir_data_dir_appends_blocked{") && l.ends_with(" 1")),
        "the blocked state is visible in /metrics"
    );
    assert!(dev.log().contains("appends to this data directory stop"), "and in the log");

    // Reads keep working and serve everything that was acknowledged.
    assert_eq!(read_all(&mut c), acked);

    // Space returns: appends resume (the monitor notices within a moment).
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let resumed_at = loop {
        let (code, base, message) = produce(&mut c, build::simple(100, 1000, 1_700_000_000_000));
        if code == 0 {
            break base;
        }
        assert_eq!(code, 56, "{message:?}");
        assert!(Instant::now() < deadline, "appends did not resume after space was freed");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(resumed_at, acked.last().unwrap().1 + 1, "offsets continue without a gap");
    acked.push((resumed_at, resumed_at + 99));
    assert_eq!(read_all(&mut c), acked, "nothing acknowledged was lost");
    assert!(dev.log().contains("free space recovered: appends resume"));
    drop(dev);
}
