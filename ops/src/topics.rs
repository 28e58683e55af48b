//! `weir topics`: create, list, describe, alter, delete (like `kafka-topics`).

use crate::client::{Client, check, s, topic_name};
use crate::output::{Format, print_json};
use crate::{Ctx, parse_kv};
use anyhow::{Result, bail};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::*;
use serde_json::json;

/// DescribeConfigs source code of a per-topic override.
pub const SOURCE_DYNAMIC_TOPIC: i8 = 1;
pub const RESOURCE_TOPIC: i8 = 2;

#[derive(clap::Subcommand)]
pub enum TopicsCommand {
    /// List topic names.
    List {
        /// Leave out internal topics such as __consumer_offsets.
        #[arg(long)]
        exclude_internal: bool,
    },
    /// Create a topic.
    Create {
        #[arg(long)]
        topic: String,
        /// Partitions (default: the broker's num.partitions).
        #[arg(long)]
        partitions: Option<i32>,
        /// Replication factor (default: the broker's default.replication.factor).
        #[arg(long)]
        replication_factor: Option<i16>,
        /// A topic config override, `key=value`; repeatable.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
        /// Succeed quietly when the topic exists already.
        #[arg(long)]
        if_not_exists: bool,
    },
    /// Describe topics: partitions with Leader, Replicas, Isr and config overrides.
    Describe {
        /// Topic to describe (default: all non-internal topics).
        #[arg(long)]
        topic: Option<String>,
    },
    /// Add partitions or change config overrides.
    Alter {
        #[arg(long)]
        topic: String,
        /// New (larger) partition count.
        #[arg(long)]
        partitions: Option<i32>,
        /// Set a config override, `key=value`; repeatable.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
        /// Remove a config override (back to the default); repeatable.
        #[arg(long = "delete-config", value_name = "KEY")]
        delete_configs: Vec<String>,
    },
    /// Delete a topic and its data.
    Delete {
        #[arg(long)]
        topic: String,
    },
}

pub fn run(ctx: &Ctx, cmd: TopicsCommand) -> Result<()> {
    let mut client = Client::connect(&ctx.bootstrap)?;
    match cmd {
        TopicsCommand::List { exclude_internal } => list(ctx, &mut client, exclude_internal),
        TopicsCommand::Create { topic, partitions, replication_factor, configs, if_not_exists } => {
            create(
                ctx,
                &mut client,
                &topic,
                partitions,
                replication_factor,
                &configs,
                if_not_exists,
            )
        }
        TopicsCommand::Describe { topic } => describe(ctx, &mut client, topic),
        TopicsCommand::Alter { topic, partitions, configs, delete_configs } => {
            alter(ctx, &mut client, &topic, partitions, &configs, &delete_configs)
        }
        TopicsCommand::Delete { topic } => delete(ctx, &mut client, &topic),
    }
}

fn list(ctx: &Ctx, client: &mut Client, exclude_internal: bool) -> Result<()> {
    let md = client.metadata(None)?;
    let mut topics: Vec<_> = md
        .topics
        .iter()
        .filter(|t| !(exclude_internal && t.is_internal))
        .filter_map(|t| t.name.as_ref().map(|n| (n.0.to_string(), t)))
        .collect();
    topics.sort_by(|a, b| a.0.cmp(&b.0));
    match ctx.output {
        Format::Json => print_json(&json!(
            topics
                .iter()
                .map(|(n, t)| json!({
                    "name": n,
                    "partitions": t.partitions.len(),
                    "replication_factor": t.partitions.first().map(|p| p.replica_nodes.len()),
                    "internal": t.is_internal,
                }))
                .collect::<Vec<_>>()
        )),
        Format::Table => {
            for (n, _) in topics {
                println!("{n}");
            }
        }
    }
    Ok(())
}

