//! Admin APIs: topics (create, delete, partitions), configs of topics and
//! nodes (describe, alter, incremental alter), DeleteRecords,
//! DescribeCluster, ElectLeaders and partition reassignments
//! (AlterPartitionReassignments, ListPartitionReassignments).
//!
//! A node's configs (BROKER resources, named by node id, or `""` for the
//! cluster default) are its static settings, which only it knows and
//! describes, and the dynamic configs kept in the controller's metadata (the
//! replication throttle rates), which any node alters for any node.
//!
//! Topic and config changes are commands to the controller, which validates
//! them and records them in its metadata log. A successful change is
//! answered only once every shard of this node has applied it, so a client
//! that creates a topic can produce to it immediately.

use crate::metadata_sync::with_image;
use crate::shard::Shard;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use weir_controller::config::{ConfigEntry, ConfigOp, ConfigOpType};
use weir_controller::{Command, CommandResult, ControllerError, PartitionAssignment, TopicRef};
use weir_proto::{NodeId, Offset, PartitionId, TopicPartition};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// How long a change may take to reach every shard before we answer anyway.
const PROPAGATION_WAIT_MS: u64 = 10_000;

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

/// Waits until every shard sees metadata for which `pred` holds.
async fn await_shards(shard: &Rc<Shard>, pred: impl Fn(&Shard) -> bool + Send + Clone + 'static) {
    shard
        .run_on_all(move |s| {
            let pred = pred.clone();
            async move { s.wait_metadata(PROPAGATION_WAIT_MS, move |s| pred(s)).await }
        })
        .await;
}

/// Waits until every shard has opened the partitions of `topic` it owns.
async fn await_topic_ready(shard: &Rc<Shard>, topic: String, partitions: usize) {
    await_shards(shard, move |s| {
        let md = s.metadata.borrow();
        let Some(t) = md.topics.get(&topic) else { return false };
        // Every partition this shard hosts is open (others are not ours to wait for).
        t.partitions.len() >= partitions
            && t.partitions.iter().enumerate().all(|(p, view)| {
                let tp = TopicPartition::new(topic.clone(), p as i32);
                s.shard_for(&tp) != s.id
                    || !view.replicas.contains(&s.node_id)
                    || s.partitions.borrow().contains_key(&tp)
            })
    })
    .await;
}

/// Creates unknown topics asked for in Metadata (auto-create). Returns the
/// error codes of topics that could not be created.
pub async fn auto_create(shard: &Rc<Shard>, names: &[String]) -> HashMap<String, i16> {
    let mut errors = HashMap::new();
    for name in names {
        let cmd = Command::create_topic(name.clone(), shard.config.num_partitions, -1);
        match shard.submit(cmd).await {
            Ok(CommandResult::TopicCreated { topic, .. }) => {
                await_topic_ready(shard, topic.name.clone(), topic.partitions.len()).await;
            }
            Ok(_) => {}
            Err(ControllerError::TopicAlreadyExists(_)) => {
                await_topic_ready(shard, name.clone(), 1).await;
            }
            Err(e) => {
                errors.insert(name.clone(), e.kafka_code());
            }
        }
    }
    errors
}

/// Makes sure `__consumer_offsets` exists (created on first use, as Kafka does).
pub async fn ensure_internal_topic(shard: &Rc<Shard>, name: &str) -> Result<(), i16> {
    if shard.metadata.borrow().topics.contains_key(name) {
        return Ok(());
    }
    let cmd = Command::create_consumer_offsets(shard.config.default_replication_factor);
    match shard.submit(cmd).await {
        Ok(CommandResult::TopicCreated { topic, .. }) => {
            await_topic_ready(shard, topic.name, topic.partitions.len()).await;
            Ok(())
        }
        Ok(_) | Err(ControllerError::TopicAlreadyExists(_)) => {
            await_topic_ready(shard, name.to_string(), 1).await;
            Ok(())
        }
        // E.g. fewer live nodes than its replication factor: as Kafka, the
        // group coordinator is "not available" yet, which clients retry.
        Err(e) => {
            tracing::warn!(topic = name, "cannot create the internal topic yet: {e}");
            Err(ResponseError::CoordinatorNotAvailable.code())
        }
    }
}

