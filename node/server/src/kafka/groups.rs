//! Consumer group APIs. The coordinator (crate `weir-group`) is being wired
//! in; until then these APIs are not advertised in ApiVersions, so
//! `conn::parse_frame` refuses them and no request reaches this dispatcher.
use crate::kafka::conn::Reply;
use crate::shard::Shard;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use std::rc::Rc;

/// Per-shard group coordinator state.
#[derive(Default)]
pub struct ShardGroups {}

/// Only APIs absent from ApiVersions land here; the connection is closed,
/// as Kafka does for an API it does not serve.
pub async fn dispatch(
    _shard: Rc<Shard>,
    _header: RequestHeader,
    key: ApiKey,
    version: i16,
    _req: RequestKind,
) -> Reply {
    tracing::warn!("{key:?} v{version} is not served; closing connection");
    None
}
