"""A three-node cluster started by `scripts/cluster.sh` (the one command a developer uses),
driven with kafka-python: a replicated topic created through one broker, records produced
through the cluster's bootstrap list, read back by a consumer group bootstrapped to another
broker (its coordinator need not be that broker), then the cluster stopped with SIGTERM.
"""

import os
import random
import socket
import subprocess
import time
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
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
    }
    started = subprocess.run(["bash", str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=60)
    logs = lambda: "\n".join(
        f"---- node {n} ----\n" + "\n".join((tmp_path / "cluster" / f"node-{n}" / "log").read_text(errors="replace").splitlines()[-30:])
        for n in (1, 2, 3)
    )
    assert started.returncode == 0, f"{started.stdout}\n{started.stderr}\n{logs()}"
    brokers = [f"127.0.0.1:{base + 2 * i}" for i in range(3)]
    yield brokers, logs
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
    brokers, logs = cluster
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
