#!/usr/bin/env bash
# Session-resume cost benchmark, on loopback only: what the `switchboard.v1` subprotocol
# (docs/protocol.md: sequence numbers, acks, a replay buffer per connection) costs against
# plain WebSocket on the same gateway (builtin echo, `[resume] enabled = true`).
#
#   echo: CONNS connections, SIZE-byte text, closed loop, SECS per run after WARMUP;
#     plain connections vs `loadgen echo --switchboard-v1` (each message sent as `m<n>:`,
#     the echo checked to come back as the server's next `m<n>:`, an ack `a<n>` every 32
#     server messages, the server's acks counted); RUNS rounds, the two alternating (order
#     swapped every round) against one gateway. Target (issue): v1 >= 0.9x plain msgs/s.
#   idle: a fresh gateway per measurement; RSS before and SETTLE s after IDLE_CONNS idle
#     connections, plain or switchboard.v1 (hello read, nothing sent: an empty replay
#     buffer); KiB per connection; IDLE_RUNS rounds, the two alternating. Target (issue):
#     a resumable connection within 1 KiB of a plain one.
#
# Usage: bench/session.sh
# Environment knobs (defaults in brackets):
#   RUNS [3] SECS [5] WARMUP [1] CONNS [100] SIZE [64]
#   IDLE_RUNS [3] IDLE_CONNS [5000] SETTLE [2]
#   NO_BUILD [0]  1: skip the cargo build (use the binaries in target/release)
# Raw results: target/session-bench/<timestamp>/{results.jsonl,summary.md,*.log,*.toml}
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_command "$*" RUNS SECS WARMUP CONNS SIZE IDLE_RUNS IDLE_CONNS SETTLE NO_BUILD
bench_args "$@"

RUNS="${RUNS:-3}"
SECS="${SECS:-5}"
WARMUP="${WARMUP:-1}"
CONNS="${CONNS:-100}"
SIZE="${SIZE:-64}"
IDLE_RUNS="${IDLE_RUNS:-3}"
IDLE_CONNS="${IDLE_CONNS:-5000}"
SETTLE="${SETTLE:-2}"

bench_init
trap 'bench_cleanup 2>/dev/null' EXIT
trap 'exit 130' INT TERM
# The idle runs hold thousands of sockets in loadgen and in the gateway.
ulimit -n "$(ulimit -Hn)"

bench_build
bench_need switchboard loadgen
LOAD_AT_START="$(cut -d' ' -f1-3 /proc/loadavg)"
RESUME_TOML='[resume]
enabled = true'

# flag MODE: loadgen's flag for a mode.
flag() { [ "$1" = v1 ] && echo --switchboard-v1 || true; }

# ---------------------------------------------------------------------------------------
# echo

bench_gateway_config "$OUT/echo.toml" "$RESUME_TOML"
bench_start_gateway gateway-echo "$OUT/echo.toml"
ECHO_PID=$GW_PID
ECHO_URL=$GW_URL
limit=$(python3 -c "import math; print(math.ceil($SECS + $WARMUP) + 40)")
for run in $(seq 1 "$RUNS"); do
    if [ $((run % 2)) = 1 ]; then order="plain v1"; else order="v1 plain"; fi
    for mode in $order; do
        c0=$(bench_cpu_ticks "$ECHO_PID")
        # shellcheck disable=SC2046 # flag prints nothing or one word
        bench_loadgen "echo-$mode-$run" "$limit" echo --url "$ECHO_URL" --connections "$CONNS" \
            --size "$SIZE" --duration "$SECS" --warmup "$WARMUP" $(flag "$mode")
        c1=$(bench_cpu_ticks "$ECHO_PID")
        [ -n "$LINE" ] || die "loadgen echo ($mode) failed (see $OUT/echo-$mode-$run.log): $(tail -n 3 "$OUT/echo-$mode-$run.log")"
        bench_record "$RESULTS" "$LINE" phase=echo session="$mode" run="$run" \
            server_cpu_s="$(bench_cpu_secs $((c1 - c0)))"
        log "echo $mode run $run: $(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print("%.0f msgs/s, p50 %d us, p99 %d us, %d sessions, %d server acks, %d errors" % (r["msgs_per_s"], r["p50_us"], r["p99_us"], r["switchboard_v1"], r["v1_acks_received"], r["errors"]))' "$LINE")"
    done
done
bench_stop "$ECHO_PID"

# ---------------------------------------------------------------------------------------
# idle

