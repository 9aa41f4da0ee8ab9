#!/usr/bin/env bash
# One-command benchmark report, on loopback only: builds release once, runs an echo matrix
# itself, then every scenario script with NO_BUILD=1 in sequence, then writes
# docs/benchmarks.md and docs/bench/*.png with bench/report.py.
#
#   1. echo matrix (here): the gateway (examples/echo/switchboard.toml) and the peers of
#      MATRIX_PEERS (ceiling-echo: the same WebSocket library with nothing else; Node's ws;
#      Python's websockets; bench/peers/) at MATRIX_CONNS x MATRIX_SIZES, MATRIX_SECS per
#      run after MATRIX_WARMUP, MATRIX_RUNS rounds; within a cell the servers run back to
#      back, the order rotated cell by cell; all servers are up for the whole matrix.
#   2. the scenario scripts of SCENARIOS, each with NO_BUILD=1 and the shortened knobs
#      below: bench/edge.sh (idle memory at 5,000/10,000/15,000, connection rate with and
#      without `$connect`), bench/session.sh (switchboard.v1 vs plain), bench/compression.sh
#      (permessage-deflate on/off, JSON chat), bench/functions.sh (HTTP function vs
#      Pushpin: round trip and connection rate), bench/lambda.sh (managed Python/Node
#      functions vs serverless-offline), bench/fanout.sh (15,000 vs sockudo),
#      bench/cluster.sh (three nodes: cross-node sends, 3 x 5,000 fan-out).
#
# Peers: before the clock starts, every peer missing on the machine is installed once
# (Node ws and Python websockets for bench/peers, matplotlib, Pushpin, redis-server and
# nats-server from Debian, serverless-offline with npm ci, sockudo with `cargo install`: a
# long build the first time); that step is logged and not counted in the budget.
#
# Time: the plan (an estimate per scenario from its knobs) is printed first; a scenario
# whose estimate does not fit in what is left of DEADLINE_SECS is skipped and reported as
# such, so the whole command stays under 20 minutes on this 2-core machine once the peers
# are installed. The estimate assumes an up-to-date or incremental release build.
#
# Usage: bench/report.sh [--plan | --install]
#   --plan     print the planned durations and exit
#   --install  install the missing peers and exit
# Environment knobs (defaults in brackets):
#   MATRIX_CONNS ["1 100 1000"] MATRIX_SIZES ["64 16384"] MATRIX_SECS [2] MATRIX_WARMUP [0.5]
#   MATRIX_RUNS [3] MATRIX_PEERS ["ceiling ws websockets"]
#   SCENARIOS ["edge session compression functions lambda fanout cluster"] (empty: the matrix only)
#   DEADLINE_SECS [1140]  budget of the whole run, build included
#   NO_BUILD [0]          1: skip the cargo build
#   NO_REPORT [0]         1: do not run bench/report.py at the end
#   REPORT_OUT [docs/benchmarks.md]  where bench/report.py writes (charts: bench/ beside it)
#   Each scenario script runs with the shortened knobs of KNOBS below; these override them:
#   edge: IDLE_RUNS [3] SETTLE [2] ECHO_RUNS [0: the matrix covers echo] CONNECT_RUNS [3]
#     CONNECT_SECS [3] (also functions'); session: SESSION_RUNS [3] SESSION_SECS [3]
#     SESSION_IDLE_RUNS [3] SESSION_IDLE_CONNS [5000]; compression: COMPRESSION_RUNS [3]
#     COMPRESSION_SECS [2]; functions: FUNCTIONS_RUNS [5] FUNCTIONS_SECS [4] FUNCTIONS_REF_RUNS [3]
#     FUNCTIONS_TRANSPORT_RUNS [2] (rounds of http/1.1, https/1.1, https/2, h2c); lambda:
#     LAMBDA_RUNS [3] LAMBDA_SECS [4]; fanout: FANOUT_RUNS [3] FANOUT_SECS [5]; cluster:
#     DIRECT_RUNS [3] FAN_RUNS [3] FAN_SECS [5]
# Raw results: target/report-bench/<ts>/{results.jsonl,scenarios.jsonl,meta.json,*.log};
# each scenario script's own under target/<scenario>-bench/<ts>/.
set -uo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PLAN_ONLY=0
INSTALL_ONLY=0
for arg in "$@"; do
    case "$arg" in
        --plan) PLAN_ONLY=1 ;;
        --install) INSTALL_ONLY=1 ;;
        *) bench_arg "$arg" ;;
    esac
