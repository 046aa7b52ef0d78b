//! One client connection: read a frame, decode it, run its handler, write the response, in
//! request order (Kafka clients pipeline and rely on that order). Requests are handled one at a
//! time, except that an acks=all produce, once appended, waits for its in-sync replicas beside
//! the reader, so the next requests are appended meanwhile (see `serve`). Frames the peer keeps sending
//! while one is processed wait in the kernel socket buffer. Before a frame's body is read, its
//! declared size is taken from the broker-wide [`RequestBudget`] (`queued.max.request.bytes`) and
//! given back once the request is handled; while the budget is spent the connection waits without
//! reading, so TCP pushes back on the client. A connection silent between requests for
//! `connections.max.idle.ms`, or inside one for `connections.max.stall.ms`, is closed. Anything
//! that breaks the framing or the schema closes this connection only, with the reason in the log;
//! an ApiVersions request of an unknown version gets the v0 error answer that lets the client
//! retry.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use inlet_protocol::codec::{self, CodecError};
use inlet_protocol::frame::{FrameError, FrameReader, ReadTimeouts};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use crate::broker::{now_ms, Broker};
use crate::handlers::{self, api_versions, Pending, Reply};
use crate::metadata::quotas::ClientQuota;
use crate::metrics::CONNECTIONS;
use crate::quota::QuotaKind;

/// Why a connection ended, for the log.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error(
        "a {length}-byte request exceeds the whole request budget of {budget} bytes \
         (queued.max.request.bytes)"
    )]
    OverBudget { length: usize, budget: usize },
    #[error("unsupported version {version} of {api_key:?}")]
    UnsupportedVersion { api_key: ApiKey, version: i16 },
    #[error("{0}")]
    Handler(String),
    #[error("write failed: {0}")]
    Write(#[from] std::io::Error),
}

/// The broker-wide budget of request bytes read but not yet handled (`queued.max.request.bytes`):
/// a semaphore whose permits are bytes. Cloning shares the budget.
#[derive(Clone, Debug)]
pub struct RequestBudget {
    bytes: Option<Arc<Semaphore>>,
    total: usize,
}

impl RequestBudget {
    /// A budget of `queued_max_request_bytes` bytes; a negative value means unbounded.
    pub fn new(queued_max_request_bytes: i64) -> RequestBudget {
        match usize::try_from(queued_max_request_bytes) {
            Ok(total) => {
                let total = total.min(Semaphore::MAX_PERMITS);
                RequestBudget {
                    bytes: Some(Arc::new(Semaphore::new(total))),
                    total,
                }
            }
            Err(_) => RequestBudget {
                bytes: None,
                total: usize::MAX,
            },
        }
    }

    /// Bytes of the budget not taken right now (the whole budget when unbounded).
    pub fn available(&self) -> usize {
        self.bytes
            .as_ref()
            .map_or(usize::MAX, |bytes| bytes.available_permits())
    }

    /// Waits until `length` bytes of the budget are free and takes them; they return to the
    /// budget when the permit is dropped. A frame larger than the whole budget could never be
    /// read and is refused.
    async fn acquire(
        &self,
        length: usize,
    ) -> Result<Option<OwnedSemaphorePermit>, ConnectionError> {
        let Some(bytes) = &self.bytes else {
            return Ok(None);
        };
        let over = || ConnectionError::OverBudget {
            length,
            budget: self.total,
        };
        if length > self.total {
            return Err(over());
        }
        let permits = u32::try_from(length).map_err(|_| over())?;
        // The semaphore is never closed, so acquiring fails only if that changes.
        let permit = bytes
            .clone()
            .acquire_many_owned(permits)
            .await
            .map_err(|_| over())?;
        Ok(Some(permit))
    }
}

