//! DeleteRecords on a partition: the leader's checks, the wait for the in-sync followers' log
//! starts, and a follower taking its leader's start.

use std::sync::atomic::Ordering;

use inlet_protocol::batch::TestBatchBuilder;
use inlet_storage::StorageError;
use kafka_protocol::ResponseError;
use tokio::time::{Duration, Instant};

use super::{Partition, PartitionError, ReadLimit};
use crate::metadata::image::PartitionImage;

fn partition(dir: &std::path::Path) -> Partition {
    let log = inlet_storage::Log::open(dir, inlet_storage::LogConfig::default()).unwrap();
    Partition::new("t", 0, log)
}

fn batch(n: usize) -> Vec<u8> {
    TestBatchBuilder::default().build(&vec![(&b"k"[..], &b"v"[..]); n])
}

fn image(leader: i32, isr: &[i32]) -> PartitionImage {
    PartitionImage {
        replicas: vec![1, 2, 3],
        isr: isr.to_vec(),
        leader,
        leader_epoch: 3,
        partition_epoch: 5,
        adding_replicas: Vec::new(),
        removing_replicas: Vec::new(),
    }
}

#[test]
fn the_leader_moves_its_start_up_to_the_high_watermark_only() {
    let dir = tempfile::tempdir().unwrap();
    let p = partition(dir.path());
    p.append(&batch(10)).unwrap();
    assert_eq!(p.delete_records_before(4).unwrap(), 4);
    assert_eq!(
        p.delete_records_before(2).unwrap(),
        4,
        "below the start: unchanged"
    );
    assert!(matches!(
        p.delete_records_before(11),
        Err(PartitionError::Storage(
            StorageError::OffsetOutOfRange { .. }
        ))
    ));
    assert!(p.delete_records_before(-2).is_err());
    assert!(matches!(
        p.read(3, 1 << 20, ReadLimit::HighWatermark),
        Err(PartitionError::Storage(StorageError::OffsetOutOfRange {
            log_start: 4,
            ..
        }))
    ));
    assert_eq!(p.offsets().unwrap().log_start, 4);
    assert_eq!(
        p.delete_records_before(-1).unwrap(),
        10,
        "-1 is the high watermark"
    );
}

#[test]
fn a_follower_refuses_delete_records_and_takes_its_leaders_start() {
    let dir = tempfile::tempdir().unwrap();
    let p = partition(dir.path());
    p.append(&batch(10)).unwrap();
    p.apply_image(2, &image(1, &[1, 2, 3]), 0).unwrap();
    assert!(matches!(
        p.delete_records_before(3),
        Err(PartitionError::NotLeader { .. })
    ));
    p.adopt_leader_log_start(6).unwrap();
    assert_eq!(p.offsets().unwrap().log_start, 6);
    // Never past its own end; the high watermark follows the start up.
    p.adopt_leader_log_start(50).unwrap();
    let offsets = p.offsets().unwrap();
    assert_eq!((offsets.log_start, offsets.log_end), (10, 10));
    assert_eq!(p.high_watermark.load(Ordering::Acquire), 10);
}

#[tokio::test]
async fn the_answer_waits_for_every_in_sync_followers_start() {
    let dir = tempfile::tempdir().unwrap();
    let p = partition(dir.path());
    p.apply_image(1, &image(1, &[1, 2, 3]), 0).unwrap();
    p.append(&batch(10)).unwrap();
    for follower in [2, 3] {
        p.follower_fetched(1, follower, 10, 0, 1).unwrap();
    }
    assert_eq!(p.delete_records_before(7).unwrap(), 7);
    let soon = Instant::now() + Duration::from_millis(50);
    assert_eq!(
        p.wait_for_low_watermark(7, 3, soon).await,
        Err(ResponseError::RequestTimedOut)
    );
    p.follower_fetched(1, 2, 10, 7, 2).unwrap();
    let later = Instant::now() + Duration::from_secs(5);
    let waiting = p.wait_for_low_watermark(7, 3, later);
    let report = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        p.follower_fetched(1, 3, 10, 9, 3).unwrap();
    };
    let (low, ()) = tokio::join!(waiting, report);
    assert_eq!(low, Ok(7));
    // Another epoch's leader answers NOT_LEADER_OR_FOLLOWER.
    assert_eq!(
        p.wait_for_low_watermark(7, 4, later).await,
        Err(ResponseError::NotLeaderOrFollower)
    );
}
