#!/usr/bin/env bash
# Group fan-out benchmark, on loopback only: one management call sends a 1 KiB message to a
# group of N connections. switchboard (builtin `join_group`, `POST /v1/groups/bench/messages`)
# side by side with sockudo (Pusher protocol: a channel `bench`, the signed
# `POST /apps/app/events`), both running for the whole benchmark, measured alternately.
#
# For each N in COUNTS (N subscribers per system, one loadgen process per system, held for
# all of that N's runs):
#   single-shot: one publish, time from just before the call until the last subscriber has
#     it; deliveries/s = N / that time; median of SHOTS (after one warm-up);
#   sustained: INFLIGHT publishers in a closed loop for SECS (the next publish when the
#     previous HTTP call returned), then a drain; deliveries/s = every delivery of every
#     message published / (last delivery - first publish call); every subscriber is checked
#     for every message (losses); RUNS runs per system, systems alternating;
#   stalled member: the same sustained run with one extra member that never reads its
#     socket (4 KiB receive buffer); compared with the plain runs beside it.
# Server CPU (utime+stime of the server process) per delivery is reported too: on 2 cores
# the servers and the load generator share the machine, so throughput alone mixes them.
#
# Usage: bench/fanout.sh
# Environment knobs (defaults in brackets):
#   COUNTS ["5000 15000"]  subscriber counts; the last is the headline, the others quick checks
#   SHOTS [5] SECS [10] RUNS [3] (RUNS at the largest count; 1 at the others)
#   INFLIGHT [2] publishers in the closed loop, each on its own HTTP connection
#   WINDOW [0]   >0: also at most WINDOW messages published but not yet at every member
#   SIZE [1024]  message bytes
#   STALLED [1]  0: skip the stalled-member runs
#   BUDGET [540] seconds for everything after the build/install; runs that would not fit
#                are skipped with a warning
#   NO_BUILD [0] 1: skip the cargo build (use the binaries in target/release)
#   PEERS_ROOT [target/peers] where `cargo install sockudo --locked` puts bin/sockudo
#                (installed only when missing: a long build, done once)
# Needs: protobuf-compiler (apt-get, for the sockudo build), curl, python3; ports 6001 and
# 9601 free (sockudo's WebSocket/HTTP and metrics ports).
# Raw results: target/fanout-bench/<timestamp>/{results.jsonl,summary.md,*.log,switchboard.toml}
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_args "$@"

COUNTS="${COUNTS:-5000 15000}"
SHOTS="${SHOTS:-5}"
SECS="${SECS:-10}"
RUNS="${RUNS:-3}"
INFLIGHT="${INFLIGHT:-2}"
WINDOW="${WINDOW:-0}"
SIZE="${SIZE:-1024}"
STALLED="${STALLED:-1}"
BUDGET="${BUDGET:-540}"
PEERS_ROOT="${PEERS_ROOT:-$ROOT/target/peers}"
SOCKUDO="$PEERS_ROOT/bin/sockudo"
TOKEN="bench-token-0123456789"

bench_init
# Servers and load generators hold ~15,000 sockets each.
ulimit -n "$(ulimit -Hn)"

# sockudo takes seconds to shut down (grace period set to 2 s below); the gateway drains
# for up to shutdown_grace_secs (2 s).
trap 'bench_cleanup 15 2>/dev/null' EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------
# install and build

command -v protoc >/dev/null || bench_apt_install protoc protobuf-compiler

if [ ! -x "$SOCKUDO" ]; then
    log "installing sockudo into $PEERS_ROOT (cargo install --locked; a long build, done once)"
    t=$(date +%s)
    cargo install sockudo --locked --root "$PEERS_ROOT" >"$OUT/sockudo-install.log" 2>&1 \
        || die "cargo install sockudo failed (see $OUT/sockudo-install.log)"
    echo "$(($(date +%s) - t))" >"$PEERS_ROOT/install-seconds"
    log "sockudo installed in $(cat "$PEERS_ROOT/install-seconds") s"
