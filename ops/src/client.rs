//! A small synchronous Kafka client for the operator tools: one blocking TCP
//! connection per broker, codecs from the `kafka-protocol` crate.
//!
//! It speaks only the Kafka protocol, so every `weir` subcommand that uses it
//! also works against other Kafka-compatible brokers. Versions are negotiated
//! with ApiVersions: per API the highest version both the broker and this
//! tool handle. Per-partition work goes to the partition's leader and group
//! work to the group's coordinator.
//!
//! ```text
//!   Client ── bootstrap Conn ── ApiVersions, Metadata (brokers, leaders)
//!          └─ Conn per node id ── Produce/Fetch/ListOffsets (leader),
//!                                 group APIs (coordinator)
//! ```

use anyhow::{Context, Result, anyhow, bail};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Message, Request, StrBytes};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Largest response frame accepted: a length prefix beyond this is a broken
/// or foreign peer, not a Kafka broker.
const RESPONSE_BYTES_MAX: usize = 256 << 20;
/// How long to wait for a TCP connection.
const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// How long to wait for a response (fetches wait at most a few seconds).
const READ_TIMEOUT_MS: u64 = 30_000;
/// Attempts for a retriable group error (coordinator loading or moved).
const GROUP_ATTEMPTS_MAX: u32 = 20;
/// Pause between those attempts.
const GROUP_RETRY_BACKOFF_MS: u64 = 250;

pub fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

pub fn topic_name(v: impl Into<String>) -> TopicName {
    TopicName(s(v))
}

pub fn group_id(v: impl Into<String>) -> GroupId {
    GroupId(s(v))
}

/// Name of a Kafka error code, e.g. `UNKNOWN_TOPIC_OR_PARTITION (3)`.
pub fn error_name(code: i16) -> String {
    match kafka_protocol::error::ResponseError::try_from_code(code) {
        None => "NONE (0)".into(),
        Some(e) => format!("{} ({code})", screaming(&format!("{e:?}"))),
    }
}

/// `CoordinatorLoadInProgress` → `COORDINATOR_LOAD_IN_PROGRESS`.
fn screaming(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// An error code with the broker's message, if any, as an error.
pub fn check(code: i16, message: Option<&StrBytes>, what: &str) -> Result<()> {
    if code == 0 {
        return Ok(());
    }
    match message.map(|m| m.to_string()).filter(|m| !m.is_empty()) {
        Some(m) => bail!("{what}: {}: {m}", error_name(code)),
        None => bail!("{what}: {}", error_name(code)),
    }
}

pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
pub const NOT_COORDINATOR: i16 = 16;

fn group_retriable(code: i16) -> bool {
    matches!(code, COORDINATOR_LOAD_IN_PROGRESS | COORDINATOR_NOT_AVAILABLE | NOT_COORDINATOR)
}

/// The hint printed when nothing answers at an address.
pub fn no_broker_hint(addr: &str) -> String {
    format!("is a broker running at {addr}? start one with `weir dev`")
}

/// One blocking connection speaking the Kafka protocol.
pub struct Conn {
    stream: TcpStream,
    addr: String,
    correlation: i32,
}

impl Conn {
    /// Connects to `addr`, or with a comma-separated bootstrap list (as
    /// Kafka's tools take), to the first of them that answers.
    pub fn connect(addr: &str) -> Result<Conn> {
        let mut addrs = Vec::new();
        for one in addr.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            let resolved = one.to_socket_addrs().with_context(|| {
                format!(
                    "cannot resolve {one:?} (expected host:port)\nhint: {}",
                    no_broker_hint(addr)
                )
            })?;
            addrs.extend(resolved);
        }
        let mut last = None;
        for a in &addrs {
            match TcpStream::connect_timeout(a, Duration::from_millis(CONNECT_TIMEOUT_MS)) {
                Ok(stream) => {
                    stream.set_read_timeout(Some(Duration::from_millis(READ_TIMEOUT_MS)))?;
                    stream.set_nodelay(true)?;
                    return Ok(Conn { stream, addr: addr.to_string(), correlation: 0 });
                }
                Err(e) => last = Some(e),
            }
        }
        let why = last.map(|e| e.to_string()).unwrap_or_else(|| "no address".into());
        bail!("cannot connect to {addr}: {why}\nhint: {}", no_broker_hint(addr))
    }

    /// Sends `req` at `version` and decodes its response.
    pub fn call<R: Request>(&mut self, req: &R, version: i16) -> Result<R::Response> {
        let key = ApiKey::try_from(R::KEY).map_err(|_| anyhow!("unknown API key {}", R::KEY))?;
        self.correlation += 1;
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("weir-cli")))
            .encode(&mut buf, R::header_version(version))
            .context("encoding request header")?;
        req.encode(&mut buf, version).with_context(|| format!("encoding {key:?} v{version}"))?;
        let len = (buf.len() - 4) as i32;
        buf[0..4].copy_from_slice(&len.to_be_bytes());
        let addr = self.addr.clone();
        let lost = |e: std::io::Error| {
            anyhow!("{key:?} to {addr}: connection failed ({e}); is the broker still running?")
        };
        self.stream.write_all(&buf).map_err(lost)?;
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).map_err(lost)?;
        let size = i32::from_be_bytes(size);
        if size < 0 || size as usize > RESPONSE_BYTES_MAX {
            bail!("{key:?} from {}: response length {size} is not plausible", self.addr);
        }
        let mut body = vec![0u8; size as usize];
        self.stream.read_exact(&mut body).map_err(lost)?;
        let mut body = Bytes::from(body);
        let header = ResponseHeader::decode(&mut body, R::Response::header_version(version))
            .with_context(|| format!("{key:?} v{version} from {}: bad header", self.addr))?;
        if header.correlation_id != self.correlation {
            bail!("{key:?} from {}: correlation id mismatch", self.addr);
        }
        R::Response::decode(&mut body, version).with_context(|| {
            format!("{key:?} v{version} from {}: response does not decode", self.addr)
        })
    }
}

