//! `weir produce` and `weir consume`: console producer and consumer.
//!
//! The producer reads stdin lines, optionally splits a key off each, and
//! sends uncompressed v2 batches to the partition leaders. The consumer
//! fetches from the leaders and prints one record per line; with `--group`
//! it starts from the group's committed offsets and commits what it printed
//! (a standalone commit: generation -1, no group membership).

use crate::Ctx;
use crate::client::{Client, check, group_id, s, topic_name};
use crate::output::Format;
use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use weir_proto::batch::{self, build};

/// Records per produced batch and request.
const PRODUCE_BATCH_RECORDS_MAX: usize = 1000;
/// Bytes of record values per produced batch before it is sent.
const PRODUCE_BATCH_BYTES_MAX: usize = 512 << 10;
/// Longest line accepted from stdin.
const LINE_BYTES_MAX: usize = 8 << 20;
/// Fetch sizes.
const FETCH_BYTES_MAX: i32 = 16 << 20;
const FETCH_PARTITION_BYTES_MAX: i32 = 4 << 20;
const FETCH_WAIT_MS_MAX: i32 = 500;

#[derive(clap::Args)]
pub struct ProduceArgs {
    #[arg(long)]
    topic: String,
    /// Send every record to this partition (default: by key hash, or
    /// round-robin per batch for records without a key).
    #[arg(long)]
    partition: Option<i32>,
    /// Split each line at the first SEP into key and value.
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    /// Acknowledgements: all (-1) or 1.
    #[arg(long, default_value = "all")]
    acks: String,
}

#[derive(clap::Args)]
pub struct ConsumeArgs {
    #[arg(long)]
    topic: String,
    /// Only this partition (default: all).
    #[arg(long)]
    partition: Option<i32>,
    /// Start at the earliest offset (default: the log end, only new records).
    #[arg(long)]
    from_beginning: bool,
    /// Start at this offset (needs --partition).
    #[arg(long, requires = "partition")]
    offset: Option<i64>,
    /// Stop after this many records.
    #[arg(long)]
    max_messages: Option<u64>,
    /// Stop when no record arrived for this long.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Start from this group's committed offsets and commit what was printed.
    #[arg(long)]
    group: Option<String>,
    /// Print the key before the value.
    #[arg(long)]
    print_key: bool,
    /// Print partition and offset before each record.
    #[arg(long)]
    print_offset: bool,
    /// Separator after the key (and offset) when printed.
    #[arg(long, default_value = "\t")]
    key_separator: String,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Kafka's murmur2, as the Java producer uses for keyed partitioning.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    match tail.len() {
        3 => {
            h ^= (tail[2] as u32) << 16;
            h ^= (tail[1] as u32) << 8;
            h ^= tail[0] as u32;
            h = h.wrapping_mul(M);
        }
        2 => {
            h ^= (tail[1] as u32) << 8;
            h ^= tail[0] as u32;
            h = h.wrapping_mul(M);
        }
        1 => {
            h ^= tail[0] as u32;
            h = h.wrapping_mul(M);
        }
        _ => {}
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Partition of a keyed record among `count`, as the Java producer picks it.
pub fn partition_for_key(key: &[u8], count: usize) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) as usize % count.max(1)) as i32
}

/// A record read from stdin: (key, value).
type Line = (Option<Vec<u8>>, Vec<u8>);

struct Pending {
    /// partition → records.
    records: BTreeMap<i32, Vec<Line>>,
    count: usize,
    bytes: usize,
}

