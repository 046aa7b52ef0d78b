//! The metadata image: the cluster as the controller's log describes it once applied (cluster
//! id, broker registrations, topics with their partitions, the producer-id high mark, dynamic
//! broker configs). Plain data, ordered maps only, so that every node applying the same log holds
//! an equal (and equally serialised) image; `controller::apply` is the only writer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Kafka's name for the topic that holds committed offsets (and chooses group coordinators).
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// The internal topic holding the transaction coordinator's state.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// The whole cluster metadata, as of log index `last_applied`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MetadataImage {
    pub cluster_id: Option<String>,
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    /// By topic name.
    pub topics: BTreeMap<String, TopicImage>,
    /// Start of the next producer-id block to hand out; never goes down.
    pub next_producer_id: i64,
    /// Dynamic broker configs by broker id (not validated here: see `controller::apply`).
    pub broker_configs: BTreeMap<i32, BTreeMap<String, String>>,
    /// Raft log index of the last command applied (errors included: they are applied as no-ops).
    pub last_applied: u64,
    /// Client quotas (AlterClientQuotas), one entry per entity, in entity order.
    #[serde(default)]
    pub client_quotas: Vec<crate::metadata::quotas::ClientQuota>,
}

/// One broker incarnation, as registered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub id: i32,
    /// Chosen by the broker process at start-up: a new one means the broker restarted.
    pub incarnation_id: Uuid,
    /// The log index of this registration (Kafka's broker epoch).
    pub epoch: i64,
    pub listeners: Vec<Endpoint>,
    pub rack: Option<String>,
    /// Fenced brokers lead nothing, are in no ISR (except as a partition's last member) and are
    /// not listed to clients.
    pub fenced: bool,
}

/// An advertised listener.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub name: String,
    pub host: String,
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopicImage {
    pub id: Uuid,
    pub name: String,
    /// Validated topic config overrides (Kafka names).
    pub configs: BTreeMap<String, String>,
    /// Index in this vector = partition index.
    pub partitions: Vec<PartitionImage>,
}

/// One partition's placement and leadership.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionImage {
    /// Distinct broker ids; the first is the preferred leader.
    pub replicas: Vec<i32>,
    /// In-sync replicas: a non-empty subset of `replicas`.
    pub isr: Vec<i32>,
    /// -1: no leader (every ISR member is fenced; unclean election is off).
    pub leader: i32,
    /// +1 on every leader change.
    pub leader_epoch: i32,
    /// +1 on every change of replicas, ISR or leader.
    pub partition_epoch: i32,
    /// While a reassignment runs (`replicas` is then the old and the target replicas together):
    /// the target replicas being added, which must join the ISR before it completes ...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding_replicas: Vec<i32>,
    /// ... and the replicas that leave when it does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing_replicas: Vec<i32>,
}

