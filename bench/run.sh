#!/usr/bin/env bash
# The broker benchmark: one command, from a fresh checkout.
#
#   bash bench/run.sh            # 20 s per produce run (the issue's figures)
#   SECONDS_PER_RUN=5 bash bench/run.sh   # a quicker look
#   INLET_BIN=/path/to/inlet bash bench/run.sh   # benchmark that broker binary instead
#   BENCH_CLUSTER=0 bash bench/run.sh     # only the single-broker rows
#
# It builds release binaries, measures the machine's own limits (single-stream loopback TCP with
# iperf3, sequential write bandwidth of the data directory's disk with dd), starts one broker on
# loopback and drives it with librdkafka (bench/loadgen):
#   1. produce 1 KiB records, acks=1, 6 partitions
#   2. consume that whole topic from the beginning with one consumer (librdkafka, then
#      `inlet perf consume`)
#   3. produce as in 1 with acks=all, and with lz4 compression
#   4. end-to-end latency at a fixed 20 MB/s (linger.ms=0: latency, not batching, is measured;
#      max.in.flight.requests.per.connection=5, see below), after one untimed record per
#      partition has been acknowledged, so the timed records do not wait for the producer's
#      metadata and connections (the steady state is measured, as benchmarks' warm-ups do)
# Then (unless BENCH_CLUSTER=0) three brokers on loopback (bench/cluster.sh: combined
# broker+controller nodes, lake off) and the same load generator:
#   5. produce as in 1 with acks=all to a topic of replication factor 1, then of replication
#      factor 3 with min.insync.replicas=2, then RF 3 with acks=1 (the cost of copying vs of
#      waiting for the high watermark)
#   6. end-to-end latency at 20 MB/s, RF 3, min.insync.replicas=2, acks=all, as in 4; and once
#      more with librdkafka's unbounded in-flight default, to show why 4 and 6 cap it:
# A broker answers a connection's requests in order, one at a time (as Kafka does). With
# linger.ms=0 and librdkafka's default of 1000000 requests in flight, every record that arrives
# while earlier requests wait is sent as one more tiny request queued behind them; with acks=all
# each request waits for a replication round trip, the queue grows without bound, and the latency
# measured is that queue (seconds), not the broker's. With 5 in flight (the Java producer's default
# and librdkafka's cap for idempotent producers, as the issue's producers are), records that
# arrive meanwhile join the next batch.
# For each run it samples every broker's CPU time and resident memory, the load generator's CPU
# (client and brokers share the machine's cores), and how long tasks waited for a CPU and for
# I/O (Linux pressure stall information: other work on a shared machine shows there). Results go to bench/results/latest.json and
# a Markdown table (bench/results/latest.md, also printed); every broker figure is also given as
# a ratio of the machine limits measured in the same run, since absolute numbers on shared
# machines mean little, and the issue's two replication targets are checked as ratios.
#
# Every produce and end-to-end run starts from the same disk state: its broker(s) start on fresh,
# empty data directories (the previous run's are deleted first), after `sync` and a drop of the
# page cache (`echo 3 > /proc/sys/vm/drop_caches`, when the kernel permits; BENCH_DROP_CACHES=0
# skips the drop, and the results record which was done). Why: on one long-lived broker the
# first 6 s run reached ~490 MB/s whatever its acks and the runs after it ~240-270 MB/s: a run's
# figure depended on what the runs before it left behind (their segments, their pages in the
# cache, their writeback), i.e. on its place in the order, not on what it measured. Fresh
# directories alone would leave the cache full of other files' pages; the drop makes every row
# start from the same empty cache, so rows (and RF 1 vs RF 3) compare like with like. (Only one
# row's data is on disk at a time, too.) The drop also empties the cache of anything else running
# on the machine. The two consume rows read the acks=1 topic right after it was written, on the
# same broker, as before.
# What a row then meets on this machine (a VM whose free memory goes back to the host: Linux
# free page reporting): writing into the page cache is cheap only for the first few GB after a
# fresh start; past that every new page costs guest CPU in the copy (dd without sync: 3 GB at
# 3.3 GB/s, the next 3 GB at 296 MB/s with 8.7 s of system time, the next at 82 MB/s with 30 s;
# in a 20 s RF 3 acks=all run 74% of the brokers' CPU was copy_folio_from_iter_atomic). The disk
# itself is not the limit (dd with fdatasync: 1.4-1.9 GB/s). So 6 s rows (a few GB) and 20 s rows
# measure different regimes, and RF 3, writing every byte three times, reaches the costly one
# three times sooner than RF 1 does.
set -euo pipefail
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$BENCH/common.sh" bench
source "$BENCH/cluster.sh"
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

