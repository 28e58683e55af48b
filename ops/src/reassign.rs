//! `weir reassign` and `weir elect-leaders`: plain protocol calls
//! (AlterPartitionReassignments, ListPartitionReassignments, ElectLeaders),
//! like `kafka-reassign-partitions` and `kafka-leader-election`. The broker's
//! error code is reported per partition as it comes.
//!
//! The reassignment file is Kafka's:
//! `{"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[1,2,3]}]}`.
//! `--generate` proposes one from Kafka's topics file
//! (`{"version":1,"topics":[{"topic":"t"}]}`) and a node list, spreading
//! replicas as Kafka's rack-unaware assignment does.
//!
//! `--execute --throttle BYTES_PER_SEC` limits the copying as Kafka's tool
//! does, before the moves start: the node configs
//! `leader.replication.throttled.rate` and
//! `follower.replication.throttled.rate` are set to the rate on every node a
//! moving partition is on or goes to, and per topic
//! `leader.replication.throttled.replicas` lists `partition:node` for each
//! current replica of a moving partition and
//! `follower.replication.throttled.replicas` each replica being added. A
//! partition moves when its target replica set differs from its current one
//! (a new order alone copies nothing). `--verify`, once every move in the
//! file is complete, and `--cancel` clear those configs on every node and
//! topic of the file (unless `--preserve-throttles`), as Kafka's tool does.

use crate::Ctx;
use crate::client::{Client, check, error_name, topic_name};
use crate::output::{Format, Table, print_json};
use crate::topics::{RESOURCE_TOPIC, incremental_alter};
use anyhow::{Context, Result, anyhow, bail};
use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
use kafka_protocol::messages::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use weir_controller::ThrottledReplicas;
use weir_controller::config::{
    FOLLOWER_THROTTLED_RATE, FOLLOWER_THROTTLED_REPLICAS, LEADER_THROTTLED_RATE,
    LEADER_THROTTLED_REPLICAS,
};
use weir_proto::NodeId;

const TIMEOUT_MS: i32 = 30_000;
/// ElectLeaders election type: the first live replica in the replica list.
const ELECTION_PREFERRED: i8 = 0;
/// ElectLeaders answers ELECTION_NOT_NEEDED where the preferred replica leads already.
const ELECTION_NOT_NEEDED: i16 = 84;
/// DescribeConfigs / AlterConfigs resource type of a node ("broker").
const RESOURCE_BROKER: i8 = 4;

#[derive(clap::Args)]
pub struct ReassignArgs {
    /// Propose a reassignment of the topics in the file
    /// (`{"version":1,"topics":[{"topic":"t"}]}`) onto `--broker-list`.
    #[arg(long, group = "mode", value_name = "FILE", requires = "broker_list")]
    generate: Option<PathBuf>,
    /// Nodes to place replicas on, e.g. `1,2,3` (with `--generate`).
    #[arg(long, value_delimiter = ',', value_name = "IDS")]
    broker_list: Vec<i32>,
    /// Start the moves in the file.
    #[arg(long, group = "mode", value_name = "FILE")]
    execute: Option<PathBuf>,
    /// With --execute: limit replication of the moving partitions to this
    /// many bytes per second on each node involved, as leader and as
    /// follower. --verify removes the throttle once every move is complete.
    #[arg(long, requires = "execute", value_name = "BYTES_PER_SEC")]
    throttle: Option<u64>,
    /// With --verify or --cancel: leave the throttle configs in place.
    #[arg(long)]
    preserve_throttles: bool,
    /// Check whether the moves in the file are done.
    #[arg(long, group = "mode", value_name = "FILE")]
    verify: Option<PathBuf>,
    /// Cancel the ongoing moves of the partitions in the file.
    #[arg(long, group = "mode", value_name = "FILE")]
    cancel: Option<PathBuf>,
    /// List ongoing reassignments.
    #[arg(long, group = "mode")]
    list: bool,
}

#[derive(clap::Args)]
pub struct ElectArgs {
    /// Elect the preferred replica (the first in the replica list) as leader.
    #[arg(long, required = true)]
    preferred: bool,
    /// Only this topic (with --partition: only that partition).
    #[arg(long)]
    topic: Option<String>,
    #[arg(long, requires = "topic")]
    partition: Option<i32>,
    /// Every partition in the cluster.
    #[arg(long, conflicts_with = "topic")]
    all_topic_partitions: bool,
}

