#!/usr/bin/env bash
# Function round-trip benchmark, on loopback only:
#   client -> gateway -> trivial HTTP function -> route response -> client
# switchboard (an `http` function, two-way `$default` route) side by side with Pushpin's
# WebSocket-over-HTTP, both in front of the same trivial echo backend (bench/src/bin/
# fn_backend.rs, `--mode lambda` / `--mode pushpin`). Closed loop: each connection sends a
# 64 B text message, waits for the echo (loadgen checks it byte for byte), repeats.
#
# Runs: RUNS pairs at CONNS connections, the two systems alternately (order swapped every
# pair), then one pair at LOW_CONNS connections (for the historical Pushpin figure).
# Then the connection rate through the function: CONNECT_RUNS pairs of `loadgen
# connect-rate` (CONNECT_CONCURRENCY workers, CONNECT_SECS each: TCP, handshake, clean
# close, repeat). Both systems call the backend when a connection opens and when it
# closes: switchboard's `$connect` and `$disconnect` routes go to the same HTTP function
# (its 200 accepts the handshake), Pushpin sends OPEN and CLOSE.
# Reports msgs/s, p50, p99, and CPU seconds per 10,000 invocations of the gateway and of
# its backend (utime+stime from /proc/PID/stat before/after each run; for Pushpin the sum
# of condure, pushpin-proxy, pushpin-handler, zurl and the runner).
# With RUNS, LOW_CONNS, CONNECT_RUNS and REF_RUNS all 0, Pushpin is neither installed nor
# started and only the transports below run.
#
# Transports (issue 16), switchboard alone: the same echo function reached over each
# TRANSPORT_VARIANT, one gateway per variant (own config and port, `$default` route only,
# so invocations = echoes), all behind fn-backend's hyper server so they compare like for
# like: a cleartext one (http/1.1, h2c) and a TLS one (`--tls-dir`: a test CA made at
# start, ALPN h2 and http/1.1; https/1.1, https/2). TRANSPORT_RUNS rounds run every
# variant once, CONNS connections, SECS each, each round starting one variant later.
# Reports msgs/s, p50, p99 and gateway CPU µs per invocation per variant (medians), and
# pair by pair (same round) https/1.1 ÷ http/1.1 (target ≥ 0.8× msgs/s), https/2 ÷
# https/1.1, h2c ÷ http/1.1 and, with OLD_SWITCHBOARD, new ÷ old (target for http/1.1:
# ≥ 0.95×). A variant whose gateway does not start (a config this build refuses) or whose
# smoke test fails is reported as failed, with the reason, and the others run on.
#
# Usage: bench/functions.sh
# Environment knobs (defaults in brackets):
#   RUNS [3] SECS [10] WARMUP [1] CONNS [100] SIZE [64] LOW_CONNS [20] (0: skip that pair)
#   CONNECT_RUNS [3] CONNECT_SECS [5] CONNECT_CONCURRENCY [50]
#   TRANSPORT_RUNS [3]     rounds of the transports (0: none)
#   TRANSPORT_VARIANTS ["http/1.1 https/1.1 https/2 h2c"]  any of these four: http/1.1
#                          (http_version "1.1"), https/1.1 ("1.1" over TLS), https/2 ("2"
#                          over TLS: ALPN h2 only), h2c ("2", cleartext prior knowledge)
#   OLD_SWITCHBOARD []     path of an older switchboard binary: adds "http/1.1 (old)" and
#                          "h2c (old)" (for those of the two in TRANSPORT_VARIANTS), run
#                          with it, to compare this build against it in the same run
#   HTTP_VERSION [1.1]     switchboard's `http_version` to the function: 1.1, or 2 (h2c
#                          with prior knowledge; fn-backend speaks both)
#   BACKEND_SERVER [minimal]  fn-backend's HTTP server for the measured runs: minimal (its
#                          own HTTP/1.1, the least CPU per request) or hyper
#   REF_RUNS [1]           pairs at CONNS afterwards with the other server, for reference
#                          (0: none); both backends are swapped on the same ports
#   PUSHPIN_LOG_LEVEL [2]  Pushpin's log_level (3+: verbose, for debugging)
#   ZURL_LOG_LEVEL [1]     zurl's --loglevel (2 = info logs two lines per request)
#   BUDGET [450]   seconds for everything after the build/install; runs that would not
#                  fit are skipped with a warning
#   NO_BUILD [0]   1: skip the cargo build (use the binaries in target/release)
# Needs: pushpin + zurl + condure (installed with apt-get if missing), curl, python3.
# Raw results: target/functions-bench/<timestamp>/{results.jsonl,summary.md,*.log,configs}
# (transports: records of mode "transport" and "transport-failed", transport-*.toml and
# .log per variant, tls/ca.pem)
#
# Pushpin setup (per /work/shared/reference/peers.md, with these tweaks for a private,
# loopback-only instance that cannot clash with a system Pushpin/zurl or another run):
# - pushpin.conf is /etc/pushpin/pushpin.conf with rundir (a short /tmp dir: ZeroMQ ipc
#   paths must stay under ~107 bytes), logdir and routesfile pointed at scratch;
# - `http_port=127.0.0.1:PORT`: a bare port makes condure listen on 0.0.0.0;
# - the handler's TCP ports (push_in_spec, push_in_sub_specs, push_in_http_port,
#   command_spec) moved to free ports;
# - zurl gets its own config whose ipc sockets live in the scratch rundir instead of
#   /var/run/zurl, and pushpin.conf's [proxy] overrides zurl_out_specs /
#   zurl_out_stream_specs / zurl_in_specs (set in internal.conf) to match, so no
#   /var/run/zurl is needed; zurl's `deny=` is emptied (it denies 127.* by default: 502s);
# - [handler] message_rate and message_hwm raised from 2500/25000 to 1000000 so the
#   defaults cannot throttle delivery (noted in the summary);
# - log_level stays at 2 (info): Pushpin then logs one line per connection, none per
#   message (as switchboard at its default level); zurl runs with --loglevel=1 (warnings),
#   since at info it logs two lines per request, i.e. per message here.
# Known Pushpin behaviour under CPU contention (seen here at 100 connections while other
# builds ran): a few client connections are dropped ("server closed the TCP connection" in
# loadgen, "wsproxysession: ... target error state=2, condition=0" in pushpin-proxy at
# PUSHPIN_LOG_LEVEL=3, with no zhttp request sent and none failed). The code path that fits
# (read in Pushpin's source, not traced): ZhttpRequest refuses to start a request when its
# PUSH socket to zurl cannot take a message at once (hard-coded HWM of 100 in
# zhttpmanager.cpp; ErrorUnavailable, which WebSocketOverHttp does not retry), and the
# proxy closes the client. Raising zurl's in_hwm/out_hwm did not help. Such runs show
# errors > 0 and continue with fewer connections; the summary flags them.
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_command "$*" RUNS SECS WARMUP CONNS SIZE LOW_CONNS CONNECT_RUNS CONNECT_SECS CONNECT_CONCURRENCY HTTP_VERSION BACKEND_SERVER REF_RUNS \
    TRANSPORT_RUNS TRANSPORT_VARIANTS OLD_SWITCHBOARD BUDGET NO_BUILD
