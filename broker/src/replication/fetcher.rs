//! Follower fetchers (Kafka's `ReplicaFetcherThread`): one task per leader broker, fetching every
//! partition this broker follows from it in one Fetch request (`replica_id` = this broker), and
//! appending what comes back as it is. The request names each partition's log end as the fetch
//! offset, which is how the leader learns what this replica has, and the epoch of its last batch
//! (`last_fetched_epoch`, KIP-320): a leader whose log went another way at that epoch answers with
//! `diverging_epoch`, and the tail past it is truncated here before fetching again.
//!
//! The replica manager says which partitions to follow after each metadata image
//! ([`FetcherManager::follow`]); a change wakes the task at once. Appends check that this broker
//! still follows the partition at the fetched epoch, so an answer that arrives after a leader
//! change writes nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use inlet_protocol::client::Client;
use inlet_storage::StorageError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::cluster::partition::{Partition, PartitionError};

/// Fetch version the fetchers speak: the last one that names topics (13+ use topic ids) and
/// already has `last_fetched_epoch` / `diverging_epoch`.
const FETCH_VERSION: i16 = 12;
/// How long the leader may hold a fetch that finds nothing new (`replica.fetch.wait.max.ms`).
const MAX_WAIT_MS: i32 = 500;
/// Per-partition and per-request byte limits (`replica.fetch.max.bytes`,
/// `replica.fetch.response.max.bytes`).
const PARTITION_MAX_BYTES: i32 = 1 << 20;
const RESPONSE_MAX_BYTES: i32 = 10 << 20;
/// Pause after a failed connection, and for a partition whose fetch failed
/// (`replica.fetch.backoff.ms`).
const BACKOFF: Duration = Duration::from_millis(200);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longer than `MAX_WAIT_MS`: a leader that does not answer by then is treated as gone.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A partition to copy from its leader.
#[derive(Clone)]
pub struct Followed {
    pub topic: String,
    pub partition: Arc<Partition>,
    /// The leader epoch this broker follows it at (sent as `current_leader_epoch`).
    pub leader_epoch: i32,
}

impl Followed {
    /// The same partition replica followed at the same epoch.
    fn same(&self, other: &Followed) -> bool {
        self.topic == other.topic
            && Arc::ptr_eq(&self.partition, &other.partition)
            && self.leader_epoch == other.leader_epoch
    }
}

/// The partitions to fetch from one leader, at its address.
#[derive(Clone, Default)]
pub struct LeaderFeed {
    pub addr: String,
    pub partitions: Vec<Followed>,
}

struct Fetcher {
    addr: String,
    feed: watch::Sender<Arc<Vec<Followed>>>,
    task: JoinHandle<()>,
}

/// The fetcher tasks of this broker, one per leader it follows partitions from.
pub struct FetcherManager {
    me: i32,
    fetchers: Mutex<HashMap<i32, Fetcher>>,
}

impl FetcherManager {
    pub fn new(me: i32) -> FetcherManager {
        FetcherManager {
            me,
            fetchers: Mutex::new(HashMap::new()),
        }
    }

    /// Makes the fetchers follow exactly `wanted` (by leader id). Must be called inside the
    /// runtime; returns at once.
    pub fn follow(&self, wanted: BTreeMap<i32, LeaderFeed>) {
        let mut fetchers = self.fetchers.lock().unwrap_or_else(|e| e.into_inner());
        fetchers.retain(|leader, fetcher| {
            let keep = wanted
                .get(leader)
                .is_some_and(|feed| feed.addr == fetcher.addr && !fetcher.task.is_finished());
            if !keep {
                fetcher.task.abort();
            }
            keep
        });
        for (leader, feed) in wanted {
            if let Some(fetcher) = fetchers.get(&leader) {
                // Every image application calls this; only a real change may wake the fetcher,
                // which drops the fetch in flight and must then skip its answer.
                fetcher.feed.send_if_modified(|current| {
                    let same = current.len() == feed.partitions.len()
                        && current.iter().zip(&feed.partitions).all(|(a, b)| a.same(b));
                    if !same {
                        *current = Arc::new(feed.partitions);
                    }
                    !same
                });
                continue;
            }
            let partitions = Arc::new(feed.partitions);
            let (tx, rx) = watch::channel(partitions);
            let task = tokio::spawn(run(self.me, leader, feed.addr.clone(), rx));
            fetchers.insert(
                leader,
                Fetcher {
                    addr: feed.addr,
                    feed: tx,
                    task,
                },
            );
        }
    }