type Plan = BTreeMap<(String, i32), Vec<i32>>;
/// An ongoing move: [replicas, adding, removing].
type Ongoing = BTreeMap<(String, i32), [Vec<i32>; 3]>;

fn read_plan(path: &Path) -> Result<Plan> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let doc: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let bad = || {
        anyhow!(
            "{}: expected {{\"version\":1,\"partitions\":[{{\"topic\":\"t\",\"partition\":0,\"replicas\":[1,2]}}]}}",
            path.display()
        )
    };
    let mut plan = Plan::new();
    for p in doc["partitions"].as_array().ok_or_else(bad)? {
        let topic = p["topic"].as_str().ok_or_else(bad)?.to_string();
        let partition =
            p["partition"].as_i64().and_then(|x| i32::try_from(x).ok()).ok_or_else(bad)?;
        let replicas = p["replicas"]
            .as_array()
            .ok_or_else(bad)?
            .iter()
            .map(|r| r.as_i64().and_then(|x| i32::try_from(x).ok()).ok_or_else(bad))
            .collect::<Result<Vec<_>>>()?;
        plan.insert((topic, partition), replicas);
    }
    if plan.is_empty() {
        bail!("{}: no partitions", path.display());
    }
    Ok(plan)
}

/// Sends AlterPartitionReassignments; `None` replicas cancel.
fn alter(
    client: &mut Client,
    plan: &BTreeMap<(String, i32), Option<Vec<i32>>>,
) -> Result<Vec<(String, i32, i16, String)>> {
    let v = client.version::<AlterPartitionReassignmentsRequest>(0)?;
    let mut topics: BTreeMap<&str, Vec<ReassignablePartition>> = BTreeMap::new();
    for ((t, p), r) in plan {
        topics.entry(t).or_default().push(
            ReassignablePartition::default()
                .with_partition_index(*p)
                .with_replicas(r.as_ref().map(|r| r.iter().map(|b| BrokerId(*b)).collect())),
        );
    }
    let req =
        AlterPartitionReassignmentsRequest::default().with_timeout_ms(TIMEOUT_MS).with_topics(
            topics
                .into_iter()
                .map(|(t, ps)| {
                    ReassignableTopic::default().with_name(topic_name(t)).with_partitions(ps)
                })
                .collect(),
        );
    let resp = client.call(&req, v)?;
    check(resp.error_code, resp.error_message.as_ref(), "AlterPartitionReassignments")?;
    let mut out = Vec::new();
    for t in resp.responses {
        for p in t.partitions {
            let msg = p.error_message.map(|m| m.to_string()).unwrap_or_default();
            out.push((t.name.0.to_string(), p.partition_index, p.error_code, msg));
        }
    }
    Ok(out)
}

/// Ongoing reassignments: (topic, partition) → (replicas, adding, removing).
fn ongoing(client: &mut Client, only: Option<&Plan>) -> Result<Ongoing> {
    let v = client.version::<ListPartitionReassignmentsRequest>(0)?;
    let topics = only.map(|plan| {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (t, p) in plan.keys() {
            by_topic.entry(t).or_default().push(*p);
        }
        by_topic
            .into_iter()
            .map(|(t, ps)| {
                ListPartitionReassignmentsTopics::default()
                    .with_name(topic_name(t))
                    .with_partition_indexes(ps)
            })
            .collect()
    });
    let req = ListPartitionReassignmentsRequest::default()
        .with_timeout_ms(TIMEOUT_MS)
        .with_topics(topics);
    let resp = client.call(&req, v)?;
    check(resp.error_code, resp.error_message.as_ref(), "ListPartitionReassignments")?;
    let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<_>>();
    let mut out = BTreeMap::new();
    for t in resp.topics {
        for p in t.partitions {
            out.insert(
                (t.name.0.to_string(), p.partition_index),
                [ids(&p.replicas), ids(&p.adding_replicas), ids(&p.removing_replicas)],
            );
        }
    }
    Ok(out)
}