/// A broker as Metadata names it.
#[derive(Debug, Clone)]
pub struct Broker {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

impl Broker {
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// A client of one cluster, reached through a bootstrap address.
pub struct Client {
    pub bootstrap: String,
    boot: Conn,
    /// Broker's version range per API key.
    versions: HashMap<i16, (i16, i16)>,
    pub brokers: BTreeMap<i32, Broker>,
    conns: HashMap<i32, Conn>,
}

impl Client {
    /// Connects to `bootstrap`, negotiates versions and learns the brokers.
    pub fn connect(bootstrap: &str) -> Result<Client> {
        let mut boot = Conn::connect(bootstrap)?;
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("weir"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        // v3 first; a broker that does not know it answers in the v0 layout
        // (KIP-511), which v3 cannot decode, so fall back on a new connection.
        let resp = match boot.call(&req, 3) {
            Ok(r) if r.error_code == 0 => r,
            _ => {
                boot = Conn::connect(bootstrap)?;
                let r = boot.call(&ApiVersionsRequest::default(), 0)?;
                check(r.error_code, None, "ApiVersions")?;
                r
            }
        };
        let versions =
            resp.api_keys.iter().map(|k| (k.api_key, (k.min_version, k.max_version))).collect();
        let mut client = Client {
            bootstrap: bootstrap.to_string(),
            boot,
            versions,
            brokers: BTreeMap::new(),
            conns: HashMap::new(),
        };
        client.metadata(Some(&[]))?;
        Ok(client)
    }

    /// Whether the broker serves API `key` at all.
    pub fn supports(&self, key: ApiKey) -> bool {
        self.versions.contains_key(&(key as i16))
    }

    /// The version to use for `R`: the highest both the broker and this tool
    /// handle, capped at `tool_max` (the layouts the calling code fills in).
    pub fn version<R: Request>(&self, tool_max: i16) -> Result<i16> {
        let key = ApiKey::try_from(R::KEY).map_err(|_| anyhow!("unknown API key {}", R::KEY))?;
        let Some(&(broker_min, broker_max)) = self.versions.get(&R::KEY) else {
            bail!("the broker at {} does not support {key:?}", self.bootstrap);
        };
        let (q, r) = (R::VERSIONS, <R::Response as Message>::VERSIONS);
        let max = broker_max.min(q.max).min(r.max).min(tool_max);
        let min = broker_min.max(q.min).max(r.min);
        if max < min {
            bail!(
                "the broker at {} supports {key:?} v{broker_min}..v{broker_max}; \
                 weir speaks v{min}..v{}",
                self.bootstrap,
                q.max.min(r.max).min(tool_max)
            );
        }
        Ok(max)
    }

    /// Sends `req` to the bootstrap broker.
    pub fn call<R: Request>(&mut self, req: &R, version: i16) -> Result<R::Response> {
        self.boot.call(req, version)
    }

    /// Sends `req` to broker `node`.
    pub fn call_node<R: Request>(
        &mut self,
        node: i32,
        req: &R,
        version: i16,
    ) -> Result<R::Response> {
        if !self.conns.contains_key(&node) {
            let broker = self.brokers.get(&node).ok_or_else(|| {
                anyhow!("broker {node} is not in the cluster metadata (no leader or coordinator?)")
            })?;
            let conn = Conn::connect(&broker.addr())
                .with_context(|| format!("connecting to broker {node}"))?;
            self.conns.insert(node, conn);
        }
        let conn = self.conns.get_mut(&node).expect("inserted above");
        let result = conn.call(req, version);
        if result.is_err() {
            self.conns.remove(&node);
        }
        result
    }

    /// Metadata for `topics` (None: all topics; empty: brokers only).
    /// Refreshes the broker list.
    pub fn metadata(&mut self, topics: Option<&[String]>) -> Result<MetadataResponse> {
        let v = self.version::<MetadataRequest>(12)?;
        let topics = topics.map(|t| {
            t.iter()
                .map(|n| MetadataRequestTopic::default().with_name(Some(topic_name(n.clone()))))
                .collect()
        });
        let mut req = MetadataRequest::default().with_topics(topics);
        if v >= 4 {
            req.allow_auto_topic_creation = false;
        }
        let resp = self.call(&req, v)?;
        self.brokers = resp
            .brokers
            .iter()
            .map(|b| {
                let broker = Broker {
                    id: b.node_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.as_ref().map(|r| r.to_string()),
                };
                (b.node_id.0, broker)
            })
            .collect();
        Ok(resp)
    }

    /// Partition leaders of `topic`: partition index → leader node id.
    /// Fails clearly when the topic does not exist.
    pub fn leaders(&mut self, topic: &str) -> Result<BTreeMap<i32, i32>> {
        let md = self.metadata(Some(&[topic.to_string()]))?;
        let t = md.topics.first().ok_or_else(|| anyhow!("no metadata for topic {topic}"))?;
        check(t.error_code, None, &format!("topic {topic}"))
            .map_err(|e| anyhow!("{e}\nhint: list topics with `weir topics list`"))?;
        Ok(t.partitions.iter().map(|p| (p.partition_index, p.leader_id.0)).collect())
    }

    /// The node coordinating `group`, retrying while the coordinator loads.
    pub fn coordinator(&mut self, group: &str) -> Result<i32> {
        let v = self.version::<FindCoordinatorRequest>(6)?;
        let mut req = FindCoordinatorRequest::default().with_key_type(0);
        if v >= 4 {
            req.coordinator_keys = vec![s(group)];
        } else {
            req.key = s(group);
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let resp = self.call(&req, v)?;
            let (code, msg, node, host, port) = match resp.coordinators.first() {
                Some(c) if v >= 4 => {
                    (c.error_code, c.error_message.clone(), c.node_id.0, c.host.to_string(), c.port)
                }
                _ => (
                    resp.error_code,
                    resp.error_message.clone(),
                    resp.node_id.0,
                    resp.host.to_string(),
                    resp.port,
                ),
            };
            if group_retriable(code) && attempt < GROUP_ATTEMPTS_MAX {
                std::thread::sleep(Duration::from_millis(GROUP_RETRY_BACKOFF_MS));
                continue;
            }
            check(code, msg.as_ref(), &format!("finding the coordinator of group {group}"))?;
            self.brokers.entry(node).or_insert(Broker { id: node, host, port, rack: None });
            return Ok(node);
        }
    }

    /// Runs a group request at the coordinator. `code_of` extracts the
    /// response's group-level error code; retriable codes (coordinator
    /// loading or moved) are retried a bounded number of times.
    pub fn group_call<R: Request>(
        &mut self,
        group: &str,
        req: &R,
        version: i16,
        code_of: impl Fn(&R::Response) -> i16,
    ) -> Result<R::Response> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let node = self.coordinator(group)?;
            let resp = self.call_node(node, req, version)?;
            let code = code_of(&resp);
            if group_retriable(code) && attempt < GROUP_ATTEMPTS_MAX {
                std::thread::sleep(Duration::from_millis(GROUP_RETRY_BACKOFF_MS));
                continue;
            }
            return Ok(resp);
        }
    }

