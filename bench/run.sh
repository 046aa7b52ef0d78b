#!/usr/bin/env bash
# The broker benchmark: one command, from a fresh checkout.
#
#   bash bench/run.sh            # 20 s per produce run (the issue's figures)
#   SECONDS_PER_RUN=5 bash bench/run.sh   # a quicker look
#   INLET_BIN=/path/to/inlet bash bench/run.sh   # benchmark that broker binary instead
#
# It builds release binaries, measures the machine's own limits (single-stream loopback TCP with
# iperf3, sequential write bandwidth of the data directory's disk with dd), starts one broker on
# loopback with a fresh data directory, and drives it with librdkafka (bench/loadgen):
#   1. produce 1 KiB records, acks=1, 6 partitions
#   2. the same with acks=all, and with lz4 compression
#   3. consume the whole acks=1 topic from the beginning with one consumer (librdkafka, then
#      `inlet perf consume`)
#   4. end-to-end latency at a fixed 20 MB/s (linger.ms=0: latency, not batching, is measured)
# For each run it samples the broker's CPU time and resident memory. Results go to
# bench/results/latest.json and a Markdown table (bench/results/latest.md, also printed); every
# broker figure is also given as a ratio of the machine limits measured in the same run, since
# absolute numbers on shared machines mean little.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh" bench
RUN_SECONDS=${SECONDS_PER_RUN:-20}
PORT=${BENCH_PORT:-19192}

if ! command -v iperf3 >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends iperf3
fi

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
LOADGEN=$TARGET_DIR/release/inlet-loadgen
if [ -n "${INLET_BIN:-}" ]; then
    # A broker built elsewhere (e.g. an older commit, for a before/after pair in one session).
    INLET=$INLET_BIN
    echo "==> building the load generator (broker under test: $INLET)"
    cargo build --release -q -p inlet-loadgen
else
    INLET=$TARGET_DIR/release/inlet
    echo "==> building release binaries"
    cargo build --release -q -p inlet -p inlet-loadgen
fi

echo "==> machine limits"
iperf3 -s -1 -p $((PORT + 1)) -B 127.0.0.1 >/dev/null 2>&1 &
sleep 0.5
LOOPBACK_MBPS=$(iperf3 -c 127.0.0.1 -p $((PORT + 1)) -t 5 -J | python3 -c \
    'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 8 / 1048576)')
