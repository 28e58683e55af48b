//! Storage fault tests on real O_DIRECT files: a torn tail write, flipped
//! bytes in the last batch, and missing or truncated indexes. After a restart
//! the partition recovers to the last valid batch, never serves a corrupt one,
//! and appends continue at the right offset.

use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use weir_node::rt::{dma_probe, run_local};
use weir_node::storage::partition::Partition;
use weir_proto::batch::{BatchIter, build};
use weir_proto::{Offset, TopicPartition};

mod common;

async fn open(dir: &Path, segment_bytes: u64) -> Rc<Partition> {
    let p = common::open(dir, TopicPartition::new("faults", 0), 1, segment_bytes).await;
    common::lead_alone(&p).await;
    p
}

/// Appends `count` batches of 10 records each; returns their bytes as sent.
async fn append_batches(p: &Rc<Partition>, count: usize, value_len: usize) {
    for i in 0..count {
        let batch = Bytes::from(build::simple(10, value_len, 1_700_000_000_000 + i as i64));
        p.append(&batch, 1, 30_000, 1_700_000_000_000).await.expect("append");
    }
}

/// Reads the whole partition from its start: (batch base, last) pairs, after
/// checking every returned batch's CRC.
async fn read_all(p: &Rc<Partition>) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut at = p.log_start_offset();
    loop {
        let r = p.read(at, 1 << 20).await.expect("read");
        if r.records.is_empty() {
            break;
        }
        for item in BatchIter::new(&r.records) {
            let (h, _) = item.expect("every served batch passes its CRC check");
            if h.last_offset() >= at {
                out.push((h.base_offset.0, h.last_offset().0));
            }
            at = h.last_offset().next();
        }
    }
    out
}

fn segment_files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("faults-0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    files
}

#[test]
fn torn_tail_write_is_cut_at_the_last_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    run_local(async {
        dma_probe(dir.path(), 0).await.unwrap();
        let p = open(dir.path(), 1 << 30).await;
        append_batches(&p, 50, 100).await;
        assert_eq!(p.log_end_offset(), Offset(500));
        drop(p); // a crash: no clean close
        let seg = segment_files(dir.path(), "log").pop().unwrap();
        let data = std::fs::read(&seg).unwrap();
        // Find the last batch's start and tear it in half.
        let mut last_start = 0;
        let mut end = 0;
        for item in BatchIter::new(&data) {
            let Ok((_, range)) = item else { break };
            last_start = range.start;
            end = range.end;
        }
        let torn = last_start + (end - last_start) / 2;
        let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(torn as u64).unwrap();
        drop(f);

        let p = open(dir.path(), 1 << 30).await;
        assert_eq!(p.log_end_offset(), Offset(490), "recovered to the last whole batch");
        let batches = read_all(&p).await;
        assert_eq!(batches.len(), 49);
        assert_eq!(batches.last(), Some(&(480, 489)));
        append_batches(&p, 1, 100).await;
        assert_eq!(p.log_end_offset(), Offset(500), "appends continue after the cut");
        assert_eq!(read_all(&p).await.len(), 50);
        p.close().await.unwrap();
    });
}

#[test]
fn flipped_byte_in_last_batch_is_never_served() {
    let dir = tempfile::tempdir().unwrap();
    run_local(async {
        dma_probe(dir.path(), 0).await.unwrap();
        let p = open(dir.path(), 1 << 30).await;
        append_batches(&p, 20, 300).await;
        drop(p);
        let seg = segment_files(dir.path(), "log").pop().unwrap();
        let mut data = std::fs::read(&seg).unwrap();
        let mut last = 0..0;
        for item in BatchIter::new(&data) {
            let Ok((_, range)) = item else { break };
            last = range;
        }
        data[last.end - 5] ^= 0x5a;
        std::fs::write(&seg, &data).unwrap();

        let p = open(dir.path(), 1 << 30).await;
        assert_eq!(p.log_end_offset(), Offset(190));
        let batches = read_all(&p).await;
        assert_eq!(batches.len(), 19);
        // Zero-filled preallocation after the end is not mistaken for data.
        append_batches(&p, 3, 300).await;
        assert_eq!(read_all(&p).await.len(), 22);
        p.close().await.unwrap();
    });
}

#[test]
fn missing_or_truncated_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    run_local(async {
        dma_probe(dir.path(), 0).await.unwrap();
        // Small segments so several are sealed with index files.
        let p = open(dir.path(), 1 << 20).await;
        append_batches(&p, 400, 1000).await;
        let before = read_all(&p).await;
        assert_eq!(before.len(), 400);
        p.close().await.unwrap();
        drop(p);
        let indexes = segment_files(dir.path(), "index");
        assert!(indexes.len() >= 2, "several sealed segments: {indexes:?}");
        std::fs::remove_file(&indexes[0]).unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(&indexes[1]).unwrap();
        let len = f.metadata().unwrap().len();
        f.set_len(len.saturating_sub(3)).unwrap();
        drop(f);
        let timeindexes = segment_files(dir.path(), "timeindex");
        std::fs::write(&timeindexes[0], b"garbage").unwrap();

        let p = open(dir.path(), 1 << 20).await;
        assert_eq!(p.log_end_offset(), Offset(4000));
        assert_eq!(read_all(&p).await, before, "every batch readable after rebuild");
        // Reads from the middle use the rebuilt index.
        let r = p.read(Offset(2345), 1 << 16).await.unwrap();
        let (h, _) = BatchIter::new(&r.records).next().unwrap().unwrap();
        assert_eq!(h.base_offset, Offset(2340));
        p.close().await.unwrap();
    });
}
