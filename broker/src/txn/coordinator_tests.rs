//! The coordinator over a real (single-replica) `__transaction_state` partition: changes are
//! written and replayed, requests from fenced producers are refused, and Produce's check follows
//! the open transaction.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::ownership::Replay;
use super::store::txn_topic_config;
use super::{TransactionCoordinator, TxnConfig, TxnError, TRANSACTION_STATE_TOPIC};
use crate::cluster::topics::TopicRegistry;
use crate::config::LogDefaults;
use crate::metadata::image::{MetadataImage, PartitionImage, TopicImage};

const TOPIC_ID: Uuid = Uuid::from_u128(77);

fn registry(dir: &std::path::Path) -> TopicRegistry {
    TopicRegistry::open(dir, LogDefaults::default()).unwrap()
}

/// A coordinator leading the one partition of the local state topic, as broker 1.
fn leading(topics: &TopicRegistry) -> Arc<TransactionCoordinator> {
    let txns = Arc::new(TransactionCoordinator::new(TxnConfig::default()));
    follow_leading(&txns, topics);
    txns
}

/// Makes `txns` lead the one partition of the local state topic (created if missing).
fn follow_leading(txns: &Arc<TransactionCoordinator>, topics: &TopicRegistry) {
    if topics.get(TRANSACTION_STATE_TOPIC).is_none() {
        topics
            .create_with_id(
                TRANSACTION_STATE_TOPIC,
                TOPIC_ID,
                1,
                txn_topic_config(),
                false,
            )
            .unwrap();
    }
    let placed = PartitionImage {
        replicas: vec![1],
        isr: vec![1],
        leader: 1,
        leader_epoch: 0,
        partition_epoch: 0,
        adding_replicas: Vec::new(),
        removing_replicas: Vec::new(),
    };
    let local = topics.get(TRANSACTION_STATE_TOPIC).unwrap();
    local
        .partition(0)
        .unwrap()
        .apply_image(1, &placed, 0)
        .unwrap();
    let mut image = MetadataImage::default();
    image.topics.insert(
        TRANSACTION_STATE_TOPIC.to_string(),
        TopicImage {
            id: TOPIC_ID,
            name: TRANSACTION_STATE_TOPIC.to_string(),
            configs: BTreeMap::new(),
            partitions: vec![placed],
        },
    );
    let local_log = |id: Uuid, index: i32| {
        topics
            .get(TRANSACTION_STATE_TOPIC)
            .filter(|t| t.id == id)?
            .partition(index)
    };
    txns.follow(1, &image, local_log, Replay::Inline);
    assert_eq!(txns.loaded_partitions(), vec![0]);
}

fn parts(list: &[(&str, i32)]) -> BTreeSet<(String, i32)> {
    list.iter().map(|(t, p)| (t.to_string(), *p)).collect()
}

#[tokio::test]
async fn an_ending_transaction_is_replayed_with_its_markers_due() {
    let dir = tempfile::tempdir().unwrap();
    {
        let topics = registry(dir.path());
        let txns = leading(&topics);
        assert_eq!(txns.needs_producer_id("tx", None), Ok(true));
        let (pid, epoch) = txns
            .init_producer_id("tx", 60_000, None, Some(42))
            .await
            .unwrap();
        assert_eq!((pid, epoch), (42, 0));
        txns.add_partitions("tx", 42, 0, parts(&[("out", 0), ("out", 1)]))
            .await
            .unwrap();
        txns.end_txn("tx", 42, 0, true).await.unwrap();
        assert_eq!(txns.describe("tx").unwrap().state, "PrepareCommit");
        assert!(txns.lock().due.contains("tx"));
        topics.close_all();
    }
    let topics = registry(dir.path());
    let txns = leading(&topics);
    let described = txns.describe("tx").unwrap();
    assert_eq!(described.state, "PrepareCommit");
    assert_eq!((described.producer_id, described.producer_epoch), (42, 0));
    assert_eq!(described.partitions, vec![("out".to_string(), vec![0, 1])]);
    assert!(
        txns.lock().due.contains("tx"),
        "markers are written again after a reload"
    );
    let listed = txns.list(&["PrepareCommit".to_string()], &[]);
    assert_eq!(listed.len(), 1);
    assert!(txns.list(&["Ongoing".to_string()], &[]).is_empty());
    assert!(txns.list(&[], &[7]).is_empty());
}

#[tokio::test]
async fn a_new_producer_fences_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let topics = registry(dir.path());
    let txns = leading(&topics);
    txns.init_producer_id("tx", 60_000, None, Some(1))
        .await
        .unwrap();
    let (_, epoch) = txns
        .init_producer_id("tx", 60_000, None, None)
        .await
        .unwrap();
    assert_eq!(epoch, 1);
    assert_eq!(
        txns.add_partitions("tx", 1, 0, parts(&[("a", 0)])).await,
        Err(TxnError::ProducerFenced)
    );
    assert_eq!(
        txns.add_partitions("tx", 2, 1, parts(&[("a", 0)])).await,
        Err(TxnError::InvalidProducerIdMapping)
    );
    assert_eq!(
        txns.init_producer_id("tx", 1_000_000, None, None).await,
        Err(TxnError::InvalidTransactionTimeout(1_000_000))
    );
    assert!(matches!(
        txns.describe("unknown"),
        Err(TxnError::TransactionalIdNotFound(_))
    ));
}

#[tokio::test]
async fn produce_is_verified_against_the_open_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let topics = registry(dir.path());
    let txns = leading(&topics);
    txns.init_producer_id("tx", 60_000, None, Some(9))
        .await
        .unwrap();
    assert_eq!(
        txns.verify("tx", 9, 0, "a", 0).await,
        Err(ResponseError::InvalidTxnState),
        "no transaction open"
    );
    txns.add_partitions("tx", 9, 0, parts(&[("a", 0)]))
        .await
        .unwrap();
    assert_eq!(txns.verify("tx", 9, 0, "a", 0).await, Ok(()));
    assert_eq!(
        txns.verify("tx", 9, 0, "a", 1).await,
        Err(ResponseError::InvalidTxnState)
    );
    assert_eq!(
        txns.verify("tx", 9, 1, "a", 0).await,
        Err(ResponseError::InvalidProducerEpoch)
    );
    assert_eq!(
        txns.verify("other", 9, 0, "a", 0).await,
        Err(ResponseError::InvalidProducerIdMapping)
    );
    // An open transaction of the previous producer is aborted before a new one starts.
    assert_eq!(
        txns.init_producer_id("tx", 60_000, None, None).await,
        Err(TxnError::ConcurrentTransactions)
    );
    let described = txns.describe("tx").unwrap();
    assert_eq!(
        (described.state.as_str(), described.producer_epoch),
        ("PrepareAbort", 1)
    );
}

#[tokio::test]
async fn a_state_log_replaced_under_the_coordinator_is_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let topics = registry(dir.path());
    let txns = leading(&topics);
    txns.init_producer_id("tx", 60_000, None, Some(3))
        .await
        .unwrap();
    // An image application deleted and re-created the local log (same topic id and epoch).
    topics.delete(TRANSACTION_STATE_TOPIC).unwrap();
    follow_leading(&txns, &topics);
    assert!(
        matches!(
            txns.describe("tx"),
            Err(TxnError::TransactionalIdNotFound(_))
        ),
        "replayed from the new (empty) log"
    );
    let (pid, _) = txns
        .init_producer_id("tx", 60_000, None, Some(4))
        .await
        .unwrap();
    assert_eq!(pid, 4, "writes go to the new log");
}
