//! Consumer-group APIs of the classic protocol: JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, OffsetCommit, OffsetFetch, ListGroups, DescribeGroups, DeleteGroups
//! and OffsetDelete, mapped onto the group coordinator.

use std::time::Duration;

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    consumer_group_describe_response, consumer_group_heartbeat_response, delete_groups_response,
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse, DeleteGroupsRequest, DeleteGroupsResponse,
    DescribeGroupsRequest, DescribeGroupsResponse, GroupId, HeartbeatRequest, HeartbeatResponse,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest,
    OffsetDeleteResponse, OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest,
    SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::authorize::Access;
use super::{str_bytes, Broker, AUTHORIZED_OPERATIONS_OMITTED};
use crate::coordinator::group::state::{CommittedOffset, JoinRequest};
use crate::error::code;
use crate::metadata::acl::{Operation, ResourceType};

fn opt(s: &Option<StrBytes>) -> Option<String> {
    s.as_ref().map(|v| v.as_str().to_string())
}

pub async fn handle_join_group(
    broker: &Broker,
    access: &Access,
    r: JoinGroupRequest,
    version: i16,
    client_id: &str,
    client_host: &str,
) -> JoinGroupResponse {
    if !access.group(Operation::Read, r.group_id.0.as_str()) {
        return JoinGroupResponse::default()
            .with_error_code(code::GROUP_AUTHORIZATION_FAILED)
            .with_generation_id(-1);
    }
    let session = Duration::from_millis(r.session_timeout_ms.max(0) as u64);
    let rebalance = if version >= 1 {
        Duration::from_millis(r.rebalance_timeout_ms.max(0) as u64)
    } else {
        session
    };
    let req = JoinRequest {
        member_id: r.member_id.as_str().to_string(),
        instance_id: opt(&r.group_instance_id),
        client_id: client_id.to_string(),
        client_host: client_host.to_string(),
        session_timeout: session,
        rebalance_timeout: rebalance,
        protocol_type: r.protocol_type.as_str().to_string(),
        protocols: r
            .protocols
            .iter()
            .map(|p| (p.name.as_str().to_string(), p.metadata.clone()))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let out = broker.groups.join(r.group_id.0.as_str(), req).await;
    let mut resp = JoinGroupResponse::default()
        .with_error_code(out.error)
        .with_generation_id(out.generation)
        .with_protocol_name(Some(str_bytes(out.protocol_name.as_deref().unwrap_or(""))))
        .with_leader(str_bytes(&out.leader))
        .with_member_id(str_bytes(&out.member_id))
        .with_members(
            out.members
                .iter()
                .map(|(id, instance, metadata)| {
                    let m = JoinGroupResponseMember::default()
                        .with_member_id(str_bytes(id))
                        .with_metadata(metadata.clone());
                    if version >= 5 {
                        m.with_group_instance_id(instance.as_deref().map(str_bytes))
                    } else {
                        m
                    }
                })
                .collect(),
        );
    if version >= 7 {
        resp = resp.with_protocol_type(out.protocol_type.as_deref().map(str_bytes));
    }
    if version >= 9 {
        resp = resp.with_skip_assignment(out.skip_assignment);
    }
    resp
}

pub async fn handle_sync_group(
    broker: &Broker,
    access: &Access,
    r: SyncGroupRequest,
    version: i16,
) -> SyncGroupResponse {
    if !access.group(Operation::Read, r.group_id.0.as_str()) {
        return SyncGroupResponse::default().with_error_code(code::GROUP_AUTHORIZATION_FAILED);
    }
    let assignments = r
        .assignments
        .iter()
        .map(|a| (a.member_id.as_str().to_string(), a.assignment.clone()))
        .collect();
    let out = broker
        .groups
        .sync(
            r.group_id.0.as_str(),
            r.member_id.as_str(),
            r.group_instance_id.as_ref().map(|s| s.as_str()),
            r.generation_id,
            assignments,
        )
        .await;
    let resp = SyncGroupResponse::default()
        .with_error_code(out.error)
        .with_assignment(out.assignment);
    if version >= 5 {
        resp.with_protocol_type(out.protocol_type.as_deref().map(str_bytes))
            .with_protocol_name(out.protocol_name.as_deref().map(str_bytes))
    } else {
        resp
    }
}

pub fn handle_heartbeat(
    broker: &Broker,
    access: &Access,
    r: HeartbeatRequest,
) -> HeartbeatResponse {
    if !access.group(Operation::Read, r.group_id.0.as_str()) {
        return HeartbeatResponse::default().with_error_code(code::GROUP_AUTHORIZATION_FAILED);
    }
    let error = broker.groups.heartbeat(
        r.group_id.0.as_str(),
        r.member_id.as_str(),
        r.group_instance_id.as_ref().map(|s| s.as_str()),
        r.generation_id,
    );
    HeartbeatResponse::default().with_error_code(error)
}

pub async fn handle_leave_group(
    broker: &Broker,
    access: &Access,
    r: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    if !access.group(Operation::Read, r.group_id.0.as_str()) {
        return LeaveGroupResponse::default().with_error_code(code::GROUP_AUTHORIZATION_FAILED);
    }
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        r.members
            .iter()
            .map(|m| (m.member_id.as_str().to_string(), opt(&m.group_instance_id)))
            .collect()
    } else {
        vec![(r.member_id.as_str().to_string(), None)]
    };
    let codes = broker.groups.leave(r.group_id.0.as_str(), &members).await;
    if version < 3 {
        return LeaveGroupResponse::default()
            .with_error_code(codes.first().copied().unwrap_or(code::UNKNOWN_MEMBER_ID));
    }
    LeaveGroupResponse::default()
        .with_error_code(code::NONE)
        .with_members(
            members
                .into_iter()
                .zip(codes)
                .map(|((id, instance), c)| {
                    MemberResponse::default()
                        .with_member_id(str_bytes(&id))
                        .with_group_instance_id(instance.as_deref().map(str_bytes))
                        .with_error_code(c)
                })
                .collect(),
        )
}

