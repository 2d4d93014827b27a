//! Request handlers: one `match` on the API key; each handler takes a request value
//! and returns a response value, never touching the socket or a file directly.
//! Imports `admin`, `replication`, `metadata`, `config`, `error`, `protocol`.

mod acls;
mod admin_ops;
pub mod authorize;
mod configs;
mod coordinator;
mod epochs;
mod fetch;
mod groups;
mod list_offsets;
mod metadata;
mod produce;
mod producer_id;
mod quorum;
mod replica_fetch;
mod scram_users;
mod topics;

use std::sync::Arc;

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsResponse, RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use tracing::debug;

use crate::admin::Admin;
use crate::config::BrokerConfig;
use crate::coordinator::{GroupCoordinator, ProducerIdPool};
use crate::protocol::{versions, FileRecords, Request};
use crate::replication::ReplicaManager;

/// Everything a handler may use. Built once by `server`; shared by all connections.
pub struct Broker {
    pub config: Arc<BrokerConfig>,
    pub replicas: Arc<ReplicaManager>,
    pub admin: Admin,
    pub producer_ids: ProducerIdPool,
    pub groups: Arc<GroupCoordinator>,
    /// ACL checks (`authorizer.class.name`, `super.users`).
    pub authorizer: authorize::Authorizer,
    /// Requests per API and their times, counted by the connections.
    pub request_metrics: Arc<crate::metrics::request::RequestMetrics>,
}

/// The slot `request` counts in among the request metrics (a Fetch from a replica is
/// FetchFollower, from a consumer FetchConsumer, as Kafka splits them).
pub fn request_kind(broker: &Broker, request: &Request) -> crate::metrics::request::RequestKind {
    let follower = match &request.body {
        RequestKind::Fetch(f) => replica_fetch::replica_id(f, request.version) >= 0,
        _ => false,
    };
    broker.request_metrics.kind(request.api_key, follower)
}

