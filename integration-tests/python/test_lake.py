"""The lake (closed segments tiered to an object store, plus one Parquet file per segment) seen
from outside a real broker process:

* Parquet: records produced with kcat and kafka-python in every codec land in
  `tables/<topic>/partition=<p>/<base>-<last>.parquet` exactly once, equal to what was produced
  and to what a Kafka consumer reads at the same offset; the local partition keeps only its
  active segment (`local.retention.bytes=0`) while Fetch and ListOffsets still start at 0.
* DuckDB reads the same files with a glob and agrees with pyarrow; pandas, pyarrow and Polars
  read the topic's folder with their defaults (the partition comes from the folder names).
* S3: with the lake in a bucket of moto's S3 server, across a graceful restart and a SIGKILL,
  every segment has its objects and Parquet file in the bucket, no lake appears on local disk,
  and a consumer reads every record exactly once from offset 0.

Two regression tests: kcat (librdkafka 2.0) really compresses with gzip, snappy and lz4 (it does
only when Produce v0 is advertised), and a restarted broker whose lake does not answer still reports
offset 0 as the earliest and never skips tiered records.

Tiering is polled for with deadlines (the broker runs it every 200 ms here), never slept for.
"""

import base64
import datetime
import json
import random
import shutil
import signal
import struct
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import boto3
import duckdb
import pandas
import polars
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from conftest import Broker, free_port

TIER_INTERVAL_MS = 200
SEGMENT_BYTES = 16384
TIER_TIMEOUT_S = 30
CONSUME_TIMEOUT_S = 30
PARTITIONS = (0, 1)
TOPIC_CONFIGS = {"segment.bytes": str(SEGMENT_BYTES), "local.retention.bytes": "0"}
# RecordBatch attributes bits 0-2.
CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
KCAT_LINES = 120
PY_RECORDS = 48
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)

PARQUET_SCHEMA = pa.schema([
    pa.field("offset", pa.int64(), nullable=False),
    pa.field("timestamp", pa.timestamp("ms", tz="UTC"), nullable=False),
    pa.field("key", pa.binary()),
    pa.field("value", pa.binary()),
    pa.field("headers", pa.list_(pa.field("item", pa.struct([
        pa.field("key", pa.string(), nullable=False),
        pa.field("value", pa.binary()),
    ]), nullable=False)), nullable=False),
])


@dataclass(frozen=True)
class Sent:
    key: bytes | None
    value: bytes | None
    headers: tuple  # ((str, bytes | None), ...) in record order
    timestamp: int | None  # CreateTime in ms when the producer chose it, else None (the client's clock)


def ms(ts: datetime.datetime) -> int:
    return (ts - EPOCH) // datetime.timedelta(milliseconds=1)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# --- Producing -----------------------------------------------------------------------------------

def create_topic(bootstrap, topic):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="inlet-pytest-admin")
    try:
        admin.create_topics([NewTopic(topic, num_partitions=len(PARTITIONS), replication_factor=1,
                                      topic_configs=TOPIC_CONFIGS)])
    finally:
        admin.close()


def kcat(*args, stdin=None):
    exe = shutil.which("kcat")
    if exe is None:
        pytest.fail("kcat is not installed (scripts/test.sh installs the Debian package `kcat`)")
    result = subprocess.run([exe, *args], input=stdin, capture_output=True, timeout=60)
    assert result.returncode == 0, f"kcat {' '.join(args)} exited {result.returncode}:\n{result.stderr.decode()}"


def produce_kcat(bootstrap, topic, codec, produced, runs):
    """KCAT_LINES keyed lines to each partition, with a header of each kind: a value, an empty
    value and a null value (`-H name` without `=`). `runs` gets (codec, partition, first, last)."""
    rng = random.Random(f"kcat-{codec}")
    headers = (("codec", codec.encode()), ("empty", b""), ("null", None))
    for p in PARTITIONS:
        lines, sent = [], []
        for i in range(KCAT_LINES):
            key = f"kcat-{codec}-{p}-{i}"
            # base64 of random bytes: text kcat can read line by line that still compresses poorly,
            # so that compressed batches fill segments too.
            value = f"{key} " + base64.b64encode(rng.randbytes(rng.randrange(60, 120))).decode()
            lines.append(f"{key}:{value}\n")
            sent.append(Sent(key.encode(), value.encode(), headers, None))
        # batch.size below segment.bytes: a batch larger than a segment is refused (as in Kafka).
        kcat("-b", bootstrap, "-P", "-t", topic, "-p", str(p), "-z", codec, "-K", ":",
             "-H", f"codec={codec}", "-H", "empty=", "-H", "null",
             "-X", "acks=all", "-X", "batch.size=8192", stdin="".join(lines).encode())
        first = len(produced[p])
        produced[p].extend(sent)
        runs.append((codec, p, first, len(produced[p]) - 1))


