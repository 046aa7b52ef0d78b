//! The listener and the broker's lifetime: start the controller, open the data directory, wait
//! to be registered and unfenced, apply the metadata image to the local logs (loading the groups
//! of the `__consumer_offsets` partitions led here), accept connections (at most
//! `max.connections` in all and `max.connections.per.ip` per client address; one over either limit
//! is closed as soon as it is accepted), run background maintenance (flush policy, retention,
//! tiering to the lake), and on shutdown stop accepting, let every connection finish the request
//! it is processing, then flush and close every log before returning. When accept itself fails
//! (out of file descriptors), the listener backs off and retries; connections already open keep
//! being served.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::broker::{now_ms, Broker, BrokerError};
use crate::cluster::{load_or_create_cluster_id, store_cluster_id};
use crate::config::BrokerConfig;
use crate::connection::{self, RequestBudget};
use crate::controller::{BrokerIdentity, Controller};
use crate::metadata::image::Endpoint;
use crate::metrics::CONNECTIONS;

/// How often flush policies are checked; `flush.ms` is honoured at this granularity.
const FLUSH_CHECK: Duration = Duration::from_millis(100);
/// How often idle mapped pages are released, so resident memory follows the working set.
const RELEASE_IDLE_PAGES: Duration = Duration::from_secs(1);
/// How long shutdown waits for connections to finish their current request.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// First and longest wait before accepting again after accept failed (e.g. EMFILE): long enough
/// not to spin, short enough to resume soon after a connection closes.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Refused connections are logged at info at most this often (each one at debug).
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// File descriptors kept for everything but client connections (logs, indexes, the lake, the
/// metrics endpoint) when the open-file limit caps `max.connections`: this many at least, or an
/// eighth of the limit.
const FD_RESERVE_MIN: u64 = 64;

/// Opens the broker, binds its listener and serves until `shutdown` completes.
pub async fn run(
    config: BrokerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), BrokerError> {
    tokio::pin!(shutdown);
    let listen = config.listen;
    let fresh_log = !config
        .data_dir
        .join(crate::controller::service::METADATA_LOG_DIR)
        .exists();
    let controller = start_controller(&config).await?;
    let opening = controller.clone();
    let mut broker = tokio::task::spawn_blocking(move || Broker::open(config, opening))
        .await
        .map_err(|e| BrokerError::DataDir {
            path: "<recovery task>".into(),
            source: std::io::Error::other(e.to_string()),
        })??;
    // Like a Kafka broker, serve only once registered with the controller and unfenced.
    controller.start_lifecycle();
    let cluster_id = tokio::select! {
        id = controller.wait_until_serving() => id,
        _ = &mut shutdown => {
            controller.shutdown().await;
            return Ok(());
        }
    };
    adopt_cluster_id(&mut broker, cluster_id)?;
    crate::replica::migrate(&broker, fresh_log).await?;
    // The local logs and the groups of the offsets partitions led here, before serving: a
    // restarted coordinator answers with its groups' committed offsets from the first request.
    let broker = Arc::new(broker);
    let applying = broker.clone();
    let _ = tokio::task::spawn_blocking(move || {
        let image = applying.controller.image();
        let replay = crate::group::Replay::Inline;
        applying.replicas.apply_with(&applying, &image, replay)
    })
    .await;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| BrokerError::Listen {
            addr: listen,
            source,
        })?;
    tracing::info!(
        listen = %listen,
        advertised = %broker.config.advertised_listener,
        node_id = broker.node_id(),
        data_dir = %broker.config.data_dir.display(),
        lake = %broker.lake.as_ref().map_or("off".to_string(), |l| l.location.to_string()),
        cluster_id = %broker.cluster_id,
        controller = ?controller.leader(),
        "inlet broker started"
    );
    serve(broker, listener, shutdown).await;
    controller.shutdown().await;
    Ok(())
}

/// Starts this node's controller (a quorum of one unless `controller_quorum_voters` says
/// otherwise) on the data directory.
async fn start_controller(config: &BrokerConfig) -> Result<Arc<Controller>, BrokerError> {
    let data_dir_error = |source| BrokerError::DataDir {
        path: config.data_dir.clone(),
        source,
    };
    std::fs::create_dir_all(&config.data_dir).map_err(data_dir_error)?;
    let proposed_cluster_id =
        load_or_create_cluster_id(&config.data_dir).map_err(data_dir_error)?;
    let (host, port) = config.advertised_host_port()?;
    let identity = BrokerIdentity {
        node_id: config.node_id,
        incarnation_id: uuid::Uuid::new_v4(),
        listeners: vec![Endpoint {
            name: "PLAINTEXT".to_string(),
            host,
            port: u16::try_from(port).unwrap_or_default(),
        }],
        rack: config.broker_rack.clone(),
    };
    Ok(Controller::start(config, identity, proposed_cluster_id).await?)
}

