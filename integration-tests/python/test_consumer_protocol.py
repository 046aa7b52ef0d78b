"""KIP-848's consumer group protocol (`group.protocol=consumer`) with confluent-kafka (librdkafka).

One group over a 6-partition topic: a lone member gets every partition; a second member joining
splits them 3/3 with no record delivered to both once the rebalance settles (every record is
committed before the next poll, so a moved partition resumes where its previous owner stopped);
a member that closes gives its partitions back at once; a member killed with SIGKILL loses them
after the session timeout; a new consumer resumes at the committed offsets; every record is
consumed at least once and the committed offsets end at the log end. The admin client lists and
describes the group as a consumer group.
"""

import os
import signal
import subprocess
import sys
import time

import pytest
from confluent_kafka import Consumer, ConsumerGroupState, ConsumerGroupType, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Broker

TOPIC = "kip848"
GROUP = "kip848-group"
PARTITIONS = 6
SESSION_TIMEOUT_MS = 6000


@pytest.fixture
def consumer_broker(request, tmp_path):
    b = Broker(
        tmp_path,
        args=[
            "--group-consumer-session-timeout-ms",
            str(SESSION_TIMEOUT_MS),
            "--group-consumer-heartbeat-interval-ms",
            "500",
        ],
    )
    b.start()
    yield b
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    code = b.terminate() if b.process.poll() is None else b.process.returncode
    if failed:
        print(b.log_tail(80))
    assert code == 0, b.log_tail()


def new_consumer(bootstrap, **extra):
    config = {
        "bootstrap.servers": bootstrap,
        "group.id": GROUP,
        "group.protocol": "consumer",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }
    config.update(extra)
    c = Consumer(config)
    c.subscribe([TOPIC])
    return c


def produce(bootstrap, count, start):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i in range(start, start + count):
        p.produce(TOPIC, value=f"v{i}".encode(), partition=i % PARTITIONS)
    assert p.flush(30) == 0


class Member:
    """A consumer that commits each record before polling the next one."""

    def __init__(self, name, consumer):
        self.name = name
        self.consumer = consumer
        self.seen = []  # (partition, offset, value)

    def poll(self):
        m = self.consumer.poll(0.05)
        if m is None or m.error():
            return
        self.seen.append((m.partition(), m.offset(), m.value()))
        self.consumer.commit(message=m, asynchronous=False)

    def owned(self):
        return sorted(tp.partition for tp in self.consumer.assignment())


def drive(members, done, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in members:
            m.poll()
        if done():
            return
    state = {m.name: m.owned() for m in members}
    pytest.fail(f"timed out waiting for {what}; assignments {state}")


def values(members):
    return [v for m in members for (_, _, v) in m.seen]


KILLED_CONSUMER = """
import sys, time
from confluent_kafka import Consumer
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[2],
              "group.protocol": "consumer", "enable.auto.commit": False,
              "auto.offset.reset": "earliest"})
c.subscribe([sys.argv[3]])
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    c.poll(0.1)
"""


def test_consumer_protocol_rebalances_and_commits(consumer_broker):
    bootstrap = consumer_broker.bootstrap
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(TOPIC, num_partitions=PARTITIONS, replication_factor=1)])[TOPIC].result(30)
    produce(bootstrap, 600, 0)

    a = Member("a", new_consumer(bootstrap))
    drive([a], lambda: len(a.owned()) == PARTITIONS and len(a.seen) >= 60, 30, "a alone to own 6")

    b = Member("b", new_consumer(bootstrap))
    drive([a, b], lambda: len(a.owned()) == 3 and len(b.owned()) == 3, 30, "a 3/3 split")
    assert set(a.owned()).isdisjoint(b.owned())
    drive([a, b], lambda: len(set(values([a, b]))) == 600, 30, "the first 600 records")

    # Settled: new records go to exactly one member, from its own partitions.
    mark_a, mark_b = len(a.seen), len(b.seen)
    produce(bootstrap, 300, 600)
    drive([a, b], lambda: len(set(values([a, b]))) == 900, 30, "300 records after the split")
    new_a, new_b = a.seen[mark_a:], b.seen[mark_b:]
    assert {(p, o) for p, o, _ in new_a}.isdisjoint({(p, o) for p, o, _ in new_b})
    assert {p for p, _, _ in new_a} <= set(a.owned())
    assert {p for p, _, _ in new_b} <= set(b.owned())
    assert len(new_a) + len(new_b) == 300

    b.consumer.close()
    drive([a], lambda: len(a.owned()) == PARTITIONS, 20, "a to get b's partitions after close")

    killed = subprocess.Popen(
        [sys.executable, "-c", KILLED_CONSUMER, bootstrap, GROUP, TOPIC],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        drive([a], lambda: 0 < len(a.owned()) < PARTITIONS, 30, "the subprocess member to get partitions")
        os.kill(killed.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        drive([a], lambda: len(a.owned()) == PARTITIONS, SESSION_TIMEOUT_MS / 1000 + 20, "the session timeout")
        assert time.monotonic() - killed_at > SESSION_TIMEOUT_MS / 1000 - 2
    finally:
        killed.kill()
        killed.wait(10)

    produce(bootstrap, 300, 900)
    drive([a], lambda: len(set(values([a, b]))) == 1200, 30, "every record")
    assert set(values([a, b])) == {f"v{i}".encode() for i in range(1200)}

    tps = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
    committed = {tp.partition: tp.offset for tp in a.consumer.committed(tps, timeout=10)}
    ends = {p: a.consumer.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10)[1] for p in range(PARTITIONS)}
    assert committed == ends == {p: 200 for p in range(PARTITIONS)}

    # The admin client sees a consumer group with one member.
    listed = admin.list_consumer_groups().result(30)
    ours = [g for g in listed.valid if g.group_id == GROUP]
    assert len(ours) == 1 and ours[0].type == ConsumerGroupType.CONSUMER, listed.valid
    described = admin.describe_consumer_groups([GROUP])[GROUP].result(30)
    assert described.type == ConsumerGroupType.CONSUMER
    assert described.state == ConsumerGroupState.STABLE
    assert len(described.members) == 1
    assert len(described.members[0].assignment.topic_partitions) == PARTITIONS
    a.consumer.close()

    # A new consumer resumes at the committed offsets.
    produce(bootstrap, 6, 1200)
    d = Member("d", new_consumer(bootstrap))
    try:
        drive([d], lambda: len(d.seen) == 6, 30, "a new consumer to resume")
        assert sorted((p, o) for p, o, _ in d.seen) == [(p, 200) for p in range(PARTITIONS)]
    finally:
        d.consumer.close()


def test_regex_subscription_follows_topics_created_later(consumer_broker):
    bootstrap = consumer_broker.bootstrap
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic("rx-a", num_partitions=2, replication_factor=1)])["rx-a"].result(30)
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "regex-group",
            "group.protocol": "consumer",
            "auto.offset.reset": "earliest",
            "topic.metadata.refresh.interval.ms": 1000,
        }
    )
    c.subscribe(["^rx-.*"])
    member = Member("regex", c)
    try:
        drive([member], lambda: len(c.assignment()) == 2, 30, "the regex's first topic")
        admin.create_topics([NewTopic("rx-b", num_partitions=3, replication_factor=1)])["rx-b"].result(30)
        drive([member], lambda: len(c.assignment()) == 5, 30, "the topic created later")
        assert {tp.topic for tp in c.assignment()} == {"rx-a", "rx-b"}
    finally:
        c.close()
