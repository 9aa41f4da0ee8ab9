#!/usr/bin/env bash
# Lambda-function benchmark, on loopback only: switchboard running a `kind = "lambda"`
# function in its own worker processes (Lambda Runtime API, bundled bootstraps), side by
# side with serverless-offline (npm) running the equivalent Node handler.
#
#   client -> gateway -> runtime API -> worker (handler returns at once) -> client
#
# Handlers (all answer `{statusCode: 200, body: event.body}` at once; the routes are
# two-way, so the body goes back to the client and loadgen checks it byte for byte):
#   bench/lambda/python/app.py   switchboard, runtime = "python"
#   bench/lambda/node/app.mjs    switchboard, runtime = "node"
#   bench/lambda/sls/handler.js  serverless-offline (the same code as app.mjs); its
#       $default route has `routeResponseSelectionExpression: $default`, which is what
#       makes serverless-offline send the returned body back (AWS: a route response, as
#       switchboard's two_way); it also needs a $connect route, else it refuses every
#       handshake (502), so handler.js has a trivial `connect` (invoked once per
#       connection, outside the measured messages).
#
# Phases (the systems alternate within each phase, order rotated every round):
# 1. Cold start: a gateway with the Python function and min_warm = 0 is started (COLD_REPS
#    times, a fresh gateway each time); one connection sends one message; the time from
#    sending it to its answer includes spawning python3 and importing the handler. The
#    same for Node (informational), and for python3 through a wrapper when `python3` on
#    PATH is one (a pyenv shim here). Also the first message on each freshly started
#    serverless-offline (its worker thread start), informational.
# 2. Warm overhead: 1 connection, closed loop, LAT_SECS per run, LAT_RUNS rounds, through
#    the builtin echo (the bare WebSocket round trip), the Python lambda, the Node lambda
#    and serverless-offline. Added overhead = lambda p50 - builtin p50 (median over
#    rounds). The handler's own time is measured apart (timeit on the handler function).
# 3. Throughput: CONNS connections, SIZE bytes, SECS per run after WARMUP, RUNS rounds, for
#    switchboard + Node lambda, switchboard + Python lambda, serverless-offline. An
#    unrecorded PRIME_SECS run before (serverless-offline grows its pool of worker threads
#    on demand; with SLS_FRESH=1 it is restarted and primed before each of its runs; the
#    gateways are primed once). Reports msgs/s median/min/max, p50/p99 medians, CPU per
#    message of each system's processes (gateway + workers; serverless' node process), and
#    the ratio switchboard(Node) / serverless-offline.
#
# Usage: bench/lambda.sh
# Environment knobs (defaults in brackets):
#   WORKERS [4]     max_concurrency (and min_warm) of the warm lambda functions
#   RUNS [3] SECS [10] WARMUP [1] CONNS [50] SIZE [64] PRIME_SECS [5]   throughput phase
#   LAT_RUNS [5] LAT_SECS [5]                                            warm-overhead phase
#   COLD_REPS [5]                                                        cold-start phase
#   SLS_IN_PROCESS [0]  1: serverless-offline --useInProcess (handlers on its main thread
#                   instead of its default worker threads)
#   SLS_FRESH [1]   1: a fresh serverless offline for each of its measured runs (it slows
#                   down the longer it runs: RSS, CPU per message and latency grow run after
#                   run), so it is measured at its best; 0: one instance for everything
#   BUDGET [420]    seconds for everything after the build/install; runs that would not
#                   fit are skipped with a warning
#   NO_BUILD [0]    1: skip the cargo build (use the binaries in target/release)
# Needs: cargo, python3, node 20 + npm (serverless 3.40.0 and serverless-offline 13.9.0
# are installed with `npm ci` into bench/lambda/sls/node_modules from the lock file; 14.x
# needs serverless 4, which wants an account), curl.
# Raw results: target/lambda-bench/<timestamp>/{results.jsonl,summary.md,*.log,*.toml}
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_args "$@"

