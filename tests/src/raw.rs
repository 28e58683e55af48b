//! A minimal Kafka protocol client over a plain TCP socket, for tests that
//! need exact control of API versions and bytes (the real clients pick their
//! own versions). Encodes and decodes with the kafka-protocol crate.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Encodes one request frame (size prefix included).
pub fn frame(key: ApiKey, version: i16, correlation: i32, req: &RequestKind) -> Vec<u8> {
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation)
        .with_client_id(Some(StrBytes::from_static_str("weir-tests")))
        .encode(&mut buf, key.request_header_version(version))
        .expect("request header encodes");
    req.encode(&mut buf, version)
        .unwrap_or_else(|e| panic!("encoding {key:?} v{version} request: {e}"));
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    buf.to_vec()
}

/// Reads one response frame's bytes (without the size prefix).
pub fn read_frame(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size)?;
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut body)?;
    Ok(body)
}

/// One connection speaking the Kafka protocol.
pub struct Client {
    pub stream: TcpStream,
    /// Correlation id of the last request sent.
    pub correlation: i32,
}

impl Client {
    pub fn connect(addr: &str) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Client { stream, correlation: 0 }
    }

    /// Sends a request without waiting for its answer.
    pub fn send(&mut self, key: ApiKey, version: i16, req: RequestKind) {
        self.correlation += 1;
        let f = frame(key, version, self.correlation, &req);
        self.stream.write_all(&f).expect("send");
    }

    /// Reads the next response, decoded strictly: no bytes may be left over.
    pub fn recv(&mut self, key: ApiKey, version: i16) -> (i32, ResponseKind) {
        let body = read_frame(&mut self.stream).unwrap_or_else(|e| {
            panic!("{key:?} v{version}: no response ({e}); connection closed?")
        });
        let mut body = Bytes::from(body);
        let header =
            ResponseHeader::decode(&mut body, key.response_header_version(version)).unwrap();
        let resp = ResponseKind::decode(key, &mut body, version)
            .unwrap_or_else(|e| panic!("{key:?} v{version}: response does not decode: {e}"));
        assert!(body.is_empty(), "{key:?} v{version}: {} trailing bytes", body.len());
        (header.correlation_id, resp)
    }

    /// Sends a request and returns its response, checking the correlation id.
    pub fn call(&mut self, key: ApiKey, version: i16, req: RequestKind) -> ResponseKind {
        self.send(key, version, req);
        let (correlation, resp) = self.recv(key, version);
        assert_eq!(correlation, self.correlation, "{key:?} v{version}: correlation id");
        resp
    }
}
