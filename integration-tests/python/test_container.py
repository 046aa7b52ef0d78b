"""The container image end to end: `scripts/container.sh build` makes the static binary and the
FROM-scratch image with buildah; podman runs it on the host network with a fresh named volume for
/var/lib/inlet; kafka-python produces and consumes through it; `podman stop` (SIGTERM) must exit 0;
a new container from the same image on the same volume serves the same records and takes more.

Needs buildah, podman and runc (Debian packages that scripts/test.sh installs). Without them the
test fails rather than skips: the image is part of what CI checks.

The binary is built with INLET_PROFILE=container-test (a profile in the root Cargo.toml), not the
release profile users' images get: CI compiles from cold on two cores, where the static release
build alone took about 530 s of the 30-minute limit. The image, the Containerfile and the static
linking check are the same; only the binary's optimisation differs, and what this test checks (a
FROM-scratch image that serves, keeps its data on the volume and stops cleanly) does not depend
on it. Set INLET_PROFILE=release in the environment to test the release image instead.
"""

import os
import shutil
import subprocess
import time
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from conftest import WORKSPACE, answers_api_versions, free_port

CONTAINER_SH = WORKSPACE / "scripts" / "container.sh"
# The cold static build is most of this; a warm one takes seconds.
BUILD_TIMEOUT_S = 3600
STARTUP_TIMEOUT_S = 30
STOP_TIMEOUT_S = 30
TOPIC = "container-round-trip"
PARTITIONS = 2
RECORDS = 500
UID = 10001  # the image's USER (docker/Containerfile)
# The image's size bound per INLET_PROFILE: the stripped binary plus some room (no bound for other
# profiles).
MAX_IMAGE_MB = {"release": 48, "container-test": 96}