WORKERS="${WORKERS:-4}"
RUNS="${RUNS:-3}"
SECS="${SECS:-10}"
WARMUP="${WARMUP:-1}"
CONNS="${CONNS:-50}"
SIZE="${SIZE:-64}"
PRIME_SECS="${PRIME_SECS:-5}"
LAT_RUNS="${LAT_RUNS:-5}"
LAT_SECS="${LAT_SECS:-5}"
COLD_REPS="${COLD_REPS:-5}"
SLS_IN_PROCESS="${SLS_IN_PROCESS:-0}"
SLS_FRESH="${SLS_FRESH:-1}"
BUDGET="${BUDGET:-420}"

SLS_DIR="$ROOT/bench/lambda/sls"

bench_init

# start_time PID: the process's start time (clock ticks since boot), to tell it from a
# later process that got the same pid.
start_time() {
    local line
    local -a f
    read -r line 2>/dev/null <"/proc/$1/stat" || return 0
    read -r -a f <<<"${line##*) }"
    echo "${f[19]}"
}

# stop_pid PID: bench_stop (SIGTERM: a gateway stops its own workers), then SIGKILL to
# whichever of its direct children (workers) is still the same process.
stop_pid() {
    local child
    local -a kids=()
    for child in $(pgrep -P "$1" 2>/dev/null || true); do
        kids+=("$child:$(start_time "$child")")
    done
    bench_stop "$1"
    for child in "${kids[@]}"; do
        if [ -n "${child#*:}" ] && [ "$(start_time "${child%%:*}")" = "${child#*:}" ]; then
            kill -KILL "${child%%:*}" 2>/dev/null || true
        fi
    done
}
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        stop_pid "$pid"
    done
}
trap 'cleanup 2>/dev/null' EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------
# build and install

bench_build
bench_need switchboard loadgen
for tool in node npm python3 curl; do
    command -v "$tool" >/dev/null || die "$tool not found"
done

# npm ci when node_modules is missing or older than the lock file.
if [ ! -f "$SLS_DIR/node_modules/.package-lock.json" ] ||
    [ "$SLS_DIR/package-lock.json" -nt "$SLS_DIR/node_modules/.package-lock.json" ]; then
    log "installing serverless + serverless-offline (npm ci in bench/lambda/sls)"
    (cd "$SLS_DIR" && npm ci --no-audit --no-fund >"$OUT/npm.log" 2>&1) ||
        die "npm ci failed (see $OUT/npm.log)"
fi
SLS_VERSION="$(node -p 'require(process.argv[1]).version' "$SLS_DIR/node_modules/serverless/package.json")"
SLSO_VERSION="$(node -p 'require(process.argv[1]).version' "$SLS_DIR/node_modules/serverless-offline/package.json")"
NODE_VERSION="$(node --version)"
PY_VERSION="$(python3 -c 'import sys; print(sys.version.split()[0])')"

# The time budget covers everything from here on.
T1=$(date +%s)
LOAD_AT_START="$(cut -d' ' -f1-3 /proc/loadavg)"
log "load average at start: $LOAD_AT_START ($(nproc) cores)"

# ---------------------------------------------------------------------------------------
# helpers

# cpu_ticks PID...: user + system CPU of the processes (all their threads) and of their
# direct children (a gateway's workers), in clock ticks.
cpu_ticks() {
    local p
    # shellcheck disable=SC2046 # one pid a word
    bench_cpu_ticks "$@" $(for p in "$@"; do pgrep -P "$p" 2>/dev/null || true; done)
}

# fits SECONDS: whether that much more fits in the budget.
fits() {
    [ $(($(date +%s) - T1 + $1)) -le "$BUDGET" ]
}
SKIPPED=0

