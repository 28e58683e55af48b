//! Produce semantics on the wire: idempotent producers (a retried batch is
//! answered with its original offset and not stored twice, a sequence gap is
//! OUT_OF_ORDER_SEQUENCE_NUMBER, an old epoch INVALID_PRODUCER_EPOCH, and the
//! state survives a restart), `max.message.bytes`, and acks=0.

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use std::time::Duration;
use weir_proto::batch::build::{self, Producer, Record};
use weir_proto::{ProducerEpoch, ProducerId};
use weir_tests::WeirDev;
use weir_tests::raw::Client as RawClient;

/// The raw client with the produce/offsets helpers these tests use.
struct Client {
    raw: RawClient,
}

impl std::ops::Deref for Client {
    type Target = RawClient;
    fn deref(&self) -> &RawClient {
        &self.raw
    }
}

impl std::ops::DerefMut for Client {
    fn deref_mut(&mut self) -> &mut RawClient {
        &mut self.raw
    }
}

impl Client {
    fn connect(dev: &WeirDev) -> Client {
        Client { raw: RawClient::connect(&dev.bootstrap()) }
    }

    /// Produces one batch; returns (error code, base offset).
    fn produce(&mut self, topic: &str, acks: i16, batch: Vec<u8>) -> (i16, i64) {
        let req = produce_request(topic, acks, batch);
        let ResponseKind::Produce(r) = self.call(ApiKey::Produce, 9, RequestKind::Produce(req))
        else {
            panic!()
        };
        let p = &r.responses[0].partition_responses[0];
        (p.error_code, p.base_offset)
    }

    fn latest(&mut self, topic: &str) -> i64 {
        let req = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
            list_offsets_request::ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.into())))
                .with_partitions(vec![
                    list_offsets_request::ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(-1),
                ]),
        ]);
        let ResponseKind::ListOffsets(r) =
            self.call(ApiKey::ListOffsets, 7, RequestKind::ListOffsets(req))
        else {
            panic!()
        };
        r.topics[0].partitions[0].offset
    }

    fn create_topic(&mut self, topic: &str, configs: &[(&str, &str)]) {
        let req = CreateTopicsRequest::default().with_timeout_ms(10_000).with_topics(vec![
            create_topics_request::CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.into())))
                .with_num_partitions(1)
                .with_replication_factor(1)
                .with_configs(
                    configs
                        .iter()
                        .map(|(k, v)| {
                            create_topics_request::CreatableTopicConfig::default()
                                .with_name(StrBytes::from_string(k.to_string()))
                                .with_value(Some(StrBytes::from_string(v.to_string())))
                        })
                        .collect(),
                ),
        ]);
        let ResponseKind::CreateTopics(r) =
            self.call(ApiKey::CreateTopics, 5, RequestKind::CreateTopics(req))
        else {
            panic!()
        };
        assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
    }

    fn init_producer_id(&mut self) -> (ProducerId, ProducerEpoch) {
        let ResponseKind::InitProducerId(r) = self.call(
            ApiKey::InitProducerId,
            4,
            RequestKind::InitProducerId(
                InitProducerIdRequest::default().with_transaction_timeout_ms(60_000),
            ),
        ) else {
            panic!()
        };
        assert_eq!(r.error_code, 0);
        (ProducerId(r.producer_id.0), ProducerEpoch(r.producer_epoch))
    }
}

fn produce_request(topic: &str, acks: i16, batch: Vec<u8>) -> ProduceRequest {
    ProduceRequest::default().with_acks(acks).with_timeout_ms(10_000).with_topic_data(vec![
        TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partition_data(vec![
                PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(Bytes::from(batch))),
            ]),
    ])
}

fn idempotent_batch(
    pid: ProducerId,
    epoch: ProducerEpoch,
    base_sequence: i32,
    count: usize,
) -> Vec<u8> {
    let value = b"idempotent";
    let records: Vec<Record<'_>> =
        (0..count).map(|_| Record { key: None, value: Some(value), timestamp_delta: 0 }).collect();
    build::batch(&records, 1_700_000_000_000, Producer { id: pid, epoch, base_sequence })
}

