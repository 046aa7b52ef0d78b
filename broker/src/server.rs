//! The listener and the broker's lifetime: open the data directory, accept connections (bounded by
//! a semaphore), run background maintenance (flush policy, retention, tiering to the lake), and on
//! shutdown stop accepting, let every connection finish the request it is processing, then flush
//! and close every log before returning.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::broker::{now_ms, Broker, BrokerError};
use crate::config::BrokerConfig;
use crate::connection;

/// How often flush policies are checked; `flush.ms` is honoured at this granularity.
const FLUSH_CHECK: Duration = Duration::from_millis(100);
/// How often idle mapped pages are released, so resident memory follows the working set.
const RELEASE_IDLE_PAGES: Duration = Duration::from_secs(1);
/// How long shutdown waits for connections to finish their current request.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens the broker, binds its listener and serves until `shutdown` completes.
pub async fn run(
    config: BrokerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), BrokerError> {
    let listen = config.listen;
    let broker = tokio::task::spawn_blocking(move || Broker::open(config))
        .await
        .map_err(|e| BrokerError::DataDir {
            path: "<recovery task>".into(),
            source: std::io::Error::other(e.to_string()),
        })??;
    let broker = Arc::new(broker);
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
        "inlet broker started"
    );
    serve(broker, listener, shutdown).await;
    Ok(())
}

async fn serve(broker: Arc<Broker>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let maintenance = tokio::spawn(maintain(broker.clone(), stop_rx.clone()));
    let group_timers = tokio::spawn(crate::group::coordinator::run_timers(
        broker.clone(),
        stop_rx.clone(),
    ));
    let tiering = tokio::spawn(crate::lake::run_tiering(broker.clone(), stop_rx.clone()));
    let metrics = broker
        .config
        .metrics_listen
        .map(|addr| tokio::spawn(crate::metrics::serve(broker.clone(), addr, stop_rx.clone())));
    let permits = Arc::new(Semaphore::new(broker.config.max_connections));
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit,
            _ = &mut shutdown => break,
        };
        let Ok(permit) = permit else { break };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut shutdown => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let broker = broker.clone();
                let stop = stop_rx.clone();
                connections.spawn(async move {
                    connection::serve(broker, stream, peer, stop).await;
                    drop(permit);
                });
            }
            Err(error) => {
                // Out of file descriptors and similar: back off instead of spinning.
                tracing::error!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
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
    let _ = tiering.await;
    if let Some(metrics) = metrics {
        let _ = metrics.await;
    }
    let closing = broker.clone();
    if let Err(error) = tokio::task::spawn_blocking(move || closing.close()).await {
        tracing::error!(%error, "closing logs failed");
    }
    tracing::info!("inlet broker stopped");
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