pub async fn create_topics(shard: Rc<Shard>, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    let mut seen = std::collections::HashSet::new();
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut result = CreatableTopicResult::default()
            .with_name(t.name.clone())
            .with_num_partitions(-1)
            .with_replication_factor(-1);
        if !seen.insert(name.clone()) {
            results.push(
                result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(s(format!("Topic {name} is listed more than once.")))),
            );
            continue;
        }
        let assignments = if t.assignments.is_empty() {
            None
        } else {
            Some(
                t.assignments
                    .iter()
                    .map(|a| PartitionAssignment {
                        partition: PartitionId(a.partition_index),
                        replicas: a.broker_ids.iter().map(|b| NodeId(b.0)).collect(),
                    })
                    .collect(),
            )
        };
        let mut configs = BTreeMap::new();
        let mut bad_config = None;
        for c in &t.configs {
            match &c.value {
                Some(v) => {
                    configs.insert(c.name.to_string(), v.to_string());
                }
                None => {
                    bad_config =
                        Some(format!("Null value not supported for topic config {}", c.name))
                }
            }
        }
        if let Some(msg) = bad_config {
            results.push(
                result
                    .with_error_code(ResponseError::InvalidConfig.code())
                    .with_error_message(Some(s(msg))),
            );
            continue;
        }
        let cmd = Command::CreateTopic {
            name: name.clone(),
            partitions: t.num_partitions,
            replication_factor: t.replication_factor,
            assignments,
            configs,
            internal: false,
            validate_only: req.validate_only,
        };
        match shard.submit(cmd).await {
            Ok(CommandResult::TopicCreated { topic, configs }) => {
                if !req.validate_only {
                    await_topic_ready(&shard, name.clone(), topic.partitions.len()).await;
                }
                result = result
                    .with_topic_id(topic.id)
                    .with_num_partitions(topic.partitions.len() as i32)
                    .with_replication_factor(
                        topic.partitions.first().map(|p| p.replicas.len() as i16).unwrap_or(-1),
                    )
                    .with_configs(Some(
                        configs
                            .into_iter()
                            .map(|c| {
                                CreatableTopicConfigs::default()
                                    .with_name(s(c.name))
                                    .with_value(c.value.map(s))
                                    .with_read_only(c.read_only)
                                    .with_config_source(c.source.kafka_code())
                                    .with_is_sensitive(c.sensitive)
                            })
                            .collect(),
                    ));
            }
            Ok(other) => tracing::warn!("unexpected controller answer {other:?}"),
            Err(e) => {
                result =
                    result.with_error_code(e.kafka_code()).with_error_message(Some(s(e.message())));
            }
        }
        results.push(result);
    }
    CreateTopicsResponse::default().with_topics(results)
}

