"""Consumer groups with kafka-python against a real broker process.

* Committed offsets survive a crash: a group commits, the broker is killed with SIGKILL after the
  commit was acknowledged and restarted on the same data directory, and a new consumer of the same
  group resumes exactly at the committed offset.
* A member that stops heartbeating (its process is SIGSTOPped) is evicted after
  session.timeout.ms and its partitions move to the member that is still alive.
"""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.structs import OffsetAndMetadata

from conftest import Broker

SESSION_TIMEOUT_MS = 6000
HEARTBEAT_MS = 500


@pytest.fixture
def group_broker(tmp_path, monkeypatch):
    """A broker whose groups start rebalancing without the 3 s initial delay."""
    monkeypatch.setenv("INLET_GROUP_INITIAL_REBALANCE_DELAY_MS", "100")
    b = Broker(tmp_path)
    b.start()
    yield b
    if b.process.poll() is None:
        assert b.terminate() == 0, b.log_tail()


def create_topic(bootstrap, topic, partitions):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="inlet-pytest-admin")
    try:
        admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    finally:
        admin.close()


def produce(bootstrap, topic, count, start=0):
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i in range(start, start + count):
        producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=0)
    producer.flush()
    producer.close()


def consumer(bootstrap, group, topic, **extra):
    return KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=HEARTBEAT_MS,
        **extra,
    )


def poll_records(c, want, timeout_s=30):
    records = []
    deadline = time.monotonic() + timeout_s
    while len(records) < want and time.monotonic() < deadline:
        for batch in c.poll(timeout_ms=200, max_records=want - len(records)).values():
            records.extend(batch)
    return records


def test_committed_offset_survives_kill9_and_restart(group_broker):
    topic, group = "resume-after-crash", "resume-group"
    create_topic(group_broker.bootstrap, topic, 1)
    produce(group_broker.bootstrap, topic, 100)
    tp = TopicPartition(topic, 0)

    first = consumer(group_broker.bootstrap, group, topic)
    records = poll_records(first, 40)
    assert [r.offset for r in records] == list(range(40))
    # Synchronous: returns only after the broker acknowledged the commit.
    first.commit({tp: OffsetAndMetadata(40, "after-40", -1)})
    assert first.committed(tp) == 40

    group_broker.process.kill()
    group_broker.process.wait()
    group_broker.start()
    first.close(autocommit=False)

    second = consumer(group_broker.bootstrap, group, topic)
    records = poll_records(second, 10)
    assert records, group_broker.log_tail()
    assert records[0].offset == 40, f"resumed at {records[0].offset}, committed 40"
    assert [r.value for r in records[:3]] == [b"v40", b"v41", b"v42"]
    assert second.committed(tp) == 40
    second.close(autocommit=False)

    # The admin view of the same state: offsets, then deleting the (now empty) group.
    admin = KafkaAdminClient(bootstrap_servers=group_broker.bootstrap)
    try:
        offsets = admin.list_group_offsets(group)[group]
        assert offsets[tp].offset == 40, offsets
        # As Kafka: the internal offsets topic is in the all-topics listing (flagged internal).
        assert "__consumer_offsets" in admin.list_topics()
        listed = admin.list_groups()
        assert group in [g[0] if isinstance(g, tuple) else g["group_id"] for g in listed], listed
        admin.delete_groups([group])
        assert admin.list_group_offsets(group)[group] == {}
    finally:
        admin.close()


MEMBER_SCRIPT = """
import sys, time
from kafka import KafkaConsumer
c = KafkaConsumer(sys.argv[2], bootstrap_servers=sys.argv[1], group_id=sys.argv[3],
                  enable_auto_commit=False, auto_offset_reset="earliest",
                  session_timeout_ms=int(sys.argv[4]), heartbeat_interval_ms=int(sys.argv[5]))
last = None
while True:
    c.poll(timeout_ms=100)
    now = sorted(tp.partition for tp in c.assignment())
    if now != last:
        print("assigned", ",".join(map(str, now)), flush=True)
        last = now
"""


def test_member_that_stops_heartbeating_is_evicted_and_its_partitions_move(group_broker):
    topic, group = "evict-silent-member", "evict-group"
    create_topic(group_broker.bootstrap, topic, 4)
    silent = subprocess.Popen(
        [sys.executable, "-c", MEMBER_SCRIPT, group_broker.bootstrap, topic, group,
         str(SESSION_TIMEOUT_MS), str(HEARTBEAT_MS)],
        stdout=subprocess.PIPE, text=True,
    )
    assignments = []
    reader = threading.Thread(target=lambda: assignments.extend(silent.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 30
        while not any(line.strip() != "assigned" for line in assignments):
            assert time.monotonic() < deadline, "the first member never got partitions"
            time.sleep(0.1)

        alive = consumer(group_broker.bootstrap, group, topic)
        deadline = time.monotonic() + 30
        while len(alive.assignment()) != 2:
            assert time.monotonic() < deadline, f"no 2/2 split: {alive.assignment()} {assignments}"
            alive.poll(timeout_ms=100)

        os.kill(silent.pid, signal.SIGSTOP)
        stopped = time.monotonic()
        while len(alive.assignment()) != 4:
            assert time.monotonic() - stopped < 30, f"partitions never moved: {alive.assignment()}"
            alive.poll(timeout_ms=100)
        moved_after = time.monotonic() - stopped
        print(f"silent member evicted and partitions moved after {moved_after:.2f}s")
        # Not before the session timeout (less one heartbeat interval of slack).
        assert moved_after >= (SESSION_TIMEOUT_MS - HEARTBEAT_MS) / 1000, moved_after

        admin = KafkaAdminClient(bootstrap_servers=group_broker.bootstrap)
        try:
            description = admin.describe_groups([group])[group]
            assert description["group_state"] == "Stable", description
            assert len(description["members"]) == 1, description
            # As Kafka shows a member's address.
            assert description["members"][0]["client_host"] == "/127.0.0.1", description
        finally:
            admin.close()
        alive.close(autocommit=False)
    finally:
        silent.kill()
        silent.wait()
