//! `weir cluster describe`: cluster id, controller, nodes and how many
//! partitions and leaders each node holds.

use crate::Ctx;
use crate::client::{Client, check};
use crate::output::{Format, Table, opt, print_json};
use anyhow::Result;
use kafka_protocol::messages::*;
use serde_json::json;
use std::collections::BTreeMap;

#[derive(clap::Subcommand)]
pub enum ClusterCommand {
    /// Cluster id, controller and nodes.
    Describe,
}

pub fn run(ctx: &Ctx, cmd: ClusterCommand) -> Result<()> {
    let ClusterCommand::Describe = cmd;
    let mut client = Client::connect(&ctx.bootstrap)?;
    let md = client.metadata(None)?;
    let (cluster_id, controller) = if client.supports(ApiKey::DescribeCluster) {
        let v = client.version::<DescribeClusterRequest>(1)?;
        let r = client.call(&DescribeClusterRequest::default(), v)?;
        check(r.error_code, r.error_message.as_ref(), "DescribeCluster")?;
        (Some(r.cluster_id.to_string()), r.controller_id.0)
    } else {
        (md.cluster_id.as_ref().map(|c| c.to_string()), md.controller_id.0)
    };
    // node → (replicas, leaders)
    let mut load: BTreeMap<i32, (usize, usize)> = BTreeMap::new();
    let (mut partitions, mut under_replicated, mut offline) = (0usize, 0usize, 0usize);
    for t in &md.topics {
        for p in &t.partitions {
            partitions += 1;
            if p.isr_nodes.len() < p.replica_nodes.len() {
                under_replicated += 1;
            }
            if p.leader_id.0 < 0 {
                offline += 1;
            } else {
                load.entry(p.leader_id.0).or_default().1 += 1;
            }
            for r in &p.replica_nodes {
                load.entry(r.0).or_default().0 += 1;
            }
        }
    }
    match ctx.output {
        Format::Json => print_json(&json!({
            "cluster_id": cluster_id,
            "controller": controller,
            "topics": md.topics.len(),
            "partitions": partitions,
            "under_replicated_partitions": under_replicated,
            "offline_partitions": offline,
            "nodes": client.brokers.values().map(|b| json!({
                "id": b.id, "host": b.host, "port": b.port, "rack": b.rack,
                "replicas": load.get(&b.id).map_or(0, |l| l.0),
                "leaders": load.get(&b.id).map_or(0, |l| l.1),
            })).collect::<Vec<_>>(),
        })),
        Format::Table => {
            println!("Cluster ID: {}", opt(cluster_id));
            println!(
                "Controller: {}",
                if controller < 0 { "-".into() } else { controller.to_string() }
            );
            println!(
                "Topics: {}  Partitions: {partitions}  Under-replicated: {under_replicated}  Offline: {offline}\n",
                md.topics.len()
            );
            let mut t = Table::new(&["ID", "HOST", "PORT", "RACK", "REPLICAS", "LEADERS"]);
            for b in client.brokers.values() {
                let l = load.get(&b.id).copied().unwrap_or_default();
                t.row(vec![
                    b.id.to_string(),
                    b.host.clone(),
                    b.port.to_string(),
                    opt(b.rack.clone()),
                    l.0.to_string(),
                    l.1.to_string(),
                ]);
            }
            print!("{}", t.render());
        }
    }
    Ok(())
}