pub async fn delete_topics(
    shard: Rc<Shard>,
    req: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let targets: Vec<(Option<String>, uuid::Uuid)> = if version >= 6 {
        req.topics.into_iter().map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id)).collect()
    } else {
        req.topic_names.into_iter().map(|n| (Some(n.0.to_string()), uuid::Uuid::nil())).collect()
    };
    let mut responses = Vec::new();
    for (name, id) in targets {
        let topic = match &name {
            Some(n) => TopicRef::Name(n.clone()),
            None => TopicRef::Id(id),
        };
        let mut r = DeletableTopicResult::default()
            .with_name(name.clone().map(|n| TopicName(s(n))))
            .with_topic_id(id);
        match shard.submit(Command::DeleteTopic { topic }).await {
            Ok(CommandResult::TopicDeleted { name, id }) => {
                let gone = name.clone();
                await_shards(&shard, move |s| {
                    !s.metadata.borrow().topics.contains_key(&gone)
                        && !s.partitions.borrow().keys().any(|tp| tp.topic == gone)
                })
                .await;
                r = r.with_name(Some(TopicName(s(name)))).with_topic_id(id);
            }
            Ok(other) => tracing::warn!("unexpected controller answer {other:?}"),
            Err(e) => {
                r = r.with_error_code(e.kafka_code()).with_error_message(Some(s(e.message())))
            }
        }
        responses.push(r);
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

pub async fn create_partitions(
    shard: Rc<Shard>,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut results = Vec::new();
    for t in req.topics {
        let name = t.name.0.to_string();
        let cmd = Command::CreatePartitions {
            topic: name.clone(),
            new_total: t.count,
            // An empty list (not only null) means "let the controller place them".
            assignments: t.assignments.filter(|a| !a.is_empty()).map(|a| {
                a.into_iter()
                    .map(|x| x.broker_ids.into_iter().map(|b| NodeId(b.0)).collect())
                    .collect()
            }),
            validate_only: req.validate_only,
        };
        let mut r = CreatePartitionsTopicResult::default().with_name(t.name);
        match shard.submit(cmd).await {
            Ok(_) => {
                if !req.validate_only {
                    await_topic_ready(&shard, name, t.count.max(0) as usize).await;
                }
            }
            Err(e) => {
                r = r.with_error_code(e.kafka_code()).with_error_message(Some(s(e.message())))
            }
        }
        results.push(r);
    }
    CreatePartitionsResponse::default().with_results(results)
}

fn broker_configs(shard: &Shard) -> Vec<(String, String)> {
    let c = &shard.config;
    vec![
        ("node.id".into(), c.node_id.to_string()),
        ("broker.id".into(), c.node_id.to_string()),
        (
            "log.dirs".into(),
            c.data_dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(","),
        ),
        ("num.partitions".into(), c.num_partitions.to_string()),
        ("default.replication.factor".into(), c.default_replication_factor.to_string()),
        ("auto.create.topics.enable".into(), c.auto_create_topics_enable.to_string()),
        ("socket.request.max.bytes".into(), c.socket_request_max_bytes.to_string()),
        ("offsets.topic.num.partitions".into(), "50".into()),
        ("group.initial.rebalance.delay.ms".into(), c.group_initial_rebalance_delay_ms.to_string()),
    ]
}

pub async fn describe_configs(
    shard: Rc<Shard>,
    req: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let mut results = Vec::new();
    for res in req.resources {
        let name = res.resource_name.to_string();
        // Null or empty: every key.
        let keys: Option<Vec<String>> = res
            .configuration_keys
            .as_ref()
            .filter(|k| !k.is_empty())
            .map(|k| k.iter().map(|k| k.to_string()).collect());
        let wanted = |k: &str| keys.as_ref().is_none_or(|keys| keys.iter().any(|x| x == k));
        let mut result = DescribeConfigsResult::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        match res.resource_type {
            RESOURCE_TOPIC => match with_image(|i| i.describe_topic_configs(&name)) {
                None => {
                    result = result
                        .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                        .with_error_message(Some(s(format!("Topic {name} does not exist."))));
                }
                Some(entries) => {
                    result.configs = entries
                        .into_iter()
                        .filter(|e| wanted(&e.name))
                        .map(|e| described(e, req.include_synonyms, req.include_documentation))
                        .collect();
                }
            },
            // The cluster default: only the dynamic configs set for it, as
            // Kafka answers for the empty broker name.
            RESOURCE_BROKER if name.is_empty() => {
                result.configs = with_image(|i| i.describe_node_configs(None))
                    .into_iter()
                    .filter(|e| wanted(&e.name))
                    .map(|e| described(e, req.include_synonyms, req.include_documentation))
                    .collect();
            }
            RESOURCE_BROKER if name == shard.node_id.0.to_string() => {
                let dynamic = with_image(|i| i.describe_node_configs(Some(shard.node_id)));
                let mut configs: Vec<DescribeConfigsResourceResult> = broker_configs(&shard)
                    .into_iter()
                    .filter(|(k, _)| wanted(k))
                    .map(|(k, v)| {
                        DescribeConfigsResourceResult::default()
                            .with_name(s(k))
                            .with_value(Some(s(v)))
                            .with_read_only(true)
                            .with_config_source(4)
                    })
                    .collect();
                configs.extend(
                    dynamic
                        .into_iter()
                        .filter(|e| wanted(&e.name))
                        .map(|e| described(e, req.include_synonyms, req.include_documentation)),
                );
                result.configs = configs;
            }
            _ => {
                result = result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(s(format!(
                        "resource type {} / name {name:?} is not supported",
                        res.resource_type
                    ))));
            }
        }
        results.push(result);
    }
    DescribeConfigsResponse::default().with_results(results)
}