    /// Stops every fetcher (shutdown).
    pub fn stop(&self) {
        let mut fetchers = self.fetchers.lock().unwrap_or_else(|e| e.into_inner());
        for (_, fetcher) in fetchers.drain() {
            fetcher.task.abort();
        }
    }
}

impl Drop for FetcherManager {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One leader's fetch loop: connect, fetch, apply, until aborted.
async fn run(me: i32, leader: i32, addr: String, mut feed: watch::Receiver<Arc<Vec<Followed>>>) {
    let client_id = format!("inlet-replica-fetcher-{me}-{leader}");
    let mut client: Option<Client> = None;
    // Partitions whose last fetch failed sit out until then (Kafka's delayed partitions), so
    // that one refused partition does not turn the loop into a busy one.
    let mut delayed: HashMap<(String, i32), Instant> = HashMap::new();
    loop {
        let partitions = feed.borrow_and_update().clone();
        if partitions.is_empty() {
            if feed.changed().await.is_err() {
                return;
            }
            continue;
        }
        let Some(connected) = client.as_mut() else {
            match tokio::time::timeout(CONNECT_TIMEOUT, Client::connect(addr.as_str(), &client_id))
                .await
            {
                Ok(Ok(mut connected)) => {
                    connected.set_timeout(REQUEST_TIMEOUT);
                    client = Some(connected);
                }
                Ok(Err(error)) => {
                    tracing::debug!(leader, %addr, %error, "cannot reach the leader; retrying");
                    pause(&mut feed).await;
                }
                Err(_) => {
                    tracing::debug!(leader, %addr, "connecting to the leader timed out; retrying");
                    pause(&mut feed).await;
                }
            }
            continue;
        };
        let now = Instant::now();
        delayed.retain(|_, until| *until > now);
        let (request, sent) = fetch_request(me, &partitions, &delayed);
        if sent.is_empty() {
            pause(&mut feed).await;
            continue;
        }
        let response = tokio::select! {
            response = connected.send_version(request, FETCH_VERSION) => response,
            // A new set of partitions: the answer in flight is skipped by the client.
            _ = feed.changed() => continue,
        };
        match response {
            Ok(response) => {
                let failed = apply(leader, &sent, response);
                let until = Instant::now() + BACKOFF;
                delayed.extend(failed.into_iter().map(|key| (key, until)));
            }
            Err(error) => {
                tracing::info!(leader, %addr, %error, "fetch from the leader failed; reconnecting");
                client = None;
                pause(&mut feed).await;
            }
        }
    }
}

/// Waits [`BACKOFF`], or less if the partitions to follow change.
async fn pause(feed: &mut watch::Receiver<Arc<Vec<Followed>>>) {
    let _ = tokio::time::timeout(BACKOFF, feed.changed()).await;
}

/// The Fetch request for `partitions`, and which partition each entry is (by topic, index).
fn fetch_request(
    me: i32,
    partitions: &[Followed],
    delayed: &HashMap<(String, i32), Instant>,
) -> (FetchRequest, HashMap<(String, i32), Followed>) {
    let mut topics: BTreeMap<&str, Vec<FetchPartition>> = BTreeMap::new();
    let mut sent = HashMap::new();
    for followed in partitions {
        let key = (followed.topic.clone(), followed.partition.index);
        if delayed.contains_key(&key) {
            continue;
        }
        let position = match followed.partition.follower_position() {
            Ok(position) => position,
            // Closed: its topic is being deleted.
            Err(_) => continue,
        };
        topics.entry(&followed.topic).or_default().push(
            FetchPartition::default()
                .with_partition(followed.partition.index)
                .with_current_leader_epoch(followed.leader_epoch)
                .with_fetch_offset(position.log_end)
                .with_last_fetched_epoch(position.last_fetched_epoch)
                .with_log_start_offset(position.log_start)
                .with_partition_max_bytes(PARTITION_MAX_BYTES),
        );
        sent.insert(key, followed.clone());
    }
    let topics = topics
        .into_iter()
        .map(|(name, partitions)| {
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(name.to_string())))
                .with_partitions(partitions)
        })
        .collect();
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(me))
        .with_max_wait_ms(MAX_WAIT_MS)
        .with_min_bytes(1)
        .with_max_bytes(RESPONSE_MAX_BYTES)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(topics);
    (request, sent)
}

