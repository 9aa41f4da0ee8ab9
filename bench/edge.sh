#!/usr/bin/env bash
# Edge benchmark for the switchboard gateway, on loopback only:
#   a. idle memory: gateway RSS before/after N idle WebSocket connections -> KiB/connection
#   b. echo: 100 connections, 64 B text, closed loop, gateway vs ceiling-echo, alternating
#   c. connect rate: TCP + handshake + clean close, per second
# and a markdown table of the figures at the end.
#
# Usage: bench/edge.sh [--ceiling-only]
#   --ceiling-only   run every phase against ceiling-echo alone (no gateway needed)
# Environment knobs (defaults in brackets):
#   IDLE_COUNTS ["5000 10000 15000"]  idle connection counts (each on a fresh server)
#   SETTLE [3]         seconds between the last idle connection opening and the RSS reading
#   ECHO_RUNS [3] ECHO_SECS [10] ECHO_WARMUP [1] ECHO_CONNS [100] ECHO_SIZE [64]
#   CONNECT_RUNS [3] CONNECT_SECS [5] CONNECT_CONCURRENCY [50]
#   CONFIG [examples/echo/switchboard.toml]
#   GATEWAY_BIN [target/release/switchboard]
#   NO_BUILD [0]       1: skip the cargo build (use the binaries in target/release)
# Raw results: target/edge-bench/<timestamp>/{results.jsonl,summary.md,*.log}
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
COMMAND="bench/edge.sh${*:+ $*}"

CEILING_ONLY=0
for arg in "$@"; do
    case "$arg" in
        --ceiling-only) CEILING_ONLY=1 ;;
        -h|--help) sed -n '2,/^set -euo/s/^#\( \|$\)//p' "$0"; exit 0 ;;
        *) echo "edge.sh: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

IDLE_COUNTS="${IDLE_COUNTS:-5000 10000 15000}"
SETTLE="${SETTLE:-3}"
ECHO_RUNS="${ECHO_RUNS:-3}"
ECHO_SECS="${ECHO_SECS:-10}"
ECHO_WARMUP="${ECHO_WARMUP:-1}"
ECHO_CONNS="${ECHO_CONNS:-100}"
ECHO_SIZE="${ECHO_SIZE:-64}"
CONNECT_RUNS="${CONNECT_RUNS:-3}"
CONNECT_SECS="${CONNECT_SECS:-5}"
CONNECT_CONCURRENCY="${CONNECT_CONCURRENCY:-50}"
CONFIG="${CONFIG:-examples/echo/switchboard.toml}"

OUT="$ROOT/target/edge-bench/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"
BIN="$ROOT/target/release"
LOADGEN="$BIN/loadgen"
GATEWAY_BIN="${GATEWAY_BIN:-$BIN/switchboard}"
T0=$(date +%s)
LOAD_AT_START="$(cut -d' ' -f1-3 /proc/loadavg)"

