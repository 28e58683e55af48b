//! `weir configs`: describe and alter configs of topics and nodes, like
//! `kafka-configs --entity-type topics|brokers`.
//!
//! A node's dynamic configs (the replication throttle rates
//! `leader.replication.throttled.rate` and
//! `follower.replication.throttled.rate`) are altered for one node
//! (`--entity-name ID`) or as the cluster default (`--entity-default`), as
//! with kafka-configs. Describing a node shows its static settings and the
//! dynamic configs in force on it (source DYNAMIC_BROKER_CONFIG or
//! DYNAMIC_DEFAULT_BROKER_CONFIG); `--entity-default` shows the cluster
//! default's dynamic configs only.

use crate::Ctx;
use crate::client::{Client, check, s};
use crate::output::{Format, Table, print_json};
use crate::topics::{RESOURCE_TOPIC, incremental_alter};
use anyhow::{Result, bail};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::*;
use serde_json::json;

const RESOURCE_BROKER: i8 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EntityType {
    Topics,
    #[value(alias = "brokers")]
    Nodes,
}

impl EntityType {
    fn resource_type(self) -> i8 {
        match self {
            EntityType::Topics => RESOURCE_TOPIC,
            EntityType::Nodes => RESOURCE_BROKER,
        }
    }
}

#[derive(clap::Subcommand)]
pub enum ConfigsCommand {
    /// Show configs of a topic or node.
    Describe {
        #[arg(long, value_enum)]
        entity_type: EntityType,
        /// Topic name or node id (for nodes, default: the bootstrap node).
        #[arg(long)]
        entity_name: Option<String>,
        /// Nodes only: the cluster-wide default of the dynamic node configs.
        #[arg(long, conflicts_with = "entity_name")]
        entity_default: bool,
        /// Show every config, defaults included (default: only overrides for topics).
        #[arg(long)]
        all: bool,
    },
    /// Set or remove config overrides.
    Alter {
        #[arg(long, value_enum)]
        entity_type: EntityType,
        /// Topic name or node id.
        #[arg(long, required_unless_present = "entity_default")]
        entity_name: Option<String>,
        /// Nodes only: alter the cluster-wide default of the dynamic node
        /// configs (a node's own value wins over it).
        #[arg(long, conflicts_with = "entity_name")]
        entity_default: bool,
        /// `key=value[,key=value]`; a value holding commas goes in brackets: `k=[a,b]`.
        #[arg(long = "add-config", value_name = "KEY=VALUE,...")]
        add_config: Vec<String>,
        /// `key[,key]` to remove (back to the default).
        #[arg(long = "delete-config", value_name = "KEY,...")]
        delete_config: Vec<String>,
    },
}

/// Splits `a=1,b=[x,y]` on commas outside brackets.
fn split_list(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0usize;
    for c in s.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.into_iter().filter(|x| !x.trim().is_empty()).collect()
}

fn source_name(code: i8) -> &'static str {
    match code {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        6 => "DYNAMIC_BROKER_LOGGER_CONFIG",
        7 => "CLIENT_METRICS_CONFIG",
        8 => "GROUP_CONFIG",
        _ => "UNKNOWN",
    }
}