/// Applies a Fetch answer; returns the partitions that failed (all of them if the whole
/// request was refused).
fn apply(
    leader: i32,
    sent: &HashMap<(String, i32), Followed>,
    response: FetchResponse,
) -> Vec<(String, i32)> {
    if response.error_code != 0 {
        tracing::debug!(
            leader,
            code = response.error_code,
            "the leader refused the fetch"
        );
        return sent.keys().cloned().collect();
    }
    let mut failed = Vec::new();
    for topic in response.responses {
        for data in topic.partitions {
            let key = (topic.topic.0.to_string(), data.partition_index);
            let Some(followed) = sent.get(&key) else {
                continue;
            };
            if !apply_partition(leader, followed, data) {
                failed.push(key);
            }
        }
    }
    failed
}

fn apply_partition(leader: i32, followed: &Followed, data: PartitionData) -> bool {
    let partition = &followed.partition;
    let (topic, index) = (&followed.topic, partition.index);
    if data.error_code == ResponseError::OffsetOutOfRange.code() {
        // Our log end is below the leader's start (retention ran there while we were away):
        // what we have cannot be continued, start over where the leader's log starts.
        let ours = partition.follower_position().ok();
        if ours.is_some_and(|p| p.log_end < data.log_start_offset) {
            return log_failure(
                topic,
                index,
                partition.restart_log_at(data.log_start_offset).map(|_| ()),
            );
        }
        tracing::warn!(%topic, partition = index, leader, leader_start = data.log_start_offset,
            "the leader says our fetch offset is out of range; retrying");
        return false;
    }
    if data.error_code != 0 {
        tracing::debug!(%topic, partition = index, leader, code = data.error_code,
            "the leader refused this partition's fetch; waiting for new metadata");
        return false;
    }
    if data.diverging_epoch.epoch >= 0 && data.diverging_epoch.end_offset >= 0 {
        let truncated = partition
            .truncate_to_divergence(data.diverging_epoch.epoch, data.diverging_epoch.end_offset);
        return log_failure(topic, index, truncated.map(|_| ()));
    }
    let records = data.records.unwrap_or_default();
    let appended =
        partition.append_as_follower(followed.leader_epoch, &records, data.high_watermark);
    match appended {
        // Records the leader deleted (DeleteRecords) go here too.
        Ok(_) => log_failure(
            topic,
            index,
            partition.adopt_leader_log_start(data.log_start_offset),
        ),
        // The log moved under us (a truncation raced this answer): the next fetch starts from
        // the new end.
        Err(PartitionError::Storage(StorageError::UnexpectedAppendOffset { .. })) => true,
        Err(error) => log_failure(topic, index, Err(error)),
    }
}

fn log_failure(topic: &str, index: i32, result: Result<(), PartitionError>) -> bool {
    match result {
        Ok(()) => true,
        Err(PartitionError::NotLeader { .. }) => false,
        Err(error) => {
            tracing::warn!(%topic, partition = index, %error, "cannot apply fetched data");
            false
        }
    }
}