bench_args "$@"

RUNS="${RUNS:-3}"
SECS="${SECS:-10}"
WARMUP="${WARMUP:-1}"
CONNS="${CONNS:-100}"
SIZE="${SIZE:-64}"
LOW_CONNS="${LOW_CONNS:-20}"
CONNECT_RUNS="${CONNECT_RUNS:-3}"
CONNECT_SECS="${CONNECT_SECS:-5}"
CONNECT_CONCURRENCY="${CONNECT_CONCURRENCY:-50}"
HTTP_VERSION="${HTTP_VERSION:-1.1}"
case "$HTTP_VERSION" in 1.1 | 2) ;; *) die "HTTP_VERSION must be 1.1 or 2, not $HTTP_VERSION" ;; esac
BACKEND_SERVER="${BACKEND_SERVER:-minimal}"
case "$BACKEND_SERVER" in minimal) REF_SERVER=hyper ;; hyper) REF_SERVER=minimal ;;
    *) die "BACKEND_SERVER must be minimal or hyper, not $BACKEND_SERVER" ;; esac
REF_RUNS="${REF_RUNS:-1}"
PUSHPIN_LOG_LEVEL="${PUSHPIN_LOG_LEVEL:-2}"
ZURL_LOG_LEVEL="${ZURL_LOG_LEVEL:-1}"
TRANSPORT_RUNS="${TRANSPORT_RUNS:-3}"
TRANSPORT_VARIANTS="${TRANSPORT_VARIANTS-http/1.1 https/1.1 https/2 h2c}"
OLD_SWITCHBOARD="${OLD_SWITCHBOARD:-}"
BUDGET="${BUDGET:-450}"
# The variants run, in order: TRANSPORT_VARIANTS, then the old binary's twins.
TV=()
for v in $TRANSPORT_VARIANTS; do
    case "$v" in "http/1.1" | "https/1.1" | "https/2" | "h2c") TV+=("$v") ;;
        *) echo "functions.sh: unknown transport variant $v (http/1.1, https/1.1, https/2, h2c)" >&2; exit 2 ;; esac
done
if [ -n "$OLD_SWITCHBOARD" ]; then
    [ -x "$OLD_SWITCHBOARD" ] || { echo "functions.sh: OLD_SWITCHBOARD $OLD_SWITCHBOARD is not an executable" >&2; exit 2; }
    for v in "http/1.1" "h2c"; do
        case " $TRANSPORT_VARIANTS " in *" $v "*) TV+=("$v (old)") ;; esac
    done
fi
# 1 when the comparison with Pushpin runs at all.
PUSHPIN_RUNS=$((RUNS > 0 || LOW_CONNS > 0 || CONNECT_RUNS > 0 || REF_RUNS > 0))

bench_init
# bench_cleanup's 5 s suffice: the gateway drains for up to shutdown_grace_secs (2 s here);
# Pushpin's runner stops its children on SIGTERM.
trap 'bench_cleanup 2>/dev/null' EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------
# build and install

bench_build
bench_need switchboard loadgen fn-backend

if [ "$PUSHPIN_RUNS" = 1 ]; then
    if ! command -v pushpin >/dev/null || ! command -v zurl >/dev/null || ! command -v condure >/dev/null; then
        bench_apt_install pushpin pushpin "brings condure and zurl"
    fi
    PUSHPIN_VERSION="$(dpkg-query -W -f='${Version}' pushpin 2>/dev/null || pushpin --version 2>/dev/null | head -n 1 || echo '?')"
fi

# The time budget covers everything from here on.
T1=$(date +%s)
LOAD_AT_START="$(cut -d' ' -f1-3 /proc/loadavg)"

now() { date +%s.%N; }

# ---------------------------------------------------------------------------------------
# switchboard + its backend

# Both backends listen on ports fixed here, so that start_backends can swap their server
# (for the reference runs) without reconfiguring switchboard or Pushpin.
LAMBDA_ADDR="127.0.0.1:$(bench_free_port)"
PPBE_ADDR="127.0.0.1:$(bench_free_port)"
LAMBDA_SERVED=0 LAMBDA_CONNS=0 PPBE_SERVED=0 PPBE_CONNS=0

# start_backends SERVER: both fn-backends with that HTTP server; sets BACKEND_NOW.
start_backends() {
    BACKEND_NOW="$1"
    bench_start_listener "fn-backend-lambda-$1" "fn-backend (lambda, $1)" "$BIN/fn-backend" \
        --mode lambda --server "$1" --listen "$LAMBDA_ADDR"
    LAMBDA_PID=$LISTENER_PID
    bench_start_listener "fn-backend-pushpin-$1" "fn-backend (pushpin, $1)" "$BIN/fn-backend" \
        --mode pushpin --server "$1" --listen "$PPBE_ADDR"
    PPBE_PID=$LISTENER_PID
}

# served MODE: "REQUESTS CONNECTIONS" from the last line the MODE backend printed on exit
# ("0 0" if it printed none).
served() {
    local line
    line=$(sed -n 's/^served \([0-9]*\) requests on \([0-9]*\) connections$/\1 \2/p' \
        "$OUT/fn-backend-$1-$BACKEND_NOW.log")
    echo "${line:-0 0}"
}

# stop_backends: stops both, adding what each served to the totals.
stop_backends() {
    local pid n c
    for pid in "$LAMBDA_PID" "$PPBE_PID"; do kill "$pid" 2>/dev/null || true; done
    for pid in "$LAMBDA_PID" "$PPBE_PID"; do wait "$pid" 2>/dev/null || true; done
    read -r n c <<<"$(served lambda)"
    LAMBDA_SERVED=$((LAMBDA_SERVED + n)) LAMBDA_CONNS=$((LAMBDA_CONNS + c))
    read -r n c <<<"$(served pushpin)"
    PPBE_SERVED=$((PPBE_SERVED + n)) PPBE_CONNS=$((PPBE_CONNS + c))
}

# start_switchboard: the gateway of the comparison with Pushpin.
start_switchboard() {
    bench_gateway_toml "$OUT/switchboard.toml" <<EOF
[management]
auth = "none"

[functions.echo]
kind = "http"
url = "http://$LAMBDA_ADDR/"
max_concurrency = 256
http_version = "$HTTP_VERSION"

[routes."\$default"]
function = "echo"
two_way = true

[routes."\$connect"]
function = "echo"

[routes."\$disconnect"]
function = "echo"
EOF
    bench_start_gateway switchboard "$OUT/switchboard.toml"
    SB_PID=$GW_PID
    URL[switchboard]="$GW_URL"
    log "switchboard ready on 127.0.0.1:$GW_PORT (function at $LAMBDA_ADDR)"
}

# ---------------------------------------------------------------------------------------
# Pushpin + zurl + its backend

declare -A URL PP_PART

