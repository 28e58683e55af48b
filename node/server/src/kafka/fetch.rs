//! Fetch: read each partition on its owning shard (batch cache first, then an
//! O_DIRECT read), honouring partition and response `max_bytes`, the high
//! watermark, and the long poll (`max_wait_ms` / `min_bytes`): a fetch that
//! finds too little parks on the partitions' data-arrived events until data
//! comes or the wait expires. Fetch sessions (KIP-227) are not kept: answering
//! with session id 0 makes clients send full requests.

use crate::shard::{Shard, ShardGone};
use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};
use weir_proto::{Offset, ShardId, TopicPartition};

/// One partition to read, `Send` to cross shards.
#[derive(Debug, Clone)]
struct Item {
    slot: (usize, usize),
    tp: TopicPartition,
    offset: Offset,
    max_bytes: usize,
    /// The consumer's idea of the leader epoch (KIP-320, v9+; −1: none).
    current_leader_epoch: i32,
}

#[derive(Debug, Clone)]
struct ItemResult {
    slot: (usize, usize),
    error_code: i16,
    high_watermark: i64,
    log_start_offset: i64,
    records: Bytes,
}

async fn read_local(shard: Rc<Shard>, items: Vec<Item>, mut budget: usize) -> Vec<ItemResult> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Some(p) = shard.partition(&item.tp) else {
            out.push(ItemResult {
                slot: item.slot,
                error_code: shard.not_hosted_error(&item.tp),
                high_watermark: -1,
                log_start_offset: -1,
                records: Bytes::new(),
            });
            continue;
        };
        // Consumers read from the leader (follower fetching, KIP-392, is not
        // offered): a stale client is sent to look the leader up again.
        // A consumer in an older epoch refreshes its metadata (and checks
        // its position for truncation); one in a newer epoch retries.
        let epoch = p.leader_epoch().0;
        let error = if !crate::replication::is_leader(&p) {
            Some(ResponseError::NotLeaderOrFollower.code())
        } else if item.current_leader_epoch >= 0 && item.current_leader_epoch < epoch {
            Some(ResponseError::FencedLeaderEpoch.code())
        } else if item.current_leader_epoch > epoch {
            Some(ResponseError::UnknownLeaderEpoch.code())
        } else {
            None
        };
        if let Some(error_code) = error {
            out.push(ItemResult {
                slot: item.slot,
                error_code,
                high_watermark: -1,
                log_start_offset: -1,
                records: Bytes::new(),
            });
            continue;
        }
        // Once the response budget is spent, report positions without data
        // and without reading: a read whose records would be dropped costs
        // the device as much as one that is sent.
        let res = if budget == 0 {
            p.positions(item.offset)
        } else {
            p.read(item.offset, item.max_bytes.min(budget)).await
        };
        match res {
            Ok(r) => {
                budget = budget.saturating_sub(r.records.len());
                crate::metrics::fetched(&item.tp.topic, r.records.len() as u64);
                out.push(ItemResult {
                    slot: item.slot,
                    error_code: 0,
                    high_watermark: r.high_watermark.0,
                    log_start_offset: r.log_start_offset.0,
                    records: r.records,
                });
            }
            Err(e) => out.push(ItemResult {
                slot: item.slot,
                error_code: e.code(),
                high_watermark: p.high_watermark().0,
                log_start_offset: p.log_start_offset().0,
                records: Bytes::new(),
            }),
        }
    }
    out
}

/// Waits on the owning shard until one of `items` has data at its offset, or
/// `wait` elapses.
async fn wait_local(shard: Rc<Shard>, items: Vec<(TopicPartition, Offset)>, wait: Duration) {
    // At the bound the fetch is answered at once (empty); the client simply
    // fetches again, which is the push-back.
    if shard.fetch_waiters.get() >= shard.limits.fetch_waiters_per_shard_max {
        return;
    }
    shard.fetch_waiters.set(shard.fetch_waiters.get() + 1);
    let _parked = scopeguard_waiter(&shard);
    let deadline = Instant::now() + wait;
    loop {
        let mut listeners = Vec::new();
        for (tp, offset) in &items {
            match shard.partition(tp) {
                Some(p) => {
                    listeners.push(p.data_arrived.listen());
                    if p.high_watermark() > *offset {
                        return;
                    }
                }
                None => return,
            }
        }
        let now = Instant::now();
        if now >= deadline || listeners.is_empty() || shard.shutting_down.get() {
            return;
        }
        let sleep = glommio::timer::sleep(deadline - now);
        futures::pin_mut!(sleep);
        let any = futures::future::select_all(listeners);
        if let futures::future::Either::Right(_) = futures::future::select(any, sleep).await {
            return;
        }
    }
}

