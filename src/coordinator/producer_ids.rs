//! Producer ids for idempotent producers: handed out from blocks reserved through the
//! metadata quorum, so an id is never given twice, across restarts included.

use tokio::sync::Mutex;

use crate::metadata::{ApplyReply, MetadataError, MetadataQuorum, MetadataRecord};

/// Ids reserved per quorum round trip.
const BLOCK: i64 = 1000;

/// Why no producer id could be handed out.
#[derive(Debug, thiserror::Error)]
pub enum ProducerIdError {
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error("the metadata quorum refused to reserve producer ids: {0:?}")]
    Refused(ApplyReply),
}

/// The block of producer ids this broker is handing out. Owned by the broker; the
/// async mutex serialises refills.
#[derive(Default)]
pub struct ProducerIdPool {
    /// (next, end) of the current block.
    block: Mutex<(i64, i64)>,
}

impl ProducerIdPool {
    pub async fn next(&self, quorum: &MetadataQuorum) -> Result<i64, ProducerIdError> {
        let mut block = self.block.lock().await;
        if block.0 >= block.1 {
            match quorum
                .propose(MetadataRecord::AllocateProducerIds { count: BLOCK })
                .await?
            {
                ApplyReply::ProducerIdBlock(first) => *block = (first, first + BLOCK),
                other => return Err(ProducerIdError::Refused(other)),
            }
        }
        let id = block.0;
        block.0 += 1;
        Ok(id)
    }
}
