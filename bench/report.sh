#!/usr/bin/env bash
# One-command benchmark report, on loopback only: builds release once, runs every scenario
# script with NO_BUILD=1 in sequence, runs an echo matrix itself, then writes
# docs/benchmarks.md and docs/bench/*.png with bench/report.py.
#
#   1. echo matrix (here): the gateway (examples/echo/switchboard.toml) vs ceiling-echo
#      (the same WebSocket library, nothing else) at MATRIX_CONNS x MATRIX_SIZES, MATRIX_SECS
#      per run after MATRIX_WARMUP, the two servers alternating (order swapped every round),
#      MATRIX_RUNS rounds; both servers run for the whole matrix.
#   2. bench/edge.sh, bench/functions.sh, bench/lambda.sh, bench/fanout.sh, bench/cluster.sh
#      (each with NO_BUILD=1 and shortened knobs below; a missing or failing script is
#      recorded in target/report-bench/<ts>/scenarios.jsonl and reported as skipped).
#
# Usage: bench/report.sh
# Environment knobs (defaults in brackets):
#   MATRIX_CONNS ["1 100 1000"] MATRIX_SIZES ["64 16384"] MATRIX_SECS [5] MATRIX_WARMUP [1]
#   MATRIX_RUNS [3]
#   SCENARIOS ["edge functions lambda fanout cluster"]  which scripts to run
#   DEADLINE_SECS [1200]  a scenario script that would start after this many seconds from
#                         the start is skipped (noted in the report)
#   NO_BUILD [0]          1: skip the cargo build
#   NO_REPORT [0]         1: do not run bench/report.py at the end
#   The scenario scripts' own knobs are shortened unless already set, e.g. ECHO_SECS=5 for
#   edge, SECS=5 for functions/lambda/fanout, FAN_SECS=5 for cluster (see below).
# Raw results: target/report-bench/<ts>/{results.jsonl,scenarios.jsonl,*.log}
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
for arg in "$@"; do
    case "$arg" in
        -h|--help) sed -n '2,/^set -uo/s/^#\( \|$\)//p' "$0"; exit 0 ;;
        *) echo "report.sh: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

MATRIX_CONNS="${MATRIX_CONNS:-1 100 1000}"
MATRIX_SIZES="${MATRIX_SIZES:-64 16384}"
MATRIX_SECS="${MATRIX_SECS:-5}"
MATRIX_WARMUP="${MATRIX_WARMUP:-1}"
MATRIX_RUNS="${MATRIX_RUNS:-3}"
SCENARIOS="${SCENARIOS:-edge functions lambda fanout cluster}"
DEADLINE_SECS="${DEADLINE_SECS:-1200}"
CONFIG="${CONFIG:-examples/echo/switchboard.toml}"

OUT="$ROOT/target/report-bench/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
SCEN="$OUT/scenarios.jsonl"
: >"$RESULTS"
: >"$SCEN"
BIN="$ROOT/target/release"
T0=$(date +%s)
printf '{"started_at": %s, "load_at_start": "%s", "command": "bench/report.sh"}\n' \
    "$T0" "$(cut -d' ' -f1-3 /proc/loadavg)" >"$OUT/meta.json"

log() { printf '[report %4ds] %s\n' "$(($(date +%s) - T0))" "$*" >&2; }
ulimit -n "$(ulimit -Hn)"

PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
}
trap cleanup EXIT

# scenario NAME STATUS SECS NOTE: one line of scenarios.jsonl
scenario() {
    python3 -c 'import json,sys; print(json.dumps({"scenario": sys.argv[1], "status": sys.argv[2], "secs": int(sys.argv[3]), "note": sys.argv[4]}))' \
        "$1" "$2" "$3" "$4" >>"$SCEN"
}

# ---------------------------------------------------------------------------------------
# build
if [ "${NO_BUILD:-0}" != 1 ]; then
    log "cargo build --release -p switchboard -p switchboard-bench"
    if ! cargo build --release -p switchboard -p switchboard-bench >"$OUT/build.log" 2>&1; then
        log "build failed (see $OUT/build.log)"
        scenario build failed "$(($(date +%s) - T0))" "cargo build failed; see $OUT/build.log"
        exit 1
    fi
fi
BUILD_SECS=$(($(date +%s) - T0))
scenario build ok "$BUILD_SECS" ""

# ---------------------------------------------------------------------------------------
# echo matrix
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
CLK_TCK="$(getconf CLK_TCK)"

