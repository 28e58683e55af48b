//! ListOffsets: earliest (−2, and −4 earliest-local), latest (−1: the high
//! watermark, which is also the last stable offset as there are no
//! transactions yet), max timestamp (−3, KIP-734), or the first offset whose
//! batch timestamp is at or after a given time.

use crate::shard::Shard;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use std::rc::Rc;
use weir_proto::TopicPartition;

#[derive(Debug, Clone, Copy)]
struct Answer {
    error_code: i16,
    timestamp: i64,
    offset: i64,
    leader_epoch: i32,
}

async fn lookup_local(shard: Rc<Shard>, tp: TopicPartition, timestamp: i64) -> Answer {
    let fail = |code: i16| Answer { error_code: code, timestamp: -1, offset: -1, leader_epoch: -1 };
    let Some(p) = shard.partition(&tp) else {
        return fail(shard.not_hosted_error(&tp));
    };
    if !crate::replication::is_leader(&p) {
        return fail(ResponseError::NotLeaderOrFollower.code());
    }
    let epoch = p.leader_epoch().0;
    let at =
        |offset: i64, ts: i64| Answer { error_code: 0, timestamp: ts, offset, leader_epoch: epoch };
    match timestamp {
        -1 => at(p.high_watermark().0, -1),
        -2 | -4 => at(p.log_start_offset().0, -1),
        -3 => match p.max_timestamp_offset().await {
            Ok(Some((o, ts))) => at(o.0, ts),
            Ok(None) => at(-1, -1),
            Err(e) => fail(e.code()),
        },
        ts if ts >= 0 => match p.offset_for_timestamp(ts).await {
            Ok(Some((o, found))) => at(o.0, found),
            Ok(None) => at(-1, -1),
            Err(e) => fail(e.code()),
        },
        _ => fail(ResponseError::InvalidRequest.code()),
    }
}

pub async fn handle(
    shard: Rc<Shard>,
    req: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let mut work = Vec::new();
    for (ti, topic) in req.topics.iter().enumerate() {
        for (pi, p) in topic.partitions.iter().enumerate() {
            let tp = TopicPartition::new(topic.name.0.to_string(), p.partition_index);
            let target = shard.shard_for(&tp);
            let ts = p.timestamp;
            let shard = shard.clone();
            work.push(async move {
                let a = shard.run_on(target, move |s| lookup_local(s, tp, ts)).await.unwrap_or(
                    Answer {
                        error_code: ResponseError::NotLeaderOrFollower.code(),
                        timestamp: -1,
                        offset: -1,
                        leader_epoch: -1,
                    },
                );
                (ti, pi, a)
            });
        }
    }
    let answers = futures::future::join_all(work).await;
    let mut topics: Vec<ListOffsetsTopicResponse> = req
        .topics
        .iter()
        .map(|t| {
            ListOffsetsTopicResponse::default().with_name(t.name.clone()).with_partitions(
                t.partitions
                    .iter()
                    .map(|p| {
                        ListOffsetsPartitionResponse::default()
                            .with_partition_index(p.partition_index)
                    })
                    .collect(),
            )
        })
        .collect();
    for (ti, pi, a) in answers {
        let r = &mut topics[ti].partitions[pi];
        r.error_code = a.error_code;
        r.timestamp = a.timestamp;
        r.offset = a.offset;
        // leader_epoch exists from v4 on; older versions cannot carry it.
        if version >= 4 {
            r.leader_epoch = a.leader_epoch;
        }
    }
    ListOffsetsResponse::default().with_topics(topics)
}