log() { printf '[edge %3ds] %s\n' "$(($(date +%s) - T0))" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Both servers and the load generator inherit this; idle needs ~15,000 fds on each side.
ulimit -n "$(ulimit -Hn)"

PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------
# build

if [ "${NO_BUILD:-0}" != 1 ]; then
    if [ "$CEILING_ONLY" = 1 ]; then
        log "building release: switchboard-bench"
        cargo build --release -p switchboard-bench
    else
        log "building release: switchboard, switchboard-bench"
        cargo build --release -p switchboard -p switchboard-bench
    fi
fi
[ -x "$LOADGEN" ] && [ -x "$BIN/ceiling-echo" ] || die "bench binaries missing in $BIN"
if [ "$CEILING_ONLY" = 0 ]; then
    [ -x "$GATEWAY_BIN" ] || die "$GATEWAY_BIN missing"
    [ -f "$CONFIG" ] || die "gateway config $CONFIG missing"
fi

# ---------------------------------------------------------------------------------------
# servers

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# cpu_ticks PID: user + system CPU time of the process (all threads), in clock ticks.
# (Field 2, the command name, has no spaces for our servers.)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
CLK_TCK="$(getconf CLK_TCK)"

# start_server KIND: starts "gateway" or "ceiling"; sets SERVER_PID and SERVER_URL.
SERVER_N=0
start_server() {
    local kind="$1" i
    SERVER_N=$((SERVER_N + 1))
    local logf="$OUT/$kind-$SERVER_N.log"
    if [ "$kind" = gateway ]; then
        local port mport
        port=$(free_port)
        mport=$(free_port)
        SWITCHBOARD_LIMITS__MAX_CONNECTIONS=20000 "$GATEWAY_BIN" serve --config "$CONFIG" \
            --listen "127.0.0.1:$port" --management-listen "127.0.0.1:$mport" >"$logf" 2>&1 &
        SERVER_PID=$!
        PIDS+=("$SERVER_PID")
        for i in $(seq 1 300); do
            kill -0 "$SERVER_PID" 2>/dev/null || die "gateway exited at start (see $logf)"
            if curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$mport/readyz" 2>/dev/null; then
                SERVER_URL="ws://127.0.0.1:$port/"
                return 0
            fi
            sleep 0.1
        done
        die "gateway not ready after 30 s (see $logf)"
    else
        "$BIN/ceiling-echo" --listen 127.0.0.1:0 >"$logf" 2>&1 &
        SERVER_PID=$!
        PIDS+=("$SERVER_PID")
        for i in $(seq 1 100); do
            local addr
            addr=$(sed -n 's/^listening on //p' "$logf")
            if [ -n "$addr" ]; then
                SERVER_URL="ws://$addr/"
                return 0
            fi
            kill -0 "$SERVER_PID" 2>/dev/null || die "ceiling-echo exited at start (see $logf)"
            sleep 0.1
        done
        die "ceiling-echo did not report its address (see $logf)"
    fi
}

# forget PID: drops PID from the cleanup list once it has been waited for.
forget() {
    local keep=() p
    for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

stop_server() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    forget "$1"
}

# record PHASE TARGET RUN JSON [KEY=NUMBER...]: appends one labelled result line.
record() {
    python3 - "$@" >>"$RESULTS" <<'EOF'
import json, sys
phase, target, run, line = sys.argv[1:5]
r = json.loads(line)
r.update(phase=phase, target=target, run=int(run))
for kv in sys.argv[5:]:
    k, v = kv.split("=", 1)
    r[k] = float(v)
print(json.dumps(r))
EOF
}

# brief JSON FORMAT: one result formatted with python's %-formatting by key.
brief() { python3 -c 'import json, sys; print(sys.argv[2] % json.loads(sys.argv[1]))' "$1" "$2"; }

# run_loadgen NAME ARGS...: runs loadgen, its stderr to NAME.log; prints its JSON line.
run_loadgen() {
    local name="$1"
    shift
    local line
    line=$("$LOADGEN" "$@" 2>"$OUT/$name.log" | tail -n 1) || true
    [ -n "$line" ] || die "loadgen $* failed (see $OUT/$name.log): $(tail -n 3 "$OUT/$name.log")"
    echo "$line"
}

# ---------------------------------------------------------------------------------------
# a. idle memory

# idle_round KIND N: fresh server, RSS before, N idle connections, settle, RSS after.
idle_round() {
    local kind="$1" n="$2" name="idle-$1-$2" i
    start_server "$kind"
    local pid="$SERVER_PID" url="$SERVER_URL"
    sleep 1
    local before after
    before=$(rss_kib "$pid")
    local fifo="$OUT/$name.fifo"
    mkfifo "$fifo"
    "$LOADGEN" idle --url "$url" --connections "$n" --max-hold 300 \
        <"$fifo" >"$OUT/$name.json" 2>"$OUT/$name.log" &
    local lg=$!
    PIDS+=("$lg")
    exec 3>"$fifo"
    for i in $(seq 1 1200); do
        grep -q '^READY' "$OUT/$name.log" && break
        kill -0 "$lg" 2>/dev/null || break
        sleep 0.1
    done
    grep -q '^READY' "$OUT/$name.log" || { exec 3>&-; die "loadgen idle never got READY (see $OUT/$name.log)"; }
    sleep "$SETTLE"
    after=$(rss_kib "$pid")
    exec 3>&-
    wait "$lg" || true
    forget "$lg"
    rm -f "$fifo"
    local line
    line=$(tail -n 1 "$OUT/$name.json")
    [ -n "$line" ] || die "loadgen idle printed no result (see $OUT/$name.log)"
    local opened
    opened=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["opened"])' "$line")
    [ "$opened" = "$n" ] || log "warning: only $opened/$n idle connections opened against $kind"
    local per
    per=$(python3 -c 'import sys; b, a, n = map(float, sys.argv[1:]); print(round((a - b) / n, 2))' "$before" "$after" "$opened")
    log "idle $kind: $opened connections, RSS $before -> $after KiB = $per KiB/connection"
    record idle "$kind" 1 "$line" rss_before_kib="$before" rss_after_kib="$after" kib_per_conn="$per"
    stop_server "$pid"
}

