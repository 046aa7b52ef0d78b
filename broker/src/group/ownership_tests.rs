//! Which groups a coordinator serves as the image moves leadership of `__consumer_offsets`
//! partitions: load on becoming leader, unload on losing it, NOT_COORDINATOR elsewhere.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::membership::JoinRequest;
use super::state::CommittedOffset;
use super::store::offsets_topic_config;
use super::{GroupConfig, GroupCoordinator, GroupError, Replay, OFFSETS_TOPIC};
use crate::cluster::topics::TopicRegistry;
use crate::config::LogDefaults;
use crate::metadata::image::{MetadataImage, PartitionImage, TopicImage};

pub(crate) fn registry(dir: &Path) -> TopicRegistry {
    TopicRegistry::open(dir, LogDefaults::default()).unwrap()
}

/// An image whose offsets topic (id `id`) has one partition per entry of `leaders`.
fn image(id: Uuid, leaders: &[i32]) -> MetadataImage {
    image_at(id, leaders, 0)
}

/// [`image`] with every partition at leader epoch `epoch`.
fn image_at(id: Uuid, leaders: &[i32], epoch: i32) -> MetadataImage {
    let mut image = MetadataImage::default();
    let partitions = leaders
        .iter()
        .map(|&leader| PartitionImage {
            replicas: vec![1, 2],
            isr: vec![1, 2],
            leader,
            leader_epoch: epoch,
            partition_epoch: 0,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        })
        .collect();
    image.topics.insert(
        OFFSETS_TOPIC.to_string(),
        TopicImage {
            id,
            name: OFFSETS_TOPIC.to_string(),
            configs: BTreeMap::new(),
            partitions,
        },
    );
    image
}

/// Follows `image` as broker `me`, with the local offsets topic of `topics`.
fn follow(groups: &Arc<GroupCoordinator>, topics: &TopicRegistry, me: i32, image: &MetadataImage) {
    let local = |id: Uuid, index: i32| {
        topics
            .get(OFFSETS_TOPIC)
            .filter(|t| t.id == id)?
            .partition(index)
    };
    groups.follow(me, image, local, Replay::Inline);
}

/// Creates the local offsets topic (if missing) and makes `groups` lead all its partitions, as
/// broker 1.
pub(crate) fn leading_everything(
    groups: &Arc<GroupCoordinator>,
    topics: &TopicRegistry,
    id: Uuid,
    count: i32,
) {
    if topics.get(OFFSETS_TOPIC).is_none() {
        topics
            .create_with_id(OFFSETS_TOPIC, id, count, offsets_topic_config(), false)
            .unwrap();
    }
    let leaders: Vec<i32> = (0..count).map(|_| 1).collect();
    follow(groups, topics, 1, &image(id, &leaders));
}

pub(crate) fn commit(groups: &GroupCoordinator, group: &str, partition: i32, offset: i64) {
    let results = try_commit(groups, group, partition, offset);
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
}

fn try_commit(
    groups: &GroupCoordinator,
    group: &str,
    partition: i32,
    offset: i64,
) -> Vec<Result<(), GroupError>> {
    let value = CommittedOffset {
        offset,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp_ms: 0,
    };
    groups
        .commit(group, -1, "", None, vec![("t".into(), partition, value)])
        .0
        .into_iter()
        .map(|(_, _, r)| r)
        .collect()
}

pub(crate) fn committed(groups: &GroupCoordinator, group: &str) -> Vec<(i32, i64)> {
    groups
        .fetch(group, None)
        .unwrap()
        .into_iter()
        .flat_map(|(_, partitions)| partitions)
        .map(|(p, o)| (p, o.map_or(-1, |o| o.offset)))
        .collect()
}

/// Group ids whose offsets partition among `count` is `partition`.
fn groups_of(partition: i32, count: i32, how_many: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("group-{i}"))
        .filter(|g| MetadataImage::offsets_partition_for(g, count) == partition)
        .take(how_many)
        .collect()
}

const COUNT: i32 = 4;

#[test]
fn without_the_offsets_topic_every_group_is_coordinated_elsewhere() {
    let groups = Arc::new(GroupCoordinator::new(GroupConfig::default()));
    assert_eq!(
        try_commit(&groups, "g", 0, 1),
        vec![Err(GroupError::NotCoordinator)]
    );
    assert_eq!(
        groups.fetch("g", None).err(),
        Some(GroupError::NotCoordinator)
    );
    assert!(groups.list().is_empty());
    assert_eq!(groups.delete("g"), Err(GroupError::NotCoordinator));
}