def container_sh(*args, env, timeout=120, check=True):
    result = subprocess.run(
        [str(CONTAINER_SH), *args],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
    )
    if check:
        assert result.returncode == 0, (
            f"scripts/container.sh {' '.join(args)} exited {result.returncode}:\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result


@pytest.fixture(scope="module")
def run_id():
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
def image_env(run_id):
    missing = [tool for tool in ("buildah", "podman", "runc") if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"the container test needs {', '.join(missing)}: install Debian's buildah podman runc "
            "(scripts/test.sh and scripts/container.sh do)"
        )
    # A tag of its own, so a concurrent run or a developer's localhost/inlet:latest is untouched.
    # The cheaper container-test profile unless the caller chose one (see the module docstring).
    env = dict(os.environ, INLET_IMAGE=f"localhost/inlet:pytest-{run_id}")
    env.setdefault("INLET_PROFILE", "container-test")
    started = time.monotonic()
    container_sh("build", env=env, timeout=BUILD_TIMEOUT_S)
    print(f"image built in {time.monotonic() - started:.1f} s")
    yield env
    container_sh("podman", "rmi", "--force", env["INLET_IMAGE"], env=env, check=False)


class Container:
    """One broker container run through scripts/container.sh on a free loopback port."""

    def __init__(self, image_env, name, volume, port):
        self.bootstrap = f"127.0.0.1:{port}"
        self.port = port
        self.env = dict(
            image_env,
            INLET_CONTAINER=name,
            INLET_VOLUME=volume,
            INLET_LISTEN=self.bootstrap,
            INLET_ADVERTISED_LISTENER=self.bootstrap,
        )

    def podman(self, *args, check=True):
        return container_sh("podman", *args, env=self.env, check=check)

    def state(self):
        return self.inspect("{{.State.Status}}")

    def inspect(self, template):
        return self.podman("container", "inspect", "--format", template,
                           self.env["INLET_CONTAINER"]).stdout.strip()

    def logs(self):
        result = container_sh("logs", env=self.env, check=False)
        return (result.stdout + result.stderr)[-4000:]

    def start(self) -> float:
        """Runs the container and waits until the broker answers; returns the seconds that took."""
        started = time.monotonic()
        container_sh("run", env=self.env)
        deadline = started + STARTUP_TIMEOUT_S
        polls = 0
        while not answers_api_versions(self.port):
            polls += 1
            # Asking podman is slow: look at the container only now and then.
            if polls % 40 == 0 and self.state() != "running":
                pytest.fail(f"the container stopped during start-up:\n{self.logs()}")
            if time.monotonic() > deadline:
                pytest.fail(f"no answer within {STARTUP_TIMEOUT_S}s:\n{self.logs()}")
            time.sleep(0.025)
        return time.monotonic() - started

    def stop(self) -> int:
        """`podman stop`: SIGTERM, then the broker's exit code."""
        result = container_sh("stop", env=self.env, timeout=STOP_TIMEOUT_S + 30, check=False)
        code = int(self.inspect("{{.State.ExitCode}}"))
        assert f"exited with {code}" in result.stdout, result.stdout + result.stderr
        return code

    def remove(self):
        container_sh("rm", env=self.env, check=False)


def record(i):
    return f"key-{i}".encode(), f"value {i};".encode() * (1 + i % 7)


def produce(bootstrap, start, count):
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        futures = [producer.send(TOPIC, key=k, value=v)
                   for k, v in map(record, range(start, start + count))]
        producer.flush(timeout=60)
        return {(m.partition, m.offset) for m in (f.get(timeout=30) for f in futures)}
    finally:
        producer.close(timeout=10)


def consume_all(bootstrap, count):
    """Every record of TOPIC from the beginning, as (partition, offset, key, value), in order."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest")
    try:
        consumer.assign([TopicPartition(TOPIC, p) for p in range(PARTITIONS)])
        consumer.seek_to_beginning()
        records = []
        deadline = time.monotonic() + 60
        while len(records) < count and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        # Anything past `count` would be a duplicate or a stray record: give it a chance to show.
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
        return sorted((r.partition, r.offset, r.key, r.value) for r in records)
    finally:
        consumer.close()


def expected_records(count):
    return sorted(record(i) for i in range(count))


def test_image_is_non_root_scratch_with_volume_and_port(image_env):
    env = image_env
    config = container_sh(
        "podman", "image", "inspect", "--format",
        "|".join("{{.Config.%s}}" % field
                 for field in ("User", "Entrypoint", "Cmd", "ExposedPorts", "Volumes")),
        env["INLET_IMAGE"], env=env,
    ).stdout.strip()
    user, entrypoint, cmd, ports, volumes = config.split("|")
    assert user == f"{UID}:{UID}"
    assert entrypoint == "[/usr/local/bin/inlet]" and cmd == "[serve]"
    assert "9092/tcp" in ports
    assert "/var/lib/inlet" in volumes
    # No base image: the static binary without its line tables and a few files. A release binary
    # is about 35 MB (about 180 MB with line tables); an unoptimised container-test one about 80 MB.
    size = int(container_sh("podman", "image", "inspect", "--format", "{{.Size}}",
                            env["INLET_IMAGE"], env=env).stdout)
    print(f"image size {size / 1e6:.1f} MB ({env['INLET_PROFILE']} binary)")
    limit_mb = MAX_IMAGE_MB.get(env["INLET_PROFILE"])
    if limit_mb is not None:
        assert size < limit_mb * 1024 * 1024, (
            f"image is {size} bytes: more than the stripped binary got in?")


def test_produce_consume_sigterm_and_restart_on_the_volume(image_env, run_id):
    volume = f"inlet-pytest-{run_id}"
    first = Container(image_env, f"inlet-pytest-{run_id}-a", volume, free_port())
    second = Container(image_env, f"inlet-pytest-{run_id}-b", volume, free_port())
    try:
        print(f"broker answered {first.start():.2f} s after podman run")
        admin = KafkaAdminClient(bootstrap_servers=first.bootstrap, client_id="inlet-container")
        try:
            admin.create_topics([NewTopic(TOPIC, num_partitions=PARTITIONS, replication_factor=1)])
        finally:
            admin.close()
        acked = produce(first.bootstrap, 0, RECORDS)
        assert len(acked) == RECORDS
        before = consume_all(first.bootstrap, RECORDS)
        assert sorted((k, v) for _, _, k, v in before) == expected_records(RECORDS)
        assert {(p, o) for p, o, _, _ in before} == acked

        code = first.stop()
        assert code == 0, f"inlet exited {code} on SIGTERM:\n{first.logs()}"
        assert "SIGTERM received" in first.logs()

        # The broker wrote as the image's uid into the volume podman initialised from the image.
        mountpoint = first.podman("volume", "inspect", "--format", "{{.Mountpoint}}",
                                  volume).stdout.strip()
        written = [os.path.join(d, n) for d, dirs, files in os.walk(mountpoint)
                   for n in dirs + files]
        assert any(os.path.basename(p) == TOPIC for p in written), f"no {TOPIC} in {written}"
        not_broker = [p for p in [mountpoint, *written] if os.stat(p).st_uid != UID]
        assert not not_broker, f"not owned by uid {UID}: {not_broker}"
        first.remove()

        # A new container, not a restarted one: the data must live in the volume, not the container.
        print(f"second broker answered {second.start():.2f} s after podman run")
        after = consume_all(second.bootstrap, RECORDS)
        assert after == before, "records differ after a restart on the same volume"
        more = produce(second.bootstrap, RECORDS, 10)
        final = consume_all(second.bootstrap, RECORDS + 10)
        assert sorted((k, v) for _, _, k, v in final) == expected_records(RECORDS + 10)
        assert {(p, o) for p, o, _, _ in final} == acked | more
        for p in range(PARTITIONS):
            offsets = [o for q, o, _, _ in final if q == p]
            assert offsets == list(range(len(offsets))), f"partition {p}: offsets not dense from 0"

        code = second.stop()
        assert code == 0, f"inlet exited {code} on SIGTERM after the restart:\n{second.logs()}"
    finally:
        first.remove()
        second.remove()
        container_sh("podman", "volume", "rm", "--force", volume, env=image_env, check=False)