/// Where a partition's leader is, for KIP-951 hints in NOT_LEADER_OR_FOLLOWER answers:
/// (leader id, leader epoch, host, port, rack) as seen through `listener`.
pub struct LeaderHint {
    pub leader: i32,
    pub leader_epoch: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

pub fn leader_hint(
    broker: &Broker,
    topic: &str,
    partition: i32,
    listener: &str,
) -> Option<LeaderHint> {
    let image = broker.admin.image();
    let p = image
        .topic_by_name(topic)?
        .partitions
        .get(usize::try_from(partition).ok()?)?;
    let b = image.brokers.get(&p.leader).filter(|b| !b.fenced)?;
    let (host, port) = b.address_for(listener);
    Some(LeaderHint {
        leader: p.leader,
        leader_epoch: p.leader_epoch,
        host: host.to_string(),
        port,
        rack: b.rack.clone(),
    })
}

/// Does the topic have this partition (even if this broker does not host it)?
pub fn partition_exists(broker: &Broker, topic: &str, partition: i32) -> bool {
    broker
        .admin
        .image()
        .topic_by_name(topic)
        .is_some_and(|t| partition >= 0 && (partition as usize) < t.partitions.len())
}

/// Kafka's value for "authorized operations were not requested".
pub const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

pub fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Our ApiVersions list, straight from the versions table.
pub fn api_version_list() -> Vec<ApiVersion> {
    versions::SUPPORTED
        .iter()
        .map(|&(key, min, max)| {
            ApiVersion::default()
                .with_api_key(key as i16)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect()
}

/// The answer to an API that needs an operation on the cluster the sender may not do
/// (ALTER to change, DESCRIBE to look), as Kafka gives it: CLUSTER_AUTHORIZATION_FAILED
/// at the top and on every item named. `None`: allowed, or not such an API.
fn refuse_cluster_api(
    access: &authorize::Access,
    body: &RequestKind,
    version: i16,
) -> Option<ResponseKind> {
    use crate::error::code::CLUSTER_AUTHORIZATION_FAILED as CAF;
    use crate::metadata::acl::Operation;
    use kafka_protocol::messages::*;
    let needed = match body {
        RequestKind::ElectLeaders(_)
        | RequestKind::AlterPartitionReassignments(_)
        | RequestKind::AlterUserScramCredentials(_) => Operation::Alter,
        RequestKind::ListPartitionReassignments(_)
        | RequestKind::DescribeLogDirs(_)
        | RequestKind::DescribeQuorum(_)
        | RequestKind::DescribeUserScramCredentials(_) => Operation::Describe,
        _ => return None,
    };
    if access.cluster(needed) {
        return None;
    }
    Some(match body {
        RequestKind::ElectLeaders(r) => ResponseKind::ElectLeaders(
            ElectLeadersResponse::default()
                // The top-level code exists from v1 on.
                .with_error_code(if version >= 1 { CAF } else { 0 })
                .with_replica_election_results(
                    r.topic_partitions
                        .iter()
                        .flatten()
                        .map(|t| {
                            elect_leaders_response::ReplicaElectionResult::default()
                                .with_topic(t.topic.clone())
                                .with_partition_result(
                                    t.partitions
                                        .iter()
                                        .map(|p| {
                                            elect_leaders_response::PartitionResult::default()
                                                .with_partition_id(*p)
                                                .with_error_code(CAF)
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                ),
        ),
        RequestKind::AlterPartitionReassignments(r) => ResponseKind::AlterPartitionReassignments(
            AlterPartitionReassignmentsResponse::default()
                .with_error_code(CAF)
                .with_responses(
                    r.topics
                        .iter()
                        .map(|t| {
                            alter_partition_reassignments_response::ReassignableTopicResponse::default()
                                .with_name(t.name.clone())
                                .with_partitions(
                                    t.partitions
                                        .iter()
                                        .map(|p| {
                                            alter_partition_reassignments_response::ReassignablePartitionResponse::default()
                                                .with_partition_index(p.partition_index)
                                                .with_error_code(CAF)
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                ),
        ),
        RequestKind::AlterUserScramCredentials(r) => {
            let mut users: Vec<&StrBytes> = r
                .deletions
                .iter()
                .map(|d| &d.name)
                .chain(r.upsertions.iter().map(|u| &u.name))
                .collect();
            users.sort();
            users.dedup();
            ResponseKind::AlterUserScramCredentials(
                AlterUserScramCredentialsResponse::default().with_results(
                    users
                        .into_iter()
                        .map(|u| {
                            alter_user_scram_credentials_response::AlterUserScramCredentialsResult::default()
                                .with_user(u.clone())
                                .with_error_code(CAF)
                        })
                        .collect(),
                ),
            )
        }
        RequestKind::ListPartitionReassignments(_) => ResponseKind::ListPartitionReassignments(
            ListPartitionReassignmentsResponse::default().with_error_code(CAF),
        ),
        RequestKind::DescribeLogDirs(_) => {
            // Before v3 there is no error field: no log dirs are shown.
            ResponseKind::DescribeLogDirs(
                DescribeLogDirsResponse::default()
                    .with_error_code(if version >= 3 { CAF } else { 0 }),
            )
        }
        RequestKind::DescribeQuorum(_) => {
            ResponseKind::DescribeQuorum(DescribeQuorumResponse::default().with_error_code(CAF))
        }
        RequestKind::DescribeUserScramCredentials(r) => ResponseKind::DescribeUserScramCredentials(
            DescribeUserScramCredentialsResponse::default()
                .with_error_code(CAF)
                .with_results(
                    r.users
                        .iter()
                        .flatten()
                        .map(|u| {
                            describe_user_scram_credentials_response::DescribeUserScramCredentialsResult::default()
                                .with_user(u.name.clone())
                                .with_error_code(CAF)
                        })
                        .collect(),
                ),
        ),
        _ => return None,
    })
}

/// A response, and the file ranges standing in for its record sets (Fetch only).
pub struct Reply {
    pub body: ResponseKind,
    pub files: FileRecords,
}

impl From<ResponseKind> for Reply {
    fn from(body: ResponseKind) -> Self {
        Reply {
            body,
            files: FileRecords::default(),
        }
    }
}

/// Handles one request. `None` means no response is sent (produce with acks=0).
pub async fn handle(broker: &Arc<Broker>, request: Request) -> Option<Reply> {
    let version = request.version;
    let client_id = request
        .header
        .client_id
        .as_ref()
        .map(|c| c.as_str().to_string())
        .unwrap_or_default();
    let client_host = request.client_host.clone();
    let listener = request.listener.clone();
    let access = broker.authorizer.access(&request, || broker.admin.image());
    debug!(api = ?request.api_key, version, correlation_id = request.header.correlation_id, "request");
    if let Some(refused) = refuse_cluster_api(&access, &request.body, version) {
        return Some(refused.into());
    }
    Some(Reply::from(match request.body {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(
            ApiVersionsResponse::default().with_api_keys(api_version_list()),
        ),
        RequestKind::Metadata(r) => ResponseKind::Metadata(
            metadata::handle_metadata(broker, &access, r, version, &listener).await,
        ),
        RequestKind::DescribeCluster(r) => ResponseKind::DescribeCluster(
            metadata::handle_describe_cluster(broker, &access, r, version, &listener),
        ),
        RequestKind::DescribeTopicPartitions(r) => ResponseKind::DescribeTopicPartitions(
            metadata::handle_describe_topic_partitions(broker, &access, r),
        ),
        RequestKind::Produce(r) => {
            return produce::handle_produce(broker, &access, r, version, &listener)
                .await
                .map(|r| ResponseKind::Produce(r).into())
        }
        RequestKind::Fetch(r) => {
            let (body, files) = fetch::handle_fetch(broker, &access, r, version, &listener).await;
            return Some(Reply {
                body: ResponseKind::Fetch(body),
                files,
            });
        }
        RequestKind::ListOffsets(r) => ResponseKind::ListOffsets(
            list_offsets::handle_list_offsets(broker, &access, r, version).await,
        ),
        RequestKind::CreateTopics(r) => ResponseKind::CreateTopics(
            topics::handle_create_topics(broker, &access, r, version).await,
        ),
        RequestKind::DeleteTopics(r) => ResponseKind::DeleteTopics(
            topics::handle_delete_topics(broker, &access, r, version).await,
        ),
        RequestKind::CreatePartitions(r) => ResponseKind::CreatePartitions(
            topics::handle_create_partitions(broker, &access, r).await,
        ),
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(topics::handle_delete_records(broker, &access, r))
        }
        RequestKind::DescribeConfigs(r) => ResponseKind::DescribeConfigs(
            configs::handle_describe_configs(broker, &access, r, version),
        ),
        RequestKind::AlterConfigs(r) => {
            ResponseKind::AlterConfigs(configs::handle_alter_configs(broker, &access, r).await)
        }
        RequestKind::IncrementalAlterConfigs(r) => ResponseKind::IncrementalAlterConfigs(
            configs::handle_incremental_alter_configs(broker, &access, r).await,
        ),
        RequestKind::FindCoordinator(r) => ResponseKind::FindCoordinator(
            coordinator::handle_find_coordinator(broker, &access, r, version, &listener).await,
        ),
        RequestKind::JoinGroup(r) => ResponseKind::JoinGroup(
            groups::handle_join_group(broker, &access, r, version, &client_id, &client_host).await,
        ),
        RequestKind::SyncGroup(r) => {
            ResponseKind::SyncGroup(groups::handle_sync_group(broker, &access, r, version).await)
        }
        RequestKind::Heartbeat(r) => {
            ResponseKind::Heartbeat(groups::handle_heartbeat(broker, &access, r))
        }
        RequestKind::LeaveGroup(r) => {
            ResponseKind::LeaveGroup(groups::handle_leave_group(broker, &access, r, version).await)
        }
        RequestKind::OffsetCommit(r) => ResponseKind::OffsetCommit(
            groups::handle_offset_commit(broker, &access, r, version).await,
        ),
        RequestKind::OffsetFetch(r) => {
            ResponseKind::OffsetFetch(groups::handle_offset_fetch(broker, &access, r, version))
        }
        RequestKind::ListGroups(r) => {
            ResponseKind::ListGroups(groups::handle_list_groups(broker, &access, r, version))
        }
        RequestKind::DescribeGroups(r) => ResponseKind::DescribeGroups(
            groups::handle_describe_groups(broker, &access, r, version),
        ),
        RequestKind::DeleteGroups(r) => {
            ResponseKind::DeleteGroups(groups::handle_delete_groups(broker, &access, r).await)
        }
        RequestKind::OffsetDelete(r) => {
            ResponseKind::OffsetDelete(groups::handle_offset_delete(broker, &access, r).await)
        }
        RequestKind::ConsumerGroupHeartbeat(r) => ResponseKind::ConsumerGroupHeartbeat(
            groups::handle_consumer_group_heartbeat(broker, &access, r, &client_id, &client_host)
                .await,
        ),
        RequestKind::ConsumerGroupDescribe(r) => ResponseKind::ConsumerGroupDescribe(
            groups::handle_consumer_group_describe(broker, &access, r),
        ),
        RequestKind::OffsetForLeaderEpoch(r) => ResponseKind::OffsetForLeaderEpoch(
            epochs::handle_offset_for_leader_epoch(broker, &access, r),
        ),
        RequestKind::ElectLeaders(r) => {
            ResponseKind::ElectLeaders(admin_ops::handle_elect_leaders(broker, r, version).await)
        }
        RequestKind::AlterPartitionReassignments(r) => ResponseKind::AlterPartitionReassignments(
            admin_ops::handle_alter_partition_reassignments(broker, r).await,
        ),
        RequestKind::ListPartitionReassignments(r) => ResponseKind::ListPartitionReassignments(
            admin_ops::handle_list_partition_reassignments(broker, r),
        ),
        RequestKind::DescribeLogDirs(r) => {
            ResponseKind::DescribeLogDirs(admin_ops::handle_describe_log_dirs(broker, r))
        }
        RequestKind::DescribeQuorum(r) => {
            ResponseKind::DescribeQuorum(quorum::handle_describe_quorum(broker, r).await)
        }
        RequestKind::InitProducerId(r) => ResponseKind::InitProducerId(
            producer_id::handle_init_producer_id(broker, &access, r).await,
        ),
        // SASL requests on a listener without SASL (SASL listeners answer them in
        // `network`, per connection).
        RequestKind::SaslHandshake(_) => ResponseKind::SaslHandshake(
            kafka_protocol::messages::SaslHandshakeResponse::default()
                .with_error_code(crate::error::code::ILLEGAL_SASL_STATE),
        ),
        RequestKind::SaslAuthenticate(_) => ResponseKind::SaslAuthenticate(
            kafka_protocol::messages::SaslAuthenticateResponse::default()
                .with_error_code(crate::error::code::ILLEGAL_SASL_STATE)
                .with_error_message(Some(str_bytes("this listener does not use SASL"))),
        ),
        RequestKind::CreateAcls(r) => {
            ResponseKind::CreateAcls(acls::handle_create_acls(broker, &access, r).await)
        }
        RequestKind::DescribeAcls(r) => {
            ResponseKind::DescribeAcls(acls::handle_describe_acls(broker, &access, r))
        }
        RequestKind::DeleteAcls(r) => {
            ResponseKind::DeleteAcls(acls::handle_delete_acls(broker, &access, r).await)
        }
        RequestKind::DescribeUserScramCredentials(r) => ResponseKind::DescribeUserScramCredentials(
            scram_users::handle_describe_user_scram_credentials(broker, r),
        ),
        RequestKind::AlterUserScramCredentials(r) => ResponseKind::AlterUserScramCredentials(
            scram_users::handle_alter_user_scram_credentials(broker, r).await,
        ),
        // The frame decoder only lets through APIs in the versions table, all matched above.
        other => {
            debug!(request = ?std::mem::discriminant(&other), "no handler");
            return None;
        }
    }))
}