fi
SOCKUDO_VERSION="$("$SOCKUDO" --version 2>/dev/null | head -n 1 || true)"
[ -n "$SOCKUDO_VERSION" ] || SOCKUDO_VERSION="sockudo $(sed -n 's/.*"sockudo \([0-9.]*\) .*/\1/p' "$PEERS_ROOT/.crates.toml" 2>/dev/null | head -n 1)"

bench_build
bench_need switchboard loadgen

T1=$(date +%s)
LOAD_AT_START="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------------------------------
# helpers

port_free() {
    python3 -c 'import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try: s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError: sys.exit(1)' "$1"
}

remaining() { echo $((BUDGET - ($(date +%s) - T1))); }

# ---------------------------------------------------------------------------------------
# servers

port_free 6001 || die "port 6001 is busy (another sockudo?)"
port_free 9601 || die "port 9601 is busy (another sockudo?)"

bench_gateway_toml "$OUT/switchboard.toml" <<EOF
[management]
bearer_tokens = ["$TOKEN"]

[functions.join]
kind = "builtin"
name = "join_group"
groups = ["bench"]

[routes.join]
function = "join"
two_way = true
EOF
bench_start_gateway switchboard "$OUT/switchboard.toml"

HOST=127.0.0.1 METRICS_HOST=127.0.0.1 SHUTDOWN_GRACE_PERIOD=2 \
SOCKUDO_DEFAULT_APP_ENABLED=true SOCKUDO_DEFAULT_APP_ID=app \
SOCKUDO_DEFAULT_APP_KEY=key SOCKUDO_DEFAULT_APP_SECRET=secret \
SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS=100000 RATE_LIMITER_ENABLED=false \
SOCKUDO_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SECOND=1000000 \
    "$SOCKUDO" >"$OUT/sockudo.log" 2>&1 &
SK_PID=$!
PIDS+=("$SK_PID")

bench_wait_ready "$SK_PID" "http://127.0.0.1:6001/up" sockudo "$OUT/sockudo.log"
log "switchboard on 127.0.0.1:$GW_PORT (management $GW_MPORT), $SOCKUDO_VERSION on 127.0.0.1:6001"

declare -A SPID=([switchboard]="$GW_PID" [sockudo]="$SK_PID")
declare -A WSURL=([switchboard]="ws://127.0.0.1:$GW_PORT/" [sockudo]="ws://127.0.0.1:6001/app/key?protocol=7")
declare -A PUBURL=([switchboard]="http://127.0.0.1:$GW_MPORT" [sockudo]="http://127.0.0.1:6001")
declare -A LGPID LGFD LGOUT

# start_loadgen SYS N: subscribers of SYS, held until stop_loadgen; waits for READY.
start_loadgen() {
    local sys="$1" n="$2" fifo="$OUT/$1-$2.fifo" fd i
    mkfifo "$fifo"
    TEMPS+=("$fifo")
    LGOUT[$sys]="$OUT/$sys-$n.jsonl"
    "$LOADGEN" fanout --system "$sys" --url "${WSURL[$sys]}" --publish-url "${PUBURL[$sys]}" \
        --connections "$n" --size "$SIZE" --inflight "$INFLIGHT" --window "$WINDOW" \
        --token "$TOKEN" <"$fifo" >"${LGOUT[$sys]}" 2>"$OUT/$sys-$n.log" &
    LGPID[$sys]=$!
    PIDS+=("${LGPID[$sys]}")
    exec {fd}>"$fifo"
    LGFD[$sys]=$fd
    for i in $(seq 1 1200); do
        [ -s "${LGOUT[$sys]}" ] && break
        kill -0 "${LGPID[$sys]}" 2>/dev/null || die "loadgen ($sys, $n) exited (see $OUT/$sys-$n.log)"
        sleep 0.1
    done
    local ready
    ready=$(head -n 1 "${LGOUT[$sys]}")
    [ -n "$ready" ] || die "loadgen ($sys, $n) not ready after 120 s"
    record "$sys" "$n" ready "$ready" 0 0 0 0
    log "$sys: $(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print("%(joined)s/%(requested)s subscribers joined in %(setup_s)s s; %(failed)s failed" % r)' "$ready")"
}

