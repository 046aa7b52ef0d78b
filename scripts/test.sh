#!/usr/bin/env bash
# Runs Inlet's whole test suite: unit, property and integration tests (`cargo test --workspace`)
# and the Python client tests (kafka-python, kcat) under integration-tests/python.
#
# On a fresh Debian machine with rustup's cargo and python3 it first installs what is missing:
# the Debian packages the build and the tests need (checked with dpkg, installed with apt-get,
# through sudo when not root) and a virtualenv at .venv with the pinned Python packages.
#
# The broker the integration tests run is built once (a debug build: it does the 100,000-record
# round trip in a few seconds, and a release build would double the cold compile) and handed to
# every test through INLET_BIN (set INLET_BIN yourself to test another binary).
# Exits non-zero on any failure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
START=$SECONDS
CARGO=${CARGO:-cargo}

step() { printf '\n==> %s\n' "$*"; }

# --- Debian packages -------------------------------------------------------------------------
# gcc, make, perl, pkg-config, zlib1g-dev: rdkafka-sys builds librdkafka from source.
# kcat: the kcat smoke test. python3-venv: Debian's python3 cannot make a venv without it.
# buildah podman runc: the container test (test_container.py) builds and runs the image.
# nodejs npm: the kafkajs test (test_kafkajs.py), when the machine has no Node.js of its own.
if command -v dpkg >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    packages=(gcc make perl pkg-config zlib1g-dev kcat buildah podman runc)
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        packages+=(python3-venv)
    fi
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        packages+=(nodejs npm)
    fi
    missing=()
    for pkg in "${packages[@]}"; do
        if ! dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed'; then
            missing+=("$pkg")
        fi
    done
    if ((${#missing[@]})); then
        step "installing Debian packages: ${missing[*]}"
        SUDO=""
        if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
else
    echo "warning: not a Debian system; assuming a C toolchain, zlib, pkg-config, kcat and python3 venv are present" >&2
fi

# --- Python virtualenv -----------------------------------------------------------------------
VENV=$ROOT/.venv
if ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    step "creating $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
fi
step "installing Python test dependencies into $VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r integration-tests/python/requirements.txt

# --- Node.js packages (kafkajs) -----------------------------------------------------------------
step "installing kafkajs into integration-tests/js"
(cd integration-tests/js && npm ci --no-audit --no-fund --loglevel=error)

# --- Build -----------------------------------------------------------------------------------
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac
if [ -z "${INLET_BIN:-}" ]; then
    step "building the broker"
    "$CARGO" build -p inlet
    INLET_BIN=$TARGET_DIR/debug/inlet
fi
export INLET_BIN
echo "broker under test: $INLET_BIN"

step "building the tests"
"$CARGO" test --workspace --no-run

# --- Tests -----------------------------------------------------------------------------------
# Both suites run even if the first fails, so one run shows every failure.
failed=()
step "cargo test --workspace"
# --show-output: passing tests' stderr too, e.g. the 100,000-record round-trip time.
# The output is also kept in a log, so that the summary at the end can name the failed tests
# (CI shows only the tail of what this script prints).
LOGS=$TARGET_DIR/test-logs
mkdir -p "$LOGS"
"$CARGO" test --workspace --no-fail-fast -- --show-output 2>&1 | tee "$LOGS/cargo-test.log" \
    || failed+=("cargo test")

# test_container.py builds its own static binary for the image (scripts/container.sh build), with
# the cheaper container-test profile (root Cargo.toml) rather than release: CI time.
step "pytest integration-tests/python"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider --durations=8 integration-tests/python 2>&1 \
    | tee "$LOGS/pytest.log" || failed+=("pytest")

# --- Fuzzing --------------------------------------------------------------------------------
# Both cargo-fuzz targets (fuzz/fuzz_targets) for a bounded time each (FUZZ_SECONDS, default 30).
# cargo-fuzz needs nightly-only compiler flags (-Zsanitizer); RUSTC_BOOTSTRAP=1 lets the stable
# toolchain accept them, so CI needs no nightly.
# cargo-fuzz: one already on PATH, else a pinned version kept in $TARGET_DIR/tools/bin, installed
# there (--locked) only when missing, so a machine or CI cache that keeps the target dir compiles
# it once rather than on every run (a cold `cargo install` is about a minute of both cores).
FUZZ_SECONDS=${FUZZ_SECONDS:-30}
CARGO_FUZZ_VERSION=0.13.2
FUZZ_TOOLS=$TARGET_DIR/tools
export PATH="$FUZZ_TOOLS/bin:$PATH"
if ! "$CARGO" fuzz --version >/dev/null 2>&1; then
    step "installing cargo-fuzz $CARGO_FUZZ_VERSION into $FUZZ_TOOLS"
    # Its build directory is a temporary one, not CARGO_TARGET_DIR: only the binary is kept.
    env -u CARGO_TARGET_DIR "$CARGO" install --locked --version "$CARGO_FUZZ_VERSION" \
        --root "$FUZZ_TOOLS" cargo-fuzz || failed+=("cargo install cargo-fuzz")
fi
if "$CARGO" fuzz --version >/dev/null 2>&1; then
    for target in decode_request record_batch; do
        step "fuzzing $target for ${FUZZ_SECONDS} s"
        # New inputs go to fuzz/corpus/<target> (not versioned); fuzz/seeds/<target>, when
        # present, holds versioned starting inputs (a valid batch gets past the header checks).
        corpora=("corpus/$target")
        if [ -d "$ROOT/fuzz/seeds/$target" ]; then corpora+=("seeds/$target"); fi
        mkdir -p "$ROOT/fuzz/corpus/$target"
        # The fuzz crate is outside the workspace: its own target dir, not CARGO_TARGET_DIR's.
        # libFuzzer prints a line per new input; keep that in a log and show its tail.
        if (cd "$ROOT/fuzz" && CARGO_TARGET_DIR="$ROOT/fuzz/target" RUSTC_BOOTSTRAP=1 \
            "$CARGO" fuzz run "$target" "${corpora[@]}" -- -max_total_time="$FUZZ_SECONDS") \
            >"$LOGS/fuzz-$target.log" 2>&1; then
            tail -n 3 "$LOGS/fuzz-$target.log"
        else
            tail -n 80 "$LOGS/fuzz-$target.log"
            failed+=("fuzz $target")
        fi
    done
fi

if ((${#failed[@]})); then
    step "failures"
    grep -h -E '^test .* FAILED$|panicked at|^FAILED |^ERROR ' "$LOGS/cargo-test.log" "$LOGS/pytest.log" \
        2>/dev/null | head -n 40 || true
    step "FAILED: ${failed[*]} ($((SECONDS - START)) s)"
    exit 1
fi
step "all tests passed in $((SECONDS - START)) s"