done

# The command as run, with the knobs set in the environment.
bench_command "" MATRIX_CONNS MATRIX_SIZES MATRIX_SECS MATRIX_WARMUP MATRIX_RUNS MATRIX_PEERS SCENARIOS \
    DEADLINE_SECS NO_BUILD

MATRIX_CONNS="${MATRIX_CONNS:-1 100 1000}"
MATRIX_SIZES="${MATRIX_SIZES:-64 16384}"
MATRIX_SECS="${MATRIX_SECS:-2}"
MATRIX_WARMUP="${MATRIX_WARMUP:-0.5}"
MATRIX_RUNS="${MATRIX_RUNS:-3}"
MATRIX_PEERS="${MATRIX_PEERS:-ceiling ws websockets}"
SCENARIOS="${SCENARIOS-edge session compression functions lambda fanout cluster}"
DEADLINE_SECS="${DEADLINE_SECS:-1140}"
CONFIG="${CONFIG:-examples/echo/switchboard.toml}"


# ---------------------------------------------------------------------------------------
# each scenario's knobs (shortened unless set by the caller) and planned seconds

declare -A KNOBS=(
    [edge]="IDLE_RUNS=${IDLE_RUNS:-3} SETTLE=${SETTLE:-2} ECHO_RUNS=${ECHO_RUNS:-0} CONNECT_RUNS=${CONNECT_RUNS:-3} CONNECT_SECS=${CONNECT_SECS:-3}"
    [session]="RUNS=${SESSION_RUNS:-3} SECS=${SESSION_SECS:-3} WARMUP=1 IDLE_RUNS=${SESSION_IDLE_RUNS:-3} IDLE_CONNS=${SESSION_IDLE_CONNS:-5000} SETTLE=2"
    [compression]="RUNS=${COMPRESSION_RUNS:-3} SECS=${COMPRESSION_SECS:-2} WARMUP=1 CONNS=100"
    [functions]="RUNS=${FUNCTIONS_RUNS:-5} SECS=${FUNCTIONS_SECS:-4} LOW_CONNS=0 REF_RUNS=${FUNCTIONS_REF_RUNS:-3} CONNECT_RUNS=${CONNECT_RUNS:-3} CONNECT_SECS=${CONNECT_SECS:-3} TRANSPORT_RUNS=${FUNCTIONS_TRANSPORT_RUNS:-2}"
    [lambda]="RUNS=${LAMBDA_RUNS:-3} SECS=${LAMBDA_SECS:-4} LAT_RUNS=3 LAT_SECS=3 PRIME_SECS=3 COLD_REPS=3"
    [fanout]="COUNTS=15000 SECS=${FANOUT_SECS:-5} RUNS=${FANOUT_RUNS:-3} STALLED=0"
    [cluster]="DIRECT_RUNS=${DIRECT_RUNS:-3} DIRECT_SECS=2 FAN_SECS=${FAN_SECS:-5} FAN_RUNS=${FAN_RUNS:-3}"
)

