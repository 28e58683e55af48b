//! InitProducerId (idempotent producers) and OffsetForLeaderEpoch.
//!
//! Producer ids come from blocks the controller allocates to this node, so
//! they never repeat across nodes or restarts. Shard 0 hands them out, one
//! block at a time.

use crate::shard::Shard;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse, ProducerId,
};
use std::cell::Cell;
use std::rc::Rc;
use weir_proto::{ShardId, TopicPartition};

/// Producer ids requested from the controller at a time.
const PRODUCER_ID_BLOCK: u64 = 1000;

thread_local! {
    /// The current block on shard 0: next id and one past the last.
    static BLOCK: Cell<(i64, i64)> = const { Cell::new((0, 0)) };
}

async fn next_producer_id(shard: Rc<Shard>) -> Result<i64, i16> {
    let (next, end) = BLOCK.with(|b| b.get());
    if next < end {
        BLOCK.with(|b| b.set((next + 1, end)));
        return Ok(next);
    }
    let (start, len) = crate::metadata_sync::allocate_producer_ids(&shard, PRODUCER_ID_BLOCK)
        .await
        .map_err(|e| e.kafka_code())?;
    // Another request may have refilled the block while we waited.
    let (next, end) = BLOCK.with(|b| b.get());
    if next < end {
        BLOCK.with(|b| b.set((next + 1, end)));
        return Ok(next);
    }
    BLOCK.with(|b| b.set((start + 1, start + len as i64)));
    Ok(start)
}

pub async fn handle(shard: Rc<Shard>, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let resp = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
        .with_ongoing_txn_producer_id(ProducerId(-1))
        .with_ongoing_txn_producer_epoch(-1);
    if req.transactional_id.as_ref().is_some_and(|t| !t.0.is_empty()) {
        // Transactions are not implemented yet: refuse clearly rather than
        // hand out an id a transactional producer would misuse.
        return resp.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    // KIP-360: an idempotent producer may bump its own epoch after an error.
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        return resp.with_producer_id(req.producer_id).with_producer_epoch(req.producer_epoch + 1);
    }
    match shard.run_on(ShardId(0), next_producer_id).await {
        Ok(Ok(id)) => {
            resp.with_error_code(0).with_producer_id(ProducerId(id)).with_producer_epoch(0)
        }
        Ok(Err(code)) => resp.with_error_code(code),
        Err(_) => resp.with_error_code(ResponseError::CoordinatorNotAvailable.code()),
    }
}

async fn epoch_end_local(
    shard: Rc<Shard>,
    tp: TopicPartition,
    current: i32,
    asked: i32,
) -> (i16, i32, i64) {
    let Some(p) = shard.partition(&tp) else {
        return (ResponseError::UnknownTopicOrPartition.code(), -1, -1);
    };
    // The leader answers from its epoch cache (Kafka's OffsetForLeaderEpoch).
    let answer = p.replica.borrow().handle_epoch_query(
        weir_proto::LeaderEpoch(if current >= 0 { current } else { p.leader_epoch().0 }),
        weir_proto::LeaderEpoch(asked),
    );
    match answer {
        Ok(end) => (0, end.epoch.0, end.end_offset.0),
        Err(weir_node_core::replica::ReplicaError::FencedLeaderEpoch) => {
            (ResponseError::FencedLeaderEpoch.code(), -1, -1)
        }
        Err(weir_node_core::replica::ReplicaError::UnknownLeaderEpoch) => {
            (ResponseError::UnknownLeaderEpoch.code(), -1, -1)
        }
        Err(_) => (ResponseError::NotLeaderOrFollower.code(), -1, -1),
    }
}

pub async fn offset_for_leader_epoch(
    shard: Rc<Shard>,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let mut topics = Vec::new();
    for t in req.topics {
        let mut parts = Vec::new();
        for p in t.partitions {
            let tp = TopicPartition::new(t.topic.0.to_string(), p.partition);
            let target = shard.shard_for(&tp);
            let (current, asked) = (p.current_leader_epoch, p.leader_epoch);
            let (code, epoch, end) = shard
                .run_on(target, move |s| epoch_end_local(s, tp, current, asked))
                .await
                .unwrap_or((ResponseError::NotLeaderOrFollower.code(), -1, -1));
            parts.push(
                EpochEndOffset::default()
                    .with_partition(p.partition)
                    .with_error_code(code)
                    .with_leader_epoch(epoch)
                    .with_end_offset(end),
            );
        }
        topics
            .push(OffsetForLeaderTopicResult::default().with_topic(t.topic).with_partitions(parts));
    }
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