/// Java's `String.hashCode`: `31 * h + c` over the UTF-16 code units, wrapping in 32 bits.
pub fn java_string_hashcode(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// Kafka's `Utils.abs`: `i32::MIN` maps to 0 (where `Math.abs` would stay negative).
fn kafka_abs(n: i32) -> i32 {
    if n == i32::MIN {
        0
    } else {
        n.abs()
    }
}

impl MetadataImage {
    /// Registered brokers that are not fenced, by id.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    /// Whether `broker_id` is registered and not fenced.
    pub fn is_live(&self, broker_id: i32) -> bool {
        self.brokers.get(&broker_id).is_some_and(|b| !b.fenced)
    }

    pub fn topic(&self, name: &str) -> Option<&TopicImage> {
        self.topics.get(name)
    }

    /// A scan: topics are few enough, and a second index would be one more thing to keep equal.
    pub fn topic_by_id(&self, id: Uuid) -> Option<&TopicImage> {
        self.topics.values().find(|t| t.id == id)
    }

    pub fn partition(&self, topic: &str, index: i32) -> Option<&PartitionImage> {
        let index = usize::try_from(index).ok()?;
        self.topics.get(topic)?.partitions.get(index)
    }

    /// Kafka's group coordinator choice: the leader of partition
    /// `abs(hashCode(group)) % n` of `__consumer_offsets`; None if that topic or leader is missing.
    pub fn group_coordinator(&self, group_id: &str) -> Option<i32> {
        let topic = self.topics.get(OFFSETS_TOPIC)?;
        let count = i32::try_from(topic.partitions.len()).ok()?;
        if count == 0 {
            return None;
        }
        let partition = Self::offsets_partition_for(group_id, count);
        let leader = self.partition(OFFSETS_TOPIC, partition)?.leader;
        (leader >= 0).then_some(leader)
    }

    /// The broker coordinating `transactional_id`: the leader of its `__transaction_state`
    /// partition (Kafka's `TransactionStateManager.partitionFor`, the same hashing as groups).
    pub fn transaction_coordinator(&self, transactional_id: &str) -> Option<i32> {
        let topic = self.topics.get(TRANSACTION_STATE_TOPIC)?;
        let count = i32::try_from(topic.partitions.len()).ok()?;
        if count == 0 {
            return None;
        }
        let partition = Self::offsets_partition_for(transactional_id, count);
        let leader = self.partition(TRANSACTION_STATE_TOPIC, partition)?.leader;
        (leader >= 0).then_some(leader)
    }

    /// The `__consumer_offsets` partition of `group_id` among `partitions` (Kafka's
    /// `GroupCoordinator.partitionFor`); 0 when `partitions` is not positive.
    pub fn offsets_partition_for(group_id: &str, partitions: i32) -> i32 {
        if partitions <= 0 {
            return 0;
        }
        kafka_abs(java_string_hashcode(group_id)) % partitions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values computed independently (Python: 31*h + u over UTF-16 units mod 2^32).
    #[test]
    fn java_hashcode_matches_java() {
        assert_eq!(java_string_hashcode(""), 0);
        assert_eq!(java_string_hashcode("test"), 3_556_498);
        assert_eq!(java_string_hashcode("my-group"), -1_906_497_762);
        assert_eq!(java_string_hashcode("console-consumer-12345"), 158_455_506);
        assert_eq!(java_string_hashcode("group-é"), 293_427_483);
        // A surrogate pair: two UTF-16 units.
        assert_eq!(java_string_hashcode("😀g"), 54_959_972);
        assert_eq!(java_string_hashcode("polygenelubricants"), i32::MIN);
    }

    #[test]
    fn offsets_partition_uses_kafka_abs() {
        assert_eq!(MetadataImage::offsets_partition_for("my-group", 50), 12);
        assert_eq!(MetadataImage::offsets_partition_for("test", 50), 48);
        assert_eq!(
            MetadataImage::offsets_partition_for("console-consumer-12345", 50),
            6
        );
        assert_eq!(MetadataImage::offsets_partition_for("group-é", 50), 33);
        assert_eq!(MetadataImage::offsets_partition_for("😀g", 50), 22);
        // hashCode == Integer.MIN_VALUE: Utils.abs gives 0, not a negative partition.
        assert_eq!(
            MetadataImage::offsets_partition_for("polygenelubricants", 50),
            0
        );
        assert_eq!(MetadataImage::offsets_partition_for("my-group", 0), 0);
        assert_eq!(MetadataImage::offsets_partition_for("my-group", 1), 0);
    }

    fn partition(leader: i32) -> PartitionImage {
        PartitionImage {
            replicas: vec![1, 2],
            isr: vec![1, 2],
            leader,
            leader_epoch: 0,
            partition_epoch: 0,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        }
    }

    #[test]
    fn group_coordinator_is_the_leader_of_the_groups_offsets_partition() {
        let mut image = MetadataImage::default();
        assert_eq!(image.group_coordinator("my-group"), None);
        let partitions = (0..50)
            .map(|p| partition(if p == 12 { 2 } else { 1 }))
            .collect();
        image.topics.insert(
            OFFSETS_TOPIC.to_string(),
            TopicImage {
                id: Uuid::from_u128(7),
                name: OFFSETS_TOPIC.to_string(),
                configs: BTreeMap::new(),
                partitions,
            },
        );
        assert_eq!(image.group_coordinator("my-group"), Some(2));
        assert_eq!(image.group_coordinator("test"), Some(1));
        if let Some(topic) = image.topics.get_mut(OFFSETS_TOPIC) {
            topic.partitions[12].leader = -1;
        }
        assert_eq!(image.group_coordinator("my-group"), None);
    }
}
