"""Transactions (exactly-once) with real clients against a real broker process.

* confluent-kafka's transactional producer, every codec: committed transactions are visible to a
  `read_committed` consumer and aborted ones never are (a `read_uncommitted` one sees both).
* A consume-transform-produce loop (a group consumer, a transactional producer and
  `send_offsets_to_transaction`) killed with SIGKILL at random points, and the broker killed and
  restarted once meanwhile: the output topic, read `read_committed`, holds each input record's
  result exactly once.
* A zombie producer is fenced by a new one with the same `transactional.id`; a transaction left
  open past `transaction.timeout.ms` is aborted by the broker and its records never appear.
* kafka-python's transactional producer and `read_committed` consumer.
"""

import collections
import random
import signal
import subprocess
import sys
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer, KafkaProducer

from conftest import Broker

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


@pytest.fixture
def txn_broker(tmp_path, monkeypatch):
    """A single broker whose groups rebalance without the 3 s initial delay."""
    monkeypatch.setenv("INLET_GROUP_INITIAL_REBALANCE_DELAY_MS", "100")
    b = Broker(tmp_path)
    b.start()
    yield b
    if b.process.poll() is None:
        assert b.terminate() == 0, b.log_tail()


def create_topic(bootstrap, topic, partitions=1):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        future.result(timeout=20)


def txn_producer(bootstrap, transactional_id, **extra):
    config = {
        "bootstrap.servers": bootstrap,
        "transactional.id": transactional_id,
        "linger.ms": 5,
    }
    config.update(extra)
    producer = Producer(config)
    producer.init_transactions(30)
    return producer


def read_all(bootstrap, topic, partitions=1, isolation="read_committed", want=None, timeout_s=20):
    """Every record of `topic` from the start as (key, value), reading until `want` records came
    or, without `want`, until nothing new arrived for 2 s."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"reader-{uuid.uuid4()}",
        "enable.auto.commit": False,
        "isolation.level": isolation,
    })
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    records = []
    deadline = time.monotonic() + timeout_s
    quiet_since = time.monotonic()
    try:
        while time.monotonic() < deadline:
            if want is not None and len(records) >= want:
                break
            if want is None and time.monotonic() - quiet_since > 2:
                break
            for m in consumer.consume(num_messages=500, timeout=0.2):
                if m.error() is None:
                    records.append((m.key(), m.value()))
                    quiet_since = time.monotonic()
    finally:
        consumer.close()
    return records


@pytest.mark.parametrize("codec", CODECS)
def test_committed_transactions_are_visible_and_aborted_ones_never(txn_broker, codec):
    topic = f"txn-{codec}"
    create_topic(txn_broker.bootstrap, topic)
    producer = txn_producer(txn_broker.bootstrap, f"visible-{codec}", **{"compression.type": codec})
    sent = {"commit": [], "abort": []}
    for round_ in range(3):
        for outcome in ("commit", "abort"):
            producer.begin_transaction()
            for i in range(50):
                value = f"{outcome}-{round_}-{i}".encode()
                producer.produce(topic, value=value)
                sent[outcome].append(value)
            if outcome == "commit":
                producer.commit_transaction(30)
            else:
                producer.flush(30)
                producer.abort_transaction(30)

    committed = [v for _, v in read_all(txn_broker.bootstrap, topic, want=len(sent["commit"]))]
    assert committed == sent["commit"]
    # Nothing aborted shows up after the committed records either.
    assert not [v for _, v in read_all(txn_broker.bootstrap, topic) if v.startswith(b"abort")]
    # The aborted records are in the log: read_uncommitted sees everything, in send order.
    everything = [v for _, v in read_all(txn_broker.bootstrap, topic, isolation="read_uncommitted", want=300)]
    assert sorted(everything) == sorted(sent["commit"] + sent["abort"])


WORKER = r"""
import sys
import time
from confluent_kafka import Consumer, KafkaException, Producer

bootstrap, group, source, sink, transactional_id = sys.argv[1:6]
consumer = Consumer({
    "bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
    "auto.offset.reset": "earliest", "isolation.level": "read_committed",
    "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
    # Static membership (KIP-345): a restarted worker takes its predecessor's place at once.
    "group.instance.id": "transform-worker",
})
producer = Producer({
    "bootstrap.servers": bootstrap, "transactional.id": transactional_id,
    "transaction.timeout.ms": 10000, "linger.ms": 5,
})
try:
    producer.init_transactions(30)
    consumer.subscribe([source])
    while True:
        messages = [m for m in consumer.consume(num_messages=20, timeout=0.5) if m.error() is None]
        if not messages:
            continue
        producer.begin_transaction()
        for m in messages:
            producer.produce(sink, key=m.key(), value=b"out-" + m.value())
        producer.send_offsets_to_transaction(
            consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 30)
        producer.commit_transaction(30)
        time.sleep(0.1)  # spread the work over several worker lifetimes
except KafkaException as e:
    # Any failure (a broker restart mid-transaction, a fenced epoch): exit and be restarted, as a
    # stream processor's supervisor would; the next instance aborts what this one left open.
    print(f"worker failed: {e}", file=sys.stderr)
    sys.exit(3)