stop_loadgen() {
    local sys="$1" pid="${LGPID[$1]}" i
    echo quit >&"${LGFD[$sys]}" || true
    exec {LGFD[$sys]}>&-
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    bench_forget "$pid"
}

# record SYS N KIND JSON SERVER_TICKS LOADGEN_TICKS BUSY_TICKS WALL_S: one labelled line.
record() {
    python3 - "$@" "$CLK_TCK" >>"$RESULTS" <<'EOF'
import json, sys
sys_, n, kind, line, st, lt, bt, wall, tck = sys.argv[1:]
r = json.loads(line)
tck = float(tck)
r.update(target=sys_, n=int(n), kind=kind, server_cpu_s=int(st) / tck,
         loadgen_cpu_s=int(lt) / tck, machine_busy_s=int(bt) / tck, wall_s=float(wall))
print(json.dumps(r))
EOF
}

# ask SYS N KIND CMD: runs CMD on SYS's loadgen and records its answer with the CPU spent.
ask() {
    local sys="$1" n="$2" kind="$3" cmd="$4" before i line
    before=$(wc -l <"${LGOUT[$sys]}")
    local s0 l0 b0 w0
    s0=$(bench_cpu_ticks "${SPID[$sys]}")
    l0=$(bench_cpu_ticks "${LGPID[$sys]}")
    b0=$(bench_busy_ticks)
    w0=$(date +%s.%N)
    echo "$cmd" >&"${LGFD[$sys]}"
    line=""
    for i in $(seq 1 1800); do
        if [ "$(wc -l <"${LGOUT[$sys]}")" -gt "$before" ]; then
            line=$(sed -n "$((before + 1))p" "${LGOUT[$sys]}")
            break
        fi
        kill -0 "${LGPID[$sys]}" 2>/dev/null || die "loadgen ($sys) exited (see $OUT/$sys-$n.log)"
        sleep 0.1
    done
    [ -n "$line" ] || die "loadgen ($sys) did not answer '$cmd' within 180 s"
    local s1 l1 b1 w1 others
    s1=$(bench_cpu_ticks "${SPID[$sys]}")
    l1=$(bench_cpu_ticks "${LGPID[$sys]}")
    b1=$(bench_busy_ticks)
    w1=$(date +%s.%N)
    record "$sys" "$n" "$kind" "$line" $((s1 - s0)) $((l1 - l0)) $((b1 - b0)) "$(python3 -c "print($w1 - $w0)")"
    # One name per pgrep: a pattern over 15 characters matches nothing.
    others=$(for p in cargo rustc cc1 ld; do pgrep -x "$p" || true; done | wc -l)
    python3 - "$line" "$sys" "$kind" "$others" <<'EOF' >&2
import json, sys
r = json.loads(sys.argv[1]); s, kind, others = sys.argv[2:]
note = f" [{others} compiler processes running]" if others != "0" else ""
if "error" in r:
    print(f"  {s} {kind}: ERROR {r['error']}")
elif r["cmd"] == "shots":
    print(f"  {s} shots: last delivery {r['last_delivery_ms']} ms (median {r['last_delivery_ms_median']}), "
          f"{r['deliveries_per_s']} deliveries/s, losses {r['losses']}{note}")
else:
    st = r.get("stalled_member")
    extra = f", stalled member: {st['messages_buffered']} msgs then {st['end']}" if st else ""
    print(f"  {s} {r['cmd']}: {r['deliveries_per_s']:.0f} deliveries/s ({r['published']} msgs, "
          f"in-window {r['deliveries_per_s_in_window']:.0f}/s, drain {r['drain_ms']} ms), losses {r['losses']}, "
          f"out of order {r['out_of_order']}, "
          f"last member p50 {r['last_member_ms_p50']} ms, member p99 {r['member_latency_ms_p99']} ms{extra}{note}")
EOF
}

# ---------------------------------------------------------------------------------------
# runs

