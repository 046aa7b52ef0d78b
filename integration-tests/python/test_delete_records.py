"""DeleteRecords (API 21) with confluent-kafka's `AdminClient.delete_records` and the `inlet`
CLI, against a real broker process:

* the returned low watermark is the requested offset, `get_watermark_offsets` agrees, and a
  consumer with `auto.offset.reset=earliest` starts there;
* offset -1 (`OFFSET_END`) deletes up to the high watermark; an offset past it is
  OFFSET_OUT_OF_RANGE; a compact-only topic is POLICY_VIOLATION;
* `inlet topic delete-records` prints each partition with its new low watermark and fails with
  Kafka's error name when the broker refuses.
"""

import subprocess
import uuid

import pytest
from confluent_kafka import OFFSET_END, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import inlet_bin

RECORDS = 100


def create(admin, topic, partitions=1, config=None):
    admin.create_topics([NewTopic(topic, partitions, 1, config=config or {})])[topic].result(timeout=20)


def produce(bootstrap, topic, count, partition=0):
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for i in range(count):
        producer.produce(topic, value=f"record {i}".encode(), partition=partition)
    assert producer.flush(20) == 0


def delete(admin, topic, partition, offset):
    futures = admin.delete_records([TopicPartition(topic, partition, offset)], operation_timeout=10)
    [(_, future)] = futures.items()
    return future.result(timeout=20)


def first_consumed_offset(bootstrap, topic):
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"g-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.subscribe([topic])
        for _ in range(100):
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                return message.offset()
        pytest.fail("the consumer read nothing")
    finally:
        consumer.close()


def cli(broker, *args):
    return subprocess.run(
        [str(inlet_bin()), "--bootstrap-server", broker.bootstrap, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_delete_records_moves_the_low_watermark_and_consumers_start_there(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    create(admin, "trimmed")
    produce(broker.bootstrap, "trimmed", RECORDS)

    deleted = delete(admin, "trimmed", 0, 37)
    assert deleted.low_watermark == 37
    probe = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "probe"})
    assert probe.get_watermark_offsets(TopicPartition("trimmed", 0), timeout=10) == (37, RECORDS)
    probe.close()
    assert first_consumed_offset(broker.bootstrap, "trimmed") == 37

    # Below the start: nothing changes.
    assert delete(admin, "trimmed", 0, 5).low_watermark == 37
    # Past the high watermark: refused.
    with pytest.raises(KafkaException) as raised:
        delete(admin, "trimmed", 0, RECORDS + 1)
    assert raised.value.args[0].name() == "OFFSET_OUT_OF_RANGE"
    # OFFSET_END: everything.
    assert delete(admin, "trimmed", 0, OFFSET_END).low_watermark == RECORDS


def test_a_compact_only_topic_refuses_delete_records(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    create(admin, "compacted", config={"cleanup.policy": "compact"})
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    producer.produce("compacted", key=b"k", value=b"v")
    assert producer.flush(20) == 0
    with pytest.raises(KafkaException) as raised:
        delete(admin, "compacted", 0, 1)
    assert raised.value.args[0].name() == "POLICY_VIOLATION"


def test_the_cli_deletes_records_of_one_or_every_partition(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    create(admin, "viacli", partitions=2)
    for p in (0, 1):
        produce(broker.bootstrap, "viacli", 20 + p, partition=p)

    one = cli(broker, "topic", "delete-records", "--topic", "viacli", "--partition", "0", "--offset", "7")
    assert one.returncode == 0, one.stderr
    assert ["0", "7"] in [line.split() for line in one.stdout.splitlines()]

    every = cli(broker, "topic", "delete-records", "--topic", "viacli", "--offset", "-1")
    assert every.returncode == 0, every.stderr
    rows = [line.split() for line in every.stdout.splitlines()]
    assert ["0", "20"] in rows and ["1", "21"] in rows

    refused = cli(broker, "topic", "delete-records", "--topic", "viacli", "--partition", "1", "--offset", "999")
    assert refused.returncode != 0
    assert "OffsetOutOfRange" in refused.stderr or "OFFSET_OUT_OF_RANGE" in refused.stderr, refused.stderr

    missing = cli(broker, "topic", "delete-records", "--topic", "nosuch", "--offset", "1")
    assert missing.returncode != 0
    assert "nosuch" in missing.stderr
