//! Two replicas of one partition on real O_DIRECT files, driven through the
//! storage shell the way the replication module drives them (without the
//! network): the follower copies the leader's batches byte for byte, and
//! after a leader change the old leader truncates its unreplicated tail to
//! the new leader's epoch end offset and then continues from the new
//! leader, so both logs end up identical.

use bytes::Bytes;
use std::path::Path;
use std::rc::Rc;
use weir_node::rt::{dma_probe, run_local};
use weir_node::storage::partition::{Partition, PartitionError};
use weir_node_core::replica::{FetchAnswer, PartitionEpoch, PartitionState, ReplicaRequest};
use weir_proto::batch::{BatchIter, build};
use weir_proto::{
    LeaderEpoch, NodeId, Offset, PartitionId, ProducerEpoch, ProducerId, TopicPartition,
};

mod common;
use common::T0;

/// Node `node`'s replica; small segments, so truncation crosses segment
/// boundaries.
async fn open(dir: &Path, node: i32) -> Rc<Partition> {
    common::open(dir, TopicPartition::new("r", 0), node, 4096).await
}

fn state(leader: i32, epoch: i32, partition_epoch: i32, isr: &[i32]) -> PartitionState {
    PartitionState {
        partition: PartitionId(0),
        leader: Some(NodeId(leader)),
        leader_epoch: LeaderEpoch(epoch),
        partition_epoch: PartitionEpoch(partition_epoch),
        isr: isr.iter().map(|&n| NodeId(n)).collect(),
        replicas: vec![NodeId(1), NodeId(2)],
    }
}

/// Node 1's replica leading epoch 0 and node 2's following it.
async fn leader_and_follower(d1: &Path, d2: &Path) -> (Rc<Partition>, Rc<Partition>) {
    dma_probe(d1, 0).await.unwrap();
    let a = open(d1, 1).await;
    let b = open(d2, 2).await;
    let s = state(1, 0, 0, &[1, 2]);
    a.apply_partition_state(&s, T0).await.unwrap();
    b.apply_partition_state(&s, T0).await.unwrap();
    (a, b)
}

async fn produce(p: &Rc<Partition>, batches: usize) {
    for i in 0..batches {
        let batch = Bytes::from(build::simple(5, 200, T0 + i as i64));
        p.append(&batch, 1, 30_000, T0).await.expect("append as leader");
    }
}

/// One request from `follower` to `leader` and its answer, as the
/// replication module exchanges them; `false` when the follower had
/// nothing to send.
async fn exchange(follower: &Rc<Partition>, leader: &Rc<Partition>, now: i64, max: usize) -> bool {
    follower.replica.borrow_mut().handle_tick(now);
    let Some(t) = follower.replica.borrow_mut().poll_transmit() else { return false };
    match t.request {
        ReplicaRequest::EpochQuery { request_id, current_leader_epoch, epoch, .. } => {
            let answer = leader.replica.borrow().handle_epoch_query(current_leader_epoch, epoch);
            follower.epoch_query_answered(request_id, answer, now).await.expect("epoch answer");
        }
        ReplicaRequest::Fetch(f) => {
            let answer = leader.replica.borrow_mut().handle_follower_fetch(&f, now);
            leader.update_high_watermark();
            let records = match answer {
                FetchAnswer::Records { from, to, .. } => {
                    leader.read_for_follower(from, to, max).await.expect("leader read")
                }
                _ => Bytes::new(),
            };
            follower.fetch_answered(f.request_id, &answer, &records, now).await.expect("append");
        }
    }
    true
}

/// Every batch of `p` from its start: (base, last, leader epoch, bytes).
async fn batches(p: &Rc<Partition>) -> Vec<(i64, i64, i32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = p.log_start_offset();
    loop {
        let records = p.read_for_follower(at, p.log_end_offset(), 1 << 20).await.expect("read");
        if records.is_empty() {
            return out;
        }
        for item in BatchIter::new(&records) {
            let (h, range) = item.expect("CRC checked");
            out.push((
                h.base_offset.0,
                h.last_offset().0,
                h.partition_leader_epoch.0,
                records[range].to_vec(),
            ));
            at = h.last_offset().next();
        }
    }
}

