"""kafkajs (Node.js) against a real broker: admin (createTopics, describeConfigs, alterConfigs,
fetchTopicMetadata, fetchTopicOffsetsByTimestamp, fetchTopicOffsets, deleteTopicRecords), an idempotent producer and
a consumer group with committed offsets. The checks are in `integration-tests/js/suite.mjs`;
`scripts/test.sh` installs kafkajs there with `npm ci`."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import Broker

SUITE = Path(__file__).resolve().parents[1] / "js" / "suite.mjs"


@pytest.fixture
def js_broker(tmp_path, monkeypatch):
    monkeypatch.setenv("INLET_GROUP_INITIAL_REBALANCE_DELAY_MS", "100")
    b = Broker(tmp_path)
    b.start()
    yield b
    if b.process.poll() is None:
        assert b.terminate() == 0, b.log_tail()


def test_kafkajs_admin_producer_and_consumer_group(js_broker):
    if not (SUITE.parent / "node_modules" / "kafkajs").is_dir():
        pytest.fail("kafkajs is not installed: run `npm ci` in integration-tests/js (scripts/test.sh does)")
    env = {**os.environ, "KAFKAJS_NO_PARTITIONER_WARNING": "1"}
    run = subprocess.run(["node", str(SUITE), js_broker.bootstrap],
                         capture_output=True, text=True, timeout=90, env=env)
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}\n{js_broker.log_tail()}"
    result = json.loads(run.stdout.strip().splitlines()[-1])
    print(result)
    assert result["ok"] and len(result["checked"]) == 7