/// The current replicas of the partitions in `plan` (from Metadata); a
/// partition that does not exist is left out.
fn current_assignment(client: &mut Client, plan: &Plan) -> Result<Plan> {
    let mut topics: Vec<String> = plan.keys().map(|(t, _)| t.clone()).collect();
    topics.dedup();
    let md = client.metadata(Some(&topics))?;
    let mut current = Plan::new();
    for t in md.topics {
        let name = t.name.map(|n| n.0.to_string()).unwrap_or_default();
        for p in t.partitions {
            let key = (name.clone(), p.partition_index);
            if plan.contains_key(&key) {
                current.insert(key, p.replica_nodes.iter().map(|b| b.0).collect());
            }
        }
    }
    Ok(current)
}

fn list_text(v: &[i32]) -> String {
    v.iter().map(|b| b.to_string()).collect::<Vec<_>>().join(",")
}

fn print_results(ctx: &Ctx, results: &[(String, i32, i16, String)], action: &str) -> Result<()> {
    let failed = results.iter().filter(|r| r.2 != 0).count();
    match ctx.output {
        Format::Json => print_json(&json!(
            results
                .iter()
                .map(|(t, p, code, msg)| json!({
                    "topic": t, "partition": p, "error_code": code,
                    "error": (*code != 0).then(|| error_name(*code)), "message": msg,
                }))
                .collect::<Vec<_>>()
        )),
        Format::Table => {
            let mut table = Table::new(&["TOPIC", "PARTITION", "RESULT", "MESSAGE"]);
            for (t, p, code, msg) in results {
                let result = if *code == 0 { action.to_string() } else { error_name(*code) };
                table.row(vec![t.clone(), p.to_string(), result, msg.clone()]);
            }
            print!("{}", table.render());
        }
    }
    if failed > 0 {
        bail!("{failed} partition(s) failed: see the error codes above");
    }
    Ok(())
}

/// Reads Kafka's topics-to-move file.
fn read_topics(path: &Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let doc: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let bad = || {
        anyhow!("{}: expected {{\"version\":1,\"topics\":[{{\"topic\":\"t\"}}]}}", path.display())
    };
    let topics = doc["topics"]
        .as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|t| t["topic"].as_str().map(str::to_string).ok_or_else(bad))
        .collect::<Result<Vec<_>>>()?;
    if topics.is_empty() {
        bail!("{}: no topics", path.display());
    }
    Ok(topics)
}

/// Kafka's rack-unaware replica assignment: partition `p`'s first replica is
/// node `(p + start) % n`; the others follow at a shift that grows every `n`
/// partitions, so leaders and followers spread evenly. `start` is derived
/// from the topic name (Kafka picks it at random) so a proposal is repeatable.
fn assign(
    topic: &str,
    partitions: usize,
    replication: usize,
    nodes: &[i32],
) -> Result<Vec<Vec<i32>>> {
    let n = nodes.len();
    if replication == 0 || replication > n {
        bail!(
            "replication factor {replication} needs at least that many nodes in --broker-list (got {n})"
        );
    }
    let mut sorted = nodes.to_vec();
    sorted.sort_unstable();
    let start = topic.bytes().fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize)) % n;
    let mut shift = start;
    let mut out = Vec::with_capacity(partitions);
    for p in 0..partitions {
        if p > 0 && p % n == 0 {
            shift += 1;
        }
        let first = (p + start) % n;
        let mut replicas = vec![sorted[first]];
        for j in 0..replication - 1 {
            let step = 1 + (shift + j) % (n - 1);
            replicas.push(sorted[(first + step) % n]);
        }
        out.push(replicas);
    }
    Ok(out)
}

fn plan_json(plan: &Plan) -> Value {
    json!({
        "version": 1,
        "partitions": plan.iter().map(|((t, p), r)| json!({"topic": t, "partition": p, "replicas": r})).collect::<Vec<_>>(),
    })
}