# The brokers under test (BROKER_PIDS), where their data is (DATA), how the current setup was
# started (FRESH), and the bootstrap list for the load generator (BOOTSTRAP).
DATA="" FRESH="" BOOTSTRAP="" STARTS=0

# stop_brokers: stops the brokers under test and deletes their data. SIGKILL: their data is
# thrown away, and a clean shutdown would first write back gigabytes of it for nothing.
stop_brokers() {
    if [ "${#BROKER_PIDS[@]}" -gt 0 ]; then stop_pids KILL "${BROKER_PIDS[@]}"; fi
    BROKER_PIDS=()
    if [ -n "$DATA" ]; then rm -rf "$DATA"; fi
}

# fresh_single: one broker (single-node mode) on an empty data directory and a fresh disk state.
fresh_single() {
    stop_brokers
    FRESH=$(fresh_disk_state)
    STARTS=$((STARTS + 1))
    DATA=$WORK/single-$STARTS
    mkdir -p "$DATA"
    # The lake is off: this measures the broker as Kafka is measured (bench/lake.sh measures tiering).
    INLET_LOG=warn "$INLET" serve --listen 127.0.0.1:$PORT --advertised-listener 127.0.0.1:$PORT \
        --data-dir "$DATA/data" --lake-enable false >"$DATA/broker.log" 2>&1 &
    BROKER_PIDS=($!)
    BOOTSTRAP=127.0.0.1:$PORT
    wait_port "$PORT"
    echo "    fresh broker, $FRESH"
}

# fresh_cluster: three brokers on empty data directories and a fresh disk state (new ports each
# time, so no start waits on the previous cluster's sockets).
fresh_cluster() {
    stop_brokers
    FRESH=$(fresh_disk_state)
    STARTS=$((STARTS + 1))
    DATA=$WORK/cluster-$STARTS
    start_cluster "$DATA" $((PORT + 10 + 6 * STARTS))
    BOOTSTRAP=$CLUSTER_BOOTSTRAP
    echo "    fresh three-broker cluster, $FRESH"
}

# run NAME LOADGEN-ARGS...: runs one librdkafka load against BOOTSTRAP (see measure).
run() {
    local name=$1; shift
    measure "$name" "$LOADGEN" --bootstrap "$BOOTSTRAP" "$@"
}

