//! Every API at every advertised version gets a well-formed answer (the encoder
//! refuses fields a version lacks, so this catches handlers that set them).

mod common;

use bytes::{Bytes, BytesMut};
use common::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use strata::protocol::versions::SUPPORTED;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn one_record() -> Bytes {
    let r = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
        key: Some(Bytes::from_static(b"k")),
        value: Some(Bytes::from_static(b"v")),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        [r].iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

fn request(api: ApiKey, v: i16, topic_id: uuid::Uuid) -> RequestKind {
    let t = || TopicName(s("v"));
    match api {
        ApiKey::Produce => RequestKind::Produce(
            ProduceRequest::default()
                .with_acks(1)
                .with_timeout_ms(5000)
                .with_topic_data(vec![produce_request::TopicProduceData::default()
                    .with_name(t())
                    .with_partition_data(vec![
                        produce_request::PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(one_record())),
                    ])]),
        ),
        ApiKey::Fetch => RequestKind::Fetch(
            FetchRequest::default()
                .with_replica_id((-1).into())
                .with_max_wait_ms(0)
                .with_min_bytes(0)
                .with_max_bytes(1 << 20)
                .with_session_epoch(-1)
                .with_topics(vec![fetch_request::FetchTopic::default()
                    .with_topic(if v < 13 { t() } else { TopicName(s("")) })
                    .with_topic_id(if v >= 13 { topic_id } else { uuid::Uuid::nil() })
                    .with_partitions(vec![fetch_request::FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(1 << 20)])]),
        ),
        ApiKey::ListOffsets => RequestKind::ListOffsets(
            ListOffsetsRequest::default()
                .with_replica_id((-1).into())
                .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                    .with_name(t())
                    .with_partitions(vec![
                        list_offsets_request::ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(if v % 2 == 0 { -2 } else { 0 }),
                    ])]),
        ),
        ApiKey::Metadata => {
            RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default().with_name(Some(t())),
            ])))
        }
        ApiKey::ApiVersions => RequestKind::ApiVersions(
            ApiVersionsRequest::default()
                .with_client_software_name(s("t"))
                .with_client_software_version(s("1")),
        ),
        ApiKey::CreateTopics => RequestKind::CreateTopics(
            CreateTopicsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![create_topics_request::CreatableTopic::default()
                    .with_name(TopicName(s(&format!("created-v{v}"))))
                    .with_num_partitions(1)
                    .with_replication_factor(1)]),
        ),
        // DeleteTopics v1..=6 removes what CreateTopics v2..=7 made.
        ApiKey::DeleteTopics => RequestKind::DeleteTopics(if v >= 6 {
            DeleteTopicsRequest::default()
                .with_topics(vec![delete_topics_request::DeleteTopicState::default()
                    .with_name(Some(TopicName(s(&format!("created-v{}", v + 1)))))])
        } else {
            DeleteTopicsRequest::default()
                .with_topic_names(vec![TopicName(s(&format!("created-v{}", v + 1)))])
        }),
        ApiKey::InitProducerId => RequestKind::InitProducerId(
            InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_producer_id((-1).into())
                .with_producer_epoch(-1),
        ),
        ApiKey::FindCoordinator => RequestKind::FindCoordinator(if v < 4 {
            FindCoordinatorRequest::default().with_key(s("group"))
        } else {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![s("group")])
        }),
        ApiKey::DescribeConfigs => {
            RequestKind::DescribeConfigs(DescribeConfigsRequest::default().with_resources(vec![
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("v")),
            ]))
        }
        ApiKey::AlterConfigs => {
            RequestKind::AlterConfigs(AlterConfigsRequest::default().with_resources(vec![
                alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("v"))
                    .with_configs(vec![alter_configs_request::AlterableConfig::default()
                        .with_name(s("retention.ms"))
                        .with_value(Some(s("86400000")))]),
            ]))
        }
        ApiKey::IncrementalAlterConfigs => RequestKind::IncrementalAlterConfigs(
            IncrementalAlterConfigsRequest::default().with_resources(vec![
                incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("v"))
                    .with_configs(vec![
                        incremental_alter_configs_request::AlterableConfig::default()
                            .with_name(s("segment.ms"))
                            .with_value(Some(s("86400000"))),
                    ]),
            ]),
        ),
        ApiKey::CreatePartitions => RequestKind::CreatePartitions(
            CreatePartitionsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![
                    create_partitions_request::CreatePartitionsTopic::default()
                        .with_name(TopicName(s("grow")))
                        .with_count(2 + v as i32),
                ]),
        ),
        ApiKey::DeleteRecords => RequestKind::DeleteRecords(
            DeleteRecordsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![delete_records_request::DeleteRecordsTopic::default()
                    .with_name(t())
                    .with_partitions(vec![
                        delete_records_request::DeleteRecordsPartition::default()
                            .with_partition_index(0)
                            .with_offset(0),
                    ])]),
        ),
        ApiKey::DescribeCluster => RequestKind::DescribeCluster(DescribeClusterRequest::default()),
        ApiKey::DescribeTopicPartitions => RequestKind::DescribeTopicPartitions(
            DescribeTopicPartitionsRequest::default()
                .with_response_partition_limit(100)
                .with_topics(vec![
                    describe_topic_partitions_request::TopicRequest::default().with_name(t()),
                ]),
        ),
        ApiKey::JoinGroup => RequestKind::JoinGroup(
            JoinGroupRequest::default()
                .with_group_id(GroupId(s(&format!("pv-join-{v}"))))
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(10_000)
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
                )
                .with_name(s("range"))
                .with_metadata(Bytes::from_static(b"\0\0"))]),
        ),
        ApiKey::SyncGroup => RequestKind::SyncGroup(
            SyncGroupRequest::default()
                .with_group_id(GroupId(s("pv")))
                .with_member_id(s("nobody"))
                .with_generation_id(1),
        ),
        ApiKey::Heartbeat => RequestKind::Heartbeat(
            HeartbeatRequest::default()
                .with_group_id(GroupId(s("pv")))
                .with_member_id(s("nobody"))
                .with_generation_id(1),
        ),
        ApiKey::LeaveGroup => RequestKind::LeaveGroup(if v >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(GroupId(s("pv")))
                .with_members(vec![
                    leave_group_request::MemberIdentity::default().with_member_id(s("nobody"))
                ])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(GroupId(s("pv")))
                .with_member_id(s("nobody"))
        }),
        ApiKey::OffsetCommit => RequestKind::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(s("pv")))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(t())
                        .with_topic_id(topic_id)
                        .with_partitions(vec![
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(1),
                        ]),
                ]),
        ),
        ApiKey::OffsetFetch => RequestKind::OffsetFetch(if v >= 8 {
            OffsetFetchRequest::default().with_groups(vec![
                offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s("pv")))
                    .with_topics(None),
            ])
        } else {
            OffsetFetchRequest::default()
                .with_group_id(GroupId(s("pv")))
                .with_topics(Some(vec![
                    offset_fetch_request::OffsetFetchRequestTopic::default()
                        .with_name(t())
                        .with_partition_indexes(vec![0]),
                ]))
        }),
        ApiKey::ListGroups => RequestKind::ListGroups(ListGroupsRequest::default()),
        ApiKey::DescribeGroups => RequestKind::DescribeGroups(
            DescribeGroupsRequest::default().with_groups(vec![GroupId(s("pv"))]),
        ),
        ApiKey::DeleteGroups => RequestKind::DeleteGroups(
            DeleteGroupsRequest::default()
                .with_groups_names(vec![GroupId(s(&format!("pv-missing-{v}")))]),
        ),
        ApiKey::OffsetDelete => RequestKind::OffsetDelete(
            OffsetDeleteRequest::default()
                .with_group_id(GroupId(s("pv")))
                .with_topics(vec![
                    offset_delete_request::OffsetDeleteRequestTopic::default()
                        .with_name(t())
                        .with_partitions(vec![
                            offset_delete_request::OffsetDeleteRequestPartition::default()
                                .with_partition_index(0),
                        ]),
                ]),
        ),
        ApiKey::ConsumerGroupHeartbeat => RequestKind::ConsumerGroupHeartbeat(
            ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(s(&format!("pv-848-{v}"))))
                .with_member_id(s(&uuid::Uuid::new_v4().to_string()))
                .with_member_epoch(0)
                .with_rebalance_timeout_ms(30_000)
                .with_subscribed_topic_names(Some(vec![t()]))
                .with_topic_partitions(Some(vec![])),
        ),
        ApiKey::ConsumerGroupDescribe => RequestKind::ConsumerGroupDescribe(
            ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s("pv-848-0"))]),
        ),
        ApiKey::OffsetForLeaderEpoch => RequestKind::OffsetForLeaderEpoch(
            OffsetForLeaderEpochRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![
                    offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                        .with_topic(t())
                        .with_partitions(vec![
                            offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                                .with_partition(0)
                                .with_current_leader_epoch(-1)
                                .with_leader_epoch(0),
                        ]),
                ]),
        ),
        ApiKey::ElectLeaders => RequestKind::ElectLeaders(
            ElectLeadersRequest::default()
                .with_election_type(0)
                .with_topic_partitions(Some(vec![elect_leaders_request::TopicPartitions::default(
                )
                .with_topic(t())
                .with_partitions(vec![0])]))
                .with_timeout_ms(10_000),
        ),
        // Cancelling a reassignment that is not in progress: answered per partition.
        ApiKey::AlterPartitionReassignments => RequestKind::AlterPartitionReassignments(
            AlterPartitionReassignmentsRequest::default()
                .with_timeout_ms(10_000)
                .with_topics(vec![
                    alter_partition_reassignments_request::ReassignableTopic::default()
                        .with_name(t())
                        .with_partitions(vec![
                            alter_partition_reassignments_request::ReassignablePartition::default()
                                .with_partition_index(0)
                                .with_replicas(None),
                        ]),
                ]),
        ),
        ApiKey::ListPartitionReassignments => RequestKind::ListPartitionReassignments(
            ListPartitionReassignmentsRequest::default()
                .with_timeout_ms(10_000)
                .with_topics(None),
        ),
        ApiKey::DescribeLogDirs => {
            RequestKind::DescribeLogDirs(DescribeLogDirsRequest::default().with_topics(None))
        }
        ApiKey::DescribeQuorum => {
            RequestKind::DescribeQuorum(DescribeQuorumRequest::default().with_topics(vec![
                describe_quorum_request::TopicData::default()
                    .with_topic_name(TopicName(s("__cluster_metadata")))
                    .with_partitions(vec![
                        describe_quorum_request::PartitionData::default().with_partition_index(0),
                    ]),
            ]))
        }
        // On this PLAINTEXT listener the SASL requests get ILLEGAL_SASL_STATE.
        ApiKey::SaslHandshake => RequestKind::SaslHandshake(
            SaslHandshakeRequest::default().with_mechanism(s("SCRAM-SHA-512")),
        ),
        ApiKey::SaslAuthenticate => RequestKind::SaslAuthenticate(
            SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"n,,n=u,r=x")),
        ),
        ApiKey::DescribeUserScramCredentials => RequestKind::DescribeUserScramCredentials(
            DescribeUserScramCredentialsRequest::default().with_users(None),
        ),
        // Deleting a credential nobody has: RESOURCE_NOT_FOUND for that user.
        ApiKey::AlterUserScramCredentials => RequestKind::AlterUserScramCredentials(
            AlterUserScramCredentialsRequest::default().with_deletions(vec![
                alter_user_scram_credentials_request::ScramCredentialDeletion::default()
                    .with_name(s("nobody"))
                    .with_mechanism(2),
            ]),
        ),
        ApiKey::CreateAcls => RequestKind::CreateAcls(CreateAclsRequest::default().with_creations(
            vec![create_acls_request::AclCreation::default()
                .with_resource_type(2)
                .with_resource_name(s("v"))
                .with_resource_pattern_type(3)
                .with_principal(s("User:reader"))
                .with_host(s("*"))
                .with_operation(3)
                .with_permission_type(3)],
        )),
        ApiKey::DescribeAcls => RequestKind::DescribeAcls(
            DescribeAclsRequest::default()
                .with_resource_type_filter(1)
                .with_pattern_type_filter(1)
                .with_operation(1)
                .with_permission_type(1),
        ),
        ApiKey::DeleteAcls => RequestKind::DeleteAcls(DeleteAclsRequest::default().with_filters(
            vec![delete_acls_request::DeleteAclsFilter::default()
                .with_resource_type_filter(2)
                .with_resource_name_filter(Some(s("no-such-topic")))
                .with_pattern_type_filter(1)
                .with_operation(1)
                .with_permission_type(1)],
        )),
        other => panic!("no request for {other:?}: add one when the API is implemented"),
    }
}

