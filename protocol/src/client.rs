//! A small async Kafka client: one connection, one request in flight, versions negotiated through
//! ApiVersions. The CLI's admin verbs and (later) follower replicas talk to brokers through it, so
//! it must work against any Kafka-compatible broker, not only Inlet.

use std::collections::HashMap;
use std::time::Duration;

use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::{Message, Request};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpStream, ToSocketAddrs};

use crate::codec::{self, CodecError};
use crate::frame::{FrameError, FrameReader};

/// Responses can be large (a Fetch); the client accepts up to this many bytes per frame.
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("the broker closed the connection")]
    Closed,
    #[error("the broker supports no version of {api_key:?} that this client speaks")]
    NoCommonVersion { api_key: ApiKey },
    #[error("response correlation id {got} does not match request {expected}")]
    CorrelationMismatch { expected: i32, got: i32 },
    #[error("the broker answered ApiVersions with error code {0}")]
    ApiVersions(i16),
}

pub struct Client {
    reader: FrameReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    client_id: String,
    next_correlation_id: i32,
    /// api key -> (min, max) version the broker supports.
    broker_versions: HashMap<i16, (i16, i16)>,
    timeout: Duration,
}

impl Client {
    /// Connects and negotiates versions.
    pub async fn connect(
        addr: impl ToSocketAddrs + std::fmt::Display,
        client_id: &str,
    ) -> Result<Client, ClientError> {
        let timeout = Duration::from_secs(30);
        let connect = tokio::time::timeout(timeout, TcpStream::connect(&addr));
        let stream = connect
            .await
            .map_err(|_| ClientError::Timeout(timeout))?
            .map_err(|source| ClientError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        stream.set_nodelay(true)?;
        let (read, writer) = stream.into_split();
        let mut client = Client {
            reader: FrameReader::new(read, MAX_RESPONSE_BYTES),
            writer,
            client_id: client_id.to_string(),
            next_correlation_id: 0,
            broker_versions: HashMap::new(),
            timeout,
        };
        client.negotiate_versions().await?;
        Ok(client)
    }

    /// Sets how long one request may take before [`ClientError::Timeout`].
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    async fn negotiate_versions(&mut self) -> Result<(), ClientError> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name("inlet".to_string().into())
            .with_client_software_version(env!("CARGO_PKG_VERSION").to_string().into());
        let response: ApiVersionsResponse = match self.send_version(request.clone(), 3).await {
            Ok(response) if response.error_code == 0 => response,
            // A broker that predates v3 answers UNSUPPORTED_VERSION with a v0 body; retry at v0.
            _ => self.send_version(ApiVersionsRequest::default(), 0).await?,
        };
        if response.error_code != 0 {
            return Err(ClientError::ApiVersions(response.error_code));
        }
        self.broker_versions = response
            .api_keys
            .iter()
            .map(|v| (v.api_key, (v.min_version, v.max_version)))
            .collect();
        Ok(())
    }

    /// The highest version of `R` both sides speak.
    pub fn version_for<R: Request + Message>(&self) -> Result<i16, ClientError> {
        let api_key =
            ApiKey::try_from(R::KEY).map_err(|_| CodecError::UnknownApiKey { api_key: R::KEY })?;
        let (broker_min, broker_max) = self
            .broker_versions
            .get(&R::KEY)
            .copied()
            .ok_or(ClientError::NoCommonVersion { api_key })?;
        let max = broker_max.min(R::VERSIONS.max);
        if max < broker_min.max(R::VERSIONS.min) {
            return Err(ClientError::NoCommonVersion { api_key });
        }
        Ok(max)
    }

    /// Sends `request` at the highest common version.
    pub async fn send<R: Request + Message>(
        &mut self,
        request: R,
    ) -> Result<R::Response, ClientError> {
        let version = self.version_for::<R>()?;
        self.send_version(request, version).await
    }

    /// Sends `request` at an explicit version.
    pub async fn send_version<R: Request>(
        &mut self,
        request: R,
        version: i16,
    ) -> Result<R::Response, ClientError> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let frame = codec::encode_request(&request, version, correlation_id, &self.client_id)?;
        let exchange = async {
            self.writer.write_all(&frame).await?;
            let mut response = self.reader.next_frame().await?.ok_or(ClientError::Closed)?;
            let (got, body) = codec::decode_response::<R>(&mut response, version)?;
            if got != correlation_id {
                return Err(ClientError::CorrelationMismatch {
                    expected: correlation_id,
                    got,
                });
            }
            Ok(body)
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout(self.timeout))?
    }
}
