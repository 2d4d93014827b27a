//! InitProducerId for idempotent (non-transactional) producers. Ids come from blocks
//! reserved through the metadata quorum, so they are unique across restarts.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use tokio::sync::Mutex;

use super::Broker;
use crate::admin::AdminError;
use crate::error::code;

/// Ids handed out per quorum round trip.
const BLOCK: i64 = 1000;

/// The block of producer ids this broker is handing out.
#[derive(Default)]
pub struct ProducerIdPool {
    /// (next, end) of the current block.
    block: Mutex<(i64, i64)>,
}

impl ProducerIdPool {
    pub async fn next(&self, admin: &crate::admin::Admin) -> Result<i64, AdminError> {
        let mut block = self.block.lock().await;
        if block.0 >= block.1 {
            let first = admin.allocate_producer_ids(BLOCK).await?;
            *block = (first, first + BLOCK);
        }
        let id = block.0;
        block.0 += 1;
        Ok(id)
    }
}

pub async fn handle_init_producer_id(
    broker: &Broker,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if request
        .transactional_id
        .as_ref()
        .is_some_and(|t| t.0.is_empty())
    {
        return response.with_error_code(code::INVALID_REQUEST);
    }
    if request.transactional_id.is_some() {
        // Transactions arrive with the transaction coordinator; refuse clearly until then.
        return response.with_error_code(code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    }
    match broker.producer_ids.next(&broker.admin).await {
        Ok(id) => response
            .with_error_code(code::NONE)
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => response.with_error_code(e.code),
    }
}