pub fn produce(ctx: &Ctx, a: ProduceArgs) -> Result<()> {
    let acks: i16 = match a.acks.as_str() {
        "all" | "-1" => -1,
        "1" => 1,
        other => bail!("--acks {other:?}: use all or 1"),
    };
    if a.key_separator.as_deref() == Some("") {
        bail!("--key-separator must not be empty");
    }
    let mut client = Client::connect(&ctx.bootstrap)?;
    let leaders = client.leaders(&a.topic)?;
    if let Some(p) = a.partition
        && !leaders.contains_key(&p)
    {
        bail!("topic {} has no partition {p} (it has {})", a.topic, leaders.len());
    }
    let v = client.version::<ProduceRequest>(12)?;
    let mut pending = Pending { records: BTreeMap::new(), count: 0, bytes: 0 };
    let mut round_robin = 0usize;
    let mut sent = 0u64;
    let mut offsets: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = input
            .by_ref()
            .take(LINE_BYTES_MAX as u64 + 1)
            .read_until(b'\n', &mut line)
            .context("reading stdin")?;
        if n == 0 {
            break;
        }
        if line.len() > LINE_BYTES_MAX {
            bail!("a line of stdin is longer than {LINE_BYTES_MAX} bytes");
        }
        if line.ends_with(b"\n") {
            line.pop();
            if line.ends_with(b"\r") {
                line.pop();
            }
        }
        let (key, value) = match &a.key_separator {
            Some(sep) => match find(&line, sep.as_bytes()) {
                Some(i) => (Some(line[..i].to_vec()), line[i + sep.len()..].to_vec()),
                None => {
                    bail!("line {:?} has no key separator {sep:?}", String::from_utf8_lossy(&line))
                }
            },
            None => (None, line.clone()),
        };
        let partition = match (a.partition, &key) {
            (Some(p), _) => p,
            (None, Some(k)) => partition_for_key(k, leaders.len()),
            (None, None) => (round_robin % leaders.len().max(1)) as i32,
        };
        pending.bytes += value.len() + key.as_ref().map_or(0, Vec::len);
        pending.count += 1;
        pending.records.entry(partition).or_default().push((key, value));
        if pending.count >= PRODUCE_BATCH_RECORDS_MAX || pending.bytes >= PRODUCE_BATCH_BYTES_MAX {
            sent += flush(&mut client, &a.topic, &leaders, v, acks, &mut pending, &mut offsets)?;
            round_robin += 1;
        }
    }
    sent += flush(&mut client, &a.topic, &leaders, v, acks, &mut pending, &mut offsets)?;
    match ctx.output {
        Format::Json => crate::output::print_json(&json!({
            "topic": a.topic,
            "records": sent,
            "partitions": offsets.iter().map(|(p, (first, last))| json!({
                "partition": p, "first_offset": first, "last_offset": last,
            })).collect::<Vec<_>>(),
        })),
        Format::Table => eprintln!("produced {sent} records to {}", a.topic),
    }
    Ok(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn flush(
    client: &mut Client,
    topic: &str,
    leaders: &BTreeMap<i32, i32>,
    v: i16,
    acks: i16,
    pending: &mut Pending,
    offsets: &mut BTreeMap<i32, (i64, i64)>,
) -> Result<u64> {
    let records = std::mem::take(&mut pending.records);
    pending.count = 0;
    pending.bytes = 0;
    let mut by_leader: BTreeMap<i32, Vec<(i32, usize, Bytes)>> = BTreeMap::new();
    let base_ts = now_ms();
    let mut sent = 0u64;
    for (p, recs) in &records {
        let built: Vec<build::Record<'_>> = recs
            .iter()
            .map(|(k, val)| build::Record {
                key: k.as_deref(),
                value: Some(val),
                timestamp_delta: 0,
            })
            .collect();
        let bytes = build::batch(&built, base_ts, build::Producer::default());
        let leader = leaders.get(p).copied().filter(|l| *l >= 0);
        let leader =
            leader.ok_or_else(|| anyhow!("partition {topic}-{p} has no leader right now"))?;
        by_leader.entry(leader).or_default().push((*p, recs.len(), Bytes::from(bytes)));
    }
    for (leader, parts) in by_leader {
        let counts: BTreeMap<i32, usize> = parts.iter().map(|(p, n, _)| (*p, *n)).collect();
        let req = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![
                TopicProduceData::default().with_name(topic_name(topic)).with_partition_data(
                    parts
                        .into_iter()
                        .map(|(p, _, b)| {
                            PartitionProduceData::default().with_index(p).with_records(Some(b))
                        })
                        .collect(),
                ),
            ]);
        let resp = client.call_node(leader, &req, v)?;
        for t in resp.responses {
            for p in t.partition_responses {
                let what = format!("producing to {topic}-{}", p.index);
                check(p.error_code, p.error_message.as_ref(), &what)?;
                let n = counts.get(&p.index).copied().unwrap_or(0) as i64;
                let e = offsets.entry(p.index).or_insert((p.base_offset, p.base_offset));
                e.1 = p.base_offset + n - 1;
                sent += n as u64;
            }
        }
    }
    Ok(sent)
}

