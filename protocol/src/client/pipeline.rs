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

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };
    use kafka_protocol::messages::{
        ApiKey, ApiVersionsResponse, ProduceRequest, ProduceResponse, RequestKind, ResponseKind,
    };
    use tokio::net::TcpListener;

    use super::*;
    use crate::frame::FrameReader;

    /// A broker that answers ApiVersions, then every Produce with the correlation id as the
    /// partition index (so a test can see which answer went to which request), then hangs up
    /// after `answers` Produce answers.
    async fn fake_broker(answers: usize) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            let mut frames = FrameReader::new(read, 1 << 20);
            let mut answered = 0;
            while let Ok(Some(mut frame)) = frames.next_frame().await {
                let (key, header) = codec::decode_header(&mut frame).unwrap();
                let version = header.request_api_version;
                let response = match codec::decode_body(key, version, &mut frame).unwrap() {
                    RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(
                        ApiVersionsResponse::default().with_api_keys(
                            [(ApiKey::ApiVersions, 0, 3), (ApiKey::Produce, 3, 9)]
                                .iter()
                                .map(|&(k, min, max)| {
                                    ApiVersion::default()
                                        .with_api_key(k as i16)
                                        .with_min_version(min)
                                        .with_max_version(max)
                                })
                                .collect(),
                        ),
                    ),
                    _ if answered == answers => return,
                    _ => {
                        answered += 1;
                        ResponseKind::Produce(ProduceResponse::default().with_responses(vec![
                            TopicProduceResponse::default().with_partition_responses(vec![
                                PartitionProduceResponse::default()
                                    .with_index(header.correlation_id),
                            ]),
                        ]))
                    }
                };
                let bytes =
                    codec::encode_response(key, version, header.correlation_id, &response).unwrap();
                write.write_all(&bytes).await.unwrap();
            }
        });
        addr
    }

    #[tokio::test]
    async fn answers_are_paired_with_requests_in_order() {
        let addr = fake_broker(usize::MAX).await;
        let mut pipeline = Pipeline::new(Client::connect(addr.as_str(), "t").await.unwrap());
        let version = pipeline.version_capped::<ProduceRequest>(12).unwrap();
        assert_eq!(version, 9);
        let mut waiting = Vec::new();
        for _ in 0..50 {
            let future = pipeline
                .send(&ProduceRequest::default().with_acks(1), version, true)
                .await
                .unwrap();
            waiting.push(future.unwrap());
        }
        let mut indexes = Vec::new();
        for future in waiting {
            let response = future.wait().await.unwrap();
            indexes.push(response.responses[0].partition_responses[0].index);
        }
        // ApiVersions took correlation id 0; the Produce requests 1..=50, answered in order.
        assert_eq!(indexes, (1..=50).collect::<Vec<i32>>());
    }

    #[tokio::test]
    async fn a_closed_connection_fails_every_outstanding_request() {
        let addr = fake_broker(2).await;
        let mut pipeline = Pipeline::new(Client::connect(addr.as_str(), "t").await.unwrap());
        let mut waiting = Vec::new();
        for _ in 0..5 {
            let future = pipeline
                .send(&ProduceRequest::default().with_acks(1), 9, true)
                .await
                .unwrap();
            waiting.push(future.unwrap());
        }
        let results: Vec<bool> = futures_ok(waiting).await;
        assert_eq!(results, [true, true, false, false, false]);
    }

    /// (A [`Client`] test, here for the fake broker.) An exchange dropped after its request was
    /// written, as `select!` on Ctrl-C does, must not hand its answer to the next request.
    #[tokio::test]
    async fn a_dropped_exchange_does_not_shift_later_answers() {
        let addr = fake_broker(usize::MAX).await;
        let mut client = Client::connect(addr.as_str(), "t").await.unwrap();
        {
            let first = client.send_version(ProduceRequest::default().with_acks(1), 9);
            // The current-thread runtime cannot run the broker before `first` has written its
            // request and started waiting, so this drops it mid-exchange.
            tokio::select! {
                biased;
                _ = first => panic!("answered before the broker ran"),
                _ = std::future::ready(()) => {}
            }
        }
        let second = client
            .send_version(ProduceRequest::default().with_acks(1), 9)
            .await
            .unwrap();
        assert_eq!(second.responses[0].partition_responses[0].index, 2);
    }

    async fn futures_ok(futures: Vec<ResponseFuture<ProduceRequest>>) -> Vec<bool> {
        let mut ok = Vec::new();
        for future in futures {
            ok.push(future.wait().await.is_ok());
        }
        ok
    }
}
