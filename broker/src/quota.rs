//! Client quota enforcement (Kafka's `ClientQuotaManager`, KIP-13 / KIP-219): produce bytes (the
//! request's size) and consumer fetch bytes (the records answered) are measured per client id
//! over a sliding window of `quota.window.num` samples of `quota.window.size.seconds` each. A
//! client over its quota gets its answer at once with `throttle_time_ms` set to Kafka's
//! `(rate - quota) / quota * window`, and its connection reads nothing more for that long.
//! Replica fetches are never throttled. With no quota configured nothing is measured.
//!
//! Idle clients' measurements are dropped after an hour (Kafka's sensor expiry), and at most
//! [`MAX_CLIENTS`] are kept, so invented client ids cannot grow memory without bound.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::metadata::quotas::{
    quota_for, ClientQuota, ANONYMOUS, CONSUMER_BYTE_RATE, PRODUCER_BYTE_RATE,
};

/// Measurements kept at most; past this, the least recently used client's is dropped.
pub const MAX_CLIENTS: usize = 10_000;
/// A client's measurement is dropped after this long without a request.
const IDLE_EXPIRY_MS: i64 = 60 * 60 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaKind {
    Produce,
    Fetch,
}

impl QuotaKind {
    fn key(self) -> &'static str {
        match self {
            QuotaKind::Produce => PRODUCER_BYTE_RATE,
            QuotaKind::Fetch => CONSUMER_BYTE_RATE,
        }
    }
}

/// One client's bytes in the last `samples` windows.
#[derive(Debug)]
struct Sensor {
    /// (window start ms, bytes), oldest first.
    samples: Vec<(i64, f64)>,
    last_used_ms: i64,
}

pub struct QuotaManager {
    window_ms: i64,
    samples: usize,
    sensors: Mutex<HashMap<(QuotaKind, String), Sensor>>,
}

impl QuotaManager {
    /// `samples` windows of `window_ms` each (Kafka: 11 of 1 s).
    pub fn new(samples: usize, window_ms: u64) -> QuotaManager {
        QuotaManager {
            window_ms: i64::try_from(window_ms.max(1)).unwrap_or(i64::MAX),
            samples: samples.max(2),
            sensors: Mutex::new(HashMap::new()),
        }
    }

    /// Records `bytes` of `kind` for `client_id` at `now_ms` and returns how long the client is
    /// throttled for, in ms (0 when it has no quota or is within it).
    pub fn record(
        &self,
        quotas: &[ClientQuota],
        kind: QuotaKind,
        client_id: &str,
        bytes: u64,
        now_ms: i64,
    ) -> u32 {
        let Some(quota) = quota_for(quotas, ANONYMOUS, client_id, kind.key()) else {
            return 0;
        };
        let Ok(mut sensors) = self.sensors.lock() else {
            return 0;
        };
        if sensors.len() >= MAX_CLIENTS && !sensors.contains_key(&(kind, client_id.to_string())) {
            sensors.retain(|_, s| now_ms - s.last_used_ms < IDLE_EXPIRY_MS);
            if sensors.len() >= MAX_CLIENTS {
                if let Some(oldest) = sensors
                    .iter()
                    .min_by_key(|(_, s)| s.last_used_ms)
                    .map(|(k, _)| k.clone())
                {
                    sensors.remove(&oldest);
                }
            }
        }
        let sensor = sensors
            .entry((kind, client_id.to_string()))
            .or_insert_with(|| Sensor {
                samples: Vec::with_capacity(self.samples),
                last_used_ms: now_ms,
            });
        sensor.last_used_ms = now_ms;
        let horizon = now_ms - self.window_ms * self.samples as i64;
        sensor.samples.retain(|(start, _)| *start > horizon);
        match sensor.samples.last_mut() {
            Some((start, total)) if now_ms < *start + self.window_ms => *total += bytes as f64,
            _ => {
                if sensor.samples.len() == self.samples {
                    sensor.samples.remove(0);
                }
                sensor.samples.push((now_ms, bytes as f64));
            }
        }
        let total: f64 = sensor.samples.iter().map(|(_, b)| b).sum();
        let oldest = sensor.samples.first().map_or(now_ms, |(start, _)| *start);
        // Kafka's Rate: over at least `samples - 1` full windows, so one burst is not a rate.
        let min_elapsed = self.window_ms * (self.samples as i64 - 1);
        let elapsed_ms = (now_ms - oldest).max(min_elapsed).max(1) as f64;
        let rate = total * 1000.0 / elapsed_ms;
        if rate <= quota {
            return 0;
        }
        let throttle = (rate - quota) / quota * elapsed_ms;
        throttle.min(f64::from(u32::MAX)) as u32
    }

    /// How many clients are measured now.
    pub fn measured(&self) -> usize {
        self.sensors.lock().map_or(0, |s| s.len())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::metadata::quotas::CLIENT_ID;

    fn quota(client: &str, key: &str, rate: f64) -> Vec<ClientQuota> {
        vec![ClientQuota {
            entity: BTreeMap::from([(CLIENT_ID.to_string(), Some(client.to_string()))]),
            values: BTreeMap::from([(key.to_string(), rate)]),
        }]
    }

    #[test]
    fn a_client_over_its_rate_is_throttled_by_kafkas_formula() {
        let manager = QuotaManager::new(11, 1000);
        let quotas = quota("app", PRODUCER_BYTE_RATE, 1000.0);
        // 5 000 bytes at once: a rate of 500 B/s over the minimum 10 s window, within quota.
        assert_eq!(
            manager.record(&quotas, QuotaKind::Produce, "app", 5_000, 0),
            0
        );
        // 20 000 bytes: 2 000 B/s over 10 s, so (2000 - 1000) / 1000 * 10 s = 10 s.
        assert_eq!(
            manager.record(&quotas, QuotaKind::Produce, "app", 15_000, 10),
            10_000
        );
        // Another client, and fetches, are not limited by a produce quota of "app".
        assert_eq!(
            manager.record(&quotas, QuotaKind::Produce, "other", 1 << 30, 10),
            0
        );
        assert_eq!(
            manager.record(&quotas, QuotaKind::Fetch, "app", 1 << 30, 10),
            0
        );
        // Later windows forget the burst: 12 s on, the samples have left the window.
        assert_eq!(
            manager.record(&quotas, QuotaKind::Produce, "app", 100, 12_100),
            0
        );
    }

    #[test]
    fn nothing_is_measured_without_quotas_and_measurements_stay_bounded() {
        let manager = QuotaManager::new(11, 1000);
        assert_eq!(manager.record(&[], QuotaKind::Fetch, "app", 1 << 40, 0), 0);
        assert_eq!(manager.measured(), 0);
        let quotas = vec![ClientQuota {
            entity: BTreeMap::from([(CLIENT_ID.to_string(), None)]),
            values: BTreeMap::from([(CONSUMER_BYTE_RATE.to_string(), 1e9)]),
        }];
        for i in 0..(MAX_CLIENTS + 50) {
            manager.record(&quotas, QuotaKind::Fetch, &format!("c{i}"), 1, i as i64);
        }
        assert_eq!(manager.measured(), MAX_CLIENTS);
    }
}
