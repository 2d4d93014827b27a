//! FindCoordinator (v0–v6, batched keys from v4). A group's coordinator is the leader
//! of its `__consumer_offsets` partition, as in Kafka. Transactional ids have no coordinator until
//! transactions exist: they are answered COORDINATOR_NOT_AVAILABLE, as Kafka answers
//! while its transaction coordinator cannot be placed, so a transactional client
//! retries and then times out instead of hunting for ACLs that do not exist.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use super::authorize::Access;
use super::{str_bytes, Broker};
use crate::error::code;
use crate::metadata::acl::Operation;
use crate::metadata::{NO_LEADER, OFFSETS_TOPIC};

const KEY_GROUP: i8 = 0;
const KEY_TRANSACTION: i8 = 1;

/// What a transactional client is told while transactions are not implemented.
pub const TRANSACTIONS_UNSUPPORTED: &str =
    "transactions are not supported by this Strata version yet (idempotent producers are)";

/// The broker that coordinates `key`: the leader of its `__consumer_offsets`
/// partition, whose endpoint for `listener` is returned. The offsets topic is created
/// on first use (in a cluster, once `offsets.topic.replication.factor` brokers are
/// registered; until then COORDINATOR_NOT_AVAILABLE, as in Kafka).
async fn locate(
    broker: &Broker,
    key_type: i8,
    key: &str,
    listener: &str,
) -> Result<(i32, String, i32), (i16, String)> {
    if key_type != KEY_GROUP && key_type != KEY_TRANSACTION {
        return Err((
            code::INVALID_REQUEST,
            format!("coordinator key type {key_type} is not supported"),
        ));
    }
    if key_type == KEY_TRANSACTION {
        return Err((
            code::COORDINATOR_NOT_AVAILABLE,
            TRANSACTIONS_UNSUPPORTED.into(),
        ));
    }
    if broker.admin.image().topic_by_name(OFFSETS_TOPIC).is_none() {
        if let Err(e) = broker.admin.ensure_offsets_topic().await {
            return Err((
                code::COORDINATOR_NOT_AVAILABLE,
                format!("{OFFSETS_TOPIC} cannot be created yet: {}", e.message),
            ));
        }
    }
    let image = broker.admin.image();
    let partition = broker.groups.partition_for(key);
    let leader = image
        .topic_by_name(OFFSETS_TOPIC)
        .and_then(|t| t.partitions.get(partition as usize))
        .map(|p| p.leader)
        .unwrap_or(NO_LEADER);
    match image.brokers.get(&leader).filter(|b| !b.fenced) {
        Some(b) => {
            let (host, port) = b.address_for(listener);
            Ok((b.node_id, host.to_string(), port))
        }
        None => Err((
            code::COORDINATOR_NOT_AVAILABLE,
            format!("{OFFSETS_TOPIC} partition {partition} has no leader"),
        )),
    }
}

/// DESCRIBE on the group (key type 0) or the transactional id (1) the key names.
async fn authorized_locate(
    broker: &Broker,
    access: &Access,
    key_type: i8,
    key: &str,
    listener: &str,
) -> Result<(i32, String, i32), (i16, String)> {
    let refused = match key_type {
        0 if !access.group(Operation::Describe, key) => Some(code::GROUP_AUTHORIZATION_FAILED),
        1 if !access.transactional_id(Operation::Describe, key) => {
            Some(code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
        }
        _ => None,
    };
    match refused {
        Some(error) => Err((
            error,
            "not authorized to describe this coordinator key".into(),
        )),
        None => locate(broker, key_type, key, listener).await,
    }
}

pub async fn handle_find_coordinator(
    broker: &Broker,
    access: &Access,
    request: FindCoordinatorRequest,
    version: i16,
    listener: &str,
) -> FindCoordinatorResponse {
    if version < 4 {
        return match authorized_locate(
            broker,
            access,
            request.key_type,
            request.key.as_str(),
            listener,
        )
        .await
        {
            Ok((node, host, port)) => FindCoordinatorResponse::default()
                .with_error_code(code::NONE)
                .with_node_id(BrokerId(node))
                .with_host(str_bytes(&host))
                .with_port(port),
            Err((error, message)) => FindCoordinatorResponse::default()
                .with_error_code(error)
                .with_error_message(Some(str_bytes(&message)))
                .with_node_id(BrokerId(-1))
                .with_port(-1),
        };
    }
    let mut coordinators = Vec::with_capacity(request.coordinator_keys.len());
    for key in &request.coordinator_keys {
        let c = Coordinator::default().with_key(key.clone());
        coordinators.push(
            match authorized_locate(broker, access, request.key_type, key.as_str(), listener).await
            {
                Ok((node, host, port)) => c
                    .with_error_code(code::NONE)
                    .with_node_id(BrokerId(node))
                    .with_host(str_bytes(&host))
                    .with_port(port),
                Err((error, message)) => c
                    .with_error_code(error)
                    .with_error_message(Some(str_bytes(&message)))
                    .with_node_id(BrokerId(-1))
                    .with_port(-1),
            },
        );
    }
    FindCoordinatorResponse::default().with_coordinators(coordinators)
}
