"""A three-node cluster started by `scripts/cluster.sh` (the one command a developer uses),
driven with kafka-python: a replicated topic created through one broker, records produced
through the cluster's bootstrap list, read back by a consumer group bootstrapped to another
broker (its coordinator need not be that broker), then the cluster stopped with SIGTERM. And
replication with kafka-python's idempotent acks=all producer: the partition's leader is killed
(`scripts/cluster.sh kill`) while it produces, and every acknowledged record is read back once,
at the offset it was acknowledged at.
"""

import os
import random
import socket
import subprocess
import time
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from conftest import WORKSPACE, inlet_bin

SCRIPT = WORKSPACE / "scripts" / "cluster.sh"
RECORDS = 200


def ports_free(base: int) -> bool:
    for port in range(base, base + 6):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


@pytest.fixture
def cluster(tmp_path):
    base = next(b for b in (random.randrange(30000, 60000, 2) for _ in range(50)) if ports_free(b))
    env = {
        **os.environ,
        "INLET_BIN": str(inlet_bin()),
        "CLUSTER_DIR": str(tmp_path / "cluster"),
        "BASE_PORT": str(base),
        # Quick fencing, so that a killed leader is replaced within the test's waits.
        "INLET_BROKER_SESSION_TIMEOUT_MS": "3000",
        "INLET_BROKER_HEARTBEAT_INTERVAL_MS": "500",
    }
    started = subprocess.run(["bash", str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=60)
    logs = lambda: "\n".join(
        f"---- node {n} ----\n" + "\n".join((tmp_path / "cluster" / f"node-{n}" / "log").read_text(errors="replace").splitlines()[-30:])
        for n in (1, 2, 3)
    )
    assert started.returncode == 0, f"{started.stdout}\n{started.stderr}\n{logs()}"
    brokers = [f"127.0.0.1:{base + 2 * i}" for i in range(3)]

    def control(*args):
        done = subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"cluster.sh {args}: {done.stdout}\n{done.stderr}\n{logs()}"

    yield brokers, logs, control
    subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True, timeout=30)
    deadline = time.monotonic() + 20
    pids = [int((tmp_path / "cluster" / f"node-{n}" / "pid").read_text()) for n in (1, 2, 3)]
    while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
    for pid in alive:
        os.kill(pid, 9)
    assert not alive, f"nodes still running 20 s after SIGTERM\n{logs()}"


def test_replicated_topic_produce_and_group_consume_across_brokers(cluster):
    brokers, logs, _ = cluster
    admin = KafkaAdminClient(bootstrap_servers=brokers[1], client_id="inlet-pytest-admin")
    try:
        admin.create_topics([NewTopic("py-orders", num_partitions=4, replication_factor=3)])
    finally:
        admin.close()

    producer = KafkaProducer(bootstrap_servers=",".join(brokers), acks="all")
    for i in range(RECORDS):
        producer.send("py-orders", key=f"k{i}".encode(), value=f"v{i}".encode())
    producer.flush(timeout=30)
    producer.close()

    consumer = KafkaConsumer(
        "py-orders",
        bootstrap_servers=brokers[2],
        group_id="py-readers",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=1000,
    )
    seen = set()
    deadline = time.monotonic() + 30
    while len(seen) < RECORDS and time.monotonic() < deadline:
        for message in consumer:
            seen.add(message.value)
    consumer.commit()
    partitions = consumer.partitions_for_topic("py-orders")
    consumer.close()
    assert partitions == {0, 1, 2, 3}
    assert len(seen) == RECORDS, f"{len(seen)} of {RECORDS} records\n{logs()}"


def leader_of(brokers, topic, partition):
    admin = KafkaAdminClient(bootstrap_servers=",".join(brokers), client_id="inlet-pytest-admin")
    try:
        described = admin.describe_topics([topic])
    finally:
        admin.close()
    for p in described[0]["partitions"]:
        if p["partition_index"] == partition:
            return p["leader_id"]
    return -1


def test_acknowledged_records_survive_a_killed_leader(cluster):
    brokers, logs, control = cluster
    admin = KafkaAdminClient(bootstrap_servers=brokers[0], client_id="inlet-pytest-admin")
    try:
        admin.create_topics([NewTopic("py-durable", num_partitions=1, replication_factor=3,
                                      topic_configs={"min.insync.replicas": "2"})])
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=",".join(brokers), acks="all",
                             enable_idempotence=True, retries=100, request_timeout_ms=10000)
    acked = {}

    def produce(first, count):
        futures = [(i, producer.send("py-durable", value=str(i).encode(), partition=0))
                   for i in range(first, first + count)]
        for i, future in futures:
            acked[i] = future.get(timeout=60).offset

    produce(0, 500)
    leader = leader_of(brokers, "py-durable", 0)
    assert leader in (1, 2, 3), leader
    control("kill", str(leader))
    produce(500, 500)
    producer.close()
    survivors = [b for n, b in enumerate(brokers, 1) if n != leader]
    new_leader = leader_of(survivors, "py-durable", 0)
    assert new_leader not in (-1, leader), new_leader

    consumer = KafkaConsumer(bootstrap_servers=",".join(survivors), enable_auto_commit=False,
                             consumer_timeout_ms=2000)
    tp = TopicPartition("py-durable", 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    read = {}
    deadline = time.monotonic() + 30
    while len(read) < len(acked) and time.monotonic() < deadline:
        for message in consumer:
            value = int(message.value)
            assert value not in read, f"{value} read twice"
            read[value] = message.offset
    consumer.close()
    assert read == acked, f"{len(read)} read, {len(acked)} acknowledged\n{logs()}"