pub fn run(ctx: &Ctx, cmd: ConfigsCommand) -> Result<()> {
    let mut client = Client::connect(&ctx.bootstrap)?;
    match cmd {
        ConfigsCommand::Describe { entity_type, entity_name, entity_default, all } => {
            let name = match (entity_type, entity_name) {
                (EntityType::Topics, _) if entity_default => {
                    bail!("--entity-default applies to nodes only")
                }
                (EntityType::Nodes, _) if entity_default => String::new(),
                (_, Some(n)) => n,
                (EntityType::Nodes, None) => {
                    let md = client.metadata(Some(&[]))?;
                    md.brokers.first().map(|b| b.node_id.0.to_string()).unwrap_or_default()
                }
                (EntityType::Topics, None) => bail!("--entity-name TOPIC is required for topics"),
            };
            describe(ctx, &mut client, entity_type, &name, all)
        }
        ConfigsCommand::Alter {
            entity_type,
            entity_name,
            entity_default,
            add_config,
            delete_config,
        } => {
            let entity_name = match (entity_type, entity_name) {
                (EntityType::Topics, _) if entity_default => {
                    bail!("--entity-default applies to nodes only")
                }
                (_, Some(n)) => n,
                (_, None) => String::new(),
            };
            let set = add_config
                .iter()
                .flat_map(|a| split_list(a))
                .map(|kv| {
                    crate::parse_kv(&kv).map(|(k, v)| {
                        let v = v.strip_prefix('[').and_then(|v| v.strip_suffix(']')).unwrap_or(&v);
                        (k, v.to_string())
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let delete: Vec<String> = delete_config.iter().flat_map(|d| split_list(d)).collect();
            if set.is_empty() && delete.is_empty() {
                bail!("nothing to alter: give --add-config or --delete-config");
            }
            incremental_alter(
                &mut client,
                entity_type.resource_type(),
                &entity_name,
                &set,
                &delete,
            )?;
            match ctx.output {
                Format::Json => print_json(&json!({
                    "entity_type": format!("{entity_type:?}").to_lowercase(),
                    "entity_name": entity_name,
                    "set": set.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
                    "deleted": delete,
                })),
                Format::Table if entity_name.is_empty() => {
                    println!("Completed updating default config for nodes in the cluster.")
                }
                Format::Table => println!("Completed updating config for {entity_name}."),
            }
            Ok(())
        }
    }
}

fn describe(ctx: &Ctx, client: &mut Client, et: EntityType, name: &str, all: bool) -> Result<()> {
    let v = client.version::<DescribeConfigsRequest>(4)?;
    let req = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(et.resource_type())
            .with_resource_name(s(name))
            .with_configuration_keys(None),
    ]);
    let resp = match et {
        // The cluster default: any node answers it.
        EntityType::Nodes if name.is_empty() => client.call(&req, v)?,
        EntityType::Nodes => {
            let node: i32 =
                name.parse().map_err(|_| anyhow::anyhow!("node id {name:?} is not a number"))?;
            client.call_node(node, &req, v)?
        }
        EntityType::Topics => client.call(&req, v)?,
    };
    let mut rows = Vec::new();
    for r in resp.results {
        check(r.error_code, r.error_message.as_ref(), &format!("configs of {name}"))?;
        for c in r.configs {
            // By default topics show overrides only, as kafka-configs does.
            if et == EntityType::Topics && !all && c.config_source != 1 {
                continue;
            }
            let value = if c.is_sensitive { None } else { c.value.map(|v| v.to_string()) };
            rows.push((c.name.to_string(), value, c.config_source, c.read_only, c.is_sensitive));
        }
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    match ctx.output {
        Format::Json => print_json(&json!({
            "entity_type": format!("{et:?}").to_lowercase(),
            "entity_name": name,
            "configs": rows.iter().map(|(k, v, src, ro, sens)| json!({
                "name": k, "value": v, "source": source_name(*src), "read_only": ro, "sensitive": sens,
            })).collect::<Vec<_>>(),
        })),
        Format::Table => {
            let mut t = Table::new(&["NAME", "VALUE", "SOURCE", "READ-ONLY"]);
            for (k, v, src, ro, sens) in rows {
                let v =
                    if sens { "(sensitive)".into() } else { v.unwrap_or_else(|| "null".into()) };
                t.row(vec![k, v, source_name(src).into(), ro.to_string()]);
            }
            if t.is_empty() && name.is_empty() {
                println!("No default configs for nodes in the cluster.");
            } else if t.is_empty() {
                println!("No config overrides for {name}.");
            } else {
                print!("{}", t.render());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn config_lists_split_outside_brackets() {
        assert_eq!(super::split_list("a=1,b=[x,y]"), vec!["a=1", "b=[x,y]"]);
        assert_eq!(super::split_list("a"), vec!["a"]);
    }
}