#[test]
fn idempotent_retries_gaps_and_fencing() {
    let mut dev = WeirDev::start();
    let mut c = Client::connect(&dev);
    c.create_topic("idem", &[]);
    let (pid, epoch) = c.init_producer_id();

    assert_eq!(c.produce("idem", -1, idempotent_batch(pid, epoch, 0, 5)), (0, 0));
    assert_eq!(c.produce("idem", -1, idempotent_batch(pid, epoch, 5, 5)), (0, 5));
    // A retry of the first batch: success with its original offset, not stored again.
    assert_eq!(c.produce("idem", -1, idempotent_batch(pid, epoch, 0, 5)), (0, 0));
    assert_eq!(c.latest("idem"), 10);
    // A gap in the sequence.
    let (code, _) = c.produce("idem", -1, idempotent_batch(pid, epoch, 20, 5));
    assert_eq!(code, 45, "OUT_OF_ORDER_SEQUENCE_NUMBER");
    // A newer epoch fences the old one.
    let newer = ProducerEpoch(epoch.0 + 1);
    assert_eq!(c.produce("idem", -1, idempotent_batch(pid, newer, 0, 1)).0, 0);
    let (code, _) = c.produce("idem", -1, idempotent_batch(pid, epoch, 10, 1));
    assert_eq!(code, 47, "INVALID_PRODUCER_EPOCH");
    assert_eq!(c.latest("idem"), 11);

    // Producer state survives a crash: the retry is still recognised.
    dev.kill9();
    dev.restart();
    let mut c = Client::connect(&dev);
    assert_eq!(c.produce("idem", -1, idempotent_batch(pid, newer, 0, 1)), (0, 10));
    assert_eq!(c.latest("idem"), 11);
    assert_eq!(c.produce("idem", -1, idempotent_batch(pid, newer, 1, 1)), (0, 11));
}

#[test]
fn max_message_bytes_and_acks_zero() {
    let dev = WeirDev::start();
    let mut c = Client::connect(&dev);
    c.create_topic("small", &[("max.message.bytes", "2000")]);
    let (code, _) = c.produce("small", 1, build::simple(1, 5000, 0));
    assert_eq!(code, 10, "MESSAGE_TOO_LARGE");
    assert_eq!(c.produce("small", 1, build::simple(1, 100, 0)), (0, 0));

    // acks=0: no response at all; the next request's answer comes first.
    c.send(
        ApiKey::Produce,
        9,
        RequestKind::Produce(produce_request("small", 0, build::simple(3, 10, 0))),
    );
    let acks0 = c.correlation;
    c.send(ApiKey::ApiVersions, 0, RequestKind::ApiVersions(ApiVersionsRequest::default()));
    let (correlation, _) = c.recv(ApiKey::ApiVersions, 0);
    assert_eq!(correlation, acks0 + 1, "nothing was sent for the acks=0 produce");
    // The acks=0 data is written behind and becomes visible.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while c.latest("small") < 4 {
        assert!(std::time::Instant::now() < deadline, "acks=0 data never became visible");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Responses go back in request order, but an answered request is sent at
/// once: its acknowledgement does not wait in the connection's buffer for a
/// later pipelined request (here a fetch parked in its long poll).
#[test]
fn an_acknowledgement_is_not_held_behind_a_later_long_poll() {
    let dev = WeirDev::start();
    let mut c = Client::connect(&dev);
    c.create_topic("pipelined", &[]);
    assert_eq!(c.produce("pipelined", 1, build::simple(1, 100, 0)), (0, 0));
    let long_poll_ms = 4000;
    let fetch = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(long_poll_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            fetch_request::FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("pipelined")))
                .with_partitions(vec![
                    fetch_request::FetchPartition::default()
                        .with_partition(0)
                        // Past the next produce's batch: nothing arrives for it.
                        .with_fetch_offset(2)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    // Both frames in one write, so the node reads the fetch before the
    // produce is durable.
    let produce = c.correlation + 1;
    let mut frames = weir_tests::raw::frame(
        ApiKey::Produce,
        9,
        produce,
        &RequestKind::Produce(produce_request("pipelined", 1, build::simple(1, 100, 0))),
    );
    frames.extend(weir_tests::raw::frame(
        ApiKey::Fetch,
        12,
        produce + 1,
        &RequestKind::Fetch(fetch),
    ));
    c.correlation = produce + 1;
    let sent = std::time::Instant::now();
    std::io::Write::write_all(&mut c.stream, &frames).unwrap();
    let (correlation, resp) = c.recv(ApiKey::Produce, 9);
    let acked_after = sent.elapsed();
    assert_eq!(correlation, produce);
    let ResponseKind::Produce(r) = resp else { panic!() };
    assert_eq!(r.responses[0].partition_responses[0].base_offset, 1);
    assert!(
        acked_after < Duration::from_millis(long_poll_ms as u64 / 2),
        "the acknowledgement took {acked_after:?}: held back until the fetch behind it answered"
    );
    // The fetch still answers, in order, when its wait is over.
    let (correlation, resp) = c.recv(ApiKey::Fetch, 12);
    assert_eq!(correlation, produce + 1);
    let ResponseKind::Fetch(f) = resp else { panic!() };
    assert_eq!(f.responses[0].partitions[0].error_code, 0);
    assert!(sent.elapsed() >= Duration::from_millis(long_poll_ms as u64 - 500));
}
