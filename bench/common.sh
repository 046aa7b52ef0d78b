# Sourced by the benchmark scripts: the repository root, a scratch directory removed on exit
# together with the brokers the script started (BROKER_PID, and every pid in BROKER_PIDS), the
# results directory, and small helpers to sample a process and to reset the disk's state.
# Usage: source bench/common.sh NAME  (the scratch directory is $BENCH_DIR/inlet-NAME.XXXXXX)
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
WORK=$(mktemp -d "${BENCH_DIR:-/tmp}/inlet-$1.XXXXXX")
RESULTS=$ROOT/bench/results
mkdir -p "$RESULTS"
BROKER_PID=""
BROKER_PIDS=()
cleanup() {
    local pid
    for pid in $BROKER_PID "${BROKER_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in $BROKER_PID "${BROKER_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

TICKS=$(getconf CLK_TCK)
# cpu_seconds PID: user+system CPU time the process has used so far.
cpu_seconds() { awk -v t="$TICKS" '{ print ($14 + $15) / t }' "/proc/$1/stat"; }
# children_cpu_seconds: CPU time of this shell's finished children (the load generator's runs).
children_cpu_seconds() { awk -v t="$TICKS" '{ print ($16 + $17) / t }' "/proc/$$/stat"; }
# pressure_us RESOURCE: microseconds some task waited for cpu or io since boot (Linux PSI), or
# nothing where the kernel has no /proc/pressure. Over a run it tells how much other work on the
# machine (or the run itself) kept tasks waiting: the bench shares its cores and disk.
pressure_us() { awk '/^some/ { sub("total=", "", $5); print $5 }' "/proc/pressure/$1" 2>/dev/null || true; }
rss_mb() { awk '/VmRSS/ { print $2 / 1024 }' "/proc/$1/status"; }

# wait_port PORT: until something accepts TCP connections on 127.0.0.1:PORT (at most 10 s).
wait_port() {
    local _
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on 127.0.0.1:$1 after 10 s" >&2
    return 1
}

# stop_pids SIGNAL PID...: sends SIGNAL, then SIGKILL to whatever still runs 10 s later; waits
# for all. (Its stderr is dropped as a whole: bash reports a job killed by a signal on its own
# stderr whenever it notices, not on the stderr of `kill` or `wait`.)
stop_pids() {
    local signal=$1 pid _; shift
    for pid in "$@"; do kill "-$signal" "$pid" || true; done
    for _ in $(seq 100); do
        local alive=0
        for pid in "$@"; do kill -0 "$pid" && alive=1; done
        [ "$alive" -eq 0 ] && break
        sleep 0.1
    done
    for pid in "$@"; do kill -9 "$pid" || true; wait "$pid" || true; done
} 2>/dev/null

# fresh_disk_state: write back every dirty page, then (if the kernel lets this user, and
# BENCH_DROP_CACHES is not 0) drop the clean page cache, dentries and inodes, so a run starts
# with the same empty page cache and idle disk as the first run after boot. Prints what it did.
fresh_disk_state() {
    sync
    if [ "${BENCH_DROP_CACHES:-1}" != 0 ] && { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
        echo "synced + dropped page cache"
    else
        echo "synced (page cache kept: /proc/sys/vm/drop_caches not writable or BENCH_DROP_CACHES=0)"
    fi
}