echo_matrix() {
    local port mport gw_pid ce_pid gw_url ce_url i addr
    port=$(free_port); mport=$(free_port)
    SWITCHBOARD_LIMITS__MAX_CONNECTIONS=20000 "$BIN/switchboard" serve --config "$CONFIG" \
        --listen "127.0.0.1:$port" --management-listen "127.0.0.1:$mport" >"$OUT/gateway.log" 2>&1 &
    gw_pid=$!; PIDS+=("$gw_pid")
    for i in $(seq 1 300); do
        kill -0 "$gw_pid" 2>/dev/null || { log "gateway exited at start"; return 1; }
        curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$mport/readyz" 2>/dev/null && break
        sleep 0.1
    done
    curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$mport/readyz" || { log "gateway not ready"; return 1; }
    gw_url="ws://127.0.0.1:$port/"
    "$BIN/ceiling-echo" --listen 127.0.0.1:0 >"$OUT/ceiling.log" 2>&1 &
    ce_pid=$!; PIDS+=("$ce_pid")
    for i in $(seq 1 100); do
        addr=$(sed -n 's/^listening on //p' "$OUT/ceiling.log")
        [ -n "$addr" ] && break
        sleep 0.1
    done
    [ -n "$addr" ] || { log "ceiling-echo did not report its address"; return 1; }
    ce_url="ws://$addr/"

    local round conns size order target url pid c0 c1 t0 t1 line n=0
    for round in $(seq 1 "$MATRIX_RUNS"); do
        for conns in $MATRIX_CONNS; do
            for size in $MATRIX_SIZES; do
                n=$((n + 1))
                if [ $((n % 2)) -eq 1 ]; then order="gateway ceiling"; else order="ceiling gateway"; fi
                for target in $order; do
                    if [ "$target" = gateway ]; then url="$gw_url"; pid=$gw_pid; else url="$ce_url"; pid=$ce_pid; fi
                    log "echo matrix round $round: $target, $conns conns, $size B"
                    c0=$(cpu_ticks "$pid"); t0=$(date +%s.%N)
                    line=$("$BIN/loadgen" echo --url "$url" --connections "$conns" --size "$size" \
                        --duration "$MATRIX_SECS" --warmup "$MATRIX_WARMUP" \
                        2>"$OUT/echo-$target-$conns-$size-$round.log" | tail -1)
                    c1=$(cpu_ticks "$pid"); t1=$(date +%s.%N)
                    if [ -z "$line" ]; then
                        log "loadgen printed nothing (see $OUT/echo-$target-$conns-$size-$round.log)"
                        line='{}'
                    fi
                    python3 -c '
import json, sys
d = json.loads(sys.argv[1] or "{}")
d.update(phase="echo-matrix", target=sys.argv[2], conns=int(sys.argv[3]), size_b=int(sys.argv[4]),
         run=int(sys.argv[5]), server_cpu_s=round((int(sys.argv[7]) - int(sys.argv[6])) / int(sys.argv[8]), 2),
         wall_s=round(float(sys.argv[10]) - float(sys.argv[9]), 2),
         load1=float(open("/proc/loadavg").read().split()[0]))
print(json.dumps(d))' "$line" "$target" "$conns" "$size" "$round" "$c0" "$c1" "$CLK_TCK" "$t0" "$t1" >>"$RESULTS"
                done
            done
        done
    done
    kill "$gw_pid" "$ce_pid" 2>/dev/null
    wait "$gw_pid" "$ce_pid" 2>/dev/null
    PIDS=()
}

M0=$(date +%s)
if echo_matrix; then
    scenario echo-matrix ok "$(($(date +%s) - M0))" "runs=$MATRIX_RUNS secs=$MATRIX_SECS warmup=$MATRIX_WARMUP"
else
    scenario echo-matrix failed "$(($(date +%s) - M0))" "see $OUT/*.log"
fi

# ---------------------------------------------------------------------------------------
# scenario scripts (shortened knobs unless set by the caller)
run_script() {
    local name="$1" script="bench/$1.sh" s0 rc
    shift
    if [ ! -f "$script" ]; then
        log "$name: $script missing, skipped"
        scenario "$name" skipped 0 "$script missing"
        return
    fi
    if [ $(($(date +%s) - T0)) -gt "$DEADLINE_SECS" ]; then
        log "$name: past DEADLINE_SECS=$DEADLINE_SECS, skipped"
        scenario "$name" skipped 0 "not started: past the report's time budget (DEADLINE_SECS=$DEADLINE_SECS)"
        return
    fi
    log "$name: $* bash $script"
    s0=$(date +%s)
    env NO_BUILD=1 "$@" bash "$script" >"$OUT/$name.out" 2>"$OUT/$name.err"
    rc=$?
    if [ "$rc" -eq 0 ]; then
        scenario "$name" ok "$(($(date +%s) - s0))" "$*"
    else
        log "$name: exit $rc (see $OUT/$name.err)"
        scenario "$name" failed "$(($(date +%s) - s0))" "exit $rc; $(tail -3 "$OUT/$name.err" | tr '\n' ' ' | cut -c1-300)"
    fi
}

for s in $SCENARIOS; do
    case "$s" in
        edge) run_script edge ECHO_SECS="${ECHO_SECS:-5}" ECHO_RUNS="${ECHO_RUNS:-3}" CONNECT_SECS="${CONNECT_SECS:-3}" ;;
        functions) run_script functions RUNS="${RUNS:-3}" SECS="${SECS:-5}" LOW_CONNS="${LOW_CONNS:-0}" ;;
        lambda) run_script lambda RUNS="${RUNS:-3}" SECS="${SECS:-5}" LAT_RUNS="${LAT_RUNS:-3}" COLD_REPS="${COLD_REPS:-3}" ;;
        fanout) run_script fanout COUNTS="${COUNTS:-15000}" SECS="${SECS:-5}" RUNS="${RUNS:-3}" ;;
        cluster) run_script cluster DIRECT_RUNS="${DIRECT_RUNS:-3}" FAN_SECS="${FAN_SECS:-5}" FAN_RUNS="${FAN_RUNS:-2}" ;;
        *) run_script "$s" ;;
    esac
done

TOTAL=$(($(date +%s) - T0))
printf '{"started_at": %s, "load_at_start": "%s", "load_at_end": "%s", "total_s": %s, "build_s": %s, "command": "bench/report.sh"}\n' \
    "$T0" "$(python3 -c 'import json;print(json.load(open("'"$OUT"'/meta.json"))["load_at_start"])')" \
    "$(cut -d' ' -f1-3 /proc/loadavg)" "$TOTAL" "$BUILD_SECS" >"$OUT/meta.json"
log "done in $TOTAL s; raw results in $OUT"

if [ "${NO_REPORT:-0}" != 1 ]; then
    PY="$ROOT/.venv/bin/python"
    [ -x "$PY" ] || PY=python3
    "$PY" bench/report.py --run "$OUT" || log "report.py failed"
fi
