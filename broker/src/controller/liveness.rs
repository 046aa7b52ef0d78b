//! Broker liveness on the active controller: the last heartbeat of each broker, in memory only,
//! and which unfenced brokers have missed their session (`broker.session.timeout.ms`) and so
//! should be fenced. The decision is time-dependent, so it stays here, on the proposer; what it
//! yields is a `FenceBroker` command that every node then applies deterministically.

use std::collections::BTreeMap;

use crate::controller::commands::ControllerCommand;
use crate::metadata::image::MetadataImage;

#[derive(Debug, Clone)]
pub struct Liveness {
    session_timeout_ms: u64,
    /// Last heartbeat per broker id (ms, the caller's monotonic clock).
    last_heartbeat: BTreeMap<i32, u64>,
    /// When this controller became active: brokers it has not heard from yet are timed from here,
    /// so that a broker unfenced by the previous controller still gets a full session.
    active_since_ms: u64,
}

impl Liveness {
    pub fn new(session_timeout_ms: u64) -> Self {
        Liveness {
            session_timeout_ms,
            last_heartbeat: BTreeMap::new(),
            active_since_ms: 0,
        }
    }

    pub fn session_timeout_ms(&self) -> u64 {
        self.session_timeout_ms
    }

    /// On becoming the active controller: every registered broker gets a full session from now,
    /// and brokers no longer registered are forgotten.
    pub fn reset(&mut self, image: &MetadataImage, now_ms: u64) {
        self.active_since_ms = now_ms;
        self.last_heartbeat = image.brokers.keys().map(|id| (*id, now_ms)).collect();
    }

    /// Records a heartbeat. The caller checks the broker is registered (that bounds the map).
    pub fn heartbeat(&mut self, broker_id: i32, now_ms: u64) {
        let last = self.last_heartbeat.entry(broker_id).or_insert(now_ms);
        // A clock read out of order must not shorten a session.
        *last = (*last).max(now_ms);
    }

    /// Forgets an unregistered broker.
    pub fn remove(&mut self, broker_id: i32) {
        self.last_heartbeat.remove(&broker_id);
    }

    /// Whether `broker_id`'s session is still running at `now_ms`.
    pub fn is_alive(&self, broker_id: i32, now_ms: u64) -> bool {
        let last = self
            .last_heartbeat
            .get(&broker_id)
            .copied()
            .unwrap_or(self.active_since_ms);
        now_ms.saturating_sub(last) <= self.session_timeout_ms
    }

    /// Unfenced brokers whose last heartbeat is older than the session timeout: the commands to
    /// propose (FenceBroker with the registration's epoch), in broker id order.
    pub fn expired(&self, image: &MetadataImage, now_ms: u64) -> Vec<ControllerCommand> {
        image
            .live_brokers()
            .filter(|b| !self.is_alive(b.id, now_ms))
            .map(|b| ControllerCommand::FenceBroker {
                id: b.id,
                epoch: b.epoch,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::metadata::image::BrokerRegistration;

    fn image(brokers: &[(i32, bool)]) -> MetadataImage {
        let mut image = MetadataImage::default();
        for (id, fenced) in brokers {
            image.brokers.insert(
                *id,
                BrokerRegistration {
                    id: *id,
                    incarnation_id: Uuid::from_u128(*id as u128 + 1),
                    epoch: i64::from(*id) * 10,
                    listeners: vec![],
                    rack: None,
                    fenced: *fenced,
                },
            );
        }
        image
    }

    #[test]
    fn silent_unfenced_broker_expires_after_the_session() {
        let image = image(&[(1, false), (2, false), (3, true)]);
        let mut liveness = Liveness::new(1000);
        liveness.reset(&image, 5000);
        assert!(liveness.expired(&image, 6000).is_empty());
        liveness.heartbeat(1, 5800);
        assert_eq!(
            liveness.expired(&image, 6001),
            vec![ControllerCommand::FenceBroker { id: 2, epoch: 20 }]
        );
        // Broker 3 is already fenced: nothing to propose for it, however long it is silent.
        assert_eq!(
            liveness.expired(&image, 7000),
            vec![
                ControllerCommand::FenceBroker { id: 1, epoch: 10 },
                ControllerCommand::FenceBroker { id: 2, epoch: 20 },
            ]
        );
    }

    #[test]
    fn broker_unknown_at_reset_gets_a_full_session_from_activation() {
        let empty = MetadataImage::default();
        let mut liveness = Liveness::new(1000);
        liveness.reset(&empty, 100);
        // Broker 1 was registered and unfenced by entries applied after the reset.
        let image = image(&[(1, false)]);
        assert!(liveness.expired(&image, 1100).is_empty());
        assert_eq!(liveness.expired(&image, 1101).len(), 1);
    }

    #[test]
    fn out_of_order_heartbeat_does_not_shorten_the_session() {
        let image = image(&[(1, false)]);
        let mut liveness = Liveness::new(1000);
        liveness.reset(&image, 0);
        liveness.heartbeat(1, 2000);
        liveness.heartbeat(1, 1500);
        assert!(liveness.expired(&image, 3000).is_empty());
        assert!(liveness.is_alive(1, 3000));
        assert!(!liveness.is_alive(1, 3001));
    }

    #[test]
    fn reset_forgets_unregistered_brokers() {
        let mut liveness = Liveness::new(1000);
        liveness.heartbeat(9, 10);
        liveness.reset(&image(&[(1, false)]), 50);
        assert!(!liveness.last_heartbeat.contains_key(&9));
        liveness.remove(1);
        assert!(liveness.last_heartbeat.is_empty());
    }
}