    /// ListOffsets for `(topic, partition)` pairs at `timestamp` (-1 latest,
    /// -2 earliest, else ms since the epoch), each sent to its leader.
    /// Returns the offset per pair; -1 where no record is at or after the
    /// timestamp.
    pub fn list_offsets(
        &mut self,
        parts: &[(String, i32)],
        timestamp: i64,
    ) -> Result<BTreeMap<(String, i32), i64>> {
        let v = self.version::<ListOffsetsRequest>(9)?;
        let mut by_leader: BTreeMap<i32, BTreeMap<String, Vec<i32>>> = BTreeMap::new();
        let mut leaders_of: HashMap<String, BTreeMap<i32, i32>> = HashMap::new();
        for (topic, p) in parts {
            if !leaders_of.contains_key(topic) {
                let leaders = self.leaders(topic)?;
                leaders_of.insert(topic.clone(), leaders);
            }
            let leader = *leaders_of[topic]
                .get(p)
                .ok_or_else(|| anyhow!("topic {topic} has no partition {p}"))?;
            if leader < 0 {
                bail!("partition {topic}-{p} has no leader right now; retry shortly");
            }
            by_leader.entry(leader).or_default().entry(topic.clone()).or_default().push(*p);
        }
        let mut out = BTreeMap::new();
        for (leader, topics) in by_leader {
            let req = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(
                topics
                    .into_iter()
                    .map(|(t, ps)| {
                        ListOffsetsTopic::default().with_name(topic_name(t)).with_partitions(
                            ps.into_iter()
                                .map(|p| {
                                    ListOffsetsPartition::default()
                                        .with_partition_index(p)
                                        .with_current_leader_epoch(-1)
                                        .with_timestamp(timestamp)
                                })
                                .collect(),
                        )
                    })
                    .collect(),
            );
            let resp = self.call_node(leader, &req, v)?;
            for t in resp.topics {
                for p in t.partitions {
                    let what = format!("listing offsets of {}-{}", t.name.0, p.partition_index);
                    check(p.error_code, None, &what)?;
                    out.insert((t.name.0.to_string(), p.partition_index), p.offset);
                }
            }
        }
        Ok(out)
    }
}
