#!/usr/bin/env bash
# Compression benchmark, on loopback only: bandwidth and CPU of permessage-deflate (RFC 7692)
# on and off, for JSON chat messages, through the gateway and through the peers that
# implement it.
#
#   servers: switchboard (builtin echo, `[compression]` at each of GATEWAY_LEVELS, one
#     gateway per level; the first level is the gateway's default, 2), Node's ws and
#     Python's websockets (bench/peers/, configured like the gateway's defaults: C zlib at
#     level 1, which is the algorithm zlib-rs runs at level 2, no context takeover either
#     way, 15-bit window, messages under 32 bytes plain);
#   load: `loadgen echo --payload chat` (512 different JSON chat messages, 100-400 B, mean
#     ~236 B), CONNS connections in a closed loop; `on` = loadgen offers
#     `permessage-deflate; client_max_window_bits` (and compresses its own messages at zlib
#     level 1), `off` = it offers nothing, against the same server process;
#   figures per run: msgs/s, p50/p99, bytes on the wire per message each way (frames as
#     sent, headers and masks included) against the payload bytes, and the server's CPU
#     (utime + stime from /proc) per echoed message;
#   RUNS rounds; within a round every (server, on/off) pair runs once, the order rotated
#     round by round, so ratios are taken between runs of the same round.
#
# Usage: bench/compression.sh
# Environment knobs (defaults in brackets):
#   RUNS [3] SECS [5] WARMUP [1] CONNS [100]
#   GATEWAY_LEVELS ["2 1"]  gateway zlib levels, the default first (level 1 is zlib-rs's
#                           fastest static-Huffman strategy: less CPU, larger output)
#   PEERS ["ws websockets"]
#   NO_BUILD [0]  1: skip the cargo build (use the binaries in target/release)
# Needs: node (ws is installed by `npm ci` in bench/peers), .venv with websockets (installed
# from bench/peers/requirements.txt when missing), curl, python3.
# Raw results: target/compression-bench/<timestamp>/{results.jsonl,summary.md,*.log,*.toml}
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_command "$*" RUNS SECS WARMUP CONNS GATEWAY_LEVELS PEERS NO_BUILD
bench_args "$@"

RUNS="${RUNS:-3}"
SECS="${SECS:-5}"
WARMUP="${WARMUP:-1}"
CONNS="${CONNS:-100}"
GATEWAY_LEVELS="${GATEWAY_LEVELS:-2 1}"
PEERS="${PEERS:-ws websockets}"

bench_init
trap 'bench_cleanup 2>/dev/null' EXIT
trap 'exit 130' INT TERM

bench_build
bench_need switchboard loadgen
bench_ensure_peers
LOAD_AT_START="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------------------------------
# servers, up for the whole run

declare -A URL SPID LEVEL LABEL
SYSTEMS=()
for level in $GATEWAY_LEVELS; do
    name="switchboard-l$level"
    bench_gateway_config "$OUT/$name.toml" "[compression]
enabled = true
level = $level"
    bench_start_gateway "$name" "$OUT/$name.toml"
    URL[$name]="$GW_URL"; SPID[$name]="$GW_PID"; LEVEL[$name]="$level"
    LABEL[$name]="switchboard, zlib level $level"
    SYSTEMS+=("$name")
done
for peer in $PEERS; do
    bench_start_peer "$peer" "$peer" --deflate
    URL[$peer]="$PEER_URL"; SPID[$peer]="$PEER_PID"; LEVEL[$peer]=1
    LABEL[$peer]="$(bench_peer_label "$peer")"
    SYSTEMS+=("$peer")
done
log "servers: $(for s in "${SYSTEMS[@]}"; do printf '%s=%s ' "$s" "${URL[$s]}"; done)"

# The runs of one round: every server with deflate on, and off for the first gateway and
# the peers (the level does not matter without compression).
CELLS=()
FIRST_GW="switchboard-l${GATEWAY_LEVELS%% *}"
for s in "${SYSTEMS[@]}"; do
    CELLS+=("$s:on")
    case "$s" in
        "$FIRST_GW") CELLS+=("$s:off") ;;
        switchboard-*) ;;
        *) CELLS+=("$s:off") ;;
    esac
done