# start_pushpin: Pushpin and zurl, routing to the pushpin backend.
start_pushpin() {
    local code i child part
    SCRATCH="$(mktemp -d /tmp/sb-fnbench.XXXXXX)"
    TEMPS+=("$SCRATCH")
    RUNDIR="$SCRATCH/run"
    PPLOGS="$OUT/pushpin-logs"
    mkdir -p "$RUNDIR" "$PPLOGS"
    PP_PORT=$(bench_free_port)
    echo "* $PPBE_ADDR,over_http" >"$OUT/pushpin-routes"
    sed -e "s|^rundir=.*|rundir=$RUNDIR|" \
        -e "s|^logdir=.*|logdir=$PPLOGS|" \
        -e "s|^routesfile=.*|routesfile=$OUT/pushpin-routes|" \
        -e "s|^http_port=.*|http_port=127.0.0.1:$PP_PORT|" \
        -e "s|^push_in_spec=.*|push_in_spec=tcp://127.0.0.1:$(bench_free_port)|" \
        -e "s|^push_in_sub_specs=.*|push_in_sub_specs=tcp://127.0.0.1:$(bench_free_port)|" \
        -e "s|^push_in_http_port=.*|push_in_http_port=$(bench_free_port)|" \
        -e "s|^command_spec=tcp:.*|command_spec=tcp://127.0.0.1:$(bench_free_port)|" \
        -e "s|^log_level=.*|log_level=$PUSHPIN_LOG_LEVEL|" \
        -e "s|^message_rate=.*|message_rate=1000000|" \
        -e "s|^message_hwm=.*|message_hwm=1000000|" \
        -e "s|^\[proxy\]$|[proxy]\nzurl_out_specs=ipc://$RUNDIR/zurl-in\nzurl_out_stream_specs=ipc://$RUNDIR/zurl-in-stream\nzurl_in_specs=ipc://$RUNDIR/zurl-out|" \
        /etc/pushpin/pushpin.conf >"$OUT/pushpin.conf"
    for key in rundir logdir routesfile http_port push_in_spec message_rate message_hwm zurl_out_specs; do
        grep -q "^$key=" "$OUT/pushpin.conf" || die "could not set $key in the private pushpin.conf"
    done
    sed -e "s|ipc:///var/run/zurl/|ipc://$RUNDIR/|" -e "s|^deny=.*|deny=|" /etc/zurl.conf >"$OUT/zurl.conf"
    grep -q "^in_spec=ipc://$RUNDIR/zurl-in$" "$OUT/zurl.conf" || die "unexpected /etc/zurl.conf layout"

    zurl --config="$OUT/zurl.conf" --loglevel="$ZURL_LOG_LEVEL" >"$OUT/zurl.log" 2>&1 &
    ZURL_PID=$!
    PIDS+=("$ZURL_PID")
    pushpin --config "$OUT/pushpin.conf" >"$OUT/pushpin.log" 2>&1 &
    PP_PID=$!
    PIDS+=("$PP_PID")
    # Ready when a plain HTTP request travels condure -> proxy -> zurl -> backend and back: the
    # backend (pushpin mode) answers 415 to anything that is not websocket-events.
    code=000
    for i in $(seq 1 100); do
        kill -0 "$PP_PID" 2>/dev/null || die "pushpin exited at start (see $OUT/pushpin.log, $PPLOGS)"
        kill -0 "$ZURL_PID" 2>/dev/null || die "zurl exited at start (see $OUT/zurl.log)"
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$PP_PORT/" 2>/dev/null || true)
        [ "$code" = 415 ] && break
        sleep 0.1
    done
    [ "$code" = 415 ] || die "pushpin not routing to the backend after 10 s (last HTTP status $code)"
    PP_PART=([runner]="$PP_PID" [zurl]="$ZURL_PID")
    for child in $(pgrep -P "$PP_PID"); do
        PP_PART[$(cat "/proc/$child/comm")]="$child"
        PIDS+=("$child") # killed after the runner, should it leave any behind
    done
    for part in condure pushpin-proxy pushpin-handler; do
        [ -n "${PP_PART[$part]:-}" ] || die "pushpin started no $part (see $PPLOGS)"
    done
    URL[pushpin]="ws://127.0.0.1:$PP_PORT/"
    log "pushpin $PUSHPIN_VERSION ready on 127.0.0.1:$PP_PORT (backend at $PPBE_ADDR)"
}

# ---------------------------------------------------------------------------------------
# runs

# sides SYSTEM: the processes whose CPU counts as the gateway's (FRONT; for Pushpin one per
# part, named in PARTS) and the backend's (BACKEND).
sides() {
    local part
    FRONT=()
    PARTS=()
    if [ "$1" = switchboard ]; then
        FRONT=("$SB_PID")
        BACKEND="$LAMBDA_PID"
    else
        for part in "${!PP_PART[@]}"; do
            FRONT+=("${PP_PART[$part]}")
            PARTS+=("$part")
        done
        BACKEND="$PPBE_PID"
    fi
}

# measure SYSTEM CONNS RUN SECS WARMUP: one loadgen echo run; appends a result line.
measure() {
    local sys="$1" conns="$2" run="$3" secs="$4" warmup="$5"
    local name="echo-$sys-$conns-$run-$BACKEND_NOW" limit part
    limit=$(python3 -c "import math; print(math.ceil($secs + $warmup) + 40)")
    sides "$sys"
    local f0 b0 m0 w0 f1 b1 m1 w1 p0=() p1=()
    for part in "${PARTS[@]}"; do p0+=("$(bench_cpu_ticks "${PP_PART[$part]}")"); done
    f0=$(bench_cpu_ticks "${FRONT[@]}"); b0=$(bench_cpu_ticks "$BACKEND"); m0=$(bench_busy_ticks); w0=$(now)
    # The wrapper bash reaps timeout, which reaps loadgen: its cutime+cstime afterwards is
    # the load generator's CPU.
    bash -c 'timeout -k 5 "$1" "${@:3}" >"$2.json"; rc=$?
        read -r l </proc/$$/stat; read -r -a f <<<"${l##*) }"; echo $((f[13] + f[14])) >"$2.cpu"
        exit $rc' _ "$limit" "$OUT/$name" "$LOADGEN" echo --url "${URL[$sys]}" \
        --connections "$conns" --size "$SIZE" --duration "$secs" --warmup "$warmup" \
        2>"$OUT/$name.log" || true
    f1=$(bench_cpu_ticks "${FRONT[@]}"); b1=$(bench_cpu_ticks "$BACKEND"); m1=$(bench_busy_ticks); w1=$(now)
    for part in "${PARTS[@]}"; do p1+=("$(bench_cpu_ticks "${PP_PART[$part]}")"); done
    local line
    line=$(tail -n 1 "$OUT/$name.json" 2>/dev/null || true)
    [ -n "$line" ] || die "loadgen failed against $sys (see $OUT/$name.log): $(tail -n 3 "$OUT/$name.log")"
    local partjson="{" i
    for i in "${!PARTS[@]}"; do
        partjson+="\"${PARTS[$i]}\": $((p1[i] - p0[i])),"
    done
    partjson="${partjson%,}}"
    python3 - "$sys" "$run" "$line" "$((f1 - f0))" "$((b1 - b0))" "$(cat "$OUT/$name.cpu" 2>/dev/null || echo 0)" \
        "$((m1 - m0))" "$w0" "$w1" "$CLK_TCK" "$partjson" "$BACKEND_NOW" "$([ "$BACKEND_NOW" = "$BACKEND_SERVER" ] && echo 0 || echo 1)" \
        >>"$RESULTS" <<'EOF'
import json, sys
sys_, run, line, front, be, lg, busy, w0, w1, tck, parts, backend, reference = sys.argv[1:]
tck = float(tck)
r = json.loads(line)
r.update(system=sys_, run=int(run), backend=backend, reference=reference == "1",
         front_cpu_s=int(front) / tck, backend_cpu_s=int(be) / tck,
         loadgen_cpu_s=int(lg) / tck, machine_cpu_s=int(busy) / tck,
         wall_s=float(w1) - float(w0),
         parts_cpu_s={k: v / tck for k, v in json.loads(parts).items()})
print(json.dumps(r))
EOF
    python3 -c '
import json, sys
r = json.loads(sys.argv[1]); n = max(r["messages_total"], 1)
print("%s %d conns run %s (%s backend): %.0f msgs/s, p50 %.2f ms, p99 %.2f ms, %d errors; CPU per 10k: gateway %.3f s, backend %.3f s" % (
    r["system"], r["connections"], r["run"], r["backend"], r["msgs_per_s"], r["p50_us"] / 1e3, r["p99_us"] / 1e3,
    r["errors"], 1e4 * r["front_cpu_s"] / n, 1e4 * r["backend_cpu_s"] / n))' "$(tail -n 1 "$RESULTS")" |
        while read -r l; do log "$l"; done
}

