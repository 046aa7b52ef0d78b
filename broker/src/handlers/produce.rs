//! Produce: append each partition's record batches to its log, exactly as the producer encoded
//! them (compression included), and report the assigned base offset. acks=1 is answered once the
//! leader's append returns; acks=all once the high watermark passes the batch, i.e. every in-sync
//! replica has it (the request's task parks meanwhile, no thread waits), refused up front with
//! NOT_ENOUGH_REPLICAS when the ISR is smaller than `min.insync.replicas`. acks=0 gets no
//! response at all (the connection layer drops it). Transactional batches are accepted only from
//! a request naming the transactional id whose open transaction holds the partition
//! (`TransactionCoordinator::verify`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use inlet_protocol::batch::BatchIter;
use inlet_protocol::record_walk::RecordWalker;
use inlet_storage::{AppendOutcome, ValidatedRequest};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tokio::time::Instant;

use super::errors::partition_error;
use crate::broker::Broker;
use crate::cluster::partition::{Partition, PartitionError};
use crate::txn::produce_check::{has_control_batch, has_transactional_batch, verify_transactional};

/// Checks and appends a Produce request's batches, in request order; what remains (the acks=all
/// wait, then the response) is [`Appended::respond`], which holds no request bytes and borrows
/// nothing, so the connection can answer it later while it reads on.
pub async fn append(broker: &Broker, request: ProduceRequest) -> Appended {
    if !matches!(request.acks, -1..=1) {
        return Appended::Rejected(reject_all(
            request,
            ResponseError::InvalidRequiredAcks,
            "acks must be 0, 1 or -1",
        ));
    }
    // Kafka refuses transactional batches from a request without a transactional id as a whole.
    let transactional_batches = request.topic_data.iter().any(|t| {
        t.partition_data
            .iter()
            .any(|p| p.records.as_deref().is_some_and(has_transactional_batch))
    });
    if transactional_batches && request.transactional_id.is_none() {
        return Appended::Rejected(reject_all(
            request,
            ResponseError::TransactionalIdAuthorizationFailed,
            "transactional batches need a transactional id",
        ));
    }
    let transactional_id = request.transactional_id.as_ref().map(|id| id.to_string());
    // 0. Topics the cluster lacks are created first (auto-creation), through the controller.
    let mut refused = Vec::new();
    for topic_data in &request.topic_data {
        if is_internal(&topic_data.name) {
            continue;
        }
        if let Err(code) = broker.ensure_topic(&topic_data.name).await {
            refused.push((topic_data.name.clone(), code));
        }
    }
    // 1. Resolve each partition (led here?) and refuse what needs no look at its records.
    let image = broker.controller.image();
    let topics: Vec<(TopicName, Vec<Slot>)> = request
        .topic_data
        .into_iter()
        .map(|topic_data| {
            let refusal = refused
                .iter()
                .find(|(name, _)| *name == topic_data.name)
                .map(|(_, code)| *code);
            let slots = topic_data
                .partition_data
                .into_iter()
                .map(|data| {
                    let response = PartitionProduceResponse::default().with_index(data.index);
                    if is_internal(&topic_data.name) {
                        // Only the coordinators write there (Kafka refuses this too).
                        return Slot::Done(failed(
                            response,
                            ResponseError::InvalidTopicException,
                            "cannot append to an internal topic",
                        ));
                    }
                    if let Some(code) = refusal {
                        return Slot::Done(failed(response, code, "the topic cannot be created"));
                    }
                    let led = broker.replicas.leader_partition(
                        broker,
                        &image,
                        &topic_data.name,
                        data.index,
                    );
                    let (topic, partition) = match led {
                        Ok(found) => found,
                        Err(code) => {
                            return Slot::Done(failed(response, code, "not led by this broker"))
                        }
                    };
                    let Some(records) = data.records else {
                        return Slot::Done(failed(
                            response,
                            ResponseError::CorruptMessage,
                            "no records",
                        ));
                    };
                    if has_control_batch(&records) {
                        // Only the coordinators write markers (Kafka's LogValidator).
                        return Slot::Done(failed(
                            response,
                            ResponseError::InvalidRecord,
                            "clients cannot write control batches",
                        ));
                    }
                    if let Some(id) = &transactional_id {
                        if let Err(code) =
                            verify_transactional(broker, id, &topic_data.name, data.index, &records)
                        {
                            return Slot::Done(failed(
                                response,
                                code,
                                "the partition is not in the producer's open transaction",
                            ));
                        }
                    }
                    let max_batch = topic.config().max_message_bytes(broker.topics.defaults());
                    if let Some(size) = oversized_batch(&records, max_batch) {
                        let reason =
                            format!("a {size}-byte batch exceeds max.message.bytes ({max_batch})");
                        return Slot::Done(failed(
                            response,
                            ResponseError::MessageTooLarge,
                            &reason,
                        ));
                    }
                    let min_insync = topic.config().min_insync_replicas();
                    if request.acks == -1
                        && partition.isr_size().is_some_and(|isr| isr < min_insync)
                    {
                        return Slot::Done(failed(
                            response,
                            ResponseError::NotEnoughReplicas,
                            &format!(
                                "fewer in-sync replicas than min.insync.replicas ({min_insync})"
                            ),
                        ));
                    }
                    Slot::Append {
                        response,
                        partition,
                        records,
                        min_insync,
                    }
                })
                .collect();
            (topic_data.name, slots)
        })
        .collect();

    // 2. Check every partition's batches (the record walk), then 3. append them in order.
    let jobs: Vec<(&Partition, &[u8])> = topics
        .iter()
        .flat_map(|(_, slots)| slots)
        .filter_map(|slot| match slot {
            Slot::Append {
                partition, records, ..
            } => Some((&**partition, &records[..])),
            Slot::Done(_) => None,
        })
        .collect();
    let outcomes: Vec<Result<(AppendOutcome, i32), PartitionError>> = validate_all(&jobs)
        .into_iter()
        .zip(&jobs)
        .map(|(validated, (partition, _))| {
            let epoch = partition.leader_epoch();
            Ok((partition.append_validated(validated?)?, epoch))
        })
        .collect();
    drop(jobs);
    // The records are in the log now: keep only what the response needs.
    let topics = topics
        .into_iter()
        .map(|(name, slots)| {
            let slots = slots
                .into_iter()
                .map(|slot| match slot {
                    Slot::Done(response) => Answer::Done(response),
                    Slot::Append {
                        response,
                        partition,
                        min_insync,
                        ..
                    } => Answer::Appended {
                        response,
                        partition,
                        min_insync,
                    },
                })
                .collect();
            (name, slots)
        })
        .collect();
    Appended::Written {
        topics,
        outcomes,
        acks: request.acks,
        timeout: Duration::from_millis(request.timeout_ms.max(0) as u64),
    }
}