fn generate(ctx: &Ctx, client: &mut Client, path: &Path, nodes: &[i32]) -> Result<()> {
    let topics = read_topics(path)?;
    let md = client.metadata(Some(&topics))?;
    let known: Vec<i32> = md.brokers.iter().map(|b| b.node_id.0).collect();
    if let Some(missing) = nodes.iter().find(|n| !known.contains(n)) {
        bail!(
            "node {missing} in --broker-list is not in the cluster (nodes: {})",
            list_text(&known)
        );
    }
    let (mut current, mut proposed) = (Plan::new(), Plan::new());
    for t in &md.topics {
        let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
        check(t.error_code, None, &format!("topic {name}"))?;
        let mut parts: Vec<_> = t.partitions.iter().collect();
        parts.sort_by_key(|p| p.partition_index);
        let replication = parts.first().map_or(0, |p| p.replica_nodes.len());
        for p in &parts {
            current.insert(
                (name.clone(), p.partition_index),
                p.replica_nodes.iter().map(|b| b.0).collect(),
            );
        }
        for (p, replicas) in assign(&name, parts.len(), replication, nodes)?.into_iter().enumerate()
        {
            proposed.insert((name.clone(), p as i32), replicas);
        }
    }
    match ctx.output {
        Format::Json => {
            print_json(&json!({"current": plan_json(&current), "proposed": plan_json(&proposed)}))
        }
        Format::Table => {
            println!("Current partition replica assignment\n{}\n", plan_json(&current));
            println!("Proposed partition reassignment configuration\n{}", plan_json(&proposed));
        }
    }
    Ok(())
}

/// What `--throttle` sets: the nodes that get the rates, and per topic the
/// leader and follower throttled-replicas lists.
#[derive(Debug, Default, PartialEq, Eq)]
struct Throttles {
    nodes: BTreeSet<i32>,
    topics: BTreeMap<String, (ThrottledReplicas, ThrottledReplicas)>,
}

/// Kafka's throttle plan for the moves in `plan`: a partition's sources are
/// its current replicas (those before an ongoing move, when one is in
/// progress), its destinations the target replicas not among them. Only
/// partitions whose replica set changes are throttled; partitions unknown
/// to `current` are left out (the move itself reports them).
fn throttles(plan: &Plan, current: &Plan, moving: &Ongoing) -> Throttles {
    let mut out = Throttles::default();
    // Per topic: (partition, node) pairs of the leader and the follower list.
    type Pairs = BTreeSet<(i32, i32)>;
    let mut lists: BTreeMap<&str, (Pairs, Pairs)> = BTreeMap::new();
    for ((t, p), target) in plan {
        let key = (t.clone(), *p);
        let sources: Vec<i32> = match (moving.get(&key), current.get(&key)) {
            (Some([replicas, adding, _]), _) => {
                replicas.iter().copied().filter(|r| !adding.contains(r)).collect()
            }
            (None, Some(replicas)) => replicas.clone(),
            (None, None) => continue,
        };
        let source_set: BTreeSet<i32> = sources.iter().copied().collect();
        let target_set: BTreeSet<i32> = target.iter().copied().collect();
        if source_set == target_set {
            continue;
        }
        let (leader, follower) = lists.entry(t).or_default();
        leader.extend(source_set.iter().map(|b| (*p, *b)));
        follower.extend(target_set.difference(&source_set).map(|b| (*p, *b)));
        out.nodes.extend(source_set.union(&target_set));
    }
    let list = |items: Pairs| {
        if items.is_empty() {
            ThrottledReplicas::None
        } else {
            ThrottledReplicas::List(items.into_iter().map(|(p, b)| (p, NodeId(b))).collect())
        }
    };
    for (t, (leader, follower)) in lists {
        out.topics.insert(t.to_string(), (list(leader), list(follower)));
    }
    out
}

/// Sets the throttle configs of `throttles` at `rate` bytes/s: the topics'
/// lists first, then the nodes' rates. An empty list is removed rather than
/// set, so no empty override is left behind.
fn set_throttles(client: &mut Client, throttles: &Throttles, rate: u64) -> Result<()> {
    for (topic, (leader, follower)) in &throttles.topics {
        let (mut set, mut delete) = (Vec::new(), Vec::new());
        for (key, list) in
            [(LEADER_THROTTLED_REPLICAS, leader), (FOLLOWER_THROTTLED_REPLICAS, follower)]
        {
            if *list == ThrottledReplicas::None {
                delete.push(key.to_string());
            } else {
                set.push((key.to_string(), list.to_string()));
            }
        }
        incremental_alter(client, RESOURCE_TOPIC, topic, &set, &delete)?;
    }
    let rates = [
        (LEADER_THROTTLED_RATE.to_string(), rate.to_string()),
        (FOLLOWER_THROTTLED_RATE.to_string(), rate.to_string()),
    ];
    for node in &throttles.nodes {
        incremental_alter(client, RESOURCE_BROKER, &node.to_string(), &rates, &[])?;
    }
    Ok(())
}