fn create(
    ctx: &Ctx,
    client: &mut Client,
    topic: &str,
    partitions: Option<i32>,
    replication_factor: Option<i16>,
    configs: &[String],
    if_not_exists: bool,
) -> Result<()> {
    let v = client.version::<CreateTopicsRequest>(7)?;
    if v < 4 && (partitions.is_none() || replication_factor.is_none()) {
        bail!("this broker needs --partitions and --replication-factor (CreateTopics v{v})");
    }
    if partitions.is_some_and(|p| p < 1) {
        bail!("--partitions must be at least 1");
    }
    if replication_factor.is_some_and(|r| r < 1) {
        bail!("--replication-factor must be at least 1");
    }
    let configs = configs
        .iter()
        .map(|c| parse_kv(c))
        .map(|kv| {
            kv.map(|(k, v)| CreatableTopicConfig::default().with_name(s(k)).with_value(Some(s(v))))
        })
        .collect::<Result<Vec<_>>>()?;
    let req = CreateTopicsRequest::default().with_timeout_ms(30_000).with_topics(vec![
        CreatableTopic::default()
            .with_name(topic_name(topic))
            .with_num_partitions(partitions.unwrap_or(-1))
            .with_replication_factor(replication_factor.unwrap_or(-1))
            .with_configs(configs),
    ]);
    let resp = client.call(&req, v)?;
    let r = resp.topics.first().ok_or_else(|| anyhow::anyhow!("empty CreateTopics response"))?;
    const TOPIC_ALREADY_EXISTS: i16 = 36;
    let existed = r.error_code == TOPIC_ALREADY_EXISTS;
    if !(existed && if_not_exists) {
        check(r.error_code, r.error_message.as_ref(), &format!("creating topic {topic}"))?;
    }
    match ctx.output {
        Format::Json => print_json(&json!({
            "name": topic,
            "created": !existed,
            "partitions": (v >= 5 && !existed).then_some(r.num_partitions),
            "replication_factor": (v >= 5 && !existed).then_some(r.replication_factor),
        })),
        Format::Table if existed => println!("Topic {topic} exists already."),
        Format::Table => println!("Created topic {topic}."),
    }
    Ok(())
}

/// Per-topic config overrides (source DYNAMIC_TOPIC_CONFIG), sorted by name.
pub fn topic_overrides(client: &mut Client, topic: &str) -> Result<Vec<(String, String)>> {
    let v = client.version::<DescribeConfigsRequest>(4)?;
    let req = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(s(topic))
            .with_configuration_keys(None),
    ]);
    let resp = client.call(&req, v)?;
    let mut out = Vec::new();
    for r in resp.results {
        check(r.error_code, r.error_message.as_ref(), &format!("configs of topic {topic}"))?;
        for c in r.configs {
            if c.config_source == SOURCE_DYNAMIC_TOPIC {
                let value = if c.is_sensitive {
                    "(sensitive)".to_string()
                } else {
                    c.value.map(|v| v.to_string()).unwrap_or_default()
                };
                out.push((c.name.to_string(), value));
            }
        }
    }
    out.sort();
    Ok(out)
}

fn ids(v: &[BrokerId]) -> String {
    v.iter().map(|b| b.0.to_string()).collect::<Vec<_>>().join(",")
}