"""


def test_consume_transform_produce_is_exactly_once_across_kill9(txn_broker, tmp_path):
    bootstrap = txn_broker.bootstrap
    create_topic(bootstrap, "source", 3)
    create_topic(bootstrap, "sink", 3)
    total = 3000
    plain = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for i in range(total):
        plain.produce("source", key=f"k{i}".encode(), value=f"v{i}".encode(), partition=i % 3)
    assert plain.flush(30) == 0

    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    worker_log = open(tmp_path / "worker.log", "ab")

    def start_worker():
        return subprocess.Popen(
            [sys.executable, str(script), bootstrap, "transform", "source", "sink", "transform-1"],
            stdout=worker_log, stderr=subprocess.STDOUT)

    rng = random.Random(20261202)
    worker = start_worker()
    kills = 0
    broker_restarted = False
    deadline = time.monotonic() + 120
    done = 0
    while time.monotonic() < deadline:
        time.sleep(rng.uniform(0.7, 2.0))
        done = len(read_all(bootstrap, "sink", 3, timeout_s=3, want=total))
        if done >= total:
            break
        if worker.poll() is None:
            worker.send_signal(signal.SIGKILL)
            kills += 1
        worker.wait()
        if kills == 3 and not broker_restarted:
            txn_broker.process.kill()
            txn_broker.process.wait()
            txn_broker.start()
            broker_restarted = True
        worker = start_worker()
    if worker.poll() is None:
        worker.send_signal(signal.SIGKILL)
    worker.wait()
    worker_log.close()
    print(f"{kills} worker kills, broker restarted: {broker_restarted}, {done} results")
    assert kills >= 3 and broker_restarted

    results = read_all(bootstrap, "sink", 3, want=total + 1, timeout_s=10)
    counts = collections.Counter(key for key, _ in results)
    duplicated = {k: n for k, n in counts.items() if n > 1}
    missing = {f"k{i}".encode() for i in range(total)} - set(counts)
    assert not duplicated, f"{len(duplicated)} results written more than once: {list(duplicated)[:5]}"
    assert not missing, f"{len(missing)} results missing: {sorted(missing)[:5]}"
    assert all(value == b"out-v" + key[1:] for key, value in results)


def test_a_zombie_producer_is_fenced_by_a_new_instance(txn_broker):
    bootstrap = txn_broker.bootstrap
    create_topic(bootstrap, "fencing")
    zombie = txn_producer(bootstrap, "fenced-id")
    zombie.begin_transaction()
    zombie.produce("fencing", value=b"from the zombie")
    zombie.flush(10)

    successor = txn_producer(bootstrap, "fenced-id")
    successor.begin_transaction()
    successor.produce("fencing", value=b"from the successor")
    successor.commit_transaction(30)

    with pytest.raises(KafkaException) as raised:
        zombie.produce("fencing", value=b"after fencing")
        zombie.commit_transaction(10)
    error = raised.value.args[0]
    assert error.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH), error
    values = [v for _, v in read_all(bootstrap, "fencing")]
    assert values == [b"from the successor"]


def test_a_transaction_left_open_past_its_timeout_is_aborted(txn_broker):
    bootstrap = txn_broker.bootstrap
    create_topic(bootstrap, "abandoned")
    stuck = txn_producer(bootstrap, "abandoned-id", **{"transaction.timeout.ms": 2000})
    stuck.begin_transaction()
    stuck.produce("abandoned", value=b"never committed")
    stuck.flush(10)

    later = txn_producer(bootstrap, "later-id")
    later.begin_transaction()
    later.produce("abandoned", value=b"committed later")
    later.commit_transaction(30)

    # The open transaction holds the last stable offset back until the broker aborts it.
    started = time.monotonic()
    values = [v for _, v in read_all(bootstrap, "abandoned", want=1, timeout_s=30)]
    print(f"read_committed got past the abandoned transaction after {time.monotonic() - started:.1f}s")
    assert values == [b"committed later"]
    uncommitted = [v for _, v in read_all(bootstrap, "abandoned", isolation="read_uncommitted", want=2)]
    assert uncommitted == [b"never committed", b"committed later"]
    with pytest.raises(KafkaException):
        stuck.commit_transaction(10)


def test_kafka_python_transactional_producer(txn_broker):
    bootstrap = txn_broker.bootstrap
    create_topic(bootstrap, "kafka-python-txn")
    producer = KafkaProducer(bootstrap_servers=bootstrap, transactional_id="kafka-python-txn")
    producer.init_transactions()
    producer.begin_transaction()
    for i in range(10):
        producer.send("kafka-python-txn", value=f"kept-{i}".encode())
    producer.commit_transaction()
    producer.begin_transaction()
    for i in range(10):
        producer.send("kafka-python-txn", value=f"dropped-{i}".encode())
    producer.abort_transaction()
    producer.begin_transaction()
    producer.send("kafka-python-txn", value=b"kept-last")
    producer.commit_transaction()
    producer.close()

    consumer = KafkaConsumer(
        "kafka-python-txn",
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=5000,
    )
    values = [r.value for r in consumer]
    consumer.close()
    assert values == [f"kept-{i}".encode() for i in range(10)] + [b"kept-last"]