/// The cluster's id (from the metadata log) replaces the one this data directory had: a node
/// that joins a cluster takes the cluster's, and says so.
fn adopt_cluster_id(broker: &mut Broker, cluster_id: String) -> Result<(), BrokerError> {
    if broker.cluster_id != cluster_id {
        tracing::info!(local = %broker.cluster_id, cluster = %cluster_id, "taking the cluster's id");
        store_cluster_id(&broker.config.data_dir, &cluster_id).map_err(|source| {
            BrokerError::DataDir {
                path: broker.config.data_dir.clone(),
                source,
            }
        })?;
        broker.cluster_id = cluster_id;
    }
    Ok(())
}

async fn serve(broker: Arc<Broker>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let maintenance = tokio::spawn(maintain(broker.clone(), stop_rx.clone()));
    let group_timers = tokio::spawn(crate::group::coordinator::run_timers(
        broker.clone(),
        stop_rx.clone(),
    ));
    let txn_driver = tokio::spawn(crate::txn::driver::run(broker.clone(), stop_rx.clone()));
    let tiering = tokio::spawn(crate::lake::run_tiering(broker.clone(), stop_rx.clone()));
    let replicas = tokio::spawn(crate::replica::run(broker.clone(), stop_rx.clone()));
    let isr = tokio::spawn(crate::replication::isr::run(
        broker.clone(),
        stop_rx.clone(),
    ));
    let metrics = broker
        .config
        .metrics_listen
        .map(|addr| tokio::spawn(crate::metrics::serve(broker.clone(), addr, stop_rx.clone())));
    let (max_total, max_per_ip) =
        connection_limits(&broker.config, crate::fd_limit::open_file_limit());
    let slots = Arc::new(ConnectionSlots::new(max_total, max_per_ip));
    let budget = RequestBudget::new(broker.config.queued_max_request_bytes);
    let mut connections = JoinSet::new();
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let mut last_refusal_log: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut shutdown => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                match slots.take(peer.ip()) {
                    Ok(slot) => {
                        let broker = broker.clone();
                        let budget = budget.clone();
                        let stop = stop_rx.clone();
                        connections.spawn(async move {
                            connection::serve(broker, stream, peer, budget, stop).await;
                            drop(slot);
                        });
                    }
                    Err(limit) => {
                        // Closed at once: the client sees the connection end and retries later.
                        drop(stream);
                        let refused = slots.count_refusal();
                        tracing::debug!(%peer, limit, refused_total = refused, "connection refused");
                        if last_refusal_log.is_none_or(|at| at.elapsed() >= REFUSAL_LOG_INTERVAL) {
                            last_refusal_log = Some(Instant::now());
                            tracing::info!(
                                %peer,
                                limit,
                                refused_total = refused,
                                max_connections = max_total,
                                max_connections_per_ip = max_per_ip,
                                "refusing connections over the limit"
                            );
                        }
                    }
                }
            }
            Err(error) => {
                // Out of file descriptors and similar: back off instead of spinning, and keep
                // listening; open connections are served meanwhile and free descriptors as they
                // close. Warn once per run of failures.
                if backoff == ACCEPT_BACKOFF_MIN {
                    tracing::warn!(%error, "accept failed; backing off");
                } else {
                    tracing::debug!(%error, ?backoff, "accept failed again");
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = &mut shutdown => break,
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
            }
        }
        while connections.try_join_next().is_some() {}
    }
    tracing::info!(
        connections = connections.len(),
        "shutting down: no longer accepting"
    );
    drop(listener);
    let _ = stop_tx.send(true);
    if tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!("connections still busy after {DRAIN_TIMEOUT:?}; closing them");
        connections.shutdown().await;
    }
    let _ = maintenance.await;
    let _ = group_timers.await;
    let _ = txn_driver.await;
    let _ = tiering.await;
    let _ = replicas.await;
    let _ = isr.await;
    // No fetched data is appended once the logs start closing.
    broker.replicas.stop_fetchers();
    if let Some(metrics) = metrics {
        let _ = metrics.await;
    }
    let closing = broker.clone();
    if let Err(error) = tokio::task::spawn_blocking(move || closing.close()).await {
        tracing::error!(%error, "closing logs failed");
    }
    tracing::info!("inlet broker stopped");
}

/// Connections open, in all and per client address, against `max.connections` and
/// `max.connections.per.ip`. A [`Slot`] is one open connection; dropping it frees the slot.
struct ConnectionSlots {
    max_total: usize,
    max_per_ip: usize,
    open: Mutex<OpenConnections>,
    refused: AtomicU64,
}

#[derive(Default)]
struct OpenConnections {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

struct Slot {
    slots: Arc<ConnectionSlots>,
    ip: IpAddr,
}

impl ConnectionSlots {
    fn new(max_total: usize, max_per_ip: usize) -> ConnectionSlots {
        ConnectionSlots {
            max_total,
            max_per_ip,
            open: Mutex::new(OpenConnections::default()),
            refused: Default::default(),
        }
    }