limit=$(python3 -c "import math; print(math.ceil($SECS + $WARMUP) + 40)")
for run in $(seq 1 "$RUNS"); do
    for cell in $(bench_rotate $(((run - 1) * 3)) "${CELLS[@]}"); do
        sys=${cell%%:*}
        mode=${cell#*:}
        flag=()
        [ "$mode" = on ] && flag=(--deflate)
        c0=$(bench_cpu_ticks "${SPID[$sys]}")
        bench_loadgen "echo-$sys-$mode-$run" "$limit" echo --url "${URL[$sys]}" \
            --connections "$CONNS" --payload chat --duration "$SECS" --warmup "$WARMUP" "${flag[@]}"
        c1=$(bench_cpu_ticks "${SPID[$sys]}")
        [ -n "$LINE" ] || die "loadgen failed against $sys ($mode; see $OUT/echo-$sys-$mode-$run.log): $(tail -n 3 "$OUT/echo-$sys-$mode-$run.log")"
        bench_record "$RESULTS" "$LINE" phase=compression system="$sys" label="${LABEL[$sys]}" \
            level="${LEVEL[$sys]}" deflate="$([ "$mode" = on ] && echo true || echo false)" run="$run" \
            server_cpu_s="$(bench_cpu_secs $((c1 - c0)))" \
            load1="$(cut -d' ' -f1 /proc/loadavg)"
        python3 -c '
import json, sys
r = json.loads(sys.argv[1])
n = max(r["messages_total"], 1)
print("%s %s run %d: %.0f msgs/s, p50 %d us, wire %.0f B in / %.0f B out per msg (payload %.0f), server CPU %.1f us/msg, %d/%d compressed, %d errors" % (
    r["system"], "on" if r["deflate"] else "off", r["run"], r["msgs_per_s"], r["p50_us"],
    r["wire_in_bytes_per_msg"], r["wire_out_bytes_per_msg"], r["payload_bytes_per_msg"],
    1e6 * r["server_cpu_s"] / n, r["deflate_agreed"], r["connections"], r["errors"]))' \
            "$(tail -n 1 "$RESULTS")" | while read -r l; do log "$l"; done
    done
done
LOAD_AT_END="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------------------------------
# summary

python3 - "$RESULTS" "$COMMAND" "$(nproc)" "$(date -u '+%Y-%m-%d %H:%M UTC')" \
    "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')" "$(($(date +%s) - T0))" \
    "$LOAD_AT_START" "$LOAD_AT_END" "$CONNS" "$SECS" >"$OUT/summary.md" <<'EOF'
import json, statistics, sys
path, command, nproc, date, commit, took, load0, load1, conns, secs = sys.argv[1:]
rows = [json.loads(l) for l in open(path) if l.strip()]
for r in rows:
    r["cpu_us_per_msg"] = 1e6 * r["server_cpu_s"] / max(r["messages_total"], 1)
med = statistics.median

def mmm(v, d=0):
    return f"{med(v):,.{d}f} ({min(v):,.{d}f}–{max(v):,.{d}f})" if v else "–"

out = [f"## Compression (permessage-deflate) — {date}", "",
       f"- command: `{command}` (commit {commit}, took {took} s)",
       f"- machine: `nproc` = {nproc}; load average {load0} at start, {load1} at end; loopback only",
       f"- load: `loadgen echo --payload chat`, {conns} connections, closed loop, {secs} s per run; "
       "figures are median (min–max) over rounds", "",
       "| server | deflate | runs | msgs/s | p50 µs | wire B/msg server→client | wire B/msg client→server | server CPU µs/msg | compressed conns |",
       "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
keys = []
for r in rows:
    k = (r["system"], r["deflate"])
    if k not in keys:
        keys.append(k)
for s, d in keys:
    rs = [r for r in rows if r["system"] == s and r["deflate"] == d]
    out.append(f"| {rs[0]['label']} | {'on' if d else 'off'} | {len(rs)} | {mmm([r['msgs_per_s'] for r in rs])} | "
               f"{mmm([r['p50_us'] for r in rs])} | {mmm([r['wire_in_bytes_per_msg'] for r in rs], 1)} | "
               f"{mmm([r['wire_out_bytes_per_msg'] for r in rs], 1)} | {mmm([r['cpu_us_per_msg'] for r in rs], 2)} | "
               f"{min(r['deflate_agreed'] for r in rs)}/{rs[0]['connections']} |")
out.append("")
out.append("Payload: %.0f B per message (mean). Errors in all runs: %d." % (
    med([r["payload_bytes_per_msg"] for r in rows]), sum(r["errors"] for r in rows)))
print("\n".join(out))
EOF
bench_done
