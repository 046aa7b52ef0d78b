//! One client connection: read a frame, decode it, run its handler, write the response, in
//! request order (Kafka clients pipeline and rely on that order). Frames the peer keeps sending
//! while one is processed wait in the read buffer, bounded by the kernel socket buffer and our
//! frame limit. Anything that breaks the framing or the schema closes this connection only, with
//! the reason in the log; an ApiVersions request of an unknown version gets the v0 error answer
//! that lets the client retry.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use inlet_protocol::codec::{self, CodecError};
use inlet_protocol::frame::FrameReader;
use kafka_protocol::messages::{ApiKey, ResponseKind};
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::broker::Broker;
use crate::handlers::{self, api_versions, Reply};

/// Why a connection ended, for the log.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error(transparent)]
    Frame(#[from] inlet_protocol::frame::FrameError),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("unsupported version {version} of {api_key:?}")]
    UnsupportedVersion { api_key: ApiKey, version: i16 },
    #[error("{0}")]
    Handler(String),
    #[error("write failed: {0}")]
    Write(#[from] std::io::Error),
}

pub async fn serve(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let mut frames = FrameReader::new(read, broker.config.socket_request_max_bytes);
    let mut writer = BufWriter::with_capacity(64 * 1024, write);
    tracing::debug!(%peer, "connection opened");
    let result: Result<(), ConnectionError> = async {
        loop {
            let frame = tokio::select! {
                frame = frames.next_frame() => frame?,
                _ = shutdown.wait_for(|stop| *stop) => None,
            };
            let Some(frame) = frame else {
                return Ok(());
            };
            for chunk in process(&broker, frame).await? {
                // Large chunks (fetched records) bypass the buffer and go straight to the socket.
                writer.write_all(&chunk).await?;
            }
            if !frames.has_buffered() {
                writer.flush().await?;
            }
        }
    }
    .await;
    let _ = writer.flush().await;
    match result {
        Ok(()) => tracing::debug!(%peer, "connection closed"),
        Err(error) if error.is_peer_gone() => tracing::debug!(%peer, %error, "peer went away"),
        Err(error) => tracing::warn!(%peer, %error, "closing connection"),
    }
}

impl ConnectionError {
    /// A client that disconnects abruptly is routine, not worth a warning.
    fn is_peer_gone(&self) -> bool {
        use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
        let io = match self {
            ConnectionError::Frame(inlet_protocol::frame::FrameError::Io(e))
            | ConnectionError::Write(e) => e,
            _ => return false,
        };
        matches!(io.kind(), ConnectionReset | BrokenPipe | ConnectionAborted)
    }
}

/// Decodes and handles one request; returns the response frame's chunks (none when no response
/// is due).
async fn process(broker: &Broker, mut frame: Bytes) -> Result<Vec<Bytes>, ConnectionError> {
    let (api_key, header) = codec::decode_header(&mut frame)?;
    let version = header.request_api_version;
    if !api_versions::supports(api_key, version) {
        if api_key == ApiKey::ApiVersions {
            let response = ResponseKind::ApiVersions(api_versions::unsupported_version());
            return Ok(vec![codec::encode_response(
                api_key,
                0,
                header.correlation_id,
                &response,
            )?]);
        }
        return Err(ConnectionError::UnsupportedVersion { api_key, version });
    }
    let request = codec::decode_body(api_key, version, &mut frame)?;
    match handlers::dispatch(broker, &header, request)
        .await
        .map_err(ConnectionError::Handler)?
    {
        Reply::Send(response) => Ok(codec::encode_response_chunks(
            api_key,
            version,
            header.correlation_id,
            &response,
        )?),
        Reply::Nothing => Ok(Vec::new()),
    }
}