pub async fn handle(
    shard: Rc<Shard>,
    req: FetchRequest,
    version: i16,
    clock: &crate::metrics::RequestClock,
) -> FetchResponse {
    let by_id = version >= 13;
    let started = Instant::now();
    let max_wait = Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let min_bytes = req.min_bytes.max(0) as usize;
    let response_max = if version >= 3 { req.max_bytes.max(0) as usize } else { usize::MAX };
    let mut responses: Vec<FetchableTopicResponse> = Vec::with_capacity(req.topics.len());
    let mut by_shard: BTreeMap<ShardId, Vec<Item>> = BTreeMap::new();
    for (ti, topic) in req.topics.into_iter().enumerate() {
        let name = if by_id {
            shard.metadata.borrow().topic_names.get(&topic.topic_id).cloned()
        } else {
            Some(topic.topic.0.to_string())
        };
        let mut parts = Vec::with_capacity(topic.partitions.len());
        for (pi, p) in topic.partitions.into_iter().enumerate() {
            let mut data = PartitionData::default()
                .with_partition_index(p.partition)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1)
                .with_preferred_read_replica((-1).into());
            match &name {
                None => data.error_code = ResponseError::UnknownTopicId.code(),
                Some(name) => {
                    let tp = TopicPartition::new(name.clone(), p.partition);
                    let item = Item {
                        slot: (ti, pi),
                        tp: tp.clone(),
                        offset: Offset(p.fetch_offset),
                        max_bytes: p.partition_max_bytes.max(0) as usize,
                        current_leader_epoch: p.current_leader_epoch,
                    };
                    by_shard.entry(shard.shard_for(&tp)).or_default().push(item);
                }
            }
            parts.push(data);
        }
        responses.push(
            FetchableTopicResponse::default()
                .with_topic(topic.topic)
                .with_topic_id(topic.topic_id)
                .with_partitions(parts),
        );
    }
    let budgets = shard_budgets(&by_shard, response_max);
    loop {
        let reads = by_shard.iter().map(|(target, items)| {
            let items = items.clone();
            let budget = budgets[target];
            shard.run_on(*target, move |s| read_local(s, items, budget))
        });
        let results: Vec<Result<Vec<ItemResult>, ShardGone>> =
            futures::future::join_all(reads).await;
        let mut total = 0usize;
        let mut any_error = false;
        let mut flat: Vec<ItemResult> = results.into_iter().flatten().flatten().collect();
        flat.sort_by_key(|r| r.slot);
        for r in flat {
            // Enforce the response-wide limit across shards (KIP-74: the first
            // non-empty partition is always returned whole).
            let records = if total > 0 && total + r.records.len() > response_max {
                Bytes::new()
            } else {
                r.records
            };
            total += records.len();
            if r.error_code != 0 {
                any_error = true;
                tracing::debug!(slot = ?r.slot, error = r.error_code, "fetch partition error");
            }
            let data = &mut responses[r.slot.0].partitions[r.slot.1];
            data.error_code = r.error_code;
            data.high_watermark = r.high_watermark;
            data.last_stable_offset = r.high_watermark;
            data.log_start_offset = r.log_start_offset;
            data.records = Some(records);
        }
        let waited = started.elapsed();
        if total >= min_bytes || any_error || waited >= max_wait || by_shard.is_empty() {
            break;
        }
        let remaining = max_wait - waited;
        let waits = by_shard.iter().map(|(target, items)| {
            let items: Vec<(TopicPartition, Offset)> =
                items.iter().map(|i| (i.tp.clone(), i.offset)).collect();
            Box::pin(shard.run_on(*target, move |s| wait_local(s, items, remaining)))
        });
        let _ = clock.parked(futures::future::select_all(waits)).await;
    }
    FetchResponse::default().with_session_id(0).with_responses(responses)
}

/// Splits the response's `max_bytes` between the shards reading in parallel,
/// in proportion to what their partitions may return, so that together they
/// read no more than the response can carry: each shard otherwise fills the
/// whole budget and the merge drops what does not fit (cold reads thrown
/// away). When the partitions' limits fit in the response, every shard may
/// use it all.
fn shard_budgets(
    by_shard: &BTreeMap<ShardId, Vec<Item>>,
    response_max: usize,
) -> BTreeMap<ShardId, usize> {
    let wanted: BTreeMap<ShardId, u128> = by_shard
        .iter()
        .map(|(s, items)| (*s, items.iter().map(|i| i.max_bytes as u128).sum()))
        .collect();
    let total: u128 = wanted.values().sum();
    wanted
        .into_iter()
        .map(|(s, w)| {
            let budget = if total <= response_max as u128 {
                response_max
            } else {
                // At least one byte, so a shard still returns its first
                // non-empty batch whole (KIP-74); the merge enforces the limit.
                ((response_max as u128 * w / total) as usize).max(1)
            };
            (s, budget)
        })
        .collect()
}

/// Decrements the shard's parked-fetch count when the wait ends, however it ends.
fn scopeguard_waiter(shard: &Rc<Shard>) -> impl Drop + use<> {
    struct Parked(Rc<Shard>);
    impl Drop for Parked {
        fn drop(&mut self) {
            self.0.fetch_waiters.set(self.0.fetch_waiters.get() - 1);
        }
    }
    Parked(shard.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(n: usize, max_bytes: usize) -> Vec<Item> {
        (0..n)
            .map(|i| Item {
                slot: (0, i),
                tp: TopicPartition::new("t".to_string(), i as i32),
                offset: Offset(0),
                max_bytes,
                current_leader_epoch: -1,
            })
            .collect()
    }

    #[test]
    fn shards_share_the_response_budget_only_when_it_binds() {
        let mut by_shard = BTreeMap::new();
        by_shard.insert(ShardId(0), items(30, 1 << 20));
        by_shard.insert(ShardId(1), items(10, 1 << 20));
        // 40 MiB of partition limits fit in 50 MiB: no split.
        let b = shard_budgets(&by_shard, 50 << 20);
        assert_eq!((b[&ShardId(0)], b[&ShardId(1)]), (50 << 20, 50 << 20));
        // 40 MiB do not fit in 8 MiB: 3/4 and 1/4, never more than the response.
        let b = shard_budgets(&by_shard, 8 << 20);
        assert_eq!((b[&ShardId(0)], b[&ShardId(1)]), (6 << 20, 2 << 20));
        // A share that rounds to nothing still lets the shard return a batch.
        by_shard.insert(ShardId(1), items(1, 1));
        let b = shard_budgets(&by_shard, 100);
        assert_eq!(b[&ShardId(1)], 1);
        assert!(b[&ShardId(0)] <= 100);
    }
}