pub async fn handle_offset_commit(
    broker: &Broker,
    access: &Access,
    r: OffsetCommitRequest,
    version: i16,
) -> OffsetCommitResponse {
    // READ on the group, else every partition is refused; then READ on each topic.
    let group_denied = !access.group(Operation::Read, r.group_id.0.as_str());
    // v10 names topics by id (KIP-848); an id this cluster does not know gets
    // UNKNOWN_TOPIC_ID on each of its partitions and commits nothing.
    let image = broker.admin.image();
    let names: Vec<Option<String>> = r
        .topics
        .iter()
        .map(|t| {
            if version >= 10 {
                image
                    .topics
                    .get(&t.topic_id)
                    .map(|topic| topic.name.clone())
            } else {
                Some(t.name.0.as_str().to_string())
            }
        })
        .collect();
    let denied: Vec<Option<i16>> = names
        .iter()
        .map(|name| match name {
            _ if group_denied => Some(code::GROUP_AUTHORIZATION_FAILED),
            Some(n) if !access.topic(Operation::Read, n) => Some(code::TOPIC_AUTHORIZATION_FAILED),
            _ => None,
        })
        .collect();
    let mut offsets = Vec::new();
    for ((t, name), denied) in r.topics.iter().zip(&names).zip(&denied) {
        let Some(name) = name else { continue };
        if denied.is_some() {
            continue;
        }
        for p in &t.partitions {
            let epoch = if version >= 6 {
                p.committed_leader_epoch
            } else {
                -1
            };
            offsets.push((
                name.clone(),
                p.partition_index,
                p.committed_offset,
                epoch,
                opt(&p.committed_metadata),
            ));
        }
    }
    let instance = if version >= 7 {
        r.group_instance_id.as_ref().map(|s| s.as_str())
    } else {
        None
    };
    let committed = offsets.len();
    let codes = if committed == 0 {
        Vec::new()
    } else {
        match broker
            .groups
            .commit_offsets(
                r.group_id.0.as_str(),
                r.generation_id_or_member_epoch,
                r.member_id.as_str(),
                instance,
                offsets,
            )
            .await
        {
            Ok(codes) => codes,
            Err(e) => vec![e; committed],
        }
    };
    let mut codes = codes.into_iter();
    let topics = r
        .topics
        .iter()
        .zip(&names)
        .zip(&denied)
        .map(|((t, name), denied)| {
            let topic = if version >= 10 {
                OffsetCommitResponseTopic::default().with_topic_id(t.topic_id)
            } else {
                OffsetCommitResponseTopic::default().with_name(t.name.clone())
            };
            topic.with_partitions(
                t.partitions
                    .iter()
                    .map(|p| {
                        let error = match (name, denied) {
                            (_, Some(denied)) => *denied,
                            (Some(_), None) => codes.next().unwrap_or(code::UNKNOWN_SERVER_ERROR),
                            (None, None) => code::UNKNOWN_TOPIC_ID,
                        };
                        OffsetCommitResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(error)
                    })
                    .collect(),
            )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

fn committed_fields(o: &Option<CommittedOffset>) -> (i64, i32, String) {
    match o {
        Some(o) => (o.offset, o.leader_epoch, o.metadata.clone()),
        None => (-1, -1, String::new()),
    }
}

/// A topic's partitions with their committed offsets (None = nothing committed).
type TopicOffsets = (String, Vec<(i32, Option<CommittedOffset>)>);

/// Groups committed partitions by topic, keeping first-seen topic order.
fn by_topic(rows: Vec<(String, i32, Option<CommittedOffset>)>) -> Vec<TopicOffsets> {
    let mut out: Vec<TopicOffsets> = Vec::new();
    for (t, p, o) in rows {
        match out.iter_mut().find(|(name, _)| *name == t) {
            Some((_, parts)) => parts.push((p, o)),
            None => out.push((t, vec![(p, o)])),
        }
    }
    out
}

/// A partition of OffsetFetch answered with `error` and no offset.
fn unfetched(partition: i32, error: i16) -> OffsetFetchResponsePartitions {
    OffsetFetchResponsePartitions::default()
        .with_partition_index(partition)
        .with_committed_offset(-1)
        .with_committed_leader_epoch(-1)
        .with_metadata(Some(str_bytes("")))
        .with_error_code(error)
}

/// A topic of OffsetFetch v1-7 answered with `error` on each partition, no offsets.
fn unfetched_topic(
    t: &kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic,
    error: i16,
) -> OffsetFetchResponseTopic {
    OffsetFetchResponseTopic::default()
        .with_name(t.name.clone())
        .with_partitions(
            t.partition_indexes
                .iter()
                .map(|p| {
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(*p)
                        .with_committed_offset(-1)
                        .with_error_code(error)
                })
                .collect(),
        )
}

pub fn handle_offset_fetch(
    broker: &Broker,
    access: &Access,
    r: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    // DESCRIBE on the group, then on each topic: named topics without it are refused,
    // and "all topics" leaves them out.
    let group_status = |group: &str| {
        if !access.group(Operation::Describe, group) {
            return Err(code::GROUP_AUTHORIZATION_FAILED);
        }
        broker.groups.status(group)
    };
    let may_describe = |topic: &str| access.topic(Operation::Describe, topic);
    if version >= 8 {
        let image = broker.admin.image();
        let groups = r
            .groups
            .iter()
            .map(|g| {
                if let Err(e) = group_status(g.group_id.0.as_str()) {
                    return OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id.clone())
                        .with_error_code(e);
                }
                if version >= 9 {
                    let member = g.member_id.as_ref().map(|m| m.as_str());
                    let check = broker.groups.check_offset_fetch(
                        g.group_id.0.as_str(),
                        member,
                        g.member_epoch,
                    );
                    if check != code::NONE {
                        return OffsetFetchResponseGroup::default()
                            .with_group_id(g.group_id.clone())
                            .with_error_code(check);
                    }
                }
                // v10 names topics by id (KIP-848): ids this cluster does not know are
                // answered per partition with UNKNOWN_TOPIC_ID.
                let mut unknown_ids = Vec::new();
                let mut denied = Vec::new();
                let topics = g.topics.as_ref().map(|ts| {
                    ts.iter()
                        .filter_map(|t| {
                            let name = if version >= 10 {
                                match image.topics.get(&t.topic_id) {
                                    Some(topic) => topic.name.clone(),
                                    None => {
                                        unknown_ids.push(t);
                                        return None;
                                    }
                                }
                            } else {
                                t.name.0.as_str().to_string()
                            };
                            if !may_describe(&name) {
                                denied.push(t);
                                return None;
                            }
                            Some((name, t.partition_indexes.clone()))
                        })
                        .collect()
                });
                let all_topics = topics.is_none();
                let mut rows = broker.groups.fetch_offsets(g.group_id.0.as_str(), topics);
                if all_topics {
                    rows.retain(|(t, _, _)| may_describe(t));
                }
                let partitions = |parts: Vec<(i32, Option<CommittedOffset>)>| {
                    parts
                        .into_iter()
                        .map(|(p, o)| {
                            let (offset, epoch, metadata) = committed_fields(&o);
                            OffsetFetchResponsePartitions::default()
                                .with_partition_index(p)
                                .with_committed_offset(offset)
                                .with_committed_leader_epoch(epoch)
                                .with_metadata(Some(str_bytes(&metadata)))
                        })
                        .collect()
                };
                let mut topics: Vec<OffsetFetchResponseTopics> = by_topic(rows)
                    .into_iter()
                    .filter_map(|(t, parts)| {
                        let topic = if version >= 10 {
                            // Offsets of a topic deleted since have no id to name them by.
                            let id = image.topic_by_name(&t)?.id;
                            OffsetFetchResponseTopics::default().with_topic_id(id)
                        } else {
                            OffsetFetchResponseTopics::default().with_name(TopicName(str_bytes(&t)))
                        };
                        Some(topic.with_partitions(partitions(parts)))
                    })
                    .collect();
                topics.extend(unknown_ids.into_iter().map(|t| {
                    OffsetFetchResponseTopics::default()
                        .with_topic_id(t.topic_id)
                        .with_partitions(
                            t.partition_indexes
                                .iter()
                                .map(|p| unfetched(*p, code::UNKNOWN_TOPIC_ID))
                                .collect(),
                        )
                }));
                topics.extend(denied.into_iter().map(|t| {
                    OffsetFetchResponseTopics::default()
                        .with_topic_id(t.topic_id)
                        .with_name(t.name.clone())
                        .with_partitions(
                            t.partition_indexes
                                .iter()
                                .map(|p| unfetched(*p, code::TOPIC_AUTHORIZATION_FAILED))
                                .collect(),
                        )
                }));
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id.clone())
                    .with_error_code(code::NONE)
                    .with_topics(topics)
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    if let Err(e) = group_status(r.group_id.0.as_str()) {
        // v2+ carries a top-level error; v0-1 clients see it on every partition.
        let topics = r
            .topics
            .iter()
            .flatten()
            .map(|t| unfetched_topic(t, e))
            .collect();
        return OffsetFetchResponse::default()
            .with_error_code(e)
            .with_topics(topics);
    }
    let (allowed, denied): (Vec<_>, Vec<_>) = r
        .topics
        .iter()
        .flatten()
        .partition(|t| may_describe(t.name.0.as_str()));
    let topics = r.topics.as_ref().map(|_| {
        allowed
            .iter()
            .map(|t| (t.name.0.as_str().to_string(), t.partition_indexes.clone()))
            .collect()
    });
    let all_topics = topics.is_none();
    let mut rows = broker.groups.fetch_offsets(r.group_id.0.as_str(), topics);
    if all_topics {
        rows.retain(|(t, _, _)| may_describe(t));
    }
    let mut topics: Vec<OffsetFetchResponseTopic> = by_topic(rows)
        .into_iter()
        .map(|(t, parts)| {
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(str_bytes(&t)))
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|(p, o)| {
                            let (offset, epoch, metadata) = committed_fields(&o);
                            let part = OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(offset)
                                .with_metadata(Some(str_bytes(&metadata)));
                            if version >= 5 {
                                part.with_committed_leader_epoch(epoch)
                            } else {
                                part
                            }
                        })
                        .collect(),
                )
        })
        .collect();
    topics.extend(
        denied
            .into_iter()
            .map(|t| unfetched_topic(t, code::TOPIC_AUTHORIZATION_FAILED)),
    );
    OffsetFetchResponse::default().with_topics(topics)
}

pub fn handle_list_groups(
    broker: &Broker,
    access: &Access,
    r: ListGroupsRequest,
    version: i16,
) -> ListGroupsResponse {
    let states: Vec<String> = if version >= 4 {
        r.states_filter
            .iter()
            .map(|s| s.as_str().to_string())
            .collect()
    } else {
        Vec::new()
    };
    let types: Vec<String> = if version >= 5 {
        r.types_filter
            .iter()
            .map(|s| s.as_str().to_string())
            .collect()
    } else {
        Vec::new()
    };
    let describe_all = access.cluster(Operation::Describe);
    let groups = broker
        .groups
        .list_groups(&states, &types)
        .into_iter()
        // DESCRIBE on the cluster lists every group; otherwise those the sender may
        // DESCRIBE, silently.
        .filter(|(id, ..)| describe_all || access.group(Operation::Describe, id))
        .map(|(id, protocol_type, state, group_type)| {
            let g = ListedGroup::default()
                .with_group_id(GroupId(str_bytes(&id)))
                .with_protocol_type(str_bytes(&protocol_type));
            let g = if version >= 4 {
                g.with_group_state(str_bytes(state))
            } else {
                g
            };
            if version >= 5 {
                g.with_group_type(str_bytes(group_type))
            } else {
                g
            }
        })
        .collect();
    ListGroupsResponse::default()
        .with_error_code(code::NONE)
        .with_groups(groups)
}

pub fn handle_describe_groups(
    broker: &Broker,
    access: &Access,
    r: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let groups = r
        .groups
        .iter()
        .map(|id| {
            let base = DescribedGroup::default()
                .with_group_id(id.clone())
                .with_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
            if !access.group(Operation::Describe, id.0.as_str()) {
                return base
                    .with_error_code(code::GROUP_AUTHORIZATION_FAILED)
                    .with_group_state(str_bytes(""))
                    .with_protocol_type(str_bytes(""))
                    .with_protocol_data(str_bytes(""));
            }
            // Filled in for the groups described without error, when asked (v3+).
            let base = if version >= 3 && r.include_authorized_operations {
                base.with_authorized_operations(
                    access.authorized_operations(ResourceType::Group, id.0.as_str()),
                )
            } else {
                base
            };
            if let Err(e) = broker.groups.status(id.0.as_str()) {
                return base
                    .with_error_code(e)
                    .with_group_state(str_bytes(""))
                    .with_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
            }
            match broker.groups.describe_group(id.0.as_str()) {
                None => {
                    let dead_ops = base.authorized_operations;
                    let dead = base.with_group_state(str_bytes("Dead"));
                    if version >= 6 {
                        dead.with_error_code(code::GROUP_ID_NOT_FOUND)
                            .with_error_message(Some(str_bytes(&format!(
                                "group '{}' not found",
                                id.0.as_str()
                            ))))
                    } else {
                        dead.with_error_code(code::NONE)
                    }
                    .with_authorized_operations(if version >= 6 {
                        AUTHORIZED_OPERATIONS_OMITTED
                    } else {
                        dead_ops
                    })
                }
                Some(d) => base
                    .with_error_code(code::NONE)
                    .with_group_state(str_bytes(d.state))
                    .with_protocol_type(str_bytes(&d.protocol_type))
                    .with_protocol_data(str_bytes(&d.protocol_name))
                    .with_members(
                        d.members
                            .into_iter()
                            .map(|(member, instance, client, host, metadata, assignment)| {
                                let m = DescribedGroupMember::default()
                                    .with_member_id(str_bytes(&member))
                                    .with_client_id(str_bytes(&client))
                                    .with_client_host(str_bytes(&host))
                                    .with_member_metadata(metadata)
                                    .with_member_assignment(assignment);
                                if version >= 4 {
                                    m.with_group_instance_id(instance.as_deref().map(str_bytes))
                                } else {
                                    m
                                }
                            })
                            .collect(),
                    ),
            }
        })
        .collect();
    // As Kafka answers: the groups refused by the authorizer come first.
    let mut groups: Vec<DescribedGroup> = groups;
    groups.sort_by_key(|g| g.error_code != code::GROUP_AUTHORIZATION_FAILED);
    DescribeGroupsResponse::default().with_groups(groups)
}

pub async fn handle_delete_groups(
    broker: &Broker,
    access: &Access,
    r: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let mut results = Vec::new();
    for id in r.groups_names {
        let error = if access.group(Operation::Delete, id.0.as_str()) {
            broker.groups.delete_group(id.0.as_str()).await
        } else {
            code::GROUP_AUTHORIZATION_FAILED
        };
        results.push(
            delete_groups_response::DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(error),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}

pub async fn handle_offset_delete(
    broker: &Broker,
    access: &Access,
    r: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    if !access.group(Operation::Delete, r.group_id.0.as_str()) {
        return OffsetDeleteResponse::default().with_error_code(code::GROUP_AUTHORIZATION_FAILED);
    }
    // Topics without READ are answered TOPIC_AUTHORIZATION_FAILED and left alone.
    let (allowed, denied): (Vec<_>, Vec<_>) = r
        .topics
        .iter()
        .partition(|t| access.topic(Operation::Read, t.name.0.as_str()));
    let topics: Vec<(String, Vec<i32>)> = allowed
        .iter()
        .map(|t| {
            (
                t.name.0.as_str().to_string(),
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        })
        .collect();
    match broker
        .groups
        .delete_offsets(r.group_id.0.as_str(), topics)
        .await
    {
        Err(e) => OffsetDeleteResponse::default().with_error_code(e),
        Ok(rows) => {
            let mut out: Vec<OffsetDeleteResponseTopic> = Vec::new();
            for (t, p, c) in rows {
                let part = OffsetDeleteResponsePartition::default()
                    .with_partition_index(p)
                    .with_error_code(c);
                match out.iter_mut().find(|x| x.name.0.as_str() == t) {
                    Some(x) => x.partitions.push(part),
                    None => out.push(
                        OffsetDeleteResponseTopic::default()
                            .with_name(TopicName(str_bytes(&t)))
                            .with_partitions(vec![part]),
                    ),
                }
            }
            out.extend(denied.into_iter().map(|t| {
                OffsetDeleteResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                OffsetDeleteResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(code::TOPIC_AUTHORIZATION_FAILED)
                            })
                            .collect(),
                    )
            }));
            OffsetDeleteResponse::default()
                .with_error_code(code::NONE)
                .with_topics(out)
        }
    }
}

/// KIP-848 ConsumerGroupHeartbeat: partitions travel by topic id on the wire.
pub async fn handle_consumer_group_heartbeat(
    broker: &Broker,
    access: &Access,
    r: ConsumerGroupHeartbeatRequest,
    client_id: &str,
    client_host: &str,
) -> ConsumerGroupHeartbeatResponse {
    use crate::coordinator::group::consumer::HeartbeatRequest as Hb;
    // READ on the group; DESCRIBE on every topic subscribed by name.
    let refused = if !access.group(Operation::Read, r.group_id.0.as_str()) {
        Some(code::GROUP_AUTHORIZATION_FAILED)
    } else if r
        .subscribed_topic_names
        .iter()
        .flatten()
        .any(|t| !access.topic(Operation::Describe, t.0.as_str()))
    {
        Some(code::TOPIC_AUTHORIZATION_FAILED)
    } else {
        None
    };
    if let Some(error) = refused {
        return ConsumerGroupHeartbeatResponse::default()
            .with_error_code(error)
            .with_member_epoch(-1);
    }
    let image = broker.admin.image();
    let owned = r.topic_partitions.as_ref().map(|tps| {
        tps.iter()
            .filter_map(|tp| {
                image
                    .topic_by_id(&tp.topic_id)
                    .map(|t| (t.name.clone(), tp.partitions.clone()))
            })
            .flat_map(|(name, parts)| parts.into_iter().map(move |p| (name.clone(), p)))
            .collect()
    });
    let req = Hb {
        member_id: r.member_id.as_str().to_string(),
        member_epoch: r.member_epoch,
        instance_id: opt(&r.instance_id),
        rack_id: opt(&r.rack_id),
        rebalance_timeout: Duration::from_millis(if r.rebalance_timeout_ms > 0 {
            r.rebalance_timeout_ms as u64
        } else {
            300_000
        }),
        subscribed: r
            .subscribed_topic_names
            .as_ref()
            .map(|ts| ts.iter().map(|t| t.0.as_str().to_string()).collect()),
        subscribed_regex: opt(&r.subscribed_topic_regex),
        server_assignor: opt(&r.server_assignor),
        owned,
        client_id: client_id.to_string(),
        client_host: client_host.to_string(),
    };
    let out = broker
        .groups
        .consumer_heartbeat(r.group_id.0.as_str(), req)
        .await;
    tracing::debug!(
        group = r.group_id.0.as_str(),
        member = %out.member_id,
        request_epoch = r.member_epoch,
        epoch = out.member_epoch,
        error = out.error,
        assignment = ?out.assignment.as_ref().map(|a| a.len()),
        owned = ?r.topic_partitions.as_ref().map(|t| t.iter().map(|x| x.partitions.len()).sum::<usize>()),
        subscribed = ?r.subscribed_topic_names.as_ref().map(|t| t.len()),
        "consumer group heartbeat"
    );
    let mut resp = ConsumerGroupHeartbeatResponse::default()
        .with_error_code(out.error)
        .with_error_message(out.message.as_deref().map(str_bytes))
        .with_member_id(Some(str_bytes(&out.member_id)))
        .with_member_epoch(out.member_epoch)
        // Kafka answers a leave (negative epoch) with no heartbeat interval.
        .with_heartbeat_interval_ms(if r.member_epoch < 0 {
            0
        } else {
            broker.groups.consumer_heartbeat_interval().as_millis() as i32
        });
    if out.error == code::NONE {
        if let Some(assignment) = out.assignment {
            resp = resp.with_assignment(Some(
                consumer_group_heartbeat_response::Assignment::default()
                    .with_topic_partitions(by_topic_id(&image, &assignment)),
            ));
        }
    }
    resp
}

/// Groups (topic, partition) pairs by topic id, dropping topics that no longer exist.
fn by_topic_id(
    image: &crate::metadata::ClusterImage,
    tps: &std::collections::BTreeSet<(String, i32)>,
) -> Vec<consumer_group_heartbeat_response::TopicPartitions> {
    let mut out: Vec<consumer_group_heartbeat_response::TopicPartitions> = Vec::new();
    for (topic, p) in tps {
        let Some(t) = image.topic_by_name(topic) else {
            continue;
        };
        match out.iter_mut().find(|x| x.topic_id == t.id) {
            Some(x) => x.partitions.push(*p),
            None => out.push(
                consumer_group_heartbeat_response::TopicPartitions::default()
                    .with_topic_id(t.id)
                    .with_partitions(vec![*p]),
            ),
        }
    }
    out
}

pub fn handle_consumer_group_describe(
    broker: &Broker,
    access: &Access,
    r: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    use consumer_group_describe_response::{
        Assignment, DescribedGroup as Described, Member, TopicPartitions,
    };
    let image = broker.admin.image();
    let describe = |tps: &std::collections::BTreeSet<(String, i32)>| {
        let mut out: Vec<TopicPartitions> = Vec::new();
        for (topic, p) in tps {
            let Some(t) = image.topic_by_name(topic) else {
                continue;
            };
            match out.iter_mut().find(|x| x.topic_id == t.id) {
                Some(x) => x.partitions.push(*p),
                None => out.push(
                    TopicPartitions::default()
                        .with_topic_id(t.id)
                        .with_topic_name(TopicName(str_bytes(topic)))
                        .with_partitions(vec![*p]),
                ),
            }
        }
        Assignment::default().with_topic_partitions(out)
    };
    let groups = r
        .group_ids
        .iter()
        .map(|id| {
            let base = Described::default()
                .with_group_id(id.clone())
                .with_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
            if !access.group(Operation::Describe, id.0.as_str()) {
                return base.with_error_code(code::GROUP_AUTHORIZATION_FAILED);
            }
            match broker.groups.consumer_describe(id.0.as_str()) {
                Err(e) => base
                    .with_error_code(e)
                    .with_error_message(Some(str_bytes(&format!(
                        "group '{}' is not a consumer group",
                        id.0.as_str()
                    ))))
                    .with_group_state(str_bytes("Dead")),
                // A group whose assignments name a topic the sender may not
                // DESCRIBE is not shown (Kafka 4).
                Ok((g, _))
                    if g.members.values().any(|m| {
                        m.assigned
                            .iter()
                            .chain(g.target.get(&m.id).into_iter().flatten())
                            .any(|(t, _)| !access.topic(Operation::Describe, t))
                    }) =>
                {
                    base.with_error_code(code::TOPIC_AUTHORIZATION_FAILED)
                        .with_error_message(Some(str_bytes(
                            "The group has described topic(s) that the client is not authorized to describe.",
                        )))
                }
                Ok((g, state)) => base
                    .with_authorized_operations(if r.include_authorized_operations {
                        access.authorized_operations(ResourceType::Group, id.0.as_str())
                    } else {
                        AUTHORIZED_OPERATIONS_OMITTED
                    })
                    .with_error_code(code::NONE)
                    .with_group_state(str_bytes(state))
                    .with_group_epoch(g.group_epoch)
                    .with_assignment_epoch(g.assignment_epoch)
                    .with_assignor_name(str_bytes(if g.assignor.is_empty() {
                        "uniform"
                    } else {
                        &g.assignor
                    }))
                    .with_members(
                        g.members
                            .values()
                            .map(|m| {
                                Member::default()
                                    .with_member_id(str_bytes(&m.id))
                                    .with_instance_id(m.instance_id.as_deref().map(str_bytes))
                                    .with_rack_id(m.rack_id.as_deref().map(str_bytes))
                                    .with_member_epoch(m.member_epoch)
                                    .with_client_id(str_bytes(&m.client_id))
                                    .with_client_host(str_bytes(&m.client_host))
                                    .with_subscribed_topic_names(
                                        m.subscribed
                                            .iter()
                                            .map(|t| TopicName(str_bytes(t)))
                                            .collect(),
                                    )
                                    .with_subscribed_topic_regex(
                                        m.subscribed_regex.as_deref().map(str_bytes),
                                    )
                                    .with_assignment(describe(&m.assigned))
                                    .with_target_assignment(describe(
                                        &g.target.get(&m.id).cloned().unwrap_or_default(),
                                    ))
                            })
                            .collect(),
                    ),
            }
        })
        .collect();
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}