fn describe(ctx: &Ctx, client: &mut Client, topic: Option<String>) -> Result<()> {
    let md = match &topic {
        Some(t) => client.metadata(Some(std::slice::from_ref(t)))?,
        None => client.metadata(None)?,
    };
    let mut topics: Vec<_> = md
        .topics
        .into_iter()
        .filter(|t| topic.is_some() || !t.is_internal)
        .filter(|t| t.name.is_some())
        .collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    let mut docs = Vec::new();
    let mut text = String::new();
    for t in topics {
        let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
        check(t.error_code, None, &format!("topic {name}"))
            .map_err(|e| anyhow::anyhow!("{e}\nhint: list topics with `weir topics list`"))?;
        let overrides = topic_overrides(client, &name)?;
        let mut parts = t.partitions;
        parts.sort_by_key(|p| p.partition_index);
        let rf = parts.first().map(|p| p.replica_nodes.len()).unwrap_or(0);
        let configs =
            overrides.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
        text.push_str(&format!(
            "Topic: {name}\tTopicId: {}\tPartitionCount: {}\tReplicationFactor: {rf}\tConfigs: {configs}\n",
            t.topic_id,
            parts.len()
        ));
        for p in &parts {
            let mut line = format!(
                "\tTopic: {name}\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}",
                p.partition_index,
                if p.leader_id.0 < 0 { "none".to_string() } else { p.leader_id.0.to_string() },
                ids(&p.replica_nodes),
                ids(&p.isr_nodes),
            );
            if !p.offline_replicas.is_empty() {
                line.push_str(&format!("\tOffline: {}", ids(&p.offline_replicas)));
            }
            text.push_str(&line);
            text.push('\n');
        }
        docs.push(json!({
            "name": name,
            "topic_id": t.topic_id.to_string(),
            "internal": t.is_internal,
            "partition_count": parts.len(),
            "replication_factor": rf,
            "configs": overrides.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "partitions": parts.iter().map(|p| json!({
                "partition": p.partition_index,
                "leader": p.leader_id.0,
                "leader_epoch": p.leader_epoch,
                "replicas": p.replica_nodes.iter().map(|b| b.0).collect::<Vec<_>>(),
                "isr": p.isr_nodes.iter().map(|b| b.0).collect::<Vec<_>>(),
                "offline": p.offline_replicas.iter().map(|b| b.0).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        }));
    }
    match ctx.output {
        Format::Json => print_json(&json!(docs)),
        Format::Table => print!("{text}"),
    }
    Ok(())
}

pub const OP_SET: i8 = 0;
pub const OP_DELETE: i8 = 1;

/// IncrementalAlterConfigs on one resource.
pub fn incremental_alter(
    client: &mut Client,
    resource_type: i8,
    name: &str,
    set: &[(String, String)],
    delete: &[String],
) -> Result<()> {
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    let v = client.version::<IncrementalAlterConfigsRequest>(1)?;
    let mut configs: Vec<AlterableConfig> = set
        .iter()
        .map(|(k, val)| {
            AlterableConfig::default()
                .with_name(s(k.clone()))
                .with_config_operation(OP_SET)
                .with_value(Some(s(val.clone())))
        })
        .collect();
    configs.extend(delete.iter().map(|k| {
        AlterableConfig::default().with_name(s(k.clone())).with_config_operation(OP_DELETE)
    }));
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(s(name))
            .with_configs(configs),
    ]);
    let resp = client.call(&req, v)?;
    for r in resp.responses {
        check(r.error_code, r.error_message.as_ref(), &format!("altering configs of {name}"))?;
    }
    Ok(())
}

fn alter(
    ctx: &Ctx,
    client: &mut Client,
    topic: &str,
    partitions: Option<i32>,
    configs: &[String],
    delete_configs: &[String],
) -> Result<()> {
    if partitions.is_none() && configs.is_empty() && delete_configs.is_empty() {
        bail!("nothing to alter: give --partitions, --config or --delete-config");
    }
    client.leaders(topic)?;
    let mut done = Vec::new();
    if let Some(count) = partitions {
        let v = client.version::<CreatePartitionsRequest>(3)?;
        let req = CreatePartitionsRequest::default().with_timeout_ms(30_000).with_topics(vec![
            CreatePartitionsTopic::default()
                .with_name(topic_name(topic))
                .with_count(count)
                .with_assignments(None),
        ]);
        let resp = client.call(&req, v)?;
        for r in resp.results {
            check(
                r.error_code,
                r.error_message.as_ref(),
                &format!("adding partitions to {topic}"),
            )?;
        }
        done.push(format!("partitions={count}"));
    }
    if !configs.is_empty() || !delete_configs.is_empty() {
        let set = configs.iter().map(|c| parse_kv(c)).collect::<Result<Vec<_>>>()?;
        incremental_alter(client, RESOURCE_TOPIC, topic, &set, delete_configs)?;
        done.extend(set.iter().map(|(k, v)| format!("{k}={v}")));
        done.extend(delete_configs.iter().map(|k| format!("-{k}")));
    }
    match ctx.output {
        Format::Json => print_json(&json!({ "name": topic, "altered": done })),
        Format::Table => println!("Altered topic {topic}: {}.", done.join(", ")),
    }
    Ok(())
}

fn delete(ctx: &Ctx, client: &mut Client, topic: &str) -> Result<()> {
    let v = client.version::<DeleteTopicsRequest>(6)?;
    let mut req = DeleteTopicsRequest::default().with_timeout_ms(30_000);
    if v >= 6 {
        req.topics = vec![DeleteTopicState::default().with_name(Some(topic_name(topic)))];
    } else {
        req.topic_names = vec![topic_name(topic)];
    }
    let resp = client.call(&req, v)?;
    for r in resp.responses {
        check(r.error_code, r.error_message.as_ref(), &format!("deleting topic {topic}"))?;
    }
    match ctx.output {
        Format::Json => print_json(&json!({ "name": topic, "deleted": true })),
        Format::Table => println!("Deleted topic {topic}."),
    }
    Ok(())
}
