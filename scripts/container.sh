#!/usr/bin/env bash
# Builds the Inlet container image with buildah and runs it with podman.
#
#   scripts/container.sh build           static `inlet` binary, then the image ($INLET_IMAGE)
#   scripts/container.sh run [ARGS...]   start a broker container in the background; ARGS go to
#                                        `inlet` (default: serve)
#   scripts/container.sh stop            SIGTERM, wait, print the broker's exit code and exit with it
#   scripts/container.sh logs            the container's output
#   scripts/container.sh rm              remove the container (the data volume stays)
#   scripts/container.sh podman ARGS...  any podman command with this machine's flags
#   scripts/container.sh buildah ARGS... any buildah command with this machine's flags
#
# Environment (defaults in brackets):
#   INLET_IMAGE [localhost/inlet:latest]   INLET_CONTAINER [inlet]   INLET_VOLUME [inlet-data]
#     (a name for a podman volume, or an absolute host path to bind-mount as /var/lib/inlet)
#   INLET_LISTEN [0.0.0.0:9092]   INLET_ADVERTISED_LISTENER [localhost:9092]   INLET_NODE_ID [1]
#   INLET_LOG [info]   INLET_STOP_TIMEOUT [30]: seconds from SIGTERM to SIGKILL
#   INLET_STATIC_TARGET_DIR [$CARGO_TARGET_DIR/static or target/static]: the static build's target dir
#   INLET_PROFILE [release]: the cargo profile of the static binary. Images for users are release
#     builds. The container test (integration-tests/python/test_container.py) sets
#     `container-test` (root Cargo.toml: dev without debug info): on CI's cold 2-core machine a
#     release build of the broker is most of the run's time limit, and the test checks the image,
#     not the optimiser. Same image, Containerfile and static check; only the binary differs.
#
# The machines this is built on have no Docker engine and a sandbox that limits containers, hence:
# buildah and podman from Debian (installed here when missing), the vfs storage driver (no overlay
# mounts), runc with cgroupfs (no systemd), the host network (no bridge or slirp), and
# docker/containers.conf through CONTAINERS_CONF (no default ulimits). Elsewhere the same image runs
# under Docker or Kubernetes as usual.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

IMAGE=${INLET_IMAGE:-localhost/inlet:latest}
CONTAINER=${INLET_CONTAINER:-inlet}
VOLUME=${INLET_VOLUME:-inlet-data}
STATIC_TARGET_DIR=${INLET_STATIC_TARGET_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/static}
PROFILE=${INLET_PROFILE:-release}
TRIPLE=x86_64-unknown-linux-gnu
UID_GID=10001:10001 # the image's USER (docker/Containerfile)

export CONTAINERS_CONF=$ROOT/docker/containers.conf

step() { printf '==> %s\n' "$*" >&2; }
die() { printf 'container.sh: %s\n' "$*" >&2; exit 1; }

podman_() { podman --storage-driver vfs --runtime runc --cgroup-manager cgroupfs "$@"; }
buildah_() { buildah --storage-driver vfs "$@"; }

ensure_tools() {
    local missing=() tool
    for tool in buildah podman runc; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    ((${#missing[@]})) || return 0
    command -v apt-get >/dev/null 2>&1 ||
        die "needs ${missing[*]} (buildah, podman and runc) and this is not a Debian system"
    step "installing Debian packages: buildah podman runc"
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends buildah podman runc
}

build() {
    [ "$(uname -m)" = x86_64 ] || die "the image is built for x86_64; this machine is $(uname -m)"
    step "building a static inlet binary (profile $PROFILE) in $STATIC_TARGET_DIR"
    # The explicit --target keeps crt-static off build scripts and proc macros, which must stay
    # dynamic to be loaded by the compiler; only the final binary is static.
    RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
        CARGO_TARGET_DIR=$STATIC_TARGET_DIR \
        "${CARGO:-cargo}" build --profile "$PROFILE" -p inlet --target "$TRIPLE"
    # Cargo's output directory: dev and test builds go to debug/, bench to release/, every other
    # profile to a directory of its own name.
    local out
    case $PROFILE in
        dev | test) out=debug ;;
        bench) out=release ;;
        *) out=$PROFILE ;;
    esac
    local bin=$STATIC_TARGET_DIR/$TRIPLE/$out/inlet

    # FROM scratch has no loader: a dynamic binary would fail there with a baffling "no such file".
    # rustc links a static PIE ("static-pie linked" to file(1), "statically linked" to ldd): what
    # matters is no program interpreter and no needed shared library.
    if readelf --program-headers "$bin" | grep -q INTERP || readelf --dynamic "$bin" | grep -q NEEDED; then
        die "$bin is not statically linked: $(file -L "$bin"; ldd "$bin" 2>&1)"
    fi
    step "$(file -L "$bin" | cut -d, -f1,4)"

    local context
    context=$(mktemp -d)
    # shellcheck disable=SC2064 # expand now: the trap must remove this very directory
    trap "rm -rf '$context'" EXIT
    cp "$bin" "$context/inlet"
    # Line tables are most of the binary (about 145 MB of 180); the symbols stay so a backtrace
    # still names functions.
    strip --strip-debug "$context/inlet"
    cp -R docker/rootfs "$context/rootfs"
    mkdir -m 0755 "$context/rootfs/var" "$context/rootfs/var/lib" "$context/empty"

    step "building image $IMAGE"
    buildah_ build --quiet -f docker/Containerfile -t "$IMAGE" "$context" >/dev/null
    buildah_ images --format '{{.Name}}:{{.Tag}} {{.Size}}' "$IMAGE" >&2
}

volume_arg() {
    case $VOLUME in
        # A host directory must be writable by the image's uid; :U would chown it recursively on
        # every start, so it is done once here instead.
        /*) mkdir -p "$VOLUME"; chown "$UID_GID" "$VOLUME"; printf '%s:/var/lib/inlet' "$VOLUME" ;;
        *) printf '%s:/var/lib/inlet' "$VOLUME" ;;
    esac
}

run() {
    local state
    if state=$(podman_ container inspect --format '{{.State.Status}}' "$CONTAINER" 2>/dev/null); then
        [ "$state" != running ] || die "container $CONTAINER is already running (scripts/container.sh stop)"
        podman_ rm "$CONTAINER" >/dev/null
    fi
    local env=(-e "INLET_LOG=${INLET_LOG:-info}")
    local name
    for name in INLET_LISTEN INLET_ADVERTISED_LISTENER INLET_NODE_ID; do
        if [ -n "${!name:-}" ]; then env+=(-e "$name=${!name}"); fi
    done
    podman_ run --detach --name "$CONTAINER" --network host \
        --volume "$(volume_arg)" "${env[@]}" "$IMAGE" "$@"
}

stop() {
    # podman stop sends the image's STOPSIGNAL (SIGTERM) and kills only after the timeout.
    podman_ stop --time "${INLET_STOP_TIMEOUT:-30}" "$CONTAINER" >/dev/null
    local code
    code=$(podman_ container inspect --format '{{.State.ExitCode}}' "$CONTAINER")
    echo "$CONTAINER exited with $code"
    return "$code"
}

command=${1:-}
[ $# -eq 0 ] || shift
case $command in
    build) ensure_tools; build ;;
    run) ensure_tools; run "$@" ;;
    stop) stop ;;
    logs) podman_ logs "$CONTAINER" ;;
    rm) podman_ rm --force "$CONTAINER" ;;
    podman) ensure_tools; podman_ "$@" ;;
    buildah) ensure_tools; buildah_ "$@" ;;
    *) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
esac
