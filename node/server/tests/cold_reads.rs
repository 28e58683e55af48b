//! Cold reads on real O_DIRECT files: with nothing in the batch cache, a
//! sequential reader is answered from segment files and then from what the
//! partition read ahead of it; every batch comes back whole, in order, once,
//! and a reader that jumps elsewhere is not served the read-ahead.

use bytes::Bytes;
use weir_node::rt::{dma_probe, run_local};
use weir_node::storage::read_ahead::ReadAheads;
use weir_proto::batch::{BatchIter, build};
use weir_proto::{Offset, TopicPartition};

mod common;

use common::{T0, read_from};

fn served_from_read_ahead() -> u64 {
    weir_node::metrics::with(|m| m.read_ahead_served_bytes)
}

fn read_from_files() -> u64 {
    weir_node::metrics::with(|m| m.log_read_bytes)
}

#[test]
fn sequential_cold_reader_is_served_from_read_ahead_in_order() {
    let dir = tempfile::tempdir().unwrap();
    run_local(async {
        dma_probe(dir.path(), 0).await.unwrap();
        let read_aheads = ReadAheads::new(8 << 20);
        // No batch cache: every read goes to the files.
        let p = common::open_with(
            dir.path(),
            TopicPartition::new("cold", 0),
            1,
            1 << 20,
            0,
            read_aheads.clone(),
        )
        .await;
        common::lead_alone(&p).await;
        // 300 batches of 10 records of 1000 B: ~3 MB over three 1 MiB segments.
        let mut stored = 0u64;
        for i in 0..300 {
            let batch = Bytes::from(build::simple(10, 1000, T0 + i));
            stored += batch.len() as u64;
            p.append(&batch, 1, 30_000, T0).await.expect("append");
        }
        let expected: Vec<(i64, i64)> = (0..300).map(|i| (i * 10, i * 10 + 9)).collect();

        // 40 KiB per fetch from 64 KiB stretches: each stretch ends inside a
        // batch it does not serve; those bytes start the next stretch.
        let (served_before, read_before) = (served_from_read_ahead(), read_from_files());
        assert_eq!(read_from(&p, Offset(0), 40 << 10).await, expected);
        let served = served_from_read_ahead() - served_before;
        let read = read_from_files() - read_before;
        assert!(served > 2 << 20, "most of a sequential read comes from read-ahead: {served} B");
        // Nothing is read twice but the tail of each segment's first read
        // (and its zero tail): 3 segments.
        assert!(read <= stored + 3 * (64 << 10), "read {read} B for {stored} B stored");
        assert!(read_aheads.used_bytes() <= 8 << 20);

        // A reader starting in the middle, then one going back to the start:
        // each gets exactly its batches, whatever was read ahead for another.
        assert_eq!(read_from(&p, Offset(1505), 48 << 10).await, expected[150..].to_vec());
        let first = p.read(Offset(0), 32 << 10).await.expect("read");
        let (h, _) = BatchIter::new(&first.records).next().unwrap().unwrap();
        assert_eq!(h.base_offset, Offset(0));
    });
}

#[test]
fn sealed_segments_end_on_a_block_and_read_back_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    run_local(async {
        dma_probe(dir.path(), 0).await.unwrap();
        let tp = TopicPartition::new("cold", 0);
        let open = |cache_bytes| {
            common::open_with(
                dir.path(),
                tp.clone(),
                1,
                1 << 20,
                cache_bytes,
                ReadAheads::new(8 << 20),
            )
        };
        let p = open(64 << 20).await;
        common::lead_alone(&p).await;
        // 10 records of 997 B: batch ends never fall on a 4 KiB boundary.
        for i in 0..300 {
            let batch = Bytes::from(build::simple(10, 997, T0 + i));
            p.append(&batch, 1, 30_000, T0).await.expect("append");
        }
        p.close().await.unwrap();
        drop(p);
        let mut sealed: Vec<_> = std::fs::read_dir(dir.path().join("cold-0"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        sealed.sort();
        sealed.pop(); // the active segment, cut exactly at shutdown
        assert!(sealed.len() >= 2, "several sealed segments: {sealed:?}");
        for path in &sealed {
            let len = std::fs::metadata(path).unwrap().len();
            assert_eq!(len % 4096, 0, "{} ends on a block", path.display());
        }

        // After a restart (indexes trusted, sizes taken from the files), with
        // no cache: every batch once, in order, across the zero tails.
        let p = open(0).await;
        common::lead_alone(&p).await;
        let expected: Vec<(i64, i64)> = (0..300).map(|i| (i * 10, i * 10 + 9)).collect();
        assert_eq!(read_from(&p, Offset(0), 40 << 10).await, expected);
        assert_eq!(read_from(&p, Offset(0), 8 << 20).await, expected);
        let batch = Bytes::from(build::simple(10, 997, T0));
        let appended = p.append(&batch, 1, 30_000, T0).await.expect("append after restart");
        assert_eq!(appended.base_offset, Offset(3000));
        p.close().await.unwrap();
    });
}