# fits SECS WARMUP: whether one more run fits in the budget.
fits() {
    local need
    need=$(python3 -c "import math; print(math.ceil($1 + $2) + 10)")
    [ $(($(date +%s) - T1 + need)) -le "$BUDGET" ]
}

# smoke: one connection against each, short, so a broken path fails before the real runs.
smoke() {
    local sys name
    for sys in switchboard pushpin; do
        name="smoke-$sys-$BACKEND_NOW"
        timeout -k 5 30 "$LOADGEN" echo --url "${URL[$sys]}" --connections 1 --size "$SIZE" \
            --duration 0.5 --warmup 0 >"$OUT/$name.json" 2>"$OUT/$name.log" || true
        python3 -c 'import json, sys; r = json.loads(open(sys.argv[1]).read()); sys.exit(0 if r["errors"] == 0 and r["messages"] > 0 else 1)' \
            "$OUT/$name.json" 2>/dev/null || die "smoke test against $sys failed (see $OUT/$name.log)"
    done
    log "smoke tests passed with the $BACKEND_NOW backend (replies equal what was sent)"
}

if [ "$PUSHPIN_RUNS" = 1 ]; then
    start_backends "$BACKEND_SERVER"
    start_switchboard
    start_pushpin
    smoke
fi

# echo_pairs N: N pairs of echo runs at CONNS, the two systems alternately (the order
# swapped every pair); a run that would not fit the budget is skipped and counted.
SKIPPED=0
echo_pairs() {
    local run sys order
    for run in $(seq 1 "$1"); do
        if [ $((run % 2)) = 1 ]; then order=(switchboard pushpin); else order=(pushpin switchboard); fi
        for sys in "${order[@]}"; do
            if fits "$SECS" "$WARMUP"; then
                measure "$sys" "$CONNS" "$run" "$SECS" "$WARMUP"
            else
                log "warning: budget of $BUDGET s reached; skipping $sys run $run ($BACKEND_NOW backend)"
                SKIPPED=$((SKIPPED + 1))
            fi
        done
    done
}
echo_pairs "$RUNS"
if [ "$LOW_CONNS" -gt 0 ]; then
    for sys in pushpin switchboard; do
        if fits "$SECS" "$WARMUP"; then
            measure "$sys" "$LOW_CONNS" 1 "$SECS" "$WARMUP"
        else
            log "warning: budget of $BUDGET s reached; skipping $sys at $LOW_CONNS connections"
            SKIPPED=$((SKIPPED + 1))
        fi
    done
fi

# measure_connect SYSTEM RUN: one loadgen connect-rate run; appends a result line.
measure_connect() {
    local sys="$1" run="$2" name="connect-$1-$2" limit f0 b0 f1 b1
    limit=$(python3 -c "import math; print(math.ceil($CONNECT_SECS) + 40)")
    sides "$sys"
    f0=$(bench_cpu_ticks "${FRONT[@]}"); b0=$(bench_cpu_ticks "$BACKEND")
    bench_loadgen "$name" "$limit" connect-rate --url "${URL[$sys]}" \
        --concurrency "$CONNECT_CONCURRENCY" --duration "$CONNECT_SECS"
    f1=$(bench_cpu_ticks "${FRONT[@]}"); b1=$(bench_cpu_ticks "$BACKEND")
    [ -n "$LINE" ] || die "loadgen connect-rate failed against $sys (see $OUT/$name.log): $(tail -n 3 "$OUT/$name.log")"
    bench_record "$RESULTS" "$LINE" mode=connect system="$sys" run="$run" \
        front_cpu_s="$(bench_cpu_secs $((f1 - f0)))" backend_cpu_s="$(bench_cpu_secs $((b1 - b0)))"
    log "$(python3 -c '
import json, sys
r = json.loads(sys.argv[1]); n = max(r["connections"], 1)
print("connect-rate %s run %d: %.0f conn/s, handshake p50 %.2f ms, p99 %.2f ms, %d errors, %d unclean; gateway CPU %.1f us/conn" % (
    r["system"], r["run"], r["conns_per_s"], r["handshake_p50_us"] / 1e3, r["handshake_p99_us"] / 1e3,
    r["errors"], r["unclean_closes"], 1e6 * r["front_cpu_s"] / n))' "$(tail -n 1 "$RESULTS")")"
}

for run in $(seq 1 "$CONNECT_RUNS"); do
    if [ $((run % 2)) = 1 ]; then order=(switchboard pushpin); else order=(pushpin switchboard); fi
    for sys in "${order[@]}"; do
        if fits "$CONNECT_SECS" 0; then
            measure_connect "$sys" "$run"
        else
            log "warning: budget of $BUDGET s reached; skipping connect-rate $sys run $run"
            SKIPPED=$((SKIPPED + 1))
        fi
    done
done

# The reference pairs: the same runs with the other HTTP server in both backends, so the
# summary shows what the backend's own cost does to the figures.
[ "$PUSHPIN_RUNS" = 0 ] || stop_backends
if [ "$REF_RUNS" -gt 0 ]; then
    start_backends "$REF_SERVER"
    smoke
    echo_pairs "$REF_RUNS"
    stop_backends
fi

# ---------------------------------------------------------------------------------------
# transports: switchboard alone, one gateway per way of reaching the function

