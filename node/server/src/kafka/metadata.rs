//! Metadata: brokers, topics and partition leadership from the shard's
//! metadata view; unknown topics are auto-created when both the node
//! (`auto.create.topics.enable`) and the request allow it.

use crate::shard::{Shard, TopicView};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use std::rc::Rc;

/// "Authorized operations not requested" in Kafka's encoding.
const OPS_NOT_REQUESTED: i32 = i32::MIN;

pub fn topic_response(t: &TopicView) -> MetadataResponseTopic {
    let partitions = t
        .partitions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            // No leader (every ISR member is down): clients retry later.
            let code = if p.leader.0 < 0 { ResponseError::LeaderNotAvailable.code() } else { 0 };
            MetadataResponsePartition::default()
                .with_error_code(code)
                .with_partition_index(i as i32)
                .with_leader_id(BrokerId(p.leader.0))
                .with_leader_epoch(p.leader_epoch.0)
                .with_replica_nodes(p.replicas.iter().map(|n| BrokerId(n.0)).collect())
                .with_isr_nodes(p.isr.iter().map(|n| BrokerId(n.0)).collect())
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(t.name.clone()))))
        .with_topic_id(t.id)
        .with_is_internal(t.internal)
        .with_partitions(partitions)
        .with_topic_authorized_operations(OPS_NOT_REQUESTED)
}

fn error_topic(name: Option<TopicName>, id: uuid::Uuid, code: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(code)
        .with_name(name)
        .with_topic_id(id)
        .with_topic_authorized_operations(OPS_NOT_REQUESTED)
}

pub async fn handle(shard: Rc<Shard>, req: MetadataRequest, version: i16) -> MetadataResponse {
    // v0: an empty list means all topics; v1+: null means all topics.
    let requested: Option<Vec<(Option<String>, uuid::Uuid)>> = match req.topics {
        None => None,
        Some(t) if t.is_empty() && version == 0 => None,
        Some(t) => {
            Some(t.into_iter().map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id)).collect())
        }
    };
    let allow_create =
        shard.config.auto_create_topics_enable && (version < 4 || req.allow_auto_topic_creation);
    let mut topics = Vec::new();
    match requested {
        None => {
            let md = shard.metadata.borrow();
            let mut names: Vec<&String> = md.topics.keys().collect();
            names.sort();
            topics.extend(names.into_iter().map(|n| topic_response(&md.topics[n])));
        }
        Some(list) => {
            let unknown: Vec<String> = {
                let md = shard.metadata.borrow();
                list.iter()
                    .filter_map(|(name, _)| name.clone())
                    .filter(|n| !md.topics.contains_key(n))
                    .collect()
            };
            let mut create_errors = std::collections::HashMap::new();
            if allow_create && !unknown.is_empty() {
                create_errors = super::admin::auto_create(&shard, &unknown).await;
            }
            let md = shard.metadata.borrow();
            for (name, id) in list {
                let found = match &name {
                    Some(n) => md.topics.get(n),
                    None => md.topic_names.get(&id).and_then(|n| md.topics.get(n)),
                };
                let topic = match (found, name) {
                    (Some(t), _) => topic_response(t),
                    (None, Some(n)) => {
                        let code = create_errors.get(&n).copied().unwrap_or(if allow_create {
                            ResponseError::LeaderNotAvailable.code()
                        } else {
                            ResponseError::UnknownTopicOrPartition.code()
                        });
                        error_topic(
                            Some(TopicName(StrBytes::from_string(n))),
                            uuid::Uuid::nil(),
                            code,
                        )
                    }
                    (None, None) => error_topic(None, id, ResponseError::UnknownTopicId.code()),
                };
                topics.push(topic);
            }
        }
    }
    let md = shard.metadata.borrow();
    let brokers = md
        .nodes
        .iter()
        .map(|n| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(n.id.0))
                .with_host(StrBytes::from_string(n.host.clone()))
                .with_port(n.port)
                .with_rack(n.rack.clone().map(StrBytes::from_string))
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(StrBytes::from_string(md.cluster_id.clone())))
        .with_controller_id(BrokerId(md.controller_id))
        .with_topics(topics)
        .with_cluster_authorized_operations(OPS_NOT_REQUESTED)
}
