//! ApiVersions: which APIs and versions this node serves.
//!
//! Clients pick min(client max, node max) per API, so the list names exactly
//! what the handlers implement. A request for an ApiVersions version the node
//! does not know is answered with UNSUPPORTED_VERSION in the v0 body layout
//! (KIP-511), listing ApiVersions' own range so the client retries lower.

use bytes::{BufMut, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};

/// APIs this node implements, each at every version `kafka-protocol` knows.
pub const SUPPORTED_APIS: &[ApiKey] = &[
    ApiKey::Produce,
    ApiKey::Fetch,
    ApiKey::ListOffsets,
    ApiKey::Metadata,
    ApiKey::OffsetCommit,
    ApiKey::OffsetFetch,
    ApiKey::FindCoordinator,
    ApiKey::JoinGroup,
    ApiKey::Heartbeat,
    ApiKey::LeaveGroup,
    ApiKey::SyncGroup,
    ApiKey::DescribeGroups,
    ApiKey::ListGroups,
    ApiKey::ApiVersions,
    ApiKey::CreateTopics,
    ApiKey::DeleteTopics,
    ApiKey::DeleteRecords,
    ApiKey::InitProducerId,
    ApiKey::OffsetForLeaderEpoch,
    ApiKey::DescribeConfigs,
    ApiKey::AlterConfigs,
    ApiKey::CreatePartitions,
    ApiKey::DeleteGroups,
    ApiKey::IncrementalAlterConfigs,
    ApiKey::OffsetDelete,
    ApiKey::DescribeCluster,
    ApiKey::ElectLeaders,
    ApiKey::AlterPartitionReassignments,
    ApiKey::ListPartitionReassignments,
];

/// The versions both the request and the response codec of `key` handle.
/// kafka-protocol's `ApiKey::valid_versions` can name a version one of the
/// two message types cannot encode or decode (InitProducerId v6, OffsetCommit
/// and OffsetFetch v10 in 0.18), so the node never advertises those.
fn codec_range(key: ApiKey) -> (i16, i16) {
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::Message;
    macro_rules! both {
        ($req:ty, $resp:ty) => {{
            let (q, s) = (<$req as Message>::VERSIONS, <$resp as Message>::VERSIONS);
            (q.min.max(s.min), q.max.min(s.max))
        }};
    }
    match key {
        ApiKey::Produce => both!(ProduceRequest, ProduceResponse),
        ApiKey::Fetch => both!(FetchRequest, FetchResponse),
        ApiKey::ListOffsets => both!(ListOffsetsRequest, ListOffsetsResponse),
        ApiKey::Metadata => both!(MetadataRequest, MetadataResponse),
        ApiKey::OffsetCommit => both!(OffsetCommitRequest, OffsetCommitResponse),
        ApiKey::OffsetFetch => both!(OffsetFetchRequest, OffsetFetchResponse),
        ApiKey::FindCoordinator => both!(FindCoordinatorRequest, FindCoordinatorResponse),
        ApiKey::JoinGroup => both!(JoinGroupRequest, JoinGroupResponse),
        ApiKey::Heartbeat => both!(HeartbeatRequest, HeartbeatResponse),
        ApiKey::LeaveGroup => both!(LeaveGroupRequest, LeaveGroupResponse),
        ApiKey::SyncGroup => both!(SyncGroupRequest, SyncGroupResponse),
        ApiKey::DescribeGroups => both!(DescribeGroupsRequest, DescribeGroupsResponse),
        ApiKey::ListGroups => both!(ListGroupsRequest, ListGroupsResponse),
        ApiKey::ApiVersions => both!(ApiVersionsRequest, ApiVersionsResponse),
        ApiKey::ElectLeaders => both!(ElectLeadersRequest, ElectLeadersResponse),
        ApiKey::AlterPartitionReassignments => {
            both!(AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse)
        }
        ApiKey::ListPartitionReassignments => {
            both!(ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse)
        }
        ApiKey::CreateTopics => both!(CreateTopicsRequest, CreateTopicsResponse),
        ApiKey::DeleteTopics => both!(DeleteTopicsRequest, DeleteTopicsResponse),
        ApiKey::DeleteRecords => both!(DeleteRecordsRequest, DeleteRecordsResponse),
        ApiKey::InitProducerId => both!(InitProducerIdRequest, InitProducerIdResponse),
        ApiKey::OffsetForLeaderEpoch => {
            both!(OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse)
        }
        ApiKey::DescribeConfigs => both!(DescribeConfigsRequest, DescribeConfigsResponse),
        ApiKey::AlterConfigs => both!(AlterConfigsRequest, AlterConfigsResponse),
        ApiKey::CreatePartitions => both!(CreatePartitionsRequest, CreatePartitionsResponse),
        ApiKey::DeleteGroups => both!(DeleteGroupsRequest, DeleteGroupsResponse),
        ApiKey::IncrementalAlterConfigs => {
            both!(IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse)
        }
        ApiKey::OffsetDelete => both!(OffsetDeleteRequest, OffsetDeleteResponse),
        ApiKey::DescribeCluster => both!(DescribeClusterRequest, DescribeClusterResponse),
        other => {
            let r = other.valid_versions();
            (r.min, r.max)
        }
    }
}

