//! This broker's side of the cluster membership (Kafka's BrokerLifecycleManager): register with
//! a new incarnation id at every start, then heartbeat to the active controller every
//! `broker.heartbeat.interval.ms`. A heartbeat the controller no longer knows (STALE_BROKER_EPOCH:
//! it was fenced and re-registered, or the log lost nothing but the epoch moved) registers again.

use std::sync::Weak;
use std::time::Duration;

use kafka_protocol::ResponseError;
use tokio::sync::watch;

use super::active::{HeartbeatReply, LeaderRequest};
use super::commands::{CommandOutcome, ControllerCommand};
use super::service::Controller;

/// Pause between failed registrations (no quorum yet, an election under way).
const REGISTER_RETRY: Duration = Duration::from_millis(500);

pub async fn run(controller: Weak<Controller>, mut stop: watch::Receiver<bool>) {
    loop {
        let Some(epoch) = register(&controller, &mut stop).await else {
            return;
        };
        if !heartbeat_until_stale(&controller, &mut stop, epoch).await {
            return;
        }
    }
}

/// Registers this incarnation; None when stopping.
async fn register(controller: &Weak<Controller>, stop: &mut watch::Receiver<bool>) -> Option<i64> {
    let mut failures = 0u32;
    loop {
        let controller = controller.upgrade()?;
        let identity = controller.identity.clone();
        let command = ControllerCommand::RegisterBroker {
            id: identity.node_id,
            incarnation_id: identity.incarnation_id,
            listeners: identity.listeners.clone(),
            rack: identity.rack.clone(),
        };
        match controller.propose(&command).await {
            Ok(CommandOutcome::BrokerRegistered { epoch }) => {
                tracing::info!(node_id = identity.node_id, epoch, incarnation = %identity.incarnation_id, "broker registered");
                return Some(epoch);
            }
            Ok(outcome) => tracing::warn!(?outcome, "broker registration refused"),
            Err(error) => {
                failures += 1;
                // Expected while the quorum forms; say so now and then, not every retry.
                if failures % 10 == 1 {
                    tracing::info!(%error, "cannot register with the controller yet");
                }
            }
        }
        drop(controller);
        if sleep_or_stop(stop, REGISTER_RETRY).await {
            return None;
        }
    }
}

/// Heartbeats until the controller says the registration is stale (true) or stopping (false).
async fn heartbeat_until_stale(
    controller: &Weak<Controller>,
    stop: &mut watch::Receiver<bool>,
    epoch: i64,
) -> bool {
    let mut wait = Duration::ZERO;
    loop {
        if sleep_or_stop(stop, wait).await {
            return false;
        }
        let Some(controller) = controller.upgrade() else {
            return false;
        };
        wait = controller.heartbeat_interval;
        let request = LeaderRequest::Heartbeat {
            broker_id: controller.node_id,
            broker_epoch: epoch,
        };
        let Ok(request) = serde_json::to_vec(&request) else {
            return false;
        };
        let answer = controller
            .quorum
            .leader_call(request, controller.heartbeat_interval)
            .await;
        match answer.map(|bytes| serde_json::from_slice::<HeartbeatReply>(&bytes)) {
            Ok(Ok(reply)) if reply.error_code == ResponseError::StaleBrokerEpoch.code() => {
                tracing::info!(
                    epoch,
                    "the controller no longer knows this registration: registering again"
                );
                return true;
            }
            Ok(Ok(reply)) => {
                if reply.fenced {
                    // Heartbeat again soon: the unfencing may just have lost a race.
                    wait = controller
                        .heartbeat_interval
                        .min(Duration::from_millis(200));
                }
            }
            Ok(Err(error)) => tracing::warn!(%error, "unreadable heartbeat reply"),
            Err(error) => tracing::debug!(%error, "heartbeat failed"),
        }
    }
}

/// Sleeps for `duration`; true if asked to stop meanwhile.
async fn sleep_or_stop(stop: &mut watch::Receiver<bool>, duration: Duration) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(duration) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}