LARGEST=$(echo "$COUNTS" | tr ' ' '\n' | sort -n | tail -n 1)
PAIR=0
for n in $COUNTS; do
    runs=1
    [ "$n" = "$LARGEST" ] && runs="$RUNS"
    # Rough cost: setup + shots + runs x (plain + stalled) x 2 systems x (SECS + drain/probe).
    per_run=$((SECS + 5))
    variants=1
    [ "$STALLED" = 1 ] && variants=2
    need=$((40 + n / 500 + runs * variants * 2 * per_run))
    if [ "$(remaining)" -lt "$need" ]; then
        log "warning: skipping $n subscribers: ~${need}s needed, $(remaining)s left of BUDGET=$BUDGET"
        continue
    fi
    log "== $n subscribers =="
    start_loadgen switchboard "$n"
    start_loadgen sockudo "$n"
    for sys in switchboard sockudo; do
        ask "$sys" "$n" shots "shots $SHOTS"
    done
    for r in $(seq 1 "$runs"); do
        # Alternate which system goes first.
        if [ $((PAIR % 2)) = 0 ]; then order="switchboard sockudo"; else order="sockudo switchboard"; fi
        PAIR=$((PAIR + 1))
        for sys in $order; do
            if [ "$(remaining)" -lt $((SECS + 10)) ]; then
                log "warning: out of budget, skipping the rest of the runs"
                break 2
            fi
            ask "$sys" "$n" sustained "sustained $SECS"
            if [ "$STALLED" = 1 ]; then
                ask "$sys" "$n" stalled "sustained $SECS stalled"
            fi
        done
    done
    stop_loadgen switchboard
    stop_loadgen sockudo
    # Let the servers retire the closed connections before the next count.
    sleep 2
done

LOAD_AT_END="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------------------------------
# summary

python3 - "$RESULTS" "$(nproc)" "$(date -u '+%Y-%m-%d %H:%M UTC')" \
    "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')" "$(($(date +%s) - T1))" \
    "$LOAD_AT_START" "$LOAD_AT_END" "$SOCKUDO_VERSION" "$SECS" "$INFLIGHT" "$WINDOW" "$SIZE" \
    >"$OUT/summary.md" <<'EOF'
import json, statistics, sys
path, nproc, date, commit, took, load0, load1, skv, secs, inflight, window, size = sys.argv[1:]
rows = [json.loads(l) for l in open(path) if l.strip()]
rows = [r for r in rows if "error" not in r]

def pick(sys_, n, kind):
    return [r for r in rows if r["target"] == sys_ and r["n"] == n and r["kind"] == kind]

def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None

def fmt(x, d=0):
    return "–" if x is None else f"{x:,.{d}f}"

def ratio(a, b):
    return f"{a / b:.2f}×" if a is not None and b else "–"

out = [f"## Group fan-out — {date}", ""]
out.append(f"- switchboard (commit {commit}) vs {skv}; {size} B messages; sustained: {inflight} publishers in a closed loop, {secs} s per run"
           + (f", window {window}" if window != "0" else "") + f"; took {took} s after the build")
