#!/usr/bin/env bash
# A local three-node Inlet cluster for development and tests, on loopback.
#
#   scripts/cluster.sh start     # builds the broker (release) unless INLET_BIN is set, starts 3 nodes
#   scripts/cluster.sh status    # `inlet cluster describe` against the cluster
#   scripts/cluster.sh stop      # SIGTERM to each node (they flush and exit)
#   scripts/cluster.sh kill N    # kill -9 node N (to try failover)
#   scripts/cluster.sh restart N # start node N again on its data
#
# Node N listens for Kafka clients on 127.0.0.1:$((BASE_PORT + 2N - 2)) (9092, 9094, 9096 by
# default) and for the controller quorum on the next port (9093, 9095, 9097). Every node is broker
# and controller (Kafka's KRaft combined mode). Data and logs: $CLUSTER_DIR/node-N (default
# ./inlet-cluster). Bootstrap clients with 127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BASE_PORT=${BASE_PORT:-9092}
CLUSTER_DIR=${CLUSTER_DIR:-$PWD/inlet-cluster}
NODES=3

kafka_port() { echo $((BASE_PORT + 2 * $1 - 2)); }
controller_port() { echo $((BASE_PORT + 2 * $1 - 1)); }

voters() {
    local list=() n
    for n in $(seq 1 $NODES); do list+=("$n@127.0.0.1:$(controller_port "$n")"); done
    (IFS=,; echo "${list[*]}")
}

bootstrap() {
    local list=() n
    for n in $(seq 1 $NODES); do list+=("127.0.0.1:$(kafka_port "$n")"); done
    (IFS=,; echo "${list[*]}")
}

binary() {
    if [ -n "${INLET_BIN:-}" ]; then echo "$INLET_BIN"; return; fi
    (cd "$ROOT" && cargo build --release -q -p inlet) >&2
    echo "$ROOT/target/release/inlet"
}

start_node() {
    local n=$1 bin=$2 dir=$CLUSTER_DIR/node-$1
    mkdir -p "$dir"
    if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
        echo "node $n already runs (pid $(cat "$dir/pid"))"
        return
    fi
    "$bin" serve --node-id "$n" \
        --listen "127.0.0.1:$(kafka_port "$n")" \
        --advertised-listener "127.0.0.1:$(kafka_port "$n")" \
        --controller-listen "127.0.0.1:$(controller_port "$n")" \
        --controller-quorum-voters "$(voters)" \
        --data-dir "$dir/data" >>"$dir/log" 2>&1 &
    echo $! >"$dir/pid"
    echo "node $n: pid $!, kafka 127.0.0.1:$(kafka_port "$n"), controller 127.0.0.1:$(controller_port "$n"), log $dir/log"
}

signal_node() {
    local n=$1 signal=$2 pidfile=$CLUSTER_DIR/node-$1/pid
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        kill "-$signal" "$(cat "$pidfile")"
        echo "node $n: sent SIG$signal"
    else
        echo "node $n is not running"
    fi
}

case ${1:-} in
start)
    bin=$(binary)
    for n in $(seq 1 $NODES); do start_node "$n" "$bin"; done
    # The brokers serve once the quorum has elected a controller and registered them; wait
    # until every one is listed live, so that a replication factor of 3 can be placed at once.
    for _ in $(seq 1 60); do
        live=$("$bin" --bootstrap-server "$(bootstrap)" --output json cluster describe 2>/dev/null \
            | grep -o '"state": *"live"' | wc -l) || true
        if [ "$live" -eq "$NODES" ]; then
            "$bin" --bootstrap-server "$(bootstrap)" cluster describe
            echo; echo "bootstrap servers: $(bootstrap)"
            exit 0
        fi
        sleep 0.5
    done
    echo "the cluster did not have $NODES live brokers within 30 s: see $CLUSTER_DIR/node-*/log" >&2
    exit 1
    ;;
status)
    "$(binary)" --bootstrap-server "$(bootstrap)" cluster describe
    ;;
stop)
    for n in $(seq 1 $NODES); do signal_node "$n" TERM; done
    ;;
kill)
    signal_node "${2:?node id}" KILL
    ;;
restart)
    start_node "${2:?node id}" "$(binary)"
    ;;
*)
    sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