if [ "$CEILING_ONLY" = 1 ]; then
    for n in $IDLE_COUNTS; do idle_round ceiling "$n"; done
else
    for n in $IDLE_COUNTS; do idle_round gateway "$n"; done
    # Reference point: the ceiling server at the largest count.
    idle_round ceiling "$(echo "$IDLE_COUNTS" | tr ' ' '\n' | sort -n | tail -n 1)"
fi

# ---------------------------------------------------------------------------------------
# b. echo and c. connect rate (one long-lived server of each kind)

declare -A URL SPID
start_server ceiling
URL[ceiling]="$SERVER_URL"
SPID[ceiling]="$SERVER_PID"
TARGETS=(ceiling)
if [ "$CEILING_ONLY" = 0 ]; then
    start_server gateway
    URL[gateway]="$SERVER_URL"
    SPID[gateway]="$SERVER_PID"
    TARGETS=(gateway ceiling)
fi

for run in $(seq 1 "$ECHO_RUNS"); do
    for kind in "${TARGETS[@]}"; do
        c0=$(cpu_ticks "${SPID[$kind]}")
        line=$(run_loadgen "echo-$kind-$run" echo --url "${URL[$kind]}" --connections "$ECHO_CONNS" \
            --size "$ECHO_SIZE" --duration "$ECHO_SECS" --warmup "$ECHO_WARMUP")
        c1=$(cpu_ticks "${SPID[$kind]}")
        record echo "$kind" "$run" "$line" server_cpu_s="$(python3 -c "print(($c1 - $c0) / $CLK_TCK)")"
        log "echo $kind run $run: $(brief "$line" '%(msgs_per_s).0f msgs/s, p50 %(p50_us)d us, p99 %(p99_us)d us, %(errors)d errors')"
    done
done

for run in $(seq 1 "$CONNECT_RUNS"); do
    for kind in "${TARGETS[@]}"; do
        c0=$(cpu_ticks "${SPID[$kind]}")
        line=$(run_loadgen "connect-$kind-$run" connect-rate --url "${URL[$kind]}" \
            --concurrency "$CONNECT_CONCURRENCY" --duration "$CONNECT_SECS")
        c1=$(cpu_ticks "${SPID[$kind]}")
        record connect "$kind" "$run" "$line" server_cpu_s="$(python3 -c "print(($c1 - $c0) / $CLK_TCK)")"
        log "connect-rate $kind run $run: $(brief "$line" '%(conns_per_s).0f conn/s, handshake p50 %(handshake_p50_us)d us, p99 %(handshake_p99_us)d us, %(errors)d errors')"
    done
done

# ---------------------------------------------------------------------------------------
# summary

python3 - "$RESULTS" "$COMMAND" "$(nproc)" "$(date -u '+%Y-%m-%d %H:%M UTC')" \
    "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')" "$(($(date +%s) - T0))" \
    "$ECHO_CONNS" "$ECHO_SIZE" "$ECHO_SECS" "$CONNECT_CONCURRENCY" "$CONNECT_SECS" "$LOAD_AT_START" \
    >"$OUT/summary.md" <<'EOF'
import json, statistics, sys
path, command, nproc, date, commit, took, conns, size, esecs, conc, csecs, load = sys.argv[1:]
rows = [json.loads(l) for l in open(path) if l.strip()]

def pick(phase, target):
    return [r for r in rows if r["phase"] == phase and r["target"] == target]

def med(rs, key):
    return statistics.median(r[key] for r in rs) if rs else None

def fmt(x, digits=0):
    if x is None:
        return "–"
    return f"{x:,.{digits}f}"

for r in rows:
    if r["phase"] == "echo" and r.get("messages_total"):
        r["cpu_us_per_msg"] = 1e6 * r["server_cpu_s"] / r["messages_total"]
    if r["phase"] == "connect" and r.get("connections"):
        r["cpu_us_per_conn"] = 1e6 * r["server_cpu_s"] / r["connections"]

