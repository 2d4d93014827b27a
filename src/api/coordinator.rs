//! FindCoordinator (v0–v6, batched keys from v4). A single broker coordinates every
//! group; the group coordinator issue moves group placement to the leader of the
//! group's `__consumer_offsets` partition. Transactional ids have no coordinator until
//! transactions exist: they are answered COORDINATOR_NOT_AVAILABLE, as Kafka answers
//! while its transaction coordinator cannot be placed, so a transactional client
//! retries and then times out instead of hunting for ACLs that do not exist.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::{str_bytes, Broker};
use crate::error::code;

const KEY_GROUP: i8 = 0;
const KEY_TRANSACTION: i8 = 1;

/// What a transactional client is told while transactions are not implemented.
pub const TRANSACTIONS_UNSUPPORTED: &str =
    "transactions are not supported by this Strata version yet (idempotent producers are)";

fn locate(
    broker: &Broker,
    key_type: i8,
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
    let image = broker.admin.image();
    match image.brokers.get(&broker.config.node_id) {
        Some(b) => {
            let (host, port) = b.address_for(listener);
            Ok((b.node_id, host.to_string(), port))
        }
        None => Err((
            code::COORDINATOR_NOT_AVAILABLE,
            "this broker is not registered yet".into(),
        )),
    }
}

pub fn handle_find_coordinator(
    broker: &Broker,
    request: FindCoordinatorRequest,
    version: i16,
    listener: &str,
) -> FindCoordinatorResponse {
    if version < 4 {
        return match locate(broker, request.key_type, listener) {
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
    let coordinators = request
        .coordinator_keys
        .iter()
        .map(|key: &StrBytes| {
            let c = Coordinator::default().with_key(key.clone());
            match locate(broker, request.key_type, listener) {
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
            }
        })
        .collect();
    FindCoordinatorResponse::default().with_coordinators(coordinators)
}