# planned NAME: seconds a scenario is expected to take with its knobs, from per-run
# overheads measured on this machine (2 cores; connection setup, server starts, drains).
planned() {
    python3 - "$1" "${KNOBS[$1]:-}" "$MATRIX_CONNS" "$MATRIX_SIZES" "$MATRIX_SECS" "$MATRIX_WARMUP" \
        "$MATRIX_RUNS" "$MATRIX_PEERS" <<'EOF'
import sys
name, knobs, mconns, msizes, msecs, mwarm, mruns, mpeers = sys.argv[1:]
k = {a: float(b) for a, b in (kv.split("=") for kv in knobs.split())}
if name == "matrix":
    runs = int(mruns) * len(mconns.split()) * len(msizes.split()) * (1 + len(mpeers.split()))
    # 0.6 s per run: connecting and closing (1,000 connections: ~0.5 s, Python peer included).
    t = runs * (float(msecs) + float(mwarm) + 0.6) + 5
elif name == "edge":
    t = 5 + k["IDLE_RUNS"] * 2 * (9 + 3 * k["SETTLE"]) + k["ECHO_RUNS"] * 2 * 12 \
        + k["CONNECT_RUNS"] * 3 * (k["CONNECT_SECS"] + 1.0)
elif name == "session":
    t = 4 + k["RUNS"] * 2 * (k["SECS"] + k["WARMUP"] + 0.7) \
        + k["IDLE_RUNS"] * 2 * (3 + k["IDLE_CONNS"] / 4000 + k["SETTLE"])
elif name == "compression":
    t = 6 + k["RUNS"] * 7 * (k["SECS"] + k["WARMUP"] + 0.7)
elif name == "functions":
    t = 12 + (k["RUNS"] + k["REF_RUNS"]) * 2 * (k["SECS"] + 2.5) + k["CONNECT_RUNS"] * 2 * (k["CONNECT_SECS"] + 1.5) \
        + (4 if k["REF_RUNS"] else 0) \
        + (6 + k["TRANSPORT_RUNS"] * 4 * (k["SECS"] + 2.5) if k["TRANSPORT_RUNS"] else 0)  # 4 variants
elif name == "lambda":
    t = k["COLD_REPS"] * 3 * 3 + 8 + k["LAT_RUNS"] * 4 * (k["LAT_SECS"] + 1.5) \
        + (k["LAT_RUNS"] - 1) * 5 + 2 * k["PRIME_SECS"] + k["RUNS"] * 3 * (k["SECS"] + 2) \
        + k["RUNS"] * (5 + k["PRIME_SECS"]) + 5
elif name == "fanout":
    t = 2 * 12 + k["RUNS"] * 2 * (k["SECS"] + 2) * (2 if k["STALLED"] else 1) + 10
elif name == "cluster":
    t = 2 * (19 + k["DIRECT_RUNS"] * 4 * 0.8 * k["DIRECT_SECS"] + k["FAN_RUNS"] * (k["FAN_SECS"] + 2))
else:
    t = 60
print(round(t))
EOF
}

PLAN_TOTAL=$(planned matrix)
PLAN="matrix ~${PLAN_TOTAL}s"
for s in $SCENARIOS; do
    p=$(planned "$s")
    PLAN_TOTAL=$((PLAN_TOTAL + p))
    PLAN="$PLAN, $s ~${p}s"
done
PLAN_TOTAL=$((PLAN_TOTAL + 15)) # report.py and the gaps between scripts
echo "report.sh plan: $PLAN, report ~15s; total ~${PLAN_TOTAL}s (~$((PLAN_TOTAL / 60)) min) plus the build; budget ${DEADLINE_SECS}s" >&2
[ "$PLAN_ONLY" = 1 ] && exit 0

bench_init
SCEN="$OUT/scenarios.jsonl"
: >"$SCEN"

# Four digits: the report runs for up to DEADLINE_SECS.
log() { printf '[report %4ds] %s\n' "$(($(date +%s) - T0))" "$*" >&2; }
ulimit -n "$(ulimit -Hn)"
trap 'bench_cleanup 2>/dev/null' EXIT

# ---------------------------------------------------------------------------------------
# peers, installed once (not timed)

