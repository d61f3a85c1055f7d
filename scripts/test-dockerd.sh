#!/usr/bin/env bash
# A private Docker engine for tests: its own data root, socket and pid file, no systemd.
#
#   eval "$(bash scripts/test-dockerd.sh start)"   # prints: export DOCKER_HOST=unix://...
#   bash scripts/test-dockerd.sh stop
#
# State lives under $TUNESHIP_DOCKERD_DIR (default ~/.cache/tuneship/dockerd), so images
# imported by the tests survive between runs. Needs root (dockerd does) and Debian's
# docker.io package (`apt-get install -y docker.io`).
set -euo pipefail

dir="${TUNESHIP_DOCKERD_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tuneship/dockerd}"
sock="$dir/docker.sock"
pidfile="$dir/dockerd.pid"
log="$dir/dockerd.log"
host="unix://$sock"

running() {
    [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

start() {
    command -v dockerd >/dev/null || {
        echo "dockerd not found: apt-get install -y docker.io" >&2
        exit 1
    }
    mkdir -p "$dir/data" "$dir/exec"
    started=""
    if ! running; then
        # A pid file left by an engine that was killed (a machine that stopped, a CI job
        # that was cancelled) names a dead process; it must not be read as this start's.
        rm -f "$pidfile"
        # A short exec root: containerd's socket paths must stay under 108 bytes. Keyed by
        # the state folder, so two engines with different folders never share one.
        exec_root="/tmp/tuneship-dockerd-$(printf %s "$dir" | sha256sum | cut -c1-10)"
        mkdir -p "$exec_root"
        # --iptables: ports published on 127.0.0.1 still work through docker-proxy where
        # the kernel allows no iptables (nested containers); try with it first.
        setsid dockerd --data-root "$dir/data" --exec-root "$exec_root" --pidfile "$pidfile" \
            -H "$host" ${TUNESHIP_DOCKERD_ARGS:-} >"$log" 2>&1 </dev/null &
        started=$!
    fi
    for _ in $(seq 1 120); do
        if DOCKER_HOST="$host" docker version >/dev/null 2>&1; then
            # Under sudo, the calling user gets the socket (the tests connect as that user).
            [[ -n "${SUDO_UID:-}" ]] && chown "$SUDO_UID" "$sock"
            echo "export DOCKER_HOST=$host"
            return 0
        fi
        # Give up early only when the engine this call started has exited.
        if [[ -n "$started" ]] && ! kill -0 "$started" 2>/dev/null; then break; fi
        sleep 0.5
    done
    echo "dockerd did not start; its log ($log) ends with:" >&2
    tail -n 20 "$log" >&2
    exit 1
}

stop() {
    if running; then
        pid="$(cat "$pidfile")"
        kill -TERM "$pid"
        for _ in $(seq 1 60); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    fi
    rm -f "$pidfile"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
*)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
