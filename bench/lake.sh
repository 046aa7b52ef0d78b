#!/usr/bin/env bash
# The lake benchmark: how fast closed segments are tiered into the local lake directory, and how
# fast a consumer reads history from the lake compared with the same history on local disk.
#
#   bash bench/lake.sh                 # 1 GiB per topic
#   LAKE_BENCH_MB=256 bash bench/lake.sh
#
# Three topics get the same data (1 KiB records, 64 MiB segments), written with tiering off:
#   local  stays on the local disk                         -> consume MB/s from local segments
#          (each topic is consumed twice, alternating with the other; the best of two counts)
#   lake   then tiered without Parquet, local copy dropped -> tiering MB/s, consume MB/s from the lake
#   table  then tiered with Parquet export                 -> tiering MB/s including the export
# Tiering time is measured from `remote.storage.enable=true` until the broker's metrics show the
# lake caught up (no closed bytes waiting). Results: bench/results/lake.json and a table.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh" lake-bench
MB=${LAKE_BENCH_MB:-1024}
PORT=${BENCH_PORT:-19292}
METRICS=127.0.0.1:$((PORT + 1))

echo "==> building the release binary"
cargo build --release -q -p inlet
INLET=${CARGO_TARGET_DIR:-$ROOT/target}/release/inlet
B=(--bootstrap-server 127.0.0.1:$PORT)

INLET_LOG=warn "$INLET" serve --listen 127.0.0.1:$PORT --advertised-listener 127.0.0.1:$PORT \
    --data-dir "$WORK/data" --metrics-listen "$METRICS" --lake-tier-interval-ms 100 \
    >"$WORK/broker.log" 2>&1 &
BROKER_PID=$!
for _ in $(seq 100); do "$INLET" cluster describe "${B[@]}" >/dev/null 2>&1 && break; sleep 0.1; done

metric() { # metric NAME -> value
    python3 - "$METRICS" "$1" <<'EOF'
import sys, urllib.request
body = urllib.request.urlopen(f"http://{sys.argv[1]}/metrics").read().decode()
print(next(l.split()[1] for l in body.splitlines() if l.startswith(sys.argv[2] + " ")))
EOF
}
records=$((MB * 1024))
for t in local lake table; do
    "$INLET" topic create "$t" -p 1 -c segment.bytes=67108864 -c remote.storage.enable=false \
        -c local.retention.bytes=0 "${B[@]}" >/dev/null
    "$INLET" perf produce "$t" --num-records $records --record-size 1024 --acks 1 "${B[@]}" --output json >/dev/null
done
"$INLET" topic alter-config lake lake.parquet.enable=false "${B[@]}" >/dev/null
sync

tier() { # tier TOPIC -> seconds and bytes tiered until the lake caught up
    local before start
    before=$(metric inlet_lake_bytes_tiered_total)
    start=$(date +%s.%N)
    "$INLET" topic alter-config "$1" remote.storage.enable=true "${B[@]}" >/dev/null
    sleep 0.3
    while [ "$(metric inlet_lake_tiering_lag_bytes)" != 0 ] || \
          [ "$(metric inlet_lake_bytes_tiered_total)" = "$before" ]; do sleep 0.05; done
    python3 -c "import sys; print(f'{float(sys.argv[1]) - float(sys.argv[2]):.3f} {int(sys.argv[3]) - int(sys.argv[4])}')" \
        "$(date +%s.%N)" "$start" "$(metric inlet_lake_bytes_tiered_total)" "$before"
}
consume() { # consume TOPIC -> MB/s
    sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
    "$INLET" perf consume "$1" "${B[@]}" --output json | python3 -c \
        'import json,sys; d=json.load(sys.stdin); print(d.get("mb_per_sec") or d.get("megabytes_per_second") or d)'
}
echo "==> tiering"
read -r LAKE_S LAKE_BYTES < <(tier lake)
read -r TABLE_S TABLE_BYTES < <(tier table)
echo "==> consuming"
# Twice each, alternating, best of two: one cold read can be slowed by whatever else the shared
# machine is doing at that moment.
L1=$(consume local); R1=$(consume lake); L2=$(consume local); R2=$(consume lake)
LOCAL_MBPS=$(python3 -c "print(max($L1, $L2))")
LAKE_MBPS=$(python3 -c "print(max($R1, $R2))")
echo "consume MB/s: local $L1 $L2, lake $R1 $R2"
du -sh "$WORK/data/topics" "$WORK/data/lake" || true

python3 - "$RESULTS/lake.json" "$MB" "$LAKE_S" "$LAKE_BYTES" "$TABLE_S" "$TABLE_BYTES" "$LOCAL_MBPS" "$LAKE_MBPS" <<'EOF'
import json, sys
out, mb, lake_s, lake_b, table_s, table_b, local_mbps, lake_mbps = sys.argv[1:]
mib = 1048576
r = {
    "topic_mb": int(mb),
    "tiering_mb_per_s_segments_only": int(lake_b) / mib / float(lake_s),
    "tiering_mb_per_s_with_parquet": int(table_b) / mib / float(table_s),
    "tiering_seconds": {"segments_only": float(lake_s), "with_parquet": float(table_s)},
    "consume_mb_per_s_local": float(local_mbps),
    "consume_mb_per_s_lake": float(lake_mbps),
}
r["lake_over_local_consume"] = r["consume_mb_per_s_lake"] / r["consume_mb_per_s_local"]
json.dump(r, open(out, "w"), indent=2)
print(f"""
| measure | value |
|---|---|
| tiering to the local lake, segments + indexes | {r['tiering_mb_per_s_segments_only']:.0f} MB/s |
| tiering with Parquet export | {r['tiering_mb_per_s_with_parquet']:.0f} MB/s (bytes put, incl. the Parquet file) |
| consume from local segments | {r['consume_mb_per_s_local']:.0f} MB/s |
| consume from the lake | {r['consume_mb_per_s_lake']:.0f} MB/s ({r['lake_over_local_consume']:.0%} of local) |
""")
EOF