APT_UPDATED=0
apt_get() {
    export DEBIAN_FRONTEND=noninteractive
    [ "$(id -u)" = 0 ] || die "$* missing; install it as root: apt-get install -y $*"
    if [ "$APT_UPDATED" = 0 ]; then
        apt-get update -qq >>"$OUT/install.log" 2>&1
        APT_UPDATED=1
    fi
    apt-get install -y -qq "$@" >>"$OUT/install.log" 2>&1 || die "apt-get install $* failed (see $OUT/install.log)"
}

install_peers() {
    local mpl
    bench_ensure_peers
    mpl="$(sed -n 's/^MATPLOTLIB_VERSION="\(.*\)"$/\1/p' "$ROOT/scripts/install-deps.sh")"
    if ! "$VENV_PY" -c 'import matplotlib' 2>/dev/null; then
        log "installing matplotlib ${mpl:-?} into .venv (charts)"
        "$VENV_PY" -m pip install -q --disable-pip-version-check "matplotlib${mpl:+==$mpl}" >>"$OUT/install.log" 2>&1 ||
            log "warning: matplotlib could not be installed; the report will have no charts"
    fi
    command -v pushpin >/dev/null || { log "installing pushpin (apt)"; apt_get pushpin; }
    command -v redis-server >/dev/null || { log "installing redis-server (apt)"; apt_get redis-server; }
    command -v nats-server >/dev/null || { log "installing nats-server (apt)"; apt_get nats-server; }
    local sls="$ROOT/bench/lambda/sls"
    if [ ! -f "$sls/node_modules/.package-lock.json" ] || [ "$sls/package-lock.json" -nt "$sls/node_modules/.package-lock.json" ]; then
        log "installing serverless + serverless-offline (npm ci in bench/lambda/sls)"
        (cd "$sls" && npm ci --no-audit --no-fund --loglevel=error >>"$OUT/install.log" 2>&1) || die "npm ci in $sls failed (see $OUT/install.log)"
    fi
    local peers_root="${PEERS_ROOT:-$ROOT/target/peers}"
    if [ ! -x "$peers_root/bin/sockudo" ]; then
        command -v protoc >/dev/null || { log "installing protobuf-compiler (apt, for sockudo)"; apt_get protobuf-compiler; }
        log "installing sockudo into $peers_root (cargo install --locked; a long build, done once)"
        local t
        t=$(date +%s)
        cargo install sockudo --locked --root "$peers_root" >>"$OUT/install.log" 2>&1 ||
            die "cargo install sockudo failed (see $OUT/install.log)"
        echo "$(($(date +%s) - t))" >"$peers_root/install-seconds"
    fi
}

install_peers
INSTALL_SECS=$(($(date +%s) - T0))
[ "$INSTALL_ONLY" = 1 ] && { log "peers installed"; exit 0; }
[ "$INSTALL_SECS" -gt 1 ] && log "peers installed in ${INSTALL_SECS}s (not counted in the budget)"
# The clock of the budget starts here.
T0=$(date +%s)
LOAD_AT_START="$(cut -d' ' -f1-3 /proc/loadavg)"

# scenario NAME STATUS SECS PLANNED COMMAND NOTE [RESULTS_DIR]: one line of scenarios.jsonl
scenario() {
    python3 -c 'import json, sys
a = sys.argv[1:]
print(json.dumps({"scenario": a[0], "status": a[1], "secs": int(a[2]), "planned_s": int(a[3]) if a[3] else None,
                  "command": a[4], "note": a[5], "results": a[6] or None}))' \
        "$1" "$2" "$3" "$4" "$5" "$6" "${7:-}" >>"$SCEN"
}

write_meta() {
    python3 - "$OUT/meta.json" "$T0" "$LOAD_AT_START" "$(cut -d' ' -f1-3 /proc/loadavg)" \
        "$(($(date +%s) - T0))" "${BUILD_SECS:-0}" "$COMMAND" "$PLAN_TOTAL" "$PLAN" "$DEADLINE_SECS" <<'EOF'
import json, sys
path, t0, l0, l1, total, build, cmd, plan_total, plan, deadline = sys.argv[1:]
json.dump({"started_at": int(t0), "load_at_start": l0, "load_at_end": l1, "total_s": int(total),
           "build_s": int(build), "command": cmd, "planned_s": int(plan_total), "plan": plan,
           "deadline_s": int(deadline)}, open(path, "w"))
EOF
}

