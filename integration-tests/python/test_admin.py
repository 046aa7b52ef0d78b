"""Admin calls of confluent-kafka's AdminClient that operations tools and scripts make, against a
real broker process.

* `alter_configs` (the legacy AlterConfigs API, the only config call kafkajs has): the request is
  the topic's whole set of overrides, so overrides it leaves out are removed; a bad value changes
  nothing; `describe_configs` shows the result.
* offsets by timestamp: `offsets_for_times` and `list_offsets` find the first *record* at or
  after a time, inside a compressed batch too, and `OffsetSpec.max_timestamp()` (ListOffsets v7)
  the newest record.
* `describe_log_dirs` (kafka-python): the broker's data directory with each partition's size and
  the filesystem's total and usable bytes.
"""

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource, NewTopic, OffsetSpec
from kafka import KafkaAdminClient


def admin_client(bootstrap):
    return AdminClient({"bootstrap.servers": bootstrap})


def overrides(admin, topic):
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    described = admin.describe_configs([resource])[resource].result(timeout=20)
    return {
        name: entry.value
        for name, entry in described.items()
        if entry.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    }


@pytest.mark.filterwarnings("ignore:alter_configs has been deprecated")
def test_alter_configs_replaces_the_topics_whole_set_of_overrides(broker):
    admin = admin_client(broker.bootstrap)
    created = admin.create_topics([NewTopic("configured", 1, 1, config={"retention.ms": "86400000"})])
    created["configured"].result(timeout=20)
    assert overrides(admin, "configured") == {"retention.ms": "86400000"}

    resource = ConfigResource(
        ConfigResource.Type.TOPIC,
        "configured",
        set_config={"cleanup.policy": "compact", "segment.ms": "3600000"},
    )
    admin.alter_configs([resource])[resource].result(timeout=20)
    # retention.ms was not in the new set, so its override is gone.
    assert overrides(admin, "configured") == {"cleanup.policy": "compact", "segment.ms": "3600000"}

    bad = ConfigResource(
        ConfigResource.Type.TOPIC, "configured", set_config={"segment.ms": "soon"}
    )
    with pytest.raises(KafkaException) as raised:
        admin.alter_configs([bad])[bad].result(timeout=20)
    assert raised.value.args[0].name() == "INVALID_CONFIG"
    assert overrides(admin, "configured") == {"cleanup.policy": "compact", "segment.ms": "3600000"}

    only_checked = ConfigResource(
        ConfigResource.Type.TOPIC, "configured", set_config={"retention.ms": "1000"}
    )
    admin.alter_configs([only_checked], validate_only=True)[only_checked].result(timeout=20)
    assert overrides(admin, "configured") == {"cleanup.policy": "compact", "segment.ms": "3600000"}


def test_describe_log_dirs_shows_partition_sizes_and_free_space(broker):
    admin = admin_client(broker.bootstrap)
    admin.create_topics([NewTopic("sized", 2, 1)])["sized"].result(timeout=20)
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(1000):
        producer.produce("sized", value=b"x" * 100, partition=0)
    assert producer.flush(20) == 0
    del producer  # closes it now, not after the broker has stopped

    client = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        [answer] = client.describe_log_dirs()
    finally:
        client.close()
    [log_dir] = answer["log_dirs"]
    assert log_dir["error_code"] == 0, log_dir
    assert log_dir["log_dir"] == str(broker.data_dir)
    assert log_dir["total_bytes"] > log_dir["usable_bytes"] > 0, log_dir
    [topic] = [t for t in log_dir["topics"] if t["name"] == "sized"]
    sizes = {p["partition_index"]: p["partition_size"] for p in topic["partitions"]}
    assert set(sizes) == {0, 1}
    assert sizes[0] >= 1000 * 100 and sizes[1] == 0, sizes


@pytest.mark.parametrize("codec", ["none", "lz4"])
def test_offsets_by_timestamp_are_record_accurate(broker, codec):
    topic = f"timed-{codec}"
    admin = admin_client(broker.bootstrap)
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=20)
    base = 1_790_000_000_000
    # 20 records a second apart, in one batch (the linger keeps them together).
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 1000,
                         "compression.type": codec})
    for i in range(20):
        producer.produce(topic, value=f"v{i}".encode(), partition=0, timestamp=base + i * 1000)
    assert producer.flush(20) == 0
    del producer

    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "timed"})
    found = consumer.offsets_for_times([TopicPartition(topic, 0, base + 10_500)], timeout=20)
    consumer.close()
    assert found[0].offset == 11, found

    wanted = {
        "time": OffsetSpec.for_timestamp(base + 10_500),
        "newest": OffsetSpec.max_timestamp(),
        "earliest": OffsetSpec.earliest(),
        "latest": OffsetSpec.latest(),
    }
    answers = {}
    for name, spec in wanted.items():
        tp = TopicPartition(topic, 0)
        answers[name] = admin.list_offsets({tp: spec})[tp].result(timeout=20)
    assert (answers["time"].offset, answers["time"].timestamp) == (11, base + 11_000)
    assert (answers["newest"].offset, answers["newest"].timestamp) == (19, base + 19_000)
    assert answers["earliest"].offset == 0 and answers["latest"].offset == 20