out.append(f"- machine: `nproc` = {nproc}; load average {load0} at start, {load1} at the end; servers and both load generators share it, loopback only")
out.append("- single-shot: time from just before the publish call until the last subscriber has the message (median; one warm-up first); deliveries/s = subscribers / that time")
out.append("- sustained: every delivery of every message published in a run / (last delivery − first publish call), drain included; median of runs; losses = expected deliveries that never arrived (all runs)")
out.append("- stalled member: one extra member never reads (4 KiB receive buffer); effect = sustained deliveries/s with it / without it (medians), and last-member p50 latency without → with")
out.append("")
out.append("| system | subscribers | single-shot last delivery, ms (median) | deliveries/s single-shot | sustained deliveries/s (median of runs) | runs | losses | stalled-member effect | server CPU µs / delivery (sustained) |")
out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
ns = sorted({r["n"] for r in rows})
figures = {}
for n in ns:
    for s in ("switchboard", "sockudo"):
        shots = pick(s, n, "shots")
        sus = pick(s, n, "sustained")
        st = pick(s, n, "stalled")
        if not shots and not sus:
            continue
        last_ms = med([r["last_delivery_ms_median"] for r in shots])
        shot_rate = med([r["deliveries_per_s"] for r in shots])
        rate = med([r["deliveries_per_s"] for r in sus])
        rate_st = med([r["deliveries_per_s"] for r in st])
        lat = med([r["last_member_ms_p50"] for r in sus])
        lat_st = med([r["last_member_ms_p50"] for r in st])
        losses = sum(r["losses"] for r in shots + sus + st)
        lost = max([r.get("lost_members_total", 0) for r in shots + sus + st] or [0])
        ooo = max([r.get("out_of_order_total", 0) for r in shots + sus + st] or [0])
        cpu = med([1e6 * r["server_cpu_s"] / r["deliveries"] for r in sus if r.get("deliveries")])
        figures[(s, n)] = dict(last_ms=last_ms, shot_rate=shot_rate, rate=rate, cpu=cpu, lat=lat)
        if st:
            ends = sorted({r["stalled_member"]["end"].split(":")[0] for r in st if r.get("stalled_member")})
            eff = (f"{ratio(rate_st, rate)} rate; last-member p50 {fmt(lat, 1)} → {fmt(lat_st, 1)} ms; "
                   f"losses {sum(r['losses'] for r in st)}; stalled one: {', '.join(ends)}")
        else:
            eff = "–"
        loss_txt = f"{losses:,}" + (f" ({lost} members lost)" if lost else "") + (f" ({ooo:,} out of order)" if ooo else "")
        out.append(f"| {s} | {n:,} | {fmt(last_ms, 1)} | {fmt(shot_rate)} | {fmt(rate)} | {len(sus)} | {loss_txt} | {eff} | {fmt(cpu, 2)} |")
out.append("")
out.append("| ratio switchboard / sockudo | subscribers | single-shot deliveries/s | sustained deliveries/s | server CPU per delivery |")
out.append("| --- | ---: | ---: | ---: | ---: |")
for n in ns:
    a, b = figures.get(("switchboard", n)), figures.get(("sockudo", n))
    if a and b:
        out.append(f"| | {n:,} | {ratio(a['shot_rate'], b['shot_rate'])} | {ratio(a['rate'], b['rate'])} | {ratio(a['cpu'], b['cpu'])} |")
out.append("")
# Per-run detail (sustained and stalled).
out.append("<details><summary>per run</summary>")
out.append("")
out.append("| system | n | run | deliveries/s | in-window/s | msgs | drain ms | losses | last-member p50 / p99 ms | member p50 / p99 ms | publish call p50 / p99 ms | server CPU s | loadgen CPU s | other processes' CPU s | machine busy % | stalled member |")
out.append("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
for r in rows:
    if r["kind"] not in ("sustained", "stalled"):
        continue
    st = r.get("stalled_member")
    stt = f"{st['messages_buffered']} msgs, {st['end']}" if st else ""
    busy = 100 * r["machine_busy_s"] / (float(nproc) * r["wall_s"]) if r["wall_s"] else 0
    out.append(f"| {r['target']} | {r['n']:,} | {r['kind']} | {fmt(r['deliveries_per_s'])} | {fmt(r['deliveries_per_s_in_window'])} | {r['published']} | {fmt(r['drain_ms'])} | {r['losses']} | {fmt(r['last_member_ms_p50'], 1)} / {fmt(r['last_member_ms_p99'], 1)} | {fmt(r['member_latency_ms_p50'], 1)} / {fmt(r['member_latency_ms_p99'], 1)} | {fmt(r['http_ms_p50'], 1)} / {fmt(r['http_ms_p99'], 1)} | {r['server_cpu_s']:.1f} | {r['loadgen_cpu_s']:.1f} | {max(0, r['machine_busy_s'] - r['server_cpu_s'] - r['loadgen_cpu_s']):.1f} | {busy:.0f} | {stt} |")
out.append("")
out.append("</details>")
print("\n".join(out))
EOF
bench_done
