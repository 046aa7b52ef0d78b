//! `inlet perf produce|consume`: load generators in the spirit of Kafka's producer/consumer perf
//! tests. They report records/s, MB/s and latency percentiles (p50/p99/p999); a progress line
//! goes to stderr once a second, only when stdout is a terminal (so piped JSON stays clean).
//!
//! The producer keeps many Produce requests in flight on each leader connection
//! ([`inlet_protocol::client::pipeline`]) so that it measures the broker, not the round trip.

mod consume;
mod produce;

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde_json::json;

use crate::connect::Context;
use crate::output::{print_json, Output, Table};

#[derive(Args)]
pub struct PerfArgs {
    #[command(subcommand)]
    command: PerfCommand,
}

#[derive(Subcommand)]
enum PerfCommand {
    /// Produce generated records as fast as allowed.
    Produce(produce::PerfProduceArgs),
    /// Read a topic from the beginning as fast as possible.
    Consume(consume::PerfConsumeArgs),
}

pub async fn run(context: &Context, args: PerfArgs) -> anyhow::Result<()> {
    let report = match args.command {
        PerfCommand::Produce(args) => produce::run(context, args).await?,
        PerfCommand::Consume(args) => consume::run(context, args).await?,
    };
    report.print(context.output)
}

/// `10s`, `1m30s`, `500ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))
}

/// Latency samples, each standing for `weight` records (a batch's records share its latency).
#[derive(Default)]
pub struct Latencies {
    samples: Vec<(Duration, u64)>,
}

impl Latencies {
    pub fn record(&mut self, latency: Duration, weight: u64) {
        self.samples.push((latency, weight));
    }

    /// The latency below which a fraction `q` of the records fall, in ms.
    fn percentile(sorted: &[(Duration, u64)], total: u64, q: f64) -> f64 {
        let rank = (q * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (latency, weight) in sorted {
            seen += weight;
            if seen >= rank {
                return latency.as_secs_f64() * 1000.0;
            }
        }
        sorted.last().map_or(0.0, |(l, _)| l.as_secs_f64() * 1000.0)
    }

    /// (avg, p50, p99, p999, max) in ms.
    pub fn summary(&mut self) -> (f64, f64, f64, f64, f64) {
        self.samples.sort_by_key(|s| s.0);
        let total: u64 = self.samples.iter().map(|s| s.1).sum();
        if total == 0 {
            return (0.0, 0.0, 0.0, 0.0, 0.0);
        }
        let sum: f64 = self
            .samples
            .iter()
            .map(|(l, w)| l.as_secs_f64() * 1000.0 * *w as f64)
            .sum();
        let p = |q| Self::percentile(&self.samples, total, q);
        let max = self
            .samples
            .last()
            .map_or(0.0, |s| s.0.as_secs_f64() * 1000.0);
        (sum / total as f64, p(0.5), p(0.99), p(0.999), max)
    }
}

/// What a run measured.
pub struct Report {
    pub what: &'static str,
    pub records: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    pub latencies: Latencies,
    /// What the latency measures, for the reader.
    pub latency_of: &'static str,
}

impl Report {
    fn print(mut self, output: Output) -> anyhow::Result<()> {
        let seconds = self.elapsed.as_secs_f64().max(1e-9);
        let records_per_sec = self.records as f64 / seconds;
        let mb_per_sec = self.bytes as f64 / seconds / (1024.0 * 1024.0);
        let (avg, p50, p99, p999, max) = self.latencies.summary();
        match output {
            Output::Json => print_json(&json!({
                "mode": self.what,
                "records": self.records,
                "bytes": self.bytes,
                "seconds": seconds,
                "records_per_sec": records_per_sec,
                "mb_per_sec": mb_per_sec,
                "latency_of": self.latency_of,
                "latency_ms": {"avg": avg, "p50": p50, "p99": p99, "p999": p999, "max": max},
            })),
            Output::Table => {
                let mut table = Table::new(&[
                    "RECORDS",
                    "SECONDS",
                    "RECORDS/S",
                    "MB/S",
                    "AVG MS",
                    "P50 MS",
                    "P99 MS",
                    "P999 MS",
                    "MAX MS",
                ]);
                table.row(vec![
                    self.records.to_string(),
                    format!("{seconds:.2}"),
                    format!("{records_per_sec:.0}"),
                    format!("{mb_per_sec:.1}"),
                    format!("{avg:.2}"),
                    format!("{p50:.2}"),
                    format!("{p99:.2}"),
                    format!("{p999:.2}"),
                    format!("{max:.2}"),
                ]);
                table.print()?;
                println!("(latency: {})", self.latency_of);
                Ok(())
            }
        }
    }
}

/// Prints a progress line to stderr at most once a second, and only when stdout is a terminal.
pub struct Progress {
    enabled: bool,
    started: Instant,
    last: Instant,
    printed: bool,
}

impl Progress {
    pub fn new() -> Progress {
        let now = Instant::now();
        Progress {
            enabled: std::io::stdout().is_terminal(),
            started: now,
            last: now,
            printed: false,
        }
    }

    pub fn tick(&mut self, records: u64, bytes: u64) {
        if !self.enabled || self.last.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.last = Instant::now();
        let seconds = self.started.elapsed().as_secs_f64();
        eprint!(
            "\r{records} records  {:.0} records/s  {:.1} MB/s  ",
            records as f64 / seconds,
            bytes as f64 / seconds / (1024.0 * 1024.0)
        );
        self.printed = true;
    }

    pub fn finish(&self) {
        if self.printed {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_weigh_each_sample_by_its_records() {
        let mut l = Latencies::default();
        l.record(Duration::from_millis(1), 990);
        l.record(Duration::from_millis(10), 9);
        l.record(Duration::from_millis(100), 1);
        let (_, p50, p99, p999, max) = l.summary();
        assert_eq!((p50, p99, p999, max), (1.0, 1.0, 10.0, 100.0));
    }
}