/// Removes the throttle configs, as Kafka's tool does once moves are done:
/// the rates on every node of the cluster and of the file (there is no
/// record of which nodes a past `--execute` throttled), the lists on every
/// topic of the file. Removing what is not set changes nothing.
fn clear_throttles(ctx: &Ctx, client: &mut Client, plan: &Plan) -> Result<()> {
    let mut nodes: BTreeSet<i32> = client.brokers.keys().copied().collect();
    nodes.extend(plan.values().flatten());
    let topics: BTreeSet<&str> = plan.keys().map(|(t, _)| t.as_str()).collect();
    let rates = [LEADER_THROTTLED_RATE.to_string(), FOLLOWER_THROTTLED_RATE.to_string()];
    for node in &nodes {
        incremental_alter(client, RESOURCE_BROKER, &node.to_string(), &[], &rates)?;
    }
    let lists = [LEADER_THROTTLED_REPLICAS.to_string(), FOLLOWER_THROTTLED_REPLICAS.to_string()];
    for topic in &topics {
        incremental_alter(client, RESOURCE_TOPIC, topic, &[], &lists)?;
    }
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let nodes: Vec<i32> = nodes.into_iter().collect();
    let topics: Vec<&str> = topics.into_iter().collect();
    notice(
        ctx,
        &format!(
            "Clearing node-level throttles on node{} {}\n\
             Clearing topic-level throttles on topic{} {}\n\
             Throttle was removed.",
            plural(nodes.len()),
            list_text(&nodes),
            plural(topics.len()),
            topics.join(","),
        ),
    );
    Ok(())
}

/// A message for people: on stdout with tables, on stderr with `--output
/// json` (whose stdout stays one JSON document).
fn notice(ctx: &Ctx, text: &str) {
    match ctx.output {
        Format::Table => println!("{text}"),
        Format::Json => eprintln!("{text}"),
    }
}