# measure NAME COMMAND...: runs a load command printing JSON, appends it plus each broker's
# CPU/RSS and the load generator's CPU to the results.
echo -n "" >"$WORK/runs.jsonl"
measure() {
    local name=$1; shift
    echo "==> $name"
    local pid cpu0=() cpu1=() rss=() client0 client1 wall0 wall1 out
    # Start each run with the previous run's dirty pages written back, so one run's disk
    # writeback does not land in the next run's latencies.
    sync
    for pid in "${BROKER_PIDS[@]}"; do cpu0+=("$(cpu_seconds "$pid")"); done
    local pressure0="$(pressure_us cpu) $(pressure_us io)" pressure1
    client0=$(children_cpu_seconds); wall0=$(date +%s.%N)
    if ! out=$("$@"); then
        # One failed row should not lose the others: it is recorded as failed and the run goes on.
        out='{"error": "the load command failed; see its message above"}'
    fi
    wall1=$(date +%s.%N); client1=$(children_cpu_seconds)
    pressure1="$(pressure_us cpu) $(pressure_us io)"
    for pid in "${BROKER_PIDS[@]}"; do
        cpu1+=("$(cpu_seconds "$pid")"); rss+=("$(rss_mb "$pid")")
    done
    python3 - "$name" "$out" "${cpu0[*]}" "${cpu1[*]}" "${rss[*]}" "$client0" "$client1" \
        "$wall0" "$wall1" "$(du -sm "$DATA" | cut -f1)" "$FRESH" "$pressure0" "$pressure1" \
        >>"$WORK/runs.jsonl" <<'PY'
import json, sys
name, out, cpu0, cpu1, rss, client0, client1, wall0, wall1, data, fresh, p0, p1 = sys.argv[1:]
r = json.loads(out)
wall = float(wall1) - float(wall0)
cpu = [float(b) - float(a) for a, b in zip(cpu0.split(), cpu1.split())]
rss = [float(x) for x in rss.split()]
r["name"] = name
r["brokers_in_cluster"] = len(cpu)
r["fresh_state"] = fresh
# With three brokers: the sums, and each broker (node 1, 2, 3) under "brokers".
r["broker_cpu_cores"] = sum(cpu) / wall
r["broker_rss_mb"] = sum(rss)
if len(cpu) > 1:
    r["brokers"] = [
        {"node": i + 1, "cpu_seconds": c, "cpu_cores": c / wall, "rss_mb": m}
        for i, (c, m) in enumerate(zip(cpu, rss))
    ]
r["loadgen_cpu_cores"] = (float(client1) - float(client0)) / wall
r["data_mb"] = int(data)
# Share of the run's time some task waited for a CPU / for I/O (Linux PSI "some").
if len(p0.split()) == 2 and len(p1.split()) == 2:
    for kind, a, b in zip(("cpu", "io"), p0.split(), p1.split()):
        r[f"{kind}_pressure_pct"] = 100 * (int(b) - int(a)) / 1e6 / wall
mb = r.get("mb_per_sec")
if mb:
    r["broker_cpu_seconds_per_gb"] = sum(cpu) / (mb * wall / 1024)
print(json.dumps(r))
PY
    tail -1 "$WORK/runs.jsonl"
}

# Every produce row gets fresh broker(s) and disk state (see the header).
fresh_single
run "produce acks=1" --topic bench-acks1 produce --seconds "$RUN_SECONDS" --acks 1
run "consume from beginning" --topic bench-acks1 consume
# The same read with inlet's own client, lighter than librdkafka's per-message consumer loop: the
# two rows together show how much of the consume figure is the client.
measure "consume from beginning (inlet perf)" "$INLET" perf consume bench-acks1 \
    --bootstrap-server "$BOOTSTRAP" --output json
fresh_single
run "produce acks=all" --topic bench-acksall produce --seconds "$RUN_SECONDS" --acks all
fresh_single
run "produce acks=1 lz4" --topic bench-lz4 produce --seconds "$RUN_SECONDS" --acks 1 --compression lz4
fresh_single
E2E=(end-to-end --seconds "$RUN_SECONDS" --rate-mb 20 --linger-ms 0)
run "end-to-end at 20 MB/s" --topic bench-e2e "${E2E[@]}" --acks 1 --max-in-flight 5

if [ "${BENCH_CLUSTER:-1}" != 0 ]; then
    RF3=(--replication-factor 3 --topic-config min.insync.replicas=2)
    fresh_cluster
    run "3 brokers: produce RF 1 acks=all" --topic bench-rf1 produce --seconds "$RUN_SECONDS" \
        --acks all --replication-factor 1
    fresh_cluster
    run "3 brokers: produce RF 3 acks=all" --topic bench-rf3 produce --seconds "$RUN_SECONDS" \
        --acks all "${RF3[@]}"
    fresh_cluster
    run "3 brokers: produce RF 3 acks=1" --topic bench-rf3-acks1 produce --seconds "$RUN_SECONDS" \
        --acks 1 "${RF3[@]}"
    fresh_cluster
    run "3 brokers: end-to-end at 20 MB/s, RF 3 acks=all" --topic bench-rf3-e2e "${E2E[@]}" \
        --acks all --max-in-flight 5 "${RF3[@]}"
    fresh_cluster
    run "3 brokers: end-to-end at 20 MB/s, RF 3 acks=all, unbounded in-flight" \
        --topic bench-rf3-e2e-unbounded "${E2E[@]}" --acks all "${RF3[@]}"
fi
stop_brokers

python3 "$BENCH/report.py" "$WORK/runs.jsonl" "$LOOPBACK_MBPS" "$DISK_MBPS" "$RESULTS"
