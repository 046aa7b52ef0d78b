//! The active controller's duties beyond the log: it alone hears broker heartbeats (they are
//! not logged, as in Kafka: only their consequences are), fences a broker whose heartbeats stop
//! for `broker.session.timeout.ms`, unfences one that heartbeats again, gives a new cluster
//! its id, and moves leadership back to preferred replicas (`rebalance`). Heartbeats reach it through the quorum's leader calls, from every node (itself too).

use std::sync::{Arc, Weak};
use std::time::Duration;

use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::commands::{CommandOutcome, ControllerCommand};
use super::service::Controller;
use crate::broker::now_ms;

/// How often the active controller looks for expired sessions.
const FENCE_CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// A request only the active controller answers.
#[derive(Debug, Serialize, Deserialize)]
pub enum LeaderRequest {
    Heartbeat { broker_id: i32, broker_epoch: i64 },
}

#[derive(Debug, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// 0, STALE_BROKER_EPOCH (register again) or NOT_CONTROLLER.
    pub error_code: i16,
    pub fenced: bool,
}

/// Makes this node's quorum member answer leader calls with this controller.
pub fn install(controller: &Arc<Controller>) {
    let weak = Arc::downgrade(controller);
    controller
        .quorum
        .set_leader_handler(Arc::new(move |request: Vec<u8>| {
            let weak = weak.clone();
            Box::pin(async move {
                let reply = match (weak.upgrade(), serde_json::from_slice(&request)) {
                    (
                        Some(controller),
                        Ok(LeaderRequest::Heartbeat {
                            broker_id,
                            broker_epoch,
                        }),
                    ) => heartbeat(&controller, broker_id, broker_epoch).await,
                    _ => HeartbeatReply {
                        error_code: ResponseError::NotController.code(),
                        fenced: true,
                    },
                };
                serde_json::to_vec(&reply).unwrap_or_default()
            })
        }));
}

async fn heartbeat(controller: &Controller, broker_id: i32, broker_epoch: i64) -> HeartbeatReply {
    let image = controller.image();
    let registration = image
        .brokers
        .get(&broker_id)
        .filter(|b| b.epoch == broker_epoch);
    let Some(registration) = registration else {
        return HeartbeatReply {
            error_code: ResponseError::StaleBrokerEpoch.code(),
            fenced: true,
        };
    };
    if let Ok(mut liveness) = controller.liveness.lock() {
        liveness.heartbeat(broker_id, now_ms().max(0) as u64);
    }
    if !registration.fenced {
        return HeartbeatReply {
            error_code: 0,
            fenced: false,
        };
    }
    let unfence = ControllerCommand::UnfenceBroker {
        id: broker_id,
        epoch: broker_epoch,
    };
    match controller.propose(&unfence).await {
        Ok(CommandOutcome::Error { code, message }) => {
            tracing::warn!(broker_id, code, %message, "unfencing refused");
            HeartbeatReply {
                error_code: code,
                fenced: true,
            }
        }
        Ok(_) => {
            tracing::info!(broker_id, broker_epoch, "broker unfenced");
            HeartbeatReply {
                error_code: 0,
                fenced: false,
            }
        }
        Err(error) => HeartbeatReply {
            error_code: error.code().code(),
            fenced: true,
        },
    }
}

/// While this node leads the quorum: on taking over, gives every broker a full session and a
/// new cluster its id; then fences brokers whose sessions expire.
pub async fn run(controller: Weak<Controller>, mut stop: watch::Receiver<bool>) {
    let Some(mut leadership) = controller.upgrade().map(|c| c.quorum.leadership()) else {
        return;
    };
    let mut tick = tokio::time::interval(FENCE_CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leading = false;
    let mut next_rebalance = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = leadership.changed() => if changed.is_err() { return },
            _ = stop.changed() => return,
        }
        let Some(controller) = controller.upgrade() else {
            return;
        };
        let now = now_ms().max(0) as u64;
        let is_leader = controller.quorum.leader() == Some(controller.node_id);
        if is_leader && !leading {
            take_over(&controller, now).await;
        }
        leading = is_leader;
        if !leading {
            continue;
        }
        let image = controller.image();
        let expired = match controller.liveness.lock() {
            Ok(liveness) => liveness.expired(&image, now),
            Err(_) => Vec::new(),
        };
        for fence in expired {
            match controller.propose(&fence).await {
                Ok(outcome) => {
                    tracing::info!(command = ?fence, ?outcome, "broker session expired: fenced")
                }
                Err(error) => tracing::warn!(command = ?fence, %error, "cannot fence broker"),
            }
        }
        if let Some((interval, percent)) = controller.rebalance {
            if tokio::time::Instant::now() >= next_rebalance {
                next_rebalance = tokio::time::Instant::now() + interval;
                rebalance(&controller, percent).await;
            }
        }
    }
}

/// Elects preferred leaders back where leadership is out of balance.
async fn rebalance(controller: &Controller, percent: u32) {
    let image = controller.image();
    for (topic, partition) in super::rebalance::preferred_elections(&image, percent) {
        let elect = ControllerCommand::ElectLeader {
            topic,
            partition,
            election: super::commands::Election::Preferred,
        };
        match controller.propose(&elect).await {
            Ok(CommandOutcome::Error { code, message }) => {
                tracing::debug!(command = ?elect, code, %message, "preferred election not made")
            }
            Ok(_) => tracing::info!(command = ?elect, "leadership back to the preferred replica"),
            Err(error) => tracing::warn!(command = ?elect, %error, "cannot rebalance leadership"),
        }
    }
}

async fn take_over(controller: &Controller, now: u64) {
    let image = controller.image();
    tracing::info!(
        node_id = controller.node_id,
        applied = image.last_applied,
        "this node is now the active controller"
    );
    if let Ok(mut liveness) = controller.liveness.lock() {
        liveness.reset(&image, now);
    }
    if image.cluster_id.is_none() {
        let init = ControllerCommand::InitCluster {
            cluster_id: controller.proposed_cluster_id.clone(),
        };
        if let Err(error) = controller.propose(&init).await {
            tracing::warn!(%error, "cannot set the cluster id");
        }
    }
}
