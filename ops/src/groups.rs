//! `weir groups`: list, describe (offsets and lag, members, state), delete,
//! and reset-offsets, like `kafka-consumer-groups`.
//!
//! Lag of a partition = log end offset (ListOffsets latest, at the leader) −
//! committed offset (OffsetFetch, at the coordinator). Offsets are reset the
//! way `kafka-consumer-groups` does it: only while the group has no members,
//! by an OffsetCommit with generation -1 and an empty member id.

use crate::Ctx;
use crate::client::{Client, check, group_id, s, topic_name};
use crate::output::{Format, Table, opt, print_json};
use anyhow::{Context, Result, anyhow, bail};
use bytes::{Buf, Bytes};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

#[derive(clap::Subcommand)]
pub enum GroupsCommand {
    /// List groups with their state.
    List,
    /// Describe a group: offsets and lag per partition (default), members, or state.
    Describe {
        #[arg(long)]
        group: String,
        /// Show members instead of offsets.
        #[arg(long)]
        members: bool,
        /// With --members: the partitions assigned to each member.
        #[arg(long)]
        verbose: bool,
        /// Show the group's state, coordinator and assignment strategy.
        #[arg(long)]
        state: bool,
    },
    /// Delete a group with no members (its committed offsets go with it).
    Delete {
        #[arg(long)]
        group: String,
    },
    /// Reset the committed offsets of a group that has no members.
    ResetOffsets(ResetArgs),
}

#[derive(clap::Args)]
pub struct ResetArgs {
    #[arg(long)]
    group: String,
    /// Topic to reset, optionally with partitions: `topic` or `topic:0,2`; repeatable.
    #[arg(long = "topic")]
    topics: Vec<String>,
    /// Reset every topic the group has committed offsets for.
    #[arg(long)]
    all_topics: bool,
    /// To the earliest offset still in the log.
    #[arg(long, group = "to")]
    to_earliest: bool,
    /// To the log end offset.
    #[arg(long, group = "to")]
    to_latest: bool,
    /// To the first offset at or after a time: `YYYY-MM-DDTHH:mm:SS[.sss][Z|±hh:mm]`
    /// (UTC when no zone is given) or milliseconds since the epoch.
    #[arg(long, group = "to", value_name = "DATETIME")]
    to_datetime: Option<String>,
    /// Move each committed offset by N (negative: back), kept within the log.
    #[arg(long, group = "to", allow_hyphen_values = true, value_name = "N")]
    shift_by: Option<i64>,
    /// To this offset, kept within the log.
    #[arg(long, group = "to", value_name = "OFFSET")]
    to_offset: Option<i64>,
    /// Offsets from a CSV file of `topic,partition,offset` lines.
    #[arg(long, group = "to", value_name = "FILE")]
    from_file: Option<std::path::PathBuf>,
    /// Print the new offsets only (the default).
    #[arg(long, conflicts_with = "execute")]
    dry_run: bool,
    /// Commit the new offsets.
    #[arg(long)]
    execute: bool,
}

pub fn run(ctx: &Ctx, cmd: GroupsCommand) -> Result<()> {
    let mut client = Client::connect(&ctx.bootstrap)?;
    match cmd {
        GroupsCommand::List => list(ctx, &mut client),
        GroupsCommand::Describe { group, members, verbose, state } => {
            if state {
                describe_state(ctx, &mut client, &group)
            } else if members {
                describe_members(ctx, &mut client, &group, verbose)
            } else {
                describe_offsets(ctx, &mut client, &group)
            }
        }
        GroupsCommand::Delete { group } => delete(ctx, &mut client, &group),
        GroupsCommand::ResetOffsets(args) => reset_offsets(ctx, &mut client, args),
    }
}

fn list(ctx: &Ctx, client: &mut Client) -> Result<()> {
    let v = client.version::<ListGroupsRequest>(4)?;
    let mut groups = BTreeMap::new();
    let nodes: Vec<i32> = client.brokers.keys().copied().collect();
    for node in nodes {
        let resp = client.call_node(node, &ListGroupsRequest::default(), v)?;
        check(resp.error_code, None, &format!("listing groups at broker {node}"))?;
        for g in resp.groups {
            let state = if v >= 4 { g.group_state.to_string() } else { String::new() };
            groups.insert(g.group_id.0.to_string(), (state, g.protocol_type.to_string()));
        }
    }
    match ctx.output {
        Format::Json => print_json(&json!(
            groups
                .iter()
                .map(|(g, (state, ptype))| json!({
                    "group": g, "state": state, "protocol_type": ptype
                }))
                .collect::<Vec<_>>()
        )),
        Format::Table => {
            let mut t = Table::new(&["GROUP", "STATE", "PROTOCOL-TYPE"]);
            for (g, (state, ptype)) in groups {
                t.row(vec![g, state, ptype]);
            }
            print!("{}", t.render());
        }
    }
    Ok(())
}

