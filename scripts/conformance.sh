#!/usr/bin/env bash
# Run the Autobahn WebSocket conformance suite (via kosoku) against switchboard.
#
#   scripts/conformance.sh
#
# Builds the release binary, starts it with the echo example on free loopback
# ports, waits for /readyz, runs every case (1.* .. 13.*, compression included)
# into target/conformance/, stops the server and prints a summary (also written
# to target/conformance/summary.txt). Exits non-zero if the server did not
# start or died, kosoku crashed or timed out, fewer cases ran than expected, or
# any case failed.
#
# Knobs (environment):
#   CONFORMANCE_PARALLELISM       kosoku -p (default 4)
#   CONFORMANCE_TIMEOUT           seconds for the kosoku run (default 1200)
#   CONFORMANCE_BUILD_TIMEOUT     seconds for cargo build (default 1800)
#   CONFORMANCE_READY_TIMEOUT     seconds to wait for /readyz (default 30)
#   CONFORMANCE_EXPECTED_CASES    minimum cases that must run (default 517)
#   CONFORMANCE_CASES             space-separated kosoku -i globs (default: all)
#   CONFORMANCE_FAIL_ON_UNIMPLEMENTED=0  do not count UNIMPLEMENTED (e.g. no
#                                 permessage-deflate) as failing (default 1)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

OUT="$ROOT/target/conformance"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
KOSOKU="$VENV/bin/kosoku"
# CONFORMANCE_PROFILE=debug uses the debug build (what the test suite already built),
# saving a release compile in CI; release is the default for a run by hand.
PROFILE="${CONFORMANCE_PROFILE:-release}"
case "$PROFILE" in
    release) BIN="$ROOT/target/release/switchboard"; BUILD_FLAGS=(--release) ;;
    debug) BIN="$ROOT/target/debug/switchboard"; BUILD_FLAGS=() ;;
    *) echo "conformance: CONFORMANCE_PROFILE must be release or debug" >&2; exit 2 ;;
esac
CONFIG="examples/echo/switchboard.toml"

PARALLELISM="${CONFORMANCE_PARALLELISM:-4}"
RUN_TIMEOUT="${CONFORMANCE_TIMEOUT:-1200}"
BUILD_TIMEOUT="${CONFORMANCE_BUILD_TIMEOUT:-1800}"
READY_TIMEOUT="${CONFORMANCE_READY_TIMEOUT:-30}"
EXPECTED="${CONFORMANCE_EXPECTED_CASES:-517}"
STOP_TIMEOUT=15

SERVER_PID=""

log() { printf 'conformance: %s\n' "$*"; }

# fail MSG: record MSG in summary.txt, show the server log tail, exit 1.
fail() {
    log "FAIL: $*"
    mkdir -p "$OUT"
    { echo "RESULT: FAIL - $*"; echo "conformance: 0 passed, 1 failed"; } >"$OUT/summary.txt"
    if [ -s "$OUT/server.log" ]; then
        log "last lines of $OUT/server.log:"
        tail -n 30 "$OUT/server.log" | sed 's/^/    /'
    fi
    exit 1
}

server_alive() { [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; }

# stop_server: SIGTERM, wait up to STOP_TIMEOUT s, then SIGKILL; exit status in SERVER_RC.
SERVER_RC=""
stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    local pid="$SERVER_PID" i
    SERVER_PID=""
    SERVER_RC=0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "server did not exit ${STOP_TIMEOUT}s after SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || SERVER_RC=$?
}

