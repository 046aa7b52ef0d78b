//! Metrics in the Prometheus text format, served over plain HTTP at `GET /metrics` when
//! `metrics_listen` is set: per-partition offsets and sizes, the lake's tiering counters, and
//! client connections (open, refused, closed idle or stalled).
//! The endpoint answers one request per connection and nothing else; it needs no HTTP library.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::broker::Broker;

/// Largest request head read; scrapers send a few hundred bytes.
const MAX_REQUEST: usize = 8 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The current metrics as Prometheus text.
pub fn render(broker: &Broker) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    family(
        "inlet_partition_log_start_offset",
        "gauge",
        "First offset clients can read (lake included).",
    );
    family(
        "inlet_partition_log_end_offset",
        "gauge",
        "Offset the next record gets.",
    );
    family(
        "inlet_partition_local_bytes",
        "gauge",
        "Bytes of the partition's local segments.",
    );
    let mut partitions = String::new();
    for topic in broker.topics.list() {
        for partition in topic.partitions() {
            let (Ok(offsets), Ok(local)) = (partition.offsets(), partition.local_extent()) else {
                continue;
            };
            let labels = format!("topic=\"{}\",partition=\"{}\"", topic.name, partition.index);
            let _ = writeln!(
                partitions,
                "inlet_partition_log_start_offset{{{labels}}} {}",
                offsets.log_start
            );
            let _ = writeln!(
                partitions,
                "inlet_partition_log_end_offset{{{labels}}} {}",
                offsets.log_end
            );
            let _ = writeln!(
                partitions,
                "inlet_partition_local_bytes{{{labels}}} {}",
                local.bytes
            );
        }
    }
    out.push_str(&partitions);
    let _ = writeln!(
        out,
        "# HELP {name} Segments log recovery found damaged (cut to their valid prefix, original \
         set aside as <base>.log.corrupt) since the broker started.\n# TYPE {name} counter\n{name} {}",
        inlet_storage::recovery::damaged_segments_total(),
        name = "inlet_log_recovery_damaged_segments_total",
    );
    if let Some(lake) = &broker.lake {
        let m = &lake.metrics;
        let counters = [
            (
                "inlet_lake_segments_tiered_total",
                "counter",
                "Segments copied to the lake.",
                &m.segments_tiered,
            ),
            (
                "inlet_lake_bytes_tiered_total",
                "counter",
                "Bytes put to the lake (segments, indexes, Parquet).",
                &m.bytes_tiered,
            ),
            (
                "inlet_lake_tiering_failures_total",
                "counter",
                "Tiering attempts that failed and will be retried.",
                &m.failures,
            ),
            (
                "inlet_lake_tiering_lag_bytes",
                "gauge",
                "Bytes of closed segments not yet in the lake.",
                &m.lag_bytes,
            ),
            (
                "inlet_lake_bytes_read_total",
                "counter",
                "Record bytes fetched from the lake.",
                &m.bytes_read,
            ),
            (
                "inlet_lake_tiering_postponed_low_disk_total",
                "counter",
                "Segment uploads put off to leave lake.min_free_bytes free on the data disk.",
                &m.postponed_low_disk,
            ),
            (
                "inlet_lake_tiering_waiting_for_disk",
                "gauge",
                "1 while tiering waits for free space on the data disk.",
                &m.waiting_for_disk,
            ),
            (
                "inlet_lake_parquet_skipped_low_disk_total",
                "counter",
                "Segments tiered to a lake off the data disk without their Parquet file, whose staging file did not fit.",
                &m.parquet_skipped_low_disk,
            ),
        ];
        write_families(&mut out, &counters);
    }
    CONNECTIONS.render(&mut out);
    out
}

/// Client connection counters (issue 10 item 6). Process-wide: a process runs one broker.
pub static CONNECTIONS: ConnectionMetrics = ConnectionMetrics {
    open: AtomicU64::new(0),
    refused: AtomicU64::new(0),
    closed_idle: AtomicU64::new(0),
    closed_stalled: AtomicU64::new(0),
    throttled: AtomicU64::new(0),
};

pub struct ConnectionMetrics {
    /// Client connections open now.
    pub open: AtomicU64,
    /// Connections closed on accept for `max.connections` or `max.connections.per.ip`.
    pub refused: AtomicU64,
    /// Connections closed after `connections.max.idle.ms` without a request.
    pub closed_idle: AtomicU64,
    /// Connections closed after `connections.max.stall.ms` inside a request frame.
    pub closed_stalled: AtomicU64,
    /// Produce and fetch answers that carried a quota throttle time.
    pub throttled: AtomicU64,
}

impl ConnectionMetrics {
    fn render(&self, out: &mut String) {
        let families = [
            (
                "inlet_connections_open",
                "gauge",
                "Client connections open.",
                &self.open,
            ),
            (
                "inlet_connections_refused_total",
                "counter",
                "Connections closed on accept: over max.connections or max.connections.per.ip.",
                &self.refused,
            ),
            (
                "inlet_connections_closed_idle_total",
                "counter",
                "Connections closed after connections.max.idle.ms without a request.",
                &self.closed_idle,
            ),
            (
                "inlet_connections_closed_stalled_total",
                "counter",
                "Connections closed after connections.max.stall.ms inside a request.",
                &self.closed_stalled,
            ),
            (
                "inlet_quota_throttled_total",
                "counter",
                "Produce and fetch requests over their client quota (answered with a throttle time).",
                &self.throttled,
            ),
        ];
        write_families(out, &families);
    }
}

/// Serves `GET /metrics` on `addr` until `stop`.
pub async fn serve(broker: Arc<Broker>, addr: SocketAddr, mut stop: watch::Receiver<bool>) {
    let listener = match TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%addr, %error, "cannot serve metrics");
            return;
        }
    };
    tracing::info!(%addr, "serving Prometheus metrics at /metrics");
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => return,
        };
        match accepted {
            Ok((stream, _)) => {
                tokio::spawn(answer(broker.clone(), stream));
            }
            Err(error) => {
                tracing::warn!(%error, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer(broker: Arc<Broker>, mut stream: TcpStream) {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let complete = tokio::time::timeout(READ_TIMEOUT, async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        true
    })
    .await
    .unwrap_or(false);
    if !complete {
        return;
    }
    let request_line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let (status, body) = if request_line.starts_with(b"GET /metrics ") {
        ("200 OK", render(&broker))
    } else {
        ("404 Not Found", "not found: try GET /metrics\n".to_string())
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// One unlabelled sample per family: `(name, type, help, value)`.
fn write_families(out: &mut String, families: &[(&str, &str, &str, &AtomicU64)]) {
    for (name, kind, help, value) in families {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
            value.load(Ordering::Relaxed)
        );
    }
}