if [ "$PUSHPIN_RUNS" = 1 ]; then
    # Idle, but quieter gone: the transports share the cores with nothing of the above.
    for pid in "$SB_PID" "$PP_PID" "$ZURL_PID"; do bench_stop "$pid"; done
fi

# variant LABEL: V_SCHEME (http or https), V_VERSION (the function's http_version), V_BIN
# (new or old) and V_SLUG (for file names) of a variant.
variant() {
    V_BIN=new
    case "$1" in
        "http/1.1") V_SCHEME=http V_VERSION=1.1 ;;
        "https/1.1") V_SCHEME=https V_VERSION=1.1 ;;
        # "2" rather than "auto": ALPN offers h2 alone, so a run is HTTP/2 or fails, never
        # an HTTP/1.1 fallback measured under the wrong name.
        "https/2") V_SCHEME=https V_VERSION=2 ;;
        "h2c") V_SCHEME=http V_VERSION=2 ;;
        "http/1.1 (old)") V_SCHEME=http V_VERSION=1.1 V_BIN=old ;;
        "h2c (old)") V_SCHEME=http V_VERSION=2 V_BIN=old ;;
        *) die "unknown transport variant $1" ;;
    esac
    V_SLUG=$(printf '%s' "$1" | tr -cs 'a-z0-9.' '-')
    V_SLUG=${V_SLUG%-}
}

declare -A T_URL T_GW T_FAILED
T_SERVED=()
T_LOST=0

# transport_failed VARIANT REASON [ROUND]: logs it and records it (mode transport-failed).
transport_failed() {
    log "warning: transport $1${3:+ round $3} failed: $2"
    bench_record "$RESULTS" "" mode=transport-failed variant="$1" reason="$2" ${3:+run="$3"}
}

# start_transport VARIANT: its gateway and a smoke test; on failure the variant is marked
# failed (T_FAILED) and its gateway stopped.
start_transport() {
    local v="$1" url tls="" name why gateway="$GATEWAY"
    variant "$v"
    name="transport-$V_SLUG"
    if [ "$V_SCHEME" = https ]; then
        url="https://$T_TLS_ADDR/"
        tls="tls_ca_file = \"$OUT/tls/ca.pem\""
    else
        url="http://$T_PLAIN_ADDR/"
    fi
    bench_gateway_toml "$OUT/$name.toml" <<EOF
[management]
auth = "none"

[functions.echo]
kind = "http"
url = "$url"
max_concurrency = 256
http_version = "$V_VERSION"
$tls

[routes."\$default"]
function = "echo"
two_way = true
EOF
    [ "$V_BIN" = new ] || GATEWAY="$OLD_SWITCHBOARD"
    if ! bench_try_gateway "$name" "$OUT/$name.toml"; then
        GATEWAY="$gateway"
        # The gateway's refusal: "Error: ...", then the key and why on the next line.
        why=$(tail -n 3 "$OUT/$name.log" | tr -s ' \n' '  ' | cut -c1-400)
        why=${why% }
        case "$NOT_READY" in
            exited) T_FAILED[$v]="the gateway exited at start: ${why:-no output} (see ${OUT#"$ROOT"/}/$name.log)" ;;
            *) T_FAILED[$v]="the gateway was $NOT_READY (see ${OUT#"$ROOT"/}/$name.log)" ;;
        esac
        transport_failed "$v" "${T_FAILED[$v]}"
        return
    fi
    GATEWAY="$gateway"
    T_GW[$v]=$GW_PID
    T_URL[$v]=$GW_URL
    timeout -k 5 30 "$LOADGEN" echo --url "$GW_URL" --connections 1 --size "$SIZE" \
        --duration 0.5 --warmup 0 >"$OUT/smoke-$name.json" 2>"$OUT/smoke-$name.log" || true
    why=$(python3 -c 'import json, sys
r = json.loads(open(sys.argv[1]).read())
if r["errors"] or not r["messages"]:
    print(r.get("first_error") or "no echo came back")' "$OUT/smoke-$name.json" 2>/dev/null || echo "loadgen printed no result")
    if [ -n "$why" ]; then
        T_FAILED[$v]="smoke test: $why (see ${OUT#"$ROOT"/}/smoke-$name.log, $name.log)"
        transport_failed "$v" "${T_FAILED[$v]}"
        bench_stop "$GW_PID"
        return
    fi
    log "transport $v: gateway on 127.0.0.1:$GW_PORT ($V_BIN binary, http_version \"$V_VERSION\", $url), smoke test passed"
}

# measure_transport VARIANT ROUND POSITION: one loadgen echo run; appends a result line.
measure_transport() {
    local v="$1" round="$2" pos="$3" name limit be g0 b0 g1 b1
    variant "$v"
    name="transport-$V_SLUG-$round"
    be=$T_PLAIN_PID
    [ "$V_SCHEME" = http ] || be=$T_TLS_PID
    limit=$(python3 -c "import math; print(math.ceil($SECS + $WARMUP) + 40)")
    g0=$(bench_cpu_ticks "${T_GW[$v]}"); b0=$(bench_cpu_ticks "$be")
    bench_loadgen "$name" "$limit" echo --url "${T_URL[$v]}" --connections "$CONNS" --size "$SIZE" \
        --duration "$SECS" --warmup "$WARMUP"
    g1=$(bench_cpu_ticks "${T_GW[$v]}"); b1=$(bench_cpu_ticks "$be")
    if [ -z "$LINE" ]; then
        T_LOST=$((T_LOST + 1))
        transport_failed "$v" "loadgen printed no result: $(tail -n 1 "$OUT/$name.log" | cut -c1-300)" "$round"
        return
    fi
    bench_record "$RESULTS" "$LINE" mode=transport variant="$v" run="$round" position="$pos" \
        binary="$V_BIN" scheme="$V_SCHEME" http_version="\"$V_VERSION\"" \
        gateway_cpu_s="$(bench_cpu_secs $((g1 - g0)))" backend_cpu_s="$(bench_cpu_secs $((b1 - b0)))"
    log "$(python3 -c '
import json, sys
r = json.loads(sys.argv[1]); n = max(r["messages_total"], 1)
print("transport %s round %d: %.0f msgs/s, p50 %.2f ms, p99 %.2f ms, %d errors; gateway CPU %.1f us/invocation, backend %.1f" % (
    r["variant"], r["run"], r["msgs_per_s"], r["p50_us"] / 1e3, r["p99_us"] / 1e3, r["errors"],
    1e6 * r["gateway_cpu_s"] / n, 1e6 * r["backend_cpu_s"] / n))' "$(tail -n 1 "$RESULTS")")"
}

