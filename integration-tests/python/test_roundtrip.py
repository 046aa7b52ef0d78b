"""kafka-python against a real broker: admin topic creation, keyed records with headers produced
with acks='all' (plain and gzip), read back by a group-less consumer and checked field by field."""

import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

PARTITIONS = 3
RECORDS = 3000


def expected(i: int):
    key = f"key-{i:05d}".encode()
    value = (f"value {i} " + "abcdefghij" * (i % 40)).encode()
    headers = [("index", str(i).encode()), ("client", b"kafka-python")]
    if i % 2:
        headers.append(("odd", b""))
    return key, value, headers


def create_topic(bootstrap: str, topic: str):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="inlet-pytest-admin")
    try:
        admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])
        deadline = time.monotonic() + 10
        while topic not in admin.list_topics():
            assert time.monotonic() < deadline, f"{topic} not in list_topics() after CreateTopics"
            time.sleep(0.1)
    finally:
        admin.close()


def produce(bootstrap: str, topic: str, compression):
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        compression_type=compression,
        linger_ms=5,
    )
    try:
        futures = []
        for i in range(RECORDS):
            key, value, headers = expected(i)
            futures.append(producer.send(topic, key=key, value=value, headers=headers))
        producer.flush(timeout=60)
        acked = {}
        for i, future in enumerate(futures):
            metadata = future.get(timeout=30)
            assert metadata.topic == topic
            acked[i] = (metadata.partition, metadata.offset)
        return acked
    finally:
        producer.close(timeout=10)


def consume(bootstrap: str, topic: str, count: int):
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        partitions = consumer.partitions_for_topic(topic)
        assert partitions == set(range(PARTITIONS)), f"partitions of {topic}: {partitions}"
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        consumer.seek_to_beginning()
        records = []
        deadline = time.monotonic() + 60
        while len(records) < count and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        # Anything beyond `count` would be a duplicate or a stray record: give it a chance to show.
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
        return records
    finally:
        consumer.close()


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_admin_produce_consume_round_trip(broker, compression):
    topic = f"py-round-trip-{compression or 'none'}"
    create_topic(broker.bootstrap, topic)

    acked = produce(broker.bootstrap, topic, compression)
    assert len(acked) == RECORDS
    assert {p for p, _ in acked.values()} == set(range(PARTITIONS)), "keys spread over every partition"

    records = consume(broker.bootstrap, topic, RECORDS)
    seen = {}
    offsets = {p: [] for p in range(PARTITIONS)}
    for r in records:
        assert r.topic == topic
        i = int(r.key.decode().split("-")[1])
        key, value, headers = expected(i)
        assert r.key == key
        assert r.value == value, f"value of record {i}"
        assert list(r.headers) == headers, f"headers of record {i}"
        assert (r.partition, r.offset) == acked[i], f"record {i} consumed away from where it was acked"
        assert i not in seen, f"record {i} consumed twice"
        seen[i] = r
        offsets[r.partition].append(r.offset)
    missing = sorted(set(acked) - set(seen))
    assert not missing, f"{len(missing)} acknowledged records never consumed, e.g. {missing[:10]}"
    assert len(records) == RECORDS
    for p, offs in offsets.items():
        assert offs == list(range(len(offs))), f"offsets of partition {p} are dense from 0"