/// One DescribeConfigs row from the controller's description of a config.
fn described(
    e: ConfigEntry,
    include_synonyms: bool,
    include_documentation: bool,
) -> DescribeConfigsResourceResult {
    let synonyms = if include_synonyms {
        e.synonyms
            .iter()
            .map(|sy| {
                DescribeConfigsSynonym::default()
                    .with_name(s(sy.name.clone()))
                    .with_value(Some(s(sy.value.clone())))
                    .with_source(sy.source.kafka_code())
            })
            .collect()
    } else {
        Vec::new()
    };
    DescribeConfigsResourceResult::default()
        .with_name(s(e.name))
        .with_value(e.value.map(s))
        .with_read_only(e.read_only)
        .with_config_source(e.source.kafka_code())
        .with_is_sensitive(e.sensitive)
        .with_synonyms(synonyms)
        .with_config_type(e.config_type.kafka_code())
        .with_documentation(include_documentation.then(|| s(e.doc)))
}

async fn alter_topic_config(
    shard: &Rc<Shard>,
    topic: String,
    ops: Vec<ConfigOp>,
    replace_all: bool,
    validate_only: bool,
) -> Result<(), ControllerError> {
    let cmd = Command::AlterConfigs { topic: topic.clone(), ops, replace_all, validate_only };
    let result = shard.submit(cmd).await?;
    if let CommandResult::ConfigsAltered { overrides, .. } = result
        && !validate_only
    {
        {
            await_shards(shard, move |s| {
                s.metadata.borrow().topics.get(&topic).is_some_and(|t| t.overrides == overrides)
            })
            .await;
        }
    }
    Ok(())
}

/// The node a BROKER resource names: `None` for `""` (the cluster default).
/// Kafka's checks and messages.
fn broker_resource(name: &str) -> Result<Option<NodeId>, ControllerError> {
    if name.is_empty() {
        return Ok(None);
    }
    match name.parse::<i32>() {
        Ok(id) if id < 0 => {
            Err(ControllerError::InvalidRequest("Invalid negative broker ID.".into()))
        }
        Ok(id) => Ok(Some(NodeId(id))),
        Err(_) => Err(ControllerError::InvalidRequest(
            "Unable to parse broker name as a base 10 number.".into(),
        )),
    }
}

/// Changes the dynamic configs of the node a BROKER resource names (or the
/// cluster default); answered once every shard of this node sees them.
async fn alter_node_config(
    shard: &Rc<Shard>,
    name: &str,
    ops: Vec<ConfigOp>,
    replace_all: bool,
    validate_only: bool,
) -> Result<(), ControllerError> {
    let node = broker_resource(name)?;
    let cmd = Command::AlterNodeConfigs { node, ops, replace_all, validate_only };
    if let CommandResult::NodeConfigsAltered { overrides, .. } = shard.submit(cmd).await?
        && !validate_only
    {
        let key = weir_controller::config::node_config_key(node);
        await_shards(shard, move |_| {
            with_image(|i| i.node_configs.get(&key).cloned().unwrap_or_default() == overrides)
        })
        .await;
    }
    Ok(())
}

fn unsupported_resource(resource_type: i8) -> (i16, String) {
    (
        ResponseError::InvalidRequest.code(),
        format!(
            "altering configs of resource type {resource_type} is not supported; only topics (2) and brokers (4)"
        ),
    )
}

