# Sourced by bench/run.sh after common.sh: starts a three-broker cluster on loopback
# for the replication rows, as scripts/cluster.sh does (combined mode: every node is broker and
# controller) but with the lake off, like the single broker, and with each node's data in a
# directory given per start (every row gets fresh ones).
#
# start_cluster DIR BASE_PORT: node N listens for clients on BASE_PORT + 2N - 2 and for the
# quorum on the next port, keeps data in DIR/node-N; returns once all three are registered live.
# Sets BROKER_PIDS (node order) and CLUSTER_BOOTSTRAP.
start_cluster() {
    local dir=$1 base=$2 n voters=() bootstrap=()
    for n in 1 2 3; do
        voters+=("$n@127.0.0.1:$((base + 2 * n - 1))")
        bootstrap+=("127.0.0.1:$((base + 2 * n - 2))")
    done
    CLUSTER_BOOTSTRAP=$(IFS=,; echo "${bootstrap[*]}")
    BROKER_PIDS=()
    for n in 1 2 3; do
        mkdir -p "$dir/node-$n"
        INLET_LOG=warn "$INLET" serve --node-id "$n" \
            --listen "127.0.0.1:$((base + 2 * n - 2))" \
            --advertised-listener "127.0.0.1:$((base + 2 * n - 2))" \
            --controller-listen "127.0.0.1:$((base + 2 * n - 1))" \
            --controller-quorum-voters "$(IFS=,; echo "${voters[*]}")" \
            --data-dir "$dir/node-$n/data" --lake-enable false \
            >"$dir/node-$n/log" 2>&1 &
        BROKER_PIDS+=($!)
    done
    # The brokers serve once the quorum has elected a controller and registered them; RF 3 can be
    # placed only when all three are live.
    local _ live
    for _ in $(seq 60); do
        live=$("$INLET" --bootstrap-server "$CLUSTER_BOOTSTRAP" --output json cluster describe \
            2>/dev/null | grep -o '"state": *"live"' | wc -l) || true
        [ "$live" -eq 3 ] && return 0
        sleep 0.5
    done
    echo "the cluster did not have 3 live brokers within 30 s; logs:" >&2
    tail -n 20 "$dir"/node-*/log >&2
    return 1
}