/// The version range served for `key`, or `None` if the API is not served.
pub fn supported_range(key: ApiKey) -> Option<(i16, i16)> {
    if !SUPPORTED_APIS.contains(&key) {
        return None;
    }
    let (min, max) = codec_range(key);
    let range = key.valid_versions();
    Some((min.max(range.min), max.min(range.max)))
}

pub fn is_supported(key: ApiKey, version: i16) -> bool {
    matches!(supported_range(key), Some((min, max)) if version >= min && version <= max)
}

pub fn handle(_req: &ApiVersionsRequest) -> ApiVersionsResponse {
    let api_keys = SUPPORTED_APIS
        .iter()
        .map(|key| {
            let (min, max) = supported_range(*key).expect("listed");
            ApiVersion::default()
                .with_api_key(*key as i16)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect();
    // Kept minimal (no feature flags): librdkafka 2.0.2 (Debian's kcat) has
    // been seen to misparse a v3 response that carries several tagged fields.
    ApiVersionsResponse::default().with_error_code(0).with_api_keys(api_keys)
}

/// The whole response frame (size prefix included) for an ApiVersions request
/// at a version this node does not know: header v0 and a v0 body.
pub fn unsupported_version_frame(correlation_id: i32) -> BytesMut {
    let (min, max) = supported_range(ApiKey::ApiVersions).expect("ApiVersions is served");
    let mut body = BytesMut::new();
    body.put_i32(correlation_id);
    body.put_i16(ResponseError::UnsupportedVersion.code());
    body.put_i32(1); // api_keys array length (v0: non-compact)
    body.put_i16(ApiKey::ApiVersions as i16);
    body.put_i16(min);
    body.put_i16(max);
    let mut frame = BytesMut::with_capacity(body.len() + 4);
    frame.put_i32(body.len() as i32);
    frame.extend_from_slice(&body);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_frame_is_exact_v0_layout() {
        let f = unsupported_version_frame(7);
        // size(4) correlation(4) error(2) count(4) key(2) min(2) max(2)
        assert_eq!(f.len(), 4 + 4 + 2 + 4 + 6);
        assert_eq!(&f[0..4], &(16i32).to_be_bytes());
        assert_eq!(&f[4..8], &7i32.to_be_bytes());
        assert_eq!(&f[8..10], &35i16.to_be_bytes());
        assert_eq!(&f[14..16], &18i16.to_be_bytes());
    }

    #[test]
    fn advertised_versions_are_ones_both_codecs_handle() {
        // kafka-protocol 0.18's key table says 0-6, its request codec 0-5.
        assert_eq!(supported_range(ApiKey::InitProducerId), Some((0, 5)));
        for key in SUPPORTED_APIS {
            let (min, max) = supported_range(*key).unwrap();
            assert!(min <= max, "{key:?}");
        }
    }

    #[test]
    fn lists_only_served_apis() {
        let resp = handle(&ApiVersionsRequest::default());
        assert_eq!(resp.api_keys.len(), SUPPORTED_APIS.len());
        assert!(is_supported(ApiKey::Produce, 3));
        assert!(!is_supported(ApiKey::Produce, 2));
        assert!(!is_supported(ApiKey::AddPartitionsToTxn, 0));
    }
}