# idle_round MODE RUN: fresh gateway, RSS, IDLE_CONNS idle connections, settle, RSS.
idle_round() {
    local mode="$1" run="$2" name="idle-$1-$2" i before after lg
    bench_gateway_config "$OUT/$name.toml" "$RESUME_TOML"
    bench_start_gateway "gateway-$name" "$OUT/$name.toml"
    sleep 1
    before=$(bench_rss_kib "$GW_PID")
    local fifo="$OUT/$name.fifo"
    mkfifo "$fifo"
    # shellcheck disable=SC2046
    "$BIN/loadgen" idle --url "$GW_URL" --connections "$IDLE_CONNS" --max-hold 120 $(flag "$mode") \
        <"$fifo" >"$OUT/$name.json" 2>"$OUT/$name.log" &
    lg=$!
    PIDS+=("$lg")
    exec 3>"$fifo"
    for i in $(seq 1 1200); do
        grep -q '^READY' "$OUT/$name.log" && break
        kill -0 "$lg" 2>/dev/null || break
        sleep 0.1
    done
    grep -q '^READY' "$OUT/$name.log" || { exec 3>&-; die "loadgen idle ($mode) never got READY (see $OUT/$name.log)"; }
    sleep "$SETTLE"
    after=$(bench_rss_kib "$GW_PID")
    exec 3>&-
    wait "$lg" || true
    bench_forget "$lg"
    rm -f "$fifo"
    LINE=$(tail -n 1 "$OUT/$name.json")
    [ -n "$LINE" ] || die "loadgen idle ($mode) printed no result (see $OUT/$name.log)"
    bench_record "$RESULTS" "$LINE" phase=idle session="$mode" run="$run" rss_before_kib="$before" \
        rss_after_kib="$after" \
        kib_per_conn="$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(round((int(sys.argv[3]) - int(sys.argv[2])) / max(r["opened"], 1), 3))' "$LINE" "$before" "$after")"
    log "idle $mode run $run: $(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print("%d/%d open, RSS %s -> %s KiB = %.3f KiB/connection" % (r["opened"], r["requested"], r["rss_before_kib"], r["rss_after_kib"], r["kib_per_conn"]))' "$(tail -n 1 "$RESULTS")")"
    bench_stop "$GW_PID"
}

for run in $(seq 1 "$IDLE_RUNS"); do
    if [ $((run % 2)) = 1 ]; then order="plain v1"; else order="v1 plain"; fi
    for mode in $order; do idle_round "$mode" "$run"; done
done
LOAD_AT_END="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------------------------------
# summary

python3 - "$RESULTS" "$COMMAND" "$(nproc)" "$(date -u '+%Y-%m-%d %H:%M UTC')" \
    "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')" "$(($(date +%s) - T0))" \
    "$LOAD_AT_START" "$LOAD_AT_END" "$CONNS" "$SIZE" "$SECS" "$IDLE_CONNS" >"$OUT/summary.md" <<'EOF'
import json, statistics, sys
path, command, nproc, date, commit, took, load0, load1, conns, size, secs, idle_n = sys.argv[1:]
rows = [json.loads(l) for l in open(path) if l.strip()]
med = statistics.median

def mmm(v, d=0):
    return f"{med(v):,.{d}f} ({min(v):,.{d}f}–{max(v):,.{d}f})" if v else "–"

def runs(phase, mode):
    return {r["run"]: r for r in rows if r["phase"] == phase and r["session"] == mode}

out = [f"## switchboard.v1 sessions vs plain WebSocket — {date}", "",
       f"- command: `{command}` (commit {commit}, took {took} s)",
       f"- machine: `nproc` = {nproc}; load average {load0} at start, {load1} at end; loopback only",
       "- one gateway with `[resume] enabled = true` and the builtin echo; median (min–max) over rounds; "
       "ratios are taken within a round (the two modes back to back)", ""]
p, v = runs("echo", "plain"), runs("echo", "v1")
if p or v:
    out += [f"Echo, {conns} connections × {size} B, {secs} s per run:", "",
            "| mode | runs | msgs/s | p50 µs | p99 µs | server CPU µs/msg | server acks | errors |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, rs in (("plain", p), ("switchboard.v1", v)):
        rs = list(rs.values())
        out.append(f"| {name} | {len(rs)} | {mmm([r['msgs_per_s'] for r in rs])} | {mmm([r['p50_us'] for r in rs])} | "
                   f"{mmm([r['p99_us'] for r in rs])} | {mmm([1e6 * r['server_cpu_s'] / max(r['messages_total'], 1) for r in rs], 2)} | "
                   f"{sum(r['v1_acks_received'] for r in rs):,} | {sum(r['errors'] for r in rs)} |")
    pairs = [v[k]["msgs_per_s"] / p[k]["msgs_per_s"] for k in sorted(set(p) & set(v)) if p[k]["msgs_per_s"]]
    if pairs:
        out += ["", f"- **v1 / plain msgs/s: {med(pairs):.3f}×** (per round {', '.join(f'{x:.3f}' for x in pairs)}) — "
                f"target ≥ 0.9×: **{'met' if med(pairs) >= 0.9 else 'not met'}**"]
    out.append("")
p, v = runs("idle", "plain"), runs("idle", "v1")
if p or v:
    out += [f"Idle memory, {int(idle_n):,} connections, a fresh gateway each:", "",
            "| mode | runs | opened | KiB / connection |", "| --- | ---: | ---: | ---: |"]
    for name, rs in (("plain", p), ("switchboard.v1", v)):
        rs = list(rs.values())
        out.append(f"| {name} | {len(rs)} | {min(r['opened'] for r in rs):,} | {mmm([r['kib_per_conn'] for r in rs], 3)} |")
    diffs = [1024 * (v[k]["kib_per_conn"] - p[k]["kib_per_conn"]) for k in sorted(set(p) & set(v))]
    if diffs:
        out += ["", f"- **v1 − plain: {med(diffs):+,.0f} bytes per connection** (per round "
                f"{', '.join(f'{x:+,.0f}' for x in diffs)}) — target within 1 KiB: "
                f"**{'met' if abs(med(diffs)) <= 1024 else 'not met'}**"]
print("\n".join(out))
EOF
bench_done