def ratio(a, b):
    return f"{100 * a / b:.1f} %" if a is not None and b else "–"

out = []
out.append(f"## Edge benchmark — {date}")
out.append("")
out.append(f"- command: `{command}` (commit {commit}, took {took} s)")
out.append(f"- machine: `nproc` = {nproc}; load average at start {load}; servers and load generator share it, loopback only")
out.append("")
out.append("| figure | gateway | ceiling-echo | gateway / ceiling |")
out.append("| --- | ---: | ---: | ---: |")
for n in sorted({r["requested"] for r in rows if r["phase"] == "idle"}):
    g = [r for r in pick("idle", "gateway") if r["requested"] == n]
    c = [r for r in pick("idle", "ceiling") if r["requested"] == n]
    gv, cv = med(g, "kib_per_conn"), med(c, "kib_per_conn")
    warn = ""
    if any(r["opened"] != n for r in g + c):
        warn = " ⚠ not all opened"
    out.append(f"| idle memory, KiB per connection at {n:,}{warn} | {fmt(gv, 2)} | {fmt(cv, 2)} | {ratio(gv, cv)} |")
g, c = pick("echo", "gateway"), pick("echo", "ceiling")
runs = max(len(g), len(c))
label = f"echo msgs/s ({conns} conns, {size} B, {esecs} s, median of {runs})"
out.append(f"| {label} | {fmt(med(g, 'msgs_per_s'))} | {fmt(med(c, 'msgs_per_s'))} | {ratio(med(g, 'msgs_per_s'), med(c, 'msgs_per_s'))} |")
pairs = sorted(
    x["msgs_per_s"] / y["msgs_per_s"]
    for x in g for y in c if x["run"] == y["run"] and y["msgs_per_s"]
)
if pairs:
    spread = f"{100 * pairs[0]:.1f}–{100 * pairs[-1]:.1f} %"
    out.append(f"| echo gateway/ceiling, median of back-to-back pairs (range {spread}) | | | {100 * statistics.median(pairs):.1f} % |")
out.append(f"| server CPU per echo message, µs (median; lower is better) | {fmt(med(g, 'cpu_us_per_msg'), 2)} | {fmt(med(c, 'cpu_us_per_msg'), 2)} | {ratio(med(g, 'cpu_us_per_msg'), med(c, 'cpu_us_per_msg'))} |")
out.append(f"| echo latency p50, µs (median) | {fmt(med(g, 'p50_us'))} | {fmt(med(c, 'p50_us'))} | |")
out.append(f"| echo latency p99, µs (median) | {fmt(med(g, 'p99_us'))} | {fmt(med(c, 'p99_us'))} | |")
out.append(f"| echo errors (all runs) | {sum(r['errors'] for r in g) if g else '–'} | {sum(r['errors'] for r in c) if c else '–'} | |")
g, c = pick("connect", "gateway"), pick("connect", "ceiling")
runs = max(len(g), len(c))
out.append(f"| connections/s ({conc} workers, {csecs} s, median of {runs}) | {fmt(med(g, 'conns_per_s'))} | {fmt(med(c, 'conns_per_s'))} | {ratio(med(g, 'conns_per_s'), med(c, 'conns_per_s'))} |")
out.append(f"| server CPU per connection, µs (median; lower is better) | {fmt(med(g, 'cpu_us_per_conn'), 1)} | {fmt(med(c, 'cpu_us_per_conn'), 1)} | {ratio(med(g, 'cpu_us_per_conn'), med(c, 'cpu_us_per_conn'))} |")
out.append(f"| handshake p50, µs (median) | {fmt(med(g, 'handshake_p50_us'))} | {fmt(med(c, 'handshake_p50_us'))} | |")
out.append(f"| handshake p99, µs (median) | {fmt(med(g, 'handshake_p99_us'))} | {fmt(med(c, 'handshake_p99_us'))} | |")
out.append(f"| connect errors (all runs) | {sum(r['errors'] for r in g) if g else '–'} | {sum(r['errors'] for r in c) if c else '–'} | |")
print("\n".join(out))
EOF
log "done; raw results in ${OUT#"$ROOT"/}"
echo
cat "$OUT/summary.md"