# ---------------------------------------------------------------------------------------
# build

BUILD_SECS=0
if [ "${NO_BUILD:-0}" != 1 ]; then
    log "cargo build --release -p switchboard -p switchboard-bench"
    if ! cargo build --release -p switchboard -p switchboard-bench >"$OUT/build.log" 2>&1; then
        log "build failed (see $OUT/build.log)"
        scenario build failed "$(($(date +%s) - T0))" "" "cargo build --release -p switchboard -p switchboard-bench" "see $OUT/build.log"
        write_meta
        exit 1
    fi
    BUILD_SECS=$(($(date +%s) - T0))
    scenario build ok "$BUILD_SECS" "" "cargo build --release -p switchboard -p switchboard-bench" ""
fi
[ "$INSTALL_SECS" -gt 1 ] && scenario install ok "$INSTALL_SECS" "" "bench/report.sh --install" "missing peers installed before the timed run (not counted in the total)"
write_meta

# fits NAME PLANNED: whether a step planned to take PLANNED seconds fits in the budget.
fits() {
    [ $(($(date +%s) - T0 + $2 + 15)) -le "$DEADLINE_SECS" ]
}

# ---------------------------------------------------------------------------------------
# echo matrix

echo_matrix() {
    local -A url spid label
    local kind targets=(gateway)
    GW_PORT=$(bench_free_port)
    GW_MPORT=$(bench_free_port)
    bench_start_gateway gateway "$CONFIG"
    url[gateway]=$GW_URL; spid[gateway]=$GW_PID
    label[gateway]="switchboard ($CONFIG)"
    case " $MATRIX_PEERS " in *" ws "*|*" websockets "*) bench_ensure_peers ;; esac
    for kind in $MATRIX_PEERS; do
        bench_start_peer "$kind" "peer-$kind"
        url[$kind]="$PEER_URL"; spid[$kind]=$PEER_PID; label[$kind]="$(bench_peer_label "$kind")"
        targets+=("$kind")
    done
    log "echo matrix servers: $(for k in "${targets[@]}"; do printf '%s=%s ' "$k" "${url[$k]}"; done)"

    local round conns size target c0 c1 t0 t1 n=0 nt=${#targets[@]} k name limit
    limit=$(python3 -c "import math; print(math.ceil($MATRIX_SECS + $MATRIX_WARMUP) + 60)")
    for round in $(seq 1 "$MATRIX_RUNS"); do
        for conns in $MATRIX_CONNS; do
            for size in $MATRIX_SIZES; do
                n=$((n + 1))
                for k in $(seq 0 $((nt - 1))); do
                    target=${targets[$(((k + n) % nt))]}
                    name="echo-$target-$conns-$size-$round"
                    log "echo matrix round $round: $target, $conns conns, $size B"
                    c0=$(bench_cpu_ticks "${spid[$target]}"); t0=$(date +%s.%N)
                    bench_loadgen "$name" "$limit" echo --url "${url[$target]}" --connections "$conns" \
                        --size "$size" --duration "$MATRIX_SECS" --warmup "$MATRIX_WARMUP"
                    c1=$(bench_cpu_ticks "${spid[$target]}"); t1=$(date +%s.%N)
                    if [ -z "$LINE" ]; then
                        log "loadgen printed nothing (see $OUT/$name.log)"
                        LINE='{}'
                    fi
                    bench_record "$RESULTS" "$LINE" phase=echo-matrix target="$target" \
                        label="${label[$target]}" conns="$conns" size_b="$size" run="$round" \
                        server_cpu_s="$(python3 -c "print(round(($c1 - $c0) / $CLK_TCK, 2))")" \
                        wall_s="$(python3 -c "print(round($t1 - $t0, 2))")" \
                        load1="$(cut -d' ' -f1 /proc/loadavg)"
                done
            done
        done
    done
    bench_cleanup
}