/// A Produce request after its appends: the response, once acks allows it.
pub enum Appended {
    /// Refused as a whole.
    Rejected(ProduceResponse),
    Written {
        topics: Vec<(TopicName, Vec<Answer>)>,
        /// One per [`Answer::Appended`], in order: the append's outcome and leader epoch.
        outcomes: Vec<Result<(AppendOutcome, i32), PartitionError>>,
        acks: i16,
        timeout: Duration,
    },
}

/// One partition's answer to be.
pub enum Answer {
    Done(PartitionProduceResponse),
    Appended {
        response: PartitionProduceResponse,
        partition: Arc<Partition>,
        min_insync: usize,
    },
}

impl Appended {
    /// Whether [`Self::respond`] waits for the in-sync replicas.
    pub fn waits(&self) -> bool {
        matches!(self, Appended::Written { acks: -1, .. })
    }

    /// The response: at once for acks 0 and 1; for acks=all once the high watermark passes every
    /// appended batch (or the request's timeout, or a leader change, says otherwise).
    pub async fn respond(self) -> ProduceResponse {
        let (topics, outcomes, acks, timeout) = match self {
            Appended::Rejected(response) => return response,
            Appended::Written {
                topics,
                outcomes,
                acks,
                timeout,
            } => (topics, outcomes, acks, timeout),
        };
        let replicated = if acks == -1 {
            let deadline = Instant::now() + timeout;
            let waits = topics
                .iter()
                .flat_map(|(_, answers)| answers)
                .filter_map(|answer| match answer {
                    Answer::Appended { partition, .. } => Some(partition),
                    Answer::Done(_) => None,
                })
                .zip(&outcomes)
                .map(|(partition, outcome)| async move {
                    let (appended, epoch) = outcome.as_ref().ok()?;
                    Some(
                        partition
                            .wait_for_high_watermark(appended.last_offset + 1, *epoch, deadline)
                            .await,
                    )
                });
            join_all(waits).await
        } else {
            Vec::new()
        };
        build_response(topics, outcomes, replicated)
    }
}