pub fn reassign(ctx: &Ctx, a: ReassignArgs) -> Result<()> {
    let mut client = Client::connect(&ctx.bootstrap)?;
    if let Some(path) = &a.generate {
        return generate(ctx, &mut client, path, &a.broker_list);
    }
    if let Some(path) = &a.execute {
        let plan = read_plan(path)?;
        let current = current_assignment(&mut client, &plan)?;
        if ctx.output == Format::Table {
            // As kafka-reassign-partitions: what to go back to, printed first.
            println!(
                "Current partition replica assignment\n\n{}\n\n\
                 Save this to use with --execute to roll back once the move is done \
                 (--cancel stops it while in progress).\n",
                plan_json(&current)
            );
        }
        if let Some(rate) = a.throttle {
            // Before the moves start, so the copying is throttled from its first byte.
            let moving = ongoing(&mut client, Some(&plan))?;
            let throttles = throttles(&plan, &current, &moving);
            set_throttles(&mut client, &throttles, rate)?;
            let mut text = String::from(
                "Warning: You must run --verify periodically, until the reassignment completes, \
                 to ensure the throttle is removed.",
            );
            let nodes: Vec<i32> = throttles.nodes.iter().copied().collect();
            text.push_str(&format!(
                "\nThe inter-broker throttle limit was set to {rate} B/s on node(s) {}.",
                list_text(&nodes)
            ));
            let shown = |l: &ThrottledReplicas| match l {
                ThrottledReplicas::None => "(none)".to_string(),
                l => l.to_string(),
            };
            for (topic, (leader, follower)) in &throttles.topics {
                let (leader, follower) = (shown(leader), shown(follower));
                text.push_str(&format!(
                    "\nThrottled replicas of topic {topic}: {LEADER_THROTTLED_REPLICAS}={leader}, \
                     {FOLLOWER_THROTTLED_REPLICAS}={follower}."
                ));
            }
            if throttles.nodes.is_empty() {
                text = "No partition in the file changes its replicas: nothing to throttle.".into();
            }
            notice(ctx, &text);
        }
        let results = alter(&mut client, &plan.into_iter().map(|(k, r)| (k, Some(r))).collect())?;
        return print_results(ctx, &results, "started");
    }
    if let Some(path) = &a.cancel {
        let plan = read_plan(path)?;
        let results = alter(&mut client, &plan.keys().map(|k| (k.clone(), None)).collect())?;
        // As Kafka's tool: once the moves are cancelled, the throttle goes too.
        let cancelled = results.iter().all(|r| r.2 == 0);
        print_results(ctx, &results, "cancelled")?;
        if cancelled && !a.preserve_throttles {
            clear_throttles(ctx, &mut client, &plan)?;
        }
        return Ok(());
    }
    if let Some(path) = &a.verify {
        let plan = read_plan(path)?;
        // The node answers the list once its own metadata has caught up
        // with the controller, so a move the list no longer names shows
        // its final replicas in the Metadata that follows.
        let moving = ongoing(&mut client, Some(&plan))?;
        let replicas = current_assignment(&mut client, &plan)?;
        let mut rows = Vec::new();
        for ((t, p), target) in &plan {
            let current = replicas.get(&(t.clone(), *p)).cloned();
            let status = if moving.contains_key(&(t.clone(), *p)) {
                "in progress"
            } else if current.as_ref() == Some(target) {
                "complete"
            } else {
                "not started or failed"
            };
            rows.push((t.clone(), *p, list_text(target), current.map(|c| list_text(&c)), status));
        }
        let complete = rows.iter().all(|r| r.4 == "complete");
        match ctx.output {
            Format::Json => {
                print_json(&json!(rows.iter().map(|(t, p, target, current, status)| json!({
                "topic": t, "partition": p, "target": target, "replicas": current, "status": status,
            })).collect::<Vec<_>>()))
            }
            Format::Table => {
                let mut table = Table::new(&["TOPIC", "PARTITION", "TARGET", "REPLICAS", "STATUS"]);
                for (t, p, target, current, status) in rows {
                    table.row(vec![
                        t,
                        p.to_string(),
                        target,
                        crate::output::opt(current),
                        status.into(),
                    ]);
                }
                print!("{}", table.render());
            }
        }
        if complete && !a.preserve_throttles {
            clear_throttles(ctx, &mut client, &plan)?;
        }
        return Ok(());
    }
    if !a.list {
        bail!(
            "choose one of --generate FILE, --execute FILE, --verify FILE, --cancel FILE or --list"
        );
    }
    let moving = ongoing(&mut client, None)?;
    match ctx.output {
        Format::Json => {
            print_json(&json!(moving.iter().map(|((t, p), [r, add, remove])| json!({
            "topic": t, "partition": p, "replicas": r, "adding": add, "removing": remove,
        })).collect::<Vec<_>>()))
        }
        Format::Table => {
            let mut table = Table::new(&["TOPIC", "PARTITION", "REPLICAS", "ADDING", "REMOVING"]);
            for ((t, p), [r, add, remove]) in &moving {
                table.row(vec![
                    t.clone(),
                    p.to_string(),
                    list_text(r),
                    list_text(add),
                    list_text(remove),
                ]);
            }
            if table.is_empty() {
                println!("No partition reassignments in progress.");
            } else {
                print!("{}", table.render());
            }
        }
    }
    Ok(())
}