#[test]
fn becoming_leader_loads_the_partitions_groups_and_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let topics = registry(dir.path());
    let id = Uuid::from_u128(1);
    let mine = groups_of(1, COUNT, 2);
    let other = groups_of(2, COUNT, 1);
    {
        let writer = Arc::new(GroupCoordinator::new(GroupConfig::default()));
        leading_everything(&writer, &topics, id, COUNT);
        assert_eq!(writer.loaded_partitions(), vec![0, 1, 2, 3]);
        for (i, group) in mine.iter().chain(&other).enumerate() {
            commit(&writer, group, 0, 10 + i as i64);
        }
    }
    // A fresh coordinator (a restart) that leads only partition 1 of the same logs.
    let groups = Arc::new(GroupCoordinator::new(GroupConfig::default()));
    follow(&groups, &topics, 1, &image(id, &[2, 1, 2, 2]));
    assert_eq!(groups.loaded_partitions(), vec![1]);
    assert_eq!(committed(&groups, &mine[0]), vec![(0, 10)]);
    assert_eq!(committed(&groups, &mine[1]), vec![(0, 11)]);
    let listed: Vec<String> = groups.list().into_iter().map(|g| g.group_id).collect();
    assert_eq!(listed, mine, "only the groups of the led partition");
    // A group of a partition led by broker 2: NOT_COORDINATOR for every kind of request.
    assert_eq!(
        groups.fetch(&other[0], None).err(),
        Some(GroupError::NotCoordinator)
    );
    assert_eq!(
        try_commit(&groups, &other[0], 0, 99),
        vec![Err(GroupError::NotCoordinator)]
    );
    assert_eq!(
        groups.heartbeat(&other[0], "m", None, 1),
        Err(GroupError::NotCoordinator)
    );
    assert_eq!(
        groups.describe(&other[0]).err(),
        Some(GroupError::NotCoordinator)
    );
    assert_eq!(
        groups.leave(&other[0], &[("m".into(), None)]).err(),
        Some(GroupError::NotCoordinator)
    );
    // Leadership of partition 2 arrives: its group is loaded with its offset.
    follow(&groups, &topics, 1, &image(id, &[2, 1, 1, 2]));
    assert_eq!(groups.loaded_partitions(), vec![1, 2]);
    assert_eq!(committed(&groups, &other[0]), vec![(0, 12)]);
}