/// A group as DescribeGroups reports it, with decoded assignments.
pub struct GroupInfo {
    pub state: String,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<Member>,
    pub coordinator: i32,
}

pub struct Member {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub host: String,
    /// topic → partitions (empty when the assignment is not a consumer one).
    pub assignment: BTreeMap<String, Vec<i32>>,
}

fn decode_assignment(bytes: &Bytes) -> BTreeMap<String, Vec<i32>> {
    let mut out = BTreeMap::new();
    if bytes.len() < 2 {
        return out;
    }
    let mut buf = bytes.clone();
    let version = buf.get_i16().clamp(0, 3);
    if let Ok(a) = ConsumerProtocolAssignment::decode(&mut buf, version) {
        for tp in a.assigned_partitions {
            let mut ps = tp.partitions;
            ps.sort();
            out.insert(tp.topic.0.to_string(), ps);
        }
    }
    out
}

pub fn describe_group(client: &mut Client, group: &str) -> Result<GroupInfo> {
    let v = client.version::<DescribeGroupsRequest>(5)?;
    let req = DescribeGroupsRequest::default().with_groups(vec![group_id(group)]);
    let resp =
        client.group_call(group, &req, v, |r| r.groups.first().map_or(0, |g| g.error_code))?;
    let g =
        resp.groups.into_iter().next().ok_or_else(|| anyhow!("empty DescribeGroups response"))?;
    check(g.error_code, g.error_message.as_ref(), &format!("describing group {group}"))?;
    let coordinator = client.coordinator(group)?;
    Ok(GroupInfo {
        state: g.group_state.to_string(),
        protocol_type: g.protocol_type.to_string(),
        protocol: g.protocol_data.to_string(),
        coordinator,
        members: g
            .members
            .into_iter()
            .map(|m| Member {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.map(|i| i.to_string()),
                client_id: m.client_id.to_string(),
                host: m.client_host.to_string(),
                assignment: decode_assignment(&m.member_assignment),
            })
            .collect(),
    })
}

/// Committed offsets of `group`: (topic, partition) → offset (all topics).
pub fn committed(client: &mut Client, group: &str) -> Result<BTreeMap<(String, i32), i64>> {
    let v = client.version::<OffsetFetchRequest>(7)?;
    // Null topics means every topic the group has offsets for (v2+).
    let req = OffsetFetchRequest::default().with_group_id(group_id(group)).with_topics(None);
    let resp = client.group_call(group, &req, v, |r| r.error_code)?;
    check(resp.error_code, None, &format!("fetching offsets of group {group}"))?;
    let mut out = BTreeMap::new();
    for t in resp.topics {
        for p in t.partitions {
            let what = format!("offset of {}-{} for group {group}", t.name.0, p.partition_index);
            check(p.error_code, None, &what)?;
            if p.committed_offset >= 0 {
                out.insert((t.name.0.to_string(), p.partition_index), p.committed_offset);
            }
        }
    }
    Ok(out)
}

fn describe_offsets(ctx: &Ctx, client: &mut Client, group: &str) -> Result<()> {
    let info = describe_group(client, group)?;
    let committed = committed(client, group)?;
    // Partitions to show: committed ones and assigned ones.
    let mut owner: BTreeMap<(String, i32), &Member> = BTreeMap::new();
    for m in &info.members {
        for (t, ps) in &m.assignment {
            for p in ps {
                owner.insert((t.clone(), *p), m);
            }
        }
    }
    let parts: BTreeSet<(String, i32)> =
        committed.keys().cloned().chain(owner.keys().cloned()).collect();
    if parts.is_empty() && info.state == "Dead" {
        bail!("group {group} does not exist (no members and no committed offsets)");
    }
    let parts: Vec<_> = parts.into_iter().collect();
    let ends = client.list_offsets(&parts, -1)?;
    let mut rows = Vec::new();
    for tp in &parts {
        let current = committed.get(tp).copied();
        let end = ends.get(tp).copied();
        let lag = match (current, end) {
            (Some(c), Some(e)) => Some((e - c).max(0)),
            _ => None,
        };
        rows.push((tp, current, end, lag, owner.get(tp)));
    }
    match ctx.output {
        Format::Json => print_json(&json!({
            "group": group,
            "state": info.state,
            "partitions": rows.iter().map(|(tp, current, end, lag, m)| json!({
                "topic": tp.0,
                "partition": tp.1,
                "current_offset": current,
                "log_end_offset": end,
                "lag": lag,
                "consumer_id": m.map(|m| m.member_id.clone()),
                "host": m.map(|m| m.host.clone()),
                "client_id": m.map(|m| m.client_id.clone()),
            })).collect::<Vec<_>>(),
        })),
        Format::Table => {
            if info.members.is_empty() {
                println!("Consumer group '{group}' has no active members.\n");
            }
            let mut t = Table::new(&[
                "GROUP",
                "TOPIC",
                "PARTITION",
                "CURRENT-OFFSET",
                "LOG-END-OFFSET",
                "LAG",
                "CONSUMER-ID",
                "HOST",
                "CLIENT-ID",
            ]);
            for (tp, current, end, lag, m) in rows {
                t.row(vec![
                    group.to_string(),
                    tp.0.clone(),
                    tp.1.to_string(),
                    opt(current),
                    opt(end),
                    opt(lag),
                    opt(m.map(|m| m.member_id.clone())),
                    opt(m.map(|m| m.host.clone())),
                    opt(m.map(|m| m.client_id.clone())),
                ]);
            }
            print!("{}", t.render());
        }
    }
    Ok(())
}

