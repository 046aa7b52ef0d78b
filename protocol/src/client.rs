//! A small async Kafka client: one connection, one request in flight, versions negotiated through
//! ApiVersions. The CLI's admin verbs and (later) follower replicas talk to brokers through it, so
//! it must work against any Kafka-compatible broker, not only Inlet.
//!
//! On top of [`Client`]: [`cluster`] bootstraps from a list of addresses and routes requests to
//! partition leaders and group coordinators, [`pipeline`] keeps many requests in flight on one
//! connection (load generation), [`records`] builds and parses record batches, and [`group`] is a
//! member of a classic consumer group with a range assignor.

pub mod cluster;
pub mod consumer_protocol;
pub mod group;
pub mod pipeline;
pub mod records;

use std::collections::HashMap;
use std::time::Duration;

use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::{Message, Request};
use kafka_protocol::ResponseError;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpStream, ToSocketAddrs};

use crate::codec::{self, CodecError};
use crate::frame::{FrameError, FrameReader};

/// Responses can be large (a Fetch); the client accepts up to this many bytes per frame.
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Not `#[source]`: the message already says it, and `{:#}` would say it twice.
    #[error("cannot connect to {addr}: {error}")]
    Connect { addr: String, error: std::io::Error },
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
    /// A response carried a Kafka error code.
    #[error("{context}: {}{}", describe_error(*.error), .message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Broker {
        context: String,
        error: ResponseError,
        message: Option<String>,
    },
    #[error("{0}")]
    Protocol(String),
}

/// The error as Kafka's documentation names it (`UNKNOWN_TOPIC_OR_PARTITION`), so an operator
/// can look it up.
fn describe_error(error: ResponseError) -> String {
    if let ResponseError::Unknown(code) = error {
        return format!("error code {code}");
    }
    let mut name = String::new();
    for (i, c) in format!("{error:?}").chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

/// The highest version of `R` that the broker (per its ApiVersions table) and this crate both
/// speak, at most `cap`.
fn negotiate<R: Request + Message>(
    broker_versions: &HashMap<i16, (i16, i16)>,
    cap: Option<i16>,
) -> Result<i16, ClientError> {
    let api_key =
        ApiKey::try_from(R::KEY).map_err(|_| CodecError::UnknownApiKey { api_key: R::KEY })?;
    let (broker_min, broker_max) = broker_versions
        .get(&R::KEY)
        .copied()
        .ok_or(ClientError::NoCommonVersion { api_key })?;
    let max = broker_max.min(R::VERSIONS.max).min(cap.unwrap_or(i16::MAX));
    if max < broker_min.max(R::VERSIONS.min) {
        return Err(ClientError::NoCommonVersion { api_key });
    }
    Ok(max)
}

/// Turns a response's error code into a [`ClientError::Broker`] (0 means success).
pub fn check(code: i16, context: impl FnOnce() -> String) -> Result<(), ClientError> {
    match ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(error) => Err(ClientError::Broker {
            context: context(),
            error,
            message: None,
        }),
    }
}

/// Like [`check`], with the broker's optional error message appended.
pub fn check_with_message(
    code: i16,
    message: Option<&str>,
    context: impl FnOnce() -> String,
) -> Result<(), ClientError> {
    check(code, context).map_err(|e| match e {
        ClientError::Broker { context, error, .. } => ClientError::Broker {
            context,
            error,
            message: message.filter(|m| !m.is_empty()).map(str::to_string),
        },
        other => other,
    })
}

pub struct Client {
    addr: String,
    reader: FrameReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    client_id: String,
    next_correlation_id: i32,
    /// api key -> (min, max) version the broker supports.
    broker_versions: HashMap<i16, (i16, i16)>,
    timeout: Duration,
    /// Correlation id of a request written whose answer was never read, because the caller
    /// dropped the exchange (a `select!` on Ctrl-C, a timeout): that answer is still on its way
    /// and must be skipped before the next one is read.
    unanswered: Option<i32>,
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
            .map_err(|error| ClientError::Connect {
                addr: addr.to_string(),
                error,
            })?;
        stream.set_nodelay(true)?;
        let (read, writer) = stream.into_split();
        let mut client = Client {
            addr: addr.to_string(),
            reader: FrameReader::new(read, MAX_RESPONSE_BYTES),
            writer,
            client_id: client_id.to_string(),
            next_correlation_id: 0,
            broker_versions: HashMap::new(),
            timeout,
            unanswered: None,
        };
        client.negotiate_versions().await?;
        Ok(client)
    }

    /// The address this client connected to.
    pub fn addr(&self) -> &str {
        &self.addr
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
        negotiate::<R>(&self.broker_versions, None)
    }

    /// Whether the broker speaks any version of `R` that this client does.
    pub fn supports<R: Request + Message>(&self) -> bool {
        self.version_for::<R>().is_ok()
    }

    /// The highest common version of `R` that is at most `cap`: for callers that fill only the
    /// fields of older versions (e.g. topics by name rather than by id).
    pub fn version_capped<R: Request + Message>(&self, cap: i16) -> Result<i16, ClientError> {
        negotiate::<R>(&self.broker_versions, Some(cap))
    }

    /// Sends `request` at the highest common version that is at most `cap`.
    pub async fn send_capped<R: Request + Message>(
        &mut self,
        request: R,
        cap: i16,
    ) -> Result<R::Response, ClientError> {
        let version = self.version_capped::<R>(cap)?;
        self.send_version(request, version).await
    }

    /// Sends `request` at the highest common version.
    pub async fn send<R: Request + Message>(
        &mut self,
        request: R,
    ) -> Result<R::Response, ClientError> {
        let version = self.version_for::<R>()?;
        self.send_version(request, version).await
    }

    /// Writes `request` at `version` without waiting for an answer: for requests the broker
    /// never answers (acks=0 produce).
    pub async fn send_no_response<R: Request>(
        &mut self,
        request: R,
        version: i16,
    ) -> Result<(), ClientError> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let frame = codec::encode_request(&request, version, correlation_id, &self.client_id)?;
        tokio::time::timeout(self.timeout, self.writer.write_all(&frame))
            .await
            .map_err(|_| ClientError::Timeout(self.timeout))??;
        Ok(())
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
            if let Some(stale) = self.unanswered {
                let frame = self.reader.next_frame().await?.ok_or(ClientError::Closed)?;
                let got = frame
                    .get(..4)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map_or(-1, i32::from_be_bytes);
                if got != stale {
                    return Err(ClientError::CorrelationMismatch {
                        expected: stale,
                        got,
                    });
                }
            }
            // Set until the answer is read: if this future is dropped, the next call skips it.
            self.unanswered = Some(correlation_id);
            self.writer.write_all(&frame).await?;
            let mut response = self.reader.next_frame().await?.ok_or(ClientError::Closed)?;
            self.unanswered = None;
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
