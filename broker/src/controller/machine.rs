//! The metadata state machine as the quorum sees it: commands arrive as bytes (JSON of
//! [`ControllerCommand`]), are applied to the image by [`apply`](super::apply::apply), and each
//! new image is published to the node's [`MetadataView`]. Snapshots are the image itself.

use std::sync::Arc;

use kafka_protocol::ResponseError;

use super::apply::apply;
use super::commands::{CommandOutcome, ControllerCommand};
use super::quorum::ReplicatedState;
use crate::metadata::image::MetadataImage;
use crate::metadata::view::MetadataView;

pub struct MetadataMachine {
    image: MetadataImage,
    view: Arc<MetadataView>,
}

impl MetadataMachine {
    pub fn new(view: Arc<MetadataView>) -> MetadataMachine {
        MetadataMachine {
            image: MetadataImage::default(),
            view,
        }
    }
}

impl ReplicatedState for MetadataMachine {
    fn apply(&mut self, index: u64, command: &[u8]) -> Vec<u8> {
        let outcome = match serde_json::from_slice::<ControllerCommand>(command) {
            Ok(command) => apply(&mut self.image, index, &command),
            // Only voters propose, but a command this version cannot read (a newer node's)
            // must not stop the log: it changes nothing, here or on any other node.
            Err(error) => {
                tracing::warn!(index, %error, "metadata log entry is not a command this node knows");
                self.image.last_applied = index;
                CommandOutcome::Error {
                    code: ResponseError::InvalidRequest.code(),
                    message: format!("unreadable controller command: {error}"),
                }
            }
        };
        self.view.publish(self.image.clone());
        serde_json::to_vec(&outcome).unwrap_or_default()
    }

    fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(&self.image).unwrap_or_default()
    }

    fn restore(&mut self, index: u64, snapshot: &[u8]) -> Result<(), String> {
        let mut image: MetadataImage = serde_json::from_slice(snapshot)
            .map_err(|e| format!("metadata snapshot at {index} is unreadable: {e}"))?;
        image.last_applied = image.last_applied.max(index);
        self.image = image;
        self.view.publish(self.image.clone());
        Ok(())
    }
}