pub fn consume(ctx: &Ctx, a: ConsumeArgs) -> Result<()> {
    let mut client = Client::connect(&ctx.bootstrap)?;
    let leaders = client.leaders(&a.topic)?;
    let parts: Vec<i32> = match a.partition {
        Some(p) if leaders.contains_key(&p) => vec![p],
        Some(p) => bail!("topic {} has no partition {p}", a.topic),
        None => leaders.keys().copied().collect(),
    };
    let tps: Vec<(String, i32)> = parts.iter().map(|p| (a.topic.clone(), *p)).collect();
    let start_default = client.list_offsets(&tps, if a.from_beginning { -2 } else { -1 })?;
    let committed = match &a.group {
        Some(g) => crate::groups::committed(&mut client, g)?,
        None => BTreeMap::new(),
    };
    let mut position: BTreeMap<i32, i64> = BTreeMap::new();
    for tp in &tps {
        let start = match (a.offset, committed.get(tp)) {
            (Some(o), _) => o,
            (None, Some(c)) => *c,
            (None, None) => start_default[tp],
        };
        position.insert(tp.1, start);
    }
    let v = client.version::<FetchRequest>(12)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut printed = 0u64;
    let mut last_record = Instant::now();
    'outer: loop {
        if a.max_messages.is_some_and(|m| printed >= m) {
            break;
        }
        if a.timeout_ms.is_some_and(|t| last_record.elapsed() >= Duration::from_millis(t)) {
            break;
        }
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for p in &parts {
            let leader = leaders.get(p).copied().unwrap_or(-1);
            if leader < 0 {
                bail!("partition {}-{p} has no leader right now", a.topic);
            }
            by_leader.entry(leader).or_default().push(*p);
        }
        let wait_ms = match a.timeout_ms {
            Some(t) => (t as i32).clamp(1, FETCH_WAIT_MS_MAX),
            None => FETCH_WAIT_MS_MAX,
        };
        let mut got_any = false;
        for (leader, ps) in by_leader {
            let req = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(wait_ms)
                .with_min_bytes(1)
                .with_max_bytes(FETCH_BYTES_MAX)
                .with_isolation_level(0)
                .with_session_epoch(-1)
                .with_topics(vec![
                    FetchTopic::default().with_topic(topic_name(&a.topic)).with_partitions(
                        ps.iter()
                            .map(|p| {
                                FetchPartition::default()
                                    .with_partition(*p)
                                    .with_current_leader_epoch(-1)
                                    .with_fetch_offset(position[p])
                                    .with_log_start_offset(-1)
                                    .with_partition_max_bytes(FETCH_PARTITION_BYTES_MAX)
                            })
                            .collect(),
                    ),
                ]);
            let resp = client.call_node(leader, &req, v)?;
            check(resp.error_code, None, "Fetch")?;
            for t in resp.responses {
                for pd in t.partitions {
                    let p = pd.partition_index;
                    let what = format!("fetching {}-{p} at offset {}", a.topic, position[&p]);
                    check(pd.error_code, None, &what).map_err(|e| {
                        if pd.error_code == 1 {
                            anyhow!(
                                "{e}\nhint: the offset is outside the log; try --from-beginning"
                            )
                        } else {
                            e
                        }
                    })?;
                    let Some(records) = pd.records else { continue };
                    for item in batch::BatchIter::new(&records) {
                        let (h, range) = match item {
                            Ok(x) => x,
                            // A fetch may end with a partial batch.
                            Err(batch::BatchError::Truncated { .. }) => break,
                            Err(e) => bail!("{}-{p}: bad batch in fetch response: {e}", a.topic),
                        };
                        let next = h.last_offset().0 + 1;
                        if h.is_control() {
                            position.insert(p, next.max(position[&p]));
                            continue;
                        }
                        let recs = batch::records(&records[range]).map_err(|e| {
                            anyhow!(
                                "{}-{p}: cannot read batch at offset {}: {e}",
                                a.topic,
                                h.base_offset.0
                            )
                        })?;
                        for r in recs {
                            let offset = h.base_offset.0 + r.offset_delta as i64;
                            if offset < position[&p] {
                                continue;
                            }
                            print_record(
                                &mut out,
                                ctx,
                                &a,
                                p,
                                offset,
                                h.base_timestamp + r.timestamp_delta,
                                r.key,
                                r.value,
                            )?;
                            position.insert(p, offset + 1);
                            printed += 1;
                            got_any = true;
                            if a.max_messages.is_some_and(|m| printed >= m) {
                                break 'outer;
                            }
                        }
                        position.insert(p, next.max(position[&p]));
                    }
                }
            }
        }
        if got_any {
            last_record = Instant::now();
        }
    }
    out.flush()?;
    if let Some(g) = &a.group {
        commit(&mut client, g, &a.topic, &position)?;
    }
    eprintln!("consumed {printed} records");
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn print_record(
    out: &mut impl Write,
    ctx: &Ctx,
    a: &ConsumeArgs,
    partition: i32,
    offset: i64,
    timestamp_ms: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Result<()> {
    let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
    match ctx.output {
        Format::Json => writeln!(
            out,
            "{}",
            json!({
                "partition": partition,
                "offset": offset,
                "timestamp_ms": timestamp_ms,
                "key": text(key),
                "value": text(value),
            })
        )?,
        Format::Table => {
            let sep = &a.key_separator;
            if a.print_offset {
                write!(out, "{partition}:{offset}{sep}")?;
            }
            if a.print_key {
                write!(out, "{}{sep}", text(key).unwrap_or_else(|| "null".into()))?;
            }
            writeln!(out, "{}", text(value).unwrap_or_else(|| "null".into()))?;
        }
    }
    Ok(())
}

fn commit(
    client: &mut Client,
    group: &str,
    topic: &str,
    position: &BTreeMap<i32, i64>,
) -> Result<()> {
    let v = client.version::<OffsetCommitRequest>(9)?;
    let req = OffsetCommitRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(s(""))
        .with_topics(vec![
            OffsetCommitRequestTopic::default().with_name(topic_name(topic)).with_partitions(
                position
                    .iter()
                    .map(|(p, o)| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(*p)
                            .with_committed_offset(*o)
                            .with_committed_leader_epoch(-1)
                            .with_committed_metadata(Some(s("")))
                    })
                    .collect(),
            ),
        ]);
    let resp = client.group_call(group, &req, v, |r| {
        r.topics.first().and_then(|t| t.partitions.first()).map_or(0, |p| p.error_code)
    })?;
    for t in resp.topics {
        for p in t.partitions {
            let what = format!("committing {}-{} for group {group}", t.name.0, p.partition_index);
            check(p.error_code, None, &what).map_err(|e| {
                if p.error_code == 25 || p.error_code == 22 {
                    anyhow!("{e}\nhint: the group has active members; --group commits only for an idle group")
                } else {
                    e
                }
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Values from Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"), -58897971);
        assert_eq!(murmur2(b"abc"), 479470107);
    }
}
