//! Producer ids for idempotent producers. An id must never be handed out twice, by any broker,
//! across restarts too: the log remembers each producer's sequences, and a reused id would make
//! a new producer's first batch look out of order. The controller hands each broker blocks of
//! ids (`AllocateProducerIds` in the metadata log, so no block is given twice); a broker hands
//! out ids from its block and asks for the next one when it runs out, skipping at most one
//! block's unused ids per restart.
//!
//! Before the cluster a broker reserved its blocks itself in `producer-id-block`; the migration
//! to the metadata log starts the controller's blocks after that ([`legacy_reserved_end`]).

use std::path::Path;

use kafka_protocol::ResponseError;
use tokio::sync::Mutex;

use crate::controller::commands::{CommandOutcome, ControllerCommand};
use crate::controller::Controller;

const LEGACY_FILE: &str = "producer-id-block";

#[derive(Default)]
pub struct ProducerIdBlocks {
    // Async: asking for a block waits on the controller, and callers queue behind it.
    block: Mutex<Block>,
}

#[derive(Default)]
struct Block {
    next: i64,
    end: i64,
}

impl ProducerIdBlocks {
    /// A producer id no broker of the cluster has handed out before.
    pub async fn next_id(&self, controller: &Controller) -> Result<i64, ResponseError> {
        let mut block = self.block.lock().await;
        if block.next >= block.end {
            let me = controller.node_id();
            let epoch = controller
                .image()
                .brokers
                .get(&me)
                .map(|b| b.epoch)
                .ok_or(ResponseError::CoordinatorNotAvailable)?;
            let command = ControllerCommand::AllocateProducerIds {
                broker_id: me,
                broker_epoch: epoch,
            };
            match controller.submit(&command).await {
                Ok(CommandOutcome::ProducerIds { start, len }) => {
                    *block = Block {
                        next: start,
                        end: start + i64::from(len),
                    };
                }
                Ok(other) => {
                    tracing::error!(?other, "unexpected answer to a producer id block request");
                    return Err(ResponseError::UnknownServerError);
                }
                Err((code, message)) => {
                    tracing::warn!(?code, %message, "no producer id block");
                    return Err(code);
                }
            }
        }
        let id = block.next;
        block.next += 1;
        Ok(id)
    }
}

/// The end of the last block a pre-cluster broker reserved in its data directory (0 if none):
/// no id below it may be handed out again.
pub fn legacy_reserved_end(data_dir: &Path) -> std::io::Result<i64> {
    let path = data_dir.join(LEGACY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse::<i64>().map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}