def produce_python(bootstrap, topic, codec, produced, count=PY_RECORDS, base_ts=None):
    """kafka-python records with null and empty keys, a null and an empty value, binary values,
    a non-ASCII header key, no headers, and (every other record) a timestamp it chooses."""
    rng = random.Random(f"py-{codec}-{count}")
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", batch_size=4096, linger_ms=5,
                             compression_type=None if codec == "none" else codec)
    base_ts = now_ms() - 60_000 if base_ts is None else base_ts
    futures = []
    for p in PARTITIONS:
        for i in range(count):
            key = None if i % 4 == 0 else b"" if i % 4 == 1 else f"py-{codec}-{p}-{i}".encode()
            value = None if i == 7 else b"" if i == 8 else rng.randbytes(rng.randrange(80, 200))
            headers = [] if i % 5 == 0 else [("codec", codec.encode()), ("ключ", bytes([i % 256, 0, 255]))]
            timestamp = base_ts + i if i % 2 == 0 else None
            futures.append((p, len(produced[p]), producer.send(
                topic, key=key, value=value, headers=headers, partition=p, timestamp_ms=timestamp)))
            produced[p].append(Sent(key, value, tuple(headers), timestamp))
    producer.flush()
    for p, want, future in futures:
        assert future.get(timeout=10).offset == want, f"partition {p}: record {want} got another offset"
    producer.close()


# --- The lake --------------------------------------------------------------------------------------

def manifest_end(manifest):
    """One past the last offset of a manifest whose segments run from 0 without gaps, else None."""
    if manifest is None:
        return None
    end = 0
    for segment in manifest["segments"]:
        if segment["base_offset"] != end:
            return None
        end = segment["last_offset"] + 1
    return end


def wait_until_tiered(broker, topic, read_manifest, ends):
    """Polls until every partition's manifest covers [0, base of the active segment) and the
    local directory holds only the active segment's .log; returns {partition: manifest}."""
    deadline = time.monotonic() + TIER_TIMEOUT_S
    while True:
        manifests, waiting = {}, []
        for p in PARTITIONS:
            logs = sorted(f.name for f in (broker.data_dir / "topics" / topic / str(p)).glob("*.log"))
            manifest = read_manifest(p)
            covered = manifest_end(manifest)
            if len(logs) == 1 and covered == int(logs[0].split(".")[0]) and 0 < covered < ends[p]:
                manifests[p] = manifest
            else:
                waiting.append(f"partition {p}: local logs {logs}, lake covers [0, {covered}), end {ends[p]}")
        if not waiting:
            return manifests
        if time.monotonic() > deadline:
            pytest.fail(f"not tiered within {TIER_TIMEOUT_S}s: {waiting}\n{broker.log_tail()}")
        time.sleep(0.05)


def batch_codecs(log: bytes):
    """(base_offset, last_offset, codec id) of every batch in a segment's bytes."""
    batches, pos = [], 0
    while pos + 61 <= len(log):
        base, length = struct.unpack_from(">qi", log, pos)
        if length == 0:
            break
        attributes, last_delta = struct.unpack_from(">hi", log, pos + 21)
        batches.append((base, base + last_delta, attributes & 7))
        pos += 12 + length
    assert pos == len(log), f"trailing bytes after the last batch at {pos} of {len(log)}"
    return batches


def parquet_rows(table: pa.Table, name: str):
    """Rows of one segment's Parquet file, checked against its schema and its name's offsets (the
    partition is its folder's, `partition=<p>`, not a column)."""
    assert table.schema.equals(PARQUET_SCHEMA), f"{name}: {table.schema}"
    base, last = (int(n) for n in name.split(".")[0].split("-"))
    rows = table.to_pylist()
    assert [r["offset"] for r in rows] == list(range(base, last + 1)), f"{name}: offsets not dense"
    return rows


