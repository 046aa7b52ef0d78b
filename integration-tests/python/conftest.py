"""Pytest fixtures that run the real `inlet` binary.

The binary is `$INLET_BIN` (scripts/test.sh builds a release broker and sets it); without it the
fixture falls back to `<target dir>/release/inlet` or `<target dir>/debug/inlet` if one exists, and
fails otherwise. Each test gets its own broker on a free loopback port with a fresh data directory
under pytest's `tmp_path`; stdout and stderr go to `broker.log` there, whose tail is printed when
the test fails. The broker is stopped with SIGTERM and must exit 0.
"""

import os
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

WORKSPACE = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 20
SHUTDOWN_TIMEOUT_S = 20


def inlet_bin() -> Path:
    env = os.environ.get("INLET_BIN")
    if env:
        path = Path(env)
        if not path.is_file():
            pytest.fail(f"INLET_BIN={env} is not a file")
        return path
    target = Path(os.environ.get("CARGO_TARGET_DIR", WORKSPACE / "target"))
    if not target.is_absolute():
        target = WORKSPACE / target
    for profile in ("release", "debug"):
        candidate = target / profile / "inlet"
        if candidate.is_file():
            return candidate
    pytest.fail("no inlet binary: set INLET_BIN or run `cargo build -p inlet` (scripts/test.sh does both)")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers_api_versions(port: int) -> bool:
    """Whether a Kafka broker answers an ApiVersions v0 request on the port (a bare connect can
    also succeed against a TCP self-connect or another process's momentary listener)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            if s.getsockname() == s.getpeername():
                return False
            s.settimeout(2)
            # size 10, api key 18 (ApiVersions), version 0, correlation id 487, client id ""
            s.sendall(struct.pack(">ihhih", 10, 18, 0, 487, 0))
            head = b""
            while len(head) < 8:
                chunk = s.recv(8 - len(head))
                if not chunk:
                    return False
                head += chunk
            size, correlation_id = struct.unpack(">ii", head)
            return size >= 4 and correlation_id == 487
    except OSError:
        return False


class Broker:
    """One running `inlet serve` process. `args` are appended to the `serve` command line and
    `env` to its environment, on every (re)start."""

    def __init__(self, workdir: Path, args=(), env=None):
        self.args = list(args)
        self.env = dict(env or {})
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.data_dir = workdir / "data"
        self.data_dir.mkdir()
        self.log_path = workdir / "broker.log"
        self.process = None

    def start(self):
        log = open(self.log_path, "ab")
        env = {**os.environ, "INLET_LOG": os.environ.get("INLET_LOG", "info"), **self.env}
        self.process = subprocess.Popen(
            [
                str(inlet_bin()),
                "serve",
                "--listen", self.bootstrap,
                "--advertised-listener", self.bootstrap,
                "--data-dir", str(self.data_dir),
                "--node-id", "1",
                # Small segments: the broker preallocates each partition's active segment.
                "--log-segment-bytes", str(1 << 20),
                *self.args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"inlet exited during start-up ({self.process.returncode}):\n{self.log_tail()}")
            if answers_api_versions(self.port):
                return
            if time.monotonic() > deadline:
                self.process.kill()
                pytest.fail(f"inlet did not answer ApiVersions within {STARTUP_TIMEOUT_S}s:\n{self.log_tail()}")
            time.sleep(0.025)

    def terminate(self) -> int:
        """SIGTERM, then wait; returns the exit code (kills and fails if it hangs)."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=SHUTDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"inlet did not exit within {SHUTDOWN_TIMEOUT_S}s of SIGTERM:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no broker log)"
        return f"---- {self.log_path} ----\n" + "\n".join(text.splitlines()[-lines:])


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def broker(request, tmp_path):
    """A running broker; stopped with SIGTERM afterwards, which must exit 0."""
    b = Broker(tmp_path)
    b.start()
    yield b
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    if b.process.poll() is None:
        code = b.terminate()
    else:
        code = b.process.returncode
    if failed:
        print(b.log_tail(60))
    assert code == 0, f"inlet exited with {code} on SIGTERM\n{b.log_tail()}"