pub async fn alter_configs(shard: Rc<Shard>, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut responses = Vec::new();
    for res in req.resources {
        let mut r = alter_configs_response::AlterConfigsResourceResponse::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        let ops = res
            .configs
            .iter()
            .map(|c| ConfigOp {
                key: c.name.to_string(),
                op: ConfigOpType::Set,
                value: c.value.as_ref().map(|v| v.to_string()),
            })
            .collect();
        let name = res.resource_name.to_string();
        let outcome = match res.resource_type {
            RESOURCE_TOPIC => alter_topic_config(&shard, name, ops, true, req.validate_only)
                .await
                .map_err(|e| (e.kafka_code(), e.message())),
            RESOURCE_BROKER => alter_node_config(&shard, &name, ops, true, req.validate_only)
                .await
                .map_err(|e| (e.kafka_code(), e.message())),
            other => Err(unsupported_resource(other)),
        };
        if let Err((code, msg)) = outcome {
            r = r.with_error_code(code).with_error_message(Some(s(msg)));
        }
        responses.push(r);
    }
    AlterConfigsResponse::default().with_responses(responses)
}

pub async fn incremental_alter_configs(
    shard: Rc<Shard>,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::new();
    for res in req.resources {
        let mut r = incremental_alter_configs_response::AlterConfigsResourceResponse::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        let outcome = if res.resource_type != RESOURCE_TOPIC && res.resource_type != RESOURCE_BROKER
        {
            Err(unsupported_resource(res.resource_type))
        } else {
            let mut ops = Vec::new();
            let mut bad = None;
            for c in &res.configs {
                match ConfigOpType::from_kafka(c.config_operation) {
                    Some(op) => ops.push(ConfigOp {
                        key: c.name.to_string(),
                        op,
                        value: c.value.as_ref().map(|v| v.to_string()),
                    }),
                    None => bad = Some(format!("unknown config operation {}", c.config_operation)),
                }
            }
            let name = res.resource_name.to_string();
            match bad {
                Some(msg) => Err((ResponseError::InvalidRequest.code(), msg)),
                None if res.resource_type == RESOURCE_BROKER => {
                    alter_node_config(&shard, &name, ops, false, req.validate_only)
                        .await
                        .map_err(|e| (e.kafka_code(), e.message()))
                }
                None => alter_topic_config(&shard, name, ops, false, req.validate_only)
                    .await
                    .map_err(|e| (e.kafka_code(), e.message())),
            }
        };
        if let Err((code, msg)) = outcome {
            r = r.with_error_code(code).with_error_message(Some(s(msg)));
        }
        responses.push(r);
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

pub async fn delete_records(shard: Rc<Shard>, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut topics = Vec::new();
    for t in req.topics {
        let mut parts = Vec::new();
        for p in t.partitions {
            let tp = TopicPartition::new(t.name.0.to_string(), p.partition_index);
            let target = shard.shard_for(&tp);
            let offset = Offset(p.offset);
            let (code, low) = shard
                .run_on(target, move |s| async move {
                    match s.partition(&tp) {
                        None => (ResponseError::UnknownTopicOrPartition.code(), -1),
                        Some(part) if !crate::replication::is_leader(&part) => {
                            (ResponseError::NotLeaderOrFollower.code(), -1)
                        }
                        Some(part) => match part.delete_records(offset).await {
                            Ok(low) => (0, low.0),
                            Err(e) => (e.code(), -1),
                        },
                    }
                })
                .await
                .unwrap_or((ResponseError::NotLeaderOrFollower.code(), -1));
            parts.push(
                DeleteRecordsPartitionResult::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(code)
                    .with_low_watermark(low),
            );
        }
        topics.push(DeleteRecordsTopicResult::default().with_name(t.name).with_partitions(parts));
    }
    DeleteRecordsResponse::default().with_topics(topics)
}

pub fn describe_cluster(shard: Rc<Shard>, _req: DescribeClusterRequest) -> DescribeClusterResponse {
    let md = shard.metadata.borrow();
    DescribeClusterResponse::default()
        .with_cluster_id(s(md.cluster_id.clone()))
        .with_controller_id(BrokerId(md.controller_id))
        .with_cluster_authorized_operations(i32::MIN)
        .with_brokers(
            md.nodes
                .iter()
                .map(|n| {
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(n.id.0))
                        .with_host(s(n.host.clone()))
                        .with_port(n.port)
                        .with_rack(n.rack.clone().map(s))
                })
                .collect(),
        )
}

/// ElectLeaders (KIP-460): preferred or unclean elections, decided by the
/// controller; the response lists a result per partition.
pub async fn elect_leaders(
    shard: Rc<Shard>,
    req: ElectLeadersRequest,
    version: i16,
) -> ElectLeadersResponse {
    use kafka_protocol::messages::elect_leaders_response::{
        PartitionResult, ReplicaElectionResult,
    };
    // v0 has no election type: preferred.
    let election = match (version, req.election_type) {
        (0, _) | (_, 0) => Some(weir_controller::ElectionType::Preferred),
        (_, 1) => Some(weir_controller::ElectionType::Unclean),
        _ => None,
    };
    let Some(election) = election else {
        return ElectLeadersResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code());
    };
    let partitions = req.topic_partitions.map(|topics| {
        topics
            .into_iter()
            .flat_map(|t| {
                let name = t.topic.0.to_string();
                t.partitions.into_iter().map(move |p| (name.clone(), PartitionId(p)))
            })
            .collect::<Vec<_>>()
    });
    let results = match shard.submit(Command::ElectLeaders { partitions, election }).await {
        Ok(CommandResult::LeadersElected { results }) => results,
        Ok(other) => {
            tracing::warn!("unexpected ElectLeaders answer {other:?}");
            return ElectLeadersResponse::default()
                .with_error_code(ResponseError::UnknownServerError.code());
        }
        Err(e) => return ElectLeadersResponse::default().with_error_code(e.kafka_code()),
    };
    let mut by_topic: BTreeMap<String, Vec<PartitionResult>> = BTreeMap::new();
    for r in results {
        by_topic.entry(r.topic).or_default().push(
            PartitionResult::default()
                .with_partition_id(r.partition.0)
                .with_error_code(r.error_code)
                .with_error_message(r.message.map(s)),
        );
    }
    let replica_election_results = by_topic
        .into_iter()
        .map(|(topic, partition_result)| {
            ReplicaElectionResult::default()
                .with_topic(StrBytes::from_string(topic).into())
                .with_partition_result(partition_result)
        })
        .collect();
    ElectLeadersResponse::default().with_replica_election_results(replica_election_results)
}