pub fn elect_leaders(ctx: &Ctx, a: ElectArgs) -> Result<()> {
    if !a.preferred {
        bail!("only --preferred elections are supported");
    }
    if a.topic.is_none() && !a.all_topic_partitions {
        bail!("choose --topic TOPIC [--partition N] or --all-topic-partitions");
    }
    let mut client = Client::connect(&ctx.bootstrap)?;
    let v = client.version::<ElectLeadersRequest>(2)?;
    let partitions = match &a.topic {
        None => None,
        Some(t) => {
            let leaders = client.leaders(t)?;
            let ps = match a.partition {
                Some(p) if leaders.contains_key(&p) => vec![p],
                Some(p) => bail!("topic {t} has no partition {p}"),
                None => leaders.keys().copied().collect(),
            };
            Some(vec![
                TopicPartitions::default().with_topic(topic_name(t.clone())).with_partitions(ps),
            ])
        }
    };
    let mut req = ElectLeadersRequest::default()
        .with_topic_partitions(partitions)
        .with_timeout_ms(TIMEOUT_MS);
    if v >= 1 {
        req.election_type = ELECTION_PREFERRED;
    }
    let resp = client.call(&req, v)?;
    check(resp.error_code, None, "ElectLeaders")?;
    let mut results = Vec::new();
    for t in resp.replica_election_results {
        for p in t.partition_result {
            let msg = p.error_message.map(|m| m.to_string()).unwrap_or_default();
            // Already led by the preferred replica: not a failure.
            let (code, msg) = if p.error_code == ELECTION_NOT_NEEDED {
                (0, "preferred replica leads already".to_string())
            } else {
                (p.error_code, msg)
            };
            results.push((t.topic.0.to_string(), p.partition_id, code, msg));
        }
    }
    print_results(ctx, &results, "elected")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_assignments_spread_leaders_and_replicas_evenly() {
        let nodes = [5, 1, 4, 2, 3];
        let a = assign("orders", 10, 3, &nodes).unwrap();
        assert_eq!(a.len(), 10);
        let mut leaders = BTreeMap::new();
        let mut replicas = BTreeMap::new();
        for r in &a {
            assert_eq!(r.len(), 3);
            let mut distinct = r.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(distinct.len(), 3, "no node twice in {r:?}");
            *leaders.entry(r[0]).or_insert(0) += 1;
            for n in r {
                *replicas.entry(*n).or_insert(0) += 1;
            }
        }
        assert!(leaders.values().all(|c| *c == 2), "{leaders:?}");
        assert!(replicas.values().all(|c| *c == 6), "{replicas:?}");
        assert_eq!(a, assign("orders", 10, 3, &nodes).unwrap(), "repeatable");
        assert!(assign("orders", 3, 4, &nodes[..3]).is_err());
    }

    #[test]
    fn throttles_cover_sources_and_added_replicas_of_moving_partitions() {
        let key = |t: &str, p: i32| (t.to_string(), p);
        let plan: Plan = [
            (key("a", 0), vec![1, 2, 3]), // grows: 1 → 1,2,3
            (key("a", 1), vec![3, 2]),    // only reordered: not moving
            (key("a", 2), vec![4]),       // ongoing 1 → 2, now retargeted to 4
            (key("b", 0), vec![2]),       // shrinks: 1,2 → 2
            (key("c", 0), vec![1]),       // unknown partition
        ]
        .into();
        let current: Plan = [
            (key("a", 0), vec![1]),
            (key("a", 1), vec![2, 3]),
            (key("a", 2), vec![2, 1]),
            (key("b", 0), vec![1, 2]),
        ]
        .into();
        let moving: Ongoing = [(key("a", 2), [vec![2, 1], vec![2], vec![1]])].into();
        let t = throttles(&plan, &current, &moving);
        assert_eq!(t.nodes, [1, 2, 3, 4].into());
        let text = |t: &Throttles, name: &str| {
            let (l, f) = &t.topics[name];
            (l.to_string(), f.to_string())
        };
        assert_eq!(text(&t, "a"), ("0:1,2:1".to_string(), "0:2,0:3,2:4".to_string()));
        assert_eq!(text(&t, "b"), ("0:1,0:2".to_string(), String::new()));
        assert_eq!(t.topics["b"].1, ThrottledReplicas::None);
        assert!(!t.topics.contains_key("c"));
        // Nothing moves: nothing to throttle.
        let same: Plan = [(key("a", 1), vec![2, 3])].into();
        assert_eq!(throttles(&same, &current, &Ongoing::new()), Throttles::default());
    }

    #[test]
    fn reassignment_files_parse_or_say_what_is_expected() {
        let dir = std::env::temp_dir().join(format!("weir-reassign-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.json");
        std::fs::write(
            &good,
            r#"{"version":1,"partitions":[{"topic":"t","partition":1,"replicas":[2,3]}]}"#,
        )
        .unwrap();
        let plan = read_plan(&good).unwrap();
        assert_eq!(plan.get(&("t".to_string(), 1)), Some(&vec![2, 3]));
        let bad = dir.join("bad.json");
        std::fs::write(&bad, r#"{"partitions":[{"topic":"t"}]}"#).unwrap();
        assert!(read_plan(&bad).unwrap_err().to_string().contains("expected"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