    /// A slot for a new connection from `ip`, or the name of the limit it is over.
    fn take(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, &'static str> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.total >= self.max_total {
            return Err("max.connections");
        }
        let from_ip = open.per_ip.entry(ip).or_default();
        if *from_ip >= self.max_per_ip {
            return Err("max.connections.per.ip");
        }
        *from_ip += 1;
        open.total += 1;
        CONNECTIONS.open.fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            slots: self.clone(),
            ip,
        })
    }

    /// Counts one refused connection; returns the count so far.
    fn count_refusal(&self) -> u64 {
        CONNECTIONS.refused.fetch_add(1, Ordering::Relaxed);
        self.refused
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|p| p.into_inner());
        open.total = open.total.saturating_sub(1);
        CONNECTIONS.open.fetch_sub(1, Ordering::Relaxed);
        if let Some(from_ip) = open.per_ip.get_mut(&self.ip) {
            *from_ip = from_ip.saturating_sub(1);
            if *from_ip == 0 {
                open.per_ip.remove(&self.ip);
            }
        }
    }
}

/// The effective `(max.connections, max.connections.per.ip)`. Each connection is a file
/// descriptor, so with an open-file limit of `nofile` at most `nofile` minus a reserve for the
/// logs can be open; past that, accept fails with EMFILE and new clients hang in the listen queue.
/// When that caps `max.connections`, one address also gets at most half of it, so a flood from one
/// address leaves room for every other client.
fn connection_limits(config: &BrokerConfig, nofile: Option<u64>) -> (usize, usize) {
    let (total, per_ip) = (config.max_connections, config.max_connections_per_ip);
    let Some(nofile) = nofile else {
        return (total, per_ip);
    };
    let reserve = (nofile / 8).max(FD_RESERVE_MIN);
    let fits = usize::try_from(nofile.saturating_sub(reserve).max(2)).unwrap_or(usize::MAX);
    if fits >= total {
        return (total, per_ip);
    }
    let per_ip = per_ip.min(fits / 2);
    tracing::info!(
        open_file_limit = nofile,
        max_connections = fits,
        max_connections_per_ip = per_ip,
        "the open-file limit caps connections; raise `ulimit -n` for more"
    );
    (fits, per_ip)
}

/// Background work: flush per policy, retention per `log.retention.check.interval.ms`,
/// compaction per `log.cleaner.backoff.ms`, and releasing idle mapped pages.
async fn maintain(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let config = &broker.config;
    let mut flush_tick = ticker(FLUSH_CHECK);
    let mut retention_tick = ticker(Duration::from_millis(
        config.log_retention_check_interval_ms.max(100),
    ));
    let mut cleaner_tick = ticker(Duration::from_millis(config.log_cleaner_backoff_ms.max(10)));
    let mut idle_tick = ticker(RELEASE_IDLE_PAGES);
    let mut producer_expiry_tick = ticker(Duration::from_millis(
        config.producer_id_expiration_check_interval_ms.max(10),
    ));
    loop {
        let work: fn(&Broker, i64) = tokio::select! {
            _ = flush_tick.tick() => Broker::flush_due,
            _ = retention_tick.tick() => Broker::apply_retention,
            _ = cleaner_tick.tick() => Broker::apply_compaction,
            _ = idle_tick.tick() => Broker::release_idle_pages,
            _ = producer_expiry_tick.tick() => Broker::expire_producers,
            _ = stop.wait_for(|stop| *stop) => return,
        };
        let broker = broker.clone();
        // Flushing and deleting files block; keep them off the request threads.
        let _ = tokio::task::spawn_blocking(move || work(&broker, now_ms())).await;
    }
}

/// An interval that, when work overruns, waits a full period rather than firing in a burst.
fn ticker(period: Duration) -> tokio::time::Interval {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_limit_each_address_and_the_total() {
        let slots = Arc::new(ConnectionSlots::new(3, 2));
        let a: IpAddr = [127, 0, 0, 2].into();
        let b: IpAddr = [127, 0, 0, 1].into();
        let first = slots.take(a).unwrap();
        let _second = slots.take(a).unwrap();
        assert_eq!(slots.take(a).err(), Some("max.connections.per.ip"));
        let _third = slots.take(b).unwrap();
        assert_eq!(slots.take(b).err(), Some("max.connections"));
        drop(first);
        let _again = slots.take(a).unwrap();
        assert_eq!(slots.count_refusal(), 1);
    }

    #[test]
    fn open_file_limit_caps_connections_and_one_address_gets_half() {
        let config = BrokerConfig::default();
        assert_eq!(
            connection_limits(&config, None),
            (config.max_connections, config.max_connections_per_ip)
        );
        assert_eq!(
            connection_limits(&config, Some(1_048_576)),
            (config.max_connections, config.max_connections_per_ip)
        );
        assert_eq!(connection_limits(&config, Some(1024)), (896, 448));
        assert!(
            crate::fd_limit::open_file_limit().is_some_and(|n| n > 0) || !cfg!(target_os = "linux")
        );
    }
}
