//! InitProducerId for idempotent (non-transactional) producers. A transactional id gets
//! COORDINATOR_NOT_AVAILABLE (see `coordinator`): retriable, never an authorization
//! failure, since no ACL is involved.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::authorize::Access;
use super::Broker;
use crate::error::{code, producer_id_error_code};
use crate::metadata::acl::{Operation, ResourceType};

pub async fn handle_init_producer_id(
    broker: &Broker,
    access: &Access,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    // A transactional id needs WRITE on it; an idempotent producer IDEMPOTENT_WRITE on
    // the cluster or WRITE on some topic (KIP-679).
    match &request.transactional_id {
        Some(id) if !access.transactional_id(Operation::Write, id.0.as_str()) => {
            return response.with_error_code(code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
        }
        None if !access.cluster(Operation::IdempotentWrite)
            && !access.allows_any(Operation::Write, ResourceType::Topic) =>
        {
            return response.with_error_code(code::CLUSTER_AUTHORIZATION_FAILED);
        }
        _ => {}
    }
    if request
        .transactional_id
        .as_ref()
        .is_some_and(|t| t.0.is_empty())
    {
        return response.with_error_code(code::INVALID_REQUEST);
    }
    if request.transactional_id.is_some() {
        // Transactions arrive with the transaction coordinator; until then this broker
        // is not one (and FindCoordinator says so for transactional ids).
        return response.with_error_code(code::COORDINATOR_NOT_AVAILABLE);
    }
    match broker.producer_ids.next(&broker.admin.quorum).await {
        Ok(id) => response
            .with_error_code(code::NONE)
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => response.with_error_code(producer_id_error_code(&e)),
    }
}
