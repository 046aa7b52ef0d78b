//! Latency samples in microseconds and their percentiles.

use std::sync::Mutex;
use std::time::Duration;

#[derive(Default)]
pub struct Latencies {
    samples: Mutex<Vec<u32>>,
}

impl Latencies {
    pub fn record(&self, latency: Duration) {
        let micros = latency.as_micros().min(u128::from(u32::MAX)) as u32;
        self.samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(micros);
    }

    /// (p50, p99, p999) in milliseconds; zeros when nothing was recorded.
    pub fn percentiles_ms(&self) -> (f64, f64, f64) {
        let mut samples = self
            .samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if samples.is_empty() {
            return (0.0, 0.0, 0.0);
        }
        samples.sort_unstable();
        let at = |q: f64| {
            let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
            f64::from(samples[index]) / 1000.0
        };
        (at(0.50), at(0.99), at(0.999))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_ranked_samples() {
        let latencies = Latencies::default();
        for ms in 1..=1000u64 {
            latencies.record(Duration::from_millis(ms));
        }
        let (p50, p99, p999) = latencies.percentiles_ms();
        assert_eq!((p50.round(), p99, p999), (501.0, 990.0, 999.0));
    }
}