if [ "$TRANSPORT_RUNS" -gt 0 ] && [ "${#TV[@]}" -gt 0 ]; then
    # Both backends on hyper's server (the minimal one has no TLS), so every variant meets
    # the same server code.
    bench_start_listener fn-backend-transport-plain "fn-backend (transports, cleartext)" "$BIN/fn-backend" \
        --mode lambda --server hyper --listen 127.0.0.1:0
    T_PLAIN_PID=$LISTENER_PID T_PLAIN_ADDR=$ADDR
    bench_start_listener fn-backend-transport-tls "fn-backend (transports, TLS)" "$BIN/fn-backend" \
        --mode lambda --server hyper --tls-dir "$OUT/tls" --listen 127.0.0.1:0
    T_TLS_PID=$LISTENER_PID T_TLS_ADDR=$ADDR
    for v in "${TV[@]}"; do start_transport "$v"; done
    T_OK=()
    for v in "${TV[@]}"; do [ -n "${T_FAILED[$v]:-}" ] || T_OK+=("$v"); done
    for round in $(seq 1 "$TRANSPORT_RUNS"); do
        pos=0
        while IFS= read -r v; do
            pos=$((pos + 1))
            if fits "$SECS" "$WARMUP"; then
                measure_transport "$v" "$round" "$pos"
            else
                log "warning: budget of $BUDGET s reached; skipping transport $v round $round"
                SKIPPED=$((SKIPPED + 1))
            fi
        done < <([ "${#T_OK[@]}" -eq 0 ] || bench_rotate $((round - 1)) "${T_OK[@]}")
    done
    for v in "${TV[@]}"; do [ -z "${T_GW[$v]:-}" ] || bench_stop "${T_GW[$v]}"; done
    for pid in "$T_PLAIN_PID" "$T_TLS_PID"; do bench_stop "$pid"; done
    for name in plain tls; do
        T_SERVED+=("$(sed -n 's/^served \([0-9]*\) requests on \([0-9]*\) connections$/\1 requests on \2 connections/p' \
            "$OUT/fn-backend-transport-$name.log")")
    done
fi

# ---------------------------------------------------------------------------------------
# summary

[ "$PUSHPIN_RUNS" = 0 ] || python3 - "$RESULTS" "$(nproc)" "$(date -u '+%Y-%m-%d %H:%M UTC')" \
    "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')" "$(($(date +%s) - T0))" \
    "$LOAD_AT_START" "$(cut -d' ' -f1-3 /proc/loadavg)" "$PUSHPIN_VERSION" "$CONNS" "$LOW_CONNS" \
    "$SIZE" "$SECS" "$WARMUP" "$LAMBDA_SERVED requests on $LAMBDA_CONNS connections" \
    "$PPBE_SERVED requests on $PPBE_CONNS connections" "$SKIPPED" \
    "$OUT" "$PUSHPIN_LOG_LEVEL" "$ZURL_LOG_LEVEL" "$COMMAND" "$HTTP_VERSION" "$BACKEND_SERVER" >"$OUT/summary.md" <<'EOF'
import glob, json, re, statistics, sys
(path, nproc, date, commit, took, load0, load1, ppver, conns, low, size, secs, warmup,
 lam_served, pp_served, skipped, outdir, pplog, zlog, command, http_version, backend) = sys.argv[1:]
conns, low = int(conns), int(low)
rows = [json.loads(l) for l in open(path) if l.strip()]
connect_rows = [r for r in rows if r["mode"] == "connect"]
every_echo = [r for r in rows if r["mode"] == "echo"]
rows = [r for r in every_echo if not r.get("reference")]
ref_rows = [r for r in every_echo if r.get("reference")]
for r in every_echo:
    n = max(r["messages_total"], 1)
    r["front_per_10k"] = 1e4 * r["front_cpu_s"] / n
    r["backend_per_10k"] = 1e4 * r["backend_cpu_s"] / n
    ours = r["front_cpu_s"] + r["backend_cpu_s"] + r["loadgen_cpu_s"]
    r["other_cores"] = max(r["machine_cpu_s"] - ours, 0) / max(r["wall_s"], 1e-9)

def pick(sysname, c):
    return [r for r in rows if r["system"] == sysname and r["connections"] == c]

def med(rs, key):
    return statistics.median(r[key] for r in rs) if rs else None

def f(x, d=0):
    return "–" if x is None else f"{x:,.{d}f}"

NAMES = {"switchboard": f"switchboard (http function, HTTP/{http_version})", "pushpin": f"Pushpin {ppver} (WebSocket-over-HTTP)"}
out = [f"## Function round trip — {date}", ""]
out.append(f"client → gateway → trivial HTTP echo function (fn-backend, `--server {backend}`) on loopback → route "
           f"response → client; closed loop, {size} B text, {warmup} s warmup + {secs} s measured "
           f"per run; the two systems alternate within each pair of runs.")
out.append("")
out.append("| system | conns | runs | msgs/s median | min | max | p50 ms | p99 ms | gateway CPU s / 10k | backend CPU s / 10k | errors |")
out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for c in [conns] + ([low] if low and low != conns else []):
    for s in ("switchboard", "pushpin"):
        rs = pick(s, c)
        if not rs:
            continue
        out.append(f"| {NAMES[s]} | {c} | {len(rs)} | {f(med(rs, 'msgs_per_s'))} | "
                   f"{f(min(r['msgs_per_s'] for r in rs))} | {f(max(r['msgs_per_s'] for r in rs))} | "
                   f"{f(med(rs, 'p50_us') / 1e3, 2)} | {f(med(rs, 'p99_us') / 1e3, 2)} | "
                   f"{f(med(rs, 'front_per_10k'), 3)} | {f(med(rs, 'backend_per_10k'), 3)} | "
                   f"{sum(r['errors'] for r in rs)} |")
out.append("")
out.append("Medians over runs; p50/p99 are the medians of each run's percentiles. \"gateway CPU\" is "
           "switchboard, or for Pushpin the sum of condure + pushpin-proxy + pushpin-handler + zurl + "
           "runner; \"backend\" is fn-backend. CPU windows span the whole loadgen run (connect, warmup, "
           "measurement, close) and are divided by every echo completed in it.")
out.append("")
out.append("| ratio (switchboard vs Pushpin) | value | target |")
out.append("| --- | ---: | --- |")
for c in [conns] + ([low] if low and low != conns else []):
    g, p = pick("switchboard", c), pick("pushpin", c)
    if not g or not p:
        continue
    tr = med(g, "msgs_per_s") / med(p, "msgs_per_s")
    lr = med(g, "p50_us") / med(p, "p50_us")
    cr = med(g, "front_per_10k") / med(p, "front_per_10k")
    pairs = sorted(x["msgs_per_s"] / y["msgs_per_s"] for x in g for y in p if x["run"] == y["run"])
    rng = f" (pairs {pairs[0]:.1f}–{pairs[-1]:.1f}×)" if len(pairs) > 1 else ""
    tgt = c == conns
    out.append(f"| throughput, {c} conns{rng} | {tr:.1f}× | " + (f"≥ 20× — {'met' if tr >= 20 else 'NOT met'}" if tgt else "") + " |")
    out.append(f"| p50 latency, {c} conns | {lr:.3f} (1/{1 / lr:.1f}) | " + (f"≤ 1/20 — {'met' if lr <= 0.05 else 'NOT met'}" if tgt else "") + " |")
    out.append(f"| p99 latency, {c} conns | {med(g, 'p99_us') / med(p, 'p99_us'):.3f} | |")
    out.append(f"| gateway CPU per invocation, {c} conns | {cr:.3f} (1/{1 / cr:.1f}) | |")
