"""kcat (librdkafka's command-line client, Debian package `kcat`) smoke test: produce keyed lines
with a header, list metadata, and read them back to the end of the partition."""

import shutil
import subprocess

import pytest

LINES = 200


def kcat(*args, stdin=None):
    exe = shutil.which("kcat")
    if exe is None:
        pytest.fail("kcat is not installed (scripts/test.sh installs the Debian package `kcat`)")
    result = subprocess.run(
        [exe, *args], input=stdin, capture_output=True, timeout=60
    )
    assert result.returncode == 0, f"kcat {' '.join(args)} exited {result.returncode}:\n{result.stderr.decode()}"
    return result.stdout.decode()


def test_kcat_produce_list_consume(broker):
    topic = "kcat-smoke"
    lines = "".join(f"k{i}:line {i}\n" for i in range(LINES))
    kcat("-b", broker.bootstrap, "-P", "-t", topic, "-K", ":", "-H", "via=kcat",
         "-X", "acks=all", stdin=lines.encode())

    listing = kcat("-b", broker.bootstrap, "-L", "-t", topic)
    assert f'topic "{topic}" with 1 partitions' in listing, listing

    out = kcat("-b", broker.bootstrap, "-C", "-t", topic, "-o", "beginning", "-e",
               "-f", "%p|%o|%k|%s|%h\n")
    got = out.splitlines()
    want = [f"0|{i}|k{i}|line {i}|via=kcat" for i in range(LINES)]
    assert got == want