pub async fn serve(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    budget: RequestBudget,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let config = &broker.config;
    let timeouts = ReadTimeouts {
        idle: Some(Duration::from_millis(config.connections_max_idle_ms)),
        stall: Some(Duration::from_millis(config.connections_max_stall_ms)),
    };
    let mut frames =
        FrameReader::new(read, config.socket_request_max_bytes).with_timeouts(timeouts);
    let writer = BufWriter::with_capacity(64 * 1024, write);
    tracing::debug!(%peer, "connection opened");
    // Responses go out in request order from a writer beside the reader: an acks=all produce is
    // answered there once replicated while the reader goes on with the next requests (their
    // appends stay in request order). At most `MAX_QUEUED_RESPONSES` wait; then the reader waits.
    let (responses, queued) = mpsc::channel(MAX_QUEUED_RESPONSES);
    // Until when (ms since the epoch) a client over its quota is not read from (KIP-219).
    let throttled = Arc::new(AtomicI64::new(0));
    let read = async move {
        loop {
            let wait = throttled.load(Ordering::Relaxed) - now_ms();
            if wait > 0 {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
                    _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
                }
            }
            let length = tokio::select! {
                length = frames.next_length() => length?,
                _ = shutdown.wait_for(|stop| *stop) => None,
            };
            let Some(length) = length else {
                return Ok(());
            };
            let permit = tokio::select! {
                permit = budget.acquire(length) => permit?,
                _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
            };
            let frame = tokio::select! {
                frame = frames.next_frame() => frame?,
                _ = shutdown.wait_for(|stop| *stop) => None,
            };
            let Some(frame) = frame else {
                return Ok(());
            };
            let outgoing = process(&broker, frame, peer, &throttled).await?;
            // Handled: the request's bytes go back to the budget before the response is sent.
            drop(permit);
            if let Some(outgoing) = outgoing {
                // A client that pipelines has its next request buffered already: its response
                // joins this one in a single write.
                let last = !frames.has_buffered();
                if responses.send((outgoing, last)).await.is_err() {
                    // The writer failed; its error is the one reported.
                    return Ok(());
                }
            }
        }
    };
    let (read, written) = tokio::join!(read, write_responses(writer, queued));
    let result: Result<(), ConnectionError> = read.and(written);
    match result {
        Ok(()) => tracing::debug!(%peer, "connection closed"),
        Err(error @ ConnectionError::Frame(FrameError::Idle { .. })) => {
            CONNECTIONS.closed_idle.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, %error, "closing idle connection");
        }
        Err(error @ ConnectionError::Frame(FrameError::Stalled { .. })) => {
            CONNECTIONS.closed_stalled.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%peer, %error, "closing stalled connection");
        }
        Err(error) if error.is_peer_gone() => tracing::debug!(%peer, %error, "peer went away"),
        Err(error) => tracing::warn!(%peer, %error, "closing connection"),
    }
}

impl ConnectionError {
    /// A client that disconnects abruptly is routine, not worth a warning.
    fn is_peer_gone(&self) -> bool {
        use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
        let io = match self {
            ConnectionError::Frame(FrameError::Io(e)) | ConnectionError::Write(e) => e,
            _ => return false,
        };
        matches!(io.kind(), ConnectionReset | BrokenPipe | ConnectionAborted)
    }
}

/// Responses a connection may have waiting to be written (acks=all produces waiting for their
/// in-sync replicas, and the responses after them) before it stops reading requests.
const MAX_QUEUED_RESPONSES: usize = 32;

/// A response for the writer, in request order.
enum Outgoing {
    Ready(Vec<Bytes>),
    Later {
        pending: Pending,
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
    },
}

/// Writes responses in the order they come, waiting for those still to come. Each comes with
/// whether the reader had nothing more buffered after its request: the buffer is flushed then
/// (if nothing else is queued), and before waiting for a response still to come.
async fn write_responses(
    mut writer: BufWriter<OwnedWriteHalf>,
    mut queued: mpsc::Receiver<(Outgoing, bool)>,
) -> Result<(), ConnectionError> {
    while let Some((outgoing, last)) = queued.recv().await {
        let chunks = match outgoing {
            Outgoing::Ready(chunks) => chunks,
            Outgoing::Later {
                pending,
                api_key,
                version,
                correlation_id,
            } => {
                writer.flush().await?;
                let response = pending.await;
                codec::encode_response_chunks(api_key, version, correlation_id, &response)?
            }
        };
        for chunk in chunks {
            // Large chunks (fetched records) bypass the buffer and go straight to the socket.
            writer.write_all(&chunk).await?;
        }
        if last && queued.is_empty() {
            writer.flush().await?;
        }
    }
    writer.flush().await?;
    Ok(())
}