if ref_rows:
    g = [r for r in ref_rows if r["system"] == "switchboard"]
    p = [r for r in ref_rows if r["system"] == "pushpin"]
    pairs = sorted(x["msgs_per_s"] / y["msgs_per_s"] for x in g for y in p if x["run"] == y["run"])
    ref = ref_rows[0]["backend"]
    out.append(f"| reference: throughput with the {ref} backend, {conns} conns ({len(pairs)} pair(s)) | "
               + (f"{statistics.median(pairs):.1f}×" if pairs else "–") + " | |")
out.append("")
if ref_rows:
    out.append(f"Reference runs with fn-backend `--server {ref}` in both backends (same ports, after the runs above):")
    out.append("")
    out.append("| system | conns | runs | msgs/s median | p50 ms | gateway CPU s / 10k | backend CPU s / 10k | errors |")
    out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for s_, rs in (("switchboard", g), ("pushpin", p)):
        if rs:
            out.append(f"| {NAMES[s_]} | {conns} | {len(rs)} | {f(med(rs, 'msgs_per_s'))} | {f(med(rs, 'p50_us') / 1e3, 2)} | "
                       f"{f(med(rs, 'front_per_10k'), 3)} | {f(med(rs, 'backend_per_10k'), 3)} | {sum(r['errors'] for r in rs)} |")
    out.append("")
pp = pick("pushpin", conns)
if pp:
    keys = sorted({k for r in pp for k in r["parts_cpu_s"]})
    parts = ", ".join(f"{k} {statistics.median(1e4 * r['parts_cpu_s'][k] / max(r['messages_total'], 1) for r in pp):.3f}" for k in keys)
    out.append(f"- Pushpin CPU s per 10k invocations by process ({conns} conns, median): {parts}.")
lowp = pick("pushpin", low)
if lowp:
    out.append(f"- Pushpin at {low} connections: {f(med(lowp, 'msgs_per_s'))} msgs/s, p50 "
               f"{med(lowp, 'p50_us') / 1e3:.2f} ms (historical figure: ~257 msgs/s, p50 ~50 ms).")
out.append(f"- Pushpin config: `[handler] message_rate` and `message_hwm` raised from 2500/25000 to "
           f"1000000 so its defaults do not throttle; zurl's `deny=` emptied for loopback; log level {pplog}, zurl --loglevel={zlog}.")
smokes = glob.glob(f"{outdir}/smoke-switchboard-*.json")
sb_total = sum(r["messages_total"] for r in every_echo if r["system"] == "switchboard")
sb_total += sum(json.loads(open(s_).read())["messages_total"] for s_ in smokes)
sb_conns = len(smokes) + sum(r["connections"] for r in every_echo + connect_rows if r["system"] == "switchboard")
out.append(f"- Invocations check: the lambda backend served {lam_served}; loadgen counted "
           f"{sb_total:,} echoes through switchboard (runs + smoke test) and {sb_conns:,} connections, "
           f"each invoking `$connect` and `$disconnect` ({sb_total + 2 * sb_conns:,} in all). The pushpin backend "
           f"served {pp_served} (echoes plus OPEN/CLOSE requests per connection).")
for s_ in ("switchboard", "pushpin"):
    bad = [r for r in every_echo if r["system"] == s_ and r["errors"]]
    if bad:
        errs = ", ".join(f"{r['connections']} conns run {r['run']} ({r['backend']} backend): {r['errors']} ({r['first_error']})" for r in bad)
        why = (" Pushpin closes a client when its zhttp queue to zurl is full (see the comment at "
               "the top of bench/functions.sh).") if s_ == "pushpin" else ""
        out.append(f"- ⚠ {s_} lost connections (loadgen stops a connection at its first error): {errs}.{why}")
oth = [r["other_cores"] for r in every_echo]
out.append(f"- Machine: `nproc` = {nproc}; load average {load0} at start, {load1} at end; CPU used by "
           f"processes other than the servers, backends and loadgen during runs: median "
           f"{statistics.median(oth):.2f} cores (max {max(oth):.2f}). Everything shares the same cores.")
if int(skipped):
    out.append(f"- ⚠ {skipped} run(s) skipped: the time budget ran out.")
out.append(f"- command: `{command}` (commit {commit}; took {took} s).")
if connect_rows:
    out.append("")
    out.append("Connection rate through the function (open, handshake, clean close, repeat; the backend "
               "is called at open and at close by both):")
    out.append("")
    out.append("| system | runs | connections/s median | min | max | handshake p50 ms | handshake p99 ms | gateway CPU µs / connection | errors |")
    out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for s_ in ("switchboard", "pushpin"):
        rs = [r for r in connect_rows if r["system"] == s_]
        if not rs:
            continue
        v = [r["conns_per_s"] for r in rs]
        out.append(f"| {NAMES[s_]} | {len(rs)} | {f(statistics.median(v))} | {f(min(v))} | {f(max(v))} | "
                   f"{f(med(rs, 'handshake_p50_us') / 1e3, 2)} | {f(med(rs, 'handshake_p99_us') / 1e3, 2)} | "
                   f"{f(statistics.median(1e6 * r['front_cpu_s'] / max(r['connections'], 1) for r in rs), 1)} | "
                   f"{sum(r['errors'] for r in rs)} |")
    pairs = sorted(x["conns_per_s"] / y["conns_per_s"] for x in connect_rows for y in connect_rows
                   if x["system"] == "switchboard" and y["system"] == "pushpin" and x["run"] == y["run"] and y["conns_per_s"])
    if pairs:
        out.append("")
        out.append(f"- connections/s switchboard / Pushpin, pair by pair: {statistics.median(pairs):.1f}× "
                   f"(pairs {pairs[0]:.1f}–{pairs[-1]:.1f}×)")
out.append("")
out.append("<details><summary>all runs</summary>")
out.append("")
out.append("| system | backend | conns | run | msgs/s | p50 ms | p99 ms | max ms | gateway CPU s | backend CPU s | loadgen CPU s | other cores | echoes | errors |")
out.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for r in every_echo:
    out.append(f"| {r['system']} | {r['backend']} | {r['connections']} | {r['run']} | {f(r['msgs_per_s'])} | {r['p50_us'] / 1e3:.2f} | "
               f"{r['p99_us'] / 1e3:.2f} | {r['max_us'] / 1e3:.1f} | {r['front_cpu_s']:.2f} | {r['backend_cpu_s']:.2f} | "
               f"{r['loadgen_cpu_s']:.2f} | {r['other_cores']:.2f} | {r['messages_total']:,} | {r['errors']} |")