def check_row(row, sent: Sent, where, window):
    assert row["key"] == sent.key, where
    assert row["value"] == sent.value, where
    assert [(h["key"], h["value"]) for h in row["headers"]] == list(sent.headers), where
    ts = ms(row["timestamp"])
    if sent.timestamp is not None:
        assert ts == sent.timestamp, where
    else:
        assert window[0] <= ts <= window[1], f"{where}: timestamp {ts} outside {window}"


def consume_all(bootstrap, topic, ends):
    """Every record of the topic from offset 0, {partition: [ConsumerRecord]} in offset order."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             auto_offset_reset="none")
    try:
        tps = [TopicPartition(topic, p) for p in PARTITIONS]
        assert consumer.beginning_offsets(tps) == {tp: 0 for tp in tps}, "earliest offset must stay 0"
        assert consumer.end_offsets(tps) == {tp: ends[tp.partition] for tp in tps}
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        got = {p: [] for p in PARTITIONS}
        deadline = time.monotonic() + CONSUME_TIMEOUT_S
        while any(len(got[p]) < ends[p] for p in PARTITIONS):
            assert time.monotonic() < deadline, {p: len(got[p]) for p in PARTITIONS}
            for tp, records in consumer.poll(timeout_ms=200).items():
                got[tp.partition].extend(records)
        for p in PARTITIONS:
            assert [r.offset for r in got[p]] == list(range(ends[p])), f"partition {p}"
        return got
    finally:
        consumer.close(autocommit=False)


def stop(broker):
    if broker.process is not None and broker.process.poll() is None:
        code = broker.terminate()
    else:
        code = broker.process.returncode
    assert code == 0, f"inlet exited with {code}\n{broker.log_tail()}"


# --- A topic tiered into a local lake, shared by the Parquet and DuckDB tests ----------------------

@dataclass
class Tiered:
    broker: Broker
    topic: str
    lake: Path
    produced: dict  # partition -> [Sent] in offset order
    kcat_runs: list  # (codec, partition, first offset, last offset)
    window: tuple  # (ms, ms) around the production, for timestamps the clients chose
    manifests: dict


@pytest.fixture(scope="module")
def tiered(tmp_path_factory):
    broker = Broker(tmp_path_factory.mktemp("lake"), ["--lake-tier-interval-ms", str(TIER_INTERVAL_MS)])
    broker.start()
    try:
        topic = "lake-codecs"
        create_topic(broker.bootstrap, topic)
        produced, runs = {p: [] for p in PARTITIONS}, []
        started = now_ms()
        for codec in CODECS:
            produce_kcat(broker.bootstrap, topic, codec, produced, runs)
            produce_python(broker.bootstrap, topic, codec, produced)
        # More than a segment of plain records last, so every codec's batches are in closed segments.
        produce_python(broker.bootstrap, topic, "none", produced, count=160)
        window = (started - 1000, now_ms() + 1000)
        ends = {p: len(produced[p]) for p in PARTITIONS}
        lake = broker.data_dir / "lake"

        def read_manifest(p):
            try:
                return json.loads((lake / topic / str(p) / "manifest.json").read_text())
            except (FileNotFoundError, ValueError):
                return None

        manifests = wait_until_tiered(broker, topic, read_manifest, ends)
        yield Tiered(broker, topic, lake, produced, runs, window, manifests)
    finally:
        stop(broker)


def read_local_tables(tiered):
    """{partition: {offset: row}} from every Parquet file of the topic, each read on its own."""
    rows = {p: {} for p in PARTITIONS}
    for path in sorted((tiered.lake / "tables" / tiered.topic).glob("*/*.parquet")):
        p = int(path.parent.name.removeprefix("partition="))
        for row in parquet_rows(pq.read_table(path), path.name):
            assert row["offset"] not in rows[p], f"offset {row['offset']} of partition {p} in two files"
            rows[p][row["offset"]] = row
    return rows


def test_parquet_files_hold_every_record_once_as_produced_and_as_consumed(tiered):
    print(f"broker log: {tiered.broker.log_path}")
    topic, lake, produced = tiered.topic, tiered.lake, tiered.produced
    ends = {p: len(produced[p]) for p in PARTITIONS}

    # One Parquet file and three segment objects per manifest entry, and nothing else.
    codecs = set()
    for p, manifest in tiered.manifests.items():
        assert (manifest["topic"], manifest["partition"]) == (topic, p)
        names = [f"{s['base_offset']:020}-{s['last_offset']:020}" for s in manifest["segments"]]
        assert all(s["parquet"] for s in manifest["segments"])
        assert len(names) >= 5, f"partition {p}: expected several segments, got {names}"
        tables = lake / "tables" / topic / f"partition={p}"
        assert sorted(f.name for f in tables.iterdir()) == [f"{n}.parquet" for n in names]
        assert sorted(f.name for f in (lake / topic / str(p)).iterdir()) == sorted(
            ["manifest.json"] + [f"{n}.{ext}" for n in names for ext in ("index", "log", "timeindex")])
        for segment, name in zip(manifest["segments"], names):
            log = (lake / topic / str(p) / f"{name}.log").read_bytes()
            assert len(log) == segment["size_bytes"]
            batches = batch_codecs(log)
            assert (batches[0][0], batches[-1][1]) == (segment["base_offset"], segment["last_offset"])
            codecs.update(codec for _, _, codec in batches)
        # local.retention.bytes=0: the active segment is all that is left on local disk.
        local = tiered.broker.data_dir / "topics" / topic / str(p)
        assert [f.name for f in local.glob("*.log")] == [f"{manifest_end(manifest):020}.log"]
    assert codecs == set(CODECS.values()), f"the lake should hold batches of every codec, has {codecs}"

    rows = read_local_tables(tiered)
    for p in PARTITIONS:
        tiered_end = manifest_end(tiered.manifests[p])
        assert sorted(rows[p]) == list(range(tiered_end)), f"partition {p}: offsets not dense from 0"
        for offset, row in rows[p].items():
            check_row(row, produced[p][offset], f"partition {p} offset {offset}", tiered.window)

    # A consumer reads the same records from offset 0 (the lake serves what local disk dropped).
    consumed = consume_all(tiered.broker.bootstrap, topic, ends)
    for p in PARTITIONS:
        for record, sent in zip(consumed[p], produced[p]):
            where = f"consumed partition {p} offset {record.offset}"
            assert (record.key, record.value, tuple(record.headers)) == (sent.key, sent.value, sent.headers), where
            if sent.timestamp is not None:
                assert record.timestamp == sent.timestamp, where
        for offset, row in rows[p].items():
            record = consumed[p][offset]
            assert (row["offset"], row["key"], row["value"], ms(row["timestamp"])) == (
                record.offset, record.key, record.value, record.timestamp), f"partition {p} offset {offset}"
            assert [(h["key"], h["value"]) for h in row["headers"]] == list(record.headers)


def test_duckdb_reads_the_topic_tables_with_a_glob(tiered):
    print(f"broker log: {tiered.broker.log_path}")
    rows = read_local_tables(tiered)
    glob = f"{tiered.lake}/tables/{tiered.topic}/**/*.parquet"
    # DuckDB's defaults: hive partitioning detected from the `partition=<p>` folders.
    source = f"read_parquet('{glob}')"
    con = duckdb.connect()
    count, low, high = con.execute(f'SELECT count(*), min("offset"), max("offset") FROM {source}').fetchone()
    all_offsets = [o for p in PARTITIONS for o in rows[p]]
    assert (count, low, high) == (len(all_offsets), min(all_offsets), max(all_offsets))

    per_partition = con.execute(f"""
        SELECT partition, count(*), count(DISTINCT "offset"), min("offset"), max("offset"),
               count(*) FILTER (WHERE key IS NULL), count(*) FILTER (WHERE value IS NULL),
               sum(octet_length(value))
        FROM {source} GROUP BY partition ORDER BY partition""").fetchall()
    want = []
    for p in PARTITIONS:
        r = rows[p].values()
        want.append((p, len(r), len(r), 0, max(rows[p]), sum(x["key"] is None for x in r),
                     sum(x["value"] is None for x in r), sum(len(x["value"] or b"") for x in r)))
    assert per_partition == want
    null_headers = con.execute(f"""SELECT count(*) FROM (SELECT unnest(headers) AS h FROM {source})
                               WHERE h.value IS NULL""").fetchone()[0]
    assert null_headers == sum(1 for p in PARTITIONS for x in rows[p].values()
                               for h in x["headers"] if h["value"] is None) > 0


def test_pandas_pyarrow_and_polars_read_the_topic_folder_with_their_defaults(tiered):
    """The calls data people make on a folder of Parquet, with no options: each gets every record
    once, with its partition (from the Hive-style folder names) beside its offset."""
    rows = read_local_tables(tiered)
    want = sorted((p, o) for p in PARTITIONS for o in rows[p])
    folder = tiered.lake / "tables" / tiered.topic
    frame = pandas.read_parquet(folder)
    assert sorted(zip(frame["partition"].astype(int), frame["offset"])) == want
    table = pq.read_table(folder)
    assert sorted(zip(table.column("partition").to_pylist(), table.column("offset").to_pylist())) == want
    polars_frame = polars.read_parquet(folder)
    assert sorted(zip(polars_frame["partition"].to_list(), polars_frame["offset"].to_list())) == want


def test_kcat_batches_reach_the_lake_in_the_codec_kcat_was_asked_for(tiered):
    batches = {p: [] for p in PARTITIONS}
    for p, manifest in tiered.manifests.items():
        for s in manifest["segments"]:
            name = f"{s['base_offset']:020}-{s['last_offset']:020}.log"
            batches[p].extend(batch_codecs((tiered.lake / tiered.topic / str(p) / name).read_bytes()))
    wrong = []
    for codec, p, first, last in tiered.kcat_runs:
        got = {c for base, end, c in batches[p] if base <= last and end >= first}
        # librdkafka sends a batch uncompressed when compressing does not make it smaller (a
        # run's last small batch of random text can be such a batch), so codec 0 may appear too.
        if CODECS[codec] not in got or not got <= {CODECS[codec], 0}:
            wrong.append(f"kcat -z {codec} to partition {p}: batch codecs {sorted(got)}")
    assert not wrong, wrong


# --- S3 ----------------------------------------------------------------------------------------------

@dataclass
class S3:
    endpoint: str
    client: object
    process: subprocess.Popen


ACCESS_KEY, SECRET_KEY, REGION = "inlet-test", "inlet-test-secret", "us-east-1"


@pytest.fixture
def s3(tmp_path):
    """moto's S3 server on a free loopback port; killed afterwards."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "moto.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, f"moto exited: {log_path.read_text(errors='replace')}"
            try:
                with urllib.request.urlopen(endpoint + "/", timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, f"moto did not answer: {log_path.read_text(errors='replace')}"
                time.sleep(0.05)
        client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION,
                              aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
        yield S3(endpoint, client, process)
    finally:
        process.send_signal(signal.SIGCONT)  # in case a test froze it
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def produce_round(bootstrap, topic, round_no, codec, produced, count=100):
    rng = random.Random(f"round-{round_no}")
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", batch_size=4096, linger_ms=5,
                             compression_type=codec)
    futures = []
    for p in PARTITIONS:
        for i in range(count):
            sent = Sent(f"r{round_no}-p{p}-{i}".encode(), rng.randbytes(rng.randrange(100, 250)),
                        (("round", str(round_no).encode()),), None)
            futures.append((p, len(produced[p]), producer.send(
                topic, key=sent.key, value=sent.value, headers=list(sent.headers), partition=p)))
            produced[p].append(sent)
    producer.flush()
    for p, want, future in futures:
        assert future.get(timeout=10).offset == want, f"partition {p}: record {want} got another offset"
    producer.close()