/// Decodes and handles one request; returns its response for the writer (none when no response
/// is due).
async fn process(
    broker: &Broker,
    mut frame: Bytes,
    peer: SocketAddr,
    throttled: &Arc<AtomicI64>,
) -> Result<Option<Outgoing>, ConnectionError> {
    let request_bytes = frame.len() as u64;
    let (api_key, header) = codec::decode_header(&mut frame)?;
    let version = header.request_api_version;
    if !api_versions::supports(api_key, version) {
        if api_key == ApiKey::ApiVersions {
            let response = ResponseKind::ApiVersions(api_versions::unsupported_version());
            return Ok(Some(Outgoing::Ready(vec![codec::encode_response(
                api_key,
                0,
                header.correlation_id,
                &response,
            )?])));
        }
        return Err(ConnectionError::UnsupportedVersion { api_key, version });
    }
    let request = codec::decode_body(api_key, version, &mut frame)?;
    // Measured only for requests a quota can apply to, and only while some quota exists.
    let quota = quota_kind(&request).and_then(|kind| {
        let image = broker.controller.image();
        (!image.client_quotas.is_empty()).then_some((kind, image))
    });
    let reply = handlers::dispatch(broker, &header, request, peer)
        .await
        .map_err(ConnectionError::Handler)?;
    let charge = |bytes: u64| match &quota {
        Some((kind, image)) => throttle(
            broker,
            &image.client_quotas,
            &header,
            *kind,
            bytes,
            throttled,
        ),
        None => 0,
    };
    match reply {
        Reply::Send(mut response) => {
            let bytes = match quota {
                Some((QuotaKind::Fetch, _)) => fetched_bytes(&response),
                _ => request_bytes,
            };
            set_throttle_time(&mut response, charge(bytes));
            Ok(Some(Outgoing::Ready(codec::encode_response_chunks(
                api_key,
                version,
                header.correlation_id,
                &response,
            )?)))
        }
        Reply::Nothing => {
            // acks=0: no answer to carry the throttle time, but the connection still waits.
            charge(request_bytes);
            Ok(None)
        }
        Reply::Later(pending) => {
            let throttle_ms = charge(request_bytes);
            let pending: Pending = if throttle_ms > 0 {
                Box::pin(async move {
                    let mut response = pending.await;
                    set_throttle_time(&mut response, throttle_ms);
                    response
                })
            } else {
                pending
            };
            Ok(Some(Outgoing::Later {
                pending,
                api_key,
                version,
                correlation_id: header.correlation_id,
            }))
        }
    }
}

/// Which client quota a request counts against: produces, and consumers' fetches (never a
/// follower's).
fn quota_kind(request: &RequestKind) -> Option<QuotaKind> {
    match request {
        RequestKind::Produce(_) => Some(QuotaKind::Produce),
        RequestKind::Fetch(f) if f.replica_id.0 < 0 && f.replica_state.replica_id.0 < 0 => {
            Some(QuotaKind::Fetch)
        }
        _ => None,
    }
}

/// Records `bytes` against the client's quota; over it, the connection is muted for the
/// throttle time, which is returned (0 otherwise).
fn throttle(
    broker: &Broker,
    quotas: &[ClientQuota],
    header: &RequestHeader,
    kind: QuotaKind,
    bytes: u64,
    throttled: &AtomicI64,
) -> u32 {
    let client_id = header.client_id.as_deref().unwrap_or("");
    let now = now_ms();
    let ms = broker.quotas.record(quotas, kind, client_id, bytes, now);
    if ms > 0 {
        throttled.fetch_max(now + i64::from(ms), Ordering::Relaxed);
        CONNECTIONS.throttled.fetch_add(1, Ordering::Relaxed);
    }
    ms
}

/// The record bytes a fetch answer carries.
fn fetched_bytes(response: &ResponseKind) -> u64 {
    let ResponseKind::Fetch(fetch) = response else {
        return 0;
    };
    fetch
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .filter_map(|p| p.records.as_ref())
        .map(|r| r.len() as u64)
        .sum()
}

fn set_throttle_time(response: &mut ResponseKind, ms: u32) {
    if ms == 0 {
        return;
    }
    let ms = i32::try_from(ms).unwrap_or(i32::MAX);
    match response {
        ResponseKind::Produce(r) => r.throttle_time_ms = ms,
        ResponseKind::Fetch(r) => r.throttle_time_ms = ms,
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn budget_waits_while_spent_and_refuses_what_never_fits() {
        let budget = RequestBudget::new(100);
        let first = budget.acquire(60).await.unwrap();
        assert_eq!(budget.available(), 40);
        let waiting = tokio::time::timeout(Duration::from_millis(30), budget.acquire(50)).await;
        assert!(
            waiting.is_err(),
            "50 bytes are not free while 60 of 100 are taken"
        );
        drop(first);
        let second = budget.acquire(50).await.unwrap();
        assert_eq!(budget.available(), 50);
        assert!(matches!(
            budget.acquire(101).await,
            Err(ConnectionError::OverBudget {
                length: 101,
                budget: 100
            })
        ));
        drop(second);
        assert_eq!(budget.available(), 100);
    }

    #[tokio::test]
    async fn unbounded_budget_never_waits() {
        let budget = RequestBudget::new(-1);
        assert!(budget.acquire(usize::MAX).await.unwrap().is_none());
    }
}