fn build_response(
    mut topics: Vec<(TopicName, Vec<Answer>)>,
    outcomes: Vec<Result<(AppendOutcome, i32), PartitionError>>,
    replicated: Vec<Option<Result<(), ResponseError>>>,
) -> ProduceResponse {
    let mut outcomes = outcomes.into_iter();
    let mut replicated = replicated.into_iter();
    let responses = topics
        .drain(..)
        .map(|(name, slots)| {
            let partition_responses = slots
                .into_iter()
                .map(|slot| match slot {
                    Answer::Done(response) => response,
                    Answer::Appended { response, partition, min_insync } => match (outcomes.next(), replicated.next().flatten()) {
                        (Some(Ok(_)), Some(Err(code))) => {
                            failed(response, code, "not replicated to the in-sync replicas")
                        }
                        (Some(Ok(_)), Some(Ok(())))
                            if partition.isr_size().is_some_and(|isr| isr < min_insync) =>
                        {
                            failed(
                                response,
                                ResponseError::NotEnoughReplicasAfterAppend,
                                "written, but the ISR shrank below min.insync.replicas",
                            )
                        }
                        (Some(Ok((outcome, _))), _) => response
                            .with_base_offset(outcome.base_offset)
                            .with_log_append_time_ms(-1)
                            .with_log_start_offset(outcome.log_start_offset),
                        (Some(Err(error)), _) => {
                            tracing::debug!(topic = %name.0, partition = partition.index, %error, "produce rejected");
                            failed(response, partition_error(&error), &error.to_string())
                        }
                        (None, _) => failed(response, ResponseError::UnknownServerError, "no outcome"),
                    },
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(name)
                .with_partition_responses(partition_responses)
        })
        .collect();
    ProduceResponse::default().with_responses(responses)
}

/// One partition's part of a Produce request on its way through the handler.
enum Slot {
    /// Answered without touching the log.
    Done(PartitionProduceResponse),
    /// To be checked and appended.
    Append {
        response: PartitionProduceResponse,
        partition: Arc<Partition>,
        records: Bytes,
        min_insync: usize,
    },
}

/// Below this many record bytes in a request, checking its partitions one after another is
/// cheaper than starting threads for them.
const PARALLEL_VALIDATION_BYTES: usize = 256 * 1024;

/// Checks each job's records. The record walk decompresses compressed batches, the costliest
/// step of a produce request, and a connection's requests are handled one at a time, so a large
/// request's partitions are checked on several threads (up to the cores there are): it then
/// costs CPU, not the producer's throughput.
fn validate_all<'a>(
    jobs: &[(&Partition, &'a [u8])],
) -> Vec<Result<ValidatedRequest<'a>, PartitionError>> {
    static CORES: OnceLock<usize> = OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let threads = cores.min(jobs.len());
    let bytes: usize = jobs.iter().map(|(_, records)| records.len()).sum();
    if threads < 2 || bytes < PARALLEL_VALIDATION_BYTES {
        let mut walker = RecordWalker::new();
        return jobs
            .iter()
            .map(|(partition, records)| partition.validate(records, &mut walker))
            .collect();
    }
    let next = AtomicUsize::new(0);
    let work = || {
        let mut walker = RecordWalker::new();
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some((partition, records)) = jobs.get(i) else {
                return done;
            };
            done.push((i, partition.validate(records, &mut walker)));
        }
    };
    let mut finished = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
        let mut finished = work();
        for helper in helpers {
            finished.extend(
                helper
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            );
        }
        finished
    });
    // Every index was taken exactly once: sorted, the results line up with the jobs.
    finished.sort_unstable_by_key(|(i, _)| *i);
    finished.into_iter().map(|(_, result)| result).collect()
}

/// The coordinators' internal topics, which clients cannot produce to.
fn is_internal(topic: &str) -> bool {
    topic == crate::group::OFFSETS_TOPIC || topic == crate::txn::TRANSACTION_STATE_TOPIC
}

/// The size of the first batch larger than `max`, if any.
fn oversized_batch(records: &[u8], max: usize) -> Option<usize> {
    BatchIter::new(records)
        .filter_map(Result::ok)
        .map(|(header, _)| header.total_len())
        .find(|&len| len > max)
}

fn failed(
    response: PartitionProduceResponse,
    error: ResponseError,
    message: &str,
) -> PartitionProduceResponse {
    response
        .with_error_code(error.code())
        .with_base_offset(-1)
        .with_error_message(Some(StrBytes::from_string(message.to_string())))
}

fn reject_all(request: ProduceRequest, error: ResponseError, message: &str) -> ProduceResponse {
    let responses = request
        .topic_data
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partition_data
                .iter()
                .map(|p| {
                    failed(
                        PartitionProduceResponse::default().with_index(p.index),
                        error,
                        message,
                    )
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(topic.name)
                .with_partition_responses(partitions)
        })
        .collect();
    ProduceResponse::default().with_responses(responses)
}