# function_toml KIND: the [functions.fn] table of a gateway.
function_toml() {
    case "$1" in
        builtin) printf 'kind = "builtin"\nname = "echo"\n' ;;
        python|node)
            local dir="$ROOT/bench/lambda/$1" warm="${2:-$WORKERS}" handler=app.handler
            printf 'kind = "lambda"\nruntime = "%s"\nhandler = "%s"\ndir = "%s"\nmax_concurrency = %s\nmin_warm = %s\ntimeout_ms = 10000\n' \
                "$1" "$handler" "$dir" "$WORKERS" "$warm" ;;
    esac
}

# start_gateway NAME KIND [MIN_WARM]: writes NAME.toml, starts switchboard, waits for
# /readyz; sets GW_PID and GW_PORT.
start_gateway() {
    local name="$1" kind="$2" warm="${3:-$WORKERS}"
    bench_gateway_toml "$OUT/$name.toml" <<EOF
[management]
auth = "none"

[functions.fn]
$(function_toml "$kind" "$warm")

[routes."\$default"]
function = "fn"
two_way = true
EOF
    bench_start_gateway "$name" "$OUT/$name.toml" PATH="${GW_ENV_PATH:-$GW_PATH}"
}

# run_loadgen NAME URL CONNS SECS WARMUP: one loadgen echo run; its JSON line in $LINE.
run_loadgen() {
    local name="$1" url="$2" conns="$3" secs="$4" warmup="$5" limit
    limit=$(python3 -c "import math; print(math.ceil($secs + $warmup) + 40)")
    bench_loadgen "$name" "$limit" echo --url "$url" --connections "$conns" --size "$SIZE" \
        --duration "$secs" --warmup "$warmup"
    [ -n "$LINE" ] || die "loadgen failed ($name; see $OUT/$name.log): $(tail -n 3 "$OUT/$name.log")"
}

# record PHASE SYSTEM RUN [CPU_TICKS WALL_S [EXTRA_JSON]]: appends $LINE, tagged, to
# results.jsonl.
record() {
    local extra="${6:-}"
    [ -n "$extra" ] || extra='{}'
    python3 - "$1" "$2" "$3" "${4:-0}" "${5:-0}" "$extra" "$LINE" "$CLK_TCK" \
        "$(cut -d' ' -f1 /proc/loadavg)" >>"$RESULTS" <<'EOF'
import json, sys
phase, system, run, ticks, wall, extra, line, tck, load = sys.argv[1:]
r = json.loads(line)
r.update(phase=phase, system=system, run=int(run), cpu_s=int(ticks) / float(tck),
         wall_s=float(wall), load1=float(load))
r.update(json.loads(extra))
if "self_cpu_s" in r:  # passed in ticks
    r["self_cpu_s"] /= float(tck)
print(json.dumps(r))
EOF
    local r
    r=$(tail -n 1 "$RESULTS")
    python3 -c '
import json, sys
r = json.loads(sys.argv[1]); n = max(r["messages_total"], 1)
cpu = " CPU %.1f us/msg" % (1e6 * r["cpu_s"] / n) if r["cpu_s"] else ""
print("%s %s run %d: %d conns, %.0f msgs/s, p50 %d us, p99 %d us, max %d us, %d errors%s (load %.2f)" % (
    r["phase"], r["system"], r["run"], r["connections"], r["msgs_per_s"], r["p50_us"], r["p99_us"],
    r["max_us"], r["errors"], cpu, r["load1"]))' "$r" | while read -r l; do log "$l"; done
}

# ---------------------------------------------------------------------------------------
# 1. cold start: a fresh gateway per repetition, min_warm = 0, one message

