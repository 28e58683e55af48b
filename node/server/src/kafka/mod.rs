//! The Kafka protocol surface: one file per API family, as in Redpanda's
//! `kafka/server/handlers/`. `dispatch` routes a decoded request to its
//! handler; handlers route each partition's work to the owning shard.

pub mod admin;
pub mod api_versions;
pub mod conn;
pub mod fetch;
pub mod frame_pool;
pub mod groups;
pub mod list_offsets;
pub mod metadata;
pub mod produce;
pub mod producer_ids;

use crate::metrics::RequestClock;
use crate::shard::Shard;
use conn::{Reply, Request};
use kafka_protocol::messages::{RequestKind, ResponseKind};
use std::rc::Rc;

/// Handles one request and encodes its response, timing its phases on
/// `clock` (the connection's writer records it once the response is sent).
pub async fn dispatch(shard: Rc<Shard>, req: Request, clock: Rc<RequestClock>) -> Reply {
    clock.start();
    let reply = handle(shard, req, &clock).await;
    clock.finish();
    reply
}

async fn handle(shard: Rc<Shard>, req: Request, clock: &RequestClock) -> Reply {
    let version = req.version;
    let body = match req.body {
        RequestKind::ApiVersions(r) => ResponseKind::ApiVersions(api_versions::handle(&r)),
        RequestKind::Produce(r) => match produce::handle(shard, r, version, clock).await {
            Some(resp) => ResponseKind::Produce(resp),
            None => return Reply::Nothing,
        },
        RequestKind::Fetch(r) => ResponseKind::Fetch(fetch::handle(shard, r, version, clock).await),
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(list_offsets::handle(shard, r, version).await)
        }
        RequestKind::Metadata(r) => {
            ResponseKind::Metadata(metadata::handle(shard, r, version).await)
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(producer_ids::handle(shard, r).await)
        }
        RequestKind::OffsetForLeaderEpoch(r) => ResponseKind::OffsetForLeaderEpoch(
            producer_ids::offset_for_leader_epoch(shard, r).await,
        ),
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(admin::create_topics(shard, r).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(admin::delete_topics(shard, r, version).await)
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(admin::create_partitions(shard, r).await)
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(admin::describe_configs(shard, r).await)
        }
        RequestKind::AlterConfigs(r) => {
            ResponseKind::AlterConfigs(admin::alter_configs(shard, r).await)
        }
        RequestKind::IncrementalAlterConfigs(r) => {
            ResponseKind::IncrementalAlterConfigs(admin::incremental_alter_configs(shard, r).await)
        }
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(admin::delete_records(shard, r).await)
        }
        RequestKind::ElectLeaders(r) => {
            ResponseKind::ElectLeaders(admin::elect_leaders(shard, r, version).await)
        }
        RequestKind::AlterPartitionReassignments(r) => ResponseKind::AlterPartitionReassignments(
            admin::alter_partition_reassignments(shard, r).await,
        ),
        RequestKind::ListPartitionReassignments(r) => ResponseKind::ListPartitionReassignments(
            admin::list_partition_reassignments(shard, r).await,
        ),
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(admin::describe_cluster(shard, r))
        }
        other => return groups::dispatch(shard, req.header, req.api_key, version, other).await,
    };
    conn::encode_response(&req.header, req.api_key, &body)
}