/// Waits until every shard has applied the metadata the controller had
/// published when this is called: a request answered after it (Metadata on
/// this node, say) sees at least that state.
async fn await_controller_version(shard: &Rc<Shard>) {
    let version = shard.controller.image().version;
    await_shards(shard, move |_| with_image(|image| image.version >= version)).await;
}

/// AlterPartitionReassignments (KIP-455): starts, changes or cancels (null
/// replicas) moves of partition replicas; the controller decides each
/// partition on its own, and the answer lists a result per partition in
/// request order. A partition of an unknown topic gets
/// UNKNOWN_TOPIC_OR_PARTITION. v1's `allow_replication_factor_change =
/// false` (KIP-860) is checked here, against this node's metadata.
pub async fn alter_partition_reassignments(
    shard: Rc<Shard>,
    req: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    use alter_partition_reassignments_response::{
        ReassignablePartitionResponse, ReassignableTopicResponse,
    };
    let mut responses: Vec<ReassignableTopicResponse> = Vec::with_capacity(req.topics.len());
    // The entries sent to the controller, and where their answers go.
    let mut entries = Vec::new();
    let mut slots: Vec<(usize, usize)> = Vec::new();
    for t in &req.topics {
        let name = t.name.0.to_string();
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let mut r =
                ReassignablePartitionResponse::default().with_partition_index(p.partition_index);
            let target: Option<Vec<NodeId>> =
                p.replicas.as_ref().map(|r| r.iter().map(|b| NodeId(b.0)).collect());
            let current_rf = with_image(|image| {
                image
                    .partition(&name, PartitionId(p.partition_index))
                    .map(|m| m.target_replicas().len())
            });
            match (&target, current_rf) {
                (Some(target), Some(rf))
                    if !req.allow_replication_factor_change && target.len() != rf =>
                {
                    r = r
                        .with_error_code(ResponseError::InvalidReplicationFactor.code())
                        .with_error_message(Some(s(format!(
                            "The replication factor is changed from {rf} to {}",
                            target.len()
                        ))));
                }
                _ => {
                    slots.push((responses.len(), partitions.len()));
                    entries.push((name.clone(), PartitionId(p.partition_index), target));
                }
            }
            partitions.push(r);
        }
        responses.push(
            ReassignableTopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(partitions),
        );
    }
    let mut resp = AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(req.allow_replication_factor_change);
    if !entries.is_empty() {
        let answer =
            shard.submit(Command::AlterPartitionReassignments { partitions: entries }).await;
        let per_partition: Vec<(i16, Option<String>)> = match answer {
            Ok(CommandResult::PartitionReassignmentsAltered { results })
                if results.len() == slots.len() =>
            {
                await_controller_version(&shard).await;
                results.into_iter().map(|r| (r.error_code, r.message)).collect()
            }
            other => {
                let (code, message) = match other {
                    Err(e) => (e.kafka_code(), e.message()),
                    Ok(other) => {
                        tracing::warn!("unexpected AlterPartitionReassignments answer {other:?}");
                        let e = ResponseError::UnknownServerError;
                        (e.code(), e.to_string())
                    }
                };
                resp = resp.with_error_code(code).with_error_message(Some(s(message.clone())));
                vec![(code, Some(message)); slots.len()]
            }
        };
        for ((t, p), (code, message)) in slots.into_iter().zip(per_partition) {
            let slot = &mut responses[t].partitions[p];
            slot.error_code = code;
            slot.error_message = message.map(s);
        }
    }
    resp.with_responses(responses)
}

