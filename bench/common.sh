# Sourced by the benchmark scripts: the repository root, a scratch directory removed on exit
# together with the broker the script started (BROKER_PID), and the results directory.
# Usage: source bench/common.sh NAME  (the scratch directory is $BENCH_DIR/inlet-NAME.XXXXXX)
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
WORK=$(mktemp -d "${BENCH_DIR:-/tmp}/inlet-$1.XXXXXX")
RESULTS=$ROOT/bench/results
mkdir -p "$RESULTS"
BROKER_PID=""
cleanup() {
    if [ -n "$BROKER_PID" ]; then kill "$BROKER_PID" 2>/dev/null || true; wait "$BROKER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
