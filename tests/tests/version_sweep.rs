//! Sends every API the node serves at every version it advertises and checks
//! that each answer decodes exactly (header and body, no trailing bytes) with
//! Kafka's own schemas (the kafka-protocol codec), so a response field that a
//! version cannot carry, or a wrong header version, is caught here rather than
//! by a client in the field.

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use weir_tests::WeirDev;
use weir_tests::raw::Client;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn str(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// The versions the node advertises for each API.
struct Advertised(std::collections::HashMap<i16, (i16, i16)>);

impl Advertised {
    fn versions(&self, key: ApiKey) -> std::ops::RangeInclusive<i16> {
        let (min, max) = self.0[&(key as i16)];
        min..=max
    }
}

#[test]
fn every_api_at_every_version_answers_in_schema() {
    let dev = WeirDev::start();
    let mut c = Client::connect(&dev.bootstrap());
    let ResponseKind::ApiVersions(av) =
        c.call(ApiKey::ApiVersions, 0, RequestKind::ApiVersions(ApiVersionsRequest::default()))
    else {
        panic!()
    };
    let advertised = Advertised(
        av.api_keys.iter().map(|k| (k.api_key, (k.min_version, k.max_version))).collect(),
    );
    assert_eq!(advertised.0.len(), 29, "every implemented API is advertised");
    let versions = |key: ApiKey| advertised.versions(key);

    for v in versions(ApiKey::ApiVersions) {
        let ResponseKind::ApiVersions(r) = c.call(
            ApiKey::ApiVersions,
            v,
            RequestKind::ApiVersions(
                ApiVersionsRequest::default()
                    .with_client_software_name(str("sweep"))
                    .with_client_software_version(str("1")),
            ),
        ) else {
            panic!()
        };
        assert_eq!(r.error_code, 0);
    }

    let mut topic_id = uuid::Uuid::nil();
    for v in versions(ApiKey::Metadata) {
        let req = MetadataRequest::default().with_topics(Some(vec![
            metadata_request::MetadataRequestTopic::default().with_name(Some(name("sweep"))),
        ]));
        let ResponseKind::Metadata(r) = c.call(ApiKey::Metadata, v, RequestKind::Metadata(req))
        else {
            panic!()
        };
        assert_eq!(r.topics[0].error_code, 0, "Metadata v{v} auto-creates and describes the topic");
        if v >= 10 {
            topic_id = r.topics[0].topic_id;
        }
    }
    assert!(!topic_id.is_nil());

    for v in versions(ApiKey::Produce) {
        let batch = Bytes::from(weir_proto::batch::build::simple(2, 10, 1_700_000_000_000));
        let mut t = produce_request::TopicProduceData::default().with_partition_data(vec![
            produce_request::PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch)),
        ]);
        if v >= 13 {
            t.topic_id = topic_id
        } else {
            t.name = name("sweep")
        }
        let req =
            ProduceRequest::default().with_acks(-1).with_timeout_ms(5000).with_topic_data(vec![t]);
        let ResponseKind::Produce(r) = c.call(ApiKey::Produce, v, RequestKind::Produce(req)) else {
            panic!()
        };
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0, "Produce v{v}");
    }

    for v in versions(ApiKey::Fetch) {
        let mut t = fetch_request::FetchTopic::default().with_partitions(vec![
            fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20),
        ]);
        if v >= 13 {
            t.topic_id = topic_id
        } else {
            t.topic = name("sweep")
        }
        let mut req = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(0)
            .with_max_bytes(1 << 20)
            .with_topics(vec![t]);
        if v < 15 {
            req.replica_id = BrokerId(-1);
        }
        let ResponseKind::Fetch(r) = c.call(ApiKey::Fetch, v, RequestKind::Fetch(req)) else {
            panic!()
        };
        let p = &r.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "Fetch v{v}");
        assert!(p.records.as_ref().is_some_and(|b| !b.is_empty()), "Fetch v{v} returns data");
    }

    for v in versions(ApiKey::ListOffsets) {
        let req = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
            list_offsets_request::ListOffsetsTopic::default()
                .with_name(name("sweep"))
                .with_partitions(vec![
                    list_offsets_request::ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(-1),
                ]),
        ]);
        let ResponseKind::ListOffsets(r) =
            c.call(ApiKey::ListOffsets, v, RequestKind::ListOffsets(req))
        else {
            panic!()
        };
        assert_eq!(r.topics[0].partitions[0].error_code, 0, "ListOffsets v{v}");
        assert!(r.topics[0].partitions[0].offset > 0);
    }

    for v in versions(ApiKey::OffsetForLeaderEpoch) {
        let req = OffsetForLeaderEpochRequest::default().with_topics(vec![
            offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                .with_topic(name("sweep"))
                .with_partitions(vec![
                    offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                        .with_partition(0)
                        .with_leader_epoch(0),
                ]),
        ]);
        let ResponseKind::OffsetForLeaderEpoch(r) =
            c.call(ApiKey::OffsetForLeaderEpoch, v, RequestKind::OffsetForLeaderEpoch(req))
        else {
            panic!()
        };
        assert_eq!(r.topics[0].partitions[0].error_code, 0, "OffsetForLeaderEpoch v{v}");
    }

    for v in versions(ApiKey::InitProducerId) {
        let ResponseKind::InitProducerId(r) = c.call(
            ApiKey::InitProducerId,
            v,
            RequestKind::InitProducerId(
                InitProducerIdRequest::default().with_transaction_timeout_ms(60000),
            ),
        ) else {
            panic!()
        };
        assert_eq!(r.error_code, 0, "InitProducerId v{v}");
        assert!(r.producer_id.0 >= 0);
    }

    for v in versions(ApiKey::CreateTopics) {
        let req = CreateTopicsRequest::default().with_timeout_ms(10000).with_topics(vec![
            create_topics_request::CreatableTopic::default()
                .with_name(name(&format!("sweep-ct-{v}")))
                .with_num_partitions(2)
                .with_replication_factor(1),
        ]);
        let ResponseKind::CreateTopics(r) =
            c.call(ApiKey::CreateTopics, v, RequestKind::CreateTopics(req))
        else {
            panic!()
        };
        assert_eq!(r.topics[0].error_code, 0, "CreateTopics v{v}");
    }

    for v in versions(ApiKey::CreatePartitions) {
        let req = CreatePartitionsRequest::default().with_timeout_ms(10000).with_topics(vec![
            create_partitions_request::CreatePartitionsTopic::default()
                .with_name(name(&format!("sweep-ct-{}", v + 2)))
                .with_count(3),
        ]);
        let ResponseKind::CreatePartitions(r) =
            c.call(ApiKey::CreatePartitions, v, RequestKind::CreatePartitions(req))
        else {
            panic!()
        };
        assert_eq!(r.results[0].error_code, 0, "CreatePartitions v{v}");
    }

    for v in versions(ApiKey::DescribeConfigs) {
        let req = DescribeConfigsRequest::default().with_resources(vec![
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(str("sweep")),
        ]);
        let ResponseKind::DescribeConfigs(r) =
            c.call(ApiKey::DescribeConfigs, v, RequestKind::DescribeConfigs(req))
        else {
            panic!()
        };
        assert_eq!(r.results[0].error_code, 0, "DescribeConfigs v{v}");
        assert!(r.results[0].configs.len() >= 8, "full config set");
    }

    for v in versions(ApiKey::AlterConfigs) {
        let req = AlterConfigsRequest::default().with_resources(vec![
            alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(str("sweep"))
                .with_configs(vec![
                    alter_configs_request::AlterableConfig::default()
                        .with_name(str("retention.ms"))
                        .with_value(Some(str("86400000"))),
                ]),
        ]);
        let ResponseKind::AlterConfigs(r) =
            c.call(ApiKey::AlterConfigs, v, RequestKind::AlterConfigs(req))
        else {
            panic!()
        };
        assert_eq!(r.responses[0].error_code, 0, "AlterConfigs v{v}");
    }

    for v in versions(ApiKey::IncrementalAlterConfigs) {
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(str("sweep"))
                .with_configs(vec![
                    incremental_alter_configs_request::AlterableConfig::default()
                        .with_name(str("retention.ms"))
                        .with_config_operation(0)
                        .with_value(Some(str("3600000"))),
                ]),
        ]);
        let ResponseKind::IncrementalAlterConfigs(r) =
            c.call(ApiKey::IncrementalAlterConfigs, v, RequestKind::IncrementalAlterConfigs(req))
        else {
            panic!()
        };
        assert_eq!(r.responses[0].error_code, 0, "IncrementalAlterConfigs v{v}");
    }

    for v in versions(ApiKey::DescribeCluster) {
        let ResponseKind::DescribeCluster(r) = c.call(
            ApiKey::DescribeCluster,
            v,
            RequestKind::DescribeCluster(DescribeClusterRequest::default()),
        ) else {
            panic!()
        };
        assert_eq!(r.error_code, 0, "DescribeCluster v{v}");
        assert_eq!(r.brokers.len(), 1);
    }

    for v in versions(ApiKey::ElectLeaders) {
        use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
        let req = ElectLeadersRequest::default().with_topic_partitions(Some(vec![
            TopicPartitions::default().with_topic(name("sweep")).with_partitions(vec![0]),
        ]));
        let ResponseKind::ElectLeaders(r) =
            c.call(ApiKey::ElectLeaders, v, RequestKind::ElectLeaders(req))
        else {
            panic!()
        };
        assert_eq!(r.error_code, 0, "ElectLeaders v{v}");
        // Node 1 is the only replica and leads already: nothing to elect.
        let result = &r.replica_election_results[0].partition_result[0];
        assert_eq!(result.error_code, 84, "ElectLeaders v{v}: ELECTION_NOT_NEEDED");
    }

    for v in versions(ApiKey::FindCoordinator) {
        let mut req = FindCoordinatorRequest::default();
        if v >= 4 {
            req.coordinator_keys = vec![str("sweep-group")]
        } else {
            req.key = str("sweep-group")
        }
        let ResponseKind::FindCoordinator(r) =
            c.call(ApiKey::FindCoordinator, v, RequestKind::FindCoordinator(req))
        else {
            panic!()
        };
        let code = if v >= 4 { r.coordinators[0].error_code } else { r.error_code };
        assert_eq!(code, 0, "FindCoordinator v{v}");
    }

    for v in versions(ApiKey::JoinGroup) {
        let req = JoinGroupRequest::default()
            .with_group_id(GroupId(str(&format!("sweep-join-{v}"))))
            .with_session_timeout_ms(10000)
            .with_rebalance_timeout_ms(if v >= 1 { 10000 } else { -1 })
            .with_protocol_type(str("consumer"))
            .with_protocols(vec![
                join_group_request::JoinGroupRequestProtocol::default()
                    .with_name(str("range"))
                    .with_metadata(Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0])),
            ]);
        let ResponseKind::JoinGroup(r) = c.call(ApiKey::JoinGroup, v, RequestKind::JoinGroup(req))
        else {
            panic!()
        };
        let expected = if v >= 4 { 79 } else { 0 }; // MEMBER_ID_REQUIRED from v4 (KIP-394)
        assert_eq!(r.error_code, expected, "JoinGroup v{v}");
    }

    for v in versions(ApiKey::Heartbeat) {
        let req = HeartbeatRequest::default()
            .with_group_id(GroupId(str("sweep-none")))
            .with_generation_id(1)
            .with_member_id(str("nobody"));
        let ResponseKind::Heartbeat(r) = c.call(ApiKey::Heartbeat, v, RequestKind::Heartbeat(req))
        else {
            panic!()
        };
        assert_ne!(r.error_code, 0, "Heartbeat v{v} for an unknown member is an error");
    }

    for v in versions(ApiKey::SyncGroup) {
        let req = SyncGroupRequest::default()
            .with_group_id(GroupId(str("sweep-none")))
            .with_generation_id(1)
            .with_member_id(str("nobody"));
        let ResponseKind::SyncGroup(r) = c.call(ApiKey::SyncGroup, v, RequestKind::SyncGroup(req))
        else {
            panic!()
        };
        assert_ne!(r.error_code, 0, "SyncGroup v{v}");
    }

    for v in versions(ApiKey::LeaveGroup) {
        let mut req = LeaveGroupRequest::default().with_group_id(GroupId(str("sweep-none")));
        if v >= 3 {
            req.members =
                vec![leave_group_request::MemberIdentity::default().with_member_id(str("nobody"))];
        } else {
            req.member_id = str("nobody");
        }
        let ResponseKind::LeaveGroup(_) =
            c.call(ApiKey::LeaveGroup, v, RequestKind::LeaveGroup(req))
        else {
            panic!()
        };
    }

    for v in versions(ApiKey::OffsetCommit) {
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(str("sweep-commits")))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(name("sweep"))
                    .with_partitions(vec![
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(v as i64),
                    ]),
            ]);
        let ResponseKind::OffsetCommit(r) =
            c.call(ApiKey::OffsetCommit, v, RequestKind::OffsetCommit(req))
        else {
            panic!()
        };
        assert_eq!(r.topics[0].partitions[0].error_code, 0, "OffsetCommit v{v}");
    }

    for v in versions(ApiKey::OffsetFetch) {
        let topics = vec![
            offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(name("sweep"))
                .with_partition_indexes(vec![0]),
        ];
        let mut req = OffsetFetchRequest::default();
        if v >= 8 {
            req.groups = vec![
                offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(str("sweep-commits")))
                    .with_topics(Some(vec![
                        offset_fetch_request::OffsetFetchRequestTopics::default()
                            .with_name(name("sweep"))
                            .with_partition_indexes(vec![0]),
                    ])),
            ];
        } else {
            req.group_id = GroupId(str("sweep-commits"));
            req.topics = Some(topics);
        }
        let ResponseKind::OffsetFetch(r) =
            c.call(ApiKey::OffsetFetch, v, RequestKind::OffsetFetch(req))
        else {
            panic!()
        };
        let committed = if v >= 8 {
            r.groups[0].topics[0].partitions[0].committed_offset
        } else {
            r.topics[0].partitions[0].committed_offset
        };
        let last = *versions(ApiKey::OffsetCommit).end() as i64;
        assert_eq!(committed, last, "OffsetFetch v{v} sees the last commit");
    }

    for v in versions(ApiKey::DescribeGroups) {
        let req = DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(str("sweep-commits")), GroupId(str("sweep-join-0"))]);
        let ResponseKind::DescribeGroups(r) =
            c.call(ApiKey::DescribeGroups, v, RequestKind::DescribeGroups(req))
        else {
            panic!()
        };
        assert_eq!(r.groups.len(), 2, "DescribeGroups v{v}");
    }

    for v in versions(ApiKey::ListGroups) {
        let ResponseKind::ListGroups(r) =
            c.call(ApiKey::ListGroups, v, RequestKind::ListGroups(ListGroupsRequest::default()))
        else {
            panic!()
        };
        assert_eq!(r.error_code, 0, "ListGroups v{v}");
        assert!(r.groups.iter().any(|g| g.group_id.0.as_str() == "sweep-commits"));
    }

    for v in versions(ApiKey::OffsetDelete) {
        let req = OffsetDeleteRequest::default()
            .with_group_id(GroupId(str("sweep-commits")))
            .with_topics(vec![
                offset_delete_request::OffsetDeleteRequestTopic::default()
                    .with_name(name("sweep"))
                    .with_partitions(vec![
                        offset_delete_request::OffsetDeleteRequestPartition::default()
                            .with_partition_index(0),
                    ]),
            ]);
        let ResponseKind::OffsetDelete(r) =
            c.call(ApiKey::OffsetDelete, v, RequestKind::OffsetDelete(req))
        else {
            panic!()
        };
        assert_eq!(r.error_code, 0, "OffsetDelete v{v}");
    }

    for v in versions(ApiKey::DeleteGroups) {
        let req = DeleteGroupsRequest::default()
            .with_groups_names(vec![GroupId(str("sweep-never-existed"))]);
        let ResponseKind::DeleteGroups(r) =
            c.call(ApiKey::DeleteGroups, v, RequestKind::DeleteGroups(req))
        else {
            panic!()
        };
        assert_eq!(r.results[0].error_code, 69, "DeleteGroups v{v}: GROUP_ID_NOT_FOUND");
    }

    for v in versions(ApiKey::DeleteRecords) {
        let req = DeleteRecordsRequest::default().with_timeout_ms(5000).with_topics(vec![
            delete_records_request::DeleteRecordsTopic::default()
                .with_name(name("sweep"))
                .with_partitions(vec![
                    delete_records_request::DeleteRecordsPartition::default()
                        .with_partition_index(0)
                        .with_offset(v as i64),
                ]),
        ]);
        let ResponseKind::DeleteRecords(r) =
            c.call(ApiKey::DeleteRecords, v, RequestKind::DeleteRecords(req))
        else {
            panic!()
        };
        assert_eq!(r.topics[0].partitions[0].error_code, 0, "DeleteRecords v{v}");
        assert_eq!(r.topics[0].partitions[0].low_watermark, v as i64);
    }

    for v in versions(ApiKey::DeleteTopics) {
        // CreateTopics made sweep-ct-2 ..= sweep-ct-7; DeleteTopics v1 ..= v6 removes them.
        let topic = format!("sweep-ct-{}", v + 1);
        let mut req = DeleteTopicsRequest::default().with_timeout_ms(10000);
        if v >= 6 {
            req.topics = vec![
                delete_topics_request::DeleteTopicState::default().with_name(Some(name(&topic))),
            ];
        } else {
            req.topic_names = vec![name(&topic)];
        }
        let ResponseKind::DeleteTopics(r) =
            c.call(ApiKey::DeleteTopics, v, RequestKind::DeleteTopics(req))
        else {
            panic!()
        };
        assert_eq!(r.responses[0].error_code, 0, "DeleteTopics v{v} ({topic})");
    }
}