out.append("")
out.append("</details>")
print("\n".join(out))
EOF
if [ "$PUSHPIN_RUNS" = 0 ]; then
    {
        echo "## Function round trip — $(date -u '+%Y-%m-%d %H:%M UTC')"
        echo
        echo "The comparison with Pushpin did not run (RUNS, LOW_CONNS, CONNECT_RUNS and REF_RUNS all 0)."
        echo
        echo "- command: \`$COMMAND\` (commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'); took $(($(date +%s) - T0)) s)."
        echo "- Machine: \`nproc\` = $(nproc); load average $LOAD_AT_START at start, $(cut -d' ' -f1-3 /proc/loadavg) at end."
    } >"$OUT/summary.md"
fi
if [ "$TRANSPORT_RUNS" -gt 0 ] && [ "${#TV[@]}" -gt 0 ]; then
    python3 - "$RESULTS" "$CONNS" "$SIZE" "$SECS" "$WARMUP" "$TRANSPORT_RUNS" "${OLD_SWITCHBOARD:-}" \
        "${T_SERVED[0]:-?}" "${T_SERVED[1]:-?}" "$T_LOST" "${TV[@]}" >>"$OUT/summary.md" <<'EOF'
import json, statistics, sys
path, conns, size, secs, warmup, rounds, old, plain_served, tls_served, lost = sys.argv[1:11]
variants = sys.argv[11:]
rows = [json.loads(l) for l in open(path) if l.strip()]
runs = [r for r in rows if r.get("mode") == "transport"]
failed = [r for r in rows if r.get("mode") == "transport-failed"]
for r in runs:
    n = max(r["messages_total"], 1)
    r["gw_us"] = 1e6 * r["gateway_cpu_s"] / n
    r["be_us"] = 1e6 * r["backend_cpu_s"] / n

def of(v):
    return [r for r in runs if r["variant"] == v]

def med(rs, key):
    return statistics.median(r[key] for r in rs) if rs else None

def f(x, d=0):
    return "–" if x is None else f"{x:,.{d}f}"

def ratios(a, b, key):
    """a ÷ b for every round both ran, the median and range as text (None without pairs)."""
    by = {r["run"]: r for r in of(b)}
    rs = sorted(x[key] / by[x["run"]][key] for x in of(a) if x["run"] in by and by[x["run"]][key])
    if not rs:
        return None, "–"
    m = statistics.median(rs)
    return m, f"{m:.2f}×" + (f" ({rs[0]:.2f}–{rs[-1]:.2f}, n={len(rs)})" if len(rs) > 1 else " (1 pair)")

out = ["", "### Transports to the function (switchboard alone)", ""]
out.append(f"client → gateway → fn-backend (lambda mode, `--server hyper` for every variant; `--tls-dir` with a test "
           f"CA for https, ALPN h2 and http/1.1) on loopback → client; closed loop, {conns} connections, {size} B text, "
           f"{warmup} s warmup + {secs} s measured per run; {rounds} round(s), each running every variant once, each "
           f"round starting one variant later. One gateway per variant (own config and port), `$default` route only, so "
           f"invocations = echoes." + (f" \"(old)\": `{old}`." if old else ""))
out.append("")
out.append("| variant | binary | http_version | runs | msgs/s median | min | max | p50 ms | p99 ms | gateway CPU µs / invocation | backend CPU µs / invocation | errors |")
out.append("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
bad = {r["variant"] for r in failed if "run" not in r}
for v in variants:
    rs = of(v)
    if v in bad:
        out.append(f"| {v} | | | 0 | **failed** | | | | | | | |")
        continue
    if not rs:
        continue
    out.append(f"| {v} | {rs[0]['binary']} | {rs[0]['http_version']} | {len(rs)} | {f(med(rs, 'msgs_per_s'))} | "
               f"{f(min(r['msgs_per_s'] for r in rs))} | {f(max(r['msgs_per_s'] for r in rs))} | "
               f"{f(med(rs, 'p50_us') / 1e3, 2)} | {f(med(rs, 'p99_us') / 1e3, 2)} | {f(med(rs, 'gw_us'), 1)} | "
               f"{f(med(rs, 'be_us'), 1)} | {sum(r['errors'] for r in rs)} |")
out.append("")
out.append("Medians over runs; p50/p99 are the medians of each run's percentiles. CPU: utime+stime of the variant's "
           "gateway (of its backend) over the whole loadgen run, divided by every echo completed in it.")
out.append("")
comparisons = [
    ("https/1.1", "http/1.1", "msgs/s ≥ 0.8×", lambda m: m >= 0.8),
    ("https/2", "https/1.1", "", None),
    ("h2c", "http/1.1", "", None),
    ("https/2", "h2c", "", None),
    ("http/1.1", "http/1.1 (old)", "msgs/s ≥ 0.95× (no slower than before, within 5 %)", lambda m: m >= 0.95),
    ("h2c", "h2c (old)", "", None),
]
table = []
for a, b, target, met in comparisons:
    if not of(a) or not of(b):
        continue
    m, tp = ratios(a, b, "msgs_per_s")
    _, lat = ratios(a, b, "p50_us")
    _, p99 = ratios(a, b, "p99_us")
    _, cpu = ratios(a, b, "gw_us")
    verdict = f"{target} — {'met' if met(m) else '**NOT met**'}" if met and m is not None else target
    table.append(f"| {a} ÷ {b} | {tp} | {lat} | {p99} | {cpu} | {verdict} |")
if table:
    out.append("| ratio, pair by pair (same round) | msgs/s | p50 | p99 | gateway CPU / invocation | target |")
    out.append("| --- | ---: | ---: | ---: | ---: | --- |")
    out += table
    out.append("")
for r in failed:
    out.append(f"- ⚠ {r['variant']}" + (f" round {r['run']}" if "run" in r else "") + f" failed: {r['reason']}")
for v in variants:
    errs = [r for r in of(v) if r["errors"]]
    if errs:
        out.append(f"- ⚠ {v} lost connections: " + ", ".join(f"round {r['run']}: {r['errors']} ({r['first_error']})" for r in errs))
if int(lost):
    out.append(f"- ⚠ {lost} transport run(s) gave no result (see the failures above).")
out.append(f"- fn-backend served {plain_served} (cleartext) and {tls_served} (TLS); loadgen counted "
           f"{sum(r['messages_total'] for r in runs):,} echoes in these runs (smoke tests besides).")
out.append("")
out.append("<details><summary>all transport runs</summary>")
out.append("")
out.append("| round | position | variant | msgs/s | p50 ms | p99 ms | max ms | gateway CPU s | backend CPU s | echoes | errors |")
out.append("| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for r in sorted(runs, key=lambda r: (r["run"], r["position"])):
    out.append(f"| {r['run']} | {r['position']} | {r['variant']} | {f(r['msgs_per_s'])} | {r['p50_us'] / 1e3:.2f} | "
               f"{r['p99_us'] / 1e3:.2f} | {r['max_us'] / 1e3:.1f} | {r['gateway_cpu_s']:.2f} | {r['backend_cpu_s']:.2f} | "
               f"{r['messages_total']:,} | {r['errors']} |")
out.append("")
out.append("</details>")
print("\n".join(out))
EOF
fi
bench_done