/// ListPartitionReassignments: the moves in progress (all, or among the
/// partitions asked for; unknown ones are left out, as in Kafka), as the
/// controller knows them. Answered once this node's shards have caught up
/// with the controller, so a Metadata request that follows (`weir reassign
/// --verify`) shows a completed move's replicas.
pub async fn list_partition_reassignments(
    shard: Rc<Shard>,
    req: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    use list_partition_reassignments_response::{
        OngoingPartitionReassignment, OngoingTopicReassignment,
    };
    let partitions = req.topics.map(|topics| {
        topics
            .into_iter()
            .flat_map(|t| {
                let name = t.name.0.to_string();
                t.partition_indexes.into_iter().map(move |p| (name.clone(), PartitionId(p)))
            })
            .collect::<Vec<_>>()
    });
    let reassignments = match shard.submit(Command::ListPartitionReassignments { partitions }).await
    {
        Ok(CommandResult::PartitionReassignments { reassignments }) => reassignments,
        Ok(other) => {
            tracing::warn!("unexpected ListPartitionReassignments answer {other:?}");
            return ListPartitionReassignmentsResponse::default()
                .with_error_code(ResponseError::UnknownServerError.code());
        }
        Err(e) => {
            return ListPartitionReassignmentsResponse::default()
                .with_error_code(e.kafka_code())
                .with_error_message(Some(s(e.message())));
        }
    };
    await_controller_version(&shard).await;
    let brokers = |v: Vec<NodeId>| v.into_iter().map(|n| BrokerId(n.0)).collect::<Vec<_>>();
    let mut by_topic: BTreeMap<String, Vec<OngoingPartitionReassignment>> = BTreeMap::new();
    for r in reassignments {
        by_topic.entry(r.topic).or_default().push(
            OngoingPartitionReassignment::default()
                .with_partition_index(r.partition.0)
                .with_replicas(brokers(r.replicas))
                .with_adding_replicas(brokers(r.adding))
                .with_removing_replicas(brokers(r.removing)),
        );
    }
    ListPartitionReassignmentsResponse::default().with_topics(
        by_topic
            .into_iter()
            .map(|(topic, partitions)| {
                OngoingTopicReassignment::default()
                    .with_name(TopicName(s(topic)))
                    .with_partitions(partitions)
            })
            .collect(),
    )
}