#[tokio::test]
async fn losing_leadership_unloads_and_answers_parked_joins_not_coordinator() {
    let dir = tempfile::tempdir().unwrap();
    let topics = registry(dir.path());
    let id = Uuid::from_u128(2);
    let groups = Arc::new(GroupCoordinator::new(GroupConfig::default()));
    leading_everything(&groups, &topics, id, COUNT);
    let group = groups_of(3, COUNT, 1).remove(0);
    let kept = groups_of(0, COUNT, 1).remove(0);
    commit(&groups, &kept, 0, 7);
    // A first member's join waits out the initial rebalance delay (3 s): it is parked.
    let joining = {
        let groups = groups.clone();
        let group = group.clone();
        tokio::spawn(async move {
            let request = JoinRequest {
                member_id: String::new(),
                instance_id: None,
                client_id: "client".into(),
                client_host: "/127.0.0.1".into(),
                session_timeout_ms: 10_000,
                rebalance_timeout_ms: 10_000,
                protocol_type: "consumer".into(),
                protocols: vec![("range".into(), bytes::Bytes::from_static(b"m"))],
                requires_known_member_id: false,
            };
            groups.join(&group, request).await
        })
    };
    let parked = tokio::time::timeout(Duration::from_secs(5), async {
        while groups.describe(&group).ok().flatten().is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(parked.is_ok(), "the join never reached the group");
    // Broker 2 becomes leader of partition 3.
    follow(&groups, &topics, 1, &image(id, &[1, 1, 1, 2]));
    let answer = tokio::time::timeout(Duration::from_secs(2), joining)
        .await
        .expect("the parked join is answered at once")
        .unwrap();
    assert_eq!(answer.err(), Some(GroupError::NotCoordinator));
    assert_eq!(groups.loaded_partitions(), vec![0, 1, 2]);
    assert_eq!(
        groups.describe(&group).err(),
        Some(GroupError::NotCoordinator)
    );
    assert_eq!(
        committed(&groups, &kept),
        vec![(0, 7)],
        "other partitions stay"
    );
    // The topic is gone from the image: nothing is coordinated here any more.
    follow(&groups, &topics, 1, &MetadataImage::default());
    assert!(groups.loaded_partitions().is_empty());
    assert_eq!(
        groups.fetch(&kept, None).err(),
        Some(GroupError::NotCoordinator)
    );
}

#[test]
fn a_partition_being_replayed_answers_load_in_progress() {
    let groups = Arc::new(GroupCoordinator::new(GroupConfig::default()));
    {
        let mut inner = groups.lock();
        inner.topic = Some((Uuid::from_u128(3), COUNT));
        inner.led.insert(1, super::coordinator::Led::Loading(1));
    }
    let group = groups_of(1, COUNT, 1).remove(0);
    assert_eq!(
        groups.fetch(&group, None).err(),
        Some(GroupError::CoordinatorLoadInProgress)
    );
    let elsewhere = groups_of(0, COUNT, 1).remove(0);
    assert_eq!(
        groups.fetch(&elsewhere, None).err(),
        Some(GroupError::NotCoordinator)
    );
}

#[test]
fn a_led_partition_without_a_local_log_is_retried_at_the_next_image() {
    let dir = tempfile::tempdir().unwrap();
    let topics = registry(dir.path());
    let id = Uuid::from_u128(4);
    let groups = Arc::new(GroupCoordinator::new(GroupConfig::default()));
    follow(&groups, &topics, 1, &image(id, &[1, 1]));
    assert!(groups.loaded_partitions().is_empty());
    topics
        .create_with_id(OFFSETS_TOPIC, id, 2, offsets_topic_config(), false)
        .unwrap();
    follow(&groups, &topics, 1, &image(id, &[1, 1]));
    assert_eq!(groups.loaded_partitions(), vec![0, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_replay_serves_the_groups_once_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let topics = registry(dir.path());
    let id = Uuid::from_u128(5);
    let group = groups_of(0, 2, 1).remove(0);
    {
        let writer = Arc::new(GroupCoordinator::new(GroupConfig::default()));
        leading_everything(&writer, &topics, id, 2);
        commit(&writer, &group, 0, 5);
    }
    let groups = Arc::new(GroupCoordinator::new(GroupConfig::default()));
    let local = |id: Uuid, index: i32| {
        topics
            .get(OFFSETS_TOPIC)
            .filter(|t| t.id == id)?
            .partition(index)
    };
    groups.follow(1, &image(id, &[1, 1]), local, Replay::Background);
    let loaded = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match groups.fetch(&group, None) {
                Err(GroupError::CoordinatorLoadInProgress) => {}
                other => return other,
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("loaded within 5 s");
    assert_eq!(
        loaded.unwrap()[0].1[0].1.as_ref().map(|o| o.offset),
        Some(5)
    );
}

#[test]
fn an_overtaken_load_does_not_install_its_groups() {
    let dir = tempfile::tempdir().unwrap();
    let topics = registry(dir.path());
    let id = Uuid::from_u128(6);
    let group = groups_of(0, 1, 1).remove(0);
    {
        let writer = Arc::new(GroupCoordinator::new(GroupConfig::default()));
        leading_everything(&writer, &topics, id, 1);
        commit(&writer, &group, 0, 5);
    }
    let groups = GroupCoordinator::new(GroupConfig::default());
    {
        let mut inner = groups.lock();
        inner.topic = Some((id, 1));
        inner.led.insert(0, super::coordinator::Led::Loading(2));
    }
    let log = topics.get(OFFSETS_TOPIC).unwrap().partition(0).unwrap();
    // Load 1 was for an earlier leadership of partition 0; load 2 is the current one.
    groups.load(0, 1, super::store::OffsetsStore::new(log.clone()));
    assert_eq!(
        groups.fetch(&group, None).err(),
        Some(GroupError::CoordinatorLoadInProgress)
    );
    groups.load(0, 2, super::store::OffsetsStore::new(log));
    assert_eq!(committed(&groups, &group), vec![(0, 5)]);
}

#[test]
fn leadership_regained_at_a_new_epoch_reloads_the_partition() {
    let dir = tempfile::tempdir().unwrap();
    let topics = registry(dir.path());
    let id = Uuid::from_u128(7);
    let group = groups_of(0, 1, 1).remove(0);
    let groups = Arc::new(GroupCoordinator::new(GroupConfig::default()));
    leading_everything(&groups, &topics, id, 1);
    commit(&groups, &group, 0, 1);
    // Meanwhile another leader wrote to the log (what replication will bring in).
    let other = Arc::new(GroupCoordinator::new(GroupConfig::default()));
    follow(&other, &topics, 2, &image_at(id, &[2], 1));
    commit(&other, &group, 0, 2);
    // The same image epoch: nothing is replayed again.
    follow(&groups, &topics, 1, &image(id, &[1]));
    assert_eq!(committed(&groups, &group), vec![(0, 1)]);
    // Led again at a later epoch: replayed, with what the other leader wrote.
    follow(&groups, &topics, 1, &image_at(id, &[1], 2));
    assert_eq!(committed(&groups, &group), vec![(0, 2)]);
}
