//! Many requests in flight on one connection. Kafka answers a connection's requests in the order
//! they were sent, so a reader task pairs each response frame with the oldest outstanding request
//! (checking the correlation id) and hands the raw frame to whoever waits for it; decoding happens
//! in the waiter, off the reader's path. Load generators use this to measure the broker rather
//! than the round trip.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::protocol::{Message, Request};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, oneshot};

use super::{Client, ClientError};
use crate::codec;

/// A connection that writes requests without waiting for earlier answers.
pub struct Pipeline {
    writer: OwnedWriteHalf,
    pending: mpsc::UnboundedSender<Pending>,
    client_id: String,
    next_correlation_id: i32,
    broker_versions: HashMap<i16, (i16, i16)>,
    reader: tokio::task::JoinHandle<()>,
}

struct Pending {
    correlation_id: i32,
    reply: oneshot::Sender<Result<(Bytes, Instant), ClientError>>,
}

/// The answer to one pipelined request, decoded when awaited.
pub struct ResponseFuture<R: Request> {
    frame: oneshot::Receiver<Result<(Bytes, Instant), ClientError>>,
    version: i16,
    _request: PhantomData<R>,
}

impl<R: Request> ResponseFuture<R> {
    pub async fn wait(self) -> Result<R::Response, ClientError> {
        Ok(self.wait_timed().await?.0)
    }

    /// The response and when its frame arrived (a waiter may come for it later than that).
    pub async fn wait_timed(self) -> Result<(R::Response, Instant), ClientError> {
        let (mut frame, received) = self.frame.await.map_err(|_| ClientError::Closed)??;
        let (_, body) = codec::decode_response::<R>(&mut frame, self.version)?;
        Ok((body, received))
    }
}

impl Pipeline {
    /// Turns a connected (version-negotiated) client into a pipeline.
    pub fn new(client: Client) -> Pipeline {
        let Client {
            mut reader,
            writer,
            client_id,
            next_correlation_id,
            broker_versions,
            ..
        } = client;
        let (pending, mut queue) = mpsc::unbounded_channel::<Pending>();
        let reader = tokio::spawn(async move {
            while let Some(waiter) = queue.recv().await {
                let result = match reader.next_frame().await {
                    Ok(Some(frame)) => match correlation_id(&frame) {
                        Some(got) if got == waiter.correlation_id => Ok((frame, Instant::now())),
                        got => Err(ClientError::CorrelationMismatch {
                            expected: waiter.correlation_id,
                            got: got.unwrap_or(-1),
                        }),
                    },
                    Ok(None) => Err(ClientError::Closed),
                    Err(e) => Err(e.into()),
                };
                let failed = result.is_err();
                let _ = waiter.reply.send(result);
                if failed {
                    // The stream is out of step; every later waiter sees the channel close.
                    break;
                }
            }
        });
        Pipeline {
            writer,
            pending,
            client_id,
            next_correlation_id,
            broker_versions,
            reader,
        }
    }

    /// The highest common version of `R` that is at most `cap`.
    pub fn version_capped<R: Request + Message>(&self, cap: i16) -> Result<i16, ClientError> {
        super::negotiate::<R>(&self.broker_versions, Some(cap))
    }

    /// Writes `request` at `version` and returns at once; `expect_response: false` is for
    /// requests the broker never answers (acks=0 produce).
    pub async fn send<R: Request>(
        &mut self,
        request: &R,
        version: i16,
        expect_response: bool,
    ) -> Result<Option<ResponseFuture<R>>, ClientError> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let frame = codec::encode_request(request, version, correlation_id, &self.client_id)?;
        let future = if expect_response {
            let (reply, receiver) = oneshot::channel();
            // Registered before the write, so the reader never sees an answer it cannot pair.
            self.pending
                .send(Pending {
                    correlation_id,
                    reply,
                })
                .map_err(|_| ClientError::Closed)?;
            Some(ResponseFuture {
                frame: receiver,
                version,
                _request: PhantomData,
            })
        } else {
            None
        };
        self.writer.write_all(&frame).await?;
        Ok(future)
    }
}

/// Every response frame starts with its correlation id.
fn correlation_id(frame: &[u8]) -> Option<i32> {
    let bytes: [u8; 4] = frame.get(..4)?.try_into().ok()?;
    Some(i32::from_be_bytes(bytes))
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.reader.abort();
    }
}
