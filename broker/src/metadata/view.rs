//! The published metadata image: the controller's state machine replaces it after every applied
//! command, handlers and background tasks read or watch it. A reader holds an `Arc` of one image
//! for as long as it needs a consistent view; no lock is held while it reads.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::image::MetadataImage;

pub struct MetadataView {
    current: watch::Sender<Arc<MetadataImage>>,
}

impl Default for MetadataView {
    fn default() -> Self {
        MetadataView {
            current: watch::channel(Arc::new(MetadataImage::default())).0,
        }
    }
}

impl MetadataView {
    /// The latest image.
    pub fn current(&self) -> Arc<MetadataImage> {
        self.current.borrow().clone()
    }

    pub fn publish(&self, image: MetadataImage) {
        self.current.send_replace(Arc::new(image));
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.current.subscribe()
    }

    /// Waits, at most `timeout`, for an image that satisfies `ready`.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut ready: impl FnMut(&MetadataImage) -> bool,
    ) -> Option<Arc<MetadataImage>> {
        let mut images = self.subscribe();
        let waited = tokio::time::timeout(timeout, images.wait_for(|image| ready(image))).await;
        match waited {
            Ok(Ok(image)) => Some(image.clone()),
            _ => None,
        }
    }
}