/// The main error code(s) of a response; all must be 0 for these well-formed requests.
fn errors(resp: &ResponseKind) -> Vec<i16> {
    match resp {
        ResponseKind::Produce(r) => r
            .responses
            .iter()
            .flat_map(|t| t.partition_responses.iter().map(|p| p.error_code))
            .collect(),
        ResponseKind::Fetch(r) => std::iter::once(r.error_code)
            .chain(
                r.responses
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
            )
            .collect(),
        ResponseKind::ListOffsets(r) => r
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect(),
        ResponseKind::Metadata(r) => r.topics.iter().map(|t| t.error_code).collect(),
        ResponseKind::ApiVersions(r) => vec![r.error_code],
        ResponseKind::CreateTopics(r) => r.topics.iter().map(|t| t.error_code).collect(),
        ResponseKind::DeleteTopics(r) => r.responses.iter().map(|t| t.error_code).collect(),
        ResponseKind::InitProducerId(r) => vec![r.error_code],
        ResponseKind::FindCoordinator(r) => std::iter::once(r.error_code)
            .chain(r.coordinators.iter().map(|c| c.error_code))
            .collect(),
        ResponseKind::DescribeConfigs(r) => r.results.iter().map(|x| x.error_code).collect(),
        ResponseKind::AlterConfigs(r) => r.responses.iter().map(|x| x.error_code).collect(),
        ResponseKind::IncrementalAlterConfigs(r) => {
            r.responses.iter().map(|x| x.error_code).collect()
        }
        ResponseKind::CreatePartitions(r) => r.results.iter().map(|x| x.error_code).collect(),
        ResponseKind::DeleteRecords(r) => r
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect(),
        ResponseKind::DescribeCluster(r) => vec![r.error_code],
        // The single leader already is the preferred one.
        ResponseKind::ElectLeaders(r) => std::iter::once(r.error_code)
            .chain(r.replica_election_results.iter().flat_map(|t| {
                t.partition_result
                    .iter()
                    .map(|p| if p.error_code == 84 { 0 } else { p.error_code })
            }))
            .collect(),
        ResponseKind::AlterPartitionReassignments(r) => std::iter::once(r.error_code)
            .chain(r.responses.iter().flat_map(|t| {
                t.partitions
                    .iter()
                    // NO_REASSIGNMENT_IN_PROGRESS is the right answer here.
                    .map(|p| if p.error_code == 85 { 0 } else { p.error_code })
            }))
            .collect(),
        ResponseKind::ListPartitionReassignments(r) => vec![r.error_code],
        ResponseKind::DescribeLogDirs(r) => std::iter::once(r.error_code)
            .chain(r.results.iter().map(|d| d.error_code))
            .collect(),
        ResponseKind::OffsetForLeaderEpoch(r) => r
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect(),
        ResponseKind::DescribeQuorum(r) => std::iter::once(r.error_code)
            .chain(
                r.topics
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
            )
            .collect(),
        ResponseKind::DescribeTopicPartitions(r) => r.topics.iter().map(|t| t.error_code).collect(),
        ResponseKind::SaslHandshake(r) => vec![r.error_code],
        ResponseKind::SaslAuthenticate(r) => vec![r.error_code],
        ResponseKind::DescribeUserScramCredentials(r) => std::iter::once(r.error_code)
            .chain(r.results.iter().map(|u| u.error_code))
            .collect(),
        ResponseKind::AlterUserScramCredentials(r) => {
            r.results.iter().map(|u| u.error_code).collect()
        }
        ResponseKind::CreateAcls(r) => r.results.iter().map(|x| x.error_code).collect(),
        ResponseKind::DescribeAcls(r) => vec![r.error_code],
        ResponseKind::DeleteAcls(r) => r.filter_results.iter().map(|x| x.error_code).collect(),
        ResponseKind::JoinGroup(r) => vec![r.error_code],
        ResponseKind::SyncGroup(r) => vec![r.error_code],
        ResponseKind::Heartbeat(r) => vec![r.error_code],
        ResponseKind::LeaveGroup(r) => std::iter::once(r.error_code)
            .chain(r.members.iter().map(|m| m.error_code))
            .collect(),
        ResponseKind::OffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect(),
        ResponseKind::OffsetFetch(r) => std::iter::once(r.error_code)
            .chain(r.groups.iter().map(|g| g.error_code))
            .collect(),
        ResponseKind::ListGroups(r) => vec![r.error_code],
        ResponseKind::DescribeGroups(r) => r.groups.iter().map(|g| g.error_code).collect(),
        ResponseKind::DeleteGroups(r) => r.results.iter().map(|g| g.error_code).collect(),
        ResponseKind::OffsetDelete(r) => vec![r.error_code],
        ResponseKind::ConsumerGroupHeartbeat(r) => vec![r.error_code],
        ResponseKind::ConsumerGroupDescribe(r) => r.groups.iter().map(|g| g.error_code).collect(),
        _ => vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_advertised_version_of_every_api_is_answered() {
    // With the authorizer on and the (anonymous) client a super user, so every API
    // also runs through its ACL check.
    let b = TestBroker::start_with(&[
        "group.initial.rebalance.delay.ms=0",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users=User:ANONYMOUS",
    ])
    .await;
    create_topic(&b.bootstrap, "v", 1, &[]).await;
    create_topic(&b.bootstrap, "grow", 1, &[]).await;
    let mut raw = RawClient::connect(&b.bootstrap);
    let ResponseKind::Metadata(md) = raw.call(
        ApiKey::Metadata,
        12,
        RequestKind::Metadata(MetadataRequest::default().with_topics(None)),
    ) else {
        panic!()
    };
    let topic_id = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().unwrap().0.as_str() == "v")
        .unwrap()
        .topic_id;
    let mut order: Vec<_> = SUPPORTED.to_vec();
    // Create before delete, so each DeleteTopics version has its own topic.
    // Commit before fetching, describing or deleting offsets.
    order.sort_by_key(|(k, _, _)| match k {
        ApiKey::OffsetCommit => 0,
        ApiKey::DeleteTopics => 2,
        _ => 1,
    });
    for (api, min, max) in order {
        for v in min..=max {
            let resp = raw.call(api, v, request(api, v, topic_id));
            let errs = errors(&resp);
            // The answers these requests must get (beyond NONE).
            let allowed: &[i16] = match api {
                ApiKey::JoinGroup => &[79], // MEMBER_ID_REQUIRED (v4+)
                ApiKey::SyncGroup | ApiKey::Heartbeat | ApiKey::LeaveGroup => &[25], // UNKNOWN_MEMBER_ID
                ApiKey::DeleteGroups => &[69], // GROUP_ID_NOT_FOUND
                ApiKey::SaslHandshake | ApiKey::SaslAuthenticate => &[34], // ILLEGAL_SASL_STATE
                ApiKey::AlterUserScramCredentials => &[91], // RESOURCE_NOT_FOUND
                _ => &[],
            };
            assert!(
                errs.iter().all(|&e| e == 0 || allowed.contains(&e)),
                "{api:?} v{v}: errors {errs:?}"
            );
        }
    }
}
