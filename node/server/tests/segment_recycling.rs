//! Recycled segment files on real O_DIRECT files: a segment that retention
//! deletes becomes the file of a later segment (same inode), and neither a
//! reader nor recovery after a crash ever takes the old batches still in it
//! for the new segment's.

use bytes::Bytes;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::rc::Rc;
use weir_node::rt::{dma_probe, run_local};
use weir_node::storage::partition::Partition;
use weir_node::storage::read_ahead::ReadAheads;
use weir_proto::batch::{BatchIter, build};
use weir_proto::{Offset, TopicPartition};

mod common;

use common::T0;

/// A one-record batch exactly 4 KiB long: every batch ends on a block, so
/// right after the last one a recycled file holds an old batch (whole and
/// valid), not the zero padding of a partial block.
fn block_batch(ts: i64) -> Bytes {
    for value_len in 3900..4096 {
        let b = build::simple(1, value_len, ts);
        if b.len() == 4096 {
            return Bytes::from(b);
        }
    }
    panic!("no value length gives a 4096-byte batch");
}

/// Every batch from `from` to the end, read in steps of 40 KiB.
async fn read_all(p: &Rc<Partition>, from: Offset) -> Vec<(i64, i64)> {
    common::read_from(p, from, 40 << 10).await
}

/// Appends one 4 KiB batch per offset of `offsets` (acks=1: persisted).
async fn append_blocks(p: &Rc<Partition>, offsets: std::ops::Range<i64>) {
    for i in offsets {
        p.append(&block_batch(T0 + i), 1, 30_000, T0).await.expect("append");
    }
}

/// Inode numbers of the partition folder's files with extension `ext`.
fn inodes(dir: &Path, ext: &str) -> Vec<u64> {
    let mut out: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .map(|p| std::fs::metadata(p).unwrap().ino())
        .collect();
    out.sort();
    out
}

/// The partition under test, leading alone: 256 KiB segments (64 batches of
/// 4 KiB) and no batch cache, so every read goes to the files.
async fn open(dir: &Path) -> Rc<Partition> {
    let tp = TopicPartition::new("recycle", 0);
    let p = common::open_with(dir, tp, 1, 256 << 10, 0, ReadAheads::new(8 << 20)).await;
    common::lead_alone(&p).await;
    p
}

fn recycled() -> u64 {
    weir_node::metrics::with(|m| m.segments_recycled)
}

#[test]
fn deleted_segments_become_new_segments_and_their_old_batches_stay_unread() {
    let dir = tempfile::tempdir().unwrap();
    let pdir = dir.path().join("recycle-0");
    run_local(async {
        dma_probe(dir.path(), 0).await.unwrap();
        let p = open(dir.path()).await;
        // 64 batches of 4 KiB per 256 KiB segment: 200 batches fill 3 segments.
        append_blocks(&p, 0..200).await;
        let first_logs = inodes(&pdir, "log");
        assert!(first_logs.len() >= 4, "several segments: {first_logs:?}");

        // Deleting the first two segments keeps their files as spares.
        p.delete_records(Offset(130)).await.expect("delete records");
        let spares = inodes(&pdir, "spare");
        assert_eq!(spares.len(), 2, "two spares kept");
        assert!(spares.iter().all(|i| first_logs.contains(i)));

        // The next two rolls start segments in those files.
        let before = recycled();
        append_blocks(&p, 200..340).await;
        assert_eq!(recycled() - before, 2, "both spares reused");
        assert!(inodes(&pdir, "spare").is_empty());
        let logs = inodes(&pdir, "log");
        assert!(spares.iter().all(|i| logs.contains(i)), "spares {spares:?} now logs {logs:?}");

        // Reads see the new batches only, whole and in order.
        let start = p.log_start_offset().0;
        let expected: Vec<(i64, i64)> = (start..340).map(|o| (o, o)).collect();
        assert_eq!(read_all(&p, Offset(start)).await, expected);

        // One more spare, then a crash inside a recycled segment (no close:
        // nothing is cut at shutdown). Right after the last batch the file
        // holds an older batch from the segment it used to be.
        p.delete_records(Offset(200)).await.expect("delete records");
        assert_eq!(inodes(&pdir, "spare").len(), 1);
        let end = p.log_end_offset();
        drop(p);
        let p = open(dir.path()).await;
        assert_eq!(p.log_end_offset(), end, "recovery stops at the last batch written");
        let expected: Vec<(i64, i64)> = (200..340).map(|o| (o, o)).collect();
        assert_eq!(read_all(&p, Offset(200)).await, expected);
        let next = p.append(&block_batch(T0), 1, 30_000, T0).await.expect("append after restart");
        assert_eq!(next.base_offset, end);
        // Spares do not outlive a restart (unlinked by a job of the blocking
        // thread: a later job is a barrier).
        weir_node::rt::off_shard(|| ()).await;
        assert!(inodes(&pdir, "spare").is_empty());
        p.close().await.unwrap();
    });
}

#[test]
fn a_segment_file_being_read_when_deleted_is_not_recycled() {
    let dir = tempfile::tempdir().unwrap();
    let pdir = dir.path().join("recycle-0");
    run_local(async {
        dma_probe(dir.path(), 0).await.unwrap();
        let p = open(dir.path()).await;
        append_blocks(&p, 0..200).await;
        let first = inodes(&pdir, "log");
        let segment0 = std::fs::metadata(pdir.join(format!("{:020}.log", 0))).unwrap().ino();
        // A read of segment 0 in flight (its O_DIRECT read submitted) while
        // retention deletes segments 0 and 1.
        let read = p.read(Offset(0), 40 << 10);
        futures::pin_mut!(read);
        assert!(futures::poll!(read.as_mut()).is_pending(), "the read waits for the device");
        p.delete_records(Offset(130)).await.expect("delete records");
        let spares = inodes(&pdir, "spare");
        assert_eq!(spares.len(), 1, "only the segment nobody reads is kept");
        assert!(!spares.contains(&segment0) && first.contains(&spares[0]));
        // The reader gets the old segment's batches: the file was unlinked,
        // not overwritten.
        let got = read.await.expect("read");
        let (h, _) = BatchIter::new(&got.records).next().unwrap().unwrap();
        assert_eq!(h.base_offset, Offset(0));
        p.close().await.unwrap();
    });
}