fn assignment_text(a: &BTreeMap<String, Vec<i32>>) -> String {
    if a.is_empty() {
        return "-".into();
    }
    a.iter()
        .map(|(t, ps)| {
            format!("{t}({})", ps.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(","))
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn describe_members(ctx: &Ctx, client: &mut Client, group: &str, verbose: bool) -> Result<()> {
    let info = describe_group(client, group)?;
    match ctx.output {
        Format::Json => print_json(&json!({
            "group": group,
            "state": info.state,
            "members": info.members.iter().map(|m| json!({
                "consumer_id": m.member_id,
                "group_instance_id": m.group_instance_id,
                "host": m.host,
                "client_id": m.client_id,
                "partitions": m.assignment.values().map(Vec::len).sum::<usize>(),
                "assignment": m.assignment,
            })).collect::<Vec<_>>(),
        })),
        Format::Table => {
            if info.members.is_empty() {
                println!("Consumer group '{group}' has no active members.");
                return Ok(());
            }
            let mut headers = vec!["GROUP", "CONSUMER-ID", "HOST", "CLIENT-ID", "#PARTITIONS"];
            if verbose {
                headers.push("ASSIGNMENT");
            }
            let mut t = Table::new(&headers);
            for m in &info.members {
                let mut row = vec![
                    group.to_string(),
                    m.member_id.clone(),
                    m.host.clone(),
                    m.client_id.clone(),
                    m.assignment.values().map(Vec::len).sum::<usize>().to_string(),
                ];
                if verbose {
                    row.push(assignment_text(&m.assignment));
                }
                t.row(row);
            }
            print!("{}", t.render());
        }
    }
    Ok(())
}

fn describe_state(ctx: &Ctx, client: &mut Client, group: &str) -> Result<()> {
    let info = describe_group(client, group)?;
    let coordinator = client
        .brokers
        .get(&info.coordinator)
        .map(|b| format!("{} ({})", b.addr(), b.id))
        .unwrap_or_else(|| format!("({})", info.coordinator));
    match ctx.output {
        Format::Json => print_json(&json!({
            "group": group,
            "coordinator": info.coordinator,
            "assignment_strategy": info.protocol,
            "protocol_type": info.protocol_type,
            "state": info.state,
            "members": info.members.len(),
        })),
        Format::Table => {
            let mut t = Table::new(&[
                "GROUP",
                "COORDINATOR (ID)",
                "ASSIGNMENT-STRATEGY",
                "STATE",
                "#MEMBERS",
            ]);
            t.row(vec![
                group.to_string(),
                coordinator,
                info.protocol.clone(),
                info.state.clone(),
                info.members.len().to_string(),
            ]);
            print!("{}", t.render());
        }
    }
    Ok(())
}

fn delete(ctx: &Ctx, client: &mut Client, group: &str) -> Result<()> {
    let v = client.version::<DeleteGroupsRequest>(2)?;
    let req = DeleteGroupsRequest::default().with_groups_names(vec![group_id(group)]);
    let resp =
        client.group_call(group, &req, v, |r| r.results.first().map_or(0, |g| g.error_code))?;
    for r in resp.results {
        check(r.error_code, None, &format!("deleting group {group}")).map_err(|e| {
            if r.error_code == 68 {
                anyhow!("{e}\nhint: stop the group's consumers first")
            } else {
                e
            }
        })?;
    }
    match ctx.output {
        Format::Json => print_json(&json!({ "group": group, "deleted": true })),
        Format::Table => {
            println!("Deletion of requested consumer groups ('{group}') was successful.")
        }
    }
    Ok(())
}

/// Parses `topic` or `topic:0,1,2`.
fn parse_topic_spec(spec: &str) -> Result<(String, Option<Vec<i32>>)> {
    match spec.split_once(':') {
        None => Ok((spec.to_string(), None)),
        Some((t, ps)) => {
            let ps = ps
                .split(',')
                .map(|p| {
                    p.trim().parse::<i32>().with_context(|| format!("bad partition in {spec:?}"))
                })
                .collect::<Result<Vec<_>>>()?;
            Ok((t.to_string(), Some(ps)))
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Parses `YYYY-MM-DDTHH:mm:SS[.sss][Z|±hh:mm]` (UTC without a zone) or
/// milliseconds since the epoch, into milliseconds since the epoch.
pub fn parse_datetime(text: &str) -> Result<i64> {
    let bad = || {
        anyhow!(
            "bad datetime {text:?}: use YYYY-MM-DDTHH:mm:SS[.sss][Z|+hh:mm] or epoch milliseconds"
        )
    };
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let (date, rest) = text.split_once('T').ok_or_else(bad)?;
    let (time, offset_min) = if let Some(t) = rest.strip_suffix('Z') {
        (t, 0)
    } else if let Some(i) = rest.rfind(['+', '-']) {
        let (t, z) = rest.split_at(i);
        let sign = if z.starts_with('-') { -1 } else { 1 };
        let (h, m) = z[1..].split_once(':').unwrap_or((&z[1..], "0"));
        let h: i64 = h.parse().map_err(|_| bad())?;
        let m: i64 = m.parse().map_err(|_| bad())?;
        (t, sign * (h * 60 + m))
    } else {
        (rest, 0)
    };
    let d: Vec<i64> =
        date.split('-').map(|x| x.parse()).collect::<Result<_, _>>().map_err(|_| bad())?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> =
        hms.split(':').map(|x| x.parse()).collect::<Result<_, _>>().map_err(|_| bad())?;
    if d.len() != 3 || t.len() != 3 || !(1..=12).contains(&d[1]) || !(1..=31).contains(&d[2]) {
        return Err(bad());
    }
    if t[0] > 23 || t[1] > 59 || t[2] > 60 || frac.is_empty() || frac.len() > 9 {
        return Err(bad());
    }
    let frac_ms: i64 = format!("{frac:0<3}")[..3].parse().map_err(|_| bad())?;
    let days = days_from_civil(d[0], d[1], d[2]);
    let secs = days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2] - offset_min * 60;
    Ok(secs * 1000 + frac_ms)
}

fn reset_offsets(ctx: &Ctx, client: &mut Client, a: ResetArgs) -> Result<()> {
    let group = a.group.as_str();
    let info = describe_group(client, group)?;
    if !matches!(info.state.as_str(), "Empty" | "Dead") {
        bail!(
            "group {group} is {} with {} member(s); offsets can only be reset while it has none\n\
             hint: stop the group's consumers, then retry",
            info.state,
            info.members.len()
        );
    }
    let committed = committed(client, group)?;
    let from_file = match &a.from_file {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let mut plan = BTreeMap::new();
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let f: Vec<&str> = line.split(',').map(str::trim).collect();
                let parsed = match f.as_slice() {
                    [t, p, o] => p.parse::<i32>().ok().zip(o.parse::<i64>().ok()).map(|x| (t, x)),
                    _ => None,
                };
                let (t, (p, o)) = parsed.ok_or_else(|| {
                    anyhow!("{}:{}: expected topic,partition,offset", path.display(), i + 1)
                })?;
                plan.insert((t.to_string(), p), o);
            }
            Some(plan)
        }
    };
    // Which partitions.
    let mut parts: Vec<(String, i32)> = Vec::new();
    if let Some(plan) = &from_file {
        parts.extend(plan.keys().cloned());
    } else if a.all_topics {
        if !a.topics.is_empty() {
            bail!("give either --all-topics or --topic, not both");
        }
        parts.extend(committed.keys().cloned());
    } else if a.topics.is_empty() {
        bail!("choose a scope: --topic TOPIC[:PARTITIONS] or --all-topics");
    } else {
        for spec in &a.topics {
            let (topic, ps) = parse_topic_spec(spec)?;
            let leaders = client.leaders(&topic)?;
            match ps {
                None => parts.extend(leaders.keys().map(|p| (topic.clone(), *p))),
                Some(ps) => {
                    for p in ps {
                        if !leaders.contains_key(&p) {
                            bail!("topic {topic} has no partition {p}");
                        }
                        parts.push((topic.clone(), p));
                    }
                }
            }
        }
    }
    parts.sort();
    parts.dedup();
    if parts.is_empty() {
        bail!("no partitions to reset (the group has no committed offsets?)");
    }
    let earliest = client.list_offsets(&parts, -2)?;
    let latest = client.list_offsets(&parts, -1)?;
    let by_time = match &a.to_datetime {
        Some(text) => Some(client.list_offsets(&parts, parse_datetime(text)?)?),
        None => None,
    };
    let mut plan = BTreeMap::new();
    for tp in &parts {
        let (lo, hi) = (earliest[tp], latest[tp]);
        let clamp = |o: i64| o.clamp(lo, hi);
        let target = if a.to_earliest {
            lo
        } else if a.to_latest {
            hi
        } else if let Some(t) = &by_time {
            // No record at or after the time: the end of the log.
            if t[tp] < 0 { hi } else { t[tp] }
        } else if let Some(n) = a.shift_by {
            let current = committed.get(tp).copied().ok_or_else(|| {
                anyhow!("--shift-by: group {group} has no committed offset for {}-{}", tp.0, tp.1)
            })?;
            clamp(current.saturating_add(n))
        } else if let Some(o) = a.to_offset {
            clamp(o)
        } else if let Some(f) = &from_file {
            clamp(f[tp])
        } else {
            bail!(
                "choose where to: --to-earliest, --to-latest, --to-datetime, --shift-by, \
                 --to-offset or --from-file"
            );
        };
        plan.insert(tp.clone(), target);
    }
    if a.execute {
        let v = client.version::<OffsetCommitRequest>(9)?;
        let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for ((t, p), o) in &plan {
            topics.entry(t).or_default().push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(*p)
                    .with_committed_offset(*o)
                    .with_committed_leader_epoch(-1)
                    .with_committed_metadata(Some(s(""))),
            );
        }
        let mut req = OffsetCommitRequest::default()
            .with_group_id(group_id(group))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(s(""))
            .with_topics(
                topics
                    .into_iter()
                    .map(|(t, ps)| {
                        OffsetCommitRequestTopic::default()
                            .with_name(topic_name(t))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
        if (2..=4).contains(&v) {
            req.retention_time_ms = -1;
        }
        let resp = client.group_call(group, &req, v, |r| {
            r.topics.first().and_then(|t| t.partitions.first()).map_or(0, |p| p.error_code)
        })?;
        for t in resp.topics {
            for p in t.partitions {
                let what =
                    format!("committing {}-{} for group {group}", t.name.0, p.partition_index);
                check(p.error_code, None, &what)?;
            }
        }
    }
    match ctx.output {
        Format::Json => print_json(&json!({
            "group": group,
            "executed": a.execute,
            "partitions": plan.iter().map(|((t, p), o)| json!({
                "topic": t,
                "partition": p,
                "previous_offset": committed.get(&(t.clone(), *p)),
                "new_offset": o,
            })).collect::<Vec<_>>(),
        })),
        Format::Table => {
            if !a.execute && !a.dry_run {
                eprintln!(
                    "WARN: no action given: a dry run (use --execute to commit the new offsets)"
                );
            }
            let mut t =
                Table::new(&["GROUP", "TOPIC", "PARTITION", "PREVIOUS-OFFSET", "NEW-OFFSET"]);
            for ((topic, p), o) in &plan {
                t.row(vec![
                    group.to_string(),
                    topic.clone(),
                    p.to_string(),
                    opt(committed.get(&(topic.clone(), *p))),
                    o.to_string(),
                ]);
            }
            print!("{}", t.render());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_parse_like_kafka_consumer_groups() {
        assert_eq!(parse_datetime("1970-01-01T00:00:00.000").unwrap(), 0);
        assert_eq!(parse_datetime("2024-02-29T12:00:00Z").unwrap(), 1_709_208_000_000);
        assert_eq!(parse_datetime("2024-02-29T13:30:00.5+01:30").unwrap(), 1_709_208_000_500);
        assert_eq!(parse_datetime("1709208000000").unwrap(), 1_709_208_000_000);
        assert!(parse_datetime("2024-13-01T00:00:00").is_err());
        assert!(parse_datetime("yesterday").is_err());
    }

    #[test]
    fn topic_specs_parse() {
        assert_eq!(parse_topic_spec("t").unwrap(), ("t".into(), None));
        assert_eq!(parse_topic_spec("t:0,2").unwrap(), ("t".into(), Some(vec![0, 2])));
        assert!(parse_topic_spec("t:x").is_err());
    }
}
