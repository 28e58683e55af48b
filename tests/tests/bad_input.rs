//! Bad input gets a Kafka error or a closed connection, never a crash, and
//! the node keeps serving everyone else.

use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, ProduceRequest,
    ProduceResponse, RequestKind, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use weir_tests::{WeirDev, raw};

fn connect(dev: &WeirDev) -> TcpStream {
    let s = TcpStream::connect(dev.bootstrap()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn frame<T: Clone + Into<RequestKind>>(
    key: ApiKey,
    version: i16,
    correlation: i32,
    body: &T,
) -> Vec<u8> {
    raw::frame(key, version, correlation, &body.clone().into())
}

fn read_frame(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    raw::read_frame(s)
}

/// True when the server closed the connection (EOF or reset) without a reply.
fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(0) | Err(_))
}

fn api_versions_ok(dev: &WeirDev) {
    let mut s = connect(dev);
    s.write_all(&frame(ApiKey::ApiVersions, 3, 1, &ApiVersionsRequest::default())).unwrap();
    let body = read_frame(&mut s).expect("response");
    let mut b = bytes::Bytes::from(body);
    let header = ResponseHeader::decode(&mut b, 0).unwrap();
    assert_eq!(header.correlation_id, 1);
    let resp = ApiVersionsResponse::decode(&mut b, 3).unwrap();
    assert_eq!(resp.error_code, 0);
    assert!(resp.api_keys.iter().any(|k| k.api_key == ApiKey::Produce as i16));
}

#[test]
fn garbage_oversize_unknown_and_corrupt_requests() {
    let dev = WeirDev::start();

    // A frame claiming 2 GiB: refused before allocating, connection closed.
    let mut s = connect(&dev);
    s.write_all(&i32::MAX.to_be_bytes()).unwrap();
    assert!(closed(&mut s));

    // Random garbage.
    let mut s = connect(&dev);
    let mut junk = vec![0u8; 64];
    junk[..4].copy_from_slice(&60i32.to_be_bytes());
    for (i, b) in junk.iter_mut().enumerate().skip(4) {
        *b = (i * 37 % 251) as u8;
    }
    s.write_all(&junk).unwrap();
    assert!(closed(&mut s));

    // An unknown API key.
    let mut s = connect(&dev);
    let mut f = frame(ApiKey::ApiVersions, 0, 9, &ApiVersionsRequest::default());
    f[4..6].copy_from_slice(&999i16.to_be_bytes());
    s.write_all(&f).unwrap();
    assert!(closed(&mut s));

    // ApiVersions at a version from the future: UNSUPPORTED_VERSION in v0 layout.
    let mut s = connect(&dev);
    let mut f = frame(ApiKey::ApiVersions, 0, 5, &ApiVersionsRequest::default());
    f[6..8].copy_from_slice(&99i16.to_be_bytes());
    s.write_all(&f).unwrap();
    let body = read_frame(&mut s).expect("v0 answer");
    assert_eq!(&body[0..4], &5i32.to_be_bytes());
    assert_eq!(&body[4..6], &35i16.to_be_bytes(), "UNSUPPORTED_VERSION");
    let mut b = bytes::Bytes::from(body);
    let _ = ResponseHeader::decode(&mut b, 0).unwrap();
    let resp = ApiVersionsResponse::decode(&mut b, 0).expect("exact v0 body");
    assert_eq!(resp.api_keys.len(), 1);
    assert!(b.is_empty(), "no trailing bytes after the v0 body");

    // A produce whose batch has a bad CRC: CORRUPT_MESSAGE, and the
    // connection stays usable.
    let mut s = connect(&dev);
    let meta = MetadataRequest::default()
        .with_topics(Some(vec![
            kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                .with_name(Some(TopicName(StrBytes::from_static_str("bad-crc")))),
        ]))
        .with_allow_auto_topic_creation(true);
    s.write_all(&frame(ApiKey::Metadata, 12, 2, &meta)).unwrap();
    read_frame(&mut s).expect("metadata answer");
    let mut batch = weir_proto::batch::build::simple(3, 20, 1_700_000_000_000);
    let last = batch.len() - 1;
    batch[last] ^= 0xff;
    let produce =
        ProduceRequest::default().with_acks(-1).with_timeout_ms(5000).with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("bad-crc")))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(bytes::Bytes::from(batch))),
                ]),
        ]);
    s.write_all(&frame(ApiKey::Produce, 9, 3, &produce)).unwrap();
    let mut b = bytes::Bytes::from(read_frame(&mut s).expect("produce answer"));
    let _ = ResponseHeader::decode(&mut b, 1).unwrap();
    let resp = ProduceResponse::decode(&mut b, 9).unwrap();
    let code = resp.responses[0].partition_responses[0].error_code;
    assert_eq!(code, 2, "CORRUPT_MESSAGE");
    // Same connection still answers.
    s.write_all(&frame(ApiKey::ApiVersions, 3, 4, &ApiVersionsRequest::default())).unwrap();
    assert!(read_frame(&mut s).is_ok());

    // Everyone else is still served.
    api_versions_ok(&dev);
}