def s3_broker(tmp_path, s3, bucket, prefix):
    """A broker (not started yet) whose lake is `prefix` in `bucket` of the moto server."""
    s3.client.create_bucket(Bucket=bucket)
    return Broker(tmp_path, [
        "--lake-tier-interval-ms", str(TIER_INTERVAL_MS),
        "--lake-s3-bucket", bucket,
        "--lake-s3-prefix", prefix,
        "--lake-s3-endpoint", s3.endpoint,
        "--lake-s3-region", REGION,
        "--lake-s3-path-style", "true",
        "--lake-s3-allow-http", "true",
    ], env={"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY})


def s3_manifest_reader(s3, bucket, prefix, topic):
    def read_manifest(p):
        try:
            body = s3.client.get_object(Bucket=bucket, Key=f"{prefix}/{topic}/{p}/manifest.json")["Body"]
            return json.loads(body.read())
        except s3.client.exceptions.NoSuchKey:
            return None
    return read_manifest


def test_lake_on_s3_across_restarts_serves_every_offset_once(s3, tmp_path):
    bucket, prefix, topic = "inlet-lake", "cluster-a/lake", "lake-s3"
    broker = s3_broker(tmp_path, s3, bucket, prefix)
    broker.start()
    try:
        create_topic(broker.bootstrap, topic)
        produced = {p: [] for p in PARTITIONS}
        produce_round(broker.bootstrap, topic, 1, "gzip", produced)
        assert broker.terminate() == 0, broker.log_tail()
        broker.start()
        produce_round(broker.bootstrap, topic, 2, None, produced)
        # A crash, right after the acknowledgement, wherever tiering is.
        broker.process.kill()
        broker.process.wait()
        broker.start()
        produce_round(broker.bootstrap, topic, 3, "zstd", produced)
        ends = {p: len(produced[p]) for p in PARTITIONS}
        manifests = wait_until_tiered(broker, topic, s3_manifest_reader(s3, bucket, prefix, topic), ends)

        objects = {}
        for page in s3.client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            objects.update((o["Key"], o["Size"]) for o in page.get("Contents", []))
        want = set()
        for p, manifest in manifests.items():
            assert len(manifest["segments"]) >= 3, f"partition {p}: {manifest}"
            want.add(f"{prefix}/{topic}/{p}/manifest.json")
            for s in manifest["segments"]:
                name = f"{s['base_offset']:020}-{s['last_offset']:020}"
                want.update(f"{prefix}/{topic}/{p}/{name}.{ext}" for ext in ("log", "index", "timeindex"))
                want.add(f"{prefix}/tables/{topic}/partition={p}/{name}.parquet")
                assert objects.get(f"{prefix}/{topic}/{p}/{name}.log") == s["size_bytes"]
        assert sorted(objects) == sorted(want), "the bucket should hold exactly the manifests' objects"
        assert not (broker.data_dir / "lake").exists(), "no local lake when the lake is on S3"

        # Every Parquet object matches what was produced at its offsets.
        for key in sorted(k for k in objects if k.endswith(".parquet")):
            p = int(key.split("/")[-2].removeprefix("partition="))
            data = s3.client.get_object(Bucket=bucket, Key=key)["Body"].read()
            for row in parquet_rows(pq.read_table(pa.BufferReader(data)), key.split("/")[-1]):
                check_row(row, produced[p][row["offset"]], f"{key} offset {row['offset']}", (0, now_ms()))

        consumed = consume_all(broker.bootstrap, topic, ends)
        for p in PARTITIONS:
            got = [Sent(r.key, r.value, tuple(r.headers), None) for r in consumed[p]]
            assert got == produced[p], f"partition {p}: consumed records differ from produced"
    except BaseException:
        print(broker.log_tail(80))
        raise
    finally:
        stop(broker)


def test_restarted_broker_keeps_offset_0_while_the_lake_does_not_answer(s3, tmp_path):
    bucket, prefix, topic = "inlet-lake", "frozen", "lake-s3-frozen"
    broker = s3_broker(tmp_path, s3, bucket, prefix)
    broker.start()
    try:
        create_topic(broker.bootstrap, topic)
        produced = {p: [] for p in PARTITIONS}
        produce_round(broker.bootstrap, topic, 1, None, produced, count=150)
        ends = {p: len(produced[p]) for p in PARTITIONS}
        wait_until_tiered(broker, topic, s3_manifest_reader(s3, bucket, prefix, topic), ends)
        assert broker.terminate() == 0, broker.log_tail()

        # The store hangs (SIGSTOP): the restarted broker cannot read any manifest yet.
        s3.process.send_signal(signal.SIGSTOP)
        try:
            broker.start()
            consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                                     auto_offset_reset="none")
            try:
                tps = [TopicPartition(topic, p) for p in PARTITIONS]
                earliest = consumer.beginning_offsets(tps)
                assert earliest == {tp: 0 for tp in tps}, f"earliest offsets while the lake hangs: {earliest}"
            finally:
                consumer.close(autocommit=False)
        finally:
            s3.process.send_signal(signal.SIGCONT)
        consumed = consume_all(broker.bootstrap, topic, ends)
        for p in PARTITIONS:
            assert [(r.key, r.value) for r in consumed[p]] == [(s.key, s.value) for s in produced[p]]
    finally:
        stop(broker)
