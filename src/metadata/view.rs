//! Read side of the metadata quorum: a watch of the latest applied [`ClusterImage`].
//!
//! The state machine (or, on a broker-only node, the metadata observer) publishes a
//! fresh `Arc<ClusterImage>` after every apply batch, with the index of the last entry
//! it covers; readers take cheap `Arc` snapshots and never see a half-applied batch.

use std::sync::Arc;

use tokio::sync::watch;

use super::image::ClusterImage;
use super::MetadataError;

/// An applied image and the metadata log index of the last entry it includes.
#[derive(Clone, Debug, Default)]
pub(crate) struct Published {
    pub(crate) index: Option<u64>,
    pub(crate) image: Arc<ClusterImage>,
}

/// A handle on the latest applied cluster image. Cheap to clone.
#[derive(Clone)]
pub struct MetadataView {
    rx: watch::Receiver<Published>,
}

impl MetadataView {
    /// A view whose [`changed`](Self::changed) waits for changes after this moment.
    pub(crate) fn new(mut rx: watch::Receiver<Published>) -> Self {
        rx.mark_unchanged();
        Self { rx }
    }

    /// The latest applied image (clones the `Arc`).
    pub fn current(&self) -> Arc<ClusterImage> {
        self.rx.borrow().image.clone()
    }

    /// Waits until an image newer than the last one this view waited for is applied.
    /// Fails with [`MetadataError::ShuttingDown`] once the quorum has stopped.
    pub async fn changed(&mut self) -> Result<(), MetadataError> {
        self.rx
            .changed()
            .await
            .map_err(|_| MetadataError::ShuttingDown)
    }
}

impl std::fmt::Debug for MetadataView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataView").finish_non_exhaustive()
    }
}