# The handler's own time, apart from everything around it (timeit on the function).
HANDLER_US=$(cd "$ROOT/bench/lambda/python" && python3 -c '
import timeit, app
ev = {"body": "x" * 64, "requestContext": {"routeKey": "$default"}}
n = 200000
print("%.3f" % (min(timeit.repeat(lambda: app.handler(ev, None), number=n, repeat=5)) / n * 1e6))')
log "python handler's own time (timeit): $HANDLER_US us per call"

# Which python3 the gateway starts: `python3` from PATH. When that is a wrapper (a pyenv
# shim is a bash script that runs several more before exec'ing the interpreter, ~40 ms
# here), every gateway gets the real interpreter's directory first in PATH, as a plain
# install would have; the cold start through the wrapper is measured too (informational).
PY_EXE="$(python3 -c 'import sys; print(sys.executable)')"
PY_ON_PATH="$(command -v python3)"
GW_PATH="$PATH"
PY_WRAPPED=0
if [ "$(readlink -f "$PY_ON_PATH")" != "$(readlink -f "$PY_EXE")" ]; then
    PY_WRAPPED=1
    GW_PATH="$(dirname "$PY_EXE"):$PATH"
    log "python3 on PATH ($PY_ON_PATH) is a wrapper of $PY_EXE: gateways get $(dirname "$PY_EXE") first in PATH"
fi

# start_ms PATH CMD...: median wall time of 9 starts of CMD, in ms, with that PATH (the
# interpreter alone: the floor under a cold start).
start_ms() {
    python3 - "$@" <<'EOF'
import os, statistics, subprocess, sys, time
env = dict(os.environ, PATH=sys.argv[1])
v = []
for _ in range(9):
    a = time.perf_counter()
    subprocess.run(sys.argv[2:], env=env, check=True, stdout=subprocess.DEVNULL)
    v.append((time.perf_counter() - a) * 1e3)
print("%.1f" % statistics.median(v))
EOF
}
PY_START_MS=$(start_ms "$GW_PATH" python3 -c pass)
NODE_START_MS=$(start_ms "$GW_PATH" node -e 0)
PY_WRAPPED_START_MS=""
[ "$PY_WRAPPED" = 1 ] && PY_WRAPPED_START_MS=$(start_ms "$PATH" python3 -c pass)
log "interpreter start alone: python3 $PY_START_MS ms, node $NODE_START_MS ms${PY_WRAPPED_START_MS:+, python3 through $PY_ON_PATH $PY_WRAPPED_START_MS ms}"

COLD_KINDS=(python node)
[ "$PY_WRAPPED" = 1 ] && COLD_KINDS+=(python-wrapped)
for rep in $(seq 1 "$COLD_REPS"); do
    for variant in "${COLD_KINDS[@]}"; do
        fits 20 || { log "warning: budget reached; skipping cold start $variant $rep"; SKIPPED=$((SKIPPED + 1)); continue; }
        kind=${variant%-wrapped}
        if [ "$variant" = python-wrapped ]; then
            GW_ENV_PATH="$PATH" start_gateway "cold-$variant" "$kind" 0
        else
            start_gateway "cold-$variant" "$kind" 0
        fi
        n_workers=$( (pgrep -P "$GW_PID" || true) | wc -l)
        [ "$n_workers" = 0 ] || die "cold-$variant: $n_workers workers running before the first message"
        # One connection, one message: --duration 0.001 ends the loop after the first
        # answer, so p50 = max = that message's round trip. The handshake is not counted
        # (no $connect route: it invokes nothing).
        run_loadgen "cold-$variant-$rep" "ws://127.0.0.1:$GW_PORT/" 1 0.001 0
        # The gateway's own account: worker process spawned -> its first `next` poll.
        init_ms=$(sed -n 's/.*worker ready.* init_ms=\([0-9]*\).*/\1/p' "$OUT/cold-$variant.log" | tail -n 1)
        record cold "switchboard-$variant" "$rep" 0 0 "{\"init_ms\": ${init_ms:-null}}"
        stop_pid "$GW_PID"
    done
done

# ---------------------------------------------------------------------------------------
# start the systems for the warm phases

declare -A URL PID_OF
start_gateway warm-builtin builtin
URL[builtin]="ws://127.0.0.1:$GW_PORT/"; PID_OF[builtin]=$GW_PID
start_gateway warm-python python
URL[switchboard-python]="ws://127.0.0.1:$GW_PORT/"; PID_OF[switchboard-python]=$GW_PID
start_gateway warm-node node
URL[switchboard-node]="ws://127.0.0.1:$GW_PORT/"; PID_OF[switchboard-node]=$GW_PID
log "switchboard gateways ready (builtin echo, python and node lambdas with $WORKERS workers each)"

SLS_STARTS=0
# start_sls: starts serverless offline on fresh ports, waits until it listens, then
# sends one message on one connection: its echo function's first invocation (worker
# thread + module load), recorded as a cold start (informational).
start_sls() {
    local port
    port=$(bench_free_port)
    local -a flags=(--host 127.0.0.1 --websocketPort "$port" --httpPort "$(bench_free_port)" --lambdaPort "$(bench_free_port)")
    [ "$SLS_IN_PROCESS" = 1 ] && flags+=(--useInProcess)
    SLS_STARTS=$((SLS_STARTS + 1))
    # The framework's own bin (what `npx serverless` runs), started directly so its pid is
    # the server's. No telemetry, update or notification calls.
    (cd "$SLS_DIR" && exec env SLS_TELEMETRY_DISABLED=1 SLS_TRACKING_DISABLED=1 SLS_NOTIFICATIONS_MODE=off \
        SLS_DEPRECATION_DISABLE='*' SLS_INTERACTIVE_SETUP_DISABLE=1 \
        node node_modules/serverless/bin/serverless.js offline "${flags[@]}") >"$OUT/sls-$SLS_STARTS.log" 2>&1 &
    SLS_PID=$!
    PIDS+=("$SLS_PID")
    # A plain GET on the WebSocket port answers 426 once it listens.
    bench_wait_ready "$SLS_PID" "http://127.0.0.1:$port/" "serverless offline" "$OUT/sls-$SLS_STARTS.log" 30 426
    URL[serverless-offline]="ws://127.0.0.1:$port/"
    PID_OF[serverless-offline]=$SLS_PID
    run_loadgen "cold-sls-$SLS_STARTS" "${URL[serverless-offline]}" 1 0.001 0
    record cold serverless-offline "$SLS_STARTS"
}

# fresh_sls: a new serverless offline for the next measured run (SLS_FRESH=1), since it
# slows down the longer it runs (its RSS and latency grow run after run).
fresh_sls() {
    if [ "$SLS_FRESH" = 1 ]; then
        stop_pid "$SLS_PID"
        start_sls
    fi
}

start_sls
log "serverless $SLS_VERSION + serverless-offline $SLSO_VERSION ready on ${URL[serverless-offline]} ($(($(date +%s) - T1)) s into the budget)"

# ---------------------------------------------------------------------------------------
# 2. warm overhead: 1 connection, closed loop

# measure PHASE NAME SYSTEM RUN CONNS SECS WARMUP: one loadgen run, recorded with the CPU of
# the system's process and its children (workers), and of that process alone.
measure() {
    local phase="$1" name="$2" sys="$3" run="$4" c0 g0 w0 c1 g1 w1
    c0=$(cpu_ticks "${PID_OF[$sys]}"); g0=$(bench_cpu_ticks "${PID_OF[$sys]}"); w0=$(date +%s.%N)
    run_loadgen "$name" "${URL[$sys]}" "$5" "$6" "$7"
    c1=$(cpu_ticks "${PID_OF[$sys]}"); g1=$(bench_cpu_ticks "${PID_OF[$sys]}"); w1=$(date +%s.%N)
    record "$phase" "$sys" "$run" $((c1 - c0)) "$(python3 -c "print($w1 - $w0)")" \
        "{\"self_cpu_s\": $((g1 - g0))}"
}

LAT_SYSTEMS=(builtin switchboard-python switchboard-node serverless-offline)
for run in $(seq 1 "$LAT_RUNS"); do
    for sys in $(bench_rotate $((run - 1)) "${LAT_SYSTEMS[@]}"); do
        if fits $((LAT_SECS + 1 + 10)); then
            # Loadgen's 1 s warmup covers serverless-offline's worker thread at 1 connection.
            [ "$sys" = serverless-offline ] && [ "$run" -gt 1 ] && fresh_sls
            measure latency "lat-$sys-$run" "$sys" "$run" 1 "$LAT_SECS" 1
        else
            log "warning: budget reached; skipping latency $sys run $run"; SKIPPED=$((SKIPPED + 1))
        fi
    done
done

# ---------------------------------------------------------------------------------------
# 3. throughput at CONNS connections

# prime SYSTEM: an unrecorded run at CONNS connections (serverless-offline grows its pool
# of worker threads on demand, one per invocation in flight; the gateways' workers are
# already warm).
prime() {
    if fits $((PRIME_SECS + 10)); then
        run_loadgen "prime-$1-$SLS_STARTS" "${URL[$1]}" "$CONNS" "$PRIME_SECS" 0
        record prime "$1" 0
    fi
}
TP_SYSTEMS=(switchboard-node switchboard-python serverless-offline)
for sys in "${TP_SYSTEMS[@]}"; do
    [ "$sys" = serverless-offline ] && [ "$SLS_FRESH" = 1 ] && continue
    prime "$sys"
done
for run in $(seq 1 "$RUNS"); do
    for sys in $(bench_rotate $((run - 1)) "${TP_SYSTEMS[@]}"); do
        if fits $((SECS + WARMUP + 10 + PRIME_SECS)); then
            if [ "$sys" = serverless-offline ] && [ "$SLS_FRESH" = 1 ]; then
                fresh_sls
                prime "$sys"
            fi
            measure throughput "tp-$sys-$run" "$sys" "$run" "$CONNS" "$SECS" "$WARMUP"
        else
            log "warning: budget reached; skipping throughput $sys run $run"; SKIPPED=$((SKIPPED + 1))
        fi
    done
done

LOAD_AT_END="$(cut -d' ' -f1-3 /proc/loadavg)"
cleanup
PIDS=()

# ---------------------------------------------------------------------------------------
# summary

CMD="WORKERS=$WORKERS RUNS=$RUNS SECS=$SECS WARMUP=$WARMUP CONNS=$CONNS SIZE=$SIZE LAT_RUNS=$LAT_RUNS LAT_SECS=$LAT_SECS COLD_REPS=$COLD_REPS SLS_IN_PROCESS=$SLS_IN_PROCESS SLS_FRESH=$SLS_FRESH bench/lambda.sh"
python3 - "$RESULTS" "$(nproc)" "$(date -u '+%Y-%m-%d %H:%M UTC')" \
    "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')" "$(($(date +%s) - T1))" \
    "$LOAD_AT_START" "$LOAD_AT_END" "$CMD" "$HANDLER_US" "$WORKERS" "$CONNS" "$SIZE" "$SECS" \
    "$SLS_VERSION" "$SLSO_VERSION" "$NODE_VERSION" "$PY_VERSION" "$SKIPPED" "$SLS_IN_PROCESS" \
    "${OUT#"$ROOT"/}" "$PY_START_MS" "$NODE_START_MS" "$PY_WRAPPED_START_MS" "$PY_ON_PATH" "$PY_EXE" "$SLS_FRESH" \
    >"$OUT/summary.md" <<'EOF'
import json, statistics, sys
(path, nproc, date, commit, took, load0, load1, cmd, handler_us, workers, conns, size, secs,
 slsv, slsov, nodev, pyv, skipped, inproc, outdir, py_start, node_start, py_wrapped_start,
 py_on_path, py_exe, fresh) = sys.argv[1:]
rows = [json.loads(l) for l in open(path) if l.strip()]
med = statistics.median

def pick(phase, system):
    return [r for r in rows if r["phase"] == phase and r["system"] == system]

def cpu_cols(system, rs):
    """CPU µs per echoed message: all the system's processes, and the gateway alone."""
    n = lambda r: max(r["messages_total"], 1)
    cpu = "%.0f" % med([1e6 * r["cpu_s"] / n(r) for r in rs])
    if system == "serverless-offline":
        return cpu, "–"
    return cpu, "%.0f" % med([1e6 * r.get("self_cpu_s", 0) / n(r) for r in rs])

def ms(us):
    return "%.2f" % (us / 1e3)

out = []
out.append("# Lambda functions: switchboard vs serverless-offline")
out.append("")
out.append("| | |")
out.append("| --- | --- |")
out.append(f"| date | {date} (commit {commit}) |")
out.append(f"| machine | `nproc` = {nproc}; load average (1, 5, 15 min) {load0} at start, {load1} at end |")
out.append(f"| command | `{cmd}` |")
out.append(f"| versions | python {pyv}, node {nodev}, serverless {slsv}, serverless-offline {slsov}"
           f" ({'--useInProcess' if inproc == '1' else 'default worker threads'}; "
           f"{'a fresh instance for each of its measured runs' if fresh == '1' else 'one instance for all runs'}) |")
out.append(f"| switchboard lambdas | bundled bootstraps, max_concurrency = min_warm = {workers} |")
out.append(f"| measured part | {took} s; raw results in `{outdir}` |")
out.append("")

errors = sum(r["errors"] for r in rows)
if errors:
    out.append(f"**{errors} errors** (replies missing or not equal to the message): see results.jsonl.")
    out.append("")
if int(skipped):
    out.append(f"**{skipped} runs skipped** for the time budget.")
    out.append("")

# Warm overhead.
out.append("## Warm round trip, 1 connection, closed loop")
out.append("")
out.append("| system | runs | p50 µs (median) | p50 µs (min–max) | p99 µs (median) | msgs/s (median) | CPU µs/msg | of which gateway |")
out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
lat = {}
for s in ["builtin", "switchboard-python", "switchboard-node", "serverless-offline"]:
    rs = pick("latency", s)
    if not rs:
        continue
    p50s = [r["p50_us"] for r in rs]
    lat[s] = rs
    cpu, gw = cpu_cols(s, rs)
    out.append(f"| {s} | {len(rs)} | {med(p50s):.0f} | {min(p50s)}–{max(p50s)} | "
               f"{med([r['p99_us'] for r in rs]):.0f} | {med([r['msgs_per_s'] for r in rs]):.0f} | {cpu} | {gw} |")
out.append("")
if "builtin" in lat:
    base = med([r["p50_us"] for r in lat["builtin"]])
    for s in ["switchboard-python", "switchboard-node"]:
        if s not in lat:
            continue
        added = med([r["p50_us"] for r in lat[s]]) - base
        # Per round (the two measured a few seconds apart).
        per = sorted(a["p50_us"] - b["p50_us"] for a in lat[s] for b in lat["builtin"] if a["run"] == b["run"])
        verdict = ""
        if s == "switchboard-python":
            verdict = " — target ≤ 300 µs: **%s**" % ("met" if added <= 300 else "not met")
        out.append(f"- **{s}: gateway + runtime overhead at p50 = {added:.0f} µs** (p50 − builtin echo p50 "
                   f"{base:.0f} µs; per round {', '.join(str(x) for x in per)}){verdict}")
out.append(f"- Python handler's own time: {handler_us} µs per call (timeit), i.e. negligible.")
out.append("")

# Cold start.
out.append("## Cold start (min_warm = 0): first message to its answer")
out.append("")
out.append("| system | n | median ms | min ms | max ms | all ms | worker init ms (median) | interpreter alone ms |")
out.append("| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |")
floor = {"switchboard-python": py_start, "switchboard-node": node_start,
         "switchboard-python-wrapped": py_wrapped_start}
notes = {"serverless-offline": " (first message after each start; informational)",
         "switchboard-python-wrapped": f" (`python3` = {py_on_path}; informational)"}
for s in ["switchboard-python", "switchboard-node", "switchboard-python-wrapped", "serverless-offline"]:
    rs = pick("cold", s)
    if not rs:
        continue
    v = [r["max_us"] for r in rs]
    inits = [r["init_ms"] for r in rs if r.get("init_ms") is not None]
    note = notes.get(s, "")
    out.append(f"| {s}{note} | {len(v)} | {ms(med(v))} | {ms(min(v))} | {ms(max(v))} | "
               f"{', '.join(ms(x) for x in v)} | {med(inits) if inits else '–'} | {floor.get(s, '–')} |")
out.append("")
out.append("A fresh gateway per repetition, no worker running before the message; the time includes "
           "spawning the interpreter, the bootstrap, importing the handler and the first invocation. "
           "Worker init: the gateway's log, worker spawned → its first `next` poll. Interpreter alone: "
           "`python3 -c pass` / `node -e 0` started the same way (from the gateway's PATH), median of 9."
           + (f" `python3` on this machine's PATH is a wrapper ({py_on_path}); the gateways got the "
              f"interpreter itself ({py_exe}) first in PATH, and the row marked wrapped starts it through "
              f"the wrapper." if py_wrapped_start else ""))
out.append("")

# Throughput.
out.append(f"## Throughput, {conns} connections, {size} B, {secs} s per run, systems alternating")
out.append("")
out.append("| system | runs | msgs/s median | min | max | p50 ms (median) | p99 ms (median) | CPU µs/msg | of which gateway | errors |")
out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
tp = {}
for s in ["switchboard-node", "switchboard-python", "serverless-offline"]:
    rs = pick("throughput", s)
    if not rs:
        continue
    tp[s] = rs
    rate = [r["msgs_per_s"] for r in rs]
    cpu, gw = cpu_cols(s, rs)
    out.append(f"| {s} | {len(rs)} | {med(rate):,.0f} | {min(rate):,.0f} | {max(rate):,.0f} | "
               f"{ms(med([r['p50_us'] for r in rs]))} | {ms(med([r['p99_us'] for r in rs]))} | {cpu} | {gw} | "
               f"{sum(r['errors'] for r in rs)} |")
out.append("")
if "serverless-offline" in tp:
    sls_rate = med([r["msgs_per_s"] for r in tp["serverless-offline"]])
    sls_p50 = med([r["p50_us"] for r in tp["serverless-offline"]])
    for s in ["switchboard-node", "switchboard-python"]:
        if s not in tp:
            continue
        ratio = med([r["msgs_per_s"] for r in tp[s]]) / max(sls_rate, 1e-9)
        p50r = sls_p50 / max(med([r["p50_us"] for r in tp[s]]), 1)
        verdict = ""
        if s == "switchboard-node":
            verdict = " — target ≥ 5×: **%s**" % ("met" if ratio >= 5 else "not met")
        out.append(f"- **{s} / serverless-offline: {ratio:.1f}× the messages/s**, p50 {p50r:.1f}× lower{verdict}")
out.append("")
out.append("CPU µs/msg: user+system CPU of the system's processes during the run (switchboard: gateway "
           "and its worker processes; serverless-offline: its node process, worker threads included) "
           "per echoed message (warmup included); \"of which gateway\": the switchboard process alone. "
           "Load: `load1` of each run is in the table below.")
out.append("")

out.append("<details><summary>every run</summary>")
out.append("")
out.append("| phase | system | run | conns | msgs/s | p50 µs | p99 µs | max µs | CPU s | load1 | errors |")
out.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for r in rows:
    out.append(f"| {r['phase']} | {r['system']} | {r['run']} | {r['connections']} | {r['msgs_per_s']:.0f} | "
               f"{r['p50_us']} | {r['p99_us']} | {r['max_us']} | {r['cpu_s']:.2f} | {r['load1']:.2f} | {r['errors']} |")
out.append("")
out.append("</details>")
print("\n".join(out))
EOF
bench_done