MATRIX_PLAN=$(planned matrix)
if fits matrix "$MATRIX_PLAN"; then
    M0=$(date +%s)
    # In a subshell with its own cleanup: a server that fails to start ends the matrix only.
    if (trap 'bench_cleanup 2>/dev/null' EXIT; echo_matrix); then
        scenario echo-matrix ok "$(($(date +%s) - M0))" "$MATRIX_PLAN" "$COMMAND (echo matrix)" \
            "conns=$MATRIX_CONNS sizes=$MATRIX_SIZES runs=$MATRIX_RUNS secs=$MATRIX_SECS warmup=$MATRIX_WARMUP peers=$MATRIX_PEERS" "$OUT"
    else
        scenario echo-matrix failed "$(($(date +%s) - M0))" "$MATRIX_PLAN" "$COMMAND (echo matrix)" "see $OUT/*.log" "$OUT"
    fi
else
    scenario echo-matrix skipped 0 "$MATRIX_PLAN" "$COMMAND (echo matrix)" "not started: its ~${MATRIX_PLAN}s did not fit in DEADLINE_SECS=$DEADLINE_SECS"
fi

# ---------------------------------------------------------------------------------------
# scenario scripts

run_scenario() {
    local name="$1" script="bench/$1.sh" s0 rc plan cmd newest
    plan=$(planned "$name")
    cmd="NO_BUILD=1 ${KNOBS[$name]:-} bash $script"
    if [ ! -f "$script" ]; then
        log "$name: $script missing, skipped"
        scenario "$name" skipped 0 "$plan" "$cmd" "$script missing"
        return
    fi
    if ! fits "$name" "$plan"; then
        log "$name: ~${plan}s does not fit in what is left of DEADLINE_SECS=$DEADLINE_SECS; skipped"
        scenario "$name" skipped 0 "$plan" "$cmd" "not started: its ~${plan}s did not fit in what was left of the report's budget (DEADLINE_SECS=$DEADLINE_SECS)"
        return
    fi
    log "$name (~${plan}s): $cmd"
    s0=$(date +%s)
    # shellcheck disable=SC2086 # KNOBS holds NAME=VALUE words
    env NO_BUILD=1 ${KNOBS[$name]:-} bash "$script" >"$OUT/$name.out" 2>"$OUT/$name.err"
    rc=$?
    newest=$(ls -d "$ROOT/target/$name-bench"/*/ 2>/dev/null | sort | tail -n 1)
    newest="${newest%/}"
    # Only a directory this run made counts as its results.
    if [ -n "$newest" ] && [ "$(stat -c %Y "$newest")" -lt "$s0" ]; then newest=""; fi
    if [ "$rc" -eq 0 ]; then
        scenario "$name" ok "$(($(date +%s) - s0))" "$plan" "$cmd" "" "$newest"
    else
        log "$name: exit $rc (see $OUT/$name.err)"
        scenario "$name" failed "$(($(date +%s) - s0))" "$plan" "$cmd" \
            "exit $rc; $(tail -3 "$OUT/$name.err" | tr '\n' ' ' | cut -c1-300)" "$newest"
    fi
}

for s in $SCENARIOS; do
    run_scenario "$s"
done

write_meta
log "done in $(($(date +%s) - T0)) s (planned ~${PLAN_TOTAL}s + build ${BUILD_SECS}s); raw results in $OUT"

if [ "${NO_REPORT:-0}" != 1 ]; then
    PY="$ROOT/.venv/bin/python"
    [ -x "$PY" ] || PY=python3
    "$PY" bench/report.py --run "$OUT" --out "${REPORT_OUT:-$ROOT/docs/benchmarks.md}" || log "report.py failed"
fi