cleanup() { stop_server; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ensure_tools() {
    if [ ! -x "$KOSOKU" ]; then
        log "kosoku missing; running scripts/install-deps.sh"
        "$ROOT/scripts/install-deps.sh"
    fi
    [ -x "$KOSOKU" ] || fail "kosoku not installed at $KOSOKU"
}

build_server() {
    log "building: cargo build ${BUILD_FLAGS[*]} -p switchboard (timeout ${BUILD_TIMEOUT}s)"
    timeout -k 10 "$BUILD_TIMEOUT" cargo build "${BUILD_FLAGS[@]}" -p switchboard || fail "cargo build failed (rc=$?)"
    [ -x "$BIN" ] || fail "no binary at $BIN after build"
}

# pick_ports: two distinct free loopback ports into PORT and MPORT.
pick_ports() {
    read -r PORT MPORT < <("$PY" - <<'EOF'
import socket
socks = []
for _ in range(2):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(*(s.getsockname()[1] for s in socks))
EOF
)
    [ -n "${PORT:-}" ] && [ -n "${MPORT:-}" ] || fail "could not pick free ports"
}

start_server() {
    [ -f "$CONFIG" ] || fail "config $CONFIG not found"
    log "starting server: ws 127.0.0.1:$PORT, management 127.0.0.1:$MPORT (log: $OUT/server.log)"
    "$BIN" serve --config "$CONFIG" --listen "127.0.0.1:$PORT" --management-listen "127.0.0.1:$MPORT" \
        >"$OUT/server.log" 2>&1 &
    SERVER_PID=$!
}

wait_ready() {
    local url="http://127.0.0.1:$MPORT/readyz" deadline=$((SECONDS + READY_TIMEOUT))
    while :; do
        server_alive || fail "server exited before becoming ready"
        if "$PY" -c 'import sys, urllib.request
sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=2).status == 200 else 1)' "$url" 2>/dev/null; then
            log "server ready ($url answered 200)"
            return
        fi
        [ "$SECONDS" -lt "$deadline" ] || fail "$url did not answer 200 within ${READY_TIMEOUT}s"
        sleep 0.2
    done
}

run_kosoku() {
    local args=(-p "$PARALLELISM" -o "$OUT") pat
    for pat in ${CONFORMANCE_CASES:-}; do args+=(-i "$pat"); done
    log "running kosoku ${args[*]} ws://127.0.0.1:$PORT (timeout ${RUN_TIMEOUT}s)"
    local start=$SECONDS
    KOSOKU_RC=0
    timeout -k 10 "$RUN_TIMEOUT" "$KOSOKU" "${args[@]}" "ws://127.0.0.1:$PORT" 2>&1 | tee "$OUT/kosoku.log" \
        || KOSOKU_RC=${PIPESTATUS[0]}
    log "kosoku finished in $((SECONDS - start))s (rc=$KOSOKU_RC)"
}

main() {
    local problems=() rc=0
    rm -rf "$OUT"
    mkdir -p "$OUT"
    ensure_tools
    build_server
    pick_ports
    start_server
    wait_ready
    run_kosoku

    # kosoku exits 1 when any case did not pass (it also counts UNIMPLEMENTED);
    # the summary decides that. Anything else is a crash or a timeout.
    case "$KOSOKU_RC" in
        0 | 1) ;;
        124 | 137) problems+=("kosoku timed out after ${RUN_TIMEOUT}s") ;;
        *) problems+=("kosoku exited with status $KOSOKU_RC") ;;
    esac
    server_alive || problems+=("server died during the run")

    stop_server
    [ "$SERVER_RC" = 0 ] || log "warning: server exit status after SIGTERM: $SERVER_RC"

    local fail_unimpl=()
    if [ "${CONFORMANCE_FAIL_ON_UNIMPLEMENTED:-1}" = 1 ]; then fail_unimpl=(--fail-on-unimplemented); fi
    "$PY" "$ROOT/scripts/conformance_summary.py" "$OUT" --expected "$EXPECTED" \
        --output "$OUT/summary.txt" "${fail_unimpl[@]}" || rc=$?

    if [ "${#problems[@]}" -gt 0 ]; then
        local p
        for p in "${problems[@]}"; do
            log "FAIL: $p"
            echo "RESULT: FAIL - $p" >>"$OUT/summary.txt"
        done
        if [ -s "$OUT/server.log" ]; then
            log "last lines of $OUT/server.log:"
            tail -n 30 "$OUT/server.log" | sed 's/^/    /'
        fi
        rc=1
    fi
    log "reports: $OUT/index.html, summary: $OUT/summary.txt"
    exit "$rc"
}

main "$@"
