//! The leader's ISR upkeep (Kafka's `Partition.maybeShrinkIsr` / `maybeExpandIsr` with the
//! `AlterPartitionManager`): every tick, each partition this broker leads is checked; a follower
//! not caught up for `replica.lag.time.max.ms` is dropped from the ISR, one that has caught up
//! again is added, by an AlterPartition command to the controller. The image that results is
//! applied by the replica manager like any other; a refused change is forgotten and asked again
//! at a later tick if still wanted.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::broker::{now_ms, Broker};
use crate::controller::commands::ControllerCommand;

/// Runs the ISR checks until `stop`.
pub async fn run(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let lag_ms = broker.config.replica_lag_time_max_ms;
    // Often enough that a caught-up follower joins soon after (Kafka checks on each fetch), and
    // that a laggard leaves within about one lag time.
    let tick = Duration::from_millis((lag_ms / 4).clamp(50, 500));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => check_all(&broker, lag_ms as i64).await,
            _ = stop.changed() => return,
        }
    }
}

async fn check_all(broker: &Broker, lag_ms: i64) {
    let me = broker.node_id();
    let image = broker.controller.image();
    let now = now_ms();
    for topic in broker.topics.list() {
        for partition in topic.partitions() {
            let Some(change) = partition.isr_change(me, now, lag_ms, |id| image.is_live(id)) else {
                continue;
            };
            tracing::info!(topic = %topic.name, partition = partition.index,
                isr = ?change.new_isr, leader_epoch = change.leader_epoch, "asking the controller to change the ISR");
            let command = ControllerCommand::AlterPartition {
                topic: topic.name.clone(),
                partition: partition.index,
                leader_id: me,
                leader_epoch: change.leader_epoch,
                partition_epoch: change.partition_epoch,
                new_isr: change.new_isr,
            };
            if let Err((code, message)) = broker.controller.submit(&command).await {
                tracing::info!(topic = %topic.name, partition = partition.index, ?code, %message,
                    "the controller refused the ISR change");
                partition.isr_change_failed(me);
            }
        }
    }
}