wait
DISK_MBPS=$(dd if=/dev/zero of="$WORK/dd.bin" bs=1M count=2048 conv=fdatasync 2>&1 | python3 -c '
import re, sys
m = re.search(r"(\d+) bytes .* copied, ([\d.]+) s", sys.stdin.read())
print(int(m.group(1)) / float(m.group(2)) / 1048576)')
rm -f "$WORK/dd.bin"
printf 'loopback TCP (1 stream): %.0f MB/s, disk sequential write: %.0f MB/s\n' "$LOOPBACK_MBPS" "$DISK_MBPS"

echo "==> starting the broker"
# The lake is off: this measures the broker as Kafka is measured (bench/lake.sh measures tiering).
INLET_LOG=warn "$INLET" serve --listen 127.0.0.1:$PORT --advertised-listener 127.0.0.1:$PORT \
    --data-dir "$WORK/data" --lake-enable false >"$WORK/broker.log" 2>&1 &
BROKER_PID=$!
for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break
    sleep 0.1
done
TICKS=$(getconf CLK_TCK)

# cpu_seconds PID: user+system CPU time the process has used so far.
cpu_seconds() { awk -v t="$TICKS" '{ print ($14 + $15) / t }' "/proc/$1/stat"; }
rss_mb() { awk '/VmRSS/ { print $2 / 1024 }' "/proc/$1/status"; }

# run NAME LOADGEN-ARGS...: runs one librdkafka load (see measure).
run() {
    local name=$1; shift
    measure "$name" "$LOADGEN" --bootstrap 127.0.0.1:$PORT "$@"
}

# measure NAME COMMAND...: runs a load command printing JSON, appends it plus broker CPU/RSS to
# the results.
echo -n "" >"$WORK/runs.jsonl"
measure() {
    local name=$1; shift
    echo "==> $name"
    local cpu0 wall0 out cpu1 wall1
    # Start each run with the previous run's dirty pages written back, so one run's disk
    # writeback does not land in the next run's latencies.
    sync
    cpu0=$(cpu_seconds "$BROKER_PID"); wall0=$(date +%s.%N)
    out=$("$@")
    cpu1=$(cpu_seconds "$BROKER_PID"); wall1=$(date +%s.%N)
    python3 - "$name" "$out" "$cpu0" "$cpu1" "$wall0" "$wall1" "$(rss_mb "$BROKER_PID")" "$(du -sm "$WORK/data" | cut -f1)" >>"$WORK/runs.jsonl" <<'PY'
import json, sys
name, out, cpu0, cpu1, wall0, wall1, rss, data = sys.argv[1:]
r = json.loads(out)
r["name"] = name
r["broker_cpu_cores"] = (float(cpu1) - float(cpu0)) / (float(wall1) - float(wall0))
r["broker_rss_mb"] = float(rss)
r["data_mb"] = int(data)
mb = r.get("mb_per_sec")
if mb:
    r["broker_cpu_seconds_per_gb"] = (float(cpu1) - float(cpu0)) / (mb * (float(wall1) - float(wall0)) / 1024)
print(json.dumps(r))
PY
    tail -1 "$WORK/runs.jsonl"
}

run "produce acks=1" --topic bench-acks1 produce --seconds "$RUN_SECONDS" --acks 1
run "produce acks=all" --topic bench-acksall produce --seconds "$RUN_SECONDS" --acks all
run "produce acks=1 lz4" --topic bench-lz4 produce --seconds "$RUN_SECONDS" --acks 1 --compression lz4
run "consume from beginning" --topic bench-acks1 consume
# The same read with inlet's own client, lighter than librdkafka's per-message consumer loop: the
# two rows together show how much of the consume figure is the client.
measure "consume from beginning (inlet perf)" "$INLET" perf consume bench-acks1 \
    --bootstrap-server 127.0.0.1:$PORT --output json
run "end-to-end at 20 MB/s" --topic bench-e2e end-to-end --seconds "$RUN_SECONDS" --acks 1 --rate-mb 20 --linger-ms 0

python3 - "$WORK/runs.jsonl" "$LOOPBACK_MBPS" "$DISK_MBPS" "$RESULTS" <<'PY'
import json, sys, datetime, platform, os
runs = [json.loads(l) for l in open(sys.argv[1])]
loopback, disk, out = float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
report = {
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "machine": {"cores": os.cpu_count(), "kernel": platform.release(),
                "loopback_tcp_mb_per_sec": loopback, "disk_write_mb_per_sec": disk},
    "runs": runs,
}
json.dump(report, open(os.path.join(out, "latest.json"), "w"), indent=2)
lines = [
    f"Machine: {os.cpu_count()} cores, loopback TCP {loopback:.0f} MB/s (1 stream), disk write {disk:.0f} MB/s",
    "",
    "| run | records/s | MB/s | % of loopback | p50 ms | p99 ms | p999 ms | broker CPU (cores) | broker RSS MB |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
]
for r in runs:
    mbs = r.get("mb_per_sec")
    cells = [
        r["name"],
        f'{r["records_per_sec"]:,.0f}' if "records_per_sec" in r else "",
        f"{mbs:.0f}" if mbs else "",
        f"{100 * mbs / loopback:.0f}%" if mbs else "",
        f'{r["p50_ms"]:.2f}' if "p50_ms" in r else "",
        f'{r["p99_ms"]:.2f}' if "p99_ms" in r else "",
        f'{r["p999_ms"]:.2f}' if "p999_ms" in r else "",
        f'{r["broker_cpu_cores"]:.2f}',
        f'{r["broker_rss_mb"]:.0f}',
    ]
    lines.append("| " + " | ".join(cells) + " |")
text = "\n".join(lines) + "\n"
open(os.path.join(out, "latest.md"), "w").write(text)
print(text)
PY
