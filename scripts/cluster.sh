#!/usr/bin/env bash
# A local three-node Inlet cluster for development and tests, on loopback.
#
#   scripts/cluster.sh start     # builds the broker (release) unless INLET_BIN is set, starts 3 nodes
#   scripts/cluster.sh status    # `inlet cluster describe` against the cluster
#   scripts/cluster.sh stop      # SIGTERM to each node (they flush and exit)
#   scripts/cluster.sh kill N    # kill -9 node N (to try failover)
#   scripts/cluster.sh restart N # start node N again on its data
#   scripts/cluster.sh add N     # start node N (N > 3) as a broker-only node joining the cluster
#   scripts/cluster.sh wipe N    # kill -9 node N and delete its data (a replaced disk); restart N
#                                # brings it back empty, to catch up from the others
#
# Node N listens for Kafka clients on 127.0.0.1:$((BASE_PORT + 2N - 2)) (9092, 9094, 9096 by
# default) and for the controller quorum on the next port (9093, 9095, 9097). Nodes 1-3 are broker
# and controller (Kafka's KRaft combined mode); nodes added later are brokers only. Data and logs: $CLUSTER_DIR/node-N (default
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
    local n=$1 bin=$2 dir=$CLUSTER_DIR/node-$1 roles=()
    # Nodes past the voters are broker-only: observers of the controller quorum.
    if [ "$n" -gt "$NODES" ]; then
        roles=(--process-roles broker)
    fi
    mkdir -p "$dir"
    if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
        echo "node $n already runs (pid $(cat "$dir/pid"))"
        return
    fi
    "$bin" serve --node-id "$n" \
        --listen "127.0.0.1:$(kafka_port "$n")" \
        --advertised-listener "127.0.0.1:$(kafka_port "$n")" \
        --controller-listen "127.0.0.1:$(controller_port "$n")" \
        --controller-quorum-voters "$(voters)" "${roles[@]}" \
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
    for dir in "$CLUSTER_DIR"/node-*; do
        [ -d "$dir" ] && signal_node "${dir##*node-}" TERM
    done
    ;;
add)
    n=${2:?node id}
    [ "$n" -gt "$NODES" ] || { echo "nodes 1-$NODES are the voters; add a node above $NODES" >&2; exit 2; }
    start_node "$n" "$(binary)"
    ;;
wipe)
    n=${2:?node id}
    signal_node "$n" KILL
    sleep 0.5
    rm -rf "$CLUSTER_DIR/node-$n/data"
    echo "node $n: data deleted; 'restart $n' starts it empty"
    ;;
kill)
    signal_node "${2:?node id}" KILL
    ;;
restart)
    start_node "${2:?node id}" "$(binary)"
    ;;
*)
    sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