#[test]
fn follower_copies_and_old_leader_truncates_to_the_new_leaders_epoch() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    run_local(async {
        let (a, b) = leader_and_follower(d1.path(), d2.path()).await;

        // Node 1 leads epoch 0; node 2 copies 6 of its 10 batches.
        produce(&a, 10).await;
        assert_eq!(a.log_end_offset(), Offset(50));
        assert_eq!(a.high_watermark(), Offset(0), "HW waits for the ISR");
        let mut now = T0;
        while b.log_end_offset() < Offset(30) {
            now += 1;
            exchange(&b, &a, now, 1).await; // one batch per fetch
        }
        assert_eq!(b.log_end_offset(), Offset(30));
        now += 1;
        exchange(&b, &a, now, 1).await; // reports 30 and copies one more batch
        assert_eq!(a.high_watermark(), Offset(30), "HW = min over the ISR");
        assert_eq!(b.log_end_offset(), Offset(35));

        // Node 1 is gone; node 2 (7 batches) leads epoch 1 and writes 4 of its own.
        b.apply_partition_state(&state(2, 1, 1, &[2]), now).await.unwrap();
        produce(&b, 4).await;
        assert_eq!(b.log_end_offset(), Offset(55));

        // Node 1 comes back as a follower of epoch 1: it asks where epoch 0
        // ends on node 2 (offset 35), cuts its last 3 batches and fetches on.
        a.apply_partition_state(&state(2, 1, 2, &[2]), now).await.unwrap();
        while a.log_end_offset() > Offset(35) {
            now += 200;
            assert!(exchange(&a, &b, now, 1 << 20).await, "node 1 asks where epoch 0 ends");
        }
        assert_eq!(a.log_end_offset(), Offset(35), "cut at the end of epoch 0 on node 2");
        // A produce of epoch 0 still waiting for its flush (the cut holds the
        // flush lock) waits for offsets that are gone: it fails at once
        // instead of spinning on a flush with nothing left to write.
        assert!(matches!(a.wait_persisted(Offset(50)).await, Err(PartitionError::NotLeader)));
        for _ in 0..200 {
            now += 200;
            exchange(&a, &b, now, 1 << 20).await;
            if a.log_end_offset() == b.log_end_offset() {
                break;
            }
        }
        assert_eq!(a.log_end_offset(), Offset(55));
        let (from_a, from_b) = (batches(&a).await, batches(&b).await);
        assert_eq!(from_a.len(), 11, "7 of epoch 0 + 4 of epoch 1");
        assert_eq!(from_a, from_b, "both logs hold the same batches, byte for byte");
        assert_eq!((from_a[7].0, from_a[7].2), (35, 1), "epoch 1 starts at the cut");

        // The cut survives a restart, and the epoch and HW checkpoints with it.
        let hw = a.high_watermark();
        assert!(hw > Offset(30), "the follower learned the leader's HW: {hw:?}");
        a.close().await.unwrap();
        drop(a);
        let a = open(d1.path(), 1).await;
        assert_eq!(a.log_end_offset(), Offset(55));
        assert_eq!(a.high_watermark(), hw, "the HW restarts from its checkpoint");
        assert_eq!(batches(&a).await, from_b);
        let epochs =
            std::fs::read_to_string(d1.path().join("r-0/leader-epoch-checkpoint")).unwrap();
        assert_eq!(epochs, "0\n2\n0 0\n1 35\n");
    });
}

/// One idempotent batch of 5 records: producer 7, sequences 5*seq.. .
fn idempotent(seq: i32) -> Bytes {
    let value = vec![b'i'; 100];
    let records: Vec<build::Record<'_>> = (0..5)
        .map(|_| build::Record { key: None, value: Some(&value), timestamp_delta: 0 })
        .collect();
    let producer =
        build::Producer { id: ProducerId(7), epoch: ProducerEpoch(0), base_sequence: 5 * seq };
    Bytes::from(build::batch(&records, T0, producer))
}

#[test]
fn a_retry_of_a_batch_cut_away_is_appended_again_not_taken_for_a_duplicate() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    run_local(async {
        let (a, b) = leader_and_follower(d1.path(), d2.path()).await;
        // Node 1 writes batches 0..5 of producer 7; node 2 copies the first 3.
        for seq in 0..5 {
            a.append(&idempotent(seq), 1, 30_000, T0).await.expect("append");
        }
        let mut now = T0;
        while b.log_end_offset() < Offset(15) {
            now += 1;
            exchange(&b, &a, now, 1).await;
        }
        assert_eq!(b.log_end_offset(), Offset(15));
        // Node 2 leads epoch 1; node 1 follows it and cuts batches 3 and 4.
        b.apply_partition_state(&state(2, 1, 1, &[2]), now).await.unwrap();
        a.apply_partition_state(&state(2, 1, 2, &[2]), now).await.unwrap();
        for _ in 0..50 {
            now += 200;
            exchange(&a, &b, now, 1 << 20).await;
        }
        assert_eq!(a.log_end_offset(), Offset(15), "the unreplicated tail is cut");
        // Node 1 leads again (epoch 2) and the producer retries batch 3: it
        // is new here now, so it is written (at 15), not answered from the
        // cut-away copy.
        a.apply_partition_state(&state(1, 2, 3, &[1]), now).await.unwrap();
        let retried = a.append(&idempotent(3), 1, 30_000, T0).await.expect("retry");
        assert_eq!(retried.base_offset, Offset(15));
        assert_eq!(retried.records_appended, 5, "appended, not a duplicate");
        assert_eq!(a.log_end_offset(), Offset(20));
        // A retry of batch 2 (kept) is still a duplicate.
        let dup = a.append(&idempotent(2), 1, 30_000, T0).await.expect("retry of a kept batch");
        assert_eq!((dup.base_offset, dup.records_appended), (Offset(10), 0));
    });
}
