//! Produce: route each partition's batches to the shard that owns it, append
//! there, answer once every partition is done (acks=0: no response at all).

use crate::shard::{Shard, now_ms};
use crate::storage::partition::PartitionError;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use std::rc::Rc;
use weir_proto::TopicPartition;

/// One partition's outcome, `Send` so it can cross shards.
#[derive(Debug, Clone)]
pub struct PartitionOutcome {
    pub error_code: i16,
    pub error_message: Option<String>,
    pub base_offset: i64,
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
}

impl PartitionOutcome {
    pub fn error(code: i16, message: Option<String>) -> PartitionOutcome {
        PartitionOutcome {
            error_code: code,
            error_message: message,
            base_offset: -1,
            log_append_time_ms: -1,
            log_start_offset: -1,
        }
    }
}

/// Appends on the owning shard.
pub async fn append_local(
    shard: Rc<Shard>,
    tp: TopicPartition,
    records: bytes::Bytes,
    acks: i16,
    timeout_ms: i64,
) -> PartitionOutcome {
    let Some(partition) = shard.partition(&tp) else {
        return PartitionOutcome::error(shard.not_hosted_error(&tp), None);
    };
    match partition.append(&records, acks, timeout_ms, now_ms()).await {
        Ok(a) => {
            crate::metrics::produced(&tp.topic, a.records_appended, a.bytes_appended);
            PartitionOutcome {
                error_code: 0,
                error_message: None,
                base_offset: a.base_offset.0,
                log_append_time_ms: a.log_append_time_ms,
                log_start_offset: a.log_start_offset.0,
            }
        }
        Err(e) => {
            crate::metrics::produce_failed(&tp.topic);
            if !matches!(e, PartitionError::OutOfOrderSequence) {
                tracing::debug!(partition = %tp, "produce refused: {e}");
            }
            PartitionOutcome::error(e.code(), Some(e.to_string()))
        }
    }
}

pub async fn handle(
    shard: Rc<Shard>,
    req: ProduceRequest,
    version: i16,
    clock: &crate::metrics::RequestClock,
) -> Option<ProduceResponse> {
    let acks = req.acks;
    let timeout_ms = i64::from(req.timeout_ms.max(0));
    let by_id = version >= 13;
    let mut topics = Vec::with_capacity(req.topic_data.len());
    let mut work = Vec::new();
    for (ti, topic) in req.topic_data.into_iter().enumerate() {
        let name = if by_id {
            shard.metadata.borrow().topic_names.get(&topic.topic_id).cloned()
        } else {
            Some(topic.name.0.to_string())
        };
        topics.push((topic.name.clone(), topic.topic_id, Vec::new()));
        for p in topic.partition_data {
            let index = p.index;
            let outcome = match &name {
                None => Some(PartitionOutcome::error(ResponseError::UnknownTopicId.code(), None)),
                Some(_) if transactional(&req.transactional_id) => Some(PartitionOutcome::error(
                    ResponseError::TransactionalIdAuthorizationFailed.code(),
                    Some("transactions are not supported yet".into()),
                )),
                Some(_) if !matches!(acks, -1..=1) => {
                    Some(PartitionOutcome::error(ResponseError::InvalidRequiredAcks.code(), None))
                }
                Some(_) => None,
            };
            match (outcome, &name) {
                (Some(o), _) => topics[ti].2.push((index, o)),
                (None, Some(name)) => {
                    let tp = TopicPartition::new(name.clone(), index);
                    let records = p.records.unwrap_or_default();
                    let target = shard.shard_for(&tp);
                    let shard = shard.clone();
                    work.push(async move {
                        let out = shard
                            .run_on(target, move |s| append_local(s, tp, records, acks, timeout_ms))
                            .await
                            .unwrap_or_else(|_| {
                                PartitionOutcome::error(
                                    ResponseError::NotLeaderOrFollower.code(),
                                    None,
                                )
                            });
                        (ti, index, out)
                    });
                }
                (None, None) => unreachable!("handled above"),
            }
        }
    }
    // Parked until every partition's append is durable (or refused).
    let parked = (acks != 0).then(|| ProduceWaiter::new(&shard));
    let done = clock.parked(futures::future::join_all(work)).await;
    drop(parked);
    for (ti, index, out) in done {
        topics[ti].2.push((index, out));
    }
    if acks == 0 {
        return None;
    }
    let responses = topics
        .into_iter()
        .map(|(name, id, parts)| {
            let partition_responses = parts
                .into_iter()
                .map(|(index, o)| {
                    PartitionProduceResponse::default()
                        .with_index(index)
                        .with_error_code(o.error_code)
                        .with_base_offset(o.base_offset)
                        .with_log_append_time_ms(o.log_append_time_ms)
                        .with_log_start_offset(o.log_start_offset)
                        .with_error_message(o.error_message.map(StrBytes::from_string))
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(name)
                .with_topic_id(id)
                .with_partition_responses(partition_responses)
        })
        .collect();
    Some(ProduceResponse::default().with_responses(responses))
}

/// Counts a produce request in the shard's produce purgatory while it lives.
struct ProduceWaiter(Rc<Shard>);

impl ProduceWaiter {
    fn new(shard: &Rc<Shard>) -> ProduceWaiter {
        shard.produce_waiters.set(shard.produce_waiters.get() + 1);
        ProduceWaiter(shard.clone())
    }
}

impl Drop for ProduceWaiter {
    fn drop(&mut self) {
        self.0.produce_waiters.set(self.0.produce_waiters.get() - 1);
    }
}

fn transactional(id: &Option<kafka_protocol::messages::TransactionalId>) -> bool {
    id.as_ref().is_some_and(|t| !t.0.is_empty())
}
